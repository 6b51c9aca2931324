//! Real processes on loopback: a store's terminals syncing directly over
//! the store LAN (issue #22). With the hub stopped, three agents peered
//! with each other show one another's work within a second; once the hub
//! is back it holds every change exactly once. Hostile peers (another
//! store, a bad proof either way, forbidden changes) are refused. A
//! conflict two terminals make apart and that meets over the LAN alone
//! shows in the manager's conflict view on both.

use std::path::Path;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{Automerge, ReadDoc};
use engine::document::{instance, keys};
use engine::ids::{DocumentId, EventId};
use engine::protocol::peer_auth::{Challenge, Hello, PeerKey, Proof, NONCE_BYTES};
use engine::protocol::wire::{self, PeerMetadata, WireLimits, WireMessage};
use engine::protocol::Session;
use engine::replica::Refusal;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tests::procs::{
    agent_get, agent_tasks, check_saved_exactly_once, free_port, get, set_status, setup_store,
    start_hub, wait_for, AgentArgs, Proc, STORE,
};
use tokio_tungstenite::tungstenite::Message;

/// `pos-agent run` as terminal `pos-{i}`, listening for peers on
/// `listen`, dialing `peers`.
fn start_peer_agent(
    data: &Path,
    hub: &str,
    token: &str,
    i: usize,
    listen: u16,
    peers: &[u16],
) -> Proc {
    let args = AgentArgs {
        hub: hub.to_owned(),
        token: token.to_owned(),
        terminal: format!("pos-{i}"),
        http: "127.0.0.1:0".into(),
    };
    tests::procs::start_peer_agent(data, &args, listen, peers)
}

async fn sync_status(agent: &str) -> Option<Value> {
    agent_get(format!("http://{agent}/api/sync-status")).await
}

/// The status agent `agent` shows for `task`.
async fn status_of(agent: &str, task: &str) -> Option<String> {
    agent_tasks(agent)
        .await?
        .into_iter()
        .find(|t| t["task"] == task)?["status"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_hub_stopped_three_terminals_see_each_others_work_within_a_second_and_the_hub_gets_it_once(
) {
    let dir = tempfile::tempdir().unwrap();
    let hub_data = dir.path().join("hub");
    let hub = start_hub(&hub_data, "127.0.0.1:0");
    let hub_addr = hub.addr.clone();
    let setup = setup_store(&hub_addr, 3).await;
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let agent_data: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("agent{i}")))
        .collect();
    // Each dials the ones after it: every pair once.
    let agents: Vec<Proc> = (0..3)
        .map(|i| {
            start_peer_agent(
                &agent_data[i],
                &hub_addr,
                &setup.token,
                i,
                ports[i],
                &ports[i + 1..],
            )
        })
        .collect();
    for a in &agents {
        wait_for(
            "every agent to hold the list and both peers",
            Duration::from_secs(30),
            async || {
                let tasks = agent_tasks(&a.addr).await?;
                let s = sync_status(&a.addr).await?;
                (tasks.len() == 3 && s["lan_peers"] == 2).then_some(())
            },
        )
        .await;
    }
    let tasks: Vec<String> = agent_tasks(&agents[0].addr)
        .await
        .unwrap()
        .iter()
        .map(|t| t["task"].as_str().unwrap().to_owned())
        .collect();

    drop(hub);
    let mut saved: Vec<(EventId, usize)> = Vec::new();
    for (i, task) in tasks.iter().enumerate() {
        let event = set_status(&agents[i].addr, task, "completed", "w-1")
            .await
            .expect("saved with the hub down");
        saved.push((event, i));
        let tapped = Instant::now();
        for (j, other) in agents.iter().enumerate().filter(|(j, _)| *j != i) {
            wait_for(
                &format!("terminal {i}'s completion to show on terminal {j}"),
                Duration::from_secs(1),
                async || (status_of(&other.addr, task).await? == "completed").then_some(()),
            )
            .await;
        }
        eprintln!(
            "terminal {i}'s tap shown on the other two after {:?}",
            tapped.elapsed()
        );
    }
    for a in &agents {
        let s = sync_status(&a.addr).await.unwrap();
        assert_eq!(s["online"], false, "the hub is down: {s}");
    }

    let hub = start_hub(&hub_data, &hub_addr);
    wait_for(
        "the hub to hold every completion, confirmed to every terminal",
        Duration::from_secs(60),
        async || {
            let doc = get(format!("http://{}/api/documents/{}", hub.addr, setup.list)).await?;
            let done = doc["tasks"]
                .as_array()?
                .iter()
                .filter(|t| t["status"]["current"] == "completed")
                .count();
            if done != 3 {
                return None;
            }
            for a in &agents {
                let s = sync_status(&a.addr).await?;
                (s["online"] == true && s["unconfirmed_changes"] == 0).then_some(())?;
            }
            Some(())
        },
    )
    .await;
    for a in &agents {
        let s = sync_status(&a.addr).await.unwrap();
        assert_eq!(s["rejected"], serde_json::json!([]), "nothing refused: {s}");
    }
    drop(hub);
    drop(agents);
    let mut dbs = vec![hub_data.join("hub.db")];
    dbs.extend(agent_data.iter().map(|d| d.join("agent.db")));
    check_saved_exactly_once(&dbs, setup.list, &saved).unwrap();
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The close reason the other side ends with (after any other frames).
async fn close_reason<S>(ws: &mut S) -> String
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => return f.reason.to_string(),
            Ok(Some(Ok(Message::Close(None)))) | Ok(None) | Err(_) => return String::new(),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return e.to_string(),
        }
    }
    String::new()
}

async fn text(ws: &mut Ws) -> String {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a handshake frame, got {other:?}"),
        }
    }
}

/// Connect to a terminal's peer endpoint and send `hello`.
async fn hello(port: u16, hello: &Hello) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/lan"))
        .await
        .expect("the peer endpoint answers");
    ws.send(Message::Text(serde_json::to_string(hello).unwrap().into()))
        .await
        .unwrap();
    ws
}

/// A terminal of the store that breaks the rules: it holds the token, so
/// it passes the handshake, then syncs `doc` to learn it.
struct Rogue {
    ws: Ws,
    session: Session,
}

impl Rogue {
    async fn join(port: u16, key: &PeerKey) -> Rogue {
        let nonce = [7u8; NONCE_BYTES];
        let mut ws = hello(port, &key.hello(&nonce)).await;
        let challenge: Challenge = serde_json::from_str(&text(&mut ws).await).unwrap();
        let proof = key
            .answer(&nonce, &challenge)
            .expect("the terminal's proof");
        ws.send(Message::Text(serde_json::to_string(&proof).unwrap().into()))
            .await
            .unwrap();
        let (session, join) = Session::client(
            wire::PeerId::new("rogue"),
            PeerMetadata {
                storage_id: None,
                is_ephemeral: false,
            },
        );
        ws.send(Message::Binary(wire::encode(&join).into()))
            .await
            .unwrap();
        Rogue { ws, session }
    }

    /// Take frames until `doc` holds what `done` wants; errors seen go to
    /// the returned list.
    async fn sync(
        &mut self,
        id: DocumentId,
        doc: &mut Automerge,
        done: impl Fn(&Automerge) -> bool,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(doc) {
            assert!(Instant::now() < deadline, "the rogue did not get {id}");
            let frame = match tokio::time::timeout(Duration::from_secs(20), self.ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => b.to_vec(),
                Ok(Some(Ok(Message::Close(f)))) => panic!("closed: {f:?}"),
                Ok(Some(Ok(_))) => continue,
                other => panic!("the rogue's connection failed: {other:?}"),
            };
            let msg = wire::decode(&frame, &WireLimits::default()).unwrap();
            match self.session.receive(msg).unwrap().0 {
                engine::protocol::SessionEvent::Sync {
                    doc: d, message, ..
                } if d == id => {
                    self.session.apply(id, doc, message).unwrap();
                    if let Some(m) = self.session.generate(id, doc) {
                        self.ws
                            .send(Message::Binary(wire::encode(&m).into()))
                            .await
                            .unwrap();
                    }
                }
                engine::protocol::SessionEvent::RemoteError { message } => errors.push(message),
                _ => {}
            }
        }
        errors
    }

    /// Send `change` of `doc` and wait for the terminal's refusal of it.
    async fn refused(
        &mut self,
        id: DocumentId,
        doc: &Automerge,
        change: automerge::Change,
    ) -> Refusal {
        let message = automerge::sync::Message {
            heads: doc.get_heads(),
            need: vec![],
            have: vec![],
            changes: vec![change.raw_bytes().to_vec()].into(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        };
        let frame = wire::encode(&WireMessage::Sync {
            sender_id: wire::PeerId::new("rogue"),
            target_id: self.session.remote().unwrap().clone(),
            document_id: id,
            data: message.encode(),
        });
        self.ws.send(Message::Binary(frame.into())).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "no refusal came");
            let Ok(Some(Ok(Message::Binary(b)))) =
                tokio::time::timeout(Duration::from_secs(20), self.ws.next()).await
            else {
                continue;
            };
            if let Ok(WireMessage::Error { message, .. }) = wire::decode(&b, &WireLimits::default())
            {
                if let Some(r) = Refusal::decode(&message).filter(|r| r.change == change.hash()) {
                    return r;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_are_refused_and_nothing_they_send_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(&dir.path().join("hub"), "127.0.0.1:0");
    let setup = setup_store(&hub.addr, 2).await;
    // The agent also dials a fake terminal that does not hold the token.
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_port = fake.local_addr().unwrap().port();
    let port = free_port();
    let agent = start_peer_agent(
        &dir.path().join("agent"),
        &hub.addr,
        &setup.token,
        0,
        port,
        &[fake_port],
    );
    wait_for(
        "the agent to hold the list",
        Duration::from_secs(30),
        async || agent_tasks(&agent.addr).await.filter(|t| t.len() == 2),
    )
    .await;
    let task = agent_tasks(&agent.addr).await.unwrap()[0]["task"]
        .as_str()
        .unwrap()
        .to_owned();
    set_status(&agent.addr, &task, "in_progress", "w-1")
        .await
        .unwrap();
    let store = STORE.parse().unwrap();
    let key = PeerKey::derive(&setup.token, &store);

    // A terminal of another store, even with the same token.
    let other = PeerKey::derive(&setup.token, &"store-043".parse().unwrap());
    let mut ws = hello(port, &other.hello(&[1; NONCE_BYTES])).await;
    let reason = close_reason(&mut ws).await;
    assert!(reason.starts_with("wrong store"), "{reason:?}");

    // A connector without the token: a made-up proof.
    let mut ws = hello(port, &key.hello(&[2; NONCE_BYTES])).await;
    let _challenge = text(&mut ws).await;
    let bogus = Proof {
        proof: "00".repeat(32),
    };
    ws.send(Message::Text(serde_json::to_string(&bogus).unwrap().into()))
        .await
        .unwrap();
    let reason = close_reason(&mut ws).await;
    assert!(reason.starts_with("bad proof"), "{reason:?}");

    // A listener without the token: the agent refuses its proof.
    let (stream, _) = fake.accept().await.unwrap();
    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
    let Some(Ok(Message::Text(h))) = ws.next().await else {
        panic!("no hello from the agent")
    };
    let h: Hello = serde_json::from_str(h.as_str()).unwrap();
    assert_eq!(h.store, STORE);
    assert!(!h.nonce.contains(&setup.token), "no token on the wire");
    let stranger = PeerKey::derive("not-the-token", &store);
    let challenge = stranger.challenge(&h, &[3; NONCE_BYTES]).unwrap();
    ws.send(Message::Text(
        serde_json::to_string(&challenge).unwrap().into(),
    ))
    .await
    .unwrap();
    let reason = close_reason(&mut ws).await;
    assert!(reason.starts_with("bad proof"), "{reason:?}");

    // A terminal with the token that sends what the hub would refuse.
    let mut rogue = Rogue::join(port, &key).await;
    let mut doc = Automerge::new();
    rogue
        .sync(setup.list, &mut doc, |d| {
            instance::read(d).is_ok_and(|v| {
                v.tasks
                    .iter()
                    .any(|t| t.status.current == engine::model::Status::InProgress)
            })
        })
        .await;
    // The agent's own actor is the one that recorded "in progress".
    let agent_actor = doc
        .get_changes(&[])
        .last()
        .map(|c| c.actor_id().clone())
        .unwrap();

    let mut renamed = doc.fork();
    renamed.set_actor(automerge::ActorId::from([0x42; 16]));
    let (_, meta) = renamed.get(automerge::ROOT, keys::META).unwrap().unwrap();
    let mut tx = renamed.transaction();
    tx.put(&meta, keys::NAME, "Renamed by a rogue").unwrap();
    tx.commit();
    let hq_field = renamed.get_last_local_change().unwrap().clone();
    let r = rogue.refused(setup.list, &doc, hq_field).await;
    assert_eq!(r.rule.to_string(), "hq-field", "{r:?}");

    let mut forged = doc.fork();
    forged.set_actor(agent_actor);
    let update = engine::model::StatusUpdate {
        id: EventId(uuid::Uuid::new_v4()),
        task: task.parse().unwrap(),
        status: engine::model::Status::Completed,
        worker: "w-2".parse().unwrap(),
        terminal: "pos-0".parse().unwrap(),
        note: None,
    };
    let (_, change) =
        instance::record_status(&mut forged, &update, chrono::Utc::now().timestamp_millis())
            .unwrap();
    let r = rogue.refused(setup.list, &doc, change).await;
    assert_eq!(r.rule.to_string(), "foreign-actor", "{r:?}");

    let view = agent_get(format!("http://{}/api/lists/{}", agent.addr, setup.list))
        .await
        .unwrap();
    assert_eq!(view["meta"]["name"], "Closing", "the HQ field stays");
    assert_eq!(
        status_of(&agent.addr, &task).await.as_deref(),
        Some("in_progress"),
        "the forged completion is not applied"
    );
    let hub_doc = get(format!("http://{}/api/documents/{}", hub.addr, setup.list))
        .await
        .unwrap();
    assert_eq!(
        hub_doc["meta"]["name"], "Closing",
        "nor passed on to the hub"
    );
}

/// A change the hub refuses after it crossed the LAN (issue #22 item 3): a
/// rogue terminal of the store records a status under HQ's actor, which
/// no terminal can tell from a new actor of the store, so both terminals
/// take it while the hub is down; terminal 1 builds on it. Once the hub
/// is back it refuses the change from each terminal: both drop it and
/// what was built on it, both show the refusal, neither takes it back from
/// the other, and terminal 1's own completion reaches the hub once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_hub_refuses_after_it_crossed_the_lan_is_dropped_on_every_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let hub_data = dir.path().join("hub");
    let hub = start_hub(&hub_data, "127.0.0.1:0");
    let hub_addr = hub.addr.clone();
    let setup = setup_store(&hub_addr, 2).await;
    let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let agent_data: Vec<_> = (0..2)
        .map(|i| dir.path().join(format!("agent{i}")))
        .collect();
    let agents: Vec<Proc> = (0..2)
        .map(|i| {
            start_peer_agent(
                &agent_data[i],
                &hub_addr,
                &setup.token,
                i,
                ports[i],
                &ports[i + 1..],
            )
        })
        .collect();
    for a in &agents {
        wait_for(
            "every agent to hold the list and its peer",
            Duration::from_secs(30),
            async || {
                let tasks = agent_tasks(&a.addr).await?;
                let s = sync_status(&a.addr).await?;
                (tasks.len() == 2 && s["lan_peers"] == 1).then_some(())
            },
        )
        .await;
    }
    let task = agent_tasks(&agents[0].addr).await.unwrap()[0]["task"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(hub);

    let key = PeerKey::derive(&setup.token, &STORE.parse().unwrap());
    let mut rogue = Rogue::join(ports[0], &key).await;
    // HQ's actor: the hub's, which wrote the roster into the directory
    // (the terminal offers the directory first).
    let dir_id = DocumentId::directory_of(&STORE.parse().unwrap());
    let mut dir_doc = Automerge::new();
    rogue
        .sync(dir_id, &mut dir_doc, |d| {
            engine::document::directory::roster_ids(d).len() >= 2
        })
        .await;
    // Then ask for the list.
    let mut doc = Automerge::new();
    let ask = rogue.session.generate(setup.list, &doc).unwrap();
    rogue
        .ws
        .send(Message::Binary(wire::encode(&ask).into()))
        .await
        .unwrap();
    rogue
        .sync(setup.list, &mut doc, |d| {
            instance::read(d).is_ok_and(|v| v.tasks.len() == 2)
        })
        .await;
    let hq_actor = dir_doc
        .get_changes(&[])
        .last()
        .map(|c| c.actor_id().clone())
        .unwrap();
    let mut as_hq = doc.fork();
    as_hq.set_actor(hq_actor);
    let update = engine::model::StatusUpdate {
        id: EventId(uuid::Uuid::new_v4()),
        task: task.parse().unwrap(),
        status: engine::model::Status::InProgress,
        worker: "w-2".parse().unwrap(),
        terminal: "pos-9".parse().unwrap(),
        note: None,
    };
    let (_, change) =
        instance::record_status(&mut as_hq, &update, chrono::Utc::now().timestamp_millis())
            .unwrap();
    let refused = change.hash();
    let message = automerge::sync::Message {
        heads: doc.get_heads(),
        need: vec![],
        have: vec![],
        changes: vec![change.raw_bytes().to_vec()].into(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    };
    let frame = wire::encode(&WireMessage::Sync {
        sender_id: wire::PeerId::new("rogue"),
        target_id: rogue.session.remote().unwrap().clone(),
        document_id: setup.list,
        data: message.encode(),
    });
    rogue.ws.send(Message::Binary(frame.into())).await.unwrap();
    for a in &agents {
        wait_for(
            "the change to cross the LAN to both terminals",
            Duration::from_secs(10),
            async || (status_of(&a.addr, &task).await? == "in_progress").then_some(()),
        )
        .await;
    }
    // Terminal 1 builds on it.
    let built = set_status(&agents[1].addr, &task, "completed", "w-1")
        .await
        .expect("saved with the hub down");
    wait_for(
        "terminal 1's completion on terminal 0",
        Duration::from_secs(10),
        async || (status_of(&agents[0].addr, &task).await? == "completed").then_some(()),
    )
    .await;
    drop(rogue);

    let hub = start_hub(&hub_data, &hub_addr);
    wait_for(
        "both terminals to drop the refused change and the hub to confirm the rest",
        Duration::from_secs(60),
        async || {
            for a in &agents {
                let s = sync_status(&a.addr).await?;
                let shown = s["rejected"].as_array()?.iter().any(|r| {
                    r["hash"] == refused.to_string().as_str() && r["rule"] == "foreign-actor"
                });
                (shown
                    && s["online"] == true
                    && s["unconfirmed_changes"] == 0
                    && s["reported_by_peers"] == serde_json::json!([]))
                .then_some(())?;
                (status_of(&a.addr, &task).await? == "completed").then_some(())?;
            }
            let doc = get(format!("http://{}/api/documents/{}", hub.addr, setup.list)).await?;
            (doc["tasks"]
                .as_array()?
                .iter()
                .filter(|t| t["status"]["current"] == "completed")
                .count()
                == 1)
                .then_some(())
        },
    )
    .await;
    drop(hub);
    drop(agents);
    let mut dbs = vec![hub_data.join("hub.db")];
    dbs.extend(agent_data.iter().map(|d| d.join("agent.db")));
    check_saved_exactly_once(&dbs, setup.list, &[(built, 1)]).unwrap();
    for db in &dbs {
        let raw = tests::procs::raw_events(db).unwrap();
        let ids: Vec<EventId> = raw
            .get(&setup.list)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        assert!(
            !ids.contains(&update.id),
            "the refused event is gone from {db:?}"
        );
    }
}

/// POST `body` to a terminal's local API as the signed-in `session`
/// (none: signing in); the status and the JSON answer.
async fn pos_post(agent: &str, path: &str, session: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{agent}{path}"))
        .json(&body);
    if let Some(s) = session {
        req = req.bearer_auth(s);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Sign the manager (m-1) in on a terminal; the session token.
async fn manager_session(agent: &str) -> String {
    let (s, v) = pos_post(
        agent,
        "/api/session",
        None,
        serde_json::json!({"worker": "m-1", "pin": "9999"}),
    )
    .await;
    assert_eq!(s, 201, "signing in: {v}");
    v["token"].as_str().unwrap().to_owned()
}

/// The manager's conflict view on a terminal.
async fn conflicts(agent: &str, session: &str) -> Option<Vec<Value>> {
    let r = reqwest::Client::new()
        .get(format!("http://{agent}/api/conflicts"))
        .bearer_auth(session)
        .send()
        .await
        .ok()?;
    r.status().is_success().then_some(())?;
    r.json::<Value>().await.ok()?.as_array().cloned()
}

/// Issue #22, item 4: two terminals assign (and set the status of) the
/// same task apart while HQ is unreachable, then meet over the LAN alone;
/// the manager's conflict view on either terminal shows the conflict, as
/// it does for a conflict that met at the hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_made_over_the_lan_shows_in_the_managers_view_on_both_terminals() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(&dir.path().join("hub"), "127.0.0.1:0");
    let token = tests::procs::open_store(
        &hub.addr,
        serde_json::json!({"id": STORE, "name": "Main St", "time_zone": tests::procs::noon_zone()}),
        &[
            ("m-1", "Mia Chen", "manager", &[], "9999"),
            ("w-1", "Ana Lopez", "cashier", &[], "1234"),
            ("w-2", "Ben Okafor", "cashier", &[], "2345"),
        ],
        "lan conflict test",
    )
    .await;
    tests::procs::post(
        format!("http://{}/api/lists", hub.addr),
        serde_json::json!({"store": STORE, "name": "Receiving", "date": tests::procs::noon_zone_today(),
               "tasks": [{"title": "Receive pallet"}]}),
    )
    .await;
    // B dials A; A dials nobody, so B alone decides when they meet.
    let (pa, pb) = (free_port(), free_port());
    let (data_a, data_b) = (dir.path().join("agent-a"), dir.path().join("agent-b"));
    let a = start_peer_agent(&data_a, &hub.addr, &token, 1, pa, &[]);
    let b = start_peer_agent(&data_b, &hub.addr, &token, 2, pb, &[pa]);
    for t in [&a, &b] {
        wait_for(
            "both terminals to hold the list and each other",
            Duration::from_secs(30),
            async || {
                let tasks = agent_tasks(&t.addr).await?;
                let s = sync_status(&t.addr).await?;
                (tasks.len() == 1 && s["lan_peers"] == 1).then_some(())
            },
        )
        .await;
    }
    let task = agent_tasks(&a.addr).await.unwrap()[0]["task"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(hub);

    // Apart: B is down while A decides; then B, alone, decides otherwise.
    drop(b);
    let mia_a = manager_session(&a.addr).await;
    let assign = format!("/api/tasks/{task}/assign");
    let (s, v) = pos_post(
        &a.addr,
        &assign,
        Some(&mia_a),
        serde_json::json!({"to": "worker:w-1"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    set_status(&a.addr, &task, "completed", "w-1")
        .await
        .unwrap();
    let b = start_peer_agent(&data_b, "127.0.0.1:9", &token, 2, pb, &[]);
    let mia_b = manager_session(&b.addr).await;
    let (s, v) = pos_post(
        &b.addr,
        &assign,
        Some(&mia_b),
        serde_json::json!({"to": "worker:w-2"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    set_status(&b.addr, &task, "in_progress", "w-2")
        .await
        .unwrap();
    assert_eq!(
        conflicts(&b.addr, &mia_b).await.unwrap(),
        Vec::<Value>::new()
    );
    drop(b);

    // They meet over the LAN, the hub still down.
    let b = start_peer_agent(&data_b, "127.0.0.1:9", &token, 2, pb, &[pa]);
    let mia_b = manager_session(&b.addr).await;
    for (t, session) in [(&a, &mia_a), (&b, &mia_b)] {
        let c = wait_for(
            "the conflict in the manager's view",
            Duration::from_secs(10),
            async || conflicts(&t.addr, session).await.filter(|c| !c.is_empty()),
        )
        .await;
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0]["title"], "Receive pallet", "{c:?}");
        let mut assignees: Vec<String> = c[0]["assignees"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.to_string())
            .collect();
        assignees.sort();
        assert_eq!(assignees.len(), 2, "{c:?}");
        assert!(
            assignees[0].contains("w-1") && assignees[1].contains("w-2"),
            "{c:?}"
        );
        let mut statuses: Vec<&str> = c[0]["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["status"].as_str().unwrap())
            .collect();
        statuses.sort();
        assert_eq!(statuses, vec!["completed", "in_progress"], "{c:?}");
        let s = sync_status(&t.addr).await.unwrap();
        assert_eq!(
            (s["online"].as_bool(), s["lan_peers"].as_u64()),
            (Some(false), Some(1))
        );
    }
}
