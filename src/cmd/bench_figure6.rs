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
//! - `randread-mem`: random reads from an in-memory locality group: table `<table>-mem` with
//!   family `f` in group `mem` marked in-memory, `min(R, 100 000 N)` rows (the paper's 100 MB
//!   per server) written and major-compacted first (untimed), so every read is served from
//!   SSTable blocks pinned in memory.
//!
//! Writes go `--batch` rows per `MutateRows` call per tablet through a
//! [`client::BufferedMutator`], as a Bigtable client's bulk batcher sends them; point reads go `--read-batch` keys per multi-get
//! ([`Client::read_rows_by_key`]: one `ReadRows` per tablet naming its keys); both are
//! printed in the header line, and `--batch 1 --read-batch 1` is the paper's one row per
//! request. Every write is durable before its ack (tablet servers fsync their commit log unless
//! started with `--no-sync`). Prints values/s per tablet server beside the paper's 1-server
//! figure with the ratio, and the aggregate.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use client::{Client, ClientConfig, ColumnFamily, RowMutation};
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
    /// Comma-separated benchmarks: seqwrite, randwrite, seqread, randread, randread-mem, scan.
    #[arg(
        long,
        default_value = "seqwrite,randwrite,seqread,randread,randread-mem,scan"
    )]
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
    /// Rows per `MutateRows` call in the write benchmarks (1: one `MutateRow` per row), as
    /// a Bigtable client's bulk-mutation batcher sends them; every row is still acknowledged
    /// only after the commit log's fsync.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Rows per multi-get in the read benchmarks (seqread, randread, randread-mem): one
    /// `ReadRows` per tablet naming that many keys (1: one `ReadRows` per row, the paper's
    /// single-row reads).
    #[arg(long, default_value_t = 100)]
    pub read_batch: usize,
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
    batch: usize,
    read_batch: usize,
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
            if bench.ends_with("write") {
                self.write_range(bench, keys, &mut rng).await?;
                continue;
            }
            self.read_range(bench, keys, &f).await?;
        }
    }

    /// Reads one range's keys, `read_batch` rows per multi-get (one `ReadRows` per
    /// tablet; one `read_row` each when 1).
    async fn read_range(
        &self,
        bench: &str,
        keys: std::ops::Range<u64>,
        f: &ReadFilter,
    ) -> Result<()> {
        let keys: Vec<Vec<u8>> = keys
            .map(|i| match bench {
                "randread" | "randread-mem" => row(hashed(i, self.rows)),
                _ => row(i),
            })
            .collect();
        for chunk in keys.chunks(self.read_batch.max(1)) {
            let found = if self.read_batch <= 1 {
                let got = self.client.read_row(&self.table, &chunk[0], f).await?;
                usize::from(got.is_some())
            } else {
                let got = self.client.read_rows_by_key(&self.table, chunk, f).await?;
                got.iter().filter(|r| r.is_some()).count()
            };
            self.values.fetch_add(found as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Writes one range's keys: one `MutateRow` each when `batch` is 1, else through a
    /// [`client::BufferedMutator`] that sends `batch` rows per `MutateRows` per tablet
    /// (hashed keys scatter over every tablet; buffering per tablet keeps the requests
    /// full). The range counts once every row of it is acknowledged.
    async fn write_range(
        &self,
        bench: &str,
        keys: std::ops::Range<u64>,
        rng: &mut rand::rngs::StdRng,
    ) -> Result<()> {
        let n = keys.end - keys.start;
        let mut mutator =
            (self.batch > 1).then(|| self.client.buffered_mutator(&self.table, self.batch));
        for i in keys {
            let k = if bench == "randwrite" {
                hashed(i, self.rows)
            } else {
                i
            };
            let mut v = vec![0u8; VALUE];
            rng.fill(&mut v[..]);
            let m = vec![Mutation::set("f", b"", 0, &v)];
            match &mut mutator {
                None => self.client.mutate_row(&self.table, &row(k), m).await?,
                Some(b) => b
                    .mutate(RowMutation::new(row(k), m))
                    .await
                    .with_context(|| format!("row {k}"))?,
            }
        }
        if let Some(b) = &mut mutator {
            b.flush().await.context("flushing the buffered rows")?;
        }
        self.values.fetch_add(n, Ordering::Relaxed);
        Ok(())
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

async fn setup(
    args: &Figure6Args,
    client: &Client,
    table: &str,
    rows: u64,
    mem: bool,
) -> Result<Run> {
    let ranges = 10 * args.servers;
    if client.get_table(table).await.is_err() {
        let splits = (1..ranges).map(|n| row(rows * n / ranges)).collect();
        let group = if mem { MEM_GROUP } else { "" };
        let fam = ColumnFamily {
            name: "f".into(),
            gc_policy: "maxversions=1".into(),
            locality_group: group.into(),
        };
        client
            .create_table(table, vec![fam], splits)
            .await
            .with_context(|| format!("creating table {table}"))?;
        if mem {
            client
                .set_locality_group(table, MEM_GROUP, true)
                .await
                .with_context(|| format!("marking group {MEM_GROUP} of {table} in-memory"))?;
        }
    }
    Ok(Run {
        client: client.clone(),
        table: table.to_string(),
        batch: args.batch,
        read_batch: args.read_batch,
        rows,
        ranges,
        next: AtomicUsize::new(0),
        values: AtomicU64::new(0),
    })
}

/// The locality group of `randread-mem`'s table.
const MEM_GROUP: &str = "mem";
/// Rows per server in the in-memory group (the paper: 100 MB of 1000-byte values).
const MEM_ROWS_PER_SERVER: u64 = 100_000;

/// Loads `randread-mem`'s table (untimed) and compacts it, so reads hit pinned SSTables.
async fn load_mem(run: &Arc<Run>, args: &Figure6Args) -> Result<()> {
    let (values, secs) = run_bench(run, "seqwrite", args).await?;
    let tablets = run
        .client
        .compact_table(&run.table, true)
        .await
        .context("compacting the in-memory table")?;
    println!(
        "(randread-mem: loaded {values} rows in {secs:.1} s, asked {tablets} tablets to compact)"
    );
    Ok(())
}

/// Runs `quarry bench figure6`.
pub fn run(args: Figure6Args) -> Result<()> {
    let benches: Vec<String> = args
        .benchmarks
        .split(',')
        .map(|s| s.trim().into())
        .collect();
    for b in &benches {
        if paper(b).is_none() {
            bail!("unknown benchmark {b:?} (seqwrite, randwrite, seqread, randread, randread-mem, scan)");
        }
    }
    if args.servers == 0 || args.gb_per_server <= 0.0 || args.batch == 0 || args.read_batch == 0 {
        bail!("--servers, --gb-per-server, --batch and --read-batch must be positive");
    }
    let rows = ((args.servers as f64 * args.gb_per_server * 1e9) / VALUE as f64) as u64;
    let ranges = 10 * args.servers;
    println!(
        "quarry bench figure6: N={} servers, R={rows} rows ({} GB per server), {ranges} ranges, {} clients, {} rows per write batch, {} rows per read batch, table {}",
        args.servers, args.gb_per_server, args.clients, args.batch, args.read_batch, args.table
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = Client::new(ClientConfig::from_addr_list(&args.lock)?)
            .context("cannot set up the client")?;
        let run = Arc::new(setup(&args, &client, &args.table, rows, false).await?);
        let mem_rows = rows.min(MEM_ROWS_PER_SERVER * args.servers);
        let mem_table = format!("{}-mem", args.table);
        let mem = Arc::new(setup(&args, &client, &mem_table, mem_rows, true).await?);
        println!(
            "{:<10} {:>10} {:>9} {:>14} {:>12} {:>7}",
            "benchmark", "values", "seconds", "values/s/srv", "paper 1-srv", "ratio"
        );
        for b in &benches {
            let (values, secs) = if b == "randread-mem" {
                load_mem(&mem, &args).await?;
                run_bench(&mem, b, &args).await?
            } else {
                run_bench(&run, b, &args).await?
            };
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
            batch: 100,
            read_batch: 100,
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
