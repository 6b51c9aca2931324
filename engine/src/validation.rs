//! Who may write what: a pure function that accepts or rejects each
//! incoming change for an author (HQ or one store), with a reason.
//!
//! It works on what a change *does*, not what it claims (DESIGN "Who may
//! write what"): each change is applied to a scratch copy and every decoded
//! op is checked against the container it touches (found by op id in the
//! state after the change, so ops on a losing concurrent object, which are
//! invisible there, are refused as unknown). A change whose dependency was
//! rejected is rejected too: accepting it would need the rejected one.
//!
//! Rules for a store S (HQ may write any authored field):
//! - nothing outside S's own documents;
//! - root fields and containers: only the byte-identical genesis;
//! - task maps: only through their byte-identical task genesis;
//! - HQ-authored list and task fields: read-only, except `assignee`;
//! - its own lists and tasks (`created_by = store:S`): any authored field;
//! - status log: append new events only, well-formed, each with an id no
//!   other event in the document has, a status that can be recorded (not
//!   `not_started`), by a worker who is or was on S's roster, dated no
//!   later than the hub's clock plus a tolerance;
//! - directory: only entries for lists S created; templates and the
//!   worker roster are HQ's (the roster map comes from its own genesis);
//! - actor ids: one owner each; a change by an actor first introduced by
//!   someone else is forged; a sequence number may not be reused.

use std::collections::{HashMap, HashSet};

use automerge::legacy::{Key, ObjectId, OpId, OpType};
use automerge::{
    ActorId, Automerge, Change, ChangeHash, ExpandedChange, ObjId, ObjType, Parent, Prop, ReadDoc,
    ScalarValue, ROOT,
};
use serde::Serialize;

use crate::document::directory::DirectoryEntry;
use crate::document::genesis::{self, DocKind};
use crate::document::{instance, keys, read};
use crate::ids::{DocumentId, EventId, Principal, StoreId, TaskId, WorkerId};
use crate::model::{Assignee, CreatedBy};

/// Facts about the document and the world the hub supplies.
pub struct ValidationContext<'a> {
    pub doc_id: DocumentId,
    pub kind: DocKind,
    /// The store whose document this is.
    pub owner: &'a StoreId,
    /// Who first introduced an actor id (the hub's record), if anyone.
    pub actor_owner: &'a dyn Fn(&ActorId) -> Option<Principal>,
    /// Deterministic content changes HQ can vouch for (materialized instances).
    pub known_content: &'a HashSet<ChangeHash>,
    /// Latest event time (ms) accepted: hub clock plus tolerance (rule 6).
    pub max_event_time: i64,
    /// May a store's new status event name this worker: is, or ever was,
    /// on the owner store's roster (a terminal offline when HQ took a
    /// worker off still records what they did before it heard).
    pub worker_known: &'a dyn Fn(&WorkerId) -> bool,
}

/// Why a change was refused. The message is sent back to the peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "rejection", rename_all = "snake_case")]
pub enum Rejection {
    #[error("document belongs to another store")]
    WrongStore,
    #[error("actor {actor} belongs to {owner}; a change may only use its author's own actor ids")]
    ForeignActor { actor: String, owner: String },
    #[error("actor {actor} already used sequence number {seq} for a different change")]
    SequenceReused { actor: String, seq: u64 },
    #[error("change uses the genesis actor but is not the document's genesis")]
    ForgedGenesis,
    #[error("change creates task {task} but is not its task genesis")]
    ForgedTaskGenesis { task: String },
    #[error("change uses a derived content actor that HQ did not produce")]
    UnknownContent,
    #[error("root fields are written only by the genesis")]
    RootEdit,
    #[error("{field} is authored by HQ and read-only for stores")]
    HqField { field: String },
    #[error("tasks are created only by their task genesis")]
    TaskCreation,
    #[error("the status log is append-only: existing events cannot change")]
    LogNotAppendOnly,
    #[error("bad status event: {0}")]
    BadEvent(String),
    #[error(
        "status event {id} is already in the log: an event cannot be recorded twice or edited"
    )]
    DuplicateEventId { id: String },
    #[error("worker {worker} is not on this store's roster")]
    UnknownWorker { worker: String },
    #[error("status event dated {at} is after the hub's clock allows ({max})")]
    EventInFuture { at: i64, max: i64 },
    #[error("unknown field {field} on {on}")]
    UnknownField { field: String, on: String },
    #[error("bad value for {field}: {reason}")]
    BadValue { field: String, reason: String },
    #[error("change touches an object that is not part of this document's schema")]
    UnknownObject,
    #[error("operation {0} is not allowed in task documents")]
    BadOperation(String),
    #[error("depends on rejected change {0}")]
    DependsOnRejected(String),
    #[error("change does not apply: {0}")]
    DoesNotApply(String),
    #[error("change carries data this hub cannot read (extra bytes after its operations)")]
    UnreadableContent,
}

/// What happened to one incoming change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Already in the document: nothing to do.
    Duplicate,
    Rejected(Rejection),
    /// Its dependencies are neither in the document nor in the batch.
    MissingDeps,
}

/// The verdicts, in the order changes can be applied, and the actors the
/// accepted changes introduced (to record as owned by the author).
#[derive(Debug, Default)]
pub struct Outcome {
    pub verdicts: Vec<(ChangeHash, Verdict)>,
    pub new_actors: Vec<ActorId>,
    /// The accepted changes in a causal order, ready to apply and store.
    pub accepted: Vec<Change>,
    /// The document with the accepted changes applied (when there are
    /// any): the caller may use it instead of applying them again.
    pub state: Option<Automerge>,
    /// Each actor's last sequence number in the document with the
    /// accepted changes applied: what [`validate_with_seqs`] takes next
    /// time, when the document is still at that state.
    pub seqs: HashMap<ActorId, u64>,
}

impl Outcome {
    pub fn verdict(&self, hash: &ChangeHash) -> Option<&Verdict> {
        self.verdicts
            .iter()
            .find(|(h, _)| h == hash)
            .map(|(_, v)| v)
    }
}

/// Validate `changes` from `author` against `doc` (the hub's accepted state).
pub fn validate(
    doc: &Automerge,
    changes: &[Change],
    author: &Principal,
    ctx: &ValidationContext<'_>,
) -> Outcome {
    validate_with_seqs(doc, changes, author, ctx, None)
}

/// [`validate`], given `seqs`, each actor's last sequence number in `doc`
/// (an earlier [`Outcome::seqs`] for this very state), which spares
/// reading every change's metadata. It must be exactly that: a lower
/// number would let an actor reuse one.
pub fn validate_with_seqs(
    doc: &Automerge,
    changes: &[Change],
    author: &Principal,
    ctx: &ValidationContext<'_>,
    seqs: Option<HashMap<ActorId, u64>>,
) -> Outcome {
    let seqs = seqs.unwrap_or_else(|| last_seqs(doc));
    // Automerge can panic on malformed input (see `validate_each`); the
    // fast path then gives way to the careful one.
    let fast = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        validate_appends(doc, changes, author, ctx, &seqs)
    }));
    if let Ok(Some(out)) = fast {
        return out;
    }
    validate_each(doc, changes, author, ctx, seqs)
}

/// Record that `actor` has used sequence number `seq`.
fn note_seq(seqs: &mut HashMap<ActorId, u64>, actor: &ActorId, seq: u64) {
    let last = seqs.entry(actor.clone()).or_default();
    *last = (*last).max(seq);
}

/// The common batch, checked with one `apply_changes` for all of it: a
/// store's new status events (and nothing else), every one causally ready
/// in the order given, and every one acceptable. Such changes touch only
/// the event log, by appending, and objects they make themselves, so none
/// can change what another one's checks read: checking each against the
/// state after all of them reaches the verdicts checking each against
/// the state after itself does. Applying ten changes at once costs about
/// as much as applying two one by one; a single change (steady state's
/// usual batch) is still cheaper here, where nothing needs locating or
/// reading before it applies. Returns None, for `validate_each`
/// to judge change by change, whenever any of that does not hold.
fn validate_appends(
    doc: &Automerge,
    changes: &[Change],
    author: &Principal,
    ctx: &ValidationContext<'_>,
    seqs: &HashMap<ActorId, u64>,
) -> Option<Outcome> {
    let store = match author {
        Principal::Store(s) if s == ctx.owner => s,
        _ => return None,
    };
    if changes.is_empty() {
        return None;
    }
    // Copied only here, past the cheap refusals: the careful path needs
    // the map as it was if this one gives way part-way.
    let mut seqs = seqs.clone();
    let mut claimed: HashSet<ActorId> = HashSet::new();
    let mut out = Outcome::default();
    let mut batch: HashSet<ChangeHash> = HashSet::new();
    let mut expanded = Vec::with_capacity(changes.len());
    // The log as the root shows it: what `locate` calls `Events`.
    let log = read::obj(doc, &ROOT, keys::EVENTS)?;
    for c in changes {
        let hash = c.hash();
        let actor = c.actor_id();
        let ready = c
            .deps()
            .iter()
            .all(|d| batch.contains(d) || doc.get_change_meta_by_hash(d).is_some());
        if !ready
            || batch.contains(&hash)
            || doc.get_change_meta_by_hash(&hash).is_some()
            || ctx.known_content.contains(&hash)
            || actor == &genesis::genesis_actor(ctx.doc_id)
            || actor == &genesis::roster_genesis_actor(ctx.doc_id)
        {
            return None;
        }
        batch.insert(hash);
        let new_actor = actor_rule(doc, c, author, ctx, &seqs, &claimed).ok()?;
        note_seq(&mut seqs, actor, c.seq());
        if let Some(a) = new_actor {
            claimed.insert(a.clone());
            out.new_actors.push(a);
        }
        let e = c.decode();
        if !e.extra_bytes.is_empty() || instance::appended_events(&e, &log).is_none() {
            return None;
        }
        expanded.push(e);
    }
    let mut post = doc.fork();
    post.apply_changes(changes.iter().cloned()).ok()?;
    let nothing_before = Before::default();
    let mut log_ids = None;
    for (c, e) in changes.iter().zip(&expanded) {
        // Applied, not queued for a dependency.
        post.get_change_meta_by_hash(&c.hash())?;
        check_ops(
            &post,
            e,
            c.actor_id(),
            Some(store),
            &nothing_before,
            ctx,
            &mut log_ids,
        )
        .ok()?;
        out.verdicts.push((c.hash(), Verdict::Accepted));
        out.accepted.push(c.clone());
    }
    out.state = Some(post);
    out.seqs = seqs;
    Some(out)
}

/// The last sequence number of each actor in `doc`.
pub(crate) fn last_seqs(doc: &Automerge) -> HashMap<ActorId, u64> {
    let mut seqs: HashMap<ActorId, u64> = HashMap::new();
    for m in doc.get_changes_meta(&[]) {
        let e = seqs.entry(m.actor.into_owned()).or_default();
        *e = (*e).max(m.seq);
    }
    seqs
}

/// Every change on its own, in causal order: each is checked against the
/// state after the ones accepted before it.
fn validate_each(
    doc: &Automerge,
    changes: &[Change],
    author: &Principal,
    ctx: &ValidationContext<'_>,
    mut seqs: HashMap<ActorId, u64>,
) -> Outcome {
    let mut out = Outcome::default();
    // The accepted state so far: `doc` plus the changes accepted in this
    // call. Each change is checked on it and applied to it; one refused
    // after it was applied is taken out again by rebuilding the copy.
    let mut scratch = doc.fork();
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
            // must not take the hub's thread down with it. Whatever state
            // the panic left `scratch` in is thrown away below.
            let mut applied = false;
            let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                check_change(&mut scratch, c, author, ctx, &seqs, &claimed, &mut applied)
            }))
            .unwrap_or_else(|_| {
                applied = true;
                Err(Rejection::DoesNotApply(
                    "the change is malformed (Automerge could not apply it)".into(),
                ))
            });
            match checked {
                Ok(new_actor) => {
                    note_seq(&mut seqs, c.actor_id(), c.seq());
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
                    if applied {
                        scratch = rebuild(doc, &out.accepted);
                    }
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
    if !out.accepted.is_empty() {
        out.state = Some(scratch);
    }
    out.seqs = seqs;
    out
}

/// `doc` with `accepted` applied: the scratch state without a refused change.
fn rebuild(doc: &Automerge, accepted: &[Change]) -> Automerge {
    let mut s = doc.fork();
    // These applied to the same state a moment ago, in this order.
    if let Err(e) = s.apply_changes(accepted.iter().cloned()) {
        unreachable!("accepted changes no longer apply: {e}");
    }
    s
}

/// Where an object sits in the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Container {
    Meta,
    Tasks,
    Task(TaskId),
    Events,
    Event,
    Prev,
    /// A text object inside a status event (a JS client's plain string).
    EventText,
    Entries,
    Templates,
    /// The directory's worker roster (HQ's).
    Roster,
}

/// The object `counter@actor` of `doc` and its place in the schema, if it
/// is one of the schema's containers and visible: reached from the root
/// through winning, undeleted values only. An op on a deleted object or
/// on the losing side of a conflict is refused as touching an unknown one.
fn locate(doc: &Automerge, counter: u64, actor: &ActorId) -> Option<(Container, ObjId)> {
    let (id, typ) = read::made_by_op(doc, counter, actor)?;
    let mut path: Vec<Parent> = doc.parents(&id).ok()?.collect();
    if path.iter().any(|p| !p.visible) {
        return None;
    }
    path.reverse();
    let key = |p: &Parent| match &p.prop {
        Prop::Map(k) => Some(k.clone()),
        Prop::Seq(_) => None,
    };
    let is_seq = |p: &Parent| matches!(p.prop, Prop::Seq(_));
    let container = match path.as_slice() {
        [top] => match key(top)?.as_str() {
            keys::META => Container::Meta,
            keys::TASKS => Container::Tasks,
            keys::EVENTS => Container::Events,
            keys::ENTRIES => Container::Entries,
            keys::TEMPLATES => Container::Templates,
            keys::ROSTER => Container::Roster,
            _ => return None,
        },
        [top, task] if key(top)?.as_str() == keys::TASKS && typ == ObjType::Map => {
            Container::Task(key(task)?.parse::<TaskId>().ok()?)
        }
        [top, at] if key(top)?.as_str() == keys::EVENTS && is_seq(at) && typ == ObjType::Map => {
            Container::Event
        }
        [top, at, field]
            if key(top)?.as_str() == keys::EVENTS && is_seq(at) && field.typ == ObjType::Map =>
        {
            match key(field)?.as_str() {
                keys::PREV => Container::Prev,
                _ if typ == ObjType::Text => Container::EventText,
                _ => return None,
            }
        }
        [top, at, prev, entry]
            if key(top)?.as_str() == keys::EVENTS
                && is_seq(at)
                && prev.typ == ObjType::Map
                && key(prev)?.as_str() == keys::PREV
                && is_seq(entry)
                && typ == ObjType::Text =>
        {
            Container::EventText
        }
        _ => return None,
    };
    Some((container, id))
}

fn created_by_at<R: ReadDoc>(doc: &R, obj: &ObjId) -> Option<String> {
    read::string(doc, obj, keys::CREATED_BY)
}

/// Does `store` own this list or task: `created_by` said so before the
/// change (`before`), or (a new one) it was absent and says so after.
fn owned_by_store(before: Option<&str>, post: &Automerge, obj: &ObjId, store: &StoreId) -> bool {
    let mine = CreatedBy::Store(store.clone()).encode();
    match before {
        Some(c) => c == mine,
        None => created_by_at(post, obj).as_deref() == Some(mine.as_str()),
    }
}

fn map_key(op_key: &Key) -> Option<&str> {
    match op_key {
        Key::Map(k) => Some(k.as_str()),
        Key::Seq(_) => None,
    }
}

fn action_name(a: &OpType) -> &'static str {
    match a {
        OpType::Make(_) => "make",
        OpType::Delete => "delete",
        OpType::Increment(_) => "increment",
        OpType::Put(_) => "put",
        OpType::MarkBegin(_) => "mark",
        OpType::MarkEnd(_) => "mark",
    }
}

/// What a store's change needs to know about the state before it: read
/// before the change is applied, for the objects that existed already.
#[derive(Default)]
struct Before {
    /// `created_by` of each touched object.
    created_by: HashMap<(u64, ActorId), Option<String>>,
    /// The string at each touched (object, key).
    strings: HashMap<(u64, ActorId, String), Option<String>>,
    /// `created_by` of the task each deleting op names, by key.
    deleted_task_created_by: HashMap<String, Option<String>>,
}

impl Before {
    fn read(
        doc: &Automerge,
        ops: &[automerge::legacy::Op],
        made_here: impl Fn(&OpId) -> bool,
    ) -> Before {
        let mut b = Before::default();
        for op in ops {
            let ObjectId::Id(id) = &op.obj else { continue };
            if made_here(id) {
                continue;
            }
            let Some((obj, _)) = read::made_by_op(doc, id.counter(), id.actor()) else {
                continue;
            };
            let at = (id.counter(), id.actor().clone());
            b.created_by
                .entry(at.clone())
                .or_insert_with(|| created_by_at(doc, &obj));
            if let Some(k) = map_key(&op.key) {
                b.strings
                    .entry((at.0, at.1.clone(), k.to_owned()))
                    .or_insert_with(|| read::string(doc, &obj, k));
                if op.action == OpType::Delete {
                    b.deleted_task_created_by
                        .entry(k.to_owned())
                        .or_insert_with(|| {
                            read::obj(doc, &ROOT, keys::TASKS)
                                .and_then(|tasks| read::obj(doc, &tasks, k))
                                .and_then(|t| created_by_at(doc, &t))
                        });
                }
            }
        }
        b
    }
}

/// Check one causally-ready change against `doc` (the accepted state so
/// far) and apply it there. On success return the actor it introduces, if
/// any; on refusal `applied` says whether `doc` holds the change anyway
/// (the caller then rebuilds it).
fn check_change(
    doc: &mut Automerge,
    c: &Change,
    author: &Principal,
    ctx: &ValidationContext<'_>,
    seqs: &HashMap<ActorId, u64>,
    claimed: &HashSet<ActorId>,
    applied: &mut bool,
) -> Result<Option<ActorId>, Rejection> {
    let store = match author {
        Principal::Store(s) if s != ctx.owner => return Err(Rejection::WrongStore),
        Principal::Store(s) => Some(s),
        Principal::Hq => None,
    };
    let actor = c.actor_id().clone();
    let mut apply = |doc: &mut Automerge| -> Result<(), Rejection> {
        *applied = true;
        doc.apply_changes([c.clone()])
            .map_err(|e| Rejection::DoesNotApply(e.to_string()))
    };

    // Deterministic changes: accepted only as the exact expected bytes.
    if actor == genesis::genesis_actor(ctx.doc_id) {
        return if c.hash() == genesis::genesis(ctx.doc_id, ctx.kind).hash() {
            apply(doc).map(|()| None)
        } else {
            Err(Rejection::ForgedGenesis)
        };
    }
    if actor == genesis::roster_genesis_actor(ctx.doc_id) {
        return if ctx.kind == DocKind::Directory
            && c.hash() == genesis::roster_genesis(ctx.doc_id).hash()
        {
            apply(doc).map(|()| None)
        } else {
            Err(Rejection::ForgedGenesis)
        };
    }
    if ctx.known_content.contains(&c.hash()) {
        return apply(doc).map(|()| None);
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
                        apply(doc).map(|()| None)
                    } else {
                        Err(Rejection::ForgedTaskGenesis {
                            task: task.to_string(),
                        })
                    };
                }
            }
        }
    }

    let new_actor = actor_rule(doc, c, author, ctx, seqs, claimed)?;
    let start = expanded.start_op.get();
    let end = start + expanded.operations.len() as u64;
    let made_here = |id: &OpId| id.actor() == &actor && (start..end).contains(&id.counter());
    let before = match store {
        Some(_) => Before::read(doc, &expanded.operations, made_here),
        None => Before::default(),
    };
    apply(doc)?;
    check_ops(doc, &expanded, &actor, store, &before, ctx, &mut None)?;
    Ok(new_actor)
}

/// Ordinary actors: one owner each, sequence numbers never reused.
/// Returns the actor the change introduces, if it is new. `doc` is the
/// state the change applies to.
fn actor_rule(
    doc: &Automerge,
    c: &Change,
    author: &Principal,
    ctx: &ValidationContext<'_>,
    seqs: &HashMap<ActorId, u64>,
    claimed: &HashSet<ActorId>,
) -> Result<Option<ActorId>, Rejection> {
    let actor = c.actor_id();
    let new_actor = match (ctx.actor_owner)(actor) {
        Some(owner) if &owner != author => {
            return Err(Rejection::ForeignActor {
                actor: actor.to_hex_string(),
                owner: owner.to_string(),
            })
        }
        Some(_) => None,
        None if claimed.contains(actor) => None,
        None if author != &Principal::Hq
            && seqs.contains_key(actor)
            && wrote_deterministic_change(doc, actor, ctx) =>
        {
            return Err(Rejection::ForeignActor {
                actor: actor.to_hex_string(),
                owner: Principal::Hq.to_string(),
            })
        }
        None => Some(actor.clone()),
    };
    if seqs.get(actor).is_some_and(|&s| s >= c.seq()) {
        return Err(Rejection::SequenceReused {
            actor: actor.to_hex_string(),
            seq: c.seq(),
        });
    }
    Ok(new_actor)
}

/// Did `actor` write one of `doc`'s deterministic changes: content HQ
/// vouches for (a list's content, whose actor is derived from it) or a
/// task's genesis? Such an actor is HQ's and writes exactly that one
/// change; nobody holds it in the owner table, so without this a store
/// could take it over with a second change and write as HQ's content
/// (the probe's "change under a deterministic actor"). Asked only of an
/// actor no one owns that already wrote in `doc`, which at the hub is a
/// deterministic actor or nobody (every other actor is claimed by its
/// first change).
fn wrote_deterministic_change(
    doc: &Automerge,
    actor: &ActorId,
    ctx: &ValidationContext<'_>,
) -> bool {
    doc.get_changes_meta(&[])
        .into_iter()
        .filter(|m| *m.actor == *actor)
        .any(|m| {
            if ctx.known_content.contains(&m.hash) {
                return true;
            }
            let Some(change) = doc.get_change_by_hash(&m.hash) else {
                return false;
            };
            let expanded = change.decode();
            match expanded.operations.as_slice() {
                [op] => map_key(&op.key)
                    .and_then(|k| k.parse::<TaskId>().ok())
                    .is_some_and(|task| *actor == genesis::task_genesis_actor(ctx.doc_id, task)),
                _ => false,
            }
        })
}

/// How many entries of the log in `post` carry each event id: read once
/// per state (`log_ids` is `None` until then), for the duplicate check.
fn event_id_counts<'m>(
    post: &Automerge,
    log_ids: &'m mut Option<HashMap<EventId, usize>>,
) -> &'m HashMap<EventId, usize> {
    log_ids.get_or_insert_with(|| {
        let mut counts = HashMap::new();
        if let Some(log) = read::obj(post, &ROOT, keys::EVENTS) {
            for id in instance::entry_ids(post, &log) {
                *counts.entry(id).or_default() += 1;
            }
        }
        counts
    })
}

/// The checks on what a store's (or HQ's) change did, run on `post`, the
/// state with the change applied; `before` holds what its ops overwrote.
/// `log_ids` caches the log's event ids for `post` across calls on it.
fn check_ops(
    post: &Automerge,
    expanded: &ExpandedChange,
    actor: &ActorId,
    store: Option<&StoreId>,
    before: &Before,
    ctx: &ValidationContext<'_>,
    log_ids: &mut Option<HashMap<EventId, usize>>,
) -> Result<(), Rejection> {
    let start = expanded.start_op.get();
    let end = start + expanded.operations.len() as u64;
    let made_here = |id: &OpId| id.actor() == actor && (start..end).contains(&id.counter());
    let mut located: HashMap<(u64, ActorId), Option<(Container, ObjId)>> = HashMap::new();
    let mut locate_once = |counter: u64, actor: &ActorId| {
        located
            .entry((counter, actor.clone()))
            .or_insert_with(|| locate(post, counter, actor))
            .clone()
    };
    let mut new_events: Vec<ObjId> = Vec::new();

    for (i, op) in expanded.operations.iter().enumerate() {
        let op_id_counter = start + i as u64;
        let (container, obj) = match &op.obj {
            ObjectId::Root => return Err(Rejection::RootEdit),
            ObjectId::Id(id) => {
                locate_once(id.counter(), id.actor()).ok_or(Rejection::UnknownObject)?
            }
        };
        // What was there before: nothing, for an object this change made.
        let at = match &op.obj {
            ObjectId::Id(id) if !made_here(id) => Some((id.counter(), id.actor().clone())),
            _ => None,
        };
        let created_before = at
            .as_ref()
            .and_then(|a| before.created_by.get(a).cloned().flatten());
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
                    if !owned_by_store(created_before.as_deref(), post, &obj, s) {
                        return Err(Rejection::HqField {
                            field: format!("list {k}"),
                        });
                    }
                    if k == keys::STORE
                        && read::string(post, &obj, keys::STORE).as_deref() != Some(s.as_str())
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
                    let task_created_by = before.deleted_task_created_by.get(k).cloned().flatten();
                    if task_created_by != Some(CreatedBy::Store(s.clone()).encode()) {
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
                        && !owned_by_store(created_before.as_deref(), post, &obj, s)
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
                if let Some((_, id)) = locate_once(op_id_counter, actor) {
                    new_events.push(id);
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
                    let was = at.and_then(|(n, a)| {
                        before.strings.get(&(n, a, k.to_owned())).cloned().flatten()
                    });
                    let after_ok = match v {
                        Some(ScalarValue::Str(j)) => mine(Some(j.to_string())),
                        None => true,
                        Some(_) => false,
                    };
                    if !(after_ok && (was.is_none() || mine(was))) {
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
    let tasks = read::obj(post, &ROOT, keys::TASKS);
    for e in new_events {
        let ev = instance::read_event(post, &e).ok_or_else(|| {
            Rejection::BadEvent(
                "missing or malformed id, task, status, worker, terminal or at".into(),
            )
        })?;
        let known = tasks
            .as_ref()
            .and_then(|t| read::obj(post, t, &ev.task.0.to_string()))
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
        if !ev.status.is_recordable() {
            return Err(Rejection::BadEvent(ev.status.not_recordable_reason()));
        }
        if store.is_some() && !(ctx.worker_known)(&ev.worker) {
            return Err(Rejection::UnknownWorker {
                worker: ev.worker.to_string(),
            });
        }
        // Another entry with this id (older, concurrent, or in this very
        // change) would let the log say two things under one name.
        if event_id_counts(post, log_ids)
            .get(&ev.id)
            .is_some_and(|&n| n > 1)
        {
            return Err(Rejection::DuplicateEventId {
                id: ev.id.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "validation_tests.rs"]
pub(crate) mod tests;

#[cfg(any(test, feature = "fuzzing"))]
#[path = "validation_reference.rs"]
pub mod reference;
