//! Hub and agents wired back to back in memory: the smallest end-to-end
//! checks of the replica state machines (the simulator in `tests/` does
//! the lossy, crashing, many-seed version).

use crate::storage::roles::*;
use std::collections::VecDeque;

use uuid::Uuid;

use super::agent::{Agent, AgentConfig};
use super::hub::{Hub, HubConfig, HubLimits};
use super::{ConnId, Output};
use crate::document::instance_tests::content;
use crate::ids::{DocumentId, EventId, Principal, StoreId, TaskId};
use crate::model::{Status, StatusUpdate};
use crate::protocol::wire::{PeerId, StorageId, WireLimits};
use crate::storage::{SqliteDatabase, StoreRecord};

const NOW: i64 = 1_800_000_000_000;

mod batch;
mod cluster;
mod diverged;
mod identity;
mod lan;

struct Net {
    _dir: tempfile::TempDir,
    hub: Hub,
    agents: Vec<Agent>,
    /// (to_hub, agent index, frame)
    queue: VecDeque<(bool, usize, Vec<u8>)>,
    /// The clock every replica sees.
    now: i64,
    /// Agents' frames to peer terminals, for `tests::lan` to carry.
    peer_out: Vec<(usize, Vec<Output>)>,
}

/// Put the workers these tests record status for on `store`'s roster:
/// the hub refuses events by anyone else.
fn staff(hub: &mut Hub, store: &StoreId) {
    for w in ["w1", "w2", "w3"] {
        let rec = crate::document::directory::RosterWorker {
            name: w.into(),
            role: "cashier".parse().unwrap(),
            groups: Vec::new(),
            pin: None,
        };
        hub.put_worker(store, &w.parse().unwrap(), &rec, NOW)
            .unwrap();
    }
}

fn conn_of(i: usize) -> ConnId {
    i as ConnId + 1
}

/// Agent `i` of the store of `content(_)`, from its file in `dir`.
fn open_agent(dir: &tempfile::TempDir, i: usize, now_ms: i64) -> Agent {
    let store =
        SqliteDatabase::open(dir.path().join(format!("a{i}.db")), [i as u8 + 1; 16]).unwrap();
    Agent::open(
        store,
        AgentConfig {
            store_id: content(1).meta.store,
            peer_id: PeerId::new(format!("agent-{i}")),
            storage_id: StorageId::new(format!("agent-storage-{i}")),
            wire: WireLimits::default(),
        },
        now_ms,
    )
    .unwrap()
}

impl Net {
    fn new(n: usize) -> Net {
        Net::over(n, |db| db)
    }

    /// [`Net::new`] with the hub's database wrapped by `wrap` (a backend
    /// that fails on demand).
    fn over<S: HubStorage + 'static>(n: usize, wrap: impl FnOnce(SqliteDatabase) -> S) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let store = wrap(SqliteDatabase::open(dir.path().join("hub.db"), [0xAA; 16]).unwrap());
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
        staff(&mut hub, &c.meta.store);
        hub.publish(&c, NOW).unwrap();
        let agents = (0..n).map(|i| open_agent(&dir, i, NOW)).collect();
        Net {
            _dir: dir,
            hub,
            agents,
            queue: VecDeque::new(),
            now: NOW,
            peer_out: Vec::new(),
        }
    }

    /// Agent `i`'s frames to the hub (connection 0; others go to peer
    /// terminals, which `tests::lan` carries).
    fn route_agent(&mut self, i: usize, out: Vec<Output>) {
        let mut to_peers = Vec::new();
        for o in out {
            match o {
                Output::Send { conn: 0, frame } => self.queue.push_back((true, i, frame)),
                o @ Output::Send { .. } => to_peers.push(o),
                _ => {}
            }
        }
        if !to_peers.is_empty() {
            self.peer_out.push((i, to_peers));
        }
    }

    fn route_hub(&mut self, out: Vec<Output>) {
        for o in out {
            if let Output::Send { conn, frame } = o {
                self.queue.push_back((false, conn as usize - 1, frame));
            }
        }
    }

    /// The hub and terminal `agent` hold `doc` at the same heads.
    fn assert_same_heads(&mut self, agent: usize, doc: DocumentId) {
        assert_eq!(
            self.hub.document(doc).unwrap().get_heads(),
            self.agents[agent].document(doc).unwrap().get_heads()
        );
    }

    /// `n` terminals, all connected and synced.
    fn online(n: usize) -> Net {
        let mut net = Net::new(n);
        for i in 0..n {
            net.connect(i);
        }
        net.run();
        net
    }

    fn connect(&mut self, i: usize) {
        let principal = Principal::Store(self.agents[i].store_id().clone());
        self.hub.connect(conn_of(i), principal, self.now);
        let out = self.agents[i].connected();
        self.route_agent(i, out);
    }

    fn disconnect(&mut self, i: usize) {
        self.queue.retain(|(_, a, _)| *a != i);
        self.hub.disconnect(conn_of(i));
        self.agents[i].disconnected();
    }

    /// Agent `i`'s process stops (without a clean disconnect) and starts
    /// again from its file at `now_ms`.
    fn restart(&mut self, i: usize, now_ms: i64) {
        self.queue.retain(|(_, a, _)| *a != i);
        self.hub.disconnect(conn_of(i));
        drop(self.agents.remove(i));
        self.agents.insert(i, open_agent(&self._dir, i, now_ms));
    }

    fn run(&mut self) -> usize {
        let mut steps = 0;
        while let Some((to_hub, i, frame)) = self.queue.pop_front() {
            steps += 1;
            assert!(steps < 10_000, "sync did not quiesce");
            if to_hub {
                let out = self.hub.receive(conn_of(i), &frame, self.now);
                self.route_hub(out);
            } else {
                let out = self.agents[i].receive(&frame, self.now);
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
    let mut net = Net::online(2);
    let id = content(3).id;
    assert_eq!(net.agents[0].list(id).unwrap().tasks.len(), 3);
    let (_, out) = net.agents[0]
        .record_status(id, &upd(1, Status::Completed, "w1"), NOW)
        .unwrap();
    net.route_agent(0, out);
    net.run();
    let view = net.agents[1].list(id).unwrap();
    assert_eq!(view.tasks[0].status.current, Status::Completed);
    net.assert_same_heads(1, id);
}

/// A list holding a change that waits for its dependency (sync delivered
/// it out of order) cannot take the op-by-op event change; the agent
/// records by a transaction on a scratch copy instead, and the hub
/// accepts it.
#[test]
fn an_update_to_a_list_with_a_change_waiting_for_its_dependency_is_recorded() {
    let mut net = Net::online(2);
    let id = content(3).id;
    let doc = net.agents[0].document_mut(id).unwrap();
    let mut other = doc.fork();
    other.set_actor(automerge::ActorId::from([7u8; 16]));
    crate::document::instance::record_status(&mut other, &upd(1, Status::InProgress, "w2"), NOW)
        .unwrap();
    let (_, waiting) = crate::document::instance::record_status(
        &mut other,
        &upd(2, Status::Completed, "w2"),
        NOW + 1,
    )
    .unwrap();
    doc.apply_changes([waiting]).unwrap();
    assert_eq!(automerge::ReadDoc::get_missing_deps(doc, &[]).len(), 1);
    let (event, out) = net.agents[0]
        .record_status(id, &upd(3, Status::InProgress, "w1"), NOW + 2)
        .unwrap();
    net.route_agent(0, out);
    net.run();
    let view = net.agents[1].list(id).unwrap();
    let task = view.task(event.task).unwrap();
    assert_eq!(task.status.history.last().unwrap().id, event.id);
    net.assert_same_heads(1, id);
}

/// A change the document refuses after it was stored (a bug in how it was
/// made: here another change under the terminal's actor and sequence
/// number) is taken back out of storage: the error reaches the caller,
/// and the replica still opens with what it held, and records on.
#[test]
fn a_stored_change_the_document_refuses_is_taken_back_out_of_storage() {
    let mut net = Net::online(1);
    let id = content(3).id;
    let doc = net.agents[0].document(id).unwrap();
    let mut twin = doc.fork();
    twin.set_actor(doc.get_actor().clone());
    net.agents[0]
        .record_status(id, &upd(1, Status::InProgress, "w1"), NOW)
        .unwrap();
    let heads = net.agents[0].document(id).unwrap().get_heads();
    // Another change under the same actor and sequence number.
    let (_, clash) =
        crate::document::instance::record_status(&mut twin, &upd(2, Status::Completed, "w1"), NOW)
            .unwrap();
    assert!(net.agents[0].commit_for_test(id, vec![clash]).is_err());
    assert_eq!(net.agents[0].document(id).unwrap().get_heads(), heads);
    net.restart(0, NOW);
    assert_eq!(net.agents[0].document(id).unwrap().get_heads(), heads);
    net.agents[0]
        .record_status(id, &upd(3, Status::Completed, "w1"), NOW + 1)
        .unwrap();
}

/// A terminal's cached log summary takes in what another terminal recorded
/// in between: its next event follows that one (`prev`), and a reopen of
/// the task the other completed is allowed.
#[test]
fn an_update_after_another_terminals_follows_it() {
    let mut net = Net::online(2);
    let id = content(3).id;
    let (first, out) = net.agents[1]
        .record_status(id, &upd(1, Status::InProgress, "w1"), NOW)
        .unwrap();
    net.route_agent(1, out);
    net.run();
    let (done, out) = net.agents[0]
        .record_status(id, &upd(2, Status::Completed, "w2"), NOW + 1_000)
        .unwrap();
    assert_eq!(done.prev, vec![first.id]);
    net.route_agent(0, out);
    net.run();
    let (reopened, out) = net.agents[1]
        .record_status(id, &upd(3, Status::Reopened, "w1"), NOW + 2_000)
        .expect("the task the other terminal completed can be reopened");
    assert_eq!(reopened.prev, vec![done.id]);
    assert!(reopened.at > done.at);
    net.route_agent(1, out);
    net.run();
    for a in 0..2 {
        let task = net.agents[a].list(id).unwrap().tasks[0].status.clone();
        assert_eq!(task.current, Status::Reopened);
        assert!(task.conflict.is_empty());
    }
}

#[test]
fn offline_conflicting_updates_converge_and_show_the_conflict() {
    let mut net = Net::online(2);
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
    let mut net = Net::online(2);
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
    // The refused change is dropped from the terminal's copy: it is not
    // offered again on the next connection, and it does not poison what
    // the terminal records next.
    assert_eq!(
        net.agents[0].list(id).unwrap().tasks[0].status.current,
        Status::NotStarted
    );
    net.disconnect(0);
    net.connect(0);
    net.run();
    assert_eq!(net.hub.counters().changes_rejected, 1, "not retried");
    let (_, out) = net.agents[0]
        .record_status(id, &upd(2, Status::InProgress, "w1"), NOW)
        .unwrap();
    net.route_agent(0, out);
    net.run();
    assert_eq!(net.hub.counters().changes_rejected, 1);
    assert_eq!(
        net.agents[1].list(id).unwrap().tasks[0].status.current,
        Status::InProgress,
        "later work reaches the other terminal"
    );
    net.assert_same_heads(0, id);
}

#[test]
fn work_recorded_offline_after_a_refused_change_is_kept_and_accepted() {
    let mut net = Net::online(2);
    net.disconnect(0);
    let id = content(3).id;
    // Offline: one event with a clock a day ahead, then good work on top of it.
    net.agents[0]
        .record_status(id, &upd(1, Status::Completed, "w1"), NOW + 86_400_000)
        .unwrap();
    let later = StatusUpdate {
        task: TaskId(Uuid::from_u128(2)),
        ..upd(2, Status::InProgress, "w2")
    };
    net.agents[0].record_status(id, &later, NOW).unwrap();
    net.connect(0);
    net.run();
    let view = net.agents[1].list(id).unwrap();
    let t2 = view.task(TaskId(Uuid::from_u128(2))).unwrap();
    assert_eq!(
        t2.status.current,
        Status::InProgress,
        "re-recorded and accepted"
    );
    assert_eq!(
        t2.status.latest.as_ref().unwrap().id,
        EventId(Uuid::from_u128(2)),
        "same event id"
    );
    assert_eq!(
        view.tasks[0].status.current,
        Status::NotStarted,
        "the refused event stays refused"
    );
    net.assert_same_heads(0, id);
    assert!(net.agents[0]
        .sync_status()
        .unwrap()
        .rejected
        .iter()
        .any(|r| r.reason.contains("after the hub's clock")));
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
    net.agents[0]
        .record_status(id, &upd(1, Status::Completed, "w1"), NOW)
        .unwrap();
    assert_eq!(
        net.agents[0].unconfirmed().values().sum::<usize>(),
        1,
        "counted while offline"
    );
    net.connect(0);
    net.run();
    assert_eq!(
        net.agents[0].unconfirmed().values().sum::<usize>(),
        0,
        "confirmed after sync"
    );
    let (_, out) = net.agents[0]
        .record_status(id, &upd(2, Status::Reopened, "w1"), NOW)
        .unwrap();
    assert_eq!(net.agents[0].unconfirmed().values().sum::<usize>(), 1);
    net.route_agent(0, out);
    net.run();
    assert_eq!(
        net.agents[0].unconfirmed().values().sum::<usize>(),
        0,
        "confirmed while online"
    );
}

mod templates {
    use super::*;
    use crate::ids::{StoreId, TemplateId};
    use crate::recurrence::Recurrence;
    use crate::template::{task_id_in, DueSpec, Template, TemplateTask};
    use chrono::{NaiveDate, NaiveTime};

    fn daily() -> Template {
        Template {
            id: TemplateId(Uuid::from_u128(900)),
            revision: 0,
            name: "Opening".into(),
            recurrence: Recurrence::new(
                "FREQ=DAILY",
                NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                NaiveTime::from_hms_opt(7, 0, 0).unwrap(),
            )
            .unwrap(),
            tasks: vec![TemplateTask {
                key: Uuid::from_u128(1),
                title: "Unlock the doors".into(),
                description: String::new(),
                due: Some(DueSpec::AfterStart(15)),
                priority: Default::default(),
                link: None,
                assignee: None,
            }],
        }
    }

    fn store() -> StoreId {
        content(1).meta.store
    }

    #[test]
    fn the_hub_materializes_a_horizon_and_agents_receive_it() {
        let mut net = Net::new(1);
        let t = net.hub.put_template(daily()).unwrap();
        assert_eq!(t.revision, 1);
        net.hub.assign_template(t.id, &[store()]).unwrap();
        net.connect(0);
        net.run();
        let out = net.hub.materialize(NOW, 3).unwrap();
        net.route_hub(out);
        net.run();
        let lists = net.agents[0].lists();
        let opening: Vec<_> = lists.iter().filter(|l| l.meta.name == "Opening").collect();
        assert_eq!(opening.len(), 4, "today and three days ahead");
        assert_eq!(net.agents[0].directory().unwrap().templates.len(), 1);
        // Idempotent: a second tick makes nothing new.
        assert!(net.hub.materialize(NOW, 3).unwrap().is_empty());
    }

    /// Two hubs on one database, each serving some stores (two nodes of a
    /// cluster, or two replica threads of one): a template deleted through
    /// the one that does not serve the store is withdrawn from the store
    /// by the one that does, at its next materialization.
    #[test]
    fn a_template_deleted_elsewhere_is_withdrawn_where_its_store_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let open = |name: &str| {
            let db = SqliteDatabase::open(dir.path().join("hub.db"), [0xAA; 16]).unwrap();
            let cfg = HubConfig {
                peer_id: PeerId::new(name),
                storage_id: StorageId::new("hub-storage"),
                limits: HubLimits::default(),
            };
            Hub::open(db, cfg).unwrap()
        };
        let (mut here, mut there) = (open("here"), open("there"));
        here.add_store(&StoreRecord {
            id: store(),
            name: "Store".into(),
            time_zone: "Europe/Berlin".into(),
        })
        .unwrap();
        here.serve_only(|_| false);
        there.serve_only(|_| true);
        let t = here.put_template(daily()).unwrap();
        here.assign_template(t.id, &[store()]).unwrap();
        there.materialize(NOW, 3).unwrap();
        let dir_doc = DocumentId::directory_of(&store());
        let lists = |hub: &mut Hub| {
            let d = crate::document::directory::read(hub.document(dir_doc).unwrap()).unwrap();
            (d.entries.len(), d.templates.len())
        };
        assert_eq!(lists(&mut there), (4, 1), "today and three days ahead");

        let (removal, _) = here.delete_template(t.id, NOW).unwrap();
        assert!(removal.withdrawn.is_empty(), "not its store");
        there.materialize(NOW, 3).unwrap();
        assert_eq!(
            lists(&mut there),
            (1, 0),
            "the future lists and the template are withdrawn; today's stays"
        );
        // Once: the next tick finds nothing to do.
        assert!(there.materialize(NOW, 3).unwrap().is_empty());
    }

    #[test]
    fn editing_a_template_updates_future_instances_and_keeps_status() {
        let mut net = Net::new(1);
        let t = net.hub.put_template(daily()).unwrap();
        net.hub.assign_template(t.id, &[store()]).unwrap();
        net.hub.materialize(NOW, 1).unwrap();
        net.connect(0);
        net.run();
        let list = net.agents[0]
            .lists()
            .into_iter()
            .find(|l| l.meta.name == "Opening")
            .unwrap();
        let task = list.tasks[0].spec.id;
        let update = StatusUpdate {
            id: EventId(Uuid::from_u128(77)),
            task,
            status: Status::Completed,
            worker: "w1".parse().unwrap(),
            terminal: "pos-1".parse().unwrap(),
            note: None,
        };
        let (_, out) = net.agents[0].record_status(list.id, &update, NOW).unwrap();
        net.route_agent(0, out);
        net.run();

        let mut edited = daily();
        edited.tasks[0].title = "Unlock the doors and switch on the lights".into();
        edited.tasks.push(TemplateTask {
            key: Uuid::from_u128(2),
            title: "Count the float".into(),
            description: String::new(),
            due: None,
            priority: Default::default(),
            link: None,
            assignee: None,
        });
        assert_eq!(net.hub.put_template(edited).unwrap().revision, 2);
        let out = net.hub.materialize(NOW, 1).unwrap();
        net.route_hub(out);
        net.run();
        let after = net.agents[0].list(list.id).unwrap();
        assert_eq!(after.tasks.len(), 2);
        assert_eq!(
            after.tasks[0].spec.title,
            "Unlock the doors and switch on the lights"
        );
        assert_eq!(
            after.tasks[0].status.current,
            Status::Completed,
            "status kept"
        );
        assert_eq!(
            after.tasks[1].spec.id,
            task_id_in(list.id, Uuid::from_u128(2))
        );
    }

    #[test]
    fn an_offline_agent_materializes_the_same_documents_as_the_hub() {
        let mut net = Net::new(1);
        let t = net.hub.put_template(daily()).unwrap();
        net.hub.assign_template(t.id, &[store()]).unwrap();
        net.hub.materialize(NOW, 0).unwrap();
        net.connect(0);
        net.run();
        net.disconnect(0);
        // Two days later, still offline: the agent makes today's list itself.
        let later = NOW + 2 * 86_400_000;
        net.agents[0].materialize_offline(later, 0).unwrap();
        let id = net.agents[0]
            .lists()
            .into_iter()
            .filter(|l| l.meta.name == "Opening")
            .max_by_key(|l| l.meta.date)
            .unwrap()
            .id;
        let update = StatusUpdate {
            id: EventId(Uuid::from_u128(78)),
            task: net.agents[0].list(id).unwrap().tasks[0].spec.id,
            status: Status::InProgress,
            worker: "w1".parse().unwrap(),
            terminal: "pos-1".parse().unwrap(),
            note: None,
        };
        net.agents[0].record_status(id, &update, later).unwrap();
        // The hub catches up on its own schedule, then the agent reconnects.
        net.now = later;
        net.hub.materialize(later, 0).unwrap();
        net.connect(0);
        net.run();
        let hub_doc = net.hub.document(id).unwrap().clone();
        let agent_doc = net.agents[0].document(id).unwrap();
        assert_eq!(hub_doc.get_heads(), agent_doc.get_heads());
        assert_eq!(
            hub_doc.get_changes(&[]).len(),
            agent_doc.get_changes(&[]).len()
        );
        assert_eq!(
            crate::document::instance::read(&hub_doc).unwrap().tasks[0]
                .status
                .current,
            Status::InProgress
        );
        assert_eq!(net.hub.counters().changes_rejected, 0);
    }
}

#[test]
fn the_status_index_follows_every_accepted_change() {
    let mut net = Net::online(2);
    let id = content(3).id;
    let rows = net.hub.db().status_by_list(None, NOW).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].not_started, rows[0].completed), (3, 0));
    let (_, out) = net.agents[0]
        .record_status(id, &upd(1, Status::Completed, "w1"), NOW)
        .unwrap();
    net.route_agent(0, out);
    net.run();
    let rows = net.hub.db().status_by_list(None, NOW).unwrap();
    assert_eq!((rows[0].not_started, rows[0].completed), (2, 1));
    // Concurrent disagreement shows up as a conflict in the grid.
    net.disconnect(0);
    net.disconnect(1);
    net.agents[0]
        .record_status(id, &upd(2, Status::Reopened, "w1"), NOW + 1)
        .unwrap();
    net.agents[1]
        .record_status(id, &upd(3, Status::InProgress, "w2"), NOW + 2)
        .unwrap();
    net.connect(0);
    net.connect(1);
    net.run();
    let rows = net
        .hub
        .db()
        .status_by_list(Some(&content(3).meta.store), NOW)
        .unwrap();
    assert_eq!(rows[0].conflicts, 1);
    let by_worker = net.hub.db().status_by_worker(None, Some("w2"), 10).unwrap();
    assert_eq!(by_worker.len(), 1);
    assert_eq!(by_worker[0].status, "in_progress");
    assert_eq!(by_worker[0].title, "Task 0");
    assert_eq!(
        net.hub.db().status_by_worker(None, None, 10).unwrap().len(),
        3
    );
}

/// Publish `lists` in one batch (their status index is left due); the
/// fan-out to route.
fn publish_in_one_batch(hub: &mut Hub, lists: &[crate::model::InstanceContent]) -> Vec<Output> {
    let (r, out) = hub.batched(|hub| {
        let mut out = Vec::new();
        for l in lists {
            out.extend(hub.publish(l, NOW)?);
        }
        Ok(((), out))
    });
    r.unwrap();
    out
}

/// `content(3)` moved to `days_before` NOW's (UTC) date: another list of
/// the same store and template, dated so.
fn list_dated(days_before: u64) -> crate::model::InstanceContent {
    let today = chrono::DateTime::from_timestamp_millis(NOW)
        .unwrap()
        .date_naive();
    let date = today - chrono::Days::new(days_before);
    let mut c = content(3);
    c.id =
        crate::ids::DocumentId::recurring_instance(c.meta.template.unwrap(), &c.meta.store, date);
    c.meta.date = date;
    c
}

/// Publish today's list, so `content(3)` (dated weeks before NOW) is old.
fn publish_today(net: &mut Net) -> crate::ids::DocumentId {
    let c = list_dated(0);
    net.hub.publish(&c, NOW).unwrap();
    c.id
}

/// A year-old replica must open fast: only today's working set loads, the
/// rest on first use, and a list changed offline still reaches the hub
/// after a restart although it is old.
#[test]
fn old_lists_load_on_first_use_and_their_offline_changes_survive_a_restart() {
    let mut net = Net::new(1);
    let today = publish_today(&mut net);
    let recent = list_dated(2);
    net.hub.publish(&recent, NOW).unwrap();
    let old: Vec<_> = (3..23)
        .map(|days| {
            let c = list_dated(days);
            net.hub.publish(&c, NOW).unwrap();
            c.id
        })
        .collect();
    net.connect(0);
    net.run();
    // The directory, today's, the recent one, 20 old, and `content(3)`.
    assert_eq!(net.agents[0].loaded_count(), 24);
    assert_eq!(
        net.agents[0].lists().len(),
        2,
        "new old lists are not today's"
    );
    net.disconnect(0);

    net.restart(0, NOW);
    let agent = &net.agents[0];
    assert_eq!(
        agent.loaded_count(),
        3,
        "the directory and two recent lists"
    );
    let mut lists: Vec<_> = agent.lists().into_iter().map(|l| l.id).collect();
    lists.sort();
    let mut expected = vec![today, recent.id];
    expected.sort();
    assert_eq!(lists, expected, "today's working set");
    assert_eq!(agent.all_list_ids().unwrap().len(), 23);
    assert_eq!(agent.list(old[0]).unwrap().tasks.len(), 3, "loads on use");
    assert_eq!(agent.loaded_count(), 4);
    assert_eq!(agent.lists().len(), 2, "reading history keeps it out");

    // Offline: a change to an old list, then a restart before any connect.
    net.agents[0]
        .record_status(old[5], &upd(1, Status::Completed, "w1"), NOW)
        .unwrap();
    net.restart(0, NOW);
    assert_eq!(
        net.agents[0].loaded_count(),
        4,
        "the unconfirmed list loads at open"
    );
    net.connect(0);
    net.run();
    assert_eq!(
        net.agents[0].loaded_count(),
        4,
        "synced old lists stay on disk"
    );
    assert!(net.agents[0].unconfirmed().is_empty());
    let at_hub = crate::document::instance::read(net.hub.document(old[5]).unwrap()).unwrap();
    assert_eq!(at_hub.tasks[0].status.current, Status::Completed);
    assert_eq!(
        net.hub.document(old[5]).unwrap().get_heads(),
        net.agents[0].document(old[5]).unwrap().get_heads()
    );

    // Confirmed, so the next open leaves it on disk.
    net.restart(0, NOW);
    assert_eq!(net.agents[0].loaded_count(), 3);
}

/// A list whose sync state was never saved (the agent crashed before a
/// clean disconnect) is synced at the next connect even though it is old
/// and not loaded at open: HQ's edit made meanwhile reaches the terminal.
#[test]
fn an_old_list_without_saved_sync_state_is_synced_at_connect() {
    let mut net = Net::new(1);
    publish_today(&mut net);
    let id = content(3).id;
    net.connect(0);
    net.run();
    net.restart(0, NOW); // a crash: no sync state saved
    assert_eq!(net.agents[0].loaded_count(), 2, "directory, today's list");
    let mut spec = content(3).tasks[0].clone();
    spec.title = "Count the float twice".into();
    net.hub
        .edit(id, NOW, |d| {
            Ok(crate::document::instance::update_task(d, &spec, NOW)?
                .into_iter()
                .collect())
        })
        .unwrap();
    net.connect(0);
    net.run();
    assert_eq!(net.agents[0].loaded_count(), 3);
    assert_eq!(net.agents[0].lists().len(), 1, "synced, not today's");
    assert_eq!(
        net.agents[0].list(id).unwrap().tasks[0].spec.title,
        "Count the float twice"
    );
}

/// An old list left on disk at open and opened while online joins the
/// sync, so HQ's edit made meanwhile reaches it.
#[test]
fn an_old_list_opened_while_online_catches_up() {
    let mut net = Net::new(1);
    publish_today(&mut net);
    let id = content(3).id;
    net.connect(0);
    net.run();
    net.disconnect(0); // sync state saved: no need to sync it at connect
    net.restart(0, NOW);
    net.connect(0);
    net.run();
    assert_eq!(net.agents[0].loaded_count(), 2);
    let mut spec = content(3).tasks[0].clone();
    spec.title = "Count the float twice".into();
    let out = net
        .hub
        .edit(id, NOW, |d| {
            Ok(crate::document::instance::update_task(d, &spec, NOW)?
                .into_iter()
                .collect())
        })
        .unwrap();
    assert!(out.is_empty(), "the terminal does not sync that list");
    assert_eq!(
        net.agents[0].list(id).unwrap().tasks[0].spec.title,
        "Task 0",
        "as stored"
    );
    let out = net.agents[0].sync_new_loads();
    assert_eq!(out.len(), 1);
    net.route_agent(0, out);
    net.run();
    assert_eq!(
        net.agents[0].list(id).unwrap().tasks[0].spec.title,
        "Count the float twice"
    );
}

/// Without newer lists, the newest the directory holds counts as today:
/// a terminal that got no new lists for weeks starts with the last ones.
#[test]
fn the_newest_lists_load_when_nothing_is_dated_today() {
    let mut net = Net::new(1);
    net.connect(0);
    net.run();
    net.disconnect(0);
    net.restart(0, NOW); // content(3) is dated weeks before NOW
    assert_eq!(net.agents[0].loaded_count(), 2);
    assert_eq!(net.agents[0].lists().len(), 1);
}

#[test]
fn a_purge_counts_first_then_removes_lists_from_the_hub_and_the_terminals() {
    use crate::storage::PurgeFilter;
    let mut net = Net::new(1);
    net.connect(0);
    net.run();
    let id = content(3).id;
    assert!(net.agents[0].list(id).is_ok());
    let filter = PurgeFilter {
        before: Some(chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()),
        ..Default::default()
    };
    let completed_only = PurgeFilter {
        completed_only: true,
        ..filter.clone()
    };
    let (r, _) = net.hub.purge(&completed_only, true, NOW).unwrap();
    assert_eq!(r.count, 0, "nothing is completed yet");
    let (r, out) = net.hub.purge(&filter, true, NOW).unwrap();
    assert_eq!((r.count, out.len()), (1, 0), "a dry run only counts");
    assert!(net.hub.document(id).is_ok());

    let (r, out) = net.hub.purge(&filter, false, NOW).unwrap();
    assert_eq!(r.documents, vec![id]);
    net.route_hub(out);
    net.run();
    assert!(net.hub.document(id).is_err(), "gone at the hub");
    assert!(net.hub.db().status_by_list(None, NOW).unwrap().is_empty());
    assert!(net.agents[0].list(id).is_err(), "gone from the terminal");
    assert!(!net.agents[0].db().document_exists(id).unwrap());
    // The terminal asking for it again gets nothing.
    net.disconnect(0);
    net.connect(0);
    net.run();
    assert!(net.agents[0].list(id).is_err());
}

#[test]
fn a_roster_edit_reaches_a_connected_terminal_and_removing_the_store_cuts_it_off() {
    let mut net = Net::new(1);
    net.connect(0);
    net.run();
    let store = content(1).meta.store;
    let ana: crate::ids::WorkerId = "w-ana".parse().unwrap();
    let pin = crate::document::directory::PinHash::new(&ana, "2468", [3; 16]).unwrap();
    let rec = crate::document::directory::RosterWorker {
        name: "Ana".into(),
        role: "manager".parse().unwrap(),
        groups: vec![],
        pin: Some(pin.to_string()),
    };
    let out = net.hub.put_worker(&store, &ana, &rec, net.now).unwrap();
    assert!(!out.is_empty(), "pushed to the connected terminal");
    net.route_hub(out);
    net.run();
    let roster = net.agents[0].directory().unwrap().roster;
    assert!(roster[&ana].check_pin(&ana, "2468"));
    assert_eq!(
        net.hub.roster(&store).unwrap().len(),
        4,
        "w1, w2, w3 and Ana"
    );

    // A bad PIN hash or an empty name never reaches the document.
    let bad = crate::document::directory::RosterWorker {
        pin: Some("1234".into()),
        ..rec.clone()
    };
    assert!(net.hub.put_worker(&store, &ana, &bad, net.now).is_err());
    assert!(net.hub.roster(&store).unwrap()[&ana].pin.is_some());

    let (removed, out) = net.hub.remove_worker(&store, &ana, net.now).unwrap();
    assert!(removed);
    net.route_hub(out);
    net.run();
    assert!(!net.agents[0].directory().unwrap().roster.contains_key(&ana));

    // Removing the store closes its connection and deletes its documents.
    let docs = net.hub.db().documents_of_store(&store).unwrap().len();
    assert!(docs >= 2, "directory and list");
    let (report, out) = net.hub.remove_store(&store, net.now).unwrap();
    assert_eq!(report.documents_deleted, docs);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Close { conn, .. } if *conn == conn_of(0))));
    assert_eq!(net.hub.connection_count(), 0);
    assert!(net.hub.db().documents_of_store(&store).unwrap().is_empty());
    assert!(matches!(
        net.hub.roster(&store),
        Err(super::hub::HubError::UnknownStore(_))
    ));
}

#[test]
fn revoking_a_token_closes_the_stores_live_connections() {
    let mut net = Net::new(1);
    let store = content(1).meta.store;
    net.hub
        .add_token(
            "till-token",
            &Principal::Store(store),
            "till",
            net.now,
            None,
        )
        .unwrap();
    net.connect(0);
    net.run();
    let id = net.hub.list_tokens(None).unwrap()[0].id.clone();
    let out = net.hub.revoke_token_by_id(&id, net.now).unwrap().unwrap();
    assert!(out.iter().any(|o| matches!(o, Output::Close { .. })));
    assert_eq!(net.hub.connection_count(), 0);
    assert!(net.hub.revoke_token_by_id(&id, net.now).unwrap().is_none());
    assert!(net.hub.authenticate(Some("till-token"), net.now).is_err());
}

#[test]
fn retention_deletes_lists_older_than_its_age_and_keeps_newer_ones() {
    let mut net = Net::new(1);
    net.connect(0);
    net.run();
    let id = content(3).id; // dated weeks before NOW
    let (n, out) = net.hub.apply_retention(NOW, 365).unwrap();
    assert_eq!((n, out.len()), (0, 0), "younger than a year: kept");
    let (n, out) = net.hub.apply_retention(NOW, 7).unwrap();
    assert_eq!(n, 1);
    net.route_hub(out);
    net.run();
    assert!(net.hub.document(id).is_err());
    assert!(
        net.agents[0].list(id).is_err(),
        "gone from the terminal too"
    );
    assert!(
        net.hub.apply_retention_policy(NOW).unwrap().is_empty(),
        "off by default"
    );
}

fn store_list(id: DocumentId) -> crate::model::InstanceContent {
    let store = content(1).meta.store;
    let mine = crate::model::CreatedBy::Store(store.clone());
    crate::model::InstanceContent {
        id,
        meta: crate::model::ListMeta {
            store,
            name: "Spill in aisle 4".into(),
            template: None,
            date: chrono::NaiveDate::from_ymd_opt(2027, 1, 15).unwrap(),
            time_zone: "Europe/Berlin".into(),
            created_by: mine.clone(),
        },
        tasks: vec![crate::model::TaskSpec {
            id: TaskId(Uuid::from_u128(901)),
            title: "Mop it".into(),
            description: String::new(),
            start: None,
            due: None,
            priority: crate::model::Priority::High,
            link: None,
            assignee: None,
            created_by: mine,
            position: 0,
        }],
    }
}

fn v4(n: u8) -> DocumentId {
    DocumentId(uuid::Builder::from_random_bytes([n; 16]).into_uuid())
}

#[test]
fn a_list_made_at_a_terminal_reaches_the_hub_and_the_stores_other_terminals() {
    let mut net = Net::online(2);
    // Online: the list's sync may reach the hub before its directory entry.
    let online = v4(1);
    let out = net.agents[0]
        .create_list(&store_list(online), net.now)
        .unwrap();
    net.route_agent(0, out);
    net.run();
    // Offline, then reconnect.
    net.disconnect(0);
    let offline = v4(2);
    net.agents[0]
        .create_list(&store_list(offline), net.now)
        .unwrap();
    net.connect(0);
    net.run();
    let store = content(1).meta.store;
    for id in [online, offline] {
        assert_eq!(
            net.hub.db().doc_owner(id).unwrap(),
            Some((store.clone(), crate::document::DocKind::Instance))
        );
        let at_hub = crate::document::instance::read(net.hub.document(id).unwrap()).unwrap();
        assert_eq!(at_hub.tasks[0].spec.title, "Mop it");
        assert!(net.agents[1].list(id).is_ok(), "the other terminal has it");
    }
    assert!(net.agents[0].unconfirmed().is_empty(), "all confirmed");
    assert_eq!(net.hub.counters().changes_rejected, 0);
    // Only random ids: a v5 id could be another store's recurring list.
    assert!(net.agents[0]
        .create_list(&store_list(DocumentId(Uuid::from_u128(5))), net.now)
        .is_err());
}

#[test]
fn in_a_batch_the_status_index_is_due_at_commit_caught_up_before_it_is_read_and_a_second_terminal_converges(
) {
    let mut net = Net::online(2);
    let id = content(3).id;
    let completed_in = |store: &dyn HubStorage| {
        store
            .status_by_list(None, NOW)
            .unwrap()
            .iter()
            .find(|r| r.doc == id)
            .map(|r| r.completed)
    };
    let completed = |net: &Net| completed_in(net.hub.db());
    assert_eq!(completed(&net), Some(0));
    net.hub.begin_batch().unwrap();
    for (n, task_status) in [(1, Status::InProgress), (2, Status::Completed)] {
        let (_, out) = net.agents[0]
            .record_status(id, &upd(n, task_status, "w1"), NOW + n as i64)
            .unwrap();
        net.route_agent(0, out);
    }
    net.run();
    assert_eq!(completed(&net), Some(0), "not indexed per frame");
    // A loaded hub defers the index (`commit_batch` writes it at once).
    net.hub.commit_batch_indexing(false).unwrap();
    // Sync first: the list is due, indexed once the hub is idle or before
    // anything reads the index.
    assert_eq!(completed(&net), Some(0), "deferred");
    assert_eq!(net.hub.index_backlog(), 1);
    assert_eq!(completed_in(net.hub.indexed_store()), Some(1));
    assert_eq!(net.hub.index_backlog(), 0);
    assert_eq!(
        net.agents[1].list(id).unwrap().tasks[0].status.current,
        Status::Completed
    );
}

/// The hub's status index, written a row at a time as lists change, holds
/// what a full rewrite of the list would.
fn assert_index_is_a_full_rewrite(
    net: &mut Net,
    full: &mut SqliteDatabase,
    doc: DocumentId,
    after: &str,
) {
    let view = crate::document::instance::read(net.hub.document(doc).unwrap()).unwrap();
    full.index_instance(&view).unwrap();
    assert_eq!(
        SqliteDatabase::open_reader(net.hub.indexed_store().location())
            .unwrap()
            .index_contents(),
        full.index_contents(),
        "after {after}"
    );
}

fn upd_task(n: u128, task: u128, status: Status, worker: &str) -> StatusUpdate {
    StatusUpdate {
        task: TaskId(Uuid::from_u128(task)),
        ..upd(n, status, worker)
    }
}

#[test]
fn the_hubs_incremental_status_index_is_what_a_full_rewrite_writes() {
    use crate::document::instance;
    use crate::document::instance_tests::task_spec;
    let mut net = Net::new(2);
    let mut full = SqliteDatabase::open(net._dir.path().join("full.db"), [0xBB; 16]).unwrap();
    let id = content(3).id;
    net.connect(0);
    net.connect(1);
    net.run();
    assert_index_is_a_full_rewrite(&mut net, &mut full, id, "publishing");
    assert_eq!(net.hub.indexed_document_count(), 1);

    let (_, out) = net.agents[0]
        .record_status(id, &upd(1, Status::InProgress, "w1"), NOW)
        .unwrap();
    net.route_agent(0, out);
    net.run();
    assert_index_is_a_full_rewrite(&mut net, &mut full, id, "a new event");

    net.hub.begin_batch().unwrap();
    for (i, u) in [
        upd(2, Status::Completed, "w1"),
        upd_task(3, 3, Status::InProgress, "w2"),
    ]
    .iter()
    .enumerate()
    {
        let (_, out) = net.agents[i].record_status(id, u, NOW + 1).unwrap();
        net.route_agent(i, out);
    }
    net.run();
    net.hub.commit_batch().unwrap();
    assert_index_is_a_full_rewrite(&mut net, &mut full, id, "a batch");

    let to: crate::model::Assignee = "worker:w-9".parse().unwrap();
    let task2 = TaskId(Uuid::from_u128(2));
    let out = net
        .hub
        .edit(id, NOW, |d| {
            Ok(instance::set_assignee(d, task2, Some(&to), NOW)?
                .into_iter()
                .collect())
        })
        .unwrap();
    net.route_hub(out);
    net.run();
    assert_index_is_a_full_rewrite(&mut net, &mut full, id, "a reassignment");

    let task3 = TaskId(Uuid::from_u128(3));
    let out = net
        .hub
        .edit(id, NOW, |d| {
            Ok(instance::remove_task(d, task3, NOW)?.into_iter().collect())
        })
        .unwrap();
    net.route_hub(out);
    net.run();
    assert_index_is_a_full_rewrite(&mut net, &mut full, id, "a task removal");

    let out = net
        .hub
        .edit(id, NOW, |d| {
            instance::add_task(d, &task_spec(7, "Mop"), NOW)
        })
        .unwrap();
    net.route_hub(out);
    net.run();
    let (_, out) = net.agents[1]
        .record_status(id, &upd_task(4, 7, Status::Completed, "w2"), NOW + 2)
        .unwrap();
    net.route_agent(1, out);
    net.run();
    assert_index_is_a_full_rewrite(&mut net, &mut full, id, "a new task and its event");
}

#[test]
fn what_the_hub_remembers_of_the_index_is_bounded_by_its_document_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteDatabase::open(dir.path().join("hub.db"), [0xAA; 16]).unwrap();
    let limits = HubLimits {
        max_cached_documents: 2,
        ..HubLimits::default()
    };
    let cfg = HubConfig {
        peer_id: PeerId::new("hub"),
        storage_id: StorageId::new("hub-storage"),
        limits,
    };
    let mut hub = Hub::open(store, cfg).unwrap();
    hub.add_store(&StoreRecord {
        id: content(1).meta.store,
        name: "Store 42".into(),
        time_zone: "Europe/Berlin".into(),
    })
    .unwrap();
    staff(&mut hub, &content(1).meta.store);
    for days in 1..=5 {
        hub.publish(&list_dated(days), NOW).unwrap();
        assert!(hub.cached_document_count() <= 2);
        assert!(hub.indexed_document_count() <= hub.cached_document_count());
        assert!(hub.viewed_document_count() <= hub.cached_document_count());
    }
    assert_eq!(hub.db().status_by_list(None, NOW).unwrap().len(), 5);
    let everything = crate::storage::PurgeFilter::default();
    hub.purge(&everything, false, NOW).unwrap();
    assert_eq!(hub.indexed_document_count(), 0);
    assert_eq!(hub.viewed_document_count(), 0);
    assert!(hub.db().status_by_list(None, NOW).unwrap().is_empty());
}

/// A list whose index was due when the hub stopped (crashed) is indexed
/// after the next start: the mark was written with its changes.
#[test]
fn a_list_due_for_indexing_at_a_crash_is_indexed_after_restart() {
    let mut net = Net::new(1);
    net.connect(0);
    net.run();
    let id = content(3).id;
    net.hub.begin_batch().unwrap();
    let (_, out) = net.agents[0]
        .record_status(id, &upd(1, Status::Completed, "w1"), NOW + 1)
        .unwrap();
    net.route_agent(0, out);
    net.run();
    net.hub.commit_batch_indexing(false).unwrap();
    assert_eq!(net.hub.index_backlog(), 1);
    // The hub goes away without catching up; a new one opens the file.
    let path = std::path::PathBuf::from(net.hub.db().location());
    let cfg = HubConfig {
        peer_id: PeerId::new("hub"),
        storage_id: StorageId::new("hub-storage"),
        limits: HubLimits::default(),
    };
    let store = SqliteDatabase::open(&path, [0xAA; 16]).unwrap();
    let completed = |s: &dyn HubStorage| {
        s.status_by_list(None, NOW)
            .unwrap()
            .iter()
            .find(|r| r.doc == id)
            .map(|r| r.completed)
    };
    assert_eq!(completed(&store), Some(0), "the index was behind");
    let mut hub = Hub::open(store, cfg).unwrap();
    assert_eq!(hub.index_backlog(), 1);
    let cached = hub.cached_document_count();
    assert_eq!(completed(hub.indexed_store()), Some(1));
    assert_eq!(hub.db().index_due().unwrap(), Vec::new(), "mark cleared");
    assert_eq!(
        hub.cached_document_count(),
        cached,
        "a list loaded only to be indexed is not kept in memory"
    );
}

/// An HQ publish in `Hub::batched` is one transaction: nothing of it is
/// visible to another connection until it commits, and its fan-out is
/// returned only after that.
#[test]
fn a_batched_publish_commits_once_before_its_fan_out_is_returned() {
    let mut net = Net::new(1);
    net.connect(0);
    net.run();
    let path = std::path::PathBuf::from(net.hub.db().location());
    let owned = move |doc: DocumentId| -> i64 {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.query_row(
            "SELECT count(*) FROM doc_owners WHERE doc_id = ?1",
            [doc.as_bytes()],
            |r| r.get(0),
        )
        .unwrap()
    };
    let list = list_dated(1);
    let id = list.id;
    let check = owned.clone();
    let (r, out) = net.hub.batched(|hub| {
        let out = hub.publish(&list, NOW)?;
        assert_eq!(check(id), 0, "not visible before the commit");
        Ok(((), out))
    });
    r.unwrap();
    assert_eq!(owned(id), 1, "committed before the outputs came back");
    assert!(!out.is_empty(), "the connected terminal is told");
    net.route_hub(out);
    net.run();
    assert!(net.agents[0].list(id).is_ok(), "and the terminal has it");
}

#[test]
fn a_publish_of_many_lists_in_one_batch_leaves_their_index_due_and_a_single_one_indexes_at_once() {
    let mut net = Net::new(1);
    net.connect(0);
    net.run();
    let indexed = |store: &dyn HubStorage, id: DocumentId| {
        store
            .status_by_list(None, NOW)
            .unwrap()
            .iter()
            .any(|r| r.doc == id)
    };
    let lists: Vec<_> = (1..=3).map(list_dated).collect();
    let out = publish_in_one_batch(&mut net.hub, &lists);
    net.route_hub(out);
    net.run();
    for l in &lists {
        assert!(net.agents[0].list(l.id).is_ok(), "the terminal has it");
        assert!(!indexed(net.hub.db(), l.id), "indexed later");
    }
    assert_eq!(net.hub.index_backlog(), 3);
    for l in &lists {
        assert!(
            indexed(net.hub.indexed_store(), l.id),
            "caught up when read"
        );
    }
    assert_eq!(net.hub.index_backlog(), 0);

    let one = list_dated(4);
    let (r, _) = net.hub.batched(|hub| Ok(((), hub.publish(&one, NOW)?)));
    r.unwrap();
    assert!(indexed(net.hub.db(), one.id), "one list: in its own commit");
    assert_eq!(net.hub.index_backlog(), 0);
}

/// A query over one store brings only that store's due lists up to date;
/// another store's stay due until a query covers them.
#[test]
fn a_store_scoped_catch_up_indexes_that_stores_due_lists_only() {
    let mut net = Net::new(0);
    let other: StoreId = "store-007".parse().unwrap();
    net.hub
        .add_store(&StoreRecord {
            id: other.clone(),
            name: "Store 7".into(),
            time_zone: "Europe/Berlin".into(),
        })
        .unwrap();
    let ours: Vec<_> = (1..=2).map(list_dated).collect();
    let theirs: Vec<_> = (1..=3)
        .map(|d| {
            let mut c = list_dated(d);
            c.meta.store = other.clone();
            c.id = DocumentId::recurring_instance(c.meta.template.unwrap(), &other, c.meta.date);
            c
        })
        .collect();
    let both: Vec<_> = ours.iter().chain(&theirs).cloned().collect();
    publish_in_one_batch(&mut net.hub, &both);
    let sorted = |mut v: Vec<DocumentId>| {
        v.sort();
        v
    };
    let ids = |ls: &[crate::model::InstanceContent]| sorted(ls.iter().map(|l| l.id).collect());
    let store = ours[0].meta.store.clone();
    assert_eq!(
        sorted(net.hub.index_due_of(Some(&store)).unwrap()),
        ids(&ours)
    );
    assert_eq!(
        sorted(net.hub.index_due_of(Some(&other)).unwrap()),
        ids(&theirs)
    );
    assert_eq!(net.hub.index_due_of(None).unwrap().len(), 5);

    let due = net.hub.index_due_of(Some(&store)).unwrap();
    assert_eq!(net.hub.catch_up_index_of(&due), 2);
    assert!(net.hub.index_due_of(Some(&store)).unwrap().is_empty());
    assert_eq!(sorted(net.hub.index_due_of(None).unwrap()), ids(&theirs));
    let rows = net.hub.db().status_by_list(Some(&store), NOW).unwrap();
    let mut expected = ids(&ours);
    expected.push(content(3).id); // Net::new's list, indexed at its publish
    assert_eq!(
        sorted(rows.iter().map(|r| r.doc).collect()),
        sorted(expected)
    );
    assert!(
        net.hub
            .db()
            .status_by_list(Some(&other), NOW)
            .unwrap()
            .is_empty(),
        "the other store's lists are not indexed yet"
    );
    // Lists no longer due are skipped, not indexed again.
    assert_eq!(net.hub.catch_up_index_of(&due), 0);
    assert_eq!(net.hub.catch_up_index(), 3);
    assert_eq!(
        net.hub
            .db()
            .status_by_list(Some(&other), NOW)
            .unwrap()
            .len(),
        3
    );
}

/// The idle catch-up indexes one list, then more while it is told to,
/// all in one transaction.
#[test]
fn an_idle_catch_up_indexes_lists_while_it_is_told_to() {
    let mut net = Net::new(0);
    let lists: Vec<_> = (1..=5).map(list_dated).collect();
    publish_in_one_batch(&mut net.hub, &lists);
    assert_eq!(net.hub.index_backlog(), 5);
    assert_eq!(net.hub.catch_up_index_while(|| false), 1, "at least one");
    assert_eq!(net.hub.index_backlog(), 4);
    let mut asked = 0;
    let indexed = net.hub.catch_up_index_while(|| {
        asked += 1;
        asked < 3
    });
    assert_eq!(
        (indexed, asked),
        (3, 3),
        "one, then two more; asked after each"
    );
    assert_eq!(net.hub.catch_up_index_while(|| true), 1, "the last one");
    assert_eq!(net.hub.catch_up_index_while(|| true), 0, "nothing due");
    let rows = net.hub.db().status_by_list(None, NOW).unwrap();
    for l in &lists {
        assert!(rows.iter().any(|r| r.doc == l.id), "{} indexed", l.id);
    }
}

/// A publish that fails part-way inside a batch (here: its directory entry
/// cannot be written) is undone whole, rows and memory, and nothing of it
/// goes out; the publishes before it in the batch commit and go out.
#[test]
fn a_publish_that_fails_part_way_in_a_batch_is_undone_whole_and_the_rest_commits() {
    let mut net = Net::new(1);
    net.connect(0);
    net.run();
    let (a, b) = (list_dated(1), list_dated(2));
    let dir = DocumentId::directory_of(&a.meta.store);
    let hex = |d: DocumentId| {
        d.as_bytes()
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    };
    let injector = rusqlite::Connection::open(net.hub.db().location()).unwrap();
    // The directory change of b's publish fails: its last write.
    injector
        .execute_batch(&format!(
            "CREATE TRIGGER fail_b BEFORE INSERT ON changes
             WHEN NEW.doc_id = X'{}'
              AND EXISTS (SELECT 1 FROM doc_owners WHERE doc_id = X'{}')
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            hex(dir),
            hex(b.id)
        ))
        .unwrap();
    let (r, out) = net.hub.batched(|hub| {
        let out = hub.publish(&a, NOW)?;
        let e = hub.publish(&b, NOW).unwrap_err();
        assert!(e.to_string().contains("injected failure"), "{e}");
        Ok(((), out))
    });
    r.unwrap();
    injector.execute_batch("DROP TRIGGER fail_b").unwrap();
    net.route_hub(out);
    net.run();
    assert!(net.agents[0].list(a.id).is_ok(), "a committed and went out");
    assert!(net.agents[0].list(b.id).is_err(), "nothing of b went out");
    let store = net.hub.db();
    assert_eq!(store.doc_owner(b.id).unwrap(), None, "b's owner row undone");
    assert_eq!(
        store.known_content(b.id).unwrap(),
        vec![],
        "and its content"
    );
    assert!(
        store.load_document(b.id).unwrap().is_none(),
        "and its changes"
    );
    let entries = crate::document::directory::read(net.hub.document(dir).unwrap())
        .unwrap()
        .entries;
    assert!(entries.contains_key(&a.id) && !entries.contains_key(&b.id));
    assert!(
        !net.hub
            .indexed_store()
            .status_by_list(None, NOW)
            .unwrap()
            .iter()
            .any(|r| r.doc == b.id),
        "b is not indexed"
    );
    // Sent again, it goes through.
    let (r, out) = net.hub.batched(|hub| Ok(((), hub.publish(&b, NOW)?)));
    r.unwrap();
    net.route_hub(out);
    net.run();
    assert!(net.agents[0].list(b.id).is_ok());
}

/// A list whose index rows cannot be written at commit stays due, and is
/// indexed once they can be (not left stale until its next change).
#[test]
fn a_list_whose_index_write_fails_at_commit_stays_due() {
    let mut net = Net::new(1);
    net.connect(0);
    net.run();
    let list = list_dated(1);
    let injector = rusqlite::Connection::open(net.hub.db().location()).unwrap();
    injector
        .execute_batch(
            "CREATE TRIGGER fail_index BEFORE INSERT ON task_status
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    let (r, _) = net.hub.batched(|hub| Ok(((), hub.publish(&list, NOW)?)));
    r.unwrap();
    assert_eq!(net.hub.index_backlog(), 1, "still due");
    injector.execute_batch("DROP TRIGGER fail_index").unwrap();
    let indexed = net
        .hub
        .indexed_store()
        .status_by_list(None, NOW)
        .unwrap()
        .iter()
        .any(|r| r.doc == list.id);
    assert!(indexed);
    assert_eq!(net.hub.index_backlog(), 0);
}

/// The hub checks an event's worker against the store's roster, minding a
/// terminal that was offline when HQ took a worker off it: their work
/// from before it heard is accepted, a stranger's is refused and shown.
#[test]
fn events_by_a_worker_taken_off_the_roster_while_offline_count_and_a_strangers_do_not() {
    let mut net = Net::online(2);
    let id = content(3).id;
    let store = content(1).meta.store;
    net.disconnect(0);
    let (removed, out) = net
        .hub
        .remove_worker(&store, &"w2".parse().unwrap(), net.now)
        .unwrap();
    assert!(removed);
    net.route_hub(out);
    net.run();
    let (_, out) = net.agents[0]
        .record_status(id, &upd(1, Status::Completed, "w2"), NOW)
        .unwrap();
    net.route_agent(0, out);
    net.connect(0);
    net.run();
    assert!(net.agents[0].sync_status().unwrap().rejected.is_empty());
    assert_eq!(
        net.agents[1].list(id).unwrap().tasks[0].status.current,
        Status::Completed,
        "the former worker's completion reached the other terminal"
    );

    let (_, out) = net.agents[0]
        .record_status_of_a_stranger(id, &upd(2, Status::InProgress, "ghost-999"), NOW + 1)
        .unwrap();
    net.route_agent(0, out);
    net.run();
    let rejected = net.agents[0].sync_status().unwrap().rejected;
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0]
            .reason
            .contains("ghost-999 is not on this store's roster"),
        "{}",
        rejected[0].reason
    );
    assert_eq!(
        net.agents[1].list(id).unwrap().tasks[0].status.current,
        Status::Completed,
        "the stranger's event never reached the other terminal"
    );
}

/// The terminal records status only for a worker on its store's roster,
/// the rule the hub checks too; a stranger's update is refused before
/// anything is written.
#[test]
fn a_terminal_refuses_a_status_update_by_a_worker_not_on_its_roster() {
    let mut net = Net::online(1);
    let id = content(3).id;
    let heads = net.agents[0].document(id).unwrap().get_heads();
    let err = net.agents[0]
        .record_status(id, &upd(1, Status::Completed, "ghost-1"), NOW)
        .unwrap_err();
    assert!(
        matches!(&err, super::agent::AgentError::UnknownWorker(w) if w.as_str() == "ghost-1"),
        "{err:?}"
    );
    assert_eq!(net.agents[0].document(id).unwrap().get_heads(), heads);
    assert!(net.agents[0].unconfirmed().is_empty());
    // A worker on the roster records as before.
    net.agents[0]
        .record_status(id, &upd(2, Status::Completed, "w1"), NOW)
        .unwrap();
}
