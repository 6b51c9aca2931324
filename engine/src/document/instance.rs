//! A task-list instance document: read it into the model, and the edits a
//! replica makes to it (record status, assign, add a store task).
//!
//! Edits commit with the document's current actor, which the caller sets to
//! the replica's own actor (DESIGN rule 2); deterministic changes (genesis,
//! task genesis, materialized content) are built by `genesis` and applied.

use std::borrow::Cow;
use std::collections::BTreeMap;

use automerge::legacy::{ElementId, ObjectId as LegacyObj, OpType as LegacyOp};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    Automerge, AutomergeError, Change, ChangeHash, ObjId, ObjType, ReadDoc, ScalarValue, ValueRef,
    ROOT,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::genesis::{self, DocKind, FieldWriter};
use super::keys;
use super::read;
use crate::ids::{DocumentId, EventId, TaskId};
use crate::model::{
    Assignee, CreatedBy, InstanceContent, ListMeta, ModelError, Status, StatusEvent, StatusUpdate,
    TaskSpec, MAX_NOTE_CHARS,
};
use crate::status::{self, TaskStatus};

/// A task as read from a document, with its derived status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    pub spec: TaskSpec,
    /// Every concurrent assignee value when two people assigned at once
    /// (rule 4): the manager sees the losing value too. Empty otherwise.
    pub assignee_conflict: Vec<Option<Assignee>>,
    pub status: TaskStatus,
}

/// An instance read into the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceView {
    pub id: DocumentId,
    pub meta: ListMeta,
    /// Ordered by position, then id.
    pub tasks: Vec<TaskView>,
    /// Entries of the status log that do not parse (only a buggy or hostile
    /// peer makes them; the hub rejects them). Counted, never fatal.
    pub malformed_events: usize,
}

impl TaskView {
    /// Waiting for a manager's decision: workers disagree about the status,
    /// or two people assigned (or took) it at once. One rule for the
    /// terminal's conflict list, its badge and the hub's conflict count.
    pub fn has_conflict(&self) -> bool {
        self.status.is_conflicted() || !self.assignee_conflict.is_empty()
    }
}

impl InstanceView {
    pub fn task(&self, id: TaskId) -> Option<&TaskView> {
        self.tasks.iter().find(|t| t.spec.id == id)
    }
}

fn commit_opts(wall_ms: i64) -> CommitOptions {
    CommitOptions::default().with_time(wall_ms.div_euclid(1000))
}

fn tasks_obj<R: ReadDoc>(doc: &R) -> Result<ObjId, ModelError> {
    read::obj(doc, &ROOT, keys::TASKS)
        .ok_or_else(|| ModelError::NotAnInstance("no tasks map".into()))
}

/// The status log: a list (a peer that put anything else there wrote no
/// log, and appending to it would make a change Automerge cannot apply).
fn events_obj<R: ReadDoc>(doc: &R) -> Result<ObjId, ModelError> {
    match doc.get(&ROOT, keys::EVENTS) {
        Ok(Some((automerge::Value::Object(ObjType::List), id))) => Ok(id),
        _ => Err(ModelError::NotAnInstance("no events list".into())),
    }
}

fn put_meta<W: FieldWriter>(
    w: &mut W,
    meta_obj: &W::Obj,
    meta: &ListMeta,
) -> Result<(), AutomergeError> {
    w.put_field(meta_obj, keys::STORE, meta.store.as_str().into())?;
    w.put_field(meta_obj, keys::NAME, meta.name.as_str().into())?;
    if let Some(t) = meta.template {
        w.put_field(meta_obj, keys::TEMPLATE, t.0.to_string().into())?;
    }
    w.put_field(
        meta_obj,
        keys::DATE,
        meta.date.format("%Y-%m-%d").to_string().into(),
    )?;
    w.put_field(meta_obj, keys::TIME_ZONE, meta.time_zone.as_str().into())?;
    w.put_field(meta_obj, keys::CREATED_BY, meta.created_by.encode().into())?;
    Ok(())
}

fn opt_time(t: Option<DateTime<Utc>>) -> ScalarValue {
    match t {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).into(),
        None => ScalarValue::Null,
    }
}

/// Write every field of a task (HQ content, a store's own task, an HQ edit).
fn put_task_fields<W: FieldWriter>(
    w: &mut W,
    task_obj: &W::Obj,
    spec: &TaskSpec,
) -> Result<(), AutomergeError> {
    w.put_field(task_obj, keys::TITLE, spec.title.as_str().into())?;
    w.put_field(
        task_obj,
        keys::DESCRIPTION,
        spec.description.as_str().into(),
    )?;
    w.put_field(task_obj, keys::START, opt_time(spec.start))?;
    w.put_field(task_obj, keys::DUE, opt_time(spec.due))?;
    w.put_field(task_obj, keys::PRIORITY, spec.priority.as_str().into())?;
    let link = spec
        .link
        .as_ref()
        .map_or(ScalarValue::Null, |l| l.encode().into());
    w.put_field(task_obj, keys::LINK, link)?;
    let assignee = spec
        .assignee
        .as_ref()
        .map_or(ScalarValue::Null, |a| a.encode().into());
    w.put_field(task_obj, keys::ASSIGNEE, assignee)?;
    w.put_field(task_obj, keys::CREATED_BY, spec.created_by.encode().into())?;
    w.put_field(task_obj, keys::POSITION, spec.position.into())?;
    Ok(())
}

/// The deterministic changes that make an instance: genesis, one task
/// genesis per task, then one content change with every HQ-authored field.
/// The hub and an offline agent produce the same bytes for the same content.
/// Written op by op (`genesis::OpWriter`), not through a document.
pub fn materialize(content: &InstanceContent) -> Result<Vec<Change>, ModelError> {
    content.meta.validate()?;
    for t in &content.tasks {
        t.validate()?;
    }
    let sorted = tasks_by_id(content)?;
    let id = content.id;
    let g = genesis::write_genesis(id, DocKind::Instance);
    let mut changes = Vec::with_capacity(sorted.len() + 2);
    changes.push(g.change.clone());
    let mut task_objs = Vec::with_capacity(sorted.len());
    for t in &sorted {
        let (c, obj) = genesis::write_task_genesis(&g, id, t.id);
        changes.push(c);
        task_objs.push((obj, *t));
    }
    // On top of every task genesis (each made op max_op + 1), or of the
    // genesis alone for a list without tasks.
    let (deps, max_op) = if sorted.is_empty() {
        (vec![g.change.hash()], g.max_op)
    } else {
        (
            changes[1..].iter().map(|c| c.hash()).collect(),
            g.max_op + 1,
        )
    };
    let actor = genesis::content_actor(id, &genesis::digest_json(content));
    let mut w = genesis::OpWriter::new(actor, deps, max_op);
    put_meta(&mut w, g.container(keys::META), &content.meta)?;
    for (o, t) in &task_objs {
        put_task_fields(&mut w, o, t)?;
    }
    changes.push(w.finish());
    Ok(changes)
}

/// The tasks in id order; two with one id would make one map written twice.
fn tasks_by_id(content: &InstanceContent) -> Result<Vec<&TaskSpec>, ModelError> {
    let mut sorted: Vec<&TaskSpec> = content.tasks.iter().collect();
    sorted.sort_by_key(|t| t.id);
    if let Some(w) = sorted.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(ModelError::BadField {
            field: "tasks",
            reason: format!("task id {} appears twice", w[0].id),
        });
    }
    Ok(sorted)
}

/// `materialize` as first written, with transactions on scratch
/// documents: the reference the written ops are compared with.
#[cfg(test)]
pub(crate) fn materialize_by_transaction(
    content: &InstanceContent,
) -> Result<Vec<Change>, ModelError> {
    let sorted = tasks_by_id(content)?;
    let id = content.id;
    let first = genesis::by_transaction::genesis(id, DocKind::Instance);
    let mut base = Automerge::new();
    base.apply_changes([first.clone()])?;
    let genesis_doc = base.fork();
    let mut changes = vec![first];
    for t in &sorted {
        let c = genesis::by_transaction::task_genesis_on(&genesis_doc, id, t.id);
        base.apply_changes([c.clone()])?;
        changes.push(c);
    }
    let meta_obj = read::obj(&base, &ROOT, keys::META).expect("genesis makes meta");
    let tasks = tasks_obj(&base)?;
    let task_objs: Vec<(ObjId, &TaskSpec)> = sorted
        .iter()
        .map(|t| {
            let o = read::obj(&base, &tasks, &t.id.0.to_string()).expect("task genesis applied");
            (o, *t)
        })
        .collect();
    let actor = genesis::content_actor(id, &genesis::digest_json(content));
    let content_change = genesis::by_transaction::content_change(&base, actor, |tx| {
        put_meta(tx, &meta_obj, &content.meta)?;
        for (o, t) in &task_objs {
            put_task_fields(tx, o, t)?;
        }
        Ok(())
    })?;
    changes.push(content_change);
    Ok(changes)
}

/// A new in-memory instance document from `content`, with `actor` as the
/// replica actor for later edits.
pub fn create(
    content: &InstanceContent,
    actor: automerge::ActorId,
) -> Result<Automerge, ModelError> {
    let mut doc = Automerge::new();
    doc.apply_changes(materialize(content)?)?;
    doc.set_actor(actor);
    Ok(doc)
}

fn parse_time(s: Option<&str>, field: &'static str) -> Result<Option<DateTime<Utc>>, ModelError> {
    match s {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| ModelError::BadField {
                field,
                reason: format!("{s:?} is not an RFC 3339 time: {e}"),
            }),
    }
}

/// The top-level fields of an instance, from one walk of the root map.
#[derive(Default)]
struct Root<'a> {
    kind: Option<Cow<'a, str>>,
    id: Option<Cow<'a, str>>,
    meta: Option<ObjId>,
    tasks: Option<ObjId>,
    events: Option<ObjId>,
}

impl<'a> Root<'a> {
    fn read<R: ReadDoc>(doc: &'a R) -> Root<'a> {
        let mut root = Root::default();
        for item in doc.map_range(&ROOT, ..) {
            let obj = || match item.value {
                ValueRef::Object(_) => Some(item.id()),
                ValueRef::Scalar(_) => None,
            };
            match item.key.as_ref() {
                keys::KIND => root.kind = read::str_value(doc, &item.value, || item.id()),
                keys::ID => root.id = read::str_value(doc, &item.value, || item.id()),
                keys::META => root.meta = obj(),
                keys::TASKS => root.tasks = obj(),
                keys::EVENTS => root.events = obj(),
                _ => {}
            }
        }
        root
    }

    fn doc_id(&self) -> Result<DocumentId, ModelError> {
        if self.kind.as_deref() != Some(DocKind::Instance.as_str()) {
            return Err(ModelError::NotAnInstance("kind is not instance".into()));
        }
        let id = self
            .id
            .as_deref()
            .ok_or_else(|| ModelError::NotAnInstance("no id".into()))?;
        Ok(id.parse()?)
    }
}

fn read_meta<R: ReadDoc>(doc: &R, m: Option<&ObjId>) -> Result<ListMeta, ModelError> {
    let m = m.ok_or_else(|| ModelError::NotAnInstance("no meta map".into()))?;
    let mut f: [Option<Cow<'_, str>>; 6] = Default::default();
    for item in doc.map_range(m, ..) {
        if let Some(i) = keys::META_FIELDS.iter().position(|k| *k == item.key) {
            f[i] = read::str_value(doc, &item.value, || item.id());
        }
    }
    let [store, name, template, date, time_zone, created_by] = f;
    let need = |v: Option<Cow<'_, str>>, k: &'static str| {
        v.map(Cow::into_owned)
            .ok_or_else(|| ModelError::NotAnInstance(format!("meta has no {k}")))
    };
    let date = need(date, keys::DATE)?;
    Ok(ListMeta {
        store: need(store, keys::STORE)?.parse()?,
        name: need(name, keys::NAME)?,
        template: match template {
            Some(t) => Some(t.parse()?),
            None => None,
        },
        date: NaiveDate::parse_from_str(&date, "%Y-%m-%d").map_err(|e| ModelError::BadField {
            field: "date",
            reason: format!("{date:?}: {e}"),
        })?,
        time_zone: need(time_zone, keys::TIME_ZONE)?,
        created_by: need(created_by, keys::CREATED_BY)?.parse()?,
    })
}

fn read_task<R: ReadDoc>(
    doc: &R,
    id: TaskId,
    o: &ObjId,
) -> Result<(TaskSpec, Vec<Option<Assignee>>), ModelError> {
    let mut f: [Option<Cow<'_, str>>; 8] = Default::default();
    let mut position = None;
    let mut assignee_conflicts = false;
    for item in doc.map_range(o, ..) {
        let key = item.key.as_ref();
        if key == keys::POSITION {
            position = read::int_value(&item.value);
        } else if let Some(i) = TASK_STRINGS.iter().position(|k| *k == key) {
            f[i] = read::str_value(doc, &item.value, || item.id());
            // Several values only after concurrent puts: rare, so the
            // per-key lookup of all of them stays off the common path.
            assignee_conflicts |= key == keys::ASSIGNEE && item.conflict;
        }
    }
    let [title, description, start, due, priority, link, assignee, created_by] = f;
    let assignee_of = |v: Option<&str>| -> Option<Assignee> { v.and_then(|v| v.parse().ok()) };
    let conflict = match assignee_conflicts {
        true => {
            let all = read::all_strings(doc, o, keys::ASSIGNEE);
            match all.len() > 1 {
                true => all.iter().map(|v| assignee_of(v.as_deref())).collect(),
                false => Vec::new(),
            }
        }
        false => Vec::new(),
    };
    let owned = |v: Option<Cow<'_, str>>| v.map(Cow::into_owned).unwrap_or_default();
    let spec = TaskSpec {
        id,
        title: owned(title),
        description: owned(description),
        start: parse_time(start.as_deref(), "start")?,
        due: parse_time(due.as_deref(), "due")?,
        priority: priority.map(|p| p.parse()).transpose()?.unwrap_or_default(),
        link: link.map(|l| l.parse()).transpose()?,
        assignee: assignee_of(assignee.as_deref()),
        created_by: created_by
            .map(|c| c.parse())
            .transpose()?
            .unwrap_or(CreatedBy::Hq),
        position: position.unwrap_or(0),
    };
    Ok((spec, conflict))
}

/// The string fields of a task, in the order `read_task` reads them.
const TASK_STRINGS: [&str; 8] = [
    keys::TITLE,
    keys::DESCRIPTION,
    keys::START,
    keys::DUE,
    keys::PRIORITY,
    keys::LINK,
    keys::ASSIGNEE,
    keys::CREATED_BY,
];

/// The string fields of a status event, in the order `read_event` reads them.
const EVENT_STRINGS: [&str; 6] = [
    keys::EVENT_ID,
    keys::TASK,
    keys::STATUS,
    keys::WORKER,
    keys::TERMINAL,
    keys::NOTE,
];

/// Parse one status-log entry; `None` if it is not a well-formed event.
pub(crate) fn read_event<R: ReadDoc>(doc: &R, o: &ObjId) -> Option<StatusEvent> {
    let mut f: [Option<Cow<'_, str>>; 6] = Default::default();
    let mut at = None;
    let mut prev = Vec::new();
    for item in doc.map_range(o, ..) {
        let key = item.key.as_ref();
        if key == keys::AT {
            at = read::int_value(&item.value);
        } else if key == keys::PREV {
            // A `prev` that is not a list reads as empty, as it always has.
            if let ValueRef::Object(ObjType::List) = item.value {
                prev = read::string_list(doc, &item.id());
            }
        } else if let Some(i) = EVENT_STRINGS.iter().position(|k| *k == key) {
            f[i] = read::str_value(doc, &item.value, || item.id());
        }
    }
    let [id, task, status, worker, terminal, note] = f;
    if note
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
    {
        return None;
    }
    let prev = prev
        .iter()
        .map(|p| p.parse::<EventId>().ok())
        .collect::<Option<Vec<_>>>()?;
    Some(StatusEvent {
        id: id?.parse().ok()?,
        task: task?.parse().ok()?,
        status: status?.parse().ok()?,
        worker: worker?.parse().ok()?,
        terminal: terminal?.parse().ok()?,
        at: at?,
        prev,
        note: note.map(Cow::into_owned),
    })
}

/// Every well-formed event of the log `events` and the count of malformed entries.
fn events_in<R: ReadDoc>(doc: &R, events: &ObjId) -> (Vec<StatusEvent>, usize) {
    let mut out = Vec::new();
    let mut malformed = 0;
    for item in doc.list_range(events, ..) {
        let o = item.id();
        let parsed = match item.value {
            ValueRef::Object(ObjType::Map) => read_event(doc, &o),
            _ => None,
        };
        match parsed {
            Some(e) => out.push((o, e)),
            None => malformed += 1,
        }
    }
    (first_of_each_id(out), malformed)
}

/// One event per id: of entries that share an event id, the one whose
/// object was made first in Lamport order (op counter, then actor). The
/// hub refuses a second event with an id already in the document, so two
/// can only meet when a peer bypassed validation or two concurrent
/// changes raced; either way a copy made after seeing the original has a
/// higher op counter than everything it saw, so it can never replace the
/// original, whatever its content or `at` says. Every replica holding the
/// same changes keeps the same entry. Log order is kept.
fn first_of_each_id(entries: Vec<(ObjId, StatusEvent)>) -> Vec<StatusEvent> {
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    if entries.iter().all(|(_, e)| seen.insert(e.id)) {
        return entries.into_iter().map(|(_, e)| e).collect();
    }
    let order = |o: &ObjId| match o {
        ObjId::Id(counter, actor, _) => Some((*counter, actor.clone())),
        ObjId::Root => None,
    };
    let mut first: std::collections::HashMap<EventId, (u64, automerge::ActorId)> =
        std::collections::HashMap::new();
    for (o, e) in &entries {
        let Some(op) = order(o) else { continue };
        match first.get(&e.id) {
            Some(f) if *f <= op => {}
            _ => {
                first.insert(e.id, op);
            }
        }
    }
    entries
        .into_iter()
        .filter(|(o, e)| order(o).is_some_and(|op| first.get(&e.id) == Some(&op)))
        .map(|(_, e)| e)
        .collect()
}

/// Is `id` the id of an event already in `doc`'s log?
pub fn has_event<R: ReadDoc>(doc: &R, id: EventId) -> Result<bool, ModelError> {
    let events_o = events_obj(doc)?;
    let found = entry_ids(doc, &events_o).any(|e| e == id);
    Ok(found)
}

/// The id of every entry of the log `events` that carries one, in log
/// order and copies included: what the checks for a reused id count.
pub(crate) fn entry_ids<'a, R: ReadDoc>(
    doc: &'a R,
    events: &'a ObjId,
) -> impl Iterator<Item = EventId> + 'a {
    doc.list_range(events, ..).filter_map(move |item| {
        read::string(doc, &item.id(), keys::EVENT_ID).and_then(|s| s.parse().ok())
    })
}

/// Every well-formed event in the log and the count of malformed entries.
pub fn read_events<R: ReadDoc>(doc: &R) -> Result<(Vec<StatusEvent>, usize), ModelError> {
    Ok(events_in(doc, &events_obj(doc)?))
}

/// What a new event of `task` needs, without parsing every other task's
/// events (the terminal's hot path): `task`'s well-formed events (for its
/// status and `prev`) and the latest time of any event in the log (for the
/// hybrid logical clock, `next_event_time`). Other events are read for
/// their `task` and `at` fields only.
fn events_of_task<R: ReadDoc>(
    doc: &R,
    task: TaskId,
) -> Result<(Vec<StatusEvent>, i64), ModelError> {
    let events_o = events_obj(doc)?;
    let want = task.0.to_string();
    let mut mine = Vec::new();
    let mut latest = i64::MIN;
    for item in doc.list_range(&events_o, ..) {
        if !matches!(item.value, ValueRef::Object(ObjType::Map)) {
            continue;
        }
        let ev = item.id();
        if read::string(doc, &ev, keys::TASK).as_deref() == Some(want.as_str()) {
            if let Some(e) = read_event(doc, &ev) {
                latest = latest.max(e.at);
                mine.push((ev, e));
            }
        } else if let Some(at) = read::int(doc, &ev, keys::AT) {
            latest = latest.max(at);
        }
    }
    Ok((first_of_each_id(mine), latest))
}

fn doc_id<R: ReadDoc>(doc: &R) -> Result<DocumentId, ModelError> {
    Root::read(doc).doc_id()
}

/// Read the whole instance: meta, tasks, and each task's derived status.
/// Walks each map and list once (`map_range` / `list_range`).
pub fn read<R: ReadDoc>(doc: &R) -> Result<InstanceView, ModelError> {
    let root = Root::read(doc);
    let id = root.doc_id()?;
    let meta = read_meta(doc, root.meta.as_ref())?;
    let tasks_o = root
        .tasks
        .ok_or_else(|| ModelError::NotAnInstance("no tasks map".into()))?;
    let events_o = root
        .events
        .ok_or_else(|| ModelError::NotAnInstance("no events list".into()))?;
    let (events, malformed_events) = events_in(doc, &events_o);
    let derived = status::derive(events);
    let mut tasks = Vec::new();
    for item in doc.map_range(&tasks_o, ..) {
        let Ok(task_id) = item.key.parse::<TaskId>() else {
            continue;
        };
        if !matches!(item.value, ValueRef::Object(ObjType::Map)) {
            continue;
        }
        let (spec, assignee_conflict) = read_task(doc, task_id, &item.id())?;
        // A task genesis whose content has not arrived yet has no title: skip it.
        if spec.title.is_empty() {
            continue;
        }
        tasks.push(TaskView {
            status: status::of_task(&derived, task_id),
            spec,
            assignee_conflict,
        });
    }
    tasks.sort_by_key(|t| (t.spec.position, t.spec.id));
    Ok(InstanceView {
        id,
        meta,
        tasks,
        malformed_events,
    })
}

/// The events a change appends to the status log `log` (the op counters of
/// their maps, under the change's actor), when that is all it does: every
/// op either inserts a new map into the log or writes inside an object the
/// change itself made. None for any other change. What terminals send;
/// validation's fast path and `refresh` both rely on it.
pub(crate) fn appended_events(e: &automerge::ExpandedChange, log: &ObjId) -> Option<Vec<u64>> {
    let ObjId::Id(log_counter, log_actor, _) = log else {
        return None;
    };
    let start = e.start_op.get();
    let end = start + e.operations.len() as u64;
    let mut events = Vec::new();
    for (i, op) in e.operations.iter().enumerate() {
        let automerge::legacy::ObjectId::Id(id) = &op.obj else {
            return None;
        };
        if id.actor() == &e.actor_id && (start..end).contains(&id.counter()) {
            // Inside an object this change made: part of its event.
            continue;
        }
        let into_log = op.insert
            && matches!(op.action, automerge::legacy::OpType::Make(ObjType::Map))
            && id.counter() == *log_counter
            && id.actor() == log_actor;
        if !into_log {
            return None;
        }
        events.push(start + i as u64);
    }
    Some(events)
}

/// The view of `doc` brought forward from `old`, its view at `since`, when
/// everything after `since` only appends new status events to the log
/// (what terminals send): only those events are read, only their tasks'
/// statuses derived again, where [`read`] parses every event. None when
/// anything else changed, or a new event reuses an id (then `read`).
/// Always equal to `read(doc)` when it answers.
pub fn refresh(doc: &Automerge, since: &[ChangeHash], old: &InstanceView) -> Option<InstanceView> {
    let (new_events, malformed) = appended_since(doc, since)?;
    let mut ids: std::collections::HashSet<EventId> = old
        .tasks
        .iter()
        .flat_map(|t| t.status.history.iter().map(|e| e.id))
        .collect();
    if !new_events.iter().all(|e| ids.insert(e.id)) {
        // Two events under one id: `derive` picks across tasks.
        return None;
    }
    let mut view = old.clone();
    view.malformed_events += malformed;
    let mut by_task: BTreeMap<TaskId, Vec<StatusEvent>> = BTreeMap::new();
    for e in new_events {
        by_task.entry(e.task).or_default().push(e);
    }
    for t in &mut view.tasks {
        if let Some(added) = by_task.remove(&t.spec.id) {
            let history = std::mem::take(&mut t.status.history);
            t.status =
                status::of_task(&status::derive(history.into_iter().chain(added)), t.spec.id);
        }
    }
    // Events for tasks the list does not show are not shown by `read` either.
    Some(view)
}

fn task_obj<R: ReadDoc>(doc: &R, task: TaskId) -> Result<ObjId, ModelError> {
    let tasks = tasks_obj(doc)?;
    read::obj(doc, &tasks, &task.0.to_string()).ok_or(ModelError::UnknownTask(task))
}

/// Does this instance hold task `task` with its content? One lookup, no
/// full read (finding a task's list among many).
pub fn has_task<R: ReadDoc>(doc: &R, task: TaskId) -> bool {
    task_obj(doc, task).is_ok_and(|o| read::string(doc, &o, keys::TITLE).is_some())
}

/// The hybrid-logical time for a new event: after `latest`, the latest
/// event already in the document (`i64::MIN` for none), whatever the wall
/// clock says (rule 6).
pub fn next_event_time(latest: i64, wall_ms: i64) -> i64 {
    wall_ms.max(latest.saturating_add(1))
}

/// Record a worker's status update: appends one event to the log.
/// Returns the event as stored and the change to persist and send.
pub fn record_status(
    doc: &mut Automerge,
    update: &StatusUpdate,
    wall_ms: i64,
) -> Result<(StatusEvent, Change), ModelError> {
    record_status_with(doc, update, wall_ms, None)
}

/// What a new event needs from a document's log, kept by a replica that
/// records many events on the same document (the terminal): each task's
/// events and the latest event time. Valid for the document heads it was
/// made at; `record_status_with` keeps it up to date with its own change.
#[derive(Debug, Clone, Default)]
pub struct LogSummary {
    by_task: std::collections::HashMap<TaskId, Vec<StatusEvent>>,
    /// Every event id in the log: a new event may not reuse one.
    ids: std::collections::HashSet<EventId>,
    latest: i64,
}

impl LogSummary {
    /// Read the whole log once.
    pub fn of<R: ReadDoc>(doc: &R) -> Result<LogSummary, ModelError> {
        let (events, _) = read_events(doc)?;
        let mut out = LogSummary {
            by_task: Default::default(),
            ids: Default::default(),
            latest: i64::MIN,
        };
        for e in events {
            out.latest = out.latest.max(e.at);
            out.ids.insert(e.id);
            out.by_task.entry(e.task).or_default().push(e);
        }
        Ok(out)
    }

    /// Bring this summary, made at `since`, forward to `doc` when all that
    /// happened after `since` is status events appended to the log (what
    /// terminals send): only those events are read, where [`LogSummary::of`]
    /// reads the whole log again. Returns false, and leaves the summary as
    /// it was, when anything else changed or `doc` lacks `since`; then use
    /// `of`. When it answers, the summary holds the same events per task as
    /// `of(doc)` would (perhaps in another order, which `status::derive`
    /// ignores) and the same latest time.
    pub fn advance(&mut self, doc: &Automerge, since: &[ChangeHash]) -> bool {
        // A malformed event is left out, as `of` leaves it out.
        match appended_since(doc, since) {
            Some((new, _malformed)) => {
                // An id seen before: which copy counts depends on where
                // each was made (`first_of_each_id`), so read it all again.
                let mut fresh = std::collections::HashSet::with_capacity(new.len());
                if !new
                    .iter()
                    .all(|e| !self.ids.contains(&e.id) && fresh.insert(e.id))
                {
                    return false;
                }
                for e in new {
                    self.latest = self.latest.max(e.at);
                    self.ids.insert(e.id);
                    self.by_task.entry(e.task).or_default().push(e);
                }
                true
            }
            None => false,
        }
    }

    /// Take in `event`, just recorded on top of the heads this summary
    /// was made at.
    pub fn note(&mut self, event: &StatusEvent) {
        self.latest = self.latest.max(event.at);
        self.ids.insert(event.id);
        self.by_task
            .entry(event.task)
            .or_default()
            .push(event.clone());
    }

    /// A summary `cached` at heads `at`, carried to `doc`'s current heads:
    /// as it is if they are the same, brought forward with `advance` if
    /// only events were appended since; None if it must be read again
    /// (`of`), or there was none.
    pub fn carried_to(
        cached: Option<(Vec<ChangeHash>, LogSummary)>,
        doc: &Automerge,
    ) -> Option<LogSummary> {
        let (at, mut sum) = cached?;
        (at == doc.get_heads() || sum.advance(doc, &at)).then_some(sum)
    }

    /// Each task's events sorted, for comparing two summaries whose events
    /// arrived in different orders.
    #[cfg(test)]
    pub(crate) fn normalized(&self) -> (std::collections::BTreeMap<TaskId, Vec<StatusEvent>>, i64) {
        let by_task = self
            .by_task
            .iter()
            .map(|(t, es)| {
                let mut es = es.clone();
                es.sort();
                (*t, es)
            })
            .collect();
        (by_task, self.latest)
    }
}

/// The well-formed events appended to `doc`'s log after `since`, and how
/// many malformed ones, when every change after `since` only appends
/// events; None otherwise, or when `doc` does not contain `since` (it was
/// reloaded without changes that failed to save).
fn appended_since(doc: &Automerge, since: &[ChangeHash]) -> Option<(Vec<StatusEvent>, usize)> {
    if since
        .iter()
        .any(|h| doc.get_change_meta_by_hash(h).is_none())
    {
        return None;
    }
    let log = events_obj(doc).ok()?;
    let mut new_events = Vec::new();
    let mut malformed = 0;
    for c in doc.get_changes(since) {
        let e = c.decode();
        if !e.extra_bytes.is_empty() {
            return None;
        }
        for counter in appended_events(&e, &log)? {
            let (event, _) = read::made_by_op(doc, counter, &e.actor_id)?;
            match read_event(doc, &event) {
                Some(ev) => new_events.push(ev),
                None => malformed += 1,
            }
        }
    }
    Some((new_events, malformed))
}

/// `record_status`, reading the log from `summary` (made at `doc`'s
/// current heads) instead of the document, and adding the new event to it.
pub fn record_status_with(
    doc: &mut Automerge,
    update: &StatusUpdate,
    wall_ms: i64,
    summary: Option<&mut LogSummary>,
) -> Result<(StatusEvent, Change), ModelError> {
    resolve_actor(doc);
    let prepared = prepare_status(doc, update, wall_ms, summary.as_deref())?;
    let change = match prepared.change {
        Some(change) => {
            doc.apply_changes([change.clone()])?;
            resolve_actor(doc);
            change
        }
        None => append_event_by_transaction(doc, &prepared.event, wall_ms)?,
    };
    if let Some(sum) = summary {
        sum.note(&prepared.event);
    }
    Ok((prepared.event, change))
}

/// Point `doc` at its actor's entry again, as a transaction does first:
/// an actor set before its changes arrived (or introduced by applying
/// one of its own changes) is otherwise not found, and its last change
/// with it.
pub fn resolve_actor(doc: &mut Automerge) {
    let actor = doc.get_actor().clone();
    doc.set_actor(actor);
}

/// A status update made ready to commit, without touching the document.
#[derive(Debug)]
pub struct PreparedStatus {
    /// The event as it will be stored.
    pub event: StatusEvent,
    /// The change that appends it, when it can be written op by op; None
    /// when a transaction must make it (`append_event_by_transaction`).
    pub change: Option<Change>,
}

/// The event `update` makes on `doc` and the change that appends it,
/// leaving `doc` as it is: a replica that persists a change before its
/// document shows it (the agent) applies it once, with no scratch copy.
/// `doc`'s actor must be resolved (`resolve_actor`); `summary`, if given,
/// made at `doc`'s current heads.
pub fn prepare_status(
    doc: &Automerge,
    update: &StatusUpdate,
    wall_ms: i64,
    summary: Option<&LogSummary>,
) -> Result<PreparedStatus, ModelError> {
    let task_o = task_obj(doc, update.task)?;
    if read::string(doc, &task_o, keys::TITLE).is_none() {
        return Err(ModelError::UnknownTask(update.task));
    }
    if let Some(n) = &update.note {
        if n.chars().count() > MAX_NOTE_CHARS {
            return Err(ModelError::BadField {
                field: "note",
                reason: format!("is longer than {MAX_NOTE_CHARS} characters"),
            });
        }
    }
    if !update.status.is_recordable() {
        return Err(ModelError::BadField {
            field: "status",
            reason: update.status.not_recordable_reason(),
        });
    }
    let (events, latest) = match summary {
        Some(sum) => {
            if sum.ids.contains(&update.id) {
                return Err(ModelError::DuplicateEvent(update.id));
            }
            (
                sum.by_task.get(&update.task).cloned().unwrap_or_default(),
                sum.latest,
            )
        }
        None => {
            if has_event(doc, update.id)? {
                return Err(ModelError::DuplicateEvent(update.id));
            }
            events_of_task(doc, update.task)?
        }
    };
    let current = status::of_task(&status::derive(events), update.task);
    if update.status == Status::Reopened && current.current != Status::Completed {
        return Err(ModelError::ReopenNotCompleted {
            task: update.task,
            current: current.current,
        });
    }
    let event = StatusEvent {
        id: update.id,
        task: update.task,
        status: update.status,
        worker: update.worker.clone(),
        terminal: update.terminal.clone(),
        at: next_event_time(latest, wall_ms),
        prev: current.head_ids(),
        note: update.note.clone(),
    };
    let change = event_change(doc, &events_obj(doc)?, &event, wall_ms);
    Ok(PreparedStatus { event, change })
}

/// The change that appends `event` to the log `events_o`, written op by op
/// (`genesis::OpWriter`): the bytes a transaction on `doc` would commit
/// (`append_event_by_transaction`; a proptest compares them) for less:
/// a transaction splices every op into the document's columns one at a
/// time, applying the finished change does it in one pass. None, for the
/// transaction to do it, when the document holds changes waiting for
/// their dependencies (a transaction drops this actor's own among them,
/// which applying a change does not), or when the log's last entry is not
/// an element as inserted (a put replaced it; only a hostile peer's
/// document, which the hub refuses).
fn event_change(
    doc: &Automerge,
    events_o: &ObjId,
    event: &StatusEvent,
    wall_ms: i64,
) -> Option<Change> {
    if !doc.get_missing_deps(&[]).is_empty() {
        return None;
    }
    let log = legacy_obj(events_o);
    let after = match doc.length(events_o) {
        0 => ElementId::Head,
        // A transaction inserting at the end names the last element. Its
        // value's id is the element's only if that value is the insert
        // itself, not a later put over it (Automerge offers no other way
        // to ask, and an insert after a non-element makes it panic).
        len => {
            let (_, value) = doc.get(events_o, len - 1).ok()??;
            let ObjId::Id(counter, actor, _) = &value else {
                return None;
            };
            let made_by = doc.get_change_by_hash(&doc.hash_for_opid(&value)?)?;
            let made_by = made_by.decode();
            let op = made_by
                .operations
                .get(usize::try_from(counter.checked_sub(made_by.start_op.get())?).ok()?)?;
            if !op.insert || op.obj != log {
                return None;
            }
            ElementId::Id(automerge::legacy::OpId::new(*counter, actor))
        }
    };
    // What a transaction takes: the next sequence number of this actor, an
    // op counter above every op in the document (the heads' changes hold
    // the largest; this actor's own last change is counted too, so its op
    // ids stay unique even under a peer's odd counters), and as
    // dependencies the heads and this actor's last change when that is
    // not one of them.
    let last = doc.get_last_local_change();
    let seq = last.as_ref().map_or(0, |c| c.seq()) + 1;
    let mut deps = doc.get_heads();
    let max_op = deps
        .iter()
        .filter_map(|h| doc.get_change_meta_by_hash(h).map(|m| m.max_op))
        .chain(last.as_ref().map(|c| c.max_op()))
        .max()
        .unwrap_or(0);
    if let Some(last) = last {
        if !deps.contains(&last.hash()) {
            deps.push(last.hash());
        }
    }
    let mut w = genesis::OpWriter::new(doc.get_actor().clone(), deps, max_op)
        .stamped(seq, wall_ms.div_euclid(1000));
    let e = LegacyObj::Id(w.insert(&log, after, LegacyOp::Make(ObjType::Map)));
    w.put(&e, keys::EVENT_ID, event.id.0.to_string());
    w.put(&e, keys::TASK, event.task.0.to_string());
    w.put(&e, keys::STATUS, event.status.as_str());
    w.put(&e, keys::WORKER, event.worker.as_str());
    w.put(&e, keys::TERMINAL, event.terminal.as_str());
    w.put(&e, keys::AT, event.at);
    let prev = w.make(&e, keys::PREV, ObjType::List);
    let mut after = ElementId::Head;
    for p in &event.prev {
        let id = w.insert(&prev, after, LegacyOp::Put(p.0.to_string().into()));
        after = ElementId::Id(id);
    }
    if let Some(n) = &event.note {
        w.put(&e, keys::NOTE, n.as_str());
    }
    Some(w.finish())
}

/// An object id as a change's ops name it.
fn legacy_obj(o: &ObjId) -> LegacyObj {
    match o {
        ObjId::Root => LegacyObj::Root,
        ObjId::Id(counter, actor, _) => {
            LegacyObj::Id(automerge::legacy::OpId::new(*counter, actor))
        }
    }
}

/// `event_change` by a transaction on `doc`, which it commits: the
/// reference the op-by-op change is pinned to, and the way for a log
/// `event_change` declines.
pub(crate) fn append_event_by_transaction(
    doc: &mut Automerge,
    event: &StatusEvent,
    wall_ms: i64,
) -> Result<Change, ModelError> {
    let events_o = &events_obj(doc)?;
    doc.transact_with(
        |_| commit_opts(wall_ms),
        |tx| {
            let len = tx.length(events_o);
            let e = tx.insert_object(events_o, len, ObjType::Map)?;
            tx.put(&e, keys::EVENT_ID, event.id.0.to_string())?;
            tx.put(&e, keys::TASK, event.task.0.to_string())?;
            tx.put(&e, keys::STATUS, event.status.as_str())?;
            tx.put(&e, keys::WORKER, event.worker.as_str())?;
            tx.put(&e, keys::TERMINAL, event.terminal.as_str())?;
            tx.put(&e, keys::AT, event.at)?;
            let prev = tx.put_object(&e, keys::PREV, ObjType::List)?;
            for (i, p) in event.prev.iter().enumerate() {
                tx.insert(&prev, i, p.0.to_string())?;
            }
            if let Some(n) = &event.note {
                tx.put(&e, keys::NOTE, n.as_str())?;
            }
            Ok::<_, AutomergeError>(())
        },
    )
    .map_err(|f| f.error)?;
    // An event insert always writes, so this is the change just made.
    Ok(doc.get_last_local_change().expect("just committed"))
}

/// Assign (or unassign, with `None`) a task. `None` back when the task
/// already had that assignee (nothing to record or send).
pub fn set_assignee(
    doc: &mut Automerge,
    task: TaskId,
    assignee: Option<&Assignee>,
    wall_ms: i64,
) -> Result<Option<Change>, ModelError> {
    let task_o = task_obj(doc, task)?;
    super::commit(doc, wall_ms, |tx| match assignee {
        Some(a) => tx.put(&task_o, keys::ASSIGNEE, a.encode()),
        None => tx.put(&task_o, keys::ASSIGNEE, ScalarValue::Null),
    })
}

/// Add a task (a store's single-purpose task, or HQ adding to a list):
/// the task genesis, then its fields by this replica's actor.
pub fn add_task(
    doc: &mut Automerge,
    spec: &TaskSpec,
    wall_ms: i64,
) -> Result<Vec<Change>, ModelError> {
    spec.validate()?;
    let id = doc_id(doc)?;
    let tasks = tasks_obj(doc)?;
    if read::obj(doc, &tasks, &spec.id.0.to_string()).is_some() {
        return Err(ModelError::BadField {
            field: "id",
            reason: format!("task {} already exists in this list", spec.id),
        });
    }
    let g = genesis::task_genesis(id, spec.id);
    doc.apply_changes([g.clone()])?;
    let task_o = task_obj(doc, spec.id)?;
    let fields = super::commit(doc, wall_ms, |tx| put_task_fields(tx, &task_o, spec))?;
    Ok(std::iter::once(g).chain(fields).collect())
}

/// Edit a task's authored fields (keeps its status log untouched). `None`
/// when every field already had its value.
pub fn update_task(
    doc: &mut Automerge,
    spec: &TaskSpec,
    wall_ms: i64,
) -> Result<Option<Change>, ModelError> {
    spec.validate()?;
    let task_o = task_obj(doc, spec.id)?;
    super::commit(doc, wall_ms, |tx| put_task_fields(tx, &task_o, spec))
}

/// HQ removes a task from a list (template edit). The status log is untouched.
pub fn remove_task(
    doc: &mut Automerge,
    task: TaskId,
    wall_ms: i64,
) -> Result<Option<Change>, ModelError> {
    let tasks = tasks_obj(doc)?;
    task_obj(doc, task)?;
    super::commit(doc, wall_ms, |tx| tx.delete(&tasks, task.0.to_string()))
}

/// A store's own ad-hoc list: a new instance whose meta and tasks are
/// authored by the store (not deterministic: the id is fresh and random).
pub fn create_store_list(
    id: DocumentId,
    meta: &ListMeta,
    actor: automerge::ActorId,
    wall_ms: i64,
) -> Result<(Automerge, Vec<Change>), ModelError> {
    meta.validate()?;
    let g = genesis::genesis(id, DocKind::Instance);
    let mut doc = Automerge::new();
    doc.apply_changes([g.clone()])?;
    doc.set_actor(actor);
    let meta_o = read::obj(&doc, &ROOT, keys::META).expect("genesis makes meta");
    doc.transact_with(|_| commit_opts(wall_ms), |tx| put_meta(tx, &meta_o, meta))
        .map_err(|f| f.error)?;
    let c = doc.get_last_local_change().expect("just committed");
    Ok((doc, vec![g, c]))
}

/// Status of every task, keyed by task (a convenience for views).
pub fn statuses(view: &InstanceView) -> BTreeMap<TaskId, &TaskStatus> {
    view.tasks.iter().map(|t| (t.spec.id, &t.status)).collect()
}

#[cfg(test)]
mod single_pass_tests {
    use automerge::transaction::Transactable;
    use automerge::{ActorId, ObjId, ObjType, ReadDoc, ScalarValue, ROOT};
    use uuid::Uuid;

    use super::*;
    use crate::document::instance_tests::content;

    fn text(tx: &mut automerge::transaction::Transaction<'_>, obj: &ObjId, key: &str, value: &str) {
        let t = tx.put_object(obj, key, ObjType::Text).unwrap();
        tx.splice_text(&t, 0, 0, value).unwrap();
    }

    fn update(n: u128, status: Status) -> StatusUpdate {
        StatusUpdate {
            id: EventId(Uuid::from_u128(n)),
            task: content(2).tasks[0].id,
            status,
            worker: "w1".parse().unwrap(),
            terminal: "pos-1".parse().unwrap(),
            note: Some("left a note".into()),
        }
    }

    /// The same list written the way Automerge 3's JS API writes plain
    /// strings (text objects, numbers as F64, `prev` entries as text):
    /// the single-pass reader must see exactly what it sees in our own
    /// scalar-string documents.
    #[test]
    fn text_objects_read_like_scalar_strings() {
        let c = content(2);
        let mut ours = create(&c, ActorId::random()).unwrap();
        record_status(&mut ours, &update(1, Status::InProgress), 1_000).unwrap();
        record_status(&mut ours, &update(2, Status::Completed), 2_000).unwrap();

        let mut js = genesis::genesis_document(c.id, DocKind::Instance);
        for t in &c.tasks {
            js.apply_changes([genesis::task_genesis(c.id, t.id)])
                .unwrap();
        }
        js.set_actor(ActorId::random());
        let mut tx = js.transaction();
        let meta = tx.get(&ROOT, keys::META).unwrap().unwrap().1;
        let m = &c.meta;
        text(&mut tx, &meta, keys::STORE, m.store.as_str());
        text(&mut tx, &meta, keys::NAME, &m.name);
        text(
            &mut tx,
            &meta,
            keys::TEMPLATE,
            &m.template.unwrap().0.to_string(),
        );
        text(
            &mut tx,
            &meta,
            keys::DATE,
            &m.date.format("%Y-%m-%d").to_string(),
        );
        text(&mut tx, &meta, keys::TIME_ZONE, &m.time_zone);
        text(&mut tx, &meta, keys::CREATED_BY, &m.created_by.encode());
        let tasks = tx.get(&ROOT, keys::TASKS).unwrap().unwrap().1;
        for t in &c.tasks {
            let o = tx.get(&tasks, t.id.0.to_string()).unwrap().unwrap().1;
            let time = |t: Option<DateTime<Utc>>| {
                t.unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            };
            text(&mut tx, &o, keys::TITLE, &t.title);
            text(&mut tx, &o, keys::DESCRIPTION, &t.description);
            text(&mut tx, &o, keys::START, &time(t.start));
            text(&mut tx, &o, keys::DUE, &time(t.due));
            text(&mut tx, &o, keys::PRIORITY, t.priority.as_str());
            text(&mut tx, &o, keys::LINK, &t.link.as_ref().unwrap().encode());
            text(
                &mut tx,
                &o,
                keys::ASSIGNEE,
                &t.assignee.as_ref().unwrap().encode(),
            );
            text(&mut tx, &o, keys::CREATED_BY, &t.created_by.encode());
            tx.put(&o, keys::POSITION, ScalarValue::F64(t.position as f64))
                .unwrap();
        }
        let events = tx.get(&ROOT, keys::EVENTS).unwrap().unwrap().1;
        for (i, (u, at)) in [
            (update(1, Status::InProgress), 1_000),
            (update(2, Status::Completed), 2_000),
        ]
        .into_iter()
        .enumerate()
        {
            let e = tx.insert_object(&events, i, ObjType::Map).unwrap();
            text(&mut tx, &e, keys::EVENT_ID, &u.id.0.to_string());
            text(&mut tx, &e, keys::TASK, &u.task.0.to_string());
            text(&mut tx, &e, keys::STATUS, u.status.as_str());
            text(&mut tx, &e, keys::WORKER, u.worker.as_str());
            text(&mut tx, &e, keys::TERMINAL, u.terminal.as_str());
            text(&mut tx, &e, keys::NOTE, u.note.as_deref().unwrap());
            tx.put(&e, keys::AT, ScalarValue::F64(at as f64)).unwrap();
            let prev = tx.put_object(&e, keys::PREV, ObjType::List).unwrap();
            if i == 1 {
                let p = tx.insert_object(&prev, 0, ObjType::Text).unwrap();
                tx.splice_text(&p, 0, 0, &Uuid::from_u128(1).to_string())
                    .unwrap();
            }
        }
        tx.commit();

        let view = read(&js).unwrap();
        assert_eq!(view, read(&ours).unwrap());
        assert_eq!(view.malformed_events, 0);
        let s = &view.tasks[0].status;
        assert_eq!(s.current, Status::Completed);
        assert!(s.conflict.is_empty(), "prev read from a text entry");
        assert_eq!(read_events(&js).unwrap(), read_events(&ours).unwrap());
    }

    /// What the reader tolerates and what it counts: a `prev` that is not a
    /// list reads as empty, a non-string `prev` entry is skipped, an
    /// unparsable one makes the event malformed, and so does a missing `at`.
    #[test]
    fn malformed_entries_are_counted_and_odd_ones_tolerated() {
        let c = content(1);
        let mut doc = create(&c, ActorId::random()).unwrap();
        let mut tx = doc.transaction();
        let events = tx.get(&ROOT, keys::EVENTS).unwrap().unwrap().1;
        let event = |tx: &mut automerge::transaction::Transaction<'_>, n: u128| {
            let e = tx
                .insert_object(&events, (n - 1) as usize, ObjType::Map)
                .unwrap();
            tx.put(&e, keys::EVENT_ID, Uuid::from_u128(n).to_string())
                .unwrap();
            tx.put(&e, keys::TASK, c.tasks[0].id.0.to_string()).unwrap();
            tx.put(&e, keys::STATUS, "in_progress").unwrap();
            tx.put(&e, keys::WORKER, "w1").unwrap();
            tx.put(&e, keys::TERMINAL, "pos-1").unwrap();
            tx.put(&e, keys::AT, n as i64).unwrap();
            e
        };
        let e1 = event(&mut tx, 1);
        tx.put(&e1, keys::PREV, "not a list").unwrap();
        let e2 = event(&mut tx, 2);
        let p = tx.put_object(&e2, keys::PREV, ObjType::List).unwrap();
        tx.insert(&p, 0, 7_i64).unwrap();
        tx.insert(&p, 1, Uuid::from_u128(1).to_string()).unwrap();
        let e3 = event(&mut tx, 3);
        let p = tx.put_object(&e3, keys::PREV, ObjType::List).unwrap();
        tx.insert(&p, 0, "not an event id").unwrap();
        let e4 = event(&mut tx, 4);
        tx.delete(&e4, keys::AT).unwrap();
        tx.insert(&events, 4, "not a map").unwrap();
        tx.commit();

        let (log, malformed) = read_events(&doc).unwrap();
        assert_eq!(malformed, 3);
        assert_eq!(log.len(), 2);
        assert!(log[0].prev.is_empty());
        assert_eq!(log[1].prev, vec![EventId(Uuid::from_u128(1))]);
        assert_eq!(read(&doc).unwrap().malformed_events, 3);
    }
}
