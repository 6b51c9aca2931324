//! `GET /api/notifications`: tasks due soon or past due, for the signed-in
//! or named worker (theirs and work nobody holds, `views::is_for`), or for
//! everyone.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::access::{roster_worker, signed_in};
use super::app::{clock, read_agent, App};
use super::error::{bad, respond};
use crate::views;

#[derive(Deserialize)]
pub(super) struct NotifyQuery {
    window: Option<String>,
    worker: Option<String>,
}

pub(super) async fn notifications(
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
                (Some(w), Some(r)) => views::is_for(t, w, r),
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
