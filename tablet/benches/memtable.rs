//! Memtable insert and seek (criterion). Run: `cargo bench -p tablet --bench memtable`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sstable::KvIter;
use tablet::key;
use tablet::memtable::Memtable;

fn keys(n: u64) -> Vec<Vec<u8>> {
    // A fixed pseudo-random order (an LCG), so runs compare.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|i| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            key::cell(
                format!("{:016}", x % 1_000_000_000).as_bytes(),
                b"f",
                b"",
                0,
                i,
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let n = 10_000u64;
    let ks = keys(n);
    let value = vec![b'v'; 100];
    let mut g = c.benchmark_group("memtable");
    g.throughput(Throughput::Elements(n));
    g.bench_function(BenchmarkId::new("insert_random", n), |b| {
        b.iter(|| {
            let m = Memtable::new();
            for k in &ks {
                m.insert(k.clone(), value.clone());
            }
            m
        })
    });
    let m = Memtable::new();
    for k in &ks {
        m.insert(k.clone(), value.clone());
    }
    g.bench_function(BenchmarkId::new("seek_random", n), |b| {
        let mut it = m.iter();
        b.iter(|| {
            for k in &ks {
                it.seek(k).unwrap();
                assert!(it.valid());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
