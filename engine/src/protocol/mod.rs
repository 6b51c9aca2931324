//! automerge-repo sync protocol v1: wire messages and the per-connection state machine (sans-IO).
//!
//! PROTOCOL.md in this directory is the reference for the wire protocol.

mod cbor;
pub mod wire;

pub use wire::{
    decode, encode, select_protocol_version, PeerId, PeerMetadata, RemoteHeads, SessionId,
    StorageId, WireError, WireLimits, WireMessage, PROTOCOL_V1,
};
pub mod peer_auth;
pub mod session;

pub use session::{ProtocolError, Role, Session, SessionEvent};
