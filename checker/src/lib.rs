//! # checker: is a recorded history linearizable?
//!
//! Quarry's fault tests record every client request as an interval — when it was sent,
//! when (if ever) its answer arrived, what it asked and what it was told — and ask this
//! crate whether some single order of those requests, consistent with real time, explains
//! every answer under a sequential specification (a [`Model`]). That is linearizability
//! (Herlihy & Wing 1990). "Read back what I wrote" is not a checker: it misses stale reads
//! that a concurrent history hides, lost updates that a later write papers over, and
//! compare-and-set answers that no order explains.
//!
//! ## Algorithm
//!
//! Wing & Gong's search (1993) with Lowe's memoization (2017), as in Porcupine (Athalye)
//! and Knossos (Kingsbury); the private `search` module documents the details:
//!
//! 1. Sort the call and return events of all operations into one list (calls first at
//!    equal times, so touching intervals count as concurrent).
//! 2. Walk the list. At a call, try to place that operation next in the order: the model
//!    must accept it from the current state. Placing removes its events and restarts the
//!    walk. At a return, the operation returning there should have been placed already:
//!    undo the most recent choice and try the next candidate after it.
//! 3. Memoize every reached pair (set of placed operations, model state): two different
//!    orders that reach the same pair have the same futures, so the second is cut. This
//!    turns most real histories (a handful of concurrent clients) from exponential into
//!    roughly linear work.
//!
//! **Unknown outcomes.** An operation whose answer never came (`output: None`) may have
//! taken effect at any instant after its call, or never. Its return sorts after every
//! known event; the walk succeeds once every *known* operation is placed, so the unknown
//! ones left over "never happened". [`Model::step`] with `output = None` returns the
//! state the operation leaves if it took effect.
//!
//! **Interchangeable unknowns.** Two unknown operations with equal inputs differ only in
//! when they were called, and the earlier one may take effect wherever the later one
//! may (its interval `[call, ∞)` contains the other's). So any order that uses the later
//! one while the earlier is unused can use the earlier instead: the search places equal
//! unknown operations only in call order. Without this, k unknown writes of equal value
//! give 2^k linearized sets that the memo cannot merge; with it, k + 1. Callers make
//! unknown operations equal where it does not matter which one happened, e.g. a register
//! history can give every written value that nobody ever observed one common value.
//!
//! **Partitioning.** Operations on different keys of a key-value store commute and their
//! models are independent, so a history is linearizable iff each key's sub-history is
//! (linearizability is *local*, Herlihy & Wing theorem 1). [`check_partitioned`] splits
//! by key first; the cost is then exponential only in the concurrency on one key, not in
//! the whole history.
//!
//! ## Verdicts and explanations
//!
//! [`Verdict::NotLinearizable`] carries an [`Explanation`]: the longest prefix of
//! operations the search could linearize, the model state after it, and the operation
//! that could not be placed next (the earliest-returning one left out). It is a starting
//! point for reading the history, not a minimal counterexample in any formal sense.
//!
//! ## Histories on disk
//!
//! [`history`] writes and reads JSON lines (one [`Operation`] per line) so a failing run
//! directory can be checked again offline and read by people.
//!
//! ## Limits (implementation caveats)
//!
//! - The problem is NP-complete (Gibbons & Korach 1997): a history with many concurrent
//!   operations on one key, or many distinct unknown outcomes, can take exponential time and
//!   memory. [`check_bounded`] caps the steps and answers [`Verdict::GaveUp`] instead of
//!   hanging a test. Keep per-key concurrency small (tens of clients) and values unique.
//! - Only total models: a model is a deterministic function of state and input; models
//!   with nondeterministic effects must encode the choice in the output.
//! - Time must come from one clock (or a logical counter) for all clients of a history;
//!   the checker trusts `call` and `ret` as given.
//! - The memo keeps a 128-bit fingerprint of the linearized set per visited pair (about
//!   40 bytes plus the state), not the set itself; a fingerprint collision could only
//!   cause a false "not linearizable", never a false pass (see the `search` module).

#![warn(missing_docs)]

pub mod history;
pub mod models;
mod search;

use std::collections::HashMap;
use std::fmt::{self, Debug};
use std::hash::Hash;

pub use history::{Error, Operation, UNKNOWN_RETURN};
pub use models::{Counter, CounterInput, CounterOutput, Register, RegisterInput, RegisterOutput};

use search::View;

/// A sequential specification: a deterministic state machine that accepts or rejects
/// each (input, output) step.
pub trait Model {
    /// The model's state; compared and hashed for memoization, so keep it small.
    type State: Clone + Eq + Hash + Debug;
    /// A request. Compared and hashed to find interchangeable unknown operations (see
    /// the crate doc).
    type Input: Debug + Eq + Hash;
    /// An answer.
    type Output: Debug;

    /// The state before any operation.
    fn init() -> Self::State;

    /// The state after `input` answered with `output` from `state`, or `None` if that
    /// answer is impossible from `state`. `output == None` means the answer is unknown:
    /// return the state the operation leaves if it took effect (or `None` if it could not
    /// have an effect); the checker separately allows that it never happened.
    fn step(
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some real-time-respecting order explains every answer.
    Linearizable,
    /// No order does.
    NotLinearizable(Explanation),
    /// The step bound of [`check_bounded`] ran out first.
    GaveUp {
        /// Events visited before giving up.
        steps: u64,
    },
}

impl Verdict {
    /// Whether the verdict is [`Verdict::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Why a history is not linearizable (see the crate doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The partition (the key's `Debug` form) when checked by [`check_partitioned`].
    pub partition: Option<String>,
    /// Indices (into the checked history) of the longest linearizable prefix, in order.
    pub prefix: Vec<usize>,
    /// The same operations, described (`input -> output [call, ret]`).
    pub prefix_ops: Vec<String>,
    /// The model state after the prefix (`Debug` form).
    pub state: String,
    /// Index of the operation that could not be placed after the prefix.
    pub stuck: usize,
    /// That operation, described.
    pub stuck_op: String,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.partition {
            writeln!(f, "partition {p}:")?;
        }
        writeln!(
            f,
            "longest linearizable prefix ({} ops):",
            self.prefix.len()
        )?;
        for (i, d) in self.prefix.iter().zip(&self.prefix_ops) {
            writeln!(f, "  #{i}: {d}")?;
        }
        writeln!(f, "state after it: {}", self.state)?;
        write!(f, "cannot place #{}: {}", self.stuck, self.stuck_op)
    }
}

/// Checks a whole history against model `M` (no partitioning, no step bound).
pub fn check<M: Model>(history: &[Operation<M::Input, M::Output>]) -> Result<Verdict, Error> {
    check_bounded::<M>(history, None)
}

/// [`check`], giving up after `max_steps` events visited (if set).
pub fn check_bounded<M: Model>(
    history: &[Operation<M::Input, M::Output>],
    max_steps: Option<u64>,
) -> Result<Verdict, Error> {
    history::validate(history)?;
    let views: Vec<_> = history
        .iter()
        .enumerate()
        .map(|(i, op)| view(i, op, &op.input))
        .collect();
    Ok(search::search::<M>(&views, max_steps))
}

/// An operation on key `K` of a store whose keys each behave as model `M`.
pub type KeyedOperation<K, M> = Operation<(K, <M as Model>::Input), <M as Model>::Output>;

/// Checks a key-value history whose inputs are `(key, model input)` key by key, each key
/// against its own instance of `M`. The first non-linearizable key (in order of first
/// appearance) is reported; [`Verdict::GaveUp`] only if no key is non-linearizable.
pub fn check_partitioned<M: Model, K: Hash + Eq + Debug>(
    history: &[KeyedOperation<K, M>],
    max_steps: Option<u64>,
) -> Result<Verdict, Error> {
    history::validate(history)?;
    let mut keys: HashMap<&K, usize> = HashMap::new();
    type Part<'a, K, M> = (
        &'a K,
        Vec<View<'a, <M as Model>::Input, <M as Model>::Output>>,
    );
    let mut parts: Vec<Part<'_, K, M>> = Vec::new();
    for (i, op) in history.iter().enumerate() {
        let key = &op.input.0;
        let slot = *keys.entry(key).or_insert_with(|| {
            parts.push((key, Vec::new()));
            parts.len() - 1
        });
        parts[slot].1.push(view(i, op, &op.input.1));
    }
    let mut gave_up = None;
    for (key, views) in &parts {
        match search::search::<M>(views, max_steps) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable(mut e) => {
                e.partition = Some(format!("{key:?}"));
                return Ok(Verdict::NotLinearizable(e));
            }
            g @ Verdict::GaveUp { .. } => gave_up = gave_up.or(Some(g)),
        }
    }
    Ok(gave_up.unwrap_or(Verdict::Linearizable))
}

fn view<'a, I, O, J>(index: usize, op: &'a Operation<J, O>, input: &'a I) -> View<'a, I, O> {
    View {
        index,
        call: op.call,
        ret: op.effective_ret(),
        input,
        output: op.output.as_ref(),
    }
}
