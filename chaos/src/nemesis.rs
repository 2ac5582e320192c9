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
    /// Several processes killed at the same instant (a whole-tier crash; a power cut when
    /// they run on the unsynced fault `Fs`, which `detail` says).
    Crash,
    /// A process's injectable clock set to a new rate; `detail` is the control line
    /// (`clock-rate 1.004`; `clock-rate 1` ends the skew).
    ClockRate,
    /// A process's fsyncs delayed; `detail` is the control line (`fsync-delay-ms 300`;
    /// `fsync-delay-ms 0` ends it).
    FsyncDelay,
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

impl Record {
    /// True for a record that puts a fault in place (a kill, stop, partition, crash, a
    /// clock rate other than 1, an fsync delay other than 0).
    pub fn starts_fault(&self) -> bool {
        match self.action {
            Action::Kill | Action::Stop | Action::Partition | Action::Crash => true,
            Action::ClockRate | Action::FsyncDelay => !self.is_reset(),
            _ => false,
        }
    }

    /// True for a control record that returns its setting to the default.
    pub fn is_reset(&self) -> bool {
        match self.action {
            Action::ClockRate => self.value() == Some(1.0),
            Action::FsyncDelay => self.value() == Some(0.0),
            _ => false,
        }
    }

    /// The number at the end of a control record's `detail`.
    pub fn value(&self) -> Option<f64> {
        self.detail.split_whitespace().last()?.parse().ok()
    }

    /// True when `later` ends the fault this record started.
    pub fn ended_by(&self, later: &Record) -> bool {
        match self.action {
            Action::Stop => later.action == Action::Cont && later.target == self.target,
            Action::Partition => later.action == Action::Heal,
            Action::ClockRate | Action::FsyncDelay => {
                later.action == self.action && later.target == self.target && later.is_reset()
            }
            _ => later.action == Action::Start && self.target.split(',').any(|t| t == later.target),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(action: Action, target: &str, detail: &str) -> Record {
        Record {
            t: 0,
            action,
            target: target.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn control_records_start_and_end_faults_by_their_value() {
        let skew = rec(Action::ClockRate, "tablet-1", "clock-rate 1.004");
        assert!(skew.starts_fault() && !skew.is_reset());
        let reset = rec(Action::ClockRate, "tablet-1", "clock-rate 1");
        assert!(!reset.starts_fault() && skew.ended_by(&reset));
        assert!(!skew.ended_by(&rec(Action::ClockRate, "tablet-2", "clock-rate 1")));
        let slow = rec(Action::FsyncDelay, "lock-1", "fsync-delay-ms 300");
        assert_eq!(slow.value(), Some(300.0));
        assert!(slow.starts_fault());
        assert!(slow.ended_by(&rec(Action::FsyncDelay, "lock-1", "fsync-delay-ms 0")));
        assert!(!slow.ended_by(&rec(Action::FsyncDelay, "lock-1", "fsync-delay-ms 100")));
        let crash = rec(Action::Crash, "tablet-1,lock-2", "power cut");
        assert!(crash.ended_by(&rec(Action::Start, "lock-2", "after")));
    }
}
