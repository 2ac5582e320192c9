//! The tablet server: serves loaded tablets over gRPC, under a lock-service lease.
//!
//! ## Registration (Bigtable section 5.2)
//! On start the server opens a lock-service session, creates its file
//! `/quarry/servers/<server_id>` (a fresh id per incarnation: `<name>-<session id>`) and
//! takes an exclusive lock on it. Its commit log is `<root>/logs/<server_id>/`, so no two
//! incarnations ever share a log.
//!
//! ## The lease rules it follows (DESIGN.md section 5)
//! - It serves only while its local lease is valid: every data request checks the lease
//!   before starting and again *after* the read or write and *before* replying; when the
//!   lease has lapsed the reply is `not-serving` and the client goes elsewhere. A read
//!   whose check passed happened before the lease ended, hence before the session could
//!   expire at the lock service, hence before any new owner loaded the tablet; a write
//!   whose check passed was fsynced before that, hence before the new owner's seal.
//! - When the session is lost, or its server file is deleted (the master does that once it
//!   holds the server's lock), it stops serving every tablet and exits. It does not
//!   re-register: a supervisor restarts it as a new incarnation.
//! - Management requests (load, unload, split) carry the master's sequencer, which is
//!   checked with the lock service; METADATA writes carry the writer's sequencer.
//! - Loading a tablet uses the epoch the master chose; the engine refuses an epoch that is
//!   not above the manifest's, and seals the logs it replays (rule 7).

pub mod convert;
pub mod log_gc;
pub mod ownership;
mod service;
mod split;
pub mod status;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lockservice::client::{Client, ClientConfig, Session};
use lockservice::state::{LockMode, Sequencer};
use parking_lot::RwLock;
use sstable::cache::BlockCache;
use sstable::Fs;

use crate::commitlog::{CommitLog, CommitLogOptions};
use crate::error::{Error, Result};
use crate::meta::{ServerInfo, SERVERS_DIR};
use crate::pb;
use crate::tablet::{Tablet, TabletOptions};
use crate::types::{Epoch, TabletId};

pub use service::TabletService;
pub use status::{ServerStatus, ServerView, TabletStatus};

/// Largest gRPC message in either direction (a 64 MiB row mutation plus framing).
pub const MAX_MESSAGE: usize = 80 << 20;

/// How a tablet server runs.
#[derive(Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Address others use to reach it (default: `listen`).
    pub advertise: String,
    /// The shared data root.
    pub root: PathBuf,
    /// Lock-service replicas.
    pub lock_addrs: Vec<String>,
    /// A readable name; the server id is `<name>-<session id>`.
    pub name: String,
    /// Engine tuning for every tablet.
    pub tablet_options: TabletOptions,
    /// Commit-log tuning.
    pub log_options: CommitLogOptions,
    /// Block cache size in bytes.
    pub cache_bytes: u64,
    /// How often the server checks that its server file still exists.
    pub check_interval: Duration,
    /// Split a tablet whose SSTables pass this many bytes.
    pub split_bytes: u64,
    /// How often tablet sizes are checked against `split_bytes`.
    pub split_check: Duration,
}

/// A loaded tablet and what the master said about it.
pub(crate) struct Loaded {
    pub tablet: Arc<Tablet>,
    pub desc: pb::TabletDescriptor,
    pub epoch: Epoch,
    /// Held by a split or an unload for its whole duration, so the two never interleave:
    /// an unload that waited for a split finds the parent gone and says so, and the master
    /// does not then reassign (and rewrite the METADATA row of) a tablet that was split.
    pub busy: tokio::sync::Mutex<()>,
}

impl Loaded {
    pub(crate) fn new(tablet: Tablet, desc: pb::TabletDescriptor, epoch: Epoch) -> Loaded {
        Loaded {
            tablet: Arc::new(tablet),
            desc,
            epoch,
            busy: tokio::sync::Mutex::new(()),
        }
    }
}

/// Everything the service shares.
pub(crate) struct Shared {
    pub id: String,
    pub addr: String,
    pub root: PathBuf,
    pub fs: Arc<dyn Fs>,
    pub log: Arc<CommitLog>,
    pub cache: Arc<BlockCache>,
    pub options: TabletOptions,
    pub tablets: RwLock<BTreeMap<TabletId, Arc<Loaded>>>,
    pub session: Arc<Session>,
    /// This server's file in the lock service (it holds the file's lock).
    pub server_path: String,
    pub client: Client,
    /// Makes `run` return (the process exits) with the reason.
    pub stop: tokio::sync::mpsc::Sender<String>,
    /// Cleared for good when the lease is lost or the server file disappears.
    pub serving: AtomicBool,
    /// The newest master lock generation seen; lower ones are stale.
    pub master_generation: AtomicU64,
    /// When this server served which tablet.
    pub ownership: ownership::OwnershipLog,
    /// Directory of every tablet this incarnation ever loaded (their manifests bound which
    /// of its own commit-log segments may be deleted; see `log_gc`).
    pub log_users: parking_lot::Mutex<std::collections::BTreeSet<String>>,
    /// Per tablet, the highest epoch an `UnloadTablet` fenced out: a load at or below it
    /// that was still in flight when the unload answered never starts serving. Guarded by
    /// the `tablets` write lock (read and written only while holding it).
    pub fences: parking_lot::Mutex<BTreeMap<TabletId, u64>>,
}

impl Shared {
    /// True while the server may serve: registered, and the local lease is valid.
    pub fn may_serve(&self) -> bool {
        if !self.serving.load(Ordering::SeqCst) {
            return false;
        }
        if !self.session.is_lease_valid() {
            self.stop_serving("local lease lapsed");
            return false;
        }
        true
    }

    /// Registers `l` as served (after its `start` is logged), unless an unload fenced its
    /// epoch out meanwhile (then false: it is never served).
    pub(crate) fn insert(&self, l: Loaded) -> bool {
        let mut tablets = self.tablets.write();
        if self
            .fences
            .lock()
            .get(&l.desc.tablet_id)
            .is_some_and(|&f| l.epoch <= f)
        {
            return false;
        }
        self.log_users.lock().insert(l.desc.dir.clone());
        self.ownership.start(l.desc.tablet_id, l.epoch);
        tablets.insert(l.desc.tablet_id, Arc::new(l));
        true
    }

    /// Makes every load of tablet `id` at `epoch` or below that has not started serving
    /// yet fail, atomically with respect to [`Shared::insert`].
    pub(crate) fn fence(&self, id: TabletId, epoch: u64) {
        let _tablets = self.tablets.write();
        let mut f = self.fences.lock();
        let e = f.entry(id).or_insert(0);
        *e = (*e).max(epoch);
    }

    /// Stops serving tablet `id` (logging its `end`); returns it.
    pub(crate) fn remove(&self, id: TabletId) -> Option<Arc<Loaded>> {
        let l = self.tablets.write().remove(&id)?;
        self.ownership.end(id, l.epoch, ownership::mono_ns());
        Some(l)
    }

    /// Stops serving every tablet (without flushing: the log holds their data) and makes
    /// the server exit, so its session ends and the master reassigns its tablets.
    pub fn stop_serving(&self, why: &str) {
        if self.serving.swap(false, Ordering::SeqCst) {
            tracing::error!(server = self.id, "stopping: {why}");
            metrics::counter!("quarry_lease_lost_total").increment(1);
            // The last instant anything was served: now, or the lease's end if earlier.
            let last = ownership::mono_ns()
                .min(ownership::instant_to_mono_ns(self.session.lease_deadline()));
            for l in self.tablets.read().values() {
                self.ownership.end(l.desc.tablet_id, l.epoch, last);
            }
            let _ = self.stop.try_send(why.to_string());
        }
    }
}

fn lock_err(e: lockservice::Error) -> Error {
    Error::Unavailable(format!("lock service: {e}"))
}

/// A sequencer from the wire.
pub fn sequencer_from_pb(s: &pb::Sequencer) -> Sequencer {
    Sequencer {
        path: s.path.clone(),
        mode: if s.mode == "shared" {
            LockMode::Shared
        } else {
            LockMode::Exclusive
        },
        generation: s.generation,
    }
}

/// A sequencer for the wire.
pub fn sequencer_to_pb(s: &Sequencer) -> pb::Sequencer {
    pb::Sequencer {
        path: s.path.clone(),
        mode: match s.mode {
            LockMode::Shared => "shared".into(),
            LockMode::Exclusive => "exclusive".into(),
        },
        generation: s.generation,
    }
}

/// Creates a lock-service directory, accepting one that exists.
pub async fn ensure_dir(client: &Client, path: &str) -> Result<()> {
    match client.create(path, true, b"").await {
        Ok(_) | Err(lockservice::Error::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(lock_err(e)),
    }
}

/// Registers with the lock service, opens the commit log, and serves until the lease is
/// lost or the server file is deleted; then returns `Error::Failed` saying which (the
/// binary exits, and a supervisor may start a new incarnation).
pub async fn run(cfg: ServerConfig) -> Result<()> {
    run_observed(cfg, |_| {}).await
}

/// [`run`], handing `observe` a [`ServerView`] once the server has registered (for
/// status pages and metrics).
pub async fn run_observed(cfg: ServerConfig, observe: impl FnOnce(ServerView)) -> Result<()> {
    // The clock and Fs follow the chaos harness's fault variables (none in production).
    let mut lock_cfg = ClientConfig::new(cfg.lock_addrs.clone());
    lock_cfg.clock = lockservice::clock::clock_from_env();
    let client = Client::new(lock_cfg).map_err(lock_err)?;
    let session = client
        .open_session(&format!("tablet-server {}", cfg.name))
        .await
        .map_err(lock_err)?;
    let id = format!("{}-{}", cfg.name, session.id());
    ensure_dir(&client, "/quarry").await?;
    ensure_dir(&client, SERVERS_DIR).await?;
    let path = format!("{SERVERS_DIR}/{id}");
    let info = ServerInfo {
        id: id.clone(),
        addr: cfg.advertise.clone(),
    };
    client
        .create(
            &path,
            false,
            &serde_json::to_vec(&info).expect("serializes"),
        )
        .await
        .map_err(lock_err)?;
    session
        .try_acquire(&path, LockMode::Exclusive)
        .await
        .map_err(lock_err)?;
    let fs = sstable::fault::process_fs()?;
    let log_dir = cfg.root.join("logs").join(&id);
    let log = {
        let fs = Arc::clone(&fs);
        let opts = cfg.log_options.clone();
        tokio::task::spawn_blocking(move || CommitLog::open(fs, &log_dir, opts))
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))??
    };
    let (stop_tx, mut stop_rx) = tokio::sync::mpsc::channel::<String>(4);
    let shared = Arc::new(Shared {
        id: id.clone(),
        addr: cfg.advertise.clone(),
        root: cfg.root.clone(),
        fs,
        log: Arc::new(log),
        cache: BlockCache::new(cfg.cache_bytes),
        options: cfg.tablet_options.clone(),
        tablets: RwLock::new(BTreeMap::new()),
        session: Arc::new(session),
        server_path: path.clone(),
        client: client.clone(),
        stop: stop_tx,
        serving: AtomicBool::new(true),
        master_generation: AtomicU64::new(0),
        ownership: ownership::OwnershipLog::open(&cfg.root, &id),
        log_users: Default::default(),
        fences: Default::default(),
    });
    tracing::info!(
        server = id,
        addr = cfg.advertise,
        "tablet server registered"
    );
    observe(ServerView(Arc::clone(&shared)));
    spawn_guards(&shared, path, cfg.check_interval);
    tokio::spawn(Arc::clone(&shared).auto_split(cfg.split_bytes, cfg.split_check));
    tokio::spawn(Arc::clone(&shared).log_gc(log_gc::LOG_GC_EVERY));
    let svc = pb::tablet_server::TabletServer::new(TabletService::new(Arc::clone(&shared)))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let reason = Arc::new(parking_lot::Mutex::new(String::new()));
    let r = Arc::clone(&reason);
    tonic::transport::Server::builder()
        .layer(lockservice::rpc_metrics::RpcMetricsLayer::new("tablet"))
        .add_service(svc)
        .serve_with_shutdown(cfg.listen, async move {
            if let Some(why) = stop_rx.recv().await {
                *r.lock() = why;
            }
        })
        .await
        .map_err(|e| Error::Unavailable(format!("gRPC server: {e}")))?;
    let why = reason.lock().clone();
    Err(Error::Failed(why))
}

/// Stops serving (and makes `run` return) when the session is lost or the server file
/// is deleted.
fn spawn_guards(shared: &Arc<Shared>, path: String, every: Duration) {
    let s = Arc::clone(shared);
    tokio::spawn(async move {
        s.session.lost().await;
        s.stop_serving("lock-service session lost");
    });
    let s = Arc::clone(shared);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match s.client.stat(&path).await {
                Err(lockservice::Error::NotFound(_)) => {
                    s.stop_serving(&format!("server file {path} deleted"));
                    return;
                }
                Err(e) => tracing::warn!(server = s.id, "checking {path}: {e}"),
                Ok(_) => {}
            }
        }
    });
}
