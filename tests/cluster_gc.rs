//! Garbage collection through real processes: 3 lock replicas, 2 tablet servers with small
//! memtables, one master. With garbage collection off, writes cause flushes and merging
//! compactions, a major compaction leaves every older SSTable obsolete, the tablet is split
//! (the children share the parent's files), more writes stay unflushed, and the server
//! holding the children is killed with SIGKILL, so its log must be replayed by the other.
//! Then a master with a short GC interval replaces the first one: the dead server's log
//! directory goes, the SSTables on disk become exactly those the live manifests name, the
//! bytes on disk go down, every written cell reads back, and after a full restart of every
//! process both split children open and serve every cell again.
//!
//! Every wait is on a condition with a deadline derived from the lease.

#[path = "cluster_support/mod.rs"]
mod cluster_support;

use std::collections::BTreeSet;
use std::path::Path;

use client::{Client, Mutation, ReadFilter, RowMutation};
use cluster_support::*;

const ROWS: u32 = 1500;

fn key(i: u32) -> Vec<u8> {
    format!("row{i:05}").into_bytes()
}

fn value(i: u32, round: u32) -> Vec<u8> {
    format!("v{round}-{i}-{}", "x".repeat(150)).into_bytes()
}

/// A master with the harness's test periods and garbage collection every `interval_ms`
/// (0: off), candidates kept 1 s; returns it and its address.
fn gc_master(dir: &Path, root: &Path, lock: &str, name: &str, interval_ms: &str) -> (Proc, String) {
    let addr = free_addr().to_string();
    let root = root.display().to_string();
    let args = [
        "master",
        "--listen",
        &addr,
        "--data",
        &root,
        "--lock",
        lock,
        "--tick-ms",
        "100",
        "--scan-ms",
        "500",
        "--gc-interval-ms",
        interval_ms,
        "--gc-min-age-ms",
        "1000",
    ];
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    (spawn(dir, &format!("{name}.log"), &args), addr)
}

async fn write_round(c: &Client, rows: std::ops::Range<u32>, round: u32) {
    let all: Vec<u32> = rows.collect();
    for chunk in all.chunks(100) {
        let batch: Vec<RowMutation> = chunk
            .iter()
            .map(|&i| {
                RowMutation::new(
                    key(i),
                    vec![Mutation::set(
                        "cf",
                        b"q",
                        round as i64 + 1,
                        &value(i, round),
                    )],
                )
            })
            .collect();
        let acked = c.mutate_rows("t", batch).await.unwrap();
        assert!(acked.iter().all(Result::is_ok), "{acked:?}");
    }
}

/// The newest round written for row `i`.
fn newest(i: u32) -> u32 {
    if i < ROWS / 2 {
        3
    } else {
        2
    }
}

/// Rows whose newest value is wrong or missing (`None` if a read failed).
async fn wrong_rows(c: &Client) -> Option<Vec<u32>> {
    let mut bad = Vec::new();
    for i in 0..ROWS {
        let row = c
            .read_row("t", &key(i), &ReadFilter::default())
            .await
            .ok()?;
        let ok = row.is_some_and(|r| {
            r.cells
                .first()
                .is_some_and(|x| x.value == value(i, newest(i)))
        });
        if !ok {
            bad.push(i);
        }
    }
    Some(bad)
}

/// Bytes of every file under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => bytes_under(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Every SSTable on disk, and those the newest manifests of the tablets in METADATA (and
/// METADATA's own) name.
async fn ssts(c: &Client, root: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let fs = sstable::RealFs::shared();
    let disk = master::gc::list_disk(&*fs, root).unwrap();
    let on_disk = disk
        .tablet_dirs
        .values()
        .flat_map(|d| d.ssts.clone())
        .collect();
    let mut dirs = vec!["tables/0/0".to_string()];
    for t in c.list_tablets(Some("t")).await.unwrap() {
        dirs.push(format!("tables/{}/{}", t.table_id, t.tablet_id));
    }
    let mut named = BTreeSet::new();
    for d in dirs {
        if let Some(m) = tablet::manifest::read_newest(&*fs, &root.join(d)).unwrap() {
            named.extend(m.all_ssts().map(|s| s.path.clone()));
        }
    }
    (on_disk, named)
}

#[test]
fn cluster_gc_deletes_obsolete_files_and_everything_still_reads_and_reopens() {
    let lock = Cluster::start("cluster-gc", 3);
    let dir = lock.dir.0.clone();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let root = root.canonicalize().unwrap();
    let lock_addrs = lock.addr_list().join(",");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(lock.leader());
    let ts_flags = ["--memtable-bytes", "32768"];
    let (mut tsa, _) = tablet_server(&dir, &root, &lock_addrs, "tsa", &ts_flags);
    let (mut tsb, _) = tablet_server(&dir, &root, &lock_addrs, "tsb", &ts_flags);
    let (mut m1, m1_addr) = gc_master(&dir, &root, &lock_addrs, "m1", "0");
    rt.block_on(wait_for("master with 2 servers", start_bound(), || async {
        status_of(&m1_addr)
            .await
            .filter(|s| s.servers.len() == 2 && s.unassigned == 0)
    }));
    let c = test_client(&lock, None);
    let family = family("maxversions=1");
    rt.block_on(c.create_table("t", vec![family], vec![]))
        .unwrap();

    // Three rounds over every row (flushes and merging compactions), a major compaction,
    // a split, and a fourth round on half the rows that stays (partly) unflushed.
    for round in 0..3 {
        rt.block_on(write_round(&c, 0..ROWS, round));
    }
    rt.block_on(c.compact_table("t", true)).unwrap();
    rt.block_on(c.split_tablet("t", &key(ROWS / 2))).unwrap();
    let children = rt.block_on(c.list_tablets(Some("t"))).unwrap();
    assert_eq!(children.len(), 2, "{children:?}");
    assert_eq!(
        children[0].server_id, children[1].server_id,
        "children load where the parent was"
    );
    rt.block_on(write_round(&c, 0..ROWS / 2, 3));
    assert_eq!(rt.block_on(wrong_rows(&c)), Some(vec![]));

    // kill -9 the children's server: its log must be replayed by the other.
    let victim = children[0].server_id.clone();
    let (killed, survivor) = if victim.starts_with("tsa-") {
        (&mut tsa, "tsb-")
    } else {
        (&mut tsb, "tsa-")
    };
    let _ = killed.0.kill();
    let _ = killed.0.wait();
    let dead_log = root.join("logs").join(&victim);
    assert!(dead_log.is_dir());
    rt.block_on(wait_for(
        "the children served by the survivor",
        start_bound(),
        || async {
            let ts = c.list_tablets(Some("t")).await.ok()?;
            (ts.len() == 2 && ts.iter().all(|t| t.server_id.starts_with(survivor))).then_some(())
        },
    ));
    assert_eq!(rt.block_on(wrong_rows(&c)), Some(vec![]));
    let before = bytes_under(&root.join("tables")) + bytes_under(&root.join("logs"));
    let (on_disk, named) = rt.block_on(ssts(&c, &root));
    assert!(
        on_disk.len() > named.len(),
        "obsolete SSTables expected: {on_disk:?} {named:?}"
    );

    // A master with GC replaces the first one.
    let _ = m1.0.kill();
    let _ = m1.0.wait();
    let (_m2, m2_addr) = gc_master(&dir, &root, &lock_addrs, "m2", "200");
    rt.block_on(wait_for("the new master active", start_bound(), || async {
        status_of(&m2_addr)
            .await
            .filter(|s| s.unassigned == 0 && s.servers.len() == 1)
    }));
    rt.block_on(wait_for(
        "the dead server's log deleted",
        start_bound(),
        || async { (!dead_log.exists()).then_some(()) },
    ));
    rt.block_on(wait_for(
        "only named SSTables left",
        start_bound(),
        || async {
            let (on_disk, named) = ssts(&c, &root).await;
            (on_disk == named).then_some(())
        },
    ));
    let after = bytes_under(&root.join("tables")) + bytes_under(&root.join("logs"));
    println!("disk use before GC {before} B, after {after} B");
    assert!(after < before, "disk use {before} -> {after}");
    assert_eq!(rt.block_on(wrong_rows(&c)), Some(vec![]));

    // Full restart: every process, then both children open and serve every cell.
    drop(_m2);
    let _ = tsa.0.kill();
    let _ = tsb.0.kill();
    let _ = tsa.0.wait();
    let _ = tsb.0.wait();
    let (_tsc, _) = tablet_server(&dir, &root, &lock_addrs, "tsc", &ts_flags);
    let (_m3, m3_addr) = gc_master(&dir, &root, &lock_addrs, "m3", "200");
    rt.block_on(wait_for(
        "everything served after the restart",
        start_bound() * 2,
        || async {
            let s = status_of(&m3_addr).await?;
            let ts = c.list_tablets(Some("t")).await.ok()?;
            (s.unassigned == 0
                && ts.len() == 2
                && ts.iter().all(|t| t.server_id.starts_with("tsc-")))
            .then_some(())
        },
    ));
    rt.block_on(wait_for(
        "every cell after the restart",
        start_bound(),
        || async { wrong_rows(&c).await.filter(|b| b.is_empty()) },
    ));
}
