//! A moment kept in an atomic, so that one task can note it and another read its age
//! without a lock (the failure detector's contact times, the running log append).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The instant every [`Stamp`] counts from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A moment, or none: microseconds after the process's epoch plus one; 0 = none.
#[derive(Debug, Default)]
pub struct Stamp(AtomicU64);

impl Stamp {
    /// Notes now.
    pub fn set_now(&self) {
        let us = epoch().elapsed().as_micros() as u64 + 1;
        self.0.store(us, Ordering::SeqCst);
    }

    /// Forgets the moment.
    pub fn clear(&self) {
        self.0.store(0, Ordering::SeqCst);
    }

    /// Time since the moment; `None` when there is none.
    pub fn age(&self) -> Option<Duration> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            us => Some(
                epoch()
                    .elapsed()
                    .saturating_sub(Duration::from_micros(us - 1)),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_ages_from_when_it_was_set_until_cleared() {
        let s = Stamp::default();
        assert_eq!(s.age(), None);
        s.set_now();
        std::thread::sleep(Duration::from_millis(5));
        let a = s.age().unwrap();
        assert!(
            a >= Duration::from_millis(5) && a < Duration::from_secs(5),
            "{a:?}"
        );
        s.clear();
        assert_eq!(s.age(), None);
    }
}
