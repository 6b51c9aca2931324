//! Replicas as state machines: the hub and the pos-agent. Each owns its
//! database (`SqliteDatabase`) and is driven by inputs (a local command, a frame from
//! a connection, a timer tick), each carrying `now`; it returns outputs
//! (frames to send, connections to close). No sockets, threads or clocks:
//! the binaries run them on a dedicated thread, the simulator runs them in
//! virtual time.
//!
//! Persist before send: every change a replica accepts or makes is durable
//! in SQLite before any output that depends on it is returned.

pub mod agent;
mod connectivity;
pub mod hub;
mod hub_admin;
mod hub_publish;
mod hub_queries;
mod hub_templates;
pub mod moved;

pub use connectivity::{StoreLink, WRITE_EVERY_MS};
pub use hub::Batch;
pub use hub_admin::RemovedStore;
pub use hub_publish::PublishFailure;
pub use hub_queries::StoreStatus;
pub use hub_templates::{PurgeReport, TemplateRemoval, DEFAULT_HORIZON_DAYS};
mod rate;
pub mod refusal;

pub use moved::Moved;
pub use refusal::{is_sequence_reused, parse_rejection, RecordedRefusal, Refusal, Rule};

/// A connection, as numbered by whoever owns the sockets.
pub type ConnId = u64;

/// What a replica asks its I/O layer to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send one binary frame on a connection.
    Send { conn: ConnId, frame: Vec<u8> },
    /// Close a connection (after sending whatever was queued before it).
    Close { conn: ConnId, reason: String },
    /// The hub's storage refused a commit because this node no longer
    /// holds these stores' leases ([`StorageError::LeaseLost`]): their
    /// connections are closed (`moved`) and their cached documents
    /// dropped; the shell stops serving them (its lease view forgets
    /// them) and leaves them to their new owner. Only the hub says this.
    ///
    /// [`StorageError::LeaseLost`]: crate::storage::StorageError::LeaseLost
    LeaseLost { stores: Vec<crate::ids::StoreId> },
}

#[cfg(test)]
mod tests;
