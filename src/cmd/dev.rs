//! `quarry dev`: a complete local cluster in one command.
//!
//! Starts, as child processes of itself (each in its own process group, so a Ctrl-C
//! reaches only `quarry dev`, which then stops them in order):
//!
//! | role | address (default `--port-base 7100`) | data |
//! |---|---|---|
//! | 3 lock-service replicas | 127.0.0.1:7101, :7102, :7103 | `<data>/lock-N` |
//! | master and a standby | 127.0.0.1:7201, :7202 | `<data>/root` |
//! | 3 tablet servers | 127.0.0.1:7301, :7302, :7303 | `<data>/root` |
//!
//! Each child logs to `<data>/logs/<role>.log` (appended across runs). The lock replicas
//! form their group on the first start (`--bootstrap` is ignored by an initialized
//! replica), so restarting `quarry dev` on the same `--data` keeps everything.
//!
//! Startup waits (up to `--start-timeout`) until the lock service answers, a master
//! answers `status`, every tablet server has registered and no tablet is unassigned; then
//! it prints the endpoints and a short tour. A child that exits is reported at once and
//! restarted after a pause that grows while it keeps failing (0.25 s doubling to 5 s): a
//! master that lost its session and a tablet server whose file was deleted exit by design
//! and rely on a supervisor to start a new incarnation.
//! SIGINT/SIGTERM stop the masters, then the tablet servers, then the lock replicas, each
//! with SIGTERM and, after a grace period, SIGKILL. Children are also told (by
//! `PR_SET_PDEATHSIG`) to die if `quarry dev` itself is killed.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use client::{Client, ClientConfig};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// `quarry dev`: runs a whole cluster on loopback.
#[derive(Args, Debug, Clone)]
pub struct DevArgs {
    /// Directory for every role's data and logs.
    #[arg(long, default_value = "quarry-data")]
    pub data: PathBuf,
    /// Ports: lock replicas at base+1..3, masters at base+101..102, tablet servers at
    /// base+201.. (the defaults are the addresses every other command assumes).
    #[arg(long, default_value_t = 7100)]
    pub port_base: u16,
    /// Number of tablet servers.
    #[arg(long, default_value_t = 3)]
    pub tablet_servers: u16,
    /// Lock-service session lease, milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub lease_ms: u64,
    /// Lock-delay after a session expiry, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub lock_delay_ms: u64,
    /// Give up starting after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub start_timeout: u64,
    /// Each process serves metrics and a status page on its port plus this (0: none).
    #[arg(long, default_value_t = 1000)]
    pub http_offset: u16,
    /// A TOML file with the same keys as these flags (flags win over the file).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Which group a child belongs to (started and stopped group by group).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Tier {
    Lock,
    Master,
    Tablet,
}

/// One child process to run.
#[derive(Clone, Debug)]
struct Role {
    name: String,
    tier: Tier,
    args: Vec<String>,
}

/// The addresses of a plan.
struct Endpoints {
    lock: Vec<String>,
    masters: Vec<String>,
    tablets: Vec<String>,
}

fn endpoints(a: &DevArgs) -> anyhow::Result<Endpoints> {
    let port = |off: u16| -> anyhow::Result<String> {
        let p = a
            .port_base
            .checked_add(off)
            .context("--port-base too high")?;
        Ok(format!("127.0.0.1:{p}"))
    };
    Ok(Endpoints {
        lock: (1..=3).map(port).collect::<anyhow::Result<_>>()?,
        masters: (101..=102).map(port).collect::<anyhow::Result<_>>()?,
        tablets: (0..a.tablet_servers)
            .map(|i| port(201 + i))
            .collect::<anyhow::Result<_>>()?,
    })
}

/// Every child of the cluster, in start order: lock replicas, tablet servers (so they have
/// registered when a master takes over), masters.
fn plan(a: &DevArgs, ep: &Endpoints) -> Vec<Role> {
    let data = |sub: &str| a.data.join(sub).display().to_string();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let peers: Vec<String> = ep
        .lock
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("{}={addr}", i + 1))
        .collect();
    let lock_list = ep.lock.join(",");
    let mut roles = Vec::new();
    for (i, addr) in ep.lock.iter().enumerate() {
        let id = (i + 1).to_string();
        let mut args = s(&["lock-server", "--id", &id, "--listen", addr]);
        args.extend(s(&["--peers", &peers.join(","), "--bootstrap"]));
        args.extend(s(&["--data", &data(&format!("lock-{id}"))]));
        args.extend(s(&["--lease-ms", &a.lease_ms.to_string()]));
        args.extend(s(&["--lock-delay-ms", &a.lock_delay_ms.to_string()]));
        args.extend(http_flag(a, addr));
        roles.push(Role {
            name: format!("lock-{id}"),
            tier: Tier::Lock,
            args,
        });
    }
    for (i, addr) in ep.tablets.iter().enumerate() {
        let name = format!("tablet-{}", i + 1);
        let mut args = s(&[
            "tablet-server",
            "--listen",
            addr,
            "--data",
            &data("root"),
            "--lock",
            &lock_list,
            "--name",
            &name,
        ]);
        args.extend(http_flag(a, addr));
        roles.push(Role {
            name,
            tier: Tier::Tablet,
            args,
        });
    }
    for (i, addr) in ep.masters.iter().enumerate() {
        let mut args = s(&[
            "master",
            "--listen",
            addr,
            "--data",
            &data("root"),
            "--lock",
            &lock_list,
        ]);
        args.extend(http_flag(a, addr));
        roles.push(Role {
            name: format!("master-{}", i + 1),
            tier: Tier::Master,
            args,
        });
    }
    roles
}

/// The status-page address of the process listening on `addr` (`host:port`): same host,
/// port plus `--http-offset`; `None` when the offset is 0 or the port would overflow.
fn http_addr(a: &DevArgs, addr: &str) -> Option<String> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let http = port
        .checked_add(a.http_offset)
        .filter(|_| a.http_offset > 0)?;
    Some(format!("{host}:{http}"))
}

/// `--http ADDR` for the process on `addr`, if status pages are on.
fn http_flag(a: &DevArgs, addr: &str) -> Vec<String> {
    http_addr(a, addr)
        .map(|h| vec!["--http".to_string(), h])
        .unwrap_or_default()
}

/// A child: its pid (for signals) while running, and its restart bookkeeping.
struct Running {
    role: Role,
    pid: i32,
    exited: bool,
    started: Instant,
    /// Restarts in a row that ran less than [`STABLE_RUN`].
    restarts: u32,
    /// When to start it again after it exited.
    restart_at: Option<Instant>,
}

/// A child that ran this long is considered healthy: its next crash restarts it quickly.
const STABLE_RUN: Duration = Duration::from_secs(30);

/// The pause before restarting a child that exited for the `n`-th time in a row.
fn restart_delay(n: u32) -> Duration {
    (Duration::from_millis(250) * 2u32.saturating_pow(n.min(8))).min(Duration::from_secs(5))
}

/// Exit reports: (child name, exit status).
type Exits = mpsc::UnboundedReceiver<(String, String)>;

/// The children and what is needed to restart them.
struct Sup {
    kids: Vec<Running>,
    logs: PathBuf,
    tx: mpsc::UnboundedSender<(String, String)>,
    exits: Exits,
}

/// Starts `role`, logging to `<logs>/<name>.log`; its exit is sent on `exits`.
fn start(
    role: &Role,
    logs: &Path,
    exits: &mpsc::UnboundedSender<(String, String)>,
) -> anyhow::Result<Running> {
    let exe = std::env::current_exe().context("cannot find the quarry binary")?;
    let log_path = logs.join(format!("{}.log", role.name));
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(&role.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; the closure only calls it.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .with_context(|| format!("starting {}", role.name))?;
    let pid = child.id().context("child has no pid")? as i32;
    let name = role.name.clone();
    let tx = exits.clone();
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => format!("unknown status ({e})"),
        };
        let _ = tx.send((name, status));
    });
    Ok(Running {
        role: role.clone(),
        pid,
        exited: false,
        started: Instant::now(),
        restarts: 0,
        restart_at: None,
    })
}

/// Runs `quarry dev`.
pub fn dev(a: DevArgs) -> anyhow::Result<()> {
    // A current-thread runtime: children are forked from this (long-lived) thread, which
    // PR_SET_PDEATHSIG ties them to.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run(a))
}

async fn run(a: DevArgs) -> anyhow::Result<()> {
    let ep = endpoints(&a)?;
    let logs = a.data.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let (tx, exits) = mpsc::unbounded_channel();
    let mut sup = Sup {
        kids: Vec::new(),
        logs: logs.clone(),
        tx,
        exits,
    };
    for role in plan(&a, &ep) {
        match start(&role, &logs, &sup.tx) {
            Ok(r) => sup.kids.push(r),
            Err(e) => {
                stop_all(&mut sup).await;
                return Err(e);
            }
        }
    }
    eprintln!(
        "started {} processes; logs in {}",
        sup.kids.len(),
        logs.display()
    );
    // Short timeouts: readiness is polled, each probe must come back quickly.
    let mut cfg = ClientConfig::new(ep.lock.clone());
    cfg.operation_timeout = Duration::from_secs(2);
    cfg.attempt_timeout = Duration::from_secs(1);
    let client = Client::new(cfg)?;
    let deadline = Instant::now() + Duration::from_secs(a.start_timeout);
    let ready = tokio::select! {
        r = wait_ready(&client, a.tablet_servers as usize, deadline) => r,
        _ = sigint.recv() => Err(anyhow::anyhow!("interrupted while starting")),
        _ = sigterm.recv() => Err(anyhow::anyhow!("terminated while starting")),
        _ = supervise(&mut sup) => unreachable!("supervision never ends"),
    };
    if let Err(e) = ready {
        eprintln!("quarry dev: {e:#}; stopping");
        stop_all(&mut sup).await;
        bail!("the cluster did not start: {e:#}");
    }
    print_banner(&a, &ep, &a.data);
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
        _ = supervise(&mut sup) => {}
    }
    eprintln!("quarry dev: stopping");
    stop_all(&mut sup).await;
    eprintln!("quarry dev: stopped");
    Ok(())
}

/// Reports every child exit and restarts the child after a growing pause (a master that
/// lost its session and a tablet server whose file was deleted exit by design and expect
/// a supervisor to start a new incarnation). Runs forever.
async fn supervise(sup: &mut Sup) {
    loop {
        let next = sup.kids.iter().filter_map(|k| k.restart_at).min();
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            msg = sup.exits.recv() => {
                let Some((name, status)) = msg else { return };
                let Some(k) = sup.kids.iter_mut().find(|k| k.role.name == name) else {
                    continue;
                };
                k.exited = true;
                if k.started.elapsed() >= STABLE_RUN {
                    k.restarts = 0;
                }
                let delay = restart_delay(k.restarts);
                k.restart_at = Some(Instant::now() + delay);
                let log = sup.logs.join(format!("{name}.log"));
                eprintln!(
                    "quarry dev: {name} exited ({status}; see {}); restarting it in {delay:?}",
                    log.display()
                );
            }
            _ = tokio::time::sleep_until(next.unwrap_or(far)), if next.is_some() => {
                restart_due(sup);
            }
        }
    }
}

/// Starts every child whose restart time has come.
fn restart_due(sup: &mut Sup) {
    let now = Instant::now();
    for k in sup.kids.iter_mut() {
        if k.restart_at.is_none_or(|t| t > now) {
            continue;
        }
        match start(&k.role, &sup.logs, &sup.tx) {
            Ok(mut r) => {
                r.restarts = k.restarts + 1;
                eprintln!("quarry dev: restarted {}", k.role.name);
                *k = r;
            }
            Err(e) => {
                k.restarts += 1;
                let delay = restart_delay(k.restarts);
                k.restart_at = Some(now + delay);
                eprintln!(
                    "quarry dev: cannot restart {}: {e:#}; again in {delay:?}",
                    k.role.name
                );
            }
        }
    }
}

/// Waits until the lock service, a master and every tablet server answer, and nothing is
/// unassigned.
async fn wait_ready(client: &Client, servers: usize, deadline: Instant) -> anyhow::Result<()> {
    let mut last = String::new();
    let mut pause = Duration::from_millis(100);
    loop {
        let state = match client.status().await {
            Ok(s) if s.servers.len() >= servers && s.unassigned == 0 => {
                match client.probe_metadata().await {
                    Ok(()) => return Ok(()),
                    Err(e) => format!("METADATA not served yet: {e}"),
                }
            }
            Ok(s) => format!(
                "{} of {servers} tablet servers registered, {} tablets unassigned",
                s.servers.len(),
                s.unassigned
            ),
            Err(e) => format!("{e}"),
        };
        if state != last {
            eprintln!("waiting: {state}");
            last = state;
        }
        if Instant::now() + pause >= deadline {
            bail!("not ready before the start timeout: {last}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Stops the children tier by tier: masters first (so no master reassigns the tablets of
/// servers that are merely shutting down), then tablet servers, then the lock replicas.
async fn stop_all(sup: &mut Sup) {
    for k in sup.kids.iter_mut() {
        k.restart_at = None;
    }
    for tier in [Tier::Master, Tier::Tablet, Tier::Lock] {
        stop_tier(&mut sup.kids, &mut sup.exits, tier).await;
    }
}

async fn stop_tier(
    kids: &mut [Running],
    exits: &mut mpsc::UnboundedReceiver<(String, String)>,
    tier: Tier,
) {
    const GRACE: Duration = Duration::from_secs(10);
    let live = |kids: &[Running]| kids.iter().any(|k| k.role.tier == tier && !k.exited);
    for k in kids.iter().filter(|k| k.role.tier == tier && !k.exited) {
        // SAFETY: kill(2) with a pid we spawned and have not seen exit (not yet reaped).
        unsafe { libc::kill(k.pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + GRACE;
    while live(kids) {
        match tokio::time::timeout_at(deadline, exits.recv()).await {
            Ok(Some((name, status))) => {
                if let Some(k) = kids.iter_mut().find(|k| k.role.name == name) {
                    k.exited = true;
                }
                eprintln!("  {name} stopped ({status})");
            }
            Ok(None) => return,
            Err(_) => {
                for k in kids.iter().filter(|k| k.role.tier == tier && !k.exited) {
                    eprintln!(
                        "  {} did not stop within {GRACE:?}: killing it",
                        k.role.name
                    );
                    // SAFETY: as above.
                    unsafe { libc::kill(k.pid, libc::SIGKILL) };
                }
                let _ = tokio::time::timeout(GRACE, async {
                    while live(kids) {
                        match exits.recv().await {
                            Some((name, _)) => {
                                if let Some(k) = kids.iter_mut().find(|k| k.role.name == name) {
                                    k.exited = true;
                                }
                            }
                            None => return,
                        }
                    }
                })
                .await;
                return;
            }
        }
    }
}

fn print_banner(a: &DevArgs, ep: &Endpoints, data: &Path) {
    println!("Quarry is running (data in {}).", data.display());
    println!("  lock service   {}", ep.lock.join(", "));
    println!(
        "  masters        {} (one active, one standby)",
        ep.masters.join(", ")
    );
    println!("  tablet servers {}", ep.tablets.join(", "));
    let pages: Vec<String> = [&ep.lock, &ep.masters, &ep.tablets]
        .into_iter()
        .flatten()
        .filter_map(|addr| http_addr(a, addr))
        .map(|h| format!("http://{h}/"))
        .collect();
    if !pages.is_empty() {
        println!("  status pages   {} (metrics at /metrics)", pages.join(" "));
    }
    let flag = if ep.lock[0] == "127.0.0.1:7101" {
        String::new()
    } else {
        format!(" --lock {}", ep.lock.join(","))
    };
    println!("Try this in another terminal:");
    println!("  quarry createtable{flag} users families=info:maxversions=3 splits=m");
    println!("  quarry set{flag} users alice info:email=alice@example.com");
    println!("  quarry read{flag} users      # then: quarry tablets{flag} users; Ctrl-C here stops it all");
}
