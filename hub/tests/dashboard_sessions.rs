//! Dashboard sessions (issue #23): the cookie's flags, CSRF on every
//! cookie-authenticated write, the sign-in limit shared with `hub login`,
//! sign-out, and a disabled account's session refused.

mod common;

use common::admin::{start, Api};
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "long enough pw";

async fn add_account(api: &Api, name: &str, role: &str) {
    let (s, v) = api
        .call(
            Method::POST,
            "/users",
            Some(json!({"id": name, "role": role, "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
}

/// A browser's session: its cookie and its CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

/// `POST /api/session`: status, `Set-Cookie` and body.
async fn sign_in(api: &Api, user: &str, password: &str, https: bool) -> (u16, String, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/session", api.base))
        .json(&json!({"user": user, "password": password}));
    if https {
        req = req.header("x-forwarded-proto", "https");
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, cookie, r.json().await.unwrap_or(Value::Null))
}

async fn session(api: &Api, user: &str) -> Session {
    let (s, set_cookie, v) = sign_in(api, user, PASSWORD, false).await;
    assert_eq!(s, 201, "{v}");
    Session {
        cookie: set_cookie.split(';').next().unwrap().to_owned(),
        csrf: v["csrf_token"].as_str().unwrap().to_owned(),
    }
}

/// `method path` as the browser sends it: the cookie, and the CSRF token
/// when `csrf`.
async fn call(
    api: &Api,
    s: &Session,
    csrf: bool,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", api.base))
        .header(COOKIE, &s.cookie);
    if csrf {
        req = req.header("x-csrf-token", &s.csrf);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let set_cookie = r
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, set_cookie, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_session_cookie_is_httponly_samesite_strict_and_secure_over_https() {
    let api = start().await;
    add_account(&api, "eve", "editor").await;
    let (s, cookie, v) = sign_in(&api, "eve", PASSWORD, false).await;
    assert_eq!(s, 201, "{v}");
    let flags: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert!(flags[0].starts_with("hub_session="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(flags.contains(&flag), "{flag} in {cookie}");
    }
    assert!(!flags.contains(&"Secure"), "plain HTTP: {cookie}");
    assert!(
        v.get("token").is_none(),
        "the page never sees the token: {v}"
    );
    assert_eq!((&v["user"], &v["role"]), (&json!("eve"), &json!("editor")));
    assert_eq!(v["csrf_token"].as_str().unwrap().len(), 64, "{v}");

    let (s, cookie, _) = sign_in(&api, "eve", PASSWORD, true).await;
    assert_eq!(s, 201);
    assert!(
        cookie.split(';').any(|f| f.trim() == "Secure"),
        "behind a TLS proxy: {cookie}"
    );

    // The session is a personal token of eve's, listed as one.
    let (s, v) = api
        .call(Method::GET, "/personal-tokens?user=eve", None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|t| t["label"] == "dashboard session" && !t["expires_at"].is_null()),
        "{v}"
    );
}

#[tokio::test]
async fn a_cookie_write_without_the_csrf_token_is_refused_and_audited() {
    let api = start().await;
    add_account(&api, "eve", "editor").await;
    let eve = session(&api, "eve").await;
    let (s, _, v) = call(&api, &eve, false, Method::GET, "/stores", None).await;
    assert_eq!(s, 200, "a read needs no CSRF token: {v}");
    let (s, _, v) = call(&api, &eve, false, Method::GET, "/session", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["csrf_token"], json!(eve.csrf), "a reloaded page gets it");
    assert_eq!(v["user"], "eve");

    let list = json!({"store": "s1", "name": "Delivery", "date": "2026-12-01",
                      "tasks": [{"title": "Count pallets"}]});
    let (s, _, v) = call(
        &api,
        &eve,
        false,
        Method::POST,
        "/lists",
        Some(list.clone()),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("x-csrf-token"), "{v}");
    let wrong = Session {
        cookie: eve.cookie.clone(),
        csrf: "0".repeat(64),
    };
    let (s, _, _) = call(
        &api,
        &wrong,
        true,
        Method::POST,
        "/lists",
        Some(list.clone()),
    )
    .await;
    assert_eq!(s, 403, "another CSRF token");
    let (s, _, v) = call(&api, &eve, true, Method::POST, "/lists", Some(list)).await;
    assert_eq!(s, 201, "{v}");

    let (_, audit) = api.call(Method::GET, "/audit?user=eve", None).await;
    let lists: Vec<u64> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "POST /api/lists")
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(lists, vec![201, 403, 403], "newest first: {audit}");
}

#[tokio::test]
async fn dashboard_sign_in_is_limited_like_hub_login() {
    let api = start().await;
    add_account(&api, "eve", "editor").await;
    for _ in 0..hub::sign_in::MAX_FAILURES {
        let (s, cookie, _) = sign_in(&api, "eve", "not the password", false).await;
        assert_eq!(s, 401);
        assert!(cookie.is_empty(), "no cookie for a wrong password");
    }
    let (s, cookie, v) = sign_in(&api, "eve", PASSWORD, false).await;
    assert_eq!(s, 429, "locked even with the right password: {v}");
    assert!(cookie.is_empty());
    // The same count as `hub login`'s.
    let (s, v) = api
        .call_as(
            "",
            Method::POST,
            "/login",
            Some(json!({"user": "eve", "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, 429, "{v}");
}

#[tokio::test]
async fn signing_out_ends_the_session_and_a_disabled_accounts_session_is_refused() {
    let api = start().await;
    add_account(&api, "eve", "editor").await;
    add_account(&api, "val", "viewer").await;

    let eve = session(&api, "eve").await;
    let (s, _, _) = call(&api, &eve, false, Method::DELETE, "/session", None).await;
    assert_eq!(s, 403, "signing out is a write: it needs the CSRF token");
    let (s, set_cookie, v) = call(&api, &eve, true, Method::DELETE, "/session", None).await;
    assert_eq!(s, 200, "{v}");
    assert!(set_cookie.contains("Max-Age=0"), "cleared: {set_cookie}");
    let (s, _, _) = call(&api, &eve, false, Method::GET, "/stores", None).await;
    assert_eq!(s, 401, "the old cookie is revoked");

    let val = session(&api, "val").await;
    let (s, _, _) = call(&api, &val, false, Method::GET, "/stores", None).await;
    assert_eq!(s, 200);
    let (s, v) = api
        .call(Method::PATCH, "/users/val", Some(json!({"disabled": true})))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _, v) = call(&api, &val, false, Method::GET, "/stores", None).await;
    assert_eq!(s, 401, "a disabled account's session: {v}");
    let (s, _, v) = call(&api, &val, true, Method::DELETE, "/session", None).await;
    assert_eq!(s, 401, "{v}");
    let (s, cookie, _) = sign_in(&api, "val", PASSWORD, false).await;
    assert_eq!(s, 403, "a disabled account cannot sign in again");
    assert!(cookie.is_empty());
}
