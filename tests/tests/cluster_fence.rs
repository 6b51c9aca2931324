//! Two hub nodes over one database with the cluster's lease table and
//! fence (`tests::cluster`): an owner paused past its lease cannot commit
//! once another node claimed the store; its terminal is told the store
//! moved, reconnects to the new owner, and nothing acknowledged is lost
//! or stored twice.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use engine::document::instance;
use engine::ids::{DocumentId, EventId, NodeId, Principal, StoreId, TaskId};
use engine::model::{Status, StatusUpdate};
use engine::protocol::wire::{PeerId, StorageId, WireLimits};
use engine::replica::agent::{Agent, AgentConfig};
use engine::replica::hub::{Hub, HubConfig, HubLimits};
use engine::replica::{ConnId, Moved, Output};
use engine::storage::roles::*;
use engine::storage::{SqliteDatabase, StoreRecord};
use tests::cluster::{FencedDatabase, LeaseTable, LeaseView};
use tests::sim::{list_content, START_MS};

const TTL_MS: i64 = 6_000;

struct Node {
    id: NodeId,
    hub: Hub,
    view: LeaseView,
}

impl Node {
    fn open(path: &std::path::Path, name: &str, table: &LeaseTable) -> Node {
        let id: NodeId = name.parse().unwrap();
        let view: LeaseView = Arc::new(Mutex::new(BTreeMap::new()));
        let db = FencedDatabase::new(
            SqliteDatabase::open(path, [0xAA; 16]).unwrap(),
            id.clone(),
            table.clone(),
            view.clone(),
        );
        let cfg = HubConfig {
            peer_id: PeerId::new(name),
            storage_id: StorageId::new("hub-storage"),
            limits: HubLimits::default(),
        };
        Node {
            id,
            hub: Hub::open(db, cfg).unwrap(),
            view,
        }
    }

    /// Claim `store`'s lease and serve it.
    fn claim(&mut self, table: &LeaseTable, store: &StoreId) -> u64 {
        let epoch = table.claim(&self.id, store).expect("the lease is free");
        self.view.lock().unwrap().insert(store.clone(), epoch);
        self.hub.store_arrived(store).unwrap();
        epoch
    }

    /// Renew: the stores missing from the answer are lost.
    fn renew(&mut self, table: &LeaseTable) {
        let view = self.view.lock().unwrap().clone();
        let held = table.renew(&self.id, &view);
        self.view
            .lock()
            .unwrap()
            .retain(|s, _| held.contains_key(s));
    }

    /// The shell's part of the outputs: a lost lease leaves the view.
    fn note_lost(&mut self, out: &[Output]) {
        for o in out {
            if let Output::LeaseLost { stores } = o {
                let mut view = self.view.lock().unwrap();
                for s in stores {
                    view.remove(s);
                }
            }
        }
    }
}

/// Frames in flight on one connection, each way.
#[derive(Default)]
struct Link {
    to_hub: VecDeque<Vec<u8>>,
    to_agent: VecDeque<Vec<u8>>,
    closed: bool,
}

fn sends(out: Vec<Output>, q: &mut VecDeque<Vec<u8>>, closed: &mut bool) {
    for o in out {
        match o {
            Output::Send { frame, .. } => q.push_back(frame),
            Output::Close { .. } => *closed = true,
            Output::LeaseLost { .. } => {}
        }
    }
}

/// Deliver what is in flight on `link` until both ends are quiet or the
/// agent closed. The hub takes each frame in its own batch, as its
/// runtime does under light load, and the node does the shell's part of
/// its outputs.
fn pump(node: &mut Node, agent: &mut Agent, conn: ConnId, link: &mut Link, now: i64) {
    for _ in 0..10_000 {
        if let Some(f) = link.to_hub.pop_front() {
            let mut batch = node.hub.batch();
            batch.receive(conn, &f, now);
            let out = batch.commit();
            node.note_lost(&out);
            let mut hub_closed = false;
            sends(out, &mut link.to_agent, &mut hub_closed);
            if hub_closed {
                // The hub's close follows its frames: the agent reads
                // them first; nothing more reaches the hub.
                link.closed = true;
                link.to_hub.clear();
            }
        } else if let Some(f) = link.to_agent.pop_front() {
            let out = agent.receive(&f, now);
            let mut agent_closed = false;
            sends(out, &mut link.to_hub, &mut agent_closed);
            if agent_closed {
                link.closed = true;
                return;
            }
        } else {
            return;
        }
    }
    panic!("sync did not quiesce");
}

fn connect(node: &mut Node, agent: &mut Agent, conn: ConnId, store: &StoreId, now: i64) -> Link {
    node.hub.connect(conn, Principal::Store(store.clone()), now);
    let mut link = Link::default();
    sends(agent.connected(), &mut link.to_hub, &mut link.closed);
    link
}

fn update(n: u128, status: Status) -> StatusUpdate {
    StatusUpdate {
        id: EventId(uuid::Uuid::from_u128(n)),
        task: TaskId(uuid::Uuid::new_v5(&list_id().0, b"task/0")),
        status,
        worker: "w1".parse().unwrap(),
        terminal: "pos-1".parse().unwrap(),
        note: None,
    }
}

fn store() -> StoreId {
    "store-042".parse().unwrap()
}

fn list_id() -> DocumentId {
    list_content(&store(), 1, 3).id
}

/// The hub's database as HQ set it up: the store, its roster, one list.
fn set_up(path: &std::path::Path) {
    let cfg = HubConfig {
        peer_id: PeerId::new("setup"),
        storage_id: StorageId::new("hub-storage"),
        limits: HubLimits::default(),
    };
    let mut hub = Hub::open(SqliteDatabase::open(path, [0xAA; 16]).unwrap(), cfg).unwrap();
    hub.add_store(&StoreRecord {
        id: store(),
        name: "Main Street".into(),
        time_zone: "Europe/Berlin".into(),
    })
    .unwrap();
    let rec = engine::document::directory::RosterWorker {
        name: "Worker 1".into(),
        role: "cashier".parse().unwrap(),
        groups: Vec::new(),
        pin: None,
    };
    hub.put_worker(&store(), &"w1".parse().unwrap(), &rec, START_MS)
        .unwrap();
    hub.publish(&list_content(&store(), 1, 3), START_MS)
        .unwrap();
}

/// How often each event id appears in the list's status logs.
fn event_counts(doc: &automerge::Automerge) -> HashMap<EventId, usize> {
    let view = instance::read(doc).unwrap();
    let mut counts = HashMap::new();
    for t in &view.tasks {
        for e in &t.status.history {
            *counts.entry(e.id).or_default() += 1;
        }
    }
    counts
}

#[test]
fn an_owner_paused_past_its_lease_cannot_commit_and_its_terminal_moves_to_the_new_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.sqlite3");
    set_up(&path);
    let table = LeaseTable::new(TTL_MS, START_MS);
    let mut a = Node::open(&path, "hub-a", &table);
    let mut b = Node::open(&path, "hub-b", &table);
    let mut agent = Agent::open(
        SqliteDatabase::open(dir.path().join("agent.sqlite3"), [1; 16]).unwrap(),
        AgentConfig {
            store_id: store(),
            peer_id: PeerId::new("agent-0"),
            storage_id: StorageId::new("agent-storage-0"),
            wire: WireLimits::default(),
        },
        START_MS,
    )
    .unwrap();

    // A owns the store and serves the terminal; the first update is
    // stored under epoch 1.
    let mut now = START_MS;
    assert_eq!(a.claim(&table, &store()), 1);
    let mut to_a = connect(&mut a, &mut agent, 1, &store(), now);
    pump(&mut a, &mut agent, 1, &mut to_a, now);
    let (first, out) = agent
        .record_status(list_id(), &update(1, Status::InProgress), now)
        .unwrap();
    let mut closed = false;
    sends(out, &mut to_a.to_hub, &mut closed);
    pump(&mut a, &mut agent, 1, &mut to_a, now);
    assert!(!to_a.closed);
    now += 1_000;
    table.set_now(now);
    a.renew(&table);

    // A stops (SIGSTOP) past its lease; B claims the store at epoch 2.
    now += TTL_MS + 500;
    table.set_now(now);
    assert_eq!(b.claim(&table, &store()), 2);

    // The terminal, still connected to A, records more; A resumes and
    // takes the frames. The fence refuses A's commit: nothing is saved,
    // the terminal is told the store moved.
    let (second, out) = agent
        .record_status(list_id(), &update(2, Status::Completed), now)
        .unwrap();
    sends(out, &mut to_a.to_hub, &mut closed);
    pump(&mut a, &mut agent, 1, &mut to_a, now);
    assert!(to_a.closed, "A closed the terminal");
    assert!(
        a.view.lock().unwrap().is_empty(),
        "A stopped serving the store"
    );
    assert_eq!(a.hub.connection_count(), 0);
    agent.disconnected();
    assert_eq!(agent.take_moved(), Some(Moved { to: None }));
    let refused = table.refusals();
    assert!(
        refused
            .iter()
            .any(|r| r.node == a.id && r.store == store() && r.epoch == 1),
        "{refused:?}"
    );

    // It reconnects at once; the store's owner (B) takes it, and stores
    // the second update under epoch 2.
    let mut to_b = connect(&mut b, &mut agent, 2, &store(), now);
    pump(&mut b, &mut agent, 2, &mut to_b, now);
    assert!(!to_b.closed);

    // A renews: it holds nothing. Its next write for the store, were it
    // to try one, is refused too.
    a.renew(&table);
    assert!(a.view.lock().unwrap().is_empty());

    // The lease invariants: epochs 1 then 2, and every commit under the
    // epoch current at the time, by its holder.
    table.check();
    let epochs: Vec<(String, u64)> = table
        .history()
        .iter()
        .map(|g| (g.node.to_string(), g.epoch))
        .collect();
    assert_eq!(epochs, [("hub-a".into(), 1), ("hub-b".into(), 2)]);
    assert!(table
        .commits()
        .iter()
        .any(|c| c.node == b.id && c.epoch == 2));

    // Every acknowledged update is stored exactly once, and the terminal,
    // B and the file hold the same heads.
    let on_disk = SqliteDatabase::open_reader(&path)
        .unwrap()
        .load_document(list_id())
        .unwrap()
        .unwrap();
    let counts = event_counts(&on_disk);
    assert_eq!(counts.get(&first.id), Some(&1), "{counts:?}");
    assert_eq!(counts.get(&second.id), Some(&1), "{counts:?}");
    let heads = on_disk.get_heads();
    assert_eq!(agent.document(list_id()).unwrap().get_heads(), heads);
    assert_eq!(b.hub.document(list_id()).unwrap().get_heads(), heads);
}
