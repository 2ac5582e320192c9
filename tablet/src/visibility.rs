//! Which entries of a row are visible: deletion markers, overwritten versions and GC.
//!
//! The one place that decides visibility, used by reads (to hide) and by compactions (to
//! drop). It walks one row's internal keys in key order, so every deletion marker is met
//! before the cells it covers (see [`crate::key`]). Rules, for entries at or below the
//! reader's snapshot sequence number:
//! - a row tombstone with sequence number `s` hides every cell of the row with seq < `s`;
//!   a family tombstone likewise within its family; a column tombstone hides the column's
//!   cells with seq < `s` whose timestamp is in its range;
//! - of several cells with the same column and timestamp, only the one with the highest
//!   sequence number counts (a later write at the same timestamp overwrites);
//! - the family's GC policy then hides versions by their index among the column's
//!   undeleted versions (newest first) and by age;
//! - cells of a family the schema no longer has are hidden.
//!
//! Compactions use the same verdicts: hidden entries are dropped; markers are kept unless
//! the compaction covers every SSTable of the locality group (nothing older is left for
//! them to hide).

use crate::key::{decode_range, KeyKind, ParsedKey};
use crate::schema::{GcPolicy, Schema};
use crate::types::{SeqNo, Timestamp};

/// What to do with one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A cell a reader sees.
    Visible,
    /// A deletion marker: never shown, kept by compactions that are not the bottom one.
    Marker,
    /// Not visible: deleted, overwritten, collected or newer than the snapshot.
    Hidden,
}

/// Walks the entries of one row. Create one per row.
pub struct RowVisibility<'a> {
    schema: &'a Schema,
    snapshot: SeqNo,
    now: Timestamp,
    row_deleted: SeqNo,
    family: Option<Vec<u8>>,
    family_deleted: SeqNo,
    gc: Option<&'a GcPolicy>,
    column: Option<Vec<u8>>,
    column_tombstones: Vec<(SeqNo, Timestamp, Timestamp)>,
    last_ts: Option<Timestamp>,
    versions: usize,
}

impl<'a> RowVisibility<'a> {
    /// A walker for one row as of `snapshot`, with wall-clock `now` for age-based GC.
    pub fn new(schema: &'a Schema, snapshot: SeqNo, now: Timestamp) -> Self {
        RowVisibility {
            schema,
            snapshot,
            now,
            row_deleted: 0,
            family: None,
            family_deleted: 0,
            gc: None,
            column: None,
            column_tombstones: Vec::new(),
            last_ts: None,
            versions: 0,
        }
    }

    fn enter_family(&mut self, family: &[u8]) {
        if self.family.as_deref() != Some(family) {
            self.family = Some(family.to_vec());
            self.family_deleted = 0;
            self.gc = std::str::from_utf8(family)
                .ok()
                .and_then(|f| self.schema.families.get(f))
                .map(|s| &s.gc);
            self.column = None;
        }
    }

    fn enter_column(&mut self, qualifier: &[u8]) {
        if self.column.as_deref() != Some(qualifier) {
            self.column = Some(qualifier.to_vec());
            self.column_tombstones.clear();
            self.last_ts = None;
            self.versions = 0;
        }
    }

    /// The verdict on the next entry of the row, in key order. `value` is the entry's
    /// value (a column tombstone's range). Returns `Err` with a reason when a marker's
    /// value is malformed.
    pub fn step(&mut self, k: &ParsedKey, value: &[u8]) -> Result<Verdict, String> {
        if k.seq > self.snapshot {
            return Ok(Verdict::Hidden);
        }
        match k.kind {
            KeyKind::RowTombstone => {
                self.row_deleted = self.row_deleted.max(k.seq);
                Ok(Verdict::Marker)
            }
            KeyKind::FamilyTombstone => {
                self.enter_family(&k.family);
                self.family_deleted = self.family_deleted.max(k.seq);
                Ok(Verdict::Marker)
            }
            KeyKind::ColumnTombstone => {
                self.enter_family(&k.family);
                self.enter_column(&k.qualifier);
                let (start, end) =
                    decode_range(value).ok_or("column tombstone value is not a range")?;
                self.column_tombstones.push((k.seq, start, end));
                Ok(Verdict::Marker)
            }
            KeyKind::Cell => {
                self.enter_family(&k.family);
                self.enter_column(&k.qualifier);
                Ok(self.cell(k.seq, k.timestamp))
            }
        }
    }

    fn cell(&mut self, seq: SeqNo, ts: Timestamp) -> Verdict {
        if self.last_ts == Some(ts) {
            return Verdict::Hidden; // an older write at the same timestamp
        }
        self.last_ts = Some(ts);
        if seq < self.row_deleted.max(self.family_deleted) {
            return Verdict::Hidden;
        }
        if self
            .column_tombstones
            .iter()
            .any(|&(s, start, end)| seq < s && start <= ts && ts < end)
        {
            return Verdict::Hidden;
        }
        let index = self.versions;
        self.versions += 1;
        match self.gc {
            None => Verdict::Hidden, // the family was dropped from the schema
            Some(gc) if gc.collects(index, ts, self.now) => Verdict::Hidden,
            Some(_) => Verdict::Visible,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{self, encode_range};

    fn run(schema: &Schema, snapshot: SeqNo, entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<Verdict> {
        let mut sorted = entries.to_vec();
        sorted.sort();
        let mut v = RowVisibility::new(schema, snapshot, 1_000);
        sorted
            .iter()
            .map(|(k, val)| v.step(&key::parse(k).unwrap(), val).unwrap())
            .collect()
    }

    #[test]
    fn tombstones_hide_only_older_writes() {
        let s = Schema::with_families(["f"]);
        let e = vec![
            (key::cell(b"r", b"f", b"q", 5, 1), b"old".to_vec()),
            (key::row_tombstone(b"r", 2), vec![]),
            (key::cell(b"r", b"f", b"q", 4, 3), b"new".to_vec()),
        ];
        // Sorted: tombstone, cell ts5 (seq1), cell ts4 (seq3).
        assert_eq!(
            run(&s, 10, &e),
            vec![Verdict::Marker, Verdict::Hidden, Verdict::Visible]
        );
        // A snapshot before the tombstone sees the old cell.
        assert_eq!(
            run(&s, 1, &e),
            vec![Verdict::Hidden, Verdict::Visible, Verdict::Hidden]
        );
    }

    #[test]
    fn column_ranges_and_overwrites() {
        let s = Schema::with_families(["f"]);
        let e = vec![
            (
                key::column_tombstone(b"r", b"f", b"q", 5),
                encode_range(10, 20),
            ),
            (key::cell(b"r", b"f", b"q", 15, 4), vec![]), // deleted
            (key::cell(b"r", b"f", b"q", 25, 4), vec![]), // outside the range
            (key::cell(b"r", b"f", b"q", 15, 6), vec![]), // rewritten after the delete
        ];
        // Sorted: tombstone; ts25; ts15 seq6; ts15 seq4.
        assert_eq!(
            run(&s, 10, &e),
            vec![
                Verdict::Marker,
                Verdict::Visible,
                Verdict::Visible,
                Verdict::Hidden
            ]
        );
    }

    #[test]
    fn gc_counts_undeleted_versions_and_unknown_families_hide() {
        let mut s = Schema::default();
        s.add_family("f", GcPolicy::MaxVersions(1), "default")
            .unwrap();
        let e = vec![
            (key::cell(b"r", b"f", b"q", 3, 1), vec![]),
            (key::cell(b"r", b"f", b"q", 2, 1), vec![]),
            (key::cell(b"r", b"gone", b"q", 2, 1), vec![]),
        ];
        assert_eq!(
            run(&s, 10, &e),
            vec![Verdict::Visible, Verdict::Hidden, Verdict::Hidden]
        );
    }
}
