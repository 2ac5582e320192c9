//! `quarry master`: one master process (active or standby; see the `master` crate).
//!
//! ```text
//! quarry master --listen 127.0.0.1:7201 --data ./quarry-data/root \
//!     --lock 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103
//! ```
//!
//! Exit status: 0 after SIGINT/SIGTERM; 2 when the master lost its lock-service session
//! (it stops issuing commands at once and exits, DESIGN.md rule 6); 1 on other errors.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use master::{Error, MasterConfig};

/// Default lock-service addresses (those `quarry dev` uses).
const DEFAULT_LOCK_ADDRS: &str = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103";

/// `quarry master`: runs a master; it waits as a standby while another holds the lock.
#[derive(Args, Debug)]
pub struct MasterArgs {
    /// Address of the admin gRPC service.
    #[arg(long, default_value = "127.0.0.1:7201")]
    listen: SocketAddr,
    /// Address clients should use (default: --listen).
    #[arg(long)]
    advertise: Option<String>,
    /// The shared data root of the tablet servers.
    #[arg(long, default_value = "./quarry-data/root")]
    data: PathBuf,
    /// Lock-service replica addresses, comma separated.
    #[arg(long = "lock", env = "QUARRY_LOCK", default_value = DEFAULT_LOCK_ADDRS)]
    lock: String,
    /// Period of the control loop (failure detection, assignment), milliseconds.
    #[arg(long, default_value_t = 300)]
    tick_ms: u64,
    /// Period of the full reconciliation with METADATA and the servers, milliseconds.
    #[arg(long, default_value_t = 3000)]
    scan_ms: u64,
    /// Period of a balancing round, milliseconds (each round moves at most --max-moves).
    #[arg(long, default_value_t = 5000)]
    balance_ms: u64,
    /// Tablet moves per balancing round (0: no balancing).
    #[arg(long, default_value_t = 1)]
    max_moves: usize,
    /// Period of a garbage-collection pass over the data root, milliseconds (0: none).
    #[arg(long, default_value_t = 60_000)]
    gc_interval_ms: u64,
    /// A file is deleted only after it was garbage in every pass for this long,
    /// milliseconds (keep it well above any process pause and the session lease).
    #[arg(long, default_value_t = 600_000)]
    gc_min_age_ms: u64,
    /// Serve Prometheus metrics (/metrics) and a status page (/) on this address.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// A TOML file with the same keys as these flags (flags win over the file).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Runs `quarry master`.
pub fn master(a: MasterArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.data)
        .with_context(|| format!("creating the data root {}", a.data.display()))?;
    let lock_addrs: Vec<String> = a.lock.split(',').map(|s| s.trim().to_string()).collect();
    let mut cfg = MasterConfig::new(a.listen, lock_addrs, a.data);
    if let Some(adv) = a.advertise {
        cfg.advertise = adv;
    }
    cfg.tick = Duration::from_millis(a.tick_ms.max(10));
    cfg.scan_every = Duration::from_millis(a.scan_ms.max(10));
    cfg.balance_every = Duration::from_millis(a.balance_ms.max(10));
    cfg.max_moves = a.max_moves;
    cfg.gc_interval = (a.gc_interval_ms > 0).then(|| Duration::from_millis(a.gc_interval_ms));
    cfg.gc_min_age = Duration::from_millis(a.gc_min_age_ms);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let r = rt.block_on(async {
        let view = crate::ops::maybe_serve(a.http, crate::ops::Source::Master).await?;
        let observe = |v| {
            let _ = view.set(v);
        };
        anyhow::Ok(master::run_observed(cfg, shutdown_signal(), observe).await)
    })?;
    match r {
        Ok(()) => Ok(()),
        Err(Error::LostMastership(why)) => {
            tracing::error!("lost mastership, exiting: {why}");
            std::process::exit(2);
        }
        Err(e) => Err(e).context("master"),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
