//! `/healthz` (the hub thread answers and its database reads) and
//! `/metrics` (Prometheus text).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine::ids::Principal;

use super::state::AppState;

/// Healthy when the hub thread answers and its database reads.
pub(super) async fn healthz(State(state): State<AppState>) -> Response {
    // Every replica thread answers and its connection reads.
    let checked = state
        .hub
        .call_soon_each(|h, _| (h.check_database(), Vec::new()))
        .await
        .map(|all| all.into_iter().collect::<Result<Vec<()>, _>>());
    match checked {
        Ok(Ok(_)) => match &state.leases {
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
    // Summed over the replica threads (a store is on one of them).
    let snap = state
        .hub
        .call_soon_each(move |h, _| {
            let online = h
                .connected_principals()
                .into_iter()
                .filter(|p| matches!(p, Principal::Store(_)))
                .collect::<std::collections::HashSet<_>>()
                .len();
            let part = crate::metrics::Snapshot {
                connections: h.connection_count(),
                stores_online: online,
                stores,
                documents,
                cached_documents: h.cached_document_count(),
                index_backlog: h.index_backlog(),
                counters: h.counters(),
                connections_refused,
            };
            (part, Vec::new())
        })
        .await
        .map(|parts| {
            parts
                .into_iter()
                .reduce(|a, b| a.plus(&b))
                .expect("a node runs at least one replica thread")
        });
    match snap {
        Ok(s) => {
            let mut text = crate::metrics::render(&s, state.hub.latency());
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
