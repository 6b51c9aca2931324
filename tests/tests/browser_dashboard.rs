//! The HQ dashboard in headless Chromium, against the real `hub` binary.
//!
//! The hub runs as a process; two terminals of store-042 (in-process
//! pos-agent replicas and sync clients, so the test records status without
//! the terminal's sign-in) sync with it. One list gets a completed task, a
//! past-due task and a conflict (one terminal offline disagrees with the
//! other); a second store never connects. `tests/js/dashboard.mjs` then
//! drives the page in Debian's `chromium` through playwright-core and prints
//! what it saw; this test checks it.
//!
//! Needs Node 20+, `tests/js/node_modules` (`npm ci` runs when missing) and
//! `/usr/bin/chromium` (or `CHROMIUM=...`). Without Chromium the test fails
//! when `CI=true` and is skipped with a notice otherwise. Screenshots of the
//! board and of the drill-down go to `target/tmp/`; with
//! `UPDATE_SCREENSHOT=1` the board's replaces `docs/dashboard.png`.

#[path = "common/till.rs"]
mod till;

use std::path::Path;
use std::time::Duration;

use engine::ids::{DocumentId, TaskId};
use engine::model::Status;
use serde_json::{json, Value};
use tests::procs;
use till::Till;

const DEADLINE: Duration = Duration::from_secs(30);

use tests::browser::{chromium, node_ready, root};

async fn get(url: String) -> Value {
    procs::get(url.clone())
        .await
        .unwrap_or_else(|| panic!("GET {url} failed"))
}

async fn wait_for<T>(what: &str, f: impl AsyncFnMut() -> Option<T>) -> T {
    procs::wait_for(what, DEADLINE, f).await
}

/// Publish a one-off list; its id and task ids in order.
async fn publish(
    api: &str,
    store: &str,
    name: &str,
    date: &str,
    tasks: Value,
) -> (DocumentId, Vec<TaskId>) {
    let v = procs::post(
        format!("{api}/lists"),
        json!({"store": store, "name": name, "date": date, "tasks": tasks}),
    )
    .await;
    let id = v["id"].as_str().unwrap().to_owned();
    let doc = get(format!("{api}/documents/{id}")).await;
    let tasks = doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| TaskId(t["spec"]["id"].as_str().unwrap().parse().unwrap()))
        .collect();
    (id.parse().unwrap(), tasks)
}

const PASSWORD: &str = "anna's long password";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_stores_the_grid_past_due_and_a_drill_down() {
    let Some(chromium) = chromium("dashboard") else {
        return;
    };
    node_ready("dashboard");
    let dir = tempfile::tempdir().unwrap();
    let hub = procs::start_hub(&dir.path().join("hub"), "127.0.0.1:0");
    let api = format!("http://{}/api", hub.addr);
    let post = |path: &str, body: Value| procs::post(format!("{api}{path}"), body);
    post(
        "/stores",
        json!({"id": "store-042", "name": "Main Street", "time_zone": procs::noon_zone()}),
    )
    .await;
    post(
        "/stores",
        json!({"id": "store-007", "name": "Harbour Road", "time_zone": procs::noon_zone()}),
    )
    .await;
    // HQ signs in to an account; a viewer reads everything shown here.
    post(
        "/users",
        json!({"id": "anna", "role": "viewer", "password": PASSWORD}),
    )
    .await;
    // The list below assigns a task to w-1 (HQ names rostered workers
    // only), and w-1 and w-2 record status (the hub refuses a stranger's).
    // w-2 has a name of its own: histories show it (issue #23).
    procs::add_worker(&hub.addr, "w-1").await;
    procs::put_worker(
        &hub.addr,
        "w-2",
        json!({"name": "Bo Novak", "role": "cashier"}),
    )
    .await;
    let token = post("/stores/store-042/tokens", json!({"label": "tills"})).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let today = procs::noon_zone_today();
    let (closing, t) = publish(
        &api,
        "store-042",
        "Closing",
        &today,
        json!([{"title": "Count the till", "due": "00:00", "assignee": "worker:w-1"},
               {"title": "Lock the doors"},
               {"title": "Clean the coffee machine"}]),
    )
    .await;
    let (opening, o) = publish(
        &api,
        "store-042",
        "Opening",
        &today,
        json!([{"title": "Unlock"}, {"title": "Count the float"}]),
    )
    .await;
    publish(
        &api,
        "store-007",
        "Closing",
        &today,
        json!([{"title": "Count the till", "due": "23:59"}, {"title": "Lock the doors"}]),
    )
    .await;

    let mut pos1 = Till::open(dir.path(), "store-042", "pos-1");
    let mut pos2 = Till::open(dir.path(), "store-042", "pos-2");
    pos1.go_online(&hub.addr, &token);
    pos2.go_online(&hub.addr, &token);
    for till in [&pos1, &pos2] {
        till.has_tasks(closing, 3).await;
        till.has_tasks(opening, 2).await;
    }
    pos1.record(
        closing,
        t[1],
        Status::Completed,
        "w-1",
        Some("back door too"),
    )
    .await;
    pos1.record(opening, o[0], Status::Completed, "w-1", None)
        .await;
    pos1.record(
        opening,
        o[1],
        Status::Completed,
        "w-2",
        Some("float is 150.00"),
    )
    .await;
    // pos-2 goes offline and disagrees with what pos-1 records meanwhile.
    pos2.go_offline();
    pos1.record(closing, t[2], Status::Completed, "w-1", None)
        .await;
    let grid = |store: &'static str| {
        let api = api.clone();
        async move { get(format!("{api}/status/lists?store={store}")).await }
    };
    wait_for("pos-1's changes at the hub", async || {
        let rows = grid("store-042").await;
        let done: u64 = rows
            .as_array()?
            .iter()
            .map(|r| r["completed"].as_u64().unwrap_or(0))
            .sum();
        (done == 4).then_some(())
    })
    .await;
    pos2.record(closing, t[2], Status::InProgress, "w-2", Some("descaling"))
        .await;
    pos2.go_online(&hub.addr, &token);
    wait_for("the conflict at the hub", async || {
        let rows = grid("store-042").await;
        rows.as_array()?
            .iter()
            .any(|r| r["doc"] == json!(closing) && r["conflicts"] == 1)
            .then_some(())
    })
    .await;

    let screenshot = match std::env::var("UPDATE_SCREENSHOT") {
        Ok(v) if v == "1" => root().join("docs/dashboard.png"),
        _ => Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png"),
    };
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    let drill_shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-instance.png");
    let out = tokio::process::Command::new("node")
        .arg(root().join("tests/js/dashboard.mjs"))
        .arg(format!("http://{}", hub.addr))
        .arg("anna")
        .arg(PASSWORD)
        .arg(&today)
        .arg(&screenshot)
        .arg(&drill_shot)
        .env("CHROMIUM", &chromium)
        .env("TZ", "UTC")
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("dashboard.mjs finished within two minutes")
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report from dashboard.mjs:\n{stdout}\n{stderr}"));
    eprintln!(
        "screenshots: {} and {}",
        screenshot.display(),
        drill_shot.display()
    );
    assert!(
        out.status.success() && report.get("failed").is_none(),
        "dashboard.mjs failed: {report:#}\n{stderr}"
    );
    let r = &report;
    assert_eq!(
        r["errors"],
        json!([]),
        "no script errors, CSP violations or failed requests"
    );
    assert_eq!(r["unlabelled"], json!([]), "every control has a label");
    assert!(r["refused"].as_str().unwrap().contains("refused"), "{r:#}");
    // A session, not a pasted token (issue #23): an HttpOnly, SameSite=Strict cookie.
    assert_eq!(r["nothingReadable"], true, "{r:#}");
    assert_eq!(
        r["cookie"],
        json!([{"name": "hub_session", "httpOnly": true, "sameSite": "Strict"}])
    );
    assert_eq!(r["signedOut"], true, "{r:#}");

    // Stores: 042 online with both terminals and a last sync; 007 never synced.
    let stores = r["stores"].as_array().unwrap();
    let store = |id: &str| {
        stores
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {stores:?}"))
    };
    assert_eq!(store("store-042")["online"], true, "{stores:?}");
    assert!(store("store-042")["connection"]
        .as_str()
        .unwrap()
        .starts_with("Online"));
    assert!(
        store("store-042")["lastSync"]
            .as_str()
            .unwrap()
            .contains("ago")
            || store("store-042")["lastSync"]
                .as_str()
                .unwrap()
                .contains("just now"),
        "{stores:?}"
    );
    assert_eq!(store("store-007")["online"], false);
    assert_eq!(store("store-007")["lastSync"], "never");
    // Most troubled first (issue #23): never synced before online; the
    // last sync in the store's zone, the zone named; past due counted.
    let order: Vec<&str> = stores.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(order, ["store-007", "store-042"]);
    assert_eq!(store("store-007")["trouble"], "never synced");
    assert_eq!(store("store-042")["pastDue"], "1");
    let zone = procs::noon_zone();
    assert!(
        store("store-042")["lastSync"]
            .as_str()
            .unwrap()
            .contains(&format!("({zone})")),
        "{stores:?}"
    );
    assert_eq!(r["storesPage"], "1–2 of 2 · page 1 of 1");
    assert_eq!(r["searched"], json!(["store-007"]));

    // The grid: the counts of each list at each store.
    let cell = |list: &str, store: &str| {
        r["grid"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["list"] == list && c["store"] == store)
            .unwrap_or_else(|| panic!("no {list} / {store} cell in {:#}", r["grid"]))
            .clone()
    };
    let c = cell("Closing", "store-042");
    assert_eq!(
        (&c["not_started"], &c["past_due"], &c["conflicts"]),
        (&json!(1), &json!(1), &json!(1)),
        "{c}"
    );
    // The coffee machine shows whichever side of the conflict is latest.
    assert_eq!(
        c["completed"].as_u64().unwrap() + c["in_progress"].as_u64().unwrap(),
        2,
        "{c}"
    );
    let c = cell("Opening", "store-042");
    assert_eq!(
        (&c["completed"], &c["not_started"]),
        (&json!(2), &json!(0)),
        "{c}"
    );
    let c = cell("Closing", "store-007");
    assert_eq!(
        (&c["not_started"], &c["past_due"]),
        (&json!(2), &json!(0)),
        "{c}"
    );
    assert_eq!(r["columns"], json!(["List", "Harbour Road", "Main Street"]));

    // Past due: the till count, at Main Street, not started.
    let past_due = r["pastDue"].as_array().unwrap();
    assert_eq!(past_due.len(), 1, "{past_due:?}");
    assert_eq!(
        (
            &past_due[0]["title"],
            &past_due[0]["store"],
            &past_due[0]["status"]
        ),
        (
            &json!("Count the till"),
            &json!("Main Street"),
            &json!("Not started")
        )
    );

    // How late, in the words the terminal uses too (issue #24).
    let late = past_due[0]["late"].as_str().unwrap();
    assert!(
        (0..3 * 24 * 60).any(|m| engine::due::late_text(m) == late),
        "{late:?} is not engine::due::late_text's form"
    );

    // Drill-down into the list with the conflict.
    let d = &r["drill"];
    assert_eq!(
        (&d["open"], &d["title"], &d["doc"]),
        (&json!(true), &json!("Closing"), &json!(closing)),
        "{d:#}"
    );
    assert!(d["meta"].as_str().unwrap().contains("Main Street"), "{d:#}");
    let task = |title: &str| {
        d["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["title"] == title)
            .unwrap_or_else(|| panic!("no task {title} in {d:#}"))
            .clone()
    };
    let till = task("Count the till");
    assert_eq!(
        (&till["status"], &till["pastDue"], &till["history"]),
        (&json!("Not started"), &json!(true), &json!([]))
    );
    let doors = task("Lock the doors");
    assert_eq!(doors["status"], "Completed");
    assert_eq!(
        doors["history"],
        json!([{"status": "Completed", "worker": "w-1", "terminal": "pos-1", "note": "back door too"}])
    );
    let coffee = task("Clean the coffee machine");
    let sides = coffee["conflict"].as_array().unwrap();
    assert_eq!(sides.len(), 2, "{coffee:#}");
    assert!(
        sides
            .iter()
            .any(|s| s.as_str().unwrap().contains("Completed by w-1 on pos-1")),
        "{sides:?}"
    );
    assert!(
        sides.iter().any(|s| s
            .as_str()
            .unwrap()
            .contains("In progress by Bo Novak (w-2) on pos-2")
            && s.as_str().unwrap().contains("descaling")),
        "{sides:?}"
    );
    assert_eq!(coffee["history"].as_array().unwrap().len(), 2);

    assert_eq!(r["behindHiddenAtFirst"], true, "nothing is behind here");
    assert_eq!(
        r["behind"],
        "Catching up: changes to 37 lists are still being counted, so figures here may trail them for a moment.",
        "{r:#}"
    );
    assert_eq!(r["behindClears"], true);
    assert_eq!(d["closedWithEscape"], true);
    drop((pos1, pos2));
}
