//! The master's decisions as pure functions over a snapshot (STYLE.md point 6).
//!
//! Nothing here does I/O: the caller takes a snapshot of METADATA, the live servers and
//! what each server reports serving, asks a function what to do, and carries it out.
//! That keeps every rule testable with plain values:
//!
//! - [`reconcile`]: after a METADATA scan and `ListTablets` on every server, which tablets
//!   are served as recorded, which need an assignment, and which copies a server holds
//!   without METADATA naming it (stale copies to unload);
//! - [`plan_assignments`]: unassigned tablets go to the least-loaded server, one at a time,
//!   counting what was already handed out;
//! - [`plan_moves`]: throttled balancing of tablet counts (at most `max_moves` per round,
//!   only while the spread is above one);
//! - [`check_coverage`]: whether one table's records tile its row space, and the repairs
//!   the master may make safely (roll back a half-committed split, add a missing last
//!   tablet of a half-created table).

use std::collections::{BTreeMap, BTreeSet};

use tablet::meta::TabletRecord;
use tablet::{Epoch, TabletId};

/// What one server says it serves: tablet id -> epoch.
pub type Report = BTreeMap<TabletId, Epoch>;

/// The outcome of [`reconcile`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Tablets METADATA assigns to a live server that reports serving them at the recorded
    /// epoch.
    pub served: BTreeSet<TabletId>,
    /// Tablets that need an assignment: unassigned in METADATA or on a server that is
    /// not live.
    pub unassigned: BTreeSet<TabletId>,
    /// Tablets METADATA gives to a live server that does not report them at the recorded
    /// epoch. Either the load failed or is still under way (a server loads the children
    /// of a split just after writing their rows), so the caller reassigns them only when
    /// they stay missing across two reconciliations.
    pub missing: BTreeSet<TabletId>,
    /// Copies a live server reports that METADATA does not give it (another server, an
    /// older epoch, or an unknown tablet): (server, tablet) pairs to unload.
    pub stale: Vec<(String, TabletId)>,
}

/// Compares METADATA (`records`) with what live servers report (`reports`, keyed by
/// server id; a live server that could not be asked is absent from `reports` and its
/// recorded tablets count as served, since it may well be serving them).
///
/// `known` lists every tablet id that legitimately exists even if it is not in `records`
/// (METADATA's own tablet), so reports of it are not called stale.
pub fn reconcile(
    records: &[TabletRecord],
    live: &BTreeSet<String>,
    reports: &BTreeMap<String, Report>,
    known: &BTreeSet<TabletId>,
) -> Reconciled {
    let mut out = Reconciled::default();
    let by_id: BTreeMap<TabletId, &TabletRecord> =
        records.iter().map(|r| (r.tablet_id, r)).collect();
    for r in records {
        let on_live = !r.server_id.is_empty() && live.contains(&r.server_id);
        let reported = match reports.get(&r.server_id) {
            Some(rep) => rep.get(&r.tablet_id) == Some(&r.epoch),
            None => true,
        };
        if !on_live {
            out.unassigned.insert(r.tablet_id);
        } else if reported {
            out.served.insert(r.tablet_id);
        } else {
            out.missing.insert(r.tablet_id);
        }
    }
    for (server, rep) in reports {
        for (&tablet, &epoch) in rep {
            if known.contains(&tablet) {
                continue;
            }
            let ours = by_id
                .get(&tablet)
                .is_some_and(|r| r.server_id == *server && r.epoch == epoch);
            if !ours {
                out.stale.push((server.clone(), tablet));
            }
        }
    }
    out
}

/// Gives each tablet of `unassigned` (in order) to the server with the fewest tablets,
/// counting earlier picks; ties go to the smallest server id. `load` holds every live
/// server and its current tablet count. Empty when there is no server.
pub fn plan_assignments(
    unassigned: &[TabletId],
    load: &BTreeMap<String, usize>,
) -> Vec<(TabletId, String)> {
    let mut load = load.clone();
    let mut out = Vec::with_capacity(unassigned.len());
    for &t in unassigned {
        let Some(server) = least_loaded(&load) else {
            break;
        };
        *load.get_mut(&server).expect("present") += 1;
        out.push((t, server));
    }
    out
}

fn least_loaded(load: &BTreeMap<String, usize>) -> Option<String> {
    load.iter()
        .min_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)))
        .map(|(s, _)| s.clone())
}

/// One balancing move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    /// The tablet.
    pub tablet: TabletId,
    /// Its current server.
    pub from: String,
    /// Where it goes.
    pub to: String,
}

/// Moves that even out tablet counts: while the most loaded server has at least two more
/// tablets than the least loaded, move one (its highest id, so the choice is stable) from
/// the first to the second; at most `max_moves`. `tablets` maps every live server to the
/// movable tablets it serves (METADATA's tablet is left out by the caller).
pub fn plan_moves(tablets: &BTreeMap<String, Vec<TabletId>>, max_moves: usize) -> Vec<Move> {
    let mut t: BTreeMap<String, Vec<TabletId>> = tablets.clone();
    for v in t.values_mut() {
        v.sort_unstable();
    }
    let mut out = Vec::new();
    while out.len() < max_moves {
        let most = t
            .iter()
            .max_by(|a, b| a.1.len().cmp(&b.1.len()).then(b.0.cmp(a.0)))
            .map(|(s, v)| (s.clone(), v.len()));
        let least = t
            .iter()
            .min_by(|a, b| a.1.len().cmp(&b.1.len()).then(a.0.cmp(b.0)))
            .map(|(s, v)| (s.clone(), v.len()));
        let (Some((from, hi)), Some((to, lo))) = (most, least) else {
            break;
        };
        if hi < lo + 2 {
            break;
        }
        let tablet = t.get_mut(&from).and_then(|v| v.pop()).expect("non-empty");
        t.get_mut(&to).expect("present").push(tablet);
        out.push(Move { tablet, from, to });
    }
    out
}

/// How one table's METADATA records cover its row space.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Half-committed splits: (left child, parent). The left child's row was written but
    /// the parent's row still covers the whole parent range (same start, larger end).
    pub half_splits: Vec<(TabletId, TabletId)>,
    /// The table has rows but none with an unbounded end: the rows tile
    /// `["", missing_tail_from)` and a last tablet `[missing_tail_from, "")` is missing (a
    /// table creation that stopped part way; rows are written in key order).
    pub missing_tail_from: Option<Vec<u8>>,
    /// Holes and overlaps the master does not repair by itself: (start, end) of each.
    pub anomalies: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Coverage {
    /// True when the records tile the row space exactly.
    pub fn is_exact(&self) -> bool {
        self.half_splits.is_empty() && self.missing_tail_from.is_none() && self.anomalies.is_empty()
    }
}

/// Checks that `records` (all of one table) tile `["", unbounded)` without holes or
/// overlaps, and names the repairs (see [`Coverage`]).
pub fn check_coverage(records: &[TabletRecord]) -> Coverage {
    let mut out = Coverage::default();
    if records.is_empty() {
        return out;
    }
    // Sort by start, then by end with the unbounded end last.
    let mut rs: Vec<&TabletRecord> = records.iter().collect();
    rs.sort_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then_with(|| end_key(&a.end).cmp(&end_key(&b.end)))
    });
    // A record followed by one with the same start and a larger end is a left child whose
    // parent row was not yet rewritten.
    let mut tiles: Vec<&TabletRecord> = Vec::with_capacity(rs.len());
    for (i, r) in rs.iter().enumerate() {
        if let Some(next) = rs.get(i + 1) {
            if next.start == r.start && end_key(&next.end) > end_key(&r.end) {
                out.half_splits.push((r.tablet_id, next.tablet_id));
                continue;
            }
        }
        tiles.push(r);
    }
    let mut pos: Vec<u8> = Vec::new();
    for (i, r) in tiles.iter().enumerate() {
        if r.start != pos {
            out.anomalies.push((pos.clone(), r.start.clone()));
        }
        if r.end.is_empty() {
            if i + 1 != tiles.len() {
                out.anomalies.push((r.start.clone(), Vec::new()));
            }
            return out;
        }
        pos = r.end.clone();
    }
    out.missing_tail_from = Some(pos);
    out
}

/// Orders end rows with the empty (unbounded) end after every other.
fn end_key(end: &[u8]) -> (bool, &[u8]) {
    (end.is_empty(), end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: TabletId, start: &str, end: &str, server: &str, epoch: Epoch) -> TabletRecord {
        TabletRecord {
            table: "t".into(),
            table_id: 1,
            tablet_id: id,
            start: start.as_bytes().to_vec(),
            end: end.as_bytes().to_vec(),
            dir: TabletRecord::dir_for(1, id),
            server_id: server.into(),
            server_addr: String::new(),
            epoch,
        }
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reconcile_keeps_what_live_servers_serve_and_frees_the_rest() {
        let records = [
            rec(1, "", "g", "a", 3),  // served by a at epoch 3
            rec(2, "g", "p", "b", 2), // b is dead
            rec(3, "p", "", "a", 5),  // a does not report it
            rec(4, "", "", "", 0),    // never assigned (another table in reality)
        ];
        let mut reports = BTreeMap::new();
        reports.insert("a".to_string(), Report::from([(1, 3), (0, 7), (9, 1)]));
        let known = BTreeSet::from([0]);
        let r = reconcile(&records, &set(&["a"]), &reports, &known);
        assert_eq!(r.served, BTreeSet::from([1]));
        assert_eq!(r.unassigned, BTreeSet::from([2, 4]));
        assert_eq!(
            r.missing,
            BTreeSet::from([3]),
            "a live server that does not report it"
        );
        assert_eq!(
            r.stale,
            vec![("a".to_string(), 9)],
            "unknown tablet 9 is stale"
        );
    }

    #[test]
    fn reconcile_calls_an_older_epoch_or_another_servers_copy_stale() {
        let records = [rec(1, "", "", "b", 4)];
        let mut reports = BTreeMap::new();
        reports.insert("a".to_string(), Report::from([(1, 3)]));
        reports.insert("b".to_string(), Report::from([(1, 4)]));
        let r = reconcile(&records, &set(&["a", "b"]), &reports, &BTreeSet::new());
        assert_eq!(r.served, BTreeSet::from([1]));
        assert_eq!(r.stale, vec![("a".to_string(), 1)]);
    }

    #[test]
    fn reconcile_trusts_a_live_server_that_could_not_be_asked() {
        let records = [rec(1, "", "", "a", 4)];
        let r = reconcile(&records, &set(&["a"]), &BTreeMap::new(), &BTreeSet::new());
        assert_eq!(r.served, BTreeSet::from([1]));
        assert!(r.unassigned.is_empty());
    }

    #[test]
    fn assignments_go_to_the_least_loaded_server_counting_earlier_picks() {
        let load = BTreeMap::from([
            ("a".to_string(), 3),
            ("b".to_string(), 0),
            ("c".to_string(), 1),
        ]);
        let plan = plan_assignments(&[10, 11, 12, 13], &load);
        let servers: Vec<&str> = plan.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(servers, ["b", "b", "c", "b"], "ties go to the smaller id");
        assert_eq!(plan[0].0, 10);
        assert!(plan_assignments(&[1], &BTreeMap::new()).is_empty());
    }

    #[test]
    fn balancing_moves_until_the_spread_is_at_most_one_and_is_throttled() {
        let t = BTreeMap::from([
            ("a".to_string(), vec![1, 2, 3, 4, 5, 6]),
            ("b".to_string(), vec![]),
            ("c".to_string(), vec![7]),
        ]);
        let all = plan_moves(&t, 100);
        assert_eq!(all.len(), 3);
        assert_eq!(
            all[0],
            Move {
                tablet: 6,
                from: "a".into(),
                to: "b".into()
            }
        );
        let mut counts: BTreeMap<String, i64> =
            t.iter().map(|(s, v)| (s.clone(), v.len() as i64)).collect();
        for m in &all {
            *counts.get_mut(&m.from).unwrap() -= 1;
            *counts.get_mut(&m.to).unwrap() += 1;
        }
        let (lo, hi) = (
            counts.values().min().unwrap(),
            counts.values().max().unwrap(),
        );
        assert!(hi - lo <= 1, "{counts:?}");
        assert_eq!(plan_moves(&t, 1).len(), 1, "throttled");
        let even = BTreeMap::from([("a".to_string(), vec![1, 2]), ("b".to_string(), vec![3])]);
        assert!(
            plan_moves(&even, 10).is_empty(),
            "a spread of one is balanced"
        );
    }

    #[test]
    fn coverage_of_an_exact_tiling_is_exact() {
        let rs = [
            rec(2, "g", "p", "", 0),
            rec(1, "", "g", "", 0),
            rec(3, "p", "", "", 0),
        ];
        assert!(check_coverage(&rs).is_exact());
        assert!(check_coverage(&[rec(1, "", "", "", 0)]).is_exact());
        assert!(check_coverage(&[]).is_exact());
    }

    #[test]
    fn coverage_finds_a_half_committed_split() {
        // Parent 3 = ["g", "") split at "p": left child 7 = ["g", "p") written, parent not
        // yet rewritten.
        let rs = [
            rec(1, "", "g", "", 0),
            rec(7, "g", "p", "", 0),
            rec(3, "g", "", "", 0),
        ];
        let c = check_coverage(&rs);
        assert_eq!(c.half_splits, vec![(7, 3)]);
        assert!(c.anomalies.is_empty() && c.missing_tail_from.is_none());
    }

    #[test]
    fn coverage_finds_a_missing_last_tablet_and_holes() {
        let c = check_coverage(&[rec(1, "", "g", "", 0), rec(2, "g", "p", "", 0)]);
        assert_eq!(c.missing_tail_from, Some(b"p".to_vec()));
        let c = check_coverage(&[rec(1, "", "g", "", 0), rec(2, "h", "", "", 0)]);
        assert_eq!(c.anomalies, vec![(b"g".to_vec(), b"h".to_vec())]);
        let c = check_coverage(&[rec(1, "b", "", "", 0)]);
        assert_eq!(
            c.anomalies,
            vec![(Vec::new(), b"b".to_vec())],
            "hole at the start"
        );
        let c = check_coverage(&[rec(1, "", "m", "", 0), rec(2, "f", "", "", 0)]);
        assert_eq!(c.anomalies, vec![(b"m".to_vec(), b"f".to_vec())], "overlap");
    }
}
