//! Golden bytes: a tiny table with fixed options must encode to exactly these bytes, so a
//! format change cannot go unnoticed. `docs/format/sstable.md` annotates them.
//!
//! If this fails after an intended format change: bump `FORMAT_VERSION`, keep a reader
//! for version 1, and update both the hex here and the worked example in the doc.

mod common;

use std::path::Path;

use common::{build_table, open, read_all};
use sstable::{Compression, FaultFs, TableOptions};

/// The golden table's entries.
fn golden_entries() -> Vec<(Vec<u8>, Vec<u8>)> {
    [
        ("apple", "red"),
        ("apricot", "orange"),
        ("banana", "yellow"),
    ]
    .iter()
    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect()
}

fn golden_options() -> TableOptions {
    TableOptions {
        block_size: 32,
        restart_interval: 2,
        compression: Compression::None,
        bloom_bits_per_key: 10,
    }
}

fn hex_lines(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(i, c)| {
            let hex: Vec<String> = c.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:04x}: {}\n", i * 16, hex.join(" "))
        })
        .collect()
}

const GOLDEN: &str = "\
0000: 00 05 03 61 70 70 6c 65 72 65 64 02 05 06 72 69
0010: 63 6f 74 6f 72 61 6e 67 65 00 00 00 00 01 00 00
0020: 00 00 a5 ec 34 b2 00 06 06 62 61 6e 61 6e 61 79
0030: 65 6c 6c 6f 77 00 00 00 00 01 00 00 00 00 44 ba
0040: 6c 88 01 03 00 00 00 00 00 00 00 01 04 00 00 00
0050: 00 00 00 00 07 00 00 00 71 75 61 72 72 79 2d 73
0060: 73 74 61 62 6c 65 2d 62 6c 6f 6f 6d 2d 66 69 6c
0070: 74 65 72 2d 73 65 65 64 99 88 e0 ff 00 3c 39 6f
0080: 8c 00 07 02 61 70 72 69 63 6f 74 00 21 00 06 02
0090: 62 61 6e 61 6e 61 26 17 00 00 00 00 0c 00 00 00
00a0: 02 00 00 00 00 56 3c 41 f1 03 12 0f 02 05 61 70
00b0: 70 6c 65 06 62 61 6e 61 6e 61 00 a8 3e c4 ba 42
00c0: 00 00 00 00 00 00 00 3a 00 00 00 00 00 00 00 81
00d0: 00 00 00 00 00 00 00 23 00 00 00 00 00 00 00 a9
00e0: 00 00 00 00 00 00 00 11 00 00 00 00 00 00 00 01
00f0: 00 00 00 dc ef 17 82 51 52 59 53 53 54 42 31
";

#[test]
fn golden_table_bytes_are_pinned() {
    let fs = FaultFs::new();
    let p = Path::new("/golden.sst");
    build_table(&fs, p, &golden_entries(), golden_options());
    let bytes = fs.file_bytes(p).unwrap();
    let got = hex_lines(&bytes);
    if got != GOLDEN {
        panic!("golden table bytes changed; now:\n{got}");
    }
    assert_eq!(
        read_all(&open(&fs, p, None, false).unwrap()).unwrap(),
        golden_entries()
    );
}
