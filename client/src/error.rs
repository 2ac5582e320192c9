//! The client's one error type, grouped by what the caller must do.
//!
//! - fix the request: [`Error::InvalidArgument`];
//! - the thing named does not exist / already exists / is in the wrong state: [`Error::NotFound`],
//!   [`Error::AlreadyExists`], [`Error::FailedPrecondition`] (never retried by the library);
//! - find out before retrying: [`Error::OutcomeUnknown`] — a non-idempotent operation
//!   (increment, append, check-and-mutate, a cell with the server's timestamp) failed in a way
//!   that may have happened after the server applied it. The library never retries such an
//!   operation blindly (RELIABILITY.md T8); the caller must read the row to learn what happened;
//! - try later: [`Error::Unavailable`] (retries ran out at the operation deadline);
//! - report a bug or data loss: [`Error::Internal`].

use tonic::Code;

/// Result with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the client library.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request is malformed or exceeds a limit (never retried).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The table, tablet or family does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The table (or family) already exists.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The request conflicts with the current state (not retried).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// A non-idempotent operation may or may not have been applied: the request may have
    /// reached the server before the failure. Read the row to find out.
    #[error("outcome unknown: {op} may or may not have been applied ({cause})")]
    OutcomeUnknown {
        /// The operation (`read_modify_write`, `check_and_mutate`, `mutate_row`, ...).
        op: &'static str,
        /// The failure that hid the outcome.
        cause: String,
    },
    /// The cluster did not answer successfully before the operation's deadline.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A server reported an internal error or data loss.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// The error for a final (not retried) gRPC status.
    pub fn from_status(s: &tonic::Status) -> Error {
        let msg = s.message().to_string();
        match s.code() {
            Code::InvalidArgument | Code::ResourceExhausted | Code::OutOfRange => {
                Error::InvalidArgument(msg)
            }
            Code::NotFound => Error::NotFound(msg),
            Code::AlreadyExists => Error::AlreadyExists(msg),
            Code::FailedPrecondition => Error::FailedPrecondition(msg),
            Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Cancelled => {
                Error::Unavailable(format!("{:?}: {msg}", s.code()))
            }
            c => Error::Internal(format!("{c:?}: {msg}")),
        }
    }
}

impl From<lockservice::Error> for Error {
    fn from(e: lockservice::Error) -> Error {
        use lockservice::Error as L;
        match e {
            L::InvalidArgument(m) => Error::InvalidArgument(format!("lock service: {m}")),
            L::NotFound(m) => Error::NotFound(m),
            L::AlreadyExists(m) => Error::AlreadyExists(m),
            L::FailedPrecondition(m) | L::StaleSequencer(m) | L::LockBusy(m) => {
                Error::FailedPrecondition(format!("lock service: {m}"))
            }
            L::Corruption { .. } | L::Storage(_) => Error::Internal(format!("lock service: {e}")),
            other => Error::Unavailable(format!("lock service: {other}")),
        }
    }
}
