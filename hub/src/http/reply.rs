//! The admin API's answers: JSON, or an error (a status and a message
//! that says what to fix); and the checks on a request's fields, which
//! answer with that error.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::publish::InvalidRequest;
use engine::replica::hub::HubError;
use engine::replica::PublishFailure;
use serde::Serialize;
use serde_json::json;

/// An API error: status code and a message that says what to fix.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(crate) fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        ApiError(hub_error_status(&e), e.to_string())
    }
}

/// The status of an answer that failed with `e`.
fn hub_error_status(e: &HubError) -> StatusCode {
    match e {
        HubError::Model(_) => StatusCode::BAD_REQUEST,
        HubError::UnknownStore(_) | HubError::UnknownDocument(_) => StatusCode::NOT_FOUND,
        HubError::Storage(e) => storage_error_status(e),
        HubError::Load { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        // Nothing was saved; the same request may succeed later.
        HubError::NotSaved => StatusCode::SERVICE_UNAVAILABLE,
        // Another node of the cluster writes this store.
        HubError::ServedElsewhere(_) => StatusCode::CONFLICT,
    }
}

/// A request that cannot be published as it is: 400.
impl From<InvalidRequest> for ApiError {
    fn from(InvalidRequest(msg): InvalidRequest) -> Self {
        bad_request(msg)
    }
}

impl From<PublishFailure> for ApiError {
    fn from(f: PublishFailure) -> Self {
        let code = match &f {
            PublishFailure::Invalid(_) => StatusCode::BAD_REQUEST,
            PublishFailure::UnknownStores { .. } => StatusCode::NOT_FOUND,
            PublishFailure::Hub(e) => hub_error_status(e),
            PublishFailure::Partly { source, .. } => hub_error_status(source),
        };
        ApiError(code, f.to_string())
    }
}

/// The status of an answer the storage failed: a database that cannot be
/// reached, is busy or is full may answer later (503: nothing was written);
/// a store another node took meanwhile is that node's to write (409); what
/// is damaged is the hub's fault (500).
fn storage_error_status(e: &engine::storage::StorageError) -> StatusCode {
    use engine::storage::StorageError as E;
    match e {
        E::Unavailable { .. } | E::DiskFull { .. } | E::Conflict { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        E::LeaseLost { .. } => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<engine::storage::StorageError> for ApiError {
    fn from(e: engine::storage::StorageError) -> Self {
        ApiError(storage_error_status(&e), e.to_string())
    }
}

/// JSON with `code`, or the error as its status.
pub(crate) fn reply<T: Serialize>(code: StatusCode, r: Result<T, ApiError>) -> Response {
    match r {
        Ok(v) => (code, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The answer to a read from the hub thread: JSON, or the error as a status.
pub(crate) fn json_reply<T: Serialize, E: Into<ApiError>>(
    r: anyhow::Result<Result<T, E>>,
) -> Response {
    match r {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => e.into().into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

pub(crate) fn nonempty(field: &str, v: String) -> Result<String, ApiError> {
    if v.trim().is_empty() {
        Err(bad_request(format!("{field} is empty")))
    } else {
        Ok(v)
    }
}

/// Unix ms as RFC 3339 (UTC, milliseconds), for JSON answers.
pub(crate) fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// `ms` as the store's clock shows it, with the zone named:
/// `2026-12-07 18:03 JST (Asia/Tokyo)`; UTC if the zone is unknown.
pub(crate) fn in_zone(ms: i64, zone: &str) -> String {
    // One format on every screen: the fleet rules' own.
    engine::fleet::in_store_zone(ms, zone)
}

/// A JSON body, or why axum could not decode it (see `body`).
pub(crate) type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

/// `v` parsed, or a 400 naming `what`.
pub(crate) fn parse<T: std::str::FromStr>(what: &str, v: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    v.parse().map_err(|e| bad_request(format!("{what}: {e}")))
}

/// The decoded body, or a 400 that shows the `shape` to send.
pub(crate) fn body<T>(b: JsonBody<T>, shape: &str) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|e| bad_request(format!("bad JSON: {e}; send {shape}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::storage::{StorageError, Unavailable};

    #[test]
    fn a_time_shows_in_the_stores_zone_with_the_zone_named() {
        // 2026-12-07 09:00 UTC
        let ms = 1_796_634_000_000;
        assert_eq!(
            in_zone(ms, "Asia/Tokyo"),
            "2026-12-07 18:00 JST (Asia/Tokyo)"
        );
        assert_eq!(in_zone(ms, "Mars/Base"), "2026-12-07 09:00 (UTC)");
    }

    #[test]
    fn a_database_out_of_reach_answers_503_and_a_store_taken_over_409() {
        let unreachable = StorageError::Unavailable {
            location: "postgres://db:5432/hub".into(),
            unavailable: Unavailable::Unreachable,
            source: "connection refused".into(),
        };
        assert_eq!(
            ApiError::from(unreachable).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let lost = StorageError::LeaseLost {
            location: "postgres://db:5432/hub".into(),
            stores: vec!["store-042".into()],
        };
        assert_eq!(
            ApiError::from(HubError::Storage(lost)).0,
            StatusCode::CONFLICT
        );
    }
}
