//! Issue #22, item 4: the sync indicator says what is happening on the
//! store LAN. With the hub stopped and two peers up, the POS page shows
//! "HQ offline, 2 terminals on the store network", in the store's German
//! before anyone signs in and in English once a worker picks it.
//!
//! Headless Chromium against the real `hub` and `pos-agent` binaries
//! (`tests/js/pos_lan.mjs`). Needs Node 20+, `tests/js/node_modules`
//! (`npm ci` runs when missing) and `/usr/bin/chromium` (or `CHROMIUM=...`);
//! without Chromium the test fails when `CI=true` and is skipped with a
//! notice otherwise.

use std::time::Duration;

use serde_json::json;
use tests::browser::{chromium, node_ready, run_pos_script};
use tests::procs::{self, AgentArgs, ADMIN, STORE};

const DEADLINE: Duration = Duration::from_secs(30);
const SCRIPT_DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_hub_down_the_pos_shows_hq_offline_and_its_lan_peers() {
    let Some(chromium) = chromium("POS on the store LAN") else {
        return;
    };
    node_ready("POS on the store LAN");
    let dir = tempfile::tempdir().unwrap();
    let hub = procs::start_hub(&dir.path().join("hub"), "127.0.0.1:0");
    let token = procs::open_store(
        &hub.addr,
        json!({"id": STORE, "name": "Hauptstraße", "time_zone": procs::noon_zone()}),
        &[("w-1", "Ana Lopez", "cashier", &[], "1234")],
        "lan browser test",
    )
    .await;
    let r = reqwest::Client::new()
        .patch(format!("http://{}/api/stores/{STORE}", hub.addr))
        .bearer_auth(ADMIN)
        .json(&json!({"locale": "de-DE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    procs::post(
        format!("http://{}/api/lists", hub.addr),
        json!({"store": STORE, "name": "Ladenschluss", "date": procs::noon_zone_today(),
               "tasks": [{"title": "Kasse zählen"}]}),
    )
    .await;
    // Three terminals, each dialing the ones after it.
    let ports: Vec<u16> = (0..3).map(|_| procs::free_port()).collect();
    let agents: Vec<procs::Proc> = (0..3)
        .map(|i| {
            procs::start_peer_agent(
                &dir.path().join(format!("pos-{}", i + 1)),
                &AgentArgs {
                    hub: hub.addr.clone(),
                    token: token.clone(),
                    terminal: format!("pos-{}", i + 1),
                    http: "127.0.0.1:0".into(),
                },
                ports[i],
                &ports[i + 1..],
            )
        })
        .collect();
    for a in &agents {
        procs::wait_for(
            "every terminal to hold the list, the roster and the locale",
            DEADLINE,
            async || {
                let tasks = procs::agent_tasks(&a.addr).await?;
                let store = procs::agent_get(format!("http://{}/api/store", a.addr)).await?;
                (tasks.len() == 1 && store["locale"] == "de-DE").then_some(())
            },
        )
        .await;
    }
    drop(hub);
    let pos1 = &agents[0];
    procs::wait_for("pos-1 offline with two peers", DEADLINE, async || {
        let s = procs::agent_get(format!("http://{}/api/sync-status", pos1.addr)).await?;
        (s["online"] == false && s["lan_peers"] == 2).then_some(())
    })
    .await;

    let (report, shots) =
        run_pos_script("pos_lan.mjs", "pos-lan", pos1, &chromium, SCRIPT_DEADLINE).await;
    let seen = &report["seen"];
    assert!(
        seen["german"]
            .as_str()
            .unwrap()
            .starts_with("Zentrale offline, 2 Kassen im Filialnetz · letzter Abgleich"),
        "{seen:#}"
    );
    assert!(
        seen["english"]
            .as_str()
            .unwrap()
            .starts_with("HQ offline, 2 terminals on the store network · last sync"),
        "{seen:#}"
    );
    assert!(
        seen["box_class"].as_str().unwrap().contains("offline"),
        "{seen:#}"
    );
    assert!(shots.join("pos-lan-en.png").exists());
}
