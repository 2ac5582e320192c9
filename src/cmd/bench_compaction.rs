//! `quarry bench compaction`: what a compaction policy costs, over one run.
//!
//! Runs a write workload on one embedded tablet (real files; commit-log fsync per write
//! with `--sync`) under `--policy`, sampling the tablet's counters every `--interval-ms`:
//!
//! - write amplification: SSTable bytes written by flushes and compactions / bytes of
//!   mutations accepted (as `quarry bench engine` and db_bench's statistics count it);
//! - read amplification: SSTables probed per point lookup (after Bloom filters and key
//!   ranges; the tablet's `sst_probes / gets`, from `--probe-reads` random reads per
//!   sample), and SSTables a seek must position (level-0 files plus non-empty levels);
//! - space amplification: SSTable bytes / live bytes, where live bytes = live keys now x
//!   bytes per live key after a final major compaction (measured once, at the end);
//! - compaction throughput (MB/s written by compactions in the interval) and write stalls
//!   (writes that waited for a flush, per interval), beside the write rate.
//!
//! Workloads (keys uniform over `0..num`, one 1000-byte half-compressible value per row):
//! `fillrandom` (num writes), `overwrite` (num writes, then num more), `update-delete`
//! (num writes, then num operations: 70% writes, 30% row deletes). Each panel of the SVG
//! (`--svg`) plots one figure over the run. Unless `--no-db-bench`, RocksDB's `db_bench`
//! then runs the same workload with the same sizes (its nearest: `fillrandom`;
//! `fillrandom,overwrite`; `fillrandom,overwrite,deleterandom` with the 70/30 split run as
//! phases, not interleaved), and its statistics give the same final figures.
//!
//! `--simulate` runs the policy in the simulator instead (`tablet::compaction::sim`): no
//! I/O, synthetic flushes of half a memtable each over the whole key space.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use tablet::compaction::sim::{KeyPattern, Simulator};
use tablet::compaction::Policy;
use tablet::{Mutation, ReadFilter, Tablet, TabletStats};

use super::bench_engine::{self, EngineArgs, ValueGen};
use super::bench_plot::{write_svg, Panel};

/// Flags of `quarry bench compaction`.
#[derive(clap::Args, Debug, Clone)]
pub struct CompactionArgs {
    /// Compaction policy: size-tiered or leveled.
    #[arg(long, default_value = "leveled", value_parser = Policy::parse)]
    pub policy: Policy,
    /// Workload: fillrandom, overwrite or update-delete.
    #[arg(long, default_value = "overwrite")]
    pub workload: String,
    /// Run the policy in the simulator (no I/O) instead of on a tablet.
    #[arg(long)]
    pub simulate: bool,
    /// Keys (and operations per phase).
    #[arg(long, default_value_t = 500_000)]
    pub num: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1000)]
    pub value_size: usize,
    /// Key size in bytes.
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Memtable size in bytes (db_bench's --write_buffer_size).
    #[arg(long, default_value_t = 16 << 20)]
    pub memtable_size: u64,
    /// Fsync every write's commit-log record before acknowledging it.
    #[arg(long)]
    pub sync: bool,
    /// Sampling interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Random point reads per sample, for SSTables probed per lookup.
    #[arg(long, default_value_t = 200)]
    pub probe_reads: u64,
    /// Tablet directory (wiped first).
    #[arg(long, default_value = "./quarry-bench-compaction")]
    pub dir: PathBuf,
    /// Write the plot here (default: `<dir>/compaction-<policy>-<workload>.svg`).
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Skip RocksDB's db_bench.
    #[arg(long)]
    pub no_db_bench: bool,
    /// Random seed.
    #[arg(long, default_value_t = 301)]
    pub seed: u64,
}

/// One sample of a run.
#[derive(Clone, Debug, Default)]
struct Sample {
    secs: f64,
    ops: u64,
    live_keys: u64,
    stats: TabletStats,
    probes_per_lookup: f64,
}

/// Which operations a workload does after its fill.
fn phases(workload: &str) -> Result<u8> {
    Ok(match workload {
        "fillrandom" => 1,
        "overwrite" => 2,
        "update-delete" => 3,
        other => bail!("unknown workload {other:?} (fillrandom, overwrite, update-delete)"),
    })
}

/// Runs `quarry bench compaction`.
pub fn run(args: CompactionArgs) -> Result<()> {
    let kind = phases(&args.workload)?;
    let svg = args.svg.clone().unwrap_or_else(|| {
        args.dir.with_file_name(format!(
            "compaction-{}-{}{}.svg",
            args.policy.name(),
            args.workload,
            if args.simulate { "-sim" } else { "" }
        ))
    });
    if args.simulate {
        return simulate(&args, kind, &svg);
    }
    println!(
        "quarry bench compaction: policy={} workload={} num={} value={} memtable={} sync={}",
        args.policy.name(),
        args.workload,
        args.num,
        args.value_size,
        args.memtable_size,
        args.sync
    );
    let engine_args = EngineArgs {
        dir: args.dir.clone(),
        workloads: String::new(),
        num: args.num,
        value_size: args.value_size,
        key_size: args.key_size,
        sync: args.sync,
        threads: 1,
        cache_size: 8 << 20,
        block_size: 4096,
        memtable_size: args.memtable_size,
        json: None,
        seed: args.seed,
        compaction: args.policy.clone(),
    };
    let engine = bench_engine::open_engine(&engine_args, true)?;
    let t = Arc::clone(&engine.tablet);
    let samples = drive(&t, &args, kind)?;
    let end = t.stats();
    let start = Instant::now();
    t.force_major_compaction()?;
    let live_bytes = t.stats().sst_bytes;
    let live_keys = samples.last().map_or(0, |s| s.live_keys).max(1);
    println!(
        "final major compaction: {:.1} s, live bytes {} ({:.0} per live key, {} live keys)",
        start.elapsed().as_secs_f64(),
        live_bytes,
        live_bytes as f64 / live_keys as f64,
        live_keys
    );
    drop(t);
    bench_engine::close(engine)?;
    let per_key = live_bytes as f64 / live_keys as f64;
    report(&args, &samples, &end, per_key, &svg)?;
    if !args.no_db_bench {
        db_bench(&args, kind)?;
    }
    Ok(())
}

/// Runs the workload with a sampler beside it; returns the samples.
fn drive(t: &Arc<Tablet>, args: &CompactionArgs, kind: u8) -> Result<Vec<Sample>> {
    let ops = AtomicU64::new(0);
    let live = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let began = Instant::now();
    std::thread::scope(|s| {
        let sampler = s.spawn(|| sample_loop(t, args, &ops, &live, &done, began));
        let r = write_loop(t, args, kind, &ops, &live);
        done.store(true, Ordering::SeqCst);
        let samples = sampler.join().expect("sampler panicked");
        r.map(|_| samples)
    })
}

fn write_loop(
    t: &Tablet,
    args: &CompactionArgs,
    kind: u8,
    ops: &AtomicU64,
    live: &AtomicU64,
) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut values = ValueGen::new(&mut rng, args.value_size);
    let mut present = vec![false; args.num as usize];
    let total = if kind == 1 { args.num } else { 2 * args.num };
    for i in 0..total {
        let k = rng.random_range(0..args.num);
        let row = bench_engine::key(k, args.key_size);
        let delete = kind == 3 && i >= args.num && rng.random_bool(0.3);
        if delete {
            t.mutate_row(&row, vec![Mutation::DeleteRow])?;
        } else {
            let v = values.next(args.value_size);
            t.mutate_row(&row, vec![Mutation::set("f", b"", 0, v)])?;
        }
        let slot = &mut present[k as usize];
        if *slot == delete {
            *slot = !delete;
            if delete {
                live.fetch_sub(1, Ordering::Relaxed);
            } else {
                live.fetch_add(1, Ordering::Relaxed);
            }
        }
        ops.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn sample_loop(
    t: &Tablet,
    args: &CompactionArgs,
    ops: &AtomicU64,
    live: &AtomicU64,
    done: &AtomicBool,
    began: Instant,
) -> Vec<Sample> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed ^ 0x5a5a);
    let mut out = Vec::new();
    let interval = Duration::from_millis(args.interval_ms.max(10));
    let mut next = began + interval;
    loop {
        let finished = done.load(Ordering::SeqCst);
        if !finished {
            let now = Instant::now();
            if now < next {
                std::thread::sleep((next - now).min(Duration::from_millis(50)));
                continue;
            }
            next += interval;
        }
        let before = t.stats();
        for _ in 0..args.probe_reads {
            let row = bench_engine::key(rng.random_range(0..args.num), args.key_size);
            // A failed read shows up in the writer's result; the sampler only counts.
            let _ = t.read_row(&row, &ReadFilter::latest());
        }
        let stats = t.stats();
        let lookups = (stats.gets - before.gets).max(1);
        out.push(Sample {
            secs: began.elapsed().as_secs_f64(),
            ops: ops.load(Ordering::Relaxed),
            live_keys: live.load(Ordering::Relaxed),
            probes_per_lookup: (stats.sst_probes - before.sst_probes) as f64 / lookups as f64,
            stats,
        });
        if finished {
            return out;
        }
    }
}

fn write_amp(s: &TabletStats) -> f64 {
    (s.flush_bytes + s.compaction_written) as f64 / s.user_bytes.max(1) as f64
}

fn seek_sources(s: &TabletStats) -> usize {
    let l0 = s.sstables_per_level.first().copied().unwrap_or(0);
    l0 + s
        .sstables_per_level
        .iter()
        .skip(1)
        .filter(|&&n| n > 0)
        .count()
}

/// Prints the per-sample table and the summary, and writes the SVG.
fn report(
    args: &CompactionArgs,
    samples: &[Sample],
    end: &TabletStats,
    per_key: f64,
    svg: &Path,
) -> Result<()> {
    println!("  time   ops/s  w-amp  probes/get  seek-files  s-amp  compact MB/s  stalls");
    let mut panels: Vec<Panel> = [
        "write amplification",
        "SSTables probed per lookup",
        "SSTables per seek",
        "space amplification",
        "compaction MB/s",
        "write stalls per interval",
        "writes/s",
    ]
    .iter()
    .map(|n| Panel::new(n))
    .collect();
    let mut prev = Sample::default();
    for s in samples {
        let dt = (s.secs - prev.secs).max(1e-3);
        let live = (s.live_keys as f64 * per_key).max(1.0);
        let row = [
            write_amp(&s.stats),
            s.probes_per_lookup,
            seek_sources(&s.stats) as f64,
            s.stats.sst_bytes as f64 / live,
            (s.stats.compaction_written - prev.stats.compaction_written) as f64 / dt / 1e6,
            (s.stats.stalls - prev.stats.stalls) as f64,
            (s.ops - prev.ops) as f64 / dt,
        ];
        println!(
            "{:6.1} {:7.0} {:6.2} {:11.2} {:11} {:6.2} {:13.1} {:7}",
            s.secs, row[6], row[0], row[1], row[2], row[3], row[4], row[5]
        );
        for (p, v) in panels.iter_mut().zip(row) {
            p.points.push((s.secs, v));
        }
        prev = s.clone();
    }
    let last = samples.last().cloned().unwrap_or_default();
    let secs = last.secs.max(1e-3);
    println!(
        "summary (quarry, {}): {:.0} writes/s, write amp {:.2}, probes/lookup {:.2}, \
         SSTables per seek {}, space amp {:.2} (before the final major compaction), \
         compaction {:.1} MB/s over the run, {} stalls, {} compactions, {} trivial moves, \
         SSTables per level {:?}",
        args.policy.name(),
        last.ops as f64 / secs,
        write_amp(end),
        last.probes_per_lookup,
        seek_sources(end),
        end.sst_bytes as f64 / (last.live_keys as f64 * per_key).max(1.0),
        end.compaction_written as f64 / secs / 1e6,
        end.stalls,
        end.compactions,
        end.trivial_moves,
        end.sstables_per_level
    );
    let title = format!(
        "quarry bench compaction --policy {} --workload {} --num {}",
        args.policy.name(),
        args.workload,
        args.num
    );
    write_svg(svg, &title, "seconds", &panels)?;
    println!("plot: {}", svg.display());
    Ok(())
}

/// `--simulate`: the policy in the simulator, flushes of half a memtable (LZ4 halves the
/// values) over the whole key space.
fn simulate(args: &CompactionArgs, kind: u8, svg: &Path) -> Result<()> {
    let per_key = ((args.key_size + args.value_size) / 2) as u64;
    let flush = args.memtable_size / 2;
    let ops = if kind == 1 { args.num } else { 2 * args.num };
    let flushes = (ops * per_key).div_ceil(flush.max(1)) as usize;
    let mut sim = Simulator::new(args.policy.clone(), args.num, per_key);
    let points = sim.run(KeyPattern::Random, flushes, flush);
    let mut panels: Vec<Panel> = [
        "write amplification",
        "files per lookup",
        "space amplification",
    ]
    .iter()
    .map(|n| Panel::new(n))
    .collect();
    for p in &points {
        let x = p.flushes as f64;
        panels[0].points.push((x, p.write_amp()));
        panels[1].points.push((x, p.read_amp as f64));
        panels[2].points.push((x, p.space_amp()));
    }
    let last = points.last().cloned().unwrap_or_default();
    let max_read = points.iter().map(|p| p.read_amp).max().unwrap_or(0);
    println!(
        "simulated {} on {} ({} flushes of {} B over {} keys): write amp {:.2}, \
         files per lookup {} (max {}), space amp {:.2}, {} compactions, {} files at the end",
        args.policy.name(),
        args.workload,
        flushes,
        flush,
        args.num,
        last.write_amp(),
        last.read_amp,
        max_read,
        last.space_amp(),
        sim.compactions,
        last.files
    );
    let title = format!(
        "simulated --policy {} --workload {} --num {}",
        args.policy.name(),
        args.workload,
        args.num
    );
    write_svg(svg, &title, "flushes", &panels)?;
    println!("plot: {}", svg.display());
    Ok(())
}

/// RocksDB's db_bench on the nearest workload, then a full compaction for live bytes.
fn db_bench(args: &CompactionArgs, kind: u8) -> Result<()> {
    let benchmarks = match kind {
        1 => "fillrandom".to_string(),
        2 => "fillrandom,overwrite".to_string(),
        _ => "fillrandom,overwrite,deleterandom".to_string(),
    };
    let db = args.dir.with_file_name("rocksdb-bench-compaction");
    let _ = std::fs::remove_dir_all(&db);
    let common = |bench: &str, num: u64, existing: bool| -> Vec<String> {
        vec![
            format!("--benchmarks={bench},stats"),
            format!("--num={num}"),
            format!("--value_size={}", args.value_size),
            format!("--key_size={}", args.key_size),
            format!("--db={}", db.display()),
            format!("--sync={}", u8::from(args.sync)),
            "--compression_type=lz4".into(),
            "--compression_ratio=0.5".into(),
            "--block_size=4096".into(),
            "--cache_size=8388608".into(),
            format!("--write_buffer_size={}", args.memtable_size),
            format!("--use_existing_db={}", u8::from(existing)),
            "--statistics=1".into(),
            "--progress_reports=0".into(),
            format!("--seed={}", args.seed),
        ]
    };
    let mut text = String::new();
    for (i, bench) in benchmarks.split(',').enumerate() {
        let num = match bench {
            "overwrite" if kind == 3 => args.num * 7 / 10,
            "deleterandom" => args.num * 3 / 10,
            _ => args.num,
        };
        text += &run_db_bench(&common(bench, num, i > 0))?;
    }
    let compacted = run_db_bench(&common("compact", 1, true))?;
    let _ = std::fs::remove_dir_all(&db);
    let f = super::bench_rocksdb_stats::parse(&text, &compacted);
    println!(
        "summary (rocksdb db_bench, leveled, {benchmarks}): write amp {:.2}, files per seek {} \
         (L0 {} + {} levels), space amp {:.2}, compaction {:.1} MB/s, stalls {:.2} s, \
         files per level {:?}",
        f.write_amp,
        f.seek_files(),
        f.files_per_level.first().copied().unwrap_or(0),
        f.files_per_level.iter().skip(1).filter(|&&n| n > 0).count(),
        f.space_amp(),
        f.compaction_mb_per_sec,
        f.stall_secs,
        f.files_per_level
    );
    Ok(())
}

fn run_db_bench(flags: &[String]) -> Result<String> {
    let out = Command::new("db_bench")
        .args(flags)
        .output()
        .context("running db_bench (Debian package rocksdb-tools; or pass --no-db-bench)")?;
    if !out.status.success() {
        bail!(
            "db_bench failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).replace('\r', "\n"))
}
