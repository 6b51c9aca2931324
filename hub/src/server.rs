//! The hub's HTTP server: the WebSocket sync endpoint at `/sync`, the admin
//! API under `/api/`, and `/healthz`. `run(listener, state, shutdown)` is
//! what `main` and the tests both call.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use engine::ids::Principal;
use engine::protocol::wire::{PeerId, StorageId};
use engine::replica::hub::{token_hash, Hub, HubConfig, HubLimits};
use engine::storage::SqliteDatabase;
use futures_util::{SinkExt, StreamExt};
use rand::RngCore;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api;
use crate::connection_slots::{ConnectionCaps, ConnectionSlots, Slot};
use crate::read_pool::ReadPool;
use crate::runtime::{now_ms, HubHandle, Outbound, OUTBOUND_QUEUE};

/// Shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    pub hub: HubHandle,
    pub limits: Arc<HubLimits>,
    /// Read-only connections for the reads off the hub thread (see `ReadPool`).
    pub readers: Arc<ReadPool>,
    /// How long a status query may spend bringing the index up to date
    /// before it answers from the index as it stands (`api::index_read`).
    pub index_read_budget: Duration,
    /// Sync connections open per token and per store, under their caps.
    pub slots: Arc<ConnectionSlots>,
    next_conn: Arc<AtomicU64>,
    /// Cancelled at shutdown: open WebSockets close too.
    shutdown: CancellationToken,
}

/// See `AppState::index_read_budget`: a dashboard read every few seconds
/// costs the hub thread at most this, in chunks sync is served between.
pub const INDEX_READ_BUDGET: Duration = Duration::from_millis(250);

impl AppState {
    /// `db` is the hub's database file, which status queries read.
    pub fn new(hub: HubHandle, limits: HubLimits, db: PathBuf) -> AppState {
        AppState {
            hub,
            limits: Arc::new(limits),
            readers: Arc::new(ReadPool::new(db)),
            index_read_budget: INDEX_READ_BUDGET,
            slots: ConnectionSlots::new(ConnectionCaps::default()),
            next_conn: Arc::new(AtomicU64::new(1)),
            shutdown: CancellationToken::new(),
        }
    }

    /// These caps on open sync connections instead of the defaults.
    pub fn with_connection_caps(mut self, caps: ConnectionCaps) -> AppState {
        self.slots = ConnectionSlots::new(caps);
        self
    }
}

/// A hub in `dir` with default limits and the admin token "admin", for
/// tests.
#[cfg(test)]
pub(crate) fn open_for_test(dir: &Path) -> AppState {
    open(dir, Default::default(), Some("admin")).unwrap().state
}

/// What `open` made ready: the hub thread and the admin token path.
pub struct Opened {
    pub state: AppState,
    pub admin_token_file: PathBuf,
    /// Set when this start created the admin token.
    pub new_admin_token: Option<String>,
}

pub fn random_token() -> String {
    let mut b = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Open (or create) the hub's data directory and start its replica thread.
/// On first start an admin token is minted and written to `DIR/admin-token`
/// (mode 0600); `admin_token` registers a known one instead.
pub fn open(
    data_dir: &Path,
    limits: HubLimits,
    admin_token: Option<&str>,
) -> anyhow::Result<Opened> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the hub data directory {}", data_dir.display()))?;
    let db = data_dir.join("hub.db");
    let mut actor = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut actor);
    let mut store =
        SqliteDatabase::open(&db, actor).with_context(|| format!("opening {}", db.display()))?;
    let storage_id = match store.get_meta("storage_id")? {
        Some(b) => String::from_utf8_lossy(&b).into_owned(),
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            store.set_meta("storage_id", id.as_bytes())?;
            id
        }
    };
    let token_file = data_dir.join("admin-token");
    let new_admin_token = match admin_token {
        None if !token_file.exists() => Some(random_token()),
        _ => None,
    };
    if let Some(t) = admin_token.or(new_admin_token.as_deref()) {
        if store.check_token(token_hash(t), now_ms())? == engine::storage::TokenCheck::Unknown {
            store.put_token(token_hash(t), &Principal::Hq, "admin", now_ms(), None)?;
        }
    }
    // Written once the hub knows the token: a file naming a token the hub
    // never registered would stop the next start from minting one.
    if let Some(t) = &new_admin_token {
        write_secret(&token_file, t)?;
    }
    let cfg = HubConfig {
        peer_id: PeerId::new(format!(
            "hub-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )),
        storage_id: StorageId::new(storage_id),
        limits: limits.clone(),
    };
    let db = store.path().to_path_buf();
    let hub = Hub::open(store, cfg)?;
    Ok(Opened {
        state: AppState::new(HubHandle::spawn(hub), limits, db),
        admin_token_file: token_file,
        new_admin_token,
    })
}

fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{secret}")?;
    f.sync_all()?;
    Ok(())
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/sync", get(sync_upgrade))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .nest("/api", api::routes().merge(crate::api_admin::routes()))
        .merge(crate::dashboard::routes())
        .with_state(state)
}

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

/// Healthy when the hub thread answers and its database reads.
async fn healthz(State(state): State<AppState>) -> Response {
    match state
        .hub
        .call_soon(|h, _| (h.check_database(), Vec::new()))
        .await
    {
        Ok(Ok(())) => "ok\n".into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}\n")).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
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
        Ok(s) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            crate::metrics::render(&s, &state.hub.latency),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

/// Keep the recurrence horizon materialized as days pass, and apply the
/// retention policy (`--retention-days`).
async fn materialize_on_a_timer(hub: HubHandle, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let r = hub
            .call(|h, now| {
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
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(error = %e, "materializing recurring lists failed; retrying in a minute")
            }
            Err(_) => return,
        }
    }
}

/// Fold busy documents' change rows into snapshots, a few at a time, so
/// loads stay fast without ever blocking the hub thread for long.
async fn compact_on_a_timer(hub: HubHandle, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match hub
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

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
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

async fn sync_upgrade(
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
    // Small socket buffers: the defaults (128 KiB each way) were most of a
    // connection's memory, and sync frames are mostly small (the read
    // buffer grows for a large frame up to `max`).
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| serve_socket(state, principal, token, slot, socket))
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
    state.hub.connect(conn, principal.clone(), token, tx);
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
                    let _ = sink.send(close_frame(close_code::POLICY, &reason)).await;
                    break;
                }
                None => break,
            },
            msg = stream.next() => {
                if matches!(msg, Some(Ok(_))) {
                    last_heard = std::time::Instant::now();
                }
                match msg {
                    Some(Ok(Message::Binary(b))) => state.hub.frame(conn, b.to_vec()),
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
    state.hub.disconnect(conn);
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
