//! The hub's `/sync` endpoint over real WebSockets: authentication at the
//! upgrade, scoping, validation answers, fan-out and limits.

use automerge::{ActorId, Automerge};
use engine::document::instance;
use engine::ids::{DocumentId, EventId, Principal, TaskId};
use engine::model::{Status, StatusUpdate};
use engine::protocol::wire::{self, WireMessage};
use engine::replica::hub::HubLimits;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{connect, content, next, Backend, Client, TestHub};

/// The shared test hub, plus an expired and a revoked token of `store-a`.
async fn start(backend: Backend, limits: HubLimits) -> TestHub {
    let hub = common::start_on(backend, limits).await;
    hub.state
        .hub
        .registry()
        .call(|hub, now| {
            let a = Principal::Store("store-a".parse().unwrap());
            hub.add_token("tok-expired", &a, "", now, Some(now - 1))
                .unwrap();
            hub.add_token("tok-revoked", &a, "", now, None).unwrap();
            hub.revoke_token("tok-revoked", now).unwrap();
            ((), Vec::new())
        })
        .await
        .unwrap();
    hub
}

on_each_backend! {
    #[tokio::test]
    async fn the_upgrade_refuses_missing_unknown_expired_and_revoked_tokens(backend: Backend) {
    let hub = start(backend, HubLimits::default()).await;
    for t in [None, Some("nope"), Some("tok-expired"), Some("tok-revoked")] {
        assert_eq!(connect(&hub.addr, t).await.err(), Some(401), "token {t:?}");
    }
    // ?token= works as well as the header.
    let url = format!("ws://{}/sync?token=tok-store-a", hub.addr);
    assert!(tokio_tungstenite::connect_async(url).await.is_ok());
}
}

on_each_backend! {
    #[tokio::test]
    async fn a_store_sees_its_documents_and_another_stores_look_missing(backend: Backend) {
    let hub = start(backend, HubLimits::default()).await;
    let mut c = Client::join(&hub.addr, "tok-store-a", "a").await;
    let mut doc = Automerge::new();
    let errs = c.sync_until_quiet(content("store-a", 1).id, &mut doc).await;
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(instance::read(&doc).unwrap().tasks.len(), 2);
    let mut other = Automerge::new();
    let errs = c
        .sync_until_quiet(content("store-b", 2).id, &mut other)
        .await;
    assert_eq!(errs, vec!["unavailable".to_owned()]);
    let mut missing = Automerge::new();
    let errs = c
        .sync_until_quiet(DocumentId(uuid::Uuid::from_u128(999)), &mut missing)
        .await;
    assert_eq!(
        errs,
        vec!["unavailable".to_owned()],
        "missing and forbidden look the same"
    );
}
}

on_each_backend! {
    #[tokio::test]
    async fn accepted_changes_fan_out_and_rejected_ones_are_answered_and_not_forwarded(backend: Backend) {
    let hub = start(backend, HubLimits::default()).await;
    let id = content("store-a", 1).id;
    let mut a = Client::join(&hub.addr, "tok-store-a", "a").await;
    let mut b = Client::join(&hub.addr, "tok-store-a", "b").await;
    let (mut da, mut db) = (Automerge::new(), Automerge::new());
    a.sync_until_quiet(id, &mut da).await;
    b.sync_until_quiet(id, &mut db).await;
    da.set_actor(ActorId::random());
    let update = StatusUpdate {
        id: EventId(uuid::Uuid::from_u128(7)),
        task: TaskId(uuid::Uuid::from_u128(101)),
        status: Status::Completed,
        worker: "w1".parse().unwrap(),
        terminal: "pos-1".parse().unwrap(),
        note: None,
    };
    instance::record_status(&mut da, &update, chrono::Utc::now().timestamp_millis()).unwrap();
    assert!(a.sync_until_quiet(id, &mut da).await.is_empty());
    b.sync_until_quiet(id, &mut db).await;
    assert_eq!(
        instance::read(&db).unwrap().tasks[0].status.current,
        Status::Completed,
        "pushed to b"
    );

    // An edit of an HQ field is answered with an error naming the change.
    let task_obj = {
        use automerge::ReadDoc;
        let (_, tasks) = da.get(automerge::ROOT, "tasks").unwrap().unwrap();
        da.get(&tasks, uuid::Uuid::from_u128(102).to_string())
            .unwrap()
            .unwrap()
            .1
    };
    da.transact::<_, _, automerge::AutomergeError>(|tx| {
        use automerge::transaction::Transactable;
        tx.put(&task_obj, "title", "Skip this")?;
        Ok(())
    })
    .unwrap();
    let hash = da.get_heads()[0];
    let errs = a.sync_until_quiet(id, &mut da).await;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains(&hash.to_string()) && errs[0].contains("read-only"),
        "{}",
        errs[0]
    );
    b.sync_until_quiet(id, &mut db).await;
    assert_eq!(
        instance::read(&db).unwrap().tasks[1].spec.title,
        "Task 2",
        "not forwarded"
    );
}
}

on_each_backend! {
    #[tokio::test]
    async fn limits_close_the_connection_and_the_hub_keeps_serving(backend: Backend) {
    let mut limits = HubLimits::default();
    limits.wire.max_message_bytes = 64 * 1024;
    limits.messages_per_second = 5;
    limits.message_burst = 10;
    limits.max_documents_per_connection = 2;
    let hub = start(backend, limits).await;

    // Oversized frame: the WebSocket layer refuses it and the connection ends.
    let mut c = Client::join(&hub.addr, "tok-store-a", "big").await;
    let _ =
        c.ws.send(Message::Binary(vec![0u8; 200 * 1024].into()))
            .await;
    while next(&mut c.ws).await.is_some() {}

    // Garbage: an error, then the close.
    let mut c = Client::join(&hub.addr, "tok-store-a", "garbage").await;
    c.ws.send(Message::Binary(vec![0xff, 0x00, 0x13].into()))
        .await
        .unwrap();
    let m = next(&mut c.ws).await;
    assert!(matches!(m, Some(WireMessage::Error { .. })), "{m:?}");
    assert!(next(&mut c.ws).await.is_none());

    // Flood: a rate error, then the close.
    let mut c = Client::join(&hub.addr, "tok-store-a", "flood").await;
    for i in 0..50u128 {
        let msg = c
            .session
            .request(DocumentId(uuid::Uuid::from_u128(5000 + i)))
            .unwrap();
        if c.ws
            .send(Message::Binary(wire::encode(&msg).into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut saw_rate_error = false;
    while let Some(m) = next(&mut c.ws).await {
        if let WireMessage::Error { message, .. } = m {
            saw_rate_error |= message.contains("rate");
        }
    }
    assert!(
        saw_rate_error,
        "flood answered with a rate error before the close"
    );

    // Too many documents on one connection.
    let mut c = Client::join(&hub.addr, "tok-store-a", "docs").await;
    let mut d1 = Automerge::new();
    c.sync_until_quiet(
        DocumentId::directory_of(&"store-a".parse().unwrap()),
        &mut d1,
    )
    .await;
    let mut d2 = Automerge::new();
    c.sync_until_quiet(content("store-a", 1).id, &mut d2).await;
    let third = content("store-a", 3);
    hub.state
        .hub
        .registry()
        .call(move |h, now| ((), h.publish(&third, now).unwrap()))
        .await
        .unwrap();
    let mut d3 = Automerge::new();
    let errs = c.sync_until_quiet(content("store-a", 3).id, &mut d3).await;
    assert!(
        errs.iter()
            .any(|e| e.contains("documents on one connection")),
        "{errs:?}"
    );

    // Everyone else is still served.
    let mut ok = Client::join(&hub.addr, "tok-store-b", "fine").await;
    let mut doc = Automerge::new();
    assert!(ok
        .sync_until_quiet(content("store-b", 2).id, &mut doc)
        .await
        .is_empty());
    assert_eq!(instance::read(&doc).unwrap().tasks.len(), 2);
}
}
