//! # sstable: Quarry's on-disk formats
//!
//! This crate is everything Quarry writes to disk that is not specific to tablets: the
//! SSTable format (Bigtable paper section 4, "SSTable"; LevelDB's `table/`), the record
//! log shared by the commit log and the lock service's Raft log, the block cache that
//! all tables of a process share, the merge iterators that read several sorted sources
//! as one, and the `Fs` trait through which every byte passes. It knows nothing of rows,
//! columns, timestamps or tablets: keys and values are byte strings ordered bytewise.
//!
//! ## SSTables
//!
//! An SSTable ([`table`]) is an immutable file: data blocks of prefix-compressed,
//! LZ4-compressed (when that saves 1/8) entries ([`block`]), a Bloom filter block over
//! the writer's "filter keys" ([`filter`]; the tablet gives rows, so a point read skips
//! tables that cannot hold the row), an index block mapping each data block's last key
//! to its place, a properties block ([`TableInfo`]) and a 64-byte footer with a
//! version, a CRC and a magic number. Every block carries a CRC32 trailer, and the
//! blocks tile the file, so every byte is covered by a check: a flipped bit anywhere is
//! reported as [`Error::Corruption`] with the file and offset, never read as a wrong
//! value (`tests/table_bitflip.rs`). Lengths read from disk are checked against the
//! bytes at hand before use, and no length from disk can make the reader allocate more
//! than 256 MiB. The byte-level format with a worked example is
//! `docs/format/sstable.md`; `tests/table_golden.rs` pins the bytes.
//!
//! [`TableBuilder`] writes entries in strictly increasing key order (out of order is
//! `InvalidArgument`) and ends with one fsync; [`Table::open`] checks the footer and the
//! file's structure and loads the filter and index; data blocks come from the
//! [`BlockCache`] (S3-FIFO, weighted by bytes, keyed by a process-unique table id and
//! the block offset) or from the file, or all at open with `pin_in_memory` (Bigtable's
//! in-memory locality groups). [`Table::stats`] counts blocks read and cache hits for
//! read-amplification figures; [`Table::block_last_keys`] and
//! [`Table::approximate_offset_of`] give split points.
//!
//! ## The record log
//!
//! [`log`] is LevelDB's log format (32 KiB blocks of checksummed FULL/FIRST/MIDDLE/LAST
//! fragments) with one rule that tells a torn tail from corruption: a bad record
//! followed by no valid record is a torn tail (recovery keeps every complete record);
//! a bad record with a valid one after it is corruption, reported, never skipped.
//!
//! ## The iterator contract
//!
//! Every sorted source is a [`KvIter`] cursor (LevelDB's `Iterator`): unpositioned
//! until a `seek`, keys in increasing bytewise order, `key`/`value` valid until the next
//! move, `REQUIRES: valid()` on `key`, `value` and `next`, and after an `Err` the cursor
//! is invalid until the next seek. The combinators in [`merge`] ([`MergeIter`],
//! [`TwoMergeIter`], [`ConcatIter`], [`VecIter`]) never drop an entry: equal keys from
//! several sources all come out, the earlier-listed source first, so a caller that lists
//! sources newest first sees the newest version first and filters versions and
//! tombstones in its own stage.
//!
//! ## The `Fs` durability contract
//!
//! All I/O goes through [`Fs`] (LevelDB's `Env`). Appended bytes are durable only after
//! [`WritableFile::sync`] returns `Ok`; a created, renamed or removed directory entry,
//! and a new directory, only after [`Fs::sync_dir`] of its parent; a failed `sync` is
//! final (fail stop: the kernel may have dropped the pages and will report success for
//! a retry). [`RealFs`] is the operating system; [`FaultFs`] is an in-memory model of
//! exactly this contract with power cuts (unsynced bytes and unsynced directory entries
//! vanish, old handles fail), injected EIO/ENOSPC faults, Linux's fsync-after-EIO
//! behaviour (a retried sync "succeeds" but the lost bytes reach the disk as zeros) and
//! bit flips. The tests of every layer above run on it.
//!
//! ## Implementation caveats
//!
//! - Index keys are whole last keys, not shortened separators: indexes of tables with
//!   long keys are larger than LevelDB's.
//! - No per-block filters (one filter per table) and no prefix or range filters; the
//!   filter file format relies on little-endian `u64` bytes (see [`filter`]).
//! - The block cache is keyed by table id; a closed table's blocks are not removed
//!   eagerly (they age out; [`BlockCache::remove_table`] exists for callers that want
//!   to), and there is no separate cache for filter or index blocks (they live in the
//!   [`Table`]).
//! - `TableIter` has no `prev` / `seek_for_prev`; reverse scans are not supported.
//! - `ConcatIter::new` seeks sources in turn; give it the largest keys
//!   ([`ConcatIter::with_largest_keys`]) to jump straight to the right source. Sources
//!   are opened eagerly.
//! - Only LZ4 compression; no dictionary compression, no checksum other than CRC32.
//! - [`FaultFs`] frees inodes only at a power cut, has no hard links or permissions,
//!   does not resolve `..`, and treats `O_TRUNC` of an existing file as durable at once.
//! - Reads are `pread` into a fresh `Vec` per block; no mmap, no direct I/O, no
//!   readahead for scans.

#![warn(missing_docs)]

pub mod block;
pub mod cache;
pub mod error;
pub mod fault;
pub mod filter;
pub mod fs;
pub mod iter;
pub mod log;
pub mod merge;
pub mod table;

pub use block::{Block, BlockBuilder, BlockHandle, BlockIter, Compression};
pub use cache::BlockCache;
pub use error::{Error, Result};
pub use fault::{Fault, FaultCounters, FaultFs};
pub use fs::{Fs, RandomAccessFile, RealFs, WritableFile};
pub use iter::KvIter;
pub use merge::{BoxedIter, ConcatIter, MergeIter, TwoMergeIter, VecIter};
pub use table::{Table, TableBuilder, TableInfo, TableIter, TableOptions, TableStats};
