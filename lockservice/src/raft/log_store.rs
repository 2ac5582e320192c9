//! The Raft log and vote of one replica, durable on its own disk.
//!
//! ## Files
//!
//! `<data>/raft/log-NNNNNN` (the highest `N` is current) in the record-log format of
//! `sstable::log` (docs/format/log.md). Each record is one postcard-encoded [`LogRecord`]:
//!
//! ```text
//! Vote(vote)        // the vote as of this point
//! Entry(entry)      // a log entry appended (replaces any entry with that index)
//! Truncate(index)   // entries with index >= index removed (a conflicting suffix)
//! Purge(log_id)     // entries with index <= log_id.index removed (they are in a snapshot)
//! ```
//!
//! Replaying the records in order rebuilds the vote, the purge point and the entries. When
//! purged or truncated records outnumber live entries (and number at least 64), the file
//! is rewritten compactly
//! (vote, purge point, live entries) as `log-(N+1).tmp`, synced, renamed to `log-(N+1)`,
//! the directory synced, and `log-N` removed. A crash at any point leaves either the old or
//! the new complete file as the highest-numbered one.
//!
//! ## Preallocation
//!
//! Every log file is made with 1 MiB of zeros after its records (`PREALLOC`), written
//! and fsynced before the file is renamed into place, and records are written over those
//! zeros in place (`Fs::open_at`). An fdatasync then flushes only data blocks: a file that
//! grows with every append also needs a journal commit for its new length, which made each
//! fsync about twice as slow on this project's machines (86 vs 55 µs, 165 vs 80 µs measured
//! with a 200-byte append loop), and every Raft write waits for the leader's fsync and a
//! follower's (overlapped: `raft::followers`). etcd's WAL preallocates its segments the
//! same way. When the next records would not fit in the zeros, the store moves to `log-(N+1)` as above,
//! with room for them and another 1 MiB.
//!
//! The record log reads zeros where a record should start as the clean end
//! (docs/format/log.md), so the zeros need no marker, and a crash that loses an unsynced
//! write leaves zeros there. Replay continues writing right after the last complete record,
//! over the zeros; a torn tail (bytes of an unsynced write that are not zeros) is cut off
//! first, so the file is then full and the next write moves to a new file.
//!
//! ## Durability
//!
//! `append` writes the entries and fsyncs before calling openraft's `log_io_completed`;
//! `save_vote` fsyncs before returning. After any failed write or fsync the writer refuses
//! every later call (`sstable::log` enforces it) and the store reports a storage error,
//! which stops the Raft node: a failed fsync is never retried and trusted.
//!
//! ## Reads
//!
//! All entries since the last purge are kept in memory and served from there. The disk is
//! read only at start-up, where a torn tail (a crash mid-append; never acknowledged) is cut
//! off and any other damage refuses to start with `Error::Corruption`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, LogId, RaftLogReader, StorageError, StorageIOError, Vote};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use sstable::log::{LogReader, LogWriter};
use sstable::Fs;

use super::followers::Followers;
use super::{decode, encode, Entry, NodeId, TypeConfig};
use crate::error::{Error, Result};

/// Largest record accepted when reading the log back (an entry holds at most 256 KiB of
/// content plus framing; membership entries are small).
const MAX_RECORD: usize = 4 << 20;
/// Rewrite the file when it holds this many dead records and more dead than live ones.
const REWRITE_MIN_DEAD: usize = 64;
/// Zeros written after the records of a new log file, for later records to overwrite (see
/// "Preallocation" in the module doc).
const PREALLOC: u64 = 1 << 20;

/// One record of the log file.
#[derive(Debug, Serialize, Deserialize)]
pub enum LogRecord {
    /// The vote as of this point.
    Vote(Vote<NodeId>),
    /// An appended entry.
    Entry(Entry),
    /// Entries with index >= this were removed.
    Truncate(u64),
    /// Entries up to this log id were removed (they are in a snapshot).
    Purge(LogId<NodeId>),
}

#[derive(Default)]
struct Mem {
    vote: Option<Vote<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
    entries: BTreeMap<u64, Entry>,
}

struct File {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    number: u64,
    writer: LogWriter,
    /// The file's length: records past it would grow the file.
    allocated: u64,
    /// Zeros to write after the records of the next file ([`PREALLOC`]).
    prealloc: u64,
    /// Records in the current file that no longer describe a live entry.
    dead: usize,
}

/// The log store of one replica. Clones share the same log (the clone is the reader that
/// replication tasks use).
#[derive(Clone)]
pub struct LogStore {
    mem: Arc<RwLock<Mem>>,
    file: Arc<Mutex<File>>,
    /// Write and fsync on a blocking-pool thread ([`LogStore::io_off_runtime`]).
    off_runtime: bool,
    /// This replica's id, when [`LogStore::with_followers`] named it.
    me: Option<NodeId>,
    flush: Arc<FlushClock>,
    /// Where a leader's new entries are sent early ([`LogStore::with_followers`]).
    followers: Option<Arc<Followers>>,
}

/// Since when an append's write and fsync have been running, if one is (openraft's core
/// waits for it; see `server::stall`).
#[derive(Debug, Default)]
pub struct FlushClock(super::stamp::Stamp);

impl FlushClock {
    /// How long the running append has taken so far; `None` when none runs.
    pub fn pending_for(&self) -> Option<std::time::Duration> {
        self.0.age()
    }

    fn begin(&self) -> FlushRunning<'_> {
        self.0.set_now();
        FlushRunning(self)
    }
}

/// Clears the [`FlushClock`] when the append ends (or fails).
struct FlushRunning<'a>(&'a FlushClock);

impl Drop for FlushRunning<'_> {
    fn drop(&mut self) {
        self.0 .0.clear();
    }
}

fn file_name(n: u64) -> String {
    format!("log-{n:06}")
}

fn parse_name(name: &str) -> Option<u64> {
    name.strip_prefix("log-")?.parse().ok()
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, replaying it into memory.
    pub fn open(fs: Arc<dyn Fs>, dir: &Path) -> Result<LogStore> {
        Self::open_with(fs, dir, PREALLOC)
    }

    /// [`LogStore::open`] with `prealloc` bytes of zeros after the records of each new
    /// file (tests use a few hundred bytes to move between files often).
    fn open_with(fs: Arc<dyn Fs>, dir: &Path, prealloc: u64) -> Result<LogStore> {
        // A power cut before the directory's entry is durable would drop the vote and the
        // acknowledged log with it (found by tests/sim.rs, seed 1).
        sstable::fs::create_dir_durably(&*fs, dir)?;
        let mut numbers = Vec::new();
        for name in fs.list_dir(dir)? {
            if name.ends_with(".tmp") {
                fs.remove_file(&dir.join(&name))?;
            } else if let Some(n) = parse_name(&name) {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        let number = numbers.last().copied().unwrap_or(1);
        for old in &numbers[..numbers.len().saturating_sub(1)] {
            fs.remove_file(&dir.join(file_name(*old)))?;
        }
        let path = dir.join(file_name(number));
        let mut mem = Mem::default();
        let (writer, allocated, records) = if fs.exists(&path) {
            let (records, end) = replay(&*fs, &path, &mut mem)?;
            let writer = LogWriter::new(fs.open_at(&path, end)?);
            (writer, fs.file_size(&path)?, records)
        } else {
            let (writer, allocated) = write_file(&*fs, &path, &[], prealloc)?;
            (writer, allocated, 0)
        };
        let dead = records.saturating_sub(mem.entries.len());
        let file = File {
            fs,
            dir: dir.to_owned(),
            number,
            writer,
            allocated,
            prealloc,
            dead,
        };
        Ok(LogStore {
            mem: Arc::new(RwLock::new(mem)),
            file: Arc::new(Mutex::new(file)),
            off_runtime: false,
            me: None,
            flush: Arc::default(),
            followers: None,
        })
    }

    /// Does the writes and fsyncs on tokio's blocking pool, so that the runtime's threads
    /// (one, in `quarry lock-server`) go on serving RPCs and replication while the disk
    /// works. Not under a paused clock (the simulation), which would advance time while
    /// the fsync runs.
    ///
    /// Except a follower's appends (entries another leader made, once
    /// [`LogStore::with_followers`] named this replica) that fit in the current file:
    /// they run on the caller's thread. A follower's openraft core waits for that fsync
    /// before it answers anything anyway, the answer is what the leader waits for (the
    /// critical path since the leader replicates early), and the two thread switches of
    /// a blocking-pool task were about a tenth of a write there (1-client p50 1.67-1.76 →
    /// 1.50-1.60 ms, 8 clients 2 327-2 489 → 2 445-2 849 cycles/s, interleaved). The
    /// follower's other RPCs wait for the fsync, as they wait for its core; its failure
    /// detector, which shares the thread, cannot fire meanwhile (the safe direction). A
    /// move to a new file (several fsyncs and a megabyte of zeros) stays on the pool.
    pub fn io_off_runtime(mut self) -> LogStore {
        self.off_runtime = true;
        self
    }

    /// Whether `entries` are a follower's to append (made by a leader other than this
    /// replica, when its id is known).
    fn follows(&self, entries: &[Entry]) -> bool {
        match (self.me, entries.first()) {
            (Some(me), Some(e)) => e.log_id.leader_id.node_id != me,
            _ => false,
        }
    }

    /// Sends the entries replica `me` appends as leader to its followers before its own
    /// fsync (see `raft::followers`).
    ///
    /// A follower may then hold an entry durably that the leader lost in a crash, so this
    /// replica must never resume leadership of the term it had before a restart:
    /// `read_vote` (called by openraft only at start-up) reports this replica's own
    /// committed vote as not committed, so openraft starts it as a follower, and it leads
    /// again only after winning a new term (the module doc of `raft::followers`).
    pub fn with_followers(mut self, me: NodeId, followers: Arc<Followers>) -> LogStore {
        self.me = Some(me);
        self.followers = Some(followers);
        self
    }

    /// The clock of the running append (shared with every clone).
    pub fn flush_clock(&self) -> Arc<FlushClock> {
        self.flush.clone()
    }

    /// The persisted vote (for tests and status).
    pub fn vote(&self) -> Option<Vote<NodeId>> {
        self.mem.read().vote
    }

    /// Index of the last entry in the log, if any.
    pub fn last_index(&self) -> Option<u64> {
        let m = self.mem.read();
        m.entries
            .keys()
            .next_back()
            .copied()
            .or(m.last_purged.map(|l| l.index))
    }

    /// The log id of the entry before `index` (`Some(None)` before the first entry; the
    /// purge point's; `None` if this log does not know it).
    fn log_id_before(&self, index: u64) -> Option<Option<LogId<NodeId>>> {
        let Some(prev) = index.checked_sub(1) else {
            return Some(None);
        };
        let m = self.mem.read();
        match m.entries.get(&prev) {
            Some(e) => Some(Some(e.log_id)),
            None => m.last_purged.filter(|p| p.index == prev).map(Some),
        }
    }

    /// Writes `records` with one append and one fsync, first moving to a new file when
    /// they would not fit in the current one's zeros.
    fn write(&self, records: &[LogRecord]) -> Result<()> {
        self.write_moving(records, true).map(|_| ())
    }

    /// Writes `records` as [`LogStore::write`] does, unless they would need a move to a
    /// new file and `may_move` is false: then nothing is written and the answer is
    /// `false`.
    fn write_moving(&self, records: &[LogRecord], may_move: bool) -> Result<bool> {
        let encoded: Vec<Vec<u8>> = records.iter().map(encode).collect();
        let mut f = self.file.lock();
        let need = framed_bound(&encoded);
        if f.writer.offset() + need > f.allocated {
            if !may_move {
                return Ok(false);
            }
            self.rewrite(&mut f, need)?;
        }
        let parts: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        f.writer.add_records(&parts)?;
        f.writer.sync()?;
        Ok(true)
    }

    /// Makes `entries` readable and durable (`append` without openraft's callback), on
    /// this thread when a follower appends them (see [`LogStore::io_off_runtime`]).
    async fn append_entries(&self, entries: Vec<Entry>) -> Result<()> {
        let here = self.follows(&entries);
        {
            let mut m = self.mem.write();
            for e in &entries {
                m.entries.insert(e.log_id.index, e.clone());
            }
        }
        let records: Vec<LogRecord> = entries.into_iter().map(LogRecord::Entry).collect();
        if here && self.write_moving(&records, false)? {
            return Ok(());
        }
        self.write_io(records).await
    }

    /// [`LogStore::write`], on the blocking pool when [`LogStore::io_off_runtime`] was
    /// chosen.
    async fn write_io(&self, records: Vec<LogRecord>) -> Result<()> {
        self.io(move |s| s.write(&records)).await
    }

    /// Runs `f` (file writes and fsyncs) on the blocking pool when
    /// [`LogStore::io_off_runtime`] was chosen, else here.
    async fn io<T: Send + 'static>(
        &self,
        f: impl FnOnce(&LogStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let me = self.clone();
        super::run_io(self.off_runtime, "raft log writer", move || f(&me)).await
    }

    /// Rewrites the file compactly when dead records dominate it.
    fn maybe_rewrite(&self) -> Result<()> {
        let mut f = self.file.lock();
        let live = self.mem.read().entries.len();
        if f.dead < REWRITE_MIN_DEAD || f.dead < live {
            return Ok(());
        }
        self.rewrite(&mut f, 0)
    }

    /// Moves to `log-(N+1)`: the live state (vote, purge point, entries) and room for
    /// `room` more bytes of records.
    fn rewrite(&self, f: &mut File, room: u64) -> Result<()> {
        let t0 = std::time::Instant::now();
        let mut records = Vec::new();
        {
            let m = self.mem.read();
            records.extend(m.vote.map(LogRecord::Vote));
            records.extend(m.last_purged.map(LogRecord::Purge));
            records.extend(m.entries.values().cloned().map(LogRecord::Entry));
        }
        let next = f.number + 1;
        let path = f.dir.join(file_name(next));
        let (writer, allocated) = write_file(&*f.fs, &path, &records, room + f.prealloc)?;
        let old = f.dir.join(file_name(f.number));
        f.writer = writer;
        f.allocated = allocated;
        f.number = next;
        f.dead = 0;
        f.fs.remove_file(&old)?;
        f.fs.sync_dir(&f.dir)?;
        tracing::info!(
            path = %path.display(),
            records = records.len(),
            bytes = allocated,
            ms = t0.elapsed().as_millis() as u64,
            "raft log moved to a new file"
        );
        Ok(())
    }
}

/// An upper bound of the bytes `records` take in the record log: each fragment's header,
/// a fragment per block crossed, and a block trailer.
fn framed_bound(records: &[Vec<u8>]) -> u64 {
    let block = sstable::log::BLOCK_SIZE as u64;
    let header = sstable::log::HEADER_SIZE as u64;
    records
        .iter()
        .map(|r| {
            let len = r.len() as u64;
            len + header * (len / (block - header) + 2) + header
        })
        .sum()
}

/// Makes the log file `path`: `records`, then `zeros` bytes of zeros, written to
/// `path.tmp`, fsynced, renamed, and the directory fsynced. Returns a writer placed after
/// the records, and the file's length.
fn write_file(
    fs: &dyn Fs,
    path: &Path,
    records: &[LogRecord],
    zeros: u64,
) -> Result<(LogWriter, u64)> {
    let tmp = sstable::fs::tmp_path(path);
    let mut w = LogWriter::new(fs.create(&tmp)?);
    let encoded: Vec<Vec<u8>> = records.iter().map(encode).collect();
    let parts: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    w.add_records(&parts)?;
    let end = w.offset();
    w.sync()?;
    drop(w);
    let mut z = fs.open_append(&tmp)?;
    let chunk = vec![0u8; 64 << 10];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(chunk.len() as u64);
        z.append(&chunk[..n as usize])?;
        left -= n;
    }
    z.sync()?;
    drop(z);
    fs.rename(&tmp, path)?;
    fs.sync_dir(sstable::fs::parent_dir(path))?;
    Ok((LogWriter::new(fs.open_at(path, end)?), end + zeros))
}

/// Replays one log file into `mem`; returns the number of records and the offset after
/// the last complete one, where later records go. A torn tail is cut off (durably); a
/// zero tail (the file's preallocated zeros, or a crash after the file grew but before its
/// bytes were written) is kept and overwritten.
fn replay(fs: &dyn Fs, path: &Path, mem: &mut Mem) -> Result<(usize, u64)> {
    let file = fs.open(path)?;
    let mut reader = LogReader::new(file, 0, None, MAX_RECORD);
    let mut n = 0;
    while let Some(bytes) = reader.next_record()? {
        let offset = reader.record_offset();
        let rec: LogRecord =
            decode(&bytes, "raft log record").map_err(|what| Error::Corruption {
                file: path.display().to_string(),
                offset,
                what,
            })?;
        n += 1;
        match rec {
            LogRecord::Vote(v) => mem.vote = Some(v),
            LogRecord::Entry(e) => {
                mem.entries.insert(e.log_id.index, e);
            }
            LogRecord::Truncate(i) => {
                mem.entries.split_off(&i);
            }
            LogRecord::Purge(id) => {
                mem.entries = mem.entries.split_off(&(id.index + 1));
                mem.last_purged = Some(id);
            }
        }
    }
    // Later records must follow the last complete one, or the next replay would find them
    // after a hole. A torn tail is cut so that its bytes cannot outlive a shorter record
    // written over them.
    if let Some(end) = reader.torn_tail() {
        tracing::warn!(path = %path.display(), offset = end, "cutting a torn tail off the raft log");
        fs.truncate(path, end)?;
        return Ok((n, end));
    }
    Ok((n, reader.end_offset()))
}

fn io_err(e: Error) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::error(e.to_string())).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<Entry>, StorageError<NodeId>> {
        let m = self.mem.read();
        Ok(m.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(
        &mut self,
    ) -> std::result::Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let m = self.mem.read();
        let last = m.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: m.last_purged,
            last_log_id: last.or(m.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(
        &mut self,
        vote: &Vote<NodeId>,
    ) -> std::result::Result<(), StorageError<NodeId>> {
        self.write_io(vec![LogRecord::Vote(*vote)])
            .await
            .map_err(|e| {
                StorageError::from(StorageIOError::write_vote(AnyError::error(e.to_string())))
            })?;
        self.mem.write().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(
        &mut self,
    ) -> std::result::Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        let vote = self.mem.read().vote;
        Ok(vote.map(|v| match self.me {
            // Never resume leadership of the same term (see `with_followers`).
            Some(me) if v.is_committed() && v.leader_id().node_id == me => {
                tracing::info!(vote = %v, "restarting as a follower of my own last term");
                Vote::new(v.leader_id().term, me)
            }
            _ => v,
        }))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> std::result::Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let ours = !self.follows(&entries);
        if let (Some(followers), Some(first), true) = (&self.followers, entries.first(), ours) {
            if let Some(prev) = self.log_id_before(first.log_id.index) {
                followers.send_early(prev, &entries);
            }
        }
        let running = self.flush.begin();
        let appended = self.append_entries(entries).await;
        drop(running);
        match appended {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "raft log append failed: stopping");
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io_err(e))
            }
        }
    }

    async fn truncate(
        &mut self,
        log_id: LogId<NodeId>,
    ) -> std::result::Result<(), StorageError<NodeId>> {
        self.write_io(vec![LogRecord::Truncate(log_id.index)])
            .await
            .map_err(io_err)?;
        let removed = self.mem.write().entries.split_off(&log_id.index).len();
        self.file.lock().dead += removed + 1;
        Ok(())
    }

    async fn purge(
        &mut self,
        log_id: LogId<NodeId>,
    ) -> std::result::Result<(), StorageError<NodeId>> {
        self.write_io(vec![LogRecord::Purge(log_id)])
            .await
            .map_err(io_err)?;
        let removed = {
            let mut m = self.mem.write();
            let keep = m.entries.split_off(&(log_id.index + 1));
            let removed = m.entries.len();
            m.entries = keep;
            m.last_purged = Some(log_id);
            removed
        };
        self.file.lock().dead += removed + 1;
        self.io(|s| s.maybe_rewrite()).await.map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};
    use sstable::RealFs;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    /// Under `io_off_runtime`, a follower's append fsyncs on the caller's thread, the
    /// leader's own append and a vote on another one.
    #[test]
    fn only_a_followers_appends_fsync_on_the_callers_thread() {
        let threads = Arc::new(Mutex::new(Vec::new()));
        let t2 = threads.clone();
        let hook = Arc::new(move || t2.lock().push(std::thread::current().id()));
        let fs: Arc<dyn Fs> = Arc::new(sstable::fault::SyncHookFs::new(RealFs::shared(), hook));
        let d = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let caller = std::thread::current().id();
        let followers = Arc::new(Followers::new(std::time::Duration::from_millis(40)));
        let s = LogStore::open_with(fs, d.path(), 300)
            .unwrap()
            .io_off_runtime()
            .with_followers(1, followers);
        let fsyncs = |what: &str, f: &dyn Fn() -> Result<()>| {
            threads.lock().clear();
            f().unwrap();
            let seen = std::mem::take(&mut *threads.lock());
            assert!(!seen.is_empty(), "{what}: no fsync");
            seen.iter().all(|t| *t == caller)
        };
        let other = |leader: NodeId, index: u64| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, leader), index),
            payload: EntryPayload::Blank,
        };
        assert!(fsyncs("follower", &|| rt
            .block_on(s.append_entries(vec![other(2, 1)]))));
        assert!(!fsyncs("leader", &|| rt
            .block_on(s.append_entries(vec![other(1, 2)]))));
        assert!(!fsyncs("vote", &|| {
            rt.block_on(s.clone().save_vote(&vote(2)))
                .map_err(|e| Error::Storage(e.to_string()))
        }));
    }

    /// On one runtime thread, the log's writes and fsyncs (appends, a vote, a move to a
    /// new file) leave that thread free: each fsync here waits for a task on it.
    #[test]
    fn log_fsyncs_leave_a_one_thread_runtime_free() {
        let (rt, fs, feeder) = crate::raft::test_fs::fs_needing_the_runtime();
        let d = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let _feeder = tokio::spawn(feeder);
            // Opening fsyncs from the caller (once, before serving): let the feeder run.
            let dir = d.path().to_owned();
            let s = tokio::task::spawn_blocking(move || LogStore::open_with(fs, &dir, 300))
                .await
                .unwrap()
                .unwrap()
                .io_off_runtime();
            let mut s2 = s.clone();
            s2.save_vote(&vote(2)).await.unwrap();
            for i in 1..=20 {
                s.append_entries(vec![entry(1, i)]).await.unwrap();
            }
            assert_eq!(s.last_index(), Some(20));
            assert_eq!(s.vote(), Some(vote(2)));
        });
    }

    fn write_records(dir: &Path, n: u64, records: &[LogRecord]) {
        std::fs::create_dir_all(dir).unwrap();
        let f = RealFs.create(&dir.join(file_name(n))).unwrap();
        let mut w = LogWriter::new(f);
        for r in records {
            w.add_record(&encode(r)).unwrap();
        }
        w.sync().unwrap();
    }

    async fn entries(s: &mut LogStore) -> Vec<(u64, u64)> {
        let all = s.try_get_log_entries(0..u64::MAX).await.unwrap();
        all.iter()
            .map(|e| (e.log_id.leader_id.term, e.log_id.index))
            .collect()
    }

    fn vote(term: u64) -> Vote<NodeId> {
        Vote::new(term, 2)
    }

    /// A replica that sends early never resumes leadership of its last term after a
    /// restart: its own committed vote is read back not committed; anyone else's vote,
    /// and every vote of a store that does not send early, is read back as written.
    #[tokio::test]
    async fn an_own_committed_vote_is_read_back_uncommitted_when_sending_early() {
        let d = tempfile::tempdir().unwrap();
        let fs = RealFs::shared();
        let followers = || Arc::new(Followers::new(std::time::Duration::from_millis(40)));
        let mut s = LogStore::open(fs.clone(), d.path()).unwrap();
        s.save_vote(&Vote::new_committed(3, 1)).await.unwrap();
        drop(s);
        let read = |me: Option<NodeId>| {
            let s = LogStore::open(fs.clone(), d.path()).unwrap();
            let mut s = match me {
                Some(me) => s.with_followers(me, followers()),
                None => s,
            };
            async move { s.read_vote().await.unwrap() }
        };
        assert_eq!(read(Some(1)).await, Some(Vote::new(3, 1)), "its own");
        assert_eq!(
            read(Some(2)).await,
            Some(Vote::new_committed(3, 1)),
            "another's"
        );
        assert_eq!(
            read(None).await,
            Some(Vote::new_committed(3, 1)),
            "not sending early"
        );
        assert_eq!(
            LogStore::open(fs.clone(), d.path()).unwrap().vote(),
            Some(Vote::new_committed(3, 1)),
            "the file keeps what was written"
        );
    }

    #[tokio::test]
    async fn replay_applies_votes_entries_truncates_and_purges_in_order() {
        let d = tempfile::tempdir().unwrap();
        let mut recs = vec![LogRecord::Vote(vote(1))];
        recs.extend((1..=10).map(|i| LogRecord::Entry(entry(1, i))));
        recs.push(LogRecord::Truncate(6));
        recs.push(LogRecord::Vote(vote(2)));
        recs.extend((6..=8).map(|i| LogRecord::Entry(entry(2, i))));
        recs.push(LogRecord::Purge(entry(1, 3).log_id));
        write_records(d.path(), 1, &recs);
        let mut s = LogStore::open(RealFs::shared(), d.path()).unwrap();
        assert_eq!(s.vote(), Some(vote(2)));
        let want: Vec<(u64, u64)> = vec![(1, 4), (1, 5), (2, 6), (2, 7), (2, 8)];
        assert_eq!(entries(&mut s).await, want);
        let st = s.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id.map(|l| l.index), Some(3));
        assert_eq!(st.last_log_id.map(|l| l.index), Some(8));
    }

    #[tokio::test]
    async fn later_records_follow_the_last_complete_one_over_a_zero_tail() {
        let d = tempfile::tempdir().unwrap();
        let recs: Vec<_> = (1..=5).map(|i| LogRecord::Entry(entry(1, i))).collect();
        write_records(d.path(), 1, &recs);
        let path = d.path().join(file_name(1));
        let full = std::fs::metadata(&path).unwrap().len();
        // The file grew but its bytes never arrived: a zero tail reads as a clean end.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, &[0u8; 100]).unwrap();
        drop(f);
        let mut s = LogStore::open(RealFs::shared(), d.path()).unwrap();
        assert_eq!(entries(&mut s).await.len(), 5);
        // The vote record goes over the zeros, right after entry 5, in the same file.
        s.save_vote(&vote(3)).await.unwrap();
        drop(s);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), full + 100);
        let s = LogStore::open(RealFs::shared(), d.path()).unwrap();
        assert_eq!(s.vote(), Some(vote(3)));
        assert_eq!(s.last_index(), Some(5));
        assert_eq!(
            RealFs.list_dir(d.path()).unwrap(),
            vec![file_name(1)],
            "moved to a new file"
        );
    }

    #[tokio::test]
    async fn records_fill_the_zeros_in_place_then_move_to_a_new_file() {
        let d = tempfile::tempdir().unwrap();
        let fs = RealFs::shared();
        let s = LogStore::open_with(fs.clone(), d.path(), 300).unwrap();
        let first = d.path().join(file_name(1));
        assert_eq!(fs.file_size(&first).unwrap(), 300);
        for i in 1..=5 {
            s.append_entries(vec![entry(1, i)]).await.unwrap();
        }
        assert_eq!(fs.file_size(&first).unwrap(), 300, "the file grew");
        for i in 6..=40 {
            s.append_entries(vec![entry(1, i)]).await.unwrap();
        }
        let names = fs.list_dir(d.path()).unwrap();
        assert_eq!(names.len(), 1, "{names:?}");
        assert_ne!(names[0], file_name(1), "never moved to a new file");
        drop(s);
        let mut s = LogStore::open_with(fs, d.path(), 300).unwrap();
        let want: Vec<(u64, u64)> = (1..=40).map(|i| (1, i)).collect();
        assert_eq!(entries(&mut s).await, want);
    }

    /// Every acknowledged entry survives a power cut at any point, across moves to new
    /// files, and a torn write over the zeros is cut off without taking any of them.
    #[tokio::test]
    async fn power_cuts_keep_every_acknowledged_record_over_preallocated_zeros() {
        let fs = sstable::FaultFs::new();
        let dir = Path::new("/raft");
        let open = || LogStore::open_with(Arc::new(fs.clone()), dir, 200).unwrap();
        let mut s = open();
        for i in 1..=60u64 {
            s.append_entries(vec![entry(1, i)]).await.unwrap();
            if i % 7 == 0 {
                // Bytes that reached the disk unsynced: a torn write after the last record.
                let name = fs.list_dir(dir).unwrap().pop().unwrap();
                let end = s.file.lock().writer.offset();
                let mut w = fs.open_at(&dir.join(&name), end).unwrap();
                w.append(&[0xA5; 9]).unwrap();
                w.sync().unwrap();
            }
            if i % 5 == 0 || i % 7 == 0 {
                drop(s);
                fs.power_cut();
                s = open();
                let want: Vec<(u64, u64)> = (1..=i).map(|j| (1, j)).collect();
                assert_eq!(entries(&mut s).await, want, "after {i}");
            }
        }
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_off_and_later_records_follow_the_last_complete_one() {
        let d = tempfile::tempdir().unwrap();
        let recs: Vec<_> = (1..=5).map(|i| LogRecord::Entry(entry(1, i))).collect();
        write_records(d.path(), 1, &recs);
        let path = d.path().join(file_name(1));
        let full = std::fs::metadata(&path).unwrap().len();
        // Cut the last record in half (a crash mid-append).
        RealFs.truncate(&path, full - 5).unwrap();
        let mut s = LogStore::open(RealFs::shared(), d.path()).unwrap();
        assert_eq!(entries(&mut s).await.len(), 4);
        assert!(
            std::fs::metadata(&path).unwrap().len() < full - 5,
            "tail not cut"
        );
        s.save_vote(&vote(3)).await.unwrap();
        drop(s);
        let s = LogStore::open(RealFs::shared(), d.path()).unwrap();
        assert_eq!(s.vote(), Some(vote(3)));
        assert_eq!(s.last_index(), Some(4));
    }

    #[test]
    fn damage_in_the_middle_refuses_to_start() {
        let d = tempfile::tempdir().unwrap();
        let recs: Vec<_> = (1..=5).map(|i| LogRecord::Entry(entry(1, i))).collect();
        write_records(d.path(), 1, &recs);
        let path = d.path().join(file_name(1));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 0x40; // inside the first record's payload
        std::fs::write(&path, &bytes).unwrap();
        match LogStore::open(RealFs::shared(), d.path()) {
            Err(Error::Corruption { offset, .. }) => assert_eq!(offset, 0),
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("opened a damaged log"),
        }
    }

    #[tokio::test]
    async fn purge_rewrites_the_file_compactly_and_reopening_gives_the_same_log() {
        let d = tempfile::tempdir().unwrap();
        let mut recs = vec![LogRecord::Vote(vote(4))];
        recs.extend((1..=200).map(|i| LogRecord::Entry(entry(4, i))));
        write_records(d.path(), 1, &recs);
        // A leftover of an interrupted rewrite is ignored and removed.
        std::fs::write(d.path().join("log-000002.tmp"), b"partial").unwrap();
        let mut s = LogStore::open(RealFs::shared(), d.path()).unwrap();
        s.purge(entry(4, 150).log_id).await.unwrap();
        s.truncate(entry(4, 191).log_id).await.unwrap();
        let before = entries(&mut s).await;
        assert_eq!(before.first(), Some(&(4, 151)));
        assert_eq!(before.last(), Some(&(4, 190)));
        drop(s);
        // One file, not the first: written without zeros after it (as before preallocation),
        // it is left at the first write, and the purge rewrites compactly after that.
        let names = RealFs.list_dir(d.path()).unwrap();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(
            parse_name(&names[0]).unwrap() > 1,
            "not rewritten: {names:?}"
        );
        let mut s = LogStore::open(RealFs::shared(), d.path()).unwrap();
        assert_eq!(entries(&mut s).await, before);
        assert_eq!(s.vote(), Some(vote(4)));
        let st = s.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id.map(|l| l.index), Some(150));
    }
}
