//! The admin HTTP API under `/api/` (HQ token required): stores, tokens,
//! publishing lists, reading documents. Every error says what to fix.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{NaiveDate, NaiveTime};
use engine::document::instance;
use engine::ids::{DocumentId, Principal, StoreId};
use engine::publish::{InvalidRequest, PublishRequest};
use engine::replica::hub::{Hub, HubError};
use engine::replica::PublishFailure;
use engine::storage::StoreRecord;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::read_pool::StatusReader;
use crate::runtime::{answer_with, now_ms, INDEX_CHUNK};
use crate::server::{authenticate, authenticate_request, presented_token, random_token, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/stores", get(list_stores).post(add_store))
        .route("/stores/{id}/tokens", post(issue_token))
        .route("/tokens/revoke", post(revoke_token))
        .route("/lists", post(publish_list))
        .route("/documents/{id}", get(get_document))
        .route("/status", get(status))
        .route("/status/lists", get(status_by_list))
        .route("/status/workers", get(status_by_worker))
        .route("/status/past-due", get(status_past_due))
        .route("/purge", post(purge))
        .route("/templates", get(list_templates).post(put_template))
        .route("/templates/{id}", axum::routing::delete(delete_template))
        .route("/templates/{id}/assign", post(assign_template))
        .route("/templates/{id}/unassign", post(unassign_template))
}

/// An API error: status code and a message that says what to fix.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(crate) fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        ApiError(hub_error_status(&e), e.to_string())
    }
}

/// The status of an answer that failed with `e`.
fn hub_error_status(e: &HubError) -> StatusCode {
    match e {
        HubError::Model(_) => StatusCode::BAD_REQUEST,
        HubError::UnknownStore(_) | HubError::UnknownDocument(_) => StatusCode::NOT_FOUND,
        HubError::Storage(_) | HubError::Load { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        // Nothing was saved; the same request may succeed later.
        HubError::NotSaved => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl From<PublishFailure> for ApiError {
    fn from(f: PublishFailure) -> Self {
        let code = match &f {
            PublishFailure::Invalid(_) => StatusCode::BAD_REQUEST,
            PublishFailure::UnknownStores { .. } => StatusCode::NOT_FOUND,
            PublishFailure::Hub(e) | PublishFailure::Partly { source: e, .. } => {
                hub_error_status(e)
            }
        };
        ApiError(code, f.to_string())
    }
}

impl From<engine::storage::StorageError> for ApiError {
    fn from(e: engine::storage::StorageError) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

/// JSON with `code`, or the error as its status.
pub(crate) fn reply<T: Serialize>(code: StatusCode, r: Result<T, ApiError>) -> Response {
    match r {
        Ok(v) => (code, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The answer to a read from the hub thread: JSON, or the error as a status.
pub(crate) fn json_reply<T: Serialize, E: Into<ApiError>>(
    r: anyhow::Result<Result<T, E>>,
) -> Response {
    match r {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => e.into().into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The request must carry the HQ admin token. Checked on the hub thread,
/// in order with what is queued there: a request that changes something
/// is refused if a revocation of its token was asked for before it.
pub(crate) async fn require_hq(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    hq_principal(authenticate(state, presented_token(headers, None)).await?)
}

/// `require_hq` for a request that only reads: checked on a read-only
/// connection, so it does not wait behind the sync frames queued for the
/// hub thread (a second or more during a reconnect storm).
pub(crate) async fn require_hq_read(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    hq_principal(authenticate_request(state, presented_token(headers, None)).await?)
}

#[allow(clippy::result_large_err)]
fn hq_principal(p: Principal) -> Result<(), Response> {
    match p {
        Principal::Hq => Ok(()),
        Principal::Store(_) => Err(ApiError(
            StatusCode::FORBIDDEN,
            "this is a store token; the admin API needs the HQ admin token".into(),
        )
        .into_response()),
    }
}

macro_rules! hq {
    ($state:expr, $headers:expr) => {
        if let Err(r) = crate::api::require_hq(&$state, &$headers).await {
            return r;
        }
    };
}
pub(crate) use hq;

/// `hq!` for handlers that only read (`require_hq_read`).
macro_rules! hq_read {
    ($state:expr, $headers:expr) => {
        if let Err(r) = crate::api::require_hq_read(&$state, &$headers).await {
            return r;
        }
    };
}
pub(crate) use hq_read;

#[derive(Deserialize)]
struct NewStore {
    id: String,
    name: String,
    time_zone: String,
}

async fn add_store(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<NewStore>, axum::extract::rejection::JsonRejection>,
) -> Response {
    hq!(state, headers);
    let result: Result<StoreRecord, ApiError> = async {
        let Json(body) = body.map_err(|e| {
            bad_request(format!(
                "bad JSON: {e}; send {{\"id\", \"name\", \"time_zone\"}}"
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
        let r = rec.clone();
        state
            .hub
            .call(move |hub, _| (add_new_store(hub, &r), Vec::new()))
            .await??;
        Ok(rec)
    }
    .await;
    reply(StatusCode::CREATED, result)
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

pub(crate) fn nonempty(field: &str, v: String) -> Result<String, ApiError> {
    if v.trim().is_empty() {
        Err(bad_request(format!("{field} is empty")))
    } else {
        Ok(v)
    }
}

/// Unix ms as RFC 3339 (UTC, milliseconds), for JSON answers.
fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Every store with whether it is online now (at least one authenticated
/// sync connection), how many connections it has, and when it last synced
/// (RFC 3339, or null if never).
async fn list_stores(State(state): State<AppState>, headers: HeaderMap) -> Response {
    hq_read!(state, headers);
    let activity = state.hub.activity.clone();
    let r = state
        .hub
        .call_soon(move |hub, _| {
            // Read on the hub thread, so it agrees with the hub's connections.
            let links = activity.lock().unwrap_or_else(|e| e.into_inner()).links();
            let mut connections: HashMap<StoreId, usize> = HashMap::new();
            for p in hub.connected_principals() {
                if let Principal::Store(s) = p {
                    *connections.entry(s).or_default() += 1;
                }
            }
            let stores = hub.stores_with_last_sync().map(|v| {
                v.into_iter()
                    .map(|(s, persisted)| {
                        let n = connections.get(&s.id).copied().unwrap_or(0);
                        let last = links.get(&s.id).and_then(|l| l.last_sync_ms).max(persisted);
                        json!({"id": s.id, "name": s.name, "time_zone": s.time_zone,
                               "online": n > 0, "connections": n,
                               "last_sync": last.and_then(rfc3339)})
                    })
                    .collect::<Vec<_>>()
            });
            (stores, Vec::new())
        })
        .await;
    json_reply(r)
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
    match state
        .hub
        .call(move |hub, now| match hub.revoke_token(&body.token, now) {
            Ok(Some(out)) => (Ok(true), out),
            Ok(None) => (Ok(false), Vec::new()),
            Err(e) => (Err(e), Vec::new()),
        })
        .await
    {
        Ok(Ok(true)) => Json(json!({"revoked": true})).into_response(),
        Ok(Ok(false)) => {
            ApiError(StatusCode::NOT_FOUND, "no such active token".into()).into_response()
        }
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Publish a list to one store (`store`; replies `{"id", "url"}`) or the
/// same list to many (`stores`; replies `{"lists": [{"store", "id",
/// "url"}]}` in request order), all of it in one transaction.
async fn publish_list(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<PublishRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    hq!(state, headers);
    let result: Result<serde_json::Value, ApiReply> = async {
        let Json(req) = body.map_err(|e| bad_request(format!("bad JSON: {e}")))?;
        let stores = req
            .stores_named()
            .map_err(|InvalidRequest(msg)| bad_request(msg))?;
        let one = req.store.is_some();
        let s = stores.clone();
        let ids = match state
            .hub
            .call(move |hub, now| hub.publish_request(&req, &s, &mut uuid::Uuid::new_v4, now))
            .await?
        {
            Ok(ids) => ids,
            Err(failure) if !failure.published().is_empty() => {
                // Some stores got the list: say which (with the ids they
                // got, so a retry need not guess) and which did not.
                let published = failure.published().to_vec();
                let ApiError(code, msg) = ApiError::from(failure);
                let body = json!({
                    "error": msg,
                    "lists": published_lists(&stores, &published),
                    "not_published": &stores[published.len()..],
                });
                return Err(ApiReply(code, body));
            }
            Err(failure) => return Err(ApiError::from(failure).into()),
        };
        if let (true, [id]) = (one, ids.as_slice()) {
            return Ok(json!({ "id": id, "url": id.to_url() }));
        }
        Ok(json!({ "lists": published_lists(&stores, &ids) }))
    }
    .await;
    match result {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(ApiReply(code, body)) => (code, Json(body)).into_response(),
    }
}

/// `{"store", "id", "url"}` for each store and the list it got, in order.
fn published_lists(stores: &[StoreId], ids: &[DocumentId]) -> Vec<serde_json::Value> {
    stores
        .iter()
        .zip(ids)
        .map(|(store, id)| json!({ "store": store, "id": id, "url": id.to_url() }))
        .collect()
}

/// An error answer with a body beyond `{"error"}`.
struct ApiReply(StatusCode, serde_json::Value);

impl From<ApiError> for ApiReply {
    fn from(ApiError(code, msg): ApiError) -> Self {
        ApiReply(code, json!({ "error": msg }))
    }
}

impl From<anyhow::Error> for ApiReply {
    fn from(e: anyhow::Error) -> Self {
        ApiError::from(e).into()
    }
}

async fn get_document(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    hq_read!(state, headers);
    let Ok(doc) = id.parse::<DocumentId>() else {
        return bad_request(format!(
            "{id:?} is not a document id (UUID or automerge-repo id)"
        ))
        .into_response();
    };
    let r = state
        .hub
        .call_soon(move |hub, now_ms| {
            let v = hub
                .document(doc)
                .map_err(ApiError::from)
                .and_then(|d| instance::read(d).map_err(|e| bad_request(e.to_string())))
                .map(|view| with_past_due(&view, now_ms));
            (v, Vec::new())
        })
        .await;
    json_reply(r)
}

/// The instance as JSON with each task marked `past_due` by the engine's
/// rule (`engine::due`, as the index counts it), so the drill-down shows
/// what the grid and the past-due list count, not its own judgement.
fn with_past_due(view: &instance::InstanceView, now_ms: i64) -> serde_json::Value {
    let now = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    let mut v = json!(view);
    if let Some(tasks) = v["tasks"].as_array_mut() {
        for (row, t) in tasks.iter_mut().zip(&view.tasks) {
            let open = t.status.effective() != engine::model::Status::Completed;
            row["past_due"] = json!(engine::due::is_past_due(t.spec.due, open, now));
        }
    }
    v
}

async fn status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    hq_read!(state, headers);
    match state
        .hub
        .call_soon(|hub, _| {
            let c = hub.counters();
            (
                json!({
                    "connections": hub.connection_count(),
                    "cached_documents": hub.cached_document_count(),
                    "counters": c,
                }),
                Vec::new(),
            )
        })
        .await
    {
        Ok(v) => Json(v).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A recurring list as HQ types it.
#[derive(Deserialize, Serialize)]
pub struct NewTemplate {
    /// Omit to create; give an existing id to save a new revision.
    pub id: Option<String>,
    pub name: String,
    /// RFC 5545 RRULE, e.g. FREQ=WEEKLY;BYDAY=TH.
    pub rrule: String,
    /// Local start time of each occurrence ("HH:MM").
    pub time: String,
    /// First date the rule applies (YYYY-MM-DD); default today (UTC).
    pub start_date: Option<String>,
    pub tasks: Vec<NewTemplateTask>,
    /// Stores to assign it to, in the same request (all checked first).
    #[serde(default)]
    pub stores: Vec<String>,
    /// Store groups to assign it to, in the same request.
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone)]
pub struct NewTemplateTask {
    /// Stable key across revisions; omit for a new task.
    pub key: Option<String>,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Local time of day ("HH:MM") or minutes after the list starts ("+30").
    pub due: Option<String>,
    pub priority: Option<String>,
    pub link: Option<String>,
    pub assignee: Option<String>,
}

/// Store and store group ids as a request names them.
fn targets(
    stores: &[String],
    groups: &[String],
) -> Result<(Vec<StoreId>, Vec<engine::ids::StoreGroupId>), ApiError> {
    let stores = stores
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|e| bad_request(format!("store {s:?}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let groups = groups
        .iter()
        .map(|g| {
            g.parse()
                .map_err(|e| bad_request(format!("group {g:?}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok((stores, groups))
}

fn template_from_request(req: NewTemplate) -> Result<engine::template::Template, ApiError> {
    use engine::recurrence::Recurrence;
    use engine::template::{DueSpec, Template, TemplateTask};
    let id = match &req.id {
        Some(i) => i.parse().map_err(|e| bad_request(format!("id: {e}")))?,
        None => engine::ids::TemplateId(uuid::Uuid::new_v4()),
    };
    let time = NaiveTime::parse_from_str(&req.time, "%H:%M").map_err(|_| {
        bad_request(format!(
            "time {:?}: use a local time of day like 21:00",
            req.time
        ))
    })?;
    let start = match &req.start_date {
        Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| bad_request(format!("start_date {d:?}: use YYYY-MM-DD")))?,
        None => chrono::Utc::now().date_naive(),
    };
    let recurrence =
        Recurrence::new(&req.rrule, start, time).map_err(|e| bad_request(e.to_string()))?;
    let mut tasks = Vec::new();
    for (i, t) in req.tasks.into_iter().enumerate() {
        let at = |what: &str| format!("task {}: {what}", i + 1);
        let due = match t.due.as_deref() {
            None => None,
            Some(d) if d.starts_with('+') => {
                Some(DueSpec::AfterStart(d[1..].parse().map_err(|_| {
                    bad_request(at("due \"+N\" takes whole minutes, e.g. +30"))
                })?))
            }
            Some(d) => Some(DueSpec::At(
                NaiveTime::parse_from_str(d, "%H:%M")
                    .map_err(|_| bad_request(at("due: use HH:MM or +minutes")))?,
            )),
        };
        tasks.push(TemplateTask {
            key: match t.key {
                Some(k) => k
                    .parse()
                    .map_err(|_| bad_request(at("key is not a UUID")))?,
                None => uuid::Uuid::new_v4(),
            },
            title: t.title,
            description: t.description,
            due,
            priority: t
                .priority
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| bad_request(at(&format!("{e}"))))?
                .unwrap_or_default(),
            link: t
                .link
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| bad_request(at(&format!("{e}"))))?,
            assignee: t
                .assignee
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| bad_request(at(&format!("{e}"))))?,
        });
    }
    let t = Template {
        id,
        revision: 0,
        name: req.name,
        recurrence,
        tasks,
    };
    t.validate().map_err(|e| bad_request(e.to_string()))?;
    Ok(t)
}

async fn put_template(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<NewTemplate>, axum::extract::rejection::JsonRejection>,
) -> Response {
    hq!(state, headers);
    let r: Result<engine::template::Template, ApiError> = async {
        let Json(req) = body.map_err(|e| bad_request(format!("bad JSON: {e}")))?;
        let (stores, groups) = targets(&req.stores, &req.groups)?;
        let t = template_from_request(req)?;
        let saved = state
            .hub
            .call(
                move |hub, now| match hub.save_template(t, &stores, &groups) {
                    Ok(saved) => {
                        // Existing future instances follow the new revision now.
                        let out = hub.materialize_horizon(now).unwrap_or_default();
                        (Ok(saved), out)
                    }
                    Err(e) => (Err(e), Vec::new()),
                },
            )
            .await??;
        Ok(saved)
    }
    .await;
    reply(StatusCode::CREATED, r)
}

#[derive(Deserialize)]
struct AssignTemplate {
    #[serde(default)]
    stores: Vec<String>,
    /// Store groups: every store in them now and every store added later.
    #[serde(default)]
    groups: Vec<String>,
}

async fn assign_template(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<AssignTemplate>, axum::extract::rejection::JsonRejection>,
) -> Response {
    hq!(state, headers);
    let r: Result<(), ApiError> = async {
        let Json(req) = body.map_err(|e| {
            bad_request(format!(
                "bad JSON: {e}; send {{\"stores\": [ids], \"groups\": [ids]}}"
            ))
        })?;
        let id: engine::ids::TemplateId = id
            .parse()
            .map_err(|e| bad_request(format!("template id: {e}")))?;
        let (stores, groups) = targets(&req.stores, &req.groups)?;
        if stores.is_empty() && groups.is_empty() {
            return Err(bad_request("name at least one store or store group"));
        }
        state
            .hub
            .call(
                move |hub, now| match hub.assign_template_to(id, &stores, &groups) {
                    Ok(()) => (Ok(()), hub.materialize_horizon(now).unwrap_or_default()),
                    Err(e) => (Err(e), Vec::new()),
                },
            )
            .await??;
        Ok(())
    }
    .await;
    match r {
        Ok(()) => Json(json!({"assigned": true})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/templates/{id}/unassign` (`{"stores", "groups"}`): take a
/// template off stores or store groups; the stores it no longer reaches
/// have its future lists withdrawn (see `Hub::unassign_template`).
async fn unassign_template(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<AssignTemplate>, axum::extract::rejection::JsonRejection>,
) -> Response {
    hq!(state, headers);
    let r: Result<engine::replica::TemplateRemoval, ApiError> = async {
        let Json(req) = body.map_err(|e| {
            bad_request(format!(
                "bad JSON: {e}; send {{\"stores\": [ids], \"groups\": [ids]}}"
            ))
        })?;
        let id: engine::ids::TemplateId = id
            .parse()
            .map_err(|e| bad_request(format!("template id: {e}")))?;
        let (stores, groups) = targets(&req.stores, &req.groups)?;
        Ok(state
            .hub
            .call(move |hub, now| answer_with(hub.unassign_template(id, &stores, &groups, now)))
            .await??)
    }
    .await;
    reply(StatusCode::OK, r)
}

/// `DELETE /api/templates/{id}`: delete a template, its revisions and
/// assignments; future lists nobody started are withdrawn, the rest stay
/// (see `Hub::delete_template`).
async fn delete_template(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    hq!(state, headers);
    let r: Result<engine::replica::TemplateRemoval, ApiError> = async {
        let id: engine::ids::TemplateId = id
            .parse()
            .map_err(|e| bad_request(format!("template id: {e}")))?;
        Ok(state
            .hub
            .call(move |hub, now| answer_with(hub.delete_template(id, now)))
            .await??)
    }
    .await;
    reply(StatusCode::OK, r)
}

#[derive(Deserialize)]
struct StatusQuery {
    store: Option<String>,
    worker: Option<String>,
    limit: Option<u32>,
    /// Lists dated from (YYYY-MM-DD, store-local, inclusive).
    from: Option<String>,
    /// Lists dated up to (inclusive).
    to: Option<String>,
}

fn parse_day(field: &str, q: &Option<String>) -> Result<Option<NaiveDate>, ApiError> {
    q.as_deref()
        .map(|d| {
            NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| bad_request(format!("{field} {d:?}: use YYYY-MM-DD")))
        })
        .transpose()
}

/// The response header telling how many lists' status a query may not
/// reflect yet (see `index_read`); the dashboard shows it.
pub(crate) const INDEX_BEHIND_HEADER: &str = "status-index-behind";

/// Run a query of the status index over `store` (every store for `None`).
/// First the lists due for indexing that the query covers are brought up
/// to date on the hub thread, a chunk per job so sync is served between
/// chunks, for at most `AppState::index_read_budget`; during a reconnect
/// storm that is a fraction of what is due, and the query answers from
/// the index as it stands rather than hold the hub thread for seconds.
/// The query itself runs on a read-only connection on a blocking thread
/// (`ReadPool`). Returns its result and how many of the lists it
/// covers are still due (changed since their rows were written).
async fn index_read<T: Send + 'static>(
    state: &AppState,
    store: Option<StoreId>,
    f: impl FnOnce(&StatusReader, i64) -> T + Send + 'static,
) -> anyhow::Result<(T, usize)> {
    let deadline = tokio::time::Instant::now() + state.index_read_budget;
    let due_of = |hub: &mut Hub, store: &Option<StoreId>| hub.index_due_of(store.as_ref());
    let scope = store.clone();
    let mut due = state
        .hub
        .call_soon(move |hub, _| (due_of(hub, &scope), Vec::new()))
        .await??;
    while !due.is_empty() && tokio::time::Instant::now() < deadline {
        let chunk: Vec<DocumentId> = due.drain(..due.len().min(INDEX_CHUNK)).collect();
        state
            .hub
            .call_soon(move |hub, _| {
                hub.catch_up_index_of(&chunk);
                ((), Vec::new())
            })
            .await?;
    }
    // Counted again: lists changed while this read caught up are behind too.
    let behind = state
        .hub
        .call_soon(move |hub, _| (due_of(hub, &store).map(|d| d.len()), Vec::new()))
        .await??;
    let answer = state.readers.status(move |s| f(s, now_ms())).await?;
    Ok((answer, behind))
}

/// `json_reply` for `index_read`'s answer, with how many lists are behind
/// in the `status-index-behind` header.
fn index_reply<T: Serialize, E: Into<ApiError>>(
    r: anyhow::Result<(Result<T, E>, usize)>,
) -> Response {
    match r {
        Ok((answer, behind)) => {
            let mut resp = json_reply(Ok(answer));
            resp.headers_mut()
                .insert(INDEX_BEHIND_HEADER, axum::http::HeaderValue::from(behind));
            resp
        }
        Err(e) => json_reply::<T, E>(Err(e)),
    }
}

fn parse_store(q: &Option<String>) -> Result<Option<StoreId>, ApiError> {
    q.as_deref()
        .map(|s| s.parse().map_err(|e| bad_request(format!("store: {e}"))))
        .transpose()
}

/// Lists x stores with counts of not started / in progress / completed /
/// past due and conflicts, from the status index.
async fn status_by_list(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<StatusQuery>,
) -> Response {
    hq_read!(state, headers);
    let (store, from, to) = match (|| {
        Ok::<_, ApiError>((
            parse_store(&q.store)?,
            parse_day("from", &q.from)?,
            parse_day("to", &q.to)?,
        ))
    })() {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    index_reply(
        index_read(&state, store.clone(), move |s, now| {
            s.status_by_list_between(store.as_ref(), from, to, now)
        })
        .await,
    )
}

/// Open tasks whose due time has passed, most overdue first, from the
/// status index: store, list, task, due (RFC 3339), assignee, status.
async fn status_past_due(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<StatusQuery>,
) -> Response {
    hq_read!(state, headers);
    let store = match parse_store(&q.store) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let limit = q.limit.unwrap_or(500).min(10_000);
    index_reply(
        index_read(&state, store.clone(), move |s, now| {
            s.past_due(store.as_ref(), now, limit).map(|rows| {
                rows.into_iter()
                    .map(|r| {
                        json!({"store": r.store, "doc": r.doc, "list": r.list, "date": r.date,
                                   "task": r.task, "title": r.title, "due": rfc3339(r.due_ms),
                                   "due_ms": r.due_ms, "assignee": r.assignee,
                                   "status": r.status, "conflict": r.conflict})
                    })
                    .collect::<Vec<_>>()
            })
        })
        .await,
    )
}

/// What each worker did, when and from which terminal, newest first.
async fn status_by_worker(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<StatusQuery>,
) -> Response {
    hq_read!(state, headers);
    let store = match parse_store(&q.store) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let limit = q.limit.unwrap_or(200).min(10_000);
    index_reply(
        index_read(&state, store.clone(), move |s, _| {
            s.status_by_worker(store.as_ref(), q.worker.as_deref(), limit)
        })
        .await,
    )
}

#[derive(Deserialize)]
struct PurgeRequest {
    /// YYYY-MM-DD: lists dated strictly before this (store-local).
    before: Option<String>,
    store: Option<String>,
    list: Option<String>,
    #[serde(default)]
    completed_only: bool,
    /// Count only (the default); pass false to delete.
    #[serde(default = "yes")]
    dry_run: bool,
}

fn yes() -> bool {
    true
}

/// Bulk delete of instances by filter; a dry run (the default) counts.
async fn purge(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<PurgeRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    hq!(state, headers);
    let r: Result<engine::replica::PurgeReport, ApiError> = async {
        let Json(req) = body.map_err(|e| bad_request(format!("bad JSON: {e}")))?;
        if req.before.is_none() && req.store.is_none() && req.list.is_none() && !req.completed_only {
            return Err(bad_request(
                "give at least one filter (before, store, list, completed_only); deleting everything is not a purge",
            ));
        }
        let filter = engine::storage::PurgeFilter {
            before: req
                .before
                .as_deref()
                .map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d"))
                .transpose()
                .map_err(|_| bad_request("before: use YYYY-MM-DD"))?,
            store: parse_store(&req.store)?,
            list: req.list,
            completed_only: req.completed_only,
        };
        let dry_run = req.dry_run;
        let report = state
            .hub
            .call(move |hub, now| answer_with(hub.purge(&filter, dry_run, now)))
            .await??;
        Ok(report)
    }
    .await;
    reply(StatusCode::OK, r)
}

/// Every template's latest revision with the stores it is assigned to.
async fn list_templates(State(state): State<AppState>, headers: HeaderMap) -> Response {
    hq_read!(state, headers);
    json_reply(
        state
            .hub
            .call_soon(|hub, _| {
                let r = hub.templates_with_stores().map(|ts| {
                    ts.into_iter()
                        .map(|(t, stores)| json!({"template": t, "stores": stores}))
                        .collect::<Vec<_>>()
                });
                (r, Vec::new())
            })
            .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::publish::NewTask;
    use std::collections::HashSet;

    /// Publish `per_store` lists to each of `stores` (added first) in one
    /// batch, so their status index is left due, then start `read` and
    /// answer the backlog the publish left and what the read answered.
    ///
    /// The hub does not index on its own while idle here, so what is
    /// indexed is what the read did. The publish job waits, once done,
    /// until the read's first step is queued (a `call_soon` job, which
    /// then runs as the publish job returns, not before it).
    async fn publish_then_read<R: std::future::Future>(
        state: &AppState,
        stores: &[&str],
        per_store: usize,
        read: R,
    ) -> (usize, R::Output) {
        state.hub.pause_idle_indexing();
        let stores: Vec<StoreId> = stores.iter().map(|s| s.parse().unwrap()).collect();
        let req = PublishRequest {
            store: None,
            stores: None,
            name: "Closing".into(),
            date: "2026-11-26".into(),
            tasks: vec![NewTask {
                title: "Count the till".into(),
                description: String::new(),
                start: None,
                due: None,
                priority: None,
                link: None,
                assignee: None,
            }],
        };
        let (published_tx, published_rx) = std::sync::mpsc::channel::<()>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let publish = state.hub.call(move |hub, now| {
            for store in &stores {
                hub.add_store(&StoreRecord {
                    id: store.clone(),
                    name: store.to_string(),
                    time_zone: "Europe/Berlin".into(),
                })
                .unwrap();
            }
            let (r, out) = hub.batched(|hub| {
                let mut out = Vec::new();
                for store in &stores {
                    for _ in 0..per_store {
                        let c = req
                            .list_content(store, "Europe/Berlin", &mut uuid::Uuid::new_v4)
                            .unwrap_or_else(|e| panic!("{}", e.0));
                        out.extend(hub.publish(&c, now)?);
                    }
                }
                Ok(((), out))
            });
            r.unwrap();
            published_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            (hub.index_backlog(), out)
        });
        let (mut publish, mut read) = (
            std::pin::pin!(futures_util::future::maybe_done(publish)),
            std::pin::pin!(futures_util::future::maybe_done(read)),
        );
        let _ = futures_util::poll!(publish.as_mut());
        published_rx.recv().unwrap();
        let _ = futures_util::poll!(read.as_mut());
        go_tx.send(()).unwrap();
        tokio::join!(publish.as_mut(), read.as_mut());
        (
            publish.take_output().unwrap().unwrap(),
            read.take_output().unwrap(),
        )
    }

    /// Status queries run off the hub thread, on a read-only connection,
    /// and still see lists whose index was due when they were asked.
    #[tokio::test]
    async fn a_status_query_runs_off_the_hub_thread_and_sees_every_list() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = crate::server::open_for_test(dir.path());
        // Room to catch up however slow the machine.
        state.index_read_budget = std::time::Duration::from_secs(60);
        let read = index_read(&state, None, |s, now| {
            let rows = s.status_by_list(None, now).unwrap();
            let lists: HashSet<_> = rows.iter().map(|r| r.doc).collect();
            (lists.len(), std::thread::current().name().map(String::from))
        });
        let (published, read) = publish_then_read(&state, &["store-a"], 5, read).await;
        assert_eq!(published, 5, "indexed later");
        let ((lists, thread), behind) = read.unwrap();
        assert_eq!(lists, 5, "the read sees every list");
        assert_eq!(behind, 0);
        assert_ne!(thread.as_deref(), Some("hub-replica"));
        // That the connection is read-only: `read_pool::tests`.
    }

    /// A read over a backlog it has no time left to index answers at once
    /// from the index as it stands, and says in its header how many lists
    /// it may not reflect.
    #[tokio::test]
    async fn a_status_read_out_of_budget_answers_as_indexed_and_says_how_many_lists_are_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = crate::server::open_for_test(dir.path());
        state.index_read_budget = std::time::Duration::ZERO;
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer admin".parse().unwrap());
        let query = || StatusQuery {
            store: None,
            worker: None,
            limit: None,
            from: None,
            to: None,
        };
        // `index_read` itself: the handler's sign-in check is a hub job of
        // its own, after which the idle hub would index on its own.
        let fleet = async {
            index_reply(index_read(&state, None, |s, now| s.status_by_list(None, now)).await)
        };
        let a: StoreId = "store-a".parse().unwrap();
        let one_store = index_read(&state, Some(a), |_, _| ());
        let read = futures_util::future::join(fleet, one_store);
        let (published, (resp, one_store)) =
            publish_then_read(&state, &["store-a", "store-b"], 3, read).await;
        assert_eq!(published, 6);
        assert_eq!(one_store.unwrap().1, 3, "only store-a's lists count");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[INDEX_BEHIND_HEADER], "6");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        assert!(rows.is_empty(), "nothing was indexed: {rows:?}");

        // A read with time to catch up leaves nothing behind.
        state.index_read_budget = std::time::Duration::from_secs(60);
        let resp =
            status_by_list(State(state.clone()), headers, axum::extract::Query(query())).await;
        assert_eq!(resp.headers()[INDEX_BEHIND_HEADER], "0");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        let lists: HashSet<_> = rows.iter().map(|r| r["doc"].clone()).collect();
        assert_eq!(lists.len(), 6);
    }

    /// A reading HTTP request's token is checked without the hub thread,
    /// so a dashboard read does not wait behind the frames queued for it.
    #[tokio::test]
    async fn a_read_requests_token_is_checked_while_the_hub_thread_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::server::open_for_test(dir.path());
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let held = state.hub.call(move |_, _| {
            go_rx.recv().unwrap();
            ((), Vec::new())
        });
        let mut held = std::pin::pin!(futures_util::future::maybe_done(held));
        let _ = futures_util::poll!(held.as_mut());
        let headers = |token: &str| {
            let mut h = HeaderMap::new();
            h.insert("authorization", format!("Bearer {token}").parse().unwrap());
            h
        };
        let within = |f| tokio::time::timeout(std::time::Duration::from_secs(10), f);
        let (admin, wrong) = (headers("admin"), headers("not-the-token"));
        within(require_hq_read(&state, &admin))
            .await
            .expect("answered while the hub thread is held")
            .unwrap();
        let refused = within(require_hq_read(&state, &wrong))
            .await
            .expect("answered while the hub thread is held")
            .unwrap_err();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        go_tx.send(()).unwrap();
        held.await;
    }

    /// A read naming a store catches up that store's lists only, and
    /// counts only those as behind.
    #[tokio::test]
    async fn a_store_scoped_status_read_catches_up_that_stores_lists() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = crate::server::open_for_test(dir.path());
        state.index_read_budget = std::time::Duration::from_secs(60);
        let a: StoreId = "store-a".parse().unwrap();
        let scope = a.clone();
        let read = index_read(&state, Some(a), move |s, now| {
            s.status_by_list(Some(&scope), now).unwrap().len()
        });
        let (published, read) = publish_then_read(&state, &["store-a", "store-b"], 3, read).await;
        assert_eq!(published, 6);
        let (rows, behind) = read.unwrap();
        assert_eq!(rows, 3, "store-a's three lists, one row each");
        assert_eq!(behind, 0, "nothing of store-a is behind");
    }
}
