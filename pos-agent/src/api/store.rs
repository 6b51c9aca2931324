//! `GET /api/store`: the store this terminal serves, as its screens need
//! it: the time zone every date is shown in and the locale (language and
//! formats) HQ set, from the directory, so it holds offline too.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use engine::document::directory::DEFAULT_LOCALE;
use serde_json::json;

use super::app::{clock, read_agent, App};
use super::error::respond;

pub(super) async fn store(State(app): State<App>) -> Response {
    let cfg = app.cfg.clone();
    let store = app.t.store.clone();
    let terminal = app.t.terminal.to_string();
    let r = read_agent(&app, move |a, now| {
        let clock = clock(a, &cfg, now);
        let locale = a
            .directory()?
            .locale
            .unwrap_or_else(|| DEFAULT_LOCALE.to_owned());
        Ok(json!({
            "store": store,
            "terminal": terminal,
            "time_zone": clock.tz.name(),
            "locale": locale,
        }))
    })
    .await;
    respond(StatusCode::OK, r)
}
