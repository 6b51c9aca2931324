//! The simulated network: per-connection FIFO links with random delay,
//! cuts noticed late by the hub, chaos duplication and reordering, and the
//! queue of frames and timers in virtual time.

use std::hash::Hash;

use automerge::{ChangeHash, ReadDoc};
use engine::ids::{DocumentId, Principal};
use engine::protocol::wire::{self, WireLimits, WireMessage};
use engine::replica::{ConnId, Output};
use rand::Rng;

use super::{Sim, BACKOFF_CAP_MS, BACKOFF_FIRST_MS, START_MS};

/// The agent's number for its hub connection (its peers' are others).
const HUB_CONN: ConnId = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Dir {
    ToHub,
    ToAgent,
}

#[derive(Debug)]
pub(super) enum Event {
    /// A frame arrives at one end of connection `conn`.
    Frame {
        agent: usize,
        conn: ConnId,
        dir: Dir,
        frame: Vec<u8>,
    },
    /// The sender closed `conn` after its earlier frames.
    Fin {
        agent: usize,
        conn: ConnId,
        dir: Dir,
    },
    /// The hub's socket finally reports that a cut connection is dead.
    HubDetectsCut {
        conn: ConnId,
    },
    /// An agent's reconnect timer.
    Reconnect {
        agent: usize,
    },
    AgentRestart {
        agent: usize,
    },
    HubRestart {
        hub: usize,
    },
    /// A paused (SIGSTOPped) hub node continues.
    HubResume {
        hub: usize,
    },
    /// A frame reaches terminal `to` on LAN connection `conn`.
    LanFrame {
        conn: ConnId,
        to: usize,
        frame: Vec<u8>,
    },
    /// The other end closed LAN connection `conn`, after its frames.
    LanFin {
        conn: ConnId,
        to: usize,
    },
    /// The dialer of LAN link `link` tries again.
    LanRedial {
        link: usize,
    },
}

impl Event {
    pub(super) fn is_frame(&self) -> bool {
        matches!(
            self,
            Event::Frame { .. } | Event::Fin { .. } | Event::LanFrame { .. } | Event::LanFin { .. }
        )
    }
}

/// The per-direction ordering of one connection.
#[derive(Default)]
pub(super) struct LinkClock {
    /// When the last frame each way is due: later frames are due no earlier.
    last_to_hub: i64,
    last_to_agent: i64,
}

impl Sim {
    pub(super) fn try_connect(&mut self, i: usize) {
        let node = &self.agents[i];
        if node.agent.is_none() || node.conn.is_some() {
            return;
        }
        let wan_down = self.wan_down && node.cfg.store_id == self.main_store;
        let target = if node.partitioned || wan_down {
            None
        } else {
            self.hub_for_agent(i)
        };
        let Some(h) = target else {
            self.schedule_reconnect(i);
            return;
        };
        let principal = Principal::Store(node.cfg.store_id.clone());
        let conn = self.next_conn;
        self.next_conn += 1;
        self.trace_note(&("connect", i, conn));
        self.stats.connections += 1;
        self.conn_agent.insert(conn, i);
        self.clocks.insert(conn, LinkClock::default());
        self.conn_hub.insert(conn, h);
        self.hubs[h].conns.insert(conn, i);
        let hub = self.hubs[h].hub.as_mut().expect("checked above");
        hub.connect(conn, principal, self.now_ms);
        let node = &mut self.agents[i];
        node.conn = Some(conn);
        node.backoff_ms = BACKOFF_FIRST_MS;
        let out = node.agent.as_mut().expect("checked above").connected();
        self.route_agent(i, out);
    }

    pub(super) fn schedule_reconnect(&mut self, i: usize) {
        let node = &mut self.agents[i];
        if node.reconnect_pending || node.agent.is_none() || node.conn.is_some() {
            return;
        }
        node.reconnect_pending = true;
        let b = node.backoff_ms;
        node.backoff_ms = (b * 2).min(BACKOFF_CAP_MS);
        let wait = b / 2 + self.rng.gen_range(0..=b / 2);
        self.schedule(wait, Event::Reconnect { agent: i });
    }

    pub(super) fn hub_notices_later(&mut self, conn: ConnId) {
        if self.hub_of_conn(conn).is_some() {
            let after = self.rng.gen_range(0..=self.cfg.hub_detects_cut_ms);
            self.schedule(after, Event::HubDetectsCut { conn });
        }
    }

    pub(super) fn schedule(&mut self, after_ms: i64, event: Event) {
        self.schedule_at(self.now_ms + after_ms, event);
    }

    pub(super) fn schedule_at(&mut self, at_ms: i64, event: Event) {
        self.events.insert((at_ms, self.next_seq), event);
        self.next_seq += 1;
    }

    /// Put a frame on the wire: due after a random delay, never before the
    /// previous frame in its direction (except when chaos reorders it).
    pub(super) fn send(&mut self, agent: usize, conn: ConnId, dir: Dir, frame: Vec<u8>) {
        let clock = self.clocks.entry(conn).or_default();
        let last = match dir {
            Dir::ToHub => clock.last_to_hub,
            Dir::ToAgent => clock.last_to_agent,
        };
        let (due, last, again) = self.plan_delivery(last);
        let clock = self.clocks.entry(conn).or_default();
        match dir {
            Dir::ToHub => clock.last_to_hub = last,
            Dir::ToAgent => clock.last_to_agent = last,
        }
        if let Some(again) = again {
            let copy = Event::Frame {
                agent,
                conn,
                dir,
                frame: frame.clone(),
            };
            self.schedule_at(again, copy);
        }
        self.schedule_at(
            due,
            Event::Frame {
                agent,
                conn,
                dir,
                frame,
            },
        );
    }

    /// When a frame sent now arrives on a link whose previous frame this
    /// way is due at `last`: (due, the link's new `last`, when a chaos
    /// duplicate arrives). Hub links and LAN links share it.
    pub(super) fn plan_delivery(&mut self, last: i64) -> (i64, i64, Option<i64>) {
        let delay = self
            .rng
            .gen_range(self.cfg.latency_ms.0..=self.cfg.latency_ms.1);
        let chaos = if self.cfg.chaos {
            self.rng.gen_range(0..100)
        } else {
            100
        };
        let (due, last) = if chaos < 5 && last > self.now_ms {
            // Overtake the frames still in flight this way.
            self.stats.frames_reordered += 1;
            (
                self.now_ms + self.rng.gen_range(0..=(last - self.now_ms)),
                last,
            )
        } else {
            let due = (self.now_ms + delay).max(last);
            (due, due)
        };
        self.stats.frames_sent += 1;
        let again = (5..10).contains(&chaos).then(|| {
            self.stats.frames_duplicated += 1;
            self.stats.frames_sent += 1;
            due + self.rng.gen_range(0..=self.cfg.latency_ms.1)
        });
        (due, last, again)
    }

    /// Close `conn` from one end: the FIN follows the frames already sent.
    pub(super) fn send_fin(&mut self, agent: usize, conn: ConnId, dir: Dir) {
        let clock = self.clocks.entry(conn).or_default();
        let last = match dir {
            Dir::ToHub => &mut clock.last_to_hub,
            Dir::ToAgent => &mut clock.last_to_agent,
        };
        let due = (*last).max(self.now_ms + 1);
        *last = due;
        self.schedule_at(due, Event::Fin { agent, conn, dir });
    }

    pub(super) fn route_agent(&mut self, i: usize, out: Vec<Output>) {
        // Once the hub connection closes, the rest of the batch's frames
        // to the hub were for it; frames to peers still go.
        let mut hub_closed = false;
        for o in out {
            let conn_out = match &o {
                Output::Send { conn, .. } | Output::Close { conn, .. } => *conn,
                Output::LeaseLost { .. } => unreachable!("only a hub loses leases"),
            };
            if conn_out != HUB_CONN {
                self.route_lan(i, o);
                continue;
            }
            if hub_closed {
                continue;
            }
            let conn = self.agents[i].conn.unwrap_or_else(|| {
                panic!(
                    "seed {}: {} produced {o:?} while not connected",
                    self.seed, self.agents[i].name
                )
            });
            match o {
                Output::Send { frame, .. } => self.send(i, conn, Dir::ToHub, frame),
                Output::LeaseLost { .. } => unreachable!("only a hub loses leases"),
                Output::Close { reason, .. } => {
                    self.note_close(format!("{} closed: {reason}", self.agents[i].name));
                    self.agents[i].conn = None;
                    let moved = self.agents[i].agent.as_mut().and_then(|agent| {
                        agent.disconnected();
                        agent.take_moved()
                    });
                    self.send_fin(i, conn, Dir::ToHub);
                    hub_closed = true;
                    if moved.is_some() {
                        // A hand-off, not a failing hub: at once.
                        self.agents[i].backoff_ms = BACKOFF_FIRST_MS;
                        self.agents[i].reconnect_pending = true;
                        self.schedule(0, Event::Reconnect { agent: i });
                        continue;
                    }
                    self.schedule_reconnect(i);
                }
            }
        }
    }

    pub(super) fn route_hub(&mut self, h: usize, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Send { conn, frame } => {
                    let agent = self.conn_agent[&conn];
                    self.send(agent, conn, Dir::ToAgent, frame);
                }
                Output::Close { conn, reason } => {
                    let agent = self.conn_agent[&conn];
                    self.note_close(format!("hub closed {}: {reason}", self.agents[agent].name));
                    // The hub has already forgotten the connection.
                    self.hubs[h].conns.remove(&conn);
                    self.send_fin(agent, conn, Dir::ToAgent);
                }
                Output::LeaseLost { stores } => self.lost_leases(h, &stores),
            }
        }
    }

    /// The node `conn` reached, while that node still holds it open.
    pub(super) fn hub_of_conn(&self, conn: ConnId) -> Option<usize> {
        let h = *self.conn_hub.get(&conn)?;
        self.hubs[h].conns.contains_key(&conn).then_some(h)
    }

    pub(super) fn note_close(&mut self, reason: String) {
        self.stats.closes += 1;
        self.close_reasons.push(reason);
    }

    /// Process the earliest pending event, advancing the clock to it.
    /// Returns false when nothing is pending.
    pub(super) fn process_next(&mut self) -> bool {
        if let Some((&(due, _), _)) = self.events.first_key_value() {
            self.lease_ticks_until(due);
        }
        let Some(((due, _), event)) = self.events.pop_first() else {
            return false;
        };
        self.now_ms = self.now_ms.max(due);
        if let Some(t) = &self.leases {
            t.set_now(self.now_ms);
        }
        let Some(event) = self.defer_if_paused(event) else {
            return true;
        };
        match event {
            Event::Frame {
                agent,
                conn,
                dir,
                frame,
            } => self.deliver(agent, conn, dir, frame),
            Event::Fin { agent, conn, dir } => {
                if self.cut.contains(&conn) {
                    return true;
                }
                self.trace_note(&("fin", agent, conn, dir));
                match dir {
                    Dir::ToHub => {
                        if let Some(h) = self.hub_of_conn(conn) {
                            self.hubs[h].conns.remove(&conn);
                            self.hubs[h]
                                .hub
                                .as_mut()
                                .expect("holds conns")
                                .disconnect(conn);
                        }
                    }
                    Dir::ToAgent => {
                        if self.agents[agent].conn == Some(conn) {
                            self.agents[agent].conn = None;
                            if let Some(a) = self.agents[agent].agent.as_mut() {
                                a.disconnected();
                            }
                            self.schedule_reconnect(agent);
                        }
                    }
                }
            }
            Event::HubDetectsCut { conn } => {
                if let Some(h) = self.hub_of_conn(conn) {
                    self.hubs[h].conns.remove(&conn);
                    self.trace_note(&("hub detects cut", conn));
                    self.hubs[h]
                        .hub
                        .as_mut()
                        .expect("holds conns")
                        .disconnect(conn);
                }
            }
            Event::Reconnect { agent } => {
                self.agents[agent].reconnect_pending = false;
                self.try_connect(agent);
            }
            Event::AgentRestart { agent } => {
                if self.agents[agent].restart_pending {
                    self.restart_agent(agent);
                }
            }
            Event::HubRestart { hub } => {
                if self.hubs[hub].restart_pending {
                    self.restart_node(hub);
                }
            }
            Event::HubResume { hub } => self.resume_node(hub),
            Event::LanFrame { conn, to, frame } => self.deliver_lan(conn, to, frame),
            Event::LanFin { conn, to } => self.lan_fin(conn, to),
            Event::LanRedial { link } => self.redial(link),
        }
        true
    }

    pub(super) fn deliver(&mut self, agent: usize, conn: ConnId, dir: Dir, frame: Vec<u8>) {
        let live = !self.cut.contains(&conn)
            && match dir {
                Dir::ToHub => self.hub_of_conn(conn).is_some(),
                Dir::ToAgent => {
                    self.agents[agent].conn == Some(conn) && self.agents[agent].agent.is_some()
                }
            };
        if !live {
            self.stats.stale_frames_dropped += 1;
            return;
        }
        self.now_ms.hash(&mut self.trace);
        (agent, conn, dir, &frame).hash(&mut self.trace);
        if self.verbose {
            let what = describe_frame(&frame);
            eprintln!(
                "{:>8} frame {dir:?} agent {agent} conn {conn}: {what}",
                self.now_ms - START_MS
            );
        }
        self.stats.frames_delivered += 1;
        self.stats.bytes_delivered += frame.len() as u64;
        match dir {
            Dir::ToHub => {
                let h = self.hub_of_conn(conn).expect("checked live");
                self.note_missing_deps(h, agent, &frame);
                let cluster = self.leases.is_some();
                let hub = self.hubs[h].hub.as_mut().expect("holds conns");
                let before = hub.counters();
                let out = if cluster {
                    // In a batch, as the hub's runtime takes frames: the
                    // fence applies at its commit.
                    let mut batch = hub.batch();
                    batch.receive(conn, &frame, self.now_ms);
                    batch.commit()
                } else {
                    hub.receive(conn, &frame, self.now_ms)
                };
                if self.verbose {
                    let after = hub.counters();
                    eprintln!(
                        "         hub accepted {} rejected {}, {} outputs",
                        after.changes_accepted - before.changes_accepted,
                        after.changes_rejected - before.changes_rejected,
                        out.len()
                    );
                }
                self.route_hub(h, out);
            }
            Dir::ToAgent => {
                let wall = self.now_ms + self.agents[agent].skew_ms;
                let a = self.agents[agent].agent.as_mut().expect("checked live");
                let out = a.receive(&frame, wall);
                self.route_agent(agent, out);
            }
        }
    }

    /// Record when a frame hands the hub changes whose dependencies it
    /// lacks (a Bloom filter false positive, or chaos reordering): the
    /// hub drops them, which is the engine bug behind
    /// `hub_asks_again_for_a_dependency_the_agent_left_out`.
    pub(super) fn note_missing_deps(&mut self, h: usize, agent: usize, frame: &[u8]) {
        let Ok(WireMessage::Sync {
            document_id, data, ..
        }) = wire::decode(frame, &WireLimits::default())
        else {
            return;
        };
        let store = &self.agents[agent].cfg.store_id;
        let own = document_id == DocumentId::directory_of(store)
            || self
                .published
                .get(store)
                .is_some_and(|p| p.contains(&document_id));
        let Ok(message) = automerge::sync::Message::decode(&data) else {
            return;
        };
        if !own || message.changes.is_empty() {
            return;
        }
        let hub = self.hubs[h].hub.as_mut().expect("delivering to the hub");
        let Ok(doc) = hub.document(document_id) else {
            return;
        };
        let mut scratch = doc.fork();
        for chunk in message.changes.iter() {
            if scratch.load_incremental(chunk).is_err() {
                return;
            }
        }
        if !scratch.get_missing_deps(&[]).is_empty() {
            self.stats.frames_with_missing_deps += 1;
            self.missing_deps.insert((agent, document_id));
        }
    }

    pub(super) fn trace_note(&mut self, what: &(impl Hash + std::fmt::Debug)) {
        self.now_ms.hash(&mut self.trace);
        what.hash(&mut self.trace);
        if self.verbose {
            eprintln!("{:>8} {what:?}", self.now_ms - START_MS);
        }
    }
}

/// One line about a frame for `SIM_TRACE`: its type, document and, for
/// sync messages, what the Automerge message carries.
fn describe_frame(frame: &[u8]) -> String {
    let msg = match wire::decode(frame, &WireLimits::default()) {
        Ok(m) => m,
        Err(e) => return format!("undecodable: {e}"),
    };
    let data = match &msg {
        WireMessage::Sync { data, .. } | WireMessage::Request { data, .. } => {
            automerge::sync::Message::decode(data).ok()
        }
        _ => None,
    };
    let short = |h: &[ChangeHash]| -> Vec<String> {
        h.iter().map(|h| h.to_string()[..8].to_owned()).collect()
    };
    match (msg.document_id(), data) {
        (Some(doc), Some(m)) => {
            let changes: Vec<String> = m
                .changes
                .iter()
                .map(
                    |chunk| match automerge::Change::from_bytes(chunk.to_vec()) {
                        Ok(c) => format!("{}<-{:?}", &c.hash().to_string()[..8], short(c.deps())),
                        Err(_) => format!("<{} bytes>", chunk.len()),
                    },
                )
                .collect();
            format!(
                "{} {} heads {:?} need {:?} have {:?} changes {changes:?}",
                msg.type_name(),
                &doc.0.to_string()[..8],
                short(&m.heads),
                short(&m.need),
                m.have
                    .iter()
                    .map(|h| short(&h.last_sync))
                    .collect::<Vec<_>>(),
            )
        }
        (Some(doc), None) => format!("{} {}", msg.type_name(), &doc.0.to_string()[..8]),
        (None, _) => match msg {
            WireMessage::Error { message, .. } => format!("error: {message}"),
            other => other.type_name().to_owned(),
        },
    }
}
