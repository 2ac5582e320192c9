//! Segment files of the commit log: naming, the record payload format, and the free
//! functions recovery uses on any server's log directory (`docs/format/commitlog.md`).
//!
//! Every segment is a record log ([`sstable::log`]). Its first record (at offset 0) is a
//! header; every other record is one tablet's entry:
//!
//! ```text
//! header record (offset 0):
//!   magic:   [u8; 8] = "QRYCLOG\0"
//!   version: u32 LE  = 1
//!   segment: u64 LE  // equals the number in the file name
//! entry record:
//!   tablet:  u64 LE  // the TabletId the payload belongs to
//!   payload: [u8]    // opaque to the log (the tablet's encoded mutation)
//! ```

use std::path::{Path, PathBuf};

use sstable::log::LogReader;
use sstable::{Error, Fs, Result};

use super::TabletId;

/// Magic bytes opening a segment's header record.
pub const SEGMENT_MAGIC: [u8; 8] = *b"QRYCLOG\0"; // DO NOT CHANGE: written to disk

/// Version of the segment format written by this code.
pub const SEGMENT_VERSION: u32 = 1; // DO NOT CHANGE: written to disk

/// Bytes of a header record's payload: magic, version, segment number.
pub const HEADER_LEN: usize = 8 + 4 + 8; // DO NOT CHANGE: written to disk

/// Bytes an entry adds before the payload: the tablet id.
pub const ENTRY_PREFIX: usize = 8; // DO NOT CHANGE: written to disk

/// Suffix of segment file names.
const SUFFIX: &str = ".log";

/// Digits of the segment number in a file name.
const DIGITS: usize = 20;

/// The path of segment `number` in `dir`: `<dir>/<number:020>.log`.
pub fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:0DIGITS$}{SUFFIX}"))
}

/// The segment number a file name stands for, `None` for any other name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The payload of segment `number`'s header record.
pub fn encode_header(number: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&SEGMENT_MAGIC);
    out.extend_from_slice(&SEGMENT_VERSION.to_le_bytes());
    out.extend_from_slice(&number.to_le_bytes());
    out
}

/// The payload of one entry record.
pub fn encode_entry(tablet: TabletId, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENTRY_PREFIX + payload.len());
    out.extend_from_slice(&tablet.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks a header record read from `path`: magic, version, and the number the file name
/// gives (when it has one).
fn check_header(record: &[u8], path: &Path) -> Result<()> {
    let bad = |what: String| Error::corruption(path, 0, what);
    if record.len() != HEADER_LEN || record[..8] != SEGMENT_MAGIC {
        return Err(bad("not a commit-log segment (bad header record)".into()));
    }
    let version = u32::from_le_bytes(record[8..12].try_into().expect("4 bytes"));
    if version != SEGMENT_VERSION {
        return Err(bad(format!("unknown segment format version {version}")));
    }
    let number = u64::from_le_bytes(record[12..20].try_into().expect("8 bytes"));
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_segment_name);
    if named.is_some_and(|n| n != number) {
        return Err(bad(format!(
            "header says segment {number}, file name says {named:?}"
        )));
    }
    Ok(())
}

/// Splits an entry record into its tablet id and payload.
fn split_entry<'a>(record: &'a [u8], path: &Path, offset: u64) -> Result<(TabletId, &'a [u8])> {
    if record.len() < ENTRY_PREFIX {
        let what = format!(
            "entry of {} bytes is shorter than its tablet id",
            record.len()
        );
        return Err(Error::corruption(path, offset, what));
    }
    let tablet = u64::from_le_bytes(record[..ENTRY_PREFIX].try_into().expect("8 bytes"));
    Ok((tablet, &record[ENTRY_PREFIX..]))
}

/// The segments in `dir`, sorted by number; other files are ignored.
pub fn list_segments(fs: &dyn Fs, dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out: Vec<(u64, PathBuf)> = fs
        .list_dir(dir)?
        .iter()
        .filter_map(|name| parse_segment_name(name).map(|n| (n, dir.join(name))))
        .collect();
    out.sort();
    Ok(out)
}

/// Calls `f(tablet, payload)` for every entry record of the segment from `start` up to `limit`
/// (checking the header record when reading from 0); returns the reader at its end.
fn for_each_entry(
    fs: &dyn Fs,
    path: &Path,
    start: u64,
    limit: Option<u64>,
    max_record: usize,
    f: &mut dyn FnMut(TabletId, &[u8]) -> Result<()>,
) -> Result<LogReader> {
    let mut reader = LogReader::new(fs.open(path)?, start, limit, max_record);
    while let Some(record) = reader.next_record()? {
        let offset = reader.record_offset();
        if offset == 0 {
            check_header(&record, path)?;
            continue;
        }
        let (tablet, payload) = split_entry(&record, path, offset)?;
        f(tablet, payload)?;
    }
    Ok(reader)
}

/// Offset just past the last complete record of the segment at `path` (a torn tail is
/// excluded; a segment whose header never became durable has valid end 0). Mid-segment
/// corruption is an error.
pub fn valid_end(fs: &dyn Fs, path: &Path, max_record: usize) -> Result<u64> {
    let reader = for_each_entry(fs, path, 0, None, max_record, &mut |_, _| Ok(()))?;
    Ok(reader.end_offset())
}

/// Calls `f(payload)` for each record of `tablet` in the segment at `path`, from `start`
/// (0 or a [`super::LogPosition`] offset) up to `limit`, a seal: nothing at or past it is
/// read. Every byte below the seal was complete when the seal was taken, so a segment
/// that now ends (cleanly or torn) before `limit` is reported as corruption; pass
/// `u64::MAX` for "no seal, stop at a torn tail".
pub fn replay_segment(
    fs: &dyn Fs,
    path: &Path,
    tablet: TabletId,
    start: u64,
    limit: u64,
    max_record: usize,
    f: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    if start > limit {
        return Err(Error::InvalidArgument(format!(
            "replay of {} from {start} past its seal {limit}",
            path.display()
        )));
    }
    let seal = (limit != u64::MAX).then_some(limit);
    let reader = for_each_entry(fs, path, start, seal, max_record, &mut |t, payload| {
        if t == tablet {
            f(payload)?;
        }
        Ok(())
    })?;
    if let Some(seal) = seal {
        if reader.end_offset() < seal {
            let what = format!(
                "segment ends at {} before its seal at {seal}{}",
                reader.end_offset(),
                reader
                    .torn_tail()
                    .map_or(String::new(), |t| format!(" (torn record at {t})"))
            );
            return Err(Error::corruption(path, reader.end_offset(), what));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_ignored() {
        let p = segment_path(Path::new("/d"), 42);
        assert_eq!(p, Path::new("/d/00000000000000000042.log"));
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_segment_name(name), Some(42));
        for bad in [
            "42.log",
            "0000000000000000004x.log",
            "00000000000000000042.log.tmp",
            "LOCK",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn header_checks_magic_version_and_number() {
        let p = segment_path(Path::new("/d"), 7);
        check_header(&encode_header(7), &p).unwrap();
        assert!(check_header(&encode_header(8), &p)
            .unwrap_err()
            .is_corruption());
        let mut h = encode_header(7);
        h[8] = 2;
        assert!(check_header(&h, &p).unwrap_err().is_corruption());
        assert!(check_header(b"short", &p).unwrap_err().is_corruption());
    }

    #[test]
    fn entries_split_back_into_tablet_and_payload() {
        let e = encode_entry(0x0102_0304_0506_0708, b"xyz");
        assert_eq!(e[..8], [8, 7, 6, 5, 4, 3, 2, 1]);
        let (t, p) = split_entry(&e, Path::new("/s"), 30).unwrap();
        assert_eq!((t, p), (0x0102_0304_0506_0708, &b"xyz"[..]));
        assert!(split_entry(&e[..7], Path::new("/s"), 30).is_err());
    }
}
