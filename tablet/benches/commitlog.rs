//! Commit-log appends of 1 KiB records (criterion), on real files in a temporary directory:
//! 1 and 8 threads, with fsync off (handed to the OS) and on (group commit).
//! Run: `cargo bench -p tablet --bench commitlog`.
//!
//! One iteration is one acknowledged append; with 8 threads the iterations are shared out
//! and the time is the wall time until all of them returned. Old segments are deleted
//! between measurements so the disk does not fill.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tablet::commitlog::{CommitLog, CommitLogOptions};

const RECORD: usize = 1024;

/// Appends `iters` records from `threads` threads; returns the wall time.
fn run(log: &Arc<CommitLog>, threads: u64, iters: u64) -> Duration {
    let payload = Arc::new(vec![0xa5u8; RECORD]);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (log, payload) = (log.clone(), payload.clone());
            let n = iters / threads + u64::from(t < iters % threads);
            thread::spawn(move || {
                for _ in 0..n {
                    log.append(t, &payload).expect("append");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread");
    }
    let elapsed = start.elapsed();
    let pos = log.position();
    log.delete_segments_before(pos.segment)
        .expect("delete old segments");
    elapsed
}

fn bench(c: &mut Criterion) {
    for sync in [false, true] {
        let name = if sync {
            "append_1k_sync"
        } else {
            "append_1k_nosync"
        };
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(1));
        if sync {
            g.sample_size(10);
            g.measurement_time(Duration::from_secs(5));
        }
        for threads in [1u64, 8] {
            let dir = tempfile::tempdir().expect("temp dir");
            let opts = CommitLogOptions {
                segment_bytes: 8 << 20,
                sync,
                ..CommitLogOptions::default()
            };
            let log = Arc::new(
                CommitLog::open(sstable::RealFs::shared(), dir.path(), opts).expect("open log"),
            );
            g.bench_function(BenchmarkId::new("threads", threads), |b| {
                b.iter_custom(|iters| run(&log, threads, iters))
            });
            let s = log.stats();
            eprintln!(
                "{name}/threads/{threads}: {} records in {} batches ({:.1} records per batch)",
                s.records,
                s.batches,
                s.records as f64 / s.batches.max(1) as f64
            );
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
