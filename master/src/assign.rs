//! Assignment, unloading and balancing: the commands the master sends tablet servers.
//!
//! Assigning tablet `T` to server `S` is two steps (issue4-shared.md): write `T`'s record
//! with `S` and epoch `e + 1` into METADATA (fenced), then `LoadTablet{T, e + 1}` on `S`.
//! METADATA is written first, so every load's epoch is at most the recorded one and the
//! next assignment's epoch is above every earlier load (DESIGN.md rule 7). A load that
//! fails leaves the tablet unassigned and held: it may still complete (a timeout, a lost
//! reply), so it is retried (at a higher epoch, on the then least-loaded server) only
//! after the next reconciliation has asked the server what it serves.
//!
//! A tablet whose range overlaps another record of its table (the two sides of a
//! half-committed split) is never assigned: the reconciliation repairs the overlap first.
//! Right before the epoch bump the tablet's METADATA row is read again
//! ([`ensure_record_unchanged`]): a plan made from a view older than a split is dropped.
//! Crash points (`tablet::crashpoint`): `move-after-unload`, `assign-after-epoch-bump`,
//! `assign-after-load`.

use std::path::Path;

use tablet::crashpoint;
use tablet::meta::{metadata_schema, ServerInfo, TabletRecord};
use tablet::TabletId;

use crate::error::{Error, Result};
use crate::master::{Active, Inner};
use crate::metadata::{descriptor, root_record, MetaAccess};
use crate::policy::{plan_assignments, plan_moves};
use crate::status::EventKind;
use crate::{ns, tpb};

/// METADATA access through its current server.
pub fn meta<'a>(inner: &'a Inner, a: &'a Active) -> Result<MetaAccess<'a>> {
    match &a.view.root {
        Some(r) if !a.view.root_unassigned => Ok(MetaAccess {
            conns: &inner.conns,
            addr: &r.server_addr,
            fence: &a.fence,
        }),
        _ => Err(Error::Unavailable(
            "METADATA's tablet is not served yet".into(),
        )),
    }
}

/// True when the tablet directory `dir` (relative to the data root) holds a manifest,
/// i.e. the tablet was loaded before and must not be created empty.
pub fn has_manifest(root: &Path, dir: &str) -> bool {
    std::fs::read_dir(root.join(dir))
        .map(|it| {
            it.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("MANIFEST-"))
        })
        .unwrap_or(false)
}

/// Serves METADATA's tablet on the least-loaded live server at a new epoch.
pub async fn assign_root(inner: &Inner, a: &mut Active) -> Result<()> {
    let load = a.view.load();
    let Some((_, server)) = plan_assignments(&[0], &load).pop() else {
        return Err(Error::Unavailable(
            "no tablet server to serve METADATA".into(),
        ));
    };
    let server = a.view.servers[&server].clone();
    // The root-tablet file is the authority on METADATA's epochs: read it again, so a
    // view that missed it (a failed read at take-over) cannot reuse an old epoch.
    inner.guard()?;
    let recorded = ns::read_root(&inner.client).await?;
    let epoch = recorded
        .iter()
        .chain(a.view.root.iter())
        .map(|r| r.epoch)
        .max()
        .unwrap_or(0)
        + 1;
    let rec = root_record(&server, epoch);
    inner.guard()?;
    ns::write_root(&inner.client, &rec, &a.seq).await?;
    a.view.root = Some(rec.clone());
    a.view.root_unassigned = true;
    let req = tpb::LoadTabletRequest {
        tablet: Some(descriptor(&rec, &metadata_schema())),
        epoch,
        create: !has_manifest(&inner.cfg.data_root, &rec.dir),
        master: Some(a.fence.clone()),
        server_id: server.info.id.clone(),
    };
    inner.guard()?;
    inner.conns.load(&server.info.addr, req).await?;
    a.view.root_unassigned = false;
    tracing::info!(server = %server.info.id, epoch, "METADATA's tablet assigned");
    let what = format!("METADATA's tablet to {} at epoch {epoch}", server.info.id);
    inner.ops.event(EventKind::Assignment, 1, what);
    Ok(())
}

/// Assigns user tablet `t` to `server` (METADATA first, then the load).
pub async fn assign(inner: &Inner, a: &mut Active, t: TabletId, server: &str) -> Result<()> {
    let rec = a
        .view
        .tablets
        .get(&t)
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("tablet {t}")))?;
    let table = a
        .view
        .table_by_id(rec.table_id)
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("table {} of tablet {t}", rec.table_id)))?;
    let s = a
        .view
        .servers
        .get(server)
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("tablet server {server}")))?;
    if let Some(other) = overlapping(a, &rec) {
        // A half-committed split: its left child and its parent overlap. Serving both
        // would let two tablets take writes for the same rows; the reconciliation rolls
        // the split back first (recover.rs), then the survivor is assigned.
        a.last_scan = None;
        return Err(Error::Unavailable(format!(
            "tablet {t} overlaps tablet {other} in METADATA (a half-committed split): \
             not assigned before it is repaired"
        )));
    }
    ensure_record_unchanged(inner, a, &rec).await?;
    let new = TabletRecord {
        server_id: s.info.id.clone(),
        server_addr: s.info.addr.clone(),
        epoch: rec.epoch + 1,
        ..rec
    };
    inner.guard()?;
    meta(inner, a)?.put(&new).await?;
    a.view.tablets.insert(t, new.clone());
    a.view.unassigned.insert(t);
    crashpoint::hit("assign-after-epoch-bump");
    let req = tpb::LoadTabletRequest {
        tablet: Some(descriptor(&new, &table.schema)),
        epoch: new.epoch,
        create: !has_manifest(&inner.cfg.data_root, &new.dir),
        master: Some(a.fence.clone()),
        server_id: s.info.id.clone(),
    };
    inner.guard()?;
    if let Err(e) = inner.conns.load(&s.info.addr, req).await {
        // The load may still complete (a timeout, a lost reply): not retried elsewhere
        // before the next reconciliation asks the server what it serves.
        a.held.insert(t);
        return Err(e);
    }
    crashpoint::hit("assign-after-load");
    a.view.unassigned.remove(&t);
    tracing::info!(tablet = t, server = %s.info.id, epoch = new.epoch, "tablet assigned");
    let what = format!("tablet {t} to {} at epoch {}", s.info.id, new.epoch);
    inner.ops.event(EventKind::Assignment, 1, what);
    Ok(())
}

/// Another tablet of `rec`'s table whose row range overlaps `rec`'s, in the view.
fn overlapping(a: &Active, rec: &TabletRecord) -> Option<TabletId> {
    let below = |row: &[u8], end: &[u8]| end.is_empty() || row < end;
    a.view
        .tablets
        .values()
        .filter(|o| o.table_id == rec.table_id && o.tablet_id != rec.tablet_id)
        .find(|o| below(&o.start, &rec.end) && below(&rec.start, &o.end))
        .map(|o| o.tablet_id)
}

/// Re-reads `rec`'s METADATA row right before the epoch bump. The view may be stale: a
/// tablet server may have split the tablet since the last scan, and then its row (the
/// same key) describes the right child. Writing the planned record would resurrect the
/// parent over its children, so a changed or vanished record is not written: the view is
/// corrected from METADATA and the tablet replanned by the next tick.
///
/// No split can start between this read and the write: a moved tablet was unloaded first,
/// a dead server's sequencer no longer passes METADATA's fence, and a tablet its live
/// server stopped reporting had finished its split's METADATA writes before that.
pub async fn ensure_record_unchanged(
    inner: &Inner,
    a: &mut Active,
    rec: &TabletRecord,
) -> Result<()> {
    inner.guard()?;
    let key = rec.key();
    let mut end = key.clone();
    end.push(0);
    let now = meta(inner, a)?
        .scan(tablet::RowRange { start: key, end })
        .await?;
    let t = rec.tablet_id;
    match now.into_iter().next() {
        Some(cur) if cur == *rec => Ok(()),
        cur => {
            tracing::warn!(
                tablet = t,
                now = ?cur.as_ref().map(|c| c.tablet_id),
                "METADATA changed since the master's view: replanning"
            );
            a.view.tablets.remove(&t);
            a.view.unassigned.remove(&t);
            if let Some(c) = cur {
                a.view.tablets.insert(c.tablet_id, c);
            }
            // Force a full reconciliation at the next tick.
            a.last_scan = None;
            Err(Error::Unavailable(format!(
                "tablet {t}: METADATA record changed since it was planned"
            )))
        }
    }
}

/// Unloads tablet `t` from `server` (it flushes first). The request names the server's
/// incarnation: a restarted process on the same address refuses it (`wrong-server`).
pub async fn unload(inner: &Inner, a: &Active, server: &ServerInfo, t: TabletId) -> Result<()> {
    unload_fenced(inner, a, server, t, 0).await
}

/// Makes sure `server` does not and never will serve tablet `t` at `epoch` or below:
/// unloads it if loaded and fences out any load at such an epoch still under way there.
/// "Not loaded here" counts as success: after the fence that answer is definitive.
pub async fn fence_out(
    inner: &Inner,
    a: &Active,
    server: &ServerInfo,
    t: TabletId,
    epoch: u64,
) -> Result<()> {
    match unload_fenced(inner, a, server, t, epoch.max(1)).await {
        Err(Error::NotServing(_)) => Ok(()),
        r => r,
    }
}

async fn unload_fenced(
    inner: &Inner,
    a: &Active,
    server: &ServerInfo,
    t: TabletId,
    fence_epoch: u64,
) -> Result<()> {
    inner.guard()?;
    let req = tpb::UnloadTabletRequest {
        tablet_id: t,
        master: Some(a.fence.clone()),
        server_id: server.id.clone(),
        fence_epoch,
    };
    inner.conns.unload(&server.addr, req).await
}

/// Assigns every unassigned tablet (METADATA's first); failures are logged and retried
/// on the next tick. `Err` only when mastership is lost.
pub async fn assign_unassigned(inner: &Inner, a: &mut Active) -> Result<()> {
    if a.view.servers.is_empty() {
        return Ok(());
    }
    if a.view.root_unassigned {
        match assign_root(inner, a).await {
            Err(e @ Error::LostMastership(_)) => return Err(e),
            Err(e) => {
                tracing::warn!("assigning METADATA: {e}");
                return Ok(());
            }
            Ok(()) => {}
        }
    }
    let todo: Vec<TabletId> = a
        .view
        .unassigned
        .iter()
        .filter(|t| !a.held.contains(t))
        .copied()
        .collect();
    for (t, server) in plan_assignments(&todo, &a.view.load()) {
        match assign(inner, a, t, &server).await {
            Err(e @ Error::LostMastership(_)) => return Err(e),
            Err(e) => tracing::warn!(tablet = t, server = %server, "assignment failed: {e}"),
            Ok(()) => {}
        }
    }
    Ok(())
}

/// One throttled balancing round: moves (unload with flush, then assign) planned by
/// [`plan_moves`]; skipped while anything is unassigned.
pub async fn balance(inner: &Inner, a: &mut Active) -> Result<()> {
    if a.view.root_unassigned || !a.view.unassigned.is_empty() {
        return Ok(());
    }
    let mut by_server: std::collections::BTreeMap<String, Vec<TabletId>> = a
        .view
        .servers
        .keys()
        .map(|s| (s.clone(), Vec::new()))
        .collect();
    for r in a.view.tablets.values() {
        if let Some(v) = by_server.get_mut(&r.server_id) {
            v.push(r.tablet_id);
        }
    }
    for m in plan_moves(&by_server, inner.cfg.max_moves) {
        let from = a.view.servers[&m.from].info.clone();
        tracing::info!(tablet = m.tablet, from = %m.from, to = %m.to, "balancing move");
        match unload(inner, a, &from, m.tablet).await {
            Err(e @ Error::LostMastership(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(tablet = m.tablet, "move: unload failed: {e}");
                continue;
            }
            Ok(()) => {}
        }
        crashpoint::hit("move-after-unload");
        a.view.unassigned.insert(m.tablet);
        match assign(inner, a, m.tablet, &m.to).await {
            Err(e @ Error::LostMastership(_)) => return Err(e),
            Err(e) => tracing::warn!(tablet = m.tablet, "move: load failed (retried): {e}"),
            Ok(()) => {
                let what = format!("tablet {} from {} to {}", m.tablet, m.from, m.to);
                inner.ops.event(EventKind::Move, 1, what);
            }
        }
    }
    Ok(())
}
