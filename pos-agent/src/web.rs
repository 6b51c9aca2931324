//! The terminal's web UI: one page, a script and a style sheet compiled
//! into the binary (no build step, nothing fetched from the internet),
//! served at `/` next to the local API it calls.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/app.css");
/// The message catalogues: every word the screens show, by language.
pub const CATALOGUES: [(&str, &str); 2] = [
    ("en", include_str!("../assets/i18n/en.json")),
    ("de", include_str!("../assets/i18n/de.json")),
];

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { page("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/app.css",
            get(|| async { page("text/css; charset=utf-8", STYLE) }),
        )
        .route("/i18n/{file}", get(catalogue))
}

async fn catalogue(Path(file): Path<String>) -> Response {
    let lang = file.strip_suffix(".json").unwrap_or_default();
    match CATALOGUES.iter().find(|(l, _)| *l == lang) {
        Some((_, body)) => page("application/json; charset=utf-8", body).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no catalogue {file}; there are en.json and de.json\n"),
        )
            .into_response(),
    }
}

fn page(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The files change only with the binary.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
