//! The master process: election, take-over and the control loop.
//!
//! [`run`] opens a lock-service session, starts the admin gRPC service (a standby answers
//! `NotMaster`), blocks in `acquire` on [`MASTER_LOCK_PATH`] until it holds the lock,
//! writes its address there fenced with its sequencer, rebuilds its [`View`] (Bigtable
//! section 5.2: servers, their tablets, METADATA) and then ticks. The whole body races
//! `Session::lost()`: the moment the session is lost, every command in flight is dropped
//! and `run` returns [`Error::LostMastership`]; the binary exits. Before each command the
//! master also checks its local lease ([`Inner::guard`]), and every command carries its
//! sequencer, so commands it sends after losing the lock are rejected where they land.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockservice::client::{Client, ClientConfig, Session};
use lockservice::state::{LockMode, Sequencer};
use tablet::meta::MASTER_LOCK_PATH;
use tokio::sync::Mutex;

use crate::conns::Conns;
use crate::error::{Error, Result};
use crate::metadata::fence;
use crate::status::EventKind;
use crate::view::View;
use crate::{ns, tpb};

/// How a master runs.
#[derive(Clone, Debug)]
pub struct MasterConfig {
    /// Address the admin service listens on.
    pub listen: SocketAddr,
    /// Address written to `/quarry/master` for clients (default: `listen`).
    pub advertise: String,
    /// Lock-service replica addresses.
    pub lock_addrs: Vec<String>,
    /// The shared data root (the master only checks whether a tablet has a manifest).
    pub data_root: PathBuf,
    /// Period of the control loop (failure detection, assignment).
    pub tick: Duration,
    /// Period of the full reconciliation (METADATA scan and `ListTablets` everywhere).
    pub scan_every: Duration,
    /// Period of a balancing round.
    pub balance_every: Duration,
    /// Moves per balancing round.
    pub max_moves: usize,
    /// A server file never locked is left alone this long (its server is starting).
    pub registration_grace: Duration,
    /// Deadline of quick calls to tablet servers.
    pub rpc_timeout: Duration,
    /// Deadline of loads, unloads and splits.
    pub load_timeout: Duration,
    /// Period of a garbage-collection pass (`None`: no garbage collection).
    pub gc_interval: Option<Duration>,
    /// A file is deleted only after it has been garbage in every pass for this long (see
    /// the crate essay's "Garbage collection": it must exceed any pause between writing
    /// a file and naming it in a manifest, and a session lease).
    pub gc_min_age: Duration,
}

impl MasterConfig {
    /// Defaults for a master on `listen` using the lock service at `lock_addrs`.
    pub fn new(listen: SocketAddr, lock_addrs: Vec<String>, data_root: PathBuf) -> Self {
        MasterConfig {
            listen,
            advertise: listen.to_string(),
            lock_addrs,
            data_root,
            tick: Duration::from_millis(300),
            scan_every: Duration::from_secs(3),
            balance_every: Duration::from_secs(5),
            max_moves: 1,
            registration_grace: Duration::from_secs(10),
            rpc_timeout: Duration::from_secs(5),
            load_timeout: Duration::from_secs(60),
            gc_interval: Some(Duration::from_secs(60)),
            gc_min_age: Duration::from_secs(600),
        }
    }
}

/// State of the active master (absent while standing by).
pub struct Active {
    /// The master lock's sequencer.
    pub seq: Sequencer,
    /// The same, in the tablet protocol's form.
    pub fence: tpb::Sequencer,
    /// What the master believes.
    pub view: View,
    /// When METADATA was last fully reconciled.
    pub last_scan: Option<Instant>,
    /// When the last balancing round ran.
    pub last_balance: Instant,
    /// Tablets on a live server that did not report them, since when (see
    /// [`crate::policy::Reconciled::missing`]).
    pub missing_since: std::collections::BTreeMap<tablet::TabletId, Instant>,
    /// Tablets with a stale copy on some server that could not be unloaded: not assigned
    /// until a reconciliation unloads it.
    pub held: std::collections::BTreeSet<tablet::TabletId>,
}

/// Everything a master shares between its control loop and its admin service.
pub struct Inner {
    /// Configuration.
    pub cfg: MasterConfig,
    /// This incarnation's id.
    pub id: String,
    /// Lock-service client.
    pub client: Client,
    /// The master's session.
    pub session: Session,
    /// The data root's file system (its garbage collector's).
    pub fs: std::sync::Arc<dyn sstable::Fs>,
    /// Tablet-server connections.
    pub conns: Conns,
    /// `None` until this master holds the lock and recovered; one operation at a time.
    pub active: Mutex<Option<Active>>,
    /// Generation of the master lock held (0: standby).
    pub lock_generation: AtomicU64,
    /// Set by a tablet server's `SplitDone`: the next tick rescans METADATA.
    pub rescan: std::sync::atomic::AtomicBool,
    /// The published view and recent actions, for the status page.
    pub ops: crate::status::Ops,
}

impl Inner {
    /// `Err(LostMastership)` when the local lease has lapsed: issue nothing more.
    pub fn guard(&self) -> Result<()> {
        if self.session.is_lease_valid() {
            Ok(())
        } else {
            Err(Error::LostMastership("local lease lapsed".into()))
        }
    }

    /// The lock generation this master holds (0 while standing by).
    pub fn generation(&self) -> u64 {
        self.lock_generation.load(Ordering::Acquire)
    }
}

/// Runs a master until its session is lost (`Err(LostMastership)`), a fatal error, or
/// `shutdown` resolves (`Ok`).
pub async fn run(cfg: MasterConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    run_observed(cfg, shutdown, |_| {}).await
}

/// [`run`], handing `observe` a [`MasterView`](crate::status::MasterView) once its
/// session is open (for status pages and metrics).
pub async fn run_observed(
    cfg: MasterConfig,
    shutdown: impl std::future::Future<Output = ()>,
    observe: impl FnOnce(crate::status::MasterView),
) -> Result<()> {
    if !cfg.data_root.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "data root {} is not a directory",
            cfg.data_root.display()
        )));
    }
    // The process's file system (a chaos run's fault model, when one is configured), so
    // the collector's deletions go where the tablet servers' writes went.
    let fs = sstable::fault::process_fs()
        .map_err(|e| Error::InvalidArgument(format!("the master's file system: {e}")))?;
    let mut lock_cfg = ClientConfig::new(cfg.lock_addrs.clone());
    // Follows the chaos harness's clock-rate control (the monotonic clock in production).
    lock_cfg.clock = lockservice::clock::clock_from_env();
    let client = Client::new(lock_cfg)?;
    let id = format!(
        "master-{}-{}-{:08x}",
        cfg.advertise,
        std::process::id(),
        rand::random::<u32>()
    );
    let session = client.open_session(&id).await?;
    let lost = session.lost();
    let inner = Arc::new(Inner {
        conns: Conns::new(cfg.rpc_timeout, cfg.load_timeout),
        cfg,
        fs,
        id,
        client,
        session,
        active: Mutex::new(None),
        lock_generation: AtomicU64::new(0),
        rescan: Default::default(),
        ops: Default::default(),
    });
    observe(crate::status::MasterView(inner.clone()));
    let server = crate::service::serve(inner.clone());
    tokio::select! {
        r = server => r,
        r = lead(inner.clone()) => r,
        _ = lost => Err(Error::LostMastership("lock-service session lost".into())),
        _ = shutdown => Ok(()),
    }
}

/// Waits for the master lock, takes over, then runs the control loop forever.
async fn lead(inner: Arc<Inner>) -> Result<()> {
    ns::ensure_layout(&inner.client).await?;
    let seq = acquire_master_lock(&inner).await?;
    inner.guard()?;
    inner
        .client
        .write(
            MASTER_LOCK_PATH,
            inner.cfg.advertise.as_bytes(),
            None,
            Some(&seq),
        )
        .await?;
    inner
        .lock_generation
        .store(seq.generation, Ordering::Release);
    tracing::info!(id = %inner.id, generation = seq.generation, "became the master");
    {
        let mut g = inner.active.lock().await;
        let mut a = Active {
            fence: fence(&seq),
            seq,
            view: View::default(),
            last_scan: None,
            last_balance: Instant::now(),
            missing_since: Default::default(),
            held: Default::default(),
        };
        // A take-over that fails part way (a server or METADATA unreachable) is finished
        // by the control loop's next reconciliation; only a lost mastership ends it.
        match crate::recover::take_over(&inner, &mut a).await {
            Err(e @ Error::LostMastership(_)) => return Err(e),
            Err(e) => tracing::warn!("take-over incomplete, the control loop retries: {e}"),
            Ok(()) => {}
        }
        inner.ops.publish(&a);
        *g = Some(a);
    }
    let mut ticker = tokio::time::interval(inner.cfg.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gc = crate::gc::Collector::new(inner.fs.clone());
    let mut last_gc = Instant::now();
    loop {
        ticker.tick().await;
        {
            let mut g = inner.active.lock().await;
            let a = g.as_mut().expect("active after take-over");
            match crate::recover::tick(&inner, a).await {
                Ok(()) => {}
                Err(e @ Error::LostMastership(_)) => return Err(e),
                Err(e) => tracing::warn!("control loop: {e}"),
            }
            inner.ops.publish(a);
        }
        if inner
            .cfg
            .gc_interval
            .is_some_and(|i| last_gc.elapsed() >= i)
        {
            last_gc = Instant::now();
            match gc.pass(&inner).await {
                Ok(r) => {
                    let files = (r.tablet_dirs + r.ssts + r.log_dirs) as u64;
                    if files > 0 {
                        let what = format!("gc deleted {files} files and dirs, {} bytes", r.bytes);
                        inner.ops.event(EventKind::GcDeletion, files, what);
                    }
                }
                Err(e @ Error::LostMastership(_)) => return Err(e),
                Err(e) => tracing::warn!("garbage collection: {e}"),
            }
        }
    }
}

async fn acquire_master_lock(inner: &Inner) -> Result<Sequencer> {
    // Each wait stays below the lock-service client's request timeout (5 s by default);
    // the service wakes a waiting acquire as soon as the lock is free.
    let wait = Duration::from_secs(2);
    loop {
        inner.guard()?;
        match inner
            .session
            .acquire(MASTER_LOCK_PATH, LockMode::Exclusive, wait)
            .await
        {
            Ok(seq) => return Ok(seq),
            Err(lockservice::Error::LockBusy(_)) | Err(lockservice::Error::DeadlineExceeded(_)) => {
                tracing::debug!("standing by: the master lock is held");
            }
            Err(lockservice::Error::SessionExpired(id)) => {
                return Err(Error::LostMastership(format!("session {id} expired")));
            }
            Err(e) => {
                tracing::warn!("standing by: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
