//! The store's LAN mesh at a terminal: sync with the store's other
//! terminals directly, over the same automerge-repo protocol as with the
//! hub, whether or not the hub is reachable.
//!
//! A peer is trusted no further than the hub trusts the store: every change
//! it sends goes through `validation::validate` as the store's, exactly as
//! the hub runs it for this store, before it is stored or applied; and a
//! change under this terminal's own actor that it does not hold is forged.
//! What the terminal cannot vouch for is refused too: HQ's content and
//! edits come only from the hub (a peer relaying them is refused, and the
//! hub sends them itself). The hub's limits hold per peer connection:
//! frame size (`WireLimits`), message rate, documents, changes waiting for
//! their dependencies. Authentication (the peer is a terminal of this
//! store) happens before any of this, in the shell
//! (`protocol::peer_auth`).
//!
//! A late refusal (the hub refuses a change that travelled over the LAN):
//! the terminal that hears it from the hub drops the change and what was
//! built on it, and reports the refusal to its peers. A report is a claim
//! no peer can check (the hub signs nothing), so a peer only shows it and
//! passes it on; it drops the change when its own hub connection refuses
//! it, which happens at its next sync since the change is unconfirmed
//! there. A change the hub refused, or one built on it, is never taken
//! from a peer again.

use super::*;
use crate::ids::Principal;
use crate::protocol::WireError;
use crate::replica::hub::{changes_in, missing_dependencies};
use crate::replica::rate::TokenBucket;
use crate::validation::{self, Rejection, ValidationContext, Verdict};

/// Most changes one peer connection may leave waiting for dependencies
/// (the hub's limit).
const MAX_WAITING_CHANGES: usize = 10_000;

/// Most refusals reported by peers kept to show: a peer cannot grow
/// a terminal's memory by reporting refusals.
const MAX_REPORTED: usize = 1_000;

/// The start of an `error` text by which a terminal reports the hub's
/// refusal to its peers (the refusal's own text follows). Distinct from a
/// peer refusing a change itself, which sends the refusal text alone.
pub const HUB_REFUSAL_REPORT: &str = "the hub refused, as a peer terminal reports: ";

/// The limits on a terminal's peer connections: the hub's, by default.
#[derive(Debug, Clone)]
pub struct LanLimits {
    /// Sustained messages per second per connection, and the burst allowed.
    pub messages_per_second: u32,
    pub message_burst: u32,
    /// Distinct documents one connection may sync.
    pub max_documents_per_connection: usize,
    /// How far (ms) a peer's event may be dated after this terminal's clock.
    pub event_time_tolerance_ms: i64,
}

impl Default for LanLimits {
    fn default() -> Self {
        let hub = crate::replica::hub::HubLimits::default();
        LanLimits {
            messages_per_second: hub.messages_per_second,
            message_burst: hub.message_burst,
            max_documents_per_connection: hub.max_documents_per_connection,
            event_time_tolerance_ms: hub.event_time_tolerance_ms,
        }
    }
}

/// One peer terminal's connection: its protocol state and its limits.
pub(super) struct Peer {
    session: Session,
    bucket: TokenBucket,
    /// Changes whose dependencies have not arrived, per document.
    waiting: HashMap<DocumentId, Vec<Change>>,
}

/// What the validation of one peer message decided, owned, so the
/// document's borrow ends before anything is stored.
struct Judged {
    accepted: Vec<Change>,
    state: Option<Automerge>,
    refused: Vec<Refusal>,
    waiting: Vec<Change>,
}

impl Agent {
    /// Replace the limits on peer connections (the hub's by default).
    pub fn set_lan_limits(&mut self, limits: LanLimits) {
        self.lan_limits = limits;
    }

    /// Peer terminals synced with now (past the handshake): two that dial
    /// each other are one terminal on two connections.
    pub fn lan_peers(&self) -> usize {
        self.peers
            .values()
            .filter_map(|p| p.session.remote())
            .collect::<HashSet<_>>()
            .len()
    }

    /// A connection this terminal opened to a peer terminal passed the
    /// LAN handshake: say hello, as to the hub. `conn` is the shell's
    /// number for it, never the hub's (0).
    pub fn peer_dialed(&mut self, conn: ConnId, now_ms: i64) -> Vec<Output> {
        debug_assert_ne!(conn, CONN, "connection 0 is the hub's");
        let (session, join) = Session::client(self.cfg.peer_id.clone(), self.peer_meta());
        self.peers.insert(conn, self.new_peer(session, now_ms));
        vec![Output::Send {
            conn,
            frame: wire::encode(&join),
        }]
    }

    /// A peer terminal that connected to this one passed the LAN
    /// handshake: wait for its `join`.
    pub fn peer_accepted(&mut self, conn: ConnId, now_ms: i64) {
        debug_assert_ne!(conn, CONN, "connection 0 is the hub's");
        let session = Session::server(self.cfg.peer_id.clone(), self.peer_meta());
        let peer = self.new_peer(session, now_ms);
        self.peers.insert(conn, peer);
    }

    /// A peer connection is gone.
    pub fn peer_disconnected(&mut self, conn: ConnId) {
        self.peers.remove(&conn);
    }

    fn peer_meta(&self) -> PeerMetadata {
        PeerMetadata {
            storage_id: Some(self.cfg.storage_id.clone()),
            is_ephemeral: false,
        }
    }

    fn new_peer(&self, session: Session, now_ms: i64) -> Peer {
        Peer {
            session,
            bucket: TokenBucket::new(
                self.lan_limits.messages_per_second,
                self.lan_limits.message_burst,
                now_ms,
            ),
            waiting: HashMap::new(),
        }
    }

    /// One frame from a peer terminal.
    pub fn peer_receive(&mut self, conn: ConnId, frame: &[u8], now_ms: i64) -> Vec<Output> {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return Vec::new();
        };
        if !peer.bucket.take(now_ms) {
            let rate = self.lan_limits.messages_per_second;
            return self.peer_fatal(
                conn,
                format!("message rate over {rate} per second; slow down and reconnect"),
            );
        }
        let msg = match wire::decode(frame, &self.cfg.wire) {
            Ok(m) => m,
            Err(WireError::UnknownType { msg_type }) => {
                debug!(conn, %msg_type, "ignoring an unknown message type from a peer");
                return Vec::new();
            }
            Err(e) => return self.peer_fatal(conn, format!("bad message: {e}")),
        };
        let (event, reply) = match peer.session.receive(msg) {
            Ok(r) => r,
            Err(e) => return self.peer_fatal(conn, e.to_string()),
        };
        let mut out: Vec<Output> = reply
            .map(|m| Output::Send {
                conn,
                frame: wire::encode(&m),
            })
            .into_iter()
            .collect();
        match event {
            SessionEvent::Opened { peer, .. } => {
                info!(conn, %peer, "syncing with a peer terminal");
                out.extend(self.peer_start(conn));
            }
            SessionEvent::Sync { doc, message, .. } => {
                out.extend(self.peer_sync(conn, doc, message, now_ms));
            }
            SessionEvent::Unavailable { doc } => {
                debug!(conn, %doc, "a peer terminal does not hold this document")
            }
            // A peer's word changes nothing here: only the hub's
            // refusals drop changes (see `rebase_after_rejection`).
            SessionEvent::RemoteError { message } => {
                match message
                    .strip_prefix(HUB_REFUSAL_REPORT)
                    .and_then(Refusal::decode)
                {
                    Some(refusal) => out.extend(self.peer_reported(conn, refusal, now_ms)),
                    None => info!(conn, %message, "a peer terminal refused something we sent"),
                }
            }
            SessionEvent::Leave => {
                self.peers.remove(&conn);
                out.push(Output::Close {
                    conn,
                    reason: "peer left".into(),
                });
            }
            SessionEvent::Ignored(_) => {}
        }
        out
    }

    /// Report the hub's refusal to every open peer but `skip`.
    pub(super) fn report_to_peers(&self, refusal: &Refusal, skip: Option<ConnId>) -> Vec<Output> {
        let text = format!("{HUB_REFUSAL_REPORT}{}", refusal.encode());
        self.peers
            .iter()
            .filter(|(conn, peer)| Some(**conn) != skip && peer.session.is_open())
            .map(|(conn, peer)| Output::Send {
                conn: *conn,
                frame: wire::encode(&peer.session.error(text.clone())),
            })
            .collect()
    }

    /// A peer reports that the hub refused a change. Unchecked: if this
    /// terminal holds the change and has not heard it from the hub, it is
    /// shown as reported and passed on to the other peers (a terminal
    /// that hears only through this one learns too), and nothing is
    /// dropped: the change is unconfirmed here, so this terminal's next
    /// sync offers it to the hub, whose own refusal drops it. A forged
    /// report costs a line on the screen until the hub confirms the list.
    fn peer_reported(&mut self, conn: ConnId, refusal: Refusal, now_ms: i64) -> Vec<Output> {
        let held = self
            .doc(refusal.doc)
            .is_some_and(|d| d.get_change_meta_by_hash(&refusal.change).is_some());
        if !held
            || self.hub_refused.contains_key(&refusal.change)
            || self.reported_by_peers.contains_key(&refusal.change)
            || self.reported_by_peers.len() >= MAX_REPORTED
        {
            return Vec::new();
        }
        warn!(conn, doc = %refusal.doc, hash = %refusal.change, reason = %refusal.reason, rule = %refusal.rule, "a peer terminal reports that the hub refused a change held here");
        let out = self.report_to_peers(&refusal, Some(conn));
        self.reported_by_peers
            .insert(refusal.change, (refusal, now_ms));
        out
    }

    /// Tell the peer why, and close its connection.
    fn peer_fatal(&mut self, conn: ConnId, reason: String) -> Vec<Output> {
        warn!(conn, %reason, "closing a peer terminal's connection");
        let mut out = Vec::new();
        if let Some(peer) = self.peers.remove(&conn) {
            out.push(Output::Send {
                conn,
                frame: wire::encode(&peer.session.error(reason.clone())),
            });
        }
        out.push(Output::Close { conn, reason });
        out
    }

    /// After the handshake: offer every loaded document, directory first
    /// (it names the others), and ask for listed ones this terminal lacks.
    fn peer_start(&mut self, conn: ConnId) -> Vec<Output> {
        self.quarantine_unreadable();
        let dir = self.directory_id();
        let mut ids: Vec<DocumentId> = self
            .loaded()
            .map(|(id, _)| id)
            .filter(|id| *id != dir)
            .collect();
        ids.sort();
        ids.insert(0, dir);
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.push_to(conn, id));
        }
        out.extend(self.peer_request_missing(conn));
        out
    }

    /// The next sync message for `doc_id` to one peer.
    fn push_to(&mut self, conn: ConnId, doc_id: DocumentId) -> Option<Output> {
        let doc = self.docs.get(&doc_id).and_then(OnceCell::get)?;
        let peer = self.peers.get_mut(&conn)?;
        let m = peer.session.generate(doc_id, doc)?;
        Some(Output::Send {
            conn,
            frame: wire::encode(&m),
        })
    }

    /// Lists made at a terminal that the directory names and this one
    /// lacks: ask the peer (HQ's lists come from the hub).
    fn peer_request_missing(&mut self, conn: ConnId) -> Vec<Output> {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return Vec::new();
        };
        let mut missing: Vec<DocumentId> = self
            .dates
            .keys()
            .filter(|id| {
                id.0.get_version_num() == 4
                    && !self.docs.contains_key(id)
                    && !peer.session.has_document(**id)
            })
            .copied()
            .collect();
        missing.sort();
        missing
            .into_iter()
            .filter_map(|id| peer.session.request(id))
            .map(|m| Output::Send {
                conn,
                frame: wire::encode(&m),
            })
            .collect()
    }

    /// Every open peer's next message for `doc_id`, but `skip`'s.
    pub(super) fn push_to_peers(
        &mut self,
        doc_id: DocumentId,
        skip: Option<ConnId>,
    ) -> Vec<Output> {
        let Some(doc) = self.docs.get(&doc_id).and_then(OnceCell::get) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (conn, peer) in self.peers.iter_mut() {
            if Some(*conn) == skip || !peer.session.is_open() {
                continue;
            }
            if let Some(m) = peer.session.generate(doc_id, doc) {
                out.push(Output::Send {
                    conn: *conn,
                    frame: wire::encode(&m),
                });
            }
        }
        out
    }

    /// Peers forget what they knew of `doc_id` (it was rebuilt or deleted
    /// here), so the next exchange starts over.
    pub(super) fn peers_forget(&mut self, doc_id: DocumentId) {
        for peer in self.peers.values_mut() {
            peer.session.drop_document(doc_id);
            peer.waiting.remove(&doc_id);
        }
    }

    /// This terminal's actors: the current one and those it gave up.
    pub(super) fn own_actors(&self) -> HashSet<automerge::ActorId> {
        let mut mine: HashSet<automerge::ActorId> = read_actor_changes(&self.db)
            .unwrap_or_default()
            .iter()
            .filter_map(|c| hex_actor(&c.old_actor))
            .collect();
        mine.extend(
            read_given_up(&self.db)
                .unwrap_or_default()
                .iter()
                .filter_map(|h| hex_actor(h)),
        );
        mine.insert(self.db.actor_id());
        mine
    }

    /// One sync message for `doc_id` from a peer: admit the document (one
    /// of this store's: the directory, a held list or one the directory
    /// names; anything else looks missing, as at the hub), take the peer's
    /// heads and needs, validate its changes as the hub would, store the
    /// accepted ones, apply them, then reply and pass them on to the hub
    /// and the other peers.
    fn peer_sync(
        &mut self,
        conn: ConnId,
        doc_id: DocumentId,
        mut message: automerge::sync::Message,
        now_ms: i64,
    ) -> Vec<Output> {
        let dir = self.directory_id();
        // A list not held yet comes from a peer only if the directory
        // names it and it is a list a terminal made (a random id, as the
        // hub adopts): HQ's lists come from the hub (see `judge`).
        let ours = doc_id == dir
            || self.docs.contains_key(&doc_id)
            || (self.dates.contains_key(&doc_id) && doc_id.0.get_version_num() == 4);
        let Some(peer) = self.peers.get_mut(&conn) else {
            return Vec::new();
        };
        if !ours {
            return peer
                .session
                .unavailable(doc_id)
                .map(|m| Output::Send {
                    conn,
                    frame: wire::encode(&m),
                })
                .into_iter()
                .collect();
        }
        let max = self.lan_limits.max_documents_per_connection;
        if !peer.session.has_document(doc_id) && peer.session.document_count() >= max {
            return self.peer_fatal(conn, format!("more than {max} documents on one connection"));
        }
        let held = self.doc(doc_id).is_some();
        self.quarantine_unreadable();
        let held = held && self.docs.contains_key(&doc_id);
        let roster: HashSet<WorkerId> = self
            .docs
            .get(&dir)
            .and_then(OnceCell::get)
            .map(|d| directory::roster_ids(d).into_iter().collect())
            .unwrap_or_default();
        let mine = self.own_actors();
        let store = self.cfg.store_id.clone();
        let kind = if doc_id == dir {
            DocKind::Directory
        } else {
            DocKind::Instance
        };
        let tolerance = self.lan_limits.event_time_tolerance_ms;

        let mut fresh = Automerge::new();
        let Some(peer) = self.peers.get_mut(&conn) else {
            return Vec::new();
        };
        let doc: &mut Automerge = match self.docs.get_mut(&doc_id).and_then(OnceCell::get_mut) {
            Some(d) if held => d,
            _ => &mut fresh,
        };
        let mut incoming = match changes_in(doc, &message) {
            Ok(changes) => changes,
            Err(e) => {
                return self.peer_fatal(conn, format!("undecodable changes for {doc_id}: {e}"))
            }
        };
        incoming.extend(peer.waiting.remove(&doc_id).unwrap_or_default());
        // Heads and needs first, changes only once validated (as the hub).
        message.changes = Vec::<Vec<u8>>::new().into();
        if let Err(e) = peer.session.apply(doc_id, doc, message) {
            return self.peer_fatal(conn, format!("bad sync message for {doc_id}: {e}"));
        }
        let judged = (!incoming.is_empty()).then(|| {
            judge(
                doc,
                &incoming,
                &self.hub_refused,
                &mine,
                &store,
                kind,
                doc_id,
                now_ms + tolerance,
                &roster,
            )
        });

        let mut out = Vec::new();
        let mut accepted_any = false;
        if let Some(j) = judged {
            let total: usize = peer.waiting.values().map(Vec::len).sum();
            if total + j.waiting.len() > MAX_WAITING_CHANGES {
                return self.peer_fatal(
                    conn,
                    format!(
                        "more than {MAX_WAITING_CHANGES} changes waiting for their dependencies"
                    ),
                );
            }
            if !j.waiting.is_empty() {
                peer.waiting.insert(doc_id, j.waiting);
            }
            for refusal in &j.refused {
                let hash = refusal.change;
                warn!(conn, doc = %doc_id, %hash, reason = %refusal.reason, rule = %refusal.rule, "refused a peer terminal's change");
                out.push(Output::Send {
                    conn,
                    frame: wire::encode(&peer.session.error(refusal.encode())),
                });
            }
            if !j.accepted.is_empty() {
                match self.store_from_peer(doc_id, held, j.accepted, j.state, now_ms) {
                    Ok(()) => accepted_any = true,
                    Err(e) => {
                        return self.peer_fatal(conn, format!("could not store changes: {e}"))
                    }
                }
            }
        }

        // The reply, asking for what held-back changes need.
        let mut fresh = Automerge::new();
        if let Some(peer) = self.peers.get_mut(&conn) {
            let doc: &Automerge = match self.docs.get(&doc_id).and_then(OnceCell::get) {
                Some(d) => d,
                None => &mut fresh,
            };
            let waiting = peer.waiting.get(&doc_id).map(Vec::as_slice).unwrap_or(&[]);
            let need = missing_dependencies(doc, waiting);
            if let Some(m) = peer.session.generate_with_need(doc_id, doc, &need) {
                out.push(Output::Send {
                    conn,
                    frame: wire::encode(&m),
                });
            }
        }
        if accepted_any {
            // On to the hub (if connected) and the other peers.
            if let Some(session) = self.session.as_mut() {
                if let Some(m) = self
                    .docs
                    .get(&doc_id)
                    .and_then(OnceCell::get)
                    .and_then(|d| session.generate(doc_id, d))
                {
                    out.push(Self::send(m));
                }
            }
            out.extend(self.push_to_peers(doc_id, Some(conn)));
            if doc_id == dir {
                out.extend(self.request_missing());
                let conns: Vec<ConnId> = self.peers.keys().copied().collect();
                for c in conns {
                    out.extend(self.peer_request_missing(c));
                }
            }
        }
        out.extend(self.sync_new_loads());
        out
    }

    /// Store a peer's accepted changes, then make them visible: the same
    /// order as the hub's changes (persist, then apply). The document is
    /// marked as holding changes the hub has not confirmed, so it loads
    /// and syncs at the next connect even after a restart.
    fn store_from_peer(
        &mut self,
        doc_id: DocumentId,
        held: bool,
        accepted: Vec<Change>,
        state: Option<Automerge>,
        now_ms: i64,
    ) -> Result<(), AgentError> {
        self.mark_unconfirmed(doc_id)?;
        self.db.append_changes(doc_id, &accepted)?;
        let mut doc = match state {
            Some(s) => s,
            None => {
                let mut d = match self.docs.get(&doc_id).and_then(OnceCell::get) {
                    Some(d) if held => d.fork(),
                    _ => Automerge::new(),
                };
                d.apply_changes(accepted).map_err(ModelError::from)?;
                d
            }
        };
        doc.set_actor(self.db.actor_id());
        self.docs.insert(doc_id, Slot::from(doc));
        if doc_id == self.directory_id() {
            self.refresh_dates();
        } else if !held && self.is_recent(doc_id, now_ms) {
            self.working.insert(doc_id);
        }
        debug!(doc = %doc_id, "stored a peer terminal's changes");
        Ok(())
    }
}

/// Judge a peer's changes to `doc`: the hub's validation for the store,
/// after refusing changes the hub refused (and what was built on them:
/// the hub's reason again, or `DependsOnRejected`) and changes under this
/// terminal's own actors that it does not hold (a peer forging this
/// terminal's history).
#[allow(clippy::too_many_arguments)]
fn judge(
    doc: &Automerge,
    incoming: &[Change],
    hub_refused: &HashMap<automerge::ChangeHash, Refusal>,
    own_actors: &HashSet<automerge::ActorId>,
    store: &StoreId,
    kind: DocKind,
    doc_id: DocumentId,
    max_event_time: i64,
    roster: &HashSet<WorkerId>,
) -> Judged {
    let mut refused = Vec::new();
    let mut rest = Vec::new();
    let mut forged_hashes = HashSet::new();
    for c in incoming {
        let forged =
            own_actors.contains(c.actor_id()) && doc.get_change_meta_by_hash(&c.hash()).is_none();
        if let Some(r) = hub_refused.get(&c.hash()) {
            refused.push(Refusal {
                doc: doc_id,
                ..r.clone()
            });
        } else if forged {
            forged_hashes.insert(c.hash());
            let r = Rejection::ForeignActor {
                actor: c.actor_id().to_hex_string(),
                owner: "the terminal that received it".into(),
            };
            refused.push(Refusal::new(doc_id, c.hash(), &r));
        } else {
            rest.push(c.clone());
        }
    }
    // Forged changes' descendants wait for a dependency that never comes;
    // drop them with the rest of what the peer left waiting.
    rest.retain(|c| !c.deps().iter().any(|d| forged_hashes.contains(d)));
    // What was built on a change the hub refused is refused with it, as
    // the hub would (in whatever order the peer sent it).
    let mut bad: HashSet<automerge::ChangeHash> = refused.iter().map(|r| r.change).collect();
    loop {
        let before = rest.len();
        rest.retain(|c| {
            let Some(dep) = c
                .deps()
                .iter()
                .find(|d| bad.contains(*d) || hub_refused.contains_key(*d))
            else {
                return true;
            };
            let r = Rejection::DependsOnRejected(dep.to_string());
            refused.push(Refusal::new(doc_id, c.hash(), &r));
            bad.insert(c.hash());
            false
        });
        if rest.len() == before {
            break;
        }
    }
    // This terminal cannot vouch for HQ's content (the hub's record of
    // what it materialized) nor name HQ's actors: both come only from the
    // hub, so a peer relaying them is refused and the hub sends them.
    let known = HashSet::new();
    let no_owner = |_: &automerge::ActorId| None;
    let worker_known = |w: &WorkerId| roster.contains(w);
    let ctx = ValidationContext {
        doc_id,
        kind,
        owner: store,
        actor_owner: &no_owner,
        known_content: &known,
        max_event_time,
        worker_known: &worker_known,
    };
    let outcome = validation::validate(doc, &rest, &Principal::Store(store.clone()), &ctx);
    let mut waiting = Vec::new();
    for c in &rest {
        match outcome.verdict(&c.hash()) {
            Some(Verdict::Rejected(r)) => refused.push(Refusal::new(doc_id, c.hash(), r)),
            Some(Verdict::MissingDeps) => waiting.push(c.clone()),
            _ => {}
        }
    }
    Judged {
        accepted: outcome.accepted,
        state: outcome.state,
        refused,
        waiting,
    }
}
