//! Sequential specifications the checker tests histories against.
//!
//! - [`Register`]: one value with read, write and compare-and-set. Values should be unique
//!   per write (then a wrong read cannot be explained by another write of the same value).
//! - [`Counter`]: an integer with add and read.
//!
//! Each `step` follows [`Model::step`]'s contract for unknown outcomes: it returns the
//! state the operation leaves *if it took effect*; the checker separately considers that
//! it never happened, so an unknown read or a failed CAS need no state of their own.

use std::fmt::Debug;
use std::hash::Hash;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::Model;

/// A request to a [`Register`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RegisterInput<V> {
    /// Read the value.
    Read,
    /// Replace the value.
    Write(V),
    /// Replace the value with `new` if it is `expect` (`None`: never written).
    Cas {
        /// The value the register must hold.
        expect: Option<V>,
        /// The value to store.
        new: V,
    },
}

/// An answer from a [`Register`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegisterOutput<V> {
    /// A read's value (`None`: never written).
    Value(Option<V>),
    /// A write was done.
    Written,
    /// Whether a compare-and-set stored its value.
    Cas(bool),
}

/// A read/write/compare-and-set register over values `V`, initially empty (`None`).
#[derive(Debug)]
pub struct Register<V>(PhantomData<V>);

impl<V: Clone + Eq + Hash + Debug> Model for Register<V> {
    type State = Option<V>;
    type Input = RegisterInput<V>;
    type Output = RegisterOutput<V>;

    fn init() -> Option<V> {
        None
    }

    fn step(
        state: &Option<V>,
        input: &RegisterInput<V>,
        output: Option<&RegisterOutput<V>>,
    ) -> Option<Option<V>> {
        use RegisterInput as I;
        use RegisterOutput as O;
        match (input, output) {
            (I::Read, Some(O::Value(v))) => (v == state).then(|| state.clone()),
            (I::Write(v), Some(O::Written) | None) => Some(Some(v.clone())),
            (I::Cas { expect, new }, Some(O::Cas(true)) | None) => {
                (expect == state).then(|| Some(new.clone()))
            }
            (I::Cas { expect, .. }, Some(O::Cas(false))) => {
                (expect != state).then(|| state.clone())
            }
            // An unknown read changes nothing; a mismatched answer fits no state.
            _ => None,
        }
    }
}

/// A request to a [`Counter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CounterInput {
    /// Add to the counter.
    Add(i64),
    /// Read the counter.
    Read,
}

/// An answer from a [`Counter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterOutput {
    /// The addition was done.
    Added,
    /// A read's value.
    Value(i64),
}

/// An integer counter starting at 0 (wrapping arithmetic).
#[derive(Debug)]
pub struct Counter;

impl Model for Counter {
    type State = i64;
    type Input = CounterInput;
    type Output = CounterOutput;

    fn init() -> i64 {
        0
    }

    fn step(state: &i64, input: &CounterInput, output: Option<&CounterOutput>) -> Option<i64> {
        match (input, output) {
            (CounterInput::Add(d), Some(CounterOutput::Added) | None) => {
                Some(state.wrapping_add(*d))
            }
            (CounterInput::Read, Some(CounterOutput::Value(v))) => (v == state).then_some(*state),
            _ => None,
        }
    }
}
