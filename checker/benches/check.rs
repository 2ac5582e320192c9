//! How long the checker takes on realistic histories: 10 clients × 1000 operations on one
//! register key (read/write/CAS, overlapping intervals, some unknown outcomes), and the
//! same spread over 10 keys through `check_partitioned`.

use checker::{check, check_partitioned, Register};
use criterion::{criterion_group, criterion_main, Criterion};

#[path = "../tests/support/mod.rs"]
mod support;

use support::{register_history, Shape};

const SHAPE: Shape = Shape {
    clients: 10,
    ops_per_client: 1000,
    max_latency: 20,
    unknown: 0.001,
};

fn one_key(c: &mut Criterion) {
    let history = register_history(7, SHAPE);
    c.bench_function("register 10 clients x 1000 ops, one key", |b| {
        b.iter(|| {
            let v = check::<Register<u64>>(&history).unwrap();
            assert!(v.is_linearizable());
        })
    });
}

fn ten_keys(c: &mut Criterion) {
    let history: Vec<_> = (0..10u64)
        .flat_map(|k| {
            register_history(100 + k, SHAPE)
                .into_iter()
                .map(move |op| checker::Operation {
                    client: op.client,
                    input: (k, op.input),
                    output: op.output,
                    call: op.call,
                    ret: op.ret,
                })
        })
        .collect();
    c.bench_function(
        "register 10 keys x 10 clients x 1000 ops, partitioned",
        |b| {
            b.iter(|| {
                let v = check_partitioned::<Register<u64>, u64>(&history, None).unwrap();
                assert!(v.is_linearizable());
            })
        },
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = one_key, ten_keys
}
criterion_main!(benches);
