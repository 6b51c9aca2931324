//! The hub on PostgreSQL when the database server crashes and restarts
//! (`pg_ctl -m immediate`: no shutdown checkpoint, recovery at start)
//! during sync: what the hub acknowledged before is still there, the
//! change in flight is not lost (the terminal sends it again), and sync
//! goes on once the server is back. Its own test binary: it restarts its
//! process's throwaway server.

use automerge::{ActorId, Automerge};
use engine::document::instance;
use engine::ids::{EventId, TaskId};
use engine::model::{Status, StatusUpdate};
use engine::replica::hub::HubLimits;
use hub::pg::testing::PgServer;

mod common;
use common::{content, Backend, Client};

fn completion(n: u128, task: u128) -> StatusUpdate {
    StatusUpdate {
        id: EventId(uuid::Uuid::from_u128(n)),
        task: TaskId(uuid::Uuid::from_u128(task)),
        status: Status::Completed,
        worker: "w1".parse().unwrap(),
        terminal: "pos-1".parse().unwrap(),
        note: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_crash_during_sync_loses_nothing_acknowledged_and_sync_resumes() {
    let Some(server) = PgServer::shared() else {
        return;
    };
    let hub = common::start_on(Backend::Postgres, HubLimits::default()).await;
    let id = content("store-a", 1).id;
    let mut a = Client::join(&hub.addr, "tok-store-a", "till-1").await;
    let mut doc = Automerge::new();
    a.sync_until_quiet(id, &mut doc).await;
    doc.set_actor(ActorId::random());
    let now = || chrono::Utc::now().timestamp_millis();
    instance::record_status(&mut doc, &completion(1, 101), now()).unwrap();
    assert!(
        a.sync_until_quiet(id, &mut doc).await.is_empty(),
        "acknowledged"
    );

    server.restart_immediate();

    // The next change: the hub's first commit after the crash fails (its
    // connection died with the server) and it closes the connection
    // rather than acknowledge; the terminal reconnects and sends it again.
    instance::record_status(&mut doc, &completion(2, 102), now()).unwrap();
    let _ = a.sync_until_quiet(id, &mut doc).await;
    let mut b = Client::join(&hub.addr, "tok-store-a", "till-1").await;
    assert!(b.sync_until_quiet(id, &mut doc).await.is_empty());

    // A fresh terminal gets both from the hub.
    let mut fresh = Client::join(&hub.addr, "tok-store-a", "till-2").await;
    let mut copy = Automerge::new();
    fresh.sync_until_quiet(id, &mut copy).await;
    let view = instance::read(&copy).unwrap();
    let done: Vec<Status> = view.tasks.iter().map(|t| t.status.current).collect();
    assert_eq!(
        done,
        vec![Status::Completed, Status::Completed],
        "both completions kept"
    );
    for t in &view.tasks {
        assert_eq!(t.status.history.len(), 1, "once each");
    }
}
