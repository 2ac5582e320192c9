//! The filter block: a Bloom filter over the "filter keys" a table's writer chose (the
//! tablet gives each cell's row), so a reader can skip a table that cannot hold a row.
//!
//! Built once at `TableBuilder::finish` from every key given to
//! [`FilterBuilder::add_key`], sized at `bits_per_key` bits per distinct key (10 gives
//! about 1% false positives), with the `bloomfilter` crate.
//!
//! Filter block payload (stored as an uncompressed block, so its trailer's CRC covers it):
//!
//! ```text
//! kind: u8            // 0 = no filter (every probe says "maybe"), 1 = Bloom
//! -- if kind = 1:
//! num_keys: u64       // distinct keys added (little-endian), for statistics
//! bloom: u8[]         // the bloomfilter crate's serialization (v1):
//!                     //   version: u8 = 1, bitmap_bytes: u64, k: u32, seed: [u8; 32], bitmap
//! ```
//!
//! Stability: each key is first reduced to its 64-bit FNV-1a hash and the Bloom filter
//! holds those `u64`s, with a fixed seed. So the bits on disk depend only on FNV-1a,
//! SipHash-1-3 and `u64`'s native (little-endian on every target we build) bytes, not
//! on how `std` hashes a byte slice. A big-endian machine would read other bits (caveat).
//!
//! Invariants on reading: `k` must be in 1..=30 and the bitmap non-empty and as long as
//! its header says; anything else is [`Error::Corruption`].

use std::path::Path;

use bloomfilter::Bloom;

use crate::error::{Error, Result};

/// Kind byte: no filter.
const KIND_NONE: u8 = 0; // DO NOT CHANGE: written to disk
/// Kind byte: Bloom filter.
const KIND_BLOOM: u8 = 1; // DO NOT CHANGE: written to disk
/// Seed of the Bloom filter's hash functions.
const SEED: [u8; 32] = *b"quarry-sstable-bloom-filter-seed"; // DO NOT CHANGE: written to disk
/// Size of the bloomfilter crate's header: version, bitmap length, k, seed.
const BLOOM_HEADER: usize = 1 + 8 + 4 + 32; // DO NOT CHANGE: written to disk
/// Most hash functions a filter may claim.
const MAX_K: u32 = 30;

/// FNV-1a, 64-bit: the stable reduction of a filter key.
fn fnv1a(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Collects filter keys and builds the filter block payload.
#[derive(Debug)]
pub struct FilterBuilder {
    bits_per_key: usize,
    hashes: Vec<u64>,
}

impl FilterBuilder {
    /// A builder; `bits_per_key = 0` builds an empty "no filter" payload.
    pub fn new(bits_per_key: usize) -> FilterBuilder {
        FilterBuilder {
            bits_per_key,
            hashes: Vec::new(),
        }
    }

    /// Adds a key (repeats are fine: only distinct keys count toward the size).
    pub fn add_key(&mut self, key: &[u8]) {
        if self.bits_per_key == 0 {
            return;
        }
        let h = fnv1a(key);
        if self.hashes.last() != Some(&h) {
            self.hashes.push(h);
        }
    }

    /// The filter block payload.
    pub fn finish(mut self) -> Vec<u8> {
        self.hashes.sort_unstable();
        self.hashes.dedup();
        let n = self.hashes.len();
        if n == 0 || self.bits_per_key == 0 {
            return vec![KIND_NONE];
        }
        let bytes = (n.saturating_mul(self.bits_per_key)).div_ceil(8).max(1);
        // The crate picks k = round(bits / items * ln 2); claim more items when that
        // would exceed MAX_K (tiny filters, huge bits_per_key).
        let items = n.max((bytes as f64 * 8.0 * std::f64::consts::LN_2 / 30.0).ceil() as usize);
        let mut bloom: Bloom<u64> =
            Bloom::new_with_seed(bytes, items, &SEED).expect("non-zero sizes");
        debug_assert!(bloom.number_of_hash_functions() <= MAX_K);
        for h in &self.hashes {
            bloom.set(h);
        }
        let mut out = vec![KIND_BLOOM];
        out.extend_from_slice(&(n as u64).to_le_bytes());
        out.extend_from_slice(bloom.as_slice());
        out
    }
}

/// A decoded filter.
pub enum Filter {
    /// The table has no filter: every key may be present.
    None,
    /// A Bloom filter over the table's filter keys.
    Bloom {
        /// Distinct keys it was built from.
        num_keys: u64,
        /// The filter.
        bloom: Box<Bloom<u64>>,
    },
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Filter::None => write!(f, "Filter::None"),
            Filter::Bloom { num_keys, bloom } => {
                write!(f, "Filter::Bloom({num_keys} keys, {} bits)", bloom.len())
            }
        }
    }
}

impl Filter {
    /// Decodes a filter payload read from `file` (the block at `offset`).
    pub fn decode(file: &Path, offset: u64, payload: &[u8]) -> Result<Filter> {
        let bad = |what: String| Error::corruption(file, offset, what);
        match payload.first() {
            Some(&KIND_NONE) if payload.len() == 1 => Ok(Filter::None),
            Some(&KIND_BLOOM) if payload.len() >= 9 + BLOOM_HEADER => {
                let num_keys = u64::from_le_bytes(payload[1..9].try_into().expect("8"));
                let bytes = &payload[9..];
                let len = u64::from_le_bytes(bytes[1..9].try_into().expect("8"));
                let k = u32::from_le_bytes(bytes[9..13].try_into().expect("4"));
                let bitmap = (bytes.len() - BLOOM_HEADER) as u64;
                if k == 0 || k > MAX_K || len == 0 || len != bitmap {
                    return Err(bad(format!(
                        "Bloom filter header invalid: k {k}, bitmap {len} bytes of {bitmap}"
                    )));
                }
                let bloom = Bloom::from_slice(bytes)
                    .map_err(|e| bad(format!("Bloom filter rejected: {e}")))?;
                Ok(Filter::Bloom {
                    num_keys,
                    bloom: Box::new(bloom),
                })
            }
            _ => Err(bad(format!(
                "filter payload of {} bytes with kind {:?} is malformed",
                payload.len(),
                payload.first()
            ))),
        }
    }

    /// False only when `key` was certainly not added.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        match self {
            Filter::None => true,
            Filter::Bloom { bloom, .. } => bloom.check(&fnv1a(key)),
        }
    }
}
