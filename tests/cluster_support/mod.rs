//! Shared harness of the multi-process cluster tests (`tests/cluster_*.rs`): lock-service
//! replicas from `lock_support`, plus tablet servers and masters as real `quarry`
//! processes on free loopback ports sharing one data root, and the checkers the tests
//! run over what the processes leave behind (the ownership logs).

#![allow(dead_code)] // each test binary uses a different part

#[path = "../lock_support/mod.rs"]
pub mod lock_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

#[allow(unused_imports)]
pub use lock_support::{free_addr, quarry, signal, wait_for, Cluster, Proc, LEASE, LOCK_DELAY};

/// Startup (elections, registration, take-over) on a cold, loaded machine.
pub fn start_bound() -> Duration {
    LEASE * 20
}

/// Starts `quarry <args>` with its output in `<dir>/<log>`.
pub fn spawn(dir: &Path, log: &str, args: &[String]) -> Proc {
    let out = std::fs::File::create(dir.join(log)).unwrap();
    let child = Command::new(quarry())
        .args(args)
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
    (spawn(dir, &format!("{name}.log"), &args), addr)
}

/// A master named `name`; returns it and its address.
pub fn master(dir: &Path, root: &Path, lock: &str, name: &str) -> (Proc, String) {
    let addr = free_addr().to_string();
    let args: Vec<String> = [
        "master",
        "--listen",
        &addr,
        "--data",
        &root.display().to_string(),
        "--lock",
        lock,
        "--tick-ms",
        "100",
        "--scan-ms",
        "500",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    (spawn(dir, &format!("{name}.log"), &args), addr)
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
pub use chaos::ownership::{overlaps, Interval};

/// Reads every ownership log under `<root>/ownership/`.
pub fn ownership_intervals(root: &Path) -> Vec<Interval> {
    chaos::ownership::intervals(root).expect("reading the ownership logs")
}
