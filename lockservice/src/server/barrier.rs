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

/// Longest a round waits for the leader's log to be applied.
const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

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
        // openraft may restore a restarted replica as leader of its old term without a
        // new no-op entry, with a commit index known only up to its last applied entry;
        // its read index would then miss entries committed before the restart. So also
        // wait until everything in this leader's log at the start of the round is applied
        // (a leader's own entries commit while it stays leader).
        let last = self.raft.metrics().borrow().last_log_index;
        let result = match self.raft.ensure_linearizable().await {
            Ok(_) => self
                .raft
                .wait(Some(APPLY_WAIT))
                .applied_index_at_least(last, "read barrier")
                .await
                .map(|_| ())
                .map_err(|e| Error::Unavailable(format!("log not applied in time: {e}"))),
            Err(e) => Err(match e.forward_to_leader() {
                Some(f) => (self.not_leader)(f.leader_id),
                None => Error::Unavailable(format!("leadership check failed: {e}")),
            }),
        };
        *self.completed.lock() = (round, result.clone());
        result
    }
}
