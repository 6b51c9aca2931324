//! The peer terminals' endpoint (`--peer-listen`) in-process: a peer that
//! proves it holds the store's token syncs; past the connection cap the
//! next one is refused with the reason; a slot frees when a peer leaves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::protocol::peer_auth::{Challenge, PeerKey, NONCE_BYTES};
use engine::protocol::wire::{self, PeerMetadata, WireLimits, WireMessage};
use engine::protocol::Session;
use futures_util::{SinkExt, StreamExt};
use pos_agent::lan::{self, LanConfig};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connect and run the handshake as a terminal holding `key`; `Err` with
/// the close reason if the endpoint refuses.
async fn connect(addr: SocketAddr, key: &PeerKey) -> Result<Ws, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/lan"))
        .await
        .map_err(|e| e.to_string())?;
    let nonce = [9u8; NONCE_BYTES];
    let hello = serde_json::to_string(&key.hello(&nonce)).unwrap();
    if ws.send(Message::Text(hello.into())).await.is_err() {
        return Err("closed before the hello".into());
    }
    let challenge: Challenge = match ws.next().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str(t.as_str()).unwrap(),
        Some(Ok(Message::Close(Some(f)))) => return Err(f.reason.to_string()),
        other => return Err(format!("{other:?}")),
    };
    let proof = key.answer(&nonce, &challenge).map_err(|e| e.to_string())?;
    ws.send(Message::Text(serde_json::to_string(&proof).unwrap().into()))
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// Send `join` and wait for the terminal's `peer`.
async fn join(ws: &mut Ws) {
    let (_, join) = Session::client(
        wire::PeerId::new("test-peer"),
        PeerMetadata {
            storage_id: None,
            is_ephemeral: false,
        },
    );
    ws.send(Message::Binary(wire::encode(&join).into()))
        .await
        .unwrap();
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                if let WireMessage::Peer { .. } = wire::decode(&b, &WireLimits::default()).unwrap()
                {
                    return;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("no peer message: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_caps_its_connections_and_frees_a_slot_when_a_peer_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let terminal =
        pos_agent::agent::open(dir.path(), Some("store-042"), "pos-1".parse().unwrap()).unwrap();
    let key = PeerKey::derive("the-store-token", &terminal.store);
    let mut cfg = LanConfig::new(key.clone());
    cfg.max_connections = 1;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(lan::serve(
        listener,
        Arc::new(cfg),
        terminal.handle.clone(),
        shutdown.clone(),
    ));
    let peers = async || {
        terminal
            .handle
            .call(|a, _| (a.lan_peers(), Vec::new()))
            .await
            .unwrap()
    };

    let mut first = connect(addr, &key).await.expect("a terminal of the store");
    join(&mut first).await;
    assert_eq!(peers().await, 1);

    let refused = connect(addr, &key).await.err();
    assert_eq!(
        refused.as_deref(),
        Some("this terminal already has 1 peer connections")
    );

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut again = loop {
        match connect(addr, &key).await {
            Ok(ws) => break ws,
            Err(e) => assert!(Instant::now() < deadline, "the slot never freed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    join(&mut again).await;
    assert_eq!(
        peers().await,
        1,
        "the first peer is gone, the new one syncs"
    );
    shutdown.cancel();
}
