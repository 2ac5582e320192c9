//! Take-over and the control loop's tick (Bigtable section 5.2).
//!
//! Take-over and every periodic reconciliation do the same thing: list
//! `/quarry/servers/`, ask each server `ListTablets` (before scanning METADATA, so a split
//! that completes in between shows up as a tablet missing from a report, never as an
//! unknown one), make sure METADATA's tablet is served, scan METADATA, and compare with
//! [`reconcile`]. Between reconciliations each tick runs failure detection and assigns
//! what is unassigned.
//!
//! Failure detection (DESIGN.md rule 6): for each server the master `try_acquire`s the
//! lock on its file. Success proves the server's session expired and its lock-delay
//! passed, so the server has stopped serving (rule 5). Only then does the master delete
//! the file (fenced) and reassign the server's tablets.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use lockservice::state::LockMode;
use tablet::meta::{TabletRecord, METADATA_TABLET_ID};
use tablet::TabletId;

use crate::assign::{assign_unassigned, balance, fence_out, meta, unload};
use crate::error::{Error, Result};
use crate::master::{Active, Inner};
use crate::policy::{check_coverage, reconcile, Report};
use crate::view::Server;
use crate::{ns, tables};

/// Rebuilds the view from the lock service, the servers and METADATA, then runs a tick.
pub async fn take_over(inner: &Inner, a: &mut Active) -> Result<()> {
    refresh_servers(inner, a).await?;
    a.view.root = ns::read_root(&inner.client).await?;
    a.view.root_unassigned = a.view.root.is_none();
    reconcile_full(inner, a).await?;
    tracing::info!(
        servers = a.view.servers.len(),
        tablets = a.view.tablets.len(),
        unassigned = a.view.unassigned.len(),
        "take-over: state recovered"
    );
    tick(inner, a).await
}

/// One pass of the control loop.
pub async fn tick(inner: &Inner, a: &mut Active) -> Result<()> {
    inner.guard()?;
    refresh_servers(inner, a).await?;
    detect_failures(inner, a).await?;
    let told = inner
        .rescan
        .swap(false, std::sync::atomic::Ordering::AcqRel);
    let due = told
        || a.last_scan
            .is_none_or(|t| t.elapsed() >= inner.cfg.scan_every);
    if due || a.view.root_unassigned {
        let r = reconcile_full(inner, a).await;
        a.last_scan = Some(Instant::now()); // failed or not: retried after scan_every
        match r {
            Err(e @ Error::LostMastership(_)) => return Err(e),
            Err(e) => tracing::warn!("reconciliation: {e}"),
            Ok(()) => {}
        }
    }
    assign_unassigned(inner, a).await?;
    if a.last_balance.elapsed() >= inner.cfg.balance_every {
        a.last_balance = Instant::now();
        balance(inner, a).await?;
    }
    Ok(())
}

/// Adds servers whose file appeared; drops those whose file is gone (their tablets become
/// unassigned).
async fn refresh_servers(inner: &Inner, a: &mut Active) -> Result<()> {
    let files = ns::list_servers(&inner.client).await?;
    let present: BTreeSet<String> = files.iter().map(|f| f.info.id.clone()).collect();
    let gone: Vec<String> = a
        .view
        .servers
        .keys()
        .filter(|s| !present.contains(*s))
        .cloned()
        .collect();
    for s in gone {
        tracing::warn!(server = %s, "server file is gone: its tablets will be reassigned");
        a.view.servers.remove(&s);
    }
    for f in files {
        let s = a.view.servers.entry(f.info.id.clone()).or_insert_with(|| {
            tracing::info!(server = %f.info.id, addr = %f.info.addr, "tablet server found");
            Server {
                info: f.info.clone(),
                path: f.path.clone(),
                first_seen: Instant::now(),
                lock_generation: 0,
            }
        });
        s.lock_generation = f.lock_generation;
    }
    a.view.mark_orphans();
    Ok(())
}

/// Acquires each server's lock if it can: proof of a dead server, whose file it deletes.
async fn detect_failures(inner: &Inner, a: &mut Active) -> Result<()> {
    let servers: Vec<Server> = a.view.servers.values().cloned().collect();
    for s in servers {
        if s.lock_generation == 0 && s.first_seen.elapsed() < inner.cfg.registration_grace {
            continue; // still registering
        }
        inner.guard()?;
        match inner
            .session
            .try_acquire(&s.path, LockMode::Exclusive)
            .await
        {
            Ok(_) => {
                inner.guard()?;
                tracing::warn!(server = %s.info.id, "server's lock acquired: it is dead");
                if let Err(e) = inner.client.delete(&s.path, Some(&a.seq)).await {
                    let _ = inner.session.release(&s.path).await;
                    return Err(e.into());
                }
                a.view.servers.remove(&s.info.id);
                a.view.mark_orphans();
            }
            Err(lockservice::Error::LockBusy(_)) => {}
            Err(lockservice::Error::NotFound(_)) => {
                a.view.servers.remove(&s.info.id);
                a.view.mark_orphans();
            }
            Err(e) => {
                let e = Error::from(e);
                if matches!(e, Error::LostMastership(_)) {
                    return Err(e);
                }
                tracing::warn!(server = %s.info.id, "failure detection: {e}");
            }
        }
    }
    Ok(())
}

/// Asks every live server what it serves (servers that do not answer are left out).
async fn collect_reports(inner: &Inner, a: &Active) -> BTreeMap<String, Report> {
    let mut out = BTreeMap::new();
    for s in a.view.servers.values() {
        match inner.conns.list(&s.info.addr).await {
            Ok(r) if r.server_id == s.info.id => {
                let rep = r
                    .tablets
                    .iter()
                    .filter_map(|t| t.tablet.as_ref().map(|d| (d.tablet_id, t.epoch)))
                    .collect::<Report>();
                tracing::debug!(server = %s.info.id, ?rep, "ListTablets");
                out.insert(s.info.id.clone(), rep);
            }
            Ok(r) => tracing::warn!(
                server = %s.info.id,
                "{} answers as {}: skipped", s.info.addr, r.server_id
            ),
            Err(e) => tracing::warn!(server = %s.info.id, "ListTablets: {e}"),
        }
    }
    out
}

/// The full reconciliation (see the module essay).
pub async fn reconcile_full(inner: &Inner, a: &mut Active) -> Result<()> {
    inner.guard()?;
    let reports = collect_reports(inner, a).await;
    if a.view.root.is_none() {
        a.view.root = ns::read_root(&inner.client).await?;
    }
    check_root(a, &reports);
    if a.view.root_unassigned {
        unload_stale_root(inner, a, &reports).await?;
        assign_unassigned(inner, a).await?;
        if a.view.root_unassigned {
            return Err(Error::Unavailable("METADATA's tablet is not served".into()));
        }
    }
    a.view.tables = ns::list_tables(&inner.client)
        .await?
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    let records = meta(inner, a)?.scan_all().await?;
    let live: BTreeSet<String> = a.view.servers.keys().cloned().collect();
    let r = reconcile(
        &records,
        &live,
        &reports,
        &BTreeSet::from([METADATA_TABLET_ID]),
    );
    a.view.tablets = records.iter().map(|r| (r.tablet_id, r.clone())).collect();
    a.view.unassigned = r.unassigned;
    // A stale copy is unloaded before the tablet is assigned anywhere: a new owner's
    // load would seal the logs the stale copy may still be appending to. A tablet whose
    // stale copy could not be unloaded is held back until a reconciliation succeeds.
    a.held.clear();
    let now = Instant::now();
    a.missing_since.retain(|t, _| r.missing.contains(t));
    for t in r.missing {
        let since = *a.missing_since.entry(t).or_insert(now);
        if now.duration_since(since) >= inner.cfg.scan_every {
            fence_out_missing(inner, a, t).await?;
        }
    }
    for (server, t) in r.stale {
        if let Some(info) = a.view.servers.get(&server).map(|s| s.info.clone()) {
            tracing::warn!(tablet = t, server = %server, "unloading a stale copy");
            if let Err(e) = unload(inner, a, &info, t).await {
                if matches!(e, Error::LostMastership(_)) {
                    return Err(e);
                }
                tracing::warn!(tablet = t, "unloading a stale copy failed, holding it: {e}");
                a.held.insert(t);
            }
        }
    }
    repair(inner, a, &records).await
}

/// Reassigns tablet `t`, which its recorded (live) server keeps not reporting, once that
/// server has answered a fenced unload: a load of `t` still under way there (a timed-out
/// LoadTablet, a slow replay) would otherwise start serving after the new owner's load.
/// Until the server answers, `t` is held.
async fn fence_out_missing(inner: &Inner, a: &mut Active, t: TabletId) -> Result<()> {
    let Some(rec) = a.view.tablets.get(&t).cloned() else {
        return Ok(());
    };
    let Some(info) = a.view.servers.get(&rec.server_id).map(|s| s.info.clone()) else {
        a.view.unassigned.insert(t);
        return Ok(());
    };
    match fence_out(inner, a, &info, t, rec.epoch).await {
        Ok(()) => {
            tracing::warn!(tablet = t, server = %info.id, "not served by its recorded server: reassigning");
            a.view.unassigned.insert(t);
            Ok(())
        }
        Err(e @ Error::LostMastership(_)) => Err(e),
        Err(e) => {
            tracing::warn!(tablet = t, server = %info.id, "fencing out a missing tablet failed, holding it: {e}");
            a.held.insert(t);
            Ok(())
        }
    }
}

/// Unloads copies of METADATA's tablet that live servers hold without the root-tablet
/// file naming them at that epoch; fails if one cannot be unloaded (then METADATA's
/// tablet is not assigned in this round).
async fn unload_stale_root(
    inner: &Inner,
    a: &Active,
    reports: &BTreeMap<String, Report>,
) -> Result<()> {
    for (server, rep) in reports {
        let Some(&epoch) = rep.get(&METADATA_TABLET_ID) else {
            continue;
        };
        let recorded = a
            .view
            .root
            .as_ref()
            .is_some_and(|r| r.server_id == *server && r.epoch == epoch);
        if recorded {
            continue;
        }
        let info = a.view.servers[server].info.clone();
        tracing::warn!(server = %server, epoch, "unloading a stale copy of METADATA's tablet");
        unload(inner, a, &info, METADATA_TABLET_ID).await?;
    }
    Ok(())
}

/// Marks METADATA's tablet unassigned unless its recorded server is live and (if it
/// answered) reports it at the recorded epoch.
fn check_root(a: &mut Active, reports: &BTreeMap<String, Report>) {
    let ok = a.view.root.as_ref().is_some_and(|r| {
        a.view.servers.contains_key(&r.server_id)
            && reports
                .get(&r.server_id)
                .is_none_or(|rep| rep.get(&METADATA_TABLET_ID) == Some(&r.epoch))
    });
    a.view.root_unassigned = !ok;
}

/// Repairs what a crash can leave in METADATA: rows of deleted tables, tables without
/// rows or without their last tablet, half-committed splits whose server is dead.
async fn repair(inner: &Inner, a: &mut Active, records: &[TabletRecord]) -> Result<()> {
    let mut by_table: BTreeMap<u64, Vec<TabletRecord>> = BTreeMap::new();
    for r in records {
        by_table.entry(r.table_id).or_default().push(r.clone());
    }
    for (id, rows) in &by_table {
        if a.view.table_by_id(*id).is_none() {
            tracing::warn!(
                table_id = id,
                "rows of a deleted table: finishing the delete"
            );
            tables::drop_rows(inner, a, rows).await?;
        }
    }
    let tables: Vec<tablet::meta::TableInfo> = a.view.tables.values().cloned().collect();
    for t in tables {
        let rows = by_table.remove(&t.id).unwrap_or_default();
        if rows.is_empty() {
            tracing::warn!(table = %t.name, "table without tablets: adding one");
            tables::add_tablet(inner, a, &t, Vec::new()).await?;
            continue;
        }
        let cov = check_coverage(&rows);
        if let Some(from) = cov.missing_tail_from {
            tracing::warn!(table = %t.name, "table without its last tablet: adding it");
            tables::add_tablet(inner, a, &t, from).await?;
        }
        for (left, parent) in cov.half_splits {
            roll_back_split(inner, a, left, parent).await?;
        }
        for (s, e) in cov.anomalies {
            tracing::error!(
                table = %t.name, start = ?s, end = ?e,
                "METADATA has a hole or an overlap the master does not repair by itself"
            );
        }
    }
    Ok(())
}

/// A half-committed split (left child's row written, parent's not rewritten) is rolled
/// back by deleting the left child's row, but only once the splitting server (the one
/// the left child's row names) is dead: its sequencer is then stale, so it cannot finish
/// the split behind the master's back. The parent may have been reassigned meanwhile (to
/// a live server); that does not keep the half split alive. The parent's files are
/// untouched by a split, so it keeps all its data.
async fn roll_back_split(
    inner: &Inner,
    a: &mut Active,
    left: TabletId,
    parent: TabletId,
) -> Result<()> {
    let (Some(l), true) = (
        a.view.tablets.get(&left),
        a.view.tablets.contains_key(&parent),
    ) else {
        return Ok(());
    };
    if a.view.servers.contains_key(&l.server_id) {
        tracing::info!(
            left,
            parent,
            "split in progress on a live server: left alone"
        );
        return Ok(());
    }
    let l = l.clone();
    tracing::warn!(left, parent, "rolling back a half-committed split");
    inner.guard()?;
    meta(inner, a)?.delete(&l).await?;
    a.view.tablets.remove(&left);
    a.view.unassigned.remove(&left);
    Ok(())
}
