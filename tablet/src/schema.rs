//! Column families, their garbage-collection policies and locality groups.
//!
//! A table's schema names its column families. Each family has a GC policy, applied when
//! SSTables are compacted and hidden at read time, and belongs to one locality group
//! (Bigtable section 6): every group keeps its own SSTables, so a scan of one group never
//! reads another's bytes, and a group can be marked in-memory.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::types::Timestamp;

/// The locality group families belong to unless the schema says otherwise.
pub const DEFAULT_GROUP: &str = "default";

/// Longest family name accepted.
pub const MAX_FAMILY_NAME: usize = 64;

/// When old cell versions are collected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GcPolicy {
    /// Keep every version.
    Never,
    /// Keep the newest `n` versions of each column.
    MaxVersions(u32),
    /// Keep versions whose timestamp is younger than this many microseconds.
    MaxAgeMicros(i64),
    /// Collect a version when either policy would.
    Union(Box<GcPolicy>, Box<GcPolicy>),
    /// Collect a version only when both policies would.
    Intersection(Box<GcPolicy>, Box<GcPolicy>),
}

impl GcPolicy {
    /// `max_age` from a [`Duration`].
    pub fn max_age(d: Duration) -> GcPolicy {
        GcPolicy::MaxAgeMicros(d.as_micros().min(i64::MAX as u128) as i64)
    }

    /// True when a cell that is the `index`-th visible version of its column (0 = newest),
    /// with timestamp `ts`, is collected at wall-clock time `now`.
    pub fn collects(&self, index: usize, ts: Timestamp, now: Timestamp) -> bool {
        match self {
            GcPolicy::Never => false,
            GcPolicy::MaxVersions(n) => index >= *n as usize,
            GcPolicy::MaxAgeMicros(age) => ts < now.saturating_sub(*age),
            GcPolicy::Union(a, b) => a.collects(index, ts, now) || b.collects(index, ts, now),
            GcPolicy::Intersection(a, b) => {
                a.collects(index, ts, now) && b.collects(index, ts, now)
            }
        }
    }

    /// Parses the cbt-style spelling: `never`, `maxversions=N`, `maxage=30d` (units
    /// `us ms s m h d`), `A or B` (union), `A and B` (intersection).
    pub fn parse(s: &str) -> Result<GcPolicy> {
        let s = s.trim();
        if let Some((a, b)) = s.split_once(" or ") {
            return Ok(GcPolicy::Union(
                Box::new(Self::parse(a)?),
                Box::new(Self::parse(b)?),
            ));
        }
        if let Some((a, b)) = s.split_once(" and ") {
            return Ok(GcPolicy::Intersection(
                Box::new(Self::parse(a)?),
                Box::new(Self::parse(b)?),
            ));
        }
        if s == "never" {
            return Ok(GcPolicy::Never);
        }
        if let Some(n) = s.strip_prefix("maxversions=") {
            let n: u32 = n
                .parse()
                .map_err(|_| invalid(format!("bad maxversions in GC policy {s:?}")))?;
            if n == 0 {
                return Err(invalid("maxversions must be at least 1"));
            }
            return Ok(GcPolicy::MaxVersions(n));
        }
        if let Some(d) = s.strip_prefix("maxage=") {
            return Ok(GcPolicy::MaxAgeMicros(parse_duration_micros(d)?));
        }
        Err(invalid(format!(
            "unknown GC policy {s:?} (never, maxversions=N, maxage=D, A or B, A and B)"
        )))
    }
}

fn parse_duration_micros(d: &str) -> Result<i64> {
    let split = d
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| invalid(format!("duration {d:?} needs a unit (us ms s m h d)")))?;
    let (num, unit) = d.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| invalid(format!("bad duration {d:?}")))?;
    let mult: i64 = match unit {
        "us" => 1,
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return Err(invalid(format!("unknown duration unit in {d:?}"))),
    };
    n.checked_mul(mult)
        .ok_or_else(|| invalid(format!("duration {d:?} too large")))
}

/// One column family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilySpec {
    /// Garbage-collection policy.
    pub gc: GcPolicy,
    /// The locality group holding this family's cells.
    pub locality_group: String,
}

/// One locality group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSpec {
    /// Keep this group's SSTables fully in memory once loaded.
    pub in_memory: bool,
}

/// A table's schema as a tablet sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// Families by name.
    pub families: BTreeMap<String, FamilySpec>,
    /// Locality groups by name; [`DEFAULT_GROUP`] always exists.
    pub groups: BTreeMap<String, GroupSpec>,
}

impl Schema {
    /// A schema with the given families, all in the default group with GC `never`.
    pub fn with_families<'a>(names: impl IntoIterator<Item = &'a str>) -> Schema {
        let mut s = Schema::default();
        for n in names {
            s.add_family(n, GcPolicy::Never, DEFAULT_GROUP)
                .expect("valid family name");
        }
        s
    }

    /// Adds (or replaces) a family.
    pub fn add_family(&mut self, name: &str, gc: GcPolicy, group: &str) -> Result<()> {
        check_family_name(name)?;
        self.groups.entry(DEFAULT_GROUP.to_string()).or_default();
        self.groups.entry(group.to_string()).or_default();
        self.families.insert(
            name.to_string(),
            FamilySpec {
                gc,
                locality_group: group.to_string(),
            },
        );
        Ok(())
    }

    /// The family's spec, or an `InvalidArgument` naming it.
    pub fn family(&self, name: &str) -> Result<&FamilySpec> {
        self.families
            .get(name)
            .ok_or_else(|| invalid(format!("unknown column family {name:?}")))
    }

    /// Names of every locality group, sorted ([`DEFAULT_GROUP`] included).
    pub fn group_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.groups.keys().cloned().collect();
        if !self.groups.contains_key(DEFAULT_GROUP) {
            names.push(DEFAULT_GROUP.to_string());
            names.sort();
        }
        names
    }
}

/// Family names: 1 to 64 of `[A-Za-z0-9_.-]`, as Cloud Bigtable allows.
pub fn check_family_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_FAMILY_NAME {
        return Err(invalid(format!(
            "column family name {name:?} must be 1 to {MAX_FAMILY_NAME} bytes"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    {
        return Err(invalid(format!(
            "column family name {name:?} may hold only letters, digits, '_', '.', '-'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_policies_collect_as_specified() {
        let now = 1_000_000;
        let v2 = GcPolicy::MaxVersions(2);
        assert!(!v2.collects(1, 0, now));
        assert!(v2.collects(2, now, now));
        let age = GcPolicy::MaxAgeMicros(100);
        assert!(age.collects(0, now - 101, now));
        assert!(!age.collects(5, now - 100, now));
        let union = GcPolicy::parse("maxversions=2 or maxage=100us").unwrap();
        assert!(union.collects(2, now, now) && union.collects(0, 0, now));
        let inter = GcPolicy::parse("maxversions=2 and maxage=100us").unwrap();
        assert!(!inter.collects(2, now, now) && !inter.collects(0, 0, now));
        assert!(inter.collects(2, 0, now));
    }

    #[test]
    fn bad_policies_and_names_are_rejected_with_reasons() {
        for bad in ["maxversions=0", "maxage=5", "sometimes", "maxage=5y"] {
            assert!(GcPolicy::parse(bad).is_err(), "{bad}");
        }
        assert!(check_family_name("").is_err());
        assert!(check_family_name("a:b").is_err());
        assert!(check_family_name(&"x".repeat(65)).is_err());
        assert!(check_family_name("cf_1.x-y").is_ok());
    }
}
