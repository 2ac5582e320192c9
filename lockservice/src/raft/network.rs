//! Raft RPCs between replicas over tonic.
//!
//! The `Raft` gRPC service carries openraft's request and response types postcard-encoded
//! in a `bytes` field; a response is `Result<Response, RaftError>` so the remote replica's
//! Raft errors come back typed.
//!
//! Failures are told apart because openraft treats them differently. A call that ran out
//! of time (openraft's hard TTL, which for AppendEntries is one heartbeat interval) is
//! [`RPCError::Timeout`]: openraft sends again at its next chance. Only a peer that could
//! not be reached at all (connection refused, reset, bad address) is `Unreachable`, after
//! which openraft pauses replication to that peer for [`Network::backoff`]. Mapping a slow
//! AppendEntries (a follower's fsync under load) to `Unreachable`, as this module once did,
//! silenced a healthy leader toward that follower for openraft's default 500 ms backoff,
//! long enough for the follower's failure detector to depose it. The backoff is short and
//! grows (20 ms doubling to 160 ms): a replica that restarts is caught up within a few
//! heartbeats, and a dead one costs a refused connection per try on loopback.
//!
//! Every replica must run with the same session lease and lock-delay (the safety argument
//! in the crate essay assumes a later leader's lease is not shorter than the one its
//! predecessor granted). So each Raft request carries the sender's configuration in the
//! `quarry-lease` metadata header ([`LEASE_HEADER`], e.g. `lease=3000ms,lock-delay=1000ms`)
//! and a replica refuses, with `FailedPrecondition` naming both, any request whose header
//! differs from its own or is missing: a misconfigured replica can neither vote, nor be
//! elected, nor receive entries, and both sides log the mismatch.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{de::DeserializeOwned, Serialize};
use tonic::transport::{Channel, Endpoint};

use super::followers::{Followers, SendFn};
use super::stamp::Stamp;
use super::{decode, encode, NodeId, Raft, TypeConfig};
use crate::pb;
use crate::pb::raft_client::RaftClient;

/// Largest Raft message sent or accepted (snapshot chunks and entry batches stay below).
pub const MAX_RAFT_MESSAGE: usize = 64 << 20;

/// The metadata header that carries the sender's lease configuration.
pub const LEASE_HEADER: &str = "quarry-lease";

/// Makes one [`Network`] per peer.
#[derive(Debug, Default, Clone)]
pub struct NetworkFactory {
    me: NodeId,
    lease_tag: Option<String>,
    heard: Option<Arc<Heard>>,
    followers: Option<Arc<Followers>>,
}

impl NetworkFactory {
    /// Sends `tag` (see [`lease_tag`]) in the [`LEASE_HEADER`] of every request.
    pub fn with_lease_tag(tag: String) -> NetworkFactory {
        NetworkFactory {
            me: 0,
            lease_tag: Some(tag),
            heard: None,
            followers: None,
        }
    }

    /// Names this replica (`me`) in the timeouts its connections report.
    pub fn from_replica(mut self, me: NodeId) -> NetworkFactory {
        self.me = me;
        self
    }

    /// Notes in `heard` every vote request of this replica that a peer refused because
    /// the peer's log is longer (see [`Heard::outlogged`]).
    pub fn with_heard(mut self, heard: Arc<Heard>) -> NetworkFactory {
        self.heard = Some(heard);
        self
    }

    /// Keeps in `followers` each peer's connection and the last AppendEntries it accepted,
    /// for stall heartbeats and early replication (see [`Followers`]).
    pub fn with_followers(mut self, followers: Arc<Followers>) -> NetworkFactory {
        self.followers = Some(followers);
        self
    }
}

/// The [`LEASE_HEADER`] value of a lease and lock-delay.
pub fn lease_tag(lease: Duration, lock_delay: Duration) -> String {
    format!(
        "lease={}ms,lock-delay={}ms",
        lease.as_millis(),
        lock_delay.as_millis()
    )
}

/// The connection to one peer (a lazily connected tonic channel).
pub struct Network {
    me: NodeId,
    target: NodeId,
    client: Option<RaftClient<Channel>>,
    error: Option<String>,
    lease_tag: Option<LeaseTag>,
    heard: Option<Arc<Heard>>,
    followers: Option<Arc<Followers>>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Network {
        let lease_tag = self.lease_tag.as_deref().and_then(|t| t.parse().ok());
        let uri = format!("http://{}", node.addr);
        match Endpoint::from_shared(uri) {
            Ok(ep) => {
                let ch = ep
                    .connect_timeout(Duration::from_millis(500))
                    .tcp_nodelay(true)
                    .local_address(crate::bind::source_ip())
                    .connect_lazy();
                let client = RaftClient::new(ch)
                    .max_decoding_message_size(MAX_RAFT_MESSAGE)
                    .max_encoding_message_size(MAX_RAFT_MESSAGE);
                Network {
                    me: self.me,
                    target,
                    client: Some(client),
                    error: None,
                    lease_tag,
                    heard: self.heard.clone(),
                    followers: self.followers.clone(),
                }
            }
            Err(e) => Network {
                me: self.me,
                target,
                client: None,
                error: Some(format!("bad address {}: {e}", node.addr)),
                lease_tag,
                heard: self.heard.clone(),
                followers: self.followers.clone(),
            },
        }
    }
}

type LeaseTag = tonic::metadata::MetadataValue<tonic::metadata::Ascii>;

/// A Raft request to a peer: `data`, a deadline `ttl` away, this replica's lease tag.
fn raft_request(
    data: Vec<u8>,
    ttl: Duration,
    tag: Option<&LeaseTag>,
) -> tonic::Request<pb::RaftMessage> {
    let mut request = tonic::Request::new(pb::RaftMessage { data });
    request.set_timeout(ttl);
    if let Some(tag) = tag {
        request.metadata_mut().insert(LEASE_HEADER, tag.clone());
    }
    request
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl Network {
    async fn call<Req, Resp, E>(
        &mut self,
        which: &'static str,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let Some(client) = self.client.as_mut() else {
            let msg = Msg(self.error.clone().unwrap_or_default());
            return Err(RPCError::Unreachable(Unreachable::new(&msg)));
        };
        // openraft wraps the call in its own timer of the same TTL; the request's deadline
        // only tells the peer when to stop working on it.
        let request = raft_request(encode(req), option.hard_ttl(), self.lease_tag.as_ref());
        let reply = match which {
            "append" => client.append_entries(request).await,
            "vote" => client.vote(request).await,
            _ => client.install_snapshot(request).await,
        };
        let reply = reply.map_err(|status| self.failed(which, status, option))?;
        let result: Result<Resp, RaftError<NodeId, E>> = decode(&reply.into_inner().data, which)
            .map_err(|e| RPCError::Network(NetworkError::new(&Msg(e))))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl Network {
    /// The openraft error for a failed call: a timeout when the call ran out of time,
    /// `Unreachable` only when the peer could not be reached or refused the call.
    fn failed<E: std::error::Error>(
        &self,
        which: &'static str,
        status: tonic::Status,
        option: &RPCOption,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        use tonic::Code;
        if matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded) {
            return RPCError::Timeout(Timeout {
                action: match which {
                    "append" => RPCTypes::AppendEntries,
                    "vote" => RPCTypes::Vote,
                    _ => RPCTypes::InstallSnapshot,
                },
                id: self.me,
                target: self.target,
                timeout: option.hard_ttl(),
            });
        }
        let msg = Msg(format!("{which} to {}: {status}", self.target));
        RPCError::Unreachable(Unreachable::new(&msg))
    }
}

/// The pauses between tries to a peer that could not be reached (see the module doc).
pub fn unreachable_backoff() -> impl Iterator<Item = Duration> + Send + 'static {
    (0..3)
        .map(|i| Duration::from_millis(20 << i))
        .chain(std::iter::repeat(Duration::from_millis(160)))
}

impl Network {
    /// Tells [`Followers`] that the peer accepted `rpc`.
    fn accepted(&self, rpc: &AppendEntriesRequest<TypeConfig>) {
        if let (Some(followers), Some(client)) = (&self.followers, &self.client) {
            let tag = self.lease_tag.clone();
            followers.accepted(self.target, || send_fn(client.clone(), tag), rpc);
        }
    }
}

impl RaftNetwork<TypeConfig> for Network {
    fn backoff(&self) -> Backoff {
        Backoff::new(unreachable_backoff())
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        if let Some(followers) = &self.followers {
            // The answer to an early copy of this request, if one was sent (see
            // `raft::followers`); otherwise the request goes out now.
            if followers.early_answer(self.target, &rpc).await {
                self.accepted(&rpc);
                return Ok(AppendEntriesResponse::Success);
            }
        }
        let resp = self.call("append", &rpc, &option).await?;
        if resp == AppendEntriesResponse::Success {
            self.accepted(&rpc);
        }
        Ok(resp)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        let resp: VoteResponse<NodeId> = self.call("vote", &rpc, &option).await?;
        if !resp.vote_granted && resp.last_log_id > rpc.last_log_id {
            if let Some(h) = &self.heard {
                h.outlogged_now();
            }
        }
        Ok(resp)
    }
}

/// A [`SendFn`] over `client`: an AppendEntries outside openraft (stall heartbeats and
/// early copies, see [`Followers`]).
fn send_fn(client: RaftClient<Channel>, tag: Option<LeaseTag>) -> SendFn {
    Arc::new(move |req, ttl| {
        let mut client = client.clone();
        let request = raft_request(encode(&req), ttl, tag.as_ref());
        Box::pin(async move {
            let reply = tokio::time::timeout(ttl, client.append_entries(request))
                .await
                .ok()?
                .ok()?;
            let result: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> =
                decode(&reply.into_inner().data, "append entries").ok()?;
            result.ok()
        })
    })
}

/// The failure detector's inputs (see `server::elect`): when this replica last received
/// an AppendEntries from a leader not older than its own vote (a heartbeat or entries),
/// and when a peer last refused its vote request because the peer holds a longer log.
#[derive(Debug, Default)]
pub struct Heard {
    /// The last contact with a leader.
    last: Stamp,
    /// The latest vote refused by a peer with a longer log.
    outlogged: Stamp,
    /// AppendEntries from a current leader being written here (their fsync pending).
    busy: std::sync::atomic::AtomicU64,
}

impl Heard {
    /// Notes contact with a leader now.
    pub fn touch(&self) {
        self.last.set_now();
    }

    /// Time since the last contact with a leader; `None` if there was none yet. Zero
    /// while an AppendEntries of a current leader is being written here: the leader is
    /// not silent, this replica's disk is slow (the leader sends the next one only after
    /// this one is answered).
    pub fn since(&self) -> Option<Duration> {
        if self.busy.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            return Some(Duration::ZERO);
        }
        self.last.age()
    }

    /// Notes contact with a leader now and that its AppendEntries is being written until
    /// the returned guard drops (which notes contact again).
    pub fn busy(&self) -> Busy<'_> {
        self.touch();
        self.busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Busy(self)
    }

    /// Notes that a peer refused this replica's vote request because its log is longer.
    pub fn outlogged_now(&self) {
        self.outlogged.set_now();
    }

    /// Time since a peer last refused this replica's vote because its log is longer.
    pub fn outlogged(&self) -> Option<Duration> {
        self.outlogged.age()
    }
}

/// An AppendEntries being written (see [`Heard::busy`]).
pub struct Busy<'a>(&'a Heard);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0
            .busy
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.0.touch();
    }
}

/// The server side of the `Raft` gRPC service: hands requests to the local Raft node.
pub struct RaftService {
    raft: Raft,
    lease_tag: Option<String>,
    warned: std::sync::atomic::AtomicBool,
    heard: Option<Arc<Heard>>,
}

impl RaftService {
    /// Serves `raft` (accepting any sender's lease configuration).
    pub fn new(raft: Raft) -> RaftService {
        RaftService {
            raft,
            lease_tag: None,
            warned: false.into(),
            heard: None,
        }
    }

    /// Notes in `heard` every AppendEntries accepted from a leader of this replica's term
    /// or a newer one.
    pub fn with_heard(mut self, heard: Arc<Heard>) -> RaftService {
        self.heard = Some(heard);
        self
    }

    /// Refuses requests whose [`LEASE_HEADER`] is not `tag`.
    pub fn with_lease_tag(mut self, tag: String) -> RaftService {
        self.lease_tag = Some(tag);
        self
    }

    fn check<T>(&self, req: &tonic::Request<T>) -> Result<(), tonic::Status> {
        let Some(own) = &self.lease_tag else {
            return Ok(());
        };
        let theirs = req.metadata().get(LEASE_HEADER).map(|v| v.to_str());
        if let Some(Ok(t)) = theirs {
            if t == own {
                return Ok(());
            }
        }
        let theirs = match theirs {
            Some(Ok(t)) => t.to_string(),
            Some(Err(_)) => "an unreadable one".to_string(),
            None => "none".to_string(),
        };
        let msg = format!(
            "lease configuration mismatch: this replica runs {own}, the sender {theirs}; \
             every replica must run with the same --lease-ms and --lock-delay-ms"
        );
        if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::error!("refusing a Raft peer: {msg}");
        }
        Err(tonic::Status::failed_precondition(msg))
    }
}

fn bad_request(e: String) -> tonic::Status {
    tonic::Status::invalid_argument(e)
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        req: tonic::Request<pb::RaftMessage>,
    ) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
        self.check(&req)?;
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode(&req.into_inner().data, "append entries").map_err(bad_request)?;
        // A current leader's AppendEntries is contact from receipt on: its answer waits
        // for the entries' fsync, which can outlast the detector's timeout on a loaded disk.
        let mine = self.raft.metrics().borrow().vote;
        let busy = match &self.heard {
            Some(h) if rpc.vote >= mine => Some(h.busy()),
            _ => None,
        };
        let result = self.raft.append_entries(rpc).await;
        drop(busy);
        Ok(tonic::Response::new(pb::RaftMessage {
            data: encode(&result),
        }))
    }

    async fn vote(
        &self,
        req: tonic::Request<pb::RaftMessage>,
    ) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
        self.check(&req)?;
        let rpc: VoteRequest<NodeId> =
            decode(&req.into_inner().data, "vote").map_err(bad_request)?;
        let result = self.raft.vote(rpc).await;
        if let (Some(h), Ok(r)) = (&self.heard, &result) {
            // Raft's rule: granting a vote restarts the election timer (the candidate needs
            // a moment to hear the grant, which waited for the vote's fsync, and to send
            // its first heartbeat).
            if r.vote_granted {
                h.touch();
            }
        }
        Ok(tonic::Response::new(pb::RaftMessage {
            data: encode(&result),
        }))
    }

    async fn install_snapshot(
        &self,
        req: tonic::Request<pb::RaftMessage>,
    ) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
        self.check(&req)?;
        let rpc: InstallSnapshotRequest<TypeConfig> =
            decode(&req.into_inner().data, "install snapshot").map_err(bad_request)?;
        let result = self.raft.install_snapshot(rpc).await;
        Ok(tonic::Response::new(pb::RaftMessage {
            data: encode(&result),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> Network {
        Network {
            me: 1,
            target: 2,
            client: None,
            error: None,
            lease_tag: None,
            heard: None,
            followers: None,
        }
    }

    #[test]
    fn a_call_out_of_time_is_a_timeout_and_only_a_failed_connection_is_unreachable() {
        let option = RPCOption::new(Duration::from_millis(40));
        for code in [tonic::Code::Cancelled, tonic::Code::DeadlineExceeded] {
            let e: RPCError<NodeId, BasicNode, RaftError<NodeId, openraft::error::Infallible>> =
                net().failed(
                    "append",
                    tonic::Status::new(code, "Timeout expired"),
                    &option,
                );
            match e {
                RPCError::Timeout(t) => {
                    assert_eq!((t.id, t.target, t.timeout), (1, 2, option.hard_ttl()));
                    assert_eq!(t.action, RPCTypes::AppendEntries);
                }
                other => panic!("{code:?} became {other}"),
            }
        }
        let e: RPCError<NodeId, BasicNode, RaftError<NodeId, openraft::error::Infallible>> = net()
            .failed(
                "vote",
                tonic::Status::unavailable("connection refused"),
                &option,
            );
        assert!(matches!(e, RPCError::Unreachable(_)), "{e}");
    }

    #[test]
    fn the_unreachable_backoff_is_short_and_bounded() {
        let pauses: Vec<u64> = unreachable_backoff()
            .take(6)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(pauses, [20, 40, 80, 160, 160, 160]);
    }
}
