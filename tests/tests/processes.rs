//! Real processes on loopback: the built `hub` and three `pos-agent`s.
//! Stop the hub, make conflicting status changes on two agents while it is
//! down, restart it, and check that every replica converges and reports
//! the conflict.

use std::time::{Duration, Instant};

use serde_json::json;
use tests::procs::{
    add_worker, agent_tasks, get, post, set_status, start_agent, start_hub, wait_for, AgentArgs,
    Proc,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_converge_after_the_hub_returns_and_report_the_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let hub_data = dir.path().join("hub");
    let hub = start_hub(&hub_data, "127.0.0.1:0");
    let hub_addr = hub.addr.clone();
    let api = format!("http://{hub_addr}/api");
    post(
        format!("{api}/stores"),
        json!({"id": "store-042", "name": "Main St", "time_zone": "Europe/Berlin"}),
    )
    .await;
    let token = post(
        format!("{api}/stores/store-042/tokens"),
        json!({"label": "test"}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for w in ["w-1", "w-2"] {
        add_worker(&hub_addr, w).await;
    }
    let list = post(
        format!("{api}/lists"),
        json!({"store": "store-042", "name": "Closing", "date": "2026-11-26",
               "tasks": [{"title": "Count the till", "due": "21:30"}, {"title": "Lock the doors"}]}),
    )
    .await;
    let list_id = list["id"].as_str().unwrap().to_owned();

    let agents: Vec<Proc> = (0..3)
        .map(|i| {
            start_agent(
                &dir.path().join(format!("agent{i}")),
                &AgentArgs {
                    hub: hub_addr.clone(),
                    token: token.clone(),
                    terminal: format!("pos-{i}"),
                    http: "127.0.0.1:0".into(),
                },
            )
        })
        .collect();
    for a in &agents {
        wait_for(
            "every agent to receive the list",
            Duration::from_secs(30),
            async || agent_tasks(&a.addr).await.filter(|t| t.len() == 2),
        )
        .await;
    }
    let task = agent_tasks(&agents[0].addr).await.unwrap()[0]["task"]
        .as_str()
        .unwrap()
        .to_owned();

    // The hub goes down; two terminals disagree while it is away.
    drop(hub);
    for (a, status, worker) in [
        (&agents[0], "completed", "w-1"),
        (&agents[1], "in_progress", "w-2"),
    ] {
        let saved = set_status(&a.addr, &task, status, worker).await;
        assert!(saved.is_ok(), "saved while the hub is down: {saved:?}");
    }

    let restarted = Instant::now();
    let _hub = start_hub(&hub_data, &hub_addr);
    let mut views = Vec::new();
    for a in &agents {
        let row = wait_for(
            "the conflict to reach every agent",
            Duration::from_secs(60),
            async || {
                agent_tasks(&a.addr)
                    .await?
                    .into_iter()
                    .find(|t| t["task"] == task.as_str() && t["conflict"] == true)
            },
        )
        .await;
        views.push(row["status"].clone());
    }
    let converged = restarted.elapsed();
    eprintln!(
        "3 agents converged {converged:?} after the hub restarted (includes reconnect backoff)"
    );
    assert!(
        views.iter().all(|s| *s == views[0]),
        "same status shown everywhere: {views:?}"
    );

    // The hub holds both sides of the conflict too.
    let doc = wait_for(
        "the hub to hold the conflict",
        Duration::from_secs(30),
        async || {
            let d = get(format!("{api}/documents/{list_id}")).await?;
            let t = d["tasks"]
                .as_array()?
                .iter()
                .find(|t| t["spec"]["id"] == task.as_str())?
                .clone();
            (t["status"]["conflict"].as_array()?.len() == 2).then_some(t)
        },
    )
    .await;
    let workers: Vec<&str> = doc["status"]["conflict"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["worker"].as_str().unwrap())
        .collect();
    assert!(
        workers.contains(&"w-1") && workers.contains(&"w-2"),
        "{workers:?}"
    );
}
