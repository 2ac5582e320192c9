//! The cursor iterator every storage layer speaks (LevelDB's `Iterator`).
//!
//! Contract, the same for memtables, blocks, tables and combinators:
//! - A fresh iterator is not positioned: call a `seek*` before reading.
//! - Keys come in strictly increasing bytewise order, unless a source has duplicates,
//!   in which case a combinator yields them all (merges never drop entries; dropping
//!   shadowed versions is the caller's stage).
//! - After an `Err` the iterator is invalid and stays so; the error is not repeated.
//! - `key` and `value` borrow from the iterator and are valid until the next move.

use crate::error::Result;

/// A sorted cursor over key/value byte pairs.
pub trait KvIter {
    /// True when positioned on an entry.
    fn valid(&self) -> bool;
    /// The current key. REQUIRES: `valid()`.
    fn key(&self) -> &[u8];
    /// The current value. REQUIRES: `valid()`.
    fn value(&self) -> &[u8];
    /// Moves to the next entry (possibly becoming invalid). REQUIRES: `valid()`.
    fn next(&mut self) -> Result<()>;
    /// Positions at the first entry with key >= `target`.
    fn seek(&mut self, target: &[u8]) -> Result<()>;
    /// Positions at the first entry.
    fn seek_to_first(&mut self) -> Result<()>;
}

impl<I: KvIter + ?Sized> KvIter for Box<I> {
    fn valid(&self) -> bool {
        (**self).valid()
    }
    fn key(&self) -> &[u8] {
        (**self).key()
    }
    fn value(&self) -> &[u8] {
        (**self).value()
    }
    fn next(&mut self) -> Result<()> {
        (**self).next()
    }
    fn seek(&mut self, target: &[u8]) -> Result<()> {
        (**self).seek(target)
    }
    fn seek_to_first(&mut self) -> Result<()> {
        (**self).seek_to_first()
    }
}
