//! The `Lock` gRPC service: client requests turned into proposals and linearizable reads.
//!
//! - Writes become [`Command`]s proposed through Raft; the reply is sent only after the
//!   entry is committed (fsynced on a quorum) and applied on the leader.
//! - Reads wait on the leadership [`super::Barrier`] (ReadIndex) and then read the applied
//!   state: never a plain local read on a possibly stale leader. A follower answers every
//!   request with `NotLeader { leader }` so the client redirects.
//! - KeepAlive: the receive time is taken first, then the barrier confirms leadership
//!   and applies every committed entry (including an `ExpireSession` a former leader may
//!   have committed), then the session must still be live and not already being expired;
//!   only then is its lease extended to `received + lease` and the KeepAlive answered.
//!   `KeepAliveMany` does the same for every session of a client with one receive time
//!   and one barrier, and lists the sessions it did not extend.
//! - Limits are checked before a request is copied into a command: content at most
//!   `MAX_CONTENT`, paths at most `MAX_PATH`, whole messages at most
//!   [`MAX_CLIENT_MESSAGE`] (tonic's decode limit, so larger ones are never allocated).

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::{voters, Inner};
use crate::error::{Error, Result};
use crate::pb;
use crate::state::{validate_path, Command, Event, Reply, SessionId, MAX_CONTENT, MAX_PATH};
use crate::wire::{event_path, event_to_pb, meta_to_pb, mode_from_pb, seq_from_pb, seq_to_pb};

/// Largest client message: the largest file plus room for the other fields.
pub const MAX_CLIENT_MESSAGE: usize = MAX_CONTENT + MAX_PATH + 16 * 1024;
/// Longest a blocking acquire may wait.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// The service; cheap to clone.
#[derive(Clone)]
pub struct LockApi {
    inner: Arc<Inner>,
}

type Res<T> = std::result::Result<Response<T>, Status>;

fn reply<T>(r: Result<T>) -> Res<T> {
    r.map(Response::new).map_err(Status::from)
}

fn content_ok(c: &[u8]) -> Result<()> {
    if c.len() > MAX_CONTENT {
        return Err(Error::InvalidArgument(format!(
            "content of {} bytes exceeds the {MAX_CONTENT}-byte limit",
            c.len()
        )));
    }
    Ok(())
}

fn unexpected(r: Reply) -> Error {
    Error::Storage(format!("unexpected reply {r:?}"))
}

impl LockApi {
    pub(crate) fn new(inner: Arc<Inner>) -> LockApi {
        LockApi { inner }
    }

    async fn node_reply(&self, cmd: Command) -> Result<pb::NodeMeta> {
        match self.inner.propose(cmd).await? {
            Reply::Node(m) => Ok(meta_to_pb(&m)),
            r => Err(unexpected(r)),
        }
    }

    async fn done(&self, cmd: Command) -> Result<pb::Empty> {
        self.inner.propose(cmd).await.map(|_| pb::Empty {})
    }

    /// Extends the lease of each live session of `sessions` to `received + lease`, once
    /// the barrier (a round started after `received`) has passed; returns those that are
    /// gone or being expired (not extended). One request for many sessions rests on the
    /// same round as one for a single session (see the crate doc's safety argument).
    fn keep_alive_after_barrier(
        &self,
        sessions: &[SessionId],
        received: std::time::Instant,
    ) -> Vec<SessionId> {
        let mut expired = Vec::new();
        let live: Vec<SessionId> = {
            let d = self.inner.sm.data.read();
            sessions
                .iter()
                .copied()
                .filter(|s| {
                    let ok = d.state.session(*s).is_some();
                    if !ok {
                        expired.push(*s);
                    }
                    ok
                })
                .collect()
        };
        let mut leases = self.inner.sm.leases.lock();
        for s in live {
            if leases.keepalive(s, received).is_err() {
                expired.push(s);
            }
        }
        expired
    }

    /// Tries to acquire; when busy and `wait` is non-zero, retries whenever the lock's
    /// state changes, until the deadline.
    async fn acquire(&self, req: pb::AcquireRequest) -> Result<pb::Sequencer> {
        validate_path(&req.path)?;
        let mode = mode_from_pb(req.mode)?;
        let wait = Duration::from_millis(req.wait_ms).min(MAX_WAIT);
        let deadline = tokio::time::Instant::now() + wait;
        let cmd = Command::Acquire {
            session: req.session,
            path: req.path.clone(),
            mode,
        };
        loop {
            // Subscribe before trying, so a release between the try and the wait is seen.
            let mut events = self.inner.sm.events.subscribe();
            match self.inner.propose(cmd.clone()).await {
                Ok(Reply::Acquired(seq)) => return Ok(seq_to_pb(&seq)),
                Ok(r) => return Err(unexpected(r)),
                Err(Error::LockBusy(why)) if !wait.is_zero() => {
                    let woke = tokio::time::timeout_at(deadline, async {
                        loop {
                            match events.recv().await {
                                Ok(b) if b.events.iter().any(|e| frees(e, &req.path)) => break,
                                Ok(_) => {}
                                Err(RecvError::Lagged(_)) => break,
                                Err(RecvError::Closed) => break,
                            }
                        }
                    })
                    .await;
                    if woke.is_err() {
                        return Err(Error::DeadlineExceeded(format!("waiting for {why}")));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// True when `e` may have made `path`'s lock available.
fn frees(e: &Event, path: &str) -> bool {
    match e {
        Event::LockReleased { sequencer, .. } => sequencer.path == path,
        Event::LockDelayEnded { path: p, .. } | Event::Deleted { path: p } => p == path,
        _ => false,
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = std::result::Result<pb::WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::lock_server::Lock for LockApi {
    async fn create_session(
        &self,
        req: Request<pb::CreateSessionRequest>,
    ) -> Res<pb::CreateSessionResponse> {
        let client = req.into_inner().client;
        let r = match self.inner.propose(Command::CreateSession { client }).await {
            Ok(Reply::Session(session)) => Ok(pb::CreateSessionResponse {
                session,
                lease_ms: self.inner.lease.lease.as_millis() as u64,
            }),
            Ok(r) => Err(unexpected(r)),
            Err(e) => Err(e),
        };
        reply(r)
    }

    async fn keep_alive(&self, req: Request<pb::SessionRef>) -> Res<pb::KeepAliveResponse> {
        let received = self.inner.sm.clock.now();
        let session = req.into_inner().session;
        let r = async {
            self.inner.barrier.wait().await?;
            if !self
                .keep_alive_after_barrier(&[session], received)
                .is_empty()
            {
                return Err(Error::SessionExpired(session));
            }
            self.inner.keepalives.fetch_add(1, Ordering::Relaxed);
            Ok(pb::KeepAliveResponse {
                lease_ms: self.inner.lease.lease.as_millis() as u64,
            })
        };
        reply(r.await)
    }

    async fn keep_alive_many(
        &self,
        req: Request<pb::KeepAliveManyRequest>,
    ) -> Res<pb::KeepAliveManyResponse> {
        let received = self.inner.sm.clock.now();
        let sessions = req.into_inner().sessions;
        let r = async {
            self.inner.barrier.wait().await?;
            let expired = self.keep_alive_after_barrier(&sessions, received);
            self.inner.keepalives.fetch_add(1, Ordering::Relaxed);
            Ok(pb::KeepAliveManyResponse {
                lease_ms: self.inner.lease.lease.as_millis() as u64,
                expired,
            })
        };
        reply(r.await)
    }

    async fn close_session(&self, req: Request<pb::SessionRef>) -> Res<pb::Empty> {
        let session = req.into_inner().session;
        reply(self.done(Command::CloseSession { session }).await)
    }

    async fn list_sessions(&self, _: Request<pb::Empty>) -> Res<pb::ListSessionsResponse> {
        let r = async {
            self.inner.barrier.wait().await?;
            let d = self.inner.sm.data.read();
            let sessions = d
                .state
                .sessions()
                .iter()
                .map(|(id, s)| pb::SessionInfo {
                    session: *id,
                    client: s.client.clone(),
                    locks: s.locks.iter().cloned().collect(),
                    ephemerals: s.ephemerals.iter().cloned().collect(),
                })
                .collect();
            Ok(pb::ListSessionsResponse { sessions })
        };
        reply(r.await)
    }

    async fn create(&self, req: Request<pb::CreateRequest>) -> Res<pb::NodeMeta> {
        let r = req.into_inner();
        let r = async {
            validate_path(&r.path)?;
            content_ok(&r.content)?;
            let cmd = Command::Create {
                path: r.path,
                dir: r.dir,
                content: r.content,
                ephemeral: (r.ephemeral_session != 0).then_some(r.ephemeral_session),
            };
            self.node_reply(cmd).await
        };
        reply(r.await)
    }

    async fn read(&self, req: Request<pb::PathRequest>) -> Res<pb::ReadResponse> {
        let path = req.into_inner().path;
        let r = async {
            validate_path(&path)?;
            self.inner.barrier.wait().await?;
            let (content, meta) = self.inner.sm.data.read().state.read(&path)?;
            Ok(pb::ReadResponse {
                content,
                meta: Some(meta_to_pb(&meta)),
            })
        };
        reply(r.await)
    }

    async fn stat(&self, req: Request<pb::PathRequest>) -> Res<pb::NodeMeta> {
        let path = req.into_inner().path;
        let r = async {
            validate_path(&path)?;
            self.inner.barrier.wait().await?;
            let meta = self.inner.sm.data.read().state.stat(&path)?;
            Ok(meta_to_pb(&meta))
        };
        reply(r.await)
    }

    async fn write(&self, req: Request<pb::WriteRequest>) -> Res<pb::NodeMeta> {
        let r = req.into_inner();
        let r = async {
            validate_path(&r.path)?;
            content_ok(&r.content)?;
            let fence = r.fence.as_ref().map(seq_from_pb).transpose()?;
            let cmd = Command::Write {
                path: r.path,
                content: r.content,
                expected_content_generation: r.expected_content_generation,
                fence,
            };
            self.node_reply(cmd).await
        };
        reply(r.await)
    }

    async fn delete(&self, req: Request<pb::DeleteRequest>) -> Res<pb::Empty> {
        let r = req.into_inner();
        let r = async {
            validate_path(&r.path)?;
            let fence = r.fence.as_ref().map(seq_from_pb).transpose()?;
            self.done(Command::Delete {
                path: r.path,
                fence,
            })
            .await
        };
        reply(r.await)
    }

    async fn list(&self, req: Request<pb::PathRequest>) -> Res<pb::ListResponse> {
        let path = req.into_inner().path;
        let r = async {
            validate_path(&path)?;
            self.inner.barrier.wait().await?;
            let children = self.inner.sm.data.read().state.list(&path)?;
            Ok(pb::ListResponse {
                children: children.iter().map(meta_to_pb).collect(),
            })
        };
        reply(r.await)
    }

    async fn acquire(&self, req: Request<pb::AcquireRequest>) -> Res<pb::Sequencer> {
        reply(LockApi::acquire(self, req.into_inner()).await)
    }

    async fn release(&self, req: Request<pb::LockRef>) -> Res<pb::Empty> {
        let r = req.into_inner();
        let r = async {
            validate_path(&r.path)?;
            self.done(Command::Release {
                session: r.session,
                path: r.path,
            })
            .await
        };
        reply(r.await)
    }

    async fn get_sequencer(&self, req: Request<pb::LockRef>) -> Res<pb::Sequencer> {
        let r = req.into_inner();
        let r = async {
            validate_path(&r.path)?;
            self.inner.barrier.wait().await?;
            let seq = self
                .inner
                .sm
                .data
                .read()
                .state
                .sequencer(r.session, &r.path)?;
            Ok(seq_to_pb(&seq))
        };
        reply(r.await)
    }

    async fn check_sequencer(&self, req: Request<pb::Sequencer>) -> Res<pb::Empty> {
        let r = async {
            let seq = seq_from_pb(req.get_ref())?;
            validate_path(&seq.path)?;
            self.inner.barrier.wait().await?;
            self.inner.sm.data.read().state.check_sequencer(&seq)?;
            Ok(pb::Empty {})
        };
        reply(r.await)
    }

    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Res<Self::WatchStream> {
        let prefix = req.into_inner().prefix;
        let mut rx = self.inner.sm.events.subscribe();
        let (tx, out) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let batch = match rx.recv().await {
                    Ok(b) => b,
                    Err(RecvError::Lagged(n)) => {
                        let msg =
                            format!("watcher fell {n} entries behind: re-read and watch again");
                        let _ = tx.send(Err(Status::data_loss(msg))).await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                };
                for e in &batch.events {
                    let p = event_path(e);
                    // Session events have no path: only a watch of everything ("") sees them.
                    let send = p.starts_with(&prefix);
                    if send && tx.send(Ok(event_to_pb(e, batch.index))).await.is_err() {
                        return;
                    }
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(out);
        Ok(Response::new(Box::pin(stream) as WatchStream))
    }

    async fn status(&self, _: Request<pb::Empty>) -> Res<pb::StatusResponse> {
        let st = super::status::status_of(&self.inner);
        let leader_address = st
            .leader
            .and_then(|l| st.members.get(&l).cloned())
            .unwrap_or_default();
        Ok(Response::new(pb::StatusResponse {
            id: st.id,
            state: st.role,
            current_leader: st.leader.unwrap_or(0),
            leader_address,
            term: st.term,
            last_log_index: st.last_log_index,
            last_applied: st.applied_index,
            members: st.members.into_iter().collect(),
            sessions: self.inner.sm.leases.lock().session_count() as u64,
            keepalive_requests: self.inner.keepalives.load(Ordering::Relaxed),
        }))
    }

    async fn add_replica(&self, req: Request<pb::AddReplicaRequest>) -> Res<pb::Empty> {
        let r = req.into_inner();
        let raft = &self.inner.raft;
        let res = async {
            let node = BasicNode { addr: r.address };
            raft.add_learner(r.id, node, true).await.map_err(|e| {
                self.inner
                    .raft_err(e.forward_to_leader().map(|f| f.leader_id), &e)
            })?;
            let mut v = voters(raft);
            v.insert(r.id);
            raft.change_membership(v, false).await.map_err(|e| {
                self.inner
                    .raft_err(e.forward_to_leader().map(|f| f.leader_id), &e)
            })?;
            Ok(pb::Empty {})
        };
        reply(res.await)
    }

    async fn remove_replica(&self, req: Request<pb::RemoveReplicaRequest>) -> Res<pb::Empty> {
        let id = req.into_inner().id;
        let raft = &self.inner.raft;
        let res = async {
            let mut v = voters(raft);
            if !v.remove(&id) {
                return Err(Error::NotFound(format!("replica {id} is not a voter")));
            }
            raft.change_membership(v, false).await.map_err(|e| {
                self.inner
                    .raft_err(e.forward_to_leader().map(|f| f.leader_id), &e)
            })?;
            Ok(pb::Empty {})
        };
        reply(res.await)
    }
}
