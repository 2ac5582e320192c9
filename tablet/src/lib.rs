//! # tablet: one tablet as an LSM tree
//!
//! A tablet is a contiguous range of rows of one table (Bigtable section 5.3). This crate
//! keeps one tablet durably: recent writes in a **commit log** shared by every tablet of a
//! server and in a **memtable**; older ones in immutable **SSTables** (the `sstable`
//! crate), grouped by **locality group** and listed in the tablet's **manifest**.
//!
//! ## Data model
//! Cells are `(row, family:qualifier, timestamp) -> value`; a row mutation changes one row
//! atomically (set cell, delete a column's cells in a timestamp range, delete a family,
//! delete the row). Reads return the newest versions first, through a [`ReadFilter`].
//! Each entry is one internal key ([`key`]): the row, family, qualifier, timestamp
//! (descending) and a **sequence number** (descending). Sequence numbers order every change
//! of a tablet; deletion markers hide only entries with a lower one, so "delete then write
//! at an old timestamp" and "write then delete" both mean what they say, and a later write
//! at the same timestamp overwrites. A mutation of `k` changes takes `k` consecutive numbers.
//!
//! ## Write path ([`mod@write`])
//! Validate (limits of DESIGN.md section 1, checked before anything is allocated) → lock
//! the row's stripe → take sequence numbers, append to the commit log, insert into the
//! memtable (under the shared write gate) → wait until every lower number is applied (the
//! visible watermark) → return. The commit log returns only after an fsync covering the
//! record (group commit batches concurrent writers from every tablet into one fsync).
//!
//! ## Read path ([`read`])
//! A snapshot is the visible sequence number plus an `Arc` of the state (active memtable,
//! frozen memtables, SSTables). Sources are merged; [`visibility`] applies markers,
//! overwrites and GC; the filter applies predicates and limits. Bloom filters (keyed by
//! row) skip SSTables for point reads; locality groups no wanted family lives in are
//! skipped entirely.
//!
//! ## Compactions ([`flush`], [`compaction`])
//! *Minor*: freeze the memtable (taking the write gate exclusively, so the frozen memtable
//! holds exactly the records before its redo point), write one SSTable per locality group,
//! then one manifest edit adds them and advances the redo point. *Merging*: a policy, a pure
//! function of the SSTables' metadata, picks what to merge: size-tiered (similar-sized
//! files, all at level 0; the default) or leveled (`TabletOptions::leveled`: level 0 of
//! flush outputs, levels 1.. of non-overlapping runs growing by a ratio, outputs cut at row
//! boundaries, trivial moves; each SSTable's level is in the manifest). Scans concatenate
//! each level >= 1 instead of merging its files. *Major*: all SSTables of a group into one
//! run, dropping deletion markers and collected versions. [`compaction::sim`] runs a policy
//! without I/O and reports write, space and read amplification.
//! Writers stall (bounded by a timeout) when frozen memtables pile up.
//!
//! ## Recovery and the safety argument ([`tablet`])
//! Opening a tablet at epoch `E` (higher than every earlier load):
//! 1. loads the newest manifest (highest epoch, then number);
//! 2. for every commit-log segment its log references point into, fixes a **seal**: the
//!    recorded one if any, else the segment's current valid end;
//! 3. writes a manifest with epoch `E`, the seals and this server's log as a new reference,
//!    *before* replaying (DESIGN.md rule 7);
//! 4. replays each segment up to its seal, skipping records already in SSTables;
//! 5. flushes what it replayed and drops the old references and seals.
//!
//! Why this is safe against a paused old owner that wakes up: its log appends land after
//! the seal, which no recovery reads; its manifests carry a lower epoch, which no loader
//! picks; its SSTable names carry its epoch, so it cannot overwrite the new owner's files.
//! It could still delete SSTables after a compaction: under a tablet server
//! `delete_obsolete_files` is off and the master's garbage collector removes files no
//! manifest references (its safety argument is in the `master` crate's essay). Acknowledged writes survive crashes because they are fsynced in
//! the log before the ack, and the log is only cut behind a manifest that points past it.
//! A failed fsync or manifest write fails the tablet stop ([`Error::Failed`]): it never
//! retries the fsync and trusts it; reopening replays the log.
//!
//! ## The tablet server ([`server`])
//! Serves loaded tablets over gRPC (`proto/tablet.proto`, generated as [`pb`]) under a
//! lock-service lease, following DESIGN.md section 5: lease checked before and after every
//! operation, fenced management and METADATA writes, exit when the session is lost or the
//! server file is deleted, an ownership log of serving intervals for the no-overlap checker,
//! and splits committed in METADATA ([`meta`]) in a crash-safe order.
//!
//! ## Implementation caveats
//! - Each tablet runs two background threads (flush, compaction); a server with thousands of
//!   tablets wants a shared pool.
//! - GC by `max_versions` is final: versions a compaction collected do not come back when a
//!   newer version is deleted later (reads before that compaction would show them).
//! - Size-tiered compaction outputs one SSTable per group (only leveled cuts outputs).
//! - Memtable iterators copy each entry (the skiplist borrow cannot outlive a step).
//! - Leveled compaction picks Ln files by the least overlap below, with no compaction
//!   pointer, no sub-compactions and no dynamic level sizes; after a switch from
//!   size-tiered the level-0 order may not be by age, so an L0 pick that leaves some L0
//!   files out never drops markers.
//! - Under a tablet server obsolete SSTables are deleted by the master's garbage collector
//!   (after its minimum age, default 10 minutes), not at once; a server deletes its own
//!   commit-log segments ([`server::log_gc`]) every 2 s, so segments of a tablet with
//!   unflushed writes stay until its next flush.
//! - A tablet server that loses its session exits; it never re-registers in-process.
//! - SampleRowKeys reports SSTable block boundaries only (memtable data is not sampled).

#![warn(missing_docs)]

mod background;
pub mod commitlog;
pub mod compaction;
pub mod crashpoint;
pub mod error;
pub mod filter;
pub mod flush;
pub mod key;
pub mod manifest;
pub mod memtable;
pub mod meta;
pub mod mutation;
pub mod read;
pub mod schema;
pub mod server;
pub mod split;
pub mod tablet;
pub mod types;
pub mod visibility;
pub mod write;
mod write_batch;

/// The generated gRPC types and stubs of `proto/tablet.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("quarry.tablet.v1");
}

pub use commitlog::{CommitLog, CommitLogOptions, LogPosition};
pub use compaction::SizeTiered;
pub use error::{Error, Result};
pub use filter::{Cell, ReadFilter, Row};
pub use manifest::RowRange;
pub use mutation::Mutation;
pub use read::Scan;
pub use schema::{GcPolicy, Schema};
pub use tablet::{Tablet, TabletConfig, TabletOptions, TabletStats};
pub use types::{Epoch, SeqNo, TabletId, Timestamp, SERVER_TIMESTAMP};
pub use write::ReadModifyWrite;
