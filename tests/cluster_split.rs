//! T5 (RELIABILITY.md): a crash at each step of a split and of a move, and a split end to
//! end. Real processes: 3 lock replicas, one master at a time, tablet servers; the process
//! under test is started with `QUARRY_CRASHPOINT=<point>` (`tablet::crashpoint`) and
//! aborts there, in the middle of the protocol, like kill -9.
//!
//! One cluster serves every crash point, in three phases:
//! 1. `unload-after-flush`: the only server is armed; a second one joins, the balancing
//!    master unloads a tablet from the armed server, which aborts (it also served
//!    METADATA, so METADATA is recovered too).
//! 2. The master's move points: the master is restarted armed with balancing on, an empty
//!    server joins, the first move aborts the master; a clean master (no balancing) takes
//!    over and repairs.
//! 3. The split points: a fresh armed server gets a new table's tablet (it is the least
//!    loaded), `SplitTablet` through the master makes it abort; the master detects the
//!    death and repairs (rolls back a half-committed split, reassigns the rest).
//!
//! After each crash: the table's METADATA records tile its row space (sorted, contiguous,
//! first start empty, last end empty, no overlap), each is served by its recorded server
//! at its recorded epoch, and a full scan returns every acknowledged cell exactly once and
//! nothing else. Every earlier table is checked again at the end.
//!
//! `split_end_to_end`: auto split with a small `--split-bytes`; reads and scans across
//! the new boundary; `quarry tablets` lists the children.

#[path = "cluster_support/mod.rs"]
mod cluster_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use client::{Client, ClientConfig, ColumnFamily, Mutation, ReadFilter, RowRange};
use cluster_support::*;
use tablet::crashpoint;
use tablet::pb::tablet_client::TabletClient;

/// The two tests of this file share the machine: run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const ROWS: u64 = 200;

fn row(i: u64) -> String {
    format!("row{i:04}")
}

fn cf() -> Vec<ColumnFamily> {
    vec![ColumnFamily {
        name: "cf".into(),
        gc_policy: "maxversions=1".into(),
        locality_group: String::new(),
    }]
}

/// Time for a dead process to be noticed and its work repaired (lease, lock-delay,
/// detection, replay, reassignment), generously.
fn repair_bound() -> Duration {
    start_bound()
}

/// One cluster whose processes the test kills and restarts.
struct Rig {
    /// Kept for its processes (killed on drop).
    _lock: Cluster,
    dir: PathBuf,
    root: PathBuf,
    lock_addrs: String,
    rt: tokio::runtime::Runtime,
    c: Client,
    /// Live tablet servers by name.
    servers: BTreeMap<String, (Proc, String)>,
    master: Option<(Proc, String)>,
    starts: u32,
    /// Acknowledged cells of every table so far: table -> row -> value.
    acked: BTreeMap<String, BTreeMap<String, String>>,
}

impl Rig {
    fn new(name: &str) -> Rig {
        let (lock, root, lock_addrs, rt) = lock_and_root(name);
        let dir = lock.dir.0.clone();
        let mut cfg = ClientConfig::new(lock.addr_list());
        cfg.operation_timeout = repair_bound();
        cfg.attempt_timeout = LEASE;
        let c = Client::new(cfg).unwrap();
        Rig {
            _lock: lock,
            dir,
            root,
            lock_addrs,
            rt,
            c,
            servers: BTreeMap::new(),
            master: None,
            starts: 0,
            acked: BTreeMap::new(),
        }
    }

    fn env(point: Option<&str>) -> Vec<(&str, &str)> {
        point
            .map(|p| vec![(crashpoint::ENV, p)])
            .unwrap_or_default()
    }

    /// Starts tablet server `name` (armed at `point`).
    fn server(&mut self, name: &str, point: Option<&str>, extra: &[&str]) {
        let s = tablet_server_env(
            &self.dir,
            &self.root,
            &self.lock_addrs,
            name,
            extra,
            &Self::env(point),
        );
        self.servers.insert(name.to_string(), s);
    }

    /// Waits until the active master lists server `name`.
    fn listed(&self, name: &str) {
        let prefix = format!("{name}-");
        self.rt.block_on(wait_for(
            &format!("{name} listed"),
            start_bound(),
            || async {
                let s = self.c.list_servers().await.ok()?;
                s.iter().any(|s| s.id.starts_with(&prefix)).then_some(())
            },
        ));
    }

    /// Starts a master (armed at `point`), balancing when `balance`; kill -9 of the old.
    fn restart_master(&mut self, point: Option<&str>, balance: bool) {
        if let Some((mut m, _)) = self.master.take() {
            let _ = m.0.kill();
            let _ = m.0.wait();
        }
        self.starts += 1;
        let moves = if balance { "1" } else { "0" };
        let extra = ["--balance-ms", "200", "--max-moves", moves];
        let name = format!("master{}", self.starts);
        let m = master_env(
            &self.dir,
            &self.root,
            &self.lock_addrs,
            &name,
            &extra,
            &Self::env(point),
        );
        self.master = Some(m);
    }

    /// Waits for an active master with every tablet assigned; returns its generation.
    fn master_settled(&self) -> u64 {
        let addr = self.master.as_ref().unwrap().1.clone();
        self.rt
            .block_on(wait_for("an active master", repair_bound(), || async {
                status_of(&addr).await.filter(|s| s.unassigned == 0)
            }))
            .lock_generation
    }

    /// Sends METADATA's server a fenced write carrying an old master's sequencer (a
    /// record overlapping `table`'s tablets) and returns the `quarry-error` it answers.
    fn stale_metadata_write(&self, table: &str, old_generation: u64) -> Option<String> {
        self.rt.block_on(async {
            let lock = self.c.lock_service();
            let (root, _) = lock.read(tablet::meta::ROOT_TABLET_PATH).await.unwrap();
            let root = tablet::meta::TabletRecord::from_json(&root).unwrap();
            let table_id = self.c.table_id(table).await.unwrap();
            let bogus = tablet::meta::TabletRecord {
                table: table.into(),
                table_id,
                tablet_id: 999_999,
                start: b"row0050".to_vec(),
                end: b"row0075".to_vec(),
                dir: tablet::meta::TabletRecord::dir_for(table_id, 999_999),
                server_id: root.server_id.clone(),
                server_addr: root.server_addr.clone(),
                epoch: 1,
            };
            let mut c = TabletClient::connect(format!("http://{}", root.server_addr))
                .await
                .unwrap();
            let req = tablet::pb::MutateRowRequest {
                tablet: Some(tablet::pb::TabletRef {
                    table: tablet::meta::METADATA_TABLE.into(),
                    tablet_id: tablet::meta::METADATA_TABLET_ID,
                }),
                row: bogus.key(),
                mutations: client::convert::mutations_to_pb(&[tablet::meta::record_mutation(
                    &bogus,
                )]),
                sequencer: Some(tablet::pb::Sequencer {
                    path: tablet::meta::MASTER_LOCK_PATH.into(),
                    mode: "exclusive".into(),
                    generation: old_generation,
                }),
            };
            let err = c.mutate_row(req).await.err()?;
            err.metadata()
                .get("quarry-error")
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        })
    }

    /// Waits until `p` exits (it aborted at its crash point).
    fn wait_exit(&self, p: &mut Proc, what: &str) {
        self.rt.block_on(wait_for(
            &format!("{what} to abort"),
            repair_bound(),
            || {
                let done = p.0.try_wait().unwrap().is_some();
                async move { done.then_some(()) }
            },
        ));
    }

    /// Creates `table` with `keys` and writes ROWS acknowledged rows.
    fn table_with_rows(&mut self, table: &str, keys: &[&str]) {
        let keys = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        self.rt
            .block_on(self.c.create_table(table, cf(), keys))
            .unwrap();
        let mut acked = BTreeMap::new();
        for i in 0..ROWS {
            let (r, v) = (row(i), format!("{table}-{i}"));
            let m = vec![Mutation::set("cf", b"q", 1, v.as_bytes())];
            self.rt
                .block_on(self.c.mutate_row(table, r.as_bytes(), m))
                .unwrap();
            acked.insert(r, v);
        }
        self.acked.insert(table.to_string(), acked);
    }

    /// What is wrong with `table` now (empty: nothing).
    async fn problems(&self, table: &str) -> Vec<String> {
        let recs = match self.c.table_tablets(table).await {
            Ok(r) => r,
            Err(e) => return vec![format!("METADATA of {table}: {e}")],
        };
        let mut errs = chaos::coverage::violations(&recs);
        let mut reports = BTreeMap::new();
        for r in &recs {
            if !reports.contains_key(&r.server_addr) {
                let rep = served_by(&r.server_addr).await;
                reports.insert(r.server_addr.clone(), rep);
            }
            let serving = reports[&r.server_addr].as_ref().is_some_and(|rep| {
                rep.server_id == r.server_id
                    && rep.tablets.iter().any(|t| {
                        t.epoch == r.epoch && t.tablet.as_ref().unwrap().tablet_id == r.tablet_id
                    })
            });
            if !serving {
                errs.push(format!(
                    "tablet {} not served by {} at epoch {}",
                    r.tablet_id, r.server_id, r.epoch
                ));
            }
        }
        if errs.is_empty() {
            errs.extend(self.scan_problems(table).await);
        }
        errs
    }

    /// A full scan shows every acknowledged cell exactly once and nothing else.
    async fn scan_problems(&self, table: &str) -> Vec<String> {
        let rows = self
            .c
            .read_rows(table, RowRange::all(), &ReadFilter::default(), 0)
            .collect_rows()
            .await;
        let rows = match rows {
            Ok(r) => r,
            Err(e) => return vec![format!("scan of {table}: {e}")],
        };
        let mut seen = BTreeMap::new();
        let mut errs = Vec::new();
        for r in rows {
            let k = String::from_utf8(r.key).unwrap();
            let vals: Vec<String> = r
                .cells
                .into_iter()
                .map(|c| String::from_utf8(c.value).unwrap())
                .collect();
            if seen.insert(k.clone(), vals).is_some() {
                errs.push(format!("row {k} scanned twice"));
            }
        }
        let want: BTreeMap<String, Vec<String>> = self.acked[table]
            .iter()
            .map(|(k, v)| (k.clone(), vec![v.clone()]))
            .collect();
        if seen != want {
            let missing = want.keys().filter(|k| !seen.contains_key(*k)).count();
            let extra = seen.keys().filter(|k| !want.contains_key(*k)).count();
            errs.push(format!(
                "scan of {table}: {missing} rows missing, {extra} unexpected, or values differ"
            ));
        }
        errs
    }

    /// Waits until `table` is whole and served; panics with what is wrong otherwise.
    fn repaired(&self, table: &str, after: &str) {
        let last = std::sync::Mutex::new(Vec::new());
        let ok = self.rt.block_on(async {
            let deadline = tokio::time::Instant::now() + repair_bound();
            loop {
                let p = self.problems(table).await;
                if p.is_empty() {
                    return true;
                }
                *last.lock().unwrap() = p;
                if tokio::time::Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        assert!(
            ok,
            "{table} after {after}: not repaired within {:?}: {:#?}",
            repair_bound(),
            last.into_inner().unwrap()
        );
    }

    fn take_server(&mut self, name: &str) -> Proc {
        self.servers.remove(name).unwrap().0
    }
}

#[test]
fn cluster_split_crash_at_every_step_of_split_and_move() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut rig = Rig::new("cluster-split-crash");

    // Phase 1: the armed server is the only one; a clean one joins; the move's unload
    // aborts it.
    let point = "unload-after-flush";
    rig.server("u", Some(point), &[]);
    rig.restart_master(None, true);
    let first_master = rig.master_settled();
    rig.table_with_rows("tu", &["row0050", "row0100", "row0150"]);
    let mut u = rig.take_server("u");
    rig.server("o", None, &[]);
    rig.wait_exit(&mut u, point);
    rig.repaired("tu", point);
    eprintln!("T5: {point}: repaired");

    // Phase 2: the master's move points; an empty server joins, so a move is due.
    for (n, point) in [
        "move-after-unload",
        "assign-after-epoch-bump",
        "assign-after-load",
    ]
    .into_iter()
    .enumerate()
    {
        rig.restart_master(Some(point), true);
        rig.server(&format!("c{n}"), None, &[]);
        let (mut m, _) = rig.master.take().unwrap();
        rig.wait_exit(&mut m, point);
        rig.restart_master(None, false);
        rig.master_settled();
        rig.repaired("tu", point);
        eprintln!("T5: {point}: repaired");
    }

    // A METADATA write with the first master's sequencer is refused, and changes nothing.
    assert_eq!(
        rig.stale_metadata_write("tu", first_master).as_deref(),
        Some("stale-sequencer")
    );
    rig.repaired("tu", "a stale master's METADATA write");

    // Phase 3: the split points on a fresh armed server holding a new table's tablet.
    let split_points = crashpoint::POINTS
        .iter()
        .filter(|p| p.starts_with("split-"));
    for (n, point) in split_points.enumerate() {
        // "a.." sorts first: it wins the master's ties for the least-loaded server.
        let name = format!("a{n}");
        rig.server(&name, Some(point), &[]);
        rig.listed(&name);
        let table = format!("ts{n}");
        rig.table_with_rows(&table, &[]);
        let recs = rig.rt.block_on(rig.c.table_tablets(&table)).unwrap();
        assert!(
            recs[0].server_id.starts_with(&format!("{name}-")),
            "the new table went to the least loaded server: {recs:?}"
        );
        let served_before = served_ids(&rig);
        let split = rig.rt.block_on(rig.c.split_tablet(&table, b"row0100"));
        eprintln!("T5: {point}: split answered {:?}", split.map(|_| ()));
        let mut s = rig.take_server(&name);
        rig.wait_exit(&mut s, point);
        rig.repaired(&table, point);
        let recs = rig.rt.block_on(rig.c.table_tablets(&table)).unwrap();
        // Only tablets METADATA now has were ever served: never a rolled-back left child
        // next to its parent.
        let ids: BTreeSet<u64> = recs.iter().map(|r| r.tablet_id).collect();
        let extra: Vec<u64> = served_ids(&rig)
            .difference(&served_before)
            .filter(|t| !ids.contains(t))
            .copied()
            .collect();
        assert!(extra.is_empty(), "{point}: tablets {extra:?} were served");
        eprintln!("T5: {point}: repaired, {} tablet(s)", recs.len());
    }

    // Nothing repaired later broke what was repaired before.
    let tables: Vec<String> = rig.acked.keys().cloned().collect();
    for t in tables {
        rig.repaired(&t, "the last crash");
    }
}

/// A rig with one tablet server that splits tablets past 64 KiB (checked every 200 ms,
/// armed at `point`), a master that rescans METADATA only once a minute and never
/// balances, and table `table` written with ~200 KiB (1 KiB rows), past the split size
/// after a few flushes.
fn splitting_rig(name: &str, point: Option<&str>, table: &str) -> Rig {
    let mut rig = Rig::new(name);
    let small = [
        "--split-bytes",
        "65536",
        "--split-check-ms",
        "200",
        "--memtable-bytes",
        "32768",
    ];
    rig.server("a", point, &small);
    rig.master = Some(master_env(
        &rig.dir,
        &rig.root,
        &rig.lock_addrs,
        "master-slow-scan",
        &["--scan-ms", "60000", "--max-moves", "0"],
        &[],
    ));
    rig.master_settled();
    rig.rt
        .block_on(rig.c.create_table(table, cf(), vec![]))
        .unwrap();
    write_big_rows(&mut rig, table, "v1");
    rig
}

#[test]
fn cluster_split_end_to_end_auto_split() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Its SplitDone to the master is lost, and the master rescans METADATA only once a
    // minute, so the master's view is older than the split when the server dies below
    // (the stale-view case of assign.rs).
    let table = "auto";
    let mut rig = splitting_rig("cluster-split-auto", Some("split-notify-lost"), table);
    let tablets = rig
        .rt
        .block_on(wait_for("an automatic split", repair_bound(), || async {
            let ts = rig.c.table_tablets(table).await.ok()?;
            (ts.len() >= 2).then_some(ts)
        }));
    rig.repaired(table, "the automatic split");

    // Point reads on both sides of every boundary, and a scan across it.
    let f = ReadFilter::default();
    for t in tablets.iter().filter(|t| !t.start.is_empty()) {
        let b = String::from_utf8(t.start.clone()).unwrap();
        let i: u64 = b.trim_start_matches("row").parse().unwrap();
        assert!((5..ROWS - 5).contains(&i), "split row {b}");
        for r in [row(i - 1), row(i)] {
            let got = rig
                .rt
                .block_on(rig.c.read_row(table, r.as_bytes(), &f))
                .unwrap();
            let v = got.map(|g| String::from_utf8(g.cells[0].value.clone()).unwrap());
            assert_eq!(v.as_ref(), rig.acked[table].get(&r), "row {r}");
        }
        let range = RowRange::new(row(i - 5).as_bytes(), row(i + 5).as_bytes());
        let rows = rig
            .rt
            .block_on(rig.c.read_rows(table, range, &f, 0).collect_rows())
            .unwrap();
        let keys: Vec<String> = rows
            .iter()
            .map(|r| String::from_utf8(r.key.clone()).unwrap())
            .collect();
        let want: Vec<String> = (i - 5..i + 5).map(row).collect();
        assert_eq!(keys, want, "scan across the boundary {b}");
    }

    // New values go to the children; then the server dies before the master rescanned,
    // so the master's view still holds the parent. Reassigning from that view would write
    // the parent's record over the right child's and lose the children's writes.
    write_big_rows(&mut rig, table, "v2");
    // The new owner does not split further, so the master's view settles after its rescan.
    rig.server("b", None, &[]);
    rig.listed("b");
    let mut a = rig.take_server("a");
    a.0.kill().unwrap();
    let _ = a.0.wait();
    rig.repaired(table, "kill -9 of the server that split");

    // The CLI (through the master, which has rescanned by now) lists the children.
    let tablets = rig.rt.block_on(rig.c.table_tablets(table)).unwrap();
    assert!(tablets.len() >= 2);
    let out = std::process::Command::new(quarry())
        .args(["tablets", table, "--lock", &rig.lock_addrs])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    for t in &tablets {
        let id = t.tablet_id.to_string();
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(id.as_str())),
            "quarry tablets does not list tablet {id}:\n{text}"
        );
    }
    assert_eq!(text.lines().count(), tablets.len() + 1, "{text}");
}

/// Every tablet id any server's ownership log shows served.
fn served_ids(rig: &Rig) -> BTreeSet<u64> {
    ownership_intervals(&rig.root)
        .iter()
        .map(|i| i.tablet)
        .collect()
}

/// `n` letters and digits from a fixed pseudo-random sequence seeded by `seed` (SSTable
/// blocks are compressed: repeated bytes would never reach the split size).
fn noise(seed: u64, n: usize) -> String {
    const ABC: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ABC[(x % ABC.len() as u64) as usize] as char
        })
        .collect()
}

/// Writes ROWS rows of ~1 KiB (acknowledged) with values tagged `tag`.
fn write_big_rows(rig: &mut Rig, table: &str, tag: &str) {
    let mut acked = BTreeMap::new();
    for i in 0..ROWS {
        let v = format!("{tag}-{i:04}-{}", noise(i, 1000));
        let m = vec![Mutation::set("cf", b"q", 1, v.as_bytes())];
        rig.rt
            .block_on(rig.c.mutate_row(table, row(i).as_bytes(), m))
            .unwrap();
        acked.insert(row(i), v);
    }
    rig.acked.insert(table.to_string(), acked);
}

/// Bigtable section 5.3: the tablet server that split a tablet tells the master, which
/// learns the children at once rather than at its next METADATA scan (here once a minute).
#[test]
fn cluster_split_master_is_told_of_a_split() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let table = "told";
    let rig = splitting_rig("cluster-split-told", None, table);
    // The split commits in METADATA; within a few of the master's 300 ms ticks (well
    // inside its 60 s scan period, so only the notification explains it) the master's
    // view lists exactly METADATA's tablets (children may split again meanwhile: each
    // split is told).
    rig.rt
        .block_on(wait_for("an automatic split", repair_bound(), || async {
            let ts = rig.c.table_tablets(table).await.ok()?;
            (ts.len() >= 2).then_some(())
        }));
    let ids = |v: Vec<u64>| v.into_iter().collect::<BTreeSet<u64>>();
    let known = rig.rt.block_on(wait_for(
        "the master listing METADATA's tablets",
        LEASE * 4,
        || async {
            let meta = rig.c.table_tablets(table).await.ok()?;
            let view = rig.c.list_tablets(Some(table)).await.ok()?;
            let v = ids(view.iter().map(|t| t.tablet_id).collect());
            (v == ids(meta.iter().map(|t| t.tablet_id).collect())).then_some(v)
        },
    ));
    assert!(known.len() >= 2, "{known:?}");
    rig.repaired(table, "the automatic split");
}
