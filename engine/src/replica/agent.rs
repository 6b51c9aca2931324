//! The pos-agent as a state machine: a store terminal's replica. Works
//! fully offline (every local command is durable in SQLite before it
//! returns), and when connected syncs every document it holds with the hub,
//! asks for instances its directory lists but it lacks, and keeps the
//! hub's rejections to show the worker.

use std::collections::{BTreeMap, HashMap};

use automerge::{Automerge, Change};
use tracing::{debug, info, warn};

use super::{parse_rejection, ConnId, Output};
use crate::document::directory::{self, DirectoryView};
use crate::document::instance::{self, InstanceView};
use crate::document::{genesis, DocKind};
use crate::ids::{DocumentId, StoreId, TaskId};
use crate::model::{Assignee, ModelError, StatusEvent, StatusUpdate, TaskSpec};
use crate::protocol::wire::{self, PeerId, PeerMetadata, StorageId, WireLimits, WireMessage};
use crate::protocol::{Session, SessionEvent};
use crate::storage::{self, RejectionRecord, StorageError, Store};

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
}

/// What the sync indicator shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SyncStatus {
    pub online: bool,
    pub last_sync_ms: Option<i64>,
    pub rejected: Vec<RejectionRecord>,
}

const CONN: ConnId = 0;
const CLOCK_OFFSET_KEY: &str = "clock_offset_ms";

pub struct Agent {
    store: Store,
    cfg: AgentConfig,
    docs: HashMap<DocumentId, Automerge>,
    session: Option<Session>,
    hub_storage: Option<StorageId>,
    last_sync_ms: Option<i64>,
}

impl Agent {
    /// Open the terminal's replica, loading every document it holds. A
    /// document that fails to load is logged and skipped; the rest serve.
    pub fn open(store: Store, cfg: AgentConfig) -> Result<Agent, AgentError> {
        let mut agent = Agent {
            store,
            cfg,
            docs: HashMap::new(),
            session: None,
            hub_storage: None,
            last_sync_ms: None,
        };
        for (id, loaded) in agent.store.load_all_documents()? {
            match loaded {
                Ok(doc) => {
                    agent.docs.insert(id, doc);
                }
                Err(e) => {
                    warn!(doc = %id, error = %e, "document failed to load; it will be re-synced from the hub")
                }
            }
        }
        let dir = DocumentId::directory_of(&agent.cfg.store_id);
        if !agent.docs.contains_key(&dir) {
            // The directory's genesis is deterministic: making it here is
            // the same change the hub made.
            let g = genesis::genesis(dir, DocKind::Directory);
            agent.store.append_changes(dir, std::slice::from_ref(&g))?;
            let mut d = Automerge::new();
            d.apply_changes([g]).map_err(ModelError::from)?;
            d.set_actor(agent.store.actor_id());
            agent.docs.insert(dir, d);
        }
        Ok(agent)
    }

    pub fn store(&self) -> &Store {
        &self.store
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
            .expect("opened with a directory");
        Ok(directory::read(d)?)
    }

    /// Every instance this terminal holds whose content has arrived.
    pub fn lists(&self) -> Vec<InstanceView> {
        let mut out: Vec<InstanceView> = self
            .docs
            .iter()
            .filter(|(id, _)| **id != self.directory_id())
            .filter_map(|(_, d)| instance::read(d).ok())
            .collect();
        out.sort_by(|a, b| {
            (a.meta.date, &a.meta.name, a.id).cmp(&(b.meta.date, &b.meta.name, b.id))
        });
        out
    }

    pub fn list(&self, id: DocumentId) -> Result<InstanceView, AgentError> {
        let d = self.docs.get(&id).ok_or(AgentError::UnknownList(id))?;
        Ok(instance::read(d)?)
    }

    /// Raw document (tests and the simulator compare heads).
    pub fn document(&self, id: DocumentId) -> Option<&Automerge> {
        self.docs.get(&id)
    }

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
        self.store
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
            self.store
                .set_meta(CLOCK_OFFSET_KEY, &offset.to_be_bytes())?;
        }
        Ok(())
    }

    pub fn sync_status(&self) -> Result<SyncStatus, AgentError> {
        Ok(SyncStatus {
            online: self.session.as_ref().is_some_and(|s| s.is_open()),
            last_sync_ms: self.last_sync_ms,
            rejected: self.store.rejections()?,
        })
    }

    // ---- local commands: durable before they return ---------------------

    fn commit_local(
        &mut self,
        doc_id: DocumentId,
        f: impl FnOnce(&mut Automerge) -> Result<Vec<Change>, ModelError>,
    ) -> Result<Vec<Output>, AgentError> {
        let doc = self
            .docs
            .get_mut(&doc_id)
            .ok_or(AgentError::UnknownList(doc_id))?;
        let mut scratch = doc.fork();
        scratch.set_actor(doc.get_actor().clone());
        let changes = f(&mut scratch)?;
        // Persist before the in-memory copy (and so any peer) can see it.
        self.store.append_changes(doc_id, &changes)?;
        doc.apply_changes(changes).map_err(ModelError::from)?;
        Ok(self.push(doc_id))
    }

    /// Record a worker's status update. When this returns Ok the event is
    /// on disk; the outputs carry it to the hub if connected.
    pub fn record_status(
        &mut self,
        list: DocumentId,
        update: &StatusUpdate,
        now_ms: i64,
    ) -> Result<(StatusEvent, Vec<Output>), AgentError> {
        let mut event = None;
        let out = self.commit_local(list, |doc| {
            let (e, c) = instance::record_status(doc, update, now_ms)?;
            event = Some(e);
            Ok(vec![c])
        })?;
        Ok((event.expect("set on success"), out))
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
                let changes = instance::materialize(&content)?;
                self.store.append_changes(content.id, &changes)?;
                let mut doc = Automerge::new();
                doc.apply_changes(changes).map_err(ModelError::from)?;
                doc.set_actor(self.store.actor_id());
                info!(doc = %content.id, date = %content.meta.date, "materialized offline");
                self.docs.insert(content.id, doc);
                out.extend(self.push(content.id));
            }
        }
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
        vec![Output::Send {
            conn: CONN,
            frame: wire::encode(&join),
        }]
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
            .store
            .save_sync_states(&storage::PeerId(hub.as_str().to_owned()), &states)
        {
            warn!(error = %e, "could not save sync state; next sync starts over");
        }
    }

    fn push(&mut self, doc_id: DocumentId) -> Vec<Output> {
        let (Some(session), Some(doc)) = (self.session.as_mut(), self.docs.get(&doc_id)) else {
            return Vec::new();
        };
        session
            .generate(doc_id, doc)
            .map(|m| Output::Send {
                conn: CONN,
                frame: wire::encode(&m),
            })
            .into_iter()
            .collect()
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
                self.hub_storage = storage_id;
                self.last_sync_ms = Some(now_ms);
                out.extend(self.start_sync());
            }
            SessionEvent::Sync { doc, message, .. } => {
                self.last_sync_ms = Some(now_ms);
                out.extend(self.on_sync(doc, message));
            }
            SessionEvent::Unavailable { doc } => {
                debug!(%doc, "hub does not offer this document");
            }
            SessionEvent::RemoteError { message } => match parse_rejection(&message) {
                Some((doc, hash, reason)) => {
                    warn!(%doc, %hash, %reason, "hub rejected a change");
                    let rec = RejectionRecord {
                        doc,
                        hash,
                        reason,
                        at: now_ms,
                    };
                    if let Err(e) = self.store.record_rejection(&rec) {
                        warn!(error = %e, "could not record the rejection");
                    }
                }
                None => warn!(%message, "hub reported an error"),
            },
            SessionEvent::Leave => out.push(Output::Close {
                conn: CONN,
                reason: "hub left".into(),
            }),
            SessionEvent::Ignored(_) => {}
        }
        out
    }

    /// After the handshake: sync every held document (resuming from saved
    /// state) and ask for the ones the directory lists but we lack.
    fn start_sync(&mut self) -> Vec<Output> {
        if let (Some(hub), Some(session)) = (&self.hub_storage, self.session.as_mut()) {
            let peer = storage::PeerId(hub.as_str().to_owned());
            for id in self.docs.keys() {
                if let Ok(Some(state)) = self.store.load_sync_state(&peer, *id) {
                    session.restore_sync_state(*id, &state);
                }
            }
        }
        let mut ids: Vec<DocumentId> = self.docs.keys().copied().collect();
        ids.sort();
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
        for id in dir.entries.keys() {
            if !self.docs.contains_key(id) && !session.has_document(*id) {
                if let Some(m) = session.request(*id) {
                    out.push(Self::send(m));
                }
            }
        }
        out
    }

    fn on_sync(&mut self, doc_id: DocumentId, message: automerge::sync::Message) -> Vec<Output> {
        let is_dir = doc_id == self.directory_id();
        let actor = self.store.actor_id();
        let Some(session) = self.session.as_mut() else {
            return Vec::new();
        };
        let doc = self.docs.entry(doc_id).or_insert_with(|| {
            let mut d = Automerge::new();
            d.set_actor(actor);
            d
        });
        let before = doc.get_heads();
        let mut scratch = doc.fork();
        scratch.set_actor(doc.get_actor().clone());
        let mut state = session.sync_state(doc_id).clone();
        if let Err(e) =
            automerge::sync::SyncDoc::receive_sync_message(&mut scratch, &mut state, message)
        {
            warn!(doc = %doc_id, error = %e, "bad sync message from hub");
            return vec![Output::Close {
                conn: CONN,
                reason: e.to_string(),
            }];
        }
        let new_changes = scratch.get_changes(&before);
        // Persist before the changes become visible or acknowledged.
        if !new_changes.is_empty() {
            if let Err(e) = self.store.append_changes(doc_id, &new_changes) {
                warn!(doc = %doc_id, error = %e, "could not store changes from the hub; dropping the connection");
                return vec![Output::Close {
                    conn: CONN,
                    reason: e.to_string(),
                }];
            }
        }
        *doc = scratch;
        *session.sync_state(doc_id) = state;
        let mut out = self.push(doc_id);
        if is_dir && !new_changes.is_empty() {
            out.extend(self.request_missing());
        }
        out
    }

    /// Local changes the hub has not confirmed yet, per document (for the
    /// sync indicator): changes whose hash the hub's last known heads do
    /// not cover.
    pub fn unconfirmed(&mut self) -> BTreeMap<DocumentId, usize> {
        let mut out = BTreeMap::new();
        let Some(session) = self.session.as_mut() else {
            return out;
        };
        for (id, doc) in &self.docs {
            if !session.has_document(*id) {
                continue;
            }
            let shared = session.sync_state(*id).shared_heads.clone();
            let n = doc.get_changes(&shared).len();
            if n > 0 {
                out.insert(*id, n);
            }
        }
        out
    }
}
