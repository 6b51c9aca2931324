//! One test per rule, including hand-crafted hostile changes.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, Change, ObjType, ReadDoc, ScalarValue, ROOT};
use uuid::Uuid;

use super::*;
use crate::document::directory;
use crate::document::instance::{self, add_task, record_status, set_assignee};
use crate::document::instance_tests::{content, task_spec};
use crate::ids::{EventId, TaskId, WorkerId};
use crate::model::{CreatedBy, InstanceContent, Status, StatusUpdate};

/// The store's roster in these tests: a new event by anyone else is refused.
const ROSTER: &[&str] = &["w1", "w2", "w-1", "w-js"];

const NOW: i64 = 1_800_000_000_000;

struct Hub {
    doc: Automerge,
    content: InstanceContent,
    owners: RefCell<HashMap<ActorId, Principal>>,
    known: HashSet<ChangeHash>,
    hub_actor: ActorId,
}

impl Hub {
    fn new() -> Self {
        let content = content(2);
        let changes = instance::materialize(&content).unwrap();
        let known = changes.iter().map(|c| c.hash()).collect();
        let hub_actor = ActorId::from(&[0xAA; 16][..]);
        let mut doc = Automerge::new();
        doc.apply_changes(changes).unwrap();
        doc.set_actor(hub_actor.clone());
        let mut owners = HashMap::new();
        owners.insert(hub_actor.clone(), Principal::Hq);
        Hub {
            doc,
            content,
            owners: RefCell::new(owners),
            known,
            hub_actor,
        }
    }

    /// A store terminal's replica, synced with the hub's current state.
    fn terminal(&self, actor: u8) -> Automerge {
        let mut d = self.doc.fork();
        d.set_actor(ActorId::from(&[actor; 16][..]));
        d
    }

    fn check(&self, from: &Automerge, author: &Principal) -> Outcome {
        self.validate_against(&self.doc, &self.doc.get_changes_added(from), author)
    }

    /// Validate raw `changes` against `base` with the hub's actor owners,
    /// vouched content and clock.
    fn validate_against(
        &self,
        base: &Automerge,
        changes: &[Change],
        author: &Principal,
    ) -> Outcome {
        let lookup = |a: &ActorId| self.owners.borrow().get(a).cloned();
        let ctx = ValidationContext {
            doc_id: self.content.id,
            kind: DocKind::Instance,
            owner: &self.content.meta.store,
            actor_owner: &lookup,
            known_content: &self.known,
            max_event_time: NOW + 60_000,
            worker_known: &|w: &WorkerId| ROSTER.contains(&w.as_str()),
        };
        let out = validate(base, changes, author, &ctx);
        // Every case here also pins the fast path to the reference rules.
        let slow = reference::validate(base, changes, author, &ctx);
        assert_same_verdicts(&out.verdicts, &slow.verdicts);
        out
    }

    /// Validate and, like the hub, apply what was accepted.
    fn receive(&mut self, from: &Automerge, author: &Principal) -> Outcome {
        let out = self.check(from, author);
        for a in &out.new_actors {
            self.owners.borrow_mut().insert(a.clone(), author.clone());
        }
        self.doc.apply_changes(out.accepted.clone()).unwrap();
        out
    }
}

fn store() -> Principal {
    Principal::Store("store-042".parse().unwrap())
}

fn only_verdict(out: &Outcome) -> Verdict {
    let rejected: Vec<_> = out
        .verdicts
        .iter()
        .filter(|(_, v)| !matches!(v, Verdict::Accepted | Verdict::Duplicate))
        .collect();
    match rejected.as_slice() {
        [] => Verdict::Accepted,
        [(_, v), ..] => v.clone(),
    }
}

fn task(n: u128) -> TaskId {
    TaskId(Uuid::from_u128(n))
}

fn upd(n: u128, t: u128, status: Status) -> StatusUpdate {
    StatusUpdate {
        id: EventId(Uuid::from_u128(n)),
        task: task(t),
        status,
        worker: "w1".parse().unwrap(),
        terminal: "pos-1".parse().unwrap(),
        note: Some("done".into()),
    }
}

/// Commit raw ops on a terminal replica (how a hostile peer would).
fn raw(doc: &mut Automerge, f: impl FnOnce(&mut automerge::transaction::Transaction<'_>)) {
    doc.transact_with::<_, _, automerge::AutomergeError, _>(
        |_| CommitOptions::default().with_time(0),
        |tx| {
            f(tx);
            Ok(())
        },
    )
    .unwrap();
}

fn task_obj(doc: &Automerge, t: u128) -> automerge::ObjId {
    let (_, tasks) = doc.get(ROOT, "tasks").unwrap().unwrap();
    doc.get(&tasks, task(t).0.to_string()).unwrap().unwrap().1
}

#[test]
fn a_store_may_append_status_events_and_claims_its_actor() {
    let mut hub = Hub::new();
    let mut t = hub.terminal(1);
    record_status(&mut t, &upd(1, 1, Status::InProgress), NOW).unwrap();
    let out = hub.receive(&t, &store());
    assert_eq!(only_verdict(&out), Verdict::Accepted);
    assert_eq!(out.new_actors, vec![ActorId::from(&[1u8; 16][..])]);
    assert_eq!(
        instance::read(&hub.doc)
            .unwrap()
            .task(task(1))
            .unwrap()
            .status
            .current,
        Status::InProgress
    );
    // Sending the same again is a duplicate, not an error.
    let again = hub.check(&t, &store());
    assert!(
        again.verdicts.iter().all(|(_, v)| *v == Verdict::Duplicate) || again.verdicts.is_empty()
    );
}

#[test]
fn a_store_may_assign_an_hq_task() {
    let hub = Hub::new();
    let mut t = hub.terminal(1);
    set_assignee(&mut t, task(1), Some(&"worker:w7".parse().unwrap()), NOW).unwrap();
    assert_eq!(only_verdict(&hub.check(&t, &store())), Verdict::Accepted);
}

#[test]
fn a_store_may_not_assign_garbage() {
    let hub = Hub::new();
    let mut t = hub.terminal(1);
    let o = task_obj(&t, 1);
    raw(&mut t, |tx| tx.put(&o, "assignee", "everyone!").unwrap());
    assert!(matches!(
        only_verdict(&hub.check(&t, &store())),
        Verdict::Rejected(Rejection::BadValue { .. })
    ));
}

#[test]
fn a_store_may_not_edit_hq_task_fields_but_hq_may() {
    let hub = Hub::new();
    let mut t = hub.terminal(1);
    let o = task_obj(&t, 1);
    raw(&mut t, |tx| tx.put(&o, "title", "Go home early").unwrap());
    assert!(matches!(
        only_verdict(&hub.check(&t, &store())),
        Verdict::Rejected(Rejection::HqField { .. })
    ));
    assert_eq!(
        only_verdict(&hub.check(&t, &Principal::Hq)),
        Verdict::Accepted
    );
}

#[test]
fn a_store_may_not_edit_hq_list_fields() {
    let hub = Hub::new();
    let mut t = hub.terminal(1);
    let (_, meta) = t.get(ROOT, "meta").unwrap().unwrap();
    raw(&mut t, |tx| tx.put(&meta, "name", "Nothing to do").unwrap());
    assert!(matches!(
        only_verdict(&hub.check(&t, &store())),
        Verdict::Rejected(Rejection::HqField { .. })
    ));
}

#[test]
fn a_store_may_not_touch_another_stores_document() {
    let hub = Hub::new();
    let mut t = hub.terminal(1);
    record_status(&mut t, &upd(1, 1, Status::Completed), NOW).unwrap();
    let other = Principal::Store("store-007".parse().unwrap());
    assert_eq!(
        only_verdict(&hub.check(&t, &other)),
        Verdict::Rejected(Rejection::WrongStore)
    );
}

#[test]
fn a_store_may_add_and_edit_its_own_tasks() {
    let mut hub = Hub::new();
    let mut t = hub.terminal(1);
    let mut spec = task_spec(40, "Clean the spill in aisle 3");
    spec.created_by = CreatedBy::Store("store-042".parse().unwrap());
    add_task(&mut t, &spec, NOW).unwrap();
    assert_eq!(only_verdict(&hub.receive(&t, &store())), Verdict::Accepted);
    spec.title = "Clean the spill in aisle 4".into();
    instance::update_task(&mut t, &spec, NOW).unwrap();
    assert_eq!(only_verdict(&hub.receive(&t, &store())), Verdict::Accepted);
    assert_eq!(
        instance::read(&hub.doc)
            .unwrap()
            .task(spec.id)
            .unwrap()
            .spec
            .title,
        spec.title
    );
}

#[test]
fn a_store_may_not_add_a_task_claiming_hq_authorship() {
    let hub = Hub::new();
    let mut t = hub.terminal(1);
    let spec = task_spec(41, "Looks like HQ wrote it");
    add_task(&mut t, &spec, NOW).unwrap();
    assert!(matches!(
        only_verdict(&hub.check(&t, &store())),
        Verdict::Rejected(Rejection::HqField { .. })
    ));
}

#[test]
fn a_task_map_made_by_an_ordinary_actor_is_refused() {
    let hub = Hub::new();
    let mut t = hub.terminal(1);
    let (_, tasks) = t.get(ROOT, "tasks").unwrap().unwrap();
    raw(&mut t, |tx| {
        tx.put_object(&tasks, task(1).0.to_string(), ObjType::Map)
            .unwrap();
    });
    assert_eq!(
        only_verdict(&hub.check(&t, &store())),
        Verdict::Rejected(Rejection::TaskCreation)
    );
}

#[test]
fn a_forged_genesis_is_refused() {
    let hub = Hub::new();
    let mut evil = Automerge::new();
    evil.set_actor(genesis::genesis_actor(hub.content.id));
    raw(&mut evil, |tx| tx.put(ROOT, "kind", "mine").unwrap());
    let ch = evil.get_last_local_change().unwrap();
    let out = hub.validate_against(&Automerge::new(), &[ch], &store());
    assert_eq!(
        only_verdict(&out),
        Verdict::Rejected(Rejection::ForgedGenesis)
    );
}

#[test]
fn a_forged_task_genesis_is_refused() {
    let hub = Hub::new();
    let mut t = hub.terminal(1);
    t.set_actor(genesis::task_genesis_actor(hub.content.id, task(99)));
    let (_, tasks) = t.get(ROOT, "tasks").unwrap().unwrap();
    // Same actor and key as the real task genesis, but built on later heads.
    raw(&mut t, |tx| {
        tx.put_object(&tasks, task(99).0.to_string(), ObjType::Map)
            .unwrap();
    });
    assert!(matches!(
        only_verdict(&hub.check(&t, &store())),
        Verdict::Rejected(Rejection::ForgedTaskGenesis { .. })
    ));
}

#[test]
fn existing_events_cannot_be_edited_or_deleted() {
    let mut hub = Hub::new();
    let mut t = hub.terminal(1);
    record_status(&mut t, &upd(1, 1, Status::Completed), NOW).unwrap();
    hub.receive(&t, &store());
    let (_, events) = t.get(ROOT, "events").unwrap().unwrap();
    let (_, ev) = t.get(&events, 0).unwrap().unwrap();
    let mut edit = t.fork();
    edit.set_actor(ActorId::from(&[1u8; 16][..]));
    raw(&mut edit, |tx| {
        tx.put(&ev, "status", "not_started").unwrap()
    });
    assert_eq!(
        only_verdict(&hub.check(&edit, &store())),
        Verdict::Rejected(Rejection::LogNotAppendOnly)
    );
    let mut del = t.fork();
    del.set_actor(ActorId::from(&[1u8; 16][..]));
    raw(&mut del, |tx| tx.delete(&events, 0).unwrap());
    assert_eq!(
        only_verdict(&hub.check(&del, &store())),
        Verdict::Rejected(Rejection::LogNotAppendOnly)
    );
}

#[test]
fn events_from_the_future_are_refused() {
    let hub = Hub::new();
    let mut t = hub.terminal(1);
    record_status(&mut t, &upd(1, 1, Status::Completed), NOW + 3_600_000).unwrap();
    assert!(matches!(
        only_verdict(&hub.check(&t, &store())),
        Verdict::Rejected(Rejection::EventInFuture { .. })
    ));
}

#[test]
fn malformed_events_and_events_for_unknown_tasks_are_refused() {
    let hub = Hub::new();
    let mut t = hub.terminal(1);
    let (_, events) = t.get(ROOT, "events").unwrap().unwrap();
    raw(&mut t, |tx| {
        let e = tx.insert_object(&events, 0, ObjType::Map).unwrap();
        tx.put(&e, "id", Uuid::from_u128(5).to_string()).unwrap();
        tx.put(&e, "status", "completed").unwrap();
    });
    assert!(matches!(
        only_verdict(&hub.check(&t, &store())),
        Verdict::Rejected(Rejection::BadEvent(_))
    ));
    let mut t = hub.terminal(2);
    raw(&mut t, |tx| {
        let e = tx.insert_object(&events, 0, ObjType::Map).unwrap();
        for (k, v) in [
            ("id", Uuid::from_u128(6).to_string()),
            ("task", Uuid::from_u128(999).to_string()),
            ("status", "completed".into()),
            ("worker", "w1".into()),
            ("terminal", "pos-1".into()),
        ] {
            tx.put(&e, k, v).unwrap();
        }
        tx.put(&e, "at", NOW).unwrap();
    });
    assert!(matches!(
        only_verdict(&hub.check(&t, &store())),
        Verdict::Rejected(Rejection::BadEvent(_))
    ));
}

#[test]
fn unknown_fields_counters_and_root_edits_are_refused() {
    let hub = Hub::new();
    let mut t = hub.terminal(1);
    let o = task_obj(&t, 1);
    raw(&mut t, |tx| tx.put(&o, "bonus", 5).unwrap());
    assert!(matches!(
        only_verdict(&hub.check(&t, &store())),
        Verdict::Rejected(Rejection::UnknownField { .. })
    ));
    let mut t = hub.terminal(2);
    raw(&mut t, |tx| tx.put(ROOT, "kind", "other").unwrap());
    assert_eq!(
        only_verdict(&hub.check(&t, &Principal::Hq)),
        Verdict::Rejected(Rejection::RootEdit)
    );
    let mut t = hub.terminal(3);
    raw(&mut t, |tx| {
        tx.put(&o, "position", ScalarValue::counter(1)).unwrap()
    });
    let mut t2 = t.fork();
    t2.set_actor(ActorId::from(&[3u8; 16][..]));
    raw(&mut t2, |tx| tx.increment(&o, "position", 1).unwrap());
    assert!(matches!(
        only_verdict(&hub.check(&t2, &Principal::Hq)),
        Verdict::Rejected(_)
    ));
}

#[test]
fn a_store_may_not_use_an_actor_owned_by_hq() {
    let hub = Hub::new();
    let mut t = hub.terminal(1);
    t.set_actor(hub.hub_actor.clone());
    record_status(&mut t, &upd(1, 1, Status::Completed), NOW).unwrap();
    assert!(matches!(
        only_verdict(&hub.check(&t, &store())),
        Verdict::Rejected(Rejection::ForeignActor { .. })
    ));
}

#[test]
fn a_store_may_not_write_under_the_actor_of_hqs_content() {
    // The content change's actor is derived from the list's content, so
    // a store that reads the list can compute it; no one holds it in the
    // owner table. A second change under it would pass as HQ's.
    let mut hub = Hub::new();
    let content_actor = genesis::content_actor(hub.content.id, &genesis::digest_json(&hub.content));
    let mut t = hub.terminal(1);
    t.set_actor(content_actor);
    record_status(&mut t, &upd(1, 1, Status::Completed), NOW).unwrap();
    let out = hub.receive(&t, &store());
    assert!(
        matches!(
            only_verdict(&out),
            Verdict::Rejected(Rejection::ForeignActor { ref owner, .. }) if owner == "hq"
        ),
        "{out:?}"
    );
    assert!(out.new_actors.is_empty());
}

#[test]
fn a_store_may_not_write_under_a_tasks_genesis_actor() {
    let mut hub = Hub::new();
    let t1 = hub.content.tasks[0].id;
    let mut t = hub.terminal(1);
    t.set_actor(genesis::task_genesis_actor(hub.content.id, t1));
    let first = hub.content.tasks[0].id.0.as_u128();
    record_status(&mut t, &upd(1, first, Status::Completed), NOW).unwrap();
    let out = hub.receive(&t, &store());
    assert!(
        matches!(
            only_verdict(&out),
            Verdict::Rejected(Rejection::ForeignActor { ref owner, .. }) if owner == "hq"
        ),
        "{out:?}"
    );
    // The same event under the terminal's own actor goes in.
    let mut own = hub.terminal(1);
    record_status(&mut own, &upd(1, first, Status::Completed), NOW).unwrap();
    assert_eq!(
        only_verdict(&hub.receive(&own, &store())),
        Verdict::Accepted
    );
}

#[test]
fn a_reused_sequence_number_is_refused() {
    let mut hub = Hub::new();
    let base = hub.terminal(1);
    let mut a = base.fork();
    a.set_actor(ActorId::from(&[1u8; 16][..]));
    record_status(&mut a, &upd(1, 1, Status::Completed), NOW).unwrap();
    assert_eq!(only_verdict(&hub.receive(&a, &store())), Verdict::Accepted);
    // Same actor, same seq, different content (e.g. a restored backup).
    let mut b = base.fork();
    b.set_actor(ActorId::from(&[1u8; 16][..]));
    record_status(&mut b, &upd(2, 2, Status::InProgress), NOW).unwrap();
    assert!(matches!(
        only_verdict(&hub.check(&b, &store())),
        Verdict::Rejected(Rejection::SequenceReused { .. })
    ));
}

#[test]
fn a_change_built_on_a_rejected_one_is_rejected_and_missing_deps_are_reported() {
    let hub = Hub::new();
    let mut t = hub.terminal(1);
    let o = task_obj(&t, 1);
    raw(&mut t, |tx| tx.put(&o, "title", "forged").unwrap());
    record_status(&mut t, &upd(1, 1, Status::Completed), NOW).unwrap();
    let out = hub.check(&t, &store());
    assert!(out.accepted.is_empty());
    assert!(out
        .verdicts
        .iter()
        .any(|(_, v)| matches!(v, Verdict::Rejected(Rejection::DependsOnRejected(_)))));
    // Only the second change, without the first: its dependency is missing.
    let last: Change = t.get_last_local_change().unwrap();
    let out = hub.validate_against(&hub.doc, &[last], &store());
    assert_eq!(out.verdicts[0].1, Verdict::MissingDeps);
}

#[test]
fn an_offline_materialization_is_accepted_only_when_hq_can_vouch_for_it() {
    // The agent made the same instance offline: identical changes, accepted.
    let hub = Hub::new();
    let agent_changes = instance::materialize(&hub.content).unwrap();
    let out = hub.validate_against(&Automerge::new(), &agent_changes, &store());
    assert_eq!(out.accepted.len(), agent_changes.len());
    // From a template revision HQ never published: the content is refused.
    let mut other = hub.content.clone();
    other.tasks[0].title = "Something HQ never wrote".into();
    let out = hub.validate_against(
        &Automerge::new(),
        &instance::materialize(&other).unwrap(),
        &store(),
    );
    assert!(out
        .verdicts
        .iter()
        .any(|(_, v)| matches!(v, Verdict::Rejected(Rejection::HqField { .. }))));
}

#[test]
fn directory_rules() {
    let store_id: crate::ids::StoreId = "store-042".parse().unwrap();
    let mut hub_dir = directory::create(&store_id, ActorId::from(&[0xAA; 16][..]));
    let hq_entry = directory::DirectoryEntry {
        name: "Closing".into(),
        date: chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap(),
        template: None,
        created_by: CreatedBy::Hq,
    };
    let hq_inst = DocumentId(Uuid::from_u128(1));
    directory::put_entry(&mut hub_dir, hq_inst, &hq_entry, 0).unwrap();
    let owners = |_: &ActorId| None;
    let known = HashSet::new();
    let ctx = ValidationContext {
        doc_id: DocumentId::directory_of(&store_id),
        kind: DocKind::Directory,
        owner: &store_id,
        actor_owner: &owners,
        known_content: &known,
        max_event_time: NOW,
        worker_known: &|w: &WorkerId| ROSTER.contains(&w.as_str()),
    };
    let check =
        |edit: &Automerge| validate(&hub_dir, &hub_dir.get_changes_added(edit), &store(), &ctx);

    let mut own = hub_dir.fork();
    let mine = directory::DirectoryEntry {
        created_by: CreatedBy::Store(store_id.clone()),
        ..hq_entry.clone()
    };
    directory::put_entry(&mut own, DocumentId(Uuid::from_u128(2)), &mine, 0).unwrap();
    assert_eq!(only_verdict(&check(&own)), Verdict::Accepted);

    let mut hijack = hub_dir.fork();
    directory::put_entry(&mut hijack, hq_inst, &mine, 0).unwrap();
    assert!(matches!(
        only_verdict(&check(&hijack)),
        Verdict::Rejected(Rejection::HqField { .. })
    ));

    let mut drop_hq = hub_dir.fork();
    directory::remove_entry(&mut drop_hq, hq_inst, 0).unwrap();
    assert!(matches!(
        only_verdict(&check(&drop_hq)),
        Verdict::Rejected(Rejection::HqField { .. })
    ));

    let mut tpl = hub_dir.fork();
    directory::put_template(
        &mut tpl,
        crate::ids::TemplateId(Uuid::from_u128(3)),
        "{}",
        0,
    )
    .unwrap();
    assert!(matches!(
        only_verdict(&check(&tpl)),
        Verdict::Rejected(Rejection::HqField { .. })
    ));
}

#[test]
fn the_roster_is_hqs_and_its_map_comes_only_from_its_genesis() {
    let store_id: crate::ids::StoreId = "store-042".parse().unwrap();
    let dir_id = DocumentId::directory_of(&store_id);
    let base = directory::create(&store_id, ActorId::from(&[0xAA; 16][..]));
    let owners = |_: &ActorId| None;
    let known = HashSet::new();
    let ctx = ValidationContext {
        doc_id: dir_id,
        kind: DocKind::Directory,
        owner: &store_id,
        actor_owner: &owners,
        known_content: &known,
        max_event_time: NOW,
        worker_known: &|w: &WorkerId| ROSTER.contains(&w.as_str()),
    };
    let worker = directory::RosterWorker {
        name: "Ana".into(),
        role: "cashier".parse().unwrap(),
        groups: vec![],
        pin: None,
    };
    let ana: crate::ids::WorkerId = "w-1".parse().unwrap();

    // HQ adds the first worker: roster genesis + entry, both accepted.
    let mut hq = base.fork();
    hq.set_actor(ActorId::from(&[0xAA; 16][..]));
    let made = directory::put_worker(&mut hq, &ana, &worker, 0).unwrap();
    assert_eq!(made.len(), 2);
    let out = validate(&base, &made, &Principal::Hq, &ctx);
    assert!(out.verdicts.iter().all(|(_, v)| *v == Verdict::Accepted));

    // The genesis alone is harmless from anyone, even a store.
    let g = genesis::roster_genesis(dir_id);
    assert_eq!(
        only_verdict(&validate(&base, std::slice::from_ref(&g), &store(), &ctx)),
        Verdict::Accepted
    );

    // A store writing the roster (adding itself as manager) is refused.
    let mut with_roster = base.fork();
    with_roster.apply_changes([g]).unwrap();
    let mut forged = with_roster.fork();
    forged.set_actor(ActorId::from(&[5u8; 16][..]));
    let boss = directory::RosterWorker {
        role: "manager".parse().unwrap(),
        ..worker.clone()
    };
    directory::put_worker(&mut forged, &ana, &boss, 0).unwrap();
    assert!(matches!(
        only_verdict(&validate(
            &with_roster,
            &with_roster.get_changes_added(&forged),
            &store(),
            &ctx
        )),
        Verdict::Rejected(Rejection::HqField { .. })
    ));

    // The roster genesis actor writing anything else is a forgery.
    let mut fake = base.fork();
    fake.set_actor(genesis::roster_genesis_actor(dir_id));
    fake.transact::<_, _, automerge::AutomergeError>(|tx| {
        tx.put_object(ROOT, "roster", ObjType::List)?;
        Ok(())
    })
    .unwrap();
    assert_eq!(
        only_verdict(&validate(
            &base,
            &base.get_changes_added(&fake),
            &store(),
            &ctx
        )),
        Verdict::Rejected(Rejection::ForgedGenesis)
    );
}

#[test]
fn events_written_with_text_objects_as_automerge_3_js_does_are_accepted() {
    let mut hub = Hub::new();
    let mut t = hub.terminal(5);
    let (_, events) = t.get(ROOT, "events").unwrap().unwrap();
    raw(&mut t, |tx| {
        let e = tx.insert_object(&events, 0, ObjType::Map).unwrap();
        for (k, v) in [
            ("id", Uuid::from_u128(61).to_string()),
            ("task", task(1).0.to_string()),
            ("status", "completed".into()),
            ("worker", "w-js".into()),
            ("terminal", "browser".into()),
        ] {
            let text = tx.put_object(&e, k, ObjType::Text).unwrap();
            tx.splice_text(&text, 0, 0, &v).unwrap();
        }
        tx.put(&e, "at", ScalarValue::F64(NOW as f64)).unwrap();
        tx.put_object(&e, "prev", ObjType::List).unwrap();
    });
    let out = hub.receive(&t, &store());
    assert_eq!(only_verdict(&out), Verdict::Accepted);
    let v = instance::read(&hub.doc).unwrap();
    let s = &v.task(task(1)).unwrap().status;
    assert_eq!(s.current, Status::Completed);
    assert_eq!(s.latest.as_ref().unwrap().worker.as_str(), "w-js");

    // Editing that text later is editing the log: refused.
    let mut t2 = hub.doc.fork();
    t2.set_actor(ActorId::from(&[5u8; 16][..]));
    let (_, ev) = t2.get(&events, 0).unwrap().unwrap();
    let (_, status_text) = t2.get(&ev, "status").unwrap().unwrap();
    raw(&mut t2, |tx| {
        tx.splice_text(&status_text, 0, 9, "in_progres").unwrap()
    });
    assert_eq!(
        only_verdict(&hub.check(&t2, &store())),
        Verdict::Rejected(Rejection::LogNotAppendOnly)
    );
}

/// The fast path must reach the reference's verdict on every change, for
/// the same reason, with one allowance: where Automerge's debug build
/// trips its own consistency assertion on a malformed object (a panic
/// `validate` turns into "malformed"), the reference may name the reason
/// the release build gives. Both refuse the change.
pub(crate) fn assert_same_verdicts(fast: &[(ChangeHash, Verdict)], slow: &[(ChangeHash, Verdict)]) {
    assert!(
        super::reference::same_verdicts(fast, slow),
        "the fast path disagrees with the reference:\n fast: {fast:?}\n slow: {slow:?}"
    );
}

/// A status event with every field given, as a hostile peer would write
/// it: appended by a transaction, past `record_status`'s own checks.
fn forged_event(id: u128, status: Status, worker: &str, at: i64) -> crate::model::StatusEvent {
    crate::model::StatusEvent {
        id: EventId(Uuid::from_u128(id)),
        task: task(1),
        status,
        worker: worker.parse().unwrap(),
        terminal: "pos-9".parse().unwrap(),
        at,
        prev: Vec::new(),
        note: Some("forged".into()),
    }
}

#[test]
fn a_second_event_with_an_id_already_in_the_log_is_refused() {
    let mut hub = Hub::new();
    // A peer that has not seen the original yet: its copy is concurrent.
    let mut concurrent = hub.terminal(2);
    let mut t = hub.terminal(1);
    record_status(&mut t, &upd(1, 1, Status::Completed), NOW).unwrap();
    assert_eq!(only_verdict(&hub.receive(&t, &store())), Verdict::Accepted);
    let dup = Verdict::Rejected(Rejection::DuplicateEventId {
        id: Uuid::from_u128(1).to_string(),
    });

    // After seeing it, under another actor: another status, worker, note,
    // and a time before the original's, so it would sort first.
    for (n, status, worker) in [
        (3u8, Status::InProgress, "w2"),
        (4, Status::Completed, "w1"),
        (5, Status::Reopened, "w-1"),
    ] {
        let mut forger = hub.terminal(n);
        instance::append_event_by_transaction(
            &mut forger,
            &forged_event(1, status, worker, NOW - 60_000),
            NOW,
        )
        .unwrap();
        assert_eq!(only_verdict(&hub.check(&forger, &store())), dup);
    }
    // Under the original's own actor, after it.
    let mut same_actor = t.fork();
    same_actor.set_actor(ActorId::from(&[1u8; 16][..]));
    instance::append_event_by_transaction(
        &mut same_actor,
        &forged_event(1, Status::InProgress, "w2", NOW - 1),
        NOW,
    )
    .unwrap();
    assert_eq!(only_verdict(&hub.check(&same_actor, &store())), dup);
    // Made without seeing the original.
    instance::append_event_by_transaction(
        &mut concurrent,
        &forged_event(1, Status::InProgress, "w2", NOW - 1),
        NOW,
    )
    .unwrap();
    assert_eq!(only_verdict(&hub.check(&concurrent, &store())), dup);
}

#[test]
fn of_two_new_events_with_one_id_in_a_batch_only_the_first_is_accepted() {
    let hub = Hub::new();
    let mut t = hub.terminal(1);
    record_status(&mut t, &upd(7, 1, Status::InProgress), NOW).unwrap();
    instance::append_event_by_transaction(
        &mut t,
        &forged_event(7, Status::Completed, "w2", NOW + 1),
        NOW,
    )
    .unwrap();
    let changes = hub.doc.get_changes_added(&t);
    assert_eq!(changes.len(), 2);
    let out = hub.check(&t, &store());
    assert_eq!(out.verdict(&changes[0].hash()), Some(&Verdict::Accepted));
    assert_eq!(
        out.verdict(&changes[1].hash()),
        Some(&Verdict::Rejected(Rejection::DuplicateEventId {
            id: Uuid::from_u128(7).to_string()
        }))
    );

    // Both events in one change: refused whole.
    let mut one = hub.terminal(2);
    let (_, events) = one.get(ROOT, "events").unwrap().unwrap();
    raw(&mut one, |tx| {
        for status in ["in_progress", "completed"] {
            let e = tx.insert_object(&events, 0, ObjType::Map).unwrap();
            for (k, v) in [
                ("id", Uuid::from_u128(8).to_string()),
                ("task", Uuid::from_u128(1).to_string()),
                ("status", status.into()),
                ("worker", "w1".into()),
                ("terminal", "pos-1".into()),
            ] {
                tx.put(&e, k, v).unwrap();
            }
            tx.put(&e, "at", NOW).unwrap();
        }
    });
    assert!(matches!(
        only_verdict(&hub.check(&one, &store())),
        Verdict::Rejected(Rejection::DuplicateEventId { .. })
    ));
}

#[test]
fn the_hub_checks_what_the_terminal_checks_status_worker_and_terminal() {
    let hub = Hub::new();
    // `not_started` is no status to record (the terminal refuses it too).
    let mut t = hub.terminal(1);
    instance::append_event_by_transaction(
        &mut t,
        &forged_event(1, Status::NotStarted, "w1", NOW),
        NOW,
    )
    .unwrap();
    assert!(matches!(
        only_verdict(&hub.check(&t, &store())),
        Verdict::Rejected(Rejection::BadEvent(ref r)) if r.contains("not_started")
    ));
    let mut t = hub.terminal(1);
    assert!(matches!(
        record_status(&mut t, &upd(1, 1, Status::NotStarted), NOW),
        Err(crate::model::ModelError::BadField {
            field: "status",
            ..
        })
    ));

    // A worker nobody put on this store's roster.
    let mut t = hub.terminal(2);
    let mut ghost = upd(2, 1, Status::Completed);
    ghost.worker = "ghost-999".parse().unwrap();
    record_status(&mut t, &ghost, NOW).unwrap();
    assert_eq!(
        only_verdict(&hub.check(&t, &store())),
        Verdict::Rejected(Rejection::UnknownWorker {
            worker: "ghost-999".into()
        })
    );
    // HQ is not bound to a store's roster.
    assert_eq!(
        only_verdict(&hub.check(&t, &Principal::Hq)),
        Verdict::Accepted
    );

    // A terminal id that is no id.
    let mut t = hub.terminal(3);
    let (_, events) = t.get(ROOT, "events").unwrap().unwrap();
    raw(&mut t, |tx| {
        let e = tx.insert_object(&events, 0, ObjType::Map).unwrap();
        for (k, v) in [
            ("id", Uuid::from_u128(3).to_string()),
            ("task", Uuid::from_u128(1).to_string()),
            ("status", "completed".into()),
            ("worker", "w1".into()),
            ("terminal", "pos 1; drop".into()),
        ] {
            tx.put(&e, k, v).unwrap();
        }
        tx.put(&e, "at", NOW).unwrap();
    });
    assert!(matches!(
        only_verdict(&hub.check(&t, &store())),
        Verdict::Rejected(Rejection::BadEvent(_))
    ));
}
