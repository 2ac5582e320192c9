//! The admin gRPC service (master.proto). A standby, or a master still recovering,
//! answers `UNAVAILABLE` with `quarry-error=not-master`. Each call takes the master's
//! operation lock, so admin calls and the control loop never interleave.

use std::sync::{Arc, Weak};

use tokio::sync::MutexGuard;
use tonic::{Request, Response, Status};

use crate::convert::{table_to_pb, tablet_to_pb, MAX_MESSAGE};
use crate::error::{Error, Result};
use crate::master::{Active, Inner};
use crate::pb;
use crate::pb::master_server::{Master, MasterServer};
use crate::tables;
use crate::tpb;
use crate::tpb::master_notify_server::{MasterNotify, MasterNotifyServer};

/// Serves the admin API on `inner.cfg.listen` until the process ends. The service holds
/// the master only weakly: once [`crate::run`] returns, the master (and its session) is
/// dropped even if connections linger, and they get `NotMaster`.
pub async fn serve(inner: Arc<Inner>) -> Result<()> {
    let addr = inner.cfg.listen;
    let weak = Arc::downgrade(&inner);
    drop(inner);
    let notify = MasterNotifyServer::new(Notify {
        inner: weak.clone(),
    });
    let svc = MasterServer::new(Service { inner: weak })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    tonic::transport::Server::builder()
        .layer(lockservice::rpc_metrics::RpcMetricsLayer::new("master"))
        .add_service(svc)
        .add_service(notify)
        .serve(addr)
        .await
        .map_err(|e| Error::Unavailable(format!("admin service on {addr}: {e}")))
}

struct Service {
    inner: Weak<Inner>,
}

/// Tablet servers' notifications (tablet.proto `MasterNotify`). They only ask for an
/// early rescan, which reads METADATA itself: a notification carries no authority, so it
/// needs no fence, and it never waits for the operation lock (the master may hold it while
/// waiting for the very split being reported).
struct Notify {
    inner: Weak<Inner>,
}

#[tonic::async_trait]
impl MasterNotify for Notify {
    async fn split_done(
        &self,
        req: Request<tpb::SplitDoneRequest>,
    ) -> std::result::Result<Response<tpb::SplitDoneResponse>, Status> {
        let inner = self.inner.upgrade().ok_or(Error::NotMaster)?;
        let r = req.get_ref();
        tracing::info!(parent = r.parent, left = r.left, right = r.right, server = %r.server_id, "told of a split: rescanning");
        inner
            .rescan
            .store(true, std::sync::atomic::Ordering::Release);
        let what = format!(
            "tablet {} split into {} and {} by {}",
            r.parent, r.left, r.right, r.server_id
        );
        inner.ops.event(crate::status::EventKind::Split, 1, what);
        Ok(Response::new(tpb::SplitDoneResponse {}))
    }
}

type Guard<'a> = MutexGuard<'a, Option<Active>>;

impl Service {
    fn master(&self) -> Result<Arc<Inner>> {
        self.inner.upgrade().ok_or(Error::NotMaster)
    }
}

async fn active(inner: &Inner) -> Result<Guard<'_>> {
    let g = inner.active.lock().await;
    if g.is_none() {
        return Err(Error::NotMaster);
    }
    inner.guard()?;
    Ok(g)
}

fn act<'a>(g: &'a mut Guard<'_>) -> &'a mut Active {
    g.as_mut().expect("checked by active()")
}

#[tonic::async_trait]
impl Master for Service {
    async fn create_table(
        &self,
        req: Request<pb::CreateTableRequest>,
    ) -> std::result::Result<Response<pb::CreateTableResponse>, Status> {
        let inner = self.master()?;
        let mut g = active(&inner).await?;
        let (t, recs) = tables::create_table(&inner, act(&mut g), req.get_ref()).await?;
        Ok(Response::new(pb::CreateTableResponse {
            table: Some(table_to_pb(&t)),
            tablets: recs.iter().map(tablet_to_pb).collect(),
        }))
    }

    async fn delete_table(
        &self,
        req: Request<pb::DeleteTableRequest>,
    ) -> std::result::Result<Response<pb::DeleteTableResponse>, Status> {
        let inner = self.master()?;
        let mut g = active(&inner).await?;
        tables::delete_table(&inner, act(&mut g), &req.get_ref().name).await?;
        Ok(Response::new(pb::DeleteTableResponse {}))
    }

    async fn list_tables(
        &self,
        _req: Request<pb::ListTablesRequest>,
    ) -> std::result::Result<Response<pb::ListTablesResponse>, Status> {
        let inner = self.master()?;
        let mut g = active(&inner).await?;
        let a = act(&mut g);
        Ok(Response::new(pb::ListTablesResponse {
            tables: a.view.tables.values().map(table_to_pb).collect(),
        }))
    }

    async fn get_table(
        &self,
        req: Request<pb::GetTableRequest>,
    ) -> std::result::Result<Response<pb::GetTableResponse>, Status> {
        let inner = self.master()?;
        let mut g = active(&inner).await?;
        let a = act(&mut g);
        let name = &req.get_ref().name;
        let t = a
            .view
            .tables
            .get(name)
            .ok_or_else(|| Error::NotFound(format!("table {name:?}")))?;
        Ok(Response::new(pb::GetTableResponse {
            table: Some(table_to_pb(t)),
        }))
    }

    async fn modify_column_families(
        &self,
        req: Request<pb::ModifyColumnFamiliesRequest>,
    ) -> std::result::Result<Response<pb::ModifyColumnFamiliesResponse>, Status> {
        let inner = self.master()?;
        let mut g = active(&inner).await?;
        let t = tables::modify_families(&inner, act(&mut g), req.get_ref()).await?;
        Ok(Response::new(pb::ModifyColumnFamiliesResponse {
            table: Some(table_to_pb(&t)),
        }))
    }

    async fn list_tablets(
        &self,
        req: Request<pb::ListTabletsRequest>,
    ) -> std::result::Result<Response<pb::ListTabletsResponse>, Status> {
        let inner = self.master()?;
        let mut g = active(&inner).await?;
        let a = act(&mut g);
        let tablets = match &req.get_ref().table {
            Some(name) => {
                let t = a
                    .view
                    .tables
                    .get(name)
                    .ok_or_else(|| Error::NotFound(format!("table {name:?}")))?;
                a.view.tablets_of(t.id).iter().map(tablet_to_pb).collect()
            }
            None => {
                let mut recs: Vec<_> = a.view.root.iter().cloned().collect();
                let mut user: Vec<_> = a.view.tablets.values().cloned().collect();
                user.sort_by_key(|r| r.key());
                recs.extend(user);
                recs.iter().map(tablet_to_pb).collect()
            }
        };
        Ok(Response::new(pb::ListTabletsResponse { tablets }))
    }

    async fn list_servers(
        &self,
        _req: Request<pb::ListServersRequest>,
    ) -> std::result::Result<Response<pb::ListServersResponse>, Status> {
        let inner = self.master()?;
        let mut g = active(&inner).await?;
        Ok(Response::new(pb::ListServersResponse {
            servers: servers(act(&mut g)),
        }))
    }

    async fn split_tablet(
        &self,
        req: Request<pb::SplitTabletRequest>,
    ) -> std::result::Result<Response<pb::SplitTabletResponse>, Status> {
        let inner = self.master()?;
        let mut g = active(&inner).await?;
        let (l, r) = tables::split(&inner, act(&mut g), req.get_ref()).await?;
        Ok(Response::new(pb::SplitTabletResponse {
            left: Some(tablet_to_pb(&l)),
            right: Some(tablet_to_pb(&r)),
        }))
    }

    async fn compact_table(
        &self,
        req: Request<pb::CompactTableRequest>,
    ) -> std::result::Result<Response<pb::CompactTableResponse>, Status> {
        let inner = self.master()?;
        let mut g = active(&inner).await?;
        let r = req.get_ref();
        let n = tables::compact(&inner, act(&mut g), &r.table, r.major).await?;
        let kind = if r.major { "major" } else { "minor" };
        let what = format!("{kind} compaction of {n} tablets of table {}", r.table);
        inner
            .ops
            .event(crate::status::EventKind::Compaction, n, what);
        Ok(Response::new(pb::CompactTableResponse { tablets: n }))
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> std::result::Result<Response<pb::StatusResponse>, Status> {
        let inner = self.master()?;
        let mut g = active(&inner).await?;
        let a = act(&mut g);
        Ok(Response::new(pb::StatusResponse {
            master_id: inner.id.clone(),
            master_addr: inner.cfg.advertise.clone(),
            lock_generation: inner.generation(),
            servers: servers(a),
            tablets: a.view.tablets.len() as u64,
            unassigned: a.view.unassigned.len() as u64 + u64::from(a.view.root_unassigned),
            tables: a.view.tables.len() as u64,
        }))
    }
}

fn servers(a: &Active) -> Vec<pb::ServerInfo> {
    let load = a.view.load();
    a.view
        .servers
        .values()
        .map(|s| pb::ServerInfo {
            id: s.info.id.clone(),
            addr: s.info.addr.clone(),
            tablets: load.get(&s.info.id).copied().unwrap_or(0) as u64,
        })
        .collect()
}
