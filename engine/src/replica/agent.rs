//! The pos-agent as a state machine: a store terminal's replica. Works
//! fully offline (every local command is durable in SQLite before it
//! returns), and when connected syncs the documents it works with,
//! asks for instances its directory lists but it lacks, and keeps the
//! hub's rejections to show the worker.
//!
//! Documents load lazily: a year of daily lists takes seconds to decode,
//! so `open` loads today's working set (recent lists, the store's own
//! lists, lists with changes the hub has not confirmed) and the rest load
//! on first use. A list that is not loaded is not synced at connect unless
//! it never was; one loaded while connected joins the sync with the next
//! output the agent returns.

use crate::storage::roles::*;
use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use automerge::{Automerge, Change};
use chrono::NaiveDate;
use tracing::{debug, error, info, warn};

use super::{ConnId, Moved, Output, RecordedRefusal, Refusal, Rule};
use crate::document::directory::{self, DirectoryView};
use crate::document::instance::{self, InstanceView};
use crate::document::{genesis, DocKind};
use crate::ids::{DocumentId, StoreId, TaskId, WorkerId};
use crate::model::{
    Assignee, CreatedBy, InstanceContent, ModelError, StatusEvent, StatusUpdate, TaskSpec,
};
use crate::protocol::wire::{self, PeerId, PeerMetadata, StorageId, WireLimits, WireMessage};
use crate::protocol::{Session, SessionEvent};
use crate::storage::{self, SqliteDatabase, StorageError};

mod lan;
pub use lan::{LanLimits, HUB_REFUSAL_REPORT};

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub store_id: StoreId,
    pub peer_id: PeerId,
    /// This replica's storage id: stable across restarts.
    pub storage_id: StorageId,
    pub wire: WireLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("no list {0} on this terminal")]
    UnknownList(DocumentId),
    #[error("worker {0} is not on this store's roster; ask HQ to add them")]
    UnknownWorker(WorkerId),
    /// The command does not fit the task's current state (a claim of a
    /// task someone already has, a decision on a task with no conflict).
    #[error("{0}")]
    Refused(String),
}

/// What the sync indicator shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SyncStatus {
    pub online: bool,
    pub last_sync_ms: Option<i64>,
    pub rejected: Vec<RecordedRefusal>,
    /// Times this terminal found its actor's history diverged from the
    /// hub's and took a fresh actor id (oldest first, the last
    /// `ACTOR_CHANGES_KEPT`).
    pub actor_changes: Vec<ActorChange>,
    /// Other terminals of the store this one syncs with directly now.
    pub lan_peers: usize,
    /// Refusals by the hub that a peer terminal reported for changes this
    /// terminal holds, not yet confirmed by this terminal's own hub
    /// connection: shown, but nothing is dropped for them (a peer's word
    /// cannot be checked).
    pub reported_by_peers: Vec<RecordedRefusal>,
}

/// The terminal's actor history of a document diverged from the hub's: the
/// hub holds a different change under a (actor, sequence number) this
/// replica also used. It happens when the data directory is restored from a
/// backup (or a VM snapshot is reverted) and the terminal records again
/// under the actor the backup names, or when another holder of the store's
/// token writes under this terminal's actor. The terminal dropped its
/// diverged changes, took a fresh actor and recorded the dropped status
/// events (same ids, same content) and entries of lists made at this store
/// again under it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActorChange {
    pub doc: DocumentId,
    /// The actor whose history diverged (hex).
    pub diverged_actor: String,
    /// The actor this terminal used before, and the one it uses now (hex).
    pub old_actor: String,
    pub new_actor: String,
    /// What showed the divergence.
    pub reason: String,
    /// Local changes dropped, and status events and list entries recorded
    /// again.
    pub dropped: usize,
    pub rerecorded: usize,
    /// Dropped local edits that were neither (assignments, added tasks):
    /// not made again.
    pub not_rerecorded: usize,
    pub at: i64,
}

/// What showed that this terminal's history diverged from the hub's.
enum Divergence {
    /// The hub refused change `refused` of ours: its (actor, seq) is taken.
    Refused { refused: automerge::ChangeHash },
    /// The hub sent `message`, whose change `seq` of `actor` we hold with
    /// other content.
    HubSent {
        message: automerge::sync::Message,
        actor: automerge::ActorId,
        seq: u64,
    },
}

const CONN: ConnId = 0;
const CLOCK_OFFSET_KEY: &str = "clock_offset_ms";
/// Meta key: ids (one UUID a line) of documents with local changes the hub
/// has not confirmed. `open` loads them whatever their date, so they sync
/// at the next connect even after a restart.
const UNCONFIRMED_KEY: &str = "unconfirmed_documents";
/// Meta key: the JSON list of `ActorChange`s, the last `ACTOR_CHANGES_KEPT`.
const ACTOR_CHANGES_KEY: &str = "actor_changes";
const ACTOR_CHANGES_KEPT: usize = 20;
/// Meta key: actors this terminal gave up after a refusal by the hub (hex,
/// one a line, the last `GIVEN_UP_KEPT`): still its own, so its dropped
/// work under them is recorded again and a peer cannot forge them.
const GIVEN_UP_KEY: &str = "given_up_actors";
const GIVEN_UP_KEPT: usize = 100;
/// Meta key: the storage id of the hub this terminal last synced with.
const HUB_STORAGE_KEY: &str = "hub_storage_id";
/// Lists dated this many days before today (UTC) or later are recent:
/// they load at open and make today's working set.
const RECENT_DAYS: i64 = 2;

/// A document this replica holds, loaded from SQLite on first use. The
/// cell lets `&self` readers (`list`, `document`) load it too.
type Slot = OnceCell<Automerge>;

pub struct Agent {
    db: SqliteDatabase,
    cfg: AgentConfig,
    /// Every document held: stored ones (loaded or not) and ones the hub
    /// started sending this run.
    docs: HashMap<DocumentId, Slot>,
    /// Documents with local changes the hub has not confirmed (kept in
    /// `meta` under `UNCONFIRMED_KEY`).
    unconfirmed_docs: BTreeSet<DocumentId>,
    /// Today's working set (`lists()`): lists loaded at open, lists new
    /// from the hub that are recent, lists changed here. Not lists loaded
    /// only to be read (history) or to be synced.
    working: HashSet<DocumentId>,
    /// The date of every list the directory holds, and the newest, kept in
    /// step with the directory document.
    dates: HashMap<DocumentId, NaiveDate>,
    newest: Option<NaiveDate>,
    session: Option<Session>,
    hub_storage: Option<StorageId>,
    last_sync_ms: Option<i64>,
    /// Documents whose stored rows did not load, found by `doc` (which
    /// only reads), waiting for `quarantine_unreadable` to set them aside.
    unreadable: RefCell<BTreeSet<DocumentId>>,
    /// Documents set aside as unreadable: asked for again at every
    /// connect until the hub has sent them back.
    refetch: BTreeSet<DocumentId>,
    /// Lists with unconfirmed local changes the hub called unavailable on
    /// this connection, and how often: a list made at this terminal is
    /// unknown to the hub until its directory entry arrives, so it is
    /// offered again after the next directory exchange (a few times).
    unavailable: BTreeMap<DocumentId, u8>,
    /// Of those, the ones to offer at the next directory exchange.
    offer_again: BTreeSet<DocumentId>,
    /// Per list: the log summary for recording status, and the heads it
    /// is valid at (a change from anywhere else makes it stale).
    log_summaries: HashMap<DocumentId, (Vec<automerge::ChangeHash>, instance::LogSummary)>,
    /// Documents whose sync failed on this connection (a sync message the
    /// document cannot take and that is not a diverged history): left out
    /// until the next connection, so the others keep syncing.
    unsyncable: BTreeSet<DocumentId>,
    /// The hub node said this store moved (see [`Moved`]): kept until the
    /// connection's owner asks ([`Agent::take_moved`]) where to go next.
    moved: Option<Moved>,
    /// Connections with the store's other terminals (see `lan`), by the
    /// shell's number for them (never `CONN`, the hub's).
    peers: BTreeMap<ConnId, lan::Peer>,
    lan_limits: LanLimits,
    /// Changes the hub refused (read back from the stored refusals at
    /// open) and, for this run, the ones dropped with them: a peer
    /// terminal offering one again is refused (see `lan::judge`).
    hub_refused: HashMap<automerge::ChangeHash, Refusal>,
    /// Hub refusals a peer terminal reported, not yet confirmed by the
    /// hub here (see `lan`), with when they were heard of.
    reported_by_peers: BTreeMap<automerge::ChangeHash, (Refusal, i64)>,
}

/// How often one connection offers a list again after "unavailable".
const UNAVAILABLE_RETRIES: u8 = 3;

impl Agent {
    /// Open the terminal's replica and load today's working set: the
    /// directory, the lists it dates two days before today or later (see
    /// `is_recent`), lists it does not list (the store's own), and lists
    /// with changes the hub has not confirmed. Every other list loads on
    /// first use. A document that fails to load is logged and skipped; the
    /// rest serve.
    pub fn open(db: SqliteDatabase, cfg: AgentConfig, now_ms: i64) -> Result<Agent, AgentError> {
        let stored = db.list_documents()?;
        let unconfirmed_docs = read_unconfirmed(&db)?;
        let hub_refused = read_hub_refused(&db)?;
        let mut agent = Agent {
            db,
            cfg,
            docs: stored.iter().map(|id| (*id, Slot::new())).collect(),
            unconfirmed_docs,
            working: HashSet::new(),
            dates: HashMap::new(),
            newest: None,
            session: None,
            hub_storage: None,
            last_sync_ms: None,
            unreadable: RefCell::new(BTreeSet::new()),
            refetch: BTreeSet::new(),
            unavailable: BTreeMap::new(),
            offer_again: BTreeSet::new(),
            log_summaries: HashMap::new(),
            unsyncable: BTreeSet::new(),
            moved: None,
            peers: BTreeMap::new(),
            lan_limits: LanLimits::default(),
            hub_refused,
            reported_by_peers: BTreeMap::new(),
        };
        let dir = agent.directory_id();
        agent.doc(dir);
        agent.quarantine_unreadable();
        if agent.doc(dir).is_none() {
            // The directory's genesis is deterministic: making it here is
            // the same change the hub made.
            let g = genesis::genesis(dir, DocKind::Directory);
            agent.db.append_changes(dir, std::slice::from_ref(&g))?;
            let mut d = Automerge::new();
            d.apply_changes([g]).map_err(ModelError::from)?;
            d.set_actor(agent.db.actor_id());
            agent.docs.insert(dir, Slot::from(d));
        }
        agent.refresh_dates();
        let dir = agent.directory_id();
        for id in stored {
            if id == dir {
                continue;
            }
            let wanted = agent.is_recent(id, now_ms) || agent.unconfirmed_docs.contains(&id);
            if wanted && agent.doc(id).is_some() {
                agent.working.insert(id);
            }
        }
        agent.quarantine_unreadable();
        debug!(
            held = agent.docs.len(),
            loaded = agent.loaded_count(),
            "opened the replica"
        );
        Ok(agent)
    }

    /// Re-read the list dates from the directory (at open, and when the
    /// directory changes).
    fn refresh_dates(&mut self) {
        match self.directory() {
            Ok(d) => {
                self.dates = d.entries.into_iter().map(|(id, e)| (id, e.date)).collect();
            }
            Err(e) => {
                // Every list then counts as recent: slow, never wrong.
                warn!(error = %e, "cannot read the directory; treating every list as recent");
                self.dates.clear();
            }
        }
        self.newest = self.dates.values().max().copied();
    }

    /// Whether list `id` belongs to the working set at `now_ms`: the
    /// directory does not date it (a store's own list), or dates it at
    /// most two days before today (UTC). "Today" is the newest date the
    /// directory holds if that is earlier: a terminal that has had no new
    /// lists for a while still starts with the last ones it had.
    fn is_recent(&self, id: DocumentId, now_ms: i64) -> bool {
        let Some(date) = self.dates.get(&id) else {
            return true;
        };
        let today = chrono::DateTime::from_timestamp_millis(now_ms)
            .unwrap_or_default()
            .date_naive();
        let today = self.newest.map_or(today, |n| n.min(today));
        *date >= today - chrono::Duration::days(RECENT_DAYS)
    }

    /// `id`'s document, loaded from SQLite on first use. `None` if this
    /// replica does not hold it, or it fails to load: a document whose rows
    /// do not decode is noted for `quarantine_unreadable`, which sets it
    /// aside and fetches it again from the hub.
    fn doc(&self, id: DocumentId) -> Option<&Automerge> {
        let slot = self.docs.get(&id)?;
        if let Some(d) = slot.get() {
            return Some(d);
        }
        match self.db.load_document(id) {
            Ok(Some(d)) => Some(slot.get_or_init(|| d)),
            Ok(None) => None,
            Err(e) if e.damaged_document() == Some(id) => {
                error!(doc = %id, error = %e, "document does not load; setting it aside to fetch it again from the hub");
                self.unreadable.borrow_mut().insert(id);
                None
            }
            Err(e) => {
                warn!(doc = %id, error = %e, "document failed to load");
                None
            }
        }
    }

    /// Set aside every document `doc` found unreadable: its raw rows go to
    /// `meta` (`Store::quarantine_document`), the copy is forgotten, and
    /// the hub is asked for it at the next connect. Local changes the hub
    /// had not confirmed may be lost with it; that is said loudly, and the
    /// bytes stay in the file for an operator. The directory is made again
    /// from its deterministic genesis by `open`.
    fn quarantine_unreadable(&mut self) {
        let ids = std::mem::take(&mut *self.unreadable.borrow_mut());
        for id in ids {
            match self.db.quarantine_document(id) {
                Ok(rows) => {
                    let unconfirmed = self.unconfirmed_docs.remove(&id);
                    if unconfirmed {
                        let _ = write_unconfirmed(&mut self.db, &self.unconfirmed_docs);
                    }
                    error!(
                        doc = %id,
                        file = %self.db.path().display(),
                        rows,
                        key = %format!("{}{id}/", storage::QUARANTINE_PREFIX),
                        unconfirmed_changes_may_be_lost = unconfirmed,
                        "document was unreadable: its rows are set aside in the database's meta table and it will be fetched again from the hub"
                    );
                    self.docs.remove(&id);
                    self.working.remove(&id);
                    self.refetch.insert(id);
                    self.peers_forget(id);
                    if let Some(s) = self.session.as_mut() {
                        s.drop_document(id);
                    }
                }
                Err(e) => {
                    error!(doc = %id, error = %e, "could not set an unreadable document aside")
                }
            }
        }
    }

    fn doc_mut(&mut self, id: DocumentId) -> Option<&mut Automerge> {
        self.doc(id)?;
        self.docs.get_mut(&id)?.get_mut()
    }

    /// Loaded documents: held and already in memory.
    fn loaded(&self) -> impl Iterator<Item = (DocumentId, &Automerge)> {
        self.docs
            .iter()
            .filter_map(|(id, slot)| slot.get().map(|d| (*id, d)))
    }

    /// How many documents are in memory (the directory included).
    pub fn loaded_count(&self) -> usize {
        self.loaded().count()
    }

    pub fn db(&self) -> &SqliteDatabase {
        &self.db
    }

    pub fn store_id(&self) -> &StoreId {
        &self.cfg.store_id
    }

    pub fn directory_id(&self) -> DocumentId {
        DocumentId::directory_of(&self.cfg.store_id)
    }

    pub fn directory(&self) -> Result<DirectoryView, AgentError> {
        let d = self
            .docs
            .get(&self.directory_id())
            .and_then(OnceCell::get)
            .expect("opened with a directory");
        Ok(directory::read(d)?)
    }

    /// Today's working set, by date and name: the lists `open` loaded
    /// (recent, the store's own, unconfirmed ones), recent lists the hub
    /// has sent since, and lists changed on this terminal, whose content
    /// has arrived. Not lists loaded to be read (`list`) or synced: older
    /// lists are in `all_list_ids`.
    pub fn lists(&self) -> Vec<InstanceView> {
        let mut out: Vec<InstanceView> = self
            .working
            .iter()
            .filter_map(|id| self.docs.get(id)?.get())
            .filter_map(|d| instance::read(d).ok())
            .collect();
        out.sort_by(|a, b| {
            (a.meta.date, &a.meta.name, a.id).cmp(&(b.meta.date, &b.meta.name, b.id))
        });
        out
    }

    /// Every list stored on this terminal, loaded or not, in id order (for
    /// history; `list` loads one).
    pub fn all_list_ids(&self) -> Result<Vec<DocumentId>, AgentError> {
        let dir = self.directory_id();
        let mut ids = self.db.list_documents()?;
        ids.retain(|id| *id != dir);
        Ok(ids)
    }

    /// One list, loaded from storage on first use.
    pub fn list(&self, id: DocumentId) -> Result<InstanceView, AgentError> {
        let d = self.doc(id).ok_or(AgentError::UnknownList(id))?;
        Ok(instance::read(d)?)
    }

    /// Raw document, loaded on first use (tests and the simulator compare heads).
    pub fn document(&self, id: DocumentId) -> Option<&Automerge> {
        self.doc(id)
    }

    /// A held document, to put it in states sync alone rarely makes.
    #[cfg(test)]
    pub(crate) fn document_mut(&mut self, id: DocumentId) -> Option<&mut Automerge> {
        self.doc_mut(id)
    }

    /// Commit changes made elsewhere, as a local edit does.
    #[cfg(test)]
    pub(crate) fn commit_for_test(
        &mut self,
        id: DocumentId,
        changes: Vec<Change>,
    ) -> Result<Vec<Output>, AgentError> {
        self.commit_changes(id, changes)
    }

    /// Every document held, loaded or not.
    pub fn document_ids(&self) -> Vec<DocumentId> {
        let mut v: Vec<DocumentId> = self.docs.keys().copied().collect();
        v.sort();
        v
    }

    /// How far (ms) this terminal's clock is behind the hub's, as last
    /// measured; added to the wall clock for new events so a terminal with a
    /// wrong clock does not date its work outside the hub's tolerance.
    /// Kept across restarts, so it applies offline too.
    pub fn clock_offset_ms(&self) -> i64 {
        self.db
            .get_meta(CLOCK_OFFSET_KEY)
            .ok()
            .flatten()
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(i64::from_be_bytes)
            .unwrap_or(0)
    }

    pub fn set_clock_offset_ms(&mut self, offset: i64) -> Result<(), AgentError> {
        if offset != self.clock_offset_ms() {
            info!(
                offset_ms = offset,
                "terminal clock differs from the hub's; correcting event times"
            );
            self.db.set_meta(CLOCK_OFFSET_KEY, &offset.to_be_bytes())?;
        }
        Ok(())
    }

    /// One bounded step of background compaction (see `Store::compact_some`).
    pub fn compact_storage(
        &mut self,
        threshold_changes: usize,
        max_documents: usize,
    ) -> Result<usize, AgentError> {
        Ok(self.db.compact_some(threshold_changes, max_documents)?)
    }

    pub fn sync_status(&self) -> Result<SyncStatus, AgentError> {
        Ok(SyncStatus {
            online: self.session.as_ref().is_some_and(|s| s.is_open()),
            last_sync_ms: self.last_sync_ms,
            rejected: self
                .db
                .rejections()?
                .into_iter()
                .map(RecordedRefusal::from_record)
                .collect(),
            actor_changes: read_actor_changes(&self.db)?,
            lan_peers: self.lan_peers(),
            reported_by_peers: self
                .reported_by_peers
                .values()
                .map(|(r, at)| RecordedRefusal::from_record(RecordedRefusal::record(r, *at)))
                .collect(),
        })
    }

    // ---- local commands: durable before they return ---------------------

    fn commit_local(
        &mut self,
        doc_id: DocumentId,
        f: impl FnOnce(&mut Automerge) -> Result<Vec<Change>, ModelError>,
    ) -> Result<Vec<Output>, AgentError> {
        let doc = self.doc(doc_id).ok_or(AgentError::UnknownList(doc_id))?;
        let mut scratch = doc.fork();
        scratch.set_actor(doc.get_actor().clone());
        let changes = f(&mut scratch)?;
        self.commit_changes(doc_id, changes)
    }

    /// Commit `changes`, made on top of `doc_id`'s current state: stored
    /// first, then applied to the document and sent.
    fn commit_changes(
        &mut self,
        doc_id: DocumentId,
        changes: Vec<Change>,
    ) -> Result<Vec<Output>, AgentError> {
        if changes.is_empty() {
            return Ok(self.sync_new_loads());
        }
        // Marked before the change is stored: a crash in between leaves a
        // mark with nothing to confirm (cleared at the next sync), never an
        // unmarked change that a restart would not load and sync.
        self.mark_unconfirmed(doc_id)?;
        // Persist before the in-memory copy (and so any peer) can see it.
        self.db.append_changes(doc_id, &changes)?;
        let applied = self
            .doc_mut(doc_id)
            .expect("loaded above")
            .apply_changes(changes);
        if let Err(e) = applied {
            // Stored, but the document refuses it (a bug in how it was
            // made; Automerge checks before it changes anything). Storage
            // goes back to what memory holds, so the two agree and the
            // next change is not stacked on a row that would not load.
            let held = self.doc(doc_id).expect("loaded above").get_changes(&[]);
            if let Err(se) = self.db.replace_document(doc_id, &held) {
                error!(doc = %doc_id, error = %se, "could not take back a change the document refused");
            }
            return Err(ModelError::from(e).into());
        }
        self.working.insert(doc_id);
        let mut out = self.push(doc_id);
        out.extend(self.sync_new_loads());
        Ok(out)
    }

    /// The hub refused change `hash` of `doc_id`. Every later local change
    /// to that document depends on it, so the hub would refuse those too:
    /// drop it and its descendants from this replica's copy, re-record
    /// under a fresh actor id the status events that only the descendants
    /// held (the refused change's own events stay refused, listed with
    /// their reason in `sync_status`), and replace the stored document in
    /// one transaction. The fresh actor is needed because the dropped
    /// changes used sequence numbers the new ones would otherwise reuse
    /// (DESIGN rule 2).
    fn rebase_after_rejection(
        &mut self,
        doc_id: DocumentId,
        hash: automerge::ChangeHash,
        now_ms: i64,
    ) -> Result<Vec<Output>, AgentError> {
        let Some(doc) = self.doc(doc_id) else {
            return Ok(Vec::new());
        };
        let mut dropped: HashSet<automerge::ChangeHash> = HashSet::new();
        let (mut kept, mut refused) = (Vec::new(), None);
        for c in doc.get_changes(&[]) {
            if c.hash() == hash {
                dropped.insert(c.hash());
                refused = Some(c);
            } else if c.deps().iter().any(|d| dropped.contains(d)) {
                dropped.insert(c.hash());
            } else {
                kept.push(c);
            }
        }
        let Some(refused) = refused else {
            return Ok(Vec::new());
        };
        let before: Vec<StatusEvent> = instance::read_events(doc)
            .map(|(e, _)| e)
            .unwrap_or_default();
        // Only this terminal's own dropped work is recorded again here: a
        // descendant made at a peer terminal (it came over the store LAN)
        // is recorded again by that terminal when its hub refuses it too,
        // so every event is recorded again once, by its author.
        let own_actors = self.own_actors();
        let mut own_new: HashSet<crate::ids::EventId> = HashSet::new();
        for c in doc.get_changes(&[]) {
            let h = c.hash();
            if h == hash || !dropped.contains(&h) || !own_actors.contains(c.actor_id()) {
                continue;
            }
            let events = |heads: &[automerge::ChangeHash]| -> HashSet<crate::ids::EventId> {
                doc.fork_at(heads)
                    .ok()
                    .and_then(|d| instance::read_events(&d).ok())
                    .map(|(e, _)| e.iter().map(|e| e.id).collect())
                    .unwrap_or_default()
            };
            let (with, without) = (events(&[h]), events(c.deps()));
            own_new.extend(with.difference(&without).copied());
        }
        let mut rebuilt = Automerge::new();
        rebuilt
            .apply_changes(kept.clone())
            .map_err(ModelError::from)?;
        let mut with_refused = rebuilt.fork();
        with_refused
            .apply_changes([refused])
            .map_err(ModelError::from)?;
        let is_instance = instance::read_events(&rebuilt).is_ok();
        let (kept_ids, refused_ids): (HashSet<_>, HashSet<_>) = if is_instance {
            let ids = |d: &Automerge| -> HashSet<crate::ids::EventId> {
                instance::read_events(d)
                    .map(|(e, _)| e.iter().map(|e| e.id).collect())
                    .unwrap_or_default()
            };
            (ids(&rebuilt), ids(&with_refused))
        } else {
            (HashSet::new(), HashSet::new())
        };
        // A fresh actor, derived (the engine has no RNG) from the old one
        // and the refused change, so it is new and the same after a crash
        // and replay of this step.
        let old_actor = self.db.actor_id();
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        sha2::Digest::update(&mut h, old_actor.to_bytes());
        sha2::Digest::update(&mut h, hash.as_ref());
        let fresh: [u8; 16] = sha2::Digest::finalize(h)[..16]
            .try_into()
            .expect("16 of 32 bytes");
        let mut given_up = read_given_up(&self.db)?;
        given_up.push(old_actor.to_hex_string());
        let skip = given_up.len().saturating_sub(GIVEN_UP_KEPT);
        self.db
            .set_meta(GIVEN_UP_KEY, given_up[skip..].join("\n").as_bytes())?;
        self.db.reset_actor(fresh)?;
        let actor = self.db.actor_id();
        rebuilt.set_actor(actor.clone());
        let mut rerecorded = 0;
        for e in before.iter().filter(|e| {
            own_new.contains(&e.id) && !kept_ids.contains(&e.id) && !refused_ids.contains(&e.id)
        }) {
            let update = StatusUpdate {
                id: e.id,
                task: e.task,
                status: e.status,
                worker: e.worker.clone(),
                terminal: e.terminal.clone(),
                note: e.note.clone(),
            };
            match instance::record_status(&mut rebuilt, &update, now_ms) {
                Ok(_) => rerecorded += 1,
                Err(err) => {
                    warn!(event = %e.id, error = %err, "a status event after the refused change could not be recorded again")
                }
            }
        }
        self.mark_unconfirmed(doc_id)?;
        self.db
            .replace_document(doc_id, &rebuilt.get_changes(&[]))?;
        warn!(doc = %doc_id, %hash, dropped = dropped.len(), rerecorded, "dropped a refused change and what was built on it");
        // What was built on the refused change is refused with it: a peer
        // terminal that offers any of it again is refused.
        for d in dropped.into_iter().filter(|d| *d != hash) {
            let r = crate::validation::Rejection::DependsOnRejected(hash.to_string());
            self.hub_refused
                .entry(d)
                .or_insert_with(|| Refusal::new(doc_id, d, &r));
        }
        for (_, slot) in self.docs.iter_mut() {
            if let Some(d) = slot.get_mut() {
                d.set_actor(actor.clone());
            }
        }
        self.docs.insert(doc_id, Slot::from(rebuilt));
        self.peers_forget(doc_id);
        let Some(session) = self.session.as_mut() else {
            return Ok(Vec::new());
        };
        session.drop_document(doc_id);
        Ok(self.push(doc_id))
    }

    /// Stop taking the hub's sync messages for `doc_id` on this connection
    /// (see `unsyncable`); the next connection tries again.
    fn leave_out(&mut self, doc_id: DocumentId) {
        self.unsyncable.insert(doc_id);
    }

    /// This replica's history of `doc_id` diverged from the hub's: a change
    /// of some actor at some sequence number is one thing here and another
    /// at the hub (see `ActorChange`). The hub's history is the one every
    /// other replica has, so ours gives way: the local changes at and after
    /// the diverged sequence numbers are dropped with everything built on
    /// them, the hub's message (if that is what showed it) is applied to
    /// what is left, and the status events only the dropped changes held
    /// are recorded again, exactly as they were (id, task, status, worker,
    /// terminal, time, the events they supersede, note), as are the
    /// directory entries of lists made at this store, under a fresh
    /// actor: the old one's next sequence numbers may be taken at the hub
    /// in other documents too. The new document, the fresh actor and the
    /// record shown in `sync_status` are stored in one transaction, so a
    /// crash redoes the whole step or none of it. Other dropped edits
    /// (assignments, added tasks) are not made again; they are counted in
    /// the record.
    fn recover_diverged(
        &mut self,
        doc_id: DocumentId,
        cause: Divergence,
        now_ms: i64,
    ) -> Result<Vec<Output>, AgentError> {
        let Some(doc) = self.doc(doc_id) else {
            return Ok(Vec::new());
        };
        let held = doc.get_changes(&[]);
        let before: Vec<StatusEvent> = instance::read_events(doc)
            .map(|(e, _)| e)
            .unwrap_or_default();
        // The entries of the lists made at this store (the directory): one
        // only the dropped changes held is put again, or its list would
        // never be adopted by the hub.
        let mine = CreatedBy::Store(self.cfg.store_id.clone());
        let entries_before: Vec<(DocumentId, directory::DirectoryEntry)> =
            if doc_id == self.directory_id() {
                directory::read(doc)
                    .map(|d| {
                        d.entries
                            .into_iter()
                            .filter(|(_, e)| e.created_by == mine)
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
        // Drop, per actor, its changes from this sequence number on.
        let mut drop_from: HashMap<automerge::ActorId, u64> = HashMap::new();
        let mut refused_hash = None;
        let (message, diverged_actor, reason) = match cause {
            Divergence::Refused { refused } => {
                let Some(c) = held.iter().find(|c| c.hash() == refused) else {
                    // Already dropped (the hub's changes showed it first).
                    debug!(doc = %doc_id, %refused, "the hub refused a reused sequence number this terminal no longer holds");
                    return Ok(Vec::new());
                };
                drop_from.insert(c.actor_id().clone(), c.seq());
                refused_hash = Some(refused);
                let reason = format!(
                    "the hub refused change {refused}: sequence number {} of actor {} is another change there",
                    c.seq(),
                    c.actor_id()
                );
                (None, c.actor_id().clone(), reason)
            }
            Divergence::HubSent {
                message,
                actor,
                seq,
            } => {
                let reason = format!(
                    "the hub sent change {seq} of actor {actor}, and this terminal holds another change {seq} of that actor"
                );
                drop_from.insert(actor.clone(), seq);
                (Some(message), actor, reason)
            }
        };
        // Each round drops at least one more change (an actor's history can
        // diverge earlier than the first conflict the hub's message showed),
        // so this ends within `held.len()` rounds.
        let (rebuilt, dropped) = loop {
            let mut dropped: Vec<&Change> = Vec::new();
            let mut dropped_hashes: HashSet<automerge::ChangeHash> = HashSet::new();
            let mut kept = Vec::new();
            for c in &held {
                let diverged = drop_from
                    .get(c.actor_id())
                    .is_some_and(|&from| c.seq() >= from);
                if diverged || c.deps().iter().any(|d| dropped_hashes.contains(d)) {
                    dropped_hashes.insert(c.hash());
                    dropped.push(c);
                } else {
                    kept.push(c.clone());
                }
            }
            let mut rebuilt = Automerge::new();
            rebuilt
                .apply_changes(kept.clone())
                .map_err(ModelError::from)?;
            let Some(message) = &message else {
                break (rebuilt, dropped);
            };
            let mut state = automerge::sync::State::new();
            match automerge::sync::SyncDoc::receive_sync_message(
                &mut rebuilt,
                &mut state,
                message.clone(),
            ) {
                Ok(()) => break (rebuilt, dropped),
                Err(automerge::AutomergeError::DuplicateSeqNumber(seq, actor)) => {
                    let ours = kept
                        .iter()
                        .filter(|c| c.actor_id() == &actor)
                        .map(Change::seq)
                        .max();
                    if ours.is_none_or(|last| last < seq) {
                        // The message conflicts with itself: nothing of
                        // ours to drop would make it fit.
                        return Err(ModelError::from(
                            automerge::AutomergeError::DuplicateSeqNumber(seq, actor),
                        )
                        .into());
                    }
                    let from = drop_from.entry(actor).or_insert(seq);
                    *from = (*from).min(seq);
                }
                Err(e) => return Err(ModelError::from(e).into()),
            }
        };
        let mut rebuilt = rebuilt;
        let present: HashSet<crate::ids::EventId> = instance::read_events(&rebuilt)
            .map(|(e, _)| e.iter().map(|e| e.id).collect())
            .unwrap_or_default();
        // A fresh actor, derived (the engine has no RNG) from the old one
        // and the dropped changes, which hold this terminal's own content
        // (random event ids): new, and the same if a crash makes this step
        // run again (nothing was stored under it then).
        let old_actor = self.db.actor_id();
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        sha2::Digest::update(&mut h, b"diverged");
        sha2::Digest::update(&mut h, old_actor.to_bytes());
        sha2::Digest::update(&mut h, doc_id.as_bytes());
        for c in &dropped {
            sha2::Digest::update(&mut h, c.hash().as_ref());
        }
        let fresh: [u8; 16] = sha2::Digest::finalize(h)[..16]
            .try_into()
            .expect("16 of 32 bytes");
        let actor = automerge::ActorId::from(fresh);
        rebuilt.set_actor(actor.clone());
        let mut rerecorded = 0;
        for e in before.iter().filter(|e| !present.contains(&e.id)) {
            match instance::append_event_by_transaction(&mut rebuilt, e, now_ms) {
                Ok(_) => rerecorded += 1,
                Err(err) => {
                    error!(doc = %doc_id, event = %e.id, error = %err, "a status event of the diverged history could not be recorded again")
                }
            }
        }
        let mut remade_entries = 0;
        if !entries_before.is_empty() {
            let present = directory::read(&rebuilt)
                .map(|d| d.entries)
                .unwrap_or_default();
            for (id, entry) in entries_before {
                if present.contains_key(&id) {
                    continue;
                }
                match directory::put_entry(&mut rebuilt, id, &entry, now_ms) {
                    Ok(_) => remade_entries += 1,
                    Err(err) => {
                        error!(list = %id, error = %err, "a list entry of the diverged history could not be made again")
                    }
                }
            }
        }
        // Dropped changes that wrote neither a status event nor a list
        // entry: other edits, not made again.
        let not_rerecorded = if doc_id == self.directory_id() {
            dropped.len().saturating_sub(remade_entries)
        } else {
            dropped.iter().filter(|c| !writes_status_event(c)).count()
        };
        let rerecorded = rerecorded + remade_entries;
        let record = ActorChange {
            doc: doc_id,
            diverged_actor: diverged_actor.to_hex_string(),
            old_actor: old_actor.to_hex_string(),
            new_actor: actor.to_hex_string(),
            reason,
            dropped: dropped.len(),
            rerecorded,
            not_rerecorded,
            at: now_ms,
        };
        let mut records = read_actor_changes(&self.db)?;
        records.push(record.clone());
        let skip = records.len().saturating_sub(ACTOR_CHANGES_KEPT);
        let records: Vec<ActorChange> = records.into_iter().skip(skip).collect();
        let mut unconfirmed = self.unconfirmed_docs.clone();
        unconfirmed.insert(doc_id);
        let unconfirmed_text: Vec<String> = unconfirmed.iter().map(DocumentId::to_string).collect();
        self.db.replace_document_with_actor(
            doc_id,
            &rebuilt.get_changes(&[]),
            fresh,
            &[
                (
                    ACTOR_CHANGES_KEY,
                    serde_json::to_vec(&records).expect("records serialize"),
                ),
                (UNCONFIRMED_KEY, unconfirmed_text.join("\n").into_bytes()),
            ],
        )?;
        self.unconfirmed_docs = unconfirmed;
        error!(
            doc = %doc_id,
            diverged_actor = %record.diverged_actor,
            old_actor = %record.old_actor,
            new_actor = %record.new_actor,
            refused = ?refused_hash,
            dropped = record.dropped,
            rerecorded,
            not_rerecorded,
            reason = %record.reason,
            "this terminal's history diverged from the hub's (restored from a backup, or another holder of the store token wrote under this terminal's actor): dropped the diverged changes and recorded their status events again under a fresh actor id"
        );
        for (_, slot) in self.docs.iter_mut() {
            if let Some(d) = slot.get_mut() {
                d.set_actor(actor.clone());
            }
        }
        self.log_summaries.remove(&doc_id);
        self.docs.insert(doc_id, Slot::from(rebuilt));
        self.peers_forget(doc_id);
        let Some(session) = self.session.as_mut() else {
            return Ok(Vec::new());
        };
        // The hub may have sent on this connection some of the changes just
        // dropped (its changes built on the diverged ones): it must send
        // them again.
        session.restart_document(doc_id);
        Ok(self.push(doc_id))
    }

    /// HQ took a list out of this store's directory (retention, bulk
    /// delete): delete the terminal's copy too.
    fn remove_delisted(&mut self, doc_id: DocumentId) {
        match self.db.delete_document(doc_id) {
            Ok(_) => {
                info!(doc = %doc_id, "list deleted by HQ; removed from this terminal");
                self.docs.remove(&doc_id);
                self.working.remove(&doc_id);
                if self.unconfirmed_docs.remove(&doc_id) {
                    let _ = write_unconfirmed(&mut self.db, &self.unconfirmed_docs);
                }
                self.peers_forget(doc_id);
                if let Some(s) = self.session.as_mut() {
                    s.drop_document(doc_id);
                }
            }
            Err(e) => warn!(doc = %doc_id, error = %e, "could not delete a list HQ removed"),
        }
    }

    fn mark_unconfirmed(&mut self, doc_id: DocumentId) -> Result<(), AgentError> {
        if self.unconfirmed_docs.insert(doc_id) {
            if let Err(e) = write_unconfirmed(&mut self.db, &self.unconfirmed_docs) {
                self.unconfirmed_docs.remove(&doc_id);
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// After a sync message for `doc_id`: forget its mark once the hub's
    /// heads cover every change we hold.
    fn clear_if_confirmed(&mut self, doc_id: DocumentId) {
        if !self.unconfirmed_docs.contains(&doc_id) {
            return;
        }
        let (Some(session), Some(doc)) = (
            self.session.as_mut(),
            self.docs.get(&doc_id).and_then(OnceCell::get),
        ) else {
            return;
        };
        let shared = session.sync_state(doc_id).shared_heads.clone();
        if !doc.get_changes(&shared).is_empty() {
            return;
        }
        self.unconfirmed_docs.remove(&doc_id);
        // The hub holds every change of it held here: a peer's report of a
        // refusal in it was wrong.
        self.reported_by_peers.retain(|_, (r, _)| r.doc != doc_id);
        if let Err(e) = write_unconfirmed(&mut self.db, &self.unconfirmed_docs) {
            // Harmless: the list loads at the next open and is cleared then.
            warn!(doc = %doc_id, error = %e, "could not record that the hub confirmed a list");
        }
    }

    /// Record a worker's status update. When this returns Ok the event is
    /// on disk; the outputs carry it to the hub if connected. The worker
    /// must be on the store's roster as this terminal has it (the hub
    /// refuses events by anyone else, so one recorded here would only be
    /// refused later): `AgentError::UnknownWorker` otherwise.
    pub fn record_status(
        &mut self,
        list: DocumentId,
        update: &StatusUpdate,
        now_ms: i64,
    ) -> Result<(StatusEvent, Vec<Output>), AgentError> {
        if self.roster_worker(&update.worker).is_none() {
            return Err(AgentError::UnknownWorker(update.worker.clone()));
        }
        self.record_status_as_anyone(list, update, now_ms)
    }

    /// `record_status` without the roster check: what a terminal that
    /// does not follow the rules sends, for tests of the hub's refusal.
    #[cfg(test)]
    pub(crate) fn record_status_of_a_stranger(
        &mut self,
        list: DocumentId,
        update: &StatusUpdate,
        now_ms: i64,
    ) -> Result<(StatusEvent, Vec<Output>), AgentError> {
        self.record_status_as_anyone(list, update, now_ms)
    }

    fn record_status_as_anyone(
        &mut self,
        list: DocumentId,
        update: &StatusUpdate,
        now_ms: i64,
    ) -> Result<(StatusEvent, Vec<Output>), AgentError> {
        // The log summary of this list, made at its current heads or
        // brought forward to them over the events that arrived since
        // (another terminal's updates); else read again.
        let cached = self.log_summaries.remove(&list);
        let doc = self.doc_mut(list).ok_or(AgentError::UnknownList(list))?;
        instance::resolve_actor(doc);
        let mut summary = match instance::LogSummary::carried_to(cached, doc) {
            Some(sum) => sum,
            None => instance::LogSummary::of(doc)?,
        };
        let prepared = instance::prepare_status(doc, update, now_ms, Some(&summary))?;
        let event = prepared.event;
        // Written without touching the document, so no scratch copy is
        // needed to keep it unchanged until the change is stored.
        let out = match prepared.change {
            Some(change) => self.commit_changes(list, vec![change])?,
            None => self.commit_local(list, |doc| {
                Ok(vec![instance::append_event_by_transaction(
                    doc, &event, now_ms,
                )?])
            })?,
        };
        summary.note(&event);
        if let Some(doc) = self.doc(list) {
            let heads = doc.get_heads();
            self.log_summaries.insert(list, (heads, summary));
        }
        Ok((event, out))
    }

    pub fn set_assignee(
        &mut self,
        list: DocumentId,
        task: TaskId,
        assignee: Option<&Assignee>,
        now_ms: i64,
    ) -> Result<Vec<Output>, AgentError> {
        self.commit_local(list, |doc| {
            Ok(instance::set_assignee(doc, task, assignee, now_ms)?
                .into_iter()
                .collect())
        })
    }

    pub fn add_task(
        &mut self,
        list: DocumentId,
        spec: &TaskSpec,
        now_ms: i64,
    ) -> Result<Vec<Output>, AgentError> {
        self.commit_local(list, |doc| instance::add_task(doc, spec, now_ms))
    }

    /// The working-set list that holds `task` (task ids are unique across
    /// lists), by one lookup per list rather than reading them all: this
    /// is on the path of every tap at the terminal.
    pub fn list_of_task(&self, task: TaskId) -> Option<DocumentId> {
        let mut ids: Vec<DocumentId> = self.working.iter().copied().collect();
        ids.sort();
        ids.into_iter().find(|id| {
            self.docs
                .get(id)
                .and_then(OnceCell::get)
                .is_some_and(|d| instance::has_task(d, task))
        })
    }

    /// One worker of the store's roster, read without the rest of the
    /// directory. `None` if not on it (or the entry does not parse).
    pub fn roster_worker(&self, worker: &WorkerId) -> Option<directory::RosterWorker> {
        use crate::document::{keys, read};
        let d = self
            .docs
            .get(&self.directory_id())
            .and_then(OnceCell::get)?;
        let roster = read::obj(d, &automerge::ROOT, keys::ROSTER)?;
        let json = read::string(d, &roster, worker.as_str())?;
        serde_json::from_str(&json).ok()
    }

    /// A worker claims a group task: its assignee goes from `group:G` to
    /// `worker:W`, only while it is a group `worker` belongs to (role or
    /// group on the roster). First claim wins on this terminal; two claims
    /// made offline on two terminals meet as an assignee conflict
    /// (`TaskView::assignee_conflict`) for a manager to decide. Claiming a
    /// task already assigned to `worker` changes nothing.
    pub fn claim(
        &mut self,
        list: DocumentId,
        task: TaskId,
        worker: &WorkerId,
        now_ms: i64,
    ) -> Result<Vec<Output>, AgentError> {
        let rec = self
            .roster_worker(worker)
            .ok_or_else(|| AgentError::UnknownWorker(worker.clone()))?;
        let view = self.list(list)?;
        let t = view.task(task).ok_or(ModelError::UnknownTask(task))?;
        match &t.spec.assignee {
            Some(Assignee::Group(g)) if rec.in_group(g) => {}
            Some(Assignee::Worker(w)) if w == worker => return Ok(self.sync_new_loads()),
            Some(Assignee::Group(g)) => {
                return Err(AgentError::Refused(format!(
                    "task {task} is for group {g}, and {worker} is not in it"
                )))
            }
            Some(Assignee::Worker(w)) => {
                return Err(AgentError::Refused(format!(
                    "task {task} is already taken by {w}"
                )))
            }
            None => {
                return Err(AgentError::Refused(format!(
                    "task {task} is not assigned to a group; a manager assigns it"
                )))
            }
        }
        self.set_assignee(list, task, Some(&Assignee::Worker(worker.clone())), now_ms)
    }

    /// A store's own ad-hoc list, made at the terminal: the instance (meta
    /// and tasks authored by this store) and its entry in the store's
    /// directory, both on disk before this returns. Everything is checked
    /// before anything is written. The list and entry sync to the hub like
    /// any other local change.
    pub fn create_list(
        &mut self,
        content: &InstanceContent,
        now_ms: i64,
    ) -> Result<Vec<Output>, AgentError> {
        let mine = CreatedBy::Store(self.cfg.store_id.clone());
        let refuse = |field: &'static str, reason: String| {
            AgentError::Model(ModelError::BadField { field, reason })
        };
        if content.meta.store != self.cfg.store_id {
            return Err(refuse(
                "store",
                format!("this terminal belongs to {}", self.cfg.store_id),
            ));
        }
        if content.meta.created_by != mine || content.tasks.iter().any(|t| t.created_by != mine) {
            return Err(refuse(
                "created_by",
                format!(
                    "a list made at the terminal is created by {}",
                    mine.encode()
                ),
            ));
        }
        if self.docs.contains_key(&content.id) {
            return Err(refuse("id", format!("list {} already exists", content.id)));
        }
        if content.id.0.get_version_num() != 4 {
            // The hub adopts only random ids (see `Hub::adopt_store_lists`).
            return Err(refuse(
                "id",
                format!("{} is not a random (v4) UUID", content.id),
            ));
        }
        let actor = self.db.actor_id();
        let (mut doc, mut changes) =
            instance::create_store_list(content.id, &content.meta, actor.clone(), now_ms)?;
        for t in &content.tasks {
            changes.extend(instance::add_task(&mut doc, t, now_ms)?);
        }
        let dir_id = self.directory_id();
        let entry = directory::DirectoryEntry {
            name: content.meta.name.clone(),
            date: content.meta.date,
            template: None,
            created_by: mine,
        };
        let dir = self.doc(dir_id).expect("opened with a directory");
        let mut scratch = dir.fork();
        scratch.set_actor(dir.get_actor().clone());
        let entry_change = directory::put_entry(&mut scratch, content.id, &entry, now_ms)?;
        // Marked first (see `commit_local`); the list before its entry, so
        // a crash in between leaves a list the terminal shows as its own
        // (not listed yet), never an entry without its list.
        self.mark_unconfirmed(content.id)?;
        self.mark_unconfirmed(dir_id)?;
        self.db.append_changes(content.id, &changes)?;
        self.db.append_changes(dir_id, entry_change.as_slice())?;
        self.docs.insert(content.id, Slot::from(doc));
        self.working.insert(content.id);
        self.doc_mut(dir_id)
            .expect("opened with a directory")
            .apply_changes(entry_change)
            .map_err(ModelError::from)?;
        self.refresh_dates();
        let mut out = self.push(dir_id);
        out.extend(self.push(content.id));
        out.extend(self.sync_new_loads());
        Ok(out)
    }

    /// Materialize recurring instances from the directory's templates for
    /// today and `days_ahead` more days (store-local), where this terminal
    /// does not hold them yet: the terminal keeps working through a long
    /// outage. The documents are byte-identical to the hub's.
    pub fn materialize_offline(
        &mut self,
        now_ms: i64,
        days_ahead: i64,
    ) -> Result<Vec<Output>, AgentError> {
        let dir = self.directory()?;
        let now = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
        let mut out = Vec::new();
        for json in dir.templates.values() {
            let Ok(entry) = serde_json::from_str::<directory::DirectoryTemplate>(json) else {
                warn!("directory holds a template this version cannot read; skipping it");
                continue;
            };
            let Ok(tz) = crate::recurrence::parse_time_zone(&entry.time_zone) else {
                continue;
            };
            let today = now.with_timezone(&tz).date_naive();
            let until = today + chrono::Duration::days(days_ahead);
            let contents = match entry.template.instances_between(
                &self.cfg.store_id,
                &entry.time_zone,
                today,
                until,
            ) {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "cannot materialize a template offline");
                    continue;
                }
            };
            for content in contents {
                if self.docs.contains_key(&content.id) {
                    continue;
                }
                // Not marked unconfirmed: the hub makes the same changes,
                // and a list it never synced is synced at connect anyway.
                let changes = instance::materialize(&content)?;
                self.db.append_changes(content.id, &changes)?;
                let mut doc = Automerge::new();
                doc.apply_changes(changes).map_err(ModelError::from)?;
                doc.set_actor(self.db.actor_id());
                info!(doc = %content.id, date = %content.meta.date, "materialized offline");
                self.docs.insert(content.id, Slot::from(doc));
                self.working.insert(content.id);
                out.extend(self.push(content.id));
            }
        }
        out.extend(self.sync_new_loads());
        Ok(out)
    }

    // ---- sync -----------------------------------------------------------

    /// A connection to the hub is up: say hello.
    pub fn connected(&mut self) -> Vec<Output> {
        let meta = PeerMetadata {
            storage_id: Some(self.cfg.storage_id.clone()),
            is_ephemeral: false,
        };
        let (session, join) = Session::client(self.cfg.peer_id.clone(), meta);
        self.session = Some(session);
        self.unavailable.clear();
        self.offer_again.clear();
        self.unsyncable.clear();
        self.moved = None;
        vec![Output::Send {
            conn: CONN,
            frame: wire::encode(&join),
        }]
    }

    /// Whether the last connection ended because the hub node said the
    /// store moved, and where to (taken: asked once per connection).
    /// Asked after `disconnected`, it also covers a `moved` that arrived
    /// just before the node closed the socket.
    pub fn take_moved(&mut self) -> Option<Moved> {
        self.moved.take()
    }

    /// The connection is gone: keep what sync learned for next time.
    pub fn disconnected(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let Some(hub) = self.hub_storage.take() else {
            return;
        };
        let states: Vec<(DocumentId, Vec<u8>)> = session
            .documents()
            .filter_map(|d| session.encoded_sync_state(d).map(|s| (d, s)))
            .collect();
        if let Err(e) = self
            .db
            .save_sync_states(&storage::PeerId(hub.as_str().to_owned()), &states)
        {
            warn!(error = %e, "could not save sync state; next sync starts over");
        }
    }

    /// The next sync message for a loaded document to the hub, if
    /// connected, and to every peer terminal.
    fn push(&mut self, doc_id: DocumentId) -> Vec<Output> {
        let mut out = self.push_to_peers(doc_id, None);
        let (Some(session), Some(doc)) = (
            self.session.as_mut(),
            self.docs.get(&doc_id).and_then(OnceCell::get),
        ) else {
            return out;
        };
        out.extend(session.generate(doc_id, doc).map(|m| Output::Send {
            conn: CONN,
            frame: wire::encode(&m),
        }));
        out
    }

    fn send(msg: WireMessage) -> Output {
        Output::Send {
            conn: CONN,
            frame: wire::encode(&msg),
        }
    }

    /// One frame from the hub.
    pub fn receive(&mut self, frame: &[u8], now_ms: i64) -> Vec<Output> {
        let Some(session) = self.session.as_mut() else {
            return Vec::new();
        };
        let msg = match wire::decode(frame, &self.cfg.wire) {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "bad frame from hub; reconnecting");
                return vec![Output::Close {
                    conn: CONN,
                    reason: e.to_string(),
                }];
            }
        };
        let (event, reply) = match session.receive(msg) {
            Ok(r) => r,
            Err(e) => {
                return vec![Output::Close {
                    conn: CONN,
                    reason: e.to_string(),
                }]
            }
        };
        let mut out: Vec<Output> = reply.into_iter().map(Self::send).collect();
        match event {
            SessionEvent::Opened { storage_id, .. } => {
                info!("connected to hub");
                if let Some(sid) = &storage_id {
                    // Remembered so the sync indicator can tell what the hub
                    // has confirmed while offline (from saved sync state).
                    if let Err(e) = self.db.set_meta(HUB_STORAGE_KEY, sid.as_str().as_bytes()) {
                        warn!(error = %e, "could not remember the hub's storage id");
                    }
                }
                self.hub_storage = storage_id;
                self.last_sync_ms = Some(now_ms);
                out.extend(self.start_sync());
            }
            SessionEvent::Sync { doc, message, .. } => {
                self.last_sync_ms = Some(now_ms);
                out.extend(self.on_sync(doc, message, now_ms));
            }
            SessionEvent::Unavailable { doc } => {
                debug!(%doc, "hub does not offer this document");
                if self.unconfirmed_docs.contains(&doc) && doc != self.directory_id() {
                    let tries = self.unavailable.entry(doc).or_default();
                    if *tries < UNAVAILABLE_RETRIES {
                        *tries += 1;
                        self.offer_again.insert(doc);
                    }
                }
            }
            SessionEvent::RemoteError { message } if Moved::decode(&message).is_some() => {
                // The node no longer serves this store: leave at once (the
                // node closes too; whichever comes first) and let the
                // connection's owner reconnect where it says.
                info!(%message, "the hub node says this store moved");
                self.moved = Moved::decode(&message);
                out.push(Output::Close {
                    conn: CONN,
                    reason: message,
                });
            }
            SessionEvent::RemoteError { message } => match Refusal::decode(&message) {
                Some(refusal) if refusal.rule == Rule::SequenceReused => {
                    // Not a wrong change: the hub holds another change under
                    // the same (actor, seq). Nothing to show as refused; the
                    // work is recorded again under a fresh actor.
                    let doc = refusal.doc;
                    match self.recover_diverged(
                        doc,
                        Divergence::Refused {
                            refused: refusal.change,
                        },
                        now_ms,
                    ) {
                        Ok(o) => out.extend(o),
                        Err(e) => {
                            error!(%doc, error = %e, "could not recover from a diverged actor history");
                            self.unsyncable.insert(doc);
                        }
                    }
                }
                Some(refusal) => {
                    let (doc, hash) = (refusal.doc, refusal.change);
                    warn!(%doc, %hash, reason = %refusal.reason, rule = %refusal.rule, "hub rejected a change");
                    self.reported_by_peers.remove(&hash);
                    self.hub_refused.insert(hash, refusal.clone());
                    if let Err(e) = self
                        .db
                        .record_rejection(&RecordedRefusal::record(&refusal, now_ms))
                    {
                        warn!(error = %e, "could not record the rejection");
                    }
                    match self.rebase_after_rejection(doc, hash, now_ms) {
                        Ok(o) => out.extend(o),
                        Err(e) => {
                            warn!(%doc, error = %e, "could not drop the rejected change")
                        }
                    }
                    // The store's other terminals may hold it (it may have
                    // come from one): tell them, so they ask their own hub.
                    out.extend(self.report_to_peers(&refusal, None));
                }
                None => warn!(%message, "hub reported an error"),
            },
            SessionEvent::Leave => out.push(Output::Close {
                conn: CONN,
                reason: "hub left".into(),
            }),
            SessionEvent::Ignored(_) => {}
        }
        out.extend(self.sync_new_loads());
        out
    }

    /// Bring documents loaded while connected (`list`, `document`) into
    /// the sync, so an old list opened online catches up with the hub.
    /// Every output-returning call (`receive`, commands,
    /// `materialize_offline`) does this too; call it after `list` to do it
    /// at once. After the handshake every loaded document is in the
    /// session, so a loaded one that is not was loaded since.
    pub fn sync_new_loads(&mut self) -> Vec<Output> {
        let Some(session) = self.session.as_ref().filter(|s| s.is_open()) else {
            return Vec::new();
        };
        let new: Vec<DocumentId> = self
            .loaded()
            .map(|(id, _)| id)
            .filter(|id| !session.has_document(*id))
            .collect();
        let mut out = Vec::new();
        for id in new {
            self.restore_sync_state(id);
            out.extend(self.push(id));
        }
        out
    }

    fn hub_peer(&self) -> Option<storage::PeerId> {
        self.hub_storage
            .as_ref()
            .map(|h| storage::PeerId(h.as_str().to_owned()))
    }

    fn restore_sync_state(&mut self, id: DocumentId) {
        let (Some(peer), Some(session)) = (self.hub_peer(), self.session.as_mut()) else {
            return;
        };
        if let Ok(Some(state)) = self.db.load_sync_state(&peer, id) {
            session.restore_sync_state(id, &state);
        }
    }

    /// After the handshake: sync every loaded document and every held one
    /// never synced with this hub (resuming from saved state), and ask for
    /// the ones the directory lists but we lack. A list changed offline is
    /// loaded (commands load it; `open` loads unconfirmed ones), so its
    /// changes go out here.
    fn start_sync(&mut self) -> Vec<Output> {
        self.quarantine_unreadable();
        if let Some(peer) = self.hub_peer() {
            let unloaded: Vec<DocumentId> = self
                .docs
                .iter()
                .filter(|(_, slot)| slot.get().is_none())
                .map(|(id, _)| *id)
                .collect();
            for id in unloaded {
                if let Ok(None) = self.db.load_sync_state(&peer, id) {
                    self.doc(id);
                }
            }
            self.quarantine_unreadable();
        }
        let mut ids: Vec<DocumentId> = self.loaded().map(|(id, _)| id).collect();
        ids.sort();
        for id in &ids {
            self.restore_sync_state(*id);
        }
        // A mark whose changes the saved state already covers (a crash
        // between marking and storing a change) goes now.
        let marked: Vec<DocumentId> = self.unconfirmed_docs.iter().copied().collect();
        for id in marked {
            self.clear_if_confirmed(id);
        }
        // Directory first: it tells us which other documents exist.
        let dir = self.directory_id();
        ids.retain(|d| *d != dir);
        ids.insert(0, dir);
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.push(id));
        }
        out.extend(self.request_missing());
        out
    }

    fn request_missing(&mut self) -> Vec<Output> {
        let Ok(dir) = self.directory() else {
            return Vec::new();
        };
        let Some(session) = self.session.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        // Lists the directory names, and documents set aside as unreadable
        // (the store's own lists are not in the directory).
        self.refetch.retain(|id| !self.docs.contains_key(id));
        for id in dir.entries.keys().chain(self.refetch.iter()) {
            if !self.docs.contains_key(id) && !session.has_document(*id) {
                if let Some(m) = session.request(*id) {
                    out.push(Self::send(m));
                }
            }
        }
        out
    }

    fn on_sync(
        &mut self,
        doc_id: DocumentId,
        message: automerge::sync::Message,
        now_ms: i64,
    ) -> Vec<Output> {
        let is_dir = doc_id == self.directory_id();
        if self.session.is_none() || self.unsyncable.contains(&doc_id) {
            return Vec::new();
        }
        let new = !self.docs.contains_key(&doc_id);
        if self.doc(doc_id).is_none() {
            // New to this terminal (or its stored copy does not load).
            let mut d = Automerge::new();
            d.set_actor(self.db.actor_id());
            self.docs.insert(doc_id, Slot::from(d));
        }
        let (Some(session), Some(doc)) = (
            self.session.as_mut(),
            self.docs.get_mut(&doc_id).and_then(OnceCell::get_mut),
        ) else {
            return Vec::new();
        };
        let before = doc.get_heads();
        let mut scratch = doc.fork();
        scratch.set_actor(doc.get_actor().clone());
        let mut state = session.sync_state(doc_id).clone();
        // Kept only until the message applies: a diverged history needs it
        // again, on the copy without the diverged changes.
        let kept = message.clone();
        let mut recovered = Vec::new();
        let changed = match automerge::sync::SyncDoc::receive_sync_message(
            &mut scratch,
            &mut state,
            message,
        ) {
            Ok(()) => {
                let new_changes = scratch.get_changes(&before);
                // Persist before the changes become visible or acknowledged.
                if !new_changes.is_empty() {
                    if let Err(e) = self.db.append_changes(doc_id, &new_changes) {
                        warn!(doc = %doc_id, error = %e, "could not store changes from the hub; dropping the connection");
                        return vec![Output::Close {
                            conn: CONN,
                            reason: e.to_string(),
                        }];
                    }
                }
                *doc = scratch;
                *session.sync_state(doc_id) = state;
                !new_changes.is_empty()
            }
            Err(automerge::AutomergeError::DuplicateSeqNumber(seq, actor)) => {
                let cause = Divergence::HubSent {
                    message: kept,
                    actor,
                    seq,
                };
                match self.recover_diverged(doc_id, cause, now_ms) {
                    Ok(out) => {
                        recovered = out;
                        true
                    }
                    Err(e) => {
                        error!(doc = %doc_id, error = %e, "could not recover from a diverged actor history; leaving the document out of this connection");
                        self.leave_out(doc_id);
                        return Vec::new();
                    }
                }
            }
            Err(e) => {
                // One document the hub's message does not fit must not stop
                // the others: this one waits for the next connection.
                error!(doc = %doc_id, error = %e, "the hub's sync message does not apply; leaving the document out of this connection");
                self.leave_out(doc_id);
                return Vec::new();
            }
        };
        self.clear_if_confirmed(doc_id);
        if is_dir && changed {
            let listed_before: BTreeSet<DocumentId> = self.dates.keys().copied().collect();
            self.refresh_dates();
            let gone: Vec<DocumentId> = listed_before
                .into_iter()
                .filter(|d| !self.dates.contains_key(d))
                .collect();
            for doc in gone {
                self.remove_delisted(doc);
            }
        }
        if new && !is_dir && self.is_recent(doc_id, now_ms) {
            self.working.insert(doc_id);
        }
        let mut out = recovered;
        out.extend(self.push(doc_id));
        if is_dir && changed {
            out.extend(self.request_missing());
        }
        if is_dir {
            out.extend(self.offer_unavailable_again());
        }
        out
    }

    /// Offer again the lists the hub did not know yet (see `unavailable`):
    /// the directory exchange that just happened carried their entries.
    fn offer_unavailable_again(&mut self) -> Vec<Output> {
        let again = std::mem::take(&mut self.offer_again);
        let mut out = Vec::new();
        for d in again {
            if let Some(session) = self.session.as_mut() {
                session.drop_document(d);
            }
            out.extend(self.push(d));
        }
        out
    }

    /// Local changes the hub has not confirmed yet, per document (for the
    /// sync indicator): changes whose hash the hub's last known heads do
    /// not cover.
    pub fn unconfirmed(&mut self) -> BTreeMap<DocumentId, usize> {
        let mut out = BTreeMap::new();
        // This replica's actors: the current one and the ones it gave up
        // after a diverged history (their re-recorded work is under the
        // current one, the rest of their unconfirmed work is not).
        let mut mine: HashSet<automerge::ActorId> = read_actor_changes(&self.db)
            .unwrap_or_default()
            .iter()
            .filter_map(|c| hex_actor(&c.old_actor))
            .collect();
        mine.insert(self.db.actor_id());
        let hub_peer = self
            .db
            .get_meta(HUB_STORAGE_KEY)
            .ok()
            .flatten()
            .map(|b| storage::PeerId(String::from_utf8_lossy(&b).into_owned()));
        // Only documents marked unconfirmed can hold such changes: every
        // local command marks its document before writing.
        let marked: Vec<DocumentId> = self.unconfirmed_docs.iter().copied().collect();
        for id in marked {
            // What the hub has confirmed: the live session's shared heads,
            // or offline the ones saved at the last disconnect.
            let shared = match self.session.as_mut().filter(|s| s.has_document(id)) {
                Some(s) => s.sync_state(id).shared_heads.clone(),
                None => hub_peer
                    .as_ref()
                    .and_then(|p| self.db.load_sync_state(p, id).ok().flatten())
                    .and_then(|b| automerge::sync::State::decode(&b).ok())
                    .map(|st| st.shared_heads)
                    .unwrap_or_default(),
            };
            let Some(doc) = self.doc(id) else { continue };
            let n = doc
                .get_changes(&shared)
                .iter()
                .filter(|c| mine.contains(c.actor_id()))
                .count();
            if n > 0 {
                out.insert(id, n);
            }
        }
        out
    }
}

fn read_unconfirmed(store: &SqliteDatabase) -> Result<BTreeSet<DocumentId>, StorageError> {
    let Some(bytes) = store.get_meta(UNCONFIRMED_KEY)? else {
        return Ok(BTreeSet::new());
    };
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .filter_map(|line| match line.parse() {
            Ok(id) => Some(id),
            Err(e) => {
                warn!(%line, error = %e, "ignoring a bad id in the unconfirmed lists");
                None
            }
        })
        .collect())
}

fn write_unconfirmed(
    store: &mut SqliteDatabase,
    ids: &BTreeSet<DocumentId>,
) -> Result<(), StorageError> {
    let text: Vec<String> = ids.iter().map(DocumentId::to_string).collect();
    store.set_meta(UNCONFIRMED_KEY, text.join("\n").as_bytes())
}

/// Whether `change` writes a status event (an event id is among its keys).
fn writes_status_event(change: &Change) -> bool {
    use crate::document::keys;
    change
        .decode()
        .operations
        .iter()
        .any(|op| matches!(&op.key, automerge::legacy::Key::Map(k) if k.as_str() == keys::EVENT_ID))
}

/// The hub's refusals stored here, by change (a row whose hash does not
/// parse, from an earlier version, names no change to refuse).
fn read_hub_refused(
    store: &SqliteDatabase,
) -> Result<HashMap<automerge::ChangeHash, Refusal>, StorageError> {
    Ok(store
        .rejections()?
        .into_iter()
        .map(RecordedRefusal::from_record)
        .filter_map(|r| {
            let change = r.hash.parse().ok()?;
            Some((
                change,
                Refusal {
                    doc: r.doc,
                    change,
                    rule: r.rule,
                    reason: r.reason,
                },
            ))
        })
        .collect())
}

/// The actors this terminal gave up after refusals (see `GIVEN_UP_KEY`).
fn read_given_up(store: &SqliteDatabase) -> Result<Vec<String>, StorageError> {
    Ok(store
        .get_meta(GIVEN_UP_KEY)?
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default())
}

fn hex_actor(hex: &str) -> Option<automerge::ActorId> {
    hex.parse().ok()
}

fn read_actor_changes(store: &SqliteDatabase) -> Result<Vec<ActorChange>, StorageError> {
    let Some(bytes) = store.get_meta(ACTOR_CHANGES_KEY)? else {
        return Ok(Vec::new());
    };
    Ok(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        warn!(error = %e, "the record of actor changes does not parse; showing none");
        Vec::new()
    }))
}
