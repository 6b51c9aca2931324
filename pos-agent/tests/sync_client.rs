//! The hub connection against a scripted WebSocket server: the hub's
//! clock from the upgrade's Date header, and backoff that starts over
//! after a healthy connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use pos_agent::sync_client::{self, Backoff, Keepalive};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_util::sync::CancellationToken;

/// A server that accepts WebSockets, answers the upgrade with `date` as
/// its Date header, and holds each connection for `hold` (or until the
/// client goes). Returns its address and the number of accepted upgrades.
async fn server(date: String, hold: Duration) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let date = date.clone();
            let count = count.clone();
            tokio::spawn(async move {
                // The error type is tungstenite's, fixed by its callback trait.
                #[allow(clippy::result_large_err)]
                let cb = |_: &Request, mut resp: Response| {
                    resp.headers_mut().insert("date", date.parse().unwrap());
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, cb).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let _ =
                    tokio::time::timeout(hold, async { while ws.next().await.is_some() {} }).await;
            });
        }
    });
    (addr, accepted)
}

fn terminal(dir: &tempfile::TempDir) -> pos_agent::agent::Terminal {
    pos_agent::agent::open(dir.path(), Some("store-042"), "pos-1".parse().unwrap()).unwrap()
}

#[tokio::test]
async fn a_terminal_three_hours_ahead_dates_its_work_by_the_hubs_clock() {
    let hub_now = chrono::Utc::now() - chrono::Duration::hours(3);
    let (addr, _) = server(hub_now.to_rfc2822(), Duration::from_secs(30)).await;
    let dir = tempfile::tempdir().unwrap();
    let t = terminal(&dir);
    let stop = CancellationToken::new();
    tokio::spawn(sync_client::run(
        format!("ws://{addr}/sync"),
        "token".into(),
        t.handle.clone(),
        Backoff::default(),
        Keepalive::default(),
        stop.clone(),
    ));
    let mut offset = 0;
    for _ in 0..100 {
        offset = t
            .handle
            .call(|a, _| (a.clock_offset_ms(), Vec::new()))
            .await
            .unwrap();
        if offset != 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let hours = offset as f64 / 3_600_000.0;
    assert!((-3.01..=-2.99).contains(&hours), "offset {offset} ms");
}

#[tokio::test]
async fn backoff_starts_over_after_a_healthy_connection() {
    let date = chrono::Utc::now().to_rfc2822();
    // Each connection lasts 150 ms, longer than `healthy_after`.
    let (addr, accepted) = server(date, Duration::from_millis(150)).await;
    let dir = tempfile::tempdir().unwrap();
    let t = terminal(&dir);
    let stop = CancellationToken::new();
    tokio::spawn(sync_client::run(
        format!("ws://{addr}/sync"),
        "token".into(),
        t.handle.clone(),
        Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(10),
            healthy_after: Duration::from_millis(100),
        },
        Keepalive::default(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    // Starting over: each cycle is ~150 ms + at most 50 ms. Growing
    // (50, 100, 200, ... ms) would give about 6 in 3 s.
    let n = accepted.load(Ordering::SeqCst);
    assert!(
        n >= 10,
        "only {n} reconnects in 3 s: the backoff kept growing"
    );
}
