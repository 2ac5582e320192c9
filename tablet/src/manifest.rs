//! The manifest: a tablet's durable state (its SSTables, redo points and seals).
//!
//! Each change writes a whole new manifest file (they are small) through
//! [`Fs::write_atomic`] (temp file, fsync, rename, directory fsync) and then removes the
//! older ones, so a reader sees the old state or the new, never a mix. File names carry
//! the writer's epoch: `MANIFEST-<epoch:020>-<number:020>`. A loader takes the highest
//! (epoch, number). So a zombie owner with an older epoch that wakes and writes a manifest
//! can never replace the state of the tablet's newer owner (DESIGN.md rule 7). The format
//! is in `docs/format/manifest.md`:
//!
//! ```text
//! magic:   [u8; 8]  = "QMANIFST"     // DO NOT CHANGE: written to disk
//! version: u32le    = 1              // DO NOT CHANGE: written to disk
//! length:  u32le                     // bytes of body
//! crc:     u32le                     // CRC32 of body
//! body:    [u8; length]              // UTF-8 JSON of ManifestState
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sstable::{Error as SsError, Fs};

use crate::commitlog::LogPosition;
use crate::error::Result;
use crate::schema::Schema;
use crate::types::{Epoch, SeqNo, TabletId};

/// Magic at the start of every manifest file. DO NOT CHANGE: written to disk.
const MAGIC: &[u8; 8] = b"QMANIFST";
/// Manifest format version. DO NOT CHANGE: written to disk.
const VERSION: u32 = 1;
/// Header bytes before the body.
const HEADER: usize = 20;
/// Largest manifest body accepted (bounds the allocation on load).
const MAX_BODY: usize = 64 * 1024 * 1024;
/// File name prefix. DO NOT CHANGE: written to disk.
const PREFIX: &str = "MANIFEST-";

/// Byte strings as lowercase hex in JSON.
pub(crate) mod hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn encode(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    pub fn decode(s: &str) -> Option<Vec<u8>> {
        if !s.len().is_multiple_of(2) {
            return None;
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
            .collect()
    }

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        decode(&s).ok_or_else(|| serde::de::Error::custom("bad hex"))
    }
}

/// A row range `[start, end)`; an empty `end` means no upper bound.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowRange {
    /// First row included (empty: from the first row).
    #[serde(with = "hex")]
    pub start: Vec<u8>,
    /// First row excluded (empty: to the last row).
    #[serde(with = "hex")]
    pub end: Vec<u8>,
}

impl RowRange {
    /// Every row.
    pub fn all() -> RowRange {
        RowRange::default()
    }

    /// `[start, end)`.
    pub fn new(start: &[u8], end: &[u8]) -> RowRange {
        RowRange {
            start: start.to_vec(),
            end: end.to_vec(),
        }
    }

    /// True when `row` is in the range.
    pub fn contains(&self, row: &[u8]) -> bool {
        row >= self.start.as_slice() && (self.end.is_empty() || row < self.end.as_slice())
    }
}

/// One SSTable of a locality group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SstMeta {
    /// Path relative to the data root.
    pub path: String,
    /// File size in bytes.
    pub size: u64,
    /// Number of entries.
    pub entries: u64,
    /// Smallest internal key.
    #[serde(with = "hex")]
    pub smallest: Vec<u8>,
    /// Largest internal key.
    #[serde(with = "hex")]
    pub largest: Vec<u8>,
    /// Only rows in this range belong to this tablet (a file shared after a split).
    pub clip: Option<RowRange>,
    /// Compaction level (0: flush outputs; >= 1: a leveled policy's non-overlapping runs).
    /// Written only when not 0, so manifests without levels read as all level 0 and
    /// level-0 entries keep their old bytes.
    #[serde(default, skip_serializing_if = "is_level_zero")]
    pub level: u32,
}

fn is_level_zero(level: &u32) -> bool {
    *level == 0
}

/// A commit log that may hold records of this tablet not yet in SSTables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRef {
    /// The log's directory, relative to the data root.
    pub dir: String,
    /// Records of this tablet before this position are all in SSTables.
    pub from: LogPosition,
}

/// Everything durable about one tablet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestState {
    /// The tablet.
    pub tablet_id: TabletId,
    /// Epoch of the load that wrote this state.
    pub epoch: Epoch,
    /// Rows this tablet holds.
    pub range: RowRange,
    /// The schema the tablet was last opened with.
    pub schema: Schema,
    /// Every change with a sequence number at or below this is in the SSTables.
    pub flushed_seq: SeqNo,
    /// Next SSTable file number (file names also carry the epoch).
    pub next_file: u64,
    /// SSTables per locality group, newest first.
    pub groups: BTreeMap<String, Vec<SstMeta>>,
    /// Commit logs to replay from, oldest first.
    pub log_refs: Vec<LogRef>,
    /// Seals: segment path (relative to the root) -> offset never to read at or past.
    pub seals: BTreeMap<String, u64>,
}

impl ManifestState {
    /// The state of a new, empty tablet.
    pub fn new(tablet_id: TabletId, range: RowRange, schema: Schema) -> ManifestState {
        ManifestState {
            tablet_id,
            epoch: 0,
            range,
            schema,
            flushed_seq: 0,
            next_file: 1,
            groups: BTreeMap::new(),
            log_refs: Vec::new(),
            seals: BTreeMap::new(),
        }
    }

    /// Every SSTable of every group.
    pub fn all_ssts(&self) -> impl Iterator<Item = &SstMeta> {
        self.groups.values().flatten()
    }
}

/// The name of manifest `(epoch, number)`.
pub fn file_name(epoch: Epoch, number: u64) -> String {
    format!("{PREFIX}{epoch:020}-{number:020}")
}

fn parse_name(name: &str) -> Option<(Epoch, u64)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (e, n) = rest.split_once('-')?;
    if e.len() != 20 || n.len() != 20 {
        return None;
    }
    Some((e.parse().ok()?, n.parse().ok()?))
}

/// Encodes a state as manifest file bytes.
pub fn encode(state: &ManifestState) -> Vec<u8> {
    let body = serde_json::to_vec(state).expect("manifest state serializes");
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes manifest file bytes; `path` names the file in errors.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<ManifestState> {
    let bad = |offset: u64, what: &str| SsError::corruption(path, offset, what);
    if bytes.len() < HEADER {
        return Err(bad(0, "manifest shorter than its header").into());
    }
    if &bytes[..8] != MAGIC {
        return Err(bad(0, "bad manifest magic").into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if version != VERSION {
        return Err(bad(8, &format!("unknown manifest version {version}")).into());
    }
    let len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    if len > MAX_BODY || len != bytes.len() - HEADER {
        return Err(bad(12, "manifest length does not match the file").into());
    }
    let crc = u32::from_le_bytes(bytes[16..20].try_into().unwrap());
    let body = &bytes[HEADER..];
    if crc32fast::hash(body) != crc {
        return Err(bad(HEADER as u64, "manifest checksum mismatch").into());
    }
    serde_json::from_slice(body)
        .map_err(|e| bad(HEADER as u64, &format!("manifest body: {e}")).into())
}

/// The newest manifest of the tablet directory `dir`, read without changing anything
/// (the store's [`ManifestStore::open`] removes temporary files, which a reader in another
/// process must never do). `None` when the directory holds no manifest or does not exist.
/// A manifest replaced while being read is retried a few times (a writer renames the new
/// one in before removing the old, so a fresh listing finds it).
pub fn read_newest(fs: &dyn Fs, dir: &Path) -> Result<Option<ManifestState>> {
    const ATTEMPTS: usize = 5;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        if !fs.exists(dir) {
            return Ok(None);
        }
        let Some(&(e, n)) = ManifestStore::list(fs, dir)?.last() else {
            return Ok(None);
        };
        let path = dir.join(file_name(e, n));
        match fs.read_all(&path) {
            Ok(bytes) => return decode(&path, &bytes).map(Some),
            Err(SsError::NotFound(what)) => last = Some(what),
            Err(err) => return Err(err.into()),
        }
    }
    Err(SsError::NotFound(last.unwrap_or_else(|| dir.display().to_string())).into())
}

/// Reads and writes one tablet directory's manifests.
pub struct ManifestStore {
    fs: std::sync::Arc<dyn Fs>,
    dir: PathBuf,
    current: Option<(Epoch, u64)>,
}

impl ManifestStore {
    /// Opens the store of `dir`, creating the directory if needed, and removes
    /// half-written temporary files.
    pub fn open(fs: std::sync::Arc<dyn Fs>, dir: &Path) -> Result<ManifestStore> {
        fs.create_dir_all_durable(dir)?;
        for name in fs.list_dir(dir)? {
            if name.starts_with(PREFIX) && name.ends_with(".tmp") {
                fs.remove_file(&dir.join(&name))?;
            }
        }
        let current = Self::list(&*fs, dir)?.last().copied();
        Ok(ManifestStore {
            fs,
            dir: dir.to_path_buf(),
            current,
        })
    }

    fn list(fs: &dyn Fs, dir: &Path) -> Result<Vec<(Epoch, u64)>> {
        let mut v: Vec<_> = fs
            .list_dir(dir)?
            .iter()
            .filter_map(|n| parse_name(n))
            .collect();
        v.sort();
        Ok(v)
    }

    /// The newest state, if any manifest exists.
    pub fn load(&self) -> Result<Option<ManifestState>> {
        let Some((e, n)) = self.current else {
            return Ok(None);
        };
        let path = self.dir.join(file_name(e, n));
        let bytes = self.fs.read_all(&path)?;
        decode(&path, &bytes).map(Some)
    }

    /// Durably replaces the state: writes the next manifest (numbered in `state.epoch`),
    /// then removes the older ones of this store's view.
    pub fn write(&mut self, state: &ManifestState) -> Result<()> {
        let number = match self.current {
            Some((e, n)) if e == state.epoch => n + 1,
            _ => 1,
        };
        let path = self.dir.join(file_name(state.epoch, number));
        self.fs.write_atomic(&path, &encode(state))?;
        let new = (state.epoch, number);
        for old in Self::list(&*self.fs, &self.dir)? {
            if old < new {
                // A failed removal leaves an older manifest that the loader ignores.
                let _ = self.fs.remove_file(&self.dir.join(file_name(old.0, old.1)));
            }
        }
        self.current = Some(new);
        Ok(())
    }

    /// True when a manifest of a higher epoch than `epoch` exists: a newer owner has
    /// loaded the tablet.
    pub fn superseded(&self, epoch: Epoch) -> Result<bool> {
        Ok(Self::list(&*self.fs, &self.dir)?
            .last()
            .is_some_and(|&(e, _)| e > epoch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flipped_bit_is_detected() {
        let mut s = ManifestState::new(7, RowRange::new(b"a", b"m"), Schema::with_families(["f"]));
        s.seals.insert("logs/x/1.log".into(), 99);
        let bytes = encode(&s);
        let p = Path::new("MANIFEST-test");
        assert_eq!(decode(p, &bytes).unwrap(), s);
        for i in 0..bytes.len() {
            for bit in [0, 5] {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let err = decode(p, &b).expect_err("flip must be detected");
                assert!(err.is_corruption(), "{err}");
            }
        }
    }

    #[test]
    fn names_order_by_epoch_then_number() {
        assert!(file_name(2, 1) > file_name(1, 99));
        assert_eq!(parse_name(&file_name(3, 4)), Some((3, 4)));
        assert_eq!(parse_name("MANIFEST-1-2"), None);
    }
}

#[cfg(test)]
mod golden {
    use super::*;

    /// Pins the exact bytes of a manifest: a format change cannot go unnoticed.
    #[test]
    fn manifest_bytes_are_pinned() {
        let mut s = ManifestState::new(7, RowRange::new(b"a", b""), Schema::with_families(["f"]));
        s.epoch = 3;
        s.flushed_seq = 42;
        s.seals
            .insert("logs/s1/00000000000000000001.log".into(), 4096);
        let bytes = encode(&s);
        let body = br#"{"tablet_id":7,"epoch":3,"range":{"start":"61","end":""},"schema":{"families":{"f":{"gc":"never","locality_group":"default"}},"groups":{"default":{"in_memory":false}}},"flushed_seq":42,"next_file":1,"groups":{},"log_refs":[],"seals":{"logs/s1/00000000000000000001.log":4096}}"#;
        assert_eq!(&bytes[..8], b"QMANIFST");
        assert_eq!(&bytes[8..12], &1u32.to_le_bytes());
        assert_eq!(&bytes[12..16], &(body.len() as u32).to_le_bytes());
        assert_eq!(&bytes[16..20], &crc32fast::hash(body).to_le_bytes());
        assert_eq!(
            std::str::from_utf8(&bytes[20..]).unwrap(),
            std::str::from_utf8(body).unwrap()
        );
    }
    fn sst(path: &str, level: u32) -> SstMeta {
        SstMeta {
            path: path.into(),
            size: 10,
            entries: 1,
            smallest: b"a".to_vec(),
            largest: b"b".to_vec(),
            clip: None,
            level,
        }
    }

    /// SSTable entries: level 0 is written as before levels existed (no `level` key), a
    /// deeper level adds `"level":n`, and an entry without the key reads as level 0.
    #[test]
    fn sstable_levels_are_pinned_and_old_entries_read_as_level_zero() {
        let mut s = ManifestState::new(7, RowRange::all(), Schema::with_families(["f"]));
        s.groups
            .insert("default".into(), vec![sst("x/0.sst", 0), sst("x/1.sst", 2)]);
        let body = String::from_utf8(encode(&s)[HEADER..].to_vec()).unwrap();
        let groups = r#""groups":{"default":[{"path":"x/0.sst","size":10,"entries":1,"smallest":"61","largest":"62","clip":null},{"path":"x/1.sst","size":10,"entries":1,"smallest":"61","largest":"62","clip":null,"level":2}]}"#;
        assert!(body.contains(groups), "{body}");
        let old = body.replace(r#","level":2"#, "");
        let back: ManifestState = serde_json::from_str(&old).unwrap();
        assert_eq!(back.groups["default"][1].level, 0);
        assert_eq!(serde_json::from_str::<ManifestState>(&body).unwrap(), s);
    }
}
