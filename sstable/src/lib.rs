//! # sstable: Quarry's on-disk formats
//!
//! (Essay in progress: see the module docs. The final essay describes the SSTable
//! layout, the record log, the block cache, the iterator contract and the `Fs`
//! durability contract, with implementation caveats.)

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
