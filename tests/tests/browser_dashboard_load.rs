//! How long the HQ dashboard takes to load at 1,000 stores, in headless
//! Chromium, against the real `hub` binary: a measurement for
//! BENCHMARKS.md, not a timed test (it asserts only that the page loads
//! and pages the stores). Ignored by default; run it with
//!
//! ```text
//! cargo test -p tests --test browser_dashboard_load -- --ignored --nocapture
//! ```
//!
//! 1,000 stores in 10 store groups, each with one list dated today with a
//! task already past due; no terminal connects (every store is "never
//! synced"). `tests/js/dashboard_load.mjs` signs in once, then times
//! five loads of the page with the session until it has drawn.

use std::time::Duration;

use serde_json::{json, Value};
use tests::browser::{chromium, node_ready, root};
use tests::procs;

const STORES: usize = 1_000;
const PASSWORD: &str = "a long load-test password";

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
    for chunk in ids.chunks(100) {
        post(
            "/lists",
            json!({"stores": chunk, "name": "Opening", "date": today,
                   "tasks": [{"title": "Unlock", "due": "00:00"}, {"title": "Count the float"}]}),
        )
        .await;
    }
    post(
        "/users",
        json!({"id": "anna", "role": "viewer", "password": PASSWORD}),
    )
    .await;

    let out = tokio::process::Command::new("node")
        .arg(root().join("tests/js/dashboard_load.mjs"))
        .arg(format!("http://{}", hub.addr))
        .arg("anna")
        .arg(PASSWORD)
        .arg("5")
        .env("CHROMIUM", &chromium)
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
    assert_eq!(report["stores_page"], "1–50 of 1000 · page 1 of 20");
}
