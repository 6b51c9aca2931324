//! The hub's status index on PostgreSQL: the same tables and the same
//! incremental update as SQLite's (`engine::storage::index_rows` plans
//! which rows to write), and the same queries. "Past due" is the engine's
//! rule (`engine::due`): due strictly before now.

use engine::compliance::ReportTask;
use engine::document::instance::InstanceView;
use engine::ids::{DocumentId, EventId, StoreId, TaskId};
use engine::storage::index_rows::{self, IndexUpdate, IndexedRows};
use engine::storage::roles::*;
use engine::storage::{
    ListStatusRow, PastDueCount, PastDueRow, PurgeFilter, StorageError, StoreListRow,
    WorkerEventRow,
};

use super::{document_id, Failure, PgDatabase, Tx};

/// A 16-byte id column, or None for a row that does not hold one (skipped).
fn id16(bytes: &[u8]) -> Option<uuid::Uuid> {
    <[u8; 16]>::try_from(bytes).ok().map(uuid::Uuid::from_bytes)
}

/// What the index holds for `doc`, read back from the tables.
async fn rows_in_table(tx: &Tx<'_>, doc: &[u8]) -> Result<IndexedRows, Failure> {
    let mut rows = IndexedRows::default();
    for r in tx
        .query(
            "SELECT task_id, store_id, list_name, list_date, title, due_ms, assignee, status, conflict
             FROM task_status WHERE doc_id = $1",
            &[&doc],
        )
        .await?
    {
        let Some(id) = id16(r.get(0)) else { continue };
        rows.note_task_row(
            TaskId(id),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
            r.get(7),
            r.get::<_, i64>(8) != 0,
        );
    }
    for r in tx
        .query(
            "SELECT event_id, task_id, store_id, worker, terminal, status, at_ms, note
             FROM status_events WHERE doc_id = $1",
            &[&doc],
        )
        .await?
    {
        let Some(id) = id16(r.get(0)) else { continue };
        rows.note_event_row(
            EventId(id),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
            r.get(7),
        );
    }
    Ok(rows)
}

impl StatusIndex for PgDatabase {
    fn index_instance(&mut self, view: &InstanceView) -> Result<(), StorageError> {
        self.update_index(view, None).map(|_| ())
    }

    fn update_index(
        &mut self,
        view: &InstanceView,
        last: Option<&IndexedRows>,
    ) -> Result<IndexUpdate, StorageError> {
        self.write(async |tx| {
            tx.touch_store(&view.meta.store);
            tx.note_owner(view.id, &view.meta.store);
            let doc = &view.id.as_bytes()[..];
            let in_table;
            let last = match last {
                Some(last) => last,
                None => {
                    in_table = rows_in_table(tx, doc).await?;
                    &in_table
                }
            };
            let plan = index_rows::plan(view, last);
            if !plan.put_tasks.is_empty() {
                let t = &plan.put_tasks;
                let ids: Vec<&[u8]> = t.iter().map(|r| &r.task.0.as_bytes()[..]).collect();
                let stores: Vec<&str> = t.iter().map(|r| r.store.as_str()).collect();
                let lists: Vec<&str> = t.iter().map(|r| r.list.as_str()).collect();
                let dates: Vec<&str> = t.iter().map(|r| r.date.as_str()).collect();
                let titles: Vec<&str> = t.iter().map(|r| r.title.as_str()).collect();
                let dues: Vec<Option<i64>> = t.iter().map(|r| r.due_ms).collect();
                let assignees: Vec<Option<&str>> =
                    t.iter().map(|r| r.assignee.as_deref()).collect();
                let statuses: Vec<&str> = t.iter().map(|r| r.status.as_str()).collect();
                let conflicts: Vec<i64> = t.iter().map(|r| r.conflict as i64).collect();
                tx.execute(
                    "INSERT INTO task_status (doc_id, task_id, store_id, list_name, list_date, title,
                                              due_ms, assignee, status, conflict)
                     SELECT $1, * FROM unnest($2::bytea[], $3::text[], $4::text[], $5::text[],
                                              $6::text[], $7::bigint[], $8::text[], $9::text[],
                                              $10::bigint[])
                     ON CONFLICT (doc_id, task_id) DO UPDATE SET
                       store_id = excluded.store_id, list_name = excluded.list_name,
                       list_date = excluded.list_date, title = excluded.title,
                       due_ms = excluded.due_ms, assignee = excluded.assignee,
                       status = excluded.status, conflict = excluded.conflict",
                    &[
                        &doc, &ids, &stores, &lists, &dates, &titles, &dues, &assignees,
                        &statuses, &conflicts,
                    ],
                )
                .await?;
            }
            if !plan.put_events.is_empty() {
                let e = &plan.put_events;
                let ids: Vec<&[u8]> = e.iter().map(|r| &r.id.0.as_bytes()[..]).collect();
                let tasks: Vec<&[u8]> = e.iter().map(|r| &r.task.0.as_bytes()[..]).collect();
                let stores: Vec<&str> = e.iter().map(|r| r.store.as_str()).collect();
                let workers: Vec<&str> = e.iter().map(|r| r.worker.as_str()).collect();
                let terminals: Vec<&str> = e.iter().map(|r| r.terminal.as_str()).collect();
                let statuses: Vec<&str> = e.iter().map(|r| r.status.as_str()).collect();
                let ats: Vec<i64> = e.iter().map(|r| r.at_ms).collect();
                let notes: Vec<Option<&str>> = e.iter().map(|r| r.note.as_deref()).collect();
                tx.execute(
                    "INSERT INTO status_events (doc_id, event_id, task_id, store_id, worker,
                                                terminal, status, at_ms, note)
                     SELECT $1, * FROM unnest($2::bytea[], $3::bytea[], $4::text[], $5::text[],
                                              $6::text[], $7::text[], $8::bigint[], $9::text[])
                     ON CONFLICT (doc_id, event_id) DO UPDATE SET
                       task_id = excluded.task_id, store_id = excluded.store_id,
                       worker = excluded.worker, terminal = excluded.terminal,
                       status = excluded.status, at_ms = excluded.at_ms, note = excluded.note",
                    &[
                        &doc, &ids, &tasks, &stores, &workers, &terminals, &statuses, &ats,
                        &notes,
                    ],
                )
                .await?;
            }
            if !plan.drop_tasks.is_empty() {
                let ids: Vec<&[u8]> = plan.drop_tasks.iter().map(|t| &t.0.as_bytes()[..]).collect();
                tx.execute(
                    "DELETE FROM task_status WHERE doc_id = $1 AND task_id = ANY($2)",
                    &[&doc, &ids],
                )
                .await?;
            }
            if !plan.drop_events.is_empty() {
                let ids: Vec<&[u8]> =
                    plan.drop_events.iter().map(|e| &e.0.as_bytes()[..]).collect();
                tx.execute(
                    "DELETE FROM status_events WHERE doc_id = $1 AND event_id = ANY($2)",
                    &[&doc, &ids],
                )
                .await?;
            }
            tx.execute("DELETE FROM index_due WHERE doc_id = $1", &[&doc])
                .await?;
            Ok(IndexUpdate { rows: plan.rows })
        })
    }

    fn unindex_instance(&mut self, doc: DocumentId) -> Result<(), StorageError> {
        self.write(async |tx| {
            tx.touch_doc(doc).await?;
            let d = &doc.as_bytes()[..];
            tx.execute("DELETE FROM index_due WHERE doc_id = $1", &[&d])
                .await?;
            tx.execute("DELETE FROM task_status WHERE doc_id = $1", &[&d])
                .await?;
            tx.execute("DELETE FROM status_events WHERE doc_id = $1", &[&d])
                .await?;
            Ok(())
        })
    }

    fn purge_document(&mut self, doc: DocumentId) -> Result<(), StorageError> {
        self.write(async |tx| {
            tx.touch_doc(doc).await?;
            let d = &doc.as_bytes()[..];
            tx.execute("DELETE FROM sync_states WHERE doc_id = $1", &[&d])
                .await?;
            tx.execute("DELETE FROM documents WHERE doc_id = $1", &[&d])
                .await?;
            tx.execute("DELETE FROM doc_owners WHERE doc_id = $1", &[&d])
                .await?;
            tx.execute("DELETE FROM known_content_sets WHERE doc_id = $1", &[&d])
                .await?;
            tx.execute("DELETE FROM task_status WHERE doc_id = $1", &[&d])
                .await?;
            tx.execute("DELETE FROM status_events WHERE doc_id = $1", &[&d])
                .await?;
            tx.execute("DELETE FROM index_due WHERE doc_id = $1", &[&d])
                .await?;
            Ok(())
        })?;
        if let Some(mut cache) = self.cache() {
            cache.doc_owners.remove(&doc);
            cache.known_content.remove(&doc);
        }
        Ok(())
    }

    fn mark_index_due(&mut self, docs: &[DocumentId]) -> Result<(), StorageError> {
        if docs.is_empty() {
            return Ok(());
        }
        let held = self.hold(docs, &[], |p| {
            for doc in docs {
                p.index_due(*doc);
            }
        });
        if held.is_some() {
            return Ok(());
        }
        let ids: Vec<&[u8]> = docs.iter().map(|d| &d.as_bytes()[..]).collect();
        self.write(async |tx| {
            for doc in docs {
                tx.touch_doc(*doc).await?;
            }
            tx.execute(
                "INSERT INTO index_due (doc_id) SELECT unnest($1::bytea[]) ON CONFLICT DO NOTHING",
                &[&ids],
            )
            .await?;
            Ok(())
        })
    }

    fn index_due(&self) -> Result<Vec<DocumentId>, StorageError> {
        self.read(async |tx| {
            let rows = tx.query("SELECT doc_id FROM index_due", &[]).await?;
            rows.into_iter()
                .map(|r| document_id(tx.location(), r.get(0)))
                .collect()
        })
    }
}

fn count(r: &tokio_postgres::Row, i: usize) -> u32 {
    u32::try_from(r.get::<_, i64>(i)).unwrap_or(u32::MAX)
}

/// A task id column as text (the readers' form).
fn task_text(bytes: &[u8]) -> String {
    id16(bytes).map(|u| u.to_string()).unwrap_or_default()
}

impl StatusQueries for PgDatabase {
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
        let (store, from, to) = (store.map(StoreId::as_str), day(from), day(to));
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT store_id, doc_id, list_name, list_date,
                            count(*) FILTER (WHERE status = 'not_started'),
                            count(*) FILTER (WHERE status = 'in_progress'),
                            count(*) FILTER (WHERE status = 'completed'),
                            count(*) FILTER (WHERE status <> 'completed'
                                             AND due_ms IS NOT NULL AND due_ms < $2),
                            coalesce(sum(conflict), 0)::bigint
                       FROM task_status
                      WHERE ($1::text IS NULL OR store_id = $1)
                        AND ($3::text IS NULL OR list_date >= $3)
                        AND ($4::text IS NULL OR list_date <= $4)
                      GROUP BY doc_id, store_id, list_name, list_date
                      ORDER BY list_date DESC, store_id COLLATE \"C\", list_name COLLATE \"C\"",
                    &[&store, &now_ms, &from, &to],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(ListStatusRow {
                        store: r.get(0),
                        doc: document_id(tx.location(), r.get(1))?,
                        list: r.get(2),
                        date: r.get(3),
                        not_started: count(r, 4),
                        in_progress: count(r, 5),
                        completed: count(r, 6),
                        past_due: count(r, 7),
                        conflicts: count(r, 8),
                    })
                })
                .collect()
        })
    }

    fn past_due_counts(&self, now_ms: i64) -> Result<Vec<PastDueCount>, StorageError> {
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT store_id, list_name, count(*), min(due_ms)
                       FROM task_status
                      WHERE status <> 'completed' AND due_ms IS NOT NULL AND due_ms < $1
                      GROUP BY store_id, list_name
                      ORDER BY store_id COLLATE \"C\", list_name COLLATE \"C\"",
                    &[&now_ms],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| PastDueCount {
                    store: r.get(0),
                    list: r.get(1),
                    tasks: count(r, 2),
                    oldest_due_ms: r.get(3),
                })
                .collect())
        })
    }

    fn status_by_store_list(
        &self,
        from: Option<chrono::NaiveDate>,
        to: Option<chrono::NaiveDate>,
        now_ms: i64,
    ) -> Result<Vec<StoreListRow>, StorageError> {
        let day = |d: Option<chrono::NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string());
        let (from, to) = (day(from), day(to));
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT store_id, list_name, count(DISTINCT doc_id), count(*),
                            count(*) FILTER (WHERE status = 'completed'),
                            count(*) FILTER (WHERE status = 'completed' AND (due_ms IS NULL OR
                                (SELECT max(e.at_ms) FROM status_events e
                                  WHERE e.doc_id = t.doc_id AND e.task_id = t.task_id
                                    AND e.status = 'completed') <= due_ms)),
                            count(*) FILTER (WHERE status <> 'completed'
                                             AND due_ms IS NOT NULL AND due_ms < $2),
                            coalesce(sum(conflict), 0)::bigint
                       FROM task_status t
                      WHERE ($1::text IS NULL OR list_date >= $1)
                        AND ($3::text IS NULL OR list_date <= $3)
                      GROUP BY store_id, list_name
                      ORDER BY store_id COLLATE \"C\", list_name COLLATE \"C\"",
                    &[&from, &now_ms, &to],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| StoreListRow {
                    store: r.get(0),
                    list: r.get(1),
                    instances: count(r, 2),
                    tasks: count(r, 3),
                    completed: count(r, 4),
                    on_time: count(r, 5),
                    past_due: count(r, 6),
                    conflicts: count(r, 7),
                })
                .collect())
        })
    }

    fn past_due(
        &self,
        store: Option<&StoreId>,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<PastDueRow>, StorageError> {
        let (store, limit) = (store.map(StoreId::as_str), i64::from(limit));
        self.read(async |tx| {
            // The first two conditions are the partial index's own.
            let rows = tx
                .query(
                    "SELECT store_id, doc_id, list_name, list_date, task_id, title, due_ms,
                            assignee, status, conflict
                       FROM task_status
                      WHERE status <> 'completed' AND due_ms IS NOT NULL AND due_ms < $2
                        AND ($1::text IS NULL OR store_id = $1)
                      ORDER BY due_ms, store_id COLLATE \"C\", list_name COLLATE \"C\",
                               title COLLATE \"C\"
                      LIMIT $3",
                    &[&store, &now_ms, &limit],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(PastDueRow {
                        store: r.get(0),
                        doc: document_id(tx.location(), r.get(1))?,
                        list: r.get(2),
                        date: r.get(3),
                        task: task_text(r.get(4)),
                        title: r.get(5),
                        due_ms: r.get(6),
                        assignee: r.get(7),
                        status: r.get(8),
                        conflict: r.get::<_, i64>(9) != 0,
                    })
                })
                .collect()
        })
    }

    fn status_by_worker(
        &self,
        store: Option<&StoreId>,
        worker: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WorkerEventRow>, StorageError> {
        let (store, limit) = (store.map(StoreId::as_str), i64::from(limit));
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT e.store_id, e.worker, e.terminal, e.status, e.at_ms, e.doc_id,
                            t.task_id, coalesce(t.title, ''), e.note
                       FROM status_events e
                       LEFT JOIN task_status t ON t.doc_id = e.doc_id AND t.task_id = e.task_id
                      WHERE ($1::text IS NULL OR e.store_id = $1)
                        AND ($2::text IS NULL OR e.worker = $2)
                      ORDER BY e.at_ms DESC LIMIT $3",
                    &[&store, &worker, &limit],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(WorkerEventRow {
                        store: r.get(0),
                        worker: r.get(1),
                        terminal: r.get(2),
                        status: r.get(3),
                        at_ms: r.get(4),
                        doc: document_id(tx.location(), r.get(5))?,
                        task: r
                            .get::<_, Option<&[u8]>>(6)
                            .map(task_text)
                            .unwrap_or_default(),
                        title: r.get(7),
                        note: r.get(8),
                    })
                })
                .collect()
        })
    }

    fn report_tasks_between(
        &self,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<ReportTask>, StorageError> {
        let (from, to) = (
            from.format("%Y-%m-%d").to_string(),
            to.format("%Y-%m-%d").to_string(),
        );
        self.read(async |tx| {
            // As SQLite's `REPORT_TASKS_SQL`: the newest `completed` event
            // of each task completed now.
            let rows = tx
                .query(
                    "SELECT t.store_id, t.list_name, t.list_date, t.due_ms, e.at_ms, e.worker,
                            t.assignee
                       FROM task_status t
                       LEFT JOIN status_events e
                         ON t.status = 'completed' AND e.doc_id = t.doc_id
                        AND e.event_id = (SELECT d.event_id FROM status_events d
                                           WHERE d.doc_id = t.doc_id AND d.task_id = t.task_id
                                             AND d.status = 'completed'
                                           ORDER BY d.at_ms DESC, d.event_id DESC LIMIT 1)
                      WHERE t.list_date >= $1 AND t.list_date <= $2
                      ORDER BY t.store_id COLLATE \"C\", t.list_date COLLATE \"C\",
                               t.list_name COLLATE \"C\", t.doc_id, t.task_id",
                    &[&from, &to],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| ReportTask {
                    store: r.get(0),
                    list: r.get(1),
                    date: r.get(2),
                    due_ms: r.get(3),
                    completed_ms: r.get(4),
                    completed_by: r.get(5),
                    assignee: r.get(6),
                })
                .collect())
        })
    }

    fn purge_candidates(
        &self,
        filter: &PurgeFilter,
    ) -> Result<Vec<(DocumentId, StoreId)>, StorageError> {
        let before = filter.before.map(|d| d.format("%Y-%m-%d").to_string());
        let store = filter.store.as_ref().map(StoreId::as_str);
        let list = filter.list.as_deref();
        let completed_only = filter.completed_only;
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT doc_id, store_id FROM task_status
                      WHERE ($1::text IS NULL OR list_date < $1)
                        AND ($2::text IS NULL OR store_id = $2)
                        AND ($3::text IS NULL OR list_name = $3)
                      GROUP BY doc_id, store_id
                     HAVING (NOT $4::bool OR count(*) FILTER (WHERE status <> 'completed') = 0)
                      ORDER BY store_id COLLATE \"C\", min(list_date)",
                    &[&before, &store, &list, &completed_only],
                )
                .await?;
            let mut out = Vec::new();
            for r in rows {
                let doc = document_id(tx.location(), r.get(0))?;
                if let Ok(store) = r.get::<_, &str>(1).parse() {
                    out.push((doc, store));
                }
            }
            Ok(out)
        })
    }
}
