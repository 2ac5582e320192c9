//! Validation of admin requests and conversions between the wire types and the
//! `tablet` crate's types.
//!
//! Limits (checked before anything is allocated; see master.proto): names are 1 to 64
//! bytes of `[A-Za-z0-9_.-]`, at most [`MAX_SPLIT_KEYS`] split keys of at most
//! [`MAX_ROW_KEY`] bytes, at most [`MAX_FAMILIES`] families.

use tablet::meta::{TableInfo, TabletRecord};
use tablet::schema::{check_family_name, DEFAULT_GROUP};
use tablet::{GcPolicy, Schema};

use crate::error::{Error, Result};
use crate::pb;

/// Most split keys a table may be created with.
pub const MAX_SPLIT_KEYS: usize = 10_000;
/// Longest row key (DESIGN.md section 1).
pub const MAX_ROW_KEY: usize = 4 << 10;
/// Most families in a table.
pub const MAX_FAMILIES: usize = 1_000;
/// Largest admin request or response message.
pub const MAX_MESSAGE: usize = 16 << 20;

/// Table names follow the family-name rule.
pub fn check_table_name(name: &str) -> Result<()> {
    check_family_name(name).map_err(|_| {
        Error::InvalidArgument(format!(
            "table name {name:?} must be 1 to 64 bytes of letters, digits, '_', '.', '-'"
        ))
    })?;
    if name == tablet::meta::METADATA_TABLE {
        return Err(Error::InvalidArgument(format!(
            "table name {name:?} is reserved"
        )));
    }
    Ok(())
}

/// Sorted, distinct, non-empty split keys within the limits.
pub fn check_split_keys(keys: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
    if keys.len() > MAX_SPLIT_KEYS {
        return Err(Error::InvalidArgument(format!(
            "{} split keys; at most {MAX_SPLIT_KEYS}",
            keys.len()
        )));
    }
    for k in keys {
        if k.is_empty() {
            return Err(Error::InvalidArgument("empty split key".into()));
        }
        if k.len() > MAX_ROW_KEY {
            return Err(Error::InvalidArgument(format!(
                "split key of {} bytes; at most {MAX_ROW_KEY}",
                k.len()
            )));
        }
    }
    let mut v = keys.to_vec();
    v.sort();
    v.dedup();
    Ok(v)
}

/// Parses a GC policy in cbt's spelling (empty: `never`).
pub fn parse_gc(s: &str) -> Result<GcPolicy> {
    if s.trim().is_empty() {
        return Ok(GcPolicy::Never);
    }
    Ok(GcPolicy::parse(s)?)
}

/// A GC policy in cbt's spelling (parses back with [`parse_gc`]).
pub fn gc_to_string(p: &GcPolicy) -> String {
    match p {
        GcPolicy::Never => "never".into(),
        GcPolicy::MaxVersions(n) => format!("maxversions={n}"),
        GcPolicy::MaxAgeMicros(us) => {
            let units = [
                ("d", 86_400_000_000),
                ("h", 3_600_000_000),
                ("m", 60_000_000),
                ("s", 1_000_000),
                ("ms", 1_000),
            ];
            for (u, m) in units {
                if *us != 0 && us % m == 0 {
                    return format!("maxage={}{u}", us / m);
                }
            }
            format!("maxage={us}us")
        }
        GcPolicy::Union(a, b) => format!("{} or {}", gc_to_string(a), gc_to_string(b)),
        GcPolicy::Intersection(a, b) => format!("{} and {}", gc_to_string(a), gc_to_string(b)),
    }
}

/// A schema from the families of a create request.
pub fn schema_from(families: &[pb::ColumnFamily]) -> Result<Schema> {
    if families.len() > MAX_FAMILIES {
        return Err(Error::InvalidArgument(format!(
            "{} families; at most {MAX_FAMILIES}",
            families.len()
        )));
    }
    let mut s = Schema::default();
    s.groups.entry(DEFAULT_GROUP.to_string()).or_default();
    for f in families {
        if s.families.contains_key(&f.name) {
            return Err(Error::InvalidArgument(format!(
                "family {:?} given twice",
                f.name
            )));
        }
        s.add_family(
            &f.name,
            parse_gc(&f.gc_policy)?,
            group_or_default(&f.locality_group),
        )?;
    }
    Ok(s)
}

/// The locality group named, or the default one.
pub fn group_or_default(g: &str) -> &str {
    if g.is_empty() {
        DEFAULT_GROUP
    } else {
        g
    }
}

/// A table on the wire.
pub fn table_to_pb(t: &TableInfo) -> pb::Table {
    pb::Table {
        name: t.name.clone(),
        id: t.id,
        families: t
            .schema
            .families
            .iter()
            .map(|(name, f)| pb::ColumnFamily {
                name: name.clone(),
                gc_policy: gc_to_string(&f.gc),
                locality_group: f.locality_group.clone(),
            })
            .collect(),
        groups: t
            .schema
            .groups
            .iter()
            .map(|(name, g)| pb::LocalityGroup {
                name: name.clone(),
                in_memory: g.in_memory,
            })
            .collect(),
    }
}

/// A tablet record on the wire.
pub fn tablet_to_pb(r: &TabletRecord) -> pb::TabletInfo {
    pb::TabletInfo {
        table: r.table.clone(),
        table_id: r.table_id,
        tablet_id: r.tablet_id,
        start: r.start.clone(),
        end: r.end.clone(),
        server_id: r.server_id.clone(),
        server_addr: r.server_addr.clone(),
        epoch: r.epoch,
    }
}

/// Applies family modifications to a copy of `schema`, all or none.
pub fn modify_schema(schema: &Schema, mods: &[pb::FamilyModification]) -> Result<Schema> {
    use pb::family_modification::Kind;
    let mut s = schema.clone();
    for m in mods {
        match &m.kind {
            Some(Kind::Create(f)) => {
                if s.families.contains_key(&f.name) {
                    return Err(Error::FailedPrecondition(format!(
                        "family {:?} exists",
                        f.name
                    )));
                }
                if s.families.len() >= MAX_FAMILIES {
                    return Err(Error::InvalidArgument(format!(
                        "at most {MAX_FAMILIES} families"
                    )));
                }
                s.add_family(
                    &f.name,
                    parse_gc(&f.gc_policy)?,
                    group_or_default(&f.locality_group),
                )?;
            }
            Some(Kind::Update(f)) => {
                let cur = s.families.get(&f.name).cloned().ok_or_else(|| {
                    Error::FailedPrecondition(format!("no family {:?} to update", f.name))
                })?;
                let gc = if f.gc_policy.is_empty() {
                    cur.gc
                } else {
                    parse_gc(&f.gc_policy)?
                };
                let group = if f.locality_group.is_empty() {
                    cur.locality_group
                } else {
                    f.locality_group.clone()
                };
                s.add_family(&f.name, gc, &group)?;
            }
            Some(Kind::Drop(name)) => {
                if s.families.remove(name).is_none() {
                    return Err(Error::FailedPrecondition(format!(
                        "no family {name:?} to drop"
                    )));
                }
            }
            Some(Kind::SetGroup(g)) => {
                let name = group_or_default(&g.name);
                if !s.families.values().any(|f| f.locality_group == name) {
                    return Err(Error::FailedPrecondition(format!(
                        "no family in locality group {name:?}"
                    )));
                }
                s.groups.entry(name.to_string()).or_default().in_memory = g.in_memory;
            }
            None => return Err(Error::InvalidArgument("empty family modification".into())),
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_policies_round_trip_through_cbt_spelling() {
        for s in [
            "never",
            "maxversions=3",
            "maxage=30d",
            "maxage=90s",
            "maxage=5us",
            "maxversions=2 or maxage=1h",
            "maxversions=1 and maxage=2m",
        ] {
            let p = parse_gc(s).unwrap();
            assert_eq!(gc_to_string(&p), s);
            assert_eq!(parse_gc(&gc_to_string(&p)).unwrap(), p);
        }
        assert_eq!(parse_gc("").unwrap(), GcPolicy::Never);
        assert!(parse_gc("maxversions=0").is_err());
    }

    #[test]
    fn split_keys_are_sorted_deduplicated_and_bounded() {
        let ks = check_split_keys(&[b"m".to_vec(), b"c".to_vec(), b"m".to_vec()]).unwrap();
        assert_eq!(ks, vec![b"c".to_vec(), b"m".to_vec()]);
        assert!(check_split_keys(&[Vec::new()]).is_err());
        assert!(check_split_keys(&[vec![b'x'; MAX_ROW_KEY + 1]]).is_err());
        assert!(check_split_keys(&vec![b"a".to_vec(); MAX_SPLIT_KEYS + 1]).is_err());
    }

    #[test]
    fn family_modifications_apply_all_or_none() {
        use pb::family_modification::Kind;
        let fam = |n: &str, gc: &str| pb::ColumnFamily {
            name: n.into(),
            gc_policy: gc.into(),
            locality_group: String::new(),
        };
        let s = schema_from(&[fam("a", "maxversions=1")]).unwrap();
        let ok = modify_schema(
            &s,
            &[
                pb::FamilyModification {
                    kind: Some(Kind::Create(fam("b", ""))),
                },
                pb::FamilyModification {
                    kind: Some(Kind::Update(fam("a", "maxversions=5"))),
                },
                pb::FamilyModification {
                    kind: Some(Kind::Drop("b".into())),
                },
            ],
        )
        .unwrap();
        assert_eq!(ok.families.len(), 1);
        assert_eq!(ok.families["a"].gc, GcPolicy::MaxVersions(5));
        let bad = modify_schema(
            &s,
            &[
                pb::FamilyModification {
                    kind: Some(Kind::Create(fam("c", ""))),
                },
                pb::FamilyModification {
                    kind: Some(Kind::Drop("zz".into())),
                },
            ],
        );
        assert!(matches!(bad, Err(Error::FailedPrecondition(_))));
        assert!(schema_from(&[fam("a", ""), fam("a", "")]).is_err());
        assert!(check_table_name("METADATA").is_err());
        assert!(check_table_name("users-1").is_ok());
    }

    #[test]
    fn set_group_marks_a_used_group_in_memory_and_rejects_an_empty_one() {
        use pb::family_modification::Kind;
        let set = |g: &str, on: bool| pb::FamilyModification {
            kind: Some(Kind::SetGroup(pb::LocalityGroup {
                name: g.into(),
                in_memory: on,
            })),
        };
        let f = pb::ColumnFamily {
            name: "a".into(),
            gc_policy: String::new(),
            locality_group: "mem".into(),
        };
        let s = schema_from(&[f]).unwrap();
        assert!(!s.groups["mem"].in_memory);
        let on = modify_schema(&s, &[set("mem", true)]).unwrap();
        assert!(on.groups["mem"].in_memory);
        assert!(!on.groups[DEFAULT_GROUP].in_memory);
        let off = modify_schema(&on, &[set("mem", false)]).unwrap();
        assert!(!off.groups["mem"].in_memory);
        let none = modify_schema(&s, &[set("nothing", true)]);
        assert!(
            matches!(none, Err(Error::FailedPrecondition(_))),
            "{none:?}"
        );
    }
}
