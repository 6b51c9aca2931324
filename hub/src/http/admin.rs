//! Store administration (HQ token required): each store's worker roster,
//! store groups, and tokens (issue, list, expire, revoke). Adding and
//! changing are distinct: `PUT` of a worker adds one (409 if the id is
//! taken), `PATCH` changes the fields it is given.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::document::directory::{self, PinHash, RosterWorker};
use engine::ids::{Principal, StoreGroupId, StoreId, WorkerGroupId, WorkerId};
use serde::Deserialize;
use serde_json::{json, Value};

use super::access::{
    Access::{self, Hq},
    ApiRoutes, Reach,
};
use super::auth::{hq, hq_read, require_hq_read};
use super::reply::{bad_request, body, json_reply, nonempty, parse, reply, ApiError, JsonBody};
use super::state::AppState;
use crate::runtime::answer_with;
use crate::secrets::random_token;
use axum::http::Method;
use engine::hq_accounts::{HqScope, Need};

pub fn routes() -> ApiRoutes {
    const ROSTER: Access = Hq(Need::Author, Reach::PathStore);
    const ADMIN: Access = Hq(Need::Administer, Reach::Nothing);
    const WORKER: &str = "/stores/{id}/workers/{worker}";
    ApiRoutes::default()
        .route(
            Method::GET,
            "/stores/{id}/workers",
            Hq(Need::Read, Reach::PathStore),
            list_workers,
        )
        .route(Method::PUT, WORKER, ROSTER, add_worker)
        .route(Method::PATCH, WORKER, ROSTER, update_worker)
        .route(Method::DELETE, WORKER, ROSTER, remove_worker)
        .route(
            Method::GET,
            "/store-groups",
            Hq(Need::Read, Reach::Scope),
            list_groups,
        )
        .route(
            Method::POST,
            "/store-groups/{group}/stores",
            Hq(Need::Administer, Reach::Named),
            add_to_group,
        )
        .route(
            Method::DELETE,
            "/store-groups/{group}/stores/{store}",
            Hq(Need::Administer, Reach::PathStore),
            remove_from_group,
        )
        .route(
            Method::POST,
            "/stores/{id}/tokens",
            Hq(Need::Administer, Reach::PathStore),
            issue_token,
        )
        .route(Method::GET, "/tokens", ADMIN, list_tokens)
        .route(Method::POST, "/tokens/revoke", ADMIN, revoke_token)
        .route(Method::POST, "/tokens/{id}/expire", ADMIN, expire_token)
        .route(
            Method::POST,
            "/tokens/{id}/revoke",
            ADMIN,
            revoke_token_by_id,
        )
}

/// A worker as the API shows it: never the PIN hash.
fn worker_json(id: &WorkerId, w: &RosterWorker) -> Value {
    json!({
        "id": id,
        "name": w.name,
        "role": w.role,
        "groups": w.groups,
        "has_pin": w.pin.is_some(),
    })
}

async fn list_workers(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    hq_read!(state, headers);
    let store: StoreId = match parse("store id", &id) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let r = state
        .hub
        .for_store(&store)
        .call_soon(move |hub, _| {
            let r = hub.roster(&store).map(|roster| {
                roster
                    .iter()
                    .map(|(id, w)| worker_json(id, w))
                    .collect::<Vec<_>>()
            });
            (r, Vec::new())
        })
        .await;
    json_reply(r)
}

#[derive(Deserialize)]
struct NewWorker {
    name: String,
    role: String,
    #[serde(default)]
    groups: Vec<String>,
    /// 4 to 8 digits.
    pin: Option<String>,
}

/// A change to a worker: only the fields given change.
#[derive(Deserialize)]
struct WorkerUpdate {
    name: Option<String>,
    role: Option<String>,
    /// Replaces the worker's groups (`[]` clears them).
    groups: Option<Vec<String>>,
    /// A new PIN, 4 to 8 digits.
    pin: Option<String>,
}

fn parse_groups(groups: &[String]) -> Result<Vec<WorkerGroupId>, ApiError> {
    groups
        .iter()
        .map(|g| parse(&format!("group {g:?}"), g))
        .collect()
}

/// The stored form of `pin` for `worker`: a salted hash.
fn hash_pin(worker: &WorkerId, pin: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..]);
    Ok(PinHash::new(worker, pin, salt)
        .map_err(|e| bad_request(e.to_string()))?
        .to_string())
}

fn role(r: &str) -> Result<WorkerGroupId, ApiError> {
    directory::parse_role(r).map_err(|e| bad_request(e.to_string()))
}

/// `PUT /api/stores/{id}/workers/{worker}`: add a worker. A worker already
/// on the roster is a 409 that names `hub workers update` (PATCH): adding
/// must not silently replace their groups or PIN.
async fn add_worker(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, worker)): Path<(String, String)>,
    b: JsonBody<NewWorker>,
) -> Response {
    hq!(state, headers);
    let r: Result<Value, ApiError> = async {
        let store: StoreId = parse("store id", &id)?;
        let worker: WorkerId = parse("worker id", &worker)?;
        let req = body(
            b,
            "{\"name\", \"role\", \"groups\": [..], \"pin\": \"4-8 digits\"}",
        )?;
        let rec = RosterWorker {
            name: nonempty("name", req.name)?,
            role: role(&req.role)?,
            groups: parse_groups(&req.groups)?,
            pin: req.pin.map(|p| hash_pin(&worker, &p)).transpose()?,
        };
        let w = worker.clone();
        let rec = state
            .hub
            .for_store(&store)
            .call(move |hub, now| {
                let r = (|| {
                    if hub.roster(&store)?.contains_key(&w) {
                        return Err(ApiError(
                            StatusCode::CONFLICT,
                            format!(
                                "worker {w} is already on the roster of store {store}; nothing was \
                                 changed. To change them: `hub workers update --store {store} --id {w} \
                                 [--name ..] [--role ..] [--group ..] [--pin ..]` \
                                 (PATCH /api/stores/{store}/workers/{w})"
                            ),
                        ));
                    }
                    let out = hub.put_worker(&store, &w, &rec, now)?;
                    Ok((rec, out))
                })();
                answer_with(r)
            })
            .await??;
        Ok(worker_json(&worker, &rec))
    }
    .await;
    reply(StatusCode::CREATED, r)
}

/// `PATCH /api/stores/{id}/workers/{worker}`: change the fields given;
/// the rest (groups and PIN included) stay. 404 if not on the roster.
async fn update_worker(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, worker)): Path<(String, String)>,
    b: JsonBody<WorkerUpdate>,
) -> Response {
    hq!(state, headers);
    let r: Result<Value, ApiError> = async {
        let store: StoreId = parse("store id", &id)?;
        let worker: WorkerId = parse("worker id", &worker)?;
        let req = body(
            b,
            "{\"name\"?, \"role\"?, \"groups\"?: [..], \"pin\"?: \"4-8 digits\"}",
        )?;
        if req.name.is_none() && req.role.is_none() && req.groups.is_none() && req.pin.is_none() {
            return Err(bad_request(
                "nothing to change: give name, role, groups and/or pin",
            ));
        }
        let name = req.name.map(|n| nonempty("name", n)).transpose()?;
        let new_role = req.role.as_deref().map(role).transpose()?;
        let groups = req.groups.as_deref().map(parse_groups).transpose()?;
        let pin = req.pin.map(|p| hash_pin(&worker, &p)).transpose()?;
        let w = worker.clone();
        let rec = state
            .hub
            .for_store(&store)
            .call(move |hub, now| {
                let r = (|| {
                    let Some(mut rec) = hub.roster(&store)?.remove(&w) else {
                        return Err(ApiError(
                            StatusCode::NOT_FOUND,
                            format!(
                                "worker {w} is not on the roster of store {store}; add them with \
                                 `hub workers add --store {store} --id {w} ...`"
                            ),
                        ));
                    };
                    rec.name = name.unwrap_or(rec.name);
                    rec.role = new_role.unwrap_or(rec.role);
                    rec.groups = groups.unwrap_or(rec.groups);
                    rec.pin = pin.or(rec.pin);
                    let out = hub.put_worker(&store, &w, &rec, now)?;
                    Ok((rec, out))
                })();
                answer_with(r)
            })
            .await??;
        Ok(worker_json(&worker, &rec))
    }
    .await;
    reply(StatusCode::OK, r)
}

async fn remove_worker(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, worker)): Path<(String, String)>,
) -> Response {
    hq!(state, headers);
    let r: Result<Value, ApiError> = async {
        let store: StoreId = parse("store id", &id)?;
        let worker: WorkerId = parse("worker id", &worker)?;
        let w = worker.clone();
        let removed = state
            .hub
            .for_store(&store)
            .call(move |hub, now| answer_with(hub.remove_worker(&store, &w, now)))
            .await??;
        if removed {
            Ok(json!({"removed": worker}))
        } else {
            Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("worker {worker} is not on that store's roster"),
            ))
        }
    }
    .await;
    reply(StatusCode::OK, r)
}

/// Every store group and its stores; a caller scoped to some groups sees
/// only those (whose stores are all its own), so it can publish and
/// assign to its region by group.
async fn list_groups(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let caller = match require_hq_read(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r = state
        .hub
        .registry()
        .call_soon(move |hub, _| {
            let groups = hub.store_groups().map(|mut groups| {
                if let HqScope::Groups(mine) = caller.scope() {
                    groups.retain(|g, _| mine.contains(g));
                }
                groups
            });
            (groups, Vec::new())
        })
        .await;
    json_reply(r)
}

#[derive(Deserialize)]
struct Members {
    stores: Vec<String>,
}

async fn add_to_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(group): Path<String>,
    b: JsonBody<Members>,
) -> Response {
    hq!(state, headers);
    let r: Result<Value, ApiError> = async {
        let group: StoreGroupId = parse("group id", &group)?;
        let req = body(b, "{\"stores\": [ids]}")?;
        if req.stores.is_empty() {
            return Err(bad_request("name at least one store"));
        }
        let stores = req
            .stores
            .iter()
            .map(|s| parse(&format!("store {s:?}"), s))
            .collect::<Result<Vec<StoreId>, _>>()?;
        let g = group.clone();
        let members = state
            .hub
            .registry()
            .call(move |hub, now| {
                let r = hub
                    .add_to_group(&g, &stores)
                    .and_then(|()| hub.store_groups());
                // Lists assigned to the group reach its new members now.
                let out = match &r {
                    Ok(_) => crate::replicas::materialize_now(hub, now),
                    Err(_) => Vec::new(),
                };
                (r, out)
            })
            .await??;
        state
            .hub
            .materialize_on_other_threads(state.hub.registry())
            .await;
        Ok(json!({"group": group, "stores": members.get(&group).cloned().unwrap_or_default()}))
    }
    .await;
    reply(StatusCode::OK, r)
}

async fn remove_from_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((group, store)): Path<(String, String)>,
) -> Response {
    hq!(state, headers);
    let r: Result<Value, ApiError> = async {
        let group: StoreGroupId = parse("group id", &group)?;
        let store: StoreId = parse("store id", &store)?;
        let s = store.clone();
        let g = group.clone();
        let n = state
            .hub
            .registry()
            .call(move |hub, _| (hub.remove_from_group(&g, &[s]), Vec::new()))
            .await??;
        if n == 0 {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("store {store} is not in group {group}"),
            ));
        }
        Ok(json!({"group": group, "removed": store}))
    }
    .await;
    reply(StatusCode::OK, r)
}

#[derive(Deserialize)]
struct TokenQuery {
    store: Option<String>,
}

async fn list_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    hq_read!(state, headers);
    let store: Option<StoreId> = match q.store.as_deref().map(|s| parse("store", s)).transpose() {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let r = state
        .hub
        .registry()
        .call_soon(move |hub, now| {
            let r = hub.list_tokens(store.as_ref()).map(|v| {
                v.into_iter()
                    .map(|t| {
                        let state = if t.revoked_at.is_some() {
                            "revoked"
                        } else if t.expires_at.is_some_and(|e| e <= now) {
                            "expired"
                        } else {
                            "active"
                        };
                        json!({
                            "id": t.id, "principal": t.principal, "label": t.label,
                            "created_at": rfc3339_secs(t.created_at),
                            "expires_at": t.expires_at.map(rfc3339_secs),
                            "revoked_at": t.revoked_at.map(rfc3339_secs),
                            "state": state,
                        })
                    })
                    .collect::<Vec<_>>()
            });
            (r, Vec::new())
        })
        .await;
    json_reply(r)
}

/// Unix ms as RFC 3339 (UTC, seconds), for the token list.
fn rfc3339_secs(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

#[derive(Deserialize, Default)]
struct Expire {
    /// When it stops working (RFC 3339); default now.
    at: Option<String>,
}

async fn expire_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    b: Option<Json<Expire>>,
) -> Response {
    hq!(state, headers);
    let r: Result<Value, ApiError> = async {
        let at = match b.and_then(|Json(e)| e.at) {
            Some(at) => Some(
                chrono::DateTime::parse_from_rfc3339(&at)
                    .map_err(|e| {
                        bad_request(format!("at: {e}; use RFC 3339, e.g. 2026-12-01T00:00:00Z"))
                    })?
                    .timestamp_millis(),
            ),
            None => None,
        };
        let token = id.clone();
        let done = state
            .hub
            .registry()
            .call(move |hub, now| {
                let hash = hub.db().token_hash_by_id(&token);
                match hub.expire_token_by_id(&token, at.unwrap_or(now), now) {
                    Ok(Some(out)) => (Ok(hash.ok().flatten()), out),
                    Ok(None) => (Ok(None), Vec::new()),
                    Err(e) => (Err(e), Vec::new()),
                }
            })
            .await??;
        let Some(hash) = done else {
            return Err(not_a_token(&id));
        };
        if at.is_none_or(|at| at <= crate::runtime::now_ms()) {
            state.hub.close_token_on_other_threads(hash).await;
        }
        Ok(json!({"expired": id}))
    }
    .await;
    reply(StatusCode::OK, r)
}

fn not_a_token(id: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!(
            "no active token with id {id:?}; ids are the 12 hex digits `GET /api/tokens` lists"
        ),
    )
}

async fn revoke_token_by_id(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    hq!(state, headers);
    let r: Result<Value, ApiError> = async {
        let token = id.clone();
        let done = state
            .hub
            .registry()
            .call(move |hub, now| {
                let hash = hub.db().token_hash_by_id(&token);
                match hub.revoke_token_by_id(&token, now) {
                    Ok(Some(out)) => (Ok(hash.ok().flatten()), out),
                    Ok(None) => (Ok(None), Vec::new()),
                    Err(e) => (Err(e), Vec::new()),
                }
            })
            .await??;
        let Some(hash) = done else {
            return Err(not_a_token(&id));
        };
        state.hub.close_token_on_other_threads(hash).await;
        Ok(json!({"revoked": id}))
    }
    .await;
    reply(StatusCode::OK, r)
}

#[derive(Deserialize, Default)]
struct NewToken {
    #[serde(default)]
    label: String,
    expires_in_hours: Option<u32>,
}

async fn issue_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<NewToken>>,
) -> Response {
    hq!(state, headers);
    let result: Result<serde_json::Value, ApiError> = async {
        let store: StoreId = id
            .parse()
            .map_err(|e| bad_request(format!("store id: {e}")))?;
        let body = body.map(|b| b.0).unwrap_or_default();
        let token = random_token();
        let t = token.clone();
        let expires = body.expires_in_hours.map(|h| h as i64 * 3_600_000);
        state
            .hub
            .registry()
            .call(move |hub, now| {
                let r = hub.add_token(
                    &t,
                    &Principal::Store(store),
                    &body.label,
                    now,
                    expires.map(|e| now + e),
                );
                (r, Vec::new())
            })
            .await??;
        Ok(json!({ "token": token }))
    }
    .await;
    reply(StatusCode::CREATED, result)
}

#[derive(Deserialize)]
struct Revoke {
    token: String,
}

async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<Revoke>,
) -> Response {
    hq!(state, headers);
    let hash = engine::replica::hub::token_hash(&body.token);
    let revoked = state
        .hub
        .registry()
        .call(move |hub, now| match hub.revoke_token(&body.token, now) {
            Ok(Some(out)) => (Ok(true), out),
            Ok(None) => (Ok(false), Vec::new()),
            Err(e) => (Err(e), Vec::new()),
        })
        .await;
    if let Ok(Ok(true)) = revoked {
        state.hub.close_token_on_other_threads(hash).await;
    }
    match revoked {
        Ok(Ok(true)) => Json(json!({"revoked": true})).into_response(),
        Ok(Ok(false)) => {
            ApiError(StatusCode::NOT_FOUND, "no such active token".into()).into_response()
        }
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
