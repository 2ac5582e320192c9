//! Merging and major compaction, and the size-tiered policy that picks what to merge.
//!
//! The policy is a pure function over SSTable sizes, so it can be tested and simulated
//! without files. A compaction merges its inputs, passes every row through
//! [`RowVisibility`] (with no snapshot limit: a reader that started earlier holds its own
//! `Arc` of the old SSTables), drops hidden entries and rows outside the tablet's range
//! (files shared after a split), and keeps deletion markers unless its inputs are every
//! SSTable of the locality group (then nothing older is left for a marker to hide: that is
//! a major compaction). Memtables only ever hold newer sequence numbers than SSTables,
//! because freezing takes the write gate. Inputs are read and the output written with no
//! lock held; one manifest edit then swaps them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use sstable::merge::MergeIter;
use sstable::KvIter;

use crate::error::Result;
use crate::flush::SstWriter;
use crate::key;
use crate::tablet::{Inner, Sst, State};
use crate::visibility::{RowVisibility, Verdict};

/// Size-tiered compaction (as Cassandra's STCS and Bigtable's merging compactions): SSTables
/// of similar size are merged once enough of them pile up.
#[derive(Clone, Debug, PartialEq)]
pub struct SizeTiered {
    /// Merge when a tier holds at least this many SSTables.
    pub min_merge: usize,
    /// Merge at most this many at once.
    pub max_merge: usize,
    /// An SSTable joins a tier when its size is within `[avg * low, avg * high]`.
    pub bucket_low: f64,
    /// See `bucket_low`.
    pub bucket_high: f64,
    /// SSTables smaller than this all share the smallest tier.
    pub min_size: u64,
}

impl Default for SizeTiered {
    fn default() -> Self {
        SizeTiered {
            min_merge: 4,
            max_merge: 32,
            bucket_low: 0.5,
            bucket_high: 1.5,
            min_size: 4 << 20,
        }
    }
}

impl SizeTiered {
    /// Picks the indices (into `sizes`) of SSTables to merge, or `None`. Prefers the tier
    /// of the smallest files (cheapest to merge, most files removed per byte).
    pub fn pick(&self, sizes: &[u64]) -> Option<Vec<usize>> {
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        order.sort_by_key(|&i| sizes[i]);
        let mut tiers: Vec<(f64, Vec<usize>)> = Vec::new();
        for i in order {
            let s = sizes[i];
            let fits = |avg: f64| {
                (s < self.min_size && avg < self.min_size as f64)
                    || (s as f64 >= avg * self.bucket_low && s as f64 <= avg * self.bucket_high)
            };
            match tiers.iter_mut().find(|(avg, _)| fits(*avg)) {
                Some((avg, members)) => {
                    *avg = (*avg * members.len() as f64 + s as f64) / (members.len() + 1) as f64;
                    members.push(i);
                }
                None => tiers.push((s as f64, vec![i])),
            }
        }
        tiers
            .into_iter()
            .filter(|(_, m)| m.len() >= self.min_merge.max(2))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, mut m)| {
                m.truncate(self.max_merge);
                m.sort_unstable();
                m
            })
    }
}

impl Inner {
    /// Runs one merging compaction if the policy picks one; true if it did.
    pub(crate) fn maybe_merging_compaction(&self) -> Result<bool> {
        let _c = self.compaction_lock.lock();
        self.check_failed()?;
        let state = Arc::clone(&self.state.read());
        for (group, ssts) in &state.groups {
            let sizes: Vec<u64> = ssts.iter().map(|s| s.meta.size).collect();
            if let Some(picked) = self.opts.compaction.pick(&sizes) {
                let inputs: Vec<Arc<Sst>> = picked.iter().map(|&i| Arc::clone(&ssts[i])).collect();
                let bottom = inputs.len() == ssts.len();
                self.compact(&state, group, inputs, bottom)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Rewrites every locality group into one SSTable, dropping markers.
    pub(crate) fn major_compaction(&self) -> Result<()> {
        let _c = self.compaction_lock.lock();
        self.check_failed()?;
        let state = Arc::clone(&self.state.read());
        for (group, ssts) in &state.groups {
            if !ssts.is_empty() {
                self.compact(&state, group, ssts.clone(), true)?;
            }
        }
        Ok(())
    }

    fn compact(
        &self,
        state: &State,
        group: &str,
        inputs: Vec<Arc<Sst>>,
        bottom: bool,
    ) -> Result<()> {
        let result = self.write_compaction(state, group, &inputs, bottom);
        let output = match result {
            Ok(o) => o,
            Err(e) => return Err(self.fail(format!("compaction of group {group} failed: {e}"))),
        };
        self.install_compaction(group, &inputs, output)?;
        let read: u64 = inputs.iter().map(|s| s.meta.size).sum();
        self.counters
            .compaction_read
            .fetch_add(read, Ordering::Relaxed);
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        if self.opts.delete_obsolete_files {
            let own = format!("{}/sst/", self.dir);
            for s in inputs.iter().filter(|s| s.meta.path.starts_with(&own)) {
                // Readers holding the old state keep their open handles.
                if let Err(e) = self.fs.remove_file(&self.abs(&s.meta.path)) {
                    tracing::warn!(path = s.meta.path, "could not remove obsolete SSTable: {e}");
                }
            }
        }
        Ok(())
    }

    /// Merges `inputs` into one new SSTable (none if every entry was dropped).
    fn write_compaction(
        &self,
        state: &State,
        group: &str,
        inputs: &[Arc<Sst>],
        bottom: bool,
    ) -> Result<Option<Arc<Sst>>> {
        let sources: Vec<Box<dyn KvIter + Send>> = inputs
            .iter()
            .map(|s| Box::new(s.table.iter()) as Box<dyn KvIter + Send>)
            .collect();
        let mut it = MergeIter::new(sources);
        it.seek_to_first()?;
        let mut writer: Option<SstWriter> = None;
        let now = self.now();
        let what = format!("compaction of tablet {} group {group}", self.id);
        let bad =
            |w: String| -> crate::error::Error { sstable::Error::corruption(&what, 0, w).into() };
        while it.valid() {
            let plen = key::row_prefix_len(it.key()).ok_or_else(|| bad("malformed key".into()))?;
            let prefix = it.key()[..plen].to_vec();
            let mut vis = RowVisibility::new(&state.schema, u64::MAX, now);
            let mut in_range = None;
            while it.valid() && it.key().starts_with(&prefix) {
                let k = key::parse(it.key()).ok_or_else(|| bad("malformed key".into()))?;
                let keep_row = *in_range.get_or_insert_with(|| self.range.contains(&k.row));
                let verdict = vis.step(&k, it.value()).map_err(&bad)?;
                let keep = keep_row
                    && match verdict {
                        Verdict::Visible => true,
                        Verdict::Marker => !bottom,
                        Verdict::Hidden => false,
                    };
                if keep {
                    if writer.is_none() {
                        writer = Some(SstWriter::create(self, self.next_file_number())?);
                    }
                    writer
                        .as_mut()
                        .expect("created")
                        .add(it.key(), it.value())?;
                }
                it.next()?;
            }
        }
        let Some(w) = writer else { return Ok(None) };
        let in_memory = state.schema.groups.get(group).is_some_and(|g| g.in_memory);
        let sst = w.finish(self, in_memory)?;
        self.counters
            .compaction_written
            .fetch_add(sst.meta.size, Ordering::Relaxed);
        Ok(Some(sst))
    }

    /// One manifest edit replacing `inputs` with `output`, then the state swap.
    fn install_compaction(
        &self,
        group: &str,
        inputs: &[Arc<Sst>],
        output: Option<Arc<Sst>>,
    ) -> Result<()> {
        let is_input = |path: &str| inputs.iter().any(|s| s.meta.path == path);
        let mut s = self.structure.lock();
        let mut m = s.manifest.clone();
        let list = m.groups.entry(group.to_string()).or_default();
        let pos = list.iter().position(|x| is_input(&x.path)).unwrap_or(0);
        list.retain(|x| !is_input(&x.path));
        if let Some(o) = &output {
            list.insert(pos.min(list.len()), o.meta.clone());
        }
        if let Err(e) = s.store.write(&m) {
            return Err(self.fail(format!("manifest write failed: {e}")));
        }
        s.manifest = m;
        let mut st = self.state.write();
        let old = Arc::clone(&st);
        let mut groups = old.groups.clone();
        let list = groups.entry(group.to_string()).or_default();
        let pos = list
            .iter()
            .position(|x| is_input(&x.meta.path))
            .unwrap_or(0);
        list.retain(|x| !is_input(&x.meta.path));
        if let Some(o) = output {
            list.insert(pos.min(list.len()), o);
        }
        *st = Arc::new(State {
            active: Arc::clone(&old.active),
            frozen: old.frozen.clone(),
            groups,
            schema: Arc::clone(&old.schema),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_a_tier_of_similar_sizes() {
        let p = SizeTiered {
            min_merge: 4,
            min_size: 10,
            ..Default::default()
        };
        assert_eq!(p.pick(&[100, 100, 100]), None);
        assert_eq!(p.pick(&[100, 1000, 110, 90, 105]), Some(vec![0, 2, 3, 4]));
        // Small files share one tier whatever their ratio.
        assert_eq!(p.pick(&[1, 9, 3, 5, 500]), Some(vec![0, 1, 2, 3]));
        // The smallest qualifying tier wins.
        let sizes = [1000, 1000, 1000, 1000, 100, 100, 100, 100];
        assert_eq!(p.pick(&sizes), Some(vec![4, 5, 6, 7]));
    }

    #[test]
    fn respects_max_merge() {
        let p = SizeTiered {
            min_merge: 2,
            max_merge: 3,
            ..Default::default()
        };
        assert_eq!(p.pick(&[5; 10]).map(|v| v.len()), Some(3));
    }
}
