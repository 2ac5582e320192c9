//! Shared harness of the multi-process cluster tests (`tests/cluster_*.rs`): lock-service
//! replicas from `lock_support`, plus tablet servers and masters as real `quarry`
//! processes on free loopback ports sharing one data root, and the checkers the tests
//! run over what the processes leave behind (the ownership logs).

#![allow(dead_code)] // each test binary uses a different part

#[path = "../lock_support/mod.rs"]
pub mod lock_support;

use std::collections::BTreeMap;
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

/// One serving interval of a tablet by a server, in CLOCK_MONOTONIC nanoseconds.
#[derive(Debug, Clone)]
pub struct Interval {
    pub server: String,
    pub tablet: u64,
    pub epoch: u64,
    pub start: u64,
    pub end: Option<u64>,
}

/// Reads every ownership log under `<root>/ownership/`.
pub fn ownership_intervals(root: &Path) -> Vec<Interval> {
    let mut open: BTreeMap<(String, u64, u64), u64> = BTreeMap::new();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root.join("ownership")) else {
        return out;
    };
    for e in entries {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let key = (
                v["server"].as_str().unwrap().to_string(),
                v["tablet"].as_u64().unwrap(),
                v["epoch"].as_u64().unwrap(),
            );
            let t = v["mono_ns"].as_u64().unwrap();
            match v["event"].as_str().unwrap() {
                "start" => {
                    open.insert(key, t);
                }
                _ => {
                    if let Some(start) = open.remove(&key) {
                        out.push(Interval {
                            server: key.0,
                            tablet: key.1,
                            epoch: key.2,
                            start,
                            end: Some(t),
                        });
                    }
                }
            }
        }
    }
    for ((server, tablet, epoch), start) in open {
        out.push(Interval {
            server,
            tablet,
            epoch,
            start,
            end: None,
        });
    }
    out
}

/// Pairs of intervals in which two different servers served one tablet at once. An
/// interval with no end (a killed process) counts as open until `killed_at` of its server
/// if given, else forever.
pub fn overlaps(
    intervals: &[Interval],
    killed_at: &BTreeMap<String, u64>,
) -> Vec<(Interval, Interval)> {
    let end = |i: &Interval| {
        i.end
            .or_else(|| killed_at.get(&i.server).copied())
            .unwrap_or(u64::MAX)
    };
    let mut out = Vec::new();
    for (n, a) in intervals.iter().enumerate() {
        for b in &intervals[n + 1..] {
            if a.tablet == b.tablet && a.server != b.server && a.start < end(b) && b.start < end(a)
            {
                out.push((a.clone(), b.clone()));
            }
        }
    }
    out
}
