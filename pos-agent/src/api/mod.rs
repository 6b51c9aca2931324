//! The terminal's local HTTP API (loopback only unless asked) and the web
//! UI at `/`. Every write answers only after it is durable on disk, works
//! with the hub unreachable, and bad input gets a 4xx `{"error": "..."}`
//! that says what to fix, with nothing written.
//!
//! Who may do what: status changes and claims are by a worker on the
//! store's roster (the signed-in worker, or for the CLI a `worker` in the
//! body, unless the agent runs with `--require-pin-for-cli`, see
//! `ApiConfig::cli_needs_pin`); assigning, new lists and tasks, and deciding conflicts need a
//! signed-in worker whose role is `manager`. See `sessions` for sign-in.
//!
//! This module only routes. One module per resource holds its handlers
//! (`workers`, `session`, `my_tasks`, `notifications`, `lists`, `tasks`,
//! `conflicts`, `pos_operation`, `store`, `sync_status`); they share `app` (state, the replica
//! thread), `access` (who is acting), `input` (parsing requests) and
//! `error`. Handlers import the shared modules, never each other's
//! routes, and nothing imports this module back.

mod access;
mod app;
mod conflicts;
mod error;
mod input;
mod lists;
mod my_tasks;
mod notifications;
mod pos_operation;
mod session;
mod store;
mod sync_status;
mod tasks;
mod workers;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

pub use app::ApiConfig;
use app::App;
pub use error::ApiError;

use crate::agent::Terminal;
use crate::sessions::Sessions;

pub fn router(t: Terminal) -> Router {
    router_with(t, ApiConfig::default())
}

pub fn router_with(t: Terminal, cfg: ApiConfig) -> Router {
    let app = App {
        t,
        sessions: Sessions::default(),
        cfg: Arc::new(cfg),
    };
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(crate::web::routes())
        .route("/api/workers", get(workers::workers))
        .route(
            "/api/session",
            get(session::session_info)
                .post(session::sign_in)
                .delete(session::sign_out),
        )
        .route("/api/my-tasks", get(my_tasks::my_tasks))
        .route("/api/notifications", get(notifications::notifications))
        .route("/api/lists", get(lists::lists).post(lists::create_list))
        .route("/api/lists/{id}", get(lists::list))
        .route("/api/lists/{id}/tasks", post(lists::add_task))
        .route("/api/tasks", get(tasks::tasks))
        .route("/api/tasks/{task}", get(tasks::task_detail))
        .route("/api/tasks/{task}/status", post(tasks::set_status))
        .route("/api/tasks/{task}/claim", post(tasks::claim))
        .route("/api/tasks/{task}/assign", post(tasks::assign))
        .route("/api/tasks/{task}/resolve", post(conflicts::resolve))
        .route(
            "/api/tasks/{task}/pos-operation",
            post(pos_operation::hand_over),
        )
        .route("/api/conflicts", get(conflicts::conflicts))
        .route("/api/sync-status", get(sync_status::sync_status))
        .route("/api/store", get(store::store))
        .with_state(app)
}
