//! A tablet server serves only loads addressed to its own incarnation, and an unload with
//! a fence makes "not loaded here" definitive: a load at or below the fenced epoch that
//! arrives (or finishes) afterwards never starts serving. Both close a window in which the
//! master would assign a tablet to a second server while a first one serves it (seen in a
//! `quarry chaos --scenario soak` run: a restarted server on a dead incarnation's address
//! accepted a load meant for the dead one).
//!
//! In this process: a one-replica lock service and a tablet server (real files and
//! sockets); the test holds the master lock itself and speaks the master's protocol.

mod harness;

use harness::*;
use master::metadata::descriptor;
use master::tpb;
use tablet::meta::TabletRecord;
use tablet::Schema;

fn record(tablet_id: u64) -> TabletRecord {
    TabletRecord {
        table: "t".into(),
        table_id: 1,
        tablet_id,
        start: Vec::new(),
        end: Vec::new(),
        dir: format!("tables/1/{tablet_id}"),
        server_id: String::new(),
        server_addr: String::new(),
        epoch: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loads_for_another_incarnation_or_a_fenced_epoch_never_serve() {
    let LockAndServer {
        dir: _dir,
        lock: _lock,
        lock_addr,
        listen,
        server: _server,
        ..
    } = lock_and_server(|_| {}).await;

    // Play the master: hold the master lock and fence every command with it.
    // (The session is bound, not dropped: it holds the master lock.)
    let ActingMaster {
        seq,
        mut ts,
        server_id: me,
        session: _session,
        client: _client,
    } = act_as_master(&lock_addr, listen).await;
    let schema = Schema::with_families(["f"]);
    let load = |tablet_id: u64, epoch: u64, server_id: &str| tpb::LoadTabletRequest {
        tablet: Some(descriptor(&record(tablet_id), &schema)),
        epoch,
        create: true,
        master: Some(seq.clone()),
        server_id: server_id.to_string(),
    };
    let served = |ts: &mut tpb::tablet_client::TabletClient<_>| {
        let mut ts = ts.clone();
        async move {
            ts.list_tablets(tpb::ListTabletsRequest {})
                .await
                .unwrap()
                .into_inner()
                .tablets
                .iter()
                .map(|t| (t.tablet.as_ref().unwrap().tablet_id, t.epoch))
                .collect::<Vec<_>>()
        }
    };

    // A load meant for a dead incarnation on this address is refused.
    let e = ts.load_tablet(load(7, 1, "ts-dead")).await.unwrap_err();
    assert_eq!(tag(&e), "wrong-server", "{e:?}");
    assert!(served(&mut ts).await.is_empty());
    let e = ts
        .unload_tablet(tpb::UnloadTabletRequest {
            tablet_id: 7,
            master: Some(seq.clone()),
            server_id: "ts-dead".into(),
            fence_epoch: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(tag(&e), "wrong-server", "{e:?}");

    // A fenced unload of a tablet not loaded here answers not-serving, and from then on
    // a load at or below the fenced epoch fails instead of serving.
    let e = ts
        .unload_tablet(tpb::UnloadTabletRequest {
            tablet_id: 7,
            master: Some(seq.clone()),
            server_id: me.clone(),
            fence_epoch: 5,
        })
        .await
        .unwrap_err();
    assert_eq!(tag(&e), "not-serving", "{e:?}");
    let e = ts.load_tablet(load(7, 5, &me)).await.unwrap_err();
    assert_eq!(tag(&e), "stale-epoch", "{e:?}");
    assert!(served(&mut ts).await.is_empty());

    // A newer assignment to this server is served as usual.
    ts.load_tablet(load(7, 6, &me)).await.unwrap();
    assert_eq!(served(&mut ts).await, vec![(7, 6)]);

    // A fenced unload of a served tablet unloads it.
    ts.unload_tablet(tpb::UnloadTabletRequest {
        tablet_id: 7,
        master: Some(seq.clone()),
        server_id: me.clone(),
        fence_epoch: 6,
    })
    .await
    .unwrap();
    assert!(served(&mut ts).await.is_empty());
}
