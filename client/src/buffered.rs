//! A buffered mutator: row mutations gathered per tablet and sent as full `MutateRows`.
//!
//! [`Client::mutate_rows`] sends whatever it is given, one request per tablet; a writer
//! whose rows scatter over many tablets (hashed keys, bulk loads) then sends many small
//! requests, each paying a round trip and a commit-log fsync wait for a few rows. HBase's
//! `BufferedMutator` and Cloud Bigtable's bulk-mutation batcher answer this by buffering:
//! [`BufferedMutator::mutate`] files each row under the tablet that holds it (from the
//! location cache) and sends a tablet's buffer as one `MutateRows` once it holds
//! `rows_per_request` rows; [`BufferedMutator::flush`] sends every buffer.
//!
//! Durability is the caller's to see: a row is acknowledged (fsynced in the tablet
//! server's commit log) only when the `mutate` or `flush` call that sent it returns `Ok`.
//! A failed send returns the first failed row's error naming its key; rows of that send
//! that succeeded stay written. Rows still buffered when the mutator is dropped were never
//! sent (a warning is logged): call `flush` before dropping it.
//!
//! The per-tablet grouping is only for packing: each send goes through `mutate_rows`,
//! which locates every row again and retries by each row's own idempotence, so a tablet
//! that split or moved while rows waited in its buffer costs an extra request, not a
//! misdirected write.

use std::collections::BTreeMap;

use tablet::Mutation;

use crate::client::Client;
use crate::data::RowMutation;
use crate::error::{Error, Result};

/// See the module doc.
pub struct BufferedMutator {
    client: Client,
    table: String,
    rows_per_request: usize,
    max_buffered_bytes: usize,
    buffers: BTreeMap<u64, Vec<RowMutation>>,
    buffered_bytes: usize,
    sent_requests: u64,
}

/// Default bound on the bytes held in all buffers together (then everything is sent).
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 64 << 20;

/// The bytes `m` holds, roughly (keys, names and values).
fn size_of(m: &RowMutation) -> usize {
    let one = |x: &Mutation| {
        32 + match x {
            Mutation::SetCell {
                family,
                qualifier,
                value,
                ..
            } => family.len() + qualifier.len() + value.len(),
            Mutation::DeleteCells {
                family, qualifier, ..
            } => family.len() + qualifier.len(),
            Mutation::DeleteFamily { family } => family.len(),
            Mutation::DeleteRow => 0,
        }
    };
    m.row.len() + m.mutations.iter().map(one).sum::<usize>()
}

/// `e` with the failed row's key in its message.
fn naming_row(e: Error, key: &[u8]) -> Error {
    let row = String::from_utf8_lossy(key);
    let at = |m: String| format!("row {row:?}: {m}");
    match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(at(m)),
        Error::NotFound(m) => Error::NotFound(at(m)),
        Error::AlreadyExists(m) => Error::AlreadyExists(at(m)),
        Error::FailedPrecondition(m) => Error::FailedPrecondition(at(m)),
        Error::OutcomeUnknown { op, cause } => Error::OutcomeUnknown {
            op,
            cause: at(cause),
        },
        Error::Unavailable(m) => Error::Unavailable(at(m)),
        Error::Internal(m) => Error::Internal(at(m)),
    }
}

impl Client {
    /// A [`BufferedMutator`] for `table` that sends `rows_per_request` rows per
    /// `MutateRows` (and everything once [`DEFAULT_MAX_BUFFERED_BYTES`] are buffered).
    pub fn buffered_mutator(&self, table: &str, rows_per_request: usize) -> BufferedMutator {
        BufferedMutator {
            client: self.clone(),
            table: table.to_string(),
            rows_per_request: rows_per_request.max(1),
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            buffers: BTreeMap::new(),
            buffered_bytes: 0,
            sent_requests: 0,
        }
    }
}

impl BufferedMutator {
    /// Sets the bound on the bytes buffered over all tablets.
    pub fn with_max_buffered_bytes(mut self, bytes: usize) -> BufferedMutator {
        self.max_buffered_bytes = bytes.max(1);
        self
    }

    /// Buffers `m` under its tablet; sends that tablet's rows when it holds
    /// `rows_per_request`, and every buffer when the byte bound is passed.
    pub async fn mutate(&mut self, m: RowMutation) -> Result<()> {
        let deadline = self.client.deadline();
        let loc = self.client.locate(&self.table, &m.row, deadline).await?;
        self.buffered_bytes += size_of(&m);
        let buf = self.buffers.entry(loc.tablet_id).or_default();
        buf.push(m);
        if buf.len() >= self.rows_per_request {
            let rows = self.buffers.remove(&loc.tablet_id).unwrap_or_default();
            self.send(rows).await?;
        }
        if self.buffered_bytes > self.max_buffered_bytes {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends every buffered row (one `MutateRows` per tablet, concurrently); `Ok` means
    /// every row given so far is acknowledged.
    pub async fn flush(&mut self) -> Result<()> {
        let rows: Vec<RowMutation> = std::mem::take(&mut self.buffers)
            .into_values()
            .flatten()
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        self.send(rows).await
    }

    /// Rows waiting in the buffers.
    pub fn buffered_rows(&self) -> usize {
        self.buffers.values().map(Vec::len).sum()
    }

    /// `mutate_rows` calls made so far (each is one request per tablet its rows span).
    pub fn sent_requests(&self) -> u64 {
        self.sent_requests
    }

    async fn send(&mut self, rows: Vec<RowMutation>) -> Result<()> {
        self.buffered_bytes = self
            .buffered_bytes
            .saturating_sub(rows.iter().map(size_of).sum());
        self.sent_requests += 1;
        let keys: Vec<Vec<u8>> = rows.iter().map(|r| r.row.clone()).collect();
        let results = self.client.mutate_rows(&self.table, rows).await?;
        for (key, r) in keys.iter().zip(results) {
            if let Err(e) = r {
                return Err(naming_row(e, key));
            }
        }
        Ok(())
    }
}

impl Drop for BufferedMutator {
    fn drop(&mut self) {
        let n = self.buffered_rows();
        if n > 0 {
            tracing::warn!(
                table = %self.table,
                rows = n,
                "a BufferedMutator was dropped with rows never sent (call flush first)"
            );
        }
    }
}
