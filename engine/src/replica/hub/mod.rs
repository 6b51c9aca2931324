//! The hub as a state machine: the authoritative replica of every store's
//! documents. It authenticates connections (by token hash), scopes each
//! store to its own documents, validates every incoming change, persists
//! what it accepts before answering, and fans changes out to every other
//! connection that syncs the same document.

use crate::storage::roles::*;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use automerge::{ActorId, Automerge, Change, ChangeHash};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

mod accounts;
mod batch;
mod cache;
mod connections;
mod edits;
mod ownership;
mod peer_sync;
mod status_projection;
mod validate;

pub use batch::{Batch, LOADED_BATCH};
// A terminal reads a peer terminal's sync messages the way the hub does.
use connections::{storage_peer, Conn};
pub(crate) use peer_sync::{changes_in, missing_dependencies};
use status_projection::StatusProjection;

use super::connectivity::{StoreActivity, StoreLink};
use super::rate::TokenBucket;
use super::{ConnId, Moved, Output, Refusal};
use crate::document::directory::{self, DirectoryEntry};
use crate::document::{instance, DocKind};
use crate::ids::{DocumentId, Principal, StoreId, WorkerId};
use crate::model::{InstanceContent, ModelError};
use crate::protocol::wire::{
    self, PeerId, PeerMetadata, StorageId, WireError, WireLimits, WireMessage,
};
use crate::protocol::{Session, SessionEvent};
use crate::storage::{self, IndexedRows, StorageError, StoreRecord, TokenCheck};
use crate::validation::{self, Rejection, ValidationContext, Verdict};

/// The meta key of the hub's storage id.
const STORAGE_ID_KEY: &str = "storage_id";

/// Limits on what one connection may send.
#[derive(Debug, Clone)]
pub struct HubLimits {
    pub wire: WireLimits,
    /// Sustained messages per second per connection, and the burst allowed.
    pub messages_per_second: u32,
    pub message_burst: u32,
    /// Distinct documents one connection may sync.
    pub max_documents_per_connection: usize,
    /// How far (ms) an event may be dated after the hub's clock (rule 6).
    pub event_time_tolerance_ms: i64,
    /// Documents kept in memory; idle ones beyond this are evicted.
    pub max_cached_documents: usize,
    /// Days ahead (store-local) recurring lists are materialized, so
    /// terminals hold them before a long outage.
    pub horizon_days: i64,
    /// Lists dated more than this many days ago are deleted automatically
    /// (at the hub and, through their directories, on the terminals).
    /// `None` keeps everything.
    pub retention_days: Option<i64>,
    /// The server pings every connection this often (seconds) and closes
    /// one that sent nothing, not even a pong, for three intervals: a
    /// peer whose link died silently does not hold a slot forever.
    pub keepalive_secs: u64,
}

impl Default for HubLimits {
    fn default() -> Self {
        HubLimits {
            wire: WireLimits::default(),
            messages_per_second: 200,
            message_burst: 2000,
            max_documents_per_connection: 10_000,
            event_time_tolerance_ms: 5 * 60 * 1000,
            max_cached_documents: 10_000,
            horizon_days: super::DEFAULT_HORIZON_DAYS,
            retention_days: None,
            keepalive_secs: 30,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HubConfig {
    pub peer_id: PeerId,
    /// Stable across restarts, so clients key their sync state to it.
    pub storage_id: StorageId,
    pub limits: HubLimits,
}

/// Why an HQ operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("unknown store {0}; add it first")]
    UnknownStore(StoreId),
    #[error("document {0} is not stored at the hub")]
    UnknownDocument(DocumentId),
    #[error("document {doc} failed to load: {reason}")]
    Load { doc: DocumentId, reason: String },
    #[error("nothing was saved (the hub's database refused the commit); connections were closed to sync again")]
    NotSaved,
    /// In a cluster: another hub node serves this store now, and only it
    /// may write the store's documents.
    #[error(
        "store {0} is served by another hub node of the cluster: nothing was changed; send the \
         request to the node that serves it (hub cluster status names it)"
    )]
    ServedElsewhere(StoreId),
}

/// Why a connection was refused at the upgrade.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token: send Authorization: Bearer <token> or ?token=<token>")]
    Missing,
    #[error("unknown token")]
    Unknown,
    #[error("token expired")]
    Expired,
    #[error("token revoked")]
    Revoked,
    #[error("token store unavailable: {0}")]
    Storage(String),
}

/// [`Hub::authenticate`] on any connection to the hub's database, such as
/// a read-only one (`SqliteDatabase::open_reader`): it sees what the hub thread has
/// committed.
pub fn authenticate_on(
    store: &(impl Registry + ?Sized),
    token: Option<&str>,
    now_ms: i64,
) -> Result<Principal, AuthError> {
    let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
    match store.check_token(token_hash(token), now_ms) {
        Ok(TokenCheck::Valid(p)) => Ok(p),
        Ok(TokenCheck::Unknown) => Err(AuthError::Unknown),
        Ok(TokenCheck::Expired) => Err(AuthError::Expired),
        Ok(TokenCheck::Revoked) => Err(AuthError::Revoked),
        Err(e) => Err(AuthError::Storage(e.to_string())),
    }
}

/// SHA-256 of a token: only hashes are stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Counters for `/metrics`.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct HubCounters {
    pub changes_accepted: u64,
    pub changes_rejected: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub messages_in: u64,
}

impl HubCounters {
    /// Two hubs' counters together (a node's replica threads).
    pub fn plus(self, other: HubCounters) -> HubCounters {
        HubCounters {
            changes_accepted: self.changes_accepted + other.changes_accepted,
            changes_rejected: self.changes_rejected + other.changes_rejected,
            bytes_in: self.bytes_in + other.bytes_in,
            bytes_out: self.bytes_out + other.bytes_out,
            messages_in: self.messages_in + other.messages_in,
        }
    }
}

pub struct Hub {
    /// The hub's storage, through the role traits (SQLite by default).
    db: Box<dyn HubStorage>,
    cfg: HubConfig,
    docs: HashMap<DocumentId, Automerge>,
    conns: HashMap<ConnId, Conn>,
    subscribers: HashMap<DocumentId, BTreeSet<ConnId>>,
    counters: HubCounters,
    /// The status index, a projection of the instance documents.
    projection: StatusProjection,
    /// Each actor's last sequence number in a cached document, at the
    /// heads given: validation's starting point for the next batch on it
    /// when the document is still at those heads (else read again).
    seqs: HashMap<DocumentId, (Vec<ChangeHash>, HashMap<ActorId, u64>)>,
    /// Each store's workers whose status events validation accepts (on
    /// the roster now or once), at the directory heads they were read
    /// at: read again when the directory has moved.
    rosters: HashMap<StoreId, (Vec<ChangeHash>, Arc<HashSet<WorkerId>>)>,
    /// Which stores are connected and when each last synced.
    activity: StoreActivity,
    /// In a cluster, which stores this node serves now (the others'
    /// documents are another node's to write); `None`: every store.
    served: Option<Served>,
}

/// Which stores a cluster node serves now (see [`Hub::serve_only`]).
type Served = Box<dyn Fn(&StoreId) -> bool + Send>;
impl Hub {
    /// Open the hub over its database (any backend of the storage
    /// traits); the database's actor is HQ's.
    pub fn open(db: impl HubStorage + 'static, cfg: HubConfig) -> Result<Hub, HubError> {
        Hub::open_boxed(Box::new(db), cfg)
    }

    /// [`Hub::open`] on a backend chosen at run time.
    pub fn open_boxed(mut db: Box<dyn HubStorage>, cfg: HubConfig) -> Result<Hub, HubError> {
        let actor = db.actor_id();
        db.claim_actor(&actor, &Principal::Hq)?;
        let projection = StatusProjection::open(&*db)?;
        Ok(Hub {
            db,
            cfg,
            docs: HashMap::new(),
            conns: HashMap::new(),
            subscribers: HashMap::new(),
            counters: HubCounters::default(),
            projection,
            seqs: HashMap::new(),
            rosters: HashMap::new(),
            activity: StoreActivity::default(),
            served: None,
        })
    }

    /// The storage id this hub's database keeps across restarts (clients
    /// key their saved sync state to it), or `fresh` stored as it on the
    /// first open.
    /// The storage id this hub tells its peers (`HubConfig::storage_id`).
    pub fn storage_id(&self) -> &StorageId {
        &self.cfg.storage_id
    }

    pub fn storage_id_of(
        db: &mut (impl Replica + ?Sized),
        fresh: &str,
    ) -> Result<StorageId, HubError> {
        let id = match db.get_meta(STORAGE_ID_KEY)? {
            Some(b) => String::from_utf8_lossy(&b).into_owned(),
            None => {
                db.set_meta(STORAGE_ID_KEY, fresh.as_bytes())?;
                fresh.to_owned()
            }
        };
        Ok(StorageId::new(id))
    }

    /// Register `token` as an HQ token (the admin token) unless the hub
    /// knows it already, whether valid, expired or revoked: a revoked
    /// admin token stays revoked across restarts. Returns whether it was
    /// added.
    pub fn ensure_hq_token(
        &mut self,
        token: &str,
        label: &str,
        now_ms: i64,
    ) -> Result<bool, HubError> {
        if self.db.check_token(token_hash(token), now_ms)? != TokenCheck::Unknown {
            return Ok(false);
        }
        self.db
            .put_token(token_hash(token), &Principal::Hq, label, now_ms, None)?;
        Ok(true)
    }

    /// The hub's database, for reads (tests, tools).
    pub fn db(&self) -> &dyn HubStorage {
        &*self.db
    }

    /// One bounded step of background compaction (see `Store::compact_some`).
    pub fn compact_storage(
        &mut self,
        threshold_changes: usize,
        max_documents: usize,
    ) -> Result<usize, HubError> {
        Ok(self.db.compact_some(threshold_changes, max_documents)?)
    }

    pub(crate) fn db_mut(&mut self) -> &mut dyn HubStorage {
        &mut *self.db
    }

    pub fn limits(&self) -> &HubLimits {
        &self.cfg.limits
    }

    pub fn counters(&self) -> HubCounters {
        self.counters
    }

    /// Check a token presented at the WebSocket upgrade.
    pub fn authenticate(&self, token: Option<&str>, now_ms: i64) -> Result<Principal, AuthError> {
        authenticate_on(&*self.db, token, now_ms)
    }

    /// Register a token (the caller made it from random bytes).
    pub fn add_token(
        &mut self,
        token: &str,
        principal: &Principal,
        label: &str,
        now_ms: i64,
        expires_at_ms: Option<i64>,
    ) -> Result<(), HubError> {
        if let Principal::Store(s) = principal {
            if self.db.get_store(s)?.is_none() {
                return Err(HubError::UnknownStore(s.clone()));
            }
        }
        self.db
            .put_token(token_hash(token), principal, label, now_ms, expires_at_ms)?;
        Ok(())
    }

    /// Add (or update) a store and make sure its directory document exists.
    pub fn add_store(&mut self, rec: &StoreRecord) -> Result<(), HubError> {
        crate::recurrence::parse_time_zone(&rec.time_zone).map_err(|e| ModelError::BadField {
            field: "time_zone",
            reason: e.to_string(),
        })?;
        self.db.put_store(rec)?;
        // In a cluster the store's node makes its directory when it takes
        // the store (`store_arrived`); the genesis is the same change on
        // every node.
        if self.serves(&rec.id) {
            self.ensure_directory(&rec.id)?;
        }
        Ok(())
    }

    /// The store's directory document, made if it does not exist yet.
    fn ensure_directory(&mut self, store: &StoreId) -> Result<(), HubError> {
        let dir = DocumentId::directory_of(store);
        if self.db.doc_owner(dir)?.is_none() {
            let g = crate::document::genesis::genesis(dir, DocKind::Directory);
            self.db.append_changes(dir, &[g])?;
            self.db.set_doc_owner(dir, store, DocKind::Directory)?;
        }
        Ok(())
    }

    /// In a cluster: serve only the stores `f` says this node serves now
    /// (it holds their lease). HQ writes to another store's documents are
    /// refused with [`HubError::ServedElsewhere`] before anything is
    /// written, and timers (materialization, retention, index catch-up)
    /// leave other stores to their nodes.
    ///
    /// The status index's due marks read at open are dropped: until it
    /// takes stores over, this node serves none, and `store_arrived` reads
    /// a store's marks again (otherwise each node, and each replica thread
    /// of a node, would count every other one's backlog as its own).
    pub fn serve_only(&mut self, f: impl Fn(&StoreId) -> bool + Send + 'static) {
        self.served = Some(Box::new(f));
        self.projection.forget_due();
    }

    /// Whether this node serves `store` now (always, outside a cluster).
    pub fn serves(&self, store: &StoreId) -> bool {
        self.served.as_ref().is_none_or(|f| f(store))
    }

    /// Whether this hub serves only some stores (`serve_only`: a cluster
    /// node or one of its replica threads).
    pub(crate) fn serves_some_stores_only(&self) -> bool {
        self.served.is_some()
    }

    /// Refuse a write to a store another node serves.
    pub(crate) fn require_served(&self, store: &StoreId) -> Result<(), HubError> {
        if self.serves(store) {
            Ok(())
        } else {
            Err(HubError::ServedElsewhere(store.clone()))
        }
    }

    /// Whether this node serves the store `doc` belongs to (a document
    /// with no recorded store: yes, nobody else does).
    pub(crate) fn serves_doc(&self, doc: DocumentId) -> bool {
        match self.db.doc_owner(doc) {
            Ok(Some((store, _))) => self.serves(&store),
            _ => true,
        }
    }

    /// This node has just taken `store` over (claimed its lease): what it
    /// cached of the store from an earlier turn may be behind what another
    /// node wrote since, so it is dropped and read again on use; the
    /// store's directory is made if nobody made it yet; and lists another
    /// node left with their status index behind are caught up here.
    pub fn store_arrived(&mut self, store: &StoreId) -> Result<(), HubError> {
        let docs = self.db.documents_of_store(store)?;
        for d in &docs {
            self.uncache(*d);
            self.seqs.remove(d);
        }
        self.rosters.remove(store);
        self.ensure_directory(store)?;
        let due: HashSet<DocumentId> = self.db.index_due()?.into_iter().collect();
        self.projection
            .mark_due(docs.into_iter().filter(|d| due.contains(d)));
        Ok(())
    }
}
