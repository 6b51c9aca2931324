//! Replicas as state machines: the hub and the pos-agent. Each owns its
//! `Store` (SQLite) and is driven by inputs (a local command, a frame from
//! a connection, a timer tick), each carrying `now`; it returns outputs
//! (frames to send, connections to close). No sockets, threads or clocks:
//! the binaries run them on a dedicated thread, the simulator runs them in
//! virtual time.
//!
//! Persist before send: every change a replica accepts or makes is durable
//! in SQLite before any output that depends on it is returned.

pub mod agent;
pub mod hub;
mod hub_admin;
mod hub_publish;
mod hub_queries;
mod hub_templates;

pub use hub_admin::RemovedStore;
pub use hub_publish::PublishFailure;
pub use hub_templates::{PurgeReport, TemplateRemoval, DEFAULT_HORIZON_DAYS};
mod rate;

/// A connection, as numbered by whoever owns the sockets.
pub type ConnId = u64;

/// What a replica asks its I/O layer to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send one binary frame on a connection.
    Send { conn: ConnId, frame: Vec<u8> },
    /// Close a connection (after sending whatever was queued before it).
    Close { conn: ConnId, reason: String },
}

/// The `error` text a hub sends for a rejected change; the agent parses it
/// back, so the format is part of the protocol between our two binaries.
pub fn rejection_message(
    doc: crate::ids::DocumentId,
    hash: &automerge::ChangeHash,
    reason: &str,
) -> String {
    format!(
        "rejected change {hash} in document {}: {reason}",
        doc.to_bs58check()
    )
}

/// Parse a `rejection_message`.
pub fn parse_rejection(message: &str) -> Option<(crate::ids::DocumentId, String, String)> {
    let rest = message.strip_prefix("rejected change ")?;
    let (hash, rest) = rest.split_once(" in document ")?;
    let (doc, reason) = rest.split_once(": ")?;
    let doc = crate::ids::DocumentId::from_bs58check(doc).ok()?;
    Some((doc, hash.to_owned(), reason.to_owned()))
}

/// Whether a rejection's reason (as `parse_rejection` gives it back) is
/// [`Rejection::SequenceReused`](crate::validation::Rejection::SequenceReused):
/// then the change was not wrong, the terminal's actor history diverged
/// from the hub's (a restored backup, or another holder of the store's
/// token wrote under this terminal's actor), and the agent recovers by
/// taking a fresh actor instead of listing the change as refused.
pub fn is_sequence_reused(reason: &str) -> bool {
    reason
        .strip_prefix("actor ")
        .and_then(|r| r.split_once(" already used sequence number "))
        .is_some_and(|(_, rest)| rest.ends_with(" for a different change"))
}

#[cfg(test)]
mod tests;
