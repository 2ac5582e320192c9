//! Micro-benchmarks of the block format and the Bloom filter.
//!
//! Run: `cargo bench -p sstable --bench block_filter`

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sstable::block::{decode_block, encode_block};
use sstable::filter::{Filter, FilterBuilder};
use sstable::{Block, BlockBuilder, Compression, KvIter};

/// About 16 KiB of entries shaped like tablet cells: row/family:qualifier/timestamp keys
/// and 100-byte values.
fn block_entries() -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..120u32)
        .map(|i| {
            let key = format!(
                "user{:08}/cf:field{}/{:016x}",
                i / 4,
                i % 4,
                u64::MAX - u64::from(i)
            );
            let value: Vec<u8> = format!("value-{i}-").bytes().cycle().take(100).collect();
            (key.into_bytes(), value)
        })
        .collect()
}

fn raw_block(kvs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut b = BlockBuilder::new(16);
    for (k, v) in kvs {
        b.add(k, v);
    }
    b.finish()
}

fn bench_block(c: &mut Criterion) {
    let kvs = block_entries();
    let raw = raw_block(&kvs);
    let mut g = c.benchmark_group("block");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("build", |b| b.iter(|| black_box(raw_block(&kvs))));
    for (name, comp) in [("none", Compression::None), ("lz4", Compression::Lz4)] {
        let stored = encode_block(&raw, comp);
        g.bench_function(format!("encode_{name}"), |b| {
            b.iter(|| black_box(encode_block(black_box(&raw), comp)))
        });
        g.bench_function(format!("decode_{name}"), |b| {
            b.iter(|| black_box(decode_block(Path::new("b"), 0, black_box(&stored)).unwrap()))
        });
    }
    let block = Arc::new(Block::new(raw.clone(), Path::new("b"), 0).unwrap());
    g.bench_function("iterate_all", |b| {
        b.iter(|| {
            let mut it = block.iter();
            it.seek_to_first().unwrap();
            let mut n = 0;
            while it.valid() {
                n += it.value().len();
                it.next().unwrap();
            }
            black_box(n)
        })
    });
    g.finish();
    let mut g = c.benchmark_group("block_seek");
    let targets: Vec<&[u8]> = kvs.iter().step_by(7).map(|(k, _)| &k[..]).collect();
    g.throughput(Throughput::Elements(targets.len() as u64));
    g.bench_function("seek", |b| {
        let mut it = block.iter();
        b.iter(|| {
            for t in &targets {
                it.seek(t).unwrap();
                black_box(it.value());
            }
        })
    });
    g.finish();
}

fn bench_bloom(c: &mut Criterion) {
    let mut fb = FilterBuilder::new(10);
    for i in 0..100_000u32 {
        fb.add_key(format!("user{i:08}").as_bytes());
    }
    let filter = Filter::decode(Path::new("f"), 0, &fb.finish()).unwrap();
    let present: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| format!("user{:08}", i * 97).into_bytes())
        .collect();
    let absent: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| format!("nobody{i:08}").into_bytes())
        .collect();
    let mut g = c.benchmark_group("bloom_probe");
    g.throughput(Throughput::Elements(1000));
    for (name, keys) in [("present", &present), ("absent", &absent)] {
        g.bench_function(name, |b| {
            b.iter(|| keys.iter().filter(|k| filter.may_contain(k)).count())
        });
    }
    g.finish();
}

criterion_group!(benches, bench_block, bench_bloom);
criterion_main!(benches);
