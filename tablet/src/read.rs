//! The read path: point reads and scans over a consistent snapshot.
//!
//! A read takes the visible sequence number (every acknowledged write) and an `Arc` of the
//! current state, then merges the active memtable, the frozen memtables and the SSTables
//! of the locality groups its filter can need (skipping SSTables whose Bloom filter rules
//! the row out, for point reads). Each row's entries pass through
//! [`crate::visibility::RowVisibility`] and then the [`ReadFilter`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use sstable::merge::{ConcatIter, MergeIter};
use sstable::KvIter;

use crate::error::{Error, Result};
use crate::filter::{Cell, ReadFilter, Row};
use crate::key;
use crate::manifest::RowRange;
use crate::mutation::check_row_key;
use crate::schema::Schema;
use crate::tablet::{Inner, Sst, State, Tablet};
use crate::types::{SeqNo, Timestamp};
use crate::visibility::{RowVisibility, Verdict};

type Source = Box<dyn KvIter + Send>;

impl Tablet {
    /// Reads one row through `filter`; `None` when no cell survives.
    pub fn read_row(&self, row: &[u8], filter: &ReadFilter) -> Result<Option<Row>> {
        check_row_key(row)?;
        if !self.inner.range.contains(row) {
            return Err(Error::InvalidArgument(format!(
                "row {:?} is outside tablet {}'s range",
                String::from_utf8_lossy(row),
                self.inner.id
            )));
        }
        let inner = &self.inner;
        inner.counters.gets.fetch_add(1, Ordering::Relaxed);
        let snapshot = inner.visible_seq();
        let state = Arc::clone(&inner.state.read());
        let sources = inner.sources(&state, filter, Some(row));
        let mut it = MergeIter::new(sources);
        let prefix = key::row_prefix(row);
        it.seek(&prefix)?;
        let mut reader = RowReader::new(inner, &state.schema, snapshot);
        match reader.next_row(&mut it, None)? {
            Some((k, cells)) if k == row => Ok(filter.apply(k, cells)),
            _ => Ok(None),
        }
    }

    /// Scans rows of `range` (clipped to the tablet's) through `filter`, at most `limit`
    /// rows. The scan sees one snapshot from start to end.
    pub fn scan(
        &self,
        range: &RowRange,
        filter: &ReadFilter,
        limit: Option<usize>,
    ) -> Result<Scan> {
        let inner = Arc::clone(&self.inner);
        let snapshot = inner.visible_seq();
        let state = Arc::clone(&inner.state.read());
        let start = range
            .start
            .as_slice()
            .max(inner.range.start.as_slice())
            .to_vec();
        let end = match (range.end.is_empty(), inner.range.end.is_empty()) {
            (true, _) => inner.range.end.clone(),
            (false, true) => range.end.clone(),
            (false, false) => range
                .end
                .as_slice()
                .min(inner.range.end.as_slice())
                .to_vec(),
        };
        let mut it = MergeIter::new(inner.sources(&state, filter, None));
        it.seek(&key::row_prefix(&start))?;
        Ok(Scan {
            inner,
            state,
            it,
            end,
            snapshot,
            filter: filter.clone(),
            remaining: limit.unwrap_or(usize::MAX),
            done: false,
        })
    }
}

impl Inner {
    /// The iterators a read needs, newest first.
    pub(crate) fn sources(
        &self,
        state: &State,
        filter: &ReadFilter,
        point_row: Option<&[u8]>,
    ) -> Vec<Source> {
        let mut v: Vec<Source> = Vec::new();
        v.push(Box::new(state.active.iter()));
        for f in &state.frozen {
            v.push(Box::new(f.mem.iter()));
        }
        for (group, ssts) in &state.groups {
            let wanted = state
                .schema
                .families
                .iter()
                .any(|(name, spec)| &spec.locality_group == group && filter.wants_family(name));
            if !wanted {
                continue;
            }
            match point_row {
                Some(row) => self.point_sources(ssts, row, &mut v),
                None => scan_sources(ssts, &mut v),
            }
        }
        v
    }
}

impl Inner {
    /// The SSTables of one group a point read of `row` must consult: those whose key
    /// range holds the row's keys (at most one per level >= 1) and whose Bloom filter
    /// does not rule the row out. Each one counts as a probe.
    fn point_sources(&self, ssts: &[Arc<Sst>], row: &[u8], v: &mut Vec<Source>) {
        let prefix = key::row_prefix(row);
        for sst in ssts {
            let m = &sst.meta;
            let in_range = m.largest.as_slice() >= prefix.as_slice()
                && (m.smallest.as_slice() < prefix.as_slice() || m.smallest.starts_with(&prefix));
            if !in_range {
                continue;
            }
            if !sst.table.may_contain(row) {
                metrics::counter!("quarry_bloom_negatives_total").increment(1);
                continue;
            }
            self.counters.sst_probes.fetch_add(1, Ordering::Relaxed);
            v.push(Box::new(sst.table.iter()));
        }
    }
}

/// The sources of one group for a scan: each level-0 SSTable on its own, each level >= 1
/// (files with disjoint, increasing key ranges, see [`crate::compaction`]) as one
/// concatenation, so a seek touches one file per level.
fn scan_sources(ssts: &[Arc<Sst>], v: &mut Vec<Source>) {
    let mut i = 0;
    while i < ssts.len() {
        let level = ssts[i].meta.level;
        let run = ssts[i..]
            .iter()
            .take_while(|s| s.meta.level == level)
            .count();
        let files = &ssts[i..i + run];
        i += run;
        if level == 0 || run == 1 {
            v.extend(files.iter().map(|s| Box::new(s.table.iter()) as Source));
            continue;
        }
        let largest = files.iter().map(|s| s.meta.largest.clone()).collect();
        let iters = files
            .iter()
            .map(|s| Box::new(s.table.iter()) as Source)
            .collect();
        v.push(Box::new(ConcatIter::with_largest_keys(iters, largest)));
    }
}

/// Assembles rows from a merged iterator.
pub(crate) struct RowReader<'a> {
    inner: &'a Inner,
    schema: &'a Schema,
    snapshot: SeqNo,
    now: Timestamp,
}

impl<'a> RowReader<'a> {
    pub(crate) fn new(inner: &'a Inner, schema: &'a Schema, snapshot: SeqNo) -> Self {
        RowReader {
            inner,
            schema,
            snapshot,
            now: inner.now(),
        }
    }

    fn corrupt(&self, what: String) -> Error {
        let name = format!("tablet {} in {}", self.inner.id, self.inner.dir);
        sstable::Error::corruption(name, 0, what).into()
    }

    /// Reads the row the iterator is positioned at; `None` at the end or at `end_row`
    /// (exclusive, empty = none). Rows whose cells are all hidden come back with no cells.
    pub(crate) fn next_row(
        &mut self,
        it: &mut MergeIter,
        end_row: Option<&[u8]>,
    ) -> Result<Option<(Vec<u8>, Vec<Cell>)>> {
        if !it.valid() {
            return Ok(None);
        }
        let plen = key::row_prefix_len(it.key())
            .ok_or_else(|| self.corrupt("malformed internal key".into()))?;
        let prefix = it.key()[..plen].to_vec();
        let mut row = None;
        let mut vis = RowVisibility::new(self.schema, self.snapshot, self.now);
        let mut cells = Vec::new();
        while it.valid() && it.key().starts_with(&prefix) {
            let k = key::parse(it.key())
                .ok_or_else(|| self.corrupt("malformed internal key".into()))?;
            if row.is_none() {
                if end_row.is_some_and(|e| !e.is_empty() && k.row.as_slice() >= e) {
                    return Ok(None);
                }
                row = Some(k.row.clone());
            }
            if vis.step(&k, it.value()).map_err(|w| self.corrupt(w))? == Verdict::Visible {
                cells.push(Cell {
                    family: String::from_utf8_lossy(&k.family).into_owned(),
                    qualifier: k.qualifier,
                    timestamp: k.timestamp,
                    value: it.value().to_vec(),
                });
            }
            it.next()?;
        }
        Ok(row.map(|r| (r, cells)))
    }
}

/// A scan in progress: an iterator of rows.
pub struct Scan {
    inner: Arc<Inner>,
    state: Arc<State>,
    it: MergeIter,
    end: Vec<u8>,
    snapshot: SeqNo,
    filter: ReadFilter,
    remaining: usize,
    done: bool,
}

impl Iterator for Scan {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Result<Row>> {
        while !self.done && self.remaining > 0 {
            let mut reader = RowReader::new(&self.inner, &self.state.schema, self.snapshot);
            match reader.next_row(&mut self.it, Some(&self.end)) {
                Ok(None) => self.done = true,
                Ok(Some((k, cells))) => {
                    if let Some(row) = self.filter.apply(k, cells) {
                        self.remaining -= 1;
                        return Some(Ok(row));
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}
