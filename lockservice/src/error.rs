//! The one error type of the lock service, grouped by what the caller must do.
//!
//! Errors cross the Raft log (a command's result is produced by `apply` on the leader and
//! handed back to the proposer) and the network, so every variant is plain data
//! (`Serialize`/`Deserialize`, no `source` chains).

use serde::{Deserialize, Serialize};

/// Errors of the lock service.
///
/// Groups, by the caller's reaction:
/// - fix the request: [`Error::InvalidArgument`];
/// - the namespace or lock is not in the state the request needs (do not retry blindly):
///   [`Error::NotFound`], [`Error::AlreadyExists`], [`Error::FailedPrecondition`],
///   [`Error::LockBusy`], [`Error::StaleSequencer`];
/// - the session is gone, start a new one: [`Error::SessionExpired`];
/// - try another replica or later: [`Error::NotLeader`], [`Error::Unavailable`],
///   [`Error::DeadlineExceeded`];
/// - the replica's storage is broken, fail stop: [`Error::Corruption`], [`Error::Storage`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Error {
    /// The request is malformed or exceeds a limit.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The path does not name a node.
    #[error("not found: {0}")]
    NotFound(String),
    /// The path already names a node.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The node is not in the state the request requires (compare-and-set mismatch, a
    /// non-empty directory, a file where a directory was expected, ...).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The lock is held in a conflicting mode, or is in its lock-delay.
    #[error("lock busy: {0}")]
    LockBusy(String),
    /// The sequencer does not name the current holding of the lock.
    #[error("stale sequencer: {0}")]
    StaleSequencer(String),
    /// The session does not exist (expired, closed or never created).
    #[error("session expired: {0}")]
    SessionExpired(u64),
    /// This replica is not the leader; `leader` is the leader's client address if known.
    #[error("not leader (leader: {leader:?})")]
    NotLeader {
        /// The leader's client-facing address, when this replica knows it.
        leader: Option<String>,
    },
    /// The service cannot answer now (no quorum, shutting down, transport failure).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The request's deadline passed before it could be served.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// Bytes on disk are not what was written.
    #[error("corruption in {file} at offset {offset}: {what}")]
    Corruption {
        /// The file's path.
        file: String,
        /// Byte offset of the bad bytes.
        offset: u64,
        /// What was wrong.
        what: String,
    },
    /// The replica's storage failed (I/O error, failed fsync): the replica stops.
    #[error("storage: {0}")]
    Storage(String),
}

impl From<sstable::Error> for Error {
    fn from(e: sstable::Error) -> Self {
        match e {
            sstable::Error::Corruption { file, offset, what } => {
                Error::Corruption { file, offset, what }
            }
            other => Error::Storage(other.to_string()),
        }
    }
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
