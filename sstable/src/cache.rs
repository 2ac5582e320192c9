//! The block cache: decoded blocks shared by every open table of a process.
//!
//! Keyed by (table id, block offset); each open [`crate::Table`] draws a process-unique
//! id from [`next_table_id`], so a deleted and re-created file never sees stale blocks.
//! Weighted by the block's uncompressed bytes, bounded by `capacity_bytes`, evicting with
//! S3-FIFO through the sharded `quick_cache` crate (so one scan does not flush the hot
//! set). Hits and misses are counted for read-amplification figures.
//!
//! Invariant: a cached block is immutable (`Arc<Block>`); tables are immutable files, so
//! a key never maps to two different blocks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::Weighter;

use crate::block::Block;

/// Identifies one block of one open table.
pub type BlockKey = (u64, u64);

/// A process-unique id for a newly opened table.
pub fn next_table_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[derive(Clone, Copy, Debug, Default)]
struct BlockWeight;

impl Weighter<BlockKey, Arc<Block>> for BlockWeight {
    fn weight(&self, _key: &BlockKey, block: &Arc<Block>) -> u64 {
        // Count the bookkeeping too, so empty blocks are not free.
        block.size() as u64 + 64
    }
}

/// A shared, size-bounded cache of decoded blocks.
pub struct BlockCache {
    cache: Cache<BlockKey, Arc<Block>, BlockWeight>,
    capacity: u64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BlockCache({} of {} bytes, {} hits, {} misses)",
            self.used_bytes(),
            self.capacity,
            self.hits(),
            self.misses()
        )
    }
}

impl BlockCache {
    /// A cache holding up to `capacity_bytes` of blocks.
    pub fn new(capacity_bytes: u64) -> Arc<BlockCache> {
        // quick_cache wants an item estimate to size its tables: assume 4 KiB blocks.
        let items = (capacity_bytes / 4096).clamp(16, 1 << 24) as usize;
        Arc::new(BlockCache {
            cache: Cache::with_weighter(items, capacity_bytes.max(1), BlockWeight),
            capacity: capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// The block at `key`, counting a hit or a miss.
    pub fn get(&self, key: BlockKey) -> Option<Arc<Block>> {
        let found = self.cache.get(&key);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Caches a block (it may be evicted at once if it does not fit).
    pub fn insert(&self, key: BlockKey, block: Arc<Block>) {
        self.cache.insert(key, block);
    }

    /// Drops every block of table `table_id` (when the table is closed).
    pub fn remove_table(&self, table_id: u64) {
        self.cache.retain(|k, _| k.0 != table_id);
    }

    /// Lookups that found their block.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that did not.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Bytes (by the cache's weight) now held.
    pub fn used_bytes(&self) -> u64 {
        self.cache.weight()
    }

    /// The configured capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Blocks now held.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// True when no block is held.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}
