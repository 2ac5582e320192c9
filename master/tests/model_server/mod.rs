//! An in-memory model of the tablet server's management protocol, for testing the master
//! against a real lock service without the storage engine.
//!
//! It is not a stand-in for the thing under test (the master): it models a *dependency*
//! with the rules the master relies on, and checks them:
//! - it registers like a tablet server (file in `/quarry/servers/`, exclusive lock);
//! - `LoadTablet` checks the master's sequencer with the lock service and rejects an epoch
//!   not above every earlier load of the tablet (the "manifest epochs" live in a [`Disk`]
//!   shared by every model server, as the data root is);
//! - METADATA rows live on that shared disk and are served only by the server that has
//!   tablet 0 loaded; writes need a current sequencer;
//! - every load is checked against every other *live* model server: a tablet loaded on
//!   two live servers at once is recorded as a violation.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lockservice::client::{Client, Session};
use lockservice::state::{LockMode, Sequencer};
use master::tpb;
use master::tpb::tablet_server::{Tablet, TabletServer};
use parking_lot::Mutex;
use tablet::meta::{ServerInfo, SERVERS_DIR};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// State shared by all model servers: the "data root".
#[derive(Default)]
pub struct Disk {
    /// Highest epoch each tablet was ever loaded at.
    pub epochs: BTreeMap<u64, u64>,
    /// METADATA's rows: key -> record JSON.
    pub meta_rows: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Tablets loaded per live server.
    pub loaded: BTreeMap<String, BTreeMap<u64, u64>>,
    /// Servers considered alive (not killed).
    pub alive: BTreeSet<String>,
    /// Broken rules, described.
    pub violations: Vec<String>,
    /// Every accepted load: (tablet, server, epoch, when).
    pub loads: Vec<(u64, String, u64, std::time::Instant)>,
}

/// A running model server.
pub struct ModelServer {
    pub id: String,
    session: Option<Session>,
    task: tokio::task::JoinHandle<()>,
    disk: Arc<Mutex<Disk>>,
    dead: Arc<AtomicBool>,
}

impl ModelServer {
    /// Registers `id` and serves on a free port.
    pub async fn start(id: &str, client: Client, disk: Arc<Mutex<Disk>>) -> ModelServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let session = client.open_session(id).await.unwrap();
        for d in ["/quarry", SERVERS_DIR] {
            let _ = client.create(d, true, b"").await;
        }
        let path = format!("{SERVERS_DIR}/{id}");
        let info = ServerInfo {
            id: id.into(),
            addr: addr.to_string(),
        };
        client
            .create(&path, false, &serde_json::to_vec(&info).unwrap())
            .await
            .unwrap();
        session
            .try_acquire(&path, LockMode::Exclusive)
            .await
            .unwrap();
        disk.lock().alive.insert(id.to_string());
        disk.lock().loaded.insert(id.to_string(), BTreeMap::new());
        let dead = Arc::new(AtomicBool::new(false));
        let svc = Model {
            id: id.to_string(),
            client,
            disk: disk.clone(),
            dead: dead.clone(),
        };
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(TabletServer::new(svc))
                .serve_with_incoming(incoming)
                .await;
        });
        ModelServer {
            id: id.to_string(),
            session: Some(session),
            task,
            disk,
            dead,
        }
    }

    /// As kill -9: stops answering and stops its KeepAlives (its session expires later).
    pub fn kill(&mut self) {
        // Connections already open outlive the server task: the flag silences them too.
        self.dead.store(true, Ordering::SeqCst);
        self.task.abort();
        self.session.take();
        let mut d = self.disk.lock();
        d.alive.remove(&self.id);
        d.loaded.remove(&self.id);
    }
}

struct Model {
    id: String,
    client: Client,
    disk: Arc<Mutex<Disk>>,
    dead: Arc<AtomicBool>,
}

fn seq_from(s: &Option<tpb::Sequencer>) -> Result<Sequencer, Status> {
    let s = s
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("no sequencer"))?;
    let mode = match s.mode.as_str() {
        "exclusive" => LockMode::Exclusive,
        "shared" => LockMode::Shared,
        m => return Err(Status::invalid_argument(format!("mode {m}"))),
    };
    Ok(Sequencer {
        path: s.path.clone(),
        mode,
        generation: s.generation,
    })
}

fn tagged(code: tonic::Code, tag: &str, msg: String) -> Status {
    let mut s = Status::new(code, msg);
    s.metadata_mut()
        .insert("quarry-error", tag.parse().unwrap());
    s
}

impl Model {
    /// A killed server answers nothing (as a closed connection would).
    fn alive(&self) -> Result<(), Status> {
        if self.dead.load(Ordering::SeqCst) {
            Err(Status::unavailable("connection refused (killed)"))
        } else {
            Ok(())
        }
    }

    async fn check(&self, s: &Option<tpb::Sequencer>) -> Result<(), Status> {
        let seq = seq_from(s)?;
        self.client.check_sequencer(&seq).await.map_err(|e| {
            tagged(
                tonic::Code::FailedPrecondition,
                "stale-sequencer",
                e.to_string(),
            )
        })
    }

    fn serves_meta(&self) -> Result<(), Status> {
        let d = self.disk.lock();
        if d.loaded.get(&self.id).is_some_and(|l| l.contains_key(&0)) {
            Ok(())
        } else {
            Err(tagged(
                tonic::Code::Unavailable,
                "not-serving",
                "METADATA not here".into(),
            ))
        }
    }
}

type RowStream = Pin<Box<dyn Stream<Item = Result<tpb::ReadRowsResponse, Status>> + Send>>;
type MultiStream = Pin<Box<dyn Stream<Item = Result<tpb::ReadRowsMultiResponse, Status>> + Send>>;

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not modelled"))
}

#[tonic::async_trait]
impl Tablet for Model {
    async fn mutate_row(
        &self,
        req: Request<tpb::MutateRowRequest>,
    ) -> Result<Response<tpb::MutateRowResponse>, Status> {
        self.alive()?;
        self.serves_meta()?;
        let r = req.into_inner();
        self.check(&r.sequencer).await?;
        let mut d = self.disk.lock();
        for m in r.mutations {
            match m.kind {
                Some(tpb::mutation::Kind::SetCell(c)) => {
                    d.meta_rows.insert(r.row.clone(), c.value);
                }
                Some(tpb::mutation::Kind::DeleteFromRow(_)) => {
                    d.meta_rows.remove(&r.row);
                }
                _ => return Err(Status::unimplemented("mutation kind")),
            }
        }
        Ok(Response::new(tpb::MutateRowResponse {}))
    }

    async fn mutate_rows(
        &self,
        _: Request<tpb::MutateRowsRequest>,
    ) -> Result<Response<tpb::MutateRowsResponse>, Status> {
        unimplemented()
    }

    type ReadRowsStream = RowStream;

    async fn read_rows(
        &self,
        req: Request<tpb::ReadRowsRequest>,
    ) -> Result<Response<RowStream>, Status> {
        self.alive()?;
        self.serves_meta()?;
        let r = req.into_inner();
        let d = self.disk.lock();
        let mut rows = Vec::new();
        for (k, v) in &d.meta_rows {
            let inside = r.ranges.iter().any(|g| {
                k.as_slice() >= g.start.as_slice()
                    && (g.end.is_empty() || k.as_slice() < g.end.as_slice())
            });
            if inside {
                rows.push(tpb::Row {
                    key: k.clone(),
                    cells: vec![tpb::Cell {
                        family: "loc".into(),
                        qualifier: b"record".to_vec(),
                        timestamp: 0,
                        value: v.clone(),
                    }],
                });
            }
        }
        let msg = tpb::ReadRowsResponse { rows, done: true };
        Ok(Response::new(Box::pin(tokio_stream::iter(vec![Ok(msg)]))))
    }

    type ReadRowsMultiStream = MultiStream;

    async fn read_rows_multi(
        &self,
        _: Request<tpb::ReadRowsMultiRequest>,
    ) -> Result<Response<MultiStream>, Status> {
        unimplemented()
    }

    async fn check_and_mutate_row(
        &self,
        _: Request<tpb::CheckAndMutateRowRequest>,
    ) -> Result<Response<tpb::CheckAndMutateRowResponse>, Status> {
        unimplemented()
    }

    async fn read_modify_write_row(
        &self,
        _: Request<tpb::ReadModifyWriteRowRequest>,
    ) -> Result<Response<tpb::ReadModifyWriteRowResponse>, Status> {
        unimplemented()
    }

    async fn sample_row_keys(
        &self,
        _: Request<tpb::SampleRowKeysRequest>,
    ) -> Result<Response<tpb::SampleRowKeysResponse>, Status> {
        unimplemented()
    }

    async fn load_tablet(
        &self,
        req: Request<tpb::LoadTabletRequest>,
    ) -> Result<Response<tpb::LoadTabletResponse>, Status> {
        self.alive()?;
        let r = req.into_inner();
        self.check(&r.master).await?;
        let t = r
            .tablet
            .ok_or_else(|| Status::invalid_argument("no tablet"))?;
        let mut d = self.disk.lock();
        let last = d.epochs.get(&t.tablet_id).copied().unwrap_or(0);
        if r.epoch <= last {
            return Err(tagged(
                tonic::Code::FailedPrecondition,
                "stale-epoch",
                format!("epoch {} not above {last}", r.epoch),
            ));
        }
        let mut clash = Vec::new();
        for (other, tablets) in &d.loaded {
            if *other != self.id && d.alive.contains(other) && tablets.contains_key(&t.tablet_id) {
                clash.push(format!(
                    "tablet {} loaded on {} while live on {other}",
                    t.tablet_id, self.id
                ));
            }
        }
        d.violations.extend(clash);
        d.epochs.insert(t.tablet_id, r.epoch);
        d.loads.push((
            t.tablet_id,
            self.id.clone(),
            r.epoch,
            std::time::Instant::now(),
        ));
        d.loaded
            .entry(self.id.clone())
            .or_default()
            .insert(t.tablet_id, r.epoch);
        Ok(Response::new(tpb::LoadTabletResponse {}))
    }

    async fn unload_tablet(
        &self,
        req: Request<tpb::UnloadTabletRequest>,
    ) -> Result<Response<tpb::UnloadTabletResponse>, Status> {
        self.alive()?;
        let r = req.into_inner();
        self.check(&r.master).await?;
        let mut d = self.disk.lock();
        let removed = d
            .loaded
            .get_mut(&self.id)
            .and_then(|l| l.remove(&r.tablet_id));
        match removed {
            Some(_) => Ok(Response::new(tpb::UnloadTabletResponse {})),
            None => Err(tagged(
                tonic::Code::Unavailable,
                "not-serving",
                "not loaded".into(),
            )),
        }
    }

    async fn list_tablets(
        &self,
        _: Request<tpb::ListTabletsRequest>,
    ) -> Result<Response<tpb::ListTabletsResponse>, Status> {
        self.alive()?;
        let d = self.disk.lock();
        let tablets = d
            .loaded
            .get(&self.id)
            .map(|l| {
                l.iter()
                    .map(|(t, e)| tpb::TabletStatus {
                        tablet: Some(tpb::TabletDescriptor {
                            tablet_id: *t,
                            ..Default::default()
                        }),
                        epoch: *e,
                        ..Default::default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Response::new(tpb::ListTabletsResponse {
            server_id: self.id.clone(),
            tablets,
        }))
    }

    async fn split_tablet(
        &self,
        _: Request<tpb::SplitTabletRequest>,
    ) -> Result<Response<tpb::SplitTabletResponse>, Status> {
        unimplemented()
    }

    async fn compact_tablet(
        &self,
        _: Request<tpb::CompactTabletRequest>,
    ) -> Result<Response<tpb::CompactTabletResponse>, Status> {
        unimplemented()
    }

    async fn server_status(
        &self,
        _: Request<tpb::ServerStatusRequest>,
    ) -> Result<Response<tpb::ServerStatusResponse>, Status> {
        unimplemented()
    }
}
