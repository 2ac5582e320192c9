//! Scans: a stream of rows over a row range that continues across tablet boundaries.
//!
//! A scan is a background task feeding a bounded channel (so a slow consumer slows the
//! scan, and dropping the stream stops it). It reads the tablet holding the next row to
//! return, from that row to the end of the scan range (the server clips the range to its
//! tablet and marks the last message `done`), then moves on to the next tablet at the
//! finished tablet's end row. Each row returned advances the resume point to just past its
//! key, so a failed tablet read (server died, tablet moved or split) is retried from there
//! after a fresh location lookup, and no row is returned twice or skipped. The deadline
//! and backoff restart whenever rows arrive; one message may take at most the attempt
//! timeout. A row limit counts rows over the whole scan.

use std::pin::Pin;
use std::task::{Context, Poll};

use crate::pb;
use tablet::{ReadFilter, Row, RowRange};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::Client;
use crate::convert::{filter_to_pb, row_from_pb};
use crate::error::Result;
use crate::retry::{decide, describe, Decision};

/// Rows buffered between the scan task and the consumer.
const SCAN_BUFFER_ROWS: usize = 256;

/// Starts the scan task (deferred to the first poll, which runs inside a Tokio runtime,
/// so a stream may be created anywhere).
type Starter = Box<dyn FnOnce() + Send>;

/// The rows of a scan, in key order. The scan starts when the stream is first polled;
/// dropping the stream stops it.
pub struct RowStream {
    rx: mpsc::Receiver<Result<Row>>,
    start: Option<Starter>,
}

impl futures::Stream for RowStream {
    type Item = Result<Row>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.ensure_started();
        self.rx.poll_recv(cx)
    }
}

impl RowStream {
    fn ensure_started(&mut self) {
        if let Some(start) = self.start.take() {
            start();
        }
    }

    /// The next row (`None` at the end of the scan).
    pub async fn next_row(&mut self) -> Option<Result<Row>> {
        self.ensure_started();
        self.rx.recv().await
    }

    /// Every remaining row.
    pub async fn collect_rows(mut self) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        while let Some(r) = self.next_row().await {
            out.push(r?);
        }
        Ok(out)
    }
}

/// The range of every row starting with `prefix`.
pub fn prefix_range(prefix: &[u8]) -> RowRange {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return RowRange::new(prefix, &end);
        }
    }
    RowRange::new(prefix, b"")
}

/// The smallest key after `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// How one tablet read ended.
enum Outcome {
    /// The tablet's part of the range is done.
    TabletDone,
    /// The row limit was reached or the consumer went away: stop.
    Stop,
    /// The read failed; retry from the resume point if the classification allows.
    Failed(tonic::Status),
}

struct ScanState {
    table: String,
    range: RowRange,
    filter: pb::Filter,
    /// Rows still wanted (`None`: no limit).
    remaining: Option<u64>,
    /// The next row key that may be returned.
    next: Vec<u8>,
    tx: mpsc::Sender<Result<Row>>,
}

impl Client {
    /// Scans `range` of `table` through `filter`, returning at most `rows_limit` rows
    /// (0: no limit), in key order, across tablet boundaries.
    pub fn read_rows(
        &self,
        table: &str,
        range: RowRange,
        filter: &ReadFilter,
        rows_limit: u64,
    ) -> RowStream {
        let (tx, rx) = mpsc::channel(SCAN_BUFFER_ROWS);
        let start: Option<Starter> = match filter_to_pb(filter) {
            Err(e) => {
                let _ = tx.try_send(Err(e));
                None
            }
            Ok(filter) => {
                let st = ScanState {
                    table: table.to_string(),
                    next: range.start.clone(),
                    range,
                    filter,
                    remaining: (rows_limit > 0).then_some(rows_limit),
                    tx,
                };
                let client = self.clone();
                Some(Box::new(move || {
                    tokio::spawn(async move { client.run_scan(st).await });
                }))
            }
        };
        RowStream { rx, start }
    }

    async fn run_scan(&self, mut st: ScanState) {
        let mut deadline = self.deadline();
        let mut backoff = self.backoff();
        loop {
            if !st.range.end.is_empty() && st.next >= st.range.end {
                return;
            }
            let loc = match self.locate(&st.table, &st.next, deadline).await {
                Ok(l) => l,
                Err(e) => return drop(st.tx.send(Err(e)).await),
            };
            let before = st.next.clone();
            match self
                .scan_tablet(&mut st, loc.tablet_id, &loc.server_addr)
                .await
            {
                Outcome::Stop => return,
                Outcome::TabletDone => {
                    if loc.end.is_empty() {
                        return;
                    }
                    if st.next < loc.end {
                        st.next = loc.end.clone();
                    }
                    deadline = self.deadline();
                    backoff.reset();
                }
                Outcome::Failed(s) => {
                    if st.next != before {
                        deadline = self.deadline();
                        backoff.reset();
                    }
                    match decide("read_rows", &s, true) {
                        Decision::Fail(e) => return drop(st.tx.send(Err(e)).await),
                        Decision::Retry { relocate } => {
                            if relocate {
                                self.forget(&st.table, &loc);
                            }
                            if let Err(e) = self.pause(&mut backoff, deadline, &describe(&s)).await
                            {
                                return drop(st.tx.send(Err(e)).await);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Reads the tablet `tablet_id` at `addr` from `st.next` on, forwarding rows.
    async fn scan_tablet(&self, st: &mut ScanState, tablet_id: u64, addr: &str) -> Outcome {
        let mut client = match self.tablet_client(addr) {
            Ok(c) => c,
            Err(e) => return Outcome::Failed(tonic::Status::invalid_argument(e.to_string())),
        };
        let req = pb::ReadRowsRequest {
            tablet: Some(pb::TabletRef {
                table: st.table.clone(),
                tablet_id,
            }),
            rows: vec![],
            ranges: vec![pb::RowRange {
                start: st.next.clone(),
                end: st.range.end.clone(),
            }],
            filter: Some(st.filter.clone()),
            rows_limit: st.remaining.unwrap_or(0),
        };
        let step = self.config().attempt_timeout;
        let deadline = Instant::now() + step;
        let mut stream = match self.attempt(deadline, client.read_rows(req)).await {
            Ok(s) => s,
            Err(s) => return Outcome::Failed(s),
        };
        loop {
            let msg = match tokio::time::timeout(step, stream.message()).await {
                Ok(Ok(Some(m))) => m,
                Ok(Ok(None)) => {
                    return Outcome::Failed(tonic::Status::unavailable("read stream ended early"))
                }
                Ok(Err(s)) => return Outcome::Failed(s),
                Err(_) => return Outcome::Failed(tonic::Status::deadline_exceeded("scan stalled")),
            };
            for row in msg.rows {
                if row.key < st.next {
                    continue; // never return a row twice
                }
                st.next = successor(&row.key);
                if st.tx.send(Ok(row_from_pb(row))).await.is_err() {
                    return Outcome::Stop;
                }
                if let Some(n) = st.remaining.as_mut() {
                    *n -= 1;
                    if *n == 0 {
                        return Outcome::Stop;
                    }
                }
            }
            if msg.done {
                return Outcome::TabletDone;
            }
        }
    }

    /// Counts the rows of `table` in `range` (values stripped, one cell per row).
    pub async fn count_rows(&self, table: &str, range: RowRange) -> Result<u64> {
        let filter = ReadFilter {
            cells_per_row: Some(1),
            strip_value: true,
            ..ReadFilter::default()
        };
        let mut s = self.read_rows(table, range, &filter, 0);
        let mut n = 0;
        while let Some(r) = s.next_row().await {
            r?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_end_at_the_next_prefix() {
        assert_eq!(prefix_range(b"ab"), RowRange::new(b"ab", b"ac"));
        assert_eq!(prefix_range(b"a\xff"), RowRange::new(b"a\xff", b"b"));
        assert_eq!(prefix_range(b"\xff\xff"), RowRange::new(b"\xff\xff", b""));
        assert_eq!(prefix_range(b""), RowRange::new(b"", b""));
    }

    #[test]
    fn the_successor_is_the_smallest_larger_key() {
        assert_eq!(successor(b"a"), b"a\0");
        assert!(successor(b"a").as_slice() > b"a".as_slice());
        assert!(successor(b"a").as_slice() < b"a\x01".as_slice());
    }
}
