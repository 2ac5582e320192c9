//! Writes an SSTable: data blocks as entries arrive, then filter, index, properties and
//! footer, then one fsync.
//!
//! Invariants: keys arrive strictly increasing (checked: `InvalidArgument` otherwise);
//! `finish` returns only after the file is synced; after any error the builder refuses
//! further calls (the file is then garbage the caller must delete).

use super::format::{encode_properties, Footer};
use super::{TableInfo, TableOptions};
use crate::block::{encode_block, BlockBuilder, BlockHandle, Compression, BLOCK_TRAILER_SIZE};
use crate::error::{Error, Result};
use crate::filter::FilterBuilder;
use crate::fs::WritableFile;

/// Index entries store whole last keys, so a restart at every entry costs nothing.
const INDEX_RESTART_INTERVAL: usize = 1;

/// Builds one SSTable into a writable file.
pub struct TableBuilder {
    file: Box<dyn WritableFile>,
    opts: TableOptions,
    data: BlockBuilder,
    index: BlockBuilder,
    filter: FilterBuilder,
    /// Bytes written to the file so far.
    offset: u64,
    info: TableInfo,
    failed: bool,
}

impl TableBuilder {
    /// A builder writing to `file` (which should be empty) with `opts`.
    pub fn new(file: Box<dyn WritableFile>, opts: TableOptions) -> TableBuilder {
        TableBuilder {
            file,
            data: BlockBuilder::new(opts.restart_interval),
            index: BlockBuilder::new(INDEX_RESTART_INTERVAL),
            filter: FilterBuilder::new(opts.bloom_bits_per_key),
            opts,
            offset: 0,
            info: TableInfo::default(),
            failed: false,
        }
    }

    /// Adds an entry. `key` must be greater than the previous key, and key and value
    /// shorter than 4 GiB; otherwise `InvalidArgument` and nothing is written.
    pub fn add(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_usable()?;
        if self.info.num_entries > 0 && key <= &self.info.largest_key[..] {
            return Err(Error::InvalidArgument(format!(
                "table keys out of order: {:?} after {:?}",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(&self.info.largest_key)
            )));
        }
        if key.len() > u32::MAX as usize || value.len() > u32::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "entry too large: key {} bytes, value {} bytes (limit 4 GiB each)",
                key.len(),
                value.len()
            )));
        }
        if self.info.num_entries == 0 {
            self.info.smallest_key = key.to_vec();
        }
        self.data.add(key, value);
        self.info.num_entries += 1;
        self.info.raw_key_bytes += key.len() as u64;
        self.info.raw_value_bytes += value.len() as u64;
        self.info.largest_key.clear();
        self.info.largest_key.extend_from_slice(key);
        if self.data.estimated_size() >= self.opts.block_size {
            self.flush_data_block()?;
        }
        Ok(())
    }

    /// Adds a key to the Bloom filter (the tablet adds each cell's row).
    pub fn add_filter_key(&mut self, filter_key: &[u8]) {
        self.filter.add_key(filter_key);
    }

    /// Entries added so far.
    pub fn num_entries(&self) -> u64 {
        self.info.num_entries
    }

    /// Bytes the file would have if the current block were cut now (without the filter,
    /// index and footer).
    pub fn estimated_size(&self) -> u64 {
        self.offset + self.data.estimated_size() as u64
    }

    /// Writes the filter, index, properties and footer, syncs the file, and describes it.
    pub fn finish(mut self) -> Result<TableInfo> {
        self.check_usable()?;
        if !self.data.is_empty() {
            self.flush_data_block()?;
        }
        let filter_payload = std::mem::replace(&mut self.filter, FilterBuilder::new(0)).finish();
        let filter = self.write_block(&filter_payload, Compression::None)?;
        let index_payload = self.index.finish();
        let index = self.write_block(&index_payload, Compression::None)?;
        let properties = self.write_block(&encode_properties(&self.info), Compression::None)?;
        let footer = Footer {
            filter,
            index,
            properties,
        };
        self.append(&footer.encode())?;
        debug_assert_eq!(self.offset, self.file.len());
        let r = self.file.sync();
        self.poison_on_err(r)?;
        self.info.file_size = self.offset;
        Ok(self.info)
    }

    fn flush_data_block(&mut self) -> Result<()> {
        let last_key = self.data.last_key().to_vec();
        let raw = self.data.finish();
        let handle = self.write_block(&raw, self.opts.compression)?;
        let mut encoded = Vec::with_capacity(20);
        handle.encode_to(&mut encoded);
        self.index.add(&last_key, &encoded);
        self.info.data_blocks += 1;
        Ok(())
    }

    fn write_block(&mut self, raw: &[u8], compression: Compression) -> Result<BlockHandle> {
        let stored = encode_block(raw, compression);
        let handle = BlockHandle {
            offset: self.offset,
            size: (stored.len() - BLOCK_TRAILER_SIZE) as u64,
        };
        self.append(&stored)?;
        Ok(handle)
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let r = self.file.append(bytes);
        self.poison_on_err(r)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn poison_on_err(&mut self, r: Result<()>) -> Result<()> {
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            return Err(Error::InvalidArgument(
                "table builder used after a failed write".into(),
            ));
        }
        Ok(())
    }
}
