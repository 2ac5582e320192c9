//! Iterator combinators: k-way merge, concatenation, two-way merge, and a vector source.
//!
//! All follow the [`KvIter`] contract. Merges never drop entries: equal keys from several
//! sources are all yielded, the source listed first (lower index, or `A` before `B`)
//! first, so a caller that lists sources newest first sees the newest version first.
//! Dropping shadowed versions and tombstones is a separate stage above these.
//!
//! After any source returns an error the combinator is invalid until the next seek.

use crate::error::Result;
use crate::iter::KvIter;

/// A boxed source, as the combinators hold them.
pub type BoxedIter = Box<dyn KvIter + Send>;

/// A cursor over an in-memory vector of entries sorted by key (for tests and small
/// sources such as a frozen batch).
#[derive(Debug, Clone, Default)]
pub struct VecIter {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// Current position; `entries.len()` when invalid.
    pos: usize,
}

impl VecIter {
    /// A cursor over `entries`. Panics unless the keys are in non-decreasing order (a
    /// programmer error).
    pub fn new(entries: Vec<(Vec<u8>, Vec<u8>)>) -> VecIter {
        assert!(
            entries.windows(2).all(|w| w[0].0 <= w[1].0),
            "VecIter entries must be sorted by key"
        );
        let pos = entries.len();
        VecIter { entries, pos }
    }
}

impl KvIter for VecIter {
    fn valid(&self) -> bool {
        self.pos < self.entries.len()
    }
    fn key(&self) -> &[u8] {
        &self.entries[self.pos].0
    }
    fn value(&self) -> &[u8] {
        &self.entries[self.pos].1
    }
    fn next(&mut self) -> Result<()> {
        assert!(self.valid(), "next() on an invalid VecIter");
        self.pos += 1;
        Ok(())
    }
    fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.pos = self.entries.partition_point(|(k, _)| k[..] < *target);
        Ok(())
    }
    fn seek_to_first(&mut self) -> Result<()> {
        self.pos = 0;
        Ok(())
    }
}

/// K-way merge of sources by key with a binary min-heap of source indices ordered by
/// (key, index).
///
/// Invariant: `heap` holds exactly the indices of the valid sources, heap-ordered.
pub struct MergeIter {
    sources: Vec<BoxedIter>,
    heap: Vec<usize>,
}

/// True when source `a` sorts before source `b`: smaller key, or equal key and lower index.
fn before(sources: &[BoxedIter], a: usize, b: usize) -> bool {
    (sources[a].key(), a) < (sources[b].key(), b)
}

fn sift_down(sources: &[BoxedIter], heap: &mut [usize], mut i: usize) {
    loop {
        let (l, r) = (2 * i + 1, 2 * i + 2);
        let mut min = i;
        if l < heap.len() && before(sources, heap[l], heap[min]) {
            min = l;
        }
        if r < heap.len() && before(sources, heap[r], heap[min]) {
            min = r;
        }
        if min == i {
            return;
        }
        heap.swap(i, min);
        i = min;
    }
}

impl MergeIter {
    /// A merge of `sources`; on equal keys the lower index comes first.
    pub fn new(sources: Vec<BoxedIter>) -> MergeIter {
        MergeIter {
            sources,
            heap: Vec::new(),
        }
    }

    /// Rebuilds the heap from the valid sources.
    fn rebuild(&mut self) {
        self.heap = (0..self.sources.len())
            .filter(|&i| self.sources[i].valid())
            .collect();
        for i in (0..self.heap.len() / 2).rev() {
            sift_down(&self.sources, &mut self.heap, i);
        }
    }

    fn position_all(&mut self, target: Option<&[u8]>) -> Result<()> {
        self.heap.clear();
        for s in &mut self.sources {
            match target {
                Some(t) => s.seek(t)?,
                None => s.seek_to_first()?,
            }
        }
        self.rebuild();
        Ok(())
    }
}

impl KvIter for MergeIter {
    fn valid(&self) -> bool {
        !self.heap.is_empty()
    }

    fn key(&self) -> &[u8] {
        self.sources[self.heap[0]].key()
    }

    fn value(&self) -> &[u8] {
        self.sources[self.heap[0]].value()
    }

    fn next(&mut self) -> Result<()> {
        assert!(self.valid(), "next() on an invalid MergeIter");
        let top = self.heap[0];
        if let Err(e) = self.sources[top].next() {
            self.heap.clear();
            return Err(e);
        }
        if !self.sources[top].valid() {
            let last = self.heap.pop().expect("non-empty");
            if self.heap.is_empty() {
                return Ok(());
            }
            self.heap[0] = last;
        }
        sift_down(&self.sources, &mut self.heap, 0);
        Ok(())
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.position_all(Some(target))
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.position_all(None)
    }
}

/// Sources whose key ranges are disjoint and increasing (the tables of one level, or a
/// split tablet's halves), read one after the other.
pub struct ConcatIter {
    sources: Vec<BoxedIter>,
    /// Largest key of each source, when known, to seek without touching earlier sources.
    largest: Option<Vec<Vec<u8>>>,
    /// Current source; `sources.len()` when invalid.
    current: usize,
}

impl ConcatIter {
    /// A concatenation; a seek tries sources in order until one has a key >= target.
    pub fn new(sources: Vec<BoxedIter>) -> ConcatIter {
        let current = sources.len();
        ConcatIter {
            sources,
            largest: None,
            current,
        }
    }

    /// A concatenation that knows each source's largest key, so a seek goes straight to
    /// the one source that can hold the target. Panics if the lengths differ.
    pub fn with_largest_keys(sources: Vec<BoxedIter>, largest: Vec<Vec<u8>>) -> ConcatIter {
        assert_eq!(sources.len(), largest.len(), "one largest key per source");
        let mut it = ConcatIter::new(sources);
        it.largest = Some(largest);
        it
    }

    /// Positions at the first entry >= `target` (or the first entry) in sources `i..`.
    fn settle(&mut self, mut i: usize, target: Option<&[u8]>) -> Result<()> {
        self.current = self.sources.len();
        while i < self.sources.len() {
            match target {
                Some(t) => self.sources[i].seek(t)?,
                None => self.sources[i].seek_to_first()?,
            }
            if self.sources[i].valid() {
                self.current = i;
                return Ok(());
            }
            i += 1;
        }
        Ok(())
    }
}

impl KvIter for ConcatIter {
    fn valid(&self) -> bool {
        self.current < self.sources.len() && self.sources[self.current].valid()
    }

    fn key(&self) -> &[u8] {
        self.sources[self.current].key()
    }

    fn value(&self) -> &[u8] {
        self.sources[self.current].value()
    }

    fn next(&mut self) -> Result<()> {
        assert!(self.valid(), "next() on an invalid ConcatIter");
        let i = self.current;
        let r = self.sources[i].next();
        let r = match r {
            Ok(()) if !self.sources[i].valid() => self.settle(i + 1, None),
            other => other,
        };
        if r.is_err() {
            self.current = self.sources.len();
        }
        r
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        let start = match &self.largest {
            Some(l) => l.partition_point(|k| k[..] < *target),
            None => 0,
        };
        let r = self.settle(start, Some(target));
        if r.is_err() {
            self.current = self.sources.len();
        }
        r
    }

    fn seek_to_first(&mut self) -> Result<()> {
        let r = self.settle(0, None);
        if r.is_err() {
            self.current = self.sources.len();
        }
        r
    }
}

/// Which side of a [`TwoMergeIter`] is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// Merge of two sources of different types (say a memtable and the SSTables); on equal
/// keys `A`'s entry comes first, then `B`'s.
pub struct TwoMergeIter<A, B> {
    a: A,
    b: B,
    current: Option<Side>,
}

impl<A: KvIter, B: KvIter> TwoMergeIter<A, B> {
    /// A merge of `a` (preferred on ties) and `b`.
    pub fn new(a: A, b: B) -> TwoMergeIter<A, B> {
        TwoMergeIter {
            a,
            b,
            current: None,
        }
    }

    fn choose(&mut self) {
        self.current = match (self.a.valid(), self.b.valid()) {
            (true, true) if self.a.key() <= self.b.key() => Some(Side::A),
            (true, true) => Some(Side::B),
            (true, false) => Some(Side::A),
            (false, true) => Some(Side::B),
            (false, false) => None,
        };
    }

    fn after(&mut self, r: Result<()>) -> Result<()> {
        match r {
            Ok(()) => self.choose(),
            Err(_) => self.current = None,
        }
        r
    }
}

impl<A: KvIter, B: KvIter> KvIter for TwoMergeIter<A, B> {
    fn valid(&self) -> bool {
        self.current.is_some()
    }

    fn key(&self) -> &[u8] {
        match self.current.expect("key() on an invalid TwoMergeIter") {
            Side::A => self.a.key(),
            Side::B => self.b.key(),
        }
    }

    fn value(&self) -> &[u8] {
        match self.current.expect("value() on an invalid TwoMergeIter") {
            Side::A => self.a.value(),
            Side::B => self.b.value(),
        }
    }

    fn next(&mut self) -> Result<()> {
        let r = match self.current.expect("next() on an invalid TwoMergeIter") {
            Side::A => self.a.next(),
            Side::B => self.b.next(),
        };
        self.after(r)
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        let r = self.a.seek(target).and_then(|()| self.b.seek(target));
        self.after(r)
    }

    fn seek_to_first(&mut self) -> Result<()> {
        let r = self.a.seek_to_first().and_then(|()| self.b.seek_to_first());
        self.after(r)
    }
}
