//! The `sessions` measurement of `quarry bench lock`: many sessions kept alive, and what
//! that costs the servers in CPU.
//!
//! Opens `--sessions` sessions (Quarry: `CreateSession` RPCs; etcd: `LeaseGrant`s with
//! TTL `--lease-ms`), 64 at a time, then keeps every one alive every lease/3 from this
//! one process (Quarry: one `KeepAliveMany` naming every session, as the client library's
//! KeepAlive thread does for all sessions of a client; etcd: one `LeaseKeepAlive` stream,
//! as etcd's own clients multiplex their leases). After one
//! lease of warm-up it reads `utime + stime` of every server process
//! (`/proc/<pid>/stat`, pids from `--pid-dir`) at the start and the end of `--hold-secs`
//! and prints each one's CPU as a percentage of one core, and their sum. The sessions are
//! then left to expire.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{StreamExt, TryStreamExt};
use lockservice::client::{Client, Retry};
use lockservice::pb;

use super::bench_lock::{pid_dir, read_pid, report, split_addrs, LockBenchArgs, Service};

/// Requests in flight while opening and refreshing sessions.
const IN_FLIGHT: usize = 64;

/// CPU time (user + system) of `pid` so far.
fn cpu_time(pid: i32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (is the server running?)"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .with_context(|| format!("/proc/{pid}/stat has no command name"))?
        .1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let (u, s) = (f.get(11), f.get(12));
    let (Some(u), Some(s)) = (u, s) else {
        bail!("/proc/{pid}/stat is too short");
    };
    let ticks: u64 = u.parse::<u64>()? + s.parse::<u64>()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_micros(ticks * 1_000_000 / hz))
}

async fn quarry_open(c: &Client, n: usize) -> anyhow::Result<Vec<u64>> {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let client = format!("bench-held-{i}");
            let r = c
                .conn()
                .call(Retry::Once, |mut cl| {
                    let client = client.clone();
                    async move { cl.create_session(pb::CreateSessionRequest { client }).await }
                })
                .await?;
            anyhow::Ok(r.session)
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect()
        .await
}

/// Keeps `ids` alive every `interval` with one `KeepAliveMany`, as the client library's
/// KeepAlive thread does for all sessions of a client; counts sessions not kept alive in
/// `failed`.
fn quarry_keep(
    c: Client,
    ids: Vec<u64>,
    interval: Duration,
    failed: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let round = tokio::time::Instant::now();
            let r = c
                .conn()
                .call(Retry::Idempotent, |mut cl| {
                    let sessions = ids.clone();
                    async move {
                        cl.keep_alive_many(pb::KeepAliveManyRequest { sessions })
                            .await
                    }
                })
                .await;
            let lost = match r {
                Ok(resp) => resp.expired.len(),
                Err(_) => ids.len(),
            };
            failed.fetch_add(lost as u64, Ordering::Relaxed);
            tokio::time::sleep_until(round + interval).await;
        }
    })
}

/// Runs the `sessions` measurement.
pub async fn sessions(svc: &Service, a: &LockBenchArgs) -> anyhow::Result<()> {
    let dir = pid_dir(a, "sessions")?;
    let pids: Vec<i32> = (0..split_addrs(&a.addrs).len())
        .map(|i| read_pid(dir, i))
        .collect::<anyhow::Result<_>>()?;
    let lease = Duration::from_millis(a.lease_ms);
    let interval = lease / 3;
    let failed = Arc::new(AtomicU64::new(0));
    let opened = Instant::now();
    let task = match svc {
        Service::Quarry(c) => {
            let ids = quarry_open(c, a.sessions).await?;
            quarry_keep(c.clone(), ids, interval, failed.clone())
        }
        Service::Etcd(e) => {
            let ids: Vec<i64> = futures::stream::iter(0..a.sessions)
                .map(|_| e.grant(lease))
                .buffer_unordered(IN_FLIGHT)
                .try_collect()
                .await?;
            e.keep_alive(ids, interval)
        }
    };
    let open_secs = opened.elapsed().as_secs_f64();
    tokio::time::sleep(lease).await;
    let before: Vec<Duration> = pids
        .iter()
        .map(|p| cpu_time(*p))
        .collect::<anyhow::Result<_>>()?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.hold_secs)).await;
    let after: Vec<Duration> = pids
        .iter()
        .map(|p| cpu_time(*p))
        .collect::<anyhow::Result<_>>()?;
    let wall = t0.elapsed().as_secs_f64();
    task.abort();
    let pct: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (*a - *b).as_secs_f64() / wall * 100.0)
        .collect();
    let each: Vec<String> = pct.iter().map(|p| format!("{p:.1}%")).collect();
    report(
        a,
        "sessions",
        &format!(
            "{} sessions kept alive every {} ms for {:.0} s: servers' CPU {:.1}% of one core \
             in all (each: {}); opening them took {open_secs:.1} s; {} KeepAlives failed",
            a.sessions,
            interval.as_millis(),
            wall,
            pct.iter().sum::<f64>(),
            each.join(", "),
            failed.load(Ordering::Relaxed)
        ),
    );
    Ok(())
}
