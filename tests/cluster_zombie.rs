//! T2, the zombie tablet server (RELIABILITY.md): SIGSTOP the server of a tablet for 3x
//! its lease while clients keep writing, so the master moves the tablet; then SIGCONT.
//! Pass: every acknowledged write reads back with its newest value (no loss, no stale
//! read), the woken server answers `not-serving` instead of its old data, it exits, and
//! the ownership logs show no two servers serving the tablet at the same time.

#[path = "cluster_support/mod.rs"]
mod cluster_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use client::{Client, Mutation, ReadFilter};
use cluster_support::*;
use tablet::pb::tablet_client::TabletClient;

async fn value(c: &Client, row: &str) -> Option<Vec<u8>> {
    let f = ReadFilter::latest();
    c.read_row("z", row.as_bytes(), &f)
        .await
        .ok()?
        .map(|r| r.cells[0].value.clone())
}

#[test]
fn cluster_zombie_tablet_server_never_serves_stale_data() {
    let lock = Cluster::start("cluster-zombie", 3);
    let dir = lock.dir.0.clone();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let lock_addrs = lock.addr_list().join(",");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(lock.leader());

    let mut servers: BTreeMap<String, (Proc, String)> = BTreeMap::new();
    for name in ["tsa", "tsb"] {
        servers.insert(
            name.to_string(),
            tablet_server(&dir, &root, &lock_addrs, name, &[]),
        );
    }
    let (_m, _) = master(&dir, &root, &lock_addrs, "master");
    // A stopped server keeps its connections open: give up on an attempt after a lease.
    let c = test_client(&lock, Some(LEASE));
    rt.block_on(wait_for(
        "two servers registered",
        start_bound(),
        || async { c.list_servers().await.ok().filter(|s| s.len() == 2) },
    ));
    let cf = family("maxversions=1");
    rt.block_on(c.create_table("z", vec![cf], vec![])).unwrap();
    let rows: Vec<String> = (0..20).map(|i| format!("row{i:02}")).collect();
    let mut acked: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for r in &rows {
        let v = format!("{r}-v0").into_bytes();
        rt.block_on(c.mutate_row("z", r.as_bytes(), vec![Mutation::set("cf", b"q", 0, &v)]))
            .unwrap();
        acked.insert(r.clone(), v);
    }

    // Pause the server of the table's tablet.
    let tablets = rt.block_on(c.list_tablets(Some("z"))).unwrap();
    let victim_id = tablets[0].server_id.clone();
    let victim_name = victim_id.split('-').next().unwrap().to_string();
    let (victim, victim_addr) = servers.remove(&victim_name).unwrap();
    signal(&victim.0, "STOP").unwrap();
    let paused = Instant::now();

    // Clients keep writing: each write succeeds once the tablet moved.
    for (n, r) in rows.iter().enumerate() {
        let v = format!("{r}-v1-{n}").into_bytes();
        rt.block_on(c.mutate_row("z", r.as_bytes(), vec![Mutation::set("cf", b"q", 0, &v)]))
            .unwrap_or_else(|e| panic!("write of {r} after the pause failed: {e}"));
        acked.insert(r.clone(), v);
    }
    let moved_after = paused.elapsed();
    eprintln!("tablet served elsewhere {moved_after:?} after the pause");
    let now_moved = rt.block_on(c.list_tablets(Some("z"))).unwrap();
    assert_ne!(now_moved[0].server_id, victim_id, "the tablet moved");

    // Keep the zombie stopped for 3x its lease in all, then wake it.
    while paused.elapsed() < LEASE * 3 {
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&victim.0, "CONT").unwrap();

    // The woken server must not answer from its old state.
    let stale = rt.block_on(async {
        let mut t = TabletClient::connect(format!("http://{victim_addr}"))
            .await
            .ok()?;
        let req = tablet::pb::ReadRowsRequest {
            tablet: Some(tablet::pb::TabletRef {
                table: "z".into(),
                tablet_id: tablets[0].tablet_id,
            }),
            rows: vec![rows[0].as_bytes().to_vec()],
            ..Default::default()
        };
        let mut s = t.read_rows(req).await.ok()?.into_inner();
        s.message().await.ok().flatten()
    });
    assert!(
        stale.as_ref().is_none_or(|m| m.rows.is_empty()),
        "the zombie served a read after its lease: {stale:?}"
    );
    // Nor through a multi-tablet read (the multi-get's path when a server holds several
    // tablets of the table): no answer of it may carry a row.
    let stale_multi = rt.block_on(async {
        let mut t = TabletClient::connect(format!("http://{victim_addr}"))
            .await
            .ok()?;
        let req = tablet::pb::ReadRowsMultiRequest {
            reads: vec![tablet::pb::read_rows_multi_request::TabletRows {
                tablet: Some(tablet::pb::TabletRef {
                    table: "z".into(),
                    tablet_id: tablets[0].tablet_id,
                }),
                rows: rows.iter().map(|r| r.as_bytes().to_vec()).collect(),
            }],
            ..Default::default()
        };
        let mut s = t.read_rows_multi(req).await.ok()?.into_inner();
        let mut answers = Vec::new();
        while let Ok(Some(m)) = s.message().await {
            answers.push(m);
        }
        Some(answers)
    });
    assert!(
        stale_multi
            .iter()
            .flatten()
            .all(|m| m.rows.is_empty() && m.code != 0),
        "the zombie served a multi-read after its lease: {stale_multi:?}"
    );

    // It exits on its own (lost session or deleted server file).
    let mut victim = victim;
    let deadline = Instant::now() + LEASE * 4;
    let exited = loop {
        if let Some(st) = victim.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the zombie did not exit within {:?}",
            LEASE * 4
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("zombie exited with {exited}");

    // No acknowledged write lost, no stale value.
    for (r, v) in &acked {
        assert_eq!(rt.block_on(value(&c, r)).as_ref(), Some(v), "row {r}");
    }

    // No two servers ever served the tablet at once.
    let intervals = ownership_intervals(&root);
    assert!(
        intervals.iter().any(|i| i.server == victim_id),
        "{intervals:?}"
    );
    let bad = overlaps(&intervals, &BTreeMap::new());
    assert!(bad.is_empty(), "overlapping ownership: {bad:#?}");
}

/// Whether the process `pid` is stopped (state `T` in /proc/PID/stat).
fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after_name = s.rsplit_once(") ")?.1.to_string();
            after_name.chars().next()
        })
        == Some('T')
}

/// Every value of row `r` (all versions), newest first.
async fn versions(c: &Client, row: &str) -> Vec<Vec<u8>> {
    let r = c
        .read_row("z", row.as_bytes(), &ReadFilter::default())
        .await
        .unwrap_or_else(|e| panic!("read of {row} failed: {e}"));
    r.map(|r| r.cells.into_iter().map(|c| c.value).collect())
        .unwrap_or_default()
}

/// T2 with a request in flight (RELIABILITY.md): the tablet server stops itself (pause
/// point `mutate-after-lease-check`) inside a `MutateRow` that has passed the lease check
/// but not yet appended to the commit log. While it is stopped the tablet moves and a
/// newer write is acknowledged by the new owner; then it continues. Pass: the in-flight
/// write is not acknowledged (the lease check after the work refuses it), it never
/// becomes visible (though its timestamp is the newest), not even after the new owner is
/// killed and a third server recovers the tablet from the logs, and no two servers ever
/// served the tablet at once.
#[test]
fn cluster_zombie_write_in_flight_across_a_pause_is_never_acknowledged() {
    let (lock, root, lock_addrs, rt) = lock_and_root("cluster-zombie-inflight");
    let dir = lock.dir.0.clone();
    let point = [("QUARRY_CRASHPOINT", "mutate-after-lease-check")];
    let (tsa, tsa_addr) = tablet_server_env(&dir, &root, &lock_addrs, "tsa", &[], &point);
    let (_m, m_addr) = master(&dir, &root, &lock_addrs, "master");
    let c = test_client(&lock, Some(LEASE));
    rt.block_on(wait_for(
        "the master active and seeing tsa",
        start_bound(),
        || {
            let m_addr = m_addr.clone();
            async move { status_of(&m_addr).await.filter(|s| s.servers.len() == 1) }
        },
    ));
    let servers = |n: usize| {
        let c = &c;
        move || async move { c.list_servers().await.ok().filter(|s| s.len() == n) }
    };
    rt.block_on(wait_for("tsa registered", start_bound(), servers(1)));
    let cf = family("maxversions=5");
    rt.block_on(c.create_table("z", vec![cf], vec![])).unwrap();
    let on = |prefix: &'static str| {
        let c = &c;
        move || async move {
            let t = c.list_tablets(Some("z")).await.ok()?;
            t.into_iter()
                .find(|t| t.server_id.starts_with(prefix))
                .map(|t| t.tablet_id)
        }
    };
    let tablet_id = rt.block_on(wait_for(
        "the tablet served by tsa",
        start_bound(),
        on("tsa-"),
    ));
    let (_tsb, _) = tablet_server(&dir, &root, &lock_addrs, "tsb", &[]);
    rt.block_on(wait_for("tsb registered", start_bound(), servers(2)));

    // The in-flight write, straight to tsa (no client retry), with the newest timestamp.
    let inflight = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let mut t = TabletClient::connect(format!("http://{tsa_addr}")).await?;
            let req = tablet::pb::MutateRowRequest {
                tablet: Some(tablet::pb::TabletRef {
                    table: "z".into(),
                    tablet_id,
                }),
                row: b"r".to_vec(),
                mutations: client::convert::mutations_to_pb(&[Mutation::set(
                    "cf",
                    b"q",
                    3_000,
                    b"in-flight",
                )]),
                sequencer: None,
            };
            t.mutate_row(req).await.map(|_| ()).map_err(|e| e.into())
        })
    });
    let pid = tsa.0.id();
    rt.block_on(wait_for(
        "tsa stopped at the pause point",
        start_bound(),
        || async move { stopped(pid).then_some(()) },
    ));
    rt.block_on(wait_for(
        "the tablet moved to tsb",
        start_bound(),
        on("tsb-"),
    ));
    rt.block_on(c.mutate_row(
        "z",
        b"r",
        vec![Mutation::set("cf", b"q", 2_000, b"after-move")],
    ))
    .expect("the new owner acknowledges a write");
    signal(&tsa.0, "CONT").unwrap();

    let answer: Result<(), Box<dyn std::error::Error + Send + Sync>> =
        inflight.join().expect("the in-flight request's thread");
    eprintln!("in-flight write answered: {answer:?}");
    assert!(
        answer.is_err(),
        "a write that was paused past the lease was acknowledged"
    );
    let want = vec![b"after-move".to_vec()];
    assert_eq!(
        rt.block_on(versions(&c, "r")),
        want,
        "after the zombie woke"
    );

    // The zombie exits; then the new owner dies and a third server recovers the tablet.
    let mut tsa = tsa;
    let deadline = Instant::now() + LEASE * 4;
    while tsa.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the zombie did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut tsb = _tsb;
    let tsb_killed = tablet::server::ownership::mono_ns();
    tsb.0.kill().unwrap();
    let (_tsc, _) = tablet_server(&dir, &root, &lock_addrs, "tsc", &[]);
    rt.block_on(wait_for(
        "the tablet recovered by tsc",
        start_bound(),
        on("tsc-"),
    ));
    assert_eq!(
        rt.block_on(versions(&c, "r")),
        want,
        "after recovery by tsc"
    );

    let intervals = ownership_intervals(&root);
    let tsb_id = intervals
        .iter()
        .find(|i| i.server.starts_with("tsb-"))
        .map(|i| i.server.clone())
        .expect("tsb served");
    let bad = overlaps(&intervals, &BTreeMap::from([(tsb_id, tsb_killed)]));
    assert!(bad.is_empty(), "overlapping ownership: {bad:#?}");
}
