//! The hub's group commit (`Hub::batch`): replies only after the unit of
//! work committed, and the stores' connectivity as an input like a frame.

use super::*;

/// Agent 0 records one update offline; the frames it sends when it
/// connects, as the hub thread would take them from its queue.
fn frames_of_an_update(net: &mut Net) -> (DocumentId, Vec<Vec<u8>>) {
    let id = content(3).id;
    net.connect(0);
    net.run();
    let (_, out) = net.agents[0]
        .record_status(id, &upd(1, Status::Completed, "w1"), NOW)
        .unwrap();
    let frames = out
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { frame, .. } => Some(frame),
            Output::Close { .. } | Output::LeaseLost { .. } => None,
        })
        .collect();
    (id, frames)
}

#[test]
fn a_batch_gives_its_replies_only_once_its_changes_are_on_disk() {
    let mut net = Net::new(2);
    net.connect(1);
    net.run();
    let (id, frames) = frames_of_an_update(&mut net);
    assert!(!frames.is_empty());
    let path = std::path::PathBuf::from(net.hub.db().location());
    let on_disk = |path: &std::path::Path| {
        SqliteDatabase::open_reader(path)
            .unwrap()
            .load_document(id)
            .unwrap()
            .unwrap()
            .get_heads()
    };
    let before = on_disk(&path);

    let mut batch = net.hub.batch();
    for f in &frames {
        batch.receive(conn_of(0), f, NOW);
    }
    // The batch holds its replies; another reader still sees the file as
    // it was (the change is in the open transaction only).
    assert_eq!(on_disk(&path), before, "nothing committed before commit");
    let out = batch.commit();
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Send { conn, .. } if *conn == conn_of(1))),
        "the other terminal is sent the change: {out:?}"
    );
    let after = on_disk(&path);
    assert_ne!(after, before);
    assert_eq!(after, net.hub.document(id).unwrap().get_heads());
}

#[test]
fn a_stores_last_sync_is_written_by_the_replica_in_the_batch_that_saw_it() {
    let mut net = Net::new(1);
    let store = content(1).meta.store;
    let principal = Principal::Store(store.clone());
    assert!(net.hub.db().store_sync_times().unwrap().is_empty());

    let mut batch = net.hub.batch();
    batch.connected(conn_of(0), principal, NOW);
    let _ = batch.commit();
    assert_eq!(
        net.hub.db().store_sync_times().unwrap(),
        vec![(store.clone(), NOW)]
    );
    assert_eq!(net.hub.store_links()[&store].connections, 1);

    // A frame within `WRITE_EVERY_MS` is remembered, not written; the
    // disconnect writes the latest time.
    let later = NOW + 2_000;
    let out = net.agents[0].connected();
    let mut batch = net.hub.batch();
    for o in out {
        if let Output::Send { frame, .. } = o {
            batch.receive(conn_of(0), &frame, later);
        }
    }
    let _ = batch.commit();
    assert_eq!(
        net.hub.db().store_sync_times().unwrap(),
        vec![(store.clone(), NOW)]
    );
    let mut batch = net.hub.batch();
    batch.disconnected(conn_of(0));
    let _ = batch.commit();
    assert_eq!(
        net.hub.db().store_sync_times().unwrap(),
        vec![(store.clone(), later)]
    );
    let link = &net.hub.store_links()[&store];
    assert_eq!((link.connections, link.last_sync_ms), (0, Some(later)));
}
