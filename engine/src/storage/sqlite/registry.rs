//! The hub's registry (stores, tokens, document owners, actor owners,
//! content HQ vouches for) and the agent's record of rejected changes.
//!
//! Accepted changes and the actor ids they introduce are written in one
//! transaction (`commit_accepted`), so after a crash the hub never holds a
//! change whose actor has no recorded owner.

use automerge::{ActorId, Change, ChangeHash};
use rusqlite::{params, OptionalExtension};

use super::{Failure, SqliteDatabase, StorageError};
use crate::document::DocKind;
use crate::ids::{DocumentId, Principal, StoreId, WorkerId};
use crate::storage::read_cache::keep;
use crate::storage::roles::*;

/// A store as HQ registered it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreRecord {
    pub id: StoreId,
    pub name: String,
    pub time_zone: String,
}

/// What a token resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    Valid(Principal),
    Unknown,
    Expired,
    Revoked,
}

/// A change the hub refused, as the agent keeps it to show the worker.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RejectionRecord {
    pub doc: DocumentId,
    pub hash: String,
    pub reason: String,
    pub at: i64,
}

pub(crate) fn encode_principal(p: &Principal) -> String {
    p.to_string()
}

pub(crate) fn decode_principal(s: &str) -> Option<Principal> {
    if s == "hq" {
        Some(Principal::Hq)
    } else {
        s.strip_prefix("store:")
            .and_then(|id| id.parse().ok())
            .map(Principal::Store)
    }
}

fn bad_row(what: &str) -> Failure {
    Failure::Sql(rusqlite::Error::InvalidColumnType(
        0,
        what.to_owned(),
        rusqlite::types::Type::Text,
    ))
}

impl Registry for SqliteDatabase {
    fn put_store(&mut self, rec: &StoreRecord) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO stores (store_id, name, time_zone) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store_id) DO UPDATE SET name = excluded.name, time_zone = excluded.time_zone",
            )?
            .execute(params![rec.id.as_str(), rec.name, rec.time_zone])?;
            Ok(())
        })
    }

    fn get_store(&self, id: &StoreId) -> Result<Option<StoreRecord>, StorageError> {
        self.read(|c| {
            let row = c
                .prepare_cached("SELECT name, time_zone FROM stores WHERE store_id = ?1")?
                .query_row([id.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .optional()?;
            Ok(row.map(|(name, time_zone)| StoreRecord {
                id: id.clone(),
                name,
                time_zone,
            }))
        })
    }

    fn list_stores(&self) -> Result<Vec<StoreRecord>, StorageError> {
        self.read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT store_id, name, time_zone FROM stores ORDER BY store_id")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, name, time_zone) = row?;
                out.push(StoreRecord {
                    id: id.parse().map_err(|_| bad_row("store_id"))?,
                    name,
                    time_zone,
                });
            }
            Ok(out)
        })
    }

    fn record_store_sync(&self, seen: &[(StoreId, i64)]) -> Result<(), StorageError> {
        if seen.is_empty() {
            return Ok(());
        }
        let run = || -> Result<(), Failure> {
            // Inside a batch, part of its transaction; else its own.
            let tx = (!self.in_batch())
                .then(|| self.conn.unchecked_transaction())
                .transpose()?;
            {
                let mut stmt = self.conn.prepare_cached(
                    "INSERT INTO store_sync (store_id, last_sync_ms) VALUES (?1, ?2)
                     ON CONFLICT (store_id) DO UPDATE
                     SET last_sync_ms = max(last_sync_ms, excluded.last_sync_ms)",
                )?;
                for (store, at) in seen {
                    stmt.execute(params![store.as_str(), at])?;
                }
            }
            if let Some(tx) = tx {
                tx.commit()?;
            }
            Ok(())
        };
        run().map_err(|f| f.on(&self.path))
    }

    fn store_sync_times(&self) -> Result<Vec<(StoreId, i64)>, StorageError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT store_id, last_sync_ms FROM store_sync ORDER BY store_id",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (id, at) = row?;
                out.push((id.parse().map_err(|_| bad_row("store_id"))?, at));
            }
            Ok(out)
        })
    }

    fn note_former_worker(
        &mut self,
        store: &StoreId,
        worker: &WorkerId,
    ) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO former_workers (store_id, worker_id) VALUES (?1, ?2)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![store.as_str(), worker.as_str()])?;
            Ok(())
        })
    }

    fn former_workers(&self, store: &StoreId) -> Result<Vec<WorkerId>, StorageError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT worker_id FROM former_workers WHERE store_id = ?1 ORDER BY worker_id",
            )?;
            let rows = stmt.query_map([store.as_str()], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row?.parse().map_err(|_| bad_row("worker_id"))?);
            }
            Ok(out)
        })
    }

    fn put_token(
        &mut self,
        token_hash: [u8; 32],
        principal: &Principal,
        label: &str,
        now_ms: i64,
        expires_at_ms: Option<i64>,
    ) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO tokens (token_hash, principal, label, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                &token_hash[..],
                encode_principal(principal),
                label,
                now_ms,
                expires_at_ms
            ])?;
            Ok(())
        })
    }

    fn revoke_token(&mut self, token_hash: [u8; 32], now_ms: i64) -> Result<bool, StorageError> {
        self.write(|tx| {
            let n = tx
                .prepare_cached("UPDATE tokens SET revoked_at = ?2 WHERE token_hash = ?1 AND revoked_at IS NULL")?
                .execute(params![&token_hash[..], now_ms])?;
            Ok(n > 0)
        })
    }

    fn check_token(&self, token_hash: [u8; 32], now_ms: i64) -> Result<TokenCheck, StorageError> {
        self.read(|c| {
            let row = c
                .prepare_cached(
                    "SELECT principal, expires_at, revoked_at FROM tokens WHERE token_hash = ?1",
                )?
                .query_row([&token_hash[..]], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                })
                .optional()?;
            Ok(match row {
                None => TokenCheck::Unknown,
                Some((_, _, Some(_))) => TokenCheck::Revoked,
                Some((_, Some(exp), None)) if exp <= now_ms => TokenCheck::Expired,
                Some((p, _, None)) => match decode_principal(&p) {
                    Some(p) => TokenCheck::Valid(p),
                    None => TokenCheck::Unknown,
                },
            })
        })
    }

    fn set_doc_owner(
        &mut self,
        doc: DocumentId,
        store: &StoreId,
        kind: DocKind,
    ) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO doc_owners (doc_id, store_id, kind) VALUES (?1, ?2, ?3)
                 ON CONFLICT (doc_id) DO NOTHING",
            )?
            .execute(params![doc.as_bytes(), store.as_str(), kind.as_str()])?;
            Ok(())
        })?;
        self.cache.get_mut().doc_owners.remove(&doc);
        Ok(())
    }

    fn doc_owner(&self, doc: DocumentId) -> Result<Option<(StoreId, DocKind)>, StorageError> {
        if let Some(owner) = self.cache.borrow().doc_owners.get(&doc) {
            return Ok(Some(owner.clone()));
        }
        let owner = self.read(|c| {
            let row = c
                .prepare_cached("SELECT store_id, kind FROM doc_owners WHERE doc_id = ?1")?
                .query_row([doc.as_bytes()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .optional()?;
            match row {
                None => Ok(None),
                Some((s, k)) => {
                    let kind = match k.as_str() {
                        "instance" => DocKind::Instance,
                        "directory" => DocKind::Directory,
                        _ => return Err(bad_row("kind")),
                    };
                    Ok(Some((s.parse().map_err(|_| bad_row("store_id"))?, kind)))
                }
            }
        })?;
        if let Some(o) = &owner {
            keep(&mut self.cache.borrow_mut().doc_owners, doc, o.clone());
        }
        Ok(owner)
    }

    fn documents_of_store(&self, store: &StoreId) -> Result<Vec<DocumentId>, StorageError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT doc_id FROM doc_owners WHERE store_id = ?1")?;
            let rows = stmt.query_map([store.as_str()], |r| r.get::<_, Vec<u8>>(0))?;
            let mut out = Vec::new();
            for r in rows {
                let b: [u8; 16] = r?.try_into().map_err(|_| bad_row("doc_id"))?;
                out.push(DocumentId(uuid::Uuid::from_bytes(b)));
            }
            Ok(out)
        })
    }

    fn actor_owner(&self, actor: &ActorId) -> Result<Option<Principal>, StorageError> {
        if let Some(p) = self.cache.borrow().actor_owners.get(actor) {
            return Ok(Some(p.clone()));
        }
        let owner = self.read(|c| {
            let p = c
                .prepare_cached("SELECT principal FROM actor_owners WHERE actor = ?1")?
                .query_row([actor.to_bytes()], |r| r.get::<_, String>(0))
                .optional()?;
            Ok(p.and_then(|p| decode_principal(&p)))
        })?;
        // An actor's owner never changes once recorded (INSERT OR IGNORE).
        if let Some(p) = &owner {
            keep(
                &mut self.cache.borrow_mut().actor_owners,
                actor.clone(),
                p.clone(),
            );
        }
        Ok(owner)
    }

    fn add_known_content(
        &mut self,
        doc: DocumentId,
        hashes: &[ChangeHash],
    ) -> Result<(), StorageError> {
        self.write(|tx| {
            let mut known = known_in(tx, doc)?;
            let before = known.len();
            for h in hashes {
                if !known.contains(h) {
                    known.push(*h);
                }
            }
            if known.len() == before {
                return Ok(());
            }
            let blob: Vec<u8> = known.iter().flat_map(|h| h.0).collect();
            tx.prepare_cached(
                "INSERT INTO known_content_sets (doc_id, hashes) VALUES (?1, ?2)
                 ON CONFLICT (doc_id) DO UPDATE SET hashes = excluded.hashes",
            )?
            .execute(params![doc.as_bytes(), blob])?;
            Ok(())
        })?;
        self.cache.get_mut().known_content.remove(&doc);
        Ok(())
    }

    fn known_content(&self, doc: DocumentId) -> Result<Vec<ChangeHash>, StorageError> {
        if let Some(known) = self.cache.borrow().known_content.get(&doc) {
            return Ok(known.clone());
        }
        let known = self.read(|c| known_in(c, doc))?;
        keep(
            &mut self.cache.borrow_mut().known_content,
            doc,
            known.clone(),
        );
        Ok(known)
    }

    fn commit_accepted(
        &mut self,
        doc: DocumentId,
        changes: &[Change],
        new_actors: &[ActorId],
        author: &Principal,
    ) -> Result<usize, StorageError> {
        let principal = encode_principal(author);
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO actor_owners (actor, principal) VALUES (?1, ?2)",
            )?;
            for a in new_actors {
                stmt.execute(params![a.to_bytes(), principal])?;
            }
            Ok(super::documents::append_in(tx, doc, changes)?)
        })
    }

    fn claim_actor(&mut self, actor: &ActorId, owner: &Principal) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO actor_owners (actor, principal) VALUES (?1, ?2)",
            )?
            .execute(params![actor.to_bytes(), encode_principal(owner)])?;
            Ok(())
        })
    }

    fn record_rejection(&mut self, rec: &RejectionRecord) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO rejections (doc_id, hash, reason, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (doc_id, hash) DO UPDATE SET reason = excluded.reason",
            )?
            .execute(params![rec.doc.as_bytes(), rec.hash, rec.reason, rec.at])?;
            Ok(())
        })
    }

    fn rejections(&self) -> Result<Vec<RejectionRecord>, StorageError> {
        self.read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT doc_id, hash, reason, at FROM rejections ORDER BY at")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for r in rows {
                let (d, hash, reason, at) = r?;
                let b: [u8; 16] = d.try_into().map_err(|_| bad_row("doc_id"))?;
                out.push(RejectionRecord {
                    doc: DocumentId(uuid::Uuid::from_bytes(b)),
                    hash,
                    reason,
                    at,
                });
            }
            Ok(out)
        })
    }
}

/// The content hashes known for `doc`, in the order they were added.
fn known_in(c: &rusqlite::Connection, doc: DocumentId) -> Result<Vec<ChangeHash>, Failure> {
    let blob: Option<Vec<u8>> = c
        .prepare_cached("SELECT hashes FROM known_content_sets WHERE doc_id = ?1")?
        .query_row([doc.as_bytes()], |r| r.get(0))
        .optional()?;
    blob.unwrap_or_default()
        .chunks(32)
        .map(|h| ChangeHash::try_from(h).map_err(|_| bad_row("known content hash")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, SqliteDatabase) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteDatabase::open(dir.path().join("r.db"), [1; 16]).unwrap();
        (dir, s)
    }

    #[test]
    fn known_content_adds_to_what_a_document_has_and_purge_forgets_it() {
        let (_d, mut s) = store();
        let (a, b) = (
            DocumentId::from_random_bytes([1; 16]),
            DocumentId::from_random_bytes([2; 16]),
        );
        let h = |n: u8| ChangeHash([n; 32]);
        assert_eq!(s.known_content(a).unwrap(), vec![]);
        s.add_known_content(a, &[h(1), h(2)]).unwrap();
        s.add_known_content(a, &[h(2), h(3)]).unwrap();
        s.add_known_content(b, &[h(9)]).unwrap();
        assert_eq!(s.known_content(a).unwrap(), vec![h(1), h(2), h(3)]);
        assert_eq!(s.known_content(b).unwrap(), vec![h(9)]);
        s.purge_document(a).unwrap();
        assert_eq!(s.known_content(a).unwrap(), vec![]);
        assert_eq!(s.known_content(b).unwrap(), vec![h(9)]);
    }

    /// Owners, actors and known content are kept in memory once read; a
    /// rolled-back operation, a failed write and a failed batch commit
    /// leave none of what they wrote behind there either.
    #[test]
    fn rows_read_inside_a_rollback_are_not_remembered() {
        let (_d, mut s) = store();
        let st: StoreId = "s1".parse().unwrap();
        let doc = DocumentId::from_random_bytes([3; 16]);
        let actor = ActorId::from(&[7u8; 16][..]);
        let h = ChangeHash([5; 32]);
        let write_all = |s: &mut SqliteDatabase| {
            s.set_doc_owner(doc, &st, DocKind::Instance).unwrap();
            s.add_known_content(doc, &[h]).unwrap();
            s.claim_actor(&actor, &Principal::Hq).unwrap();
            // Read back: now in memory.
            assert_eq!(
                s.doc_owner(doc).unwrap(),
                Some((st.clone(), DocKind::Instance))
            );
            assert_eq!(s.known_content(doc).unwrap(), vec![h]);
            assert_eq!(s.actor_owner(&actor).unwrap(), Some(Principal::Hq));
        };
        let nothing_left = |s: &SqliteDatabase| {
            assert_eq!(s.doc_owner(doc).unwrap(), None);
            assert_eq!(s.known_content(doc).unwrap(), vec![]);
            assert_eq!(s.actor_owner(&actor).unwrap(), None);
        };

        // An operation undone inside a batch.
        s.begin_batch().unwrap();
        s.begin_operation().unwrap();
        write_all(&mut s);
        s.rollback_operation().unwrap();
        nothing_left(&s);
        s.commit_batch().unwrap();
        nothing_left(&s);

        // A batch whose commit fails (a deferred constraint breaks at COMMIT).
        s.conn
            .execute_batch(
                "CREATE TABLE p (x INTEGER PRIMARY KEY);
                 CREATE TABLE t (x INTEGER REFERENCES p (x) DEFERRABLE INITIALLY DEFERRED);",
            )
            .unwrap();
        s.begin_batch().unwrap();
        write_all(&mut s);
        s.conn.execute_batch("INSERT INTO t VALUES (1)").unwrap();
        assert!(s.commit_batch().is_err());
        nothing_left(&s);

        // A batch SQLite already rolled back: the next write fails.
        s.begin_batch().unwrap();
        write_all(&mut s);
        s.conn.execute_batch("ROLLBACK").unwrap();
        assert!(s.set_doc_owner(doc, &st, DocKind::Instance).is_err());
        nothing_left(&s);
        assert!(s.commit_batch().is_err());

        // Committed, it stays; purged, it goes.
        s.begin_batch().unwrap();
        write_all(&mut s);
        s.commit_batch().unwrap();
        assert_eq!(s.known_content(doc).unwrap(), vec![h]);
        s.purge_document(doc).unwrap();
        assert_eq!(s.doc_owner(doc).unwrap(), None);
        assert_eq!(s.known_content(doc).unwrap(), vec![]);
    }

    #[test]
    fn tokens_resolve_expire_and_revoke() {
        let (_d, mut s) = store();
        let p = Principal::Store("s1".parse().unwrap());
        s.put_token([1; 32], &p, "till 1", 0, None).unwrap();
        s.put_token([2; 32], &Principal::Hq, "admin", 0, Some(100))
            .unwrap();
        assert_eq!(s.check_token([1; 32], 50).unwrap(), TokenCheck::Valid(p));
        assert_eq!(
            s.check_token([2; 32], 50).unwrap(),
            TokenCheck::Valid(Principal::Hq)
        );
        assert_eq!(s.check_token([2; 32], 100).unwrap(), TokenCheck::Expired);
        assert_eq!(s.check_token([3; 32], 0).unwrap(), TokenCheck::Unknown);
        assert!(s.revoke_token([1; 32], 60).unwrap());
        assert_eq!(s.check_token([1; 32], 61).unwrap(), TokenCheck::Revoked);
    }

    #[test]
    fn store_sync_times_only_move_forward_and_survive_reopen() {
        let (dir, s) = store();
        let a: StoreId = "s1".parse().unwrap();
        let b: StoreId = "s2".parse().unwrap();
        assert_eq!(s.store_sync_times().unwrap(), vec![]);
        s.record_store_sync(&[(a.clone(), 100), (b.clone(), 50)])
            .unwrap();
        s.record_store_sync(&[(a.clone(), 90)]).unwrap();
        s.record_store_sync(&[(b.clone(), 70)]).unwrap();
        drop(s);
        let s = SqliteDatabase::open(dir.path().join("r.db"), [1; 16]).unwrap();
        assert_eq!(s.store_sync_times().unwrap(), vec![(a, 100), (b, 70)]);
    }

    #[test]
    fn owners_and_actors_are_recorded_with_the_changes() {
        let (_d, mut s) = store();
        let st: StoreId = "s1".parse().unwrap();
        let doc = DocumentId::directory_of(&st);
        s.set_doc_owner(doc, &st, DocKind::Directory).unwrap();
        assert_eq!(
            s.doc_owner(doc).unwrap(),
            Some((st.clone(), DocKind::Directory))
        );
        assert_eq!(s.documents_of_store(&st).unwrap(), vec![doc]);
        let g = crate::document::genesis::genesis(doc, DocKind::Directory);
        let actor = ActorId::from(&[9u8; 16][..]);
        let p = Principal::Store(st);
        assert_eq!(
            s.commit_accepted(doc, &[g], std::slice::from_ref(&actor), &p)
                .unwrap(),
            1
        );
        assert_eq!(s.actor_owner(&actor).unwrap(), Some(p));
        assert!(s.load_document(doc).unwrap().is_some());
    }
}
