//! S1 (RELIABILITY.md): kill -9 an embedded tablet at random moments under 4 writers
//! (puts of two cells in one row mutation, and row deletes), with a memtable so small that
//! kills land inside flushes and compactions. The oracle is kept here, outside the killed
//! process, from the `PENDING`/`ACK` lines it prints. After each kill the tablet is
//! recovered and dumped, and checked:
//! - every acknowledged write is there (the row's newest acknowledged value, or the value
//!   of a write that was pending when the process died);
//! - no value that was never written appears; both cells of a row mutation agree (atomic);
//! - no acknowledged delete is undone; rows come back strictly ordered.
//!
//! 50 cycles; the seed of a failing cycle and the data directory are printed and kept.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CYCLES: u64 = 50;

/// The state of one row as the oracle knows it.
#[derive(Default, Clone, Debug)]
struct RowState {
    /// The value now in the table ("-" = absent).
    current: String,
    /// Values issued but not acknowledged when the writer died, in order.
    pending: Vec<String>,
}

fn quarry() -> &'static str {
    env!("CARGO_BIN_EXE_quarry")
}

fn dump(dir: &Path, seed: u64) -> Vec<(String, String, String)> {
    let out = Command::new(quarry())
        .args([
            "crash-writer",
            "--dump",
            "--seed",
            &seed.to_string(),
            "--dir",
        ])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.ends_with("END\n"), "dump incomplete: {text}");
    text.lines()
        .filter_map(|l| l.strip_prefix("ROW "))
        .map(|l| {
            let mut p = l.split(' ');
            (
                p.next().unwrap().into(),
                p.next().unwrap().into(),
                p.next().unwrap().into(),
            )
        })
        .collect()
}

#[test]
fn chaos_engine_kill9_keeps_every_acknowledged_write() {
    let dir = std::env::temp_dir().join(format!("quarry-kill9-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut rows: BTreeMap<String, RowState> = BTreeMap::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for cycle in 1..=CYCLES {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Kill after a random number of acknowledged writes (0 to ~600).
        let kill_after = (rng >> 33) % 600;
        let mut child = Command::new(quarry())
            .args(["crash-writer", "--seed", &cycle.to_string(), "--dir"])
            .arg(&dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut acks = 0;
        while acks < kill_after && Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            let mut p = line.splitn(3, ' ');
            match (p.next(), p.next(), p.next()) {
                (Some("PENDING"), Some(row), Some(v)) => {
                    rows.entry(row.into())
                        .or_insert_with(|| RowState {
                            current: "-".into(),
                            pending: vec![],
                        })
                        .pending
                        .push(v.into());
                }
                (Some("ACK"), Some(row), Some(v)) => {
                    let st = rows.get_mut(row).unwrap();
                    let i = st
                        .pending
                        .iter()
                        .position(|x| x == v)
                        .expect("ack of a pending write");
                    st.pending.drain(..=i);
                    st.current = v.into();
                    acks += 1;
                }
                (Some("READY"), _, _) => {}
                _ => panic!("cycle {cycle}: unexpected line {line:?}"),
            }
        }
        child.kill().unwrap();
        // Lines already printed before the kill still count (they were acknowledged).
        for line in lines.map_while(Result::ok) {
            let mut p = line.splitn(3, ' ');
            match (p.next(), p.next(), p.next()) {
                (Some("PENDING"), Some(row), Some(v)) => rows
                    .entry(row.into())
                    .or_insert_with(|| RowState {
                        current: "-".into(),
                        pending: vec![],
                    })
                    .pending
                    .push(v.into()),
                (Some("ACK"), Some(row), Some(v)) => {
                    let st = rows.get_mut(row).unwrap();
                    let i = st.pending.iter().position(|x| x == v).unwrap();
                    st.pending.drain(..=i);
                    st.current = v.into();
                }
                _ => {}
            }
        }
        let _ = child.wait();

        let got = dump(&dir, cycle);
        let keys: Vec<&String> = got.iter().map(|(k, _, _)| k).collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "cycle {cycle}: scan out of order"
        );
        let found: BTreeMap<String, (String, String)> =
            got.into_iter().map(|(k, a, b)| (k, (a, b))).collect();
        for (row, st) in rows.iter_mut() {
            let now = match found.get(row) {
                None => "-".to_string(),
                Some((a, b)) => {
                    assert_eq!(
                        a,
                        b,
                        "cycle {cycle}: row {row} torn: {a} vs {b} (data in {})",
                        dir.display()
                    );
                    a.clone()
                }
            };
            let allowed = now == st.current || st.pending.contains(&now);
            assert!(
                allowed,
                "cycle {cycle}: row {row} is {now:?}, acknowledged {:?}, pending {:?} (data in {})",
                st.current,
                st.pending,
                dir.display()
            );
            st.current = now;
            st.pending.clear();
        }
        for row in found.keys() {
            assert!(
                rows.contains_key(row),
                "cycle {cycle}: row {row} was never written"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
