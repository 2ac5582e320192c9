//! The KeepAlive thread of a client and the local leases it maintains.
//!
//! One thread per [`super::Client`] keeps every session opened through it alive, as
//! Chubby does (one KeepAlive per client, not per session): every `interval` it sends one
//! `KeepAliveMany` naming all of them. It runs on its own OS thread with its own
//! single-threaded tokio runtime and its own connections, so no load on the caller's
//! runtime (compactions, request floods) can delay a KeepAlive. It starts with the first
//! session and ends when the client and all its sessions are dropped. On an answer it sets
//! the local lease deadline of every session the leader extended to
//!
//! ```text
//!   send_time + lease × (1 − drift) − safety_gap
//! ```
//!
//! where `send_time` is when *this* KeepAlive was sent (before the leader received it, so
//! before the leader's lease started) and `drift` bounds how much faster the leader's clock
//! may run than ours. So the local deadline is never later than the leader's.
//!
//! A session the answer lists as expired is reported `Expired` and dropped from the
//! request. A session dropped or closed by its owner leaves the next request; one request
//! already in flight may still extend it once (the service then expires it a lease after
//! that request was received).
//!
//! States, as in Chubby: `Safe` while the local lease is valid; `Jeopardy` once it lapsed
//! (stop acting as a lock holder) while the thread keeps trying for a grace period, because
//! a new leader gives every session a full lease from its election; back to `Safe` if a
//! KeepAlive succeeds and the lease it grants (counted from its send time) has not already
//! run out, `Expired` when the leader says the session is gone or the grace period ends.
//! An answer read late, after this process was paused, can grant a lease that ended long
//! ago: the session stays in `Jeopardy` and the next KeepAlive goes out at once.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use super::conn::{Conn, Retry};
use crate::clock::Clock;
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

/// The sessions a client keeps alive, shared with its KeepAlive thread.
#[derive(Default)]
struct Registry {
    sessions: Mutex<BTreeMap<SessionId, Arc<LocalLease>>>,
    /// Woken when a session is added.
    added: Notify,
}

/// What the KeepAlive thread needs to start.
struct Start {
    addrs: Vec<String>,
    attempt: Duration,
    margins: LeaseMargins,
    clock: Arc<dyn Clock>,
}

/// One client's KeepAlive thread (started with its first session).
pub(crate) struct KeepAliver {
    registry: Arc<Registry>,
    start: Start,
    stop: watch::Sender<bool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl KeepAliver {
    /// A KeepAliver for a client of the replicas `addrs`; no thread yet.
    pub(crate) fn new(
        addrs: Vec<String>,
        attempt: Duration,
        margins: LeaseMargins,
        clock: Arc<dyn Clock>,
    ) -> KeepAliver {
        KeepAliver {
            registry: Arc::default(),
            start: Start {
                addrs,
                attempt,
                margins,
                clock,
            },
            stop: watch::channel(false).0,
            thread: Mutex::new(None),
        }
    }

    /// Keeps `session` alive from the next round on; the first call starts the thread,
    /// sending to `first` (the leader the session was created at) before the others.
    pub(crate) fn add(
        &self,
        session: SessionId,
        local: Arc<LocalLease>,
        lease: Duration,
        first: &str,
    ) -> std::io::Result<()> {
        let mut thread = self.thread.lock();
        if thread.is_none() {
            let mut addrs = vec![first.to_string()];
            let s = &self.start;
            addrs.extend(s.addrs.iter().filter(|a| *a != first).cloned());
            let run = Run {
                conn_addrs: addrs,
                attempt: s.attempt,
                lease,
                margins: s.margins,
                clock: s.clock.clone(),
                registry: self.registry.clone(),
            };
            let stop = self.stop.subscribe();
            *thread = Some(
                std::thread::Builder::new()
                    .name("lock-keepalive".into())
                    .spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .expect("a current-thread runtime builds");
                        rt.block_on(run.run(stop));
                    })?,
            );
        }
        self.registry.sessions.lock().insert(session, local);
        self.registry.added.notify_one();
        Ok(())
    }

    /// Stops keeping `session` alive.
    pub(crate) fn remove(&self, session: SessionId) {
        self.registry.sessions.lock().remove(&session);
    }
}

impl Drop for KeepAliver {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

/// The KeepAlive thread's loop.
struct Run {
    conn_addrs: Vec<String>,
    attempt: Duration,
    lease: Duration,
    margins: LeaseMargins,
    clock: Arc<dyn Clock>,
    registry: Arc<Registry>,
}

impl Run {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let interval = self.margins.interval.unwrap_or(self.lease / 3);
        let Ok(conn) = Conn::new(
            self.conn_addrs.clone(),
            interval.max(Duration::from_millis(100)),
        ) else {
            return;
        };
        let conn = conn.with_attempt_timeout(self.attempt);
        loop {
            let sessions: Vec<(SessionId, Arc<LocalLease>)> = {
                let r = self.registry.sessions.lock();
                r.iter().map(|(id, l)| (*id, l.clone())).collect()
            };
            if sessions.is_empty() {
                tokio::select! {
                    _ = self.registry.added.notified() => continue,
                    _ = stop.changed() => return,
                }
            }
            let sent = self.clock.now();
            let ids: Vec<SessionId> = sessions.iter().map(|s| s.0).collect();
            let call = conn.call(Retry::Idempotent, |mut c| {
                let sessions = ids.clone();
                async move {
                    c.keep_alive_many(pb::KeepAliveManyRequest { sessions })
                        .await
                }
            });
            let r = tokio::select! {
                r = call => r,
                _ = stop.changed() => return,
            };
            let pause = match r {
                Ok(resp) => {
                    self.lease = Duration::from_millis(resp.lease_ms);
                    if self.answered(&sessions, sent, &resp.expired) {
                        interval
                    } else {
                        // A late answer left a lease lapsed: ask again soon.
                        Duration::from_millis(50)
                    }
                }
                Err(e) => {
                    self.unanswered(&sessions, &e);
                    Duration::from_millis(50)
                }
            };
            if !self.pause(pause, &mut stop).await {
                return;
            }
        }
    }

    /// The leader extended every session of the request but `expired`. A session is `Safe`
    /// again only if its extended lease has not already run out: an answer that arrives
    /// late (this process was paused, the answer sat in a socket) extends from its send
    /// time, which may be more than a lease ago. False when some lease is still lapsed.
    fn answered(
        &self,
        sessions: &[(SessionId, Arc<LocalLease>)],
        sent: Instant,
        expired: &[u64],
    ) -> bool {
        let expired: HashSet<u64> = expired.iter().copied().collect();
        let now = self.clock.now();
        let mut all_valid = true;
        for (id, local) in sessions {
            if expired.contains(id) {
                local.set(SessionState::Expired);
                self.registry.sessions.lock().remove(id);
            } else {
                local.extend(sent, self.lease);
                if now < *local.deadline.lock() {
                    local.set(SessionState::Safe);
                } else {
                    all_valid = false;
                    local.set(SessionState::Jeopardy);
                }
            }
        }
        all_valid
    }

    /// No answer: jeopardy for lapsed leases, expired after the grace period.
    fn unanswered(&self, sessions: &[(SessionId, Arc<LocalLease>)], e: &crate::error::Error) {
        let grace = self.margins.grace.unwrap_or(self.lease);
        let now = self.clock.now();
        for (id, local) in sessions {
            let deadline = *local.deadline.lock();
            if now >= deadline + grace {
                tracing::warn!(session = id, error = %e, "grace period over: session lost");
                local.set(SessionState::Expired);
                self.registry.sessions.lock().remove(id);
            } else if now >= deadline {
                local.set(SessionState::Jeopardy);
            }
        }
    }

    /// Waits `pause`, or less when a lease lapses first (jeopardy is reported when it
    /// happens, and a KeepAlive goes out at once). False when told to stop.
    async fn pause(&self, pause: Duration, stop: &mut watch::Receiver<bool>) -> bool {
        let now = self.clock.now();
        let first_lapse = {
            let r = self.registry.sessions.lock();
            r.values()
                .map(|l| *l.deadline.lock())
                .filter(|d| *d > now)
                .min()
        };
        let mut until = tokio::time::Instant::now() + pause;
        if let Some(d) = first_lapse {
            until = until.min(tokio::time::Instant::now() + (d - now));
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = stop.changed() => return false,
        }
        if *stop.borrow() {
            return false;
        }
        let now = self.clock.now();
        for l in self.registry.sessions.lock().values() {
            if now >= *l.deadline.lock() {
                l.set(SessionState::Jeopardy);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const LEASE: Duration = Duration::from_secs(3);

    fn run(clock: Arc<ManualClock>) -> Run {
        Run {
            conn_addrs: vec!["127.0.0.1:1".into()],
            attempt: Duration::from_millis(300),
            lease: LEASE,
            margins: LeaseMargins::default(),
            clock,
            registry: Arc::default(),
        }
    }

    fn session(run: &Run, id: SessionId) -> Arc<LocalLease> {
        let l = Arc::new(LocalLease::new(
            run.clock.now(),
            LEASE,
            run.clock.clone(),
            run.margins,
        ));
        run.registry.sessions.lock().insert(id, l.clone());
        l
    }

    #[test]
    fn a_timely_answer_keeps_the_session_safe_and_extends_from_the_send_time() {
        let clock = Arc::new(ManualClock::new());
        let r = run(clock.clone());
        let l = session(&r, 1);
        let sent = clock.now();
        clock.advance(Duration::from_millis(10));
        assert!(r.answered(&[(1, l.clone())], sent, &[]));
        assert_eq!(*l.state.borrow(), SessionState::Safe);
        let local = LEASE.mul_f64(0.99) - Duration::from_millis(50);
        assert_eq!(*l.deadline.lock(), sent + local);
    }

    #[test]
    fn a_late_answer_leaves_a_lapsed_lease_in_jeopardy_not_safe() {
        let clock = Arc::new(ManualClock::new());
        let r = run(clock.clone());
        let l = session(&r, 1);
        // The KeepAlive went out, then the process was paused for two leases before it
        // read the answer: the lease it grants ran out long ago.
        let sent = clock.now();
        clock.advance(LEASE * 2);
        assert!(!r.answered(&[(1, l.clone())], sent, &[]));
        assert_eq!(*l.state.borrow(), SessionState::Jeopardy);
        assert!(!l.is_valid());
        // The next answer, sent after the pause, makes it safe again.
        let sent = clock.now();
        assert!(r.answered(&[(1, l.clone())], sent, &[]));
        assert_eq!(*l.state.borrow(), SessionState::Safe);
        assert!(l.is_valid());
    }

    #[test]
    fn a_session_the_leader_calls_expired_is_expired_and_forgotten() {
        let clock = Arc::new(ManualClock::new());
        let r = run(clock.clone());
        let a = session(&r, 1);
        let b = session(&r, 2);
        let sent = clock.now();
        assert!(r.answered(&[(1, a.clone()), (2, b.clone())], sent, &[2]));
        assert_eq!(*a.state.borrow(), SessionState::Safe);
        assert_eq!(*b.state.borrow(), SessionState::Expired);
        assert!(!r.registry.sessions.lock().contains_key(&2));
        // Expired is final: a later answer does not revive it.
        r.answered(&[(2, b.clone())], clock.now(), &[]);
        assert_eq!(*b.state.borrow(), SessionState::Expired);
    }
}
