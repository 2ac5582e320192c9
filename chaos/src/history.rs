//! The history of client operations of a chaos run (`DIR/history.jsonl`).
//!
//! Every operation a workload issues is written twice: an `invoke` line before the request
//! leaves, and a completion line when it returns: `ok` (it happened, with what it
//! returned; a compare-and-set that found another value is `ok` with `matched: false`),
//! `fail` (it certainly did not happen: refused before any effect, or a read that got no
//! answer) or `info` (unknown: it may or may not
//! have happened, e.g. a timeout after the request was sent). An `invoke` without a
//! completion is also unknown. Times are `CLOCK_MONOTONIC` nanoseconds, the clock the
//! tablet servers' ownership logs and the nemesis log use, so all three line up.
//!
//! Keys name what the operation touched: `reg/<n>` registers (write, read, cas),
//! `ctr/<n>` counters (incr, read_counter), `link/<id>` linked-list rows (link), and
//! `lock/<n>` lock-service locks (lock, unlock). Written values are unique in a run, so a
//! read names the one write it saw.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::jsonl;

/// How an event ends an operation (or starts it).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The operation was sent.
    Invoke,
    /// It happened, with the result carried in the call.
    Ok,
    /// It certainly did not happen.
    Fail,
    /// Unknown: it may or may not have happened.
    Info,
}

/// What an operation does, with its arguments and (on completion) its result.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Call {
    /// Sets a register to a unique value.
    Write {
        /// The value written.
        value: String,
    },
    /// Reads a register; `value` is the result (absent on invoke, `None` if unset).
    Read {
        /// What was read.
        value: Option<String>,
    },
    /// Sets a register to `to` if it holds `from`; `matched` is the answer on `ok`.
    Cas {
        /// Expected value.
        from: String,
        /// New value.
        to: String,
        /// Whether the register held `from` (and now holds `to`); absent on invoke.
        #[serde(default)]
        matched: Option<bool>,
    },
    /// Adds one to a counter.
    Incr,
    /// Reads a counter (`None`: never incremented).
    ReadCounter {
        /// What was read.
        value: Option<i64>,
    },
    /// Writes linked-list row `key`, referencing an earlier acknowledged row (or none).
    Link {
        /// The row it references.
        prev: Option<String>,
    },
    /// Acquires a lock-service lock; `generation` is the sequencer's on `ok`.
    Lock {
        /// The lock generation granted.
        generation: Option<u64>,
    },
    /// Releases a lock-service lock.
    Unlock,
}

/// One line of the history.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Operation id, unique in the run: pairs an invoke with its completion.
    pub op: u64,
    /// The workload client that issued it (one operation at a time per client).
    pub process: u32,
    /// Invoke or completion.
    pub kind: Kind,
    /// What it touched.
    pub key: String,
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub t: u64,
    /// What it does.
    #[serde(flatten)]
    pub call: Call,
}

/// One operation: its invoke paired with its completion (`None`: never completed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The invoke event.
    pub invoke: Event,
    /// The completion event, if any.
    pub complete: Option<Event>,
}

impl Operation {
    /// The outcome: `Ok`, `Fail` or `Info` (an operation that never completed is `Info`).
    pub fn outcome(&self) -> Kind {
        self.complete.as_ref().map_or(Kind::Info, |c| c.kind)
    }
}

/// Reads `path` and pairs events into operations, in invoke order. A completion without
/// an invoke is ignored.
pub fn read_operations(path: &Path) -> Result<Vec<Operation>> {
    let events: Vec<Event> = jsonl::read_all(path)?;
    Ok(pair(events))
}

/// Pairs invoke and completion events by operation id.
pub fn pair(events: Vec<Event>) -> Vec<Operation> {
    let mut ops: Vec<Operation> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for e in events {
        if e.kind == Kind::Invoke {
            index.insert(e.op, ops.len());
            ops.push(Operation {
                invoke: e,
                complete: None,
            });
        } else if let Some(&i) = index.get(&e.op) {
            ops[i].complete = Some(e);
        }
    }
    ops
}
