//! Documents on PostgreSQL: a compacted snapshot plus change rows, as on
//! SQLite (see `engine::storage::sqlite` for the reasoning). Change rows
//! are keyed by (document, hash), so storing a change twice is a no-op,
//! and a batch of changes is one statement over arrays, not one round
//! trip per change.

use automerge::{Automerge, Change, ChangeHash};
use engine::ids::DocumentId;
use engine::storage::roles::*;
use engine::storage::{CompactionStats, DocumentLoad, StorageError, QUARANTINE_PREFIX};

use super::{document_id, errors, Failure, PgDatabase, Tx};

/// A document as read from the database, before it is handed out.
struct Stored {
    doc: Automerge,
    /// Row id and hash of every change row, in arrival order.
    rows: Vec<(i64, ChangeHash)>,
    snapshot_bytes: usize,
}

impl Documents for PgDatabase {
    fn append_changes(
        &mut self,
        doc: DocumentId,
        changes: &[Change],
    ) -> Result<usize, StorageError> {
        if changes.is_empty() {
            return Ok(0);
        }
        if let Some(new) = self.hold(&[doc], &[], |p| p.changes(doc, changes)) {
            return Ok(new);
        }
        self.write(async |tx| append_in(tx, doc, changes).await)
    }

    fn load_document(&self, doc: DocumentId) -> Result<Option<Automerge>, StorageError> {
        let stored = self.read(async |tx| read_document(tx, doc).await)?;
        Ok(stored.map(|s| s.doc.with_actor(self.actor.clone())))
    }

    fn load_all_documents(&self) -> Result<Vec<(DocumentId, DocumentLoad)>, StorageError> {
        self.read(async |tx| {
            let mut out = Vec::new();
            for doc in list_documents(tx).await? {
                let loaded = match read_document(tx, doc).await {
                    Ok(Some(stored)) => Ok(stored.doc.with_actor(self.actor.clone())),
                    Ok(None) => continue,
                    Err(Failure::Storage(e)) if e.damaged_document() == Some(doc) => {
                        tracing::warn!(error = %e, "skipping corrupt document");
                        Err(e)
                    }
                    Err(other) => return Err(other),
                };
                out.push((doc, loaded));
            }
            Ok(out)
        })
    }

    fn list_documents(&self) -> Result<Vec<DocumentId>, StorageError> {
        self.read(async |tx| list_documents(tx).await)
    }

    fn document_count(&self) -> Result<usize, StorageError> {
        self.read(async |tx| {
            let n: i64 = tx
                .query_one("SELECT count(*) FROM documents", &[])
                .await?
                .get(0);
            Ok(n as usize)
        })
    }

    fn document_exists(&self, doc: DocumentId) -> Result<bool, StorageError> {
        self.read(async |tx| {
            Ok(tx
                .query_opt(
                    "SELECT 1 FROM documents WHERE doc_id = $1",
                    &[&&doc.as_bytes()[..]],
                )
                .await?
                .is_some())
        })
    }

    fn delete_document(&mut self, doc: DocumentId) -> Result<bool, StorageError> {
        self.write(async |tx| {
            tx.touch_doc(doc).await?;
            let id = &doc.as_bytes()[..];
            tx.execute("DELETE FROM sync_states WHERE doc_id = $1", &[&id])
                .await?;
            let n = tx
                .execute("DELETE FROM documents WHERE doc_id = $1", &[&id])
                .await?;
            Ok(n > 0)
        })
    }

    fn replace_document(
        &mut self,
        doc: DocumentId,
        changes: &[Change],
    ) -> Result<(), StorageError> {
        self.write(async |tx| {
            tx.touch_doc(doc).await?;
            let id = &doc.as_bytes()[..];
            tx.execute("DELETE FROM sync_states WHERE doc_id = $1", &[&id])
                .await?;
            tx.execute("DELETE FROM documents WHERE doc_id = $1", &[&id])
                .await?;
            append_in(tx, doc, changes).await?;
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
        self.write(async |tx| {
            tx.touch_doc(doc).await?;
            let id = &doc.as_bytes()[..];
            tx.execute("DELETE FROM sync_states WHERE doc_id = $1", &[&id])
                .await?;
            tx.execute("DELETE FROM documents WHERE doc_id = $1", &[&id])
                .await?;
            append_in(tx, doc, changes).await?;
            tx.execute(
                "UPDATE replica_actors SET actor_id = $2 WHERE node_id = $1",
                &[&self.node, &&new_actor[..]],
            )
            .await?;
            for (key, value) in meta {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[key, value],
                )
                .await?;
            }
            Ok(())
        })?;
        self.actor = automerge::ActorId::from(new_actor);
        Ok(())
    }

    fn quarantine_document(&mut self, doc: DocumentId) -> Result<usize, StorageError> {
        self.write(async |tx| {
            tx.touch_doc(doc).await?;
            let id = &doc.as_bytes()[..];
            let mut blobs: Vec<Vec<u8>> = Vec::new();
            if let Some(row) = tx
                .query_opt("SELECT snapshot FROM documents WHERE doc_id = $1", &[&id])
                .await?
            {
                if let Some(snapshot) = row.get::<_, Option<Vec<u8>>>(0) {
                    blobs.push(snapshot);
                }
            }
            for row in tx
                .query(
                    "SELECT bytes FROM changes WHERE doc_id = $1 ORDER BY id",
                    &[&id],
                )
                .await?
            {
                blobs.push(row.get(0));
            }
            for (n, b) in blobs.iter().enumerate() {
                let key = format!("{QUARANTINE_PREFIX}{doc}/{n}");
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&key, b],
                )
                .await?;
            }
            tx.execute("DELETE FROM sync_states WHERE doc_id = $1", &[&id])
                .await?;
            tx.execute("DELETE FROM documents WHERE doc_id = $1", &[&id])
                .await?;
            Ok(blobs.len())
        })
    }

    fn quarantined(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.read(async |tx| {
            let end = format!("{QUARANTINE_PREFIX}\u{10ffff}");
            let rows = tx
                .query(
                    "SELECT key, value FROM meta WHERE key >= $1 AND key < $2 ORDER BY key",
                    &[&QUARANTINE_PREFIX, &end],
                )
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn change_row_count(&self, doc: DocumentId) -> Result<usize, StorageError> {
        self.read(async |tx| {
            let n: i64 = tx
                .query_one(
                    "SELECT count(*) FROM changes WHERE doc_id = $1",
                    &[&&doc.as_bytes()[..]],
                )
                .await?
                .get(0);
            Ok(n as usize)
        })
    }

    fn documents_needing_compaction(
        &self,
        threshold_changes: usize,
    ) -> Result<Vec<DocumentId>, StorageError> {
        let threshold = i64::try_from(threshold_changes).unwrap_or(i64::MAX);
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT doc_id FROM changes GROUP BY doc_id HAVING count(*) >= $1 ORDER BY doc_id",
                    &[&threshold],
                )
                .await?;
            rows.into_iter()
                .map(|r| document_id(tx.location(), r.get(0)))
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
        Ok(done)
    }

    fn compact(&mut self, doc: DocumentId) -> Result<CompactionStats, StorageError> {
        let stats = self.write(async |tx| {
            tx.touch_doc(doc).await?;
            // Lock the document row: no other node's write to this document
            // lands between the read and the delete below.
            tx.query_opt(
                "SELECT 1 FROM documents WHERE doc_id = $1 FOR UPDATE",
                &[&&doc.as_bytes()[..]],
            )
            .await?;
            let stored = read_document(tx, doc)
                .await?
                .ok_or_else(|| errors::unknown_document(tx.location(), doc))?;
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
            tx.execute(
                "UPDATE documents SET snapshot = $2 WHERE doc_id = $1",
                &[&&doc.as_bytes()[..], &snapshot],
            )
            .await?;
            let ids: Vec<i64> = folded.iter().map(|(id, _)| *id).collect();
            tx.execute("DELETE FROM changes WHERE id = ANY($1)", &[&ids])
                .await?;
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

async fn list_documents(tx: &Tx<'_>) -> Result<Vec<DocumentId>, Failure> {
    let rows = tx
        .query("SELECT doc_id FROM documents ORDER BY doc_id", &[])
        .await?;
    rows.into_iter()
        .map(|r| document_id(tx.location(), r.get(0)))
        .collect()
}

/// Read and decode one document. Anything wrong with the stored bytes is
/// damage to this document alone.
async fn read_document(tx: &Tx<'_>, doc: DocumentId) -> Result<Option<Stored>, Failure> {
    let corrupt =
        |reason: String| Failure::from(errors::corrupt_document(tx.location(), doc, reason));
    let id = &doc.as_bytes()[..];
    let Some(row) = tx
        .query_opt("SELECT snapshot FROM documents WHERE doc_id = $1", &[&id])
        .await?
    else {
        return Ok(None);
    };
    let snapshot: Option<Vec<u8>> = row.get(0);
    let snapshot_bytes = snapshot.as_ref().map_or(0, Vec::len);
    let mut am = match snapshot {
        Some(bytes) => {
            Automerge::load(&bytes).map_err(|e| corrupt(format!("snapshot does not load: {e}")))?
        }
        None => Automerge::new(),
    };
    let rows = tx
        .query(
            "SELECT id, hash, bytes FROM changes WHERE doc_id = $1 ORDER BY id",
            &[&id],
        )
        .await?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut changes = Vec::with_capacity(rows.len());
    for row in rows {
        let (row_id, hash, bytes): (i64, Vec<u8>, Vec<u8>) = (row.get(0), row.get(1), row.get(2));
        let change = Change::from_bytes(bytes)
            .map_err(|e| corrupt(format!("change row {row_id} does not decode: {e}")))?;
        if change.hash().0[..] != hash[..] {
            return Err(corrupt(format!(
                "change row {row_id} holds change {} but is stored under another hash",
                change.hash()
            )));
        }
        ids.push((row_id, change.hash()));
        changes.push(change);
    }
    am.apply_changes(changes)
        .map_err(|e| corrupt(format!("stored changes do not apply: {e}")))?;
    Ok(Some(Stored {
        doc: am,
        rows: ids,
        snapshot_bytes,
    }))
}

/// Insert `changes` for `doc` inside an open unit of work; returns how
/// many were new. One statement for all of them.
pub(super) async fn append_in(
    tx: &Tx<'_>,
    doc: DocumentId,
    changes: &[Change],
) -> Result<usize, Failure> {
    tx.touch_doc(doc).await?;
    let id = &doc.as_bytes()[..];
    tx.execute(
        "INSERT INTO documents (doc_id) VALUES ($1) ON CONFLICT (doc_id) DO NOTHING",
        &[&id],
    )
    .await?;
    if changes.is_empty() {
        return Ok(0);
    }
    let hashes: Vec<Vec<u8>> = changes.iter().map(|c| c.hash().0.to_vec()).collect();
    let bytes: Vec<&[u8]> = changes.iter().map(|c| c.raw_bytes()).collect();
    // ON CONFLICT names the dedupe key, so any other constraint failure
    // still errors instead of being silently ignored. WITH ORDINALITY keeps
    // arrival order for the row ids.
    let n = tx
        .execute(
            "INSERT INTO changes (doc_id, hash, bytes)
             SELECT $1, h, b FROM unnest($2::bytea[], $3::bytea[]) WITH ORDINALITY AS c(h, b, n)
             ORDER BY n
             ON CONFLICT (doc_id, hash) DO NOTHING",
            &[&id, &hashes, &bytes],
        )
        .await?;
    Ok(n as usize)
}
