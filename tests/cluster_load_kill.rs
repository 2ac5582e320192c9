//! T1 (RELIABILITY.md): kill -9 a tablet server under load. 3 lock replicas, a master and
//! 3 tablet servers as real processes; a table of 30 tablets (29 split keys); 10
//! concurrent clients (each its own `client::Client`) write unique cells to rows across
//! every tablet and record each write as acknowledged, failed or attempted. One tablet
//! server (not METADATA's) is killed with SIGKILL mid-load.
//!
//! Pass: every acknowledged write reads back afterwards (0 lost), a full scan shows no
//! cell that was never written, no row twice, and each of the dead server's tablets is
//! reported by a surviving server (`ListTablets` polled on the servers themselves) within
//! lease + lock-delay + replay + 2 s of the kill. Per-tablet figures are printed (run with
//! `--nocapture`).

#[path = "cluster_support/mod.rs"]
mod cluster_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{Client, ClientConfig, Mutation, ReadFilter, RowRange};
use cluster_support::*;

/// How long replaying the dead server's commit log may take on a loaded machine.
const REPLAY: Duration = Duration::from_secs(1);
const CLIENTS: u64 = 10;
const ROWS: u64 = 3000;
const TABLE: &str = "load";

fn reassign_bound() -> Duration {
    LEASE + LOCK_DELAY + REPLAY + Duration::from_secs(2)
}

fn row(i: u64) -> String {
    format!("r{i:05}")
}

/// What one client did: cell (row, qualifier) -> (value, acknowledged).
type Log = BTreeMap<(String, String), (String, bool)>;

/// Writes unique cells until `stop`; counts acknowledgements in `acked`.
async fn writer(lock: Vec<String>, k: u64, stop: Arc<AtomicBool>, acked: Arc<AtomicU64>) -> Log {
    let mut cfg = ClientConfig::new(lock);
    cfg.operation_timeout = reassign_bound() * 2;
    cfg.attempt_timeout = LEASE;
    let c = Client::new(cfg).unwrap();
    let mut log = Log::new();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        // Spread over every tablet: a stride coprime to ROWS, offset per client.
        let r = row((n * 37 + k * 301) % ROWS);
        let q = format!("c{k}n{n}");
        let v = format!("v{k}-{n}");
        // An explicit timestamp makes the write idempotent, so the client retries it.
        let m = vec![Mutation::set("cf", q.as_bytes(), 1, v.as_bytes())];
        let ok = c.mutate_row(TABLE, r.as_bytes(), m).await.is_ok();
        if ok {
            acked.fetch_add(1, Ordering::SeqCst);
        }
        log.insert((r, q), (v, ok));
        n += 1;
    }
    log
}

#[test]
fn cluster_load_kill_tablet_server_loses_no_acknowledged_write() {
    let (lock, root, lock_addrs, rt) = lock_and_root("cluster-load-kill");
    let dir = lock.dir.0.clone();

    let mut servers: BTreeMap<String, (Proc, String)> = BTreeMap::new();
    for name in ["tsa", "tsb", "tsc"] {
        servers.insert(
            name.to_string(),
            tablet_server(&dir, &root, &lock_addrs, name, &[]),
        );
    }
    let (_m, m_addr) = master(&dir, &root, &lock_addrs, "master");
    rt.block_on(wait_for("master with 3 servers", start_bound(), || async {
        status_of(&m_addr)
            .await
            .filter(|s| s.servers.len() == 3 && s.unassigned == 0)
    }));
    let c = test_client(&lock, None);
    let cf = family("maxversions=1");
    let keys: Vec<Vec<u8>> = (1..30).map(|i| row(i * ROWS / 30).into_bytes()).collect();
    let created = rt.block_on(c.create_table(TABLE, vec![cf], keys)).unwrap();
    assert_eq!(created.tablets.len(), 30);
    rt.block_on(wait_for("all 30 tablets served", start_bound(), || async {
        let ts = c.list_tablets(Some(TABLE)).await.ok()?;
        (ts.len() == 30 && ts.iter().all(|t| !t.server_id.is_empty())).then_some(())
    }));

    // Load from 10 clients.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..CLIENTS)
        .map(|k| {
            rt.spawn(writer(
                lock.addr_list(),
                k,
                Arc::clone(&stop),
                Arc::clone(&acked),
            ))
        })
        .collect();
    rt.block_on(wait_for(
        "1000 acknowledged writes",
        start_bound(),
        || async { (acked.load(Ordering::SeqCst) >= 1000).then_some(()) },
    ));

    // kill -9 a server that does not serve METADATA, in the middle of the load.
    let all = rt.block_on(c.list_tablets(None)).unwrap();
    let meta_server = &all.iter().find(|t| t.tablet_id == 0).unwrap().server_id;
    let name_of = |id: &str| id.split('-').next().unwrap().to_string();
    let victim_name = servers
        .keys()
        .find(|n| name_of(meta_server) != **n)
        .unwrap()
        .clone();
    let victims: BTreeSet<u64> = all
        .iter()
        .filter(|t| name_of(&t.server_id) == victim_name)
        .map(|t| t.tablet_id)
        .collect();
    assert!(!victims.is_empty(), "the victim serves tablets: {all:?}");
    let (mut victim, _) = servers.remove(&victim_name).unwrap();
    let acked_before = acked.load(Ordering::SeqCst);
    let killed = Instant::now();
    victim.0.kill().unwrap();
    let _ = victim.0.wait();

    // Each of its tablets: the first moment a surviving server reports serving it.
    let survivors: Vec<String> = servers.values().map(|(_, a)| a.clone()).collect();
    let served = std::sync::Mutex::new(BTreeMap::<u64, Duration>::new());
    rt.block_on(wait_for(
        "every tablet of the dead server served again",
        reassign_bound() * 3,
        || async {
            for a in &survivors {
                let reported = served_by(a).await.map(|r| r.tablets).unwrap_or_default();
                let at = killed.elapsed();
                let mut s = served.lock().unwrap();
                for t in reported {
                    let id = t.tablet.map(|d| d.tablet_id).unwrap_or(0);
                    if victims.contains(&id) {
                        s.entry(id).or_insert(at);
                    }
                }
            }
            (served.lock().unwrap().len() == victims.len()).then_some(())
        },
    ));
    let served_after = served.into_inner().unwrap();
    // Keep loading a little after recovery, then stop.
    let acked_at_recovery = acked.load(Ordering::SeqCst);
    rt.block_on(wait_for("writes after recovery", start_bound(), || async {
        (acked.load(Ordering::SeqCst) >= acked_at_recovery + 500).then_some(())
    }));
    stop.store(true, Ordering::SeqCst);
    let mut log = Log::new();
    for w in writers {
        log.extend(rt.block_on(w).unwrap());
    }

    let worst = served_after.values().max().copied().unwrap();
    eprintln!(
        "T1: killed {victim_name} serving {} of 30 tablets after {acked_before} acked writes",
        victims.len()
    );
    for (t, d) in &served_after {
        eprintln!("T1: tablet {t} served again after {d:?}");
    }
    eprintln!(
        "T1: worst {worst:?}, bound {:?}; {} writes, {} acknowledged",
        reassign_bound(),
        log.len(),
        log.values().filter(|(_, ok)| *ok).count()
    );

    // Every acknowledged cell reads back; no cell never written; no row twice.
    let check = Client::new(ClientConfig::new(lock.addr_list())).unwrap();
    let rows = rt
        .block_on(
            check
                .read_rows(TABLE, RowRange::all(), &ReadFilter::default(), 0)
                .collect_rows(),
        )
        .unwrap();
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut keys_seen = BTreeSet::new();
    for r in rows {
        let key = String::from_utf8(r.key.clone()).unwrap();
        assert!(keys_seen.insert(key.clone()), "row {key} scanned twice");
        for cell in r.cells {
            let q = String::from_utf8(cell.qualifier).unwrap();
            let v = String::from_utf8(cell.value).unwrap();
            let prior = seen.insert((key.clone(), q.clone()), v);
            assert!(prior.is_none(), "cell {key}/{q} scanned twice");
        }
    }
    for (cell, v) in &seen {
        match log.get(cell) {
            Some((w, _)) => assert_eq!(w, v, "cell {cell:?} holds a value never written"),
            None => panic!("cell {cell:?} = {v} was never written"),
        }
    }
    let lost: Vec<_> = log
        .iter()
        .filter(|(cell, (v, ok))| *ok && seen.get(*cell) != Some(v))
        .map(|(cell, _)| cell.clone())
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {lost:?}",
        lost.len()
    );
    assert!(
        worst <= reassign_bound(),
        "a tablet took {worst:?} to be served again (bound {:?})",
        reassign_bound()
    );
}
