//! The SQLite backend: one database file per replica (a store's agent or
//! the hub), the default and, for the agent, the only one.
//!
//! One database file per replica (a store's agent or the hub), owned by one
//! [`Store`] that owns its `rusqlite::Connection`; the binaries keep it on a
//! dedicated thread. Every write method runs one transaction and returns only
//! after it committed with `synchronous=FULL` in WAL mode, so "returned Ok"
//! means "on disk": callers may then acknowledge or send (persist before send).
//!
//! Decisions worth knowing:
//! - `open` runs `PRAGMA quick_check` on every open. It reads the whole file
//!   (milliseconds for an agent's few MB, seconds for a multi-GB hub), and in
//!   exchange a damaged file is refused with a clear message at start instead
//!   of failing at some later write.
//! - Writes use `BEGIN IMMEDIATE`: the write lock is taken up front, so a
//!   second process on the same file waits (`busy_timeout`) instead of
//!   failing with SQLITE_BUSY when a read transaction tries to upgrade.

mod accounts;
mod documents;
mod errors;
mod groups;
mod registry;
mod schema;
mod status_index;
mod sync_state;
mod templates;
#[cfg(test)]
mod testing;

use std::path::{Path, PathBuf};
use std::time::Duration;

use automerge::ActorId;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::roles::{Replica, UnitOfWork};
use super::StorageError;
pub use documents::{CompactionStats, DocumentLoad, QUARANTINE_PREFIX};
pub use groups::{TokenInfo, TOKEN_ID_LEN};
pub use registry::{RejectionRecord, StoreRecord, TokenCheck};
pub use schema::CURRENT_VERSION;
pub use status_index::{
    ListStatusRow, PastDueCount, PastDueRow, PurgeFilter, StoreListRow, WorkerEventRow,
};
pub use sync_state::PeerId;

/// Make the file able to shrink (`auto_vacuum = INCREMENTAL`): compaction
/// folds change rows into snapshots and leaves free pages that
/// `release_free_pages` hands back. A new file gets the mode before its
/// first table; a file made before this existed is rebuilt once with
/// `VACUUM` (time proportional to its size, logged).
fn enable_incremental_vacuum(conn: &Connection, path: &Path) -> Result<(), StorageError> {
    let sql = |e| errors::from_sqlite(path, e);
    let mode: i64 = conn
        .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
        .map_err(sql)?;
    if mode == 2 {
        return Ok(());
    }
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(sql)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(sql)?;
    if tables > 0 {
        let started = std::time::Instant::now();
        conn.execute_batch("VACUUM").map_err(sql)?;
        tracing::info!(file = %path.display(), ms = started.elapsed().as_millis() as u64,
            "rebuilt the database once so compaction can give space back");
    }
    Ok(())
}

/// How long a write waits for another process holding the file's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How many `quick_check` problems to quote in the error; the first few say enough.
const QUICK_CHECK_MAX_ERRORS: i64 = 5;

/// A replica's database: documents, their changes, sync state and identity.
pub struct SqliteDatabase {
    conn: Connection,
    path: PathBuf,
    /// Cached copy of the `replica` row; every change this replica makes uses it.
    actor: ActorId,
    /// Inside `begin_batch` .. `commit_batch`: writes are savepoints of one
    /// open transaction, durable only when the batch commits.
    batch: bool,
    /// Rows read on every batch that hardly ever change (see `read_cache`).
    cache: std::cell::RefCell<crate::storage::read_cache::ReadCache>,
}

impl std::fmt::Debug for SqliteDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

impl SqliteDatabase {
    /// Open the replica database at `path`, creating and migrating it as needed.
    ///
    /// `fresh_actor` (random bytes from the caller: the engine has no RNG) becomes
    /// this replica's actor id only if the file has none yet; an existing
    /// replica keeps its identity.
    pub fn open(
        path: impl AsRef<Path>,
        fresh_actor: [u8; 16],
    ) -> Result<SqliteDatabase, StorageError> {
        let path = path.as_ref().to_path_buf();
        let sql = |e| errors::from_sqlite(&path, e);
        let mut conn = Connection::open(&path).map_err(|e| errors::cannot_open(&path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;

        // Read-only checks first, so a foreign or damaged file is refused
        // before we write anything to it (even the WAL switch writes the header).
        schema::check_not_newer(&conn, &path)?;
        quick_check(&conn, &path)?;
        enable_incremental_vacuum(&conn, &path)?;

        // WAL: readers do not block the writer, and a commit is one fsync of
        // the log. FULL: that fsync happens at every commit, which is what makes
        // "the write returned" mean "the write survives power loss".
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Still durable with a rollback journal and FULL; only concurrency suffers.
            tracing::warn!(file = %path.display(), mode, "SQLite refused WAL mode");
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(sql)?;

        schema::migrate(&mut conn, &path)?;
        let actor = load_or_create_actor(&mut conn, &path, fresh_actor)?;
        tracing::debug!(file = %path.display(), %actor, "opened replica database");
        Ok(SqliteDatabase {
            conn,
            path,
            actor,
            batch: false,
            cache: Default::default(),
        })
    }

    /// A read-only connection to a replica database that `open` has
    /// already created and migrated, for readers that should not run on the
    /// writer's thread: in WAL mode it reads the last committed state while
    /// the writer goes on. Any write through it fails.
    pub fn open_reader(path: impl AsRef<Path>) -> Result<SqliteDatabase, StorageError> {
        let path = path.as_ref().to_path_buf();
        let sql = |e| errors::from_sqlite(&path, e);
        let conn = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| errors::cannot_open(&path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        schema::check_not_newer(&conn, &path)?;
        let actor: Vec<u8> = conn
            .query_row("SELECT actor_id FROM replica WHERE id = 1", [], |row| {
                row.get(0)
            })
            .map_err(sql)?;
        Ok(SqliteDatabase {
            conn,
            path,
            actor: ActorId::from(actor),
            batch: false,
            cache: Default::default(),
        })
    }

    /// The database file this store was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open file (always [`CURRENT_VERSION`] after `open`).
    pub fn schema_version(&self) -> Result<i64, StorageError> {
        schema::user_version(&self.conn).map_err(|e| errors::from_sqlite(&self.path, e))
    }

    /// Run `f` in one write transaction and commit. If `f` or the commit
    /// fails, dropping the transaction rolls it back, so a failed write
    /// leaves nothing behind.
    /// One write, all or nothing: its own IMMEDIATE transaction, durable
    /// when this returns; inside a batch, a savepoint of the batch's
    /// transaction (durable when the batch commits).
    fn write<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T, Failure>,
    ) -> Result<T, StorageError> {
        let file = &self.path;
        let batch = self.batch;
        let run = |conn: &mut Connection| -> Result<T, Failure> {
            if batch {
                if conn.is_autocommit() {
                    // SQLite rolled the batch back after an earlier failure.
                    return Err(Failure::Storage(errors::batch_rolled_back(file)));
                }
                let sp = conn.savepoint()?;
                let out = f(&sp)?;
                sp.commit()?;
                return Ok(out);
            }
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        };
        run(&mut self.conn).map_err(|failure| {
            // Rolled back: whatever was read since may not hold any more.
            self.cache.get_mut().clear();
            failure.on(file)
        })
    }

    /// Run transaction-control SQL on the connection.
    fn exec(&self, sql: &str) -> Result<(), StorageError> {
        self.conn
            .execute_batch(sql)
            .map_err(|e| errors::from_sqlite(&self.path, e))
    }

    /// Run `f` in one read transaction, so several queries see one consistent
    /// state even if another process commits in between.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, Failure>,
    ) -> Result<T, StorageError> {
        let run = || -> Result<T, Failure> {
            if self.batch {
                // Inside the batch's transaction: reads see its writes.
                return f(&self.conn);
            }
            let tx = self.conn.unchecked_transaction()?;
            f(&tx)
            // Dropping `tx` ends the read transaction; it wrote nothing.
        };
        run().map_err(|failure| failure.on(&self.path))
    }
}

impl Replica for SqliteDatabase {
    fn actor_id(&self) -> ActorId {
        self.actor.clone()
    }

    fn reset_actor(&mut self, new: [u8; 16]) -> Result<(), StorageError> {
        let actor = ActorId::from(new);
        self.write(|tx| {
            tx.execute("UPDATE replica SET actor_id = ?1 WHERE id = 1", [&new])?;
            Ok(())
        })?;
        tracing::info!(
            file = %self.path.display(),
            old = %self.actor,
            new = %actor,
            "reset replica actor id"
        );
        self.actor = actor;
        Ok(())
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([key], |row| row.get(0))
                .optional()?)
        })
    }

    fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(rusqlite::params![key, value])?;
            Ok(())
        })
    }

    fn release_free_pages(&mut self) -> Result<i64, StorageError> {
        let sql = |e| errors::from_sqlite(&self.path, e);
        let free: i64 = self
            .conn
            .pragma_query_value(None, "freelist_count", |r| r.get(0))
            .map_err(sql)?;
        if free > 0 {
            // The pragma frees pages as it is stepped: run it to the end.
            let mut stmt = self
                .conn
                .prepare("PRAGMA incremental_vacuum")
                .map_err(sql)?;
            let mut rows = stmt.query([]).map_err(sql)?;
            while rows.next().map_err(sql)?.is_some() {}
        }
        Ok(free)
    }

    fn location(&self) -> String {
        errors::location(&self.path)
    }
}

impl UnitOfWork for SqliteDatabase {
    fn begin_batch(&mut self) -> Result<(), StorageError> {
        if self.batch {
            return Ok(());
        }
        self.exec("BEGIN IMMEDIATE")?;
        self.batch = true;
        Ok(())
    }

    fn commit_batch(&mut self) -> Result<(), StorageError> {
        if !self.batch {
            return Ok(());
        }
        self.batch = false;
        if self.conn.is_autocommit() {
            self.cache.get_mut().clear();
            return Err(errors::batch_rolled_back(&self.path));
        }
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.cache.get_mut().clear();
            return Err(errors::from_sqlite(&self.path, e));
        }
        Ok(())
    }

    fn in_batch(&self) -> bool {
        self.batch
    }

    fn begin_operation(&mut self) -> Result<(), StorageError> {
        debug_assert!(self.batch, "operations are marked inside a batch");
        self.exec("SAVEPOINT operation")
    }

    fn end_operation(&mut self) -> Result<(), StorageError> {
        self.exec("RELEASE operation")
    }

    fn rollback_operation(&mut self) -> Result<(), StorageError> {
        self.cache.get_mut().clear();
        self.exec("ROLLBACK TO operation; RELEASE operation")
    }
}

/// An error inside a transaction, before we attach the file name. Lets the
/// transaction bodies use `?` on both rusqlite and storage errors.
enum Failure {
    Sql(rusqlite::Error),
    Storage(StorageError),
}

impl Failure {
    fn on(self, file: &Path) -> StorageError {
        match self {
            Failure::Sql(e) => errors::from_sqlite(file, e),
            Failure::Storage(e) => e,
        }
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sql(e)
    }
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        Failure::Storage(e)
    }
}

/// Refuse a file SQLite can open but not fully read (truncated, overwritten pages).
fn quick_check(conn: &Connection, file: &Path) -> Result<(), StorageError> {
    let mut problems = Vec::new();
    conn.pragma(None, "quick_check", QUICK_CHECK_MAX_ERRORS, |row| {
        problems.push(row.get::<_, String>(0)?);
        Ok(())
    })
    .map_err(|e| errors::from_sqlite(file, e))?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(errors::failed_integrity_check(file, &problems))
}

/// The replica's actor id, minted from `fresh` the first time the file is used.
fn load_or_create_actor(
    conn: &mut Connection,
    file: &Path,
    fresh: [u8; 16],
) -> Result<ActorId, StorageError> {
    let sql = |e| errors::from_sqlite(file, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    let stored: Option<Vec<u8>> = tx
        .query_row("SELECT actor_id FROM replica WHERE id = 1", [], |row| {
            row.get(0)
        })
        .optional()
        .map_err(sql)?;
    let actor = match stored {
        Some(bytes) => ActorId::from(bytes),
        None => {
            tx.execute(
                "INSERT INTO replica (id, actor_id) VALUES (1, ?1)",
                [&fresh],
            )
            .map_err(sql)?;
            tracing::info!(file = %file.display(), actor = %ActorId::from(fresh), "new replica identity");
            ActorId::from(fresh)
        }
    };
    tx.commit().map_err(sql)?;
    Ok(actor)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use rand::RngCore;

    use super::testing::temp_store;
    use super::*;
    use crate::storage::roles::*;

    #[test]
    fn a_batch_is_invisible_until_it_commits_and_a_failed_write_in_it_is_undone_alone() {
        let (dir, mut store) = temp_store();
        let path = dir.path().join("replica.sqlite3");
        let mut am = super::testing::checklist(2);
        let changes = am.document().get_changes(&[]);
        let (a, b) = (
            crate::ids::DocumentId::from_random_bytes([1; 16]),
            crate::ids::DocumentId::from_random_bytes([2; 16]),
        );
        let other = SqliteDatabase::open(&path, [9; 16]).unwrap();
        store.begin_batch().unwrap();
        store.append_changes(a, &changes).unwrap();
        assert!(
            store.load_document(a).unwrap().is_some(),
            "the batch reads its writes"
        );
        assert!(
            other.load_document(a).unwrap().is_none(),
            "not committed yet"
        );
        store.commit_batch().unwrap();
        assert!(other.load_document(a).unwrap().is_some(), "committed");

        // Disk full inside a batch: SQLite rolls the whole batch back, so
        // the later writes and the commit fail too and nothing is saved.
        store.begin_batch().unwrap();
        store.append_changes(b, &changes).unwrap();
        store.conn.pragma_update(None, "max_page_count", 1).unwrap();
        let mut big = super::testing::checklist(300);
        let big = big.document().get_changes(&[]);
        let c = crate::ids::DocumentId::from_random_bytes([3; 16]);
        assert!(store.append_changes(c, &big).is_err());
        store
            .conn
            .pragma_update(None, "max_page_count", 1_000_000)
            .unwrap();
        assert!(matches!(
            store.append_changes(c, &changes),
            Err(StorageError::Conflict {
                conflict: crate::storage::Conflict::BatchRolledBack,
                ..
            })
        ));
        assert!(matches!(
            store.commit_batch(),
            Err(StorageError::Conflict {
                conflict: crate::storage::Conflict::BatchRolledBack,
                ..
            })
        ));
        assert!(
            other.load_document(b).unwrap().is_none(),
            "none of the batch"
        );
        // Outside a batch, writes commit on their own again.
        store.append_changes(b, &changes).unwrap();
        assert!(other.load_document(b).unwrap().is_some());
    }

    #[test]
    fn durability_settings_are_applied() {
        let (_dir, store) = temp_store();
        let mode: String = store
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let synchronous: i64 = store
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(synchronous, 2, "2 is FULL");
        let fk: i64 = store
            .conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let timeout: i64 = store
            .conn
            .pragma_query_value(None, "busy_timeout", |r| r.get(0))
            .unwrap();
        assert_eq!(timeout, BUSY_TIMEOUT.as_millis() as i64);
        assert_eq!(store.schema_version().unwrap(), CURRENT_VERSION);
    }

    #[test]
    fn writes_are_committed_when_they_return() {
        let (_dir, mut store) = temp_store();
        store.set_meta("hub_url", b"wss://hq").unwrap();
        assert!(store.conn.is_autocommit(), "no transaction left open");
        // Another connection sees it: it is in the file, not in our transaction.
        let other = Connection::open(store.path()).unwrap();
        let value: Vec<u8> = other
            .query_row("SELECT value FROM meta WHERE key = 'hub_url'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(value, b"wss://hq");
    }

    #[test]
    fn actor_id_persists_across_reopen_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica.sqlite3");
        let store = SqliteDatabase::open(&path, [1; 16]).unwrap();
        assert_eq!(store.actor_id(), ActorId::from([1_u8; 16]));
        drop(store);

        // A second open must not replace the identity with the new random bytes.
        let mut store = SqliteDatabase::open(&path, [2; 16]).unwrap();
        assert_eq!(store.actor_id(), ActorId::from([1_u8; 16]));

        store.reset_actor([3; 16]).unwrap();
        assert_eq!(store.actor_id(), ActorId::from([3_u8; 16]));
        drop(store);
        let store = SqliteDatabase::open(&path, [4; 16]).unwrap();
        assert_eq!(store.actor_id(), ActorId::from([3_u8; 16]));
    }

    #[test]
    fn meta_roundtrip() {
        let (_dir, mut store) = temp_store();
        assert_eq!(store.get_meta("k").unwrap(), None);
        store.set_meta("k", b"one").unwrap();
        store.set_meta("k", b"two").unwrap();
        assert_eq!(store.get_meta("k").unwrap(), Some(b"two".to_vec()));
    }

    #[test]
    fn garbage_file_is_refused_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-db.sqlite3");
        let mut garbage = vec![0_u8; 8192];
        rand::thread_rng().fill_bytes(&mut garbage);
        std::fs::write(&path, &garbage).unwrap();

        let err = SqliteDatabase::open(&path, [1; 16]).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::Damaged {
                    damage: crate::storage::Damage::NotADatabase { .. },
                    ..
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("not a SQLite database"), "{message}");
        // We did not write to someone else's file.
        assert_eq!(std::fs::read(&path).unwrap(), garbage);
    }

    #[test]
    fn truncated_file_is_refused_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica.sqlite3");
        {
            let mut store = SqliteDatabase::open(&path, [1; 16]).unwrap();
            for i in 0..200 {
                store.set_meta(&format!("key-{i}"), &[7; 512]).unwrap();
            }
        } // Closing the last connection checkpoints the WAL into the file.
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(
            len > 16 * 4096,
            "test needs a multi-page file, got {len} bytes"
        );
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len / 2).unwrap();
        drop(file);

        let err = SqliteDatabase::open(&path, [1; 16]).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::Damaged {
                    damage: crate::storage::Damage::Database { .. }
                        | crate::storage::Damage::NotADatabase { .. },
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    /// Damage in pages `open` itself never reads (here: the middle of the
    /// meta table) is found only by `quick_check`.
    #[test]
    fn damaged_pages_are_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica.sqlite3");
        {
            let mut store = SqliteDatabase::open(&path, [1; 16]).unwrap();
            for i in 0..200 {
                store.set_meta(&format!("key-{i}"), &[7; 512]).unwrap();
            }
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let page = 4096;
        let middle = (bytes.len() / page / 2) * page;
        rand::thread_rng().fill_bytes(&mut bytes[middle..middle + page]);
        std::fs::write(&path, &bytes).unwrap();

        let err = SqliteDatabase::open(&path, [1; 16]).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::Damaged {
                    damage: crate::storage::Damage::Database { .. },
                    ..
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("restore it from a backup"), "{message}");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica.sqlite3");
        drop(SqliteDatabase::open(&path, [1; 16]).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", CURRENT_VERSION + 1)
            .unwrap();
        drop(conn);

        let err = SqliteDatabase::open(&path, [1; 16]).unwrap_err();
        match &err {
            StorageError::Damaged {
                damage: crate::storage::Damage::SchemaTooNew { found, known },
                ..
            } => {
                assert_eq!((*found, *known), (CURRENT_VERSION + 1, CURRENT_VERSION));
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("newer build"), "{message}");
    }

    #[test]
    fn missing_directory_gives_cannot_open_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("replica.sqlite3");
        let err = SqliteDatabase::open(&path, [1; 16]).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::Unavailable {
                    unavailable: crate::storage::Unavailable::CannotOpen,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn empty_file_becomes_a_new_replica() {
        // A zero-length file is what a crash during first creation can leave.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica.sqlite3");
        std::fs::File::create(&path).unwrap().flush().unwrap();
        let store = SqliteDatabase::open(&path, [9; 16]).unwrap();
        assert_eq!(store.schema_version().unwrap(), CURRENT_VERSION);
        assert_eq!(store.actor_id(), ActorId::from([9_u8; 16]));
    }
}
