//! `GET /api/workers`: the store's roster, without PIN hashes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use engine::document::directory::RosterWorker;
use engine::ids::WorkerId;
use serde::Serialize;

use super::app::{read_agent, App};
use super::error::respond;

#[derive(Serialize)]
pub(super) struct WorkerInfo {
    id: WorkerId,
    name: String,
    role: String,
    groups: Vec<String>,
    manager: bool,
    has_pin: bool,
}

pub(super) fn worker_info(id: &WorkerId, w: &RosterWorker) -> WorkerInfo {
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
pub(super) async fn workers(State(app): State<App>) -> Response {
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
