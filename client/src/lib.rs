//! # client: talking to a Quarry cluster
//!
//! ```no_run
//! # async fn f() -> client::Result<()> {
//! use client::{Client, ClientConfig};
//! use tablet::{Mutation, ReadFilter, RowRange};
//! let c = Client::new(ClientConfig::from_addr_list("127.0.0.1:7101,127.0.0.1:7102")?)?;
//! c.mutate_row("users", b"alice", vec![Mutation::set("info", b"email", 1, b"a@x")]).await?;
//! let row = c.read_row("users", b"alice", &ReadFilter::latest()).await?;
//! let rows = c.read_rows("users", RowRange::all(), &ReadFilter::latest(), 100).collect_rows().await?;
//! # Ok(()) }
//! ```
//!
//! The library finds data the way Bigtable clients do (DESIGN.md section 4), and never puts
//! the master on the data path:
//!
//! 1. **Where is METADATA?** The lock-service file `/quarry/root-tablet` holds the record of
//!    METADATA's one tablet, including its server's address.
//! 2. **Where is row `r` of table `t`?** Table names map to ids through `/quarry/tables/<t>`.
//!    The tablet holding `r` is the first METADATA row at or after `lookup_key(t, r)` (rows
//!    are keyed by table id and *end* row). A lookup reads a few following rows too and
//!    caches every assigned tablet it sees ([`cache`]).
//! 3. **Ask that server**, naming the tablet id. A server that does not serve the tablet
//!    (moved, split, lease lapsed) answers `not-serving`, a row outside the tablet
//!    `wrong-range`; the client drops the cached entry and looks again.
//!
//! ## Retries and the outcome of non-idempotent operations
//! Each failed attempt is classified ([`retry`]) by whether the server may have applied it
//! and whether to look the location up again. Idempotent operations (reads, scans, and
//! mutations whose every cell carries an explicit timestamp) are retried with exponential
//! backoff and full jitter until the operation deadline, across server failover.
//! Non-idempotent ones (increment, append, check-and-mutate, a cell with the server's
//! timestamp) are retried only when the request provably never took effect (connection
//! refused, `wrong-range`); otherwise the caller gets [`Error::OutcomeUnknown`] and must
//! read the row to learn what happened. The servers do not deduplicate by request id, so
//! this is the only safe answer (RELIABILITY.md T8).
//!
//! ## Scans
//! [`Client::read_rows`] streams rows of a range across tablet boundaries ([`scan`]): it
//! resumes after the last row returned when a tablet read fails, so it neither repeats nor
//! skips rows, and counts a row limit over the whole scan.
//!
//! ## Batches
//! [`Client::mutate_rows`] groups entries by tablet, sends one `MutateRows` per tablet
//! concurrently, retries each failed entry by its own idempotence, and returns one result
//! per entry. [`Client::read_rows_by_key`] reads many single rows the same way: one
//! `ReadRows` naming all of a tablet's keys per tablet, concurrently. A
//! [`BufferedMutator`] (HBase's name; Cloud Bigtable's bulk-mutation batcher) gathers rows
//! per tablet and sends a tablet's rows once it holds a full request's worth ([`buffered`]),
//! so writes scattered over many tablets still go as large requests.
//!
//! ## Admin
//! Table, family, tablet, server, split, compaction and status requests go to the master
//! whose address is the content of `/quarry/master` (module `admin`).
//!
//! ## Implementation caveats
//! - No request ids: a lost reply to a non-idempotent operation is reported, not resolved.
//! - A `not-serving` answer is treated as "may have been applied" (the server may have
//!   found its lease lapsed after the work) unless the server vouches otherwise with the
//!   status metadata `quarry-outcome=none` ([`retry::OUTCOME_KEY`]), which tablet servers
//!   send for requests refused before any work (tablet not loaded here, wrong range), so
//!   a non-idempotent operation racing a tablet move is retried safely.
//! - Locations are cached until they fail; a table deleted and recreated under the same
//!   name is noticed when its old tablets answer `not-serving`.
//! - Channels to servers are kept for the client's lifetime (no idle eviction).

#![warn(missing_docs)]

mod admin;
pub mod buffered;
pub mod cache;
mod client;
pub mod convert;
mod data;
pub mod error;
mod multiget;
pub mod retry;
pub mod scan;

/// The tablet server's protobuf types.
pub use tablet::pb;

/// The master's protobuf types (admin requests and answers).
pub use master::pb as admin_pb;

pub use admin::{ColumnFamily, FamilyModification, ServerInfo, StatusResponse, Table, TabletInfo};
pub use buffered::BufferedMutator;
pub use cache::Location;
pub use client::{Client, ClientConfig, MAX_MESSAGE_BYTES};
pub use data::{RowKeySample, RowMutation};
pub use error::{Error, Result};
pub use scan::{prefix_range, RowStream};
pub use tablet::{Cell, GcPolicy, Mutation, ReadFilter, ReadModifyWrite, Row, RowRange};
