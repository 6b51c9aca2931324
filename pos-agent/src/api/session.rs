//! `/api/session`: sign in with a roster worker's PIN, see who is signed
//! in, sign out. The tokens live in `crate::sessions`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::ids::WorkerId;
use serde::Deserialize;
use serde_json::json;

use super::access::{bearer, require_session, roster_worker};
use super::app::{read_agent, App};
use super::error::{bad, respond, ApiError};
use super::input::json_body;
use super::workers::worker_info;

#[derive(Deserialize)]
struct SignIn {
    worker: Option<String>,
    pin: Option<String>,
}

pub(super) async fn sign_in(State(app): State<App>, body: Bytes) -> Response {
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

pub(super) async fn session_info(State(app): State<App>, headers: HeaderMap) -> Response {
    let r = async {
        let w = require_session(&app, &headers)?;
        let id = w.clone();
        let rec = read_agent(&app, move |a, _| roster_worker(a, &id)).await?;
        Ok(worker_info(&w, &rec))
    }
    .await;
    respond(StatusCode::OK, r)
}

pub(super) async fn sign_out(State(app): State<App>, headers: HeaderMap) -> Response {
    let ended = bearer(&headers).is_some_and(|t| app.sessions.end(t));
    Json(json!({ "signed_out": ended })).into_response()
}
