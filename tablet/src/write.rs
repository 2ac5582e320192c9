//! The write path: row mutations, check-and-mutate and read-modify-write.
//!
//! A row mutation of `k` changes takes `k` consecutive sequence numbers (change `i` gets
//! `base + i`), so a deletion later in the same mutation hides a cell set earlier in it
//! and not the reverse. The path, for one mutation:
//!
//! 1. validate against the schema and limits (nothing allocated for bad input);
//! 2. lock the row's stripe (serializes writes to one row, so check-and-mutate and
//!    read-modify-write are atomic);
//! 3. under the shared `gate`: take sequence numbers, append the record to the commit log
//!    (group commit: returns when fsynced), insert into the active memtable;
//! 4. mark the numbers applied and wait until every lower number is applied too (the
//!    visible watermark), so an acknowledged write is visible to every later read and a
//!    reader never sees half a row mutation;
//! 5. return; the tablet server validates its lease after this and before replying.
//!
//! If the log append fails, the tablet fails stop: that write and every later one get an
//! error and nothing is retried (DESIGN.md rule 8).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{invalid, Error, Result};
use crate::filter::{Cell, ReadFilter};
use crate::key;
use crate::memtable::Memtable;
use crate::mutation::{self, encode_payload, Mutation};
use crate::tablet::{Inner, Tablet};
use crate::types::{SeqNo, Timestamp};

/// The highest sequence number below which every number is applied.
pub(crate) struct Watermark {
    visible: SeqNo,
    /// Applied ranges above `visible`: start -> end (inclusive).
    done: BTreeMap<SeqNo, SeqNo>,
}

impl Watermark {
    pub(crate) fn new(visible: SeqNo) -> Watermark {
        Watermark {
            visible,
            done: BTreeMap::new(),
        }
    }

    pub(crate) fn visible(&self) -> SeqNo {
        self.visible
    }

    fn mark(&mut self, first: SeqNo, last: SeqNo) {
        self.done.insert(first, last);
        while let Some((&f, &l)) = self.done.first_key_value() {
            if f != self.visible + 1 {
                break;
            }
            self.visible = l;
            self.done.remove(&f);
        }
    }
}

/// One change to read-modify-write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadModifyWrite {
    /// Appends bytes to the column's newest value (or writes them if there is none).
    Append {
        /// Column family.
        family: String,
        /// Column qualifier.
        qualifier: Vec<u8>,
        /// Bytes to append.
        value: Vec<u8>,
    },
    /// Adds to the column's newest value, a 64-bit big-endian signed integer (0 if none).
    Increment {
        /// Column family.
        family: String,
        /// Column qualifier.
        qualifier: Vec<u8>,
        /// Amount to add.
        delta: i64,
    },
}

/// Inserts a row mutation's entries into a memtable (also used by replay). Takes the
/// mutations by value so a cell's value moves into the memtable uncopied.
pub(crate) fn apply_to_memtable(mem: &Memtable, base: SeqNo, row: &[u8], muts: Vec<Mutation>) {
    for (i, m) in muts.into_iter().enumerate() {
        let seq = base + i as u64;
        match m {
            Mutation::SetCell {
                family,
                qualifier,
                timestamp,
                value,
            } => mem.insert(
                key::cell(row, family.as_bytes(), &qualifier, timestamp, seq),
                value,
            ),
            Mutation::DeleteCells {
                family,
                qualifier,
                start,
                end,
            } => mem.insert(
                key::column_tombstone(row, family.as_bytes(), &qualifier, seq),
                key::encode_range(start, end),
            ),
            Mutation::DeleteFamily { family } => mem.insert(
                key::family_tombstone(row, family.as_bytes(), seq),
                Vec::new(),
            ),
            Mutation::DeleteRow => mem.insert(key::row_tombstone(row, seq), Vec::new()),
        }
    }
}

impl Tablet {
    /// Applies `mutations` to `row` atomically; returns once durable and visible.
    pub fn mutate_row(&self, row: &[u8], mutations: Vec<Mutation>) -> Result<()> {
        self.inner.check_writable(row, &mutations)?;
        let _row_lock = self.inner.row_lock(row).lock();
        self.inner.write_locked(row, mutations)
    }

    /// If the row, read through `predicate`, has any cell, applies `if_true`, else
    /// `if_false`, atomically. Returns whether the predicate matched.
    pub fn check_and_mutate(
        &self,
        row: &[u8],
        predicate: &ReadFilter,
        if_true: Vec<Mutation>,
        if_false: Vec<Mutation>,
    ) -> Result<bool> {
        mutation::check_row_key(row)?;
        for muts in [&if_true, &if_false] {
            if !muts.is_empty() {
                self.inner.check_writable(row, muts)?;
            }
        }
        let _row_lock = self.inner.row_lock(row).lock();
        let matched = self.read_row(row, predicate)?.is_some();
        let chosen = if matched { if_true } else { if_false };
        if !chosen.is_empty() {
            self.inner.write_locked(row, chosen)?;
        }
        Ok(matched)
    }

    /// Applies append/increment rules atomically; returns the new cells.
    pub fn read_modify_write(&self, row: &[u8], rules: Vec<ReadModifyWrite>) -> Result<Vec<Cell>> {
        mutation::check_row_key(row)?;
        if rules.is_empty() {
            return Err(invalid("read-modify-write needs at least one rule"));
        }
        let _row_lock = self.inner.row_lock(row).lock();
        let current = self.read_row(row, &ReadFilter::latest())?;
        let latest = |f: &str, q: &[u8]| -> Option<Cell> {
            current.as_ref().and_then(|r| {
                r.cells
                    .iter()
                    .find(|c| c.family == f && c.qualifier == q)
                    .cloned()
            })
        };
        let now = self.inner.now();
        let mut out: Vec<Cell> = Vec::new();
        for rule in rules {
            let (family, qualifier) = match &rule {
                ReadModifyWrite::Append {
                    family, qualifier, ..
                }
                | ReadModifyWrite::Increment {
                    family, qualifier, ..
                } => (family.clone(), qualifier.clone()),
            };
            // A later rule on the same column builds on an earlier one.
            let old = out
                .iter()
                .rev()
                .find(|c| c.family == family && c.qualifier == qualifier)
                .cloned()
                .or_else(|| latest(&family, &qualifier));
            let value = match &rule {
                ReadModifyWrite::Append { value, .. } => {
                    let mut v = old.as_ref().map(|c| c.value.clone()).unwrap_or_default();
                    v.extend_from_slice(value);
                    v
                }
                ReadModifyWrite::Increment { delta, .. } => {
                    let cur = match &old {
                        None => 0,
                        Some(c) => decode_counter(&c.value)?,
                    };
                    cur.wrapping_add(*delta).to_be_bytes().to_vec()
                }
            };
            let ts: Timestamp = old.as_ref().map_or(now, |c| c.timestamp.max(now));
            out.push(Cell {
                family,
                qualifier,
                timestamp: ts,
                value,
            });
        }
        let muts: Vec<Mutation> = out
            .iter()
            .map(|c| Mutation::set(&c.family, &c.qualifier, c.timestamp, &c.value))
            .collect();
        self.inner.check_writable(row, &muts)?;
        self.inner.write_locked(row, muts)?;
        Ok(out)
    }
}

fn decode_counter(v: &[u8]) -> Result<i64> {
    let bytes: [u8; 8] = v.try_into().map_err(|_| {
        Error::FailedPrecondition(format!(
            "increment of a {}-byte value: counters are 8-byte big-endian integers",
            v.len()
        ))
    })?;
    Ok(i64::from_be_bytes(bytes))
}

impl Inner {
    pub(crate) fn row_lock(&self, row: &[u8]) -> &parking_lot::Mutex<()> {
        &self.row_locks[self.row_stripe(row)]
    }

    /// The index of `row`'s lock stripe in `row_locks`.
    pub(crate) fn row_stripe(&self, row: &[u8]) -> usize {
        crc32fast::hash(row) as usize % self.row_locks.len()
    }

    /// Fails unless the tablet takes writes. Checked again under the write gate, so once
    /// [`Tablet::close_for_writes`] returns no write can still reach the memtable.
    pub(crate) fn check_open(&self) -> Result<()> {
        self.check_failed()?;
        if self.closed_for_writes.load(Ordering::SeqCst) {
            return Err(Error::Unavailable(format!(
                "tablet {} is closing and takes no writes",
                self.id
            )));
        }
        Ok(())
    }

    pub(crate) fn check_writable(&self, row: &[u8], muts: &[Mutation]) -> Result<()> {
        self.check_open()?;
        if !self.range.contains(row) {
            return Err(invalid(format!(
                "row {:?} is outside tablet {}'s range",
                String::from_utf8_lossy(row),
                self.id
            )));
        }
        let schema = Arc::clone(&self.state.read().schema);
        mutation::validate(row, muts, &schema, self.opts.max_value)
    }

    /// Steps 3-4 of the write path. REQUIRES: the row's lock is held and the mutation was
    /// validated.
    pub(crate) fn write_locked(&self, row: &[u8], muts: Vec<Mutation>) -> Result<()> {
        self.write_rows_locked(vec![(row, muts)])
    }

    /// Steps 3-4 for several row mutations at once: their sequence numbers are one
    /// contiguous range (each row's consecutive), their log records go in one
    /// [`CommitLog::append_many`](crate::commitlog::CommitLog::append_many) (one wait for
    /// the group commit), and they become visible together. Each row stays atomic; the
    /// rows are not atomic together (a crash can keep a prefix of the records). REQUIRES:
    /// every row's lock is held, each mutation was validated, `rows` is not empty.
    pub(crate) fn write_rows_locked(&self, mut rows: Vec<(&[u8], Vec<Mutation>)>) -> Result<()> {
        self.maybe_stall()?;
        let now = self.now();
        let mut n = 0u64;
        for (_, muts) in rows.iter_mut() {
            mutation::resolve_timestamps(muts, now);
            n += muts.len() as u64;
        }
        let (first, result) = {
            let _gate = self.gate.read();
            let first = self.next_seq.fetch_add(n, Ordering::SeqCst);
            let mut base = first;
            let payloads: Vec<Vec<u8>> = rows
                .iter()
                .map(|(row, muts)| {
                    let p = encode_payload(base, row, muts);
                    base += muts.len() as u64;
                    p
                })
                .collect();
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let appended = self.check_open().and_then(|()| {
                self.log
                    .append_many(self.id, &refs)
                    .map_err(|e| self.fail(format!("commit log append failed: {e}")))
            });
            if appended.is_ok() {
                let active = Arc::clone(&self.state.read().active);
                let mut base = first;
                for (row, muts) in rows {
                    let k = muts.len() as u64;
                    apply_to_memtable(&active, base, row, muts);
                    base += k;
                }
                let bytes: usize = payloads.iter().map(Vec::len).sum();
                self.counters
                    .user_bytes
                    .fetch_add(bytes as u64, Ordering::Relaxed);
            }
            (first, appended)
        };
        let last = first + n - 1;
        // Mark the numbers even on failure, so later writers are not stuck behind them;
        // on failure nothing was inserted.
        let mut w = self.watermark.lock();
        w.mark(first, last);
        self.watermark_cv.notify_all();
        result?;
        while w.visible() < last {
            self.watermark_cv.wait(&mut w);
        }
        drop(w);
        // The write is durable and visible: a flush failure (which fails the tablet) does
        // not change its outcome.
        if let Err(e) = self.maybe_schedule_flush() {
            tracing::warn!(tablet = self.id, "flush after write failed: {e}");
        }
        Ok(())
    }

    /// The sequence number reads see: every write acknowledged so far.
    pub(crate) fn visible_seq(&self) -> SeqNo {
        self.watermark.lock().visible()
    }

    /// Waits (bounded) while the memtable is full and too many frozen ones wait for flush.
    ///
    /// The condition is read with the `work` lock held, and the flusher announces each flush
    /// ([`Inner::notify_flushed`]) under that lock after removing the frozen memtable, so a
    /// flush that completes between the check and the wait cannot be missed. (Checking
    /// before taking the lock lost that wake-up: the flusher emptied the frozen list, the
    /// writer slept, and every other writer queued behind its row locks, so nothing woke
    /// it until the stall timeout.)
    fn maybe_stall(&self) -> Result<()> {
        let deadline = Instant::now() + self.opts.stall_timeout;
        let mut stalled = false;
        let mut work = self.work.lock();
        loop {
            self.check_failed()?;
            let (full, frozen) = {
                let s = self.state.read();
                (
                    s.active.approximate_bytes() >= self.opts.memtable_bytes,
                    s.frozen.len(),
                )
            };
            if !full || frozen < self.opts.max_frozen {
                return Ok(());
            }
            if !stalled {
                stalled = true;
                self.counters.stalls.fetch_add(1, Ordering::Relaxed);
            }
            // The flusher has work (the frozen list is not empty); wake it in case it is
            // asleep. `work` is held, as `wake_background` would take it.
            self.work_cv.notify_all();
            if self.flushed_cv.wait_until(&mut work, deadline).timed_out() {
                return Err(Error::Unavailable(format!(
                    "writes to tablet {} stalled for {:?} waiting for flushes",
                    self.id, self.opts.stall_timeout
                )));
            }
        }
    }

    /// Freezes a full memtable and has it flushed: by the background flusher, or here and
    /// now when the tablet runs without background threads (deterministic tests, tools).
    fn maybe_schedule_flush(&self) -> Result<()> {
        let full = self.state.read().active.approximate_bytes() >= self.opts.memtable_bytes;
        if !full {
            return Ok(());
        }
        if self.opts.background {
            self.freeze();
            self.wake_background();
            Ok(())
        } else {
            self.force_flush()?;
            while self.maybe_merging_compaction()? {}
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_advances_only_over_contiguous_ranges() {
        let mut w = Watermark::new(0);
        w.mark(3, 4);
        assert_eq!(w.visible(), 0);
        w.mark(1, 2);
        assert_eq!(w.visible(), 4);
        w.mark(6, 6);
        w.mark(5, 5);
        assert_eq!(w.visible(), 6);
    }
}
