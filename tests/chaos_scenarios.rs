//! `quarry chaos` in CI (issue 5): every scenario runs bounded, with a fixed seed, and
//! must end with 0 violations from every checker (linearizability per register,
//! ownership, linked lists, exactly-once counters, METADATA coverage, locks). Where no
//! network namespace is possible (not root), the partition scenarios must say SKIPPED.
//! And the checkers must flag a hand-built broken run (a stale read, a lost link, a
//! double-applied increment, a METADATA gap, overlapping ownership).
//!
//! The scenarios run one at a time (a lock inside this binary; nextest serializes the
//! `chaos_` binaries), each as a `quarry chaos` process with a deadline. A failing run
//! keeps its directory and prints it with the replay command.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Seconds of faults per scenario (with start-up, healing and read-back a run takes
/// about twice that).
const FAULT_SECONDS: u64 = 12;
/// Longest a whole run may take before the test gives up on it.
const RUN_BOUND: Duration = Duration::from_secs(150);

fn quarry() -> &'static str {
    env!("CARGO_BIN_EXE_quarry")
}

fn run_dir(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("quarry-chaos-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

/// Runs `quarry <args>` to completion within `bound`; returns (success, stdout+stderr).
fn run_quarry(args: &[&str], bound: Duration) -> (bool, String) {
    let out_path = std::env::temp_dir().join(format!(
        "quarry-chaos-test-out-{}-{}",
        std::process::id(),
        args.join("_")
            .replace('/', "_")
            .chars()
            .take(60)
            .collect::<String>()
    ));
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(quarry())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + bound;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    match status {
        Some(st) => (st.success(), text),
        None => (false, format!("{text}\n(killed after {bound:?})")),
    }
}

fn scenario(name: &str, seed: u64) {
    scenario_then(name, seed, |_| {});
}

/// Runs a scenario like [`scenario`], then `also` on its run directory (before it is
/// removed) for what the scenario's own faults must have left behind.
fn scenario_then(name: &str, seed: u64, also: impl FnOnce(&Path)) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = run_dir(name);
    let (ok, text) = run_quarry(
        &[
            "chaos",
            "--scenario",
            name,
            "--duration",
            &format!("{FAULT_SECONDS}s"),
            "--seed",
            &seed.to_string(),
            "--out",
            dir.to_str().unwrap(),
        ],
        RUN_BOUND,
    );
    eprintln!("{text}");
    assert!(
        ok,
        "chaos scenario {name} failed; run kept in {}",
        dir.display()
    );
    if text.contains("SKIPPED") {
        eprintln!("scenario {name} skipped here (no network namespace)");
        return;
    }
    assert!(text.contains("PASS"), "no PASS line:\n{text}");
    // Faults really happened and operations really ran.
    let nemesis = std::fs::read_to_string(dir.join("nemesis.jsonl")).unwrap();
    assert!(
        nemesis.contains("\"kill\"")
            || nemesis.contains("\"stop\"")
            || nemesis.contains("\"partition\"")
            || nemesis.contains("\"crash\"")
            || nemesis.contains("\"clock_rate\"")
            || nemesis.contains("\"fsync_delay\""),
        "no fault injected:\n{nemesis}"
    );
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    assert!(history.lines().filter(|l| l.contains("\"ok\"")).count() > 100);
    also(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn chaos_tablet_pause() {
    scenario("tablet-pause", 11);
}

#[test]
fn chaos_tablet_kill() {
    scenario("tablet-kill", 12);
}

#[test]
fn chaos_master_failover() {
    scenario("master-failover", 13);
}

#[test]
fn chaos_lock_leader_kill() {
    scenario("lock-leader-kill", 14);
}

#[test]
fn chaos_lock_partition() {
    scenario("lock-partition", 15);
}

#[test]
fn chaos_tablet_cut_from_lock() {
    scenario("tablet-cut-from-lock", 16);
}

#[test]
fn chaos_power_cut() {
    // Lock replicas and tablet servers run on the unsynced fault Fs: each kill -9 of the
    // power cut drops what they had not fsynced (their shadow directories exist), and the
    // checkers still find every acknowledged write.
    scenario_then("power-cut", 17, |dir| {
        let nemesis = std::fs::read_to_string(dir.join("nemesis.jsonl")).unwrap();
        assert!(nemesis.contains("power cut"), "{nemesis}");
        for p in ["tablet-1", "lock-1"] {
            assert!(
                dir.join("shadow").join(p).is_dir(),
                "{p} not on the unsynced Fs"
            );
        }
    });
}

/// Whether a process log `DIR/logs/<prefix>*.log` has a line for which `says` holds.
fn logs_say(dir: &Path, prefix: &str, says: impl Fn(&str) -> bool) -> bool {
    std::fs::read_dir(dir.join("logs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .any(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .any(&says)
        })
}

#[test]
fn chaos_clock_skew() {
    // Clock rates within the lock client's 1% drift margin while a tablet server loses its
    // lease: 0 violations, and every skew is logged with its rate and reset.
    scenario_then("clock-skew", 20, |dir| {
        let nemesis = std::fs::read_to_string(dir.join("nemesis.jsonl")).unwrap();
        assert!(nemesis.contains("clock-rate 1.004"), "{nemesis}");
        assert!(nemesis.contains("clock-rate 0.996"), "{nemesis}");
        assert!(nemesis.contains("clock-rate 1\""), "no reset: {nemesis}");
        let ctl = std::fs::read_to_string(dir.join("control").join("tablet-1")).unwrap();
        assert!(ctl.contains("clock-rate 1\n"), "{ctl}");
        // The worst-case rate reached a tablet server's process (its log says so).
        assert!(
            logs_say(dir, "tablet-", |l| l.contains("fault control")
                && l.contains("clock-rate 0.996 ")),
            "no tablet server reported the skew"
        );
    });
}

#[test]
fn chaos_slow_disk() {
    // fsyncs of lock replicas and tablet servers delayed by 100-400 ms: 0 violations; every
    // delay is logged with its value and reset, and the report gives the latency of the
    // operations started under it (the figures are in docs/reliability.md, not asserted:
    // no timed tests).
    scenario_then("slow-disk", 21, |dir| {
        let nemesis = std::fs::read_to_string(dir.join("nemesis.jsonl")).unwrap();
        assert!(nemesis.contains("\"fsync_delay\""), "{nemesis}");
        assert!(nemesis.contains("fsync-delay-ms 0"), "no reset: {nemesis}");
        let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(report.contains(" FsyncDelay "), "no latency row:\n{report}");
        assert!(
            logs_say(dir, "", |l| l.contains("fault control")
                && !l.ends_with("fsync-delay-ms 0")),
            "no process reported the fsync delay"
        );
    });
}

#[test]
fn chaos_soak() {
    scenario("soak", 19);
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn ev(op: u64, process: u32, kind: &str, key: &str, t: u64, call: &str) -> String {
    format!(r#"{{"op":{op},"process":{process},"kind":"{kind}","key":"{key}","t":{t},{call}}}"#)
}

/// A run directory with one fault of every kind the checkers look for.
fn broken_run(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("run.json"),
        r#"{"scenario":"hand-built","seed":0,"duration_s":0,"netns":false}"#,
    )
    .unwrap();
    let w = |v: &str| format!(r#""f":"write","value":"{v}""#);
    let r = |v: &str| format!(r#""f":"read","value":"{v}""#);
    let link = |p: &str| format!(r#""f":"link","prev":"{p}""#);
    let incr = r#""f":"incr""#;
    write_lines(
        &dir.join("history.jsonl"),
        &[
            // Stale read: b was acknowledged before the read began, the read saw a.
            ev(1, 0, "invoke", "reg/0", 10, &w("a")),
            ev(1, 0, "ok", "reg/0", 20, &w("a")),
            ev(2, 0, "invoke", "reg/0", 30, &w("b")),
            ev(2, 0, "ok", "reg/0", 40, &w("b")),
            ev(3, 1, "invoke", "reg/0", 50, r#""f":"read","value":null"#),
            ev(3, 1, "ok", "reg/0", 60, &r("a")),
            // One acknowledged increment, but the counter reads 2.
            ev(4, 2, "invoke", "ctr/0", 10, incr),
            ev(4, 2, "ok", "ctr/0", 20, incr),
            ev(
                5,
                3,
                "invoke",
                "link/3-000001",
                10,
                r#""f":"link","prev":null"#,
            ),
            ev(5, 3, "ok", "link/3-000001", 20, r#""f":"link","prev":null"#),
            ev(6, 3, "invoke", "link/3-000002", 30, &link("link/3-000001")),
            ev(6, 3, "ok", "link/3-000002", 40, &link("link/3-000001")),
        ],
    );
    std::fs::write(dir.join("nemesis.jsonl"), "").unwrap();
    let fin = dir.join("final");
    // The first link row is gone: UNDEFINED.
    write_lines(
        &fin.join("links.jsonl"),
        &[r#"{"row":"link/3-000002","prev":"link/3-000001"}"#.to_string()],
    );
    write_lines(
        &fin.join("counters.jsonl"),
        &[r#"{"key":"ctr/0","value":2}"#.to_string()],
    );
    let rec = |id: u64, start: &str, end: &str| {
        format!(
            r#"{{"table":"chaos","table_id":1,"tablet_id":{id},"start":"{start}","end":"{end}","dir":"","server_id":"","server_addr":"","epoch":1}}"#
        )
    };
    // hex: "6d" = "m", "6e" = "n": rows [m, n) have no tablet.
    write_lines(
        &fin.join("metadata.jsonl"),
        &[rec(1, "", "6d"), rec(2, "6e", "")],
    );
    std::fs::write(fin.join("done"), "done\n").unwrap();
    let own = dir.join("root/ownership");
    let line = |event: &str, server: &str, t: u64| {
        format!(r#"{{"event":"{event}","server":"{server}","tablet":7,"epoch":1,"mono_ns":{t}}}"#)
    };
    write_lines(
        &own.join("a-1.jsonl"),
        &[line("start", "a-1", 100), line("end", "a-1", 300)],
    );
    write_lines(&own.join("b-2.jsonl"), &[line("start", "b-2", 200)]);
}

#[test]
fn chaos_checkers_flag_a_broken_run() {
    let dir = run_dir("broken");
    broken_run(&dir);
    let (ok, text) = run_quarry(
        &["chaos", "check", dir.to_str().unwrap()],
        Duration::from_secs(60),
    );
    eprintln!("{text}");
    assert!(!ok, "the checkers passed a broken run:\n{text}");
    for what in [
        "VIOLATION linearizable",
        "VIOLATION linked-list: UNDEFINED: link/3-000001",
        "VIOLATION exactly-once",
        "VIOLATION metadata-coverage",
        "VIOLATION ownership",
        "replay: quarry chaos --scenario hand-built",
    ] {
        assert!(text.contains(what), "missing {what:?} in:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
