//! A hub in the test process speaking `/sync` over real WebSockets, and a
//! protocol client driven by the engine's session (`sync_until_quiet`; a
//! test that needs a laxer loop, as `hostile_peers`, adds its own), shared
//! by the hub's integration tests; `admin` drives the admin API.

#![allow(dead_code)]

pub mod admin;
pub mod node;

use std::time::Duration;

use automerge::Automerge;
use engine::ids::{DocumentId, Principal, StoreId, TaskId};
use engine::model::{CreatedBy, InstanceContent, ListMeta, Priority, TaskSpec};
use engine::protocol::wire::{self, PeerId, PeerMetadata, WireLimits, WireMessage};
use engine::protocol::{Session, SessionEvent};
use engine::replica::hub::HubLimits;
use engine::storage::StoreRecord;
use futures_util::{SinkExt, StreamExt};
use hub::connection_slots::ConnectionCaps;
use hub::http::AppState;
use hub::{data_dir, server};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The database a test hub runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    /// A fresh database on the test process's throwaway PostgreSQL.
    Postgres,
}

/// One test, once per backend: `mod $name { fn sqlite(); fn postgres() }`,
/// the body taking the backend. The PostgreSQL run skips (with a notice)
/// where PostgreSQL is not installed, outside CI.
#[macro_export]
macro_rules! on_each_backend {
    ($(#[$attr:meta])* async fn $name:ident($b:ident: Backend) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(#[$attr])*
            async fn sqlite() {
                run($crate::common::Backend::Sqlite).await
            }
            $(#[$attr])*
            async fn postgres() {
                if hub::pg::testing::PgServer::shared().is_some() {
                    run($crate::common::Backend::Postgres).await
                }
            }
            async fn run($b: $crate::common::Backend) $body
        }
    };
}

pub struct TestHub {
    _dir: tempfile::TempDir,
    /// host:port
    pub addr: String,
    pub state: AppState,
    shutdown: CancellationToken,
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// List `n` of `store`: two HQ tasks, ids `n*100+1` and `n*100+2`.
pub fn content(store: &str, n: u128) -> InstanceContent {
    let store: StoreId = store.parse().unwrap();
    InstanceContent {
        id: DocumentId(uuid::Uuid::from_u128(n)),
        meta: ListMeta {
            store,
            name: "Closing".into(),
            template: None,
            date: chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap(),
            time_zone: "Europe/Berlin".into(),
            created_by: CreatedBy::Hq,
        },
        tasks: (1..=2)
            .map(|i| TaskSpec {
                id: TaskId(uuid::Uuid::from_u128(n * 100 + i)),
                title: format!("Task {i}"),
                description: String::new(),
                start: None,
                due: None,
                priority: Priority::Normal,
                link: None,
                assignee: None,
                created_by: CreatedBy::Hq,
                position: i as i64,
            })
            .collect(),
    }
}

/// A hub in this process with stores `store-a` (list 1) and `store-b`
/// (list 2), each with the token `tok-<store>`.
pub async fn start(limits: HubLimits) -> TestHub {
    start_with_caps(limits, ConnectionCaps::default()).await
}

/// `start` on `backend`.
pub async fn start_on(backend: Backend, limits: HubLimits) -> TestHub {
    start_on_with_caps(backend, limits, ConnectionCaps::default()).await
}

/// `start`, with these caps on open sync connections.
pub async fn start_with_caps(limits: HubLimits, caps: ConnectionCaps) -> TestHub {
    start_on_with_caps(Backend::Sqlite, limits, caps).await
}

async fn start_on_with_caps(backend: Backend, limits: HubLimits, caps: ConnectionCaps) -> TestHub {
    let dir = tempfile::tempdir().unwrap();
    let database = match backend {
        Backend::Sqlite => data_dir::Database::Sqlite,
        Backend::Postgres => data_dir::Database::Postgres {
            url: hub::pg::testing::PgServer::shared()
                .expect("PostgreSQL is installed")
                .new_database(),
            cluster: None,
        },
    };
    let opened = tokio::task::spawn_blocking({
        let path = dir.path().to_path_buf();
        move || data_dir::open(&path, limits, Some("admin"), &database)
    })
    .await
    .unwrap()
    .unwrap();
    let state = opened.state.with_connection_caps(caps);
    state
        .hub
        .registry()
        .call(|hub, now| {
            for (s, n) in [("store-a", 1), ("store-b", 2)] {
                hub.add_store(&StoreRecord {
                    id: s.parse().unwrap(),
                    name: s.into(),
                    time_zone: "Europe/Berlin".into(),
                })
                .unwrap();
                let p = Principal::Store(s.parse().unwrap());
                hub.add_token(&format!("tok-{s}"), &p, "", now, None)
                    .unwrap();
                hub.publish(&content(s, n), now).unwrap();
                // The worker the tests record status as: the hub refuses
                // events by anyone not on the store's roster.
                let w1 = engine::document::directory::RosterWorker {
                    name: "W1".into(),
                    role: "cashier".parse().unwrap(),
                    groups: Vec::new(),
                    pin: None,
                };
                hub.put_worker(&s.parse().unwrap(), &"w1".parse().unwrap(), &w1, now)
                    .unwrap();
            }
            ((), Vec::new())
        })
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    tokio::spawn(server::run(listener, state.clone(), shutdown.clone()));
    TestHub {
        _dir: dir,
        addr,
        state,
        shutdown,
    }
}

/// Open `/sync` at `addr` (host:port) with `token` as a bearer: the socket,
/// or the HTTP status the upgrade was refused with.
pub async fn connect(addr: &str, token: Option<&str>) -> Result<Ws, u16> {
    let mut req = format!("ws://{addr}/sync").into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("unexpected connect error: {e}"),
    }
}

/// Send one protocol message; the connection must still be open.
pub async fn send(ws: &mut Ws, msg: &WireMessage) {
    ws.send(Message::Binary(wire::encode(msg).into()))
        .await
        .unwrap();
}

/// Send one protocol message to a hub that may already have closed the
/// connection (a hostile peer does not care).
pub async fn send_lossy(ws: &mut Ws, msg: &WireMessage) {
    let _ = ws.send(Message::Binary(wire::encode(msg).into())).await;
}

/// Next protocol message, or None when the hub closed the connection.
pub async fn next(ws: &mut Ws) -> Option<WireMessage> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("hub answered in time");
        match m {
            Some(Ok(Message::Binary(b))) => {
                return Some(wire::decode(&b, &WireLimits::default()).unwrap())
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// A client speaking the protocol through the engine's session.
pub struct Client {
    pub ws: Ws,
    pub session: Session,
}

impl Client {
    /// Connect to the hub at `addr` (host:port) with `token` and join as `name`.
    pub async fn join(addr: &str, token: &str, name: &str) -> Client {
        let mut ws = connect(addr, Some(token)).await.expect("accepted");
        let (mut session, join) = Session::client(PeerId::new(name), PeerMetadata::default());
        send(&mut ws, &join).await;
        let peer = next(&mut ws).await.expect("peer");
        session.receive(peer).unwrap();
        Client { ws, session }
    }
}

impl Client {
    /// Sync `doc` until the hub goes quiet (500 ms without a message);
    /// returns error texts and unavailability. A sync message `doc` cannot
    /// take is a test failure.
    pub async fn sync_until_quiet(&mut self, id: DocumentId, doc: &mut Automerge) -> Vec<String> {
        let mut errors = Vec::new();
        if let Some(m) = self.session.generate(id, doc) {
            send(&mut self.ws, &m).await;
        }
        loop {
            let Ok(m) = tokio::time::timeout(Duration::from_millis(500), next(&mut self.ws)).await
            else {
                return errors;
            };
            let Some(m) = m else { return errors };
            match self.session.receive(m).unwrap().0 {
                SessionEvent::Sync {
                    doc: d, message, ..
                } if d == id => {
                    self.session.apply(id, doc, message).unwrap();
                    if let Some(m) = self.session.generate(id, doc) {
                        send(&mut self.ws, &m).await;
                    }
                }
                SessionEvent::RemoteError { message } => errors.push(message),
                SessionEvent::Unavailable { .. } => errors.push("unavailable".into()),
                _ => {}
            }
        }
    }
}
