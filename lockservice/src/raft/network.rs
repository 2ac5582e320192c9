//! Raft RPCs between replicas over tonic.
//!
//! The `Raft` gRPC service carries openraft's request and response types postcard-encoded
//! in a `bytes` field; a response is `Result<Response, RaftError>` so the remote replica's
//! Raft errors come back typed. A transport failure is `Unreachable` (openraft backs off);
//! the call's deadline is openraft's hard TTL for the RPC.
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
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{de::DeserializeOwned, Serialize};
use tonic::transport::{Channel, Endpoint};

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
    lease_tag: Option<String>,
}

impl NetworkFactory {
    /// Sends `tag` (see [`lease_tag`]) in the [`LEASE_HEADER`] of every request.
    pub fn with_lease_tag(tag: String) -> NetworkFactory {
        NetworkFactory {
            lease_tag: Some(tag),
        }
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
    target: NodeId,
    client: Option<RaftClient<Channel>>,
    error: Option<String>,
    lease_tag: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
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
                    target,
                    client: Some(client),
                    error: None,
                    lease_tag,
                }
            }
            Err(e) => Network {
                target,
                client: None,
                error: Some(format!("bad address {}: {e}", node.addr)),
                lease_tag,
            },
        }
    }
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
        let mut request = tonic::Request::new(pb::RaftMessage { data: encode(req) });
        request.set_timeout(option.hard_ttl());
        if let Some(tag) = &self.lease_tag {
            request.metadata_mut().insert(LEASE_HEADER, tag.clone());
        }
        let reply = match which {
            "append" => client.append_entries(request).await,
            "vote" => client.vote(request).await,
            _ => client.install_snapshot(request).await,
        };
        let reply = reply.map_err(|status| {
            let msg = Msg(format!("{which} to {}: {status}", self.target));
            RPCError::Unreachable(Unreachable::new(&msg))
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> = decode(&reply.into_inner().data, which)
            .map_err(|e| RPCError::Network(NetworkError::new(&Msg(e))))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call("append", &rpc, &option).await
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
        self.call("vote", &rpc, &option).await
    }
}

/// When this replica last accepted an AppendEntries (a leader's heartbeat or entries):
/// the failure detector's input (see `server::elect`).
pub struct Heard {
    epoch: std::time::Instant,
    /// Milliseconds after `epoch` plus one; 0 = never.
    last: std::sync::atomic::AtomicU64,
}

impl Default for Heard {
    fn default() -> Self {
        Heard {
            epoch: std::time::Instant::now(),
            last: 0.into(),
        }
    }
}

impl Heard {
    /// Notes contact with a leader now.
    pub fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64 + 1;
        self.last.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Time since the last contact with a leader; `None` if there was none yet.
    pub fn since(&self) -> Option<Duration> {
        match self.last.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            ms => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms - 1)),
            ),
        }
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
        let result = self.raft.append_entries(rpc).await;
        if let (Some(h), Ok(r)) = (&self.heard, &result) {
            if !matches!(r, AppendEntriesResponse::HigherVote(_)) {
                h.touch();
            }
        }
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
