//! Model-based test: random sorted key/value sets with random block sizes, restart
//! intervals, compression, filters, cache and pinning, checked against a `BTreeMap`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{build_table, drain, open};
use proptest::prelude::*;
use sstable::{BlockCache, Compression, FaultFs, KvIter, TableOptions};

fn key() -> impl Strategy<Value = Vec<u8>> {
    // Small alphabet and lengths so keys share prefixes and seek targets hit and miss.
    proptest::collection::vec(
        prop_oneof![Just(0u8), Just(b'a'), Just(b'b'), Just(0xff), any::<u8>()],
        0..12,
    )
}

fn options() -> impl Strategy<Value = TableOptions> {
    (16usize..2048, 1usize..20, any::<bool>(), 0usize..14).prop_map(
        |(block_size, restart, lz4, bits)| TableOptions {
            block_size,
            restart_interval: restart,
            compression: if lz4 {
                Compression::Lz4
            } else {
                Compression::None
            },
            bloom_bits_per_key: bits,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn table_matches_a_btreemap(
        model in proptest::collection::btree_map(key(), proptest::collection::vec(any::<u8>(), 0..300), 0..400),
        opts in options(),
        targets in proptest::collection::vec(key(), 1..30),
        cache in any::<bool>(),
        pin in any::<bool>(),
    ) {
        let fs = FaultFs::new();
        let p = Path::new("/m.sst");
        let kvs: Vec<_> = model.clone().into_iter().collect();
        let info = build_table(&fs, p, &kvs, opts);
        prop_assert_eq!(info.num_entries, kvs.len() as u64);
        let cache = cache.then(|| BlockCache::new(64 * 1024));
        let t = open(&fs, p, cache, pin).unwrap();
        let mut it = t.iter();
        it.seek_to_first().unwrap();
        prop_assert_eq!(drain(&mut it).unwrap(), kvs.clone());
        for target in &targets {
            it.seek(target).unwrap();
            let want: Vec<_> = model.range::<Vec<u8>, _>(target..).take(3).collect();
            let mut got = Vec::new();
            while it.valid() && got.len() < 3 {
                got.push((it.key().to_vec(), it.value().to_vec()));
                it.next().unwrap();
            }
            let want: Vec<_> = want.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(got, want);
        }
        for (k, _) in &kvs {
            prop_assert!(t.may_contain(k));
        }
    }
}

#[test]
fn model_targets_between_every_pair_of_keys() {
    // Deterministic companion: seek to each key, just before it and just after it.
    let model: BTreeMap<Vec<u8>, Vec<u8>> = (0..500u32)
        .map(|i| ((i * 7).to_be_bytes().to_vec(), i.to_le_bytes().to_vec()))
        .collect();
    let fs = FaultFs::new();
    let p = Path::new("/m.sst");
    let kvs: Vec<_> = model.clone().into_iter().collect();
    build_table(
        &fs,
        p,
        &kvs,
        TableOptions {
            block_size: 100,
            restart_interval: 3,
            ..TableOptions::default()
        },
    );
    let t = open(&fs, p, None, false).unwrap();
    let mut it = t.iter();
    for i in 0..3600u32 {
        let target = i.to_be_bytes();
        it.seek(&target).unwrap();
        let want = model.range(target.to_vec()..).next();
        match want {
            Some((k, v)) => {
                assert_eq!((it.key(), it.value()), (&k[..], &v[..]), "seek {i}");
            }
            None => assert!(!it.valid(), "seek {i}"),
        }
    }
}
