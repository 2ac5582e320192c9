//! The tablet crate's error type, grouped by what the caller must do.

/// Errors of one tablet.
///
/// - `InvalidArgument`: the request is wrong (too large, unknown family, row out of range);
///   fix it, do not retry.
/// - `Unavailable`: try again later or elsewhere (writes stalled past their bound, the tablet
///   is closing).
/// - `Failed`: the tablet stopped itself after a write could not be made durable; it accepts
///   nothing until it is reopened (recovery replays the log).
/// - `Corruption`, `Io`: from the storage formats; see [`sstable::Error`].
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is not valid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Temporarily unable to serve; retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The tablet failed stop earlier and refuses work until reopened.
    #[error("tablet failed: {0}")]
    Failed(String),
    /// A read-modify-write found a value it cannot work on.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// From the storage formats (corruption, I/O, missing files).
    #[error(transparent)]
    Storage(#[from] sstable::Error),
}

impl Error {
    /// True for data on disk that is not what was written.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Storage(e) if e.is_corruption())
    }
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for an `InvalidArgument` error.
pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}
