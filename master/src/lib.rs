//! # master
//!
//! (Essay written with the implementation.)

#![warn(missing_docs)]

pub mod assign;
pub mod conns;
pub mod convert;
pub mod error;
pub mod master;
pub mod metadata;
pub mod ns;
pub mod policy;
pub mod recover;
pub mod service;
pub mod tables;
pub mod view;

/// Generated protobuf and gRPC types (master/proto/master.proto).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("quarry.master.v1");
}

/// The tablet server's protocol (client side).
#[allow(missing_docs, clippy::all)]
pub mod tpb {
    tonic::include_proto!("quarry.tablet.v1");
}

pub use error::{Error, Result};
pub use master::{run, MasterConfig};
