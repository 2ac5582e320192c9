//! T4 with a pause (RELIABILITY.md): SIGSTOP the active master for 3x the lease. The
//! standby takes the master lock with a newer generation; when the old master wakes up it
//! finds its session gone and exits without issuing a command. Pass: the old master
//! exits, no tablet is loaded on two servers, every tablet is served, the ownership logs
//! show no overlap, and writes work throughout.

#[path = "cluster_support/mod.rs"]
mod cluster_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use client::{Client, ClientConfig, ColumnFamily, Mutation, ReadFilter};
use cluster_support::*;
use tablet::pb::tablet_client::TabletClient;

/// Tablet id -> the servers that say they serve it.
async fn loaded(addrs: &[String]) -> BTreeMap<u64, BTreeSet<String>> {
    let mut out: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for a in addrs {
        let Ok(mut c) = TabletClient::connect(format!("http://{a}")).await else {
            continue;
        };
        let Ok(r) = c.list_tablets(tablet::pb::ListTabletsRequest {}).await else {
            continue;
        };
        let r = r.into_inner();
        for t in r.tablets {
            out.entry(t.tablet.unwrap().tablet_id)
                .or_default()
                .insert(r.server_id.clone());
        }
    }
    out
}

#[test]
fn cluster_master_pause_standby_takes_over_and_old_master_exits() {
    let lock = Cluster::start("cluster-master-pause", 3);
    let dir = lock.dir.0.clone();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let lock_addrs = lock.addr_list().join(",");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(lock.leader());

    let servers: Vec<(Proc, String)> = ["tsa", "tsb"]
        .iter()
        .map(|n| tablet_server(&dir, &root, &lock_addrs, n, &[]))
        .collect();
    let server_addrs: Vec<String> = servers.iter().map(|(_, a)| a.clone()).collect();
    let (m1, m1_addr) = master(&dir, &root, &lock_addrs, "master1");
    let st1 = rt.block_on(wait_for("master1 active", start_bound(), || async {
        status_of(&m1_addr).await.filter(|s| s.servers.len() == 2)
    }));
    let (_m2, m2_addr) = master(&dir, &root, &lock_addrs, "master2");

    let mut cfg = ClientConfig::new(lock.addr_list());
    cfg.operation_timeout = start_bound();
    cfg.attempt_timeout = LEASE;
    let c = Client::new(cfg).unwrap();
    let cf = ColumnFamily {
        name: "cf".into(),
        gc_policy: "maxversions=1".into(),
        locality_group: String::new(),
    };
    rt.block_on(c.create_table("t", vec![cf], vec![b"h".to_vec(), b"q".to_vec()]))
        .unwrap();
    let write = |i: u32| {
        let row = format!("{}row", (b'a' + (i % 26) as u8) as char);
        let v = format!("v{i}");
        rt.block_on(c.mutate_row(
            "t",
            row.as_bytes(),
            vec![Mutation::set("cf", b"q", 0, v.as_bytes())],
        ))
        .unwrap();
        (row, v)
    };
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..26 {
        let (r, v) = write(i);
        acked.insert(r, v);
    }

    // Pause the active master past its lease; the standby takes over.
    let mut m1 = m1;
    signal(&m1.0, "STOP").unwrap();
    let paused = Instant::now();
    let st2 = rt.block_on(wait_for("master2 active", start_bound(), || async {
        status_of(&m2_addr)
            .await
            .filter(|s| s.lock_generation > st1.lock_generation)
    }));
    eprintln!("standby active {:?} after the pause", paused.elapsed());
    // Writes keep working while the old master sleeps (the master is off the data path).
    for i in 26..52 {
        let (r, v) = write(i);
        acked.insert(r, v);
    }
    while paused.elapsed() < LEASE * 3 {
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&m1.0, "CONT").unwrap();

    // The old master exits on its own, having lost its session.
    let deadline = Instant::now() + LEASE * 4;
    let exited = loop {
        if let Some(st) = m1.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the old master did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("old master exited with {exited}");

    // Every tablet served by exactly one server; the new master sees none unassigned.
    let st = rt.block_on(wait_for("nothing unassigned", start_bound(), || async {
        status_of(&m2_addr).await.filter(|s| s.unassigned == 0)
    }));
    assert_eq!(st.lock_generation, st2.lock_generation);
    let by_tablet = rt.block_on(loaded(&server_addrs));
    assert!(by_tablet.len() >= 4, "METADATA + 3 tablets: {by_tablet:?}");
    for (t, s) in &by_tablet {
        assert_eq!(s.len(), 1, "tablet {t} loaded on {s:?}");
    }
    for (r, v) in &acked {
        let got = rt
            .block_on(c.read_row("t", r.as_bytes(), &ReadFilter::latest()))
            .unwrap()
            .map(|row| row.cells[0].value.clone());
        assert_eq!(got.as_deref(), Some(v.as_bytes()), "row {r}");
    }
    let bad = overlaps(&ownership_intervals(&root), &BTreeMap::new());
    assert!(bad.is_empty(), "overlapping ownership: {bad:#?}");
    drop(servers);
}
