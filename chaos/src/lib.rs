//! # chaos: the records of a fault-injection run and the checkers that judge them
//!
//! `quarry chaos` (the binary's `src/cmd/chaos/`) starts a real cluster as separate
//! processes, runs workloads against it while a nemesis kills, pauses, partitions and
//! restarts processes, and writes everything it saw into a run directory. This crate is
//! the part that needs no cluster: the formats of those records and the checkers, so a
//! run directory can be judged offline (`quarry chaos check DIR`), and tests can feed the
//! checkers hand-built broken histories to show that they fail.
//!
//! ## A run directory ([`files`])
//! ```text
//! DIR/history.jsonl        every client operation: invoke, then ok / fail / info (history)
//! DIR/nemesis.jsonl        every fault injected and healed (nemesis)
//! DIR/root/                the cluster's data root; root/ownership/*.jsonl (ownership)
//! DIR/final/links.jsonl    link rows read back after the run (linked)
//! DIR/final/counters.jsonl counters read back after the run (counter)
//! DIR/final/metadata.jsonl METADATA records of the run's table (coverage)
//! DIR/final/done           written last: the read-back finished
//! ```
//! All times are `CLOCK_MONOTONIC` nanoseconds, shared by every process on the machine.
//!
//! ## The checkers (RELIABILITY.md T2, T3, T5, T6, T8, R3)
//! - [`linearizable`]: per-register linearizability of writes, reads and
//!   compare-and-sets, with the `checker` crate (Wing-Gong with memoization);
//! - [`ownership`]: no two servers serve one tablet at the same time;
//! - [`linked`]: continuous-ingest linked lists, UNDEFINED (loss) must be 0;
//! - [`counter`]: increments applied exactly once (final value within
//!   `[acked, acked + unknown]`);
//! - [`coverage`]: METADATA tiles every table's key space;
//! - [`locks`]: lock-service generations grow and holders never overlap.
//!
//! ## Caveats
//! - The ownership check trusts each server's own log; an interval without an end is
//!   closed at its process's kill time from the nemesis log, so a server that stopped
//!   serving without logging it is judged by when it was killed.
//! - Reads of the final state happen after the faults are healed; a checker cannot tell a
//!   write lost and re-made from one never lost (values are unique, so this only matters
//!   for the counters, whose bound already allows unknowns).

#![warn(missing_docs)]

pub mod check;
pub mod counter;
pub mod coverage;
pub mod error;
pub mod history;
pub mod jsonl;
pub mod linearizable;
pub mod linked;
pub mod locks;
pub mod nemesis;
pub mod ownership;

pub use check::{check_dir, Verdict};
pub use error::{Error, Result};

/// File names inside a run directory.
pub mod files {
    /// The client history.
    pub const HISTORY: &str = "history.jsonl";
    /// The nemesis log.
    pub const NEMESIS: &str = "nemesis.jsonl";
    /// The cluster's data root.
    pub const ROOT: &str = "root";
    /// The directory of the final read-back.
    pub const FINAL: &str = "final";
    /// Link rows read back.
    pub const LINKS: &str = "links.jsonl";
    /// Counters read back.
    pub const COUNTERS: &str = "counters.jsonl";
    /// METADATA records read back.
    pub const METADATA: &str = "metadata.jsonl";
    /// Marker written when the read-back is complete.
    pub const FINAL_DONE: &str = "done";
    /// The Markdown report.
    pub const REPORT: &str = "report.md";
    /// The timeline picture.
    pub const TIMELINE: &str = "timeline.svg";
}
