//! The one error type of the `sstable` crate, grouped by what the caller must do.

use std::path::Path;

/// Errors of the storage formats.
///
/// Grouped by the caller's reaction: `InvalidArgument` is the caller's bug or bad input
/// (fix the request); `Corruption` means bytes on disk are not what was written (stop
/// trusting the file, report it; never read it as values); `Io` is the file system failing
/// (for a failed fsync: fail stop, never retry and trust); `NotFound` is a missing file.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bytes on disk failed a checksum, a length check or a format rule.
    #[error("corruption in {file} at offset {offset}: {what}")]
    Corruption {
        /// The file's path.
        file: String,
        /// Byte offset in the file where the bad bytes start.
        offset: u64,
        /// What was wrong.
        what: String,
    },
    /// An operation of the file system failed.
    #[error("I/O error during {op} on {path}: {source}")]
    Io {
        /// What was being done: "open", "append", "sync", "rename", ...
        op: &'static str,
        /// The path it was done to.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file that was expected is not there.
    #[error("not found: {0}")]
    NotFound(String),
    /// The caller asked for something the format cannot do.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// A corruption error for `file` at `offset`.
    pub fn corruption(file: impl AsRef<Path>, offset: u64, what: impl Into<String>) -> Error {
        Error::Corruption {
            file: file.as_ref().display().to_string(),
            offset,
            what: what.into(),
        }
    }

    /// An I/O error from `op` on `path`.
    pub fn io(op: &'static str, path: impl AsRef<Path>, source: std::io::Error) -> Error {
        if source.kind() == std::io::ErrorKind::NotFound {
            return Error::NotFound(path.as_ref().display().to_string());
        }
        Error::Io {
            op,
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// True for checksum and format failures.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
