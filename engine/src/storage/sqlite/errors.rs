//! From SQLite's errors to the backend-neutral [`StorageError`]: the one
//! place that reads rusqlite's error codes. The rusqlite error stays
//! attached as the `source`.

use std::path::Path;

use rusqlite::ErrorCode;

use crate::ids::DocumentId;
use crate::storage::error::{Conflict, Damage, Repair, Unavailable};
use crate::storage::StorageError;

/// How a SQLite database is named in messages: its file.
pub(super) fn location(file: &Path) -> String {
    file.display().to_string()
}

/// Classify a SQLite error so the message tells the operator what to do.
pub(super) fn from_sqlite(file: &Path, source: rusqlite::Error) -> StorageError {
    let location = location(file);
    match source.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StorageError::DiskFull {
            location,
            source: source.into(),
        },
        Some(ErrorCode::NotADatabase) => StorageError::Damaged {
            location,
            damage: Damage::NotADatabase { kind: "SQLite" },
            repair: Repair::CheckPathOrMoveAside,
            source: Some(source.into()),
        },
        Some(ErrorCode::DatabaseCorrupt) => StorageError::Damaged {
            location,
            damage: Damage::Database {
                detail: source.to_string(),
            },
            repair: Repair::RestoreOrMoveAside,
            source: Some(source.into()),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StorageError::Conflict {
            location,
            conflict: Conflict::Busy,
            source: Some(source.into()),
        },
        _ => StorageError::Unavailable {
            location,
            unavailable: Unavailable::Failed,
            source: source.into(),
        },
    }
}

/// A failure to open `file` at all, told apart from later SQL errors.
pub(super) fn cannot_open(file: &Path, source: rusqlite::Error) -> StorageError {
    match from_sqlite(file, source) {
        StorageError::Unavailable {
            location,
            unavailable: Unavailable::Failed,
            source,
        } => StorageError::Unavailable {
            location,
            unavailable: Unavailable::CannotOpen,
            source,
        },
        other => other,
    }
}

/// `PRAGMA quick_check` found problems SQLite itself did not report as errors.
pub(super) fn failed_integrity_check(file: &Path, problems: &[String]) -> StorageError {
    damaged(
        file,
        format!("integrity check found: {}", problems.join("; ")),
    )
}

/// The file is damaged in a way found by reading it, not by a SQLite error.
pub(super) fn damaged(file: &Path, detail: String) -> StorageError {
    StorageError::Damaged {
        location: location(file),
        damage: Damage::Database { detail },
        repair: Repair::RestoreOrMoveAside,
        source: None,
    }
}

/// The file's schema is newer than this build's.
pub(super) fn too_new(file: &Path, found: i64, known: i64) -> StorageError {
    StorageError::Damaged {
        location: location(file),
        damage: Damage::SchemaTooNew { found, known },
        repair: Repair::RunNewerBuild,
        source: None,
    }
}

/// SQLite rolled an open batch back after one of its writes failed.
pub(super) fn batch_rolled_back(file: &Path) -> StorageError {
    StorageError::Conflict {
        location: location(file),
        conflict: Conflict::BatchRolledBack,
        source: None,
    }
}

/// One document's rows do not decode.
pub(super) fn corrupt_document(file: &Path, doc: DocumentId, reason: String) -> StorageError {
    StorageError::damaged_document_at(location(file), doc, reason)
}

pub(super) fn unknown_document(file: &Path, doc: DocumentId) -> StorageError {
    StorageError::UnknownDocument {
        location: location(file),
        doc,
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    fn sqlite_error(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    /// The mapped error keeps the rusqlite error as its source.
    fn source_code(e: &StorageError) -> Option<ErrorCode> {
        e.source()?
            .downcast_ref::<rusqlite::Error>()?
            .sqlite_error_code()
    }

    #[test]
    fn sqlite_full_is_disk_full_with_the_sqlite_error_as_source() {
        let file = Path::new("/data/agent.db");
        let e = from_sqlite(file, sqlite_error(rusqlite::ffi::SQLITE_FULL));
        assert!(
            matches!(&e, StorageError::DiskFull { location, .. } if location == "/data/agent.db"),
            "{e:?}"
        );
        assert_eq!(source_code(&e), Some(ErrorCode::DiskFull));
        assert!(e.to_string().contains("free disk space"), "{e}");
    }

    #[test]
    fn sqlite_corrupt_and_notadb_are_damage_with_the_sqlite_error_as_source() {
        let file = Path::new("/data/agent.db");
        let e = from_sqlite(file, sqlite_error(rusqlite::ffi::SQLITE_CORRUPT));
        assert!(
            matches!(
                &e,
                StorageError::Damaged {
                    damage: Damage::Database { .. },
                    repair: Repair::RestoreOrMoveAside,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(source_code(&e), Some(ErrorCode::DatabaseCorrupt));
        assert!(e.to_string().contains("restore it from a backup"), "{e}");

        let e = from_sqlite(file, sqlite_error(rusqlite::ffi::SQLITE_NOTADB));
        assert!(
            matches!(
                &e,
                StorageError::Damaged {
                    damage: Damage::NotADatabase { .. },
                    repair: Repair::CheckPathOrMoveAside,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(source_code(&e), Some(ErrorCode::NotADatabase));
        assert!(e.to_string().contains("not a SQLite database"), "{e}");
        assert_eq!(
            e.damaged_document(),
            None,
            "the whole file, not one document"
        );
    }

    #[test]
    fn busy_is_a_conflict_and_anything_else_is_unavailable() {
        let file = Path::new("/data/agent.db");
        let e = from_sqlite(file, sqlite_error(rusqlite::ffi::SQLITE_BUSY));
        assert!(
            matches!(
                &e,
                StorageError::Conflict {
                    conflict: Conflict::Busy,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(source_code(&e), Some(ErrorCode::DatabaseBusy));
        let e = from_sqlite(file, sqlite_error(rusqlite::ffi::SQLITE_IOERR));
        assert!(
            matches!(
                &e,
                StorageError::Unavailable {
                    unavailable: Unavailable::Failed,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(source_code(&e), Some(ErrorCode::SystemIoFailure));
        let e = cannot_open(file, sqlite_error(rusqlite::ffi::SQLITE_CANTOPEN));
        assert!(
            matches!(
                &e,
                StorageError::Unavailable {
                    unavailable: Unavailable::CannotOpen,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("/data/agent.db"), "{e}");
    }
}
