//! A lock-service replica: Raft node, leader timers and the gRPC server.
//!
//! [`Replica::start`] opens the replica's log and snapshot, starts openraft, forms the
//! group when asked to bootstrap, and serves two gRPC services on one address: `Lock`
//! (clients) and `Raft` (peers). Two background tasks run beside it:
//!
//! - the *leader watcher* follows openraft's metrics; when this replica becomes leader
//!   of a new term it calls [`LeaseTable::become_leader`] (every session and lock-delay
//!   starts afresh) before it marks itself `leading`;
//! - the *lease timer*, while `leading`, proposes `ExpireSession` and `EndLockDelay` as they
//!   fall due by this replica's clock;
//! - the *failure detector* ([`elect`]) starts an election when a follower has not heard
//!   from a leader for its detector timeout.

mod api;
mod barrier;
pub mod elect;
pub mod proposer;
pub mod stall;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use parking_lot::Mutex;
use sstable::Fs;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::lease::{LeaseConfig, LeaseTable};
use crate::pb;
use crate::raft::followers::Followers;
use crate::raft::log_store::LogStore;
use crate::raft::network::{lease_tag, Heard, NetworkFactory, RaftService, MAX_RAFT_MESSAGE};
use crate::raft::sm_store::{Shared, StateMachineStore};
use crate::raft::{raft_config, Compaction, NodeId, Raft, RaftTiming};
use crate::state::{Command, Reply};

pub use api::{LockApi, MAX_CLIENT_MESSAGE};
use barrier::Barrier;
use proposer::Proposer;
pub use status::{ReplicaStatus, ReplicaView};

/// Everything a replica needs to start.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// This replica's id (a key of `peers`).
    pub id: NodeId,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Every replica of the initial group, by id: the address peers and clients use.
    pub peers: BTreeMap<NodeId, String>,
    /// Directory of this replica's log and snapshot.
    pub data_dir: PathBuf,
    /// Form the group from `peers` if this replica has never been initialized.
    pub bootstrap: bool,
    /// Lease and lock-delay.
    pub lease: LeaseConfig,
    /// Heartbeat and election timing.
    pub timing: RaftTiming,
    /// Snapshot policy.
    pub compaction: Compaction,
}

/// A running replica.
pub struct Replica {
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
    shutdown: watch::Sender<bool>,
}

/// State shared by the API handlers and the background tasks.
pub(crate) struct Inner {
    pub(crate) id: NodeId,
    pub(crate) raft: Raft,
    pub(crate) sm: Arc<Shared>,
    pub(crate) barrier: Barrier,
    /// Group commit of proposals (see [`proposer`]).
    pub(crate) proposer: Proposer,
    pub(crate) lease: LeaseConfig,
    /// The term in which this replica leads, once its lease table was reset for it.
    pub(crate) leading: Mutex<Option<u64>>,
    /// KeepAlive and KeepAliveMany requests answered with a lease.
    pub(crate) keepalives: std::sync::atomic::AtomicU64,
}

/// The client address of replica `id`, from the membership.
fn address_of(raft: &Raft, id: NodeId) -> Option<String> {
    let m = raft.metrics().borrow().membership_config.clone();
    m.membership().get_node(&id).map(|n| n.addr.clone())
}

impl Inner {
    pub(crate) fn not_leader(&self, leader: Option<NodeId>) -> Error {
        Error::NotLeader {
            leader: leader.and_then(|l| address_of(&self.raft, l)),
        }
    }

    /// `NotLeader` when the error names a leader (`leader` is `Some`), else `Unavailable`.
    pub(crate) fn raft_err(
        &self,
        leader: Option<Option<NodeId>>,
        e: &dyn std::fmt::Display,
    ) -> Error {
        match leader {
            Some(l) => self.not_leader(l),
            None => Error::Unavailable(e.to_string()),
        }
    }

    /// Proposes `cmd` and returns its result once committed (fsynced on a quorum) and
    /// applied by this leader; concurrent proposals share entries ([`proposer`]).
    pub(crate) async fn propose(&self, cmd: Command) -> Result<Reply> {
        self.proposer.propose(cmd).await
    }
}

impl Replica {
    /// Opens the replica's storage and starts it; returns once it serves.
    pub async fn start(
        cfg: ReplicaConfig,
        fs: Arc<dyn Fs>,
        clock: Arc<dyn Clock>,
    ) -> Result<Replica> {
        if !cfg.peers.contains_key(&cfg.id) {
            return Err(Error::InvalidArgument(format!(
                "replica {} is not among the peers {:?}",
                cfg.id,
                cfg.peers.keys().collect::<Vec<_>>()
            )));
        }
        let raft_cfg = Arc::new(raft_config(cfg.id, cfg.timing, cfg.compaction)?);
        let followers = Arc::new(Followers::new(cfg.timing.heartbeat));
        let log = LogStore::open(fs.clone(), &cfg.data_dir.join("raft"))?
            .io_off_runtime()
            .with_followers(cfg.id, followers.clone());
        let flush = log.flush_clock();
        let sm = StateMachineStore::open(fs, &cfg.data_dir, LeaseTable::new(cfg.lease), clock)?
            .io_off_runtime();
        let shared = sm.shared.clone();
        let tag = lease_tag(cfg.lease.lease, cfg.lease.lock_delay);
        let heard = Arc::new(Heard::default());
        let raft = Raft::new(
            cfg.id,
            raft_cfg,
            NetworkFactory::with_lease_tag(tag)
                .from_replica(cfg.id)
                .with_heard(heard.clone())
                .with_followers(followers.clone()),
            log,
            sm,
        )
        .await
        .map_err(|e| Error::Storage(format!("starting raft: {e}")))?;
        let raft2 = raft.clone();
        let raft3 = raft.clone();
        let proposer = Proposer::start(raft.clone(), move |e| match e.forward_to_leader() {
            Some(f) => Error::NotLeader {
                leader: f.leader_id.and_then(|l| address_of(&raft3, l)),
            },
            None => Error::Unavailable(format!("proposal failed: {e}")),
        });
        let inner = Arc::new(Inner {
            id: cfg.id,
            raft: raft.clone(),
            sm: shared,
            barrier: Barrier::new(raft.clone(), move |l| Error::NotLeader {
                leader: l.and_then(|l| address_of(&raft2, l)),
            }),
            proposer,
            lease: cfg.lease,
            leading: Mutex::new(None),
            keepalives: Default::default(),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let server = serve(&cfg, inner.clone(), heard.clone(), shutdown_rx.clone()).await?;
        tokio::spawn(elect::detector(
            inner.clone(),
            heard,
            cfg.timing,
            shutdown_rx.clone(),
        ));
        tokio::spawn(stall::stall_heartbeats(
            inner.clone(),
            flush,
            followers,
            cfg.timing.heartbeat,
            shutdown_rx.clone(),
        ));
        tokio::spawn(watch_leadership(inner.clone(), shutdown_rx.clone()));
        tokio::spawn(lease_timer(inner.clone(), shutdown_rx));
        if cfg.bootstrap && !raft.is_initialized().await.unwrap_or(true) {
            let members: BTreeMap<NodeId, BasicNode> = cfg
                .peers
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            if let Err(e) = raft.initialize(members).await {
                tracing::info!(error = %e, "bootstrap: group already initialized");
            }
        }
        Ok(Replica {
            inner,
            server,
            shutdown,
        })
    }

    /// The Raft handle (for tests and status).
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// A handle for status pages and metrics (see [`ReplicaView`]).
    pub fn view(&self) -> ReplicaView {
        ReplicaView(self.inner.clone())
    }

    /// KeepAlive and KeepAliveMany requests this replica answered with a lease (one per
    /// client and interval when clients batch their sessions).
    pub fn keepalive_requests(&self) -> u64 {
        self.inner
            .keepalives
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops serving and shuts Raft down.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.inner.raft.shutdown().await;
        let _ = self.server.await;
    }
}

async fn serve(
    cfg: &ReplicaConfig,
    inner: Arc<Inner>,
    heard: Arc<Heard>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| Error::Unavailable(format!("cannot listen on {}: {e}", cfg.listen)))?;
    // tonic ignores `Server::tcp_nodelay` for a caller's own listener, so it is set on each
    // accepted socket here: with Nagle on, a reply written in two pieces (h2 headers, then
    // data) waits for the peer's delayed ACK, 40 ms on Linux; 1% of lock operations and of
    // AppendEntries answers did.
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |conn| {
            if let Ok(c) = &conn {
                if let Err(e) = c.set_nodelay(true) {
                    tracing::warn!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
                }
            }
            conn
        },
    );
    let tag = lease_tag(inner.lease.lease, inner.lease.lock_delay);
    let raft_svc = pb::raft_server::RaftServer::new(
        RaftService::new(inner.raft.clone())
            .with_lease_tag(tag)
            .with_heard(heard),
    )
    .max_decoding_message_size(MAX_RAFT_MESSAGE)
    .max_encoding_message_size(MAX_RAFT_MESSAGE);
    let lock_svc = pb::lock_server::LockServer::new(LockApi::new(inner))
        .max_decoding_message_size(MAX_CLIENT_MESSAGE)
        .max_encoding_message_size(MAX_CLIENT_MESSAGE);
    let router = tonic::transport::Server::builder()
        .layer(crate::rpc_metrics::RpcMetricsLayer::new("lock"))
        .add_service(raft_svc)
        .add_service(lock_svc);
    Ok(tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
            tracing::error!(error = %e, "gRPC server failed");
        }
    }))
}

/// Resets the lease table whenever this replica starts leading a new term.
async fn watch_leadership(inner: Arc<Inner>, shutdown: watch::Receiver<bool>) {
    let mut metrics = inner.raft.metrics();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let (leader, term) = {
            let m = metrics.borrow_and_update();
            (
                m.current_leader == Some(inner.id) && m.state.is_leader(),
                m.current_term,
            )
        };
        {
            let mut leading = inner.leading.lock();
            if leader && *leading != Some(term) {
                inner.sm.leases.lock().become_leader(inner.sm.clock.now());
                tracing::info!(
                    id = inner.id,
                    term,
                    "leading: every lease and lock-delay restarted"
                );
                *leading = Some(term);
            } else if !leader && leading.is_some() {
                tracing::info!(id = inner.id, "no longer leading");
                *leading = None;
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Proposes session expiries and lock-delay ends as they fall due, while leading.
async fn lease_timer(inner: Arc<Inner>, shutdown: watch::Receiver<bool>) {
    let tick = Duration::from_millis(10);
    loop {
        if *shutdown.borrow() {
            return;
        }
        // Not leading: look ten times less often. That can only delay an expiry, never
        // bring one forward, by at most 100 ms once per leadership (and a new leader
        // restarts every lease and lock-delay anyway).
        let idle = inner.leading.lock().is_none();
        tokio::time::sleep(if idle { 10 * tick } else { tick }).await;
        if inner.leading.lock().is_none() {
            continue;
        }
        let due = inner.sm.leases.lock().due(inner.sm.clock.now());
        for cmd in due {
            let inner = inner.clone();
            tokio::spawn(async move {
                tracing::info!(?cmd, "lease timer proposes");
                if let Err(e) = inner.propose(cmd.clone()).await {
                    if !matches!(e, Error::SessionExpired(_)) {
                        tracing::warn!(?cmd, error = %e, "timer proposal failed");
                        inner.sm.leases.lock().proposal_failed(&cmd);
                    }
                }
            });
        }
    }
}

/// Voters of the current membership.
pub(crate) fn voters(raft: &Raft) -> BTreeSet<NodeId> {
    let m = raft.metrics().borrow().membership_config.clone();
    m.membership().voter_ids().collect()
}
