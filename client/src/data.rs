//! The data API: single-row writes and reads, batched writes, conditional and
//! read-modify-write operations, row-key samples.
//!
//! Idempotence decides retries (see [`crate::retry`]): `mutate_row` and `mutate_rows`
//! entries are idempotent when every cell carries an explicit timestamp; `read_row` always
//! is; `check_and_mutate` and `read_modify_write` never are, so after a failure that may
//! have reached the server they return [`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown).

use std::collections::BTreeMap;

use crate::pb;
use tablet::{Mutation, ReadFilter, ReadModifyWrite, Row};
use tokio::time::Instant;

use crate::cache::Location;
use crate::client::Client;
use crate::convert::{filter_to_pb, idempotent, mutations_to_pb, row_from_pb, rule_to_pb};
use crate::error::Result;
use crate::retry::{decide, describe, Decision};

/// One row's mutations in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowMutation {
    /// The row key.
    pub row: Vec<u8>,
    /// Its changes, applied atomically.
    pub mutations: Vec<Mutation>,
}

impl RowMutation {
    /// A row mutation.
    pub fn new(row: impl Into<Vec<u8>>, mutations: Vec<Mutation>) -> RowMutation {
        RowMutation {
            row: row.into(),
            mutations,
        }
    }
}

/// A row-key sample: a key near which the table's data splits, with the approximate bytes
/// of the table before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowKeySample {
    /// The row key.
    pub row_key: Vec<u8>,
    /// Approximate bytes of the table up to it.
    pub offset_bytes: u64,
}

impl Client {
    /// Applies `mutations` to `row` of `table` atomically; returns once durable.
    pub async fn mutate_row(
        &self,
        table: &str,
        row: &[u8],
        mutations: Vec<Mutation>,
    ) -> Result<()> {
        let idem = idempotent(&mutations);
        let muts = mutations_to_pb(&mutations);
        self.with_tablet("mutate_row", table, row, idem, |mut c, tref| {
            let req = pb::MutateRowRequest {
                tablet: Some(tref),
                row: row.to_vec(),
                mutations: muts.clone(),
                sequencer: None,
            };
            async move { c.mutate_row(req).await }
        })
        .await
        .map(|_| ())
    }

    /// Reads one row through `filter`; `None` when no cell survives.
    pub async fn read_row(
        &self,
        table: &str,
        row: &[u8],
        filter: &ReadFilter,
    ) -> Result<Option<Row>> {
        let filter = filter_to_pb(filter)?;
        let rows = self
            .with_tablet("read_row", table, row, true, |mut c, tref| {
                let req = pb::ReadRowsRequest {
                    tablet: Some(tref),
                    rows: vec![row.to_vec()],
                    ranges: vec![],
                    filter: Some(filter.clone()),
                    rows_limit: 1,
                };
                async move {
                    let mut s = c.read_rows(req).await?.into_inner();
                    let mut rows = Vec::new();
                    while let Some(m) = s.message().await? {
                        rows.extend(m.rows);
                    }
                    Ok(tonic::Response::new(rows))
                }
            })
            .await?;
        Ok(rows.into_iter().find(|r| r.key == row).map(row_from_pb))
    }

    /// If `predicate` passes any cell of `row`, applies `true_mutations`, else
    /// `false_mutations`, atomically. Returns whether the predicate matched. Never retried
    /// after a failure that may have reached the server ([`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown)).
    pub async fn check_and_mutate(
        &self,
        table: &str,
        row: &[u8],
        predicate: &ReadFilter,
        true_mutations: Vec<Mutation>,
        false_mutations: Vec<Mutation>,
    ) -> Result<bool> {
        let predicate = filter_to_pb(predicate)?;
        let (t, f) = (
            mutations_to_pb(&true_mutations),
            mutations_to_pb(&false_mutations),
        );
        let r = self
            .with_tablet("check_and_mutate", table, row, false, |mut c, tref| {
                let req = pb::CheckAndMutateRowRequest {
                    tablet: Some(tref),
                    row: row.to_vec(),
                    predicate: Some(predicate.clone()),
                    true_mutations: t.clone(),
                    false_mutations: f.clone(),
                };
                async move { c.check_and_mutate_row(req).await }
            })
            .await?;
        Ok(r.predicate_matched)
    }

    /// Appends to / increments cells of `row` atomically; returns the new cells. Never
    /// retried after a failure that may have reached the server ([`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown)).
    pub async fn read_modify_write(
        &self,
        table: &str,
        row: &[u8],
        rules: Vec<ReadModifyWrite>,
    ) -> Result<Row> {
        let rules: Vec<pb::ReadModifyWriteRule> = rules.iter().map(rule_to_pb).collect();
        let r = self
            .with_tablet("read_modify_write", table, row, false, |mut c, tref| {
                let req = pb::ReadModifyWriteRowRequest {
                    tablet: Some(tref),
                    row: row.to_vec(),
                    rules: rules.clone(),
                };
                async move { c.read_modify_write_row(req).await }
            })
            .await?;
        Ok(r.row.map(row_from_pb).unwrap_or(Row {
            key: row.to_vec(),
            cells: vec![],
        }))
    }

    /// Row-key samples of every tablet of `table`, in row order (for splitting work).
    pub async fn sample_row_keys(&self, table: &str) -> Result<Vec<RowKeySample>> {
        let tablets = self.table_tablets(table).await?;
        let mut out = Vec::new();
        let mut base = 0u64;
        for rec in tablets {
            // The first row of the tablet locates it (and its end bounds its samples).
            let samples = self
                .with_tablet("sample_row_keys", table, &rec.start, true, |mut c, tref| {
                    let req = pb::SampleRowKeysRequest { tablet: Some(tref) };
                    async move { c.sample_row_keys(req).await }
                })
                .await?
                .samples;
            let mut last = 0;
            for s in samples {
                last = s.offset_bytes;
                out.push(RowKeySample {
                    row_key: s.row_key,
                    offset_bytes: base + s.offset_bytes,
                });
            }
            base += last;
        }
        Ok(out)
    }

    /// Applies many row mutations, batched per tablet (one `MutateRows` per tablet, sent
    /// concurrently). Returns one result per entry, in order. Entries are retried by the
    /// same rules as [`Client::mutate_row`], each by its own idempotence.
    pub async fn mutate_rows(
        &self,
        table: &str,
        entries: Vec<RowMutation>,
    ) -> Result<Vec<Result<()>>> {
        let deadline = self.deadline();
        let mut backoff = self.backoff();
        let mut results: Vec<Option<Result<()>>> = vec![None; entries.len()];
        let mut pending: Vec<usize> = (0..entries.len()).collect();
        while !pending.is_empty() {
            let groups = self
                .group_by_tablet(table, |i| &entries[i].row, &pending, deadline)
                .await?;
            let calls = groups
                .into_values()
                .map(|(loc, idx)| self.mutate_batch(table, loc, idx, &entries, deadline));
            let mut retry = Vec::new();
            for outcome in futures::future::join_all(calls).await {
                for (i, r) in outcome {
                    match r {
                        Some(r) => results[i] = Some(r),
                        None => retry.push(i),
                    }
                }
            }
            retry.sort_unstable();
            pending = retry;
            if !pending.is_empty() {
                let why = format!("{} entries still to retry", pending.len());
                if let Err(e) = self.pause(&mut backoff, deadline, &why).await {
                    for &i in &pending {
                        results[i] = Some(Err(e.clone()));
                    }
                    pending.clear();
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every entry has a result"))
            .collect())
    }

    /// The `pending` indexes grouped by the tablet that holds row `row_of(i)`.
    pub(crate) async fn group_by_tablet<'a>(
        &self,
        table: &str,
        row_of: impl Fn(usize) -> &'a [u8],
        pending: &[usize],
        deadline: Instant,
    ) -> Result<BTreeMap<u64, (Location, Vec<usize>)>> {
        let mut groups: BTreeMap<u64, (Location, Vec<usize>)> = BTreeMap::new();
        for &i in pending {
            let loc = self.locate(table, row_of(i), deadline).await?;
            groups
                .entry(loc.tablet_id)
                .or_insert_with(|| (loc, Vec::new()))
                .1
                .push(i);
        }
        Ok(groups)
    }

    /// One `MutateRows` to one tablet. Per entry: `Some(result)` when final, `None` to
    /// retry.
    async fn mutate_batch(
        &self,
        table: &str,
        loc: Location,
        idx: Vec<usize>,
        entries: &[RowMutation],
        deadline: Instant,
    ) -> Vec<(usize, Option<Result<()>>)> {
        let req = pb::MutateRowsRequest {
            tablet: Some(pb::TabletRef {
                table: table.to_string(),
                tablet_id: loc.tablet_id,
            }),
            entries: idx
                .iter()
                .map(|&i| pb::mutate_rows_request::Entry {
                    row: entries[i].row.clone(),
                    mutations: mutations_to_pb(&entries[i].mutations),
                })
                .collect(),
        };
        let mut client = match self.tablet_client(&loc.server_addr) {
            Ok(c) => c,
            Err(e) => return idx.into_iter().map(|i| (i, Some(Err(e.clone())))).collect(),
        };
        let idem = |i: usize| idempotent(&entries[i].mutations);
        let statuses: Vec<tonic::Status> =
            match self.attempt(deadline, client.mutate_rows(req)).await {
                Ok(resp) => {
                    let mut st =
                        vec![tonic::Status::internal("no status for this entry"); idx.len()];
                    for s in resp.statuses {
                        if let Some(slot) = st.get_mut(s.index as usize) {
                            *slot = tonic::Status::new(tonic::Code::from_i32(s.code), s.message);
                        }
                    }
                    st
                }
                Err(s) => vec![s; idx.len()],
            };
        let mut relocate = false;
        let out = idx
            .iter()
            .zip(statuses)
            .map(|(&i, s)| {
                if s.code() == tonic::Code::Ok {
                    return (i, Some(Ok(())));
                }
                match decide("mutate_rows", &s, idem(i)) {
                    Decision::Fail(e) => (i, Some(Err(e))),
                    Decision::Retry { relocate: r } => {
                        tracing::debug!(table, entry = i, "retry: {}", describe(&s));
                        relocate |= r;
                        (i, None)
                    }
                }
            })
            .collect();
        if relocate {
            self.forget(table, &loc);
        }
        out
    }
}
