//! The commit log: one append-only log per tablet server, shared by all its tablets
//! (Bigtable section 6, "Commit-log implementation").
//!
//! Every write of every tablet the server holds is appended here, tagged with its
//! [`TabletId`], before it is applied to the memtable and acknowledged. One log per server
//! (rather than per tablet) turns many small random writes into one sequential stream, and
//! **group commit** turns many concurrent fsyncs into one.
//!
//! ## Layout
//!
//! The log is a directory of segment files `<dir>/<segment:020>.log`, each a record log
//! ([`sstable::log`]) opening with a header record; every other record is
//! `tablet id (u64 LE) ++ payload` (see the `segment` module and `docs/format/commitlog.md`). A
//! [`LogPosition`] (segment number, byte offset) names a record boundary.
//!
//! ## Protocol
//!
//! - [`CommitLog::open`] always starts a **new** segment numbered after every existing one
//!   and never appends to an old segment: an old segment may end in a torn tail, and a
//!   record appended after it would turn the tail into mid-log corruption. The new file's
//!   header is fsynced and its directory entry fsynced before anything is appended.
//! - [`CommitLog::append`] queues the record. The first caller that finds no leader
//!   becomes the leader: it takes every queued record, writes them with one file append
//!   and one fsync (without holding the lock), then publishes each record's position and
//!   wakes the followers (LevelDB's writer queue). Records queued meanwhile form the next
//!   batch. [`CommitLog::append_many`] queues several records under one ticket: they land
//!   consecutively in one batch and their caller is woken once.
//! - When the current segment has passed `segment_bytes`, the next batch first **rolls**
//!   to a new segment (create, header, fsync, directory fsync).
//! - [`CommitLog::delete_segments_before`] removes segments no tablet needs any more (the
//!   caller decides, from the redo points in the tablets' manifests: a tablet server does
//!   it for its own log in `server::log_gc`; the master's garbage collector deletes a dead
//!   server's whole log directory once no manifest references it).
//!
//! ## Invariants
//!
//! - `append` returns `Ok` only after the record's bytes are durable (`sync: true`) or
//!   handed to the operating system (`sync: false`).
//! - **Fail stop**: if a write, fsync or roll fails, the log is poisoned. Every caller in
//!   that batch, every queued caller and every later caller gets an error; `sync` is never
//!   called again (after a failed fsync Linux may have dropped the dirty pages and would
//!   report success for a retry). Recovery reopens the directory as a new log.
//! - Positions are handed out in append order; [`CommitLog::position`] is never ahead of
//!   an acknowledged record, so it is a safe redo point.
//!
//! ## Caveats
//!
//! - With `sync: false` a power cut can lose acknowledged records and can leave a redo
//!   point past the end of its segment; recovery then finds less than it expects.
//! - A batch is unbounded: under a flood of writers it can grow past `segment_bytes`.

mod segment;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, MutexGuard};
use sstable::log::LogWriter;
use sstable::{Error, Fs, Result};

pub use segment::{
    encode_entry, encode_header, list_segments, parse_segment_name, replay_segment, segment_path,
    valid_end, ENTRY_PREFIX, HEADER_LEN, SEGMENT_MAGIC, SEGMENT_VERSION,
};

/// Identifies a tablet within its server's commit log.
pub type TabletId = u64;

/// A record boundary in a server's commit log: a byte offset in a numbered segment.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct LogPosition {
    /// The segment's number (its file name).
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
}

/// How a commit log writes.
#[derive(Clone, Debug)]
pub struct CommitLogOptions {
    /// A segment that has grown past this size is closed before the next batch.
    pub segment_bytes: u64,
    /// Fsync every batch before acknowledging it (false: only hand it to the OS).
    pub sync: bool,
    /// Largest record (tablet id + payload) accepted, and read back at recovery.
    pub max_record: usize,
}

impl Default for CommitLogOptions {
    fn default() -> Self {
        CommitLogOptions {
            segment_bytes: 64 << 20,
            sync: true,
            max_record: 80 << 20,
        }
    }
}

/// What the log has done since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitLogStats {
    /// Records acknowledged.
    pub records: u64,
    /// Batches written (each one append and, with `sync`, one fsync).
    pub batches: u64,
    /// Fsyncs of segment files (batches, new segment headers, rolls).
    pub syncs: u64,
    /// Bytes appended to segment files, framing included.
    pub bytes: u64,
    /// Segments this log created (the first one included).
    pub segments_created: u64,
    /// Records queued right now, waiting for a leader.
    pub queued: u64,
    /// The most records one batch held.
    pub max_batch: u64,
}

/// One server's commit log. `Send + Sync`: share it in an `Arc`.
pub struct CommitLog {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    opts: CommitLogOptions,
    shared: Mutex<Shared>,
    /// Signalled when a batch finishes.
    batch_done: Condvar,
}

/// Everything behind the lock.
struct Shared {
    /// Records waiting for a leader, in ticket order.
    queue: Vec<(u64, Vec<u8>)>,
    next_ticket: u64,
    /// Outcomes of finished records, removed by their callers.
    results: HashMap<u64, std::result::Result<LogPosition, Failure>>,
    /// True while a leader writes a batch (it has taken `current`).
    leader: bool,
    /// The segment being appended to; `None` while a leader holds it, or after a failure.
    current: Option<Segment>,
    /// Where the next record will start (as of the last finished batch).
    position: LogPosition,
    /// Set by the first failure: the log accepts nothing more.
    failed: Option<Failure>,
    stats: CommitLogStats,
}

struct Segment {
    number: u64,
    writer: LogWriter,
}

/// A failure remembered so that every caller can be given an error like it.
#[derive(Clone, Debug)]
struct Failure {
    op: &'static str,
    path: String,
    os_code: Option<i32>,
    kind: io::ErrorKind,
    message: String,
}

impl Failure {
    fn new(e: &Error, dir: &Path) -> Failure {
        match e {
            Error::Io { op, path, source } => Failure {
                op,
                path: path.clone(),
                os_code: source.raw_os_error(),
                kind: source.kind(),
                message: source.to_string(),
            },
            other => Failure {
                op: "append",
                path: dir.display().to_string(),
                os_code: None,
                kind: io::ErrorKind::Other,
                message: other.to_string(),
            },
        }
    }

    fn to_error(&self) -> Error {
        let source = match self.os_code {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(self.kind, self.message.clone()),
        };
        Error::Io {
            op: self.op,
            path: self.path.clone(),
            source: io::Error::new(
                source.kind(),
                format!("commit log stopped: {} failed: {source}", self.op),
            ),
        }
    }
}

impl CommitLog {
    /// Creates `dir` if missing and starts a new segment numbered after any existing one.
    pub fn open(fs: Arc<dyn Fs>, dir: &Path, opts: CommitLogOptions) -> Result<CommitLog> {
        if opts.max_record <= ENTRY_PREFIX {
            return Err(Error::InvalidArgument(format!(
                "max_record {} leaves no room for a payload",
                opts.max_record
            )));
        }
        sstable::fs::create_dir_durably(&*fs, dir)?;
        let number = match list_segments(&*fs, dir)?.last() {
            None => 1,
            Some((n, path)) => n
                .checked_add(1)
                .ok_or_else(|| Error::corruption(path, 0, "segment number cannot be followed"))?,
        };
        let mut stats = CommitLogStats::default();
        let current = create_segment(&*fs, dir, number, &mut stats)?;
        let position = LogPosition {
            segment: number,
            offset: current.writer.offset(),
        };
        Ok(CommitLog {
            fs,
            dir: dir.to_owned(),
            opts,
            shared: Mutex::new(Shared {
                queue: Vec::new(),
                next_ticket: 0,
                results: HashMap::new(),
                leader: false,
                current: Some(current),
                position,
                failed: None,
                stats,
            }),
            batch_done: Condvar::new(),
        })
    }

    /// Appends one record for `tablet` and returns the position just past it, once it is
    /// durable (`sync`) or handed to the OS. Concurrent callers share one write and one
    /// fsync. After any failure of the log every call returns an error.
    pub fn append(&self, tablet: TabletId, payload: &[u8]) -> Result<LogPosition> {
        self.append_many(tablet, &[payload])
    }

    /// Appends `payloads` for `tablet` as consecutive records, in order, and returns the
    /// position just past the last one, once all are durable (`sync`) or handed to the OS.
    /// They are written in one batch (with whatever other callers queued), so one caller
    /// with many records waits for one fsync and one wake-up instead of one per record.
    /// Every record is checked against `max_record` before anything is queued.
    pub fn append_many(&self, tablet: TabletId, payloads: &[&[u8]]) -> Result<LogPosition> {
        if payloads.is_empty() {
            return Err(Error::InvalidArgument("append of no records".into()));
        }
        for payload in payloads {
            if ENTRY_PREFIX + payload.len() > self.opts.max_record {
                return Err(Error::InvalidArgument(format!(
                    "commit-log record of {} bytes exceeds the limit of {}",
                    ENTRY_PREFIX + payload.len(),
                    self.opts.max_record
                )));
            }
        }
        let records: Vec<Vec<u8>> = payloads.iter().map(|p| encode_entry(tablet, p)).collect();
        let mut g = self.shared.lock();
        if let Some(f) = &g.failed {
            return Err(f.to_error());
        }
        let ticket = g.next_ticket;
        g.next_ticket += 1;
        // One ticket for all: the leader publishes each record's end under the ticket in
        // queue order, so the last one (the end of the last record) is what stays.
        g.stats.queued += records.len() as u64;
        g.queue.extend(records.into_iter().map(|r| (ticket, r)));
        loop {
            if let Some(result) = g.results.remove(&ticket) {
                return result.map_err(|f| f.to_error());
            }
            if !g.leader {
                self.lead_one_batch(&mut g);
                continue;
            }
            self.batch_done.wait(&mut g);
        }
    }

    /// Takes every queued record, writes it without the lock, and publishes the outcome.
    fn lead_one_batch(&self, g: &mut MutexGuard<'_, Shared>) {
        let Some(segment) = g.current.take() else {
            // Only after a failure (which failed the queue too); never leave a caller behind.
            let failure = g.failed.clone().expect("no segment only after a failure");
            poison(g, failure);
            return;
        };
        let batch = std::mem::take(&mut g.queue);
        g.stats.queued = 0;
        g.leader = true;
        let mut stats = CommitLogStats::default();
        let (segment, outcome) = MutexGuard::unlocked(g, || {
            // Dropped during a panic while the lock is released: poisons and wakes all.
            let mut guard = LeaderGuard {
                log: self,
                armed: true,
            };
            let records: Vec<&[u8]> = batch.iter().map(|(_, r)| r.as_slice()).collect();
            let out = self.write_batch(segment, &records, &mut stats);
            guard.armed = false;
            out
        });
        g.leader = false;
        add_stats(&mut g.stats, &stats);
        match outcome {
            Ok(positions) => {
                g.stats.records += batch.len() as u64;
                g.stats.max_batch = g.stats.max_batch.max(batch.len() as u64);
                if let Some(seg) = &segment {
                    g.position = LogPosition {
                        segment: seg.number,
                        offset: seg.writer.offset(),
                    };
                }
                for ((ticket, _), pos) in batch.iter().zip(positions) {
                    g.results.insert(*ticket, Ok(pos));
                }
                g.current = segment;
            }
            Err(e) => {
                let failure = Failure::new(&e, &self.dir);
                tracing::error!(dir = %self.dir.display(), error = %e, "commit log failed; it accepts no more writes");
                for (ticket, _) in &batch {
                    g.results.insert(*ticket, Err(failure.clone()));
                }
                poison(g, failure);
            }
        }
        self.batch_done.notify_all();
    }

    /// Writes one batch: rolls first if the segment is full, then one append and one
    /// fsync (or flush). Returns the segment (`None` if a roll left none) and each
    /// record's end position.
    fn write_batch(
        &self,
        mut segment: Segment,
        records: &[&[u8]],
        stats: &mut CommitLogStats,
    ) -> (Option<Segment>, Result<Vec<LogPosition>>) {
        if segment.writer.offset() >= self.opts.segment_bytes {
            segment = match self.roll(segment, stats) {
                Ok(s) => s,
                Err(e) => return (None, Err(e)),
            };
        }
        let before = segment.writer.offset();
        let result = segment.writer.add_records(records).and_then(|ends| {
            if self.opts.sync {
                segment.writer.sync()?;
                stats.syncs += 1;
            } else {
                segment.writer.flush()?;
            }
            Ok(ends)
        });
        stats.bytes += segment.writer.offset() - before;
        stats.batches += 1;
        let number = segment.number;
        let positions = result.map(|ends| {
            ends.into_iter()
                .map(|offset| LogPosition {
                    segment: number,
                    offset,
                })
                .collect()
        });
        (Some(segment), positions)
    }

    /// Closes `old` (syncing it when batches are not synced) and starts the next segment.
    fn roll(&self, mut old: Segment, stats: &mut CommitLogStats) -> Result<Segment> {
        if !self.opts.sync {
            old.writer.sync()?;
            stats.syncs += 1;
        }
        let next = old
            .number
            .checked_add(1)
            .ok_or_else(|| Error::InvalidArgument("commit-log segment numbers exhausted".into()))?;
        create_segment(&*self.fs, &self.dir, next, stats)
    }

    /// Where the next record will start: a redo point. Every acknowledged record ends at
    /// or before it.
    pub fn position(&self) -> LogPosition {
        self.shared.lock().position
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &CommitLogOptions {
        &self.opts
    }

    /// True once a write or fsync failed: every append now fails.
    pub fn has_failed(&self) -> bool {
        self.shared.lock().failed.is_some()
    }

    /// Deletes this log's segments numbered below `segment` (the caller knows no tablet
    /// needs them), then syncs the directory; returns how many it deleted. `segment` may
    /// not pass the current one. Idempotent: a crash part way leaves a prefix deleted.
    pub fn delete_segments_before(&self, segment: u64) -> Result<usize> {
        let current = self.position().segment;
        if segment > current {
            return Err(Error::InvalidArgument(format!(
                "cannot delete segments before {segment}: the log is writing segment {current}"
            )));
        }
        let mut removed = 0;
        for (number, path) in list_segments(&*self.fs, &self.dir)? {
            if number < segment {
                self.fs.remove_file(&path)?;
                removed += 1;
            }
        }
        if removed > 0 {
            self.fs.sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Statistics since the log was opened.
    pub fn stats(&self) -> CommitLogStats {
        self.shared.lock().stats
    }
}

impl Drop for CommitLog {
    fn drop(&mut self) {
        // Hand buffered bytes to the OS (they are acknowledged when `sync` is off).
        let g = self.shared.get_mut();
        if let Some(seg) = g.current.as_mut() {
            if let Err(e) = seg.writer.flush() {
                tracing::warn!(dir = %self.dir.display(), error = %e, "commit log flush at close failed");
            }
        }
    }
}

/// Marks the log failed and fails every queued caller.
fn poison(g: &mut Shared, failure: Failure) {
    for (ticket, _) in std::mem::take(&mut g.queue) {
        g.results.insert(ticket, Err(failure.clone()));
    }
    g.stats.queued = 0;
    g.current = None;
    g.failed.get_or_insert(failure);
}

/// If a leader panics while writing, poisons the log and wakes everyone, so no follower
/// waits forever.
struct LeaderGuard<'a> {
    log: &'a CommitLog,
    armed: bool,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut g = self.log.shared.lock();
            g.leader = false;
            let failure = Failure {
                op: "append",
                path: self.log.dir.display().to_string(),
                os_code: None,
                kind: io::ErrorKind::Other,
                message: "the writing thread panicked".into(),
            };
            poison(&mut g, failure);
            self.log.batch_done.notify_all();
        }
    }
}

fn add_stats(total: &mut CommitLogStats, batch: &CommitLogStats) {
    total.batches += batch.batches;
    total.syncs += batch.syncs;
    total.bytes += batch.bytes;
    total.segments_created += batch.segments_created;
}

/// Creates segment `number` in `dir`: header record, fsync, directory fsync. Once this
/// returns, the segment survives a power cut with its header.
fn create_segment(
    fs: &dyn Fs,
    dir: &Path,
    number: u64,
    stats: &mut CommitLogStats,
) -> Result<Segment> {
    let path = segment_path(dir, number);
    if fs.exists(&path) {
        return Err(Error::InvalidArgument(format!(
            "commit-log segment {} already exists",
            path.display()
        )));
    }
    let mut writer = LogWriter::new(fs.create(&path)?);
    writer.add_record(&encode_header(number))?;
    writer.sync()?;
    fs.sync_dir(dir)?;
    stats.syncs += 1;
    stats.bytes += writer.offset();
    stats.segments_created += 1;
    Ok(Segment { number, writer })
}
