//! Per-register linearizability of the history, with the `checker` crate.
//!
//! Register operations (`reg/<k>`: write, read, cas) become `checker` operations on a
//! [`checker::Register`] per key: `ok` completions carry their answer, `info` and
//! never-completed ones are unknown (they may take effect at any point after their call,
//! or never), `fail` ones are left out (they had no effect and observed nothing). The
//! search is bounded ([`MAX_STEPS`]); running out is reported as a violation ("could not
//! decide"), never as a pass.

use checker::{Operation as COp, Register, RegisterInput, RegisterOutput, Verdict as CVerdict};

use crate::check::Verdict;
use crate::history::{Call, Kind, Operation};

/// Events the search may visit per run before giving up.
pub const MAX_STEPS: u64 = 50_000_000;

type Input = (String, RegisterInput<String>);
type Output = RegisterOutput<String>;

/// The register operations of `ops` as `checker` operations (key, input).
pub fn register_history(ops: &[Operation]) -> Vec<COp<Input, Output>> {
    let mut out = Vec::new();
    for o in ops {
        let kind = o.outcome();
        if kind == Kind::Fail {
            continue;
        }
        let done = o.complete.as_ref().filter(|c| c.kind == Kind::Ok);
        let input = match &o.invoke.call {
            Call::Read { .. } => RegisterInput::Read,
            Call::Write { value } => RegisterInput::Write(value.clone()),
            Call::Cas { from, to, .. } => RegisterInput::Cas {
                expect: Some(from.clone()),
                new: to.clone(),
            },
            _ => continue,
        };
        let key = o.invoke.key.clone();
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
        match checker::check_partitioned::<Register<String>, String>(&h, Some(MAX_STEPS)) {
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
    }
}
