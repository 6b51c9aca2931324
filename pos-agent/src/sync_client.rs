//! The connection to the hub: connect, hand frames to the replica thread,
//! and on any failure reconnect with exponential backoff and jitter so a
//! thousand terminals coming back at once do not stampede the hub. A hub
//! node that says the store `moved` is left at once for the node it names
//! (see [`HubRoute`]): that is a hand-off, not a failing hub.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{self, HeaderValue};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use engine::replica::moved::valid_url;
use engine::replica::Moved;

use crate::runtime::{AgentHandle, Outbound};

#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// A connection that lasted this long counts as healthy: the next
    /// reconnect starts again from `initial`.
    pub healthy_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
            healthy_after: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// "Full jitter": a random wait up to the exponential bound.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.initial.saturating_mul(1u32 << attempt.min(16));
        let bound = exp.min(self.max);
        let ms =
            rand::thread_rng().gen_range(bound.as_millis() as u64 / 2..=bound.as_millis() as u64);
        Duration::from_millis(ms.max(1))
    }
}

/// How the link is kept alive: a WebSocket ping every `every`; a link that
/// brings nothing at all (not even a pong) for `dead_after` is dropped and
/// replaced. Without this, a link that dies silently (a NAT forgetting the
/// flow: no FIN, no RST) would look online forever.
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    pub every: Duration,
    pub dead_after: Duration,
}

impl Keepalive {
    pub fn every(every: Duration) -> Keepalive {
        Keepalive {
            every,
            dead_after: every * 3,
        }
    }
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive::every(Duration::from_secs(15))
    }
}

/// Where the terminal connects: its configured hub, or the node a hub
/// node named when it said the store moved. The named node is kept until
/// one connect to it fails; then the configured hub again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRoute {
    configured: String,
    preferred: Option<String>,
}

impl HubRoute {
    pub fn new(configured: String) -> HubRoute {
        HubRoute {
            configured,
            preferred: None,
        }
    }

    /// The URL to connect to next.
    pub fn target(&self) -> &str {
        self.preferred.as_deref().unwrap_or(&self.configured)
    }

    /// A node said the store moved, to `to` if it named a node (only a
    /// ws:// or wss:// URL, as [`Moved::decode`] keeps, checked again here
    /// since `Moved`'s field is public). A terminal configured
    /// with wss:// does not follow a ws:// address: its token would cross
    /// the network in clear.
    pub fn moved(&mut self, moved: &Moved) {
        let downgrade =
            |url: &str| self.configured.starts_with("wss://") && url.starts_with("ws://");
        self.preferred = moved.to.clone().filter(|url| {
            if !valid_url(url) {
                warn!(%url, "the hub named an address that is not a WebSocket URL; ignoring it");
                return false;
            }
            if downgrade(url) {
                warn!(%url, "the hub named a node without TLS; staying with the configured hub");
                return false;
            }
            true
        });
    }

    /// A connect to [`HubRoute::target`] failed (it never came up): a
    /// named node is forgotten, the configured hub is next.
    pub fn connect_failed(&mut self) {
        if let Some(url) = self.preferred.take() {
            warn!(%url, configured = %self.configured, "the node the hub named is not reachable; back to the configured hub");
        }
    }
}

/// Keep a connection to `url` (ws://host/sync) until `shutdown`.
pub async fn run(
    url: String,
    token: String,
    handle: AgentHandle,
    backoff: Backoff,
    keepalive: Keepalive,
    shutdown: CancellationToken,
) {
    let mut route = HubRoute::new(url);
    let mut attempt = 0u32;
    // Moves followed in a row without a healthy connection between: the
    // first is followed at once, further ones back off, so two nodes
    // naming each other cannot make the terminal spin.
    let mut hops = 0u32;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let mut up_since = None;
        let target = route.target().to_owned();
        let result = connect_once(
            &target,
            &token,
            &handle,
            keepalive,
            &shutdown,
            &mut up_since,
        )
        .await;
        // A drop after a healthy connection is news, not a failing hub:
        // back off from the start, not from where the last outage ended.
        if up_since.is_some_and(|t: Instant| t.elapsed() >= backoff.healthy_after) {
            attempt = 0;
            hops = 0;
        }
        // Asked after the connection ended, so a `moved` error the replica
        // thread was still handling when the node closed the socket counts.
        let moved = handle
            .call(|agent, _| (agent.take_moved(), Vec::new()))
            .await
            .ok()
            .flatten();
        let wait = match (moved, result) {
            (Some(moved), _) => {
                info!(from = %target, to = ?moved.to, "the hub node says this store moved; reconnecting");
                route.moved(&moved);
                hops = hops.saturating_add(1);
                attempt = 0;
                if hops == 1 {
                    Duration::ZERO
                } else {
                    backoff.delay(hops - 1)
                }
            }
            (None, Ok(())) => {
                attempt = 0;
                backoff.delay(attempt)
            }
            (None, Err(e)) => {
                warn!(error = %e, url = %target, "hub connection failed; working offline");
                if up_since.is_none() {
                    route.connect_failed();
                }
                attempt = attempt.saturating_add(1);
                backoff.delay(attempt)
            }
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn connect_once(
    url: &str,
    token: &str,
    handle: &AgentHandle,
    keepalive: Keepalive,
    shutdown: &CancellationToken,
    up_since: &mut Option<Instant>,
) -> anyhow::Result<()> {
    let mut req = url.into_client_request()?;
    req.headers_mut().insert(
        "Authorization",
        HeaderValue::from_str(&format!("Bearer {token}"))?,
    );
    // A hub node that does not serve this store sends us to the one that
    // does (`moved`) instead of relaying every message through itself.
    req.headers_mut()
        .insert("x-follows-moved", HeaderValue::from_static("1"));
    let (ws, response) = match tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    {
        Err(_) => anyhow::bail!("connecting to {url} timed out"),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(r))) => {
            anyhow::bail!("{}", refusal(r.status(), r.body().as_deref()))
        }
        Ok(r) => r?,
    };
    info!(%url, "connected to hub");
    *up_since = Some(Instant::now());
    // Date events by the hub's clock: a terminal hours off would otherwise
    // have its events refused (or ordered oddly against other terminals).
    let date = response
        .headers()
        .get("date")
        .and_then(|v| v.to_str().ok())
        .and_then(|d| clock_offset_ms(d, crate::runtime::now_ms()));
    match date {
        Some(offset) => {
            if offset != 0 {
                warn!(
                    offset_ms = offset,
                    "this terminal's clock is off from the hub's; correcting"
                );
            }
            handle.clock_offset(offset);
        }
        None => warn!("the hub sent no usable Date header; keeping the local clock"),
    }
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    handle.connected(tx);
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + keepalive.every,
        keepalive.every,
    );
    let mut last_heard = Instant::now();
    let result = loop {
        tokio::select! {
            _ = ping.tick() => {
                if last_heard.elapsed() >= keepalive.dead_after {
                    break Err(anyhow::anyhow!(
                        "nothing from the hub for {:?}; replacing the connection",
                        last_heard.elapsed()
                    ));
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
                    let _ = sink.send(Message::Close(None)).await;
                    break Err(anyhow::anyhow!("closed: {reason}"));
                }
                None => break Ok(()),
            },
            msg = stream.next() => {
                if matches!(msg, Some(Ok(_))) {
                    last_heard = Instant::now();
                }
                match msg {
                Some(Ok(Message::Binary(b))) => handle.frame(b.to_vec()),
                Some(Ok(Message::Close(_))) | None => break Err(anyhow::anyhow!("hub closed the connection")),
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(e.into()),
                }
            }
        }
    };
    handle.disconnected();
    result
}

/// The hub's answer to an upgrade it refused, with the reason its body
/// gives: which connection cap is full and how to raise it, a token that
/// is unknown or revoked, the admin token where a store's belongs.
fn refusal(status: http::StatusCode, body: Option<&[u8]>) -> String {
    let reason = String::from_utf8_lossy(body.unwrap_or_default());
    let reason = reason.trim();
    if reason.is_empty() {
        format!("the hub refused the connection: {status}")
    } else {
        format!("the hub refused the connection: {status}: {reason}")
    }
}

/// The hub's clock (from the upgrade response's HTTP Date header, whole
/// seconds) minus ours. Differences within 2 s are the header's rounding
/// and network delay, and count as none.
pub fn clock_offset_ms(date_header: &str, local_now_ms: i64) -> Option<i64> {
    let hub = chrono::DateTime::parse_from_rfc2822(date_header)
        .ok()?
        .timestamp_millis();
    let diff = hub - local_now_ms;
    Some(if diff.abs() <= 2_000 { 0 } else { diff })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_date_header_gives_the_clock_offset() {
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 25 Nov 2026 11:49:38 GMT")
            .unwrap()
            .timestamp_millis();
        assert_eq!(
            clock_offset_ms("Wed, 25 Nov 2026 11:49:38 GMT", now + 700),
            Some(0)
        );
        assert_eq!(
            clock_offset_ms("Wed, 25 Nov 2026 11:49:38 GMT", now + 3 * 3_600_000),
            Some(-3 * 3_600_000),
            "a terminal three hours ahead"
        );
        assert_eq!(clock_offset_ms("yesterday", now), None);
    }

    #[test]
    fn a_refused_upgrade_says_why() {
        let body = b"this token already holds 16 open sync connections\n";
        assert_eq!(
            refusal(http::StatusCode::TOO_MANY_REQUESTS, Some(body)),
            "the hub refused the connection: 429 Too Many Requests: \
             this token already holds 16 open sync connections"
        );
        assert_eq!(
            refusal(http::StatusCode::UNAUTHORIZED, None),
            "the hub refused the connection: 401 Unauthorized"
        );
    }

    #[test]
    fn a_named_node_is_kept_until_a_connect_to_it_fails() {
        let mut r = HubRoute::new("ws://hub/sync".into());
        assert_eq!(r.target(), "ws://hub/sync");
        r.moved(&Moved::new(Some("ws://hub-b:7400/sync")));
        assert_eq!(r.target(), "ws://hub-b:7400/sync");
        r.connect_failed();
        assert_eq!(r.target(), "ws://hub/sync");
        // A move with no address goes back to the configured hub too.
        r.moved(&Moved::new(Some("ws://hub-b:7400/sync")));
        r.moved(&Moved::new(None));
        assert_eq!(r.target(), "ws://hub/sync");
        // A failed connect to the configured hub changes nothing.
        r.connect_failed();
        assert_eq!(r.target(), "ws://hub/sync");
    }

    #[test]
    fn a_terminal_on_tls_does_not_follow_a_node_without_it() {
        let mut r = HubRoute::new("wss://hub/sync".into());
        r.moved(&Moved::new(Some("ws://hub-b/sync")));
        assert_eq!(r.target(), "wss://hub/sync");
        r.moved(&Moved::new(Some("wss://hub-b/sync")));
        assert_eq!(r.target(), "wss://hub-b/sync");
        // Only what `Moved` let through is followed at all.
        r.moved(&Moved {
            to: Some("file:///etc/passwd".into()),
        });
        assert_eq!(r.target(), "wss://hub/sync");
    }

    #[test]
    fn backoff_grows_jitters_and_caps() {
        let b = Backoff::default();
        for attempt in 0..40 {
            let d = b.delay(attempt);
            assert!(d <= b.max, "attempt {attempt}: {d:?}");
            assert!(d >= Duration::from_millis(1));
        }
        assert!(
            b.delay(10) >= Duration::from_secs(15),
            "late attempts wait long"
        );
        assert!(b.delay(0) <= Duration::from_millis(250));
    }
}
