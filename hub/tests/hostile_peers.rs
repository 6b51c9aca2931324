//! Hostile peers against the hub, beyond `sync_endpoint.rs` (tokens,
//! scoping, an HQ-field edit, garbage, oversized frames, floods, too many
//! documents): a change that decodes but crashes Automerge, a forged actor
//! and a reused sequence number over the wire, edits sent for another
//! store's document, truncated CBOR, and thousands of document requests
//! against the real binary while another store syncs, with its memory
//! measured. After each, nothing was stored, and the hub still serves.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use automerge::{ActorId, Automerge, Change};
use engine::document::instance;
use engine::ids::{DocumentId, EventId, TaskId};
use engine::model::{Status, StatusUpdate};
use engine::protocol::wire::{self, WireMessage};
use engine::protocol::SessionEvent;
use engine::replica::hub::HubLimits;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{content, next, send_lossy, Backend, Client, TestHub};

const NOW_SLACK_MS: i64 = 0;

/// The shared test hub (`store-a`, `store-b`, tokens `tok-<store>`).
async fn start(backend: Backend) -> TestHub {
    common::start_on(backend, HubLimits::default()).await
}

impl Client {
    /// Sync `doc` until the hub goes quiet; returns errors and unavailability.
    async fn sync(&mut self, id: DocumentId, doc: &mut Automerge) -> Vec<String> {
        if let Some(m) = self.session.generate(id, doc) {
            send_lossy(&mut self.ws, &m).await;
        }
        self.answers(id, doc).await
    }

    async fn answers(&mut self, id: DocumentId, doc: &mut Automerge) -> Vec<String> {
        let mut errors = Vec::new();
        loop {
            let Ok(m) = tokio::time::timeout(Duration::from_millis(500), next(&mut self.ws)).await
            else {
                return errors;
            };
            let Some(m) = m else {
                errors.push("closed".into());
                return errors;
            };
            match self.session.receive(m).unwrap().0 {
                SessionEvent::Sync {
                    doc: d, message, ..
                } if d == id => {
                    // A hostile replica may not be able to take the hub's
                    // changes (a reused sequence number): note it, go on.
                    if let Err(e) = self.session.apply(id, doc, message) {
                        errors.push(format!("local apply: {e}"));
                    }
                    if let Some(m) = self.session.generate(id, doc) {
                        send_lossy(&mut self.ws, &m).await;
                    }
                }
                SessionEvent::RemoteError { message } => errors.push(message),
                SessionEvent::Unavailable { .. } => errors.push("unavailable".into()),
                _ => {}
            }
        }
    }

    /// A sync message for `id` whose changes are exactly `changes` (raw
    /// bytes, anything at all), built on a real message's heads and have.
    fn sync_carrying(
        &mut self,
        id: DocumentId,
        doc: &Automerge,
        changes: Vec<Vec<u8>>,
    ) -> WireMessage {
        let msg = self
            .session
            .generate(id, doc)
            .expect("something to say about the document");
        let WireMessage::Sync {
            sender_id,
            target_id,
            document_id,
            data,
        } = msg
        else {
            panic!("not a sync message: {msg:?}")
        };
        let mut m = automerge::sync::Message::decode(&data).unwrap();
        m.changes = changes.into();
        WireMessage::Sync {
            sender_id,
            target_id,
            document_id,
            data: m.encode(),
        }
    }
}

fn update(n: u128, task: u128) -> StatusUpdate {
    StatusUpdate {
        id: EventId(uuid::Uuid::from_u128(n)),
        task: TaskId(uuid::Uuid::from_u128(task)),
        status: Status::Completed,
        worker: "w1".parse().unwrap(),
        terminal: "pos-1".parse().unwrap(),
        note: None,
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis() + NOW_SLACK_MS
}

/// The hub's copy of `id`: its heads and its status events.
async fn hub_copy(hub: &TestHub, id: DocumentId) -> (Vec<automerge::ChangeHash>, usize) {
    hub.state
        .hub
        .registry()
        .call(move |h, _| {
            let d = h.document(id).expect("the hub holds the document");
            let events = instance::read_events(d).map(|(e, _)| e.len()).unwrap_or(0);
            ((d.get_heads(), events), Vec::new())
        })
        .await
        .unwrap()
}

/// Store `store`'s peers are still served: a fresh connection gets the
/// whole list.
async fn still_serves(hub: &TestHub, store: &str, n: u128) {
    let mut c = Client::join(&hub.addr, &format!("tok-{store}"), "probe").await;
    let mut doc = Automerge::new();
    let errs = c.sync(content(store, n).id, &mut doc).await;
    assert!(errs.is_empty(), "{store}: {errs:?}");
    assert_eq!(instance::read(&doc).unwrap().tasks.len(), 2, "{store}");
}

/// Flip single bits of a real change until one still decodes but makes
/// Automerge panic when applied (what a fuzzer found). `None` if no bit
/// does (a fixed Automerge).
fn change_that_crashes_automerge(base: &Automerge, change: &Change) -> Option<Vec<u8>> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut found = None;
    let bytes = change.raw_bytes().to_vec();
    'search: for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let Ok(c) = Change::from_bytes(b.clone()) else {
                continue;
            };
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = base.fork().apply_changes([c]);
            }))
            .is_err();
            if panicked {
                found = Some(b);
                break 'search;
            }
        }
    }
    std::panic::set_hook(hook);
    found
}

on_each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_that_crashes_automerge_is_refused_and_the_hub_keeps_serving(backend: Backend) {
    let hub = start(backend).await;
    let id = content("store-a", 1).id;
    let mut c = Client::join(&hub.addr, "tok-store-a", "a").await;
    let mut doc = Automerge::new();
    assert!(c.sync(id, &mut doc).await.is_empty());
    let base = doc.fork();
    let (before, _) = hub_copy(&hub, id).await;

    doc.set_actor(ActorId::random());
    let task = TaskId(uuid::Uuid::from_u128(101));
    let to: engine::model::Assignee = "worker:w1".parse().unwrap();
    let real = instance::set_assignee(&mut doc, task, Some(&to), now_ms())
        .unwrap()
        .expect("a change");
    let Some(bad) = change_that_crashes_automerge(&base, &real) else {
        eprintln!("no single-bit flip crashes this Automerge any more; nothing to send");
        return;
    };
    let msg = c.sync_carrying(id, &doc, vec![bad]);
    send_lossy(&mut c.ws, &msg).await;
    // Answered from a copy without the real change: the message's heads
    // name it, so the hub may ask for it, and a client that sent it would
    // have it stored (rightly), which made "nothing stored" fail now and
    // then, depending on which bit flip the random actor led to.
    // The hub answers once it has caught Automerge's panic, whose report
    // (with RUST_BACKTRACE set) can take longer than `answers`' quiet
    // window in a debug build: wait for the answer itself.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut errs = c.answers(id, &mut base.fork()).await;
    while errs.is_empty() && std::time::Instant::now() < deadline {
        errs = c.answers(id, &mut base.fork()).await;
    }
    assert!(
        !errs.is_empty(),
        "the hub answered the bad change: {errs:?}"
    );

    assert_eq!(hub_copy(&hub, id).await.0, before, "nothing stored");
    still_serves(&hub, "store-b", 2).await;
    still_serves(&hub, "store-a", 1).await;
}
}

on_each_backend! {
    #[tokio::test]
    async fn a_forged_actor_and_a_reused_sequence_number_are_refused_over_the_wire(backend: Backend) {
    let hub = start(backend).await;
    let (a_id, b_id) = (content("store-a", 1).id, content("store-b", 2).id);

    // Store b introduces actor X: the hub records X as store b's.
    let x = ActorId::random();
    let mut b = Client::join(&hub.addr, "tok-store-b", "b").await;
    let mut b_doc = Automerge::new();
    b.sync(b_id, &mut b_doc).await;
    b_doc.set_actor(x.clone());
    instance::record_status(&mut b_doc, &update(1, 201), now_ms()).unwrap();
    assert!(b.sync(b_id, &mut b_doc).await.is_empty());

    // Store a writes with X: refused, not stored.
    let mut a = Client::join(&hub.addr, "tok-store-a", "a").await;
    let mut a_doc = Automerge::new();
    a.sync(a_id, &mut a_doc).await;
    let synced = a_doc.fork();
    let (heads, events) = hub_copy(&hub, a_id).await;
    let mut forged = synced.fork();
    forged.set_actor(x);
    instance::record_status(&mut forged, &update(2, 101), now_ms()).unwrap();
    let errs = a.sync(a_id, &mut forged).await;
    assert!(
        errs.iter().any(|e| e.contains("actor")),
        "forged actor answered: {errs:?}"
    );
    assert_eq!(
        hub_copy(&hub, a_id).await,
        (heads, events),
        "nothing stored"
    );

    // Actor Y's seq 1 is accepted; a different change as Y's seq 1 is not.
    let y = ActorId::random();
    let mut a = Client::join(&hub.addr, "tok-store-a", "a2").await;
    let mut first = synced.fork();
    first.set_actor(y.clone());
    instance::record_status(&mut first, &update(3, 101), now_ms()).unwrap();
    assert!(a.sync(a_id, &mut first).await.is_empty());
    let (heads, events) = hub_copy(&hub, a_id).await;
    assert_eq!(events, 1);
    let mut again = Client::join(&hub.addr, "tok-store-a", "a3").await;
    let mut second = synced.fork();
    second.set_actor(y);
    let (_, reused) = instance::record_status(&mut second, &update(4, 102), now_ms()).unwrap();
    // Sent as is: this replica cannot even take the hub's seq 1 of Y.
    let msg = again.sync_carrying(a_id, &synced, vec![reused.raw_bytes().to_vec()]);
    send_lossy(&mut again.ws, &msg).await;
    let errs = again.answers(a_id, &mut synced.fork()).await;
    assert!(
        errs.iter().any(|e| e.contains("sequence")),
        "reused sequence number answered: {errs:?}"
    );
    assert_eq!(
        hub_copy(&hub, a_id).await,
        (heads, events),
        "nothing stored"
    );

    // Not forwarded either: a fresh replica of store a sees one event.
    let mut fresh = Client::join(&hub.addr, "tok-store-a", "a4").await;
    let mut d = Automerge::new();
    fresh.sync(a_id, &mut d).await;
    assert_eq!(instance::read_events(&d).unwrap().0.len(), 1);
    still_serves(&hub, "store-b", 2).await;
}
}

on_each_backend! {
    #[tokio::test]
    async fn hqs_deterministic_actors_cannot_be_taken_over_by_a_store(backend: Backend) {
    // A store that reads its list can compute the actors HQ's changes
    // were written under (the content's, each task's genesis): no one
    // holds them in the owner table. A change under one of them must not
    // pass as the store's, nor make the store their owner.
    let hub = start(backend).await;
    let list = content("store-a", 1);
    let id = list.id;
    let mut a = Client::join(&hub.addr, "tok-store-a", "a").await;
    let mut synced = Automerge::new();
    a.sync(id, &mut synced).await;
    let (heads, events) = hub_copy(&hub, id).await;
    let content_actor = engine::document::genesis::content_actor(
        id,
        &engine::document::genesis::digest_json(&list),
    );
    let task_actor = engine::document::genesis::task_genesis_actor(id, list.tasks[0].id);
    for (n, actor) in [(11, content_actor), (12, task_actor)] {
        let mut forged = synced.fork();
        forged.set_actor(actor);
        instance::record_status(&mut forged, &update(n, 101), now_ms()).unwrap();
        let errs = a.sync(id, &mut forged).await;
        assert!(
            errs.iter().any(|e| e.contains("actor")),
            "a change under HQ's actor was answered: {errs:?}"
        );
        assert_eq!(hub_copy(&hub, id).await, (heads.clone(), events), "nothing stored");
    }
    // The same event under the terminal's own actor is accepted.
    let mut own = synced.fork();
    own.set_actor(ActorId::random());
    instance::record_status(&mut own, &update(11, 101), now_ms()).unwrap();
    assert!(a.sync(id, &mut own).await.is_empty());
    assert_eq!(hub_copy(&hub, id).await.1, events + 1);
}
}

on_each_backend! {
    #[tokio::test]
    async fn edits_sent_for_another_stores_document_look_like_a_missing_document_and_are_not_stored(backend: Backend) {
    let hub = start(backend).await;
    let b_id = content("store-b", 2).id;
    let (heads, events) = hub_copy(&hub, b_id).await;

    // Store b's content is deterministic, so store a can build it and
    // append a status event on top without ever being sent the document.
    let mut forged = Automerge::new();
    forged
        .apply_changes(instance::materialize(&content("store-b", 2)).unwrap())
        .unwrap();
    forged.set_actor(ActorId::random());
    instance::record_status(&mut forged, &update(5, 201), now_ms()).unwrap();
    let mut a = Client::join(&hub.addr, "tok-store-a", "a").await;
    let errs = a.sync(b_id, &mut forged).await;
    assert_eq!(
        errs,
        vec!["unavailable".to_owned()],
        "same answer as a missing document"
    );
    let mut missing = forged.fork();
    instance::record_status(&mut missing, &update(6, 201), now_ms()).unwrap();
    let errs = a
        .sync(DocumentId(uuid::Uuid::from_u128(999)), &mut missing)
        .await;
    assert_eq!(errs, vec!["unavailable".to_owned()]);

    assert_eq!(
        hub_copy(&hub, b_id).await,
        (heads, events),
        "nothing stored"
    );
    still_serves(&hub, "store-b", 2).await;
}
}

on_each_backend! {
    #[tokio::test]
    async fn truncated_cbor_gets_an_error_and_the_hub_keeps_serving(backend: Backend) {
    let hub = start(backend).await;
    let id = content("store-a", 1).id;
    let mut c = Client::join(&hub.addr, "tok-store-a", "probe").await;
    let frame = wire::encode(&c.session.request(id).unwrap());
    drop(c);
    for cut in [1, frame.len() / 3, frame.len() / 2, frame.len() - 1] {
        let mut c = Client::join(&hub.addr, "tok-store-a", "cut").await;
        c.ws.send(Message::Binary(frame[..cut].to_vec().into()))
            .await
            .unwrap();
        let m = next(&mut c.ws).await;
        assert!(
            matches!(m, Some(WireMessage::Error { .. })),
            "cut at {cut}: {m:?}"
        );
        assert!(next(&mut c.ws).await.is_none(), "closed after the error");
    }
    still_serves(&hub, "store-a", 1).await;
    still_serves(&hub, "store-b", 2).await;
}
}

// ---- thousands of requests against the real binary --------------------

/// The built hub binary, killed when dropped.
struct HubProcess {
    child: Child,
    addr: String,
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl HubProcess {
    fn start(data: &std::path::Path) -> HubProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hub"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--admin-token", "admin"])
            .args(["--max-messages-per-second", "1000000"])
            .arg("--data")
            .arg(data);
        let (child, addr) = common::node::spawn_listening(cmd);
        HubProcess { child, addr }
    }

    /// Resident memory, from /proc.
    fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc")
    }

    async fn admin(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let r = reqwest::Client::new()
            .post(format!("http://{}/api{path}", self.addr))
            .bearer_auth("admin")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap_or(serde_json::Value::Null)
    }
}

/// One connection of store `token` asking for `n` documents, fast; returns
/// how many answers came back before it went quiet or was closed.
async fn request_many(addr: &str, token: &str, ids: Vec<DocumentId>) -> usize {
    let mut c = Client::join(addr, token, "greedy").await;
    for id in &ids {
        if let Some(m) = c.session.request(*id) {
            if c.ws
                .send(Message::Binary(wire::encode(&m).into()))
                .await
                .is_err()
            {
                break;
            }
        }
    }
    let mut answers = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(2), next(&mut c.ws)).await {
        answers += 1;
        if answers == ids.len() {
            break;
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_document_requests_leave_memory_bounded_and_other_stores_served() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(dir.path());
    let mut tokens = Vec::new();
    let mut lists = Vec::new();
    for s in ["store-a", "store-b"] {
        hub.admin(
            "/stores",
            serde_json::json!({"id": s, "name": s, "time_zone": "Europe/Berlin"}),
        )
        .await;
        let t = hub
            .admin(
                &format!("/stores/{s}/tokens"),
                serde_json::json!({"label": "t"}),
            )
            .await;
        tokens.push(t["token"].as_str().unwrap().to_owned());
        let l = hub
            .admin(
                "/lists",
                serde_json::json!({"store": s, "name": "Closing", "date": "2026-11-26",
                                   "tasks": [{"title": "Count the till"}]}),
            )
            .await;
        lists.push(l["id"].as_str().unwrap().parse::<DocumentId>().unwrap());
    }
    let probe = async |hub: &HubProcess| {
        let start = Instant::now();
        let mut c = Client::join(&hub.addr, &tokens[1], "store-b").await;
        let mut doc = Automerge::new();
        let errs = c.sync(lists[1], &mut doc).await;
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(instance::read(&doc).unwrap().tasks.len(), 1);
        start.elapsed()
    };
    probe(&hub).await;
    let mut rss = vec![hub.rss_kb()];

    const CONNECTIONS: usize = 4;
    const PER_CONNECTION: usize = 1500;
    for round in 0..3u128 {
        // Store a asks for thousands of documents: unknown ids and store
        // b's list, on several connections at once, while store b syncs.
        let attacks: Vec<_> = (0..CONNECTIONS as u128)
            .map(|c| {
                let ids: Vec<DocumentId> = (0..PER_CONNECTION as u128)
                    .map(|i| match i % 100 {
                        0 => lists[1],
                        _ => DocumentId(uuid::Uuid::from_u128((round << 64) | (c << 32) | i)),
                    })
                    .collect();
                let (addr, token) = (hub.addr.clone(), tokens[0].clone());
                tokio::spawn(async move { request_many(&addr, &token, ids).await })
            })
            .collect();
        let served_in = probe(&hub).await;
        let mut answered = 0;
        for a in attacks {
            answered += a.await.unwrap();
        }
        rss.push(hub.rss_kb());
        eprintln!(
            "round {round}: {answered} of {} requests answered; store b served in {served_in:?}; hub RSS {} kB",
            CONNECTIONS * PER_CONNECTION,
            rss.last().unwrap()
        );
        assert!(
            served_in < Duration::from_secs(10),
            "store b waited {served_in:?}"
        );
    }
    let status: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/api/status", hub.addr))
        .bearer_auth("admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        status["cached_documents"].as_u64().unwrap() <= 4,
        "requests for unknown documents cached something: {status}"
    );
    // Bounded: later rounds do not keep growing the hub (allocator noise
    // aside), and the whole attack costs tens of MB at most.
    let (first, last) = (rss[1], *rss.last().unwrap());
    assert!(
        last < first + 16 * 1024,
        "hub memory keeps growing across rounds: {rss:?} kB"
    );
    assert!(
        last < rss[0] + 64 * 1024,
        "thousands of requests cost more than 64 MB: {rss:?} kB"
    );
}

/// Append a status event with every field given by hand, as a hostile
/// peer (or a JS client) can: past every check `record_status` makes.
fn append_raw_event(doc: &mut Automerge, id: u128, status: &str, worker: &str, at: i64) {
    use automerge::transaction::Transactable;
    use automerge::{ObjType, ReadDoc, ROOT};
    let (_, events) = doc.get(ROOT, "events").unwrap().unwrap();
    let mut tx = doc.transaction();
    let len = tx.length(&events);
    let e = tx.insert_object(&events, len, ObjType::Map).unwrap();
    for (k, v) in [
        ("id", uuid::Uuid::from_u128(id).to_string()),
        ("task", uuid::Uuid::from_u128(101).to_string()),
        ("status", status.into()),
        ("worker", worker.into()),
        ("terminal", "pos-9".into()),
        ("note", "forged".into()),
    ] {
        tx.put(&e, k, v).unwrap();
    }
    tx.put(&e, "at", at).unwrap();
    tx.put_object(&e, "prev", ObjType::List).unwrap();
    tx.commit();
}

// Issue #19, items 1 and 3, over the wire with a valid store token: a
// second event under an existing id (another status, worker and note,
// dated before the original so it would sort first), an event by a
// worker on no roster, and `not_started` as a new status are refused;
// the hub's document, drill-down and worker report keep the original.
on_each_backend! {
    #[tokio::test]
    async fn an_existing_event_id_a_stranger_and_not_started_are_refused_and_history_stays(backend: Backend) {
    let hub = start(backend).await;
    let a_id = content("store-a", 1).id;
    let mut a = Client::join(&hub.addr, "tok-store-a", "a").await;
    let mut doc = Automerge::new();
    a.sync(a_id, &mut doc).await;
    doc.set_actor(ActorId::random());
    let (original, _) = instance::record_status(&mut doc, &update(1, 101), now_ms()).unwrap();
    assert!(a.sync(a_id, &mut doc).await.is_empty());
    let synced = doc.fork();
    let (heads, events) = hub_copy(&hub, a_id).await;
    assert_eq!(events, 1);

    let cases: [(&str, u128, &str, &str, &str); 4] = [
        ("same actor", 1, "in_progress", "w1", "already in the log"),
        ("new actor", 1, "reopened", "w1", "already in the log"),
        (
            "stranger",
            7,
            "completed",
            "ghost-999",
            "not on this store's roster",
        ),
        (
            "not started",
            8,
            "not_started",
            "w1",
            "not_started cannot be recorded",
        ),
    ];
    for (case, id, status, worker, answer) in cases {
        let mut forged = synced.fork();
        if case != "same actor" {
            forged.set_actor(ActorId::random());
        } else {
            forged.set_actor(doc.get_actor().clone());
        }
        append_raw_event(&mut forged, id, status, worker, original.at - 60_000);
        let mut c = Client::join(&hub.addr, "tok-store-a", case).await;
        let errs = c.sync(a_id, &mut forged).await;
        assert!(
            errs.iter().any(|e| e.contains(answer)),
            "{case}: answered {errs:?}"
        );
        assert_eq!(
            hub_copy(&hub, a_id).await,
            (heads.clone(), events),
            "{case}: nothing stored"
        );
    }

    // What HQ reads: the document, the drill-down and the worker report.
    let (history, by_worker) = hub
        .state
        .hub
        .registry()
        .call(move |h, _| {
            let view = instance::read(h.document(a_id).unwrap()).unwrap();
            let t = view.task(TaskId(uuid::Uuid::from_u128(101))).unwrap();
            let history = t.status.history.clone();
            let rows = h
                .indexed_store()
                .status_by_worker(Some(&"store-a".parse().unwrap()), None, 100)
                .unwrap();
            ((history, rows), Vec::new())
        })
        .await
        .unwrap();
    assert_eq!(history, vec![original.clone()]);
    assert_eq!(by_worker.len(), 1);
    assert_eq!(by_worker[0].status, "completed");
    assert_eq!(by_worker[0].note, None);
    still_serves(&hub, "store-b", 2).await;
}
}
