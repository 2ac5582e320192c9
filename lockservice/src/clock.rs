//! Monotonic time behind a trait, so tests can run a clock fast, slow or by hand.
//!
//! Leases are measured only with monotonic time (never wall-clock time): the leader
//! measures from when it *received* a KeepAlive, the client from when it *sent* it.
//! [`SkewedClock`] runs at a chosen rate relative to another clock, to show that a drift
//! within the client's margin never lets the client believe in a lease the leader has
//! already ended. [`ManualClock`] only moves when told to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

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
}
