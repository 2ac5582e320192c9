//! Minor compaction: freeze the memtable, write it as SSTables, record them.
//!
//! Freezing takes the write gate exclusively, so every write that took a sequence number
//! before the freeze is in the frozen memtable and every later one is in the new active
//! memtable, and the commit-log position read under the gate is an exact redo point. The
//! frozen memtable is written as one SSTable per locality group (row tombstones go to every
//! group, everything else to its family's group), each synced; then one manifest edit adds
//! them and moves the redo point; only then is the frozen memtable dropped. A crash at any
//! step leaves either the old manifest (the log still holds the data) or the new one (the
//! SSTables hold it); SSTables a crash orphaned are never referenced.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sstable::table::{Table, TableBuilder};
use sstable::KvIter;

use crate::error::Result;
use crate::key::{self, KeyKind};
use crate::manifest::{LogRef, SstMeta};
use crate::memtable::Memtable;
use crate::schema::{Schema, DEFAULT_GROUP};
use crate::tablet::{Frozen, Inner, Sst, State};

/// Writes one SSTable of a tablet, adding each new row to its Bloom filter.
pub(crate) struct SstWriter {
    builder: TableBuilder,
    path: String,
    last_row_prefix: Vec<u8>,
}

impl SstWriter {
    /// Starts `<tablet dir>/sst/<epoch>-<number>.sst`. The epoch in the name keeps a paused
    /// old owner from ever overwriting a newer owner's file.
    pub(crate) fn create(inner: &Inner, number: u64) -> Result<SstWriter> {
        let rel = format!("{}/sst/{:020}-{:020}.sst", inner.dir, inner.epoch, number);
        let abs = inner.abs(&rel);
        let dir = sstable::fs::parent_dir(&abs).to_path_buf();
        if !inner.fs.exists(&dir) {
            inner.fs.create_dir_all_durable(&dir)?;
        }
        let file = inner.fs.create(&abs)?;
        Ok(SstWriter {
            builder: TableBuilder::new(file, inner.opts.table),
            path: rel,
            last_row_prefix: Vec::new(),
        })
    }

    /// Adds an entry (keys in increasing order).
    pub(crate) fn add(&mut self, k: &[u8], v: &[u8]) -> Result<()> {
        let plen = key::row_prefix_len(k).unwrap_or(k.len());
        if k[..plen] != self.last_row_prefix[..] {
            self.last_row_prefix.clear();
            self.last_row_prefix.extend_from_slice(&k[..plen]);
            if let Some(p) = key::parse(k) {
                self.builder.add_filter_key(&p.row);
            }
        }
        self.builder.add(k, v)?;
        Ok(())
    }

    /// Bytes the file will have if finished now (about).
    pub(crate) fn estimated_size(&self) -> u64 {
        self.builder.estimated_size()
    }

    /// Finishes and syncs the file, syncs its directory, and opens it for reading.
    pub(crate) fn finish(self, inner: &Inner, in_memory: bool) -> Result<Arc<Sst>> {
        let info = self.builder.finish()?;
        let abs = inner.abs(&self.path);
        inner.fs.sync_dir(sstable::fs::parent_dir(&abs))?;
        let table = Table::open(inner.fs.open(&abs)?, inner.cache.clone(), in_memory)?;
        Ok(Arc::new(Sst {
            meta: SstMeta {
                path: self.path,
                size: info.file_size,
                entries: info.num_entries,
                smallest: info.smallest_key,
                largest: info.largest_key,
                clip: None,
                level: 0,
            },
            table,
        }))
    }
}

/// The locality group of an entry's family (row tombstones: `None`, meaning every group).
fn group_of<'a>(schema: &'a Schema, family: &[u8]) -> &'a str {
    std::str::from_utf8(family)
        .ok()
        .and_then(|f| schema.families.get(f))
        .map_or(DEFAULT_GROUP, |s| s.locality_group.as_str())
}

impl Inner {
    /// Freezes the active memtable if it is non-empty and (unless `force`) full, and fewer
    /// than `max_frozen` are waiting.
    pub(crate) fn maybe_freeze(&self, force: bool) {
        let _gate = self.gate.write();
        let state = Arc::clone(&self.state.read());
        if state.active.is_empty() {
            return;
        }
        if !force
            && (state.active.approximate_bytes() < self.opts.memtable_bytes
                || state.frozen.len() >= self.opts.max_frozen)
        {
            return;
        }
        let frozen = Arc::new(Frozen {
            mem: Arc::clone(&state.active),
            redo: self.log.position(),
            max_seq: self.next_seq.load(Ordering::SeqCst) - 1,
        });
        let mut frozen_list = vec![frozen];
        frozen_list.extend(state.frozen.iter().cloned());
        *self.state.write() = Arc::new(State {
            active: Memtable::new(),
            frozen: frozen_list,
            groups: state.groups.clone(),
            schema: Arc::clone(&state.schema),
        });
    }

    /// Freezes if full (called by writers).
    pub(crate) fn freeze(&self) {
        self.maybe_freeze(false);
    }

    /// Freezes the memtable and flushes every frozen memtable.
    pub(crate) fn force_flush(&self) -> Result<()> {
        self.check_failed()?;
        self.maybe_freeze(true);
        while self.flush_oldest()? {}
        Ok(())
    }

    /// Writes the oldest frozen memtable out; false when there was none.
    pub(crate) fn flush_oldest(&self) -> Result<bool> {
        let _flush = self.flush_lock.lock();
        self.check_failed()?;
        let Some(frozen) = self.state.read().frozen.last().cloned() else {
            return Ok(false);
        };
        let schema = Arc::clone(&self.state.read().schema);
        let outputs = match self.write_frozen(&frozen, &schema) {
            Ok(o) => o,
            Err(e) => return Err(self.fail(format!("minor compaction failed: {e}"))),
        };
        {
            let mut s = self.structure.lock();
            let mut m = s.manifest.clone();
            for (group, sst) in &outputs {
                m.groups
                    .entry(group.clone())
                    .or_default()
                    .insert(0, sst.meta.clone());
            }
            m.flushed_seq = m.flushed_seq.max(frozen.max_seq);
            for r in m.log_refs.iter_mut().filter(|r| r.dir == self.log_dir) {
                r.from = r.from.max(frozen.redo);
            }
            if !m.log_refs.iter().any(|r| r.dir == self.log_dir) {
                m.log_refs.push(LogRef {
                    dir: self.log_dir.clone(),
                    from: frozen.redo,
                });
            }
            if let Err(e) = s.store.write(&m) {
                return Err(self.fail(format!("manifest write failed: {e}")));
            }
            s.manifest = m;
            let mut st = self.state.write();
            let old = Arc::clone(&st);
            let mut groups = old.groups.clone();
            for (group, sst) in outputs {
                groups.entry(group).or_default().insert(0, sst);
            }
            let frozen_list = old
                .frozen
                .iter()
                .filter(|f| !Arc::ptr_eq(f, &frozen))
                .cloned()
                .collect();
            *st = Arc::new(State {
                active: Arc::clone(&old.active),
                frozen: frozen_list,
                groups,
                schema: Arc::clone(&old.schema),
            });
        }
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("quarry_flushes_total").increment(1);
        self.notify_flushed();
        Ok(true)
    }

    /// Writes a frozen memtable as one SSTable per locality group that has entries.
    fn write_frozen(&self, frozen: &Frozen, schema: &Schema) -> Result<Vec<(String, Arc<Sst>)>> {
        let mut writers: BTreeMap<String, SstWriter> = BTreeMap::new();
        let groups = schema.group_names();
        let mut it = frozen.mem.iter();
        it.seek_to_first()?;
        while it.valid() {
            let k = it.key();
            let parsed = key::parse(k);
            let targets: Vec<&str> = match &parsed {
                Some(p) if p.kind == KeyKind::RowTombstone => {
                    groups.iter().map(String::as_str).collect()
                }
                Some(p) => vec![group_of(schema, &p.family)],
                None => vec![DEFAULT_GROUP],
            };
            for g in targets {
                if !writers.contains_key(g) {
                    let number = self.next_file_number();
                    writers.insert(g.to_string(), SstWriter::create(self, number)?);
                }
                writers
                    .get_mut(g)
                    .expect("just inserted")
                    .add(k, it.value())?;
            }
            it.next()?;
        }
        let mut out = Vec::new();
        for (g, w) in writers {
            let in_memory = schema.groups.get(&g).is_some_and(|s| s.in_memory);
            let sst = w.finish(self, in_memory)?;
            self.counters
                .flush_bytes
                .fetch_add(sst.meta.size, Ordering::Relaxed);
            metrics::counter!("quarry_flush_bytes_total").increment(sst.meta.size);
            out.push((g, sst));
        }
        Ok(out)
    }

    /// Wakes stalled writers and asks the compactor to look. The `work` lock is held while
    /// notifying so a waiter between its check and its wait cannot miss the wake-up.
    pub(crate) fn notify_flushed(&self) {
        let mut w = self.work.lock();
        w.compaction_wanted = true;
        self.flushed_cv.notify_all();
        self.work_cv.notify_all();
    }

    /// Takes the next SSTable file number (recorded in the manifest with the next edit;
    /// the epoch in file names keeps numbers of different loads apart).
    pub(crate) fn next_file_number(&self) -> u64 {
        let mut s = self.structure.lock();
        let n = s.manifest.next_file;
        s.manifest.next_file += 1;
        n
    }
}
