//! Row mutations: what a write says, the limits it must respect, and its commit-log payload.
//!
//! A row mutation is a list of changes to one row applied atomically under one sequence
//! number. Its commit-log payload (see `docs/format/commitlog.md`) is:
//!
//! ```text
//! payload   := version:u8(=1) seq:u64le row:bytes count:varint mutation*
//! mutation  := 1 family:bytes qualifier:bytes ts:i64le value:bytes        // set cell
//!            | 2 family:bytes qualifier:bytes start:i64le end:i64le       // delete cells
//!            | 3 family:bytes                                             // delete family
//!            | 4                                                          // delete row
//! bytes     := len:varint data
//! ```
//!
//! Timestamps in the payload are always resolved (never [`SERVER_TIMESTAMP`]), so replay
//! reproduces exactly what was acknowledged. DO NOT CHANGE: written to disk.

use crate::error::{invalid, Result};
use crate::schema::Schema;
use crate::types::{SeqNo, Timestamp, SERVER_TIMESTAMP};

/// Longest row key.
pub const MAX_ROW_KEY: usize = 4 * 1024;
/// Longest column qualifier.
pub const MAX_QUALIFIER: usize = 16 * 1024;
/// Default largest cell value (configurable up to [`MAX_VALUE_LIMIT`]).
pub const DEFAULT_MAX_VALUE: usize = 10 * 1024 * 1024;
/// The ceiling for the configurable value limit.
pub const MAX_VALUE_LIMIT: usize = 100 * 1024 * 1024;
/// Largest total size of one row mutation.
pub const MAX_MUTATION_BYTES: usize = 64 * 1024 * 1024;
/// Most changes in one row mutation (Cloud Bigtable's limit).
pub const MAX_MUTATIONS_PER_ROW: usize = 100_000;

/// Payload format version. DO NOT CHANGE: written to disk.
const PAYLOAD_VERSION: u8 = 1;

/// One change to a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Writes a cell; `timestamp` [`SERVER_TIMESTAMP`] asks for the server's clock.
    SetCell {
        /// Column family (must exist in the schema).
        family: String,
        /// Column qualifier.
        qualifier: Vec<u8>,
        /// Cell timestamp in microseconds, or [`SERVER_TIMESTAMP`].
        timestamp: Timestamp,
        /// The value.
        value: Vec<u8>,
    },
    /// Deletes the column's cells with timestamps in `[start, end)` written before this.
    DeleteCells {
        /// Column family.
        family: String,
        /// Column qualifier.
        qualifier: Vec<u8>,
        /// First timestamp deleted.
        start: Timestamp,
        /// First timestamp kept; `i64::MAX` for no end.
        end: Timestamp,
    },
    /// Deletes every cell of the family in this row written before this.
    DeleteFamily {
        /// Column family.
        family: String,
    },
    /// Deletes every cell of the row written before this.
    DeleteRow,
}

impl Mutation {
    /// A `SetCell` with an explicit timestamp.
    pub fn set(family: &str, qualifier: &[u8], timestamp: Timestamp, value: &[u8]) -> Self {
        Mutation::SetCell {
            family: family.to_string(),
            qualifier: qualifier.to_vec(),
            timestamp,
            value: value.to_vec(),
        }
    }

    /// A `DeleteCells` over every timestamp of a column.
    pub fn delete_column(family: &str, qualifier: &[u8]) -> Self {
        Mutation::DeleteCells {
            family: family.to_string(),
            qualifier: qualifier.to_vec(),
            start: i64::MIN,
            end: i64::MAX,
        }
    }

    fn approximate_size(&self) -> usize {
        match self {
            Mutation::SetCell {
                family,
                qualifier,
                value,
                ..
            } => family.len() + qualifier.len() + value.len() + 16,
            Mutation::DeleteCells {
                family, qualifier, ..
            } => family.len() + qualifier.len() + 24,
            Mutation::DeleteFamily { family } => family.len() + 8,
            Mutation::DeleteRow => 8,
        }
    }
}

/// Checks a row key against the limits.
pub fn check_row_key(row: &[u8]) -> Result<()> {
    if row.is_empty() {
        return Err(invalid("row key must not be empty"));
    }
    if row.len() > MAX_ROW_KEY {
        return Err(invalid(format!(
            "row key of {} bytes exceeds the limit of {MAX_ROW_KEY}",
            row.len()
        )));
    }
    Ok(())
}

/// Checks a whole row mutation against the schema and every limit, before anything is
/// allocated for it downstream.
pub fn validate(row: &[u8], muts: &[Mutation], schema: &Schema, max_value: usize) -> Result<()> {
    check_row_key(row)?;
    if muts.is_empty() {
        return Err(invalid("a row mutation needs at least one change"));
    }
    if muts.len() > MAX_MUTATIONS_PER_ROW {
        return Err(invalid(format!(
            "{} changes in one row mutation exceed the limit of {MAX_MUTATIONS_PER_ROW}",
            muts.len()
        )));
    }
    let mut total = row.len();
    for m in muts {
        total += m.approximate_size();
        match m {
            Mutation::SetCell {
                family,
                qualifier,
                timestamp,
                value,
            } => {
                schema.family(family)?;
                check_qualifier(qualifier)?;
                if *timestamp < 0 && *timestamp != SERVER_TIMESTAMP {
                    return Err(invalid(format!(
                        "timestamp {timestamp} is negative (use -1 for the server's time)"
                    )));
                }
                if value.len() > max_value {
                    return Err(invalid(format!(
                        "cell value of {} bytes exceeds the limit of {max_value}",
                        value.len()
                    )));
                }
            }
            Mutation::DeleteCells {
                family,
                qualifier,
                start,
                end,
            } => {
                schema.family(family)?;
                check_qualifier(qualifier)?;
                if start >= end {
                    return Err(invalid(format!("empty delete range [{start}, {end})")));
                }
            }
            Mutation::DeleteFamily { family } => {
                schema.family(family)?;
            }
            Mutation::DeleteRow => {}
        }
    }
    if total > MAX_MUTATION_BYTES {
        return Err(invalid(format!(
            "row mutation of about {total} bytes exceeds the limit of {MAX_MUTATION_BYTES}"
        )));
    }
    Ok(())
}

fn check_qualifier(q: &[u8]) -> Result<()> {
    if q.len() > MAX_QUALIFIER {
        return Err(invalid(format!(
            "qualifier of {} bytes exceeds the limit of {MAX_QUALIFIER}",
            q.len()
        )));
    }
    Ok(())
}

/// Replaces every [`SERVER_TIMESTAMP`] with `now`.
pub fn resolve_timestamps(muts: &mut [Mutation], now: Timestamp) {
    for m in muts {
        if let Mutation::SetCell { timestamp, .. } = m {
            if *timestamp == SERVER_TIMESTAMP {
                *timestamp = now;
            }
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Encodes a row mutation as a commit-log payload.
pub fn encode_payload(seq: SeqNo, row: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let size: usize = muts.iter().map(Mutation::approximate_size).sum();
    let mut out = Vec::with_capacity(size + row.len() + 24);
    out.push(PAYLOAD_VERSION);
    out.extend_from_slice(&seq.to_le_bytes());
    put_bytes(&mut out, row);
    put_varint(&mut out, muts.len() as u64);
    for m in muts {
        match m {
            Mutation::SetCell {
                family,
                qualifier,
                timestamp,
                value,
            } => {
                out.push(1);
                put_bytes(&mut out, family.as_bytes());
                put_bytes(&mut out, qualifier);
                out.extend_from_slice(&timestamp.to_le_bytes());
                put_bytes(&mut out, value);
            }
            Mutation::DeleteCells {
                family,
                qualifier,
                start,
                end,
            } => {
                out.push(2);
                put_bytes(&mut out, family.as_bytes());
                put_bytes(&mut out, qualifier);
                out.extend_from_slice(&start.to_le_bytes());
                out.extend_from_slice(&end.to_le_bytes());
            }
            Mutation::DeleteFamily { family } => {
                out.push(3);
                put_bytes(&mut out, family.as_bytes());
            }
            Mutation::DeleteRow => out.push(4),
        }
    }
    out
}

/// A decoded commit-log payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// Sequence number of the row mutation.
    pub seq: SeqNo,
    /// Row key.
    pub row: Vec<u8>,
    /// The changes, timestamps resolved.
    pub mutations: Vec<Mutation>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn fail(&self, what: &str) -> String {
        format!("{what} at payload byte {}", self.pos)
    }
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if self.buf.len() - self.pos < n {
            return Err(self.fail("truncated field"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn i64(&mut self) -> std::result::Result<i64, String> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7F) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.fail("varint too long"))
    }
    fn bytes(&mut self) -> std::result::Result<&'a [u8], String> {
        let n = self.varint()?;
        // Bounded by the buffer: a corrupt length cannot allocate.
        let n = usize::try_from(n).map_err(|_| self.fail("length too large"))?;
        self.take(n)
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.fail("family name is not UTF-8"))
    }
}

/// Decodes a commit-log payload; the error says what was malformed and where.
pub fn decode_payload(buf: &[u8]) -> std::result::Result<Payload, String> {
    let mut r = Reader { buf, pos: 0 };
    let version = r.u8()?;
    if version != PAYLOAD_VERSION {
        return Err(format!("unknown payload version {version}"));
    }
    let seq = u64::from_le_bytes(r.take(8)?.try_into().unwrap());
    let row = r.bytes()?.to_vec();
    let count = r.varint()?;
    if count > MAX_MUTATIONS_PER_ROW as u64 {
        return Err(r.fail("mutation count over the limit"));
    }
    let mut mutations = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let m = match r.u8()? {
            1 => Mutation::SetCell {
                family: r.string()?,
                qualifier: r.bytes()?.to_vec(),
                timestamp: r.i64()?,
                value: r.bytes()?.to_vec(),
            },
            2 => Mutation::DeleteCells {
                family: r.string()?,
                qualifier: r.bytes()?.to_vec(),
                start: r.i64()?,
                end: r.i64()?,
            },
            3 => Mutation::DeleteFamily {
                family: r.string()?,
            },
            4 => Mutation::DeleteRow,
            t => return Err(r.fail(&format!("unknown mutation tag {t}"))),
        };
        mutations.push(m);
    }
    if r.pos != buf.len() {
        return Err(r.fail("trailing bytes"));
    }
    Ok(Payload {
        seq,
        row,
        mutations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_rejects_truncation() {
        let muts = vec![
            Mutation::set("f", b"q", 5, b"v"),
            Mutation::DeleteCells {
                family: "f".into(),
                qualifier: b"q".to_vec(),
                start: 1,
                end: 3,
            },
            Mutation::DeleteFamily { family: "g".into() },
            Mutation::DeleteRow,
        ];
        let p = encode_payload(42, b"row", &muts);
        let d = decode_payload(&p).unwrap();
        assert_eq!(
            (d.seq, d.row.as_slice(), d.mutations),
            (42, &b"row"[..], muts)
        );
        for cut in 0..p.len() {
            assert!(decode_payload(&p[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn limits_are_enforced_with_named_reasons() {
        let schema = Schema::with_families(["f"]);
        let ok = [Mutation::set("f", b"q", 1, b"v")];
        assert!(validate(b"r", &ok, &schema, 10).is_ok());
        let cases: Vec<(Vec<u8>, Vec<Mutation>, &str)> = vec![
            (vec![], ok.to_vec(), "row key"),
            (vec![b'r'; MAX_ROW_KEY + 1], ok.to_vec(), "row key"),
            (b"r".to_vec(), vec![], "at least one"),
            (
                b"r".to_vec(),
                vec![Mutation::set("nope", b"q", 1, b"v")],
                "unknown column family",
            ),
            (
                b"r".to_vec(),
                vec![Mutation::set("f", &[0; MAX_QUALIFIER + 1], 1, b"")],
                "qualifier",
            ),
            (
                b"r".to_vec(),
                vec![Mutation::set("f", b"q", 1, &[0; 11])],
                "cell value",
            ),
            (
                b"r".to_vec(),
                vec![Mutation::set("f", b"q", -7, b"")],
                "negative",
            ),
        ];
        for (row, muts, want) in cases {
            let err = validate(&row, &muts, &schema, 10).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }
}
