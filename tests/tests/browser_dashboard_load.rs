//! How long the HQ dashboard takes to load at 1,000 stores, in headless
//! Chromium, against the real `hub` binary: a measurement for
//! BENCHMARKS.md, not a timed test (it asserts only that the page loads
//! and pages the stores). Ignored by default; run it with
//!
//! ```text
//! cargo test -p tests --test browser_dashboard_load -- --ignored --nocapture
//! ```
//!
//! 1,000 stores (in Tokyo) in 10 store groups, each with an opening list
//! dated today (UTC) due at 23:59, not yet due before 15:00 UTC. So that the
//! roll-up by store group differs from group to group, group g's first 3g
//! stores also have a delivery past due, and two stores of each group have
//! a terminal (an in-process agent) that completed its opening list on
//! time; the other stores never synced.
//! `tests/js/dashboard_load.mjs` signs in once, then times five loads of
//! the page with the session until it has drawn (the roll-up, the stores,
//! past due by list, the grid). It also takes screenshots of the roll-up
//! and its drill-downs: to `docs/` with `UPDATE_SCREENSHOTS=1`
//! (`docs/dashboard-rollup*.png`, `docs/dashboard-past-due-by-list.png`),
//! else to the target's tmp directory.

#[path = "common/till.rs"]
mod till;

use std::path::Path;
use std::time::Duration;

use engine::ids::DocumentId;
use engine::model::Status;
use serde_json::{json, Value};
use tests::browser::{chromium, node_ready, root};
use tests::procs;
use till::Till;

const STORES: usize = 1_000;
const PASSWORD: &str = "a long load-test password";
/// Stores of each group with a terminal that did its opening list.
const DONE_PER_GROUP: usize = 2;

/// A terminal of `store`, online with the hub at `hub`, that completed
/// every task of `doc` once it had the list (and the hub has that).
async fn complete_list(dir: &Path, hub: &str, api: &str, store: &str, doc: DocumentId) -> Till {
    let token = procs::post(format!("{api}/stores/{store}/tokens"), json!({})).await["token"]
        .as_str()
        .expect("a store token")
        .to_owned();
    let url = format!("{api}/stores/{store}/workers/w-1");
    let r = reqwest::Client::new()
        .put(&url)
        .bearer_auth(procs::ADMIN)
        .json(&json!({"name": "Mia Berg", "role": "cashier"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
    assert!(r.status().is_success(), "PUT {url}: {}", r.status());
    let mut till = Till::open(&dir.join(store), store, "pos-1");
    till.go_online(hub, &token);
    for task in till.has_tasks(doc, 2).await {
        till.record(doc, task, Status::Completed, "w-1", None).await;
    }
    let api = api.to_owned();
    let store = store.to_owned();
    procs::wait_for(
        "the completions at the hub",
        Duration::from_secs(60),
        async || {
            let rows = procs::get(format!("{api}/status/lists?store={store}")).await?;
            let done: u64 = rows
                .as_array()?
                .iter()
                .map(|r| r["completed"].as_u64().unwrap_or(0))
                .sum();
            (done == 2).then_some(())
        },
    )
    .await;
    till
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn the_dashboard_loads_at_1000_stores() {
    let Some(chromium) = chromium("dashboard load") else {
        return;
    };
    node_ready("dashboard load");
    let dir = tempfile::tempdir().unwrap();
    let hub = procs::start_hub(&dir.path().join("hub"), "127.0.0.1:0");
    let api = format!("http://{}/api", hub.addr);
    let post = |path: &str, body: Value| procs::post(format!("{api}{path}"), body);
    let ids: Vec<String> = (0..STORES).map(|i| format!("store-{i:04}")).collect();
    for id in &ids {
        post(
            "/stores",
            json!({"id": id, "name": format!("Store {id}"), "time_zone": "Asia/Tokyo"}),
        )
        .await;
    }
    for (g, chunk) in ids.chunks(STORES / 10).enumerate() {
        post(
            &format!("/store-groups/region-{g}/stores"),
            json!({ "stores": chunk }),
        )
        .await;
    }
    let today = procs::noon_zone_today();
    let mut opening: Vec<(String, DocumentId)> = Vec::new();
    for chunk in ids.chunks(100) {
        let v = post(
            "/lists",
            json!({"stores": chunk, "name": "Opening", "date": today,
                   "tasks": [{"title": "Unlock", "due": "23:59"}, {"title": "Count the float"}]}),
        )
        .await;
        for l in v["lists"].as_array().unwrap() {
            let doc = l["id"].as_str().unwrap().parse().unwrap();
            opening.push((l["store"].as_str().unwrap().to_owned(), doc));
        }
    }
    for (g, chunk) in ids.chunks(STORES / 10).enumerate() {
        if g == 0 {
            continue;
        }
        post(
            "/lists",
            json!({"stores": &chunk[DONE_PER_GROUP..DONE_PER_GROUP + 3 * g], "name": "Delivery",
                   "date": today, "tasks": [{"title": "Take the delivery", "due": "00:00"}]}),
        )
        .await;
    }
    let terminals = tempfile::tempdir().unwrap();
    let mut online = Vec::new();
    for chunk in opening.chunks(STORES / 10) {
        for (store, doc) in &chunk[..DONE_PER_GROUP] {
            online.push(complete_list(terminals.path(), &hub.addr, &api, store, *doc).await);
        }
    }
    post(
        "/users",
        json!({"id": "anna", "role": "viewer", "password": PASSWORD}),
    )
    .await;

    let shots = match std::env::var("UPDATE_SCREENSHOTS") {
        Ok(v) if v == "1" => root().join("docs"),
        _ => Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf(),
    };
    let out = tokio::process::Command::new("node")
        .arg(root().join("tests/js/dashboard_load.mjs"))
        .arg(format!("http://{}", hub.addr))
        .arg("anna")
        .arg(PASSWORD)
        .arg("5")
        .arg(&shots)
        .env("CHROMIUM", &chromium)
        .env("TZ", "UTC")
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), out)
        .await
        .expect("dashboard_load.mjs finished within ten minutes")
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no JSON report from dashboard_load.mjs:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("dashboard load at {STORES} stores: {report}");
    assert!(
        report.get("failed").is_none(),
        "dashboard_load.mjs failed: {report:#}"
    );
    assert_eq!(report["stores_rows"], 50, "one page of stores: {report}");
    assert_eq!(report["rollup_groups"], 10, "{report}");
    eprintln!("screenshots in {}", shots.display());
    drop(online);
    assert_eq!(report["stores_page"], "1–50 of 1000 · page 1 of 20");
}
