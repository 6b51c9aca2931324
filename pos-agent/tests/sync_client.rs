//! The hub connection against a scripted WebSocket server: the hub's
//! clock from the upgrade's Date header, backoff that starts over after a
//! healthy connection, and a node that says the store moved.

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

/// What a scripted hub node does with one accepted connection.
#[derive(Clone, Copy)]
enum Script {
    /// Answer the terminal's first message with a `moved` error naming
    /// this text's address (verbatim, unchecked), then close.
    Moved(&'static str),
    /// Hold the connection until the client goes.
    Hold,
}

/// A hub node on a loopback port that follows `scripts` for its
/// connections in order (the last one for every later connection) and
/// reports each accepted upgrade, with the node's `name`, on `seen`.
async fn node(
    name: &'static str,
    scripts: Vec<Script>,
    seen: tokio::sync::mpsc::UnboundedSender<&'static str>,
) -> String {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/sync", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((tcp, _)) = listener.accept().await {
            let script = scripts[n.min(scripts.len() - 1)];
            n += 1;
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let _ = seen.send(name);
                match script {
                    Script::Hold => while ws.next().await.is_some() {},
                    Script::Moved(to) => {
                        // The join comes first; a node answers it.
                        let _ = ws.next().await;
                        let text = format!(
                            "this store is now served by another hub node; reconnect there (moved {to})"
                        );
                        let msg = engine::protocol::wire::WireMessage::Error {
                            sender_id: None,
                            target_id: None,
                            message: text,
                        };
                        let frame = engine::protocol::wire::encode(&msg);
                        let _ = ws.send(Message::Binary(frame.into())).await;
                        let _ = ws.close(None).await;
                    }
                }
            });
        }
    });
    url
}

/// A node that takes the TCP connection, reports it as `name` on `seen`
/// and drops it before the upgrade: a connect to it fails.
async fn failing_node(
    name: &'static str,
    seen: tokio::sync::mpsc::UnboundedSender<&'static str>,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/sync", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = seen.send(name);
            drop(tcp);
        }
    });
    url
}

/// Backoff long enough that a reconnect within a second can only be the
/// immediate one a `moved` asks for.
fn slow_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_secs(10),
        max: Duration::from_secs(30),
        healthy_after: Duration::from_secs(60),
    }
}

async fn next(seen: &mut tokio::sync::mpsc::UnboundedReceiver<&'static str>) -> &'static str {
    tokio::time::timeout(Duration::from_secs(3), seen.recv())
        .await
        .expect("the terminal should have reconnected within 3 s")
        .expect("the nodes run")
}

fn start(t: &pos_agent::agent::Terminal, url: String, backoff: Backoff) -> CancellationToken {
    let stop = CancellationToken::new();
    tokio::spawn(sync_client::run(
        url,
        "token".into(),
        t.handle.clone(),
        backoff,
        Keepalive::default(),
        stop.clone(),
    ));
    stop
}

#[tokio::test]
async fn a_moved_store_sends_the_terminal_to_the_named_node_at_once() {
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let b = node("b", vec![Script::Hold], tx.clone()).await;
    let b: &'static str = Box::leak(b.into_boxed_str());
    let a = node("a", vec![Script::Moved(b)], tx).await;
    let dir = tempfile::tempdir().unwrap();
    let t = terminal(&dir);
    let stop = start(&t, a, slow_backoff());
    assert_eq!(next(&mut seen).await, "a");
    // With a 10 s backoff, only the immediate reconnect lands in 3 s.
    assert_eq!(next(&mut seen).await, "b");
    stop.cancel();
}

#[tokio::test]
async fn a_named_node_that_cannot_be_reached_sends_the_terminal_back_to_its_hub() {
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let dead = failing_node("dead", tx.clone()).await;
    let dead: &'static str = Box::leak(dead.into_boxed_str());
    let a = node("a", vec![Script::Moved(dead), Script::Hold], tx).await;
    let dir = tempfile::tempdir().unwrap();
    let t = terminal(&dir);
    let backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(100),
        healthy_after: Duration::from_secs(60),
    };
    let stop = start(&t, a, backoff);
    assert_eq!(next(&mut seen).await, "a");
    assert_eq!(next(&mut seen).await, "dead");
    // The named node failed the connect; the next one is the hub's own.
    assert_eq!(next(&mut seen).await, "a");
    stop.cancel();
}

#[tokio::test]
async fn a_move_to_an_address_that_is_not_a_websocket_url_goes_back_to_the_hub_at_once() {
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let a = node(
        "a",
        vec![Script::Moved("http://evil.example/sync"), Script::Hold],
        tx,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let t = terminal(&dir);
    let stop = start(&t, a, slow_backoff());
    assert_eq!(next(&mut seen).await, "a");
    // Still a move (reconnect at once), but to the configured hub.
    assert_eq!(next(&mut seen).await, "a");
    stop.cancel();
}

#[tokio::test]
async fn two_nodes_naming_each_other_do_not_make_the_terminal_spin() {
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    // a names b; b names a (its configured hub: no address needed).
    let b = node("b", vec![Script::Moved("(none)")], tx.clone()).await;
    let b: &'static str = Box::leak(b.into_boxed_str());
    let a = node("a", vec![Script::Moved(b)], tx).await;
    let dir = tempfile::tempdir().unwrap();
    let t = terminal(&dir);
    let stop = start(&t, a, slow_backoff());
    assert_eq!(next(&mut seen).await, "a");
    assert_eq!(
        next(&mut seen).await,
        "b",
        "the first move is followed at once"
    );
    // The second move in a row backs off (at least 10 s here).
    let again = tokio::time::timeout(Duration::from_millis(1500), seen.recv()).await;
    assert!(again.is_err(), "reconnected at once again: {again:?}");
    stop.cancel();
}
