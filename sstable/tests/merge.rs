//! Merge combinators against a model: the stable sort of all sources' entries by key.

use proptest::prelude::*;
use sstable::{BoxedIter, ConcatIter, Error, KvIter, MergeIter, Result, TwoMergeIter, VecIter};

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn drain(it: &mut dyn KvIter) -> Result<Entries> {
    let mut out = Vec::new();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next()?;
    }
    Ok(out)
}

fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
    (k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

fn boxed(e: Entries) -> BoxedIter {
    Box::new(VecIter::new(e))
}

/// The model: every entry, ordered by (key, source index), keeping each source's order.
fn model(sources: &[Entries]) -> Entries {
    let mut all: Vec<(Vec<u8>, usize, usize, Vec<u8>)> = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        for (j, (k, v)) in s.iter().enumerate() {
            all.push((k.clone(), i, j, v.clone()));
        }
    }
    all.sort();
    all.into_iter().map(|(k, _, _, v)| (k, v)).collect()
}

/// A source that fails on its `fail_at`-th `next`.
struct Failing {
    inner: VecIter,
    nexts: usize,
    fail_at: usize,
}

impl KvIter for Failing {
    fn valid(&self) -> bool {
        self.inner.valid()
    }
    fn key(&self) -> &[u8] {
        self.inner.key()
    }
    fn value(&self) -> &[u8] {
        self.inner.value()
    }
    fn next(&mut self) -> Result<()> {
        self.nexts += 1;
        if self.nexts == self.fail_at {
            return Err(Error::corruption("bad.sst", 42, "injected"));
        }
        self.inner.next()
    }
    fn seek(&mut self, t: &[u8]) -> Result<()> {
        self.inner.seek(t)
    }
    fn seek_to_first(&mut self) -> Result<()> {
        self.inner.seek_to_first()
    }
}

#[test]
fn merge_yields_equal_keys_from_every_source_lower_index_first() {
    let sources = [
        vec![kv("a", "new"), kv("c", "new")],
        vec![kv("a", "old"), kv("b", "old"), kv("c", "old")],
        vec![],
        vec![kv("c", "oldest")],
    ];
    let mut m = MergeIter::new(sources.iter().cloned().map(boxed).collect());
    assert!(!m.valid());
    m.seek_to_first().unwrap();
    let got = drain(&mut m).unwrap();
    assert_eq!(
        got,
        vec![
            kv("a", "new"),
            kv("a", "old"),
            kv("b", "old"),
            kv("c", "new"),
            kv("c", "old"),
            kv("c", "oldest")
        ]
    );
    m.seek(b"b").unwrap();
    assert_eq!(m.key(), b"b");
    m.seek(b"d").unwrap();
    assert!(!m.valid());
}

#[test]
fn two_merge_prefers_a_on_ties() {
    let a = VecIter::new(vec![kv("a", "A"), kv("b", "A")]);
    let b = VecIter::new(vec![kv("a", "B"), kv("c", "B")]);
    let mut m = TwoMergeIter::new(a, b);
    m.seek_to_first().unwrap();
    assert_eq!(
        drain(&mut m).unwrap(),
        vec![kv("a", "A"), kv("a", "B"), kv("b", "A"), kv("c", "B")]
    );
}

#[test]
fn concat_reads_sources_in_order_and_skips_empty_ones() {
    let parts = vec![
        vec![kv("a", "1"), kv("b", "2")],
        vec![],
        vec![kv("d", "3")],
        vec![kv("f", "4"), kv("g", "5")],
    ];
    let largest: Vec<Vec<u8>> = vec![b"b".to_vec(), b"c".to_vec(), b"d".to_vec(), b"g".to_vec()];
    for with_bounds in [false, true] {
        let srcs = parts.iter().cloned().map(boxed).collect();
        let mut c = if with_bounds {
            ConcatIter::with_largest_keys(srcs, largest.clone())
        } else {
            ConcatIter::new(srcs)
        };
        c.seek_to_first().unwrap();
        assert_eq!(drain(&mut c).unwrap(), model(&parts));
        c.seek(b"c").unwrap();
        assert_eq!(c.key(), b"d");
        c.seek(b"e").unwrap();
        assert_eq!(drain(&mut c).unwrap(), vec![kv("f", "4"), kv("g", "5")]);
        c.seek(b"h").unwrap();
        assert!(!c.valid());
    }
}

#[test]
fn a_source_error_surfaces_and_leaves_the_merge_invalid() {
    let failing = Failing {
        inner: VecIter::new(vec![kv("a", "1"), kv("b", "2"), kv("c", "3")]),
        nexts: 0,
        fail_at: 2,
    };
    let sources: Vec<BoxedIter> = vec![Box::new(failing), boxed(vec![kv("bb", "x")])];
    let mut m = MergeIter::new(sources);
    m.seek_to_first().unwrap();
    let e = drain(&mut m).unwrap_err();
    assert!(e.is_corruption(), "{e}");
    assert!(!m.valid());

    let failing = Failing {
        inner: VecIter::new(vec![kv("a", "1"), kv("b", "2")]),
        nexts: 0,
        fail_at: 1,
    };
    let mut two = TwoMergeIter::new(failing, VecIter::new(vec![kv("z", "z")]));
    two.seek_to_first().unwrap();
    assert!(two.next().is_err());
    assert!(!two.valid());

    let failing = Failing {
        inner: VecIter::new(vec![kv("a", "1")]),
        nexts: 0,
        fail_at: 1,
    };
    let mut c = ConcatIter::new(vec![Box::new(failing), boxed(vec![kv("b", "2")])]);
    c.seek_to_first().unwrap();
    assert!(c.next().is_err());
    assert!(!c.valid());
}

#[test]
#[should_panic(expected = "sorted")]
fn vec_iter_rejects_unsorted_input() {
    VecIter::new(vec![kv("b", ""), kv("a", "")]);
}

fn source() -> impl Strategy<Value = Entries> {
    proptest::collection::btree_map(
        proptest::collection::vec(0u8..6, 0..4),
        proptest::collection::vec(any::<u8>(), 0..4),
        0..20,
    )
    .prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn merge_matches_the_model(
        sources in proptest::collection::vec(source(), 0..6),
        targets in proptest::collection::vec(proptest::collection::vec(0u8..6, 0..4), 1..10),
    ) {
        let want = model(&sources);
        let mut m = MergeIter::new(sources.iter().cloned().map(boxed).collect());
        m.seek_to_first().unwrap();
        prop_assert_eq!(drain(&mut m).unwrap(), want.clone());
        for t in &targets {
            m.seek(t).unwrap();
            let tail: Entries = want.iter().filter(|(k, _)| k >= t).cloned().collect();
            prop_assert_eq!(drain(&mut m).unwrap(), tail);
        }
        if let Some(first) = sources.first() {
            // Cut the first source into three disjoint parts and concatenate them.
            let (a, b) = (first.len() / 3, 2 * first.len() / 3);
            let parts = [first[..a].to_vec(), first[a..b].to_vec(), first[b..].to_vec()];
            let largest: Vec<Vec<u8>> = parts
                .iter()
                .scan(Vec::new(), |last, p| {
                    if let Some((k, _)) = p.last() {
                        *last = k.clone();
                    }
                    Some(last.clone())
                })
                .collect();
            for bounds in [false, true] {
                let srcs = parts.iter().cloned().map(boxed).collect();
                let mut c = if bounds {
                    ConcatIter::with_largest_keys(srcs, largest.clone())
                } else {
                    ConcatIter::new(srcs)
                };
                c.seek_to_first().unwrap();
                prop_assert_eq!(drain(&mut c).unwrap(), first.clone());
                for t in &targets {
                    c.seek(t).unwrap();
                    let tail: Entries = first.iter().filter(|(k, _)| k >= t).cloned().collect();
                    prop_assert_eq!(drain(&mut c).unwrap(), tail);
                }
            }
        }
        if sources.len() >= 2 {
            let a = VecIter::new(sources[0].clone());
            let b = VecIter::new(sources[1].clone());
            let mut two = TwoMergeIter::new(a, b);
            two.seek_to_first().unwrap();
            prop_assert_eq!(drain(&mut two).unwrap(), model(&sources[..2]));
        }
    }
}
