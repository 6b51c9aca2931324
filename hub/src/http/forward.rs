//! HQ writes in a cluster, carried out by the nodes that serve the stores
//! they touch. Only a store's node may write its documents (the fence), so
//! an admin API request that writes one store's documents is passed, as it
//! came, to that store's node and its answer returned; a publish to many
//! stores is split by node, each node commits its share, and the answer
//! says per store what went out; a purge runs on every live node.
//!
//! A passed request carries `x-hub-forwarded`, and a node never passes one
//! on again: if the store moved in between, its handler refuses it with
//! 409 (nothing written) and HQ retries. Retrying is safe: the content HQ
//! writes is deterministic. The receiving node's own share goes through
//! the same HTTP path, so every share is handled alike.
//!
//! Why not a bus of commands through the database: a synchronous answer
//! per store is what the operator needs, and each node checks the caller's
//! token itself (tokens live in the shared database).

use std::collections::BTreeMap;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use engine::ids::StoreId;
use serde_json::{json, Value};

use super::state::AppState;
use crate::pg::lease::Serving;

/// Set on a request one node passes to another.
pub const FORWARDED: &str = "x-hub-forwarded";

/// Largest request body passed on (a publish to 1,000 stores is far less).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// What a write under `/api` touches, for routing in a cluster.
enum Target {
    /// Handled here: reads, and registry writes any node may make.
    Here,
    /// One store's documents.
    Store(StoreId),
    /// A publish naming many stores (its body's `stores`).
    Stores(Vec<StoreId>),
    /// Every node's stores (a purge without a store).
    Everyone,
}

/// The `/api` middleware: in a cluster, pass writes to the nodes that
/// serve their stores.
pub async fn to_serving_nodes(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.leases.is_none() || req.headers().contains_key(FORWARDED) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response();
    };
    let path = parts.uri.path();
    let target = target(
        &parts.method,
        path.strip_prefix("/api").unwrap_or(path),
        &bytes,
    );
    match target {
        Target::Here => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Target::Store(store) => {
            let Some(to) = node_of_waiting(&state, &store).await else {
                return nobody_serves(&store);
            };
            pass(&parts, bytes.to_vec(), &to).await
        }
        Target::Stores(stores) => split_publish(&state, &parts, &bytes, stores).await,
        Target::Everyone => purge_everywhere(&state, &parts, &bytes).await,
    }
}

/// What the request at `path` (under `/api`) with `body` touches.
fn target(method: &Method, path: &str, body: &[u8]) -> Target {
    if *method == Method::GET || *method == Method::HEAD {
        return Target::Here;
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let store = |s: &str| s.parse::<StoreId>().ok();
    match segments.as_slice() {
        // A store's name, zone and locale (its directory), its removal.
        ["stores", id] if *method == Method::PATCH || *method == Method::DELETE => {
            store(id).map_or(Target::Here, Target::Store)
        }
        // Its roster.
        ["stores", id, "workers", _] => store(id).map_or(Target::Here, Target::Store),
        ["lists"] => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            if let Some(id) = v.get("store").and_then(Value::as_str).and_then(store) {
                return Target::Store(id);
            }
            match v.get("stores").and_then(Value::as_array) {
                Some(list) => {
                    let ids: Option<Vec<StoreId>> =
                        list.iter().map(|s| s.as_str().and_then(store)).collect();
                    // A malformed list is the handler's to refuse.
                    ids.map_or(Target::Here, Target::Stores)
                }
                None => Target::Here,
            }
        }
        ["purge"] => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            match v.get("store").and_then(Value::as_str).and_then(store) {
                Some(id) => Target::Store(id),
                None if v.is_object() => Target::Everyone,
                None => Target::Here,
            }
        }
        _ => Target::Here,
    }
}

/// The HTTP base of the node serving `store` (this one included),
/// waiting up to two lease rounds while nobody is known to serve it (a
/// store just added or taken over: the next round names its node).
async fn node_of_waiting(state: &AppState, store: &StoreId) -> Option<String> {
    let leases = state.leases.as_ref()?;
    match leases
        .serving(store, std::time::Duration::from_millis(2_500))
        .await?
    {
        Serving::Here => Some(own_base(state)),
        Serving::There(sync) => Some(http_base(&sync)),
    }
}

/// This node's HTTP base, from its advertised sync URL.
fn own_base(state: &AppState) -> String {
    http_base(&state.cluster_address.clone().unwrap_or_default())
}

/// `ws://host:port/sync` → `http://host:port`.
fn http_base(sync_url: &str) -> String {
    let url = sync_url.trim_end_matches("/sync");
    if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        url.to_owned()
    }
}

fn nobody_serves(store: &StoreId) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(axum::http::header::RETRY_AFTER, "2")],
        axum::Json(json!({"error": format!(
            "no hub node serves store {store} right now (a node is taking it over); nothing was changed, retry"
        )})),
    )
        .into_response()
}

/// Send the request as it came to the node at `base`; its answer.
async fn pass(parts: &axum::http::request::Parts, body: Vec<u8>, base: &str) -> Response {
    let (status, headers, bytes) = match send(parts, body, base).await {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                axum::Json(json!({"error": format!(
                    "the node that serves this store ({base}) did not answer: {e}; nothing may \
                     have changed there, retry"
                )})),
            )
                .into_response()
        }
    };
    let mut out = Response::new(Body::from(bytes));
    *out.status_mut() = status;
    if let Some(ct) = headers {
        out.headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, ct);
    }
    out
}

async fn send(
    parts: &axum::http::request::Parts,
    body: Vec<u8>,
    base: &str,
) -> Result<(StatusCode, Option<HeaderValue>, Vec<u8>), reqwest::Error> {
    // Under `/api` whether or not the router stripped it.
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let path = path.strip_prefix("/api").unwrap_or(path);
    let mut req = reqwest::Client::new()
        .request(parts.method.clone(), format!("{base}/api{path}"))
        .header(FORWARDED, "1")
        .body(body);
    for name in [
        axum::http::header::AUTHORIZATION,
        axum::http::header::CONTENT_TYPE,
        // The receiving node audited it (`access::AUDITED`).
        axum::http::HeaderName::from_static(super::access::AUDITED),
    ] {
        if let Some(v) = parts.headers.get(&name) {
            req = req.header(name, v);
        }
    }
    let r = req.send().await?;
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let ct = r
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    Ok((status, ct, r.bytes().await?.to_vec()))
}

/// A publish to many stores: one request per node with its stores; the
/// answer lists, in the request's order, what went out and what did not.
async fn split_publish(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: &[u8],
    stores: Vec<StoreId>,
) -> Response {
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return (StatusCode::BAD_REQUEST, "bad JSON\n").into_response();
    };
    let mut by_node: BTreeMap<String, Vec<StoreId>> = BTreeMap::new();
    let mut failed: BTreeMap<StoreId, String> = BTreeMap::new();
    for s in &stores {
        match node_of_waiting(state, s).await {
            Some(base) => by_node.entry(base).or_default().push(s.clone()),
            None => {
                failed.insert(
                    s.clone(),
                    "no hub node serves it right now; nothing was changed, retry".into(),
                );
            }
        }
    }
    let mut sent: BTreeMap<StoreId, Value> = BTreeMap::new();
    let mut first_error: Option<StatusCode> = None;
    for (base, share) in by_node {
        let mut part = request.clone();
        part.insert(
            "stores".into(),
            json!(share.iter().map(StoreId::as_str).collect::<Vec<_>>()),
        );
        let bytes = serde_json::to_vec(&Value::Object(part)).expect("JSON encodes");
        match send(parts, bytes, &base).await {
            Ok((status, _, answer)) if status.is_success() => {
                let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
                for list in answer["lists"].as_array().into_iter().flatten() {
                    if let Some(s) = list["store"].as_str().and_then(|s| s.parse().ok()) {
                        sent.insert(s, list.clone());
                    }
                }
            }
            Ok((status, _, answer)) => {
                first_error.get_or_insert(status);
                let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
                let why = answer["error"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("the node at {base} answered {status}"));
                for s in share {
                    failed.insert(s, why.clone());
                }
            }
            Err(e) => {
                first_error.get_or_insert(StatusCode::BAD_GATEWAY);
                for s in share {
                    failed.insert(s, format!("the node at {base} did not answer: {e}; retry"));
                }
            }
        }
    }
    let lists: Vec<Value> = stores.iter().filter_map(|s| sent.get(s).cloned()).collect();
    if failed.is_empty() {
        return (StatusCode::CREATED, axum::Json(json!({ "lists": lists }))).into_response();
    }
    let failed: Vec<Value> = stores
        .iter()
        .filter_map(|s| {
            failed
                .get(s)
                .map(|why| json!({"store": s.as_str(), "error": why}))
        })
        .collect();
    let status = if lists.is_empty() {
        first_error.unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
    } else {
        // Part went out: say so store by store.
        StatusCode::MULTI_STATUS
    };
    let error = format!(
        "{} of {} stores did not get the list (see failed); retrying the request for them is safe",
        failed.len(),
        stores.len()
    );
    (
        status,
        axum::Json(json!({ "error": error, "lists": lists, "failed": failed })),
    )
        .into_response()
}

/// A purge over every store: each live node purges its own; the counts
/// and documents add up.
async fn purge_everywhere(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> Response {
    let nodes = state
        .leases
        .as_ref()
        .map(|l| l.live_nodes())
        .unwrap_or_default();
    let mut total = json!({"dry_run": false, "count": 0, "documents": []});
    for (node, sync) in nodes {
        let base = http_base(&sync);
        match send(parts, body.to_vec(), &base).await {
            Ok((status, _, answer)) if status.is_success() => {
                let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
                total["dry_run"] = answer["dry_run"].clone();
                total["count"] = json!(
                    total["count"].as_u64().unwrap_or(0) + answer["count"].as_u64().unwrap_or(0)
                );
                if let (Some(all), Some(these)) = (
                    total["documents"].as_array_mut(),
                    answer["documents"].as_array(),
                ) {
                    all.extend(these.iter().cloned());
                }
            }
            Ok((status, _, answer)) => {
                let mut out = Response::new(Body::from(answer));
                *out.status_mut() = status;
                return out;
            }
            Err(e) => {
                return (
                    StatusCode::BAD_GATEWAY,
                    axum::Json(json!({"error": format!(
                        "node {node} ({base}) did not answer: {e}; the purge may have run on some nodes only, retry"
                    )})),
                )
                    .into_response()
            }
        }
    }
    axum::Json(total).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(s: &str) -> StoreId {
        s.parse().unwrap()
    }

    #[test]
    fn writes_to_a_stores_documents_go_to_its_node_and_the_rest_stay_here() {
        let t = |m: Method, p: &str, b: &str| target(&m, p, b.as_bytes());
        assert!(matches!(
            t(Method::GET, "/stores/s1/workers", ""),
            Target::Here
        ));
        assert!(matches!(t(Method::POST, "/stores", "{}"), Target::Here));
        assert!(matches!(
            t(Method::POST, "/stores/s1/tokens", "{}"),
            Target::Here
        ));
        assert!(matches!(t(Method::POST, "/templates", "{}"), Target::Here));
        assert!(
            matches!(t(Method::PATCH, "/stores/s1", "{}"), Target::Store(s) if s == store("s1"))
        );
        assert!(
            matches!(t(Method::DELETE, "/stores/s1", ""), Target::Store(s) if s == store("s1"))
        );
        assert!(
            matches!(t(Method::PUT, "/stores/s1/workers/w1", "{}"), Target::Store(s) if s == store("s1"))
        );
        assert!(
            matches!(t(Method::POST, "/lists", r#"{"store":"s2"}"#), Target::Store(s) if s == store("s2"))
        );
        assert!(matches!(
            t(Method::POST, "/lists", r#"{"stores":["s1","s2"]}"#),
            Target::Stores(v) if v == vec![store("s1"), store("s2")]
        ));
        // A malformed request is left to the handler, which says what is wrong.
        assert!(matches!(
            t(Method::POST, "/lists", r#"{"stores":[1]}"#),
            Target::Here
        ));
        assert!(matches!(
            t(Method::POST, "/lists", "not json"),
            Target::Here
        ));
        assert!(matches!(
            t(Method::POST, "/purge", r#"{"store":"s1"}"#),
            Target::Store(_)
        ));
        assert!(matches!(
            t(Method::POST, "/purge", r#"{"before":"2026-01-01"}"#),
            Target::Everyone
        ));
    }

    #[test]
    fn a_sync_url_gives_the_nodes_http_base() {
        assert_eq!(http_base("ws://10.0.0.2:8080/sync"), "http://10.0.0.2:8080");
        assert_eq!(
            http_base("wss://hub-b.example/sync"),
            "https://hub-b.example"
        );
    }
}
