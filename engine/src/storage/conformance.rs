//! The storage conformance suite: what every backend of the storage traits
//! must do, written against the traits only. Each check takes a
//! [`Backend`]: a way to open the same database again, as a process does
//! after a restart. The SQLite backend runs every check below
//! (`sqlite_passes_*`); a second backend adds its own line per check.

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, Change};

use super::roles::*;
use super::{Damage, PastDueCount, PeerId, StorageError, StoreListRow, StoreRecord, TokenCheck};
use crate::document::instance;
use crate::document::DocKind;
use crate::ids::{DocumentId, Principal, StoreId, TaskId, TemplateId};
use crate::model::{CreatedBy, InstanceContent, ListMeta, Priority, TaskSpec};

/// A backend under test: `open` opens (or reopens) the one database this
/// value stands for.
pub trait Backend {
    type Db: HubStorage;
    fn open(&self) -> Self::Db;
    /// Overwrite what is stored for `doc` with bytes that do not decode,
    /// behind the traits' back, as a bad disk or a stray write would.
    fn damage_document(&self, doc: DocumentId);
}

const NOW: i64 = 1_800_000_000_000;

/// A recurring instance of `tasks` tasks, each due at 21:00 UTC on its day.
fn content(tasks: usize) -> InstanceContent {
    use chrono::TimeZone;
    let store: StoreId = "store-042".parse().unwrap();
    let template = TemplateId(uuid::Uuid::from_u128(77));
    let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
    InstanceContent {
        id: DocumentId::recurring_instance(template, &store, date),
        meta: ListMeta {
            store,
            name: "Thursday closing".into(),
            template: Some(template),
            date,
            time_zone: "Europe/Berlin".into(),
            created_by: CreatedBy::Hq,
        },
        tasks: (0..tasks)
            .map(|i| TaskSpec {
                id: TaskId(uuid::Uuid::from_u128(i as u128 + 1)),
                title: format!("Task {i}"),
                description: String::new(),
                start: None,
                due: Some(
                    chrono::Utc
                        .with_ymd_and_hms(2026, 11, 26, 21, 0, 0)
                        .unwrap(),
                ),
                priority: Priority::Normal,
                link: None,
                assignee: None,
                created_by: CreatedBy::Hq,
                position: i as i64,
            })
            .collect(),
    }
}

fn doc_id(n: u8) -> DocumentId {
    DocumentId::from_random_bytes([n; 16])
}

/// Three changes of a small document, each on the one before.
fn changes(actor: u8) -> Vec<Change> {
    let mut d = AutoCommit::new().with_actor(ActorId::from([actor; 16]));
    for i in 0..3_i64 {
        d.put(automerge::ROOT, "n", i).unwrap();
        d.commit();
    }
    d.get_changes(&[])
}

/// What is written is there after a reopen, and storing a change twice
/// stores it once.
pub fn documents_are_durable_and_idempotent(b: &impl Backend) {
    let id = doc_id(1);
    let cs = changes(7);
    let heads = {
        let mut db = b.open();
        assert_eq!(db.append_changes(id, &cs).unwrap(), 3);
        assert_eq!(db.append_changes(id, &cs).unwrap(), 0, "stored once");
        db.load_document(id).unwrap().unwrap().get_heads()
    };
    let db = b.open();
    assert_eq!(db.load_document(id).unwrap().unwrap().get_heads(), heads);
    assert_eq!(db.list_documents().unwrap(), vec![id]);
    assert!(db.document_exists(id).unwrap());
    assert!(db.load_document(doc_id(2)).unwrap().is_none());
}

/// A write that fails leaves the database as it was, and the other
/// documents untouched.
pub fn a_failed_write_leaves_nothing_behind(b: &impl Backend) {
    let mut db = b.open();
    let kept = doc_id(1);
    db.append_changes(kept, &changes(7)).unwrap();
    let heads = db.load_document(kept).unwrap().unwrap().get_heads();
    let err = db.compact(doc_id(9)).unwrap_err();
    assert!(
        matches!(err, StorageError::UnknownDocument { .. }),
        "{err:?}"
    );
    assert_eq!(db.list_documents().unwrap(), vec![kept]);
    drop(db);
    let db = b.open();
    assert_eq!(db.load_document(kept).unwrap().unwrap().get_heads(), heads);
}

/// A document whose stored bytes are damaged is reported as damage to
/// that document and only that one, with the repair that resyncs it; the
/// other documents still load.
pub fn a_damaged_document_is_reported_alone(b: &impl Backend) {
    let (bad, good) = (doc_id(1), doc_id(2));
    {
        let mut db = b.open();
        db.append_changes(bad, &changes(1)).unwrap();
        db.append_changes(good, &changes(2)).unwrap();
    }
    b.damage_document(bad);
    let db = b.open();
    let err = db.load_document(bad).unwrap_err();
    assert!(
        matches!(
            &err,
            StorageError::Damaged {
                damage: Damage::Document { doc, .. },
                repair: super::Repair::ResyncDocument,
                ..
            } if *doc == bad
        ),
        "{err:?}"
    );
    assert_eq!(err.damaged_document(), Some(bad));
    assert!(err.to_string().contains(&bad.to_string()), "{err}");
    assert!(db.load_document(good).unwrap().is_some());
    let all = db.load_all_documents().unwrap();
    assert_eq!(all.len(), 2);
    for (id, loaded) in &all {
        match loaded {
            Ok(_) => assert_eq!(*id, good),
            Err(e) => assert_eq!((*id, e.damaged_document()), (bad, Some(bad)), "{e:?}"),
        }
    }
}

/// Sync state per (peer, document): kept across a reopen, replaced by a
/// newer one, gone with its document or its peer.
pub fn sync_state_is_kept_per_peer_and_goes_with_its_document(b: &impl Backend) {
    let (a, c) = (PeerId::from("peer-a"), PeerId::from("peer-c"));
    let (d1, d2) = (doc_id(1), doc_id(2));
    {
        let mut db = b.open();
        db.append_changes(d1, &changes(1)).unwrap();
        db.append_changes(d2, &changes(2)).unwrap();
        db.save_sync_state(&a, d1, b"one").unwrap();
        db.save_sync_state(&a, d1, b"two").unwrap();
        db.save_sync_state(&a, d2, b"other").unwrap();
        db.save_sync_state(&c, d1, b"c").unwrap();
    }
    let mut db = b.open();
    assert_eq!(
        db.load_sync_state(&a, d1).unwrap().as_deref(),
        Some(&b"two"[..])
    );
    assert!(db.delete_document(d1).unwrap());
    assert_eq!(db.load_sync_state(&a, d1).unwrap(), None);
    assert_eq!(db.load_sync_state(&c, d1).unwrap(), None);
    assert_eq!(db.forget_peer(&a).unwrap(), 1);
    assert_eq!(db.load_sync_state(&a, d2).unwrap(), None);
}

/// The registry's rules: stores, tokens that resolve, expire and revoke,
/// document owners, actor ownership and vouched content.
pub fn the_registry_keeps_its_rules(b: &impl Backend) {
    let store: StoreId = "store-042".parse().unwrap();
    let rec = StoreRecord {
        id: store.clone(),
        name: "Store 42".into(),
        time_zone: "Europe/Berlin".into(),
    };
    let principal = Principal::Store(store.clone());
    let actor = ActorId::from([5; 16]);
    let hash = changes(1)[0].hash();
    {
        let mut db = b.open();
        db.put_store(&rec).unwrap();
        db.put_token([1; 32], &principal, "till 1", NOW, None)
            .unwrap();
        db.put_token([2; 32], &principal, "till 2", NOW, Some(NOW + 10))
            .unwrap();
        db.set_doc_owner(doc_id(1), &store, DocKind::Instance)
            .unwrap();
        db.claim_actor(&actor, &principal).unwrap();
        db.add_known_content(doc_id(1), &[hash]).unwrap();
    }
    let mut db = b.open();
    assert_eq!(db.get_store(&store).unwrap(), Some(rec.clone()));
    assert_eq!(db.list_stores().unwrap(), vec![rec]);
    assert_eq!(
        db.check_token([1; 32], NOW).unwrap(),
        TokenCheck::Valid(principal.clone())
    );
    assert_eq!(
        db.check_token([2; 32], NOW + 10).unwrap(),
        TokenCheck::Expired
    );
    assert_eq!(db.check_token([3; 32], NOW).unwrap(), TokenCheck::Unknown);
    assert!(db.revoke_token([1; 32], NOW + 1).unwrap());
    assert_eq!(
        db.check_token([1; 32], NOW + 1).unwrap(),
        TokenCheck::Revoked
    );
    assert_eq!(
        db.doc_owner(doc_id(1)).unwrap(),
        Some((store.clone(), DocKind::Instance))
    );
    assert_eq!(db.documents_of_store(&store).unwrap(), vec![doc_id(1)]);
    assert_eq!(db.actor_owner(&actor).unwrap(), Some(principal));
    assert_eq!(db.actor_owner(&ActorId::from([6; 16])).unwrap(), None);
    assert_eq!(db.known_content(doc_id(1)).unwrap(), vec![hash]);

    // A template reaches the stores named and its groups' members, each
    // once, in id order.
    let other: StoreId = "store-007".parse().unwrap();
    db.put_store(&StoreRecord {
        id: other.clone(),
        name: "Store 7".into(),
        time_zone: "Europe/Berlin".into(),
    })
    .unwrap();
    let t = crate::template::Template {
        id: TemplateId(uuid::Uuid::from_u128(900)),
        revision: 1,
        name: "Opening".into(),
        recurrence: crate::recurrence::Recurrence::new(
            "FREQ=DAILY",
            chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            chrono::NaiveTime::from_hms_opt(7, 0, 0).unwrap(),
        )
        .unwrap(),
        tasks: Vec::new(),
    };
    db.put_template(&t).unwrap();
    db.assign_template(t.id, std::slice::from_ref(&store))
        .unwrap();
    let north: crate::ids::StoreGroupId = "north".parse().unwrap();
    db.add_to_group(&north, &[store.clone(), other.clone()])
        .unwrap();
    db.assign_template_to_groups(t.id, &[north]).unwrap();
    assert_eq!(db.template_stores(t.id).unwrap(), vec![other, store]);
}

/// A unit of work is durable only when it commits: dropped before its
/// commit, none of it is there; an operation undone inside it leaves the
/// rest; committed, it survives a reopen.
pub fn a_unit_of_work_is_durable_only_when_it_commits(b: &impl Backend) {
    let (d1, d2, d3) = (doc_id(1), doc_id(2), doc_id(3));
    {
        let mut db = b.open();
        db.begin_batch().unwrap();
        assert!(db.in_batch());
        db.append_changes(d1, &changes(1)).unwrap();
        // Dropped without commit: a crash before the commit.
    }
    {
        let mut db = b.open();
        assert!(db.load_document(d1).unwrap().is_none(), "not committed");
        db.begin_batch().unwrap();
        db.append_changes(d2, &changes(2)).unwrap();
        db.begin_operation().unwrap();
        db.append_changes(d3, &changes(3)).unwrap();
        db.rollback_operation().unwrap();
        db.commit_batch().unwrap();
        assert!(!db.in_batch());
    }
    let db = b.open();
    assert!(db.load_document(d1).unwrap().is_none());
    assert!(db.load_document(d2).unwrap().is_some(), "committed");
    assert!(
        db.load_document(d3).unwrap().is_none(),
        "its operation undone"
    );
}

/// A batch reads its own writes, whichever way a backend sends them
/// (PostgreSQL holds a batch's hot-path rows until something must see
/// them): changes, claimed actors, sync states, sync times and index
/// marks written inside a batch are there for reads in the same batch,
/// and the rows of an undone operation are not, while the batch's
/// earlier rows are.
pub fn a_batch_reads_its_own_writes(b: &impl Backend) {
    let store: StoreId = "store-042".parse().unwrap();
    let principal = Principal::Store(store.clone());
    let peer = PeerId::from("till-1");
    let (d1, d2, d3) = (doc_id(11), doc_id(12), doc_id(13));
    let mut db = b.open();
    db.put_store(&StoreRecord {
        id: store.clone(),
        name: "Store 42".into(),
        time_zone: "Europe/Berlin".into(),
    })
    .unwrap();
    db.set_doc_owner(d1, &store, DocKind::Instance).unwrap();
    db.begin_batch().unwrap();
    let cs = changes(21);
    let actor = cs[0].actor_id().clone();
    db.commit_accepted(d1, &cs, std::slice::from_ref(&actor), &principal)
        .unwrap();
    db.save_sync_state(&peer, d1, b"state one").unwrap();
    db.save_sync_states(&peer, &[(d1, b"state two".to_vec())])
        .unwrap();
    db.record_store_sync(&[(store.clone(), NOW)]).unwrap();
    db.mark_index_due(&[d1]).unwrap();
    assert_eq!(
        db.load_document(d1)
            .unwrap()
            .unwrap()
            .get_changes(&[])
            .len(),
        3
    );
    assert_eq!(db.actor_owner(&actor).unwrap(), Some(principal.clone()));
    assert_eq!(
        db.load_sync_state(&peer, d1).unwrap().as_deref(),
        Some(&b"state two"[..]),
        "the last state written wins"
    );
    assert!(db
        .store_sync_times()
        .unwrap()
        .contains(&(store.clone(), NOW)));
    assert!(db.index_due().unwrap().contains(&d1));
    // Written after the reads above, then an operation undone.
    db.append_changes(d2, &changes(22)).unwrap();
    db.begin_operation().unwrap();
    db.append_changes(d3, &changes(23)).unwrap();
    db.save_sync_state(&peer, d2, b"undone").unwrap();
    db.rollback_operation().unwrap();
    assert!(db.load_document(d3).unwrap().is_none(), "undone");
    assert!(db.load_sync_state(&peer, d2).unwrap().is_none(), "undone");
    db.commit_batch().unwrap();
    drop(db);
    let db = b.open();
    assert!(db.load_document(d1).unwrap().is_some());
    assert!(
        db.load_document(d2).unwrap().is_some(),
        "held before the operation"
    );
    assert!(db.load_document(d3).unwrap().is_none());
    assert_eq!(
        db.load_sync_state(&peer, d1).unwrap().as_deref(),
        Some(&b"state two"[..])
    );
}

/// The status index: what is indexed is what the readers get, it goes
/// with `unindex_instance`, and lists marked due stay due until indexed.
pub fn the_status_index_answers_what_was_indexed(b: &impl Backend) {
    let c = content(3);
    let mut d = automerge::Automerge::new();
    d.apply_changes(instance::materialize(&c).unwrap()).unwrap();
    let view = instance::read(&d).unwrap();
    {
        let mut db = b.open();
        db.index_instance(&view).unwrap();
        db.mark_index_due(&[c.id]).unwrap();
    }
    let mut db = b.open();
    let rows = db.status_by_list(None, NOW).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].doc, c.id);
    assert_eq!(rows[0].not_started, 3);
    assert_eq!(db.index_due().unwrap(), vec![c.id]);
    db.unindex_instance(c.id).unwrap();
    assert!(db.status_by_list(None, NOW).unwrap().is_empty());
    assert!(
        db.index_due().unwrap().is_empty(),
        "indexing clears the mark"
    );
}

/// The compliance report's facts: each task in a list dated in the
/// range, with or without a due time, completed or not, and for a
/// completed one its newest `completed` event (a task completed, reopened
/// and completed again is completed the second time); lists outside the
/// range are left out.
pub fn the_status_index_gives_the_reports_facts(b: &impl Backend) {
    use crate::compliance::ReportTask;
    use crate::document::instance::{InstanceView, TaskView};
    use crate::ids::EventId;
    use crate::model::{Status, StatusEvent};
    use chrono::TimeZone;

    let at = |h: u32, m: u32| {
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 26, h, m, 0)
            .unwrap()
            .timestamp_millis()
    };
    let nine = at(9, 0);
    let task = |n: u128, due: Option<i64>, assignee: Option<&str>, log: &[(Status, &str, i64)]| {
        let id = TaskId(uuid::Uuid::from_u128(n));
        let mut prev: Vec<EventId> = Vec::new();
        let events: Vec<StatusEvent> = log
            .iter()
            .enumerate()
            .map(|(i, (status, worker, at))| {
                let e = StatusEvent {
                    id: EventId(uuid::Uuid::from_u128(n * 100 + i as u128)),
                    task: id,
                    status: *status,
                    worker: worker.parse().unwrap(),
                    terminal: "pos-1".parse().unwrap(),
                    at: *at,
                    prev: std::mem::take(&mut prev),
                    note: None,
                };
                prev = vec![e.id];
                e
            })
            .collect();
        TaskView {
            spec: TaskSpec {
                id,
                title: format!("Task {n}"),
                description: String::new(),
                start: None,
                due: due.map(|ms| chrono::Utc.timestamp_millis_opt(ms).unwrap()),
                priority: Priority::Normal,
                link: None,
                assignee: assignee.map(|a| a.parse().unwrap()),
                created_by: CreatedBy::Hq,
                position: n as i64,
            },
            assignee_conflict: Vec::new(),
            status: crate::status::of_task(&crate::status::derive(events), id),
        }
    };
    let list = |doc: u8, store: &str, date: &str, tasks: Vec<TaskView>| InstanceView {
        id: doc_id(doc),
        meta: ListMeta {
            store: store.parse().unwrap(),
            name: "Opening".into(),
            template: None,
            date: date.parse().unwrap(),
            time_zone: "UTC".into(),
            created_by: CreatedBy::Hq,
        },
        tasks,
        malformed_events: 0,
    };
    use Status::*;
    {
        let mut db = b.open();
        let a = list(
            1,
            "store-a",
            "2026-11-26",
            vec![
                task(
                    1,
                    Some(nine),
                    None,
                    &[(InProgress, "ann", at(7, 0)), (Completed, "ann", at(8, 0))],
                ),
                task(2, Some(nine), None, &[(Completed, "bob", at(10, 0))]),
                task(
                    3,
                    Some(nine),
                    None,
                    &[
                        (Completed, "ann", at(8, 30)),
                        (Reopened, "bob", at(8, 40)),
                        (Completed, "cy", at(9, 30)),
                    ],
                ),
                task(
                    4,
                    Some(nine),
                    Some("worker:cy"),
                    &[(InProgress, "cy", at(8, 0))],
                ),
                task(5, None, None, &[(Completed, "ann", at(8, 0))]),
            ],
        );
        let later = list(
            2,
            "store-a",
            "2026-11-28",
            vec![task(6, Some(nine), None, &[])],
        );
        let b_list = list(
            3,
            "store-b",
            "2026-11-27",
            vec![task(7, Some(nine), Some("group:leads"), &[])],
        );
        for v in [&a, &later, &b_list] {
            db.index_instance(v).unwrap();
        }
    }
    let db = b.open();
    let day = |d: &str| d.parse::<chrono::NaiveDate>().unwrap();
    let got = db
        .report_tasks_between(day("2026-11-26"), day("2026-11-27"))
        .unwrap();
    let due =
        |store: &str, date: &str, done: Option<(i64, &str)>, assignee: Option<&str>| ReportTask {
            store: store.into(),
            list: "Opening".into(),
            date: date.into(),
            due_ms: Some(nine),
            completed_ms: done.map(|d| d.0),
            completed_by: done.map(|d| d.1.to_owned()),
            assignee: assignee.map(str::to_owned),
        };
    assert_eq!(
        got,
        vec![
            due("store-a", "2026-11-26", Some((at(8, 0), "ann")), None),
            due("store-a", "2026-11-26", Some((at(10, 0), "bob")), None),
            due("store-a", "2026-11-26", Some((at(9, 30), "cy")), None),
            due("store-a", "2026-11-26", None, Some("worker:cy")),
            ReportTask {
                due_ms: None,
                ..due("store-a", "2026-11-26", Some((at(8, 0), "ann")), None)
            },
            due("store-b", "2026-11-27", None, Some("group:leads")),
        ]
    );
    assert!(db
        .report_tasks_between(day("2026-11-29"), day("2026-12-31"))
        .unwrap()
        .is_empty());
}

/// The fleet roll-up's counts per store and list: a task completed by its
/// due time is on time, one completed after it is not, an open task past
/// its due time is past due; lists outside the days asked are left out.
pub fn the_roll_up_counts_tasks_completed_on_time(b: &impl Backend) {
    use crate::ids::EventId;
    use crate::model::{Status, StatusUpdate};
    let c = content(3);
    let due = c.tasks[0]
        .due
        .expect("content's tasks are due")
        .timestamp_millis();
    let mut d = automerge::Automerge::new();
    d.apply_changes(instance::materialize(&c).unwrap()).unwrap();
    let complete = |d: &mut automerge::Automerge, n: usize, at: i64| {
        let update = StatusUpdate {
            id: EventId(uuid::Uuid::from_u128(100 + n as u128)),
            task: c.tasks[n].id,
            status: Status::Completed,
            worker: "w1".parse().unwrap(),
            terminal: "pos-1".parse().unwrap(),
            note: None,
        };
        instance::record_status(d, &update, at).unwrap();
    };
    complete(&mut d, 0, due - 60_000);
    complete(&mut d, 1, due + 60_000);
    let view = instance::read(&d).unwrap();
    b.open().index_instance(&view).unwrap();
    let db = b.open();
    let rows = db.status_by_store_list(None, None, NOW).unwrap();
    assert_eq!(
        rows,
        vec![StoreListRow {
            store: "store-042".into(),
            list: "Thursday closing".into(),
            instances: 1,
            tasks: 3,
            completed: 2,
            on_time: 1,
            past_due: 1,
            conflicts: 0,
        }]
    );
    let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2026, 11, d);
    assert_eq!(
        db.status_by_store_list(day(26), day(26), NOW)
            .unwrap()
            .len(),
        1
    );
    assert!(db
        .status_by_store_list(day(27), None, NOW)
        .unwrap()
        .is_empty());
    let before_due = db.status_by_store_list(None, None, due - 1).unwrap();
    assert_eq!(before_due[0].past_due, 0, "not yet due");
    // Past due counted per store and list: the open task only.
    assert_eq!(
        db.past_due_counts(NOW).unwrap(),
        vec![PastDueCount {
            store: "store-042".into(),
            list: "Thursday closing".into(),
            tasks: 1,
            oldest_due_ms: due,
        }]
    );
    assert!(db.past_due_counts(due).unwrap().is_empty(), "due, not past");
}

/// HQ's people: accounts are kept whole and replaced by id, personal
/// tokens resolve to their account until revoked or expired (one by id,
/// or all of an account's), and the audit reads newest first, by time
/// and user. (That the audit cannot be rewritten is each schema's
/// trigger, tested per backend.)
pub fn hq_accounts_keep_their_rules(b: &impl Backend) {
    use crate::hq_accounts::*;
    let anna: crate::ids::HqUserId = "anna.berg".parse().unwrap();
    let ben: crate::ids::HqUserId = "ben".parse().unwrap();
    let north: crate::ids::StoreGroupId = "region-north".parse().unwrap();
    let user = |id: &crate::ids::HqUserId, role, scope| HqUser {
        id: id.clone(),
        role,
        scope,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        must_change_password: false,
        disabled_at: None,
        created_at: NOW,
    };
    let anna_user = user(
        &anna,
        HqRole::Editor,
        HqScope::Groups([north.clone()].into()),
    );
    let entry = |at_ms, user: &str, status| AuditEntry {
        at_ms,
        user: user.into(),
        action: "POST /api/lists".into(),
        stores: vec!["store-042".into(), "store-043".into()],
        status,
        outcome: if status == 201 {
            String::new()
        } else {
            "refused".into()
        },
    };
    {
        let mut db = b.open();
        db.put_hq_user(&anna_user).unwrap();
        db.put_hq_user(&user(&ben, HqRole::Viewer, HqScope::AllStores))
            .unwrap();
        db.put_personal_token([1; 32], &anna, "laptop", NOW, None)
            .unwrap();
        db.put_personal_token([2; 32], &anna, "ci", NOW + 1, Some(NOW + 10))
            .unwrap();
        db.put_personal_token([3; 32], &ben, "", NOW + 2, None)
            .unwrap();
        db.append_audit(&entry(NOW, "anna.berg", 201)).unwrap();
        db.append_audit(&entry(NOW + 5, "ben", 403)).unwrap();
        db.append_audit(&entry(NOW + 9, "anna.berg", 404)).unwrap();
    }
    let mut db = b.open();
    assert_eq!(db.hq_user(&anna).unwrap(), Some(anna_user.clone()));
    let disabled = HqUser {
        role: HqRole::Admin,
        disabled_at: Some(NOW + 3),
        ..anna_user.clone()
    };
    db.put_hq_user(&disabled).unwrap();
    assert_eq!(
        db.hq_users()
            .unwrap()
            .iter()
            .map(|u| &u.id)
            .collect::<Vec<_>>(),
        vec![&anna, &ben]
    );
    assert_eq!(db.hq_user(&anna).unwrap(), Some(disabled));
    assert_eq!(
        db.check_personal_token([1; 32], NOW).unwrap(),
        PersonalTokenCheck::Valid(anna.clone())
    );
    assert_eq!(
        db.check_personal_token([2; 32], NOW + 10).unwrap(),
        PersonalTokenCheck::Expired
    );
    assert_eq!(
        db.check_personal_token([9; 32], NOW).unwrap(),
        PersonalTokenCheck::Unknown
    );
    assert_eq!(
        db.check_token([1; 32], NOW).unwrap(),
        TokenCheck::Unknown,
        "a personal token is not a registry token (it cannot sync)"
    );
    let tokens = db.personal_tokens(Some(&anna)).unwrap();
    assert_eq!(
        tokens.iter().map(|t| t.label.as_str()).collect::<Vec<_>>(),
        vec!["ci", "laptop"],
        "newest first"
    );
    assert_eq!(db.personal_tokens(None).unwrap().len(), 3);
    let laptop = tokens[1].id.clone();
    assert_eq!(laptop, hex::encode([1u8; 32])[..12]);
    assert!(
        !db.revoke_personal_token(&laptop, Some(&ben), NOW + 4)
            .unwrap(),
        "not ben's token"
    );
    assert!(db
        .revoke_personal_token(&laptop.to_uppercase(), Some(&anna), NOW + 4)
        .unwrap());
    assert!(
        !db.revoke_personal_token(&laptop, None, NOW + 5).unwrap(),
        "revoked already"
    );
    assert!(!db
        .revoke_personal_token("not-an-id", None, NOW + 5)
        .unwrap());
    assert_eq!(
        db.check_personal_token([1; 32], NOW + 4).unwrap(),
        PersonalTokenCheck::Revoked
    );
    assert_eq!(
        db.personal_tokens(Some(&anna)).unwrap()[1].revoked_at,
        Some(NOW + 4)
    );
    assert_eq!(db.revoke_personal_tokens_of(&ben, NOW + 6).unwrap(), 1);
    assert_eq!(
        db.check_personal_token([3; 32], NOW + 6).unwrap(),
        PersonalTokenCheck::Revoked
    );

    let all = db
        .audit(&AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        all.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
        vec![NOW + 9, NOW + 5, NOW],
        "newest first"
    );
    assert_eq!(all[2], entry(NOW, "anna.berg", 201));
    let annas_since = db
        .audit(&AuditQuery {
            since_ms: Some(NOW + 1),
            user: Some("anna.berg".into()),
            limit: 10,
        })
        .unwrap();
    assert_eq!(annas_since, vec![entry(NOW + 9, "anna.berg", 404)]);
    assert_eq!(
        db.audit(&AuditQuery {
            limit: 1,
            ..Default::default()
        })
        .unwrap()
        .len(),
        1
    );
}

#[cfg(test)]
mod sqlite {
    use super::*;
    use crate::storage::SqliteDatabase;

    struct Sqlite(tempfile::TempDir);

    impl Backend for Sqlite {
        type Db = SqliteDatabase;
        fn open(&self) -> SqliteDatabase {
            SqliteDatabase::open(self.file(), [0xAA; 16]).unwrap()
        }
        fn damage_document(&self, doc: DocumentId) {
            let conn = rusqlite::Connection::open(self.file()).unwrap();
            let rows = conn
                .execute(
                    "UPDATE changes SET bytes = X'0badbeef' WHERE doc_id = ?1",
                    [doc.as_bytes()],
                )
                .unwrap();
            assert!(rows > 0, "{doc} has change rows to damage");
        }
    }

    impl Sqlite {
        fn file(&self) -> std::path::PathBuf {
            self.0.path().join("db.sqlite3")
        }
    }

    fn backend() -> Sqlite {
        Sqlite(tempfile::tempdir().unwrap())
    }

    #[test]
    fn sqlite_passes_documents_are_durable_and_idempotent() {
        documents_are_durable_and_idempotent(&backend());
    }

    #[test]
    fn sqlite_passes_a_failed_write_leaves_nothing_behind() {
        a_failed_write_leaves_nothing_behind(&backend());
    }

    #[test]
    fn sqlite_passes_a_damaged_document_is_reported_alone() {
        a_damaged_document_is_reported_alone(&backend());
    }

    #[test]
    fn sqlite_passes_sync_state_is_kept_per_peer_and_goes_with_its_document() {
        sync_state_is_kept_per_peer_and_goes_with_its_document(&backend());
    }

    #[test]
    fn sqlite_passes_the_registry_keeps_its_rules() {
        the_registry_keeps_its_rules(&backend());
    }

    #[test]
    fn sqlite_passes_a_unit_of_work_is_durable_only_when_it_commits() {
        a_unit_of_work_is_durable_only_when_it_commits(&backend());
    }

    #[test]
    fn sqlite_passes_a_batch_reads_its_own_writes() {
        a_batch_reads_its_own_writes(&backend());
    }

    #[test]
    fn sqlite_passes_hq_accounts_keep_their_rules() {
        hq_accounts_keep_their_rules(&backend());
    }

    #[test]
    fn sqlite_passes_the_status_index_gives_the_reports_facts() {
        the_status_index_gives_the_reports_facts(&backend());
    }

    #[test]
    fn sqlite_passes_the_roll_up_counts_tasks_completed_on_time() {
        the_roll_up_counts_tasks_completed_on_time(&backend());
    }

    #[test]
    fn sqlite_passes_the_status_index_answers_what_was_indexed() {
        the_status_index_answers_what_was_indexed(&backend());
    }
}
