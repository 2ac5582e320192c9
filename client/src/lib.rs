//! # client
//!
//! (To be written.)
