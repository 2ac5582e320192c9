//! Read-path benchmarks: SSTable point seeks with a warm block cache, and a 4-way merge.
//!
//! Run: `cargo bench -p sstable --bench table_read`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sstable::{
    BlockCache, BoxedIter, Fs, KvIter, MergeIter, RealFs, Table, TableBuilder, TableOptions,
};

const ENTRIES: u32 = 100_000;

fn key(i: u32) -> Vec<u8> {
    format!("user{i:010}").into_bytes()
}

/// Writes a table of `ENTRIES` keys `user...` (every `stride`-th, from `offset`) with
/// 100-byte values, into `dir`, and opens it with `cache`.
fn table(
    dir: &std::path::Path,
    name: &str,
    stride: u32,
    offset: u32,
    cache: &Arc<BlockCache>,
) -> Arc<Table> {
    let path = dir.join(name);
    let mut b = TableBuilder::new(RealFs.create(&path).unwrap(), TableOptions::default());
    for i in 0..ENTRIES / stride {
        let k = key(i * stride + offset);
        let v: Vec<u8> = format!("value-{i}-").bytes().cycle().take(100).collect();
        b.add(&k, &v).unwrap();
        b.add_filter_key(&k);
    }
    b.finish().unwrap();
    Table::open(RealFs.open(&path).unwrap(), Some(Arc::clone(cache)), false).unwrap()
}

fn bench_seek(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let cache = BlockCache::new(256 << 20);
    let t = table(dir.path(), "seek.sst", 1, 0, &cache);
    // Warm the cache.
    let mut it = t.iter();
    it.seek_to_first().unwrap();
    while it.valid() {
        it.next().unwrap();
    }
    let targets: Vec<Vec<u8>> = (0..1000u32).map(|i| key((i * 7919) % ENTRIES)).collect();
    let mut g = c.benchmark_group("table_seek_warm");
    g.throughput(Throughput::Elements(targets.len() as u64));
    g.bench_function("seek_get", |b| {
        let mut it = t.iter();
        b.iter(|| {
            for k in &targets {
                it.seek(k).unwrap();
                black_box(it.value());
            }
        })
    });
    g.bench_function("may_contain_then_seek", |b| {
        let mut it = t.iter();
        b.iter(|| {
            for k in &targets {
                if t.may_contain(k) {
                    it.seek(k).unwrap();
                    black_box(it.value());
                }
            }
        })
    });
    g.finish();
}

fn bench_merge(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let cache = BlockCache::new(256 << 20);
    // Four tables interleaving one key space (each holds every 4th key).
    let tables: Vec<Arc<Table>> = (0..4)
        .map(|s| table(dir.path(), &format!("m{s}.sst"), 4, s, &cache))
        .collect();
    let mut g = c.benchmark_group("merge_4_tables");
    g.throughput(Throughput::Elements(u64::from(ENTRIES)));
    g.sample_size(10);
    g.bench_function("scan_all", |b| {
        b.iter(|| {
            let sources: Vec<BoxedIter> = tables
                .iter()
                .map(|t| Box::new(t.iter()) as BoxedIter)
                .collect();
            let mut m = MergeIter::new(sources);
            m.seek_to_first().unwrap();
            let mut n = 0u64;
            while m.valid() {
                n += 1;
                m.next().unwrap();
            }
            assert_eq!(n, u64::from(ENTRIES));
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_seek, bench_merge);
criterion_main!(benches);
