//! `quarry bench ycsb`: the YCSB core workloads against a cluster or an embedded tablet.
//!
//! Same definitions as YCSB's `workloads/workload[a-f]`: records of `--fields` fields of
//! `--field-size` bytes (default 10 x 100 B) in family `f` (qualifiers `field0`..), keys
//! `user<FNV-1a 64 of the key number>` (YCSB's hashed insert order). A load phase inserts
//! `--records` records, then `--operations` operations run from `--threads` threads:
//!
//! | workload | mix                              | request distribution |
//! |----------|----------------------------------|----------------------|
//! | a        | 50% read, 50% update             | zipfian              |
//! | b        | 95% read, 5% update              | zipfian              |
//! | c        | 100% read                        | zipfian              |
//! | d        | 95% read, 5% insert              | latest               |
//! | e        | 95% scan (1..=100 rows), 5% insert | zipfian            |
//! | f        | 50% read, 50% read-modify-write  | zipfian              |
//!
//! Zipfian is YCSB's scrambled zipfian (constant 0.99, hashed over the key space); latest
//! draws a zipfian distance back from the newest inserted key; `--distribution uniform`
//! overrides. A read reads the whole row, an update writes one field, a read-modify-write
//! reads the row and writes one field. Every write is durable before its ack (the
//! cluster's commit log fsyncs; `--embedded` opens a tablet with `--sync` semantics on).
//! Latencies go to one hdrhistogram per operation type.
//!
//! Against a cluster (`quarry dev`'s lock-service addresses by default) the table
//! `--table` is created if missing, pre-split into `--splits` + 1 tablets.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use client::{Client, ClientConfig, ColumnFamily};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use tablet::{Mutation, ReadFilter, RowRange, Tablet};

use super::bench_engine::{self, EngineArgs};
use super::lock::DEFAULT_LOCK_ADDRS;

/// Flags of `quarry bench ycsb`.
#[derive(clap::Args, Debug, Clone)]
pub struct YcsbArgs {
    /// Core workload: a, b, c, d, e or f.
    #[arg(long, default_value = "a")]
    pub workload: String,
    /// Records loaded before the run.
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Operations in the run.
    #[arg(long, default_value_t = 100_000)]
    pub operations: u64,
    /// Client threads.
    #[arg(long, default_value_t = 8)]
    pub threads: u64,
    /// Fields per record.
    #[arg(long, default_value_t = 10)]
    pub fields: usize,
    /// Bytes per field.
    #[arg(long, default_value_t = 100)]
    pub field_size: usize,
    /// Override the workload's request distribution: zipfian, latest or uniform.
    #[arg(long)]
    pub distribution: Option<String>,
    /// Skip the load phase (the records are already there).
    #[arg(long)]
    pub skip_load: bool,
    /// Run against one tablet embedded in this process instead of a cluster.
    #[arg(long)]
    pub embedded: bool,
    /// Directory of the embedded tablet (wiped first unless --skip-load).
    #[arg(long, default_value = "./quarry-bench-ycsb")]
    pub dir: std::path::PathBuf,
    /// Lock-service replicas of the cluster.
    #[arg(long = "lock", env = "QUARRY_LOCK", default_value = DEFAULT_LOCK_ADDRS)]
    pub lock: String,
    /// Table name on the cluster.
    #[arg(long, default_value = "usertable")]
    pub table: String,
    /// Split points of a newly created table (evenly over the hashed key space).
    #[arg(long, default_value_t = 0)]
    pub splits: u64,
    /// Random seed.
    #[arg(long, default_value_t = 301)]
    pub seed: u64,
}

/// What a workload does.
#[derive(Clone, Copy, Debug)]
struct Mix {
    read: f64,
    update: f64,
    insert: f64,
    scan: f64,
    dist: Dist,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Dist {
    Zipfian,
    Latest,
    Uniform,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Read,
    Update,
    Insert,
    Scan,
    ReadModifyWrite,
}

fn mix(w: &str) -> Result<Mix> {
    let m = |read, update, insert, scan, dist| Mix {
        read,
        update,
        insert,
        scan,
        dist,
    };
    Ok(match w {
        "a" => m(0.5, 0.5, 0.0, 0.0, Dist::Zipfian),
        "b" => m(0.95, 0.05, 0.0, 0.0, Dist::Zipfian),
        "c" => m(1.0, 0.0, 0.0, 0.0, Dist::Zipfian),
        "d" => m(0.95, 0.0, 0.05, 0.0, Dist::Latest),
        "e" => m(0.0, 0.0, 0.05, 0.95, Dist::Zipfian),
        // The other half is read-modify-write.
        "f" => m(0.5, 0.0, 0.0, 0.0, Dist::Zipfian),
        other => bail!("unknown YCSB workload {other:?} (a, b, c, d, e, f)"),
    })
}

/// FNV-1a 64, as YCSB's `Utils.fnvhash64` (key scrambling).
fn fnv64(mut v: u64) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for _ in 0..8 {
        h ^= v & 0xff;
        h = h.wrapping_mul(0x0100_0000_01B3);
        v >>= 8;
    }
    h
}

fn ycsb_key(n: u64) -> Vec<u8> {
    format!("user{:020}", fnv64(n)).into_bytes()
}

/// YCSB's zipfian generator (Gray et al., "Quickly generating billion-record synthetic
/// databases"), constant 0.99, over `0..n` (n covers the records and every insert a run
/// may add).
struct Zipf {
    n: u64,
    theta: f64,
    zetan: f64,
    zeta2: f64,
    alpha: f64,
    eta: f64,
}

impl Zipf {
    fn new(n: u64) -> Zipf {
        let theta = 0.99;
        let zetan = (1..=n.max(1)).map(|i| 1.0 / (i as f64).powf(theta)).sum();
        let mut z = Zipf {
            n: n.max(1),
            theta,
            zetan,
            zeta2: 1.0 + 1.0 / 2f64.powf(theta),
            alpha: 1.0 / (1.0 - theta),
            eta: 0.0,
        };
        z.eta = z.eta();
        z
    }

    fn eta(&self) -> f64 {
        (1.0 - (2.0 / self.n as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2 / self.zetan)
    }

    /// A value in `0..n`, 0 the most popular.
    fn next(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.random();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < self.zeta2 {
            return 1;
        }
        let v = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        v.min(self.n - 1)
    }
}

/// Where the records live.
enum Store {
    Embedded(Arc<Tablet>),
    Cluster {
        client: Arc<Client>,
        rt: Arc<tokio::runtime::Runtime>,
        table: String,
    },
}

impl Store {
    fn write(&self, row: &[u8], muts: Vec<Mutation>) -> Result<()> {
        match self {
            Store::Embedded(t) => Ok(t.mutate_row(row, muts)?),
            Store::Cluster { client, rt, table } => {
                Ok(rt.block_on(client.mutate_row(table, row, muts))?)
            }
        }
    }

    fn read(&self, row: &[u8]) -> Result<bool> {
        let f = ReadFilter::latest();
        match self {
            Store::Embedded(t) => Ok(t.read_row(row, &f)?.is_some()),
            Store::Cluster { client, rt, table } => {
                Ok(rt.block_on(client.read_row(table, row, &f))?.is_some())
            }
        }
    }

    fn scan(&self, start: &[u8], rows: u64) -> Result<usize> {
        let f = ReadFilter::latest();
        let range = RowRange::new(start, b"");
        match self {
            Store::Embedded(t) => Ok(t.scan(&range, &f, Some(rows as usize))?.count()),
            Store::Cluster { client, rt, table } => Ok(rt
                .block_on(client.read_rows(table, range, &f, rows).collect_rows())?
                .len()),
        }
    }
}

fn record(args: &YcsbArgs, rng: &mut impl Rng) -> Vec<Mutation> {
    (0..args.fields).map(|i| field(args, i, rng)).collect()
}

fn field(args: &YcsbArgs, i: usize, rng: &mut impl Rng) -> Mutation {
    let v: Vec<u8> = (0..args.field_size)
        .map(|_| rng.random_range(b' '..=b'~'))
        .collect();
    Mutation::set("f", format!("field{i}").as_bytes(), 0, &v)
}

fn open_store(args: &YcsbArgs) -> Result<Store> {
    if args.embedded {
        let e = bench_engine::open_engine(
            &EngineArgs {
                dir: args.dir.clone(),
                workloads: String::new(),
                num: args.records,
                value_size: args.field_size,
                key_size: 24,
                sync: true,
                threads: args.threads as usize,
                cache_size: 64 << 20,
                block_size: 4096,
                memtable_size: 64 << 20,
                json: None,
                seed: args.seed,
                compaction: tablet::compaction::Policy::parse("leveled").expect("known"),
            },
            !args.skip_load,
        )?;
        return Ok(Store::Embedded(e.tablet));
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?,
    );
    let client = Client::new(ClientConfig::from_addr_list(&args.lock)?)
        .context("cannot set up the client")?;
    if rt.block_on(client.get_table(&args.table)).is_err() {
        let splits = (1..=args.splits)
            .map(|i| format!("user{:020}", u64::MAX / (args.splits + 1) * i).into_bytes())
            .collect();
        let fam = ColumnFamily {
            name: "f".into(),
            gc_policy: "maxversions=1".into(),
            locality_group: String::new(),
        };
        rt.block_on(client.create_table(&args.table, vec![fam], splits))
            .with_context(|| format!("creating table {}", args.table))?;
    }
    Ok(Store::Cluster {
        client: Arc::new(client),
        rt,
        table: args.table.clone(),
    })
}

type Hists = BTreeMap<Op, Histogram<u64>>;

fn timed(h: &mut Hists, op: Op, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let start = Instant::now();
    f()?;
    let us = start.elapsed().as_micros().max(1) as u64;
    h.entry(op)
        .or_insert_with(|| Histogram::new(3).expect("3 digits"))
        .record(us)?;
    Ok(())
}

/// Runs `count` operations of `phase` (load or run) from `args.threads` threads.
fn phase(store: &Store, args: &YcsbArgs, load: bool, inserted: &AtomicU64) -> Result<Hists> {
    let m = mix(&args.workload)?;
    let dist = match args.distribution.as_deref() {
        None => m.dist,
        Some("zipfian") => Dist::Zipfian,
        Some("latest") => Dist::Latest,
        Some("uniform") => Dist::Uniform,
        Some(o) => bail!("unknown distribution {o:?} (zipfian, latest, uniform)"),
    };
    let count = if load { args.records } else { args.operations };
    let threads = args.threads.max(1);
    let zipf = Zipf::new(args.records + if load { 0 } else { args.operations });
    let results: Vec<Result<Hists>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let zipf = &zipf;
                s.spawn(move || -> Result<Hists> {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed ^ (t << 20));
                    let mut h = Hists::new();
                    let share = count / threads + u64::from(t < count % threads);
                    for i in 0..share {
                        if load {
                            let n = t + i * threads;
                            let rec = record(args, &mut rng);
                            timed(&mut h, Op::Insert, || store.write(&ycsb_key(n), rec))?;
                            continue;
                        }
                        one_op(store, args, &m, dist, zipf, inserted, &mut rng, &mut h)?;
                    }
                    Ok(h)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut all = Hists::new();
    for r in results {
        for (op, h) in r? {
            all.entry(op)
                .or_insert_with(|| Histogram::new(3).expect("3 digits"))
                .add(h)?;
        }
    }
    Ok(all)
}

#[allow(clippy::too_many_arguments)]
fn one_op(
    store: &Store,
    args: &YcsbArgs,
    m: &Mix,
    dist: Dist,
    zipf: &Zipf,
    inserted: &AtomicU64,
    rng: &mut impl Rng,
    h: &mut Hists,
) -> Result<()> {
    let live = inserted.load(Ordering::Relaxed).max(1);
    let key_num = match dist {
        Dist::Uniform => rng.random_range(0..live),
        Dist::Zipfian => fnv64(zipf.next(rng)) % live,
        Dist::Latest => live - 1 - zipf.next(rng).min(live - 1),
    };
    let key = ycsb_key(key_num);
    let x: f64 = rng.random();
    if x < m.read {
        timed(h, Op::Read, || store.read(&key).map(|_| ()))
    } else if x < m.read + m.update {
        let f = field(args, rng.random_range(0..args.fields), rng);
        timed(h, Op::Update, || store.write(&key, vec![f]))
    } else if x < m.read + m.update + m.insert {
        let n = inserted.fetch_add(1, Ordering::Relaxed);
        let rec = record(args, rng);
        timed(h, Op::Insert, || store.write(&ycsb_key(n), rec))
    } else if x < m.read + m.update + m.insert + m.scan {
        let rows = rng.random_range(1..=100);
        timed(h, Op::Scan, || store.scan(&key, rows).map(|_| ()))
    } else {
        let f = field(args, rng.random_range(0..args.fields), rng);
        timed(h, Op::ReadModifyWrite, || {
            store.read(&key)?;
            store.write(&key, vec![f])
        })
    }
}

fn print(name: &str, h: &Hists, secs: f64) {
    let total: u64 = h.values().map(|x| x.len()).sum();
    println!(
        "[{name}] {total} ops in {secs:.2} s: {:.0} ops/s",
        total as f64 / secs.max(1e-9)
    );
    for (op, x) in h {
        println!(
            "[{name}] {op:?}: {} ops, p50 {} us, p95 {} us, p99 {} us, p99.9 {} us, max {} us",
            x.len(),
            x.value_at_quantile(0.5),
            x.value_at_quantile(0.95),
            x.value_at_quantile(0.99),
            x.value_at_quantile(0.999),
            x.max()
        );
    }
}

/// Runs `quarry bench ycsb`.
pub fn run(args: YcsbArgs) -> Result<()> {
    mix(&args.workload)?;
    println!(
        "quarry bench ycsb: workload {} records={} operations={} threads={} record={}x{} B {}",
        args.workload,
        args.records,
        args.operations,
        args.threads,
        args.fields,
        args.field_size,
        if args.embedded {
            "embedded tablet (leveled, writes fsynced)".to_string()
        } else {
            format!("cluster {} table {}", args.lock, args.table)
        }
    );
    let store = open_store(&args)?;
    let inserted = AtomicU64::new(args.records);
    if !args.skip_load {
        let start = Instant::now();
        let h = phase(&store, &args, true, &inserted)?;
        print("load", &h, start.elapsed().as_secs_f64());
    }
    let start = Instant::now();
    let h = phase(&store, &args, false, &inserted)?;
    print("run", &h, start.elapsed().as_secs_f64());
    if let Store::Embedded(t) = store {
        let t = Arc::try_unwrap(t).map_err(|_| anyhow::anyhow!("tablet still in use"))?;
        t.close()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipfian_favours_small_values_and_stays_in_range() {
        let z = Zipf::new(1000);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[z.next(&mut rng) as usize] += 1;
        }
        // theta 0.99: item 0 takes about 1/zeta(1000) = 13% of draws; the top 10 about 39%.
        assert!((11_000..15_000).contains(&counts[0]), "{}", counts[0]);
        let top10: u32 = counts[..10].iter().sum();
        assert!((35_000..43_000).contains(&top10), "{top10}");
    }

    #[test]
    fn keys_are_scrambled_and_distinct() {
        let keys: std::collections::BTreeSet<_> = (0..10_000).map(ycsb_key).collect();
        assert_eq!(keys.len(), 10_000);
        assert!(ycsb_key(0) > ycsb_key(1) || ycsb_key(1) > ycsb_key(2));
    }
}
