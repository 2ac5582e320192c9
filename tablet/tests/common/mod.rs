//! Shared set-up for the tablet tests: a tablet on the fault-injecting file system (or a
//! real directory), with its own commit log.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sstable::fault::FaultFs;
use sstable::Fs;
use tablet::{
    CommitLog, CommitLogOptions, GcPolicy, RowRange, Schema, Tablet, TabletConfig, TabletOptions,
};

/// Where the data root lives on the fault file system.
pub const ROOT: &str = "/data";

/// The schema of the tests: `f` (no GC), `g` (2 versions), `m` (in its own in-memory
/// locality group).
pub fn schema() -> Schema {
    let mut s = Schema::default();
    s.add_family("f", GcPolicy::Never, "default").unwrap();
    s.add_family("g", GcPolicy::MaxVersions(2), "default")
        .unwrap();
    s.add_family("m", GcPolicy::Never, "mem").unwrap();
    s.groups.get_mut("mem").unwrap().in_memory = true;
    s
}

/// Small memtables and SSTable blocks, so flushes and compactions happen often.
pub fn small_options(background: bool) -> TabletOptions {
    let mut o = TabletOptions {
        memtable_bytes: 4 * 1024,
        background,
        ..TabletOptions::default()
    };
    o.table.block_size = 512;
    o.compaction.min_merge = 3;
    o.compaction.min_size = 1 << 20;
    o.wall_clock = Arc::new(|| 1_000_000);
    o
}

/// Opens tablet 1 (all rows) under `root` with a fresh commit log in `log_dir`.
pub fn open(
    fs: Arc<dyn Fs>,
    root: &Path,
    log_dir: &str,
    opts: TabletOptions,
) -> tablet::Result<Tablet> {
    let log = Arc::new(CommitLog::open(
        Arc::clone(&fs),
        &root.join(log_dir),
        CommitLogOptions::default(),
    )?);
    Tablet::open(TabletConfig {
        fs,
        root: PathBuf::from(root),
        dir: "tables/1/1".into(),
        id: 1,
        epoch: None,
        create: Some((RowRange::all(), schema())),
        schema: None,
        log,
        cache: Some(sstable::cache::BlockCache::new(1 << 20)),
        options: opts,
    })
}

/// A fresh in-memory fault file system.
pub fn fault_fs() -> FaultFs {
    FaultFs::new()
}
