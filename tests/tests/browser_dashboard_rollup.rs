//! The HQ dashboard's roll-up by store group, past due by list and
//! authoring (issue #23) in headless Chromium, against the real `hub`
//! binary, with one store's terminal (in-process) completing a task on
//! time. `tests/js/dashboard_rollup.mjs` drives the page and prints what
//! it saw; this test sets up the hub and checks it. Needs what
//! `browser_dashboard.rs` needs (Node 20+, Chromium).

#[path = "common/till.rs"]
mod till;

use std::time::Duration;

use engine::ids::DocumentId;
use engine::model::Status;
use serde_json::{json, Value};
use tests::browser::{chromium, node_ready, root};
use tests::procs;
use till::Till;

const PASSWORD: &str = "a long enough password";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_drills_down_the_roll_up_and_authors_a_recurring_list_for_a_group() {
    let Some(chromium) = chromium("dashboard roll-up") else {
        return;
    };
    node_ready("dashboard roll-up");
    let dir = tempfile::tempdir().unwrap();
    let hub = procs::start_hub(&dir.path().join("hub"), "127.0.0.1:0");
    let api = format!("http://{}/api", hub.addr);
    let post = |path: &str, body: Value| procs::post(format!("{api}{path}"), body);
    // Today's lists in a zone where it is about noon: due at 00:00, past due.
    let zone = procs::noon_zone();
    let today = procs::noon_zone_today();
    for (id, name, tz) in [
        ("n1", "North One", zone),
        ("n2", "North Two", zone),
        ("s1", "South One", zone),
        ("t1", "Tokyo Ginza", "Asia/Tokyo"),
    ] {
        post("/stores", json!({"id": id, "name": name, "time_zone": tz})).await;
    }
    post(
        "/store-groups/region-north/stores",
        json!({"stores": ["n1", "n2", "t1"]}),
    )
    .await;
    post(
        "/store-groups/region-south/stores",
        json!({"stores": ["s1"]}),
    )
    .await;
    let opening = post(
        "/lists",
        json!({"stores": ["n1", "n2"], "name": "Opening", "date": today,
               "tasks": [{"title": "Unlock", "due": "00:00"}, {"title": "Count the float"}]}),
    )
    .await;
    let n1_opening: DocumentId = opening["lists"][0]["id"].as_str().unwrap().parse().unwrap();
    // n1's terminal counts the float (no due time: on time); Unlock stays
    // past due.
    let token = post("/stores/n1/tokens", json!({})).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("{api}/stores/n1/workers/w-1");
    let r = reqwest::Client::new()
        .put(&url)
        .bearer_auth(procs::ADMIN)
        .json(&json!({"name": "Mia Berg", "role": "cashier"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "PUT {url}: {}", r.status());
    let mut till = Till::open(dir.path(), "n1", "pos-1");
    till.go_online(&hub.addr, &token);
    let tasks = till.has_tasks(n1_opening, 2).await;
    till.record(n1_opening, tasks[1], Status::Completed, "w-1", None)
        .await;
    procs::wait_for(
        "the float counted at the hub",
        Duration::from_secs(30),
        async || {
            let rows = procs::get(format!("{api}/status/lists?store=n1")).await?;
            rows.as_array()?
                .iter()
                .any(|r| r["completed"] == 1)
                .then_some(())
        },
    )
    .await;
    post(
        "/lists",
        json!({"store": "n1", "name": "Cleaning", "date": today,
               "tasks": [{"title": "Mop", "due": "00:00"}]}),
    )
    .await;
    // Long past due in Tokyo: 07:00 there, named so.
    post(
        "/lists",
        json!({"store": "t1", "name": "Delivery", "date": "2026-01-05",
               "tasks": [{"title": "Take the delivery", "due": "07:00"}]}),
    )
    .await;
    for (id, role) in [("eve", "editor"), ("val", "viewer")] {
        post(
            "/users",
            json!({"id": id, "role": role, "password": PASSWORD}),
        )
        .await;
    }

    let out = tokio::process::Command::new("node")
        .arg(root().join("tests/js/dashboard_rollup.mjs"))
        .arg(format!("http://{}", hub.addr))
        .args(["eve", "val", PASSWORD, &today])
        .env("CHROMIUM", &chromium)
        .env("TZ", "UTC")
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), out)
        .await
        .expect("dashboard_rollup.mjs finished within three minutes")
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no JSON report from dashboard_rollup.mjs:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let r = &report;
    assert!(r.get("failed").is_none(), "the script failed: {r:#}");
    assert_eq!(r["errors"], json!([]), "{r:#}");

    // The roll-up: region-north is behind (1 of 4 tasks due or done was
    // done on time, 3 past due); region-south has nothing due yet.
    assert_eq!(
        r["groups"],
        json!([
            {"key": "region-north", "name": "region-north", "share": "25", "pastDue": "3"},
            {"key": "region-south", "name": "region-south", "share": "", "pastDue": "0"},
        ]),
        "{r:#}"
    );
    assert_eq!(
        r["head"],
        json!([
            "Store group",
            "Stores",
            "Completed on time",
            "Past due",
            "Conflicts",
            "Tasks"
        ])
    );
    // Drilled down: the group's stores, most behind first, then n1's lists.
    let stores: Vec<(&str, &str, &str)> = r["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["key"].as_str().unwrap(),
                s["share"].as_str().unwrap(),
                s["pastDue"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        stores,
        [("n2", "0", "1"), ("n1", "33", "2"), ("t1", "", "0")],
        "the lowest share on time first; nothing due yet last: {r:#}"
    );
    assert_eq!(r["crumbsAtStores"], "All store groups › region-north");
    assert_eq!(
        r["crumbsAtLists"],
        "All store groups › region-north › North One"
    );
    let lists: Vec<(&str, &str)> = r["lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["key"].as_str().unwrap(), l["share"].as_str().unwrap()))
        .collect();
    assert_eq!(lists, [("Cleaning", "0"), ("Opening", "50")], "{r:#}");
    assert_eq!(r["backAtGroups"], 2);
    let link = r["reportLink"].as_str().unwrap();
    assert!(
        link.starts_with("api/report?from=") && link.contains("&by=store&format=csv"),
        "{link}"
    );

    // Past due by list, and Delivery's store with its time in its zone.
    assert_eq!(
        r["pastDueLists"],
        json!([
            {"list": "Opening", "tasks": "2", "stores": "2"},
            {"list": "Delivery", "tasks": "1", "stores": "1"},
            {"list": "Cleaning", "tasks": "1", "stores": "1"},
        ]),
        "the most past due first, then the oldest: {r:#}"
    );
    assert_eq!(
        r["delivery"],
        json!([{"store": "t1", "due": "2026-01-05 07:00 JST (Asia/Tokyo)"}])
    );

    // Authoring, every write with the session's CSRF token.
    assert_eq!(r["authoringShown"], true);
    assert!(
        r["created"]
            .as_str()
            .unwrap()
            .starts_with("Saved “Daily count”"),
        "{r:#}"
    );
    assert!(
        r["published"].as_str().unwrap().contains("to 1 store"),
        "{r:#}"
    );
    let writes = r["writes"].as_array().unwrap();
    let paths: Vec<&str> = writes.iter().map(|w| w["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        ["/api/templates", "/api/templates", "/api/lists"],
        "{r:#}"
    );
    assert!(writes.iter().all(|w| w["csrf"] == true), "{r:#}");
    assert_eq!(r["viewerSeesAuthoring"], false);
    assert_eq!(r["viewerSeesRollup"], 2);

    // The recurring list reached region-south's store, not region-north's;
    // the one-off list reached n2.
    let names = |store: &'static str| {
        let api = api.clone();
        async move {
            let rows = procs::get(format!("{api}/status/lists?store={store}")).await?;
            Some(
                rows.as_array()?
                    .iter()
                    .filter_map(|r| r["list"].as_str().map(str::to_owned))
                    .collect::<Vec<_>>(),
            )
        }
    };
    procs::wait_for(
        "the recurring list at region-south's store",
        Duration::from_secs(30),
        async || {
            names("s1")
                .await?
                .contains(&"Daily count".to_owned())
                .then_some(())
        },
    )
    .await;
    let north = names("n1").await.unwrap();
    assert!(!north.contains(&"Daily count".to_owned()), "{north:?}");
    let n2 = names("n2").await.unwrap();
    assert!(n2.contains(&"Stock take".to_owned()), "{n2:?}");
    let (_, templates) = (0, procs::get(format!("{api}/templates")).await.unwrap());
    let t = &templates[0]["template"];
    assert_eq!(t["revision"], 2);
    assert_eq!(t["tasks"].as_array().unwrap().len(), 3);
    assert_eq!(t["tasks"][0]["due"], json!({"at": "07:00:00"}));
}
