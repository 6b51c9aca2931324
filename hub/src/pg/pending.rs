//! The rows a batch writes on the hub's hot path, held back and sent
//! together: inside a batch (`begin_batch` .. `commit_batch`), accepted
//! changes, the actors they introduce, sync states, last-sync times and
//! index marks go here instead of to the server one statement (and one
//! round trip) each. They are written, one statement per table over
//! arrays, all pipelined in one round trip:
//! - before any read in the batch (a batch reads its own writes),
//! - before any other write in the batch (writes land in call order),
//! - before an operation begins (so undoing it undoes only its own rows),
//! - at the commit, together with the fence.
//!
//! On SQLite each write is a function call; on PostgreSQL it was a round
//! trip and a statement the server parsed, planned and ran, for one row.
//! `bench storage` measures the difference (BENCHMARKS.md).
//!
//! What is held here cannot fail on its own: every statement is an upsert
//! or an insert that ignores duplicates, into tables without checks the
//! rows could break. A flush can fail only with the connection or the
//! server, and then the batch fails as a whole, as it would have anyway.

use std::collections::{BTreeSet, HashMap, HashSet};

use automerge::Change;
use engine::ids::{DocumentId, StoreId};

use super::{Failure, Tx};

const DOCUMENTS: &str = "INSERT INTO documents (doc_id) SELECT unnest($1::bytea[])
   ON CONFLICT (doc_id) DO NOTHING";
const CHANGES: &str = "INSERT INTO changes (doc_id, hash, bytes)
   SELECT d, h, b FROM unnest($1::bytea[], $2::bytea[], $3::bytea[])
   WITH ORDINALITY AS c(d, h, b, n)
   ORDER BY n
   ON CONFLICT (doc_id, hash) DO NOTHING";
const ACTORS: &str = "INSERT INTO actor_owners (actor, principal)
   SELECT a, p FROM unnest($1::bytea[], $2::text[]) AS x(a, p)
   ON CONFLICT (actor) DO NOTHING";
const SYNC_STATES: &str = "INSERT INTO sync_states (peer, doc_id, state)
   SELECT p, d, s FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS x(p, d, s)
   ON CONFLICT (peer, doc_id) DO UPDATE SET state = excluded.state";
const STORE_SYNC: &str = "INSERT INTO store_sync (store_id, last_sync_ms)
   SELECT s, t FROM unnest($1::text[], $2::bigint[]) AS x(s, t)
   ON CONFLICT (store_id) DO UPDATE
   SET last_sync_ms = greatest(store_sync.last_sync_ms, excluded.last_sync_ms)";
const INDEX_DUE: &str = "INSERT INTO index_due (doc_id) SELECT unnest($1::bytea[])
   ON CONFLICT DO NOTHING";

/// Every statement a flush may send.
pub(crate) const STATEMENTS: [&str; 6] = [
    DOCUMENTS,
    CHANGES,
    ACTORS,
    SYNC_STATES,
    STORE_SYNC,
    INDEX_DUE,
];

/// Rows waiting for the next flush, in the order they were written.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Documents whose row must exist before their changes.
    documents: BTreeSet<DocumentId>,
    /// (document, hash, bytes) in arrival order: row ids keep it.
    changes: Vec<(DocumentId, [u8; 32], Vec<u8>)>,
    /// (document, hash) of `changes`, to hold each change once.
    held: HashSet<(DocumentId, [u8; 32])>,
    /// (actor, principal) to claim; the first claim of an actor wins.
    actors: Vec<(Vec<u8>, String)>,
    /// (peer, document) -> state; the last one written wins.
    sync_states: HashMap<(String, DocumentId), Vec<u8>>,
    /// store -> latest sync time seen.
    store_sync: HashMap<StoreId, i64>,
    index_due: BTreeSet<DocumentId>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
            && self.changes.is_empty()
            && self.actors.is_empty()
            && self.sync_states.is_empty()
            && self.store_sync.is_empty()
            && self.index_due.is_empty()
    }

    /// Hold `changes` of `doc`; returns how many were not already held
    /// (whether the database has them is known only at the flush).
    pub fn changes(&mut self, doc: DocumentId, changes: &[Change]) -> usize {
        self.documents.insert(doc);
        let mut new = 0;
        for c in changes {
            let hash = c.hash().0;
            if self.held.insert((doc, hash)) {
                self.changes.push((doc, hash, c.raw_bytes().to_vec()));
                new += 1;
            }
        }
        new
    }

    pub fn claim(&mut self, actor: Vec<u8>, principal: &str) {
        if !self.actors.iter().any(|(a, _)| *a == actor) {
            self.actors.push((actor, principal.to_owned()));
        }
    }

    pub fn sync_state(&mut self, peer: &str, doc: DocumentId, state: &[u8]) {
        self.sync_states
            .insert((peer.to_owned(), doc), state.to_vec());
    }

    pub fn store_sync(&mut self, store: &StoreId, at_ms: i64) {
        let t = self.store_sync.entry(store.clone()).or_insert(at_ms);
        *t = (*t).max(at_ms);
    }

    pub fn index_due(&mut self, doc: DocumentId) {
        self.index_due.insert(doc);
    }

    /// Write everything held, one statement per table, all sent at once.
    pub async fn flush(self, tx: &Tx<'_>) -> Result<(), Failure> {
        if self.is_empty() {
            return Ok(());
        }
        let documents: Vec<&[u8]> = self.documents.iter().map(|d| &d.as_bytes()[..]).collect();
        let change_docs: Vec<&[u8]> = self
            .changes
            .iter()
            .map(|(d, _, _)| &d.as_bytes()[..])
            .collect();
        let hashes: Vec<&[u8]> = self.changes.iter().map(|(_, h, _)| &h[..]).collect();
        let bytes: Vec<&[u8]> = self.changes.iter().map(|(_, _, b)| b.as_slice()).collect();
        let actors: Vec<&[u8]> = self.actors.iter().map(|(a, _)| a.as_slice()).collect();
        let principals: Vec<&str> = self.actors.iter().map(|(_, p)| p.as_str()).collect();
        let peers: Vec<&str> = self.sync_states.keys().map(|(p, _)| p.as_str()).collect();
        let state_docs: Vec<&[u8]> = self
            .sync_states
            .keys()
            .map(|(_, d)| &d.as_bytes()[..])
            .collect();
        let states: Vec<&[u8]> = self.sync_states.values().map(Vec::as_slice).collect();
        let sync_stores: Vec<&str> = self.store_sync.keys().map(StoreId::as_str).collect();
        let sync_times: Vec<i64> = self.store_sync.values().copied().collect();
        let due: Vec<&[u8]> = self.index_due.iter().map(|d| &d.as_bytes()[..]).collect();

        // Polled together, so the driver sends them in one go and the
        // server runs them in this order (documents before their changes);
        // an empty table's statement is not sent. Prepared first, since a
        // statement waiting for its prepare would go out behind the others.
        tx.prepare_all(&STATEMENTS).await?;
        type Params<'p> = Vec<&'p (dyn tokio_postgres::types::ToSql + Sync)>;
        let statements: [(bool, &str, Params<'_>); 6] = [
            (!documents.is_empty(), DOCUMENTS, vec![&documents]),
            (
                !hashes.is_empty(),
                CHANGES,
                vec![&change_docs, &hashes, &bytes],
            ),
            (!actors.is_empty(), ACTORS, vec![&actors, &principals]),
            (
                !states.is_empty(),
                SYNC_STATES,
                vec![&peers, &state_docs, &states],
            ),
            (
                !sync_stores.is_empty(),
                STORE_SYNC,
                vec![&sync_stores, &sync_times],
            ),
            (!due.is_empty(), INDEX_DUE, vec![&due]),
        ];
        // `join_all` polls them first in this order: each is sent on its
        // first poll.
        let sent = statements
            .iter()
            .filter(|(held, _, _)| *held)
            .map(|(_, sql, params)| tx.execute(sql, params));
        for done in futures_util::future::join_all(sent).await {
            done?;
        }
        Ok(())
    }
}
