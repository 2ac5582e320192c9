//! Table operations: create, delete, schema changes, admin splits and compactions.
//!
//! Orders chosen so that a crash at any step leaves METADATA in a state the next
//! reconciliation repairs (see `recover.rs`):
//! - create: allocate ids, write the table file, write the rows in key order (the
//!   unbounded last tablet last), then assign. A crash leaves a table with no rows or
//!   without its last tablet: the repair adds the missing last tablet.
//! - delete: remove the table file first, then unload and delete the rows. A crash leaves
//!   rows of a table with no file: the repair finishes the delete.
//! - schema change: rewrite the table file, then each served tablet is unloaded (which
//!   flushes) and loaded again with the new schema at a new epoch, on the same server.

use tablet::meta::{table_rows, TableInfo, TabletRecord};
use tablet::TabletId;

use crate::assign::{assign, assign_unassigned, meta, unload};
use crate::convert::{check_split_keys, check_table_name, modify_schema, schema_from};
use crate::error::{Error, Result};
use crate::master::{Active, Inner};
use crate::{ns, pb, tpb};

/// A new, unassigned tablet record.
fn new_record(t: &TableInfo, id: TabletId, start: Vec<u8>, end: Vec<u8>) -> TabletRecord {
    TabletRecord {
        table: t.name.clone(),
        table_id: t.id,
        tablet_id: id,
        start,
        end,
        dir: TabletRecord::dir_for(t.id, id),
        server_id: String::new(),
        server_addr: String::new(),
        epoch: 0,
    }
}

/// Creates a table (see the module essay); returns its records after assignment.
pub async fn create_table(
    inner: &Inner,
    a: &mut Active,
    req: &pb::CreateTableRequest,
) -> Result<(TableInfo, Vec<TabletRecord>)> {
    check_table_name(&req.name)?;
    let schema = schema_from(&req.families)?;
    let keys = check_split_keys(&req.split_keys)?;
    if a.view.tables.contains_key(&req.name) {
        return Err(Error::AlreadyExists(format!("table {:?}", req.name)));
    }
    meta(inner, a)?;
    inner.guard()?;
    let n = keys.len() as u64 + 2;
    let first = ns::allocate_ids(&inner.client, n, &a.seq).await?;
    let t = TableInfo {
        name: req.name.clone(),
        id: first,
        schema,
    };
    inner.guard()?;
    ns::create_table_file(&inner.client, &t, &a.seq).await?;
    a.view.tables.insert(t.name.clone(), t.clone());
    let mut bounds = vec![Vec::new()];
    bounds.extend(keys);
    bounds.push(Vec::new());
    let mut recs = Vec::new();
    for (i, w) in bounds.windows(2).enumerate() {
        let rec = new_record(&t, first + 1 + i as u64, w[0].clone(), w[1].clone());
        inner.guard()?;
        meta(inner, a)?.put(&rec).await?;
        a.view.tablets.insert(rec.tablet_id, rec.clone());
        a.view.unassigned.insert(rec.tablet_id);
        recs.push(rec.tablet_id);
    }
    tracing::info!(table = %t.name, id = t.id, tablets = recs.len(), "table created");
    assign_unassigned(inner, a).await?;
    Ok((t.clone(), a.view.tablets_of(t.id)))
}

/// Adds an unassigned tablet `[start, "")` to table `t` (repair of a half-done create).
pub async fn add_tablet(
    inner: &Inner,
    a: &mut Active,
    t: &TableInfo,
    start: Vec<u8>,
) -> Result<()> {
    inner.guard()?;
    let id = ns::allocate_ids(&inner.client, 1, &a.seq).await?;
    let rec = new_record(t, id, start, Vec::new());
    meta(inner, a)?.put(&rec).await?;
    a.view.tablets.insert(id, rec);
    a.view.unassigned.insert(id);
    Ok(())
}

/// Deletes table `name`.
pub async fn delete_table(inner: &Inner, a: &mut Active, name: &str) -> Result<()> {
    let t = a
        .view
        .tables
        .get(name)
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("table {name:?}")))?;
    inner.guard()?;
    match inner
        .client
        .delete(&ns::table_path(name), Some(&a.seq))
        .await
    {
        Ok(()) | Err(lockservice::Error::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    a.view.tables.remove(name);
    let rows = a.view.tablets_of(t.id);
    drop_rows(inner, a, &rows).await?;
    tracing::info!(table = %name, "table deleted");
    Ok(())
}

/// Unloads (where served) and deletes the METADATA rows `rows`.
pub async fn drop_rows(inner: &Inner, a: &mut Active, rows: &[TabletRecord]) -> Result<()> {
    for r in rows {
        if let Some(s) = a.view.servers.get(&r.server_id).cloned() {
            match unload(inner, a, &s.info, r.tablet_id).await {
                Err(e @ Error::LostMastership(_)) => return Err(e),
                Err(e) => tracing::warn!(tablet = r.tablet_id, "unload of a deleted tablet: {e}"),
                Ok(()) => {}
            }
        }
        inner.guard()?;
        meta(inner, a)?.delete(r).await?;
        a.view.tablets.remove(&r.tablet_id);
        a.view.unassigned.remove(&r.tablet_id);
    }
    Ok(())
}

/// Applies family modifications and reloads the table's served tablets with the new
/// schema.
pub async fn modify_families(
    inner: &Inner,
    a: &mut Active,
    req: &pb::ModifyColumnFamiliesRequest,
) -> Result<TableInfo> {
    let mut t = a
        .view
        .tables
        .get(&req.table)
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("table {:?}", req.table)))?;
    t.schema = modify_schema(&t.schema, &req.modifications)?;
    inner.guard()?;
    ns::write_table_file(&inner.client, &t, &a.seq).await?;
    a.view.tables.insert(t.name.clone(), t.clone());
    for r in a.view.tablets_of(t.id) {
        if a.view.unassigned.contains(&r.tablet_id) {
            continue; // gets the new schema when assigned
        }
        let Some(s) = a.view.servers.get(&r.server_id).cloned() else {
            continue;
        };
        unload(inner, a, &s.info, r.tablet_id).await?;
        a.view.unassigned.insert(r.tablet_id);
        if let Err(e) = assign(inner, a, r.tablet_id, &s.info.id).await {
            if matches!(e, Error::LostMastership(_)) {
                return Err(e);
            }
            tracing::warn!(
                tablet = r.tablet_id,
                "reload with the new schema failed (retried): {e}"
            );
        }
    }
    Ok(t)
}

/// Splits one tablet through its server; returns the children's records.
pub async fn split(
    inner: &Inner,
    a: &mut Active,
    req: &pb::SplitTabletRequest,
) -> Result<(TabletRecord, TabletRecord)> {
    let (rec, split_row) = if req.table.is_empty() {
        let r = a
            .view
            .tablets
            .get(&req.tablet_id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("tablet {}", req.tablet_id)))?;
        (r, req.split_row.clone())
    } else {
        let t = a
            .view
            .tables
            .get(&req.table)
            .ok_or_else(|| Error::NotFound(format!("table {:?}", req.table)))?;
        let r = a
            .view
            .tablets_of(t.id)
            .into_iter()
            .find(|r| r.range().contains(&req.row))
            .ok_or_else(|| {
                Error::Unavailable(format!("no tablet of {:?} holds the row", req.table))
            })?;
        if r.start == req.row {
            return Err(Error::InvalidArgument(
                "the row is already a tablet boundary".into(),
            ));
        }
        (r, Some(req.row.clone()))
    };
    if a.view.unassigned.contains(&rec.tablet_id) || !a.view.servers.contains_key(&rec.server_id) {
        return Err(Error::Unavailable(format!(
            "tablet {} is not served now",
            rec.tablet_id
        )));
    }
    inner.guard()?;
    let left_id = ns::allocate_ids(&inner.client, 2, &a.seq).await?;
    let right_id = left_id + 1;
    let sreq = tpb::SplitTabletRequest {
        tablet_id: rec.tablet_id,
        split_row,
        left_id,
        right_id,
        master: Some(a.fence.clone()),
    };
    inner.guard()?;
    inner.conns.split(&rec.server_addr, sreq).await?;
    let fresh = meta(inner, a)?.scan(table_rows(rec.table_id)).await?;
    a.view.tablets.retain(|_, r| r.table_id != rec.table_id);
    for r in fresh {
        a.view.tablets.insert(r.tablet_id, r);
    }
    let get = |id| {
        a.view.tablets.get(&id).cloned().ok_or_else(|| {
            Error::Unavailable(format!("split done but child {id} not in METADATA yet"))
        })
    };
    Ok((get(left_id)?, get(right_id)?))
}

/// Asks every served tablet of the table to compact; returns how many did.
pub async fn compact(inner: &Inner, a: &Active, table: &str, major: bool) -> Result<u64> {
    let t = a
        .view
        .tables
        .get(table)
        .ok_or_else(|| Error::NotFound(format!("table {table:?}")))?;
    let mut n = 0;
    for r in a.view.tablets_of(t.id) {
        if !a.view.servers.contains_key(&r.server_id) {
            continue;
        }
        inner.guard()?;
        let req = tpb::CompactTabletRequest {
            tablet_id: r.tablet_id,
            major,
        };
        inner.conns.compact(&r.server_addr, req).await?;
        n += 1;
    }
    Ok(n)
}
