//! Merging and major compaction, and the policies that pick what to merge.
//!
//! Policies ([`SizeTiered`], [`Leveled`], selected by [`Policy`]) are pure functions of the
//! SSTables' metadata ([`FileInfo`]: level, size, row bounds), so they are tested and
//! simulated ([`sim`]) without files. A compaction merges its inputs, passes every row
//! through [`RowVisibility`] (with no snapshot limit: a reader that started earlier holds
//! its own `Arc` of the old SSTables), drops hidden entries and rows outside the tablet's
//! range (files shared after a split), and keeps deletion markers unless the policy says
//! no older data overlaps the inputs (`Pick::drop_markers`: for size-tiered, when the
//! inputs are every SSTable of the locality group; for leveled, when nothing below the
//! output level overlaps them). Memtables only ever hold newer sequence numbers than
//! SSTables, because freezing takes the write gate. Inputs are read and the outputs written
//! with no lock held; one manifest edit then swaps them. Leveled outputs are cut at row
//! boundaries once a file reaches the target size, so the files of a level >= 1 have
//! disjoint row ranges; a trivial move only changes a file's level in the manifest.
//!
//! Each group's SSTable list is kept in one order in the manifest and in memory: level 0
//! newest first, then each level >= 1 ascending, its files by smallest key (the read path
//! concatenates each such level instead of merging its files).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sstable::merge::MergeIter;
use sstable::KvIter;

use crate::error::Result;
use crate::flush::SstWriter;
use crate::key;
use crate::manifest::SstMeta;
use crate::tablet::{Inner, Sst, State};
use crate::visibility::{RowVisibility, Verdict};

/// Merging and major compactions running in this process now (all tablets).
static RUNNING: AtomicU64 = AtomicU64::new(0);

/// How many merging or major compactions are running in this process now.
pub fn running() -> u64 {
    RUNNING.load(Ordering::Relaxed)
}

/// Counts one running compaction for as long as it lives.
struct RunningGuard;

impl RunningGuard {
    fn start() -> RunningGuard {
        RUNNING.fetch_add(1, Ordering::Relaxed);
        RunningGuard
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::Relaxed);
    }
}

mod leveled;
mod policy;
pub mod sim;
mod size_tiered;

pub use leveled::Leveled;
pub use policy::{FileInfo, Pick, Policy};
pub use size_tiered::SizeTiered;

/// The policy's view of one SSTable: its level, size and the encoded row prefixes of its
/// smallest and largest keys (they order like the rows).
pub(crate) fn file_info(meta: &SstMeta) -> FileInfo {
    let row = |k: &[u8]| k[..key::row_prefix_len(k).unwrap_or(k.len())].to_vec();
    FileInfo {
        level: meta.level,
        size: meta.size,
        smallest: row(&meta.smallest),
        largest: row(&meta.largest),
    }
}

/// The order of a group's list: level 0 first (stable, so newest first stays), then
/// levels >= 1 by level and smallest key.
fn list_order(meta: &SstMeta) -> (u32, &[u8]) {
    let k: &[u8] = if meta.level == 0 { &[] } else { &meta.smallest };
    (meta.level, k)
}

impl Inner {
    /// Runs one merging compaction if the policy picks one; true if it did.
    pub(crate) fn maybe_merging_compaction(&self) -> Result<bool> {
        let _c = self.compaction_lock.lock();
        self.check_failed()?;
        let state = Arc::clone(&self.state.read());
        let policy = self.opts.policy();
        for (group, ssts) in &state.groups {
            let files: Vec<FileInfo> = ssts.iter().map(|s| file_info(&s.meta)).collect();
            if let Some(pick) = policy.pick(&files) {
                let inputs: Vec<Arc<Sst>> =
                    pick.inputs.iter().map(|&i| Arc::clone(&ssts[i])).collect();
                self.compact(&state, group, inputs, &pick)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Rewrites every locality group into one run, dropping markers.
    pub(crate) fn major_compaction(&self) -> Result<()> {
        let _c = self.compaction_lock.lock();
        self.check_failed()?;
        let state = Arc::clone(&self.state.read());
        let policy = self.opts.policy();
        for (group, ssts) in &state.groups {
            if ssts.is_empty() {
                continue;
            }
            let files: Vec<FileInfo> = ssts.iter().map(|s| file_info(&s.meta)).collect();
            let pick = Pick {
                inputs: (0..ssts.len()).collect(),
                output_level: policy.major_level(&files),
                trivial_move: false,
                drop_markers: true,
            };
            self.compact(&state, group, ssts.clone(), &pick)?;
        }
        Ok(())
    }

    fn compact(
        &self,
        state: &State,
        group: &str,
        inputs: Vec<Arc<Sst>>,
        pick: &Pick,
    ) -> Result<()> {
        if pick.trivial_move {
            let moved = inputs
                .iter()
                .map(|s| {
                    let mut meta = s.meta.clone();
                    meta.level = pick.output_level;
                    Arc::new(Sst {
                        meta,
                        table: Arc::clone(&s.table),
                    })
                })
                .collect();
            self.install_compaction(group, &inputs, moved)?;
            self.counters.trivial_moves.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let running = RunningGuard::start();
        let outputs = match self.write_compaction(state, group, &inputs, pick) {
            Ok(o) => o,
            Err(e) => return Err(self.fail(format!("compaction of group {group} failed: {e}"))),
        };
        self.install_compaction(group, &inputs, outputs)?;
        let read: u64 = inputs.iter().map(|s| s.meta.size).sum();
        self.counters
            .compaction_read
            .fetch_add(read, Ordering::Relaxed);
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        drop(running);
        metrics::counter!("quarry_compactions_total").increment(1);
        metrics::counter!("quarry_compaction_read_bytes_total").increment(read);
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

    /// Merges `inputs` into new SSTables at the pick's level, cut at row boundaries once
    /// one reaches the policy's target size (none if every entry was dropped).
    fn write_compaction(
        &self,
        state: &State,
        group: &str,
        inputs: &[Arc<Sst>],
        pick: &Pick,
    ) -> Result<Vec<Arc<Sst>>> {
        let sources: Vec<Box<dyn KvIter + Send>> = inputs
            .iter()
            .map(|s| Box::new(s.table.iter()) as Box<dyn KvIter + Send>)
            .collect();
        let mut it = MergeIter::new(sources);
        it.seek_to_first()?;
        let target = self.opts.policy().target_file_size().unwrap_or(u64::MAX);
        let in_memory = state.schema.groups.get(group).is_some_and(|g| g.in_memory);
        let mut writer: Option<SstWriter> = None;
        let mut outputs = Vec::new();
        let now = self.now();
        let what = format!("compaction of tablet {} group {group}", self.id);
        let bad =
            |w: String| -> crate::error::Error { sstable::Error::corruption(&what, 0, w).into() };
        while it.valid() {
            let plen = key::row_prefix_len(it.key()).ok_or_else(|| bad("malformed key".into()))?;
            let prefix = it.key()[..plen].to_vec();
            if writer
                .as_ref()
                .is_some_and(|w| w.estimated_size() >= target)
            {
                let w = writer.take().expect("checked");
                outputs.push(self.finish_output(w, in_memory, pick.output_level)?);
            }
            let mut vis = RowVisibility::new(&state.schema, u64::MAX, now);
            let mut in_range = None;
            while it.valid() && it.key().starts_with(&prefix) {
                let k = key::parse(it.key()).ok_or_else(|| bad("malformed key".into()))?;
                let keep_row = *in_range.get_or_insert_with(|| self.range.contains(&k.row));
                let verdict = vis.step(&k, it.value()).map_err(&bad)?;
                let keep = keep_row
                    && match verdict {
                        Verdict::Visible => true,
                        Verdict::Marker => !pick.drop_markers,
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
        if let Some(w) = writer {
            outputs.push(self.finish_output(w, in_memory, pick.output_level)?);
        }
        Ok(outputs)
    }

    fn finish_output(&self, w: SstWriter, in_memory: bool, level: u32) -> Result<Arc<Sst>> {
        let mut sst = w.finish(self, in_memory)?;
        self.counters
            .compaction_written
            .fetch_add(sst.meta.size, Ordering::Relaxed);
        metrics::counter!("quarry_compaction_written_bytes_total").increment(sst.meta.size);
        Arc::get_mut(&mut sst).expect("not shared yet").meta.level = level;
        Ok(sst)
    }

    /// One manifest edit replacing `inputs` with `outputs`, then the state swap. Outputs
    /// take the place of the first input; the list is then put back in [`list_order`].
    fn install_compaction(
        &self,
        group: &str,
        inputs: &[Arc<Sst>],
        outputs: Vec<Arc<Sst>>,
    ) -> Result<()> {
        let is_input = |path: &str| inputs.iter().any(|s| s.meta.path == path);
        let mut s = self.structure.lock();
        let mut m = s.manifest.clone();
        let list = m.groups.entry(group.to_string()).or_default();
        let pos = list.iter().position(|x| is_input(&x.path)).unwrap_or(0);
        list.retain(|x| !is_input(&x.path));
        let pos = pos.min(list.len());
        list.splice(pos..pos, outputs.iter().map(|o| o.meta.clone()));
        list.sort_by(|a, b| list_order(a).cmp(&list_order(b)));
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
        let pos = pos.min(list.len());
        list.splice(pos..pos, outputs);
        list.sort_by(|a, b| list_order(&a.meta).cmp(&list_order(&b.meta)));
        *st = Arc::new(State {
            active: Arc::clone(&old.active),
            frozen: old.frozen.clone(),
            groups,
            schema: Arc::clone(&old.schema),
        });
        Ok(())
    }
}
