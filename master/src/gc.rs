//! Garbage collection of SSTables, tablet directories and dead servers' commit logs.
//!
//! The safety argument is in the crate essay ("Garbage collection"). In short, one pass:
//! 1. lists the data root ([`list_disk`]): tablet directories with their manifests and
//!    SSTables, table directories, log directories;
//! 2. then reads, fresh, METADATA, the root-tablet file, the table files and the server
//!    files ([`Live`]);
//! 3. then reads the newest manifest of every listed tablet directory ([`Refs`]);
//! 4. decides with the pure function [`plan`]: a tablet directory METADATA does not name,
//!    an SSTable no surviving manifest names, and the log directory of an unregistered
//!    server no surviving manifest names are **candidates**; a candidate is deleted only
//!    once it has been a candidate in every pass for at least `min_age`, first seen in an
//!    earlier pass ([`Suspects`]);
//! 5. deletes through the [`Fs`] trait ([`execute`]): a dead tablet directory's manifests
//!    first (so its SSTables become plain candidates of later passes), then SSTables, then
//!    empty directories and dead logs. Every step is idempotent; a crash part way leaves
//!    files that the next pass finds again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sstable::Fs;
use tablet::manifest::{self, ManifestState};
use tablet::meta::METADATA_TABLE_ID;

use crate::error::{Error, Result};
use crate::master::Inner;
use crate::ns;

/// Files of one tablet directory on disk (paths relative to the data root).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TabletDir {
    /// Names of its `MANIFEST-*` files (temporary ones included).
    pub manifests: Vec<String>,
    /// Its SSTables, `tables/<t>/<tablet>/sst/<name>.sst`.
    pub ssts: Vec<String>,
}

/// What the data root held when it was listed (paths relative to the root).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Disk {
    /// `tables/<t>/<tablet>` -> its files.
    pub tablet_dirs: BTreeMap<String, TabletDir>,
    /// Table id -> `tables/<t>`.
    pub table_dirs: BTreeMap<u64, String>,
    /// `logs/<server id>` directories.
    pub log_dirs: BTreeSet<String>,
}

/// What may still be loaded, read after the listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Live {
    /// Directories of METADATA's tablet and of every tablet METADATA has a row for.
    pub tablet_dirs: BTreeSet<String>,
    /// Tables with a table file or a METADATA row (and METADATA itself).
    pub table_ids: BTreeSet<u64>,
    /// Ids of the servers with a file in `/quarry/servers/`.
    pub servers: BTreeSet<String>,
}

/// What one manifest references.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refs {
    /// SSTable paths.
    pub ssts: BTreeSet<String>,
    /// Log directories it may replay from (log references and seals).
    pub log_dirs: BTreeSet<String>,
}

impl Refs {
    /// The references of a manifest.
    pub fn of(m: &ManifestState) -> Refs {
        let mut log_dirs: BTreeSet<String> = m.log_refs.iter().map(|r| r.dir.clone()).collect();
        for seg in m.seals.keys() {
            if let Some((dir, _)) = seg.rsplit_once('/') {
                log_dirs.insert(dir.to_string());
            }
        }
        Refs {
            ssts: m.all_ssts().map(|s| s.path.clone()).collect(),
            log_dirs,
        }
    }
}

/// Candidates and when each was first seen one, carried from pass to pass.
#[derive(Clone, Debug, Default)]
pub struct Suspects {
    first_seen: BTreeMap<String, Instant>,
}

impl Suspects {
    /// True when `key` was already a candidate in an earlier pass (before `now`), at least
    /// `min_age` ago.
    fn ripe(&self, key: &str, now: Instant, min_age: Duration) -> bool {
        self.first_seen
            .get(key)
            .is_some_and(|&t| t < now && now.duration_since(t) >= min_age)
    }

    /// Keeps exactly `candidates`, remembering new ones as first seen `now`.
    fn update(&mut self, candidates: &BTreeSet<String>, now: Instant) {
        self.first_seen.retain(|k, _| candidates.contains(k));
        for c in candidates {
            self.first_seen.entry(c.clone()).or_insert(now);
        }
    }

    /// Number of candidates remembered.
    pub fn len(&self) -> usize {
        self.first_seen.len()
    }

    /// True when no candidate is remembered.
    pub fn is_empty(&self) -> bool {
        self.first_seen.is_empty()
    }
}

/// What one pass deletes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Dead tablet directories: their manifests go, then the directory once empty.
    pub tablet_dirs: Vec<String>,
    /// Dead tablet directories without manifests: removed once empty.
    pub empty_dirs: Vec<String>,
    /// SSTables no surviving manifest references.
    pub ssts: Vec<String>,
    /// Log directories of dead servers no surviving manifest references.
    pub log_dirs: Vec<String>,
    /// Directories of tables that no longer exist, removed once empty.
    pub table_dirs: Vec<String>,
}

/// Decides what to delete (see the module essay). `manifests` holds the references of the
/// newest manifest of each listed tablet directory that has one; `suspects` is updated.
pub fn plan(
    disk: &Disk,
    live: &Live,
    manifests: &BTreeMap<String, Refs>,
    suspects: &mut Suspects,
    now: Instant,
    min_age: Duration,
) -> Plan {
    let mut candidates = BTreeSet::new();
    let mut out = Plan::default();
    for (dir, files) in &disk.tablet_dirs {
        if !live.tablet_dirs.contains(dir) {
            candidates.insert(dir.clone());
            if !suspects.ripe(dir, now, min_age) {
                continue;
            }
            if files.manifests.is_empty() {
                out.empty_dirs.push(dir.clone());
            } else {
                out.tablet_dirs.push(dir.clone());
            }
        }
    }
    let mut refs = Refs::default();
    for (dir, r) in manifests {
        if !out.tablet_dirs.contains(dir) {
            refs.ssts.extend(r.ssts.iter().cloned());
            refs.log_dirs.extend(r.log_dirs.iter().cloned());
        }
    }
    for sst in disk.tablet_dirs.values().flat_map(|d| &d.ssts) {
        if !refs.ssts.contains(sst) {
            candidates.insert(sst.clone());
            if suspects.ripe(sst, now, min_age) {
                out.ssts.push(sst.clone());
            }
        }
    }
    for dir in &disk.log_dirs {
        let server = dir.strip_prefix("logs/").unwrap_or(dir);
        if !live.servers.contains(server) && !refs.log_dirs.contains(dir) {
            candidates.insert(dir.clone());
            if suspects.ripe(dir, now, min_age) {
                out.log_dirs.push(dir.clone());
            }
        }
    }
    for (id, dir) in &disk.table_dirs {
        if !live.table_ids.contains(id) {
            out.table_dirs.push(dir.clone());
        }
    }
    suspects.update(&candidates, now);
    out
}

/// A file-system or manifest error in the master's terms.
fn io(e: impl Into<tablet::Error>) -> Error {
    let e = e.into();
    if e.is_corruption() {
        Error::Corruption {
            what: e.to_string(),
        }
    } else {
        Error::Unavailable(format!("data root: {e}"))
    }
}

/// Names in `dir`, or none when it does not exist (any more).
fn names(fs: &dyn Fs, dir: &Path) -> Result<Vec<String>> {
    match fs.list_dir(dir) {
        Ok(n) => Ok(n),
        Err(sstable::Error::NotFound(_)) => Ok(Vec::new()),
        Err(e) => Err(io(e)),
    }
}

fn numeric(name: &str) -> Option<u64> {
    name.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| name.parse().ok())
        .flatten()
}

/// Lists `tables/` and `logs/` under `root`.
pub fn list_disk(fs: &dyn Fs, root: &Path) -> Result<Disk> {
    let mut disk = Disk::default();
    for t in names(fs, &root.join("tables"))? {
        let Some(table_id) = numeric(&t) else {
            continue;
        };
        let table_dir = format!("tables/{t}");
        for x in names(fs, &root.join(&table_dir))? {
            if numeric(&x).is_none() {
                continue;
            }
            let dir = format!("{table_dir}/{x}");
            let manifests = names(fs, &root.join(&dir))?
                .into_iter()
                .filter(|n| n.starts_with("MANIFEST-"))
                .collect();
            let ssts = names(fs, &root.join(&dir).join("sst"))?
                .into_iter()
                .filter(|n| n.ends_with(".sst"))
                .map(|n| format!("{dir}/sst/{n}"))
                .collect();
            disk.tablet_dirs.insert(dir, TabletDir { manifests, ssts });
        }
        disk.table_dirs.insert(table_id, table_dir);
    }
    for s in names(fs, &root.join("logs"))? {
        disk.log_dirs.insert(format!("logs/{s}"));
    }
    Ok(disk)
}

/// The references of the newest manifest of every listed tablet directory.
pub fn read_manifests(fs: &dyn Fs, root: &Path, disk: &Disk) -> Result<BTreeMap<String, Refs>> {
    let mut out = BTreeMap::new();
    for dir in disk.tablet_dirs.keys() {
        if let Some(m) = manifest::read_newest(fs, &root.join(dir)).map_err(io)? {
            out.insert(dir.clone(), Refs::of(&m));
        }
    }
    Ok(out)
}

/// What a pass deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Dead tablet directories whose manifests were deleted.
    pub tablet_dirs: usize,
    /// SSTables deleted.
    pub ssts: usize,
    /// Dead servers' log directories deleted.
    pub log_dirs: usize,
    /// Bytes of SSTables and log segments deleted.
    pub bytes: u64,
    /// Deletions that failed (retried by a later pass).
    pub failures: usize,
}

fn remove_if_empty(fs: &dyn Fs, dir: &Path) -> Result<bool> {
    if fs.exists(dir) && names(fs, dir)?.is_empty() {
        fs.remove_dir_all(dir).map_err(io)?;
        return Ok(true);
    }
    Ok(false)
}

/// Sums the sizes of the files directly in `dir`.
fn dir_bytes(fs: &dyn Fs, dir: &Path) -> u64 {
    let names = names(fs, dir).unwrap_or_default();
    names
        .iter()
        .filter_map(|n| fs.file_size(&dir.join(n)).ok())
        .sum()
}

/// Carries out `plan` (see the module essay for the order); failures are logged and
/// counted, and a later pass finds what is left.
pub fn execute(fs: &dyn Fs, root: &Path, plan: &Plan) -> Report {
    let mut r = Report::default();
    let mut note = |what: &str, path: &str, res: Result<()>| match res {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(path, "garbage collection: {what} failed: {e}");
            r.failures += 1;
            false
        }
    };
    let mut ok_dirs = 0;
    for dir in &plan.tablet_dirs {
        let abs = root.join(dir);
        let res = (|| -> Result<()> {
            for n in names(fs, &abs)?
                .iter()
                .filter(|n| n.starts_with("MANIFEST-"))
            {
                fs.remove_file(&abs.join(n)).map_err(io)?;
            }
            fs.sync_dir(&abs).map_err(io)?;
            Ok(())
        })();
        if note("removing the manifests of a dead tablet", dir, res) {
            tracing::info!(
                dir,
                "gc: deleted the manifests of a tablet METADATA no longer names"
            );
            ok_dirs += 1;
        }
    }
    let mut bytes = 0;
    let mut ssts = 0;
    for sst in &plan.ssts {
        let abs = root.join(sst);
        let size = fs.file_size(&abs).unwrap_or(0);
        let res = match fs.remove_file(&abs) {
            Ok(()) | Err(sstable::Error::NotFound(_)) => Ok(()),
            Err(e) => Err(io(e)),
        };
        if note("removing an SSTable", sst, res) {
            tracing::info!(
                path = sst,
                size,
                "gc: deleted an SSTable no manifest references"
            );
            bytes += size;
            ssts += 1;
        }
    }
    for dir in plan.tablet_dirs.iter().chain(&plan.empty_dirs) {
        let abs = root.join(dir);
        let res = remove_if_empty(fs, &abs.join("sst"))
            .and_then(|_| remove_if_empty(fs, &abs))
            .map(|_| ());
        note("removing an empty tablet directory", dir, res);
    }
    for dir in &plan.table_dirs {
        if let Ok(true) = remove_if_empty(fs, &root.join(dir)) {
            tracing::info!(dir, "gc: removed the directory of a deleted table");
        }
    }
    let mut logs = 0;
    for dir in &plan.log_dirs {
        let abs = root.join(dir);
        let size = dir_bytes(fs, &abs);
        let res = fs.remove_dir_all(&abs).map_err(io);
        if note("removing a dead server's log", dir, res) {
            tracing::info!(dir, size, "gc: deleted the commit log of a dead server");
            bytes += size;
            logs += 1;
        }
    }
    r.tablet_dirs = ok_dirs;
    r.ssts = ssts;
    r.log_dirs = logs;
    r.bytes = bytes;
    r
}

/// The collector's memory between passes.
pub struct Collector {
    fs: Arc<dyn Fs>,
    suspects: Suspects,
}

fn blocking_err(e: tokio::task::JoinError) -> Error {
    Error::Unavailable(format!("garbage-collection task: {e}"))
}

impl Collector {
    /// A collector that lists, reads and deletes through `fs`.
    pub fn new(fs: Arc<dyn Fs>) -> Collector {
        Collector {
            fs,
            suspects: Suspects::default(),
        }
    }

    /// One pass (see the module essay). Deletes nothing unless this master is active and
    /// its lease valid.
    pub async fn pass(&mut self, inner: &Inner) -> Result<Report> {
        let root = inner.cfg.data_root.clone();
        let fs = Arc::clone(&self.fs);
        let disk = {
            let (fs, root) = (Arc::clone(&fs), root.clone());
            tokio::task::spawn_blocking(move || list_disk(&*fs, &root))
                .await
                .map_err(blocking_err)??
        };
        let live = read_live(inner).await?;
        let (disk, manifests) = {
            let (fs, root) = (Arc::clone(&fs), root.clone());
            tokio::task::spawn_blocking(move || {
                read_manifests(&*fs, &root, &disk).map(|m| (disk, m))
            })
            .await
            .map_err(blocking_err)??
        };
        let now = Instant::now();
        let p = plan(
            &disk,
            &live,
            &manifests,
            &mut self.suspects,
            now,
            inner.cfg.gc_min_age,
        );
        inner.guard()?;
        let report = tokio::task::spawn_blocking(move || execute(&*fs, &root, &p))
            .await
            .map_err(blocking_err)?;
        tracing::debug!(
            suspects = self.suspects.len(),
            ?report,
            "garbage-collection pass"
        );
        Ok(report)
    }
}

/// What may still be loaded: METADATA's rows (scanned now), its own tablet, the table
/// files and the server files.
async fn read_live(inner: &Inner) -> Result<Live> {
    let mut live = Live::default();
    {
        let g = inner.active.lock().await;
        let Some(a) = g.as_ref() else {
            return Err(Error::Unavailable("not the active master".into()));
        };
        let records = crate::assign::meta(inner, a)?.scan_all().await?;
        for r in records {
            live.table_ids.insert(r.table_id);
            live.tablet_dirs.insert(r.dir);
        }
    }
    let root = ns::read_root(&inner.client)
        .await?
        .ok_or_else(|| Error::Unavailable("METADATA's tablet has no location yet".into()))?;
    live.tablet_dirs.insert(root.dir);
    live.table_ids.insert(METADATA_TABLE_ID);
    for t in ns::list_tables(&inner.client).await? {
        live.table_ids.insert(t.id);
    }
    for s in ns::list_servers(&inner.client).await? {
        live.servers.insert(s.info.id);
    }
    Ok(live)
}

#[cfg(test)]
mod tests;
