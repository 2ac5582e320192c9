//! Shared harness of the multi-process cluster tests (`tests/cluster_*.rs`): lock-service
//! replicas from `lock_support`, plus tablet servers and masters as real `quarry`
//! processes on free loopback ports sharing one data root, and the checkers the tests
//! run over what the processes leave behind (the ownership logs).

#![allow(dead_code)] // each test binary uses a different part

#[path = "../lock_support/mod.rs"]
pub mod lock_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[allow(unused_imports)]
pub use lock_support::{free_addr, quarry, signal, wait_for, Cluster, Proc, LEASE, LOCK_DELAY};

/// A 3-replica lock service with an elected leader, an empty data root `<dir>/root` for
/// the tablet servers and masters, the replicas' addresses as one `--lock` argument, and
/// a runtime for the test's client calls.
pub fn lock_and_root(name: &str) -> (Cluster, PathBuf, String, tokio::runtime::Runtime) {
    let lock = Cluster::start(name, 3);
    let root = lock.dir.0.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let lock_addrs = lock.addr_list().join(",");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(lock.leader());
    (lock, root, lock_addrs, rt)
}

/// Startup (elections, registration, take-over) on a cold, loaded machine.
pub fn start_bound() -> Duration {
    LEASE * 20
}

/// Starts `quarry <args>` with its output in `<dir>/<log>`.
pub fn spawn(dir: &Path, log: &str, args: &[String]) -> Proc {
    spawn_env(dir, log, args, &[])
}

/// [`spawn`] with extra environment variables (e.g. `QUARRY_CRASHPOINT`). The log file is
/// appended to, so a restarted process keeps its predecessor's log.
pub fn spawn_env(dir: &Path, log: &str, args: &[String], env: &[(&str, &str)]) -> Proc {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(log))
        .unwrap();
    let child = Command::new(quarry())
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    Proc(child)
}

/// A tablet server named `name`; returns it and its address.
pub fn tablet_server(
    dir: &Path,
    root: &Path,
    lock: &str,
    name: &str,
    extra: &[&str],
) -> (Proc, String) {
    tablet_server_env(dir, root, lock, name, extra, &[])
}

/// [`tablet_server`] with extra environment variables.
pub fn tablet_server_env(
    dir: &Path,
    root: &Path,
    lock: &str,
    name: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Proc, String) {
    let addr = free_addr().to_string();
    let mut args: Vec<String> = [
        "tablet-server",
        "--listen",
        &addr,
        "--data",
        &root.display().to_string(),
        "--lock",
        lock,
        "--name",
        name,
        "--check-interval-ms",
        "100",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    (spawn_env(dir, &format!("{name}.log"), &args, env), addr)
}

/// A master named `name`; returns it and its address.
pub fn master(dir: &Path, root: &Path, lock: &str, name: &str) -> (Proc, String) {
    master_env(dir, root, lock, name, &[], &[])
}

/// [`master`] with extra flags (which replace the test defaults of the same flags) and
/// environment variables.
pub fn master_env(
    dir: &Path,
    root: &Path,
    lock: &str,
    name: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Proc, String) {
    let addr = free_addr().to_string();
    let mut args: Vec<String> = [
        "master",
        "--listen",
        &addr,
        "--data",
        &root.display().to_string(),
        "--lock",
        lock,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // The test defaults, unless `extra` sets them.
    for (flag, value) in [("--tick-ms", "100"), ("--scan-ms", "500")] {
        if !extra.contains(&flag) {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    (spawn_env(dir, &format!("{name}.log"), &args, env), addr)
}

/// What the tablet server at `addr` says it serves (`None` if it does not answer).
pub async fn served_by(addr: &str) -> Option<tablet::pb::ListTabletsResponse> {
    let mut c = tablet::pb::tablet_client::TabletClient::connect(format!("http://{addr}"))
        .await
        .ok()?;
    c.list_tablets(tablet::pb::ListTabletsRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// The status `addr` answers as the active master, if it does.
pub async fn status_of(addr: &str) -> Option<master::pb::StatusResponse> {
    let mut c = master::pb::master_client::MasterClient::connect(format!("http://{addr}"))
        .await
        .ok()?;
    c.status(master::pb::StatusRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// The ownership checker lives in the chaos crate (shared with `quarry chaos check`).
#[allow(unused_imports)] // not every test binary checks overlaps
pub use chaos::ownership::{overlaps, Interval};

/// Reads every ownership log under `<root>/ownership/`.
pub fn ownership_intervals(root: &Path) -> Vec<Interval> {
    chaos::ownership::intervals(root).expect("reading the ownership logs")
}

/// A client of the cluster behind `lock` whose operations may take a cold start; with
/// `attempt_timeout`, it gives up on one attempt after that long (a stopped server keeps
/// its connections open).
pub fn test_client(lock: &Cluster, attempt_timeout: Option<Duration>) -> client::Client {
    let mut cfg = client::ClientConfig::new(lock.addr_list());
    cfg.operation_timeout = start_bound();
    if let Some(t) = attempt_timeout {
        cfg.attempt_timeout = t;
    }
    client::Client::new(cfg).unwrap()
}

/// Column family `cf` with `gc_policy`, in the default locality group.
pub fn family(gc_policy: &str) -> client::ColumnFamily {
    client::ColumnFamily {
        name: "cf".into(),
        gc_policy: gc_policy.into(),
        locality_group: String::new(),
    }
}
