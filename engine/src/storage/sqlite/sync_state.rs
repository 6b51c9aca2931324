//! Automerge sync state per (peer, document), persisted so a reconnecting
//! peer resumes from what it already has instead of a full heads exchange.
//!
//! The bytes are `automerge::sync::State::encode()` output; this module
//! stores them opaquely and never decodes them.

use std::fmt;

use rusqlite::{params, OptionalExtension};

use super::{SqliteDatabase, StorageError};
use crate::ids::DocumentId;
use crate::storage::roles::*;

/// A sync peer as automerge-repo names it (peer ids are free-form strings).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub String);

impl PeerId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for PeerId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for PeerId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl SyncStates for SqliteDatabase {
    fn save_sync_state(
        &mut self,
        peer: &PeerId,
        doc: DocumentId,
        state: &[u8],
    ) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO sync_states (peer, doc_id, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT (peer, doc_id) DO UPDATE SET state = excluded.state",
            )?
            .execute(params![peer.as_str(), doc.as_bytes(), state])?;
            Ok(())
        })
    }

    fn save_sync_states(
        &mut self,
        peer: &PeerId,
        states: &[(DocumentId, Vec<u8>)],
    ) -> Result<(), StorageError> {
        if states.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO sync_states (peer, doc_id, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT (peer, doc_id) DO UPDATE SET state = excluded.state",
            )?;
            for (doc, state) in states {
                stmt.execute(params![peer.as_str(), doc.as_bytes(), state])?;
            }
            Ok(())
        })
    }

    fn load_sync_state(
        &self,
        peer: &PeerId,
        doc: DocumentId,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT state FROM sync_states WHERE peer = ?1 AND doc_id = ?2")?
                .query_row(params![peer.as_str(), doc.as_bytes()], |row| row.get(0))
                .optional()?)
        })
    }

    fn forget_peer(&mut self, peer: &PeerId) -> Result<usize, StorageError> {
        self.write(|tx| {
            Ok(tx
                .prepare_cached("DELETE FROM sync_states WHERE peer = ?1")?
                .execute([peer.as_str()])?)
        })
    }
}

#[cfg(test)]
mod tests {
    use automerge::sync::{self, SyncDoc};

    use super::*;
    use crate::storage::sqlite::testing::{checklist, temp_store};

    #[test]
    fn sync_state_roundtrip() {
        let (_dir, mut store) = temp_store();
        let doc = DocumentId::from_random_bytes([1; 16]);
        let (hub, other) = (PeerId::from("hub"), PeerId::from("store-042"));
        assert_eq!(store.load_sync_state(&hub, doc).unwrap(), None);

        // A real state: after generating a message it remembers what we sent.
        let mut am = checklist(2);
        let mut state = sync::State::new();
        assert!(am.document().generate_sync_message(&mut state).is_some());
        let encoded = state.encode();
        store.save_sync_state(&hub, doc, &encoded).unwrap();
        let loaded = store.load_sync_state(&hub, doc).unwrap().expect("saved");
        assert_eq!(loaded, encoded);
        assert!(sync::State::decode(&loaded).is_ok());

        // Saving again replaces; other peers are separate.
        store.save_sync_state(&hub, doc, b"newer").unwrap();
        store.save_sync_state(&other, doc, b"theirs").unwrap();
        assert_eq!(
            store.load_sync_state(&hub, doc).unwrap(),
            Some(b"newer".to_vec())
        );

        let doc2 = DocumentId::from_random_bytes([2; 16]);
        store
            .save_sync_states(&other, &[(doc, b"batch".to_vec()), (doc2, b"two".to_vec())])
            .unwrap();
        assert_eq!(
            store.load_sync_state(&other, doc2).unwrap(),
            Some(b"two".to_vec())
        );
        store.save_sync_state(&other, doc, b"theirs").unwrap();

        assert_eq!(store.forget_peer(&hub).unwrap(), 1);
        assert_eq!(store.load_sync_state(&hub, doc).unwrap(), None);
        assert_eq!(
            store.load_sync_state(&other, doc).unwrap(),
            Some(b"theirs".to_vec())
        );
    }
}
