//! Block format: round trips, seeks, the compression choice, and corrupt input.

use std::path::Path;
use std::sync::Arc;

use sstable::block::{decode_block, encode_block, BLOCK_TRAILER_SIZE};
use sstable::{Block, BlockBuilder, BlockHandle, Compression, KvIter};

fn entries(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                format!("key{i:05}").into_bytes(),
                format!("value-{i}").into_bytes(),
            )
        })
        .collect()
}

fn build(kvs: &[(Vec<u8>, Vec<u8>)], interval: usize) -> Arc<Block> {
    let mut b = BlockBuilder::new(interval);
    for (k, v) in kvs {
        b.add(k, v);
    }
    Arc::new(Block::new(b.finish(), Path::new("t.sst"), 0).unwrap())
}

fn collect(it: &mut dyn KvIter) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next().unwrap();
    }
    out
}

#[test]
fn round_trip_for_several_restart_intervals() {
    let kvs = entries(100);
    for interval in [1, 2, 16, 1000] {
        let block = build(&kvs, interval);
        let mut it = block.iter();
        assert!(!it.valid(), "fresh iterator must not be positioned");
        it.seek_to_first().unwrap();
        assert_eq!(collect(&mut it), kvs, "interval {interval}");
    }
}

#[test]
fn seek_finds_the_first_key_at_or_after_the_target() {
    let kvs = entries(50);
    let block = build(&kvs, 4);
    let mut it = block.iter();
    it.seek(b"key00017").unwrap();
    assert_eq!(it.key(), b"key00017");
    it.seek(b"key00017x").unwrap();
    assert_eq!(it.key(), b"key00018");
    it.seek(b"").unwrap();
    assert_eq!(it.key(), b"key00000");
    it.seek(b"key00049").unwrap();
    assert_eq!(it.value(), b"value-49");
    it.seek(b"key9").unwrap();
    assert!(!it.valid());
}

#[test]
fn empty_block_iterates_nothing() {
    let block = build(&[], 16);
    let mut it = block.iter();
    it.seek_to_first().unwrap();
    assert!(!it.valid());
    it.seek(b"a").unwrap();
    assert!(!it.valid());
}

#[test]
fn lz4_is_used_only_when_it_saves_an_eighth() {
    let compressible = vec![b'a'; 4096];
    let stored = encode_block(&compressible, Compression::Lz4);
    assert!(stored.len() < 4096 / 2);
    assert_eq!(stored[stored.len() - BLOCK_TRAILER_SIZE], 1);
    assert_eq!(
        decode_block(Path::new("f"), 0, &stored).unwrap(),
        compressible
    );

    // Pseudo-random bytes do not compress: stored raw with type 0.
    let mut x: u64 = 88172645463325252;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let stored = encode_block(&noise, Compression::Lz4);
    assert_eq!(stored.len(), 4096 + BLOCK_TRAILER_SIZE);
    assert_eq!(stored[4096], 0);
    assert_eq!(decode_block(Path::new("f"), 0, &stored).unwrap(), noise);
}

fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

#[test]
fn corrupt_stored_blocks_are_reported_with_file_and_offset() {
    let stored = encode_block(&vec![b'z'; 1000], Compression::Lz4);
    for i in 0..stored.len() {
        for bit in 0..8 {
            let mut bad = stored.clone();
            bad[i] ^= 1 << bit;
            let err = decode_block(Path::new("x.sst"), 77, &bad).unwrap_err();
            assert!(err.to_string().contains("x.sst at offset 77"), "{err}");
        }
    }
    assert!(decode_block(Path::new("x"), 0, &[1, 2])
        .unwrap_err()
        .is_corruption());
    // A valid checksum over an LZ4 header claiming 4 GiB: refused before allocating.
    let huge = with_crc(vec![0xff, 0xff, 0xff, 0xff, 0x00, 1]);
    assert!(decode_block(Path::new("x"), 0, &huge)
        .unwrap_err()
        .is_corruption());
    // Unknown compression type.
    let unknown = with_crc(vec![1, 2, 3, 9]);
    assert!(decode_block(Path::new("x"), 0, &unknown)
        .unwrap_err()
        .is_corruption());
}

#[test]
fn malformed_contents_are_corruption_not_panics() {
    let p = Path::new("b.sst");
    // Too short, zero restarts, restart count too large.
    for data in [vec![], vec![0, 0, 0, 0], vec![9, 0, 0, 0]] {
        assert!(Block::new(data, p, 5).unwrap_err().is_corruption());
    }
    // Entries whose lengths run past the block: iterate every truncation and every byte
    // value at each position of a small valid block, and never panic.
    let good = {
        let mut b = BlockBuilder::new(2);
        for (k, v) in entries(5) {
            b.add(&k, &v);
        }
        b.finish()
    };
    for i in 0..good.len() {
        for v in [0u8, 0x7f, 0x80, 0xff] {
            let mut data = good.clone();
            data[i] = v;
            if let Ok(block) = Block::new(data, p, 5) {
                let block = Arc::new(block);
                let mut it = block.iter();
                let mut steps = 0;
                let mut r = it.seek_to_first();
                while r.is_ok() && it.valid() && steps < 100 {
                    r = it.next();
                    steps += 1;
                }
                if let Err(e) = r {
                    assert!(e.is_corruption(), "{e}");
                }
                let _ = it.seek(b"key00003");
            }
        }
    }
}

#[test]
fn block_handles_round_trip_and_reject_garbage() {
    let h = BlockHandle {
        offset: 1 << 40,
        size: 300,
    };
    let mut buf = Vec::new();
    h.encode_to(&mut buf);
    assert_eq!(BlockHandle::decode(&buf), Some((h, buf.len())));
    assert_eq!(BlockHandle::decode(&[0x80; 11]), None);
    assert_eq!(BlockHandle::decode(&[0x80]), None);
}
