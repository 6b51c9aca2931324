//! The terminal's local HTTP API (loopback only unless asked): lists,
//! tasks, status updates, assignment, sync status. A status update answers
//! only after it is durable on disk.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::ids::{DocumentId, EventId, TaskId};
use engine::model::{Assignee, Status, StatusUpdate};
use engine::replica::agent::{Agent, AgentError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::agent::Terminal;

pub fn router(t: Terminal) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/lists", get(lists))
        .route("/api/lists/{id}", get(list))
        .route("/api/tasks", get(tasks))
        .route("/api/tasks/{task}/status", post(set_status))
        .route("/api/tasks/{task}/assign", post(assign))
        .route("/api/sync-status", get(sync_status))
        .with_state(t)
}

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
            AgentError::Model(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AgentError::UnknownList(_) => StatusCode::NOT_FOUND,
            AgentError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

#[derive(Serialize)]
struct ListSummary {
    id: DocumentId,
    url: String,
    name: String,
    date: chrono::NaiveDate,
    tasks: usize,
    completed: usize,
    conflicts: usize,
}

async fn lists(State(t): State<Terminal>) -> Result<Json<Vec<ListSummary>>, ApiError> {
    let v = t
        .handle
        .call(|a, _| {
            let v = a
                .lists()
                .into_iter()
                .map(|l| ListSummary {
                    id: l.id,
                    url: l.id.to_url(),
                    name: l.meta.name.clone(),
                    date: l.meta.date,
                    tasks: l.tasks.len(),
                    completed: l
                        .tasks
                        .iter()
                        .filter(|t| t.status.effective() == Status::Completed)
                        .count(),
                    conflicts: l.tasks.iter().filter(|t| t.status.is_conflicted()).count(),
                })
                .collect();
            (v, Vec::new())
        })
        .await?;
    Ok(Json(v))
}

async fn list(State(t): State<Terminal>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<DocumentId>() else {
        return bad(format!("{id:?} is not a list id")).into_response();
    };
    // Opening an old list while online also brings it up to date with the hub.
    match t
        .handle
        .call(move |a, _| {
            let view = a.list(id);
            (view, a.sync_new_loads())
        })
        .await
    {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[derive(Serialize)]
struct TaskRow {
    list: DocumentId,
    list_name: String,
    task: TaskId,
    title: String,
    due: Option<chrono::DateTime<chrono::Utc>>,
    assignee: Option<Assignee>,
    status: Status,
    conflict: bool,
}

async fn tasks(State(t): State<Terminal>) -> Result<Json<Vec<TaskRow>>, ApiError> {
    let v = t
        .handle
        .call(|a, _| {
            let mut rows = Vec::new();
            for l in a.lists() {
                for task in l.tasks {
                    rows.push(TaskRow {
                        list: l.id,
                        list_name: l.meta.name.clone(),
                        task: task.spec.id,
                        title: task.spec.title,
                        due: task.spec.due,
                        assignee: task.spec.assignee,
                        status: task.status.current,
                        conflict: task.status.is_conflicted(),
                    });
                }
            }
            (rows, Vec::new())
        })
        .await?;
    Ok(Json(v))
}

/// The list holding `task` (task ids are unique across lists).
fn find_list(a: &Agent, task: TaskId) -> Option<DocumentId> {
    a.lists()
        .into_iter()
        .find(|l| l.task(task).is_some())
        .map(|l| l.id)
}

#[derive(Deserialize)]
pub struct StatusBody {
    pub status: String,
    pub worker: String,
    pub note: Option<String>,
}

async fn set_status(
    State(t): State<Terminal>,
    Path(task): Path<String>,
    body: Result<Json<StatusBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let r: Result<serde_json::Value, ApiError> = async {
        let Json(body) = body.map_err(|e| {
            bad(format!(
                "bad JSON: {e}; send {{\"status\", \"worker\", \"note\"?}}"
            ))
        })?;
        let task: TaskId = task.parse().map_err(|e| bad(format!("task: {e}")))?;
        let update = StatusUpdate {
            id: EventId(uuid::Uuid::new_v4()),
            task,
            status: body.status.parse().map_err(|e| bad(format!("{e}")))?,
            worker: body
                .worker
                .parse()
                .map_err(|e| bad(format!("worker: {e}")))?,
            terminal: t.terminal.clone(),
            note: body.note.filter(|n| !n.trim().is_empty()),
        };
        let result = t
            .handle
            .call(move |a, now| {
                let Some(list) = find_list(a, update.task) else {
                    return (
                        Err(ApiError(
                            StatusCode::NOT_FOUND,
                            format!("no task {} on this terminal", update.task),
                        )),
                        Vec::new(),
                    );
                };
                match a.record_status(list, &update, now) {
                    Ok((event, out)) => (Ok((list, event)), out),
                    Err(e) => (Err(e.into()), Vec::new()),
                }
            })
            .await??;
        Ok(json!({ "saved": true, "list": result.0, "event": result.1 }))
    }
    .await;
    match r {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub struct AssignBody {
    /// `worker:<id>`, `group:<id>`, or null to unassign.
    pub to: Option<String>,
}

async fn assign(
    State(t): State<Terminal>,
    Path(task): Path<String>,
    body: Result<Json<AssignBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let r: Result<(), ApiError> = async {
        let Json(body) =
            body.map_err(|e| bad(format!("bad JSON: {e}; send {{\"to\": \"worker:<id>\"}}")))?;
        let task: TaskId = task.parse().map_err(|e| bad(format!("task: {e}")))?;
        let to: Option<Assignee> = body
            .to
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| bad(format!("{e}")))?;
        t.handle
            .call(move |a, now| {
                let Some(list) = find_list(a, task) else {
                    return (
                        Err(ApiError(
                            StatusCode::NOT_FOUND,
                            format!("no task {task} on this terminal"),
                        )),
                        Vec::new(),
                    );
                };
                match a.set_assignee(list, task, to.as_ref(), now) {
                    Ok(out) => (Ok(()), out),
                    Err(e) => (Err(e.into()), Vec::new()),
                }
            })
            .await??;
        Ok(())
    }
    .await;
    match r {
        Ok(()) => Json(json!({"saved": true})).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn sync_status(State(t): State<Terminal>) -> Response {
    let r = t
        .handle
        .call(|a, _| {
            let unconfirmed: usize = a.unconfirmed().values().sum();
            (a.sync_status().map(|s| (s, unconfirmed)), Vec::new())
        })
        .await;
    match r {
        Ok(Ok((s, unconfirmed))) => Json(json!({
            "online": s.online,
            "last_sync_ms": s.last_sync_ms,
            "unconfirmed_changes": unconfirmed,
            "rejected": s.rejected,
        }))
        .into_response(),
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
