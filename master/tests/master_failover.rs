//! The master against a real lock service (one replica, real files and sockets) and model
//! tablet servers (tests/model_server): take-over, table creation with split keys,
//! failure detection by lock acquisition, reassignment with higher epochs, standby
//! take-over after the active master dies, and the deposed master's sequencer rejected.

mod harness;
mod model_server;

use std::sync::Arc;
use std::time::Duration;

use harness::*;
use lockservice::client::{Client, ClientConfig};
use master::pb;
use model_server::{Disk, ModelServer};
use parking_lot::Mutex;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tablets_of_a_dead_server_and_the_master_role_move_after_lease_and_lock_delay() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let (_lock, lock_addr) = lock_service(dir.path()).await;
    let client = Client::new(ClientConfig::new(vec![lock_addr.clone()])).unwrap();
    let disk = Arc::new(Mutex::new(Disk::default()));
    let mut s1 = ModelServer::start("ts-1", client.clone(), disk.clone()).await;
    let _s2 = ModelServer::start("ts-2", client.clone(), disk.clone()).await;

    // The first master takes over; the second stands by and says so.
    let (m1, t1) = start_master(&lock_addr, &root);
    let st1 = active_status(m1, Duration::from_secs(20)).await;
    assert_eq!(st1.servers.len(), 2);
    let (m2, t2) = start_master(&lock_addr, &root);
    let mut c2 = admin(m2).await;
    let standby = wait_for("the standby to answer", Duration::from_secs(10), || {
        let mut c2 = c2.clone();
        async move {
            let e = c2.status(pb::StatusRequest {}).await.err()?;
            e.metadata().get("quarry-error").is_some().then_some(e)
        }
    })
    .await;
    assert_eq!(standby.code(), tonic::Code::Unavailable);
    assert_eq!(
        standby
            .metadata()
            .get("quarry-error")
            .unwrap()
            .to_str()
            .unwrap(),
        "not-master"
    );

    // A table with split keys: three tablets, spread over both servers, METADATA too.
    let mut c1 = admin(m1).await;
    let created = c1
        .create_table(pb::CreateTableRequest {
            name: "users".into(),
            families: vec![fam("cf", "maxversions=2"), fam("meta", "")],
            split_keys: vec![b"m".to_vec(), b"g".to_vec()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.tablets.len(), 3);
    let ranges: Vec<(Vec<u8>, Vec<u8>)> = created
        .tablets
        .iter()
        .map(|t| (t.start.clone(), t.end.clone()))
        .collect();
    assert_eq!(
        ranges,
        vec![
            (b"".to_vec(), b"g".to_vec()),
            (b"g".to_vec(), b"m".to_vec()),
            (b"m".to_vec(), b"".to_vec())
        ]
    );
    assert!(created
        .tablets
        .iter()
        .all(|t| !t.server_id.is_empty() && t.epoch == 1));
    {
        let d = disk.lock();
        let (a, b) = (d.loaded["ts-1"].len(), d.loaded["ts-2"].len());
        assert_eq!(a + b, 4, "3 user tablets + METADATA: {:?}", d.loaded);
        assert!(a.abs_diff(b) <= 1, "least-loaded placement: {:?}", d.loaded);
    }
    let dup = c1
        .create_table(pb::CreateTableRequest {
            name: "users".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), tonic::Code::AlreadyExists);
    let bad = c1
        .create_table(pb::CreateTableRequest {
            name: "t2".into(),
            families: vec![fam("cf", "sometimes")],
            split_keys: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("sometimes"), "{}", bad.message());

    // kill -9 ts-1: everything ends up on ts-2, at higher epochs, after its lock expired.
    let killed_at = std::time::Instant::now();
    s1.kill();
    let moved = wait_for("ts-1's tablets on ts-2", failover_bound(), || {
        let mut c1 = c1.clone();
        async move {
            let ts = c1
                .list_tablets(pb::ListTabletsRequest { table: None })
                .await
                .ok()?
                .into_inner()
                .tablets;
            let st = c1.status(pb::StatusRequest {}).await.ok()?.into_inner();
            (ts.len() == 4 && ts.iter().all(|t| t.server_id == "ts-2") && st.unassigned == 0)
                .then_some(ts)
        }
    })
    .await;
    // The lock frees at the earliest a lease after the last KeepAlive the service got
    // (sent at most a third of a lease before the kill) plus the lock-delay: no load of
    // ts-1's tablets on ts-2 before that.
    let on_ts1: Vec<u64> = created
        .tablets
        .iter()
        .filter(|t| t.server_id == "ts-1")
        .map(|t| t.tablet_id)
        .chain([0])
        .collect();
    for (t, server, epoch, at) in disk.lock().loads.iter() {
        if on_ts1.contains(t) && server == "ts-2" {
            let after = at.saturating_duration_since(killed_at);
            assert!(
                after >= LEASE / 2 + LOCK_DELAY,
                "tablet {t} loaded on ts-2 (epoch {epoch}) {after:?} after the kill"
            );
        }
    }
    assert_eq!(disk.lock().loaded["ts-2"].len(), 4);
    assert!(moved.iter().all(|t| t.epoch >= 1));
    let names: Vec<String> = client
        .list(tablet::meta::SERVERS_DIR)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.path)
        .collect();
    assert_eq!(names, vec![format!("{}/ts-2", tablet::meta::SERVERS_DIR)]);

    // kill -9 the active master: the standby takes over with a newer lock generation and
    // finds the table; the old master's sequencer is stale.
    t1.abort();
    let _ = t1.await;
    let st2 = active_status(m2, failover_bound()).await;
    assert!(st2.lock_generation > st1.lock_generation);
    assert_eq!(st2.tables, 1);
    assert_eq!(st2.tablets, 3);
    let old = lockservice::state::Sequencer {
        path: tablet::meta::MASTER_LOCK_PATH.into(),
        mode: lockservice::state::LockMode::Exclusive,
        generation: st1.lock_generation,
    };
    assert!(matches!(
        client.check_sequencer(&old).await,
        Err(lockservice::Error::StaleSequencer(_))
    ));
    let (content, _) = client.read(tablet::meta::MASTER_LOCK_PATH).await.unwrap();
    assert_eq!(content, m2.to_string().into_bytes());
    let st = c2.status(pb::StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(st.unassigned, 0);
    // Take-over reads assignments back; it does not move what is served.
    let after = c2
        .list_tablets(pb::ListTabletsRequest { table: None })
        .await
        .unwrap()
        .into_inner()
        .tablets;
    assert_eq!(after, moved, "the new master reassigned served tablets");

    // Delete the table: its tablets are unloaded and its rows removed.
    c2.delete_table(pb::DeleteTableRequest {
        name: "users".into(),
    })
    .await
    .unwrap();
    let tables = c2
        .list_tables(pb::ListTablesRequest {})
        .await
        .unwrap()
        .into_inner()
        .tables;
    assert!(tables.is_empty());
    assert_eq!(disk.lock().loaded["ts-2"].len(), 1, "only METADATA left");
    assert_eq!(disk.lock().meta_rows.len(), 0);
    assert!(
        disk.lock().violations.is_empty(),
        "{:?}",
        disk.lock().violations
    );
    t2.abort();
}
