//! Tests of instance documents across replicas.

use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc, ROOT};
use chrono::{NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::instance::*;
use super::keys;
use crate::ids::{DocumentId, EventId, TaskId, TemplateId};
use crate::model::*;

pub(crate) fn task_spec(n: u128, title: &str) -> TaskSpec {
    TaskSpec {
        id: TaskId(Uuid::from_u128(n)),
        title: title.into(),
        description: "do it well".into(),
        start: Some(Utc.with_ymd_and_hms(2026, 11, 26, 20, 0, 0).unwrap()),
        due: Some(Utc.with_ymd_and_hms(2026, 11, 26, 21, 0, 0).unwrap()),
        priority: Priority::High,
        link: Some("pos:daily-close".parse().unwrap()),
        assignee: Some("group:cashiers".parse().unwrap()),
        created_by: CreatedBy::Hq,
        position: n as i64,
    }
}

pub(crate) fn content(tasks: usize) -> InstanceContent {
    let store = "store-042".parse().unwrap();
    let template = TemplateId(Uuid::from_u128(77));
    let date = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
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
            .map(|i| task_spec(i as u128 + 1, &format!("Task {i}")))
            .collect(),
    }
}

fn update(n: u128, task: u128, status: Status, worker: &str) -> StatusUpdate {
    StatusUpdate {
        id: EventId(Uuid::from_u128(n)),
        task: TaskId(Uuid::from_u128(task)),
        status,
        worker: worker.parse().unwrap(),
        terminal: "pos-1".parse().unwrap(),
        note: None,
    }
}

fn sync_pair(a: &mut Automerge, b: &mut Automerge) {
    a.merge(b).unwrap();
    b.merge(a).unwrap();
}

#[test]
fn hub_and_offline_agent_materialize_the_same_document() {
    let c = content(5);
    let mut a: Vec<Change> = materialize(&c).unwrap();
    let mut b: Vec<Change> = materialize(&c).unwrap();
    assert_eq!(a.len(), 1 + 5 + 1);
    for (x, y) in a.iter_mut().zip(b.iter_mut()) {
        assert_eq!(x.bytes(), y.bytes());
    }
    let mut hub = create(&c, ActorId::random()).unwrap();
    let mut agent = create(&c, ActorId::random()).unwrap();
    sync_pair(&mut hub, &mut agent);
    assert_eq!(hub.get_changes(&[]).len(), 7, "nothing duplicated");
    let (_, tasks) = hub.get(ROOT, keys::TASKS).unwrap().unwrap();
    for t in &c.tasks {
        assert_eq!(hub.get_all(&tasks, t.id.0.to_string()).unwrap().len(), 1);
    }
    let view = read(&hub).unwrap();
    assert_eq!(view.meta, c.meta);
    assert_eq!(
        view.tasks
            .iter()
            .map(|t| t.spec.clone())
            .collect::<Vec<_>>(),
        c.tasks
    );
}

#[test]
fn status_updates_follow_the_log_and_the_clock() {
    let c = content(2);
    let mut doc = create(&c, ActorId::random()).unwrap();
    let (e1, _) = record_status(&mut doc, &update(1, 1, Status::InProgress, "w1"), 1_000).unwrap();
    // A clock that jumped back still orders after what the document holds.
    let (e2, _) = record_status(&mut doc, &update(2, 1, Status::Completed, "w1"), 10).unwrap();
    assert!(e2.at > e1.at);
    assert_eq!(e2.prev, vec![e1.id]);
    let v = read(&doc).unwrap();
    let t = v.task(TaskId(Uuid::from_u128(1))).unwrap();
    assert_eq!(t.status.current, Status::Completed);
    assert_eq!(t.status.history.len(), 2);
    assert_eq!(
        v.task(TaskId(Uuid::from_u128(2))).unwrap().status.current,
        Status::NotStarted
    );
}

/// Record `u` on `doc` and the same event on a copy by a transaction:
/// the same change, byte for byte, and the same document after.
fn assert_recorded_as_a_transaction_would(doc: &mut Automerge, u: &StatusUpdate, at: i64) {
    let mut reference = doc.fork();
    reference.set_actor(doc.get_actor().clone());
    let (event, change) = record_status(doc, u, at).unwrap();
    let by_transaction = append_event_by_transaction(&mut reference, &event, at).unwrap();
    assert_eq!(change.raw_bytes(), by_transaction.raw_bytes());
    assert_eq!(doc.get_heads(), reference.get_heads());
    assert_eq!(doc.get_missing_deps(&[]), reference.get_missing_deps(&[]));
    assert_eq!(read(doc).unwrap(), read(&reference).unwrap());
}

/// A log whose last entry was overwritten, or is not an event map (only
/// a hostile peer writes either; the hub refuses both), still takes a new
/// event after that entry, where a transaction puts it.
#[test]
fn an_event_after_an_overwritten_or_malformed_log_entry_goes_where_a_transaction_puts_it() {
    use automerge::transaction::Transactable;
    let mut doc = create(&content(2), ActorId::from([3u8; 16])).unwrap();
    record_status(&mut doc, &update(1, 1, Status::InProgress, "w1"), 1_000).unwrap();
    let log = match doc.get(ROOT, keys::EVENTS).unwrap().unwrap() {
        (automerge::Value::Object(_), id) => id,
        other => panic!("no log: {other:?}"),
    };
    // The last event's map replaced by another one: its value's id is no
    // longer the element's.
    let mut tx = doc.transaction();
    let len = tx.length(&log);
    tx.put_object(&log, len - 1, automerge::ObjType::Map)
        .unwrap();
    tx.commit();
    assert_recorded_as_a_transaction_would(&mut doc, &update(2, 1, Status::Completed, "w1"), 2_000);
    let mut tx = doc.transaction();
    let len = tx.length(&log);
    tx.insert(&log, len, "not an event").unwrap();
    tx.commit();
    assert_recorded_as_a_transaction_would(
        &mut doc,
        &update(3, 2, Status::InProgress, "w1"),
        3_000,
    );
    let v = read(&doc).unwrap();
    assert_eq!(v.malformed_events, 2, "the replaced map and the string");
    assert_eq!(
        v.task(TaskId(Uuid::from_u128(2))).unwrap().status.current,
        Status::InProgress
    );
}

/// A list, and `n` status changes `actor` made on a copy of it elsewhere
/// (say, on this terminal before its replica was restored from backup).
fn changes_made_elsewhere(actor: &ActorId, n: u128) -> (Automerge, Vec<Change>) {
    let base = create(&content(2), ActorId::from([9u8; 16])).unwrap();
    let mut elsewhere = base.fork();
    elsewhere.set_actor(actor.clone());
    let changes = (1..=n)
        .map(|i| {
            let u = update(
                i,
                1,
                [Status::InProgress, Status::Completed][i as usize % 2],
                "w1",
            );
            record_status(&mut elsewhere, &u, 1_000 * i as i64)
                .unwrap()
                .1
        })
        .collect();
    (base, changes)
}

/// A document holding this actor's own change that waits for a missing
/// dependency (storage lost the change before it): a transaction drops
/// that change, so the next event does not reuse its sequence number;
/// recording does the same.
#[test]
fn a_change_of_ours_waiting_for_its_dependency_is_dropped_as_a_transaction_drops_it() {
    let actor = ActorId::from([4u8; 16]);
    let (base, changes) = changes_made_elsewhere(&actor, 2);
    let mut doc = base.fork();
    doc.set_actor(actor);
    doc.apply_changes([changes[1].clone()]).unwrap();
    assert_eq!(
        doc.get_missing_deps(&[]).len(),
        1,
        "the second change waits"
    );
    assert_recorded_as_a_transaction_would(
        &mut doc,
        &update(3, 2, Status::InProgress, "w1"),
        3_000,
    );
    assert!(doc.get_missing_deps(&[]).is_empty());
}

/// The document's actor set before its own earlier changes arrived (a
/// terminal reloading its changes): the next event continues their
/// sequence numbers.
#[test]
fn an_actor_set_before_its_changes_arrived_continues_their_sequence() {
    let actor = ActorId::from([5u8; 16]);
    let (base, changes) = changes_made_elsewhere(&actor, 1);
    let mut doc = base.fork();
    doc.set_actor(actor);
    doc.apply_changes(changes).unwrap();
    assert_recorded_as_a_transaction_would(&mut doc, &update(2, 1, Status::Completed, "w1"), 2_000);
    assert_eq!(doc.get_last_local_change().unwrap().seq(), 2);
}

#[test]
fn reopen_needs_a_completed_task_and_unknown_tasks_are_refused() {
    let c = content(1);
    let mut doc = create(&c, ActorId::random()).unwrap();
    let heads = doc.get_heads();
    assert!(matches!(
        record_status(&mut doc, &update(1, 1, Status::Reopened, "w1"), 5),
        Err(ModelError::ReopenNotCompleted { .. })
    ));
    assert!(matches!(
        record_status(&mut doc, &update(2, 99, Status::Completed, "w1"), 5),
        Err(ModelError::UnknownTask(_))
    ));
    let mut long = update(3, 1, Status::Completed, "w1");
    long.note = Some("x".repeat(MAX_NOTE_CHARS + 1));
    assert!(record_status(&mut doc, &long, 5).is_err());
    assert_eq!(doc.get_heads(), heads, "a refused update writes nothing");
}

#[test]
fn concurrent_offline_updates_show_as_a_conflict_on_every_replica() {
    let c = content(1);
    let mut a = create(&c, ActorId::random()).unwrap();
    let mut b = create(&c, ActorId::random()).unwrap();
    record_status(&mut a, &update(1, 1, Status::InProgress, "w1"), 100).unwrap();
    sync_pair(&mut a, &mut b);
    record_status(&mut a, &update(2, 1, Status::Completed, "w1"), 200).unwrap();
    record_status(&mut b, &update(3, 1, Status::InProgress, "w2"), 300).unwrap();
    sync_pair(&mut a, &mut b);
    let (va, vb) = (read(&a).unwrap(), read(&b).unwrap());
    assert_eq!(va, vb);
    let t = &va.tasks[0];
    assert_eq!(t.status.conflict.len(), 2, "both events visible");
    // A manager's decision made after seeing both clears it everywhere.
    record_status(&mut a, &update(4, 1, Status::Completed, "mgr"), 400).unwrap();
    sync_pair(&mut a, &mut b);
    let t = read(&b).unwrap().tasks[0].clone();
    assert!(t.status.conflict.is_empty());
    assert_eq!(t.status.current, Status::Completed);
}

#[test]
fn concurrent_assignments_surface_the_losing_value() {
    let c = content(1);
    let mut a = create(&c, ActorId::random()).unwrap();
    let mut b = create(&c, ActorId::random()).unwrap();
    let task = TaskId(Uuid::from_u128(1));
    set_assignee(&mut a, task, Some(&"worker:w1".parse().unwrap()), 1).unwrap();
    set_assignee(&mut b, task, Some(&"worker:w2".parse().unwrap()), 1).unwrap();
    sync_pair(&mut a, &mut b);
    let ta = read(&a).unwrap().tasks[0].clone();
    let tb = read(&b).unwrap().tasks[0].clone();
    assert_eq!(ta, tb);
    assert_eq!(ta.assignee_conflict.len(), 2);
}

#[test]
fn a_store_task_added_on_one_replica_reaches_the_other() {
    let c = content(1);
    let mut a = create(&c, ActorId::random()).unwrap();
    let mut b = create(&c, ActorId::random()).unwrap();
    let mut spec = task_spec(50, "Mop the spill in aisle 3");
    spec.created_by = CreatedBy::Store("store-042".parse().unwrap());
    add_task(&mut a, &spec, 5).unwrap();
    assert!(
        add_task(&mut a, &spec, 6).is_err(),
        "same id twice is refused"
    );
    sync_pair(&mut a, &mut b);
    assert_eq!(read(&b).unwrap().task(spec.id).unwrap().spec, spec);
}

#[test]
fn a_bad_content_is_refused_before_anything_is_made() {
    let mut c = content(1);
    c.tasks[0].title = "  ".into();
    assert!(matches!(
        materialize(&c),
        Err(ModelError::BadField { field: "title", .. })
    ));
    let mut c = content(1);
    c.meta.time_zone = "Mars/Olympus".into();
    assert!(matches!(
        materialize(&c),
        Err(ModelError::BadField {
            field: "time_zone",
            ..
        })
    ));
}

/// One replica's offline work: (task, status) updates.
fn arb_work() -> impl Strategy<Value = Vec<Vec<(u128, Status)>>> {
    let st = prop_oneof![Just(Status::InProgress), Just(Status::Completed)];
    prop::collection::vec(prop::collection::vec((1u128..4, st), 0..5), 2..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Replicas work offline, then every change is delivered to a fresh
    /// replica in a random order with duplicates: same heads, same state.
    #[test]
    fn any_delivery_order_of_the_same_changes_gives_the_same_state(
        work in arb_work(),
        seeds in prop::collection::vec(any::<u64>(), 2..4),
    ) {
        let c = content(3);
        let mut all: Vec<Change> = materialize(&c).unwrap();
        let mut n = 0u128;
        for (r, updates) in work.iter().enumerate() {
            let mut doc = create(&c, ActorId::from(&[r as u8 + 1; 16][..])).unwrap();
            for (task, status) in updates {
                n += 1;
                let u = update(n, *task, *status, "w1");
                if let Ok((_, ch)) = record_status(&mut doc, &u, 1_000 + n as i64) {
                    all.push(ch);
                }
            }
        }
        let mut views = Vec::new();
        for seed in seeds {
            let mut order: Vec<Change> = all.clone();
            order.extend(all.iter().step_by(2).cloned());
            let mut x = seed | 1;
            for i in (1..order.len()).rev() {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (x >> 33) as usize % (i + 1));
            }
            let mut doc = Automerge::new();
            // Deliver one change at a time, as a network would.
            for ch in order {
                doc.apply_changes([ch]).unwrap();
            }
            views.push((doc.get_heads(), read(&doc).unwrap()));
        }
        for v in &views[1..] {
            prop_assert_eq!(v, &views[0]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// The terminal's cached log summary gives exactly the changes reading
    /// the document does, including after merging another replica's
    /// status events (which the cache takes in with `advance`).
    #[test]
    fn recording_from_a_log_summary_makes_the_same_changes(
        work in prop::collection::vec((1u128..4, 0u8..3, 0i64..3_000), 1..12),
        merge_at in 0usize..12,
    ) {
        let c = content(3);
        let actor = ActorId::from(&[9u8; 16][..]);
        let mut plain = create(&c, actor.clone()).unwrap();
        let mut cached = create(&c, actor).unwrap();
        let mut other = create(&c, ActorId::from(&[8u8; 16][..])).unwrap();
        record_status(&mut other, &update(999, 1, Status::Completed, "w9"), 2_500).unwrap();
        let mut summary = LogSummary::of(&cached).unwrap();
        for (i, (task, s, wall)) in work.iter().enumerate() {
            if i == merge_at {
                plain.merge(&mut other.clone()).unwrap();
                let since = cached.get_heads();
                cached.merge(&mut other.clone()).unwrap();
                prop_assert!(summary.advance(&cached, &since), "another terminal's event is an append");
            }
            let status = [Status::InProgress, Status::Completed, Status::Reopened][*s as usize];
            let u = update(100 + i as u128, *task, status, "w1");
            let a = record_status(&mut plain, &u, *wall);
            let b = record_status_with(&mut cached, &u, *wall, Some(&mut summary));
            match (a, b) {
                (Ok((ea, ca)), Ok((eb, cb))) => {
                    prop_assert_eq!(ea, eb);
                    prop_assert_eq!(ca.hash(), cb.hash());
                }
                (Err(ea), Err(eb)) => prop_assert_eq!(ea.to_string(), eb.to_string()),
                (a, b) => prop_assert!(false, "{:?} vs {:?}", a.map(|x| x.0), b.map(|x| x.0)),
            }
        }
    }
}

/// One thing that happens to a list between two refreshes of the hub's view.
#[derive(Debug, Clone)]
enum Happening {
    /// Terminal `t` records a status for task `task` (1..=3; 4 is not in the list).
    Status {
        t: usize,
        task: u128,
        status: u8,
        note: bool,
    },
    /// The two terminals sync.
    Sync,
    /// HQ reassigns a task (not an append).
    Reassign(u128),
    /// A terminal records an event under an id already used.
    ReusedId { t: usize, task: u128 },
    /// The hub's view is brought forward here.
    Refresh,
}

fn happening() -> impl Strategy<Value = Happening> {
    prop_oneof![
        6 => (0usize..2, 1u128..5, 0u8..3, any::<bool>())
            .prop_map(|(t, task, status, note)| Happening::Status { t, task, status, note }),
        2 => Just(Happening::Sync),
        1 => (1u128..4).prop_map(Happening::Reassign),
        1 => (0usize..2, 1u128..4).prop_map(|(t, task)| Happening::ReusedId { t, task }),
        3 => Just(Happening::Refresh),
    ]
}

/// Record `u` on `doc` as `record_status` does (the change written op by
/// op), and the same event on a copy by a transaction: the two changes
/// must be byte for byte the same, and so must the documents after.
fn record_both_ways(doc: &mut Automerge, u: &StatusUpdate, at: i64) -> Result<(), TestCaseError> {
    let mut reference = doc.fork();
    reference.set_actor(doc.get_actor().clone());
    let (event, change) = match record_status(doc, u, at) {
        Ok(made) => made,
        // Refused before anything is written (a reopen of an open task):
        // the same for both ways. Failing to apply the change is not.
        Err(e) => {
            prop_assert!(!matches!(e, ModelError::Automerge(_)), "{e}");
            return Ok(());
        }
    };
    let by_transaction = append_event_by_transaction(&mut reference, &event, at).unwrap();
    prop_assert_eq!(change.raw_bytes(), by_transaction.raw_bytes());
    prop_assert_eq!(doc.get_heads(), reference.get_heads());
    prop_assert_eq!(read(doc).unwrap(), read(&reference).unwrap());
    Ok(())
}

/// Play `happenings` on two terminals of a 3-task list and the hub's copy;
/// at each `Refresh` the terminals' work is merged into the hub and
/// `check` is called with the hub and its heads at the previous refresh.
fn play(
    happenings: Vec<Happening>,
    mut check: impl FnMut(&Automerge, &[ChangeHash]) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let c = content(3);
    let hq = create(&c, ActorId::from([9u8; 16])).unwrap();
    let mut terminals = [hq.fork(), hq.fork()];
    terminals[0].set_actor(ActorId::from([1u8; 16]));
    terminals[1].set_actor(ActorId::from([2u8; 16]));
    let mut hub = hub_copy(&hq);
    let mut since = hub.get_heads();
    let mut n = 1000u128;
    let mut at = 1_800_000_000_000i64;
    for h in happenings {
        n += 1;
        at += 1000;
        match h {
            Happening::Status {
                t,
                task,
                status,
                note,
            } => {
                let status =
                    [Status::InProgress, Status::Completed, Status::Reopened][status as usize];
                let mut u = update(n, task, status, "w1");
                u.note = note.then(|| format!("note {n}"));
                record_both_ways(&mut terminals[t], &u, at)?;
            }
            Happening::Sync => {
                let (a, b) = terminals.split_at_mut(1);
                sync_pair(&mut a[0], &mut b[0]);
            }
            Happening::Reassign(task) => {
                let to: Assignee = "worker:w-9".parse().unwrap();
                let _ = set_assignee(&mut hub, TaskId(Uuid::from_u128(task)), Some(&to), at);
            }
            Happening::ReusedId { t, task } => {
                let u = update(1001, task, Status::Completed, "w2");
                record_both_ways(&mut terminals[t], &u, at)?;
            }
            Happening::Refresh => {
                for t in &mut terminals {
                    hub.merge(t).unwrap();
                }
                check(&hub, &since)?;
                since = hub.get_heads();
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// `refresh` answers exactly what `read` does, or declines.
    #[test]
    fn refresh_equals_a_full_read(happenings in proptest::collection::vec(happening(), 1..24)) {
        let mut view: Option<InstanceView> = None;
        play(happenings, |hub, since| {
            let full = read(hub).unwrap();
            let old = view.get_or_insert_with(|| read(&hub_at_start()).unwrap());
            if let Some(v) = refresh(hub, since, old) {
                prop_assert_eq!(&v, &full);
            }
            view = Some(full);
            Ok(())
        })?;
    }

    /// `LogSummary::advance` ends where reading the whole log again does,
    /// or declines and leaves the summary as it was.
    #[test]
    fn advancing_a_log_summary_equals_reading_it_again(
        happenings in proptest::collection::vec(happening(), 1..24),
    ) {
        let mut summary: Option<LogSummary> = None;
        play(happenings, |hub, since| {
            let full = LogSummary::of(hub).unwrap();
            let sum = summary.get_or_insert_with(|| LogSummary::of(&hub_at_start()).unwrap());
            let before = sum.normalized();
            if sum.advance(hub, since) {
                prop_assert_eq!(sum.normalized(), full.normalized());
            } else {
                prop_assert_eq!(sum.normalized(), before);
            }
            summary = Some(full);
            Ok(())
        })?;
    }
}

/// The hub's copy of the list `play` starts from.
fn hub_at_start() -> Automerge {
    hub_copy(&create(&content(3), ActorId::from([9u8; 16])).unwrap())
}

/// The hub's copy of a list: HQ's document under the hub's own actor.
fn hub_copy(hq: &Automerge) -> Automerge {
    let mut hub = hq.fork();
    hub.set_actor(ActorId::from([8u8; 16]));
    hub
}

/// `refresh` and `LogSummary::advance` take in appended events and
/// decline anything else (the summary then left as it was).
#[test]
fn refresh_and_a_log_summary_read_only_new_events_and_decline_anything_else() {
    let c = content(2);
    let mut hub = create(&c, ActorId::from([9u8; 16])).unwrap();
    let mut t = hub.fork();
    t.set_actor(ActorId::from([1u8; 16]));
    let since = hub.get_heads();
    let view = read(&hub).unwrap();
    let mut summary = LogSummary::of(&hub).unwrap();
    record_status(
        &mut t,
        &update(1, 1, Status::Completed, "w1"),
        1_800_000_000_000,
    )
    .unwrap();
    hub.merge(&mut t).unwrap();
    let v = refresh(&hub, &since, &view).expect("an append is refreshed");
    assert_eq!(v, read(&hub).unwrap());
    assert!(summary.advance(&hub, &since), "an append advances");
    let full = LogSummary::of(&hub).unwrap().normalized();
    assert_eq!(summary.normalized(), full);
    assert_eq!(full.1, 1_800_000_000_000, "the latest time");
    assert_eq!(
        v.task(TaskId(Uuid::from_u128(1))).unwrap().status.current,
        Status::Completed
    );
    // An HQ edit is not an append: declined.
    let since = hub.get_heads();
    let to: Assignee = "worker:w-9".parse().unwrap();
    set_assignee(
        &mut hub,
        TaskId(Uuid::from_u128(2)),
        Some(&to),
        1_800_000_001_000,
    )
    .unwrap();
    assert!(refresh(&hub, &since, &v).is_none());
    let before = summary.normalized();
    assert!(!summary.advance(&hub, &since));
    assert_eq!(summary.normalized(), before, "untouched");
    // A view of a state the document does not hold: declined.
    record_status(
        &mut t,
        &update(2, 2, Status::Completed, "w1"),
        1_800_000_002_000,
    )
    .unwrap();
    assert!(refresh(&hub, &t.get_heads(), &v).is_none());
    assert!(!summary.advance(&hub, &t.get_heads()));
    assert_eq!(summary.normalized(), before);
}

/// Content with every optional field present or absent, any number of
/// tasks (ids in any order), any store-written creator.
fn arb_content() -> impl Strategy<Value = InstanceContent> {
    let task = (
        (
            any::<u128>(),
            "[a-zA-Z0-9äß€][a-zA-Z0-9 äß€]{0,19}",
            "[a-z äß\n]{0,40}",
        ),
        any::<bool>(),
        any::<bool>(),
        0usize..4,
        any::<bool>(),
        any::<bool>(),
        any::<i64>(),
        any::<bool>(),
    )
        .prop_map(
            |((n, title, description), start, due, prio, link, assignee, position, by_store)| {
                let mut t = task_spec(n, &title);
                t.description = description;
                if by_store {
                    t.created_by = CreatedBy::Store("store-042".parse().unwrap());
                }
                t.start = t.start.filter(|_| start);
                t.due = t.due.filter(|_| due);
                t.priority = [
                    Priority::Low,
                    Priority::Normal,
                    Priority::High,
                    Priority::Urgent,
                ][prio];
                t.link = t.link.filter(|_| link);
                t.assignee = t.assignee.filter(|_| assignee);
                t.position = position;
                t
            },
        );
    (
        any::<u128>(),
        proptest::collection::vec(task, 0..25).prop_shuffle(),
        any::<bool>(),
        "[a-zA-Z0-9][a-zA-Z0-9 ]{0,29}",
    )
        .prop_map(|(id, mut tasks, template, name)| {
            let mut c = content(0);
            c.id = DocumentId(Uuid::from_u128(id));
            c.meta.name = name;
            if !template {
                c.meta.template = None;
                c.meta.created_by = CreatedBy::Store(c.meta.store.clone());
            }
            // Any order, ids unique (a repeated id is refused).
            let mut seen = std::collections::HashSet::new();
            tasks.retain(|t| seen.insert(t.id));
            c.tasks = tasks;
            c
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Written op by op, an instance has the bytes transactions give it:
    /// a hub or agent on the first implementation dedupes with this one.
    #[test]
    fn materialize_makes_the_bytes_transactions_make(c in arb_content()) {
        let mut ours = materialize(&c).unwrap();
        let mut reference = materialize_by_transaction(&c).unwrap();
        prop_assert_eq!(ours.len(), reference.len());
        for (a, b) in ours.iter_mut().zip(reference.iter_mut()) {
            prop_assert_eq!(a.bytes(), b.bytes());
        }
        let mut doc = Automerge::new();
        doc.apply_changes(ours).unwrap();
        prop_assert_eq!(read(&doc).unwrap().tasks.len(), c.tasks.len());
    }
}

#[test]
fn a_list_of_500_tasks_has_the_bytes_transactions_make() {
    // Past 127 actors (multi-byte actor indices) and thousands of ops.
    let c = content(500);
    let ours = materialize(&c).unwrap();
    let reference = materialize_by_transaction(&c).unwrap();
    assert_eq!(ours.len(), 502);
    for (mut a, mut b) in ours.into_iter().zip(reference) {
        assert_eq!(a.bytes(), b.bytes());
    }
}

#[test]
fn a_task_id_twice_in_one_list_is_refused() {
    let mut c = content(2);
    c.tasks[1].id = c.tasks[0].id;
    let e = materialize(&c).unwrap_err();
    assert!(e.to_string().contains("appears twice"), "{e}");
}

/// Two events with one id in a log (only a peer past validation, or two
/// concurrent changes, can leave them): the one made first counts, on
/// every replica, whatever the later copy says or sorts as.
#[test]
fn a_later_copy_of_an_event_id_never_replaces_the_original() {
    let c = content(1);
    let mut doc = Automerge::new();
    doc.apply_changes(materialize(&c).unwrap()).unwrap();
    doc.set_actor(ActorId::from(&[1u8; 16][..]));
    let (original, _) =
        record_status(&mut doc, &update(9, 1, Status::Completed, "w-7"), 5_000).unwrap();
    let base = doc.clone();
    // Copies that would sort before and after the original by every field.
    for (status, worker, at) in [
        (Status::InProgress, "a", 1),
        (Status::Reopened, "zz", 9_000),
        (Status::NotStarted, "w-0", 4_999),
    ] {
        for forger in [1u8, 0, 0xff] {
            let mut d = base.clone();
            d.set_actor(ActorId::from(&[forger; 16][..]));
            let forged = StatusEvent {
                worker: worker.parse().unwrap(),
                status,
                at,
                prev: Vec::new(),
                note: Some("forged".into()),
                ..original.clone()
            };
            append_event_by_transaction(&mut d, &forged, at).unwrap();
            let view = read(&d).unwrap();
            assert_eq!(view.tasks[0].status.history, vec![original.clone()]);
            assert_eq!(view.tasks[0].status.current, Status::Completed);
            let (events, _) = read_events(&d).unwrap();
            assert_eq!(events, vec![original.clone()]);
            // The terminal's summary is not carried over a reused id: it
            // is read again, which keeps the original.
            let cached = (base.get_heads(), LogSummary::of(&base).unwrap());
            assert!(LogSummary::carried_to(Some(cached), &d).is_none());
            // And a new event may not take the id a third time.
            let mut again = d.clone();
            assert_eq!(
                record_status(&mut again, &update(9, 1, Status::InProgress, "w-7"), 10_000)
                    .unwrap_err(),
                ModelError::DuplicateEvent(original.id)
            );
        }
    }
}

/// Two replicas that each wrote an event under one id without seeing the
/// other's pick the same one once merged, in either order.
#[test]
fn concurrent_events_under_one_id_resolve_the_same_on_every_replica() {
    let c = content(1);
    let mut base = Automerge::new();
    base.apply_changes(materialize(&c).unwrap()).unwrap();
    let mut a = base.fork();
    a.set_actor(ActorId::from(&[0xA1; 16][..]));
    let mut b = base.fork();
    b.set_actor(ActorId::from(&[0x0B; 16][..]));
    record_status(&mut a, &update(9, 1, Status::Completed, "w-1"), 5_000).unwrap();
    record_status(&mut b, &update(9, 1, Status::InProgress, "w-2"), 6_000).unwrap();
    let mut ab = a.clone();
    ab.merge(&mut b.clone()).unwrap();
    let mut ba = b.clone();
    ba.merge(&mut a.clone()).unwrap();
    let (ea, _) = read_events(&ab).unwrap();
    let (eb, _) = read_events(&ba).unwrap();
    assert_eq!(ea.len(), 1);
    assert_eq!(ea, eb);
    assert_eq!(read(&ab).unwrap(), read(&ba).unwrap());
}

#[test]
fn a_terminal_refuses_not_started_and_an_event_id_it_already_has() {
    let c = content(1);
    let mut doc = Automerge::new();
    doc.apply_changes(materialize(&c).unwrap()).unwrap();
    doc.set_actor(ActorId::from(&[1u8; 16][..]));
    let err = record_status(&mut doc, &update(1, 1, Status::NotStarted, "w-1"), 5_000).unwrap_err();
    assert!(
        err.to_string().contains("not_started cannot be recorded"),
        "{err}"
    );
    record_status(&mut doc, &update(2, 1, Status::Completed, "w-1"), 5_000).unwrap();
    let mut sum = LogSummary::of(&doc).unwrap();
    assert_eq!(
        record_status_with(
            &mut doc,
            &update(2, 1, Status::Reopened, "w-1"),
            6_000,
            Some(&mut sum)
        )
        .unwrap_err(),
        ModelError::DuplicateEvent(EventId(Uuid::from_u128(2)))
    );
    assert_eq!(read_events(&doc).unwrap().0.len(), 1, "nothing was written");
}

/// Found by `validation_fuzz`: with the log replaced by a map (a hostile
/// root edit, which the hub refuses), recording status is an error, not a
/// change Automerge panics on.
#[test]
fn recording_into_a_log_that_is_not_a_list_is_an_error() {
    use automerge::transaction::Transactable;
    let c = content(1);
    let mut doc = Automerge::new();
    doc.apply_changes(materialize(&c).unwrap()).unwrap();
    doc.set_actor(ActorId::from(&[1u8; 16][..]));
    let mut tx = doc.transaction();
    tx.put_object(ROOT, keys::EVENTS, automerge::ObjType::Map)
        .unwrap();
    tx.commit();
    assert!(matches!(
        record_status(&mut doc, &update(1, 1, Status::Completed, "w-1"), 5_000),
        Err(ModelError::NotAnInstance(_))
    ));
}
