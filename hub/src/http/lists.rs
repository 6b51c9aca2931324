//! One-off lists: publish a list to one store or many (`POST /lists`),
//! and read a list document with each task's past-due mark.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::HashMap;

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
/// "url"}]}` in request order). Each replica thread commits its stores'
/// share in one transaction (on the embedded database there is one
/// thread: all of it in one transaction); a share that fails stops the
/// publish there, and the answer says which stores got the list.
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
        let req = std::sync::Arc::new(req);
        let mut got: HashMap<StoreId, DocumentId> = HashMap::new();
        let mut failure = None;
        for (thread, share) in state.hub.split(stores.clone()) {
            let r = req.clone();
            let s = share.clone();
            match thread
                .call(move |hub, now| hub.publish_request(&r, &s, &mut uuid::Uuid::new_v4, now))
                .await?
            {
                Ok(ids) => got.extend(share.into_iter().zip(ids)),
                Err(f) => {
                    got.extend(share.into_iter().zip(f.published().iter().copied()));
                    failure = Some(f);
                    break;
                }
            }
        }
        if let Some(failure) = failure {
            if got.is_empty() {
                return Err(ApiError::from(failure).into());
            }
            // Some stores got the list: say which (with the ids they
            // got, so a retry need not guess) and which did not.
            let ApiError(code, msg) = ApiError::from(failure);
            let body = json!({
                "error": msg,
                "lists": published_lists(&stores, &got),
                "not_published": stores.iter().filter(|s| !got.contains_key(*s)).collect::<Vec<_>>(),
            });
            return Err(ApiReply(code, body));
        }
        if let (true, [store]) = (one, stores.as_slice()) {
            let id = got[store];
            return Ok(json!({ "id": id, "url": id.to_url() }));
        }
        Ok(json!({ "lists": published_lists(&stores, &got) }))
    }
    .await;
    match result {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(ApiReply(code, body)) => (code, Json(body)).into_response(),
    }
}

/// `{"store", "id", "url"}` for each store that got a list, in request order.
fn published_lists(
    stores: &[StoreId],
    got: &HashMap<StoreId, DocumentId>,
) -> Vec<serde_json::Value> {
    stores
        .iter()
        .filter_map(|store| got.get(store).map(|id| (store, id)))
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
        .registry()
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
