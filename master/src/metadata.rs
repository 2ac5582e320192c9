//! Reading and writing METADATA through the tablet server that serves it.
//!
//! METADATA's single tablet is located by the lock-service file
//! [`ROOT_TABLET_PATH`](tablet::meta::ROOT_TABLET_PATH) (a JSON [`TabletRecord`]). Its rows
//! are read with `ReadRows` and changed with `MutateRow`; every change carries the master's
//! sequencer, which the serving tablet server checks with the lock service before applying
//! it (DESIGN.md rule 7), so a deposed master cannot change METADATA.

use tablet::meta::{self, TabletRecord, FAMILY, METADATA_TABLE, METADATA_TABLET_ID, QUALIFIER};
use tablet::RowRange;

use crate::conns::{Conns, MAX_TABLET_MESSAGE};
use crate::error::{from_tablet_status, Error, Result};
use crate::tpb;

/// Where METADATA is served and the fence its writes carry.
pub struct MetaAccess<'a> {
    /// Connections.
    pub conns: &'a Conns,
    /// Address of the server serving METADATA.
    pub addr: &'a str,
    /// The master's sequencer.
    pub fence: &'a tpb::Sequencer,
}

fn tablet_ref() -> Option<tpb::TabletRef> {
    Some(tpb::TabletRef {
        table: METADATA_TABLE.to_string(),
        tablet_id: METADATA_TABLET_ID,
    })
}

impl MetaAccess<'_> {
    /// Every record in `range` of METADATA's rows, in key order.
    pub async fn scan(&self, range: RowRange) -> Result<Vec<TabletRecord>> {
        let mut c = self.conns.get(self.addr)?;
        let req = tpb::ReadRowsRequest {
            tablet: tablet_ref(),
            rows: Vec::new(),
            ranges: vec![tpb::RowRange {
                start: range.start,
                end: range.end,
            }],
            filter: Some(tpb::Filter {
                families: vec![FAMILY.to_string()],
                versions_per_column: Some(1),
                ..Default::default()
            }),
            rows_limit: 0,
        };
        let what = format!("ReadRows(METADATA) on {}", self.addr);
        // Each step of the stream (the call, then every message) must answer within the
        // RPC timeout: a stopped server holding METADATA keeps its connections open, and
        // one deadline for the whole scan (the long load timeout) stalled the master's
        // loop, failure detection included, for a minute (tests/cluster_zombie.rs).
        let deadline = self.conns.rpc_timeout;
        let call = c.read_rows(req);
        let mut stream = step(deadline, &what, call).await?.into_inner();
        let mut out = Vec::new();
        while let Some(msg) = step(deadline, &what, stream.message()).await? {
            for row in msg.rows {
                out.push(parse_row(&row)?);
            }
        }
        Ok(out)
    }

    /// Every record of METADATA (all tables).
    pub async fn scan_all(&self) -> Result<Vec<TabletRecord>> {
        self.scan(RowRange::all()).await
    }

    /// Writes `rec` at its row key (fenced). The row is cleared in the same atomic
    /// mutation, so the new record wins whatever timestamp the serving server's clock
    /// gives it (METADATA moves between servers whose clocks may disagree; a deletion
    /// marker hides every older change of the row regardless of timestamps).
    pub async fn put(&self, rec: &TabletRecord) -> Result<()> {
        let clear = tpb::Mutation {
            kind: Some(tpb::mutation::Kind::DeleteFromRow(
                tpb::mutation::DeleteFromRow {},
            )),
        };
        let m = tpb::Mutation {
            kind: Some(tpb::mutation::Kind::SetCell(tpb::mutation::SetCell {
                family: FAMILY.to_string(),
                qualifier: QUALIFIER.to_vec(),
                // Timestamp 0: the newest write wins by sequence number, whatever the
                // clocks (see tablet::meta::record_mutation).
                timestamp: 0,
                value: rec.to_json(),
            })),
        };
        self.mutate(
            rec.key(),
            vec![clear, m],
            &format!("put tablet {}", rec.tablet_id),
        )
        .await
    }

    /// Deletes the row of `rec` (fenced).
    pub async fn delete(&self, rec: &TabletRecord) -> Result<()> {
        let m = tpb::Mutation {
            kind: Some(tpb::mutation::Kind::DeleteFromRow(
                tpb::mutation::DeleteFromRow {},
            )),
        };
        self.mutate(
            rec.key(),
            vec![m],
            &format!("delete tablet {}", rec.tablet_id),
        )
        .await
    }

    async fn mutate(&self, row: Vec<u8>, mutations: Vec<tpb::Mutation>, what: &str) -> Result<()> {
        let mut c = self.conns.get(self.addr)?;
        let req = tpb::MutateRowRequest {
            tablet: tablet_ref(),
            row,
            mutations,
            sequencer: Some(self.fence.clone()),
        };
        let what = format!("METADATA {what} on {}", self.addr);
        crate::conns::with_deadline(self.conns.rpc_timeout, &what, c.mutate_row(req)).await?;
        Ok(())
    }
}

/// The record in one METADATA row.
fn parse_row(row: &tpb::Row) -> Result<TabletRecord> {
    let cell = row
        .cells
        .iter()
        .find(|c| c.family == FAMILY && c.qualifier == QUALIFIER)
        .ok_or_else(|| Error::Corruption {
            what: format!(
                "METADATA row {:?} has no {FAMILY}:record cell",
                hex(&row.key)
            ),
        })?;
    if cell.value.len() > MAX_TABLET_MESSAGE {
        return Err(Error::Corruption {
            what: format!("METADATA row {:?} too large", hex(&row.key)),
        });
    }
    let rec = TabletRecord::from_json(&cell.value).map_err(|e| Error::Corruption {
        what: format!("METADATA row {:?}: {e}", hex(&row.key)),
    })?;
    if rec.key() != row.key {
        return Err(Error::Corruption {
            what: format!(
                "METADATA row {:?} holds the record of tablet {} whose key differs",
                hex(&row.key),
                rec.tablet_id
            ),
        });
    }
    Ok(rec)
}

/// Lower-case hex of a key, for messages.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The record of METADATA's own tablet at `epoch` on `server`.
pub fn root_record(server: &crate::view::Server, epoch: tablet::Epoch) -> TabletRecord {
    TabletRecord {
        table: METADATA_TABLE.to_string(),
        table_id: meta::METADATA_TABLE_ID,
        tablet_id: METADATA_TABLET_ID,
        start: Vec::new(),
        end: Vec::new(),
        dir: TabletRecord::dir_for(meta::METADATA_TABLE_ID, METADATA_TABLET_ID),
        server_id: server.info.id.clone(),
        server_addr: server.info.addr.clone(),
        epoch,
    }
}

/// The descriptor a `LoadTablet` carries for `rec` with `schema`.
pub fn descriptor(rec: &TabletRecord, schema: &tablet::Schema) -> tpb::TabletDescriptor {
    tpb::TabletDescriptor {
        table: rec.table.clone(),
        table_id: rec.table_id,
        tablet_id: rec.tablet_id,
        start: rec.start.clone(),
        end: rec.end.clone(),
        dir: rec.dir.clone(),
        schema_json: serde_json::to_string(schema).expect("schema serializes"),
    }
}

/// A lock-service sequencer in the tablet protocol's form.
pub fn fence(seq: &lockservice::state::Sequencer) -> tpb::Sequencer {
    tpb::Sequencer {
        path: seq.path.clone(),
        mode: match seq.mode {
            lockservice::state::LockMode::Exclusive => "exclusive".into(),
            lockservice::state::LockMode::Shared => "shared".into(),
        },
        generation: seq.generation,
    }
}

/// One step of a METADATA stream, within `deadline`.
async fn step<T>(
    deadline: std::time::Duration,
    what: &str,
    f: impl std::future::Future<Output = std::result::Result<T, tonic::Status>>,
) -> Result<T> {
    tokio::time::timeout(deadline, f)
        .await
        .map_err(|_| Error::Unavailable(format!("{what}: no answer within {deadline:?}")))?
        .map_err(|s| from_tablet_status(what, s))
}
