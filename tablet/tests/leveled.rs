//! The leveled compaction policy on a real tablet: levels form, files of a level >= 1
//! never overlap and are recorded in the manifest (they survive a reopen), sequential
//! fills move files down without rewriting them, lookups probe at most one file per
//! level >= 1, and deletion markers reach the bottom and disappear.

mod common;

use std::path::Path;

use tablet::compaction::Leveled;
use tablet::{Mutation, ReadFilter, RowRange, Tablet, TabletOptions};

fn leveled_options() -> TabletOptions {
    let mut o = common::small_options(false);
    o.leveled = Some(Leveled {
        l0_trigger: 2,
        max_l0_merge: 64,
        base_level_bytes: 8 << 10,
        size_ratio: 3,
        target_file_size: 4 << 10,
        max_levels: 5,
    });
    o
}

/// A new leveled tablet on its own fault file system (kept alive with it).
fn fresh() -> (sstable::fault::FaultFs, Tablet) {
    let fs = common::fault_fs();
    let t = common::open(
        fs.shared(),
        Path::new(common::ROOT),
        "logs/a",
        leveled_options(),
    );
    (fs, t.unwrap())
}

fn put(t: &Tablet, row: &str, value: &str) {
    t.mutate_row(
        row.as_bytes(),
        vec![Mutation::set("f", b"q", 1, value.as_bytes())],
    )
    .unwrap();
}

fn rows(t: &Tablet) -> Vec<(Vec<u8>, Vec<u8>)> {
    t.scan(&RowRange::all(), &ReadFilter::default(), None)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.key, r.cells[0].value.clone())
        })
        .collect()
}

/// Writes `n` rows in `order`, flushing and compacting every 20 writes.
fn fill(t: &Tablet, order: impl Iterator<Item = u32>, tag: &str) {
    for (i, k) in order.enumerate() {
        put(
            t,
            &format!("row{k:06}"),
            &format!("{tag}-{k}-{}", "x".repeat(100)),
        );
        if i % 20 == 19 {
            t.force_flush().unwrap();
            t.force_merging_compactions().unwrap();
        }
    }
    t.force_flush().unwrap();
    t.force_merging_compactions().unwrap();
}

#[test]
fn sequential_fill_forms_levels_by_moving_files() {
    let fs = common::fault_fs();
    let root = Path::new(common::ROOT);
    let t = common::open(fs.shared(), root, "logs/a", leveled_options()).unwrap();
    fill(&t, 0..2000, "v");
    let s = t.stats();
    assert!(s.sstables_per_level.len() >= 3, "{s:?}");
    assert!(
        s.trivial_moves > 0,
        "sequential runs should move down: {s:?}"
    );
    let before = rows(&t);
    assert_eq!(before.len(), 2000);
    t.close().unwrap();
    let t = common::open(fs.shared(), root, "logs/b", leveled_options()).unwrap();
    assert_eq!(t.stats().sstables_per_level, s.sstables_per_level);
    assert_eq!(rows(&t), before);
}

#[test]
fn random_overwrites_read_back_newest_and_probe_one_file_per_level() {
    let (_fs, t) = fresh();
    let order = |seed: u32| (0..1500u32).map(move |i| (i.wrapping_mul(7919) + seed) % 500);
    fill(&t, order(0), "old");
    fill(&t, order(3), "new");
    let got = rows(&t);
    assert_eq!(got.len(), 500);
    for (k, v) in &got {
        let k = std::str::from_utf8(k).unwrap();
        assert!(String::from_utf8_lossy(v).starts_with("new-"), "{k}");
    }
    let s = t.stats();
    let levels = s
        .sstables_per_level
        .iter()
        .skip(1)
        .filter(|&&n| n > 0)
        .count();
    let before = s.sst_probes;
    for k in 0..500 {
        let row = format!("row{k:06}");
        assert!(t
            .read_row(row.as_bytes(), &ReadFilter::default())
            .unwrap()
            .is_some());
    }
    let probes = t.stats().sst_probes - before;
    let bound = 500 * (s.sstables_per_level[0] + levels) as u64;
    assert!(probes <= bound, "{probes} probes for 500 reads over {s:?}");
}

#[test]
fn deletions_vanish_at_the_bottom() {
    let (_fs, t) = fresh();
    fill(&t, 0..600, "v");
    for k in 0..600 {
        let row = format!("row{k:06}");
        t.mutate_row(row.as_bytes(), vec![Mutation::DeleteRow])
            .unwrap();
    }
    t.force_flush().unwrap();
    t.force_major_compaction().unwrap();
    assert!(rows(&t).is_empty());
    let s = t.stats();
    assert_eq!(
        s.sst_bytes, 0,
        "markers and the cells they hide are gone: {s:?}"
    );
}
