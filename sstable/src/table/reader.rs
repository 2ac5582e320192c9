//! Reads an SSTable: checks the footer, loads filter, index and properties at open, then
//! reads data blocks on demand through the block cache (or all at open when pinned).
//!
//! Invariants established by [`Table::open`] before anything is returned: the footer's
//! magic, CRC and version are right; filter, index, properties and footer tile the end of
//! the file; the index's handles tile the data region from offset 0 with no gap; the
//! index and the properties agree (block count, largest key). So every later data block
//! read is in bounds, and each is CRC-checked when read from disk.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::format::{decode_properties, Footer, FOOTER_SIZE};
use super::index::Index;
use super::TableInfo;
use crate::block::{decode_block, Block, BlockHandle, BlockIter, BLOCK_TRAILER_SIZE};
use crate::cache::{next_table_id, BlockCache};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::fs::RandomAccessFile;
use crate::iter::KvIter;

/// Read counters of one table, for read-amplification figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Data blocks read from the file (cache misses and pinning).
    pub blocks_read: u64,
    /// Bytes read from the file for data blocks (with trailers).
    pub bytes_read: u64,
    /// Data block lookups served by the block cache.
    pub cache_hits: u64,
}

/// An open, immutable SSTable.
pub struct Table {
    id: u64,
    file: Arc<dyn RandomAccessFile>,
    cache: Option<Arc<BlockCache>>,
    /// (last key, handle) of every data block, in key order.
    index: Index,
    /// The file's path as blocks name it in corruption errors (formatted once).
    name: Arc<str>,
    filter: Filter,
    info: TableInfo,
    /// End of the data region (the filter block's offset).
    data_end: u64,
    /// Every data block, by offset, when opened with `pin_in_memory`.
    pinned: Option<HashMap<u64, Arc<Block>>>,
    blocks_read: AtomicU64,
    bytes_read: AtomicU64,
    cache_hits: AtomicU64,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Table({}, id {}, {:?})",
            self.path().display(),
            self.id,
            self.info
        )
    }
}

/// Reads and checks the stored block at `h` (payload + trailer).
fn read_stored(file: &dyn RandomAccessFile, h: BlockHandle) -> Result<Vec<u8>> {
    let len = usize::try_from(h.size)
        .ok()
        .and_then(|s| s.checked_add(BLOCK_TRAILER_SIZE))
        .ok_or_else(|| Error::corruption(file.path(), h.offset, "block size overflows"))?;
    let stored = file.read_at(h.offset, len)?;
    decode_block(file.path(), h.offset, &stored)
}

/// Checks that filter, index, properties and footer tile the end of a file of `len`.
fn check_footer_layout(path: &Path, len: u64, f: &Footer) -> Result<()> {
    let footer_at = len - FOOTER_SIZE as u64;
    let mut expect = f.filter.offset;
    for (name, h) in [
        ("filter", f.filter),
        ("index", f.index),
        ("properties", f.properties),
    ] {
        let end = h
            .offset
            .checked_add(h.size)
            .and_then(|e| e.checked_add(BLOCK_TRAILER_SIZE as u64));
        if h.offset != expect || end.is_none_or(|e| e > footer_at) {
            return Err(Error::corruption(
                path,
                footer_at,
                format!("footer's {name} handle {h:?} is out of place"),
            ));
        }
        expect = end.expect("checked");
    }
    if expect != footer_at {
        return Err(Error::corruption(path, footer_at, "gap before the footer"));
    }
    Ok(())
}

/// Decodes the index block and checks that its handles tile `0..data_end`.
fn decode_index(
    path: &Path,
    at: u64,
    block: Block,
    data_end: u64,
) -> Result<Vec<(Vec<u8>, BlockHandle)>> {
    let block = Arc::new(block);
    let mut it = block.iter();
    it.seek_to_first()?;
    let mut out: Vec<(Vec<u8>, BlockHandle)> = Vec::new();
    let mut expect = 0u64;
    while it.valid() {
        let bad = |what: String| Error::corruption(path, at, what);
        let (h, _) = BlockHandle::decode(it.value())
            .filter(|(_, n)| *n == it.value().len())
            .ok_or_else(|| bad(format!("index entry {} has a malformed handle", out.len())))?;
        let end = h
            .offset
            .checked_add(h.size)
            .and_then(|e| e.checked_add(BLOCK_TRAILER_SIZE as u64));
        if h.offset != expect || end.is_none_or(|e| e > data_end) {
            return Err(bad(format!(
                "index entry {} handle {h:?} is out of place",
                out.len()
            )));
        }
        if out.last().is_some_and(|(k, _)| k[..] >= *it.key()) {
            return Err(bad(format!(
                "index keys out of order at entry {}",
                out.len()
            )));
        }
        expect = end.expect("checked");
        out.push((it.key().to_vec(), h));
        it.next()?;
    }
    if expect != data_end {
        return Err(Error::corruption(
            path,
            at,
            "index does not cover the data region",
        ));
    }
    Ok(out)
}

impl Table {
    /// Opens a table, checking its structure (see the module doc). With a `cache`,
    /// data blocks are shared through it; with `pin_in_memory`, every data block is read
    /// now and kept (in-memory locality groups).
    pub fn open(
        file: Arc<dyn RandomAccessFile>,
        cache: Option<Arc<BlockCache>>,
        pin_in_memory: bool,
    ) -> Result<Arc<Table>> {
        let path = file.path().to_owned();
        let len = file.len();
        if len < FOOTER_SIZE as u64 {
            return Err(Error::corruption(
                &path,
                0,
                format!("file of {len} bytes is too short for an SSTable"),
            ));
        }
        let footer_at = len - FOOTER_SIZE as u64;
        let footer = Footer::decode(&path, footer_at, &file.read_at(footer_at, FOOTER_SIZE)?)?;
        check_footer_layout(&path, len, &footer)?;
        let filter_bytes = read_stored(&*file, footer.filter)?;
        let filter = Filter::decode(&path, footer.filter.offset, &filter_bytes)?;
        let index_block = Block::new(
            read_stored(&*file, footer.index)?,
            &path,
            footer.index.offset,
        )?;
        let data_end = footer.filter.offset;
        let index = Index::new(decode_index(
            &path,
            footer.index.offset,
            index_block,
            data_end,
        )?);
        let props_at = footer.properties.offset;
        let mut info =
            decode_properties(&path, props_at, &read_stored(&*file, footer.properties)?)?;
        info.file_size = len;
        let agrees = info.data_blocks == index.len() as u64
            && (info.num_entries == 0) == index.is_empty()
            && index
                .entries()
                .last()
                .is_none_or(|(k, _)| *k == info.largest_key);
        if !agrees {
            return Err(Error::corruption(
                &path,
                props_at,
                "properties disagree with the index",
            ));
        }
        let mut table = Table {
            id: next_table_id(),
            file,
            cache,
            index,
            name: Arc::from(path.display().to_string()),
            filter,
            info,
            data_end,
            pinned: None,
            blocks_read: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
        };
        if pin_in_memory {
            let mut pinned = HashMap::with_capacity(table.index.len());
            for (_, h) in table.index.entries() {
                pinned.insert(h.offset, table.read_block_from_file(*h)?);
            }
            table.pinned = Some(pinned);
        }
        Ok(Arc::new(table))
    }

    /// A cursor over all entries (unpositioned: call a seek first).
    pub fn iter(self: &Arc<Self>) -> TableIter {
        TableIter {
            table: Arc::clone(self),
            block: 0,
            data: None,
        }
    }

    /// False when no key added with `add_filter_key` equals `filter_key`.
    pub fn may_contain(&self, filter_key: &[u8]) -> bool {
        self.filter.may_contain(filter_key)
    }

    /// What the table holds.
    pub fn info(&self) -> &TableInfo {
        &self.info
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The process-unique id of this open table (its block-cache key).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Approximate file offset where `key`'s entries would start: the offset of the data
    /// block that holds keys >= `key`, or the end of the data region.
    pub fn approximate_offset_of(&self, key: &[u8]) -> u64 {
        let i = self.index.find(key);
        self.index
            .entries()
            .get(i)
            .map_or(self.data_end, |(_, h)| h.offset)
    }

    /// The last key of every data block, in order (candidate split points).
    pub fn block_last_keys(&self) -> Vec<Vec<u8>> {
        self.index
            .entries()
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Read counters so far.
    pub fn stats(&self) -> TableStats {
        TableStats {
            blocks_read: self.blocks_read.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
        }
    }

    fn read_block_from_file(&self, h: BlockHandle) -> Result<Arc<Block>> {
        let data = read_stored(&*self.file, h)?;
        self.blocks_read.fetch_add(1, Ordering::Relaxed);
        self.bytes_read
            .fetch_add(h.size + BLOCK_TRAILER_SIZE as u64, Ordering::Relaxed);
        Ok(Arc::new(Block::with_name(
            data,
            Arc::clone(&self.name),
            h.offset,
        )?))
    }

    /// The data block at index position `i`, from the pinned set, the cache or the file.
    fn data_block(&self, i: usize) -> Result<Arc<Block>> {
        let h = self.index.handle(i);
        if let Some(b) = self.pinned.as_ref().and_then(|p| p.get(&h.offset)) {
            return Ok(Arc::clone(b));
        }
        if let Some(cache) = &self.cache {
            if let Some(b) = cache.get((self.id, h.offset)) {
                self.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(b);
            }
        }
        let block = self.read_block_from_file(h)?;
        if let Some(cache) = &self.cache {
            cache.insert((self.id, h.offset), Arc::clone(&block));
        }
        Ok(block)
    }
}

/// A two-level cursor over a [`Table`]: the index picks the data block, a [`BlockIter`]
/// walks it. See [`KvIter`] for the contract.
pub struct TableIter {
    table: Arc<Table>,
    /// Index position of the current data block.
    block: usize,
    data: Option<BlockIter>,
}

impl TableIter {
    /// Positions at block `i` with `position` applied, moving on to later blocks while
    /// the block has nothing at or after the target.
    fn settle(&mut self, mut i: usize, target: Option<&[u8]>) -> Result<()> {
        self.data = None;
        while i < self.table.index.len() {
            let mut it = self.table.data_block(i)?.iter();
            match target {
                Some(t) if i == self.block => it.seek(t)?,
                _ => it.seek_to_first()?,
            }
            if it.valid() {
                self.block = i;
                self.data = Some(it);
                return Ok(());
            }
            i += 1;
        }
        Ok(())
    }

    fn guard(&mut self, r: Result<()>) -> Result<()> {
        if r.is_err() {
            self.data = None;
        }
        r
    }
}

impl KvIter for TableIter {
    fn valid(&self) -> bool {
        self.data.as_ref().is_some_and(|d| d.valid())
    }

    fn key(&self) -> &[u8] {
        self.data
            .as_ref()
            .expect("key() on an invalid TableIter")
            .key()
    }

    fn value(&self) -> &[u8] {
        self.data
            .as_ref()
            .expect("value() on an invalid TableIter")
            .value()
    }

    fn next(&mut self) -> Result<()> {
        let data = self.data.as_mut().expect("next() on an invalid TableIter");
        let r = data.next();
        let r = match r {
            Ok(()) if !data.valid() => self.settle(self.block + 1, None),
            other => other,
        };
        self.guard(r)
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        let i = self.table.index.find(target);
        // Same block as the current one: seek inside it without a cache lookup. The
        // block's last key is >= target, so the seek lands inside it.
        if let Some(data) = self.data.as_mut().filter(|_| self.block == i) {
            let r = data.seek(target);
            return self.guard(r);
        }
        self.block = i;
        let r = self.settle(i, Some(target));
        self.guard(r)
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.block = 0;
        let r = self.settle(0, None);
        self.guard(r)
    }
}
