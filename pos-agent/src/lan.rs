//! The store LAN at the terminal: an endpoint the store's other terminals
//! connect to (`--peer-listen`), and a connection kept to each `--peer`
//! address. Either way both ends first prove they hold the store's token
//! (`engine::protocol::peer_auth`: HMAC challenge-response, the token never
//! crosses the LAN), then speak automerge-repo v1 as with the hub; the
//! replica thread judges every change (`Agent::peer_receive`). The hub's
//! limits hold here too: frame size, message rate and documents per
//! connection in the replica, connections in [`serve`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use engine::protocol::peer_auth::{Challenge, Hello, PeerKey, PeerRefusal, Proof, NONCE_BYTES};
use engine::replica::ConnId;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use rand::RngCore;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::runtime::{AgentHandle, Outbound};
use crate::sync_client::{Backoff, Keepalive};

/// How the terminal joins the store LAN.
#[derive(Debug, Clone)]
pub struct LanConfig {
    /// The store's LAN key (from its token).
    pub key: PeerKey,
    /// Most peer terminals connected to this one's endpoint at once.
    pub max_connections: usize,
    /// Largest WebSocket message (the hub's frame limit).
    pub max_message_bytes: usize,
    pub keepalive: Keepalive,
    /// How long the LAN handshake may take.
    pub handshake_timeout: Duration,
}

impl LanConfig {
    pub fn new(key: PeerKey) -> LanConfig {
        LanConfig {
            key,
            max_connections: 32,
            max_message_bytes: engine::protocol::WireLimits::default().max_message_bytes,
            keepalive: Keepalive::default(),
            handshake_timeout: Duration::from_secs(10),
        }
    }

    fn ws_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .max_message_size(Some(self.max_message_bytes))
            .max_frame_size(Some(self.max_message_bytes))
    }
}

/// Accept the store's other terminals on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    cfg: Arc<LanConfig>,
    handle: AgentHandle,
    shutdown: CancellationToken,
) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, from) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accepting a peer terminal failed");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (cfg, handle, shutdown, open) =
            (cfg.clone(), handle.clone(), shutdown.clone(), open.clone());
        tokio::spawn(async move {
            let ws =
                match tokio_tungstenite::accept_async_with_config(stream, Some(cfg.ws_config()))
                    .await
                {
                    Ok(ws) => ws,
                    Err(e) => {
                        warn!(%from, error = %e, "a peer terminal's WebSocket upgrade failed");
                        return;
                    }
                };
            if open.fetch_add(1, Ordering::SeqCst) >= cfg.max_connections {
                open.fetch_sub(1, Ordering::SeqCst);
                let reason = format!(
                    "this terminal already has {} peer connections",
                    cfg.max_connections
                );
                warn!(%from, %reason, "refusing a peer terminal");
                close(ws, CloseCode::Again, &reason).await;
                return;
            }
            if let Err(e) = accepted(ws, from, &cfg, &handle, &shutdown).await {
                info!(%from, error = %e, "peer terminal connection ended");
            }
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// One connection to this terminal's endpoint: the listener's side of
/// the handshake, then sync.
async fn accepted<S>(
    mut ws: S,
    from: SocketAddr,
    cfg: &LanConfig,
    handle: &AgentHandle,
    shutdown: &CancellationToken,
) -> anyhow::Result<()>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let handshake = async {
        let hello: Hello = read_json(&mut ws).await?;
        let mut nonce = [0u8; NONCE_BYTES];
        rand::thread_rng().fill_bytes(&mut nonce);
        let challenge = match cfg.key.challenge(&hello, &nonce) {
            Ok(c) => c,
            Err(refusal) => return Ok(Err(refusal)),
        };
        ws.send(Message::Text(serde_json::to_string(&challenge)?.into()))
            .await?;
        let proof: Proof = read_json(&mut ws).await?;
        Ok::<_, anyhow::Error>(cfg.key.verify(&hello, &nonce, &proof))
    };
    let verdict = match tokio::time::timeout(cfg.handshake_timeout, handshake).await {
        Err(_) => Err(PeerRefusal::Malformed("the LAN handshake timed out".into())),
        Ok(Err(e)) => Err(PeerRefusal::Malformed(e.to_string())),
        Ok(Ok(v)) => v,
    };
    if let Err(refusal) = verdict {
        warn!(%from, %refusal, "refused a peer terminal");
        close(ws, CloseCode::Policy, &refusal.to_string()).await;
        return Ok(());
    }
    info!(%from, "a peer terminal of this store connected");
    let conn = handle.next_peer_conn();
    pump(ws, conn, false, cfg.keepalive, handle, shutdown).await
}

/// Keep a connection to the peer terminal at `url` (ws://host:port/...)
/// until `shutdown`, reconnecting with backoff as to the hub.
pub async fn dial(
    url: String,
    cfg: Arc<LanConfig>,
    handle: AgentHandle,
    backoff: Backoff,
    shutdown: CancellationToken,
) {
    let mut attempt = 0u32;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let started = Instant::now();
        match dial_once(&url, &cfg, &handle, &shutdown).await {
            Ok(()) => attempt = 0,
            Err(e) => {
                if started.elapsed() >= backoff.healthy_after {
                    attempt = 0;
                }
                warn!(%url, error = %e, "peer terminal connection failed");
                attempt = attempt.saturating_add(1);
            }
        }
        let wait = backoff.delay(attempt);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn dial_once(
    url: &str,
    cfg: &LanConfig,
    handle: &AgentHandle,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let (mut ws, _) = tokio::time::timeout(
        cfg.handshake_timeout,
        tokio_tungstenite::connect_async_with_config(url, Some(cfg.ws_config()), true),
    )
    .await
    .map_err(|_| anyhow!("connecting to {url} timed out"))??;
    let mut nonce = [0u8; NONCE_BYTES];
    rand::thread_rng().fill_bytes(&mut nonce);
    let handshake = async {
        ws.send(Message::Text(
            serde_json::to_string(&cfg.key.hello(&nonce))?.into(),
        ))
        .await?;
        let challenge: Challenge = read_json(&mut ws).await?;
        Ok::<_, anyhow::Error>(cfg.key.answer(&nonce, &challenge))
    };
    let proof = tokio::time::timeout(cfg.handshake_timeout, handshake)
        .await
        .map_err(|_| anyhow!("the LAN handshake with {url} timed out"))??;
    let proof = match proof {
        Ok(p) => p,
        Err(refusal) => {
            close(ws, CloseCode::Policy, &refusal.to_string()).await;
            bail!("refused {url}: {refusal}");
        }
    };
    ws.send(Message::Text(serde_json::to_string(&proof)?.into()))
        .await?;
    info!(%url, "connected to a peer terminal");
    let conn = handle.next_peer_conn();
    pump(ws, conn, true, cfg.keepalive, handle, shutdown).await
}

/// The next JSON text frame of the handshake. A close instead carries the
/// other side's refusal.
async fn read_json<S, T>(ws: &mut S) -> anyhow::Result<T>
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
    T: serde::de::DeserializeOwned,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(t.as_str()).context("a LAN handshake frame")
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(Some(f)))) => bail!("the peer refused: {}", f.reason),
            Some(Ok(Message::Close(None))) | None => bail!("the peer closed the connection"),
            Some(Ok(_)) => bail!("expected the LAN handshake, got a binary frame"),
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// Close with `reason` (cut to the 123 bytes a close frame holds).
async fn close<S>(mut ws: S, code: CloseCode, reason: &str)
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let _ = ws
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason[..end].to_owned().into(),
        })))
        .await;
}

/// Carry frames between the socket and the replica thread until either
/// side ends the connection; keepalive as with the hub.
async fn pump<S>(
    ws: S,
    conn: ConnId,
    dialed: bool,
    keepalive: Keepalive,
    handle: &AgentHandle,
    shutdown: &CancellationToken,
) -> anyhow::Result<()>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    handle.peer_up(conn, tx, dialed);
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + keepalive.every,
        keepalive.every,
    );
    let mut last_heard = Instant::now();
    let result = loop {
        tokio::select! {
            _ = ping.tick() => {
                if last_heard.elapsed() >= keepalive.dead_after {
                    break Err(anyhow!("nothing from the peer for {:?}", last_heard.elapsed()));
                }
                if let Err(e) = sink.send(Message::Ping(Vec::new().into())).await {
                    break Err(e.into());
                }
            }
            _ = shutdown.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                break Ok(());
            }
            out = rx.recv() => match out {
                Some(Outbound::Frame(f)) => {
                    if let Err(e) = sink.send(Message::Binary(f.into())).await {
                        break Err(e.into());
                    }
                }
                Some(Outbound::Close(reason)) => {
                    close(&mut sink, CloseCode::Policy, &reason).await;
                    break Err(anyhow!("closed: {reason}"));
                }
                None => break Ok(()),
            },
            msg = stream.next() => {
                if matches!(msg, Some(Ok(_))) {
                    last_heard = Instant::now();
                }
                match msg {
                    Some(Ok(Message::Binary(b))) => handle.peer_frame(conn, b.to_vec()),
                    Some(Ok(Message::Close(f))) => {
                        break Err(anyhow!(
                            "the peer closed the connection{}",
                            f.map(|f| format!(": {}", f.reason)).unwrap_or_default()
                        ))
                    }
                    None => break Err(anyhow!("the peer closed the connection")),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break Err(e.into()),
                }
            }
        }
    };
    handle.peer_down(conn);
    result
}
