//! The operations endpoints through real processes (DESIGN.md section 8): 3 lock
//! replicas (one restarted with `--http`), 2 tablet servers (one started from a TOML
//! `--config` file, a command-line flag overriding one of its keys) and a master, each
//! with `--http`. Creates a 3-tablet table and writes rows one `MutateRow` each, then
//! scrapes `/metrics`: the tablet servers' `MutateRow` request counters and commit-log
//! record counters sum to at least the rows written, with no `MutateRow` errors; the
//! master counts exactly the table's 3 tablets as assigned, 2 servers alive, itself
//! active, and the 3 tablets of a major compaction it orders (synchronous), whose flushes
//! and compactions the tablet servers count; the replica reports a term, 3 members and
//! the test's sessions. Then it loads each status page and finds on it what it must show: every tablet on its server's
//! page and on the master's (with the master-lock holder), the replica's role and
//! members.
//!
//! Every wait is on a condition with a deadline derived from the lease.

#[path = "cluster_support/mod.rs"]
mod cluster_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use client::Mutation;
use cluster_support::lock_support::{ELECTION_BASE, ELECTION_WIDTH, HEARTBEAT};
use cluster_support::*;

const ROWS: usize = 40;

/// `GET path` from the HTTP endpoint at `addr`: status code and body (`None` when it
/// does not answer).
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// The sum of every sample of metric `name` whose labels contain each of `labels`
/// (e.g. `rpc="MutateRow"`), from a Prometheus text exposition.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, lab) = series.split_once('{').unwrap_or((series, ""));
            (n == name && labels.iter().all(|x| lab.contains(x)))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

fn scrape(addr: &str) -> String {
    match http_get(addr, "/metrics") {
        Some((200, body)) => body,
        other => panic!("GET http://{addr}/metrics: {other:?}"),
    }
}

fn page(addr: &str) -> String {
    match http_get(addr, "/") {
        Some((200, body)) => body,
        other => panic!("GET http://{addr}/: {other:?}"),
    }
}

/// Restarts lock replica 3 of `lock` with `--http` (same flags as the harness's).
fn restart_replica_with_http(lock: &mut Cluster, dir: &std::path::Path) -> (Proc, String) {
    lock.kill(3);
    let http = free_addr().to_string();
    let ms = |d: Duration| d.as_millis().to_string();
    let args: Vec<String> = [
        "lock-server",
        "--id",
        "3",
        "--peers",
        &lock.peers(),
        "--bootstrap",
        "--data",
        &dir.join("r3").display().to_string(),
        "--lease-ms",
        &ms(LEASE),
        "--lock-delay-ms",
        &ms(LOCK_DELAY),
        "--heartbeat-ms",
        &ms(HEARTBEAT),
        "--election-base-ms",
        &ms(ELECTION_BASE),
        "--election-width-ms",
        &ms(ELECTION_WIDTH),
        "--http",
        &http,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    (spawn(dir, "r3-http.log", &args), http)
}

/// Starts a tablet server from a TOML file; `--name tsa` on the command line overrides
/// the file's `name`. Returns it, its gRPC address and its HTTP address.
fn tablet_server_from_toml(
    dir: &std::path::Path,
    root: &std::path::Path,
    lock: &str,
) -> (Proc, String, String) {
    let (addr, http) = (free_addr().to_string(), free_addr().to_string());
    let locks: Vec<String> = lock.split(',').map(|a| format!("\"{a}\"")).collect();
    let toml = format!(
        "# written by tests/cluster_ops.rs\n\
         data = \"{}\"\n\
         lock = [{}]\n\
         [tablet-server]\n\
         listen = \"{addr}\"\n\
         name = \"fromfile\"\n\
         check_interval_ms = 100\n\
         http = \"{http}\"\n\
         [master]\n\
         tick_ms = 100\n",
        root.display(),
        locks.join(", ")
    );
    let file = dir.join("tsa.toml");
    std::fs::write(&file, toml).unwrap();
    let args: Vec<String> = [
        "tablet-server",
        "--config",
        &file.display().to_string(),
        "--name",
        "tsa",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    (spawn(dir, "tsa.log", &args), addr, http)
}

#[test]
fn cluster_ops_metrics_and_status_pages() {
    let (mut lock, root, lock_addrs, rt) = lock_and_root("cluster-ops");
    let dir = lock.dir.0.clone();
    let (_r3, r3_http) = restart_replica_with_http(&mut lock, &dir);
    let (_tsa, tsa_addr, tsa_http) = tablet_server_from_toml(&dir, &root, &lock_addrs);
    let tsb_http = free_addr().to_string();
    let (_tsb, tsb_addr) = tablet_server(&dir, &root, &lock_addrs, "tsb", &["--http", &tsb_http]);
    let m_http = free_addr().to_string();
    let (_m, m_addr) = master_env(
        &dir,
        &root,
        &lock_addrs,
        "master",
        &["--http", &m_http],
        &[],
    );
    rt.block_on(wait_for(
        "the master active with 2 servers",
        start_bound(),
        || async {
            status_of(&m_addr)
                .await
                .filter(|s| s.servers.len() == 2 && s.unassigned == 0)
        },
    ));

    let c = test_client(&lock, None);
    let family = family("maxversions=1");
    let created = rt
        .block_on(c.create_table("ops", vec![family], vec![b"g".to_vec(), b"p".to_vec()]))
        .unwrap();
    assert_eq!(created.tablets.len(), 3);
    for i in 0..ROWS {
        let row = format!("{}{i:03}", (b'a' + (i % 26) as u8) as char);
        let m = vec![Mutation::set("cf", b"q", 1, row.as_bytes())];
        rt.block_on(c.mutate_row("ops", row.as_bytes(), m)).unwrap();
    }

    // Tablet servers: every acknowledged MutateRow was counted, and logged.
    let ts = [scrape(&tsa_http), scrape(&tsb_http)];
    let sum =
        |name: &str, labels: &[&str]| -> f64 { ts.iter().map(|t| metric(t, name, labels)).sum() };
    let mutate = ["server=\"tablet\"", "rpc=\"MutateRow\""];
    let requests = sum("quarry_rpc_requests_total", &mutate);
    assert!(
        requests >= ROWS as f64,
        "MutateRow requests counted: {requests}"
    );
    assert_eq!(sum("quarry_rpc_errors_total", &mutate), 0.0);
    let records = sum("quarry_commitlog_records_total", &[]);
    assert!(records >= ROWS as f64, "commit-log records: {records}");
    assert!(sum("quarry_commitlog_fsyncs_total", &[]) >= 1.0);
    assert!(sum("quarry_rpc_duration_seconds_count", &mutate) >= ROWS as f64);
    assert!(sum("quarry_lease_remaining_seconds", &[]) > 0.0);
    // 3 user tablets and METADATA's.
    assert_eq!(sum("quarry_tablets_served", &[]), 4.0);

    // The master. Its figures come from the view it publishes after each tick, which can
    // trail the assignments the writes above already used: poll until it has caught up.
    let deadline = std::time::Instant::now() + start_bound();
    let m = loop {
        let m = scrape(&m_http);
        let assigned = metric(&m, "quarry_master_tablets_assigned", &[]);
        if assigned == 3.0 || std::time::Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(metric(&m, "quarry_master_active", &[]), 1.0, "{m}");
    assert_eq!(metric(&m, "quarry_master_servers_alive", &[]), 2.0);
    assert_eq!(metric(&m, "quarry_master_tablets_assigned", &[]), 3.0);
    assert_eq!(metric(&m, "quarry_master_tablets_unassigned", &[]), 0.0);
    assert!(
        metric(&m, "quarry_master_assignments_total", &[]) >= 4.0,
        "METADATA + 3"
    );
    let create = ["server=\"master\"", "rpc=\"CreateTable\""];
    assert_eq!(metric(&m, "quarry_rpc_requests_total", &create), 1.0);

    // A major compaction of the table the master orders: counted by the master (one per
    // tablet); each tablet flushes its memtable and rewrites its SSTables on its server.
    assert_eq!(rt.block_on(c.compact_table("ops", true)).unwrap(), 3);
    let m = scrape(&m_http);
    assert_eq!(metric(&m, "quarry_master_compactions_total", &[]), 3.0);
    let ts = [scrape(&tsa_http), scrape(&tsb_http)];
    let total = |name: &str| -> f64 { ts.iter().map(|t| metric(t, name, &[])).sum() };
    assert!(total("quarry_flushes_total") >= 3.0);
    assert!(total("quarry_flush_bytes_total") > 0.0);
    assert!(total("quarry_compactions_total") >= 3.0);
    assert!(total("quarry_compaction_written_bytes_total") > 0.0);

    // The restarted lock replica (a follower, perhaps: its applied state may lag).
    let l = rt.block_on(wait_for(
        "the replica's sessions",
        start_bound(),
        || async {
            let l = scrape(&r3_http);
            // 2 tablet servers and the master hold a session and a lock each.
            let caught_up = metric(&l, "quarry_lock_sessions", &[]) >= 3.0
                && metric(&l, "quarry_lock_locks_held", &[]) >= 3.0;
            caught_up.then_some(l)
        },
    ));
    assert!(metric(&l, "quarry_lock_raft_term", &[]) >= 1.0, "{l}");
    assert_eq!(metric(&l, "quarry_lock_members", &[]), 3.0);

    // Status pages: each tablet on its server's page and on the master's.
    let tablets = rt.block_on(c.list_tablets(Some("ops"))).unwrap();
    let (pa, pb, pm) = (page(&tsa_http), page(&tsb_http), page(&m_http));
    assert!(
        pa.contains("id <b>tsa-"),
        "the command line's --name wins over the file: {pa}"
    );
    for t in &tablets {
        let cell = format!("<td>{}</td><td>ops</td>", t.tablet_id);
        let own = if t.server_addr == tsa_addr { &pa } else { &pb };
        assert!(t.server_addr == tsa_addr || t.server_addr == tsb_addr);
        assert!(
            own.contains(&cell),
            "tablet {} not on its server's page",
            t.tablet_id
        );
        let row = format!("<td>ops</td><td>{}</td>", t.tablet_id);
        assert!(
            pm.contains(&row),
            "tablet {} not on the master's page: {pm}",
            t.tablet_id
        );
    }
    assert!(
        pm.contains("ACTIVE") && pm.contains(&format!("held by <b>{m_addr}</b>")),
        "{pm}"
    );
    let pl = page(&r3_http);
    assert!(pl.contains("role <b>"), "{pl}");
    for a in lock.addr_list() {
        assert!(pl.contains(&a), "member {a} not on the replica's page");
    }
}
