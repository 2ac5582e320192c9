//! The garbage collector on real tablets in a real directory: after flushes, a major
//! compaction, a split, a lost server and the recovery of its log, the collector deletes
//! exactly the files no manifest names any more, and every tablet still opens with all
//! its data.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use master::gc::{execute, list_disk, plan, read_manifests, Live, Report, Suspects};
use sstable::Fs;
use tablet::manifest::read_newest;
use tablet::split::ChildSpec;
use tablet::{
    CommitLog, CommitLogOptions, Mutation, ReadFilter, RowRange, Schema, Tablet, TabletConfig,
    TabletOptions,
};

const ROWS: u32 = 600;

fn options() -> TabletOptions {
    TabletOptions {
        memtable_bytes: 1 << 30, // flushes only when forced
        background: false,
        delete_obsolete_files: false, // as under a tablet server
        ..TabletOptions::default()
    }
}

fn log(fs: &Arc<dyn Fs>, root: &Path, name: &str) -> Arc<CommitLog> {
    let opts = CommitLogOptions {
        segment_bytes: 16 * 1024,
        ..CommitLogOptions::default()
    };
    Arc::new(CommitLog::open(Arc::clone(fs), &root.join("logs").join(name), opts).unwrap())
}

fn open(fs: &Arc<dyn Fs>, root: &Path, dir: &str, id: u64, log: &Arc<CommitLog>) -> Tablet {
    Tablet::open(TabletConfig {
        fs: Arc::clone(fs),
        root: root.to_path_buf(),
        dir: dir.into(),
        id,
        epoch: None,
        create: Some((RowRange::all(), Schema::with_families(["f"]))),
        schema: None,
        log: Arc::clone(log),
        cache: None,
        options: options(),
    })
    .unwrap()
}

fn key(i: u32) -> Vec<u8> {
    format!("row{i:05}").into_bytes()
}

fn value(i: u32, round: u32) -> Vec<u8> {
    format!("value-{i}-{round}-{}", "x".repeat(100)).into_bytes()
}

/// Runs collector passes `min_age` apart until one deletes nothing; returns the totals.
fn collect(fs: &dyn Fs, root: &Path, live: &Live, s: &mut Suspects) -> Report {
    let min_age = Duration::from_secs(60);
    let mut now = Instant::now();
    let mut total = Report::default();
    for pass in 0..10 {
        let disk = list_disk(fs, root).unwrap();
        let manifests = read_manifests(fs, root, &disk).unwrap();
        let p = plan(&disk, live, &manifests, s, now, min_age);
        let r = execute(fs, root, &p);
        assert_eq!(r.failures, 0, "{p:?}");
        if pass > 0 && r == Report::default() {
            return total;
        }
        total.tablet_dirs += r.tablet_dirs;
        total.ssts += r.ssts;
        total.log_dirs += r.log_dirs;
        total.bytes += r.bytes;
        now += min_age;
    }
    panic!("the collector never settled");
}

/// Every SSTable on disk, and every SSTable the newest manifests of `dirs` name.
fn on_disk_and_named(
    fs: &dyn Fs,
    root: &Path,
    dirs: &[&str],
) -> (BTreeSet<String>, BTreeSet<String>) {
    let disk = list_disk(fs, root).unwrap();
    let on_disk = disk
        .tablet_dirs
        .values()
        .flat_map(|d| d.ssts.clone())
        .collect();
    let mut named = BTreeSet::new();
    for d in dirs {
        let m = read_newest(fs, &root.join(d)).unwrap().expect("manifest");
        named.extend(m.all_ssts().map(|s| s.path.clone()));
    }
    (on_disk, named)
}

fn live(dirs: &[&str], servers: &[&str]) -> Live {
    Live {
        tablet_dirs: dirs.iter().map(|s| s.to_string()).collect(),
        table_ids: [0, 1].into_iter().collect(),
        servers: servers.iter().map(|s| s.to_string()).collect(),
    }
}

/// Reads every row from whichever of `tablets` holds it and checks its newest value.
fn check_all(tablets: &[&Tablet], round: u32) {
    for i in 0..ROWS {
        let k = key(i);
        let t = tablets
            .iter()
            .find(|t| t.range().contains(&k))
            .expect("a tablet holds the row");
        let row = t
            .read_row(&k, &ReadFilter::latest())
            .unwrap()
            .unwrap_or_else(|| panic!("row {i} lost"));
        assert_eq!(row.cells[0].value, value(i, round), "row {i}");
    }
}

fn write_round(t: &Tablet, round: u32, range: &RowRange) {
    for i in (0..ROWS).filter(|&i| range.contains(&key(i))) {
        let m = vec![Mutation::set("f", b"q", round as i64 + 1, &value(i, round))];
        t.mutate_row(&key(i), m).unwrap();
    }
}

#[test]
fn obsolete_files_go_and_every_tablet_reopens_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let fs = sstable::RealFs::shared();
    let mut suspects = Suspects::default();

    // Four flushed rounds and a major compaction: four obsolete SSTables.
    let log_a = log(&fs, &root, "a");
    let parent = open(&fs, &root, "tables/1/1", 1, &log_a);
    for round in 0..4 {
        write_round(&parent, round, &RowRange::all());
        parent.force_flush().unwrap();
    }
    parent.force_major_compaction().unwrap();
    let r = collect(&*fs, &root, &live(&["tables/1/1"], &["a"]), &mut suspects);
    assert_eq!((r.ssts, r.tablet_dirs, r.log_dirs), (4, 0, 0), "{r:?}");
    let (on_disk, named) = on_disk_and_named(&*fs, &root, &["tables/1/1"]);
    assert_eq!(on_disk, named);
    check_all(&[&parent], 3);

    // Split: both children name the parent's one file; METADATA now names only them.
    let mid = parent.mid_row().unwrap();
    let (ls, rs) = (
        ChildSpec {
            id: 2,
            dir: "tables/1/2".into(),
        },
        ChildSpec {
            id: 3,
            dir: "tables/1/3".into(),
        },
    );
    parent.split(&mid, &ls, &rs).unwrap();
    drop(parent);
    let left = open(&fs, &root, "tables/1/2", 2, &log_a);
    let right = open(&fs, &root, "tables/1/3", 3, &log_a);
    // The right child rewrites its half: the shared file stays for the left child.
    right.force_major_compaction().unwrap();
    let children = live(&["tables/1/2", "tables/1/3"], &["a"]);
    let r = collect(&*fs, &root, &children, &mut suspects);
    assert_eq!(
        (r.ssts, r.tablet_dirs),
        (0, 1),
        "the parent's manifests go, not its file"
    );
    let (on_disk, named) = on_disk_and_named(&*fs, &root, &["tables/1/2", "tables/1/3"]);
    assert_eq!(on_disk, named);
    check_all(&[&left, &right], 3);

    // Unflushed writes, then the server "dies" (no flush): its log is all that holds them.
    write_round(&left, 4, left.range());
    write_round(&right, 4, &right.range().clone());
    drop((left, right));
    drop(log_a);
    let segments_a = fs.list_dir(&root.join("logs/a")).unwrap().len();
    assert!(segments_a > 1, "the test wants several segments");
    // Server a is gone, but both children's manifests still name its log: it stays.
    let r = collect(
        &*fs,
        &root,
        &live(&["tables/1/2", "tables/1/3"], &[]),
        &mut suspects,
    );
    assert_eq!(r.log_dirs, 0, "{r:?}");

    // A new owner recovers them from a's log (and flushes); then a's log goes.
    let log_b = log(&fs, &root, "b");
    let left = open(&fs, &root, "tables/1/2", 2, &log_b);
    let right = open(&fs, &root, "tables/1/3", 3, &log_b);
    check_all(&[&left, &right], 4);
    let r = collect(
        &*fs,
        &root,
        &live(&["tables/1/2", "tables/1/3"], &["b"]),
        &mut suspects,
    );
    assert_eq!(r.log_dirs, 1, "{r:?}");
    assert!(!fs.exists(&root.join("logs/a")));

    // The live server trims its own log below what the manifests still need: round 5
    // is flushed, round 6 is only in the log.
    for round in [5, 6] {
        write_round(&left, round, left.range());
        write_round(&right, round, &right.range().clone());
        if round == 5 {
            left.force_flush().unwrap();
            right.force_flush().unwrap();
        }
    }
    let dirs: BTreeSet<String> = ["tables/1/1", "tables/1/2", "tables/1/3"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let floor = tablet::server::log_gc::log_floor(&*fs, &root, &log_b, || dirs).unwrap();
    assert!(
        floor < log_b.position(),
        "round 6 is not flushed: {floor:?}"
    );
    assert!(log_b.delete_segments_before(floor.segment).unwrap() > 0);

    // A crash, and everything reopens at a new epoch from what is left.
    drop((left, right));
    drop(log_b);
    let log_c = log(&fs, &root, "c");
    let left = open(&fs, &root, "tables/1/2", 2, &log_c);
    let right = open(&fs, &root, "tables/1/3", 3, &log_c);
    check_all(&[&left, &right], 6);
}
