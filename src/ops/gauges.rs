//! Metrics read from a role's status at each scrape.
//!
//! Gauges (tablets served, memtable bytes, lease remaining, servers alive, Raft term, ...)
//! are set from the status snapshot; counters that a component already keeps for its own
//! figures (the commit log's records, batches and fsyncs, the block cache's hits and
//! misses) are exported as they are (`absolute`), not counted a second time. Before the
//! role has started only `quarry_up 0` is set.

use lockservice::server::ReplicaView;
use master::MasterView;
use tablet::server::ServerView;

/// Sets gauge `name` to `v`.
fn set(name: &'static str, v: f64) {
    metrics::gauge!(name).set(v);
}

/// Sets counter `name` to the running total `v` kept elsewhere.
fn count(name: &'static str, v: u64) {
    metrics::counter!(name).absolute(v);
}

fn up(started: bool) {
    set("quarry_up", if started { 1.0 } else { 0.0 });
}

/// A tablet server's gauges.
pub fn tablet(view: Option<&ServerView>) {
    up(view.is_some());
    let Some(view) = view else { return };
    let s = view.status();
    set("quarry_serving", if s.serving { 1.0 } else { 0.0 });
    set(
        "quarry_lease_remaining_seconds",
        s.lease_remaining.as_secs_f64(),
    );
    set("quarry_tablets_served", s.tablets.len() as f64);
    let sum = |f: fn(&tablet::TabletStats) -> u64| -> f64 {
        s.tablets.iter().map(|t| f(&t.stats)).sum::<u64>() as f64
    };
    set("quarry_memtable_bytes", sum(|t| t.memtable_bytes));
    set("quarry_sstable_bytes", sum(|t| t.sst_bytes));
    set(
        "quarry_sstables",
        sum(|t| t.sstables_per_level.iter().sum::<usize>() as u64),
    );
    set("quarry_compactions_running", s.compactions_running as f64);
    count("quarry_commitlog_records_total", s.log.records);
    count("quarry_commitlog_batches_total", s.log.batches);
    count("quarry_commitlog_fsyncs_total", s.log.syncs);
    count("quarry_commitlog_bytes_total", s.log.bytes);
    set("quarry_commitlog_max_batch_records", s.log.max_batch as f64);
    count("quarry_block_cache_hits_total", s.cache_hits);
    count("quarry_block_cache_misses_total", s.cache_misses);
    set("quarry_block_cache_bytes", s.cache_used as f64);
    set("quarry_block_cache_capacity_bytes", s.cache_capacity as f64);
}

/// A master's gauges.
pub fn master(view: Option<&MasterView>) {
    up(view.is_some());
    let Some(view) = view else { return };
    let s = view.status();
    set("quarry_master_active", if s.active { 1.0 } else { 0.0 });
    set("quarry_master_lock_generation", s.lock_generation as f64);
    let Some(snap) = &s.snapshot else { return };
    set("quarry_master_servers_alive", snap.servers.len() as f64);
    set("quarry_master_tablets", snap.tablets.len() as f64);
    set("quarry_master_tablets_assigned", snap.assigned as f64);
    set("quarry_master_tablets_unassigned", snap.unassigned as f64);
    let root = if snap.root_unassigned { 0.0 } else { 1.0 };
    set("quarry_master_metadata_assigned", root);
    set("quarry_master_tables", snap.tables.len() as f64);
}

/// A lock replica's gauges.
pub fn lock(view: Option<&ReplicaView>) {
    up(view.is_some());
    let Some(view) = view else { return };
    let s = view.status();
    set("quarry_lock_raft_term", s.term as f64);
    set(
        "quarry_lock_is_leader",
        if s.leader == Some(s.id) { 1.0 } else { 0.0 },
    );
    set("quarry_lock_raft_applied_index", s.applied_index as f64);
    set("quarry_lock_raft_last_log_index", s.last_log_index as f64);
    set("quarry_lock_members", s.members.len() as f64);
    set("quarry_lock_sessions", s.sessions as f64);
    set("quarry_lock_locks_held", s.locks_held as f64);
}
