//! S5, bit flips: one flipped bit in a record in the middle of the log is reported as
//! `Error::Corruption` naming the file and the offset of the damaged physical record; the
//! records before it are returned intact, nothing after it is returned, and nothing is
//! skipped silently. A flip in the very last record is a torn tail by the rule (nothing
//! valid follows it).

use std::path::Path;

use sstable::fault::FaultFs;
use sstable::log::{LogReader, LogWriter, BLOCK_SIZE, HEADER_SIZE};
use sstable::{Error, Fs};

const MAX: usize = 1 << 24;

fn payload(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 + seed * 101 + 5) as u8).collect()
}

/// Physical record headers in `bytes`, as (offset, total length), walking the layout.
fn physical_records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let left = BLOCK_SIZE - pos % BLOCK_SIZE;
        if left < HEADER_SIZE {
            pos += left;
            continue;
        }
        let len = u16::from_le_bytes([bytes[pos + 4], bytes[pos + 5]]) as usize;
        out.push((pos, HEADER_SIZE + len));
        pos += HEADER_SIZE + len;
    }
    out
}

struct Outcome {
    records: Vec<Vec<u8>>,
    error: Option<(String, u64)>,
    torn: Option<u64>,
}

fn read_all(fs: &FaultFs, path: &Path) -> Outcome {
    let mut r = LogReader::new(fs.open(path).unwrap(), 0, None, MAX);
    let mut records = Vec::new();
    loop {
        match r.next_record() {
            Ok(Some(rec)) => records.push(rec),
            Ok(None) => {
                return Outcome {
                    records,
                    error: None,
                    torn: r.torn_tail(),
                }
            }
            Err(Error::Corruption { file, offset, .. }) => {
                // Later calls repeat the error: the reader never moves past it.
                assert!(r.next_record().unwrap_err().is_corruption());
                return Outcome {
                    records,
                    error: Some((file, offset)),
                    torn: None,
                };
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}

/// A log of small records around one that spans three blocks.
fn build(fs: &FaultFs, path: &Path) -> (Vec<Vec<u8>>, Vec<u64>) {
    let sizes = [30, 1, 0, 700, 2 * BLOCK_SIZE + 100, 50, 9, 400, 60];
    let records: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| payload(i, n))
        .collect();
    let mut w = LogWriter::new(fs.create(path).unwrap());
    let ends = records.iter().map(|r| w.add_record(r).unwrap()).collect();
    w.sync().unwrap();
    (records, ends)
}

/// Flips every bit of every byte of logical records `first..=last` in turn and checks
/// the report.
fn flip_every_bit(first: usize, last: usize) -> usize {
    let fs = FaultFs::new();
    let path = Path::new("/log");
    let (records, ends) = build(&fs, path);
    let pristine = fs.file_bytes(path).unwrap();
    let physical = physical_records(&pristine);
    let start_of = |k: usize| if k == 0 { 0 } else { ends[k - 1] as usize };
    let mut checked = 0;
    for k in first..=last {
        for &(off, len) in physical
            .iter()
            .filter(|(o, _)| *o >= start_of(k) && *o < ends[k] as usize)
        {
            for byte in off..off + len {
                for bit in 0..8 {
                    fs.flip_bit(path, byte as u64, bit).unwrap();
                    let out = read_all(&fs, path);
                    fs.flip_bit(path, byte as u64, bit).unwrap();
                    let (file, at) = out.error.unwrap_or_else(|| {
                        panic!("flip at byte {byte} bit {bit} (record {k}) was not detected")
                    });
                    assert_eq!(file, "/log");
                    assert_eq!(at, off as u64, "flip at byte {byte} bit {bit}");
                    assert!(out.records == records[..k], "records before {k} intact");
                    checked += 1;
                }
            }
        }
    }
    checked
}

#[test]
fn every_bit_flip_in_small_mid_log_records_is_corruption_at_that_record() {
    // Records 1..=3: a 1-byte, an empty and a 700-byte record, all followed by valid ones.
    let checked = flip_every_bit(1, 3);
    assert_eq!(checked, 8 * (8 + 7 + 707));
}

#[test]
fn every_bit_flip_in_each_fragment_of_a_multi_block_record_is_corruption() {
    // Record 4 spans three blocks (FIRST, MIDDLE, LAST): a flip in any fragment is reported
    // at that fragment's header. Sampled bytes: all headers and every 97th data byte.
    let fs = FaultFs::new();
    let path = Path::new("/log");
    let (records, ends) = build(&fs, path);
    let pristine = fs.file_bytes(path).unwrap();
    let fragments: Vec<(usize, usize)> = physical_records(&pristine)
        .into_iter()
        .filter(|(o, _)| *o >= ends[3] as usize && *o < ends[4] as usize)
        .collect();
    assert_eq!(fragments.len(), 3);
    for (off, len) in fragments {
        let bytes = (off..off + HEADER_SIZE).chain((off + HEADER_SIZE..off + len).step_by(97));
        for byte in bytes {
            let bit = (byte % 8) as u8;
            fs.flip_bit(path, byte as u64, bit).unwrap();
            let out = read_all(&fs, path);
            fs.flip_bit(path, byte as u64, bit).unwrap();
            assert_eq!(out.error.map(|e| e.1), Some(off as u64), "byte {byte}");
            assert!(out.records == records[..4]);
        }
    }
}

#[test]
fn a_flip_in_the_last_record_is_a_torn_tail() {
    let fs = FaultFs::new();
    let path = Path::new("/log");
    let (records, ends) = build(&fs, path);
    let n = records.len();
    fs.flip_bit(path, ends[n - 2] + HEADER_SIZE as u64 + 3, 2)
        .unwrap();
    let out = read_all(&fs, path);
    assert!(out.error.is_none());
    assert_eq!(out.records, records[..n - 1]);
    assert_eq!(out.torn, Some(ends[n - 2]));
}

#[test]
fn zeroed_bytes_mid_log_are_corruption_not_a_clean_end() {
    // A hole of zeros (as a retried-then-trusted fsync leaves on Linux) followed by valid
    // records must not read as the end of the log.
    let fs = FaultFs::new();
    let path = Path::new("/log");
    let (records, ends) = build(&fs, path);
    let mut bytes = fs.file_bytes(path).unwrap();
    let hole = ends[5] as usize..ends[6] as usize;
    bytes[hole.clone()].fill(0);
    let mut f = fs.create(path).unwrap();
    f.append(&bytes).unwrap();
    drop(f);
    let out = read_all(&fs, path);
    assert_eq!(out.error.map(|e| e.1), Some(hole.start as u64));
    assert_eq!(out.records, records[..6]);
}
