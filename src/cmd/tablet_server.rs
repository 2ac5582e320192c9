//! `quarry tablet-server`: one tablet server process (see the `tablet` crate's `server`).
//!
//! ```text
//! quarry tablet-server --listen 127.0.0.1:7301 --data ./quarry-data/root \
//!     --lock 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103
//! ```
//!
//! Exit status: 3 when the server stopped serving because its lock-service session was
//! lost or its server file was deleted (DESIGN.md rule 5; restart it as a new
//! incarnation); 1 on other errors.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tablet::compaction::Policy;
use tablet::server::{self, ServerConfig};
use tablet::{CommitLogOptions, TabletOptions};

use super::lock::DEFAULT_LOCK_ADDRS;

/// `quarry tablet-server`: serves tablets the master assigns.
#[derive(Args, Debug)]
pub struct TabletServerArgs {
    /// Address of the tablet gRPC service.
    #[arg(long, default_value = "127.0.0.1:7301")]
    listen: SocketAddr,
    /// Address clients and the master should use (default: --listen).
    #[arg(long)]
    advertise: Option<String>,
    /// The shared data root (every tablet server and master uses the same one).
    #[arg(long, default_value = "./quarry-data/root")]
    data: PathBuf,
    /// Lock-service replicas.
    #[arg(long = "lock", env = "QUARRY_LOCK", default_value = DEFAULT_LOCK_ADDRS)]
    lock: String,
    /// A readable name (the server id is `<name>-<session id>`); default `ts-<port>`.
    #[arg(long)]
    name: Option<String>,
    /// Freeze and flush a tablet's memtable past this many bytes.
    #[arg(long, default_value_t = 64 << 20)]
    memtable_bytes: u64,
    /// Block cache size in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    cache_bytes: u64,
    /// Acknowledge writes without fsyncing the commit log (unsafe: for experiments only).
    #[arg(long)]
    no_sync: bool,
    /// How often to check that the server file still exists, in milliseconds.
    #[arg(long, default_value_t = 500)]
    check_interval_ms: u64,
    /// Split a tablet whose SSTables pass this many bytes.
    #[arg(long, default_value_t = 256 << 20)]
    split_bytes: u64,
    /// How often tablet sizes are checked for splitting, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    split_check_ms: u64,
    /// Compaction policy of every tablet: size-tiered or leveled.
    #[arg(long, default_value = "size-tiered", value_parser = Policy::parse)]
    compaction: Policy,
    /// Serve Prometheus metrics (/metrics) and a status page (/) on this address.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// A TOML file with the same keys as these flags (flags win over the file).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Runs `quarry tablet-server`.
pub fn tablet_server(a: TabletServerArgs) -> anyhow::Result<()> {
    let mut tablet_options = TabletOptions {
        memtable_bytes: a.memtable_bytes,
        // Under a tablet server the master's garbage collector removes obsolete files:
        // a paused old owner must never delete files a newer owner uses.
        delete_obsolete_files: false,
        ..TabletOptions::default()
    };
    tablet_options.set_policy(a.compaction);
    std::fs::create_dir_all(&a.data).with_context(|| format!("creating {}", a.data.display()))?;
    let root = a.data.canonicalize()?;
    let cfg = ServerConfig {
        listen: a.listen,
        advertise: a.advertise.unwrap_or_else(|| a.listen.to_string()),
        root,
        lock_addrs: a.lock.split(',').map(|s| s.trim().to_string()).collect(),
        name: a.name.unwrap_or_else(|| format!("ts-{}", a.listen.port())),
        tablet_options,
        log_options: CommitLogOptions {
            sync: !a.no_sync,
            ..CommitLogOptions::default()
        },
        cache_bytes: a.cache_bytes,
        check_interval: Duration::from_millis(a.check_interval_ms),
        split_bytes: a.split_bytes,
        split_check: Duration::from_millis(a.split_check_ms),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let run = async {
        let view = crate::ops::maybe_serve(a.http, crate::ops::Source::Tablet).await?;
        anyhow::Ok(
            server::run_observed(cfg, |v| {
                let _ = view.set(v);
            })
            .await,
        )
    };
    match rt.block_on(run)? {
        Ok(()) => Ok(()),
        Err(tablet::Error::Failed(why)) => {
            eprintln!("tablet server stopped: {why}");
            std::process::exit(3);
        }
        Err(e) => Err(e.into()),
    }
}
