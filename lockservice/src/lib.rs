//! # lockservice
//!
//! (To be written.)
