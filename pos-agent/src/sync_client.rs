//! The connection to the hub: connect, hand frames to the replica thread,
//! and on any failure reconnect with exponential backoff and jitter so a
//! thousand terminals coming back at once do not stampede the hub.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::runtime::{AgentHandle, Outbound};

#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
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

/// Keep a connection to `url` (ws://host/sync) until `shutdown`.
pub async fn run(
    url: String,
    token: String,
    handle: AgentHandle,
    backoff: Backoff,
    shutdown: CancellationToken,
) {
    let mut attempt = 0u32;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        match connect_once(&url, &token, &handle, &shutdown).await {
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
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut req = url.into_client_request()?;
    req.headers_mut().insert(
        "Authorization",
        HeaderValue::from_str(&format!("Bearer {token}"))?,
    );
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connecting to {url} timed out"))??;
    info!(%url, "connected to hub");
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    handle.connected(tx);
    let result = loop {
        tokio::select! {
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
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(b))) => handle.frame(b.to_vec()),
                Some(Ok(Message::Close(_))) | None => break Err(anyhow::anyhow!("hub closed the connection")),
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(e.into()),
            },
        }
    };
    handle.disconnected();
    result
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
