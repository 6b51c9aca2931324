//! The admin API over HTTP: what an HQ operator's requests do, and the
//! 4xx answers that say what to fix.

use engine::replica::hub::HubLimits;
use hub::server;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

struct Api {
    _dir: tempfile::TempDir,
    base: String,
    shutdown: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let opened = server::open(dir.path(), HubLimits::default(), Some("admin")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(server::run(listener, opened.state, shutdown.clone()));
    Api {
        _dir: dir,
        base,
        shutdown,
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
