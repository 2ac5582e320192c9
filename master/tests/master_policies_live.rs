//! The master's balancing, schema changes and crash repairs against a real lock service
//! and model tablet servers (see tests/model_server).

mod harness;
mod model_server;

use std::sync::Arc;
use std::time::Duration;

use harness::*;
use lockservice::client::{Client, ClientConfig};
use master::pb;
use model_server::{Disk, ModelServer};
use parking_lot::Mutex;
use tablet::meta::{TableInfo, TabletRecord, TABLES_DIR};
use tablet::Schema;

struct Cluster {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    _lock: lockservice::server::Replica,
    lock_addr: String,
    client: Client,
    disk: Arc<Mutex<Disk>>,
}

async fn cluster() -> Cluster {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let (lock, lock_addr) = lock_service(dir.path()).await;
    let client = Client::new(ClientConfig::new(vec![lock_addr.clone()])).unwrap();
    Cluster {
        _dir: dir,
        root,
        _lock: lock,
        lock_addr,
        client,
        disk: Arc::new(Mutex::new(Disk::default())),
    }
}

async fn tablets(
    c: &mut pb::master_client::MasterClient<tonic::transport::Channel>,
) -> Vec<pb::TabletInfo> {
    c.list_tablets(pb::ListTabletsRequest { table: None })
        .await
        .unwrap()
        .into_inner()
        .tablets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_servers_get_tablets_by_throttled_moves_that_unload_before_loading() {
    let c = cluster().await;
    let _s1 = ModelServer::start("ts-1", c.client.clone(), c.disk.clone()).await;
    let (m, _t) = start_master(&c.lock_addr, &c.root);
    active_status(m, Duration::from_secs(20)).await;
    let mut a = admin(m).await;
    let keys: Vec<Vec<u8>> = ["b", "d", "f", "h", "j"]
        .iter()
        .map(|k| k.as_bytes().to_vec())
        .collect();
    a.create_table(pb::CreateTableRequest {
        name: "t".into(),
        families: vec![fam("cf", "")],
        split_keys: keys,
    })
    .await
    .unwrap();
    assert_eq!(
        c.disk.lock().loaded["ts-1"].len(),
        7,
        "6 tablets + METADATA"
    );
    let before = tablets(&mut a).await;

    let _s2 = ModelServer::start("ts-2", c.client.clone(), c.disk.clone()).await;
    let _s3 = ModelServer::start("ts-3", c.client.clone(), c.disk.clone()).await;
    let counts = wait_for("balanced tablet counts", Duration::from_secs(30), || {
        let disk = c.disk.clone();
        async move {
            let d = disk.lock();
            let n: Vec<usize> = ["ts-1", "ts-2", "ts-3"]
                .iter()
                .map(|s| d.loaded[*s].len())
                .collect();
            let (lo, hi) = (*n.iter().min().unwrap(), *n.iter().max().unwrap());
            (hi - lo <= 1 && n.iter().sum::<usize>() == 7).then_some(n)
        }
    })
    .await;
    assert_eq!(counts.iter().sum::<usize>(), 7);
    let after = wait_for(
        "METADATA to match the servers",
        Duration::from_secs(10),
        || {
            let mut a = a.clone();
            let disk = c.disk.clone();
            async move {
                let ts = tablets(&mut a).await;
                let d = disk.lock();
                ts.iter()
                    .all(|t| {
                        d.loaded
                            .get(&t.server_id)
                            .is_some_and(|l| l.get(&t.tablet_id) == Some(&t.epoch))
                    })
                    .then_some(ts)
            }
        },
    )
    .await;
    let moved = after
        .iter()
        .zip(&before)
        .filter(|(x, y)| x.server_id != y.server_id)
        .inspect(|(x, y)| assert!(x.epoch > y.epoch, "a move raises the epoch"))
        .count();
    assert!(moved >= 3, "{moved} moves");
    // Moves unload first: never loaded on two live servers at once.
    assert!(
        c.disk.lock().violations.is_empty(),
        "{:?}",
        c.disk.lock().violations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schema_changes_reload_served_tablets_with_the_new_schema() {
    let c = cluster().await;
    let _s1 = ModelServer::start("ts-1", c.client.clone(), c.disk.clone()).await;
    let (m, _t) = start_master(&c.lock_addr, &c.root);
    active_status(m, Duration::from_secs(20)).await;
    let mut a = admin(m).await;
    a.create_table(pb::CreateTableRequest {
        name: "t".into(),
        families: vec![fam("cf", "maxversions=1")],
        split_keys: vec![b"m".to_vec()],
    })
    .await
    .unwrap();
    let before = tablets(&mut a).await;
    use pb::family_modification::Kind;
    let t = a
        .modify_column_families(pb::ModifyColumnFamiliesRequest {
            table: "t".into(),
            modifications: vec![
                pb::FamilyModification {
                    kind: Some(Kind::Update(fam("cf", "maxage=7d or maxversions=3"))),
                },
                pb::FamilyModification {
                    kind: Some(Kind::Create(fam("new", ""))),
                },
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .table
        .unwrap();
    let gcs: Vec<(String, String)> = t
        .families
        .iter()
        .map(|f| (f.name.clone(), f.gc_policy.clone()))
        .collect();
    assert_eq!(
        gcs,
        vec![
            ("cf".to_string(), "maxage=7d or maxversions=3".to_string()),
            ("new".to_string(), "never".to_string())
        ]
    );
    let after = tablets(&mut a).await;
    for (x, y) in after.iter().zip(&before) {
        if x.table == "t" {
            assert_eq!(x.epoch, y.epoch + 1, "reloaded with the new schema");
        }
    }
    let (content, _) = c.client.read(&format!("{TABLES_DIR}/t")).await.unwrap();
    let info: TableInfo = serde_json::from_slice(&content).unwrap();
    assert!(info.schema.families.contains_key("new"));
    let err = a
        .modify_column_families(pb::ModifyColumnFamiliesRequest {
            table: "t".into(),
            modifications: vec![pb::FamilyModification {
                kind: Some(Kind::Drop("nope".into())),
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let err = a
        .modify_column_families(pb::ModifyColumnFamiliesRequest {
            table: "nope".into(),
            modifications: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

fn record(
    table: &str,
    table_id: u64,
    id: u64,
    start: &str,
    end: &str,
    server: &str,
    epoch: u64,
) -> TabletRecord {
    TabletRecord {
        table: table.into(),
        table_id,
        tablet_id: id,
        start: start.as_bytes().to_vec(),
        end: end.as_bytes().to_vec(),
        dir: TabletRecord::dir_for(table_id, id),
        server_id: server.into(),
        server_addr: String::new(),
        epoch,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_master_repairs_half_done_splits_creates_and_deletes() {
    let c = cluster().await;
    let _s1 = ModelServer::start("ts-1", c.client.clone(), c.disk.clone()).await;
    let (m1, t1) = start_master(&c.lock_addr, &c.root);
    active_status(m1, Duration::from_secs(20)).await;
    let mut a1 = admin(m1).await;
    a1.create_table(pb::CreateTableRequest {
        name: "s".into(),
        families: vec![fam("cf", "")],
        split_keys: vec![b"g".to_vec()],
    })
    .await
    .unwrap();
    let s_tablets = tablets(&mut a1).await;
    let s_id = s_tablets[1].table_id;
    t1.abort();
    let _ = t1.await;

    // What crashes leave behind, written straight into METADATA and the lock service:
    // 1. table s: tablet ["g", "") was being split at "p" by a server that then died: the
    //    left child's row ["g", "p") is written, the parent's row still covers ["g", "").
    let parent = s_tablets.iter().find(|t| t.start == b"g").unwrap().clone();
    let mut rows = Vec::new();
    let dead_parent = record(
        "s",
        s_id,
        parent.tablet_id,
        "g",
        "",
        "ts-dead",
        parent.epoch,
    );
    rows.push(dead_parent);
    let left = record("s", s_id, 900, "g", "p", "ts-dead", 1);
    rows.push(left);
    // 2. rows of a table whose file is gone (an interrupted delete).
    let orphan = record("gone", 777, 901, "", "", "", 0);
    rows.push(orphan);
    // 3. table u: created with splits a, k but only its first two rows were written.
    for r in [
        record("u", 600, 601, "", "a", "", 0),
        record("u", 600, 602, "a", "k", "", 0),
    ] {
        rows.push(r);
    }
    for r in rows {
        c.disk.lock().meta_rows.insert(r.key(), r.to_json());
    }
    let u = TableInfo {
        name: "u".into(),
        id: 600,
        schema: Schema::with_families(["cf"]),
    };
    c.client
        .create(
            &format!("{TABLES_DIR}/u"),
            false,
            &serde_json::to_vec(&u).unwrap(),
        )
        .await
        .unwrap();

    let (m2, _t2) = start_master(&c.lock_addr, &c.root);
    active_status(m2, failover_bound()).await;
    let a2 = admin(m2).await;
    let repaired = wait_for(
        "repairs done and everything served",
        Duration::from_secs(20),
        || {
            let mut a2 = a2.clone();
            async move {
                let ts = tablets(&mut a2).await;
                let st = a2.status(pb::StatusRequest {}).await.ok()?.into_inner();
                let u_tail = ts
                    .iter()
                    .any(|t| t.table == "u" && t.start == b"k" && t.end.is_empty());
                let no_left = ts.iter().all(|t| t.tablet_id != 900);
                let no_orphan = ts.iter().all(|t| t.table_id != 777);
                (st.unassigned == 0 && u_tail && no_left && no_orphan).then_some(ts)
            }
        },
    )
    .await;
    // Every table's tablets tile its row space exactly.
    for table in ["s", "u"] {
        let mut pos: Vec<u8> = Vec::new();
        let mine: Vec<&pb::TabletInfo> = repaired.iter().filter(|t| t.table == table).collect();
        for (i, t) in mine.iter().enumerate() {
            assert_eq!(
                t.start, pos,
                "{table}: tablet {} starts where the previous ends",
                t.tablet_id
            );
            assert!(!t.server_id.is_empty());
            if t.end.is_empty() {
                assert_eq!(i + 1, mine.len(), "{table}: the unbounded tablet is last");
            }
            pos = t.end.clone();
        }
        assert!(pos.is_empty(), "{table} ends unbounded");
    }
    let parent_now = repaired
        .iter()
        .find(|t| t.tablet_id == parent.tablet_id)
        .unwrap();
    assert_eq!(
        (parent_now.start.as_slice(), parent_now.end.as_slice()),
        (&b"g"[..], &b""[..])
    );
    assert!(
        parent_now.epoch > parent.epoch,
        "the rolled-back parent is reassigned"
    );
    assert!(
        c.disk.lock().violations.is_empty(),
        "{:?}",
        c.disk.lock().violations
    );
}
