//! The hub as one node of a cluster: a store it no longer serves is
//! closed with the `moved` reason, which the terminal understands.

use super::*;
use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::replica::hub::LOADED_BATCH;
use crate::replica::Moved;
use crate::storage::StorageError;

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
            Output::Send { .. } | Output::LeaseLost { .. } => None,
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

/// The hub's SQLite database behind a lease fence that refuses the next
/// commit on demand, as a cluster backend's does when another node took
/// a store: the whole batch is rolled back and the commit returns
/// `LeaseLost`.
struct RefusingFence {
    db: SqliteDatabase,
    /// Non-empty: the next commit is refused for these stores.
    refuse: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

crate::delegate_storage_roles!(RefusingFence => db);

impl crate::storage::StoreWrites for RefusingFence {}

impl UnitOfWork for RefusingFence {
    fn begin_batch(&mut self) -> Result<(), StorageError> {
        if self.db.in_batch() {
            return Ok(());
        }
        self.db.begin_batch()?;
        // A savepoint around the whole batch, so a refused commit can
        // undo it through the trait alone.
        self.db.begin_operation()
    }

    fn commit_batch(&mut self) -> Result<(), StorageError> {
        if !self.db.in_batch() {
            return Ok(());
        }
        let refused = std::mem::take(&mut *self.refuse.lock().unwrap());
        if refused.is_empty() {
            self.db.end_operation()?;
            return self.db.commit_batch();
        }
        self.db.rollback_operation()?;
        self.db.commit_batch()?;
        Err(StorageError::LeaseLost {
            location: self.db.location(),
            stores: refused,
        })
    }

    fn in_batch(&self) -> bool {
        self.db.in_batch()
    }

    fn begin_operation(&mut self) -> Result<(), StorageError> {
        self.db.begin_operation()
    }

    fn end_operation(&mut self) -> Result<(), StorageError> {
        self.db.end_operation()
    }

    fn rollback_operation(&mut self) -> Result<(), StorageError> {
        self.db.rollback_operation()
    }
}

#[test]
fn a_batch_refused_for_a_lost_lease_is_neither_acknowledged_nor_fanned_out() {
    let refuse = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let fence = refuse.clone();
    let mut net = Net::over(2, move |db| RefusingFence { db, refuse: fence });
    for i in 0..2 {
        net.connect(i);
    }
    net.run();
    add_other_store(&mut net);
    let store = content(1).meta.store;
    let id = content(3).id;
    let path = std::path::PathBuf::from(net.hub.db().location());
    let on_disk = || {
        SqliteDatabase::open_reader(&path)
            .unwrap()
            .load_document(id)
            .unwrap()
            .unwrap()
            .get_heads()
    };
    let before = on_disk();

    // Terminal 0 records an update; its frames reach the hub in a batch
    // whose commit the fence refuses for the store.
    let (_, out) = net.agents[0]
        .record_status(id, &upd(1, Status::Completed, "w1"), NOW)
        .unwrap();
    let frames: Vec<Vec<u8>> = out
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { frame, .. } => Some(frame),
            _ => None,
        })
        .collect();
    assert!(!frames.is_empty());
    *refuse.lock().unwrap() = vec![store.to_string()];
    let mut batch = net.hub.batch();
    for f in &frames {
        batch.receive(conn_of(0), f, NOW);
    }
    let out = batch.commit();

    // The shell is told which stores to stop serving.
    assert!(
        out.contains(&Output::LeaseLost {
            stores: vec![store.clone()]
        }),
        "{out:?}"
    );
    // Nothing but the closing error messages goes out: no reply to
    // terminal 0, no fan-out to terminal 1.
    for o in &out {
        if let Output::Send { frame, .. } = o {
            let msg = crate::protocol::wire::decode(frame, &WireLimits::default()).unwrap();
            assert!(
                matches!(msg, crate::protocol::wire::WireMessage::Error { .. }),
                "{msg:?}"
            );
        }
    }
    // The store's terminals are told it moved; the other store's
    // connection (its writes were in the same rolled-back transaction) is
    // closed as after any failed commit, without naming the lost store.
    let closed: HashMap<ConnId, String> = closes(&out).into_iter().collect();
    assert_eq!(closed.len(), 3, "{closed:?}");
    for i in 0..2 {
        assert_eq!(
            Moved::decode(&closed[&conn_of(i)]),
            Some(Moved { to: None }),
            "{}",
            closed[&conn_of(i)]
        );
    }
    assert_eq!(Moved::decode(&closed[&OTHER]), None);
    assert!(
        !closed[&OTHER].contains(store.as_str()),
        "{}",
        closed[&OTHER]
    );
    assert!(closed[&OTHER].contains("hub could not store changes"));
    assert_eq!(net.hub.connection_count(), 0);

    // Nothing of the batch was saved, and the hub forgot what it held in
    // memory of it.
    assert_eq!(on_disk(), before);
    assert_eq!(net.hub.document(id).unwrap().get_heads(), before);

    // When the store is served again (here: the lease comes back), the
    // terminal's next connection stores the update after all.
    net.queue.clear();
    for i in 0..2 {
        net.agents[i].disconnected();
        assert_eq!(net.agents[i].take_moved(), None, "no frame reached it");
    }
    net.connect(0);
    net.run();
    assert_ne!(on_disk(), before);
    net.assert_same_heads(0, id);
}

/// Sync `agent` with `hub` on `conn` (connected at both ends) until
/// neither has anything to say.
fn sync_pair(hub: &mut Hub, agent: &mut Agent, conn: ConnId, now: i64) {
    let mut to_hub: VecDeque<Vec<u8>> = VecDeque::new();
    let mut to_agent: VecDeque<Vec<u8>> = VecDeque::new();
    let sends = |out: Vec<Output>, q: &mut VecDeque<Vec<u8>>| {
        for o in out {
            if let Output::Send { frame, .. } = o {
                q.push_back(frame);
            }
        }
    };
    sends(agent.connected(), &mut to_hub);
    for _ in 0..10_000 {
        if let Some(f) = to_hub.pop_front() {
            sends(hub.receive(conn, &f, now), &mut to_agent);
        } else if let Some(f) = to_agent.pop_front() {
            sends(agent.receive(&f, now), &mut to_hub);
        } else {
            return;
        }
    }
    panic!("sync did not quiesce");
}

#[test]
fn a_store_that_comes_back_is_read_again() {
    // Node A (the net's hub) serves both terminals of the store, then
    // hands the store to node B, a second hub over the same database. It
    // forgets the store's documents, then reads one again (as an HQ read
    // might) and keeps that copy.
    let mut net = Net::online(2);
    let store = content(1).meta.store;
    let id = content(3).id;
    let path = std::path::PathBuf::from(net.hub.db().location());
    assert!(net.hub.cached_document_count() > 0);

    let out = net.hub.close_store_moved(&store, Some("ws://hub-b/sync"));
    assert_eq!(closes(&out).len(), 2);
    assert_eq!(net.hub.connection_count(), 0);
    assert_eq!(
        net.hub.cached_document_count(),
        0,
        "the store's documents are forgotten when it leaves"
    );
    net.hub.document(id).unwrap();
    net.queue.clear();
    for a in &mut net.agents {
        a.disconnected();
    }

    let cfg = HubConfig {
        peer_id: PeerId::new("hub-b"),
        storage_id: StorageId::new("hub-storage"),
        limits: HubLimits::default(),
    };
    let mut b = Hub::open(SqliteDatabase::open(&path, [0xBB; 16]).unwrap(), cfg).unwrap();
    b.store_arrived(&store).unwrap();
    // Terminal 0 records work at B.
    b.connect(conn_of(0), Principal::Store(store.clone()), net.now);
    net.agents[0]
        .record_status(id, &upd(7, Status::Completed, "w2"), NOW)
        .unwrap();
    sync_pair(&mut b, &mut net.agents[0], conn_of(0), net.now);
    let at_b = b.document(id).unwrap().get_heads();
    assert_eq!(
        at_b,
        net.agents[0].document(id).unwrap().get_heads(),
        "B stored it"
    );
    // B hands the store back.
    let _ = b.close_store_moved(&store, None);
    net.agents[0].disconnected();

    // A serves it again: terminal 1, which never saw the work, gets it
    // from A, which reads the documents again rather than its old copy.
    assert!(
        net.hub.cached_document_count() > 0,
        "A still holds its copy"
    );
    net.hub.store_arrived(&store).unwrap();
    net.connect(1);
    net.run();
    assert_eq!(net.hub.document(id).unwrap().get_heads(), at_b);
    assert_eq!(net.agents[1].document(id).unwrap().get_heads(), at_b);
}

#[test]
fn a_lost_stores_lists_are_left_for_its_new_owner_to_index() {
    let refuse = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let fence = refuse.clone();
    let mut net = Net::over(1, move |db| RefusingFence { db, refuse: fence });
    net.connect(0);
    net.run();
    let store = content(1).meta.store;
    let id = content(3).id;
    // A loaded batch leaves the list's status index due.
    let (_, out) = net.agents[0]
        .record_status(id, &upd(3, Status::Completed, "w1"), NOW)
        .unwrap();
    let mut batch = net.hub.batch();
    for o in out {
        if let Output::Send { frame, .. } = o {
            for _ in 0..LOADED_BATCH {
                batch.receive(conn_of(0), &frame, NOW);
            }
        }
    }
    let _ = batch.commit();
    assert!(net.hub.index_backlog() > 0, "the list is due");

    // The next batch (any store's) is refused for this store's lease.
    *refuse.lock().unwrap() = vec![store.to_string()];
    let batch = net.hub.batch();
    let out = batch.commit();
    assert!(out.contains(&Output::LeaseLost {
        stores: vec![store.clone()]
    }));
    // This node does not index the lost store's list any more (it would
    // write for a store it does not hold); the mark stays in storage for
    // the new owner, which picks it up when it serves the store.
    assert_eq!(net.hub.index_backlog(), 0);
    assert_eq!(net.hub.catch_up_index(), 0);
    assert!(net.hub.db().index_due().unwrap().contains(&id));
    net.hub.store_arrived(&store).unwrap();
    assert_eq!(net.hub.index_backlog(), 1);
}

#[test]
fn a_node_refused_for_a_stores_lease_stops_indexing_its_lists() {
    let refuse = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let fence = refuse.clone();
    let mut net = Net::over(1, move |db| RefusingFence { db, refuse: fence });
    net.connect(0);
    net.run();
    let store = content(1).meta.store;
    let id = content(3).id;
    let (_, out) = net.agents[0]
        .record_status(id, &upd(4, Status::Completed, "w1"), NOW)
        .unwrap();
    let mut batch = net.hub.batch();
    for o in out {
        if let Output::Send { frame, .. } = o {
            for _ in 0..LOADED_BATCH {
                batch.receive(conn_of(0), &frame, NOW);
            }
        }
    }
    let _ = batch.commit();
    assert_eq!(net.hub.index_backlog(), 1);

    // The idle catch-up's commit is refused: this node does not hold the
    // store (a node that opened on a database with other nodes' lists
    // due). It leaves them, instead of trying (and failing) every time.
    *refuse.lock().unwrap() = vec![store.to_string()];
    assert_eq!(net.hub.catch_up_index(), 0);
    assert_eq!(net.hub.index_backlog(), 0);
    assert!(net.hub.db().index_due().unwrap().contains(&id));
    // Serving the store again, it indexes them.
    net.hub.store_arrived(&store).unwrap();
    assert_eq!(net.hub.catch_up_index(), 1);
    assert!(!net.hub.db().index_due().unwrap().contains(&id));
}

/// A frame of a store this hub (a node, or one replica thread of a node)
/// does not serve is not handled: the terminal is sent on with `moved`
/// and nothing of its change is stored here.
#[test]
fn a_frame_of_a_store_served_elsewhere_is_sent_on_and_nothing_is_stored() {
    let mut net = Net::online(1);
    let list = content(3).id;
    let heads = net.hub.document(list).unwrap().get_heads();
    let served_elsewhere = content(3).meta.store;
    net.hub.serve_only(move |s| s != &served_elsewhere);

    let (_, out) = net.agents[0]
        .record_status(list, &upd(1, Status::Completed, "w1"), NOW)
        .unwrap();
    let frames: Vec<Vec<u8>> = out
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { conn: 0, frame } => Some(frame),
            _ => None,
        })
        .collect();
    assert!(!frames.is_empty(), "the terminal sends its change");
    let out = net.hub.receive(conn_of(0), &frames[0], net.now);

    let closed = closes(&out);
    assert_eq!(closed.len(), 1, "{out:?}");
    assert_eq!(closed[0].0, conn_of(0));
    assert_eq!(Moved::decode(&closed[0].1), Some(Moved { to: None }));
    assert_eq!(net.hub.connection_count(), 0);
    assert_eq!(net.hub.counters().changes_accepted, 0);
    net.hub.serve_only(|_| true);
    assert_eq!(
        net.hub.document(list).unwrap().get_heads(),
        heads,
        "nothing stored"
    );
}
