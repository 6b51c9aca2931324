//! Hub and agents wired back to back in memory: the smallest end-to-end
//! checks of the replica state machines (the simulator in `tests/` does
//! the lossy, crashing, many-seed version).

use std::collections::VecDeque;

use uuid::Uuid;

use super::agent::{Agent, AgentConfig};
use super::hub::{Hub, HubConfig, HubLimits};
use super::{ConnId, Output};
use crate::document::instance_tests::content;
use crate::ids::{EventId, Principal, TaskId};
use crate::model::{Status, StatusUpdate};
use crate::protocol::wire::{PeerId, StorageId, WireLimits};
use crate::storage::{Store, StoreRecord};

const NOW: i64 = 1_800_000_000_000;

struct Net {
    _dir: tempfile::TempDir,
    hub: Hub,
    agents: Vec<Agent>,
    /// (to_hub, agent index, frame)
    queue: VecDeque<(bool, usize, Vec<u8>)>,
}

fn conn_of(i: usize) -> ConnId {
    i as ConnId + 1
}

impl Net {
    fn new(n: usize) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("hub.db"), [0xAA; 16]).unwrap();
        let cfg = HubConfig {
            peer_id: PeerId::new("hub"),
            storage_id: StorageId::new("hub-storage"),
            limits: HubLimits::default(),
        };
        let mut hub = Hub::open(store, cfg).unwrap();
        let c = content(3);
        hub.add_store(&StoreRecord {
            id: c.meta.store.clone(),
            name: "Store 42".into(),
            time_zone: "Europe/Berlin".into(),
        })
        .unwrap();
        hub.publish(&c, NOW).unwrap();
        let agents = (0..n)
            .map(|i| {
                let store =
                    Store::open(dir.path().join(format!("a{i}.db")), [i as u8 + 1; 16]).unwrap();
                Agent::open(
                    store,
                    AgentConfig {
                        store_id: c.meta.store.clone(),
                        peer_id: PeerId::new(format!("agent-{i}")),
                        storage_id: StorageId::new(format!("agent-storage-{i}")),
                        wire: WireLimits::default(),
                    },
                )
                .unwrap()
            })
            .collect();
        Net {
            _dir: dir,
            hub,
            agents,
            queue: VecDeque::new(),
        }
    }

    fn route_agent(&mut self, i: usize, out: Vec<Output>) {
        for o in out {
            if let Output::Send { frame, .. } = o {
                self.queue.push_back((true, i, frame));
            }
        }
    }

    fn route_hub(&mut self, out: Vec<Output>) {
        for o in out {
            if let Output::Send { conn, frame } = o {
                self.queue.push_back((false, conn as usize - 1, frame));
            }
        }
    }

    fn connect(&mut self, i: usize) {
        let principal = Principal::Store(self.agents[i].store_id().clone());
        self.hub.connect(conn_of(i), principal, NOW);
        let out = self.agents[i].connected();
        self.route_agent(i, out);
    }

    fn disconnect(&mut self, i: usize) {
        self.queue.retain(|(_, a, _)| *a != i);
        self.hub.disconnect(conn_of(i));
        self.agents[i].disconnected();
    }

    fn run(&mut self) -> usize {
        let mut steps = 0;
        while let Some((to_hub, i, frame)) = self.queue.pop_front() {
            steps += 1;
            assert!(steps < 10_000, "sync did not quiesce");
            if to_hub {
                let out = self.hub.receive(conn_of(i), &frame, NOW);
                self.route_hub(out);
            } else {
                let out = self.agents[i].receive(&frame, NOW);
                self.route_agent(i, out);
            }
        }
        steps
    }
}

fn upd(n: u128, status: Status, worker: &str) -> StatusUpdate {
    StatusUpdate {
        id: EventId(Uuid::from_u128(n)),
        task: TaskId(Uuid::from_u128(1)),
        status,
        worker: worker.parse().unwrap(),
        terminal: "pos-1".parse().unwrap(),
        note: None,
    }
}

#[test]
fn an_agent_receives_its_lists_and_its_updates_reach_another_terminal() {
    let mut net = Net::new(2);
    net.connect(0);
    net.connect(1);
    net.run();
    let id = content(3).id;
    assert_eq!(net.agents[0].list(id).unwrap().tasks.len(), 3);
    let (_, out) = net.agents[0]
        .record_status(id, &upd(1, Status::Completed, "w1"), NOW)
        .unwrap();
    net.route_agent(0, out);
    net.run();
    let view = net.agents[1].list(id).unwrap();
    assert_eq!(view.tasks[0].status.current, Status::Completed);
    assert_eq!(
        net.hub.document(id).unwrap().get_heads(),
        net.agents[1].document(id).unwrap().get_heads()
    );
}

#[test]
fn offline_conflicting_updates_converge_and_show_the_conflict() {
    let mut net = Net::new(2);
    net.connect(0);
    net.connect(1);
    net.run();
    net.disconnect(0);
    net.disconnect(1);
    let id = content(3).id;
    net.agents[0]
        .record_status(id, &upd(1, Status::Completed, "w1"), NOW)
        .unwrap();
    net.agents[1]
        .record_status(id, &upd(2, Status::InProgress, "w2"), NOW + 5)
        .unwrap();
    net.connect(0);
    net.connect(1);
    net.run();
    let a = net.agents[0].list(id).unwrap();
    let b = net.agents[1].list(id).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.tasks[0].status.conflict.len(), 2);
}

#[test]
fn a_rejected_change_is_reported_to_the_agent_and_not_forwarded() {
    let mut net = Net::new(2);
    net.connect(0);
    net.connect(1);
    net.run();
    let id = content(3).id;
    // A status event dated a day in the future: the hub refuses it.
    let (_, out) = net.agents[0]
        .record_status(id, &upd(1, Status::Completed, "w1"), NOW + 86_400_000)
        .unwrap();
    net.route_agent(0, out);
    net.run();
    let rejected = net.agents[0].sync_status().unwrap().rejected;
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0].reason.contains("after the hub's clock"),
        "{}",
        rejected[0].reason
    );
    assert_eq!(
        net.agents[1].list(id).unwrap().tasks[0].status.current,
        Status::NotStarted
    );
    assert_eq!(net.hub.counters().changes_rejected, 1);
}

#[test]
fn a_reconnect_resumes_from_saved_sync_state() {
    let mut net = Net::new(1);
    net.connect(0);
    let first = net.run();
    net.disconnect(0);
    net.connect(0);
    let again = net.run();
    assert!(
        again <= first,
        "resync took {again} steps, first sync {first}"
    );
}

#[test]
fn the_agent_counts_changes_the_hub_has_not_confirmed() {
    let mut net = Net::new(1);
    net.connect(0);
    net.run();
    let id = content(3).id;
    assert_eq!(net.agents[0].unconfirmed().values().sum::<usize>(), 0);
    net.disconnect(0);
    net.agents[0].record_status(id, &upd(1, Status::Completed, "w1"), NOW).unwrap();
    net.connect(0);
    net.run();
    assert_eq!(net.agents[0].unconfirmed().values().sum::<usize>(), 0, "confirmed after sync");
    let (_, out) = net.agents[0].record_status(id, &upd(2, Status::Reopened, "w1"), NOW).unwrap();
    assert_eq!(net.agents[0].unconfirmed().values().sum::<usize>(), 1);
    net.route_agent(0, out);
    net.run();
    assert_eq!(net.agents[0].unconfirmed().values().sum::<usize>(), 0, "confirmed while online");
}
