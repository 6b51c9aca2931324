//! One-off lists: publish a list to one store or many (`POST /lists`),
//! and read a list document with each task's past-due mark.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::document::instance;
use engine::ids::{DocumentId, StoreId};
use engine::publish::PublishRequest;
use serde_json::json;

use super::access::{Access::Hq, ApiRoutes, Reach};
use super::auth::{hq, hq_read};
use super::reply::{bad_request, json_reply, ApiError};
use super::state::AppState;
use axum::http::Method;
use engine::hq_accounts::Need;

pub fn routes() -> ApiRoutes {
    ApiRoutes::default()
        .route(
            Method::POST,
            "/lists",
            Hq(Need::Author, Reach::Named),
            publish_list,
        )
        .route(
            Method::GET,
            "/documents/{id}",
            Hq(Need::Read, Reach::PathDocument),
            get_document,
        )
}

/// Publish a list to one store (`store`; replies `{"id", "url"}`) or the
/// same list to many (`stores`; replies `{"lists": [{"store", "id",
/// "url"}]}` in request order), all of it in one transaction.
async fn publish_list(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<PublishRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    hq!(state, headers);
    let result: Result<serde_json::Value, ApiReply> = async {
        let Json(req) = body.map_err(|e| bad_request(format!("bad JSON: {e}")))?;
        let stores = req.stores_named().map_err(ApiError::from)?;
        let one = req.store.is_some();
        let s = stores.clone();
        let ids = match state
            .hub
            .call(move |hub, now| hub.publish_request(&req, &s, &mut uuid::Uuid::new_v4, now))
            .await?
        {
            Ok(ids) => ids,
            Err(failure) if !failure.published().is_empty() => {
                // Some stores got the list: say which (with the ids they
                // got, so a retry need not guess) and which did not.
                let published = failure.published().to_vec();
                let ApiError(code, msg) = ApiError::from(failure);
                let body = json!({
                    "error": msg,
                    "lists": published_lists(&stores, &published),
                    "not_published": &stores[published.len()..],
                });
                return Err(ApiReply(code, body));
            }
            Err(failure) => return Err(ApiError::from(failure).into()),
        };
        if let (true, [id]) = (one, ids.as_slice()) {
            return Ok(json!({ "id": id, "url": id.to_url() }));
        }
        Ok(json!({ "lists": published_lists(&stores, &ids) }))
    }
    .await;
    match result {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(ApiReply(code, body)) => (code, Json(body)).into_response(),
    }
}

/// `{"store", "id", "url"}` for each store and the list it got, in order.
fn published_lists(stores: &[StoreId], ids: &[DocumentId]) -> Vec<serde_json::Value> {
    stores
        .iter()
        .zip(ids)
        .map(|(store, id)| json!({ "store": store, "id": id, "url": id.to_url() }))
        .collect()
}

/// An error answer with a body beyond `{"error"}`.
struct ApiReply(StatusCode, serde_json::Value);

impl From<ApiError> for ApiReply {
    fn from(ApiError(code, msg): ApiError) -> Self {
        ApiReply(code, json!({ "error": msg }))
    }
}

impl From<anyhow::Error> for ApiReply {
    fn from(e: anyhow::Error) -> Self {
        ApiError::from(e).into()
    }
}

async fn get_document(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    hq_read!(state, headers);
    let Ok(doc) = id.parse::<DocumentId>() else {
        return bad_request(format!(
            "{id:?} is not a document id (UUID or automerge-repo id)"
        ))
        .into_response();
    };
    let r = state
        .hub
        .call_soon(move |hub, now_ms| {
            let v = hub
                .document(doc)
                .map_err(ApiError::from)
                .and_then(|d| instance::read(d).map_err(|e| bad_request(e.to_string())))
                .map(|view| with_past_due(&view, now_ms));
            (v, Vec::new())
        })
        .await;
    json_reply(r)
}

/// The instance as JSON with each task marked `past_due` by the engine's
/// rule (`engine::due`, as the index counts it), so the drill-down shows
/// what the grid and the past-due list count, not its own judgement.
fn with_past_due(view: &instance::InstanceView, now_ms: i64) -> serde_json::Value {
    let now = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    let mut v = json!(view);
    if let Some(tasks) = v["tasks"].as_array_mut() {
        for (row, t) in tasks.iter_mut().zip(&view.tasks) {
            let open = t.status.effective() != engine::model::Status::Completed;
            row["past_due"] = json!(engine::due::is_past_due(t.spec.due, open, now));
        }
    }
    v
}
