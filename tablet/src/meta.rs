//! The METADATA table and the lock-service namespace: the names every process agrees on.
//!
//! METADATA is an ordinary table with one tablet (id 0, never split) served by some tablet
//! server; where it is served is recorded in the lock-service file [`ROOT_TABLET_PATH`]. It
//! has one row per user tablet, keyed by table id and the tablet's *end* row, as in Bigtable
//! and HBase, so the tablet holding row `r` of table `t` is the first METADATA row at or
//! after [`lookup_key`]`(t, r)`:
//!
//! ```text
//! key(t, end)       = t:u64be 0x00 end      // a tablet with an end row
//! key(t, unbounded) = t:u64be 0x01          // the table's last tablet
//! ```
//!
//! Each row has one cell `loc:record` (JSON of [`TabletRecord`]). Writes to METADATA carry
//! the writer's lock sequencer (the master's, or a tablet server's when it commits a split)
//! and the serving tablet server checks it with the lock service before applying them.

use serde::{Deserialize, Serialize};

use crate::manifest::{hex, RowRange};
use crate::schema::{GcPolicy, Schema, DEFAULT_GROUP};
use crate::types::{Epoch, TabletId};

/// Name of the METADATA table.
pub const METADATA_TABLE: &str = "METADATA";
/// Table id of METADATA; user tables start at 1.
pub const METADATA_TABLE_ID: u64 = 0;
/// Tablet id of METADATA's only tablet; user tablets start at 1.
pub const METADATA_TABLET_ID: TabletId = 0;
/// The family holding a tablet's record.
pub const FAMILY: &str = "loc";
/// The qualifier of the record cell.
pub const QUALIFIER: &[u8] = b"record";

/// Lock-service path of the master lock; its content is the master's address.
pub const MASTER_LOCK_PATH: &str = "/quarry/master";
/// Directory of tablet servers: each holds an exclusive lock on its own file there, whose
/// content is a JSON [`ServerInfo`].
pub const SERVERS_DIR: &str = "/quarry/servers";
/// Where METADATA's tablet is served (content: JSON [`TabletRecord`]).
pub const ROOT_TABLET_PATH: &str = "/quarry/root-tablet";
/// Directory of table schemas: `/quarry/tables/<name>` holds a JSON [`TableInfo`].
pub const TABLES_DIR: &str = "/quarry/tables";
/// Counter file for table and tablet ids (content: decimal next id), updated by
/// compare-and-set on its content generation.
pub const IDS_PATH: &str = "/quarry/next-id";

/// The schema of METADATA: one family, one version.
pub fn metadata_schema() -> Schema {
    let mut s = Schema::default();
    s.add_family(FAMILY, GcPolicy::MaxVersions(1), DEFAULT_GROUP)
        .expect("valid family");
    s
}

/// The METADATA row key of the tablet of `table_id` that ends at `end` (empty: no end).
pub fn row_key(table_id: u64, end: &[u8]) -> Vec<u8> {
    let mut k = table_id.to_be_bytes().to_vec();
    if end.is_empty() {
        k.push(0x01);
    } else {
        k.push(0x00);
        k.extend_from_slice(end);
    }
    k
}

/// Scan METADATA from here; the first row found (if it belongs to `table_id`) is the
/// tablet holding `row`. It is the smallest key above `row_key(table_id, row)`, because a
/// tablet's end row is exclusive.
pub fn lookup_key(table_id: u64, row: &[u8]) -> Vec<u8> {
    let mut k = table_id.to_be_bytes().to_vec();
    k.push(0x00);
    k.extend_from_slice(row);
    k.push(0x00);
    k
}

/// Every METADATA row of one table.
pub fn table_rows(table_id: u64) -> RowRange {
    RowRange {
        start: table_id.to_be_bytes().to_vec(),
        end: (table_id + 1).to_be_bytes().to_vec(),
    }
}

/// What METADATA says about one tablet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TabletRecord {
    /// Table name.
    pub table: String,
    /// Table id.
    pub table_id: u64,
    /// Tablet id.
    pub tablet_id: TabletId,
    /// First row (inclusive).
    #[serde(with = "hex")]
    pub start: Vec<u8>,
    /// End row (exclusive; empty: none).
    #[serde(with = "hex")]
    pub end: Vec<u8>,
    /// Directory relative to the data root.
    pub dir: String,
    /// The server it is assigned to (empty: unassigned).
    pub server_id: String,
    /// That server's address.
    pub server_addr: String,
    /// Epoch of the current assignment.
    pub epoch: Epoch,
}

impl TabletRecord {
    /// Its METADATA row key.
    pub fn key(&self) -> Vec<u8> {
        row_key(self.table_id, &self.end)
    }

    /// Its row range.
    pub fn range(&self) -> RowRange {
        RowRange::new(&self.start, &self.end)
    }

    /// The directory a new tablet of a table gets.
    pub fn dir_for(table_id: u64, tablet_id: TabletId) -> String {
        format!("tables/{table_id}/{tablet_id}")
    }

    /// JSON for the record cell or the root-tablet file.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("record serializes")
    }

    /// Parses the JSON of [`TabletRecord::to_json`].
    pub fn from_json(b: &[u8]) -> Result<TabletRecord, String> {
        serde_json::from_slice(b).map_err(|e| format!("bad tablet record: {e}"))
    }
}

/// A tablet server's file in [`SERVERS_DIR`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Unique for this incarnation of the server (its commit log is `logs/<id>`).
    pub id: String,
    /// gRPC address clients and the master use.
    pub addr: String,
}

/// A table's file in [`TABLES_DIR`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    /// Table name.
    pub name: String,
    /// Table id (never reused).
    pub id: u64,
    /// Families, GC policies and locality groups.
    pub schema: Schema,
}

/// The mutation that writes `rec` into its METADATA row. Records are written at timestamp
/// 0, so the newest write wins by sequence number and no server's wall clock matters.
pub fn record_mutation(rec: &TabletRecord) -> crate::Mutation {
    crate::Mutation::set(FAMILY, QUALIFIER, 0, &rec.to_json())
}

/// Allocates `n` consecutive ids from the counter file [`IDS_PATH`] by compare-and-set on
/// its content generation (retrying on a lost race), fenced by the caller's sequencer;
/// returns the first. Ids start at 1 (0 is METADATA's).
pub async fn allocate_ids(
    c: &lockservice::client::Client,
    n: u64,
    fence: &lockservice::state::Sequencer,
) -> Result<u64, lockservice::Error> {
    match c.create(IDS_PATH, false, b"1").await {
        Ok(_) | Err(lockservice::Error::AlreadyExists(_)) => {}
        Err(e) => return Err(e),
    }
    loop {
        let (content, meta) = c.read(IDS_PATH).await?;
        let text = String::from_utf8_lossy(&content);
        let bad = |what: String| lockservice::Error::Corruption {
            file: IDS_PATH.to_string(),
            offset: 0,
            what,
        };
        let next: u64 = text
            .trim()
            .parse()
            .map_err(|_| bad(format!("{IDS_PATH} holds {text:?}, not a decimal id")))?;
        let next = next.max(1);
        let after = next
            .checked_add(n)
            .ok_or_else(|| bad(format!("{IDS_PATH} overflows")))?;
        let w = c
            .write(
                IDS_PATH,
                after.to_string().as_bytes(),
                Some(meta.content_generation),
                Some(fence),
            )
            .await;
        match w {
            Ok(_) => return Ok(next),
            Err(lockservice::Error::FailedPrecondition(_)) => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_the_tablet_whose_range_holds_the_row() {
        // Tablets of table 3: [.., "g"), ["g", "p"), ["p", ..); table 4 after them.
        let mut keys = [
            row_key(3, b"g"),
            row_key(3, b"p"),
            row_key(3, b""),
            row_key(4, b"a"),
            row_key(2, b""),
        ];
        keys.sort();
        let find = |t, r: &[u8]| keys.iter().find(|k| **k >= lookup_key(t, r)).cloned();
        assert_eq!(find(3, b"a"), Some(row_key(3, b"g")));
        assert_eq!(find(3, b"f\xff"), Some(row_key(3, b"g")));
        assert_eq!(
            find(3, b"g"),
            Some(row_key(3, b"p")),
            "end rows are exclusive"
        );
        assert_eq!(find(3, b"zzz"), Some(row_key(3, b"")));
        assert!(table_rows(3).contains(&row_key(3, b"")));
        assert!(!table_rows(3).contains(&row_key(4, b"a")));
    }
}
