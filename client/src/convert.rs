//! Conversions between the engine's types (`tablet::{Mutation, ReadFilter, Row, Cell}`) and
//! the tablet server's protobuf messages (`tablet::pb`), in the direction a client needs.

use std::ops::Bound;

use crate::pb;
use tablet::filter::ByteRange;
use tablet::meta::{self, TabletRecord};
use tablet::{Cell, Mutation, ReadFilter, ReadModifyWrite, Row, SERVER_TIMESTAMP};

use crate::error::{Error, Result};

/// A mutation as sent on the wire.
pub fn mutation_to_pb(m: &Mutation) -> pb::Mutation {
    use pb::mutation::Kind;
    let kind = match m {
        Mutation::SetCell {
            family,
            qualifier,
            timestamp,
            value,
        } => Kind::SetCell(pb::mutation::SetCell {
            family: family.clone(),
            qualifier: qualifier.clone(),
            timestamp: *timestamp,
            value: value.clone(),
        }),
        Mutation::DeleteCells {
            family,
            qualifier,
            start,
            end,
        } => Kind::DeleteFromColumn(pb::mutation::DeleteFromColumn {
            family: family.clone(),
            qualifier: qualifier.clone(),
            start: (*start != i64::MIN).then_some(*start),
            end: (*end != i64::MAX).then_some(*end),
        }),
        Mutation::DeleteFamily { family } => {
            Kind::DeleteFromFamily(pb::mutation::DeleteFromFamily {
                family: family.clone(),
            })
        }
        Mutation::DeleteRow => Kind::DeleteFromRow(pb::mutation::DeleteFromRow {}),
    };
    pb::Mutation { kind: Some(kind) }
}

/// Mutations as sent on the wire.
pub fn mutations_to_pb(ms: &[Mutation]) -> Vec<pb::Mutation> {
    ms.iter().map(mutation_to_pb).collect()
}

/// True when applying `ms` twice has the same effect as once: no cell asks for the
/// server's timestamp (which would write a second version on a retry).
pub fn idempotent(ms: &[Mutation]) -> bool {
    !ms.iter().any(|m| {
        matches!(
            m,
            Mutation::SetCell {
                timestamp: SERVER_TIMESTAMP,
                ..
            }
        )
    })
}

fn range_to_pb(r: &ByteRange) -> pb::BytesRange {
    let (start, start_open) = match &r.0 {
        Bound::Included(b) => (Some(b.clone()), false),
        Bound::Excluded(b) => (Some(b.clone()), true),
        Bound::Unbounded => (None, false),
    };
    let (end, end_closed) = match &r.1 {
        Bound::Included(b) => (Some(b.clone()), true),
        Bound::Excluded(b) => (Some(b.clone()), false),
        Bound::Unbounded => (None, false),
    };
    pb::BytesRange {
        start,
        start_open,
        end,
        end_closed,
    }
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A read filter as sent on the wire. `families: Some(empty)` passes nothing locally but
/// "all families" on the wire, so it is refused.
pub fn filter_to_pb(f: &ReadFilter) -> Result<pb::Filter> {
    if f.families.as_ref().is_some_and(|v| v.is_empty()) {
        return Err(Error::InvalidArgument(
            "a filter's family list must not be empty (use None for all families)".into(),
        ));
    }
    Ok(pb::Filter {
        families: f.families.clone().unwrap_or_default(),
        qualifier_range: f.qualifier_range.as_ref().map(range_to_pb),
        qualifier_regex: f.qualifier_regex.as_ref().map(|r| r.as_str().to_string()),
        timestamp_start: f.timestamp_range.map(|r| r.0),
        timestamp_end: f.timestamp_range.map(|r| r.1),
        value_regex: f.value_regex.as_ref().map(|r| r.as_str().to_string()),
        value_range: f.value_range.as_ref().map(range_to_pb),
        versions_per_column: f.versions_per_column.map(clamp_u32),
        cells_per_row: f.cells_per_row.map(clamp_u32),
        strip_value: f.strip_value,
    })
}

/// A read-modify-write rule as sent on the wire.
pub fn rule_to_pb(r: &ReadModifyWrite) -> pb::ReadModifyWriteRule {
    use pb::read_modify_write_rule::Rule;
    match r {
        ReadModifyWrite::Append {
            family,
            qualifier,
            value,
        } => pb::ReadModifyWriteRule {
            family: family.clone(),
            qualifier: qualifier.clone(),
            rule: Some(Rule::AppendValue(value.clone())),
        },
        ReadModifyWrite::Increment {
            family,
            qualifier,
            delta,
        } => pb::ReadModifyWriteRule {
            family: family.clone(),
            qualifier: qualifier.clone(),
            rule: Some(Rule::IncrementAmount(*delta)),
        },
    }
}

/// A row from the wire.
pub fn row_from_pb(r: pb::Row) -> Row {
    Row {
        key: r.key,
        cells: r
            .cells
            .into_iter()
            .map(|c| Cell {
                family: c.family,
                qualifier: c.qualifier,
                timestamp: c.timestamp,
                value: c.value,
            })
            .collect(),
    }
}

/// The tablet record in a METADATA row.
pub fn record_from_row(r: &pb::Row) -> Result<TabletRecord> {
    let cell = r
        .cells
        .iter()
        .find(|c| c.family == meta::FAMILY && c.qualifier == meta::QUALIFIER)
        .ok_or_else(|| Error::Internal(format!("METADATA row {:x?} has no record", r.key)))?;
    TabletRecord::from_json(&cell.value).map_err(Error::Internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timestamps_make_a_mutation_non_idempotent() {
        let explicit = Mutation::set("f", b"q", 5, b"v");
        let server = Mutation::set("f", b"q", SERVER_TIMESTAMP, b"v");
        assert!(idempotent(&[explicit.clone(), Mutation::DeleteRow]));
        assert!(!idempotent(&[explicit, server]));
        assert!(idempotent(&[]));
    }

    #[test]
    fn open_ended_deletes_leave_the_bounds_absent() {
        let m = mutation_to_pb(&Mutation::delete_column("f", b"q"));
        match m.kind {
            Some(pb::mutation::Kind::DeleteFromColumn(d)) => {
                assert_eq!((d.start, d.end), (None, None));
            }
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn filters_keep_every_predicate() {
        let f = ReadFilter {
            families: Some(vec!["a".into()]),
            qualifier_range: Some((Bound::Excluded(b"k".to_vec()), Bound::Unbounded)),
            qualifier_regex: Some(regex::bytes::Regex::new("^x").unwrap()),
            timestamp_range: Some((3, 9)),
            versions_per_column: Some(2),
            cells_per_row: Some(usize::MAX),
            strip_value: true,
            ..ReadFilter::default()
        };
        let p = filter_to_pb(&f).unwrap();
        assert_eq!(p.families, ["a"]);
        let q = p.qualifier_range.unwrap();
        assert_eq!(
            (q.start.as_deref(), q.start_open, q.end),
            (Some(&b"k"[..]), true, None)
        );
        assert_eq!(p.qualifier_regex.as_deref(), Some("^x"));
        assert_eq!((p.timestamp_start, p.timestamp_end), (Some(3), Some(9)));
        assert_eq!(
            (p.versions_per_column, p.cells_per_row),
            (Some(2), Some(u32::MAX))
        );
        assert!(p.strip_value);
        let none = ReadFilter {
            families: Some(vec![]),
            ..ReadFilter::default()
        };
        assert!(matches!(
            filter_to_pb(&none),
            Err(Error::InvalidArgument(_))
        ));
    }
}
