//! A compaction simulator: runs a [`Policy`] on synthetic flushes without I/O.
//!
//! Keys are integers `0..key_space`, each holding at most `bytes_per_key` live bytes. A
//! flush writes `flush_bytes` over a key range (the whole space for random workloads, the
//! next slice for sequential ones). A simulated compaction of inputs with row hull `[lo,
//! hi]` writes `min(sum of input sizes, live bytes of the keys written so far in [lo,
//! hi])`: overwritten versions collapse, new keys do not. Outputs are cut into files of the
//! policy's target size with their ranges split proportionally. After every flush the
//! policy runs until it picks nothing, and the simulator records:
//!
//! - write amplification: (flushed + compaction-written bytes) / flushed bytes;
//! - space amplification: bytes of all files / live bytes;
//! - read amplification: files a point lookup may have to probe without Bloom filters
//!   (level-0 files plus non-empty levels >= 1, or every file under size-tiered).
//!
//! It is a model, not a measurement: sizes ignore compression and key overheads. The
//! invariants checked by [`Simulator::check_levels`] (levels >= 1 never overlap) are the
//! policy's, whatever the model's accuracy.

use super::policy::{FileInfo, Pick, Policy};

/// How flushes spread over the key space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPattern {
    /// Every flush covers the whole key space (random inserts or overwrites).
    Random,
    /// Flush `i` covers the `i`-th slice (sequential inserts).
    Sequential,
}

/// One point of a simulated run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimPoint {
    /// Flushes so far.
    pub flushes: usize,
    /// Bytes flushed so far.
    pub flushed: u64,
    /// Bytes compactions wrote so far.
    pub compacted: u64,
    /// Bytes of all files now.
    pub file_bytes: u64,
    /// Live bytes now.
    pub live_bytes: u64,
    /// Files a lookup may probe now.
    pub read_amp: usize,
    /// Files now.
    pub files: usize,
}

impl SimPoint {
    /// (flushed + compacted) / flushed.
    pub fn write_amp(&self) -> f64 {
        (self.flushed + self.compacted) as f64 / self.flushed.max(1) as f64
    }

    /// File bytes / live bytes.
    pub fn space_amp(&self) -> f64 {
        self.file_bytes as f64 / self.live_bytes.max(1) as f64
    }
}

/// A simulated tablet: files as the policy sees them, plus the model's bookkeeping.
pub struct Simulator {
    policy: Policy,
    /// Level 0 newest first, then the rest (as the tablet lists them).
    files: Vec<FileInfo>,
    key_space: u64,
    bytes_per_key: u64,
    /// Keys below this count as written (the model tracks one written prefix: exact for
    /// sequential fills, the whole space after the first random flush).
    written_upto: u64,
    point: SimPoint,
    /// Compactions that ran.
    pub compactions: usize,
}

fn enc(k: u64) -> Vec<u8> {
    k.to_be_bytes().to_vec()
}

fn dec(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

impl Simulator {
    /// A simulator of `policy` over `key_space` keys of `bytes_per_key` bytes each.
    pub fn new(policy: Policy, key_space: u64, bytes_per_key: u64) -> Simulator {
        Simulator {
            policy,
            files: Vec::new(),
            key_space: key_space.max(1),
            bytes_per_key: bytes_per_key.max(1),
            written_upto: 0,
            point: SimPoint::default(),
            compactions: 0,
        }
    }

    /// The files now (level 0 newest first).
    pub fn files(&self) -> &[FileInfo] {
        &self.files
    }

    /// Adds one flush of `bytes` over keys `[lo, hi]`, then compacts until the policy
    /// picks nothing; returns the point after it.
    pub fn flush(&mut self, bytes: u64, lo: u64, hi: u64) -> SimPoint {
        let (lo, hi) = (lo.min(hi), hi.max(lo).min(self.key_space - 1));
        self.written_upto = self.written_upto.max(hi + 1);
        self.files.insert(
            0,
            FileInfo {
                level: 0,
                size: bytes,
                smallest: enc(lo),
                largest: enc(hi),
            },
        );
        self.point.flushes += 1;
        self.point.flushed += bytes;
        while let Some(pick) = self.policy.pick(&self.files) {
            self.apply(&pick);
            self.compactions += 1;
        }
        self.snapshot()
    }

    /// Runs `flushes` flushes of `flush_bytes` in `pattern`; the point after each.
    pub fn run(&mut self, pattern: KeyPattern, flushes: usize, flush_bytes: u64) -> Vec<SimPoint> {
        let per_flush = (flush_bytes / self.bytes_per_key).max(1);
        (0..flushes)
            .map(|i| match pattern {
                KeyPattern::Random => self.flush(flush_bytes, 0, self.key_space - 1),
                KeyPattern::Sequential => {
                    let lo = (i as u64 * per_flush) % self.key_space;
                    self.flush(flush_bytes, lo, lo + per_flush - 1)
                }
            })
            .collect()
    }

    /// Applies a pick as the tablet would: inputs replaced by outputs of the model's size.
    pub fn apply(&mut self, pick: &Pick) {
        let inputs: Vec<FileInfo> = pick.inputs.iter().map(|&i| self.files[i].clone()).collect();
        let mut keep = Vec::with_capacity(self.files.len());
        for (i, f) in self.files.drain(..).enumerate() {
            if pick.inputs.binary_search(&i).is_err() {
                keep.push(f);
            }
        }
        self.files = keep;
        if pick.trivial_move {
            self.files.extend(inputs.into_iter().map(|mut f| {
                f.level = pick.output_level;
                f
            }));
            return;
        }
        let lo = inputs.iter().map(|f| dec(&f.smallest)).min().unwrap_or(0);
        let hi = inputs.iter().map(|f| dec(&f.largest)).max().unwrap_or(0);
        let sum: u64 = inputs.iter().map(|f| f.size).sum();
        let live = self.live_in(lo, hi);
        let out = sum.min(live.max(1));
        self.point.compacted += out;
        let target = self.policy.target_file_size().unwrap_or(u64::MAX).max(1);
        let pieces = out.div_ceil(target).clamp(1, hi - lo + 1);
        let width = hi - lo + 1;
        let outputs: Vec<FileInfo> = (0..pieces)
            .map(|p| FileInfo {
                level: pick.output_level,
                size: out / pieces + u64::from(p < out % pieces),
                smallest: enc(lo + width * p / pieces),
                largest: enc(lo + width * (p + 1) / pieces - 1),
            })
            .collect();
        if pick.output_level == 0 {
            self.files.splice(0..0, outputs);
        } else {
            self.files.extend(outputs);
        }
    }

    /// Live bytes of keys `[lo, hi]` under the model.
    fn live_in(&self, lo: u64, hi: u64) -> u64 {
        let hi = hi.min(self.written_upto.saturating_sub(1));
        if hi < lo {
            return 0;
        }
        (hi - lo + 1) * self.bytes_per_key
    }

    /// The current point.
    pub fn snapshot(&mut self) -> SimPoint {
        let l0 = self.files.iter().filter(|f| f.level == 0).count();
        let mut deeper: Vec<u32> = self
            .files
            .iter()
            .filter(|f| f.level > 0)
            .map(|f| f.level)
            .collect();
        deeper.sort_unstable();
        deeper.dedup();
        self.point.read_amp = l0 + deeper.len();
        self.point.files = self.files.len();
        self.point.file_bytes = self.files.iter().map(|f| f.size).sum();
        self.point.live_bytes = self.live_in(0, self.key_space - 1).min(self.point.flushed);
        self.point.clone()
    }

    /// Checks that no two files of a level >= 1 overlap; the offending pair on failure.
    pub fn check_levels(&self) -> Result<(), String> {
        for (i, a) in self.files.iter().enumerate() {
            for b in &self.files[i + 1..] {
                if a.level > 0 && a.level == b.level && a.overlaps(&b.smallest, &b.largest) {
                    return Err(format!("level {} files overlap: {a:?} and {b:?}", a.level));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compaction::{Leveled, SizeTiered};
    use proptest::prelude::*;

    fn leveled(l0: usize, base: u64, ratio: u64, target: u64, levels: u32) -> Policy {
        Policy::Leveled(Leveled {
            l0_trigger: l0,
            max_l0_merge: 64,
            base_level_bytes: base,
            size_ratio: ratio,
            target_file_size: target,
            max_levels: levels,
        })
    }

    #[test]
    fn leveled_keeps_lookups_short_and_size_tiered_writes_less() {
        let mut lv = Simulator::new(leveled(4, 256, 10, 64, 7), 100_000, 1);
        let mut st = Simulator::new(
            Policy::SizeTiered(SizeTiered {
                min_size: 1,
                ..SizeTiered::default()
            }),
            100_000,
            1,
        );
        let a = lv.run(KeyPattern::Random, 200, 32).pop().unwrap();
        let b = st.run(KeyPattern::Random, 200, 32).pop().unwrap();
        lv.check_levels().unwrap();
        assert!(a.write_amp() > b.write_amp(), "{a:?} vs {b:?}");
        assert!(a.read_amp <= 4 + 6, "{a:?}");
        assert_eq!(a.flushed, 200 * 32);
    }

    #[test]
    fn sequential_fills_move_files_down_without_rewriting() {
        let mut lv = Simulator::new(leveled(4, 256, 10, 64, 7), 1 << 40, 1);
        let p = lv.run(KeyPattern::Sequential, 100, 64).pop().unwrap();
        lv.check_levels().unwrap();
        // L0 -> L1 rewrites (L0 files are never moved), everything deeper is moved.
        assert!(p.write_amp() < 2.5, "{p:?}");
    }

    proptest! {
        #[test]
        fn levels_never_overlap(
            flushes in proptest::collection::vec((1u64..200, 0u64..1000, 0u64..1000), 1..80),
            l0 in 1usize..6, base in 10u64..500, ratio in 2u64..12, target in 5u64..200,
            levels in 2u32..6,
        ) {
            let mut sim = Simulator::new(leveled(l0, base, ratio, target, levels), 1000, 1);
            for (bytes, a, b) in flushes {
                sim.flush(bytes, a.min(b), a.max(b));
                prop_assert!(sim.check_levels().is_ok(), "{:?}", sim.check_levels());
            }
        }
    }
}
