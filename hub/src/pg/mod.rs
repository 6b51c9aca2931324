//! The PostgreSQL backend of the hub's storage: the same role traits as
//! `engine::storage::sqlite`, on a database server several hub nodes can
//! share (issue #21). `hub serve --database postgres://...` picks it;
//! embedded SQLite stays the default.
//!
//! It lives in the hub, not the engine, because its driver
//! (tokio-postgres) needs an async runtime and the engine has none. The
//! storage traits are synchronous and called on the replica's thread, so
//! each [`PgDatabase`] owns a current-thread runtime and one connection,
//! and every method runs `block_on` over it (what the sync `postgres`
//! crate does inside). Never call it from inside an async task: the
//! replica thread and `spawn_blocking` readers are plain threads.
//!
//! Transactions mirror the SQLite backend's:
//! - outside a batch every write is `BEGIN .. COMMIT` of its own, durable
//!   (`synchronous_commit = on`) when it returns;
//! - inside a batch (`begin_batch` .. `commit_batch`) a write is a
//!   savepoint of the batch's transaction, undone alone if it fails, and
//!   durable when the batch commits;
//! - reads outside a batch run in one `REPEATABLE READ` read-only
//!   transaction, so several queries see one state.

mod accounts;
pub mod copy;
mod documents;
mod errors;
mod groups;
pub mod lease;
mod pending;
mod registry;
mod schema;
mod status_index;
mod sync_state;
mod templates;
#[doc(hidden)]
pub mod testing;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::mem::ManuallyDrop;
use std::sync::Arc;

use automerge::ActorId;
use engine::ids::{DocumentId, StoreId};
use engine::storage::read_cache::ReadCache;
use engine::storage::roles::{Replica, UnitOfWork};
use engine::storage::StorageError;
use lease::LeaseView;
use pending::Pending;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

pub use schema::CURRENT_VERSION;

/// A hub node's connection to the shared PostgreSQL database.
pub struct PgDatabase {
    /// Shut down (not dropped) in `Drop`: a reader may be dropped inside
    /// an async task, where dropping a runtime would panic.
    rt: ManuallyDrop<tokio::runtime::Runtime>,
    config: Config,
    /// Replaced by a new connection when the old one was lost (outside a
    /// batch only: a lost connection takes its open transaction with it).
    client: RefCell<Client>,
    /// Statements prepared on `client`, by their SQL.
    prepared: RefCell<HashMap<&'static str, Statement>>,
    /// `host:port/dbname`, never the password: what messages name.
    location: String,
    /// This node's name; its actor id is kept per node.
    node: String,
    actor: ActorId,
    batch: Cell<bool>,
    /// A reader: every transaction is read-only.
    reader: bool,
    /// How this node took the database (`take_database`): taken again
    /// on a new connection, since a session lock ends with its session.
    taken: Cell<Option<bool>>,
    /// In a cluster: the leases this node holds, which every commit that
    /// wrote a store's data checks (`lease::FENCE`).
    leases: Option<Arc<LeaseView>>,
    /// The stores the open unit of work wrote, to fence at its commit.
    touched: RefCell<Touched>,
    /// Which store each document belongs to (a document never changes
    /// store), so most writes find their store without a query.
    owners: RefCell<HashMap<DocumentId, StoreId>>,
    /// Rows the hub reads for every batch (`engine::storage::read_cache`);
    /// never used by a reader, whose writer is another connection.
    cache: RefCell<ReadCache>,
    /// `LeaseView::takeovers` when `cache` was last known good.
    cache_takeovers: Cell<u64>,
    /// Rows the open batch wrote and has not sent yet (`pending`).
    pending: RefCell<Pending>,
}

/// What a unit of work wrote: stores, and documents whose store was not
/// known yet when they were written (resolved at the fence).
#[derive(Debug, Default)]
struct Touched {
    stores: BTreeSet<StoreId>,
    documents: BTreeSet<DocumentId>,
}

/// The stores of the documents a unit of work wrote, for the fence.
const DOC_STORES: &str = "SELECT DISTINCT store_id FROM doc_owners WHERE doc_id = ANY($1)";

/// Session advisory lock that says how hubs use a database: held
/// exclusively by a lone hub, shared by cluster nodes.
const HUB_LOCK: i64 = 0x6875_625f_6e6f_6465;

impl std::fmt::Debug for PgDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDatabase")
            .field("location", &self.location)
            .field("node", &self.node)
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

/// A failure inside a unit of work, before the location is attached: lets
/// the bodies use `?` on both driver and storage errors.
pub(crate) enum Failure {
    Pg(tokio_postgres::Error),
    Storage(StorageError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Pg(e)
    }
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        Failure::Storage(e)
    }
}

impl Failure {
    fn on(self, location: &str) -> StorageError {
        match self {
            Failure::Pg(e) => errors::from_pg(location, e),
            Failure::Storage(e) => e,
        }
    }
}

/// The connection as one unit of work sees it: statements are prepared
/// once per connection and reused (a prepared statement saves the server
/// a parse and a plan per call).
pub(crate) struct Tx<'a> {
    client: &'a Client,
    prepared: &'a RefCell<HashMap<&'static str, Statement>>,
    location: &'a str,
    touched: &'a RefCell<Touched>,
    owners: &'a RefCell<HashMap<DocumentId, StoreId>>,
}

type Params<'p> = [&'p (dyn ToSql + Sync)];

impl Tx<'_> {
    async fn statement(&self, sql: &'static str) -> Result<Statement, tokio_postgres::Error> {
        let known = self.prepared.borrow().get(sql).cloned();
        if let Some(st) = known {
            return Ok(st);
        }
        let st = self.client.prepare(sql).await?;
        self.prepared.borrow_mut().insert(sql, st.clone());
        Ok(st)
    }

    /// Prepare those of `sqls` this connection has not prepared yet, all
    /// at once (statements about to be pipelined must all be ready, or one
    /// waiting for its prepare would go out behind the ones after it).
    pub(crate) async fn prepare_all(
        &self,
        sqls: &[&'static str],
    ) -> Result<(), tokio_postgres::Error> {
        let missing: Vec<&'static str> = {
            let prepared = self.prepared.borrow();
            sqls.iter()
                .copied()
                .filter(|s| !prepared.contains_key(s))
                .collect()
        };
        let done =
            futures_util::future::join_all(missing.iter().map(|s| self.client.prepare(s))).await;
        for (sql, st) in missing.into_iter().zip(done) {
            self.prepared.borrow_mut().insert(sql, st?);
        }
        Ok(())
    }

    pub(crate) async fn execute(
        &self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        let st = self.statement(sql).await?;
        self.client.execute(&st, params).await
    }

    pub(crate) async fn query(
        &self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let st = self.statement(sql).await?;
        self.client.query(&st, params).await
    }

    pub(crate) async fn query_opt(
        &self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let st = self.statement(sql).await?;
        self.client.query_opt(&st, params).await
    }

    pub(crate) async fn query_one(
        &self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Row, tokio_postgres::Error> {
        let st = self.statement(sql).await?;
        self.client.query_one(&st, params).await
    }

    /// Where this database is, for errors found in its rows.
    pub(crate) fn location(&self) -> &str {
        self.location
    }

    /// This unit of work writes `store`'s data: its commit is fenced on
    /// the store's lease.
    pub(crate) fn touch_store(&self, store: &StoreId) {
        self.touched.borrow_mut().stores.insert(store.clone());
    }

    /// This unit of work writes `doc`: its commit is fenced on the lease
    /// of the store `doc` belongs to. Call it before a write that deletes
    /// the document's owner row.
    pub(crate) async fn touch_doc(&self, doc: DocumentId) -> Result<(), tokio_postgres::Error> {
        let known = self.owners.borrow().get(&doc).cloned();
        let store = match known {
            Some(store) => Some(store),
            None => self
                .query_opt(
                    "SELECT store_id FROM doc_owners WHERE doc_id = $1",
                    &[&&doc.as_bytes()[..]],
                )
                .await?
                .and_then(|r| r.get::<_, &str>(0).parse::<StoreId>().ok()),
        };
        let mut touched = self.touched.borrow_mut();
        match store {
            Some(store) => {
                self.owners.borrow_mut().insert(doc, store.clone());
                touched.stores.insert(store);
            }
            None => {
                touched.documents.insert(doc);
            }
        }
        Ok(())
    }

    /// Remember which store `doc` belongs to.
    pub(crate) fn note_owner(&self, doc: DocumentId, store: &StoreId) {
        self.owners.borrow_mut().insert(doc, store.clone());
    }

    /// The fence: fails with `LeaseLost` naming the stores this unit of
    /// work wrote whose lease this node no longer holds at the epoch it
    /// claimed. Locks those lease rows until the transaction ends.
    async fn fence(&self, node: &str, leases: &LeaseView) -> Result<(), Failure> {
        let (mut stores, documents) = {
            let mut t = self.touched.borrow_mut();
            (
                std::mem::take(&mut t.stores),
                std::mem::take(&mut t.documents),
            )
        };
        if !documents.is_empty() {
            let ids: Vec<&[u8]> = documents.iter().map(|d| &d.as_bytes()[..]).collect();
            for r in self.query(DOC_STORES, &[&ids]).await? {
                if let Ok(store) = r.get::<_, &str>(0).parse() {
                    stores.insert(store);
                }
            }
        }
        if stores.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = stores.iter().map(StoreId::as_str).collect();
        let epochs: Vec<i64> = stores
            .iter()
            .map(|s| leases.epoch_of(s).unwrap_or(-1))
            .collect();
        let rows = self.query(lease::FENCE, &[&ids, &epochs, &node]).await?;
        let lost: Vec<String> = rows
            .iter()
            .filter(|r| !r.get::<_, bool>(1))
            .map(|r| r.get::<_, String>(0))
            .collect();
        if lost.is_empty() {
            return Ok(());
        }
        let lost_ids: Vec<StoreId> = lost.iter().filter_map(|s| s.parse().ok()).collect();
        leases.drop_stores(&lost_ids);
        Err(Failure::Storage(StorageError::LeaseLost {
            location: self.location.to_owned(),
            stores: lost,
        }))
    }
}

/// `host:port/dbname` of a connection config, without user or password.
fn location_of(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("postgres");
    format!("postgres://{host}:{port}/{db}")
}

async fn open_client(config: &Config, reader: bool) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    // Driven while a `block_on` of this database's runtime runs, which is
    // whenever we wait for an answer. It never LISTENs, so nothing arrives
    // in between that would need driving.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection ended");
        }
    });
    // A transaction left open by a stalled node must not hold row locks
    // forever; a batch takes milliseconds.
    let mut setup = String::from(
        "SET idle_in_transaction_session_timeout = '30s'; SET synchronous_commit = on;",
    );
    if reader {
        setup.push_str("SET default_transaction_read_only = on;");
    }
    client.batch_execute(&setup).await?;
    Ok(client)
}

impl PgDatabase {
    /// Connect to the database at `url` as hub node `node`, creating and
    /// migrating its tables as needed. `fresh_actor` (random bytes from the
    /// caller) becomes this node's actor id only if the node has none yet.
    pub fn connect(
        url: &str,
        node: &str,
        fresh_actor: [u8; 16],
    ) -> Result<PgDatabase, StorageError> {
        let mut db = PgDatabase::open(url, node, false)?;
        let location = db.location.clone();
        let found = db
            .rt
            .block_on(schema::migrate(db.client.get_mut()))
            .map_err(|e| match e {
                schema::MigrateError::Pg(e) => errors::from_pg(&location, e),
                schema::MigrateError::TooNew(found) => {
                    errors::too_new(&location, found, CURRENT_VERSION)
                }
            })?;
        if found < CURRENT_VERSION {
            tracing::info!(%location, from = found, to = CURRENT_VERSION, "hub tables ready");
        }
        let actor = db.write(async |tx| {
            tx.execute(
                "INSERT INTO replica_actors (node_id, actor_id) VALUES ($1, $2)
                 ON CONFLICT (node_id) DO NOTHING",
                &[&db.node, &&fresh_actor[..]],
            )
            .await?;
            let row = tx
                .query_one(
                    "SELECT actor_id FROM replica_actors WHERE node_id = $1",
                    &[&db.node],
                )
                .await?;
            Ok(ActorId::from(row.get::<_, Vec<u8>>(0)))
        })?;
        tracing::debug!(%location, node, %actor, "opened the hub's PostgreSQL database");
        db.actor = actor;
        Ok(db)
    }

    /// A read-only connection to a database `connect` has made ready, for
    /// the reads HTTP requests make off the replica thread.
    pub fn connect_reader(url: &str) -> Result<PgDatabase, StorageError> {
        let db = PgDatabase::open(url, "reader", true)?;
        let (location, version) = (db.location.clone(), db.schema_version()?);
        if version > CURRENT_VERSION {
            return Err(errors::too_new(&location, version, CURRENT_VERSION));
        }
        Ok(db)
    }

    fn open(url: &str, node: &str, reader: bool) -> Result<PgDatabase, StorageError> {
        let bad_url = |detail: String| StorageError::Unavailable {
            location: "the --database URL".into(),
            unavailable: engine::storage::Unavailable::CannotOpen,
            source: detail.into(),
        };
        let config: Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| bad_url(format!("not a PostgreSQL URL: {e}")))?;
        let location = location_of(&config);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| bad_url(format!("cannot start the database runtime: {e}")))?;
        let client = rt
            .block_on(open_client(&config, reader))
            .map_err(|e| errors::from_pg(&location, e))?;
        Ok(PgDatabase {
            rt: ManuallyDrop::new(rt),
            config,
            client: RefCell::new(client),
            prepared: RefCell::default(),
            location,
            node: node.to_owned(),
            actor: ActorId::from([0u8; 16]),
            batch: Cell::new(false),
            reader,
            taken: Cell::new(None),
            leases: None,
            touched: RefCell::default(),
            owners: RefCell::default(),
            cache: RefCell::default(),
            cache_takeovers: Cell::new(0),
            pending: RefCell::default(),
        })
    }

    /// Inside a batch, hold rows for the next flush (see `pending`) and
    /// return what `hold` returns; outside one, `None`: write them now.
    /// `docs` and `stores` are what the rows write, for the fence.
    pub(crate) fn hold<T>(
        &self,
        docs: &[DocumentId],
        stores: &[&StoreId],
        hold: impl FnOnce(&mut Pending) -> T,
    ) -> Option<T> {
        if !self.batch.get() {
            return None;
        }
        {
            let owners = self.owners.borrow();
            let mut touched = self.touched.borrow_mut();
            for doc in docs {
                match owners.get(doc) {
                    Some(store) => touched.stores.insert(store.clone()),
                    None => touched.documents.insert(*doc),
                };
            }
            for store in stores {
                touched.stores.insert((*store).clone());
            }
        }
        Some(hold(&mut self.pending.borrow_mut()))
    }

    /// Send what the batch holds, before anything that must see it.
    async fn flush(&self, tx: &Tx<'_>) -> Result<(), Failure> {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        pending.flush(tx).await
    }

    /// The read cache, emptied first if this node took a store over since
    /// it was last used; `None` for a reader.
    pub(crate) fn cache(&self) -> Option<std::cell::RefMut<'_, ReadCache>> {
        if self.reader {
            return None;
        }
        let mut cache = self.cache.borrow_mut();
        if let Some(leases) = &self.leases {
            let now = leases.takeovers();
            if now != self.cache_takeovers.replace(now) {
                cache.clear();
            }
        }
        Some(cache)
    }

    /// Forget every cached row: a transaction that read them rolled back.
    fn forget_cached(&self) {
        self.cache.borrow_mut().clear();
    }

    /// Fence every commit on the leases in `leases` (a cluster node):
    /// a unit of work that wrote a store this node does not hold at the
    /// epoch it claimed is rolled back with `StorageError::LeaseLost`.
    pub fn with_leases(mut self, leases: Arc<LeaseView>) -> PgDatabase {
        self.leases = Some(leases);
        self
    }

    /// Say how this node uses the database, for as long as its connection
    /// lives: alone (`shared` false), or as one node of a cluster. A lone
    /// hub next to any other hub on the same database would write stores
    /// another node serves, without leases: refused here, either way round.
    pub fn take_database(&self, shared: bool) -> Result<(), StorageError> {
        self.taken.set(Some(shared));
        let taken = self.read(async |tx| {
            let row = if shared {
                tx.query_one("SELECT pg_try_advisory_lock_shared($1)", &[&HUB_LOCK])
                    .await?
            } else {
                tx.query_one("SELECT pg_try_advisory_lock($1)", &[&HUB_LOCK])
                    .await?
            };
            Ok(row.get::<_, bool>(0))
        })?;
        if taken {
            return Ok(());
        }
        Err(StorageError::Conflict {
            location: self.location.clone(),
            conflict: engine::storage::Conflict::Busy,
            source: Some(
                if shared {
                    "a hub running without --node (alone) uses this database: stop it first"
                } else {
                    "other hubs use this database: run this one as a cluster node (--node NAME), \
                     or stop them"
                }
                .into(),
            ),
        })
    }

    /// A connection that holds the start-up lock of the database at
    /// `url` until it is dropped: hub nodes starting together on it set
    /// up what a first start sets up (its storage id, the admin token)
    /// one at a time, so they agree on it and do not collide.
    pub fn startup_lock(url: &str) -> Result<PgDatabase, StorageError> {
        let db = PgDatabase::open(url, "startup", false)?;
        db.exec("SELECT pg_advisory_lock(7306)")?;
        Ok(db)
    }

    /// The schema version of the database's tables.
    pub fn schema_version(&self) -> Result<i64, StorageError> {
        self.read(async |tx| {
            let row = tx
                .query_one("SELECT version FROM schema_version", &[])
                .await?;
            Ok(row.get(0))
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// A lost connection is replaced before the next unit of work (never
    /// inside a batch: its transaction went with the connection).
    fn reconnect_if_lost(&self) -> Result<(), StorageError> {
        if !self.client.borrow().is_closed() || self.batch.get() {
            return Ok(());
        }
        let client = self
            .rt
            .block_on(open_client(&self.config, self.reader))
            .map_err(|e| errors::from_pg(&self.location, e))?;
        *self.client.borrow_mut() = client;
        self.prepared.borrow_mut().clear();
        tracing::info!(location = %self.location, "reconnected to PostgreSQL");
        if let Some(shared) = self.taken.get() {
            self.take_database(shared)?;
        }
        Ok(())
    }

    /// One write, all or nothing: its own transaction, durable when this
    /// returns; inside a batch, a savepoint of the batch's transaction.
    fn write<T>(
        &self,
        f: impl AsyncFnOnce(&Tx<'_>) -> Result<T, Failure>,
    ) -> Result<T, StorageError> {
        self.reconnect_if_lost()?;
        let client = self.client.borrow();
        let tx = self.tx(&client);
        let batch = self.batch.get();
        if !batch {
            *self.touched.borrow_mut() = Touched::default();
        }
        let (begin, commit, undo) = if batch {
            (
                "SAVEPOINT write",
                "RELEASE write",
                "ROLLBACK TO write; RELEASE write",
            )
        } else {
            ("BEGIN", "COMMIT", "ROLLBACK")
        };
        self.rt
            .block_on(async {
                if batch {
                    self.flush(&tx).await?;
                }
                let fenced = async {
                    let out = f(&tx).await?;
                    if !batch {
                        self.fence_on(&tx).await?;
                    }
                    Ok(out)
                };
                // Sent together: the server runs them in order, and the
                // write's first statement does not wait for the answer to
                // BEGIN or SAVEPOINT (one round trip less per write). If
                // that failed, the statements after it fail too.
                let (began, body) =
                    futures_util::future::join(client.batch_execute(begin), fenced).await;
                match began.map_err(Failure::Pg).and(body) {
                    Ok(out) => match client.batch_execute(commit).await {
                        Ok(()) => Ok(out),
                        Err(e) => {
                            let _ = client.batch_execute(undo).await;
                            Err(Failure::Pg(e))
                        }
                    },
                    Err(e) => {
                        let _ = client.batch_execute(undo).await;
                        Err(e)
                    }
                }
            })
            .map_err(|f| {
                // Rolled back: whatever was read since may not hold.
                self.forget_cached();
                f.on(&self.location)
            })
    }

    /// Reads that see one state: a read-only snapshot transaction of their
    /// own, or the batch's transaction (which sees its own writes).
    fn read<T>(
        &self,
        f: impl AsyncFnOnce(&Tx<'_>) -> Result<T, Failure>,
    ) -> Result<T, StorageError> {
        self.reconnect_if_lost()?;
        let client = self.client.borrow();
        let tx = self.tx(&client);
        let batch = self.batch.get();
        self.rt
            .block_on(async {
                if batch {
                    self.flush(&tx).await?;
                    return f(&tx).await;
                }
                client
                    .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?;
                let out = f(&tx).await;
                let end = client.batch_execute("COMMIT").await;
                let out = out?;
                end?;
                Ok(out)
            })
            .map_err(|f| f.on(&self.location))
    }

    fn tx<'a>(&'a self, client: &'a Client) -> Tx<'a> {
        Tx {
            client,
            prepared: &self.prepared,
            location: &self.location,
            touched: &self.touched,
            owners: &self.owners,
        }
    }

    /// The fence, where this node runs under leases.
    async fn fence_on(&self, tx: &Tx<'_>) -> Result<(), Failure> {
        match &self.leases {
            Some(leases) => tx.fence(&self.node, leases).await,
            None => Ok(()),
        }
    }

    /// Run transaction-control SQL.
    fn exec(&self, sql: &str) -> Result<(), StorageError> {
        let client = self.client.borrow();
        self.rt
            .block_on(client.batch_execute(sql))
            .map_err(|e| errors::from_pg(&self.location, e))
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // SAFETY: `rt` is not used again; this is the last use of `self`.
        let rt = unsafe { ManuallyDrop::take(&mut self.rt) };
        rt.shutdown_background();
    }
}

impl Replica for PgDatabase {
    fn actor_id(&self) -> ActorId {
        self.actor.clone()
    }

    fn reset_actor(&mut self, new: [u8; 16]) -> Result<(), StorageError> {
        self.write(async |tx| {
            tx.execute(
                "UPDATE replica_actors SET actor_id = $2 WHERE node_id = $1",
                &[&self.node, &&new[..]],
            )
            .await?;
            Ok(())
        })?;
        let actor = ActorId::from(new);
        tracing::info!(location = %self.location, old = %self.actor, new = %actor,
            "reset the hub node's actor id");
        self.actor = actor;
        Ok(())
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.read(async |tx| {
            let row = tx
                .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
                .await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.write(async |tx| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .await?;
            Ok(())
        })
    }

    fn release_free_pages(&mut self) -> Result<i64, StorageError> {
        // PostgreSQL's autovacuum gives space back on its own.
        Ok(0)
    }

    fn location(&self) -> String {
        self.location.clone()
    }
}

impl UnitOfWork for PgDatabase {
    fn begin_batch(&mut self) -> Result<(), StorageError> {
        if self.batch.get() {
            return Ok(());
        }
        self.reconnect_if_lost()?;
        self.exec("BEGIN")?;
        *self.touched.borrow_mut() = Touched::default();
        *self.pending.borrow_mut() = Pending::default();
        self.batch.set(true);
        Ok(())
    }

    fn commit_batch(&mut self) -> Result<(), StorageError> {
        if !self.batch.replace(false) {
            return Ok(());
        }
        let fenced = {
            let client = self.client.borrow();
            let tx = self.tx(&client);
            self.rt
                .block_on(async {
                    // The rows the batch holds and the fence, sent together
                    // (one round trip); everything prepared first, so the
                    // rows go out before the fence reads.
                    tx.prepare_all(&pending::STATEMENTS).await?;
                    if self.leases.is_some() {
                        tx.prepare_all(&[lease::FENCE, DOC_STORES]).await?;
                    }
                    let (flushed, fenced) =
                        futures_util::future::join(self.flush(&tx), self.fence_on(&tx)).await;
                    flushed.and(fenced)
                })
                .map_err(|f| f.on(&self.location))
        };
        *self.touched.borrow_mut() = Touched::default();
        if let Err(e) = fenced {
            let _ = self.exec("ROLLBACK");
            self.forget_cached();
            return Err(e);
        }
        // COMMIT of a transaction an error aborted answers ROLLBACK, not an
        // error: the SELECT fails first in that case, and the COMMIT is
        // then skipped.
        if let Err(e) = self.exec("SELECT 1; COMMIT") {
            let _ = self.exec("ROLLBACK");
            self.forget_cached();
            return Err(e);
        }
        Ok(())
    }

    fn in_batch(&self) -> bool {
        self.batch.get()
    }

    fn begin_operation(&mut self) -> Result<(), StorageError> {
        debug_assert!(self.batch.get(), "operations are marked inside a batch");
        // What the batch held so far is not the operation's to undo.
        let client = self.client.borrow();
        let tx = self.tx(&client);
        self.rt
            .block_on(self.flush(&tx))
            .map_err(|f| f.on(&self.location))?;
        drop(client);
        self.exec("SAVEPOINT operation")
    }

    fn end_operation(&mut self) -> Result<(), StorageError> {
        self.exec("RELEASE operation")
    }

    fn rollback_operation(&mut self) -> Result<(), StorageError> {
        self.forget_cached();
        // Held since `begin_operation` flushed: the operation's own rows.
        *self.pending.borrow_mut() = Pending::default();
        self.exec("ROLLBACK TO operation; RELEASE operation")
    }
}

/// A 16-byte id column as a document id; a row that holds anything else
/// is damage (the schema's CHECK keeps it out).
pub(crate) fn document_id(
    location: &str,
    bytes: Vec<u8>,
) -> Result<engine::ids::DocumentId, Failure> {
    let arr: [u8; 16] = bytes.try_into().map_err(|b: Vec<u8>| {
        Failure::Storage(errors::damaged(
            location,
            format!("a document id is {} bytes, not 16", b.len()),
        ))
    })?;
    Ok(engine::ids::DocumentId(uuid::Uuid::from_bytes(arr)))
}

/// A text column that must parse (a store id, a worker id, ...).
pub(crate) fn parse_col<T: std::str::FromStr>(
    location: &str,
    s: &str,
    what: &str,
) -> Result<T, Failure> {
    s.parse().map_err(|_| {
        Failure::Storage(errors::damaged(
            location,
            format!("a stored {what} does not parse: {s:?}"),
        ))
    })
}
