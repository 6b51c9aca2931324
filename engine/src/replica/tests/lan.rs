//! Terminals of one store syncing directly (the store LAN), with the hub
//! away and after it returns; and a hostile peer, whose forbidden changes
//! a terminal refuses as the hub would.

use super::*;
use crate::document::{instance, keys, read};
use crate::protocol::wire::{self, PeerMetadata, WireMessage};
use crate::protocol::Session;
use crate::replica::Refusal;
use automerge::transaction::Transactable;
use automerge::{Automerge, Change};

/// Peer connections are numbered from here (the hub's is 0).
const LAN_CONN: ConnId = 100;

/// Terminals joined pairwise, frames carried until nothing moves.
struct Lan {
    /// (from agent, from conn, to agent, to conn)
    links: Vec<(usize, ConnId, usize, ConnId)>,
    queue: VecDeque<(usize, ConnId, Vec<u8>)>,
}

impl Lan {
    fn new() -> Lan {
        Lan {
            links: Vec::new(),
            queue: VecDeque::new(),
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
                    continue; // the hub is away in these tests
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
