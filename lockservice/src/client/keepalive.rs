//! The KeepAlive thread of a session and the local lease it maintains.
//!
//! Runs on its own OS thread with its own single-threaded tokio runtime and its own
//! connections, so no load on the caller's runtime (compactions, request floods) can delay
//! a KeepAlive. Every `interval` it sends one; on an answer it sets the local lease deadline
//! to
//!
//! ```text
//!   send_time + lease × (1 − drift) − safety_gap
//! ```
//!
//! where `send_time` is when *this* KeepAlive was sent (before the leader received it, so
//! before the leader's lease started) and `drift` bounds how much faster the leader's clock
//! may run than ours. So the local deadline is never later than the leader's.
//!
//! States, as in Chubby: `Safe` while the local lease is valid; `Jeopardy` once it lapsed
//! (stop acting as a lock holder) while the thread keeps trying for a grace period, because
//! a new leader gives every session a full lease from its election; back to `Safe` if a
//! KeepAlive succeeds, `Expired` when the leader says the session is gone or the grace
//! period ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::conn::{Conn, Retry};
use crate::clock::Clock;
use crate::error::Error;
use crate::pb;
use crate::state::SessionId;

/// Where a session stands, by the client's own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// The local lease is valid.
    Safe,
    /// The local lease lapsed; still trying to reach the service (grace period).
    Jeopardy,
    /// The session is gone: locks are lost, ephemeral nodes deleted.
    Expired,
}

/// Local-lease parameters.
#[derive(Debug, Clone, Copy)]
pub struct LeaseMargins {
    /// How much faster the service's clock may run than ours (0.01 = 1%).
    pub drift: f64,
    /// Subtracted from every local lease besides the drift.
    pub safety_gap: Duration,
    /// Time between KeepAlives (default: a third of the lease).
    pub interval: Option<Duration>,
    /// How long to keep trying once in jeopardy (default: one lease).
    pub grace: Option<Duration>,
}

impl Default for LeaseMargins {
    fn default() -> Self {
        LeaseMargins {
            drift: 0.01,
            safety_gap: Duration::from_millis(50),
            interval: None,
            grace: None,
        }
    }
}

/// The lease as the client sees it; shared with the session.
pub(crate) struct LocalLease {
    pub(crate) deadline: Mutex<Instant>,
    pub(crate) state: watch::Sender<SessionState>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) margins: LeaseMargins,
}

impl LocalLease {
    pub(crate) fn new(
        sent: Instant,
        lease: Duration,
        clock: Arc<dyn Clock>,
        margins: LeaseMargins,
    ) -> LocalLease {
        let l = LocalLease {
            deadline: Mutex::new(sent),
            state: watch::channel(SessionState::Safe).0,
            clock,
            margins,
        };
        l.extend(sent, lease);
        l
    }

    /// A KeepAlive sent at `sent` was answered with `lease`.
    pub(crate) fn extend(&self, sent: Instant, lease: Duration) {
        let m = &self.margins;
        let local = lease
            .mul_f64((1.0 - m.drift).max(0.0))
            .saturating_sub(m.safety_gap);
        let mut d = self.deadline.lock();
        *d = (*d).max(sent + local);
    }

    pub(crate) fn is_valid(&self) -> bool {
        *self.state.borrow() != SessionState::Expired && self.clock.now() < *self.deadline.lock()
    }

    fn set(&self, s: SessionState) {
        self.state.send_if_modified(|cur| {
            let change = *cur != s && *cur != SessionState::Expired;
            if change {
                tracing::info!(from = ?*cur, to = ?s, "lock-service session state");
                *cur = s;
            }
            change
        });
    }
}

/// Starts the KeepAlive thread; it ends when `stop` is set or the session expires.
pub(crate) fn spawn(
    addrs: Vec<String>,
    session: SessionId,
    lease: Duration,
    attempt: Duration,
    local: Arc<LocalLease>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("lock-keepalive-{session}"))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime builds");
            rt.block_on(run(addrs, session, lease, attempt, local, stop));
        })
}

async fn run(
    addrs: Vec<String>,
    session: SessionId,
    mut lease: Duration,
    attempt: Duration,
    local: Arc<LocalLease>,
    mut stop: watch::Receiver<bool>,
) {
    let interval = local.margins.interval.unwrap_or(lease / 3);
    let grace = local.margins.grace.unwrap_or(lease);
    let conn = match Conn::new(addrs, interval.max(Duration::from_millis(100))) {
        Ok(c) => c.with_attempt_timeout(attempt),
        Err(_) => return local.set(SessionState::Expired),
    };
    loop {
        let sent = local.clock.now();
        let r = conn
            .call(Retry::Idempotent, |mut c| async move {
                c.keep_alive(pb::SessionRef { session }).await
            })
            .await;
        let pause = match r {
            Ok(resp) => {
                lease = Duration::from_millis(resp.lease_ms);
                local.extend(sent, lease);
                local.set(SessionState::Safe);
                interval
            }
            Err(Error::SessionExpired(_)) => {
                local.set(SessionState::Expired);
                return;
            }
            Err(e) => {
                let now = local.clock.now();
                let deadline = *local.deadline.lock();
                if now >= deadline + grace {
                    tracing::warn!(session, error = %e, "grace period over: session lost");
                    local.set(SessionState::Expired);
                    return;
                }
                if now >= deadline {
                    local.set(SessionState::Jeopardy);
                }
                Duration::from_millis(50)
            }
        };
        // Wait for the next send, or less when the lease lapses first (jeopardy is
        // reported when it happens, and a KeepAlive goes out at once).
        let wake = tokio::time::Instant::now() + pause;
        let left = local
            .deadline
            .lock()
            .saturating_duration_since(local.clock.now());
        let until = if left.is_zero() {
            wake
        } else {
            wake.min(tokio::time::Instant::now() + left)
        };
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if local.clock.now() >= *local.deadline.lock() {
            local.set(SessionState::Jeopardy);
        }
    }
}
