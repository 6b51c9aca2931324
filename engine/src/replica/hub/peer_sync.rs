//! One frame from a connection: decode, dispatch, and the sync of one
//! document with one peer (scoping, validation, persist, reply, fan-out).

use super::*;
use automerge::sync;

/// Most changes one connection may leave waiting for dependencies.
const MAX_WAITING_CHANGES: usize = 10_000;

impl Hub {
    /// One frame from a connection.
    pub fn receive(&mut self, conn: ConnId, frame: &[u8], now_ms: i64) -> Vec<Output> {
        // A store's frames are handled only where the store is served: a
        // node (or a node's replica thread) that does not serve it now
        // writes nothing for it, not even its last-sync time, and sends
        // the terminal on (it moved since the upgrade, or the connection
        // reached the wrong replica).
        if let Some(Principal::Store(store)) = self.conns.get(&conn).map(|c| &c.principal) {
            if !self.serves(store) {
                let store = store.clone();
                warn!(conn, %store, "a frame for a store not served here; sending its terminal on");
                return self.close_conn(conn, Moved::new(None).encode(), false);
            }
        }
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
    pub(super) fn visible(
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

    /// One sync message for `doc_id` from `conn`: admit the document on
    /// this connection, take the peer's heads and needs, validate and store
    /// its changes, then reply and fan the accepted ones out.
    pub(super) fn on_sync(
        &mut self,
        conn: ConnId,
        doc_id: DocumentId,
        mut message: sync::Message,
        now_ms: i64,
    ) -> Vec<Output> {
        let (principal, owner) = match self.admit(conn, doc_id) {
            Ok(admitted) => admitted,
            Err(out) => return out,
        };
        let Some((c, doc)) = self.peer_and_document(conn, doc_id) else {
            return Vec::new();
        };
        let mut incoming = match changes_in(doc, &message) {
            Ok(changes) => changes,
            Err(e) => {
                return self.document_failed(
                    conn,
                    doc_id,
                    format!("undecodable changes for {doc_id}: {e}"),
                )
            }
        };
        incoming.extend(c.waiting.remove(&doc_id).unwrap_or_default());
        // The peer's heads, need and have go into the sync state *before*
        // its accepted changes reach the document: Automerge reads a message
        // without changes whose heads equal ours as an acknowledgement of
        // what we sent, and would then never answer, so the peer would never
        // see the hub's heads include its change (JS `getSyncInfo`, the
        // agent's unconfirmed count).
        message.changes = Vec::<Vec<u8>>::new().into();
        if let Err(e) = c.session.apply(doc_id, doc, message) {
            return self.document_failed(
                conn,
                doc_id,
                format!("bad sync message for {doc_id}: {e}"),
            );
        }
        let mut out = Vec::new();
        let mut accepted_any = false;
        if !incoming.is_empty() {
            match self.validate_and_store(doc_id, &owner, &principal, &incoming, now_ms) {
                Ok((accepted, rejections, waiting)) => {
                    accepted_any = accepted > 0;
                    if let Err(closing) = self.hold_waiting(conn, doc_id, waiting) {
                        return closing;
                    }
                    for (hash, rejection) in rejections {
                        let refusal = Refusal::new(doc_id, hash, &rejection);
                        warn!(conn, %principal, doc = %doc_id, %hash, reason = %refusal.reason, rule = %refusal.rule, "change rejected");
                        if let Some(c) = self.conns.get(&conn) {
                            let err = c.session.error(refusal.encode());
                            out.push(self.send(conn, &err));
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
        if let Some((c, doc)) = self.peer_and_document(conn, doc_id) {
            let waiting = c.waiting.get(&doc_id).map(Vec::as_slice).unwrap_or(&[]);
            let need = missing_dependencies(doc, waiting);
            if let Some(reply) = c.session.generate_with_need(doc_id, doc, &need) {
                out.push(self.send(conn, &reply));
            }
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

    /// Before a connection's first message about `doc_id`: may its
    /// principal see the document (missing and forbidden look the same),
    /// is it within the connection's document limit, is the document
    /// loaded, and is the peer's saved sync state restored. Then the
    /// connection subscribes to the document. Returns the principal and
    /// the document's owner, or what to send instead.
    fn admit(
        &mut self,
        conn: ConnId,
        doc_id: DocumentId,
    ) -> Result<(Principal, (StoreId, DocKind)), Vec<Output>> {
        let Some(c) = self.conns.get(&conn) else {
            return Err(Vec::new());
        };
        let principal = c.principal.clone();
        let unavailable = |hub: &mut Hub| -> Vec<Output> {
            let msg = hub
                .conns
                .get(&conn)
                .and_then(|c| c.session.unavailable(doc_id));
            msg.map(|m| hub.send(conn, &m)).into_iter().collect()
        };
        let owner = match self.visible(&principal, doc_id) {
            Ok(Some(o)) => o,
            Ok(None) => return Err(unavailable(self)),
            Err(e) => return Err(self.fatal(conn, format!("hub storage error: {e}"))),
        };
        let first_contact = !c.session.has_document(doc_id);
        let max = self.cfg.limits.max_documents_per_connection;
        if first_contact && c.session.document_count() >= max {
            return Err(self.fatal(conn, format!("more than {max} documents on one connection")));
        }
        let storage_id = c.storage_id.clone();
        if let Err(e) = self.load(doc_id) {
            warn!(conn, doc = %doc_id, error = %e, "document unavailable");
            return Err(unavailable(self));
        }
        if let (true, Some(sid)) = (first_contact, &storage_id) {
            if let Ok(Some(state)) = self.db.load_sync_state(&storage_peer(sid), doc_id) {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.session.restore_sync_state(doc_id, &state);
                }
            }
        }
        self.subscribers.entry(doc_id).or_default().insert(conn);
        Ok((principal, owner))
    }

    /// The connection and the document, borrowed together (both are
    /// there once `admit` said yes and until something closes the
    /// connection or drops the document).
    fn peer_and_document(
        &mut self,
        conn: ConnId,
        doc_id: DocumentId,
    ) -> Option<(&mut Conn, &mut Automerge)> {
        Some((self.conns.get_mut(&conn)?, self.docs.get_mut(&doc_id)?))
    }

    /// Keep the changes of `doc_id` that wait for dependencies on the
    /// connection, within its limit (else close it).
    fn hold_waiting(
        &mut self,
        conn: ConnId,
        doc_id: DocumentId,
        waiting: Vec<Change>,
    ) -> Result<(), Vec<Output>> {
        if waiting.is_empty() {
            return Ok(());
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        let total: usize = c.waiting.values().map(Vec::len).sum();
        if total + waiting.len() > MAX_WAITING_CHANGES {
            return Err(self.fatal(
                conn,
                format!("more than {MAX_WAITING_CHANGES} changes waiting for their dependencies"),
            ));
        }
        c.waiting.insert(doc_id, waiting);
        Ok(())
    }

    /// Send `doc`'s news to every connection syncing it (except `skip`).
    pub(super) fn fan_out(&mut self, doc_id: DocumentId, skip: Option<ConnId>) -> Vec<Output> {
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
pub(crate) fn changes_in(
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
pub(crate) fn missing_dependencies(doc: &Automerge, waiting: &[Change]) -> Vec<ChangeHash> {
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
