//! The search: Wing & Gong's backtracking over a linked list of call/return events, with
//! Lowe's memoization of `(set of linearized operations, model state)`.
//!
//! The events of every operation (a call and a return) are sorted by time into a doubly
//! linked list, calls before returns at equal times. The search walks the list from the
//! head:
//!
//! - at a **call**, it tries to linearize that operation now: if the model accepts the
//!   step from the current state *and* the pair (linearized set ∪ {op}, new state) was
//!   never reached before, it pushes (op, old state), removes the op's two events from
//!   the list ("lift") and restarts from the head; otherwise it moves to the next event;
//! - at a **return**, the operation returning there had to be linearized by now and was
//!   not: it pops the last choice, puts that op's events back ("unlift", in LIFO order so
//!   the list relinks exactly) and continues after that op's call;
//! - at the return of an operation with an **unknown outcome**, every known operation is
//!   linearized (their returns all sort before it), so the history is linearizable: the
//!   remaining unknown operations never happened.
//!
//! - an unknown operation is not placed while an earlier-called unknown operation with an
//!   equal input is unplaced (`twin`): the two are interchangeable and the earlier one is
//!   at least as free, so only call order needs exploring (crate doc, "Interchangeable
//!   unknowns"); and an unknown operation whose step would leave the state as it is is
//!   not placed either (leaving it out, "never happened", has the same futures with
//!   more operations still free).
//!
//! An empty stack at a return means no order works: the history is not linearizable.
//! The memo set is what makes this practical: two orders that reach the same linearized
//! set and the same state have the same futures, so each pair is explored once. It is
//! keyed by a 128-bit Zobrist fingerprint of the set (XOR of two fixed random words per
//! op, kept incrementally) and the state. Only the fingerprint is stored, not the set:
//! a stored bitset costs n/8 bytes per visited pair, which for a 30-minute soak (hundreds
//! of thousands of operations on one key, as many pairs) ran a 24 GB machine out of
//! memory. A fingerprint collision (probability about pairs² / 2^129) could only make the
//! search skip a pair it has not seen, that is, miss an order: the error is a false
//! "not linearizable", never a false pass.
//!
//! For the explanation the search keeps the longest linearized prefix it reached (copied
//! incrementally: only the part of the stack below the lowest point popped since the last
//! copy can differ).

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;

use crate::{Explanation, Model, Verdict};

/// One operation as the search sees it, borrowed from the caller's history.
pub(crate) struct View<'a, I, O> {
    /// Index in the caller's history (reported in explanations).
    pub index: usize,
    pub call: u64,
    /// `UNKNOWN_RETURN` when the outcome is unknown.
    pub ret: u64,
    pub input: &'a I,
    pub output: Option<&'a O>,
}

const NIL: usize = usize::MAX;

/// The event list: node `2i` is op `i`'s call, `2i + 1` its return, `head` a sentinel.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
}

impl Events {
    fn new<I, O>(ops: &[View<'_, I, O>]) -> Events {
        let n = ops.len();
        let mut order: Vec<usize> = (0..2 * n).collect();
        // Calls before returns at equal times (concurrent); known returns before unknown.
        order.sort_by_key(|&node| {
            let op = &ops[node / 2];
            let (time, kind) = if node.is_multiple_of(2) {
                (op.call, 0)
            } else {
                (op.ret, 1)
            };
            (time, kind, op.output.is_none() as u8, node)
        });
        let head = 2 * n;
        let mut next = vec![NIL; 2 * n + 1];
        let mut prev = vec![NIL; 2 * n + 1];
        let mut last = head;
        for &node in &order {
            next[last] = node;
            prev[node] = last;
            last = node;
        }
        Events { next, prev, head }
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NIL {
            self.prev[n] = node;
        }
    }

    /// Removes op's call and return (the call is never last: its return follows it).
    fn lift(&mut self, op: usize) {
        self.unlink(2 * op);
        self.unlink(2 * op + 1);
    }

    /// Undoes the latest `lift`, which must have been of `op`.
    fn unlift(&mut self, op: usize) {
        self.relink(2 * op + 1);
        self.relink(2 * op);
    }
}

/// The set of linearized ops: bits plus an incremental 128-bit Zobrist fingerprint.
struct Linearized {
    bits: Vec<u64>,
    hash: u128,
}

impl Linearized {
    fn flip(&mut self, op: usize) {
        self.bits[op / 64] ^= 1 << (op % 64);
        self.hash ^= zobrist(op);
    }

    fn contains(&self, op: usize) -> bool {
        self.bits[op / 64] & (1 << (op % 64)) != 0
    }
}

/// For each unknown op, the latest earlier-called unknown op with an equal input (`NIL`
/// if none, and for known ops).
fn twins<I: Eq + Hash, O>(ops: &[View<'_, I, O>]) -> Vec<usize> {
    let mut unknown: Vec<usize> = (0..ops.len())
        .filter(|&op| ops[op].output.is_none())
        .collect();
    unknown.sort_by_key(|&op| (ops[op].call, op));
    let mut latest: HashMap<&I, usize> = HashMap::new();
    let mut twin = vec![NIL; ops.len()];
    for op in unknown {
        if let Some(prev) = latest.insert(ops[op].input, op) {
            twin[op] = prev;
        }
    }
    twin
}

/// Two fixed pseudo-random words per op (splitmix64 of `2 op + 1` and `2 op + 2`).
fn zobrist(op: usize) -> u128 {
    let mix = |x: u64| {
        let mut z = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let op = op as u64;
    (u128::from(mix(2 * op + 1)) << 64) | u128::from(mix(2 * op + 2))
}

/// Memo of visited (linearized set fingerprint, state) pairs.
struct Memo<S> {
    seen: HashSet<(u128, S)>,
}

impl<S: std::hash::Hash + Eq> Memo<S> {
    /// Records the pair; false if it was already there.
    fn insert(&mut self, set: &Linearized, state: S) -> bool {
        self.seen.insert((set.hash, state))
    }
}

/// The longest linearized prefix seen so far, kept for explanations.
struct Best<S> {
    ops: Vec<usize>,
    state: S,
    /// Lowest stack depth since `ops` was last brought up to date.
    low_water: usize,
}

impl<S: Clone> Best<S> {
    fn note_pop(&mut self, depth: usize) {
        self.low_water = self.low_water.min(depth);
    }

    fn note_push(&mut self, stack: &[(usize, S)], state: &S) {
        if stack.len() > self.ops.len() {
            let keep = self.low_water.min(self.ops.len());
            self.ops.truncate(keep);
            self.ops.extend(stack[keep..].iter().map(|(op, _)| *op));
            self.state = state.clone();
            self.low_water = stack.len();
        }
    }
}

/// Runs the search over `ops` (all in one partition). `max_steps` bounds the number of
/// events visited; past it the verdict is [`Verdict::GaveUp`].
pub(crate) fn search<M: Model>(
    ops: &[View<'_, M::Input, M::Output>],
    max_steps: Option<u64>,
) -> Verdict {
    let mut events = Events::new(ops);
    let mut set = Linearized {
        bits: vec![0; ops.len().div_ceil(64)],
        hash: 0,
    };
    let mut memo = Memo {
        seen: HashSet::new(),
    };
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = M::init();
    let mut best = Best {
        ops: Vec::new(),
        state: state.clone(),
        low_water: 0,
    };
    let twin = twins(ops);
    let mut node = events.next[events.head];
    let mut steps = 0u64;
    loop {
        steps += 1;
        if max_steps.is_some_and(|max| steps > max) {
            return Verdict::GaveUp { steps: steps - 1 };
        }
        if node == NIL {
            return Verdict::Linearizable;
        }
        let op = node / 2;
        if node.is_multiple_of(2) {
            let waits_for_twin = twin[op] != NIL && !set.contains(twin[op]);
            let next = if waits_for_twin {
                None
            } else {
                M::step(&state, ops[op].input, ops[op].output)
                    // An unknown op that would change nothing may as well not happen.
                    .filter(|next| ops[op].output.is_some() || *next != state)
            };
            if let Some(next_state) = next {
                set.flip(op);
                if memo.insert(&set, next_state.clone()) {
                    stack.push((op, std::mem::replace(&mut state, next_state)));
                    events.lift(op);
                    best.note_push(&stack, &state);
                    node = events.next[events.head];
                    continue;
                }
                set.flip(op);
            }
            node = events.next[node];
        } else if ops[op].output.is_none() {
            return Verdict::Linearizable;
        } else {
            let Some((last, previous)) = stack.pop() else {
                return Verdict::NotLinearizable(explain::<M>(ops, best));
            };
            best.note_pop(stack.len());
            set.flip(last);
            state = previous;
            events.unlift(last);
            node = events.next[2 * last];
        }
    }
}

/// Builds the explanation from the longest prefix: the op that could not be placed is the
/// known op outside the prefix with the earliest return.
fn explain<M: Model>(ops: &[View<'_, M::Input, M::Output>], best: Best<M::State>) -> Explanation {
    let mut placed = vec![false; ops.len()];
    for &op in &best.ops {
        placed[op] = true;
    }
    let stuck = (0..ops.len())
        .filter(|&op| !placed[op] && ops[op].output.is_some())
        .min_by_key(|&op| (ops[op].ret, ops[op].call))
        .expect("a rejected history has a known op outside every linearized prefix");
    let describe = |op: usize| describe(&ops[op]);
    Explanation {
        partition: None,
        prefix: best.ops.iter().map(|&op| ops[op].index).collect(),
        prefix_ops: best.ops.iter().map(|&op| describe(op)).collect(),
        state: format!("{:?}", best.state),
        stuck: ops[stuck].index,
        stuck_op: describe(stuck),
    }
}

fn describe<I: Debug, O: Debug>(op: &View<'_, I, O>) -> String {
    match op.output {
        Some(out) => format!("{:?} -> {:?} [{}, {}]", op.input, out, op.call, op.ret),
        None => format!("{:?} -> ? [{}, ...)", op.input, op.call),
    }
}
