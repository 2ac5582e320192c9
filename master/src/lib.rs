//! # master: assignment of tablets to tablet servers (Bigtable section 5.2)
//!
//! The master decides which tablet server serves which tablet, and nothing else: it is
//! never on the data path, keeps no state of its own (assignments live in METADATA and the
//! lock service), and any standby can take over by reading them back.
//!
//! ## Election and take-over ([`master`], [`recover`])
//! Every master process opens a lock-service session and blocks in `acquire` on
//! `/quarry/master`. The holder writes its address there, fenced with its sequencer
//! (clients find the admin API through it), then rebuilds its view:
//! 1. lists `/quarry/servers/` (one file per tablet server, each locked by its server);
//! 2. asks every server `ListTablets` (before the METADATA scan, so a split that finishes in
//!    between shows as a tablet missing from a report, never as an unknown one);
//! 3. makes sure METADATA's tablet is served (its location is `/quarry/root-tablet`; if its
//!    server is gone or does not report it at the recorded epoch, it is assigned anew);
//! 4. scans METADATA and compares ([`policy::reconcile`]): tablets on a live server that
//!    reports them are served; tablets on no live server are unassigned; tablets a live
//!    server does not report are reassigned only if still missing one scan period later
//!    (a load or a split may be under way); copies a server holds that METADATA gives to
//!    no one (or to another server, or at an older epoch) are unloaded;
//! 5. repairs what a crash left half done ([`recover`], [`tables`]).
//!
//! The control loop then ticks: refresh the server list, detect failures, reconcile every
//! `scan_every`, assign unassigned tablets to the least-loaded server
//! ([`policy::plan_assignments`]), and every `balance_every` move at most `max_moves`
//! tablets from the most to the least loaded server ([`policy::plan_moves`]).
//!
//! ## Assignment and epochs ([`assign`])
//! Assigning tablet `T` to server `S`: write `T`'s METADATA record with `S` and epoch
//! `e + 1` (fenced), then `LoadTablet{T, e + 1, master sequencer}` on `S`. METADATA is
//! written before the load, so each assignment's epoch is above every earlier load, which
//! the tablet engine uses to seal the logs of the previous owner (DESIGN.md rule 7). A move
//! first `UnloadTablet`s on the old server (which flushes, so the new owner replays
//! nothing) and then assigns. `create` is set on a load only when the tablet's directory
//! under the data root holds no manifest yet: a tablet that existed is never silently
//! recreated empty.
//!
//! ## Safety (DESIGN.md rules 4 and 6)
//! - Failure detection: for each server the master `try_acquire`s the lock on its file.
//!   Success proves the server's session expired and its lock-delay passed, so the server
//!   has stopped serving (its local lease ran out first). Only then does the master delete
//!   the file (fenced) and reassign the server's tablets.
//! - A tablet is never handed to a second server while the first may still serve it.
//!   Loads and unloads name the server *incarnation* they are for (`server_id`): a process
//!   restarted on a dead incarnation's address refuses them (`wrong-server`), or it would
//!   serve a tablet the master believes the dead incarnation holds and will reassign once
//!   it reclaims that incarnation's lock (found by `quarry chaos --scenario soak`: two
//!   servers served one tablet for 0.39 s). And a tablet its live recorded server does not
//!   report (a timed-out LoadTablet, a slow replay) is reassigned only after that server
//!   answered an `UnloadTablet` with `fence_epoch` = the recorded epoch, which makes every
//!   load at or below it still under way there fail instead of serving; until it answers
//!   the tablet is held ([`recover`]). Tested in `master/tests/load_fencing.rs`.
//! - Every command carries the master's sequencer: `LoadTablet`, `UnloadTablet`,
//!   `SplitTablet`, METADATA writes (checked by the serving tablet server), and its
//!   lock-service writes (`write`/`delete` with a fence, the id counter by compare-and-set
//!   plus fence). A deposed master's commands are rejected where they land.
//! - The master checks its local lease before every command ([`master::Inner::guard`]) and
//!   races its whole body against `Session::lost()`: when the session is lost, the work in
//!   flight is dropped and [`run`] returns [`Error::LostMastership`]; `quarry master` then
//!   exits with status 2.
//!
//! ## Tables ([`tables`])
//! Ids come from the counter `/quarry/next-id`. Create: allocate ids, write
//! `/quarry/tables/<name>` (JSON `TableInfo`), write one METADATA row per tablet in key
//! order with the unbounded last tablet last, then assign (`create` loads). Delete: remove
//! the table file, unload the tablets, delete the rows. Schema changes (families, GC
//! policies, locality groups) rewrite the table file and then unload and reload each
//! served tablet with the new schema at a new epoch (a brief unavailability per tablet,
//! one at a time) rather than adding a schema RPC to the tablet server.
//!
//! ## Repairs after a crash
//! - rows of a table with no table file (an interrupted delete): finish the delete;
//! - a table with no rows, or whose rows end before an unbounded last tablet (an
//!   interrupted create): add the missing last tablet `[last end, "")`;
//! - a half-committed split (the left child's row `[start, mid)` written, the parent's row
//!   still `[start, end)`): roll back by deleting the left child's row, but only once the
//!   parent's server is dead (its sequencer is then stale, so it cannot complete the split
//!   behind the master's back); the parent's files are untouched by a split;
//! - any other hole or overlap is logged as an error and left for an operator.
//!
//! ## Garbage collection ([`gc`])
//! Under a tablet server no tablet deletes a file: a paused old owner must never remove
//! files its tablet's new owner uses. The master deletes what no tablet that might still be
//! loaded or recovered can ever need; each tablet server trims its own commit log.
//!
//! What a tablet can ever need is named by the **newest manifest** of its directory (the one
//! a loader picks: highest epoch, then number): its SSTables, and the logs it would replay
//! (its log references and seals). Older manifests and those a deposed owner writes later at
//! a lower epoch are never loaded, so they protect nothing. Tablets that may still be loaded
//! are those METADATA has a row for, plus METADATA's own tablet; a directory METADATA does
//! not name is a split parent after the split committed, a split child before it commits
//! (or after a rolled-back split), or a tablet of a deleted table.
//!
//! One pass, in this order: (1) list `tables/` and `logs/` under the data root; (2) scan
//! METADATA and read the root-tablet, table and server files; (3) read the newest manifest
//! of every listed tablet directory. A **candidate** is then: a tablet directory METADATA
//! does not name; an SSTable no manifest of a surviving directory names; the log directory
//! `logs/<id>` of a server with no file in `/quarry/servers/` that no surviving manifest
//! names. A candidate is deleted only when it was a candidate in an earlier pass and in
//! every pass since, and was first seen at least `gc_min_age` ago (default 10 minutes).
//! Why that suffices:
//! - *Split children share the parent's SSTables*: each child's manifest lists them (clipped),
//!   so they stay until no manifest of any child (or of the parent, while it lives) lists
//!   them; the parent's directory dies on its own (its manifests go first), never its files.
//! - *A compaction still reading its inputs* after publishing its output: readers hold open
//!   file handles, which keep an unlinked file readable; and the inputs wait `gc_min_age`.
//! - *A file newer than the scan*: files are listed before manifests are read, so only files
//!   that existed at the listing are candidates; one written but not yet in a manifest (a
//!   flush or compaction between its fsync and its manifest edit) becomes referenced within
//!   milliseconds, long before `gc_min_age`, and a file referenced in any pass loses its
//!   candidacy. Likewise a split child's directory exists before its METADATA row; a server
//!   that has not committed within `gc_min_age` (longer than a session lease) has lost its
//!   session, so its fenced METADATA write is rejected and the child can never be loaded.
//! - *A dead server's log not yet replayed*: a server writes its log into a tablet's manifest
//!   (a log reference) before serving the tablet, and that reference stays in every manifest
//!   until a later owner has replayed the log up to its seals and flushed the result into
//!   SSTables (`forget_old_logs` in the tablet crate). So while some tablet may still need a
//!   dead log, its newest manifest names it. A server's log directory is created only after
//!   its server file, so a listed log whose server file is gone belongs to a dead server.
//! - *The live servers' logs*: never touched by the master. Each server deletes its own
//!   segments below the lowest position of its log that the newest manifest of any tablet it
//!   ever loaded still names (`tablet::server` module `log_gc`).
//! - *Deleted tables*: their tablet directories are dead once the rows are gone; the
//!   manifests go first, then the SSTables (candidates of later passes), then the empty
//!   directories, and `tables/<id>` once empty and neither a table file nor a row names it.
//! - *A crash part way*: every deletion is idempotent and ordered so that no manifest of a
//!   surviving tablet ever names a deleted file; what is left is found by the next pass. A
//!   new master starts with no suspects, which only delays deletions.
//!
//! Deleting needs the master's lease to be valid just before ([`master::Inner::guard`]).
//!
//! ## Implementation caveats
//! - One operation at a time: admin calls and the control loop share one lock, held across
//!   tablet-server calls (bounded by `rpc_timeout` / `load_timeout`).
//! - A server whose file disappears without the master deleting it (an operator removed
//!   it) is treated as gone at once; the server is trusted to notice and stop within its
//!   lease (DESIGN.md rule 5).
//! - Unloads of stale copies and of deleted tables' tablets are best effort; a copy that
//!   survives is found and unloaded at the next reconciliation.
//! - Garbage collection trusts that nothing pauses longer than `gc_min_age` between writing
//!   an SSTable and naming it in a manifest: a tablet server stopped for that long in exactly
//!   that window, woken before its tablet's next owner loads, could publish a manifest naming
//!   a deleted file (the next load then fails with an I/O error; it reads no wrong data).
//!   Manifest writes are not fenced, so nothing stronger is available without a tablet-side
//!   check. A corrupt manifest stops every pass (its references are unknown).
//! - The master reads manifests and lists files in the shared data root directly (as it
//!   already does to decide `create`), rather than asking tablet servers.
//! - No status page or metrics yet; `Status` over gRPC only.
//! - `SplitTablet` is forwarded to the tablet server (which allocates nothing: the master
//!   passes the children's ids). After any split commits in METADATA the tablet server
//!   tells the master (`MasterNotify.SplitDone` in tablet.proto, served beside the admin
//!   API); the master only sets a flag that makes its next tick rescan METADATA, so a
//!   notification carries no authority and needs no fence, and a lost one is repaired by
//!   the periodic scan. Both paths, crashes at every split step and the repair of real
//!   half-done splits are exercised by `tests/cluster_split.rs`.
//! - The multi-process test covers kill -9 of a tablet server and of the master, and a
//!   SIGSTOPped master that exits on resume; that its commands in flight during the pause
//!   are rejected relies on the tablet server's sequencer check and is not tested here.
//! - Balancing counts tablets only (no sizes or load).

#![warn(missing_docs)]

pub mod assign;
pub mod conns;
pub mod convert;
pub mod error;
pub mod gc;
pub mod master;
pub mod metadata;
pub mod ns;
pub mod policy;
pub mod recover;
pub mod service;
pub mod status;
pub mod tables;
pub mod view;

/// Generated protobuf and gRPC types (master/proto/master.proto).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("quarry.master.v1");
}

/// The tablet server's protocol (`tablet::pb`), as the master uses it.
pub use tablet::pb as tpb;

pub use error::{Error, Result};
pub use master::{run, run_observed, MasterConfig};
pub use status::{MasterStatus, MasterView};
