//! The POS terminal's web UI in headless Chromium, against the real `hub`
//! and `pos-agent` binaries.
//!
//! HQ adds store-042, three workers with PINs and today's closing list
//! through the hub's admin API; two terminals (pos-1, whose UI the browser
//! drives, and pos-2) receive it. `tests/js/pos.mjs` signs Ana in on the
//! keypad; the hub is stopped; she completes a task (the UI shows offline
//! and one change waiting) and takes a group task, while on pos-2 Bo
//! starts the same task and Mia takes the same group task, also offline.
//! The hub comes back: the UI shows every change confirmed, the hub holds
//! Ana's completion with her name, terminal and note, and Mia, signed in
//! as manager, sees both conflicts and adds a task.
//!
//! Needs Node 20+, `tests/js/node_modules` (`npm ci` runs when missing) and
//! `/usr/bin/chromium` (or `CHROMIUM=...`). Without Chromium the test fails
//! when `CI=true` and is skipped with a notice otherwise. Screenshots go to
//! `target/tmp/`; with `UPDATE_SCREENSHOT=1` they replace
//! `docs/pos-worker.png` and `docs/pos-manager.png`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tests::procs::{self, AgentArgs, STORE};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const DEADLINE: Duration = Duration::from_secs(30);
/// The whole browser run: two reconnects with backoff fit in it.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(240);

use tests::browser::{chromium, node_ready, root};

/// POST to an agent's local API; the status and body.
async fn agent_post(agent: &str, path: &str, body: Value) -> (u16, Value) {
    procs::try_post(&format!("http://{agent}{path}"), &body, false)
        .await
        .unwrap_or_else(|e| panic!("POST {path} on {agent}: {e}"))
}

async fn sync_status(agent: &str) -> Option<Value> {
    procs::agent_get(format!("http://{agent}/api/sync-status")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_completes_a_task_offline_in_the_browser_and_sees_it_confirmed() {
    let Some(chromium) = chromium("POS") else {
        return;
    };
    node_ready("POS");
    let dir = tempfile::tempdir().unwrap();
    let hub_data = dir.path().join("hub");
    let mut hub = Some(procs::start_hub(&hub_data, "127.0.0.1:0"));
    let hub_addr = hub.as_ref().unwrap().addr.clone();
    let api = format!("http://{hub_addr}/api");

    // HQ: the store, its roster with PINs, a token, today's closing list.
    // HQ: the store, its roster with PINs, a token for its terminal.
    let token = procs::open_store(
        &hub_addr,
        json!({"id": STORE, "name": "Main Street", "time_zone": procs::noon_zone()}),
        &[
            ("w-1", "Ana Lopez", "cashier", &["closers"], "1234"),
            ("w-2", "Bo Novak", "cashier", &[], "2345"),
            ("m-1", "Mia Chen", "manager", &["closers"], "9999"),
        ],
        "browser test",
    )
    .await;
    let today = procs::noon_zone_today();
    let list = procs::post(
        format!("{api}/lists"),
        json!({"store": STORE, "name": "Closing", "date": today, "tasks": [
            {"title": "Count the till", "due": procs::noon_zone_in(45), "assignee": "worker:w-1",
             "link": "pos:tender-declaration",
             "description": "Count notes and coins, declare the tender, put the surplus in the safe."},
            {"title": "Clean the coffee machine", "due": procs::noon_zone_in(-30), "assignee": "group:closers"},
            {"title": "Restock carrier bags", "due": procs::noon_zone_in(20), "assignee": "group:closers"},
            {"title": "Lock the back door", "due": procs::noon_zone_in(120), "assignee": "worker:w-2"},
            {"title": "Switch off the oven", "assignee": "group:closers"},
        ]}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let agent = |terminal: &str| AgentArgs {
        hub: hub_addr.clone(),
        token: token.clone(),
        terminal: terminal.into(),
        http: "127.0.0.1:0".into(),
    };
    let pos1 = procs::start_agent(&dir.path().join("pos-1"), &agent("pos-1"));
    let pos2 = procs::start_agent(&dir.path().join("pos-2"), &agent("pos-2"));
    for a in [&pos1, &pos2] {
        procs::wait_for("each terminal to receive the list", DEADLINE, async || {
            procs::agent_tasks(&a.addr).await.filter(|t| t.len() == 5)
        })
        .await;
    }
    let till = procs::task_id(&pos2.addr, "Count the till").await;
    let bags = procs::task_id(&pos2.addr, "Restock carrier bags").await;

    let shots = root().join("target/tmp");
    std::fs::create_dir_all(&shots).unwrap();
    let (worker_shot, manager_shot) = (shots.join("pos-worker.png"), shots.join("pos-manager.png"));
    let mut script = tokio::process::Command::new("node")
        .arg(root().join("tests/js/pos.mjs"))
        .arg(format!("http://{}", pos1.addr))
        .arg(&worker_shot)
        .arg(&manager_shot)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running node tests/js/pos.mjs");
    let mut to_script = script.stdin.take().unwrap();
    let mut from_script = BufReader::new(script.stdout.take().unwrap()).lines();
    let mut result = None;
    let run = async {
        while let Some(line) = from_script.next_line().await.unwrap() {
            match line.trim() {
                "STEP stop-hub" => {
                    hub.take().unwrap().kill();
                    // Meanwhile at pos-2, also offline: Bo starts the task
                    // Ana is about to complete, Mia takes the group task
                    // Ana is about to take.
                    procs::wait_for("pos-2 to notice the hub is gone", DEADLINE, async || {
                        sync_status(&pos2.addr)
                            .await
                            .filter(|s| s["online"] == false)
                    })
                    .await;
                    let (s, v) = agent_post(
                        &pos2.addr,
                        &format!("/api/tasks/{till}/status"),
                        json!({"status": "in_progress", "worker": "w-2"}),
                    )
                    .await;
                    assert_eq!(s, 201, "{v}");
                    let (s, v) = agent_post(
                        &pos2.addr,
                        &format!("/api/tasks/{bags}/claim"),
                        json!({"worker": "m-1"}),
                    )
                    .await;
                    assert_eq!(s, 200, "{v}");
                    to_script.write_all(b"go\n").await.unwrap();
                }
                "STEP start-hub" => {
                    hub = Some(procs::start_hub(&hub_data, &hub_addr));
                    // pos-2's changes reach the hub (and pos-1) too.
                    procs::wait_for(
                        "pos-2 to be confirmed",
                        Duration::from_secs(90),
                        async || {
                            sync_status(&pos2.addr)
                                .await
                                .filter(|s| s["online"] == true && s["unconfirmed_changes"] == 0)
                        },
                    )
                    .await;
                    to_script.write_all(b"go\n").await.unwrap();
                }
                l if l.starts_with("RESULT ") => {
                    result = Some(serde_json::from_str::<Value>(&l["RESULT ".len()..]).unwrap());
                }
                other => eprintln!("pos.mjs: {other}"),
            }
        }
    };
    tokio::time::timeout(SCRIPT_DEADLINE, run)
        .await
        .expect("the browser script finished in time");
    let status = script.wait().await.unwrap();
    let report = result.expect("the script printed its RESULT");
    assert!(
        status.success() && report["errors"] == json!([]),
        "{status}: {report:#}\npos-1 log:\n{}",
        pos1.log_tail()
    );
    let seen = &report["seen"];
    assert_eq!(seen["wrong_pin_refused"], true);
    assert!(
        seen["signed_in_as"].as_str().unwrap().contains("Ana Lopez"),
        "{seen}"
    );
    let mine: Vec<&str> = seen["my_tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        mine.contains(&"Count the till") && !mine.contains(&"Lock the back door"),
        "{mine:?}"
    );
    assert!(
        seen["offline_text"]
            .as_str()
            .unwrap()
            .starts_with("Offline"),
        "{seen}"
    );
    assert!(
        seen["offline_after_complete"]
            .as_str()
            .unwrap()
            .contains("1 change waiting"),
        "{seen}"
    );
    assert_eq!(
        seen["detail_link"],
        "Open POS operation: tender-declaration"
    );
    assert!(seen["online_after_restart"]
        .as_str()
        .unwrap()
        .contains("all changes confirmed"));
    let conflicts: Vec<&str> = seen["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        conflicts.contains(&"Count the till") && conflicts.contains(&"Restock carrier bags"),
        "{conflicts:?}"
    );

    // HQ has Ana's completion with who, where and her note, both sides
    // of each conflict, and the task Mia added at the POS.
    let view = procs::wait_for("the hub to hold every change", DEADLINE, async || {
        procs::get(format!("{api}/documents/{list}"))
            .await
            .filter(|v| v["tasks"].as_array().is_some_and(|t| t.len() == 6))
    })
    .await;
    let task = |title: &str| {
        view["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["spec"]["title"] == title)
            .unwrap_or_else(|| panic!("no {title:?} at the hub: {view}"))
            .clone()
    };
    let t = task("Count the till");
    let done = t["status"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == "completed")
        .unwrap_or_else(|| panic!("no completion at the hub: {t}"));
    assert_eq!(
        (&done["worker"], &done["terminal"], &done["note"]),
        (
            &json!("w-1"),
            &json!("pos-1"),
            &json!("Till balanced, 2 x 50 in the safe")
        )
    );
    assert_eq!(t["status"]["conflict"].as_array().unwrap().len(), 2, "{t}");
    assert_eq!(
        task("Restock carrier bags")["assignee_conflict"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let added = task("Check the price of oat milk");
    assert_eq!(
        added["spec"]["created_by"],
        json!({"kind": "store", "store": STORE})
    );

    if std::env::var("UPDATE_SCREENSHOT").is_ok_and(|v| v == "1") {
        for (from, name) in [
            (&worker_shot, "pos-worker.png"),
            (&manager_shot, "pos-manager.png"),
        ] {
            std::fs::copy(from, root().join("docs").join(name)).unwrap();
        }
    }
}
