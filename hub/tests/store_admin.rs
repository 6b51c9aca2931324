//! Store administration over the admin API: rosters, store groups, store
//! updates and removal, token listing, expiry and revocation, each with
//! the 4xx answers that say what to fix.

use engine::replica::hub::HubLimits;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

mod common;
use common::admin::{start, start_with, Api};

impl Api {
    /// Open a sync connection with `token`: Ok(socket) or the HTTP status.
    async fn ws(
        &self,
        token: &str,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        u16,
    > {
        let mut req = format!("ws://{}/sync", self.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
            Err(e) => panic!("unexpected connect error: {e}"),
        }
    }

    async fn token(&self, store: &str, label: &str) -> String {
        let (s, v) = self
            .call(
                Method::POST,
                &format!("/stores/{store}/tokens"),
                Some(json!({ "label": label })),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }
}

async fn lists(api: &Api, store: &str) -> usize {
    let (_, rows) = api
        .call(Method::GET, &format!("/status/lists?store={store}"), None)
        .await;
    rows.as_array().map(Vec::len).unwrap_or(0)
}

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_stores_roster_is_edited_and_never_shows_pin_hashes() {
    let api = start().await;
    let (s, v) = api
        .call(
            Method::PUT,
            "/stores/s1/workers/w-ana",
            Some(json!({"name": "Ana", "role": "manager", "groups": ["closers"], "pin": "2468"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["has_pin"], true);
    // An update without a PIN keeps the PIN.
    let (s, v) = api
        .call(
            Method::PATCH,
            "/stores/s1/workers/w-ana",
            Some(json!({"name": "Ana B.", "role": "manager"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["has_pin"], true);
    let (s, v) = api.call(Method::GET, "/stores/s1/workers", None).await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["name"], "Ana B.");
    assert!(
        !v.to_string().contains("sha256"),
        "no PIN hash in the API: {v}"
    );

    for (path, body, code, says) in [
        (
            "/stores/s1/workers/w-bo",
            json!({"name": "Bo", "role": "cashier", "pin": "12"}),
            400,
            "4 to 8 digits",
        ),
        (
            "/stores/s1/workers/w-bo",
            json!({"name": " ", "role": "cashier"}),
            400,
            "name is empty",
        ),
        (
            "/stores/s1/workers/w-bo",
            json!({"name": "Bo", "role": "cash ier"}),
            400,
            "role",
        ),
        (
            "/stores/s1/workers/w%20bo",
            json!({"name": "Bo", "role": "cashier"}),
            400,
            "worker id",
        ),
        (
            "/stores/ghost/workers/w-bo",
            json!({"name": "Bo", "role": "cashier"}),
            404,
            "ghost",
        ),
        (
            "/stores/s1/workers/w-bo",
            json!({"role": "cashier"}),
            400,
            "bad JSON",
        ),
    ] {
        let (s, v) = api.call(Method::PUT, path, Some(body)).await;
        assert_eq!(s, code, "{path}: {v}");
        assert!(error_of(&v).contains(says), "{v} should say {says:?}");
    }
    let (_, v) = api.call(Method::GET, "/stores/s1/workers", None).await;
    assert_eq!(v.as_array().unwrap().len(), 1, "nothing partial written");

    let (s, _) = api
        .call(Method::DELETE, "/stores/s1/workers/w-ana", None)
        .await;
    assert_eq!(s, 200);
    let (s, v) = api
        .call(Method::DELETE, "/stores/s1/workers/w-ana", None)
        .await;
    assert_eq!(s, 404, "{v}");
}

#[tokio::test]
async fn a_list_assigned_to_a_group_reaches_its_stores_and_later_members() {
    let api = start().await;
    let (s, v) = api
        .call(
            Method::POST,
            "/store-groups/north/stores",
            Some(json!({"stores": ["s1"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, t) = api
        .call(
            Method::POST,
            "/templates",
            Some(
                json!({"name": "Opening", "rrule": "FREQ=DAILY", "time": "07:00",
                        "tasks": [{"title": "Unlock"}]}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    let id = t["id"].as_str().unwrap();
    let assign_path = format!("/templates/{id}/assign");
    let assign = |body: Value| api.call(Method::POST, &assign_path, Some(body));
    let (s, v) = assign(json!({"groups": ["south"]})).await;
    assert_eq!(s, 400, "{v}");
    assert!(error_of(&v).contains("unknown store group south"), "{v}");
    let (s, v) = assign(json!({})).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = assign(json!({"groups": ["north"]})).await;
    assert_eq!(s, 200, "{v}");

    assert!(
        lists(&api, "s1").await >= 14,
        "the group's store got the horizon"
    );
    assert_eq!(lists(&api, "s2").await, 0);
    // A store joining the group gets the group's lists at once.
    api.call(
        Method::POST,
        "/store-groups/north/stores",
        Some(json!({"stores": ["s2"]})),
    )
    .await;
    assert!(lists(&api, "s2").await >= 14);
    let (_, g) = api.call(Method::GET, "/store-groups", None).await;
    assert_eq!(g, json!({"north": ["s1", "s2"]}));

    let (s, v) = api
        .call(
            Method::POST,
            "/store-groups/north/stores",
            Some(json!({"stores": ["ghost"]})),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    let (s, _) = api
        .call(Method::DELETE, "/store-groups/north/stores/s2", None)
        .await;
    assert_eq!(s, 200);
    let (s, v) = api
        .call(Method::DELETE, "/store-groups/north/stores/s2", None)
        .await;
    assert_eq!(s, 404, "{v}");
}

#[tokio::test]
async fn tokens_are_listed_by_id_and_expire_or_revoke_live_connections() {
    let api = start().await;
    let t1 = api.token("s1", "till 1").await;
    let t2 = api.token("s1", "till 2").await;
    let (s, v) = api.call(Method::GET, "/tokens?store=s1", None).await;
    assert_eq!(s, 200);
    let listed = v.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(!v.to_string().contains(&t1), "tokens are never listed");
    let id_of = |label: &str| {
        listed.iter().find(|t| t["label"] == label).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (id1, id2) = (id_of("till 1"), id_of("till 2"));
    assert!(listed.iter().all(|t| t["state"] == "active"));

    // Expiring a token closes the live connection; it cannot reconnect.
    let mut live = api.ws(&t1).await.unwrap();
    let (s, v) = api
        .call(
            Method::POST,
            &format!("/tokens/{id1}/expire"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(Ok(m)) = live.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the expired token's connection was closed");
    assert_eq!(api.ws(&t1).await.err(), Some(401));
    assert!(api.ws(&t2).await.is_ok(), "the other token still works");

    // Expiry in the future keeps it working until then.
    let (s, _) = api
        .call(
            Method::POST,
            &format!("/tokens/{id2}/expire"),
            Some(json!({"at": "2099-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(s, 200);
    assert!(api.ws(&t2).await.is_ok());
    let (s, v) = api
        .call(
            Method::POST,
            &format!("/tokens/{id2}/expire"),
            Some(json!({"at": "tomorrow"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = api
        .call(Method::POST, &format!("/tokens/{id2}/revoke"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(api.ws(&t2).await.err(), Some(401));
    let (s, v) = api
        .call(Method::POST, &format!("/tokens/{id2}/revoke"), None)
        .await;
    assert_eq!(s, 404, "{v}");
    let (s, _) = api.call(Method::POST, "/tokens/nothex/revoke", None).await;
    assert_eq!(s, 404);
    let (_, v) = api.call(Method::GET, "/tokens?store=s1", None).await;
    let states: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.len(), 2);
    assert!(
        states.contains(&"expired") && states.contains(&"revoked"),
        "{states:?}"
    );
}

#[tokio::test]
async fn a_store_is_updated_and_removed_with_its_tokens_and_lists() {
    let api = start().await;
    let (s, v) = api
        .call(
            Method::PATCH,
            "/stores/s1",
            Some(json!({"time_zone": "Mars/Olympus"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(error_of(&v).contains("time_zone"), "{v}");
    let (s, v) = api
        .call(
            Method::PATCH,
            "/stores/s1",
            Some(json!({"name": "Main St"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "Main St");
    assert_eq!(v["time_zone"], "Europe/Berlin", "unchanged");
    let (s, _) = api
        .call(Method::PATCH, "/stores/ghost", Some(json!({"name": "x"})))
        .await;
    assert_eq!(s, 404);

    let token = api.token("s1", "till").await;
    let (s, v) = api
        .call(
            Method::POST,
            "/lists",
            Some(
                json!({"store": "s1", "name": "Closing", "date": "2026-11-26",
                        "tasks": [{"title": "Lock up"}]}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api.call(Method::DELETE, "/stores/s1", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["tokens_revoked"], 1);
    assert_eq!(v["documents_deleted"], 2, "its list and its directory");
    assert_eq!(api.ws(&token).await.err(), Some(401));
    let (_, stores) = api.call(Method::GET, "/stores", None).await;
    let ids: Vec<&str> = stores
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["s2"]);
    let (_, rows) = api.call(Method::GET, "/status/lists?store=s1", None).await;
    assert_eq!(rows, json!([]));
    let (s, _) = api.call(Method::DELETE, "/stores/s1", None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn the_materialization_horizon_is_configurable() {
    let api = start_with(HubLimits {
        horizon_days: 3,
        ..HubLimits::default()
    })
    .await;
    let (_, t) = api
        .call(
            Method::POST,
            "/templates",
            Some(
                json!({"name": "Opening", "rrule": "FREQ=DAILY", "time": "07:00",
                        "tasks": [{"title": "Unlock"}]}),
            ),
        )
        .await;
    let id = t["id"].as_str().unwrap();
    let (s, v) = api
        .call(
            Method::POST,
            &format!("/templates/{id}/assign"),
            Some(json!({"stores": ["s1"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(lists(&api, "s1").await, 4, "today and three days ahead");
}

/// The CLI commands call the endpoints above (wiring, not just parsing).
#[tokio::test]
async fn the_cli_drives_the_same_endpoints() {
    use hub::cli::{self, GroupsCmd, ListsCmd, Remote, StoresCmd, WorkersCmd};
    let api = start().await;
    let remote = Remote {
        hub_url: api.base.trim_end_matches("/api").to_owned(),
        token: Some("admin".into()),
        token_file: None,
        json: true,
    };
    cli::workers(
        &remote,
        WorkersCmd::Add {
            store: "s1".into(),
            id: "w-ana".into(),
            name: "Ana".into(),
            role: "manager".into(),
            groups: vec!["closers".into()],
            pin: Some("2468".into()),
        },
    )
    .await
    .unwrap();
    let (_, v) = api.call(Method::GET, "/stores/s1/workers", None).await;
    assert_eq!(v[0]["groups"], json!(["closers"]));
    let err = cli::workers(
        &remote,
        WorkersCmd::Add {
            store: "s1".into(),
            id: "w-bo".into(),
            name: "Bo".into(),
            role: "cashier".into(),
            groups: vec![],
            pin: Some("12".into()),
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("4 to 8 digits"), "{err}");

    cli::groups(
        &remote,
        GroupsCmd::Add {
            group: "north".into(),
            stores: vec!["s1".into(), "s2".into()],
        },
    )
    .await
    .unwrap();
    let (_, t) = api
        .call(
            Method::POST,
            "/templates",
            Some(
                json!({"name": "Opening", "rrule": "FREQ=DAILY", "time": "07:00",
                        "tasks": [{"title": "Unlock"}]}),
            ),
        )
        .await;
    let template = t["id"].as_str().unwrap().to_owned();
    cli::lists(
        &remote,
        ListsCmd::Assign {
            template: template.clone(),
            stores: vec![],
            groups: vec!["north".into()],
        },
    )
    .await
    .unwrap();
    assert!(lists(&api, "s2").await >= 14);
    let before = [lists(&api, "s1").await, lists(&api, "s2").await];
    let publish = |stores: Vec<String>| ListsCmd::Publish {
        stores,
        name: "Delivery".into(),
        date: "2026-12-01".into(),
        tasks: vec!["Count pallets@09:00".into()],
    };
    // One store, then the same list to both in one request.
    cli::lists(&remote, publish(vec!["s1".into()]))
        .await
        .unwrap();
    cli::lists(&remote, publish(vec!["s1".into(), "s2".into()]))
        .await
        .unwrap();
    assert_eq!(lists(&api, "s1").await, before[0] + 2);
    assert_eq!(lists(&api, "s2").await, before[1] + 1);
    assert!(
        cli::lists(&remote, publish(vec!["s1".into(), "nowhere".into()]))
            .await
            .is_err()
    );
    assert_eq!(lists(&api, "s1").await, before[0] + 2, "nothing published");
    assert!(cli::lists(
        &remote,
        ListsCmd::Assign {
            template,
            stores: vec![],
            groups: vec![],
        },
    )
    .await
    .is_err());

    api.token("s1", "till").await;
    cli::stores(&remote, StoresCmd::Tokens { store: None })
        .await
        .unwrap();
    let (_, toks) = api.call(Method::GET, "/tokens?store=s1", None).await;
    let id = toks[0]["id"].as_str().unwrap().to_owned();
    cli::stores(
        &remote,
        StoresCmd::Revoke {
            token_to_revoke: None,
            id: Some(id),
        },
    )
    .await
    .unwrap();
    let (_, toks) = api.call(Method::GET, "/tokens?store=s1", None).await;
    assert_eq!(toks[0]["state"], "revoked");
    assert!(
        cli::stores(
            &remote,
            StoresCmd::Remove {
                id: "s2".into(),
                yes: false
            }
        )
        .await
        .is_err(),
        "removal needs --yes"
    );
    cli::stores(
        &remote,
        StoresCmd::Remove {
            id: "s2".into(),
            yes: true,
        },
    )
    .await
    .unwrap();
    let (_, stores) = api.call(Method::GET, "/stores", None).await;
    assert_eq!(stores.as_array().unwrap().len(), 1);
}
