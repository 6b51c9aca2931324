//! Deterministic changes: the same bytes on every replica that makes them.
//!
//! A genesis change uses an actor id derived from the document id alone and
//! time 0, so two replicas that create the same document independently make
//! the *same* change, which Automerge dedupes (DESIGN rule 1). Task geneses
//! do the same for each task's map, and a content change does it for the
//! HQ-authored fields of a materialized instance: the hub and an offline
//! agent materializing the same occurrence from the same template produce
//! byte-identical changes.
//!
//! These actors never write anything else, so they never reuse a sequence
//! number with other content (rule 2).

use std::collections::HashMap;
use std::num::NonZeroU64;

use automerge::legacy::{self, ElementId, Key, ObjectId, OpId, OpType};
use automerge::transaction::Transactable;
use automerge::{
    ActorId, Automerge, AutomergeError, Change, ChangeHash, ExpandedChange, ObjId, ObjType,
    ScalarValue,
};
use sha2::{Digest, Sha256};

use super::keys;
use crate::ids::{DocumentId, TaskId};

/// Which shape a document has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    Instance,
    Directory,
}

impl DocKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Instance => "instance",
            DocKind::Directory => "directory",
        }
    }
}

fn derived_actor(parts: &[&[u8]]) -> ActorId {
    let mut h = Sha256::new();
    h.update(b"storetasks/derived-actor/v1");
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    ActorId::from(&h.finalize()[..16])
}

/// The actor of a document's genesis change.
pub fn genesis_actor(doc: DocumentId) -> ActorId {
    derived_actor(&[b"genesis", doc.as_bytes()])
}

/// The actor of the change that creates `task`'s map in `doc`.
pub fn task_genesis_actor(doc: DocumentId, task: TaskId) -> ActorId {
    derived_actor(&[b"task", doc.as_bytes(), task.0.as_bytes()])
}

/// The actor of a content change: derived from the document and the exact
/// content, so equal content gives equal bytes and different content never
/// shares an actor.
pub fn content_actor(doc: DocumentId, content_digest: &[u8]) -> ActorId {
    derived_actor(&[b"content", doc.as_bytes(), content_digest])
}

/// A deterministic change written op by op, without a document or a
/// transaction: the ops a transaction records when it writes keys of maps
/// that its dependencies made, in the same order with the same ids, so the
/// bytes are the same (tests pin them to a transaction-built change). A
/// transaction on a forked document costs about ten times as much: each
/// op is spliced into the document's columns, and the publish of a list
/// to a store was mostly that.
pub(crate) struct OpWriter {
    actor: ActorId,
    seq: u64,
    start_op: u64,
    time: i64,
    deps: Vec<ChangeHash>,
    ops: Vec<legacy::Op>,
    /// The last op on each (object, key) in this change (and the value it
    /// put): its predecessor if the change writes that key again.
    last: HashMap<(ObjectId, String), (OpId, Option<ScalarValue>)>,
}

impl OpWriter {
    /// A change by `actor` (its first, seq 1) on top of `deps`, whose
    /// largest op counter is `max_op`.
    pub(crate) fn new(actor: ActorId, mut deps: Vec<ChangeHash>, max_op: u64) -> OpWriter {
        // A transaction's dependencies are the document's heads, sorted.
        deps.sort();
        OpWriter {
            actor,
            seq: 1,
            start_op: max_op + 1,
            time: 0,
            deps,
            ops: Vec::new(),
            last: HashMap::new(),
        }
    }

    /// The actor's change number `seq` (not its first), made at `time`
    /// (seconds, as a transaction commits it).
    pub(crate) fn stamped(mut self, seq: u64, time: i64) -> OpWriter {
        self.seq = seq;
        self.time = time;
        self
    }

    /// The id the next op gets.
    fn next_id(&self) -> OpId {
        OpId::new(self.start_op + self.ops.len() as u64, &self.actor)
    }

    fn push(&mut self, obj: &ObjectId, key: &str, action: OpType) -> OpId {
        let slot = (obj.clone(), key.to_owned());
        let value = match &action {
            OpType::Put(v) => Some(v.clone()),
            _ => None,
        };
        if let Some((last, Some(was))) = self.last.get(&slot) {
            // A transaction records nothing for a put of the value the
            // key already holds.
            if value.as_ref() == Some(was) {
                return last.clone();
            }
        }
        let id = self.next_id();
        let pred = self
            .last
            .insert(slot, (id.clone(), value))
            .map(|(p, _)| p)
            .into_iter()
            .collect::<Vec<_>>();
        self.ops.push(legacy::Op {
            action,
            obj: obj.clone(),
            key: Key::Map(key.into()),
            pred: pred.into(),
            insert: false,
        });
        id
    }

    pub(crate) fn put(&mut self, obj: &ObjectId, key: &str, value: impl Into<ScalarValue>) {
        self.push(obj, key, OpType::Put(value.into()));
    }

    /// Make a new object at `key`; returns its id.
    pub(crate) fn make(&mut self, obj: &ObjectId, key: &str, kind: ObjType) -> ObjectId {
        ObjectId::Id(self.push(obj, key, OpType::Make(kind)))
    }

    /// Insert a new element after `after` in the list `list` (what a
    /// transaction records for an insert at the index after it); returns
    /// the element's id, which is also the object id when it makes one.
    pub(crate) fn insert(&mut self, list: &ObjectId, after: ElementId, action: OpType) -> OpId {
        let id = self.next_id();
        self.ops.push(legacy::Op {
            action,
            obj: list.clone(),
            key: Key::Seq(after),
            pred: Vec::new().into(),
            insert: true,
        });
        id
    }

    /// The largest op counter in the change (and its dependencies).
    pub(crate) fn max_op(&self) -> u64 {
        self.start_op + self.ops.len() as u64 - 1
    }

    pub(crate) fn finish(self) -> Change {
        Change::from(ExpandedChange {
            operations: self.ops,
            actor_id: self.actor,
            hash: None,
            seq: self.seq,
            start_op: NonZeroU64::new(self.start_op).expect("start_op is max_op + 1"),
            time: self.time,
            message: None,
            deps: self.deps,
            extra_bytes: Vec::new(),
            author: None,
        })
    }
}

/// Where fields are written: a transaction (a replica's edits) or an
/// `OpWriter` (deterministic changes). One list of fields serves both.
pub(crate) trait FieldWriter {
    type Obj;
    fn put_field(
        &mut self,
        obj: &Self::Obj,
        key: &str,
        value: ScalarValue,
    ) -> Result<(), AutomergeError>;
}

impl FieldWriter for automerge::transaction::Transaction<'_> {
    type Obj = ObjId;
    fn put_field(
        &mut self,
        obj: &ObjId,
        key: &str,
        value: ScalarValue,
    ) -> Result<(), AutomergeError> {
        self.put(obj, key, value)
    }
}

impl FieldWriter for OpWriter {
    type Obj = ObjectId;
    fn put_field(
        &mut self,
        obj: &ObjectId,
        key: &str,
        value: ScalarValue,
    ) -> Result<(), AutomergeError> {
        self.put(obj, key, value);
        Ok(())
    }
}

/// A genesis as written: the change, the containers it made and its
/// largest op counter (what deterministic changes on top of it need).
pub(crate) struct Genesis {
    pub(crate) change: Change,
    containers: Vec<(&'static str, ObjectId)>,
    pub(crate) max_op: u64,
}

impl Genesis {
    /// The container the genesis made at root key `key`.
    pub(crate) fn container(&self, key: &str) -> &ObjectId {
        self.containers
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, o)| o)
            .expect("the genesis makes every container its kind has")
    }
}

pub(crate) fn write_genesis(doc: DocumentId, kind: DocKind) -> Genesis {
    let mut w = OpWriter::new(genesis_actor(doc), Vec::new(), 0);
    w.put(&ObjectId::Root, keys::SCHEMA, super::SCHEMA_VERSION);
    w.put(&ObjectId::Root, keys::KIND, kind.as_str());
    w.put(&ObjectId::Root, keys::ID, doc.0.to_string());
    let mut containers = vec![(
        keys::META,
        w.make(&ObjectId::Root, keys::META, ObjType::Map),
    )];
    let made: &[(&'static str, ObjType)] = match kind {
        DocKind::Instance => &[(keys::TASKS, ObjType::Map), (keys::EVENTS, ObjType::List)],
        DocKind::Directory => &[
            (keys::ENTRIES, ObjType::Map),
            (keys::TEMPLATES, ObjType::Map),
        ],
    };
    for (key, t) in made {
        containers.push((key, w.make(&ObjectId::Root, key, *t)));
    }
    let max_op = w.max_op();
    Genesis {
        change: w.finish(),
        containers,
        max_op,
    }
}

/// The genesis change of a document of `kind`: fixed actor, time 0, the
/// top-level containers and the id.
pub fn genesis(doc: DocumentId, kind: DocKind) -> Change {
    write_genesis(doc, kind).change
}

/// A document holding only its genesis: where deterministic changes are built.
pub fn genesis_document(doc: DocumentId, kind: DocKind) -> Automerge {
    let mut d = Automerge::new();
    d.apply_changes([genesis(doc, kind)])
        .expect("a genesis change applies to an empty document");
    d
}

/// The change that creates `task`'s (empty) map in instance `doc`. Depends
/// only on the genesis, so it is the same wherever it is made.
pub fn task_genesis(doc: DocumentId, task: TaskId) -> Change {
    write_task_genesis(&write_genesis(doc, DocKind::Instance), doc, task).0
}

/// `task_genesis` on an instance genesis already written (materializing a
/// list writes it once for all its tasks); also returns the task's map.
pub(crate) fn write_task_genesis(g: &Genesis, doc: DocumentId, task: TaskId) -> (Change, ObjectId) {
    let mut w = OpWriter::new(
        task_genesis_actor(doc, task),
        vec![g.change.hash()],
        g.max_op,
    );
    let obj = w.make(g.container(keys::TASKS), &task.0.to_string(), ObjType::Map);
    (w.finish(), obj)
}

/// The actor of the change that adds the roster map to a store directory.
pub fn roster_genesis_actor(doc: DocumentId) -> ActorId {
    derived_actor(&[b"roster", doc.as_bytes()])
}

/// The change that creates the (empty) roster map of directory `doc`.
/// Directories made before the roster existed get it from this change
/// instead of a new genesis, so their genesis bytes never change; it
/// depends only on the genesis, so every replica makes the same bytes.
pub fn roster_genesis(doc: DocumentId) -> Change {
    let g = write_genesis(doc, DocKind::Directory);
    let mut w = OpWriter::new(roster_genesis_actor(doc), vec![g.change.hash()], g.max_op);
    w.make(&ObjectId::Root, keys::ROSTER, ObjType::Map);
    w.finish()
}

/// The first implementation, with transactions on scratch documents: the
/// reference `OpWriter`'s bytes are compared with.
#[cfg(test)]
pub(crate) mod by_transaction {
    use automerge::transaction::{CommitOptions, Transactable};
    use automerge::{ActorId, Automerge, AutomergeError, Change, ObjType, ReadDoc, ROOT};

    use super::{genesis_actor, roster_genesis_actor, task_genesis_actor, DocKind};
    use crate::document::keys;
    use crate::ids::{DocumentId, TaskId};

    pub(crate) fn commit_deterministic(
        doc: &mut Automerge,
        actor: ActorId,
        f: impl FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<(), AutomergeError>,
    ) -> Result<Change, AutomergeError> {
        doc.set_actor(actor);
        doc.transact_with(|_| CommitOptions::default().with_time(0), |tx| f(tx))
            .map_err(|f| f.error)?;
        Ok(doc
            .get_last_local_change()
            .expect("a transaction with ops was just committed"))
    }

    pub(crate) fn genesis(doc: DocumentId, kind: DocKind) -> Change {
        let mut scratch = Automerge::new();
        commit_deterministic(&mut scratch, genesis_actor(doc), |tx| {
            tx.put(ROOT, keys::SCHEMA, crate::document::SCHEMA_VERSION)?;
            tx.put(ROOT, keys::KIND, kind.as_str())?;
            tx.put(ROOT, keys::ID, doc.0.to_string())?;
            tx.put_object(ROOT, keys::META, ObjType::Map)?;
            match kind {
                DocKind::Instance => {
                    tx.put_object(ROOT, keys::TASKS, ObjType::Map)?;
                    tx.put_object(ROOT, keys::EVENTS, ObjType::List)?;
                }
                DocKind::Directory => {
                    tx.put_object(ROOT, keys::ENTRIES, ObjType::Map)?;
                    tx.put_object(ROOT, keys::TEMPLATES, ObjType::Map)?;
                }
            }
            Ok(())
        })
        .unwrap()
    }

    pub(crate) fn genesis_document(doc: DocumentId, kind: DocKind) -> Automerge {
        let mut d = Automerge::new();
        d.apply_changes([genesis(doc, kind)]).unwrap();
        d
    }

    pub(crate) fn task_genesis_on(
        genesis_doc: &Automerge,
        doc: DocumentId,
        task: TaskId,
    ) -> Change {
        let mut scratch = genesis_doc.fork();
        let (_, tasks) = scratch.get(ROOT, keys::TASKS).unwrap().unwrap();
        commit_deterministic(&mut scratch, task_genesis_actor(doc, task), |tx| {
            tx.put_object(&tasks, task.0.to_string(), ObjType::Map)?;
            Ok(())
        })
        .unwrap()
    }

    pub(crate) fn roster_genesis(doc: DocumentId) -> Change {
        let mut scratch = genesis_document(doc, DocKind::Directory);
        commit_deterministic(&mut scratch, roster_genesis_actor(doc), |tx| {
            tx.put_object(ROOT, keys::ROSTER, ObjType::Map)?;
            Ok(())
        })
        .unwrap()
    }

    pub(crate) fn content_change(
        base: &Automerge,
        actor: ActorId,
        f: impl FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<(), AutomergeError>,
    ) -> Result<Change, AutomergeError> {
        let mut scratch = base.fork();
        commit_deterministic(&mut scratch, actor, f)
    }
}

/// SHA-256 of a serializable value's JSON: the digest content actors use.
pub fn digest_json<T: serde::Serialize>(value: &T) -> [u8; 32] {
    let bytes = serde_json::to_vec(value).expect("model values serialize to JSON");
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::{ReadDoc, ROOT};
    use uuid::Uuid;

    fn doc_id(n: u128) -> DocumentId {
        DocumentId(Uuid::from_u128(n))
    }

    #[test]
    fn genesis_is_byte_identical_on_independent_replicas() {
        let mut a = genesis(doc_id(1), DocKind::Instance);
        let mut b = genesis(doc_id(1), DocKind::Instance);
        assert_eq!(a.bytes(), b.bytes());
        assert_ne!(
            genesis(doc_id(1), DocKind::Instance).hash(),
            genesis(doc_id(2), DocKind::Instance).hash()
        );
    }

    #[test]
    fn two_replicas_creating_the_same_document_merge_without_duplicate_containers() {
        let id = doc_id(7);
        let mut a = genesis_document(id, DocKind::Instance);
        let mut b = genesis_document(id, DocKind::Instance);
        let task = TaskId(Uuid::from_u128(99));
        a.apply_changes([task_genesis(id, task)]).unwrap();
        b.apply_changes([task_genesis(id, task)]).unwrap();
        a.merge(&mut b).unwrap();
        assert_eq!(
            a.get_changes(&[]).len(),
            2,
            "genesis + task genesis, deduped"
        );
        for key in [keys::META, keys::TASKS, keys::EVENTS] {
            assert_eq!(
                a.get_all(ROOT, key).unwrap().len(),
                1,
                "one {key} container"
            );
        }
        let (_, tasks) = a.get(ROOT, keys::TASKS).unwrap().unwrap();
        assert_eq!(a.get_all(&tasks, task.0.to_string()).unwrap().len(), 1);
    }

    #[test]
    fn written_ops_make_the_bytes_a_transaction_makes() {
        // Replicas running the first implementation (transactions on a
        // scratch document) must keep deduplicating with this one.
        for n in [1u128, 2, 7, u128::MAX] {
            let id = doc_id(n);
            for kind in [DocKind::Instance, DocKind::Directory] {
                assert_eq!(
                    genesis(id, kind).bytes(),
                    by_transaction::genesis(id, kind).bytes(),
                    "{kind:?} genesis of {n}"
                );
            }
            assert_eq!(
                roster_genesis(id).bytes(),
                by_transaction::roster_genesis(id).bytes()
            );
            let g = by_transaction::genesis_document(id, DocKind::Instance);
            for t in [1u128, 99, u128::MAX] {
                let task = TaskId(Uuid::from_u128(t));
                assert_eq!(
                    task_genesis(id, task).bytes(),
                    by_transaction::task_genesis_on(&g, id, task).bytes(),
                    "task {t} of {n}"
                );
            }
        }
    }

    #[test]
    fn a_key_written_again_in_one_change_has_the_first_write_as_predecessor_and_the_same_value_is_no_op(
    ) {
        let id = doc_id(5);
        let g = write_genesis(id, DocKind::Instance);
        let meta = g.container(keys::META).clone();
        let actor = content_actor(id, b"twice");
        let mut w = OpWriter::new(actor.clone(), vec![g.change.hash()], g.max_op);
        w.put(&meta, keys::NAME, "first");
        w.put(&meta, keys::NAME, "second");
        w.put(&meta, keys::NAME, "second");
        w.put(&meta, keys::DATE, "2026-11-26");
        let written = w.finish();
        let base = genesis_document(id, DocKind::Instance);
        let (_, meta_id) = base.get(ROOT, keys::META).unwrap().unwrap();
        let by_tx = by_transaction::content_change(&base, actor, |tx| {
            tx.put(&meta_id, keys::NAME, "first")?;
            tx.put(&meta_id, keys::NAME, "second")?;
            tx.put(&meta_id, keys::NAME, "second")?;
            tx.put(&meta_id, keys::DATE, "2026-11-26")?;
            Ok(())
        })
        .unwrap();
        let mut written = written;
        let mut by_tx = by_tx;
        assert_eq!(written.bytes(), by_tx.bytes());
    }

    #[test]
    fn naive_independent_creation_would_duplicate_containers() {
        // The failure the genesis prevents: two random actors each creating
        // "tasks" leave two containers and one silently wins.
        let mut a = Automerge::new();
        let mut b = Automerge::new();
        for d in [&mut a, &mut b] {
            d.transact::<_, _, AutomergeError>(|tx| {
                tx.put_object(ROOT, keys::TASKS, ObjType::Map)?;
                Ok(())
            })
            .unwrap();
        }
        a.merge(&mut b).unwrap();
        assert_eq!(a.get_all(ROOT, keys::TASKS).unwrap().len(), 2);
    }
}
