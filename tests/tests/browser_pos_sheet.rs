//! Issue #24, items 4 and 5: the task sheet offers every action the
//! signed-in person may take (a manager assigns and reassigns there, a
//! worker does not see assigning); priority shows in words and orders
//! tasks within one due time; a task's `pos:<operation>` reaches the POS
//! host through the agent's `--pos-callback`, and an operation name that
//! is not sane is shown and refused.
//!
//! Headless Chromium against the real `hub` and `pos-agent` binaries
//! (`tests/js/pos_sheet.mjs`), with a tiny HTTP listener standing in for
//! the POS. Needs Node 20+, `tests/js/node_modules` (`npm ci` runs when
//! missing) and `/usr/bin/chromium` (or `CHROMIUM=...`); without Chromium
//! the test fails when `CI=true` and is skipped with a notice otherwise.

use std::time::Duration;

use serde_json::{json, Value};
use tests::browser::{chromium, node_ready, run_pos_script};
use tests::procs::{self, AgentArgs, STORE};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

const DEADLINE: Duration = Duration::from_secs(30);
const SCRIPT_DEADLINE: Duration = Duration::from_secs(120);

/// A POS host's listener: every JSON body POSTed to it goes to the
/// channel, and it answers 204.
async fn pos_host() -> (String, mpsc::UnboundedReceiver<Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/pos/operation", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = conn.into_split();
                let mut read = BufReader::new(read);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                if read.read_exact(&mut body).await.is_err() {
                    return;
                }
                let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
                let _ = write
                    .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sheet_assigns_for_a_manager_and_hands_pos_operations_to_the_host() {
    let Some(chromium) = chromium("POS task sheet") else {
        return;
    };
    node_ready("POS task sheet");
    let dir = tempfile::tempdir().unwrap();
    let hub = procs::start_hub(&dir.path().join("hub"), "127.0.0.1:0");
    let api = format!("http://{}/api", hub.addr);

    // HQ: the store, its roster with PINs, a token for its terminal.
    let token = procs::open_store(
        &hub.addr,
        json!({"id": STORE, "name": "Main Street", "time_zone": procs::noon_zone()}),
        &[
            ("w-1", "Ana Lopez", "cashier", &[], "1234"),
            ("w-2", "Bo Berg", "cashier", &[], "5678"),
            ("m-1", "Mia Chen", "manager", &[], "9999"),
        ],
        "sheet test",
    )
    .await;
    procs::post(
        format!("{api}/lists"),
        json!({"store": STORE, "name": "Closing", "date": procs::noon_zone_today(), "tasks": [
            {"title": "Mop the back room", "due": procs::noon_zone_in(-30),
             "assignee": "worker:w-2", "priority": "low"},
            {"title": "Restock carrier bags", "due": procs::noon_zone_in(20)},
            {"title": "Count the till", "due": procs::noon_zone_in(45), "assignee": "worker:w-1"},
            {"title": "Check the price labels", "due": procs::noon_zone_in(45),
             "priority": "high", "link": "pos:price-check"},
            {"title": "Fix the scale", "due": procs::noon_zone_in(90), "priority": "urgent",
             "link": "pos:Open Drawer/../all"},
        ]}),
    )
    .await;

    let (callback, mut handed) = pos_host().await;
    let data = dir.path().join("pos-1");
    let mut cmd = procs::agent_command(
        &data,
        &AgentArgs {
            hub: hub.addr.clone(),
            token,
            terminal: "pos-1".into(),
            http: "127.0.0.1:0".into(),
        },
    );
    cmd.args(["--pos-callback", &callback]);
    let pos1 = procs::spawn_listening(cmd, &procs::log_of(&data)).expect("starting the agent");
    let tasks = procs::wait_for("the terminal to receive the list", DEADLINE, async || {
        procs::agent_tasks(&pos1.addr)
            .await
            .filter(|t| t.len() == 5)
    })
    .await;
    // `/api/tasks` (and so `pos-agent tasks`) orders by due time, then the
    // more urgent first: the high-priority 45-minute task before Ana's
    // normal one, though it comes after it in the list.
    let titles: Vec<&str> = tasks.iter().map(|t| t["title"].as_str().unwrap()).collect();
    assert_eq!(
        titles,
        [
            "Mop the back room",
            "Restock carrier bags",
            "Check the price labels",
            "Count the till",
            "Fix the scale"
        ]
    );
    let id_of = |title: &str| {
        tasks.iter().find(|t| t["title"] == title).unwrap()["task"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    let (report, _) = run_pos_script(
        "pos_sheet.mjs",
        "pos-sheet",
        &pos1,
        &chromium,
        SCRIPT_DEADLINE,
    )
    .await;
    let seen = &report["seen"];

    // Ana's rows: priority in words (normal work unlabelled), due order,
    // the urgent one before her own at the same due time.
    assert_eq!(
        seen["worker_rows"],
        json!([
            {"title": "Restock carrier bags", "priority": null},
            {"title": "Check the price labels", "priority": "▲ High"},
            {"title": "Count the till", "priority": null},
            {"title": "Fix the scale", "priority": "‼ Urgent"},
        ])
    );
    // A worker's sheet: status actions, no assigning.
    assert_eq!(
        seen["worker_sheet_actions"],
        json!(["in_progress", "completed"])
    );
    assert_eq!(seen["worker_sheet_assign"], 0);
    assert_eq!(seen["worker_sheet_priority"], "Priority: ▲ High");

    // The operation's name is on the sheet, and the POS got it once, from
    // Ana at pos-1.
    assert_eq!(seen["operation_button"], "Open POS operation: price-check");
    assert_eq!(seen["operation_toast"], "Opened in the POS: price-check");
    let got = tokio::time::timeout(DEADLINE, handed.recv())
        .await
        .expect("the POS host heard in time")
        .expect("the listener runs");
    assert_eq!(
        got,
        json!({"type": "pos-operation", "operation": "price-check",
               "task": id_of("Check the price labels"), "title": "Check the price labels",
               "worker": "w-1", "terminal": "pos-1"})
    );
    assert!(handed.try_recv().is_err(), "handed over exactly once");

    // An operation name the POS must not get is shown and refused.
    assert_eq!(seen["refused_buttons"], 0);
    let refused = seen["refused_text"].as_str().unwrap();
    assert!(
        refused.contains("Open Drawer/../all") && refused.contains("a-z, 0-9"),
        "{refused}"
    );
    // Nor does the API hand it on when asked directly.
    let (_, session) = procs::try_post(
        &format!("http://{}/api/session", pos1.addr),
        &json!({"worker": "w-1", "pin": "1234"}),
        false,
    )
    .await
    .unwrap();
    let r = reqwest::Client::new()
        .post(format!(
            "http://{}/api/tasks/{}/pos-operation",
            pos1.addr,
            id_of("Fix the scale")
        ))
        .bearer_auth(session["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("not handed to the POS"),
        "{body}"
    );
    assert!(handed.try_recv().is_err(), "nothing more reached the POS");

    // Mia's sheet: assign, then reassign, without the Manager tab.
    assert_eq!(
        seen["manager_sheet_actions"],
        json!(["in_progress", "completed", "assign"])
    );
    assert_eq!(seen["assign_label"], "Assign");
    assert_eq!(seen["reassign_label"], "Reassign");
    assert_eq!(seen["reassign_current"], "worker:w-1");
    assert_eq!(seen["reassigned_row"], "Bo Berg");
    let restock = procs::agent_tasks(&pos1.addr)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t["title"] == "Restock carrier bags")
        .unwrap();
    assert_eq!(restock["assignee"], json!({"kind": "worker", "id": "w-2"}));
}
