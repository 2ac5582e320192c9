//! S2, exhaustively: a power cut after *every* file-system operation of a workload that
//! writes, deletes, flushes, merges and major-compacts. That covers each named crash point
//! of RELIABILITY.md S2 (commit-log append before and after fsync, SSTable written before
//! fsync, before and after the manifest rename, after a rename before the directory fsync,
//! compaction output published before input deletion) and every point between them.
//!
//! After each cut the tablet must open, hold every acknowledged write, resurrect no
//! acknowledged delete, and show the one write in flight at the cut either whole or not at
//! all.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sstable::fault::FaultFs;
use sstable::{Error, Fs, RandomAccessFile, Result, WritableFile};
use tablet::{Mutation, ReadFilter, RowRange, Tablet};

/// Counts mutating operations; at operation `crash_at` cuts the power and fails from then on.
struct CrashFs {
    inner: FaultFs,
    ops: AtomicU64,
    crash_at: u64,
}

impl CrashFs {
    fn tick(&self, what: &'static str, path: &Path) -> Result<()> {
        let n = self.ops.fetch_add(1, Ordering::SeqCst) + 1;
        if std::env::var("CRASH_TRACE").is_ok() && self.crash_at == u64::MAX {
            eprintln!("op {n}: {what} {}", path.display());
        }
        if n == self.crash_at {
            self.inner.power_cut();
        }
        if n >= self.crash_at {
            return Err(Error::io(what, path, std::io::Error::other("power cut")));
        }
        Ok(())
    }
}

struct CrashFile {
    fs: Arc<CrashFs>,
    path: std::path::PathBuf,
    inner: Box<dyn WritableFile>,
}

impl WritableFile for CrashFile {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.fs.tick("append", &self.path)?;
        self.inner.append(data)
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
    fn sync(&mut self) -> Result<()> {
        self.fs.tick("sync", &self.path)?;
        self.inner.sync()
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
}

struct Handle(Arc<CrashFs>);

impl Fs for Handle {
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        self.0.tick("create", path)?;
        let inner = self.0.inner.create(path)?;
        Ok(Box::new(CrashFile {
            fs: Arc::clone(&self.0),
            path: path.into(),
            inner,
        }))
    }
    fn open_append(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        self.0.tick("open", path)?;
        let inner = self.0.inner.open_append(path)?;
        Ok(Box::new(CrashFile {
            fs: Arc::clone(&self.0),
            path: path.into(),
            inner,
        }))
    }
    fn open(&self, path: &Path) -> Result<Arc<dyn RandomAccessFile>> {
        self.0.inner.open(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.0.tick("rename", from)?;
        self.0.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> Result<()> {
        self.0.tick("remove", path)?;
        self.0.inner.remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> Result<()> {
        self.0.tick("mkdir", path)?;
        self.0.inner.create_dir_all(path)
    }
    fn remove_dir_all(&self, path: &Path) -> Result<()> {
        self.0.tick("rmdir", path)?;
        self.0.inner.remove_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        self.0.inner.list_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> Result<()> {
        self.0.tick("sync dir", path)?;
        self.0.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.0.inner.exists(path)
    }
    fn file_size(&self, path: &Path) -> Result<u64> {
        self.0.inner.file_size(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> Result<()> {
        self.0.tick("truncate", path)?;
        self.0.inner.truncate(path, len)
    }
}

/// The workload: writes, overwrites and deletes of 12 rows, with flushes, merges and a
/// major compaction between them (the memtable is tiny, so flushes also happen inline).
fn step(i: u32) -> (Vec<u8>, Vec<Mutation>) {
    let row = format!("row{:02}", (i * 7) % 12).into_bytes();
    let m = if i % 9 == 8 {
        vec![Mutation::DeleteRow]
    } else {
        vec![
            Mutation::set("f", b"q", 1, format!("v{i}-{}", "x".repeat(150)).as_bytes()),
            Mutation::set("m", b"q", 1, format!("m{i}").as_bytes()),
        ]
    };
    (row, m)
}

const STEPS: u32 = 90;

type Model = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

fn apply(model: &mut Model, row: &[u8], muts: &[Mutation]) {
    let v = match &muts[0] {
        Mutation::SetCell { value, .. } => Some(value.clone()),
        _ => None,
    };
    model.insert(row.to_vec(), v);
}

fn value(t: &Tablet, row: &[u8]) -> Option<Vec<u8>> {
    let f = ReadFilter {
        families: Some(vec!["f".into()]),
        versions_per_column: Some(1),
        ..Default::default()
    };
    t.read_row(row, &f)
        .unwrap()
        .map(|r| r.cells[0].value.clone())
}

/// Runs the workload until the crash; returns the model of acknowledged writes and the
/// step in flight when the crash hit (if any).
fn run_until_crash(fs: Arc<dyn Fs>) -> (Model, Option<u32>) {
    let mut model = Model::new();
    let t = match common::open(
        fs,
        Path::new(common::ROOT),
        "logs/a",
        common::small_options(false),
    ) {
        Ok(t) => t,
        Err(_) => return (model, None),
    };
    for i in 0..STEPS {
        let (row, muts) = step(i);
        let r = match i {
            30 | 60 => t.force_flush(),
            45 => t.force_merging_compactions(),
            75 => t.force_major_compaction(),
            _ => Ok(()),
        };
        if r.is_err() {
            return (model, None);
        }
        if t.mutate_row(&row, muts.clone()).is_err() {
            return (model, Some(i));
        }
        apply(&mut model, &row, &muts);
    }
    (model, None)
}

#[test]
fn power_cut_after_every_operation_keeps_acknowledged_writes() {
    // A dry run counts the operations.
    let dry = Arc::new(CrashFs {
        inner: common::fault_fs(),
        ops: AtomicU64::new(0),
        crash_at: u64::MAX,
    });
    let (full, _) = run_until_crash(Arc::new(Handle(Arc::clone(&dry))));
    assert_eq!(full.len(), 12);
    let total = dry.ops.load(Ordering::SeqCst);
    assert!(
        total > 200,
        "the workload should do many operations, did {total}"
    );

    for crash_at in 1..=total {
        let inner = common::fault_fs();
        let crash = Arc::new(CrashFs {
            inner: inner.clone(),
            ops: AtomicU64::new(0),
            crash_at,
        });
        let (model, in_flight) = run_until_crash(Arc::new(Handle(crash)));
        let t = common::open(
            inner.shared(),
            Path::new(common::ROOT),
            "logs/b",
            common::small_options(false),
        )
        .unwrap_or_else(|e| panic!("crash at op {crash_at}: tablet does not open: {e}"));
        let flight = in_flight.map(step);
        for (row, want) in &model {
            let got = value(&t, row);
            let ok = match &flight {
                Some((frow, fmuts)) if frow == row => {
                    let mut after = model.clone();
                    apply(&mut after, frow, fmuts);
                    got == *want || got == after[row]
                }
                _ => got == *want,
            };
            assert!(
                ok,
                "crash at op {crash_at}: row {:?} is {got:?}, want {want:?}",
                String::from_utf8_lossy(row)
            );
        }
        let rows = t
            .scan(&RowRange::all(), &ReadFilter::default(), None)
            .unwrap()
            .count();
        assert!(rows <= 12, "crash at op {crash_at}: {rows} rows");
    }
}
