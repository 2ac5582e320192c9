//! The client's routing and retry rules against scripted tablet servers and a real lock
//! service (see `fake/mod.rs`): scans across tablets, relocation after `not-serving` and
//! moves, resumption of broken scans, batching per tablet, and — RELIABILITY.md T8 — that
//! a non-idempotent operation is never sent twice after a failure that may have followed
//! the work, while one that provably never arrived is retried.

mod fake;

use std::sync::Arc;
use std::time::Duration;

use client::{
    Client, ClientConfig, Error, Mutation, ReadFilter, ReadModifyWrite, RowMutation, RowRange,
};
use fake::{record, FakeServer, Fault, LockService, World};
use parking_lot::Mutex;
use tablet::meta;
use tablet::SERVER_TIMESTAMP;

/// Table `t` (id 1): tablet 1 = [.., "m") on A (which also serves METADATA), tablet 2 =
/// ["m", ..) on B.
struct Setup {
    lock: LockService,
    world: Arc<Mutex<World>>,
    a: FakeServer,
    b: FakeServer,
}

impl Setup {
    async fn start() -> Setup {
        let lock = LockService::start().await;
        lock.init().await;
        let world = Arc::new(Mutex::new(World::default()));
        let a = FakeServer::start(world.clone()).await;
        let b = FakeServer::start(world.clone()).await;
        a.serve(meta::METADATA_TABLE, meta::METADATA_TABLET_ID, b"", b"");
        a.serve("t", 1, b"", b"m");
        b.serve("t", 2, b"m", b"");
        let root = record(meta::METADATA_TABLE, 0, 0, b"", b"", &a.addr.to_string(), 1);
        lock.put(meta::ROOT_TABLET_PATH, &root.to_json()).await;
        lock.put_table("t", 1).await;
        let s = Setup { lock, world, a, b };
        s.set_record(1, b"", b"m", &s.a.addr.to_string(), 1);
        s.set_record(2, b"m", b"", &s.b.addr.to_string(), 1);
        s
    }

    fn set_record(&self, tablet: u64, start: &[u8], end: &[u8], addr: &str, epoch: u64) {
        let r = record("t", 1, tablet, start, end, addr, epoch);
        self.world.lock().metadata.insert(r.key(), r);
    }

    fn client(&self) -> Client {
        let mut cfg = ClientConfig::new(vec![self.lock.addr.clone()]);
        cfg.operation_timeout = Duration::from_secs(20);
        cfg.backoff_initial = Duration::from_millis(2);
        cfg.backoff_max = Duration::from_millis(50);
        Client::new(cfg).unwrap()
    }

    fn counter(&self, row: &str) -> Option<i64> {
        let w = self.world.lock();
        let cells = w.rows.get(&("t".to_string(), row.as_bytes().to_vec()))?;
        Some(i64::from_be_bytes(
            cells[0].value.clone().try_into().unwrap(),
        ))
    }
}

fn set(row: &str, ts: i64) -> RowMutation {
    RowMutation::new(
        row.as_bytes(),
        vec![Mutation::set("f", b"q", ts, row.as_bytes())],
    )
}

fn incr(delta: i64) -> Vec<ReadModifyWrite> {
    vec![ReadModifyWrite::Increment {
        family: "f".into(),
        qualifier: b"n".to_vec(),
        delta,
    }]
}

fn letters() -> Vec<String> {
    (b'a'..=b'z').map(|c| (c as char).to_string()).collect()
}

async fn write_letters(c: &Client) {
    let entries = letters().iter().map(|r| set(r, 10)).collect();
    let results = c.mutate_rows("t", entries).await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

fn keys(rows: &[client::Row]) -> Vec<String> {
    rows.iter()
        .map(|r| String::from_utf8(r.key.clone()).unwrap())
        .collect()
}

#[tokio::test]
async fn batches_go_one_call_per_tablet_and_scans_cross_tablets_without_repeats() {
    let s = Setup::start().await;
    let c = s.client();
    write_letters(&c).await;
    assert_eq!((s.a.calls("mutate_rows"), s.b.calls("mutate_rows")), (1, 1));

    let all = c
        .read_rows("t", RowRange::all(), &ReadFilter::default(), 0)
        .collect_rows()
        .await
        .unwrap();
    assert_eq!(keys(&all), letters());
    let first = c
        .read_rows("t", RowRange::all(), &ReadFilter::default(), 15)
        .collect_rows()
        .await
        .unwrap();
    assert_eq!(keys(&first), letters()[..15]);
    let mid = c
        .read_rows("t", RowRange::new(b"k", b"p"), &ReadFilter::default(), 0)
        .collect_rows()
        .await
        .unwrap();
    assert_eq!(keys(&mid), ["k", "l", "m", "n", "o"]);
    assert_eq!(c.count_rows("t", RowRange::all()).await.unwrap(), 26);
}

#[tokio::test]
async fn a_broken_scan_resumes_after_the_last_row_returned() {
    let s = Setup::start().await;
    let c = s.client();
    write_letters(&c).await;
    s.a.inject("read_rows", Fault::BreakAfterRows(3));
    s.b.inject("read_rows", Fault::BreakAfterRows(5));
    let all = c
        .read_rows("t", RowRange::all(), &ReadFilter::default(), 0)
        .collect_rows()
        .await
        .unwrap();
    assert_eq!(keys(&all), letters(), "no row repeated or skipped");
    assert_eq!((s.a.calls("read_rows"), s.b.calls("read_rows")), (2, 2));
}

#[tokio::test]
async fn an_idempotent_write_is_retried_after_not_serving_with_a_fresh_lookup() {
    let s = Setup::start().await;
    let c = s.client();
    c.mutate_row("t", b"c", vec![Mutation::set("f", b"q", 5, b"v")])
        .await
        .unwrap();
    let lookups = s.a.calls("read_metadata");
    s.a.inject("mutate_row", Fault::NotServingAfter);
    c.mutate_row("t", b"c", vec![Mutation::set("f", b"q", 6, b"w")])
        .await
        .unwrap();
    assert_eq!(s.a.calls("mutate_row"), 3);
    assert!(
        s.a.calls("read_metadata") > lookups,
        "the location was looked up again"
    );
}

#[tokio::test]
async fn a_server_timestamp_write_whose_reply_was_lost_is_outcome_unknown() {
    let s = Setup::start().await;
    let c = s.client();
    s.a.inject("mutate_row", Fault::LostReply);
    let r = c
        .mutate_row(
            "t",
            b"c",
            vec![Mutation::set("f", b"q", SERVER_TIMESTAMP, b"v")],
        )
        .await;
    assert!(
        matches!(
            r,
            Err(Error::OutcomeUnknown {
                op: "mutate_row",
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(s.a.calls("mutate_row"), 1, "never sent twice");
}

#[tokio::test]
async fn an_increment_is_never_sent_twice_after_a_lost_reply_or_late_not_serving() {
    let s = Setup::start().await;
    let c = s.client();
    s.a.inject("read_modify_write", Fault::LostReply);
    let r = c.read_modify_write("t", b"k", incr(5)).await;
    assert!(
        matches!(
            r,
            Err(Error::OutcomeUnknown {
                op: "read_modify_write",
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(s.a.calls("read_modify_write"), 1);
    assert_eq!(s.counter("k"), Some(5), "applied exactly once");

    s.a.inject("read_modify_write", Fault::NotServingAfter);
    let r = c.read_modify_write("t", b"k", incr(5)).await;
    assert!(matches!(r, Err(Error::OutcomeUnknown { .. })), "{r:?}");
    assert_eq!(s.a.calls("read_modify_write"), 2);
    assert_eq!(s.counter("k"), Some(10));

    let row = c.read_modify_write("t", b"k", incr(1)).await.unwrap();
    assert_eq!(row.cells[0].value, 11i64.to_be_bytes());
}

#[tokio::test]
async fn check_and_mutate_is_retried_only_when_the_server_proves_it_did_nothing() {
    let s = Setup::start().await;
    let c = s.client();
    let all = ReadFilter::default();
    let cam = || {
        c.check_and_mutate(
            "t",
            b"x",
            &all,
            vec![],
            vec![Mutation::set("f", b"q", 1, b"new")],
        )
    };
    // wrong-range and a vouched not-serving prove nothing happened: retried.
    s.b.inject("check_and_mutate", Fault::WrongRange);
    s.b.inject("check_and_mutate", Fault::NotServingVouched);
    assert!(!cam().await.unwrap());
    assert_eq!(s.b.calls("check_and_mutate"), 3);
    // A bare not-serving may follow the work: not retried.
    s.b.inject("check_and_mutate", Fault::NotServingBefore);
    let r = cam().await;
    assert!(
        matches!(
            r,
            Err(Error::OutcomeUnknown {
                op: "check_and_mutate",
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(s.b.calls("check_and_mutate"), 4);
}

#[tokio::test]
async fn a_moved_tablet_is_found_at_its_new_server() {
    let s = Setup::start().await;
    let c = s.client();
    c.mutate_row("t", b"x", vec![Mutation::set("f", b"q", 1, b"v")])
        .await
        .unwrap();
    assert!(c
        .read_row("t", b"x", &ReadFilter::default())
        .await
        .unwrap()
        .is_some());
    // Move tablet 2 from B to A (the data root is shared).
    s.b.unserve("t", 2);
    s.a.serve("t", 2, b"m", b"");
    s.set_record(2, b"m", b"", &s.a.addr.to_string(), 2);
    let row = c
        .read_row("t", b"x", &ReadFilter::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.cells[0].value, b"v");
    assert_eq!(
        s.b.calls("read_rows"),
        2,
        "one read before the move, one refused after"
    );
    assert_eq!(s.a.calls("read_rows"), 1);
}

#[tokio::test]
async fn a_refused_connection_proves_nothing_was_sent_so_an_increment_is_retried() {
    let s = Setup::start().await;
    let c = s.client();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    s.set_record(2, b"m", b"", &dead, 2);
    // Once the client has looked up the dead location and come back for a fresh one,
    // point METADATA at B again.
    let (a, world) = (s.a.clone(), s.world.clone());
    let b_addr = s.b.addr.to_string();
    let fixer = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while a.calls("read_metadata") < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the client never looked again"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let r = record("t", 1, 2, b"m", b"", &b_addr, 3);
        world.lock().metadata.insert(r.key(), r);
    });
    let row = c.read_modify_write("t", b"x", incr(7)).await.unwrap();
    fixer.await.unwrap();
    assert_eq!(row.cells[0].value, 7i64.to_be_bytes());
    assert_eq!(s.b.calls("read_modify_write"), 1);
    assert_eq!(s.counter("x"), Some(7));
}

#[tokio::test]
async fn batch_entries_retry_by_their_own_idempotence() {
    let s = Setup::start().await;
    let c = s.client();
    s.b.inject("mutate_rows", Fault::LostReply);
    let entries = vec![
        set("a", 1),
        set("n", 1),
        RowMutation::new(
            b"p".to_vec(),
            vec![Mutation::set("f", b"q", SERVER_TIMESTAMP, b"v")],
        ),
    ];
    let r = c.mutate_rows("t", entries).await.unwrap();
    assert!(r[0].is_ok());
    assert!(r[1].is_ok(), "explicit timestamps: retried");
    assert!(
        matches!(r[2], Err(Error::OutcomeUnknown { .. })),
        "{:?}",
        r[2]
    );
    assert_eq!(
        s.b.calls("mutate_rows"),
        2,
        "the retry carried only the idempotent entry"
    );
}

#[tokio::test]
async fn unknown_tables_are_not_found_and_samples_cover_every_tablet() {
    let s = Setup::start().await;
    let c = s.client();
    let r = c.read_row("nope", b"a", &ReadFilter::default()).await;
    assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}");
    let samples = c.sample_row_keys("t").await.unwrap();
    let ends: Vec<(Vec<u8>, u64)> = samples
        .into_iter()
        .map(|s| (s.row_key, s.offset_bytes))
        .collect();
    assert_eq!(ends, [(b"m".to_vec(), 100), (vec![], 200)]);
}

#[test]
fn a_scan_may_be_created_outside_a_runtime_and_starts_when_polled() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(Setup::start());
    let c = s.client();
    rt.block_on(write_letters(&c));
    let stream = c.read_rows("t", RowRange::all(), &ReadFilter::default(), 3);
    let rows = rt.block_on(stream.collect_rows()).unwrap();
    assert_eq!(keys(&rows), ["a", "b", "c"]);
    rt.block_on(async move { drop(s) });
}

#[tokio::test]
async fn a_buffered_mutator_sends_full_requests_per_tablet_and_flush_sends_the_rest() {
    // Rows alternate between the two tablets; with 4 rows per request each tablet gets a
    // request as soon as 4 of its rows are buffered, never one per row, and nothing else
    // until flush sends the remainders.
    let s = Setup::start().await;
    let c = s.client();
    let mut m = c.buffered_mutator("t", 4);
    let rows = ["a", "n", "b", "o", "c", "p", "d", "q", "e", "r"];
    for (i, r) in rows.iter().enumerate() {
        m.mutate(set(r, 10)).await.unwrap();
        let sent = (s.a.calls("mutate_rows"), s.b.calls("mutate_rows"));
        let want = if i >= 7 {
            (1, 1)
        } else if i >= 6 {
            (1, 0)
        } else {
            (0, 0)
        };
        assert_eq!(sent, want, "after row {r}");
    }
    assert_eq!(m.buffered_rows(), 2);
    assert!(!s
        .world
        .lock()
        .rows
        .contains_key(&("t".into(), b"e".to_vec())));
    m.flush().await.unwrap();
    assert_eq!(m.buffered_rows(), 0);
    assert_eq!((s.a.calls("mutate_rows"), s.b.calls("mutate_rows")), (2, 2));
    let all = c
        .read_rows("t", RowRange::all(), &ReadFilter::default(), 0)
        .collect_rows()
        .await
        .unwrap();
    let mut want: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    want.sort();
    assert_eq!(keys(&all), want);
}

#[tokio::test]
async fn a_multi_get_asks_each_server_once_and_retries_a_moved_tablet_alone() {
    // Both tablets on A: one ReadRowsMulti for keys of both, in any order, with a
    // duplicate and a missing key. Then METADATA moves tablet 2 to B while the client's
    // cache still says A: A answers that read not-serving, the other read stands, and
    // tablet 2's keys alone are asked again at B (one ReadRows).
    let s = Setup::start().await;
    s.a.serve("t", 2, b"m", b"");
    s.set_record(2, b"m", b"", &s.a.addr.to_string(), 2);
    let c = s.client();
    write_letters(&c).await;
    let want = |keys: &[&str], got: &[Option<client::Row>]| {
        assert_eq!(got.len(), keys.len());
        for (k, row) in keys.iter().zip(got) {
            match row {
                Some(r) => assert_eq!(r.key, k.as_bytes(), "answer matched to the wrong key"),
                None => assert_eq!(*k, "zz", "row {k} lost"),
            }
        }
    };
    let keys = ["q", "b", "zz", "q", "a", "y", "m"];
    let bytes: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
    let got = c
        .read_rows_by_key("t", &bytes, &ReadFilter::default())
        .await
        .unwrap();
    want(&keys, &got);
    assert_eq!(
        s.a.calls("read_rows_multi"),
        2,
        "one call, two tablets admitted"
    );
    assert_eq!(s.a.calls("read_rows"), 0);

    s.a.unserve("t", 2);
    s.set_record(2, b"m", b"", &s.b.addr.to_string(), 3);
    let got = c
        .read_rows_by_key("t", &bytes, &ReadFilter::default())
        .await
        .unwrap();
    want(&keys, &got);
    assert_eq!(s.a.calls("read_rows_multi"), 4);
    assert_eq!(
        s.b.calls("read_rows"),
        1,
        "tablet 2 asked again at its new server"
    );
}
