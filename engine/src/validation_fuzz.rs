//! Property-based fuzzing of change validation (proptest, stable Rust).
//!
//! Two kinds of hostile input against a real instance document (HQ
//! content, one status event by another terminal):
//! - random sequences of raw Automerge operations (puts, inserts,
//!   deletes, increments, new objects of any type, at HQ fields, task
//!   maps, the event log, the root, made-up keys) committed under any
//!   actor (the terminal's own, HQ's, another store's, the genesis
//!   actor), built on the current heads or on older ones;
//! - real changes with their bytes garbled (flipped, cut, spliced,
//!   grown), for whatever still decodes.
//!
//! `validate` must never panic, and whatever it accepts must leave every
//! HQ-authored field, the document's identity and the existing event log
//! exactly as they were, and use no actor that belongs to someone else.

use std::collections::{HashMap, HashSet};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, Change, ObjId, ObjType, ReadDoc, ScalarValue, ROOT};
use proptest::prelude::*;
use uuid::Uuid;

use crate::document::instance::{self, materialize, record_status};
use crate::document::instance_tests::content;
use crate::document::{keys, DocKind};
use crate::ids::{EventId, Principal, StoreId, TaskId, WorkerId};
use crate::model::{Status, StatusUpdate};
use crate::validation::{validate, ValidationContext, Verdict};

const NOW: i64 = 1_800_000_000_000;
const HQ_ACTOR: [u8; 16] = [0xAA; 16];
const OTHER_STORE_ACTOR: [u8; 16] = [0xBB; 16];
const OWN_EARLIER_ACTOR: [u8; 16] = [0x02; 16];

/// The hub's copy: HQ content plus one event by a terminal of this store.
struct Base {
    doc: Automerge,
    /// Heads of the HQ content alone (before the event).
    content_heads: Vec<automerge::ChangeHash>,
    content_id: crate::ids::DocumentId,
    owner: StoreId,
    known: HashSet<automerge::ChangeHash>,
    owners: HashMap<ActorId, Principal>,
}

fn store() -> Principal {
    Principal::Store("store-042".parse().expect("a store id"))
}

fn base() -> Base {
    let c = content(2);
    let changes = materialize(&c).expect("materializes");
    let known = changes.iter().map(Change::hash).collect();
    let mut doc = Automerge::new();
    doc.apply_changes(changes).expect("applies");
    let content_heads = doc.get_heads();
    doc.set_actor(ActorId::from(OWN_EARLIER_ACTOR));
    let update = StatusUpdate {
        id: EventId(Uuid::from_u128(1)),
        task: TaskId(Uuid::from_u128(1)),
        status: Status::InProgress,
        worker: "w1".parse().expect("a worker id"),
        terminal: "pos-2".parse().expect("a terminal id"),
        note: None,
    };
    record_status(&mut doc, &update, NOW).expect("records");
    let mut owners = HashMap::new();
    owners.insert(ActorId::from(HQ_ACTOR), Principal::Hq);
    owners.insert(
        ActorId::from(OTHER_STORE_ACTOR),
        Principal::Store("store-007".parse().expect("a store id")),
    );
    owners.insert(ActorId::from(OWN_EARLIER_ACTOR), store());
    Base {
        doc,
        content_heads,
        content_id: c.id,
        owner: c.meta.store,
        known,
        owners,
    }
}

impl Base {
    fn validate(&self, changes: &[Change]) -> crate::validation::Outcome {
        self.validate_with(changes, validate)
    }

    /// [`Base::validate`], checked against the reference implementation:
    /// the fast path must reach the same verdict on every change.
    fn validate_checked(&self, changes: &[Change]) -> crate::validation::Outcome {
        let fast = self.validate(changes);
        let slow = self.validate_with(changes, crate::validation::reference::validate);
        crate::validation::tests::assert_same_verdicts(&fast.verdicts, &slow.verdicts);
        let hashes = |o: &crate::validation::Outcome| {
            o.accepted.iter().map(Change::hash).collect::<Vec<_>>()
        };
        assert_eq!(hashes(&fast), hashes(&slow));
        assert_eq!(fast.new_actors, slow.new_actors);
        // The sequence numbers handed back are the state's own, and given
        // them, validation decides as it does reading them itself.
        let mut after = self.doc.fork();
        after
            .apply_changes(fast.accepted.clone())
            .expect("accepted changes apply");
        assert_eq!(fast.seqs, crate::validation::last_seqs(&after));
        let given = self.validate_with_given_seqs(changes);
        crate::validation::tests::assert_same_verdicts(&given.verdicts, &fast.verdicts);
        assert_eq!(given.seqs, fast.seqs);
        if let Some(state) = &fast.state {
            let mut expected = self.doc.fork();
            expected
                .apply_changes(slow.accepted.clone())
                .expect("accepted changes apply");
            assert_eq!(state.get_heads(), expected.get_heads());
        }
        fast
    }

    /// [`Base::validate`] given the document's sequence numbers.
    fn validate_with_given_seqs(&self, changes: &[Change]) -> crate::validation::Outcome {
        let seqs = crate::validation::last_seqs(&self.doc);
        self.validate_with(changes, |doc, changes, author, ctx| {
            crate::validation::validate_with_seqs(doc, changes, author, ctx, Some(seqs.clone()))
        })
    }

    fn validate_with(
        &self,
        changes: &[Change],
        f: impl Fn(
            &Automerge,
            &[Change],
            &Principal,
            &ValidationContext<'_>,
        ) -> crate::validation::Outcome,
    ) -> crate::validation::Outcome {
        let lookup = |a: &ActorId| self.owners.get(a).cloned();
        let ctx = ValidationContext {
            doc_id: self.content_id,
            kind: DocKind::Instance,
            owner: &self.owner,
            actor_owner: &lookup,
            known_content: &self.known,
            max_event_time: NOW + 60_000,
            worker_known: &|w: &WorkerId| ["w1", "w2"].contains(&w.as_str()),
        };
        f(&self.doc, changes, &store(), &ctx)
    }
}

/// Where an operation lands.
#[derive(Debug, Clone)]
enum Target {
    Root,
    Meta,
    Tasks,
    /// An HQ task map, by index.
    Task(usize),
    Events,
    /// An existing status event, by index.
    Event(usize),
    /// The object made by an earlier op of the same change, if any.
    Made,
}

#[derive(Debug, Clone)]
enum Value {
    Str(String),
    Int(i64),
    F64(f64),
    Bool(bool),
    Null,
    Counter(i64),
    Timestamp(i64),
    Bytes(Vec<u8>),
}

impl Value {
    fn scalar(&self) -> ScalarValue {
        match self {
            Value::Str(s) => ScalarValue::Str(s.as_str().into()),
            Value::Int(i) => ScalarValue::Int(*i),
            Value::F64(f) => ScalarValue::F64(*f),
            Value::Bool(b) => ScalarValue::Boolean(*b),
            Value::Null => ScalarValue::Null,
            Value::Counter(c) => ScalarValue::counter(*c),
            Value::Timestamp(t) => ScalarValue::Timestamp(*t),
            Value::Bytes(b) => ScalarValue::Bytes(b.clone()),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(Target, String, Value),
    PutObject(Target, String, u8),
    Insert(Target, usize, Value),
    InsertObject(Target, usize, u8),
    Delete(Target, String),
    DeleteAt(Target, usize),
    Increment(Target, String, i64),
    SpliceText(Target, usize, String),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::Root),
        Just(Target::Meta),
        Just(Target::Tasks),
        (0..3usize).prop_map(Target::Task),
        Just(Target::Events),
        (0..2usize).prop_map(Target::Event),
        Just(Target::Made),
    ]
}

/// Real keys (any container's) and made-up ones, including task ids.
fn key() -> impl Strategy<Value = String> {
    let real: Vec<&'static str> = [
        keys::SCHEMA,
        keys::KIND,
        keys::ID,
        keys::META,
        keys::TASKS,
        keys::EVENTS,
        keys::STORE,
        keys::NAME,
        keys::TEMPLATE,
        keys::DATE,
        keys::TIME_ZONE,
        keys::CREATED_BY,
    ]
    .into_iter()
    .chain(keys::TASK_FIELDS.iter().copied())
    .chain(keys::EVENT_FIELDS.iter().copied())
    .collect();
    prop_oneof![
        4 => proptest::sample::select(real).prop_map(str::to_owned),
        1 => (1u128..4).prop_map(|n| Uuid::from_u128(n).to_string()),
        1 => "[a-z_]{0,8}",
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        ".{0,12}".prop_map(Value::Str),
        prop_oneof![
            Just("completed".to_owned()),
            Just("worker:w9".to_owned()),
            Just(Uuid::from_u128(1).to_string()),
        ]
        .prop_map(Value::Str),
        any::<i64>().prop_map(Value::Int),
        (NOW - 10..NOW + 10_000_000).prop_map(Value::Int),
        any::<f64>().prop_map(Value::F64),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
        any::<i64>().prop_map(Value::Counter),
        any::<i64>().prop_map(Value::Timestamp),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (target(), key(), value()).prop_map(|(t, k, v)| Op::Put(t, k, v)),
        2 => (target(), key(), 0u8..4).prop_map(|(t, k, o)| Op::PutObject(t, k, o)),
        2 => (target(), 0usize..3, value()).prop_map(|(t, i, v)| Op::Insert(t, i, v)),
        2 => (target(), 0usize..3, 0u8..4).prop_map(|(t, i, o)| Op::InsertObject(t, i, o)),
        1 => (target(), key()).prop_map(|(t, k)| Op::Delete(t, k)),
        1 => (target(), 0usize..3).prop_map(|(t, i)| Op::DeleteAt(t, i)),
        1 => (target(), key(), any::<i64>()).prop_map(|(t, k, n)| Op::Increment(t, k, n)),
        1 => (target(), 0usize..4, ".{0,4}").prop_map(|(t, i, s)| Op::SpliceText(t, i, s)),
    ]
}

fn obj_type(n: u8) -> ObjType {
    match n % 4 {
        0 => ObjType::Map,
        1 => ObjType::List,
        2 => ObjType::Text,
        _ => ObjType::Table,
    }
}

fn child(doc: &impl ReadDoc, obj: &ObjId, key: &str) -> Option<ObjId> {
    match doc.get(obj, key).ok()?? {
        (automerge::Value::Object(_), id) => Some(id),
        _ => None,
    }
}

fn child_at(doc: &impl ReadDoc, obj: &ObjId, i: usize) -> Option<ObjId> {
    match doc.get(obj, i).ok()?? {
        (automerge::Value::Object(_), id) => Some(id),
        _ => None,
    }
}

fn resolve(doc: &impl ReadDoc, t: &Target, made: &Option<ObjId>) -> Option<ObjId> {
    match t {
        Target::Root => Some(ROOT),
        Target::Meta => child(doc, &ROOT, keys::META),
        Target::Tasks => child(doc, &ROOT, keys::TASKS),
        Target::Task(i) => {
            let tasks = child(doc, &ROOT, keys::TASKS)?;
            child(doc, &tasks, &Uuid::from_u128(*i as u128 + 1).to_string())
        }
        Target::Events => child(doc, &ROOT, keys::EVENTS),
        Target::Event(i) => child_at(doc, &child(doc, &ROOT, keys::EVENTS)?, *i),
        Target::Made => made.clone(),
    }
}

/// Commit `ops` as one change of `actor` on top of `heads` of the base.
/// Ops that Automerge itself refuses (an insert into a map, ...) are
/// skipped: a hostile peer cannot send those either.
fn hostile_change(b: &Base, actor: ActorId, old_heads: bool, ops: &[Op], time: i64) -> Vec<Change> {
    let mut doc = if old_heads {
        b.doc.fork_at(&b.content_heads).expect("known heads")
    } else {
        b.doc.fork()
    };
    doc.set_actor(actor);
    let before = doc.get_heads();
    let _ = doc.transact_with::<_, _, automerge::AutomergeError, _>(
        |_| CommitOptions::default().with_time(time),
        |tx| {
            let mut made: Option<ObjId> = None;
            for op in ops {
                let r: Result<(), automerge::AutomergeError> = (|| {
                    match op {
                        Op::Put(t, k, v) => {
                            if let Some(o) = resolve(tx, t, &made) {
                                tx.put(&o, k.as_str(), v.scalar())?;
                            }
                        }
                        Op::PutObject(t, k, ty) => {
                            if let Some(o) = resolve(tx, t, &made) {
                                made = Some(tx.put_object(&o, k.as_str(), obj_type(*ty))?);
                            }
                        }
                        Op::Insert(t, i, v) => {
                            if let Some(o) = resolve(tx, t, &made) {
                                let at = (*i).min(tx.length(&o));
                                tx.insert(&o, at, v.scalar())?;
                            }
                        }
                        Op::InsertObject(t, i, ty) => {
                            if let Some(o) = resolve(tx, t, &made) {
                                let at = (*i).min(tx.length(&o));
                                made = Some(tx.insert_object(&o, at, obj_type(*ty))?);
                            }
                        }
                        Op::Delete(t, k) => {
                            if let Some(o) = resolve(tx, t, &made) {
                                tx.delete(&o, k.as_str())?;
                            }
                        }
                        Op::DeleteAt(t, i) => {
                            if let Some(o) = resolve(tx, t, &made) {
                                tx.delete(&o, *i)?;
                            }
                        }
                        Op::Increment(t, k, n) => {
                            if let Some(o) = resolve(tx, t, &made) {
                                tx.increment(&o, k.as_str(), *n)?;
                            }
                        }
                        Op::SpliceText(t, i, s) => {
                            if let Some(o) = resolve(tx, t, &made) {
                                let at = (*i).min(tx.length(&o));
                                tx.splice_text(&o, at, 0, s)?;
                            }
                        }
                    }
                    Ok(())
                })();
                let _ = r; // Refused by Automerge locally: skip this op.
            }
            Ok(())
        },
    );
    doc.get_changes(&before)
}

/// A field's value as text: scalars as they are, objects rendered.
fn field(doc: &Automerge, obj: &ObjId, key: &str) -> String {
    match doc.get(obj, key).ok().flatten() {
        Some((automerge::Value::Object(_), id)) => render(doc, &id),
        Some((v, _)) => format!("{v:?}"),
        None => "-".into(),
    }
}

/// An object as text, keys in order (a hydrated map's order varies).
fn render(doc: &Automerge, obj: &ObjId) -> String {
    let value = |v: Option<(automerge::Value<'_>, ObjId)>| match v {
        Some((automerge::Value::Object(_), id)) => render(doc, &id),
        Some((v, _)) => format!("{v:?}"),
        None => "-".into(),
    };
    match doc.object_type(obj) {
        Ok(ObjType::Map | ObjType::Table) => {
            let fields: Vec<String> = doc
                .keys(obj)
                .map(|k| format!("{k}: {}", value(doc.get(obj, k.as_str()).ok().flatten())))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        Ok(ObjType::List) => {
            let items: Vec<String> = (0..doc.length(obj))
                .map(|i| value(doc.get(obj, i).ok().flatten()))
                .collect();
            format!("[{}]", items.join(", "))
        }
        Ok(ObjType::Text) => format!("text {:?}", doc.text(obj).ok()),
        Err(e) => format!("error {e}"),
    }
}

/// Everything a store may never change: the root's keys and identity
/// fields, the list meta, each HQ task's keys and fields except its
/// assignee, and the event already logged.
fn protected(doc: &Automerge) -> String {
    let mut out = format!("root keys {:?};", doc.keys(ROOT).collect::<Vec<_>>());
    for k in [keys::SCHEMA, keys::KIND, keys::ID, keys::META] {
        out += &format!("{k}={};", field(doc, &ROOT, k));
    }
    if let Some(tasks) = child(doc, &ROOT, keys::TASKS) {
        for n in 1..=2u128 {
            let id = Uuid::from_u128(n).to_string();
            let Some(t) = child(doc, &tasks, &id) else {
                out += &format!("task {id} gone;");
                continue;
            };
            let task_keys: Vec<String> = doc
                .keys(&t)
                .filter(|k| !keys::STORE_WRITABLE_TASK_FIELDS.contains(&k.as_str()))
                .collect();
            out += &format!("{id} keys {task_keys:?};");
            for k in task_keys {
                out += &format!("{id}.{k}={};", field(doc, &t, &k));
            }
        }
    }
    if let Some(events) = child(doc, &ROOT, keys::EVENTS) {
        match child_at(doc, &events, 0) {
            Some(e) => out += &format!("event 0={}", render(doc, &e)),
            None => out += "event 0 gone",
        }
    }
    out
}

/// Each entry of the status log as written: id (as a UUID), status, worker.
fn log_entries(doc: &Automerge) -> Vec<(String, String, String)> {
    let Some(events) = child(doc, &ROOT, keys::EVENTS) else {
        return Vec::new();
    };
    let s = |e: &ObjId, k: &str| match doc.get(e, k) {
        Ok(Some((automerge::Value::Scalar(v), _))) => v.as_str().unwrap_or_default().to_owned(),
        Ok(Some((automerge::Value::Object(ObjType::Text), id))) => {
            doc.text(&id).unwrap_or_default()
        }
        _ => String::new(),
    };
    doc.list_range(&events, ..)
        .map(|item| {
            let e = item.id();
            let id = s(&e, "id");
            let id = id.parse::<Uuid>().map(|u| u.to_string()).unwrap_or(id);
            (id, s(&e, "status"), s(&e, "worker"))
        })
        .collect()
}

fn actor_choice() -> impl Strategy<Value = ActorId> {
    prop_oneof![
        4 => Just(ActorId::from([0x01; 16])),
        1 => Just(ActorId::from(OWN_EARLIER_ACTOR)),
        1 => Just(ActorId::from(HQ_ACTOR)),
        1 => Just(ActorId::from(OTHER_STORE_ACTOR)),
        1 => any::<[u8; 16]>().prop_map(ActorId::from),
    ]
}

/// One step of a batch a terminal sends: a real status event (for a task
/// of the list or not, dated now or in the future, from this terminal's
/// actor or a foreign one), or random raw ops on top of what came before.
/// An event may also reuse an id (the base's event 1, or an earlier
/// step's), record `not_started`, or name a worker on no roster: written
/// by hand then, past `record_status`'s own refusals, as a hostile peer
/// would (issue #19: the fuzzer never made these before).
#[derive(Debug, Clone)]
enum Step {
    Event {
        task: u128,
        future: bool,
        foreign_actor: bool,
        reuse_id: Option<u128>,
        status: Status,
        stranger: bool,
    },
    Raw(Vec<Op>),
}

fn step() -> impl Strategy<Value = Step> {
    let status = prop_oneof![
        6 => Just(Status::Completed),
        2 => Just(Status::InProgress),
        1 => Just(Status::Reopened),
        1 => Just(Status::NotStarted),
    ];
    let event = (
        0u128..4,
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.1),
        proptest::option::weighted(0.2, 0u128..8),
        status,
        proptest::bool::weighted(0.1),
    )
        .prop_map(
            |(task, future, foreign_actor, reuse_id, status, stranger)| Step::Event {
                task,
                future,
                foreign_actor,
                reuse_id,
                status,
                stranger,
            },
        );
    prop_oneof![
        4 => event,
        1 => proptest::collection::vec(op(), 1..4).prop_map(Step::Raw),
    ]
}

/// The changes of a batch built step by step on the hub's copy, each on
/// the one before (as a terminal that was offline sends them).
fn batch_of(b: &Base, steps: &[Step]) -> Vec<Change> {
    let mut t = b.doc.fork();
    t.set_actor(ActorId::from([0x01; 16]));
    let mut out = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let before = t.get_heads();
        match s {
            Step::Event {
                task,
                future,
                foreign_actor,
                reuse_id,
                status,
                stranger,
            } => {
                if *foreign_actor {
                    t.set_actor(ActorId::from(OTHER_STORE_ACTOR));
                }
                // 0 reuses the base's event; n an earlier step's (or a new one).
                let id = match reuse_id {
                    Some(0) => 1,
                    Some(n) => 100 + n,
                    None => 100 + i as u128,
                };
                let update = StatusUpdate {
                    id: EventId(Uuid::from_u128(id)),
                    // Tasks 1 and 2 are the list's; 3 and 0 are not.
                    task: TaskId(Uuid::from_u128(*task)),
                    status: *status,
                    worker: if *stranger { "ghost-999" } else { "w1" }
                        .parse()
                        .expect("a worker id"),
                    terminal: "pos-1".parse().expect("a terminal id"),
                    note: Some(format!("step {i}")),
                };
                let at = if *future { NOW + 3_600_000 } else { NOW };
                let recorded = match record_status(&mut t, &update, at) {
                    Ok(_) => true,
                    // What the terminal refuses to record, by hand.
                    Err(_) => instance::append_event_by_transaction(
                        &mut t,
                        &crate::model::StatusEvent {
                            id: update.id,
                            task: update.task,
                            status: update.status,
                            worker: update.worker.clone(),
                            terminal: update.terminal.clone(),
                            at,
                            prev: Vec::new(),
                            note: update.note.clone(),
                        },
                        at,
                    )
                    .is_ok(),
                };
                t.set_actor(ActorId::from([0x01; 16]));
                if !recorded {
                    continue;
                }
            }
            Step::Raw(ops) => {
                let mut b2 = Base {
                    doc: t.fork(),
                    ..base()
                };
                b2.doc.set_actor(ActorId::from([0x01; 16]));
                for c in hostile_change(&b2, ActorId::from([0x01; 16]), false, ops, NOW / 1000) {
                    let _ = t.apply_changes([c]);
                }
            }
        }
        out.extend(t.get_changes(&before));
    }
    out
}

proptest! {
    // 256 cases by default; PROPTEST_CASES=<n> for a longer run.

    #[test]
    fn batches_of_status_changes_get_the_reference_verdicts(
        steps in proptest::collection::vec(step(), 1..8),
        shuffle in any::<bool>(),
        drop_one in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let b = base();
        let mut changes = batch_of(&b, &steps);
        if let Some(i) = drop_one.filter(|_| changes.len() > 1) {
            // A lost change: what depends on it waits for it.
            changes.remove(i.index(changes.len()));
        }
        if shuffle {
            changes.reverse();
        }
        // validate_checked asserts the fast path and the reference agree.
        let out = b.validate_checked(&changes);
        prop_assert_eq!(out.verdicts.len(), changes.len());
        let mut after = b.doc.fork();
        after.apply_changes(out.accepted.clone()).expect("accepted changes apply");
        prop_assert_eq!(protected(&after), protected(&b.doc));
        // Nothing accepted puts a second event under one id, records
        // not_started or names a worker on no roster.
        let log = log_entries(&after);
        let ids: HashSet<&String> = log.iter().map(|(id, _, _)| id).collect();
        prop_assert_eq!(ids.len(), log.len(), "an id twice in {:?}", log);
        for (_, status, worker) in &log {
            prop_assert!(status != "not_started" && worker != "ghost-999", "{:?}", log);
        }
    }

    #[test]
    fn random_operations_never_panic_and_never_change_what_hq_wrote(
        actor in actor_choice(),
        old_heads in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..6),
        time in prop_oneof![Just(0i64), Just(NOW / 1000), any::<i64>()],
    ) {
        let b = base();
        let changes = hostile_change(&b, actor.clone(), old_heads, &ops, time);
        let out = b.validate_checked(&changes);
        prop_assert_eq!(out.verdicts.len(), changes.len());
        let mut after = b.doc.fork();
        after.apply_changes(out.accepted.clone()).expect("accepted changes apply");
        prop_assert_eq!(protected(&after), protected(&b.doc), "accepted: {:?}", out.verdicts);
        for c in &out.accepted {
            let owner = b.owners.get(c.actor_id());
            prop_assert!(
                owner.is_none() || owner == Some(&store()),
                "accepted a change by {:?}'s actor", owner
            );
        }
    }

    #[test]
    fn garbled_changes_never_panic_and_never_change_what_hq_wrote(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let b = base();
        // Real changes of three kinds: a status event, an assignment, an HQ-field edit.
        let mut t = b.doc.fork();
        t.set_actor(ActorId::from([0x01; 16]));
        let update = StatusUpdate {
            id: EventId(Uuid::from_u128(9)),
            task: TaskId(Uuid::from_u128(2)),
            status: Status::Completed,
            worker: "w2".parse().expect("a worker id"),
            terminal: "pos-1".parse().expect("a terminal id"),
            note: Some("ok".into()),
        };
        let source = match which {
            0 => record_status(&mut t, &update, NOW).expect("records").1,
            1 => instance::set_assignee(&mut t, TaskId(Uuid::from_u128(1)), None, NOW)
                .expect("assigns")
                .expect("a change"),
            _ => hostile_change(
                &b,
                ActorId::from([0x01; 16]),
                false,
                &[Op::Put(Target::Task(0), keys::TITLE.into(), Value::Str("x".into()))],
                NOW / 1000,
            )
            .pop()
            .expect("a change"),
        };
        let mut bytes = source.raw_bytes().to_vec();
        for (at, byte, how) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match how {
                0 => bytes[i] ^= byte | 1,
                1 => bytes[i] = byte,
                2 => bytes.insert(i, byte),
                _ => {
                    bytes.remove(i);
                }
            }
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len() + 1));
        }
        let Ok(change) = Change::from_bytes(bytes) else {
            return Ok(()); // Refused at decoding: what the wire layer does.
        };
        let out = b.validate_checked(std::slice::from_ref(&change));
        let mut after = b.doc.fork();
        if after.apply_changes(out.accepted.clone()).is_ok() {
            prop_assert_eq!(protected(&after), protected(&b.doc));
        }
        if which == 2 {
            prop_assert!(
                !matches!(out.verdicts.first(), Some((_, Verdict::Accepted))),
                "a garbled HQ-field edit was accepted"
            );
        }
    }
}

#[test]
fn the_fuzzers_hostile_change_is_refused_and_a_real_one_accepted() {
    // The generators reach validation: a plain HQ-field edit is refused,
    // an ordinary status event accepted.
    let b = base();
    let hostile = hostile_change(
        &b,
        ActorId::from([0x01; 16]),
        false,
        &[Op::Put(
            Target::Task(0),
            keys::TITLE.into(),
            Value::Str("x".into()),
        )],
        NOW / 1000,
    );
    let out = b.validate_checked(&hostile);
    assert!(matches!(out.verdicts[0].1, Verdict::Rejected(_)), "{out:?}");
    assert_ne!(
        {
            let mut a = b.doc.fork();
            a.apply_changes(hostile).unwrap();
            protected(&a)
        },
        protected(&b.doc),
        "protected() sees an HQ-field edit"
    );
    let mut t = b.doc.fork();
    t.set_actor(ActorId::from([0x01; 16]));
    let update = StatusUpdate {
        id: EventId(Uuid::from_u128(9)),
        task: TaskId(Uuid::from_u128(2)),
        status: Status::Completed,
        worker: "w2".parse().unwrap(),
        terminal: "pos-1".parse().unwrap(),
        note: None,
    };
    let (_, c) = record_status(&mut t, &update, NOW).unwrap();
    assert_eq!(b.validate_checked(&[c]).verdicts[0].1, Verdict::Accepted);
}
