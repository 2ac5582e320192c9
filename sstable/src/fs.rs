//! The `Fs` trait: every byte Quarry keeps goes through it (LevelDB's `Env`).
//!
//! Two implementations: [`RealFs`] over the operating system, and
//! [`crate::fault::FaultFs`], an in-memory file system that remembers what was made
//! durable and can simulate a power cut, failing syscalls and bit flips.
//!
//! Durability contract (the one POSIX gives and the fault `Fs` enforces):
//! - bytes appended to a file are durable only after [`WritableFile::sync`] returns `Ok`;
//! - a created, renamed or removed directory entry is durable only after
//!   [`Fs::sync_dir`] on its parent returns `Ok`;
//! - after a failed `sync` the file's state is unknown: callers must fail stop and never
//!   call `sync` again hoping it now succeeds (the kernel may have dropped the dirty pages
//!   and will report success for the retry).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

/// A file opened for appending.
pub trait WritableFile: Send {
    /// Appends `data`. It may sit in a user-space buffer until [`WritableFile::flush`]
    /// or [`WritableFile::sync`].
    fn append(&mut self, data: &[u8]) -> Result<()>;
    /// Hands buffered bytes to the operating system (they survive `kill -9`, not a
    /// power cut).
    fn flush(&mut self) -> Result<()>;
    /// Flushes and makes every appended byte durable (fdatasync).
    fn sync(&mut self) -> Result<()>;
    /// Bytes appended so far, including buffered ones.
    fn len(&self) -> u64;
    /// True when nothing was appended.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A file opened for positional reads.
pub trait RandomAccessFile: Send + Sync {
    /// Reads exactly `len` bytes at `offset`; reading past the end is an error.
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>>;
    /// The file's length when it was opened.
    fn len(&self) -> u64;
    /// True for an empty file.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The path it was opened from (for error messages).
    fn path(&self) -> &Path;
}

/// A file system. All paths are absolute or relative to the process's directory.
pub trait Fs: Send + Sync + 'static {
    /// Creates `path` (truncating any old file) for appending.
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> Result<Box<dyn WritableFile>>;
    /// Opens an existing file for writing from `offset` on: the writer's appends overwrite
    /// the bytes there (a preallocated file's zeros) and extend the file past its end, and
    /// its `len()` counts from `offset`. Overwritten bytes are durable only after `sync`,
    /// like appended ones. An `Fs` that cannot write in place says so with
    /// [`Error::InvalidArgument`].
    fn open_at(&self, path: &Path, offset: u64) -> Result<Box<dyn WritableFile>> {
        let _ = offset;
        Err(Error::InvalidArgument(format!(
            "{}: this file system cannot write in place",
            path.display()
        )))
    }
    /// Opens an existing file for positional reads.
    fn open(&self, path: &Path) -> Result<Arc<dyn RandomAccessFile>>;
    /// Renames `from` to `to`, replacing `to` atomically.
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> Result<()>;
    /// Creates a directory and its missing parents.
    fn create_dir_all(&self, path: &Path) -> Result<()>;
    /// Removes a directory and everything below it.
    fn remove_dir_all(&self, path: &Path) -> Result<()>;
    /// Names (not paths) of the entries of a directory, sorted.
    fn list_dir(&self, path: &Path) -> Result<Vec<String>>;
    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, path: &Path) -> Result<()>;
    /// True when `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// Length of a file in bytes.
    fn file_size(&self, path: &Path) -> Result<u64>;
    /// Cuts a file to `len` bytes and makes the new length durable.
    fn truncate(&self, path: &Path, len: u64) -> Result<()>;

    /// Creates a directory and its missing parents, and makes every component's entry
    /// durable by syncing each parent directory up to the root. Used where a crash must not
    /// lose a directory that durable files are about to be written into (a tablet's, a log's).
    fn create_dir_all_durable(&self, path: &Path) -> Result<()> {
        self.create_dir_all(path)?;
        let mut p = path;
        while let Some(parent) = p.parent() {
            if parent.as_os_str().is_empty() {
                break;
            }
            self.sync_dir(parent)?;
            p = parent;
        }
        Ok(())
    }

    /// Reads a whole file.
    fn read_all(&self, path: &Path) -> Result<Vec<u8>> {
        let f = self.open(path)?;
        f.read_at(0, f.len() as usize)
    }

    /// Writes a whole file durably: to `path.tmp`, sync, rename over `path`, sync the
    /// directory. Readers see the old content or the new, never a mix.
    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<()> {
        let tmp = tmp_path(path);
        let mut f = self.create(&tmp)?;
        f.append(data)?;
        f.sync()?;
        drop(f);
        self.rename(&tmp, path)?;
        self.sync_dir(parent_dir(path))
    }
}

/// `path` with `.tmp` appended to its file name.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Creates `dir` and its missing ancestors, and syncs the parent of each one created, so
/// the whole path survives a power cut (a commit log's or a Raft log's directory: until
/// its entry is durable, a power cut could drop the directory with every fsynced file in
/// it). Cheaper than [`Fs::create_dir_all_durable`] when the directory already exists.
pub fn create_dir_durably(fs: &dyn Fs, dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut p = dir;
    while !fs.exists(p) {
        missing.push(p);
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent,
            _ => break,
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(dir)?;
    for created in missing.iter().rev() {
        fs.sync_dir(parent_dir(created))?;
    }
    Ok(())
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl RealFs {
    /// A shareable handle.
    pub fn shared() -> Arc<dyn Fs> {
        Arc::new(RealFs)
    }
}

/// Appends go to a 64 KiB user-space buffer, as LevelDB's `WritableFile` does.
const WRITE_BUFFER: usize = 64 * 1024;

struct RealWritable {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    len: u64,
}

impl RealWritable {
    fn new(path: &Path, file: File, len: u64) -> Self {
        RealWritable {
            path: path.to_owned(),
            file,
            buf: Vec::with_capacity(WRITE_BUFFER),
            len,
        }
    }
}

impl WritableFile for RealWritable {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.len += data.len() as u64;
        if self.buf.len() + data.len() > WRITE_BUFFER {
            self.flush()?;
            if data.len() >= WRITE_BUFFER {
                return self
                    .file
                    .write_all(data)
                    .map_err(|e| Error::io("append", &self.path, e));
            }
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            let r = self.file.write_all(&self.buf);
            self.buf.clear();
            r.map_err(|e| Error::io("append", &self.path, e))?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.file
            .sync_data()
            .map_err(|e| Error::io("sync", &self.path, e))
    }

    fn len(&self) -> u64 {
        self.len
    }
}

struct RealRandom {
    path: PathBuf,
    file: File,
    len: u64,
}

impl RandomAccessFile for RealRandom {
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(Error::corruption(
                &self.path,
                offset,
                format!("read of {len} bytes past the end ({} bytes)", self.len),
            ));
        }
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io("read", &self.path, e))?;
        Ok(buf)
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Fs for RealFs {
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io("create", path, e))?;
        Ok(Box::new(RealWritable::new(path, file, 0)))
    }

    fn open_append(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", path, e))?
            .len();
        Ok(Box::new(RealWritable::new(path, file, len)))
    }

    fn open_at(&self, path: &Path, offset: u64) -> Result<Box<dyn WritableFile>> {
        let mut file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io("seek", path, e))?;
        Ok(Box::new(RealWritable::new(path, file, offset)))
    }

    fn open(&self, path: &Path) -> Result<Arc<dyn RandomAccessFile>> {
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", path, e))?
            .len();
        Ok(Arc::new(RealRandom {
            path: path.to_owned(),
            file,
            len,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        std::fs::rename(from, to).map_err(|e| Error::io("rename", from, e))
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        std::fs::remove_file(path).map_err(|e| Error::io("remove", path, e))
    }

    fn create_dir_all(&self, path: &Path) -> Result<()> {
        std::fs::create_dir_all(path).map_err(|e| Error::io("mkdir", path, e))
    }

    fn remove_dir_all(&self, path: &Path) -> Result<()> {
        std::fs::remove_dir_all(path).map_err(|e| Error::io("rmdir", path, e))
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path).map_err(|e| Error::io("list", path, e))? {
            let entry = entry.map_err(|e| Error::io("list", path, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn sync_dir(&self, path: &Path) -> Result<()> {
        let dir = File::open(path).map_err(|e| Error::io("open dir", path, e))?;
        dir.sync_all().map_err(|e| Error::io("sync dir", path, e))
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn file_size(&self, path: &Path) -> Result<u64> {
        Ok(std::fs::metadata(path)
            .map_err(|e| Error::io("stat", path, e))?
            .len())
    }

    fn truncate(&self, path: &Path, len: u64) -> Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        file.set_len(len)
            .map_err(|e| Error::io("truncate", path, e))?;
        file.sync_all().map_err(|e| Error::io("sync", path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let fs = RealFs;
        let p = dir.path().join("f");
        fs.write_atomic(&p, b"one").unwrap();
        fs.write_atomic(&p, b"two!").unwrap();
        assert_eq!(fs.read_all(&p).unwrap(), b"two!");
        assert_eq!(fs.list_dir(dir.path()).unwrap(), vec!["f".to_string()]);
    }

    #[test]
    fn open_at_overwrites_in_place_and_extends() {
        let dir = tempfile::tempdir().unwrap();
        let fs = RealFs;
        let p = dir.path().join("f");
        let mut w = fs.create(&p).unwrap();
        w.append(&[0u8; 6]).unwrap();
        w.sync().unwrap();
        let mut w = fs.open_at(&p, 4).unwrap();
        assert_eq!(w.len(), 4);
        w.append(b"abcd").unwrap();
        w.sync().unwrap();
        assert_eq!(w.len(), 8);
        assert_eq!(fs.read_all(&p).unwrap(), b"\0\0\0\0abcd");
    }

    #[test]
    fn read_past_end_is_an_error_not_short_data() {
        let dir = tempfile::tempdir().unwrap();
        let fs = RealFs;
        let p = dir.path().join("f");
        let mut w = fs.create(&p).unwrap();
        w.append(b"abc").unwrap();
        w.sync().unwrap();
        let r = fs.open(&p).unwrap();
        assert_eq!(r.read_at(1, 2).unwrap(), b"bc");
        assert!(r.read_at(2, 2).unwrap_err().is_corruption());
    }

    #[test]
    fn open_missing_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = match RealFs.open(&dir.path().join("nope")) {
            Err(e) => e,
            Ok(_) => panic!("opened a missing file"),
        };
        assert!(matches!(err, Error::NotFound(_)), "{err}");
    }
}
