//! The file system of a server process, chosen by its environment, and the sync-hook
//! wrapper that makes a disk slow.
//!
//! [`process_fs`] is what `quarry tablet-server` and `quarry lock-server` call to build
//! their [`Fs`]:
//!
//! | variable | value | effect |
//! |---|---|---|
//! | [`FAULT_FS_ENV`] (`QUARRY_FAULT_FS`) | unset or empty | [`RealFs`] |
//! | | `unsynced` | [`UnsyncedFs`]: `kill -9` of the process is a power cut |
//! | [`SHADOW_ENV`] (`QUARRY_FAULT_SHADOW`) | a directory | where `unsynced` keeps files not yet in a synced directory (required with it; same file system as the data) |
//! | [`CONTROL_ENV`](super::control::CONTROL_ENV) (`QUARRY_FAULT_CONTROL`) | a file | wraps the `Fs` in [`SyncHookFs::slowed_by`] driven by the control file's `fsync-delay-ms` |
//!
//! Any other value of `QUARRY_FAULT_FS` is an error naming the variable and the accepted
//! values, so a typo never runs a test on the wrong file system.

use std::path::Path;
use std::sync::Arc;

use super::control::Control;
use super::unsynced::UnsyncedFs;
use crate::error::{Error, Result};
use crate::fs::{Fs, RandomAccessFile, RealFs, WritableFile};

/// Selects the process's file system.
pub const FAULT_FS_ENV: &str = "QUARRY_FAULT_FS";
/// The shadow directory of `QUARRY_FAULT_FS=unsynced`.
pub const SHADOW_ENV: &str = "QUARRY_FAULT_SHADOW";

/// The file system this process should use, from its environment (see the module doc).
pub fn process_fs() -> Result<Arc<dyn Fs>> {
    let kind = std::env::var(FAULT_FS_ENV).unwrap_or_default();
    let shadow = std::env::var_os(SHADOW_ENV);
    let base = base_fs(&kind, shadow.as_deref().map(Path::new))?;
    Ok(match Control::global() {
        Some(c) => Arc::new(SyncHookFs::slowed_by(base, c)),
        None => base,
    })
}

/// The file system named by `kind` (the value of [`FAULT_FS_ENV`]).
fn base_fs(kind: &str, shadow: Option<&Path>) -> Result<Arc<dyn Fs>> {
    Ok(match kind {
        "" => RealFs::shared(),
        "unsynced" => {
            let shadow = shadow.ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{FAULT_FS_ENV}=unsynced needs {SHADOW_ENV} (a directory on the data's file system)"
                ))
            })?;
            Arc::new(UnsyncedFs::new(shadow)?)
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "{FAULT_FS_ENV}={other:?}: expected unset, empty or \"unsynced\""
            )))
        }
    })
}

/// A hook run before every file sync, directory sync and truncate.
pub type SyncHook = Arc<dyn Fn() + Send + Sync>;

/// Wraps an [`Fs`] so that a hook runs before every file sync, directory sync and
/// truncate, on the calling thread: a slow disk ([`SyncHookFs::slowed_by`]), or a test's
/// gate that parks a sync. Everything else passes through.
pub struct SyncHookFs {
    inner: Arc<dyn Fs>,
    hook: SyncHook,
}

/// The slow-disk file system: [`SyncHookFs::slowed_by`].
pub type SlowSyncFs = SyncHookFs;

impl SyncHookFs {
    /// `inner` with `hook` before each sync.
    pub fn new(inner: Arc<dyn Fs>, hook: SyncHook) -> SyncHookFs {
        SyncHookFs { inner, hook }
    }

    /// `inner` whose syncs first sleep for the control's current `fsync-delay-ms` (the
    /// sleep blocks the calling thread, as a slow `fsync` does).
    pub fn slowed_by(inner: Arc<dyn Fs>, control: Arc<Control>) -> SyncHookFs {
        SyncHookFs::new(
            inner,
            Arc::new(move || {
                let d = control.fsync_delay();
                if !d.is_zero() {
                    std::thread::sleep(d);
                }
            }),
        )
    }

    fn wrap(&self, w: Box<dyn WritableFile>) -> Box<dyn WritableFile> {
        Box::new(HookedWritable {
            inner: w,
            hook: Arc::clone(&self.hook),
        })
    }
}

struct HookedWritable {
    inner: Box<dyn WritableFile>,
    hook: SyncHook,
}

impl WritableFile for HookedWritable {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.inner.append(data)
    }

    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }

    fn sync(&mut self) -> Result<()> {
        (self.hook)();
        self.inner.sync()
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }
}

impl Fs for SyncHookFs {
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        Ok(self.wrap(self.inner.create(path)?))
    }

    fn open_append(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        Ok(self.wrap(self.inner.open_append(path)?))
    }

    fn open_at(&self, path: &Path, offset: u64) -> Result<Box<dyn WritableFile>> {
        Ok(self.wrap(self.inner.open_at(path, offset)?))
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
        (self.hook)();
        self.inner.sync_dir(path)
    }

    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }

    fn file_size(&self, path: &Path) -> Result<u64> {
        self.inner.file_size(path)
    }

    fn truncate(&self, path: &Path, len: u64) -> Result<()> {
        (self.hook)();
        self.inner.truncate(path, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn unknown_kinds_and_a_missing_shadow_are_errors_naming_the_variable() {
        let e = base_fs("unsyncd", None).err().unwrap().to_string();
        assert!(e.contains("QUARRY_FAULT_FS=\"unsyncd\""), "{e}");
        let e = base_fs("unsynced", None).err().unwrap().to_string();
        assert!(e.contains("QUARRY_FAULT_SHADOW"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        assert!(base_fs("unsynced", Some(&dir.path().join("s"))).is_ok());
        assert!(base_fs("", None).is_ok());
    }

    #[test]
    fn syncs_wait_for_the_configured_delay_and_data_passes_through() {
        let dir = tempfile::tempdir().unwrap();
        let ctl = dir.path().join("control");
        std::fs::write(&ctl, "fsync-delay-ms 40\n").unwrap();
        let control = Arc::new(Control::new(&ctl));
        let fs = SyncHookFs::slowed_by(RealFs::shared(), Arc::clone(&control));
        let p = dir.path().join("f");
        let mut w = fs.create(&p).unwrap();
        w.append(b"abc").unwrap();
        let t = Instant::now();
        w.sync().unwrap();
        fs.sync_dir(dir.path()).unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(80),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(fs.read_all(&p).unwrap(), b"abc");
        std::fs::write(&ctl, "").unwrap();
        control.poll_once();
        assert_eq!(control.fsync_delay(), Duration::ZERO);
    }
}
