//! Issue #24, item 7: the POS in the store's language. HQ sets the
//! store's locale with its time zone (`hub stores update --locale de-DE`,
//! here PATCH /api/stores/ID); it travels to the terminal in the store's
//! directory, as the roster does, and a store HQ gave none speaks
//! English. A worker then signs in, sees her tasks with German due texts
//! in the store's time (the browser runs in another zone and language),
//! completes one, and meets no English word; she may switch to English
//! for herself, which the terminal keeps for her alone.
//!
//! Headless Chromium against the real `hub` and `pos-agent` binaries
//! (`tests/js/pos_german.mjs`). Needs Node 20+, `tests/js/node_modules`
//! (`npm ci` runs when missing) and `/usr/bin/chromium` (or `CHROMIUM=...`);
//! without Chromium the test fails when `CI=true` and is skipped with a
//! notice otherwise.

use std::time::Duration;

use serde_json::{json, Value};
use tests::browser::{chromium, node_ready, run_pos_script};
use tests::procs::{self, AgentArgs, ADMIN, STORE};

const DEADLINE: Duration = Duration::from_secs(30);
const SCRIPT_DEADLINE: Duration = Duration::from_secs(120);

async fn store_info(agent: &str) -> Option<Value> {
    procs::agent_get(format!("http://{agent}/api/store")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_signs_in_and_completes_a_task_in_german() {
    let Some(chromium) = chromium("POS in German") else {
        return;
    };
    node_ready("POS in German");
    let dir = tempfile::tempdir().unwrap();
    let hub = procs::start_hub(&dir.path().join("hub"), "127.0.0.1:0");
    let api = format!("http://{}/api", hub.addr);

    // A store added the old way, with no locale.
    // HQ: the store, its roster with PINs, a token for its terminal.
    let token = procs::open_store(
        &hub.addr,
        json!({"id": STORE, "name": "Hauptstraße", "time_zone": procs::noon_zone()}),
        &[
            ("w-1", "Ana Lopez", "cashier", &[], "1234"),
            ("m-1", "Mia Chen", "manager", &[], "9999"),
        ],
        "german test",
    )
    .await;
    procs::post(
        format!("{api}/lists"),
        json!({"store": STORE, "name": "Ladenschluss", "date": procs::noon_zone_today(), "tasks": [
            {"title": "Kühlkette prüfen", "due": procs::noon_zone_in(-285)},
            {"title": "Tragetaschen auffüllen", "due": procs::noon_zone_in(20)},
            {"title": "Kasse zählen", "due": procs::noon_zone_in(120), "assignee": "worker:w-1"},
        ]}),
    )
    .await;
    let pos1 = procs::start_agent(
        &dir.path().join("pos-1"),
        &AgentArgs {
            hub: hub.addr.clone(),
            token,
            terminal: "pos-1".into(),
            http: "127.0.0.1:0".into(),
        },
    );
    procs::wait_for("the terminal to receive the list", DEADLINE, async || {
        procs::agent_tasks(&pos1.addr)
            .await
            .filter(|t| t.len() == 3)
    })
    .await;
    let info = store_info(&pos1.addr).await.unwrap();
    assert_eq!(
        info["locale"], "en",
        "a store with no locale speaks English"
    );
    assert_eq!(info["time_zone"], procs::noon_zone());

    // HQ sets the locale; it reaches the terminal.
    let r = reqwest::Client::new()
        .patch(format!("{api}/stores/{STORE}"))
        .bearer_auth(ADMIN)
        .json(&json!({"locale": "de-DE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["locale"], "de-DE");
    assert_eq!(answer["time_zone"], procs::noon_zone(), "the zone stays");
    procs::wait_for("the locale to reach the terminal", DEADLINE, async || {
        store_info(&pos1.addr)
            .await
            .filter(|i| i["locale"] == "de-DE")
    })
    .await;
    // A locale that is not one is refused, naming the form.
    let r = reqwest::Client::new()
        .patch(format!("{api}/stores/{STORE}"))
        .bearer_auth(ADMIN)
        .json(&json!({"locale": "Deutsch"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("de-DE"));

    let (report, _) = run_pos_script(
        "pos_german.mjs",
        "pos-german",
        &pos1,
        &chromium,
        SCRIPT_DEADLINE,
    )
    .await;
    let seen = &report["seen"];
    assert_eq!(report["english"], json!([]), "English on a German screen");
    assert_eq!(seen["html_lang"], "de");
    assert_eq!(seen["sign_in_heading"], "Wer sind Sie?");
    assert_eq!(seen["keypad_go"], "Anmelden");
    assert_eq!(seen["wrong_pin"], "Falsche PIN; bitte erneut versuchen");
    assert_eq!(
        seen["tabs"],
        json!(["Meine Aufgaben", "Alle heute", "Abmelden"])
    );
    // Due times on the store's clock, not the browser's (Los Angeles).
    let rows = seen["rows"].as_array().unwrap();
    let titles: Vec<&str> = rows.iter().map(|r| r["title"].as_str().unwrap()).collect();
    assert_eq!(
        titles,
        ["Kühlkette prüfen", "Tragetaschen auffüllen", "Kasse zählen"]
    );
    let dues: Vec<&str> = rows.iter().map(|r| r["due"].as_str().unwrap()).collect();
    for (due, minutes) in dues.iter().zip([-285, 20, 120]) {
        let near = [
            procs::noon_zone_in(minutes - 1),
            procs::noon_zone_in(minutes),
        ];
        assert!(near.iter().any(|n| n == due), "{due} vs {near:?}");
    }
    assert_eq!(rows[0]["mark"], "Überfällig");
    assert_eq!(rows[0]["status"], "Nicht begonnen");
    let tiles: Vec<&str> = seen["tiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tiles,
        ["3 Offene Aufgaben", "1 Überfällig", "1 Fällig in 30 Min."]
    );
    assert!(
        seen["sync"]
            .as_str()
            .unwrap()
            .starts_with("Online · letzter Abgleich "),
        "{seen}"
    );
    let chips: Vec<&str> = seen["alert_chips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        ["4 Std. 45 Min. überfällig", "4 Std. 46 Min. überfällig"].contains(&chips[0]),
        "{chips:?}"
    );
    assert!(
        ["in 20 Min.", "in 19 Min."].contains(&chips[1]),
        "{chips:?}"
    );
    let meta = seen["sheet_meta"].as_str().unwrap();
    assert!(
        meta.starts_with("Ladenschluss · fällig ") && meta.ends_with(" · Ana Lopez"),
        "{meta}"
    );
    assert_eq!(
        seen["saved_toast"],
        "Gespeichert: Kasse zählen ist erledigt"
    );
    assert_eq!(seen["completed_chip"], "Erledigt");

    // Her own English stays hers.
    assert_eq!(seen["english_tab"], "My tasks");
    assert_eq!(seen["signed_out_heading"], "Wer sind Sie?");
    assert_eq!(seen["english_again"], "My tasks");
    assert_eq!(seen["manager_tab"], "Meine Aufgaben");

    // The completion is Ana's, recorded at pos-1.
    let till = procs::agent_tasks(&pos1.addr)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t["title"] == "Kasse zählen")
        .unwrap();
    assert_eq!(till["status"], "completed");
    assert_eq!(till["status_by"], "w-1");
}
