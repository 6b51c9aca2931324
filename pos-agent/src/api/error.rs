//! How the API says no: an `ApiError` is a status code and a message that
//! says what to fix, sent as `{"error": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::ids::TaskId;
use engine::replica::agent::AgentError;
use serde::Serialize;
use serde_json::json;

pub struct ApiError(pub(super) StatusCode, pub(super) String);

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
            AgentError::Model(engine::model::ModelError::UnknownTask(_)) => StatusCode::NOT_FOUND,
            AgentError::Model(_) | AgentError::UnknownWorker(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AgentError::UnknownList(_) => StatusCode::NOT_FOUND,
            AgentError::Refused(_) => StatusCode::CONFLICT,
            // The write was rolled back; the worker should know it was not saved.
            AgentError::Storage(_) if is_disk_full(&e) => StatusCode::INSUFFICIENT_STORAGE,
            AgentError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

/// Whether `e` failed because the disk is full: the one place the API
/// looks inside a storage error.
fn is_disk_full(e: &AgentError) -> bool {
    matches!(
        e,
        AgentError::Storage(engine::storage::StorageError::DiskFull { .. })
    )
}

pub(super) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

pub(super) fn no_task(task: TaskId) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no task {task} on this terminal (its list may have been deleted)"),
    )
}

pub(super) fn respond<T: Serialize>(code: StatusCode, r: Result<T, ApiError>) -> Response {
    match r {
        Ok(v) => (code, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}
