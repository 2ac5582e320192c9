//! Split primitives: pick a middle row, and open two children over the parent's files.
//!
//! A split copies no data (Bigtable section 5.3): the parent stops taking writes and
//! flushes, then each child gets a manifest that lists the parent's SSTables clipped to the
//! child's row range. Children start at the parent's flushed sequence number, so their
//! sequence numbers stay above every entry they share. Rows outside a child's range are
//! never read (reads are bounded by the tablet's range) and are dropped when the child
//! compacts those files. The shared files belong to no child: only the master's garbage
//! collector removes them, once no manifest references them.

use std::sync::Arc;

use crate::error::{invalid, Result};
use crate::key;
use crate::manifest::{ManifestState, ManifestStore, RowRange};
use crate::tablet::Tablet;
use crate::types::TabletId;

/// Where a child tablet lives.
#[derive(Clone, Debug)]
pub struct ChildSpec {
    /// The child's tablet id.
    pub id: TabletId,
    /// Its directory relative to the data root.
    pub dir: String,
}

fn intersect(a: &RowRange, b: &RowRange) -> RowRange {
    let start = a.start.clone().max(b.start.clone());
    let end = match (a.end.is_empty(), b.end.is_empty()) {
        (true, _) => b.end.clone(),
        (false, true) => a.end.clone(),
        (false, false) => a.end.clone().min(b.end.clone()),
    };
    RowRange { start, end }
}

impl Tablet {
    /// A row near the middle of the tablet's SSTable data, strictly inside its range; `None`
    /// when the data has fewer than two distinct rows to split between.
    pub fn mid_row(&self) -> Option<Vec<u8>> {
        let state = Arc::clone(&self.inner.state.read());
        let mut rows: Vec<Vec<u8>> = state
            .groups
            .values()
            .flatten()
            .flat_map(|s| s.table.block_last_keys())
            .filter_map(|k| key::parse(&k).map(|p| p.row))
            .filter(|r| {
                self.inner.range.contains(r) && r.as_slice() > self.inner.range.start.as_slice()
            })
            .collect();
        rows.sort();
        rows.dedup();
        if rows.is_empty() {
            return None;
        }
        Some(rows[rows.len() / 2].clone())
    }

    /// Up to `max` row keys spread over the tablet's SSTable data, each with the approximate
    /// number of bytes before it (Bigtable's SampleRowKeys), for clients planning parallel
    /// scans. The last sample is the tablet's end.
    pub fn sample_row_keys(&self, max: usize) -> Vec<(Vec<u8>, u64)> {
        let state = Arc::clone(&self.inner.state.read());
        let total: u64 = state.groups.values().flatten().map(|s| s.meta.size).sum();
        let mut rows: Vec<Vec<u8>> = state
            .groups
            .values()
            .flatten()
            .flat_map(|s| s.table.block_last_keys())
            .filter_map(|k| key::parse(&k).map(|p| p.row))
            .filter(|r| self.inner.range.contains(r))
            .collect();
        rows.sort();
        rows.dedup();
        let step = rows.len().div_ceil(max.max(1)).max(1);
        let n = rows.len().max(1) as u64;
        let mut out: Vec<(Vec<u8>, u64)> = rows
            .into_iter()
            .enumerate()
            .filter(|(i, _)| (i + 1) % step == 0)
            .map(|(i, r)| (r, total * (i as u64 + 1) / n))
            .collect();
        out.push((self.inner.range.end.clone(), total));
        out
    }

    /// Splits at `mid`: stops writes, flushes, and writes the children's manifests
    /// (`left` gets `[start, mid)`, `right` gets `[mid, end)`). The caller then unloads
    /// this tablet and opens the children.
    pub fn split(&self, mid: &[u8], left: &ChildSpec, right: &ChildSpec) -> Result<()> {
        let range = &self.inner.range;
        if !range.contains(mid) || mid <= range.start.as_slice() {
            return Err(invalid(format!(
                "split row {:?} is not strictly inside the tablet's range",
                String::from_utf8_lossy(mid)
            )));
        }
        self.close_for_writes();
        self.inner.force_flush()?;
        let parent = self.inner.structure.lock().manifest.clone();
        let halves = [
            (left, RowRange::new(&range.start, mid)),
            (right, RowRange::new(mid, &range.end)),
        ];
        for (child, child_range) in halves {
            let mut m = ManifestState::new(child.id, child_range.clone(), parent.schema.clone());
            m.flushed_seq = parent.flushed_seq;
            for (g, ssts) in &parent.groups {
                let clipped = ssts
                    .iter()
                    .map(|s| {
                        let mut s = s.clone();
                        let clip = s.clip.as_ref().unwrap_or(&child_range);
                        s.clip = Some(intersect(clip, &child_range));
                        s
                    })
                    .collect();
                m.groups.insert(g.clone(), clipped);
            }
            let dir = self.inner.abs(&child.dir);
            let mut store = ManifestStore::open(Arc::clone(&self.inner.fs), &dir)?;
            if store.load()?.is_some() {
                return Err(invalid(format!(
                    "child tablet directory {} already holds a tablet",
                    child.dir
                )));
            }
            store.write(&m)?;
        }
        Ok(())
    }
}
