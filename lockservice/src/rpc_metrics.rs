//! Per-RPC request counts, errors and latency of a gRPC server, as a tower layer.
//!
//! [`RpcMetricsLayer`] wraps a tonic server (`Server::builder().layer(...)`) and records,
//! through the `metrics` facade (a no-op until the process installs a recorder, which
//! the `quarry` binary does when it is given `--http`):
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `quarry_rpc_requests_total` | counter | `server`, `rpc` |
//! | `quarry_rpc_errors_total` | counter | `server`, `rpc`, `code` |
//! | `quarry_rpc_duration_seconds` | histogram | `server`, `rpc` |
//!
//! `server` is the role given to the layer (`tablet`, `master`, `lock`); `rpc` is the
//! method name, the last segment of the request path (`MutateRow`, `KeepAlive`, ...).
//! A request is an error when the response carries a non-zero `grpc-status` in its
//! headers, which is how tonic answers a handler's `Err(Status)` ("trailers-only"); `code`
//! is that status number. Limits: a server-streaming RPC is timed until its response
//! headers, and an error it sends in the trailers after streaming is not counted; a
//! per-entry failure inside an OK reply (`MutateRows`) is not an RPC error. A request
//! for a method the server does not have (answered `Unimplemented`, code 12) is counted
//! under `rpc="unknown"`, so clients cannot grow the label set.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tower_layer::Layer;
use tower_service::Service;

/// The gRPC status code of a method the server does not implement.
const UNIMPLEMENTED: &str = "12";

/// Records per-RPC metrics of the services it wraps (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct RpcMetricsLayer {
    server: &'static str,
}

impl RpcMetricsLayer {
    /// A layer labelling its metrics `server="<server>"`.
    pub fn new(server: &'static str) -> Self {
        RpcMetricsLayer { server }
    }
}

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics {
            inner,
            server: self.server,
        }
    }
}

/// The service [`RpcMetricsLayer`] makes.
#[derive(Clone, Debug)]
pub struct RpcMetrics<S> {
    inner: S,
    server: &'static str,
}

/// The method name of a gRPC request path `/package.Service/Method`.
fn method_of(path: &str) -> String {
    path.rsplit('/').next().unwrap_or("").to_string()
}

impl<S, ReqB, ResB> Service<http::Request<ReqB>> for RpcMetrics<S>
where
    S: Service<http::Request<ReqB>, Response = http::Response<ResB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        let mut rpc = method_of(req.uri().path());
        let server = self.server;
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            let code = match &r {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .filter(|c| *c != "0")
                    .map(str::to_string),
                Err(_) => Some("transport".to_string()),
            };
            if code.as_deref() == Some(UNIMPLEMENTED) {
                rpc = "unknown".to_string();
            }
            metrics::counter!("quarry_rpc_requests_total", "server" => server, "rpc" => rpc.clone())
                .increment(1);
            if let Some(code) = code {
                metrics::counter!(
                    "quarry_rpc_errors_total",
                    "server" => server,
                    "rpc" => rpc.clone(),
                    "code" => code
                )
                .increment(1);
            }
            metrics::histogram!("quarry_rpc_duration_seconds", "server" => server, "rpc" => rpc)
                .record(start.elapsed().as_secs_f64());
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_is_the_last_path_segment() {
        assert_eq!(method_of("/quarry.tablet.v1.Tablet/MutateRow"), "MutateRow");
        assert_eq!(method_of("/"), "");
    }
}
