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
        self.status_by_list_between(store, None, None, now_ms)
    }

    /// [`Store::status_by_list`] for lists dated (store-local) from `from`
    /// to `to`, both inclusive; `None` leaves that side open.
    pub fn status_by_list_between(
        &self,
        store: Option<&StoreId>,
        from: Option<chrono::NaiveDate>,
        to: Option<chrono::NaiveDate>,
        now_ms: i64,
    ) -> Result<Vec<ListStatusRow>, StorageError> {
        let day = |d: Option<chrono::NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string());
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT store_id, doc_id, list_name, list_date,
                        SUM(status = 'not_started'), SUM(status = 'in_progress'), SUM(status = 'completed'),
                        SUM(status != 'completed' AND due_ms IS NOT NULL AND due_ms < ?2), SUM(conflict)
                 FROM task_status
                 WHERE (?1 IS NULL OR store_id = ?1)
                   AND (?3 IS NULL OR list_date >= ?3) AND (?4 IS NULL OR list_date <= ?4)
                 GROUP BY doc_id ORDER BY list_date DESC, store_id, list_name",
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

    /// Open tasks (not completed) due before `now_ms`, most overdue first,
    /// optionally for one store.
    pub fn past_due(
        &self,
        store: Option<&StoreId>,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<PastDueRow>, StorageError> {
        self.read(|c| {
            // The first two conditions are the partial index's own, so
            // SQLite can walk `task_status_open_by_due` instead of the table.
            let mut stmt = c.prepare_cached(
                "SELECT store_id, doc_id, list_name, list_date, task_id, title, due_ms, assignee, status, conflict
                 FROM task_status
                 WHERE status != 'completed' AND due_ms IS NOT NULL
                   AND due_ms < ?2 AND (?1 IS NULL OR store_id = ?1)
                 ORDER BY due_ms, store_id, list_name, title LIMIT ?3",
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

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};
    use uuid::Uuid;

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

    #[test]
    fn past_due_is_open_tasks_due_before_now_most_overdue_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path().join("hub.db"), [1; 16]).unwrap();
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
        let s = Store::open(dir.path().join("hub.db"), [1; 16]).unwrap();
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
}
