//! Single bit flips anywhere in a table (footer, properties, index, filter, data blocks)
//! are reported as `Error::Corruption` naming the file and an offset inside it: never
//! different data, never a panic.

mod common;

use std::path::Path;

use common::{build_table, entries, open, read_all};
use sstable::{Compression, Error, FaultFs, TableOptions};

/// Flips `bit` of byte `at` in a fresh copy of the table, opens and reads everything,
/// and checks the outcome.
fn check_flip(kvs: &[(Vec<u8>, Vec<u8>)], opts: TableOptions, at: u64, bit: u8) {
    let fs = FaultFs::new();
    let p = Path::new("/flip.sst");
    let info = build_table(&fs, p, kvs, opts);
    fs.flip_bit(p, at, bit).unwrap();
    let outcome = open(&fs, p, None, false).and_then(|t| {
        let all = read_all(&t)?;
        // Probe the filter too (it was decoded at open).
        let _ = kvs.iter().filter(|(k, _)| t.may_contain(k)).count();
        Ok(all)
    });
    match outcome {
        Ok(all) => panic!(
            "flip of bit {bit} at byte {at} went unnoticed (same data: {})",
            all == kvs
        ),
        Err(Error::Corruption { file, offset, what }) => {
            assert_eq!(file, "/flip.sst", "{what}");
            assert!(
                offset < info.file_size,
                "offset {offset} outside the file: {what}"
            );
        }
        Err(e) => panic!("flip at {at} bit {bit} gave a non-corruption error: {e}"),
    }
}

#[test]
fn every_bit_of_a_small_uncompressed_table_is_covered() {
    let kvs = entries(12, 6);
    let opts = TableOptions {
        block_size: 64,
        restart_interval: 3,
        compression: Compression::None,
        bloom_bits_per_key: 10,
    };
    let fs = FaultFs::new();
    let size = build_table(&fs, Path::new("/x"), &kvs, opts).file_size;
    assert!(size > 300, "want several blocks, got {size} bytes");
    for at in 0..size {
        for bit in 0..8 {
            check_flip(&kvs, opts, at, bit);
        }
    }
}

#[test]
fn a_strided_sample_of_a_compressed_table_is_covered() {
    let kvs = entries(400, 50);
    let opts = TableOptions {
        block_size: 1024,
        ..TableOptions::default()
    };
    let fs = FaultFs::new();
    let info = build_table(&fs, Path::new("/x"), &kvs, opts);
    assert!(info.data_blocks > 5);
    let size = info.file_size;
    // Every 13th byte plus the whole tail (filter, index, properties, footer).
    let tail_from = size.saturating_sub(400);
    let offsets = (0..size).step_by(13).chain(tail_from..size);
    for (i, at) in offsets.enumerate() {
        check_flip(&kvs, opts, at, (i % 8) as u8);
    }
}
