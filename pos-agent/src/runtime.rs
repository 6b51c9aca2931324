//! The thread that owns the agent replica (and its SQLite connection).
//! The HTTP API, the hub connection and the peer terminals' connections
//! talk to it through a channel; its outputs go to the connection they
//! name (0: the hub; from 1: peer terminals, numbered by `next_peer_conn`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread;

use engine::replica::agent::Agent;
use engine::replica::{ConnId, Output};
use tokio::sync::{mpsc, oneshot};

/// What the hub connection's writer is told to do.
#[derive(Debug)]
pub enum Outbound {
    Frame(Vec<u8>),
    Close(String),
}

type Job = Box<dyn FnOnce(&mut Agent, i64) -> Vec<Output> + Send>;

enum Cmd {
    Connected(mpsc::UnboundedSender<Outbound>),
    ClockOffset(i64),
    Frame(Vec<u8>),
    Disconnected,
    /// A peer terminal's connection passed the LAN handshake; `dialed`
    /// when this terminal opened it.
    PeerUp {
        conn: ConnId,
        tx: mpsc::UnboundedSender<Outbound>,
        dialed: bool,
    },
    PeerFrame(ConnId, Vec<u8>),
    PeerDown(ConnId),
    Job(Job),
}

#[derive(Clone)]
pub struct AgentHandle {
    tx: std_mpsc::Sender<Cmd>,
    next_conn: Arc<AtomicU64>,
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl AgentHandle {
    pub fn spawn(agent: Agent) -> AgentHandle {
        let (tx, rx) = std_mpsc::channel();
        thread::Builder::new()
            .name("agent-replica".into())
            .spawn(move || run(agent, rx))
            .expect("spawning the agent thread");
        AgentHandle {
            tx,
            // 0 is the hub's connection.
            next_conn: Arc::new(AtomicU64::new(1)),
        }
    }

    /// A number for a new peer terminal connection.
    pub fn next_peer_conn(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub fn peer_up(&self, conn: ConnId, tx: mpsc::UnboundedSender<Outbound>, dialed: bool) {
        let _ = self.tx.send(Cmd::PeerUp { conn, tx, dialed });
    }

    pub fn peer_frame(&self, conn: ConnId, frame: Vec<u8>) {
        let _ = self.tx.send(Cmd::PeerFrame(conn, frame));
    }

    pub fn peer_down(&self, conn: ConnId) {
        let _ = self.tx.send(Cmd::PeerDown(conn));
    }

    pub fn connected(&self, out: mpsc::UnboundedSender<Outbound>) {
        let _ = self.tx.send(Cmd::Connected(out));
    }

    /// The hub's clock minus ours, as measured at the last connect.
    pub fn clock_offset(&self, offset_ms: i64) {
        let _ = self.tx.send(Cmd::ClockOffset(offset_ms));
    }

    pub fn frame(&self, frame: Vec<u8>) {
        let _ = self.tx.send(Cmd::Frame(frame));
    }

    pub fn disconnected(&self) {
        let _ = self.tx.send(Cmd::Disconnected);
    }

    /// Run `f` on the replica thread; its outputs go to the hub if connected.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Agent, i64) -> (T, Vec<Output>) + Send + 'static,
    ) -> anyhow::Result<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |agent, now| {
            let (v, out) = f(agent, now);
            let _ = tx.send(v);
            out
        });
        self.tx
            .send(Cmd::Job(job))
            .map_err(|_| anyhow::anyhow!("the agent thread has stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the agent thread has stopped"))
    }
}

fn run(mut agent: Agent, rx: std_mpsc::Receiver<Cmd>) {
    let mut link: Option<mpsc::UnboundedSender<Outbound>> = None;
    let mut peers: HashMap<ConnId, mpsc::UnboundedSender<Outbound>> = HashMap::new();
    let mut offset = agent.clock_offset_ms();
    while let Ok(cmd) = rx.recv() {
        let now = now_ms() + offset;
        let out = match cmd {
            Cmd::Connected(tx) => {
                link = Some(tx);
                agent.connected()
            }
            Cmd::ClockOffset(o) => {
                if let Err(e) = agent.set_clock_offset_ms(o) {
                    tracing::warn!(error = %e, "could not save the clock offset");
                }
                offset = o;
                Vec::new()
            }
            Cmd::Frame(f) => agent.receive(&f, now),
            Cmd::Disconnected => {
                link = None;
                agent.disconnected();
                Vec::new()
            }
            Cmd::PeerUp { conn, tx, dialed } => {
                peers.insert(conn, tx);
                if dialed {
                    agent.peer_dialed(conn, now)
                } else {
                    agent.peer_accepted(conn, now);
                    Vec::new()
                }
            }
            Cmd::PeerFrame(conn, f) => agent.peer_receive(conn, &f, now),
            Cmd::PeerDown(conn) => {
                peers.remove(&conn);
                agent.peer_disconnected(conn);
                Vec::new()
            }
            Cmd::Job(job) => job(&mut agent, now),
        };
        for o in out {
            let (conn, msg) = match o {
                Output::Send { conn, frame } => (conn, Outbound::Frame(frame)),
                Output::Close { conn, reason } => (conn, Outbound::Close(reason)),
                // A hub's output; an agent holds no leases.
                Output::LeaseLost { .. } => continue,
            };
            if conn == 0 {
                if link.as_ref().is_some_and(|tx| tx.send(msg).is_err()) {
                    link = None;
                }
            } else if let Some(tx) = peers.get(&conn) {
                let closing = matches!(msg, Outbound::Close(_));
                if tx.send(msg).is_err() || closing {
                    peers.remove(&conn);
                }
            }
        }
    }
}
