//! Writes stall, boundedly, when flushes fall behind: memory does not grow without limit,
//! a stalled writer gives up with `Unavailable` after the configured time, and writes
//! resume once the flush completes.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use sstable::fault::FaultFs;
use sstable::{Fs, RandomAccessFile, Result, WritableFile};
use tablet::{Error, Mutation};

/// Holds every SSTable fsync until opened: a flush that cannot finish.
struct GateFs {
    inner: FaultFs,
    open: Mutex<bool>,
    cv: Condvar,
    waiting: AtomicBool,
}

impl GateFs {
    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

struct GatedFile {
    fs: Arc<GateFs>,
    inner: Box<dyn WritableFile>,
    gated: bool,
}

impl WritableFile for GatedFile {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.inner.append(data)
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
    fn sync(&mut self) -> Result<()> {
        if self.gated {
            self.fs.waiting.store(true, Ordering::SeqCst);
            let mut open = self.fs.open.lock().unwrap();
            while !*open {
                open = self.fs.cv.wait(open).unwrap();
            }
        }
        self.inner.sync()
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
}

struct Handle(Arc<GateFs>);

impl Fs for Handle {
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let inner = self.0.inner.create(path)?;
        let gated = path.to_string_lossy().contains("/sst/");
        Ok(Box::new(GatedFile {
            fs: Arc::clone(&self.0),
            inner,
            gated,
        }))
    }
    fn open_append(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        self.0.inner.open_append(path)
    }
    fn open(&self, path: &Path) -> Result<Arc<dyn RandomAccessFile>> {
        self.0.inner.open(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.0.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> Result<()> {
        self.0.inner.remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> Result<()> {
        self.0.inner.create_dir_all(path)
    }
    fn remove_dir_all(&self, path: &Path) -> Result<()> {
        self.0.inner.remove_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        self.0.inner.list_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> Result<()> {
        self.0.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.0.inner.exists(path)
    }
    fn file_size(&self, path: &Path) -> Result<u64> {
        self.0.inner.file_size(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> Result<()> {
        self.0.inner.truncate(path, len)
    }
}

#[test]
fn writes_stall_boundedly_while_flushes_cannot_finish_and_resume_after() {
    let gate = Arc::new(GateFs {
        inner: common::fault_fs(),
        open: Mutex::new(false),
        cv: Condvar::new(),
        waiting: AtomicBool::new(false),
    });
    let mut opts = common::small_options(true);
    opts.max_frozen = 1;
    opts.stall_timeout = Duration::from_millis(200);
    let memtable = opts.memtable_bytes;
    let t = common::open(
        Arc::new(Handle(Arc::clone(&gate))),
        Path::new(common::ROOT),
        "logs/a",
        opts,
    )
    .unwrap();
    let value = vec![7u8; 200];
    let mut stalled = None;
    for i in 0..10_000u32 {
        let r = t.mutate_row(
            format!("row{i:05}").as_bytes(),
            vec![Mutation::set("f", b"q", 1, &value)],
        );
        match r {
            Ok(()) => {}
            Err(Error::Unavailable(m)) => {
                stalled = Some((i, m));
                break;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    let (at, msg) = stalled.expect("writes must stall while the flush cannot finish");
    assert!(msg.contains("stalled"), "{msg}");
    assert!(
        gate.waiting.load(Ordering::SeqCst),
        "a flush was waiting on its fsync"
    );
    let stats = t.stats();
    assert!(stats.stalls >= 1);
    // Memory stayed bounded: one frozen memtable plus a full active one (and one write).
    assert!(
        stats.memtable_bytes <= 2 * memtable + 4096,
        "memtables grew to {} bytes after {at} writes",
        stats.memtable_bytes
    );
    gate.release();
    // Writes resume. A stall that times out under a loaded machine is retried, as a client
    // would; only other errors, or no progress for 30 s, fail the test.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for i in 0..200u32 {
        loop {
            let r = t.mutate_row(
                format!("after{i:05}").as_bytes(),
                vec![Mutation::set("f", b"q", 1, &value)],
            );
            match r {
                Ok(()) => break,
                Err(Error::Unavailable(_)) if std::time::Instant::now() < deadline => {}
                Err(e) => panic!("write {i} after release: {e}; {:?}", t.stats()),
            }
        }
    }
    t.force_flush().unwrap();
    assert!(t.stats().flushes >= 2);
}
