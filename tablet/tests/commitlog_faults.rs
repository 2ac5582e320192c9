//! The commit log under faults and concurrency, on the fault-injecting file system:
//! - S3: power cuts racing concurrent writers (and segment rolls): every append that
//!   returned `Ok` is replayed after the cut, nothing is replayed that was not written;
//! - S6: fsync EIO poisons the log (no later `Ok`, no retried fsync) and loses nothing
//!   acknowledged; ENOSPC likewise; a failed directory sync during a roll too;
//! - group commit really groups: while a leader is inside its fsync, the callers that
//!   queue behind it are written as one batch with one fsync.
//!
//! Waits are on conditions with deadlines, never bare sleeps.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use sstable::fault::{Fault, FaultFs};
use sstable::{Error, Fs, RandomAccessFile, Result, WritableFile};
use tablet::commitlog::{
    list_segments, replay_segment, valid_end, CommitLog, CommitLogOptions, TabletId,
};

const MAX: usize = 1 << 20;
const DEADLINE: Duration = Duration::from_secs(60);

fn opts(segment_bytes: u64) -> CommitLogOptions {
    CommitLogOptions {
        segment_bytes,
        sync: true,
        max_record: MAX,
    }
}

/// Every record of `tablet` in `dir`, each segment read to its valid end.
fn replay_all(fs: &dyn Fs, dir: &Path, tablet: TabletId) -> Vec<Vec<u8>> {
    replay_from(fs, dir, tablet, 0)
}

/// Every record of `tablet` in the segments of `dir` numbered `first` or more.
fn replay_from(fs: &dyn Fs, dir: &Path, tablet: TabletId, first: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (_, path) in list_segments(fs, dir)
        .unwrap()
        .into_iter()
        .filter(|(n, _)| *n >= first)
    {
        let end = valid_end(fs, &path, MAX).unwrap();
        replay_segment(fs, &path, tablet, 0, end, MAX, &mut |p| {
            out.push(p.to_vec());
            Ok(())
        })
        .unwrap();
    }
    out
}

/// Waits until `cond()` holds, failing the test at the deadline.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::yield_now();
    }
}

/// What the writers of one test did: payloads acknowledged and payloads attempted.
#[derive(Default)]
struct Ledger {
    acked: Mutex<Vec<(TabletId, Vec<u8>)>>,
    attempted: Mutex<HashSet<Vec<u8>>>,
    grown: Condvar,
    /// Set to stop the writers (the process "died" in the power cut).
    stop: AtomicBool,
}

impl Ledger {
    fn acked_len(&self) -> usize {
        self.acked.lock().len()
    }

    /// Waits until at least `n` appends were acknowledged.
    fn wait_acked(&self, n: usize) {
        let deadline = Instant::now() + DEADLINE;
        let mut acked = self.acked.lock();
        while acked.len() < n {
            assert!(
                !self.grown.wait_until(&mut acked, deadline).timed_out(),
                "timed out waiting for {n} acknowledged appends"
            );
        }
    }
}

/// A writer thread: appends `w<id>-<round>-<i>` for tablet `id` until an append fails or
/// the ledger says stop.
fn writer(log: Arc<CommitLog>, ledger: Arc<Ledger>, id: TabletId, round: usize) -> usize {
    for i in 0.. {
        if ledger.stop.load(Ordering::SeqCst) {
            return i;
        }
        let p = format!("w{id}-{round}-{i}-").repeat(1 + i % 9).into_bytes();
        ledger.attempted.lock().insert(p.clone());
        match log.append(id, &p) {
            Ok(_) => {
                ledger.acked.lock().push((id, p));
                ledger.grown.notify_all();
            }
            Err(_) => return i,
        }
    }
    unreachable!()
}

/// Checks that every acknowledged payload is replayed, that every replayed payload was
/// written, and that each tablet's records come back in its writer's order.
fn check_recovery(fs: &dyn Fs, dir: &Path, ledger: &Ledger, tablets: u64) {
    check_recovery_from(fs, dir, ledger, tablets, 0)
}

/// [`check_recovery`] over the segments numbered `first` or more.
fn check_recovery_from(fs: &dyn Fs, dir: &Path, ledger: &Ledger, tablets: u64, first: u64) {
    let attempted = ledger.attempted.lock();
    let acked = ledger.acked.lock();
    for t in 0..tablets {
        let replayed = replay_from(fs, dir, t, first);
        let set: HashSet<&Vec<u8>> = replayed.iter().collect();
        for (_, p) in acked.iter().filter(|(id, _)| *id == t) {
            assert!(
                set.contains(p),
                "acknowledged {:?} lost",
                String::from_utf8_lossy(p)
            );
        }
        for p in &replayed {
            assert!(attempted.contains(p), "replayed a record never written");
        }
        let mine: Vec<&Vec<u8>> = acked
            .iter()
            .filter(|(id, _)| *id == t)
            .map(|(_, p)| p)
            .collect();
        let order: HashMap<&Vec<u8>, usize> =
            replayed.iter().enumerate().map(|(i, p)| (p, i)).collect();
        assert!(
            mine.windows(2).all(|w| order[w[0]] < order[w[1]]),
            "tablet {t}: replay order differs from acknowledgement order"
        );
    }
}

#[test]
fn s3_power_cuts_racing_concurrent_writers_lose_no_acknowledged_append() {
    let fs = FaultFs::new();
    let dir = PathBuf::from("/logs/ts-1");
    let everything = Ledger::default();
    let writers = 4;
    let rounds = 200;
    for round in 0..rounds {
        let ledger = Arc::new(Ledger::default());
        // Small segments, so rolls race the cuts too.
        let log = Arc::new(CommitLog::open(fs.shared(), &dir, opts(3000)).unwrap());
        let first = log.position().segment;
        let handles: Vec<_> = (0..writers)
            .map(|id| {
                let (log, ledger) = (log.clone(), ledger.clone());
                thread::spawn(move || writer(log, ledger, id, round))
            })
            .collect();
        // Cut after a varying number of acknowledgements in this round.
        ledger.wait_acked(1 + round * 7 % 41);
        fs.power_cut();
        // The process dies with the power. (A batch that rolls to a new segment after the
        // cut gets a fresh handle and may still succeed; those acks are checked too.)
        ledger.stop.store(true, Ordering::SeqCst);
        for h in handles {
            h.join().unwrap();
        }
        drop(log);
        // This round's acknowledged appends are all in this round's segments.
        check_recovery_from(&fs, &dir, &ledger, writers, first);
        everything
            .acked
            .lock()
            .extend(ledger.acked.lock().drain(..));
        everything
            .attempted
            .lock()
            .extend(ledger.attempted.lock().drain());
    }
    // And every earlier round's survived every later cut.
    check_recovery(&fs, &dir, &everything, writers);
    assert_eq!(fs.counters().power_cuts, rounds as u64);
    assert!(everything.acked_len() > rounds);
    eprintln!(
        "{rounds} power cuts, {} acknowledged appends, all replayed",
        everything.acked_len()
    );
}

#[test]
fn s6_fsync_eio_poisons_the_log_and_loses_nothing_acknowledged() {
    let fs = FaultFs::new();
    let dir = PathBuf::from("/log");
    let ledger = Arc::new(Ledger::default());
    let log = Arc::new(CommitLog::open(fs.shared(), &dir, opts(4096)).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|id| {
            let (log, ledger) = (log.clone(), ledger.clone());
            thread::spawn(move || writer(log, ledger, id, 0))
        })
        .collect();
    ledger.wait_acked(50);
    fs.inject(Fault::SyncFails {
        path: "/log/".into(),
        times: 1,
    });
    wait_until("the fsync fault to fire", || {
        fs.counters().faults_fired >= 1
    });
    ledger.stop.store(true, Ordering::SeqCst);
    for h in handles {
        h.join().unwrap();
    }
    assert!(log.has_failed(), "a failed fsync must fail the log stop");
    let acked_at_failure = ledger.acked_len();
    let syncs_at_failure = fs.counters().syncs;
    // No later Ok, and the log never calls fsync again (which would now "succeed").
    for i in 0..10 {
        assert!(log.append(1, format!("late{i}").as_bytes()).is_err());
    }
    assert_eq!(fs.counters().syncs, syncs_at_failure);
    assert_eq!(ledger.acked_len(), acked_at_failure);
    drop(log);
    fs.power_cut();
    check_recovery(&fs, &dir, &ledger, 4);
    // A new log on the same directory works and replays after the old records.
    let log = CommitLog::open(fs.shared(), &dir, opts(4096)).unwrap();
    log.append(0, b"after-restart").unwrap();
    assert_eq!(replay_all(&fs, &dir, 0).last().unwrap(), b"after-restart");
}

#[test]
fn s6_enospc_on_append_poisons_the_log_and_loses_nothing() {
    let fs = FaultFs::new();
    let dir = PathBuf::from("/log");
    let ledger = Arc::new(Ledger::default());
    let log = Arc::new(CommitLog::open(fs.shared(), &dir, opts(64 << 20)).unwrap());
    fs.inject(Fault::AppendNoSpace {
        path: "/log/".into(),
        after_bytes: 20_000,
        times: u32::MAX,
    });
    let handles: Vec<_> = (0..3)
        .map(|id| {
            let (log, ledger) = (log.clone(), ledger.clone());
            thread::spawn(move || writer(log, ledger, id, 0))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(log.has_failed());
    let err = log.append(0, b"x").unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("No space"), "{err}");
    assert!(ledger.acked_len() > 10);
    // Without a power cut: the short write is a torn tail.
    check_recovery(&fs, &dir, &ledger, 3);
    drop(log);
    fs.power_cut();
    check_recovery(&fs, &dir, &ledger, 3);
    fs.clear_faults();
    let log = CommitLog::open(fs.shared(), &dir, opts(64 << 20)).unwrap();
    log.append(2, b"space again").unwrap();
    assert_eq!(replay_all(&fs, &dir, 2).last().unwrap(), b"space again");
}

#[test]
fn s6_a_failed_directory_sync_during_a_roll_poisons_the_log() {
    let fs = FaultFs::new();
    let dir = PathBuf::from("/log");
    let log = CommitLog::open(fs.shared(), &dir, opts(500)).unwrap();
    fs.inject(Fault::SyncDirFails {
        path: "/log".into(),
        times: 1,
    });
    let mut acked = Vec::new();
    let err = loop {
        let p = format!("record {}", acked.len()).into_bytes();
        match log.append(7, &p) {
            Ok(_) => acked.push(p),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(log.append(7, b"later").is_err());
    drop(log);
    fs.power_cut();
    assert_eq!(replay_all(&fs, &dir, 7), acked);
}

/// A file system whose file syncs can be held at a gate, to make the group-commit
/// schedule deterministic. Everything else goes straight to the wrapped `FaultFs`.
#[derive(Clone)]
struct GatedFs {
    inner: FaultFs,
    gate: Arc<Gate>,
}

#[derive(Default)]
struct Gate {
    /// (closed, syncs waiting at the gate)
    state: Mutex<(bool, usize)>,
    changed: Condvar,
    /// Every file sync call, whatever its outcome.
    sync_calls: AtomicU64,
    /// The next sync to pass the gate panics (a bug in the I/O path).
    panic_next: AtomicBool,
}

impl Gate {
    fn set_closed(&self, closed: bool) {
        self.state.lock().0 = closed;
        self.changed.notify_all();
    }

    fn waiting(&self) -> usize {
        self.state.lock().1
    }

    fn pass(&self) {
        self.sync_calls.fetch_add(1, Ordering::SeqCst);
        let mut st = self.state.lock();
        st.1 += 1;
        while st.0 {
            self.changed.wait(&mut st);
        }
        st.1 -= 1;
        drop(st);
        if self.panic_next.swap(false, Ordering::SeqCst) {
            panic!("injected panic inside fsync");
        }
    }
}

struct GatedFile {
    inner: Box<dyn WritableFile>,
    gate: Arc<Gate>,
}

impl WritableFile for GatedFile {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.inner.append(data)
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
    fn sync(&mut self) -> Result<()> {
        self.gate.pass();
        self.inner.sync()
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
}

impl Fs for GatedFs {
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let inner = self.inner.create(path)?;
        Ok(Box::new(GatedFile {
            inner,
            gate: self.gate.clone(),
        }))
    }
    fn open_append(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let inner = self.inner.open_append(path)?;
        Ok(Box::new(GatedFile {
            inner,
            gate: self.gate.clone(),
        }))
    }
    fn open(&self, path: &Path) -> Result<Arc<dyn RandomAccessFile>> {
        self.inner.open(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> Result<()> {
        self.inner.remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> Result<()> {
        self.inner.create_dir_all(path)
    }
    fn remove_dir_all(&self, path: &Path) -> Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> Result<()> {
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn file_size(&self, path: &Path) -> Result<u64> {
        self.inner.file_size(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> Result<()> {
        self.inner.truncate(path, len)
    }
}

/// Opens a log on a gated fs, starts one append that becomes the leader and parks in its
/// fsync, then queues `followers` appends behind it. Returns once all of them wait.
fn leader_parked_with_followers(
    followers: u64,
) -> (GatedFs, Arc<CommitLog>, Vec<thread::JoinHandle<Result<()>>>) {
    let fs = GatedFs {
        inner: FaultFs::new(),
        gate: Arc::new(Gate::default()),
    };
    let log =
        Arc::new(CommitLog::open(Arc::new(fs.clone()), Path::new("/log"), opts(64 << 20)).unwrap());
    fs.gate.set_closed(true);
    let mut handles = Vec::new();
    let spawn = |t: TabletId| {
        let log = log.clone();
        thread::spawn(move || log.append(t, format!("rec{t}").as_bytes()).map(|_| ()))
    };
    handles.push(spawn(0));
    wait_until("the leader to reach its fsync", || fs.gate.waiting() == 1);
    for t in 1..=followers {
        handles.push(spawn(t));
    }
    wait_until("the followers to queue", || log.stats().queued == followers);
    (fs, log, handles)
}

#[test]
fn group_commit_writes_queued_callers_as_one_batch_with_one_fsync() {
    let (fs, log, handles) = leader_parked_with_followers(15);
    fs.gate.set_closed(false);
    for h in handles {
        h.join().unwrap().unwrap();
    }
    let s = log.stats();
    assert_eq!(s.records, 16);
    assert_eq!(
        s.batches, 2,
        "the leader's batch, then all 15 followers at once"
    );
    assert_eq!(s.max_batch, 15);
    // The segment header's fsync at open, the leader's, and one for all 15 followers.
    assert_eq!(s.syncs, 3);
    assert_eq!(fs.gate.sync_calls.load(Ordering::SeqCst), 3);
    for t in 0..=15 {
        assert_eq!(
            replay_all(&fs.inner, Path::new("/log"), t),
            vec![format!("rec{t}").into_bytes()]
        );
    }
}

#[test]
fn a_failed_fsync_fails_the_batch_and_every_queued_and_later_caller() {
    let (fs, log, handles) = leader_parked_with_followers(6);
    fs.inner.inject(Fault::SyncFails {
        path: "/log/".into(),
        times: 1,
    });
    let calls_before = fs.gate.sync_calls.load(Ordering::SeqCst);
    fs.gate.set_closed(false);
    let results: Vec<Result<()>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results.iter().all(|r| r.is_err()), "no caller may see Ok");
    assert!(log.append(99, b"later").is_err());
    // Only the leader's one (failed) fsync was attempted: the followers were failed
    // without a retry.
    assert_eq!(fs.gate.sync_calls.load(Ordering::SeqCst), calls_before);
    fs.inner.power_cut();
    for t in 0..=6 {
        assert!(replay_all(&fs.inner, Path::new("/log"), t).is_empty());
    }
}

#[test]
fn many_threads_on_real_files_get_distinct_ordered_positions() {
    let dir = tempfile::tempdir().unwrap();
    let log =
        Arc::new(CommitLog::open(sstable::RealFs::shared(), dir.path(), opts(64 << 10)).unwrap());
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let log = log.clone();
            thread::spawn(move || {
                (0..40)
                    .map(|i| log.append(t, format!("{t}:{i}").as_bytes()).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        let positions = h.join().unwrap();
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
        all.extend(positions);
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), 320);
    let s = log.stats();
    assert_eq!(s.records, 320);
    assert!(s.batches <= s.records);
    eprintln!(
        "8 threads x 40 appends on real files: {} batches, {} fsyncs",
        s.batches, s.syncs
    );
    for t in 0..8u64 {
        let expected: Vec<Vec<u8>> = (0..40).map(|i| format!("{t}:{i}").into_bytes()).collect();
        assert_eq!(replay_all(&sstable::RealFs, dir.path(), t), expected);
    }
}

#[test]
fn a_leader_that_panics_fails_its_followers_instead_of_hanging_them() {
    let (fs, log, handles) = leader_parked_with_followers(4);
    fs.gate.panic_next.store(true, Ordering::SeqCst);
    fs.gate.set_closed(false);
    let mut handles = handles.into_iter();
    let leader = handles.next().unwrap().join();
    assert!(leader.is_err(), "the leader's thread panicked");
    for h in handles {
        assert!(
            h.join().unwrap().is_err(),
            "a follower must get an error, not Ok"
        );
    }
    assert!(log.has_failed());
    assert!(log.append(1, b"later").is_err());
}
