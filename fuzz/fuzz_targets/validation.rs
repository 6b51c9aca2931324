//! Coverage-guided fuzzing of change validation, with the reference
//! validator (`engine::validation::reference`) as the oracle.
//!
//! Each input is a scenario built from real documents with the engine's own
//! builders: an HQ instance with tasks, a history the hub already holds
//! (status events recorded by this store's terminals, HQ assignments and
//! edits, a store's own task), then a batch a peer sends, made step by step
//! on its copy: real and forged status events (one reusing an existing
//! event's id with another status, worker or note), changes under another
//! principal's actor, a copy rewound to an older state (a restored backup:
//! its next change reuses a sequence number with other content), re-dated
//! events, events already logged edited in place, and changes duplicated,
//! resent, reordered, dropped or garbled.
//!
//! The oracle: the fast validator and the reference reach the same verdict
//! on every change; nothing panics (except inside Automerge, where
//! validation catches it by design); and what is accepted never rewrites
//! the hub's log, reuses a sequence number, uses someone else's actor,
//! touches what HQ wrote, or leaves two events with one id.

#![no_main]

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use arbitrary::Arbitrary;
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, Change, ChangeHash, ObjType, ReadDoc, ScalarValue, ROOT};
use chrono::{NaiveDate, TimeZone, Utc};
use engine::document::instance::{self, record_status};
use engine::document::{genesis, keys, DocKind};
use engine::ids::{DocumentId, EventId, Principal, StoreId, TaskId, TemplateId, WorkerId};
use engine::model::{
    Assignee, CreatedBy, InstanceContent, ListMeta, Priority, Status, StatusEvent, StatusUpdate,
    TaskSpec,
};
use engine::validation::{self, reference, Outcome, ValidationContext};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

/// The hub's clock during the scenario, and how far ahead of it an event may be dated.
const NOW: i64 = 1_800_000_000_000;
const TOLERANCE: i64 = 60_000;

const TERMINAL_A: [u8; 16] = [0x0A; 16];
const TERMINAL_B: [u8; 16] = [0x0B; 16];
/// A terminal of this store the hub has not seen yet.
const FRESH: [u8; 16] = [0x0C; 16];
const HQ: [u8; 16] = [0xAA; 16];
const OTHER_STORE: [u8; 16] = [0xBB; 16];

const MAX_HISTORY: usize = 8;
const MAX_STEPS: usize = 14;

fn owner() -> StoreId {
    "store-042".parse().expect("a store id")
}

fn other_store() -> StoreId {
    "store-007".parse().expect("a store id")
}

#[derive(Arbitrary, Debug)]
struct Scenario {
    /// 1 to 3 HQ tasks.
    tasks: u8,
    history: Vec<Past>,
    /// Who sends the batch: mostly the owning store.
    author: u8,
    /// The sender's copy starts at this state of the hub's (a terminal
    /// that was offline, or restored from a backup).
    start: u8,
    sender: ActorChoice,
    steps: Vec<Step>,
}

/// What the hub already holds, beyond the HQ content.
#[derive(Arbitrary, Debug)]
enum Past {
    Status {
        second_terminal: bool,
        task: u8,
        status: StatusChoice,
        worker: WorkerChoice,
        note: bool,
        clock: Clock,
    },
    /// HQ assigns a task.
    Assign { task: u8, who: u8 },
    /// HQ retitles a task.
    Retitle { task: u8 },
    /// The store adds a task of its own (terminal A).
    StoreTask,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum StatusChoice {
    NotStarted,
    InProgress,
    Completed,
    Reopened,
}

impl StatusChoice {
    fn status(self) -> Status {
        match self {
            StatusChoice::NotStarted => Status::NotStarted,
            StatusChoice::InProgress => Status::InProgress,
            StatusChoice::Completed => Status::Completed,
            StatusChoice::Reopened => Status::Reopened,
        }
    }
}

/// The owning store's roster, as the hub knows it.
const ROSTER: &[&str] = &["w1", "w2"];

/// Workers w1 and w2 are on the store's roster, the others are not.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum WorkerChoice {
    W1,
    W2,
    Ghost,
    OtherStoresWorker,
}

impl WorkerChoice {
    fn id(self) -> &'static str {
        match self {
            WorkerChoice::W1 => "w1",
            WorkerChoice::W2 => "w2",
            WorkerChoice::Ghost => "ghost-999",
            WorkerChoice::OtherStoresWorker => "w7",
        }
    }
}

/// An event's date (and its change's), against the hub's clock.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Clock {
    Now,
    Later(u16),
    Earlier(u32),
    AtTheLimit,
    PastTheLimit,
    Max,
    Min,
}

impl Clock {
    fn ms(self) -> i64 {
        match self {
            Clock::Now => NOW,
            Clock::Later(s) => NOW + i64::from(s) * 1000,
            Clock::Earlier(s) => NOW - i64::from(s) * 1000,
            Clock::AtTheLimit => NOW + TOLERANCE,
            Clock::PastTheLimit => NOW + TOLERANCE + 1,
            Clock::Max => i64::MAX,
            Clock::Min => i64::MIN,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ActorChoice {
    TerminalA,
    TerminalB,
    Fresh,
    Hq,
    OtherStore,
    Genesis,
    Content,
    TaskGenesis(u8),
    Any([u8; 16]),
}

/// One step of the batch the sender makes on its copy.
#[derive(Arbitrary, Debug)]
enum Step {
    /// A real status update, recorded by the engine; with `reuse`, under
    /// the id of an event the hub or this batch already has.
    Record {
        reuse: Option<u8>,
        task: u8,
        status: StatusChoice,
        worker: WorkerChoice,
        note: Option<u8>,
        clock: Clock,
    },
    /// An event written field by field, as a hostile peer can.
    Forge(Forged),
    /// Edit an event already in the log: re-date, re-attribute, change
    /// its status or note, or delete it.
    Rewrite {
        which: u8,
        how: Rewrite,
    },
    /// Write under another actor from here on.
    SwitchActor(ActorChoice),
    /// The copy goes back to an older state of the hub's (a restored
    /// backup), keeping its actor: its next change reuses a sequence number.
    Rewind {
        to: u8,
    },
    Assign {
        task: u8,
        who: u8,
    },
    Retitle {
        task: u8,
    },
    RemoveTask {
        task: u8,
    },
    /// Send again a change the hub already holds.
    Resend {
        which: u8,
    },
    /// Send a change of the batch twice.
    Duplicate {
        which: u8,
    },
    Swap {
        a: u8,
        b: u8,
    },
    Drop {
        which: u8,
    },
    Garble {
        which: u8,
        at: u16,
        byte: u8,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Rewrite {
    Redate(Clock),
    Worker(WorkerChoice),
    Status(StatusChoice),
    Note(u8),
    Delete,
}

#[derive(Arbitrary, Debug)]
struct Forged {
    /// An existing event's id (the hub's or this batch's), or a new one.
    id: Option<u8>,
    /// A task of the list (or one that is not), or none.
    task: Option<u8>,
    status: Field<StatusChoice>,
    worker: Field<WorkerChoice>,
    terminal: Field<bool>,
    at: Option<Clock>,
    /// Supersede the task's latest event, or nothing.
    prev: bool,
    note: Option<u8>,
}

/// A field as the engine writes it, as junk, or missing.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Field<T> {
    Good(T),
    Junk,
    Missing,
}

/// The hub's copy and what the scenario knows about it.
struct Hub {
    doc: Automerge,
    content: InstanceContent,
    known: HashSet<ChangeHash>,
    /// The actor of the deterministic change with HQ's content.
    content_actor: ActorId,
    owners: HashMap<ActorId, Principal>,
    /// Heads after the HQ content, then after each step of the history.
    states: Vec<Vec<ChangeHash>>,
    /// Every change the hub holds, oldest first.
    changes: Vec<Change>,
}

fn task_id(n: u8) -> TaskId {
    TaskId(Uuid::from_u128(u128::from(n) + 1))
}

fn task_spec(n: u8, created_by: CreatedBy) -> TaskSpec {
    TaskSpec {
        id: task_id(n),
        title: format!("Task {n}"),
        description: "do it well".into(),
        start: Some(Utc.with_ymd_and_hms(2026, 11, 26, 20, 0, 0).unwrap()),
        due: Some(Utc.with_ymd_and_hms(2026, 11, 26, 21, 0, 0).unwrap()),
        priority: Priority::High,
        link: None,
        assignee: Some("group:cashiers".parse().expect("an assignee")),
        created_by,
        position: i64::from(n),
    }
}

fn content(tasks: u8) -> InstanceContent {
    let store = owner();
    let template = TemplateId(Uuid::from_u128(77));
    let date = NaiveDate::from_ymd_opt(2026, 11, 26).expect("a date");
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
        tasks: (0..tasks).map(|n| task_spec(n, CreatedBy::Hq)).collect(),
    }
}

fn assignee(who: u8) -> Option<Assignee> {
    match who % 4 {
        0 => None,
        1 => Some("worker:w1".parse().expect("an assignee")),
        2 => Some("worker:w2".parse().expect("an assignee")),
        _ => Some("group:cashiers".parse().expect("an assignee")),
    }
}

/// Tasks 0..n are HQ's, task 5 is the store's own (when added); 4 is in no list.
fn task_of(n: u8) -> u8 {
    [0, 1, 2, 5, 4][usize::from(n % 5)]
}

fn update(
    id: EventId,
    task: u8,
    status: StatusChoice,
    worker: WorkerChoice,
    note: Option<u8>,
) -> StatusUpdate {
    StatusUpdate {
        id,
        task: task_id(task_of(task)),
        status: status.status(),
        worker: worker.id().parse().expect("a worker id"),
        terminal: "pos-1".parse().expect("a terminal id"),
        note: note.map(|n| format!("note {n}")),
    }
}

/// The changes `doc` gained since `before`.
fn since(doc: &Automerge, before: &[ChangeHash]) -> Vec<Change> {
    doc.get_changes(before)
}

fn build_hub(s: &Scenario, event_ids: &mut Vec<EventId>) -> Hub {
    let content = content(1 + s.tasks % 3);
    let materialized = instance::materialize(&content).expect("the content is valid");
    let known = materialized.iter().map(Change::hash).collect();
    let content_actor = materialized
        .last()
        .expect("materialize makes changes")
        .actor_id()
        .clone();
    let mut doc = Automerge::new();
    doc.apply_changes(materialized)
        .expect("the content applies");
    let mut owners = HashMap::new();
    owners.insert(ActorId::from(TERMINAL_A), Principal::Store(owner()));
    owners.insert(ActorId::from(TERMINAL_B), Principal::Store(owner()));
    owners.insert(ActorId::from(HQ), Principal::Hq);
    owners.insert(ActorId::from(OTHER_STORE), Principal::Store(other_store()));
    let mut states = vec![doc.get_heads()];
    let mut store_task = false;
    for (i, p) in s.history.iter().take(MAX_HISTORY).enumerate() {
        let before = doc.get_heads();
        match *p {
            Past::Status {
                second_terminal,
                task,
                status,
                worker,
                note,
                clock,
            } => {
                doc.set_actor(ActorId::from(if second_terminal {
                    TERMINAL_B
                } else {
                    TERMINAL_A
                }));
                let id = EventId(Uuid::from_u128(1000 + i as u128));
                let u = update(id, task, status, worker, note.then_some(i as u8));
                if record_status(&mut doc, &u, clock.ms()).is_ok() {
                    event_ids.push(id);
                }
            }
            Past::Assign { task, who } => {
                doc.set_actor(ActorId::from(HQ));
                let _ = instance::set_assignee(
                    &mut doc,
                    task_id(task_of(task)),
                    assignee(who).as_ref(),
                    NOW,
                );
            }
            Past::Retitle { task } => {
                doc.set_actor(ActorId::from(HQ));
                let mut spec = task_spec(task_of(task), CreatedBy::Hq);
                spec.title = format!("Renamed {i}");
                let _ = instance::update_task(&mut doc, &spec, NOW);
            }
            Past::StoreTask if !store_task => {
                doc.set_actor(ActorId::from(TERMINAL_A));
                let spec = task_spec(5, CreatedBy::Store(owner()));
                store_task = instance::add_task(&mut doc, &spec, NOW).is_ok();
            }
            Past::StoreTask => {}
        }
        if doc.get_heads() != before {
            states.push(doc.get_heads());
        }
    }
    let changes = since(&doc, &[]);
    Hub {
        doc,
        content,
        known,
        content_actor,
        owners,
        states,
        changes,
    }
}

fn actor(hub: &Hub, choice: ActorChoice) -> ActorId {
    let id = hub.content.id;
    match choice {
        ActorChoice::TerminalA => ActorId::from(TERMINAL_A),
        ActorChoice::TerminalB => ActorId::from(TERMINAL_B),
        ActorChoice::Fresh => ActorId::from(FRESH),
        ActorChoice::Hq => ActorId::from(HQ),
        ActorChoice::OtherStore => ActorId::from(OTHER_STORE),
        ActorChoice::Genesis => genesis::genesis_actor(id),
        ActorChoice::Content => hub.content_actor.clone(),
        ActorChoice::TaskGenesis(n) => genesis::task_genesis_actor(id, task_id(task_of(n))),
        ActorChoice::Any(bytes) => ActorId::from(bytes),
    }
}

/// Change an event already in the log in place.
fn rewrite(doc: &mut Automerge, which: u8, how: Rewrite) -> Option<Change> {
    let events = match doc.get(ROOT, keys::EVENTS).ok()?? {
        (automerge::Value::Object(ObjType::List), o) => o,
        _ => return None,
    };
    let len = doc.length(&events);
    if len == 0 {
        return None;
    }
    let at = usize::from(which) % len;
    let event = match doc.get(&events, at).ok()?? {
        (automerge::Value::Object(ObjType::Map), o) => o,
        _ => return None,
    };
    let before = doc.get_heads();
    doc.transact_with::<_, _, automerge::AutomergeError, _>(
        |_| CommitOptions::default().with_time(NOW / 1000),
        |tx| match how {
            Rewrite::Redate(c) => tx.put(&event, keys::AT, c.ms()),
            Rewrite::Worker(w) => tx.put(&event, keys::WORKER, w.id()),
            Rewrite::Status(s) => tx.put(&event, keys::STATUS, s.status().as_str()),
            Rewrite::Note(n) => tx.put(&event, keys::NOTE, format!("rewritten {n}")),
            Rewrite::Delete => tx.delete(&events, at),
        },
    )
    .ok()?;
    since(doc, &before).pop()
}

/// Write one event into the log field by field.
/// Returns the change and the event id it used.
fn forge(
    doc: &mut Automerge,
    f: &Forged,
    event_ids: &[EventId],
    fresh: EventId,
) -> Option<(Change, EventId)> {
    let events = match doc.get(ROOT, keys::EVENTS).ok()?? {
        (automerge::Value::Object(ObjType::List), o) => o,
        _ => return None,
    };
    let id = match f.id {
        Some(i) if !event_ids.is_empty() => event_ids[usize::from(i) % event_ids.len()],
        _ => fresh,
    };
    let task = f.task.map(task_of).map(task_id);
    let latest = task.and_then(|t| {
        let (events, _) = instance::read_events(doc).ok()?;
        events
            .into_iter()
            .filter(|e| e.task == t)
            .max_by_key(|e| e.at)
            .map(|e| e.id)
    });
    let when = f.at.map_or(NOW, Clock::ms);
    let put = |tx: &mut automerge::transaction::Transaction<'_>,
               obj: &automerge::ObjId,
               key: &str,
               value: Option<ScalarValue>|
     -> Result<(), automerge::AutomergeError> {
        match value {
            Some(v) => tx.put(obj, key, v),
            None => Ok(()),
        }
    };
    let field = |f: Field<String>, junk: ScalarValue| match f {
        Field::Good(s) => Some(ScalarValue::Str(s.into())),
        Field::Junk => Some(junk),
        Field::Missing => None,
    };
    let status = field(
        map(f.status, |s| s.status().as_str().to_owned()),
        "bogus".into(),
    );
    let worker = field(map(f.worker, |w| w.id().to_owned()), "not a worker!".into());
    let terminal = field(
        map(f.terminal, |second| {
            if second { "pos-2" } else { "pos-1" }.to_owned()
        }),
        ScalarValue::Int(7),
    );
    let before = doc.get_heads();
    doc.transact_with::<_, _, automerge::AutomergeError, _>(
        |_| CommitOptions::default().with_time(when.div_euclid(1000)),
        |tx| {
            let len = tx.length(&events);
            let e = tx.insert_object(&events, len, ObjType::Map)?;
            tx.put(&e, keys::EVENT_ID, id.0.to_string())?;
            put(
                tx,
                &e,
                keys::TASK,
                task.map(|t| ScalarValue::Str(t.0.to_string().into())),
            )?;
            put(tx, &e, keys::STATUS, status.clone())?;
            put(tx, &e, keys::WORKER, worker.clone())?;
            put(tx, &e, keys::TERMINAL, terminal.clone())?;
            put(tx, &e, keys::AT, f.at.map(|c| ScalarValue::Int(c.ms())))?;
            let prev = tx.put_object(&e, keys::PREV, ObjType::List)?;
            if let (true, Some(p)) = (f.prev, latest) {
                tx.insert(&prev, 0, p.0.to_string())?;
            }
            if let Some(n) = f.note {
                tx.put(&e, keys::NOTE, format!("forged {n}"))?;
            }
            Ok(())
        },
    )
    .ok()?;
    Some((since(doc, &before).pop()?, id))
}

fn map<T: Copy>(f: Field<T>, g: impl Fn(T) -> String) -> Field<String> {
    match f {
        Field::Good(t) => Field::Good(g(t)),
        Field::Junk => Field::Junk,
        Field::Missing => Field::Missing,
    }
}

/// The batch the sender makes, step by step on its own copy.
fn build_batch(s: &Scenario, hub: &Hub, event_ids: &mut Vec<EventId>) -> Vec<Change> {
    let start = &hub.states[usize::from(s.start) % hub.states.len()];
    let mut copy = hub.doc.fork_at(start).expect("the hub's own heads");
    copy.set_actor(actor(hub, s.sender));
    let mut batch: Vec<Change> = Vec::new();
    for (i, step) in s.steps.iter().take(MAX_STEPS).enumerate() {
        let fresh = EventId(Uuid::from_u128(2000 + i as u128));
        match step {
            Step::Record {
                reuse,
                task,
                status,
                worker,
                note,
                clock,
            } => {
                let id = match reuse {
                    Some(i) if !event_ids.is_empty() => {
                        event_ids[usize::from(*i) % event_ids.len()]
                    }
                    _ => fresh,
                };
                let u = update(id, *task, *status, *worker, *note);
                match record_status(&mut copy, &u, clock.ms()) {
                    Ok((_, c)) => {
                        if id == fresh {
                            event_ids.push(fresh);
                        }
                        batch.push(c);
                    }
                    // The engine refuses to record an id it already has;
                    // a hostile peer writes the same event by hand.
                    Err(_) if id != fresh => {
                        let f = Forged {
                            id: *reuse,
                            task: Some(*task),
                            status: Field::Good(*status),
                            worker: Field::Good(*worker),
                            terminal: Field::Good(false),
                            at: Some(*clock),
                            prev: true,
                            note: *note,
                        };
                        if let Some((c, _)) = forge(&mut copy, &f, event_ids, fresh) {
                            batch.push(c);
                        }
                    }
                    Err(_) => {}
                }
            }
            Step::Forge(f) => {
                if let Some((c, id)) = forge(&mut copy, f, event_ids, fresh) {
                    if id == fresh {
                        event_ids.push(fresh);
                    }
                    batch.push(c);
                }
            }
            Step::Rewrite { which, how } => {
                if let Some(c) = rewrite(&mut copy, *which, *how) {
                    batch.push(c);
                }
            }
            Step::SwitchActor(a) => {
                copy.set_actor(actor(hub, *a));
            }
            Step::Rewind { to } => {
                let me = copy.get_actor().clone();
                let to = &hub.states[usize::from(*to) % hub.states.len()];
                copy = hub.doc.fork_at(to).expect("the hub's own heads");
                copy.set_actor(me);
            }
            Step::Assign { task, who } => {
                if let Ok(Some(c)) = instance::set_assignee(
                    &mut copy,
                    task_id(task_of(*task)),
                    assignee(*who).as_ref(),
                    NOW,
                ) {
                    batch.push(c);
                }
            }
            Step::Retitle { task } => {
                let n = task_of(*task);
                let by = if n == 5 {
                    CreatedBy::Store(owner())
                } else {
                    CreatedBy::Hq
                };
                let mut spec = task_spec(n, by);
                spec.title = format!("Retitled {i}");
                if let Ok(Some(c)) = instance::update_task(&mut copy, &spec, NOW) {
                    batch.push(c);
                }
            }
            Step::RemoveTask { task } => {
                if let Ok(Some(c)) = instance::remove_task(&mut copy, task_id(task_of(*task)), NOW)
                {
                    batch.push(c);
                }
            }
            Step::Resend { which } => {
                let c = &hub.changes[usize::from(*which) % hub.changes.len()];
                batch.push(c.clone());
            }
            Step::Duplicate { which } if !batch.is_empty() => {
                let c = batch[usize::from(*which) % batch.len()].clone();
                batch.push(c);
            }
            Step::Swap { a, b } if !batch.is_empty() => {
                let n = batch.len();
                batch.swap(usize::from(*a) % n, usize::from(*b) % n);
            }
            Step::Drop { which } if !batch.is_empty() => {
                let n = batch.len();
                batch.remove(usize::from(*which) % n);
            }
            Step::Garble { which, at, byte } if !batch.is_empty() => {
                let n = batch.len();
                let c = &mut batch[usize::from(*which) % n];
                let mut bytes = c.raw_bytes().to_vec();
                let at = usize::from(*at) % bytes.len();
                bytes[at] ^= byte | 1;
                if let Ok(g) = Change::from_bytes(bytes) {
                    *c = g;
                }
            }
            Step::Duplicate { .. }
            | Step::Swap { .. }
            | Step::Drop { .. }
            | Step::Garble { .. } => {}
        }
    }
    batch
}

/// Each actor's last sequence number in `doc`.
fn last_seqs(doc: &Automerge) -> HashMap<ActorId, u64> {
    let mut seqs: HashMap<ActorId, u64> = HashMap::new();
    for m in doc.get_changes_meta(&[]) {
        let e = seqs.entry(m.actor.into_owned()).or_default();
        *e = (*e).max(m.seq);
    }
    seqs
}

fn hashes(o: &Outcome) -> Vec<ChangeHash> {
    o.accepted.iter().map(Change::hash).collect()
}

/// The log's events, each as a sortable whole.
fn log(doc: &Automerge) -> Vec<StatusEvent> {
    let mut events = instance::read_events(doc)
        .map(|(e, _)| e)
        .unwrap_or_default();
    events.sort();
    events
}

/// The id of every entry of the log that has one, duplicates and all.
fn log_ids(doc: &Automerge) -> Vec<String> {
    let Ok(Some((automerge::Value::Object(ObjType::List), log))) = doc.get(ROOT, keys::EVENTS)
    else {
        return Vec::new();
    };
    doc.list_range(&log, ..)
        .filter_map(|item| match doc.get(item.id(), keys::EVENT_ID).ok()?? {
            (automerge::Value::Scalar(v), _) => v.as_str().map(str::to_owned),
            (automerge::Value::Object(ObjType::Text), t) => doc.text(&t).ok(),
            _ => None,
        })
        .collect()
}

/// What a store may never change: every HQ-authored field of every HQ
/// task but its assignee, and the list's meta.
fn hq_fields(doc: &Automerge) -> String {
    match instance::read(doc) {
        Ok(view) => {
            let tasks: Vec<_> = view
                .tasks
                .iter()
                .filter(|t| t.spec.created_by == CreatedBy::Hq)
                .map(|t| TaskSpec {
                    assignee: None,
                    ..t.spec.clone()
                })
                .collect();
            format!("{:?} {:?} {:?}", view.id, view.meta, tasks)
        }
        Err(e) => format!("unreadable: {e}"),
    }
}

fn check(hub: &Hub, batch: &[Change], author: &Principal) {
    let lookup = |a: &ActorId| hub.owners.get(a).cloned();
    let owner = owner();
    let ctx = ValidationContext {
        doc_id: hub.content.id,
        kind: DocKind::Instance,
        owner: &owner,
        actor_owner: &lookup,
        known_content: &hub.known,
        max_event_time: NOW + TOLERANCE,
        worker_known: &|w: &WorkerId| ROSTER.contains(&w.as_str()),
    };
    let fast = validation::validate(&hub.doc, batch, author, &ctx);
    let slow = reference::validate(&hub.doc, batch, author, &ctx);
    assert!(
        reference::same_verdicts(&fast.verdicts, &slow.verdicts),
        "the fast path disagrees with the reference:\n fast: {:?}\n slow: {:?}",
        fast.verdicts,
        slow.verdicts
    );
    assert_eq!(hashes(&fast), hashes(&slow), "accepted changes differ");
    assert_eq!(fast.new_actors, slow.new_actors, "new actors differ");
    if std::env::var_os("FUZZ_VERDICTS").is_some() {
        // Which verdicts a corpus reaches: run it with -runs=0 and count.
        for (_, v) in &fast.verdicts {
            let kind = format!("{v:?}");
            let kind = kind
                .split(['(', ' ', '{'])
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("verdict: {kind}");
        }
    }
    let given =
        validation::validate_with_seqs(&hub.doc, batch, author, &ctx, Some(last_seqs(&hub.doc)));
    assert!(
        reference::same_verdicts(&given.verdicts, &fast.verdicts),
        "given the sequence numbers, validation decides otherwise:\n given: {:?}\n read: {:?}",
        given.verdicts,
        fast.verdicts
    );
    assert_eq!(given.seqs, fast.seqs);
    let distinct: HashSet<ChangeHash> = batch.iter().map(Change::hash).collect();
    assert_eq!(
        fast.verdicts.len(),
        distinct.len(),
        "one verdict per distinct change"
    );

    let mut after = hub.doc.fork();
    after
        .apply_changes(fast.accepted.clone())
        .expect("accepted changes apply to the hub's copy");
    assert_eq!(
        fast.seqs,
        last_seqs(&after),
        "the sequence numbers handed back"
    );
    if let Some(state) = &fast.state {
        assert_eq!(
            state.get_heads(),
            after.get_heads(),
            "the state handed back"
        );
    }

    // What was accepted, whatever both validators think.
    let held: HashMap<(ActorId, u64), ChangeHash> = hub
        .changes
        .iter()
        .map(|c| ((c.actor_id().clone(), c.seq()), c.hash()))
        .collect();
    for c in &fast.accepted {
        if let Some(h) = held.get(&(c.actor_id().clone(), c.seq())) {
            assert_eq!(h, &c.hash(), "accepted a reused sequence number: {c:?}");
        }
        if let Some(o) = hub.owners.get(c.actor_id()) {
            assert_eq!(
                o, author,
                "accepted a change under another principal's actor"
            );
        }
    }
    let before_log = log(&hub.doc);
    let after_log = log(&after);
    for e in &before_log {
        assert!(
            after_log.contains(e),
            "an event of the hub's log is gone: {e:?}"
        );
    }
    if let Principal::Store(_) = author {
        assert_eq!(
            hq_fields(&after),
            hq_fields(&hub.doc),
            "a store changed what HQ wrote"
        );
    }
    // Every entry of the log, not the deduplicated reading.
    let before_ids = log_ids(&hub.doc);
    if before_ids.iter().collect::<HashSet<_>>().len() == before_ids.len() {
        let after_ids = log_ids(&after);
        assert_eq!(
            after_ids.iter().collect::<HashSet<_>>().len(),
            after_ids.len(),
            "two events with one id were accepted: {:?}",
            fast.verdicts
        );
    }
    // Events by a store name a worker on its roster, with a status it can record.
    if let Principal::Store(_) = author {
        for e in after_log.iter().filter(|e| !before_log.contains(e)) {
            assert!(ROSTER.contains(&e.worker.as_str()), "accepted {e:?}");
            assert!(e.status != Status::NotStarted, "accepted {e:?}");
        }
    }
}

thread_local! {
    /// The last panic raised inside Automerge, in case nothing catches it.
    static AUTOMERGE_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Validation catches Automerge's panics on malformed changes by design
/// (`validate_each`); libFuzzer's hook would abort on them before the
/// catch. This hook lets a panic raised inside Automerge unwind, and keeps
/// libFuzzer's abort for every other panic (the engine's, this oracle's).
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let libfuzzer_hook = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let in_automerge = info
                .location()
                .is_some_and(|l| l.file().contains("/automerge-0."));
            if in_automerge {
                AUTOMERGE_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
            } else {
                libfuzzer_hook(info);
            }
        }));
    });
}

fn run(s: &Scenario) {
    let mut event_ids = Vec::new();
    // The scenario is built with Automerge's ordinary API; should Automerge
    // panic on that, the input says nothing about validation.
    let Ok((hub, batch)) = panic::catch_unwind(AssertUnwindSafe(|| {
        let hub = build_hub(s, &mut event_ids);
        let batch = build_batch(s, &hub, &mut event_ids);
        (hub, batch)
    })) else {
        return;
    };
    if batch.is_empty() {
        return;
    }
    let author = match s.author % 8 {
        6 => Principal::Store(other_store()),
        7 => Principal::Hq,
        _ => Principal::Store(owner()),
    };
    if panic::catch_unwind(AssertUnwindSafe(|| check(&hub, &batch, &author))).is_err() {
        if let Some(p) = AUTOMERGE_PANIC.with(|p| p.borrow_mut().take()) {
            eprintln!("uncaught panic inside Automerge during validation: {p}");
        }
        std::process::abort();
    }
}

fuzz_target!(|s: Scenario| {
    install_panic_hook();
    run(&s);
});
