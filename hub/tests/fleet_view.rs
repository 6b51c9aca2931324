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
