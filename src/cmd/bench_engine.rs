//! `quarry bench engine`: LevelDB/RocksDB `db_bench` workloads against one embedded tablet.
//!
//! Same workload names and meanings as `db_bench`, so `benches/compare_rocksdb.sh` can run
//! both with the same sizes and durability:
//! - `fillseq` / `fillrandom`: write `--num` keys in order / in random order into a fresh
//!   tablet; `overwrite`: rewrite random existing keys;
//! - `readrandom`: point reads of random keys; `readseq`: one scan of everything;
//! - `seekrandom`: position a scan at a random key and read one row.
//!
//! Keys are `--key-size` decimal digits (zero padded, as db_bench's `%016d`), each row holds
//! one cell `f:` at timestamp 0 (so an overwrite replaces it), values are `--value-size`
//! bytes that compress to half (db_bench's default `compression_ratio=0.5`). With `--sync`
//! every write is acknowledged only after its commit-log fsync (group commit shares fsyncs
//! between threads); without it writes reach the OS page cache before the ack.
//! `--num` operations are split evenly across `--threads`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use tablet::compaction::Policy;
use tablet::{
    CommitLog, CommitLogOptions, Mutation, ReadFilter, RowRange, Schema, Tablet, TabletConfig,
    TabletOptions,
};

/// Flags of `quarry bench engine`.
#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// Directory for the tablet (wiped by fill workloads).
    #[arg(long, default_value = "./quarry-bench-engine")]
    pub dir: PathBuf,
    /// Comma-separated workloads, run in order.
    #[arg(
        long,
        default_value = "fillseq,fillrandom,overwrite,readrandom,readseq,seekrandom"
    )]
    pub workloads: String,
    /// Operations per workload (keys for fills).
    #[arg(long, default_value_t = 1_000_000)]
    pub num: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1000)]
    pub value_size: usize,
    /// Key size in bytes.
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Fsync every write's commit-log record before acknowledging it.
    #[arg(long)]
    pub sync: bool,
    /// Client threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Block cache size in bytes (db_bench's default is 8 MiB).
    #[arg(long, default_value_t = 8 << 20)]
    pub cache_size: u64,
    /// SSTable data block size in bytes (db_bench's default is 4096).
    #[arg(long, default_value_t = 4096)]
    pub block_size: usize,
    /// Memtable size in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub memtable_size: u64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Random seed.
    #[arg(long, default_value_t = 301)]
    pub seed: u64,
    /// Compaction policy: size-tiered or leveled.
    #[arg(long, default_value = "size-tiered", value_parser = Policy::parse)]
    pub compaction: Policy,
}

/// One workload's figures.
#[derive(serde::Serialize, Debug, Clone)]
pub struct WorkloadResult {
    /// Workload name.
    pub name: String,
    /// Operations done.
    pub ops: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// User payload (keys + values) per second, in MB/s.
    pub mb_per_sec: f64,
    /// Median latency in microseconds.
    pub p50_us: u64,
    /// 99th percentile latency in microseconds.
    pub p99_us: u64,
    /// Rows found by reads (reads only).
    pub found: u64,
}

pub(crate) struct Engine {
    pub(crate) tablet: Arc<Tablet>,
}

pub(crate) fn open_engine(args: &EngineArgs, fresh: bool) -> Result<Engine> {
    if fresh && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("wiping {}", args.dir.display()))?;
    }
    std::fs::create_dir_all(&args.dir)?;
    let root = args.dir.canonicalize()?;
    let fs = sstable::RealFs::shared();
    let log = CommitLog::open(
        Arc::clone(&fs),
        &root.join("logs/bench"),
        CommitLogOptions {
            sync: args.sync,
            ..CommitLogOptions::default()
        },
    )?;
    let mut options = TabletOptions {
        memtable_bytes: args.memtable_size,
        ..TabletOptions::default()
    };
    options.table.block_size = args.block_size;
    options.set_policy(args.compaction.clone());
    let tablet = Tablet::open(TabletConfig {
        fs,
        root,
        dir: "tables/1/1".into(),
        id: 1,
        epoch: None,
        create: Some((RowRange::all(), Schema::with_families(["f"]))),
        schema: None,
        log: Arc::new(log),
        cache: Some(sstable::cache::BlockCache::new(args.cache_size)),
        options,
    })?;
    Ok(Engine {
        tablet: Arc::new(tablet),
    })
}

pub(crate) fn key(i: u64, size: usize) -> Vec<u8> {
    let s = format!("{i:0size$}");
    s.as_bytes()[s.len().saturating_sub(size)..].to_vec()
}

/// Values that compress to about half their size, made like db_bench's `RandomGenerator`:
/// one buffer of at least 1 MiB, built from 100-byte pieces that are half random printable
/// bytes and half a repeat of them, handed out as consecutive slices. Generating values
/// costs the driver almost nothing, so the figures measure the engine.
pub(crate) struct ValueGen {
    data: Vec<u8>,
    pos: usize,
}

impl ValueGen {
    pub(crate) fn new(rng: &mut impl Rng, value_size: usize) -> ValueGen {
        const PIECE: usize = 100;
        let len = (1 << 20).max(value_size);
        let mut data = Vec::with_capacity(len + PIECE);
        while data.len() < len {
            let raw: Vec<u8> = (0..PIECE / 2)
                .map(|_| rng.random_range(b' '..=b'~'))
                .collect();
            data.extend_from_slice(&raw);
            data.extend_from_slice(&raw);
        }
        ValueGen { data, pos: 0 }
    }

    pub(crate) fn next(&mut self, size: usize) -> &[u8] {
        if self.pos + size > self.data.len() {
            self.pos = 0;
        }
        self.pos += size;
        &self.data[self.pos - size..self.pos]
    }
}

#[derive(Clone, Copy, PartialEq)]
#[repr(u8)]
enum Kind {
    FillSeq,
    FillRandom,
    Overwrite,
    ReadRandom,
    ReadSeq,
    SeekRandom,
}

fn kind(name: &str) -> Result<Kind> {
    Ok(match name {
        "fillseq" => Kind::FillSeq,
        "fillrandom" => Kind::FillRandom,
        "overwrite" => Kind::Overwrite,
        "readrandom" => Kind::ReadRandom,
        "readseq" => Kind::ReadSeq,
        "seekrandom" => Kind::SeekRandom,
        _ => bail!("unknown workload {name:?} (fillseq, fillrandom, overwrite, readrandom, readseq, seekrandom)"),
    })
}

/// Runs one thread's share of a workload; returns (ops, found, histogram).
fn run_thread(
    t: &Tablet,
    k: Kind,
    args: &EngineArgs,
    thread: u64,
    range: std::ops::Range<u64>,
) -> Result<(u64, u64, Histogram<u64>)> {
    let mut hist = Histogram::<u64>::new(3)?;
    // Each workload and thread draws its own keys (db_bench seeds per thread and run too).
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(args.seed ^ (thread << 32) ^ ((k as u64) << 48));
    let mut values = ValueGen::new(&mut rng, args.value_size);
    let mut found = 0;
    let mut ops = 0;
    if k == Kind::ReadSeq {
        let start = Instant::now();
        for row in t.scan(&RowRange::all(), &ReadFilter::default(), None)? {
            row?;
            found += 1;
        }
        hist.record(start.elapsed().as_micros() as u64)?;
        return Ok((found, found, hist));
    }
    for i in range {
        let idx = match k {
            Kind::FillSeq => i,
            _ => rng.random_range(0..args.num),
        };
        let row = key(idx, args.key_size);
        let start = Instant::now();
        match k {
            Kind::FillSeq | Kind::FillRandom | Kind::Overwrite => {
                let v = values.next(args.value_size);
                t.mutate_row(&row, vec![Mutation::set("f", b"", 0, v)])?;
            }
            Kind::ReadRandom => {
                if t.read_row(&row, &ReadFilter::latest())?.is_some() {
                    found += 1;
                }
            }
            Kind::SeekRandom => {
                let range = RowRange::new(&row, b"");
                if let Some(r) = t.scan(&range, &ReadFilter::latest(), Some(1))?.next() {
                    r?;
                    found += 1;
                }
            }
            Kind::ReadSeq => unreachable!("handled above"),
        }
        hist.record(start.elapsed().as_micros().max(1) as u64)?;
        ops += 1;
    }
    Ok((ops, found, hist))
}

fn run_workload(e: &Engine, name: &str, args: &EngineArgs) -> Result<WorkloadResult> {
    let k = kind(name)?;
    let threads = if k == Kind::ReadSeq {
        1
    } else {
        args.threads.max(1) as u64
    };
    let per = args.num / threads;
    let start = Instant::now();
    let results: Vec<Result<(u64, u64, Histogram<u64>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|th| {
                let t = Arc::clone(&e.tablet);
                let range = th * per..if th + 1 == threads {
                    args.num
                } else {
                    (th + 1) * per
                };
                s.spawn(move || run_thread(&t, k, args, th, range))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .collect()
    });
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let mut hist = Histogram::<u64>::new(3)?;
    let (mut ops, mut found) = (0, 0);
    for r in results {
        let (o, f, h) = r?;
        ops += o;
        found += f;
        hist.add(h)?;
    }
    let bytes = ops as f64 * (args.key_size + args.value_size) as f64;
    Ok(WorkloadResult {
        name: name.to_string(),
        ops,
        seconds,
        ops_per_sec: ops as f64 / seconds,
        mb_per_sec: bytes / seconds / 1e6,
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        found,
    })
}

/// Runs `quarry bench engine`.
pub fn run(args: EngineArgs) -> Result<()> {
    let names: Vec<String> = args
        .workloads
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    for n in &names {
        kind(n)?;
    }
    println!(
        "quarry bench engine: num={} value_size={} key_size={} sync={} threads={} dir={}",
        args.num,
        args.value_size,
        args.key_size,
        args.sync,
        args.threads,
        args.dir.display()
    );
    let mut results = Vec::new();
    let mut engine: Option<Engine> = None;
    let mut written = WriteTotals::default();
    for name in &names {
        let fresh = name.starts_with("fill");
        if fresh || engine.is_none() {
            if let Some(e) = engine.take() {
                written.add(&e);
                close(e)?;
            }
            engine = Some(open_engine(&args, fresh)?);
        }
        let e = engine.as_ref().expect("opened above");
        let r = run_workload(e, name, &args)?;
        println!(
            "{:<12} : {:>10.0} ops/s {:>8.1} MB/s  p50 {:>6} us  p99 {:>7} us{}",
            r.name,
            r.ops_per_sec,
            r.mb_per_sec,
            r.p50_us,
            r.p99_us,
            if matches!(
                kind(name)?,
                Kind::ReadRandom | Kind::SeekRandom | Kind::ReadSeq
            ) {
                format!("  ({} of {} found)", r.found, r.ops)
            } else {
                String::new()
            }
        );
        results.push(r);
    }
    if let Some(e) = engine {
        written.add(&e);
        println!(
            "write amplification (SSTable bytes written / user bytes, all workloads): {:.2}; \
             SSTables now {:?}",
            written.amplification(),
            e.tablet.stats().sstables
        );
        close(e)?;
    }
    if let Some(path) = &args.json {
        write_json(path, &results)?;
    }
    Ok(())
}

/// Bytes written over every tablet a run opened, for write amplification summed over all
/// workloads (as db_bench's statistics count them).
#[derive(Default)]
struct WriteTotals {
    user: u64,
    sstable: u64,
}

impl WriteTotals {
    fn add(&mut self, e: &Engine) {
        let s = e.tablet.stats();
        self.user += s.user_bytes;
        self.sstable += s.flush_bytes + s.compaction_written;
    }

    fn amplification(&self) -> f64 {
        self.sstable as f64 / self.user.max(1) as f64
    }
}

pub(crate) fn close(e: Engine) -> Result<()> {
    let t = Arc::try_unwrap(e.tablet).map_err(|_| anyhow::anyhow!("tablet still in use"))?;
    t.close()?;
    Ok(())
}

fn write_json(path: &Path, results: &[WorkloadResult]) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(results)?)
        .with_context(|| format!("writing {}", path.display()))
}
