//! `POST /api/tasks/{task}/pos-operation`: hand a task's `pos:<operation>`
//! to the POS the terminal runs in. The agent POSTs
//! `{"type": "pos-operation", "operation", "task", "title", "worker",
//! "terminal"}` as JSON to the URL given with `pos-agent run
//! --pos-callback`, and answers only after the POS took it (any 2xx).
//! A callback reaches a native POS and a browser-hosted one alike: all
//! either needs is a small HTTP listener.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::access::require_session;
use super::app::{find_list, read_agent, App};
use super::error::{no_task, respond, ApiError};
use super::input::parse_task;
use crate::views;

/// How long the POS has to take an operation before the worker is told
/// it did not.
const POS_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn hand_over(
    State(app): State<App>,
    headers: HeaderMap,
    Path(task): Path<String>,
) -> Response {
    let r = async {
        let task = parse_task(&task)?;
        let worker = require_session(&app, &headers)?;
        let (op, title) = read_agent(&app, move |a, _| {
            let list = a.list(find_list(a, task)?)?;
            let t = list.task(task).ok_or_else(|| no_task(task))?;
            let op = views::pos_operation(t.spec.link.as_ref()).ok_or_else(|| {
                ApiError(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("task {task} has no pos: link; there is nothing to open in the POS"),
                )
            })?;
            Ok((op, t.spec.title.clone()))
        })
        .await?;
        if let Some(why) = op.refused {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("not handed to the POS: {why}"),
            ));
        }
        let Some(url) = app.cfg.pos_callback.clone() else {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!(
                    "this terminal hands POS operations to no POS; open \"{}\" in the POS by hand \
                     (or start the agent with --pos-callback URL)",
                    op.name
                ),
            ));
        };
        let body = json!({
            "type": "pos-operation",
            "operation": op.name,
            "task": task,
            "title": title,
            "worker": worker,
            "terminal": app.t.terminal.to_string(),
        });
        let resp = reqwest::Client::new()
            .post(url.clone())
            .json(&body)
            .timeout(POS_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                ApiError(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "the POS did not take \"{}\": {url} did not answer ({e}); open it by hand",
                        op.name
                    ),
                )
            })?;
        if !resp.status().is_success() {
            return Err(ApiError(
                StatusCode::BAD_GATEWAY,
                format!(
                    "the POS refused \"{}\": {url} answered {}; open it by hand",
                    op.name,
                    resp.status()
                ),
            ));
        }
        Ok(json!({ "handed_over": true, "operation": op.name }))
    }
    .await;
    respond(StatusCode::OK, r)
}
