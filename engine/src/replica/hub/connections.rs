//! The hub's connections: who is connected as whom, opening and closing
//! them, and what goes out on one (the registry; each connection's
//! protocol state is its `Session`).

use super::*;

pub(super) struct Conn {
    pub(super) principal: Principal,
    pub(super) session: Session,
    pub(super) storage_id: Option<StorageId>,
    pub(super) bucket: TokenBucket,
    /// Changes this peer sent whose dependencies have not arrived yet, per
    /// document. Kept (not applied: they are unvalidated) and re-validated
    /// with the next batch; their missing dependencies are asked for in
    /// `need`, which is how Automerge recovers from a Bloom-filter false
    /// positive on the sender's side.
    pub(super) waiting: HashMap<DocumentId, Vec<Change>>,
}

pub(super) fn storage_peer(sid: &StorageId) -> storage::PeerId {
    storage::PeerId(sid.as_str().to_owned())
}

impl Hub {
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
        self.forget_conn(conn, true);
    }

    /// Forget `conn`; with `save`, write its store's last-sync time and
    /// its sync states first. Without: its store's lease is lost, and its
    /// rows belong to the store's new owner.
    fn forget_conn(&mut self, conn: ConnId, save: bool) {
        let seen = self.activity.disconnected(conn);
        if save {
            self.record_store_sync(seen);
        }
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
        if let (true, Some(sid)) = (save, &c.storage_id) {
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
    pub(super) fn record_store_sync(&mut self, seen: Option<(StoreId, i64)>) {
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

    pub(super) fn fatal(&mut self, conn: ConnId, reason: String) -> Vec<Output> {
        self.close_conn(conn, reason, true)
    }

    /// Say `reason` on `conn` (an `error` message) and close it; `save`
    /// as in [`Hub::forget_conn`].
    pub(super) fn close_conn(&mut self, conn: ConnId, reason: String, save: bool) -> Vec<Output> {
        warn!(conn, %reason, "closing connection");
        let mut out = Vec::new();
        if let Some(c) = self.conns.get(&conn) {
            out.push(Output::Send {
                conn,
                frame: wire::encode(&c.session.error(reason.clone())),
            });
        }
        out.push(Output::Close { conn, reason });
        self.forget_conn(conn, save);
        out
    }

    /// One document's sync message failed on `conn`: say why and forget
    /// that document's sync state with the peer (its next message starts
    /// over), but keep the connection, so its other documents go on.
    pub(super) fn document_failed(
        &mut self,
        conn: ConnId,
        doc_id: DocumentId,
        reason: String,
    ) -> Vec<Output> {
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

    pub(super) fn send(&mut self, conn: ConnId, msg: &WireMessage) -> Output {
        let frame = wire::encode(msg);
        self.counters.bytes_out += frame.len() as u64;
        Output::Send { conn, frame }
    }
}
