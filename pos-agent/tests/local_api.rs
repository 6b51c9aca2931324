//! The terminal's local API with the hub unreachable: every action works
//! offline, bad input gets a 4xx that says what is wrong, nothing partial
//! is written.

use engine::ids::{DocumentId, TaskId};
use engine::model::{CreatedBy, InstanceContent, ListMeta, Priority, TaskSpec};
use serde_json::{json, Value};

struct Local {
    _dir: tempfile::TempDir,
    base: String,
    list: DocumentId,
    task: TaskId,
}

/// An agent whose replica already holds one list (as if synced earlier),
/// with no hub at all.
async fn start() -> Local {
    let dir = tempfile::tempdir().unwrap();
    let store: engine::ids::StoreId = "store-042".parse().unwrap();
    let content = InstanceContent {
        id: DocumentId(uuid::Uuid::from_u128(1)),
        meta: ListMeta {
            store,
            name: "Closing".into(),
            template: None,
            date: chrono::Utc::now().date_naive(),
            time_zone: "Europe/Berlin".into(),
            created_by: CreatedBy::Hq,
        },
        tasks: vec![TaskSpec {
            id: TaskId(uuid::Uuid::from_u128(11)),
            title: "Count the till".into(),
            description: String::new(),
            start: None,
            due: None,
            priority: Priority::High,
            link: Some("pos:tender-declaration".parse().unwrap()),
            assignee: None,
            created_by: CreatedBy::Hq,
            position: 0,
        }],
    };
    {
        let mut st = engine::storage::Store::open(dir.path().join("agent.db"), [7; 16]).unwrap();
        st.set_meta("store_id", b"store-042").unwrap();
        st.append_changes(
            content.id,
            &engine::document::instance::materialize(&content).unwrap(),
        )
        .unwrap();
    }
    let terminal =
        pos_agent::agent::open(dir.path(), Some("store-042"), "pos-1".parse().unwrap()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, pos_agent::api::router(terminal)).await });
    Local {
        _dir: dir,
        base,
        list: content.id,
        task: content.tasks[0].id,
    }
}

impl Local {
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn every_action_works_offline_and_bad_input_is_refused() {
    let l = start().await;
    let (s, tasks) = l.get("/api/tasks").await;
    assert_eq!(s, 200);
    assert_eq!(tasks[0]["title"], "Count the till");
    let (s, lists) = l.get("/api/lists").await;
    assert_eq!((s, lists[0]["tasks"].as_u64()), (200, Some(1)));

    let task = l.task.0;
    let path = format!("/api/tasks/{task}/status");
    let (s, v) = l
        .post(
            &path,
            &json!({"status": "in_progress", "worker": "w-1"}).to_string(),
        )
        .await;
    assert_eq!((s, v["saved"].as_bool()), (201, Some(true)), "{v}");
    let (s, v) = l
        .post(
            &path,
            &json!({"status": "completed", "worker": "w-1", "note": "balanced"}).to_string(),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (_, view) = l.get(&format!("/api/lists/{}", l.list)).await;
    let status = &view["tasks"][0]["status"];
    assert_eq!(status["current"], "completed");
    assert_eq!(status["history"].as_array().unwrap().len(), 2);
    assert_eq!(status["latest"]["terminal"], "pos-1");

    let (s, v) = l
        .post(
            &format!("/api/tasks/{task}/assign"),
            r#"{"to": "worker:w-7"}"#,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, tasks) = l.get("/api/tasks").await;
    assert_eq!(tasks[0]["assignee"]["id"], "w-7");

    let bad_status = json!({"status": "completed", "worker": "w-1"}).to_string();
    for (path, body, code, says) in [
        (path.clone(), "{not json".to_owned(), 400, "bad JSON"),
        (
            path.clone(),
            json!({"status": "done", "worker": "w-1"}).to_string(),
            400,
            "status",
        ),
        (
            path.clone(),
            json!({"status": "completed", "worker": "w 1"}).to_string(),
            400,
            "worker",
        ),
        (
            format!("/api/tasks/{}/status", uuid::Uuid::from_u128(999)),
            bad_status.clone(),
            404,
            "no task",
        ),
        (
            "/api/tasks/not-a-uuid/status".to_owned(),
            bad_status.clone(),
            400,
            "task",
        ),
        (
            format!("/api/tasks/{task}/assign"),
            r#"{"to": "everyone"}"#.to_owned(),
            400,
            "assignee",
        ),
    ] {
        let (s, v) = l.post(&path, &body).await;
        assert_eq!(s, code, "{path} {body}: {v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains(says),
            "{v} should mention {says}"
        );
    }
    // A completed task can be reopened once; reopening again is refused
    // (422) and writes nothing.
    let reopen = json!({"status": "reopened", "worker": "w-1"}).to_string();
    let (s, v) = l.post(&path, &reopen).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = l.post(&path, &reopen).await;
    assert_eq!(s, 422, "{v}");
    let (_, view) = l.get(&format!("/api/lists/{}", l.list)).await;
    assert_eq!(
        view["tasks"][0]["status"]["history"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let (s, v) = l.get("/api/sync-status").await;
    assert_eq!(s, 200);
    assert_eq!(v["online"], false);
    assert!(v["unconfirmed_changes"].as_u64().unwrap() >= 3, "{v}");
}
