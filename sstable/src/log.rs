//! The record log: an append-only file of checksummed records (LevelDB's log format).
//!
//! Used by the tablet server's commit log and by the lock service's Raft log. The full
//! format, with a worked example, is in `docs/format/log.md`.
//!
//! ## Format
//!
//! The file is a sequence of 32 KiB blocks ([`BLOCK_SIZE`]); only the last may be short.
//! A block holds physical records and, when fewer than [`HEADER_SIZE`] bytes are left at
//! its end, a zero-filled trailer. A physical record never crosses a block boundary:
//!
//! ```text
//! checksum: u32 LE  // CRC32 (crc32fast) of the type byte followed by the data
//! length:   u16 LE  // length of data
//! type:     u8      // FULL = 1, FIRST = 2, MIDDLE = 3, LAST = 4
//! data:     [u8; length]
//! ```
//!
//! A logical record (what [`LogWriter::add_record`] is given) is one FULL physical record,
//! or FIRST, any number of MIDDLE, and LAST when it does not fit in the rest of the block.
//!
//! ## Torn tail versus corruption
//!
//! A crash in the middle of an append leaves a tail that is incomplete or garbled; a disk
//! or software fault can damage a record in the middle. The reader tells them apart with
//! one rule:
//!
//! - a physical record that fails its checksum or framing (unknown type, a length that
//!   crosses the block or the end of the file, a header cut off by the end of the file)
//!   and that is followed by **no valid physical record** at any later byte offset (below
//!   the limit) is a **torn tail**: reading stops, [`LogReader::torn_tail`] gives the
//!   offset of the incomplete logical record, and [`LogReader::next_record`] returns
//!   `Ok(None)`;
//! - if a valid physical record exists anywhere after it, the bad record is
//!   **corruption**: [`LogReader::next_record`] returns [`Error::Corruption`] naming the
//!   bad record's offset. Nothing is ever skipped silently;
//! - if every byte from the bad point to the end is zero (a preallocated or zero-extended
//!   file), the log ends cleanly there;
//! - a logical record cut off by the end of the file (FIRST and MIDDLE fragments, then the
//!   end) is a torn tail at its FIRST fragment; a framing error between checksummed
//!   fragments (MIDDLE or LAST without FIRST, FIRST or FULL while a record is open) can only
//!   come from a bug or damage and is corruption;
//! - a logical record longer than the reader's `max_record` is corruption, found before the
//!   record is assembled (bounded allocation).
//!
//! ## Invariants
//!
//! - The writer's offsets are record boundaries: the value [`LogWriter::add_record`]
//!   returns is a valid `start` for [`LogReader::new`] and equals the reader's
//!   [`LogReader::end_offset`] after that record.
//! - After any failed append, flush or sync the writer refuses every later call: a failed
//!   fsync is never retried and trusted (the kernel may have dropped the dirty pages).
//!
//! ## Caveats
//!
//! - A payload that itself contains a well-formed log record, torn by a crash in the middle
//!   of its append, makes the torn tail look like mid-log corruption: the log is reported
//!   corrupt (fail-safe, an operator decides), never silently truncated.
//! - A file system that persists a later unsynced page while losing an earlier one gives
//!   the same report; appends that were synced are unaffected.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fs::{RandomAccessFile, WritableFile};

/// Size of a log block; physical records never cross a block boundary.
pub const BLOCK_SIZE: usize = 32 * 1024; // DO NOT CHANGE: written to disk

/// Bytes of a physical record header: checksum (4), length (2), type (1).
pub const HEADER_SIZE: usize = 7; // DO NOT CHANGE: written to disk

/// Most data bytes one physical record can carry (a whole block minus its header).
pub const MAX_FRAGMENT: usize = BLOCK_SIZE - HEADER_SIZE;

/// The type byte of a physical record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// A whole logical record.
    Full = 1, // DO NOT CHANGE: written to disk
    /// The first fragment of a logical record.
    First = 2, // DO NOT CHANGE: written to disk
    /// An inner fragment.
    Middle = 3, // DO NOT CHANGE: written to disk
    /// The last fragment.
    Last = 4, // DO NOT CHANGE: written to disk
}

impl RecordType {
    /// The type for a byte read from disk, `None` for an unknown byte (0 included).
    pub fn from_byte(b: u8) -> Option<RecordType> {
        match b {
            1 => Some(RecordType::Full),
            2 => Some(RecordType::First),
            3 => Some(RecordType::Middle),
            4 => Some(RecordType::Last),
            _ => None,
        }
    }
}

/// The checksum stored in a physical record header: CRC32 of the type byte then the data.
pub fn record_checksum(kind: u8, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(data);
    h.finalize()
}

/// Appends logical records to a log file.
///
/// Not thread-safe by itself: callers serialize (the commit log's group commit does).
pub struct LogWriter {
    file: Box<dyn WritableFile>,
    /// Bytes appended so far (the file's length as this writer sees it).
    offset: u64,
    /// Position inside the current block.
    block_offset: usize,
    /// Set by the first failed append, flush or sync; every later call fails.
    failed: Option<String>,
    /// Reused encoding buffer.
    scratch: Vec<u8>,
}

/// `scratch` buffers bigger than this are released after use.
const SCRATCH_KEEP: usize = 1 << 20;

impl LogWriter {
    /// A writer appending to `file`, which should be empty. A non-empty file is continued
    /// at its end, which is correct only if that end is a record boundary (for example a
    /// file truncated to a reader's [`LogReader::end_offset`]); appending after a torn tail
    /// would turn the tail into mid-log corruption.
    pub fn new(file: Box<dyn WritableFile>) -> LogWriter {
        let offset = file.len();
        LogWriter {
            file,
            offset,
            block_offset: (offset % BLOCK_SIZE as u64) as usize,
            failed: None,
            scratch: Vec::new(),
        }
    }

    /// Appends one logical record (any length, 0 included) and returns the file offset just
    /// past it. The bytes may sit in buffers until [`LogWriter::flush`] or
    /// [`LogWriter::sync`].
    pub fn add_record(&mut self, payload: &[u8]) -> Result<u64> {
        Ok(self.add_records(&[payload])?[0])
    }

    /// Appends several logical records with one file append (group commit) and returns the
    /// offset just past each. On failure none of them may be trusted.
    pub fn add_records(&mut self, payloads: &[&[u8]]) -> Result<Vec<u64>> {
        self.check_usable("append")?;
        self.scratch.clear();
        let mut block_offset = self.block_offset;
        let mut ends = Vec::with_capacity(payloads.len());
        for payload in payloads {
            block_offset = encode_record(&mut self.scratch, block_offset, payload);
            ends.push(self.offset + self.scratch.len() as u64);
        }
        let result = self.file.append(&self.scratch);
        let written = self.scratch.len() as u64;
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
        if let Err(e) = result {
            self.failed = Some(e.to_string());
            return Err(e);
        }
        self.offset += written;
        self.block_offset = block_offset;
        Ok(ends)
    }

    /// Hands buffered bytes to the operating system (they survive a process crash, not a
    /// power cut).
    pub fn flush(&mut self) -> Result<()> {
        self.check_usable("flush")?;
        let result = self.file.flush();
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result
    }

    /// Makes every record added so far durable. After a failure the writer is dead: the
    /// sync is never retried.
    pub fn sync(&mut self) -> Result<()> {
        self.check_usable("sync")?;
        let result = self.file.sync();
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result
    }

    /// Bytes written so far: the offset where the next record starts (or its block's
    /// trailer, when fewer than [`HEADER_SIZE`] bytes are left in the block).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// True once an append, flush or sync has failed.
    pub fn has_failed(&self) -> bool {
        self.failed.is_some()
    }

    fn check_usable(&self, op: &'static str) -> Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(first) => Err(Error::Io {
                op,
                path: "record log".to_string(),
                source: std::io::Error::other(format!(
                    "the log writer stopped after an earlier failure ({first})"
                )),
            }),
        }
    }
}

/// Encodes `payload` as physical records into `out`, starting at `block_offset` inside a
/// block; returns the block offset after it.
fn encode_record(out: &mut Vec<u8>, mut block_offset: usize, payload: &[u8]) -> usize {
    let mut rest = payload;
    let mut first = true;
    loop {
        let left = BLOCK_SIZE - block_offset;
        if left < HEADER_SIZE {
            out.resize(out.len() + left, 0);
            block_offset = 0;
        }
        let avail = BLOCK_SIZE - block_offset - HEADER_SIZE;
        let n = rest.len().min(avail);
        let last = n == rest.len();
        let kind = match (first, last) {
            (true, true) => RecordType::Full,
            (true, false) => RecordType::First,
            (false, false) => RecordType::Middle,
            (false, true) => RecordType::Last,
        } as u8;
        let data = &rest[..n];
        out.extend_from_slice(&record_checksum(kind, data).to_le_bytes());
        out.extend_from_slice(&(n as u16).to_le_bytes());
        out.push(kind);
        out.extend_from_slice(data);
        block_offset += HEADER_SIZE + n;
        rest = &rest[n..];
        first = false;
        if last {
            return block_offset;
        }
    }
}

/// One step of the physical-record scanner.
enum Phys {
    /// No more bytes before the end (or only a block trailer).
    End,
    /// A record that fails its checksum or framing, at `offset`.
    Bad { offset: u64, what: String },
    /// A valid physical record; its data is `block[start..start + len]`.
    Record {
        offset: u64,
        kind: RecordType,
        start: usize,
        len: usize,
    },
}

/// Reads logical records from a log file, from a start offset up to an optional limit.
pub struct LogReader {
    file: Arc<dyn RandomAccessFile>,
    /// Reading never goes at or past this offset: min(file length, limit).
    end: u64,
    /// Offset of the next physical record to parse.
    pos: u64,
    max_record: usize,
    /// The cached block: `block` holds the file's bytes from `block_start`.
    block: Vec<u8>,
    block_start: Option<u64>,
    record_offset: u64,
    end_offset: u64,
    torn: Option<u64>,
    /// Set at the clean end, a torn tail or corruption: no more records.
    done: bool,
    /// A corruption already reported (repeated on later calls), or a start past the end.
    error: Option<(u64, String)>,
    /// A start past the limit: the caller's mistake.
    invalid: Option<String>,
}

impl LogReader {
    /// A reader from `start` (0 or an offset a writer returned) that never reads at or past
    /// `limit` (a seal) and treats logical records longer than `max_record` as corruption.
    /// A `start` past `limit` (`InvalidArgument`) or past the end of the file (the bytes
    /// expected there are gone: `Corruption`) is reported by the first
    /// [`LogReader::next_record`].
    pub fn new(
        file: Arc<dyn RandomAccessFile>,
        start: u64,
        limit: Option<u64>,
        max_record: usize,
    ) -> LogReader {
        let len = file.len();
        let end = limit.map_or(len, |l| l.min(len));
        let invalid = limit
            .filter(|&l| start > l)
            .map(|l| format!("start offset {start} is past the limit {l}"));
        let error = if start > len {
            Some((
                start,
                format!("start offset {start} is past the end ({len} bytes)"),
            ))
        } else {
            None
        };
        LogReader {
            file,
            end,
            pos: start,
            max_record,
            block: Vec::new(),
            block_start: None,
            record_offset: start,
            end_offset: start,
            torn: None,
            done: false,
            error,
            invalid,
        }
    }

    /// The next logical record; `Ok(None)` at the clean end or at a torn tail (see
    /// [`LogReader::torn_tail`]); `Err(Error::Corruption)` for a bad record followed by a
    /// valid one, repeated on every later call. An I/O error leaves the reader where it
    /// was, so the call can be retried.
    pub fn next_record(&mut self) -> Result<Option<Vec<u8>>> {
        if let Some(what) = &self.invalid {
            return Err(Error::InvalidArgument(what.clone()));
        }
        if let Some((offset, what)) = &self.error {
            return Err(Error::corruption(self.file.path(), *offset, what.clone()));
        }
        if self.done {
            return Ok(None);
        }
        let resume = self.pos;
        let result = self.assemble();
        match &result {
            Err(Error::Corruption { offset, what, .. }) => {
                self.error = Some((*offset, what.clone()));
                self.done = true;
            }
            Err(_) => self.pos = resume,
            Ok(_) => {}
        }
        result
    }

    /// Start offset of the record last returned (the `start` given to [`LogReader::new`]
    /// before any).
    pub fn record_offset(&self) -> u64 {
        self.record_offset
    }

    /// Offset just past the last complete record returned (the `start` before any).
    pub fn end_offset(&self) -> u64 {
        self.end_offset
    }

    /// `Some(offset)` once reading stopped at an incomplete or garbled tail: the offset
    /// where the torn logical record starts.
    ///
    /// To continue writing a log after reading it, truncate the file to
    /// [`LogReader::end_offset`] whenever the file is longer, not only when this is
    /// `Some`: a zero-filled tail reads as a clean end (`None`), and records appended after
    /// those zeros would turn them into mid-log corruption.
    pub fn torn_tail(&self) -> Option<u64> {
        self.torn
    }

    /// Reads physical records until one logical record is complete or reading stops.
    fn assemble(&mut self) -> Result<Option<Vec<u8>>> {
        // (offset of the FIRST fragment, data so far) while a record is open.
        let mut open: Option<(u64, Vec<u8>)> = None;
        loop {
            let (offset, kind, start, len) = match self.read_physical()? {
                Phys::End => return Ok(self.stop(open.map(|o| o.0))),
                Phys::Bad { offset, what } => return self.on_bad(offset, what, open),
                Phys::Record {
                    offset,
                    kind,
                    start,
                    len,
                } => (offset, kind, start, len),
            };
            self.pos = offset + (HEADER_SIZE + len) as u64;
            let data = &self.block[start..start + len];
            match (kind, open.as_mut()) {
                (RecordType::Full, None) => {
                    self.check_size(offset, len)?;
                    let record = data.to_vec();
                    return Ok(Some(self.emit(offset, record)));
                }
                (RecordType::First, None) => {
                    self.check_size(offset, len)?;
                    open = Some((offset, data.to_vec()));
                }
                (RecordType::Middle | RecordType::Last, Some((first, buf))) => {
                    self.check_size(*first, buf.len() + len)?;
                    buf.extend_from_slice(data);
                    if kind == RecordType::Last {
                        let (first, record) = open.take().expect("record is open");
                        return Ok(Some(self.emit(first, record)));
                    }
                }
                (RecordType::Full | RecordType::First, Some((first, _))) => {
                    let what = format!(
                        "fragmented record has no LAST fragment before the {kind:?} record at {offset}"
                    );
                    return Err(Error::corruption(self.file.path(), *first, what));
                }
                (RecordType::Middle | RecordType::Last, None) => {
                    let what = format!("{kind:?} fragment without a FIRST fragment");
                    return Err(Error::corruption(self.file.path(), offset, what));
                }
            }
        }
    }

    fn check_size(&self, first: u64, len: usize) -> Result<()> {
        if len > self.max_record {
            let what = format!("record longer than the limit of {} bytes", self.max_record);
            return Err(Error::corruption(self.file.path(), first, what));
        }
        Ok(())
    }

    fn emit(&mut self, offset: u64, record: Vec<u8>) -> Vec<u8> {
        self.record_offset = offset;
        self.end_offset = self.pos;
        record
    }

    /// Stops reading: a torn tail at `open` if a record was open, else the clean end.
    fn stop(&mut self, open: Option<u64>) -> Option<Vec<u8>> {
        self.torn = open;
        self.done = true;
        None
    }

    /// Applies the torn-tail rule to a bad physical record at `offset`.
    fn on_bad(
        &mut self,
        offset: u64,
        what: String,
        open: Option<(u64, Vec<u8>)>,
    ) -> Result<Option<Vec<u8>>> {
        let open = open.map(|o| o.0);
        if self.is_zero_from(offset)? {
            return Ok(self.stop(open));
        }
        if let Some(next) = self.find_valid_after(offset)? {
            let what = format!("{what}; a valid record follows at offset {next}");
            return Err(Error::corruption(self.file.path(), offset, what));
        }
        Ok(self.stop(Some(open.unwrap_or(offset))))
    }

    /// Parses the physical record at `self.pos`, skipping a block trailer.
    fn read_physical(&mut self) -> Result<Phys> {
        loop {
            if self.pos >= self.end {
                return Ok(Phys::End);
            }
            let in_block = (self.pos % BLOCK_SIZE as u64) as usize;
            let left = BLOCK_SIZE - in_block;
            if left < HEADER_SIZE {
                self.pos += left as u64;
                continue;
            }
            let offset = self.pos;
            if self.end - offset < HEADER_SIZE as u64 {
                let what = "record header cut off by the end of the log".to_string();
                return Ok(Phys::Bad { offset, what });
            }
            self.load_block(offset)?;
            return Ok(match check_physical(&self.block, in_block) {
                Ok((kind, len)) => Phys::Record {
                    offset,
                    kind,
                    start: in_block + HEADER_SIZE,
                    len,
                },
                Err(bad) => Phys::Bad {
                    offset,
                    what: bad.describe(),
                },
            });
        }
    }

    /// Makes `self.block` hold the block containing `offset` (up to `self.end`).
    fn load_block(&mut self, offset: u64) -> Result<()> {
        let start = offset - offset % BLOCK_SIZE as u64;
        if self.block_start != Some(start) {
            self.block_start = None;
            self.block = self.read_block(start)?;
            self.block_start = Some(start);
        }
        Ok(())
    }

    /// The bytes of the block starting at `start`, cut at `self.end`.
    fn read_block(&self, start: u64) -> Result<Vec<u8>> {
        let len = (self.end - start).min(BLOCK_SIZE as u64) as usize;
        self.file.read_at(start, len)
    }

    /// True when every byte in `[offset, end)` is zero.
    fn is_zero_from(&self, offset: u64) -> Result<bool> {
        let mut block = offset - offset % BLOCK_SIZE as u64;
        let mut from = (offset - block) as usize;
        while block < self.end {
            let bytes = self.read_block(block)?;
            if bytes[from.min(bytes.len())..].iter().any(|&b| b != 0) {
                return Ok(false);
            }
            block += BLOCK_SIZE as u64;
            from = 0;
        }
        Ok(true)
    }

    /// The first offset after `offset` (and below the end) holding a valid physical record.
    fn find_valid_after(&self, offset: u64) -> Result<Option<u64>> {
        let mut block = offset - offset % BLOCK_SIZE as u64;
        let mut from = (offset - block) as usize + 1;
        while block < self.end {
            let bytes = self.read_block(block)?;
            if from + HEADER_SIZE <= bytes.len() {
                // Cheap filter first: the type byte (header byte 6) must be 1..=4.
                let types = &bytes[from + HEADER_SIZE - 1..];
                for (k, &t) in types.iter().enumerate() {
                    if t.wrapping_sub(1) < 4 && check_physical(&bytes, from + k).is_ok() {
                        return Ok(Some(block + (from + k) as u64));
                    }
                }
            }
            block += BLOCK_SIZE as u64;
            from = 0;
        }
        Ok(None)
    }
}

/// Why a physical record is bad.
#[derive(Clone, Copy, Debug)]
enum BadRecord {
    UnknownType(u8),
    CrossesBlock(usize),
    CutOff(usize),
    Checksum,
}

impl BadRecord {
    fn describe(self) -> String {
        match self {
            BadRecord::UnknownType(t) => format!("unknown record type {t}"),
            BadRecord::CrossesBlock(n) => format!("record length {n} crosses the block boundary"),
            BadRecord::CutOff(n) => format!("record of {n} bytes cut off by the end of the log"),
            BadRecord::Checksum => "record checksum mismatch".to_string(),
        }
    }
}

/// Checks the physical record at `block[at..]` (`block` is one block, possibly cut short
/// by the end of the log; `at + HEADER_SIZE <= block.len()`): its type, that its data fits
/// in the block and the log, and its checksum. Returns the type and data length.
fn check_physical(block: &[u8], at: usize) -> std::result::Result<(RecordType, usize), BadRecord> {
    let h = &block[at..at + HEADER_SIZE];
    let len = u16::from_le_bytes([h[4], h[5]]) as usize;
    let Some(kind) = RecordType::from_byte(h[6]) else {
        return Err(BadRecord::UnknownType(h[6]));
    };
    if at + HEADER_SIZE + len > BLOCK_SIZE {
        return Err(BadRecord::CrossesBlock(len));
    }
    if at + HEADER_SIZE + len > block.len() {
        return Err(BadRecord::CutOff(len));
    }
    let stored = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let data = &block[at + HEADER_SIZE..at + HEADER_SIZE + len];
    if record_checksum(h[6], data) != stored {
        return Err(BadRecord::Checksum);
    }
    Ok((kind, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_fills_a_block_then_pads_a_short_trailer() {
        let mut out = Vec::new();
        let end = encode_record(&mut out, 0, &vec![7u8; MAX_FRAGMENT - 3]);
        assert_eq!(end, BLOCK_SIZE - 3);
        let end = encode_record(&mut out, end, b"x");
        // 3 bytes of zero trailer, then a FULL record at the next block.
        assert_eq!(&out[BLOCK_SIZE - 3..BLOCK_SIZE], &[0, 0, 0]);
        assert_eq!(out[BLOCK_SIZE + 6], RecordType::Full as u8);
        assert_eq!(end, HEADER_SIZE + 1);
    }

    #[test]
    fn encode_splits_into_first_middle_last() {
        let mut out = Vec::new();
        encode_record(&mut out, 0, &vec![1u8; 2 * BLOCK_SIZE]);
        assert_eq!(out[6], RecordType::First as u8);
        assert_eq!(out[BLOCK_SIZE + 6], RecordType::Middle as u8);
        assert_eq!(out[2 * BLOCK_SIZE + 6], RecordType::Last as u8);
        assert_eq!(out.len(), 2 * BLOCK_SIZE + 3 * HEADER_SIZE);
    }
}
