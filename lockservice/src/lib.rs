//! # lockservice
//!
//! (Essay below is being written.)

#![warn(missing_docs)]

pub mod clock;
pub mod error;
pub mod lease;
pub mod state;

pub use error::{Error, Result};
