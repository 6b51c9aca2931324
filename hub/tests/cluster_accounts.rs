//! HQ accounts in a cluster (issue #23): a personal token works at every
//! node (accounts live in the shared database), an HQ write passed from
//! the node it reached to the nodes serving its stores is checked there
//! too and audited once, by the node that received it, and a personal
//! token never opens a sync connection. Skipped (with a notice) where
//! PostgreSQL is not installed.

use std::time::{Duration, Instant};

use hub::pg::testing::PgServer;
use serde_json::{json, Value};

mod common;
use common::node::Node;

/// The compliance report of 2026-11-26 at node `n`, as `token`.
async fn report(n: &Node, token: &str) -> Value {
    let (st, v) = n
        .call(
            token,
            reqwest::Method::GET,
            "/report?from=2026-11-26&to=2026-11-26",
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_passed_between_nodes_is_checked_at_both_and_audited_once() {
    use reqwest::Method;
    let Some(server) = PgServer::shared() else {
        return;
    };
    let url = server.new_database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let a = Node::start(&url, "node-a", dir.path());
    let b = Node::start(&url, "node-b", dir.path());
    let stores: Vec<String> = (1..=6).map(|n| format!("store-{n:03}")).collect();
    for s in &stores {
        let (st, v) = a
            .call(
                "admin",
                Method::POST,
                "/stores",
                Some(json!({"id": s, "name": s, "time_zone": "Europe/Berlin"})),
            )
            .await;
        assert_eq!(st, 201, "{v}");
    }
    // Both nodes take a share.
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let owners = server.psql(
            &db,
            "SELECT count(DISTINCT owner) FROM store_leases WHERE expires_at > clock_timestamp()",
        );
        if owners == "2" {
            break;
        }
        assert!(Instant::now() < until, "the nodes never split the stores");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (id, role) in [("ed", "editor"), ("vi", "viewer")] {
        let (st, v) = a
            .call(
                "admin",
                Method::POST,
                "/users",
                Some(json!({"id": id, "role": role, "password": "long enough pw"})),
            )
            .await;
        assert_eq!(st, 201, "{v}");
    }
    // Signed in at node b, the token works at node a.
    let sign_in = |user: &'static str| {
        let b = &b;
        async move {
            let (st, v) = b
                .call(
                    "",
                    Method::POST,
                    "/login",
                    Some(json!({"user": user, "password": "long enough pw"})),
                )
                .await;
            assert_eq!(st, 201, "{v}");
            v["token"].as_str().unwrap().to_owned()
        }
    };
    let (ed, vi) = (sign_in("ed").await, sign_in("vi").await);
    let list = json!({"stores": stores, "name": "Closing", "date": "2026-11-26",
                      "tasks": [{"title": "Count the till", "due": "21:00"}]});
    let (st, v) = a
        .call(&vi, Method::POST, "/lists", Some(list.clone()))
        .await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = a.call(&ed, Method::POST, "/lists", Some(list)).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["lists"].as_array().unwrap().len(), stores.len(), "{v}");

    // The compliance report reads the shared database: every node gives
    // the same figures, whichever node serves (and indexed) each store.
    let until = Instant::now() + Duration::from_secs(15);
    let at_a = loop {
        let v = report(&a, &vi).await;
        let rows = v.as_array().unwrap();
        if rows.len() == stores.len() && rows.iter().all(|r| r["missed"] == 1) {
            break v;
        }
        assert!(
            Instant::now() < until,
            "the report never showed every store: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(report(&b, &vi).await, at_a);

    let (st, audit) = b.call("admin", Method::GET, "/audit", None).await;
    assert_eq!(st, 200, "{audit}");
    let lists: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "POST /api/lists")
        .collect();
    assert_eq!(lists.len(), 2, "once per action, not per node: {audit}");
    assert_eq!(lists[0]["user"], "ed");
    assert_eq!(lists[0]["status"], 201);
    assert_eq!(lists[0]["stores"].as_array().unwrap().len(), stores.len());
    assert_eq!(lists[1]["user"], "vi");
    assert_eq!(lists[1]["status"], 403);

    // A client claiming its write was passed on and audited already is
    // audited all the same: it does not know the nodes' secret.
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/purge", a.addr))
        .bearer_auth(&ed)
        .header("x-hub-forwarded", "1")
        .header("x-hub-audited", "1")
        .json(&json!({"store": stores[0]}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let (_, audit) = a.call("admin", Method::GET, "/audit?user=ed", None).await;
    assert_eq!(audit[0]["action"], "POST /api/purge", "{audit}");
    assert_eq!(audit[0]["status"], status);

    // A personal token is not a sync token.
    let refused = common::connect(&a.addr, Some(&ed)).await;
    assert_eq!(refused.err(), Some(401));
}
