//! The store's LAN in the simulator (`SimConfig::lan`): every pair of the
//! main store's terminals is joined by a peer connection, as `pos-agent
//! run --peer` makes them, and the store's internet link (the WAN) can go
//! down on its own (`wan_outage`), cutting every terminal from the hub
//! while the LAN stays up.
//!
//! A LAN link is a WebSocket over TCP like a hub link: frames arrive in
//! order after a random delay, chaos duplicates and reorders them, a cut
//! loses what is in flight. Unlike the hub, a terminal notices a cut or
//! a crashed peer at once (a reset on a local network), and the lower
//! numbered terminal of a pair dials again after a backoff. The LAN
//! handshake (`protocol::peer_auth`) is the shell's and is tested in
//! `tests/tests/lan_mesh.rs`; here a link starts past it.
//!
//! A rogue terminal (`rogue_peer_change`): a peer that passed the
//! handshake sends a change the hub would refuse. The receiving terminal
//! must refuse it, so it never travels on to the hub or other terminals.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ReadDoc};
use engine::document::{instance, keys};
use engine::ids::DocumentId;
use engine::model::{Status, StatusEvent};
use engine::protocol::wire::{self, PeerId, PeerMetadata, WireLimits, WireMessage};
use engine::protocol::Session;
use engine::replica::{ConnId, Output};
use rand::Rng;

use super::network::Event;
use super::{read_any, sorted, Sim, BACKOFF_CAP_MS, BACKOFF_FIRST_MS, START_MS};

/// Most events `run_lan_until_quiescent` processes before it calls the run stuck.
const LAN_QUIESCENCE_BUDGET: usize = 200_000;

/// One pair of terminals on the store's LAN; `a` dials `b`.
#[derive(Debug)]
pub(super) struct LanLink {
    a: usize,
    b: usize,
    /// The connection while it is up (the same number at both ends).
    conn: Option<ConnId>,
    redial_pending: bool,
    backoff_ms: i64,
    /// When the last frame each way is due: `a` to `b`, `b` to `a`.
    last_to_b: i64,
    last_to_a: i64,
}

/// The LAN's links and what the simulator knows of them.
#[derive(Debug, Default)]
pub(super) struct Lan {
    links: Vec<LanLink>,
    /// Every LAN connection ever made -> its link.
    conn_link: HashMap<ConnId, usize>,
}

impl Lan {
    /// Every pair of `terminals` (the main store's), when the LAN is on.
    pub(super) fn mesh(terminals: usize) -> Lan {
        let mut links = Vec::new();
        for a in 0..terminals {
            for b in a + 1..terminals {
                links.push(LanLink {
                    a,
                    b,
                    conn: None,
                    redial_pending: false,
                    backoff_ms: BACKOFF_FIRST_MS,
                    last_to_b: 0,
                    last_to_a: 0,
                });
            }
        }
        Lan {
            links,
            conn_link: HashMap::new(),
        }
    }
}

impl Event {
    /// Events that belong to the LAN (or bring a terminal back onto it).
    fn is_lan(&self) -> bool {
        matches!(
            self,
            Event::LanFrame { .. }
                | Event::LanFin { .. }
                | Event::LanRedial { .. }
                | Event::AgentRestart { .. }
        )
    }
}

impl Sim {
    // ---- what a test reads and does ----------------------------------------

    /// LAN links, up or down.
    pub fn lan_link_count(&self) -> usize {
        self.lan.links.len()
    }

    /// LAN links up now.
    pub fn lan_links_up(&self) -> usize {
        self.lan.links.iter().filter(|l| l.conn.is_some()).count()
    }

    /// Whether the store's internet link is down.
    pub fn wan_is_down(&self) -> bool {
        self.wan_down
    }

    /// The store's internet link goes down: every main-store terminal
    /// loses the hub (until `wan_restored`), the LAN stays up.
    pub fn wan_outage(&mut self) {
        if self.wan_down {
            return;
        }
        self.trace_note(&"wan outage");
        self.stats.wan_outages += 1;
        self.wan_down = true;
        for i in self.main_terminals() {
            self.cut(i);
        }
    }

    /// `wan_outage`, and random faults leave it down until a test calls
    /// `wan_restored` (or `run_until_quiescent`).
    pub fn hold_wan_outage(&mut self) {
        self.wan_outage();
        self.wan_held = true;
    }

    /// The store's internet link is back; terminals reconnect at their
    /// next retry.
    pub fn wan_restored(&mut self) {
        self.wan_held = false;
        if !self.wan_down {
            return;
        }
        self.trace_note(&"wan restored");
        self.wan_down = false;
        for i in self.main_terminals() {
            self.schedule_reconnect(i);
        }
    }

    /// The LAN link between `a` and `b` (either order) is cut: what is in
    /// flight is lost, both ends notice now, the dialer dials again later.
    pub fn cut_lan(&mut self, a: usize, b: usize) {
        let Some(l) = self
            .lan
            .links
            .iter()
            .position(|l| (l.a, l.b) == (a.min(b), a.max(b)))
        else {
            return;
        };
        self.cut_link(l);
    }

    /// Restart whatever terminal is down and let the LAN run, the WAN as it
    /// is, until nothing is in flight between terminals and every LAN link
    /// is up. Panics (with the seed) past a fixed budget of events.
    pub fn run_lan_until_quiescent(&mut self) {
        self.events
            .retain(|_, e| !matches!(e, Event::AgentRestart { .. }));
        for i in 0..self.agents.len() {
            self.restart_agent(i);
        }
        for l in 0..self.lan.links.len() {
            if self.lan.links[l].conn.is_none() && !self.lan.links[l].redial_pending {
                self.dial(l);
            }
        }
        for _ in 0..LAN_QUIESCENCE_BUDGET {
            let lan_busy = self.events.values().any(Event::is_lan);
            if !lan_busy {
                let down: Vec<(usize, usize)> = self
                    .lan
                    .links
                    .iter()
                    .filter(|l| l.conn.is_none())
                    .map(|l| (l.a, l.b))
                    .collect();
                assert!(
                    down.is_empty(),
                    "seed {}: the LAN is quiet with links down and no redial pending: {down:?}",
                    self.seed
                );
                return;
            }
            self.process_next();
        }
        panic!(
            "seed {}: the LAN is not quiescent after {LAN_QUIESCENCE_BUDGET} events; stats {:?}",
            self.seed, self.stats
        );
    }

    /// After `run_lan_until_quiescent`: the main store's terminals hold the
    /// same documents with the same heads and read the same, and each
    /// holds every write acknowledged at any of them exactly once, as
    /// recorded. The hub plays no part.
    pub fn check_lan_converged(&self) {
        let seed = self.seed;
        let terminals = self.main_terminals();
        let Some(&first) = terminals.first() else {
            return;
        };
        let agent = |i: usize| {
            self.agents[i]
                .agent
                .as_ref()
                .unwrap_or_else(|| panic!("seed {seed}: {} is up", self.agents[i].name))
        };
        let ids: BTreeSet<DocumentId> = agent(first).document_ids().into_iter().collect();
        for &i in &terminals[1..] {
            let theirs: BTreeSet<DocumentId> = agent(i).document_ids().into_iter().collect();
            assert_eq!(
                theirs, ids,
                "seed {seed}: {} and {} hold different documents",
                self.agents[i].name, self.agents[first].name
            );
        }
        for &doc_id in &ids {
            let doc = agent(first)
                .document(doc_id)
                .unwrap_or_else(|| panic!("seed {seed}: {doc_id} loads"));
            let (heads, view) = (sorted(doc.get_heads()), read_any(doc));
            for &i in &terminals[1..] {
                let theirs = agent(i)
                    .document(doc_id)
                    .unwrap_or_else(|| panic!("seed {seed}: {doc_id} loads"));
                assert_eq!(
                    sorted(theirs.get_heads()),
                    heads,
                    "seed {seed}: {} and {} differ on the heads of {doc_id}",
                    self.agents[i].name,
                    self.agents[first].name
                );
                assert_eq!(
                    read_any(theirs),
                    view,
                    "seed {seed}: {} and {} read {doc_id} differently",
                    self.agents[i].name,
                    self.agents[first].name
                );
            }
        }
        let mut logs: HashMap<(usize, DocumentId), Vec<StatusEvent>> = HashMap::new();
        for ack in self.acked.iter().filter(|a| terminals.contains(&a.agent)) {
            for &i in &terminals {
                let log = logs.entry((i, ack.list)).or_insert_with(|| {
                    let doc = agent(i).document(ack.list).unwrap_or_else(|| {
                        panic!("seed {seed}: {} lacks {}", self.agents[i].name, ack.list)
                    });
                    instance::read_events(doc).expect("an instance").0
                });
                let found: Vec<&StatusEvent> =
                    log.iter().filter(|e| e.id == ack.event.id).collect();
                assert_eq!(
                    found,
                    vec![&ack.event],
                    "seed {seed}: acknowledged event {} (agent {}, list {}) on {}",
                    ack.event.id,
                    ack.agent,
                    ack.list,
                    self.agents[i].name
                );
            }
        }
    }

    /// A terminal that passed the LAN handshake but is rogue (a stolen
    /// token, a tampered build) offers a random main-store terminal a
    /// change the hub refuses from a store, under an actor of its own:
    /// it renames one of HQ's lists, or records an existing event again
    /// with another status. The terminal must refuse it.
    pub fn rogue_peer_change(&mut self) {
        let terminals = self.main_terminals();
        if terminals.is_empty() {
            return;
        }
        let to = terminals[self.rng.gen_range(0..terminals.len())];
        let lists = self.lists();
        if lists.is_empty() {
            return;
        }
        let list = lists[self.rng.gen_range(0..lists.len())];
        let actor = ActorId::from(self.rng.gen::<[u8; 16]>());
        let wall = self.now_ms + self.agents[to].skew_ms;
        let Some(agent) = self.agents[to].agent.as_ref() else {
            return;
        };
        let Some(doc) = agent.document(list) else {
            return;
        };
        let heads = doc.get_heads();
        let mut fork = doc.fork();
        fork.set_actor(actor);
        let events = instance::read_events(doc)
            .map(|(e, _)| e)
            .unwrap_or_default();
        let change = if events.is_empty() || self.rng.gen_bool(0.5) {
            rename(&mut fork)
        } else {
            let event = &events[self.rng.gen_range(0..events.len())];
            duplicate(&mut fork, event)
        };

        let conn = self.next_conn;
        self.next_conn += 1;
        self.trace_note(&("rogue", to, conn));
        let rogue = PeerId::new("rogue-terminal");
        let (mut session, join) = Session::client(
            rogue.clone(),
            PeerMetadata {
                storage_id: None,
                is_ephemeral: false,
            },
        );
        let agent = self.agents[to].agent.as_mut().expect("checked above");
        agent.peer_accepted(conn, wall);
        let out = agent.peer_receive(conn, &wire::encode(&join), wall);
        let (answers, rest) = split_conn(out, conn);
        self.route_agent(to, rest);
        for frame in answers {
            if let Ok(msg @ WireMessage::Peer { .. }) = wire::decode(&frame, &WireLimits::default())
            {
                let _ = session.receive(msg);
            }
        }
        let Some(target) = session.remote().cloned() else {
            return;
        };
        let message = automerge::sync::Message {
            heads,
            need: vec![],
            have: vec![],
            changes: vec![change.raw_bytes().to_vec()].into(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        };
        let frame = wire::encode(&WireMessage::Sync {
            sender_id: rogue,
            target_id: target,
            document_id: list,
            data: message.encode(),
        });
        self.stats.rogue_changes_sent += 1;
        let Some(agent) = self.agents[to].agent.as_mut() else {
            return;
        };
        let out = agent.peer_receive(conn, &frame, wall);
        agent.peer_disconnected(conn);
        let (answers, rest) = split_conn(out, conn);
        let refused = answers.iter().any(|f| {
            matches!(
                wire::decode(f, &WireLimits::default()),
                Ok(WireMessage::Error { .. })
            )
        });
        if refused {
            self.stats.rogue_changes_refused += 1;
        }
        self.route_agent(to, rest);
    }

    // ---- inside the simulator -------------------------------------------

    /// The main store's terminals (the LAN's members).
    pub(super) fn main_terminals(&self) -> Vec<usize> {
        (0..self.agents.len())
            .filter(|&i| self.agents[i].cfg.store_id == self.main_store)
            .collect()
    }

    /// A random LAN fault: cut a link, or the WAN goes down or comes back.
    pub(super) fn random_lan_fault(&mut self) {
        match self.rng.gen_range(0..100) {
            0..70 if !self.lan.links.is_empty() => {
                let l = self.rng.gen_range(0..self.lan.links.len());
                self.cut_link(l);
            }
            _ if self.wan_held => {}
            0..85 => self.wan_outage(),
            _ => self.wan_restored(),
        }
    }

    /// Dial link `l` if both terminals are up; otherwise try again later.
    pub(super) fn dial(&mut self, l: usize) {
        let link = &self.lan.links[l];
        if link.conn.is_some() {
            return;
        }
        let (a, b) = (link.a, link.b);
        if self.agents[a].agent.is_none() || self.agents[b].agent.is_none() {
            if self.agents[a].agent.is_some() {
                self.schedule_redial(l);
            }
            return;
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        self.trace_note(&("lan dial", a, b, conn));
        self.stats.lan_connections += 1;
        self.lan.conn_link.insert(conn, l);
        let link = &mut self.lan.links[l];
        link.conn = Some(conn);
        link.backoff_ms = BACKOFF_FIRST_MS;
        link.last_to_a = 0;
        link.last_to_b = 0;
        let (wall_a, wall_b) = (
            self.now_ms + self.agents[a].skew_ms,
            self.now_ms + self.agents[b].skew_ms,
        );
        self.agents[b]
            .agent
            .as_mut()
            .expect("checked above")
            .peer_accepted(conn, wall_b);
        let out = self.agents[a]
            .agent
            .as_mut()
            .expect("checked above")
            .peer_dialed(conn, wall_a);
        self.route_agent(a, out);
    }

    fn schedule_redial(&mut self, l: usize) {
        let link = &mut self.lan.links[l];
        if link.redial_pending || link.conn.is_some() {
            return;
        }
        link.redial_pending = true;
        let b = link.backoff_ms;
        link.backoff_ms = (b * 2).min(BACKOFF_CAP_MS);
        let wait = b / 2 + self.rng.gen_range(0..=b / 2);
        self.schedule(wait, Event::LanRedial { link: l });
    }

    pub(super) fn redial(&mut self, l: usize) {
        self.lan.links[l].redial_pending = false;
        self.dial(l);
    }

    /// Link `l` goes down: both ends forget the connection now.
    fn cut_link(&mut self, l: usize) {
        let Some(conn) = self.lan.links[l].conn.take() else {
            return;
        };
        self.trace_note(&("lan cut", l, conn));
        self.stats.lan_cuts += 1;
        let (a, b) = (self.lan.links[l].a, self.lan.links[l].b);
        for i in [a, b] {
            if let Some(agent) = self.agents[i].agent.as_mut() {
                agent.peer_disconnected(conn);
            }
        }
        self.schedule_redial(l);
    }

    /// Terminal `i` crashed: its LAN links are gone (its peers see a
    /// reset now).
    pub(super) fn lan_terminal_crashed(&mut self, i: usize) {
        for l in 0..self.lan.links.len() {
            let link = &self.lan.links[l];
            if link.a == i || link.b == i {
                self.cut_link(l);
            }
        }
    }

    /// Terminal `i` is back: dial its links now.
    pub(super) fn lan_terminal_restarted(&mut self, i: usize) {
        for l in 0..self.lan.links.len() {
            let link = &self.lan.links[l];
            if (link.a == i || link.b == i) && link.conn.is_none() {
                self.lan.links[l].backoff_ms = BACKOFF_FIRST_MS;
                self.dial(l);
            }
        }
    }

    /// One of terminal `i`'s outputs on a peer connection.
    pub(super) fn route_lan(&mut self, i: usize, out: Output) {
        let (conn, close) = match &out {
            Output::Send { conn, .. } => (*conn, None),
            Output::Close { conn, reason } => (*conn, Some(reason.clone())),
            Output::LeaseLost { .. } => unreachable!("only a hub loses leases"),
        };
        let Some(&l) = self.lan.conn_link.get(&conn) else {
            // The rogue's connection: answered in `rogue_peer_change`.
            return;
        };
        let link = &self.lan.links[l];
        if link.conn != Some(conn) {
            self.stats.stale_frames_dropped += 1;
            return;
        }
        let to = if link.a == i { link.b } else { link.a };
        if let Some(reason) = close {
            self.note_close(format!(
                "{} closed a LAN link: {reason}",
                self.agents[i].name
            ));
            self.lan.links[l].conn = None;
            let due = self.fin_due(l, to);
            self.schedule_at(due, Event::LanFin { conn, to });
            self.schedule_redial(l);
            return;
        }
        let Output::Send { frame, .. } = out else {
            unreachable!("a send")
        };
        let (due, again) = {
            let last = self.lan_last(l, to);
            let (due, last, again) = self.plan_delivery(last);
            self.set_lan_last(l, to, last);
            (due, again)
        };
        if let Some(again) = again {
            let copy = Event::LanFrame {
                conn,
                to,
                frame: frame.clone(),
            };
            self.schedule_at(again, copy);
        }
        self.schedule_at(due, Event::LanFrame { conn, to, frame });
    }

    fn lan_last(&self, l: usize, to: usize) -> i64 {
        let link = &self.lan.links[l];
        if to == link.b {
            link.last_to_b
        } else {
            link.last_to_a
        }
    }

    fn set_lan_last(&mut self, l: usize, to: usize, last: i64) {
        let link = &mut self.lan.links[l];
        if to == link.b {
            link.last_to_b = last;
        } else {
            link.last_to_a = last;
        }
    }

    /// When a FIN sent now reaches `to`: after the frames in flight.
    fn fin_due(&mut self, l: usize, to: usize) -> i64 {
        let due = self.lan_last(l, to).max(self.now_ms + 1);
        self.set_lan_last(l, to, due);
        due
    }

    /// A frame reaches terminal `to` on LAN connection `conn`, if the
    /// connection is still up and the terminal too.
    pub(super) fn deliver_lan(&mut self, conn: ConnId, to: usize, frame: Vec<u8>) {
        let live = self
            .lan
            .conn_link
            .get(&conn)
            .is_some_and(|&l| self.lan.links[l].conn == Some(conn))
            && self.agents[to].agent.is_some();
        if !live {
            self.stats.stale_frames_dropped += 1;
            return;
        }
        self.now_ms.hash(&mut self.trace);
        ("lan", conn, to, &frame).hash(&mut self.trace);
        if self.verbose {
            eprintln!(
                "{:>8} lan frame to agent {to} conn {conn}: {} bytes",
                self.now_ms - START_MS,
                frame.len()
            );
        }
        self.stats.frames_delivered += 1;
        self.stats.lan_frames_delivered += 1;
        self.stats.bytes_delivered += frame.len() as u64;
        let wall = self.now_ms + self.agents[to].skew_ms;
        let agent = self.agents[to].agent.as_mut().expect("checked live");
        let out = agent.peer_receive(conn, &frame, wall);
        self.route_agent(to, out);
    }

    /// The other end closed LAN connection `conn`: `to` forgets it.
    pub(super) fn lan_fin(&mut self, conn: ConnId, to: usize) {
        if let Some(agent) = self.agents[to].agent.as_mut() {
            agent.peer_disconnected(conn);
        }
    }
}

/// Renames the list in `doc` (an HQ field), as a new change.
fn rename(doc: &mut Automerge) -> automerge::Change {
    let meta = match doc.get(automerge::ROOT, keys::META) {
        Ok(Some((automerge::Value::Object(_), id))) => id,
        _ => panic!("a list has meta"),
    };
    let mut tx = doc.transaction();
    tx.put(&meta, keys::NAME, "Renamed by a rogue terminal")
        .expect("put a name");
    tx.commit();
    doc.get_last_local_change()
        .expect("the change just made")
        .clone()
}

/// `event` appended to `doc` again (its id, another status), as a new
/// change: what a rogue terminal would write by hand, since the engine
/// never reuses an event id.
fn duplicate(doc: &mut Automerge, event: &StatusEvent) -> automerge::Change {
    let events = match doc.get(automerge::ROOT, keys::EVENTS) {
        Ok(Some((automerge::Value::Object(_), id))) => id,
        _ => panic!("a list has events"),
    };
    let status = match event.status {
        Status::Completed => Status::InProgress,
        _ => Status::Completed,
    };
    let mut tx = doc.transaction();
    let len = tx.length(&events);
    let put = |tx: &mut automerge::transaction::Transaction<'_>| -> Result<(), automerge::AutomergeError> {
        let e = tx.insert_object(&events, len, automerge::ObjType::Map)?;
        tx.put(&e, keys::EVENT_ID, event.id.0.to_string())?;
        tx.put(&e, keys::TASK, event.task.0.to_string())?;
        tx.put(&e, keys::STATUS, status.as_str())?;
        tx.put(&e, keys::WORKER, event.worker.as_str())?;
        tx.put(&e, keys::TERMINAL, event.terminal.as_str())?;
        tx.put(&e, keys::AT, event.at)?;
        let prev = tx.put_object(&e, keys::PREV, automerge::ObjType::List)?;
        for (i, p) in event.prev.iter().enumerate() {
            tx.insert(&prev, i, p.0.to_string())?;
        }
        Ok(())
    };
    put(&mut tx).expect("write an event");
    tx.commit();
    doc.get_last_local_change()
        .expect("the change just made")
        .clone()
}

/// Outputs on `conn` (as frames) apart from the rest.
fn split_conn(out: Vec<Output>, conn: ConnId) -> (Vec<Vec<u8>>, Vec<Output>) {
    let mut mine = Vec::new();
    let mut rest = Vec::new();
    for o in out {
        match o {
            Output::Send { conn: c, frame } if c == conn => mine.push(frame),
            Output::Close { conn: c, .. } if c == conn => {}
            other => rest.push(other),
        }
    }
    (mine, rest)
}
