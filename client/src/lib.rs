//! # client
//!
//! (Essay written with the implementation.)

#![warn(missing_docs)]

pub mod cache;
pub mod error;
pub mod retry;

pub use error::{Error, Result};
