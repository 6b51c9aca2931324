//! Stores: add, list (online, connections, last sync), update, remove;
//! and the fleet view, most troubled first, one page at a time.

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use engine::fleet::Trouble;
use engine::ids::StoreGroupId;
use engine::ids::StoreId;
use engine::replica::hub::Hub;
use engine::replica::StoreStatus;
use engine::storage::StoreRecord;
use serde::Deserialize;
use serde_json::json;

use super::access::{
    Access::{self, Hq},
    ApiRoutes, Reach,
};
use super::auth::{hq, hq_read, require_hq_read};
use super::reply::{
    bad_request, body, in_zone, nonempty, parse, reply, rfc3339, ApiError, JsonBody,
};
use super::state::AppState;
use crate::runtime::{answer_with, now_ms};
use axum::http::Method;
use engine::hq_accounts::Need;

pub fn routes() -> ApiRoutes {
    const ADMIN: Access = Hq(Need::Administer, Reach::PathStore);
    ApiRoutes::default()
        .route(
            Method::GET,
            "/stores",
            Hq(
                Need::Read,
                Reach::Fleet {
                    rows_by: Some("id"),
                },
            ),
            list_stores,
        )
        .route(
            Method::POST,
            "/stores",
            Hq(Need::Administer, Reach::Nothing),
            add_store,
        )
        .route(
            Method::GET,
            "/fleet/stores",
            Hq(Need::Read, Reach::Scope),
            fleet_stores,
        )
        .route(Method::PATCH, "/stores/{id}", ADMIN, update_store)
        .route(Method::DELETE, "/stores/{id}", ADMIN, remove_store)
}

#[derive(Deserialize)]
struct NewStore {
    id: String,
    name: String,
    time_zone: String,
    /// `de-DE`; none: the terminals speak English.
    locale: Option<String>,
}

async fn add_store(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<NewStore>, axum::extract::rejection::JsonRejection>,
) -> Response {
    hq!(state, headers);
    let result: Result<StoreReply, ApiError> = async {
        let Json(body) = body.map_err(|e| {
            bad_request(format!(
                "bad JSON: {e}; send {{\"id\", \"name\", \"time_zone\", \"locale\"?}}"
            ))
        })?;
        let rec = StoreRecord {
            id: body
                .id
                .parse()
                .map_err(|e| bad_request(format!("id: {e}")))?,
            name: nonempty("name", body.name)?,
            time_zone: body.time_zone,
        };
        let locale = body
            .locale
            .map(|l| engine::document::directory::parse_locale(&l))
            .transpose()
            .map_err(|e| bad_request(e.to_string()))?;
        let r = rec.clone();
        let locale = state
            .hub
            .for_store(&rec.id)
            .call(move |hub, now| {
                let added = add_new_store(hub, &r).and_then(|()| match &locale {
                    Some(l) => Ok(hub.set_store_locale(&r.id, l, now)?),
                    None => Ok(Vec::new()),
                });
                match added {
                    Ok(out) => (hub.store_locale(&r.id).map_err(ApiError::from), out),
                    Err(e) => (Err(e), Vec::new()),
                }
            })
            .await??;
        Ok(StoreReply { rec, locale })
    }
    .await;
    reply(StatusCode::CREATED, result)
}

/// A store as HQ's API answers it: its record and its locale.
#[derive(serde::Serialize)]
struct StoreReply {
    #[serde(flatten)]
    rec: StoreRecord,
    locale: String,
}

/// Add a store that does not exist yet: adding is not updating, so an
/// id already taken is a 409 naming the command that changes a store.
fn add_new_store(hub: &mut Hub, rec: &StoreRecord) -> Result<(), ApiError> {
    if let Some(old) = hub.store(&rec.id)? {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "store {} already exists ({:?}, {}); nothing was changed. To change its name or \
                 time zone: `hub stores update --id {} --name ... --tz ...` (PATCH /api/stores/{})",
                old.id, old.name, old.time_zone, old.id, old.id
            ),
        ));
    }
    Ok(hub.add_store(rec)?)
}

/// Every store with whether it is online now (at least one authenticated
/// sync connection), how many connections it has, and when it last synced
/// (RFC 3339, or null if never).
///
/// In a cluster a store's terminals are connected to the node serving it:
/// every node answers with what the serving nodes shared at the last lease
/// round (`LeaseView::links`, at most about a second old), so the
/// dashboard shows the same whichever node it asks.
async fn list_stores(State(state): State<AppState>, headers: HeaderMap) -> Response {
    hq_read!(state, headers);
    let r = stores_now(&state).await.map(|v| {
        v.into_iter()
            .map(|s| {
                json!({"id": s.store.id, "name": s.store.name,
                       "time_zone": s.store.time_zone,
                       "online": s.connections > 0, "connections": s.connections,
                       "last_sync": s.last_sync_ms.and_then(rfc3339)})
            })
            .collect::<Vec<_>>()
    });
    reply(StatusCode::OK, r)
}

/// Every store with its connections and last sync (see `list_stores`).
async fn stores_now(state: &AppState) -> Result<Vec<StoreStatus>, ApiError> {
    let cluster = state.leases.as_ref().map(|view| view.links());
    let r = state
        .hub
        // On the hub thread, so it agrees with the hub's connections (a
        // node with several threads is a cluster node: the links say).
        .registry()
        .call_soon(move |hub, _| {
            let stores = hub.stores_with_status().map(|v| {
                v.into_iter()
                    .map(|mut s| {
                        if let Some(links) = &cluster {
                            let link = links.get(&s.store.id).cloned().unwrap_or_default();
                            s.connections = link.connections;
                            s.last_sync_ms = s.last_sync_ms.max(link.last_sync_ms);
                        }
                        s
                    })
                    .collect::<Vec<_>>()
            });
            (stores, Vec::new())
        })
        .await?;
    Ok(r?)
}

#[derive(Deserialize)]
struct FleetQuery {
    /// Only the stores in this store group.
    group: Option<String>,
    /// Only the stores whose id or name contains this (any case).
    q: Option<String>,
    /// From 1.
    page: Option<usize>,
    limit: Option<usize>,
}

const FLEET_PAGE: usize = 50;
const FLEET_PAGE_MAX: usize = 500;

/// The fleet, most troubled first (`engine::fleet::Trouble`), one page at
/// a time: the caller's stores, optionally of one group or matching a
/// search, each with its groups, past-due count and last sync in its own
/// zone (the zone named). Also the groups there are, to filter by.
async fn fleet_stores(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<FleetQuery>,
) -> Response {
    let caller = match require_hq_read(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r: Result<serde_json::Value, ApiError> = async {
        let group: Option<StoreGroupId> = q.group.as_deref().map(|g| parse("group", g)).transpose()?;
        let limit = q.limit.unwrap_or(FLEET_PAGE).clamp(1, FLEET_PAGE_MAX);
        let page = q.page.unwrap_or(1).max(1);
        let now = now_ms();
        let facts = state.readers.scope_facts(None).await??;
        let past_due = state
            .readers
            .status(move |s| s.past_due(None, now, u32::MAX))
            .await??;
        let mut due_at: HashMap<String, usize> = HashMap::new();
        for row in past_due {
            *due_at.entry(row.store).or_default() += 1;
        }
        let scope = caller.scope();
        let no_groups = Vec::new();
        let groups_of = |s: &StoreId| facts.groups_of.get(s).unwrap_or(&no_groups);
        let search = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_lowercase);
        let mut groups: BTreeSet<&StoreGroupId> = BTreeSet::new();
        let mut rows: Vec<(StoreStatus, Trouble)> = Vec::new();
        let stores = stores_now(&state).await?;
        for s in stores {
            let mine = groups_of(&s.store.id);
            if !scope.covers(mine.iter()) {
                continue;
            }
            groups.extend(mine.iter().filter(|g| scope.covers(std::iter::once(*g))));
            if group.as_ref().is_some_and(|g| !mine.contains(g)) {
                continue;
            }
            if let Some(text) = &search {
                let hit = s.store.id.as_str().to_lowercase().contains(text)
                    || s.store.name.to_lowercase().contains(text);
                if !hit {
                    continue;
                }
            }
            let trouble = Trouble {
                connections: s.connections,
                last_sync_ms: s.last_sync_ms,
                past_due: due_at.get(s.store.id.as_str()).copied().unwrap_or(0),
            };
            rows.push((s, trouble));
        }
        rows.sort_by(|a, b| {
            a.1.order(&b.1)
                .then_with(|| a.0.store.name.cmp(&b.0.store.name))
                .then_with(|| a.0.store.id.cmp(&b.0.store.id))
        });
        let total = rows.len();
        let shown: Vec<serde_json::Value> = rows
            .into_iter()
            .skip((page - 1).saturating_mul(limit))
            .take(limit)
            .map(|(s, t)| {
                let store_groups = groups_of(&s.store.id);
                json!({
                    "id": s.store.id, "name": s.store.name, "time_zone": s.store.time_zone,
                    "groups": store_groups,
                    "online": s.connections > 0, "connections": s.connections,
                    "last_sync": s.last_sync_ms.and_then(rfc3339),
                    "last_sync_local": s.last_sync_ms.map(|ms| in_zone(ms, &s.store.time_zone)),
                    "offline_since": (s.connections == 0).then_some(s.last_sync_ms).flatten().and_then(rfc3339),
                    "past_due": t.past_due,
                    "trouble": t.words(),
                })
            })
            .collect();
        Ok(json!({
            "total": total, "page": page, "limit": limit,
            "pages": total.div_ceil(limit).max(1),
            "groups": groups,
            "stores": shown,
        }))
    }
    .await;
    reply(StatusCode::OK, r)
}

#[derive(Deserialize)]
struct StoreUpdate {
    name: Option<String>,
    time_zone: Option<String>,
    locale: Option<String>,
}

async fn update_store(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    b: JsonBody<StoreUpdate>,
) -> Response {
    hq!(state, headers);
    let r: Result<StoreReply, ApiError> = async {
        let id: StoreId = parse("store id", &id)?;
        let upd = body(b, "{\"name\"?, \"time_zone\"?, \"locale\"?}")?;
        let name = upd.name.map(|n| nonempty("name", n)).transpose()?;
        let locale = upd
            .locale
            .map(|l| engine::document::directory::parse_locale(&l))
            .transpose()
            .map_err(|e| bad_request(e.to_string()))?;
        let rec = state
            .hub
            .for_store(&id)
            .call(move |hub, now| {
                let r = (|| {
                    let mut rec = hub
                        .store(&id)?
                        .ok_or(engine::replica::hub::HubError::UnknownStore(id))?;
                    if let Some(n) = name {
                        rec.name = n;
                    }
                    if let Some(tz) = upd.time_zone {
                        rec.time_zone = tz;
                    }
                    hub.update_store(&rec)?;
                    let out = match &locale {
                        Some(l) => hub.set_store_locale(&rec.id, l, now)?,
                        None => Vec::new(),
                    };
                    let locale = hub.store_locale(&rec.id)?;
                    Ok::<_, engine::replica::hub::HubError>((StoreReply { rec, locale }, out))
                })();
                // A new time zone moves recurring lists' due times now.
                match r {
                    Ok((rec, mut out)) => {
                        out.extend(crate::replicas::materialize_now(hub, now));
                        (Ok(rec), out)
                    }
                    Err(e) => (Err(e), Vec::new()),
                }
            })
            .await??;
        Ok(rec)
    }
    .await;
    reply(StatusCode::OK, r)
}

async fn remove_store(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    hq!(state, headers);
    let r: Result<engine::replica::RemovedStore, ApiError> = async {
        let id: StoreId = parse("store id", &id)?;
        Ok(state
            .hub
            .for_store(&id)
            .call(move |hub, now| answer_with(hub.remove_store(&id, now)))
            .await??)
    }
    .await;
    reply(StatusCode::OK, r)
}
