//! Replication: the lock service's Raft group on openraft `=0.9.25`.
//!
//! - [`log_store::LogStore`]: the Raft log and vote, on the replica's disk in the record-log
//!   format (`sstable::log`), fsynced before openraft is told an append or a vote is durable.
//! - [`sm_store::StateMachineStore`]: applies committed commands to the
//!   [`crate::state::LockState`], feeds the lease table and watchers, builds and installs
//!   snapshots (docs/format/lock-snapshot.md).
//! - [`network::Network`]: Raft RPCs over tonic, openraft's types postcard-encoded inside
//!   `bytes` fields.
//! - [`followers::Followers`]: what a leader sends outside openraft's replication streams:
//!   heartbeats while its fsync stalls the core, and new entries sent to the followers
//!   while its own fsync runs (early replication; the safety argument is in that module).
//!
//! openraft 0.9 pitfalls handled here (../shared/DEPENDENCIES.md): each replica draws its
//! election timeout once per process, so [`raft_config`] gives replica `k` the window
//! `[base + k·width, base + (k+1)·width)`, disjoint from every other replica's, so two
//! survivors can never tie for ever; and a log read error must never reach the replication
//! path, so the log is read from disk only at start-up (a corrupt log refuses to start) and
//! served from memory afterwards.

pub mod followers;
pub mod log_store;
pub mod network;
pub mod sm_store;
pub mod stamp;
#[cfg(test)]
mod test_fs;

use std::time::Duration;

use openraft::BasicNode;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};
use crate::state::{Applied, Command};

/// A replica's id in the Raft group (1, 2, 3, ...).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's type configuration for the lock service.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle of a replica.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;

/// Raft timing of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTiming {
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Start of replica 0's election window.
    pub election_base: Duration,
    /// Width of each replica's election window.
    pub election_width: Duration,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat: Duration::from_millis(40),
            election_base: Duration::from_millis(80),
            election_width: Duration::from_millis(40),
        }
    }
}

/// When snapshots are taken and how much log stays behind them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// Take a snapshot after this many entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot (so slow followers need no snapshot).
    pub logs_to_keep: u64,
}

impl Default for Compaction {
    fn default() -> Self {
        Compaction {
            snapshot_every: 5000,
            logs_to_keep: 1000,
        }
    }
}

/// openraft's configuration for replica `id` (whose election window is disjoint from
/// every other replica's: `id` is the window's index).
pub fn raft_config(id: NodeId, t: RaftTiming, c: Compaction) -> Result<openraft::Config> {
    let ms = |d: Duration| d.as_millis() as u64;
    let min = ms(t.election_base) + id * ms(t.election_width);
    let cfg = openraft::Config {
        cluster_name: "quarry-lock".into(),
        heartbeat_interval: ms(t.heartbeat).max(1),
        election_timeout_min: min,
        election_timeout_max: min + ms(t.election_width).max(1),
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(c.snapshot_every.max(1)),
        max_in_snapshot_log_to_keep: c.logs_to_keep,
        purge_batch_size: (c.snapshot_every / 4).clamp(1, 256),
        ..Default::default()
    };
    cfg.validate()
        .map_err(|e| Error::InvalidArgument(format!("raft config: {e}")))
}

/// Runs `f` (file writes and fsyncs) on tokio's blocking pool when `off_runtime`, else
/// here: the stores' `io_off_runtime` choice. `what` names the work in the error of a
/// blocking task that panicked.
pub(crate) async fn run_io<T: Send + 'static>(
    off_runtime: bool,
    what: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    if !off_runtime {
        return f();
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Storage(format!("{what} thread: {e}")))?
}

/// Encodes a value for the disk or the wire (postcard).
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("serializing to a Vec cannot fail")
}

/// Decodes a value written by [`encode`]; `what` names it in the error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> std::result::Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("undecodable {what}: {e}"))
}
