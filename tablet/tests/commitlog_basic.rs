//! The commit log's contract without faults: interleaved tablets round trip and replay per
//! tablet, seals hide what follows them, segments roll and are deleted, reopening starts a
//! new segment, a torn tail at the end of the last segment is cut cleanly, and bad
//! arguments are refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sstable::fault::FaultFs;
use sstable::{Error, Fs};
use tablet::commitlog::{
    list_segments, replay_segment, segment_path, valid_end, CommitLog, CommitLogOptions, TabletId,
};

const MAX: usize = 1 << 20;

fn opts(segment_bytes: u64) -> CommitLogOptions {
    CommitLogOptions {
        segment_bytes,
        sync: true,
        max_record: MAX,
    }
}

fn payload(tablet: TabletId, i: usize) -> Vec<u8> {
    format!("t{tablet}-r{i}-").repeat(1 + i % 7).into_bytes()
}

/// Every record of `tablet` in `dir`, in log order, each segment read to its valid end.
fn replay_all(fs: &dyn Fs, dir: &Path, tablet: TabletId) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (_, path) in list_segments(fs, dir).unwrap() {
        let end = valid_end(fs, &path, MAX).unwrap();
        replay_segment(fs, &path, tablet, 0, end, MAX, &mut |p| {
            out.push(p.to_vec());
            Ok(())
        })
        .unwrap();
    }
    out
}

#[test]
fn interleaved_tablets_replay_separately_in_order() {
    let fs = FaultFs::new();
    let dir = PathBuf::from("/logs/server-1");
    let log = CommitLog::open(fs.shared(), &dir, opts(64 << 20)).unwrap();
    let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 5];
    let mut last = log.position();
    for i in 0..500 {
        let t = (i * 7 % 5) as TabletId;
        let p = payload(t, i);
        let pos = log.append(t, &p).unwrap();
        assert!(pos > last, "positions increase");
        last = pos;
        expected[t as usize].push(p);
    }
    assert_eq!(log.position(), last);
    for t in 0..5 {
        assert_eq!(replay_all(&fs, &dir, t), expected[t as usize], "tablet {t}");
    }
    assert!(replay_all(&fs, &dir, 99).is_empty());
    let s = log.stats();
    assert_eq!(s.records, 500);
    assert_eq!(s.segments_created, 1);
}

#[test]
fn records_after_a_seal_are_invisible_though_present() {
    let fs = FaultFs::new();
    let dir = PathBuf::from("/log");
    let log = CommitLog::open(fs.shared(), &dir, opts(64 << 20)).unwrap();
    for i in 0..10 {
        log.append(1, &payload(1, i)).unwrap();
    }
    let seal = log.position();
    for i in 10..20 {
        log.append(1, &payload(1, i)).unwrap();
    }
    let path = segment_path(&dir, seal.segment);
    let mut seen = Vec::new();
    replay_segment(&fs, &path, 1, 0, seal.offset, MAX, &mut |p| {
        seen.push(p.to_vec());
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, (0..10).map(|i| payload(1, i)).collect::<Vec<_>>());
    // Replay from a redo point to the seal: only the records between them.
    let redo = log.position();
    for i in 20..23 {
        log.append(1, &payload(1, i)).unwrap();
    }
    let end = log.position();
    let mut seen = Vec::new();
    replay_segment(&fs, &path, 1, redo.offset, end.offset, MAX, &mut |p| {
        seen.push(p.to_vec());
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, (20..23).map(|i| payload(1, i)).collect::<Vec<_>>());
}

#[test]
fn a_segment_shorter_than_its_seal_is_corruption() {
    let fs = FaultFs::new();
    let dir = PathBuf::from("/log");
    let log = CommitLog::open(fs.shared(), &dir, opts(64 << 20)).unwrap();
    for i in 0..5 {
        log.append(1, &payload(1, i)).unwrap();
    }
    let seal = log.position();
    let path = segment_path(&dir, seal.segment);
    fs.truncate(&path, seal.offset - 3).unwrap();
    let err = replay_segment(&fs, &path, 1, 0, seal.offset, MAX, &mut |_| Ok(())).unwrap_err();
    assert!(err.is_corruption(), "{err}");
}

#[test]
fn segments_roll_and_replay_across_them_then_old_ones_are_deleted() {
    let fs = FaultFs::new();
    let dir = PathBuf::from("/log");
    let log = CommitLog::open(fs.shared(), &dir, opts(1024)).unwrap();
    let mut positions = Vec::new();
    for i in 0..300 {
        positions.push(log.append(i as u64 % 3, &payload(i as u64 % 3, i)).unwrap());
    }
    let segments = list_segments(&fs, &dir).unwrap();
    assert!(segments.len() > 5, "{} segments", segments.len());
    assert_eq!(log.stats().segments_created, segments.len() as u64);
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    for t in 0..3 {
        let expected: Vec<Vec<u8>> = (0..300)
            .filter(|i| i % 3 == t)
            .map(|i| payload(t as u64, i))
            .collect();
        assert_eq!(replay_all(&fs, &dir, t as u64), expected);
    }
    // No segment was allowed to grow far past the threshold (one batch at most).
    for (_, path) in &segments {
        assert!(fs.file_size(path).unwrap() < 1024 + 200);
    }
    let keep = positions[200].segment;
    log.delete_segments_before(keep).unwrap();
    let left = list_segments(&fs, &dir).unwrap();
    assert_eq!(left.first().unwrap().0, keep);
    // The deletions are durable: a power cut does not bring them back.
    fs.power_cut();
    assert_eq!(list_segments(&fs, &dir).unwrap().first().unwrap().0, keep);
    // Deleting past the segment being written is refused.
    let log = CommitLog::open(fs.shared(), &dir, opts(1024)).unwrap();
    let cur = log.position().segment;
    assert!(matches!(
        log.delete_segments_before(cur + 1),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn reopening_starts_a_new_segment_and_never_appends_to_old_ones() {
    let fs = FaultFs::new();
    let dir = PathBuf::from("/log");
    let first = {
        let log = CommitLog::open(fs.shared(), &dir, opts(64 << 20)).unwrap();
        log.append(1, b"one").unwrap();
        log.position()
    };
    let old_len = fs.file_size(&segment_path(&dir, first.segment)).unwrap();
    let log = CommitLog::open(fs.shared(), &dir, opts(64 << 20)).unwrap();
    assert_eq!(log.position().segment, first.segment + 1);
    log.append(1, b"two").unwrap();
    assert_eq!(
        fs.file_size(&segment_path(&dir, first.segment)).unwrap(),
        old_len
    );
    assert_eq!(
        replay_all(&fs, &dir, 1),
        vec![b"one".to_vec(), b"two".to_vec()]
    );
}

#[test]
fn a_new_log_survives_a_power_cut_before_any_append() {
    let fs = FaultFs::new();
    let dir = PathBuf::from("/a/b/log");
    let log = CommitLog::open(fs.shared(), &dir, opts(64 << 20)).unwrap();
    let pos = log.position();
    drop(log);
    fs.power_cut();
    let path = segment_path(&dir, pos.segment);
    // The segment, its header and the redo point it handed out are durable.
    assert_eq!(valid_end(&fs, &path, MAX).unwrap(), pos.offset);
    replay_segment(&fs, &path, 1, pos.offset, pos.offset, MAX, &mut |_| Ok(())).unwrap();
}

#[test]
fn a_torn_tail_at_the_end_of_the_last_segment_is_cut_cleanly() {
    let fs = FaultFs::new();
    let dir = PathBuf::from("/log");
    let log = CommitLog::open(fs.shared(), &dir, opts(64 << 20)).unwrap();
    for i in 0..20 {
        log.append(4, &payload(4, i)).unwrap();
    }
    let end = log.position();
    drop(log);
    // A crash in the middle of the next append: half a record, then garbage.
    let path = segment_path(&dir, end.segment);
    let mut f = fs.open_append(&path).unwrap();
    let mut torn = vec![0x5a, 0x11, 0x40, 0x00, 0x01];
    torn.extend((0..300u32).map(|i| (i * 151 % 251) as u8));
    f.append(&torn).unwrap();
    f.sync().unwrap();
    assert_eq!(valid_end(&fs, &path, MAX).unwrap(), end.offset);
    assert_eq!(
        replay_all(&fs, &dir, 4),
        (0..20).map(|i| payload(4, i)).collect::<Vec<_>>()
    );
    // Reopening leaves the torn segment alone and writes to a new one.
    let log = CommitLog::open(fs.shared(), &dir, opts(64 << 20)).unwrap();
    log.append(4, b"after").unwrap();
    assert_eq!(replay_all(&fs, &dir, 4).last().unwrap(), b"after");
}

#[test]
fn mid_segment_corruption_is_reported_by_valid_end_and_replay() {
    let fs = FaultFs::new();
    let dir = PathBuf::from("/log");
    let log = CommitLog::open(fs.shared(), &dir, opts(64 << 20)).unwrap();
    let mut ends = Vec::new();
    for i in 0..10 {
        ends.push(log.append(2, &payload(2, i)).unwrap());
    }
    let path = segment_path(&dir, ends[0].segment);
    fs.flip_bit(&path, ends[4].offset + 9, 3).unwrap();
    match valid_end(&fs, &path, MAX) {
        Err(Error::Corruption { offset, .. }) => assert_eq!(offset, ends[4].offset),
        other => panic!("expected corruption, got {other:?}"),
    }
    let err = replay_segment(&fs, &path, 2, 0, ends[9].offset, MAX, &mut |_| Ok(())).unwrap_err();
    assert!(err.is_corruption());
}

#[test]
fn oversize_records_and_bad_options_are_refused() {
    let fs = FaultFs::new();
    let dir = PathBuf::from("/log");
    let small = CommitLogOptions {
        max_record: 100,
        ..opts(64 << 20)
    };
    let log = CommitLog::open(fs.shared(), &dir, small).unwrap();
    assert!(matches!(
        log.append(1, &[0u8; 93]),
        Err(Error::InvalidArgument(_))
    ));
    log.append(1, &[0u8; 92]).unwrap();
    assert!(!log.has_failed());
    let bad = CommitLogOptions {
        max_record: 8,
        ..opts(64 << 20)
    };
    assert!(CommitLog::open(fs.shared(), Path::new("/other"), bad).is_err());
}

#[test]
fn unsynced_mode_acknowledges_after_handing_to_the_os() {
    let dir = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = sstable::RealFs::shared();
    let unsynced = CommitLogOptions {
        sync: false,
        ..opts(8192)
    };
    let log = CommitLog::open(fs.clone(), dir.path(), unsynced).unwrap();
    for i in 0..100 {
        log.append(9, &payload(9, i)).unwrap();
    }
    let s = log.stats();
    // Only segment headers and rolls were fsynced, never a batch.
    assert_eq!(s.syncs, s.segments_created + (s.segments_created - 1));
    // Readable by another handle at once (flushed to the OS, not only buffered).
    assert_eq!(replay_all(&*fs, dir.path(), 9).len(), 100);
}

/// Pins the exact bytes of a segment (docs/format/commitlog.md, worked example).
#[test]
fn golden_segment_bytes() {
    let fs = FaultFs::new();
    let dir = PathBuf::from("/golden");
    let log = CommitLog::open(fs.shared(), &dir, opts(64 << 20)).unwrap();
    assert_eq!(
        log.position(),
        tablet::commitlog::LogPosition {
            segment: 1,
            offset: 27
        }
    );
    let pos = log.append(7, b"put k=v").unwrap();
    assert_eq!((pos.segment, pos.offset), (1, 49));
    let mut expected = vec![0x44, 0x21, 0xdc, 0x42, 0x14, 0x00, 0x01];
    expected.extend_from_slice(b"QRYCLOG\0");
    expected.extend_from_slice(&[1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend_from_slice(&[0xc0, 0xc8, 0x39, 0x55, 0x0f, 0x00, 0x01]);
    expected.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend_from_slice(b"put k=v");
    assert_eq!(fs.file_bytes(&segment_path(&dir, 1)).unwrap(), expected);
}

#[test]
fn a_last_segment_numbered_u64_max_is_an_error_not_an_overflow() {
    let fs = FaultFs::new();
    let dir = PathBuf::from("/log");
    fs.create_dir_all(&dir).unwrap();
    drop(fs.create(&segment_path(&dir, u64::MAX)).unwrap());
    assert!(CommitLog::open(fs.shared(), &dir, opts(1024)).is_err());
}
