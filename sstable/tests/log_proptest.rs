//! Property tests of the record log: random record sequences round trip with matching
//! offsets, and any truncation of the file keeps exactly the records that end before the
//! cut (a torn tail, never an error).

use std::path::Path;

use proptest::prelude::*;
use sstable::fault::FaultFs;
use sstable::log::{LogReader, LogWriter, BLOCK_SIZE};
use sstable::Fs;

/// Record lengths weighted toward the interesting layouts: tiny, around a block, large.
fn record_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..64,
        2 => 64usize..4096,
        2 => (BLOCK_SIZE - 40)..(BLOCK_SIZE + 40),
        1 => 0usize..(3 * BLOCK_SIZE),
    ]
}

fn records() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(
        (record_len(), any::<u8>()).prop_map(|(n, seed)| {
            (0..n)
                .map(|i| (i as u8).wrapping_mul(seed | 1) ^ seed)
                .collect()
        }),
        0..24,
    )
}

fn write(fs: &FaultFs, path: &Path, recs: &[Vec<u8>]) -> Vec<u64> {
    let mut w = LogWriter::new(fs.create(path).unwrap());
    let ends = recs.iter().map(|r| w.add_record(r).unwrap()).collect();
    w.sync().unwrap();
    ends
}

fn read(fs: &FaultFs, path: &Path) -> (Vec<Vec<u8>>, Vec<u64>, Option<u64>) {
    let mut r = LogReader::new(fs.open(path).unwrap(), 0, None, 1 << 20);
    let (mut out, mut ends) = (Vec::new(), Vec::new());
    while let Some(rec) = r.next_record().unwrap() {
        out.push(rec);
        ends.push(r.end_offset());
    }
    (out, ends, r.torn_tail())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_sequences_round_trip(recs in records()) {
        let fs = FaultFs::new();
        let path = Path::new("/log");
        let ends = write(&fs, path, &recs);
        let (got, got_ends, torn) = read(&fs, path);
        prop_assert!(got == recs);
        prop_assert_eq!(got_ends, ends);
        prop_assert_eq!(torn, None);
    }

    #[test]
    fn any_truncation_keeps_the_complete_prefix(recs in records(), cut_frac in 0.0f64..1.0) {
        let fs = FaultFs::new();
        let path = Path::new("/log");
        let ends = write(&fs, path, &recs);
        let len = ends.last().copied().unwrap_or(0);
        let cut = (len as f64 * cut_frac) as u64;
        fs.truncate(path, cut).unwrap();
        let (got, _, torn) = read(&fs, path);
        let complete = ends.iter().filter(|&&e| e <= cut).count();
        prop_assert!(got == recs[..complete]);
        let last_end = if complete == 0 { 0 } else { ends[complete - 1] };
        match torn {
            // A clean end only when the cut is at a record end or inside a block trailer.
            None => prop_assert!(cut - last_end < 7, "cut {} last end {}", cut, last_end),
            Some(t) => prop_assert!(t >= last_end && t < cut),
        }
    }
}

/// A valid log of a few records, for mutation.
fn valid_log(fs: &FaultFs, recs: &[Vec<u8>]) -> Vec<u8> {
    let path = Path::new("/valid");
    write(fs, path, recs);
    fs.file_bytes(path).unwrap()
}

/// Reads `bytes` to the end or the first error; must never panic. Returns the records.
fn read_anything(fs: &FaultFs, bytes: &[u8], max_record: usize) -> Vec<Vec<u8>> {
    let path = Path::new("/any");
    let mut f = fs.create(path).unwrap();
    f.append(bytes).unwrap();
    drop(f);
    let mut r = LogReader::new(fs.open(path).unwrap(), 0, None, max_record);
    let mut out = Vec::new();
    while let Ok(Some(rec)) = r.next_record() {
        assert!(
            rec.len() <= max_record,
            "a record over max_record was returned"
        );
        out.push(rec);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes: no panic, and nothing over `max_record` is ever returned.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..70_000),
                                   max_record in 0usize..50_000) {
        let fs = FaultFs::new();
        read_anything(&fs, &bytes, max_record);
    }

    /// A valid log with a few bytes overwritten: no panic, and whatever is returned is a
    /// prefix of the original records (damage is never read as different data).
    #[test]
    fn damaged_logs_return_a_prefix_of_the_truth(
        recs in records(),
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let fs = FaultFs::new();
        let mut bytes = valid_log(&fs, &recs);
        prop_assume!(!bytes.is_empty());
        for (at, value) in &damage {
            let i = at.index(bytes.len());
            bytes[i] = *value;
        }
        let got = read_anything(&fs, &bytes, 1 << 20);
        prop_assert!(got.len() <= recs.len());
        prop_assert!(got[..] == recs[..got.len()], "damaged bytes were read as data");
    }
}
