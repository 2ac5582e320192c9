//! Scenario tests of one tablet: semantics of mutations and reads, locality groups,
//! splits, epoch fencing (DESIGN.md rule 7) and fail-stop on I/O errors (rule 8).

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sstable::fault::Fault;
use tablet::split::ChildSpec;
use tablet::{
    CommitLog, CommitLogOptions, Error, Mutation, ReadFilter, ReadModifyWrite, RowRange, Tablet,
    TabletConfig,
};

fn root() -> &'static Path {
    Path::new(common::ROOT)
}

fn value_of(t: &Tablet, row: &[u8], fam: &str, q: &[u8]) -> Option<Vec<u8>> {
    let f = ReadFilter {
        families: Some(vec![fam.into()]),
        versions_per_column: Some(1),
        ..ReadFilter::default()
    };
    let r = t.read_row(row, &f).unwrap()?;
    r.cells
        .into_iter()
        .find(|c| c.qualifier == q)
        .map(|c| c.value)
}

#[test]
fn order_inside_one_mutation_decides_what_a_delete_hides() {
    let fs = common::fault_fs();
    let t = common::open(fs.shared(), root(), "logs/a", common::small_options(false)).unwrap();
    t.mutate_row(
        b"r1",
        vec![Mutation::set("f", b"q", 1, b"v"), Mutation::DeleteRow],
    )
    .unwrap();
    assert_eq!(value_of(&t, b"r1", "f", b"q"), None);
    t.mutate_row(
        b"r2",
        vec![Mutation::DeleteRow, Mutation::set("f", b"q", 1, b"v")],
    )
    .unwrap();
    assert_eq!(value_of(&t, b"r2", "f", b"q"), Some(b"v".to_vec()));
    // A write at an old timestamp after a delete is visible; the delete hid only the past.
    t.mutate_row(b"r1", vec![Mutation::set("f", b"q", 0, b"late")])
        .unwrap();
    t.force_major_compaction().unwrap();
    assert_eq!(value_of(&t, b"r1", "f", b"q"), Some(b"late".to_vec()));
}

#[test]
fn check_and_mutate_and_read_modify_write() {
    let fs = common::fault_fs();
    let t = common::open(fs.shared(), root(), "logs/a", common::small_options(false)).unwrap();
    let pred = ReadFilter {
        families: Some(vec!["f".into()]),
        ..ReadFilter::default()
    };
    let set = |v: &[u8]| vec![Mutation::set("f", b"state", 1, v)];
    assert!(!t
        .check_and_mutate(b"r", &pred, set(b"yes"), set(b"no"))
        .unwrap());
    assert_eq!(value_of(&t, b"r", "f", b"state"), Some(b"no".to_vec()));
    assert!(t
        .check_and_mutate(b"r", &pred, set(b"yes"), set(b"no"))
        .unwrap());
    assert_eq!(value_of(&t, b"r", "f", b"state"), Some(b"yes".to_vec()));

    let inc = |d| ReadModifyWrite::Increment {
        family: "f".into(),
        qualifier: b"n".to_vec(),
        delta: d,
    };
    t.read_modify_write(b"r", vec![inc(5)]).unwrap();
    let cells = t.read_modify_write(b"r", vec![inc(-2), inc(10)]).unwrap();
    assert_eq!(cells.last().unwrap().value, 13i64.to_be_bytes());
    assert_eq!(
        value_of(&t, b"r", "f", b"n"),
        Some(13i64.to_be_bytes().to_vec())
    );
    let app = ReadModifyWrite::Append {
        family: "f".into(),
        qualifier: b"state".to_vec(),
        value: b"!".to_vec(),
    };
    t.read_modify_write(b"r", vec![app]).unwrap();
    assert_eq!(value_of(&t, b"r", "f", b"state"), Some(b"yes!".to_vec()));
    // Incrementing a value that is not an 8-byte counter is refused, and changes nothing.
    let bad = ReadModifyWrite::Increment {
        family: "f".into(),
        qualifier: b"state".to_vec(),
        delta: 1,
    };
    assert!(matches!(
        t.read_modify_write(b"r", vec![bad]),
        Err(Error::FailedPrecondition(_))
    ));
    assert_eq!(value_of(&t, b"r", "f", b"state"), Some(b"yes!".to_vec()));
}

#[test]
fn concurrent_increments_are_atomic() {
    let fs = common::fault_fs();
    let t =
        Arc::new(common::open(fs.shared(), root(), "logs/a", common::small_options(true)).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let t = Arc::clone(&t);
            std::thread::spawn(move || {
                for _ in 0..50 {
                    t.read_modify_write(
                        b"ctr",
                        vec![ReadModifyWrite::Increment {
                            family: "f".into(),
                            qualifier: b"n".to_vec(),
                            delta: 1,
                        }],
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    assert_eq!(
        value_of(&t, b"ctr", "f", b"n"),
        Some(200i64.to_be_bytes().to_vec())
    );
}

#[test]
fn locality_groups_keep_scans_apart() {
    let fs = common::fault_fs();
    let t = common::open(fs.shared(), root(), "logs/a", common::small_options(false)).unwrap();
    t.mutate_row(
        b"r",
        vec![
            Mutation::set("f", b"q", 1, b"disk"),
            Mutation::set("m", b"q", 1, b"mem"),
        ],
    )
    .unwrap();
    t.force_flush().unwrap();
    assert_eq!(t.stats().sstables.get("mem"), Some(&1));
    assert_eq!(t.stats().sstables.get("default"), Some(&1));
    let before = t.stats().sst_probes;
    assert_eq!(value_of(&t, b"r", "m", b"q"), Some(b"mem".to_vec()));
    assert_eq!(
        t.stats().sst_probes - before,
        1,
        "only the mem group's SSTable is read"
    );
    let before = t.stats().sst_probes;
    t.read_row(b"r", &ReadFilter::default()).unwrap().unwrap();
    assert_eq!(t.stats().sst_probes - before, 2);
}

#[test]
fn bad_input_is_rejected_and_loses_nothing() {
    let fs = common::fault_fs();
    let t = common::open(fs.shared(), root(), "logs/a", common::small_options(false)).unwrap();
    t.mutate_row(b"r", vec![Mutation::set("f", b"q", 1, b"ok")])
        .unwrap();
    let huge = vec![0u8; tablet::mutation::DEFAULT_MAX_VALUE + 1];
    let err = t
        .mutate_row(b"r", vec![Mutation::set("f", b"q", 2, &huge)])
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(ref m) if m.contains("cell value")),
        "{err}"
    );
    let err = t
        .mutate_row(&[b'k'; 5000], vec![Mutation::set("f", b"q", 2, b"")])
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(ref m) if m.contains("row key")),
        "{err}"
    );
    let err = t
        .mutate_row(b"r", vec![Mutation::set("nope", b"q", 2, b"")])
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(ref m) if m.contains("nope")),
        "{err}"
    );
    assert_eq!(value_of(&t, b"r", "f", b"q"), Some(b"ok".to_vec()));
}

#[test]
fn split_children_share_files_and_each_sees_its_half() {
    let fs = common::fault_fs();
    let t = common::open(fs.shared(), root(), "logs/a", common::small_options(false)).unwrap();
    for i in 0..200u32 {
        t.mutate_row(
            format!("row{i:04}").as_bytes(),
            vec![Mutation::set("f", b"q", 1, &[7; 100])],
        )
        .unwrap();
    }
    t.force_flush().unwrap();
    let mid = t.mid_row().expect("enough data to split");
    let left = ChildSpec {
        id: 2,
        dir: "tables/1/2".into(),
    };
    let right = ChildSpec {
        id: 3,
        dir: "tables/1/3".into(),
    };
    t.split(&mid, &left, &right).unwrap();
    assert!(matches!(
        t.mutate_row(b"row0001", vec![Mutation::DeleteRow]),
        Err(Error::Unavailable(_))
    ));
    drop(t);
    let log = Arc::new(
        CommitLog::open(
            fs.shared(),
            &root().join("logs/b"),
            CommitLogOptions::default(),
        )
        .unwrap(),
    );
    let open_child = |c: &ChildSpec| {
        Tablet::open(TabletConfig {
            fs: fs.shared(),
            root: root().to_path_buf(),
            dir: c.dir.clone(),
            id: c.id,
            epoch: None,
            create: None,
            schema: None,
            log: Arc::clone(&log),
            cache: None,
            options: common::small_options(false),
        })
        .unwrap()
    };
    let (l, r) = (open_child(&left), open_child(&right));
    let count = |t: &Tablet| {
        t.scan(&RowRange::all(), &ReadFilter::default(), None)
            .unwrap()
            .count()
    };
    assert_eq!(count(&l) + count(&r), 200);
    assert!(count(&l) > 0 && count(&r) > 0);
    assert!(
        l.range().contains(b"row0000") && !l.range().contains(&mid) && r.range().contains(&mid)
    );
    // Both children still share the parent's files (the auto-splitter compacts those
    // away before it splits a child again: their sizes count the shared files whole).
    assert!(l.stats().shared_sstables > 0 && r.stats().shared_sstables > 0);
    // The children keep working, compact their shared files away, and stay correct.
    r.mutate_row(b"row9999", vec![Mutation::set("f", b"q", 1, b"new")])
        .unwrap();
    r.force_major_compaction().unwrap();
    l.force_major_compaction().unwrap();
    assert_eq!(l.stats().shared_sstables + r.stats().shared_sstables, 0);
    assert!(l.stats().sst_bytes + r.stats().sst_bytes > 0);
    assert_eq!(count(&l) + count(&r), 201);
}

/// DESIGN.md rule 7: a paused old owner that wakes and writes cannot make its writes
/// visible to the tablet's new owner, nor replace the new owner's manifest.
#[test]
fn a_zombie_owner_cannot_make_writes_visible_after_a_new_owner_loaded() {
    let fs = common::fault_fs();
    let zombie = common::open(fs.shared(), root(), "logs/a", common::small_options(false)).unwrap();
    zombie
        .mutate_row(b"x", vec![Mutation::set("f", b"q", 1, b"before")])
        .unwrap();
    let owner = common::open(fs.shared(), root(), "logs/b", common::small_options(false)).unwrap();
    assert!(owner.epoch() > zombie.epoch());
    // The zombie wakes up: its append lands after the seal; its flush writes a manifest of
    // an older epoch and SSTables whose names carry that epoch.
    zombie
        .mutate_row(b"x", vec![Mutation::set("f", b"q", 2, b"zombie")])
        .unwrap();
    zombie.force_flush().unwrap();
    zombie.force_major_compaction().unwrap();
    assert_eq!(value_of(&owner, b"x", "f", b"q"), Some(b"before".to_vec()));
    owner
        .mutate_row(b"y", vec![Mutation::set("f", b"q", 1, b"owner")])
        .unwrap();
    drop(owner);
    drop(zombie);
    let next = common::open(fs.shared(), root(), "logs/c", common::small_options(false)).unwrap();
    assert_eq!(value_of(&next, b"x", "f", b"q"), Some(b"before".to_vec()));
    assert_eq!(value_of(&next, b"y", "f", b"q"), Some(b"owner".to_vec()));
}

#[test]
fn stale_epoch_is_refused() {
    let fs = common::fault_fs();
    let t = common::open(fs.shared(), root(), "logs/a", common::small_options(false)).unwrap();
    let epoch = t.epoch();
    drop(t);
    let log = Arc::new(
        CommitLog::open(
            fs.shared(),
            &root().join("logs/b"),
            CommitLogOptions::default(),
        )
        .unwrap(),
    );
    let err = Tablet::open(TabletConfig {
        fs: fs.shared(),
        root: root().to_path_buf(),
        dir: "tables/1/1".into(),
        id: 1,
        epoch: Some(epoch),
        create: None,
        schema: None,
        log,
        cache: None,
        options: common::small_options(false),
    })
    .err()
    .expect("stale epoch must be refused");
    assert!(err.to_string().contains("stale epoch"), "{err}");
}

/// DESIGN.md rule 8 and RELIABILITY.md S6: after a failed commit-log fsync nothing more is
/// acknowledged, and a power cut loses nothing that was.
#[test]
fn failed_fsync_fails_stop_and_loses_no_acknowledged_write() {
    let fs = common::fault_fs();
    let t = common::open(fs.shared(), root(), "logs/a", common::small_options(false)).unwrap();
    for i in 0..20u32 {
        t.mutate_row(
            format!("a{i}").as_bytes(),
            vec![Mutation::set("f", b"q", 1, b"v")],
        )
        .unwrap();
    }
    fs.inject(Fault::SyncFails {
        path: "logs/a".into(),
        times: 1,
    });
    assert!(t
        .mutate_row(b"lost?", vec![Mutation::set("f", b"q", 1, b"v")])
        .is_err());
    // The fault is spent: a retried fsync would now "succeed". The tablet must not try.
    for i in 0..5u32 {
        let r = t.mutate_row(
            format!("b{i}").as_bytes(),
            vec![Mutation::set("f", b"q", 1, b"v")],
        );
        assert!(
            matches!(r, Err(Error::Failed(_)) | Err(Error::Storage(_))),
            "{r:?}"
        );
    }
    fs.power_cut();
    drop(t);
    let t = common::open(fs.shared(), root(), "logs/b", common::small_options(false)).unwrap();
    for i in 0..20u32 {
        assert_eq!(
            value_of(&t, format!("a{i}").as_bytes(), "f", b"q"),
            Some(b"v".to_vec())
        );
    }
    for i in 0..5u32 {
        assert_eq!(value_of(&t, format!("b{i}").as_bytes(), "f", b"q"), None);
    }
}

/// S6: ENOSPC while flushing fails the tablet stop; nothing acknowledged is lost.
#[test]
fn no_space_during_flush_loses_nothing() {
    let fs = common::fault_fs();
    let t = common::open(fs.shared(), root(), "logs/a", common::small_options(false)).unwrap();
    for i in 0..30u32 {
        t.mutate_row(
            format!("a{i:02}").as_bytes(),
            vec![Mutation::set("f", b"q", 1, b"v")],
        )
        .unwrap();
    }
    fs.inject(Fault::AppendNoSpace {
        path: "/sst/".into(),
        after_bytes: 100,
        times: u32::MAX,
    });
    assert!(t.force_flush().is_err());
    drop(t);
    fs.clear_faults();
    fs.power_cut();
    let t = common::open(fs.shared(), root(), "logs/b", common::small_options(false)).unwrap();
    let n = t
        .scan(&RowRange::all(), &ReadFilter::default(), None)
        .unwrap()
        .count();
    assert_eq!(n, 30);
}

/// S3 with concurrency: writers race a power cut; every acknowledged write survives.
#[test]
fn power_cut_under_concurrent_writers_keeps_every_acknowledged_write() {
    for round in 0..5u64 {
        let fs = common::fault_fs();
        let t = Arc::new(
            common::open(fs.shared(), root(), "logs/a", common::small_options(true)).unwrap(),
        );
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..4u64)
            .map(|w| {
                let (t, acked, stop, count) = (
                    Arc::clone(&t),
                    Arc::clone(&acked),
                    Arc::clone(&stop),
                    Arc::clone(&count),
                );
                std::thread::spawn(move || {
                    for i in 0u64.. {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let row = format!("w{w}-{i:05}");
                        let m = vec![
                            Mutation::set("f", b"q", 1, &[round as u8; 64]),
                            Mutation::set("m", b"q", 1, b"x"),
                        ];
                        if t.mutate_row(row.as_bytes(), m).is_err() {
                            break;
                        }
                        acked.lock().unwrap().push(row);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        // Cut once enough writes are in to have flushed and compacted a few times.
        while count.load(Ordering::SeqCst) < 300 + round * 100 {
            std::thread::yield_now();
        }
        fs.power_cut();
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.join().unwrap();
        }
        drop(t);
        let t = common::open(fs.shared(), root(), "logs/b", common::small_options(false)).unwrap();
        for row in acked.lock().unwrap().iter() {
            assert!(
                t.read_row(row.as_bytes(), &ReadFilter::default())
                    .unwrap()
                    .is_some(),
                "round {round}: lost {row}"
            );
        }
    }
}
