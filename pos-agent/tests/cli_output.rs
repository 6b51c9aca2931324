//! The `pos-agent` command line's output: piped into a reader that
//! closes early (`pos-agent tasks --json | head`), it ends quietly instead
//! of panicking on the broken pipe.

mod common;

use std::process::{Command, Stdio};

use common::{seed_list, Local};
use engine::ids::{DocumentId, TaskId};
use engine::model::{CreatedBy, InstanceContent, ListMeta, Priority, TaskSpec};

#[tokio::test]
async fn tasks_json_into_a_closed_pipe_ends_quietly() {
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
        tasks: (0..50)
            .map(|i| TaskSpec {
                id: TaskId(uuid::Uuid::from_u128(100 + i)),
                title: format!("Task {i}"),
                description: String::new(),
                start: None,
                due: None,
                priority: Priority::Normal,
                link: None,
                assignee: None,
                created_by: CreatedBy::Hq,
                position: i as i64,
            })
            .collect(),
    };
    seed_list(dir.path(), &content);
    let l = Local::start(dir.path()).await;

    let base = l.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        // A pipe whose reader is already gone: every write to it fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        Command::new(env!("CARGO_BIN_EXE_pos-agent"))
            .args(["tasks", "--json", "--agent-url", &base])
            .env_remove("POS_AGENT_WORKER")
            .env_remove("POS_AGENT_PIN")
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err, "", "nothing said, no panic");
    assert_ne!(out.status.code(), Some(101), "not a panic");

    // Into a pipe that is read, the same command prints the tasks.
    let base = l.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_pos-agent"))
            .args(["tasks", "--json", "--agent-url", &base])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success());
    let tasks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tasks.as_array().map(Vec::len), Some(50));
}

/// `sync-status` lists the hub's refusals with their rule's code: one
/// recorded by this version and one row as an earlier version stored it
/// (a plain reason), which reads as rule `other`.
#[tokio::test]
async fn sync_status_shows_each_refusal_with_its_rule() {
    use engine::replica::{RecordedRefusal, Refusal};
    use engine::storage::RejectionRecord;
    use engine::validation::Rejection;

    let dir = tempfile::tempdir().unwrap();
    let list = DocumentId(uuid::Uuid::from_u128(1));
    let earlier = RejectionRecord {
        doc: list,
        hash: "a1".repeat(32),
        reason: "status event dated 5 is after the hub's clock allows (4)".into(),
        at: 1_000,
    };
    common::seed_rejection(dir.path(), &earlier);
    let refusal = Refusal::new(
        list,
        automerge::ChangeHash([0xb2; 32]),
        &Rejection::UnknownWorker {
            worker: "ghost-999".into(),
        },
    );
    common::seed_rejection(dir.path(), &RecordedRefusal::record(&refusal, 2_000));
    let l = Local::start(dir.path()).await;

    let (status, v) = l.get("/api/sync-status").await;
    assert_eq!(status, 200, "{v}");
    let rejected = v["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{v}");
    assert_eq!(rejected[0]["rule"], "other");
    assert_eq!(rejected[0]["reason"], earlier.reason.as_str());
    assert_eq!(rejected[0]["hash"], earlier.hash.as_str());
    assert_eq!(rejected[1]["rule"], "unknown-worker");
    assert_eq!(
        rejected[1]["reason"],
        "worker ghost-999 is not on this store's roster"
    );
    assert_eq!(rejected[1]["hash"], refusal.change.to_string());

    let base = l.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_pos-agent"))
            .args(["sync-status", "--agent-url", &base])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("rejected by hub"))
        .collect();
    assert_eq!(
        lines,
        [
            "rejected by hub: status event dated 5 is after the hub's clock allows (4) [other]",
            "rejected by hub: worker ghost-999 is not on this store's roster [unknown-worker]",
        ],
        "{text}"
    );
}
