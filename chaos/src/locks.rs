//! Lock-service lock safety from the history.
//!
//! The lock workload's clients each loop: acquire an exclusive lock `lock/<n>` (the `ok`
//! carries the sequencer's generation), hold it briefly, release it. A client surely
//! holds the lock from its acquire's `ok` to its release's `invoke`. Pass:
//! - no two clients surely hold one lock at the same time;
//! - generations are unique per lock (a client re-acquiring a lock it still holds,
//!   after a release with an unknown outcome, gets its generation again), and an acquire that completed before another
//!   began has the smaller generation (generations are fencing tokens, DESIGN.md 5.4).

use crate::check::Verdict;
use crate::history::{Call, Kind, Operation};

/// One sure holding of a lock.
#[derive(Clone, Debug)]
struct Hold {
    key: String,
    process: u32,
    generation: u64,
    invoked: u64,
    from: u64,
    to: u64,
}

fn holds(ops: &[Operation]) -> Vec<Hold> {
    let mut out = Vec::new();
    for (i, o) in ops.iter().enumerate() {
        let Some(c) = o.complete.as_ref().filter(|c| c.kind == Kind::Ok) else {
            continue;
        };
        let Call::Lock {
            generation: Some(generation),
        } = c.call
        else {
            continue;
        };
        // The hold ends at this process's next unlock of the key (or the end of the run).
        let to = ops[i + 1..]
            .iter()
            .find(|u| {
                u.invoke.process == o.invoke.process
                    && u.invoke.key == o.invoke.key
                    && u.invoke.call == Call::Unlock
            })
            .map_or(u64::MAX, |u| u.invoke.t);
        out.push(Hold {
            key: o.invoke.key.clone(),
            process: o.invoke.process,
            generation,
            invoked: o.invoke.t,
            from: c.t,
            to,
        });
    }
    out
}

/// The lock checker's verdict over `ops`.
pub fn verdict(ops: &[Operation]) -> Verdict {
    let hs = holds(ops);
    let mut violations = Vec::new();
    for (n, a) in hs.iter().enumerate() {
        for b in hs[n + 1..].iter().filter(|b| b.key == a.key) {
            if a.process != b.process && a.from < b.to && b.from < a.to {
                violations.push(format!(
                    "{}: clients {} and {} held it at once (generations {} and {})",
                    a.key, a.process, b.process, a.generation, b.generation
                ));
            }
            // A session that acquires a lock it still holds (its release was lost) gets
            // its own generation again: only another client's equal one is wrong.
            if a.generation == b.generation && a.process != b.process {
                violations.push(format!(
                    "{}: generation {} granted twice",
                    a.key, a.generation
                ));
            }
            for (x, y) in [(a, b), (b, a)] {
                if x.from < y.invoked && x.generation > y.generation {
                    violations.push(format!(
                        "{}: generation {} granted before the later {}",
                        x.key, x.generation, y.generation
                    ));
                }
            }
        }
    }
    Verdict {
        name: "locks",
        checked: format!("{} lock holdings", hs.len()),
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Event;

    fn op(op: u64, process: u32, call: Call, t0: u64, t1: u64, done: Call) -> Operation {
        let ev = |kind, t, call| Event {
            op,
            process,
            kind,
            key: "lock/0".into(),
            t,
            call,
        };
        Operation {
            invoke: ev(Kind::Invoke, t0, call),
            complete: Some(ev(Kind::Ok, t1, done)),
        }
    }

    fn lock(n: u64, p: u32, t0: u64, t1: u64, g: u64) -> Operation {
        let call = Call::Lock { generation: None };
        let done = Call::Lock {
            generation: Some(g),
        };
        op(n, p, call, t0, t1, done)
    }

    fn unlock(n: u64, p: u32, t0: u64) -> Operation {
        op(n, p, Call::Unlock, t0, t0 + 1, Call::Unlock)
    }

    #[test]
    fn overlapping_holders_and_backward_generations_are_flagged() {
        let good = vec![
            lock(1, 0, 0, 10, 1),
            unlock(2, 0, 20),
            lock(3, 1, 15, 25, 2),
            unlock(4, 1, 30),
        ];
        assert!(verdict(&good).violations.is_empty());
        let twice = vec![
            lock(1, 0, 0, 10, 1),
            lock(3, 1, 12, 15, 2),
            unlock(2, 0, 20),
        ];
        assert_eq!(verdict(&twice).violations.len(), 1);
        let backward = vec![
            lock(1, 0, 0, 10, 5),
            unlock(2, 0, 11),
            lock(3, 1, 12, 15, 4),
        ];
        assert_eq!(verdict(&backward).violations.len(), 1);
        let again = vec![
            lock(1, 0, 0, 10, 5),
            unlock(2, 0, 11),
            lock(3, 0, 12, 15, 5),
        ];
        assert!(verdict(&again).violations.is_empty());
    }
}
