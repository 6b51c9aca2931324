//! From PostgreSQL's errors to the backend-neutral [`StorageError`]: the
//! one place that reads SQLSTATE codes. The driver's error stays attached
//! as the `source`.

use engine::ids::DocumentId;
use engine::storage::{Conflict, Damage, Repair, StorageError, Unavailable};
use tokio_postgres::error::SqlState;

/// Classify a driver error so the message tells the operator what to do.
pub(crate) fn from_pg(location: &str, source: tokio_postgres::Error) -> StorageError {
    let location = location.to_owned();
    let source = Described(source);
    let Some(code) = source.0.code().cloned() else {
        // No SQLSTATE: the connection failed or closed, or a value did not
        // convert. Either way nothing of the write in flight committed.
        return StorageError::Unavailable {
            location,
            unavailable: Unavailable::Unreachable,
            source: source.into(),
        };
    };
    if code == SqlState::DISK_FULL || code == SqlState::OUT_OF_MEMORY {
        return StorageError::DiskFull {
            location,
            source: source.into(),
        };
    }
    if code == SqlState::T_R_SERIALIZATION_FAILURE
        || code == SqlState::T_R_DEADLOCK_DETECTED
        || code == SqlState::LOCK_NOT_AVAILABLE
        || code == SqlState::QUERY_CANCELED
    {
        return StorageError::Conflict {
            location,
            conflict: Conflict::Busy,
            source: Some(source.into()),
        };
    }
    if code == SqlState::IN_FAILED_SQL_TRANSACTION {
        return StorageError::Conflict {
            location,
            conflict: Conflict::BatchRolledBack,
            source: Some(source.into()),
        };
    }
    if code == SqlState::DATA_CORRUPTED || code == SqlState::INDEX_CORRUPTED {
        return StorageError::Damaged {
            location,
            damage: Damage::Database {
                detail: source.to_string(),
            },
            repair: Repair::RestoreOrMoveAside,
            source: Some(source.into()),
        };
    }
    let unreachable = code.code().starts_with("08")
        || code == SqlState::ADMIN_SHUTDOWN
        || code == SqlState::CRASH_SHUTDOWN
        || code == SqlState::CANNOT_CONNECT_NOW
        || code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT;
    StorageError::Unavailable {
        location,
        unavailable: if unreachable {
            Unavailable::Unreachable
        } else {
            Unavailable::Failed
        },
        source: source.into(),
    }
}

/// Stored bytes of one document do not decode.
pub(crate) fn corrupt_document(location: &str, doc: DocumentId, reason: String) -> StorageError {
    StorageError::damaged_document_at(location, doc, reason)
}

pub(crate) fn unknown_document(location: &str, doc: DocumentId) -> StorageError {
    StorageError::UnknownDocument {
        location: location.to_owned(),
        doc,
    }
}

/// A row holds a value the schema's checks should have kept out.
pub(crate) fn damaged(location: &str, detail: String) -> StorageError {
    StorageError::Damaged {
        location: location.to_owned(),
        damage: Damage::Database { detail },
        repair: Repair::RestoreOrMoveAside,
        source: None,
    }
}

/// The tables were made by a newer build.
pub(crate) fn too_new(location: &str, found: i64, known: i64) -> StorageError {
    StorageError::Damaged {
        location: location.to_owned(),
        damage: Damage::SchemaTooNew { found, known },
        repair: Repair::RunNewerBuild,
        source: None,
    }
}

/// The driver's error with the server's message in its text: its own
/// says only "db error" and keeps what PostgreSQL said in its source,
/// which the operator's log line would not show.
#[derive(Debug)]
struct Described(tokio_postgres::Error);

impl std::fmt::Display for Described {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => {
                write!(
                    f,
                    "{} ({}): {}",
                    db.severity(),
                    db.code().code(),
                    db.message()
                )?;
                if let Some(d) = db.detail() {
                    write!(f, "; {d}")?;
                }
                Ok(())
            }
            None => self.0.fmt(f),
        }
    }
}

impl std::error::Error for Described {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
