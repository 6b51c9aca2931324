//! The fleet view (issue #23): `GET /api/fleet/stores` answers the
//! caller's stores most troubled first, one page at a time, filtered by a
//! store group or a search. (The order itself: `engine::fleet`.)

mod common;

use common::admin::{start, Api};
use reqwest::Method;
use serde_json::{json, Value};

async fn ok(api: &Api, method: Method, path: &str, body: Option<Value>) -> Value {
    let (s, v) = api.call(method, path, body).await;
    assert!((200..300).contains(&s), "{path}: {s} {v}");
    v
}

/// A list dated long ago with `n` tasks due in the morning: `n` past due.
async fn past_due(api: &Api, store: &str, n: usize) {
    let tasks: Vec<Value> = (0..n)
        .map(|i| json!({"title": format!("Task {i}"), "due": "09:00"}))
        .collect();
    ok(
        api,
        Method::POST,
        "/lists",
        Some(json!({"store": store, "name": "Delivery", "date": "2026-01-05", "tasks": tasks})),
    )
    .await;
}

fn ids(v: &Value) -> Vec<&str> {
    v["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_fleet_is_paged_most_past_due_first_and_filtered_by_group_and_search() {
    let api = start().await;
    for (id, name) in [
        ("s3", "Harbour Road"),
        ("s4", "Main Street"),
        ("s5", "Market Hall"),
    ] {
        ok(
            &api,
            Method::POST,
            "/stores",
            Some(json!({"id": id, "name": name, "time_zone": "Asia/Tokyo"})),
        )
        .await;
    }
    ok(
        &api,
        Method::POST,
        "/store-groups/region-north/stores",
        Some(json!({"stores": ["s1", "s3", "s4"]})),
    )
    .await;
    past_due(&api, "s4", 3).await;
    past_due(&api, "s3", 1).await;

    // None has synced: the most past due first, then by name.
    let v = ok(&api, Method::GET, "/fleet/stores", None).await;
    assert_eq!(ids(&v), ["s4", "s3", "s5", "s1", "s2"], "{v:#}");
    assert_eq!((&v["total"], &v["pages"]), (&json!(5), &json!(1)));
    assert_eq!(v["groups"], json!(["region-north"]));
    let s4 = &v["stores"][0];
    assert_eq!(
        (&s4["past_due"], &s4["trouble"], &s4["last_sync_local"]),
        (&json!(3), &json!("never synced"), &Value::Null),
        "{s4}"
    );
    assert_eq!(s4["groups"], json!(["region-north"]));

    // Pages of two.
    let v = ok(&api, Method::GET, "/fleet/stores?limit=2&page=2", None).await;
    assert_eq!(ids(&v), ["s5", "s1"]);
    assert_eq!((&v["total"], &v["pages"]), (&json!(5), &json!(3)));
    let v = ok(&api, Method::GET, "/fleet/stores?limit=2&page=9", None).await;
    assert_eq!(ids(&v), Vec::<&str>::new(), "past the end: empty");

    // A group, a search (id or name, any case), both.
    let v = ok(&api, Method::GET, "/fleet/stores?group=region-north", None).await;
    assert_eq!(ids(&v), ["s4", "s3", "s1"]);
    let v = ok(&api, Method::GET, "/fleet/stores?q=ma", None).await;
    assert_eq!(ids(&v), ["s4", "s5"], "Main Street, Market Hall");
    let v = ok(
        &api,
        Method::GET,
        "/fleet/stores?q=ma&group=region-north",
        None,
    )
    .await;
    assert_eq!(ids(&v), ["s4"]);
    let (s, v) = api
        .call(Method::GET, "/fleet/stores?group=not%20a%20group", None)
        .await;
    assert_eq!(s, 400, "{v}");

    // A viewer scoped to region-north sees its stores and groups only.
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
    let vin = v["token"].as_str().unwrap();
    let (s, v) = api.call_as(vin, Method::GET, "/fleet/stores", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(&v), ["s4", "s3", "s1"]);
    assert_eq!(v["total"], 3);
}

/// An account `name` with `role` over region-north only, and its token.
async fn north_account(api: &Api, name: &str, role: &str) -> String {
    ok(
        api,
        Method::POST,
        "/users",
        Some(json!({"id": name, "role": role, "scope": ["region-north"],
                    "password": "long enough pw"})),
    )
    .await;
    let (_, v) = api
        .call_as(
            "",
            Method::POST,
            "/login",
            Some(json!({"user": name, "password": "long enough pw"})),
        )
        .await;
    v["token"].as_str().unwrap().to_owned()
}

const JANUARY: &str = "from=2026-01-01&to=2026-01-31";

/// The roll-up adds up each store group's figures over the days asked,
/// most behind first, and drills down to a group's stores and a store's
/// lists; a scoped viewer sees her groups only, and another group or
/// store is answered as a missing one.
#[tokio::test]
async fn the_roll_up_adds_up_store_groups_and_drills_down_to_stores_and_lists() {
    let api = start().await;
    ok(
        &api,
        Method::POST,
        "/stores",
        Some(json!({"id": "s3", "name": "Harbour Road", "time_zone": "Asia/Tokyo"})),
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
    past_due(&api, "s3", 2).await;
    past_due(&api, "s1", 1).await;
    // Not yet due (no due time), and a day outside January.
    ok(
        &api,
        Method::POST,
        "/lists",
        Some(
            json!({"store": "s2", "name": "Opening", "date": "2026-01-06",
                    "tasks": [{"title": "Unlock"}]}),
        ),
    )
    .await;
    ok(
        &api,
        Method::POST,
        "/lists",
        Some(
            json!({"store": "s2", "name": "Delivery", "date": "2026-02-02",
                    "tasks": [{"title": "Late in February", "due": "09:00"}]}),
        ),
    )
    .await;

    let v = ok(&api, Method::GET, &format!("/fleet/rollup?{JANUARY}"), None).await;
    let groups: Vec<(&str, u64, u64, u64, &Value)> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap(),
                g["stores"].as_u64().unwrap(),
                g["tasks"].as_u64().unwrap(),
                g["past_due"].as_u64().unwrap(),
                &g["on_time_share"],
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("region-north", 2, 3, 3, &json!(0.0)),
            ("region-south", 1, 1, 0, &Value::Null),
        ],
        "most behind first; nothing was due in the south: {v:#}"
    );
    assert_eq!(
        (&v["from"], &v["to"]),
        (&json!("2026-01-01"), &json!("2026-01-31"))
    );

    let v = ok(
        &api,
        Method::GET,
        &format!("/fleet/rollup/stores?group=region-north&{JANUARY}"),
        None,
    )
    .await;
    assert_eq!(ids(&v), ["s3", "s1"], "the most past due first");
    assert_eq!(v["stores"][0]["name"], "Harbour Road");
    assert_eq!(v["stores"][0]["past_due"], 2);
    let v = ok(
        &api,
        Method::GET,
        &format!("/fleet/rollup/stores?group=region-north&limit=1&page=2&{JANUARY}"),
        None,
    )
    .await;
    assert_eq!((ids(&v), &v["pages"]), (vec!["s1"], &json!(2)));

    let v = ok(
        &api,
        Method::GET,
        &format!("/fleet/rollup/lists?store=s3&{JANUARY}"),
        None,
    )
    .await;
    let lists = v["lists"].as_array().unwrap();
    assert_eq!(lists.len(), 1, "{v:#}");
    assert_eq!(
        (&lists[0]["list"], &lists[0]["days"], &lists[0]["past_due"]),
        (&json!("Delivery"), &json!(1), &json!(2))
    );
    assert_eq!(v["store"]["time_zone"], "Asia/Tokyo");
    let (s, v) = api
        .call(
            Method::GET,
            "/fleet/rollup?from=2026-02-01&to=2026-01-01",
            None,
        )
        .await;
    assert_eq!(s, 400, "{v}");

    // A viewer over region-north.
    let vin = north_account(&api, "vin", "viewer").await;
    let (s, v) = api
        .call_as(&vin, Method::GET, &format!("/fleet/rollup?{JANUARY}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["total"], 1);
    assert_eq!(v["groups"][0]["group"], "region-north");
    let (s, v) = api
        .call_as(
            &vin,
            Method::GET,
            "/fleet/rollup/stores?group=region-south",
            None,
        )
        .await;
    assert_eq!(s, 404, "another group looks missing: {v}");
    let missing = api
        .call(Method::GET, "/fleet/rollup/lists?store=s-missing", None)
        .await;
    assert_eq!(missing.0, 404);
    let (s, v) = api
        .call_as(&vin, Method::GET, "/fleet/rollup/lists?store=s2", None)
        .await;
    assert_eq!(s, 404);
    assert_eq!(
        v["error"].as_str().unwrap(),
        missing.1["error"]
            .as_str()
            .unwrap()
            .replace("s-missing", "s2"),
        "the same words as a store that does not exist"
    );
}

/// Past due grouped by list, with counts; a list expands to its stores,
/// each task's due time on the store's clock with the zone named.
#[tokio::test]
async fn past_due_is_grouped_by_list_and_a_list_expands_to_its_stores_in_their_zones() {
    let api = start().await;
    ok(
        &api,
        Method::POST,
        "/stores",
        Some(json!({"id": "s3", "name": "Harbour Road", "time_zone": "Asia/Tokyo"})),
    )
    .await;
    ok(
        &api,
        Method::POST,
        "/store-groups/region-north/stores",
        Some(json!({"stores": ["s1", "s3"]})),
    )
    .await;
    past_due(&api, "s3", 2).await;
    past_due(&api, "s2", 1).await;
    ok(
        &api,
        Method::POST,
        "/lists",
        Some(
            json!({"store": "s1", "name": "Closing", "date": "2026-01-05",
                    "tasks": [{"title": "Lock up", "due": "07:00"}]}),
        ),
    )
    .await;

    let v = ok(&api, Method::GET, "/fleet/past-due", None).await;
    let lists: Vec<(&str, u64, u64)> = v["lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["list"].as_str().unwrap(),
                l["tasks"].as_u64().unwrap(),
                l["stores"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(lists, [("Delivery", 3, 2), ("Closing", 1, 1)], "{v:#}");
    assert_eq!(v["past_due_tasks"], 4);

    let v = ok(&api, Method::GET, "/fleet/past-due?list=Delivery", None).await;
    let stores: Vec<&str> = v["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["store"].as_str().unwrap())
        .collect();
    // 09:00 in Tokyo comes before 09:00 in New York.
    assert_eq!(stores, ["s3", "s2"], "{v:#}");
    let tokyo = &v["stores"][0];
    assert_eq!(tokyo["tasks"].as_array().unwrap().len(), 2);
    assert_eq!(
        tokyo["tasks"][0]["due_local"],
        "2026-01-05 09:00 JST (Asia/Tokyo)"
    );
    assert_eq!(
        v["stores"][1]["tasks"][0]["due_local"],
        "2026-01-05 09:00 EST (America/New_York)"
    );

    // A viewer over region-north: her stores' rows only.
    let vin = north_account(&api, "vin", "viewer").await;
    let (s, v) = api
        .call_as(&vin, Method::GET, "/fleet/past-due", None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["past_due_tasks"], 3, "s2's task is not hers: {v:#}");
    let (_, v) = api
        .call_as(&vin, Method::GET, "/fleet/past-due?list=Delivery", None)
        .await;
    assert_eq!(v["total"], 1);
    assert_eq!(v["stores"][0]["store"], "s3");
}
