//! `/api/tasks`: every task as a row (by due time), one task with its history, and the
//! writes on a task: status updates, claims and (for a manager)
//! assignments.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use engine::ids::EventId;
use engine::model::{Assignee, Status, StatusUpdate};
use serde::Deserialize;
use serde_json::json;

use super::access::{acting_worker, check_assignee, require_manager, require_session};
use super::app::{clock, find_list, on_agent, read_agent, App};
use super::error::{bad, no_task, respond};
use super::input::{json_body, parse_assignee, parse_task};
use crate::views;

pub(super) async fn tasks(State(app): State<App>) -> Response {
    let cfg = app.cfg.clone();
    let r = read_agent(&app, move |a, now| {
        let clock = clock(a, &cfg, now);
        let mut rows = a
            .lists()
            .iter()
            .flat_map(|l| l.tasks.iter().map(|t| views::row(l, t, &clock)))
            .collect::<Vec<_>>();
        // By due time, as a shift works through them: a 19:00 task before a
        // 22:00 one whatever list or position it has; undated tasks last,
        // by their list's date; within one due time the more urgent first.
        // The sort is stable: past that the lists' own order stays.
        rows.sort_by_key(|r| (views::due_order(r.due, r.priority), r.list_date));
        Ok(rows)
    })
    .await;
    respond(StatusCode::OK, r)
}

/// One task with its whole status history (the audit trail).
pub(super) async fn task_detail(State(app): State<App>, Path(task): Path<String>) -> Response {
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

pub(super) async fn set_status(
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

pub(super) async fn claim(
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

#[derive(Deserialize)]
struct AssignBody {
    /// `worker:<id>`, `group:<id>`, a bare worker id, or null to unassign.
    to: Option<String>,
}

pub(super) async fn assign(
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
