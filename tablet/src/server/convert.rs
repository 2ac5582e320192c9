//! Conversions between the wire types (`pb`) and the engine's, and errors to statuses.

use std::ops::Bound;

use regex::bytes::Regex;
use tonic::{Code, Status};

use crate::error::Error;
use crate::filter::{ByteRange, Cell, ReadFilter, Row};
use crate::manifest::RowRange;
use crate::mutation::Mutation;
use crate::pb;
use crate::schema::Schema;
use crate::types::Timestamp;
use crate::write::ReadModifyWrite;

/// The status metadata key carrying routing errors (see `proto/tablet.proto`).
pub const ERROR_KEY: &str = "quarry-error";

/// A status with a `quarry-error` routing tag.
pub fn tagged(code: Code, tag: &'static str, msg: impl Into<String>) -> Status {
    let mut s = Status::new(code, msg);
    s.metadata_mut()
        .insert(ERROR_KEY, tonic::metadata::MetadataValue::from_static(tag));
    s
}

/// The status metadata key saying whether a failed request may have taken effect.
pub const OUTCOME_KEY: &str = "quarry-outcome";

/// Marks a status as raised before the request did anything (`quarry-outcome=none`), so a
/// client may retry even a non-idempotent request.
pub fn not_run(mut s: Status) -> Status {
    s.metadata_mut().insert(
        OUTCOME_KEY,
        tonic::metadata::MetadataValue::from_static("none"),
    );
    s
}

/// The server does not serve that tablet (or its lease lapsed): the client looks it up again.
pub fn not_serving(msg: impl Into<String>) -> Status {
    tagged(Code::Unavailable, "not-serving", msg)
}

/// The row is outside the tablet the request named.
pub fn wrong_range(msg: impl Into<String>) -> Status {
    tagged(Code::FailedPrecondition, "wrong-range", msg)
}

/// An engine error as a status with the precise code.
pub fn status(e: Error) -> Status {
    match e {
        Error::InvalidArgument(m) => Status::invalid_argument(m),
        Error::Unavailable(m) => Status::unavailable(m),
        Error::Failed(m) => not_serving(format!("tablet failed: {m}")),
        Error::FailedPrecondition(m) => Status::failed_precondition(m),
        Error::Storage(e) if e.is_corruption() => Status::data_loss(e.to_string()),
        Error::Storage(e) => Status::unavailable(e.to_string()),
    }
}

fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg)
}

/// Wire mutations to engine mutations.
pub fn mutations(ms: Vec<pb::Mutation>) -> Result<Vec<Mutation>, Status> {
    use pb::mutation::Kind;
    ms.into_iter()
        .map(|m| match m.kind {
            Some(Kind::SetCell(c)) => Ok(Mutation::SetCell {
                family: c.family,
                qualifier: c.qualifier,
                timestamp: c.timestamp,
                value: c.value,
            }),
            Some(Kind::DeleteFromColumn(c)) => Ok(Mutation::DeleteCells {
                family: c.family,
                qualifier: c.qualifier,
                start: c.start.unwrap_or(i64::MIN),
                end: c.end.unwrap_or(i64::MAX),
            }),
            Some(Kind::DeleteFromFamily(c)) => Ok(Mutation::DeleteFamily { family: c.family }),
            Some(Kind::DeleteFromRow(_)) => Ok(Mutation::DeleteRow),
            None => Err(invalid("a mutation has no kind")),
        })
        .collect()
}

/// Engine mutations to wire mutations (for clients of this crate's types).
pub fn mutations_to_pb(ms: &[Mutation]) -> Vec<pb::Mutation> {
    use pb::mutation::{DeleteFromColumn, DeleteFromFamily, DeleteFromRow, Kind, SetCell};
    ms.iter()
        .map(|m| pb::Mutation {
            kind: Some(match m {
                Mutation::SetCell {
                    family,
                    qualifier,
                    timestamp,
                    value,
                } => Kind::SetCell(SetCell {
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
                } => Kind::DeleteFromColumn(DeleteFromColumn {
                    family: family.clone(),
                    qualifier: qualifier.clone(),
                    start: (*start != i64::MIN).then_some(*start),
                    end: (*end != i64::MAX).then_some(*end),
                }),
                Mutation::DeleteFamily { family } => Kind::DeleteFromFamily(DeleteFromFamily {
                    family: family.clone(),
                }),
                Mutation::DeleteRow => Kind::DeleteFromRow(DeleteFromRow {}),
            }),
        })
        .collect()
}

fn byte_range(r: Option<pb::BytesRange>) -> Option<ByteRange> {
    let r = r?;
    if r.start.is_none() && r.end.is_none() {
        return None;
    }
    let lo = match r.start {
        None => Bound::Unbounded,
        Some(s) if r.start_open => Bound::Excluded(s),
        Some(s) => Bound::Included(s),
    };
    let hi = match r.end {
        None => Bound::Unbounded,
        Some(e) if r.end_closed => Bound::Included(e),
        Some(e) => Bound::Excluded(e),
    };
    Some((lo, hi))
}

fn regex(r: Option<String>, what: &str) -> Result<Option<Regex>, Status> {
    r.map(|r| Regex::new(&r).map_err(|e| invalid(format!("bad {what} regex {r:?}: {e}"))))
        .transpose()
}

/// A wire filter to an engine filter.
pub fn filter(f: Option<pb::Filter>) -> Result<ReadFilter, Status> {
    let Some(f) = f else {
        return Ok(ReadFilter::default());
    };
    Ok(ReadFilter {
        families: (!f.families.is_empty()).then_some(f.families),
        qualifier_range: byte_range(f.qualifier_range),
        qualifier_regex: regex(f.qualifier_regex, "qualifier")?,
        timestamp_range: match (f.timestamp_start, f.timestamp_end) {
            (None, None) => None,
            (s, e) => Some((s.unwrap_or(i64::MIN), e.unwrap_or(i64::MAX))),
        },
        value_regex: regex(f.value_regex, "value")?,
        value_range: byte_range(f.value_range),
        versions_per_column: f.versions_per_column.map(|n| n as usize),
        cells_per_row: f.cells_per_row.map(|n| n as usize),
        strip_value: f.strip_value,
    })
}

/// Read-modify-write rules from the wire.
pub fn rules(rs: Vec<pb::ReadModifyWriteRule>) -> Result<Vec<ReadModifyWrite>, Status> {
    use pb::read_modify_write_rule::Rule;
    rs.into_iter()
        .map(|r| match r.rule {
            Some(Rule::AppendValue(v)) => Ok(ReadModifyWrite::Append {
                family: r.family,
                qualifier: r.qualifier,
                value: v,
            }),
            Some(Rule::IncrementAmount(d)) => Ok(ReadModifyWrite::Increment {
                family: r.family,
                qualifier: r.qualifier,
                delta: d,
            }),
            None => Err(invalid("a read-modify-write rule has no kind")),
        })
        .collect()
}

/// An engine row to the wire.
pub fn row(r: Row) -> pb::Row {
    pb::Row {
        key: r.key,
        cells: r.cells.into_iter().map(cell).collect(),
    }
}

/// An engine cell to the wire.
pub fn cell(c: Cell) -> pb::Cell {
    pb::Cell {
        family: c.family,
        qualifier: c.qualifier,
        timestamp: c.timestamp,
        value: c.value,
    }
}

/// A wire row range.
pub fn range(r: &pb::RowRange) -> RowRange {
    RowRange::new(&r.start, &r.end)
}

/// The schema in a descriptor.
pub fn schema(json: &str) -> Result<Schema, Status> {
    serde_json::from_str(json).map_err(|e| invalid(format!("bad schema JSON: {e}")))
}

/// Microseconds since the Unix epoch, for callers that need "now" on the wire.
pub fn now_micros() -> Timestamp {
    (crate::tablet::system_wall_clock())()
}

/// The answer that fails read `read` of a `ReadRowsMulti` with `s` (its code, message and
/// routing tag, as a `ReadRows` would have failed).
pub fn multi_failure(read: u32, s: &Status) -> pb::ReadRowsMultiResponse {
    pb::ReadRowsMultiResponse {
        read,
        rows: vec![],
        done: true,
        code: s.code() as i32,
        message: s.message().to_string(),
        routing: s
            .metadata()
            .get(ERROR_KEY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
    }
}

/// The status a failed read of a `ReadRowsMulti` stands for (the inverse of
/// [`multi_failure`]).
pub fn multi_status(a: &pb::ReadRowsMultiResponse) -> Status {
    let mut s = Status::new(Code::from(a.code), a.message.clone());
    if let Ok(v) = a.routing.parse() {
        if !a.routing.is_empty() {
            s.metadata_mut().insert(ERROR_KEY, v);
        }
    }
    s
}
