//! Shared harness of the multi-process lock-service tests (`tests/lock_*.rs`): real
//! `quarry lock-server` processes on loopback ports, each with its own data directory and
//! log file under one test directory. The directory is removed when the test passes and
//! kept (its path printed) when it fails. Every process is killed when the harness drops.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lockservice::client::{Client, ClientConfig};
use sstable::fault::control::CONTROL_ENV;

/// Timing every test cluster runs with (short, so tests are quick).
pub const LEASE: Duration = Duration::from_millis(1500);
pub const LOCK_DELAY: Duration = Duration::from_millis(600);
pub const HEARTBEAT: Duration = Duration::from_millis(50);
pub const ELECTION_BASE: Duration = Duration::from_millis(150);
pub const ELECTION_WIDTH: Duration = Duration::from_millis(50);

/// A generous bound for one election: the slowest replica's window, several times over
/// (a vote can split once, a loaded machine adds delays).
pub fn election_bound() -> Duration {
    (ELECTION_BASE + ELECTION_WIDTH * 4) * 8
}

/// The `quarry` binary the replicas run: this build's, or `QUARRY_BIN` when set (to run a
/// test against another build, e.g. one without a fix, and see it fail there).
pub fn quarry() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("QUARRY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_quarry").to_string())
    })
}

pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A test directory: removed on success, kept on failure.
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("quarry-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TestDir(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("QUARRY_KEEP_TEST_DIR").is_some() {
            eprintln!("data and logs kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A group of `quarry lock-server` processes.
pub struct Cluster {
    pub procs: BTreeMap<u64, Child>,
    pub addrs: BTreeMap<u64, SocketAddr>,
    /// Each replica's current log file.
    pub logs: BTreeMap<u64, PathBuf>,
    starts: u32,
    pub dir: TestDir,
}

impl Cluster {
    pub fn start(name: &str, n: u64) -> Cluster {
        let mut c = Cluster {
            procs: BTreeMap::new(),
            addrs: (1..=n).map(|i| (i, free_addr())).collect(),
            logs: BTreeMap::new(),
            starts: 0,
            dir: TestDir::new(name),
        };
        for id in 1..=n {
            c.start_replica(id);
        }
        c
    }

    pub fn peers(&self) -> String {
        let parts: Vec<String> = self.addrs.iter().map(|(i, a)| format!("{i}={a}")).collect();
        parts.join(",")
    }

    pub fn addr_list(&self) -> Vec<String> {
        self.addrs.values().map(|a| a.to_string()).collect()
    }

    pub fn start_replica(&mut self, id: u64) {
        self.start_replica_with(id, LEASE, LOCK_DELAY);
    }

    /// Starts replica `id` with this lease and lock-delay (the group's are LEASE and
    /// LOCK_DELAY); returns the path of its log.
    pub fn start_replica_with(
        &mut self,
        id: u64,
        lease: Duration,
        lock_delay: Duration,
    ) -> PathBuf {
        self.starts += 1;
        let log = self.dir.0.join(format!("r{id}.{}.log", self.starts));
        let out = std::fs::File::create(&log).unwrap();
        let ms = |d: Duration| d.as_millis().to_string();
        let child = Command::new(quarry())
            .arg("lock-server")
            .args([
                "--id",
                &id.to_string(),
                "--peers",
                &self.peers(),
                "--bootstrap",
            ])
            .arg("--data")
            .arg(self.dir.0.join(format!("r{id}")))
            .args(["--lease-ms", &ms(lease), "--lock-delay-ms", &ms(lock_delay)])
            .args(["--heartbeat-ms", &ms(HEARTBEAT)])
            .args(["--election-base-ms", &ms(ELECTION_BASE)])
            .args(["--election-width-ms", &ms(ELECTION_WIDTH)])
            .env("RUST_LOG", "info")
            .env(CONTROL_ENV, self.control_path(id))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        self.procs.insert(id, child);
        self.logs.insert(id, log.clone());
        log
    }

    /// Replica `id`'s fault-control file (sstable's `QUARRY_FAULT_CONTROL`; absent: no
    /// faults).
    fn control_path(&self, id: u64) -> PathBuf {
        self.dir.0.join(format!("control-r{id}"))
    }

    /// Makes every fsync of replica `id` take `delay` longer, from when this returns (the
    /// replica reports each change of its control file in its log).
    pub async fn set_fsync_delay(&self, id: u64, delay: Duration) {
        let line = format!("fsync-delay-ms {}", delay.as_millis());
        let path = self.control_path(id);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{line}\n")).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let log = &self.logs[&id];
        let seen = |s: &str| {
            s.lines()
                .rev()
                .find(|l| l.contains("fault control"))
                .is_some_and(|l| l.ends_with(&line))
        };
        wait_for_file(log, election_bound(), seen).await;
    }

    /// kill -9.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.procs.remove(&id) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn client(&self) -> Client {
        let mut cfg = ClientConfig::new(self.addr_list());
        cfg.request_timeout = election_bound();
        Client::new(cfg).unwrap()
    }

    /// A client that talks to replica `id` only (status without redirects).
    pub fn client_of(&self, id: u64) -> Client {
        let mut cfg = ClientConfig::new(vec![self.addrs[&id].to_string()]);
        cfg.request_timeout = Duration::from_millis(500);
        Client::new(cfg).unwrap()
    }

    /// The replica that a majority of live replicas name as leader (and that says so).
    pub async fn leader(&self) -> u64 {
        wait_for("an agreed leader", election_bound(), || async {
            for id in self.procs.keys() {
                let Ok(st) = self.client_of(*id).status().await else {
                    continue;
                };
                if st.state == "Leader" && st.current_leader == *id {
                    return Some(*id);
                }
            }
            None
        })
        .await
    }
}

impl Cluster {
    /// Waits until every live replica has applied the leader's whole log (so a freshly
    /// restarted replica is a real candidate before the next fault).
    pub async fn caught_up(&self) {
        let leader = self.leader().await;
        let target = self
            .client_of(leader)
            .status()
            .await
            .unwrap()
            .last_log_index;
        for id in self.procs.keys() {
            wait_for(
                &format!("replica {id} to catch up"),
                election_bound(),
                || async {
                    let st = self.client_of(*id).status().await.ok()?;
                    (st.last_applied >= target).then_some(())
                },
            )
            .await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.procs.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}

/// A child process killed on drop (clients under test).
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = signal(&self.0, "CONT");
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends a signal by name (STOP, CONT, KILL) with kill(1).
pub fn signal(child: &Child, sig: &str) -> std::io::Result<()> {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()?;
    if st.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "kill -{sig} {} failed",
            child.id()
        )))
    }
}

/// Polls `f` every 10 ms until it gives `Some` or `within` passes (then panics naming
/// `what`).
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "no {what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads a file that a child writes into, until `pred` holds for its content.
pub async fn wait_for_file(path: &Path, within: Duration, pred: impl Fn(&str) -> bool) -> String {
    wait_for(
        &format!("expected output in {}", path.display()),
        within,
        || async {
            let s = std::fs::read_to_string(path).unwrap_or_default();
            pred(&s).then_some(s)
        },
    )
    .await
}
