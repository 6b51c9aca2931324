//! A list HQ deletes while a worker still has it on screen: the terminal
//! drops it, and completing one of its tasks gets a 404 that says why,
//! with nothing written.

use std::time::Duration;

use serde_json::json;
use tests::procs::{
    agent_tasks, post, set_status, setup_store, start_agent, start_hub, wait_for, AgentArgs,
    WORKERS,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completing_a_task_of_a_deleted_list_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(&dir.path().join("hub"), "127.0.0.1:0");
    let setup = setup_store(&hub.addr, 2).await;
    let agent = start_agent(
        &dir.path().join("agent"),
        &AgentArgs {
            hub: hub.addr.clone(),
            token: setup.token.clone(),
            terminal: "pos-1".into(),
            http: "127.0.0.1:0".into(),
        },
    );
    let tasks = wait_for(
        "the list to reach the terminal",
        Duration::from_secs(30),
        async || agent_tasks(&agent.addr).await.filter(|t| t.len() == 2),
    )
    .await;
    let task = tasks[0]["task"].as_str().unwrap().to_owned();
    let tomorrow = (chrono::Utc::now().date_naive() + chrono::Duration::days(1)).to_string();
    let report = post(
        format!("http://{}/api/purge", hub.addr),
        json!({"before": tomorrow, "store": "store-042", "dry_run": false}),
    )
    .await;
    assert_eq!(report["count"], 1, "{report}");
    wait_for(
        "the terminal to drop the list",
        Duration::from_secs(30),
        async || agent_tasks(&agent.addr).await.filter(|t| t.is_empty()),
    )
    .await;
    let err = set_status(&agent.addr, &task, "completed", WORKERS[0])
        .await
        .unwrap_err();
    assert!(err.starts_with("404"), "{err}");
    assert!(err.contains("deleted"), "the answer says why: {err}");
    let sync = tests::procs::agent_get(format!("http://{}/api/sync-status", agent.addr))
        .await
        .unwrap();
    assert_eq!(
        sync["unconfirmed_changes"], 0,
        "nothing was written: {sync}"
    );
}
