//! Connections to tablet servers and the management calls the master makes on them.
//!
//! One lazily connected gRPC channel per server address, kept for the process's life.
//! Every management call carries the master's sequencer (the tablet server checks it
//! with the lock service, so a deposed master's commands are rejected) and a deadline:
//! [`Conns::rpc_timeout`] for quick calls, [`Conns::load_timeout`] for loads and splits,
//! which may replay a commit log.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

use crate::error::{from_tablet_status, Error, Result};
use crate::tpb;

/// A tablet server's gRPC client.
pub type TabletClient = tpb::tablet_client::TabletClient<Channel>;

/// Largest message the master sends to or accepts from a tablet server (METADATA scans
/// are streamed in chunks well below this).
pub const MAX_TABLET_MESSAGE: usize = 64 << 20;

/// Channels to tablet servers by address.
pub struct Conns {
    map: Mutex<HashMap<String, TabletClient>>,
    /// Deadline of a quick management call.
    pub rpc_timeout: Duration,
    /// Deadline of a load, unload or split.
    pub load_timeout: Duration,
}

impl Conns {
    /// No connections yet.
    pub fn new(rpc_timeout: Duration, load_timeout: Duration) -> Conns {
        Conns {
            map: Mutex::new(HashMap::new()),
            rpc_timeout,
            load_timeout,
        }
    }

    /// The client for `addr` (connects lazily; the channel reconnects by itself).
    pub fn get(&self, addr: &str) -> Result<TabletClient> {
        if let Some(c) = self.map.lock().get(addr) {
            return Ok(c.clone());
        }
        let ep = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::Unavailable(format!("bad tablet server address {addr:?}: {e}")))?
            .connect_timeout(self.rpc_timeout)
            .local_address(lockservice::bind::source_ip());
        let c = TabletClient::new(ep.connect_lazy())
            .max_decoding_message_size(MAX_TABLET_MESSAGE)
            .max_encoding_message_size(MAX_TABLET_MESSAGE);
        self.map.lock().insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// `LoadTablet` on `addr`.
    pub async fn load(&self, addr: &str, req: tpb::LoadTabletRequest) -> Result<()> {
        let mut c = self.get(addr)?;
        let what = format!("LoadTablet({}) on {addr}", desc_id(&req.tablet));
        with_deadline(self.load_timeout, &what, c.load_tablet(req)).await?;
        Ok(())
    }

    /// `UnloadTablet` on `addr` (the server flushes first).
    pub async fn unload(&self, addr: &str, req: tpb::UnloadTabletRequest) -> Result<()> {
        let mut c = self.get(addr)?;
        let what = format!("UnloadTablet({}) on {addr}", req.tablet_id);
        with_deadline(self.load_timeout, &what, c.unload_tablet(req)).await?;
        Ok(())
    }

    /// `ListTablets` on `addr`.
    pub async fn list(&self, addr: &str) -> Result<tpb::ListTabletsResponse> {
        let mut c = self.get(addr)?;
        let what = format!("ListTablets on {addr}");
        with_deadline(
            self.rpc_timeout,
            &what,
            c.list_tablets(tpb::ListTabletsRequest {}),
        )
        .await
    }

    /// `SplitTablet` on `addr`.
    pub async fn split(
        &self,
        addr: &str,
        req: tpb::SplitTabletRequest,
    ) -> Result<tpb::SplitTabletResponse> {
        let mut c = self.get(addr)?;
        let what = format!("SplitTablet({}) on {addr}", req.tablet_id);
        with_deadline(self.load_timeout, &what, c.split_tablet(req)).await
    }

    /// `CompactTablet` on `addr` (returns when the compaction is done).
    pub async fn compact(&self, addr: &str, req: tpb::CompactTabletRequest) -> Result<()> {
        let mut c = self.get(addr)?;
        let what = format!("CompactTablet({}) on {addr}", req.tablet_id);
        with_deadline(self.load_timeout, &what, c.compact_tablet(req)).await?;
        Ok(())
    }
}

fn desc_id(d: &Option<tpb::TabletDescriptor>) -> String {
    d.as_ref()
        .map(|d| d.tablet_id.to_string())
        .unwrap_or_else(|| "?".into())
}

/// Runs a unary call with a deadline, mapping its status to an [`Error`].
pub async fn with_deadline<T>(
    timeout: Duration,
    what: &str,
    call: impl std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(Error::Unavailable(format!(
            "{what}: no answer within {timeout:?}"
        ))),
        Ok(Err(s)) => Err(from_tablet_status(what, s)),
        Ok(Ok(r)) => Ok(r.into_inner()),
    }
}
