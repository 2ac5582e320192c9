//! Leveled compaction (LevelDB's and RocksDB's default), as a pure policy.
//!
//! Level 0 holds flush outputs, which may overlap each other. Levels 1.. each hold one
//! sorted run: files whose row ranges never overlap, so a lookup reads at most one file per
//! level. Level `n >= 1` may hold `base_level_bytes * size_ratio^(n-1)` bytes. Each level
//! gets a score: level 0 its file count over `l0_trigger`, level `n` its bytes over its
//! target. The highest score at or above 1 is compacted:
//!
//! - level 0 -> 1: every level-0 file (at most `max_l0_merge`, the oldest) and every
//!   level-1 file overlapping their rows;
//! - level n -> n+1: the level-n file with the fewest overlapping bytes below it per byte
//!   of its own (RocksDB's `kMinOverlappingRatio`) and those overlapping files; a file
//!   with nothing below it moves down without being rewritten (a trivial move).
//!
//! Invariants: for overlapping rows, data in a lower-numbered level is newer than data in
//! a higher one (flushes enter at level 0, data only moves down); outputs of a pick cover
//! rows inside the hull of its inputs, and every file of the output level inside that hull
//! is an input, so levels >= 1 stay non-overlapping. Deletion markers may be dropped
//! (`drop_markers`) only when no file below the output level overlaps the inputs' rows and
//! no older level-0 file was left out.

use super::policy::{FileInfo, Pick};

/// Parameters of the leveled policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Leveled {
    /// Compact level 0 into level 1 when it holds this many files.
    pub l0_trigger: usize,
    /// At most this many level-0 files per compaction (the oldest).
    pub max_l0_merge: usize,
    /// Target bytes of level 1.
    pub base_level_bytes: u64,
    /// Each level below 1 may hold this many times the bytes of the one above.
    pub size_ratio: u64,
    /// Compaction outputs are cut into files of about this size.
    pub target_file_size: u64,
    /// Number of levels, level 0 included; the last one is never compacted further.
    pub max_levels: u32,
}

impl Default for Leveled {
    /// RocksDB's defaults: trigger 4, 256 MiB level 1, ratio 10, 64 MiB files, 7 levels.
    fn default() -> Self {
        Leveled {
            l0_trigger: 4,
            max_l0_merge: 64,
            base_level_bytes: 256 << 20,
            size_ratio: 10,
            target_file_size: 64 << 20,
            max_levels: 7,
        }
    }
}

/// The row hull `[lo, hi]` of the files at `idx`.
fn hull(files: &[FileInfo], idx: &[usize]) -> (Vec<u8>, Vec<u8>) {
    let lo = idx.iter().map(|&i| &files[i].smallest).min().cloned();
    let hi = idx.iter().map(|&i| &files[i].largest).max().cloned();
    (lo.unwrap_or_default(), hi.unwrap_or_default())
}

impl Leveled {
    /// Bytes level `n >= 1` may hold.
    pub fn level_target(&self, n: u32) -> u64 {
        let mut t = self.base_level_bytes.max(1);
        for _ in 1..n {
            t = t.saturating_mul(self.size_ratio.max(2));
        }
        t
    }

    /// The score of every level (index = level); >= 1.0 means it needs compaction. The
    /// last level always scores 0.
    pub fn scores(&self, files: &[FileInfo]) -> Vec<f64> {
        let levels = self.max_levels.max(2) as usize;
        let mut bytes = vec![0u64; levels];
        let mut count = vec![0usize; levels];
        for f in files {
            let l = (f.level as usize).min(levels - 1);
            bytes[l] += f.size;
            count[l] += 1;
        }
        (0..levels)
            .map(|l| match l {
                _ if l == levels - 1 => 0.0,
                0 => count[0] as f64 / self.l0_trigger.max(1) as f64,
                _ => bytes[l] as f64 / self.level_target(l as u32) as f64,
            })
            .collect()
    }

    /// Picks the next compaction, or `None` when every level is within its target.
    pub fn pick(&self, files: &[FileInfo]) -> Option<Pick> {
        let scores = self.scores(files);
        let (level, score) = scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))?;
        if *score < 1.0 {
            return None;
        }
        let level = level as u32;
        let (seeds, l0_complete) = if level == 0 {
            // Indices ascend from the newest file: the oldest are at the end.
            let l0: Vec<usize> = (0..files.len()).filter(|&i| files[i].level == 0).collect();
            let take = l0.len().min(self.max_l0_merge.max(1));
            (l0[l0.len() - take..].to_vec(), take == l0.len())
        } else {
            (vec![self.best_file(files, level)?], true)
        };
        let (lo, hi) = hull(files, &seeds);
        let below: Vec<usize> = (0..files.len())
            .filter(|&i| files[i].level == level + 1 && files[i].overlaps(&lo, &hi))
            .collect();
        let trivial_move = level > 0 && below.is_empty();
        let mut inputs = seeds;
        inputs.extend(below);
        inputs.sort_unstable();
        let (lo, hi) = hull(files, &inputs);
        let deeper = files
            .iter()
            .any(|f| f.level > level + 1 && f.overlaps(&lo, &hi));
        Some(Pick {
            inputs,
            output_level: level + 1,
            trivial_move,
            drop_markers: l0_complete && !deeper && !trivial_move,
        })
    }

    /// The file of `level` with the fewest overlapping bytes in the next level per byte.
    fn best_file(&self, files: &[FileInfo], level: u32) -> Option<usize> {
        let ratio = |i: usize| {
            let f = &files[i];
            let below: u64 = files
                .iter()
                .filter(|g| g.level == level + 1 && g.overlaps(&f.smallest, &f.largest))
                .map(|g| g.size)
                .sum();
            below as f64 / f.size.max(1) as f64
        };
        (0..files.len())
            .filter(|&i| files[i].level == level)
            .min_by(|&a, &b| ratio(a).total_cmp(&ratio(b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(level: u32, size: u64, lo: &str, hi: &str) -> FileInfo {
        FileInfo {
            level,
            size,
            smallest: lo.as_bytes().to_vec(),
            largest: hi.as_bytes().to_vec(),
        }
    }

    fn small() -> Leveled {
        Leveled {
            l0_trigger: 2,
            base_level_bytes: 100,
            size_ratio: 10,
            target_file_size: 50,
            ..Leveled::default()
        }
    }

    #[test]
    fn nothing_to_do_below_every_target() {
        let p = small();
        assert_eq!(p.pick(&[]), None);
        assert_eq!(p.pick(&[f(0, 10, "a", "z"), f(1, 90, "a", "m")]), None);
    }

    #[test]
    fn level0_goes_to_level1_with_the_overlapping_files() {
        let p = small();
        let files = [
            f(0, 10, "c", "e"),
            f(0, 10, "d", "f"),
            f(1, 20, "a", "b"),
            f(1, 20, "e", "g"),
            f(1, 20, "h", "k"),
        ];
        let pick = p.pick(&files).unwrap();
        assert_eq!(pick.inputs, vec![0, 1, 3]);
        assert_eq!(pick.output_level, 1);
        assert!(!pick.trivial_move);
        assert!(pick.drop_markers, "nothing below level 1");
    }

    #[test]
    fn markers_stay_when_older_data_lies_deeper() {
        let p = small();
        let files = [f(0, 10, "c", "e"), f(0, 10, "d", "f"), f(3, 20, "a", "z")];
        let pick = p.pick(&files).unwrap();
        assert_eq!(pick.inputs, vec![0, 1]);
        assert!(!pick.drop_markers);
    }

    #[test]
    fn only_the_oldest_level0_files_and_then_no_marker_dropping() {
        let p = Leveled {
            max_l0_merge: 2,
            ..small()
        };
        let files = [f(0, 1, "a", "b"), f(0, 1, "a", "b"), f(0, 1, "a", "b")];
        let pick = p.pick(&files).unwrap();
        assert_eq!(pick.inputs, vec![1, 2]);
        assert!(!pick.drop_markers);
    }

    #[test]
    fn an_oversized_level_moves_its_least_overlapping_file_down() {
        let p = small();
        let files = [
            f(1, 60, "a", "f"),
            f(1, 60, "g", "m"),
            f(2, 500, "a", "c"),
            f(2, 10, "n", "z"),
        ];
        let pick = p.pick(&files).unwrap();
        assert_eq!(pick.inputs, vec![1]);
        assert_eq!(pick.output_level, 2);
        assert!(pick.trivial_move);
        assert!(!pick.drop_markers);
    }

    #[test]
    fn the_highest_score_wins_and_the_last_level_never_compacts() {
        let p = Leveled {
            max_levels: 3,
            ..small()
        };
        // Level 1 at 3x its target beats level 0 at 1x.
        let files = [f(0, 1, "a", "b"), f(0, 1, "a", "b"), f(1, 300, "c", "d")];
        assert_eq!(p.pick(&files).unwrap().output_level, 2);
        assert_eq!(p.pick(&[f(2, 1 << 40, "a", "z")]), None);
    }
}
