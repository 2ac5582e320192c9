//! The active master's in-memory picture of the cluster, rebuilt from the lock service,
//! METADATA and the tablet servers on take-over (nothing here is the source of truth).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use tablet::meta::{ServerInfo, TableInfo, TabletRecord};
use tablet::TabletId;

/// A tablet server with a file in `/quarry/servers/`.
#[derive(Clone, Debug)]
pub struct Server {
    /// Its file's content.
    pub info: ServerInfo,
    /// Its file's path.
    pub path: String,
    /// When this master first saw the file.
    pub first_seen: Instant,
    /// Generation of the newest acquisition of its lock (0: the server has not locked it
    /// yet).
    pub lock_generation: u64,
}

/// What the active master believes.
#[derive(Debug, Default)]
pub struct View {
    /// Live-looking servers by id (their file exists and no failure was proven).
    pub servers: BTreeMap<String, Server>,
    /// Tables by name.
    pub tables: BTreeMap<String, TableInfo>,
    /// METADATA's tablet (from the root-tablet file).
    pub root: Option<TabletRecord>,
    /// User tablets by id, as METADATA records them.
    pub tablets: BTreeMap<TabletId, TabletRecord>,
    /// Tablets known to need an assignment.
    pub unassigned: BTreeSet<TabletId>,
    /// METADATA's tablet needs an assignment.
    pub root_unassigned: bool,
}

impl View {
    /// Tablet counts of every live server (METADATA's tablet included).
    pub fn load(&self) -> BTreeMap<String, usize> {
        let mut load: BTreeMap<String, usize> =
            self.servers.keys().map(|s| (s.clone(), 0)).collect();
        let recs = self.tablets.values().chain(self.root.iter());
        for r in recs {
            if let Some(n) = load.get_mut(&r.server_id) {
                *n += 1;
            }
        }
        load
    }

    /// The table with id `id`.
    pub fn table_by_id(&self, id: u64) -> Option<&TableInfo> {
        self.tables.values().find(|t| t.id == id)
    }

    /// Tablets of table `id` in row order.
    pub fn tablets_of(&self, id: u64) -> Vec<TabletRecord> {
        let mut v: Vec<TabletRecord> = self
            .tablets
            .values()
            .filter(|r| r.table_id == id)
            .cloned()
            .collect();
        v.sort_by_key(|r| r.key());
        v
    }

    /// Marks every tablet recorded on a server that is not live as unassigned.
    pub fn mark_orphans(&mut self) {
        for r in self.tablets.values() {
            if !self.servers.contains_key(&r.server_id) {
                self.unassigned.insert(r.tablet_id);
            }
        }
        if let Some(r) = &self.root {
            if !self.servers.contains_key(&r.server_id) {
                self.root_unassigned = true;
            }
        } else {
            self.root_unassigned = true;
        }
    }
}
