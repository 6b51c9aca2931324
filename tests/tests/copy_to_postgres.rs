//! Real processes: a chain moves its hub from the embedded SQLite file to
//! PostgreSQL with `hub copy-to-postgres`. The hub on PostgreSQL answers
//! with the same lists, histories and status; the store's terminal, which
//! kept running offline, goes on syncing with it without resetting
//! anything (same hub storage id, same actor), and what a worker saved
//! before and after the move is at the hub exactly once. A second copy
//! into the now used database is refused. Skipped with a notice where
//! PostgreSQL is not installed (outside CI).

use std::process::Command;
use std::time::Duration;

use hub::pg::testing::PgServer;
use tests::procs::{
    agent_get, agent_tasks, bin, get, log_of, set_status, setup_store, spawn_listening,
    start_agent, start_hub, task_histories, wait_for, AgentArgs, ADMIN, KEEPALIVE_SECS, WORKERS,
};

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_copied_to_postgres_serves_the_same_data_and_its_terminals_go_on() {
    let Some(pg) = PgServer::shared() else { return };
    let url = pg.new_database();
    let dir = tempfile::tempdir().unwrap();
    let hub_data = dir.path().join("hub");
    let hub = start_hub(&hub_data, "127.0.0.1:0");
    let setup = setup_store(&hub.addr, 3).await;
    let agent_args = AgentArgs {
        hub: hub.addr.clone(),
        token: setup.token.clone(),
        terminal: "till-1".into(),
        http: "127.0.0.1:0".into(),
    };
    let agent = start_agent(&dir.path().join("agent"), &agent_args);
    let tasks = wait_for("the list at the terminal", DEADLINE, async || {
        agent_tasks(&agent.addr)
            .await
            .filter(|t| t.len() == 3)
            .map(|t| {
                t.iter()
                    .map(|t| t["task"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
    })
    .await;
    let before = set_status(&agent.addr, &tasks[0], "completed", WORKERS[0])
        .await
        .expect("saved");
    let doc_url = |addr: &str| format!("http://{addr}/api/documents/{}", setup.list);
    let has = |view: &serde_json::Value, event: &str| {
        task_histories(view)
            .is_some_and(|h| h.values().any(|(_, evs)| evs.iter().any(|e| e == event)))
    };
    let hub_addr = hub.addr.clone();
    let at_sqlite = wait_for("the completion at the hub", DEADLINE, async || {
        get(doc_url(&hub_addr))
            .await
            .filter(|v| has(v, &before.to_string()))
    })
    .await;
    let status_sqlite = get(format!("http://{}/api/status/lists", hub.addr))
        .await
        .unwrap();
    // The hub stops (the terminal goes on, offline); its data is copied.
    hub.kill();
    let out = Command::new(bin("hub"))
        .args(["copy-to-postgres", "--database", &url, "--data"])
        .arg(&hub_data)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "copy failed: {printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("changes"), "{printed}");

    // The hub on PostgreSQL, at the address the terminal knows.
    let mut cmd = Command::new(bin("hub"));
    cmd.args(["serve", "--listen", &hub_addr, "--admin-token", ADMIN])
        .args(["--keepalive-secs", KEEPALIVE_SECS])
        .args(["--database", &url])
        .arg("--data")
        .arg(dir.path().join("hub-on-pg"));
    let hub = spawn_listening(cmd, &log_of(&dir.path().join("hub-on-pg"))).unwrap();
    let at_pg = get(doc_url(&hub.addr))
        .await
        .expect("the list on PostgreSQL");
    assert_eq!(task_histories(&at_pg), task_histories(&at_sqlite));
    let status_pg = get(format!("http://{}/api/status/lists", hub.addr))
        .await
        .unwrap();
    assert_eq!(status_pg, status_sqlite, "the status index came along");

    // The terminal goes on: a new completion reaches the hub on PostgreSQL.
    let after = set_status(&agent.addr, &tasks[1], "completed", WORKERS[1])
        .await
        .expect("saved");
    let view = wait_for("the new completion at the hub", DEADLINE, async || {
        get(doc_url(&hub.addr))
            .await
            .filter(|v| has(v, &after.to_string()))
    })
    .await;
    for event in [before, after] {
        let n = task_histories(&view)
            .unwrap()
            .values()
            .flat_map(|(_, evs)| evs.iter())
            .filter(|e| **e == event.to_string())
            .count();
        assert_eq!(n, 1, "{event} is at the hub exactly once");
    }
    let sync = agent_get(format!("http://{}/api/sync-status", agent.addr))
        .await
        .unwrap();
    assert_eq!(
        sync["actor_changes"],
        serde_json::json!([]),
        "the terminal kept its actor: {sync}"
    );
    assert_eq!(sync["rejected"], serde_json::json!([]), "{sync}");

    // A second copy into the used database is refused, and changes nothing.
    let again = Command::new(bin("hub"))
        .args(["copy-to-postgres", "--database", &url, "--data"])
        .arg(&hub_data)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("already holds hub data"), "{said}");
    assert_eq!(get(doc_url(&hub.addr)).await, Some(view));
}
