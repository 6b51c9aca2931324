//! Who is acting and whether they may: the signed-in worker (a bearer
//! session token) or a named roster worker, and the manager-only checks.

use axum::http::{HeaderMap, StatusCode};
use engine::document::directory::RosterWorker;
use engine::ids::WorkerId;
use engine::model::Assignee;
use engine::replica::agent::{Agent, AgentError};

use super::app::App;
use super::error::{bad, ApiError};

pub(super) fn roster_worker(a: &Agent, w: &WorkerId) -> Result<RosterWorker, ApiError> {
    a.roster_worker(w)
        .ok_or_else(|| AgentError::UnknownWorker(w.clone()).into())
}

pub(super) fn require_manager(
    a: &Agent,
    w: &WorkerId,
    what: &str,
) -> Result<RosterWorker, ApiError> {
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

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
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
pub(super) fn signed_in(app: &App, headers: &HeaderMap) -> Result<Option<WorkerId>, ApiError> {
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

pub(super) fn require_session(app: &App, headers: &HeaderMap) -> Result<WorkerId, ApiError> {
    signed_in(app, headers)?.ok_or_else(|| {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "sign in first: POST /api/session {\"worker\", \"pin\"}".into(),
        )
    })
}

/// Who is acting: the signed-in worker, or `named` (the CLI's `--worker`)
/// unless the terminal runs with `--require-pin-for-cli`. A session always
/// wins: the web UI's signed-in worker is who acts, and naming someone
/// else is refused.
pub(super) fn acting_worker(
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
        (None, Some(n)) if app.cfg.cli_needs_pin => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            format!(
                "this terminal records work only for a signed-in worker \
                 (pos-agent run --require-pin-for-cli): from a shell add \
                 --pin <{n}'s PIN> to the command; over the API sign in first \
                 (POST /api/session) and send the session token"
            ),
        )),
        (None, Some(n)) => Ok(n),
        (None, None) => Err(bad(
            "worker: missing; sign in, or send \"worker\": \"<id on the roster>\"",
        )),
    }
}

/// A worker assignee must be on the roster; a group may be any name.
pub(super) fn check_assignee(a: &Agent, to: Option<&Assignee>) -> Result<(), ApiError> {
    if let Some(Assignee::Worker(w)) = to {
        roster_worker(a, w)?;
    }
    Ok(())
}
