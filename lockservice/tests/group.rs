//! A 3-replica group in one process on loopback (real files, real sockets, real fsync):
//! election, replication, sessions, locks, failover and restart from disk.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lockservice::client::{Client, ClientConfig, SessionState};
use lockservice::clock::MonotonicClock;
use lockservice::lease::LeaseConfig;
use lockservice::raft::{Compaction, RaftTiming};
use lockservice::server::{Replica, ReplicaConfig};
use lockservice::state::LockMode;
use lockservice::Error;
use sstable::RealFs;

const LEASE: Duration = Duration::from_millis(1500);
const LOCK_DELAY: Duration = Duration::from_millis(500);

fn timing() -> RaftTiming {
    RaftTiming {
        heartbeat: Duration::from_millis(50),
        election_base: Duration::from_millis(300),
        election_width: Duration::from_millis(150),
    }
}

/// Longest an election may take with these timings, with slack for a loaded machine.
fn election_bound() -> Duration {
    let t = timing();
    (t.election_base + t.election_width * 4) * 6
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

struct Group {
    compaction: Compaction,
    dir: tempfile::TempDir,
    addrs: BTreeMap<u64, SocketAddr>,
    replicas: BTreeMap<u64, Replica>,
}

impl Group {
    async fn start() -> Group {
        Group::start_with(Compaction::default()).await
    }

    async fn start_with(compaction: Compaction) -> Group {
        let dir = tempfile::tempdir().unwrap();
        let addrs: BTreeMap<u64, SocketAddr> = (1..=3).map(|i| (i, free_addr())).collect();
        let mut g = Group {
            compaction,
            dir,
            addrs,
            replicas: BTreeMap::new(),
        };
        for id in 1..=3 {
            g.start_replica(id).await;
        }
        g
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("r{id}"))
    }

    async fn start_replica(&mut self, id: u64) {
        let cfg = ReplicaConfig {
            id,
            listen: self.addrs[&id],
            peers: self
                .addrs
                .iter()
                .map(|(i, a)| (*i, a.to_string()))
                .collect(),
            data_dir: self.data_dir(id),
            bootstrap: true,
            lease: LeaseConfig {
                lease: LEASE,
                lock_delay: LOCK_DELAY,
            },
            timing: timing(),
            compaction: self.compaction,
        };
        let r = Replica::start(cfg, RealFs::shared(), Arc::new(MonotonicClock))
            .await
            .unwrap();
        self.replicas.insert(id, r);
    }

    fn client(&self) -> Client {
        let addrs = self.addrs.values().map(|a| a.to_string()).collect();
        Client::new(ClientConfig::new(addrs)).unwrap()
    }

    async fn leader(&self) -> u64 {
        wait_for("a leader", election_bound(), || async {
            for (id, r) in &self.replicas {
                let m = r.raft().metrics().borrow().clone();
                if m.current_leader == Some(*id) && m.state.is_leader() {
                    return Some(*id);
                }
            }
            None
        })
        .await
    }

    async fn stop(&mut self, id: u64) {
        self.replicas.remove(&id).unwrap().shutdown().await;
    }
}

async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_locks_and_sequencers_through_a_replicated_group() {
    let g = Group::start().await;
    g.leader().await;
    let c = g.client();
    c.create("/quarry", true, b"").await.unwrap();
    c.create("/quarry/config", false, b"v1").await.unwrap();
    let m = c
        .write("/quarry/config", b"v2", Some(1), None)
        .await
        .unwrap();
    assert_eq!(m.content_generation, 2);
    assert!(matches!(
        c.write("/quarry/config", b"v3", Some(1), None).await,
        Err(Error::FailedPrecondition(_))
    ));
    assert_eq!(c.read("/quarry/config").await.unwrap().0, b"v2");

    let a = c.open_session("a").await.unwrap();
    let b = c.open_session("b").await.unwrap();
    let seq = a
        .try_acquire("/quarry/config", LockMode::Exclusive)
        .await
        .unwrap();
    assert!(matches!(
        b.try_acquire("/quarry/config", LockMode::Exclusive).await,
        Err(Error::LockBusy(_))
    ));
    a.check_sequencer(&seq).await.unwrap();
    assert_eq!(a.sequencer("/quarry/config").await.unwrap(), seq);

    // A blocking acquire gets the lock as soon as it is released.
    let waiter = tokio::spawn(async move {
        let s = b
            .acquire(
                "/quarry/config",
                LockMode::Exclusive,
                Duration::from_secs(10),
            )
            .await;
        (b, s)
    });
    // Whether the waiter is already blocked or not, it must get the lock once released.
    a.release("/quarry/config").await.unwrap();
    let (b, sb) = waiter.await.unwrap();
    let sb = sb.unwrap();
    assert!(sb.generation > seq.generation);
    assert!(matches!(
        c.check_sequencer(&seq).await,
        Err(Error::StaleSequencer(_))
    ));

    // Ephemeral nodes go with their session.
    a.create_ephemeral("/quarry/a", false, b"me").await.unwrap();
    assert!(a.is_lease_valid());
    assert_eq!(a.state(), SessionState::Safe);
    a.close().await.unwrap();
    assert!(matches!(c.stat("/quarry/a").await, Err(Error::NotFound(_))));
    let names: Vec<_> = c
        .list("/quarry")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.path)
        .collect();
    assert_eq!(names, vec!["/quarry/config"]);
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_outlives_many_leases_while_kept_alive_and_expires_when_not() {
    let g = Group::start().await;
    g.leader().await;
    let c = g.client();
    c.create("/l", false, b"").await.unwrap();
    let a = c.open_session("a").await.unwrap();
    let seq = a.try_acquire("/l", LockMode::Exclusive).await.unwrap();
    // Three leases pass: KeepAlives keep it.
    let until = tokio::time::Instant::now() + LEASE * 3;
    while tokio::time::Instant::now() < until {
        assert!(a.is_lease_valid(), "lease lapsed while kept alive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.check_sequencer(&seq).await.unwrap();
    // Stop the KeepAlives (drop without close): the service expires it after its lease.
    let id = a.id();
    drop(a);
    let b = c.open_session("b").await.unwrap();
    let got = wait_for("the lock after expiry", LEASE * 4 + LOCK_DELAY, || async {
        b.try_acquire("/l", LockMode::Exclusive).await.ok()
    })
    .await;
    assert!(got.generation > seq.generation);
    assert!(matches!(
        c.check_sequencer(&seq).await,
        Err(Error::StaleSequencer(_))
    ));
    assert!(c.sessions().await.unwrap().iter().all(|s| s.session != id));
}

/// Checks every 50 ms for `d` that every session's lease is valid.
async fn stay_valid(sessions: &[lockservice::client::Session], d: Duration) {
    let until = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < until {
        for s in sessions {
            assert!(
                s.is_lease_valid(),
                "session {} lapsed while kept alive",
                s.id()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Chubby's one KeepAlive per client: many sessions of one client are kept alive by one
/// request per interval, not one per session (the per-session threads this replaced sent
/// `SESSIONS` times as many).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_client_keeps_all_its_sessions_alive_with_one_keepalive_per_interval() {
    const SESSIONS: usize = 20;
    let g = Group::start().await;
    let leader = g.leader().await;
    let c = g.client();
    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        sessions.push(c.open_session(&format!("s{i}")).await.unwrap());
    }
    let before = g.replicas[&leader].keepalive_requests();
    stay_valid(&sessions, LEASE * 2).await;
    let sent = g.replicas[&leader].keepalive_requests() - before;
    // Two leases are 6 intervals: about 6 requests (a few more after failed attempts);
    // a KeepAlive per session would be SESSIONS times that.
    assert!(sent >= 2, "only {sent} KeepAlives in two leases");
    assert!(
        sent < 2 * SESSIONS as u64,
        "{sent} KeepAlives for {SESSIONS} sessions of one client in two leases"
    );
    let live = c.sessions().await.unwrap().len();
    assert_eq!(live, SESSIONS);
    // A closed session leaves the requests; the others stay alive.
    let last = sessions.pop().unwrap();
    last.close().await.unwrap();
    stay_valid(&sessions, LEASE).await;
    assert_eq!(c.sessions().await.unwrap().len(), SESSIONS - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_failover_keeps_sessions_and_state_and_restart_reads_it_from_disk() {
    let mut g = Group::start().await;
    let first = g.leader().await;
    let c = g.client();
    c.create("/f", false, b"before").await.unwrap();
    let s = c.open_session("holder").await.unwrap();
    let seq = s.try_acquire("/f", LockMode::Exclusive).await.unwrap();

    g.stop(first).await;
    let started = std::time::Instant::now();
    let second = g.leader().await;
    assert_ne!(first, second);
    wait_for("a write after failover", election_bound(), || async {
        c.write("/f", b"after", None, Some(&seq)).await.ok()
    })
    .await;
    eprintln!("failover: next write after {:?}", started.elapsed());
    // The session survived the failover and its sequencer is still current.
    c.check_sequencer(&seq).await.unwrap();
    assert!(c
        .sessions()
        .await
        .unwrap()
        .iter()
        .any(|x| x.session == s.id()));

    // Restart every replica: everything comes back from disk.
    drop(s);
    for id in [1, 2, 3] {
        if g.replicas.contains_key(&id) {
            g.stop(id).await;
        }
    }
    for id in [1, 2, 3] {
        g.start_replica(id).await;
    }
    g.leader().await;
    let (content, meta) = wait_for("a read after restart", election_bound(), || async {
        c.read("/f").await.ok()
    })
    .await;
    assert_eq!(content, b"after");
    assert_eq!(meta.lock_generation, seq.generation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_cut_off_from_the_service_goes_through_jeopardy_to_expired() {
    let mut g = Group::start().await;
    g.leader().await;
    let c = g.client();
    let s = c.open_session("lonely").await.unwrap();
    let mut states = s.state_changes();
    let lost = s.lost();
    let deadline_before = s.lease_deadline();
    for id in [1, 2, 3] {
        g.stop(id).await;
    }
    let stopped = std::time::Instant::now();
    // The local lease never outlasts what the service granted: it lapses within one lease.
    tokio::time::timeout(
        LEASE * 2,
        states.wait_for(|st| *st == SessionState::Jeopardy),
    )
    .await
    .expect("no jeopardy")
    .unwrap();
    assert!(!s.is_lease_valid());
    assert!(std::time::Instant::now() >= s.lease_deadline());
    assert!(s.lease_deadline() >= deadline_before);
    // Grace (one lease by default) without an answer: the session is lost.
    tokio::time::timeout(LEASE * 3, lost)
        .await
        .expect("lost() never resolved");
    assert_eq!(s.state(), SessionState::Expired);
    assert!(stopped.elapsed() >= LEASE / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_bound_the_log_and_bring_a_lagging_replica_up_to_date() {
    let mut g = Group::start_with(Compaction {
        snapshot_every: 40,
        logs_to_keep: 5,
    })
    .await;
    let leader = g.leader().await;
    let lagging = (1..=3).find(|i| *i != leader).unwrap();
    g.stop(lagging).await;
    let c = g.client();
    c.create("/d", true, b"").await.unwrap();
    for i in 0..150u32 {
        c.create(&format!("/d/{i}"), false, &i.to_le_bytes())
            .await
            .unwrap();
    }
    // The survivors snapshotted and purged: their logs hold far fewer than 150 entries.
    for r in g.replicas.values() {
        let m = wait_for("a purge", election_bound(), || async {
            let m = r.raft().metrics().borrow().clone();
            m.purged.is_some().then_some(m)
        })
        .await;
        assert!(m.snapshot.is_some());
    }
    // The lagging replica comes back and can only catch up by installing a snapshot.
    g.start_replica(lagging).await;
    let target = g.replicas[&leader].raft().metrics().borrow().last_log_index;
    let r = &g.replicas[&lagging];
    wait_for(
        "the lagging replica to catch up",
        election_bound() * 4,
        || async {
            let m = r.raft().metrics().borrow().clone();
            (m.last_applied.map(|l| l.index) >= target).then_some(())
        },
    )
    .await;
    assert!(
        r.raft().metrics().borrow().snapshot.is_some(),
        "caught up without a snapshot"
    );
    // Make it the only way to read: stop the others, restart them, read everything back.
    for id in [1, 2, 3] {
        g.stop(id).await;
    }
    for id in [1, 2, 3] {
        g.start_replica(id).await;
    }
    g.leader().await;
    let names = wait_for("a listing after restart", election_bound(), || async {
        c.list("/d").await.ok()
    })
    .await;
    assert_eq!(names.len(), 150);
    assert_eq!(c.read("/d/149").await.unwrap().0, 149u32.to_le_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_proposals_share_log_entries_and_each_gets_its_own_result() {
    // 64 concurrent commands: 32 creates, then for each file two sessions race for its
    // lock. Every command must get the answer its own command earned (one winner per
    // file, the loser LockBusy), while the leader's log grows by fewer entries than
    // commands (the proposer packed the ones that queued behind proposals in flight).
    let g = Group::start().await;
    let leader = g.leader().await;
    let c = g.client();
    c.create("/p", true, b"").await.unwrap();
    let last = |g: &Group| {
        g.replicas[&leader]
            .raft()
            .metrics()
            .borrow()
            .last_log_index
            .unwrap_or(0)
    };
    let before = last(&g);
    let creates: Vec<_> = (0..32)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.create(&format!("/p/{i}"), false, b"x").await })
        })
        .collect();
    for t in creates {
        assert_eq!(t.await.unwrap().unwrap().content_generation, 1);
    }
    let a = Arc::new(c.open_session("a").await.unwrap());
    let b = Arc::new(c.open_session("b").await.unwrap());
    let mut races = Vec::new();
    for i in 0..32 {
        for s in [a.clone(), b.clone()] {
            races.push(tokio::spawn(async move {
                (
                    i,
                    s.try_acquire(&format!("/p/{i}"), LockMode::Exclusive).await,
                )
            }));
        }
    }
    let mut winners = BTreeMap::new();
    for t in races {
        let (i, r) = t.await.unwrap();
        match r {
            Ok(seq) => {
                assert_eq!(seq.path, format!("/p/{i}"));
                assert!(winners.insert(i, seq).is_none(), "two holders of /p/{i}");
            }
            Err(Error::LockBusy(_)) => {}
            Err(e) => panic!("acquire /p/{i}: {e}"),
        }
    }
    assert_eq!(winners.len(), 32, "a file's lock went to nobody");
    for seq in winners.values() {
        c.check_sequencer(seq).await.unwrap();
    }
    let entries = last(&g) - before;
    let commands = 32 + 2 + 64;
    assert!(
        entries < commands,
        "{commands} commands took {entries} entries: nothing was batched"
    );
}
