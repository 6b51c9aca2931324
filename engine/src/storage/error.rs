//! Storage errors, the same for every backend: what kind of failure it is
//! (a caller acts on the kind), which database it hit (an operator may run
//! several replicas on one machine) and what to do about it. The backend's
//! own error rides along as the `source`; its type never shows here.

use crate::ids::DocumentId;

/// A backend's own error (rusqlite's, later PostgreSQL's), kept as the
/// `source` of a [`StorageError`] for logs and error chains.
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong with a replica's database. `location` names it: the
/// file of a SQLite database, the address (without password) of a server.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The disk (or the backend's size limit) is full. The write was rolled
    /// back, so the caller must not acknowledge it.
    #[error(
        "disk full while writing {location}: the write was rolled back and nothing from it was \
         saved; free disk space and retry"
    )]
    DiskFull {
        location: String,
        #[source]
        source: BackendError,
    },

    /// Something stored is unusable as it is: the whole database, one
    /// document, or a schema this build does not know. `repair` says what
    /// an operator (or, for one document, the replica itself) can do.
    #[error("{}; {repair}", damage.describe(location))]
    Damaged {
        location: String,
        damage: Damage,
        repair: Repair,
        #[source]
        source: Option<BackendError>,
    },

    /// The unit of work was rolled back for reasons outside it (another
    /// writer, an earlier failed write of the same batch): nothing from it
    /// was saved, and running it again may succeed.
    #[error("{}", conflict.describe(location))]
    Conflict {
        location: String,
        conflict: Conflict,
        #[source]
        source: Option<BackendError>,
    },

    /// The database could not be reached or did not do what was asked
    /// (cannot open, I/O error, ...). Writes are all or nothing, so a
    /// failed one left nothing behind.
    #[error("{}", unavailable.describe(location, source))]
    Unavailable {
        location: String,
        unavailable: Unavailable,
        #[source]
        source: BackendError,
    },

    /// This hub node no longer holds the lease of `stores` (a cluster
    /// backend's fence refused the commit: another node claimed them, or
    /// this one was paused or cut off past its lease). The whole unit of
    /// work was rolled back. Not a [`StorageError::Conflict`]: running it
    /// again cannot succeed; the caller must stop serving those stores
    /// and leave them to their new owner.
    #[error(
        "this hub node lost the lease of {} in {location}: another node serves {} now; nothing \
         of this batch was saved",
        stores.join(", "),
        if stores.len() == 1 { "it" } else { "them" }
    )]
    LeaseLost {
        location: String,
        /// The stores' codes, as the backend read them from its lease rows.
        stores: Vec<String>,
    },

    /// The operation needs a document this replica does not hold.
    #[error("document {doc} is not stored in {location}")]
    UnknownDocument { location: String, doc: DocumentId },
}

/// What is damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The database as a whole (truncated, overwritten pages, ...).
    Database { detail: String },
    /// The location holds something that is not a database of this
    /// backend's `kind` (e.g. "SQLite") at all.
    NotADatabase { kind: &'static str },
    /// Written by a newer build; opening it could misread or corrupt data.
    SchemaTooNew { found: i64, known: i64 },
    /// One document's stored bytes do not decode. Only that document is
    /// affected; the others still load.
    Document { doc: DocumentId, reason: String },
}

impl Damage {
    fn describe(&self, location: &str) -> String {
        match self {
            Damage::Database { detail } => {
                format!("replica database {location} is damaged ({detail})")
            }
            Damage::NotADatabase { kind } => format!("{location} is not a {kind} database"),
            Damage::SchemaTooNew { found, known } => format!(
                "replica database {location} has schema version {found}, but this build knows \
                 versions up to {known}"
            ),
            Damage::Document { doc, reason } => {
                format!("document {doc} in {location} is corrupt: {reason}")
            }
        }
    }
}

/// How to repair a [`Damage`]: the backend picks the one that fits it
/// (a file can be moved aside, a server's database cannot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Repair {
    #[error(
        "restore it from a backup, or move it aside so the replica starts empty and resyncs \
         from the hub"
    )]
    RestoreOrMoveAside,
    #[error(
        "check the configured path, or move the file aside so a new replica database is \
         created there (it will resync from the hub)"
    )]
    CheckPathOrMoveAside,
    #[error("run a newer build, or restore a backup made by this version")]
    RunNewerBuild,
    /// The replica can do this itself: set the document aside and fetch it again.
    #[error("delete the document so it resyncs from peers, or restore the database from a backup")]
    ResyncDocument,
}

/// Why a unit of work was rolled back without being at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// Another writer held the database's write lock past the wait.
    Busy,
    /// An earlier write of this batch failed and the backend rolled the
    /// whole batch back.
    BatchRolledBack,
}

impl Conflict {
    fn describe(&self, location: &str) -> String {
        match self {
            Conflict::Busy => format!(
                "replica database {location} is busy: another process held its lock too long, and \
                 nothing was changed; stop the other process or retry"
            ),
            Conflict::BatchRolledBack => format!(
                "an earlier write in this batch failed and the database rolled the batch back in \
                 {location}: nothing from it was saved"
            ),
        }
    }
}

/// What could not be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The database could not be opened at all (missing directory, no
    /// permission, ...).
    CannotOpen,
    /// An operation failed in the backend (I/O error, ...).
    Failed,
    /// A database server could not be reached, or the connection to it
    /// was lost: nothing of the write in flight was saved.
    Unreachable,
}

impl Unavailable {
    fn describe(&self, location: &str, source: &BackendError) -> String {
        match self {
            Unavailable::CannotOpen => format!(
                "cannot open replica database {location}: {source}; check that the directory \
                 exists and the file is readable and writable by this user"
            ),
            Unavailable::Failed => format!("database error on {location}: {source}"),
            Unavailable::Unreachable => format!(
                "cannot reach the database server {location}: {source}; check that it runs, \
                 the address and the credentials (nothing of the write in flight was saved)"
            ),
        }
    }
}

impl StorageError {
    /// The one document this error is about, if it is damage to that
    /// document alone: the replica can set it aside and fetch it again
    /// while every other document goes on.
    pub fn damaged_document(&self) -> Option<DocumentId> {
        match self {
            StorageError::Damaged {
                damage: Damage::Document { doc, .. },
                ..
            } => Some(*doc),
            _ => None,
        }
    }

    /// The stores whose lease this node lost, if this is
    /// [`StorageError::LeaseLost`]; a code that does not parse as a store
    /// id (a backend's bug) is left out with a warning.
    pub fn lost_stores(&self) -> Option<Vec<crate::ids::StoreId>> {
        let StorageError::LeaseLost { stores, .. } = self else {
            return None;
        };
        Some(
            stores
                .iter()
                .filter_map(|s| match s.parse() {
                    Ok(id) => Some(id),
                    Err(e) => {
                        tracing::warn!(store = %s, error = %e, "a lost lease names no valid store");
                        None
                    }
                })
                .collect(),
        )
    }

    /// One document in `location` does not decode (found by a backend
    /// reading its bytes, or by the replica applying them).
    pub fn damaged_document_at(
        location: impl Into<String>,
        doc: DocumentId,
        reason: impl Into<String>,
    ) -> Self {
        StorageError::Damaged {
            location: location.into(),
            damage: Damage::Document {
                doc,
                reason: reason.into(),
            },
            repair: Repair::ResyncDocument,
            source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_lease_says_which_stores_and_that_nothing_was_saved() {
        let e = StorageError::LeaseLost {
            location: "postgres://db/hub".into(),
            stores: vec!["store-1".into(), "not a store".into(), "store-2".into()],
        };
        assert_eq!(
            e.to_string(),
            "this hub node lost the lease of store-1, not a store, store-2 in postgres://db/hub: \
             another node serves them now; nothing of this batch was saved"
        );
        let lost: Vec<String> = e
            .lost_stores()
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(lost, ["store-1", "store-2"], "the bad code is left out");
        let busy = StorageError::Conflict {
            location: "x".into(),
            conflict: Conflict::Busy,
            source: None,
        };
        assert_eq!(busy.lost_stores(), None);
    }
}
