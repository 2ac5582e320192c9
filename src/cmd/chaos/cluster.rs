//! The cluster a chaos run attacks: 3 lock replicas, 2 masters and 3 tablet servers, each
//! a separate `quarry` process (the running executable), and the network it runs on.
//!
//! In a network namespace (root and `unshare -n` work; see `super::netns`) every process
//! has its own loopback address and sends from it (`QUARRY_SOURCE_IP`), so
//! `ip rule add pref 10 from A to B blackhole` cuts exactly A -> B:
//!
//! | process | address in a namespace |
//! |---|---|
//! | lock-1..3 | 127.0.0.11..13:7101 |
//! | master-1..2 | 127.0.0.21..22:7201 |
//! | tablet-1..3 | 127.0.0.31..33:7301 |
//! | the chaos process (clients) | 127.0.0.1 |
//!
//! Elsewhere everything runs on 127.0.0.1 with free ports and partitions are refused.
//!
//! Fault variables (see `sstable::fault::process`): every process polls its own control
//! file `DIR/control/<name>` (`QUARRY_FAULT_CONTROL`; [`Cluster::set_control`] rewrites
//! it: `clock-rate`, `fsync-delay-ms`). With `unsynced` (the `power-cut` and `soak`
//! scenarios) lock replicas and tablet servers run on the unsynced fault `Fs`
//! (`QUARRY_FAULT_FS=unsynced`, shadow directory `DIR/shadow/<name>`), so every `kill -9`
//! of one of them drops what it had not fsynced, as a power cut would. Masters keep no
//! files of their own and run on the real `Fs`.
//!
//! Each process logs to `DIR/logs/<name>.log` (appended across restarts) and is tied to
//! this process by `PR_SET_PDEATHSIG`, so nothing outlives the run. Processes are forked
//! from the thread that calls [`Cluster::start`]; the chaos process runs a
//! current-thread runtime so that thread lives as long as the run.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use sstable::fault::control::{Settings, CONTROL_ENV};
use sstable::fault::process::{FAULT_FS_ENV, SHADOW_ENV};

/// Lock-service session lease of every run (short, so faults resolve within seconds).
pub const LEASE: Duration = Duration::from_millis(1500);
/// Lock-delay after a session expiry.
pub const LOCK_DELAY: Duration = Duration::from_millis(600);

/// The role of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A lock-service replica.
    Lock,
    /// A master (active or standby).
    Master,
    /// A tablet server.
    Tablet,
}

/// One process of the cluster.
pub struct Node {
    /// `lock-1`, `master-2`, `tablet-3`, ...
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its address (host:port).
    pub addr: String,
    /// Its source IP inside a namespace.
    pub ip: Option<String>,
    args: Vec<String>,
    /// Extra environment (the fault variables).
    env: Vec<(String, String)>,
    /// Its control file and what it says now.
    control: (PathBuf, Settings),
    /// The running process, if any.
    pub child: Option<Child>,
    /// Stopped by SIGSTOP and not yet continued.
    pub stopped: bool,
}

/// Every process and where its files go.
pub struct Cluster {
    /// The processes, lock replicas first.
    pub nodes: Vec<Node>,
    /// The run directory.
    pub dir: PathBuf,
    /// Whether partitions are possible (own addresses in a network namespace).
    pub netns: bool,
    /// Partition rules in place (`from A to B`).
    pub rules: Vec<(String, String)>,
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Cluster {
    /// The plan of a cluster under `dir` (nothing started yet); with `unsynced` the lock
    /// replicas and tablet servers run on the unsynced fault `Fs`.
    pub fn plan(
        dir: &Path,
        netns: bool,
        memtable_bytes: u64,
        unsynced: bool,
    ) -> anyhow::Result<Cluster> {
        let addr = |ip: &str, port: u16| -> anyhow::Result<(String, Option<String>)> {
            Ok(if netns {
                (format!("{ip}:{port}"), Some(ip.to_string()))
            } else {
                (format!("127.0.0.1:{}", free_port()?), None)
            })
        };
        let locks: Vec<_> = (1..=3)
            .map(|k| addr(&format!("127.0.0.1{k}"), 7101))
            .collect::<anyhow::Result<_>>()?;
        let masters: Vec<_> = (1..=2)
            .map(|k| addr(&format!("127.0.0.2{k}"), 7201))
            .collect::<anyhow::Result<_>>()?;
        let tablets: Vec<_> = (1..=3)
            .map(|k| addr(&format!("127.0.0.3{k}"), 7301))
            .collect::<anyhow::Result<_>>()?;
        let root = dir.join(chaos::files::ROOT).display().to_string();
        let lock_list: Vec<&str> = locks.iter().map(|(a, _)| a.as_str()).collect();
        let lock_list = lock_list.join(",");
        let peers: Vec<String> = locks
            .iter()
            .enumerate()
            .map(|(i, (a, _))| format!("{}={a}", i + 1))
            .collect();
        let ms = |d: Duration| d.as_millis().to_string();
        let mut nodes = Vec::new();
        for (i, (a, ip)) in locks.iter().enumerate() {
            let id = (i + 1).to_string();
            let data = dir.join(format!("lock-{id}")).display().to_string();
            let mut args = strings(&["lock-server", "--id", &id, "--listen", a]);
            args.extend(strings(&["--peers", &peers.join(","), "--bootstrap"]));
            args.extend(strings(&["--data", &data, "--lease-ms", &ms(LEASE)]));
            args.extend(strings(&["--lock-delay-ms", &ms(LOCK_DELAY)]));
            args.extend(strings(&[
                "--heartbeat-ms",
                "50",
                "--election-base-ms",
                "150",
            ]));
            args.extend(strings(&["--election-width-ms", "50"]));
            nodes.push(Node::new(format!("lock-{id}"), Role::Lock, a, ip, args));
        }
        for (i, (a, ip)) in tablets.iter().enumerate() {
            let name = format!("tablet-{}", i + 1);
            let mut args = strings(&["tablet-server", "--listen", a, "--data", &root]);
            args.extend(strings(&["--lock", &lock_list, "--name", &name]));
            args.extend(strings(&["--check-interval-ms", "100"]));
            args.extend(strings(&["--memtable-bytes", &memtable_bytes.to_string()]));
            nodes.push(Node::new(name, Role::Tablet, a, ip, args));
        }
        for (i, (a, ip)) in masters.iter().enumerate() {
            let mut args = strings(&["master", "--listen", a, "--data", &root]);
            args.extend(strings(&["--lock", &lock_list, "--tick-ms", "100"]));
            args.extend(strings(&["--scan-ms", "500"]));
            let name = format!("master-{}", i + 1);
            nodes.push(Node::new(name, Role::Master, a, ip, args));
        }
        std::fs::create_dir_all(dir.join("logs"))?;
        std::fs::create_dir_all(dir.join("control"))?;
        std::fs::create_dir_all(dir.join(chaos::files::ROOT))?;
        for n in nodes.iter_mut() {
            n.set_fault_env(dir, unsynced);
        }
        Ok(Cluster {
            nodes,
            dir: dir.to_path_buf(),
            netns,
            rules: Vec::new(),
        })
    }

    /// Lock-service addresses.
    pub fn lock_addrs(&self) -> Vec<String> {
        self.of(Role::Lock).map(|n| n.addr.clone()).collect()
    }

    /// The nodes of one role.
    pub fn of(&self, role: Role) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(move |n| n.role == role)
    }

    /// The node named `name`.
    pub fn node(&mut self, name: &str) -> anyhow::Result<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .with_context(|| format!("no process named {name}"))
    }

    /// The node whose address is `addr`.
    pub fn name_of_addr(&self, addr: &str) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| n.addr == addr)
            .map(|n| n.name.clone())
    }

    /// Starts `name` (if it is not running).
    pub fn start(&mut self, name: &str) -> anyhow::Result<()> {
        let logs = self.dir.join("logs");
        let n = self.node(name)?;
        if n.child.is_some() {
            return Ok(());
        }
        n.child = Some(n.spawn(&logs)?);
        n.stopped = false;
        Ok(())
    }

    /// Sends `sig` to `name`; false when it is not running.
    pub fn signal(&mut self, name: &str, sig: libc::c_int) -> anyhow::Result<bool> {
        let n = self.node(name)?;
        let Some(c) = n.child.as_mut() else {
            return Ok(false);
        };
        if c.try_wait()?.is_some() {
            return Ok(false);
        }
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        unsafe { libc::kill(c.id() as i32, sig) };
        match sig {
            libc::SIGSTOP => n.stopped = true,
            libc::SIGCONT => n.stopped = false,
            _ => {}
        }
        Ok(true)
    }

    /// Changes `name`'s control settings with `change` and rewrites its control file
    /// (atomically: the process polls it); returns the changed file's text.
    pub fn set_control(
        &mut self,
        name: &str,
        change: impl FnOnce(&mut Settings),
    ) -> anyhow::Result<String> {
        let n = self.node(name)?;
        change(&mut n.control.1);
        let text = control_text(&n.control.1);
        let tmp = n.control.0.with_extension("tmp");
        std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &n.control.0)?;
        Ok(text)
    }

    /// SIGKILLs `name` and reaps it.
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let n = self.node(name)?;
        if let Some(mut c) = n.child.take() {
            let _ = c.kill();
            c.wait()?;
        }
        n.stopped = false;
        Ok(())
    }

    /// Reaps processes that exited on their own; returns their names and statuses.
    pub fn reap(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for n in self.nodes.iter_mut() {
            if let Some(c) = n.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    out.push((n.name.clone(), st.to_string()));
                    n.child = None;
                    n.stopped = false;
                }
            }
        }
        out
    }

    /// Adds `ip rule ... from <a> to <b> blackhole` (a one-way cut).
    pub fn cut(&mut self, a: &str, b: &str) -> anyhow::Result<()> {
        if !self.netns {
            bail!("partitions need a network namespace (run as root where unshare -n works)");
        }
        let ip = |n: &str| -> anyhow::Result<String> {
            self.nodes
                .iter()
                .find(|x| x.name == n)
                .and_then(|x| x.ip.clone())
                .with_context(|| format!("{n} has no address of its own"))
        };
        let (ia, ib) = (ip(a)?, ip(b)?);
        ip_rule("add", &ia, &ib)?;
        self.rules.push((ia, ib));
        Ok(())
    }

    /// Removes every partition rule.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        for (a, b) in std::mem::take(&mut self.rules) {
            ip_rule("del", &a, &b)?;
        }
        Ok(())
    }

    /// SIGCONTs stopped processes and SIGKILLs every process (end of the run).
    pub fn stop_all(&mut self) {
        let _ = self.heal();
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        for name in names {
            let _ = self.signal(&name, libc::SIGCONT);
            let _ = self.kill(&name);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The control file's text for `s` (the format of `sstable::fault::control`).
pub fn control_text(s: &Settings) -> String {
    format!(
        "clock-rate {}\nfsync-delay-ms {}\n",
        s.clock_rate, s.fsync_delay_ms
    )
}

fn ip_rule(op: &str, from: &str, to: &str) -> anyhow::Result<()> {
    let st = Command::new("ip")
        .args([
            "rule",
            op,
            "pref",
            "10",
            "from",
            from,
            "to",
            to,
            "blackhole",
        ])
        .status()
        .context("running ip rule")?;
    if !st.success() {
        bail!("ip rule {op} from {from} to {to} blackhole failed: {st}");
    }
    Ok(())
}

impl Node {
    fn new(name: String, role: Role, addr: &str, ip: &Option<String>, args: Vec<String>) -> Node {
        Node {
            name,
            role,
            addr: addr.to_string(),
            ip: ip.clone(),
            args,
            env: Vec::new(),
            control: (PathBuf::new(), Settings::default()),
            child: None,
            stopped: false,
        }
    }

    /// What its control file says now.
    pub fn settings(&self) -> Settings {
        self.control.1
    }

    /// Sets the fault variables of a process of the run in `dir`.
    fn set_fault_env(&mut self, dir: &Path, unsynced: bool) {
        let control = dir.join("control").join(&self.name);
        self.env
            .push((CONTROL_ENV.into(), control.display().to_string()));
        self.control.0 = control;
        if unsynced && self.role != Role::Master {
            let shadow = dir.join("shadow").join(&self.name);
            self.env.push((FAULT_FS_ENV.into(), "unsynced".into()));
            self.env
                .push((SHADOW_ENV.into(), shadow.display().to_string()));
        }
    }

    fn spawn(&self, logs: &Path) -> anyhow::Result<Child> {
        let exe = std::env::current_exe().context("cannot find the quarry binary")?;
        let path = logs.join(format!("{}.log", self.name));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut cmd = Command::new(exe);
        cmd.args(&self.args)
            .env_remove(FAULT_FS_ENV)
            .env_remove(SHADOW_ENV)
            .env_remove(CONTROL_ENV)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .env_remove(lockservice::bind::SOURCE_IP_ENV)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        if let Some(ip) = &self.ip {
            cmd.env(lockservice::bind::SOURCE_IP_ENV, ip);
        }
        // SAFETY: prctl is async-signal-safe; the closure only calls it.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd.spawn()
            .with_context(|| format!("starting {}", self.name))
    }
}
