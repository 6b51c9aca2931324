//! Documents as a compacted snapshot plus incremental change rows, and the
//! compaction that folds the rows into the snapshot.
//!
//! Appending a change is one small insert (cheap enough to do for every
//! worker tap); loading is `Automerge::load(snapshot)` plus `apply_changes`
//! of the rows; compaction keeps loading fast by rewriting the snapshot.

use std::path::Path;

use automerge::{Automerge, Change, ChangeHash};
use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use super::{Failure, SqliteDatabase, StorageError};
use crate::ids::DocumentId;
use crate::storage::roles::*;

/// What one [`Store::compact`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Change rows folded into the new snapshot and deleted.
    pub folded: usize,
    /// Change rows kept because they still wait for a change they depend on.
    pub kept: usize,
    /// Size of the document's snapshot after compaction (0 if it has none).
    pub snapshot_bytes: usize,
}

/// Meta key prefix of quarantined rows: `quarantine/<doc id>/<n>`.
pub const QUARANTINE_PREFIX: &str = "quarantine/";

/// One document's outcome in [`Store::load_all_documents`].
pub type DocumentLoad = Result<Automerge, StorageError>;

/// A document as read from the database, before it is handed out.
struct Stored {
    doc: Automerge,
    /// Row id and hash of every change row, in arrival order.
    rows: Vec<(i64, ChangeHash)>,
    snapshot_bytes: usize,
}

impl Documents for SqliteDatabase {
    fn append_changes(
        &mut self,
        doc: DocumentId,
        changes: &[Change],
    ) -> Result<usize, StorageError> {
        if changes.is_empty() {
            return Ok(0);
        }
        self.write(|tx| Ok(append_in(tx, doc, changes)?))
    }

    fn load_document(&self, doc: DocumentId) -> Result<Option<Automerge>, StorageError> {
        let stored = self.read(|conn| read_document(conn, &self.path, doc))?;
        Ok(stored.map(|stored| stored.doc.with_actor(self.actor.clone())))
    }

    fn load_all_documents(&self) -> Result<Vec<(DocumentId, DocumentLoad)>, StorageError> {
        self.read(|conn| {
            let mut out = Vec::new();
            for doc in list_documents(conn, &self.path)? {
                let loaded = match read_document(conn, &self.path, doc) {
                    Ok(Some(stored)) => Ok(stored.doc.with_actor(self.actor.clone())),
                    Ok(None) => continue, // unreachable inside one read transaction
                    Err(Failure::Storage(e @ StorageError::CorruptDocument { .. })) => {
                        tracing::warn!(error = %e, "skipping corrupt document");
                        Err(e)
                    }
                    // A database-level failure affects every document: give up.
                    Err(other) => return Err(other),
                };
                out.push((doc, loaded));
            }
            Ok(out)
        })
    }

    fn list_documents(&self) -> Result<Vec<DocumentId>, StorageError> {
        self.read(|conn| list_documents(conn, &self.path))
    }

    fn document_count(&self) -> Result<usize, StorageError> {
        self.read(|conn| {
            let n: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM documents")?
                .query_row([], |r| r.get(0))?;
            Ok(n as usize)
        })
    }

    fn document_exists(&self, doc: DocumentId) -> Result<bool, StorageError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM documents WHERE doc_id = ?1")?
                .exists([doc.as_bytes()])?)
        })
    }

    fn delete_document(&mut self, doc: DocumentId) -> Result<bool, StorageError> {
        self.write(|tx| {
            // sync_states has no foreign key (see schema v2), so by hand.
            tx.prepare_cached("DELETE FROM sync_states WHERE doc_id = ?1")?
                .execute([doc.as_bytes()])?;
            // Change rows go by ON DELETE CASCADE.
            let deleted = tx
                .prepare_cached("DELETE FROM documents WHERE doc_id = ?1")?
                .execute([doc.as_bytes()])?;
            Ok(deleted > 0)
        })
    }

    fn replace_document(
        &mut self,
        doc: DocumentId,
        changes: &[Change],
    ) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM sync_states WHERE doc_id = ?1")?
                .execute([doc.as_bytes()])?;
            tx.prepare_cached("DELETE FROM documents WHERE doc_id = ?1")?
                .execute([doc.as_bytes()])?;
            append_in(tx, doc, changes)?;
            Ok(())
        })
    }

    fn replace_document_with_actor(
        &mut self,
        doc: DocumentId,
        changes: &[Change],
        new_actor: [u8; 16],
        meta: &[(&str, Vec<u8>)],
    ) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM sync_states WHERE doc_id = ?1")?
                .execute([doc.as_bytes()])?;
            tx.prepare_cached("DELETE FROM documents WHERE doc_id = ?1")?
                .execute([doc.as_bytes()])?;
            append_in(tx, doc, changes)?;
            tx.prepare_cached("UPDATE replica SET actor_id = ?1 WHERE id = 1")?
                .execute([&new_actor])?;
            for (key, value) in meta {
                tx.prepare_cached(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )?
                .execute(rusqlite::params![key, value])?;
            }
            Ok(())
        })?;
        let actor = automerge::ActorId::from(new_actor);
        tracing::info!(
            file = %self.path.display(),
            old = %self.actor,
            new = %actor,
            "replica actor id replaced"
        );
        self.actor = actor;
        Ok(())
    }

    fn quarantine_document(&mut self, doc: DocumentId) -> Result<usize, StorageError> {
        self.write(|tx| {
            let mut blobs: Vec<Vec<u8>> = Vec::new();
            // Read each column as a raw value: a damaged row may hold any type.
            let raw = |v: rusqlite::types::Value| match v {
                rusqlite::types::Value::Blob(b) => b,
                rusqlite::types::Value::Text(t) => t.into_bytes(),
                other => format!("{other:?}").into_bytes(),
            };
            let snapshot: Option<rusqlite::types::Value> = tx
                .prepare_cached("SELECT snapshot FROM documents WHERE doc_id = ?1")?
                .query_row([doc.as_bytes()], |row| row.get(0))
                .optional()?;
            if let Some(v) = snapshot.filter(|v| *v != rusqlite::types::Value::Null) {
                blobs.push(raw(v));
            }
            let rows = tx
                .prepare_cached("SELECT bytes FROM changes WHERE doc_id = ?1 ORDER BY id")?
                .query_map([doc.as_bytes()], |row| {
                    row.get::<_, rusqlite::types::Value>(0)
                })?
                .collect::<Result<Vec<_>, _>>()?;
            blobs.extend(rows.into_iter().map(raw));
            let mut put = tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?;
            for (n, b) in blobs.iter().enumerate() {
                put.execute(params![format!("{QUARANTINE_PREFIX}{doc}/{n}"), b])?;
            }
            tx.prepare_cached("DELETE FROM sync_states WHERE doc_id = ?1")?
                .execute([doc.as_bytes()])?;
            tx.prepare_cached("DELETE FROM documents WHERE doc_id = ?1")?
                .execute([doc.as_bytes()])?;
            Ok(blobs.len())
        })
    }

    fn quarantined(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, value FROM meta WHERE key >= ?1 AND key < ?2 ORDER BY key",
            )?;
            let end = format!("{}\u{10ffff}", QUARANTINE_PREFIX);
            let rows = stmt
                .query_map(params![QUARANTINE_PREFIX, end], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    fn change_row_count(&self, doc: DocumentId) -> Result<usize, StorageError> {
        self.read(|conn| {
            let n: i64 = conn
                .prepare_cached("SELECT count(*) FROM changes WHERE doc_id = ?1")?
                .query_row([doc.as_bytes()], |row| row.get(0))?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    fn documents_needing_compaction(
        &self,
        threshold_changes: usize,
    ) -> Result<Vec<DocumentId>, StorageError> {
        let threshold = i64::try_from(threshold_changes).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT doc_id FROM changes GROUP BY doc_id HAVING count(*) >= ?1 ORDER BY doc_id",
            )?;
            let blobs = stmt
                .query_map([threshold], |row| row.get::<_, Vec<u8>>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            blobs
                .into_iter()
                .map(|blob| document_id(&self.path, blob))
                .collect()
        })
    }

    fn compact_some(
        &mut self,
        threshold_changes: usize,
        max_documents: usize,
    ) -> Result<usize, StorageError> {
        let mut done = 0;
        for doc in self
            .documents_needing_compaction(threshold_changes)?
            .into_iter()
            .take(max_documents)
        {
            match self.compact(doc) {
                Ok(_) => done += 1,
                Err(e) => tracing::warn!(%doc, error = %e, "compaction skipped a document"),
            }
        }
        if done > 0 {
            // The replaced rows left free pages: give them back.
            if let Err(e) = self.release_free_pages() {
                tracing::warn!(error = %e, "could not release free pages after compaction");
            }
        }
        Ok(done)
    }

    fn compact(&mut self, doc: DocumentId) -> Result<CompactionStats, StorageError> {
        let file = self.path.clone();
        let stats = self.write(|tx| {
            let stored =
                read_document(tx, &file, doc)?.ok_or_else(|| StorageError::UnknownDocument {
                    file: file.clone(),
                    doc,
                })?;
            let (folded, kept): (Vec<_>, Vec<_>) = stored
                .rows
                .iter()
                .partition(|(_, hash)| stored.doc.get_change_meta_by_hash(hash).is_some());
            if folded.is_empty() {
                return Ok(CompactionStats {
                    folded: 0,
                    kept: kept.len(),
                    snapshot_bytes: stored.snapshot_bytes,
                });
            }
            let snapshot = stored.doc.save();
            tx.prepare_cached("UPDATE documents SET snapshot = ?2 WHERE doc_id = ?1")?
                .execute(params![doc.as_bytes(), snapshot])?;
            let mut delete = tx.prepare_cached("DELETE FROM changes WHERE id = ?1")?;
            for (id, _) in &folded {
                delete.execute([id])?;
            }
            Ok(CompactionStats {
                folded: folded.len(),
                kept: kept.len(),
                snapshot_bytes: snapshot.len(),
            })
        })?;
        tracing::debug!(%doc, ?stats, "compacted document");
        Ok(stats)
    }
}

fn list_documents(conn: &Connection, file: &Path) -> Result<Vec<DocumentId>, Failure> {
    let mut stmt = conn.prepare_cached("SELECT doc_id FROM documents ORDER BY doc_id")?;
    let blobs = stmt
        .query_map([], |row| row.get::<_, Vec<u8>>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    blobs
        .into_iter()
        .map(|blob| document_id(file, blob))
        .collect()
}

/// Decode a stored document id. The schema's CHECK makes a bad length
/// impossible short of damage to the file, hence `Damaged`.
fn document_id(file: &Path, blob: Vec<u8>) -> Result<DocumentId, Failure> {
    let bytes: [u8; 16] = blob
        .try_into()
        .map_err(|blob: Vec<u8>| StorageError::Damaged {
            file: file.to_path_buf(),
            detail: format!("a document id is {} bytes, not 16", blob.len()),
        })?;
    Ok(DocumentId(Uuid::from_bytes(bytes)))
}

/// Read and decode one document. Anything wrong with the stored bytes is
/// `CorruptDocument` for this document; only SQLite failures are other errors.
fn read_document(
    conn: &Connection,
    file: &Path,
    doc: DocumentId,
) -> Result<Option<Stored>, Failure> {
    let corrupt = |reason: String| Failure::from(StorageError::corrupt(file, doc, reason));

    let snapshot: Option<Option<Vec<u8>>> = conn
        .prepare_cached("SELECT snapshot FROM documents WHERE doc_id = ?1")?
        .query_row([doc.as_bytes()], |row| row.get(0))
        .optional()
        .map_err(|e| match e {
            // A snapshot column holding something other than a blob is damage
            // to this document's row, not a database failure.
            rusqlite::Error::InvalidColumnType(..) => {
                corrupt(format!("snapshot is unreadable: {e}"))
            }
            e => Failure::from(e),
        })?;
    let Some(snapshot) = snapshot else {
        return Ok(None);
    };
    let snapshot_bytes = snapshot.as_ref().map_or(0, Vec::len);
    let mut am = match snapshot {
        Some(bytes) => {
            Automerge::load(&bytes).map_err(|e| corrupt(format!("snapshot does not load: {e}")))?
        }
        None => Automerge::new(),
    };

    let mut stmt =
        conn.prepare_cached("SELECT id, hash, bytes FROM changes WHERE doc_id = ?1 ORDER BY id")?;
    let mut query = stmt.query([doc.as_bytes()])?;
    let mut rows = Vec::new();
    let mut changes = Vec::new();
    while let Some(row) = query.next()? {
        let id: i64 = row.get(0)?;
        let (hash, bytes) = match (row.get::<_, Vec<u8>>(1), row.get::<_, Vec<u8>>(2)) {
            (Ok(hash), Ok(bytes)) => (hash, bytes),
            (Err(e), _) | (_, Err(e)) => {
                return Err(corrupt(format!("change row {id} is unreadable: {e}")))
            }
        };
        // Automerge checks the change's checksum; comparing with the key we
        // filed it under also catches a row swapped or rewritten whole.
        let change = Change::from_bytes(bytes)
            .map_err(|e| corrupt(format!("change row {id} does not decode: {e}")))?;
        if change.hash().0[..] != hash[..] {
            return Err(corrupt(format!(
                "change row {id} holds change {} but is stored under another hash",
                change.hash()
            )));
        }
        rows.push((id, change.hash()));
        changes.push(change);
    }
    // apply_changes orders by dependency and queues any change whose
    // dependencies are missing, so row order only affects speed.
    am.apply_changes(changes)
        .map_err(|e| corrupt(format!("stored changes do not apply: {e}")))?;
    Ok(Some(Stored {
        doc: am,
        rows,
        snapshot_bytes,
    }))
}

/// Insert `changes` for `doc` inside an open write transaction; returns how
/// many were new. Shared by `append_changes` and the registry's
/// `commit_accepted`, which must write changes and actor owners together.
pub(super) fn append_in(
    tx: &rusqlite::Connection,
    doc: DocumentId,
    changes: &[Change],
) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "INSERT INTO documents (doc_id) VALUES (?1) ON CONFLICT (doc_id) DO NOTHING",
    )?
    .execute([doc.as_bytes()])?;
    // ON CONFLICT names the dedupe key, so any other constraint
    // failure still errors instead of being silently ignored.
    let mut insert = tx.prepare_cached(
        "INSERT INTO changes (doc_id, hash, bytes) VALUES (?1, ?2, ?3)
         ON CONFLICT (doc_id, hash) DO NOTHING",
    )?;
    let mut new = 0;
    for change in changes {
        new += insert.execute(params![doc.as_bytes(), change.hash().0, change.raw_bytes()])?;
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use automerge::{transaction::Transactable, AutoCommit, ReadDoc, ROOT};
    use rand::RngCore;

    use super::*;
    use crate::storage::sqlite::testing::{checklist, temp_store};
    use crate::storage::PeerId;

    fn doc_id(n: u8) -> DocumentId {
        DocumentId::from_random_bytes([n; 16])
    }

    fn assert_same(loaded: &Automerge, expected: &mut AutoCommit) {
        assert_eq!(loaded.get_heads(), expected.get_heads());
        assert_eq!(
            ReadDoc::hydrate(loaded, ROOT, None).unwrap(),
            ReadDoc::hydrate(expected, ROOT, None).unwrap()
        );
    }

    #[test]
    fn append_and_load_roundtrip() {
        let (_dir, mut store) = temp_store();
        let id = doc_id(1);
        assert_eq!(store.load_document(id).unwrap().map(|_| ()), None);
        assert!(!store.document_exists(id).unwrap());

        let mut doc = checklist(5);
        let changes = doc.get_changes(&[]);
        assert!(changes.len() >= 5);
        // Two batches, as they would arrive: the store does not care.
        let (first, rest) = changes.split_at(2);
        assert_eq!(store.append_changes(id, first).unwrap(), 2);
        assert_eq!(store.append_changes(id, rest).unwrap(), rest.len());

        let loaded = store.load_document(id).unwrap().expect("stored");
        assert_same(&loaded, &mut doc);
        assert!(store.document_exists(id).unwrap());
        assert_eq!(store.list_documents().unwrap(), vec![id]);
        // Changes made on a loaded document are this replica's.
        assert_eq!(loaded.get_actor(), &store.actor_id());
    }

    #[test]
    fn changes_in_any_order_load() {
        let (_dir, mut store) = temp_store();
        let id = doc_id(1);
        let mut doc = checklist(4);
        let mut changes = doc.get_changes(&[]);
        changes.reverse();
        store.append_changes(id, &changes).unwrap();
        assert_same(&store.load_document(id).unwrap().unwrap(), &mut doc);
    }

    #[test]
    fn duplicate_changes_are_ignored() {
        let (_dir, mut store) = temp_store();
        let id = doc_id(1);
        let mut doc = checklist(3);
        let changes = doc.get_changes(&[]);
        assert_eq!(store.append_changes(id, &changes[..2]).unwrap(), 2);
        assert_eq!(store.append_changes(id, &changes[..2]).unwrap(), 0);
        // Overlapping batch: only the new one counts.
        assert_eq!(
            store.append_changes(id, &changes).unwrap(),
            changes.len() - 2
        );
        assert_eq!(store.change_row_count(id).unwrap(), changes.len());
        assert_same(&store.load_document(id).unwrap().unwrap(), &mut doc);
        assert_eq!(store.append_changes(id, &[]).unwrap(), 0);
    }

    #[test]
    fn same_change_in_two_documents_is_stored_for_each() {
        // The dedupe key is (doc, hash): a change stored for one document
        // must not be mistaken for already stored in another.
        let (_dir, mut store) = temp_store();
        let changes = checklist(1).get_changes(&[]);
        assert_eq!(
            store.append_changes(doc_id(1), &changes).unwrap(),
            changes.len()
        );
        assert_eq!(
            store.append_changes(doc_id(2), &changes).unwrap(),
            changes.len()
        );
    }

    /// The document, the actor and the meta keys change together, and
    /// stay changed after a reopen; a failed write changes none of them.
    #[test]
    fn a_document_replaced_with_a_new_actor_keeps_both_across_a_reopen() {
        let (dir, mut store) = temp_store();
        let id = doc_id(1);
        store
            .append_changes(id, &checklist(3).get_changes(&[]))
            .unwrap();
        let fewer = checklist(1).get_changes(&[]);
        store
            .replace_document_with_actor(id, &fewer, [9; 16], &[("k", b"v".to_vec())])
            .unwrap();
        assert_eq!(store.actor_id(), automerge::ActorId::from([9_u8; 16]));
        let path = store.path().to_path_buf();
        drop(store);
        let mut store = SqliteDatabase::open(&path, [1; 16]).unwrap();
        assert_eq!(store.actor_id(), automerge::ActorId::from([9_u8; 16]));
        assert_eq!(store.get_meta("k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(store.change_row_count(id).unwrap(), fewer.len());

        // A write that fails part way (here: at the meta table) leaves
        // nothing of it behind.
        store
            .conn
            .execute_batch("CREATE TRIGGER no_meta BEFORE INSERT ON meta BEGIN SELECT RAISE(ABORT, 'no'); END;")
            .unwrap();
        let more = checklist(2).get_changes(&[]);
        assert!(store
            .replace_document_with_actor(id, &more, [8; 16], &[("k2", b"w".to_vec())])
            .is_err());
        assert_eq!(store.actor_id(), automerge::ActorId::from([9_u8; 16]));
        assert_eq!(store.change_row_count(id).unwrap(), fewer.len());
        drop(store);
        let store = SqliteDatabase::open(&path, [1; 16]).unwrap();
        assert_eq!(store.actor_id(), automerge::ActorId::from([9_u8; 16]));
        drop(dir);
    }

    #[test]
    fn a_quarantined_document_keeps_its_bytes_aside_and_leaves_the_others() {
        let (_dir, mut store) = temp_store();
        let (bad, good) = (doc_id(1), doc_id(2));
        store
            .append_changes(bad, &checklist(2).get_changes(&[]))
            .unwrap();
        store
            .append_changes(good, &checklist(3).get_changes(&[]))
            .unwrap();
        store
            .conn
            .execute(
                "UPDATE changes SET bytes = X'0badbeef' WHERE doc_id = ?1",
                [bad.as_bytes()],
            )
            .unwrap();
        assert!(matches!(
            store.load_document(bad),
            Err(StorageError::CorruptDocument { .. })
        ));
        let rows = store.quarantine_document(bad).unwrap();
        assert!(rows >= 2, "{rows}");
        assert!(!store.document_exists(bad).unwrap());
        assert!(store.load_document(good).unwrap().is_some(), "others stay");
        let kept = store.quarantined().unwrap();
        assert_eq!(kept.len(), rows);
        assert!(kept.iter().all(
            |(k, v)| k.starts_with(&format!("{QUARANTINE_PREFIX}{bad}/"))
                && v == &[0x0b, 0xad, 0xbe, 0xef]
        ));
        // Fetched again, it loads.
        let mut again = checklist(2);
        store.append_changes(bad, &again.get_changes(&[])).unwrap();
        assert_same(&store.load_document(bad).unwrap().unwrap(), &mut again);
    }

    #[test]
    fn compaction_keeps_content_and_heads_and_removes_rows() {
        let (_dir, mut store) = temp_store();
        let id = doc_id(1);
        let mut doc = checklist(10);
        let changes = doc.get_changes(&[]);
        store.append_changes(id, &changes).unwrap();
        store
            .append_changes(doc_id(2), &checklist(1).get_changes(&[]))
            .unwrap();

        assert_eq!(store.documents_needing_compaction(10).unwrap(), vec![id]);
        let stats = store.compact(id).unwrap();
        assert_eq!(stats.folded, changes.len());
        assert_eq!(stats.kept, 0);
        assert!(stats.snapshot_bytes > 0);
        assert_eq!(store.change_row_count(id).unwrap(), 0);
        assert!(store.documents_needing_compaction(1).unwrap() == vec![doc_id(2)]);
        assert_same(&store.load_document(id).unwrap().unwrap(), &mut doc);

        // Nothing to fold: a no-op that reports the existing snapshot.
        let again = store.compact(id).unwrap();
        assert_eq!(
            (again.folded, again.snapshot_bytes),
            (0, stats.snapshot_bytes)
        );
    }

    #[test]
    fn changes_appended_after_compaction_still_load() {
        let (_dir, mut store) = temp_store();
        let id = doc_id(1);
        let mut doc = checklist(3);
        store.append_changes(id, &doc.get_changes(&[])).unwrap();
        store.compact(id).unwrap();

        let before = doc.get_heads();
        doc.put(ROOT, "note", "delivery late").unwrap();
        doc.commit();
        let newer = doc.get_changes(&before);
        assert_eq!(store.append_changes(id, &newer).unwrap(), 1);
        assert_same(&store.load_document(id).unwrap().unwrap(), &mut doc);

        // A change already folded into the snapshot, resent by a peer.
        let old = doc.get_changes(&[]);
        store.append_changes(id, &old[..1]).unwrap();
        assert_same(&store.load_document(id).unwrap().unwrap(), &mut doc);

        let stats = store.compact(id).unwrap();
        assert_eq!(stats.folded, 2);
        assert_eq!(store.change_row_count(id).unwrap(), 0);
        assert_same(&store.load_document(id).unwrap().unwrap(), &mut doc);
    }

    #[test]
    fn compaction_keeps_changes_still_waiting_for_dependencies() {
        let (_dir, mut store) = temp_store();
        let id = doc_id(1);
        let mut doc = checklist(3);
        let changes = doc.get_changes(&[]);
        let last = changes.len() - 1;
        // The last change arrives before the one it depends on.
        store.append_changes(id, &changes[..last - 1]).unwrap();
        store.append_changes(id, &changes[last..]).unwrap();

        let stats = store.compact(id).unwrap();
        assert_eq!((stats.folded, stats.kept), (last - 1, 1));
        assert_eq!(store.change_row_count(id).unwrap(), 1);

        // The missing link arrives; nothing was lost.
        store.append_changes(id, &changes[last - 1..last]).unwrap();
        assert_same(&store.load_document(id).unwrap().unwrap(), &mut doc);
        store.compact(id).unwrap();
        assert_same(&store.load_document(id).unwrap().unwrap(), &mut doc);
    }

    #[test]
    fn compacting_an_unknown_document_is_an_error() {
        let (_dir, mut store) = temp_store();
        let err = store.compact(doc_id(9)).unwrap_err();
        assert!(
            matches!(err, StorageError::UnknownDocument { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn corrupt_change_row_affects_only_its_document() {
        let (_dir, mut store) = temp_store();
        let (a, b) = (doc_id(0xA), doc_id(0xB));
        store
            .append_changes(a, &checklist(3).get_changes(&[]))
            .unwrap();
        let mut doc_b = checklist(2);
        store.append_changes(b, &doc_b.get_changes(&[])).unwrap();

        // Flip one byte in the middle of one of A's change rows, as a bad
        // sector or a stray write would.
        let (row, mut bytes): (i64, Vec<u8>) = store
            .conn
            .query_row(
                "SELECT id, bytes FROM changes WHERE doc_id = ?1 ORDER BY id LIMIT 1 OFFSET 1",
                [a.as_bytes()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xFF;
        store
            .conn
            .execute(
                "UPDATE changes SET bytes = ?2 WHERE id = ?1",
                params![row, bytes],
            )
            .unwrap();

        let err = store.load_document(a).unwrap_err();
        match &err {
            StorageError::CorruptDocument { doc, .. } => assert_eq!(*doc, a),
            other => panic!("expected CorruptDocument, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains(&a.to_string()), "{message}");
        assert!(
            message.contains(&store.path().display().to_string()),
            "{message}"
        );

        assert_same(&store.load_document(b).unwrap().unwrap(), &mut doc_b);
        let all = store.load_all_documents().unwrap();
        assert_eq!(all.len(), 2);
        for (id, result) in &all {
            assert_eq!(result.is_ok(), *id == b, "{id}: {result:?}");
        }
        // Compaction refuses too, and leaves the rows for a repair.
        let rows = store.change_row_count(a).unwrap();
        assert!(matches!(
            store.compact(a),
            Err(StorageError::CorruptDocument { .. })
        ));
        assert_eq!(store.change_row_count(a).unwrap(), rows);
    }

    #[test]
    fn change_row_under_the_wrong_hash_is_corrupt() {
        let (_dir, mut store) = temp_store();
        let id = doc_id(1);
        store
            .append_changes(id, &checklist(2).get_changes(&[]))
            .unwrap();
        store
            .conn
            .execute(
                "UPDATE changes SET hash = zeroblob(32) WHERE id = (SELECT min(id) FROM changes)",
                [],
            )
            .unwrap();
        assert!(matches!(
            store.load_document(id),
            Err(StorageError::CorruptDocument { doc, .. }) if doc == id
        ));
    }

    #[test]
    fn corrupt_snapshot_affects_only_its_document() {
        let (_dir, mut store) = temp_store();
        let (a, b) = (doc_id(0xA), doc_id(0xB));
        store
            .append_changes(a, &checklist(3).get_changes(&[]))
            .unwrap();
        store
            .append_changes(b, &checklist(2).get_changes(&[]))
            .unwrap();
        store.compact(a).unwrap();
        store
            .conn
            .execute(
                "UPDATE documents SET snapshot = x'00112233445566778899' WHERE doc_id = ?1",
                [a.as_bytes()],
            )
            .unwrap();
        let err = store.load_document(a).unwrap_err();
        assert!(
            matches!(&err, StorageError::CorruptDocument { doc, reason, .. } if *doc == a && reason.contains("snapshot")),
            "{err:?}"
        );
        assert!(store.load_document(b).unwrap().is_some());
    }

    #[test]
    fn delete_removes_document_changes_and_sync_state() {
        let (_dir, mut store) = temp_store();
        let (a, b) = (doc_id(1), doc_id(2));
        store
            .append_changes(a, &checklist(2).get_changes(&[]))
            .unwrap();
        store
            .append_changes(b, &checklist(2).get_changes(&[]))
            .unwrap();
        let hub = PeerId::from("hub");
        store.save_sync_state(&hub, a, b"state").unwrap();

        assert!(store.delete_document(a).unwrap());
        assert!(!store.delete_document(a).unwrap());
        assert!(!store.document_exists(a).unwrap());
        assert_eq!(store.change_row_count(a).unwrap(), 0);
        assert_eq!(store.load_sync_state(&hub, a).unwrap(), None);
        assert_eq!(store.list_documents().unwrap(), vec![b]);
    }

    /// SQLite's `max_page_count` stands in for a full disk: the write that
    /// hits it must fail cleanly, roll back whole, and leave the store usable.
    #[test]
    fn disk_full_rolls_back_the_write_and_the_store_still_reads() {
        let (_dir, mut store) = temp_store();
        let id = doc_id(1);
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "title", "receive weekly delivery").unwrap();
        doc.commit();
        store.append_changes(id, &doc.get_changes(&[])).unwrap();

        let pages: i64 = store
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .unwrap();
        store
            .conn
            .pragma_update(None, "max_page_count", pages + 16)
            .unwrap();

        // Batches of a small change then two ~6 KB incompressible ones until
        // the disk fills. The small one always fits, so the batch fails
        // after part of it was written: only the transaction can undo that.
        const BATCH: usize = 3;
        let mut rng = rand::thread_rng();
        let mut stored_heads = doc.get_heads();
        let err = (0_i64..)
            .find_map(|round| {
                let before = doc.get_heads();
                doc.put(ROOT, "round", round).unwrap();
                doc.commit();
                for _ in 1..BATCH {
                    let mut noise = [0_u8; 3000];
                    rng.fill_bytes(&mut noise);
                    let text: String = noise.iter().map(|b| format!("{b:02x}")).collect();
                    doc.put(ROOT, "note", text).unwrap();
                    doc.commit();
                }
                match store.append_changes(id, &doc.get_changes(&before)) {
                    Ok(n) => {
                        assert_eq!(n, BATCH);
                        stored_heads = doc.get_heads();
                        None
                    }
                    Err(e) => Some(e),
                }
            })
            .expect("the disk fills up");
        assert!(matches!(err, StorageError::DiskFull { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&store.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("disk full"), "{message}");
        assert!(
            store.conn.is_autocommit(),
            "the failed transaction is closed"
        );

        // All or nothing: no row of the failed batch was kept, every earlier one was.
        let loaded = store.load_document(id).unwrap().unwrap();
        assert_eq!(loaded.get_heads(), stored_heads);
        assert_eq!(store.change_row_count(id).unwrap() % BATCH, 1);

        // Once space is freed the same write succeeds.
        store
            .conn
            .pragma_update(None, "max_page_count", 1_000_000)
            .unwrap();
        store
            .append_changes(id, &doc.get_changes(&stored_heads))
            .unwrap();
        assert_same(&store.load_document(id).unwrap().unwrap(), &mut doc);
    }

    fn pragma(store: &SqliteDatabase, name: &str) -> i64 {
        store
            .conn
            .pragma_query_value(None, name, |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn compaction_gives_disk_space_back() {
        let (_dir, mut store) = temp_store();
        assert_eq!(pragma(&store, "auto_vacuum"), 2, "incremental");
        let id = DocumentId::from_random_bytes([7; 16]);
        let mut am = checklist(400);
        store
            .append_changes(id, &am.document().get_changes(&[]))
            .unwrap();
        let before = pragma(&store, "page_count");
        assert_eq!(store.compact_some(2, 1).unwrap(), 1);
        assert_eq!(pragma(&store, "freelist_count"), 0, "no free pages left");
        let after = pragma(&store, "page_count");
        assert!(after * 10 < before * 7, "{before} pages -> {after}");
        assert!(store.load_document(id).unwrap().is_some());
    }

    #[test]
    fn a_file_made_without_auto_vacuum_is_converted_once_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        let id = DocumentId::from_random_bytes([8; 16]);
        {
            let mut store = SqliteDatabase::open(&path, [1; 16]).unwrap();
            let mut am = checklist(3);
            store
                .append_changes(id, &am.document().get_changes(&[]))
                .unwrap();
            // As files were before this build.
            store
                .conn
                .execute_batch("PRAGMA auto_vacuum = NONE; VACUUM;")
                .unwrap();
            assert_eq!(pragma(&store, "auto_vacuum"), 0);
        }
        let store = SqliteDatabase::open(&path, [2; 16]).unwrap();
        assert_eq!(pragma(&store, "auto_vacuum"), 2);
        assert!(store.load_document(id).unwrap().is_some(), "data kept");
        assert_eq!(store.actor_id(), automerge::ActorId::from([1u8; 16]));
    }

    #[test]
    fn background_compaction_is_bounded_and_folds_busy_documents() {
        let (_dir, mut store) = temp_store();
        let mut ids = Vec::new();
        for n in 0..3u8 {
            let id = DocumentId::from_random_bytes([n + 10; 16]);
            let mut am = checklist(4);
            store
                .append_changes(id, &am.document().get_changes(&[]))
                .unwrap();
            ids.push(id);
        }
        let busy = store.documents_needing_compaction(2).unwrap().len();
        assert!(
            busy >= 2,
            "the fixture's documents have several change rows"
        );
        assert_eq!(store.compact_some(2, 1).unwrap(), 1, "at most one per step");
        assert_eq!(
            store.documents_needing_compaction(2).unwrap().len(),
            busy - 1
        );
        store.compact_some(2, 10).unwrap();
        assert!(store.documents_needing_compaction(2).unwrap().is_empty());
        for id in ids {
            assert!(store.load_document(id).unwrap().is_some());
        }
    }
}
