//! The chaos crate's error: a run directory that cannot be read or is malformed.

use std::path::PathBuf;

/// Result with the chaos crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors reading or writing a run directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A record of a run file does not parse (a hand-edited or truncated run directory).
    #[error("{path} line {line}: {what}")]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
