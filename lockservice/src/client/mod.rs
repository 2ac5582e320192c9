//! The client library: sessions, files, locks, sequencers and watches.
//!
//! ```no_run
//! # async fn f() -> lockservice::Result<()> {
//! use lockservice::client::{Client, ClientConfig};
//! use lockservice::state::LockMode;
//! let client = Client::new(ClientConfig::new(vec!["127.0.0.1:7101".into()]))?;
//! let session = client.open_session("master").await?;
//! let seq = session.try_acquire("/quarry/master", LockMode::Exclusive).await?;
//! assert!(session.is_lease_valid());
//! session.check_sequencer(&seq).await?;
//! # Ok(()) }
//! ```
//!
//! A [`Client`] owns one KeepAlive thread for all its sessions (see [`keepalive`]); a
//! [`Session`] exposes its local lease:
//! [`Session::is_lease_valid`], [`Session::lease_deadline`], [`Session::lost`] and the
//! [`SessionState`] stream. Holders of a lock must check `is_lease_valid()` *after* doing
//! work and *before* replying, and attach their [`Sequencer`] to whatever they change.

mod conn;
pub mod keepalive;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_stream::{Stream, StreamExt};

pub use conn::{Conn, Retry};
pub use keepalive::{LeaseMargins, SessionState};

use crate::clock::{Clock, MonotonicClock};
use crate::error::{Error, Result};
use crate::pb;
use crate::state::{LockMode, NodeMeta, Sequencer, SessionId};
use crate::wire::{from_status, meta_from_pb, mode_to_pb, seq_from_pb, seq_to_pb};
use keepalive::{KeepAliver, LocalLease};

/// How to reach the service and how careful to be with the lease.
#[derive(Clone)]
pub struct ClientConfig {
    /// Replica addresses (host:port); any of them will do.
    pub addrs: Vec<String>,
    /// Total time one request may take, redirects and retries included.
    pub request_timeout: Duration,
    /// Time the first attempt of an idempotent request may take before the next replica
    /// is tried (doubling per timeout; see [`Conn`]).
    pub attempt_timeout: Duration,
    /// Local-lease margins.
    pub margins: LeaseMargins,
    /// The client's clock (tests may skew it).
    pub clock: Arc<dyn Clock>,
}

impl ClientConfig {
    /// Defaults: 5 s per request, 300 ms per first attempt, 1% drift, 50 ms safety gap, KeepAlive every lease/3.
    pub fn new(addrs: Vec<String>) -> ClientConfig {
        ClientConfig {
            addrs,
            request_timeout: Duration::from_secs(5),
            attempt_timeout: conn::DEFAULT_ATTEMPT_TIMEOUT,
            margins: LeaseMargins::default(),
            clock: Arc::new(MonotonicClock),
        }
    }
}

/// A connection to a lock-service group; its sessions share one KeepAlive thread.
#[derive(Clone)]
pub struct Client {
    cfg: ClientConfig,
    conn: Arc<Conn>,
    keepalive: Arc<KeepAliver>,
}

/// A watch stream of applied events.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent>> + Send>>;

impl Client {
    /// A client for the replicas in `cfg` (connects lazily).
    pub fn new(cfg: ClientConfig) -> Result<Client> {
        let conn = Arc::new(
            Conn::new(cfg.addrs.clone(), cfg.request_timeout)?
                .with_attempt_timeout(cfg.attempt_timeout),
        );
        let keepalive = Arc::new(KeepAliver::new(
            cfg.addrs.clone(),
            cfg.attempt_timeout,
            cfg.margins,
            cfg.clock.clone(),
        ));
        Ok(Client {
            cfg,
            conn,
            keepalive,
        })
    }

    /// The connection (for requests this type does not wrap).
    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    /// Creates a session and keeps it alive (with every other session of this client).
    pub async fn open_session(&self, client_name: &str) -> Result<Session> {
        let sent = self.cfg.clock.now();
        let name = client_name.to_string();
        let r = self
            .conn
            .call(Retry::Once, |mut c| {
                let client = name.clone();
                async move { c.create_session(pb::CreateSessionRequest { client }).await }
            })
            .await?;
        let lease = Duration::from_millis(r.lease_ms);
        let local = Arc::new(LocalLease::new(
            sent,
            lease,
            self.cfg.clock.clone(),
            self.cfg.margins,
        ));
        self.keepalive
            .add(r.session, local.clone(), lease, &self.conn.leader_hint())
            .map_err(|e| Error::Unavailable(format!("cannot start the KeepAlive thread: {e}")))?;
        Ok(Session {
            client: self.clone(),
            id: r.session,
            local,
        })
    }

    /// A file's content and metadata (linearizable).
    pub async fn read(&self, path: &str) -> Result<(Vec<u8>, NodeMeta)> {
        let path = path.to_string();
        let r = self
            .conn
            .call(Retry::Idempotent, |mut c| {
                let path = path.clone();
                async move { c.read(pb::PathRequest { path }).await }
            })
            .await?;
        let meta = r
            .meta
            .as_ref()
            .map(meta_from_pb)
            .ok_or_else(|| Error::Unavailable("read answer without metadata".into()))?;
        Ok((r.content, meta))
    }

    /// A node's metadata (linearizable).
    pub async fn stat(&self, path: &str) -> Result<NodeMeta> {
        let path = path.to_string();
        let r = self
            .conn
            .call(Retry::Idempotent, |mut c| {
                let path = path.clone();
                async move { c.stat(pb::PathRequest { path }).await }
            })
            .await?;
        Ok(meta_from_pb(&r))
    }

    /// A directory's children (linearizable).
    pub async fn list(&self, path: &str) -> Result<Vec<NodeMeta>> {
        let path = path.to_string();
        let r = self
            .conn
            .call(Retry::Idempotent, |mut c| {
                let path = path.clone();
                async move { c.list(pb::PathRequest { path }).await }
            })
            .await?;
        Ok(r.children.iter().map(meta_from_pb).collect())
    }

    /// Creates a permanent file (or directory when `dir`).
    pub async fn create(&self, path: &str, dir: bool, content: &[u8]) -> Result<NodeMeta> {
        self.create_node(path, dir, content, 0).await
    }

    async fn create_node(
        &self,
        path: &str,
        dir: bool,
        content: &[u8],
        eph: u64,
    ) -> Result<NodeMeta> {
        let req = pb::CreateRequest {
            path: path.to_string(),
            dir,
            content: content.to_vec(),
            ephemeral_session: eph,
        };
        let r = self
            .conn
            .call(Retry::Once, |mut c| {
                let req = req.clone();
                async move { c.create(req).await }
            })
            .await?;
        Ok(meta_from_pb(&r))
    }

    /// Replaces a file's content; with `expected` only if its content generation matches;
    /// with `fence` only if that sequencer is current.
    pub async fn write(
        &self,
        path: &str,
        content: &[u8],
        expected: Option<u64>,
        fence: Option<&Sequencer>,
    ) -> Result<NodeMeta> {
        let req = pb::WriteRequest {
            path: path.to_string(),
            content: content.to_vec(),
            expected_content_generation: expected,
            fence: fence.map(seq_to_pb),
        };
        let r = self
            .conn
            .call(Retry::Once, |mut c| {
                let req = req.clone();
                async move { c.write(req).await }
            })
            .await?;
        Ok(meta_from_pb(&r))
    }

    /// Deletes a file or empty directory (with `fence`, only if that sequencer is current).
    pub async fn delete(&self, path: &str, fence: Option<&Sequencer>) -> Result<()> {
        let req = pb::DeleteRequest {
            path: path.to_string(),
            fence: fence.map(seq_to_pb),
        };
        self.conn
            .call(Retry::Once, |mut c| {
                let req = req.clone();
                async move { c.delete(req).await }
            })
            .await
            .map(|_| ())
    }

    /// `Ok` when `seq` names a current lock holding; `Error::StaleSequencer` otherwise.
    pub async fn check_sequencer(&self, seq: &Sequencer) -> Result<()> {
        let req = seq_to_pb(seq);
        self.conn
            .call(Retry::Idempotent, |mut c| {
                let req = req.clone();
                async move { c.check_sequencer(req).await }
            })
            .await
            .map(|_| ())
    }

    /// Every live session.
    pub async fn sessions(&self) -> Result<Vec<pb::SessionInfo>> {
        let r = self
            .conn
            .call(Retry::Idempotent, |mut c| async move {
                c.list_sessions(pb::Empty {}).await
            })
            .await?;
        Ok(r.sessions)
    }

    /// The status of the replica requests currently go to (no redirect).
    pub async fn status(&self) -> Result<pb::StatusResponse> {
        self.conn
            .call(Retry::Idempotent, |mut c| async move {
                c.status(pb::Empty {}).await
            })
            .await
    }

    /// Events of applied commands whose path starts with `prefix` ("" for all, including
    /// session events), from the replica requests currently go to. The stream ends with
    /// an error if that replica fails or the watcher falls behind: re-read, watch again.
    pub async fn watch(&self, prefix: &str) -> Result<WatchStream> {
        let prefix = prefix.to_string();
        let stream = self
            .conn
            .call(Retry::Idempotent, |mut c| {
                let prefix = prefix.clone();
                async move { c.watch(pb::WatchRequest { prefix }).await }
            })
            .await?;
        Ok(Box::pin(stream.map(|r| r.map_err(|s| from_status(&s)))))
    }
}

/// A session: a lease kept alive by its client's KeepAlive thread, and the locks and
/// ephemeral nodes that live as long as it does.
pub struct Session {
    client: Client,
    id: SessionId,
    local: Arc<LocalLease>,
}

impl Session {
    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The client it was opened with (for file operations without the session).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// True while the local lease is valid: the service cannot have expired the session.
    pub fn is_lease_valid(&self) -> bool {
        self.local.is_valid()
    }

    /// When the local lease ends unless a KeepAlive extends it.
    pub fn lease_deadline(&self) -> Instant {
        *self.local.deadline.lock()
    }

    /// The session's state now.
    pub fn state(&self) -> SessionState {
        *self.local.state.borrow()
    }

    /// Changes of the session's state (Safe, Jeopardy, Expired).
    pub fn state_changes(&self) -> watch::Receiver<SessionState> {
        self.local.state.subscribe()
    }

    /// Resolves when the session is expired or lost.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.local.state.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s == SessionState::Expired).await;
        }
    }

    /// Acquires `path`'s lock, waiting up to `wait` for it.
    pub async fn acquire(&self, path: &str, mode: LockMode, wait: Duration) -> Result<Sequencer> {
        let req = pb::AcquireRequest {
            session: self.id,
            path: path.to_string(),
            mode: mode_to_pb(mode),
            wait_ms: wait.as_millis() as u64,
        };
        let r = self
            .client
            .conn
            .call_waiting(Retry::Idempotent, wait, |mut c| {
                let req = req.clone();
                async move { c.acquire(req).await }
            })
            .await?;
        seq_from_pb(&r)
    }

    /// Acquires `path`'s lock if it is free now.
    pub async fn try_acquire(&self, path: &str, mode: LockMode) -> Result<Sequencer> {
        self.acquire(path, mode, Duration::ZERO).await
    }

    /// Releases `path`'s lock (free at once for others).
    pub async fn release(&self, path: &str) -> Result<()> {
        let req = pb::LockRef {
            session: self.id,
            path: path.to_string(),
        };
        self.client
            .conn
            .call(Retry::Once, |mut c| {
                let req = req.clone();
                async move { c.release(req).await }
            })
            .await
            .map(|_| ())
    }

    /// The sequencer of this session's holding of `path`'s lock.
    pub async fn sequencer(&self, path: &str) -> Result<Sequencer> {
        let req = pb::LockRef {
            session: self.id,
            path: path.to_string(),
        };
        let r = self
            .client
            .conn
            .call(Retry::Idempotent, |mut c| {
                let req = req.clone();
                async move { c.get_sequencer(req).await }
            })
            .await?;
        seq_from_pb(&r)
    }

    /// See [`Client::check_sequencer`].
    pub async fn check_sequencer(&self, seq: &Sequencer) -> Result<()> {
        self.client.check_sequencer(seq).await
    }

    /// Creates an ephemeral file or directory owned by this session.
    pub async fn create_ephemeral(
        &self,
        path: &str,
        dir: bool,
        content: &[u8],
    ) -> Result<NodeMeta> {
        self.client.create_node(path, dir, content, self.id).await
    }

    /// See [`Client::watch`].
    pub async fn watch(&self, prefix: &str) -> Result<WatchStream> {
        self.client.watch(prefix).await
    }

    /// Ends the session: its locks are freed at once, its ephemeral nodes deleted.
    pub async fn close(self) -> Result<()> {
        self.client.keepalive.remove(self.id);
        let session = self.id;
        self.client
            .conn
            .call(Retry::Once, |mut c| async move {
                c.close_session(pb::SessionRef { session }).await
            })
            .await
            .map(|_| ())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Dropping without close() stops the KeepAlives: the session expires after its lease.
        self.client.keepalive.remove(self.id);
    }
}
