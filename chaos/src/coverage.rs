//! METADATA coverage: every row of a table maps to exactly one tablet.
//!
//! After the run the METADATA records of the run's table are read back
//! (`DIR/final/metadata.jsonl`, one `TabletRecord` per line). Sorted by start row they
//! must tile the key space: the first starts at the empty row, each ends where the next
//! starts, the last has no end (RELIABILITY.md T5: no gap, no overlap, after crashes in
//! the middle of splits).

use std::collections::BTreeMap;

use tablet::meta::TabletRecord;

/// Violations of the tiling, per table (empty: every row is covered exactly once).
pub fn violations(records: &[TabletRecord]) -> Vec<String> {
    let mut by_table: BTreeMap<&str, Vec<&TabletRecord>> = BTreeMap::new();
    for r in records {
        by_table.entry(&r.table).or_default().push(r);
    }
    let mut out = Vec::new();
    for (table, mut rs) in by_table {
        rs.sort_by(|a, b| a.start.cmp(&b.start));
        let mut ids = std::collections::BTreeSet::new();
        for r in &rs {
            if !ids.insert(r.tablet_id) {
                out.push(format!("{table}: tablet {} recorded twice", r.tablet_id));
            }
        }
        let show = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
        if !rs[0].start.is_empty() {
            out.push(format!(
                "{table}: rows before {:?} have no tablet",
                show(&rs[0].start)
            ));
        }
        for w in rs.windows(2) {
            let (a, b) = (w[0], w[1]);
            if a.end.is_empty() || a.end > b.start {
                out.push(format!(
                    "{table}: tablets {} and {} overlap at {:?}",
                    a.tablet_id,
                    b.tablet_id,
                    show(&b.start)
                ));
            } else if a.end < b.start {
                out.push(format!(
                    "{table}: rows [{:?}, {:?}) have no tablet",
                    show(&a.end),
                    show(&b.start)
                ));
            }
        }
        if let Some(last) = rs.last().filter(|r| !r.end.is_empty()) {
            out.push(format!(
                "{table}: rows from {:?} on have no tablet",
                show(&last.end)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u64, start: &str, end: &str) -> TabletRecord {
        TabletRecord {
            table: "t".into(),
            table_id: 1,
            tablet_id: id,
            start: start.into(),
            end: end.into(),
            dir: String::new(),
            server_id: String::new(),
            server_addr: String::new(),
            epoch: 1,
        }
    }

    #[test]
    fn gaps_and_overlaps_are_reported() {
        assert!(violations(&[rec(1, "", "m"), rec(2, "m", "")]).is_empty());
        assert_eq!(violations(&[rec(1, "", "k"), rec(2, "m", "")]).len(), 1);
        assert_eq!(violations(&[rec(1, "", "n"), rec(2, "m", "")]).len(), 1);
        assert_eq!(violations(&[rec(1, "a", "")]).len(), 1);
        assert_eq!(violations(&[rec(1, "", "m")]).len(), 1);
        assert_eq!(violations(&[rec(1, "", "m"), rec(1, "m", "")]).len(), 1);
    }
}
