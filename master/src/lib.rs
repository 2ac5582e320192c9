//! # master
//!
//! (To be written.)
