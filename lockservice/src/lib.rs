//! # lockservice: Quarry's Chubby
//!
//! A small Raft-replicated service that the master and tablet servers use to agree on who
//! is who: a namespace of small files and directories, sessions kept alive by KeepAlives,
//! exclusive and shared locks whose acquisitions carry strictly increasing generations
//! (sequencers, i.e. fencing tokens), lock-delay, ephemeral nodes and watches. It follows
//! Burrows, *The Chubby lock service* (OSDI 2006), sections 2.4 (sequencers, lock-delay),
//! 2.8 (sessions and KeepAlives) and 2.9 (fail-overs), on Raft (openraft `=0.9.25`).
//!
//! ## Parts
//!
//! | module | what |
//! |---|---|
//! | [`state`] | the deterministic state machine: `apply(Command) -> (Result, Events)` |
//! | [`lease`] | the leader's in-memory session and lock-delay deadlines |
//! | [`clock`] | monotonic time behind a trait (real, skewed, manual) |
//! | [`raft`] | log store (record log + fsync), state-machine store and snapshots, transport |
//! | [`server`] | a replica: Raft node, lease timers, the `Lock` and `Raft` gRPC services |
//! | [`client`] | sessions with a KeepAlive thread and a local lease, files, locks, watches |
//! | [`wire`] | protobuf conversions and the error ↔ gRPC status mapping |
//!
//! ## Protocol
//!
//! Every change is a [`state::Command`] proposed through Raft and answered after it is
//! committed (appended and **fsynced on a majority**) and applied on the leader. Every
//! read waits on a ReadIndex barrier (`Raft::ensure_linearizable`, batched across
//! concurrent callers, a round only counting for callers that arrived before it started),
//! then reads the applied state: never a plain local read on a possibly stale leader.
//! Followers answer `NotLeader { leader }` and clients redirect.
//!
//! ## Time, made deterministic
//!
//! `apply` never reads a clock. Time enters only as commands that the leader proposes from
//! its own timers, and as in-memory deadlines that no replica shares:
//!
//! 1. KeepAlives are **not** log entries (thousands of sessions would flood the log). The
//!    leader notes, in memory, when it *received* each KeepAlive (`t_r`), by its monotonic
//!    [`clock::Clock`].
//! 2. Before answering a KeepAlive the leader passes the ReadIndex barrier *started after
//!    `t_r`*: it confirms with a majority that it is still the leader and applies every
//!    committed entry. It then checks that the session still exists in the applied state
//!    and that it has not itself proposed the session's expiry, and only then extends the
//!    session's deadline to `max(old, t_r + lease)` and answers with `lease`.
//! 3. When a deadline passes by the leader's clock, the leader proposes
//!    `ExpireSession { id }`; `apply` releases the session's locks into lock-delay and
//!    deletes its ephemeral nodes. Lock-delays end the same way: the leader proposes
//!    `EndLockDelay { path, generation }` a lock-delay after applying the expiry. An
//!    explicit release (or session close) frees a lock at once.
//! 4. Every replica stamps sessions and lock-delays with its own clock when it applies
//!    them. A replica that becomes leader first restarts **every** session lease and
//!    every lock-delay at its current time (Chubby 2.9), before it proposes any expiry.
//! 5. The client sets its local lease to `t_s + lease·(1 − drift) − gap`, where `t_s` is
//!    when it *sent* the KeepAlive (defaults: drift 1%, gap 50 ms).
//! 6. A client keeps all its sessions alive with one `KeepAliveMany` per interval (Chubby
//!    sends one KeepAlive per client): the leader takes one `t_r` for the request, passes
//!    one barrier round started after `t_r`, and then treats each session as in 2 (the
//!    answer lists the sessions it did not extend). Concurrent KeepAlives and reads share
//!    barrier rounds, but a caller only uses a round that started after it arrived.
//!
//! **Safety argument.** Claim: while a client believes its lease valid, no replica has
//! applied its expiry. Its belief rests on a KeepAlive sent at `t_s` and answered by a
//! leader L that received it at `t_r ≥ t_s` (same real time order; only durations are
//! compared across machines, with drift ≤ 1% covered by the margin). (a) L itself proposes
//! the expiry no earlier than `t_r + lease` by its clock, which is at or after the client's
//! `t_s + lease·(1−drift) − gap`. (b) A later leader L' was elected after L's barrier round
//! confirmed L's leadership (a majority acknowledged L's term after `t_r`; L' needs a
//! majority of votes in a higher term, and the two majorities intersect), so L' starts the
//! session afresh at its election, after `t_r`, and cannot expire it before
//! `election + lease > t_r + lease`. (c) An `ExpireSession` that an older leader appended
//! but had not committed before L's barrier is committed, if ever, at or before L' applies
//! it — and L's barrier applies everything committed before the round, so L would have
//! answered `SessionExpired` instead; an expiry proposed by L itself marks the session, and
//! L answers no later KeepAlive for it. Hence every expiry the client can meet comes after
//! its local lease ran out.
//!
//! *Batched and coalesced KeepAlives keep this argument.* It uses, per session, only
//! that (i) `t_r` was taken before the barrier round began, (ii) that round confirmed L's
//! leadership with a majority and applied everything committed before it began, and
//! (iii) the session was live and not being expired by L after the round. With one
//! `KeepAliveMany` all sessions share `t_r` and the round, and (i)-(iii) hold for each of
//! them exactly as for a lone KeepAlive; a round shared with other callers is one that
//! started after each of them arrived ([`server`]'s barrier never hands a caller a round
//! already running when it came), so (i) holds for every sharer. A KeepAlive answered by
//! a deposed leader L: its round confirmed L after `t_r`, so any leader L' that could have
//! ended the session was elected after `t_r` and restarted the lease at its election; if
//! L' was elected *before* the round, the round could not have gathered a majority for
//! L's term (the voters of L' refuse it) and L answers `NotLeader`, not a lease. The
//! client dates the lease from its own send time `t_s ≤ t_r`, so hedged attempts (the
//! same request sent again to another replica) only make it more conservative.
//! Lock-delay adds a further full delay (restarted at each
//! failover) before anyone else can take the expired holder's locks. Sequencers close the
//! remaining gap (a holder paused between checking its lease and acting): generations come
//! from one counter that only grows, and `CheckSequencer` or a fenced write refuses any
//! holding that is no longer current.
//!
//! ## Defaults
//!
//! Session lease 3 s, KeepAlive every lease/3 (one request per client for all its
//! sessions), client drift margin 1% and safety gap
//! 50 ms, grace period one lease, lock-delay 1 s, Raft heartbeat 40 ms (openraft sends
//! one per tick, every 1.5 heartbeats: 60 ms), replica `k`'s
//! election timeout drawn from `[80 + 40k, 120 + 40k)` ms (disjoint windows: openraft
//! 0.9 draws the timeout once per process, so equal windows could tie for ever; after it
//! has seen a leader, openraft also waits its leader lease, the window's end, so replica
//! 1 of 3 starts an election 280-320 ms after the last heartbeat, or 240 ms later still
//! if it ever saw a longer log than its own), and the failure detector
//! ([`server::elect`]) of replica `k` of 3 campaigns after `80 + 40·(4 + k)` ms without
//! a heartbeat (280, 320 and 360 ms for replicas 1-3); a
//! snapshot every 5000 entries keeping 1000 entries behind it, content ≤ 256 KiB, path
//! ≤ 1024 bytes, client messages ≤ 256 KiB + 17 KiB, Raft messages ≤ 64 MiB.
//!
//! ## Invariants (tested)
//!
//! - `apply` is deterministic and a failed command changes nothing and emits no event
//!   (`state::tests`); the tree, lock and session cross-references stay consistent after
//!   every command of a 3000-step random run, also across a serde round trip.
//! - Generations strictly increase across all locks, deletes and re-creates.
//! - A session is never expired before a lease after its last KeepAlive, nor before a
//!   full lease after a new leader took over; an expired holder's lock is unavailable
//!   for a full lock-delay (`lease::tests`, `tests/group.rs`, `tests/lock_pause.rs`).
//! - Acknowledged writes survive kill -9 of the leader and of every replica
//!   (`tests/lock_failover.rs`).
//! - Under a seeded simulation (`tests/sim.rs`, R2; 200 seeds per run, `QUARRY_SIM_SEEDS`,
//!   a failing seed prints `QUARRY_SIM_SEED=<n>` to replay it): 3 replicas on the real log
//!   and state-machine stores over `FaultFs`, a simulated network (loss, duplicates, delay
//!   and reordering, cuts, one-way cuts, leader isolation) and power-cut crashes, all under
//!   tokio's paused clock. Checked: replicas apply the same events at the same index, equal
//!   state machines after healing, per-file linearizability with the `checker` crate
//!   (a final read after healing exposes a lost acknowledged write), exclusive lock
//!   holders never overlap and generations increase. It found that the Raft log's
//!   directory was never fsynced into its parent (seed 1; fixed in `LogStore::open`).
//!
//! ## Implementation caveats
//!
//! - The simulation's limits: clients reach the leader outside the simulated network,
//!   lease timers do not run (no session expiry under simulation), and lock operations are
//!   checked by intervals and generations rather than a linearizability model. It reports
//!   but does not fail on two leaders in one term: openraft 0.9's default leader id is
//!   (term, node id), so two candidates can both win a term with different ids; Raft's
//!   log-matching safety is what the other checks verify.
//! - Blocking acquire is a retry loop woken by lock events: no FIFO fairness among
//!   waiters.
//! - A watch stream is served by one replica from its applied events; it ends (with an
//!   error) when that replica fails, the watcher lags by more than 4096 entries, or a
//!   snapshot is installed under it (no event for that yet); there is no resume token.
//!   Session jeopardy/safe/expired come from [`client::Session::state_changes`], not from
//!   the watch stream.
//! - The state machine lives in memory; snapshots are whole copies (fine for a lock
//!   service's size, not for large namespaces). The Raft log is kept in memory from the
//!   last purge point and rewritten compactly when dead records dominate.
//! - `append` writes and fsyncs before it returns. A writer thread that fsyncs once per
//!   batch and calls the flush callback later cannot help in openraft 0.9: its core
//!   (`RaftCore::append_to_log`) awaits that callback before it does anything else, so
//!   appends stay one at a time either way (a writer thread was tried twice and backed
//!   out; it only added a hop). The same await would make a Raft write wait for two
//!   fsyncs in a row, the leader's and then a follower's, because openraft's replication
//!   starts only after the leader's own append returns, where etcd writes its WAL while
//!   the followers write theirs. [`raft::followers`] removes that wait: the leader's log
//!   store sends a follower that is caught up the new entries at once (the AppendEntries
//!   that replication would send next), and when replication then sends that request,
//!   the network uses the early copy's `Success` instead of sending it again. The two
//!   fsyncs overlap, and the leader still counts itself only after its own (the safety
//!   argument is in that module; the simulation runs it under loss, duplication and
//!   crashes). Two things shorten each fsync: the log file is preallocated
//!   (records overwrite zeros, so an fdatasync flushes no metadata; see
//!   [`raft::log_store`]), and `quarry lock-server` runs on one runtime thread while the
//!   log's writes and fsyncs (and snapshot files and log rewrites) go to tokio's blocking
//!   pool, so gRPC, heartbeats and replication keep that thread during an fsync and no
//!   Raft step waits for a wake-up on another core. A follower's appends are the
//!   exception: they fsync on that thread, since the follower's core waits for them
//!   before it answers anything and the answer is the leader's critical path
//!   ([`raft::log_store::LogStore::io_off_runtime`]). A stall of the leader's thread longer than
//!   the followers' failure detector would depose a healthy leader, and the new leader
//!   restarts every lease: nothing slow may run on it. The leader's own log fsync is the
//!   stall left: openraft's core sends no heartbeat while it waits for it, so a
//!   leader whose fsyncs took 300 ms lost its term (100 ms did not; measured in
//!   benches/RESULTS.md). [`server::stall`] covers it: while an append of the leader has
//!   run for a heartbeat interval, each follower is sent again, once per interval, the
//!   last AppendEntries it accepted without its entries (a duplicate, which Raft allows,
//!   and which does what a heartbeat does), for at most one second; a disk that hangs
//!   longer is a failed leader and the followers elect another (tests/lock_slow_disk.rs:
//!   600 ms fsyncs keep the term; a hung disk is replaced after about 1.4 s). A frozen or
//!   killed leader sends nothing, so failover stays at about 0.3 s. Not covered: the
//!   core's other fsyncs (a vote, a purge, a truncation), and an append that moves the
//!   log to a new file (about five syncs) on a disk slow enough to take more than the
//!   second; such a leader still loses its term. Group commit happens
//!   one layer up, in
//!   [`server::proposer`]: at most two proposals are in flight and the commands that queue
//!   behind them go as one [`state::Command::Batch`] entry, applied command by command.
//!   With 8 clients on 8 locks this took the group from about 1,400 to about 1,850
//!   acquire+release cycles/s (interleaved runs of the two builds, same machine).
//! - The lock server accepts its own sockets (to bind before serving), and tonic ignores
//!   `Server::tcp_nodelay` for those; TCP_NODELAY is set on each accepted socket. Before
//!   that, replies written in two pieces waited 40 ms for the peer's delayed ACK (Nagle):
//!   the 8-client p99 was 44-46 ms, 6-10 ms after; the proposer's extra hop made 1% of
//!   single-client operations hit it too (p99 45 ms, 3.5 ms after).
//! - An RPC to a peer that runs out of time is an openraft `Timeout` (sent again at the
//!   next chance), not `Unreachable` (which pauses replication to that peer for the
//!   network's backoff): see [`raft::network`].
//! - openraft restores a replica whose persisted vote is its own committed vote as
//!   leader on restart, without a new no-op entry and with its commit index known only
//!   up to its last applied entry: its ReadIndex could miss entries committed before the
//!   restart (the snapshot test caught a stale read this way). The read barrier therefore
//!   also waits until the leader's whole log, as of the round's start, is applied. The
//!   commit index is not persisted (`save_committed` is not implemented). Since early
//!   replication, a replica never resumes its old term at all (its log store reads its own
//!   committed vote back uncommitted; why in [`raft::followers`]); the barrier keeps its
//!   wait as a second guard.
//! - Non-idempotent client requests (create, write, delete, release, close) are retried
//!   only after failures that prove they were not sent; an ambiguous failure is returned
//!   to the caller, who must re-read.
//! - No ACLs, no TLS, no metrics endpoint yet; membership changes (`AddReplica`,
//!   `RemoveReplica`) are plumbed through but not covered by a test.
//! - Every replica must run with the same lease and lock-delay: the argument above
//!   assumes a later leader's lease is not shorter than the one its predecessor granted.
//!   Each Raft request carries the sender's lease and lock-delay in a header and a
//!   replica refuses a peer whose configuration differs ([`raft::network`],
//!   `tests/lock_lease_config.rs`): a misconfigured replica cannot vote, lead or take
//!   entries, and says why in its log. Clients learn the lease from every KeepAlive
//!   answer; the lock-delay is not sent to them.
//! - The benchmark is `quarry bench lock` (`--target quarry|etcd`; acquire+release
//!   latency and throughput, holder death, leader kill and freeze, many sessions' CPU);
//!   `benches/compare_etcd.sh` runs it against both services in one run and
//!   benches/RESULTS.md holds the figures.
//! - Clients hedge idempotent requests: an attempt unanswered after 300 ms stays in
//!   flight while the next replica is asked too, and no second attempt goes to a replica
//!   still being waited on ([`client::Conn`]): a frozen leader would otherwise hold every
//!   request, and KeepAlives, until the whole request timeout, and abandoning the attempt
//!   (tried) lost the answers of a leader that was only slow.
//! - Failover timing (leader kill -9 or SIGSTOP → next successful lock, `quarry bench
//!   lock`) rests on the failure detector, not on openraft's election timer alone: that
//!   timer adds `2 × election_timeout_max` for as long as a replica once saw a longer log
//!   than its own (often since the start-up election), which made failovers take 1.3-1.9 s.
//!   The simulation (`tests/sim.rs`) builds its replicas without the detector.

#![warn(missing_docs)]

pub mod bind;
pub mod client;
pub mod clock;
pub mod error;
pub mod lease;
/// Generated protobuf and gRPC types (lockservice/proto/lock.proto).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("quarry.lock.v1");
}
pub mod raft;
pub mod rpc_metrics;
pub mod server;
pub mod state;
pub mod wire;

pub use error::{Error, Result};
