//! `quarry bench lock` (also `quarry lock bench`): the lock-service benchmark, one driver
//! for two targets, Quarry's lock service (`--target quarry`, through
//! `lockservice::client`) and etcd 3.4 (`--target etcd`, through [`super::bench_lock_etcd`],
//! etcd's lease + lock API on the same tonic stack), so client costs are equal.
//!
//! Measurements (`--measure`, comma separated, `all` for every one in this order):
//!
//! | name | what |
//! |---|---|
//! | `latency` | acquire+release cycles from one client on one lock: p50/p99/max, cycles/s |
//! | `throughput` | the same from `--clients` clients (default 8), each on its own lock |
//! | `holder-death` | a child process holds a lock and is kill -9'd: time until this driver holds it |
//! | `leader-kill` | kill -9 of the leader: time to the next successful lock; the member is restarted |
//! | `leader-freeze` | SIGSTOP of the leader: time to the next successful lock; then SIGCONT |
//! | `sessions` | `--sessions` sessions kept alive for `--hold-secs`: the replicas' CPU |
//!
//! The last four need the servers' pids: `--pid-dir` holds `<i>.pid` for the i-th address
//! of `--lock` (the script writes them; a member this driver restarts gets a new pid file
//! and its output in `<i>.log`). A session is a Quarry session or an etcd lease (TTL =
//! `--lease-ms`), kept alive every lease/3. Each line of output is one figure, prefixed
//! with the target, so a script can put both side by side.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use lockservice::client::{Client, ClientConfig, Session};
use lockservice::state::LockMode;

use super::bench_lock_etcd::Etcd;
use super::bench_lock_fail as fail;
use super::lock::DEFAULT_LOCK_ADDRS;

/// The service the benchmark drives.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Quarry's lock service.
    Quarry,
    /// An etcd 3.4 cluster.
    Etcd,
}

/// One measurement.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Acquire+release from one client.
    Latency,
    /// Acquire+release from --clients clients on as many locks.
    Throughput,
    /// kill -9 of a holder until the next holder.
    HolderDeath,
    /// kill -9 of the leader until the next lock.
    LeaderKill,
    /// SIGSTOP of the leader until the next lock.
    LeaderFreeze,
    /// Many sessions kept alive: the replicas' CPU.
    Sessions,
    /// Every measurement above.
    All,
}

/// `quarry bench lock`.
#[derive(Args, Debug, Clone)]
pub struct LockBenchArgs {
    /// Which service to drive.
    #[arg(long, value_enum, default_value = "quarry")]
    pub target: Target,
    /// The service's addresses (host:port), comma separated.
    #[arg(long = "lock", env = "QUARRY_LOCK", default_value = DEFAULT_LOCK_ADDRS)]
    pub addrs: String,
    /// What to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "latency")]
    pub measure: Vec<Measure>,
    /// Clients (each with its own session and lock) for `throughput`.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Acquire+release cycles per client.
    #[arg(long, default_value_t = 1000)]
    pub cycles: u64,
    /// Trials of holder-death, leader-kill and leader-freeze.
    #[arg(long, default_value_t = 10)]
    pub trials: usize,
    /// Sessions held by `sessions`.
    #[arg(long, default_value_t = 5000)]
    pub sessions: usize,
    /// How long `sessions` holds them while sampling CPU, seconds.
    #[arg(long, default_value_t = 10)]
    pub hold_secs: u64,
    /// The session lease the servers grant (Quarry's `--lease-ms`; etcd's lease TTL).
    #[arg(long, default_value_t = 3000)]
    pub lease_ms: u64,
    /// Quarry's lock-delay (`--lock-delay-ms` of the replicas; 0 for etcd).
    #[arg(long, default_value_t = 1000)]
    pub lock_delay_ms: u64,
    /// Time one request attempt may take before the client tries another server.
    #[arg(long, default_value_t = 300)]
    pub attempt_ms: u64,
    /// Directory of `<i>.pid` files of the servers, in --lock order.
    #[arg(long)]
    pub pid_dir: Option<PathBuf>,
    /// Internal: hold this lock until killed (the holder-death child).
    #[arg(long, hide = true)]
    pub hold: Option<String>,
}

impl LockBenchArgs {
    /// The command-line defaults (Quarry at the default addresses, latency).
    pub fn defaults() -> LockBenchArgs {
        LockBenchArgs {
            target: Target::Quarry,
            addrs: DEFAULT_LOCK_ADDRS.to_string(),
            measure: vec![Measure::Latency],
            clients: 8,
            cycles: 1000,
            trials: 10,
            sessions: 5000,
            hold_secs: 10,
            lease_ms: 3000,
            lock_delay_ms: 1000,
            attempt_ms: 300,
            pid_dir: None,
            hold: None,
        }
    }
}

/// A connection to the target.
pub enum Service {
    /// Quarry's client.
    Quarry(Client),
    /// etcd's.
    Etcd(Etcd),
}

/// A session: Quarry's, or an etcd lease with its keep-alive task.
pub enum Holder {
    /// A Quarry session.
    Quarry(Session),
    /// An etcd lease and the task that keeps it alive.
    Etcd(i64, tokio::task::JoinHandle<()>),
}

impl Service {
    /// Connects to `a.addrs` (lazily).
    pub fn connect(a: &LockBenchArgs) -> anyhow::Result<Service> {
        let addrs = split_addrs(&a.addrs);
        let attempt = Duration::from_millis(a.attempt_ms);
        Ok(match a.target {
            Target::Quarry => {
                let mut cfg = ClientConfig::new(addrs);
                cfg.attempt_timeout = attempt;
                Service::Quarry(Client::new(cfg)?)
            }
            Target::Etcd => Service::Etcd(Etcd::new(&addrs, attempt, Duration::from_secs(5))?),
        })
    }

    /// Opens a session (lease `lease` for etcd; Quarry's replicas choose theirs).
    pub async fn session(&self, name: &str, lease: Duration) -> anyhow::Result<Holder> {
        match self {
            Service::Quarry(c) => Ok(Holder::Quarry(c.open_session(name).await?)),
            Service::Etcd(e) => {
                let id = e.grant(lease).await?;
                Ok(Holder::Etcd(id, e.keep_alive(vec![id], lease / 3)))
            }
        }
    }

    /// Takes `path`'s lock in `h`, waiting up to `wait`; returns what [`Service::unlock`] needs.
    pub async fn lock(&self, h: &Holder, path: &str, wait: Duration) -> anyhow::Result<Vec<u8>> {
        match (self, h) {
            (Service::Quarry(_), Holder::Quarry(s)) => {
                s.acquire(path, LockMode::Exclusive, wait).await?;
                Ok(path.as_bytes().to_vec())
            }
            (Service::Etcd(e), Holder::Etcd(id, _)) => e.lock(path, *id, wait).await,
            _ => bail!("a session of another target"),
        }
    }

    /// Releases a lock taken by [`Service::lock`].
    pub async fn unlock(&self, h: &Holder, token: &[u8]) -> anyhow::Result<()> {
        match (self, h) {
            (Service::Quarry(_), Holder::Quarry(s)) => {
                s.release(std::str::from_utf8(token)?).await?;
                Ok(())
            }
            (Service::Etcd(e), Holder::Etcd(..)) => e.unlock(token).await,
            _ => bail!("a session of another target"),
        }
    }

    /// Ends a session (its locks are freed).
    pub async fn close(&self, h: Holder) -> anyhow::Result<()> {
        match (self, h) {
            (Service::Quarry(_), Holder::Quarry(s)) => Ok(s.close().await?),
            (Service::Etcd(e), Holder::Etcd(id, task)) => {
                task.abort();
                e.revoke(id).await
            }
            _ => bail!("a session of another target"),
        }
    }

    /// Creates what the target needs before locking (Quarry's lock files).
    pub async fn prepare(&self, paths: &[String]) -> anyhow::Result<()> {
        let Service::Quarry(c) = self else {
            return Ok(());
        };
        for path in std::iter::once("/bench").chain(paths.iter().map(|p| p.as_str())) {
            match c.create(path, path == "/bench", b"").await {
                Ok(_) | Err(lockservice::Error::AlreadyExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The index (in --lock order) of the leader, when every answering member agrees.
    pub async fn leader_index(&self, addrs: &[String]) -> Option<usize> {
        match self {
            Service::Quarry(_) => fail::quarry_leader(addrs).await,
            Service::Etcd(e) => e.leader_index().await,
        }
    }

    /// The highest Raft term a member reports: a trial across which it changes saw an
    /// election.
    pub async fn term(&self, addrs: &[String]) -> Option<u64> {
        match self {
            Service::Quarry(_) => fail::quarry_term(addrs).await,
            Service::Etcd(e) => e.term().await,
        }
    }
}

/// The addresses of a comma-separated list.
pub fn split_addrs(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect()
}

/// Prints one figure line: `<target> <measure>: <text>`.
pub fn report(a: &LockBenchArgs, what: &str, text: &str) {
    let t = match a.target {
        Target::Quarry => "quarry",
        Target::Etcd => "etcd",
    };
    println!("{t} {what}: {text}");
}

/// Milliseconds of a histogram of microseconds at quantile `q`.
pub fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Runs `quarry bench lock`.
pub fn run(a: LockBenchArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let svc = Service::connect(&a)?;
        if let Some(path) = &a.hold {
            return fail::hold_child(&svc, &a, path).await;
        }
        let all = a.measure.contains(&Measure::All);
        let order = [
            Measure::Latency,
            Measure::Throughput,
            Measure::HolderDeath,
            Measure::LeaderKill,
            Measure::LeaderFreeze,
            Measure::Sessions,
        ];
        for m in order {
            if !all && !a.measure.contains(&m) {
                continue;
            }
            match m {
                Measure::Latency => cycles(&svc, &a, 1, "latency").await?,
                Measure::Throughput => cycles(&svc, &a, a.clients, "throughput").await?,
                Measure::HolderDeath => fail::holder_death(&svc, &a).await?,
                Measure::LeaderKill => fail::leader_failover(&svc, &a, false).await?,
                Measure::LeaderFreeze => fail::leader_failover(&svc, &a, true).await?,
                Measure::Sessions => super::bench_lock_sessions::sessions(&svc, &a).await?,
                Measure::All => {}
            }
        }
        Ok(())
    })
}

/// Acquire+release cycles from `clients` sessions, each on its own lock.
async fn cycles(
    svc: &Service,
    a: &LockBenchArgs,
    clients: usize,
    what: &str,
) -> anyhow::Result<()> {
    if clients == 0 || a.cycles == 0 {
        bail!("--clients and --cycles must be positive");
    }
    let paths: Vec<String> = (0..clients).map(|i| format!("/bench/lock-{i}")).collect();
    svc.prepare(&paths).await?;
    let lease = Duration::from_millis(a.lease_ms);
    let mut holders = Vec::new();
    for i in 0..clients {
        holders.push(svc.session(&format!("bench-{i}"), lease).await?);
    }
    let start = Instant::now();
    let runs = holders.iter().zip(&paths).map(|(h, path)| async move {
        let mut hist = Histogram::<u64>::new(3)?;
        for _ in 0..a.cycles {
            let t = Instant::now();
            let token = svc.lock(h, path, Duration::ZERO).await?;
            svc.unlock(h, &token).await?;
            hist.record(t.elapsed().as_micros() as u64)?;
        }
        anyhow::Ok(hist)
    });
    let hists = futures::future::join_all(runs).await;
    let secs = start.elapsed().as_secs_f64();
    let mut all = Histogram::<u64>::new(3)?;
    for h in hists {
        all.add(h?)?;
    }
    for h in holders {
        svc.close(h).await?;
    }
    let total = clients as u64 * a.cycles;
    report(
        a,
        what,
        &format!(
            "{clients} clients x {} acquire+release: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {:.0} cycles/s",
            a.cycles,
            ms(&all, 0.5),
            ms(&all, 0.99),
            all.max() as f64 / 1000.0,
            total as f64 / secs
        ),
    );
    Ok(())
}

/// The pid in `<dir>/<i>.pid`.
pub fn read_pid(dir: &Path, i: usize) -> anyhow::Result<i32> {
    let p = dir.join(format!("{i}.pid"));
    let s = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    s.trim()
        .parse()
        .with_context(|| format!("{} does not hold a pid", p.display()))
}

/// `--pid-dir`, or an error naming the measurement that needs it.
pub fn pid_dir<'a>(a: &'a LockBenchArgs, what: &str) -> anyhow::Result<&'a Path> {
    a.pid_dir
        .as_deref()
        .with_context(|| format!("{what} needs --pid-dir (the servers' <i>.pid files)"))
}
