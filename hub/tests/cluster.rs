//! Hub nodes as real processes over one PostgreSQL database: stores split
//! between nodes by lease, a terminal at the wrong node is sent to the
//! right one, HQ writes through any node are carried out by the store's
//! node (a publish to all stores split by node), a token revoked on one
//! node closes its connection on the other, and a node killed with -9 has
//! its stores served by another within the lease time, with nothing
//! acknowledged lost. Skipped (with a notice) where PostgreSQL is not
//! installed.

use std::process::Command;
use std::time::{Duration, Instant};

use automerge::Automerge;
use engine::ids::DocumentId;
use engine::protocol::wire::{PeerId, PeerMetadata, WireMessage};
use engine::protocol::Session;
use engine::replica::Moved;
use hub::pg::testing::PgServer;
use serde_json::json;

mod common;
use common::node::Node;
use common::{connect, next, send};

struct Db {
    server: &'static PgServer,
    name: String,
}

impl Db {
    fn psql(&self, sql: &str) -> String {
        self.server.psql(&self.name, sql)
    }

    /// The node serving `store` now, waiting up to `limit` for one.
    fn owner(&self, store: &str, limit: Duration) -> Option<String> {
        let until = Instant::now() + limit;
        loop {
            let o = self.psql(&format!(
                "SELECT owner FROM store_leases WHERE store_id = '{store}' \
                 AND expires_at > clock_timestamp()"
            ));
            if !o.is_empty() {
                return Some(o);
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// What a terminal of `store` gets from `node`: served (the hub's peer
/// answer), or sent elsewhere (`moved`).
enum Answer {
    Served,
    Moved(Option<String>),
}

/// `join` as our agent does it: it follows `moved`.
async fn join(node: &Node, token: &str) -> Answer {
    join_as(node, token, true).await
}

/// Join `node` with `token`; `follows_moved`: say so, as our agent does
/// (else the node proxies, as for a JS automerge-repo client).
async fn join_as(node: &Node, token: &str, follows_moved: bool) -> Answer {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/sync", node.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    if follows_moved {
        req.headers_mut()
            .insert("x-follows-moved", "1".parse().unwrap());
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgraded");
    let (_session, hello) = Session::client(PeerId::new("till-1"), PeerMetadata::default());
    send(&mut ws, &hello).await;
    match next(&mut ws).await {
        Some(WireMessage::Peer { .. }) => Answer::Served,
        Some(WireMessage::Error { message, .. }) => {
            Answer::Moved(Moved::decode(&message).expect("a moved reason").to)
        }
        other => panic!("unexpected answer {other:?}"),
    }
}

/// A store's list, published through `node`; its id.
async fn publish(node: &Node, store: &str) -> (u16, serde_json::Value) {
    node.post(
        "/lists",
        json!({"store": store, "name": "Closing", "date": "2026-11-26",
               "tasks": [{"title": "Count the till"}]}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_are_split_between_nodes_and_a_killed_nodes_stores_move_to_another() {
    let Some(server) = PgServer::shared() else {
        return;
    };
    let url = server.new_database();
    let db = Db {
        server,
        name: url.rsplit('/').next().unwrap().to_owned(),
    };
    let dir = tempfile::tempdir().unwrap();
    let a = Node::start(&url, "node-a", dir.path());
    let b = Node::start(&url, "node-b", dir.path());
    let stores: Vec<String> = (1..=8).map(|n| format!("store-{n:03}")).collect();
    let mut tokens = Vec::new();
    for s in &stores {
        let (st, v) = a
            .post(
                "/stores",
                json!({"id": s, "name": s, "time_zone": "Europe/Berlin"}),
            )
            .await;
        assert!(st == 200 || st == 201, "{st} {v}");
        let (st, v) = a.post(&format!("/stores/{s}/tokens"), json!({})).await;
        assert!(st == 200 || st == 201, "{st} {v}");
        tokens.push(v["token"].as_str().unwrap().to_owned());
    }
    // Both nodes take their share.
    let mut owners = Vec::new();
    for s in &stores {
        owners.push(db.owner(s, Duration::from_secs(10)).expect("an owner"));
    }
    assert!(owners.iter().any(|o| o == "node-a"), "{owners:?}");
    assert!(owners.iter().any(|o| o == "node-b"), "{owners:?}");

    // Each node says what it serves; `hub cluster status` shows the same.
    for node in [&a, &b] {
        let served = owners.iter().filter(|o| **o == node.name).count();
        let health = reqwest::get(format!("http://{}/healthz", node.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(health, format!("ok\nserving {served} stores\n"));
        let metrics = reqwest::get(format!("http://{}/metrics", node.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains(&format!("hub_stores_served {served}\n")),
            "{metrics}"
        );
        assert_eq!(
            metrics.matches("hub_store_lease_epoch{store=").count(),
            served
        );
    }
    let status = Command::new(env!("CARGO_BIN_EXE_hub"))
        .args(["cluster", "status", "--database", &url])
        .output()
        .unwrap();
    assert!(status.status.success());
    let status = String::from_utf8(status.stdout).unwrap();
    for (s, o) in stores.iter().zip(&owners) {
        let line = status.lines().find(|l| l.starts_with(s.as_str())).expect(s);
        assert!(line.contains(o.as_str()), "{line}");
    }
    assert!(
        status.contains(&a.sync_url()) && status.contains(&b.sync_url()),
        "{status}"
    );

    let at = |name: &str| if name == "node-a" { &a } else { &b };
    let other = |name: &str| if name == "node-a" { &b } else { &a };
    let (i, s) = (0, &stores[0]);
    let (owner, stranger) = (at(&owners[i]), other(&owners[i]));
    // A terminal at the wrong node is sent to the right one; there it is served.
    match join(stranger, &tokens[i]).await {
        Answer::Moved(Some(to)) => assert_eq!(to, owner.sync_url()),
        Answer::Moved(None) => panic!("moved without a node"),
        Answer::Served => panic!("{} served a store it does not hold", stranger.name),
    }
    assert!(matches!(join(owner, &tokens[i]).await, Answer::Served));
    // A client that does not follow `moved` (a JS automerge-repo client)
    // is proxied: the stranger node relays it to the owner, which serves.
    assert!(matches!(
        join_as(stranger, &tokens[i], false).await,
        Answer::Served
    ));
    // A token revoked on one node closes its connection on the other
    // within about a second.
    let (_, v) = stranger
        .post(&format!("/stores/{s}/tokens"), json!({}))
        .await;
    let second = v["token"].as_str().unwrap().to_owned();
    let mut ws = connect(&owner.addr, Some(&second)).await.unwrap();
    let (_session, hello) = Session::client(PeerId::new("till-9"), PeerMetadata::default());
    send(&mut ws, &hello).await;
    assert!(matches!(
        next(&mut ws).await,
        Some(WireMessage::Peer { .. })
    ));
    let revoked_at = Instant::now();
    let (st, v) = stranger
        .post("/tokens/revoke", json!({"token": second}))
        .await;
    assert!(st == 200 || st == 204, "{st} {v}");
    loop {
        match tokio::time::timeout(
            Duration::from_secs(3),
            futures_util::StreamExt::next(&mut ws),
        )
        .await
        .expect("closed within 3 s")
        {
            None | Some(Err(_)) | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => {
                break
            }
            Some(Ok(_)) => {}
        }
    }
    let closed_in = revoked_at.elapsed();
    assert!(
        closed_in < Duration::from_millis(2500),
        "closed after {closed_in:?}"
    );
    eprintln!("revocation on one node closed the connection on another in {closed_in:?}");
    // HQ writes through any node are carried out by the store's node.
    let (st, v) = publish(stranger, s).await;
    assert_eq!(st, 201, "{v}");
    let list: DocumentId = v["id"].as_str().unwrap().parse().unwrap();
    // A node handed a write for a store it does not serve (the store
    // moved in between) changes nothing and says so.
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/lists", stranger.addr))
        .bearer_auth("admin")
        .header(hub::http::forward::FORWARDED, "1")
        .json(&json!({"store": s, "name": "Other", "date": "2026-11-27",
                      "tasks": [{"title": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("served by another hub node"));
    // A publish to every store through one node: each node commits its
    // share, and the answer lists every store in the request's order.
    let (st, v) = a
        .post(
            "/lists",
            json!({"stores": stores, "name": "Delivery", "date": "2026-11-26",
                   "tasks": [{"title": "Receive the pallets"}]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let went: Vec<&str> = v["lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["store"].as_str().unwrap())
        .collect();
    assert_eq!(went, stores.iter().map(String::as_str).collect::<Vec<_>>());
    // Stored: the first list and one per store.
    assert_eq!(
        db.psql("SELECT count(*) FROM doc_owners WHERE kind = 'instance'"),
        "9"
    );

    // kill -9 the owner: the other node serves its stores within the
    // lease time, and the list published there is still there.
    let (owner_name, survivor) = (owner.name.clone(), stranger);
    let killed: Vec<usize> = (0..stores.len())
        .filter(|j| owners[*j] == owner_name)
        .collect();
    let started = Instant::now();
    owner.kill9();
    for j in &killed {
        let until = started + Duration::from_secs(20);
        while db.owner(&stores[*j], Duration::from_secs(20)).as_deref() != Some(&survivor.name) {
            assert!(Instant::now() < until, "{} was not taken over", stores[*j]);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "failover took {took:?}");
    eprintln!(
        "failover of {} stores after kill -9: {took:?}",
        killed.len()
    );
    assert!(matches!(join(survivor, &tokens[i]).await, Answer::Served));
    let mut doc = Automerge::new();
    let mut client = common::Client::join(&survivor.addr, &tokens[i], "till-2").await;
    client.sync_until_quiet(list, &mut doc).await;
    let view = engine::document::instance::read(&doc).expect("the list survived the failover");
    assert_eq!(view.tasks.len(), 1);
    // Epochs only grew: each taken-over store was claimed twice.
    for j in &killed {
        let epochs = db.psql(&format!(
            "SELECT string_agg(epoch::text, ',' ORDER BY epoch) FROM lease_history \
             WHERE store_id = '{}'",
            stores[*j]
        ));
        assert_eq!(epochs, "1,2", "{}", stores[*j]);
    }
}

/// A node stopped (SIGSTOP) past its lease while a terminal's change
/// waits in its socket: another node takes the store; when the stopped
/// node wakes up it stores nothing (the fence refuses its commit, or it
/// finds its lease gone first) and sends the terminal on; the change
/// reaches the new node and is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_past_its_lease_stores_nothing_when_it_wakes_and_the_change_lands_once() {
    let Some(server) = PgServer::shared() else {
        return;
    };
    let url = server.new_database();
    let db = Db {
        server,
        name: url.rsplit('/').next().unwrap().to_owned(),
    };
    let dir = tempfile::tempdir().unwrap();
    let a = Node::start(&url, "node-a", dir.path());
    let b = Node::start(&url, "node-b", dir.path());
    let s = "store-001";
    let (st, v) = a
        .post(
            "/stores",
            json!({"id": s, "name": s, "time_zone": "Europe/Berlin"}),
        )
        .await;
    assert!(st == 200 || st == 201, "{st} {v}");
    let (_, v) = a.post(&format!("/stores/{s}/tokens"), json!({})).await;
    let token = v["token"].as_str().unwrap().to_owned();
    let owner_name = db.owner(s, Duration::from_secs(10)).expect("an owner");
    let (owner, other) = if owner_name == "node-a" {
        (&a, &b)
    } else {
        (&b, &a)
    };
    // The roster and the list, through either node.
    let st = other
        .put(
            &format!("/stores/{s}/workers/w1"),
            json!({"name": "W1", "role": "cashier"}),
        )
        .await;
    assert!(st == 200 || st == 201, "{st}");
    let (st, v) = publish(other, s).await;
    assert_eq!(st, 201, "{v}");
    let list: DocumentId = v["id"].as_str().unwrap().parse().unwrap();
    let doc_hex = hex::encode(list.as_bytes());
    let stored = || {
        db.psql(&format!(
            "SELECT count(*) FROM changes WHERE doc_id = '\\x{doc_hex}'"
        ))
    };

    // A terminal syncs the list at its node, then records a completion.
    let mut client = common::Client::join(&owner.addr, &token, "till-1").await;
    let mut doc = Automerge::new();
    client.sync_until_quiet(list, &mut doc).await;
    let task = engine::document::instance::read(&doc).unwrap().tasks[0]
        .spec
        .id;
    let before = stored();

    // The node freezes; the change goes into its socket meanwhile.
    owner.signal(libc::SIGSTOP);
    doc.set_actor(automerge::ActorId::random());
    let update = engine::model::StatusUpdate {
        id: engine::ids::EventId(uuid::Uuid::from_u128(7)),
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
    if let Some(m) = client.session.generate(list, &doc) {
        send(&mut client.ws, &m).await;
    }
    // The other node takes the store once the frozen node's lease ran out.
    let until = Instant::now() + Duration::from_secs(20);
    while db.owner(s, Duration::from_secs(20)).as_deref() != Some(&other.name) {
        assert!(Instant::now() < until, "not taken over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    owner.signal(libc::SIGCONT);
    // The woken node stores nothing and sends the terminal on.
    let mut moved_to = None;
    loop {
        match next(&mut client.ws).await {
            Some(WireMessage::Error { message, .. }) => {
                moved_to = Some(Moved::decode(&message).expect("moved").to);
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(
        stored(),
        before,
        "nothing stored by the node that lost the lease"
    );
    if let Some(Some(to)) = &moved_to {
        assert_eq!(to, &other.sync_url());
    }
    // At the node that serves it now, the change lands, once.
    let mut client = common::Client::join(&other.addr, &token, "till-1b").await;
    assert!(client.sync_until_quiet(list, &mut doc).await.is_empty());
    let after: u64 = stored().parse().unwrap();
    assert_eq!(
        after,
        before.parse::<u64>().unwrap() + 1,
        "stored exactly once"
    );
    assert_eq!(
        db.psql("SELECT string_agg(epoch || ':' || owner, ',' ORDER BY epoch) FROM lease_history"),
        format!("1:{},2:{}", owner.name, other.name)
    );
}
