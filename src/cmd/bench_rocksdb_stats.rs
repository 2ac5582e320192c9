//! Reading RocksDB's `db_bench` output: the statistics tickers (`--statistics=1`) and the
//! level table of its `stats` benchmark, for the same figures `quarry bench compaction`
//! reports about Quarry.
//!
//! ```text
//! rocksdb.compact.write.bytes COUNT : 280915740          <- tickers, one per line
//! fillrandom   :  44.030 micros/op 22707 ops/sec 8.808 seconds 200000 operations; ...
//!   L0      9/7   37.50 MB   0.5 ...                      <- files/compacting, size
//!  Sum     10/8   87.75 MB   0.0 ...
//! ```
//!
//! Tickers are summed over every db_bench invocation in the text (each process counts from
//! zero); the level table taken is the last one printed.

use regex::Regex;

/// Figures of a db_bench run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RocksFigures {
    /// (flush + compaction bytes written) / bytes written by the user.
    pub write_amp: f64,
    /// Bytes compactions wrote per second of workload time, in MB/s.
    pub compaction_mb_per_sec: f64,
    /// Seconds writers stalled (`rocksdb.stall.micros`).
    pub stall_secs: f64,
    /// Files per level at the end of the workload (index = level).
    pub files_per_level: Vec<usize>,
    /// Bytes of all SSTables at the end of the workload.
    pub sst_bytes: f64,
    /// Bytes of all SSTables after a full compaction (the live data).
    pub live_bytes: f64,
}

impl RocksFigures {
    /// Files a seek positions: every L0 file and one per non-empty deeper level.
    pub fn seek_files(&self) -> usize {
        let l0 = self.files_per_level.first().copied().unwrap_or(0);
        l0 + self
            .files_per_level
            .iter()
            .skip(1)
            .filter(|&&n| n > 0)
            .count()
    }

    /// SSTable bytes / live bytes.
    pub fn space_amp(&self) -> f64 {
        self.sst_bytes / self.live_bytes.max(1.0)
    }
}

fn ticker(text: &str, name: &str) -> f64 {
    let re = Regex::new(&format!(r"(?m)^{} COUNT : (\d+)", regex::escape(name))).expect("regex");
    re.captures_iter(text)
        .filter_map(|c| c[1].parse::<f64>().ok())
        .sum()
}

/// The last level table in `text`: files per level and the `Sum` row's bytes.
fn last_table(text: &str) -> (Vec<usize>, f64) {
    let re = Regex::new(r"(?m)^\s*(L(\d+)|Sum)\s+(\d+)/\d+\s+([\d.]+)\s+(B|KB|MB|GB|TB)\b")
        .expect("regex");
    let (mut files, mut sum) = (Vec::new(), 0.0);
    for c in re.captures_iter(text) {
        let size: f64 = c[4].parse().unwrap_or(0.0);
        let unit = match &c[5] {
            "KB" => 1024.0,
            "MB" => 1024.0 * 1024.0,
            "GB" => 1024.0 * 1024.0 * 1024.0,
            "TB" => 1024.0f64.powi(4),
            _ => 1.0,
        };
        match c.get(2) {
            Some(level) => {
                let level: usize = level.as_str().parse().unwrap_or(0);
                if level == 0 {
                    files.clear();
                }
                if files.len() <= level {
                    files.resize(level + 1, 0);
                }
                files[level] = c[3].parse().unwrap_or(0);
            }
            None => sum = size * unit,
        }
    }
    (files, sum)
}

/// Figures from the workload invocations' output (`run`) and the output of a later
/// `compact,stats` invocation on the same database (`compacted`).
pub fn parse(run: &str, compacted: &str) -> RocksFigures {
    let user = ticker(run, "rocksdb.bytes.written");
    let flush = ticker(run, "rocksdb.flush.write.bytes");
    let compact = ticker(run, "rocksdb.compact.write.bytes");
    let secs_re = Regex::new(r"(?m)^\w+\s*:.*?ops/sec(?:;\s*)?\s+([\d.]+) seconds").expect("regex");
    let secs: f64 = secs_re
        .captures_iter(run)
        .filter_map(|c| c[1].parse::<f64>().ok())
        .sum();
    let (files_per_level, sst_bytes) = last_table(run);
    let (_, live_bytes) = last_table(compacted);
    RocksFigures {
        write_amp: (flush + compact) / user.max(1.0),
        compaction_mb_per_sec: compact / secs.max(1e-3) / 1e6,
        stall_secs: ticker(run, "rocksdb.stall.micros") / 1e6,
        files_per_level,
        sst_bytes,
        live_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tickers_times_and_the_last_level_table() {
        let run = "fillrandom   :      44.030 micros/op 22707 ops/sec 8.808 seconds 200000 operations;   22.0 MB/s\n\
  L0      9/7   37.50 MB   0.5      0.0\n  L1      1/1   50.25 MB   0.0\n Sum     10/8   87.75 MB   0.0\n\
rocksdb.bytes.written COUNT : 200\nrocksdb.flush.write.bytes COUNT : 100\n\
rocksdb.compact.write.bytes COUNT : 300\nrocksdb.stall.micros COUNT : 1500000\n\
  L0      2/0   10.00 MB   0.5\n  L1      0/0   0.00 KB   0.0\n  L2      3/0   60.00 MB   0.0\n Sum      5/0   70.00 MB   0.0\n";
        let compacted = "  L2      2/0   35.00 MB   0.5\n Sum      2/0   35.00 MB   0.0\n";
        let f = parse(run, compacted);
        assert_eq!(f.write_amp, 2.0);
        assert_eq!(f.files_per_level, vec![2, 0, 3]);
        assert_eq!(f.seek_files(), 3);
        assert_eq!(f.space_amp(), 2.0);
        assert_eq!(f.stall_secs, 1.5);
        assert!((f.compaction_mb_per_sec - 300.0 / 8.808 / 1e6).abs() < 1e-12);
    }
}
