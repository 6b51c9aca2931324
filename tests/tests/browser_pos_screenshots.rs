//! The POS screenshots in `docs/` (issue #24): the worker's home, the task
//! sheet and the manager's conflict alert, in English and in German,
//! taken by `tests/js/pos_screenshots.mjs` in headless Chromium against
//! the real `hub` and `pos-agent` binaries. This test builds the scene:
//! a closing list with a high-priority task linked to a POS operation, and
//! two conflicts (a status and an assignment) made on two terminals, one
//! of them offline.
//!
//! Screenshots go to `target/tmp/pos-screenshots/`; with
//! `UPDATE_SCREENSHOT=1` they replace the ones in `docs/`:
//!
//! ```sh
//! UPDATE_SCREENSHOT=1 cargo test -p tests --test browser_pos_screenshots
//! ```
//!
//! Needs Node 20+, `tests/js/node_modules` (`npm ci` runs when missing) and
//! `/usr/bin/chromium` (or `CHROMIUM=...`); without Chromium the test fails
//! when `CI=true` and is skipped with a notice otherwise.

use std::time::Duration;

use serde_json::json;
use tests::browser::{chromium, node_ready, root, run_pos_script};
use tests::procs::{self, AgentArgs, STORE};

const DEADLINE: Duration = Duration::from_secs(30);
const SCRIPT_DEADLINE: Duration = Duration::from_secs(180);
const SHOTS: [&str; 6] = [
    "pos-en-home.png",
    "pos-de-home.png",
    "pos-task-sheet.png",
    "pos-manager-conflict.png",
    "pos-de-task-sheet.png",
    "pos-de-manager-conflict.png",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_of_the_pos_in_english_and_german() {
    let Some(chromium) = chromium("POS screenshots") else {
        return;
    };
    node_ready("POS screenshots");
    let dir = tempfile::tempdir().unwrap();
    let hub = procs::start_hub(&dir.path().join("hub"), "127.0.0.1:0");
    let api = format!("http://{}/api", hub.addr);
    // HQ: the store, its roster with PINs, a token for its terminal.
    let token = procs::open_store(
        &hub.addr,
        json!({"id": STORE, "name": "Main Street", "time_zone": procs::noon_zone(), "locale": "en-GB"}),
        &[
        ("w-1", "Ana Lopez", "cashier", &["closers"], "1234"),
        ("w-2", "Bo Berg", "cashier", &["closers"], "5678"),
        ("m-1", "Mia Chen", "manager", &["closers"], "9999"),
        ],
        "screenshots",
    )
    .await;
    procs::post(
        format!("{api}/lists"),
        json!({"store": STORE, "name": "Closing", "date": procs::noon_zone_today(), "tasks": [
            {"title": "Check the cold chain log", "due": procs::noon_zone_in(-285)},
            {"title": "Restock carrier bags", "due": procs::noon_zone_in(20), "assignee": "group:closers"},
            {"title": "Check the price labels", "due": procs::noon_zone_in(45), "priority": "high",
             "link": "pos:price-check",
             "description": "Aisle 3 changed prices this morning: check every shelf label against the till."},
            {"title": "Count the till", "due": procs::noon_zone_in(45), "assignee": "worker:w-1",
             "link": "pos:tender-declaration"},
            {"title": "Switch off the oven", "due": procs::noon_zone_in(90), "priority": "urgent"},
        ]}),
    )
    .await;
    let args = |terminal: &str| AgentArgs {
        hub: hub.addr.clone(),
        token: token.clone(),
        terminal: terminal.into(),
        http: "127.0.0.1:0".into(),
    };
    let pos1 = procs::start_agent(&dir.path().join("pos-1"), &args("pos-1"));
    let pos2_data = dir.path().join("pos-2");
    let pos2 = procs::start_agent(&pos2_data, &args("pos-2"));
    for a in [&pos1, &pos2] {
        procs::wait_for("each terminal to receive the list", DEADLINE, async || {
            procs::agent_tasks(&a.addr).await.filter(|t| t.len() == 5)
        })
        .await;
    }
    // Bo starts the till count and takes the bags on pos-2, offline; Ana
    // completes the till count and takes the bags on pos-1.
    pos2.kill();
    let pos2 = procs::start_agent_offline(&pos2_data, &args("pos-2"));
    let till = procs::task_id(&pos1.addr, "Count the till").await;
    let bags = procs::task_id(&pos1.addr, "Restock carrier bags").await;
    for (agent, path, body) in [
        (
            &pos2.addr,
            format!("/api/tasks/{till}/status"),
            json!({"status": "in_progress", "worker": "w-2"}),
        ),
        (
            &pos2.addr,
            format!("/api/tasks/{bags}/claim"),
            json!({"worker": "w-2"}),
        ),
        (
            &pos1.addr,
            format!("/api/tasks/{till}/status"),
            json!({"status": "completed", "worker": "w-1", "note": "till balanced"}),
        ),
        (
            &pos1.addr,
            format!("/api/tasks/{bags}/claim"),
            json!({"worker": "w-1"}),
        ),
    ] {
        procs::agent_post_ok(agent, &path, body).await;
    }
    pos2.kill();
    let pos2 = procs::start_agent(&pos2_data, &args("pos-2"));
    procs::wait_for("pos-1 to see both conflicts", DEADLINE, async || {
        procs::agent_tasks(&pos1.addr).await.filter(|t| {
            t.iter()
                .any(|t| t["title"] == "Count the till" && t["conflict"] == true)
                && t.iter().any(|t| {
                    t["title"] == "Restock carrier bags"
                        && t["assignee_conflict"]
                            .as_array()
                            .is_some_and(|a| a.len() == 2)
                })
        })
    })
    .await;
    drop(pos2);

    let (report, shots) = run_pos_script(
        "pos_screenshots.mjs",
        "pos-screenshots",
        &pos1,
        &chromium,
        SCRIPT_DEADLINE,
    )
    .await;
    assert_eq!(report["seen"]["shots"], json!(SHOTS));
    if std::env::var("UPDATE_SCREENSHOT").is_ok_and(|v| v == "1") {
        for name in SHOTS {
            std::fs::copy(shots.join(name), root().join("docs").join(name))
                .unwrap_or_else(|e| panic!("copying {name} to docs/: {e}"));
        }
    }
}
