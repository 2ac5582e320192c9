//! # lockservice
//!
//! (Essay below is being written.)

#![warn(missing_docs)]

pub mod client;
pub mod clock;
pub mod error;
pub mod lease;
/// Generated protobuf and gRPC types (lockservice/proto/lock.proto).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("quarry.lock.v1");
}
pub mod raft;
pub mod server;
pub mod state;
pub mod wire;

pub use error::{Error, Result};
