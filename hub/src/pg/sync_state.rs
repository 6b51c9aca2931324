//! Automerge sync state per (peer, document) on PostgreSQL, stored
//! opaquely as on SQLite.

use engine::ids::DocumentId;
use engine::storage::roles::*;
use engine::storage::{PeerId, StorageError};

use super::PgDatabase;

const PUT: &str = "INSERT INTO sync_states (peer, doc_id, state) VALUES ($1, $2, $3)
                   ON CONFLICT (peer, doc_id) DO UPDATE SET state = excluded.state";

impl SyncStates for PgDatabase {
    fn save_sync_state(
        &mut self,
        peer: &PeerId,
        doc: DocumentId,
        state: &[u8],
    ) -> Result<(), StorageError> {
        if self
            .hold(&[doc], &[], |p| p.sync_state(peer.as_str(), doc, state))
            .is_some()
        {
            return Ok(());
        }
        self.write(async |tx| {
            tx.touch_doc(doc).await?;
            tx.execute(PUT, &[&peer.as_str(), &&doc.as_bytes()[..], &state])
                .await?;
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
        let written: Vec<DocumentId> = states.iter().map(|(d, _)| *d).collect();
        let held = self.hold(&written, &[], |p| {
            for (doc, state) in states {
                p.sync_state(peer.as_str(), *doc, state);
            }
        });
        if held.is_some() {
            return Ok(());
        }
        let docs: Vec<&[u8]> = states.iter().map(|(d, _)| &d.as_bytes()[..]).collect();
        let bytes: Vec<&[u8]> = states.iter().map(|(_, s)| s.as_slice()).collect();
        self.write(async |tx| {
            for (doc, _) in states {
                tx.touch_doc(*doc).await?;
            }
            // One statement for the whole session; a document named twice
            // keeps its last state, as separate upserts would.
            tx.execute(
                "INSERT INTO sync_states (peer, doc_id, state)
                 SELECT DISTINCT ON (d) $1, d, s
                   FROM unnest($2::bytea[], $3::bytea[]) WITH ORDINALITY AS x(d, s, n)
                  ORDER BY d, n DESC
                 ON CONFLICT (peer, doc_id) DO UPDATE SET state = excluded.state",
                &[&peer.as_str(), &docs, &bytes],
            )
            .await?;
            Ok(())
        })
    }

    fn load_sync_state(
        &self,
        peer: &PeerId,
        doc: DocumentId,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.read(async |tx| {
            let row = tx
                .query_opt(
                    "SELECT state FROM sync_states WHERE peer = $1 AND doc_id = $2",
                    &[&peer.as_str(), &&doc.as_bytes()[..]],
                )
                .await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn forget_peer(&mut self, peer: &PeerId) -> Result<usize, StorageError> {
        self.write(async |tx| {
            let n = tx
                .execute("DELETE FROM sync_states WHERE peer = $1", &[&peer.as_str()])
                .await?;
            Ok(n as usize)
        })
    }
}
