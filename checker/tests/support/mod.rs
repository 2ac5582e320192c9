//! History generators shared by the tests and the bench: a real sequential execution of a
//! register, with random call/return intervals drawn around each operation's
//! linearization point, so every generated history is linearizable by construction.

#![allow(dead_code)]

use checker::{Operation, RegisterInput, RegisterOutput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A register history entry with u64 values.
pub type RegOp = Operation<RegisterInput<u64>, RegisterOutput<u64>>;

/// Shape of a generated history.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Concurrent clients.
    pub clients: u64,
    /// Operations per client.
    pub ops_per_client: u64,
    /// Longest call→linearization (and linearization→return) delay.
    pub max_latency: u64,
    /// Probability that a write/CAS's outcome is reported as unknown.
    pub unknown: f64,
}

/// Generates a linearizable register history from `seed`.
///
/// Each client issues operations back to back; each operation gets a linearization point
/// strictly inside its interval; the register is then executed in linearization order to
/// fill in the outputs. Unknown-outcome operations take effect with probability 1/2.
pub fn register_history(seed: u64, shape: Shape) -> Vec<RegOp> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ops = Vec::new();
    let mut points = Vec::new(); // (linearization point, op index, takes effect)
    let mut next_value = 1u64;
    for client in 0..shape.clients {
        let mut t = rng.random_range(0..shape.max_latency);
        for _ in 0..shape.ops_per_client {
            let call = t;
            let lin = call + rng.random_range(1..=shape.max_latency);
            let ret = lin + rng.random_range(1..=shape.max_latency);
            // Distinct linearization points: scale time by the client count.
            let point = lin * shape.clients + client;
            let input = match rng.random_range(0..10) {
                0..=3 => RegisterInput::Read,
                4..=7 => RegisterInput::Write(take(&mut next_value)),
                _ => RegisterInput::Cas {
                    expect: None,
                    new: take(&mut next_value),
                },
            };
            let unknown = !matches!(input, RegisterInput::Read) && rng.random_bool(shape.unknown);
            let effect = !unknown || rng.random_bool(0.5);
            let scale = |x: u64| x * shape.clients + client;
            let op = if unknown {
                Operation::unknown(client, input, scale(call))
            } else {
                Operation::completed(
                    client,
                    input,
                    RegisterOutput::Written,
                    scale(call),
                    scale(ret),
                )
            };
            points.push((point, ops.len(), effect));
            ops.push(op);
            t = ret + rng.random_range(0..shape.max_latency);
        }
    }
    execute(&mut rng, &mut ops, &mut points);
    ops
}

fn take(v: &mut u64) -> u64 {
    *v += 1;
    *v - 1
}

/// Runs the register in linearization order and fills in outputs (and CAS expectations:
/// half the CASes expect the current value, half a stale or absent one).
fn execute(rng: &mut StdRng, ops: &mut [RegOp], points: &mut [(u64, usize, bool)]) {
    points.sort();
    let mut value: Option<u64> = None;
    let mut written: Vec<u64> = Vec::new();
    for &(_, i, effect) in points.iter() {
        let op = &mut ops[i];
        let known = op.output.is_some();
        match &mut op.input {
            RegisterInput::Read => op.output = Some(RegisterOutput::Value(value)),
            RegisterInput::Write(v) => {
                if effect {
                    value = Some(*v);
                    written.push(*v);
                }
            }
            RegisterInput::Cas { expect, new } => {
                *expect = if rng.random_bool(0.5) || written.is_empty() {
                    value
                } else {
                    Some(written[rng.random_range(0..written.len())])
                };
                let ok = *expect == value && effect;
                if ok {
                    value = Some(*new);
                    written.push(*new);
                }
                if known {
                    op.output = Some(RegisterOutput::Cas(ok));
                }
            }
        }
    }
}

/// Makes one read impossible: it returns a value whose write was called only after the
/// read returned, or (if there is none) a value never written. Returns the read's index,
/// or `None` if the history has no completed read.
pub fn corrupt_a_read(ops: &mut [RegOp], pick: usize) -> Option<usize> {
    let reads: Vec<usize> = (0..ops.len())
        .filter(|&i| matches!(ops[i].input, RegisterInput::Read) && ops[i].output.is_some())
        .collect();
    let r = *reads.get(pick % reads.len().max(1))?;
    let ret = ops[r].ret;
    let future = ops.iter().find_map(|op| match op.input {
        RegisterInput::Write(v) | RegisterInput::Cas { new: v, .. } if op.call > ret => Some(v),
        _ => None,
    });
    let bad = future.unwrap_or(u64::MAX);
    ops[r].output = Some(RegisterOutput::Value(Some(bad)));
    Some(r)
}
