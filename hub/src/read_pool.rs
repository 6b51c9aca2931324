//! Read-only connections to the hub's database for the reads an HTTP
//! request makes without the hub thread: a request's token, the counts
//! `/metrics` reports, and the status index queries (dashboard, past due,
//! worker history). A full day's grid for a fleet takes tens of
//! milliseconds to read and encode; on the hub thread that time was taken
//! from sync (a dashboard polling every second raised sync p99 from 13 to
//! 67 ms at 300 stores, BENCHMARKS.md). For status queries the hub thread
//! still brings the index up to date first, so no reader sees it stale.
//!
//! This is the one place where reads run off the hub thread, and it offers
//! only those reads: no caller gets the database itself.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use engine::hq_accounts::*;
use engine::ids::{DocumentId, HqUserId, Principal, StoreGroupId, StoreId};
use engine::replica::hub::AuthError;
use engine::storage::roles::*;
use engine::storage::{
    ListStatusRow, PastDueCount, PastDueRow, SqliteDatabase, StorageError, StoreListRow,
    StoreRecord, WorkerEventRow,
};

use crate::pg::PgDatabase;

/// Idle reader connections kept open.
const IDLE_READERS: usize = 4;

/// What a reader offers: the registry (tokens, stores), store groups,
/// HQ accounts, document counts and the status index queries. Both
/// backends' read-only connections.
pub trait ReadStorage: Registry + Groups + HqAccounts + Documents + StatusQueries + Send {}

impl<T: Registry + Groups + HqAccounts + Documents + StatusQueries + Send> ReadStorage for T {}

/// Which database the readers read.
#[derive(Debug, Clone)]
pub enum ReadSource {
    /// The hub's SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

impl ReadSource {
    fn open(&self) -> Result<Box<dyn ReadStorage>, StorageError> {
        Ok(match self {
            ReadSource::Sqlite(path) => Box::new(SqliteDatabase::open_reader(path)?),
            ReadSource::Postgres(url) => Box::new(PgDatabase::connect_reader(url)?),
        })
    }
}

/// A pool of read-only connections to one hub database.
pub struct ReadPool {
    db: ReadSource,
    idle: Mutex<Vec<Box<dyn ReadStorage>>>,
}

/// What `/metrics` counts in the database.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub stores: usize,
    pub documents: usize,
}

impl ReadPool {
    /// Readers of the hub database `db`.
    pub fn new(db: ReadSource) -> ReadPool {
        ReadPool {
            db,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The principal `token` stands for, checked against every committed
    /// token change (`engine::replica::hub::authenticate_on`).
    pub async fn authenticate(
        self: &Arc<Self>,
        token: Option<String>,
        now_ms: i64,
    ) -> anyhow::Result<Result<Principal, AuthError>> {
        self.read(move |db| engine::replica::hub::authenticate_on(db, token.as_deref(), now_ms))
            .await
    }

    /// Who `token` is (the admin token, a store, an HQ account), checked
    /// against every committed change (`engine::hq_accounts::caller_on`).
    pub async fn caller(
        self: &Arc<Self>,
        token: Option<String>,
        now_ms: i64,
    ) -> anyhow::Result<Result<Caller, CallerError>> {
        self.read(move |db| caller_on(db, token.as_deref(), now_ms))
            .await
    }

    /// What authorizing a request reads: each store's groups (a store in
    /// none is absent), and the store of `doc` if one is asked about.
    pub async fn scope_facts(
        self: &Arc<Self>,
        doc: Option<DocumentId>,
    ) -> anyhow::Result<Result<ScopeFacts, StorageError>> {
        self.read(move |db| {
            let groups_of = groups_of(db)?;
            let doc_store = match doc {
                Some(d) => db.doc_owner(d)?.map(|(s, _)| s),
                None => None,
            };
            Ok(ScopeFacts {
                groups_of,
                doc_store,
            })
        })
        .await
    }

    /// Run `f` over HQ's accounts, tokens and audit on a blocking thread.
    pub async fn accounts<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&AccountsReader) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        self.read(move |db| f(&AccountsReader { db })).await
    }

    /// How many stores and documents the hub holds.
    pub async fn counts(self: &Arc<Self>) -> anyhow::Result<Result<Counts, StorageError>> {
        self.read(|db| {
            Ok(Counts {
                stores: db.list_stores()?.len(),
                documents: db.document_count()?,
            })
        })
        .await
    }

    /// Run `f` over the status index on a blocking thread.
    pub async fn status<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&StatusReader) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        self.read(move |db| f(&StatusReader { db })).await
    }

    /// Run `f` on an idle connection (or a new one). Blocking.
    fn with<T>(&self, f: impl FnOnce(&dyn ReadStorage) -> T) -> Result<T, StorageError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let db = match idle {
            Some(db) => db,
            None => self.db.open()?,
        };
        let out = f(&*db);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_READERS {
            idle.push(db);
        }
        Ok(out)
    }

    /// `with` on a blocking thread, for async callers.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&dyn ReadStorage) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let pool = self.clone();
        let out = tokio::task::spawn_blocking(move || pool.with(f))
            .await
            .context("a read of the hub's database stopped")?;
        out.context("opening a read-only connection to the hub's database")
    }
}

/// HQ's accounts as a reader offers them: only reads.
pub struct AccountsReader<'a> {
    db: &'a dyn ReadStorage,
}

impl AccountsReader<'_> {
    pub fn hq_user(&self, id: &HqUserId) -> Result<Option<HqUser>, StorageError> {
        self.db.hq_user(id)
    }
    pub fn hq_users(&self) -> Result<Vec<HqUser>, StorageError> {
        self.db.hq_users()
    }
    pub fn personal_tokens(
        &self,
        user: Option<&HqUserId>,
    ) -> Result<Vec<PersonalTokenInfo>, StorageError> {
        self.db.personal_tokens(user)
    }
    pub fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StorageError> {
        self.db.audit(query)
    }
}

/// Each store's groups (a store in none is absent).
fn groups_of(db: &dyn ReadStorage) -> Result<HashMap<StoreId, Vec<StoreGroupId>>, StorageError> {
    let mut groups_of: HashMap<StoreId, Vec<StoreGroupId>> = HashMap::new();
    for (group, stores) in db.store_groups()? {
        for s in stores {
            groups_of.entry(s).or_default().push(group.clone());
        }
    }
    Ok(groups_of)
}

/// What a request's scope is checked against (`ReadPool::scope_facts`).
#[derive(Debug, Default)]
pub struct ScopeFacts {
    pub groups_of: HashMap<StoreId, Vec<StoreGroupId>>,
    pub doc_store: Option<StoreId>,
}

/// The status index queries, on a read-only connection.
pub struct StatusReader<'a> {
    db: &'a dyn ReadStorage,
}

impl StatusReader<'_> {
    /// Lists x stores with their counts (`store`: one store's only).
    pub fn status_by_list(
        &self,
        store: Option<&StoreId>,
        now_ms: i64,
    ) -> Result<Vec<ListStatusRow>, StorageError> {
        self.db.status_by_list(store, now_ms)
    }

    /// `status_by_list` for lists dated from `from` to `to` (inclusive).
    pub fn status_by_list_between(
        &self,
        store: Option<&StoreId>,
        from: Option<chrono::NaiveDate>,
        to: Option<chrono::NaiveDate>,
        now_ms: i64,
    ) -> Result<Vec<ListStatusRow>, StorageError> {
        self.db.status_by_list_between(store, from, to, now_ms)
    }

    /// Per store and list, the tasks of the days asked (the roll-up).
    pub fn status_by_store_list(
        &self,
        from: Option<chrono::NaiveDate>,
        to: Option<chrono::NaiveDate>,
        now_ms: i64,
    ) -> Result<Vec<StoreListRow>, StorageError> {
        self.db.status_by_store_list(from, to, now_ms)
    }

    /// Past due counted per store and list.
    pub fn past_due_counts(&self, now_ms: i64) -> Result<Vec<PastDueCount>, StorageError> {
        self.db.past_due_counts(now_ms)
    }

    /// Every store, read with the figures so both agree.
    pub fn stores(&self) -> Result<Vec<StoreRecord>, StorageError> {
        self.db.list_stores()
    }

    /// Each store's groups (a store in none is absent).
    pub fn groups_of(&self) -> Result<HashMap<StoreId, Vec<StoreGroupId>>, StorageError> {
        groups_of(self.db)
    }

    /// Open tasks past their due time, most overdue first.
    pub fn past_due(
        &self,
        store: Option<&StoreId>,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<PastDueRow>, StorageError> {
        self.db.past_due(store, now_ms, limit)
    }

    /// What workers did, newest first.
    pub fn status_by_worker(
        &self,
        store: Option<&StoreId>,
        worker: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WorkerEventRow>, StorageError> {
        self.db.status_by_worker(store, worker, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connections are read-only.
    #[test]
    fn a_reader_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        drop(SqliteDatabase::open(&path, [7; 16]).unwrap());
        let readers = ReadPool::new(ReadSource::Sqlite(path));
        let a: StoreId = "store-a".parse().unwrap();
        let write = readers.with(|s| s.record_store_sync(&[(a, 1)]));
        assert!(write.unwrap().is_err(), "a reader cannot write");
    }
}
