//! A scripted stand-in for tablet servers, and a real one-replica lock service, to test the
//! client's routing and retry rules over real gRPC.
//!
//! The client is the thing under test; the servers here are its peers, reduced to what
//! the rules need: a shared "data root" (`World`: rows and METADATA records), servers that
//! serve a set of tablets and answer `not-serving` / `wrong-range` like real ones, and a
//! script of faults per RPC (fail before applying, fail after applying, lose the reply,
//! break a stream after some rows) with a count of every call, so tests can prove how many
//! times the client sent a request. Semantics of cells are minimal (a set replaces the same
//! column and timestamp, a row delete clears the row, an increment adds to an 8-byte
//! big-endian counter, a check-and-mutate predicate matches a row with any cell).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use client::pb;
use client::pb::tablet_server::{Tablet, TabletServer};
use futures::Stream;
use lockservice::client::{Client as LockClient, ClientConfig as LockConfig};
use lockservice::clock::MonotonicClock;
use lockservice::lease::LeaseConfig;
use lockservice::raft::{Compaction, RaftTiming};
use lockservice::server::{Replica, ReplicaConfig};
use parking_lot::Mutex;
use tablet::meta::{self, TableInfo, TabletRecord};
use tablet::Schema;
use tonic::{Request, Response, Status};

/// What goes wrong on a scripted call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer `not-serving` without doing anything.
    NotServingBefore,
    /// Answer `not-serving` without doing anything, and say so (`quarry-outcome=none`).
    NotServingVouched,
    /// Do the work, then answer `not-serving` (a lease found lapsed before replying).
    NotServingAfter,
    /// Answer `wrong-range` without doing anything.
    WrongRange,
    /// Do the work, then fail as a lost reply would (UNAVAILABLE, no routing tag).
    LostReply,
    /// (ReadRows) send this many rows, then break the stream.
    BreakAfterRows(usize),
}

/// The shared data root: user rows and METADATA.
#[derive(Default)]
pub struct World {
    /// (table, row) -> cells.
    pub rows: BTreeMap<(String, Vec<u8>), Vec<pb::Cell>>,
    /// METADATA key -> record.
    pub metadata: BTreeMap<Vec<u8>, TabletRecord>,
}

/// One fake tablet server's state.
#[derive(Default)]
pub struct ServerState {
    /// (table, tablet id) -> [start, end) this server serves.
    pub serves: BTreeMap<(String, u64), (Vec<u8>, Vec<u8>)>,
    /// Faults to inject, by method, in order.
    pub faults: VecDeque<(&'static str, Fault)>,
    /// Calls received, by method (METADATA reads counted as `read_metadata`).
    pub calls: HashMap<&'static str, u32>,
}

/// A running fake tablet server.
#[derive(Clone)]
pub struct FakeServer {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<ServerState>>,
    world: Arc<Mutex<World>>,
}

impl FakeServer {
    /// Starts a server on a free loopback port.
    pub async fn start(world: Arc<Mutex<World>>) -> FakeServer {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let s = FakeServer {
            addr,
            state: Arc::new(Mutex::new(ServerState::default())),
            world,
        };
        let svc = TabletServer::new(s.clone());
        let incoming = tonic::transport::server::TcpIncoming::from(l);
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
        s
    }

    /// Serves `(table, tablet)` over `[start, end)`.
    pub fn serve(&self, table: &str, tablet: u64, start: &[u8], end: &[u8]) {
        self.state
            .lock()
            .serves
            .insert((table.into(), tablet), (start.to_vec(), end.to_vec()));
    }

    /// Stops serving a tablet.
    pub fn unserve(&self, table: &str, tablet: u64) {
        self.state
            .lock()
            .serves
            .remove(&(table.to_string(), tablet));
    }

    /// Queues a fault for the next call of `method`.
    pub fn inject(&self, method: &'static str, f: Fault) {
        self.state.lock().faults.push_back((method, f));
    }

    /// Calls of `method` so far.
    pub fn calls(&self, method: &'static str) -> u32 {
        self.state.lock().calls.get(method).copied().unwrap_or(0)
    }

    /// Counts the call, checks routing, and pops this method's next fault. `Ok(after)`
    /// carries a fault to apply after the work.
    fn admit(
        &self,
        method: &'static str,
        tref: &Option<pb::TabletRef>,
        rows: &[&[u8]],
    ) -> Result<Option<Fault>, Status> {
        let mut st = self.state.lock();
        let tref = tref
            .clone()
            .ok_or_else(|| Status::invalid_argument("no tablet"))?;
        let method = if tref.table == meta::METADATA_TABLE {
            "read_metadata"
        } else {
            method
        };
        *st.calls.entry(method).or_default() += 1;
        let Some((start, end)) = st
            .serves
            .get(&(tref.table.clone(), tref.tablet_id))
            .cloned()
        else {
            return Err(tagged(tonic::Code::Unavailable, "not-serving"));
        };
        let fault = st
            .faults
            .iter()
            .position(|(m, _)| *m == method)
            .and_then(|i| st.faults.remove(i))
            .map(|(_, f)| f);
        match fault {
            Some(Fault::NotServingVouched) => {
                let mut st = tagged(tonic::Code::Unavailable, "not-serving");
                st.metadata_mut()
                    .insert(client::retry::OUTCOME_KEY, "none".parse().unwrap());
                return Err(st);
            }
            Some(Fault::NotServingBefore) => {
                return Err(tagged(tonic::Code::Unavailable, "not-serving"))
            }
            Some(Fault::WrongRange) => {
                return Err(tagged(tonic::Code::FailedPrecondition, "wrong-range"))
            }
            _ => {}
        }
        for r in rows {
            if *r < start.as_slice() || (!end.is_empty() && *r >= end.as_slice()) {
                return Err(tagged(tonic::Code::FailedPrecondition, "wrong-range"));
            }
        }
        Ok(fault)
    }

    fn range_of(&self, tref: &pb::TabletRef) -> (Vec<u8>, Vec<u8>) {
        self.state.lock().serves[&(tref.table.clone(), tref.tablet_id)].clone()
    }

    fn apply(&self, table: &str, row: &[u8], muts: &[pb::Mutation]) {
        let mut w = self.world.lock();
        let cells = w.rows.entry((table.to_string(), row.to_vec())).or_default();
        for m in muts {
            match m.kind.as_ref().unwrap() {
                pb::mutation::Kind::SetCell(s) => {
                    cells.retain(|c| {
                        !(c.family == s.family
                            && c.qualifier == s.qualifier
                            && c.timestamp == s.timestamp)
                    });
                    cells.push(pb::Cell {
                        family: s.family.clone(),
                        qualifier: s.qualifier.clone(),
                        timestamp: s.timestamp,
                        value: s.value.clone(),
                    });
                    cells.sort_by(|a, b| {
                        (&a.family, &a.qualifier, b.timestamp).cmp(&(
                            &b.family,
                            &b.qualifier,
                            a.timestamp,
                        ))
                    });
                }
                pb::mutation::Kind::DeleteFromRow(_) => cells.clear(),
                k => panic!("fake server does not do {k:?}"),
            }
        }
        if cells.is_empty() {
            w.rows.remove(&(table.to_string(), row.to_vec()));
        }
    }

    fn after(fault: Option<Fault>) -> Result<(), Status> {
        match fault {
            Some(Fault::NotServingAfter) => Err(tagged(tonic::Code::Unavailable, "not-serving")),
            Some(Fault::LostReply) => Err(Status::unavailable("connection reset (lost reply)")),
            _ => Ok(()),
        }
    }

    /// Rows of a ReadRows request, clipped to the tablet.
    fn select(&self, req: &pb::ReadRowsRequest) -> Vec<pb::Row> {
        let tref = req.tablet.clone().unwrap();
        let (start, end) = self.range_of(&tref);
        let in_tablet = |k: &[u8]| k >= start.as_slice() && (end.is_empty() || k < end.as_slice());
        let wanted = |k: &[u8]| {
            req.rows.iter().any(|r| r == k)
                || req
                    .ranges
                    .iter()
                    .any(|r| k >= r.start.as_slice() && (r.end.is_empty() || k < r.end.as_slice()))
        };
        let w = self.world.lock();
        let mut rows: Vec<pb::Row> = if tref.table == meta::METADATA_TABLE {
            w.metadata
                .iter()
                .filter(|(k, _)| in_tablet(k) && wanted(k))
                .map(|(k, r)| pb::Row {
                    key: k.clone(),
                    cells: vec![pb::Cell {
                        family: meta::FAMILY.into(),
                        qualifier: meta::QUALIFIER.to_vec(),
                        timestamp: 1,
                        value: r.to_json(),
                    }],
                })
                .collect()
        } else if !req.rows.is_empty() && req.ranges.is_empty() {
            // Point reads are answered as the tablet server does: in request order,
            // a key named twice answered twice, missing rows left out.
            req.rows
                .iter()
                .filter(|k| in_tablet(k))
                .filter_map(|k| {
                    let cells = w.rows.get(&(tref.table.clone(), k.clone()))?;
                    Some(pb::Row {
                        key: k.clone(),
                        cells: cells.clone(),
                    })
                })
                .collect()
        } else {
            w.rows
                .iter()
                .filter(|((t, k), _)| *t == tref.table && in_tablet(k) && wanted(k))
                .map(|((_, k), cells)| pb::Row {
                    key: k.clone(),
                    cells: cells.clone(),
                })
                .collect()
        };
        if req.rows_limit > 0 {
            rows.truncate(req.rows_limit as usize);
        }
        rows
    }
}

/// A status carrying a routing tag.
pub fn tagged(code: tonic::Code, tag: &'static str) -> Status {
    let mut s = Status::new(code, tag);
    s.metadata_mut()
        .insert(client::retry::ERROR_KEY, tag.parse().unwrap());
    s
}

type RowStream = Pin<Box<dyn Stream<Item = Result<pb::ReadRowsResponse, Status>> + Send>>;
type MultiStream = Pin<Box<dyn Stream<Item = Result<pb::ReadRowsMultiResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Tablet for FakeServer {
    async fn mutate_row(
        &self,
        r: Request<pb::MutateRowRequest>,
    ) -> Result<Response<pb::MutateRowResponse>, Status> {
        let r = r.into_inner();
        let after = self.admit("mutate_row", &r.tablet, &[&r.row])?;
        self.apply(&r.tablet.unwrap().table, &r.row, &r.mutations);
        Self::after(after)?;
        Ok(Response::new(pb::MutateRowResponse {}))
    }

    async fn mutate_rows(
        &self,
        r: Request<pb::MutateRowsRequest>,
    ) -> Result<Response<pb::MutateRowsResponse>, Status> {
        let r = r.into_inner();
        let rows: Vec<&[u8]> = r.entries.iter().map(|e| e.row.as_slice()).collect();
        let after = self.admit("mutate_rows", &r.tablet, &rows)?;
        let table = r.tablet.clone().unwrap().table;
        let mut statuses = Vec::new();
        for (i, e) in r.entries.iter().enumerate() {
            self.apply(&table, &e.row, &e.mutations);
            statuses.push(pb::mutate_rows_response::EntryStatus {
                index: i as u32,
                code: 0,
                message: String::new(),
            });
        }
        Self::after(after)?;
        Ok(Response::new(pb::MutateRowsResponse { statuses }))
    }

    type ReadRowsStream = RowStream;

    async fn read_rows(
        &self,
        r: Request<pb::ReadRowsRequest>,
    ) -> Result<Response<RowStream>, Status> {
        let r = r.into_inner();
        let after = self.admit("read_rows", &r.tablet, &[])?;
        let rows = self.select(&r);
        let mut msgs: Vec<Result<pb::ReadRowsResponse, Status>> = Vec::new();
        let cut = match after {
            Some(Fault::BreakAfterRows(n)) => Some(n),
            _ => None,
        };
        let sent: Vec<pb::Row> = rows
            .iter()
            .take(cut.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        for chunk in sent.chunks(2) {
            msgs.push(Ok(pb::ReadRowsResponse {
                rows: chunk.to_vec(),
                done: false,
            }));
        }
        match cut {
            Some(_) => msgs.push(Err(Status::unavailable("stream broken"))),
            None => msgs.push(Ok(pb::ReadRowsResponse {
                rows: vec![],
                done: true,
            })),
        }
        Ok(Response::new(Box::pin(futures::stream::iter(msgs))))
    }

    type ReadRowsMultiStream = MultiStream;

    /// Each read is admitted on its own (counted as `read_rows_multi`); one the fake does
    /// not serve fails alone, with its routing tag.
    async fn read_rows_multi(
        &self,
        r: Request<pb::ReadRowsMultiRequest>,
    ) -> Result<Response<MultiStream>, Status> {
        let r = r.into_inner();
        let mut msgs = Vec::new();
        for (i, read) in r.reads.into_iter().enumerate() {
            let keys: Vec<&[u8]> = read.rows.iter().map(|k| k.as_slice()).collect();
            let msg = match self.admit("read_rows_multi", &read.tablet, &keys) {
                Err(s) => tablet::server::convert::multi_failure(i as u32, &s),
                Ok(_) => {
                    let req = pb::ReadRowsRequest {
                        tablet: read.tablet.clone(),
                        rows: read.rows.clone(),
                        ..Default::default()
                    };
                    pb::ReadRowsMultiResponse {
                        read: i as u32,
                        rows: self.select(&req),
                        done: true,
                        ..Default::default()
                    }
                }
            };
            msgs.push(Ok(msg));
        }
        Ok(Response::new(Box::pin(futures::stream::iter(msgs))))
    }

    async fn check_and_mutate_row(
        &self,
        r: Request<pb::CheckAndMutateRowRequest>,
    ) -> Result<Response<pb::CheckAndMutateRowResponse>, Status> {
        let r = r.into_inner();
        let after = self.admit("check_and_mutate", &r.tablet, &[&r.row])?;
        let table = r.tablet.clone().unwrap().table;
        let matched = self
            .world
            .lock()
            .rows
            .contains_key(&(table.clone(), r.row.clone()));
        let muts = if matched {
            &r.true_mutations
        } else {
            &r.false_mutations
        };
        self.apply(&table, &r.row, muts);
        Self::after(after)?;
        Ok(Response::new(pb::CheckAndMutateRowResponse {
            predicate_matched: matched,
        }))
    }

    async fn read_modify_write_row(
        &self,
        r: Request<pb::ReadModifyWriteRowRequest>,
    ) -> Result<Response<pb::ReadModifyWriteRowResponse>, Status> {
        let r = r.into_inner();
        let after = self.admit("read_modify_write", &r.tablet, &[&r.row])?;
        let table = r.tablet.clone().unwrap().table;
        let mut out = Vec::new();
        for rule in &r.rules {
            let Some(pb::read_modify_write_rule::Rule::IncrementAmount(d)) = rule.rule else {
                panic!("fake server only increments");
            };
            let old = self
                .world
                .lock()
                .rows
                .get(&(table.clone(), r.row.clone()))
                .and_then(|cells| {
                    cells
                        .iter()
                        .find(|c| c.family == rule.family && c.qualifier == rule.qualifier)
                })
                .map(|c| i64::from_be_bytes(c.value.clone().try_into().unwrap()))
                .unwrap_or(0);
            let cell = pb::Cell {
                family: rule.family.clone(),
                qualifier: rule.qualifier.clone(),
                timestamp: 1,
                value: (old + d).to_be_bytes().to_vec(),
            };
            let m = pb::Mutation {
                kind: Some(pb::mutation::Kind::SetCell(pb::mutation::SetCell {
                    family: cell.family.clone(),
                    qualifier: cell.qualifier.clone(),
                    timestamp: 1,
                    value: cell.value.clone(),
                })),
            };
            self.apply(&table, &r.row, &[m]);
            out.push(cell);
        }
        Self::after(after)?;
        Ok(Response::new(pb::ReadModifyWriteRowResponse {
            row: Some(pb::Row {
                key: r.row,
                cells: out,
            }),
        }))
    }

    async fn sample_row_keys(
        &self,
        r: Request<pb::SampleRowKeysRequest>,
    ) -> Result<Response<pb::SampleRowKeysResponse>, Status> {
        let r = r.into_inner();
        self.admit("sample_row_keys", &r.tablet, &[])?;
        let (_, end) = self.range_of(&r.tablet.unwrap());
        Ok(Response::new(pb::SampleRowKeysResponse {
            samples: vec![pb::sample_row_keys_response::Sample {
                row_key: end,
                offset_bytes: 100,
            }],
        }))
    }

    async fn load_tablet(
        &self,
        _: Request<pb::LoadTabletRequest>,
    ) -> Result<Response<pb::LoadTabletResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn unload_tablet(
        &self,
        _: Request<pb::UnloadTabletRequest>,
    ) -> Result<Response<pb::UnloadTabletResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_tablets(
        &self,
        _: Request<pb::ListTabletsRequest>,
    ) -> Result<Response<pb::ListTabletsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn split_tablet(
        &self,
        _: Request<pb::SplitTabletRequest>,
    ) -> Result<Response<pb::SplitTabletResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn compact_tablet(
        &self,
        _: Request<pb::CompactTabletRequest>,
    ) -> Result<Response<pb::CompactTabletResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn server_status(
        &self,
        _: Request<pb::ServerStatusRequest>,
    ) -> Result<Response<pb::ServerStatusResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// A one-replica lock service on a free port, with the namespace a cluster would have.
pub struct LockService {
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub replica: Replica,
}

impl LockService {
    pub async fn start() -> LockService {
        let dir = tempfile::tempdir().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = l.local_addr().unwrap();
        drop(l);
        let cfg = ReplicaConfig {
            id: 1,
            listen,
            peers: [(1, listen.to_string())].into_iter().collect(),
            data_dir: dir.path().join("lock"),
            bootstrap: true,
            lease: LeaseConfig {
                lease: Duration::from_millis(1500),
                lock_delay: Duration::from_millis(500),
            },
            compaction: Compaction::default(),
            timing: RaftTiming {
                heartbeat: Duration::from_millis(50),
                election_base: Duration::from_millis(150),
                election_width: Duration::from_millis(100),
            },
        };
        let replica = Replica::start(cfg, sstable::RealFs::shared(), Arc::new(MonotonicClock))
            .await
            .unwrap();
        LockService {
            dir,
            addr: listen.to_string(),
            replica,
        }
    }

    pub fn client(&self) -> LockClient {
        LockClient::new(LockConfig::new(vec![self.addr.clone()])).unwrap()
    }

    /// Creates `/quarry`, `/quarry/tables` (retrying while the replica elects itself).
    pub async fn init(&self) {
        let c = self.client();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match c.create("/quarry", true, b"").await {
                Ok(_) | Err(lockservice::Error::AlreadyExists(_)) => break,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!("lock service not ready: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("lock service never became ready: {e}"),
            }
        }
        c.create(meta::TABLES_DIR, true, b"").await.unwrap();
    }

    /// Writes (creating if needed) a file.
    pub async fn put(&self, path: &str, content: &[u8]) {
        let c = self.client();
        match c.create(path, false, content).await {
            Ok(_) => {}
            Err(lockservice::Error::AlreadyExists(_)) => {
                c.write(path, content, None, None).await.unwrap();
            }
            Err(e) => panic!("{path}: {e}"),
        }
    }

    /// Publishes table `name` with id `id` and family `f`.
    pub async fn put_table(&self, name: &str, id: u64) {
        let info = TableInfo {
            name: name.into(),
            id,
            schema: Schema::with_families(["f"]),
        };
        self.put(
            &format!("{}/{name}", meta::TABLES_DIR),
            &serde_json::to_vec(&info).unwrap(),
        )
        .await;
    }
}

/// A METADATA record.
pub fn record(
    table: &str,
    table_id: u64,
    tablet: u64,
    start: &[u8],
    end: &[u8],
    addr: &str,
    epoch: u64,
) -> TabletRecord {
    TabletRecord {
        table: table.into(),
        table_id,
        tablet_id: tablet,
        start: start.to_vec(),
        end: end.to_vec(),
        dir: TabletRecord::dir_for(table_id, tablet),
        server_id: if addr.is_empty() {
            String::new()
        } else {
            format!("srv-{addr}")
        },
        server_addr: addr.into(),
        epoch,
    }
}
