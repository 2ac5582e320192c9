//! Read filters: which cells of a row a read returns.
//!
//! A filter is a conjunction of optional predicates on cells, then per-column and per-row
//! limits, then value stripping, applied in this order (each a stage of Bigtable's filter
//! chain):
//! 1. family in `families`; qualifier in `qualifier_range` and matching `qualifier_regex`;
//!    timestamp in `timestamp_range`; value matching `value_regex` and in `value_range`;
//! 2. at most `versions_per_column` newest surviving versions of each column;
//! 3. at most `cells_per_row` surviving cells of the row (in family, qualifier, newest
//!    first order);
//! 4. `strip_value` replaces every value with an empty one.
//!
//! A row with no surviving cell is not returned.

use std::ops::Bound;

use regex::bytes::Regex;

use crate::types::Timestamp;

/// One cell of a row as returned by reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    /// Column family.
    pub family: String,
    /// Column qualifier.
    pub qualifier: Vec<u8>,
    /// Timestamp in microseconds.
    pub timestamp: Timestamp,
    /// The value (empty when stripped).
    pub value: Vec<u8>,
}

/// A row and its visible cells, sorted by family, qualifier, then newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Row key.
    pub key: Vec<u8>,
    /// The cells.
    pub cells: Vec<Cell>,
}

/// A range of byte strings, bounds as in `std::ops::Bound`.
pub type ByteRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The predicates and limits of a read. `ReadFilter::default()` passes everything.
#[derive(Clone, Debug, Default)]
pub struct ReadFilter {
    /// Only these families (all when `None`).
    pub families: Option<Vec<String>>,
    /// Only qualifiers in this range.
    pub qualifier_range: Option<ByteRange>,
    /// Only qualifiers matching this regex (anchored by the caller if wanted).
    pub qualifier_regex: Option<Regex>,
    /// Only timestamps in `[start, end)`.
    pub timestamp_range: Option<(Timestamp, Timestamp)>,
    /// Only values matching this regex.
    pub value_regex: Option<Regex>,
    /// Only values in this range (bytewise).
    pub value_range: Option<ByteRange>,
    /// At most this many versions per column.
    pub versions_per_column: Option<usize>,
    /// At most this many cells per row.
    pub cells_per_row: Option<usize>,
    /// Return cells with empty values.
    pub strip_value: bool,
}

fn in_range(v: &[u8], r: &ByteRange) -> bool {
    let lo = match &r.0 {
        Bound::Included(b) => v >= b.as_slice(),
        Bound::Excluded(b) => v > b.as_slice(),
        Bound::Unbounded => true,
    };
    let hi = match &r.1 {
        Bound::Included(b) => v <= b.as_slice(),
        Bound::Excluded(b) => v < b.as_slice(),
        Bound::Unbounded => true,
    };
    lo && hi
}

impl ReadFilter {
    /// A filter passing only the newest version of each column.
    pub fn latest() -> ReadFilter {
        ReadFilter {
            versions_per_column: Some(1),
            ..ReadFilter::default()
        }
    }

    /// True when the filter can only pass cells of these families (lets the reader skip
    /// whole locality groups).
    pub fn wants_family(&self, family: &str) -> bool {
        self.families
            .as_ref()
            .is_none_or(|f| f.iter().any(|x| x == family))
    }

    /// Stage 1: does this cell pass the cell predicates?
    pub fn passes_cell(&self, c: &Cell) -> bool {
        self.wants_family(&c.family)
            && self
                .qualifier_range
                .as_ref()
                .is_none_or(|r| in_range(&c.qualifier, r))
            && self
                .qualifier_regex
                .as_ref()
                .is_none_or(|r| r.is_match(&c.qualifier))
            && self
                .timestamp_range
                .is_none_or(|(s, e)| c.timestamp >= s && c.timestamp < e)
            && self
                .value_regex
                .as_ref()
                .is_none_or(|r| r.is_match(&c.value))
            && self
                .value_range
                .as_ref()
                .is_none_or(|r| in_range(&c.value, r))
    }

    /// Applies every stage to a row's visible cells; `None` when nothing survives.
    pub fn apply(&self, key: Vec<u8>, cells: Vec<Cell>) -> Option<Row> {
        let mut out: Vec<Cell> = Vec::with_capacity(cells.len());
        let mut versions = 0usize;
        for c in cells {
            if !self.passes_cell(&c) {
                continue;
            }
            let same_column = out
                .last()
                .is_some_and(|p| p.family == c.family && p.qualifier == c.qualifier);
            versions = if same_column { versions + 1 } else { 1 };
            if self.versions_per_column.is_some_and(|n| versions > n) {
                continue;
            }
            out.push(c);
            if self.cells_per_row.is_some_and(|n| out.len() >= n) {
                break;
            }
        }
        if out.is_empty() {
            return None;
        }
        if self.strip_value {
            for c in &mut out {
                c.value.clear();
            }
        }
        Some(Row { key, cells: out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(f: &str, q: &str, ts: i64, v: &str) -> Cell {
        Cell {
            family: f.into(),
            qualifier: q.as_bytes().to_vec(),
            timestamp: ts,
            value: v.as_bytes().to_vec(),
        }
    }

    fn row() -> Vec<Cell> {
        vec![
            cell("a", "x", 3, "v3"),
            cell("a", "x", 2, "v2"),
            cell("a", "y", 9, "w"),
            cell("b", "x", 1, "z"),
        ]
    }

    #[test]
    fn stages_apply_in_order() {
        let f = ReadFilter {
            families: Some(vec!["a".into()]),
            versions_per_column: Some(1),
            ..Default::default()
        };
        let r = f.apply(b"r".to_vec(), row()).unwrap();
        assert_eq!(
            r.cells,
            vec![cell("a", "x", 3, "v3"), cell("a", "y", 9, "w")]
        );

        let f = ReadFilter {
            timestamp_range: Some((2, 3)),
            ..Default::default()
        };
        assert_eq!(
            f.apply(b"r".to_vec(), row()).unwrap().cells,
            vec![cell("a", "x", 2, "v2")]
        );

        let f = ReadFilter {
            value_regex: Some(Regex::new("^v").unwrap()),
            cells_per_row: Some(1),
            strip_value: true,
            ..Default::default()
        };
        assert_eq!(
            f.apply(b"r".to_vec(), row()).unwrap().cells,
            vec![cell("a", "x", 3, "")]
        );

        let f = ReadFilter {
            qualifier_range: Some((Bound::Excluded(b"x".to_vec()), Bound::Unbounded)),
            ..Default::default()
        };
        assert_eq!(
            f.apply(b"r".to_vec(), row()).unwrap().cells,
            vec![cell("a", "y", 9, "w")]
        );

        let f = ReadFilter {
            families: Some(vec!["none".into()]),
            ..Default::default()
        };
        assert!(f.apply(b"r".to_vec(), row()).is_none());
    }
}
