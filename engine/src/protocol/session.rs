//! One connection's protocol state, sans-IO: the join/peer handshake and an
//! Automerge sync state per document. The replica (hub or agent) feeds it
//! decoded wire messages and asks it for the next message per document;
//! what to do with a document's changes (validate, store, fan out) is the
//! replica's business.
//!
//! Automerge's sync keeps answering while both sides' heads differ, which
//! is forever when the hub has rejected a change the agent still holds. So
//! a generated message that says nothing new (no changes, nothing needed,
//! same heads and bloom filter as the last one sent) is not sent.

use std::collections::HashMap;

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash};

use super::wire::{
    select_protocol_version, PeerId, PeerMetadata, StorageId, WireMessage, PROTOCOL_V1,
};
use crate::ids::DocumentId;

/// Which end of the connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends `join`, expects `peer` (a pos-agent, a JS client).
    Client,
    /// Answers `join` with `peer` (the hub).
    Server,
}

/// A protocol violation: the connection should get an `error` and close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("expected {expected} first, got {got}")]
    NotHandshaken {
        expected: &'static str,
        got: &'static str,
    },
    #[error("unsupported protocol versions {0:?}; this server speaks \"1\"")]
    UnsupportedVersion(Vec<String>),
    #[error("second {0} on an open connection")]
    DuplicateHandshake(&'static str),
    #[error("bad Automerge sync message for document {doc}: {reason}")]
    BadSyncMessage { doc: DocumentId, reason: String },
}

/// What an incoming message meant.
#[derive(Debug)]
pub enum SessionEvent {
    /// The handshake completed; the remote peer's identity.
    Opened {
        peer: PeerId,
        storage_id: Option<StorageId>,
        ephemeral: bool,
    },
    /// A sync message for a document. `request` is true when the sender has
    /// no copy and wants `doc-unavailable` if we have none either.
    Sync {
        doc: DocumentId,
        message: sync::Message,
        request: bool,
    },
    Unavailable {
        doc: DocumentId,
    },
    /// The remote reported an error (e.g. a rejected change).
    RemoteError {
        message: String,
    },
    Leave,
    /// Understood and deliberately not acted on (ephemeral, heads gossip).
    Ignored(&'static str),
}

struct DocSync {
    state: sync::State,
    /// (heads, need, have) of the last message sent, to suppress repeats.
    last_sent: Option<(Vec<ChangeHash>, Vec<ChangeHash>, Vec<u8>)>,
}

/// One connection's protocol state.
pub struct Session {
    role: Role,
    local: PeerId,
    local_meta: PeerMetadata,
    remote: Option<PeerId>,
    docs: HashMap<DocumentId, DocSync>,
}

impl Session {
    /// A client session and the `join` to send first.
    pub fn client(local: PeerId, meta: PeerMetadata) -> (Session, WireMessage) {
        let join = WireMessage::Join {
            sender_id: local.clone(),
            supported_protocol_versions: Some(vec![PROTOCOL_V1.to_owned()]),
            peer_metadata: Some(meta.clone()),
        };
        (Session::new(Role::Client, local, meta), join)
    }

    pub fn server(local: PeerId, meta: PeerMetadata) -> Session {
        Session::new(Role::Server, local, meta)
    }

    fn new(role: Role, local: PeerId, local_meta: PeerMetadata) -> Session {
        Session {
            role,
            local,
            local_meta,
            remote: None,
            docs: HashMap::new(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.remote.is_some()
    }

    pub fn remote(&self) -> Option<&PeerId> {
        self.remote.as_ref()
    }

    pub fn local(&self) -> &PeerId {
        &self.local
    }

    /// Documents this session has synced or been asked about.
    pub fn documents(&self) -> impl Iterator<Item = DocumentId> + '_ {
        self.docs.keys().copied()
    }

    pub fn has_document(&self, doc: DocumentId) -> bool {
        self.docs.contains_key(&doc)
    }

    pub fn document_count(&self) -> usize {
        self.docs.len()
    }

    /// Install a persisted sync state (before the first exchange for `doc`).
    pub fn restore_sync_state(&mut self, doc: DocumentId, encoded: &[u8]) {
        if let Ok(state) = sync::State::decode(encoded) {
            self.docs.insert(
                doc,
                DocSync {
                    state,
                    last_sent: None,
                },
            );
        }
    }

    /// The persistable part of `doc`'s sync state.
    pub fn encoded_sync_state(&self, doc: DocumentId) -> Option<Vec<u8>> {
        self.docs.get(&doc).map(|d| d.state.encode())
    }

    /// Forget a document (deleted, or the peer lost access).
    pub fn drop_document(&mut self, doc: DocumentId) {
        self.docs.remove(&doc);
    }

    /// Start `doc`'s sync on this connection over, after this side dropped
    /// changes it held (a diverged history rebuilt): forget what the
    /// exchange knew, and have the next message ask the peer to forget
    /// what it sent on this connection (Automerge's sync reset; a peer
    /// without it sees empty heads, which means the same). Without that,
    /// the peer never sends again a change it sent before the drop, even
    /// when asked for it by hash: Automerge leaves out whatever is in its
    /// `sent_hashes`, and this replica could never catch up.
    pub fn restart_document(&mut self, doc: DocumentId) {
        let capabilities = self
            .docs
            .remove(&doc)
            .and_then(|d| d.state.their_capabilities);
        let entry = self.doc_mut(doc);
        entry.state.their_capabilities = capabilities;
        entry.state.needs_reset = true;
    }

    fn doc_mut(&mut self, doc: DocumentId) -> &mut DocSync {
        self.docs.entry(doc).or_insert_with(|| DocSync {
            state: sync::State::new(),
            last_sent: None,
        })
    }

    /// Mutable sync state for `doc`, for the replica to feed Automerge.
    pub fn sync_state(&mut self, doc: DocumentId) -> &mut sync::State {
        &mut self.doc_mut(doc).state
    }

    /// Handle one decoded message. Returns what it meant and any direct reply
    /// (the `peer` answer to `join`).
    pub fn receive(
        &mut self,
        msg: WireMessage,
    ) -> Result<(SessionEvent, Option<WireMessage>), ProtocolError> {
        match msg {
            WireMessage::Join {
                sender_id,
                supported_protocol_versions,
                peer_metadata,
            } => {
                if self.role != Role::Server {
                    return Err(ProtocolError::NotHandshaken {
                        expected: "peer",
                        got: "join",
                    });
                }
                if self.remote.is_some() {
                    return Err(ProtocolError::DuplicateHandshake("join"));
                }
                let version = select_protocol_version(supported_protocol_versions.as_deref())
                    .ok_or_else(|| {
                        ProtocolError::UnsupportedVersion(
                            supported_protocol_versions.clone().unwrap_or_default(),
                        )
                    })?;
                self.remote = Some(sender_id.clone());
                let meta = peer_metadata.unwrap_or_default();
                let reply = WireMessage::Peer {
                    sender_id: self.local.clone(),
                    target_id: sender_id.clone(),
                    selected_protocol_version: version.to_owned(),
                    peer_metadata: Some(self.local_meta.clone()),
                };
                Ok((
                    SessionEvent::Opened {
                        peer: sender_id,
                        storage_id: meta.storage_id,
                        ephemeral: meta.is_ephemeral,
                    },
                    Some(reply),
                ))
            }
            WireMessage::Peer {
                sender_id,
                peer_metadata,
                ..
            } => {
                if self.role != Role::Client {
                    return Err(ProtocolError::NotHandshaken {
                        expected: "join",
                        got: "peer",
                    });
                }
                if self.remote.is_some() {
                    return Err(ProtocolError::DuplicateHandshake("peer"));
                }
                self.remote = Some(sender_id.clone());
                let meta = peer_metadata.unwrap_or_default();
                Ok((
                    SessionEvent::Opened {
                        peer: sender_id,
                        storage_id: meta.storage_id,
                        ephemeral: meta.is_ephemeral,
                    },
                    None,
                ))
            }
            WireMessage::Error { message, .. } => Ok((SessionEvent::RemoteError { message }, None)),
            other if self.remote.is_none() => Err(ProtocolError::NotHandshaken {
                expected: if self.role == Role::Server {
                    "join"
                } else {
                    "peer"
                },
                got: other.type_name(),
            }),
            // As the JS server does: a socket speaks for the peer that joined on it.
            other if other.sender_id() != self.remote.as_ref() => Ok((
                SessionEvent::Ignored("message from another sender id"),
                None,
            )),
            WireMessage::Sync {
                document_id, data, ..
            }
            | WireMessage::Request {
                document_id, data, ..
            } if data.is_empty() => Err(ProtocolError::BadSyncMessage {
                doc: document_id,
                reason: "empty data".into(),
            }),
            msg @ (WireMessage::Sync { .. } | WireMessage::Request { .. }) => {
                let request = matches!(msg, WireMessage::Request { .. });
                let (WireMessage::Sync {
                    document_id, data, ..
                }
                | WireMessage::Request {
                    document_id, data, ..
                }) = msg
                else {
                    unreachable!("matched Sync or Request above")
                };
                let message =
                    sync::Message::decode(&data).map_err(|e| ProtocolError::BadSyncMessage {
                        doc: document_id,
                        reason: e.to_string(),
                    })?;
                Ok((
                    SessionEvent::Sync {
                        doc: document_id,
                        message,
                        request,
                    },
                    None,
                ))
            }
            WireMessage::DocUnavailable { document_id, .. } => {
                Ok((SessionEvent::Unavailable { doc: document_id }, None))
            }
            WireMessage::Leave { .. } => Ok((SessionEvent::Leave, None)),
            WireMessage::Ephemeral { .. } => Ok((SessionEvent::Ignored("ephemeral"), None)),
            WireMessage::RemoteSubscriptionChange { .. } => {
                Ok((SessionEvent::Ignored("remote-subscription-change"), None))
            }
            WireMessage::RemoteHeadsChanged { .. } => {
                Ok((SessionEvent::Ignored("remote-heads-changed"), None))
            }
        }
    }

    /// Apply a received sync message to `doc` (already validated by the
    /// caller, which may have removed rejected changes from it).
    pub fn apply(
        &mut self,
        doc_id: DocumentId,
        doc: &mut Automerge,
        message: sync::Message,
    ) -> Result<(), automerge::AutomergeError> {
        let state = &mut self.doc_mut(doc_id).state;
        doc.receive_sync_message(state, message)
    }

    /// The next sync message for `doc`, if there is anything new to say.
    pub fn generate(&mut self, doc_id: DocumentId, doc: &Automerge) -> Option<WireMessage> {
        self.generate_with_need(doc_id, doc, &[])
    }

    /// Like `generate`, also asking the peer for `extra_need`: dependencies
    /// of changes it sent that we hold back until they arrive.
    pub fn generate_with_need(
        &mut self,
        doc_id: DocumentId,
        doc: &Automerge,
        extra_need: &[ChangeHash],
    ) -> Option<WireMessage> {
        let remote = self.remote.clone()?;
        let entry = self.doc_mut(doc_id);
        let mut msg = match doc.generate_sync_message(&mut entry.state) {
            Some(m) => m,
            None if !extra_need.is_empty() => {
                // Automerge sees nothing new to say; we still have a question.
                entry.state.last_sent_heads.clear();
                entry.state.in_flight = false;
                doc.generate_sync_message(&mut entry.state)?
            }
            None => return None,
        };
        if !extra_need.is_empty() {
            msg.need.extend_from_slice(extra_need);
            // The encoding requires sorted hashes.
            msg.need.sort();
            msg.need.dedup();
        }
        let have: Vec<u8> = msg.have.iter().flat_map(|h| h.bloom.to_bytes()).collect();
        let key = (msg.heads.clone(), msg.need.clone(), have);
        if msg.changes.is_empty() && entry.last_sent.as_ref() == Some(&key) {
            // Nothing new: let the exchange rest until either side changes.
            entry.state.in_flight = false;
            return None;
        }
        entry.last_sent = Some(key);
        Some(WireMessage::Sync {
            sender_id: self.local.clone(),
            target_id: remote,
            document_id: doc_id,
            data: msg.encode(),
        })
    }

    /// Ask for a document we have no copy of (automerge-repo's `request`).
    pub fn request(&mut self, doc_id: DocumentId) -> Option<WireMessage> {
        let remote = self.remote.clone()?;
        let entry = self.doc_mut(doc_id);
        let msg = Automerge::new().generate_sync_message(&mut entry.state)?;
        Some(WireMessage::Request {
            sender_id: self.local.clone(),
            target_id: remote,
            document_id: doc_id,
            data: msg.encode(),
        })
    }

    pub fn unavailable(&self, doc: DocumentId) -> Option<WireMessage> {
        Some(WireMessage::DocUnavailable {
            sender_id: self.local.clone(),
            target_id: self.remote.clone()?,
            document_id: doc,
        })
    }

    pub fn error(&self, message: impl Into<String>) -> WireMessage {
        WireMessage::Error {
            sender_id: Some(self.local.clone()),
            target_id: self.remote.clone(),
            message: message.into(),
        }
    }
}
