//! What the leader sends its followers outside openraft's replication streams: heartbeats
//! while its own fsync stalls the core (`server::stall`), and new entries sent early, while
//! that fsync runs.
//!
//! # Early replication
//!
//! openraft 0.9's core awaits the leader's own log flush (`RaftCore::append_to_log`)
//! before it hands new entries to the replication streams, so every write waited for two
//! fsyncs in a row: the leader's, then a follower's. Raft does not need that order (the
//! Raft thesis, 10.2.1: the leader may write its log in parallel with replicating it; an
//! entry is committed once a majority, counting the leader only after its own fsync, has
//! it durably). So when the leader's log store appends entries of the leader's own term,
//! [`Followers::send_early`] sends each follower that has accepted everything before them
//! the AppendEntries that openraft's replication would send next, at once, and keeps the
//! pending answer. When openraft's replication stream, after the leader's flush, sends a
//! request whose last entry is the last entry of an early copy with the same vote, the
//! network ([`Followers::early_answer`]) waits for the early copy's answer instead of
//! sending the request again; only a `Success` is reused, anything else (a conflict, a
//! newer vote, a lost message, a timeout) lets the request go out as usual.
//!
//! Why it is safe:
//! - An early copy is a message this leader could have sent at that moment: its vote, a
//!   `prev_log_id` and entries read from its own log (which a leader never truncates in its
//!   term), and a commit index no greater than one openraft put in a request, so never
//!   beyond what is committed. Raft tolerates any such message arriving late, twice or
//!   never: a follower that has seen a newer vote refuses it, and one whose log disagrees
//!   at `prev_log_id` answers with a conflict (and truncates an uncommitted suffix, as it
//!   would for the replication stream's request).
//! - A follower may hold an entry durably before the leader does, which plain openraft
//!   never allows. If the leader then crashes and loses the entry, openraft 0.9 would
//!   restore it, from its persisted committed vote, as leader of the same term
//!   (`Engine::startup`), and its next entry would get the lost entry's log id; the
//!   follower, which compares log ids only, would answer `Success` while holding the other
//!   entry, and the state machines would part. So a replica never resumes leadership of
//!   the term it had before a restart: its log store reads its own committed vote back
//!   uncommitted ([`crate::raft::log_store::LogStore::with_followers`]), and it must win
//!   a new term, whose log ids are new. (Found in review; `tests/sim.rs` has the case.)
//! - The reused answer means what the replication stream's own answer would mean. A
//!   `Success` for a request of vote `v` ending at log id `L` says that the follower's
//!   log, once fsynced, matched the leader's up to `L` (it held `prev_log_id` and appended
//!   the entries after it). openraft records exactly that: the follower matched up to the
//!   request's last log id, which is `L`. It is a delayed answer to a message that differs
//!   only in its commit index, which the answer does not depend on; Raft tolerates delayed
//!   answers.
//! - The leader still counts itself only after its own fsync: openraft issues the
//!   replication (and so consults the early answer) only after the append's callback, and
//!   the commit index is computed by openraft alone from the answers it received.
//!
//! The follower then learns the new commit index from the next request (openraft sends one
//! when the commit index moves), not from the reused one. Early copies go only to a
//! follower that accepted a request through openraft recently ([`STALE_AFTER`]), so a
//! removed member stops getting them.
//!
//! The simulation (`tests/sim.rs`) runs this path through its faulty network: early copies
//! are lost, duplicated and reordered like any message.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::{LogId, Vote};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Entry, NodeId, TypeConfig};

/// Sends one AppendEntries to a follower outside openraft, waiting at most the given time;
/// `None` when no answer came (lost, refused, timed out).
pub type SendFn = Arc<
    dyn Fn(AppendEntriesRequest<TypeConfig>, Duration) -> BoxFuture<'static, Option<Answer>>
        + Send
        + Sync,
>;

/// A follower's answer to an AppendEntries.
pub type Answer = AppendEntriesResponse<NodeId>;

/// Early copies kept per follower (older ones are dropped; their requests go out as usual).
const EARLY_KEPT: usize = 32;

/// Early copies go only to a follower that accepted a request through openraft within
/// this many AppendEntries timeouts (openraft sends at least a heartbeat every interval).
pub const STALE_AFTER: u32 = 25;

/// Per follower: its connection and what it last accepted from this leader (see the
/// module doc).
#[derive(Default)]
pub struct Followers {
    peers: parking_lot::Mutex<BTreeMap<NodeId, Peer>>,
    /// How long an early copy may wait for its answer.
    ttl: Duration,
}

struct Peer {
    send: SendFn,
    /// When it last accepted a request through openraft.
    at: Instant,
    /// What it accepted through openraft, as a request without entries: the vote, the
    /// highest commit index, and as `prev_log_id` the last log id it matched.
    beat: AppendEntriesRequest<TypeConfig>,
    /// Early copies still of use, oldest first.
    early: VecDeque<Early>,
}

struct Early {
    vote: Vote<NodeId>,
    last: LogId<NodeId>,
    /// `None` while the answer is pending; then whether it was a `Success`.
    answer: watch::Receiver<Option<bool>>,
}

impl Early {
    fn failed(&self) -> bool {
        *self.answer.borrow() == Some(false)
    }
}

impl std::fmt::Debug for Followers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let peers: Vec<NodeId> = self.peers.lock().keys().copied().collect();
        f.debug_struct("Followers").field("peers", &peers).finish()
    }
}

impl Followers {
    /// Followers whose early copies wait at most `ttl` for an answer (openraft's timeout
    /// for an AppendEntries: the heartbeat interval).
    pub fn new(ttl: Duration) -> Followers {
        Followers {
            peers: Default::default(),
            ttl,
        }
    }

    /// Follower `target` accepted `rpc` through openraft; `send` makes its connection,
    /// called only for the follower's first request of a new vote (openraft makes new
    /// connections per term). Within a vote, what it matched and the commit index only
    /// move forward (a leadership check's heartbeat names an older match); an answer
    /// under an older vote, arriving late, changes nothing.
    pub fn accepted(
        &self,
        target: NodeId,
        send: impl FnOnce() -> SendFn,
        rpc: &AppendEntriesRequest<TypeConfig>,
    ) {
        let beat = AppendEntriesRequest {
            vote: rpc.vote,
            prev_log_id: rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id),
            leader_commit: rpc.leader_commit,
            entries: Vec::new(),
        };
        let now = Instant::now();
        let mut peers = self.peers.lock();
        let p = match peers.entry(target) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(Peer {
                    send: send(),
                    at: now,
                    beat,
                    early: VecDeque::new(),
                });
                return;
            }
            std::collections::btree_map::Entry::Occupied(p) => p.into_mut(),
        };
        if beat.vote == p.beat.vote {
            p.beat.prev_log_id = p.beat.prev_log_id.max(beat.prev_log_id);
            p.beat.leader_commit = p.beat.leader_commit.max(beat.leader_commit);
        } else if beat.vote > p.beat.vote {
            p.send = send();
            p.early.clear();
            p.beat = beat;
        } else {
            return;
        }
        p.at = now;
        let upto = p.beat.prev_log_id.map(|m| m.index);
        p.early.retain(|e| Some(e.last.index) > upto);
    }

    /// Sends every follower its heartbeat (the last request it accepted, without entries),
    /// waiting at most `ttl` for the answers (which are not needed: only the sending
    /// matters).
    pub async fn beat(&self, ttl: Duration) {
        let calls: Vec<_> = self
            .peers
            .lock()
            .values()
            .map(|p| (p.send)(p.beat.clone(), ttl))
            .collect();
        futures::future::join_all(calls).await;
    }

    /// Forgets every follower (this replica no longer leads).
    pub fn clear(&self) {
        self.peers.lock().clear();
    }

    /// The leader's log store is about to append `entries` after `prev` (the log id before
    /// the first of them): sends them at once to every follower that recently accepted,
    /// or has been sent early, everything up to `prev` under the vote that made these
    /// entries. Entries of another leader (this replica is a follower appending what it
    /// received) match no follower's vote and go nowhere.
    pub fn send_early(&self, prev: Option<LogId<NodeId>>, entries: &[Entry]) {
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return;
        };
        let now = Instant::now();
        let mut sends = Vec::new();
        for p in self.peers.lock().values_mut() {
            let vote = p.beat.vote;
            let ours = vote.is_committed()
                && entries
                    .iter()
                    .all(|e| e.log_id.leader_id == *vote.leader_id());
            let live = now.duration_since(p.at) <= self.ttl * STALE_AFTER;
            // Where the follower's log will end once what was sent to it is written.
            let chained = match p.early.back() {
                Some(e) if !e.failed() => Some(e.last),
                _ => p.beat.prev_log_id,
            };
            if !ours || !live || chained != prev {
                continue;
            }
            let (tx, rx) = watch::channel(None);
            if p.early.len() == EARLY_KEPT {
                p.early.pop_front();
            }
            p.early.push_back(Early {
                vote,
                last,
                answer: rx,
            });
            let req = AppendEntriesRequest {
                vote,
                prev_log_id: prev,
                leader_commit: p.beat.leader_commit,
                entries: Vec::new(),
            };
            sends.push((p.send.clone(), req, tx));
        }
        // Copied, encoded and sent outside the lock.
        for (send, mut req, tx) in sends {
            req.entries = entries.to_vec();
            let call = send(req, self.ttl);
            tokio::spawn(async move {
                let ok = matches!(call.await, Some(AppendEntriesResponse::Success));
                let _ = tx.send(Some(ok));
            });
        }
    }

    /// Whether follower `target` already accepted an early copy that stands for `rpc` (same
    /// vote, same last log id), waiting for that copy's answer if it is still pending.
    /// `false` when there is none or it was not accepted: then `rpc` must be sent.
    pub async fn early_answer(
        &self,
        target: NodeId,
        rpc: &AppendEntriesRequest<TypeConfig>,
    ) -> bool {
        let Some(last) = rpc.entries.last().map(|e| e.log_id) else {
            return false;
        };
        let mut answer = {
            let peers = self.peers.lock();
            let Some(p) = peers.get(&target) else {
                return false;
            };
            match p
                .early
                .iter()
                .find(|e| e.vote == rpc.vote && e.last == last)
            {
                Some(e) => e.answer.clone(),
                None => return false,
            }
        };
        let accepted = match answer.wait_for(Option::is_some).await {
            Ok(v) => *v == Some(true),
            Err(_) => false, // the sending task was dropped (the runtime shuts down)
        };
        accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    /// A follower connection that records what it is sent and answers with `answer`.
    struct Peer {
        sent: Arc<parking_lot::Mutex<Vec<AppendEntriesRequest<TypeConfig>>>>,
        answer: Arc<parking_lot::Mutex<Option<Answer>>>,
        made: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Peer {
        fn new(answer: Option<Answer>) -> Peer {
            Peer {
                sent: Default::default(),
                answer: Arc::new(parking_lot::Mutex::new(answer)),
                made: Default::default(),
            }
        }

        fn send_fn(&self) -> SendFn {
            self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (sent, answer) = (self.sent.clone(), self.answer.clone());
            Arc::new(move |req, _ttl| {
                sent.lock().push(req);
                let a = match &*answer.lock() {
                    Some(AppendEntriesResponse::Success) => Some(AppendEntriesResponse::Success),
                    Some(_) => Some(AppendEntriesResponse::Conflict),
                    None => None,
                };
                Box::pin(async move { a })
            })
        }

        fn sent_ranges(&self) -> Vec<(Option<u64>, u64)> {
            self.sent
                .lock()
                .iter()
                .map(|r| {
                    let last = r.entries.last().map_or(0, |e| e.log_id.index);
                    (r.prev_log_id.map(|p| p.index), last)
                })
                .collect()
        }
    }

    fn log_id(term: u64, leader: NodeId, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, leader), index)
    }

    fn entries(term: u64, leader: NodeId, from: u64, to: u64) -> Vec<Entry> {
        (from..=to)
            .map(|i| Entry {
                log_id: log_id(term, leader, i),
                payload: EntryPayload::Blank,
            })
            .collect()
    }

    /// Replication's request from leader 1 of `term`: entries `from..=to` after `from - 1`.
    fn request(term: u64, from: u64, to: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(term, 1),
            prev_log_id: Some(log_id(term, 1, from - 1)),
            leader_commit: Some(log_id(term, 1, from - 1)),
            entries: entries(term, 1, from, to),
        }
    }

    /// Lets the spawned sends finish.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn entries_go_early_to_a_follower_caught_up_under_their_vote_and_chain() {
        let f = Followers::new(Duration::from_millis(40));
        let p2 = Peer::new(Some(AppendEntriesResponse::Success));
        let p3 = Peer::new(Some(AppendEntriesResponse::Success));
        f.accepted(2, || p2.send_fn(), &request(2, 5, 5)); // matched 5
        f.accepted(3, || p3.send_fn(), &request(2, 4, 4)); // matched 4: behind
        f.send_early(Some(log_id(2, 1, 5)), &entries(2, 1, 6, 6));
        f.send_early(Some(log_id(2, 1, 6)), &entries(2, 1, 7, 8));
        settle().await;
        assert_eq!(p2.sent_ranges(), [(Some(5), 6), (Some(6), 8)], "chained");
        assert!(p3.sent_ranges().is_empty(), "a follower that lacks entry 5");
        let sent = p2.sent.lock()[1].clone();
        assert_eq!(sent.vote, Vote::new_committed(2, 1));
        assert_eq!(
            sent.leader_commit,
            Some(log_id(2, 1, 4)),
            "a commit index already sent"
        );

        // Entries of another leader (this replica follows it) go nowhere, nor do entries
        // of this leader while its vote is not committed.
        f.send_early(Some(log_id(2, 1, 8)), &entries(3, 2, 9, 9));
        let g = Followers::new(Duration::from_millis(40));
        let mut uncommitted = request(2, 5, 5);
        uncommitted.vote = Vote::new(2, 1);
        g.accepted(2, || p2.send_fn(), &uncommitted);
        g.send_early(Some(log_id(2, 1, 5)), &entries(2, 1, 6, 6));
        settle().await;
        assert_eq!(p2.sent_ranges().len(), 2);
    }

    #[tokio::test]
    async fn only_an_accepted_early_copy_with_the_same_vote_and_last_entry_answers() {
        let f = Followers::new(Duration::from_millis(40));
        let p = Peer::new(Some(AppendEntriesResponse::Success));
        f.accepted(2, || p.send_fn(), &request(2, 5, 5));
        f.send_early(Some(log_id(2, 1, 5)), &entries(2, 1, 6, 6));
        f.send_early(Some(log_id(2, 1, 6)), &entries(2, 1, 7, 7));
        assert!(f.early_answer(2, &request(2, 6, 6)).await);
        assert!(
            f.early_answer(2, &request(2, 6, 7)).await,
            "ends at 7's copy"
        );
        assert!(
            !f.early_answer(2, &request(2, 6, 8)).await,
            "nothing sent for 8"
        );
        assert!(
            !f.early_answer(3, &request(2, 6, 6)).await,
            "another follower"
        );
        let mut newer = request(2, 6, 6);
        newer.vote = Vote::new_committed(3, 1);
        assert!(!f.early_answer(2, &newer).await, "another vote");
        let mut heartbeat = request(2, 6, 6);
        heartbeat.entries.clear();
        assert!(!f.early_answer(2, &heartbeat).await);

        // Refused or unanswered copies answer nothing, and the next entries are not
        // chained onto them.
        for answer in [Some(AppendEntriesResponse::Conflict), None] {
            let f = Followers::new(Duration::from_millis(40));
            let p = Peer::new(answer);
            f.accepted(2, || p.send_fn(), &request(2, 5, 5));
            f.send_early(Some(log_id(2, 1, 5)), &entries(2, 1, 6, 6));
            assert!(!f.early_answer(2, &request(2, 6, 6)).await);
            f.send_early(Some(log_id(2, 1, 6)), &entries(2, 1, 7, 7));
            settle().await;
            assert_eq!(p.sent_ranges(), [(Some(5), 6)]);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_match_only_moves_forward_and_a_quiet_follower_gets_no_early_copies() {
        let ttl = Duration::from_millis(40);
        let f = Followers::new(ttl);
        let p = Peer::new(Some(AppendEntriesResponse::Success));
        f.accepted(2, || p.send_fn(), &request(2, 5, 5)); // matched 5
        let mut check = request(2, 4, 4); // a leadership check's heartbeat: prev 3
        check.entries.clear();
        f.accepted(2, || p.send_fn(), &check);
        f.accepted(2, || p.send_fn(), &request(1, 9, 9)); // a late answer, older vote
        assert_eq!(p.made.load(std::sync::atomic::Ordering::Relaxed), 1);
        f.send_early(Some(log_id(2, 1, 5)), &entries(2, 1, 6, 6));
        settle().await;
        assert_eq!(p.sent_ranges(), [(Some(5), 6)], "still chained at 5");

        tokio::time::advance(ttl * STALE_AFTER + Duration::from_millis(1)).await;
        f.send_early(Some(log_id(2, 1, 6)), &entries(2, 1, 7, 7));
        settle().await;
        assert_eq!(p.sent_ranges().len(), 1, "nothing accepted for a second");
        f.accepted(2, || p.send_fn(), &request(2, 6, 6));
        f.send_early(Some(log_id(2, 1, 6)), &entries(2, 1, 7, 7));
        settle().await;
        assert_eq!(p.sent_ranges().len(), 2, "heard from again");
    }

    #[tokio::test]
    async fn accepted_requests_retire_copies_and_a_new_vote_makes_a_new_connection() {
        let f = Followers::new(Duration::from_millis(40));
        let p = Peer::new(Some(AppendEntriesResponse::Success));
        f.accepted(2, || p.send_fn(), &request(2, 5, 5));
        f.send_early(Some(log_id(2, 1, 5)), &entries(2, 1, 6, 6));
        f.send_early(Some(log_id(2, 1, 6)), &entries(2, 1, 7, 7));
        f.accepted(2, || p.send_fn(), &request(2, 6, 6));
        assert!(!f.early_answer(2, &request(2, 6, 6)).await, "retired");
        assert!(f.early_answer(2, &request(2, 7, 7)).await, "still of use");
        assert_eq!(p.made.load(std::sync::atomic::Ordering::Relaxed), 1);

        f.accepted(2, || p.send_fn(), &request(3, 8, 8));
        assert_eq!(p.made.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert!(
            !f.early_answer(2, &request(2, 7, 7)).await,
            "the old vote's copies"
        );
        f.clear();
        f.send_early(Some(log_id(3, 1, 8)), &entries(3, 1, 9, 9));
        settle().await;
        assert_eq!(p.sent_ranges().len(), 2, "no follower after clear");
    }
}
