//! # master
//!
//! (Essay written with the implementation.)

#![warn(missing_docs)]

/// Generated protobuf and gRPC types (master/proto/master.proto).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("quarry.master.v1");
}
