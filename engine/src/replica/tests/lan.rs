//! Terminals of one store syncing directly (the store LAN), with the hub
//! away and after it returns; and a hostile peer, whose forbidden changes
//! a terminal refuses as the hub would.

use super::*;
use crate::document::{instance, keys, read};
use crate::protocol::wire::{self, PeerMetadata, WireMessage};
use crate::protocol::Session;
use crate::replica::{Refusal, Rule};
use automerge::transaction::Transactable;
use automerge::{Automerge, Change};

/// Peer connections are numbered from here (the hub's is 0).
const LAN_CONN: ConnId = 100;

/// Terminals joined pairwise, frames carried until nothing moves.
struct Lan {
    /// (from agent, from conn, to agent, to conn)
    links: Vec<(usize, ConnId, usize, ConnId)>,
    queue: VecDeque<(usize, ConnId, Vec<u8>)>,
    /// Terminals' frames to the hub, for `settle` to carry.
    to_hub: Vec<(usize, Output)>,
}

impl Lan {
    fn new() -> Lan {
        Lan {
            links: Vec::new(),
            queue: VecDeque::new(),
            to_hub: Vec::new(),
        }
    }

    /// `a` dials `b` (both past the LAN handshake).
    fn link(&mut self, net: &mut Net, a: usize, b: usize) {
        let n = self.links.len() as ConnId;
        let (ca, cb) = (LAN_CONN + 2 * n, LAN_CONN + 2 * n + 1);
        self.links.push((a, ca, b, cb));
        net.agents[b].peer_accepted(cb, net.now);
        let out = net.agents[a].peer_dialed(ca, net.now);
        self.route(a, out);
    }

    fn route(&mut self, from: usize, out: Vec<Output>) {
        for o in out {
            if let Output::Send { conn, frame } = o {
                if conn == 0 {
                    // Carried only by `settle` (the hub is away otherwise).
                    self.to_hub.push((from, Output::Send { conn, frame }));
                    continue;
                }
                let (to, to_conn) = self
                    .links
                    .iter()
                    .find_map(|&(a, ca, b, cb)| {
                        if a == from && ca == conn {
                            Some((b, cb))
                        } else if b == from && cb == conn {
                            Some((a, ca))
                        } else {
                            None
                        }
                    })
                    .expect("a frame on a known link");
                self.queue.push_back((to, to_conn, frame));
            }
        }
    }

    /// Carry frames both ways, between terminals and to and from the hub
    /// for those connected to it, until nothing moves.
    fn settle(&mut self, net: &mut Net) {
        for _ in 0..1_000 {
            for (i, out) in std::mem::take(&mut net.peer_out) {
                self.route(i, out);
            }
            self.run(net);
            for (i, o) in std::mem::take(&mut self.to_hub) {
                net.route_agent(i, vec![o]);
            }
            if net.queue.is_empty() && net.peer_out.is_empty() {
                return;
            }
            net.run();
        }
        panic!("the LAN and the hub did not settle");
    }

    fn run(&mut self, net: &mut Net) {
        let mut steps = 0;
        while let Some((to, conn, frame)) = self.queue.pop_front() {
            steps += 1;
            assert!(steps < 10_000, "LAN sync did not quiesce");
            let out = net.agents[to].peer_receive(conn, &frame, net.now);
            self.route(to, out);
        }
    }
}

#[test]
fn terminals_keep_each_other_current_while_the_hub_is_away_and_it_gets_everything_once() {
    let mut net = Net::online(3);
    let id = content(3).id;
    for i in 0..3 {
        net.disconnect(i);
    }
    // A chain, so terminal 2 hears terminal 0 only through terminal 1.
    let mut lan = Lan::new();
    lan.link(&mut net, 0, 1);
    lan.link(&mut net, 1, 2);
    // Terminal 1 also dials 0, which dialed it: one peer, two connections.
    lan.link(&mut net, 1, 0);
    lan.run(&mut net);
    assert_eq!(net.agents[0].lan_peers(), 1);
    assert_eq!(net.agents[1].lan_peers(), 2);

    let (_, out) = net.agents[0]
        .record_status(id, &upd(1, Status::Completed, "w1"), net.now)
        .unwrap();
    lan.route(0, out);
    // A list made at terminal 2 while the hub is away: its entry and list.
    let made = v4(7);
    let out = net.agents[2]
        .create_list(&store_list(made), net.now)
        .unwrap();
    lan.route(2, out);
    lan.run(&mut net);
    for i in 1..3 {
        assert_eq!(
            net.agents[i].list(id).unwrap().tasks[0].status.current,
            Status::Completed,
            "terminal {i}"
        );
    }
    assert_eq!(
        net.agents[0].list(made).unwrap().tasks[0].spec.title,
        "Mop it"
    );

    // The hub returns: everything reaches it, and nothing twice.
    for i in 0..3 {
        net.connect(i);
    }
    net.run();
    let at_hub = instance::read_events(net.hub.document(id).unwrap())
        .unwrap()
        .0;
    assert_eq!(at_hub.len(), 1, "the event once: {at_hub:?}");
    assert!(net.hub.document(made).is_ok(), "the LAN-made list too");
    assert_eq!(net.hub.counters().changes_rejected, 0);
    for i in 0..3 {
        net.assert_same_heads(i, id);
        net.assert_same_heads(i, made);
        assert!(net.agents[i].sync_status().unwrap().rejected.is_empty());
    }
}

/// A peer that passed the LAN handshake but breaks the rules: a test-made
/// client session on connection `LAN_CONN` of terminal 0.
struct Hostile {
    session: Session,
}

impl Hostile {
    fn join(net: &mut Net) -> Hostile {
        net.agents[0].peer_accepted(LAN_CONN, net.now);
        let (mut session, join) = Session::client(
            wire::PeerId::new("hostile"),
            PeerMetadata {
                storage_id: None,
                is_ephemeral: false,
            },
        );
        let out = net.agents[0].peer_receive(LAN_CONN, &wire::encode(&join), net.now);
        for frame in sent(out) {
            let msg = wire::decode(&frame, &WireLimits::default()).unwrap();
            if matches!(msg, WireMessage::Peer { .. }) {
                session.receive(msg).unwrap();
            }
        }
        assert!(session.is_open());
        Hostile { session }
    }

    /// Send `changes` to `doc`; the error messages terminal 0 answers.
    fn send(&mut self, net: &mut Net, doc: DocumentId, changes: &[Change]) -> Vec<String> {
        let heads = net.agents[0]
            .document(doc)
            .map(|d| d.get_heads())
            .unwrap_or_default();
        let message = automerge::sync::Message {
            heads,
            need: vec![],
            have: vec![],
            changes: changes
                .iter()
                .map(|c| c.raw_bytes().to_vec())
                .collect::<Vec<_>>()
                .into(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        };
        let frame = wire::encode(&WireMessage::Sync {
            sender_id: wire::PeerId::new("hostile"),
            target_id: self.session.remote().unwrap().clone(),
            document_id: doc,
            data: message.encode(),
        });
        let out = net.agents[0].peer_receive(LAN_CONN, &frame, net.now);
        let mut errors = Vec::new();
        for frame in sent(out) {
            let msg = wire::decode(&frame, &WireLimits::default()).unwrap();
            match msg {
                WireMessage::Error { message, .. } => errors.push(message),
                WireMessage::DocUnavailable { .. } => errors.push("unavailable".into()),
                other => {
                    let _ = self.session.receive(other);
                }
            }
        }
        errors
    }
}

fn sent(out: Vec<Output>) -> Vec<Vec<u8>> {
    out.into_iter()
        .filter_map(|o| match o {
            Output::Send { conn, frame } if conn == LAN_CONN => Some(frame),
            _ => None,
        })
        .collect()
}

/// A change to a fork of terminal 0's copy of `doc`, under `actor`.
fn forge(
    net: &Net,
    doc: DocumentId,
    actor: automerge::ActorId,
    f: impl FnOnce(&mut Automerge) -> Change,
) -> Change {
    let mut fork = net.agents[0].document(doc).unwrap().fork();
    fork.set_actor(actor);
    f(&mut fork)
}

#[test]
fn a_peer_cannot_make_a_terminal_take_what_the_hub_would_refuse() {
    let mut net = Net::online(2);
    let id = content(3).id;
    // A real event, to copy and edit.
    let (event, out) = net.agents[1]
        .record_status(id, &upd(1, Status::InProgress, "w1"), net.now)
        .unwrap();
    net.route_agent(1, out);
    net.run();
    net.disconnect(0);
    let mut hostile = Hostile::join(&mut net);
    let heads = net.agents[0].document(id).unwrap().get_heads();
    let stranger = automerge::ActorId::from([0x42; 16]);
    let refused_by = |errors: &[String]| -> Vec<String> {
        errors
            .iter()
            .map(|e| {
                Refusal::decode(e)
                    .map(|r| r.rule.to_string())
                    .unwrap_or_else(|| e.clone())
            })
            .collect()
    };

    // An HQ field: the list's name.
    let hq_field = forge(&net, id, stranger.clone(), |d| {
        let meta = read::obj(d, &automerge::ROOT, keys::META).unwrap();
        let mut tx = d.transaction();
        tx.put(&meta, keys::NAME, "Renamed by a stranger").unwrap();
        tx.commit();
        d.get_last_local_change().unwrap().clone()
    });
    let errors = hostile.send(&mut net, id, &[hq_field]);
    assert_eq!(refused_by(&errors).len(), 1, "{errors:?}");
    assert!(errors[0].contains("authored by HQ"), "{errors:?}");

    // An event under terminal 0's own actor.
    let own = net.agents[0].db().actor_id();
    let forged_actor = forge(&net, id, own, |d| {
        instance::record_status(d, &upd(2, Status::Completed, "w2"), NOW)
            .unwrap()
            .1
    });
    let errors = hostile.send(&mut net, id, &[forged_actor]);
    assert!(
        errors.len() == 1 && errors[0].contains("may only use its author's own actor"),
        "{errors:?}"
    );

    // An existing event, edited (its id again, another status).
    let mut edited = event.clone();
    edited.status = Status::Completed;
    let duplicate = forge(&net, id, stranger.clone(), |d| {
        instance::append_event_by_transaction(d, &edited, NOW).unwrap()
    });
    let errors = hostile.send(&mut net, id, &[duplicate]);
    assert!(
        errors.len() == 1 && errors[0].contains("already in the log"),
        "{errors:?}"
    );

    // Another store's document looks missing.
    let elsewhere = DocumentId::directory_of(&"store-999".parse().unwrap());
    let errors = hostile.send(&mut net, elsewhere, &[]);
    assert_eq!(errors, vec!["unavailable".to_string()]);

    assert_eq!(
        net.agents[0].document(id).unwrap().get_heads(),
        heads,
        "nothing was applied"
    );
    let view = net.agents[0].list(id).unwrap();
    assert_eq!(view.meta.name, content(3).meta.name);
    assert_eq!(view.tasks[0].status.current, Status::InProgress);
    assert!(net.agents[0].document(elsewhere).is_none());
    // Nothing was stored either: a restart shows the same.
    net.restart(0, net.now);
    assert_eq!(net.agents[0].document(id).unwrap().get_heads(), heads);

    // A flood past the message rate closes the connection.
    let mut net = Net::online(1);
    net.agents[0].set_lan_limits(crate::replica::agent::LanLimits {
        messages_per_second: 1,
        message_burst: 3,
        ..Default::default()
    });
    let hostile = Hostile::join(&mut net);
    let mut closed = None;
    for _ in 0..5 {
        let frame = wire::encode(&hostile.session.error("noise"));
        let out = net.agents[0].peer_receive(LAN_CONN, &frame, net.now);
        closed = closed.or(out.into_iter().find_map(|o| match o {
            Output::Close { reason, .. } => Some(reason),
            _ => None,
        }));
    }
    assert!(
        closed
            .as_deref()
            .is_some_and(|r| r.contains("message rate")),
        "{closed:?}"
    );
    assert_eq!(net.agents[0].lan_peers(), 0);
}

#[test]
fn hqs_lists_and_roster_come_only_from_the_hub_not_through_a_peer() {
    let mut net = Net::new(2);
    let id = content(3).id;
    net.connect(0);
    net.run();
    assert!(net.agents[0].document(id).is_some());
    let mut lan = Lan::new();
    lan.link(&mut net, 0, 1);
    lan.run(&mut net);
    assert_eq!(net.agents[1].lan_peers(), 1);
    assert!(
        net.agents[1].document(id).is_none(),
        "HQ's list is not taken from a peer"
    );
    assert!(
        net.agents[1]
            .roster_worker(&"w1".parse().unwrap())
            .is_none(),
        "nor HQ's roster"
    );
    net.connect(1);
    net.run();
    lan.run(&mut net);
    assert_eq!(net.agents[1].list(id).unwrap().tasks.len(), 3);
    net.assert_same_heads(1, id);
}

/// The events of list `id` at the hub, as (event id, worker), sorted.
fn events_at_hub(net: &mut Net, id: DocumentId) -> Vec<(u128, String)> {
    let mut e: Vec<(u128, String)> = instance::read_events(net.hub.document(id).unwrap())
        .unwrap()
        .0
        .iter()
        .map(|e| (e.id.0.as_u128(), e.worker.to_string()))
        .collect();
    e.sort();
    e
}

#[test]
fn a_change_the_hub_refuses_after_it_crossed_the_lan_is_dropped_on_every_terminal_and_each_records_its_own_work_again(
) {
    let mut net = Net::online(3);
    let id = content(3).id;
    // Terminals 0 and 1 lose the hub; terminal 2 keeps it and records
    // event 9, which the other two do not see.
    net.disconnect(0);
    net.disconnect(1);
    let (_, out) = net.agents[2]
        .record_status(id, &upd(9, Status::Completed, "w1"), net.now)
        .unwrap();
    net.route_agent(2, out);
    net.run();
    let mut lan = Lan::new();
    lan.link(&mut net, 0, 1);
    lan.run(&mut net);

    // Over the LAN: terminal 0 records an event under the same id 9 (the
    // hub will refuse it as a duplicate), terminal 1 builds event 10 on
    // it and terminal 0 event 11 on that.
    let (_, out) = net.agents[0]
        .record_status(id, &upd(9, Status::InProgress, "w2"), net.now)
        .unwrap();
    lan.route(0, out);
    lan.run(&mut net);
    let (_, out) = net.agents[1]
        .record_status(id, &upd(10, Status::Completed, "w3"), net.now)
        .unwrap();
    lan.route(1, out);
    lan.run(&mut net);
    let (_, out) = net.agents[0]
        .record_status(id, &upd(11, Status::Reopened, "w2"), net.now)
        .unwrap();
    lan.route(0, out);
    lan.run(&mut net);
    let refused = net.agents[0]
        .document(id)
        .unwrap()
        .get_changes(&[])
        .into_iter()
        .find(|c| c.actor_id() == &net.agents[0].db().actor_id() && c.seq() == 1)
        .unwrap()
        .hash();
    for i in 0..2 {
        assert!(net.agents[i]
            .document(id)
            .unwrap()
            .get_change_meta_by_hash(&refused)
            .is_some());
    }

    // Terminal 0 gets the hub back: the hub refuses its event 9 and what
    // was built on it. Terminal 0 drops all of it, records its own event
    // 11 again, and reports the refusal to terminal 1.
    net.connect(0);
    lan.settle(&mut net);
    let s0 = net.agents[0].sync_status().unwrap();
    assert!(
        s0.rejected
            .iter()
            .any(|r| r.hash == refused.to_string() && r.rule == Rule::DuplicateEventId),
        "{:?}",
        s0.rejected
    );
    let d0 = net.agents[0].document(id).unwrap();
    assert!(
        d0.get_change_meta_by_hash(&refused).is_none(),
        "not taken back from the peer"
    );
    // Terminal 1 cannot check the report: it shows it and keeps its work
    // until its own hub connection confirms.
    let s1 = net.agents[1].sync_status().unwrap();
    assert!(s1.rejected.is_empty());
    // The refused change and the two built on it, as the hub named them.
    assert_eq!(s1.reported_by_peers.len(), 3, "{:?}", s1.reported_by_peers);
    assert!(s1
        .reported_by_peers
        .iter()
        .any(|r| r.hash == refused.to_string() && r.rule == Rule::DuplicateEventId));
    assert!(net.agents[1]
        .document(id)
        .unwrap()
        .get_change_meta_by_hash(&refused)
        .is_some());
    assert_eq!(
        events_at_hub(&mut net, id),
        vec![(9, "w1".into()), (11, "w2".into())],
        "terminal 0's own event 11 again; event 10 is terminal 1's to record again"
    );

    // Terminal 1 gets the hub back: the hub refuses the same change there,
    // terminal 1 drops it and records its own event 10 again.
    net.connect(1);
    lan.settle(&mut net);
    let s1 = net.agents[1].sync_status().unwrap();
    assert!(s1.reported_by_peers.is_empty());
    assert!(s1
        .rejected
        .iter()
        .any(|r| r.hash == refused.to_string() && r.rule == Rule::DuplicateEventId));
    // Every event once at the hub, and every terminal where the hub is.
    assert_eq!(
        events_at_hub(&mut net, id),
        vec![(9, "w1".into()), (10, "w3".into()), (11, "w2".into())]
    );
    for i in 0..3 {
        net.assert_same_heads(i, id);
        assert!(net.agents[i]
            .document(id)
            .unwrap()
            .get_change_meta_by_hash(&refused)
            .is_none());
    }
}

#[test]
fn a_forged_report_of_a_hub_refusal_is_shown_but_drops_nothing() {
    let mut net = Net::online(1);
    let id = content(3).id;
    net.disconnect(0);
    let (_, out) = net.agents[0]
        .record_status(id, &upd(1, Status::Completed, "w1"), net.now)
        .unwrap();
    drop(out);
    let mine = net.agents[0]
        .document(id)
        .unwrap()
        .get_changes(&[])
        .into_iter()
        .find(|c| c.actor_id() == &net.agents[0].db().actor_id())
        .unwrap()
        .hash();
    let peer = Hostile::join(&mut net);
    let report = format!(
        "{}{}",
        crate::replica::agent::HUB_REFUSAL_REPORT,
        Refusal::new(
            id,
            mine,
            &crate::validation::Rejection::DuplicateEventId { id: "x".into() }
        )
        .encode()
    );
    let frame = wire::encode(&peer.session.error(report));
    let out = net.agents[0].peer_receive(LAN_CONN, &frame, net.now);
    assert!(sent(out).is_empty());
    let s = net.agents[0].sync_status().unwrap();
    assert_eq!(s.reported_by_peers.len(), 1);
    assert!(s.rejected.is_empty());
    assert_eq!(
        net.agents[0].list(id).unwrap().tasks[0].status.current,
        Status::Completed,
        "nothing dropped"
    );
    // The hub takes the change: the report was wrong and is no longer shown.
    net.connect(0);
    net.run();
    let s = net.agents[0].sync_status().unwrap();
    assert!(s.reported_by_peers.is_empty() && s.rejected.is_empty());
    assert_eq!(events_at_hub(&mut net, id), vec![(1, "w1".into())]);
}
