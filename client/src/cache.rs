//! The tablet location cache: where each tablet of each table was last seen served.
//!
//! Per table, locations are kept in a map ordered by the tablet's *end* row (an unbounded
//! end sorts last), mirroring METADATA's keys, so the tablet holding row `r` is the first
//! entry whose end is above `r`, provided its start is at or below `r` (otherwise that part
//! of the table is not cached).
//!
//! Invariant: the cached ranges of one table never overlap. Inserting a location first
//! removes every cached location overlapping it, so a split or merge seen in METADATA
//! replaces the stale entries at once. Entries are dropped when a server answers
//! `not-serving` / `wrong-range` for them (the tablet moved, split or was unloaded).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use tablet::meta::TabletRecord;
use tablet::{Epoch, TabletId};

/// Where one tablet is served, as METADATA said when the client looked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The table's id.
    pub table_id: u64,
    /// The tablet's id.
    pub tablet_id: TabletId,
    /// First row (inclusive).
    pub start: Vec<u8>,
    /// End row (exclusive; empty: no end).
    pub end: Vec<u8>,
    /// Address of the serving tablet server.
    pub server_addr: String,
    /// Epoch of the assignment.
    pub epoch: Epoch,
}

impl Location {
    /// The location a METADATA record gives (`None` when the tablet is unassigned).
    pub fn from_record(r: &TabletRecord) -> Option<Location> {
        if r.server_addr.is_empty() {
            return None;
        }
        Some(Location {
            table_id: r.table_id,
            tablet_id: r.tablet_id,
            start: r.start.clone(),
            end: r.end.clone(),
            server_addr: r.server_addr.clone(),
            epoch: r.epoch,
        })
    }

    /// True when `row` is in the tablet's range.
    pub fn contains(&self, row: &[u8]) -> bool {
        row >= self.start.as_slice() && (self.end.is_empty() || row < self.end.as_slice())
    }

    /// True when the tablet's range and `[start, end)` (empty end: no end) share a row.
    pub fn overlaps(&self, start: &[u8], end: &[u8]) -> bool {
        let below_end = end.is_empty() || self.start.as_slice() < end;
        let above_start = self.end.is_empty() || self.end.as_slice() > start;
        below_end && above_start
    }
}

/// A tablet's end row as a map key: `Bounded` ends sort bytewise, `Unbounded` last.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum EndKey {
    Bounded(Vec<u8>),
    Unbounded,
}

impl EndKey {
    fn of(end: &[u8]) -> EndKey {
        if end.is_empty() {
            EndKey::Unbounded
        } else {
            EndKey::Bounded(end.to_vec())
        }
    }
}

/// Cached locations of every table the client has used.
#[derive(Debug, Default)]
pub struct LocationCache {
    tables: HashMap<String, BTreeMap<EndKey, Location>>,
}

impl LocationCache {
    /// An empty cache.
    pub fn new() -> LocationCache {
        LocationCache::default()
    }

    /// The cached location of the tablet of `table` holding `row`.
    pub fn get(&self, table: &str, row: &[u8]) -> Option<Location> {
        let m = self.tables.get(table)?;
        let after = (
            Bound::Excluded(EndKey::Bounded(row.to_vec())),
            Bound::Unbounded,
        );
        let (_, loc) = m.range(after).next()?;
        loc.contains(row).then(|| loc.clone())
    }

    /// Caches `loc`, first dropping every cached location of `table` overlapping it.
    pub fn insert(&mut self, table: &str, loc: Location) {
        let m = self.tables.entry(table.to_string()).or_default();
        let after = (
            Bound::Excluded(EndKey::Bounded(loc.start.clone())),
            Bound::Unbounded,
        );
        let stale: Vec<EndKey> = m
            .range(after)
            .take_while(|(_, l)| l.overlaps(&loc.start, &loc.end))
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            m.remove(&k);
        }
        m.insert(EndKey::of(&loc.end), loc);
    }

    /// Drops the cached location of tablet `tablet_id` of `table`, if cached.
    pub fn invalidate(&mut self, table: &str, tablet_id: TabletId) {
        if let Some(m) = self.tables.get_mut(table) {
            m.retain(|_, l| l.tablet_id != tablet_id);
        }
    }

    /// Drops every cached location of `table` (it was deleted or recreated).
    pub fn invalidate_table(&mut self, table: &str) {
        self.tables.remove(table);
    }

    /// Every cached location of `table`, in row order.
    pub fn table(&self, table: &str) -> Vec<Location> {
        self.tables
            .get(table)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(id: TabletId, start: &str, end: &str) -> Location {
        Location {
            table_id: 1,
            tablet_id: id,
            start: start.as_bytes().to_vec(),
            end: end.as_bytes().to_vec(),
            server_addr: format!("s{id}"),
            epoch: 1,
        }
    }

    fn ids(c: &LocationCache, rows: &[&str]) -> Vec<Option<TabletId>> {
        rows.iter()
            .map(|r| c.get("t", r.as_bytes()).map(|l| l.tablet_id))
            .collect()
    }

    #[test]
    fn finds_the_tablet_whose_range_holds_the_row() {
        let mut c = LocationCache::new();
        c.insert("t", loc(1, "", "g"));
        c.insert("t", loc(2, "g", "p"));
        c.insert("t", loc(3, "p", ""));
        assert_eq!(
            ids(&c, &["", "a", "f\u{7f}", "g", "o", "p", "zzzz"]),
            [
                Some(1),
                Some(1),
                Some(1),
                Some(2),
                Some(2),
                Some(3),
                Some(3)
            ]
        );
        assert_eq!(c.get("other", b"a"), None);
    }

    #[test]
    fn gaps_in_the_cache_are_misses_not_neighbours() {
        let mut c = LocationCache::new();
        c.insert("t", loc(2, "g", "p"));
        assert_eq!(ids(&c, &["a", "g", "p", "z"]), [None, Some(2), None, None]);
    }

    #[test]
    fn a_split_seen_later_replaces_the_parent() {
        let mut c = LocationCache::new();
        c.insert("t", loc(1, "", "m"));
        c.insert("t", loc(2, "m", ""));
        // Tablet 2 split at "t" into 5 = [m, t) and 6 = [t, ..).
        c.insert("t", loc(5, "m", "t"));
        assert_eq!(ids(&c, &["a", "n", "u"]), [Some(1), Some(5), None]);
        c.insert("t", loc(6, "t", ""));
        assert_eq!(ids(&c, &["a", "n", "u"]), [Some(1), Some(5), Some(6)]);
        assert_eq!(c.table("t").len(), 3);
    }

    #[test]
    fn a_merged_or_stale_wide_entry_replaces_every_overlapped_entry() {
        let mut c = LocationCache::new();
        c.insert("t", loc(1, "", "c"));
        c.insert("t", loc(2, "c", "f"));
        c.insert("t", loc(3, "f", "k"));
        c.insert("t", loc(4, "k", ""));
        c.insert("t", loc(9, "d", "h"));
        let left: Vec<TabletId> = c.table("t").iter().map(|l| l.tablet_id).collect();
        assert_eq!(left, [1, 9, 4], "2 and 3 overlap [d, h)");
        assert_eq!(
            ids(&c, &["b", "c", "e", "h", "z"]),
            [Some(1), None, Some(9), None, Some(4)]
        );
    }

    #[test]
    fn invalidation_drops_one_tablet_or_a_whole_table() {
        let mut c = LocationCache::new();
        c.insert("t", loc(1, "", "m"));
        c.insert("t", loc(2, "m", ""));
        c.invalidate("t", 2);
        assert_eq!(ids(&c, &["a", "z"]), [Some(1), None]);
        c.invalidate("t", 77);
        assert_eq!(ids(&c, &["a"]), [Some(1)]);
        c.invalidate_table("t");
        assert_eq!(ids(&c, &["a"]), [None]);
    }

    #[test]
    fn matches_a_brute_force_model_over_random_splits() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let mut c = LocationCache::new();
            let mut model: Vec<Location> = Vec::new();
            for id in 0..12u64 {
                let a = rng.random_range(b'a'..=b'z');
                let b = rng.random_range(b'a'..=b'z');
                let (s, e) = (a.min(b), a.max(b));
                let start = if rng.random_bool(0.2) {
                    String::new()
                } else {
                    (s as char).to_string()
                };
                let end = if rng.random_bool(0.2) || s == e {
                    String::new()
                } else {
                    (e as char).to_string()
                };
                let l = loc(id, &start, &end);
                model.retain(|m| !m.overlaps(&l.start, &l.end));
                model.push(l.clone());
                c.insert("t", l);
            }
            for r in b'a'..=b'z' {
                let row = [r];
                let want = model.iter().find(|m| m.contains(&row)).map(|m| m.tablet_id);
                assert_eq!(c.get("t", &row).map(|l| l.tablet_id), want);
            }
        }
    }
}
