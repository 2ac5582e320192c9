//! Internal keys: how cells and deletion markers sort inside memtables and SSTables.
//!
//! Every entry of a tablet is one byte string key, compared bytewise, so the `sstable`
//! crate needs no comparator. The encoding puts each deletion marker at the start of the
//! scope it covers, so a reader walking a row in key order meets a marker before the cells
//! it hides:
//!
//! ```text
//! row tombstone     : esc(row) 0x00                                   !seq
//! family tombstone  : esc(row) 0x01 esc(family) 0x00                  !seq
//! column tombstone  : esc(row) 0x01 esc(family) 0x01 esc(qual) 0x00   !seq
//! cell              : esc(row) 0x01 esc(family) 0x01 esc(qual) 0x01   !ts' !seq
//! ```
//!
//! `esc(x)` writes `x` with every `0x00` byte as `0x00 0xFF` and ends it with `0x00 0x01`;
//! this keeps bytewise order (`"a" < "a\0" < "ab"`) and makes each field self-delimiting.
//! `!seq` is the bitwise complement of the sequence number, big-endian, so newer entries
//! come first. `!ts'` is the complement of the timestamp with its sign bit flipped, so
//! larger timestamps come first. The value of a column tombstone holds the deleted
//! timestamp range `[start, end)` as two big-endian i64. DO NOT CHANGE: written to disk.

use crate::types::{SeqNo, Timestamp};

/// Tag after the row: a row tombstone. DO NOT CHANGE: written to disk.
const TAG_ROW_TOMBSTONE: u8 = 0x00;
/// Tag after the row or family: what follows is narrower in scope. DO NOT CHANGE.
const TAG_NARROWER: u8 = 0x01;
/// Tag after the family: a family tombstone. DO NOT CHANGE: written to disk.
const TAG_FAMILY_TOMBSTONE: u8 = 0x00;
/// Tag after the qualifier: a column tombstone. DO NOT CHANGE: written to disk.
const TAG_COLUMN_TOMBSTONE: u8 = 0x00;
/// Tag after the qualifier: a cell. DO NOT CHANGE: written to disk.
const TAG_CELL: u8 = 0x01;

/// What an internal key denotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// Deletes every cell of the row written before it.
    RowTombstone,
    /// Deletes every cell of the family written before it.
    FamilyTombstone,
    /// Deletes cells of the column in a timestamp range written before it.
    ColumnTombstone,
    /// A cell value.
    Cell,
}

/// An internal key taken apart; the slices borrow from the encoded key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedKey {
    /// The row key.
    pub row: Vec<u8>,
    /// Family (empty for a row tombstone).
    pub family: Vec<u8>,
    /// Qualifier (empty above column scope).
    pub qualifier: Vec<u8>,
    /// Timestamp (cells only; 0 otherwise).
    pub timestamp: Timestamp,
    /// Sequence number.
    pub seq: SeqNo,
    /// What the key denotes.
    pub kind: KeyKind,
}

/// Appends `esc(x)` to `out`.
pub fn escape_into(out: &mut Vec<u8>, x: &[u8]) {
    for &b in x {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// The encoded row prefix shared by every key of `row`.
pub fn row_prefix(row: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(row.len() + 2);
    escape_into(&mut out, row);
    out
}

/// The encoded prefix of every key of `(row, family)`.
pub fn family_prefix(row: &[u8], family: &[u8]) -> Vec<u8> {
    let mut out = row_prefix(row);
    out.push(TAG_NARROWER);
    escape_into(&mut out, family);
    out
}

fn column_prefix(row: &[u8], family: &[u8], qualifier: &[u8]) -> Vec<u8> {
    let mut out = family_prefix(row, family);
    out.push(TAG_NARROWER);
    escape_into(&mut out, qualifier);
    out
}

fn push_seq(out: &mut Vec<u8>, seq: SeqNo) {
    out.extend_from_slice(&(!seq).to_be_bytes());
}

fn ts_desc(ts: Timestamp) -> [u8; 8] {
    (!((ts as u64) ^ (1 << 63))).to_be_bytes()
}

/// Key of a row tombstone.
pub fn row_tombstone(row: &[u8], seq: SeqNo) -> Vec<u8> {
    let mut out = row_prefix(row);
    out.push(TAG_ROW_TOMBSTONE);
    push_seq(&mut out, seq);
    out
}

/// Key of a family tombstone.
pub fn family_tombstone(row: &[u8], family: &[u8], seq: SeqNo) -> Vec<u8> {
    let mut out = family_prefix(row, family);
    out.push(TAG_FAMILY_TOMBSTONE);
    push_seq(&mut out, seq);
    out
}

/// Key of a column tombstone (its value is [`encode_range`]).
pub fn column_tombstone(row: &[u8], family: &[u8], qualifier: &[u8], seq: SeqNo) -> Vec<u8> {
    let mut out = column_prefix(row, family, qualifier);
    out.push(TAG_COLUMN_TOMBSTONE);
    push_seq(&mut out, seq);
    out
}

/// Key of a cell.
pub fn cell(row: &[u8], family: &[u8], qualifier: &[u8], ts: Timestamp, seq: SeqNo) -> Vec<u8> {
    let mut out = column_prefix(row, family, qualifier);
    out.push(TAG_CELL);
    out.extend_from_slice(&ts_desc(ts));
    push_seq(&mut out, seq);
    out
}

/// Value of a column tombstone: the deleted range `[start, end)`.
pub fn encode_range(start: Timestamp, end: Timestamp) -> Vec<u8> {
    let mut v = start.to_be_bytes().to_vec();
    v.extend_from_slice(&end.to_be_bytes());
    v
}

/// Decodes [`encode_range`]; `None` when malformed.
pub fn decode_range(v: &[u8]) -> Option<(Timestamp, Timestamp)> {
    if v.len() != 16 {
        return None;
    }
    let start = i64::from_be_bytes(v[..8].try_into().ok()?);
    let end = i64::from_be_bytes(v[8..].try_into().ok()?);
    Some((start, end))
}

/// Reads one escaped field at the front of `k`; returns it and the rest.
fn unescape(k: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let b = *k.get(i)?;
        if b != 0 {
            out.push(b);
            i += 1;
            continue;
        }
        match *k.get(i + 1)? {
            0xFF => out.push(0),
            0x01 => return Some((out, &k[i + 2..])),
            _ => return None,
        }
        i += 2;
    }
}

/// Length of the escaped row at the front of an internal key (the row prefix), or `None`
/// when malformed.
pub fn row_prefix_len(k: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let b = *k.get(i)?;
        if b != 0 {
            i += 1;
            continue;
        }
        match *k.get(i + 1)? {
            0xFF => i += 2,
            0x01 => return Some(i + 2),
            _ => return None,
        }
    }
}

fn take_u64(rest: &[u8]) -> Option<(u64, &[u8])> {
    if rest.len() < 8 {
        return None;
    }
    let (a, b) = rest.split_at(8);
    Some((u64::from_be_bytes(a.try_into().ok()?), b))
}

/// Parses an internal key; `None` when it is not one (corruption upstream).
pub fn parse(k: &[u8]) -> Option<ParsedKey> {
    let (row, rest) = unescape(k)?;
    let (&tag, rest) = rest.split_first()?;
    let mut p = ParsedKey {
        row,
        family: Vec::new(),
        qualifier: Vec::new(),
        timestamp: 0,
        seq: 0,
        kind: KeyKind::RowTombstone,
    };
    let rest = match tag {
        TAG_ROW_TOMBSTONE => rest,
        TAG_NARROWER => {
            let (family, rest) = unescape(rest)?;
            p.family = family;
            let (&tag, rest) = rest.split_first()?;
            match tag {
                TAG_FAMILY_TOMBSTONE => {
                    p.kind = KeyKind::FamilyTombstone;
                    rest
                }
                TAG_NARROWER => {
                    let (qualifier, rest) = unescape(rest)?;
                    p.qualifier = qualifier;
                    let (&tag, rest) = rest.split_first()?;
                    match tag {
                        TAG_COLUMN_TOMBSTONE => {
                            p.kind = KeyKind::ColumnTombstone;
                            rest
                        }
                        TAG_CELL => {
                            p.kind = KeyKind::Cell;
                            let (t, rest) = take_u64(rest)?;
                            p.timestamp = ((!t) ^ (1 << 63)) as i64;
                            rest
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    let (s, rest) = take_u64(rest)?;
    if !rest.is_empty() {
        return None;
    }
    p.seq = !s;
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn markers_sort_before_what_they_cover_and_newest_first() {
        let keys = [
            row_tombstone(b"r", 9),
            row_tombstone(b"r", 3),
            family_tombstone(b"r", b"f", 5),
            column_tombstone(b"r", b"f", b"q", 5),
            cell(b"r", b"f", b"q", 100, 1),
            cell(b"r", b"f", b"q", 100, 0),
            cell(b"r", b"f", b"q", 7, 8),
            cell(b"r", b"f", b"q", -5, 8),
            cell(b"r", b"f", b"q\0", 7, 8),
            cell(b"r", b"f", b"qa", 7, 8),
            family_tombstone(b"r", b"g", 1),
            row_tombstone(b"r\0", 1),
            row_tombstone(b"ra", 1),
        ];
        for w in keys.windows(2) {
            assert!(w[0] < w[1], "{:?} !< {:?}", parse(&w[0]), parse(&w[1]));
        }
    }

    proptest! {
        #[test]
        fn parse_inverts_encoding(row in proptest::collection::vec(any::<u8>(), 0..8),
                                  fam in proptest::collection::vec(any::<u8>(), 0..4),
                                  qual in proptest::collection::vec(any::<u8>(), 0..8),
                                  ts in any::<i64>(), seq in any::<u64>()) {
            let k = cell(&row, &fam, &qual, ts, seq);
            let p = parse(&k).unwrap();
            prop_assert_eq!(&p.row, &row);
            prop_assert_eq!(&p.family, &fam);
            prop_assert_eq!(&p.qualifier, &qual);
            prop_assert_eq!(p.timestamp, ts);
            prop_assert_eq!(p.seq, seq);
            prop_assert_eq!(row_prefix_len(&k), Some(row_prefix(&row).len()));
            let t = column_tombstone(&row, &fam, &qual, seq);
            prop_assert_eq!(parse(&t).unwrap().kind, KeyKind::ColumnTombstone);
        }

        #[test]
        fn row_order_is_bytewise(a in proptest::collection::vec(any::<u8>(), 0..6),
                                 b in proptest::collection::vec(any::<u8>(), 0..6)) {
            let (ka, kb) = (cell(&a, b"f", b"q", 0, 0), cell(&b, b"f", b"q", 0, 0));
            prop_assert_eq!(a.cmp(&b), ka.cmp(&kb));
        }

        #[test]
        fn garbage_never_panics(k in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse(&k);
            let _ = row_prefix_len(&k);
        }
    }
}
