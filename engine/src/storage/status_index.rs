//! The hub's status index: one row per task with its derived status, one
//! row per status event. Rebuilt for a whole document in one transaction
//! whenever that document changes; the views are plain SQL over it.

use rusqlite::params;
use serde::Serialize;

use super::{StorageError, Store};
use crate::document::instance::InstanceView;
use crate::ids::{DocumentId, StoreId};

/// Counts for one list instance in the store grid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListStatusRow {
    pub store: String,
    pub doc: DocumentId,
    pub list: String,
    pub date: String,
    pub not_started: u32,
    pub in_progress: u32,
    pub completed: u32,
    pub past_due: u32,
    pub conflicts: u32,
}

/// What one worker did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerEventRow {
    pub store: String,
    pub worker: String,
    pub terminal: String,
    pub status: String,
    pub at_ms: i64,
    pub doc: DocumentId,
    pub task: String,
    pub title: String,
    pub note: Option<String>,
}

fn doc_of(bytes: Vec<u8>) -> DocumentId {
    let arr: [u8; 16] = bytes.try_into().unwrap_or([0; 16]);
    DocumentId(uuid::Uuid::from_bytes(arr))
}

impl Store {
    /// Replace the index rows of one instance with its current view.
    pub fn index_instance(&mut self, view: &InstanceView) -> Result<(), StorageError> {
        self.write(|tx| {
            let doc = view.id.as_bytes();
            tx.prepare_cached("DELETE FROM task_status WHERE doc_id = ?1")?.execute([doc])?;
            tx.prepare_cached("DELETE FROM status_events WHERE doc_id = ?1")?.execute([doc])?;
            let mut task_row = tx.prepare_cached(
                "INSERT INTO task_status (doc_id, task_id, store_id, list_name, list_date, title, due_ms, assignee, status, conflict)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            let mut event_row = tx.prepare_cached(
                "INSERT OR REPLACE INTO status_events (event_id, doc_id, task_id, store_id, worker, terminal, status, at_ms, note)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            let store = view.meta.store.as_str();
            let date = view.meta.date.format("%Y-%m-%d").to_string();
            for t in &view.tasks {
                task_row.execute(params![
                    doc,
                    t.spec.id.0.as_bytes(),
                    store,
                    view.meta.name,
                    date,
                    t.spec.title,
                    t.spec.due.map(|d| d.timestamp_millis()),
                    t.spec.assignee.as_ref().map(|a| a.encode()),
                    t.status.effective().as_str(),
                    t.status.is_conflicted() as i64,
                ])?;
                for e in &t.status.history {
                    event_row.execute(params![
                        e.id.0.as_bytes(),
                        doc,
                        e.task.0.as_bytes(),
                        store,
                        e.worker.as_str(),
                        e.terminal.as_str(),
                        e.status.as_str(),
                        e.at,
                        e.note,
                    ])?;
                }
            }
            Ok(())
        })
    }

    pub fn unindex_instance(&mut self, doc: DocumentId) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM task_status WHERE doc_id = ?1")?
                .execute([doc.as_bytes()])?;
            tx.prepare_cached("DELETE FROM status_events WHERE doc_id = ?1")?
                .execute([doc.as_bytes()])?;
            Ok(())
        })
    }

    /// Lists x stores with counts; `past_due` = not completed and due before `now_ms`.
    pub fn status_by_list(
        &self,
        store: Option<&StoreId>,
        now_ms: i64,
    ) -> Result<Vec<ListStatusRow>, StorageError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT store_id, doc_id, list_name, list_date,
                        SUM(status = 'not_started'), SUM(status = 'in_progress'), SUM(status = 'completed'),
                        SUM(status != 'completed' AND due_ms IS NOT NULL AND due_ms < ?2), SUM(conflict)
                 FROM task_status WHERE (?1 IS NULL OR store_id = ?1)
                 GROUP BY doc_id ORDER BY list_date DESC, store_id, list_name",
            )?;
            let rows = stmt.query_map(params![store.map(|s| s.as_str()), now_ms], |r| {
                Ok(ListStatusRow {
                    store: r.get(0)?,
                    doc: doc_of(r.get(1)?),
                    list: r.get(2)?,
                    date: r.get(3)?,
                    not_started: r.get(4)?,
                    in_progress: r.get(5)?,
                    completed: r.get(6)?,
                    past_due: r.get(7)?,
                    conflicts: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Every status event, newest first, optionally for one store or worker.
    pub fn status_by_worker(
        &self,
        store: Option<&StoreId>,
        worker: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WorkerEventRow>, StorageError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT e.store_id, e.worker, e.terminal, e.status, e.at_ms, e.doc_id, t.task_id, COALESCE(t.title, ''), e.note
                 FROM status_events e LEFT JOIN task_status t ON t.doc_id = e.doc_id AND t.task_id = e.task_id
                 WHERE (?1 IS NULL OR e.store_id = ?1) AND (?2 IS NULL OR e.worker = ?2)
                 ORDER BY e.at_ms DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![store.map(|s| s.as_str()), worker, limit], |r| {
                let task: Option<Vec<u8>> = r.get(6)?;
                Ok(WorkerEventRow {
                    store: r.get(0)?,
                    worker: r.get(1)?,
                    terminal: r.get(2)?,
                    status: r.get(3)?,
                    at_ms: r.get(4)?,
                    doc: doc_of(r.get(5)?),
                    task: task.map(|t| doc_of(t).0.to_string()).unwrap_or_default(),
                    title: r.get(7)?,
                    note: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }
}

/// Which instances a bulk delete takes (all given filters must match).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct PurgeFilter {
    /// Lists dated (store-local) strictly before this date.
    pub before: Option<chrono::NaiveDate>,
    pub store: Option<StoreId>,
    /// Lists with exactly this name.
    pub list: Option<String>,
    /// Only lists whose every task is completed.
    #[serde(default)]
    pub completed_only: bool,
}

impl Store {
    /// Instances matching `filter`, from the status index, with their store.
    pub fn purge_candidates(
        &self,
        filter: &PurgeFilter,
    ) -> Result<Vec<(DocumentId, StoreId)>, StorageError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT doc_id, store_id FROM task_status
                 WHERE (?1 IS NULL OR list_date < ?1) AND (?2 IS NULL OR store_id = ?2) AND (?3 IS NULL OR list_name = ?3)
                 GROUP BY doc_id
                 HAVING (?4 = 0 OR SUM(status != 'completed') = 0)
                 ORDER BY store_id, list_date",
            )?;
            let rows = stmt.query_map(
                params![
                    filter.before.map(|d| d.format("%Y-%m-%d").to_string()),
                    filter.store.as_ref().map(|s| s.as_str().to_owned()),
                    filter.list,
                    filter.completed_only as i64
                ],
                |r| Ok((doc_of(r.get(0)?), r.get::<_, String>(1)?)),
            )?;
            let mut out = Vec::new();
            for r in rows {
                let (doc, store) = r?;
                if let Ok(store) = store.parse() {
                    out.push((doc, store));
                }
            }
            Ok(out)
        })
    }

    /// Delete an instance and everything the hub knows of it, in one
    /// transaction: its rows, sync states, owner, vouched content, index.
    pub fn purge_document(&mut self, doc: DocumentId) -> Result<(), StorageError> {
        self.write(|tx| {
            for sql in [
                "DELETE FROM sync_states WHERE doc_id = ?1",
                "DELETE FROM documents WHERE doc_id = ?1",
                "DELETE FROM doc_owners WHERE doc_id = ?1",
                "DELETE FROM known_content WHERE doc_id = ?1",
                "DELETE FROM task_status WHERE doc_id = ?1",
                "DELETE FROM status_events WHERE doc_id = ?1",
            ] {
                tx.prepare_cached(sql)?.execute([doc.as_bytes()])?;
            }
            Ok(())
        })
    }
}
