//! Storage: the one part of the engine that does I/O.
//!
//! The replicas keep their documents, sync state and (at the hub) the
//! registry and the status index through the types here. [`sqlite`] is
//! the backend, and the default; the database type is
//! [`SqliteDatabase`].

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod delegate;
mod error;
pub mod index_rows;
pub mod read_cache;
pub mod roles;
pub mod sqlite;

#[doc(hidden)]
pub use delegate::StoreWrites;
pub use error::{BackendError, Conflict, Damage, Repair, StorageError, Unavailable};
pub use index_rows::{IndexUpdate, IndexedRows};
pub use roles::{
    Documents, Groups, HqAccounts, Registry, StatusIndex, StatusQueries, SyncStates, Templates,
};
pub use sqlite::{
    CompactionStats, DocumentLoad, ListStatusRow, PastDueCount, PastDueRow, PeerId, PurgeFilter,
    RejectionRecord, SqliteDatabase, StoreListRow, StoreRecord, TokenCheck, TokenInfo,
    WorkerEventRow, CURRENT_VERSION, QUARANTINE_PREFIX, TOKEN_ID_LEN,
};
