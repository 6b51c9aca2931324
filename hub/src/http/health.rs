//! `/healthz` (the hub thread answers and its database reads) and
//! `/metrics` (Prometheus text).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine::ids::Principal;

use super::state::AppState;

/// Healthy when the hub thread answers and its database reads.
pub(super) async fn healthz(State(state): State<AppState>) -> Response {
    match state
        .hub
        .call_soon(|h, _| (h.check_database(), Vec::new()))
        .await
    {
        Ok(Ok(())) => match &state.leases {
            // A cluster node also says how many stores it serves now.
            Some(leases) => format!("ok\nserving {} stores\n", leases.held().len()).into_response(),
            None => "ok\n".into_response(),
        },
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}\n")).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    // Counted on a reader connection: listing 31,000 documents on the hub
    // thread for every scrape was most of a scrape's cost.
    let counts = state.readers.counts().await;
    let crate::read_pool::Counts { stores, documents } = match counts {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}\n")).into_response()
        }
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}\n")).into_response(),
    };
    let connections_refused = state.slots.refused();
    let snap = state
        .hub
        .call_soon(move |h, _| {
            let online: std::collections::HashSet<_> = h
                .connected_principals()
                .into_iter()
                .filter(|p| matches!(p, Principal::Store(_)))
                .collect();
            let snap = crate::metrics::Snapshot {
                connections: h.connection_count(),
                stores_online: online.len(),
                stores,
                documents,
                cached_documents: h.cached_document_count(),
                index_backlog: h.index_backlog(),
                counters: h.counters(),
                connections_refused,
            };
            (snap, Vec::new())
        })
        .await;
    match snap {
        Ok(s) => {
            let mut text = crate::metrics::render(&s, &state.hub.latency);
            if let Some(leases) = &state.leases {
                text.push_str(&crate::metrics::render_leases(&leases.held()));
            }
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4",
                )],
                text,
            )
                .into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}
