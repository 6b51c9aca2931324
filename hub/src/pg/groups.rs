//! HQ's store administration on PostgreSQL: store groups, templates
//! assigned to groups, token listing and expiry, removing a store.

use std::collections::BTreeMap;

use engine::ids::{Principal, StoreGroupId, StoreId, TemplateId};
use engine::storage::roles::*;
use engine::storage::{StorageError, TokenInfo, TOKEN_ID_LEN};

use super::registry::{decode_principal, encode_principal};
use super::{parse_col, PgDatabase};

impl Groups for PgDatabase {
    fn add_to_group(
        &mut self,
        group: &StoreGroupId,
        stores: &[StoreId],
    ) -> Result<(), StorageError> {
        let stores: Vec<&str> = stores.iter().map(StoreId::as_str).collect();
        self.write(async |tx| {
            tx.execute(
                "INSERT INTO store_groups (group_id, store_id)
                 SELECT $1, s FROM unnest($2::text[]) AS s ON CONFLICT DO NOTHING",
                &[&group.as_str(), &stores],
            )
            .await?;
            Ok(())
        })
    }

    fn remove_from_group(
        &mut self,
        group: &StoreGroupId,
        stores: &[StoreId],
    ) -> Result<usize, StorageError> {
        let stores: Vec<&str> = stores.iter().map(StoreId::as_str).collect();
        self.write(async |tx| {
            let n = tx
                .execute(
                    "DELETE FROM store_groups WHERE group_id = $1 AND store_id = ANY($2)",
                    &[&group.as_str(), &stores],
                )
                .await?;
            Ok(n as usize)
        })
    }

    fn store_groups(&self) -> Result<BTreeMap<StoreGroupId, Vec<StoreId>>, StorageError> {
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT group_id, store_id FROM store_groups
                     ORDER BY group_id COLLATE \"C\", store_id COLLATE \"C\"",
                    &[],
                )
                .await?;
            let mut out: BTreeMap<StoreGroupId, Vec<StoreId>> = BTreeMap::new();
            for r in rows {
                out.entry(parse_col(tx.location(), r.get(0), "group id")?)
                    .or_default()
                    .push(parse_col(tx.location(), r.get(1), "store id")?);
            }
            Ok(out)
        })
    }

    fn assign_template_to_groups(
        &mut self,
        id: TemplateId,
        groups: &[StoreGroupId],
    ) -> Result<(), StorageError> {
        let groups: Vec<&str> = groups.iter().map(StoreGroupId::as_str).collect();
        self.write(async |tx| {
            tx.execute(
                "INSERT INTO template_groups (template_id, group_id)
                 SELECT $1, g FROM unnest($2::text[]) AS g ON CONFLICT DO NOTHING",
                &[&&id.0.as_bytes()[..], &groups],
            )
            .await?;
            Ok(())
        })
    }

    fn template_groups(&self, id: TemplateId) -> Result<Vec<StoreGroupId>, StorageError> {
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT group_id FROM template_groups WHERE template_id = $1
                     ORDER BY group_id COLLATE \"C\"",
                    &[&&id.0.as_bytes()[..]],
                )
                .await?;
            rows.iter()
                .map(|r| parse_col(tx.location(), r.get(0), "group id"))
                .collect()
        })
    }

    fn list_tokens(&self, principal: Option<&Principal>) -> Result<Vec<TokenInfo>, StorageError> {
        let want = principal.map(encode_principal);
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT token_hash, principal, label, created_at, expires_at, revoked_at
                       FROM tokens WHERE $1::text IS NULL OR principal = $1
                      ORDER BY created_at DESC, token_hash",
                    &[&want],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| TokenInfo {
                    id: hex::encode(r.get::<_, Vec<u8>>(0))[..TOKEN_ID_LEN].to_owned(),
                    principal: r.get(1),
                    label: r.get(2),
                    created_at: r.get(3),
                    expires_at: r.get(4),
                    revoked_at: r.get(5),
                })
                .collect())
        })
    }

    fn token_hash_by_id(&self, id: &str) -> Result<Option<[u8; 32]>, StorageError> {
        let id = id.to_ascii_lowercase();
        if id.len() != TOKEN_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT token_hash FROM tokens WHERE substr(encode(token_hash, 'hex'), 1, 12) = $1",
                    &[&id],
                )
                .await?;
            // Two tokens sharing 48 bits of hash: refuse to guess.
            Ok(match rows.as_slice() {
                [one] => one.get::<_, Vec<u8>>(0).as_slice().try_into().ok(),
                _ => None,
            })
        })
    }

    fn expire_token(&mut self, hash: [u8; 32], at_ms: i64) -> Result<bool, StorageError> {
        self.write(async |tx| {
            let n = tx
                .execute(
                    "UPDATE tokens SET expires_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL",
                    &[&&hash[..], &at_ms],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn token_principal(&self, hash: [u8; 32]) -> Result<Option<Principal>, StorageError> {
        self.read(async |tx| {
            let row = tx
                .query_opt(
                    "SELECT principal FROM tokens WHERE token_hash = $1",
                    &[&&hash[..]],
                )
                .await?;
            Ok(row.and_then(|r| decode_principal(r.get(0))))
        })
    }

    fn remove_store_record(&mut self, store: &StoreId, now_ms: i64) -> Result<usize, StorageError> {
        let principal = encode_principal(&Principal::Store(store.clone()));
        self.write(async |tx| {
            let revoked = tx
                .execute(
                    "UPDATE tokens SET revoked_at = $2 WHERE principal = $1 AND revoked_at IS NULL",
                    &[&principal, &now_ms],
                )
                .await?;
            let s = store.as_str();
            tx.execute("DELETE FROM template_stores WHERE store_id = $1", &[&s])
                .await?;
            tx.execute("DELETE FROM store_groups WHERE store_id = $1", &[&s])
                .await?;
            tx.execute("DELETE FROM store_sync WHERE store_id = $1", &[&s])
                .await?;
            tx.execute("DELETE FROM stores WHERE store_id = $1", &[&s])
                .await?;
            Ok(revoked as usize)
        })
    }
}
