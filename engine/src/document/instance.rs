//! A task-list instance document: read it into the model, and the edits a
//! replica makes to it (record status, assign, add a store task).
//!
//! Edits commit with the document's current actor, which the caller sets to
//! the replica's own actor (DESIGN rule 2); deterministic changes (genesis,
//! task genesis, materialized content) are built by `genesis` and applied.

use std::collections::BTreeMap;

use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{Automerge, AutomergeError, Change, ObjId, ObjType, ReadDoc, ScalarValue, ROOT};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::genesis::{self, DocKind};
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

fn events_obj<R: ReadDoc>(doc: &R) -> Result<ObjId, ModelError> {
    read::obj(doc, &ROOT, keys::EVENTS)
        .ok_or_else(|| ModelError::NotAnInstance("no events list".into()))
}

fn put_meta(
    tx: &mut Transaction<'_>,
    meta_obj: &ObjId,
    meta: &ListMeta,
) -> Result<(), AutomergeError> {
    tx.put(meta_obj, keys::STORE, meta.store.as_str())?;
    tx.put(meta_obj, keys::NAME, meta.name.as_str())?;
    if let Some(t) = meta.template {
        tx.put(meta_obj, keys::TEMPLATE, t.0.to_string())?;
    }
    tx.put(
        meta_obj,
        keys::DATE,
        meta.date.format("%Y-%m-%d").to_string(),
    )?;
    tx.put(meta_obj, keys::TIME_ZONE, meta.time_zone.as_str())?;
    tx.put(meta_obj, keys::CREATED_BY, meta.created_by.encode())?;
    Ok(())
}

fn put_opt_time(
    tx: &mut Transaction<'_>,
    obj: &ObjId,
    key: &str,
    t: Option<DateTime<Utc>>,
) -> Result<(), AutomergeError> {
    match t {
        Some(t) => tx.put(
            obj,
            key,
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
        None => tx.put(obj, key, ScalarValue::Null),
    }
}

/// Write every field of a task (HQ content, a store's own task, an HQ edit).
fn put_task_fields(
    tx: &mut Transaction<'_>,
    task_obj: &ObjId,
    spec: &TaskSpec,
) -> Result<(), AutomergeError> {
    tx.put(task_obj, keys::TITLE, spec.title.as_str())?;
    tx.put(task_obj, keys::DESCRIPTION, spec.description.as_str())?;
    put_opt_time(tx, task_obj, keys::START, spec.start)?;
    put_opt_time(tx, task_obj, keys::DUE, spec.due)?;
    tx.put(task_obj, keys::PRIORITY, spec.priority.as_str())?;
    match &spec.link {
        Some(l) => tx.put(task_obj, keys::LINK, l.encode())?,
        None => tx.put(task_obj, keys::LINK, ScalarValue::Null)?,
    }
    match &spec.assignee {
        Some(a) => tx.put(task_obj, keys::ASSIGNEE, a.encode())?,
        None => tx.put(task_obj, keys::ASSIGNEE, ScalarValue::Null)?,
    }
    tx.put(task_obj, keys::CREATED_BY, spec.created_by.encode())?;
    tx.put(task_obj, keys::POSITION, spec.position)?;
    Ok(())
}

/// The deterministic changes that make an instance: genesis, one task
/// genesis per task, then one content change with every HQ-authored field.
/// The hub and an offline agent produce the same bytes for the same content.
pub fn materialize(content: &InstanceContent) -> Result<Vec<Change>, ModelError> {
    content.meta.validate()?;
    for t in &content.tasks {
        t.validate()?;
    }
    let id = content.id;
    let mut changes = vec![genesis::genesis(id, DocKind::Instance)];
    let mut base = genesis::genesis_document(id, DocKind::Instance);
    let mut sorted: Vec<&TaskSpec> = content.tasks.iter().collect();
    sorted.sort_by_key(|t| t.id);
    for t in &sorted {
        let c = genesis::task_genesis(id, t.id);
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
    let content_change = genesis::content_change(&base, actor, |tx| {
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

fn parse_time(s: Option<String>, field: &'static str) -> Result<Option<DateTime<Utc>>, ModelError> {
    match s {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(&s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| ModelError::BadField {
                field,
                reason: format!("{s:?} is not an RFC 3339 time: {e}"),
            }),
    }
}

fn read_meta<R: ReadDoc>(doc: &R) -> Result<ListMeta, ModelError> {
    let m = read::obj(doc, &ROOT, keys::META)
        .ok_or_else(|| ModelError::NotAnInstance("no meta map".into()))?;
    let need = |k: &'static str| {
        read::string(doc, &m, k)
            .ok_or_else(|| ModelError::NotAnInstance(format!("meta has no {k}")))
    };
    let date = need(keys::DATE)?;
    Ok(ListMeta {
        store: need(keys::STORE)?.parse()?,
        name: need(keys::NAME)?,
        template: match read::string(doc, &m, keys::TEMPLATE) {
            Some(t) => Some(t.parse()?),
            None => None,
        },
        date: NaiveDate::parse_from_str(&date, "%Y-%m-%d").map_err(|e| ModelError::BadField {
            field: "date",
            reason: format!("{date:?}: {e}"),
        })?,
        time_zone: need(keys::TIME_ZONE)?,
        created_by: need(keys::CREATED_BY)?.parse()?,
    })
}

fn read_task<R: ReadDoc>(
    doc: &R,
    id: TaskId,
    o: &ObjId,
) -> Result<(TaskSpec, Vec<Option<Assignee>>), ModelError> {
    let s = |k| read::string(doc, o, k);
    let assignee_of = |v: Option<String>| -> Option<Assignee> { v.and_then(|v| v.parse().ok()) };
    let all_assignees = read::all_strings(doc, o, keys::ASSIGNEE);
    let conflict = if all_assignees.len() > 1 {
        all_assignees.into_iter().map(assignee_of).collect()
    } else {
        Vec::new()
    };
    let spec = TaskSpec {
        id,
        title: s(keys::TITLE).unwrap_or_default(),
        description: s(keys::DESCRIPTION).unwrap_or_default(),
        start: parse_time(s(keys::START), "start")?,
        due: parse_time(s(keys::DUE), "due")?,
        priority: s(keys::PRIORITY)
            .map(|p| p.parse())
            .transpose()?
            .unwrap_or_default(),
        link: s(keys::LINK).map(|l| l.parse()).transpose()?,
        assignee: assignee_of(s(keys::ASSIGNEE)),
        created_by: s(keys::CREATED_BY)
            .map(|c| c.parse())
            .transpose()?
            .unwrap_or(CreatedBy::Hq),
        position: read::int(doc, o, keys::POSITION).unwrap_or(0),
    };
    Ok((spec, conflict))
}

/// Parse one status-log entry; `None` if it is not a well-formed event.
pub(crate) fn read_event<R: ReadDoc>(doc: &R, o: &ObjId) -> Option<StatusEvent> {
    let s = |k| read::string(doc, o, k);
    let note = s(keys::NOTE);
    if note
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
    {
        return None;
    }
    let prev = match read::obj(doc, o, keys::PREV) {
        Some(list) => read::string_list(doc, &list)
            .iter()
            .map(|p| p.parse::<EventId>().ok())
            .collect::<Option<Vec<_>>>()?,
        None => Vec::new(),
    };
    Some(StatusEvent {
        id: s(keys::EVENT_ID)?.parse().ok()?,
        task: s(keys::TASK)?.parse().ok()?,
        status: s(keys::STATUS)?.parse().ok()?,
        worker: s(keys::WORKER)?.parse().ok()?,
        terminal: s(keys::TERMINAL)?.parse().ok()?,
        at: read::int(doc, o, keys::AT)?,
        prev,
        note,
    })
}

/// Every well-formed event in the log and the count of malformed entries.
pub fn read_events<R: ReadDoc>(doc: &R) -> Result<(Vec<StatusEvent>, usize), ModelError> {
    let events = events_obj(doc)?;
    let mut out = Vec::new();
    let mut malformed = 0;
    for item in doc.list_range(&events, ..) {
        let parsed = match item.value {
            automerge::ValueRef::Object(ObjType::Map) => read_event(doc, &item.id()),
            _ => None,
        };
        match parsed {
            Some(e) => out.push(e),
            None => malformed += 1,
        }
    }
    Ok((out, malformed))
}

fn doc_id<R: ReadDoc>(doc: &R) -> Result<DocumentId, ModelError> {
    if read::string(doc, &ROOT, keys::KIND).as_deref() != Some(DocKind::Instance.as_str()) {
        return Err(ModelError::NotAnInstance("kind is not instance".into()));
    }
    let id = read::string(doc, &ROOT, keys::ID)
        .ok_or_else(|| ModelError::NotAnInstance("no id".into()))?;
    Ok(id.parse()?)
}

/// Read the whole instance: meta, tasks, and each task's derived status.
pub fn read<R: ReadDoc>(doc: &R) -> Result<InstanceView, ModelError> {
    let id = doc_id(doc)?;
    let meta = read_meta(doc)?;
    let tasks_o = tasks_obj(doc)?;
    let (events, malformed_events) = read_events(doc)?;
    let derived = status::derive(events);
    let mut tasks = Vec::new();
    for item in doc.map_range(&tasks_o, ..) {
        let Ok(task_id) = item.key.parse::<TaskId>() else {
            continue;
        };
        if !matches!(item.value, automerge::ValueRef::Object(ObjType::Map)) {
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

fn task_obj<R: ReadDoc>(doc: &R, task: TaskId) -> Result<ObjId, ModelError> {
    let tasks = tasks_obj(doc)?;
    read::obj(doc, &tasks, &task.0.to_string()).ok_or(ModelError::UnknownTask(task))
}

/// The hybrid-logical time for a new event: after every event already in
/// the document, whatever the wall clock says (rule 6).
pub fn next_event_time(events: &[StatusEvent], wall_ms: i64) -> i64 {
    let latest = events.iter().map(|e| e.at).max().unwrap_or(i64::MIN);
    wall_ms.max(latest.saturating_add(1))
}

/// Record a worker's status update: appends one event to the log.
/// Returns the event as stored and the change to persist and send.
pub fn record_status(
    doc: &mut Automerge,
    update: &StatusUpdate,
    wall_ms: i64,
) -> Result<(StatusEvent, Change), ModelError> {
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
    let (events, _) = read_events(doc)?;
    let current = status::of_task(&status::derive(events.clone()), update.task);
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
        at: next_event_time(&events, wall_ms),
        prev: current.head_ids(),
        note: update.note.clone(),
    };
    let events_o = events_obj(doc)?;
    doc.transact_with(
        |_| commit_opts(wall_ms),
        |tx| {
            let len = tx.length(&events_o);
            let e = tx.insert_object(&events_o, len, ObjType::Map)?;
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
    let change = doc.get_last_local_change().expect("just committed");
    Ok((event, change))
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
