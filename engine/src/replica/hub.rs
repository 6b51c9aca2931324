//! The hub as a state machine: the authoritative replica of every store's
//! documents. It authenticates connections (by token hash), scopes each
//! store to its own documents, validates every incoming change, persists
//! what it accepts before answering, and fans changes out to every other
//! connection that syncs the same document.

use crate::storage::roles::*;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use automerge::sync;
use automerge::{ActorId, Automerge, Change, ChangeHash};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use super::connectivity::{StoreActivity, StoreLink};
use super::rate::TokenBucket;
use super::{ConnId, Output, Refusal};
use crate::document::directory::{self, DirectoryEntry};
use crate::document::{instance, DocKind};
use crate::ids::{DocumentId, Principal, StoreId, WorkerId};
use crate::model::{InstanceContent, ModelError};
use crate::protocol::wire::{
    self, PeerId, PeerMetadata, StorageId, WireError, WireLimits, WireMessage,
};
use crate::protocol::{Session, SessionEvent};
use crate::storage::{self, IndexedRows, SqliteDatabase, StorageError, StoreRecord, TokenCheck};
use crate::validation::{self, Rejection, ValidationContext, Verdict};

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
    store: &SqliteDatabase,
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

struct Conn {
    principal: Principal,
    session: Session,
    storage_id: Option<StorageId>,
    bucket: TokenBucket,
    /// Changes this peer sent whose dependencies have not arrived yet, per
    /// document. Kept (not applied: they are unvalidated) and re-validated
    /// with the next batch; their missing dependencies are asked for in
    /// `need`, which is how Automerge recovers from a Bloom-filter false
    /// positive on the sender's side.
    waiting: HashMap<DocumentId, Vec<Change>>,
}

/// What `validate_and_store` did with a batch: how many changes were
/// accepted (and stored), the rejections to report, and the changes left
/// waiting for dependencies.
type Stored = (usize, Vec<(ChangeHash, Rejection)>, Vec<Change>);

/// Most changes one connection may leave waiting for dependencies.
const MAX_WAITING_CHANGES: usize = 10_000;

/// Counters for `/metrics`.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct HubCounters {
    pub changes_accepted: u64,
    pub changes_rejected: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub messages_in: u64,
}

pub struct Hub {
    db: SqliteDatabase,
    cfg: HubConfig,
    docs: HashMap<DocumentId, Automerge>,
    conns: HashMap<ConnId, Conn>,
    subscribers: HashMap<DocumentId, BTreeSet<ConnId>>,
    counters: HubCounters,
    /// Lists changed in the current batch: marked due at its commit.
    index_pending: HashSet<DocumentId>,
    /// Lists whose status index rows are behind their documents (marked
    /// in storage too). Sync comes first: they are indexed when the hub
    /// is idle (`catch_up_index`) or before the index is read
    /// (`indexed_store`), each once however many batches changed it.
    index_due: HashSet<DocumentId>,
    /// What the status index holds for instances in `docs`, as `reindex`
    /// last wrote it, so the next `reindex` writes only what changed. An
    /// entry goes with its document, and whenever the table may no longer
    /// match it (a failed write, a rolled-back batch, a purge).
    indexed: HashMap<DocumentId, IndexedRows>,
    /// The view each cached instance had when last indexed, and its heads:
    /// what a change that only appends status events is read against
    /// (`instance::refresh`) instead of parsing the whole log again.
    views: HashMap<DocumentId, (Vec<ChangeHash>, instance::InstanceView)>,
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
}

impl Hub {
    /// Open the hub over its store; the store's actor is HQ's.
    pub fn open(mut db: SqliteDatabase, cfg: HubConfig) -> Result<Hub, HubError> {
        let actor = db.actor_id();
        db.claim_actor(&actor, &Principal::Hq)?;
        // Lists a crash left behind in the index.
        let index_due = db.index_due()?.into_iter().collect();
        Ok(Hub {
            db,
            cfg,
            docs: HashMap::new(),
            conns: HashMap::new(),
            subscribers: HashMap::new(),
            counters: HubCounters::default(),
            index_pending: HashSet::new(),
            index_due,
            indexed: HashMap::new(),
            views: HashMap::new(),
            seqs: HashMap::new(),
            rosters: HashMap::new(),
            activity: StoreActivity::default(),
        })
    }

    pub fn db(&self) -> &SqliteDatabase {
        &self.db
    }

    /// Drop a document from memory and from every session (it was deleted).
    pub(crate) fn forget_document(&mut self, doc: DocumentId) {
        self.uncache(doc);
        self.index_due.remove(&doc);
        if let Some(subs) = self.subscribers.remove(&doc) {
            for conn in subs {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.session.drop_document(doc);
                    c.waiting.remove(&doc);
                }
            }
        }
    }

    /// One bounded step of background compaction (see `Store::compact_some`).
    pub fn compact_storage(
        &mut self,
        threshold_changes: usize,
        max_documents: usize,
    ) -> Result<usize, HubError> {
        Ok(self.db.compact_some(threshold_changes, max_documents)?)
    }

    pub(crate) fn db_mut(&mut self) -> &mut SqliteDatabase {
        &mut self.db
    }

    pub fn limits(&self) -> &HubLimits {
        &self.cfg.limits
    }

    pub fn counters(&self) -> HubCounters {
        self.counters
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Principals of the open connections (for "stores online").
    pub fn connected_principals(&self) -> Vec<Principal> {
        self.conns.values().map(|c| c.principal.clone()).collect()
    }

    /// Close every connection of `principal` (a token was revoked or
    /// expired, or the store removed): it has to authenticate again.
    pub fn close_principal(&mut self, principal: &Principal, reason: &str) -> Vec<Output> {
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| &c.principal == principal)
            .map(|(id, _)| *id)
            .collect();
        conns
            .into_iter()
            .flat_map(|c| self.fatal(c, reason.to_owned()))
            .collect()
    }

    /// Group commit: the frames handled until `commit_batch` write in one
    /// transaction (one fsync). Outputs produced meanwhile must be held
    /// back until `commit_batch` returns Ok (persist before send).
    pub(crate) fn begin_batch(&mut self) -> Result<(), HubError> {
        Ok(self.db.begin_batch()?)
    }

    /// Make the batch durable. On error nothing in it was saved: the
    /// in-memory documents (which hold its changes) are dropped to reload
    /// from disk, and every connection is closed, because any session may
    /// believe it sent or was sent something the batch held; peers
    /// reconnect and sync again. The error's outputs replace the batch's.
    #[cfg(test)]
    pub(crate) fn commit_batch(&mut self) -> Result<(), Vec<Output>> {
        self.commit_batch_indexing(true)
    }

    /// [`Hub::commit_batch`], with the status index of the lists the batch
    /// changed written in the same transaction (`index_now`), or, when
    /// more frames are waiting, only marked due (in the same transaction)
    /// for `catch_up_index` once the hub is idle: sync comes first.
    pub(crate) fn commit_batch_indexing(&mut self, index_now: bool) -> Result<(), Vec<Output>> {
        let mut pending: Vec<DocumentId> = self.index_pending.drain().collect();
        if index_now {
            // A list whose rows could not be written stays due.
            pending = std::mem::take(&mut pending)
                .into_iter()
                .filter(|doc| self.load(*doc).is_ok() && !self.reindex(*doc))
                .collect();
        }
        let marked = self.db.mark_index_due(&pending);
        match marked.and_then(|()| self.db.commit_batch()) {
            Ok(()) => {
                self.index_due.extend(pending);
                Ok(())
            }
            Err(e) => {
                warn!(error = %e, "could not commit a batch of frames; closing every connection");
                self.docs.clear();
                // The batch's index writes were rolled back too.
                self.indexed.clear();
                self.views.clear();
                let conns: Vec<ConnId> = self.conns.keys().copied().collect();
                let mut out = Vec::new();
                for c in conns {
                    out.extend(self.fatal(c, format!("hub could not store changes: {e}")));
                }
                Err(out)
            }
        }
    }

    pub fn cached_document_count(&self) -> usize {
        self.docs.len()
    }

    /// Run an HQ operation (a publish: its list, owner, content hashes,
    /// index rows and directory entry) in one transaction, one fsync,
    /// instead of one per write. Its outputs are returned only once that
    /// commit succeeded (persist before send); if it fails, nothing of the
    /// batch was saved and every connection is closed (see `commit_batch`).
    pub fn batched<T>(
        &mut self,
        f: impl FnOnce(&mut Hub) -> Result<(T, Vec<Output>), HubError>,
    ) -> (Result<T, HubError>, Vec<Output>) {
        let split = |r: Result<(T, Vec<Output>), HubError>| match r {
            Ok((t, out)) => (Ok(t), out),
            Err(e) => (Err(e), Vec::new()),
        };
        if self.db.in_batch() {
            return split(f(self));
        }
        if let Err(e) = self.begin_batch() {
            return (Err(e), Vec::new());
        }
        let r = f(self);
        // An operation that failed half-way keeps what it wrote, as its
        // writes did when each committed on its own. A publish to many
        // stores leaves their status index for when the hub is idle (or
        // the index is read): the stores get their lists sooner.
        let index_now = self.index_pending.len() <= 1;
        match self.commit_batch_indexing(index_now) {
            Ok(()) => split(r),
            Err(closing) => (Err(HubError::NotSaved), closing),
        }
    }

    /// Lists whose status index is behind their documents.
    pub fn index_backlog(&self) -> usize {
        self.index_due.len()
    }

    /// Bring every due list's status index up to date, in one
    /// transaction; returns how many were indexed. A failure is logged and
    /// the lists stay due: the index is derived data.
    pub fn catch_up_index(&mut self) -> usize {
        self.catch_up_index_while(|| true)
    }

    /// Lists of `store` (of every store for `None`) whose status index is
    /// behind their documents: what a query over that store would miss.
    pub fn index_due_of(&self, store: Option<&StoreId>) -> Result<Vec<DocumentId>, HubError> {
        Ok(match store {
            None => self.index_due.iter().copied().collect(),
            Some(s) => self
                .db
                .documents_of_store(s)?
                .into_iter()
                .filter(|d| self.index_due.contains(d))
                .collect(),
        })
    }

    /// Bring the status index of those of `docs` still due up to date, in
    /// one transaction; returns how many were indexed. A failure is
    /// logged and they stay due, as in `catch_up_index`.
    pub fn catch_up_index_of(&mut self, docs: &[DocumentId]) -> usize {
        let mut docs = docs.iter().copied();
        self.catch_up_each(|hub| docs.find(|d| hub.index_due.contains(d)))
    }

    /// Bring due lists' status index up to date one after another, in one
    /// transaction, for as long as `more()` says (asked after each list;
    /// at least one is indexed if any is due): the idle hub thread's
    /// catch-up, which stops as soon as a command arrives. Returns how many
    /// were indexed; failures as in `catch_up_index`.
    pub fn catch_up_index_while(&mut self, mut more: impl FnMut() -> bool) -> usize {
        let mut first = true;
        // Taken once: looking for the first entry of a set being emptied
        // scans its emptied buckets again every time.
        let mut due: Vec<DocumentId> = self.index_due.iter().copied().collect();
        self.catch_up_each(|hub| {
            if !std::mem::take(&mut first) && !more() {
                return None;
            }
            while let Some(d) = due.pop() {
                if hub.index_due.contains(&d) {
                    return Some(d);
                }
            }
            None
        })
    }

    /// Index the lists `next` names, until it says None, in one
    /// transaction (unless a batch is open).
    fn catch_up_each(&mut self, mut next: impl FnMut(&Hub) -> Option<DocumentId>) -> usize {
        let Some(mut d) = next(self) else {
            return 0;
        };
        let own_batch = !self.db.in_batch();
        if own_batch {
            if let Err(e) = self.db.begin_batch() {
                warn!(error = %e, "could not start indexing; will try again");
                return 0;
            }
        }
        let mut docs = Vec::new();
        let mut failed = Vec::new();
        loop {
            self.index_due.remove(&d);
            docs.push(d);
            let was_cached = self.docs.contains_key(&d);
            match self.load(d) {
                Ok(()) => {
                    if !self.reindex(d) {
                        failed.push(d);
                    }
                }
                // Deleted since, or unreadable: nothing to index.
                Err(e) => debug!(doc = %d, error = %e, "not indexed"),
            }
            // Loaded only to be indexed (after a restart): not kept, so
            // catching up does not fill memory with lists nobody syncs.
            if !was_cached && self.subscribers.get(&d).is_none_or(|s| s.is_empty()) {
                self.uncache(d);
            }
            match next(self) {
                Some(n) => d = n,
                None => break,
            }
        }
        if own_batch {
            if let Err(e) = self.db.commit_batch() {
                warn!(error = %e, "could not write the status index; will try again");
                self.indexed.clear();
                self.index_due.extend(docs);
                return 0;
            }
        }
        // Still due (their marks were not cleared either): tried again later.
        let indexed = docs.len() - failed.len();
        self.index_due.extend(failed);
        indexed
    }

    /// The store with the status index caught up: what the dashboard's
    /// queries read.
    pub fn indexed_store(&mut self) -> &SqliteDatabase {
        self.catch_up_index();
        &self.db
    }

    /// Instances whose index rows `reindex` remembers (bounded by `docs`).
    #[cfg(test)]
    pub(crate) fn indexed_document_count(&self) -> usize {
        self.indexed.len()
    }

    /// Instances whose last indexed view `reindex` keeps (bounded by `docs`).
    #[cfg(test)]
    pub(crate) fn viewed_document_count(&self) -> usize {
        self.views.len()
    }

    // ---- HQ operations -------------------------------------------------

    /// Check a token presented at the WebSocket upgrade.
    pub fn authenticate(&self, token: Option<&str>, now_ms: i64) -> Result<Principal, AuthError> {
        authenticate_on(&self.db, token, now_ms)
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
        let dir = DocumentId::directory_of(&rec.id);
        if self.db.doc_owner(dir)?.is_none() {
            let g = crate::document::genesis::genesis(dir, DocKind::Directory);
            self.db.append_changes(dir, &[g])?;
            self.db.set_doc_owner(dir, &rec.id, DocKind::Directory)?;
        }
        Ok(())
    }

    /// Materialize an instance for its store, list it in the store's
    /// directory, persist both, and push them to every connected syncer.
    /// In a batch (`batched`) a publish that fails part-way is undone
    /// whole, its rows and what it changed in memory, so a publish to
    /// many stores keeps only complete lists.
    pub fn publish(
        &mut self,
        content: &InstanceContent,
        now_ms: i64,
    ) -> Result<Vec<Output>, HubError> {
        let store_id = content.meta.store.clone();
        if self.db.get_store(&store_id)?.is_none() {
            return Err(HubError::UnknownStore(store_id));
        }
        let changes = instance::materialize(content)?;
        if !self.db.in_batch() {
            return self.publish_changes(content, changes, now_ms);
        }
        self.db.begin_operation()?;
        match self.publish_changes(content, changes, now_ms) {
            Ok(out) => {
                self.db.end_operation()?;
                Ok(out)
            }
            Err(e) => {
                if let Err(r) = self.db.rollback_operation() {
                    // The batch is lost then, and its commit says so.
                    warn!(error = %r, "could not undo a failed publish");
                }
                // Reloaded from disk when next used.
                self.uncache(content.id);
                self.uncache(DocumentId::directory_of(&store_id));
                self.index_pending.remove(&content.id);
                Err(e)
            }
        }
    }

    /// `publish`'s writes. Nothing goes out before the last of them
    /// succeeded (a failed publish leaves no session believing it sent
    /// something).
    fn publish_changes(
        &mut self,
        content: &InstanceContent,
        changes: Vec<Change>,
        now_ms: i64,
    ) -> Result<Vec<Output>, HubError> {
        let store_id = &content.meta.store;
        let hashes: Vec<ChangeHash> = changes.iter().map(|c| c.hash()).collect();
        let is_new = self.db.doc_owner(content.id)?.is_none();
        self.db.add_known_content(content.id, &hashes)?;
        self.db
            .set_doc_owner(content.id, store_id, DocKind::Instance)?;
        self.db.append_changes(content.id, &changes)?;
        if let Some(doc) = self.docs.get_mut(&content.id) {
            doc.apply_changes(changes)
                .map_err(|e| ModelError::Automerge(e.to_string()))?;
        } else if is_new {
            // Nothing else is stored for it: the changes just written are
            // the whole document (no need to read them back).
            let mut doc = Automerge::new();
            doc.apply_changes(changes)
                .map_err(|e| ModelError::Automerge(e.to_string()))?;
            self.cache(content.id, doc);
        }
        self.load(content.id)?;
        // For a publish to many stores, once the hub is idle (`batched`).
        self.index_changed(content.id);
        let entry = DirectoryEntry {
            name: content.meta.name.clone(),
            date: content.meta.date,
            template: content.meta.template,
            created_by: content.meta.created_by.clone(),
        };
        let dir_id = DocumentId::directory_of(store_id);
        let mut out = self.edit(dir_id, now_ms, |doc| {
            directory::put_entry(doc, content.id, &entry, now_ms).map(|c| c.into_iter().collect())
        })?;
        out.extend(self.fan_out(content.id, None));
        Ok(out)
    }

    /// Make an HQ edit to a document: run `f` on the hub's copy, persist
    /// its changes, and push them to every connection syncing the document.
    /// Returns the outputs to deliver (empty when `f` changed nothing).
    pub fn edit(
        &mut self,
        doc_id: DocumentId,
        _now_ms: i64,
        f: impl FnOnce(&mut Automerge) -> Result<Vec<Change>, ModelError>,
    ) -> Result<Vec<Output>, HubError> {
        self.load(doc_id)?;
        let doc = self.docs.get_mut(&doc_id).expect("loaded above");
        let changes = f(doc)?;
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        if let Err(e) = self.db.append_changes(doc_id, &changes) {
            // Not durable: drop the in-memory copy so nothing unsaved is served.
            self.docs.remove(&doc_id);
            return Err(e.into());
        }
        if matches!(self.db.doc_owner(doc_id)?, Some((_, DocKind::Instance))) {
            self.reindex(doc_id);
        }
        Ok(self.fan_out(doc_id, None))
    }

    /// Refresh the status index rows of an instance after it changed,
    /// writing only the rows that differ from what the last refresh wrote
    /// (all of them when that is not known). The index is derived data: a
    /// failure is logged, never fatal; false then (the list is still due).
    pub(crate) fn reindex(&mut self, doc_id: DocumentId) -> bool {
        let Some(doc) = self.docs.get(&doc_id) else {
            return false;
        };
        let heads = doc.get_heads();
        let refreshed = self
            .views
            .remove(&doc_id)
            .and_then(|(since, old)| instance::refresh(doc, &since, &old));
        let view = match refreshed.map(Ok).unwrap_or_else(|| instance::read(doc)) {
            Ok(view) => view,
            Err(e) => {
                // Not a readable instance: nothing to index, now or later.
                debug!(doc = %doc_id, error = %e, "not indexed");
                return true;
            }
        };
        // Taken out before the write: if it fails, the next refresh
        // rewrites every row of the list.
        let last = self.indexed.remove(&doc_id);
        let written = match self.db.update_index(&view, last.as_ref()) {
            Ok(update) => {
                self.indexed.insert(doc_id, update.rows);
                true
            }
            Err(e) => {
                warn!(doc = %doc_id, error = %e, "could not update the status index");
                false
            }
        };
        // The view is the document's, whatever became of the write.
        self.views.insert(doc_id, (heads, view));
        written
    }

    /// The document as the hub holds it (loaded into memory if needed).
    pub fn document(&mut self, doc_id: DocumentId) -> Result<&Automerge, HubError> {
        self.load(doc_id)?;
        Ok(self.docs.get(&doc_id).expect("loaded above"))
    }

    fn load(&mut self, doc_id: DocumentId) -> Result<(), HubError> {
        if self.docs.contains_key(&doc_id) {
            return Ok(());
        }
        let doc = match self.db.load_document(doc_id) {
            Ok(Some(d)) => d,
            Ok(None) => return Err(HubError::UnknownDocument(doc_id)),
            Err(e) => {
                return Err(HubError::Load {
                    doc: doc_id,
                    reason: e.to_string(),
                })
            }
        };
        self.cache(doc_id, doc);
        Ok(())
    }

    /// Hold `doc` in memory (the hub's actor set), evicting idle ones.
    fn cache(&mut self, doc_id: DocumentId, mut doc: Automerge) {
        doc.set_actor(self.db.actor_id());
        self.evict_idle();
        self.docs.insert(doc_id, doc);
    }

    /// Drop a document from memory with what `reindex` kept of it.
    fn uncache(&mut self, doc_id: DocumentId) {
        self.docs.remove(&doc_id);
        self.indexed.remove(&doc_id);
        self.views.remove(&doc_id);
        self.seqs.remove(&doc_id);
    }

    /// An instance changed: in a batch its index is written once at the
    /// commit (or marked due, see `commit_batch_indexing`), else now.
    fn index_changed(&mut self, doc_id: DocumentId) {
        if self.db.in_batch() {
            self.index_pending.insert(doc_id);
        } else {
            self.reindex(doc_id);
        }
    }

    /// Keep memory bounded: drop documents nobody is syncing once over the cap.
    fn evict_idle(&mut self) {
        // A document dropped after a failed write (in `on_sync`, `edit`)
        // leaves what `reindex` knew of it behind; still true, but its
        // memory is only bounded by `docs` once swept.
        if self.indexed.len() > self.docs.len() {
            self.indexed.retain(|d, _| self.docs.contains_key(d));
        }
        if self.views.len() > self.docs.len() {
            self.views.retain(|d, _| self.docs.contains_key(d));
        }
        if self.docs.len() < self.cfg.limits.max_cached_documents {
            return;
        }
        let idle: Vec<DocumentId> = self
            .docs
            .keys()
            .filter(|d| self.subscribers.get(d).is_none_or(|s| s.is_empty()))
            .copied()
            .take(self.docs.len() + 1 - self.cfg.limits.max_cached_documents)
            .collect();
        for d in idle {
            self.uncache(d);
        }
    }

    // ---- connections ---------------------------------------------------

    /// A connection passed authentication.
    pub fn connect(&mut self, conn: ConnId, principal: Principal, now_ms: i64) {
        info!(conn, %principal, "connected");
        let seen = self.activity.connected(conn, &principal, now_ms);
        self.record_store_sync(seen);
        let meta = PeerMetadata {
            storage_id: Some(self.cfg.storage_id.clone()),
            is_ephemeral: false,
        };
        let l = &self.cfg.limits;
        self.conns.insert(
            conn,
            Conn {
                principal,
                session: Session::server(self.cfg.peer_id.clone(), meta),
                storage_id: None,
                bucket: TokenBucket::new(l.messages_per_second, l.message_burst, now_ms),
                waiting: HashMap::new(),
            },
        );
    }

    /// The connection is gone: save its sync states (one transaction).
    pub fn disconnect(&mut self, conn: ConnId) {
        let seen = self.activity.disconnected(conn);
        self.record_store_sync(seen);
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        info!(conn, principal = %c.principal, "disconnected");
        let docs: Vec<DocumentId> = c.session.documents().collect();
        for d in &docs {
            if let Some(s) = self.subscribers.get_mut(d) {
                s.remove(&conn);
                if s.is_empty() {
                    self.subscribers.remove(d);
                }
            }
        }
        if let Some(sid) = &c.storage_id {
            let states: Vec<(DocumentId, Vec<u8>)> = docs
                .iter()
                .filter_map(|d| c.session.encoded_sync_state(*d).map(|s| (*d, s)))
                .collect();
            if let Err(e) = self.db.save_sync_states(&storage_peer(sid), &states) {
                warn!(conn, error = %e, "could not save sync state; the peer will resync from scratch");
            }
        }
    }

    /// Persist a store's last-sync time (in the open unit of work, if
    /// any). Bookkeeping for the dashboard: a failure is logged, never
    /// fatal to sync.
    fn record_store_sync(&mut self, seen: Option<(StoreId, i64)>) {
        let Some(seen) = seen else { return };
        if let Err(e) = self.db.record_store_sync(std::slice::from_ref(&seen)) {
            warn!(store = %seen.0, error = %e, "could not record when the store last synced");
        }
    }

    /// Open connections and last-sync time (this run) of every store seen
    /// since the hub started.
    pub fn store_links(&self) -> HashMap<StoreId, StoreLink> {
        self.activity.links()
    }

    /// The hub stops: the status index catches up and every store's
    /// latest sync time is written.
    pub fn shut_down(&mut self) {
        self.catch_up_index();
        let rest = self.activity.unwritten();
        if let Err(e) = self.db.record_store_sync(&rest) {
            warn!(error = %e, "could not record when stores last synced");
        }
    }

    fn fatal(&mut self, conn: ConnId, reason: String) -> Vec<Output> {
        warn!(conn, %reason, "closing connection");
        let mut out = Vec::new();
        if let Some(c) = self.conns.get(&conn) {
            out.push(Output::Send {
                conn,
                frame: wire::encode(&c.session.error(reason.clone())),
            });
        }
        out.push(Output::Close { conn, reason });
        self.disconnect(conn);
        out
    }

    /// One document's sync message failed on `conn`: say why and forget
    /// that document's sync state with the peer (its next message starts
    /// over), but keep the connection, so its other documents go on.
    fn document_failed(&mut self, conn: ConnId, doc_id: DocumentId, reason: String) -> Vec<Output> {
        warn!(conn, doc = %doc_id, %reason, "a document's sync failed; the connection stays");
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        c.session.drop_document(doc_id);
        c.waiting.remove(&doc_id);
        let err = c.session.error(reason);
        if let Some(subs) = self.subscribers.get_mut(&doc_id) {
            subs.remove(&conn);
        }
        vec![self.send(conn, &err)]
    }

    fn send(&mut self, conn: ConnId, msg: &WireMessage) -> Output {
        let frame = wire::encode(msg);
        self.counters.bytes_out += frame.len() as u64;
        Output::Send { conn, frame }
    }

    /// One frame from a connection.
    pub fn receive(&mut self, conn: ConnId, frame: &[u8], now_ms: i64) -> Vec<Output> {
        self.counters.bytes_in += frame.len() as u64;
        self.counters.messages_in += 1;
        let seen = self.activity.frame(conn, now_ms);
        self.record_store_sync(seen);
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        if !c.bucket.take(now_ms) {
            return self.fatal(
                conn,
                format!(
                    "message rate over {} per second; slow down and reconnect",
                    self.cfg.limits.messages_per_second
                ),
            );
        }
        let msg = match wire::decode(frame, &self.cfg.limits.wire) {
            Ok(m) => m,
            Err(WireError::UnknownType { msg_type }) => {
                debug!(conn, %msg_type, "ignoring unknown message type");
                return Vec::new();
            }
            Err(e) => return self.fatal(conn, format!("bad message: {e}")),
        };
        let (event, reply) = match c.session.receive(msg) {
            Ok(r) => r,
            Err(e) => return self.fatal(conn, e.to_string()),
        };
        let mut out = Vec::new();
        if let Some(r) = reply {
            out.push(self.send(conn, &r));
        }
        match event {
            SessionEvent::Opened {
                storage_id,
                ephemeral,
                ..
            } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.storage_id = if ephemeral { None } else { storage_id };
                }
            }
            SessionEvent::Sync { doc, message, .. } => {
                out.extend(self.on_sync(conn, doc, message, now_ms))
            }
            SessionEvent::Unavailable { .. } | SessionEvent::Ignored(_) => {}
            SessionEvent::RemoteError { message } => {
                debug!(conn, %message, "peer reported an error")
            }
            SessionEvent::Leave => {
                self.disconnect(conn);
                out.push(Output::Close {
                    conn,
                    reason: "peer left".into(),
                });
            }
        }
        out
    }

    /// May this connection's principal see `doc`? Missing and forbidden
    /// look the same from outside.
    fn visible(
        &self,
        principal: &Principal,
        doc: DocumentId,
    ) -> Result<Option<(StoreId, DocKind)>, StorageError> {
        Ok(match (self.db.doc_owner(doc)?, principal) {
            (Some(owner), Principal::Hq) => Some(owner),
            (Some(owner), Principal::Store(s)) if &owner.0 == s => Some(owner),
            _ => None,
        })
    }

    fn on_sync(
        &mut self,
        conn: ConnId,
        doc_id: DocumentId,
        mut message: sync::Message,
        now_ms: i64,
    ) -> Vec<Output> {
        let Some(c) = self.conns.get(&conn) else {
            return Vec::new();
        };
        let principal = c.principal.clone();
        let owner = match self.visible(&principal, doc_id) {
            Ok(Some(o)) => o,
            Ok(None) => {
                let msg = c.session.unavailable(doc_id);
                return msg.map(|m| self.send(conn, &m)).into_iter().collect();
            }
            Err(e) => return self.fatal(conn, format!("hub storage error: {e}")),
        };
        if !c.session.has_document(doc_id)
            && c.session.document_count() >= self.cfg.limits.max_documents_per_connection
        {
            return self.fatal(
                conn,
                format!(
                    "more than {} documents on one connection",
                    self.cfg.limits.max_documents_per_connection
                ),
            );
        }
        let first_contact = !c.session.has_document(doc_id);
        let storage_id = c.storage_id.clone();
        if let Err(e) = self.load(doc_id) {
            warn!(conn, doc = %doc_id, error = %e, "document unavailable");
            let msg = self
                .conns
                .get(&conn)
                .and_then(|c| c.session.unavailable(doc_id));
            return msg.map(|m| self.send(conn, &m)).into_iter().collect();
        }
        if first_contact {
            if let Some(sid) = &storage_id {
                if let Ok(Some(state)) = self.db.load_sync_state(&storage_peer(sid), doc_id) {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.session.restore_sync_state(doc_id, &state);
                    }
                }
            }
        }
        self.subscribers.entry(doc_id).or_default().insert(conn);

        let mut out = Vec::new();
        let mut incoming = {
            let doc = self.docs.get(&doc_id).expect("loaded above");
            match changes_in(doc, &message) {
                Ok(c) => c,
                Err(e) => {
                    return self.document_failed(
                        conn,
                        doc_id,
                        format!("undecodable changes for {doc_id}: {e}"),
                    )
                }
            }
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            incoming.extend(c.waiting.remove(&doc_id).unwrap_or_default());
        }
        // The peer's heads, need and have go into the sync state *before*
        // its accepted changes reach the document: Automerge reads a message
        // without changes whose heads equal ours as an acknowledgement of
        // what we sent, and would then never answer, so the peer would never
        // see the hub's heads include its change (JS `getSyncInfo`, the
        // agent's unconfirmed count).
        message.changes = Vec::<Vec<u8>>::new().into();
        {
            let doc = self.docs.get_mut(&doc_id).expect("loaded above");
            let c = self.conns.get_mut(&conn).expect("checked above");
            if let Err(e) = c.session.apply(doc_id, doc, message) {
                return self.document_failed(
                    conn,
                    doc_id,
                    format!("bad sync message for {doc_id}: {e}"),
                );
            }
        }
        let mut accepted_any = false;
        if !incoming.is_empty() {
            match self.validate_and_store(doc_id, &owner, &principal, &incoming, now_ms) {
                Ok((accepted, rejections, waiting)) => {
                    accepted_any = accepted > 0;
                    if !waiting.is_empty() {
                        let total: usize = self
                            .conns
                            .get(&conn)
                            .map_or(0, |c| c.waiting.values().map(Vec::len).sum());
                        if total + waiting.len() > MAX_WAITING_CHANGES {
                            return self.fatal(conn, format!(
                                "more than {MAX_WAITING_CHANGES} changes waiting for their dependencies"
                            ));
                        }
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.waiting.insert(doc_id, waiting);
                        }
                    }
                    for (hash, rejection) in rejections {
                        let refusal = Refusal::new(doc_id, hash, &rejection);
                        warn!(conn, %principal, doc = %doc_id, %hash, reason = %refusal.reason, rule = %refusal.rule, "change rejected");
                        let err = self
                            .conns
                            .get(&conn)
                            .map(|c| c.session.error(refusal.encode()));
                        if let Some(e) = err {
                            out.push(self.send(conn, &e));
                        }
                    }
                }
                Err(e) => {
                    // Nothing was stored, so nothing may be acknowledged.
                    self.docs.remove(&doc_id);
                    return self.fatal(conn, format!("hub could not store changes: {e}"));
                }
            }
        }
        let doc = self.docs.get(&doc_id).expect("loaded above");
        let c = self.conns.get_mut(&conn).expect("checked above");
        let need = missing_dependencies(
            doc,
            c.waiting.get(&doc_id).map(Vec::as_slice).unwrap_or(&[]),
        );
        if let Some(reply) = c.session.generate_with_need(doc_id, doc, &need) {
            out.push(self.send(conn, &reply));
        }
        if accepted_any {
            out.extend(self.fan_out(doc_id, Some(conn)));
            match (&owner.1, &principal) {
                (DocKind::Instance, _) => self.index_changed(doc_id),
                // Lists the store made at a terminal become its documents
                // before the terminal's next frame (usually their sync).
                (DocKind::Directory, Principal::Store(s)) if s == &owner.0 => {
                    self.adopt_store_lists(doc_id, &owner.0)
                }
                _ => {}
            }
        }
        out
    }

    /// Validate, then persist the accepted changes (with their new actors)
    /// before applying them in memory. Returns the accepted count and the
    /// rejections to report.
    fn validate_and_store(
        &mut self,
        doc_id: DocumentId,
        owner: &(StoreId, DocKind),
        principal: &Principal,
        incoming: &[Change],
        now_ms: i64,
    ) -> Result<Stored, StorageError> {
        let known: HashSet<ChangeHash> = self.db.known_content(doc_id)?.into_iter().collect();
        // Only a store's status events name workers that must be checked.
        let roster = match (principal, owner.1) {
            (Principal::Store(_), DocKind::Instance) => Some(self.workers_of(&owner.0)?),
            _ => None,
        };
        let store = &self.db;
        let lookup = |a: &ActorId| store.actor_owner(a).ok().flatten();
        let worker_known = |w: &WorkerId| roster.as_ref().is_some_and(|r| r.contains(w));
        let ctx = ValidationContext {
            doc_id,
            kind: owner.1,
            owner: &owner.0,
            actor_owner: &lookup,
            known_content: &known,
            max_event_time: now_ms + self.cfg.limits.event_time_tolerance_ms,
            worker_known: &worker_known,
        };
        let doc = self.docs.get(&doc_id).expect("caller loaded it");
        let heads = doc.get_heads();
        let seqs = match self.seqs.remove(&doc_id) {
            Some((at, seqs)) if at == heads => Some(seqs),
            _ => None,
        };
        let mut outcome = validation::validate_with_seqs(doc, incoming, principal, &ctx, seqs);
        let seqs = std::mem::take(&mut outcome.seqs);
        let rejections: Vec<(ChangeHash, Rejection)> = outcome
            .verdicts
            .iter()
            .filter_map(|(h, v)| match v {
                Verdict::Rejected(r) => Some((*h, r.clone())),
                _ => None,
            })
            .collect();
        self.counters.changes_rejected += rejections.len() as u64;
        let waiting: Vec<Change> = incoming
            .iter()
            .filter(|c| outcome.verdict(&c.hash()) == Some(&Verdict::MissingDeps))
            .cloned()
            .collect();
        if outcome.accepted.is_empty() {
            self.seqs.insert(doc_id, (heads, seqs));
            return Ok((0, rejections, waiting));
        }
        self.db
            .commit_accepted(doc_id, &outcome.accepted, &outcome.new_actors, principal)?;
        self.counters.changes_accepted += outcome.accepted.len() as u64;
        // Validation already built the document with these changes in:
        // use it rather than applying them a second time.
        let accepted = outcome.accepted.len();
        match outcome.state {
            Some(mut state) => {
                state.set_actor(self.db.actor_id());
                self.seqs.insert(doc_id, (state.get_heads(), seqs));
                self.docs.insert(doc_id, state);
            }
            None => {
                let doc = self.docs.get_mut(&doc_id).expect("caller loaded it");
                doc.apply_changes(outcome.accepted).map_err(|e| {
                    StorageError::damaged_document_at(
                        self.db.path().display().to_string(),
                        doc_id,
                        e.to_string(),
                    )
                })?;
            }
        }
        Ok((accepted, rejections, waiting))
    }

    /// The workers whose status events `store`'s terminals may record:
    /// those on its roster now and those HQ took off it (a terminal that
    /// was offline then still records what they did before it heard).
    /// Read from the store's directory (loaded if need be) when it has
    /// moved since the last time.
    fn workers_of(&mut self, store: &StoreId) -> Result<Arc<HashSet<WorkerId>>, StorageError> {
        let dir = DocumentId::directory_of(store);
        if let Err(e) = self.load(dir) {
            // Every store has a directory from the moment it is added;
            // without one the roster is empty, and the events wait for
            // nothing: they are refused with a reason the terminal shows.
            warn!(%store, error = %e, "no directory to read the roster from");
        }
        let heads = self.docs.get(&dir).map(|d| d.get_heads());
        if let (Some(heads), Some((at, workers))) = (&heads, self.rosters.get(store)) {
            if at == heads {
                return Ok(workers.clone());
            }
        }
        let mut workers: HashSet<WorkerId> = self.db.former_workers(store)?.into_iter().collect();
        if let Some(d) = self.docs.get(&dir) {
            workers.extend(directory::roster_ids(d));
        }
        let workers = Arc::new(workers);
        if let Some(heads) = heads {
            self.rosters.insert(store.clone(), (heads, workers.clone()));
        }
        Ok(workers)
    }

    /// Send `doc`'s news to every connection syncing it (except `skip`).
    fn fan_out(&mut self, doc_id: DocumentId, skip: Option<ConnId>) -> Vec<Output> {
        let Some(subs) = self.subscribers.get(&doc_id) else {
            return Vec::new();
        };
        let subs: Vec<ConnId> = subs.iter().copied().filter(|c| Some(*c) != skip).collect();
        let Some(doc) = self.docs.get(&doc_id) else {
            return Vec::new();
        };
        let mut msgs = Vec::new();
        for conn in subs {
            if let Some(c) = self.conns.get_mut(&conn) {
                if let Some(m) = c.session.generate(doc_id, doc) {
                    msgs.push((conn, m));
                }
            }
        }
        msgs.into_iter()
            .map(|(conn, m)| self.send(conn, &m))
            .collect()
    }
}

/// The individual changes a sync message carries. A v1 message has one
/// change per chunk; a v2 message concatenates change chunks into one
/// chunk, or carries a whole saved document. Each change is split out
/// (so one whose dependencies are missing is kept, not silently queued);
/// a saved document's changes are the ones it adds to `doc`.
fn changes_in(
    doc: &Automerge,
    message: &sync::Message,
) -> Result<Vec<Change>, automerge::AutomergeError> {
    let mut out = Vec::new();
    let mut scratch: Option<Automerge> = None;
    for data in message.changes.iter() {
        for (kind, chunk) in storage_chunks(data) {
            match kind {
                CHUNK_CHANGE | CHUNK_COMPRESSED_CHANGE => {
                    match Change::from_bytes(chunk.to_vec()) {
                        Ok(c) => out.push(c),
                        Err(e) => {
                            debug!(error = %e, "undecodable change chunk");
                            return Err(automerge::AutomergeError::Fail);
                        }
                    }
                }
                _ => {
                    let s = scratch.get_or_insert_with(|| doc.fork());
                    s.load_incremental(chunk)?;
                }
            }
        }
    }
    if let Some(s) = scratch {
        out.extend(doc.get_changes_added(&s));
    }
    Ok(out)
}

const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_CHANGE: u8 = 1;
const CHUNK_COMPRESSED_CHANGE: u8 = 2;

/// Split concatenated Automerge storage chunks (magic, checksum, type,
/// LEB128 length, body). Anything that does not parse is returned whole,
/// as one chunk of unknown kind, for `load_incremental` to judge.
fn storage_chunks(data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some((kind, len)) = chunk_header(rest) else {
            out.push((u8::MAX, rest));
            break;
        };
        out.push((kind, &rest[..len]));
        rest = &rest[len..];
    }
    out
}

/// (chunk type, total chunk length) of the chunk at the start of `data`.
fn chunk_header(data: &[u8]) -> Option<(u8, usize)> {
    if data.len() < 9 || data[..4] != CHUNK_MAGIC {
        return None;
    }
    let kind = data[8];
    let (mut body_len, mut shift, mut i) = (0u64, 0u32, 9usize);
    loop {
        let b = *data.get(i)?;
        body_len |= u64::from(b & 0x7f).checked_shl(shift)?;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let total = i.checked_add(usize::try_from(body_len).ok()?)?;
    (total <= data.len()).then_some((kind, total))
}

/// Dependencies of `waiting` changes that are neither in `doc` nor among
/// the waiting changes themselves: what to ask the peer for.
fn missing_dependencies(doc: &Automerge, waiting: &[Change]) -> Vec<ChangeHash> {
    let have: HashSet<ChangeHash> = waiting.iter().map(|c| c.hash()).collect();
    let mut need: Vec<ChangeHash> = waiting
        .iter()
        .flat_map(|c| c.deps().iter().copied())
        .filter(|d| !have.contains(d) && doc.get_change_meta_by_hash(d).is_none())
        .collect();
    need.sort();
    need.dedup();
    need
}

fn storage_peer(sid: &StorageId) -> storage::PeerId {
    storage::PeerId(sid.as_str().to_owned())
}

#[cfg(test)]
mod chunk_tests {
    use super::*;
    use crate::document::instance_tests::content;

    #[test]
    fn concatenated_changes_split_into_each_change() {
        let changes = instance::materialize(&content(2)).unwrap();
        let joined: Vec<u8> = changes
            .iter()
            .flat_map(|c| c.raw_bytes().to_vec())
            .collect();
        let parts = storage_chunks(&joined);
        assert_eq!(parts.len(), changes.len());
        for ((kind, bytes), c) in parts.iter().zip(&changes) {
            assert_eq!(*kind, CHUNK_CHANGE);
            assert_eq!(*bytes, c.raw_bytes());
        }
        // A v2 message of concatenated changes yields every change, even
        // the ones whose dependencies are missing (kept, not dropped).
        let msg = sync::Message {
            heads: vec![],
            need: vec![],
            have: vec![],
            changes: vec![changes[1..]
                .iter()
                .flat_map(|c| c.raw_bytes().to_vec())
                .collect::<Vec<u8>>()]
            .into(),
            flags: None,
            version: sync::MessageVersion::V2,
        };
        let got = changes_in(&Automerge::new(), &msg).unwrap();
        assert_eq!(got.len(), changes.len() - 1);
        // Garbage is handed on whole, not split into nonsense.
        assert_eq!(storage_chunks(b"not a chunk").len(), 1);
    }
}
