//! Helpers shared by the table tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use sstable::{
    BlockCache, FaultFs, Fs, KvIter, Result, Table, TableBuilder, TableInfo, TableOptions,
};

/// Builds a table at `path` on `fs` from sorted entries; each key is also a filter key.
pub fn build_table(
    fs: &FaultFs,
    path: &Path,
    kvs: &[(Vec<u8>, Vec<u8>)],
    opts: TableOptions,
) -> TableInfo {
    let mut b = TableBuilder::new(fs.create(path).unwrap(), opts);
    for (k, v) in kvs {
        b.add(k, v).unwrap();
        b.add_filter_key(k);
    }
    b.finish().unwrap()
}

/// Opens the table at `path`.
pub fn open(
    fs: &FaultFs,
    path: &Path,
    cache: Option<Arc<BlockCache>>,
    pin: bool,
) -> Result<Arc<Table>> {
    Table::open(fs.open(path)?, cache, pin)
}

/// Every entry from the iterator's current position to its end.
pub fn drain(it: &mut dyn KvIter) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next()?;
    }
    Ok(out)
}

/// Every entry of a table, from the first.
pub fn read_all(table: &Arc<Table>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut it = table.iter();
    it.seek_to_first()?;
    drain(&mut it)
}

/// `n` entries with keys `key00000`... and values of `value_len` bytes.
pub fn entries(n: usize, value_len: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let v: Vec<u8> = format!("v{i}-").bytes().cycle().take(value_len).collect();
            (format!("key{i:05}").into_bytes(), v)
        })
        .collect()
}
