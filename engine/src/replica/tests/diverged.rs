//! A terminal whose actor history diverged from the hub's: the hub holds
//! a change under (actor, sequence number) that the terminal holds with
//! other content. Here the other content comes from a clone of the
//! terminal's file (a restored backup and a token holder writing under
//! the terminal's actor look the same from the hub). Both ways the
//! divergence can show are covered: the hub's change arriving, and the
//! hub refusing the terminal's change as a reused sequence number.

use super::*;
use crate::protocol::wire::{self, WireMessage};
use crate::replica::is_sequence_reused;
use crate::validation::Rejection;

/// Agent `to` becomes a copy of agent `from`'s file (same actor, same
/// history): both processes stopped while the files are copied.
fn clone_agent(net: &mut Net, from: usize, to: usize) {
    net.restart(from, net.now);
    let path = |i: usize, suffix: &str| net._dir.path().join(format!("a{i}.db{suffix}"));
    drop(net.agents.remove(to));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(path(to, suffix));
        if suffix != "-shm" && path(from, suffix).exists() {
            std::fs::copy(path(from, suffix), path(to, suffix)).unwrap();
        }
    }
    net.agents.insert(to, open_agent(&net._dir, to, net.now));
}

/// The ids of the status events in the hub's copy of `doc`, in log order.
fn hub_events(net: &mut Net, doc: DocumentId) -> Vec<EventId> {
    let d = net.hub.document(doc).unwrap();
    crate::document::instance::read_events(d)
        .unwrap()
        .0
        .into_iter()
        .map(|e| e.id)
        .collect()
}

/// Terminal 0 synced one event, then terminal 1 became a clone of it;
/// both offline. `terminals` (at least 2) terminals in all.
fn cloned_net(terminals: usize) -> (Net, DocumentId) {
    let mut net = Net::new(terminals);
    let id = content(3).id;
    net.connect(0);
    net.run();
    let (_, out) = net.agents[0]
        .record_status(id, &upd(1, Status::InProgress, "w1"), NOW)
        .unwrap();
    net.route_agent(0, out);
    net.run();
    net.disconnect(0);
    clone_agent(&mut net, 0, 1);
    assert_eq!(net.agents[0].db().actor_id(), net.agents[1].db().actor_id());
    (net, id)
}

/// `cloned_net`, and the clone recorded under the shared actor and synced
/// while terminal 0 was offline: terminal 0's next offline update reuses
/// the clone's sequence number.
fn diverged_net(terminals: usize) -> (Net, DocumentId) {
    let (mut net, id) = cloned_net(terminals);
    net.connect(1);
    net.run();
    let (_, out) = net.agents[1]
        .record_status(id, &upd(2, Status::Completed, "w2"), NOW + 1_000)
        .unwrap();
    net.route_agent(1, out);
    net.run();
    net.disconnect(1);
    (net, id)
}

fn assert_recovered(net: &mut Net, id: DocumentId, old_actor: &automerge::ActorId) {
    net.assert_same_heads(0, id);
    let status = net.agents[0].sync_status().unwrap();
    assert!(status.rejected.is_empty(), "{:?}", status.rejected);
    assert_eq!(status.actor_changes.len(), 1, "{:?}", status.actor_changes);
    let change = &status.actor_changes[0];
    assert_eq!(change.doc, id);
    assert_eq!(change.old_actor, old_actor.to_hex_string());
    assert_eq!(change.diverged_actor, old_actor.to_hex_string());
    assert_eq!(
        change.new_actor,
        net.agents[0].db().actor_id().to_hex_string()
    );
    assert_ne!(&net.agents[0].db().actor_id(), old_actor);
    assert!(net.agents[0].unconfirmed().is_empty());
    let mut events = hub_events(net, id);
    let n = events.len();
    events.sort();
    events.dedup();
    assert_eq!(events.len(), n, "an event twice at the hub");
}

#[test]
fn the_hubs_change_under_a_reused_sequence_number_makes_the_terminal_take_a_fresh_actor() {
    let (mut net, id) = diverged_net(2);
    let old_actor = net.agents[0].db().actor_id();
    let (offline, _) = net.agents[0]
        .record_status(id, &upd(3, Status::Completed, "w3"), NOW + 2_000)
        .unwrap();
    net.connect(0);
    net.run();
    assert!(net.agents[0].sync_status().unwrap().online);
    assert_recovered(&mut net, id, &old_actor);
    let events = hub_events(&mut net, id);
    for n in [1, 2, 3] {
        assert!(events.contains(&EventId(Uuid::from_u128(n))), "event {n}");
    }
    // Recorded again as it was, only under another actor.
    let view = net.agents[0].list(id).unwrap();
    let again = view.tasks[0]
        .status
        .history
        .iter()
        .find(|e| e.id == offline.id)
        .unwrap();
    assert_eq!(again, &offline);
    let change = &net.agents[0].sync_status().unwrap().actor_changes[0];
    assert_eq!((change.dropped, change.rerecorded), (1, 1));
    assert!(
        change.reason.starts_with("the hub sent change"),
        "{change:?}"
    );

    // It survives a restart, and the terminal records on under the new actor.
    net.restart(0, NOW + 3_000);
    assert_eq!(net.agents[0].sync_status().unwrap().actor_changes.len(), 1);
    let (_, out) = net.agents[0]
        .record_status(id, &upd(4, Status::InProgress, "w1"), NOW + 3_000)
        .unwrap();
    net.connect(0);
    net.route_agent(0, out);
    net.run();
    net.assert_same_heads(0, id);
    assert!(hub_events(&mut net, id).contains(&EventId(Uuid::from_u128(4))));
}

#[test]
fn the_hub_refusing_a_reused_sequence_number_makes_the_terminal_record_it_again() {
    // Both connected and synced; then both record under the shared actor
    // at once, and the clone's change reaches the hub first. The hub's
    // refusal of the terminal's change reaches the terminal, as the hub
    // wrote it, before the clone's change does.
    let (mut net, id, old_actor) = refused_with_text(|r| r.encode());
    assert_recovered(&mut net, id, &old_actor);
    let change = &net.agents[0].sync_status().unwrap().actor_changes[0];
    assert!(
        change.reason.starts_with("the hub refused change"),
        "{change:?}"
    );
    assert_eq!(
        change.rerecorded, 1,
        "the refused change's own event: {change:?}"
    );
    let events = hub_events(&mut net, id);
    for n in [1, 5, 6] {
        assert!(events.contains(&EventId(Uuid::from_u128(n))), "event {n}");
    }
}

#[test]
fn the_sequence_reused_rejection_is_recognized_from_its_text() {
    let r = Rejection::SequenceReused {
        actor: "0a0b".into(),
        seq: 7,
    };
    assert!(is_sequence_reused(&r.to_string()));
    assert!(!is_sequence_reused(
        &Rejection::LogNotAppendOnly.to_string()
    ));
    assert!(!is_sequence_reused("actor 0a already used it"));
}

/// A sync message from the hub that one document cannot take (here it
/// carries two different changes under one (actor, seq) of someone else,
/// which no dropping of the terminal's own changes can fit) leaves that
/// document out of this connection; the connection stays, and the
/// terminal's other documents sync.
#[test]
fn a_sync_message_one_document_cannot_take_leaves_the_others_syncing() {
    let mut net = Net::online(1);
    let id = content(3).id;
    let hub_doc = net.hub.document(id).unwrap().fork();
    let twins: Vec<Vec<u8>> = [1u128, 2]
        .into_iter()
        .map(|n| {
            let mut d = hub_doc.fork();
            d.set_actor(automerge::ActorId::from([0x77; 16]));
            let (_, c) = crate::document::instance::record_status(
                &mut d,
                &upd(10 + n, Status::InProgress, "w1"),
                NOW,
            )
            .unwrap();
            c.raw_bytes().to_vec()
        })
        .collect();
    let mut state = automerge::sync::State::new();
    let mut m = automerge::sync::SyncDoc::generate_sync_message(&hub_doc, &mut state).unwrap();
    m.changes = twins.into();
    let mut copy = net.agents[0].document(id).unwrap().fork();
    assert!(
        automerge::sync::SyncDoc::receive_sync_message(
            &mut copy,
            &mut automerge::sync::State::new(),
            m.clone()
        )
        .is_err(),
        "the message does not apply"
    );
    let frame = wire::encode(&WireMessage::Sync {
        sender_id: PeerId::new("hub"),
        target_id: PeerId::new("agent-0"),
        document_id: id,
        data: m.encode(),
    });
    let out = net.agents[0].receive(&frame, NOW);
    assert!(
        !out.iter().any(|o| matches!(o, Output::Close { .. })),
        "{out:?}"
    );
    assert!(net.agents[0].sync_status().unwrap().online);
    // The directory still syncs on this connection: an entry HQ adds
    // arrives.
    let dir = net.agents[0].directory_id();
    let out = net
        .hub
        .edit(dir, NOW, |d| {
            crate::document::directory::put_entry(
                d,
                v4(9),
                &crate::document::directory::DirectoryEntry {
                    name: "Extra".into(),
                    date: chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
                    template: None,
                    created_by: crate::model::CreatedBy::Hq,
                },
                NOW,
            )
            .map(|c| c.into_iter().collect())
        })
        .unwrap();
    net.route_hub(out);
    net.run();
    net.assert_same_heads(0, dir);
}

/// The clone and the terminal each make a list offline under the shared
/// actor: their directory entries collide. The terminal's entry is put
/// again under its fresh actor, so the hub adopts its list, which syncs.
#[test]
fn a_list_entry_of_the_diverged_history_is_made_again_and_its_list_reaches_the_hub() {
    let (mut net, _) = cloned_net(2);
    let (theirs, ours) = (v4(41), v4(42));
    net.agents[1]
        .create_list(&store_list(theirs), net.now)
        .unwrap();
    net.connect(1);
    net.run();
    net.disconnect(1);
    net.agents[0]
        .create_list(&store_list(ours), net.now)
        .unwrap();
    net.connect(0);
    net.run();
    let dir = net.agents[0].directory_id();
    net.assert_same_heads(0, dir);
    let store = content(1).meta.store;
    for id in [theirs, ours] {
        assert_eq!(
            net.hub.db().doc_owner(id).unwrap(),
            Some((store.clone(), crate::document::DocKind::Instance)),
            "{id}"
        );
    }
    let at_hub = crate::document::instance::read(net.hub.document(ours).unwrap()).unwrap();
    assert_eq!(at_hub.tasks[0].spec.title, "Mop it");
    net.assert_same_heads(0, ours);
    let status = net.agents[0].sync_status().unwrap();
    assert!(status.rejected.is_empty(), "{:?}", status.rejected);
    let change = status
        .actor_changes
        .iter()
        .find(|c| c.doc == dir)
        .expect("the directory's history diverged");
    assert_eq!(
        (change.rerecorded, change.not_rerecorded),
        (1, 0),
        "{change:?}"
    );
    assert!(net.agents[0].unconfirmed().is_empty());
}

/// The hub sends a change built on the diverged one before the diverged
/// change itself (here: the terminal's bloom filter claims the diverged
/// change, as a false positive of the filter does about once in a hundred
/// hashes). The terminal holds that change waiting for its dependency,
/// then the diverged change arrives, and the rebuild drops the waiting
/// one. The hub, which sent it on this connection already, must send it
/// again: the terminal restarts the document's sync and asks the hub to
/// forget what it sent.
#[test]
fn a_change_the_hub_sent_before_the_divergence_showed_arrives_again() {
    // The clone recorded under the shared actor (change X); terminal 2
    // builds on it (change Y).
    let (mut net, id) = diverged_net(3);
    let x = net.hub.document(id).unwrap().get_heads();
    assert_eq!(x.len(), 1);
    net.connect(2);
    net.run();
    let (_, out) = net.agents[2]
        .record_status(id, &upd(3, Status::Completed, "w3"), NOW + 1_500)
        .unwrap();
    net.route_agent(2, out);
    net.run();
    net.disconnect(2);
    let y = net.hub.document(id).unwrap().get_heads();
    assert_ne!(x, y);

    // Terminal 0 reuses X's sequence number offline, then connects. Its
    // first sync message for the list claims, through its bloom filter,
    // to hold X.
    let old_actor = net.agents[0].db().actor_id();
    net.agents[0]
        .record_status(id, &upd(4, Status::Completed, "w1"), NOW + 2_000)
        .unwrap();
    net.connect(0);
    let mut forged = false;
    let mut steps = 0;
    while let Some((to_hub, i, mut frame)) = net.queue.pop_front() {
        steps += 1;
        assert!(steps < 10_000, "sync did not quiesce");
        if to_hub && i == 0 && !forged {
            let msg = wire::decode(&frame, &wire::WireLimits::default()).unwrap();
            if let WireMessage::Sync {
                sender_id,
                target_id,
                document_id,
                data,
            } = msg.clone()
            {
                if document_id == id {
                    let mut m = automerge::sync::Message::decode(&data).unwrap();
                    let have = &mut m.have[0];
                    let doc = net.agents[0].document(id).unwrap();
                    let mut claimed: Vec<automerge::ChangeHash> = doc
                        .get_changes(&have.last_sync)
                        .iter()
                        .map(|c| c.hash())
                        .collect();
                    claimed.extend(x.iter().copied());
                    have.bloom = automerge::sync::BloomFilter::from_hashes(claimed.iter());
                    frame = wire::encode(&WireMessage::Sync {
                        sender_id,
                        target_id,
                        document_id,
                        data: m.encode(),
                    });
                    forged = true;
                }
            }
        }
        if to_hub {
            let out = net.hub.receive(conn_of(i), &frame, net.now);
            net.route_hub(out);
        } else {
            let out = net.agents[i].receive(&frame, net.now);
            net.route_agent(i, out);
        }
    }
    assert!(forged, "terminal 0 sent no sync message for the list");
    assert_recovered(&mut net, id, &old_actor);
    let events: Vec<EventId> = net.agents[0]
        .list(id)
        .unwrap()
        .tasks
        .iter()
        .flat_map(|t| t.status.history.iter().map(|e| e.id))
        .collect();
    for n in [1, 2, 3, 4] {
        assert!(
            events.contains(&EventId(Uuid::from_u128(n))),
            "event {n} missing at the terminal: {events:?}"
        );
    }
}

/// The refusal scenario of
/// `the_hub_refusing_a_reused_sequence_number_makes_the_terminal_record_it_again`,
/// with the hub's `error` text to terminal 0 rewritten by `rewrite` (given
/// the refusal the hub sent). Returns terminal 0's actor from before.
fn refused_with_text(
    rewrite: impl Fn(&crate::replica::Refusal) -> String,
) -> (Net, DocumentId, automerge::ActorId) {
    use crate::replica::{Refusal, Rule};
    let (mut net, id) = cloned_net(2);
    let old_actor = net.agents[0].db().actor_id();
    net.connect(0);
    net.connect(1);
    net.run();
    let (_, out) = net.agents[1]
        .record_status(id, &upd(5, Status::InProgress, "w2"), NOW + 2_000)
        .unwrap();
    net.route_agent(1, out);
    let (_, out) = net.agents[0]
        .record_status(id, &upd(6, Status::Completed, "w3"), NOW + 2_000)
        .unwrap();
    net.route_agent(0, out);
    let mut held = Vec::new();
    let mut rewritten = 0;
    let mut steps = 0;
    while let Some((to_hub, i, mut frame)) = net.queue.pop_front() {
        steps += 1;
        assert!(steps < 10_000, "sync did not quiesce");
        if to_hub {
            let out = net.hub.receive(conn_of(i), &frame, net.now);
            net.route_hub(out);
            continue;
        }
        let mut msg = wire::decode(&frame, &WireLimits::default()).unwrap();
        let mut refusal = false;
        if let WireMessage::Error { message, .. } = &mut msg {
            if let Some(r) = Refusal::decode(message).filter(|r| r.rule == Rule::SequenceReused) {
                refusal = true;
                if i == 0 {
                    *message = rewrite(&r);
                    frame = wire::encode(&msg);
                    rewritten += 1;
                }
            }
        }
        if i == 0 && !refusal && held.len() < 64 && matches!(msg, WireMessage::Sync { .. }) {
            held.push(frame);
            continue;
        }
        let out = net.agents[i].receive(&frame, net.now);
        net.route_agent(i, out);
        if refusal {
            for f in held.drain(..) {
                net.queue.push_back((false, 0, f));
            }
        }
    }
    for f in held {
        let out = net.agents[0].receive(&f, net.now);
        net.route_agent(0, out);
    }
    net.run();
    assert!(rewritten > 0, "the hub refused terminal 0's change");
    (net, id, old_actor)
}

/// The agent decides on the refusal's rule, not on its English: a
/// sequence-reused code with other words recovers under a fresh actor...
#[test]
fn a_sequence_reused_refusal_is_recognized_by_its_rule_not_its_words() {
    let (mut net, id, old_actor) = refused_with_text(|r| {
        format!(
            "rejected change {} in document {}: your history diverged (rule sequence-reused)",
            r.change,
            r.doc.to_bs58check()
        )
    });
    assert_recovered(&mut net, id, &old_actor);
    let events = hub_events(&mut net, id);
    for n in [1, 5, 6] {
        assert!(events.contains(&EventId(Uuid::from_u128(n))), "event {n}");
    }
}

/// ...and the sequence-reused English under another rule's code is a
/// refusal like any other: listed in `sync-status` with that rule.
#[test]
fn the_sequence_reused_words_under_another_rule_are_listed_as_refused() {
    use crate::replica::Rule;
    let (net, _, _) = refused_with_text(|r| {
        format!(
            "rejected change {} in document {}: {} (rule unknown-worker)",
            r.change,
            r.doc.to_bs58check(),
            r.reason
        )
    });
    let status = net.agents[0].sync_status().unwrap();
    assert!(
        status.actor_changes.is_empty(),
        "{:?}",
        status.actor_changes
    );
    assert_eq!(status.rejected.len(), 1, "{:?}", status.rejected);
    assert_eq!(status.rejected[0].rule, Rule::UnknownWorker);
    assert!(is_sequence_reused(&status.rejected[0].reason));
}
