//! # lockservice
//!
//! (Essay below is being written.)

#![warn(missing_docs)]

pub mod error;
pub mod state;

pub use error::{Error, Result};
