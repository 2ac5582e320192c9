//! What a running tablet server reports about itself, for status pages and metrics.
//!
//! [`run_observed`](super::run_observed) hands a [`ServerView`] to its caller once the
//! server has registered; [`ServerView::status`] then takes a snapshot of the server's
//! registration and lease, its commit log's counters (group commit: records per batch,
//! fsyncs), its block cache and every tablet it serves with the tablet's own
//! [`TabletStats`]. Taking it locks the tablet map for reading only; it never waits on a
//! split, an unload or a flush.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use crate::commitlog::CommitLogStats;
use crate::tablet::TabletStats;

/// One served tablet.
#[derive(Clone, Debug)]
pub struct TabletStatus {
    /// Tablet id.
    pub tablet_id: u64,
    /// Table name.
    pub table: String,
    /// First row (inclusive).
    pub start: Vec<u8>,
    /// End row (exclusive; empty: no end).
    pub end: Vec<u8>,
    /// Epoch it was loaded with.
    pub epoch: u64,
    /// True while a split or an unload holds it.
    pub busy: bool,
    /// The engine's counters and shape (SSTables per level, memtable bytes, ...).
    pub stats: TabletStats,
}

/// A tablet server's status at one instant.
#[derive(Clone, Debug)]
pub struct ServerStatus {
    /// Server id (`<name>-<session id>`).
    pub id: String,
    /// Address it advertises.
    pub addr: String,
    /// False once it stopped serving for good (lease lost or server file deleted).
    pub serving: bool,
    /// Time left on its local lease (zero once lapsed).
    pub lease_remaining: Duration,
    /// The newest master lock generation it has seen.
    pub master_generation: u64,
    /// Its commit log's counters.
    pub log: CommitLogStats,
    /// Block cache hits since start.
    pub cache_hits: u64,
    /// Block cache misses since start.
    pub cache_misses: u64,
    /// Block cache bytes in use.
    pub cache_used: u64,
    /// Block cache capacity in bytes.
    pub cache_capacity: u64,
    /// Merging or major compactions running in this process now.
    pub compactions_running: u64,
    /// Served tablets in tablet-id order.
    pub tablets: Vec<TabletStatus>,
}

/// A handle on a running tablet server's state (see the module docs).
#[derive(Clone)]
pub struct ServerView(pub(crate) Arc<Shared>);

impl ServerView {
    /// The server's status now.
    pub fn status(&self) -> ServerStatus {
        let s = &self.0;
        let loaded: Vec<_> = s.tablets.read().values().cloned().collect();
        let tablets = loaded
            .iter()
            .map(|l| TabletStatus {
                tablet_id: l.desc.tablet_id,
                table: l.desc.table.clone(),
                start: l.desc.start.clone(),
                end: l.desc.end.clone(),
                epoch: l.epoch,
                busy: l.busy.try_lock().is_err(),
                stats: l.tablet.stats(),
            })
            .collect();
        ServerStatus {
            id: s.id.clone(),
            addr: s.addr.clone(),
            serving: s.serving.load(Ordering::SeqCst),
            lease_remaining: s
                .session
                .lease_deadline()
                .saturating_duration_since(Instant::now()),
            master_generation: s.master_generation.load(Ordering::SeqCst),
            log: s.log.stats(),
            cache_hits: s.cache.hits(),
            cache_misses: s.cache.misses(),
            cache_used: s.cache.used_bytes(),
            cache_capacity: s.cache.capacity(),
            compactions_running: crate::compaction::running(),
            tablets,
        }
    }
}
