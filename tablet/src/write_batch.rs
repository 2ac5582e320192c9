//! Batched writes: many independent row mutations to one tablet in one call
//! ([`Tablet::mutate_rows`], what a tablet server's `MutateRows` uses).
//!
//! Applying each row through [`Tablet::mutate_row`] on its own thread lets their log
//! records meet in one group commit, but each row still costs a thread, a log ticket, a
//! wake-up of every waiter per batch (the log's and the visibility watermark's condvars)
//! and a watermark mark; at a few thousand rows per fsync the server spent most of its CPU
//! in futex calls. Here a batch costs one of each:
//!
//! 1. every entry is validated on its own (a bad entry fails alone, before anything is
//!    written);
//! 2. the row-lock stripes of the valid entries are taken in **rounds**: a round blocks
//!    on the first pending entry's stripe while holding nothing, then only *tries* the
//!    others, so two batches (or a batch and a single-row write) never wait for each other
//!    in a cycle, and a stripe that another writer holds across its fsync does not keep
//!    the rest of the batch from joining the current group commit (those entries go in the
//!    next round);
//! 3. a round's entries are written by `Inner::write_rows_locked`: one contiguous range of
//!    sequence numbers, one [`CommitLog::append_many`](crate::commitlog::CommitLog::append_many)
//!    (one fsync wait), memtable inserts, one watermark mark.
//!
//! Each row mutation stays atomic and durable before its result is `Ok`; the entries of a
//! batch are not atomic together (as in Bigtable). Two entries for the same row are applied
//! in their order in the batch.

use parking_lot::MutexGuard;

use crate::error::{Error, Result};
use crate::mutation::Mutation;
use crate::tablet::Tablet;

impl Tablet {
    /// Applies independent row mutations; returns one result per entry, in order. An
    /// entry's `Ok` means durable and visible, as for [`Tablet::mutate_row`].
    pub fn mutate_rows(&self, entries: Vec<(Vec<u8>, Vec<Mutation>)>) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = Vec::with_capacity(entries.len());
        let mut pending: Vec<usize> = Vec::with_capacity(entries.len());
        let mut entries: Vec<Option<(Vec<u8>, Vec<Mutation>)>> = entries
            .into_iter()
            .enumerate()
            .map(
                |(i, (row, muts))| match self.inner.check_writable(&row, &muts) {
                    Ok(()) => {
                        results.push(None);
                        pending.push(i);
                        Some((row, muts))
                    }
                    Err(e) => {
                        results.push(Some(Err(e)));
                        None
                    }
                },
            )
            .collect();
        while !pending.is_empty() {
            let ((round, guards), later) = self.lock_round(&pending, &entries);
            let (keys, muts): (Vec<Vec<u8>>, Vec<Vec<Mutation>>) = round
                .iter()
                .map(|&i| entries[i].take().expect("each entry is written once"))
                .unzip();
            let rows = keys.iter().map(Vec::as_slice).zip(muts).collect();
            let outcome = self.inner.write_rows_locked(rows);
            drop(guards);
            for &i in &round {
                results[i] = Some(match &outcome {
                    Ok(()) => Ok(()),
                    Err(e) => Err(copy_error(e)),
                });
            }
            pending = later;
        }
        results
            .into_iter()
            .map(|r| r.expect("every entry has a result"))
            .collect()
    }

    /// Takes the stripes for one round: blocks on the first pending entry's stripe (holding
    /// no other), then tries the rest. Returns the entries whose stripes are held (with the
    /// guards) and the ones left for a later round.
    #[allow(clippy::type_complexity)]
    fn lock_round(
        &self,
        pending: &[usize],
        entries: &[Option<(Vec<u8>, Vec<Mutation>)>],
    ) -> ((Vec<usize>, Vec<MutexGuard<'_, ()>>), Vec<usize>) {
        let row = |i: usize| {
            let (row, _) = entries[i].as_ref().expect("pending entries are present");
            row.as_slice()
        };
        let mut held = vec![false; self.inner.row_locks.len()];
        let mut guards = Vec::new();
        let mut now = Vec::new();
        let mut later = Vec::new();
        for (k, &i) in pending.iter().enumerate() {
            let stripe = self.inner.row_stripe(row(i));
            if held[stripe] {
                now.push(i);
                continue;
            }
            let lock = &self.inner.row_locks[stripe];
            let guard = if k == 0 {
                Some(lock.lock())
            } else {
                lock.try_lock()
            };
            match guard {
                Some(g) => {
                    held[stripe] = true;
                    guards.push(g);
                    now.push(i);
                }
                None => later.push(i),
            }
        }
        ((now, guards), later)
    }
}

/// The error of a failed round, for each of its entries (the tablet's errors carry only
/// text, except storage errors, which the write path turns into `Failed` before here).
fn copy_error(e: &Error) -> Error {
    match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        Error::FailedPrecondition(m) => Error::FailedPrecondition(m.clone()),
        Error::Failed(m) => Error::Failed(m.clone()),
        other => Error::Failed(other.to_string()),
    }
}
