//! Data blocks: sorted key/value entries with prefix-compressed keys (LevelDB's block
//! format), and the trailer (compression type + CRC) that every block carries on disk.
//!
//! Uncompressed block contents:
//!
//! ```text
//! entry*           // key/value pairs in strictly increasing key order
//! restart: u32*    // little-endian offsets of the restart entries, increasing
//! num_restarts: u32 // >= 1; restart[0] = 0
//!
//! entry:
//!   shared: varint32      // bytes shared with the previous key; 0 at a restart
//!   non_shared: varint32  // bytes of the key that follow
//!   value_len: varint32
//!   key_delta: u8[non_shared]
//!   value: u8[value_len]
//! ```
//!
//! Every `restart_interval` entries a key is stored whole (a restart point), so a seek
//! binary-searches the restart array and then scans at most `restart_interval` entries.
//!
//! On disk a block is `payload` then a 5-byte trailer: `type: u8` (0 none, 1 LZ4) and
//! `crc: u32` (CRC-32/ISO-HDLC as crc32fast computes it, little-endian) over payload and type.
//! An LZ4 payload is `uncompressed_len: u32` (little-endian) then the LZ4 block.
//! A block is stored compressed only when LZ4 saves at least 1/8 of its size.
//!
//! Invariants on reading: the checksum is verified before anything is parsed; every
//! length is bounds-checked against the bytes at hand before it is used, so corrupt input
//! gives [`Error::Corruption`] naming the file and the block's offset, never a panic and
//! never an allocation larger than [`MAX_BLOCK_SIZE`].

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::iter::KvIter;

/// Bytes after each block's payload: type (1) + CRC (4).
pub const BLOCK_TRAILER_SIZE: usize = 5; // DO NOT CHANGE: written to disk
/// Trailer type byte of an uncompressed block.
const TYPE_NONE: u8 = 0; // DO NOT CHANGE: written to disk
/// Trailer type byte of an LZ4 block.
const TYPE_LZ4: u8 = 1; // DO NOT CHANGE: written to disk
/// Largest uncompressed block the reader accepts (a block holds at least one whole value,
/// and values may be up to 100 MiB).
pub const MAX_BLOCK_SIZE: usize = 256 << 20;

/// How blocks are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Stored as is.
    None,
    /// LZ4 (block format) when it saves at least 1/8.
    #[default]
    Lz4,
}

// ---- varints (LevelDB's encoding: 7 bits per byte, low groups first) ----

/// Appends `v` as a varint.
pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Decodes a varint of at most `max_bits` bits; returns the value and bytes used.
pub(crate) fn get_varint(buf: &[u8], max_bits: u32) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(10) {
        let shift = 7 * i as u32;
        let part = u64::from(b & 0x7f);
        if shift >= 64 || (shift > 0 && part >> (64 - shift) != 0) {
            return None;
        }
        v |= part << shift;
        if b & 0x80 == 0 {
            return (max_bits >= 64 || v >> max_bits == 0).then_some((v, i + 1));
        }
    }
    None
}

/// Where a block lives in its file: offset and payload size (without the trailer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct BlockHandle {
    /// Offset of the payload's first byte.
    pub offset: u64,
    /// Payload bytes (the trailer follows them).
    pub size: u64,
}

impl BlockHandle {
    /// Appends the handle as two varints.
    pub fn encode_to(&self, buf: &mut Vec<u8>) {
        put_varint(buf, self.offset);
        put_varint(buf, self.size);
    }

    /// Decodes a handle written by [`BlockHandle::encode_to`]; `None` if malformed.
    pub fn decode(buf: &[u8]) -> Option<(BlockHandle, usize)> {
        let (offset, a) = get_varint(buf, 64)?;
        let (size, b) = get_varint(&buf[a..], 64)?;
        Some((BlockHandle { offset, size }, a + b))
    }
}

/// Builds the uncompressed contents of one block.
#[derive(Debug)]
pub struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    restart_interval: usize,
    since_restart: usize,
    last_key: Vec<u8>,
    entries: usize,
}

impl BlockBuilder {
    /// A builder storing a whole key every `restart_interval` entries (at least 1).
    pub fn new(restart_interval: usize) -> BlockBuilder {
        BlockBuilder {
            buf: Vec::new(),
            restarts: vec![0],
            restart_interval: restart_interval.max(1),
            since_restart: 0,
            last_key: Vec::new(),
            entries: 0,
        }
    }

    /// Adds an entry. REQUIRES: `key` is greater than every key added before, and key and
    /// value are shorter than 4 GiB (the table builder checks both).
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        debug_assert!(
            self.entries == 0 || key > &self.last_key[..],
            "keys out of order"
        );
        let mut shared = 0;
        if self.since_restart == self.restart_interval {
            self.restarts.push(self.buf.len() as u32);
            self.since_restart = 0;
        } else {
            shared = common_prefix(&self.last_key, key);
        }
        put_varint(&mut self.buf, shared as u64);
        put_varint(&mut self.buf, (key.len() - shared) as u64);
        put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(&key[shared..]);
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(&key[shared..]);
        self.since_restart += 1;
        self.entries += 1;
    }

    /// Size of the block if finished now.
    pub fn estimated_size(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 4
    }

    /// True when no entry was added since the last `finish`.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The last key added.
    pub fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Returns the finished block contents and resets the builder for the next block.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        for r in &self.restarts {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.restarts = vec![0];
        self.since_restart = 0;
        self.last_key.clear();
        self.entries = 0;
        out
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Encodes block contents for disk: payload (compressed if worth it) then the trailer.
pub fn encode_block(raw: &[u8], compression: Compression) -> Vec<u8> {
    let (mut out, kind) = match compression {
        Compression::Lz4 => {
            let c = lz4_flex::block::compress_prepend_size(raw);
            if c.len() <= raw.len() - raw.len() / 8 {
                (c, TYPE_LZ4)
            } else {
                (raw.to_vec(), TYPE_NONE)
            }
        }
        Compression::None => (raw.to_vec(), TYPE_NONE),
    };
    out.push(kind);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks and decodes a stored block (payload + trailer, as read from `file` at
/// `offset`) into its uncompressed contents.
pub fn decode_block(file: &Path, offset: u64, stored: &[u8]) -> Result<Vec<u8>> {
    let bad = |what: String| Error::corruption(file, offset, what);
    if stored.len() < BLOCK_TRAILER_SIZE {
        return Err(bad(format!(
            "block of {} bytes has no trailer",
            stored.len()
        )));
    }
    let (body, crc_bytes) = stored.split_at(stored.len() - 4);
    let want = u32::from_le_bytes(crc_bytes.try_into().expect("4 bytes"));
    let got = crc32fast::hash(body);
    if want != got {
        return Err(bad(format!(
            "block checksum mismatch: stored {want:#010x}, computed {got:#010x}"
        )));
    }
    let (payload, kind) = body.split_at(body.len() - 1);
    match kind[0] {
        TYPE_NONE => Ok(payload.to_vec()),
        TYPE_LZ4 => decompress(payload).map_err(bad),
        t => Err(bad(format!("unknown block compression type {t}"))),
    }
}

fn decompress(payload: &[u8]) -> std::result::Result<Vec<u8>, String> {
    if payload.len() < 4 {
        return Err("LZ4 block shorter than its length prefix".into());
    }
    let (len, data) = payload.split_at(4);
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    // LZ4 cannot expand a byte into more than 255; both limits hold before allocating.
    if len > MAX_BLOCK_SIZE || len > data.len().saturating_mul(255) + 16 {
        return Err(format!(
            "LZ4 block claims {len} uncompressed bytes from {} compressed",
            data.len()
        ));
    }
    let out = lz4_flex::block::decompress(data, len).map_err(|e| format!("LZ4: {e}"))?;
    if out.len() != len {
        return Err(format!(
            "LZ4 block gave {} bytes, expected {len}",
            out.len()
        ));
    }
    Ok(out)
}

/// A decoded block, ready to iterate. Cheap to share behind an `Arc` (the block cache
/// holds these).
#[derive(Debug)]
pub struct Block {
    data: Vec<u8>,
    restarts_offset: usize,
    num_restarts: usize,
    file: Arc<str>,
    offset: u64,
}

impl Block {
    /// Checks the restart array of `data` (uncompressed contents of the block at `offset`
    /// of `file`).
    pub fn new(data: Vec<u8>, file: &Path, offset: u64) -> Result<Block> {
        Block::with_name(data, Arc::from(file.display().to_string()), offset)
    }

    /// [`Block::new`] with the file's name already formatted (a table formats it once
    /// instead of once per block read).
    pub fn with_name(data: Vec<u8>, file: Arc<str>, offset: u64) -> Result<Block> {
        let bad = |what: String| Error::Corruption {
            file: file.to_string(),
            offset,
            what,
        };
        if data.len() < 4 {
            return Err(bad(format!(
                "block of {} bytes has no restart count",
                data.len()
            )));
        }
        let num = u32::from_le_bytes(data[data.len() - 4..].try_into().expect("4")) as usize;
        let max = (data.len() - 4) / 4;
        if num == 0 || num > max {
            return Err(bad(format!(
                "restart count {num} invalid for a {}-byte block",
                data.len()
            )));
        }
        let restarts_offset = data.len() - 4 - 4 * num;
        let mut prev = None;
        for i in 0..num {
            let r = read_u32(&data, restarts_offset + 4 * i) as usize;
            if r >= restarts_offset.max(1) || prev.is_some_and(|p| r <= p) || (i == 0 && r != 0) {
                return Err(bad(format!(
                    "restart point {i} at {r} out of order or range"
                )));
            }
            prev = Some(r);
        }
        Ok(Block {
            data,
            restarts_offset,
            num_restarts: num,
            file,
            offset,
        })
    }

    /// Uncompressed size in bytes (the block cache's weight).
    pub fn size(&self) -> usize {
        self.data.len()
    }

    /// True when the block has no entry.
    pub fn is_empty(&self) -> bool {
        self.restarts_offset == 0
    }

    /// An iterator over the block's entries.
    pub fn iter(self: &Arc<Self>) -> BlockIter {
        BlockIter {
            block: Arc::clone(self),
            key: Vec::new(),
            value: 0..0,
            next_offset: 0,
            valid: false,
        }
    }

    fn restart(&self, i: usize) -> usize {
        read_u32(&self.data, self.restarts_offset + 4 * i) as usize
    }

    fn corruption(&self, what: String) -> Error {
        Error::Corruption {
            file: self.file.to_string(),
            offset: self.offset,
            what,
        }
    }

    /// Decodes the entry at `at`: (shared, key delta range, value range, next offset).
    fn entry(&self, at: usize) -> Result<(usize, Range<usize>, Range<usize>)> {
        let end = self.restarts_offset;
        let mut pos = at;
        let mut fields = [0usize; 3];
        for f in &mut fields {
            let (v, n) = get_varint(&self.data[pos.min(end)..end], 32)
                .ok_or_else(|| self.corruption(format!("bad entry header at {at}")))?;
            *f = v as usize;
            pos += n;
        }
        let [shared, non_shared, value_len] = fields;
        let key_end = pos.checked_add(non_shared).filter(|&e| e <= end);
        let value_end = key_end
            .and_then(|k| k.checked_add(value_len))
            .filter(|&e| e <= end);
        match (key_end, value_end) {
            (Some(k), Some(v)) => Ok((shared, pos..k, k..v)),
            _ => Err(self.corruption(format!("entry at {at} runs past the entries"))),
        }
    }

    /// The whole key stored at restart point `i`.
    fn restart_key(&self, i: usize) -> Result<&[u8]> {
        let at = self.restart(i);
        let (shared, key, _) = self.entry(at)?;
        if shared != 0 {
            return Err(self.corruption(format!("restart entry at {at} shares {shared} bytes")));
        }
        Ok(&self.data[key])
    }
}

fn read_u32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

/// A cursor over one [`Block`] (see [`KvIter`] for the contract).
pub struct BlockIter {
    block: Arc<Block>,
    key: Vec<u8>,
    value: Range<usize>,
    next_offset: usize,
    valid: bool,
}

impl BlockIter {
    /// Parses the entry at `next_offset` into the current position.
    fn parse_next(&mut self) -> Result<()> {
        let at = self.next_offset;
        if at >= self.block.restarts_offset {
            self.valid = false;
            return Ok(());
        }
        let parsed = self.block.entry(at).and_then(|(shared, key, value)| {
            if shared > self.key.len() || (!self.valid && shared != 0) {
                return Err(self.block.corruption(format!(
                    "entry at {at} shares {shared} bytes of a {}-byte key",
                    self.key.len()
                )));
            }
            Ok((shared, key, value))
        });
        let (shared, key, value) = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.valid = false;
                return Err(e);
            }
        };
        self.key.truncate(shared);
        self.key.extend_from_slice(&self.block.data[key]);
        self.next_offset = value.end;
        self.value = value;
        self.valid = true;
        Ok(())
    }

    fn seek_to_restart(&mut self, i: usize) {
        self.key.clear();
        self.valid = false;
        self.next_offset = self.block.restart(i);
    }

    /// Index of the last restart whose key is < `target` (0 if none).
    fn find_restart(&self, target: &[u8]) -> Result<usize> {
        let (mut lo, mut hi) = (0, self.block.num_restarts - 1);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if self.block.restart_key(mid)? < target {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(lo)
    }
}

impl KvIter for BlockIter {
    fn valid(&self) -> bool {
        self.valid
    }

    fn key(&self) -> &[u8] {
        assert!(self.valid, "key() on an invalid BlockIter");
        &self.key
    }

    fn value(&self) -> &[u8] {
        assert!(self.valid, "value() on an invalid BlockIter");
        &self.block.data[self.value.clone()]
    }

    fn next(&mut self) -> Result<()> {
        assert!(self.valid, "next() on an invalid BlockIter");
        self.parse_next()
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        if self.block.is_empty() {
            self.valid = false;
            return Ok(());
        }
        let i = match self.find_restart(target) {
            Ok(i) => i,
            Err(e) => {
                self.valid = false;
                return Err(e);
            }
        };
        self.seek_to_restart(i);
        self.parse_next()?;
        while self.valid && self.key[..] < *target {
            self.parse_next()?;
        }
        Ok(())
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.seek_to_restart(0);
        self.parse_next()
    }
}
