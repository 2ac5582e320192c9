//! Linked-list verify (HBase's IntegrationTestBigLinkedList, Accumulo's continuous ingest).
//!
//! The ingest workload writes rows `link/<id>`, each holding the id of a row the same
//! writer had already seen acknowledged (its previous row), so a lost acknowledged write
//! shows up as a reference to a row that is not there. After the run every link row is
//! read back (`DIR/final/links.jsonl`) and each row is classed:
//!
//! - REFERENCED: present and referenced by another present row;
//! - UNREFERENCED: present, referenced by none (the heads of the chains, and rows whose
//!   write had an unknown outcome and so were never referenced);
//! - UNDEFINED: referenced by a present row but absent: data loss.
//!
//! Pass: UNDEFINED = 0, and every row whose write was acknowledged in the history is
//! present (a stronger form of the same check that also catches the newest rows, which
//! nothing references).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::history::{Call, Kind, Operation};

/// One link row as read back after the run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LinkRow {
    /// Its key (`link/<id>`).
    pub row: String,
    /// The row it references, if any.
    pub prev: Option<String>,
}

/// The verify's counts and the rows that show loss.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkReport {
    /// Present rows referenced by another present row.
    pub referenced: usize,
    /// Present rows referenced by none.
    pub unreferenced: usize,
    /// Rows referenced but absent (loss).
    pub undefined: Vec<String>,
    /// Rows acknowledged in the history but absent (loss).
    pub acked_missing: Vec<String>,
}

impl LinkReport {
    /// Human-readable violations (empty: pass).
    pub fn violations(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .undefined
            .iter()
            .map(|r| format!("UNDEFINED: {r} is referenced but missing"))
            .collect();
        v.extend(
            self.acked_missing
                .iter()
                .map(|r| format!("acknowledged link row {r} is missing")),
        );
        v
    }
}

/// Classifies the rows read back against each other and against the history's acked links.
pub fn verify(rows: &[LinkRow], ops: &[Operation]) -> LinkReport {
    let present: BTreeMap<&str, Option<&str>> = rows
        .iter()
        .map(|r| (r.row.as_str(), r.prev.as_deref()))
        .collect();
    let referenced: BTreeSet<&str> = present.values().flatten().copied().collect();
    let mut rep = LinkReport::default();
    for r in present.keys() {
        if referenced.contains(r) {
            rep.referenced += 1;
        } else {
            rep.unreferenced += 1;
        }
    }
    rep.undefined = referenced
        .iter()
        .filter(|r| !present.contains_key(*r))
        .map(|r| r.to_string())
        .collect();
    rep.acked_missing = ops
        .iter()
        .filter(|o| matches!(o.invoke.call, Call::Link { .. }) && o.outcome() == Kind::Ok)
        .map(|o| o.invoke.key.clone())
        .filter(|k| !present.contains_key(k.as_str()))
        .collect();
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(r: &str, prev: Option<&str>) -> LinkRow {
        LinkRow {
            row: r.into(),
            prev: prev.map(Into::into),
        }
    }

    #[test]
    fn a_chain_with_a_hole_is_undefined() {
        let whole = vec![
            row("l1", None),
            row("l2", Some("l1")),
            row("l3", Some("l2")),
        ];
        let rep = verify(&whole, &[]);
        assert_eq!((rep.referenced, rep.unreferenced), (2, 1));
        assert!(rep.violations().is_empty());
        let holed = vec![row("l1", None), row("l3", Some("l2"))];
        let rep = verify(&holed, &[]);
        assert_eq!(rep.undefined, vec!["l2".to_string()]);
        assert_eq!(rep.violations().len(), 1);
    }
}
