//! The thread that owns the agent replica (and its SQLite connection).
//! The HTTP API and the hub connection talk to it through a channel.

use std::sync::mpsc as std_mpsc;
use std::thread;

use engine::replica::agent::Agent;
use engine::replica::Output;
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
    Job(Job),
}

#[derive(Clone)]
pub struct AgentHandle {
    tx: std_mpsc::Sender<Cmd>,
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
        AgentHandle { tx }
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
            Cmd::Job(job) => job(&mut agent, now),
        };
        for o in out {
            let Some(tx) = &link else { break };
            let msg = match o {
                Output::Send { frame, .. } => Outbound::Frame(frame),
                Output::Close { reason, .. } => Outbound::Close(reason),
                // A hub's output; an agent holds no leases.
                Output::LeaseLost { .. } => continue,
            };
            if tx.send(msg).is_err() {
                link = None;
            }
        }
    }
}
