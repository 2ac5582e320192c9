//! The master through real processes: 3 `quarry lock-server` replicas, 2 `quarry
//! tablet-server`s and 2 `quarry master`s (one standby) on free loopback ports, sharing
//! one data root. Creates a table with split keys and writes to every tablet; kill -9 the
//! tablet server that serves METADATA: its tablets (METADATA's included) are served by
//! the other within lease + lock-delay + replay + 2 s and every acknowledged write reads
//! back; kill -9 the active master: the standby takes over within lease + lock-delay +
//! 2 s with a newer lock generation, moves nothing that is served, and serves admin calls;
//! SIGSTOP that master past its lease: a third takes over, and the paused one, resumed,
//! finds its session lost and exits with status 2 without having changed anything.
//!
//! Timeouts derive from the lease the cluster runs with; every wait is on a condition.

#[path = "cluster_support/mod.rs"]
mod cluster_support;

use std::time::{Duration, Instant};

use client::{Client, ClientConfig, ColumnFamily, Mutation, ReadFilter, RowMutation};
use cluster_support::*;

/// How long replaying a small commit log may take on a loaded machine.
const REPLAY: Duration = Duration::from_secs(1);

/// The bound for a dead server's tablets to be served again.
fn reassign_bound() -> Duration {
    LEASE + LOCK_DELAY + REPLAY + Duration::from_secs(2)
}

fn rows() -> Vec<String> {
    (b'a'..=b'z').map(|c| format!("{}row", c as char)).collect()
}

/// Every row reads back, one `read_row` each and again as one multi-get
/// (`read_rows_by_key`) whose keys span the three tablets out of order, with a duplicate
/// and keys that were never written: each answer must be the row its own key names.
async fn all_rows_read_back(c: &Client) -> bool {
    for r in rows() {
        match c.read_row("t", r.as_bytes(), &ReadFilter::default()).await {
            Ok(Some(row)) if row.cells.first().is_some_and(|x| x.value == r.as_bytes()) => {}
            _ => return false,
        }
    }
    let mut keys: Vec<Vec<u8>> = rows().into_iter().rev().map(String::into_bytes).collect();
    keys.insert(3, b"zz-missing".to_vec());
    keys.insert(10, b"mrow".to_vec());
    keys.insert(0, b"a-missing".to_vec());
    let Ok(got) = c.read_rows_by_key("t", &keys, &ReadFilter::default()).await else {
        return false;
    };
    assert_eq!(got.len(), keys.len());
    for (k, row) in keys.iter().zip(&got) {
        let written = rows().iter().any(|r| r.as_bytes() == k.as_slice());
        match row {
            Some(row) => {
                assert!(written, "multi-get found a row for unwritten key {k:?}");
                assert_eq!(&row.key, k, "multi-get answer matched to the wrong key");
                assert_eq!(row.cells.first().map(|x| &x.value), Some(k));
            }
            None => assert!(!written, "multi-get lost written row {k:?}"),
        }
    }
    true
}

#[test]
fn cluster_master_failover_of_a_tablet_server_and_of_the_master() {
    let lock = Cluster::start("cluster-master", 3);
    let dir = lock.dir.0.clone();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let lock_addrs = lock.addr_list().join(",");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(lock.leader());

    let mut servers = vec![
        (
            "tsa-",
            tablet_server(&dir, &root, &lock_addrs, "tsa", &[]).0,
        ),
        (
            "tsb-",
            tablet_server(&dir, &root, &lock_addrs, "tsb", &[]).0,
        ),
    ];
    let (mut m1, m1_addr) = master(&dir, &root, &lock_addrs, "master1");
    let st1 = rt.block_on(wait_for(
        "master1 active with 2 servers",
        start_bound(),
        || async {
            status_of(&m1_addr)
                .await
                .filter(|s| s.servers.len() == 2 && s.unassigned == 0)
        },
    ));
    let (mut m2, m2_addr) = master(&dir, &root, &lock_addrs, "master2");

    // A table with split keys; one write per row across its three tablets.
    let mut cfg = ClientConfig::new(lock.addr_list());
    cfg.operation_timeout = start_bound();
    let c = Client::new(cfg).unwrap();
    let created = rt
        .block_on(c.create_table(
            "t",
            vec![ColumnFamily {
                name: "cf".into(),
                gc_policy: "maxversions=3".into(),
                locality_group: String::new(),
            }],
            vec![b"g".to_vec(), b"p".to_vec()],
        ))
        .unwrap();
    assert_eq!(created.tablets.len(), 3);
    assert!(created.tablets.iter().all(|t| !t.server_id.is_empty()));
    let batch: Vec<RowMutation> = rows()
        .iter()
        .map(|r| {
            RowMutation::new(
                r.as_bytes(),
                vec![Mutation::set("cf", b"q", 1, r.as_bytes())],
            )
        })
        .collect();
    let acked = rt.block_on(c.mutate_rows("t", batch)).unwrap();
    assert!(acked.iter().all(Result::is_ok), "{acked:?}");
    assert!(rt.block_on(all_rows_read_back(&c)));

    // kill -9 the server that serves METADATA (tsa or tsb, whichever got it).
    let all = rt.block_on(c.list_tablets(None)).unwrap();
    let meta_server = all
        .iter()
        .find(|t| t.tablet_id == 0)
        .unwrap()
        .server_id
        .clone();
    let v = servers
        .iter()
        .position(|(prefix, _)| meta_server.starts_with(prefix))
        .unwrap();
    let (_, mut victim) = servers.remove(v);
    let survivor = servers[0].0;
    let killed = Instant::now();
    let _ = victim.0.kill();
    let _ = victim.0.wait();
    let recovered = rt.block_on(wait_for(
        "every tablet on the survivor and every row readable",
        reassign_bound() * 3,
        || async {
            let ts = c.list_tablets(None).await.ok()?;
            let moved = ts.len() == 4 && ts.iter().all(|t| t.server_id.starts_with(survivor));
            (moved && all_rows_read_back(&c).await).then(Instant::now)
        },
    ));
    let took = recovered.duration_since(killed);
    eprintln!(
        "tablet server kill -9: tablets served again after {took:?} (bound {:?})",
        reassign_bound()
    );
    assert!(took <= reassign_bound(), "took {took:?}");

    // kill -9 the active master: the standby takes over and moves nothing.
    let before = rt.block_on(c.list_tablets(None)).unwrap();
    let killed = Instant::now();
    let _ = m1.0.kill();
    let _ = m1.0.wait();
    let st2 = rt.block_on(wait_for("master2 active", start_bound(), || async {
        status_of(&m2_addr).await
    }));
    let took = killed.elapsed();
    eprintln!("master kill -9: standby active after {took:?}");
    assert!(
        took <= LEASE + LOCK_DELAY + Duration::from_secs(2),
        "took {took:?}"
    );
    assert!(st2.lock_generation > st1.lock_generation);
    assert_eq!((st2.tables, st2.tablets, st2.unassigned), (1, 3, 0));
    let after = rt.block_on(c.list_tablets(None)).unwrap();
    assert_eq!(after, before, "take-over moved served tablets");
    // The client follows /quarry/master to the new master for admin calls.
    let t2 = rt
        .block_on(c.create_table("t2", vec![], vec![b"m".to_vec()]))
        .unwrap();
    assert_eq!(t2.tablets.len(), 2);
    assert!(rt.block_on(all_rows_read_back(&c)));

    // SIGSTOP the active master past its lease: a new standby takes over; the paused one,
    // resumed, exits with status 2 (lost session) and its view changes nothing.
    let (_m3, m3_addr) = master(&dir, &root, &lock_addrs, "master3");
    let before = rt.block_on(c.list_tablets(None)).unwrap();
    signal(&m2.0, "STOP").unwrap();
    let st3 = rt.block_on(wait_for("master3 active", start_bound(), || async {
        status_of(&m3_addr).await
    }));
    assert!(st3.lock_generation > st2.lock_generation);
    signal(&m2.0, "CONT").unwrap();
    let code = rt.block_on(wait_for("the resumed master to exit", LEASE * 4, || {
        let exited = m2.0.try_wait().unwrap();
        async move { exited.map(|s| s.code()) }
    }));
    assert_eq!(
        code,
        Some(2),
        "a master that lost its session exits with status 2"
    );
    let after = rt.block_on(c.list_tablets(None)).unwrap();
    assert_eq!(
        after, before,
        "nothing moved across the pause and take-over"
    );
    assert!(rt.block_on(all_rows_read_back(&c)));
}
