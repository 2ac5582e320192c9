//! What a master reports about itself, for status pages and metrics.
//!
//! The active master's [`View`](crate::view::View) lives behind the one-operation-at-a-time
//! `active` mutex, which a load or a split may hold for seconds. A status page must not
//! wait on it, so the control loop *publishes* a [`Snapshot`] of the view after each tick
//! ([`Ops::publish`]) and pages read the newest one. Beside it [`Ops`] keeps the last
//! [`RECENT_EVENTS`] notable actions (assignments, moves, splits, compactions it ordered,
//! garbage collection) for the page, and [`Ops::event`] also counts each kind as a
//! Prometheus counter (`quarry_master_<kind>s_total`, through the `metrics` facade).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use tablet::meta::TabletRecord;

use crate::master::{Active, Inner};

/// How many recent events a master keeps for its status page.
pub const RECENT_EVENTS: usize = 50;

/// A kind of notable master action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A tablet was loaded on a server (initial assignment, reassignment or move).
    Assignment,
    /// A balancing move (unload, then assignment elsewhere).
    Move,
    /// A split (asked by an operator, or reported by a tablet server).
    Split,
    /// Files deleted by a garbage-collection pass.
    GcDeletion,
    /// Tablets compacted on an operator's request (`CompactTable`).
    Compaction,
}

impl EventKind {
    /// Its name in metrics and on the page.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Assignment => "assignment",
            EventKind::Move => "move",
            EventKind::Split => "split",
            EventKind::GcDeletion => "gc_deletion",
            EventKind::Compaction => "compaction",
        }
    }
}

/// One recent action.
#[derive(Clone, Debug)]
pub struct Event {
    /// When (wall clock, for people).
    pub at: SystemTime,
    /// What kind.
    pub kind: EventKind,
    /// What happened, in words.
    pub what: String,
}

/// The active master's view at the end of a tick.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Live servers: id -> address.
    pub servers: BTreeMap<String, String>,
    /// Tablets served per live server (METADATA's tablet included).
    pub load: BTreeMap<String, usize>,
    /// Table names by id.
    pub tables: BTreeMap<u64, String>,
    /// METADATA's own tablet.
    pub root: Option<TabletRecord>,
    /// User tablets as METADATA records them.
    pub tablets: Vec<TabletRecord>,
    /// User tablets on a live server and not waiting for an assignment.
    pub assigned: usize,
    /// User tablets waiting for an assignment.
    pub unassigned: usize,
    /// METADATA's tablet waits for an assignment.
    pub root_unassigned: bool,
}

/// Status bookkeeping shared by the control loop and the status page.
#[derive(Default)]
pub struct Ops {
    snapshot: Mutex<Option<Arc<Snapshot>>>,
    events: Mutex<VecDeque<Event>>,
}

impl Ops {
    /// Publishes the view of `a` (called by the control loop after each tick).
    pub fn publish(&self, a: &Active) {
        let v = &a.view;
        let snap = Snapshot {
            servers: v
                .servers
                .iter()
                .map(|(id, s)| (id.clone(), s.info.addr.clone()))
                .collect(),
            load: v.load(),
            tables: v.tables.values().map(|t| (t.id, t.name.clone())).collect(),
            root: v.root.clone(),
            tablets: v.tablets.values().cloned().collect(),
            assigned: v
                .tablets
                .values()
                .filter(|r| v.servers.contains_key(&r.server_id))
                .filter(|r| !v.unassigned.contains(&r.tablet_id))
                .count(),
            unassigned: v.unassigned.len(),
            root_unassigned: v.root_unassigned,
        };
        *self.snapshot.lock() = Some(Arc::new(snap));
    }

    /// Records an action: counts it (`quarry_master_<kind>_total` += `n`) and keeps it for
    /// the status page.
    pub fn event(&self, kind: EventKind, n: u64, what: String) {
        let counter = match kind {
            EventKind::Assignment => metrics::counter!("quarry_master_assignments_total"),
            EventKind::Move => metrics::counter!("quarry_master_moves_total"),
            EventKind::Split => metrics::counter!("quarry_master_splits_total"),
            EventKind::GcDeletion => metrics::counter!("quarry_master_gc_deletions_total"),
            EventKind::Compaction => metrics::counter!("quarry_master_compactions_total"),
        };
        counter.increment(n);
        let mut ev = self.events.lock();
        if ev.len() == RECENT_EVENTS {
            ev.pop_front();
        }
        ev.push_back(Event {
            at: SystemTime::now(),
            kind,
            what,
        });
    }
}

/// A master's status at one instant.
#[derive(Clone, Debug)]
pub struct MasterStatus {
    /// This incarnation's id.
    pub id: String,
    /// Address it advertises.
    pub addr: String,
    /// True once it holds the master lock (and has taken over).
    pub active: bool,
    /// Generation of the master lock it holds (0: standby).
    pub lock_generation: u64,
    /// The newest published view (`None` on a standby, or before the first tick).
    pub snapshot: Option<Arc<Snapshot>>,
    /// Recent actions, oldest first.
    pub events: Vec<Event>,
}

/// A handle on a running master's state.
#[derive(Clone)]
pub struct MasterView(pub(crate) Arc<Inner>);

impl MasterView {
    /// The master's status now.
    pub fn status(&self) -> MasterStatus {
        let i = &self.0;
        let generation = i.lock_generation.load(Ordering::Acquire);
        MasterStatus {
            id: i.id.clone(),
            addr: i.cfg.advertise.clone(),
            active: generation != 0,
            lock_generation: generation,
            snapshot: i.ops.snapshot.lock().clone(),
            events: i.ops.events.lock().iter().cloned().collect(),
        }
    }

    /// The address the master lock's file names (the active master), read from the lock
    /// service.
    pub async fn lock_holder(&self) -> Option<String> {
        let (content, _) = self
            .0
            .client
            .read(tablet::meta::MASTER_LOCK_PATH)
            .await
            .ok()?;
        Some(String::from_utf8_lossy(&content).into_owned())
    }
}
