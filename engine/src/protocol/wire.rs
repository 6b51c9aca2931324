//! automerge-repo wire messages (protocol version "1"): the typed messages,
//! the decoder's limits and errors. `decode` and `encode` live in the
//! submodules; PROTOCOL.md (next to this file) describes the protocol and
//! cites the JavaScript sources this follows.

use std::collections::BTreeMap;
use std::fmt;

use automerge::ChangeHash;

use super::cbor::CborError;
use crate::ids::DocumentId;

mod decode;
mod encode;

pub use decode::decode;
pub use encode::encode;

/// The only protocol version automerge-repo defines (`ProtocolV1`).
pub const PROTOCOL_V1: &str = "1";

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A peer's id for the lifetime of one process (a browser tab, a hub run).
    /// automerge-repo makes `peer-<random>`; it is an opaque, non-empty string.
    PeerId
);
string_id!(
    /// Names a peer's persistent storage (JS: a UUID string). Sync state is
    /// kept per storage id, so a reconnecting peer resumes where it left off.
    StorageId
);
string_id!(
    /// Random per-process id that, with `count`, dedupes ephemeral messages.
    SessionId
);

/// `peerMetadata` from `join` and `peer`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerMetadata {
    /// Absent, `undefined`, `null` and `""` all mean "no storage": JS tests truthiness.
    pub storage_id: Option<StorageId>,
    /// Absent means `false`, as in JS. The JS repo only persists sync state
    /// for a peer that has a storage id and is not ephemeral.
    pub is_ephemeral: bool,
}

/// One storage id's entry in `remote-heads-changed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHeads {
    /// Heads of the document at that storage (bs58check strings on the wire).
    pub heads: Vec<ChangeHash>,
    /// Milliseconds since the Unix epoch on the peer that first saw the heads.
    pub timestamp_ms: u64,
}

/// One automerge-repo message. Field names follow the wire (`senderId` ->
/// `sender_id`); see PROTOCOL.md for when each is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireMessage {
    /// Client -> server, first message on a connection.
    Join {
        sender_id: PeerId,
        /// `None` when absent: clients older than versioning; JS servers treat that as "1".
        supported_protocol_versions: Option<Vec<String>>,
        peer_metadata: Option<PeerMetadata>,
    },
    /// Server -> client, the answer to `join`.
    Peer {
        sender_id: PeerId,
        target_id: PeerId,
        selected_protocol_version: String,
        peer_metadata: Option<PeerMetadata>,
    },
    /// Fatal: the sender closes the connection after it. JS servers fill both
    /// ids; the README's schema (and samod) send only `message`.
    Error {
        sender_id: Option<PeerId>,
        target_id: Option<PeerId>,
        message: String,
    },
    /// Advisory goodbye; sent by automerge-repo 1.x clients, not by 2.x.
    Leave { sender_id: PeerId },
    /// Like `sync`, but the sender has no copy and wants `doc-unavailable` if we have none either.
    Request {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        /// An Automerge sync message.
        data: Vec<u8>,
    },
    /// One Automerge sync-protocol message for a document.
    Sync {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        /// An Automerge sync message.
        data: Vec<u8>,
    },
    /// The sender has no copy of the document (or will not share it).
    DocUnavailable {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
    },
    /// Application data about a document that is relayed but never stored.
    Ephemeral {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        /// Strictly increasing per (`sender_id`, `session_id`); receivers drop repeats.
        count: u64,
        session_id: SessionId,
        /// CBOR-encoded application payload.
        data: Vec<u8>,
    },
    /// Adds or removes storage ids whose heads the sender wants gossiped to it.
    RemoteSubscriptionChange {
        sender_id: PeerId,
        target_id: PeerId,
        /// Absent, `undefined` and `null` decode as empty; empty lists are not encoded.
        add: Vec<StorageId>,
        remove: Vec<StorageId>,
    },
    /// Heads that some storage id is known to have for a document.
    RemoteHeadsChanged {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        new_heads: BTreeMap<StorageId, RemoteHeads>,
    },
}

impl WireMessage {
    /// The wire `type` string.
    pub fn type_name(&self) -> &'static str {
        match self {
            WireMessage::Join { .. } => "join",
            WireMessage::Peer { .. } => "peer",
            WireMessage::Error { .. } => "error",
            WireMessage::Leave { .. } => "leave",
            WireMessage::Request { .. } => "request",
            WireMessage::Sync { .. } => "sync",
            WireMessage::DocUnavailable { .. } => "doc-unavailable",
            WireMessage::Ephemeral { .. } => "ephemeral",
            WireMessage::RemoteSubscriptionChange { .. } => "remote-subscription-change",
            WireMessage::RemoteHeadsChanged { .. } => "remote-heads-changed",
        }
    }

    pub fn sender_id(&self) -> Option<&PeerId> {
        match self {
            WireMessage::Error { sender_id, .. } => sender_id.as_ref(),
            WireMessage::Join { sender_id, .. }
            | WireMessage::Peer { sender_id, .. }
            | WireMessage::Leave { sender_id }
            | WireMessage::Request { sender_id, .. }
            | WireMessage::Sync { sender_id, .. }
            | WireMessage::DocUnavailable { sender_id, .. }
            | WireMessage::Ephemeral { sender_id, .. }
            | WireMessage::RemoteSubscriptionChange { sender_id, .. }
            | WireMessage::RemoteHeadsChanged { sender_id, .. } => Some(sender_id),
        }
    }

    pub fn target_id(&self) -> Option<&PeerId> {
        match self {
            WireMessage::Join { .. } | WireMessage::Leave { .. } => None,
            WireMessage::Error { target_id, .. } => target_id.as_ref(),
            WireMessage::Peer { target_id, .. }
            | WireMessage::Request { target_id, .. }
            | WireMessage::Sync { target_id, .. }
            | WireMessage::DocUnavailable { target_id, .. }
            | WireMessage::Ephemeral { target_id, .. }
            | WireMessage::RemoteSubscriptionChange { target_id, .. }
            | WireMessage::RemoteHeadsChanged { target_id, .. } => Some(target_id),
        }
    }

    pub fn document_id(&self) -> Option<DocumentId> {
        match self {
            WireMessage::Request { document_id, .. }
            | WireMessage::Sync { document_id, .. }
            | WireMessage::DocUnavailable { document_id, .. }
            | WireMessage::Ephemeral { document_id, .. }
            | WireMessage::RemoteHeadsChanged { document_id, .. } => Some(*document_id),
            _ => None,
        }
    }
}

/// The version a server picks for a `join`, exactly as the JS server does:
/// absent list means a pre-versioning client speaking "1"; otherwise "1" if
/// offered, else none (send `error` "unsupported protocol version" and close).
pub fn select_protocol_version(supported: Option<&[String]>) -> Option<&'static str> {
    match supported {
        None => Some(PROTOCOL_V1),
        Some(versions) if versions.iter().any(|v| v == PROTOCOL_V1) => Some(PROTOCOL_V1),
        Some(_) => None,
    }
}

/// Bounds on what `decode` accepts. Every limit turns into a `WireError`, never a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireLimits {
    /// Largest frame accepted. Initial syncs carry whole documents, so this
    /// bounds the largest document a peer can send in one message.
    pub max_message_bytes: usize,
    /// Longest text field (ids, type, error message), in bytes.
    pub max_text_bytes: usize,
    /// Most entries in any one array or map, known field or not.
    pub max_items: usize,
    /// Deepest nesting of arrays, maps and tags; the message map is level 1.
    pub max_depth: usize,
}

impl Default for WireLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024 * 1024,
            max_text_bytes: 4096,
            max_items: 1024,
            max_depth: 16,
        }
    }
}

/// Why a frame was refused. Messages name the offending field or byte offset
/// and what a conforming automerge-repo peer would have sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("empty frame: automerge-repo messages are never zero-length")]
    Empty,
    #[error("message is {len} bytes, over the {max}-byte limit; raise the sync frame limit (WireLimits::max_message_bytes) if documents really are this large")]
    TooLarge { len: usize, max: usize },
    #[error("message is cut off: the CBOR value starting at byte {offset} ends early (partial frame or a bug in the sender's encoder)")]
    Truncated { offset: usize },
    #[error("malformed CBOR at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },
    #[error("{extra} unexpected bytes after the message, starting at byte {offset}: send exactly one CBOR map per WebSocket frame")]
    TrailingBytes { offset: usize, extra: usize },
    #[error("a message must be a CBOR map with text keys, found {found}")]
    NotAMap { found: &'static str },
    #[error("map key at byte {offset} is {found}; automerge-repo messages only have text keys")]
    NonTextKey { offset: usize, found: &'static str },
    #[error("value at byte {offset} nests deeper than {max} levels")]
    TooDeep { offset: usize, max: usize },
    #[error("array or map at byte {offset} has {len} entries, over the limit of {max}")]
    TooManyItems { offset: usize, len: u64, max: usize },
    #[error("field {field:?} is {len} bytes long, over the {max}-byte limit for text fields")]
    TextTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("text at byte {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: usize },
    #[error("message has no \"type\" field (or it is null); every automerge-repo message has one")]
    MissingType,
    #[error("unknown message type {msg_type:?}: the peer speaks a newer or different protocol; ignoring the message is safe")]
    UnknownType { msg_type: String },
    #[error("{msg_type:?} message lacks the required field {field:?} (or it is null/undefined)")]
    MissingField {
        msg_type: &'static str,
        field: &'static str,
    },
    #[error("field {field:?} appears more than once; send each field once")]
    DuplicateField { field: &'static str },
    #[error("field {field:?} should be {expected}, found {found}")]
    WrongFieldType {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("field {field:?} is empty; automerge-repo peers always send a non-empty value here")]
    EmptyField { field: &'static str },
    #[error("field {field:?} is not a usable number: {reason}")]
    BadNumber {
        field: &'static str,
        reason: &'static str,
    },
    #[error("field {field:?} holds {value:?}, which is not a document id: {reason}; ids are the bare bs58check of a 16-byte UUID, as in automerge:<id> URLs")]
    BadDocumentId {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("head {value:?} in \"newHeads\" is not a change hash: {reason}; heads are bs58check of 32-byte SHA-256 hashes")]
    BadHead { value: String, reason: String },
}

impl From<CborError> for WireError {
    fn from(e: CborError) -> Self {
        match e {
            CborError::Truncated { offset } => WireError::Truncated { offset },
            CborError::Malformed { offset, reason } => WireError::Malformed { offset, reason },
            CborError::TooDeep { offset, max } => WireError::TooDeep { offset, max },
            CborError::TooManyItems { offset, len, max } => {
                WireError::TooManyItems { offset, len, max }
            }
        }
    }
}

#[cfg(test)]
mod tests;
