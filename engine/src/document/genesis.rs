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

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, AutomergeError, Change, ObjType, ReadDoc, ROOT};
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

fn commit_deterministic(
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

/// The genesis change of a document of `kind`: fixed actor, time 0, the
/// top-level containers and the id.
pub fn genesis(doc: DocumentId, kind: DocKind) -> Change {
    let mut scratch = Automerge::new();
    commit_deterministic(&mut scratch, genesis_actor(doc), |tx| {
        tx.put(ROOT, keys::SCHEMA, super::SCHEMA_VERSION)?;
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
    .expect("genesis ops on an empty document cannot fail")
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
    task_genesis_on(&genesis_document(doc, DocKind::Instance), doc, task)
}

/// [`task_genesis`] from the instance's genesis document, made once for a
/// list's many tasks (a fork instead of building the genesis again).
pub(crate) fn task_genesis_on(genesis_doc: &Automerge, doc: DocumentId, task: TaskId) -> Change {
    let mut scratch = genesis_doc.fork();
    let tasks = match scratch.get(ROOT, keys::TASKS) {
        Ok(Some((_, id))) => id,
        _ => unreachable!("the instance genesis creates the tasks map"),
    };
    commit_deterministic(&mut scratch, task_genesis_actor(doc, task), |tx| {
        tx.put_object(&tasks, task.0.to_string(), ObjType::Map)?;
        Ok(())
    })
    .expect("creating a task map in a fresh genesis document cannot fail")
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
    let mut scratch = genesis_document(doc, DocKind::Directory);
    commit_deterministic(&mut scratch, roster_genesis_actor(doc), |tx| {
        tx.put_object(ROOT, keys::ROSTER, ObjType::Map)?;
        Ok(())
    })
    .expect("creating the roster map in a fresh directory cannot fail")
}

/// Build a deterministic change on top of `base` (which must contain only
/// deterministic changes, so its heads are the same everywhere).
pub(crate) fn content_change(
    base: &Automerge,
    actor: ActorId,
    f: impl FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<(), AutomergeError>,
) -> Result<Change, AutomergeError> {
    let mut scratch = base.fork();
    commit_deterministic(&mut scratch, actor, f)
}

/// SHA-256 of a serializable value's JSON: the digest content actors use.
pub(crate) fn digest_json<T: serde::Serialize>(value: &T) -> [u8; 32] {
    let bytes = serde_json::to_vec(value).expect("model values serialize to JSON");
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn task_genesis_from_a_shared_genesis_document_is_byte_identical() {
        let id = doc_id(11);
        let g = genesis_document(id, DocKind::Instance);
        for n in [1u128, 2, 99] {
            let task = TaskId(Uuid::from_u128(n));
            let mut shared = task_genesis_on(&g, id, task);
            let mut alone = task_genesis(id, task);
            assert_eq!(shared.bytes(), alone.bytes(), "task {n}");
        }
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
