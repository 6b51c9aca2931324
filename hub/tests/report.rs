//! The compliance report (issue #23): `GET /api/report` and `hub report`
//! against a hand-built fleet whose figures are worked out below by hand.
//! (The rule itself: `engine::compliance`; its SQL on both backends: the
//! conformance check `the_status_index_gives_the_reports_facts`.)

mod common;

use std::process::Command;

use common::admin::{start, Api};
use engine::document::instance::record_status;
use engine::ids::{DocumentId, EventId, TaskId};
use engine::model::StatusUpdate;
use reqwest::Method;
use serde_json::{json, Value};

async fn ok(api: &Api, method: Method, path: &str, body: Option<Value>) -> Value {
    let (s, v) = api.call(method, path, body).await;
    assert!((200..300).contains(&s), "{path}: {s} {v}");
    v
}

/// Publish a list; its document id and its tasks' ids, in order.
async fn publish(
    api: &Api,
    store: &str,
    name: &str,
    date: &str,
    tasks: Value,
) -> (String, Vec<String>) {
    let v = ok(
        api,
        Method::POST,
        "/lists",
        Some(json!({"store": store, "name": name, "date": date, "tasks": tasks})),
    )
    .await;
    let doc = v["id"].as_str().unwrap().to_owned();
    let d = ok(api, Method::GET, &format!("/documents/{doc}"), None).await;
    let tasks = d["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["spec"]["id"].as_str().unwrap().to_owned())
        .collect();
    (doc, tasks)
}

/// Record `status` by `worker` at `at` (RFC 3339) on the hub's copy of
/// `doc`, as a terminal would have.
async fn record(api: &Api, doc: &str, task: &str, status: &str, worker: &str, at: &str) {
    let doc: DocumentId = doc.parse().unwrap();
    let update = StatusUpdate {
        id: EventId(uuid::Uuid::new_v4()),
        task: TaskId(task.parse().unwrap()),
        status: serde_json::from_value(json!(status)).unwrap(),
        worker: worker.parse().unwrap(),
        terminal: "pos-1".parse().unwrap(),
        note: None,
    };
    let at = chrono::DateTime::parse_from_rfc3339(at)
        .unwrap()
        .timestamp_millis();
    api.hub
        .call(move |hub, now| {
            let out = hub
                .edit(doc, now, |d| Ok(vec![record_status(d, &update, at)?.1]))
                .expect("recording status at the hub");
            ((), out)
        })
        .await
        .unwrap();
}

/// s1 Berlin and s3 Tokyo in region-north, s2 New York in region-south;
/// rosters with names; lists dated 2026-11-02 and 03 whose tasks were done
/// early, exactly on time, late, after a reopen, or never:
///
/// | store | list, date         | due (local = UTC)          | task          | what happened                           | outcome          |
/// |-------|--------------------|----------------------------|---------------|-----------------------------------------|------------------|
/// | s1    | Opening 11-02      | 09:00 CET = 08:00Z         | Unlock        | Ana 07:59:59Z                           | on time (Ana)    |
/// | s1    | Opening 11-02      |                            | Count float   | Ben 08:00:00.000Z                       | on time (Ben)    |
/// | s1    | Opening 11-02      |                            | Sweep         | never; assigned to Ben                  | missed (Ben)     |
/// | s1    | Opening 11-02      | none                       | Windows       | Ana 08:10Z                              | on time (Ana)    |
/// | s1    | Closing 11-03      | 21:00 CET = 20:00Z         | Lock          | Ana 20:00:00.001Z                       | late (Ana)       |
/// | s1    | Closing 11-03      |                            | Cash up       | Ana 19:00Z, Ben reopens 19:10Z, Ben 20:30Z | late (Ben)    |
/// | s2    | Opening 11-02      | 09:00 EST = 14:00Z         | Unlock        | Cy 13:00Z                               | on time (Cy)     |
/// | s2    | Opening 11-02      |                            | Count float   | Cy started 13:30Z, done 13:59Z          | on time (Cy)     |
/// | s3    | Opening 11-02      | 07:00 JST = 11-01 22:00Z   | Receive       | Dai 11-01 21:30Z (06:30 JST)            | on time (Dai)    |
/// | s3    | Opening 11-02      |                            | Stock shelves | never; nobody assigned                  | missed (nobody)  |
/// | s3    | Opening 11-04      | (outside the range)        | Receive       | never                                   | not counted      |
async fn fleet() -> Api {
    let api = start().await;
    ok(
        &api,
        Method::POST,
        "/stores",
        Some(json!({"id": "s3", "name": "Tokyo Ginza", "time_zone": "Asia/Tokyo"})),
    )
    .await;
    for (group, stores) in [
        ("region-north", json!(["s1", "s3"])),
        ("region-south", json!(["s2"])),
    ] {
        ok(
            &api,
            Method::POST,
            &format!("/store-groups/{group}/stores"),
            Some(json!({ "stores": stores })),
        )
        .await;
    }
    for (store, worker, name) in [
        ("s1", "w-ana", "Ana"),
        ("s1", "w-ben", "Ben"),
        ("s2", "w-cy", "Cy"),
        ("s3", "w-dai", "Dai"),
    ] {
        ok(
            &api,
            Method::PUT,
            &format!("/stores/{store}/workers/{worker}"),
            Some(json!({"name": name, "role": "cashier"})),
        )
        .await;
    }

    let (d, t) = publish(
        &api,
        "s1",
        "Opening",
        "2026-11-02",
        json!([{"title": "Unlock", "due": "09:00", "assignee": "worker:w-ana"},
               {"title": "Count float", "due": "09:00"},
               {"title": "Sweep", "due": "09:00", "assignee": "worker:w-ben"},
               {"title": "Windows"}]),
    )
    .await;
    record(
        &api,
        &d,
        &t[0],
        "completed",
        "w-ana",
        "2026-11-02T07:59:59Z",
    )
    .await;
    record(
        &api,
        &d,
        &t[1],
        "completed",
        "w-ben",
        "2026-11-02T08:00:00.000Z",
    )
    .await;
    record(
        &api,
        &d,
        &t[3],
        "completed",
        "w-ana",
        "2026-11-02T08:10:00Z",
    )
    .await;

    let (d, t) = publish(
        &api,
        "s1",
        "Closing",
        "2026-11-03",
        json!([{"title": "Lock", "due": "21:00"},
               {"title": "Cash up", "due": "21:00", "assignee": "worker:w-ben"}]),
    )
    .await;
    record(
        &api,
        &d,
        &t[1],
        "completed",
        "w-ana",
        "2026-11-03T19:00:00Z",
    )
    .await;
    record(&api, &d, &t[1], "reopened", "w-ben", "2026-11-03T19:10:00Z").await;
    record(
        &api,
        &d,
        &t[0],
        "completed",
        "w-ana",
        "2026-11-03T20:00:00.001Z",
    )
    .await;
    record(
        &api,
        &d,
        &t[1],
        "completed",
        "w-ben",
        "2026-11-03T20:30:00Z",
    )
    .await;

    let (d, t) = publish(
        &api,
        "s2",
        "Opening",
        "2026-11-02",
        json!([{"title": "Unlock", "due": "09:00"}, {"title": "Count float", "due": "09:00"}]),
    )
    .await;
    record(&api, &d, &t[0], "completed", "w-cy", "2026-11-02T13:00:00Z").await;
    record(
        &api,
        &d,
        &t[1],
        "in_progress",
        "w-cy",
        "2026-11-02T13:30:00Z",
    )
    .await;
    record(&api, &d, &t[1], "completed", "w-cy", "2026-11-02T13:59:00Z").await;

    let (d, t) = publish(
        &api,
        "s3",
        "Opening",
        "2026-11-02",
        json!([{"title": "Receive", "due": "07:00", "assignee": "worker:w-dai"},
               {"title": "Stock shelves", "due": "07:00"}]),
    )
    .await;
    record(
        &api,
        &d,
        &t[0],
        "completed",
        "w-dai",
        "2026-11-01T21:30:00Z",
    )
    .await;
    publish(
        &api,
        "s3",
        "Opening",
        "2026-11-04",
        json!([{"title": "Receive", "due": "07:00"}]),
    )
    .await;
    api
}

/// (key, tasks, on time, late, missed, open, rate) of each row.
type Figures = (String, u64, u64, u64, u64, u64, Value);

fn figures(v: &Value, key: impl Fn(&Value) -> String) -> Vec<Figures> {
    v.as_array()
        .unwrap_or_else(|| panic!("rows: {v}"))
        .iter()
        .map(|r| {
            let n = |f: &str| r[f].as_u64().unwrap_or_else(|| panic!("{f} in {r}"));
            (
                key(r),
                n("tasks"),
                n("on_time"),
                n("late"),
                n("missed"),
                n("open"),
                r["on_time_rate"].clone(),
            )
        })
        .collect()
}

fn f(key: &str, tasks: u64, on: u64, late: u64, missed: u64, rate: Value) -> Figures {
    (key.to_owned(), tasks, on, late, missed, 0, rate)
}

const RANGE: &str = "from=2026-11-02&to=2026-11-03";

#[tokio::test]
async fn the_report_gives_the_hand_worked_figures_by_store_group_list_and_worker() {
    let api = fleet().await;
    let get = |by: &str| {
        let path = format!("/report?{RANGE}&by={by}");
        let api = &api;
        async move { ok(api, Method::GET, &path, None).await }
    };
    let key = |field: &'static str| move |r: &Value| r[field].as_str().unwrap_or("-").to_owned();

    let v = get("store").await;
    assert_eq!(
        figures(&v, key("store")),
        [
            f("s1", 6, 3, 2, 1, json!(0.5)),
            f("s2", 2, 2, 0, 0, json!(1.0)),
            f("s3", 2, 1, 0, 1, json!(0.5)),
        ],
        "{v:#}"
    );
    assert_eq!(v[2]["name"], "Tokyo Ginza");

    let v = get("group").await;
    assert_eq!(
        figures(&v, key("group")),
        [
            f("region-north", 8, 4, 2, 2, json!(0.5)),
            f("region-south", 2, 2, 0, 0, json!(1.0)),
        ],
        "{v:#}"
    );
    assert_eq!(v[0]["stores"], 2);

    let v = get("list").await;
    assert_eq!(
        figures(&v, key("list")),
        [
            f("Closing", 2, 0, 2, 0, json!(0.0)),
            f("Opening", 8, 6, 0, 2, json!(0.75)),
        ],
        "{v:#}"
    );
    assert_eq!(v[1]["stores"], 3);

    let v = get("worker").await;
    let who = |r: &Value| {
        format!(
            "{} {} {}",
            r["store"].as_str().unwrap(),
            r["worker"].as_str().unwrap_or("-"),
            r["name"].as_str().unwrap_or("-")
        )
    };
    assert_eq!(
        figures(&v, who),
        [
            f("s1 w-ana Ana", 3, 2, 1, 0, json!(0.6667)),
            f("s1 w-ben Ben", 3, 1, 1, 1, json!(0.3333)),
            f("s2 w-cy Cy", 2, 2, 0, 0, json!(1.0)),
            f("s3 - -", 1, 0, 0, 1, json!(0.0)),
            f("s3 w-dai Dai", 1, 1, 0, 0, json!(1.0)),
        ],
        "{v:#}"
    );

    // A task whose due time is still ahead is open: shown, not rated.
    let ahead = (chrono::Utc::now().date_naive() + chrono::Days::new(2)).to_string();
    publish(
        &api,
        "s2",
        "Opening",
        &ahead,
        json!([{"title": "Unlock", "due": "09:00"}]),
    )
    .await;
    let v = ok(
        &api,
        Method::GET,
        &format!("/report?from={ahead}&to={ahead}"),
        None,
    )
    .await;
    assert_eq!(
        figures(&v, key("store")),
        [("s2".to_owned(), 0, 0, 0, 0, 1, Value::Null)],
        "{v:#}"
    );
}

#[tokio::test]
async fn the_report_downloads_as_csv_and_refuses_what_it_cannot_answer() {
    let api = fleet().await;
    let r = reqwest::Client::new()
        .get(format!("{}/report?{RANGE}&by=store&format=csv", api.base))
        .bearer_auth("admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"report-by-store-2026-11-02-2026-11-03.csv\""
    );
    assert_eq!(
        r.text().await.unwrap(),
        "store,name,stores,tasks,on_time,late,missed,open,on_time_rate\n\
         s1,s1,1,6,3,2,1,0,0.5000\n\
         s2,s2,1,2,2,0,0,0,1.0000\n\
         s3,Tokyo Ginza,1,2,1,0,1,0,0.5000\n"
    );
    let r = reqwest::Client::new()
        .get(format!("{}/report?{RANGE}&by=worker&format=csv", api.base))
        .bearer_auth("admin")
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "store,worker,name,stores,tasks,on_time,late,missed,open,on_time_rate",
            "s1,w-ana,Ana,1,3,2,1,0,0,0.6667",
            "s1,w-ben,Ben,1,3,1,1,1,0,0.3333",
        ]
    );

    for (query, words) in [
        ("from=2026-11-03&to=2026-11-02", "is after to"),
        (
            "from=2026-11-02&to=2026-11-31",
            "not a date: use YYYY-MM-DD",
        ),
        ("from=2026-11-02", "to is required"),
        ("from=2025-01-01&to=2026-01-02", "at most 366 days"),
        (
            "from=2026-11-02&to=2026-11-03&by=day",
            "use store, group, list or worker",
        ),
        (
            "from=2026-11-02&to=2026-11-03&format=xml",
            "use json or csv",
        ),
    ] {
        let (s, v) = api
            .call(Method::GET, &format!("/report?{query}"), None)
            .await;
        assert_eq!(s, 400, "{query}: {v}");
        let e = v["error"].as_str().unwrap();
        assert!(e.contains(words), "{query}: {e}");
    }
    let (s, _) = api
        .call(Method::GET, "/report?from=2025-01-01&to=2025-12-31", None)
        .await;
    assert_eq!(s, 200, "a year is allowed");
}

/// A viewer may read the report; an account scoped to region-north sees
/// its stores only, and only its group.
#[tokio::test]
async fn a_scoped_viewer_reports_on_its_own_stores_and_groups() {
    let api = fleet().await;
    ok(
        &api,
        Method::POST,
        "/users",
        Some(
            json!({"id": "vin", "role": "viewer", "scope": ["region-north"],
                    "password": "long enough pw"}),
        ),
    )
    .await;
    let (_, v) = api
        .call_as(
            "",
            Method::POST,
            "/login",
            Some(json!({"user": "vin", "password": "long enough pw"})),
        )
        .await;
    let vin = v["token"].as_str().unwrap().to_owned();
    let rows = |by: &'static str, field: &'static str| {
        let (api, vin) = (&api, vin.clone());
        async move {
            let (s, v) = api
                .call_as(&vin, Method::GET, &format!("/report?{RANGE}&by={by}"), None)
                .await;
            assert_eq!(s, 200, "{v}");
            figures(&v, |r| r[field].as_str().unwrap_or("-").to_owned())
        }
    };
    assert_eq!(
        rows("store", "store").await,
        [
            f("s1", 6, 3, 2, 1, json!(0.5)),
            f("s3", 2, 1, 0, 1, json!(0.5)),
        ]
    );
    assert_eq!(
        rows("group", "group").await,
        [f("region-north", 8, 4, 2, 2, json!(0.5))]
    );
    assert_eq!(
        rows("list", "list").await,
        [
            f("Closing", 2, 0, 2, 0, json!(0.0)),
            f("Opening", 6, 4, 0, 2, json!(0.6667)),
        ],
        "s2's Opening is not vin's"
    );
    let r = reqwest::Client::new()
        .get(format!("{}/report?{RANGE}&by=store&format=csv", api.base))
        .bearer_auth(&vin)
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(!text.contains("s2"), "{text}");
}

/// `hub report` prints a table by default, CSV with --csv, JSON with --json.
#[tokio::test]
async fn hub_report_prints_a_table_csv_or_json() {
    let api = fleet().await;
    let hub = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hub"));
        for (k, _) in std::env::vars() {
            if k.starts_with("HUB_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(args).args([
            "--hub-url",
            &format!("http://{}", api.addr),
            "--token",
            "admin",
        ]);
        async move {
            let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let range = ["report", "--from", "2026-11-02", "--to", "2026-11-03"];
    let text = hub(&[&range[..], &["--by", "group"]].concat()).await;
    assert_eq!(
        text,
        "group\ton time\ttasks\trate\tlate\tmissed\topen (not yet due)\n\
         region-north\t4\t8\t50.0%\t2\t2\t0\n\
         region-south\t2\t2\t100.0%\t0\t0\t0\n\
         lists dated 2026-11-02 to 2026-11-03; on time: completed at or before the due time, or with none\n"
    );
    let csv = hub(&[&range[..], &["--by", "list", "--csv"]].concat()).await;
    assert_eq!(
        csv,
        "list,stores,tasks,on_time,late,missed,open,on_time_rate\n\
         Closing,1,2,0,2,0,0,0.0000\n\
         Opening,3,8,6,0,2,0,0.7500\n"
    );
    let json: Value =
        serde_json::from_str(&hub(&[&range[..], &["--json"]].concat()).await).unwrap();
    assert_eq!(json[0]["store"], "s1");
    assert_eq!(json[0]["on_time_rate"], 0.5);
}

/// Past due and the worker histories (issue #23): times on the store's
/// clock with its zone named, and workers' names beside their ids.
#[tokio::test]
async fn past_due_and_histories_show_the_stores_clock_and_workers_names() {
    let api = fleet().await;
    let v = ok(&api, Method::GET, "/status/past-due", None).await;
    let rows = v.as_array().unwrap();
    let row = |title: &str| {
        rows.iter()
            .find(|r| r["title"] == title)
            .unwrap_or_else(|| panic!("{title} in {v:#}"))
    };
    let shelves = row("Stock shelves");
    assert_eq!(
        (
            &shelves["due"],
            &shelves["due_local"],
            &shelves["time_zone"]
        ),
        (
            &json!("2026-11-01T22:00:00.000Z"),
            &json!("2026-11-02 07:00 JST (Asia/Tokyo)"),
            &json!("Asia/Tokyo")
        ),
        "{shelves}"
    );
    assert_eq!(shelves["assignee_name"], Value::Null);
    let sweep = row("Sweep");
    assert_eq!(
        (
            &sweep["due_local"],
            &sweep["assignee"],
            &sweep["assignee_name"]
        ),
        (
            &json!("2026-11-02 09:00 CET (Europe/Berlin)"),
            &json!("worker:w-ben"),
            &json!("Ben")
        ),
        "{sweep}"
    );

    let v = ok(&api, Method::GET, "/status/workers?store=s3", None).await;
    assert_eq!(
        (&v[0]["worker"], &v[0]["worker_name"], &v[0]["at_local"]),
        (
            &json!("w-dai"),
            &json!("Dai"),
            &json!("2026-11-02 06:30 JST (Asia/Tokyo)")
        ),
        "{v:#}"
    );
    // A worker renamed on the roster is shown by the new name after at
    // most the roster cache's lifetime; one added later at once.
    ok(
        &api,
        Method::PUT,
        "/stores/s3/workers/w-eri",
        Some(json!({"name": "Eri", "role": "cashier"})),
    )
    .await;
    let (d, t) = publish(
        &api,
        "s3",
        "Closing",
        "2026-11-02",
        json!([{"title": "Lock", "due": "22:00", "assignee": "worker:w-eri"}]),
    )
    .await;
    record(
        &api,
        &d,
        &t[0],
        "in_progress",
        "w-eri",
        "2026-11-02T12:00:00Z",
    )
    .await;
    let v = ok(&api, Method::GET, "/status/workers?store=s3", None).await;
    assert_eq!(
        (&v[0]["worker"], &v[0]["worker_name"]),
        (&json!("w-eri"), &json!("Eri")),
        "{v:#}"
    );
}
