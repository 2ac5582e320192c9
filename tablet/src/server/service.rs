//! The gRPC service: data requests and the master's management requests.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

use super::convert::{self, not_serving, status, tagged, wrong_range};
use super::{sequencer_from_pb, Loaded, Shared};
use crate::error::Error;
use crate::manifest::RowRange;
use crate::meta::{MASTER_LOCK_PATH, METADATA_TABLE_ID};
use crate::pb;
use crate::tablet::{Tablet, TabletConfig};

/// Rows per streamed `ReadRows` message.
const ROWS_PER_CHUNK: usize = 256;
/// Bytes per streamed `ReadRows` message (a soft bound).
const BYTES_PER_CHUNK: usize = 1 << 20;

/// The tablet service of one server.
pub struct TabletService {
    s: Arc<Shared>,
}

impl TabletService {
    pub(crate) fn new(s: Arc<Shared>) -> Self {
        TabletService { s }
    }

    /// The loaded tablet a data request names, if this server may serve it. Its errors
    /// come before any work, so they say so (`quarry-outcome=none`).
    fn find(&self, r: &Option<pb::TabletRef>) -> Result<Arc<Loaded>, Status> {
        self.find_inner(r).map_err(convert::not_run)
    }

    fn find_inner(&self, r: &Option<pb::TabletRef>) -> Result<Arc<Loaded>, Status> {
        let r = r
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("request names no tablet"))?;
        if !self.s.may_serve() {
            return Err(not_serving(format!("server {} is not serving", self.s.id)));
        }
        let loaded = self
            .s
            .tablets
            .read()
            .get(&r.tablet_id)
            .cloned()
            .ok_or_else(|| {
                not_serving(format!(
                    "tablet {} is not served by {}",
                    r.tablet_id, self.s.id
                ))
            })?;
        if !r.table.is_empty() && r.table != loaded.desc.table {
            return Err(wrong_range(format!(
                "tablet {} belongs to table {}, not {}",
                r.tablet_id, loaded.desc.table, r.table
            )));
        }
        Ok(loaded)
    }

    /// The tablet of a single-row request that METADATA does not take (it takes only
    /// fenced `MutateRow`).
    fn find_user_row(&self, r: &Option<pb::TabletRef>, row: &[u8]) -> Result<Arc<Loaded>, Status> {
        let loaded = self.find(r)?;
        Self::check_row(&loaded, row)?;
        if loaded.desc.table_id == METADATA_TABLE_ID {
            return Err(Status::permission_denied(
                "METADATA takes only fenced MutateRow",
            ));
        }
        Ok(loaded)
    }

    fn check_row(loaded: &Loaded, row: &[u8]) -> Result<(), Status> {
        if loaded.tablet.range().contains(row) {
            Ok(())
        } else {
            Err(convert::not_run(wrong_range(format!(
                "row {:?} is outside tablet {}",
                String::from_utf8_lossy(row),
                loaded.desc.tablet_id
            ))))
        }
    }

    /// The lease check after the work and before the reply (DESIGN.md rule 5).
    fn after(&self, wrote: bool) -> Result<(), Status> {
        if self.s.may_serve() {
            return Ok(());
        }
        let outcome = if wrote {
            "; the outcome of this write is unknown"
        } else {
            ""
        };
        Err(not_serving(format!(
            "server {} lost its lease{outcome}",
            self.s.id
        )))
    }

    /// Checks a management request's master sequencer.
    async fn check_master(&self, seq: &Option<pb::Sequencer>) -> Result<(), Status> {
        let seq = seq
            .as_ref()
            .ok_or_else(|| Status::permission_denied("management request without a sequencer"))?;
        if seq.path != MASTER_LOCK_PATH {
            return Err(Status::permission_denied(format!(
                "sequencer of {} is not the master's",
                seq.path
            )));
        }
        self.check_sequencer(seq).await?;
        self.s
            .master_generation
            .fetch_max(seq.generation, Ordering::SeqCst);
        Ok(())
    }

    /// Refuses a load or unload the master addressed to another incarnation of the server
    /// at this address (one that died; this process restarted on its address). Serving it
    /// would make this process an owner the master does not know of: after reclaiming the
    /// dead incarnation's lock the master would assign the tablet to a second server.
    fn check_addressee(&self, server_id: &str) -> Result<(), Status> {
        if server_id == self.s.id {
            return Ok(());
        }
        Err(tagged(
            Code::FailedPrecondition,
            "wrong-server",
            format!(
                "addressed to tablet server {server_id:?}, this is {:?}",
                self.s.id
            ),
        ))
    }

    async fn check_sequencer(&self, seq: &pb::Sequencer) -> Result<(), Status> {
        if seq.path == MASTER_LOCK_PATH
            && seq.generation < self.s.master_generation.load(Ordering::SeqCst)
        {
            return Err(tagged(
                Code::FailedPrecondition,
                "stale-sequencer",
                "a newer master has been seen",
            ));
        }
        self.s
            .client
            .check_sequencer(&sequencer_from_pb(seq))
            .await
            .map_err(|e| tagged(Code::FailedPrecondition, "stale-sequencer", e.to_string()))
    }

    /// Writes to METADATA must carry a current sequencer (DESIGN.md rule 7).
    async fn check_metadata_write(
        &self,
        loaded: &Loaded,
        seq: &Option<pb::Sequencer>,
    ) -> Result<(), Status> {
        if loaded.desc.table_id != METADATA_TABLE_ID {
            return Ok(());
        }
        let seq = seq
            .as_ref()
            .ok_or_else(|| Status::permission_denied("METADATA writes need a sequencer"))?;
        self.check_sequencer(seq).await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))?
        .map_err(status)
}

/// Applies a `MutateRows` request's entries as one batch; one status per entry, in order.
/// An entry outside the tablet or with bad mutations fails alone, before any write.
fn apply_entries(
    t: &Tablet,
    entries: Vec<pb::mutate_rows_request::Entry>,
) -> Vec<pb::mutate_rows_response::EntryStatus> {
    let mut early: Vec<Option<Status>> = Vec::with_capacity(entries.len());
    let mut batch = Vec::with_capacity(entries.len());
    for e in entries {
        let checked = if t.range().contains(&e.row) {
            convert::mutations(e.mutations)
        } else {
            Err(wrong_range("row outside the tablet"))
        };
        match checked {
            Ok(m) => {
                early.push(None);
                batch.push((e.row, m));
            }
            Err(s) => early.push(Some(s)),
        }
    }
    let mut written = t.mutate_rows(batch).into_iter();
    early
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let r = match e {
                Some(s) => Err(s),
                None => written
                    .next()
                    .expect("one result per written entry")
                    .map_err(status),
            };
            let (code, message) = match r {
                Ok(()) => (0, String::new()),
                Err(s) => (s.code() as i32, s.message().to_string()),
            };
            pb::mutate_rows_response::EntryStatus {
                index: i as u32,
                code,
                message,
            }
        })
        .collect()
}

type RowStream = Pin<Box<dyn Stream<Item = Result<pb::ReadRowsResponse, Status>> + Send>>;
type MultiStream = Pin<Box<dyn Stream<Item = Result<pb::ReadRowsMultiResponse, Status>> + Send>>;

/// The bytes a row adds to a response chunk, roughly.
fn row_bytes(row: &crate::Row) -> usize {
    row.key.len()
        + row
            .cells
            .iter()
            .map(|c| c.value.len() + c.qualifier.len() + 16)
            .sum::<usize>()
}

/// Most row keys one `ReadRowsMulti` may name.
pub const MAX_MULTI_KEYS: usize = 100_000;

#[tonic::async_trait]
impl pb::tablet_server::Tablet for TabletService {
    async fn mutate_row(
        &self,
        req: Request<pb::MutateRowRequest>,
    ) -> Result<Response<pb::MutateRowResponse>, Status> {
        let req = req.into_inner();
        let loaded = self.find(&req.tablet)?;
        Self::check_row(&loaded, &req.row)?;
        self.check_metadata_write(&loaded, &req.sequencer).await?;
        let muts = convert::mutations(req.mutations)?;
        let t = Arc::clone(&loaded.tablet);
        if loaded.desc.table_id != METADATA_TABLE_ID {
            crate::crashpoint::pause("mutate-after-lease-check");
        }
        blocking(move || t.mutate_row(&req.row, muts)).await?;
        self.after(true)?;
        Ok(Response::new(pb::MutateRowResponse {}))
    }

    async fn mutate_rows(
        &self,
        req: Request<pb::MutateRowsRequest>,
    ) -> Result<Response<pb::MutateRowsResponse>, Status> {
        let req = req.into_inner();
        let loaded = self.find(&req.tablet)?;
        if loaded.desc.table_id == METADATA_TABLE_ID {
            return Err(Status::permission_denied(
                "METADATA takes only fenced MutateRow",
            ));
        }
        // Entries are independent (as in Bigtable). The whole request is one blocking task
        // and one batch write (`Tablet::mutate_rows`): one commit-log append and one
        // group-commit wait for all its rows, instead of a task and a wait per row.
        let t = Arc::clone(&loaded.tablet);
        let statuses = blocking(move || Ok(apply_entries(&t, req.entries))).await?;
        self.after(true)?;
        Ok(Response::new(pb::MutateRowsResponse { statuses }))
    }

    type ReadRowsStream = RowStream;

    async fn read_rows(
        &self,
        req: Request<pb::ReadRowsRequest>,
    ) -> Result<Response<RowStream>, Status> {
        let req = req.into_inner();
        let loaded = self.find(&req.tablet)?;
        for r in &req.rows {
            Self::check_row(&loaded, r)?;
        }
        let filter = convert::filter(req.filter)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let t = Arc::clone(&loaded.tablet);
        let shared = Arc::clone(&self.s);
        tokio::task::spawn_blocking(move || {
            let send = |rows: Vec<pb::Row>, done: bool| -> bool {
                // Checked before every chunk: nothing read after the lease ended leaves.
                let msg = if shared.may_serve() {
                    Ok(pb::ReadRowsResponse { rows, done })
                } else {
                    Err(not_serving("server lost its lease during the read"))
                };
                let ok = msg.is_ok();
                tx.blocking_send(msg).is_ok() && ok
            };
            let fail = |e: Error| {
                let _ = tx.blocking_send(Err(status(e)));
            };
            let mut remaining = if req.rows_limit == 0 {
                usize::MAX
            } else {
                req.rows_limit as usize
            };
            let mut chunk = Vec::new();
            let mut bytes = 0usize;
            let push = |row: crate::Row, chunk: &mut Vec<pb::Row>, bytes: &mut usize| -> bool {
                *bytes += row_bytes(&row);
                chunk.push(convert::row(row));
                if chunk.len() >= ROWS_PER_CHUNK || *bytes >= BYTES_PER_CHUNK {
                    *bytes = 0;
                    return send(std::mem::take(chunk), false);
                }
                true
            };
            for r in &req.rows {
                if remaining == 0 {
                    break;
                }
                match t.read_row(r, &filter) {
                    Ok(Some(row)) => {
                        remaining -= 1;
                        if !push(row, &mut chunk, &mut bytes) {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => return fail(e),
                }
            }
            let ranges: Vec<RowRange> = if req.rows.is_empty() && req.ranges.is_empty() {
                vec![RowRange::all()]
            } else {
                req.ranges.iter().map(convert::range).collect()
            };
            for range in ranges {
                if remaining == 0 {
                    break;
                }
                let scan = match t.scan(&range, &filter, Some(remaining)) {
                    Ok(s) => s,
                    Err(e) => return fail(e),
                };
                for row in scan {
                    match row {
                        Ok(row) => {
                            remaining -= 1;
                            if !push(row, &mut chunk, &mut bytes) {
                                return;
                            }
                        }
                        Err(e) => return fail(e),
                    }
                }
            }
            send(chunk, true);
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }

    type ReadRowsMultiStream = MultiStream;

    async fn read_rows_multi(
        &self,
        req: Request<pb::ReadRowsMultiRequest>,
    ) -> Result<Response<MultiStream>, Status> {
        let req = req.into_inner();
        let keys: usize = req.reads.iter().map(|r| r.rows.len()).sum();
        if keys > MAX_MULTI_KEYS {
            return Err(Status::invalid_argument(format!(
                "ReadRowsMulti names {keys} rows; at most {MAX_MULTI_KEYS} per call"
            )));
        }
        let filter = convert::filter(req.filter)?;
        // Each read is resolved on its own: one whose tablet is not here, or whose rows
        // fall outside it, fails alone (its status travels in its answer).
        let jobs: Vec<(u32, Result<(Arc<Loaded>, Vec<Vec<u8>>), Status>)> = req
            .reads
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let job = self.find(&r.tablet).and_then(|l| {
                    if l.desc.table_id == METADATA_TABLE_ID {
                        return Err(Status::permission_denied(
                            "METADATA is read with ReadRows, not ReadRowsMulti",
                        ));
                    }
                    r.rows
                        .iter()
                        .try_for_each(|k| Self::check_row(&l, k))
                        .map(|()| (l, r.rows))
                });
                (i as u32, job)
            })
            .collect();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let shared = Arc::clone(&self.s);
        tokio::task::spawn_blocking(move || {
            // Checked before every message: nothing read after the lease ended leaves.
            let send = |msg: pb::ReadRowsMultiResponse| -> bool {
                if !shared.may_serve() {
                    let _ =
                        tx.blocking_send(Err(not_serving("server lost its lease during the read")));
                    return false;
                }
                tx.blocking_send(Ok(msg)).is_ok()
            };
            for (read, job) in jobs {
                let (loaded, keys) = match job {
                    Ok(j) => j,
                    Err(s) => {
                        if !send(convert::multi_failure(read, &s)) {
                            return;
                        }
                        continue;
                    }
                };
                let mut rows = Vec::new();
                let mut bytes = 0usize;
                let mut error = None;
                for k in &keys {
                    match loaded.tablet.read_row(k, &filter) {
                        Ok(Some(row)) => {
                            bytes += row_bytes(&row);
                            rows.push(convert::row(row));
                            if rows.len() >= ROWS_PER_CHUNK || bytes >= BYTES_PER_CHUNK {
                                bytes = 0;
                                let msg = pb::ReadRowsMultiResponse {
                                    read,
                                    rows: std::mem::take(&mut rows),
                                    ..Default::default()
                                };
                                if !send(msg) {
                                    return;
                                }
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            error = Some(status(e));
                            break;
                        }
                    }
                }
                let last = match error {
                    Some(s) => convert::multi_failure(read, &s),
                    None => pb::ReadRowsMultiResponse {
                        read,
                        rows,
                        done: true,
                        ..Default::default()
                    },
                };
                if !send(last) {
                    return;
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn check_and_mutate_row(
        &self,
        req: Request<pb::CheckAndMutateRowRequest>,
    ) -> Result<Response<pb::CheckAndMutateRowResponse>, Status> {
        let req = req.into_inner();
        let loaded = self.find_user_row(&req.tablet, &req.row)?;
        let pred = convert::filter(req.predicate)?;
        let yes = convert::mutations(req.true_mutations)?;
        let no = convert::mutations(req.false_mutations)?;
        let t = Arc::clone(&loaded.tablet);
        let matched = blocking(move || t.check_and_mutate(&req.row, &pred, yes, no)).await?;
        self.after(true)?;
        Ok(Response::new(pb::CheckAndMutateRowResponse {
            predicate_matched: matched,
        }))
    }

    async fn read_modify_write_row(
        &self,
        req: Request<pb::ReadModifyWriteRowRequest>,
    ) -> Result<Response<pb::ReadModifyWriteRowResponse>, Status> {
        let req = req.into_inner();
        let loaded = self.find_user_row(&req.tablet, &req.row)?;
        let rules = convert::rules(req.rules)?;
        let t = Arc::clone(&loaded.tablet);
        let row = req.row.clone();
        let cells = blocking(move || t.read_modify_write(&row, rules)).await?;
        self.after(true)?;
        Ok(Response::new(pb::ReadModifyWriteRowResponse {
            row: Some(pb::Row {
                key: req.row,
                cells: cells.into_iter().map(convert::cell).collect(),
            }),
        }))
    }

    async fn sample_row_keys(
        &self,
        req: Request<pb::SampleRowKeysRequest>,
    ) -> Result<Response<pb::SampleRowKeysResponse>, Status> {
        let loaded = self.find(&req.into_inner().tablet)?;
        let samples = loaded
            .tablet
            .sample_row_keys(100)
            .into_iter()
            .map(
                |(row_key, offset_bytes)| pb::sample_row_keys_response::Sample {
                    row_key,
                    offset_bytes,
                },
            )
            .collect();
        self.after(false)?;
        Ok(Response::new(pb::SampleRowKeysResponse { samples }))
    }

    async fn load_tablet(
        &self,
        req: Request<pb::LoadTabletRequest>,
    ) -> Result<Response<pb::LoadTabletResponse>, Status> {
        let req = req.into_inner();
        self.check_master(&req.master).await?;
        self.check_addressee(&req.server_id)?;
        if !self.s.may_serve() {
            return Err(not_serving("server is not serving"));
        }
        let desc = req
            .tablet
            .ok_or_else(|| Status::invalid_argument("LoadTablet without a tablet"))?;
        if let Some(l) = self.s.tablets.read().get(&desc.tablet_id) {
            tracing::info!(tablet = desc.tablet_id, epoch = l.epoch, "already loaded");
            return Ok(Response::new(pb::LoadTabletResponse {}));
        }
        let schema = convert::schema(&desc.schema_json)?;
        let range = RowRange::new(&desc.start, &desc.end);
        let cfg = TabletConfig {
            fs: Arc::clone(&self.s.fs),
            root: self.s.root.clone(),
            dir: desc.dir.clone(),
            id: desc.tablet_id,
            epoch: Some(req.epoch),
            create: req.create.then(|| (range.clone(), schema.clone())),
            schema: Some(schema),
            log: Arc::clone(&self.s.log),
            cache: Some(Arc::clone(&self.s.cache)),
            options: self.s.options.clone(),
        };
        let tablet = match blocking(move || Tablet::open(cfg)).await {
            Ok(t) => t,
            Err(s) if s.message().contains("stale epoch") => {
                return Err(tagged(Code::FailedPrecondition, "stale-epoch", s.message()))
            }
            Err(s) => return Err(s),
        };
        if tablet.range() != &range {
            return Err(wrong_range(format!(
                "tablet {} holds {:?}, the master asked for {:?}",
                desc.tablet_id,
                tablet.range(),
                range
            )));
        }
        tracing::info!(
            tablet = desc.tablet_id,
            epoch = req.epoch,
            table = desc.table,
            "serving"
        );
        if !self.s.insert(Loaded::new(tablet, desc, req.epoch)) {
            return Err(tagged(
                Code::FailedPrecondition,
                "stale-epoch",
                format!("load at epoch {} was fenced out by an unload", req.epoch),
            ));
        }
        Ok(Response::new(pb::LoadTabletResponse {}))
    }

    async fn unload_tablet(
        &self,
        req: Request<pb::UnloadTabletRequest>,
    ) -> Result<Response<pb::UnloadTabletResponse>, Status> {
        let req = req.into_inner();
        self.check_master(&req.master).await?;
        self.check_addressee(&req.server_id)?;
        if req.fence_epoch > 0 {
            self.s.fence(req.tablet_id, req.fence_epoch);
        }
        let missing = || not_serving(format!("tablet {} is not loaded here", req.tablet_id));
        let loaded = self
            .s
            .tablets
            .read()
            .get(&req.tablet_id)
            .cloned()
            .ok_or_else(missing)?;
        let _busy = loaded.busy.lock().await;
        // A split may have replaced it while we waited.
        let loaded = self.s.remove(req.tablet_id).ok_or_else(missing)?;
        let t = Arc::clone(&loaded.tablet);
        blocking(move || {
            t.close_for_writes();
            t.force_flush()
        })
        .await?;
        crate::crashpoint::hit("unload-after-flush");
        tracing::info!(tablet = req.tablet_id, "unloaded");
        Ok(Response::new(pb::UnloadTabletResponse {}))
    }

    async fn list_tablets(
        &self,
        _req: Request<pb::ListTabletsRequest>,
    ) -> Result<Response<pb::ListTabletsResponse>, Status> {
        let tablets = self
            .s
            .tablets
            .read()
            .values()
            .map(|l| {
                let st = l.tablet.stats();
                pb::TabletStatus {
                    tablet: Some(l.desc.clone()),
                    epoch: l.epoch,
                    sst_bytes: st.sst_bytes,
                    memtable_bytes: st.memtable_bytes,
                    sstables: st.sstables.values().sum::<usize>() as u64,
                }
            })
            .collect();
        Ok(Response::new(pb::ListTabletsResponse {
            server_id: self.s.id.clone(),
            tablets,
        }))
    }

    async fn split_tablet(
        &self,
        req: Request<pb::SplitTabletRequest>,
    ) -> Result<Response<pb::SplitTabletResponse>, Status> {
        let req = req.into_inner();
        self.check_master(&req.master).await?;
        let ids = (req.left_id != 0 && req.right_id != 0).then_some((req.left_id, req.right_id));
        let (left, right) = self.s.split(req.tablet_id, req.split_row, ids).await?;
        Ok(Response::new(pb::SplitTabletResponse {
            left: Some(left),
            right: Some(right),
        }))
    }

    async fn compact_tablet(
        &self,
        req: Request<pb::CompactTabletRequest>,
    ) -> Result<Response<pb::CompactTabletResponse>, Status> {
        let req = req.into_inner();
        let loaded = self
            .s
            .tablets
            .read()
            .get(&req.tablet_id)
            .cloned()
            .ok_or_else(|| not_serving(format!("tablet {} is not served here", req.tablet_id)))?;
        let t = Arc::clone(&loaded.tablet);
        blocking(move || {
            if req.major {
                t.force_major_compaction()
            } else {
                t.force_flush()?;
                t.force_merging_compactions()
            }
        })
        .await?;
        Ok(Response::new(pb::CompactTabletResponse {}))
    }

    async fn server_status(
        &self,
        _req: Request<pb::ServerStatusRequest>,
    ) -> Result<Response<pb::ServerStatusResponse>, Status> {
        Ok(Response::new(pb::ServerStatusResponse {
            server_id: self.s.id.clone(),
            address: self.s.addr.clone(),
            lease_valid: self.s.may_serve(),
            tablets: self.s.tablets.read().len() as u64,
        }))
    }
}
