//! Retry classification and backoff: which failures may be retried, and when.
//!
//! Every failed attempt is classified by two questions ([`classify`]):
//! 1. *Could the server have applied the request?* ([`Applied`]). Only a few answers prove
//!    it did not: a refused connection (the request never left this process), a
//!    `wrong-range` answer (checked before anything is done), bad input. A `not-serving`
//!    answer may come *after* the work was done (the server found its lease lapsed before
//!    replying, DESIGN.md rule 5), and a broken connection or a timeout may hide a reply.
//! 2. *What to do next?* ([`Action`]): look the tablet up again and retry (`not-serving`,
//!    `wrong-range`, `not-master`, transport failures: the tablet or master may have moved),
//!    back off and retry the same place (a conflict), or fail.
//!
//! [`decide`] combines the class with the operation's idempotence: an idempotent operation
//! (reads; mutations whose cells all carry explicit timestamps) is retried whenever the
//! action says so; a non-idempotent one (increment, append, check-and-mutate, a cell with
//! the server's timestamp) is retried only when the request provably was not applied, and
//! otherwise fails with [`Error::OutcomeUnknown`].
//!
//! Backoff is exponential with full jitter ([`Backoff`]), bounded by the operation deadline.

use std::time::Duration;

use rand::Rng;
use tonic::Code;

use crate::error::Error;

/// The status metadata key tablet servers and the master use for routing errors.
pub const ERROR_KEY: &str = "quarry-error";

/// Optional status metadata by which a server vouches for what a failed request did:
/// `none` means it had no effect (e.g. `not-serving` because the tablet is not loaded
/// there, answered before any work). Without it, `not-serving` counts as "maybe applied",
/// since the same tag also reports a lease found lapsed *after* the work.
pub const OUTCOME_KEY: &str = "quarry-outcome";

/// Whether a failed request may have taken effect on the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Provably not applied.
    No,
    /// Perhaps applied (the failure may have come after the work).
    Maybe,
}

/// What the caller should do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Forget the cached location, look it up again and retry.
    Relocate,
    /// Wait and retry at the same place.
    Backoff,
    /// Do not retry.
    Fail,
}

/// The class of one failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    /// What to do next.
    pub action: Action,
    /// Whether the request may have been applied.
    pub applied: Applied,
}

/// The decision for one failed attempt of an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Retry; with `relocate`, look the location up again first.
    Retry {
        /// Drop the cached location first.
        relocate: bool,
    },
    /// Give up with this error.
    Fail(Error),
}

/// The routing tag of a status (`not-serving`, `wrong-range`, ...), if any.
pub fn routing_tag(s: &tonic::Status) -> Option<&str> {
    s.metadata().get(ERROR_KEY).and_then(|v| v.to_str().ok())
}

/// True for a failure to connect: the request never left this process.
pub fn never_sent(s: &tonic::Status) -> bool {
    use std::error::Error as _;
    if s.code() != Code::Unavailable {
        return false;
    }
    let mut text = s.message().to_string();
    let mut src = s.source();
    while let Some(e) = src {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        text.push_str(&e.to_string());
        src = e.source();
    }
    text.contains("tcp connect error") || text.contains("Connection refused")
}

/// Classifies a failed attempt (see the module doc).
pub fn classify(s: &tonic::Status) -> Class {
    let class = |action, applied| Class { action, applied };
    if never_sent(s) {
        return class(Action::Relocate, Applied::No);
    }
    let c = classify_tagged(s);
    let vouched_none = s
        .metadata()
        .get(OUTCOME_KEY)
        .is_some_and(|v| v.as_bytes() == b"none");
    if vouched_none {
        return class(c.action, Applied::No);
    }
    c
}

fn classify_tagged(s: &tonic::Status) -> Class {
    let class = |action, applied| Class { action, applied };
    match (s.code(), routing_tag(s)) {
        (_, Some("wrong-range")) => class(Action::Relocate, Applied::No),
        (_, Some("not-serving")) => class(Action::Relocate, Applied::Maybe),
        (_, Some("not-master")) => class(Action::Relocate, Applied::No),
        (Code::Unavailable, _) => class(Action::Relocate, Applied::Maybe),
        (Code::DeadlineExceeded | Code::Cancelled | Code::Unknown, _) => {
            class(Action::Relocate, Applied::Maybe)
        }
        // Aborted: a conflict the server reports before doing anything.
        (Code::Aborted, _) => class(Action::Backoff, Applied::No),
        (Code::Internal | Code::DataLoss, _) => class(Action::Fail, Applied::Maybe),
        _ => class(Action::Fail, Applied::No),
    }
}

/// Combines a failure's class with the operation's idempotence.
pub fn decide(op: &'static str, s: &tonic::Status, idempotent: bool) -> Decision {
    let c = classify(s);
    match c.action {
        Action::Fail => Decision::Fail(Error::from_status(s)),
        _ if !idempotent && c.applied == Applied::Maybe => Decision::Fail(Error::OutcomeUnknown {
            op,
            cause: describe(s),
        }),
        Action::Relocate => Decision::Retry { relocate: true },
        Action::Backoff => Decision::Retry { relocate: false },
    }
}

/// A one-line description of a status for error messages.
pub fn describe(s: &tonic::Status) -> String {
    match routing_tag(s) {
        Some(tag) => format!("{:?} ({tag}): {}", s.code(), s.message()),
        None => format!("{:?}: {}", s.code(), s.message()),
    }
}

/// Exponential backoff with full jitter: the n-th wait is uniform in
/// `[0, min(max, initial * 2^n)]`, never shorter than `initial / 2`.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `initial` and capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The cap of the next wait (without jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32 << self.attempt.min(20);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The next wait.
    pub fn next_delay(&mut self) -> Duration {
        let cap = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let floor = self.initial / 2;
        if cap <= floor {
            return cap;
        }
        rand::rng().random_range(floor..=cap)
    }

    /// Starts over (after progress).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn tagged(code: Code, tag: &'static str) -> tonic::Status {
        let mut s = tonic::Status::new(code, "x");
        s.metadata_mut()
            .insert(ERROR_KEY, MetadataValue::from_static(tag));
        s
    }

    #[test]
    fn wrong_range_is_retried_even_for_non_idempotent_operations() {
        let s = tagged(Code::FailedPrecondition, "wrong-range");
        assert_eq!(
            decide("check_and_mutate", &s, false),
            Decision::Retry { relocate: true }
        );
    }

    #[test]
    fn not_serving_may_follow_the_work_so_non_idempotent_operations_fail_unknown() {
        let s = tagged(Code::Unavailable, "not-serving");
        assert_eq!(
            decide("read_rows", &s, true),
            Decision::Retry { relocate: true }
        );
        assert!(matches!(
            decide("read_modify_write", &s, false),
            Decision::Fail(Error::OutcomeUnknown {
                op: "read_modify_write",
                ..
            })
        ));
    }

    #[test]
    fn a_server_vouching_for_no_effect_lets_non_idempotent_operations_retry() {
        let mut s = tagged(Code::Unavailable, "not-serving");
        s.metadata_mut()
            .insert(OUTCOME_KEY, MetadataValue::from_static("none"));
        assert_eq!(
            decide("check_and_mutate", &s, false),
            Decision::Retry { relocate: true }
        );
        let mut s = tagged(Code::Unavailable, "not-serving");
        s.metadata_mut()
            .insert(OUTCOME_KEY, MetadataValue::from_static("unknown"));
        assert!(matches!(
            decide("check_and_mutate", &s, false),
            Decision::Fail(Error::OutcomeUnknown { .. })
        ));
    }

    #[test]
    fn transport_failures_and_timeouts_are_outcome_unknown_for_non_idempotent_ops() {
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Cancelled] {
            let s = tonic::Status::new(code, "connection reset");
            assert_eq!(
                decide("mutate_row", &s, true),
                Decision::Retry { relocate: true }
            );
            assert!(matches!(
                decide("mutate_row", &s, false),
                Decision::Fail(Error::OutcomeUnknown { .. })
            ));
        }
    }

    #[test]
    fn refused_connection_proves_nothing_was_sent() {
        let s = tonic::Status::new(
            Code::Unavailable,
            "tcp connect error: Connection refused (os error 111)",
        );
        assert!(never_sent(&s));
        assert_eq!(
            decide("read_modify_write", &s, false),
            Decision::Retry { relocate: true }
        );
    }

    #[test]
    fn bad_input_and_missing_things_are_final() {
        let cases = [
            (Code::InvalidArgument, "invalid argument"),
            (Code::ResourceExhausted, "invalid argument"),
            (Code::NotFound, "not found"),
            (Code::AlreadyExists, "already exists"),
            (Code::FailedPrecondition, "failed precondition"),
        ];
        for (code, text) in cases {
            let s = tonic::Status::new(code, "m");
            match decide("mutate_row", &s, true) {
                Decision::Fail(e) => assert!(e.to_string().starts_with(text), "{code:?}: {e}"),
                d => panic!("{code:?} gave {d:?}"),
            }
        }
    }

    #[test]
    fn internal_errors_are_final_and_not_outcome_unknown() {
        let s = tonic::Status::new(Code::DataLoss, "bad block");
        assert!(matches!(
            decide("read_rows", &s, true),
            Decision::Fail(Error::Internal(_))
        ));
    }

    #[test]
    fn a_standby_master_sends_the_client_to_look_the_master_up_again() {
        let s = tagged(Code::Unavailable, "not-master");
        assert_eq!(
            decide("create_table", &s, false),
            Decision::Retry { relocate: true }
        );
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_inside_bounds() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(100));
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            let cap = b.ceiling();
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(5) && d <= cap,
                "{d:?} vs {cap:?}"
            );
            ceilings.push(cap.as_millis());
        }
        assert_eq!(ceilings, [10, 20, 40, 80, 100, 100, 100, 100]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(10));
    }
}
