//! Store leases and the fence on PostgreSQL: what two hub nodes sharing
//! one database can and cannot do. Node A and node B are two `Leases`
//! and two `PgDatabase`s on one throwaway database, driven step by step.

use std::sync::Arc;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit};
use engine::document::DocKind;
use engine::ids::{DocumentId, NodeId, StoreId};
use engine::storage::roles::*;
use engine::storage::{StorageError, StoreRecord};
use hub::pg::lease::{LeaseTimings, LeaseView, Leases};
use hub::pg::testing::PgServer;
use hub::pg::PgDatabase;

struct Cluster {
    server: &'static PgServer,
    url: String,
    rt: tokio::runtime::Runtime,
}

impl Cluster {
    fn new() -> Option<Cluster> {
        let server = PgServer::shared()?;
        let url = server.new_database();
        // Creates the tables.
        drop(PgDatabase::connect(&url, "setup", [1; 16]).unwrap());
        Some(Cluster {
            server,
            url,
            rt: tokio::runtime::Runtime::new().unwrap(),
        })
    }

    fn db_name(&self) -> &str {
        self.url.rsplit('/').next().unwrap()
    }

    fn psql(&self, sql: &str) -> String {
        self.server.psql(self.db_name(), sql)
    }

    /// Node `name`: its lease operations and its storage, fenced on them.
    fn node(&self, name: &str) -> (Leases, PgDatabase) {
        let view = Arc::new(LeaseView::default());
        let client = self.rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
        });
        let node: NodeId = name.parse().unwrap();
        let leases = Leases::new(
            client,
            node,
            format!("ws://{name}.example:8080"),
            LeaseTimings::default(),
            view.clone(),
        );
        let mut actor = [0u8; 16];
        actor[..name.len().min(16)].copy_from_slice(&name.as_bytes()[..name.len().min(16)]);
        let db = PgDatabase::connect(&self.url, name, actor)
            .unwrap()
            .with_leases(view);
        (leases, db)
    }
}

fn store(n: u32) -> StoreId {
    format!("store-{n:03}").parse().unwrap()
}

fn changes(actor: u8, n: i64) -> Vec<automerge::Change> {
    let mut d = AutoCommit::new().with_actor(ActorId::from([actor; 16]));
    d.put(automerge::ROOT, "n", n).unwrap();
    d.commit();
    d.get_changes(&[])
}

/// Register `stores` with one document each (document n for store n),
/// through `db`, a connection not fenced on any node's leases.
fn register(db: &mut PgDatabase, stores: &[u32]) {
    for &n in stores {
        db.put_store(&StoreRecord {
            id: store(n),
            name: format!("Store {n}"),
            time_zone: "Europe/Berlin".into(),
        })
        .unwrap();
        db.set_doc_owner(doc(n), &store(n), DocKind::Instance)
            .unwrap();
    }
}

fn doc(n: u32) -> DocumentId {
    DocumentId::from_random_bytes([n as u8; 16])
}

#[test]
fn a_paused_owner_cannot_commit_after_another_node_claimed_its_store() {
    let Some(c) = Cluster::new() else { return };
    let mut setup = PgDatabase::connect(&c.url, "setup", [1; 16]).unwrap();
    register(&mut setup, &[1]);
    let (mut leases_a, mut a) = c.node("node-a");
    let (mut leases_b, mut b) = c.node("node-b");

    let claimed = c.rt.block_on(leases_a.claim(&[store(1)])).unwrap();
    assert_eq!(claimed, vec![(store(1), 1)]);
    // A holds the lease: its writes commit.
    a.append_changes(doc(1), &changes(1, 1)).unwrap();

    // A starts a batch, then stalls past its lease; B claims the store.
    a.begin_batch().unwrap();
    a.append_changes(doc(1), &changes(2, 2)).unwrap();
    c.psql("UPDATE store_leases SET expires_at = clock_timestamp() - interval '1 second'");
    let claimed = c.rt.block_on(leases_b.claim(&[store(1)])).unwrap();
    assert_eq!(claimed, vec![(store(1), 2)], "a new epoch");

    // A wakes up: its commit is refused by the fence, and nothing of the
    // batch is stored.
    let err = a.commit_batch().unwrap_err();
    match &err {
        StorageError::LeaseLost { stores, .. } => assert_eq!(stores, &vec!["store-001".to_owned()]),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    assert!(!leases_a.view().holds(&store(1)), "A forgot the lease");
    let stored = b.load_document(doc(1)).unwrap().unwrap();
    assert_eq!(
        stored.get_changes(&[]).len(),
        1,
        "only the write under the lease"
    );
    // Not even outside a batch: a single write is fenced too.
    let err = a.append_changes(doc(1), &changes(3, 3)).unwrap_err();
    assert!(matches!(err, StorageError::LeaseLost { .. }), "{err:?}");
    // B, the owner now, writes.
    b.append_changes(doc(1), &changes(4, 4)).unwrap();
    // Epochs only grow, one row per claim.
    assert_eq!(
        c.psql("SELECT string_agg(epoch || ':' || owner, ',' ORDER BY epoch) FROM lease_history"),
        "1:node-a,2:node-b"
    );
    drop((leases_a, leases_b));
}

#[test]
fn a_write_to_a_store_no_node_holds_is_refused_and_one_to_a_removed_store_is_not_fenced() {
    let Some(c) = Cluster::new() else { return };
    let mut setup = PgDatabase::connect(&c.url, "setup", [1; 16]).unwrap();
    register(&mut setup, &[1, 2]);
    let (_leases, mut a) = c.node("node-a");
    let err = a.append_changes(doc(1), &changes(1, 1)).unwrap_err();
    assert!(matches!(err, StorageError::LeaseLost { .. }), "{err:?}");
    assert!(setup.load_document(doc(1)).unwrap().is_none());
    // A store removed (its lease row gone with it) has nobody to fence
    // against: purging its documents goes through.
    setup.remove_store_record(&store(2), 0).unwrap();
    a.purge_document(doc(2)).unwrap();
}

#[test]
fn nodes_split_the_stores_by_placement_and_a_joining_node_takes_only_its_share() {
    let Some(c) = Cluster::new() else { return };
    let mut setup = PgDatabase::connect(&c.url, "setup", [1; 16]).unwrap();
    let all: Vec<u32> = (1..=60).collect();
    register(&mut setup, &all);
    let (mut leases_a, _a) = c.node("node-a");
    let first = c.rt.block_on(leases_a.tick()).unwrap();
    assert_eq!(first.claimed.len(), 60, "alone, A claims every store");

    let (mut leases_b, _b) = c.node("node-b");
    // B announces itself; A sees it live and releases B's share; B claims it.
    c.rt.block_on(leases_b.heartbeat()).unwrap();
    let a_round = c.rt.block_on(leases_a.tick()).unwrap();
    let b_round = c.rt.block_on(leases_b.tick()).unwrap();
    let live: Vec<NodeId> = vec!["node-a".parse().unwrap(), "node-b".parse().unwrap()];
    let b_share: Vec<StoreId> = all
        .iter()
        .map(|n| store(*n))
        .filter(|s| engine::cluster::placement(&live, s) == Some(&live[1]))
        .collect();
    assert!(
        !b_share.is_empty() && b_share.len() < 60,
        "{}",
        b_share.len()
    );
    assert_eq!(a_round.released, b_share, "A lets go of exactly B's share");
    let mut b_claimed: Vec<StoreId> = b_round.claimed.iter().map(|(s, _)| s.clone()).collect();
    b_claimed.sort();
    assert_eq!(b_claimed, b_share);
    assert!(
        b_round.claimed.iter().all(|(_, e)| *e == 2),
        "second claim, epoch 2"
    );
    // Every store has exactly one owner, and A keeps the rest.
    assert_eq!(
        leases_a.view().held().len() + leases_b.view().held().len(),
        60
    );
    assert_eq!(
        c.psql("SELECT count(*) FROM store_leases WHERE owner IS NULL"),
        "0"
    );
}

/// A node that restarts within its lease time does not keep its earlier
/// run's leases alive: the stores placement now gives another node are
/// let go at once, and its own are claimed anew under a new epoch.
#[test]
fn a_node_restarted_within_its_lease_keeps_nothing_from_its_earlier_run() {
    let Some(c) = Cluster::new() else { return };
    let mut setup = PgDatabase::connect(&c.url, "setup", [1; 16]).unwrap();
    let all: Vec<u32> = (1..=30).collect();
    register(&mut setup, &all);
    let (mut first_run, _a) = c.node("node-a");
    assert_eq!(c.rt.block_on(first_run.tick()).unwrap().claimed.len(), 30);
    drop(first_run);

    let (mut leases_b, _b) = c.node("node-b");
    c.rt.block_on(leases_b.heartbeat()).unwrap();
    let (mut second_run, _a2) = c.node("node-a");
    let round = c.rt.block_on(second_run.tick()).unwrap();
    let live: Vec<NodeId> = vec!["node-a".parse().unwrap(), "node-b".parse().unwrap()];
    let mine = |s: &StoreId| engine::cluster::placement(&live, s) == Some(&live[0]);
    let (a_share, b_share): (Vec<StoreId>, Vec<StoreId>) =
        all.iter().map(|n| store(*n)).partition(|s| mine(s));
    assert_eq!(
        round.released, b_share,
        "the earlier run's other stores are let go"
    );
    let mut claimed: Vec<StoreId> = round.claimed.iter().map(|(s, _)| s.clone()).collect();
    claimed.sort();
    assert_eq!(claimed, a_share, "its own are claimed anew");
    assert!(
        round.claimed.iter().all(|(_, e)| *e == 2),
        "under a new epoch"
    );
    let b_round = c.rt.block_on(leases_b.tick()).unwrap();
    assert_eq!(
        b_round.claimed.len(),
        b_share.len(),
        "B takes its share at once"
    );
    assert_eq!(
        c.psql("SELECT count(*) FROM store_leases WHERE owner IS NULL OR expires_at <= clock_timestamp()"),
        "0"
    );
}

/// Nodes that start together on a new database agree on its storage id
/// (clients keep their sync state by it, so a terminal moving between
/// nodes must see one id), and register the admin token once (before the
/// start-up lock, two of three starts failed on a duplicate token).
#[test]
fn nodes_starting_together_on_a_new_database_agree_on_its_storage_id_and_admin_token() {
    let Some(server) = PgServer::shared() else {
        return;
    };
    let url = server.new_database();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let opened: Vec<hub::data_dir::Opened> = std::thread::scope(|s| {
        let handles: Vec<_> = dirs
            .iter()
            .enumerate()
            .map(|(n, dir)| {
                let url = url.clone();
                s.spawn(move || {
                    hub::data_dir::open(
                        dir.path(),
                        Default::default(),
                        Some("admin"),
                        &hub::data_dir::Database::Postgres {
                            url,
                            cluster: Some(hub::data_dir::Member {
                                node: format!("node-{n}"),
                                address: format!("ws://127.0.0.1:{}/sync", 9000 + n),
                                replica_threads: 2,
                            }),
                        },
                    )
                    .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ids: Vec<String> = opened
        .iter()
        .map(|o| {
            rt.block_on(
                o.state
                    .hub
                    .registry()
                    .call(|h, _| (h.storage_id().to_string(), Vec::new())),
            )
            .unwrap()
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
}

#[test]
fn a_node_that_takes_a_store_back_reads_what_another_node_wrote_meanwhile() {
    let Some(c) = Cluster::new() else { return };
    let mut setup = PgDatabase::connect(&c.url, "setup", [1; 16]).unwrap();
    register(&mut setup, &[1]);
    let (mut leases_a, a) = c.node("node-a");
    let (mut leases_b, mut b) = c.node("node-b");
    let hq = changes(9, 9)[0].hash();

    c.rt.block_on(leases_a.claim(&[store(1)])).unwrap();
    // A reads (and remembers) what HQ vouches for in the list: nothing yet.
    assert_eq!(a.known_content(doc(1)).unwrap(), vec![]);

    // B takes the store over and HQ publishes through it.
    c.psql("UPDATE store_leases SET expires_at = clock_timestamp() - interval '1 second'");
    c.rt.block_on(leases_b.claim(&[store(1)])).unwrap();
    b.add_known_content(doc(1), &[hq]).unwrap();

    // A takes the store back: it must see B's write, or it would refuse
    // HQ's own content as forged.
    c.psql("UPDATE store_leases SET expires_at = clock_timestamp() - interval '1 second'");
    let claimed = c.rt.block_on(leases_a.claim(&[store(1)])).unwrap();
    assert_eq!(claimed, vec![(store(1), 3)]);
    assert_eq!(a.known_content(doc(1)).unwrap(), vec![hq]);
    drop((leases_a, leases_b));
}
