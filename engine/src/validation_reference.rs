//! The validation rules as first written: every change applied to its own
//! fork and every container of the document indexed again after it. Slow
//! (it was most of the hub's CPU in the reconnect storm) but simple; kept
//! only as the oracle `validation_fuzz` and the cargo fuzz targets in
//! `fuzz/` compare the fast path against (built for them by the engine's
//! `fuzzing` feature, never in a default build).

use std::collections::{HashMap, HashSet};

use automerge::legacy::{ObjectId, OpId, OpType};
use automerge::{
    ActorId, Automerge, Change, ChangeHash, ObjId, ObjType, ReadDoc, ScalarValue, ROOT,
};

use super::{
    action_name, created_by_at, map_key, Container, Outcome, Rejection, ValidationContext, Verdict,
};
use crate::document::directory::DirectoryEntry;
use crate::document::genesis::{self, DocKind};
use crate::document::{instance, keys, read};
use crate::ids::{Principal, StoreId, TaskId};
use crate::model::{Assignee, CreatedBy};

/// Validate `changes` from `author` against `doc` (the hub's accepted state).
pub fn validate(
    doc: &Automerge,
    changes: &[Change],
    author: &Principal,
    ctx: &ValidationContext<'_>,
) -> Outcome {
    let mut out = Outcome::default();
    let mut scratch = doc.fork();
    let mut seqs: HashMap<ActorId, u64> = HashMap::new();
    for m in doc.get_changes_meta(&[]) {
        let e = seqs.entry(m.actor.into_owned()).or_default();
        *e = (*e).max(m.seq);
    }
    let mut rejected: HashSet<ChangeHash> = HashSet::new();
    let mut seen = HashSet::new();
    let mut pending: Vec<&Change> = changes.iter().filter(|c| seen.insert(c.hash())).collect();
    let mut claimed: HashSet<ActorId> = HashSet::new();
    loop {
        let mut progress = false;
        let mut still = Vec::new();
        for c in pending {
            let hash = c.hash();
            if scratch.get_change_meta_by_hash(&hash).is_some() {
                let v = if doc.get_change_meta_by_hash(&hash).is_some() {
                    Verdict::Duplicate
                } else {
                    Verdict::Accepted
                };
                out.verdicts.push((hash, v));
                progress = true;
                continue;
            }
            if let Some(bad) = c.deps().iter().find(|d| rejected.contains(d)) {
                rejected.insert(hash);
                out.verdicts.push((
                    hash,
                    Verdict::Rejected(Rejection::DependsOnRejected(bad.to_string())),
                ));
                progress = true;
                continue;
            }
            if c.deps()
                .iter()
                .any(|d| scratch.get_change_meta_by_hash(d).is_none())
            {
                still.push(c);
                continue;
            }
            progress = true;
            // Automerge 0.12 can panic on a change that decodes but is
            // malformed inside (found by `validation_fuzz`); a hostile peer
            // must not take the hub's thread down with it. The scratch
            // copy is untouched: `check_change` works on forks.
            let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                check_change(&scratch, c, author, ctx, &seqs, &claimed)
            }))
            .unwrap_or_else(|_| {
                Err(Rejection::DoesNotApply(
                    "the change is malformed (Automerge could not apply it)".into(),
                ))
            });
            match checked {
                Ok((post, new_actor)) => {
                    scratch = post;
                    seqs.insert(c.actor_id().clone(), c.seq());
                    if let Some(a) = new_actor {
                        claimed.insert(a.clone());
                        out.new_actors.push(a);
                    }
                    out.accepted.push(c.clone());
                    out.verdicts.push((hash, Verdict::Accepted));
                }
                Err(r) => {
                    rejected.insert(hash);
                    out.verdicts.push((hash, Verdict::Rejected(r)));
                }
            }
        }
        pending = still;
        if !progress || pending.is_empty() {
            break;
        }
    }
    for c in pending {
        out.verdicts.push((c.hash(), Verdict::MissingDeps));
    }
    out
}

/// Do the fast path's verdicts (`fast`) match the reference's (`slow`)?
/// The same changes in the same order, each with the same verdict; where
/// Automerge panicked on a malformed change in the fast path, any refusal
/// by the reference will do (the two stop at different checks first).
pub fn same_verdicts(fast: &[(ChangeHash, Verdict)], slow: &[(ChangeHash, Verdict)]) -> bool {
    let malformed = |v: &Verdict| matches!(v, Verdict::Rejected(Rejection::DoesNotApply(m)) if m.contains("malformed"));
    fast.len() == slow.len()
        && fast.iter().zip(slow).all(|((h1, v1), (h2, v2))| {
            h1 == h2 && (v1 == v2 || (malformed(v1) && matches!(v2, Verdict::Rejected(_))))
        })
}

fn opid_key(id: &ObjId) -> Option<(u64, ActorId)> {
    match id {
        ObjId::Root => None,
        ObjId::Id(counter, actor, _) => Some((*counter, actor.clone())),
    }
}

/// Index every schema container of `doc` by op id.
fn index_containers(doc: &Automerge) -> HashMap<(u64, ActorId), (Container, ObjId)> {
    let mut idx = HashMap::new();
    let mut add = |id: ObjId, c: Container| {
        if let Some(k) = opid_key(&id) {
            idx.insert(k, (c, id));
        }
    };
    if let Some(m) = read::obj(doc, &ROOT, keys::META) {
        add(m, Container::Meta);
    }
    if let Some(t) = read::obj(doc, &ROOT, keys::TASKS) {
        for item in doc.map_range(&t, ..) {
            if let (Ok(task), automerge::ValueRef::Object(ObjType::Map)) =
                (item.key.parse::<TaskId>(), &item.value)
            {
                add(item.id(), Container::Task(task));
            }
        }
        add(t, Container::Tasks);
    }
    if let Some(e) = read::obj(doc, &ROOT, keys::EVENTS) {
        for item in doc.list_range(&e, ..) {
            if matches!(item.value, automerge::ValueRef::Object(ObjType::Map)) {
                let ev = item.id();
                for field in doc.map_range(&ev, ..) {
                    if matches!(field.value, automerge::ValueRef::Object(ObjType::Text)) {
                        add(field.id(), Container::EventText);
                    }
                }
                if let Some(p) = read::obj(doc, &ev, keys::PREV) {
                    for entry in doc.list_range(&p, ..) {
                        if matches!(entry.value, automerge::ValueRef::Object(ObjType::Text)) {
                            add(entry.id(), Container::EventText);
                        }
                    }
                    add(p, Container::Prev);
                }
                add(ev, Container::Event);
            }
        }
        add(e, Container::Events);
    }
    if let Some(e) = read::obj(doc, &ROOT, keys::ENTRIES) {
        add(e, Container::Entries);
    }
    if let Some(t) = read::obj(doc, &ROOT, keys::TEMPLATES) {
        add(t, Container::Templates);
    }
    if let Some(r) = read::obj(doc, &ROOT, keys::ROSTER) {
        add(r, Container::Roster);
    }
    idx
}

/// Does `store` own this list or task: `created_by` says so before the
/// change, or (a new one) it was absent before and says so after.
fn owned_by_store(pre: &Automerge, post: &Automerge, obj: &ObjId, store: &StoreId) -> bool {
    let mine = CreatedBy::Store(store.clone()).encode();
    match created_by_at(pre, obj) {
        Some(c) => c == mine,
        None => created_by_at(post, obj).as_deref() == Some(mine.as_str()),
    }
}

/// Check one causally-ready change; on success return the state after it.
fn check_change(
    pre: &Automerge,
    c: &Change,
    author: &Principal,
    ctx: &ValidationContext<'_>,
    seqs: &HashMap<ActorId, u64>,
    claimed: &HashSet<ActorId>,
) -> Result<(Automerge, Option<ActorId>), Rejection> {
    let store = match author {
        Principal::Store(s) if s != ctx.owner => return Err(Rejection::WrongStore),
        Principal::Store(s) => Some(s),
        Principal::Hq => None,
    };
    let actor = c.actor_id().clone();
    let apply = |doc: &Automerge| -> Result<Automerge, Rejection> {
        let mut post = doc.fork();
        post.apply_changes([c.clone()])
            .map_err(|e| Rejection::DoesNotApply(e.to_string()))?;
        Ok(post)
    };

    // Deterministic changes: accepted only as the exact expected bytes.
    if actor == genesis::genesis_actor(ctx.doc_id) {
        return if c.hash() == genesis::genesis(ctx.doc_id, ctx.kind).hash() {
            Ok((apply(pre)?, None))
        } else {
            Err(Rejection::ForgedGenesis)
        };
    }
    if actor == genesis::roster_genesis_actor(ctx.doc_id) {
        return if ctx.kind == DocKind::Directory
            && c.hash() == genesis::roster_genesis(ctx.doc_id).hash()
        {
            Ok((apply(pre)?, None))
        } else {
            Err(Rejection::ForgedGenesis)
        };
    }
    if ctx.known_content.contains(&c.hash()) {
        return Ok((apply(pre)?, None));
    }
    let expanded = c.decode();
    // Bytes past the ops are a later format's: nothing here can check them.
    if !expanded.extra_bytes.is_empty() {
        return Err(Rejection::UnreadableContent);
    }
    if let [op] = expanded.operations.as_slice() {
        if let (OpType::Make(ObjType::Map), Some(k)) = (&op.action, map_key(&op.key)) {
            if let Ok(task) = k.parse::<TaskId>() {
                if actor == genesis::task_genesis_actor(ctx.doc_id, task) {
                    return if c.hash() == genesis::task_genesis(ctx.doc_id, task).hash() {
                        Ok((apply(pre)?, None))
                    } else {
                        Err(Rejection::ForgedTaskGenesis {
                            task: task.to_string(),
                        })
                    };
                }
            }
        }
    }

    // Ordinary actors: one owner each, sequence numbers never reused.
    let new_actor = match (ctx.actor_owner)(&actor) {
        Some(owner) if &owner != author => {
            return Err(Rejection::ForeignActor {
                actor: actor.to_hex_string(),
                owner: owner.to_string(),
            })
        }
        Some(_) => None,
        None if claimed.contains(&actor) => None,
        None if author != &Principal::Hq && hq_deterministic_actor(pre, &actor, ctx) => {
            return Err(Rejection::ForeignActor {
                actor: actor.to_hex_string(),
                owner: Principal::Hq.to_string(),
            })
        }
        None => Some(actor.clone()),
    };
    if seqs.get(&actor).is_some_and(|&s| s >= c.seq()) {
        return Err(Rejection::SequenceReused {
            actor: actor.to_hex_string(),
            seq: c.seq(),
        });
    }

    let post = apply(pre)?;
    let idx = index_containers(&post);
    let start = expanded.start_op.get();
    let end = start + expanded.operations.len() as u64;
    let made_here = |id: &OpId| id.actor() == &actor && (start..end).contains(&id.counter());
    let mut new_events: Vec<ObjId> = Vec::new();

    for (i, op) in expanded.operations.iter().enumerate() {
        let op_id_counter = start + i as u64;
        let (container, obj) = match &op.obj {
            ObjectId::Root => return Err(Rejection::RootEdit),
            ObjectId::Id(id) => idx
                .get(&(id.counter(), id.actor().clone()))
                .cloned()
                .ok_or(Rejection::UnknownObject)?,
        };
        let obj_made_here = match &op.obj {
            ObjectId::Id(id) => made_here(id),
            ObjectId::Root => false,
        };
        if matches!(
            op.action,
            OpType::Increment(_) | OpType::MarkBegin(_) | OpType::MarkEnd(_)
        ) {
            return Err(Rejection::BadOperation(action_name(&op.action).into()));
        }
        let key = map_key(&op.key);
        let scalar = |field: &str| -> Result<Option<&ScalarValue>, Rejection> {
            match &op.action {
                OpType::Put(v) => Ok(Some(v)),
                OpType::Delete => Ok(None),
                OpType::Make(ObjType::Text) => Err(Rejection::BadOperation(format!(
                    "a text object on {field}; write a scalar string (ImmutableString in automerge JS)"
                ))),
                other => Err(Rejection::BadOperation(format!(
                    "{} on {field}",
                    action_name(other)
                ))),
            }
        };
        match container {
            Container::Meta => {
                let k = key.ok_or(Rejection::UnknownObject)?;
                if !keys::META_FIELDS.contains(&k) {
                    return Err(Rejection::UnknownField {
                        field: k.into(),
                        on: "list".into(),
                    });
                }
                scalar(k)?;
                if let Some(s) = store {
                    if !owned_by_store(pre, &post, &obj, s) {
                        return Err(Rejection::HqField {
                            field: format!("list {k}"),
                        });
                    }
                    if k == keys::STORE
                        && read::string(&post, &obj, keys::STORE).as_deref() != Some(s.as_str())
                    {
                        return Err(Rejection::WrongStore);
                    }
                }
            }
            Container::Tasks => match (&op.action, store) {
                (OpType::Make(_), _) | (OpType::Put(_), _) => return Err(Rejection::TaskCreation),
                (OpType::Delete, None) => {}
                (OpType::Delete, Some(s)) => {
                    let k = key.ok_or(Rejection::UnknownObject)?;
                    let task = read::obj(
                        pre,
                        &read::obj(pre, &ROOT, keys::TASKS).ok_or(Rejection::UnknownObject)?,
                        k,
                    );
                    if !task.is_some_and(|t| {
                        created_by_at(pre, &t) == Some(CreatedBy::Store(s.clone()).encode())
                    }) {
                        return Err(Rejection::HqField {
                            field: "tasks".into(),
                        });
                    }
                }
                _ => return Err(Rejection::BadOperation(action_name(&op.action).into())),
            },
            Container::Task(_) => {
                let k = key.ok_or(Rejection::UnknownObject)?;
                if !keys::TASK_FIELDS.contains(&k) {
                    return Err(Rejection::UnknownField {
                        field: k.into(),
                        on: "task".into(),
                    });
                }
                let v = scalar(k)?;
                if k == keys::ASSIGNEE {
                    if let Some(ScalarValue::Str(a)) = v {
                        a.parse::<Assignee>().map_err(|e| Rejection::BadValue {
                            field: k.into(),
                            reason: e.to_string(),
                        })?;
                    }
                }
                if let Some(s) = store {
                    if !keys::STORE_WRITABLE_TASK_FIELDS.contains(&k)
                        && !owned_by_store(pre, &post, &obj, s)
                    {
                        return Err(Rejection::HqField {
                            field: format!("task {k}"),
                        });
                    }
                }
            }
            Container::Events => {
                if !(op.insert && matches!(op.action, OpType::Make(ObjType::Map))) {
                    return Err(Rejection::LogNotAppendOnly);
                }
                // The new event's object id is this op's id.
                if let Some((_, id)) = idx.get(&(op_id_counter, actor.clone())) {
                    new_events.push(id.clone());
                }
            }
            Container::Event => {
                if !obj_made_here {
                    return Err(Rejection::LogNotAppendOnly);
                }
                let k = key.ok_or(Rejection::UnknownObject)?;
                if !keys::EVENT_FIELDS.contains(&k) {
                    return Err(Rejection::UnknownField {
                        field: k.into(),
                        on: "status event".into(),
                    });
                }
                match (&op.action, k) {
                    (OpType::Make(ObjType::List), keys::PREV) => {}
                    (OpType::Make(ObjType::Text), k) if k != keys::PREV => {}
                    (OpType::Put(_), _) => {}
                    _ => {
                        return Err(Rejection::BadOperation(format!(
                            "{} on event {k}",
                            action_name(&op.action)
                        )))
                    }
                }
            }
            Container::Prev => {
                let string_like = matches!(
                    op.action,
                    OpType::Put(ScalarValue::Str(_)) | OpType::Make(ObjType::Text)
                );
                if !obj_made_here || !op.insert || !string_like {
                    return Err(Rejection::LogNotAppendOnly);
                }
            }
            Container::EventText => {
                // Only the characters of a text made in this very change.
                if !obj_made_here
                    || !op.insert
                    || !matches!(op.action, OpType::Put(ScalarValue::Str(_)))
                {
                    return Err(Rejection::LogNotAppendOnly);
                }
            }
            Container::Entries => {
                let k = key.ok_or(Rejection::UnknownObject)?;
                let v = scalar("directory entry")?;
                if let Some(s) = store {
                    let mine = |json: Option<String>| {
                        json.and_then(|j| serde_json::from_str::<DirectoryEntry>(&j).ok())
                            .is_some_and(|e| e.created_by == CreatedBy::Store(s.clone()))
                    };
                    let before = read::string(pre, &obj, k);
                    let after_ok = match v {
                        Some(ScalarValue::Str(j)) => mine(Some(j.to_string())),
                        None => true,
                        Some(_) => false,
                    };
                    if !(after_ok && (before.is_none() || mine(before))) {
                        return Err(Rejection::HqField {
                            field: "directory entry".into(),
                        });
                    }
                }
            }
            Container::Templates => {
                scalar("template")?;
                if store.is_some() {
                    return Err(Rejection::HqField {
                        field: "templates".into(),
                    });
                }
            }
            Container::Roster => {
                scalar("roster entry")?;
                if store.is_some() {
                    return Err(Rejection::HqField {
                        field: "roster".into(),
                    });
                }
            }
        }
    }

    // Every new event must be well-formed, about a task of this list, and not from the future.
    let tasks = read::obj(&post, &ROOT, keys::TASKS);
    for e in new_events {
        let ev = instance::read_event(&post, &e).ok_or_else(|| {
            Rejection::BadEvent(
                "missing or malformed id, task, status, worker, terminal or at".into(),
            )
        })?;
        let known = tasks
            .as_ref()
            .and_then(|t| read::obj(&post, t, &ev.task.0.to_string()))
            .is_some();
        if !known {
            return Err(Rejection::BadEvent(format!(
                "task {} is not in this list",
                ev.task
            )));
        }
        if ev.at > ctx.max_event_time {
            return Err(Rejection::EventInFuture {
                at: ev.at,
                max: ctx.max_event_time,
            });
        }
        if ev.status == crate::model::Status::NotStarted {
            return Err(Rejection::BadEvent(ev.status.not_recordable_reason()));
        }
        if store.is_some() && !(ctx.worker_known)(&ev.worker) {
            return Err(Rejection::UnknownWorker {
                worker: ev.worker.to_string(),
            });
        }
        // Read plainly: every entry of the log, parsed, compared by id.
        let log = read::obj(&post, &ROOT, keys::EVENTS).ok_or(Rejection::UnknownObject)?;
        let same_id = post
            .list_range(&log, ..)
            .filter(|item| {
                read::string(&post, &item.id(), keys::EVENT_ID)
                    .and_then(|s| s.parse::<crate::ids::EventId>().ok())
                    == Some(ev.id)
            })
            .count();
        if same_id > 1 {
            return Err(Rejection::DuplicateEventId {
                id: ev.id.to_string(),
            });
        }
    }
    Ok((post, new_actor))
}

/// Is `actor` one of HQ's deterministic actors in `pre`: the author of a
/// change HQ vouches for, or the genesis actor of a task the document has.
fn hq_deterministic_actor(pre: &Automerge, actor: &ActorId, ctx: &ValidationContext<'_>) -> bool {
    let vouched = ctx
        .known_content
        .iter()
        .filter_map(|h| pre.get_change_by_hash(h))
        .any(|c| c.actor_id() == actor);
    let task_genesis = read::obj(pre, &ROOT, keys::TASKS).is_some_and(|tasks| {
        pre.keys(&tasks)
            .filter_map(|k| k.parse::<TaskId>().ok())
            .any(|t| *actor == genesis::task_genesis_actor(ctx.doc_id, t))
    });
    vouched || task_genesis
}
