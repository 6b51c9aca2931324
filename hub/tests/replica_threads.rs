//! One hub node with several replica threads over PostgreSQL, as a real
//! process: each store is served by the thread it hashes to, and what a
//! store's terminal or HQ does reaches the right thread. Terminals of
//! stores on every thread are served and get their lists; one publish to
//! every store is split by thread and answered in request order; a status
//! event recorded on any thread is indexed and read through the node; a
//! token revoked closes its connection on whichever thread holds it;
//! the node's figures add every thread's. Skipped (with a notice) where
//! PostgreSQL is not installed.

use std::time::{Duration, Instant};

use automerge::Automerge;
use engine::ids::{DocumentId, StoreId};
use engine::protocol::wire::{PeerId, PeerMetadata, WireMessage};
use engine::protocol::Session;
use hub::pg::testing::PgServer;
use serde_json::json;

mod common;
use common::node::Node;
use common::{connect, next, send};

const THREADS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_several_replica_threads_serves_every_store_on_its_own_thread() {
    let Some(server) = PgServer::shared() else {
        return;
    };
    let url = server.new_database();
    let db_name = url.rsplit('/').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_with(&url, "node-a", dir.path(), &["--replica-threads", "3"]);
    let stores: Vec<String> = (1..=9).map(|n| format!("store-{n:03}")).collect();
    // The stores land on every thread (else this test tests nothing).
    let threads: std::collections::BTreeSet<usize> = stores
        .iter()
        .map(|s| hub::replicas::thread_of(&s.parse::<StoreId>().unwrap(), THREADS))
        .collect();
    assert_eq!(threads.len(), THREADS, "{threads:?}");

    let mut tokens = Vec::new();
    for s in &stores {
        let (st, v) = node
            .post(
                "/stores",
                json!({"id": s, "name": s, "time_zone": "Europe/Berlin"}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        let st = node
            .put(
                &format!("/stores/{s}/workers/w1"),
                json!({"name": "Wanda", "role": "cashier"}),
            )
            .await;
        assert_eq!(st, 201, "{s}");
        let (st, v) = node.post(&format!("/stores/{s}/tokens"), json!({})).await;
        assert_eq!(st, 201, "{v}");
        tokens.push(v["token"].as_str().unwrap().to_owned());
    }
    // The node holds every store's lease.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let held = server.psql(
            &db_name,
            "SELECT count(*) FROM store_leases WHERE owner = 'node-a' \
             AND expires_at > clock_timestamp()",
        );
        if held == stores.len().to_string() {
            break;
        }
        assert!(Instant::now() < until, "leases held: {held}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each store's roster reads back through its thread.
    for s in &stores {
        let (st, v) = node
            .call(
                "admin",
                reqwest::Method::GET,
                &format!("/stores/{s}/workers"),
                None,
            )
            .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v[0]["name"], "Wanda", "{s}: {v}");
    }

    // One publish to every store: split by thread, answered in order.
    let (st, v) = node
        .post(
            "/lists",
            json!({"stores": stores, "name": "Delivery", "date": "2026-11-26",
                   "tasks": [{"title": "Receive the pallets"}]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let lists: Vec<(String, DocumentId)> = v["lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["store"].as_str().unwrap().to_owned(),
                l["id"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lists.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>(),
        stores
    );

    // Every store's terminal gets its list from its thread and records a
    // completion there.
    let mut clients = Vec::new();
    for ((s, list), token) in lists.iter().zip(&tokens) {
        let mut client = common::Client::join(&node.addr, token, &format!("till-{s}")).await;
        let mut doc = Automerge::new();
        client.sync_until_quiet(*list, &mut doc).await;
        let view = engine::document::instance::read(&doc).expect("the list arrived");
        let task = view.tasks[0].spec.id;
        doc.set_actor(automerge::ActorId::random());
        let update = engine::model::StatusUpdate {
            id: engine::ids::EventId(uuid::Uuid::new_v4()),
            task,
            status: engine::model::Status::Completed,
            worker: "w1".parse().unwrap(),
            terminal: "pos-1".parse().unwrap(),
            note: None,
        };
        engine::document::instance::record_status(
            &mut doc,
            &update,
            chrono::Utc::now().timestamp_millis(),
        )
        .unwrap();
        let errors = client.sync_until_quiet(*list, &mut doc).await;
        assert!(errors.is_empty(), "{s}: {errors:?}");
        clients.push(client);
    }
    // The status index of every thread's lists, read through the node.
    let (st, v) = node
        .call("admin", reqwest::Method::GET, "/status/lists", None)
        .await;
    assert_eq!(st, 200, "{v}");
    let rows = v.as_array().expect("rows");
    for s in &stores {
        let row = rows
            .iter()
            .find(|r| r["store"] == s.as_str() && r["list"] == "Delivery")
            .unwrap_or_else(|| panic!("{s} missing: {v}"));
        assert_eq!(row["completed"], 1, "{s}: {row}");
    }
    // The node's figures add every thread's.
    let (st, v) = node
        .call("admin", reqwest::Method::GET, "/status", None)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["connections"], stores.len(), "{v}");
    assert_eq!(v["counters"]["changes_accepted"], stores.len(), "{v}");
    let metrics = reqwest::get(format!("http://{}/metrics", node.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("hub_connections {}\n", stores.len())),
        "{metrics}"
    );
    let health = reqwest::get(format!("http://{}/healthz", node.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(health, format!("ok\nserving {} stores\n", stores.len()));

    // A revoked token closes its connection at once, on every thread
    // (the registry thread revokes; the store's thread holds it).
    for (s, token) in stores.iter().zip(&tokens) {
        let mut ws = connect(&node.addr, Some(token)).await.unwrap();
        let (_session, hello) = Session::client(PeerId::new("till-x"), PeerMetadata::default());
        send(&mut ws, &hello).await;
        assert!(matches!(
            next(&mut ws).await,
            Some(WireMessage::Peer { .. })
        ));
        let revoked_at = Instant::now();
        let (st, v) = node.post("/tokens/revoke", json!({"token": token})).await;
        assert_eq!(st, 200, "{v}");
        loop {
            match tokio::time::timeout(
                Duration::from_secs(5),
                futures_util::StreamExt::next(&mut ws),
            )
            .await
            .unwrap_or_else(|_| panic!("{s}: not closed within 5 s"))
            {
                None
                | Some(Err(_))
                | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
        // At once: not the cluster's once-a-round poll of ended tokens.
        assert!(
            revoked_at.elapsed() < Duration::from_millis(900),
            "{s}: closed after {:?}",
            revoked_at.elapsed()
        );
    }

    // A purge over every store runs on every thread.
    let (st, v) = node
        .post("/purge", json!({"before": "2026-11-27", "dry_run": true}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["count"], stores.len(), "{v}");
}
