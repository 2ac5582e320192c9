//! Unit tests of the pure garbage-collection plan.

use super::*;

const MIN_AGE: Duration = Duration::from_secs(10);

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn disk(dirs: &[(&str, &[&str])], logs: &[&str]) -> Disk {
    let mut d = Disk::default();
    for (dir, ssts) in dirs {
        let t: u64 = dir.split('/').nth(1).unwrap().parse().unwrap();
        d.table_dirs.insert(t, format!("tables/{t}"));
        d.tablet_dirs.insert(
            dir.to_string(),
            TabletDir {
                manifests: vec!["MANIFEST-x".into()],
                ssts: ssts.iter().map(|s| format!("{dir}/sst/{s}")).collect(),
            },
        );
    }
    d.log_dirs = set(logs);
    d
}

fn refs(ssts: &[&str], logs: &[&str]) -> Refs {
    Refs {
        ssts: set(ssts),
        log_dirs: set(logs),
    }
}

/// Runs `plan` twice, `MIN_AGE` apart (a candidate needs two passes and the age).
fn two_passes(d: &Disk, live: &Live, m: &BTreeMap<String, Refs>) -> (Plan, Plan) {
    let mut s = Suspects::default();
    let t0 = Instant::now();
    let first = plan(d, live, m, &mut s, t0, MIN_AGE);
    let second = plan(d, live, m, &mut s, t0 + MIN_AGE, MIN_AGE);
    (first, second)
}

fn live(dirs: &[&str], tables: &[u64], servers: &[&str]) -> Live {
    Live {
        tablet_dirs: set(dirs),
        table_ids: tables.iter().copied().collect(),
        servers: set(servers),
    }
}

#[test]
fn an_sstable_replaced_by_a_compaction_goes_after_two_passes() {
    let d = disk(&[("tables/1/1", &["3-1.sst", "3-2.sst", "3-3.sst"])], &[]);
    let m = BTreeMap::from([("tables/1/1".into(), refs(&["tables/1/1/sst/3-3.sst"], &[]))]);
    let (first, second) = two_passes(&d, &live(&["tables/1/1"], &[1], &[]), &m);
    assert_eq!(
        first,
        Plan::default(),
        "nothing goes in the pass that first sees it"
    );
    assert_eq!(
        second.ssts,
        vec!["tables/1/1/sst/3-1.sst", "tables/1/1/sst/3-2.sst"]
    );
    assert!(second.tablet_dirs.is_empty() && second.table_dirs.is_empty());
}

#[test]
fn split_children_keep_the_parents_shared_sstables() {
    // The parent 1/1 was split into 1/2 and 1/3: METADATA names only the children;
    // both children's manifests list the parent's file (clipped).
    let parent = "tables/1/1/sst/3-1.sst";
    let d = disk(
        &[
            ("tables/1/1", &["3-1.sst"]),
            ("tables/1/2", &[]),
            ("tables/1/3", &["1-1.sst"]),
        ],
        &[],
    );
    let m = BTreeMap::from([
        ("tables/1/1".into(), refs(&[parent], &[])),
        ("tables/1/2".into(), refs(&[parent], &[])),
        (
            "tables/1/3".into(),
            refs(&[parent, "tables/1/3/sst/1-1.sst"], &[]),
        ),
    ]);
    let l = live(&["tables/1/2", "tables/1/3"], &[1], &[]);
    let (_, second) = two_passes(&d, &l, &m);
    // The parent's directory is dead (its manifests go), its file is not.
    assert_eq!(second.tablet_dirs, vec!["tables/1/1"]);
    assert!(second.ssts.is_empty(), "{second:?}");
    // Once the right child compacted the file away, the left child still holds it.
    let mut m2 = m.clone();
    m2.insert("tables/1/3".into(), refs(&["tables/1/3/sst/1-1.sst"], &[]));
    let (_, second) = two_passes(&d, &l, &m2);
    assert!(second.ssts.is_empty(), "{second:?}");
    // When neither child references it any more, it goes: once the parent's dead
    // directory no longer counts, the file waits its own MIN_AGE.
    m2.insert("tables/1/2".into(), refs(&[], &[]));
    let mut s = Suspects::default();
    let t0 = Instant::now();
    for i in 0..2 {
        let p = plan(&d, &l, &m2, &mut s, t0 + MIN_AGE * i, MIN_AGE);
        assert!(p.ssts.is_empty(), "pass {i}: {p:?}");
    }
    let p = plan(&d, &l, &m2, &mut s, t0 + MIN_AGE * 2, MIN_AGE);
    assert_eq!(p.ssts, vec![parent]);
}

#[test]
fn a_file_newer_than_the_first_scan_is_not_deleted_early() {
    let d1 = disk(&[("tables/1/1", &["3-1.sst"])], &[]);
    let d2 = disk(&[("tables/1/1", &["3-1.sst", "3-2.sst"])], &[]);
    let m = BTreeMap::from([("tables/1/1".into(), refs(&[], &[]))]);
    let l = live(&["tables/1/1"], &[1], &[]);
    let mut s = Suspects::default();
    let t0 = Instant::now();
    assert_eq!(plan(&d1, &l, &m, &mut s, t0, MIN_AGE), Plan::default());
    // 3-2 appears (a flush whose manifest edit is not in yet): a full MIN_AGE later
    // 3-1 goes, 3-2 (first seen in the second pass) does not.
    let p = plan(&d2, &l, &m, &mut s, t0 + MIN_AGE, MIN_AGE);
    assert_eq!(p.ssts, vec!["tables/1/1/sst/3-1.sst"]);
    // 3-1 is gone. Not yet MIN_AGE after 3-2 was first seen: still kept.
    let d2 = disk(&[("tables/1/1", &["3-2.sst"])], &[]);
    let p = plan(
        &d2,
        &l,
        &m,
        &mut s,
        t0 + MIN_AGE * 2 - Duration::from_millis(1),
        MIN_AGE,
    );
    assert!(!p.ssts.contains(&"tables/1/1/sst/3-2.sst".to_string()));
    // A file referenced in between is forgotten as a suspect: its clock restarts.
    let m2 = BTreeMap::from([("tables/1/1".into(), refs(&["tables/1/1/sst/3-2.sst"], &[]))]);
    plan(&d2, &l, &m2, &mut s, t0 + MIN_AGE * 2, MIN_AGE);
    let p = plan(&d2, &l, &m, &mut s, t0 + MIN_AGE * 3, MIN_AGE);
    assert!(p.ssts.is_empty(), "{p:?}");
}

#[test]
fn a_young_unnamed_tablet_directory_is_kept_and_its_references_count() {
    // A split child written before its METADATA row: not live, but not ripe either.
    let d = disk(&[("tables/1/1", &["3-1.sst"]), ("tables/1/9", &[])], &[]);
    let m = BTreeMap::from([
        ("tables/1/1".into(), refs(&[], &[])),
        ("tables/1/9".into(), refs(&["tables/1/1/sst/3-1.sst"], &[])),
    ]);
    let mut s = Suspects::default();
    let t0 = Instant::now();
    let l = live(&["tables/1/1"], &[1], &[]);
    assert_eq!(plan(&d, &l, &m, &mut s, t0, MIN_AGE), Plan::default());
    // Its row appears before MIN_AGE: never deleted, and its references still hold.
    let l2 = live(&["tables/1/1", "tables/1/9"], &[1], &[]);
    let p = plan(&d, &l2, &m, &mut s, t0 + MIN_AGE, MIN_AGE);
    assert_eq!(p, Plan::default());
}

#[test]
fn a_dead_servers_log_stays_while_a_manifest_needs_it() {
    let d = disk(
        &[("tables/1/1", &[])],
        &["logs/a-1", "logs/b-2", "logs/c-3"],
    );
    // a-1 is live; b-2 is dead and tablet 1/1 has not been recovered from it yet
    // (its manifest holds a log reference or a seal in it); c-3 is dead and unneeded.
    for r in [
        refs(&[], &["logs/a-1", "logs/b-2"]),
        Refs::of(&{
            let mut m = ManifestState::new(
                1,
                tablet::RowRange::all(),
                tablet::Schema::with_families(["f"]),
            );
            m.seals
                .insert("logs/b-2/00000000000000000001.log".into(), 99);
            m
        }),
    ] {
        let m = BTreeMap::from([("tables/1/1".into(), r)]);
        let (_, second) = two_passes(&d, &live(&["tables/1/1"], &[1], &["a-1"]), &m);
        assert_eq!(second.log_dirs, vec!["logs/c-3"]);
    }
    // Once recovered (the new owner's manifest names only its own log), b-2 goes too.
    let m = BTreeMap::from([("tables/1/1".into(), refs(&[], &["logs/a-1"]))]);
    let (_, second) = two_passes(&d, &live(&["tables/1/1"], &[1], &["a-1"]), &m);
    assert_eq!(second.log_dirs, vec!["logs/b-2", "logs/c-3"]);
}

#[test]
fn a_deleted_table_goes_directory_first_then_its_files() {
    let d = disk(&[("tables/2/5", &["1-1.sst"]), ("tables/1/1", &[])], &[]);
    let mut m = BTreeMap::from([
        ("tables/2/5".into(), refs(&["tables/2/5/sst/1-1.sst"], &[])),
        ("tables/1/1".into(), refs(&[], &[])),
    ]);
    let l = live(&["tables/1/1"], &[1], &[]);
    let mut s = Suspects::default();
    let t0 = Instant::now();
    let p = plan(&d, &l, &m, &mut s, t0, MIN_AGE);
    assert_eq!(p.table_dirs, vec!["tables/2"], "removed only once empty");
    assert!(p.tablet_dirs.is_empty() && p.ssts.is_empty());
    let p = plan(&d, &l, &m, &mut s, t0 + MIN_AGE, MIN_AGE);
    assert_eq!(p.tablet_dirs, vec!["tables/2/5"]);
    // Its own manifest no longer protects its file, which is now a new candidate.
    assert!(p.ssts.is_empty());
    m.remove("tables/2/5"); // the manifests were deleted
    let p = plan(&d, &l, &m, &mut s, t0 + MIN_AGE * 2, MIN_AGE);
    assert_eq!(p.ssts, vec!["tables/2/5/sst/1-1.sst"]);
    // A table that still has a file or rows is never removed.
    let l2 = live(&["tables/1/1", "tables/2/5"], &[1, 2], &[]);
    let p = plan(&d, &l2, &m, &mut Suspects::default(), t0, MIN_AGE);
    assert!(p.table_dirs.is_empty());
}
