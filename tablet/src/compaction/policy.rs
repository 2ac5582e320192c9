//! What a compaction policy sees and answers: [`FileInfo`] in, [`Pick`] out.
//!
//! Policies are pure functions of the SSTable set's metadata (level, size, row bounds), so
//! they are unit-tested and simulated ([`super::sim`]) without files. [`Policy`] selects
//! one per tablet.

use super::{Leveled, SizeTiered};

/// One SSTable as a policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// Its level: 0 for flush outputs (and every file under size-tiered); levels >= 1
    /// hold files whose row ranges never overlap.
    pub level: u32,
    /// File size in bytes.
    pub size: u64,
    /// Smallest row, inclusive (any byte string that orders like the rows: the tablet
    /// passes encoded row prefixes).
    pub smallest: Vec<u8>,
    /// Largest row, inclusive.
    pub largest: Vec<u8>,
}

impl FileInfo {
    /// True when the row ranges `[smallest, largest]` of `self` and `[lo, hi]` intersect.
    pub fn overlaps(&self, lo: &[u8], hi: &[u8]) -> bool {
        self.smallest.as_slice() <= hi && lo <= self.largest.as_slice()
    }
}

/// A compaction to run: which files, into which level, and what may be dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pick {
    /// Indices into the file list given to the policy, ascending.
    pub inputs: Vec<usize>,
    /// Level of the outputs.
    pub output_level: u32,
    /// Move the single input to `output_level` without rewriting it (nothing overlaps it
    /// there).
    pub trivial_move: bool,
    /// No data older than the inputs overlaps their rows, so deletion markers (and the
    /// cells they hide) may be dropped.
    pub drop_markers: bool,
}

/// The compaction policy of a tablet.
#[derive(Clone, Debug, PartialEq)]
pub enum Policy {
    /// Merge SSTables of similar size (every file stays at level 0).
    SizeTiered(SizeTiered),
    /// Leveled: L0 of flush outputs, L1.. of non-overlapping runs growing by a ratio.
    Leveled(Leveled),
}

impl Policy {
    /// The next compaction for `files` (listed newest first within level 0), or `None`.
    pub fn pick(&self, files: &[FileInfo]) -> Option<Pick> {
        match self {
            Policy::SizeTiered(p) => {
                let sizes: Vec<u64> = files.iter().map(|f| f.size).collect();
                let inputs = p.pick(&sizes)?;
                let drop_markers = inputs.len() == files.len();
                Some(Pick {
                    inputs,
                    output_level: 0,
                    trivial_move: false,
                    drop_markers,
                })
            }
            Policy::Leveled(p) => p.pick(files),
        }
    }

    /// Outputs are cut into files of about this size (at row boundaries); `None`: one
    /// output file per compaction.
    pub fn target_file_size(&self) -> Option<u64> {
        match self {
            Policy::SizeTiered(_) => None,
            Policy::Leveled(p) => Some(p.target_file_size),
        }
    }

    /// The level a major compaction (every file of a group into one run) writes to.
    pub fn major_level(&self, files: &[FileInfo]) -> u32 {
        match self {
            Policy::SizeTiered(_) => 0,
            Policy::Leveled(p) => files
                .iter()
                .map(|f| f.level)
                .max()
                .unwrap_or(1)
                .clamp(1, p.max_levels - 1),
        }
    }

    /// The policy's name as the command-line flags spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::SizeTiered(_) => "size-tiered",
            Policy::Leveled(_) => "leveled",
        }
    }

    /// Parses `size-tiered` or `leveled` (default parameters).
    pub fn parse(name: &str) -> Result<Policy, String> {
        match name {
            "size-tiered" => Ok(Policy::SizeTiered(SizeTiered::default())),
            "leveled" => Ok(Policy::Leveled(Leveled::default())),
            other => Err(format!(
                "unknown compaction policy {other:?} (expected size-tiered or leveled)"
            )),
        }
    }
}
