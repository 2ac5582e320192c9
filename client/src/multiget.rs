//! Multi-get: many single-row reads in one call ([`Client::read_rows_by_key`]).
//!
//! The keys are grouped by tablet (the location cache, as for `mutate_rows`), then the
//! tablets by server: a server holding one of the tablets gets one `ReadRows` naming its
//! keys, a server holding several gets one `ReadRowsMulti` naming every tablet's keys
//! (each tablet's read succeeds or fails on its own), the servers asked concurrently. Hashed
//! keys scatter over every tablet, so grouping by tablet alone cut a 100-key multi-get
//! into as many small requests as the table has tablets. A server answers each tablet's
//! keys in request order, leaving out rows with no surviving cell, so an answer is matched
//! back to the keys by walking both in order.
//! Reads are idempotent: a group whose request fails with a retryable status (moved
//! tablet, lost lease, timeout) is located again and retried as a whole, with backoff,
//! until the operation's deadline; a non-retryable failure fails the call.

use std::collections::BTreeMap;

use tablet::{ReadFilter, Row};
use tokio::time::Instant;

use crate::cache::Location;
use crate::client::Client;
use crate::convert::{filter_to_pb, row_from_pb};
use crate::error::Result;
use crate::pb;
use crate::retry::{decide, describe, Decision};

impl Client {
    /// Reads the rows `keys` of `table` through `filter`: result `i` is row `keys[i]`, or
    /// `None` when no cell of it survives. One `ReadRows` per tablet instead of one per
    /// row, so a batch of reads costs a few round trips and requests.
    pub async fn read_rows_by_key(
        &self,
        table: &str,
        keys: &[Vec<u8>],
        filter: &ReadFilter,
    ) -> Result<Vec<Option<Row>>> {
        let filter = filter_to_pb(filter)?;
        let deadline = self.deadline();
        let mut backoff = self.backoff();
        let mut out: Vec<Option<Row>> = vec![None; keys.len()];
        let mut pending: Vec<usize> = (0..keys.len()).collect();
        while !pending.is_empty() {
            let groups = self
                .group_by_tablet(table, |i| &keys[i], &pending, deadline)
                .await?;
            let mut by_server: BTreeMap<String, Vec<(Location, Vec<usize>)>> = BTreeMap::new();
            for (loc, idx) in groups.into_values() {
                by_server
                    .entry(loc.server_addr.clone())
                    .or_default()
                    .push((loc, idx));
            }
            let filter = &filter;
            let calls = by_server.into_values().map(|mut tablets| async move {
                if tablets.len() == 1 {
                    let (loc, idx) = tablets.pop().expect("one tablet");
                    vec![
                        self.read_group(table, loc, idx, keys, filter, deadline)
                            .await,
                    ]
                } else {
                    self.read_server(table, tablets, keys, filter, deadline)
                        .await
                }
            });
            let mut retry = Vec::new();
            let mut why = String::new();
            for outcome in futures::future::join_all(calls).await.into_iter().flatten() {
                match outcome {
                    Ok(rows) => {
                        for (i, row) in rows {
                            out[i] = Some(row);
                        }
                    }
                    Err((idx, status)) => match decide("read_rows_by_key", &status, true) {
                        Decision::Fail(e) => return Err(e),
                        Decision::Retry { .. } => {
                            why = describe(&status);
                            retry.extend(idx);
                        }
                    },
                }
            }
            retry.sort_unstable();
            pending = retry;
            if !pending.is_empty() {
                self.pause(&mut backoff, deadline, &why).await?;
            }
        }
        Ok(out)
    }

    /// One `ReadRows` for the keys `idx` of one tablet: the rows found, by key index, or
    /// the indexes back with the status that failed them.
    async fn read_group(
        &self,
        table: &str,
        loc: Location,
        idx: Vec<usize>,
        keys: &[Vec<u8>],
        filter: &pb::Filter,
        deadline: Instant,
    ) -> GroupResult {
        let req = pb::ReadRowsRequest {
            tablet: Some(pb::TabletRef {
                table: table.to_string(),
                tablet_id: loc.tablet_id,
            }),
            rows: idx.iter().map(|&i| keys[i].clone()).collect(),
            ranges: vec![],
            filter: Some(filter.clone()),
            rows_limit: 0,
        };
        let mut client = match self.tablet_client(&loc.server_addr) {
            Ok(c) => c,
            Err(e) => {
                let status = tonic::Status::unavailable(e.to_string());
                return Err((idx, status));
            }
        };
        let call = async move {
            let mut s = client.read_rows(req).await?.into_inner();
            let mut rows = Vec::new();
            while let Some(m) = s.message().await? {
                rows.extend(m.rows);
            }
            Ok(tonic::Response::new(rows))
        };
        let rows = match self.attempt(deadline, call).await {
            Ok(rows) => rows,
            Err(status) => return self.failed_read(table, &loc, idx, status),
        };
        Ok(match_rows(&idx, keys, rows))
    }

    /// One `ReadRowsMulti` to the server of `tablets` (all on one server): per tablet, the
    /// rows found by key index, or its indexes back with the status that failed them.
    async fn read_server(
        &self,
        table: &str,
        tablets: Vec<(Location, Vec<usize>)>,
        keys: &[Vec<u8>],
        filter: &pb::Filter,
        deadline: Instant,
    ) -> Vec<GroupResult> {
        let addr = tablets[0].0.server_addr.clone();
        let req = pb::ReadRowsMultiRequest {
            reads: tablets
                .iter()
                .map(|(loc, idx)| pb::read_rows_multi_request::TabletRows {
                    tablet: Some(pb::TabletRef {
                        table: table.to_string(),
                        tablet_id: loc.tablet_id,
                    }),
                    rows: idx.iter().map(|&i| keys[i].clone()).collect(),
                })
                .collect(),
            filter: Some(filter.clone()),
        };
        let all_failed = |tablets: Vec<(Location, Vec<usize>)>, status: tonic::Status| {
            tablets
                .into_iter()
                .map(|(loc, idx)| self.failed_read(table, &loc, idx, status.clone()))
                .collect()
        };
        let mut client = match self.tablet_client(&addr) {
            Ok(c) => c,
            Err(e) => return all_failed(tablets, tonic::Status::unavailable(e.to_string())),
        };
        let n = tablets.len();
        let call = async move {
            let mut s = client.read_rows_multi(req).await?.into_inner();
            let mut answers: Vec<pb::ReadRowsMultiResponse> = Vec::new();
            while let Some(m) = s.message().await? {
                answers.push(m);
            }
            Ok(tonic::Response::new(answers))
        };
        let answers = match self.attempt(deadline, call).await {
            Ok(a) => a,
            Err(status) => return all_failed(tablets, status),
        };
        let mut rows: Vec<Vec<pb::Row>> = vec![Vec::new(); n];
        let mut failed: Vec<Option<tonic::Status>> = vec![None; n];
        let mut done = vec![false; n];
        for a in answers {
            let r = a.read as usize;
            if r >= n {
                let s = tonic::Status::internal(format!("ReadRowsMulti answered read {r} of {n}"));
                return all_failed(tablets, s);
            }
            if a.code != 0 {
                failed[r] = Some(tablet::server::convert::multi_status(&a));
            }
            rows[r].extend(a.rows);
            done[r] |= a.done;
        }
        tablets
            .into_iter()
            .zip(rows.into_iter().zip(failed.into_iter().zip(done)))
            .map(|((loc, idx), (rows, (failed, done)))| {
                let failed = failed.or_else(|| {
                    (!done).then(|| tonic::Status::internal("ReadRowsMulti left a read unfinished"))
                });
                match failed {
                    Some(status) => self.failed_read(table, &loc, idx, status),
                    None => Ok(match_rows(&idx, keys, rows)),
                }
            })
            .collect()
    }

    /// A tablet's read failed with `status`: its cached location is dropped when the
    /// failure says to look the tablet up again, and its keys go back for a retry.
    fn failed_read(
        &self,
        table: &str,
        loc: &Location,
        idx: Vec<usize>,
        status: tonic::Status,
    ) -> GroupResult {
        if decide("read_rows_by_key", &status, true) == (Decision::Retry { relocate: true }) {
            self.forget(table, loc);
        }
        Err((idx, status))
    }
}

/// One tablet's outcome: the rows found by key index, or the indexes with their failure.
type GroupResult = std::result::Result<Vec<(usize, Row)>, (Vec<usize>, tonic::Status)>;

/// Matches a tablet's answer (rows in request order, missing ones left out) to the keys.
fn match_rows(idx: &[usize], keys: &[Vec<u8>], rows: Vec<pb::Row>) -> Vec<(usize, Row)> {
    let mut found = Vec::with_capacity(rows.len());
    let mut want = idx.iter();
    for row in rows {
        for &i in want.by_ref() {
            if keys[i] == row.key {
                found.push((i, row_from_pb(row)));
                break;
            }
        }
    }
    found
}
