//! The connection to the hub: connect, hand frames to the replica thread,
//! and on any failure reconnect with exponential backoff and jitter so a
//! thousand terminals coming back at once do not stampede the hub.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{self, HeaderValue};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

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

/// Keep a connection to `url` (ws://host/sync) until `shutdown`.
pub async fn run(
    url: String,
    token: String,
    handle: AgentHandle,
    backoff: Backoff,
    keepalive: Keepalive,
    shutdown: CancellationToken,
) {
    let mut attempt = 0u32;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let mut up_since = None;
        let result = connect_once(&url, &token, &handle, keepalive, &shutdown, &mut up_since).await;
        // A drop after a healthy connection is news, not a failing hub:
        // back off from the start, not from where the last outage ended.
        if up_since.is_some_and(|t: Instant| t.elapsed() >= backoff.healthy_after) {
            attempt = 0;
        }
        match result {
            Ok(()) => attempt = 0,
            Err(e) => {
                warn!(error = %e, "hub connection failed; working offline");
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
