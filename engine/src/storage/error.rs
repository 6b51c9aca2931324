//! Storage errors. Each one names the database file (an operator may run
//! several replicas on one machine) and says what to do about it.

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

use crate::ids::DocumentId;

/// What went wrong with a replica's database.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The directory is missing, the file is not readable/writable, etc.
    #[error(
        "cannot open replica database {}: {source}; check that the directory exists and the \
         file is readable and writable by this user",
        file.display()
    )]
    CannotOpen {
        file: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// The file exists but is not a SQLite database at all.
    #[error(
        "{} is not a SQLite database; check the configured path, or move the file aside so a \
         new replica database is created there (it will resync from the hub)",
        file.display()
    )]
    NotADatabase { file: PathBuf },

    /// SQLite reports the file as malformed (truncated, overwritten pages, ...).
    #[error(
        "replica database {} is damaged ({detail}); restore it from a backup, or move it aside \
         so the replica starts empty and resyncs from the hub",
        file.display()
    )]
    Damaged { file: PathBuf, detail: String },

    /// Written by a newer build; opening it could misread or corrupt data.
    #[error(
        "replica database {} has schema version {found}, but this build knows versions up to \
         {known}; run a newer build, or restore a backup made by this version",
        file.display()
    )]
    TooNew {
        file: PathBuf,
        found: i64,
        known: i64,
    },

    /// SQLITE_FULL: the disk (or `max_page_count`) is full. The transaction
    /// was rolled back, so the caller must not acknowledge the write.
    #[error(
        "disk full while writing {}: the write was rolled back and nothing from it was saved; \
         free disk space and retry",
        file.display()
    )]
    DiskFull {
        file: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// A write of a group commit (`Store::begin_batch`) failed in a way
    /// that made SQLite roll the whole batch back (disk full, I/O error).
    #[error(
        "an earlier write in this batch failed and SQLite rolled the batch back in {}: \
         nothing from it was saved",
        file.display()
    )]
    BatchAborted { file: PathBuf },

    /// Any other SQLite failure (I/O error, lock timeout, ...). Writes are
    /// transactional, so a failed write left nothing behind.
    #[error("SQLite error on {}: {source}", file.display())]
    Sqlite {
        file: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// One document's snapshot or change rows do not decode. Only that
    /// document is affected; the others still load.
    #[error(
        "document {doc} in {} is corrupt: {reason}; delete the document so it resyncs from \
         peers, or restore the database from a backup",
        file.display()
    )]
    CorruptDocument {
        file: PathBuf,
        doc: DocumentId,
        reason: String,
    },

    /// The operation needs a document this replica does not hold.
    #[error("document {doc} is not stored in {}", file.display())]
    UnknownDocument { file: PathBuf, doc: DocumentId },
}

impl StorageError {
    /// Classify a SQLite error so the message tells the operator what to do.
    pub(crate) fn from_sqlite(file: &Path, source: rusqlite::Error) -> Self {
        let file = file.to_path_buf();
        match source.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => Self::DiskFull { file, source },
            Some(ErrorCode::NotADatabase) => Self::NotADatabase { file },
            Some(ErrorCode::DatabaseCorrupt) => Self::Damaged {
                file,
                detail: source.to_string(),
            },
            _ => Self::Sqlite { file, source },
        }
    }

    pub(crate) fn corrupt(file: &Path, doc: DocumentId, reason: impl Into<String>) -> Self {
        Self::CorruptDocument {
            file: file.to_path_buf(),
            doc,
            reason: reason.into(),
        }
    }
}
