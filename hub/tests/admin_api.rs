//! The admin API over HTTP: what an HQ operator's requests do, and the
//! 4xx answers that say what to fix.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use engine::document::directory;
use engine::ids::{DocumentId, StoreId};
use engine::replica::hub::HubLimits;
use hub::runtime::HubHandle;
use hub::{data_dir, server};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

struct Api {
    /// `None` once taken for a restart.
    dir: Option<tempfile::TempDir>,
    base: String,
    hub: HubHandle,
    shutdown: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start() -> Api {
    start_in(tempfile::tempdir().unwrap()).await
}

/// A hub on `dir` (a restart when a hub ran there before).
async fn start_in(dir: tempfile::TempDir) -> Api {
    let opened = data_dir::open(
        dir.path(),
        HubLimits::default(),
        Some("admin"),
        &Default::default(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let hub = opened.state.hub.registry().clone();
    tokio::spawn(server::run(listener, opened.state, shutdown.clone()));
    Api {
        dir: Some(dir),
        base,
        hub,
        shutdown,
    }
}

/// Poll `f` until it gives a value; fail after a deadline.
async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, "admin", Some(body))
            .await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, "admin", None).await
    }
}

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("")
}

#[tokio::test]
async fn stores_and_tokens() {
    let api = start().await;
    let (s, _) = api
        .post(
            "/stores",
            json!({"id": "s1", "name": "Main", "time_zone": "Europe/Berlin"}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, v) = api
        .post(
            "/stores",
            json!({"id": "s2", "name": "Bad", "time_zone": "Mars/Base"}),
        )
        .await;
    assert_eq!(s, 400);
    assert!(error_of(&v).contains("IANA"), "{v}");
    let (s, v) = api
        .post(
            "/stores",
            json!({"id": "has space", "name": "x", "time_zone": "UTC"}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = api
        .post("/stores/s1/tokens", json!({"label": "till 1"}))
        .await;
    assert_eq!(s, 201);
    let token = v["token"].as_str().unwrap().to_owned();
    let (s, v) = api.post("/stores/nope/tokens", json!({})).await;
    assert_eq!(s, 404, "{v}");
    // A store token is not an admin token; no token at all is a 401.
    let (s, _) = api
        .call(reqwest::Method::GET, "/stores", &token, None)
        .await;
    assert_eq!(s, 403);
    let (s, _) = api.call(reqwest::Method::GET, "/stores", "", None).await;
    assert_eq!(s, 401);
    let (s, v) = api.get("/stores").await;
    assert_eq!(s, 200);
    assert_eq!(v[0]["id"], "s1");
    assert_eq!(v[0]["online"], false);
    let (s, _) = api.post("/tokens/revoke", json!({"token": token})).await;
    assert_eq!(s, 200);
    let (s, _) = api.post("/tokens/revoke", json!({"token": token})).await;
    assert_eq!(s, 404, "revoking twice");
}

#[tokio::test]
async fn publishing_a_list_and_reading_its_status() {
    let api = start().await;
    api.post(
        "/stores",
        json!({"id": "s1", "name": "Main", "time_zone": "Europe/Berlin"}),
    )
    .await;
    let list = json!({"store": "s1", "name": "Closing", "date": "2026-11-26",
                      "tasks": [{"title": "Count the till", "due": "21:30", "priority": "high"}, {"title": "Lock up"}]});
    let (s, v) = api.post("/lists", list.clone()).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (s, doc) = api.get(&format!("/documents/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(doc["tasks"][0]["spec"]["title"], "Count the till");
    assert_eq!(
        doc["tasks"][0]["spec"]["due"], "2026-11-26T20:30:00Z",
        "21:30 in Berlin"
    );
    let (_, rows) = api.get("/status/lists?store=s1").await;
    assert_eq!(rows[0]["not_started"], 2);

    for (bad, expect) in [
        (
            json!({"store": "s1", "name": "x", "date": "26.11.2026", "tasks": [{"title": "a"}]}),
            "YYYY-MM-DD",
        ),
        (
            json!({"store": "s1", "name": "x", "date": "2026-11-26", "tasks": []}),
            "at least one task",
        ),
        (
            json!({"store": "s1", "name": "x", "date": "2026-11-26", "tasks": [{"title": " "}]}),
            "title",
        ),
        (
            json!({"store": "s1", "name": "x", "date": "2026-11-26", "tasks": [{"title": "a", "due": "9pm"}]}),
            "21:00",
        ),
        (
            json!({"store": "s1", "name": "x", "date": "2026-11-26", "tasks": [{"title": "a", "link": "ftp://x"}]}),
            "pos:",
        ),
    ] {
        let (s, v) = api.post("/lists", bad).await;
        assert_eq!(s, 400, "{v}");
        assert!(error_of(&v).contains(expect), "{v} should mention {expect}");
    }
    let (s, _) = api
        .post(
            "/lists",
            json!({"store": "nope", "name": "x", "date": "2026-11-26", "tasks": [{"title": "a"}]}),
        )
        .await;
    assert_eq!(s, 404);
}

/// The lists in `store`'s directory at the hub: list id -> list name.
async fn directory_of(hub: &HubHandle, store: &str) -> BTreeMap<DocumentId, String> {
    let store: StoreId = store.parse().unwrap();
    hub.call(move |hub, _| {
        let doc = hub
            .document(DocumentId::directory_of(&store))
            .expect("every store has a directory");
        let view = directory::read(doc).expect("a directory document");
        let entries = view.entries.into_iter().map(|(id, e)| (id, e.name));
        (entries.collect(), Vec::new())
    })
    .await
    .unwrap()
}

fn doc_id(v: &Value) -> DocumentId {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn one_request_publishes_a_list_to_many_stores_each_in_its_own_zone() {
    let api = start().await;
    for (id, tz) in [
        ("berlin", "Europe/Berlin"),
        ("new-york", "America/New_York"),
        ("tokyo", "Asia/Tokyo"),
    ] {
        let (s, v) = api
            .post("/stores", json!({"id": id, "name": id, "time_zone": tz}))
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, v) = api
        .post(
            "/lists",
            json!({"stores": ["new-york", "berlin"], "name": "Price change", "date": "2026-11-26",
                   "tasks": [{"title": "Relabel aisle 3", "due": "10:00"}, {"title": "Check the shelf"}]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let lists = v["lists"].as_array().expect("a list per store");
    assert_eq!(lists.len(), 2, "{v}");
    assert!(
        v.get("id").is_none(),
        "the many-store reply has no top-level id: {v}"
    );
    let mut ids = Vec::new();
    for (l, (store, due)) in lists.iter().zip([
        ("new-york", "2026-11-26T15:00:00Z"),
        ("berlin", "2026-11-26T09:00:00Z"),
    ]) {
        assert_eq!(l["store"], store, "in request order: {v}");
        let id = doc_id(&l["id"]);
        assert_eq!(l["url"], id.to_url());
        let (s, doc) = api.get(&format!("/documents/{id}")).await;
        assert_eq!(s, 200, "{doc}");
        assert_eq!(doc["meta"]["store"], store);
        assert_eq!(doc["meta"]["name"], "Price change");
        assert_eq!(doc["tasks"].as_array().unwrap().len(), 2);
        assert_eq!(doc["tasks"][0]["spec"]["due"], due, "10:00 in {store}");
        let dir = directory_of(&api.hub, store).await;
        assert_eq!(
            dir.into_iter().collect::<Vec<_>>(),
            vec![(id, "Price change".to_owned())],
            "{store}'s directory lists its own list"
        );
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "each store gets its own document");
    assert!(
        directory_of(&api.hub, "tokyo").await.is_empty(),
        "a store not named gets nothing"
    );
    let (_, rows) = api.get("/status/lists").await;
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");

    // The one-store form keeps its reply: just the list's id and url.
    let (s, v) = api
        .post(
            "/lists",
            json!({"store": "tokyo", "name": "Promo", "date": "2026-11-26", "tasks": [{"title": "a"}]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "url"], "{v}");
    assert!(directory_of(&api.hub, "tokyo")
        .await
        .contains_key(&doc_id(&v["id"])));
}

/// A many-store publish that fails part-way (here: the hub's database
/// refuses the second store's list) answers with the error, the lists the
/// stores before it got, and the stores still to send to; those lists are
/// really published, the rest got nothing, and sending the rest again works.
#[tokio::test]
async fn a_many_store_publish_that_fails_part_way_says_which_lists_went_out() {
    let api = start().await;
    for id in ["s1", "s2", "s3"] {
        let (s, v) = api
            .post("/stores", json!({"id": id, "name": id, "time_zone": "UTC"}))
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let db = api.dir.as_ref().unwrap().path().join("hub.db");
    let injector = rusqlite::Connection::open(db).unwrap();
    injector
        .execute_batch(
            "CREATE TRIGGER fail_s2 BEFORE INSERT ON doc_owners WHEN NEW.store_id = 's2'
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    let list = |stores: Value| json!({"stores": stores, "name": "Recount", "date": "2026-11-26", "tasks": [{"title": "a"}]});
    let (s, v) = api.post("/lists", list(json!(["s1", "s2", "s3"]))).await;
    assert!(s >= 500, "{s} {v}");
    assert!(error_of(&v).contains("injected failure"), "{v}");
    assert!(error_of(&v).contains("the first 1 of 3 stores"), "{v}");
    let lists = v["lists"].as_array().expect("the lists that went out");
    assert_eq!(lists.len(), 1, "{v}");
    assert_eq!(lists[0]["store"], "s1");
    let got = doc_id(&lists[0]["id"]);
    assert_eq!(v["not_published"], json!(["s2", "s3"]), "{v}");
    assert_eq!(
        directory_of(&api.hub, "s1")
            .await
            .into_iter()
            .collect::<Vec<_>>(),
        vec![(got, "Recount".to_owned())],
        "s1 has the list the answer names"
    );
    for store in ["s2", "s3"] {
        assert!(directory_of(&api.hub, store).await.is_empty(), "{store}");
    }
    injector.execute_batch("DROP TRIGGER fail_s2").unwrap();
    let (s, v) = api.post("/lists", list(v["not_published"].clone())).await;
    assert_eq!(s, 201, "{v}");
    for store in ["s2", "s3"] {
        assert_eq!(directory_of(&api.hub, store).await.len(), 1, "{store}");
    }
}

#[tokio::test]
async fn a_many_store_publish_checks_every_store_before_writing_anything() {
    let api = start().await;
    for (id, tz) in [("utc", "UTC"), ("berlin", "Europe/Berlin")] {
        let (s, v) = api
            .post("/stores", json!({"id": id, "name": id, "time_zone": tz}))
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let list = |stores: Value| json!({"stores": stores, "name": "x", "date": "2026-11-26", "tasks": [{"title": "a"}]});
    let (s, v) = api
        .post("/lists", list(json!(["utc", "ghost", "berlin"])))
        .await;
    assert_eq!(s, 404, "{v}");
    assert!(
        error_of(&v).contains("ghost"),
        "names the unknown store: {v}"
    );
    assert!(!error_of(&v).contains("utc"), "names only the unknown: {v}");

    // 02:30 on the night clocks go forward does not exist in Berlin; the
    // store before it gets nothing either.
    let (s, v) = api
        .post(
            "/lists",
            json!({"stores": ["utc", "berlin"], "name": "x", "date": "2026-03-29",
                   "tasks": [{"title": "a", "due": "02:30"}]}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(error_of(&v).contains("berlin"), "names the store: {v}");

    let too_many: Vec<String> = (0..=engine::publish::MAX_STORES_PER_PUBLISH)
        .map(|i| format!("store-{i}"))
        .collect();
    let both = json!({"store": "utc", "stores": ["berlin"], "name": "x", "date": "2026-11-26",
                      "tasks": [{"title": "a"}]});
    let neither = json!({"name": "x", "date": "2026-11-26", "tasks": [{"title": "a"}]});
    for (bad, expect) in [
        (both, "not both"),
        (neither, "name the store"),
        (list(json!([])), "empty"),
        (list(json!(["utc", "berlin", "utc"])), "more than once"),
        (list(json!(["utc", "has space"])), "has space"),
        (list(json!(too_many)), "at most"),
    ] {
        let (s, v) = api.post("/lists", bad).await;
        assert_eq!(s, 400, "{v}");
        assert!(error_of(&v).contains(expect), "{v} should mention {expect}");
    }
    for store in ["utc", "berlin"] {
        assert!(
            directory_of(&api.hub, store).await.is_empty(),
            "a refused request published nothing to {store}"
        );
    }
    let (_, rows) = api.get("/status/lists").await;
    assert_eq!(rows, json!([]), "no list anywhere");

    // The same stores, all known: each gets the list.
    let (s, v) = api.post("/lists", list(json!(["utc", "berlin"]))).await;
    assert_eq!(s, 201, "{v}");
    for store in ["utc", "berlin"] {
        assert_eq!(directory_of(&api.hub, store).await.len(), 1, "{store}");
    }
}

#[tokio::test]
async fn a_recurring_list_is_materialized_and_a_bad_rule_is_refused() {
    let api = start().await;
    api.post(
        "/stores",
        json!({"id": "s1", "name": "Main", "time_zone": "America/New_York"}),
    )
    .await;
    let (s, t) = api
        .post(
            "/templates",
            json!({"name": "Opening", "rrule": "FREQ=DAILY", "time": "07:00",
                   "tasks": [{"title": "Unlock", "due": "+15"}, {"title": "Count float", "due": "07:30"}]}),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    assert_eq!(t["revision"], 1);
    let id = t["id"].as_str().unwrap().to_owned();
    let (s, v) = api
        .post(
            &format!("/templates/{id}/assign"),
            json!({"stores": ["s1"]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, rows) = api.get("/status/lists?store=s1").await;
    let n = rows.as_array().unwrap().len();
    assert!(
        (14..=16).contains(&n),
        "a two-week horizon of daily lists, got {n}"
    );
    let (s, v) = api
        .post(
            &format!("/templates/{id}/assign"),
            json!({"stores": ["ghost"]}),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    for (rule, expect) in [
        ("FREQ=HOURLY", "at most daily"),
        ("EVERY THURSDAY", "RRULE"),
        ("", "empty"),
    ] {
        let (s, v) = api
            .post(
                "/templates",
                json!({"name": "x", "rrule": rule, "time": "07:00", "tasks": [{"title": "a"}]}),
            )
            .await;
        assert_eq!(s, 400, "{v}");
        assert!(error_of(&v).contains(expect), "{v} should mention {expect}");
    }
}

#[tokio::test]
async fn healthz_and_metrics() {
    let api = start().await;
    api.post(
        "/stores",
        json!({"id": "s1", "name": "Main", "time_zone": "UTC"}),
    )
    .await;
    let root = api.base.trim_end_matches("/api").to_owned();
    let health = reqwest::get(format!("{root}/healthz")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let text = reqwest::get(format!("{root}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "hub_connections 0",
        "hub_stores 1",
        "hub_documents 1",
        "hub_status_index_backlog 0",
        "hub_changes_accepted_total 0",
        "hub_changes_rejected_total 0",
        "hub_sync_bytes_in_total 0",
        "hub_message_seconds_count 0",
    ] {
        assert!(text.contains(name), "metrics lack {name:?}:\n{text}");
    }
}

#[tokio::test]
async fn purge_counts_first_and_needs_a_filter() {
    let api = start().await;
    api.post(
        "/stores",
        json!({"id": "s1", "name": "Main", "time_zone": "UTC"}),
    )
    .await;
    for date in ["2026-01-05", "2026-01-06", "2026-02-01"] {
        let (s, _) = api
            .post(
                "/lists",
                json!({"store": "s1", "name": "Closing", "date": date, "tasks": [{"title": "a"}]}),
            )
            .await;
        assert_eq!(s, 201);
    }
    let (s, v) = api.post("/purge", json!({})).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = api.post("/purge", json!({"before": "2026-02-01"})).await;
    assert_eq!(
        (s, v["count"].as_u64(), v["dry_run"].as_bool()),
        (200, Some(2), Some(true))
    );
    let (_, rows) = api.get("/status/lists").await;
    assert_eq!(
        rows.as_array().unwrap().len(),
        3,
        "a dry run deletes nothing"
    );
    let (s, v) = api
        .post("/purge", json!({"before": "2026-02-01", "dry_run": false}))
        .await;
    assert_eq!((s, v["count"].as_u64()), (200, Some(2)));
    let (_, rows) = api.get("/status/lists").await;
    assert_eq!(rows.as_array().unwrap().len(), 1);
    let (s, v) = api.post("/purge", json!({"before": "Feb 1"})).await;
    assert_eq!(s, 400, "{v}");
}

fn rfc3339_ms(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .timestamp_millis()
}

#[tokio::test]
async fn stores_show_connections_and_a_last_sync_that_survives_a_restart() {
    let api = start().await;
    for id in ["s1", "s2"] {
        let (s, _) = api
            .post("/stores", json!({"id": id, "name": id, "time_zone": "UTC"}))
            .await;
        assert_eq!(s, 201);
    }
    let (_, v) = api.post("/stores/s1/tokens", json!({})).await;
    let token = v["token"].as_str().unwrap().to_owned();
    let (_, stores) = api.get("/stores").await;
    assert_eq!(
        (
            &stores[0]["online"],
            &stores[0]["connections"],
            &stores[0]["last_sync"]
        ),
        (&json!(false), &json!(0), &Value::Null),
        "{stores}"
    );

    let before = chrono::Utc::now().timestamp_millis();
    let url = api
        .base
        .replace("http://", "ws://")
        .replace("/api", "/sync");
    let url = format!("{url}?token={token}");
    let (ws1, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    // Not a wait for a condition: the two connections get distinct times,
    // so only the disconnect can write the later one.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (ws2, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let stores = wait_for("two connections of s1", async || {
        let (_, v) = api.get("/stores").await;
        (v[0]["connections"] == 2).then_some(v)
    })
    .await;
    assert_eq!(stores[0]["online"], true);
    let seen = rfc3339_ms(&stores[0]["last_sync"]);
    assert!(
        seen >= before - 1 && seen <= chrono::Utc::now().timestamp_millis(),
        "{stores}"
    );
    assert_eq!(
        (
            &stores[1]["id"],
            &stores[1]["online"],
            &stores[1]["last_sync"]
        ),
        (&json!("s2"), &json!(false), &Value::Null),
        "a store that never connected"
    );

    drop((ws1, ws2));
    let stores = wait_for("s1 to go offline", async || {
        let (_, v) = api.get("/stores").await;
        (v[0]["online"] == false).then_some(v)
    })
    .await;
    assert_eq!(stores[0]["connections"], 0);
    let last = rfc3339_ms(&stores[0]["last_sync"]);
    assert!(last >= seen, "{stores}");

    // A restarted hub still knows when s1 last synced.
    let mut api = api;
    let dir = api.dir.take().unwrap();
    drop(api);
    let api = start_in(dir).await;
    let (_, stores) = api.get("/stores").await;
    assert_eq!(
        (&stores[0]["online"], rfc3339_ms(&stores[0]["last_sync"])),
        (&json!(false), last),
        "{stores}"
    );
    assert_eq!(stores[1]["last_sync"], Value::Null);
}

/// Record a status on the hub's copy of `doc`, as a terminal would; with
/// `concurrent`, a second event by another worker that does not see the first.
async fn record(
    hub: &HubHandle,
    doc: &str,
    task: &str,
    first: (&str, &str, Option<&str>),
    concurrent: Option<(&str, &str)>,
) {
    use engine::document::instance::record_status;
    use engine::ids::{DocumentId, EventId, TaskId};
    use engine::model::StatusUpdate;
    let doc: DocumentId = doc.parse().unwrap();
    let task = TaskId(task.parse().unwrap());
    let update = |status: &str, worker: &str, terminal: &str, note: Option<&str>| StatusUpdate {
        id: EventId(uuid::Uuid::new_v4()),
        task,
        status: serde_json::from_value(json!(status)).unwrap(),
        worker: worker.parse().unwrap(),
        terminal: terminal.parse().unwrap(),
        note: note.map(str::to_owned),
    };
    let a = update(first.0, first.1, "pos-1", first.2);
    let b = concurrent.map(|(status, worker)| update(status, worker, "pos-2", None));
    hub.call(move |hub, now| {
        let out = hub
            .edit(doc, now, |d| {
                let mut other = d.fork();
                let (_, c1) = record_status(d, &a, now)?;
                let mut changes = vec![c1];
                if let Some(b) = &b {
                    let (_, c2) = record_status(&mut other, b, now + 1)?;
                    d.apply_changes([c2.clone()])
                        .expect("applying the concurrent event");
                    changes.push(c2);
                }
                Ok(changes)
            })
            .expect("recording status at the hub");
        ((), out)
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn past_due_lists_open_tasks_due_before_now() {
    let api = start().await;
    for id in ["s1", "s2"] {
        api.post("/stores", json!({"id": id, "name": id, "time_zone": "UTC"}))
            .await;
    }
    let today = chrono::Utc::now().date_naive();
    let yesterday = (today - chrono::Days::new(1)).to_string();
    let tomorrow = (today + chrono::Days::new(1)).to_string();
    // HQ assigns tasks to rostered workers only.
    let (s, v) = api
        .call(
            reqwest::Method::PUT,
            "/stores/s1/workers/w-7",
            "admin",
            Some(json!({"name": "Ana", "role": "cashier"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (_, v) = api
        .post(
            "/lists",
            json!({"store": "s1", "name": "Opening", "date": yesterday,
                   "tasks": [{"title": "Unlock", "due": "07:00", "assignee": "worker:w-7"},
                             {"title": "Count float", "due": "08:00"},
                             {"title": "Sweep"}]}),
        )
        .await;
    let opening = v["id"].as_str().unwrap().to_owned();
    api.post(
        "/lists",
        json!({"store": "s2", "name": "Opening", "date": tomorrow,
               "tasks": [{"title": "Not yet due", "due": "07:00"}]}),
    )
    .await;

    let (s, rows) = api.get("/status/past-due").await;
    assert_eq!(s, 200, "{rows}");
    let titles: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["Unlock", "Count float"],
        "most overdue first: {rows}"
    );
    let r = &rows[0];
    assert_eq!(
        (
            &r["store"],
            &r["list"],
            &r["date"],
            &r["assignee"],
            &r["status"],
            &r["doc"]
        ),
        (
            &json!("s1"),
            &json!("Opening"),
            &json!(yesterday),
            &json!("worker:w-7"),
            &json!("not_started"),
            &json!(opening)
        ),
        "{r}"
    );
    assert_eq!(r["due"], format!("{yesterday}T07:00:00.000Z"));

    // Completing a task takes it off; starting one keeps it on.
    let (_, doc) = api.get(&format!("/documents/{opening}")).await;
    let task_id = |i: usize| doc["tasks"][i]["spec"]["id"].as_str().unwrap().to_owned();
    record(
        &api.hub,
        &opening,
        &task_id(0),
        ("completed", "w-7", None),
        None,
    )
    .await;
    record(
        &api.hub,
        &opening,
        &task_id(1),
        ("in_progress", "w-8", None),
        None,
    )
    .await;
    let (_, rows) = api.get("/status/past-due").await;
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(
        (&rows[0]["title"], &rows[0]["status"]),
        (&json!("Count float"), &json!("in_progress"))
    );
    let (_, rows) = api.get("/status/past-due?store=s2").await;
    assert_eq!(rows, json!([]));
    let (s, v) = api.get("/status/past-due?store=has%20space").await;
    assert_eq!(s, 400, "{v}");

    // The grid takes a date range.
    let (_, rows) = api
        .get(&format!("/status/lists?from={tomorrow}&to={tomorrow}"))
        .await;
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["store"], "s2");
    let (_, rows) = api.get(&format!("/status/lists?to={yesterday}")).await;
    assert_eq!(
        (
            rows.as_array().unwrap().len(),
            &rows[0]["completed"],
            &rows[0]["past_due"]
        ),
        (1, &json!(1), &json!(1)),
        "{rows}"
    );
    let (s, v) = api.get("/status/lists?from=yesterday").await;
    assert_eq!(s, 400, "{v}");
    assert!(error_of(&v).contains("YYYY-MM-DD"), "{v}");
}

#[tokio::test]
async fn a_document_shows_each_task_with_its_history_and_both_sides_of_a_conflict() {
    let api = start().await;
    api.post(
        "/stores",
        json!({"id": "s1", "name": "Main", "time_zone": "UTC"}),
    )
    .await;
    let (_, v) = api
        .post(
            "/lists",
            json!({"store": "s1", "name": "Closing", "date": "2026-11-26",
                   "tasks": [{"title": "Count the till"}, {"title": "Lock up"}]}),
        )
        .await;
    let id = v["id"].as_str().unwrap().to_owned();
    let (_, doc) = api.get(&format!("/documents/{id}")).await;
    let till = doc["tasks"][0]["spec"]["id"].as_str().unwrap().to_owned();
    record(
        &api.hub,
        &id,
        &till,
        ("in_progress", "w-1", Some("started counting")),
        None,
    )
    .await;
    record(
        &api.hub,
        &id,
        &till,
        ("completed", "w-1", Some("till balanced")),
        Some(("in_progress", "w-2")),
    )
    .await;

    let (s, doc) = api.get(&format!("/documents/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(doc["meta"]["store"], "s1");
    let t = &doc["tasks"][0]["status"];
    let history = t["history"].as_array().unwrap();
    assert_eq!(history.len(), 3, "{t}");
    assert_eq!(
        (
            &history[0]["status"],
            &history[0]["worker"],
            &history[0]["terminal"],
            &history[0]["note"]
        ),
        (
            &json!("in_progress"),
            &json!("w-1"),
            &json!("pos-1"),
            &json!("started counting")
        )
    );
    assert!(history[0]["at"].as_i64().unwrap() > 0);
    let sides: Vec<(&str, &str)> = t["conflict"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["status"].as_str().unwrap(), e["worker"].as_str().unwrap()))
        .collect();
    assert_eq!(sides.len(), 2, "{t}");
    assert!(
        sides.contains(&("completed", "w-1")) && sides.contains(&("in_progress", "w-2")),
        "{sides:?}"
    );
    assert_eq!(doc["tasks"][1]["status"]["history"], json!([]));
    assert_eq!(doc["tasks"][1]["status"]["current"], "not_started");
    let (_, rows) = api.get("/status/lists?store=s1").await;
    assert_eq!(rows[0]["conflicts"], 1);
}

#[tokio::test]
async fn the_dashboard_is_served_at_the_root_without_a_token() {
    let api = start().await;
    let root = api.base.trim_end_matches("/api").to_owned();
    for (path, kind, needle) in [
        ("/", "text/html", "HQ dashboard"),
        ("/dashboard.js", "text/javascript", "status/past-due"),
        ("/dashboard.css", "text/css", ".badge"),
    ] {
        let r = reqwest::get(format!("{root}{path}")).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let h = r.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'"),
            "{path}"
        );
        assert!(r.text().await.unwrap().contains(needle), "{path}");
    }
    // The page is public; the data behind it is not.
    let r = reqwest::get(format!("{root}/api/stores")).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

/// The drill-down marks late tasks by the engine's rule (`engine::due`),
/// the one the grid and the past-due list count by, instead of leaving
/// the page to judge with the viewer's clock.
#[tokio::test]
async fn a_document_marks_its_late_tasks_as_the_status_index_counts_them() {
    let api = start().await;
    api.post(
        "/stores",
        json!({"id": "s1", "name": "Main", "time_zone": "UTC"}),
    )
    .await;
    let mut late = Vec::new();
    for date in ["2020-01-02", "2099-01-02"] {
        let (_, v) = api
            .post(
                "/lists",
                json!({"store": "s1", "name": "Closing", "date": date,
                       "tasks": [{"title": "Count the till", "due": "10:00"}, {"title": "No time"}]}),
            )
            .await;
        let (s, doc) = api
            .get(&format!("/documents/{}", v["id"].as_str().unwrap()))
            .await;
        assert_eq!(s, 200);
        late.push((
            doc["tasks"][0]["past_due"].clone(),
            doc["tasks"][1]["past_due"].clone(),
        ));
    }
    assert_eq!(
        late,
        vec![(json!(true), json!(false)), (json!(false), json!(false))]
    );
    let (_, rows) = api.get("/status/past-due").await;
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
}
