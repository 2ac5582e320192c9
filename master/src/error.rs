//! The master's error type, grouped by what the caller must do, and its gRPC mapping.

use tonic::{Code, Status};

/// Errors of the master.
///
/// Groups, by the caller's reaction:
/// - fix the request: [`Error::InvalidArgument`], [`Error::NotFound`],
///   [`Error::AlreadyExists`], [`Error::FailedPrecondition`];
/// - retry later or elsewhere: [`Error::NotMaster`], [`Error::Unavailable`];
/// - this master must stop: [`Error::LostMastership`];
/// - METADATA holds bytes the master cannot parse: [`Error::Corruption`].
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or exceeds a limit.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No such table or tablet.
    #[error("not found: {0}")]
    NotFound(String),
    /// The table already exists.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The request conflicts with the current state.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// This process is a standby (or not yet recovered); ask the address in
    /// `/quarry/master`.
    #[error("not the master")]
    NotMaster,
    /// A tablet server or the lock service could not do it now.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A tablet server answered that it does not serve the tablet (`quarry-error:
    /// not-serving`).
    #[error("not serving: {0}")]
    NotServing(String),
    /// The master's session or lock is gone: it stops issuing commands and exits.
    #[error("lost mastership: {0}")]
    LostMastership(String),
    /// A METADATA record or lock-service file did not parse.
    #[error("corruption in {what}")]
    Corruption {
        /// What was unreadable, and why.
        what: String,
    },
}

/// Result with the master's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl From<lockservice::Error> for Error {
    fn from(e: lockservice::Error) -> Self {
        use lockservice::Error as L;
        match e {
            L::StaleSequencer(m) => Error::LostMastership(format!("stale sequencer: {m}")),
            L::SessionExpired(id) => Error::LostMastership(format!("session {id} expired")),
            L::NotFound(m) => Error::NotFound(m),
            L::AlreadyExists(m) => Error::AlreadyExists(m),
            L::InvalidArgument(m) => Error::InvalidArgument(m),
            other => Error::Unavailable(format!("lock service: {other}")),
        }
    }
}

impl From<tablet::Error> for Error {
    fn from(e: tablet::Error) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

/// The `quarry-error` metadata value of a tablet server's status, if any.
pub fn quarry_error(s: &Status) -> Option<&str> {
    s.metadata()
        .get("quarry-error")
        .and_then(|v| v.to_str().ok())
}

/// A tablet server's answer as a master error; `what` names the call and the server.
pub fn from_tablet_status(what: &str, s: Status) -> Error {
    match quarry_error(&s) {
        Some("stale-sequencer") => {
            return Error::LostMastership(format!("{what}: {}", s.message()));
        }
        Some("not-serving") => return Error::NotServing(format!("{what}: {}", s.message())),
        Some(tag) => return Error::Unavailable(format!("{what}: {tag}: {}", s.message())),
        None => {}
    }
    match s.code() {
        Code::InvalidArgument => Error::InvalidArgument(format!("{what}: {}", s.message())),
        Code::NotFound => Error::NotFound(format!("{what}: {}", s.message())),
        Code::FailedPrecondition => Error::FailedPrecondition(format!("{what}: {}", s.message())),
        _ => Error::Unavailable(format!("{what}: {:?}: {}", s.code(), s.message())),
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let msg = e.to_string();
        match e {
            Error::InvalidArgument(_) => Status::invalid_argument(msg),
            Error::NotFound(_) => Status::not_found(msg),
            Error::AlreadyExists(_) => Status::already_exists(msg),
            Error::FailedPrecondition(_) => Status::failed_precondition(msg),
            Error::NotMaster => {
                let mut s = Status::unavailable(msg);
                s.metadata_mut()
                    .insert("quarry-error", "not-master".parse().expect("ascii"));
                s
            }
            Error::Unavailable(_) | Error::NotServing(_) | Error::LostMastership(_) => {
                Status::unavailable(msg)
            }
            Error::Corruption { .. } => Status::data_loss(msg),
        }
    }
}
