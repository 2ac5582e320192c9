//! The lock half of the state machine: acquire, release, lock-delay, sequencers.
//!
//! Rules:
//! - Exclusive needs no holder at all; shared needs no exclusive holder. Neither is granted
//!   while the lock is in lock-delay.
//! - Every grant takes the next value of the global `next_generation`, so generations are
//!   strictly increasing across all locks, deletes and re-creates: a sequencer names one
//!   acquisition for ever.
//! - Acquiring a lock the session already holds in the same mode returns the existing
//!   sequencer (so a retried proposal is harmless); in the other mode it is an error.
//! - A release by the holder frees the lock at once. A release by session expiry puts the
//!   lock in lock-delay, remembered as the expired holding's generation; only
//!   `EndLockDelay` with that generation ends it (a later expiry restarts it).
//! - A sequencer is valid while the node exists and the same holding is still in place.

use super::namespace::validate_path;
use super::{Event, Generation, LockMode, LockState, Reply, Sequencer, SessionId};
use crate::error::{Error, Result};

impl LockState {
    pub(super) fn acquire(
        &mut self,
        session: SessionId,
        path: &str,
        mode: LockMode,
        events: &mut Vec<Event>,
    ) -> Result<Reply> {
        validate_path(path)?;
        self.live_session(session)?;
        let lock = &self.node(path)?.lock;
        let held = match lock.exclusive {
            Some((s, g)) if s == session => Some((LockMode::Exclusive, g)),
            _ => lock.shared.get(&session).map(|g| (LockMode::Shared, *g)),
        };
        if let Some((held_mode, generation)) = held {
            if held_mode == mode {
                return Ok(Reply::Acquired(Sequencer {
                    path: path.to_string(),
                    mode,
                    generation,
                }));
            }
            return Err(Error::FailedPrecondition(format!(
                "session {session} already holds {path} in {held_mode:?} mode"
            )));
        }
        if let Some(g) = lock.delayed {
            return Err(Error::LockBusy(format!(
                "{path} is in lock-delay after the expiry of holding {g}"
            )));
        }
        let conflict = match mode {
            LockMode::Exclusive => !lock.is_free(),
            LockMode::Shared => lock.exclusive.is_some(),
        };
        if conflict {
            return Err(Error::LockBusy(format!("{path} is held")));
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let node = self.nodes.get_mut(path).expect("checked above");
        match mode {
            LockMode::Exclusive => node.lock.exclusive = Some((session, generation)),
            LockMode::Shared => {
                node.lock.shared.insert(session, generation);
            }
        }
        node.lock_generation = generation;
        let info = self.sessions.get_mut(&session).expect("checked above");
        info.locks.insert(path.to_string());
        let sequencer = Sequencer {
            path: path.to_string(),
            mode,
            generation,
        };
        events.push(Event::LockAcquired {
            sequencer: sequencer.clone(),
            session,
        });
        Ok(Reply::Acquired(sequencer))
    }

    pub(super) fn release(
        &mut self,
        session: SessionId,
        path: &str,
        events: &mut Vec<Event>,
    ) -> Result<Reply> {
        validate_path(path)?;
        self.live_session(session)?;
        let holds = self.sessions[&session].locks.contains(path);
        if !holds {
            return Err(Error::FailedPrecondition(format!(
                "session {session} does not hold {path}"
            )));
        }
        self.drop_holding(session, path, false, events);
        let info = self.sessions.get_mut(&session).expect("checked above");
        info.locks.remove(path);
        Ok(Reply::Done)
    }

    /// Ends `session`'s holding of `path`'s lock (if any), into lock-delay when
    /// `by_expiry`. Leaves the session's own `locks` set to the caller.
    pub(super) fn drop_holding(
        &mut self,
        session: SessionId,
        path: &str,
        by_expiry: bool,
        events: &mut Vec<Event>,
    ) {
        let Some(node) = self.nodes.get_mut(path) else {
            return;
        };
        let lock = &mut node.lock;
        let ended = match lock.exclusive {
            Some((s, g)) if s == session => {
                lock.exclusive = None;
                Some((LockMode::Exclusive, g))
            }
            _ => lock.shared.remove(&session).map(|g| (LockMode::Shared, g)),
        };
        let Some((mode, generation)) = ended else {
            return;
        };
        if by_expiry {
            lock.delayed = Some(generation);
        }
        events.push(Event::LockReleased {
            sequencer: Sequencer {
                path: path.to_string(),
                mode,
                generation,
            },
            session,
            by_expiry,
        });
    }

    pub(super) fn end_lock_delay(
        &mut self,
        path: &str,
        generation: Generation,
        events: &mut Vec<Event>,
    ) -> Result<Reply> {
        validate_path(path)?;
        let Some(node) = self.nodes.get_mut(path) else {
            return Ok(Reply::Done); // deleted meanwhile: nothing is delayed any more
        };
        if node.lock.delayed == Some(generation) {
            node.lock.delayed = None;
            events.push(Event::LockDelayEnded {
                path: path.to_string(),
                generation,
            });
        }
        Ok(Reply::Done)
    }

    /// The sequencer of `session`'s current holding of `path`'s lock.
    pub fn sequencer(&self, session: SessionId, path: &str) -> Result<Sequencer> {
        validate_path(path)?;
        self.live_session(session)?;
        let lock = &self.node(path)?.lock;
        let (mode, generation) = match lock.exclusive {
            Some((s, g)) if s == session => (LockMode::Exclusive, g),
            _ => match lock.shared.get(&session) {
                Some(g) => (LockMode::Shared, *g),
                None => {
                    return Err(Error::FailedPrecondition(format!(
                        "session {session} does not hold {path}"
                    )))
                }
            },
        };
        Ok(Sequencer {
            path: path.to_string(),
            mode,
            generation,
        })
    }

    /// `Ok` when `seq` names a holding that is still in place; otherwise
    /// [`Error::StaleSequencer`] saying why.
    pub fn check_sequencer(&self, seq: &Sequencer) -> Result<()> {
        validate_path(&seq.path)?;
        let stale = |why: String| Err(Error::StaleSequencer(why));
        let Some(node) = self.nodes.get(&seq.path) else {
            return stale(format!("{} no longer exists", seq.path));
        };
        let current = match seq.mode {
            LockMode::Exclusive => node
                .lock
                .exclusive
                .is_some_and(|(_, g)| g == seq.generation),
            LockMode::Shared => node.lock.shared.values().any(|g| *g == seq.generation),
        };
        if current {
            Ok(())
        } else {
            stale(format!(
                "{} generation {} ({:?}) is no longer held (newest generation {})",
                seq.path, seq.generation, seq.mode, node.lock_generation
            ))
        }
    }
}

#[cfg(test)]
pub(super) fn check_locks(s: &LockState) {
    for (path, node) in &s.nodes {
        let l = &node.lock;
        assert!(
            l.exclusive.is_none() || l.shared.is_empty(),
            "{path}: both modes"
        );
        let holders = l.exclusive.iter().map(|(s, g)| (*s, *g));
        for (sess, g) in holders.chain(l.shared.iter().map(|(s, g)| (*s, *g))) {
            assert!(g < s.next_generation && g <= node.lock_generation);
            assert!(
                s.sessions[&sess].locks.contains(path),
                "{path} held by {sess}"
            );
        }
    }
    for (id, info) in &s.sessions {
        for p in &info.locks {
            let l = &s.nodes[p].lock;
            let holds = l.exclusive.is_some_and(|(x, _)| x == *id) || l.shared.contains_key(id);
            assert!(holds, "session {id} lists {p} but does not hold it");
        }
    }
}
