//! The hub's server: serve the HTTP layer (`http::router`) on a listener
//! until shutdown, with the timers that keep recurring lists materialized
//! and storage compacted. `run(listener, state, shutdown)` is what `main`
//! and the tests both call; `data_dir::open` makes the state.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::http::{router, AppState};
use crate::replicas::Replicas;

/// Serve until `shutdown` is cancelled, then close connections gracefully.
pub async fn run(
    listener: TcpListener,
    mut state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    state.shutdown = shutdown.clone();
    tokio::spawn(materialize_on_a_timer(state.hub.clone(), shutdown.clone()));
    tokio::spawn(compact_on_a_timer(state.hub.clone(), shutdown.clone()));
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let stop = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .context("serving HTTP")?;
    Ok(())
}

/// Keep the recurrence horizon materialized as days pass, and apply the
/// retention policy (`--retention-days`).
async fn materialize_on_a_timer(hub: Replicas, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        // Each replica thread for the stores it serves.
        let r = hub
            .call_each(|h, now| {
                match h.materialize_horizon(now).and_then(|mut out| {
                    out.extend(h.apply_retention_policy(now)?);
                    Ok(out)
                }) {
                    Ok(out) => (Ok(()), out),
                    Err(e) => (Err(e), Vec::new()),
                }
            })
            .await;
        match r {
            Ok(results) => {
                for e in results.into_iter().filter_map(Result::err) {
                    warn!(error = %e, "materializing recurring lists failed; retrying in a minute")
                }
            }
            Err(_) => return,
        }
    }
}

/// Fold busy documents' change rows into snapshots, a few at a time, so
/// loads stay fast without ever blocking the hub thread for long.
async fn compact_on_a_timer(hub: Replicas, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        // On one thread: compaction picks any document due, and two
        // threads folding one document's rows at once would race (a
        // thread's own documents are written by it alone otherwise).
        match hub
            .registry()
            .call(|h, _| (h.compact_storage(64, 20), Vec::new()))
            .await
        {
            Ok(Ok(n)) if n > 0 => tracing::debug!(documents = n, "compacted"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "compaction failed; retrying later"),
            Err(_) => return,
        }
    }
}
