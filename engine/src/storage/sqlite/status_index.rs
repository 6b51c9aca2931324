//! The hub's status index: one row per task with its derived status, one
//! row per status event. Brought up to date for a whole document in one
//! transaction whenever that document changes, writing only the rows that
//! differ from what it holds (kept by the caller from the last update, or
//! read back); the views are plain SQL over it.

use rusqlite::params;
use serde::Serialize;

use super::{SqliteDatabase, StorageError};
use crate::compliance::ReportTask;
use crate::document::instance::InstanceView;
use crate::ids::{DocumentId, EventId, StoreId, TaskId};
use crate::storage::index_rows::{self, IndexUpdate, IndexedRows};
use crate::storage::roles::*;

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

/// One list's tasks in one store over a range of days (the fleet roll-up,
/// `engine::fleet::OnTime`): every instance of the list named `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreListRow {
    pub store: String,
    pub list: String,
    /// Instances (days) of the list.
    pub instances: u32,
    pub tasks: u32,
    pub completed: u32,
    /// Completed no later than due (or with no due time): the latest
    /// `completed` event's time, as the terminal recorded it, <= due.
    pub on_time: u32,
    pub past_due: u32,
    pub conflicts: u32,
}

/// How many tasks of one list are past due in one store, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PastDueCount {
    pub store: String,
    pub list: String,
    pub tasks: u32,
    pub oldest_due_ms: i64,
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

/// An open task whose due time has passed (the dashboard's "past due").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PastDueRow {
    pub store: String,
    pub doc: DocumentId,
    pub list: String,
    pub date: String,
    pub task: String,
    pub title: String,
    pub due_ms: i64,
    /// `worker:<id>` or `group:<id>`.
    pub assignee: Option<String>,
    /// `not_started` or `in_progress` (a reopened task counts as not started).
    pub status: String,
    pub conflict: bool,
}

fn doc_of(bytes: Vec<u8>) -> DocumentId {
    let arr: [u8; 16] = bytes.try_into().unwrap_or([0; 16]);
    DocumentId(uuid::Uuid::from_bytes(arr))
}

/// A 16-byte id column; None for a row that does not hold one (skipped).
fn id16(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<[u8; 16]>> {
    let bytes: Vec<u8> = r.get(i)?;
    Ok(<[u8; 16]>::try_from(bytes.as_slice()).ok())
}

/// What the index holds for `doc`, read back from the tables: the
/// starting point of a write that has no [`IndexedRows`] from an earlier
/// one (after a restart, an eviction). Reading a list's rows is much
/// cheaper than deleting and inserting them all again with their indexes.
fn rows_in_table(tx: &rusqlite::Connection, doc: &[u8]) -> rusqlite::Result<IndexedRows> {
    let mut rows = IndexedRows::default();
    let mut tasks = tx.prepare_cached(
        "SELECT task_id, store_id, list_name, list_date, title, due_ms, assignee, status, conflict
         FROM task_status WHERE doc_id = ?1",
    )?;
    let mut found = tasks.query([doc])?;
    while let Some(r) = found.next()? {
        let Some(id) = id16(r, 0)? else { continue };
        let (store, list, date, title): (String, String, String, String) =
            (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
        let assignee: Option<String> = r.get(6)?;
        let status: String = r.get(7)?;
        rows.note_task_row(
            TaskId(uuid::Uuid::from_bytes(id)),
            &store,
            &list,
            &date,
            &title,
            r.get(5)?,
            assignee.as_deref(),
            &status,
            r.get::<_, i64>(8)? != 0,
        );
    }
    let mut events = tx.prepare_cached(
        "SELECT event_id, task_id, store_id, worker, terminal, status, at_ms, note
         FROM status_events WHERE doc_id = ?1",
    )?;
    let mut found = events.query([doc])?;
    while let Some(r) = found.next()? {
        let Some(id) = id16(r, 0)? else { continue };
        let task: Vec<u8> = r.get(1)?;
        let (store, worker, terminal, status): (String, String, String, String) =
            (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
        let note: Option<String> = r.get(7)?;
        rows.note_event_row(
            EventId(uuid::Uuid::from_bytes(id)),
            &task,
            &store,
            &worker,
            &terminal,
            &status,
            r.get(6)?,
            note.as_deref(),
        );
    }
    Ok(rows)
}

impl StatusIndex for SqliteDatabase {
    fn index_instance(&mut self, view: &InstanceView) -> Result<(), StorageError> {
        self.update_index(view, None).map(|_| ())
    }

    fn update_index(
        &mut self,
        view: &InstanceView,
        last: Option<&IndexedRows>,
    ) -> Result<IndexUpdate, StorageError> {
        self.write(|tx| {
            let doc = view.id.as_bytes();
            let in_table;
            let last = match last {
                Some(last) => last,
                None => {
                    in_table = rows_in_table(tx, doc)?;
                    &in_table
                }
            };
            let plan = index_rows::plan(view, last);
            let mut put_task = tx.prepare_cached(
                "INSERT INTO task_status (doc_id, task_id, store_id, list_name, list_date, title, due_ms, assignee, status, conflict)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (doc_id, task_id) DO UPDATE SET
                   store_id = excluded.store_id, list_name = excluded.list_name, list_date = excluded.list_date,
                   title = excluded.title, due_ms = excluded.due_ms, assignee = excluded.assignee,
                   status = excluded.status, conflict = excluded.conflict",
            )?;
            for row in &plan.put_tasks {
                put_task.execute(params![
                    doc,
                    row.task.0.as_bytes(),
                    row.store,
                    row.list,
                    row.date,
                    row.title,
                    row.due_ms,
                    row.assignee,
                    row.status,
                    row.conflict as i64,
                ])?;
            }
            let mut put_event = tx.prepare_cached(
                "INSERT INTO status_events (event_id, doc_id, task_id, store_id, worker, terminal, status, at_ms, note)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (doc_id, event_id) DO UPDATE SET
                   task_id = excluded.task_id, store_id = excluded.store_id, worker = excluded.worker,
                   terminal = excluded.terminal, status = excluded.status, at_ms = excluded.at_ms,
                   note = excluded.note",
            )?;
            for e in &plan.put_events {
                put_event.execute(params![
                    e.id.0.as_bytes(),
                    doc,
                    e.task.0.as_bytes(),
                    e.store,
                    e.worker,
                    e.terminal,
                    e.status,
                    e.at_ms,
                    e.note,
                ])?;
            }
            let mut drop_task =
                tx.prepare_cached("DELETE FROM task_status WHERE doc_id = ?1 AND task_id = ?2")?;
            for task in &plan.drop_tasks {
                drop_task.execute(params![doc, task.0.as_bytes()])?;
            }
            let mut drop_event = tx
                .prepare_cached("DELETE FROM status_events WHERE event_id = ?1 AND doc_id = ?2")?;
            for event in &plan.drop_events {
                drop_event.execute(params![event.0.as_bytes(), doc])?;
            }
            let written = plan.rows;
            tx.prepare_cached("DELETE FROM index_due WHERE doc_id = ?1")?
                .execute([doc])?;
            Ok(IndexUpdate { rows: written })
        })
    }

    fn unindex_instance(&mut self, doc: DocumentId) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM index_due WHERE doc_id = ?1")?
                .execute([doc.as_bytes()])?;
            tx.prepare_cached("DELETE FROM task_status WHERE doc_id = ?1")?
                .execute([doc.as_bytes()])?;
            tx.prepare_cached("DELETE FROM status_events WHERE doc_id = ?1")?
                .execute([doc.as_bytes()])?;
            Ok(())
        })
    }

    fn purge_document(&mut self, doc: DocumentId) -> Result<(), StorageError> {
        self.write(|tx| {
            for sql in [
                "DELETE FROM sync_states WHERE doc_id = ?1",
                "DELETE FROM documents WHERE doc_id = ?1",
                "DELETE FROM doc_owners WHERE doc_id = ?1",
                "DELETE FROM known_content_sets WHERE doc_id = ?1",
                "DELETE FROM task_status WHERE doc_id = ?1",
                "DELETE FROM status_events WHERE doc_id = ?1",
                "DELETE FROM index_due WHERE doc_id = ?1",
            ] {
                tx.prepare_cached(sql)?.execute([doc.as_bytes()])?;
            }
            Ok(())
        })?;
        let cache = self.cache.get_mut();
        cache.doc_owners.remove(&doc);
        cache.known_content.remove(&doc);
        Ok(())
    }

    fn mark_index_due(&mut self, docs: &[DocumentId]) -> Result<(), StorageError> {
        // Called at every batch's commit, usually with nothing to mark.
        if docs.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut mark =
                tx.prepare_cached("INSERT OR IGNORE INTO index_due (doc_id) VALUES (?1)")?;
            for d in docs {
                mark.execute([d.as_bytes()])?;
            }
            Ok(())
        })
    }

    fn index_due(&self) -> Result<Vec<DocumentId>, StorageError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT doc_id FROM index_due")?;
            let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
            Ok(rows.map(|r| r.map(doc_of)).collect::<Result<Vec<_>, _>>()?)
        })
    }
}

/// The compliance report's facts (`StatusQueries::report_tasks_between`):
/// each task in the range and, if it is completed now,
/// its newest `completed` event (the one that decided its status; see
/// `crate::compliance`). `?1`, `?2`: the first and last list date.
const REPORT_TASKS_SQL: &str = "
    SELECT t.store_id, t.list_name, t.list_date, t.due_ms, e.at_ms, e.worker, t.assignee
      FROM task_status t
      LEFT JOIN status_events e
        ON t.status = 'completed' AND e.doc_id = t.doc_id
       AND e.event_id = (SELECT d.event_id FROM status_events d
                          WHERE d.doc_id = t.doc_id AND d.task_id = t.task_id
                            AND d.status = 'completed'
                          ORDER BY d.at_ms DESC, d.event_id DESC LIMIT 1)
     WHERE t.list_date >= ?1 AND t.list_date <= ?2
     ORDER BY t.store_id, t.list_date, t.list_name, t.doc_id, t.task_id";

impl StatusQueries for SqliteDatabase {
    fn status_by_list(
        &self,
        store: Option<&StoreId>,
        now_ms: i64,
    ) -> Result<Vec<ListStatusRow>, StorageError> {
        self.status_by_list_between(store, None, None, now_ms)
    }

    fn status_by_list_between(
        &self,
        store: Option<&StoreId>,
        from: Option<chrono::NaiveDate>,
        to: Option<chrono::NaiveDate>,
        now_ms: i64,
    ) -> Result<Vec<ListStatusRow>, StorageError> {
        let day = |d: Option<chrono::NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string());
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                concat!(
                    "SELECT store_id, doc_id, list_name, list_date,
                        SUM(status = 'not_started'), SUM(status = 'in_progress'), SUM(status = 'completed'),
                        SUM(status != 'completed' AND ",
                    crate::due_has_passed_sql!(),
                    "), SUM(conflict)
                 FROM task_status
                 WHERE (?1 IS NULL OR store_id = ?1)
                   AND (?3 IS NULL OR list_date >= ?3) AND (?4 IS NULL OR list_date <= ?4)
                 GROUP BY doc_id ORDER BY list_date DESC, store_id, list_name"
                ),
            )?;
            let params = params![store.map(|s| s.as_str()), now_ms, day(from), day(to)];
            let rows = stmt.query_map(params, |r| {
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

    fn status_by_store_list(
        &self,
        from: Option<chrono::NaiveDate>,
        to: Option<chrono::NaiveDate>,
        now_ms: i64,
    ) -> Result<Vec<StoreListRow>, StorageError> {
        let day = |d: Option<chrono::NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string());
        self.read(|c| {
            // The completion time is read only for completed tasks with a
            // due time, through `status_events_by_doc`.
            let mut stmt = c.prepare_cached(concat!(
                "SELECT store_id, list_name, COUNT(DISTINCT doc_id), COUNT(*),
                        SUM(status = 'completed'),
                        SUM(status = 'completed' AND (due_ms IS NULL OR COALESCE(
                            (SELECT MAX(e.at_ms) FROM status_events e
                              WHERE e.doc_id = t.doc_id AND e.task_id = t.task_id
                                AND e.status = 'completed') <= due_ms, 0))),
                        SUM(status != 'completed' AND ",
                crate::due_has_passed_sql!(),
                "), SUM(conflict)
                 FROM task_status t
                 WHERE (?1 IS NULL OR list_date >= ?1) AND (?3 IS NULL OR list_date <= ?3)
                 GROUP BY store_id, list_name ORDER BY store_id, list_name"
            ))?;
            let rows = stmt.query_map(params![day(from), now_ms, day(to)], |r| {
                Ok(StoreListRow {
                    store: r.get(0)?,
                    list: r.get(1)?,
                    instances: r.get(2)?,
                    tasks: r.get(3)?,
                    completed: r.get(4)?,
                    on_time: r.get(5)?,
                    past_due: r.get(6)?,
                    conflicts: r.get(7)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn past_due_counts(&self, now_ms: i64) -> Result<Vec<PastDueCount>, StorageError> {
        self.read(|c| {
            // As `past_due`: through the partial index of open tasks by due.
            let mut stmt = c.prepare_cached(concat!(
                "SELECT store_id, list_name, COUNT(*), MIN(due_ms)
                 FROM task_status
                 WHERE status != 'completed' AND due_ms IS NOT NULL AND ",
                crate::due_has_passed_sql!(),
                " GROUP BY store_id, list_name ORDER BY store_id, list_name"
            ))?;
            // The engine's rule names now ?2; ?1 is bound and unused.
            let rows = stmt.query_map(params![Option::<i64>::None, now_ms], |r| {
                Ok(PastDueCount {
                    store: r.get(0)?,
                    list: r.get(1)?,
                    tasks: r.get(2)?,
                    oldest_due_ms: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn past_due(
        &self,
        store: Option<&StoreId>,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<PastDueRow>, StorageError> {
        self.read(|c| {
            // The first two conditions are the partial index's own, so
            // SQLite can walk `task_status_open_by_due` instead of the table.
            let mut stmt = c.prepare_cached(
                concat!(
                    "SELECT store_id, doc_id, list_name, list_date, task_id, title, due_ms, assignee, status, conflict
                 FROM task_status
                 WHERE status != 'completed' AND due_ms IS NOT NULL
                   AND ",
                    crate::due_has_passed_sql!(),
                    " AND (?1 IS NULL OR store_id = ?1)
                 ORDER BY due_ms, store_id, list_name, title LIMIT ?3"
                ),
            )?;
            let rows = stmt.query_map(params![store.map(|s| s.as_str()), now_ms, limit], |r| {
                Ok(PastDueRow {
                    store: r.get(0)?,
                    doc: doc_of(r.get(1)?),
                    list: r.get(2)?,
                    date: r.get(3)?,
                    task: doc_of(r.get(4)?).0.to_string(),
                    title: r.get(5)?,
                    due_ms: r.get(6)?,
                    assignee: r.get(7)?,
                    status: r.get(8)?,
                    conflict: r.get::<_, i64>(9)? != 0,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn status_by_worker(
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

    fn report_tasks_between(
        &self,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<ReportTask>, StorageError> {
        let day = |d: chrono::NaiveDate| d.format("%Y-%m-%d").to_string();
        self.read(|c| {
            let mut stmt = c.prepare_cached(REPORT_TASKS_SQL)?;
            let rows = stmt.query_map(params![day(from), day(to)], |r| {
                Ok(ReportTask {
                    store: r.get(0)?,
                    list: r.get(1)?,
                    date: r.get(2)?,
                    due_ms: r.get(3)?,
                    completed_ms: r.get(4)?,
                    completed_by: r.get(5)?,
                    assignee: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn purge_candidates(
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
}

#[cfg(test)]
impl SqliteDatabase {
    /// Every row of the two index tables, in key order: (task rows, event
    /// rows). Tests compare an incrementally kept index with a full rewrite.
    pub(crate) fn index_contents(
        &self,
    ) -> (
        Vec<Vec<rusqlite::types::Value>>,
        Vec<Vec<rusqlite::types::Value>>,
    ) {
        let table = |c: &rusqlite::Connection,
                     sql: &str|
         -> rusqlite::Result<Vec<Vec<rusqlite::types::Value>>> {
            let mut stmt = c.prepare(sql)?;
            let n = stmt.column_count();
            let rows = stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())?;
            rows.collect()
        };
        self.read(|c| {
            Ok((
                table(c, "SELECT * FROM task_status ORDER BY doc_id, task_id")?,
                table(c, "SELECT * FROM status_events ORDER BY event_id")?,
            ))
        })
        .expect("the index tables are readable")
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

#[cfg(test)]
#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};
    use uuid::Uuid;

    use proptest::prelude::*;

    use super::*;
    use crate::document::instance::TaskView;
    use crate::ids::{EventId, TaskId};
    use crate::model::{CreatedBy, ListMeta, Priority, Status, StatusEvent, TaskSpec};

    const NOW: i64 = 1_790_000_000_000;

    fn task(n: u128, title: &str, due: Option<i64>, events: &[(u128, Status)]) -> TaskView {
        let id = TaskId(Uuid::from_u128(n));
        let events = events
            .iter()
            .enumerate()
            .map(|(i, (e, status))| StatusEvent {
                id: EventId(Uuid::from_u128(*e)),
                task: id,
                status: *status,
                worker: "w1".parse().unwrap(),
                terminal: "pos-1".parse().unwrap(),
                at: NOW - 1000 + i as i64,
                prev: Vec::new(),
                note: None,
            });
        TaskView {
            spec: TaskSpec {
                id,
                title: title.into(),
                description: String::new(),
                start: None,
                due: due.map(|ms| Utc.timestamp_millis_opt(ms).unwrap()),
                priority: Priority::Normal,
                link: None,
                assignee: Some("worker:w-7".parse().unwrap()),
                created_by: CreatedBy::Hq,
                position: n as i64,
            },
            assignee_conflict: Vec::new(),
            status: crate::status::of_task(&crate::status::derive(events), id),
        }
    }

    fn view(doc: u128, store: &str, date: &str, tasks: Vec<TaskView>) -> InstanceView {
        InstanceView {
            id: DocumentId(Uuid::from_u128(doc)),
            meta: ListMeta {
                store: store.parse().unwrap(),
                name: "Closing".into(),
                template: None,
                date: NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap(),
                time_zone: "UTC".into(),
                created_by: CreatedBy::Hq,
            },
            tasks,
            malformed_events: 0,
        }
    }

    /// The grid's conflict count is the terminal's: a task whose status
    /// is in conflict, one assigned twice at once, and one with both count
    /// once each (issue #24: the grid said 1 where the POS said 2).
    #[test]
    fn the_grid_counts_assignee_conflicts_as_the_terminal_does() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteDatabase::open(dir.path().join("hub.db"), [1; 16]).unwrap();
        let twice = vec![
            Some("worker:w-1".parse().unwrap()),
            Some("worker:m-1".parse().unwrap()),
        ];
        let disputed = &[(10, Status::InProgress), (11, Status::Completed)];
        let mut tasks = vec![
            task(1, "Statuses disagree", None, disputed),
            task(2, "Taken twice", None, &[]),
            task(
                3,
                "Both",
                None,
                &[(12, Status::InProgress), (13, Status::Completed)],
            ),
            task(4, "Quiet", None, &[]),
        ];
        tasks[1].assignee_conflict = twice.clone();
        tasks[2].assignee_conflict = twice;
        let list = view(1, "s1", "2026-11-26", tasks);
        let decide: Vec<bool> = list.tasks.iter().map(|t| t.has_conflict()).collect();
        assert_eq!(decide, [true, true, true, false]);
        s.index_instance(&list).unwrap();
        assert_eq!(s.status_by_list(None, NOW).unwrap()[0].conflicts, 3);
        // Decided, the count goes down with the next index update.
        let mut list = list;
        list.tasks[1].assignee_conflict.clear();
        s.index_instance(&list).unwrap();
        assert_eq!(s.status_by_list(None, NOW).unwrap()[0].conflicts, 2);
    }

    /// The dashboard's past-due list and the grid's count follow
    /// `engine::due`: a task due at `now` is not late yet, one due a
    /// millisecond before is.
    #[test]
    fn past_due_at_the_boundary_is_the_engines_rule() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteDatabase::open(dir.path().join("hub.db"), [1; 16]).unwrap();
        s.index_instance(&view(
            1,
            "s1",
            "2026-11-26",
            vec![
                task(1, "Due now", Some(NOW), &[]),
                task(2, "Due a moment ago", Some(NOW - 1), &[]),
            ],
        ))
        .unwrap();
        let late: Vec<String> = s
            .past_due(None, NOW, 100)
            .unwrap()
            .into_iter()
            .map(|r| r.title)
            .collect();
        assert_eq!(late, vec!["Due a moment ago".to_owned()]);
        assert!(crate::due::has_passed_ms(NOW - 1, NOW) && !crate::due::has_passed_ms(NOW, NOW));
        assert_eq!(s.status_by_list(None, NOW).unwrap()[0].past_due, 1);
    }

    #[test]
    fn past_due_is_open_tasks_due_before_now_most_overdue_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteDatabase::open(dir.path().join("hub.db"), [1; 16]).unwrap();
        s.index_instance(&view(
            1,
            "s1",
            "2026-11-26",
            vec![
                task(1, "Count the till", Some(NOW - 60_000), &[]),
                task(
                    2,
                    "Lock up",
                    Some(NOW - 120_000),
                    &[(10, Status::InProgress)],
                ),
                task(
                    3,
                    "Done already",
                    Some(NOW - 60_000),
                    &[(11, Status::Completed)],
                ),
                task(4, "Later", Some(NOW + 60_000), &[]),
                task(5, "No due time", None, &[]),
            ],
        ))
        .unwrap();
        s.index_instance(&view(
            2,
            "s2",
            "2026-11-27",
            vec![task(
                6,
                "Reopened",
                Some(NOW - 1),
                &[(12, Status::Reopened)],
            )],
        ))
        .unwrap();
        let rows = s.past_due(None, NOW, 100).unwrap();
        let got: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|r| (r.store.as_str(), r.title.as_str(), r.status.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("s1", "Lock up", "in_progress"),
                ("s1", "Count the till", "not_started"),
                ("s2", "Reopened", "not_started"),
            ]
        );
        assert_eq!(rows[0].list, "Closing");
        assert_eq!(rows[0].date, "2026-11-26");
        assert_eq!(rows[0].due_ms, NOW - 120_000);
        assert_eq!(rows[0].assignee.as_deref(), Some("worker:w-7"));
        assert_eq!(rows[0].task, Uuid::from_u128(2).to_string());
        let s2: StoreId = "s2".parse().unwrap();
        assert_eq!(s.past_due(Some(&s2), NOW, 100).unwrap().len(), 1);
        assert_eq!(s.past_due(None, NOW, 1).unwrap().len(), 1, "limit");

        let day = |d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok();
        let on = |from, to| {
            s.status_by_list_between(None, day(from), day(to), NOW)
                .unwrap()
                .into_iter()
                .map(|r| r.store)
                .collect::<Vec<_>>()
        };
        assert_eq!(on("2026-11-27", "2026-11-27"), vec!["s2"]);
        assert_eq!(on("2026-11-26", "2026-11-26"), vec!["s1"]);
        assert_eq!(on("2026-11-26", "2026-11-27"), vec!["s2", "s1"]);
        assert!(on("2026-11-28", "2026-12-01").is_empty());
    }

    #[test]
    fn past_due_walks_the_partial_index() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteDatabase::open(dir.path().join("hub.db"), [1; 16]).unwrap();
        let plan: Vec<String> = s
            .read(|c| {
                let mut stmt = c.prepare(
                    "EXPLAIN QUERY PLAN SELECT task_id FROM task_status
                     WHERE status != 'completed' AND due_ms IS NOT NULL
                       AND due_ms < 1 AND (NULL IS NULL OR store_id = NULL)
                     ORDER BY due_ms",
                )?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(3))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        assert!(
            plan.iter().any(|p| p.contains("task_status_open_by_due")),
            "{plan:?}"
        );
    }

    /// Two stores fed the same views: one kept incrementally as the hub
    /// does (its `IndexedRows` per list, dropped when a write takes rows
    /// over), one rewritten in full every time.
    struct Pair {
        _dir: tempfile::TempDir,
        incremental: SqliteDatabase,
        full: SqliteDatabase,
        kept: std::collections::HashMap<DocumentId, IndexedRows>,
    }

    impl Pair {
        fn new() -> Pair {
            let dir = tempfile::tempdir().unwrap();
            let incremental = SqliteDatabase::open(dir.path().join("inc.db"), [1; 16]).unwrap();
            let full = SqliteDatabase::open(dir.path().join("full.db"), [1; 16]).unwrap();
            Pair {
                _dir: dir,
                incremental,
                full,
                kept: Default::default(),
            }
        }

        /// Index `view` both ways; the rows the incremental write changed.
        fn index(&mut self, view: &InstanceView) -> u64 {
            let before = self.incremental.conn.total_changes();
            let update = self
                .incremental
                .update_index(view, self.kept.get(&view.id))
                .unwrap();
            let written = self.incremental.conn.total_changes() - before;
            self.kept.insert(view.id, update.rows);
            self.full.index_instance(view).unwrap();
            assert_eq!(
                self.incremental.index_contents(),
                self.full.index_contents(),
                "incremental and full index differ after {view:#?}"
            );
            written
        }

        /// The list is deleted (as `purge_document` and `forget_document` do).
        fn purge(&mut self, doc: DocumentId) {
            self.kept.remove(&doc);
            self.incremental.unindex_instance(doc).unwrap();
            self.full.unindex_instance(doc).unwrap();
            assert_eq!(
                self.incremental.index_contents(),
                self.full.index_contents()
            );
        }
    }

    fn status_update(n: u128, task: u128, status: Status) -> crate::model::StatusUpdate {
        crate::model::StatusUpdate {
            id: EventId(Uuid::from_u128(n)),
            task: TaskId(Uuid::from_u128(task)),
            status,
            worker: "w1".parse().unwrap(),
            terminal: "pos-1".parse().unwrap(),
            note: n.is_multiple_of(2).then(|| format!("note {n}")),
        }
    }

    #[test]
    fn an_incremental_update_leaves_the_rows_a_full_rewrite_leaves() {
        use crate::document::instance::{self, read};
        use crate::document::instance_tests::{content, task_spec};

        let mut pair = Pair::new();
        let mut doc = instance::create(&content(4), automerge::ActorId::from([7; 16])).unwrap();
        let mut at = NOW;
        let mut tick = || {
            at += 1000;
            at
        };
        assert_eq!(pair.index(&read(&doc).unwrap()), 4, "first: every row");
        assert_eq!(pair.index(&read(&doc).unwrap()), 0, "nothing changed");
        // New events: the task's row and the event's, nothing else.
        instance::record_status(&mut doc, &status_update(1, 1, Status::InProgress), tick())
            .unwrap();
        assert_eq!(pair.index(&read(&doc).unwrap()), 2);
        instance::record_status(&mut doc, &status_update(2, 1, Status::Completed), tick()).unwrap();
        instance::record_status(&mut doc, &status_update(3, 2, Status::InProgress), tick())
            .unwrap();
        assert_eq!(pair.index(&read(&doc).unwrap()), 4);
        // An event that changes no task's status: its row only.
        instance::record_status(&mut doc, &status_update(4, 2, Status::InProgress), tick())
            .unwrap();
        assert_eq!(pair.index(&read(&doc).unwrap()), 1);
        // Reassign: one task row.
        let to: crate::model::Assignee = "worker:w-9".parse().unwrap();
        instance::set_assignee(&mut doc, TaskId(Uuid::from_u128(3)), Some(&to), tick()).unwrap();
        assert_eq!(pair.index(&read(&doc).unwrap()), 1);
        instance::set_assignee(&mut doc, TaskId(Uuid::from_u128(3)), None, tick()).unwrap();
        assert_eq!(pair.index(&read(&doc).unwrap()), 1);
        // A task removed: its row and its events' rows go.
        instance::remove_task(&mut doc, TaskId(Uuid::from_u128(1)), tick()).unwrap();
        assert_eq!(pair.index(&read(&doc).unwrap()), 1 + 2);
        // A new task, and an edited one.
        instance::add_task(&mut doc, &task_spec(9, "Mop the floor"), tick()).unwrap();
        assert_eq!(pair.index(&read(&doc).unwrap()), 1);
        let mut edited = task_spec(4, "Count the till twice");
        edited.due = None;
        instance::update_task(&mut doc, &edited, tick()).unwrap();
        instance::record_status(&mut doc, &status_update(5, 9, Status::Completed), tick()).unwrap();
        assert_eq!(pair.index(&read(&doc).unwrap()), 3);
        // Forgotten (a hub restart, an eviction): what the table holds is
        // read back, so nothing unchanged is written again.
        let id = read(&doc).unwrap().id;
        pair.kept.remove(&id);
        assert_eq!(pair.index(&read(&doc).unwrap()), 0, "read back, unchanged");
        pair.kept.remove(&id);
        instance::record_status(&mut doc, &status_update(6, 9, Status::Reopened), tick()).unwrap();
        assert_eq!(
            pair.index(&read(&doc).unwrap()),
            2,
            "read back, one new event"
        );
        // Rows gone behind its back (a purge): every row is written again.
        pair.purge(id);
        assert_eq!(pair.index(&read(&doc).unwrap()), 4 + 4);
    }

    #[test]
    fn a_list_that_copies_an_event_id_leaves_the_originals_row_alone() {
        let mut pair = Pair::new();
        let a = view(
            1,
            "s1",
            "2026-11-26",
            vec![task(1, "A", None, &[(10, Status::Completed)])],
        );
        let b = view(
            2,
            "s1",
            "2026-11-26",
            vec![task(2, "B", None, &[(10, Status::InProgress)])],
        );
        pair.index(&a);
        pair.index(&b);
        // The worker report still shows a's event as recorded, and b's.
        let rows = pair.incremental.status_by_worker(None, None, 10).unwrap();
        let mut got: Vec<(&str, DocumentId)> =
            rows.iter().map(|r| (r.status.as_str(), r.doc)).collect();
        got.sort();
        assert_eq!(got, vec![("completed", a.id), ("in_progress", b.id)]);
        // Written again, a writes nothing: its rows are as it left them.
        assert_eq!(pair.index(&a), 0);
        pair.purge(a.id);
        pair.index(&b);
        assert_eq!(
            pair.incremental
                .status_by_worker(None, None, 10)
                .unwrap()
                .len(),
            1
        );
    }

    /// A task's values in the property test: title, due, assignee (indices).
    type TaskValues = (usize, Option<i64>, Option<usize>);
    /// An event's values: task, status, time, prev, whether it has a note.
    type EventValues = (u128, usize, i64, Vec<u128>, bool);

    /// Two versions of every task and event of the property test, so that
    /// a step keeps most rows of the one before, changes a few, and the two
    /// lists hold the same events (ids) at times.
    #[derive(Debug, Clone)]
    struct Versions {
        tasks: Vec<[TaskValues; 2]>,
        events: Vec<[EventValues; 2]>,
    }

    /// One step of the property test below.
    #[derive(Debug, Clone)]
    enum Step {
        /// List 1 or 2, its store and name (indices), and for each task and
        /// each event: 0 not in the list, 1 or 2 that version.
        Index {
            doc: u128,
            store: usize,
            name: usize,
            tasks: Vec<usize>,
            events: Vec<usize>,
        },
        /// The list is deleted.
        Purge(u128),
    }

    const TASKS: usize = 5;
    const EVENTS: usize = 10;

    fn arb_versions() -> impl Strategy<Value = Versions> {
        // The second version changes each field of the first with odds of
        // one in four, so that often one field alone differs.
        let change = || prop::collection::vec(prop::bool::weighted(0.25), 5);
        let task = (
            0..3usize,
            prop::option::of(0..3i64),
            prop::option::of(0..2usize),
        );
        let task_versions = (task.clone(), task, change()).prop_map(|(a, b, c)| {
            let second = (
                if c[0] { b.0 } else { a.0 },
                if c[1] { b.1 } else { a.1 },
                if c[2] { b.2 } else { a.2 },
            );
            [a, second]
        });
        // Task 6 is in no list: its events are not indexed.
        let event = (
            1..=(TASKS as u128 + 1),
            0..4usize,
            0..4i64,
            prop::collection::vec(1..=(EVENTS as u128), 0..2),
            any::<bool>(),
        );
        let event_versions = (event.clone(), event, change()).prop_map(|(a, b, c)| {
            let second = (
                if c[0] { b.0 } else { a.0 },
                if c[1] { b.1 } else { a.1 },
                if c[2] { b.2 } else { a.2 },
                if c[3] { b.3 } else { a.3.clone() },
                if c[4] { b.4 } else { a.4 },
            );
            [a, second]
        });
        (
            prop::collection::vec(task_versions, TASKS),
            prop::collection::vec(event_versions, EVENTS),
        )
            .prop_map(|(tasks, events)| Versions { tasks, events })
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        let version = || prop_oneof![1 => Just(0usize), 4 => Just(1), 1 => Just(2)];
        let mostly_first = || prop_oneof![5 => Just(0usize), 1 => Just(1)];
        prop_oneof![
            6 => (
                1..3u128,
                mostly_first(),
                mostly_first(),
                prop::collection::vec(version(), TASKS),
                prop::collection::vec(version(), EVENTS),
            )
                .prop_map(|(doc, store, name, tasks, events)| Step::Index {
                    doc,
                    store,
                    name,
                    tasks,
                    events,
                }),
            1 => (1..3u128).prop_map(Step::Purge),
        ]
    }

    /// The view an `Index` step describes, its statuses derived as
    /// `instance::read` derives them.
    fn build(
        v: &Versions,
        doc: u128,
        store: usize,
        name: usize,
        tasks: &[usize],
        events: &[usize],
    ) -> InstanceView {
        let statuses = [
            Status::NotStarted,
            Status::InProgress,
            Status::Completed,
            Status::Reopened,
        ];
        let events = events
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| {
                let (task, status, at, prev, noted) = &v.events[i][c - 1];
                StatusEvent {
                    id: EventId(Uuid::from_u128(i as u128 + 1)),
                    task: TaskId(Uuid::from_u128(*task)),
                    status: statuses[*status],
                    worker: ["w1", "w2"][i % 2].parse().unwrap(),
                    terminal: "pos-1".parse().unwrap(),
                    at: NOW + at,
                    prev: prev.iter().map(|p| EventId(Uuid::from_u128(*p))).collect(),
                    note: noted.then(|| "a note".into()),
                }
            });
        let derived = crate::status::derive(events);
        let tasks = tasks
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| {
                let (title, due, assignee) = v.tasks[i][c - 1];
                let mut t = task(
                    i as u128 + 1,
                    ["Lock up", "Count", "Mop"][title],
                    due.map(|d| NOW + d),
                    &[],
                );
                t.spec.assignee = assignee.map(|a| ["worker:w-7", "group:g-1"][a].parse().unwrap());
                t.status = crate::status::of_task(&derived, t.spec.id);
                t
            })
            .collect();
        let mut view = view(doc, ["s1", "s2"][store], "2026-11-26", tasks);
        view.meta.name = ["Closing", "Opening"][name].into();
        view
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn any_sequence_of_updates_leaves_the_rows_of_full_rewrites(
            versions in arb_versions(),
            steps in prop::collection::vec(arb_step(), 1..16),
        ) {
            let mut pair = Pair::new();
            for step in steps {
                match step {
                    Step::Index { doc, store, name, tasks, events } => {
                        pair.index(&build(&versions, doc, store, name, &tasks, &events));
                    }
                    Step::Purge(doc) => pair.purge(DocumentId(Uuid::from_u128(doc))),
                }
            }
        }
    }
}
