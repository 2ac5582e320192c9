//! The in-memory index of an open table: the last key and handle of every data block,
//! with a search accelerator.
//!
//! A binary search over `Vec<(Vec<u8>, _)>` chases a pointer to a separately allocated key
//! at every step, one or two cache misses each on a big table (profiled at a quarter of a
//! `seekrandom`). So beside the entries the index keeps, contiguously, one `u64` per entry:
//! the 8 bytes that follow the prefix shared by *every* key of the table, big-endian, padded
//! with zeros. The search runs on those integers and compares whole keys only among entries
//! whose integer ties with the target's.
//!
//! Why that is exact: all keys start with the shared prefix `P`. For a target that also does,
//! compare the 8-byte windows after `P` (zero-padded). If the key's window is smaller, the
//! first differing byte of the padded windows is smaller in the key, so either the key has a
//! smaller real byte there or the key ended there (padding) and is a proper prefix of the
//! target: the key sorts first either way. The symmetric argument holds for larger. Equal
//! windows decide nothing, so those entries are compared whole. A target that does not
//! start with `P` sorts before every key or after every key, decided by comparing it with
//! `P` alone.

use std::cmp::Ordering;

use crate::block::BlockHandle;

/// The index of a table: every data block's last key and handle, in key order.
pub(crate) struct Index {
    entries: Vec<(Vec<u8>, BlockHandle)>,
    /// Length of the prefix every key shares.
    shared: usize,
    /// Per entry: the 8 bytes after the shared prefix, big-endian, zero-padded.
    windows: Vec<u64>,
}

fn window(key: &[u8], shared: usize) -> u64 {
    let mut w = [0u8; 8];
    let rest = key.get(shared..).unwrap_or(&[]);
    let n = rest.len().min(8);
    w[..n].copy_from_slice(&rest[..n]);
    u64::from_be_bytes(w)
}

impl Index {
    /// An index over `entries`, which must be sorted by key.
    pub(crate) fn new(entries: Vec<(Vec<u8>, BlockHandle)>) -> Index {
        // Keys are sorted, so the prefix shared by all is the one the first and last share.
        let shared = match (entries.first(), entries.last()) {
            (Some((a, _)), Some((b, _))) => a.iter().zip(b).take_while(|(x, y)| x == y).count(),
            _ => 0,
        };
        let windows = entries.iter().map(|(k, _)| window(k, shared)).collect();
        Index {
            entries,
            shared,
            windows,
        }
    }

    /// Number of data blocks.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// True for a table with no data block.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in key order.
    pub(crate) fn entries(&self) -> &[(Vec<u8>, BlockHandle)] {
        &self.entries
    }

    /// The handle of block `i`. Panics when out of range (a programmer error).
    pub(crate) fn handle(&self, i: usize) -> BlockHandle {
        self.entries[i].1
    }

    /// The first block whose last key is `>= target` (`len()` when none): the only block
    /// that can hold the first entry `>= target`.
    pub(crate) fn find(&self, target: &[u8]) -> usize {
        let Some((first, _)) = self.entries.first() else {
            return 0;
        };
        let prefix = &first[..self.shared];
        let head = &target[..target.len().min(self.shared)];
        match head.cmp(prefix) {
            // A proper prefix of `P` or smaller inside it: before every key.
            Ordering::Less => return 0,
            Ordering::Greater => return self.entries.len(),
            Ordering::Equal => {}
        }
        let t = window(target, self.shared);
        let lo = self.windows.partition_point(|&w| w < t);
        let hi = lo + self.windows[lo..].partition_point(|&w| w == t);
        lo + self.entries[lo..hi].partition_point(|(k, _)| k[..] < *target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(i: u64) -> BlockHandle {
        BlockHandle {
            offset: i * 10,
            size: 5,
        }
    }

    fn check(keys: &[&[u8]], targets: &[&[u8]]) {
        let mut sorted: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
        sorted.sort();
        sorted.dedup();
        let entries: Vec<_> = sorted
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), handle(i as u64)))
            .collect();
        let index = Index::new(entries.clone());
        for t in targets.iter().chain(keys) {
            let want = entries.partition_point(|(k, _)| k[..] < **t);
            assert_eq!(index.find(t), want, "target {t:?} over {sorted:?}");
        }
    }

    #[test]
    fn agrees_with_a_plain_binary_search() {
        let keys: &[&[u8]] = &[
            b"row00010",
            b"row00010\0",
            b"row00010\0\0\0\0\0\0\0\0\0",
            b"row00011",
            b"row0002",
            b"row000200000000001",
            b"row000200000000002",
            b"row0003",
        ];
        let targets: &[&[u8]] = &[
            b"",
            b"r",
            b"row",
            b"row0",
            b"row00010\0\0",
            b"row000200000000001\0",
            b"row000200000000000",
            b"row0002\x01",
            b"rox",
            b"rov\xff",
            b"s",
            b"\xff\xff",
        ];
        check(keys, targets);
        check(&keys[..1], targets);
        check(&[], targets);
    }

    #[test]
    fn agrees_on_random_keys() {
        // A small deterministic generator: keys over a tiny alphabet so prefixes and ties
        // are common.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200 {
            let mut gen = |n: usize| -> Vec<Vec<u8>> {
                (0..n)
                    .map(|_| {
                        let len = 10 + (next() % 12) as usize;
                        let mut k = b"pfx".to_vec();
                        k.extend((0..len).map(|_| [0u8, 1, b'a', 0xFF][(next() % 4) as usize]));
                        k.truncate(3 + (next() % (len as u64 + 1)) as usize);
                        k
                    })
                    .collect()
            };
            let keys = gen(20);
            let targets = gen(20);
            let k: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
            let t: Vec<&[u8]> = targets.iter().map(|k| k.as_slice()).collect();
            check(&k, &t);
        }
    }
}
