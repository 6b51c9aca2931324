//! Caps on the sync connections a token and a store hold open: refused at
//! the upgrade with 429 saying which cap and how to raise it, never
//! exceeded by racing upgrades, released however a connection ends, and a
//! store hammering at its cap does not lock another store out. Also: the
//! admin token is not a sync peer, and an oversized message is answered
//! with a close frame (1009) saying why.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use automerge::Automerge;
use engine::document::instance;
use engine::ids::Principal;
use engine::replica::hub::HubLimits;
use futures_util::{SinkExt, StreamExt};
use hub::connection_slots::ConnectionCaps;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{content, Client, TestHub, Ws};

const DEADLINE: Duration = Duration::from_secs(10);

async fn start(per_token: usize, per_store: usize) -> TestHub {
    common::start_with_caps(
        HubLimits::default(),
        ConnectionCaps {
            per_token,
            per_store,
        },
    )
    .await
}

fn store_a() -> Principal {
    Principal::Store("store-a".parse().unwrap())
}

/// Open `/sync` with `token`: the socket, or the refusal's status and body.
async fn open(addr: &str, token: &str) -> Result<Ws, (u16, String)> {
    let mut req = format!("ws://{addr}/sync").into_client_request().unwrap();
    req.headers_mut().insert(
        "Authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            let body = String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).into();
            Err((r.status().as_u16(), body))
        }
        Err(e) => panic!("unexpected connect error: {e}"),
    }
}

/// Register another token of `store-a`.
async fn add_token(hub: &TestHub, token: &'static str) {
    hub.state
        .hub
        .registry()
        .call(move |h, now| ((h.add_token(token, &store_a(), "", now, None)), Vec::new()))
        .await
        .unwrap()
        .unwrap();
}

/// Wait until `store-a` holds `n` connections, or fail at the deadline.
async fn until_store_a_holds(hub: &TestHub, n: usize) {
    let start = Instant::now();
    while hub.state.slots.open_for(&store_a()) != n {
        assert!(
            start.elapsed() < DEADLINE,
            "store-a still holds {} connections, not {n}",
            hub.state.slots.open_for(&store_a())
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn over_the_cap_is_refused_with_429_and_another_store_still_syncs_meanwhile() {
    let hub = start(3, 5).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(open(&hub.addr, "tok-store-a").await.expect("under the cap"));
    }
    let (status, body) = open(&hub.addr, "tok-store-a").await.err().unwrap();
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("3 open sync connections") && body.contains("--max-connections-per-token"),
        "{body}"
    );

    // The store's other tokens fill the per-store cap.
    add_token(&hub, "tok-a2").await;
    add_token(&hub, "tok-a3").await;
    for _ in 0..2 {
        held.push(open(&hub.addr, "tok-a2").await.expect("under both caps"));
    }
    let (status, body) = open(&hub.addr, "tok-a3").await.err().unwrap();
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("store:store-a") && body.contains("--max-connections-per-store"),
        "{body}"
    );

    // A leaked token keeps trying at the cap...
    let stop = Arc::new(AtomicBool::new(false));
    let (refused, accepted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let hammer = {
        let (addr, stop) = (hub.addr.clone(), stop.clone());
        let (refused, accepted) = (refused.clone(), accepted.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match open(&addr, "tok-store-a").await {
                    Err((429, _)) => refused.fetch_add(1, Ordering::Relaxed),
                    _ => accepted.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    // ...while another store connects, several times over, and syncs.
    let start = Instant::now();
    while refused.load(Ordering::Relaxed) < 50 {
        assert!(start.elapsed() < DEADLINE, "the hammer got going");
        tokio::task::yield_now().await;
    }
    for i in 0..5 {
        let mut b = Client::join(&hub.addr, "tok-store-b", &format!("b{i}")).await;
        let mut doc = Automerge::new();
        let errs = b.sync_until_quiet(content("store-b", 2).id, &mut doc).await;
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(instance::read(&doc).unwrap().tasks.len(), 2);
    }
    stop.store(true, Ordering::Relaxed);
    hammer.await.unwrap();
    assert_eq!(accepted.load(Ordering::Relaxed), 0, "nothing over the cap");
    assert!(refused.load(Ordering::Relaxed) >= 50);
    assert_eq!(hub.state.slots.open_for(&store_a()), 5);
    let metrics = reqwest::get(format!("http://{}/metrics", hub.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = format!(
        "hub_connections_refused_total {}",
        refused.load(Ordering::Relaxed) + 2
    );
    assert!(metrics.contains(&counted), "{counted} in:\n{metrics}");
}

#[tokio::test]
async fn upgrades_racing_each_other_never_exceed_the_cap() {
    let hub = start(4, 100).await;
    let attempts = (0..40).map(|_| open(&hub.addr, "tok-store-a"));
    let results = futures_util::future::join_all(attempts).await;
    let accepted: Vec<Ws> = results.into_iter().filter_map(Result::ok).collect();
    assert_eq!(accepted.len(), 4);
    assert_eq!(hub.state.slots.open_for(&store_a()), 4);
}

/// A connection's slot comes back however it ends: the peer's close
/// handshake, a socket dropped without one, the hub closing it (a text
/// frame, an oversized message, a revoked token).
#[tokio::test]
async fn a_slot_is_released_however_the_connection_ends() {
    let mut limits = HubLimits::default();
    limits.wire.max_message_bytes = 64 * 1024;
    let hub = common::start_with_caps(
        limits,
        ConnectionCaps {
            per_token: 1,
            per_store: 1,
        },
    )
    .await;
    type End = fn(Ws) -> futures_util::future::BoxFuture<'static, ()>;
    let ends: [(&str, End); 4] = [
        ("close handshake", |mut ws| {
            Box::pin(async move {
                ws.close(None).await.unwrap();
                while ws.next().await.is_some() {}
            })
        }),
        ("socket dropped", |ws| Box::pin(async move { drop(ws) })),
        ("text frame", |mut ws| {
            Box::pin(async move {
                ws.send(Message::Text("hello".into())).await.unwrap();
                while ws.next().await.is_some() {}
            })
        }),
        ("oversized message", |mut ws| {
            Box::pin(async move {
                let _ = ws.send(Message::Binary(vec![0u8; 200 * 1024].into())).await;
                while let Some(Ok(_)) = ws.next().await {}
            })
        }),
    ];
    for (how, end) in ends {
        let ws = open(&hub.addr, "tok-store-a").await.expect(how);
        assert_eq!(
            open(&hub.addr, "tok-store-a").await.err().map(|e| e.0),
            Some(429),
            "{how}: at the cap"
        );
        end(ws).await;
        until_store_a_holds(&hub, 0).await;
    }
    let _ws = open(&hub.addr, "tok-store-a").await.expect("free again");
    hub.state
        .hub
        .registry()
        .call(|h, now| {
            let closes = h.revoke_token("tok-store-a", now).unwrap();
            ((), closes.expect("an active token"))
        })
        .await
        .unwrap();
    until_store_a_holds(&hub, 0).await;
}

#[tokio::test]
async fn the_admin_token_is_refused_at_sync() {
    let hub = start(16, 32).await;
    let (status, body) = open(&hub.addr, "admin").await.err().unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("admin API") && body.contains("store's token"),
        "{body}"
    );
    let url = format!("ws://{}/sync?token=admin", hub.addr);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("the admin token as ?token= was not refused: {other:?}"),
    }
    // Store tokens still work.
    assert!(open(&hub.addr, "tok-store-a").await.is_ok());
}

#[tokio::test]
async fn an_oversized_message_is_answered_with_close_1009_and_a_reason() {
    let mut limits = HubLimits::default();
    limits.wire.max_message_bytes = 64 * 1024;
    let hub = common::start(limits).await;
    let mut ws = open(&hub.addr, "tok-store-a").await.unwrap();
    let _ = ws.send(Message::Binary(vec![0u8; 200 * 1024].into())).await;
    let frame = loop {
        match tokio::time::timeout(DEADLINE, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    };
    let frame = frame.expect("a close frame with a code");
    assert_eq!(frame.code, CloseCode::Size, "{frame:?}");
    assert!(
        frame.reason.contains("204800") && frame.reason.contains("65536"),
        "{frame:?}"
    );
}
