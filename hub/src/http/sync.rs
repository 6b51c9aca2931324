//! The WebSocket sync endpoint at `/sync`: the upgrade (token, caps) and
//! one task per connection moving frames between the socket and the hub
//! thread.

use std::sync::atomic::Ordering;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::ids::Principal;
use engine::replica::hub::token_hash;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::auth::{authenticate, presented_token, TokenQuery};
use super::state::AppState;
use crate::connection_slots::Slot;
use crate::pg::lease::Serving;
use crate::runtime::{Outbound, OUTBOUND_QUEUE};

pub(super) async fn sync_upgrade(
    State(state): State<AppState>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let token = presented_token(&headers, q.token.as_deref());
    let principal = match authenticate(&state, token.clone()).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if principal == Principal::Hq {
        // HQ writes through the admin API, which checks what it writes;
        // nothing needs the admin token as a sync peer, so a leaked
        // admin token is not also a replica with write rights.
        warn!("refused the admin token at /sync");
        return (StatusCode::FORBIDDEN, ADMIN_TOKEN_AT_SYNC).into_response();
    }
    let Ok(ws) = ws else {
        return (
            StatusCode::BAD_REQUEST,
            "this endpoint speaks WebSocket (automerge-repo sync protocol)\n",
        )
            .into_response();
    };
    // The token authenticated, so it has a hash; a missing one was refused.
    let hash = token_hash(token.as_deref().unwrap_or_default());
    let slot = match state.slots.take(hash, &principal) {
        Ok(slot) => slot,
        Err(refusal) => {
            if refusal.first {
                warn!(%principal, reason = %refusal.why, "refusing sync connections over the cap");
            }
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(axum::http::header::RETRY_AFTER, "30")],
                format!("{}\n", refusal.why),
            )
                .into_response();
        }
    };
    let max = state.limits.wire.max_message_bytes;
    // In a cluster, one node serves a store at a time. A terminal that
    // reached another node is sent to it when it follows `moved` (our
    // agent says so with `x-follows-moved`), and else proxied there;
    // one that arrived while its store has no node (a failover) waits for
    // one. A connection passed on by another node is never passed again.
    if let (Some(leases), Principal::Store(store)) = (&state.leases, &principal) {
        // A failover: the old node's lease has to run out first.
        match leases.serving(store, crate::cluster::PARK_FOR).await {
            Some(Serving::Here) => {}
            Some(Serving::There(_)) if headers.contains_key(super::forward::FORWARDED) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(axum::http::header::RETRY_AFTER, "1")],
                    format!("store {store} moved to another node meanwhile; retry\n"),
                )
                    .into_response()
            }
            Some(Serving::There(to)) if headers.contains_key(FOLLOWS_MOVED) => {
                info!(%store, %to, "sending a terminal to the node that serves its store");
                return ws.on_upgrade(move |socket| say_moved(socket, to));
            }
            Some(Serving::There(to)) => {
                info!(%store, %to, "proxying a client to the node that serves its store");
                let token = token.clone().unwrap_or_default();
                return ws
                    .max_message_size(max)
                    .max_frame_size(max)
                    .on_upgrade(move |socket| proxy(socket, to, token, max, slot));
            }
            None => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(axum::http::header::RETRY_AFTER, "2")],
                    format!("no hub node serves store {store} right now (a node is taking it over); retry\n"),
                )
                    .into_response()
            }
        }
    }
    // Small socket buffers: the defaults (128 KiB each way) were most of a
    // connection's memory, and sync frames are mostly small (the read
    // buffer grows for a large frame up to `max`).
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| serve_socket(state, principal, token, slot, socket))
}

/// Sent by a client that follows the `moved` reason (our agent): it is
/// sent to the node that serves its store instead of proxied there.
pub const FOLLOWS_MOVED: &str = "x-follows-moved";

/// Carry a client's connection to the node that serves its store: open
/// `/sync` there with the client's token and pass every message both ways
/// until either side closes. The serving node applies its own checks and
/// limits; this one only relays (its slot holds the connection's place
/// under this node's caps too).
async fn proxy(socket: WebSocket, to: String, token: String, max: usize, _slot: Slot) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as Up;
    let upstream = async {
        let mut req = to.as_str().into_client_request()?;
        let h = req.headers_mut();
        h.insert(
            "Authorization",
            format!("Bearer {token}").parse().map_err(|_| {
                tokio_tungstenite::tungstenite::Error::Url(
                    tokio_tungstenite::tungstenite::error::UrlError::EmptyHostName,
                )
            })?,
        );
        h.insert(
            super::forward::FORWARDED,
            "1".parse().expect("a header value"),
        );
        let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        tokio_tungstenite::connect_async_with_config(req, Some(cfg), false).await
    };
    let (mut down_tx, mut down_rx) = socket.split();
    let up = match tokio::time::timeout(std::time::Duration::from_secs(10), upstream).await {
        Ok(Ok((up, _))) => up,
        Ok(Err(e)) => {
            warn!(%to, error = %e, "cannot reach the node that serves this store");
            let _ = down_tx
                .send(Message::Close(Some(CloseFrame {
                    code: close_code::AGAIN,
                    reason: "the node that serves this store did not answer; retry".into(),
                })))
                .await;
            return;
        }
        Err(_) => {
            let _ = down_tx
                .send(Message::Close(Some(CloseFrame {
                    code: close_code::AGAIN,
                    reason: "the node that serves this store did not answer; retry".into(),
                })))
                .await;
            return;
        }
    };
    let (mut up_tx, mut up_rx) = up.split();
    loop {
        tokio::select! {
            m = down_rx.next() => {
                let m = match m {
                    Some(Ok(Message::Binary(b))) => Up::Binary(b.to_vec().into()),
                    Some(Ok(Message::Text(t))) => Up::Text(t.as_str().into()),
                    Some(Ok(Message::Ping(p))) => Up::Ping(p.to_vec().into()),
                    Some(Ok(Message::Pong(p))) => Up::Pong(p.to_vec().into()),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        let _ = up_tx.send(Up::Close(None)).await;
                        return;
                    }
                };
                if up_tx.send(m).await.is_err() {
                    return;
                }
            }
            m = up_rx.next() => {
                let m = match m {
                    Some(Ok(Up::Binary(b))) => Message::Binary(b.to_vec().into()),
                    Some(Ok(Up::Text(t))) => Message::Text(t.as_str().into()),
                    Some(Ok(Up::Ping(p))) => Message::Ping(p.to_vec().into()),
                    Some(Ok(Up::Pong(p))) => Message::Pong(p.to_vec().into()),
                    Some(Ok(Up::Close(f))) => {
                        let f = f.map(|f| CloseFrame { code: f.code.into(), reason: f.reason.as_str().into() });
                        let _ = down_tx.send(Message::Close(f)).await;
                        return;
                    }
                    Some(Ok(Up::Frame(_))) => continue,
                    None | Some(Err(_)) => {
                        let _ = down_tx.send(Message::Close(None)).await;
                        return;
                    }
                };
                if down_tx.send(m).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Tell a terminal its store is served at `to`: the automerge-repo error
/// message with the `moved` reason our agents follow at once, then a
/// close. Other clients see an error and reconnect as after any.
async fn say_moved(mut socket: WebSocket, to: String) {
    let moved = engine::replica::Moved::new(Some(&to)).encode();
    let error = engine::protocol::wire::WireMessage::Error {
        sender_id: None,
        target_id: None,
        message: moved.clone(),
    };
    let frame = engine::protocol::wire::encode(&error);
    let _ = socket.send(Message::Binary(frame.into())).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 4001,
            // A close reason holds at most 123 bytes: the URL went in the
            // error message.
            reason: "moved".into(),
        })))
        .await;
}

/// The answer to the admin token at `/sync`.
pub const ADMIN_TOKEN_AT_SYNC: &str = "the admin token is for the admin API (/api/) and the hub \
     CLI, not for sync: a terminal connects with its store's token (hub stores token --store ID)\n";

/// Serve one sync connection until it ends. `_slot` holds its place under
/// the connection caps and is released when this returns.
async fn serve_socket(
    state: AppState,
    principal: Principal,
    token: Option<String>,
    _slot: Slot,
    socket: WebSocket,
) {
    let conn = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel(OUTBOUND_QUEUE);
    // The replica thread of the connection's store (HQ's token is refused
    // at the upgrade, so every sync connection is a store's).
    let hub = match &principal {
        Principal::Store(s) => state.hub.for_store(s).clone(),
        Principal::Hq => state.hub.registry().clone(),
    };
    hub.connect(conn, principal.clone(), token, tx);
    let (mut sink, mut stream) = socket.split();
    let every = std::time::Duration::from_secs(state.limits.keepalive_secs.max(1));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut last_heard = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                break;
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= every * 3 {
                    info!(conn, silent = ?last_heard.elapsed(), "closing a silent connection");
                    break;
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
            out = rx.recv() => match out {
                Some(Outbound::Frame(f)) => {
                    if sink.send(Message::Binary(f.into())).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close(reason)) => {
                    info!(conn, %reason, "closing");
                    let _ = sink.send(close_frame(close_code_for(&reason), &reason)).await;
                    break;
                }
                None => break,
            },
            msg = stream.next() => {
                if matches!(msg, Some(Ok(_))) {
                    last_heard = std::time::Instant::now();
                }
                match msg {
                    Some(Ok(Message::Binary(b))) => hub.frame(conn, b.to_vec()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Text(_))) => {
                        let reason = "text frame: the sync protocol is binary CBOR";
                        warn!(conn, "{reason}; closing");
                        let _ = sink.send(close_frame(close_code::UNSUPPORTED, reason)).await;
                        break;
                    }
                    Some(Err(e)) => {
                        // Said in a close frame, so the peer learns why
                        // rather than seeing the socket vanish (1006).
                        match read_error_close(e, state.limits.wire.max_message_bytes) {
                            Some((code, reason)) => {
                                warn!(conn, %principal, %reason, "closing");
                                let _ = sink.send(close_frame(code, &reason)).await;
                            }
                            None => info!(conn, "connection lost"),
                        }
                        break;
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                }
            }
        }
    }
    hub.disconnect(conn);
}

/// The close code for a close the hub decided: the store moved (a
/// cluster hand-off: reconnect at once), or the peer broke a rule.
fn close_code_for(reason: &str) -> u16 {
    if engine::replica::Moved::decode(reason).is_some() {
        engine::replica::Moved::CLOSE_CODE
    } else {
        close_code::POLICY
    }
}

/// A close frame; the reason is cut to the 123 bytes a close frame holds.
fn close_frame(code: u16, reason: &str) -> Message {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason[..end].into(),
    }))
}

/// The close code and reason for a read error, or None when the
/// connection is already gone (nothing to tell the peer).
fn read_error_close(e: axum::Error, max_message_bytes: usize) -> Option<(u16, String)> {
    use tungstenite::error::{CapacityError, Error as WsError};
    let inner = e.into_inner();
    let Some(e) = inner.downcast_ref::<WsError>() else {
        return Some((close_code::ERROR, format!("read error: {inner}")));
    };
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { size, .. }) => Some((
            close_code::SIZE,
            format!(
                "message of {size} bytes is over the hub's limit of {max_message_bytes} \
                 (hub serve --max-frame-bytes)"
            ),
        )),
        WsError::Capacity(c) => Some((close_code::SIZE, c.to_string())),
        WsError::Protocol(p) => Some((close_code::PROTOCOL, p.to_string())),
        WsError::Utf8(_) => Some((close_code::INVALID, "text frame is not UTF-8".into())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_store_is_closed_with_its_own_code() {
        let moved = engine::replica::Moved::new(Some("ws://hub-b:7400/sync")).encode();
        assert_eq!(close_code_for(&moved), 4001);
        assert_eq!(close_code_for("token revoked"), close_code::POLICY);
    }
}
