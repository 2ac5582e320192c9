//! The admin API: tables, column families, tablets, servers, splits, compactions and
//! status, through the master's gRPC service (`master::pb`).
//!
//! The active master's address is the content of the lock-service file
//! [`MASTER_LOCK_PATH`](tablet::meta::MASTER_LOCK_PATH). A standby answers `not-master`;
//! the client then reads the file again and retries. Reads (list, get, status) are
//! retried after any transient failure; changes only when the request provably did not
//! reach a master, else they fail with [`Error::OutcomeUnknown`] (look at the tables to
//! learn what happened).

use std::future::Future;

use master::pb;
use master::pb::master_client::MasterClient;
use tablet::meta;
use tonic::transport::Channel;

use crate::client::{Client, MAX_MESSAGE_BYTES};
use crate::error::{Error, Result};
use crate::retry::{decide, describe, Decision};

pub use master::pb::{
    ColumnFamily, FamilyModification, ServerInfo, StatusResponse, Table, TabletInfo,
};

impl Client {
    /// The active master's address (from the lock service, cached).
    pub async fn master_addr(&self) -> Result<String> {
        if let Some(a) = self.inner.master.lock().clone() {
            return Ok(a);
        }
        let (content, _) =
            self.inner
                .lock
                .read(meta::MASTER_LOCK_PATH)
                .await
                .map_err(|e| match e {
                    lockservice::Error::NotFound(_) => {
                        Error::Unavailable("no master has started yet".into())
                    }
                    e => e.into(),
                })?;
        let addr = String::from_utf8(content)
            .map_err(|_| Error::Internal(format!("{} is not UTF-8", meta::MASTER_LOCK_PATH)))?;
        let addr = addr.trim().to_string();
        if addr.is_empty() {
            return Err(Error::Unavailable(
                "no master has published its address yet".into(),
            ));
        }
        *self.inner.master.lock() = Some(addr.clone());
        Ok(addr)
    }

    /// Runs one master RPC with retries (see the module doc).
    async fn with_master<T, F, Fut>(
        &self,
        op: &'static str,
        idempotent: bool,
        mut f: F,
    ) -> Result<T>
    where
        F: FnMut(MasterClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = self.deadline();
        let mut backoff = self.backoff();
        loop {
            let addr = match self.master_addr().await {
                Ok(a) => a,
                Err(Error::Unavailable(why)) => {
                    self.pause(&mut backoff, deadline, &why).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let client = MasterClient::new(self.channel(&addr)?)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            let status = match self.attempt(deadline, f(client)).await {
                Ok(v) => return Ok(v),
                Err(s) => s,
            };
            match decide(op, &status, idempotent) {
                Decision::Fail(e) => return Err(e),
                Decision::Retry { relocate } => {
                    if relocate {
                        *self.inner.master.lock() = None;
                    }
                    self.pause(
                        &mut backoff,
                        deadline,
                        &format!("master {addr}: {}", describe(&status)),
                    )
                    .await?;
                }
            }
        }
    }

    /// Creates a table with `families` and initial `split_keys` (n keys: n + 1 tablets);
    /// returns once every tablet is served.
    pub async fn create_table(
        &self,
        name: &str,
        families: Vec<ColumnFamily>,
        split_keys: Vec<Vec<u8>>,
    ) -> Result<pb::CreateTableResponse> {
        self.forget_table(name);
        let req = pb::CreateTableRequest {
            name: name.to_string(),
            families,
            split_keys,
        };
        self.with_master("create_table", false, |mut c| {
            let req = req.clone();
            async move { c.create_table(req).await }
        })
        .await
    }

    /// Deletes a table and its data.
    pub async fn delete_table(&self, name: &str) -> Result<()> {
        let req = pb::DeleteTableRequest {
            name: name.to_string(),
        };
        let r = self
            .with_master("delete_table", false, |mut c| {
                let req = req.clone();
                async move { c.delete_table(req).await }
            })
            .await;
        self.forget_table(name);
        r.map(|_| ())
    }

    /// Every table.
    pub async fn list_tables(&self) -> Result<Vec<Table>> {
        let r = self
            .with_master("list_tables", true, |mut c| async move {
                c.list_tables(pb::ListTablesRequest {}).await
            })
            .await?;
        Ok(r.tables)
    }

    /// One table with its families.
    pub async fn get_table(&self, name: &str) -> Result<Table> {
        let req = pb::GetTableRequest {
            name: name.to_string(),
        };
        let r = self
            .with_master("get_table", true, |mut c| {
                let req = req.clone();
                async move { c.get_table(req).await }
            })
            .await?;
        r.table
            .ok_or_else(|| Error::Internal("GetTable answer without a table".into()))
    }

    /// Creates, updates or drops column families (in order, all or none).
    pub async fn modify_column_families(
        &self,
        table: &str,
        modifications: Vec<FamilyModification>,
    ) -> Result<Table> {
        let req = pb::ModifyColumnFamiliesRequest {
            table: table.to_string(),
            modifications,
        };
        let r = self
            .with_master("modify_column_families", false, |mut c| {
                let req = req.clone();
                async move { c.modify_column_families(req).await }
            })
            .await?;
        r.table
            .ok_or_else(|| Error::Internal("ModifyColumnFamilies answer without a table".into()))
    }

    /// Marks a locality group of `table` in-memory (or not): every SSTable of the group is
    /// then held in memory by its serving tablets, which reload with the new schema.
    pub async fn set_locality_group(
        &self,
        table: &str,
        group: &str,
        in_memory: bool,
    ) -> Result<Table> {
        let m = FamilyModification {
            kind: Some(pb::family_modification::Kind::SetGroup(pb::LocalityGroup {
                name: group.to_string(),
                in_memory,
            })),
        };
        self.modify_column_families(table, vec![m]).await
    }

    /// Tablets as METADATA records them (of one table, or of all with METADATA's own).
    pub async fn list_tablets(&self, table: Option<&str>) -> Result<Vec<TabletInfo>> {
        let req = pb::ListTabletsRequest {
            table: table.map(String::from),
        };
        let r = self
            .with_master("list_tablets", true, |mut c| {
                let req = req.clone();
                async move { c.list_tablets(req).await }
            })
            .await?;
        Ok(r.tablets)
    }

    /// Live tablet servers.
    pub async fn list_servers(&self) -> Result<Vec<ServerInfo>> {
        let r = self
            .with_master("list_servers", true, |mut c| async move {
                c.list_servers(pb::ListServersRequest {}).await
            })
            .await?;
        Ok(r.servers)
    }

    /// Splits the tablet of `table` holding `row`, at `row`. Returns the two children.
    pub async fn split_tablet(&self, table: &str, row: &[u8]) -> Result<(TabletInfo, TabletInfo)> {
        let req = pb::SplitTabletRequest {
            table: table.to_string(),
            row: row.to_vec(),
            tablet_id: 0,
            split_row: None,
        };
        let r = self
            .with_master("split_tablet", false, |mut c| {
                let req = req.clone();
                async move { c.split_tablet(req).await }
            })
            .await?;
        match (r.left, r.right) {
            (Some(l), Some(r)) => Ok((l, r)),
            _ => Err(Error::Internal(
                "SplitTablet answer without both children".into(),
            )),
        }
    }

    /// Asks every tablet of `table` to compact; returns how many were asked.
    pub async fn compact_table(&self, table: &str, major: bool) -> Result<u64> {
        let req = pb::CompactTableRequest {
            table: table.to_string(),
            major,
        };
        let r = self
            .with_master("compact_table", true, |mut c| {
                let req = req.clone();
                async move { c.compact_table(req).await }
            })
            .await?;
        Ok(r.tablets)
    }

    /// The master's view of the cluster.
    pub async fn status(&self) -> Result<StatusResponse> {
        self.with_master("status", true, |mut c| async move {
            c.status(pb::StatusRequest {}).await
        })
        .await
    }
}
