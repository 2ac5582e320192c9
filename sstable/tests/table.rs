//! SSTable builder and reader: round trips, seeks, ordering checks, filters, cache,
//! pinning, split-point helpers and write failures.

mod common;

use std::path::Path;

use common::{build_table, drain, entries, open, read_all};
use sstable::{
    BlockCache, Compression, Error, Fault, FaultFs, Fs, KvIter, RealFs, Table, TableBuilder,
    TableOptions,
};

fn small_blocks() -> TableOptions {
    TableOptions {
        block_size: 256,
        ..TableOptions::default()
    }
}

#[test]
fn round_trip_many_blocks_with_lz4() {
    let fs = FaultFs::new();
    let p = Path::new("/t.sst");
    let kvs = entries(1000, 40);
    let info = build_table(&fs, p, &kvs, small_blocks());
    assert_eq!(info.num_entries, 1000);
    assert!(info.data_blocks > 50, "{info:?}");
    assert_eq!(info.smallest_key, b"key00000");
    assert_eq!(info.largest_key, b"key00999");
    assert_eq!(info.raw_key_bytes, 8000);
    assert_eq!(info.raw_value_bytes, 40_000);
    assert_eq!(info.file_size, fs.file_size(p).unwrap());
    // Repetitive values compress: the file is smaller than the raw data.
    assert!(info.file_size < 48_000, "{}", info.file_size);
    let t = open(&fs, p, None, false).unwrap();
    assert_eq!(t.info(), &info);
    assert_eq!(read_all(&t).unwrap(), kvs);
}

#[test]
fn seek_lands_on_the_first_key_at_or_after_the_target() {
    let fs = FaultFs::new();
    let p = Path::new("/t.sst");
    let kvs = entries(300, 10);
    build_table(&fs, p, &kvs, small_blocks());
    let t = open(&fs, p, None, false).unwrap();
    let mut it = t.iter();
    assert!(!it.valid());
    it.seek(b"key00150").unwrap();
    assert_eq!(it.key(), b"key00150");
    it.seek(b"key00150~").unwrap();
    assert_eq!(it.key(), b"key00151");
    assert_eq!(drain(&mut it).unwrap(), kvs[151..].to_vec());
    it.seek(b"zzz").unwrap();
    assert!(!it.valid());
    it.seek(b"").unwrap();
    assert_eq!(it.key(), b"key00000");
}

#[test]
fn keys_must_increase() {
    let fs = FaultFs::new();
    let mut b = TableBuilder::new(fs.create(Path::new("/t")).unwrap(), TableOptions::default());
    b.add(b"b", b"1").unwrap();
    for bad in [b"b".as_slice(), b"a"] {
        let e = b.add(bad, b"2").unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    }
    b.add(b"c", b"3").unwrap();
    assert_eq!(b.num_entries(), 2);
}

#[test]
fn empty_table_opens_and_iterates_nothing() {
    let fs = FaultFs::new();
    let p = Path::new("/empty.sst");
    let info = build_table(&fs, p, &[], TableOptions::default());
    assert_eq!(info.num_entries, 0);
    assert_eq!(info.data_blocks, 0);
    let t = open(&fs, p, None, true).unwrap();
    assert!(read_all(&t).unwrap().is_empty());
    assert!(t.may_contain(b"x"), "no filter keys: must say maybe");
    assert!(t.block_last_keys().is_empty());
}

#[test]
fn bloom_filter_has_no_false_negatives_and_rejects_most_absent_keys() {
    let fs = FaultFs::new();
    let p = Path::new("/t.sst");
    let kvs = entries(2000, 8);
    build_table(&fs, p, &kvs, TableOptions::default());
    let t = open(&fs, p, None, false).unwrap();
    assert!(kvs.iter().all(|(k, _)| t.may_contain(k)));
    let fp = (0..10_000)
        .filter(|i| t.may_contain(format!("absent{i}").as_bytes()))
        .count();
    assert!(fp < 300, "{fp} false positives of 10000");
    // bloom_bits_per_key = 0: no filter, everything may be present.
    let p2 = Path::new("/nofilter.sst");
    build_table(
        &fs,
        p2,
        &kvs,
        TableOptions {
            bloom_bits_per_key: 0,
            ..TableOptions::default()
        },
    );
    assert!(open(&fs, p2, None, false).unwrap().may_contain(b"absent"));
}

#[test]
fn block_cache_serves_repeated_reads_and_counts_them() {
    let fs = FaultFs::new();
    let p = Path::new("/t.sst");
    let kvs = entries(500, 20);
    let info = build_table(&fs, p, &kvs, small_blocks());
    let cache = BlockCache::new(1 << 20);
    let t = open(&fs, p, Some(cache.clone()), false).unwrap();
    read_all(&t).unwrap();
    let s1 = t.stats();
    assert_eq!(s1.blocks_read, info.data_blocks);
    assert_eq!(s1.cache_hits, 0);
    read_all(&t).unwrap();
    let s2 = t.stats();
    assert_eq!(
        s2.blocks_read, info.data_blocks,
        "second pass must hit the cache"
    );
    assert_eq!(s2.cache_hits, info.data_blocks);
    assert_eq!(cache.hits(), info.data_blocks);
    assert_eq!(cache.misses(), info.data_blocks);
    assert!(cache.used_bytes() > 0 && cache.used_bytes() <= cache.capacity());
    // A second open of the same file is a different table id: no stale sharing.
    let t2 = open(&fs, p, Some(cache.clone()), false).unwrap();
    assert_ne!(t.id(), t2.id());
    read_all(&t2).unwrap();
    assert_eq!(t2.stats().blocks_read, info.data_blocks);
}

#[test]
fn a_tiny_cache_stays_within_its_capacity() {
    let fs = FaultFs::new();
    let p = Path::new("/t.sst");
    build_table(&fs, p, &entries(2000, 50), small_blocks());
    let cache = BlockCache::new(4096);
    let t = open(&fs, p, Some(cache.clone()), false).unwrap();
    read_all(&t).unwrap();
    assert!(cache.used_bytes() <= 4096, "{}", cache.used_bytes());
}

#[test]
fn pinned_tables_read_every_block_at_open_and_never_again() {
    let fs = FaultFs::new();
    let p = Path::new("/t.sst");
    let kvs = entries(400, 20);
    let info = build_table(&fs, p, &kvs, small_blocks());
    let t = open(&fs, p, None, true).unwrap();
    assert_eq!(t.stats().blocks_read, info.data_blocks);
    assert_eq!(read_all(&t).unwrap(), kvs);
    let mut it = t.iter();
    it.seek(b"key00200").unwrap();
    assert_eq!(t.stats().blocks_read, info.data_blocks);
}

#[test]
fn split_point_helpers_follow_the_index() {
    let fs = FaultFs::new();
    let p = Path::new("/t.sst");
    let kvs = entries(1000, 30);
    let info = build_table(
        &fs,
        p,
        &kvs,
        TableOptions {
            compression: Compression::None,
            ..small_blocks()
        },
    );
    let t = open(&fs, p, None, false).unwrap();
    let last_keys = t.block_last_keys();
    assert_eq!(last_keys.len() as u64, info.data_blocks);
    assert_eq!(last_keys.last().unwrap(), &info.largest_key);
    assert!(last_keys.windows(2).all(|w| w[0] < w[1]));
    assert!(
        last_keys
            .iter()
            .all(|k| kvs.iter().any(|(key, _)| key == k)),
        "index keys are real keys"
    );
    assert_eq!(t.approximate_offset_of(b""), 0);
    let mid = t.approximate_offset_of(b"key00500");
    let end = t.approximate_offset_of(b"zzz");
    assert!(mid > end / 3 && mid < 2 * end / 3, "mid {mid} end {end}");
    assert!(end < info.file_size);
    assert!(t.approximate_offset_of(b"key00100") < mid);
}

#[test]
fn a_failed_append_poisons_the_builder() {
    let fs = FaultFs::new();
    fs.inject(Fault::AppendNoSpace {
        path: "full".into(),
        after_bytes: 300,
        times: 1,
    });
    let mut b = TableBuilder::new(fs.create(Path::new("/full.sst")).unwrap(), small_blocks());
    let mut failed = None;
    for (k, v) in entries(200, 30) {
        if let Err(e) = b.add(&k, &v) {
            failed = Some(e);
            break;
        }
    }
    let e = failed.expect("ENOSPC must surface from add");
    assert!(
        matches!(&e, Error::Io { source, .. } if source.raw_os_error() == Some(28)),
        "{e}"
    );
    assert!(
        b.add(b"zzz", b"v").is_err(),
        "builder must refuse after a failed write"
    );
    assert!(b.finish().is_err());
}

#[test]
fn a_failed_sync_fails_finish() {
    let fs = FaultFs::new();
    fs.inject(Fault::SyncFails {
        path: "t.sst".into(),
        times: 1,
    });
    let mut b = TableBuilder::new(
        fs.create(Path::new("/t.sst")).unwrap(),
        TableOptions::default(),
    );
    b.add(b"k", b"v").unwrap();
    let e = b.finish().unwrap_err();
    assert!(matches!(&e, Error::Io { op: "sync", .. }), "{e}");
}

#[test]
fn finish_syncs_so_the_table_survives_a_power_cut() {
    let fs = FaultFs::new();
    fs.create_dir_all(Path::new("/d")).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    let p = Path::new("/d/t.sst");
    let kvs = entries(100, 10);
    build_table(&fs, p, &kvs, TableOptions::default());
    fs.sync_dir(Path::new("/d")).unwrap();
    fs.power_cut();
    assert_eq!(read_all(&open(&fs, p, None, false).unwrap()).unwrap(), kvs);
}

#[test]
fn short_or_foreign_files_are_corruption() {
    let fs = FaultFs::new();
    fs.write_atomic(Path::new("/short"), b"tiny").unwrap();
    fs.write_atomic(Path::new("/foreign"), &[7u8; 200]).unwrap();
    for p in ["/short", "/foreign"] {
        let e = open(&fs, Path::new(p), None, false).unwrap_err();
        assert!(e.is_corruption() && e.to_string().contains(p), "{e}");
    }
}

#[test]
fn large_values_span_their_own_blocks() {
    let fs = FaultFs::new();
    let p = Path::new("/big.sst");
    let kvs: Vec<_> = (0..5u8)
        .map(|i| (vec![b'k', i], vec![i; 100_000]))
        .collect();
    let info = build_table(&fs, p, &kvs, TableOptions::default());
    assert_eq!(info.data_blocks, 5);
    assert_eq!(read_all(&open(&fs, p, None, false).unwrap()).unwrap(), kvs);
}

#[test]
fn round_trip_on_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("real.sst");
    let kvs = entries(3000, 64);
    let mut b = TableBuilder::new(RealFs.create(&p).unwrap(), small_blocks());
    for (k, v) in &kvs {
        b.add(k, v).unwrap();
        b.add_filter_key(k);
    }
    let info = b.finish().unwrap();
    RealFs.sync_dir(dir.path()).unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().len(), info.file_size);
    let cache = BlockCache::new(1 << 20);
    let t = Table::open(RealFs.open(&p).unwrap(), Some(cache), false).unwrap();
    assert_eq!(read_all(&t).unwrap(), kvs);
    let mut it = t.iter();
    for (k, v) in kvs.iter().step_by(97) {
        it.seek(k).unwrap();
        assert_eq!((it.key(), it.value()), (&k[..], &v[..]));
    }
    // A flipped byte in the real file is found too.
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[100] ^= 0x10;
    std::fs::write(&p, &bytes).unwrap();
    let t = Table::open(RealFs.open(&p).unwrap(), None, false).unwrap();
    let e = read_all(&t).unwrap_err();
    assert!(
        e.is_corruption() && e.to_string().contains("real.sst"),
        "{e}"
    );
}

#[test]
fn concurrent_readers_share_one_table_and_cache() {
    let fs = FaultFs::new();
    let p = Path::new("/t.sst");
    let kvs = entries(2000, 30);
    let info = build_table(&fs, p, &kvs, small_blocks());
    let cache = BlockCache::new(1 << 20);
    let t = open(&fs, p, Some(cache.clone()), false).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| assert_eq!(read_all(&t).unwrap(), kvs));
        }
    });
    let st = t.stats();
    assert_eq!(st.blocks_read + st.cache_hits, 4 * info.data_blocks);
    // Racing threads may each miss a block once; afterwards every block is cached.
    read_all(&t).unwrap();
    assert_eq!(t.stats().blocks_read, st.blocks_read, "{st:?}");
}
