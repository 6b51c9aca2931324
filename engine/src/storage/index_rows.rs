//! What an update of the status index writes, the same for every backend:
//! the rows one instance's view asks for, compared with what the index
//! already holds (as fingerprints), so a backend writes only the rows that
//! differ and deletes the ones that went away. The backends only run the
//! [`IndexPlan`] this computes.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::document::instance::InstanceView;
use crate::ids::{EventId, TaskId};
use crate::model::StatusEvent;

/// A row's values as the first 128 bits of their SHA-256: equal
/// fingerprints mean equal rows (telling two apart by mistake would take a
/// SHA-256 collision, which not even a hostile peer can make).
type RowFingerprint = [u8; 16];

/// What the index holds for one instance, as the write that returned it
/// left it: a fingerprint of each task row and each event row. Handed to
/// the next `update_index` of that instance, it lets the write touch only
/// the rows that differ. Kept in memory by the hub, a few dozen bytes a row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexedRows {
    tasks: HashMap<TaskId, RowFingerprint>,
    events: HashMap<EventId, RowFingerprint>,
}

/// What `update_index` did.
#[derive(Debug)]
pub struct IndexUpdate {
    /// What the index now holds for the instance. Its rows are its own
    /// (keyed by list and id): a list that copies another's event id never
    /// touches the other's rows.
    pub rows: IndexedRows,
}

/// Builds a [`RowFingerprint`]; each value is tagged and length-prefixed so
/// that no two different rows hash the same bytes.
struct Fingerprint(Sha256);

impl Fingerprint {
    fn new() -> Self {
        Fingerprint(Sha256::new())
    }

    fn bytes(mut self, b: &[u8]) -> Self {
        self.0.update([1]);
        self.0.update((b.len() as u64).to_le_bytes());
        self.0.update(b);
        self
    }

    fn opt(mut self, b: Option<&[u8]>) -> Self {
        match b {
            Some(b) => self.bytes(b),
            None => {
                self.0.update([0]);
                self
            }
        }
    }

    fn finish(self) -> RowFingerprint {
        let digest = self.0.finalize();
        let mut out = [0; 16];
        out.copy_from_slice(&digest[..16]);
        out
    }
}

/// The values of one `task_status` row, its document aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub task: TaskId,
    pub store: String,
    pub list: String,
    /// The list's store-local date, `YYYY-MM-DD`.
    pub date: String,
    pub title: String,
    pub due_ms: Option<i64>,
    /// `worker:<id>` or `group:<id>`.
    pub assignee: Option<String>,
    pub status: String,
    pub conflict: bool,
}

/// The values of one `status_events` row, its document aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub id: EventId,
    pub task: TaskId,
    pub store: String,
    pub worker: String,
    pub terminal: String,
    pub status: String,
    pub at_ms: i64,
    pub note: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn task_fingerprint(
    store: &str,
    list: &str,
    date: &str,
    title: &str,
    due_ms: Option<i64>,
    assignee: Option<&str>,
    status: &str,
    conflict: bool,
) -> RowFingerprint {
    Fingerprint::new()
        .bytes(store.as_bytes())
        .bytes(list.as_bytes())
        .bytes(date.as_bytes())
        .bytes(title.as_bytes())
        .opt(due_ms.map(i64::to_le_bytes).as_ref().map(|b| &b[..]))
        .opt(assignee.map(str::as_bytes))
        .bytes(status.as_bytes())
        .bytes(&[conflict as u8])
        .finish()
}

#[allow(clippy::too_many_arguments)]
fn event_fingerprint(
    task: &[u8],
    store: &str,
    worker: &str,
    terminal: &str,
    status: &str,
    at: i64,
    note: Option<&str>,
) -> RowFingerprint {
    Fingerprint::new()
        .bytes(task)
        .bytes(store.as_bytes())
        .bytes(worker.as_bytes())
        .bytes(terminal.as_bytes())
        .bytes(status.as_bytes())
        .bytes(&at.to_le_bytes())
        .opt(note.map(str::as_bytes))
        .finish()
}

impl IndexedRows {
    /// Note a task row as read back from the table (the starting point of
    /// an update that has no `IndexedRows` from an earlier one).
    #[allow(clippy::too_many_arguments)]
    pub fn note_task_row(
        &mut self,
        task: TaskId,
        store: &str,
        list: &str,
        date: &str,
        title: &str,
        due_ms: Option<i64>,
        assignee: Option<&str>,
        status: &str,
        conflict: bool,
    ) {
        let fp = task_fingerprint(store, list, date, title, due_ms, assignee, status, conflict);
        self.tasks.insert(task, fp);
    }

    /// Note an event row as read back from the table. `task` is the stored
    /// column as it is (a damaged one just never matches).
    #[allow(clippy::too_many_arguments)]
    pub fn note_event_row(
        &mut self,
        id: EventId,
        task: &[u8],
        store: &str,
        worker: &str,
        terminal: &str,
        status: &str,
        at_ms: i64,
        note: Option<&str>,
    ) {
        let fp = event_fingerprint(task, store, worker, terminal, status, at_ms, note);
        self.events.insert(id, fp);
    }
}

/// The writes that bring one instance's index rows from `last` to `view`.
#[derive(Debug, Default)]
pub struct IndexPlan {
    /// Rows to insert or overwrite.
    pub put_tasks: Vec<TaskRow>,
    pub put_events: Vec<EventRow>,
    /// Rows the index holds that the view no longer has.
    pub drop_tasks: Vec<TaskId>,
    pub drop_events: Vec<EventId>,
    /// What the index holds once the plan is written.
    pub rows: IndexedRows,
}

/// What to write so the index holds exactly `view`'s rows, given that it
/// holds `last` now.
pub fn plan(view: &InstanceView, last: &IndexedRows) -> IndexPlan {
    let store = view.meta.store.as_str();
    let date = view.meta.date.format("%Y-%m-%d").to_string();
    let mut out = IndexPlan {
        rows: IndexedRows {
            tasks: HashMap::with_capacity(view.tasks.len()),
            events: HashMap::with_capacity(last.events.len()),
        },
        ..IndexPlan::default()
    };
    // A task or event id that shows up twice (a hostile list can repeat
    // one) is written once, with its last values, as a row-by-row upsert
    // would leave it: one statement must not touch a row twice.
    let mut task_at: HashMap<TaskId, usize> = HashMap::new();
    let mut event_at: HashMap<EventId, usize> = HashMap::new();
    for t in &view.tasks {
        let assignee = t.spec.assignee.as_ref().map(|a| a.encode());
        let status = t.status.effective().as_str();
        let due_ms = t.spec.due.map(|d| d.timestamp_millis());
        let conflict = t.has_conflict();
        let fp = task_fingerprint(
            store,
            &view.meta.name,
            &date,
            &t.spec.title,
            due_ms,
            assignee.as_deref(),
            status,
            conflict,
        );
        if last.tasks.get(&t.spec.id) != Some(&fp) {
            put_once(
                &mut out.put_tasks,
                &mut task_at,
                t.spec.id,
                TaskRow {
                    task: t.spec.id,
                    store: store.to_owned(),
                    list: view.meta.name.clone(),
                    date: date.clone(),
                    title: t.spec.title.clone(),
                    due_ms,
                    assignee,
                    status: status.to_owned(),
                    conflict,
                },
            );
        } else if let Some(i) = task_at.remove(&t.spec.id) {
            // An earlier copy of this id asked for a write the last copy
            // does not need: the table already holds the last copy.
            out.put_tasks.remove(i);
            task_at
                .values_mut()
                .filter(|j| **j > i)
                .for_each(|j| *j -= 1);
        }
        out.rows.tasks.insert(t.spec.id, fp);
        for e in &t.status.history {
            let fp = fingerprint_of_event(e, store);
            out.rows.events.insert(e.id, fp);
            if last.events.get(&e.id) == Some(&fp) {
                if let Some(i) = event_at.remove(&e.id) {
                    out.put_events.remove(i);
                    event_at
                        .values_mut()
                        .filter(|j| **j > i)
                        .for_each(|j| *j -= 1);
                }
                continue;
            }
            put_once(
                &mut out.put_events,
                &mut event_at,
                e.id,
                EventRow {
                    id: e.id,
                    task: e.task,
                    store: store.to_owned(),
                    worker: e.worker.as_str().to_owned(),
                    terminal: e.terminal.as_str().to_owned(),
                    status: e.status.as_str().to_owned(),
                    at_ms: e.at,
                    note: e.note.clone(),
                },
            );
        }
    }
    out.drop_tasks = (last.tasks.keys())
        .filter(|t| !out.rows.tasks.contains_key(t))
        .copied()
        .collect();
    out.drop_events = (last.events.keys())
        .filter(|e| !out.rows.events.contains_key(e))
        .copied()
        .collect();
    out
}

/// Push `row` keyed `id`, or overwrite the earlier row of the same id.
fn put_once<K: std::hash::Hash + Eq, R>(
    rows: &mut Vec<R>,
    at: &mut HashMap<K, usize>,
    id: K,
    row: R,
) {
    match at.get(&id) {
        Some(&i) => rows[i] = row,
        None => {
            at.insert(id, rows.len());
            rows.push(row);
        }
    }
}

fn fingerprint_of_event(e: &StatusEvent, store: &str) -> RowFingerprint {
    event_fingerprint(
        e.task.0.as_bytes(),
        store,
        e.worker.as_str(),
        e.terminal.as_str(),
        e.status.as_str(),
        e.at,
        e.note.as_deref(),
    )
}
