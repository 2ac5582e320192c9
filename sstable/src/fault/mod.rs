//! `FaultFs`: an in-memory [`Fs`] that models POSIX durability exactly, for tests.
//!
//! Every layer above the formats (commit log, manifest, tablet) runs its crash tests on
//! this file system. It keeps, for each file, the bytes a reader sees now (the "page
//! cache") and the bytes that would survive a power failure (the "disk"), and for each
//! directory its live entries and its durable entries.
//!
//! Model (the rules the unit tests below check one by one):
//! - Files and directories are inodes. A path is resolved component by component from
//!   one root through directories' *live* entries; `/a/b` and `a/b` name the same file.
//! - [`WritableFile::append`](crate::fs::WritableFile::append) changes the live bytes at once (there is no user-space
//!   buffer, so `flush` does nothing). [`WritableFile::sync`](crate::fs::WritableFile::sync) makes every byte appended so
//!   far durable, on success.
//! - A directory's live entries (files created, renamed, removed; sub-directories made
//!   or removed) become its durable entries only on [`Fs::sync_dir`] of that directory.
//!   So a new directory survives a power cut only after `sync_dir` of its *parent*.
//! - [`FaultFs::power_cut`] sets every file's live bytes to its durable bytes and every
//!   directory's live entries to its durable entries. Handles opened before the cut fail
//!   every later call with `EIO`.
//! - [`Fs::truncate`] is durable at once (it syncs, as `RealFs` does).
//! - Injected faults ([`Fault`]) match a path substring and fire a number of times.
//! - fsync after EIO, as Linux does it: a failed `sync` marks the unsynced bytes as lost
//!   (the kernel marked their pages clean). They stay visible to readers until a power
//!   cut, but a *later* `sync`, which then returns `Ok`, writes zeros in their place on
//!   the disk. Code that retries a failed fsync and trusts it finds a hole of zeros after
//!   a power cut (its checksums then fail): that is what fail-stop tests must catch.
//!
//! The unit tests of every rule are in `sstable/tests/fault_fs.rs`.
//!
//! Process-level faults for multi-process tests live beside it: [`UnsyncedFs`] (real
//! files whose unsynced bytes and directory changes stay in process memory, so `kill -9`
//! is a power cut), [`SyncHookFs`] (a hook before each sync: fsync delays, test gates), both driven by the environment and the
//! runtime [`control`] file through [`process_fs`].
//!
//! Caveats: inodes are freed only at a power cut; there are no hard links, permissions,
//! or `..` path components (they are rejected as invalid arguments).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::fs::Fs;

pub mod control;
mod handles;
pub mod process;
pub mod unsynced;

pub use process::{process_fs, SlowSyncFs, SyncHook, SyncHookFs};
pub use unsynced::UnsyncedFs;

/// Linux's `EIO`.
const EIO: i32 = 5;
/// Linux's `ENOSPC`.
const ENOSPC: i32 = 28;

/// The root directory's inode number.
const ROOT: Ino = 0;

type Ino = u64;

/// A failure to inject. Each matches the paths that contain `path` and fires `times`
/// times (use `u32::MAX` for "until cleared").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// `WritableFile::sync` fails with EIO (and the unsynced bytes are lost, see the
    /// module doc).
    SyncFails {
        /// Substring of the file's path.
        path: String,
        /// How many syncs fail.
        times: u32,
    },
    /// `WritableFile::append` fails with ENOSPC once `after_bytes` more bytes were
    /// appended to matching files; the bytes that still fit are written (a short write).
    AppendNoSpace {
        /// Substring of the file's path.
        path: String,
        /// Bytes that may still be appended before appends fail.
        after_bytes: u64,
        /// How many appends fail.
        times: u32,
    },
    /// `Fs::rename` fails with EIO without changing anything.
    RenameFails {
        /// Substring of the source path.
        path: String,
        /// How many renames fail.
        times: u32,
    },
    /// `Fs::sync_dir` fails with EIO; the live entries do not become durable.
    SyncDirFails {
        /// Substring of the directory's path.
        path: String,
        /// How many directory syncs fail.
        times: u32,
    },
}

impl Fault {
    fn path(&self) -> &str {
        match self {
            Fault::SyncFails { path, .. }
            | Fault::AppendNoSpace { path, .. }
            | Fault::RenameFails { path, .. }
            | Fault::SyncDirFails { path, .. } => path,
        }
    }

    fn times(&self) -> u32 {
        match self {
            Fault::SyncFails { times, .. }
            | Fault::AppendNoSpace { times, .. }
            | Fault::RenameFails { times, .. }
            | Fault::SyncDirFails { times, .. } => *times,
        }
    }

    fn times_mut(&mut self) -> &mut u32 {
        match self {
            Fault::SyncFails { times, .. }
            | Fault::AppendNoSpace { times, .. }
            | Fault::RenameFails { times, .. }
            | Fault::SyncDirFails { times, .. } => times,
        }
    }
}

/// What the file system was asked to do, for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounters {
    /// Bytes appended (accepted) to all files.
    pub bytes_written: u64,
    /// Successful file syncs.
    pub syncs: u64,
    /// Successful directory syncs.
    pub dir_syncs: u64,
    /// Injected faults that fired.
    pub faults_fired: u64,
    /// Power cuts so far.
    pub power_cuts: u64,
}

#[derive(Default)]
struct FileNode {
    /// What readers see now.
    data: Vec<u8>,
    /// What survives a power cut: a prefix of `data` except in `lost` ranges and in
    /// `dirty`.
    durable: Vec<u8>,
    /// Byte ranges whose sync failed: they reach the disk as zeros.
    lost: Vec<Range<usize>>,
    /// Bytes of the durable prefix overwritten in place ([`crate::fs::Fs::open_at`])
    /// since the last sync: the durable copy still holds the old bytes there.
    dirty: Option<Range<usize>>,
}

impl FileNode {
    /// Makes every byte durable, writing zeros for lost ranges.
    fn sync(&mut self) {
        let from = self.durable.len().min(self.data.len());
        self.durable.truncate(from);
        self.durable.extend_from_slice(&self.data[from..]);
        if let Some(r) = self.dirty.take() {
            let end = r.end.min(from);
            if r.start < end {
                self.durable[r.start..end].copy_from_slice(&self.data[r.start..end]);
            }
        }
        for r in &self.lost {
            let end = r.end.min(self.durable.len());
            if r.start < end {
                self.durable[r.start..end].fill(0);
            }
        }
    }

    /// A failed sync: the bytes past the durable prefix, and those overwritten in it, are
    /// lost.
    fn lose_unsynced(&mut self) {
        let start = self.durable.len();
        if start < self.data.len() {
            self.lost.push(start..self.data.len());
        }
        if let Some(r) = &self.dirty {
            self.lost.push(r.clone());
        }
    }

    /// Writes `bytes` at `at`, zero-filling any gap past the end.
    fn write_at(&mut self, at: usize, bytes: &[u8]) {
        let end = at + bytes.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[at..end].copy_from_slice(bytes);
        let inside = end.min(self.durable.len());
        if at < inside {
            self.dirty = Some(match self.dirty.take() {
                Some(d) => d.start.min(at)..d.end.max(inside),
                None => at..inside,
            });
        }
    }
}

#[derive(Default)]
struct DirNode {
    live: BTreeMap<String, Ino>,
    durable: BTreeMap<String, Ino>,
}

enum Node {
    File(FileNode),
    Dir(DirNode),
}

struct State {
    nodes: HashMap<Ino, Node>,
    next_ino: Ino,
    /// Incremented by every power cut; handles remember the epoch they were opened in.
    epoch: u64,
    faults: Vec<Fault>,
    /// Bytes appended to matching files since each `AppendNoSpace` was injected.
    counters: FaultCounters,
}

/// The in-memory fault-injecting file system. Clones share the same state.
#[derive(Clone)]
pub struct FaultFs {
    state: Arc<Mutex<State>>,
}

impl Default for FaultFs {
    fn default() -> Self {
        Self::new()
    }
}

fn os_err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn eio(op: &'static str, path: &Path) -> Error {
    Error::io(op, path, os_err(EIO))
}

/// The normal components of `path`; `..` is rejected.
fn components(path: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(Error::InvalidArgument(format!(
                    "FaultFs does not resolve '..' in {}",
                    path.display()
                )))
            }
        }
    }
    Ok(out)
}

impl State {
    fn dir(&self, ino: Ino) -> Option<&DirNode> {
        match self.nodes.get(&ino) {
            Some(Node::Dir(d)) => Some(d),
            _ => None,
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Option<&mut DirNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(d)) => Some(d),
            _ => None,
        }
    }

    fn file_mut(&mut self, ino: Ino) -> Option<&mut FileNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => Some(f),
            _ => None,
        }
    }

    /// The inode `path` names through live entries.
    fn lookup(&self, path: &Path) -> Result<Option<Ino>> {
        let mut ino = ROOT;
        for name in components(path)? {
            match self.dir(ino).and_then(|d| d.live.get(&name)) {
                Some(&child) => ino = child,
                None => return Ok(None),
            }
        }
        Ok(Some(ino))
    }

    /// The parent directory's inode and the last name of `path`.
    fn parent_of(&self, path: &Path) -> Result<(Ino, String)> {
        let mut names = components(path)?;
        let name = names
            .pop()
            .ok_or_else(|| Error::InvalidArgument(format!("no file name in {}", path.display())))?;
        let parent: PathBuf = names.iter().collect();
        match self.lookup(&parent)? {
            Some(ino) if self.dir(ino).is_some() => Ok((ino, name)),
            _ => Err(Error::NotFound(parent.display().to_string())),
        }
    }

    fn new_node(&mut self, node: Node) -> Ino {
        self.next_ino += 1;
        self.nodes.insert(self.next_ino, node);
        self.next_ino
    }

    /// Takes one firing of the first matching fault that `pick` accepts.
    fn fire(&mut self, path: &Path, pick: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let p = path.display().to_string();
        let i = self
            .faults
            .iter()
            .position(|f| pick(f) && p.contains(f.path()) && f.times() > 0)?;
        let fired = self.faults[i].clone();
        *self.faults[i].times_mut() -= 1;
        if *self.faults[i].times_mut() == 0 {
            self.faults.remove(i);
        }
        self.counters.faults_fired += 1;
        Some(fired)
    }

    /// Bytes of an append of `len` to `path` that fit before an ENOSPC fault, if one
    /// applies.
    fn space_limit(&mut self, path: &Path, len: u64) -> Option<u64> {
        let p = path.display().to_string();
        let f = self.faults.iter_mut().find(|f| {
            matches!(f, Fault::AppendNoSpace { times, .. } if *times > 0) && p.contains(f.path())
        })?;
        let Fault::AppendNoSpace { after_bytes, .. } = f else {
            unreachable!()
        };
        if *after_bytes >= len {
            *after_bytes -= len;
            return None;
        }
        let fits = *after_bytes;
        *after_bytes = 0;
        self.fire(path, |f| matches!(f, Fault::AppendNoSpace { .. }));
        Some(fits)
    }

    /// Drops every inode no directory reaches (only called when no handle is valid).
    fn collect_garbage(&mut self) {
        let mut reachable = vec![ROOT];
        let mut seen = std::collections::HashSet::new();
        while let Some(ino) = reachable.pop() {
            if seen.insert(ino) {
                if let Some(d) = self.dir(ino) {
                    reachable.extend(d.live.values().copied());
                }
            }
        }
        self.nodes.retain(|ino, _| seen.contains(ino));
    }
}

impl FaultFs {
    /// An empty file system holding only the root directory.
    pub fn new() -> FaultFs {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::Dir(DirNode::default()));
        FaultFs {
            state: Arc::new(Mutex::new(State {
                nodes,
                next_ino: ROOT,
                epoch: 0,
                faults: Vec::new(),
                counters: FaultCounters::default(),
            })),
        }
    }

    /// A shareable handle as the `Fs` trait object.
    pub fn shared(&self) -> Arc<dyn Fs> {
        Arc::new(self.clone())
    }

    /// Simulates losing power: every file keeps only its durable bytes, every directory
    /// only its durable entries, and every open handle fails from now on.
    pub fn power_cut(&self) {
        let mut st = self.state.lock();
        st.epoch += 1;
        st.counters.power_cuts += 1;
        for node in st.nodes.values_mut() {
            match node {
                Node::File(f) => {
                    f.data = f.durable.clone();
                    f.lost.clear();
                    f.dirty = None;
                }
                Node::Dir(d) => d.live = d.durable.clone(),
            }
        }
        st.collect_garbage();
    }

    /// Adds a fault to inject.
    pub fn inject(&self, fault: Fault) {
        self.state.lock().faults.push(fault);
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// The live bytes of a file (what a reader sees now).
    pub fn file_bytes(&self, path: &Path) -> Result<Vec<u8>> {
        let mut st = self.state.lock();
        let ino = st
            .lookup(path)?
            .ok_or_else(|| Error::NotFound(path.display().to_string()))?;
        match st.file_mut(ino) {
            Some(f) => Ok(f.data.clone()),
            None => Err(Error::InvalidArgument(format!(
                "{} is a directory",
                path.display()
            ))),
        }
    }

    /// Flips bit `bit` (0..8) of the byte at `offset`, on the medium: readers and the
    /// durable state both see the flipped bit.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> Result<()> {
        assert!(bit < 8, "bit index {bit} out of 0..8");
        let mut st = self.state.lock();
        let ino = st
            .lookup(path)?
            .ok_or_else(|| Error::NotFound(path.display().to_string()))?;
        let f = st
            .file_mut(ino)
            .ok_or_else(|| Error::InvalidArgument(format!("{} is a directory", path.display())))?;
        let at = usize::try_from(offset).unwrap_or(usize::MAX);
        if at >= f.data.len() {
            return Err(Error::InvalidArgument(format!(
                "offset {offset} past the end of {} ({} bytes)",
                path.display(),
                f.data.len()
            )));
        }
        f.data[at] ^= 1 << bit;
        if at < f.durable.len() {
            f.durable[at] ^= 1 << bit;
        }
        Ok(())
    }

    /// Counters of what was done so far.
    pub fn counters(&self) -> FaultCounters {
        self.state.lock().counters
    }

    fn check_epoch(&self, epoch: u64, op: &'static str, path: &Path) -> Result<()> {
        if self.state.lock().epoch != epoch {
            return Err(eio(op, path));
        }
        Ok(())
    }
}
