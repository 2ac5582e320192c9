//! The cbt-style data and admin commands (`quarry createtable`, `quarry read`, ...).
//!
//! Every command finds the cluster through the lock service: `--lock ADDR,...`, or the
//! environment variable `QUARRY_LOCK`, defaulting to the addresses `quarry dev` uses. Options
//! after the positional arguments use cbt's `key=value` spelling:
//!
//! ```text
//! quarry createtable users families=info:maxversions=1,log splits=g,p
//! quarry set users alice info:email=a@example.com info:age@1700000000000000=41
//! quarry lookup users alice columns=info:email cells-per-column=1
//! quarry read users prefix=a columns=info count=10
//! ```
//!
//! The admin commands (`createtable`, `ls`, `tablets`, ...) talk to the master whose address
//! is in the lock service; the data commands talk to tablet servers directly.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use client::{Client, ClientConfig};

use super::cli_admin as admin;
use super::cli_data as data;
use super::lock::DEFAULT_LOCK_ADDRS;

/// Where the cluster is and how long to wait for it.
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Lock-service replica addresses, comma separated.
    #[arg(long = "lock", env = "QUARRY_LOCK", default_value = DEFAULT_LOCK_ADDRS)]
    pub lock: String,
    /// Give up on one operation after this many seconds (retries included).
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

impl ConnArgs {
    /// A client for these settings.
    pub fn client(&self) -> anyhow::Result<Client> {
        let mut cfg = ClientConfig::from_addr_list(&self.lock)?;
        cfg.operation_timeout = Duration::from_secs(self.timeout.max(1));
        cfg.attempt_timeout = cfg.attempt_timeout.min(cfg.operation_timeout);
        Client::new(cfg).context("cannot set up the client")
    }
}

/// A table name and `key=value` options, as most commands take.
#[derive(Args, Debug)]
pub struct TableArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The table.
    pub table: String,
    /// Options: key=value.
    pub opts: Vec<String>,
}

/// A table, a row, and `key=value` (or `family:qualifier=value`) arguments.
#[derive(Args, Debug)]
pub struct RowArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The table.
    pub table: String,
    /// The row key.
    pub row: String,
    /// Further arguments.
    pub rest: Vec<String>,
}

/// Only the connection.
#[derive(Args, Debug)]
pub struct NoArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// An optional table name.
#[derive(Args, Debug)]
pub struct MaybeTableArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The table (all tables when absent).
    pub table: Option<String>,
}

/// The cbt-style commands.
#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Create a table: `createtable <table> [families=f1:maxversions=1,f2] [splits=a,m]`
    #[command(name = "createtable")]
    CreateTable(TableArgs),
    /// List tables, or a table's families and GC policies: `ls [table]`
    #[command(name = "ls")]
    Ls(MaybeTableArgs),
    /// Add a column family: `createfamily <table> <family>`
    #[command(name = "createfamily")]
    CreateFamily(RowArgs),
    /// Set a family's GC policy: `setgcpolicy <table> <family> (never | maxversions=N | maxage=D) [(and|or) ...]`
    #[command(name = "setgcpolicy")]
    SetGcPolicy(RowArgs),
    /// Mark a locality group in-memory or not: `setinmemory <table> <group> (on | off)`
    #[command(name = "setinmemory")]
    SetInMemory(RowArgs),
    /// Write cells: `set <table> <row> family:qualifier=value [family:qualifier@ts=value ...]`
    #[command(name = "set")]
    Set(RowArgs),
    /// Read a row: `lookup <table> <row> [columns=f:q,f2] [cells-per-column=N]`
    #[command(name = "lookup")]
    Lookup(RowArgs),
    /// Read rows: `read <table> [start=R] [end=R] [prefix=P] [columns=f:q,...] [count=N] [cells-per-column=N]`
    #[command(name = "read")]
    Read(TableArgs),
    /// Count a table's rows: `count <table> [start=R] [end=R] [prefix=P]`
    #[command(name = "count")]
    Count(TableArgs),
    /// Delete a row: `deleterow <table> <row>`
    #[command(name = "deleterow")]
    DeleteRow(RowArgs),
    /// Delete a table and its data: `deletetable <table>`
    #[command(name = "deletetable")]
    DeleteTable(TableArgs),
    /// List tablets with their ranges and servers: `tablets [table]`
    #[command(name = "tablets")]
    Tablets(MaybeTableArgs),
    /// List tablet servers: `servers`
    #[command(name = "servers")]
    Servers(NoArgs),
    /// Split the tablet holding a row, at that row: `split <table> <row>`
    #[command(name = "split")]
    Split(RowArgs),
    /// Compact every tablet of a table: `compact <table> [major]`
    #[command(name = "compact")]
    Compact(TableArgs),
    /// Show the master's view of the cluster: `status`
    #[command(name = "status")]
    Status(NoArgs),
}

/// Runs one cbt-style command on a fresh runtime.
pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(dispatch(cmd))
}

async fn dispatch(cmd: DataCommand) -> anyhow::Result<()> {
    use DataCommand as C;
    match cmd {
        C::CreateTable(a) => admin::create_table(a).await,
        C::Ls(a) => admin::ls(a).await,
        C::CreateFamily(a) => admin::create_family(a).await,
        C::SetGcPolicy(a) => admin::set_gc_policy(a).await,
        C::SetInMemory(a) => admin::set_in_memory(a).await,
        C::DeleteTable(a) => admin::delete_table(a).await,
        C::Tablets(a) => admin::tablets(a).await,
        C::Servers(a) => admin::servers(a).await,
        C::Split(a) => admin::split(a).await,
        C::Compact(a) => admin::compact(a).await,
        C::Status(a) => admin::status(a).await,
        C::Set(a) => data::set(a).await,
        C::Lookup(a) => data::lookup(a).await,
        C::Read(a) => data::read(a).await,
        C::Count(a) => data::count(a).await,
        C::DeleteRow(a) => data::delete_row(a).await,
    }
}
