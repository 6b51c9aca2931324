//! HQ accounts (issue #23) over the admin API: the authorization matrix of
//! every `/api` route by role and scope, signing in (setup secret, rate
//! limit), personal tokens, and the audit.

mod common;

use common::admin::{start, Api};
use engine::hq_accounts::Need;
use hub::http::access::{Access, Reach};
use reqwest::Method;
use serde_json::{json, Value};

/// An HQ account and its personal token.
struct Who {
    name: &'static str,
    role: &'static str,
    /// Scoped to region-north (s1, s3); else every store.
    north_only: bool,
    token: String,
}

async fn add_account(api: &Api, name: &str, role: &str, scope: Value) -> String {
    let (s, v) = api
        .call(
            Method::POST,
            "/users",
            Some(json!({"id": name, "role": role, "scope": scope, "password": "long enough pw"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api
        .call_as(
            "",
            Method::POST,
            "/login",
            Some(json!({"user": name, "password": "long enough pw"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

async fn publish(api: &Api, store: &str) -> String {
    let (s, v) = api
        .call(
            Method::POST,
            "/lists",
            Some(
                json!({"store": store, "name": "Delivery", "date": "2026-12-01",
                        "tasks": [{"title": "Count pallets"}]}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

/// s1 and s3 in region-north, s2 in region-south; a list in s1 and s2;
/// an account per role, over all stores and over region-north.
async fn fleet() -> (Api, Vec<Who>, [String; 2]) {
    let api = start().await;
    let (s, v) = api
        .call(
            Method::POST,
            "/stores",
            Some(json!({"id": "s3", "name": "s3", "time_zone": "Europe/Berlin"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    for (group, stores) in [
        ("region-north", json!(["s1", "s3"])),
        ("region-south", json!(["s2"])),
    ] {
        let (s, v) = api
            .call(
                Method::POST,
                &format!("/store-groups/{group}/stores"),
                Some(json!({ "stores": stores })),
            )
            .await;
        assert!(s < 300, "{v}");
    }
    let docs = [publish(&api, "s1").await, publish(&api, "s2").await];
    let mut who = Vec::new();
    for (name, role, north_only) in [
        ("ada", "admin", false),
        ("eve", "editor", false),
        ("ned", "editor", true),
        ("val", "viewer", false),
        ("vin", "viewer", true),
    ] {
        let scope = if north_only {
            json!(["region-north"])
        } else {
            json!("all")
        };
        let token = add_account(&api, name, role, scope).await;
        who.push(Who {
            name,
            role,
            north_only,
            token,
        });
    }
    (api, who, docs)
}

/// The request that exercises `path` (a route template) for a store `s`
/// in or out of the caller's scope: the path with its parameters filled
/// and a body naming the store where the route reads it from the body.
fn request(
    method: &Method,
    route: &str,
    reach: Reach,
    store: &str,
    doc: &str,
) -> (String, Option<Value>) {
    let mut path = String::new();
    for seg in route.trim_matches('/').split('/') {
        let value = match seg {
            "{id}" if reach == Reach::PathStore => {
                // Removing a store: a store of its own, so the others stay.
                if route == "/stores/{id}" && *method == Method::DELETE && store == "s1" {
                    "s3".to_owned()
                } else {
                    store.to_owned()
                }
            }
            // Taking a store out of its group: s3, so s1 stays in region-north.
            "{store}" => {
                if store == "s1" {
                    "s3".to_owned()
                } else {
                    store.to_owned()
                }
            }
            "{id}" if reach == Reach::PathDocument => doc.to_owned(),
            "{id}" if route.starts_with("/templates") => uuid::Uuid::nil().to_string(),
            "{id}" => "000000000000".to_owned(),
            "{worker}" => "w-none".to_owned(),
            "{group}" => "region-north".to_owned(),
            "{user}" => "nobody".to_owned(),
            s if s.starts_with('{') => panic!("{route}: no sample value for {s}; add one"),
            s => s.to_owned(),
        };
        path.push('/');
        path.push_str(&value);
    }
    let named = reach == Reach::Named;
    if *method == Method::GET {
        if named {
            path.push_str(&format!("?store={store}"));
        }
        if route == "/report" {
            path.push_str("?from=2026-12-01&to=2026-12-01");
        }
        return (path, None);
    }
    let body = match (named, route) {
        (true, "/lists" | "/purge") => json!({ "store": store }),
        (true, _) => json!({ "stores": [store] }),
        (false, _) => json!({}),
    };
    (path, Some(body))
}

/// Every route of the router, by role and scope: a role that may not do
/// it gets 403; a store (or a store's document) outside the scope gets
/// the answer a missing one gets (404, same words); a route reaching every
/// store is refused to a scoped account unless it only reads rows by
/// store; everything else passes authorization (not 401 or 403).
#[tokio::test]
async fn every_route_is_checked_by_role_and_scope() {
    let (api, who, [doc_in, doc_out]) = fleet().await;
    let routes = hub::http::api_routes();
    assert!(routes.rules().len() >= 30, "every route is listed");
    let missing_store = api
        .call(Method::GET, "/stores/s-missing/workers", None)
        .await;
    assert_eq!(missing_store.0, 404);
    for (method, route, access) in routes.rules() {
        let Access::Hq(need, reach) = *access else {
            assert!(
                matches!(*route, "/login" | "/session"),
                "only signing in is public, not {method} {route}"
            );
            continue;
        };
        for w in &who {
            let role: engine::hq_accounts::HqRole = w.role.parse().unwrap();
            let (path, body) = request(method, route, reach, "s1", &doc_in);
            let (s, v) = api.call_as(&w.token, method.clone(), &path, body).await;
            let what = format!("{method} {path} as {} ({})", w.name, w.role);
            if !role.may(need) {
                assert_eq!(s, 403, "{what}: {v}");
                continue;
            }
            let fleet_write = match reach {
                Reach::Fleet { rows_by: None } => true,
                Reach::Fleet { .. } => need != Need::Read,
                _ => false,
            };
            if w.north_only && fleet_write {
                assert_eq!(s, 403, "{what}: a scoped account reaching every store: {v}");
            } else {
                assert!(s != 401 && s != 403, "{what}: refused: {s} {v}");
            }
            if !w.north_only {
                continue;
            }
            if reach == Reach::Scope {
                // A read that narrows its answer itself: asked for another
                // region's store or group, it answers as for a missing one,
                // or without them.
                let (path, _) = request(method, route, reach, "s2", &doc_out);
                let path = format!("{path}?store=s2&group=region-south");
                let (s, v) = api.call_as(&w.token, method.clone(), &path, None).await;
                let text = v.to_string();
                assert!(
                    s == 404 || !(text.contains("\"s2\"") || text.contains("region-south")),
                    "{method} {path} as {}: another region's stores: {s} {v}",
                    w.name
                );
                continue;
            }
            let store_bound =
                matches!(reach, Reach::PathStore | Reach::PathDocument | Reach::Named);
            if !store_bound {
                continue;
            }
            let (path, body) = request(method, route, reach, "s2", &doc_out);
            let (s, v) = api.call_as(&w.token, method.clone(), &path, body).await;
            let what = format!("{method} {path} as {} ({})", w.name, w.role);
            assert_eq!(s, 404, "{what}: outside the scope looks missing: {v}");
            let words = v["error"].as_str().unwrap_or_default();
            if reach == Reach::PathDocument {
                assert!(words.contains("is not stored at the hub"), "{what}: {v}");
            } else {
                assert_eq!(
                    words,
                    missing_store.1["error"]
                        .as_str()
                        .unwrap()
                        .replace("s-missing", "s2"),
                    "{what}"
                );
            }
        }
    }
    // A scoped viewer reads only its stores' rows.
    let vin = who.iter().find(|w| w.name == "vin").unwrap();
    let (s, v) = api.call_as(&vin.token, Method::GET, "/stores", None).await;
    assert_eq!(s, 200, "{v}");
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["s1"], "s3 was removed above; s2 is outside");
    let (s, v) = api
        .call_as(&vin.token, Method::GET, "/status/lists", None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v.as_array().unwrap().iter().all(|r| r["store"] == "s1"),
        "{v}"
    );
    // A store token is never an HQ caller.
    let (s, v) = api
        .call(Method::POST, "/stores/s1/tokens", Some(json!({})))
        .await;
    assert_eq!(s, 201, "{v}");
    let store_token = v["token"].as_str().unwrap();
    let (s, _) = api.call_as(store_token, Method::GET, "/stores", None).await;
    assert_eq!(s, 403);
}

/// A scoped editor lists the templates and store groups of her region,
/// narrowed to her stores, and saves templates for it; nothing of another
/// region's stores shows, and nothing she saves reaches them.
#[tokio::test]
async fn a_scoped_editor_lists_and_saves_her_regions_templates_and_groups() {
    let (api, who, _) = fleet().await;
    let ned = &who.iter().find(|w| w.name == "ned").unwrap().token;
    let (s, v) = api.call_as(ned, Method::GET, "/store-groups", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"region-north": ["s1", "s3"]}));

    for (name, stores) in [
        ("Both regions", json!(["s1", "s2"])),
        ("South only", json!(["s2"])),
        ("Not assigned yet", json!([])),
    ] {
        let (s, v) = api
            .call(
                Method::POST,
                "/templates",
                Some(json!({"name": name, "rrule": "FREQ=DAILY", "time": "07:00",
                            "tasks": [{"title": "Unlock"}], "stores": stores})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, v) = api.call_as(ned, Method::GET, "/templates", None).await;
    assert_eq!(s, 200, "{v}");
    let mut seen: Vec<(&str, &Value)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["template"]["name"].as_str().unwrap(), &t["stores"]))
        .collect();
    seen.sort_by_key(|t| t.0);
    assert_eq!(
        seen,
        [
            ("Both regions", &json!(["s1"])),
            ("Not assigned yet", &json!([])),
        ]
    );
    let (_, all) = api.call(Method::GET, "/templates", None).await;
    assert_eq!(all.as_array().unwrap().len(), 3, "the admin sees every one");

    // She saves templates for her stores and groups, not for others' or
    // for every store, and revises only those reaching her stores alone.
    let template = |id: Option<&str>, stores: Value, groups: Value| {
        json!({"id": id, "name": "North opening", "rrule": "FREQ=DAILY", "time": "07:00",
               "tasks": [{"title": "Unlock"}], "stores": stores, "groups": groups})
    };
    let save = |body: Value| api.call_as(ned, Method::POST, "/templates", Some(body));
    let (s, v) = save(template(None, json!([]), json!(["region-north"]))).await;
    assert_eq!(s, 201, "{v}");
    let mine = v["id"].as_str().unwrap().to_owned();
    let (s, v) = save(template(Some(&mine), json!(["s1"]), json!([]))).await;
    assert_eq!((s, &v["revision"]), (201, &json!(2)), "{v}");
    let (s, v) = save(template(None, json!(["s2"]), json!([]))).await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = save(template(None, json!([]), json!(["region-south"]))).await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = save(template(None, json!([]), json!([]))).await;
    assert_eq!(s, 403, "a template for every store: {v}");
    let both = all
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["template"]["name"] == "Both regions")
        .unwrap()["template"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, v) = save(template(Some(&both), json!(["s1"]), json!([]))).await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("outside your scope"),
        "{v}"
    );
}

/// The two examples, and what the audit keeps of them.
#[tokio::test]
async fn a_viewer_publishing_gets_403_and_a_scoped_editor_404_and_the_audit_says_so() {
    let (api, who, _) = fleet().await;
    let token = |n: &str| who.iter().find(|w| w.name == n).unwrap().token.clone();
    let list = |store: &str| json!({"store": store, "name": "Audit", "date": "2026-12-02", "tasks": [{"title": "Check"}]});
    let (s, _) = api
        .call_as(&token("val"), Method::POST, "/lists", Some(list("s1")))
        .await;
    assert_eq!(s, 403);
    let (s, _) = api
        .call_as(&token("ned"), Method::POST, "/lists", Some(list("s2")))
        .await;
    assert_eq!(s, 404);
    let (s, v) = api
        .call_as(&token("ned"), Method::POST, "/lists", Some(list("s1")))
        .await;
    assert_eq!(s, 201, "{v}");

    let (s, audit) = api.call(Method::GET, "/audit?user=ned", None).await;
    assert_eq!(s, 200, "{audit}");
    let rows = audit.as_array().unwrap();
    let lists: Vec<(&str, u64, &str)> = rows
        .iter()
        .filter(|r| r["action"] == "POST /api/lists")
        .map(|r| {
            (
                r["stores"][0].as_str().unwrap(),
                r["status"].as_u64().unwrap(),
                r["user"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lists,
        vec![("s1", 201, "ned"), ("s2", 404, "ned")],
        "newest first"
    );
    let (_, val) = api.call(Method::GET, "/audit?user=val", None).await;
    assert!(
        val.as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == 403 && r["action"] == "POST /api/lists"),
        "{val}"
    );
    // The admin token's writes are audited under its own name; reads are
    // not; a write to every store names "*".
    let (s, v) = api
        .call(
            Method::POST,
            "/purge",
            Some(json!({"before": "2020-01-01"})),
        )
        .await;
    assert_eq!(s, 200, "a dry run: {v}");
    let (_, mine) = api.call(Method::GET, "/audit?user=admin-token", None).await;
    assert_eq!(mine[0]["action"], "POST /api/purge");
    assert_eq!(mine[0]["stores"], json!(["*"]));
    let actions: Vec<&str> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"POST /api/stores"), "{actions:?}");
    assert!(!actions.iter().any(|a| a.starts_with("GET")), "{actions:?}");
    // A viewer may not read the audit.
    let (s, _) = api
        .call_as(&token("val"), Method::GET, "/audit", None)
        .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn sign_in_is_rate_limited_tokens_are_revocable_and_disabling_cuts_an_account_off() {
    let (api, who, _) = fleet().await;
    let eve = who.iter().find(|w| w.name == "eve").unwrap();
    let login = |password: &str| json!({"user": "val", "password": password, "label": "laptop"});
    for _ in 0..hub::sign_in::MAX_FAILURES {
        let (s, _) = api
            .call_as("", Method::POST, "/login", Some(login("wrong password")))
            .await;
        assert_eq!(s, 401);
    }
    let (s, v) = api
        .call_as("", Method::POST, "/login", Some(login("long enough pw")))
        .await;
    assert_eq!(s, 429, "locked even with the right password: {v}");
    // Another account from the same source is not locked.
    let (s, v) = api
        .call_as(
            "",
            Method::POST,
            "/login",
            Some(json!({"user": "eve", "password": "long enough pw"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let second = v["token"].as_str().unwrap().to_owned();

    let (s, tokens) = api
        .call_as(&eve.token, Method::GET, "/personal-tokens", None)
        .await;
    assert_eq!(s, 200, "{tokens}");
    assert_eq!(
        tokens.as_array().unwrap().len(),
        2,
        "eve's own two: {tokens}"
    );
    assert!(tokens
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["user"] == "eve"));
    let (s, _) = api
        .call_as(&eve.token, Method::GET, "/personal-tokens?user=ada", None)
        .await;
    assert_eq!(s, 403, "only an admin sees another's");
    let newest = tokens[0]["id"].as_str().unwrap();
    let (s, v) = api
        .call_as(
            &eve.token,
            Method::POST,
            &format!("/personal-tokens/{newest}/revoke"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = api.call_as(&second, Method::GET, "/stores", None).await;
    assert_eq!(s, 401, "a revoked token is refused at once");
    let (s, _) = api.call_as(&eve.token, Method::GET, "/stores", None).await;
    assert_eq!(s, 200);

    // A changed role applies to the very next write.
    let (s, v) = api
        .call(Method::PATCH, "/users/eve", Some(json!({"role": "viewer"})))
        .await;
    assert_eq!((s, &v["role"]), (200, &json!("viewer")), "{v}");
    let list =
        json!({"store": "s1", "name": "Late", "date": "2026-12-03", "tasks": [{"title": "Go"}]});
    let (s, _) = api
        .call_as(&eve.token, Method::POST, "/lists", Some(list))
        .await;
    assert_eq!(s, 403);

    let (s, v) = api
        .call(Method::PATCH, "/users/eve", Some(json!({"disabled": true})))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["disabled"], true);
    let (s, _) = api.call_as(&eve.token, Method::GET, "/stores", None).await;
    assert_eq!(s, 401, "disabling revokes the account's tokens");
    let (s, _) = api
        .call_as(
            "",
            Method::POST,
            "/login",
            Some(json!({"user": "eve", "password": "long enough pw"})),
        )
        .await;
    assert_eq!(s, 403, "a disabled account cannot sign in");
}

/// An account made without a password gets a one-time setup secret that
/// signs in only together with a new password.
#[tokio::test]
async fn a_setup_secret_must_be_replaced_at_the_first_sign_in() {
    let api = start().await;
    let (s, v) = api
        .call(
            Method::POST,
            "/users",
            Some(json!({"id": "rae", "role": "viewer"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let secret = v["setup_secret"].as_str().unwrap().to_owned();
    let (s, v) = api
        .call_as(
            "",
            Method::POST,
            "/login",
            Some(json!({"user": "rae", "password": secret})),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = api
        .call_as(
            "",
            Method::POST,
            "/login",
            Some(json!({"user": "rae", "password": secret, "new_password": "my own password"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, _) = api
        .call_as(
            "",
            Method::POST,
            "/login",
            Some(json!({"user": "rae", "password": secret})),
        )
        .await;
    assert_eq!(s, 401, "the secret is used up");
    let (s, _) = api
        .call_as(
            "",
            Method::POST,
            "/login",
            Some(json!({"user": "rae", "password": "my own password"})),
        )
        .await;
    assert_eq!(s, 201);
}

/// The first start makes the first admin with a one-time setup secret in
/// the data directory; later starts leave accounts alone.
#[tokio::test]
async fn the_first_start_makes_the_first_admin_with_a_setup_secret() {
    let dir = tempfile::tempdir().unwrap();
    let opened =
        hub::data_dir::open(dir.path(), Default::default(), None, &Default::default()).unwrap();
    let file = opened
        .setup_secret_file
        .clone()
        .expect("made at the first start");
    let secret = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api", listener.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(hub::server::run(listener, opened.state, shutdown.clone()));
    let login = |body: Value| {
        let base = base.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{base}/login"))
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, v) = login(json!({"user": "admin", "password": secret,
                              "new_password": "the admin's own"}))
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["role"], "admin");
    let r = reqwest::Client::new()
        .get(format!("{base}/users"))
        .bearer_auth(v["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    shutdown.cancel();
    drop(shutdown);
}
