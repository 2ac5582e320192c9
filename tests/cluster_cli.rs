//! End to end through real processes: `quarry dev` (3 lock replicas, master + standby,
//! 3 tablet servers) on free loopback ports, driven by the cbt-style CLI and the client
//! library. Creates a table with split keys; writes and reads across tablets; scans across
//! tablet boundaries (start/end, prefix, count); versions and GC policies; check-and-mutate
//! and read-modify-write; deletes (`cluster_cli_tables_...`). The second test does the same,
//! then stops the whole cluster with SIGTERM, starts it again on the same data and finds
//! everything back.
//!
//! Timeouts derive from the lease the cluster runs with; every wait is on a condition.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use client::{Client, ClientConfig, Mutation, ReadFilter, ReadModifyWrite, RowMutation, RowRange};

/// Session lease of the test cluster.
const LEASE: Duration = Duration::from_millis(2000);
/// Startup may need a few leases (lock group election, master takeover, server
/// registration, METADATA assignment) and, in a cold release build on 2 shared cores,
/// some seconds more.
fn start_bound() -> Duration {
    LEASE * 30
}

/// Bound for a change (schema reload, a retried request) to be seen.
fn change_bound() -> Duration {
    LEASE * 10
}

fn quarry() -> &'static str {
    env!("CARGO_BIN_EXE_quarry")
}

/// A base port with base+1..3, base+101..102, base+201..203 all free.
fn free_port_base() -> u16 {
    for _ in 0..200 {
        let base: u16 = 20_000 + (rand::random::<u16>() % 400) * 100;
        let offs = [1u16, 2, 3, 101, 102, 201, 202, 203];
        let free = offs
            .iter()
            .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free port range found");
}

/// The test's directory: removed on success, kept (and printed) on failure.
struct TestDir(PathBuf);

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test failed: data and logs kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A running `quarry dev`.
struct Dev {
    child: Child,
    lock: String,
}

impl Dev {
    /// Starts `quarry dev` and waits for its "running" banner.
    fn start(data: &Path, base: u16) -> Dev {
        let mut child = Command::new(quarry())
            .arg("dev")
            .arg("--data")
            .arg(data)
            .args(["--port-base", &base.to_string()])
            .args(["--lease-ms", &LEASE.as_millis().to_string()])
            .args(["--start-timeout", &start_bound().as_secs().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start quarry dev");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                eprintln!("[dev] {line}");
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + start_bound() + LEASE * 5;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.starts_with("Quarry is running") => break,
                Ok(_) => {}
                Err(e) => panic!("quarry dev did not report running: {e}"),
            }
        }
        let lock = (1..=3)
            .map(|i| format!("127.0.0.1:{}", base + i))
            .collect::<Vec<_>>()
            .join(",");
        Dev { child, lock }
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(st.success());
        let deadline = Instant::now() + LEASE * 20;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "quarry dev exited with {st}");
                break;
            }
            assert!(Instant::now() < deadline, "quarry dev did not stop");
            std::thread::sleep(Duration::from_millis(20)); // polling the exit condition
        }
    }

    /// Runs a CLI command against this cluster; returns stdout (panics on failure).
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(quarry())
            .args(args)
            .env("QUARRY_LOCK", &self.lock)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "quarry {args:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs a CLI command whose stdout is a pipe nobody reads any more (`quarry ls | head
    /// -0`); returns its exit status and stderr.
    fn cli_to_closed_pipe(&self, args: &[&str]) -> (std::process::ExitStatus, String) {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(quarry())
            .args(args)
            .env("QUARRY_LOCK", &self.lock)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        (out.status, String::from_utf8_lossy(&out.stderr).to_string())
    }

    fn client(&self) -> Client {
        let mut cfg = ClientConfig::from_addr_list(&self.lock).unwrap();
        cfg.operation_timeout = change_bound();
        Client::new(cfg).unwrap()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Row keys in `read` output, in order.
fn row_keys(out: &str) -> Vec<String> {
    let lines: Vec<&str> = out.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].starts_with("----"))
        .map(|w| w[1].to_string())
        .collect()
}

/// Retries `f` until it returns true or `within` passes.
fn eventually(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50)); // polling the condition
    }
}

fn letters() -> Vec<String> {
    (b'a'..=b'z').map(|c| format!("{}row", c as char)).collect()
}

/// A test directory, a free port base and a runtime for library calls.
fn setup() -> (TestDir, PathBuf, u16, tokio::runtime::Runtime) {
    let dir = TestDir(std::env::temp_dir().join(format!(
        "quarry-cluster-cli-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    )));
    let _ = std::fs::remove_dir_all(&dir.0);
    let data = dir.0.join("data");
    (
        dir,
        data,
        free_port_base(),
        tokio::runtime::Runtime::new().unwrap(),
    )
}

/// Everything the CLI and the library do on a fresh cluster (see the module doc); leaves
/// table `users` with rows `arow`..`yrow`, `counter` = 7 and `vrow` with one version.
fn exercise(dev: &Dev, rt: &tokio::runtime::Runtime) {
    let t1 = Instant::now();
    // A table with split keys: three tablets.
    dev.cli(&[
        "createtable",
        "users",
        "families=info:maxversions=2,log",
        "splits=g,p",
    ]);
    assert!(dev.cli(&["ls"]).lines().any(|l| l == "users"));
    let fams = dev.cli(&["ls", "users"]);
    assert!(
        fams.contains("info") && fams.contains("maxversions=2"),
        "{fams}"
    );
    let tablets = dev.cli(&["tablets", "users"]);
    assert_eq!(
        tablets.lines().filter(|l| l.starts_with("users")).count(),
        3,
        "{tablets}"
    );
    assert!(!tablets.contains("(unassigned)"), "{tablets}");

    // Writes across tablets: a batch through the library, cells through the CLI.
    let c = dev.client();
    let batch = letters()
        .iter()
        .map(|r| {
            RowMutation::new(
                r.as_bytes(),
                vec![Mutation::set("log", b"n", 7, r.as_bytes())],
            )
        })
        .collect();
    let results = rt.block_on(c.mutate_rows("users", batch)).unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    dev.cli(&[
        "set",
        "users",
        "hrow",
        "info:email=h@example.com",
        "info:name@5=Hana",
    ]);

    // Reads and scans across tablet boundaries.
    let all = dev.cli(&["read", "users"]);
    assert_eq!(row_keys(&all), letters(), "{all}");
    let mid = dev.cli(&["read", "users", "start=erow", "end=rrow"]);
    let want: Vec<String> = letters()
        .into_iter()
        .filter(|r| r.as_str() >= "erow" && r.as_str() < "rrow")
        .collect();
    assert_eq!(row_keys(&mid), want);
    assert_eq!(
        row_keys(&dev.cli(&["read", "users", "count=10"])),
        letters()[..10]
    );
    assert_eq!(row_keys(&dev.cli(&["read", "users", "prefix=h"])), ["hrow"]);
    assert_eq!(dev.cli(&["count", "users"]).trim(), "26");
    let h = dev.cli(&["lookup", "users", "hrow", "columns=info:name"]);
    assert!(
        h.contains("info:name") && h.contains("\"Hana\"") && !h.contains("email"),
        "{h}"
    );
    assert!(h.contains("@ 1970/01/01-00:00:00.000005"), "{h}");

    // Versions and GC: maxversions=2 hides the oldest of three; maxversions=1 all but one.
    for (ts, v) in [("1", "one"), ("2", "two"), ("3", "three")] {
        dev.cli(&["set", "users", "vrow", &format!("info:v@{ts}={v}")]);
    }
    let v = dev.cli(&["lookup", "users", "vrow"]);
    assert!(
        v.contains("\"three\"") && v.contains("\"two\"") && !v.contains("\"one\""),
        "{v}"
    );
    dev.cli(&["setgcpolicy", "users", "info", "maxversions=1"]);
    eventually("the new GC policy applies", change_bound(), || {
        let v = dev.cli(&["lookup", "users", "vrow"]);
        v.contains("\"three\"") && !v.contains("\"two\"")
    });
    dev.cli(&["compact", "users", "major"]);
    let v = dev.cli(&["lookup", "users", "vrow", "cells-per-column=5"]);
    assert!(v.contains("\"three\"") && !v.contains("\"two\""), "{v}");

    // Read-modify-write and check-and-mutate (library). The schema change reloaded the
    // tablets, perhaps elsewhere: refresh the client's locations with idempotent reads
    // first, since a non-idempotent call that meets a moved tablet reports OutcomeUnknown.
    for row in ["counter", "hrow", "arow"] {
        rt.block_on(c.read_row("users", row.as_bytes(), &ReadFilter::default()))
            .unwrap();
    }
    let incr = |d| {
        vec![ReadModifyWrite::Increment {
            family: "log".into(),
            qualifier: b"hits".to_vec(),
            delta: d,
        }]
    };
    rt.block_on(c.read_modify_write("users", b"counter", incr(5)))
        .unwrap();
    let r = rt
        .block_on(c.read_modify_write("users", b"counter", incr(2)))
        .unwrap();
    assert_eq!(r.cells[0].value, 7i64.to_be_bytes());
    let has_info = ReadFilter {
        families: Some(vec!["info".into()]),
        ..ReadFilter::default()
    };
    let m = rt
        .block_on(c.check_and_mutate(
            "users",
            b"hrow",
            &has_info,
            vec![Mutation::set("log", b"seen", 9, b"yes")],
            vec![],
        ))
        .unwrap();
    assert!(m, "hrow has info cells");
    let m = rt
        .block_on(c.check_and_mutate(
            "users",
            b"arow",
            &has_info,
            vec![],
            vec![Mutation::set("log", b"seen", 9, b"no")],
        ))
        .unwrap();
    assert!(!m, "arow has no info cells");

    // Deletes.
    dev.cli(&["deleterow", "users", "zrow"]);
    assert!(dev.cli(&["lookup", "users", "zrow"]).trim().is_empty());

    // A reader that went away ends a command quietly (it panicked on EPIPE before).
    for args in [
        &["read", "users"][..],
        &["lock", "status"],
        &["lock", "ls", "/"],
    ] {
        let (status, stderr) = dev.cli_to_closed_pipe(args);
        assert!(status.success(), "quarry {args:?}: {status}\n{stderr}");
        assert!(!stderr.contains("panicked"), "quarry {args:?}: {stderr}");
    }

    eprintln!(
        "cluster_cli: CLI and library checks took {:?}",
        t1.elapsed()
    );
}

#[test]
fn cluster_cli_tables_reads_scans_versions_and_atomic_ops() {
    let (_dir, data, base, rt) = setup();
    let t0 = Instant::now();
    let dev = Dev::start(&data, base);
    eprintln!("cluster_cli: cluster up in {:?}", t0.elapsed());
    exercise(&dev, &rt);
    dev.cli(&["deletetable", "users"]);
    assert!(!dev.cli(&["ls"]).lines().any(|l| l == "users"));
    dev.stop();
}

#[test]
fn cluster_cli_full_restart_keeps_every_row() {
    let (_dir, data, base, rt) = setup();
    let dev = Dev::start(&data, base);
    exercise(&dev, &rt);
    let t2 = Instant::now();
    dev.stop();
    eprintln!("cluster_cli: cluster stopped in {:?}", t2.elapsed());
    let t3 = Instant::now();
    let dev = Dev::start(&data, base);
    eprintln!("cluster_cli: cluster up again in {:?}", t3.elapsed());
    let c = dev.client();
    let rows = rt
        .block_on(
            c.read_rows("users", RowRange::all(), &ReadFilter::latest(), 0)
                .collect_rows(),
        )
        .unwrap();
    let keys: Vec<String> = rows
        .iter()
        .map(|r| String::from_utf8_lossy(&r.key).to_string())
        .collect();
    let mut want: Vec<String> = letters().into_iter().filter(|r| r != "zrow").collect();
    want.push("counter".to_string());
    want.sort();
    assert_eq!(keys, want, "every row back after the restart");
    let counter = rows.iter().find(|r| r.key == b"counter").unwrap();
    assert_eq!(counter.cells[0].value, 7i64.to_be_bytes());
    let h = rows.iter().find(|r| r.key == b"hrow").unwrap();
    assert!(h
        .cells
        .iter()
        .any(|c| c.family == "log" && c.qualifier == b"seen" && c.value == b"yes"));
    let v = dev.cli(&["lookup", "users", "vrow"]);
    assert!(v.contains("\"three\"") && !v.contains("\"two\""), "{v}");

    // Delete the table.
    dev.cli(&["deletetable", "users"]);
    assert!(!dev.cli(&["ls"]).lines().any(|l| l == "users"));
    drop(c);
    dev.stop();
}
