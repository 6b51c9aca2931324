//! The hub's registry on PostgreSQL: stores, tokens, document owners,
//! actor owners, content HQ vouches for, rejections, former workers.
//! Same rules as the SQLite backend's; accepted changes and the actors
//! they introduce commit together (`commit_accepted`).

use automerge::{ActorId, Change, ChangeHash};
use engine::document::DocKind;
use engine::ids::{DocumentId, Principal, StoreId, WorkerId};
use engine::storage::read_cache::keep;
use engine::storage::roles::*;
use engine::storage::{RejectionRecord, StorageError, StoreRecord, TokenCheck};

use super::{document_id, errors, parse_col, Failure, PgDatabase, Tx};

pub(super) fn encode_principal(p: &Principal) -> String {
    p.to_string()
}

pub(super) fn decode_principal(s: &str) -> Option<Principal> {
    if s == "hq" {
        Some(Principal::Hq)
    } else {
        s.strip_prefix("store:")
            .and_then(|id| id.parse().ok())
            .map(Principal::Store)
    }
}

const CLAIM_ACTORS: &str = "INSERT INTO actor_owners (actor, principal)
                            SELECT a, $2 FROM unnest($1::bytea[]) AS a
                            ON CONFLICT (actor) DO NOTHING";

impl Registry for PgDatabase {
    fn put_store(&mut self, rec: &StoreRecord) -> Result<(), StorageError> {
        self.write(async |tx| {
            tx.execute(
                "INSERT INTO stores (store_id, name, time_zone) VALUES ($1, $2, $3)
                 ON CONFLICT (store_id) DO UPDATE
                 SET name = excluded.name, time_zone = excluded.time_zone",
                &[&rec.id.as_str(), &rec.name, &rec.time_zone],
            )
            .await?;
            // Its lease row, unowned until a node claims it.
            tx.execute(
                "INSERT INTO store_leases (store_id) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&rec.id.as_str()],
            )
            .await?;
            Ok(())
        })
    }

    fn get_store(&self, id: &StoreId) -> Result<Option<StoreRecord>, StorageError> {
        self.read(async |tx| {
            let row = tx
                .query_opt(
                    "SELECT name, time_zone FROM stores WHERE store_id = $1",
                    &[&id.as_str()],
                )
                .await?;
            Ok(row.map(|r| StoreRecord {
                id: id.clone(),
                name: r.get(0),
                time_zone: r.get(1),
            }))
        })
    }

    fn list_stores(&self) -> Result<Vec<StoreRecord>, StorageError> {
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT store_id, name, time_zone FROM stores ORDER BY store_id COLLATE \"C\"",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(StoreRecord {
                        id: parse_col(tx.location(), r.get(0), "store id")?,
                        name: r.get(1),
                        time_zone: r.get(2),
                    })
                })
                .collect()
        })
    }

    fn record_store_sync(&self, seen: &[(StoreId, i64)]) -> Result<(), StorageError> {
        if seen.is_empty() {
            return Ok(());
        }
        let touched: Vec<&StoreId> = seen.iter().map(|(s, _)| s).collect();
        let held = self.hold(&[], &touched, |p| {
            for (store, at) in seen {
                p.store_sync(store, *at);
            }
        });
        if held.is_some() {
            return Ok(());
        }
        let stores: Vec<&str> = seen.iter().map(|(s, _)| s.as_str()).collect();
        let times: Vec<i64> = seen.iter().map(|(_, t)| *t).collect();
        self.write(async |tx| {
            for (store, _) in seen {
                tx.touch_store(store);
            }
            tx.execute(
                "INSERT INTO store_sync (store_id, last_sync_ms)
                 SELECT s, max(t) FROM unnest($1::text[], $2::bigint[]) AS x(s, t) GROUP BY s
                 ON CONFLICT (store_id) DO UPDATE
                 SET last_sync_ms = greatest(store_sync.last_sync_ms, excluded.last_sync_ms)",
                &[&stores, &times],
            )
            .await?;
            Ok(())
        })
    }

    fn store_sync_times(&self) -> Result<Vec<(StoreId, i64)>, StorageError> {
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT store_id, last_sync_ms FROM store_sync ORDER BY store_id COLLATE \"C\"",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| Ok((parse_col(tx.location(), r.get(0), "store id")?, r.get(1))))
                .collect()
        })
    }

    fn note_former_worker(
        &mut self,
        store: &StoreId,
        worker: &WorkerId,
    ) -> Result<(), StorageError> {
        self.write(async |tx| {
            tx.touch_store(store);
            tx.execute(
                "INSERT INTO former_workers (store_id, worker_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
                &[&store.as_str(), &worker.as_str()],
            )
            .await?;
            Ok(())
        })
    }

    fn former_workers(&self, store: &StoreId) -> Result<Vec<WorkerId>, StorageError> {
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT worker_id FROM former_workers WHERE store_id = $1
                     ORDER BY worker_id COLLATE \"C\"",
                    &[&store.as_str()],
                )
                .await?;
            rows.iter()
                .map(|r| parse_col(tx.location(), r.get(0), "worker id"))
                .collect()
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
        self.write(async |tx| {
            tx.execute(
                "INSERT INTO tokens (token_hash, principal, label, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &&token_hash[..],
                    &encode_principal(principal),
                    &label,
                    &now_ms,
                    &expires_at_ms,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn revoke_token(&mut self, token_hash: [u8; 32], now_ms: i64) -> Result<bool, StorageError> {
        self.write(async |tx| {
            let n = tx
                .execute(
                    "UPDATE tokens SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL",
                    &[&&token_hash[..], &now_ms],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn check_token(&self, token_hash: [u8; 32], now_ms: i64) -> Result<TokenCheck, StorageError> {
        self.read(async |tx| {
            let row = tx
                .query_opt(
                    "SELECT principal, expires_at, revoked_at FROM tokens WHERE token_hash = $1",
                    &[&&token_hash[..]],
                )
                .await?;
            let Some(r) = row else {
                return Ok(TokenCheck::Unknown);
            };
            let (p, expires, revoked): (String, Option<i64>, Option<i64>) =
                (r.get(0), r.get(1), r.get(2));
            Ok(match (expires, revoked) {
                (_, Some(_)) => TokenCheck::Revoked,
                (Some(exp), None) if exp <= now_ms => TokenCheck::Expired,
                _ => match decode_principal(&p) {
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
        self.write(async |tx| {
            tx.touch_store(store);
            tx.note_owner(doc, store);
            tx.execute(
                "INSERT INTO doc_owners (doc_id, store_id, kind) VALUES ($1, $2, $3)
                 ON CONFLICT (doc_id) DO NOTHING",
                &[&&doc.as_bytes()[..], &store.as_str(), &kind.as_str()],
            )
            .await?;
            Ok(())
        })?;
        if let Some(mut cache) = self.cache() {
            cache.doc_owners.remove(&doc);
        }
        Ok(())
    }

    fn doc_owner(&self, doc: DocumentId) -> Result<Option<(StoreId, DocKind)>, StorageError> {
        if let Some(owner) = self.cache().and_then(|c| c.doc_owners.get(&doc).cloned()) {
            return Ok(Some(owner));
        }
        let owner = self.read(async |tx| {
            let Some(r) = tx
                .query_opt(
                    "SELECT store_id, kind FROM doc_owners WHERE doc_id = $1",
                    &[&&doc.as_bytes()[..]],
                )
                .await?
            else {
                return Ok(None);
            };
            let kind = match r.get::<_, &str>(1) {
                "instance" => DocKind::Instance,
                "directory" => DocKind::Directory,
                other => {
                    return Err(Failure::Storage(errors::damaged(
                        tx.location(),
                        format!("document {doc} has owner kind {other:?}"),
                    )))
                }
            };
            let store: StoreId = parse_col(tx.location(), r.get(0), "store id")?;
            tx.note_owner(doc, &store);
            Ok(Some((store, kind)))
        })?;
        if let (Some(o), Some(mut cache)) = (&owner, self.cache()) {
            keep(&mut cache.doc_owners, doc, o.clone());
        }
        Ok(owner)
    }

    fn documents_of_store(&self, store: &StoreId) -> Result<Vec<DocumentId>, StorageError> {
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT doc_id FROM doc_owners WHERE store_id = $1",
                    &[&store.as_str()],
                )
                .await?;
            rows.into_iter()
                .map(|r| document_id(tx.location(), r.get(0)))
                .collect()
        })
    }

    fn actor_owner(&self, actor: &ActorId) -> Result<Option<Principal>, StorageError> {
        if let Some(p) = self
            .cache()
            .and_then(|c| c.actor_owners.get(actor).cloned())
        {
            return Ok(Some(p));
        }
        let owner = self.read(async |tx| {
            let row = tx
                .query_opt(
                    "SELECT principal FROM actor_owners WHERE actor = $1",
                    &[&actor.to_bytes()],
                )
                .await?;
            Ok(row.and_then(|r| decode_principal(r.get(0))))
        })?;
        // An actor's owner never changes once recorded (ON CONFLICT DO NOTHING).
        if let (Some(p), Some(mut cache)) = (&owner, self.cache()) {
            keep(&mut cache.actor_owners, actor.clone(), p.clone());
        }
        Ok(owner)
    }

    fn add_known_content(
        &mut self,
        doc: DocumentId,
        hashes: &[ChangeHash],
    ) -> Result<(), StorageError> {
        self.write(async |tx| {
            tx.touch_doc(doc).await?;
            // Lock the row so two writers never both extend the old set.
            let mut known = known_in(tx, doc, true).await?;
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
            tx.execute(
                "INSERT INTO known_content_sets (doc_id, hashes) VALUES ($1, $2)
                 ON CONFLICT (doc_id) DO UPDATE SET hashes = excluded.hashes",
                &[&&doc.as_bytes()[..], &blob],
            )
            .await?;
            Ok(())
        })?;
        if let Some(mut cache) = self.cache() {
            cache.known_content.remove(&doc);
        }
        Ok(())
    }

    fn known_content(&self, doc: DocumentId) -> Result<Vec<ChangeHash>, StorageError> {
        if let Some(known) = self
            .cache()
            .and_then(|c| c.known_content.get(&doc).cloned())
        {
            return Ok(known);
        }
        let known = self.read(async |tx| known_in(tx, doc, false).await)?;
        if let Some(mut cache) = self.cache() {
            keep(&mut cache.known_content, doc, known.clone());
        }
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
        let held = self.hold(&[doc], &[], |p| {
            for a in new_actors {
                p.claim(a.to_bytes().to_vec(), &principal);
            }
            p.changes(doc, changes)
        });
        if let Some(new) = held {
            return Ok(new);
        }
        let actors: Vec<&[u8]> = new_actors.iter().map(|a| a.to_bytes()).collect();
        self.write(async |tx| {
            if !actors.is_empty() {
                tx.execute(CLAIM_ACTORS, &[&actors, &principal]).await?;
            }
            super::documents::append_in(tx, doc, changes).await
        })
    }

    fn claim_actor(&mut self, actor: &ActorId, owner: &Principal) -> Result<(), StorageError> {
        let actors = vec![actor.to_bytes()];
        let owner = encode_principal(owner);
        self.write(async |tx| {
            tx.execute(CLAIM_ACTORS, &[&actors, &owner]).await?;
            Ok(())
        })
    }

    fn record_rejection(&mut self, rec: &RejectionRecord) -> Result<(), StorageError> {
        self.write(async |tx| {
            tx.execute(
                "INSERT INTO rejections (doc_id, hash, reason, at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (doc_id, hash) DO UPDATE SET reason = excluded.reason",
                &[&&rec.doc.as_bytes()[..], &rec.hash, &rec.reason, &rec.at],
            )
            .await?;
            Ok(())
        })
    }

    fn rejections(&self) -> Result<Vec<RejectionRecord>, StorageError> {
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT doc_id, hash, reason, at FROM rejections ORDER BY at",
                    &[],
                )
                .await?;
            rows.into_iter()
                .map(|r| {
                    Ok(RejectionRecord {
                        doc: document_id(tx.location(), r.get(0))?,
                        hash: r.get(1),
                        reason: r.get(2),
                        at: r.get(3),
                    })
                })
                .collect()
        })
    }
}

/// The content hashes known for `doc`, in the order they were added;
/// `lock` takes the row for an update.
async fn known_in(tx: &Tx<'_>, doc: DocumentId, lock: bool) -> Result<Vec<ChangeHash>, Failure> {
    let id = &doc.as_bytes()[..];
    let row = if lock {
        tx.query_opt(
            "SELECT hashes FROM known_content_sets WHERE doc_id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
    } else {
        tx.query_opt(
            "SELECT hashes FROM known_content_sets WHERE doc_id = $1",
            &[&id],
        )
        .await?
    };
    let blob: Vec<u8> = row.map(|r| r.get(0)).unwrap_or_default();
    blob.chunks(32)
        .map(|h| {
            ChangeHash::try_from(h).map_err(|_| {
                Failure::Storage(errors::damaged(
                    tx.location(),
                    format!("a known content hash of {doc} is not 32 bytes"),
                ))
            })
        })
        .collect()
}
