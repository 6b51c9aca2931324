//! Real processes: hub nodes on one PostgreSQL database, a store's
//! terminal (`pos-agent`) syncing through them, and faults between the
//! nodes and the database.
//!
//! - A node cut off from PostgreSQL (a fault proxy on its database link)
//!   stops serving its store when its lease runs out; another node takes
//!   the store over and the terminal follows. When the link heals, the
//!   node comes back and takes its share again. Every completion a worker
//!   was told is saved reaches the hub exactly once.
//! - A fourth node joins a cluster of three: it takes exactly its share
//!   of the stores (rendezvous placement), the others keep theirs, the
//!   terminal of a store that moved follows it, and every node answers
//!   HQ's status questions with the same figures.
//!
//! Skipped (with a notice) where PostgreSQL is not installed.

use std::collections::BTreeMap;
use std::time::Duration;

use engine::cluster::placement;
use engine::ids::{NodeId, StoreId};
use hub::pg::testing::PgServer;
use serde_json::{json, Value};
use tests::fault_proxy::FaultProxy;
use tests::procs::{
    agent_tasks, get, post, set_status, setup_store, start_agent, start_hub_node, task_histories,
    wait_for, AgentArgs, Proc, STORE, WORKERS,
};

const DEADLINE: Duration = Duration::from_secs(60);

fn node_id(name: &str) -> NodeId {
    name.parse().unwrap()
}

fn store_id(s: &str) -> StoreId {
    s.parse().unwrap()
}

/// The store each live node serves, from `hub cluster status --json`.
fn owners(url: &str) -> BTreeMap<String, String> {
    let out = std::process::Command::new(tests::procs::bin("hub"))
        .args(["cluster", "status", "--json", "--database", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["leases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["expires_in_ms"].as_i64().unwrap_or(0) > 0)
        .filter_map(|l| {
            Some((
                l["store"].as_str()?.to_owned(),
                l["owner"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// How many times `event` is in the hub's view of the list at `doc_url`.
fn times_at_hub(view: &Value, event: &str) -> usize {
    task_histories(view)
        .unwrap_or_default()
        .values()
        .flat_map(|(_, evs)| evs.iter())
        .filter(|e| *e == event)
        .count()
}

/// Complete task `task` at the terminal, then wait until the hub (asked
/// at `hub`) holds it; returns the event id.
async fn complete_and_confirm(
    agent: &Proc,
    hub: &str,
    list: &str,
    task: &str,
    worker: &str,
) -> String {
    let event = set_status(&agent.addr, task, "completed", worker)
        .await
        .expect("saved")
        .to_string();
    let url = format!("http://{hub}/api/documents/{list}");
    wait_for("the completion at the hub", DEADLINE, async || {
        get(url.clone())
            .await
            .filter(|v| times_at_hub(v, &event) > 0)
    })
    .await;
    event
}

async fn task_ids(agent: &Proc, n: usize) -> Vec<String> {
    wait_for("the list at the terminal", DEADLINE, async || {
        agent_tasks(&agent.addr)
            .await
            .filter(|t| t.len() == n)
            .map(|t| {
                t.iter()
                    .map(|t| t["task"].as_str().unwrap().to_owned())
                    .collect()
            })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_its_database_hands_its_store_over_and_takes_it_back_when_healed() {
    let Some(pg) = PgServer::shared() else { return };
    let url = pg.new_database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", pg.port())).await;
    let via_proxy = pg.url(&db).replace(
        &format!("127.0.0.1:{}/", pg.port()),
        &format!("{}/", proxy.addr()),
    );
    // Names such that the store is placed on the node behind the proxy.
    let (a, b) = (1..20)
        .map(|i| (format!("cut-{i}"), format!("ok-{i}")))
        .find(|(a, b)| {
            let live = [node_id(a), node_id(b)];
            placement(&live, &store_id(STORE)) == Some(&live[0])
        })
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node_a = start_hub_node(&dir.path().join("a"), &via_proxy, &a);
    let node_b = start_hub_node(&dir.path().join("b"), &url, &b);
    let setup = setup_store(&node_b.addr, 3).await;
    let list = setup.list.to_string();
    wait_for("the store served by its node", DEADLINE, async || {
        (owners(&url).get(STORE) == Some(&a)).then_some(())
    })
    .await;
    // The terminal is configured with node B; it is sent on to node A.
    let agent = start_agent(
        &dir.path().join("agent"),
        &AgentArgs {
            hub: node_b.addr.clone(),
            token: setup.token.clone(),
            terminal: "till-1".into(),
            http: "127.0.0.1:0".into(),
        },
    );
    let tasks = task_ids(&agent, 3).await;
    let first = complete_and_confirm(&agent, &node_a.addr, &list, &tasks[0], WORKERS[0]).await;

    // Node A loses its database. Its lease runs out; node B takes over.
    proxy.set_refuse(true);
    proxy.cut_all();
    let second = set_status(&agent.addr, &tasks[1], "completed", WORKERS[1])
        .await
        .expect("saved at the terminal while the store changes node")
        .to_string();
    wait_for("node B serving the store", DEADLINE, async || {
        (owners(&url).get(STORE) == Some(&b)).then_some(())
    })
    .await;
    let doc_at_b = format!("http://{}/api/documents/{list}", node_b.addr);
    wait_for(
        "the completion made during the cut at the hub",
        DEADLINE,
        async || {
            get(doc_at_b.clone())
                .await
                .filter(|v| times_at_hub(v, &second) > 0)
        },
    )
    .await;

    // The link heals: node A comes back and takes its share again.
    proxy.set_refuse(false);
    wait_for("node A serving the store again", DEADLINE, async || {
        (owners(&url).get(STORE) == Some(&a)).then_some(())
    })
    .await;
    let third = complete_and_confirm(&agent, &node_a.addr, &list, &tasks[2], WORKERS[2]).await;
    let view = get(doc_at_b.clone()).await.expect("the list");
    for event in [&first, &second, &third] {
        assert_eq!(
            times_at_hub(&view, event),
            1,
            "{event} is at the hub exactly once"
        );
    }
    let epochs = pg.psql(
        &db,
        &format!("SELECT string_agg(owner, ',' ORDER BY epoch) FROM lease_history WHERE store_id = '{STORE}'"),
    );
    assert_eq!(epochs, format!("{a},{b},{a}"), "one claim per hand-over");
    drop(node_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_takes_exactly_its_share_and_every_node_shows_the_same_figures() {
    let Some(pg) = PgServer::shared() else { return };
    let url = pg.new_database();
    let three: Vec<String> = (1..=3).map(|i| format!("node-{i}")).collect();
    // A fourth node's name under which the agent's store moves to it.
    let fourth = (4..40)
        .map(|i| format!("node-{i}"))
        .find(|n| {
            let live: Vec<NodeId> = three.iter().chain([n]).map(|s| node_id(s)).collect();
            placement(&live, &store_id(STORE)) == live.last()
        })
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Proc> = three
        .iter()
        .map(|n| start_hub_node(&dir.path().join(n), &url, n))
        .collect();
    let setup = setup_store(&nodes[0].addr, 2).await;
    let list = setup.list.to_string();
    let others: Vec<String> = (1..=15).map(|i| format!("store-{i:03}")).collect();
    for s in &others {
        post(
            format!("http://{}/api/stores", nodes[1].addr),
            json!({"id": s, "name": s, "time_zone": "Asia/Tokyo"}),
        )
        .await;
    }
    let all: Vec<String> = others.iter().cloned().chain([STORE.to_owned()]).collect();
    let placed = |names: &[String]| -> BTreeMap<String, String> {
        let live: Vec<NodeId> = names.iter().map(|n| node_id(n)).collect();
        all.iter()
            .map(|s| {
                let owner = placement(&live, &store_id(s)).unwrap().to_string();
                (s.clone(), owner)
            })
            .collect()
    };
    let before = placed(&three);
    wait_for("three nodes serving every store", DEADLINE, async || {
        (owners(&url) == before).then_some(())
    })
    .await;
    let agent = start_agent(
        &dir.path().join("agent"),
        &AgentArgs {
            hub: nodes[2].addr.clone(),
            token: setup.token.clone(),
            terminal: "till-1".into(),
            http: "127.0.0.1:0".into(),
        },
    );
    let tasks = task_ids(&agent, 2).await;
    let first = complete_and_confirm(&agent, &nodes[0].addr, &list, &tasks[0], WORKERS[0]).await;

    nodes.push(start_hub_node(&dir.path().join(&fourth), &url, &fourth));
    let four: Vec<String> = three.iter().cloned().chain([fourth.clone()]).collect();
    let after = placed(&four);
    wait_for("four nodes serving every store", DEADLINE, async || {
        (owners(&url) == after).then_some(())
    })
    .await;
    // Only the fourth node's share moved.
    for (store, owner) in &after {
        assert!(
            owner == &before[store] || owner == &fourth,
            "{store} moved from {} to {owner}",
            before[store]
        );
    }
    assert_eq!(after[STORE], fourth);
    let second = complete_and_confirm(&agent, &nodes[3].addr, &list, &tasks[1], WORKERS[1]).await;
    let doc = format!("http://{}/api/documents/{list}", nodes[1].addr);
    let view = get(doc).await.expect("the list");
    for event in [&first, &second] {
        assert_eq!(
            times_at_hub(&view, event),
            1,
            "{event} is at the hub exactly once"
        );
    }

    // HQ's figures are the same whichever node is asked.
    for path in ["/api/status/lists", "/api/stores"] {
        let deadline = std::time::Instant::now() + DEADLINE;
        let answers = loop {
            let mut answers = Vec::new();
            for n in &nodes {
                answers.push(get(format!("http://{}{path}", n.addr)).await);
            }
            if answers.iter().all(|a| a.is_some() && *a == answers[0]) {
                break answers.into_iter().flatten().collect::<Vec<Value>>();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path} differs between nodes: {answers:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_ne!(answers[0], json!([]), "{path} says something");
    }
    let printed: Vec<String> = nodes
        .iter()
        .map(|n| {
            let out = std::process::Command::new(tests::procs::bin("hub"))
                .args(["status", "--hub-url", &format!("http://{}", n.addr)])
                .env("HUB_TOKEN", tests::procs::ADMIN)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        })
        .collect();
    assert!(printed.iter().all(|p| *p == printed[0]), "{printed:#?}");
    assert!(printed[0].contains("Closing"), "{}", printed[0]);
}
