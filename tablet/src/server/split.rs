//! Splitting a served tablet (Bigtable section 5.3): by request, or when it grows past
//! the configured size.
//!
//! Order of the steps, each crash-safe:
//! 1. the engine stops the parent's writes, flushes it and writes the children's manifests
//!    (they share the parent's SSTables; nothing is copied); the parent's own manifest and
//!    files are untouched, so until step 3 the parent is still the truth;
//! 2. METADATA gets the left child's row `[start, mid)` (key `row_key(t, mid)`);
//! 3. the parent's row `row_key(t, end)` is rewritten to describe the right child
//!    `[mid, end)`: from here the children are the truth;
//! 4. the children are loaded here (epoch 1) and the parent dropped.
//!
//! Each step boundary has a named crash point ([`crate::crashpoint`]); a split and an
//! unload of one tablet never interleave (the tablet's `busy` lock).
//!
//! A crash between 2 and 3 leaves a row for the left child overlapping the parent's: the
//! master rolls the split back (deletes the left child's row) once this server is dead, and
//! the parent is reloaded from its untouched manifest. Both METADATA writes carry this
//! server's lock sequencer. If a METADATA write fails, the server stops serving (the master
//! then repairs as above) rather than guess which state METADATA is in.

use std::sync::Arc;
use std::time::Duration;

use tonic::Status;

use super::convert::{mutations_to_pb, not_serving, status};
use super::{sequencer_to_pb, Loaded, Shared};
use crate::crashpoint;
use crate::meta::{self, TabletRecord, ROOT_TABLET_PATH};
use crate::pb;
use crate::pb::master_notify_client::MasterNotifyClient;
use crate::pb::tablet_client::TabletClient;
use crate::split::ChildSpec;
use crate::tablet::{Tablet, TabletConfig};
use crate::types::TabletId;

/// How long METADATA writes of a split are retried before the server gives up serving.
const META_RETRY: Duration = Duration::from_secs(10);

fn unavailable(what: &str, e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("{what}: {e}"))
}

impl Shared {
    /// Splits tablet `parent` at `split_row` (or its middle row); `ids` are the children's
    /// ids (allocated here when `None`). Returns the children's descriptors.
    pub(crate) async fn split(
        self: &Arc<Self>,
        parent: TabletId,
        split_row: Option<Vec<u8>>,
        ids: Option<(TabletId, TabletId)>,
    ) -> Result<(pb::TabletDescriptor, pb::TabletDescriptor), Status> {
        let loaded = self
            .tablets
            .read()
            .get(&parent)
            .cloned()
            .ok_or_else(|| not_serving(format!("tablet {parent} is not served here")))?;
        if loaded.desc.table_id == meta::METADATA_TABLE_ID {
            return Err(Status::failed_precondition(
                "METADATA's tablet never splits",
            ));
        }
        // An unload of the same tablet waits for the split and then finds it gone (and a
        // split that waited for an unload finds the parent gone here).
        let _busy = loaded.busy.lock().await;
        if !self
            .tablets
            .read()
            .get(&parent)
            .is_some_and(|l| Arc::ptr_eq(l, &loaded))
        {
            return Err(not_serving(format!("tablet {parent} is not served here")));
        }
        let mid = match split_row {
            Some(r) => r,
            None => loaded.tablet.mid_row().ok_or_else(|| {
                Status::failed_precondition(format!("tablet {parent} has too little data to split"))
            })?,
        };
        let fence = self
            .session
            .sequencer(&self.server_path)
            .await
            .map_err(|e| unavailable("own sequencer", e))?;
        let (left_id, right_id) = match ids {
            Some(ids) => ids,
            None => {
                let first = meta::allocate_ids(&self.client, 2, &fence)
                    .await
                    .map_err(|e| unavailable("allocating tablet ids", e))?;
                (first, first + 1)
            }
        };
        let d = &loaded.desc;
        let child = |id: TabletId, start: &[u8], end: &[u8]| pb::TabletDescriptor {
            table: d.table.clone(),
            table_id: d.table_id,
            tablet_id: id,
            start: start.to_vec(),
            end: end.to_vec(),
            dir: TabletRecord::dir_for(d.table_id, id),
            schema_json: d.schema_json.clone(),
        };
        let left = child(left_id, &d.start, &mid);
        let right = child(right_id, &mid, &d.end);
        let (ls, rs) = (
            ChildSpec {
                id: left_id,
                dir: left.dir.clone(),
            },
            ChildSpec {
                id: right_id,
                dir: right.dir.clone(),
            },
        );
        let t = Arc::clone(&loaded.tablet);
        let m = mid.clone();
        tokio::task::spawn_blocking(move || t.split(&m, &ls, &rs))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status)?;
        tracing::info!(parent, left_id, right_id, "split: children written");
        crashpoint::hit("split-after-children-written");
        self.commit_split(parent, &left, &right, &sequencer_to_pb(&fence))
            .await?;
        self.notify_master(parent, left_id, right_id);
        crashpoint::hit("split-before-reply");
        Ok((left, right))
    }

    /// Tells the master (best effort, in the background) that a split committed, so it
    /// rescans METADATA now. Never awaited here: the master may be waiting for this very
    /// split's reply. A lost notification is repaired by the master's periodic scan.
    fn notify_master(self: &Arc<Self>, parent: TabletId, left: TabletId, right: TabletId) {
        if crashpoint::lost("split-notify-lost") {
            return;
        }
        let client = self.client.clone();
        let server_id = self.id.clone();
        tokio::spawn(async move {
            let req = pb::SplitDoneRequest {
                parent,
                left,
                right,
                server_id,
            };
            let r = tokio::time::timeout(Duration::from_secs(2), async move {
                let (addr, _) = client
                    .read(meta::MASTER_LOCK_PATH)
                    .await
                    .map_err(|e| e.to_string())?;
                let addr = String::from_utf8_lossy(&addr).into_owned();
                let mut m = MasterNotifyClient::connect(format!("http://{addr}"))
                    .await
                    .map_err(|e| e.to_string())?;
                m.split_done(req).await.map_err(|e| e.to_string())
            })
            .await;
            match r {
                Ok(Ok(_)) => tracing::debug!(parent, "master told of the split"),
                Ok(Err(e)) => tracing::warn!(parent, "telling the master of a split: {e}"),
                Err(_) => tracing::warn!(parent, "telling the master of a split: timed out"),
            }
        });
    }

    /// Steps 2-4 of the module doc: the two METADATA rows, then the children replace the
    /// parent here.
    async fn commit_split(
        &self,
        parent: TabletId,
        left: &pb::TabletDescriptor,
        right: &pb::TabletDescriptor,
        fence: &pb::Sequencer,
    ) -> Result<(), Status> {
        for (desc, point) in [
            (left, "split-after-left-row"),
            (right, "split-after-parent-row"),
        ] {
            let rec = self.record(desc);
            if let Err(e) = self.write_metadata(&rec, fence).await {
                self.stop_serving(&format!("METADATA write of a split failed: {e}"));
                return Err(e);
            }
            crashpoint::hit(point);
        }
        self.remove(parent);
        crashpoint::hit("split-before-load-children");
        for desc in [left, right] {
            self.load_child(desc).await?;
        }
        crashpoint::hit("split-after-load-children");
        tracing::info!(
            parent,
            left = left.tablet_id,
            right = right.tablet_id,
            "split committed"
        );
        Ok(())
    }

    fn record(&self, d: &pb::TabletDescriptor) -> TabletRecord {
        TabletRecord {
            table: d.table.clone(),
            table_id: d.table_id,
            tablet_id: d.tablet_id,
            start: d.start.clone(),
            end: d.end.clone(),
            dir: d.dir.clone(),
            server_id: self.id.clone(),
            server_addr: self.addr.clone(),
            epoch: 1,
        }
    }

    async fn load_child(&self, d: &pb::TabletDescriptor) -> Result<(), Status> {
        let cfg = TabletConfig {
            fs: Arc::clone(&self.fs),
            root: self.root.clone(),
            dir: d.dir.clone(),
            id: d.tablet_id,
            epoch: Some(1),
            create: None,
            schema: None,
            log: Arc::clone(&self.log),
            cache: Some(Arc::clone(&self.cache)),
            options: self.options.clone(),
        };
        let tablet = tokio::task::spawn_blocking(move || Tablet::open(cfg))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status)?;
        if !self.insert(Loaded::new(tablet, d.clone(), 1)) {
            return Err(not_serving(format!(
                "split child {} was fenced out by an unload",
                d.tablet_id
            )));
        }
        Ok(())
    }

    /// Writes one METADATA record through the server serving METADATA, fenced with this
    /// server's sequencer; retried for a while (the write is idempotent).
    async fn write_metadata(
        &self,
        rec: &TabletRecord,
        fence: &pb::Sequencer,
    ) -> Result<(), Status> {
        let deadline = tokio::time::Instant::now() + META_RETRY;
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.try_write_metadata(rec, fence).await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() + backoff < deadline => {
                    tracing::warn!(
                        tablet = rec.tablet_id,
                        "METADATA write failed, retrying: {e}"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_write_metadata(
        &self,
        rec: &TabletRecord,
        fence: &pb::Sequencer,
    ) -> Result<(), Status> {
        let (root, _) = self
            .client
            .read(ROOT_TABLET_PATH)
            .await
            .map_err(|e| unavailable("reading the METADATA location", e))?;
        let root = TabletRecord::from_json(&root).map_err(Status::unavailable)?;
        let mut c = TabletClient::connect(format!("http://{}", root.server_addr))
            .await
            .map_err(|e| unavailable("connecting to METADATA's server", e))?;
        c.mutate_row(pb::MutateRowRequest {
            tablet: Some(pb::TabletRef {
                table: meta::METADATA_TABLE.into(),
                tablet_id: meta::METADATA_TABLET_ID,
            }),
            row: rec.key(),
            mutations: mutations_to_pb(&[meta::record_mutation(rec)]),
            sequencer: Some(fence.clone()),
        })
        .await?;
        Ok(())
    }

    /// Splits, every `every`, each served tablet whose SSTables passed `split_bytes`.
    ///
    /// A split child's size counts the files it still shares with its sibling whole, so it
    /// would look as big as its parent and split again at once (a cascade of ever smaller
    /// tablets). As HBase does with reference files, such a tablet is first major-compacted
    /// (which rewrites only its own rows), and split on a later check only if it is still
    /// past the threshold.
    pub(crate) async fn auto_split(self: Arc<Self>, split_bytes: u64, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            if !self.may_serve() {
                return;
            }
            let mut big = Vec::new();
            let mut shared = Vec::new();
            for l in self.tablets.read().values() {
                let st = l.tablet.stats();
                if l.desc.table_id == meta::METADATA_TABLE_ID || st.sst_bytes < split_bytes {
                    continue;
                }
                if st.shared_sstables > 0 {
                    shared.push((l.desc.tablet_id, Arc::clone(&l.tablet)));
                } else {
                    big.push(l.desc.tablet_id);
                }
            }
            for (id, t) in shared {
                match tokio::task::spawn_blocking(move || t.force_major_compaction()).await {
                    Ok(Ok(())) => {
                        tracing::info!(tablet = id, "compacted away files shared by a split")
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(tablet = id, "compaction before a split failed: {e}")
                    }
                    Err(e) => tracing::warn!(tablet = id, "compaction before a split failed: {e}"),
                }
            }
            for id in big {
                match self.split(id, None, None).await {
                    Ok((l, r)) => tracing::info!(
                        tablet = id,
                        left = l.tablet_id,
                        right = r.tablet_id,
                        "auto split"
                    ),
                    Err(e) => tracing::warn!(tablet = id, "auto split failed: {}", e.message()),
                }
            }
        }
    }
}
