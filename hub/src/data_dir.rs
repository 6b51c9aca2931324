//! The hub's data directory: its database (`hub.db`, unless the hub runs
//! on PostgreSQL) and admin token file, opened (or made on first start)
//! with the replica thread started on them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use engine::hq_accounts::{HqRole, HqScope, HqUser};
use engine::protocol::wire::PeerId;
use engine::replica::hub::{Hub, HubConfig, HubLimits};
use engine::storage::roles::HubStorage;
use engine::storage::SqliteDatabase;
use rand::RngCore;

use std::sync::Arc;

use crate::cluster::ClusterNode;
use crate::http::state::AppState;
use crate::pg::lease::LeaseView;
use crate::pg::PgDatabase;
use crate::read_pool::ReadSource;
use crate::replicas::{thread_of, Replicas};
use crate::runtime::{now_ms, HubHandle};
use crate::secrets::{random_token, write_secret};

/// A hub in `dir` with default limits and the admin token "admin", for
/// tests.
#[cfg(test)]
pub(crate) fn open_for_test(dir: &Path) -> AppState {
    open(dir, Default::default(), Some("admin"), &Database::Sqlite)
        .unwrap()
        .state
}

/// A node of a cluster: its name (stable across restarts) and the sync
/// URL terminals are sent to for the stores it serves.
#[derive(Debug, Clone)]
pub struct Member {
    pub node: String,
    pub address: String,
    /// Replica threads on this node (at least 1), each with its own
    /// database connection, serving the stores that hash to it (see
    /// `replicas`).
    pub replica_threads: usize,
}

/// Where the hub keeps its documents, registry and status index.
#[derive(Debug, Clone, Default)]
pub enum Database {
    /// Embedded SQLite in `DIR/hub.db`: the default, one node.
    #[default]
    Sqlite,
    /// A PostgreSQL database (`postgres://user:password@host:port/db`).
    /// Without `cluster`, this node is its only hub and serves every
    /// store (a second such node, or one in a cluster, is refused at
    /// start). With it, the node is one of several sharing the database.
    Postgres {
        url: String,
        cluster: Option<Member>,
    },
}

/// What `open` made ready: the hub thread and the admin token path.
pub struct Opened {
    pub state: AppState,
    /// On PostgreSQL: this node's part in the cluster, for
    /// `cluster::run` (the lease manager) to drive.
    pub cluster: Option<crate::cluster::ClusterNode>,
    pub admin_token_file: PathBuf,
    /// Set when this start created the admin token.
    pub new_admin_token: Option<String>,
    /// Set when this start created the first HQ account (`admin`): the
    /// file holding its one-time setup secret.
    pub setup_secret_file: Option<PathBuf>,
}

/// Where the cluster's nodes keep the secret that marks a write passed
/// between them as audited already (`http::access::AUDITED`).
const AUDIT_SECRET_KEY: &str = "hq_audit_forward_secret";

/// The secret under `key` in the shared database, made by the first node
/// to start (under the startup lock).
fn shared_secret(db: &mut PgDatabase, key: &str) -> anyhow::Result<String> {
    use engine::storage::roles::Replica;
    if let Some(s) = db.get_meta(key)? {
        return Ok(String::from_utf8_lossy(&s).into_owned());
    }
    let s = random_token();
    db.set_meta(key, s.as_bytes())?;
    Ok(s)
}

/// The first HQ account, made at the first start.
pub const FIRST_ADMIN: &str = "admin";

/// Make the first HQ account (an admin over every store) if there is
/// none, with a one-time setup secret written to `file` (mode 0600); the
/// first sign-in must replace it with a password of the admin's own.
/// Returns whether it did.
fn ensure_first_admin(hub: &mut Hub, file: &Path) -> anyhow::Result<bool> {
    if !hub.hq_accounts().hq_users()?.is_empty() {
        return Ok(false);
    }
    let secret = random_token();
    let user = HqUser {
        id: FIRST_ADMIN.parse().expect("a valid user id"),
        role: HqRole::Admin,
        scope: HqScope::AllStores,
        password_hash: crate::passwords::hash(&secret)?,
        must_change_password: true,
        disabled_at: None,
        created_at: now_ms(),
    };
    // A secret left from a database since replaced is stale.
    if file.exists() {
        std::fs::remove_file(file).with_context(|| format!("replacing {}", file.display()))?;
    }
    write_secret(file, &secret)?;
    hub.hq_accounts().put_hq_user(&user)?;
    Ok(true)
}

/// Open (or create) the hub's data directory and start its replica thread.
/// On first start an admin token is minted and written to `DIR/admin-token`
/// (mode 0600); `admin_token` registers a known one instead.
pub fn open(
    data_dir: &Path,
    limits: HubLimits,
    admin_token: Option<&str>,
    database: &Database,
) -> anyhow::Result<Opened> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the hub data directory {}", data_dir.display()))?;
    let mut actor = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut actor);
    // On PostgreSQL, nodes starting together set up the database's
    // storage id and admin token one at a time (held until this returns).
    let _startup = match database {
        Database::Postgres { url, .. } => {
            Some(PgDatabase::startup_lock(url).context("opening the hub's PostgreSQL database")?)
        }
        Database::Sqlite => None,
    };
    let (store, readers): (Box<dyn HubStorage>, ReadSource) = match database {
        Database::Sqlite => {
            let db = data_dir.join("hub.db");
            let store = SqliteDatabase::open(&db, actor)
                .with_context(|| format!("opening {}", db.display()))?;
            (Box::new(store), ReadSource::Sqlite(db))
        }
        Database::Postgres { url, cluster: None } => {
            let store = PgDatabase::connect(url, "single", actor)
                .context("opening the hub's PostgreSQL database")?;
            store.take_database(false)?;
            (Box::new(store), ReadSource::Postgres(url.clone()))
        }
        Database::Postgres {
            url,
            cluster:
                Some(Member {
                    node,
                    address,
                    replica_threads,
                }),
        } => {
            let view = Arc::new(LeaseView::default());
            let mut store = PgDatabase::connect(url, node, actor)
                .context("opening the hub's PostgreSQL database")?;
            store.take_database(true)?;
            let audit_secret = shared_secret(&mut store, AUDIT_SECRET_KEY)?;
            let store = store.with_leases(view.clone());
            // The other threads' connections: the node's shared lock is
            // held by the first (every commit is fenced anyway).
            let mut others: Vec<Box<dyn HubStorage>> = Vec::new();
            for _ in 1..(*replica_threads).max(1) {
                let db = PgDatabase::connect(url, node, actor)
                    .context("opening a replica thread's PostgreSQL connection")?
                    .with_leases(view.clone());
                others.push(Box::new(db));
            }
            let mut opened = open_on(
                data_dir,
                Box::new(store),
                others,
                ReadSource::Postgres(url.clone()),
                limits,
                admin_token,
                Some(view.clone()),
            )?;
            opened.state.leases = Some(view.clone());
            opened.state.audit_secret = Some(audit_secret.into());
            opened.state.cluster_address = Some(address.clone());
            opened.cluster = Some(ClusterNode {
                url: url.clone(),
                node: node
                    .parse()
                    .map_err(|e| anyhow::anyhow!("node name {node:?}: {e}"))?,
                address: address.clone(),
                view,
            });
            return Ok(opened);
        }
    };
    open_on(
        data_dir,
        store,
        Vec::new(),
        readers,
        limits,
        admin_token,
        None,
    )
}

/// `open` on a database already opened, with `others` the connections
/// of a cluster node's further replica threads (none elsewhere).
fn open_on(
    data_dir: &Path,
    mut store: Box<dyn HubStorage>,
    others: Vec<Box<dyn HubStorage>>,
    readers: ReadSource,
    limits: HubLimits,
    admin_token: Option<&str>,
    served: Option<Arc<LeaseView>>,
) -> anyhow::Result<Opened> {
    let storage_id = Hub::storage_id_of(&mut *store, &uuid::Uuid::new_v4().to_string())?;
    let cfg = HubConfig {
        peer_id: PeerId::new(format!(
            "hub-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )),
        storage_id,
        limits: limits.clone(),
    };
    let threads = 1 + others.len();
    let latency = Arc::new(crate::metrics::Latency::default());
    // Thread `i` serves the stores the node holds that hash to it.
    let serve = |hub: &mut Hub, i: usize| {
        if let Some(view) = &served {
            let view = view.clone();
            hub.serve_only(move |s| view.holds(s) && thread_of(s, threads) == i);
        }
    };
    let mut hub = Hub::open_boxed(store, cfg.clone())?;
    serve(&mut hub, 0);
    let mut rest = Vec::with_capacity(others.len());
    for (i, db) in others.into_iter().enumerate() {
        let mut h = Hub::open_boxed(db, cfg.clone())?;
        serve(&mut h, i + 1);
        rest.push(h);
    }
    let token_file = data_dir.join("admin-token");
    let new_admin_token = match admin_token {
        None if !token_file.exists() => Some(random_token()),
        _ => None,
    };
    if let Some(t) = admin_token.or(new_admin_token.as_deref()) {
        hub.ensure_hq_token(t, "admin", now_ms())?;
    }
    // Written once the hub knows the token: a file naming a token the hub
    // never registered would stop the next start from minting one.
    if let Some(t) = &new_admin_token {
        write_secret(&token_file, t)?;
    }
    let secret_file = data_dir.join("admin-setup-secret");
    let setup_secret_file = ensure_first_admin(&mut hub, &secret_file)?.then_some(secret_file);
    Ok(Opened {
        state: AppState::new(
            Replicas::new(
                std::iter::once(hub)
                    .chain(rest)
                    .enumerate()
                    .map(|(i, h)| {
                        HubHandle::spawn_sharing(h, &format!("hub-replica-{i}"), latency.clone())
                    })
                    .collect(),
            ),
            limits,
            readers,
        ),
        cluster: None,
        admin_token_file: token_file,
        new_admin_token,
        setup_secret_file,
    })
}
