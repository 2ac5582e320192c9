//! Multi-process: kill -9 of the lock-service leader, repeatedly. After each kill a write
//! must succeed again (time measured and printed), sessions must survive, and no
//! acknowledged write may be lost. Ends with a kill -9 of every replica and a restart:
//! everything acknowledged is still there.

mod lock_support;

use std::time::Instant;

use lock_support::*;
use lockservice::client::SessionState;
use lockservice::state::LockMode;

/// Sessions holding a lock through every failover (RELIABILITY R9(b)).
const HOLDERS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_then_write_succeeds_and_sessions_survive() {
    let mut c = Cluster::start("lock-failover", 3);
    let leader = c.leader().await;
    let cl = c.client();
    cl.create("/f", false, b"0").await.unwrap();
    let s = cl.open_session("holder").await.unwrap();
    let seq = s.try_acquire("/f", LockMode::Exclusive).await.unwrap();
    // R9(b): many sessions holding locks across every failover.
    cl.create("/many", true, b"").await.unwrap();
    let mut holders = Vec::new();
    for i in 0..HOLDERS {
        let path = format!("/many/{i}");
        cl.create(&path, false, b"").await.unwrap();
        let h = cl.open_session(&format!("h{i}")).await.unwrap();
        let q = h.try_acquire(&path, LockMode::Exclusive).await.unwrap();
        holders.push((h, q));
    }

    let mut acked = 0u64;
    let mut times = Vec::new();
    let mut leader = leader;
    for trial in 0..5 {
        c.kill(leader);
        let t0 = Instant::now();
        let value = format!("{}", trial + 1);
        wait_for(
            "a write after the leader's kill",
            election_bound() * 2,
            || async {
                cl.write("/f", value.as_bytes(), None, Some(&seq))
                    .await
                    .ok()
            },
        )
        .await;
        times.push(t0.elapsed());
        acked = trial + 1;
        // The holder's session survived (its holding, hence its sequencer, is current).
        cl.check_sequencer(&seq).await.unwrap();
        c.start_replica(leader);
        c.caught_up().await;
        leader = c.leader().await;
    }
    // No session was lost: every holder's lease is valid and its holding current.
    for (h, q) in &holders {
        assert_ne!(h.state(), SessionState::Expired, "session {} lost", h.id());
        cl.check_sequencer(q).await.unwrap();
    }
    let live = cl.sessions().await.unwrap().len();
    assert_eq!(live, HOLDERS + 1);
    let mut sorted = times.clone();
    sorted.sort();
    eprintln!(
        "leader kill -9 -> next successful write: p50 {:?} max {:?} (all {times:?})",
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    );
    for t in &times {
        assert!(*t < election_bound() * 2, "failover took {t:?}");
    }
    let (content, _) = cl.read("/f").await.unwrap();
    assert_eq!(content, acked.to_string().as_bytes());

    // kill -9 of every replica, then restart: nothing acknowledged is lost.
    drop(s);
    drop(holders);
    let ids: Vec<u64> = c.procs.keys().copied().collect();
    for id in &ids {
        c.kill(*id);
    }
    for id in &ids {
        c.start_replica(*id);
    }
    c.leader().await;
    let (content, meta) = wait_for("a read after restart", election_bound(), || async {
        cl.read("/f").await.ok()
    })
    .await;
    assert_eq!(content, acked.to_string().as_bytes());
    assert_eq!(meta.lock_generation, seq.generation);
    assert_eq!(meta.content_generation, 1 + acked);
}
