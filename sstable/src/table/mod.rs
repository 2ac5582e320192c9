//! SSTables: immutable sorted files of key/value pairs.
//!
//! File layout (all blocks carry the 5-byte trailer of [`crate::block`]):
//!
//! ```text
//! +--------------------+  offset 0
//! | data block 0       |  entries, prefix-compressed, maybe LZ4
//! | ...                |
//! | data block n-1     |
//! +--------------------+  data_end
//! | filter block       |  Bloom filter over the filter keys (never compressed)
//! +--------------------+
//! | index block        |  one entry per data block: last key -> BlockHandle
//! +--------------------+
//! | properties block   |  the TableInfo counters and smallest/largest keys
//! +--------------------+  file_size - 64
//! | footer (64 bytes)  |  three handles, version, CRC, magic
//! +--------------------+
//! ```
//!
//! The blocks tile the file: each starts where the previous one's trailer ends. The
//! reader checks that tiling, the footer's CRC and magic, every block's CRC and that the
//! index agrees with the properties before it trusts anything, so every byte of the file
//! is covered by a check. See `docs/format/sstable.md` for the field-level format.
//!
//! The index maps each data block's *last key* (not a shortened separator) to its handle,
//! so [`Table::block_last_keys`] returns real keys, usable as split points.

mod builder;
mod format;
mod index;
mod reader;

pub use builder::TableBuilder;
pub use format::{Footer, FOOTER_SIZE, FORMAT_VERSION, TABLE_MAGIC};
pub use reader::{Table, TableIter, TableStats};

use crate::block::Compression;

/// How a table is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions {
    /// Target uncompressed size of a data block (a block is cut once it reaches this).
    pub block_size: usize,
    /// Keys stored whole every this many entries in a data block.
    pub restart_interval: usize,
    /// Compression of data blocks.
    pub compression: Compression,
    /// Bloom filter bits per distinct filter key; 0 writes no filter.
    pub bloom_bits_per_key: usize,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            block_size: 16 * 1024,
            restart_interval: 16,
            compression: Compression::Lz4,
            bloom_bits_per_key: 10,
        }
    }
}

/// What a finished table holds (also stored in its properties block).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableInfo {
    /// Length of the file in bytes.
    pub file_size: u64,
    /// Key/value entries.
    pub num_entries: u64,
    /// The first key (empty for an empty table).
    pub smallest_key: Vec<u8>,
    /// The last key (empty for an empty table).
    pub largest_key: Vec<u8>,
    /// Sum of key lengths before compression.
    pub raw_key_bytes: u64,
    /// Sum of value lengths before compression.
    pub raw_value_bytes: u64,
    /// Number of data blocks.
    pub data_blocks: u64,
}
