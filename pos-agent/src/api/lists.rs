//! `/api/lists`: the task lists held, one list, and (for a manager) new
//! lists and new tasks authored by this store.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use engine::ids::{DocumentId, TaskId};
use engine::model::{CreatedBy, InstanceContent, ListMeta, Status, TaskSpec};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::access::{check_assignee, require_manager, require_session};
use super::app::{clock, on_agent, read_agent, App};
use super::error::{bad, respond, ApiError};
use super::input::{json_body, parse_assignee};

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

pub(super) async fn lists(State(app): State<App>) -> Response {
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
                conflicts: l.tasks.iter().filter(|t| t.has_conflict()).count(),
            })
            .collect::<Vec<_>>())
    })
    .await;
    respond(StatusCode::OK, r)
}

pub(super) async fn list(State(app): State<App>, Path(id): Path<String>) -> Response {
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

pub(super) async fn create_list(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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

pub(super) async fn add_task(
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
