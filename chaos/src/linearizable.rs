//! Per-register linearizability of the history, with the `checker` crate.
//!
//! Register operations (`reg/<k>`: write, read, cas) become `checker` operations on a
//! [`checker::Register`] per key: `ok` completions carry their answer, `info` and
//! never-completed ones are unknown (they may take effect at any point after their call,
//! or never), `fail` ones are left out (they had no effect and observed nothing). The
//! search is bounded (`step_budget`: [`STEPS_PER_OP`] per operation on the busiest
//! key); running out is reported as a violation ("could not decide"), never as a pass.
//!
//! **Unobserved values.** A value that no read returned and no compare-and-set expected
//! is written as one common value, [`UNOBSERVED`]. This changes no verdict: every
//! comparison the model makes is against an observed value (a read's answer, a CAS's
//! `expect`), and the renaming is one-to-one on those, so an order explains the renamed
//! history iff it explains the original. It is what keeps the search small after a fault:
//! the timed-out writes of a partition (often a hundred on a few keys, and rarely read
//! back because later writes overwrite them) become equal unknown operations, which the
//! checker places only in call order (its "interchangeable unknowns"), instead of 2^k
//! subsets the memo cannot merge. A split-crash run with 109 unknown writes on 5 keys ran
//! out of 50 million steps before this.

use checker::{Operation as COp, Register, RegisterInput, RegisterOutput, Verdict as CVerdict};

use crate::check::Verdict;
use crate::history::{Call, Kind, Operation};

/// Events the search may visit per key before giving up, at least.
pub const MAX_STEPS: u64 = 50_000_000;

/// Events the search may visit per key and per operation on the busiest key. Unknown
/// operations that never take effect stay at the head of the search's event list, so
/// each placement walks past them: steps grow as ops × unknowns. The 30-minute soak of
/// seed 30 (200,000 ops and about 170 unknowns per key) needed up to 640 million steps on
/// one key (about 10 s); 50 million is 0.2 s of search.
pub const STEPS_PER_OP: u64 = 5_000;

/// The step budget for `h`: [`STEPS_PER_OP`] per operation on its busiest key, and at
/// least [`MAX_STEPS`].
fn step_budget(h: &[COp<Input, Output>]) -> u64 {
    let mut per_key: std::collections::HashMap<&str, u64> = Default::default();
    for o in h {
        *per_key.entry(o.input.0.as_str()).or_default() += 1;
    }
    let busiest = per_key.values().copied().max().unwrap_or(0);
    MAX_STEPS.max(busiest.saturating_mul(STEPS_PER_OP))
}

/// The one value every unobserved written value is renamed to (module doc).
pub const UNOBSERVED: &str = "(unobserved)";

type Input = (String, RegisterInput<String>);
type Output = RegisterOutput<String>;

/// Every value some operation observed: the answers of `ok` reads and the `expect` of
/// every compare-and-set (whatever its outcome), per key.
fn observed(ops: &[Operation]) -> std::collections::HashSet<(&str, &str)> {
    let mut seen = std::collections::HashSet::new();
    for o in ops {
        let key = o.invoke.key.as_str();
        if let Call::Cas { from, .. } = &o.invoke.call {
            seen.insert((key, from.as_str()));
        }
        let done = o.complete.as_ref().filter(|c| c.kind == Kind::Ok);
        if let Some(Call::Read { value: Some(v) }) = done.map(|c| &c.call) {
            seen.insert((key, v.as_str()));
        }
    }
    seen
}

/// The register operations of `ops` as `checker` operations (key, input), with
/// unobserved values renamed to [`UNOBSERVED`] (module doc).
pub fn register_history(ops: &[Operation]) -> Vec<COp<Input, Output>> {
    let seen = observed(ops);
    // A real value equal to the common one would make the renaming not one-to-one.
    let rename = !seen.iter().any(|(_, v)| *v == UNOBSERVED);
    let name = |key: &str, v: &String| {
        if rename && !seen.contains(&(key, v.as_str())) {
            UNOBSERVED.to_string()
        } else {
            v.clone()
        }
    };
    let mut out = Vec::new();
    for o in ops {
        let kind = o.outcome();
        if kind == Kind::Fail {
            continue;
        }
        let done = o.complete.as_ref().filter(|c| c.kind == Kind::Ok);
        let key = o.invoke.key.clone();
        let input = match &o.invoke.call {
            Call::Read { .. } => RegisterInput::Read,
            Call::Write { value } => RegisterInput::Write(name(&key, value)),
            Call::Cas { from, to, .. } => RegisterInput::Cas {
                expect: Some(from.clone()),
                new: name(&key, to),
            },
            _ => continue,
        };
        let client = o.invoke.process as u64;
        let output = done.and_then(|c| match &c.call {
            Call::Read { value } => Some(RegisterOutput::Value(value.clone())),
            Call::Write { .. } => Some(RegisterOutput::Written),
            Call::Cas { matched, .. } => matched.map(RegisterOutput::Cas),
            _ => None,
        });
        out.push(match (output, done) {
            (Some(v), Some(c)) => COp::completed(client, (key, input), v, o.invoke.t, c.t),
            _ if matches!(input, RegisterInput::Read) => continue,
            _ => COp::unknown(client, (key, input), o.invoke.t),
        });
    }
    out
}

/// The linearizability checker's verdict over `ops`.
pub fn verdict(ops: &[Operation]) -> Verdict {
    let h = register_history(ops);
    let keys: std::collections::BTreeSet<&str> = h.iter().map(|o| o.input.0.as_str()).collect();
    let checked = format!("{} register ops on {} keys", h.len(), keys.len());
    let violations =
        match checker::check_partitioned::<Register<String>, String>(&h, Some(step_budget(&h))) {
            Ok(CVerdict::Linearizable) => vec![],
            Ok(CVerdict::NotLinearizable(e)) => vec![format!("not linearizable: {e}")],
            Ok(CVerdict::GaveUp { steps }) => vec![format!(
                "could not decide linearizability within {steps} steps"
            )],
            Err(e) => vec![format!("malformed history: {e}")],
        };
    Verdict {
        name: "linearizable",
        checked,
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Event;

    fn op(n: u64, p: u32, t0: u64, t1: Option<u64>, call: Call, done: Call) -> Operation {
        let ev = |kind, t, call| Event {
            op: n,
            process: p,
            kind,
            key: "reg/0".into(),
            t,
            call,
        };
        Operation {
            invoke: ev(Kind::Invoke, t0, call),
            complete: t1.map(|t| ev(Kind::Ok, t, done)),
        }
    }

    fn write(n: u64, p: u32, t0: u64, t1: Option<u64>, v: &str) -> Operation {
        let c = Call::Write { value: v.into() };
        op(n, p, t0, t1, c.clone(), c)
    }

    fn read(n: u64, p: u32, t0: u64, t1: u64, v: Option<&str>) -> Operation {
        let done = Call::Read {
            value: v.map(Into::into),
        };
        op(n, p, t0, Some(t1), Call::Read { value: None }, done)
    }

    #[test]
    fn a_stale_read_is_flagged_and_an_unknown_write_may_land_late() {
        let good = vec![
            write(1, 0, 0, Some(10), "a"),
            write(2, 0, 20, Some(30), "b"),
            read(3, 1, 40, 50, Some("b")),
        ];
        assert!(verdict(&good).violations.is_empty());
        let stale = vec![
            write(1, 0, 0, Some(10), "a"),
            write(2, 0, 20, Some(30), "b"),
            read(3, 1, 40, 50, Some("a")),
        ];
        assert_eq!(verdict(&stale).violations.len(), 1, "{:?}", verdict(&stale));
        // An unknown write may take effect after later operations: reading it is fine.
        let late = vec![
            write(1, 0, 0, None, "a"),
            write(2, 1, 20, Some(30), "b"),
            read(3, 1, 40, 50, Some("a")),
        ];
        assert!(verdict(&late).violations.is_empty());
    }

    #[test]
    fn a_cas_answer_must_fit_the_register() {
        let cas = |n, t0, t1, matched| {
            let c = |m| Call::Cas {
                from: "a".into(),
                to: "c".into(),
                matched: m,
            };
            op(n, 1, t0, Some(t1), c(None), c(Some(matched)))
        };
        let h = |matched| vec![write(1, 0, 0, Some(10), "a"), cas(2, 20, 30, matched)];
        assert!(verdict(&h(true)).violations.is_empty());
        assert_eq!(verdict(&h(false)).violations.len(), 1);
        // An unknown write nobody read still explains a failed CAS after it, renamed.
        let mut late = h(false);
        late.insert(1, write(3, 2, 12, None, "u"));
        assert!(verdict(&late).violations.is_empty(), "{:?}", verdict(&late));
    }

    #[test]
    fn many_unknown_writes_nobody_read_are_decided() {
        // 200 timed-out writes between acknowledged writes each read back: unique values
        // would give 2^200 subsets; renamed to one value they are placed in call order.
        let mut h = Vec::new();
        for i in 0..200u64 {
            let t = 10 * i;
            h.push(write(3 * i, (i % 4) as u32, t, None, &format!("lost-{i}")));
            h.push(write(3 * i + 1, 4, t + 1, Some(t + 3), &format!("v-{i}")));
            h.push(read(3 * i + 2, 5, t + 4, t + 6, Some(&format!("v-{i}"))));
        }
        assert!(verdict(&h).violations.is_empty(), "{:?}", verdict(&h));
        // A lost write may land late, but once only: reading it twice around another
        // acknowledged write is caught.
        h[3 * 50 + 2] = read(152, 5, 504, 506, Some("lost-10"));
        assert!(verdict(&h).violations.is_empty(), "{:?}", verdict(&h));
        h[3 * 51 + 2] = read(155, 5, 514, 516, Some("lost-10"));
        assert_eq!(verdict(&h).violations.len(), 1, "{:?}", verdict(&h));
    }
}
