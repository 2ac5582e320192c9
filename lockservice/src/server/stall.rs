//! Heartbeats while the leader's own log fsync holds openraft's core.
//!
//! openraft 0.9's core appends a leader's new entries and then waits for their fsync
//! (`RaftCore::append_to_log`) before it does anything else, heartbeats included. A slow
//! disk on the leader (measured with the fault control's `fsync-delay-ms`: 300 ms per
//! fsync) therefore silenced it toward the followers long enough for their election timers
//! and failure detectors (150-350 ms with the defaults), and a healthy leader lost its
//! term to a stall it would have survived: the new leader then restarts every session's
//! lease and lock-delay, and requests wait for the election.
//!
//! While an append of this leader has been running for at least a heartbeat interval, this
//! task sends each follower, once per interval, the last AppendEntries it accepted without
//! its entries ([`Followers::beat`]): a duplicate of a message already delivered, which Raft
//! allows at any time, and which tells the follower what a heartbeat tells it. It does so
//! only for [`STALL_COVER`]: a disk that hangs for longer is a failed leader, and the
//! followers then elect another one as if it had died (after `STALL_COVER` plus their
//! usual timeout). A frozen or dead leader process sends nothing, so failover after a
//! kill or a SIGSTOP is unchanged.
//!
//! Safety does not depend on this task: it sends only messages that the leader already
//! sent, and who may win an election is still decided by openraft's vote rules. (A
//! follower that has seen a newer term refuses such a request; one that has not treats it
//! as a delayed message. With no entries it can neither truncate nor conflict, and a
//! follower's accepted and committed log ids only move forward.)
//!
//! Limits, by choice or not yet covered: the cover is per append, so a disk whose every
//! fsync takes 0.1-0.99 s keeps a slow leader in place (it still commits); the core's other
//! fsyncs (vote, purge, truncation) set no [`FlushClock`]; an append that moves the log to
//! a new file does about five syncs and may outlast the cover on a very slow disk; and a
//! new leader has no beats until a follower accepts its first AppendEntries.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Inner;
use crate::raft::followers::Followers;
use crate::raft::log_store::FlushClock;

/// How long a running fsync of the leader is covered by heartbeats from this task.
pub const STALL_COVER: Duration = Duration::from_secs(1);

/// Whether to send the stall heartbeats now: an append has run for between `heartbeat`
/// and [`STALL_COVER`], and the last ones went out at least `heartbeat` ago.
fn due(pending: Option<Duration>, heartbeat: Duration, since_sent: Option<Duration>) -> bool {
    let stalled = pending.is_some_and(|p| p >= heartbeat && p < STALL_COVER);
    stalled && since_sent.is_none_or(|s| s >= heartbeat)
}

/// Runs until shutdown (see the module doc).
pub(crate) async fn stall_heartbeats(
    inner: Arc<Inner>,
    flush: Arc<FlushClock>,
    followers: Arc<Followers>,
    heartbeat: Duration,
    shutdown: watch::Receiver<bool>,
) {
    let check = (heartbeat / 4).max(Duration::from_millis(1));
    let mut sent: Option<tokio::time::Instant> = None;
    loop {
        // A replica that does not lead looks once per heartbeat interval (its appends are
        // a follower's: no beats to send); a leader every quarter interval.
        let leads = inner.leading.lock().is_some();
        tokio::time::sleep(if leads { check } else { heartbeat }).await;
        if *shutdown.borrow() {
            return;
        }
        // The flush clock first (an atomic load): the metrics are read only during a stall.
        let now = tokio::time::Instant::now();
        if !due(flush.pending_for(), heartbeat, sent.map(|t| now - t)) {
            continue;
        }
        let leading = {
            let m = inner.raft.metrics();
            let m = m.borrow();
            m.state.is_leader() && m.current_leader == Some(inner.id)
        };
        if !leading {
            followers.clear();
            continue;
        }
        sent = Some(now);
        tracing::debug!(
            pending_ms = flush.pending_for().map(|p| p.as_millis() as u64),
            "log fsync still running: heartbeats from the side"
        );
        followers.beat(heartbeat).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn beats_only_during_a_stall_shorter_than_the_cover_and_once_per_interval() {
        let hb = ms(50);
        assert!(!due(None, hb, None), "no append running");
        assert!(!due(Some(ms(49)), hb, None), "an ordinary fsync");
        assert!(due(Some(ms(50)), hb, None));
        assert!(!due(Some(ms(80)), hb, Some(ms(30))), "sent 30 ms ago");
        assert!(due(Some(ms(120)), hb, Some(ms(50))));
        assert!(due(Some(STALL_COVER - ms(1)), hb, Some(ms(50))));
        assert!(!due(Some(STALL_COVER), hb, Some(ms(50))), "a hung disk");
    }
}
