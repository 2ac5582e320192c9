//! Size-tiered compaction (as Cassandra's STCS and Bigtable's merging compactions), as a
//! pure policy over SSTable sizes: files of similar size are merged once enough of them
//! pile up. Every file stays at level 0.

/// Size-tiered compaction (as Cassandra's STCS and Bigtable's merging compactions): SSTables
/// of similar size are merged once enough of them pile up.
#[derive(Clone, Debug, PartialEq)]
pub struct SizeTiered {
    /// Merge when a tier holds at least this many SSTables.
    pub min_merge: usize,
    /// Merge at most this many at once.
    pub max_merge: usize,
    /// An SSTable joins a tier when its size is within `[avg * low, avg * high]`.
    pub bucket_low: f64,
    /// See `bucket_low`.
    pub bucket_high: f64,
    /// SSTables smaller than this all share the smallest tier.
    pub min_size: u64,
}

impl Default for SizeTiered {
    fn default() -> Self {
        SizeTiered {
            min_merge: 4,
            max_merge: 32,
            bucket_low: 0.5,
            bucket_high: 1.5,
            min_size: 4 << 20,
        }
    }
}

impl SizeTiered {
    /// Picks the indices (into `sizes`) of SSTables to merge, or `None`. Prefers the tier
    /// of the smallest files (cheapest to merge, most files removed per byte).
    pub fn pick(&self, sizes: &[u64]) -> Option<Vec<usize>> {
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        order.sort_by_key(|&i| sizes[i]);
        let mut tiers: Vec<(f64, Vec<usize>)> = Vec::new();
        for i in order {
            let s = sizes[i];
            let fits = |avg: f64| {
                (s < self.min_size && avg < self.min_size as f64)
                    || (s as f64 >= avg * self.bucket_low && s as f64 <= avg * self.bucket_high)
            };
            match tiers.iter_mut().find(|(avg, _)| fits(*avg)) {
                Some((avg, members)) => {
                    *avg = (*avg * members.len() as f64 + s as f64) / (members.len() + 1) as f64;
                    members.push(i);
                }
                None => tiers.push((s as f64, vec![i])),
            }
        }
        tiers
            .into_iter()
            .filter(|(_, m)| m.len() >= self.min_merge.max(2))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, mut m)| {
                m.truncate(self.max_merge);
                m.sort_unstable();
                m
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_a_tier_of_similar_sizes() {
        let p = SizeTiered {
            min_merge: 4,
            min_size: 10,
            ..Default::default()
        };
        assert_eq!(p.pick(&[100, 100, 100]), None);
        assert_eq!(p.pick(&[100, 1000, 110, 90, 105]), Some(vec![0, 2, 3, 4]));
        // Small files share one tier whatever their ratio.
        assert_eq!(p.pick(&[1, 9, 3, 5, 500]), Some(vec![0, 1, 2, 3]));
        // The smallest qualifying tier wins.
        let sizes = [1000, 1000, 1000, 1000, 100, 100, 100, 100];
        assert_eq!(p.pick(&sizes), Some(vec![4, 5, 6, 7]));
    }

    #[test]
    fn respects_max_merge() {
        let p = SizeTiered {
            min_merge: 2,
            max_merge: 3,
            ..Default::default()
        };
        assert_eq!(p.pick(&[5; 10]).map(|v| v.len()), Some(3));
    }
}
