//! Multi-process, slow and hung disks for the lock service (the fault control's
//! `fsync-delay-ms`, which the chaos nemesis also uses): a leader whose log fsyncs are slow
//! keeps its term, and one whose disk hangs is replaced.
//!
//! openraft 0.9's core sends no heartbeats while it waits for the leader's own fsync;
//! `server::stall` sends them from the side for up to `STALL_COVER` (1 s). Without it a
//! 600 ms fsync on the leader, longer than every follower's election timeout here, deposed
//! a healthy leader (and the new one restarts every session's lease). With a hung disk
//! the cover ends and the followers elect another leader, which serves.

mod lock_support;

use std::time::{Duration, Instant};

use lock_support::*;
use lockservice::server::stall::STALL_COVER;

/// Longer than every replica's failure-detector timeout with the test timings
/// (`ELECTION_BASE + ELECTION_WIDTH * (4 + id)`: 400-500 ms), shorter than `STALL_COVER`.
const SLOW: Duration = Duration::from_millis(600);

/// Far longer than `STALL_COVER`: a disk that does not come back in time.
const HUNG: Duration = Duration::from_secs(6);

async fn term_of(c: &Cluster, id: u64) -> (String, u64, u64) {
    let st = c.client_of(id).status().await.unwrap();
    (st.state, st.term, st.current_leader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_with_slow_fsyncs_keeps_its_term() {
    let c = Cluster::start("lock-slow-disk", 3);
    let leader = c.leader().await;
    let cl = c.client();
    cl.create("/f", false, b"").await.unwrap();
    c.caught_up().await;
    let (_, term, _) = term_of(&c, leader).await;

    c.set_fsync_delay(leader, SLOW).await;
    let start = Instant::now();
    for i in 0..4 {
        cl.write("/f", format!("w{i}").as_bytes(), None, None)
            .await
            .unwrap();
    }
    let took = start.elapsed();
    c.set_fsync_delay(leader, Duration::ZERO).await;
    eprintln!("4 writes with {SLOW:?} fsyncs on the leader took {took:?}");

    for id in c.procs.keys() {
        let (state, t, l) = term_of(&c, *id).await;
        assert_eq!(
            (t, l),
            (term, leader),
            "replica {id} ({state}) after the slow fsyncs: term {t}, leader {l}; before: term {term}, leader {leader}"
        );
    }
    assert_eq!(cl.read("/f").await.unwrap().0, b"w3");
    // Each write waited for one slow fsync at least (the leader's own).
    assert!(took >= SLOW * 4, "the fsyncs were not slow: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_disk_hangs_is_replaced() {
    let c = Cluster::start("lock-hung-disk", 3);
    let old = c.leader().await;
    c.client().create("/f", false, b"").await.unwrap();
    c.caught_up().await;
    let (_, term, _) = term_of(&c, old).await;

    // A write makes the old leader append, and its fsync hangs.
    c.set_fsync_delay(old, HUNG).await;
    let hung_at = Instant::now();
    let stuck = c.client_of(old);
    let stuck_write =
        tokio::spawn(async move { stuck.write("/f", b"at the hung leader", None, None).await });

    // The others elect a leader once the cover has run out, and it serves.
    let within = STALL_COVER + election_bound();
    let new = wait_for("a leader other than the hung one", within, || async {
        for id in c.procs.keys().filter(|id| **id != old) {
            if let Ok(st) = c.client_of(*id).status().await {
                if st.state == "Leader" && st.current_leader == *id && st.term > term {
                    return Some(*id);
                }
            }
        }
        None
    })
    .await;
    let took = hung_at.elapsed();
    eprintln!("leader {old}'s disk hung: replica {new} leads after {took:?}");
    assert!(
        took >= STALL_COVER,
        "replaced before the cover ended: {took:?}"
    );
    // (Asked directly: a write is not retried elsewhere once sent, and one sent to the
    // hung replica would wait there until its deadline.)
    let at_new = c.client_of(new);
    at_new
        .write("/f", b"at the new leader", None, None)
        .await
        .unwrap();
    assert_eq!(at_new.read("/f").await.unwrap().0, b"at the new leader");
    c.set_fsync_delay(old, Duration::ZERO).await;
    stuck_write.abort();
}
