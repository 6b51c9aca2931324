//! Who a request is: the token it presents (header or `?token=`), checked
//! on the hub thread or on a read-only connection, and the HQ-only checks
//! the admin API's handlers open with (`hq!`, `hq_read!`): the admin token
//! or an HQ account's personal token. What each role and scope may do is
//! `access`'s, checked before the handler.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::hq_accounts::{Caller, CallerError};
use engine::ids::Principal;
use serde::Deserialize;
use tracing::warn;

use super::reply::ApiError;
use super::state::AppState;
use crate::runtime::now_ms;

#[derive(Deserialize)]
pub struct TokenQuery {
    pub token: Option<String>,
}

/// The bearer token from the header, else from `?token=`.
pub fn presented_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .or_else(|| query.map(str::to_owned))
}

/// Resolve the token presented at a WebSocket upgrade to a principal, or a
/// 401 with the reason. Checked on the hub thread, in order with the
/// commands queued there.
pub async fn authenticate(state: &AppState, token: Option<String>) -> Result<Principal, Response> {
    let result = state
        .hub
        .registry()
        .call(move |hub, now| (hub.authenticate(token.as_deref(), now), Vec::new()))
        .await;
    auth_reply(result).map_err(IntoResponse::into_response)
}

/// `authenticate` for an HTTP API request, checked on a read-only
/// connection (`ReadPool`): it sees every committed token change, and the
/// request does not wait behind the sync frames queued for the hub thread
/// (a second or more during a reconnect storm).
pub async fn authenticate_request(
    state: &AppState,
    token: Option<String>,
) -> Result<Principal, Response> {
    let check = state.readers.authenticate(token, now_ms()).await;
    auth_reply(check).map_err(IntoResponse::into_response)
}

/// The principal, or the status and reason to refuse the request with.
fn auth_reply(
    result: anyhow::Result<Result<Principal, engine::replica::hub::AuthError>>,
) -> Result<Principal, (StatusCode, String)> {
    match result {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(e)) => {
            warn!(reason = %e, "refused a connection");
            Err((StatusCode::UNAUTHORIZED, format!("{e}\n")))
        }
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}\n"))),
    }
}

/// The request must carry an HQ token: the admin token or an enabled
/// account's personal token (its role and scope were checked by
/// `access::authorize` before the handler ran). Checked on the hub
/// thread, in order with what is queued there: a request that changes
/// something is refused if a revocation of its token, or disabling its
/// account, was asked for before it.
pub(crate) async fn require_hq(state: &AppState, headers: &HeaderMap) -> Result<Caller, Response> {
    let token = presented_token(headers, None);
    let result = state
        .hub
        .registry()
        .call(move |hub, now| (hub.caller(token.as_deref(), now), Vec::new()))
        .await;
    hq_caller(result)
}

/// `require_hq` for a request that only reads: checked on a read-only
/// connection, so it does not wait behind the sync frames queued for the
/// hub thread (a second or more during a reconnect storm).
pub(crate) async fn require_hq_read(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Caller, Response> {
    hq_caller(
        state
            .readers
            .caller(presented_token(headers, None), now_ms())
            .await,
    )
}

#[allow(clippy::result_large_err)]
fn hq_caller(result: anyhow::Result<Result<Caller, CallerError>>) -> Result<Caller, Response> {
    match result {
        Ok(Ok(Caller::Store(_))) => Err(ApiError(
            StatusCode::FORBIDDEN,
            "this is a store token; the admin API needs an HQ token (the admin token or a \
             personal token from `hub login`)"
                .into(),
        )
        .into_response()),
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => {
            warn!(reason = %e, "refused an API request");
            Err((StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response())
        }
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}\n")).into_response()),
    }
}

macro_rules! hq {
    ($state:expr, $headers:expr) => {
        if let Err(r) = $crate::http::auth::require_hq(&$state, &$headers).await {
            return r;
        }
    };
}
pub(crate) use hq;

/// `hq!` for handlers that only read (`require_hq_read`).
macro_rules! hq_read {
    ($state:expr, $headers:expr) => {
        if let Err(r) = $crate::http::auth::require_hq_read(&$state, &$headers).await {
            return r;
        }
    };
}
pub(crate) use hq_read;

#[cfg(test)]
mod tests {
    use super::*;

    /// A reading HTTP request's token is checked without the hub thread,
    /// so a dashboard read does not wait behind the frames queued for it.
    #[tokio::test]
    async fn a_read_requests_token_is_checked_while_the_hub_thread_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::data_dir::open_for_test(dir.path());
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let held = state.hub.registry().call(move |_, _| {
            go_rx.recv().unwrap();
            ((), Vec::new())
        });
        let mut held = std::pin::pin!(futures_util::future::maybe_done(held));
        let _ = futures_util::poll!(held.as_mut());
        let headers = |token: &str| {
            let mut h = HeaderMap::new();
            h.insert("authorization", format!("Bearer {token}").parse().unwrap());
            h
        };
        let within = |f| tokio::time::timeout(std::time::Duration::from_secs(10), f);
        let (admin, wrong) = (headers("admin"), headers("not-the-token"));
        within(require_hq_read(&state, &admin))
            .await
            .expect("answered while the hub thread is held")
            .unwrap();
        let refused = within(require_hq_read(&state, &wrong))
            .await
            .expect("answered while the hub thread is held")
            .unwrap_err();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        go_tx.send(()).unwrap();
        held.await;
    }
}
