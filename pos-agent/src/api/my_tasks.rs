//! `GET /api/my-tasks`: the signed-in worker's view of today, grouped by
//! list: their tasks and work nobody holds (`views::is_for`); `?scope=all`
//! for every task.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::access::{require_session, roster_worker};
use super::app::{clock, read_agent, App};
use super::error::{bad, respond};
use super::workers::worker_info;
use crate::views;

#[derive(Deserialize)]
pub(super) struct MyTasksQuery {
    scope: Option<String>,
}

pub(super) async fn my_tasks(
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
                views::today_by_list(&lists, &clock, |t| all || views::is_for(t, &w, &rec));
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
