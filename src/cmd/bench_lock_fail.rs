//! Failure measurements of `quarry bench lock`: a holder's death, and the leader killed
//! (kill -9, then restarted with its own command line) or frozen (SIGSTOP, then SIGCONT).
//!
//! Holder death: a child `quarry bench lock --hold PATH` takes the lock and prints `held`;
//! it is kill -9'd and the driver, already in a session, waits for the lock. The time is
//! checked against the earliest a correct service may hand the lock over (the child's last
//! KeepAlive was at most lease/3 before the kill, so its lease ran at least until
//! `kill + lease − lease/3`, plus Quarry's lock-delay) and against the target
//! (`lease + lock-delay + 200 ms`).
//!
//! Leader failover: before each trial every member must answer, agree on a leader and hold
//! the same log (a member restarted by the previous trial has caught up); the
//! driver signals the leader's pid (`--pid-dir`) and measures until a lock in its already
//! open session succeeds. A killed member is restarted from `/proc/<pid>/cmdline` and
//! `/proc/<pid>/cwd` read before the kill (its output goes to `<pid-dir>/<i>.log` and its
//! new pid to `<i>.pid`); a frozen one is resumed.

use std::ffi::OsString;
use std::io::BufRead;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use lockservice::client::{Client, ClientConfig};
use lockservice::pb::StatusResponse;

use super::bench_lock::{
    ms, pid_dir, read_pid, report, split_addrs, LockBenchArgs, Service, Target,
};

/// How long the driver waits for the group to settle or a lock to come back.
const SETTLE: Duration = Duration::from_secs(30);

/// The status of one member of Quarry's group, asked of it alone; `None` if it does not
/// answer within 300 ms.
async fn member_status(addr: &str) -> Option<StatusResponse> {
    let mut cfg = ClientConfig::new(vec![addr.to_string()]);
    cfg.request_timeout = Duration::from_millis(300);
    Client::new(cfg).ok()?.status().await.ok()
}

/// The index of Quarry's leader in `addrs`, when every answering replica agrees.
pub async fn quarry_leader(addrs: &[String]) -> Option<usize> {
    let mut leader = None;
    for addr in addrs {
        let Some(st) = member_status(addr).await else {
            continue;
        };
        if st.current_leader == 0 || leader.as_ref().is_some_and(|l| *l != st.leader_address) {
            return None;
        }
        leader = Some(st.leader_address);
    }
    let leader = leader?;
    addrs.iter().position(|a| *a == leader)
}

/// The highest term a member of Quarry's group reports.
pub async fn quarry_term(addrs: &[String]) -> Option<u64> {
    let mut term = None;
    for addr in addrs {
        term = term.max(member_status(addr).await.map(|st| st.term));
    }
    term
}

/// Every member answers and they agree on a leader: returns its index.
async fn settled(svc: &Service, addrs: &[String]) -> anyhow::Result<usize> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let all = match svc {
            Service::Quarry(_) => quarry_all_answer(addrs).await,
            Service::Etcd(e) => e.all_agree().await,
        };
        if all {
            if let Some(i) = svc.leader_index(addrs).await {
                return Ok(i);
            }
        }
        if Instant::now() >= deadline {
            bail!("the group did not settle on a leader within {SETTLE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every member answers, knows a leader and holds the same log (a member restarted by
/// the previous trial has caught up: a trial measures the failover of a whole group).
async fn quarry_all_answer(addrs: &[String]) -> bool {
    let mut logs = Vec::new();
    for addr in addrs {
        match member_status(addr).await {
            Some(st) if st.current_leader != 0 => logs.push((st.term, st.last_log_index)),
            _ => return false,
        }
    }
    logs.windows(2).all(|w| w[0] == w[1])
}

/// The holder-death child: take `path`'s lock, say so, hold it until killed.
pub async fn hold_child(svc: &Service, a: &LockBenchArgs, path: &str) -> anyhow::Result<()> {
    svc.prepare(&[path.to_string()]).await?;
    let h = svc
        .session("bench-holder", Duration::from_millis(a.lease_ms))
        .await?;
    svc.lock(&h, path, SETTLE).await?;
    println!("held");
    use std::io::Write;
    std::io::stdout().flush()?;
    std::future::pending::<()>().await;
    Ok(())
}

fn spawn_holder(a: &LockBenchArgs, path: &str) -> anyhow::Result<Child> {
    let target = match a.target {
        Target::Quarry => "quarry",
        Target::Etcd => "etcd",
    };
    let mut child = Command::new(std::env::current_exe()?)
        .args(["bench", "lock", "--target", target, "--lock", &a.addrs])
        .args(["--lease-ms", &a.lease_ms.to_string()])
        .args(["--attempt-ms", &a.attempt_ms.to_string(), "--hold", path])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the holder child")?;
    let out = child.stdout.take().context("child stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line)?;
    if line.trim() != "held" {
        let _ = child.kill();
        let _ = child.wait();
        bail!("the holder child did not take the lock (said {line:?})");
    }
    Ok(child)
}

/// kill -9 of a holder until this driver holds the lock.
pub async fn holder_death(svc: &Service, a: &LockBenchArgs) -> anyhow::Result<()> {
    let path = "/bench/holder".to_string();
    svc.prepare(std::slice::from_ref(&path)).await?;
    let lease = Duration::from_millis(a.lease_ms);
    let delay = match a.target {
        Target::Quarry => Duration::from_millis(a.lock_delay_ms),
        Target::Etcd => Duration::ZERO,
    };
    let earliest = lease - lease / 3 + delay;
    let bound = lease + delay + Duration::from_millis(200);
    let me = svc.session("bench-waiter", lease).await?;
    let addrs = split_addrs(&a.addrs);
    let mut hist = Histogram::<u64>::new(3)?;
    let (mut early, mut late) = (0, 0);
    let mut each = Vec::new();
    let trials = a.trials.min(5);
    for _ in 0..trials {
        let p = path.clone();
        let b = a.clone();
        let mut child = tokio::task::spawn_blocking(move || spawn_holder(&b, &p)).await??;
        let term = svc.term(&addrs).await;
        let t0 = Instant::now();
        child.kill()?;
        let _ = child.wait();
        let token = svc.lock(&me, &path, SETTLE).await?;
        let d = t0.elapsed();
        // A new leader restarts every lease (Quarry) or extends every lease (etcd): a
        // trial with an election in it measures that, not the holder's death.
        let elected = svc.term(&addrs).await != term;
        svc.unlock(&me, &token).await?;
        early += usize::from(d < earliest);
        late += usize::from(d > bound);
        hist.record(d.as_micros() as u64)?;
        each.push(format!(
            "{}{}",
            d.as_millis(),
            if elected { "*" } else { "" }
        ));
    }
    svc.close(me).await?;
    report(
        a,
        "holder-death",
        &format!(
            "{trials} trials: next holder after p50 {:.0} ms, min {:.0} ms, max {:.0} ms \
             (lease {} ms + lock-delay {} ms; target <= {} ms: {late} over; \
             earliest allowed {} ms: {early} before; each: {} ms, * = an election in the \
             trial)",
            ms(&hist, 0.5),
            hist.min() as f64 / 1000.0,
            hist.max() as f64 / 1000.0,
            lease.as_millis(),
            delay.as_millis(),
            bound.as_millis(),
            earliest.as_millis(),
            each.join(" ")
        ),
    );
    Ok(())
}

/// A process's command line and working directory, to start it again.
struct Cmdline {
    argv: Vec<OsString>,
    cwd: PathBuf,
}

fn capture(pid: i32) -> anyhow::Result<Cmdline> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline"))
        .with_context(|| format!("reading the command line of pid {pid}"))?;
    let argv: Vec<OsString> = raw
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| OsString::from_vec(s.to_vec()))
        .collect();
    if argv.is_empty() {
        bail!("pid {pid} has an empty command line");
    }
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))?;
    Ok(Cmdline { argv, cwd })
}

fn restart(dir: &Path, i: usize, c: &Cmdline) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{i}.log")))?;
    let child = Command::new(&c.argv[0])
        .args(&c.argv[1..])
        .current_dir(&c.cwd)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("restarting member {i}"))?;
    std::fs::write(dir.join(format!("{i}.pid")), format!("{}\n", child.id()))?;
    Ok(child)
}

fn signal(pid: i32, sig: i32) -> anyhow::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } != 0 {
        bail!("kill({pid}, {sig}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Leader kill -9 (or SIGSTOP when `freeze`) until the next successful lock.
pub async fn leader_failover(svc: &Service, a: &LockBenchArgs, freeze: bool) -> anyhow::Result<()> {
    let what = if freeze {
        "leader-freeze"
    } else {
        "leader-kill"
    };
    let dir = pid_dir(a, what)?.to_path_buf();
    let addrs = split_addrs(&a.addrs);
    let paths: Vec<String> = (0..a.trials).map(|k| format!("/bench/fail-{k}")).collect();
    svc.prepare(&paths).await?;
    let me = svc
        .session("bench-failover", Duration::from_millis(a.lease_ms))
        .await?;
    let mut hist = Histogram::<u64>::new(3)?;
    let mut each = Vec::new();
    let mut children = Vec::new();
    for path in &paths {
        let leader = settled(svc, &addrs).await?;
        let warm = svc.lock(&me, path, Duration::ZERO).await?;
        svc.unlock(&me, &warm).await?;
        let pid = read_pid(&dir, leader)?;
        let cmd = capture(pid)?;
        let t0 = Instant::now();
        signal(pid, if freeze { libc::SIGSTOP } else { libc::SIGKILL })?;
        tracing::info!(pid, member = leader + 1, %path, "{what}: leader signalled");
        let token = loop {
            match svc.lock(&me, path, Duration::ZERO).await {
                Ok(t) => break t,
                Err(e) if t0.elapsed() > SETTLE => bail!("{what}: no lock within {SETTLE:?}: {e}"),
                Err(_) => {}
            }
        };
        let d = t0.elapsed();
        tracing::info!(ms = d.as_millis() as u64, %path, "{what}: locked");
        hist.record(d.as_micros() as u64)?;
        each.push(format!("{}(r{})", d.as_millis(), leader + 1));
        if freeze {
            signal(pid, libc::SIGCONT)?;
        } else {
            children.push(restart(&dir, leader, &cmd)?);
        }
        let _ = svc.unlock(&me, &token).await;
    }
    settled(svc, &addrs).await?;
    let _ = svc.close(me).await;
    report(
        a,
        what,
        &format!(
            "{} trials: next lock after p50 {:.0} ms, max {:.0} ms, min {:.0} ms (each: {} ms)",
            a.trials,
            ms(&hist, 0.5),
            hist.max() as f64 / 1000.0,
            hist.min() as f64 / 1000.0,
            each.join(" ")
        ),
    );
    // Restarted members keep running for the script to stop (their pids are in --pid-dir).
    drop(children);
    Ok(())
}
