//! `/api/conflicts` and `/api/tasks/{task}/resolve`: a manager sees the
//! tasks whose status or assignee diverged and decides them.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use engine::ids::EventId;
use engine::model::{Assignee, Status, StatusUpdate};
use engine::replica::agent::AgentError;
use serde_json::{json, Value};

use super::access::{check_assignee, require_manager, require_session};
use super::app::{clock, find_list, on_agent, read_agent, App};
use super::error::{bad, no_task, respond};
use super::input::{json_body, parse_assignee, parse_task};
use crate::views;

pub(super) async fn conflicts(State(app): State<App>, headers: HeaderMap) -> Response {
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
pub(super) async fn resolve(
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
