//! Bloom filter block: no false negatives, a false-positive rate near the configured one,
//! and corrupt payloads rejected.

use std::path::Path;

use sstable::filter::{Filter, FilterBuilder};

fn decode(payload: &[u8]) -> Filter {
    Filter::decode(Path::new("f.sst"), 9, payload).unwrap()
}

#[test]
fn no_false_negatives_and_about_one_percent_false_positives_at_10_bits() {
    let mut b = FilterBuilder::new(10);
    for i in 0..10_000u32 {
        // Each row twice, as a tablet adds a row once per cell.
        b.add_key(format!("row{i}").as_bytes());
        b.add_key(format!("row{i}").as_bytes());
    }
    let f = decode(&b.finish());
    for i in 0..10_000u32 {
        assert!(
            f.may_contain(format!("row{i}").as_bytes()),
            "false negative row{i}"
        );
    }
    let fp = (0..100_000u32)
        .filter(|i| f.may_contain(format!("absent{i}").as_bytes()))
        .count();
    let rate = fp as f64 / 100_000.0;
    println!("false-positive rate at 10 bits/key: {rate}");
    // Theory for 10 bits/key, k=7: 0.82%.
    assert!(rate > 0.002 && rate < 0.02, "false-positive rate {rate}");
}

#[test]
fn fewer_bits_give_more_false_positives() {
    let rate = |bits| {
        let mut b = FilterBuilder::new(bits);
        for i in 0..5000u32 {
            b.add_key(&i.to_be_bytes());
        }
        let f = decode(&b.finish());
        (5000..55_000u32)
            .filter(|i| f.may_contain(&i.to_be_bytes()))
            .count() as f64
            / 50_000.0
    };
    let (r4, r10) = (rate(4), rate(10));
    println!("false-positive rate: 4 bits/key {r4}, 10 bits/key {r10}");
    assert!(r4 > 2.0 * r10, "4 bits {r4}, 10 bits {r10}");
    // Theory for 4 bits/key, k=3: 14.7%.
    assert!(r4 > 0.08 && r4 < 0.25, "{r4}");
}

#[test]
fn no_keys_or_zero_bits_means_no_filter() {
    assert!(matches!(
        decode(&FilterBuilder::new(10).finish()),
        Filter::None
    ));
    let mut b = FilterBuilder::new(0);
    b.add_key(b"x");
    let f = decode(&b.finish());
    assert!(matches!(f, Filter::None));
    assert!(f.may_contain(b"anything"));
}

#[test]
fn filter_bytes_are_deterministic() {
    let build = || {
        let mut b = FilterBuilder::new(10);
        for k in [b"b".as_slice(), b"a", b"c"] {
            b.add_key(k);
        }
        b.finish()
    };
    assert_eq!(build(), build());
}

#[test]
fn malformed_payloads_are_corruption() {
    let mut b = FilterBuilder::new(10);
    b.add_key(b"k");
    let good = b.finish();
    let p = Path::new("f.sst");
    let mut cases: Vec<Vec<u8>> = vec![vec![], vec![7], vec![0, 0], good[..20].to_vec()];
    let mut k0 = good.clone();
    k0[9 + 9..9 + 13].copy_from_slice(&0u32.to_le_bytes());
    cases.push(k0);
    let mut k99 = good.clone();
    k99[9 + 9..9 + 13].copy_from_slice(&99u32.to_le_bytes());
    cases.push(k99);
    let mut len = good.clone();
    len[9 + 1..9 + 9].copy_from_slice(&u64::MAX.to_le_bytes());
    cases.push(len);
    let mut version = good.clone();
    version[9] = 2;
    cases.push(version);
    for c in cases {
        let e = Filter::decode(p, 3, &c).unwrap_err();
        assert!(e.to_string().contains("f.sst at offset 3"), "{e}");
    }
}

#[test]
fn tiny_filters_and_huge_bits_per_key_decode() {
    for (n, bits) in [(1usize, 1usize), (1, 13), (1, 100), (3, 64), (1000, 1)] {
        let mut b = FilterBuilder::new(bits);
        for i in 0..n {
            b.add_key(&i.to_le_bytes());
        }
        let f = decode(&b.finish());
        assert!(
            (0..n).all(|i| f.may_contain(&i.to_le_bytes())),
            "n {n} bits {bits}"
        );
    }
}
