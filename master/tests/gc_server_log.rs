//! A live tablet server deletes its own commit-log segments once every tablet it loaded
//! has flushed past them, and keeps the ones an unflushed tablet still needs: a one-replica
//! lock service, a master and a tablet server in this process (real files and sockets),
//! small log segments and memtables.

mod harness;

use std::path::Path;
use std::time::Duration;

use harness::*;
use master::pb;
use master::tpb;
use tablet::Mutation;

/// Segment numbers in the server's log directory (there is one server).
fn segments(root: &Path) -> Vec<u64> {
    let logs = root.join("logs");
    let Some(dir) = std::fs::read_dir(&logs).ok().and_then(|mut d| d.next()) else {
        return Vec::new();
    };
    let fs = sstable::RealFs::shared();
    tablet::commitlog::list_segments(&*fs, &dir.unwrap().path())
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_server_trims_its_log_below_what_its_tablets_need() {
    let LockAndServer {
        dir: _dir,
        root,
        lock: _lock,
        lock_addr,
        listen,
        server: _server,
    } = lock_and_server(|cfg| {
        cfg.tablet_options.memtable_bytes = 16 * 1024;
        cfg.log_options.segment_bytes = 8 * 1024;
    })
    .await;
    let (maddr, _master) = start_master(&lock_addr, &root);
    active_status(maddr, failover_bound() * 4).await;
    let admin = admin(maddr).await;
    let created = wait_for("the table created", failover_bound() * 4, || {
        let mut a = admin.clone();
        async move {
            a.create_table(pb::CreateTableRequest {
                name: "t".into(),
                families: vec![fam("f", "maxversions=1")],
                split_keys: vec![],
            })
            .await
            .ok()
        }
    })
    .await
    .into_inner();
    let tablet_id = created.tablets[0].tablet_id;
    let mut c = tpb::tablet_client::TabletClient::connect(format!("http://{listen}"))
        .await
        .unwrap();
    let write = |i: u32| tpb::MutateRowRequest {
        tablet: Some(tpb::TabletRef {
            table: "t".into(),
            tablet_id,
        }),
        row: format!("row{i:05}").into_bytes(),
        mutations: tablet::server::convert::mutations_to_pb(&[Mutation::set(
            "f",
            b"q",
            1,
            &[b'v'; 300],
        )]),
        sequencer: None,
    };
    // ~300 KB through 8 KiB segments and 16 KiB memtables: many segments and flushes.
    for i in 0..1000 {
        c.mutate_row(write(i)).await.unwrap();
    }
    let written = segments(&root);
    assert!(written.last().copied().unwrap_or(0) > 20, "{written:?}");
    // The server deletes the segments below its tablets' redo points (every 2 s); tablets
    // lagging behind (METADATA's takes almost no writes) are flushed or, idle, have their
    // redo point moved up, so only the last few segments stay.
    let keep = tablet::server::log_gc::MAX_LAG_SEGMENTS as usize + 1;
    let left = wait_for("old segments deleted", Duration::from_secs(30), || {
        let root = root.clone();
        async move {
            let s = segments(&root);
            (!s.is_empty() && s.len() <= keep).then_some(s)
        }
    })
    .await;
    println!(
        "segments: written up to {:?}, left {left:?}",
        written.last()
    );
    assert!(left[0] > 10, "{left:?}");
    // Every row still reads back (what was in the deleted segments is in SSTables).
    let r = c
        .read_rows(tpb::ReadRowsRequest {
            tablet: Some(tpb::TabletRef {
                table: "t".into(),
                tablet_id,
            }),
            rows: vec![],
            ranges: vec![tpb::RowRange {
                start: vec![],
                end: vec![],
            }],
            filter: None,
            rows_limit: 0,
        })
        .await
        .unwrap();
    let mut stream = r.into_inner();
    let mut n = 0;
    while let Some(m) = stream.message().await.unwrap() {
        n += m.rows.len();
    }
    assert_eq!(n, 1000);
}
