//! `quarry chaos`: the lease-loss and fault-injection suite (issue 5, RELIABILITY.md).
//!
//! ```text
//! quarry chaos --scenario tablet-pause --duration 30s --seed 7 --out /tmp/run
//! quarry chaos check /tmp/run          # re-run every checker over a saved run
//! ```
//!
//! A run: start a real cluster as separate processes (`cluster`), create the `chaos`
//! table, start the workload clients (`workload`, recording `history.jsonl`), let the
//! nemesis inject the scenario's faults for `--duration` (`nemesis`, logging
//! `nemesis.jsonl`), heal everything, let the workloads run on for a few seconds,
//! read the final state back (`readback`), stop the cluster, and judge the run directory
//! with the `chaos` crate's checkers. It prints a summary table and writes
//! `DIR/report.md` (`report`). Exit status 1 when any checker found a violation (the
//! directory is kept and the replay command printed), 0 otherwise; a scenario that needs
//! partitions where no network namespace is available prints `SKIPPED` and exits 0.
//!
//! Network namespace: run as root where `unshare -n` works, the process re-executes
//! itself under `unshare -n`, brings `lo` up and moves the `local` routing rule below
//! the partition rules (`ip rule del pref 0 table local; ip rule add pref 100 table
//! local`), so `ip rule add pref 10 from A to B blackhole` drops A -> B. `--no-netns`
//! runs on plain loopback.
//!
//! Determinism: the seed fixes the nemesis's choices and pauses and the workloads' keys
//! and operations; the interleaving with the processes does not replay exactly.

mod cluster;
mod nemesis;
mod readback;
mod report;
mod workload;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use chaos::files;
use chaos::jsonl::{self, JsonlWriter};
use clap::{Args, Subcommand};
use client::Client;
use serde::{Deserialize, Serialize};

use cluster::{Cluster, Role};
use nemesis::{Nemesis, Scenario, Shared};
use workload::{Mix, Recorder};

/// Set in the re-executed process that runs inside the new network namespace.
const IN_NETNS_ENV: &str = "QUARRY_CHAOS_IN_NETNS";

/// `quarry chaos`: run a scenario, or `check` a saved run.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ChaosArgs {
    #[command(subcommand)]
    cmd: Option<ChaosCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum ChaosCommand {
    /// Runs every checker over a saved run directory and prints the summary.
    Check {
        /// The run directory (`--out` of the run).
        dir: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// The scenario.
    #[arg(long, value_enum, default_value = "soak")]
    scenario: Scenario,
    /// How long to inject faults (`30s`, `5m`, `1h`; a bare number is seconds).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Seed of the nemesis's and the workloads' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The run directory (must not exist or be empty); default under the temp dir.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run on plain loopback even where a network namespace is possible.
    #[arg(long)]
    no_netns: bool,
    /// Memtable size of the tablet servers (small: flushes happen during the run).
    #[arg(long, default_value_t = 1 << 20)]
    memtable_bytes: u64,
}

/// What `DIR/run.json` records about a run (for `check` and replays).
#[derive(Serialize, Deserialize)]
struct RunInfo {
    scenario: String,
    seed: u64,
    duration_s: u64,
    netns: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 5m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m or h)")),
    };
    Ok(Duration::from_secs(secs))
}

/// Runs `quarry chaos`.
pub fn run(a: ChaosArgs) -> anyhow::Result<()> {
    match a.cmd {
        Some(ChaosCommand::Check { dir }) => check(&dir),
        None => run_scenario(a.run),
    }
}

fn replay_command(r: &RunArgs, netns: bool) -> String {
    format!(
        "quarry chaos --scenario {} --duration {}s --seed {}{} --out <new dir>",
        r.scenario.name(),
        r.duration.as_secs(),
        r.seed,
        if netns { "" } else { " --no-netns" }
    )
}

/// Whether this process may create a network namespace (root, `unshare` works).
fn netns_possible() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Re-executes this command under `unshare -n`; returns its exit status.
fn reexec_in_netns() -> anyhow::Result<i32> {
    let exe = std::env::current_exe()?;
    let st = Command::new("unshare")
        .arg("-n")
        .arg("--")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(IN_NETNS_ENV, "1")
        .status()
        .context("running unshare -n")?;
    Ok(st.code().unwrap_or(1))
}

/// Inside the new namespace: loopback up, the `local` rule moved below the partition rules.
fn setup_netns() -> anyhow::Result<()> {
    for args in [
        &["link", "set", "lo", "up"][..],
        &["rule", "del", "pref", "0", "table", "local"],
        &["rule", "add", "pref", "100", "table", "local"],
    ] {
        let st = Command::new("ip").args(args).status()?;
        if !st.success() {
            bail!("ip {} failed: {st}", args.join(" "));
        }
    }
    Ok(())
}

fn run_scenario(r: RunArgs) -> anyhow::Result<()> {
    let in_netns = std::env::var_os(IN_NETNS_ENV).is_some();
    if !in_netns && !r.no_netns && netns_possible() {
        std::process::exit(reexec_in_netns()?);
    }
    if in_netns {
        setup_netns()?;
    }
    if r.scenario.needs_netns() && !in_netns {
        println!(
            "SKIPPED: scenario {} needs partitions, which need a network namespace (root and unshare -n)",
            r.scenario.name()
        );
        return Ok(());
    }
    let dir = r.out.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "quarry-chaos-{}-{}-{}",
            r.scenario.name(),
            r.seed,
            std::process::id()
        ))
    });
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        bail!("--out {} is not empty: give a new directory", dir.display());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let info = RunInfo {
        scenario: r.scenario.name(),
        seed: r.seed,
        duration_s: r.duration.as_secs(),
        netns: in_netns,
    };
    std::fs::write(dir.join("run.json"), serde_json::to_vec_pretty(&info)?)?;
    eprintln!("chaos: run directory {}", dir.display());
    // A current-thread runtime: children are forked from this thread, which
    // PR_SET_PDEATHSIG ties them to.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ran = rt.block_on(drive(&r, &dir, in_netns));
    drop(rt);
    if let Err(e) = &ran {
        eprintln!("chaos: the run did not complete: {e:#}");
    }
    let failed = report(&dir, &replay_command(&r, in_netns))?;
    if failed || ran.is_err() {
        bail!(
            "chaos run failed; data, logs and history kept in {}; replay: {}",
            dir.display(),
            replay_command(&r, in_netns)
        );
    }
    println!("PASS: data kept in {}", dir.display());
    Ok(())
}

/// Starts the cluster, runs workloads and nemesis, heals, reads back, stops.
async fn drive(r: &RunArgs, dir: &Path, netns: bool) -> anyhow::Result<()> {
    let cluster = Cluster::plan(dir, netns, r.memtable_bytes, r.scenario.unsynced_fs())?;
    let lock_addrs = cluster.lock_addrs();
    let sh = Shared::new(cluster, JsonlWriter::create(&dir.join(files::NEMESIS))?);
    let names: Vec<String> = sh
        .cluster
        .lock()
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .collect();
    for n in &names {
        sh.start(n, "cluster start")?;
    }
    let supervisor = tokio::spawn(nemesis::supervise(sh.clone()));
    let result = drive_started(r, dir, netns, &sh, lock_addrs).await;
    supervisor.abort();
    let _ = supervisor.await;
    sh.flush()?;
    sh.cluster.lock().stop_all();
    result
}

async fn drive_started(
    r: &RunArgs,
    dir: &Path,
    netns: bool,
    sh: &Arc<Shared>,
    lock_addrs: Vec<String>,
) -> anyhow::Result<()> {
    let c = Client::new(workload::client_config(lock_addrs.clone()))?;
    let tablets = sh.cluster.lock().of(Role::Tablet).count();
    wait_ready(&c, tablets, Duration::from_secs(60)).await?;
    workload::setup(&c).await?;
    wait_ready(&c, tablets, Duration::from_secs(60)).await?;
    eprintln!(
        "chaos: cluster ready; {} s of {}",
        r.duration.as_secs(),
        r.scenario.name()
    );
    let rec = Arc::new(Recorder::create(&dir.join(files::HISTORY))?);
    let stop = Arc::new(AtomicBool::new(false));
    let mix = Mix {
        registers: 4,
        counters: 2,
        links: 2,
        locks: 2,
    };
    let clients = workload::spawn_all(mix, &lock_addrs, &rec, &stop, r.seed)?;
    let mut nem = Nemesis::new(sh.clone(), c.clone(), r.scenario, r.seed, netns);
    let faults = nem.run(r.duration).await;
    eprintln!("chaos: {faults} faults injected; healing");
    heal_all(sh)?;
    // Let the workloads show the recovery, then stop them.
    let recovered = wait_ready(&c, tablets, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for h in clients {
        let _ = h.await;
    }
    recovered?;
    let rb = readback::read_back(&c, &rec, dir, Duration::from_secs(30)).await;
    rec.flush()?;
    rb
}

/// Removes every partition, continues every stopped process, returns every clock rate and
/// fsync delay to normal and starts every process that is down.
fn heal_all(sh: &Shared) -> anyhow::Result<()> {
    let stopped: Vec<String> = {
        let mut c = sh.cluster.lock();
        if !c.rules.is_empty() {
            c.heal()?;
            drop(c);
            sh.record(chaos::nemesis::Action::Heal, "all", "end of the run");
            c = sh.cluster.lock();
        }
        c.nodes
            .iter()
            .filter(|n| n.stopped)
            .map(|n| n.name.clone())
            .collect()
    };
    for n in stopped {
        sh.cluster.lock().signal(&n, libc::SIGCONT)?;
        sh.record(chaos::nemesis::Action::Cont, &n, "end of the run");
    }
    sh.reset_controls()?;
    sh.held.lock().clear();
    Ok(())
}

/// Waits until a master answers, `servers` tablet servers are registered, nothing is
/// unassigned and METADATA is served.
async fn wait_ready(c: &Client, servers: usize, bound: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let last = match c.status().await {
            Ok(s) if s.servers.len() >= servers && s.unassigned == 0 => {
                match c.probe_metadata().await {
                    Ok(()) => return Ok(()),
                    Err(e) => format!("METADATA not served: {e}"),
                }
            }
            Ok(s) => format!(
                "{} of {servers} tablet servers, {} tablets unassigned",
                s.servers.len(),
                s.unassigned
            ),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            bail!("the cluster was not ready within {bound:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks `dir`, prints the summary, writes the report; true when a checker failed.
fn report(dir: &Path, replay: &str) -> anyhow::Result<bool> {
    let info: RunInfo = serde_json::from_slice(
        &std::fs::read(dir.join("run.json"))
            .with_context(|| format!("{} is not a chaos run directory", dir.display()))?,
    )?;
    let verdicts = chaos::check_dir(dir)?;
    let ops = chaos::history::read_operations(&dir.join(files::HISTORY))?;
    let nem: Vec<chaos::nemesis::Record> = jsonl::read_all(&dir.join(files::NEMESIS))?;
    let s = report::Summary {
        scenario: &info.scenario,
        seed: info.seed,
        duration_s: info.duration_s,
        netns: info.netns,
        replay,
        verdicts: &verdicts,
        ops: &ops,
        nemesis: &nem,
    };
    s.write(dir)?;
    print!("{}", s.table());
    let failed = verdicts.iter().any(|v| !v.violations.is_empty());
    for v in &verdicts {
        for x in v.violations.iter().take(10) {
            println!("VIOLATION {}: {x}", v.name);
        }
    }
    println!("report: {}", dir.join(files::REPORT).display());
    Ok(failed)
}

fn check(dir: &Path) -> anyhow::Result<()> {
    let info: RunInfo = serde_json::from_slice(
        &std::fs::read(dir.join("run.json"))
            .with_context(|| format!("{} is not a chaos run directory", dir.display()))?,
    )?;
    let replay = format!(
        "quarry chaos --scenario {} --duration {}s --seed {}{} --out <new dir>",
        info.scenario,
        info.duration_s,
        info.seed,
        if info.netns { "" } else { " --no-netns" }
    );
    if report(dir, &replay)? {
        bail!("violations found in {}; replay: {replay}", dir.display());
    }
    println!("PASS");
    Ok(())
}
