//! The hub as one node of a cluster: a store it no longer serves is
//! closed with the `moved` reason, which the terminal understands.

use super::*;
use std::collections::BTreeSet;

use crate::replica::Moved;

/// A connection of another store than the agents', with no agent behind
/// it: only what the hub sends it is looked at.
const OTHER: ConnId = 100;

fn add_other_store(net: &mut Net) -> StoreId {
    let other: StoreId = "store-other".parse().unwrap();
    net.hub
        .add_store(&StoreRecord {
            id: other.clone(),
            name: "Other".into(),
            time_zone: "Europe/Berlin".into(),
        })
        .unwrap();
    net.hub
        .connect(OTHER, Principal::Store(other.clone()), net.now);
    other
}

fn closes(out: &[Output]) -> Vec<(ConnId, String)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Close { conn, reason } => Some((*conn, reason.clone())),
            Output::Send { .. } => None,
        })
        .collect()
}

#[test]
fn a_moved_store_is_closed_with_the_address_and_the_agent_keeps_it() {
    let mut net = Net::online(2);
    add_other_store(&mut net);
    let store = content(1).meta.store;
    let to = "ws://hub-b:7400/sync";

    let out = net.hub.close_store_moved(&store, Some(to));

    let closed = closes(&out);
    assert_eq!(
        closed.iter().map(|(c, _)| *c).collect::<BTreeSet<_>>(),
        BTreeSet::from([conn_of(0), conn_of(1)]),
        "both terminals of the store, not the other store's connection"
    );
    for (_, reason) in &closed {
        assert_eq!(
            Moved::decode(reason),
            Some(Moved {
                to: Some(to.into())
            })
        );
    }
    assert_eq!(net.hub.connection_count(), 1, "the other store stays");

    // The error message reaches the terminal before the close: it leaves
    // and keeps where to go, for the connection's owner to ask once.
    for (i, agent) in net.agents.iter_mut().enumerate() {
        let frames: Vec<&Vec<u8>> = out
            .iter()
            .filter_map(|o| match o {
                Output::Send { conn, frame } if *conn == conn_of(i) => Some(frame),
                _ => None,
            })
            .collect();
        assert_eq!(frames.len(), 1, "one error message");
        let reply = agent.receive(frames[0], net.now);
        assert!(
            reply.iter().any(
                |o| matches!(o, Output::Close { reason, .. } if Moved::decode(reason).is_some())
            ),
            "{reply:?}"
        );
        agent.disconnected();
        assert_eq!(
            agent.take_moved(),
            Some(Moved {
                to: Some(to.into())
            })
        );
        assert_eq!(agent.take_moved(), None, "asked once");
    }
}

#[test]
fn a_move_without_an_address_and_a_reconnect_forget_the_last_move() {
    let mut net = Net::online(1);
    let store = content(1).meta.store;
    let out = net.hub.close_store_moved(&store, None);
    net.route_hub(out);
    net.run();
    net.agents[0].disconnected();
    assert_eq!(net.agents[0].take_moved(), Some(Moved { to: None }));

    // A move heard on one connection does not outlive the next one.
    let out = net.hub.close_store_moved(&store, Some("wss://hub-c/sync"));
    assert!(out.is_empty(), "nothing connected");
    net.connect(0);
    net.run();
    net.disconnect(0);
    assert_eq!(net.agents[0].take_moved(), None);
}
