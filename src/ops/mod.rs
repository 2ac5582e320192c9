//! The operations endpoint of a server process (`--http ADDR`): Prometheus metrics and a
//! status page (DESIGN.md section 8).
//!
//! [`serve`] installs the process's `metrics` recorder (the Prometheus exporter, without
//! its own HTTP listener or push gateway: `default-features = false` keeps it offline and
//! free of a TLS stack) and serves, with axum (already in the tree through tonic):
//!
//! - `GET /metrics`: the Prometheus text format. Counters and histograms are recorded
//!   where things happen, in the library crates (`quarry_rpc_*` by a tower layer on every
//!   gRPC server, `quarry_flushes_total`, `quarry_master_moves_total`, ...); gauges and the
//!   counters other components already keep (the commit log's, the block cache's) are
//!   read from the server's status at each scrape ([`gauges`]).
//! - `GET /`: a small HTML status page of the role ([`pages`]), no JavaScript.
//!
//! The server's state arrives after the listener is up (a tablet server registers, a
//! replica opens its log): until then both answer with what exists ("starting").
//! docs/operations.md lists every metric.

pub mod config;
pub mod gauges;
pub mod pages;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use lockservice::server::ReplicaView;
use master::MasterView;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tablet::server::ServerView;

/// Buckets of the RPC latency histograms, seconds (100 µs to 10 s).
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// How often histogram data is drained between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Where a role's state will be, once the role has started.
pub enum Source {
    /// A tablet server.
    Tablet(Arc<OnceLock<ServerView>>),
    /// A master (active or standby).
    Master(Arc<OnceLock<MasterView>>),
    /// A lock-service replica.
    Lock(Arc<OnceLock<ReplicaView>>),
}

struct Ctx {
    source: Source,
    prom: PrometheusHandle,
}

/// Installs the metrics recorder and serves `/metrics` and `/` on `addr` from a task of
/// the current runtime; returns the bound address. Fails if `addr` cannot be bound or a
/// recorder is already installed.
pub async fn serve(addr: SocketAddr, source: Source) -> anyhow::Result<SocketAddr> {
    let prom = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("quarry_rpc_duration_seconds".into()),
            LATENCY_BUCKETS,
        )
        .context("histogram buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--http: cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let upkeep = prom.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP_EVERY).await;
            upkeep.run_upkeep();
        }
    });
    let ctx = Arc::new(Ctx { source, prom });
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/", get(page_handler))
        .with_state(ctx);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("http server on {bound} failed: {e}");
        }
    });
    tracing::info!(%bound, "http: /metrics and / (status page)");
    Ok(bound)
}

async fn metrics_handler(State(ctx): State<Arc<Ctx>>) -> impl IntoResponse {
    match &ctx.source {
        Source::Tablet(v) => gauges::tablet(v.get()),
        Source::Master(v) => gauges::master(v.get()),
        Source::Lock(v) => gauges::lock(v.get()),
    }
    ctx.prom.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ctx.prom.render(),
    )
}

async fn page_handler(State(ctx): State<Arc<Ctx>>) -> Html<String> {
    Html(match &ctx.source {
        Source::Tablet(v) => pages::tablet(v.get()),
        Source::Master(v) => {
            let holder = match v.get() {
                Some(m) => m.lock_holder().await,
                None => None,
            };
            pages::master(v.get(), holder)
        }
        Source::Lock(v) => pages::lock(v.get()),
    })
}

/// Starts the endpoint when `http` is given; returns the slot the role fills once started.
pub async fn maybe_serve<T>(
    http: Option<SocketAddr>,
    wrap: impl FnOnce(Arc<OnceLock<T>>) -> Source,
) -> anyhow::Result<Arc<OnceLock<T>>> {
    let slot = Arc::new(OnceLock::new());
    if let Some(addr) = http {
        let bound = serve(addr, wrap(Arc::clone(&slot))).await?;
        println!("http status and metrics on http://{bound}/");
    }
    Ok(slot)
}
