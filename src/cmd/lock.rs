//! `quarry lock-server` (one lock-service replica) and `quarry lock ...` (operator tools).
//!
//! Forming a new group is one command per replica, the same `--peers` everywhere and
//! `--bootstrap` on each (a replica that was ever initialized ignores it):
//!
//! ```text
//! quarry lock-server --id 1 --listen 127.0.0.1:7101 --data d1 --bootstrap \
//!     --peers 1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103
//! ```

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use lockservice::client::{Client, ClientConfig};
use lockservice::clock::clock_from_env;
use lockservice::lease::LeaseConfig;
use lockservice::raft::{Compaction, RaftTiming};
use lockservice::server::{Replica, ReplicaConfig};
use lockservice::state::{LockMode, Sequencer};

use super::bench_lock::{LockBenchArgs, Measure};

/// Default lock-service addresses (those `quarry dev` uses).
pub const DEFAULT_LOCK_ADDRS: &str = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103";

/// `quarry lock-server`: one replica of the lock service.
#[derive(Args, Debug)]
pub struct LockServerArgs {
    /// This replica's id (a key of --peers).
    #[arg(long)]
    id: u64,
    /// Address to listen on (defaults to this replica's address in --peers).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Every replica of the group: id=host:port,...
    #[arg(long)]
    peers: String,
    /// Directory for this replica's Raft log and snapshot.
    #[arg(long)]
    data: PathBuf,
    /// Form the group from --peers if this replica was never initialized.
    #[arg(long)]
    bootstrap: bool,
    /// Session lease, milliseconds.
    #[arg(long, default_value_t = 3000)]
    lease_ms: u64,
    /// Lock-delay after a session expiry, milliseconds.
    #[arg(long, default_value_t = 1000)]
    lock_delay_ms: u64,
    /// Raft heartbeat interval, milliseconds.
    #[arg(long, default_value_t = 40)]
    heartbeat_ms: u64,
    /// Start of the election-timeout windows, milliseconds (replica k waits in
    /// [base + k*width, base + (k+1)*width); openraft adds its leader lease, the window's
    /// end, after a leader was seen).
    #[arg(long, default_value_t = 80)]
    election_base_ms: u64,
    /// Width of each replica's election-timeout window, milliseconds.
    #[arg(long, default_value_t = 40)]
    election_width_ms: u64,
    /// Take a snapshot every this many log entries.
    #[arg(long, default_value_t = 5000)]
    snapshot_every: u64,
    /// Log entries kept behind a snapshot.
    #[arg(long, default_value_t = 1000)]
    logs_to_keep: u64,
    /// Serve Prometheus metrics (/metrics) and a status page (/) on this address.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Threads of the replica's runtime. With 1, the default, Raft and gRPC share one
    /// thread (disk writes and fsyncs run on a blocking-pool thread beside it), so a Raft
    /// write takes no wake-up on another core. On a 2-core machine that gave 15-20% more
    /// cycles/s with 8 clients than two threads, and the same 1-client latency
    /// (benches/RESULTS.md).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
    /// A TOML file with the same keys as these flags (flags win over the file).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// `quarry lock ...`: look at and change the lock service.
#[derive(Args, Debug)]
pub struct LockArgs {
    /// Lock-service replica addresses, comma separated.
    #[arg(long = "lock", env = "QUARRY_LOCK", default_value = DEFAULT_LOCK_ADDRS)]
    addrs: String,
    #[command(subcommand)]
    command: LockCommand,
}

/// The operator commands.
#[derive(Subcommand, Debug)]
pub enum LockCommand {
    /// List a directory.
    Ls {
        /// Directory path.
        #[arg(default_value = "/")]
        path: String,
    },
    /// Print a file's content.
    Cat {
        /// File path.
        path: String,
    },
    /// Create or replace a file (content from the argument, or stdin when absent).
    Put {
        /// File path.
        path: String,
        /// Content.
        content: Option<String>,
        /// Create a directory instead.
        #[arg(long)]
        dir: bool,
    },
    /// Delete a file or an empty directory.
    Rm {
        /// Path.
        path: String,
    },
    /// Acquire a lock in a new session, print its sequencer, hold it until interrupted.
    Lock {
        /// File whose lock to take.
        path: String,
        /// Shared rather than exclusive.
        #[arg(long)]
        shared: bool,
        /// Wait up to this long for the lock, milliseconds (0: try once).
        #[arg(long, default_value_t = 0)]
        wait_ms: u64,
        /// Release and exit after this long, milliseconds (default: hold until killed).
        #[arg(long)]
        hold_ms: Option<u64>,
    },
    /// Release a session's lock (an operator's override).
    Unlock {
        /// Locked file.
        path: String,
        /// The holding session.
        #[arg(long)]
        session: u64,
    },
    /// List live sessions with their locks and ephemeral nodes.
    Sessions,
    /// Show every replica's Raft status.
    Status,
    /// Check a sequencer (path:mode:generation, as `lock` prints it).
    CheckSequencer {
        /// The sequencer.
        sequencer: String,
    },
    /// Measure acquire+release cycles: each client has its own session and lock (the
    /// `latency`/`throughput` measurements of `quarry bench lock --target quarry`).
    Bench {
        /// Concurrent clients (sessions), each cycling on its own lock.
        #[arg(long, default_value_t = 1)]
        clients: usize,
        /// Cycles per client.
        #[arg(long, default_value_t = 1000)]
        cycles: u64,
    },
}

fn parse_peers(s: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut peers = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .with_context(|| format!("peer {part:?} is not id=host:port"))?;
        let id: u64 = id.parse().with_context(|| format!("peer id {id:?}"))?;
        addr.parse::<SocketAddr>()
            .with_context(|| format!("peer address {addr:?}"))?;
        if peers.insert(id, addr.to_string()).is_some() {
            bail!("peer id {id} given twice");
        }
    }
    if peers.is_empty() {
        bail!("--peers is empty");
    }
    Ok(peers)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Runs `quarry lock-server`.
pub fn lock_server(a: LockServerArgs) -> anyhow::Result<()> {
    let peers = parse_peers(&a.peers)?;
    let listen = match a.listen {
        Some(l) => l,
        None => peers
            .get(&a.id)
            .with_context(|| format!("--id {} is not in --peers", a.id))?
            .parse()?,
    };
    let cfg = ReplicaConfig {
        id: a.id,
        listen,
        peers,
        data_dir: a.data,
        bootstrap: a.bootstrap,
        lease: LeaseConfig {
            lease: Duration::from_millis(a.lease_ms),
            lock_delay: Duration::from_millis(a.lock_delay_ms),
        },
        timing: RaftTiming {
            heartbeat: Duration::from_millis(a.heartbeat_ms),
            election_base: Duration::from_millis(a.election_base_ms),
            election_width: Duration::from_millis(a.election_width_ms),
        },
        compaction: Compaction {
            snapshot_every: a.snapshot_every,
            logs_to_keep: a.logs_to_keep,
        },
    };
    let rt = match a.threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n.into())
            .enable_all()
            .build()?,
    };
    rt.block_on(async {
        let view = crate::ops::maybe_serve(a.http, crate::ops::Source::Lock).await?;
        // The chaos harness's fault variables choose the Fs and clock (real ones otherwise).
        let fs = sstable::fault::process_fs()?;
        let replica = Replica::start(cfg, fs, clock_from_env()).await?;
        tracing::info!(id = a.id, %listen, "lock-server serving");
        println!("lock-server {} serving on {listen}", a.id);
        let _ = view.set(replica.view());
        tokio::signal::ctrl_c().await?;
        replica.shutdown().await;
        Ok(())
    })
}

fn client(addrs: &str) -> anyhow::Result<Client> {
    let addrs: Vec<String> = addrs
        .split(',')
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    Ok(Client::new(ClientConfig::new(addrs))?)
}

fn fmt_seq(s: &Sequencer) -> String {
    let mode = match s.mode {
        LockMode::Exclusive => "exclusive",
        LockMode::Shared => "shared",
    };
    format!("{}:{mode}:{}", s.path, s.generation)
}

fn parse_seq(s: &str) -> anyhow::Result<Sequencer> {
    let mut it = s.rsplitn(3, ':');
    let (g, m, p) = (it.next(), it.next(), it.next());
    let (Some(g), Some(m), Some(p)) = (g, m, p) else {
        bail!("sequencer {s:?} is not path:mode:generation");
    };
    let mode = match m {
        "exclusive" => LockMode::Exclusive,
        "shared" => LockMode::Shared,
        _ => bail!("mode {m:?} is not exclusive or shared"),
    };
    Ok(Sequencer {
        path: p.to_string(),
        mode,
        generation: g.parse().context("generation")?,
    })
}

/// Runs `quarry lock ...`.
pub fn lock(a: LockArgs) -> anyhow::Result<()> {
    if let LockCommand::Bench { clients, cycles } = a.command {
        return super::bench_lock::run(LockBenchArgs {
            addrs: a.addrs,
            measure: vec![if clients == 1 {
                Measure::Latency
            } else {
                Measure::Throughput
            }],
            clients,
            cycles,
            ..LockBenchArgs::defaults()
        });
    }
    let c = client(&a.addrs)?;
    runtime()?.block_on(run_lock(c, a.command))
}

async fn run_lock(c: Client, cmd: LockCommand) -> anyhow::Result<()> {
    match cmd {
        LockCommand::Ls { path } => {
            for m in c.list(&path).await? {
                let kind = if m.is_dir { "d" } else { "-" };
                let eph = m
                    .ephemeral_owner
                    .map(|s| format!(" ephemeral:{s}"))
                    .unwrap_or_default();
                outln!(
                    "{kind} {:>8} gen:{} lock:{}{eph} {}",
                    m.len,
                    m.content_generation,
                    m.lock_generation,
                    m.path
                );
            }
        }
        LockCommand::Cat { path } => {
            let (content, _) = c.read(&path).await?;
            use std::io::Write;
            if let Err(e) = std::io::stdout().write_all(&content) {
                super::stdout_failed(e);
            }
        }
        LockCommand::Put { path, content, dir } => {
            if dir {
                c.create(&path, true, b"").await?;
                return Ok(());
            }
            let bytes = match content {
                Some(s) => s.into_bytes(),
                None => {
                    let mut b = Vec::new();
                    std::io::stdin().read_to_end(&mut b)?;
                    b
                }
            };
            match c.write(&path, &bytes, None, None).await {
                Err(lockservice::Error::NotFound(_)) => {
                    c.create(&path, false, &bytes).await?;
                }
                r => {
                    r?;
                }
            }
        }
        LockCommand::Rm { path } => c.delete(&path, None).await?,
        LockCommand::Lock {
            path,
            shared,
            wait_ms,
            hold_ms,
        } => hold_lock(&c, &path, shared, wait_ms, hold_ms).await?,
        LockCommand::Unlock { path, session } => {
            let req = lockservice::pb::LockRef { session, path };
            c.conn()
                .call(lockservice::client::Retry::Once, |mut cl| {
                    let req = req.clone();
                    async move { cl.release(req).await }
                })
                .await?;
        }
        LockCommand::Sessions => {
            for s in c.sessions().await? {
                outln!(
                    "session {} client={:?} locks={:?} ephemerals={:?}",
                    s.session,
                    s.client,
                    s.locks,
                    s.ephemerals
                );
            }
        }
        LockCommand::Status => {
            let st = c.status().await?;
            outln!(
                "replica {} {} term {} leader {} ({}) last_log {} applied {} sessions {}",
                st.id,
                st.state,
                st.term,
                st.current_leader,
                st.leader_address,
                st.last_log_index,
                st.last_applied,
                st.sessions
            );
            let mut members: Vec<_> = st.members.into_iter().collect();
            members.sort();
            for (id, addr) in members {
                outln!("member {id} {addr}");
            }
        }
        LockCommand::CheckSequencer { sequencer } => {
            c.check_sequencer(&parse_seq(&sequencer)?).await?;
            outln!("current");
        }
        LockCommand::Bench { .. } => unreachable!("lock() runs the benchmark itself"),
    }
    Ok(())
}

async fn hold_lock(
    c: &Client,
    path: &str,
    shared: bool,
    wait_ms: u64,
    hold_ms: Option<u64>,
) -> anyhow::Result<()> {
    let mode = if shared {
        LockMode::Shared
    } else {
        LockMode::Exclusive
    };
    let s = c
        .open_session(&format!("quarry lock pid {}", std::process::id()))
        .await?;
    let seq = s
        .acquire(path, mode, Duration::from_millis(wait_ms))
        .await?;
    outln!("session {} holds {}", s.id(), fmt_seq(&seq));
    let hold = async {
        match hold_ms {
            Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::select! {
        _ = hold => {}
        _ = s.lost() => bail!("session {} lost: the lock is gone", s.id()),
    }
    s.release(path).await?;
    s.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_and_sequencers_parse_and_bad_ones_are_named() {
        let p = parse_peers("1=127.0.0.1:1,2=127.0.0.1:2").unwrap();
        assert_eq!(p[&2], "127.0.0.1:2");
        assert!(parse_peers("1=x").is_err());
        assert!(parse_peers("1=127.0.0.1:1,1=127.0.0.1:2").is_err());
        let s = parse_seq("/a/b:c:exclusive:7").unwrap();
        assert_eq!((s.path.as_str(), s.generation), ("/a/b:c", 7));
        assert_eq!(parse_seq(&fmt_seq(&s)).unwrap(), s);
        assert!(parse_seq("/a:weird:1").is_err());
    }
}
