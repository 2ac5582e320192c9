//! # tablet
//!
//! (To be written.)
