//! The terminal's local API with the hub unreachable: every action works
//! offline, bad input gets a 4xx that says what is wrong, nothing partial
//! is written.

mod common;

use common::{seed_list, seed_roster, Local};
use engine::ids::{DocumentId, TaskId};
use engine::model::{CreatedBy, InstanceContent, ListMeta, Priority, TaskSpec};
use serde_json::json;

struct Fixture {
    _dir: tempfile::TempDir,
    l: Local,
    list: DocumentId,
    task: TaskId,
}

/// An agent whose replica already holds the store's roster and one list
/// (as if synced earlier), with no hub at all.
async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let content = InstanceContent {
        id: DocumentId(uuid::Uuid::from_u128(1)),
        meta: ListMeta {
            store: common::store(),
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
    seed_roster(
        dir.path(),
        &[
            ("w-1", "Ana", "cashier", &[], Some("1234")),
            ("w-7", "Bo", "cashier", &[], None),
            ("m-1", "Mia", "manager", &[], Some("9999")),
        ],
    );
    seed_list(dir.path(), &content);
    let l = Local::start(dir.path()).await;
    Fixture {
        _dir: dir,
        l,
        list: content.id,
        task: content.tasks[0].id,
    }
}

#[tokio::test]
async fn every_action_works_offline_and_bad_input_is_refused() {
    let f = start().await;
    let l = &f.l;
    let (s, tasks) = l.get("/api/tasks").await;
    assert_eq!(s, 200);
    assert_eq!(tasks[0]["title"], "Count the till");
    let (s, lists) = l.get("/api/lists").await;
    assert_eq!((s, lists[0]["tasks"].as_u64()), (200, Some(1)));

    let task = f.task.0;
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
    let (_, view) = l.get(&format!("/api/lists/{}", f.list)).await;
    let status = &view["tasks"][0]["status"];
    assert_eq!(status["current"], "completed");
    assert_eq!(status["history"].as_array().unwrap().len(), 2);
    assert_eq!(status["latest"]["terminal"], "pos-1");

    // Assigning is a manager's job.
    let assign = format!("/api/tasks/{task}/assign");
    let (s, v) = l.post(&assign, r#"{"to": "worker:w-7"}"#).await;
    assert_eq!(s, 401, "{v}");
    let cashier = l.sign_in("w-1", "1234").await;
    let (s, v) = l
        .post_as(&cashier, &assign, r#"{"to": "worker:w-7"}"#)
        .await;
    assert_eq!(s, 403, "{v}");
    let manager = l.sign_in("m-1", "9999").await;
    let (s, v) = l
        .post_as(&manager, &assign, r#"{"to": "worker:w-7"}"#)
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
            path.clone(),
            json!({"status": "completed", "worker": "w-9"}).to_string(),
            422,
            "roster",
        ),
        // Issue #19, 3: no going back to "nothing happened"; reopen instead.
        (
            path.clone(),
            json!({"status": "not_started", "worker": "w-1"}).to_string(),
            422,
            "not_started cannot be recorded",
        ),
        (
            format!("/api/tasks/{task}/assign"),
            r#"{"to": "team:everyone"}"#.to_owned(),
            400,
            "assignee",
        ),
        (
            format!("/api/tasks/{task}/assign"),
            r#"{"to": "worker:w-9"}"#.to_owned(),
            422,
            "roster",
        ),
    ] {
        let (s, v) = match path.ends_with("/assign") {
            true => l.post_as(&manager, &path, &body).await,
            false => l.post(&path, &body).await,
        };
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
    let (_, view) = l.get(&format!("/api/lists/{}", f.list)).await;
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
