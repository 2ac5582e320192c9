//! `quarry bench figure6`: the Bigtable paper's section 7 benchmarks (figure 6) against a
//! running cluster.
//!
//! As the paper: `R` row keys, chosen so each of the `--servers` tablet servers holds about
//! `--gb-per-server` GB of 1000-byte values (the paper: 1 GB); keys `0..R` split into
//! `10 N` equal ranges that a central scheduler (one shared counter) hands to the next idle
//! client; one random, uncompressible 1000-byte value per row. Benchmarks, in order:
//!
//! - `seqwrite`: each range's keys written in order (row key = zero-padded key number);
//! - `randwrite`: the same, but key `i` is written as row `hash(i) mod R`;
//! - `seqread`: each range's keys read in order; `randread`: rows `hash(i) mod R`;
//! - `scan`: each range read by one scan (the paper's scan API);
//! - `randread-mem` is *not* run: the admin API cannot mark a locality group in-memory yet.
//!
//! Every write is durable before its ack (tablet servers fsync their commit log unless
//! started with `--no-sync`). Prints values/s per tablet server beside the paper's 1-server
//! figure with the ratio, and the aggregate.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use client::{Client, ClientConfig, ColumnFamily};
use rand::{Rng, SeedableRng};
use tablet::{Mutation, ReadFilter, RowRange};

use super::lock::DEFAULT_LOCK_ADDRS;

/// Flags of `quarry bench figure6`.
#[derive(clap::Args, Debug, Clone)]
pub struct Figure6Args {
    /// Tablet servers in the cluster (N).
    #[arg(long, default_value_t = 1)]
    pub servers: u64,
    /// Data per tablet server in GB (the paper: 1).
    #[arg(long, default_value_t = 1.0)]
    pub gb_per_server: f64,
    /// Concurrent clients (the paper used as many client processes as servers or more).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Comma-separated benchmarks: seqwrite, randwrite, seqread, randread, scan.
    #[arg(long, default_value = "seqwrite,randwrite,seqread,randread,scan")]
    pub benchmarks: String,
    /// Lock-service replicas of the cluster.
    #[arg(long = "lock", env = "QUARRY_LOCK", default_value = DEFAULT_LOCK_ADDRS)]
    pub lock: String,
    /// Table (created pre-split into 10 N tablets if missing).
    #[arg(long, default_value = "figure6")]
    pub table: String,
    /// Random seed.
    #[arg(long, default_value_t = 301)]
    pub seed: u64,
}

const VALUE: usize = 1000;

/// The paper's 1-server figures (values read or written per second per server).
fn paper(bench: &str) -> Option<f64> {
    Some(match bench {
        "randread" => 1212.0,
        "randread-mem" => 10811.0,
        "randwrite" => 8850.0,
        "seqread" => 4425.0,
        "seqwrite" => 8547.0,
        "scan" => 15385.0,
        _ => return None,
    })
}

fn row(k: u64) -> Vec<u8> {
    format!("{k:012}").into_bytes()
}

/// Row of key `i` for the random benchmarks (a fixed permutation-like hash mod R).
fn hashed(i: u64, r: u64) -> u64 {
    let mut x = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) % r
}

struct Run {
    client: Client,
    table: String,
    rows: u64,
    ranges: u64,
    next: AtomicUsize,
    values: AtomicU64,
}

impl Run {
    fn range(&self, n: u64) -> std::ops::Range<u64> {
        self.rows * n / self.ranges..self.rows * (n + 1) / self.ranges
    }

    /// One client: takes ranges from the scheduler until none is left.
    async fn client(&self, bench: &str, seed: u64) -> Result<()> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let f = ReadFilter::latest();
        loop {
            let n = self.next.fetch_add(1, Ordering::SeqCst) as u64;
            if n >= self.ranges {
                return Ok(());
            }
            let keys = self.range(n);
            if bench == "scan" {
                let range = RowRange::new(&row(keys.start), &row(keys.end));
                let got = self
                    .client
                    .read_rows(&self.table, range, &f, 0)
                    .collect_rows()
                    .await?;
                self.values.fetch_add(got.len() as u64, Ordering::Relaxed);
                continue;
            }
            for i in keys {
                let k = match bench {
                    "randwrite" | "randread" => hashed(i, self.rows),
                    _ => i,
                };
                if bench.ends_with("write") {
                    let v: Vec<u8> = (0..VALUE).map(|_| rng.random()).collect();
                    let m = vec![Mutation::set("f", b"", 0, &v)];
                    self.client.mutate_row(&self.table, &row(k), m).await?;
                    self.values.fetch_add(1, Ordering::Relaxed);
                } else if self
                    .client
                    .read_row(&self.table, &row(k), &f)
                    .await?
                    .is_some()
                {
                    self.values.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

async fn run_bench(run: &Arc<Run>, bench: &str, args: &Figure6Args) -> Result<(u64, f64)> {
    run.next.store(0, Ordering::SeqCst);
    run.values.store(0, Ordering::SeqCst);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let run = Arc::clone(run);
        let bench = bench.to_string();
        let seed = args.seed ^ ((c as u64) << 16);
        tasks.push(tokio::spawn(async move { run.client(&bench, seed).await }));
    }
    for t in tasks {
        t.await.context("client task")??;
    }
    Ok((
        run.values.load(Ordering::SeqCst),
        start.elapsed().as_secs_f64(),
    ))
}

async fn setup(args: &Figure6Args, rows: u64, ranges: u64) -> Result<Run> {
    let client = Client::new(ClientConfig::from_addr_list(&args.lock)?)
        .context("cannot set up the client")?;
    if client.get_table(&args.table).await.is_err() {
        let splits = (1..ranges).map(|n| row(rows * n / ranges)).collect();
        let fam = ColumnFamily {
            name: "f".into(),
            gc_policy: "maxversions=1".into(),
            locality_group: String::new(),
        };
        client
            .create_table(&args.table, vec![fam], splits)
            .await
            .with_context(|| format!("creating table {}", args.table))?;
    }
    Ok(Run {
        client,
        table: args.table.clone(),
        rows,
        ranges,
        next: AtomicUsize::new(0),
        values: AtomicU64::new(0),
    })
}

/// Runs `quarry bench figure6`.
pub fn run(args: Figure6Args) -> Result<()> {
    let benches: Vec<String> = args
        .benchmarks
        .split(',')
        .map(|s| s.trim().into())
        .collect();
    for b in &benches {
        if paper(b).is_none() || b == "randread-mem" {
            bail!("unknown or unsupported benchmark {b:?} (seqwrite, randwrite, seqread, randread, scan)");
        }
    }
    if args.servers == 0 || args.gb_per_server <= 0.0 {
        bail!("--servers and --gb-per-server must be positive");
    }
    let rows = ((args.servers as f64 * args.gb_per_server * 1e9) / VALUE as f64) as u64;
    let ranges = 10 * args.servers;
    println!(
        "quarry bench figure6: N={} servers, R={rows} rows ({} GB per server), {ranges} ranges, {} clients, table {}",
        args.servers, args.gb_per_server, args.clients, args.table
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let run = Arc::new(setup(&args, rows, ranges).await?);
        println!(
            "{:<10} {:>10} {:>9} {:>14} {:>12} {:>7}",
            "benchmark", "values", "seconds", "values/s/srv", "paper 1-srv", "ratio"
        );
        for b in &benches {
            let (values, secs) = run_bench(&run, b, &args).await?;
            let per_server = values as f64 / secs.max(1e-9) / args.servers as f64;
            let p = paper(b).expect("checked");
            println!(
                "{b:<10} {values:>10} {secs:>9.1} {per_server:>14.0} {p:>12.0} {:>7.2}   (aggregate {:.0} values/s)",
                per_server / p,
                per_server * args.servers as f64
            );
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_key_once_and_hashing_stays_in_range() {
        let run = Run {
            client: Client::new(ClientConfig::new(vec!["127.0.0.1:1".into()])).unwrap(),
            table: "t".into(),
            rows: 1003,
            ranges: 10,
            next: AtomicUsize::new(0),
            values: AtomicU64::new(0),
        };
        let all: Vec<u64> = (0..10).flat_map(|n| run.range(n)).collect();
        assert_eq!(all, (0..1003).collect::<Vec<_>>());
        assert!((0..10_000).all(|i| hashed(i, 1003) < 1003));
        let distinct: std::collections::BTreeSet<_> = (0..1003).map(|i| hashed(i, 1003)).collect();
        assert!(distinct.len() > 600, "{}", distinct.len());
    }
}
