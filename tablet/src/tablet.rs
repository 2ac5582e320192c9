//! One tablet: its state, how it opens (recovery with seals) and how it closes.
//!
//! The write path is in [`crate::write`], reads in [`crate::read`], minor compaction in
//! [`crate::flush`], merging and major compaction in [`crate::compaction`].
//!
//! State is copy-on-write: readers clone an `Arc<State>` under a short read lock and never
//! block on I/O; structural changes (freeze, install an SSTable, compaction) build a new
//! `State` and swap it in. Fields are grouped by who may touch them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex, RwLock};
use sstable::cache::BlockCache;
use sstable::table::{Table, TableOptions};
use sstable::Fs;

use crate::commitlog::{self, CommitLog, LogPosition};
use crate::error::{Error, Result};
use crate::manifest::{LogRef, ManifestState, ManifestStore, RowRange, SstMeta};
use crate::memtable::Memtable;
use crate::mutation::{decode_payload, DEFAULT_MAX_VALUE, MAX_VALUE_LIMIT};
use crate::schema::Schema;
use crate::types::{Epoch, SeqNo, TabletId, Timestamp};
use crate::write::Watermark;

/// A wall clock in microseconds since the Unix epoch (cell timestamps and age-based GC;
/// never used for leases).
pub type WallClock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system's wall clock.
pub fn system_wall_clock() -> WallClock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0)
    })
}

/// Tuning of one tablet.
#[derive(Clone)]
pub struct TabletOptions {
    /// Freeze the memtable when it passes this many bytes.
    pub memtable_bytes: u64,
    /// Writers stall while this many frozen memtables wait to be flushed.
    pub max_frozen: usize,
    /// A stalled writer gives up with `Unavailable` after this long.
    pub stall_timeout: Duration,
    /// SSTable format options.
    pub table: TableOptions,
    /// Largest cell value accepted (at most [`MAX_VALUE_LIMIT`]).
    pub max_value: usize,
    /// Size-tiered compaction parameters (the policy unless `leveled` is set).
    pub compaction: crate::compaction::SizeTiered,
    /// Use the leveled compaction policy with these parameters instead of size-tiered.
    pub leveled: Option<crate::compaction::Leveled>,
    /// Remove SSTables a compaction made obsolete. An embedded tablet does; under a tablet
    /// server the master's garbage collector does it, because a paused old owner must never
    /// delete files a newer owner uses.
    pub delete_obsolete_files: bool,
    /// Run flushes and compactions on background threads (else only when forced).
    pub background: bool,
    /// Wall clock for server-assigned timestamps and age-based GC.
    pub wall_clock: WallClock,
    /// Largest commit-log record accepted on replay.
    pub max_record: usize,
}

impl Default for TabletOptions {
    fn default() -> Self {
        TabletOptions {
            memtable_bytes: 64 << 20,
            max_frozen: 2,
            stall_timeout: Duration::from_secs(10),
            table: TableOptions::default(),
            max_value: DEFAULT_MAX_VALUE,
            compaction: crate::compaction::SizeTiered::default(),
            leveled: None,
            delete_obsolete_files: true,
            background: true,
            wall_clock: system_wall_clock(),
            max_record: 80 << 20,
        }
    }
}

impl TabletOptions {
    /// The compaction policy these options select.
    pub fn policy(&self) -> crate::compaction::Policy {
        match &self.leveled {
            Some(l) => crate::compaction::Policy::Leveled(l.clone()),
            None => crate::compaction::Policy::SizeTiered(self.compaction.clone()),
        }
    }

    /// Selects `policy` (its parameters replace the current ones of that kind).
    pub fn set_policy(&mut self, policy: crate::compaction::Policy) {
        match policy {
            crate::compaction::Policy::Leveled(l) => self.leveled = Some(l),
            crate::compaction::Policy::SizeTiered(s) => {
                self.compaction = s;
                self.leveled = None;
            }
        }
    }
}

/// What to open.
pub struct TabletConfig {
    /// The file system.
    pub fs: Arc<dyn Fs>,
    /// The data root every path in the manifest is relative to.
    pub root: PathBuf,
    /// The tablet's directory relative to the root, e.g. `tables/7/42`.
    pub dir: String,
    /// The tablet's id.
    pub id: TabletId,
    /// This load's epoch: must be higher than the manifest's. `None` takes the next one.
    pub epoch: Option<Epoch>,
    /// Create the tablet with this range and schema if it has no manifest yet.
    pub create: Option<(RowRange, Schema)>,
    /// Replace the stored schema (a schema change from the master).
    pub schema: Option<Schema>,
    /// The server's commit log (shared by all its tablets).
    pub log: Arc<CommitLog>,
    /// The process's block cache.
    pub cache: Option<Arc<BlockCache>>,
    /// Tuning.
    pub options: TabletOptions,
}

/// An open SSTable and its manifest entry.
pub(crate) struct Sst {
    pub meta: SstMeta,
    pub table: Arc<Table>,
}

/// A memtable that no longer takes writes, waiting to be flushed.
pub(crate) struct Frozen {
    pub mem: Arc<Memtable>,
    /// This tablet's records in the commit log before this position are all in `mem` or
    /// older memtables.
    pub redo: LogPosition,
    /// Highest sequence number in `mem` or older memtables.
    pub max_seq: SeqNo,
}

/// A consistent view of the tablet's data, swapped as a whole.
pub(crate) struct State {
    pub active: Arc<Memtable>,
    /// Newest first.
    pub frozen: Vec<Arc<Frozen>>,
    /// SSTables per locality group, newest first.
    pub groups: BTreeMap<String, Vec<Arc<Sst>>>,
    pub schema: Arc<Schema>,
}

/// Counters for amplification figures.
#[derive(Default)]
pub(crate) struct Counters {
    pub user_bytes: AtomicU64,
    pub flush_bytes: AtomicU64,
    pub compaction_read: AtomicU64,
    pub compaction_written: AtomicU64,
    pub flushes: AtomicU64,
    pub compactions: AtomicU64,
    pub trivial_moves: AtomicU64,
    pub stalls: AtomicU64,
    pub gets: AtomicU64,
    pub sst_probes: AtomicU64,
}

/// A snapshot of a tablet's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TabletStats {
    /// Bytes of mutations accepted (commit-log payloads).
    pub user_bytes: u64,
    /// Bytes written by minor compactions.
    pub flush_bytes: u64,
    /// Bytes read by merging and major compactions.
    pub compaction_read: u64,
    /// Bytes written by merging and major compactions.
    pub compaction_written: u64,
    /// Minor compactions done.
    pub flushes: u64,
    /// Merging and major compactions done (trivial moves not included).
    pub compactions: u64,
    /// Files moved to a deeper level without being rewritten.
    pub trivial_moves: u64,
    /// Writes that had to wait for a flush.
    pub stalls: u64,
    /// Point reads served.
    pub gets: u64,
    /// SSTables consulted by point reads after Bloom filters.
    pub sst_probes: u64,
    /// SSTables per locality group now.
    pub sstables: BTreeMap<String, usize>,
    /// SSTables per level now, all groups together (index = level).
    pub sstables_per_level: Vec<usize>,
    /// Bytes of SSTables now (a file shared with a split sibling counts whole).
    pub sst_bytes: u64,
    /// SSTables still shared with a split sibling (clipped to this tablet's range).
    pub shared_sstables: usize,
    /// Bytes in memtables now.
    pub memtable_bytes: u64,
}

/// Work for the background threads.
#[derive(Default)]
pub(crate) struct Work {
    pub shutdown: bool,
    pub compaction_wanted: bool,
}

/// The shared insides of a tablet.
pub(crate) struct Inner {
    // Fixed at open.
    pub fs: Arc<dyn Fs>,
    pub root: PathBuf,
    pub dir: String,
    pub id: TabletId,
    pub epoch: Epoch,
    pub range: RowRange,
    pub log: Arc<CommitLog>,
    pub log_dir: String,
    pub cache: Option<Arc<BlockCache>>,
    pub opts: TabletOptions,

    // Readers: clone the Arc under the read lock. Writers of the state: hold `structure`.
    pub state: RwLock<Arc<State>>,

    // Write path: `gate` is held shared from sequence allocation to memtable apply, and
    // exclusively by a freeze, so a frozen memtable holds every record before its redo point.
    pub gate: RwLock<()>,
    pub next_seq: AtomicU64,
    pub watermark: Mutex<Watermark>,
    pub watermark_cv: Condvar,
    pub row_locks: Vec<Mutex<()>>,
    pub failed: Mutex<Option<String>>,
    pub closed_for_writes: AtomicBool,

    // Structural changes: manifest and state swaps, one at a time.
    pub structure: Mutex<Structure>,
    pub flush_lock: Mutex<()>,
    pub compaction_lock: Mutex<()>,

    // Background threads.
    pub work: Mutex<Work>,
    pub work_cv: Condvar,
    pub flushed_cv: Condvar,

    pub counters: Counters,
}

/// The manifest and its store, changed together.
pub(crate) struct Structure {
    pub manifest: ManifestState,
    pub store: ManifestStore,
}

/// One tablet, open for reads and writes.
pub struct Tablet {
    pub(crate) inner: Arc<Inner>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Number of row lock stripes.
const ROW_LOCKS: usize = 256;

impl Tablet {
    /// Opens (or creates) a tablet: loads its manifest, seals and replays the commit logs
    /// that may hold its unflushed writes, flushes what it replayed, and records its own
    /// log as the new redo point. See the crate essay for the safety argument.
    pub fn open(cfg: TabletConfig) -> Result<Tablet> {
        if cfg.options.max_value > MAX_VALUE_LIMIT {
            return Err(Error::InvalidArgument(format!(
                "max_value {} exceeds the ceiling of {MAX_VALUE_LIMIT}",
                cfg.options.max_value
            )));
        }
        let abs_dir = cfg.root.join(&cfg.dir);
        let mut store = ManifestStore::open(Arc::clone(&cfg.fs), &abs_dir)?;
        let mut manifest = match (store.load()?, &cfg.create) {
            (Some(m), _) => m,
            (None, Some((range, schema))) => {
                ManifestState::new(cfg.id, range.clone(), schema.clone())
            }
            (None, None) => {
                return Err(Error::InvalidArgument(format!(
                    "tablet {} has no manifest in {}",
                    cfg.id,
                    abs_dir.display()
                )))
            }
        };
        if manifest.tablet_id != cfg.id {
            return Err(Error::InvalidArgument(format!(
                "{} holds tablet {}, not {}",
                abs_dir.display(),
                manifest.tablet_id,
                cfg.id
            )));
        }
        let epoch = match cfg.epoch {
            Some(e) if e <= manifest.epoch => {
                return Err(Error::InvalidArgument(format!(
                    "stale epoch {e}: tablet {} was already loaded at epoch {}",
                    cfg.id, manifest.epoch
                )))
            }
            Some(e) => e,
            None => manifest.epoch + 1,
        };
        if let Some(schema) = &cfg.schema {
            manifest.schema = schema.clone();
        }
        let log_dir = relative_to(&cfg.root, cfg.log.dir())?;
        let own_pos = cfg.log.position();

        // Rule 7: seal every segment we are about to replay, durably, before replaying.
        let segments = sealed_segments(&cfg, &manifest, &log_dir, own_pos)?;
        manifest.epoch = epoch;
        manifest.seals = segments.iter().map(|s| (s.path.clone(), s.limit)).collect();
        manifest.log_refs.push(LogRef {
            dir: log_dir.clone(),
            from: own_pos,
        });
        store.write(&manifest)?;

        let active = Memtable::new();
        let max_seq = replay(&cfg, &manifest, &segments, &active)?;
        let groups = open_groups(&cfg, &manifest)?;
        let state = State {
            active,
            frozen: Vec::new(),
            groups,
            schema: Arc::new(manifest.schema.clone()),
        };
        let last_seq = max_seq.max(manifest.flushed_seq);
        let inner = Arc::new(Inner {
            fs: Arc::clone(&cfg.fs),
            root: cfg.root.clone(),
            dir: cfg.dir.clone(),
            id: cfg.id,
            epoch,
            range: manifest.range.clone(),
            log: Arc::clone(&cfg.log),
            log_dir,
            cache: cfg.cache.clone(),
            opts: cfg.options.clone(),
            state: RwLock::new(Arc::new(state)),
            gate: RwLock::new(()),
            next_seq: AtomicU64::new(last_seq + 1),
            watermark: Mutex::new(Watermark::new(last_seq)),
            watermark_cv: Condvar::new(),
            row_locks: (0..ROW_LOCKS).map(|_| Mutex::new(())).collect(),
            failed: Mutex::new(None),
            closed_for_writes: AtomicBool::new(false),
            structure: Mutex::new(Structure { manifest, store }),
            flush_lock: Mutex::new(()),
            compaction_lock: Mutex::new(()),
            work: Mutex::new(Work::default()),
            work_cv: Condvar::new(),
            flushed_cv: Condvar::new(),
            counters: Counters::default(),
        });
        // Flush what was replayed so the old logs and seals can be forgotten; then the
        // manifest names only this server's log.
        inner.force_flush()?;
        inner.forget_old_logs()?;
        let threads = if cfg.options.background {
            crate::background::start(&inner)
        } else {
            Vec::new()
        };
        Ok(Tablet { inner, threads })
    }

    /// The tablet's id.
    pub fn id(&self) -> TabletId {
        self.inner.id
    }

    /// This load's epoch.
    pub fn epoch(&self) -> Epoch {
        self.inner.epoch
    }

    /// The rows this tablet holds.
    pub fn range(&self) -> &RowRange {
        &self.inner.range
    }

    /// The schema in force.
    pub fn schema(&self) -> Arc<Schema> {
        Arc::clone(&self.inner.state.read().schema)
    }

    /// Counters and sizes.
    pub fn stats(&self) -> TabletStats {
        self.inner.stats()
    }

    /// The earliest commit-log position this tablet still needs (a tablet server deletes
    /// log segments before the minimum over its tablets).
    pub fn redo_point(&self) -> LogPosition {
        let s = self.inner.structure.lock();
        s.manifest
            .log_refs
            .iter()
            .filter(|r| r.dir == self.inner.log_dir)
            .map(|r| r.from)
            .min()
            .unwrap_or_else(|| self.inner.log.position())
    }

    /// Flushes, then moves the redo point to the log's current position if nothing of the
    /// tablet is left in memtables, so the log before it can be deleted: an idle tablet
    /// (nothing to flush) would otherwise pin the log at its last flush forever. Writes
    /// that race with it stay in the memtable and keep the older redo point.
    pub fn release_log(&self) -> Result<()> {
        self.inner.force_flush()?;
        let position = {
            // With the write gate held no writer is between its log append and its
            // memtable insert, so empty memtables mean every earlier record is flushed.
            let _gate = self.inner.gate.write();
            let state = self.inner.state.read();
            if !state.active.is_empty() || !state.frozen.is_empty() {
                return Ok(());
            }
            self.inner.log.position()
        };
        let mut s = self.inner.structure.lock();
        let own = &self.inner.log_dir;
        let mut m = s.manifest.clone();
        let mut changed = false;
        for r in m
            .log_refs
            .iter_mut()
            .filter(|r| &r.dir == own && r.from < position)
        {
            r.from = position;
            changed = true;
        }
        if changed {
            if let Err(e) = s.store.write(&m) {
                return Err(self.inner.fail(format!("manifest write failed: {e}")));
            }
            s.manifest = m;
        }
        Ok(())
    }

    /// Minor compaction now: freezes the memtable and writes it out. Returns when every
    /// write acknowledged before the call is in SSTables.
    pub fn force_flush(&self) -> Result<()> {
        self.inner.force_flush()
    }

    /// Major compaction now: every locality group rewritten into one SSTable, dropping
    /// deletion markers and collected versions.
    pub fn force_major_compaction(&self) -> Result<()> {
        self.inner.force_flush()?;
        self.inner.major_compaction()
    }

    /// Runs merging compactions until the policy picks nothing.
    pub fn force_merging_compactions(&self) -> Result<()> {
        while self.inner.maybe_merging_compaction()? {}
        Ok(())
    }

    /// Stops taking writes (before an unload or a split); reads continue.
    pub fn close_for_writes(&self) {
        let _gate = self.inner.gate.write();
        self.inner.closed_for_writes.store(true, Ordering::SeqCst);
    }

    /// Flushes and closes: the next owner replays nothing.
    pub fn close(mut self) -> Result<()> {
        self.close_for_writes();
        let r = self.inner.force_flush();
        self.stop_threads();
        r
    }

    fn stop_threads(&mut self) {
        self.inner.work.lock().shutdown = true;
        self.inner.work_cv.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Tablet {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

impl Inner {
    /// Fails the tablet: no more writes until reopened.
    pub(crate) fn fail(&self, why: String) -> Error {
        tracing::error!(tablet = self.id, "tablet failed stop: {why}");
        let mut f = self.failed.lock();
        if f.is_none() {
            *f = Some(why.clone());
        }
        drop(f);
        // Under `work`, like every flush announcement, so a stalled writer between its
        // check and its wait still hears it (see `maybe_stall`).
        let _w = self.work.lock();
        self.flushed_cv.notify_all();
        Error::Failed(why)
    }

    pub(crate) fn check_failed(&self) -> Result<()> {
        match &*self.failed.lock() {
            Some(why) => Err(Error::Failed(why.clone())),
            None => Ok(()),
        }
    }

    pub(crate) fn abs(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub(crate) fn now(&self) -> Timestamp {
        (self.opts.wall_clock)()
    }

    /// Drops log references and seals of other logs once everything replayed from them is
    /// in SSTables.
    fn forget_old_logs(&self) -> Result<()> {
        let mut s = self.structure.lock();
        let before = (s.manifest.log_refs.len(), s.manifest.seals.len());
        let own = self.log_dir.clone();
        let redo = s
            .manifest
            .log_refs
            .iter()
            .filter(|r| r.dir == own)
            .map(|r| r.from)
            .max()
            .unwrap_or_else(|| self.log.position());
        s.manifest.log_refs = vec![LogRef {
            dir: own,
            from: redo,
        }];
        s.manifest.seals.clear();
        if before != (1, 0) {
            let m = s.manifest.clone();
            s.store.write(&m)?;
        }
        Ok(())
    }

    fn stats(&self) -> TabletStats {
        let c = &self.counters;
        let state = Arc::clone(&self.state.read());
        let mut memtable_bytes = state.active.approximate_bytes();
        for f in &state.frozen {
            memtable_bytes += f.mem.approximate_bytes();
        }
        TabletStats {
            user_bytes: c.user_bytes.load(Ordering::Relaxed),
            flush_bytes: c.flush_bytes.load(Ordering::Relaxed),
            compaction_read: c.compaction_read.load(Ordering::Relaxed),
            compaction_written: c.compaction_written.load(Ordering::Relaxed),
            flushes: c.flushes.load(Ordering::Relaxed),
            compactions: c.compactions.load(Ordering::Relaxed),
            trivial_moves: c.trivial_moves.load(Ordering::Relaxed),
            stalls: c.stalls.load(Ordering::Relaxed),
            gets: c.gets.load(Ordering::Relaxed),
            sst_probes: c.sst_probes.load(Ordering::Relaxed),
            sstables: state
                .groups
                .iter()
                .map(|(g, v)| (g.clone(), v.len()))
                .collect(),
            sstables_per_level: per_level(&state),
            sst_bytes: state.groups.values().flatten().map(|s| s.meta.size).sum(),
            shared_sstables: state
                .groups
                .values()
                .flatten()
                .filter(|s| s.meta.clip.is_some())
                .count(),
            memtable_bytes,
        }
    }
}

fn per_level(state: &State) -> Vec<usize> {
    let mut v = Vec::new();
    for s in state.groups.values().flatten() {
        let l = s.meta.level as usize;
        if v.len() <= l {
            v.resize(l + 1, 0);
        }
        v[l] += 1;
    }
    v
}

/// `path` relative to `root`, as the manifest stores it.
pub(crate) fn relative_to(root: &Path, path: &Path) -> Result<String> {
    path.strip_prefix(root)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|_| {
            Error::InvalidArgument(format!(
                "{} is not under the data root {}",
                path.display(),
                root.display()
            ))
        })
}

/// A commit-log segment to replay and where to stop.
struct SealedSegment {
    /// Path relative to the root.
    path: String,
    start: u64,
    limit: u64,
}

/// Every segment the manifest's log references point into, with its seal: the one already
/// recorded, or the segment's current valid end. Segments of this server's own log from its
/// current position on are new and skipped.
fn sealed_segments(
    cfg: &TabletConfig,
    m: &ManifestState,
    own_dir: &str,
    own_pos: LogPosition,
) -> Result<Vec<SealedSegment>> {
    let mut out = Vec::new();
    for r in &m.log_refs {
        let dir = cfg.root.join(&r.dir);
        if !cfg.fs.exists(&dir) {
            continue;
        }
        for (number, path) in commitlog::list_segments(&*cfg.fs, &dir)? {
            if number < r.from.segment || (r.dir == own_dir && number >= own_pos.segment) {
                continue;
            }
            let rel = relative_to(&cfg.root, &path)?;
            let start = if number == r.from.segment {
                r.from.offset
            } else {
                0
            };
            let limit = match m.seals.get(&rel) {
                Some(&l) => l,
                None => commitlog::valid_end(&*cfg.fs, &path, cfg.options.max_record)?,
            };
            if out.iter().any(|s: &SealedSegment| s.path == rel) {
                continue;
            }
            out.push(SealedSegment {
                path: rel,
                start,
                limit,
            });
        }
    }
    Ok(out)
}

/// Replays this tablet's records from the sealed segments into `mem`; returns the highest
/// sequence number seen. Records already in SSTables (seq <= flushed_seq) are skipped.
fn replay(
    cfg: &TabletConfig,
    m: &ManifestState,
    segments: &[SealedSegment],
    mem: &Memtable,
) -> Result<SeqNo> {
    let mut max_seq = 0;
    for s in segments {
        if s.start >= s.limit {
            continue;
        }
        let path = cfg.root.join(&s.path);
        let mut apply = |payload: &[u8]| -> sstable::Result<()> {
            let p = decode_payload(payload)
                .map_err(|what| sstable::Error::corruption(&path, s.start, what))?;
            let last = p.seq + p.mutations.len().max(1) as u64 - 1;
            max_seq = max_seq.max(last);
            if p.seq > m.flushed_seq {
                crate::write::apply_to_memtable(mem, p.seq, &p.row, p.mutations);
            }
            Ok(())
        };
        commitlog::replay_segment(
            &*cfg.fs,
            &path,
            cfg.id,
            s.start,
            s.limit,
            cfg.options.max_record,
            &mut apply,
        )?;
    }
    Ok(max_seq)
}

/// Opens every SSTable the manifest lists.
fn open_groups(cfg: &TabletConfig, m: &ManifestState) -> Result<BTreeMap<String, Vec<Arc<Sst>>>> {
    let mut groups = BTreeMap::new();
    for name in m.schema.group_names() {
        groups.insert(name, Vec::new());
    }
    for (g, metas) in &m.groups {
        let in_memory = m.schema.groups.get(g).is_some_and(|s| s.in_memory);
        let mut v = Vec::with_capacity(metas.len());
        for meta in metas {
            let file = cfg.fs.open(&cfg.root.join(&meta.path))?;
            let table = Table::open(file, cfg.cache.clone(), in_memory)?;
            v.push(Arc::new(Sst {
                meta: meta.clone(),
                table,
            }));
        }
        groups.insert(g.clone(), v);
    }
    Ok(groups)
}
