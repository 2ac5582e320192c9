//! The footer and the properties block of an SSTable.
//!
//! Footer (fixed 64 bytes at the end of the file, little-endian):
//!
//! ```text
//! filter_offset: u64, filter_size: u64
//! index_offset: u64, index_size: u64
//! properties_offset: u64, properties_size: u64
//! version: u32        // FORMAT_VERSION
//! crc: u32            // CRC32 of the 52 bytes above
//! magic: u64          // TABLE_MAGIC
//! ```
//!
//! Properties payload: varints `num_entries, raw_key_bytes, raw_value_bytes,
//! data_blocks`, then `smallest_len: varint, smallest: u8[], largest_len: varint,
//! largest: u8[]`, and nothing after.

use std::path::Path;

use super::TableInfo;
use crate::block::{get_varint, put_varint, BlockHandle};
use crate::error::{Error, Result};

/// Size of the footer.
pub const FOOTER_SIZE: usize = 64; // DO NOT CHANGE: written to disk
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1; // DO NOT CHANGE: written to disk
/// The last 8 bytes of every table ("QRYSSTB1" as a little-endian u64).
pub const TABLE_MAGIC: u64 = u64::from_le_bytes(*b"QRYSSTB1"); // DO NOT CHANGE: written to disk

/// The decoded footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// The filter block.
    pub filter: BlockHandle,
    /// The index block.
    pub index: BlockHandle,
    /// The properties block.
    pub properties: BlockHandle,
}

impl Footer {
    /// The 64 footer bytes.
    pub fn encode(&self) -> [u8; FOOTER_SIZE] {
        let mut out = [0u8; FOOTER_SIZE];
        let fields = [
            self.filter.offset,
            self.filter.size,
            self.index.offset,
            self.index.size,
            self.properties.offset,
            self.properties.size,
        ];
        for (i, v) in fields.iter().enumerate() {
            out[8 * i..8 * i + 8].copy_from_slice(&v.to_le_bytes());
        }
        out[48..52].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        let crc = crc32fast::hash(&out[..52]);
        out[52..56].copy_from_slice(&crc.to_le_bytes());
        out[56..64].copy_from_slice(&TABLE_MAGIC.to_le_bytes());
        out
    }

    /// Decodes the footer read at `offset` of `file`.
    pub fn decode(file: &Path, offset: u64, b: &[u8]) -> Result<Footer> {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8"));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4"));
        let bad = |at: usize, what: String| Error::corruption(file, offset + at as u64, what);
        if b.len() != FOOTER_SIZE {
            return Err(bad(0, format!("footer of {} bytes", b.len())));
        }
        if u64_at(56) != TABLE_MAGIC {
            return Err(bad(
                56,
                format!("bad magic {:#018x}: not an SSTable", u64_at(56)),
            ));
        }
        let crc = crc32fast::hash(&b[..52]);
        if u32_at(52) != crc {
            return Err(bad(
                52,
                format!("footer checksum {:#010x}, computed {crc:#010x}", u32_at(52)),
            ));
        }
        if u32_at(48) != FORMAT_VERSION {
            return Err(bad(
                48,
                format!("unsupported format version {}", u32_at(48)),
            ));
        }
        let h = |i: usize| BlockHandle {
            offset: u64_at(16 * i),
            size: u64_at(16 * i + 8),
        };
        Ok(Footer {
            filter: h(0),
            index: h(1),
            properties: h(2),
        })
    }
}

/// Encodes the stored fields of `info` (all but `file_size`).
pub(crate) fn encode_properties(info: &TableInfo) -> Vec<u8> {
    let mut out = Vec::new();
    for v in [
        info.num_entries,
        info.raw_key_bytes,
        info.raw_value_bytes,
        info.data_blocks,
    ] {
        put_varint(&mut out, v);
    }
    for k in [&info.smallest_key, &info.largest_key] {
        put_varint(&mut out, k.len() as u64);
        out.extend_from_slice(k);
    }
    out
}

/// Decodes a properties payload read from the block at `offset` of `file`.
pub(crate) fn decode_properties(file: &Path, offset: u64, b: &[u8]) -> Result<TableInfo> {
    let bad = || Error::corruption(file, offset, "malformed properties block");
    let mut pos = 0;
    let next = |pos: &mut usize| -> Result<u64> {
        let (v, n) = get_varint(&b[*pos..], 64).ok_or_else(bad)?;
        *pos += n;
        Ok(v)
    };
    let mut nums = [0u64; 4];
    for v in &mut nums {
        *v = next(&mut pos)?;
    }
    let mut keys = [Vec::new(), Vec::new()];
    for k in &mut keys {
        let len = next(&mut pos)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .filter(|&e| e <= b.len())
            .ok_or_else(bad)?;
        *k = b[pos..end].to_vec();
        pos = end;
    }
    if pos != b.len() {
        return Err(bad());
    }
    let [smallest_key, largest_key] = keys;
    Ok(TableInfo {
        file_size: 0,
        num_entries: nums[0],
        raw_key_bytes: nums[1],
        raw_value_bytes: nums[2],
        data_blocks: nums[3],
        smallest_key,
        largest_key,
    })
}
