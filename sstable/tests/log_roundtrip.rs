//! Record log round trips: every record size that exercises the block layout, offsets,
//! limits, size bounds, zero-filled tails, framing errors and the writer's fail-stop rule.

use std::path::Path;

use sstable::fault::{Fault, FaultFs};
use sstable::log::{
    record_checksum, LogReader, LogWriter, RecordType, BLOCK_SIZE, HEADER_SIZE, MAX_FRAGMENT,
};
use sstable::{Error, Fs, RealFs};

const MAX: usize = 1 << 24;

/// A payload of `len` bytes that differs per record `seed`.
fn payload(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + seed * 7 + 1) as u8).collect()
}

/// Writes `records` to `path`, syncs, and returns the offsets the writer returned.
fn write_log(fs: &dyn Fs, path: &Path, records: &[Vec<u8>]) -> Vec<u64> {
    let mut w = LogWriter::new(fs.create(path).unwrap());
    let ends = records.iter().map(|r| w.add_record(r).unwrap()).collect();
    w.sync().unwrap();
    ends
}

/// Reads every record; returns (records, end offsets, record offsets) and the reader.
fn read_all(
    fs: &dyn Fs,
    path: &Path,
    start: u64,
    limit: Option<u64>,
) -> (Vec<Vec<u8>>, Vec<u64>, Vec<u64>, LogReader) {
    let mut r = LogReader::new(fs.open(path).unwrap(), start, limit, MAX);
    let (mut recs, mut ends, mut starts) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(rec) = r.next_record().unwrap() {
        recs.push(rec);
        ends.push(r.end_offset());
        starts.push(r.record_offset());
    }
    (recs, ends, starts, r)
}

/// Sizes that hit every layout case, in an order that makes the first ones land at known
/// places: a record filling block 0 exactly, one leaving a 6-byte trailer in block 1 (the
/// next record starts block 2), one leaving exactly 7 bytes at the end of block 2 (the next
/// record's FIRST fragment is empty), then empty, tiny, one-over-a-block and many-block
/// records.
fn layout_sizes() -> Vec<usize> {
    vec![
        MAX_FRAGMENT,
        MAX_FRAGMENT - 6,
        0,
        MAX_FRAGMENT - 2 * HEADER_SIZE,
        5,
        1,
        100,
        MAX_FRAGMENT + 1,
        5 * BLOCK_SIZE + 17,
        0,
        0,
        BLOCK_SIZE,
        3,
    ]
}

#[test]
fn every_layout_case_round_trips_with_matching_offsets() {
    let fs = FaultFs::new();
    let path = Path::new("/log");
    let records: Vec<Vec<u8>> = layout_sizes()
        .iter()
        .enumerate()
        .map(|(i, &n)| payload(i, n))
        .collect();
    let ends = write_log(&fs, path, &records);
    let (got, got_ends, starts, r) = read_all(&fs, path, 0, None);
    assert_eq!(got.len(), records.len());
    for (i, (a, b)) in got.iter().zip(&records).enumerate() {
        assert!(a == b, "record {i} ({} bytes) differs", b.len());
    }
    assert_eq!(got_ends, ends, "reader end offsets = writer offsets");
    assert_eq!(r.torn_tail(), None);
    assert_eq!(
        fs.file_bytes(path).unwrap().len() as u64,
        *ends.last().unwrap()
    );
    let bs = BLOCK_SIZE as u64;
    let h = HEADER_SIZE as u64;
    assert_eq!(ends[0], bs, "fills block 0 exactly");
    assert_eq!(ends[1], 2 * bs - 6, "leaves a 6-byte trailer");
    assert_eq!(starts[2], 2 * bs, "the next record starts past the trailer");
    assert_eq!(ends[3], 3 * bs - h, "leaves exactly a header's room");
    assert_eq!(starts[4], 3 * bs - h, "an empty FIRST fragment fills it");
    assert_eq!(ends[4], 3 * bs + h + 5);
}

#[test]
fn reading_from_any_returned_offset_yields_the_rest() {
    let fs = FaultFs::new();
    let path = Path::new("/log");
    let records: Vec<Vec<u8>> = layout_sizes()
        .iter()
        .enumerate()
        .map(|(i, &n)| payload(i, n))
        .collect();
    let ends = write_log(&fs, path, &records);
    for (k, &start) in ends.iter().enumerate() {
        let (got, _, _, r) = read_all(&fs, path, start, None);
        assert_eq!(got, records[k + 1..], "from offset {start}");
        assert_eq!(r.torn_tail(), None);
    }
}

#[test]
fn a_limit_at_a_record_end_hides_everything_after_it() {
    let fs = FaultFs::new();
    let path = Path::new("/log");
    let records: Vec<Vec<u8>> = layout_sizes()
        .iter()
        .enumerate()
        .map(|(i, &n)| payload(i, n))
        .collect();
    let ends = write_log(&fs, path, &records);
    for (k, &limit) in ends.iter().enumerate() {
        let (got, _, _, r) = read_all(&fs, path, 0, Some(limit));
        assert_eq!(got, records[..=k], "limit {limit}");
        assert_eq!(r.torn_tail(), None);
        assert_eq!(r.end_offset(), limit);
    }
}

#[test]
fn a_limit_inside_a_record_is_a_torn_tail_at_that_record() {
    let fs = FaultFs::new();
    let path = Path::new("/log");
    let records = vec![payload(1, 10), payload(2, 3 * BLOCK_SIZE), payload(3, 10)];
    let ends = write_log(&fs, path, &records);
    let (got, _, _, r) = read_all(&fs, path, 0, Some(ends[1] - 1));
    assert_eq!(got, records[..1]);
    assert_eq!(r.torn_tail(), Some(ends[0]));
}

#[test]
fn real_files_round_trip_through_the_write_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let records: Vec<Vec<u8>> = (0..300).map(|i| payload(i, (i * 977) % 70_000)).collect();
    let ends = write_log(&RealFs, &path, &records);
    let (got, got_ends, _, r) = read_all(&RealFs, &path, 0, None);
    assert!(got == records);
    assert_eq!(got_ends, ends);
    assert_eq!(r.torn_tail(), None);
}

#[test]
fn an_empty_log_and_a_start_at_the_end_are_clean_ends() {
    let fs = FaultFs::new();
    let path = Path::new("/log");
    write_log(&fs, path, &[]);
    let (got, _, _, r) = read_all(&fs, path, 0, None);
    assert!(got.is_empty());
    assert_eq!((r.torn_tail(), r.end_offset()), (None, 0));
}

#[test]
fn a_start_past_the_end_or_the_limit_is_an_error() {
    let fs = FaultFs::new();
    let path = Path::new("/log");
    let ends = write_log(&fs, path, &[payload(0, 50)]);
    let mut r = LogReader::new(fs.open(path).unwrap(), ends[0] + 1, None, MAX);
    assert!(r.next_record().unwrap_err().is_corruption());
    let mut r = LogReader::new(fs.open(path).unwrap(), ends[0], Some(3), MAX);
    assert!(matches!(r.next_record(), Err(Error::InvalidArgument(_))));
}

#[test]
fn a_record_longer_than_max_record_is_corruption_before_assembly() {
    let fs = FaultFs::new();
    let path = Path::new("/log");
    let ends = write_log(
        &fs,
        path,
        &[payload(0, 10), payload(1, 3 * BLOCK_SIZE), payload(2, 10)],
    );
    let mut r = LogReader::new(fs.open(path).unwrap(), 0, None, 2 * BLOCK_SIZE);
    assert_eq!(r.next_record().unwrap().unwrap().len(), 10);
    match r.next_record() {
        Err(Error::Corruption { offset, what, .. }) => {
            assert_eq!(offset, ends[0]);
            assert!(what.contains("limit"), "{what}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // The error is sticky.
    assert!(r.next_record().unwrap_err().is_corruption());
    // A full record over the bound too.
    let mut r = LogReader::new(fs.open(path).unwrap(), 0, None, 9);
    assert!(r.next_record().unwrap_err().is_corruption());
}

#[test]
fn a_zero_filled_tail_is_a_clean_end() {
    for zeros in [1, 6, 7, 1000, BLOCK_SIZE, 2 * BLOCK_SIZE + 5] {
        let fs = FaultFs::new();
        let path = Path::new("/log");
        let records = vec![payload(0, 10), payload(1, BLOCK_SIZE + 3)];
        let ends = write_log(&fs, path, &records);
        let mut f = fs.open_append(path).unwrap();
        f.append(&vec![0u8; zeros]).unwrap();
        f.sync().unwrap();
        let (got, _, _, r) = read_all(&fs, path, 0, None);
        assert_eq!(got, records, "{zeros} zeros");
        assert_eq!(r.torn_tail(), None, "{zeros} zeros");
        assert_eq!(r.end_offset(), ends[1]);
    }
}

/// The bytes of one physical record.
fn physical(kind: RecordType, data: &[u8]) -> Vec<u8> {
    let mut out = record_checksum(kind as u8, data).to_le_bytes().to_vec();
    out.extend_from_slice(&(data.len() as u16).to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(data);
    out
}

#[test]
fn framing_errors_between_valid_records_are_corruption() {
    let cases: Vec<(Vec<RecordType>, u64)> = vec![
        // FIRST then FULL: the open record at 0 never ends.
        (vec![RecordType::First, RecordType::Full], 0),
        // MIDDLE without FIRST, after a good FULL record at 0 (10 bytes).
        (
            vec![RecordType::Full, RecordType::Middle, RecordType::Full],
            10,
        ),
        (vec![RecordType::Full, RecordType::Last], 10),
        (
            vec![RecordType::First, RecordType::First, RecordType::Last],
            0,
        ),
    ];
    for (kinds, bad_offset) in cases {
        let fs = FaultFs::new();
        let path = Path::new("/log");
        let mut f = fs.create(path).unwrap();
        for k in &kinds {
            f.append(&physical(*k, b"abc")).unwrap();
        }
        f.sync().unwrap();
        let mut r = LogReader::new(fs.open(path).unwrap(), 0, None, MAX);
        let err = loop {
            match r.next_record() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{kinds:?}: read to the end without an error"),
                Err(e) => break e,
            }
        };
        match err {
            Error::Corruption { offset, file, .. } => {
                assert_eq!(offset, bad_offset, "{kinds:?}");
                assert_eq!(file, "/log");
            }
            e => panic!("{kinds:?}: {e}"),
        }
    }
}

#[test]
fn a_fragmented_record_cut_by_the_end_is_a_torn_tail() {
    let fs = FaultFs::new();
    let path = Path::new("/log");
    let mut f = fs.create(path).unwrap();
    f.append(&physical(RecordType::Full, b"ok")).unwrap();
    f.append(&physical(RecordType::First, b"abc")).unwrap();
    f.append(&physical(RecordType::Middle, b"def")).unwrap();
    f.sync().unwrap();
    let (got, _, _, r) = read_all(&fs, path, 0, None);
    assert_eq!(got, vec![b"ok".to_vec()]);
    assert_eq!(r.torn_tail(), Some(9));
    assert_eq!(r.end_offset(), 9);
}

#[test]
fn the_writer_refuses_everything_after_a_failed_sync() {
    let fs = FaultFs::new();
    let path = Path::new("/log");
    let mut w = LogWriter::new(fs.create(path).unwrap());
    fs.sync_dir(Path::new("/")).unwrap();
    w.add_record(b"durable").unwrap();
    w.sync().unwrap();
    w.add_record(b"lost").unwrap();
    fs.inject(Fault::SyncFails {
        path: "log".into(),
        times: 1,
    });
    assert!(w.sync().is_err());
    assert!(w.has_failed());
    // The fault has fired; the file system would now report Ok, but the writer never
    // asks it again.
    let syncs = fs.counters().syncs;
    assert!(w.sync().is_err());
    assert!(w.add_record(b"more").is_err());
    assert!(w.flush().is_err());
    assert_eq!(fs.counters().syncs, syncs);
    fs.power_cut();
    let (got, _, _, _) = read_all(&fs, path, 0, None);
    assert_eq!(got, vec![b"durable".to_vec()]);
}

#[test]
fn the_writer_refuses_everything_after_a_failed_append() {
    let fs = FaultFs::new();
    let path = Path::new("/log");
    let mut w = LogWriter::new(fs.create(path).unwrap());
    w.add_record(b"first").unwrap();
    fs.inject(Fault::AppendNoSpace {
        path: "log".into(),
        after_bytes: 3,
        times: 1,
    });
    assert!(w.add_record(b"second record").is_err());
    assert!(w.add_record(b"x").is_err());
    assert!(w.sync().is_err());
    // The short write is a torn tail, not corruption.
    let (got, _, _, r) = read_all(&fs, path, 0, None);
    assert_eq!(got, vec![b"first".to_vec()]);
    assert_eq!(r.torn_tail(), Some(12));
}

#[test]
fn a_writer_continues_a_log_truncated_to_a_record_boundary() {
    let fs = FaultFs::new();
    let path = Path::new("/log");
    let records = vec![payload(0, 40_000), payload(1, 10)];
    let ends = write_log(&fs, path, &records);
    let mut w = LogWriter::new(fs.open_append(path).unwrap());
    assert_eq!(w.offset(), ends[1]);
    w.add_record(&payload(2, 30_000)).unwrap();
    w.sync().unwrap();
    let (got, _, _, _) = read_all(&fs, path, 0, None);
    assert_eq!(got.len(), 3);
    assert_eq!(got[2], payload(2, 30_000));
}

#[test]
fn a_batch_of_records_is_one_append_with_the_same_bytes_as_single_adds() {
    let fs = FaultFs::new();
    let records: Vec<Vec<u8>> = layout_sizes()
        .iter()
        .enumerate()
        .map(|(i, &n)| payload(i, n))
        .collect();
    let single = write_log(&fs, Path::new("/single"), &records);
    let mut w = LogWriter::new(fs.create(Path::new("/batch")).unwrap());
    let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
    let before = fs.counters().bytes_written;
    let ends = w.add_records(&refs).unwrap();
    assert_eq!(fs.counters().bytes_written - before, *ends.last().unwrap());
    assert_eq!(ends, single);
    assert_eq!(
        fs.file_bytes(Path::new("/batch")).unwrap(),
        fs.file_bytes(Path::new("/single")).unwrap()
    );
}

/// Pins the exact bytes of the format (docs/format/log.md, worked example).
#[test]
fn golden_bytes() {
    let fs = FaultFs::new();
    let path = Path::new("/golden");
    let ends = write_log(&fs, path, &[b"hello".to_vec(), Vec::new()]);
    assert_eq!(ends, vec![12, 19]);
    let expected: Vec<u8> = [
        0x9d, 0x23, 0xac, 0x8a, 0x05, 0x00, 0x01, b'h', b'e', b'l', b'l',
        b'o', // FULL "hello"
        0x1b, 0xdf, 0x05, 0xa5, 0x00, 0x00, 0x01, // FULL ""
    ]
    .to_vec();
    assert_eq!(fs.file_bytes(path).unwrap(), expected);
    // The example's third record: 40 000 bytes as FIRST (fills block 0) + LAST.
    let mut w = LogWriter::new(fs.open_append(path).unwrap());
    assert_eq!(w.add_record(&[0u8; 40_000]).unwrap(), 40_033);
}

/// Why a continuing writer must truncate to `end_offset()`: zeros are a clean end only
/// while nothing valid follows them.
#[test]
fn continuing_after_a_zero_tail_needs_a_truncate_to_end_offset() {
    let fs = FaultFs::new();
    let path = Path::new("/log");
    let ends = write_log(&fs, path, &[payload(0, 100)]);
    let mut f = fs.open_append(path).unwrap();
    f.append(&[0u8; 64]).unwrap();
    drop(f);
    let (_, _, _, r) = read_all(&fs, path, 0, None);
    assert_eq!((r.torn_tail(), r.end_offset()), (None, ends[0]));
    // Appending after the zeros: the zeros become mid-log corruption.
    let mut w = LogWriter::new(fs.open_append(path).unwrap());
    w.add_record(b"after zeros").unwrap();
    let mut r = LogReader::new(fs.open(path).unwrap(), 0, None, MAX);
    r.next_record().unwrap().unwrap();
    assert!(r.next_record().unwrap_err().is_corruption());
    // Truncating to end_offset first keeps the log readable.
    fs.truncate(path, ends[0]).unwrap();
    let mut w = LogWriter::new(fs.open_append(path).unwrap());
    w.add_record(b"after truncate").unwrap();
    let (got, _, _, _) = read_all(&fs, path, 0, None);
    assert_eq!(got, vec![payload(0, 100), b"after truncate".to_vec()]);
}
