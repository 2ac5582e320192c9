//! Monotonic time behind a trait, so tests can run a clock fast, slow or by hand.
//!
//! Leases are measured only with monotonic time (never wall-clock time): the leader
//! measures from when it *received* a KeepAlive, the client from when it *sent* it.
//! [`SkewedClock`] runs at a chosen rate relative to another clock, to show that a drift
//! within the client's margin never lets the client believe in a lease the leader has
//! already ended. [`RateClock`] changes its rate while it runs (piecewise: the instant
//! reached so far is kept and the clock runs on at the new rate, never backwards);
//! [`clock_from_env`] gives server processes one driven by the runtime fault control file
//! (`clock-rate` lines, see `sstable::fault::control`), so a chaos harness can skew a
//! running process's lease arithmetic. [`ManualClock`] only moves when told to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sstable::fault::control::Control;

/// A monotonic clock.
pub trait Clock: Send + Sync + 'static {
    /// The current instant; never goes backwards.
    fn now(&self) -> Instant;
}

/// The operating system's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that runs at `rate` times the speed of `inner`, from the moment it was made
/// (rate 1.01 gains 1%).
pub struct SkewedClock {
    inner: Arc<dyn Clock>,
    origin: Instant,
    rate: f64,
}

impl SkewedClock {
    /// A clock running at `rate` (> 0) times `inner`'s speed.
    pub fn new(inner: Arc<dyn Clock>, rate: f64) -> SkewedClock {
        assert!(
            rate > 0.0 && rate.is_finite(),
            "clock rate must be positive"
        );
        let origin = inner.now();
        SkewedClock {
            inner,
            origin,
            rate,
        }
    }
}

impl Clock for SkewedClock {
    fn now(&self) -> Instant {
        let real = self.inner.now().saturating_duration_since(self.origin);
        self.origin + real.mul_f64(self.rate)
    }
}

/// A clock whose rate relative to `inner` can change while it runs. Each change keeps
/// the instant reached at the change and runs on from there at the new rate; `now` never
/// returns less than it returned before (after a change to a slower rate that takes
/// effect at an earlier instant than a reading already given, the clock holds still
/// until it catches up).
pub struct RateClock {
    inner: Arc<dyn Clock>,
    st: Mutex<RateState>,
}

struct RateState {
    /// `inner`'s instant at the last change.
    base_real: Instant,
    /// This clock's instant at the last change.
    base_virtual: Instant,
    rate: f64,
    /// The latest reading given.
    last: Instant,
}

impl RateClock {
    /// A clock running at `inner`'s speed until told otherwise.
    pub fn new(inner: Arc<dyn Clock>) -> RateClock {
        let now = inner.now();
        RateClock {
            inner,
            st: Mutex::new(RateState {
                base_real: now,
                base_virtual: now,
                rate: 1.0,
                last: now,
            }),
        }
    }

    /// Runs at `rate` (> 0) from now on.
    pub fn set_rate(&self, rate: f64) {
        self.set_rate_at(self.inner.now(), rate);
    }

    /// Runs at `rate` (> 0) from `inner`'s instant `at` on (an `at` before the last change
    /// counts as the last change).
    pub fn set_rate_at(&self, at: Instant, rate: f64) {
        assert!(
            rate > 0.0 && rate.is_finite(),
            "clock rate must be positive"
        );
        let mut st = self.st.lock();
        let at = at.max(st.base_real);
        st.base_virtual = st.at(at);
        st.base_real = at;
        st.rate = rate;
    }

    /// The current rate.
    pub fn rate(&self) -> f64 {
        self.st.lock().rate
    }
}

impl RateState {
    fn at(&self, real: Instant) -> Instant {
        self.base_virtual
            + real
                .saturating_duration_since(self.base_real)
                .mul_f64(self.rate)
    }
}

impl Clock for RateClock {
    fn now(&self) -> Instant {
        let real = self.inner.now();
        let mut st = self.st.lock();
        let v = st.at(real).max(st.last);
        st.last = v;
        v
    }
}

/// A [`RateClock`] over the monotonic clock that follows the fault control's
/// `clock-rate`, from the instant the control's poller saw each change.
struct ControlledClock {
    clock: RateClock,
    control: Arc<Control>,
    generation: Mutex<u64>,
}

impl Clock for ControlledClock {
    fn now(&self) -> Instant {
        let change = self.control.clock_rate();
        {
            let mut g = self.generation.lock();
            if *g != change.generation {
                self.clock.set_rate_at(change.at, change.rate);
                *g = change.generation;
            }
        }
        self.clock.now()
    }
}

/// The clock a server process should use: the monotonic clock, or, when the runtime fault
/// control is set (`QUARRY_FAULT_CONTROL`), one whose rate follows its `clock-rate`.
pub fn clock_from_env() -> Arc<dyn Clock> {
    match Control::global() {
        Some(control) => Arc::new(ControlledClock {
            clock: RateClock::new(Arc::new(MonotonicClock)),
            control,
            generation: Mutex::new(0),
        }),
        None => Arc::new(MonotonicClock),
    }
}

/// A clock that moves only through [`ManualClock::advance`].
pub struct ManualClock {
    origin: Instant,
    offset: Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock {
            origin: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }
}

impl ManualClock {
    /// A stopped clock.
    pub fn new() -> ManualClock {
        ManualClock::default()
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        *self.offset.lock() += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.origin + *self.offset.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skewed_clock_runs_at_its_rate() {
        let base = Arc::new(ManualClock::new());
        let fast = SkewedClock::new(base.clone(), 1.5);
        let t0 = fast.now();
        base.advance(Duration::from_secs(2));
        assert_eq!(fast.now() - t0, Duration::from_secs(3));
        let slow = SkewedClock::new(base.clone(), 0.5);
        let t1 = slow.now();
        base.advance(Duration::from_secs(2));
        assert_eq!(slow.now() - t1, Duration::from_secs(1));
    }

    #[test]
    fn rate_clock_keeps_the_instant_reached_and_runs_on_at_the_new_rate() {
        let base = Arc::new(ManualClock::new());
        let c = RateClock::new(base.clone());
        let t0 = c.now();
        base.advance(Duration::from_secs(10));
        assert_eq!(c.now() - t0, Duration::from_secs(10));
        c.set_rate(1.5);
        base.advance(Duration::from_secs(2));
        assert_eq!(c.now() - t0, Duration::from_secs(13));
        c.set_rate(0.5);
        base.advance(Duration::from_secs(4));
        assert_eq!(c.now() - t0, Duration::from_secs(15));
        assert_eq!(c.rate(), 0.5);
    }

    #[test]
    fn rate_clock_never_goes_backwards_when_a_slower_rate_starts_earlier() {
        let base = Arc::new(ManualClock::new());
        let c = RateClock::new(base.clone());
        let t0 = c.now();
        c.set_rate(2.0);
        let change_seen = base.now();
        base.advance(Duration::from_secs(1));
        let before = c.now();
        assert_eq!(before - t0, Duration::from_secs(2));
        // The change to 0.5 took effect back at `change_seen`: the formula says 0.5 s,
        // but 2 s were already given out, so the clock holds still until it catches up.
        c.set_rate_at(change_seen, 0.5);
        assert_eq!(c.now(), before);
        base.advance(Duration::from_secs(3));
        assert_eq!(c.now() - t0, Duration::from_secs(2));
        base.advance(Duration::from_secs(2));
        assert_eq!(c.now() - t0, Duration::from_millis(3000));
    }

    #[test]
    fn controlled_clock_follows_the_control_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("control");
        let control = Arc::new(Control::new(&p));
        let base = Arc::new(ManualClock::new());
        let c = ControlledClock {
            clock: RateClock::new(base.clone()),
            control: control.clone(),
            generation: Mutex::new(0),
        };
        std::fs::write(&p, "clock-rate 1.25\n").unwrap();
        control.poll_once();
        c.now();
        assert_eq!(c.clock.rate(), 1.25);
        std::fs::write(&p, "").unwrap();
        control.poll_once();
        c.now();
        assert_eq!(c.clock.rate(), 1.0);
    }
}
