//! `Tablet::mutate_rows`: a batch of independent row mutations is one commit-log append,
//! every entry is answered on its own, acknowledged entries survive a power cut, a failed
//! fsync fails the whole batch (nothing retried), and concurrent batches sharing row-lock
//! stripes with each other and with single-row writers never deadlock.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use sstable::fault::{Fault, FaultFs};
use tablet::{
    CommitLog, CommitLogOptions, Error, Mutation, ReadFilter, RowRange, Tablet, TabletConfig,
};

fn root() -> &'static Path {
    Path::new(common::ROOT)
}

/// Like `common::open`, but hands back the commit log too (for its statistics).
fn open_with_log(fs: &FaultFs, log_dir: &str) -> (Tablet, Arc<CommitLog>) {
    let log = Arc::new(
        CommitLog::open(
            fs.shared(),
            &root().join(log_dir),
            CommitLogOptions::default(),
        )
        .unwrap(),
    );
    let t = Tablet::open(TabletConfig {
        fs: fs.shared(),
        root: PathBuf::from(root()),
        dir: "tables/1/1".into(),
        id: 1,
        epoch: None,
        create: Some((RowRange::all(), common::schema())),
        schema: None,
        log: Arc::clone(&log),
        cache: None,
        options: common::small_options(false),
    })
    .unwrap();
    (t, log)
}

fn value(t: &Tablet, row: &[u8]) -> Option<Vec<u8>> {
    let r = t.read_row(row, &ReadFilter::latest()).unwrap()?;
    r.cells
        .into_iter()
        .find(|c| c.family == "f")
        .map(|c| c.value)
}

fn set(v: &[u8]) -> Vec<Mutation> {
    vec![Mutation::set("f", b"q", 1, v)]
}

#[test]
fn a_batch_is_one_log_append_and_each_entry_is_answered() {
    let fs = FaultFs::new();
    let (t, log) = open_with_log(&fs, "logs/a");
    let mut entries: Vec<(Vec<u8>, Vec<Mutation>)> = (0..50u32)
        .map(|i| {
            (
                format!("r{i:03}").into_bytes(),
                set(format!("v{i}").as_bytes()),
            )
        })
        .collect();
    entries.insert(
        10,
        (
            b"bad-family".to_vec(),
            vec![Mutation::set("nope", b"q", 1, b"x")],
        ),
    );
    entries.insert(20, (b"no-changes".to_vec(), Vec::new()));
    // Two entries for one row: applied in batch order, so the later value wins.
    entries.push((b"r000".to_vec(), set(b"second")));
    let before = log.stats();
    let results = t.mutate_rows(entries);
    let after = log.stats();

    assert_eq!(results.len(), 53);
    for (i, r) in results.iter().enumerate() {
        match i {
            10 | 20 => assert!(matches!(r, Err(Error::InvalidArgument(_))), "{i}: {r:?}"),
            _ => assert!(r.is_ok(), "{i}: {r:?}"),
        }
    }
    assert_eq!(
        after.records - before.records,
        51,
        "one record per valid entry"
    );
    assert_eq!(
        after.batches - before.batches,
        1,
        "the whole batch is one log append and one fsync"
    );
    assert_eq!(value(&t, b"r000"), Some(b"second".to_vec()));
    for i in 1..50u32 {
        assert_eq!(
            value(&t, format!("r{i:03}").as_bytes()),
            Some(format!("v{i}").into_bytes())
        );
    }
    assert_eq!(value(&t, b"bad-family"), None);
}

#[test]
fn acknowledged_batch_survives_a_power_cut_and_a_failed_fsync_fails_it_whole() {
    let fs = FaultFs::new();
    let (t, _log) = open_with_log(&fs, "logs/a");
    let ok: Vec<_> = (0..40u32)
        .map(|i| (format!("a{i:02}").into_bytes(), set(b"v")))
        .collect();
    assert!(t.mutate_rows(ok).iter().all(|r| r.is_ok()));
    fs.inject(Fault::SyncFails {
        path: "logs/a".into(),
        times: 1,
    });
    let lost: Vec<_> = (0..40u32)
        .map(|i| (format!("b{i:02}").into_bytes(), set(b"v")))
        .collect();
    let results = t.mutate_rows(lost);
    assert!(results.iter().all(|r| r.is_err()), "{results:?}");
    // Fail stop: the fault is spent, but the tablet takes nothing more.
    let again = t.mutate_rows(vec![(b"c".to_vec(), set(b"v"))]);
    assert!(matches!(again[0], Err(Error::Failed(_))), "{again:?}");
    fs.power_cut();
    drop(t);
    let (t, _log) = open_with_log(&fs, "logs/b");
    for i in 0..40u32 {
        assert_eq!(
            value(&t, format!("a{i:02}").as_bytes()),
            Some(b"v".to_vec())
        );
        assert_eq!(value(&t, format!("b{i:02}").as_bytes()), None);
    }
}

#[test]
fn concurrent_batches_and_single_row_writes_on_shared_stripes_all_finish() {
    let fs = FaultFs::new();
    let t =
        Arc::new(common::open(fs.shared(), root(), "logs/a", common::small_options(true)).unwrap());
    let (done_tx, done_rx) = mpsc::channel();
    let mut threads = Vec::new();
    for w in 0..4u32 {
        let (t, done) = (Arc::clone(&t), done_tx.clone());
        threads.push(std::thread::spawn(move || {
            for round in 0..20u32 {
                // Every batch writes the same 300 rows (in a rotated order): every stripe
                // they use is contended by the other batch writers.
                let entries: Vec<_> = (0..300u32)
                    .map(|i| (i + w * 37 + round) % 300)
                    .map(|k| {
                        (
                            format!("k{k:03}").into_bytes(),
                            set(format!("{w}-{round}").as_bytes()),
                        )
                    })
                    .collect();
                if let Some(e) = t.mutate_rows(entries).into_iter().find_map(Result::err) {
                    done.send(Err(format!("batch writer {w}, round {round}: {e}")))
                        .unwrap();
                    return;
                }
            }
            done.send(Ok(())).unwrap();
        }));
    }
    for w in 0..2u32 {
        let (t, done) = (Arc::clone(&t), done_tx.clone());
        threads.push(std::thread::spawn(move || {
            for i in 0..400u32 {
                let row = format!("k{:03}", (i * 7 + w) % 300);
                if let Err(e) = t.mutate_row(row.as_bytes(), set(b"single")) {
                    done.send(Err(format!("single-row writer {w}, write {i}: {e}")))
                        .unwrap();
                    return;
                }
            }
            done.send(Ok(())).unwrap();
        }));
    }
    // A deadlock would leave a writer stuck forever: fail instead of hanging the run.
    for _ in 0..threads.len() {
        let outcome = done_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("a writer did not finish: batch writers deadlocked on row-lock stripes");
        if let Err(e) = outcome {
            panic!("{e}");
        }
    }
    for th in threads {
        th.join().unwrap();
    }
    let rows = t
        .scan(&RowRange::all(), &ReadFilter::latest(), None)
        .unwrap()
        .count();
    assert_eq!(rows, 300);
}
