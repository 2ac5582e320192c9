//! Multi-get: many single-row reads in one call ([`Client::read_rows_by_key`]).
//!
//! The keys are grouped by tablet (the location cache, as for `mutate_rows`) and each
//! group is one `ReadRows` request naming its keys, the groups sent concurrently. A
//! tablet server answers a keyed `ReadRows` in key order, leaving out rows with no
//! surviving cell, so the answer is matched back to the keys by walking both in order.
//! Reads are idempotent: a group whose request fails with a retryable status (moved
//! tablet, lost lease, timeout) is located again and retried as a whole, with backoff,
//! until the operation's deadline; a non-retryable failure fails the call.

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
            let calls = groups
                .into_values()
                .map(|(loc, idx)| self.read_group(table, loc, idx, keys, &filter, deadline));
            let mut retry = Vec::new();
            let mut why = String::new();
            for outcome in futures::future::join_all(calls).await {
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
    ) -> std::result::Result<Vec<(usize, Row)>, (Vec<usize>, tonic::Status)> {
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
            Err(status) => {
                if decide("read_rows_by_key", &status, true) == (Decision::Retry { relocate: true })
                {
                    self.forget(table, &loc);
                }
                return Err((idx, status));
            }
        };
        let mut found = Vec::with_capacity(rows.len());
        let mut want = idx.iter();
        for row in rows {
            // Rows come back in request order, missing ones left out.
            for &i in want.by_ref() {
                if keys[i] == row.key {
                    found.push((i, row_from_pb(row)));
                    break;
                }
            }
        }
        Ok(found)
    }
}
