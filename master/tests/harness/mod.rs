//! Helpers shared by the master's tests: a one-replica lock service on real files and
//! sockets, masters in this process, their admin clients, and waiting on conditions.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lockservice::clock::MonotonicClock;
use lockservice::lease::LeaseConfig;
use lockservice::raft::RaftTiming;
use lockservice::server::{Replica, ReplicaConfig};
use master::pb::master_client::MasterClient;
use master::{pb, MasterConfig};
use sstable::RealFs;

pub const LEASE: Duration = Duration::from_millis(1500);
pub const LOCK_DELAY: Duration = Duration::from_millis(500);

/// How long a dead holder's lock takes to become free, with slack for a loaded machine.
pub fn failover_bound() -> Duration {
    LEASE + LOCK_DELAY + Duration::from_secs(2) + LEASE * 4
}

pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn lock_service(dir: &std::path::Path) -> (Replica, String) {
    let addr = free_addr();
    let cfg = ReplicaConfig {
        id: 1,
        listen: addr,
        peers: BTreeMap::from([(1, addr.to_string())]),
        data_dir: dir.join("lock"),
        bootstrap: true,
        lease: LeaseConfig {
            lease: LEASE,
            lock_delay: LOCK_DELAY,
        },
        timing: RaftTiming {
            heartbeat: Duration::from_millis(50),
            election_base: Duration::from_millis(150),
            election_width: Duration::from_millis(100),
        },
        compaction: Default::default(),
    };
    let r = Replica::start(cfg, RealFs::shared(), Arc::new(MonotonicClock))
        .await
        .unwrap();
    (r, addr.to_string())
}

pub fn start_master(
    lock: &str,
    root: &std::path::Path,
) -> (SocketAddr, tokio::task::JoinHandle<master::Result<()>>) {
    let listen = free_addr();
    let mut cfg = MasterConfig::new(listen, vec![lock.to_string()], root.to_path_buf());
    cfg.tick = Duration::from_millis(100);
    cfg.scan_every = Duration::from_millis(500);
    cfg.balance_every = Duration::from_millis(500);
    let task = tokio::spawn(master::run(cfg, std::future::pending()));
    (listen, task)
}

pub async fn admin(addr: SocketAddr) -> MasterClient<tonic::transport::Channel> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    MasterClient::new(ch)
}

/// The status once `addr` is the active master.
pub async fn active_status(addr: SocketAddr, within: Duration) -> pb::StatusResponse {
    let mut c = admin(addr).await;
    wait_for("an active master", within, || {
        let mut c = c.clone();
        async move {
            c.status(pb::StatusRequest {})
                .await
                .ok()
                .map(|r| r.into_inner())
        }
    })
    .await;
    c.status(pb::StatusRequest {}).await.unwrap().into_inner()
}

pub fn fam(name: &str, gc: &str) -> pb::ColumnFamily {
    pb::ColumnFamily {
        name: name.into(),
        gc_policy: gc.into(),
        locality_group: String::new(),
    }
}

/// An in-process tablet server's configuration: listening on a free loopback port
/// (returned), data under `root`, named `ts`, never splitting by itself, and (as under
/// `quarry tablet-server`) leaving obsolete files to the master's collector. Tests adjust
/// the options they care about.
pub fn tablet_server_config(
    root: &std::path::Path,
    lock_addr: &str,
) -> (SocketAddr, tablet::server::ServerConfig) {
    let listen = free_addr();
    let cfg = tablet::server::ServerConfig {
        listen,
        advertise: listen.to_string(),
        root: root.to_path_buf(),
        lock_addrs: vec![lock_addr.to_string()],
        name: "ts".into(),
        tablet_options: tablet::TabletOptions {
            delete_obsolete_files: false,
            ..tablet::TabletOptions::default()
        },
        log_options: tablet::CommitLogOptions::default(),
        cache_bytes: 1 << 20,
        check_interval: Duration::from_millis(100),
        split_bytes: u64::MAX,
        split_check: Duration::from_secs(3600),
    };
    (listen, cfg)
}

/// The `quarry-error` tag of a failed tablet-server call.
pub fn tag(s: &tonic::Status) -> String {
    s.metadata()
        .get("quarry-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// A test standing in for the master in front of one tablet server: it holds the master
/// lock and fences its commands with `seq`.
pub struct ActingMaster {
    pub client: lockservice::client::Client,
    pub session: lockservice::client::Session,
    pub seq: master::tpb::Sequencer,
    /// The tablet server.
    pub ts: master::tpb::tablet_client::TabletClient<tonic::transport::Channel>,
    /// Its incarnation's id.
    pub server_id: String,
}

/// Takes the master lock at the lock service `lock_addr` and connects to the tablet server
/// listening on `listen` once it has registered.
pub async fn act_as_master(lock_addr: &str, listen: SocketAddr) -> ActingMaster {
    use lockservice::client::{Client, ClientConfig};
    use master::tpb;
    use tablet::meta::MASTER_LOCK_PATH;

    let client = Client::new(ClientConfig::new(vec![lock_addr.to_string()])).unwrap();
    let session = wait_for("a lock session", failover_bound() * 4, || {
        let c = client.clone();
        async move { c.open_session("test-master").await.ok() }
    })
    .await;
    let _ = client.create("/quarry", true, b"").await;
    let _ = client.create(MASTER_LOCK_PATH, false, b"").await;
    let seq = master::metadata::fence(
        &session
            .try_acquire(MASTER_LOCK_PATH, lockservice::state::LockMode::Exclusive)
            .await
            .unwrap(),
    );
    let mut ts = wait_for("the tablet server", failover_bound() * 4, || async move {
        let mut c = tpb::tablet_client::TabletClient::connect(format!("http://{listen}"))
            .await
            .ok()?;
        c.list_tablets(tpb::ListTabletsRequest {}).await.ok()?;
        Some(c)
    })
    .await
    .max_decoding_message_size(tablet::server::MAX_MESSAGE);
    let server_id = ts
        .list_tablets(tpb::ListTabletsRequest {})
        .await
        .unwrap()
        .into_inner()
        .server_id;
    ActingMaster {
        client,
        session,
        seq,
        ts,
        server_id,
    }
}

/// A one-replica lock service and one tablet server in this process, on real files under
/// a temporary directory.
pub struct LockAndServer {
    /// Removed when dropped.
    pub dir: tempfile::TempDir,
    /// The data root (canonical).
    pub root: std::path::PathBuf,
    pub lock: Replica,
    pub lock_addr: String,
    /// Where the tablet server listens.
    pub listen: SocketAddr,
    pub server: tokio::task::JoinHandle<tablet::Result<()>>,
}

/// Starts a [`LockAndServer`]; `tweak` adjusts the server's configuration first.
pub async fn lock_and_server(
    tweak: impl FnOnce(&mut tablet::server::ServerConfig),
) -> LockAndServer {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let root = root.canonicalize().unwrap();
    let (lock, lock_addr) = lock_service(dir.path()).await;
    let (listen, mut cfg) = tablet_server_config(&root, &lock_addr);
    tweak(&mut cfg);
    let server = tokio::spawn(tablet::server::run(cfg));
    LockAndServer {
        dir,
        root,
        lock,
        lock_addr,
        listen,
        server,
    }
}
