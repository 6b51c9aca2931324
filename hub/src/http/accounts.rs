//! HQ accounts (issue #23): signing in for a personal API token
//! (`POST /login`, rate-limited per account and source, argon2 checked
//! off the executor), accounts (`/users`, admins only), personal tokens
//! (`/personal-tokens`: one's own; an admin's, everyone's) and the audit
//! (`/audit`, admins only), and the dashboard's sessions (`/session`:
//! the same sign-in, its token in a cookie; see `session`).

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::hq_accounts::{AuditEntry, AuditQuery, Caller, HqRole, HqScope, HqUser, Need};
use engine::ids::HqUserId;
use engine::replica::hub::{token_hash, Hub};
use serde::Deserialize;
use serde_json::{json, Value};

use super::access::{
    Access::{self, Hq},
    ApiRoutes, Reach,
};
use super::auth::{require_hq, require_hq_read};
use super::reply::{bad_request, body, parse, reply, rfc3339, ApiError, JsonBody};
use super::session;
use super::state::AppState;
use crate::passwords;
use crate::runtime::now_ms;
use crate::secrets::random_token;

pub fn routes() -> ApiRoutes {
    const ADMIN: Access = Hq(Need::Administer, Reach::Nothing);
    // Any HQ role, for its own tokens.
    const OWN: Access = Hq(Need::Read, Reach::Nothing);
    ApiRoutes::default()
        .route(Method::POST, "/login", Access::Public, login)
        .route(Method::GET, "/users", ADMIN, list_users)
        .route(Method::POST, "/users", ADMIN, add_user)
        .route(Method::PATCH, "/users/{user}", ADMIN, update_user)
        .route(Method::GET, "/personal-tokens", OWN, list_personal_tokens)
        .route(
            Method::POST,
            "/personal-tokens/{id}/revoke",
            OWN,
            revoke_personal_token,
        )
        .route(Method::GET, "/audit", ADMIN, read_audit)
        .route(Method::POST, "/session", Access::Public, start_session)
        .route(Method::GET, "/session", OWN, read_session)
        .route(Method::DELETE, "/session", OWN, end_session)
}

#[derive(Deserialize)]
struct SessionSignIn {
    user: String,
    password: String,
    new_password: Option<String>,
}

/// Sign the dashboard in: the session's personal token in a cookie the
/// page cannot read, and its CSRF token in the answer (`session`).
async fn start_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    from: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    b: JsonBody<SessionSignIn>,
) -> Response {
    let req = match body(b, "{\"user\", \"password\", \"new_password\"?}") {
        Ok(r) => SignIn {
            user: r.user,
            password: r.password,
            new_password: r.new_password,
            label: Some(session::LABEL.into()),
            expires_days: None,
        },
        Err(e) => return e.into_response(),
    };
    let answer = audited_sign_in(
        &state,
        &req,
        from,
        "POST /api/session",
        Some(session::LIFETIME_MS),
    )
    .await;
    let mut v = match answer {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let token = match v.as_object_mut().and_then(|o| o.remove("token")) {
        Some(Value::String(t)) => t,
        _ => {
            return ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "sign-in answered no token".into(),
            )
            .into_response()
        }
    };
    v["csrf_token"] = json!(session::csrf_of(&token));
    let cookie = session::set_cookie(&token, session::over_https(&headers));
    (
        StatusCode::CREATED,
        [(axum::http::header::SET_COOKIE, cookie)],
        axum::Json(v),
    )
        .into_response()
}

/// Who is signed in, and the CSRF token for the session's writes (a page
/// reloaded in a signed-in browser asks this).
async fn read_session(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let caller = match require_hq_read(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut v = match &caller {
        Caller::User { id, role, scope } => {
            json!({"user": id, "role": role, "scope": scope_json(scope)})
        }
        _ => json!({"user": caller.audit_name(), "role": "admin", "scope": "all"}),
    };
    if let Some(t) = session::cookie_token(&headers) {
        v["csrf_token"] = json!(session::csrf_of(&t));
    }
    reply(StatusCode::OK, Ok(v))
}

/// Sign out: the session's token is revoked and the cookie cleared.
async fn end_session(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let https = session::over_https(&headers);
    let Some(token) = session::cookie_token(&headers) else {
        return ApiError(
            StatusCode::NOT_FOUND,
            "no dashboard session to end (a personal token is revoked with `hub tokens revoke`)"
                .into(),
        )
        .into_response();
    };
    let id = hex::encode(token_hash(&token))[..12].to_owned();
    let r = on_hub(&state, move |hub, now| {
        hub.hq_accounts().revoke_personal_token(&id, None, now)
    })
    .await
    .and_then(|r| r.map_err(ApiError::from));
    match r {
        Ok(_) => (
            StatusCode::OK,
            [(axum::http::header::SET_COOKIE, session::clear_cookie(https))],
            axum::Json(json!({"signed_out": true})),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// An account as the API shows it: never the password hash.
fn user_json(u: &HqUser) -> Value {
    json!({
        "id": u.id,
        "role": u.role,
        "scope": scope_json(&u.scope),
        "disabled": u.disabled_at.is_some(),
        "disabled_at": u.disabled_at.and_then(rfc3339),
        "must_change_password": u.must_change_password,
        "created_at": rfc3339(u.created_at),
    })
}

/// `"all"`, or the list of store groups.
fn scope_json(s: &HqScope) -> Value {
    match s {
        HqScope::AllStores => json!("all"),
        HqScope::Groups(g) => json!(g),
    }
}

/// `"all"`, `"g1,g2"` or `["g1", "g2"]`.
fn scope_of(v: &Value) -> Result<HqScope, ApiError> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|g| g.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad_request("scope: a list of store group ids"))?
            .join(","),
        _ => return Err(bad_request("scope: \"all\" or a list of store groups")),
    };
    text.parse()
        .map_err(|e: String| bad_request(format!("scope: {e}")))
}

/// Run `f` on the accounts on the hub thread.
async fn on_hub<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut Hub, i64) -> T + Send + 'static,
) -> Result<T, ApiError> {
    Ok(state
        .hub
        .registry()
        .call(move |hub, now| (f(hub, now), Vec::new()))
        .await?)
}

#[derive(Deserialize)]
struct SignIn {
    user: String,
    password: String,
    /// Required when the account must choose a password (the setup secret).
    new_password: Option<String>,
    /// What the token is for ("laptop"); default "hub login".
    label: Option<String>,
    /// The token expires after this many days; default never.
    expires_days: Option<u32>,
}

/// Sign in: a new personal token for the account.
async fn login(
    State(state): State<AppState>,
    from: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    b: JsonBody<SignIn>,
) -> Response {
    let req = match body(
        b,
        "{\"user\", \"password\", \"new_password\"?, \"label\"?, \"expires_days\"?}",
    ) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let lifetime_ms = req.expires_days.map(|d| i64::from(d) * 86_400_000);
    let answer = audited_sign_in(&state, &req, from, "POST /api/login", lifetime_ms).await;
    reply(StatusCode::CREATED, answer)
}

/// The address a sign-in came from, as the rate limit counts it.
fn source_of(from: Option<axum::Extension<ConnectInfo<SocketAddr>>>) -> String {
    from.map_or_else(|| "unknown".to_owned(), |c| c.0 .0.ip().to_string())
}

/// `sign_in`, recorded in the audit as `action` whatever its outcome.
async fn audited_sign_in(
    state: &AppState,
    req: &SignIn,
    from: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    action: &str,
    lifetime_ms: Option<i64>,
) -> Result<Value, ApiError> {
    let source = source_of(from);
    let answer = sign_in(state, req, &source, lifetime_ms).await;
    let status = match &answer {
        Ok(_) => StatusCode::CREATED,
        Err(e) => e.0,
    };
    let entry = AuditEntry {
        at_ms: now_ms(),
        user: req.user.clone(),
        action: action.into(),
        stores: Vec::new(),
        status: status.as_u16(),
        outcome: match &answer {
            Ok(_) => format!("signed in from {source}"),
            Err(e) => format!("{} (from {source})", e.1),
        },
    };
    if let Err(e) = on_hub(state, move |hub, _| hub.hq_accounts().append_audit(&entry)).await {
        tracing::error!(error = %e.1, "a sign-in could not be audited");
    }
    answer
}

/// A new personal token for `req`'s account, lasting `lifetime_ms` (or
/// until revoked).
async fn sign_in(
    state: &AppState,
    req: &SignIn,
    source: &str,
    lifetime_ms: Option<i64>,
) -> Result<Value, ApiError> {
    let wrong = || {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "wrong user or password".to_owned(),
        )
    };
    if let Err(wait) = state.sign_in.check(&req.user, source, Instant::now()) {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many wrong passwords for {} from {source}; try again in {} s",
                req.user,
                wait.as_secs().max(1)
            ),
        ));
    }
    let id: Option<HqUserId> = req.user.parse().ok();
    let user = match id {
        Some(id) => state.readers.accounts(move |a| a.hq_user(&id)).await??,
        None => None,
    };
    // Verify even for an unknown account, so the answer takes as long.
    let stored = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| DUMMY_HASH.to_owned());
    let ok = passwords::verify_off_executor(req.password.clone(), stored).await;
    let user = match user {
        Some(u) if ok && u.disabled_at.is_none() => u,
        Some(u) if ok => {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!("account {} is disabled; ask an admin", u.id),
            ))
        }
        _ => {
            state.sign_in.failed(&req.user, source, Instant::now());
            return Err(wrong());
        }
    };
    state.sign_in.succeeded(&req.user, source);
    let mut new_hash = None;
    if user.must_change_password || req.new_password.is_some() {
        let Some(new) = req.new_password.clone() else {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                "this password is a one-time setup secret: choose your own password (send \
                 new_password; `hub login` asks for it)"
                    .into(),
            ));
        };
        if let Some(why) = passwords::too_weak(&new) {
            return Err(bad_request(why));
        }
        new_hash = Some(passwords::hash_off_executor(new).await?);
    }
    let token = random_token();
    let hash = token_hash(&token);
    let label = req.label.clone().unwrap_or_else(|| "hub login".into());
    let mut account = user.clone();
    on_hub(state, move |hub, now| {
        let expires = lifetime_ms.map(|l| now + l);
        if let Some(h) = new_hash {
            account.password_hash = h;
            account.must_change_password = false;
            hub.hq_accounts().put_hq_user(&account)?;
        }
        hub.hq_accounts()
            .put_personal_token(hash, &account.id, &label, now, expires)
    })
    .await??;
    Ok(json!({
        "token": token,
        "user": user.id,
        "role": user.role,
        "scope": scope_json(&user.scope),
    }))
}

/// A valid argon2id hash of a random password nobody knows, to verify
/// against when the account does not exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$bm9ib2R5LWhhcy10aGlz$Hm4L0o7QwM1sP8q6Z0ZrWq3VPT3y5tL9n0v8m0yq2Xc";

async fn list_users(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = require_hq_read(&state, &headers).await {
        return r;
    }
    let r: Result<Value, ApiError> = async {
        let users = state.readers.accounts(|a| a.hq_users()).await??;
        Ok(json!(users.iter().map(user_json).collect::<Vec<_>>()))
    }
    .await;
    reply(StatusCode::OK, r)
}

#[derive(Deserialize)]
struct NewUser {
    id: String,
    role: String,
    #[serde(default = "all_stores")]
    scope: Value,
    /// Without one, a one-time setup secret is made and answered; the
    /// first sign-in must replace it.
    password: Option<String>,
}

fn all_stores() -> Value {
    json!("all")
}

async fn add_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: JsonBody<NewUser>,
) -> Response {
    if let Err(r) = require_hq(&state, &headers).await {
        return r;
    }
    let r: Result<Value, ApiError> = async {
        let req = body(
            b,
            "{\"id\", \"role\": \"admin|editor|viewer\", \"scope\"?: \"all\" or [groups], \"password\"?}",
        )?;
        let id: HqUserId = parse("user id", &req.id)?;
        let role: HqRole = req.role.parse().map_err(bad_request)?;
        let scope = scope_of(&req.scope)?;
        let (password, secret) = match req.password {
            Some(p) => {
                if let Some(why) = passwords::too_weak(&p) {
                    return Err(bad_request(why));
                }
                (p, None)
            }
            None => {
                let s = random_token();
                (s.clone(), Some(s))
            }
        };
        let password_hash = passwords::hash_off_executor(password).await?;
        let user = HqUser {
            id: id.clone(),
            role,
            scope,
            password_hash,
            must_change_password: secret.is_some(),
            disabled_at: None,
            created_at: now_ms(),
        };
        let u = user.clone();
        on_hub(&state, move |hub, _| {
            if hub.hq_accounts().hq_user(&u.id)?.is_some() {
                return Ok(false);
            }
            hub.hq_accounts().put_hq_user(&u).map(|()| true)
        })
        .await?
        .map_err(ApiError::from)
        .and_then(|added| {
            added.then_some(()).ok_or_else(|| {
                ApiError(
                    StatusCode::CONFLICT,
                    format!(
                        "account {id} exists; nothing was changed. To change it: `hub users \
                         update {id} ...` (PATCH /api/users/{id})"
                    ),
                )
            })
        })?;
        let mut v = user_json(&user);
        if let Some(s) = secret {
            v["setup_secret"] = json!(s);
        }
        Ok(v)
    }
    .await;
    reply(StatusCode::CREATED, r)
}

#[derive(Deserialize)]
struct UserChange {
    role: Option<String>,
    scope: Option<Value>,
    password: Option<String>,
    /// true: the account can no longer sign in, and its tokens are revoked.
    disabled: Option<bool>,
}

async fn update_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(user): Path<String>,
    b: JsonBody<UserChange>,
) -> Response {
    if let Err(r) = require_hq(&state, &headers).await {
        return r;
    }
    let r: Result<Value, ApiError> = async {
        let id: HqUserId = parse("user id", &user)?;
        let req = body(
            b,
            "{\"role\"?, \"scope\"?, \"password\"?, \"disabled\"?: true|false}",
        )?;
        let role: Option<HqRole> = req
            .role
            .map(|r| r.parse())
            .transpose()
            .map_err(bad_request)?;
        let scope = req.scope.as_ref().map(scope_of).transpose()?;
        let password_hash = match req.password {
            Some(p) => {
                if let Some(why) = passwords::too_weak(&p) {
                    return Err(bad_request(why));
                }
                Some(passwords::hash_off_executor(p).await?)
            }
            None => None,
        };
        let disabled = req.disabled;
        let missing = id.clone();
        let updated = on_hub(&state, move |hub, now| {
            let accounts = hub.hq_accounts();
            let Some(mut u) = accounts.hq_user(&id)? else {
                return Ok::<_, engine::storage::StorageError>(None);
            };
            if let Some(r) = role {
                u.role = r;
            }
            if let Some(s) = scope {
                u.scope = s;
            }
            if let Some(h) = password_hash {
                u.password_hash = h;
                u.must_change_password = false;
            }
            match disabled {
                Some(true) if u.disabled_at.is_none() => u.disabled_at = Some(now),
                Some(false) => u.disabled_at = None,
                _ => {}
            }
            accounts.put_hq_user(&u)?;
            if u.disabled_at.is_some() {
                accounts.revoke_personal_tokens_of(&u.id, now)?;
            }
            Ok(Some(u))
        })
        .await?
        .map_err(ApiError::from)?;
        match updated {
            Some(u) => Ok(user_json(&u)),
            None => Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no account {missing}; `hub users list` shows them"),
            )),
        }
    }
    .await;
    reply(StatusCode::OK, r)
}

/// The account whose tokens `caller` may see and revoke: its own, or
/// (an admin) anyone's, `None` meaning all.
fn whose_tokens(caller: &Caller, asked: Option<HqUserId>) -> Result<Option<HqUserId>, ApiError> {
    match caller {
        Caller::User { id, role, .. } if *role != HqRole::Admin => match asked {
            Some(other) if &other != id => Err(ApiError(
                StatusCode::FORBIDDEN,
                "only an admin may see or revoke another account's tokens".into(),
            )),
            _ => Ok(Some(id.clone())),
        },
        _ => Ok(asked),
    }
}

#[derive(Deserialize)]
struct TokensQuery {
    user: Option<String>,
}

async fn list_personal_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<TokensQuery>,
) -> Response {
    let caller = match require_hq_read(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r: Result<Value, ApiError> = async {
        let asked = q.user.map(|u| parse("user", &u)).transpose()?;
        let whose = whose_tokens(&caller, asked)?;
        let tokens = state
            .readers
            .accounts(move |a| a.personal_tokens(whose.as_ref()))
            .await??;
        Ok(json!(tokens
            .iter()
            .map(|t| json!({
                "id": t.id, "user": t.user, "label": t.label,
                "created_at": rfc3339(t.created_at),
                "expires_at": t.expires_at.and_then(rfc3339),
                "revoked_at": t.revoked_at.and_then(rfc3339),
            }))
            .collect::<Vec<_>>()))
    }
    .await;
    reply(StatusCode::OK, r)
}

async fn revoke_personal_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let caller = match require_hq(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r: Result<Value, ApiError> = async {
        let whose = whose_tokens(&caller, None)?;
        let token = id.clone();
        let revoked = on_hub(&state, move |hub, now| {
            hub.hq_accounts()
                .revoke_personal_token(&token, whose.as_ref(), now)
        })
        .await??;
        if !revoked {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!(
                    "no personal token {id} of yours that is not revoked already; `hub tokens \
                     list` shows them"
                ),
            ));
        }
        Ok(json!({"revoked": id}))
    }
    .await;
    reply(StatusCode::OK, r)
}

#[derive(Deserialize)]
struct AuditParams {
    /// RFC 3339, or unix milliseconds.
    since: Option<String>,
    user: Option<String>,
    limit: Option<u32>,
}

async fn read_audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<AuditParams>,
) -> Response {
    if let Err(r) = require_hq_read(&state, &headers).await {
        return r;
    }
    let r: Result<Value, ApiError> = async {
        let since_ms = q.since.as_deref().map(parse_time).transpose()?;
        let query = AuditQuery {
            since_ms,
            user: q.user,
            limit: q.limit.unwrap_or(1_000).min(100_000),
        };
        let entries = state.readers.accounts(move |a| a.audit(&query)).await??;
        Ok(json!(entries
            .iter()
            .map(|e| json!({
                "at": rfc3339(e.at_ms), "user": e.user, "action": e.action,
                "stores": e.stores, "status": e.status, "outcome": e.outcome,
            }))
            .collect::<Vec<_>>()))
    }
    .await;
    reply(StatusCode::OK, r)
}

/// RFC 3339, a date (its UTC midnight), or unix milliseconds.
fn parse_time(s: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_millis());
    }
    Err(bad_request(format!(
        "since: {s:?} is not a time; give RFC 3339 (2026-12-07T09:00:00Z), a date or unix ms"
    )))
}
