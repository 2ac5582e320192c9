//! The state machine store: committed entries in, replies, events and snapshots out.
//!
//! Applying an entry runs [`LockState::apply`] (deterministic), then, outside it, stamps
//! the entry's events with this replica's clock for the [`LeaseTable`] and publishes them
//! to watchers. The state is in memory; durability comes from the Raft log plus snapshots.
//!
//! ## Snapshot file
//!
//! `<data>/snapshot`, replaced atomically (write to `.tmp`, fsync, rename, fsync the
//! directory). The same bytes are what a leader sends to a lagging follower. Format
//! (docs/format/lock-snapshot.md):
//!
//! ```text
//! magic:   [u8; 8] = "QRYLKSNP"   // DO NOT CHANGE: written to disk
//! version: u32 LE  = 1            // DO NOT CHANGE: written to disk
//! length:  u64 LE                 // payload length, <= MAX_SNAPSHOT
//! crc:     u32 LE                 // CRC32 (crc32fast) of the payload
//! payload: [u8; length]           // postcard of SnapshotFile { meta, state }
//! ```

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use sstable::Fs;
use tokio::sync::broadcast;

use super::{decode, encode, Entry, NodeId, TypeConfig};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::lease::LeaseTable;
use crate::state::{Applied, Event, LockState, Reply};

/// Snapshot file magic. DO NOT CHANGE: written to disk.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"QRYLKSNP";
/// Snapshot format version. DO NOT CHANGE: written to disk.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Header length: magic, version, length, crc. DO NOT CHANGE: written to disk.
pub const SNAPSHOT_HEADER: usize = 8 + 4 + 8 + 4;
/// Largest snapshot payload accepted (checked before allocating it).
pub const MAX_SNAPSHOT: u64 = 1 << 30;

/// What a snapshot holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// Last entry included, membership, id.
    pub meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    /// The whole state machine.
    pub state: LockState,
}

/// Encodes a snapshot in the file format.
pub fn encode_snapshot(s: &SnapshotFile) -> Vec<u8> {
    let payload = encode(s);
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER + payload.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Decodes and verifies snapshot bytes; `file` names them in errors.
pub fn decode_snapshot(bytes: &[u8], file: &str) -> Result<SnapshotFile> {
    let corrupt = |offset: u64, what: String| Error::Corruption {
        file: file.to_string(),
        offset,
        what,
    };
    if bytes.len() < SNAPSHOT_HEADER {
        return Err(corrupt(
            0,
            format!("{} bytes is shorter than the header", bytes.len()),
        ));
    }
    if &bytes[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt(0, "bad magic".into()));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != SNAPSHOT_VERSION {
        return Err(corrupt(8, format!("unknown version {version}")));
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let have = (bytes.len() - SNAPSHOT_HEADER) as u64;
    if len > MAX_SNAPSHOT || len != have {
        return Err(corrupt(
            12,
            format!("payload length {len}, file holds {have}"),
        ));
    }
    let crc = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    let payload = &bytes[SNAPSHOT_HEADER..];
    if crc32fast::hash(payload) != crc {
        return Err(corrupt(
            SNAPSHOT_HEADER as u64,
            "payload checksum mismatch".into(),
        ));
    }
    decode(payload, "snapshot payload").map_err(|w| corrupt(SNAPSHOT_HEADER as u64, w))
}

/// Reads a snapshot file, checking its length before reading the payload.
fn read_snapshot(fs: &dyn Fs, path: &Path) -> Result<Option<(SnapshotFile, Vec<u8>)>> {
    if !fs.exists(path) {
        return Ok(None);
    }
    let f = fs.open(path)?;
    if f.len() > MAX_SNAPSHOT + SNAPSHOT_HEADER as u64 {
        return Err(Error::Corruption {
            file: path.display().to_string(),
            offset: 0,
            what: format!("snapshot of {} bytes exceeds the limit", f.len()),
        });
    }
    let bytes = f.read_at(0, f.len() as usize)?;
    let snap = decode_snapshot(&bytes, &path.display().to_string())?;
    Ok(Some((snap, bytes)))
}

/// Events of one applied entry, as published to watchers.
#[derive(Debug, Clone)]
pub struct EventBatch {
    /// The entry's log index.
    pub index: u64,
    /// Its events, in order.
    pub events: Vec<Event>,
}

/// The applied state with the Raft bookkeeping openraft needs.
pub struct SmData {
    /// The namespace, sessions and locks.
    pub state: LockState,
    /// Last applied log id.
    pub last_applied: Option<LogId<NodeId>>,
    /// Last applied membership.
    pub membership: StoredMembership<NodeId, openraft::BasicNode>,
}

/// Shared by the Raft task (through [`StateMachineStore`]) and the server (reads, leases,
/// watches).
pub struct Shared {
    /// The applied state; read it only after `Raft::ensure_linearizable()`.
    pub data: RwLock<SmData>,
    /// Session and lock-delay deadlines by this replica's clock.
    pub leases: Mutex<LeaseTable>,
    /// The replica's monotonic clock.
    pub clock: Arc<dyn Clock>,
    /// Events of every applied entry.
    pub events: broadcast::Sender<Arc<EventBatch>>,
    fs: Arc<dyn Fs>,
    snapshot_path: PathBuf,
    snapshot_seq: Mutex<u64>,
}

/// openraft's handle on the state machine (a clone of the shared part).
#[derive(Clone)]
pub struct StateMachineStore {
    /// The shared part.
    pub shared: Arc<Shared>,
    /// Write snapshot files on tokio's blocking pool
    /// ([`StateMachineStore::io_off_runtime`]).
    off_runtime: bool,
}

impl StateMachineStore {
    /// Opens the state machine of the replica whose data directory is `dir`, loading the
    /// snapshot there if any.
    pub fn open(
        fs: Arc<dyn Fs>,
        dir: &Path,
        mut leases: LeaseTable,
        clock: Arc<dyn Clock>,
    ) -> Result<StateMachineStore> {
        fs.create_dir_all(dir)?;
        let snapshot_path = dir.join("snapshot");
        let mut data = SmData {
            state: LockState::new(),
            last_applied: None,
            membership: StoredMembership::default(),
        };
        if let Some((snap, _)) = read_snapshot(&*fs, &snapshot_path)? {
            data.state = snap.state;
            data.last_applied = snap.meta.last_log_id;
            data.membership = snap.meta.last_membership;
        }
        leases.reset_from(&data.state, clock.now());
        let (events, _) = broadcast::channel(4096);
        let shared = Shared {
            data: RwLock::new(data),
            leases: Mutex::new(leases),
            clock,
            events,
            fs,
            snapshot_path,
            snapshot_seq: Mutex::new(0),
        };
        Ok(StateMachineStore {
            shared: Arc::new(shared),
            off_runtime: false,
        })
    }

    /// Writes snapshot files (two fsyncs and a rename) on tokio's blocking pool, so that a
    /// replica on one runtime thread (`quarry lock-server`) goes on sending heartbeats
    /// meanwhile: a stall of that thread longer than the followers' failure detector
    /// would depose a healthy leader, and a new leader extends every session by a full
    /// lease. Not under a paused clock (the simulation), as for
    /// [`crate::raft::log_store::LogStore::io_off_runtime`].
    pub fn io_off_runtime(mut self) -> StateMachineStore {
        self.off_runtime = true;
        self
    }

    fn apply_one(&self, entry: Entry) -> Applied {
        let sh = &self.shared;
        let mut d = sh.data.write();
        d.last_applied = Some(entry.log_id);
        let applied = match entry.payload {
            EntryPayload::Blank => done(),
            EntryPayload::Normal(cmd) => d.state.apply(&cmd),
            EntryPayload::Membership(m) => {
                d.membership = StoredMembership::new(Some(entry.log_id), m);
                done()
            }
        };
        if !applied.events.is_empty() {
            sh.leases.lock().observe(&applied.events, sh.clock.now());
            let batch = EventBatch {
                index: entry.log_id.index,
                events: applied.events.clone(),
            };
            let _ = sh.events.send(Arc::new(batch)); // no watcher is fine
        }
        applied
    }

    /// Replaces the snapshot file with `bytes` (on the blocking pool when chosen).
    async fn store_snapshot(&self, bytes: Vec<u8>) -> Result<Vec<u8>> {
        let sh = self.shared.clone();
        let write = move || -> Result<Vec<u8>> {
            sh.fs.write_atomic(&sh.snapshot_path, &bytes)?;
            Ok(bytes)
        };
        super::run_io(self.off_runtime, "snapshot writer", write).await
    }
}

fn done() -> Applied {
    Applied {
        result: Ok(Reply::Done),
        events: Vec::new(),
    }
}

fn snap_err(e: Error) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, AnyError::error(e.to_string())).into()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(
        &mut self,
    ) -> std::result::Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let file = {
            let d = self.shared.data.read();
            let mut seq = self.shared.snapshot_seq.lock();
            *seq += 1;
            let id = match d.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, *seq),
                None => format!("0-0-{}", *seq),
            };
            SnapshotFile {
                meta: SnapshotMeta {
                    last_log_id: d.last_applied,
                    last_membership: d.membership.clone(),
                    snapshot_id: id,
                },
                state: d.state.clone(),
            }
        };
        let bytes = self
            .store_snapshot(encode_snapshot(&file))
            .await
            .map_err(snap_err)?;
        Ok(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> std::result::Result<
        (
            Option<LogId<NodeId>>,
            StoredMembership<NodeId, openraft::BasicNode>,
        ),
        StorageError<NodeId>,
    > {
        let d = self.shared.data.read();
        Ok((d.last_applied, d.membership.clone()))
    }

    async fn apply<I>(
        &mut self,
        entries: I,
    ) -> std::result::Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        Ok(entries.into_iter().map(|e| self.apply_one(e)).collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> std::result::Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> std::result::Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let file = decode_snapshot(&bytes, "received snapshot").map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::error(e.to_string()),
            ))
        })?;
        self.store_snapshot(bytes).await.map_err(snap_err)?;
        let sh = &self.shared;
        let mut d = sh.data.write();
        d.state = file.state;
        d.last_applied = meta.last_log_id;
        d.membership = meta.last_membership.clone();
        sh.leases.lock().reset_from(&d.state, sh.clock.now());
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> std::result::Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let sh = &self.shared;
        let read = read_snapshot(&*sh.fs, &sh.snapshot_path).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(
                None,
                AnyError::error(e.to_string()),
            ))
        })?;
        Ok(read.map(|(file, bytes)| Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SnapshotFile {
        let mut state = LockState::new();
        state.apply(&crate::state::Command::CreateSession { client: "c".into() });
        SnapshotFile {
            meta: SnapshotMeta {
                last_log_id: None,
                last_membership: StoredMembership::default(),
                snapshot_id: "0-0-1".into(),
            },
            state,
        }
    }

    #[test]
    fn snapshot_round_trips_and_every_bit_flip_is_detected() {
        let bytes = encode_snapshot(&sample());
        let back = decode_snapshot(&bytes, "s").unwrap();
        assert_eq!(back.state, sample().state);
        for i in 0..bytes.len() {
            for bit in [0u8, 3, 7] {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let err = decode_snapshot(&b, "s").expect_err("flip not detected");
                assert!(matches!(err, Error::Corruption { .. }), "{err}");
            }
        }
        for cut in 0..bytes.len() {
            assert!(decode_snapshot(&bytes[..cut], "s").is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn snapshot_header_is_pinned() {
        let bytes = encode_snapshot(&sample());
        assert_eq!(&bytes[..12], b"QRYLKSNP\x01\x00\x00\x00");
        let len = u64::from_le_bytes(bytes[12..20].try_into().unwrap());
        assert_eq!(len as usize, bytes.len() - SNAPSHOT_HEADER);
    }

    /// On one runtime thread, a snapshot's fsyncs leave that thread free (heartbeats go
    /// on): each fsync here waits for a task on it.
    #[test]
    fn snapshot_fsyncs_leave_a_one_thread_runtime_free() {
        let (rt, fs, feeder) = crate::raft::test_fs::fs_needing_the_runtime();
        let dir = tempfile::tempdir().unwrap();
        let leases = LeaseTable::new(crate::lease::LeaseConfig::default());
        let clock = Arc::new(crate::clock::MonotonicClock);
        let mut sm = StateMachineStore::open(fs, dir.path(), leases, clock)
            .unwrap()
            .io_off_runtime();
        rt.block_on(async {
            let _feeder = tokio::spawn(feeder);
            let snap = sm.build_snapshot().await.expect("snapshot written");
            let meta = snap.meta.clone();
            let mut other = sm.clone();
            other
                .install_snapshot(&meta, snap.snapshot)
                .await
                .expect("snapshot installed");
            let back = sm.get_current_snapshot().await.unwrap().unwrap();
            assert_eq!(back.meta.snapshot_id, meta.snapshot_id);
        });
    }
}
