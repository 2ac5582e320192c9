//! The leader's view of time: session leases and lock-delays, kept in memory only.
//!
//! KeepAlives are not Raft entries. Every replica keeps a [`LeaseTable`] fed with the
//! events its state machine applies (sessions created and ended, locks released by expiry,
//! lock-delays ended), stamped with the replica's own monotonic clock at apply time. Only
//! the leader acts on it:
//!
//! - [`LeaseTable::keepalive`] extends a session to `received + lease`, where `received`
//!   is when the leader received the KeepAlive (taken *before* the leader confirmed its
//!   leadership for it);
//! - [`LeaseTable::become_leader`] starts every session's lease afresh and every lock-delay
//!   afresh at the new leader's current time (Chubby 2.9);
//! - [`LeaseTable::due`] says which sessions to expire and which lock-delays to end, and
//!   marks them as proposed so each is proposed once; [`LeaseTable::proposal_failed`]
//!   unmarks one whose proposal did not commit.
//!
//! Invariant: an entry's deadline never moves earlier except by `become_leader`, which
//! only ever moves deadlines to `now + full period`, i.e. later than any deadline the
//! previous leader could have promised (the previous leader's promises were all made
//! before this replica was elected; see the crate essay).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::state::{Command, Event, Generation, LockState, SessionId};

/// Lease and lock-delay lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long a session lives after the leader received its last KeepAlive.
    pub lease: Duration,
    /// How long a lock released by session expiry stays unavailable.
    pub lock_delay: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            lease: Duration::from_secs(3),
            lock_delay: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Timed {
    deadline: Instant,
    proposed: bool,
}

impl Timed {
    fn at(deadline: Instant) -> Timed {
        Timed {
            deadline,
            proposed: false,
        }
    }
}

/// Deadlines of sessions and lock-delays as this replica sees them.
#[derive(Debug)]
pub struct LeaseTable {
    cfg: LeaseConfig,
    sessions: HashMap<SessionId, Timed>,
    delays: BTreeMap<(String, Generation), Timed>,
}

impl LeaseTable {
    /// An empty table.
    pub fn new(cfg: LeaseConfig) -> LeaseTable {
        LeaseTable {
            cfg,
            sessions: HashMap::new(),
            delays: BTreeMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> LeaseConfig {
        self.cfg
    }

    /// Rebuilds the table from a whole state (at start-up or after a snapshot install):
    /// every session and lock-delay gets a full period from `now`.
    pub fn reset_from(&mut self, state: &LockState, now: Instant) {
        self.sessions = state
            .sessions()
            .keys()
            .map(|id| (*id, Timed::at(now + self.cfg.lease)))
            .collect();
        self.delays = state
            .delayed_locks()
            .into_iter()
            .map(|k| (k, Timed::at(now + self.cfg.lock_delay)))
            .collect();
    }

    /// Takes in the events of one applied command, applied at `now`.
    pub fn observe(&mut self, events: &[Event], now: Instant) {
        for e in events {
            match e {
                Event::SessionCreated { session } => {
                    self.sessions
                        .insert(*session, Timed::at(now + self.cfg.lease));
                }
                Event::SessionEnded { session, .. } => {
                    self.sessions.remove(session);
                }
                Event::LockReleased {
                    sequencer,
                    by_expiry: true,
                    ..
                } => {
                    let key = (sequencer.path.clone(), sequencer.generation);
                    self.delays
                        .insert(key, Timed::at(now + self.cfg.lock_delay));
                }
                Event::LockDelayEnded { path, generation } => {
                    self.delays.remove(&(path.clone(), *generation));
                }
                Event::Deleted { path } => {
                    self.delays.retain(|(p, _), _| p != path);
                }
                _ => {}
            }
        }
    }

    /// This replica just became leader at `now`: every session gets a full lease and every
    /// lock-delay a full lock-delay from now, and nothing counts as proposed any more.
    pub fn become_leader(&mut self, now: Instant) {
        for t in self.sessions.values_mut() {
            *t = Timed::at(now + self.cfg.lease);
        }
        for t in self.delays.values_mut() {
            *t = Timed::at(now + self.cfg.lock_delay);
        }
    }

    /// A KeepAlive for `session` received at `received` (and then confirmed by a
    /// leadership check): extends the lease to `received + lease` and returns the new
    /// deadline. Fails for an unknown session or one whose expiry was already proposed.
    pub fn keepalive(&mut self, session: SessionId, received: Instant) -> Result<Instant> {
        match self.sessions.get_mut(&session) {
            Some(t) if !t.proposed => {
                t.deadline = t.deadline.max(received + self.cfg.lease);
                Ok(t.deadline)
            }
            _ => Err(Error::SessionExpired(session)),
        }
    }

    /// The current deadline of a session's lease by this replica's clock.
    pub fn deadline(&self, session: SessionId) -> Option<Instant> {
        self.sessions.get(&session).map(|t| t.deadline)
    }

    /// Commands due at `now` (sessions to expire, lock-delays to end), each returned once
    /// until [`LeaseTable::proposal_failed`] or [`LeaseTable::become_leader`].
    pub fn due(&mut self, now: Instant) -> Vec<Command> {
        let mut out = Vec::new();
        let mut expired: Vec<_> = self
            .sessions
            .iter_mut()
            .filter(|(_, t)| !t.proposed && t.deadline <= now)
            .map(|(id, t)| {
                t.proposed = true;
                *id
            })
            .collect();
        expired.sort_unstable();
        out.extend(
            expired
                .into_iter()
                .map(|session| Command::ExpireSession { session }),
        );
        for ((path, generation), t) in self.delays.iter_mut() {
            if !t.proposed && t.deadline <= now {
                t.proposed = true;
                out.push(Command::EndLockDelay {
                    path: path.clone(),
                    generation: *generation,
                });
            }
        }
        out
    }

    /// A command returned by [`LeaseTable::due`] did not commit: it will be due again.
    pub fn proposal_failed(&mut self, cmd: &Command) {
        match cmd {
            Command::ExpireSession { session } => {
                if let Some(t) = self.sessions.get_mut(session) {
                    t.proposed = false;
                }
            }
            Command::EndLockDelay { path, generation } => {
                if let Some(t) = self.delays.get_mut(&(path.clone(), *generation)) {
                    t.proposed = false;
                }
            }
            _ => {}
        }
    }

    /// The earliest deadline not yet proposed (when the timer should next look).
    pub fn next_deadline(&self) -> Option<Instant> {
        let s = self.sessions.values();
        s.chain(self.delays.values())
            .filter(|t| !t.proposed)
            .map(|t| t.deadline)
            .min()
    }

    /// Number of sessions tracked.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::state::{LockMode, Reply};

    const LEASE: Duration = Duration::from_secs(3);
    const DELAY: Duration = Duration::from_secs(1);

    struct Leader {
        clock: ManualClock,
        state: LockState,
        table: LeaseTable,
    }

    impl Leader {
        fn new() -> Leader {
            let cfg = LeaseConfig {
                lease: LEASE,
                lock_delay: DELAY,
            };
            Leader {
                clock: ManualClock::new(),
                state: LockState::new(),
                table: LeaseTable::new(cfg),
            }
        }

        /// Applies a command and feeds its events to the table, as the replica does.
        fn apply(&mut self, cmd: Command) -> Reply {
            let a = self.state.apply(&cmd);
            self.table.observe(&a.events, self.clock.now());
            a.result.unwrap()
        }

        /// Advances time and commits everything that falls due, like the leader's timer.
        fn run_for(&mut self, d: Duration) {
            let end = self.clock.now() + d;
            let step = Duration::from_millis(10);
            while self.clock.now() < end {
                self.clock.advance(step);
                for cmd in self.table.due(self.clock.now()) {
                    self.apply(cmd);
                }
            }
        }

        fn session(&mut self) -> SessionId {
            match self.apply(Command::CreateSession { client: "c".into() }) {
                Reply::Session(s) => s,
                r => panic!("{r:?}"),
            }
        }
    }

    #[test]
    fn a_session_lives_a_lease_after_its_last_keepalive_and_not_less() {
        let mut l = Leader::new();
        let s = l.session();
        l.run_for(Duration::from_secs(2));
        l.table.keepalive(s, l.clock.now()).unwrap();
        let last = l.clock.now();
        l.run_for(LEASE - Duration::from_millis(20));
        assert!(
            l.state.session(s).is_some(),
            "expired before its lease ran out"
        );
        l.run_for(Duration::from_millis(40));
        assert!(l.state.session(s).is_none(), "outlived its lease");
        assert!(l.clock.now() - last >= LEASE);
        assert_eq!(
            l.table.keepalive(s, l.clock.now()),
            Err(Error::SessionExpired(s))
        );
    }

    #[test]
    fn a_keepalive_never_shortens_a_lease() {
        let mut l = Leader::new();
        let s = l.session();
        let d1 = l.table.deadline(s).unwrap();
        let d2 = l
            .table
            .keepalive(s, l.clock.now() - Duration::from_secs(1))
            .unwrap();
        assert_eq!(d1, d2);
    }

    #[test]
    fn expiry_puts_locks_in_lock_delay_for_the_full_delay() {
        let mut l = Leader::new();
        l.apply(Command::Create {
            path: "/l".into(),
            dir: false,
            content: vec![],
            ephemeral: None,
        });
        let a = l.session();
        l.apply(Command::Acquire {
            session: a,
            path: "/l".into(),
            mode: LockMode::Exclusive,
        });
        // b keeps its session alive by KeepAlives every second.
        let b = l.session();
        let mut expired_at = None;
        let mut free_at = None;
        for _ in 0..600 {
            l.run_for(Duration::from_millis(10));
            l.table.keepalive(b, l.clock.now()).unwrap();
            let now = l.clock.now();
            if expired_at.is_none() && l.state.session(a).is_none() {
                expired_at = Some(now);
            }
            let acq = Command::Acquire {
                session: b,
                path: "/l".into(),
                mode: LockMode::Exclusive,
            };
            if free_at.is_none() && l.state.apply(&acq).result.is_ok() {
                free_at = Some(now);
            }
        }
        let (e, f) = (expired_at.unwrap(), free_at.unwrap());
        assert!(f - e >= DELAY, "lock moved {:?} after expiry", f - e);
        assert!(f - e <= DELAY + Duration::from_millis(30));
    }

    #[test]
    fn a_new_leader_extends_every_session_and_delay_before_expiring_any() {
        let mut l = Leader::new();
        let s = l.session();
        l.run_for(Duration::from_millis(2900));
        // Failover: the new leader's table is rebuilt and it becomes leader 0.5 s later.
        l.clock.advance(Duration::from_millis(500));
        l.table.become_leader(l.clock.now());
        let elected = l.clock.now();
        l.run_for(LEASE - Duration::from_millis(20));
        assert!(
            l.state.session(s).is_some(),
            "a failover expired a session early"
        );
        l.run_for(Duration::from_millis(40));
        assert!(l.state.session(s).is_none());
        assert!(l.clock.now() - elected >= LEASE);
    }

    #[test]
    fn due_commands_are_proposed_once_unless_the_proposal_failed() {
        let mut l = Leader::new();
        let s = l.session();
        l.clock.advance(LEASE);
        let due = l.table.due(l.clock.now());
        assert_eq!(due, vec![Command::ExpireSession { session: s }]);
        assert!(l.table.due(l.clock.now()).is_empty());
        assert!(
            l.table.keepalive(s, l.clock.now()).is_err(),
            "acked after expiry proposed"
        );
        l.table.proposal_failed(&due[0]);
        assert_eq!(l.table.due(l.clock.now()), due);
    }
}
