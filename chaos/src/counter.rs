//! Exactly-once accounting of increments.
//!
//! The counter workload sends `incr` (a read-modify-write adding 1) to counters
//! `ctr/<n>`. The servers keep no request ids, so the client library never retries an
//! increment that may have reached a server: such an increment completes `info`
//! (unknown) in the history. After the run each counter is read back
//! (`DIR/final/counters.jsonl`). With `acked` increments `ok` and `unknown` ones `info`
//! (or never completed), the final value must lie in `[acked, acked + unknown]`: below
//! means an acknowledged increment was lost, above means one was applied twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::history::{Call, Kind, Operation};

/// A counter's value as read back after the run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CounterValue {
    /// The counter's key (`ctr/<n>`).
    pub key: String,
    /// Its value (0 if never written).
    pub value: i64,
}

/// The accounting of one counter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// Increments acknowledged.
    pub acked: i64,
    /// Increments with an unknown outcome.
    pub unknown: i64,
    /// The final value (`None`: not read back).
    pub value: Option<i64>,
}

impl Account {
    /// Whether the final value is explained by the history.
    pub fn ok(&self) -> bool {
        self.value
            .is_some_and(|v| v >= self.acked && v <= self.acked + self.unknown)
    }
}

/// The accounting of every counter in the history or read back.
pub fn accounts(ops: &[Operation], finals: &[CounterValue]) -> BTreeMap<String, Account> {
    let mut out: BTreeMap<String, Account> = BTreeMap::new();
    for o in ops.iter().filter(|o| o.invoke.call == Call::Incr) {
        let a = out.entry(o.invoke.key.clone()).or_default();
        match o.outcome() {
            Kind::Ok => a.acked += 1,
            Kind::Info | Kind::Invoke => a.unknown += 1,
            Kind::Fail => {}
        }
    }
    for f in finals {
        out.entry(f.key.clone()).or_default().value = Some(f.value);
    }
    out
}

/// Violations: counters whose final value the history cannot explain.
pub fn violations(accounts: &BTreeMap<String, Account>) -> Vec<String> {
    accounts
        .iter()
        .filter(|(_, a)| !a.ok())
        .map(|(k, a)| match a.value {
            None => format!("{k}: not read back ({} acked increments)", a.acked),
            Some(v) if v < a.acked => {
                format!("{k}: {v} < {} acknowledged increments (lost)", a.acked)
            }
            Some(v) => format!(
                "{k}: {v} > {} acknowledged + {} unknown (applied twice)",
                a.acked, a.unknown
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Event, Kind};

    fn incr(op: u64, kind: Option<Kind>) -> Operation {
        let ev = |kind| Event {
            op,
            process: 0,
            kind,
            key: "ctr/0".into(),
            t: op,
            call: Call::Incr,
        };
        Operation {
            invoke: ev(Kind::Invoke),
            complete: kind.map(ev),
        }
    }

    #[test]
    fn final_value_must_lie_between_acked_and_acked_plus_unknown() {
        let ops = vec![
            incr(1, Some(Kind::Ok)),
            incr(2, Some(Kind::Ok)),
            incr(3, Some(Kind::Info)),
            incr(4, None),
            incr(5, Some(Kind::Fail)),
        ];
        for (v, good) in [(1, false), (2, true), (4, true), (5, false)] {
            let fin = [CounterValue {
                key: "ctr/0".into(),
                value: v,
            }];
            let acc = accounts(&ops, &fin);
            assert_eq!(violations(&acc).is_empty(), good, "value {v}");
        }
    }
}
