//! `UnsyncedFs`: a real-file [`Fs`] that keeps everything not yet made durable in process
//! memory, so that `kill -9` of the process loses exactly what a power cut would lose.
//!
//! `RealFs` hands every append to the kernel, and the page cache survives `kill -9`: a
//! crash test that kills processes cannot catch a missing fsync. This file system is the
//! process-level power cut of the chaos harness (`QUARRY_FAULT_FS=unsynced`, see
//! [`super::process`]). Its model is the one [`super::FaultFs`] simulates in memory, on
//! real files:
//!
//! - **File bytes.** [`WritableFile::append`] keeps the bytes in a buffer shared by every
//!   handle of the same inode; [`WritableFile::sync`] writes them to the real file and
//!   `fdatasync`s it. Readers ([`Fs::open`], [`Fs::file_size`]) see the durable bytes
//!   followed by the buffered ones (a reader's view is fixed when it opens the file).
//!   `flush` does nothing: only `sync` reaches the kernel.
//! - **Directory entries.** A create, rename or remove changes only an in-memory overlay
//!   of its directory; [`Fs::sync_dir`] of that directory applies the overlay to the real
//!   directory and fsyncs it. A created file lives meanwhile in the shadow directory
//!   (one per process, emptied when the file system is made: what a dead incarnation left
//!   there is what its power cut dropped). A renamed file that was already real is
//!   hard-linked into the shadow directory, so the old name stays on disk until the sync.
//!   Paths resolve through the overlay: [`Fs::list_dir`], [`Fs::exists`] and
//!   [`Fs::open`] see the process's own changes at once.
//! - **Writes in place** ([`Fs::open_at`], into a preallocated file) are kept as patches
//!   beside the tail, in order; `sync` writes them to the real file before the tail, and
//!   readers see them over the file's bytes.
//! - **Truncate** is durable at once, as in `RealFs`.
//! - **Inode numbers are reused.** Buffered bytes are keyed by inode, and the kernel gives
//!   a freed inode's number to the next new file; so the state of an inode is dropped the
//!   moment its last name goes (a remove, a synced rename over it, `remove_dir_all`), and a
//!   newly created file always starts from empty state. (Keeping it once made a new file's
//!   first sync write at the length of the file it replaced, leaving zeros before it.)
//!
//! Not simulated (each says what a crash keeps): directories are created and removed at
//! once (code must still sync the parent, but a missing sync is not caught); a failed
//! `fdatasync` is reported, not turned into lost pages; other processes reading the same
//! files see only what this one made durable (which is what they would see after its
//! power cut). The shadow directory must be on the same file system as the data (a
//! rename across file systems fails with `EXDEV`). Paths are matched as given after
//! normalizing `.` components and trailing slashes, as every Quarry caller passes them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::fs::{parent_dir, Fs, RandomAccessFile, WritableFile};

/// An inode: (device, inode number).
type Key = (u64, u64);

/// The unsynced state of one inode, shared by its writers.
#[derive(Default)]
struct Pending {
    /// Bytes in the real file (everything synced so far).
    durable: u64,
    /// Appended since the last sync: only in this process's memory.
    bytes: Vec<u8>,
    /// Writes in place ([`Fs::open_at`]) over the real file's bytes since the last sync,
    /// in order: only in this process's memory.
    patches: Vec<(u64, Vec<u8>)>,
}

impl Pending {
    /// Writes `data` at `at`: over the real file's bytes as a patch, past them into the
    /// tail (zero-filling any gap).
    fn write_at(&mut self, mut at: u64, mut data: &[u8]) {
        if at < self.durable {
            let n = usize::try_from(self.durable - at).map_or(data.len(), |n| n.min(data.len()));
            self.patches.push((at, data[..n].to_vec()));
            at += n as u64;
            data = &data[n..];
        }
        if data.is_empty() {
            return;
        }
        let off = (at - self.durable) as usize;
        if self.bytes.len() < off + data.len() {
            self.bytes.resize(off + data.len(), 0);
        }
        self.bytes[off..off + data.len()].copy_from_slice(data);
    }
}

/// Copies the parts of `patches` that fall in `[offset, offset + buf.len())` into `buf`.
fn overlay(buf: &mut [u8], offset: u64, patches: &[(u64, Vec<u8>)]) {
    let end = offset + buf.len() as u64;
    for (at, bytes) in patches {
        let (from, to) = ((*at).max(offset), (at + bytes.len() as u64).min(end));
        if from < to {
            let src = &bytes[(from - at) as usize..(to - at) as usize];
            buf[(from - offset) as usize..(to - offset) as usize].copy_from_slice(src);
        }
    }
}

type SharedPending = Arc<Mutex<Pending>>;

/// A directory entry changed since the directory's last sync.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    /// The name now refers to this file in the shadow directory.
    Present(PathBuf),
    /// The name was removed (the real entry still exists).
    Absent,
}

/// Where a path leads now.
enum Resolved {
    /// The real file at this path (no pending change to its entry).
    Real(PathBuf),
    /// A file in the shadow directory.
    Shadow(PathBuf),
    /// Removed since the last directory sync.
    Gone,
}

impl Resolved {
    fn backing(self, path: &Path) -> Result<PathBuf> {
        match self {
            Resolved::Real(p) | Resolved::Shadow(p) => Ok(p),
            Resolved::Gone => Err(Error::NotFound(path.display().to_string())),
        }
    }
}

#[derive(Default)]
struct State {
    /// Pending entry changes per directory.
    dirs: HashMap<PathBuf, BTreeMap<String, Entry>>,
    /// Unsynced bytes per inode.
    pending: HashMap<Key, SharedPending>,
}

/// The process-level power-cut file system. See the module doc.
pub struct UnsyncedFs {
    shadow: PathBuf,
    next: AtomicU64,
    st: Mutex<State>,
}

fn normalize(p: &Path) -> PathBuf {
    p.components().collect()
}

/// (directory, name) of a file path.
fn split(path: &Path) -> Result<(PathBuf, String)> {
    let path = normalize(path);
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{} names no file", path.display())))?
        .to_string_lossy()
        .into_owned();
    Ok((normalize(parent_dir(&path)), name))
}

fn key_of(meta: &std::fs::Metadata) -> Key {
    (meta.dev(), meta.ino())
}

fn stat(path: &Path) -> Result<std::fs::Metadata> {
    std::fs::metadata(path).map_err(|e| Error::io("stat", path, e))
}

impl UnsyncedFs {
    /// A file system whose new files wait in `shadow` until their directory is synced.
    /// Empties `shadow` first (what a previous incarnation left there was never made
    /// durable).
    pub fn new(shadow: &Path) -> Result<UnsyncedFs> {
        if shadow.exists() {
            std::fs::remove_dir_all(shadow).map_err(|e| Error::io("rmdir", shadow, e))?;
        }
        std::fs::create_dir_all(shadow).map_err(|e| Error::io("mkdir", shadow, e))?;
        Ok(UnsyncedFs {
            shadow: shadow.to_owned(),
            next: AtomicU64::new(1),
            st: Mutex::new(State::default()),
        })
    }

    /// Bytes appended but not synced, over all files (for tests and reports).
    pub fn unsynced_bytes(&self) -> u64 {
        let st = self.st.lock();
        st.pending
            .values()
            .map(|p| p.lock().bytes.len() as u64)
            .sum()
    }

    fn new_shadow_path(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.shadow.join(format!("{n:08}"))
    }

    fn resolve(st: &State, path: &Path) -> Result<Resolved> {
        let (dir, name) = split(path)?;
        Ok(match st.dirs.get(&dir).and_then(|d| d.get(&name)) {
            Some(Entry::Present(b)) => Resolved::Shadow(b.clone()),
            Some(Entry::Absent) => Resolved::Gone,
            None => Resolved::Real(normalize(path)),
        })
    }

    /// The shared pending state of the inode `meta` describes.
    fn pending_of(st: &mut State, meta: &std::fs::Metadata) -> SharedPending {
        st.pending
            .entry(key_of(meta))
            .or_insert_with(|| {
                Arc::new(Mutex::new(Pending {
                    durable: meta.len(),
                    bytes: Vec::new(),
                    patches: Vec::new(),
                }))
            })
            .clone()
    }

    /// Unlinks `path`, forgetting its inode's pending bytes if this was its last name.
    fn unlink(st: &mut State, path: &Path) -> Result<()> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("stat", path, e)),
        };
        std::fs::remove_file(path).map_err(|e| Error::io("remove", path, e))?;
        if meta.nlink() <= 1 {
            st.pending.remove(&key_of(&meta));
        }
        Ok(())
    }

    /// Points `dir/name` at nothing: `Absent` if a real entry exists, no change otherwise.
    fn mark_gone(st: &mut State, dir: &Path, name: &str) {
        let real = dir.join(name).exists();
        let d = st.dirs.entry(dir.to_owned()).or_default();
        if real {
            d.insert(name.to_string(), Entry::Absent);
        } else {
            d.remove(name);
        }
    }

    /// Points `dir/name` at `backing`, dropping the shadow file it replaces.
    fn set_present(st: &mut State, dir: &Path, name: &str, backing: PathBuf) -> Result<()> {
        let d = st.dirs.entry(dir.to_owned()).or_default();
        let old = d.insert(name.to_string(), Entry::Present(backing.clone()));
        if let Some(Entry::Present(old)) = old {
            if old != backing {
                Self::unlink(st, &old)?;
            }
        }
        Ok(())
    }

    /// A writer of `backing` (the file `path` resolves to). `created`: the file was just
    /// made, so whatever state its inode number still has belongs to a freed file.
    fn open_writable(
        &self,
        st: &mut State,
        path: &Path,
        backing: &Path,
        created: bool,
        at: Option<u64>,
    ) -> Result<Unsynced> {
        let file = OpenOptions::new()
            .write(true)
            .open(backing)
            .map_err(|e| Error::io("open", path, e))?;
        let meta = file.metadata().map_err(|e| Error::io("stat", path, e))?;
        if created {
            st.pending.remove(&key_of(&meta));
        }
        Ok(Unsynced {
            path: path.to_owned(),
            file,
            pending: Self::pending_of(st, &meta),
            at,
        })
    }

    /// Drops the state of every inode whose last name is a file under `root` (which is
    /// about to be removed).
    fn forget_tree(st: &mut State, root: &Path) {
        let Ok(entries) = std::fs::read_dir(root) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                Self::forget_tree(st, &entry.path());
            } else if meta.nlink() <= 1 {
                st.pending.remove(&key_of(&meta));
            }
        }
    }
}

/// A writer: appends stay in the shared [`Pending`] until `sync`.
struct Unsynced {
    path: PathBuf,
    file: File,
    pending: SharedPending,
    /// Where the next bytes go when opened with `open_at` (else at the end).
    at: Option<u64>,
}

impl WritableFile for Unsynced {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        let mut p = self.pending.lock();
        match &mut self.at {
            None => p.bytes.extend_from_slice(data),
            Some(at) => {
                p.write_at(*at, data);
                *at += data.len() as u64;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        let mut p = self.pending.lock();
        for (at, bytes) in &p.patches {
            self.file
                .write_all_at(bytes, *at)
                .map_err(|e| Error::io("write", &self.path, e))?;
        }
        if !p.bytes.is_empty() {
            self.file
                .write_all_at(&p.bytes, p.durable)
                .map_err(|e| Error::io("append", &self.path, e))?;
        }
        self.file
            .sync_data()
            .map_err(|e| Error::io("sync", &self.path, e))?;
        p.durable += p.bytes.len() as u64;
        p.bytes.clear();
        p.patches.clear();
        Ok(())
    }

    fn len(&self) -> u64 {
        if let Some(at) = self.at {
            return at;
        }
        let p = self.pending.lock();
        p.durable + p.bytes.len() as u64
    }
}

/// A reader: the real file's durable bytes, then a copy of the unsynced tail.
struct Reader {
    path: PathBuf,
    file: File,
    durable: u64,
    tail: Vec<u8>,
    patches: Vec<(u64, Vec<u8>)>,
}

impl RandomAccessFile for Reader {
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|end| end > self.len()) {
            return Err(Error::corruption(
                &self.path,
                offset,
                format!("read of {len} bytes past the end ({} bytes)", self.len()),
            ));
        }
        let mut buf = vec![0u8; len];
        let from_file = (self.durable.saturating_sub(offset) as usize).min(len);
        if from_file > 0 {
            self.file
                .read_exact_at(&mut buf[..from_file], offset)
                .map_err(|e| Error::io("read", &self.path, e))?;
        }
        if from_file < len {
            let t = (offset + from_file as u64 - self.durable) as usize;
            buf[from_file..].copy_from_slice(&self.tail[t..t + len - from_file]);
        }
        overlay(&mut buf, offset, &self.patches);
        Ok(buf)
    }

    fn len(&self) -> u64 {
        self.durable + self.tail.len() as u64
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Fs for UnsyncedFs {
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let (dir, name) = split(path)?;
        if !dir.is_dir() {
            let e = std::io::Error::from(std::io::ErrorKind::NotFound);
            return Err(Error::io("create", path, e));
        }
        let backing = self.new_shadow_path();
        File::create(&backing).map_err(|e| Error::io("create", path, e))?;
        let mut st = self.st.lock();
        let w = self.open_writable(&mut st, path, &backing, true, None)?;
        Self::set_present(&mut st, &dir, &name, backing)?;
        Ok(Box::new(w))
    }

    fn open_append(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let mut st = self.st.lock();
        let backing = Self::resolve(&st, path)?.backing(path)?;
        Ok(Box::new(
            self.open_writable(&mut st, path, &backing, false, None)?,
        ))
    }

    fn open_at(&self, path: &Path, offset: u64) -> Result<Box<dyn WritableFile>> {
        let mut st = self.st.lock();
        let backing = Self::resolve(&st, path)?.backing(path)?;
        Ok(Box::new(self.open_writable(
            &mut st,
            path,
            &backing,
            false,
            Some(offset),
        )?))
    }

    fn open(&self, path: &Path) -> Result<Arc<dyn RandomAccessFile>> {
        let st = self.st.lock();
        let backing = Self::resolve(&st, path)?.backing(path)?;
        let file = File::open(&backing).map_err(|e| Error::io("open", path, e))?;
        let meta = file.metadata().map_err(|e| Error::io("stat", path, e))?;
        let (durable, tail, patches) = match st.pending.get(&key_of(&meta)) {
            Some(p) => {
                let p = p.lock();
                (p.durable, p.bytes.clone(), p.patches.clone())
            }
            None => (meta.len(), Vec::new(), Vec::new()),
        };
        drop(st);
        Ok(Arc::new(Reader {
            path: path.to_owned(),
            file,
            durable,
            tail,
            patches,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let (fdir, fname) = split(from)?;
        let (tdir, tname) = split(to)?;
        if (&fdir, &fname) == (&tdir, &tname) {
            return Ok(());
        }
        let mut st = self.st.lock();
        let backing = match Self::resolve(&st, from)? {
            Resolved::Gone => return Err(Error::NotFound(from.display().to_string())),
            Resolved::Shadow(b) => b,
            Resolved::Real(p) => {
                let b = self.new_shadow_path();
                std::fs::hard_link(&p, &b).map_err(|e| Error::io("rename", from, e))?;
                b
            }
        };
        if let Some(d) = st.dirs.get_mut(&fdir) {
            d.remove(&fname);
        }
        Self::mark_gone(&mut st, &fdir, &fname);
        Self::set_present(&mut st, &tdir, &tname, backing)
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        let (dir, name) = split(path)?;
        let mut st = self.st.lock();
        match Self::resolve(&st, path)? {
            Resolved::Gone => return Err(Error::NotFound(path.display().to_string())),
            Resolved::Shadow(b) => {
                if let Some(d) = st.dirs.get_mut(&dir) {
                    d.remove(&name);
                }
                Self::unlink(&mut st, &b)?;
            }
            Resolved::Real(p) if !p.is_file() => {
                return Err(Error::NotFound(path.display().to_string()))
            }
            Resolved::Real(_) => {}
        }
        Self::mark_gone(&mut st, &dir, &name);
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> Result<()> {
        std::fs::create_dir_all(path).map_err(|e| Error::io("mkdir", path, e))
    }

    fn remove_dir_all(&self, path: &Path) -> Result<()> {
        let mut st = self.st.lock();
        Self::forget_tree(&mut st, path);
        std::fs::remove_dir_all(path).map_err(|e| Error::io("rmdir", path, e))?;
        let root = normalize(path);
        let under: Vec<PathBuf> = st
            .dirs
            .keys()
            .filter(|d| d.starts_with(&root))
            .cloned()
            .collect();
        for d in under {
            for e in st.dirs.remove(&d).into_iter().flat_map(|m| m.into_values()) {
                if let Entry::Present(b) = e {
                    Self::unlink(&mut st, &b)?;
                }
            }
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        let mut names = BTreeSet::new();
        for entry in std::fs::read_dir(path).map_err(|e| Error::io("list", path, e))? {
            let entry = entry.map_err(|e| Error::io("list", path, e))?;
            names.insert(entry.file_name().to_string_lossy().into_owned());
        }
        let st = self.st.lock();
        for (name, e) in st.dirs.get(&normalize(path)).into_iter().flatten() {
            match e {
                Entry::Present(_) => names.insert(name.clone()),
                Entry::Absent => names.remove(name),
            };
        }
        Ok(names.into_iter().collect())
    }

    fn sync_dir(&self, path: &Path) -> Result<()> {
        let dir = normalize(path);
        let mut st = self.st.lock();
        let changes = st.dirs.remove(&dir).unwrap_or_default();
        for (name, e) in changes {
            let real = dir.join(&name);
            match e {
                Entry::Present(b) => {
                    // The rename unlinks the file it replaces: forget that inode if this
                    // was its last name.
                    let replaced = std::fs::symlink_metadata(&real)
                        .ok()
                        .filter(|m| m.is_file() && m.nlink() <= 1);
                    std::fs::rename(&b, &real).map_err(|e| Error::io("rename", &real, e))?;
                    if let Some(m) = replaced {
                        st.pending.remove(&key_of(&m));
                    }
                }
                Entry::Absent => Self::unlink(&mut st, &real)?,
            }
        }
        drop(st);
        let d = File::open(&dir).map_err(|e| Error::io("open dir", &dir, e))?;
        d.sync_all().map_err(|e| Error::io("sync dir", &dir, e))
    }

    fn exists(&self, path: &Path) -> bool {
        let st = self.st.lock();
        match Self::resolve(&st, path) {
            Ok(Resolved::Real(p)) => p.exists(),
            Ok(Resolved::Shadow(_)) => true,
            Ok(Resolved::Gone) => false,
            // A path with no file name (`/`, empty): a directory or nothing.
            Err(_) => path.exists(),
        }
    }

    fn file_size(&self, path: &Path) -> Result<u64> {
        let st = self.st.lock();
        let backing = Self::resolve(&st, path)?.backing(path)?;
        let meta = stat(&backing)?;
        Ok(match st.pending.get(&key_of(&meta)) {
            Some(p) => {
                let p = p.lock();
                p.durable + p.bytes.len() as u64
            }
            None => meta.len(),
        })
    }

    fn truncate(&self, path: &Path, len: u64) -> Result<()> {
        let st = self.st.lock();
        let backing = Self::resolve(&st, path)?.backing(path)?;
        let file = OpenOptions::new()
            .write(true)
            .open(&backing)
            .map_err(|e| Error::io("open", path, e))?;
        let meta = file.metadata().map_err(|e| Error::io("stat", path, e))?;
        if let Some(p) = st.pending.get(&key_of(&meta)) {
            let mut p = p.lock();
            for (at, bytes) in std::mem::take(&mut p.patches) {
                let keep = usize::try_from(len.saturating_sub(at))
                    .map_or(bytes.len(), |n| n.min(bytes.len()));
                file.write_all_at(&bytes[..keep], at)
                    .map_err(|e| Error::io("truncate", path, e))?;
            }
            if len > p.durable {
                let keep = ((len - p.durable) as usize).min(p.bytes.len());
                file.write_all_at(&p.bytes[..keep], p.durable)
                    .map_err(|e| Error::io("truncate", path, e))?;
            }
            p.durable = len;
            p.bytes.clear();
        }
        file.set_len(len)
            .map_err(|e| Error::io("truncate", path, e))?;
        file.sync_all().map_err(|e| Error::io("sync", path, e))
    }
}

#[cfg(test)]
#[path = "unsynced_tests.rs"]
mod tests;
