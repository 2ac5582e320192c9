//! The nemesis log of a chaos run (`DIR/nemesis.jsonl`): every fault injected and healed.
//!
//! One line per action, stamped with `CLOCK_MONOTONIC` nanoseconds like the history and
//! the ownership logs. The checkers use the kill times (to close the serving intervals of
//! killed tablet servers) and the report draws each fault as a band from its action to
//! the action that ends it.

use serde::{Deserialize, Serialize};

/// What the nemesis did.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// SIGKILL of a process.
    Kill,
    /// SIGSTOP of a process.
    Stop,
    /// SIGCONT of a stopped process.
    Cont,
    /// A process (re)started.
    Start,
    /// A process exited on its own (e.g. a tablet server that lost its lease).
    Exited,
    /// A network partition put in place (`detail` names the rules).
    Partition,
    /// Every partition removed.
    Heal,
    /// An administrative request the nemesis made (e.g. a split).
    Admin,
    /// Several processes killed at the same instant (a whole-tier crash).
    Crash,
}

/// One line of the nemesis log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub t: u64,
    /// What was done.
    pub action: Action,
    /// The process (or processes, comma separated) it was done to.
    pub target: String,
    /// Free text: why, signal, partition rules.
    pub detail: String,
}

/// Kill times by process name (each kill and each member of a crash).
pub fn kills(records: &[Record]) -> std::collections::BTreeMap<String, Vec<u64>> {
    let mut out: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for r in records
        .iter()
        .filter(|r| matches!(r.action, Action::Kill | Action::Crash))
    {
        for name in r.target.split(',') {
            out.entry(name.to_string()).or_default().push(r.t);
        }
    }
    out
}
