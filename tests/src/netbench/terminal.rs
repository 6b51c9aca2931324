//! A simulated terminal: in-memory Automerge documents and at most one
//! automerge-repo connection, run as one tokio task and driven by
//! commands. Thousands share the generator's runtime (one task each, not
//! a thread). It speaks the wire protocol through the engine's `Session`,
//! as a JS repo would: `request` for a document it lacks, `sync` for one
//! it holds, an answer to every sync message received, sync state kept
//! across reconnects (as a repo with storage keeps it).
//!
//! What the coordinator learns comes back as `Report`s: a goal reached
//! (local heads, and optionally the server's heads, equal the expected
//! ones), a new list received, a connection opened, or a terminal that
//! gave up reconnecting.
//!
//! A dropped connection is not an error: like automerge-repo's WebSocket
//! client, the terminal connects again after a short wait (1 to 5 s with
//! jitter, see `ReconnectPolicy`), joins again and resumes every document
//! from its saved sync state, so what changed while it was offline is sent
//! then. Only a terminal that stays unconnected for `give_up_after` fails.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::sync::SyncDoc;
use automerge::{ActorId, Automerge, ChangeHash};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use engine::document::directory::{self, DirectoryEntry};
use engine::document::instance;
use engine::ids::DocumentId;
use engine::model::{InstanceContent, StatusUpdate};
use engine::protocol::wire::{self, PeerId, PeerMetadata, StorageId, WireLimits, WireMessage};
use engine::protocol::{Session, SessionEvent};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest a WebSocket handshake may take before the attempt counts as
/// failed (a server whose event loop lags may accept and answer late).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// When a terminal whose connection dropped (or never opened) tries again.
#[derive(Debug, Clone, Copy)]
pub struct ReconnectPolicy {
    /// Shortest wait before an attempt.
    pub min_delay: Duration,
    /// Longest wait: the jitter's upper bound doubles from `2 * min_delay`
    /// with each failed attempt up to this (automerge-repo's browser
    /// client retries every 5 s).
    pub max_delay: Duration,
    /// A terminal without an open connection for this long stops trying
    /// and reports `Report::Failed`, which fails the workload.
    pub give_up_after: Duration,
}

impl ReconnectPolicy {
    pub const DEFAULT: ReconnectPolicy = ReconnectPolicy {
        min_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(5),
        give_up_after: Duration::from_secs(300),
    };

    /// The wait before the next attempt, `attempts` having failed so far
    /// in this outage: random, so that a thousand terminals dropped at
    /// once do not all come back in the same millisecond.
    fn delay(&self, attempts: u32) -> Duration {
        let upper = self
            .min_delay
            .saturating_mul(2u32.saturating_pow(attempts.saturating_add(1)))
            .min(self.max_delay)
            .max(self.min_delay);
        let (lo, hi) = (self.min_delay.as_secs_f64(), upper.as_secs_f64());
        if hi <= lo {
            return self.min_delay;
        }
        Duration::from_secs_f64(rand::thread_rng().gen_range(lo..=hi))
    }
}

/// Counters and channels every terminal shares with the coordinator.
pub struct Shared {
    pub reports: mpsc::UnboundedSender<Report>,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub frames_sent: AtomicU64,
    pub frames_received: AtomicU64,
    /// `error` messages received (the hub reports refused changes so).
    pub errors: AtomicU64,
    pub first_error: Mutex<Option<String>>,
    /// Steady state: when each change was made, to time its arrival at the
    /// other terminal.
    pub track_latency: AtomicBool,
    pub sent_at: Mutex<HashMap<ChangeHash, Instant>>,
    pub latencies: Mutex<Vec<Duration>>,
    /// When the last tracked change arrived at another terminal.
    pub last_delivery: Mutex<Option<Instant>>,
    pub reconnect: ReconnectPolicy,
    /// Connections opened again after a drop or a failed attempt.
    pub reconnects: AtomicU64,
    /// Terminals trying to reconnect, with how long and why (for the
    /// message of a wait that runs out of time).
    pub down: Mutex<HashMap<usize, String>>,
}

impl Shared {
    pub fn new(reconnect: ReconnectPolicy) -> (Arc<Shared>, mpsc::UnboundedReceiver<Report>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Shared {
            reports: tx,
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
            frames_received: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            track_latency: AtomicBool::new(false),
            sent_at: Mutex::new(HashMap::new()),
            latencies: Mutex::new(Vec::new()),
            last_delivery: Mutex::new(None),
            reconnect,
            reconnects: AtomicU64::new(0),
            down: Mutex::new(HashMap::new()),
        };
        (Arc::new(shared), rx)
    }

    /// Bytes on the wire (WebSocket payloads, both directions).
    pub fn bytes(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed) + self.bytes_received.load(Ordering::Relaxed)
    }

    fn error(&self, text: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().expect("not poisoned");
        if first.is_none() {
            *first = Some(text);
        }
    }
}

#[derive(Debug)]
pub enum Report {
    /// The first connection after a `Cmd::Connect` is open (reconnects
    /// after a drop are counted in `Shared::reconnects` instead).
    Opened { terminal: usize },
    /// The terminal gave up reconnecting (`ReconnectPolicy::give_up_after`).
    Failed { terminal: usize, reason: String },
    /// A goal set with `Cmd::Goals` was reached.
    Reached {
        terminal: usize,
        doc: DocumentId,
        at: Instant,
    },
    /// The server's heads first equalled a `Goal::Heads` (it has every change).
    ServerHas { doc: DocumentId, at: Instant },
    /// A list the directory announced arrived complete.
    NewList {
        terminal: usize,
        doc: DocumentId,
        at: Instant,
    },
    /// HQ's new list reached the server (baseline publish).
    Published { doc: DocumentId },
}

/// When a document counts as synced.
#[derive(Debug, Clone)]
pub enum Goal {
    /// Local heads are non-empty and equal the server's last heads.
    Synced,
    /// Local heads and the server's heads both equal these (sorted).
    Heads(Vec<ChangeHash>),
}

pub enum Cmd {
    /// Connect, and stay connected (reconnecting after a drop) until
    /// `Disconnect`.
    Connect {
        url: String,
    },
    Disconnect {
        done: oneshot::Sender<()>,
    },
    /// Documents to ask for (at the next connect, or now if connected).
    Want(Vec<DocumentId>),
    Goals(Vec<(DocumentId, Goal)>),
    /// Take these documents as held (a seeder pushing them to a server).
    Hold(Vec<(DocumentId, Automerge)>),
    /// Forget every document (the memory workload's terminals).
    DropAll,
    /// Record a status update; answers with the change's hash.
    Record {
        doc: DocumentId,
        update: StatusUpdate,
        done: Option<oneshot::Sender<Result<ChangeHash, String>>>,
    },
    /// Request lists that appear in this directory and report them when
    /// they hold `tasks` tasks.
    WatchDirectory {
        doc: DocumentId,
        tasks: usize,
    },
    /// HQ (baseline only): push a new list, then, once the server holds
    /// it, enter it in the store's directory.
    Publish {
        content: Box<InstanceContent>,
        directory: DocumentId,
    },
}

pub struct Terminal {
    pub index: usize,
    shared: Arc<Shared>,
    peer: PeerId,
    storage: StorageId,
    actor: ActorId,
    docs: HashMap<DocumentId, Automerge>,
    /// Each document's log summary and the heads it was made at, as the
    /// agent keeps them (`Agent::record_status`): a status update reads
    /// what arrived since, not the whole log.
    summaries: HashMap<DocumentId, (Vec<ChangeHash>, instance::LogSummary)>,
    saved_sync: HashMap<DocumentId, Vec<u8>>,
    want: BTreeSet<DocumentId>,
    goals: HashMap<DocumentId, (Goal, bool)>,
    watched: Option<(DocumentId, usize)>,
    awaiting_list: HashSet<DocumentId>,
    publishing: HashMap<DocumentId, (DocumentId, DirectoryEntry)>,
    session: Option<Session>,
    out: Vec<Vec<u8>>,
    /// Where to stay connected: set by `Connect`, cleared by `Disconnect`
    /// or by giving up.
    url: Option<String>,
    /// Whether a session opened since the last `Connect`.
    opened: bool,
    /// Set from a drop (or failed attempt) until a session opens again.
    outage: Option<Outage>,
}

/// A connection the coordinator wants that is not open.
struct Outage {
    since: Instant,
    /// Connection attempts made in this outage.
    attempts: u32,
    last_error: String,
    /// When to try again; `None` while an attempt's socket is open and
    /// waiting for the server's `peer` message.
    retry_at: Option<tokio::time::Instant>,
}

/// Start a terminal task; commands go in through the returned sender.
pub fn spawn(index: usize, name: String, shared: Arc<Shared>) -> mpsc::UnboundedSender<Cmd> {
    let (tx, rx) = mpsc::unbounded_channel();
    let t = Terminal {
        index,
        shared,
        peer: PeerId::new(format!("{name}-{:08x}", rand::random::<u32>())),
        storage: StorageId::new(format!("storage-{name}")),
        actor: ActorId::random(),
        docs: HashMap::new(),
        summaries: HashMap::new(),
        saved_sync: HashMap::new(),
        want: BTreeSet::new(),
        goals: HashMap::new(),
        watched: None,
        awaiting_list: HashSet::new(),
        publishing: HashMap::new(),
        session: None,
        out: Vec::new(),
        url: None,
        opened: false,
        outage: None,
    };
    tokio::spawn(t.run(rx));
    tx
}

async fn next_frame(ws: &mut Option<Ws>) -> Option<Result<Message, String>> {
    match ws {
        Some(ws) => ws.next().await.map(|r| r.map_err(|e| e.to_string())),
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Terminal {
    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let mut ws: Option<Ws> = None;
        loop {
            let retry_at = self.outage.as_ref().and_then(|o| o.retry_at);
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    None => break,
                    Some(cmd) => self.command(cmd, &mut ws).await,
                },
                frame = next_frame(&mut ws) => match frame {
                    Some(Ok(Message::Binary(b))) => {
                        self.shared.bytes_received.fetch_add(b.len() as u64, Ordering::Relaxed);
                        self.shared.frames_received.fetch_add(1, Ordering::Relaxed);
                        self.frame(&b);
                    }
                    Some(Ok(Message::Close(_))) | None => {
                        self.lost(&mut ws, "the server closed the connection".into());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => self.lost(&mut ws, e),
                },
                () = sleep_until(retry_at) => self.open(&mut ws).await,
            }
            if !self.out.is_empty() {
                if let Some(socket) = ws.as_mut() {
                    if let Err(e) = flush(socket, &mut self.out, &self.shared).await {
                        self.lost(&mut ws, e);
                    }
                }
                self.out.clear();
            }
        }
    }

    /// The connection broke: keep what the session knew, try again later.
    fn lost(&mut self, ws: &mut Option<Ws>, reason: String) {
        if ws.take().is_some() {
            self.save_sync_states();
            self.session = None;
            self.down(reason);
        }
    }

    /// One attempt to open a connection to `url` and join.
    async fn open(&mut self, ws: &mut Option<Ws>) {
        let Some(url) = self.url.clone() else {
            return;
        };
        if let Some(o) = self.outage.as_mut() {
            o.attempts += 1;
            o.retry_at = None;
        }
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(&url));
        match attempt.await {
            Ok(Ok((socket, _))) => {
                let meta = PeerMetadata {
                    storage_id: Some(self.storage.clone()),
                    is_ephemeral: false,
                };
                let (session, join) = Session::client(self.peer.clone(), meta);
                self.session = Some(session);
                self.out.push(wire::encode(&join));
                *ws = Some(socket);
            }
            Ok(Err(e)) => self.down(format!("connecting to {url}: {e}")),
            Err(_) => self.down(format!(
                "connecting to {url}: no answer in {} s",
                CONNECT_TIMEOUT.as_secs()
            )),
        }
    }

    /// No open connection although one is wanted: schedule the next
    /// attempt, or give up once the outage has lasted too long.
    fn down(&mut self, reason: String) {
        let Some(url) = &self.url else {
            return;
        };
        let now = Instant::now();
        let policy = self.shared.reconnect;
        let o = self.outage.get_or_insert(Outage {
            since: now,
            attempts: 0,
            last_error: String::new(),
            retry_at: None,
        });
        o.last_error = reason;
        let mut down = self.shared.down.lock().expect("not poisoned");
        if now - o.since >= policy.give_up_after {
            let reason = format!(
                "gave up reconnecting to {url}: no connection for {:.0} s after {} attempts; last error: {}",
                (now - o.since).as_secs_f64(),
                o.attempts,
                o.last_error
            );
            down.remove(&self.index);
            drop(down);
            self.url = None;
            self.outage = None;
            let _ = self.shared.reports.send(Report::Failed {
                terminal: self.index,
                reason,
            });
            return;
        }
        o.retry_at = Some(tokio::time::Instant::now() + policy.delay(o.attempts));
        down.insert(
            self.index,
            format!(
                "down {:.0} s, {} attempts, last error: {}",
                (now - o.since).as_secs_f64(),
                o.attempts,
                o.last_error
            ),
        );
    }

    /// A session opened: the outage (if any) is over.
    fn up(&mut self) {
        if self.outage.take().is_some() {
            self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
            self.shared
                .down
                .lock()
                .expect("not poisoned")
                .remove(&self.index);
        }
        if !self.opened {
            self.opened = true;
            let _ = self.shared.reports.send(Report::Opened {
                terminal: self.index,
            });
        }
    }

    fn save_sync_states(&mut self) {
        if let Some(s) = &self.session {
            for d in s.documents().collect::<Vec<_>>() {
                if let Some(state) = s.encoded_sync_state(d) {
                    self.saved_sync.insert(d, state);
                }
            }
        }
    }

    async fn command(&mut self, cmd: Cmd, ws: &mut Option<Ws>) {
        match cmd {
            Cmd::Connect { url } => {
                self.url = Some(url);
                self.opened = false;
                self.open(ws).await;
            }
            Cmd::Disconnect { done } => {
                self.url = None;
                if self.outage.take().is_some() {
                    self.shared
                        .down
                        .lock()
                        .expect("not poisoned")
                        .remove(&self.index);
                }
                self.save_sync_states();
                self.session = None;
                if let Some(mut socket) = ws.take() {
                    let _ = socket.close(None).await;
                }
                let _ = done.send(());
            }
            Cmd::Want(docs) => {
                self.want.extend(docs.iter().copied());
                if self.is_open() {
                    for d in docs {
                        self.start_doc(d);
                    }
                }
            }
            Cmd::Goals(goals) => {
                for (d, g) in goals {
                    self.goals.insert(d, (g, false));
                    self.check_goal(d);
                }
            }
            Cmd::Hold(docs) => {
                for (d, mut doc) in docs {
                    doc.set_actor(self.actor.clone());
                    self.summaries.remove(&d);
                    self.docs.insert(d, doc);
                    if self.is_open() {
                        self.start_doc(d);
                    }
                }
            }
            Cmd::DropAll => {
                self.docs.clear();
                self.summaries.clear();
                self.saved_sync.clear();
                self.want.clear();
                self.goals.clear();
            }
            Cmd::Record { doc, update, done } => {
                let r = self.record(doc, &update);
                if let Some(done) = done {
                    let _ = done.send(r);
                }
            }
            Cmd::WatchDirectory { doc, tasks } => {
                self.watched = Some((doc, tasks));
                self.want.insert(doc);
            }
            Cmd::Publish { content, directory } => {
                let changes = match instance::materialize(&content) {
                    Ok(c) => c,
                    Err(e) => return self.shared.error(format!("materializing: {e}")),
                };
                let mut doc = Automerge::new();
                if let Err(e) = doc.apply_changes(changes) {
                    return self.shared.error(format!("materializing: {e}"));
                }
                doc.set_actor(self.actor.clone());
                let entry = DirectoryEntry {
                    name: content.meta.name.clone(),
                    date: content.meta.date,
                    template: content.meta.template,
                    created_by: content.meta.created_by.clone(),
                };
                self.publishing.insert(content.id, (directory, entry));
                self.docs.insert(content.id, doc);
                self.start_doc(content.id);
            }
        }
    }

    fn is_open(&self) -> bool {
        self.session.as_ref().is_some_and(Session::is_open)
    }

    /// First message for a document on this connection.
    fn start_doc(&mut self, d: DocumentId) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if session.has_document(d) {
            return;
        }
        let msg = match self.docs.get(&d) {
            Some(doc) => {
                if let Some(state) = self.saved_sync.get(&d) {
                    session.restore_sync_state(d, state);
                }
                generate(session, d, doc)
            }
            None => session.request(d),
        };
        if let Some(m) = msg {
            self.out.push(wire::encode(&m));
        }
    }

    fn record(&mut self, d: DocumentId, update: &StatusUpdate) -> Result<ChangeHash, String> {
        let doc = self.docs.get_mut(&d).ok_or("no such document")?;
        let now = chrono::Utc::now().timestamp_millis();
        let mut summary = match instance::LogSummary::carried_to(self.summaries.remove(&d), doc) {
            Some(sum) => sum,
            None => instance::LogSummary::of(doc).map_err(|e| e.to_string())?,
        };
        let (_, change) = instance::record_status_with(doc, update, now, Some(&mut summary))
            .map_err(|e| e.to_string())?;
        self.summaries.insert(d, (doc.get_heads(), summary));
        let hash = change.hash();
        if self.shared.track_latency.load(Ordering::Relaxed) {
            self.shared
                .sent_at
                .lock()
                .expect("not poisoned")
                .insert(hash, Instant::now());
        }
        if let Some(session) = self.session.as_mut().filter(|s| s.is_open()) {
            let doc = self.docs.get(&d).expect("checked above");
            if let Some(m) = generate(session, d, doc) {
                self.out.push(wire::encode(&m));
            }
        }
        Ok(hash)
    }

    fn frame(&mut self, bytes: &[u8]) {
        let msg = match wire::decode(bytes, &WireLimits::default()) {
            Ok(m) => m,
            Err(e) => return self.shared.error(format!("undecodable frame: {e}")),
        };
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let event = match session.receive(msg) {
            Ok((event, _)) => event,
            Err(e) => return self.shared.error(format!("protocol error: {e}")),
        };
        match event {
            SessionEvent::Opened { .. } => {
                self.up();
                // Everything held or asked for, again after a reconnect:
                // held documents resume from their saved sync state.
                let mut docs: Vec<DocumentId> = self.docs.keys().copied().collect();
                docs.extend(self.want.iter().copied());
                docs.extend(self.awaiting_list.iter().copied());
                for d in docs {
                    self.start_doc(d);
                }
            }
            SessionEvent::Sync { doc, message, .. } => self.sync(doc, message),
            SessionEvent::Unavailable { doc } => self
                .shared
                .error(format!("the server has no document {doc}")),
            SessionEvent::RemoteError { message } => self.shared.error(message),
            SessionEvent::Leave | SessionEvent::Ignored(_) => {}
        }
    }

    fn sync(&mut self, d: DocumentId, message: automerge::sync::Message) {
        let actor = self.actor.clone();
        let doc = self.docs.entry(d).or_insert_with(|| {
            let mut doc = Automerge::new();
            doc.set_actor(actor);
            doc
        });
        let session = self.session.as_mut().expect("a frame came on a session");
        let track = self.shared.track_latency.load(Ordering::Relaxed);
        let before = track.then(|| doc.get_heads());
        if let Err(e) = session.apply(d, doc, message) {
            return self.shared.error(format!("applying a sync message: {e}"));
        }
        if let Some(before) = before {
            if doc.get_heads() != before {
                let arrived = Instant::now();
                // Metadata only: `get_changes` would encode each change again.
                let new: Vec<ChangeHash> = doc
                    .get_changes_meta(&before)
                    .iter()
                    .map(|c| c.hash)
                    .collect();
                let mut sent = self.shared.sent_at.lock().expect("not poisoned");
                let mut lat = Vec::new();
                for h in new {
                    if let Some(t) = sent.remove(&h) {
                        lat.push(arrived - t);
                    }
                }
                drop(sent);
                if !lat.is_empty() {
                    self.shared
                        .latencies
                        .lock()
                        .expect("not poisoned")
                        .extend(lat);
                    let mut last = self.shared.last_delivery.lock().expect("not poisoned");
                    *last = Some(last.map_or(arrived, |l| l.max(arrived)));
                }
            }
        }
        if let Some(m) = generate(session, d, doc) {
            self.out.push(wire::encode(&m));
        }
        self.check_goal(d);
        if self.watched.is_some_and(|(w, _)| w == d) {
            self.new_lists();
        }
        if self.awaiting_list.contains(&d) {
            self.check_new_list(d);
        }
        if self.publishing.contains_key(&d) {
            self.check_published(d);
        }
    }

    fn check_goal(&mut self, d: DocumentId) {
        let Some((goal, server_seen)) = self.goals.get_mut(&d) else {
            return;
        };
        let Some(doc) = self.docs.get(&d) else {
            return;
        };
        let mut local = doc.get_heads();
        local.sort();
        let mut theirs = self
            .session
            .as_mut()
            .and_then(|s| {
                s.has_document(d)
                    .then(|| s.sync_state(d).their_heads.clone())
            })
            .flatten()
            .unwrap_or_default();
        theirs.sort();
        let reached = match goal {
            Goal::Synced => !local.is_empty() && local == theirs,
            Goal::Heads(want) => {
                if !*server_seen && &theirs == want {
                    *server_seen = true;
                    let _ = self.shared.reports.send(Report::ServerHas {
                        doc: d,
                        at: Instant::now(),
                    });
                }
                &local == want && &theirs == want
            }
        };
        if reached {
            self.goals.remove(&d);
            let _ = self.shared.reports.send(Report::Reached {
                terminal: self.index,
                doc: d,
                at: Instant::now(),
            });
        }
    }

    fn new_lists(&mut self) {
        let Some((dir, _)) = self.watched else { return };
        let Some(doc) = self.docs.get(&dir) else {
            return;
        };
        let view = match directory::read(doc) {
            Ok(v) => v,
            Err(e) => return self.shared.error(format!("reading the directory: {e}")),
        };
        let new: Vec<DocumentId> = view
            .entries
            .keys()
            .filter(|d| !self.docs.contains_key(d) && !self.awaiting_list.contains(d))
            .copied()
            .collect();
        for d in new {
            self.awaiting_list.insert(d);
            self.start_doc(d);
        }
    }

    fn check_new_list(&mut self, d: DocumentId) {
        let Some((_, tasks)) = self.watched else {
            return;
        };
        let Some(doc) = self.docs.get(&d) else { return };
        if instance::read(doc).is_ok_and(|v| v.tasks.len() == tasks) {
            self.awaiting_list.remove(&d);
            let _ = self.shared.reports.send(Report::NewList {
                terminal: self.index,
                doc: d,
                at: Instant::now(),
            });
        }
    }

    /// Baseline publish: once the server's heads equal ours for the new
    /// list, enter it in the directory (the hub's order: list, then entry).
    fn check_published(&mut self, d: DocumentId) {
        let Some(doc) = self.docs.get(&d) else { return };
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let mut local = doc.get_heads();
        local.sort();
        let mut theirs = session
            .sync_state(d)
            .their_heads
            .clone()
            .unwrap_or_default();
        theirs.sort();
        if local != theirs {
            return;
        }
        let (dir, entry) = self.publishing.remove(&d).expect("checked by the caller");
        let _ = self.shared.reports.send(Report::Published { doc: d });
        let Some(dir_doc) = self.docs.get_mut(&dir) else {
            return self
                .shared
                .error(format!("HQ does not hold directory {dir}"));
        };
        let now = chrono::Utc::now().timestamp_millis();
        match directory::put_entry(dir_doc, d, &entry, now) {
            Ok(_) => {
                if let Some(m) = generate(session, dir, dir_doc) {
                    self.out.push(wire::encode(&m));
                }
            }
            Err(e) => self.shared.error(format!("entering the list: {e}")),
        }
    }
}

/// The next sync message for `d`, exactly as Automerge (and so a JS repo)
/// generates it. `Session::generate` also drops repeats that say nothing
/// new, which the hub needs (rejected changes) but a JS peer does not do:
/// a JS server waiting for an answer would wait forever.
fn generate(session: &mut Session, d: DocumentId, doc: &Automerge) -> Option<WireMessage> {
    let remote = session.remote()?.clone();
    let local = session.local().clone();
    let msg = doc.generate_sync_message(session.sync_state(d))?;
    Some(WireMessage::Sync {
        sender_id: local,
        target_id: remote,
        document_id: d,
        data: msg.encode(),
    })
}

async fn flush(socket: &mut Ws, out: &mut Vec<Vec<u8>>, shared: &Shared) -> Result<(), String> {
    for f in out.drain(..) {
        shared
            .bytes_sent
            .fetch_add(f.len() as u64, Ordering::Relaxed);
        shared.frames_sent.fetch_add(1, Ordering::Relaxed);
        socket
            .feed(Message::Binary(f.into()))
            .await
            .map_err(|e| e.to_string())?;
    }
    socket.flush().await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_are_jittered_within_bounds() {
        let p = ReconnectPolicy::DEFAULT;
        for attempts in 0..40 {
            let upper = match attempts {
                0 => Duration::from_secs(2),
                1 => Duration::from_secs(4),
                _ => p.max_delay,
            };
            for _ in 0..50 {
                let d = p.delay(attempts);
                assert!(d >= p.min_delay && d <= upper, "{attempts}: {d:?}");
            }
        }
    }
}
