//! The hub's HTTP layer: the WebSocket sync endpoint at `/sync`, the admin
//! API under `/api/` (one module per resource), `/healthz`, `/metrics`
//! and the dashboard at `/`. Handlers decode the request, ask the hub
//! thread (`runtime::HubHandle`) or the read-only pool (`read_pool`), and
//! encode the answer; none of them touches storage.
//!
//! Modules depend downwards only: `state`, `reply`, `auth` and `session` are shared;
//! the resource modules use them and not each other; this file routes.

pub mod access;
pub mod accounts;
pub mod admin;
pub mod auth;
mod dashboard;
pub mod fleet;
pub mod forward;
mod health;
pub mod lists;
pub mod reply;
pub mod session;
pub mod state;
pub mod status;
pub mod stores;
pub mod sync;
pub mod templates;

use axum::routing::get;
use axum::Router;

pub use state::AppState;

/// Every `/api` route with its access rule.
pub fn api_routes() -> access::ApiRoutes {
    stores::routes()
        .merge(admin::routes())
        .merge(lists::routes())
        .merge(templates::routes())
        .merge(status::routes())
        .merge(accounts::routes())
        .merge(fleet::routes())
}

/// Every route of the hub, over `state`.
pub fn router(state: AppState) -> Router {
    // Authorized first (`access`), then passed to the node serving its
    // stores (`forward`): a request a node may not make is refused where
    // it arrives.
    let api = api_routes().into_router(state.clone(), |api| {
        api.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            forward::to_serving_nodes,
        ))
    });
    Router::new()
        .route("/sync", get(sync::sync_upgrade))
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .nest("/api", api)
        .merge(dashboard::routes())
        .with_state(state)
}
