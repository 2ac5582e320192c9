//! The [`Client`]: configuration, connections, and finding where a row is served.
//!
//! Location lookup (DESIGN.md section 4): the lock-service file
//! [`ROOT_TABLET_PATH`](tablet::meta::ROOT_TABLET_PATH) says which server serves METADATA;
//! the tablet of table `t` holding row `r` is the first METADATA row at or after
//! [`lookup_key`](tablet::meta::lookup_key)`(t, r)`. A lookup reads a few rows from there
//! (prefetch: the following tablets of the table, which scans will want next) and caches
//! every assigned tablet it sees. Table names map to ids through the lock-service files
//! under [`TABLES_DIR`](tablet::meta::TABLES_DIR). The master is never on this path.
//!
//! Every operation has a deadline ([`ClientConfig::operation_timeout`]); each attempt has
//! its own shorter one ([`ClientConfig::attempt_timeout`]). Between attempts the client
//! backs off with jitter ([`crate::retry::Backoff`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::pb;
use crate::pb::tablet_client::TabletClient;
use parking_lot::Mutex;
use tablet::meta::{self, TableInfo, TabletRecord};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::cache::{Location, LocationCache};
use crate::convert::record_from_row;
use crate::error::{Error, Result};
use crate::retry::{decide, describe, Backoff, Decision};

/// Largest gRPC message the client sends or accepts: one row mutation (64 MiB) plus room.
pub const MAX_MESSAGE_BYTES: usize = tablet::mutation::MAX_MUTATION_BYTES + 16 * 1024 * 1024;

/// How to reach a cluster and how patient to be.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Lock-service replica addresses (host:port).
    pub lock_addrs: Vec<String>,
    /// Total time one operation may take, retries included.
    pub operation_timeout: Duration,
    /// Time one attempt (one RPC) may take.
    pub attempt_timeout: Duration,
    /// First backoff between attempts.
    pub backoff_initial: Duration,
    /// Longest backoff between attempts.
    pub backoff_max: Duration,
    /// METADATA rows read per lookup (the tablet wanted and the ones after it).
    pub metadata_prefetch: u64,
}

impl ClientConfig {
    /// Defaults: 30 s per operation, 10 s per attempt, backoff 10 ms doubling to 1 s,
    /// prefetch 16 locations.
    pub fn new(lock_addrs: Vec<String>) -> ClientConfig {
        ClientConfig {
            lock_addrs,
            operation_timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
            metadata_prefetch: 16,
        }
    }

    /// Parses a comma-separated address list (`host:port,host:port`).
    pub fn from_addr_list(list: &str) -> Result<ClientConfig> {
        let addrs: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect();
        if addrs.is_empty() {
            return Err(Error::InvalidArgument(
                "no lock-service address given".into(),
            ));
        }
        Ok(ClientConfig::new(addrs))
    }
}

/// A handle on a Quarry cluster. Cheap to clone; clones share caches and connections.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) cfg: ClientConfig,
    pub(crate) lock: lockservice::client::Client,
    pub(crate) cache: Mutex<LocationCache>,
    table_ids: Mutex<HashMap<String, u64>>,
    root: Mutex<Option<Location>>,
    channels: Mutex<HashMap<String, Channel>>,
    pub(crate) master: Mutex<Option<String>>,
}

impl Client {
    /// A client for the cluster whose lock service is at `cfg.lock_addrs`. Connects lazily:
    /// nothing is contacted until the first operation.
    pub fn new(cfg: ClientConfig) -> Result<Client> {
        let mut lcfg = lockservice::client::ClientConfig::new(cfg.lock_addrs.clone());
        lcfg.request_timeout = cfg.attempt_timeout;
        let lock = lockservice::client::Client::new(lcfg)?;
        Ok(Client {
            inner: Arc::new(Inner {
                cfg,
                lock,
                cache: Mutex::new(LocationCache::new()),
                table_ids: Mutex::new(HashMap::new()),
                root: Mutex::new(None),
                channels: Mutex::new(HashMap::new()),
                master: Mutex::new(None),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// The lock-service client this client uses.
    pub fn lock_service(&self) -> &lockservice::client::Client {
        &self.inner.lock
    }

    /// A channel to `addr` (created once, connecting lazily).
    pub(crate) fn channel(&self, addr: &str) -> Result<Channel> {
        let mut chans = self.inner.channels.lock();
        if let Some(c) = chans.get(addr) {
            return Ok(c.clone());
        }
        let ep = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::InvalidArgument(format!("bad server address {addr:?}: {e}")))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .local_address(lockservice::bind::source_ip());
        let c = ep.connect_lazy();
        chans.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// A tablet-service client for `addr`.
    pub(crate) fn tablet_client(&self, addr: &str) -> Result<TabletClient<Channel>> {
        Ok(TabletClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// A new backoff per the configuration.
    pub(crate) fn backoff(&self) -> Backoff {
        Backoff::new(self.inner.cfg.backoff_initial, self.inner.cfg.backoff_max)
    }

    /// The deadline of an operation starting now.
    pub(crate) fn deadline(&self) -> Instant {
        Instant::now() + self.inner.cfg.operation_timeout
    }

    /// Waits the backoff's next delay, or fails with `Unavailable` when that would pass
    /// `deadline`.
    pub(crate) async fn pause(&self, b: &mut Backoff, deadline: Instant, why: &str) -> Result<()> {
        let d = b.next_delay();
        if Instant::now() + d >= deadline {
            return Err(Error::Unavailable(format!(
                "gave up after {:?}: {why}",
                self.inner.cfg.operation_timeout
            )));
        }
        tokio::time::sleep(d).await;
        Ok(())
    }

    /// Runs one attempt of `f` under the attempt timeout (a timeout is a
    /// `DeadlineExceeded` status, i.e. the outcome is unknown).
    pub(crate) async fn attempt<T, Fut>(
        &self,
        deadline: Instant,
        f: Fut,
    ) -> Result<T, tonic::Status>
    where
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = left.min(self.inner.cfg.attempt_timeout);
        match tokio::time::timeout(limit, f).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {limit:?}"
            ))),
        }
    }

    /// Runs a single-row operation: locate the tablet of `row`, call `f`, retry by the
    /// classification in [`crate::retry`] until the deadline.
    pub(crate) async fn with_tablet<T, F, Fut>(
        &self,
        op: &'static str,
        table: &str,
        row: &[u8],
        idempotent: bool,
        mut f: F,
    ) -> Result<T>
    where
        F: FnMut(TabletClient<Channel>, pb::TabletRef) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = self.deadline();
        let mut backoff = self.backoff();
        loop {
            let loc = self.locate(table, row, deadline).await?;
            let tref = pb::TabletRef {
                table: table.to_string(),
                tablet_id: loc.tablet_id,
            };
            let client = self.tablet_client(&loc.server_addr)?;
            let status = match self.attempt(deadline, f(client, tref)).await {
                Ok(v) => return Ok(v),
                Err(s) => s,
            };
            match decide(op, &status, idempotent) {
                Decision::Fail(e) => return Err(e),
                Decision::Retry { relocate } => {
                    tracing::debug!(
                        op,
                        table,
                        tablet = loc.tablet_id,
                        "retry: {}",
                        describe(&status)
                    );
                    if relocate {
                        self.forget(table, &loc);
                    }
                    self.pause(&mut backoff, deadline, &describe(&status))
                        .await?;
                }
            }
        }
    }

    /// Drops a location that failed (and the METADATA location when it was METADATA).
    pub(crate) fn forget(&self, table: &str, loc: &Location) {
        self.inner.cache.lock().invalidate(table, loc.tablet_id);
    }

    /// The id of table `table` (from the lock service, cached).
    pub async fn table_id(&self, table: &str) -> Result<u64> {
        if let Some(id) = self.inner.table_ids.lock().get(table) {
            return Ok(*id);
        }
        let info = self.table_info(table).await?;
        self.inner
            .table_ids
            .lock()
            .insert(table.to_string(), info.id);
        Ok(info.id)
    }

    /// A table's id and schema as the lock service records them.
    pub async fn table_info(&self, table: &str) -> Result<TableInfo> {
        if table.is_empty() || table.contains('/') {
            return Err(Error::InvalidArgument(format!("bad table name {table:?}")));
        }
        let path = format!("{}/{table}", meta::TABLES_DIR);
        let (content, _) = self.inner.lock.read(&path).await.map_err(|e| match e {
            lockservice::Error::NotFound(_) => Error::NotFound(format!("table {table:?}")),
            e => e.into(),
        })?;
        serde_json::from_slice(&content)
            .map_err(|e| Error::Internal(format!("bad table file {path}: {e}")))
    }

    /// Forgets everything cached about `table` (after it was deleted or recreated).
    pub fn forget_table(&self, table: &str) {
        self.inner.table_ids.lock().remove(table);
        self.inner.cache.lock().invalidate_table(table);
    }

    /// Where METADATA is served (from the lock service, cached).
    async fn root(&self) -> Result<Location> {
        if let Some(l) = self.inner.root.lock().clone() {
            return Ok(l);
        }
        let (content, _) = self.inner.lock.read(meta::ROOT_TABLET_PATH).await?;
        let rec = TabletRecord::from_json(&content)
            .map_err(|e| Error::Internal(format!("{}: {e}", meta::ROOT_TABLET_PATH)))?;
        let loc = Location::from_record(&rec)
            .ok_or_else(|| Error::Unavailable("METADATA is not assigned yet".into()))?;
        *self.inner.root.lock() = Some(loc.clone());
        Ok(loc)
    }

    /// The location of the tablet of `table` holding `row`: cached, or looked up in
    /// METADATA (retrying until `deadline` while METADATA or the tablet is unavailable).
    pub(crate) async fn locate(
        &self,
        table: &str,
        row: &[u8],
        deadline: Instant,
    ) -> Result<Location> {
        if let Some(l) = self.inner.cache.lock().get(table, row) {
            return Ok(l);
        }
        let table_id = self.table_id(table).await?;
        let mut backoff = self.backoff();
        loop {
            let why = match self.lookup_once(table, table_id, row, deadline).await {
                Ok(Some(l)) => return Ok(l),
                Ok(None) => format!("the tablet of {table:?} holding {row:x?} is not assigned"),
                Err(Error::Unavailable(why)) => why,
                Err(Error::NotFound(what)) => {
                    self.forget_table(table);
                    return Err(Error::NotFound(what));
                }
                Err(e) => return Err(e),
            };
            self.pause(&mut backoff, deadline, &why).await?;
        }
    }

    /// One METADATA read from `row` on: caches what it finds, returns the tablet holding
    /// `row` if it is assigned. `Unavailable` for anything worth retrying.
    async fn lookup_once(
        &self,
        table: &str,
        table_id: u64,
        row: &[u8],
        deadline: Instant,
    ) -> Result<Option<Location>> {
        let records = self
            .metadata_rows(
                table_id,
                &meta::lookup_key(table_id, row),
                self.inner.cfg.metadata_prefetch,
                deadline,
            )
            .await?;
        let Some(first) = records.first() else {
            return Err(Error::NotFound(format!(
                "table {table:?} (id {table_id}) has no tablet in METADATA"
            )));
        };
        if !first.range().contains(row) {
            return Err(Error::Unavailable(format!(
                "METADATA has no tablet of {table:?} holding {row:x?} (a split in progress?)"
            )));
        }
        let mut cache = self.inner.cache.lock();
        for r in &records {
            if let Some(l) = Location::from_record(r) {
                cache.insert(table, l);
            }
        }
        Ok(cache.get(table, row))
    }

    /// Reads up to `limit` METADATA records of `table_id` from METADATA key `from` on.
    /// Failures reaching METADATA come back as `Unavailable` (and drop the cached root).
    pub(crate) async fn metadata_rows(
        &self,
        table_id: u64,
        from: &[u8],
        limit: u64,
        deadline: Instant,
    ) -> Result<Vec<TabletRecord>> {
        let root = match self.root().await {
            Ok(r) => r,
            Err(Error::NotFound(_)) => {
                return Err(Error::Unavailable(
                    "METADATA's location is not published yet".into(),
                ))
            }
            Err(e) => return Err(e),
        };
        let req = pb::ReadRowsRequest {
            tablet: Some(pb::TabletRef {
                table: meta::METADATA_TABLE.to_string(),
                tablet_id: meta::METADATA_TABLET_ID,
            }),
            rows: vec![],
            ranges: vec![pb::RowRange {
                start: from.to_vec(),
                end: meta::table_rows(table_id).end,
            }],
            filter: Some(pb::Filter {
                families: vec![meta::FAMILY.to_string()],
                versions_per_column: Some(1),
                ..pb::Filter::default()
            }),
            rows_limit: limit,
        };
        let mut client = self.tablet_client(&root.server_addr)?;
        let rows = self.read_all(deadline, &mut client, req).await;
        let rows = match rows {
            Ok(r) => r,
            Err(s) => {
                *self.inner.root.lock() = None;
                return match decide("read_metadata", &s, true) {
                    Decision::Fail(e) => Err(e),
                    Decision::Retry { .. } => Err(Error::Unavailable(format!(
                        "METADATA at {}: {}",
                        root.server_addr,
                        describe(&s)
                    ))),
                };
            }
        };
        rows.iter().map(record_from_row).collect()
    }

    /// Every row a ReadRows call streams (one attempt).
    async fn read_all(
        &self,
        deadline: Instant,
        client: &mut TabletClient<Channel>,
        req: pb::ReadRowsRequest,
    ) -> Result<Vec<pb::Row>, tonic::Status> {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .min(self.inner.cfg.attempt_timeout);
        let work = async {
            let mut stream = client.read_rows(req).await?.into_inner();
            let mut rows = Vec::new();
            let mut done = false;
            while let Some(msg) = stream.message().await? {
                rows.extend(msg.rows);
                done |= msg.done;
            }
            if !done {
                return Err(tonic::Status::unavailable("read stream ended early"));
            }
            Ok(rows)
        };
        tokio::time::timeout(left, work)
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("read timed out")))
    }

    /// Reads one METADATA row where the lock service says METADATA is served (one attempt,
    /// no retries): `Ok` when METADATA is being served.
    pub async fn probe_metadata(&self) -> Result<()> {
        *self.inner.root.lock() = None;
        let deadline = Instant::now() + self.inner.cfg.attempt_timeout;
        self.metadata_rows(0, &[], 1, deadline).await.map(|_| ())
    }

    /// Every METADATA record of `table`, in row order (retrying until the deadline).
    pub async fn table_tablets(&self, table: &str) -> Result<Vec<TabletRecord>> {
        let table_id = self.table_id(table).await?;
        let deadline = self.deadline();
        let mut backoff = self.backoff();
        loop {
            let start = meta::table_rows(table_id).start;
            match self.metadata_rows(table_id, &start, 0, deadline).await {
                Ok(v) => return Ok(v),
                Err(Error::Unavailable(why)) => self.pause(&mut backoff, deadline, &why).await?,
                Err(e) => return Err(e),
            }
        }
    }
}
