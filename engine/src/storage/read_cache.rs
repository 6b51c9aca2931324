//! Rows the hub reads for every incoming batch and almost never writes
//! (who owns a document, who introduced an actor, the content HQ vouches
//! for), kept in memory by the backend that read them (SQLite's
//! [`SqliteDatabase`](super::sqlite::SqliteDatabase), the hub's PostgreSQL backend).
//!
//! Sound because the backend is the only writer of these rows for the
//! stores it serves (the hub's documents in memory already rely on that:
//! a SQLite file has one writer; a PostgreSQL cluster node writes only the
//! stores it holds a lease on, and empties its cache whenever it takes a
//! store over, since another node may have written it meanwhile): a write method that changes one of
//! these rows drops it from here, and every rollback (a write that failed,
//! a batch whose commit failed, an operation undone) drops everything,
//! since a row read inside a transaction that did not commit was never
//! true. Only rows that exist are kept (a peer naming unknown documents or
//! fresh actors adds nothing), and each map is emptied when it reaches
//! [`MAX_ENTRIES`], so memory stays bounded.

use std::collections::HashMap;
use std::hash::Hash;

use automerge::{ActorId, ChangeHash};

use crate::document::DocKind;
use crate::ids::{DocumentId, Principal, StoreId};

/// Entries per map before it is emptied (about 100 bytes each).
pub const MAX_ENTRIES: usize = 200_000;

#[derive(Default)]
pub struct ReadCache {
    pub doc_owners: HashMap<DocumentId, (StoreId, DocKind)>,
    pub actor_owners: HashMap<ActorId, Principal>,
    pub known_content: HashMap<DocumentId, Vec<ChangeHash>>,
}

impl ReadCache {
    pub fn clear(&mut self) {
        self.doc_owners.clear();
        self.actor_owners.clear();
        self.known_content.clear();
    }
}

/// Remember `k -> v`, emptying `map` first when it is full.
pub fn keep<K: Eq + Hash, V>(map: &mut HashMap<K, V>, k: K, v: V) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(k, v);
}
