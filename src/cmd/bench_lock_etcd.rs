//! The etcd side of `quarry bench lock --target etcd`: a small gRPC client for etcd 3.4's
//! lease, lock and maintenance-status APIs (proto/etcd/*.proto, compiled with protox by
//! build.rs), built on the same tonic stack as Quarry's client so both targets pay the same
//! client costs.
//!
//! Protocol as etcd's own clients use it: a session is a lease (`LeaseGrant` with a TTL)
//! kept alive on a `LeaseKeepAlive` stream every TTL/3; `Lock(name, lease)` blocks until
//! this lease's key under `name` is the oldest and returns that key; `Unlock(key)` deletes
//! it. Any member serves any request (followers forward to the leader), so a failed or
//! slow attempt moves to the next endpoint; `Lock` and `Unlock` are idempotent for a given
//! lease and key, so retrying them is safe.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use tonic::transport::{Channel, Endpoint};

/// Generated etcd protobuf types and gRPC clients.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    /// etcd's etcdserverpb subset.
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
    /// etcd's v3lockpb.
    pub mod v3lockpb {
        tonic::include_proto!("v3lockpb");
    }
}

use pb::etcdserverpb::maintenance_client::MaintenanceClient;
use pb::etcdserverpb::{self as rpc, lease_client::LeaseClient};
use pb::v3lockpb::{self as lockpb, lock_client::LockClient};

/// Connections to an etcd cluster (one lazy channel per endpoint).
pub struct Etcd {
    chans: Vec<Channel>,
    next: AtomicUsize,
    /// Time one attempt may take before the next endpoint is tried.
    attempt: Duration,
    /// Total time one request may take, retries included.
    total: Duration,
}

impl Etcd {
    /// Channels to `endpoints` (host:port); `attempt` bounds each try, `total` each call.
    pub fn new(endpoints: &[String], attempt: Duration, total: Duration) -> anyhow::Result<Etcd> {
        if endpoints.is_empty() {
            bail!("no etcd endpoint given");
        }
        let mut chans = Vec::new();
        for e in endpoints {
            let ep = Endpoint::from_shared(format!("http://{e}"))
                .with_context(|| format!("bad etcd endpoint {e:?}"))?
                .connect_timeout(Duration::from_millis(500))
                .tcp_nodelay(true);
            chans.push(ep.connect_lazy());
        }
        Ok(Etcd {
            chans,
            next: AtomicUsize::new(0),
            attempt,
            total,
        })
    }

    /// Sends `f` to the current endpoint; on an error or a slow attempt moves to the next
    /// endpoint and tries again, until `total` has passed.
    async fn call<T, F, Fut>(&self, extra: Duration, f: F) -> anyhow::Result<T>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.total + extra;
        loop {
            let i = self.next.load(Ordering::Relaxed);
            let ch = self.chans[i % self.chans.len()].clone();
            let err = match tokio::time::timeout(self.attempt + extra, f(ch)).await {
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(s)) => format!("{}: {}", s.code(), s.message()),
                Err(_) => "attempt timed out".to_string(),
            };
            let _ = self
                .next
                .compare_exchange(i, i + 1, Ordering::Relaxed, Ordering::Relaxed);
            if tokio::time::Instant::now() >= deadline {
                bail!("etcd request failed until its deadline: {err}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Grants a lease of `ttl` (whole seconds, at least 1).
    pub async fn grant(&self, ttl: Duration) -> anyhow::Result<i64> {
        let ttl = ttl.as_secs().max(1) as i64;
        let r = self
            .call(Duration::ZERO, |ch| async move {
                LeaseClient::new(ch)
                    .lease_grant(rpc::LeaseGrantRequest { ttl, id: 0 })
                    .await
            })
            .await?;
        if !r.error.is_empty() {
            bail!("etcd LeaseGrant: {}", r.error);
        }
        Ok(r.id)
    }

    /// Revokes a lease (its keys, locks included, are deleted).
    pub async fn revoke(&self, id: i64) -> anyhow::Result<()> {
        self.call(Duration::ZERO, |ch| async move {
            LeaseClient::new(ch)
                .lease_revoke(rpc::LeaseRevokeRequest { id })
                .await
        })
        .await
        .map(|_| ())
    }

    /// Takes the lock `name` with `lease`, waiting up to `wait` for it; returns the key.
    pub async fn lock(&self, name: &str, lease: i64, wait: Duration) -> anyhow::Result<Vec<u8>> {
        let name = name.as_bytes().to_vec();
        let r = self
            .call(wait, |ch| {
                let name = name.clone();
                async move {
                    LockClient::new(ch)
                        .lock(lockpb::LockRequest { name, lease })
                        .await
                }
            })
            .await?;
        Ok(r.key)
    }

    /// Releases a lock by the key [`Etcd::lock`] returned.
    pub async fn unlock(&self, key: &[u8]) -> anyhow::Result<()> {
        self.call(Duration::ZERO, |ch| {
            let key = key.to_vec();
            async move {
                LockClient::new(ch)
                    .unlock(lockpb::UnlockRequest { key })
                    .await
            }
        })
        .await
        .map(|_| ())
    }

    /// Keeps `ids` alive: one stream, each lease refreshed every `interval` (spread
    /// evenly), reopened on the next endpoint if it breaks. Ends when dropped (abort).
    pub fn keep_alive(&self, ids: Vec<i64>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let chans = self.chans.clone();
        let start = self.next.load(Ordering::Relaxed);
        tokio::spawn(async move {
            let mut k = start;
            loop {
                let ch = chans[k % chans.len()].clone();
                let _ = keep_alive_stream(ch, &ids, interval).await;
                k += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    }

    /// The index of the endpoint that is the leader, if every answering member agrees.
    pub async fn leader_index(&self) -> Option<usize> {
        let mut leader = None;
        let mut members = Vec::new();
        for ch in &self.chans {
            let mut c = MaintenanceClient::new(ch.clone());
            let r = tokio::time::timeout(self.attempt, c.status(rpc::StatusRequest {})).await;
            let Ok(Ok(r)) = r else {
                members.push(None);
                continue;
            };
            let r = r.into_inner();
            if r.leader == 0 || leader.is_some_and(|l| l != r.leader) {
                return None;
            }
            leader = Some(r.leader);
            members.push(r.header.map(|h| h.member_id));
        }
        let leader = leader?;
        members.iter().position(|m| *m == Some(leader))
    }

    /// The highest Raft term any member reports.
    pub async fn term(&self) -> Option<u64> {
        let mut term = None;
        for ch in &self.chans {
            let mut c = MaintenanceClient::new(ch.clone());
            let r = tokio::time::timeout(self.attempt, c.status(rpc::StatusRequest {})).await;
            if let Ok(Ok(r)) = r {
                term = term.max(Some(r.into_inner().raft_term));
            }
        }
        term
    }

    /// True when every member answers and names the same leader.
    pub async fn all_agree(&self) -> bool {
        let mut leader = None;
        for ch in &self.chans {
            let mut c = MaintenanceClient::new(ch.clone());
            let r = tokio::time::timeout(self.attempt, c.status(rpc::StatusRequest {})).await;
            match r {
                Ok(Ok(r)) if r.get_ref().leader != 0 => {
                    let l = r.get_ref().leader;
                    if leader.is_some_and(|x| x != l) {
                        return false;
                    }
                    leader = Some(l);
                }
                _ => return false,
            }
        }
        true
    }
}

async fn keep_alive_stream(ch: Channel, ids: &[i64], interval: Duration) -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::mpsc::channel::<rpc::LeaseKeepAliveRequest>(1024);
    let out = tokio_stream::wrappers::ReceiverStream::new(rx);
    // etcd answers the stream's headers only with its first response: requests must be
    // flowing before the call returns, so the sender runs on its own task.
    let ids = ids.to_vec();
    let sender = tokio::spawn(async move {
        let gap = interval / ids.len().max(1) as u32;
        loop {
            let round = tokio::time::Instant::now();
            for (n, &id) in ids.iter().enumerate() {
                if tx.send(rpc::LeaseKeepAliveRequest { id }).await.is_err() {
                    return;
                }
                if gap >= Duration::from_millis(1) {
                    tokio::time::sleep_until(round + gap * (n as u32 + 1)).await;
                }
            }
            tokio::time::sleep_until(round + interval).await;
        }
    });
    let result = async {
        let mut inbound = LeaseClient::new(ch)
            .lease_keep_alive(out)
            .await?
            .into_inner();
        while inbound.message().await?.is_some() {}
        bail!("keep-alive stream ended")
    }
    .await;
    sender.abort();
    result
}
