//! S4, torn tail: cut the log at every byte offset of its last records, append garbage
//! (or nothing, or zeros), and check that the reader keeps exactly the complete records,
//! reports the torn tail where the first incomplete record starts, and never errors or
//! panics.

use std::path::Path;

use sstable::fault::FaultFs;
use sstable::log::{LogReader, LogWriter, BLOCK_SIZE};
use sstable::Fs;

const MAX: usize = 1 << 24;

/// A deterministic pseudo-random byte stream (xorshift), so failures replay.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The log's bytes and each record's end offset. The last four records are the ones cut:
/// a small one, one spanning two blocks, a tiny one and one that ends near a block's end.
fn build_log(fs: &FaultFs) -> (Vec<Vec<u8>>, Vec<u64>, Vec<u8>) {
    let sizes = [10, 200, 0, 5000, 20, 10, 34_000, 3, 500];
    let records: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| noise(i as u64 + 100, n))
        .collect();
    let path = Path::new("/full");
    let mut w = LogWriter::new(fs.create(path).unwrap());
    let ends = records.iter().map(|r| w.add_record(r).unwrap()).collect();
    w.sync().unwrap();
    let bytes = fs.file_bytes(path).unwrap();
    (records, ends, bytes)
}

/// Reads `bytes` as a log; returns the records and the reader, failing on any error.
fn read(fs: &FaultFs, bytes: &[u8]) -> (Vec<Vec<u8>>, LogReader) {
    let path = Path::new("/cut");
    let mut f = fs.create(path).unwrap();
    f.append(bytes).unwrap();
    drop(f);
    let mut r = LogReader::new(fs.open(path).unwrap(), 0, None, MAX);
    let mut out = Vec::new();
    loop {
        match r.next_record() {
            Ok(Some(rec)) => out.push(rec),
            Ok(None) => return (out, r),
            Err(e) => panic!("{} bytes: {e}", bytes.len()),
        }
    }
}

#[test]
fn every_cut_of_the_last_records_keeps_exactly_the_complete_ones() {
    let fs = FaultFs::new();
    let (records, ends, bytes) = build_log(&fs);
    let first_cut = ends[ends.len() - 5] as usize; // the start of the fourth-last record
    let garbage = noise(7, 3 * BLOCK_SIZE);
    let mut cases = 0;
    for cut in first_cut..=bytes.len() {
        // Rotate the tail appended after the cut among empty, short, long and shifted garbage.
        // (The long tail makes the reader scan a whole block for a valid record: costly in
        // debug builds, so only one cut in 16 gets it.)
        let tail: &[u8] = match cut % 16 {
            0 | 5 | 10 => &[],
            1 | 6 | 11 => &garbage[..5],
            2 | 7 | 12 | 15 => &garbage[..300],
            3 => &garbage[..BLOCK_SIZE + 11],
            _ => &garbage[cut % 1000..cut % 1000 + 40],
        };
        let mut file = bytes[..cut].to_vec();
        file.extend_from_slice(tail);
        // Garbage that happens to repeat the lost byte would legitimately complete the
        // record: make the first garbage byte differ from the byte it replaces.
        if cut < bytes.len() && !tail.is_empty() && file[cut] == bytes[cut] {
            file[cut] ^= 0xff;
        }
        let (got, r) = read(&fs, &file);
        let complete = ends.iter().filter(|&&e| e as usize <= cut).count();
        assert_eq!(
            got.len(),
            complete,
            "cut at {cut}, {} bytes of tail",
            tail.len()
        );
        assert!(got == records[..complete], "cut at {cut}: records differ");
        let last_end = if complete == 0 { 0 } else { ends[complete - 1] };
        assert_eq!(r.end_offset(), last_end, "cut at {cut}");
        match r.torn_tail() {
            None => assert!(
                cut == bytes.len() || tail.is_empty() || cut as u64 == last_end,
                "cut at {cut}: a torn tail was not reported"
            ),
            Some(t) => assert!(t >= last_end && t <= cut as u64 + 1 + BLOCK_SIZE as u64),
        }
        cases += 1;
    }
    assert!(cases > 34_000, "{cases} cuts");
}

#[test]
fn a_cut_with_nothing_after_it_reports_the_torn_record_start() {
    let fs = FaultFs::new();
    let (_, ends, bytes) = build_log(&fs);
    let n = ends.len();
    // Cut in the middle of the 34 000-byte record, which starts at ends[n - 4].
    let cut = ends[n - 4] as usize + 33_500;
    let (got, r) = read(&fs, &bytes[..cut]);
    assert_eq!(got.len(), n - 3);
    assert_eq!(r.torn_tail(), Some(ends[n - 4]));
}

#[test]
fn zeros_after_a_cut_record_are_still_a_torn_tail_at_that_record() {
    let fs = FaultFs::new();
    let (_, ends, bytes) = build_log(&fs);
    let n = ends.len();
    let cut = ends[n - 2] as usize + 2; // two bytes into the last record's header
    let mut file = bytes[..cut].to_vec();
    file.extend_from_slice(&vec![0; 2 * BLOCK_SIZE]);
    let (got, r) = read(&fs, &file);
    assert_eq!(got.len(), n - 1);
    assert_eq!(r.torn_tail(), Some(ends[n - 2]));
}

#[test]
fn a_cut_on_real_files_after_a_truncate_and_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let fs = sstable::RealFs;
    let mut w = LogWriter::new(fs.create(&path).unwrap());
    let ends: Vec<u64> = (0..20)
        .map(|i| w.add_record(&noise(i, 3000 + i as usize * 100)).unwrap())
        .collect();
    w.sync().unwrap();
    drop(w);
    fs.truncate(&path, ends[17] + 1234).unwrap();
    let mut f = fs.open_append(&path).unwrap();
    f.append(&noise(99, 777)).unwrap();
    f.sync().unwrap();
    let mut r = LogReader::new(fs.open(&path).unwrap(), 0, None, MAX);
    let mut count = 0;
    while r.next_record().unwrap().is_some() {
        count += 1;
    }
    assert_eq!(count, 18);
    assert_eq!(r.torn_tail(), Some(ends[17]));
    assert_eq!(r.end_offset(), ends[17]);
}
