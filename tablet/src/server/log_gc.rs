//! Deleting this server's own commit-log segments once no tablet needs them.
//!
//! A segment may be deleted when every record in it that any tablet might still replay is
//! in SSTables. A tablet's durable manifest says where replay of this log would start for
//! it (its [`LogRef`](crate::manifest::LogRef) for this server's log directory, advanced by
//! each flush); nothing before that position is ever read for it again, by this server or
//! by a later owner. So the **floor** is the minimum, over the newest manifest of every
//! tablet this incarnation ever loaded, of that position, and the log's current position
//! if lower. Segments numbered below the floor's segment are deleted.
//!
//! Why each tablet is covered:
//! - loaded tablets: their manifest's reference only moves forward after a flush made the
//!   records before it durable in SSTables;
//! - tablets being unloaded, split, or whose flush failed: they were loaded here, so they
//!   are in the set; their manifest still holds the old reference until a flush succeeds
//!   (the in-memory map is not consulted: an unload removes a tablet from it before its
//!   final flush);
//! - tablets being loaded right now: the log position is read *before* the set, so a
//!   tablet missing from the set was inserted later and every write it took is past that
//!   position; its manifest may point into older segments of this log only if it was
//!   loaded here before, and then it is in the set.
//!
//! A tablet that takes few writes would hold the floor at its last flush for ever (and an
//! idle one, with nothing to flush, too): each round first makes every loaded tablet whose
//! redo point lags more than [`MAX_LAG_SEGMENTS`] segments flush and, once its memtables
//! are empty, move its redo point to the log's position ([`crate::Tablet::release_log`]).
//!
//! The set only grows for the life of the process (one directory name per tablet ever
//! loaded); a directory whose manifest is gone (the master deleted a dead tablet) or no
//! longer names this log adds nothing. A manifest that cannot be read skips the round.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sstable::Fs;

use super::Shared;
use crate::commitlog::{CommitLog, LogPosition};
use crate::error::Result;
use crate::manifest;

/// How often the server looks for segments to delete.
pub const LOG_GC_EVERY: Duration = Duration::from_secs(2);

/// A loaded tablet whose redo point is more than this many segments behind the log's
/// current one is flushed (or, idle, has its redo point moved up), so one quiet tablet
/// does not pin the whole log (Bigtable section 5.4 flushes for the same reason).
pub const MAX_LAG_SEGMENTS: u64 = 4;

/// The lowest position of this log any of `refs` still needs, given the log's position
/// (read before the set of tablets): replay of every tablet starts at or after it.
pub fn floor(position: LogPosition, refs: impl IntoIterator<Item = LogPosition>) -> LogPosition {
    refs.into_iter().fold(position, LogPosition::min)
}

/// The floor of `log` (under the data root `root`) given the directories (relative to
/// the root) of every tablet that ever used it: segments before the floor's segment are
/// needed by no tablet. The log's position is read before `dirs` is called.
pub fn log_floor(
    fs: &dyn Fs,
    root: &Path,
    log: &CommitLog,
    dirs: impl FnOnce() -> BTreeSet<String>,
) -> Result<LogPosition> {
    let position = log.position();
    let own = crate::tablet::relative_to(root, log.dir())?;
    let mut refs = Vec::new();
    for dir in dirs() {
        if let Some(m) = manifest::read_newest(fs, &root.join(&dir))? {
            refs.extend(m.log_refs.iter().filter(|r| r.dir == own).map(|r| r.from));
        }
    }
    Ok(floor(position, refs))
}

impl Shared {
    /// The floor of this server's log (see [`log_floor`]).
    pub(crate) fn log_floor(&self) -> Result<LogPosition> {
        log_floor(&*self.fs, &self.root, &self.log, || {
            self.log_users.lock().clone()
        })
    }

    /// One round: lets every loaded tablet whose redo point lags more than
    /// [`MAX_LAG_SEGMENTS`] behind release the log ([`crate::Tablet::release_log`]), then
    /// deletes this log's segments below the floor. Returns the floor segment.
    pub(crate) fn collect_log(&self) -> Result<u64> {
        let current = self.log.position().segment;
        let lagging: Vec<_> = self
            .tablets
            .read()
            .values()
            .filter(|l| l.tablet.redo_point().segment + MAX_LAG_SEGMENTS < current)
            .map(|l| Arc::clone(&l.tablet))
            .collect();
        for t in lagging {
            if let Err(e) = t.release_log() {
                tracing::warn!(tablet = t.id(), "flushing to release the log: {e}");
            }
        }
        let floor = self.log_floor()?;
        let deleted = self.log.delete_segments_before(floor.segment)?;
        if deleted > 0 {
            tracing::info!(
                server = self.id,
                deleted,
                below = floor.segment,
                "deleted commit-log segments no tablet needs"
            );
        }
        Ok(floor.segment)
    }

    /// Runs [`Shared::collect_log`] every `every` while the server serves. A server that
    /// stopped serving deletes nothing more (its log may be replayed by new owners).
    pub(crate) async fn log_gc(self: Arc<Self>, every: Duration) {
        let mut last_floor = 0;
        loop {
            tokio::time::sleep(every).await;
            if !self.may_serve() {
                return;
            }
            if self.log.position().segment <= last_floor {
                continue; // nothing could be deleted or lag
            }
            let s = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || s.collect_log()).await {
                Ok(Ok(f)) => last_floor = f,
                Ok(Err(e)) => tracing::warn!(server = self.id, "commit-log GC: {e}"),
                Err(e) => tracing::warn!(server = self.id, "commit-log GC task: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(segment: u64, offset: u64) -> LogPosition {
        LogPosition { segment, offset }
    }

    #[test]
    fn floor_is_the_lowest_reference_or_the_position() {
        assert_eq!(floor(pos(9, 10), []), pos(9, 10));
        assert_eq!(floor(pos(9, 10), [pos(4, 100), pos(7, 0)]), pos(4, 100));
        // A reference past the position (a tablet loaded after it was read) never raises it.
        assert_eq!(floor(pos(9, 10), [pos(12, 0)]), pos(9, 10));
    }
}
