//! Conversions between the crate's types and the protobuf messages, and between
//! [`Error`] and gRPC status codes.
//!
//! An error travels as a status whose code says what kind of error it is and whose
//! details hold the [`Error`] itself, JSON-encoded, so the client gets back exactly the
//! error the server produced (including the leader's address on `NotLeader`). A status
//! without such details (a transport failure, a proxy) becomes [`Error::Unavailable`] or
//! [`Error::DeadlineExceeded`].

use tonic::{Code, Status};

use crate::error::Error;
use crate::pb;
use crate::state::{Event, LockMode, NodeMeta, Sequencer};

/// Status code for each error kind.
pub fn code_of(e: &Error) -> Code {
    match e {
        Error::InvalidArgument(_) => Code::InvalidArgument,
        Error::NotFound(_) => Code::NotFound,
        Error::AlreadyExists(_) => Code::AlreadyExists,
        Error::FailedPrecondition(_) | Error::StaleSequencer(_) => Code::FailedPrecondition,
        Error::LockBusy(_) => Code::Aborted,
        Error::SessionExpired(_) => Code::Unauthenticated,
        Error::NotLeader { .. } | Error::Unavailable(_) => Code::Unavailable,
        Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
        Error::Corruption { .. } => Code::DataLoss,
        Error::Storage(_) => Code::Internal,
    }
}

/// The status that carries `e`.
pub fn to_status(e: &Error) -> Status {
    let details = serde_json::to_vec(e).expect("errors serialize");
    Status::with_details(code_of(e), e.to_string(), details.into())
}

/// The error a status carries.
pub fn from_status(s: &Status) -> Error {
    if let Ok(e) = serde_json::from_slice::<Error>(s.details()) {
        return e;
    }
    match s.code() {
        Code::DeadlineExceeded | Code::Cancelled => Error::DeadlineExceeded(s.message().into()),
        Code::InvalidArgument => Error::InvalidArgument(s.message().into()),
        Code::ResourceExhausted | Code::OutOfRange => Error::InvalidArgument(s.message().into()),
        _ => Error::Unavailable(format!("{:?}: {}", s.code(), s.message())),
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        to_status(&e)
    }
}

/// Protobuf lock mode.
pub fn mode_to_pb(m: LockMode) -> i32 {
    match m {
        LockMode::Exclusive => pb::LockMode::Exclusive as i32,
        LockMode::Shared => pb::LockMode::Shared as i32,
    }
}

/// Lock mode from protobuf (unknown values are an error).
pub fn mode_from_pb(m: i32) -> Result<LockMode, Error> {
    match pb::LockMode::try_from(m) {
        Ok(pb::LockMode::Exclusive) => Ok(LockMode::Exclusive),
        Ok(pb::LockMode::Shared) => Ok(LockMode::Shared),
        Err(_) => Err(Error::InvalidArgument(format!("unknown lock mode {m}"))),
    }
}

/// Protobuf sequencer.
pub fn seq_to_pb(s: &Sequencer) -> pb::Sequencer {
    pb::Sequencer {
        path: s.path.clone(),
        mode: mode_to_pb(s.mode),
        generation: s.generation,
    }
}

/// Sequencer from protobuf.
pub fn seq_from_pb(s: &pb::Sequencer) -> Result<Sequencer, Error> {
    Ok(Sequencer {
        path: s.path.clone(),
        mode: mode_from_pb(s.mode)?,
        generation: s.generation,
    })
}

/// Protobuf node metadata.
pub fn meta_to_pb(m: &NodeMeta) -> pb::NodeMeta {
    pb::NodeMeta {
        path: m.path.clone(),
        is_dir: m.is_dir,
        instance: m.instance,
        content_generation: m.content_generation,
        lock_generation: m.lock_generation,
        ephemeral_owner: m.ephemeral_owner.unwrap_or(0),
        len: m.len,
    }
}

/// Node metadata from protobuf.
pub fn meta_from_pb(m: &pb::NodeMeta) -> NodeMeta {
    NodeMeta {
        path: m.path.clone(),
        is_dir: m.is_dir,
        instance: m.instance,
        content_generation: m.content_generation,
        lock_generation: m.lock_generation,
        ephemeral_owner: (m.ephemeral_owner != 0).then_some(m.ephemeral_owner),
        len: m.len,
    }
}

/// The path an event concerns (the directory for child events; empty for sessions).
pub fn event_path(e: &Event) -> &str {
    match e {
        Event::ContentChanged { path, .. }
        | Event::Deleted { path }
        | Event::LockDelayEnded { path, .. } => path,
        Event::ChildAdded { parent, .. } | Event::ChildRemoved { parent, .. } => parent,
        Event::LockAcquired { sequencer, .. } | Event::LockReleased { sequencer, .. } => {
            &sequencer.path
        }
        Event::SessionCreated { .. } | Event::SessionEnded { .. } => "",
    }
}

/// Protobuf watch event.
pub fn event_to_pb(e: &Event, index: u64) -> pb::WatchEvent {
    use pb::watch_event::Kind;
    let mut w = pb::WatchEvent {
        path: event_path(e).to_string(),
        log_index: index,
        ..Default::default()
    };
    let kind = match e {
        Event::ContentChanged {
            content_generation, ..
        } => {
            w.content_generation = *content_generation;
            Kind::ContentChanged
        }
        Event::Deleted { .. } => Kind::Deleted,
        Event::ChildAdded { name, .. } => {
            w.name = name.clone();
            Kind::ChildAdded
        }
        Event::ChildRemoved { name, .. } => {
            w.name = name.clone();
            Kind::ChildRemoved
        }
        Event::LockAcquired { sequencer, session } => {
            w.sequencer = Some(seq_to_pb(sequencer));
            w.session = *session;
            Kind::LockAcquired
        }
        Event::LockReleased {
            sequencer,
            session,
            by_expiry,
        } => {
            w.sequencer = Some(seq_to_pb(sequencer));
            w.session = *session;
            w.by_expiry = *by_expiry;
            Kind::LockReleased
        }
        Event::LockDelayEnded { generation, .. } => {
            w.sequencer = Some(pb::Sequencer {
                path: w.path.clone(),
                mode: 0,
                generation: *generation,
            });
            Kind::LockDelayEnded
        }
        Event::SessionCreated { session } => {
            w.session = *session;
            Kind::SessionCreated
        }
        Event::SessionEnded { session, expired } => {
            w.session = *session;
            w.by_expiry = *expired;
            Kind::SessionEnded
        }
    };
    w.kind = kind as i32;
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_survive_a_status_round_trip() {
        let errs = [
            Error::NotLeader {
                leader: Some("127.0.0.1:7101".into()),
            },
            Error::SessionExpired(7),
            Error::LockBusy("x".into()),
            Error::Corruption {
                file: "f".into(),
                offset: 3,
                what: "w".into(),
            },
        ];
        for e in errs {
            let s = to_status(&e);
            assert_eq!(s.code(), code_of(&e));
            assert_eq!(from_status(&s), e);
        }
        let plain = Status::unavailable("connection refused");
        assert!(matches!(from_status(&plain), Error::Unavailable(_)));
    }
}
