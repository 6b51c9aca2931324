//! `GET /api/sync-status`: the sync indicator (online, last sync,
//! unconfirmed changes, changes the hub refused, actor changes, peer
//! terminals on the store LAN, hub refusals a peer terminal reported).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::app::{read_agent, App};
use super::error::respond;

pub(super) async fn sync_status(State(app): State<App>) -> Response {
    let terminal = app.t.terminal.to_string();
    let store = app.t.store.to_string();
    let r = read_agent(&app, move |a, _| {
        let unconfirmed: usize = a.unconfirmed().values().sum();
        let s = a.sync_status()?;
        Ok(json!({
            "store": store,
            "terminal": terminal,
            "online": s.online,
            "last_sync_ms": s.last_sync_ms,
            "unconfirmed_changes": unconfirmed,
            "rejected": s.rejected,
            "actor_changes": s.actor_changes,
            "lan_peers": s.lan_peers,
            "reported_by_peers": s.reported_by_peers,
        }))
    })
    .await;
    respond(StatusCode::OK, r)
}
