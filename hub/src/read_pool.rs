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

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use engine::compliance::ReportTask;
use engine::hq_accounts::*;
use engine::ids::{DocumentId, HqUserId, Principal, StoreGroupId, StoreId, WorkerId};
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
    names: RosterNames,
}

/// How long the names read from a store's roster are reused. A worker's
/// new name shows after at most this long; a worker added since is read
/// at once (an id the kept roster lacks reads it again, once per id
/// within this time, so a removed worker's many rows cost one read).
const ROSTER_NAMES_TTL: Duration = Duration::from_secs(30);

/// Workers' names by store, as the status answers show them beside the
/// ids (past due, histories, the report). They live in each store's
/// directory document; reading hundreds of them for every dashboard
/// refresh would cost more than the query itself, so they are kept here
/// for a short while.
#[derive(Default)]
struct RosterNames {
    by_store: Mutex<HashMap<StoreId, KeptRoster>>,
}

/// A store's roster names as read at `read_at`, and the ids asked for
/// since that it lacks.
#[derive(Clone)]
struct KeptRoster {
    read_at: Instant,
    names: Arc<BTreeMap<WorkerId, String>>,
    missing: std::collections::HashSet<WorkerId>,
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
            names: RosterNames::default(),
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
        let pool = self.clone();
        self.read(move |db| {
            f(&StatusReader {
                db,
                names: &pool.names,
            })
        })
        .await
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
    names: &'a RosterNames,
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

    /// Every store HQ registered (names and time zones), by id, read with
    /// the figures so both agree.
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

    /// The compliance report's facts: tasks with a due time in lists
    /// dated from `from` to `to` (inclusive).
    pub fn report_tasks_between(
        &self,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<ReportTask>, StorageError> {
        self.db.report_tasks_between(from, to)
    }

    /// Every store group and its stores.
    pub fn store_groups(&self) -> Result<BTreeMap<StoreGroupId, Vec<StoreId>>, StorageError> {
        self.db.store_groups()
    }

    /// The name of `worker` on `store`'s roster (both as the status index
    /// holds them), if it has one: from the store's directory document
    /// as committed, kept for a while (`RosterNames`).
    pub fn worker_name(&self, store: &str, worker: &str) -> Option<String> {
        let (store, worker): (StoreId, WorkerId) = (store.parse().ok()?, worker.parse().ok()?);
        let now = Instant::now();
        let kept = self
            .names
            .by_store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&store)
            .cloned()
            .filter(|k| now.saturating_duration_since(k.read_at) < ROSTER_NAMES_TTL);
        if let Some(k) = &kept {
            if let Some(name) = k.names.get(&worker) {
                return Some(name.clone());
            }
            if k.missing.contains(&worker) {
                return None;
            }
        }
        let names = Arc::new(self.roster_names(&store));
        let found = names.get(&worker).cloned();
        let mut missing = kept.map(|k| k.missing).unwrap_or_default();
        missing.retain(|w| !names.contains_key(w));
        if found.is_none() {
            missing.insert(worker);
        }
        self.names
            .by_store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                store,
                KeptRoster {
                    read_at: now,
                    names,
                    missing,
                },
            );
        found
    }

    /// The names on `store`'s roster, read now (none if it has no
    /// directory yet, or one that does not read: names only label rows
    /// keyed by worker id).
    fn roster_names(&self, store: &StoreId) -> BTreeMap<WorkerId, String> {
        let doc = match self.db.load_document(DocumentId::directory_of(store)) {
            Ok(Some(doc)) => doc,
            Ok(None) => return BTreeMap::new(),
            Err(e) => {
                tracing::warn!(%store, error = %e, "a store's roster could not be read; its workers show by id");
                return BTreeMap::new();
            }
        };
        match engine::document::directory::read(&doc) {
            Ok(view) => view
                .roster
                .into_iter()
                .map(|(id, w)| (id, w.name))
                .collect(),
            Err(e) => {
                tracing::warn!(%store, error = %e, "a store's roster does not read; its workers show by id");
                BTreeMap::new()
            }
        }
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
