//! A batched leadership barrier: `Raft::ensure_linearizable()` shared by concurrent callers.
//!
//! A caller may only use a round that *started after it arrived*: then the round's
//! confirmation of leadership (a heartbeat quorum) and its wait for the state machine to
//! apply everything committed both happened after the caller's request was received. At
//! most one round runs at a time; callers that arrive while one runs share the next.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::raft::Raft;

/// See the module doc.
pub struct Barrier {
    raft: Raft,
    /// Rounds started so far (incremented just before a round calls openraft).
    started: AtomicU64,
    /// Held while a round runs.
    running: tokio::sync::Mutex<()>,
    /// The last completed round and its outcome.
    completed: Mutex<(u64, Result<()>)>,
    /// Maps a Raft error to ours (with the leader's address).
    not_leader: Box<dyn Fn(Option<u64>) -> Error + Send + Sync>,
}

impl Barrier {
    /// A barrier over `raft`; `not_leader` builds the redirect error from a leader id.
    pub fn new(
        raft: Raft,
        not_leader: impl Fn(Option<u64>) -> Error + Send + Sync + 'static,
    ) -> Barrier {
        Barrier {
            raft,
            started: AtomicU64::new(0),
            running: tokio::sync::Mutex::new(()),
            completed: Mutex::new((0, Ok(()))),
            not_leader: Box::new(not_leader),
        }
    }

    /// Returns once this replica has confirmed, after this call began, that it is the
    /// leader and has applied everything committed before that; or an error.
    pub async fn wait(&self) -> Result<()> {
        let arrived = self.started.load(Ordering::SeqCst);
        // Whoever holds `running` runs a round we may or may not be able to use; once we
        // hold it, a round numbered above `arrived` began after we arrived.
        let _running = self.running.lock().await;
        {
            let done = self.completed.lock();
            if done.0 > arrived {
                return done.1.clone();
            }
        }
        let round = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let result = match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(e) => Err(match e.forward_to_leader() {
                Some(f) => (self.not_leader)(f.leader_id),
                None => Error::Unavailable(format!("leadership check failed: {e}")),
            }),
        };
        *self.completed.lock() = (round, result.clone());
        result
    }
}
