//! The terminal's local HTTP API (loopback only unless asked) and the web
//! UI at `/`. Every write answers only after it is durable on disk, works
//! with the hub unreachable, and bad input gets a 4xx `{"error": "..."}`
//! that says what to fix, with nothing written.
//!
//! Who may do what: status changes and claims are by a worker on the
//! store's roster (the signed-in worker, or for the CLI a `worker` in the
//! body); assigning, new lists and tasks, and deciding conflicts need a
//! signed-in worker whose role is `manager`. See `sessions` for sign-in.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use engine::document::directory::RosterWorker;
use engine::ids::{DocumentId, EventId, TaskId, WorkerId};
use engine::model::{
    Assignee, CreatedBy, InstanceContent, ListMeta, Status, StatusUpdate, TaskSpec,
};
use engine::replica::agent::{Agent, AgentError};
use engine::replica::Output;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::agent::Terminal;
use crate::sessions::Sessions;
use crate::views::{self, Clock};

/// Settings of the local API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Tasks due within this many minutes are "upcoming" (default for
    /// `GET /api/notifications`, which takes `?window=` too).
    pub notify_window_minutes: i64,
    /// The store's time zone; `None`: the zone of the newest list held.
    pub time_zone: Option<Tz>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            notify_window_minutes: 30,
            time_zone: None,
        }
    }
}

#[derive(Clone)]
struct App {
    t: Terminal,
    sessions: Sessions,
    cfg: Arc<ApiConfig>,
}

pub fn router(t: Terminal) -> Router {
    router_with(t, ApiConfig::default())
}

pub fn router_with(t: Terminal, cfg: ApiConfig) -> Router {
    let app = App {
        t,
        sessions: Sessions::default(),
        cfg: Arc::new(cfg),
    };
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(crate::web::routes())
        .route("/api/workers", get(workers))
        .route(
            "/api/session",
            get(session_info).post(sign_in).delete(sign_out),
        )
        .route("/api/my-tasks", get(my_tasks))
        .route("/api/notifications", get(notifications))
        .route("/api/lists", get(lists).post(create_list))
        .route("/api/lists/{id}", get(list))
        .route("/api/lists/{id}/tasks", post(add_task))
        .route("/api/tasks", get(tasks))
        .route("/api/tasks/{task}", get(task_detail))
        .route("/api/tasks/{task}/status", post(set_status))
        .route("/api/tasks/{task}/claim", post(claim))
        .route("/api/tasks/{task}/assign", post(assign))
        .route("/api/tasks/{task}/resolve", post(resolve))
        .route("/api/conflicts", get(conflicts))
        .route("/api/sync-status", get(sync_status))
        .with_state(app)
}

// ---- errors and plumbing ------------------------------------------------

pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        let code = match &e {
            AgentError::Model(engine::model::ModelError::UnknownTask(_)) => StatusCode::NOT_FOUND,
            AgentError::Model(_) | AgentError::UnknownWorker(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AgentError::UnknownList(_) => StatusCode::NOT_FOUND,
            AgentError::Refused(_) => StatusCode::CONFLICT,
            // The write was rolled back; the worker should know it was not saved.
            AgentError::Storage(engine::storage::StorageError::DiskFull { .. }) => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            AgentError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn no_task(task: TaskId) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no task {task} on this terminal (its list may have been deleted)"),
    )
}

fn respond<T: Serialize>(code: StatusCode, r: Result<T, ApiError>) -> Response {
    match r {
        Ok(v) => (code, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Parse a JSON body; an empty body reads as `{}`.
fn json_body<T: DeserializeOwned>(b: &Bytes, shape: &str) -> Result<T, ApiError> {
    let text: &[u8] = if b.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        b
    };
    serde_json::from_slice(text).map_err(|e| bad(format!("bad JSON: {e}; send {shape}")))
}

/// Run `f` on the replica thread; its outputs go to the hub if connected.
async fn on_agent<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&mut Agent, i64) -> Result<(T, Vec<Output>), ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    app.t
        .handle
        .call(move |a, now| match f(a, now) {
            Ok((v, out)) => (Ok(v), out),
            Err(e) => (Err(e), Vec::new()),
        })
        .await?
}

/// A read on the replica thread (no outputs).
async fn read_agent<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&mut Agent, i64) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    on_agent(app, move |a, now| Ok((f(a, now)?, Vec::new()))).await
}

/// The store's clock: the configured zone, or the zone of the newest list.
fn clock(a: &Agent, cfg: &ApiConfig, now_ms: i64) -> Clock {
    let tz = cfg.time_zone.unwrap_or_else(|| {
        a.lists()
            .iter()
            .rev()
            .find_map(|l| l.meta.time_zone.parse::<Tz>().ok())
            .unwrap_or(Tz::UTC)
    });
    Clock {
        tz,
        now: DateTime::from_timestamp_millis(now_ms).unwrap_or_default(),
    }
}

/// The list holding `task` (task ids are unique across lists).
fn find_list(a: &Agent, task: TaskId) -> Result<DocumentId, ApiError> {
    a.list_of_task(task).ok_or_else(|| no_task(task))
}

fn parse_task(s: &str) -> Result<TaskId, ApiError> {
    s.parse().map_err(|e| bad(format!("task: {e}")))
}

fn roster_worker(a: &Agent, w: &WorkerId) -> Result<RosterWorker, ApiError> {
    a.roster_worker(w)
        .ok_or_else(|| AgentError::UnknownWorker(w.clone()).into())
}

fn require_manager(a: &Agent, w: &WorkerId, what: &str) -> Result<RosterWorker, ApiError> {
    let rec = roster_worker(a, w).map_err(|_| {
        ApiError(
            StatusCode::UNAUTHORIZED,
            format!("{w} is no longer on the roster; sign in again"),
        )
    })?;
    if !rec.is_manager() {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("only a manager may {what}; {w} is {}", rec.role),
        ));
    }
    Ok(rec)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The signed-in worker, if a session token came with the request. A
/// token that is not (or no longer) valid is a 401, so the UI signs in
/// again rather than acting anonymously.
fn signed_in(app: &App, headers: &HeaderMap) -> Result<Option<WorkerId>, ApiError> {
    let Some(token) = bearer(headers) else {
        return Ok(None);
    };
    app.sessions
        .worker(token, chrono::Utc::now().timestamp_millis())
        .map(Some)
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "session expired or unknown (the agent may have restarted); sign in again".into(),
            )
        })
}

fn require_session(app: &App, headers: &HeaderMap) -> Result<WorkerId, ApiError> {
    signed_in(app, headers)?.ok_or_else(|| {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "sign in first: POST /api/session {\"worker\", \"pin\"}".into(),
        )
    })
}

/// Who is acting: the signed-in worker, or `named` (the CLI's `--worker`).
fn acting_worker(
    app: &App,
    headers: &HeaderMap,
    named: Option<&str>,
) -> Result<WorkerId, ApiError> {
    let session = signed_in(app, headers)?;
    let named: Option<WorkerId> = named
        .map(|w| w.parse().map_err(|e| bad(format!("worker: {e}"))))
        .transpose()?;
    match (session, named) {
        (Some(s), Some(n)) if s != n => Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("signed in as {s}; cannot act as {n}"),
        )),
        (Some(s), _) => Ok(s),
        (None, Some(n)) => Ok(n),
        (None, None) => Err(bad(
            "worker: missing; sign in, or send \"worker\": \"<id on the roster>\"",
        )),
    }
}

// ---- roster and sign-in -------------------------------------------------

#[derive(Serialize)]
struct WorkerInfo {
    id: WorkerId,
    name: String,
    role: String,
    groups: Vec<String>,
    manager: bool,
    has_pin: bool,
}

fn worker_info(id: &WorkerId, w: &RosterWorker) -> WorkerInfo {
    WorkerInfo {
        id: id.clone(),
        name: w.name.clone(),
        role: w.role.to_string(),
        groups: w.groups.iter().map(ToString::to_string).collect(),
        manager: w.is_manager(),
        has_pin: w.pin.is_some(),
    }
}

/// The roster, without PIN hashes.
async fn workers(State(app): State<App>) -> Response {
    let r = read_agent(&app, |a, _| {
        Ok(a.directory()?
            .roster
            .iter()
            .map(|(id, w)| worker_info(id, w))
            .collect::<Vec<_>>())
    })
    .await;
    respond(StatusCode::OK, r)
}

#[derive(Deserialize)]
struct SignIn {
    worker: Option<String>,
    pin: Option<String>,
}

async fn sign_in(State(app): State<App>, body: Bytes) -> Response {
    let r = async {
        let b: SignIn = json_body(&body, "{\"worker\": \"<id>\", \"pin\": \"<digits>\"}")?;
        let worker: WorkerId = b
            .worker
            .ok_or_else(|| bad("worker: missing"))?
            .parse()
            .map_err(|e| bad(format!("worker: {e}")))?;
        let pin = b.pin.ok_or_else(|| bad("pin: missing"))?;
        let w = worker.clone();
        let rec = read_agent(&app, move |a, _| roster_worker(a, &w)).await?;
        if rec.pin.is_none() {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!("{worker} has no PIN yet; ask HQ to set one"),
            ));
        }
        if !rec.check_pin(&worker, &pin) {
            return Err(ApiError(StatusCode::UNAUTHORIZED, "wrong PIN".into()));
        }
        let token = app
            .sessions
            .start(worker.clone(), chrono::Utc::now().timestamp_millis());
        let mut v = serde_json::to_value(worker_info(&worker, &rec)).expect("serializes");
        v["token"] = json!(token);
        Ok(v)
    }
    .await;
    respond(StatusCode::CREATED, r)
}

async fn session_info(State(app): State<App>, headers: HeaderMap) -> Response {
    let r = async {
        let w = require_session(&app, &headers)?;
        let id = w.clone();
        let rec = read_agent(&app, move |a, _| roster_worker(a, &id)).await?;
        Ok(worker_info(&w, &rec))
    }
    .await;
    respond(StatusCode::OK, r)
}

async fn sign_out(State(app): State<App>, headers: HeaderMap) -> Response {
    let ended = bearer(&headers).is_some_and(|t| app.sessions.end(t));
    Json(json!({ "signed_out": ended })).into_response()
}

// ---- worker view --------------------------------------------------------

#[derive(Deserialize)]
struct MyTasksQuery {
    scope: Option<String>,
}

async fn my_tasks(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<MyTasksQuery>,
) -> Response {
    let r = async {
        let all = match q.scope.as_deref() {
            None | Some("mine") => false,
            Some("all") => true,
            Some(other) => return Err(bad(format!("scope: {other:?}; use mine or all"))),
        };
        let w = require_session(&app, &headers)?;
        let cfg = app.cfg.clone();
        read_agent(&app, move |a, now| {
            let rec = roster_worker(a, &w)?;
            let clock = clock(a, &cfg, now);
            let lists = a.lists();
            let groups =
                views::today_by_list(&lists, &clock, |t| all || views::is_mine(t, &w, &rec));
            Ok(json!({
                "worker": worker_info(&w, &rec),
                "today": clock.today(),
                "time_zone": clock.tz.name(),
                "scope": if all { "all" } else { "mine" },
                "pending": views::pending(&groups),
                "lists": groups,
            }))
        })
        .await
    }
    .await;
    respond(StatusCode::OK, r)
}

#[derive(Deserialize)]
struct NotifyQuery {
    window: Option<String>,
    worker: Option<String>,
}

async fn notifications(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<NotifyQuery>,
) -> Response {
    let r = async {
        let window = match q.window.as_deref() {
            None => app.cfg.notify_window_minutes,
            Some(w) => w
                .parse::<i64>()
                .ok()
                .filter(|m| (1..=24 * 60).contains(m))
                .ok_or_else(|| bad(format!("window: {w:?}; give minutes from 1 to 1440")))?,
        };
        let who = match signed_in(&app, &headers)? {
            Some(w) => Some(w),
            None => q
                .worker
                .as_deref()
                .map(|w| w.parse().map_err(|e| bad(format!("worker: {e}"))))
                .transpose()?,
        };
        let cfg = app.cfg.clone();
        read_agent(&app, move |a, now| {
            let rec = who.as_ref().map(|w| roster_worker(a, w)).transpose()?;
            let clock = clock(a, &cfg, now);
            let lists = a.lists();
            let groups = views::today_by_list(&lists, &clock, |t| match (&who, &rec) {
                (Some(w), Some(r)) => views::is_mine(t, w, r),
                _ => true,
            });
            let mut v = serde_json::to_value(views::notifications(&groups, &clock, window))
                .expect("serializes");
            v["worker"] = json!(who);
            Ok(v)
        })
        .await
    }
    .await;
    respond(StatusCode::OK, r)
}

// ---- lists and tasks ----------------------------------------------------

#[derive(Serialize)]
struct ListSummary {
    id: DocumentId,
    url: String,
    name: String,
    date: NaiveDate,
    created_by: CreatedBy,
    tasks: usize,
    completed: usize,
    conflicts: usize,
}

async fn lists(State(app): State<App>) -> Response {
    let r = read_agent(&app, |a, _| {
        Ok(a.lists()
            .into_iter()
            .map(|l| ListSummary {
                id: l.id,
                url: l.id.to_url(),
                name: l.meta.name.clone(),
                date: l.meta.date,
                created_by: l.meta.created_by.clone(),
                tasks: l.tasks.len(),
                completed: l
                    .tasks
                    .iter()
                    .filter(|t| t.status.effective() == Status::Completed)
                    .count(),
                conflicts: l
                    .tasks
                    .iter()
                    .filter(|t| t.status.is_conflicted() || !t.assignee_conflict.is_empty())
                    .count(),
            })
            .collect::<Vec<_>>())
    })
    .await;
    respond(StatusCode::OK, r)
}

async fn list(State(app): State<App>, Path(id): Path<String>) -> Response {
    let r = async {
        let id: DocumentId = id
            .parse()
            .map_err(|_| bad(format!("{id:?} is not a list id")))?;
        // Opening an old list while online also brings it up to date with the hub.
        on_agent(&app, move |a, _| {
            let view = a.list(id)?;
            Ok((view, a.sync_new_loads()))
        })
        .await
    }
    .await;
    respond(StatusCode::OK, r)
}

async fn tasks(State(app): State<App>) -> Response {
    let cfg = app.cfg.clone();
    let r = read_agent(&app, move |a, now| {
        let clock = clock(a, &cfg, now);
        Ok(a.lists()
            .iter()
            .flat_map(|l| l.tasks.iter().map(|t| views::row(l, t, &clock)))
            .collect::<Vec<_>>())
    })
    .await;
    respond(StatusCode::OK, r)
}

/// One task with its whole status history (the audit trail).
async fn task_detail(State(app): State<App>, Path(task): Path<String>) -> Response {
    let cfg = app.cfg.clone();
    let r = async {
        let task = parse_task(&task)?;
        read_agent(&app, move |a, now| {
            let clock = clock(a, &cfg, now);
            let list = a.list(find_list(a, task)?)?;
            let t = list.task(task).ok_or_else(|| no_task(task))?;
            let mut v = serde_json::to_value(views::row(&list, t, &clock)).expect("serializes");
            v["history"] = json!(t.status.history);
            v["conflict_statuses"] = json!(t.status.conflict);
            Ok(v)
        })
        .await
    }
    .await;
    respond(StatusCode::OK, r)
}

#[derive(Deserialize)]
struct StatusBody {
    status: Option<String>,
    worker: Option<String>,
    note: Option<String>,
}

async fn set_status(
    State(app): State<App>,
    headers: HeaderMap,
    Path(task): Path<String>,
    body: Bytes,
) -> Response {
    let r = async {
        let body: StatusBody = json_body(
            &body,
            "{\"status\": \"in_progress|completed|reopened\", \"worker\"?, \"note\"?}",
        )?;
        let task = parse_task(&task)?;
        let status: Status = body
            .status
            .as_deref()
            .ok_or_else(|| bad("status: missing; use in_progress, completed or reopened"))?
            .parse()
            .map_err(|e| bad(format!("{e}")))?;
        let worker = acting_worker(&app, &headers, body.worker.as_deref())?;
        let update = StatusUpdate {
            id: EventId(uuid::Uuid::new_v4()),
            task,
            status,
            worker,
            terminal: app.t.terminal.clone(),
            note: body.note.filter(|n| !n.trim().is_empty()),
        };
        let (list, event) = on_agent(&app, move |a, now| {
            roster_worker(a, &update.worker)?;
            let list = find_list(a, update.task)?;
            let (event, out) = a.record_status(list, &update, now)?;
            Ok(((list, event), out))
        })
        .await?;
        Ok(json!({ "saved": true, "list": list, "event": event }))
    }
    .await;
    respond(StatusCode::CREATED, r)
}

#[derive(Deserialize)]
struct ClaimBody {
    worker: Option<String>,
}

async fn claim(
    State(app): State<App>,
    headers: HeaderMap,
    Path(task): Path<String>,
    body: Bytes,
) -> Response {
    let r = async {
        let body: ClaimBody = json_body(&body, "{} (signed in) or {\"worker\": \"<id>\"}")?;
        let task = parse_task(&task)?;
        let worker = acting_worker(&app, &headers, body.worker.as_deref())?;
        on_agent(&app, move |a, now| {
            let list = find_list(a, task)?;
            let out = a.claim(list, task, &worker, now)?;
            Ok((
                json!({"saved": true, "list": list, "assignee": Assignee::Worker(worker)}),
                out,
            ))
        })
        .await
    }
    .await;
    respond(StatusCode::OK, r)
}

/// `worker:<id>`, `group:<id>`, or a bare worker id.
fn parse_assignee(s: &str) -> Result<Assignee, ApiError> {
    let s = s.trim();
    let full = if s.contains(':') {
        s.to_owned()
    } else {
        format!("worker:{s}")
    };
    full.parse().map_err(|e| bad(format!("{e}")))
}

/// A worker assignee must be on the roster; a group may be any name.
fn check_assignee(a: &Agent, to: Option<&Assignee>) -> Result<(), ApiError> {
    if let Some(Assignee::Worker(w)) = to {
        roster_worker(a, w)?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct AssignBody {
    /// `worker:<id>`, `group:<id>`, a bare worker id, or null to unassign.
    to: Option<String>,
}

async fn assign(
    State(app): State<App>,
    headers: HeaderMap,
    Path(task): Path<String>,
    body: Bytes,
) -> Response {
    let r = async {
        let body: AssignBody = json_body(&body, "{\"to\": \"worker:<id>|group:<id>|null\"}")?;
        let task = parse_task(&task)?;
        let to = body.to.as_deref().map(parse_assignee).transpose()?;
        let by = require_session(&app, &headers)?;
        on_agent(&app, move |a, now| {
            require_manager(a, &by, "assign tasks")?;
            check_assignee(a, to.as_ref())?;
            let list = find_list(a, task)?;
            let out = a.set_assignee(list, task, to.as_ref(), now)?;
            Ok((json!({"saved": true, "list": list, "assignee": to}), out))
        })
        .await
    }
    .await;
    respond(StatusCode::OK, r)
}

// ---- manager: new lists and tasks, conflicts ----------------------------

#[derive(Deserialize)]
struct NewTask {
    title: String,
    #[serde(default)]
    description: String,
    /// `HH:MM` on the list's date in the store's zone, or an RFC 3339 time.
    due: Option<String>,
    start: Option<String>,
    priority: Option<String>,
    /// `pos:<operation>` or an http(s) URL.
    link: Option<String>,
    /// `worker:<id>`, `group:<id>` or a bare worker id.
    assignee: Option<String>,
}

const NEW_TASK_SHAPE: &str = "{\"title\", \"description\"?, \"due\"?: \"HH:MM\", \"priority\"?, \"link\"?: \"pos:<op>\", \"assignee\"?: \"worker:<id>|group:<id>\"}";

fn parse_time_on(field: &str, s: &str, date: NaiveDate, tz: Tz) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = NaiveTime::parse_from_str(s, "%H:%M") {
        return tz
            .from_local_datetime(&date.and_time(t))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| bad(format!("{field}: {s} does not exist on {date} in {tz}")));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            bad(format!(
                "{field}: {s:?}; use HH:MM (store time) or an RFC 3339 time"
            ))
        })
}

/// A task authored by this store, from what the manager typed.
fn task_spec(
    t: NewTask,
    store: &engine::ids::StoreId,
    date: NaiveDate,
    tz: Tz,
    position: i64,
) -> Result<TaskSpec, ApiError> {
    let spec = TaskSpec {
        id: TaskId(uuid::Uuid::new_v4()),
        title: t.title.trim().to_owned(),
        description: t.description,
        start: t
            .start
            .as_deref()
            .map(|s| parse_time_on("start", s, date, tz))
            .transpose()?,
        due: t
            .due
            .as_deref()
            .map(|s| parse_time_on("due", s, date, tz))
            .transpose()?,
        priority: t
            .priority
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| bad(format!("{e}")))?
            .unwrap_or_default(),
        link: t
            .link
            .as_deref()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().parse())
            .transpose()
            .map_err(|e| bad(format!("{e}")))?,
        assignee: t
            .assignee
            .as_deref()
            .filter(|a| !a.trim().is_empty())
            .map(parse_assignee)
            .transpose()?,
        created_by: CreatedBy::Store(store.clone()),
        position,
    };
    spec.validate().map_err(|e| bad(e.to_string()))?;
    Ok(spec)
}

#[derive(Deserialize)]
struct NewList {
    name: String,
    /// `YYYY-MM-DD`; today (store time) if absent.
    date: Option<String>,
    #[serde(default)]
    tasks: Vec<NewTask>,
}

async fn create_list(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let r = async {
        let body: NewList = json_body(
            &body,
            &format!("{{\"name\", \"date\"?: \"YYYY-MM-DD\", \"tasks\": [{NEW_TASK_SHAPE}]}}"),
        )?;
        let by = require_session(&app, &headers)?;
        let store = app.t.store.clone();
        let cfg = app.cfg.clone();
        on_agent(&app, move |a, now| {
            require_manager(a, &by, "create lists")?;
            let clock = clock(a, &cfg, now);
            let date = match body.date.as_deref() {
                None => clock.today(),
                Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|_| bad(format!("date: {d:?}; use YYYY-MM-DD")))?,
            };
            let mut tasks = Vec::new();
            for (i, t) in body.tasks.into_iter().enumerate() {
                let spec = task_spec(t, &store, date, clock.tz, i as i64)
                    .map_err(|ApiError(c, m)| ApiError(c, format!("task {}: {m}", i + 1)))?;
                check_assignee(a, spec.assignee.as_ref())?;
                tasks.push(spec);
            }
            let content = InstanceContent {
                id: DocumentId(uuid::Uuid::new_v4()),
                meta: ListMeta {
                    store: store.clone(),
                    name: body.name.trim().to_owned(),
                    template: None,
                    date,
                    time_zone: clock.tz.name().to_owned(),
                    created_by: CreatedBy::Store(store.clone()),
                },
                tasks,
            };
            content.meta.validate().map_err(|e| bad(e.to_string()))?;
            let out = a.create_list(&content, now)?;
            let ids: Vec<TaskId> = content.tasks.iter().map(|t| t.id).collect();
            Ok((
                json!({"saved": true, "list": content.id, "tasks": ids}),
                out,
            ))
        })
        .await
    }
    .await;
    respond(StatusCode::CREATED, r)
}

async fn add_task(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let r = async {
        let list: DocumentId = id
            .parse()
            .map_err(|_| bad(format!("{id:?} is not a list id")))?;
        let body: NewTask = json_body(&body, NEW_TASK_SHAPE)?;
        let by = require_session(&app, &headers)?;
        let store = app.t.store.clone();
        on_agent(&app, move |a, now| {
            require_manager(a, &by, "add tasks")?;
            let view = a.list(list)?;
            let tz: Tz = view.meta.time_zone.parse().unwrap_or(Tz::UTC);
            let position = view
                .tasks
                .iter()
                .map(|t| t.spec.position)
                .max()
                .unwrap_or(-1)
                + 1;
            let spec = task_spec(body, &store, view.meta.date, tz, position)?;
            check_assignee(a, spec.assignee.as_ref())?;
            let out = a.add_task(list, &spec, now)?;
            Ok((json!({"saved": true, "list": list, "task": spec.id}), out))
        })
        .await
    }
    .await;
    respond(StatusCode::CREATED, r)
}

async fn conflicts(State(app): State<App>, headers: HeaderMap) -> Response {
    let r = async {
        let by = require_session(&app, &headers)?;
        let cfg = app.cfg.clone();
        read_agent(&app, move |a, now| {
            require_manager(a, &by, "see conflicts")?;
            let clock = clock(a, &cfg, now);
            Ok(views::conflicts(&a.lists(), &clock))
        })
        .await
    }
    .await;
    respond(StatusCode::OK, r)
}

/// A manager's decision on a conflict: `status` records a new status event
/// that supersedes every conflicting head; `assignee` (a value, or null)
/// is a new put over every concurrent value. Both are checked before
/// either is written.
async fn resolve(
    State(app): State<App>,
    headers: HeaderMap,
    Path(task): Path<String>,
    body: Bytes,
) -> Response {
    let r = async {
        const SHAPE: &str = "{\"status\"?: \"in_progress|completed|reopened\", \"assignee\"?: \"worker:<id>|group:<id>|null\", \"note\"?}";
        let body: Value = json_body(&body, SHAPE)?;
        let task = parse_task(&task)?;
        let status: Option<Status> = match body.get("status") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.parse().map_err(|e| bad(format!("{e}")))?),
            Some(other) => return Err(bad(format!("status: {other}; send a string"))),
        };
        let assignee: Option<Option<Assignee>> = match body.get("assignee") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(parse_assignee(s)?)),
            Some(other) => return Err(bad(format!("assignee: {other}; send a string or null"))),
        };
        let note = body
            .get("note")
            .and_then(Value::as_str)
            .filter(|n| !n.trim().is_empty())
            .map(str::to_owned);
        if status.is_none() && assignee.is_none() {
            return Err(bad(format!("nothing to decide; send {SHAPE}")));
        }
        let by = require_session(&app, &headers)?;
        let terminal = app.t.terminal.clone();
        on_agent(&app, move |a, now| {
            require_manager(a, &by, "decide conflicts")?;
            let list = find_list(a, task)?;
            let view = a.list(list)?;
            let t = view.task(task).ok_or_else(|| no_task(task))?;
            if status.is_some() && !t.status.is_conflicted() {
                return Err(AgentError::Refused(format!(
                    "task {task} has no status conflict to decide"
                ))
                .into());
            }
            if assignee.is_some() && t.assignee_conflict.is_empty() {
                return Err(AgentError::Refused(format!(
                    "task {task} has no assignee conflict to decide"
                ))
                .into());
            }
            if let Some(to) = &assignee {
                check_assignee(a, to.as_ref())?;
            }
            let mut out = Vec::new();
            let mut event = None;
            if let Some(status) = status {
                let update = StatusUpdate {
                    id: EventId(uuid::Uuid::new_v4()),
                    task,
                    status,
                    worker: by.clone(),
                    terminal,
                    note,
                };
                let (e, o) = a.record_status(list, &update, now)?;
                event = Some(e);
                out.extend(o);
            }
            if let Some(to) = &assignee {
                out.extend(a.set_assignee(list, task, to.as_ref(), now)?);
            }
            Ok((
                json!({"saved": true, "list": list, "event": event, "assignee": assignee}),
                out,
            ))
        })
        .await
    }
    .await;
    respond(StatusCode::OK, r)
}

// ---- sync indicator -----------------------------------------------------

async fn sync_status(State(app): State<App>) -> Response {
    let terminal = app.t.terminal.to_string();
    let store = app.t.store.to_string();
    let r = read_agent(&app, move |a, _| {
        let unconfirmed: usize = a.unconfirmed().values().sum();
        let s = a.sync_status()?;
        Ok(json!({
            "store": store,
            "terminal": terminal,
            "online": s.online,
            "last_sync_ms": s.last_sync_ms,
            "unconfirmed_changes": unconfirmed,
            "rejected": s.rejected,
            "actor_changes": s.actor_changes,
        }))
    })
    .await;
    respond(StatusCode::OK, r)
}
