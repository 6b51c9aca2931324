//! The thread that owns the hub replica (and so its SQLite connection).
//! Async code talks to it through a channel; nothing blocks the runtime.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use engine::ids::Principal;
use engine::replica::hub::Hub;
use engine::replica::{ConnId, Output};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

/// What a connection's writer task is told to do.
#[derive(Debug)]
pub enum Outbound {
    Frame(Vec<u8>),
    Close(String),
}

type Job = Box<dyn FnOnce(&mut Hub, i64) -> Vec<Output> + Send>;

enum Cmd {
    Connect {
        conn: ConnId,
        principal: Principal,
        /// The token it was checked with, checked again here.
        token: Option<String>,
        out: mpsc::Sender<Outbound>,
    },
    Frame {
        conn: ConnId,
        frame: Vec<u8>,
    },
    Disconnect {
        conn: ConnId,
    },
    Job(Job),
    /// A job was put in the `soon` queue: look at it now if idle.
    Wake,
}

/// Jobs to run between two batches, ahead of the commands queued (see
/// `HubHandle::call_soon`).
type Soon = Arc<Mutex<VecDeque<Job>>>;

/// A cheap handle to the hub thread.
#[derive(Clone)]
pub struct HubHandle {
    tx: std_mpsc::Sender<Cmd>,
    soon: Soon,
    /// The status index catches up while the thread is idle (always, but
    /// for tests: only they switch it off).
    #[cfg_attr(not(test), allow(dead_code))]
    idle_indexing: Arc<AtomicBool>,
    /// Message handling times, measured on the hub thread.
    pub latency: std::sync::Arc<crate::metrics::Latency>,
}

/// Outbound frames queued per connection before it counts as too slow
/// (and is closed rather than let the hub's memory grow).
pub const OUTBOUND_QUEUE: usize = 4096;

/// A hub call's result in the shape [`HubHandle::call`] takes: the value
/// (or error) to answer with, and the outputs to deliver (none after an
/// error, which wrote nothing).
pub fn answer_with<T, E>(r: Result<(T, Vec<Output>), E>) -> (Result<T, E>, Vec<Output>) {
    match r {
        Ok((v, out)) => (Ok(v), out),
        Err(e) => (Err(e), Vec::new()),
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl HubHandle {
    /// Start the hub thread. It stops when every handle is dropped.
    pub fn spawn(hub: Hub) -> HubHandle {
        HubHandle::spawn_named(hub, "hub-replica")
    }

    /// [`HubHandle::spawn`], with the thread named `name` (one of a
    /// node's replica threads, see `replicas`).
    pub fn spawn_named(hub: Hub, name: &str) -> HubHandle {
        HubHandle::spawn_sharing(hub, name, Arc::default())
    }

    /// [`HubHandle::spawn_named`], with its message handling times added
    /// to `latency` (one histogram for all of a node's replica threads).
    pub fn spawn_sharing(hub: Hub, name: &str, latency: Arc<crate::metrics::Latency>) -> HubHandle {
        let (tx, rx) = std_mpsc::channel::<Cmd>();
        let l = latency.clone();
        let soon = Soon::default();
        let s = soon.clone();
        let idle_indexing = Arc::new(AtomicBool::new(true));
        let i = idle_indexing.clone();
        thread::Builder::new()
            .name(name.into())
            .spawn(move || run(hub, rx, &s, &i, &l))
            .expect("spawning the hub thread");
        HubHandle {
            tx,
            soon,
            idle_indexing,
            latency,
        }
    }

    /// Register a connection whose `token` was found to be `principal`'s
    /// at its upgrade. The hub thread checks the token again, in order
    /// with the revocations queued: one revoked since is closed at once.
    pub fn connect(
        &self,
        conn: ConnId,
        principal: Principal,
        token: Option<String>,
        out: mpsc::Sender<Outbound>,
    ) {
        let _ = self.tx.send(Cmd::Connect {
            conn,
            principal,
            token,
            out,
        });
    }

    /// Whether `other` is a handle to this very thread.
    pub fn same_thread(&self, other: &HubHandle) -> bool {
        Arc::ptr_eq(&self.soon, &other.soon)
    }

    pub fn frame(&self, conn: ConnId, frame: Vec<u8>) {
        let _ = self.tx.send(Cmd::Frame { conn, frame });
    }

    pub fn disconnect(&self, conn: ConnId) {
        let _ = self.tx.send(Cmd::Disconnect { conn });
    }

    /// Run `f` on the hub thread and wait for its answer. Outputs it
    /// returns (e.g. a publish's fan-out) are delivered to connections.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Hub, i64) -> (T, Vec<Output>) + Send + 'static,
    ) -> anyhow::Result<T> {
        let (job, rx) = job(f);
        self.tx.send(Cmd::Job(job)).map_err(stopped)?;
        rx.await.map_err(stopped)
    }

    /// Stop indexing while idle: tests that check what a status read
    /// catches up itself.
    #[cfg(test)]
    pub(crate) fn pause_idle_indexing(&self) {
        self.idle_indexing.store(false, Ordering::Relaxed);
    }

    /// [`HubHandle::call`], run as soon as the batch being handled is
    /// committed, ahead of every frame and command queued: during a
    /// reconnect storm the queue holds a second or more of frames, and a
    /// dashboard read or a metrics scrape would wait behind all of them.
    /// Only for jobs whose outcome does not depend on where they fall
    /// among frames and connection changes: reads, and status index
    /// catch-up (derived data, which the idle hub does between batches
    /// anyway). Anything that changes documents, tokens or connections
    /// goes through `call`, in order.
    pub async fn call_soon<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Hub, i64) -> (T, Vec<Output>) + Send + 'static,
    ) -> anyhow::Result<T> {
        let (job, rx) = job(f);
        lock(&self.soon).push_back(job);
        self.tx.send(Cmd::Wake).map_err(stopped)?;
        rx.await.map_err(stopped)
    }
}

/// A job's channel closed: the hub thread is gone.
fn stopped<E>(_: E) -> anyhow::Error {
    anyhow::anyhow!("the hub thread has stopped")
}

/// `f` as a job for the hub thread, and where its answer will arrive.
fn job<T: Send + 'static>(
    f: impl FnOnce(&mut Hub, i64) -> (T, Vec<Output>) + Send + 'static,
) -> (Job, oneshot::Receiver<T>) {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move |hub, now| {
        let (value, out) = f(hub, now);
        let _ = tx.send(value);
        out
    });
    (job, rx)
}

/// Most frames committed together.
const MAX_BATCH: usize = 256;

/// Lists a status read indexes per hub job; small enough that a frame
/// arriving meanwhile waits only a few milliseconds.
pub(crate) const INDEX_CHUNK: usize = 16;

/// Longest the idle hub thread indexes in one transaction. It stops
/// sooner, after the list in hand, when a command arrives: what a frame
/// waits for is one list and the commit.
const IDLE_INDEX_SLICE: std::time::Duration = std::time::Duration::from_millis(250);

fn run(
    mut hub: Hub,
    rx: std_mpsc::Receiver<Cmd>,
    soon: &Mutex<VecDeque<Job>>,
    idle_indexing: &AtomicBool,
    latency: &crate::metrics::Latency,
) {
    let mut conns: HashMap<ConnId, mpsc::Sender<Outbound>> = HashMap::new();
    let mut next: Option<Cmd> = None;
    // Indexing failed (the disk is full, say): wait for the next command
    // before trying again rather than spin.
    let mut index_stalled = false;
    loop {
        // Between batches: the jobs that may go ahead of the queue, those
        // queued by now (the lock is not held while they run; jobs queued
        // meanwhile wait for the next command, so frames are never starved).
        let jobs = std::mem::take(&mut *lock(soon));
        for job in jobs {
            let out = job(&mut hub, now_ms());
            deliver(&mut hub, &mut conns, out);
        }
        let cmd = match next.take() {
            Some(c) => c,
            None => match rx.try_recv() {
                Ok(c) => c,
                // Idle: sync comes first, the status index catches up now.
                Err(std_mpsc::TryRecvError::Empty)
                    if hub.index_backlog() > 0
                        && !index_stalled
                        && idle_indexing.load(Ordering::Relaxed) =>
                {
                    // One transaction for as many lists as fit before a
                    // command arrives (or a slice of time passes): a
                    // transaction per few lists spent the catch-up after
                    // a storm on commits.
                    let started = std::time::Instant::now();
                    let mut arrived = None;
                    let indexed = hub.catch_up_index_while(|| {
                        if started.elapsed() >= IDLE_INDEX_SLICE {
                            return false;
                        }
                        match rx.try_recv() {
                            Ok(c) => {
                                arrived = Some(c);
                                false
                            }
                            Err(_) => true,
                        }
                    });
                    index_stalled = indexed == 0;
                    next = arrived;
                    continue;
                }
                Err(std_mpsc::TryRecvError::Empty) => match rx.recv() {
                    Ok(c) => c,
                    Err(_) => break,
                },
                Err(std_mpsc::TryRecvError::Disconnected) => break,
            },
        };
        index_stalled = false;
        if matches!(cmd, Cmd::Frame { .. }) {
            // Group commit: the frames already queued are handled in one
            // transaction, one fsync, and their replies go out only after
            // it commits (persist before send).
            let mut frames = vec![cmd];
            while frames.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(c @ Cmd::Frame { .. }) => frames.push(c),
                    // Soon jobs run right after this batch anyway: a wake
                    // must not cut a group commit short.
                    Ok(Cmd::Wake) => continue,
                    Ok(other) => {
                        next = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            // Even a single frame is a batch: its changes and the status
            // index rows they change then share one transaction (one
            // fsync), and a frame that writes nothing costs no sync. The
            // replies come out of `commit` only (persist before send).
            let mut batch = hub.batch();
            for f in frames {
                let Cmd::Frame { conn, frame } = f else {
                    unreachable!("only frames are batched")
                };
                let started = std::time::Instant::now();
                batch.receive(conn, &frame, now_ms());
                latency.observe(started.elapsed());
            }
            let out = batch.commit();
            deliver(&mut hub, &mut conns, out);
            continue;
        }
        let now = now_ms();
        let out = match cmd {
            Cmd::Connect {
                conn,
                principal,
                token,
                out,
            } => {
                // Revoked (or expired) between its upgrade and now.
                match hub.authenticate(token.as_deref(), now) {
                    Ok(p) if p == principal => {}
                    refused => {
                        let why = refused
                            .err()
                            .map_or("token changed".into(), |e| e.to_string());
                        warn!(conn, %principal, reason = %why, "closing a connection at once");
                        let _ = out.try_send(Outbound::Close(why));
                        continue;
                    }
                }
                conns.insert(conn, out);
                let mut batch = hub.batch();
                batch.connected(conn, principal, now);
                batch.commit()
            }
            Cmd::Frame { .. } => unreachable!("frames are handled in batches above"),
            Cmd::Disconnect { conn } => {
                conns.remove(&conn);
                let mut batch = hub.batch();
                batch.disconnected(conn);
                batch.commit()
            }
            Cmd::Job(job) => job(&mut hub, now),
            Cmd::Wake => Vec::new(),
        };
        deliver(&mut hub, &mut conns, out);
    }
    hub.shut_down();
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data stays consistent even if a holder panicked with the lock.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn deliver(hub: &mut Hub, conns: &mut HashMap<ConnId, mpsc::Sender<Outbound>>, out: Vec<Output>) {
    for o in out {
        match o {
            Output::Send { conn, frame } => {
                let Some(tx) = conns.get(&conn) else { continue };
                match tx.try_send(Outbound::Frame(frame)) {
                    Ok(()) => continue,
                    Err(TrySendError::Full(_)) => {
                        warn!(conn, "connection too slow to keep up; closing it")
                    }
                    // The peer is gone and its task with it; its
                    // disconnect is on its way here. Nothing was slow.
                    Err(TrySendError::Closed(_)) => {
                        debug!(conn, "connection already closed; dropping its frames")
                    }
                }
                conns.remove(&conn);
                hub.disconnect(conn);
            }
            Output::Close { conn, reason } => {
                if let Some(tx) = conns.remove(&conn) {
                    let _ = tx.try_send(Outbound::Close(reason));
                }
            }
            // Only a cluster backend's fence refuses a commit this way; the
            // embedded SQLite hub holds no leases. The lease manager that
            // stops serving these stores hooks in here.
            Output::LeaseLost { stores } => {
                warn!(
                    ?stores,
                    "this node lost these stores' leases; their connections were closed"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use engine::ids::{Principal, StoreId};
    use engine::storage::StoreRecord;
    use tokio::sync::mpsc;

    use super::Outbound;
    use crate::data_dir::open_for_test as open;

    /// A token revoked after a WebSocket upgrade checked it, but before the
    /// hub thread registered the connection, does not get a connection.
    #[tokio::test]
    async fn a_connection_whose_token_was_revoked_since_its_upgrade_is_closed_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = open(dir.path());
        let store: StoreId = "store-a".parse().unwrap();
        let principal = Principal::Store(store.clone());
        let p = principal.clone();
        state
            .hub
            .registry()
            .call(move |hub, now| {
                hub.add_store(&StoreRecord {
                    id: store,
                    name: "A".into(),
                    time_zone: "Europe/Berlin".into(),
                })
                .unwrap();
                hub.add_token("revoked-soon", &p, "till 1", now, None)
                    .unwrap();
                hub.add_token("still-good", &p, "till 2", now, None)
                    .unwrap();
                ((), Vec::new())
            })
            .await
            .unwrap();
        // The upgrade's check passes; then HQ revokes the token.
        let checked = state
            .hub
            .registry()
            .call(|hub, now| (hub.authenticate(Some("revoked-soon"), now), Vec::new()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(checked, principal);
        state
            .hub
            .registry()
            .call(|hub, now| (hub.revoke_token("revoked-soon", now), Vec::new()))
            .await
            .unwrap()
            .unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        state
            .hub
            .registry()
            .connect(1, principal.clone(), Some("revoked-soon".into()), tx);
        let closed = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await;
        match closed.expect("closed at once, not served") {
            Some(Outbound::Close(why)) => assert!(why.contains("revoked"), "{why}"),
            other => panic!("expected a close, got {other:?}"),
        }
        let (tx, mut rx) = mpsc::channel(8);
        state
            .hub
            .registry()
            .connect(2, principal, Some("still-good".into()), tx);
        let connections = state
            .hub
            .registry()
            .call(|hub, _| (hub.connection_count(), Vec::new()))
            .await
            .unwrap();
        assert_eq!(connections, 1, "only the valid token's connection");
        assert!(rx.try_recv().is_err(), "nothing closes it");
    }

    /// A `call_soon` job runs as soon as the job running now returns,
    /// ahead of the jobs queued before it with `call`; those keep their
    /// order.
    #[tokio::test]
    async fn a_soon_job_goes_ahead_of_the_queue_and_the_queue_keeps_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let state = open(dir.path());
        let order = Arc::new(Mutex::new(Vec::new()));
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let o = order.clone();
        let running = state.hub.registry().call(move |_, _| {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            o.lock().unwrap().push("running");
            ((), Vec::new())
        });
        let mut running = std::pin::pin!(futures_util::future::maybe_done(running));
        let _ = futures_util::poll!(running.as_mut());
        started_rx.recv().unwrap();
        let queued = |name: &'static str| {
            let o = order.clone();
            state.hub.registry().call(move |_, _| {
                o.lock().unwrap().push(name);
                ((), Vec::new())
            })
        };
        let (first, second) = (queued("queued 1"), queued("queued 2"));
        let o = order.clone();
        let soon = state.hub.registry().call_soon(move |_, _| {
            o.lock().unwrap().push("soon");
            ((), Vec::new())
        });
        let (mut first, mut second, mut soon) = (
            std::pin::pin!(futures_util::future::maybe_done(first)),
            std::pin::pin!(futures_util::future::maybe_done(second)),
            std::pin::pin!(futures_util::future::maybe_done(soon)),
        );
        let _ = futures_util::poll!(first.as_mut());
        let _ = futures_util::poll!(second.as_mut());
        let _ = futures_util::poll!(soon.as_mut());
        go_tx.send(()).unwrap();
        tokio::join!(running, first, second, soon);
        assert_eq!(
            *order.lock().unwrap(),
            ["running", "soon", "queued 1", "queued 2"]
        );
    }

    /// What was logged, kept for the test to read.
    #[derive(Clone, Default)]
    struct Logged(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Logged {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A frame for a peer that has gone (its task dropped its queue) is
    /// not "too slow to keep up": only a full queue is. Both are let go.
    #[tokio::test]
    async fn a_peer_that_closed_is_not_logged_as_too_slow() {
        use engine::replica::Output;
        let dir = tempfile::tempdir().unwrap();
        let state = open(dir.path());
        let logged = Logged::default();
        let l = logged.clone();
        let left = state
            .hub
            .registry()
            .call(move |hub, _| {
                let (full, _full_rx) = mpsc::channel(1);
                full.try_send(Outbound::Frame(Vec::new())).unwrap();
                let (gone, gone_rx) = mpsc::channel(1);
                drop(gone_rx);
                let mut conns = std::collections::HashMap::from([(1, full), (2, gone)]);
                let log = tracing_subscriber::fmt()
                    .with_max_level(tracing::Level::DEBUG)
                    .with_ansi(false)
                    .with_writer(move || l.clone())
                    .finish();
                tracing::subscriber::with_default(log, || {
                    let out = [1, 2].map(|conn| Output::Send {
                        conn,
                        frame: vec![0],
                    });
                    super::deliver(hub, &mut conns, out.into());
                });
                (conns.len(), Vec::new())
            })
            .await
            .unwrap();
        assert_eq!(left, 0, "both are let go");
        let text = String::from_utf8(logged.0.lock().unwrap().clone()).unwrap();
        let line = |conn: u64| {
            text.lines()
                .find(|l| l.contains(&format!("conn={conn}")))
                .unwrap_or_default()
                .to_owned()
        };
        assert!(line(1).contains("too slow"), "{text}");
        assert!(
            line(2).contains("already closed") && !line(2).contains("too slow"),
            "{text}"
        );
    }
}
