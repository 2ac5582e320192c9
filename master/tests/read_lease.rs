//! A tablet server checks its lease before every message of a ReadRows stream, not only when
//! the request starts (DESIGN.md section 5: nothing read after the lease ended may leave the
//! server). A long scan whose server loses its lease midway ends with `not-serving`; it does
//! not run on to its end on rows read after the lease, which a new owner may already have
//! overwritten.
//!
//! In this process: a one-replica lock service and a tablet server (real files and sockets);
//! the test holds the master lock itself, loads one tablet, fills it, opens a scan and reads
//! one message, then shuts the lock service down so the server's KeepAlives go unanswered
//! and its local lease lapses. Only then does it read the rest of the stream.

mod harness;

use harness::*;
use master::metadata::descriptor;
use master::tpb;
use tablet::meta::TabletRecord;
use tablet::Schema;

/// Rows in the tablet and bytes per value: about 24 MiB, far more than the stream's
/// buffers (4 messages in the server's channel plus HTTP/2 windows of a few MiB) hold, so
/// most of the scan can only be read after the lease lapsed.
const ROWS: usize = 100_000;
const VALUE: usize = 240;

fn tablet_ref() -> Option<tpb::TabletRef> {
    Some(tpb::TabletRef {
        table: "t".into(),
        tablet_id: 7,
    })
}

fn set(value: &[u8]) -> tpb::Mutation {
    tpb::Mutation {
        kind: Some(tpb::mutation::Kind::SetCell(tpb::mutation::SetCell {
            family: "f".into(),
            qualifier: b"q".to_vec(),
            timestamp: -1,
            value: value.to_vec(),
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scan_that_outlives_the_lease_ends_with_not_serving() {
    let LockAndServer {
        dir: _dir,
        lock,
        lock_addr,
        listen,
        server: server_task,
        ..
    } = lock_and_server(|_| {}).await;

    // Play the master: hold the master lock and load one tablet with it.
    // (The session is bound, not dropped: it holds the master lock.)
    let ActingMaster {
        seq,
        mut ts,
        server_id: me,
        session: _session,
        client: _client,
    } = act_as_master(&lock_addr, listen).await;
    let record = TabletRecord {
        table: "t".into(),
        table_id: 1,
        tablet_id: 7,
        start: Vec::new(),
        end: Vec::new(),
        dir: "tables/1/7".into(),
        server_id: String::new(),
        server_addr: String::new(),
        epoch: 0,
    };
    ts.load_tablet(tpb::LoadTabletRequest {
        tablet: Some(descriptor(&record, &Schema::with_families(["f"]))),
        epoch: 1,
        create: true,
        master: Some(seq),
        server_id: me,
    })
    .await
    .unwrap();

    let value = vec![b'v'; VALUE];
    for batch in 0..ROWS / 1000 {
        let entries = (batch * 1000..(batch + 1) * 1000)
            .map(|i| tpb::mutate_rows_request::Entry {
                row: format!("r{i:06}").into_bytes(),
                mutations: vec![set(&value)],
            })
            .collect();
        let r = ts
            .mutate_rows(tpb::MutateRowsRequest {
                tablet: tablet_ref(),
                entries,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.statuses.iter().all(|s| s.code == 0), "{:?}", r.statuses);
    }

    // A scan of the whole tablet, one message read while the lease is valid.
    let scan = tpb::ReadRowsRequest {
        tablet: tablet_ref(),
        ..Default::default()
    };
    let mut stream = ts.read_rows(scan).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().expect("a first message");
    assert!(!first.rows.is_empty() && !first.done);
    let mut received = first.rows.len();

    // Cut the server off: with the lock service gone its local lease lapses. A new request
    // failing shows that it has (the first answers not-serving; the server then shuts its
    // listener down, so later ones may fail to connect instead).
    lock.shutdown().await;
    let point = tpb::ReadRowsRequest {
        tablet: tablet_ref(),
        rows: vec![b"r000000".to_vec()],
        ..Default::default()
    };
    let first_refusal = wait_for("a refused read", failover_bound() * 2, || {
        let mut ts = ts.clone();
        let point = point.clone();
        async move {
            match ts.read_rows(point).await {
                Err(e) => Some(e),
                Ok(s) => s.into_inner().message().await.err(),
            }
        }
    })
    .await;
    eprintln!("lease lapsed: a new read got {first_refusal:?}");

    // The rest of the scan: what the buffers held, then not-serving; never its end.
    let end = loop {
        match stream.message().await {
            Ok(Some(m)) => {
                received += m.rows.len();
                assert!(
                    !m.done,
                    "the scan ran to its end ({received} rows) after the lease lapsed"
                );
            }
            Ok(None) => panic!("the scan ended without an answer after {received} rows"),
            Err(e) => break e,
        }
    };
    eprintln!("scan ended after {received} of {ROWS} rows with {end:?}");
    // Its last message says not-serving, unless the server, shutting down once it has
    // stopped serving, closed the connection first (a reset also discards what the
    // client's socket still held): either way the scan failed and the client retries
    // elsewhere. Without the per-message check neither happens: the stream stays open
    // through the graceful shutdown and runs to `done`.
    let transport = std::error::Error::source(&end).is_some();
    assert!(tag(&end) == "not-serving" || transport, "{end:?}");
    assert!(received < ROWS);
    let _ = server_task.await;
}
