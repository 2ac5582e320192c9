//! The nemesis: the faults of each scenario, scheduled from the run's seed and logged to
//! `DIR/nemesis.jsonl` (see `chaos::nemesis`).
//!
//! The nemesis loops until the run's duration is over: wait a seeded pause (1-3 s), do
//! one fault of the scenario, hold it, undo it. A supervisor task restarts any process
//! that exits on its own (a tablet server or master that lost its session exits by
//! design, DESIGN.md 5.5-5.6) unless the nemesis is holding it down. When the duration
//! is over every fault is healed and every process runs again.
//!
//! | scenario | fault |
//! |---|---|
//! | tablet-pause | SIGSTOP the tablet server with most tablets for 3x the lease, SIGCONT |
//! | tablet-kill | kill -9 a tablet server, restart it 1 s later |
//! | master-failover | kill -9 or SIGSTOP (3x lease) the active master |
//! | lock-leader-kill | kill -9 the lock-service leader, restart it 1 s later |
//! | lock-partition | cut the lock leader from the other replicas (both ways or one way) for 2x lease |
//! | tablet-cut-from-lock | cut a tablet server from every lock replica (both ways) for 3x lease |
//! | power-cut | kill -9 every process at once (lock replicas and tablet servers run on the unsynced fault `Fs`, so they lose what they had not fsynced), restart them 500 ms later |
//! | split-crash | ask for a split, kill -9 the tablet's server 0-300 ms later |
//! | clock-skew | set every process's clock rate within ±[`MAX_SKEW`](control_faults::MAX_SKEW) (half the rounds the worst case: lock replicas fast, clients slow), cut (or, without partitions, pause) the busiest tablet server for 3x the lease under the skew, reset the rates |
//! | slow-disk | delay every fsync of some lock replicas and tablet servers by 100-400 ms for 2x the lease |
//! | soak | each round one of the above, picked by the seed |
//!
//! `power-cut` and `soak` start lock replicas and tablet servers on the unsynced `Fs`
//! (`super::cluster`), so in `soak` every kill -9 of one of them is a power cut of that
//! process. Clock rates and fsync delays reach the processes through their control files;
//! each change is logged (`clock_rate` / `fsync_delay`, the control line as detail) and
//! every one is reset when the run heals.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chaos::jsonl::JsonlWriter;
use chaos::nemesis::{Action, Record};
use client::Client;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tablet::server::ownership::mono_ns;

use super::cluster::{Cluster, Role, LEASE};
use super::workload::TABLE;

mod control_faults;

/// A named scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// SIGSTOP a tablet server past its lease, then SIGCONT.
    TabletPause,
    /// kill -9 a tablet server and restart it.
    TabletKill,
    /// kill -9 or SIGSTOP the active master.
    MasterFailover,
    /// kill -9 the lock-service leader.
    LockLeaderKill,
    /// Cut the lock-service leader from the other replicas.
    LockPartition,
    /// Cut a tablet server from the lock service (not from clients).
    TabletCutFromLock,
    /// kill -9 every process at once; the lock replicas and tablet servers lose what they
    /// had not fsynced.
    PowerCut,
    /// Split a tablet and kill -9 its server during the split.
    SplitCrash,
    /// Skew the processes' clock rates within the lease margin while a tablet server loses
    /// its lease.
    ClockSkew,
    /// Delay the fsyncs of lock replicas and tablet servers.
    SlowDisk,
    /// A random mix of all of the above.
    Soak,
}

impl Scenario {
    /// Whether it needs partitions (a network namespace).
    pub fn needs_netns(self) -> bool {
        matches!(self, Scenario::LockPartition | Scenario::TabletCutFromLock)
    }

    /// Whether its lock replicas and tablet servers run on the unsynced fault `Fs`.
    pub fn unsynced_fs(self) -> bool {
        matches!(self, Scenario::PowerCut | Scenario::Soak)
    }

    /// Its name on the command line.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// What the nemesis and the supervisor share.
pub struct Shared {
    /// The processes.
    pub cluster: Mutex<Cluster>,
    /// Processes the nemesis keeps down (the supervisor leaves them alone).
    pub held: Mutex<HashSet<String>>,
    log: JsonlWriter,
}

impl Shared {
    /// Shares `cluster`, logging to `log`.
    pub fn new(cluster: Cluster, log: JsonlWriter) -> Arc<Shared> {
        Arc::new(Shared {
            cluster: Mutex::new(cluster),
            held: Mutex::new(HashSet::new()),
            log,
        })
    }

    /// Logs one action.
    pub fn record(&self, action: Action, target: &str, detail: impl Into<String>) {
        let r = Record {
            t: mono_ns(),
            action,
            target: target.to_string(),
            detail: detail.into(),
        };
        if let Err(e) = self.log.append(&r) {
            panic!("cannot write the nemesis log: {e}");
        }
    }

    /// Flushes the log.
    pub fn flush(&self) -> anyhow::Result<()> {
        Ok(self.log.flush()?)
    }

    /// Starts `name` and logs it.
    pub fn start(&self, name: &str, why: &str) -> anyhow::Result<()> {
        self.held.lock().remove(name);
        self.cluster.lock().start(name)?;
        self.record(Action::Start, name, why);
        Ok(())
    }

    fn kill(&self, name: &str, hold: bool) -> anyhow::Result<()> {
        if hold {
            self.held.lock().insert(name.to_string());
        }
        self.cluster.lock().kill(name)?;
        self.record(Action::Kill, name, "SIGKILL");
        Ok(())
    }

    fn signal(&self, name: &str, sig: libc::c_int, action: Action) -> anyhow::Result<()> {
        if self.cluster.lock().signal(name, sig)? {
            self.record(action, name, format!("signal {sig}"));
        }
        Ok(())
    }
}

/// Restarts processes that exit on their own, every 100 ms, until the task is aborted.
pub async fn supervise(sh: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let exited = sh.cluster.lock().reap();
        for (name, status) in exited {
            sh.record(Action::Exited, &name, status);
        }
        let down: Vec<String> = {
            let c = sh.cluster.lock();
            let held = sh.held.lock();
            c.nodes
                .iter()
                .filter(|n| n.child.is_none() && !held.contains(&n.name))
                .map(|n| n.name.clone())
                .collect()
        };
        for name in down {
            if let Err(e) = sh.start(&name, "supervisor restart") {
                eprintln!("chaos: cannot restart {name}: {e:#}");
            }
        }
    }
}

/// The nemesis of one run.
pub struct Nemesis {
    sh: Arc<Shared>,
    c: Client,
    rng: StdRng,
    scenario: Scenario,
    netns: bool,
}

impl Nemesis {
    /// A nemesis for `scenario`, its choices drawn from `seed`.
    pub fn new(sh: Arc<Shared>, c: Client, scenario: Scenario, seed: u64, netns: bool) -> Self {
        Nemesis {
            sh,
            c,
            rng: StdRng::seed_from_u64(seed),
            scenario,
            netns,
        }
    }

    /// Injects faults until `duration` passed; returns the number of faults.
    pub async fn run(&mut self, duration: Duration) -> u64 {
        let end = tokio::time::Instant::now() + duration;
        let mut faults = 0;
        loop {
            let pause = Duration::from_millis(self.rng.random_range(1000..3000));
            tokio::time::sleep(pause).await;
            if tokio::time::Instant::now() >= end {
                return faults;
            }
            let s = match self.scenario {
                Scenario::Soak => self.pick(),
                s => s,
            };
            match self.fault(s).await {
                Ok(true) => faults += 1,
                Ok(false) => {}
                Err(e) => self.sh.record(Action::Admin, "nemesis", format!("{e:#}")),
            }
        }
    }

    fn pick(&mut self) -> Scenario {
        let all = [
            Scenario::TabletPause,
            Scenario::TabletKill,
            Scenario::MasterFailover,
            Scenario::LockLeaderKill,
            Scenario::LockPartition,
            Scenario::TabletCutFromLock,
            Scenario::PowerCut,
            Scenario::SplitCrash,
            Scenario::ClockSkew,
            Scenario::SlowDisk,
        ];
        let usable: Vec<Scenario> = all
            .into_iter()
            .filter(|s| self.netns || !s.needs_netns())
            .collect();
        usable[self.rng.random_range(0..usable.len())]
    }

    /// One fault of `s`, held and undone. False when nothing was done.
    async fn fault(&mut self, s: Scenario) -> anyhow::Result<bool> {
        match s {
            Scenario::TabletPause => {
                let t = self.busiest_tablet_server().await?;
                self.pause(&t, LEASE * 3).await?;
            }
            Scenario::TabletKill => {
                let t = self.random(Role::Tablet);
                self.kill_restart(&t, Duration::from_secs(1)).await?;
            }
            Scenario::MasterFailover => {
                let addr = self.c.master_addr().await.context("finding the master")?;
                let m = self.name_of(&addr)?;
                if self.rng.random_bool(0.5) {
                    self.kill_restart(&m, Duration::from_millis(500)).await?;
                } else {
                    self.pause(&m, LEASE * 3).await?;
                }
            }
            Scenario::LockLeaderKill => {
                let l = self.lock_leader().await?;
                self.kill_restart(&l, Duration::from_secs(1)).await?;
            }
            Scenario::LockPartition => {
                let l = self.lock_leader().await?;
                let both = self.rng.random_bool(0.5);
                let others: Vec<String> = self.names(Role::Lock);
                let others: Vec<String> = others.into_iter().filter(|o| *o != l).collect();
                self.partition(&l, &others, both, LEASE * 2).await?;
            }
            Scenario::TabletCutFromLock => {
                let t = self.busiest_tablet_server().await?;
                let locks = self.names(Role::Lock);
                self.partition(&t, &locks, true, LEASE * 3).await?;
            }
            Scenario::PowerCut => self.power_cut().await?,
            Scenario::SplitCrash => return self.split_crash().await,
            Scenario::ClockSkew => self.clock_skew().await?,
            Scenario::SlowDisk => self.slow_disk().await?,
            Scenario::Soak => unreachable!("soak picks a concrete scenario"),
        }
        Ok(true)
    }

    fn names(&self, role: Role) -> Vec<String> {
        let c = self.sh.cluster.lock();
        c.of(role).map(|n| n.name.clone()).collect()
    }

    fn random(&mut self, role: Role) -> String {
        let v = self.names(role);
        v[self.rng.random_range(0..v.len())].clone()
    }

    fn name_of(&self, addr: &str) -> anyhow::Result<String> {
        self.sh
            .cluster
            .lock()
            .name_of_addr(addr)
            .with_context(|| format!("no process at {addr}"))
    }

    async fn lock_leader(&self) -> anyhow::Result<String> {
        let st = self.c.lock_service().status().await?;
        self.name_of(&st.leader_address)
    }

    async fn busiest_tablet_server(&mut self) -> anyhow::Result<String> {
        let tablets = self.c.list_tablets(Some(TABLE)).await?;
        let mut count: std::collections::BTreeMap<String, usize> = Default::default();
        for t in tablets.iter().filter(|t| !t.server_addr.is_empty()) {
            *count.entry(t.server_addr.clone()).or_default() += 1;
        }
        match count.into_iter().max_by_key(|(_, n)| *n) {
            Some((addr, _)) => self.name_of(&addr),
            None => Ok(self.random(Role::Tablet)),
        }
    }

    async fn pause(&self, name: &str, hold: Duration) -> anyhow::Result<()> {
        self.sh.signal(name, libc::SIGSTOP, Action::Stop)?;
        tokio::time::sleep(hold).await;
        self.sh.signal(name, libc::SIGCONT, Action::Cont)
    }

    async fn kill_restart(&self, name: &str, down: Duration) -> anyhow::Result<()> {
        self.sh.kill(name, true)?;
        tokio::time::sleep(down).await;
        self.sh.start(name, "nemesis restart")
    }

    async fn partition(
        &self,
        a: &str,
        others: &[String],
        both: bool,
        hold: Duration,
    ) -> anyhow::Result<()> {
        {
            let mut c = self.sh.cluster.lock();
            for o in others {
                c.cut(a, o)?;
                if both {
                    c.cut(o, a)?;
                }
            }
        }
        let how = if both {
            "both ways"
        } else {
            "one way, outbound"
        };
        self.sh.record(
            Action::Partition,
            a,
            format!("cut from {} {how}", others.join(",")),
        );
        tokio::time::sleep(hold).await;
        self.sh.cluster.lock().heal()?;
        self.sh.record(Action::Heal, a, "all rules removed");
        Ok(())
    }

    async fn power_cut(&self) -> anyhow::Result<()> {
        let all: Vec<String> = {
            let c = self.sh.cluster.lock();
            c.nodes.iter().map(|n| n.name.clone()).collect()
        };
        self.sh.held.lock().extend(all.iter().cloned());
        {
            let mut c = self.sh.cluster.lock();
            for n in &all {
                c.kill(n)?;
            }
        }
        self.sh.record(
            Action::Crash,
            &all.join(","),
            "power cut: kill -9 of every process; lock replicas and tablet servers on the \
             unsynced Fs lose every byte and directory entry they had not fsynced",
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        for n in &all {
            self.sh.start(n, "after the power cut")?;
        }
        Ok(())
    }

    async fn split_crash(&mut self) -> anyhow::Result<bool> {
        let tablets = self.c.list_tablets(Some(TABLE)).await?;
        if tablets.len() >= 24 {
            return Ok(false);
        }
        // A split row inside the key space the workloads use.
        let row = match self.rng.random_range(0..3) {
            0 => format!(
                "link/{}-{:06}",
                self.rng.random_range(1..12),
                self.rng.random_range(0..500)
            ),
            1 => format!("reg/{}x", self.rng.random_range(0..5)),
            _ => format!("ctr/{}x", self.rng.random_range(0..3)),
        };
        let owner = tablets.iter().find(|t| {
            t.start.as_slice() <= row.as_bytes()
                && (t.end.is_empty() || row.as_bytes() < t.end.as_slice())
        });
        let Some(victim) = owner.and_then(|t| self.name_of(&t.server_addr).ok()) else {
            return Ok(false);
        };
        let delay = Duration::from_millis(self.rng.random_range(0..300));
        self.sh
            .record(Action::Admin, &victim, format!("split at {row:?}"));
        let c = self.c.clone();
        let r = row.clone();
        let split = tokio::spawn(async move { c.split_tablet(TABLE, r.as_bytes()).await });
        tokio::time::sleep(delay).await;
        self.kill_restart(&victim, Duration::from_millis(500))
            .await?;
        let outcome = match split.await {
            Ok(Ok(_)) => "split done".to_string(),
            Ok(Err(e)) => format!("split failed: {e}"),
            Err(e) => format!("split task: {e}"),
        };
        self.sh.record(Action::Admin, &victim, outcome);
        Ok(true)
    }
}
