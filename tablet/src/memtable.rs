//! The memtable: recent writes, sorted in memory, until a minor compaction writes them out.
//!
//! A lock-free skiplist (`crossbeam-skiplist`) of internal keys (see [`crate::key`]), so
//! readers never block writers. Entries are only inserted, never changed or removed; a
//! frozen memtable is read-only and dropped once its SSTables are in the manifest.
//! Row atomicity does not come from here: every entry carries its sequence number and
//! readers skip entries newer than their snapshot (see [`crate::tablet`]).

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_skiplist::SkipMap;
use sstable::{KvIter, Result};

/// Bytes of bookkeeping counted per entry on top of key and value.
const ENTRY_OVERHEAD: u64 = 64;

/// A sorted in-memory table of internal keys.
#[derive(Default)]
pub struct Memtable {
    map: SkipMap<Vec<u8>, Vec<u8>>,
    bytes: AtomicU64,
}

impl Memtable {
    /// An empty memtable.
    pub fn new() -> Arc<Memtable> {
        Arc::new(Memtable::default())
    }

    /// Inserts an entry (keys are unique: they carry the sequence number).
    pub fn insert(&self, key: Vec<u8>, value: Vec<u8>) {
        let n = key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD;
        self.map.insert(key, value);
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Approximate memory used.
    pub fn approximate_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// True when nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// A cursor over the entries.
    pub fn iter(self: &Arc<Self>) -> MemtableIter {
        MemtableIter {
            table: Arc::clone(self),
            key: Vec::new(),
            value: Vec::new(),
            valid: false,
        }
    }
}

/// A cursor over a memtable. It copies the current entry, so it owns no borrow of the
/// skiplist and can live as long as its `Arc`.
pub struct MemtableIter {
    table: Arc<Memtable>,
    key: Vec<u8>,
    value: Vec<u8>,
    valid: bool,
}

impl MemtableIter {
    fn load(&mut self, e: Option<crossbeam_skiplist::map::Entry<'_, Vec<u8>, Vec<u8>>>) {
        match e {
            Some(e) => {
                self.key.clear();
                self.key.extend_from_slice(e.key());
                self.value.clear();
                self.value.extend_from_slice(e.value());
                self.valid = true;
            }
            None => self.valid = false,
        }
    }
}

impl KvIter for MemtableIter {
    fn valid(&self) -> bool {
        self.valid
    }
    fn key(&self) -> &[u8] {
        &self.key
    }
    fn value(&self) -> &[u8] {
        &self.value
    }
    fn next(&mut self) -> Result<()> {
        let table = Arc::clone(&self.table);
        let e = table
            .map
            .range::<[u8], _>((Bound::Excluded(&self.key[..]), Bound::Unbounded))
            .next();
        self.load(e);
        Ok(())
    }
    fn seek(&mut self, target: &[u8]) -> Result<()> {
        let table = Arc::clone(&self.table);
        let e = table.map.lower_bound(Bound::Included(target));
        self.load(e);
        Ok(())
    }
    fn seek_to_first(&mut self) -> Result<()> {
        let table = Arc::clone(&self.table);
        let e = table.map.front();
        self.load(e);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterates_in_order_and_seeks() {
        let m = Memtable::new();
        for k in [b"c".to_vec(), b"a".to_vec(), b"b".to_vec()] {
            m.insert(k.clone(), k);
        }
        let mut it = m.iter();
        it.seek_to_first().unwrap();
        let mut seen = vec![];
        while it.valid() {
            seen.push(it.key().to_vec());
            it.next().unwrap();
        }
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        it.seek(b"bb").unwrap();
        assert_eq!(it.key(), b"c");
        it.seek(b"d").unwrap();
        assert!(!it.valid());
        assert!(m.approximate_bytes() > 0);
    }
}
