//! Test fixtures for the storage tests: a store in a temporary directory and
//! a realistic multi-change document.

use automerge::{transaction::Transactable, AutoCommit, ObjType, ROOT};
use tempfile::TempDir;

use super::SqliteDatabase;

/// A fresh store in its own directory (keep the `TempDir` alive).
pub(crate) fn temp_store() -> (TempDir, SqliteDatabase) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store =
        SqliteDatabase::open(dir.path().join("replica.sqlite3"), [0x5A; 16]).expect("open store");
    (dir, store)
}

/// A task list built in `1 + tasks` changes: a title, then one task each.
pub(crate) fn checklist(tasks: usize) -> AutoCommit {
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "title", "Thursday night closing checklist")
        .expect("put title");
    let list = doc
        .put_object(ROOT, "tasks", ObjType::List)
        .expect("create tasks");
    doc.commit();
    for i in 0..tasks {
        let task = doc
            .insert_object(&list, i, ObjType::Map)
            .expect("insert task");
        doc.put(&task, "title", format!("task {i}"))
            .expect("put task title");
        doc.put(&task, "done", i % 2 == 0).expect("put done");
        doc.commit();
    }
    doc
}
