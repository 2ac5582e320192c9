//! The failure detector: a follower that has not heard from a leader for its detector
//! timeout starts an election itself (`Raft::trigger().elect()`), besides openraft's own
//! election timer.
//!
//! Why: openraft 0.9's timer waits `leader_lease + election_timeout` after the last
//! heartbeat, and `2 × election_timeout_max` more once this replica has *ever* seen a
//! vote response with a longer log than its own (a flag only its next election clears:
//! a replica that lost the start-up election, or was restarted behind, carries it until
//! it campaigns again). Measured: leader kill → next lock took 1.3-1.9 s instead of
//! ~0.5 s whenever a survivor carried the flag. The detector's timeout does not have it.
//!
//! Timeout of replica `k`: `base + (m + 1 + k) · width`, where `m` is the largest voter
//! id, i.e. just past the longest *voter lease* of any other replica (openraft's voters
//! refuse every vote request for `election_timeout_max = base + (id + 1) · width` after
//! their last heartbeat, so an earlier campaign would only be refused), staggered by
//! `width` per id so survivors do not campaign at once. A failed campaign is retried
//! after the same timeout. An election is never unsafe in Raft, only disruptive: a live
//! leader's heartbeats keep the voters' leases fresh and they refuse the vote, and a
//! replica that never heard from a leader (just started) leaves elections to openraft.
//!
//! Measured (issue 3, replicas' logs at info): with only the above, 3-5 of 10 leader
//! kills or freezes took 0.8-3.3 s instead of ~0.35 s, for two reasons:
//!
//! - **Duel of a short log and a long log.** The dead leader's last entries had reached
//!   one survivor (A) but not the other (B). When B's detector fired first it campaigned in
//!   term T+1; A refused by log *without adopting T+1* (openraft 0.9 checks the log before
//!   the term), then A campaigned in T+1 too and B refused by vote (it had voted for
//!   itself in T+1). Each retry repeated this one term higher, B always first, until A's
//!   detector happened to fire first (seen: T16..T18, 0.9 s; T35..T39, 2.3 s). Fixed
//!   twice: a replica whose vote a peer refused because the peer's log is longer
//!   ([`Heard::outlogged`], noted by the network on the vote response) holds its detector
//!   for `2 ×` its timeout, leaving the election to the replica that can win it; and a
//!   failed campaign is retried after [`retry_timeout`] (`base + id · width`), not a full
//!   detector timeout, so A's second campaign (one term above B's self-vote) comes ~0.1 s
//!   after its first.
//! - **A follower's own fsync taken for the leader's silence.** The detector was fed when
//!   an AppendEntries *answer* was ready, i.e. after the entries' fsync, and openraft's
//!   replication sends a follower its next AppendEntries (heartbeats too) only after the
//!   previous one was answered. A 300 ms fsync on the shared disk made a follower of a
//!   brand-new leader campaign against it, one entry short, deposing it (seen: 1.2 s). An
//!   AppendEntries whose vote is not older than this replica's now counts as contact from
//!   receipt until it is answered ([`Heard::busy`]).
//! - **Granting a vote did not restart the detector** (Raft's rule). A survivor granted
//!   the other's vote, whose grant then took > 40 ms to arrive (the vote's fsync), and its
//!   own detector fired meanwhile and took over in the next term. A granted vote now counts
//!   as contact.
//!
//! Neither touches safety: who may win is still decided by openraft's vote rules
//! (log up to date, one vote per term, terms never reused); the detector only decides when
//! a replica asks.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{voters, Inner};
use crate::raft::network::Heard;
use crate::raft::RaftTiming;

/// The shortest nap of the detector.
const CHECK: Duration = Duration::from_millis(5);

/// The detector timeout of replica `id` among `voters` (see the module doc).
pub fn detector_timeout(t: RaftTiming, id: u64, max_voter: u64) -> Duration {
    t.election_base + t.election_width * (max_voter + 1 + id) as u32
}

/// How long replica `id` waits after a campaign of its detector that did not make it
/// leader before it campaigns again (past the other voters' leases already; staggered by
/// id so two candidates do not retry at once).
pub fn retry_timeout(t: RaftTiming, id: u64) -> Duration {
    t.election_base + t.election_width * id as u32
}

/// Whether replica `id` campaigns now: silent for its timeout, not within `retry` of its
/// last campaign, and not outlogged (a peer with a longer log refused its vote) since it
/// last heard a leader and within `2 × timeout`.
fn due(
    silent: Duration,
    timeout: Duration,
    retry: Duration,
    since_campaign: Option<Duration>,
    outlogged: Option<Duration>,
) -> bool {
    let rested = since_campaign.is_none_or(|d| d >= retry);
    let held = outlogged.is_some_and(|o| o < silent && o < 2 * timeout);
    silent >= timeout && rested && !held
}

/// How long [`due`] stays false if nothing is heard meanwhile: the detector sleeps that
/// long (at least [`CHECK`], at most `cap`) instead of looking every few milliseconds. A
/// contact heard meanwhile only makes `due` later, so it wakes no later than it must.
fn not_due_for(
    silent: Duration,
    timeout: Duration,
    retry: Duration,
    since_campaign: Option<Duration>,
    outlogged: Option<Duration>,
    cap: Duration,
) -> Duration {
    let mut wait = timeout.saturating_sub(silent);
    if let Some(c) = since_campaign {
        wait = wait.max(retry.saturating_sub(c));
    }
    if let Some(o) = outlogged.filter(|o| *o < silent) {
        wait = wait.max((2 * timeout).saturating_sub(o));
    }
    wait.clamp(CHECK, cap.max(CHECK))
}

/// Runs the detector until shutdown.
pub(crate) async fn detector(
    inner: Arc<Inner>,
    heard: Arc<Heard>,
    timing: RaftTiming,
    shutdown: watch::Receiver<bool>,
) {
    let mut last_campaign: Option<tokio::time::Instant> = None;
    // Wakes at most once per heartbeat interval, or when the timeout can run out: about
    // 25 wake-ups a second instead of 200, the larger part of an idle replica's CPU.
    let cap = timing.heartbeat;
    let mut nap = CHECK;
    loop {
        tokio::time::sleep(nap).await;
        nap = cap;
        if *shutdown.borrow() {
            return;
        }
        let (follower, leader_here) = {
            let m = inner.raft.metrics().borrow().clone();
            (
                m.state.is_follower() || m.state.is_candidate(),
                m.current_leader == Some(inner.id),
            )
        };
        if !follower || leader_here {
            // A leader hears no AppendEntries; once deposed it waits about a full timeout
            // (from its last look, at most a heartbeat interval before).
            heard.touch();
            continue;
        }
        let v = voters(&inner.raft);
        if !v.contains(&inner.id) || v.len() < 2 {
            continue;
        }
        let max = v.iter().copied().max().unwrap_or(inner.id);
        let timeout = detector_timeout(timing, inner.id, max);
        let Some(since) = heard.since() else { continue };
        let now = tokio::time::Instant::now();
        let retry = retry_timeout(timing, inner.id);
        let (campaigned, outlogged) = (last_campaign.map(|t| now - t), heard.outlogged());
        if !due(since, timeout, retry, campaigned, outlogged) {
            nap = not_due_for(since, timeout, retry, campaigned, outlogged, cap);
            continue;
        }
        tracing::info!(
            id = inner.id,
            silent_ms = since.as_millis() as u64,
            "no leader heard from: campaigning"
        );
        last_campaign = Some(now);
        if inner.raft.trigger().elect().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn campaigns_after_silence_and_retries_sooner() {
        let t = RaftTiming::default();
        let (timeout, retry) = (detector_timeout(t, 1, 3), retry_timeout(t, 1));
        assert_eq!((timeout, retry), (ms(280), ms(120)));
        assert!(!due(ms(279), timeout, retry, None, None));
        assert!(due(ms(280), timeout, retry, None, None));
        assert!(!due(ms(400), timeout, retry, Some(ms(119)), None));
        assert!(due(ms(400), timeout, retry, Some(ms(120)), None));
    }

    #[test]
    fn the_detector_sleeps_until_the_timeout_can_run_out_and_no_longer() {
        let t = RaftTiming::default();
        let (timeout, retry, cap) = (detector_timeout(t, 1, 3), retry_timeout(t, 1), ms(40));
        let nap = |silent, campaigned, outlogged| {
            not_due_for(ms(silent), timeout, retry, campaigned, outlogged, cap)
        };
        assert_eq!(
            nap(0, None, None),
            cap,
            "just heard: the next look in a heartbeat"
        );
        assert_eq!(nap(260, None, None), ms(20), "at the timeout exactly");
        assert_eq!(nap(279, None, None), CHECK, "never shorter than CHECK");
        assert_eq!(nap(300, Some(ms(100)), None), ms(20), "until the retry");
        assert_eq!(nap(600, None, Some(ms(550))), ms(10), "until 2 x timeout");
        assert_eq!(
            nap(300, None, Some(ms(400))),
            CHECK,
            "a stale refusal holds nothing"
        );
        // Waking then, the detector finds the campaign due.
        assert!(due(ms(280), timeout, retry, None, None));
        assert!(due(ms(300), timeout, retry, Some(ms(120)), None));
        assert!(due(ms(610), timeout, retry, None, Some(ms(560))));
    }

    #[test]
    fn outlogged_replica_holds_off() {
        let t = RaftTiming::default();
        let (timeout, retry) = (detector_timeout(t, 2, 3), retry_timeout(t, 2));
        // Refused by a longer log 10 ms ago, during this silence: wait.
        assert!(!due(ms(400), timeout, retry, None, Some(ms(10))));
        // ... but not forever: past 2 x timeout it campaigns again.
        assert!(due(
            ms(700),
            timeout,
            retry,
            Some(ms(700)),
            Some(ms(2 * 320))
        ));
        // A refusal before the last leader contact is stale.
        assert!(due(ms(400), timeout, retry, None, Some(ms(500))));
    }
}
