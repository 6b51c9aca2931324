//! HQ's store administration: store groups and their members, templates
//! assigned to groups, token listing and expiry, and removing a store.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};

use super::registry::{decode_principal, encode_principal};
use super::{Failure, SqliteDatabase, StorageError};
use crate::ids::{Principal, StoreGroupId, StoreId, TemplateId};
use crate::storage::roles::*;

/// A token as HQ may list it: never the token itself (only its hash is
/// kept), but a short id to expire or revoke it by.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    /// First 12 hex digits of the token's SHA-256.
    pub id: String,
    pub principal: String,
    pub label: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Length of a token id in hex digits.
pub const TOKEN_ID_LEN: usize = 12;

fn parse_col<T: std::str::FromStr>(s: String, what: &str) -> Result<T, Failure> {
    s.parse().map_err(|_| {
        Failure::Sql(rusqlite::Error::InvalidColumnType(
            0,
            what.to_owned(),
            rusqlite::types::Type::Text,
        ))
    })
}

impl Groups for SqliteDatabase {
    fn add_to_group(
        &mut self,
        group: &StoreGroupId,
        stores: &[StoreId],
    ) -> Result<(), StorageError> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO store_groups (group_id, store_id) VALUES (?1, ?2)",
            )?;
            for s in stores {
                stmt.execute(params![group.as_str(), s.as_str()])?;
            }
            Ok(())
        })
    }

    fn remove_from_group(
        &mut self,
        group: &StoreGroupId,
        stores: &[StoreId],
    ) -> Result<usize, StorageError> {
        self.write(|tx| {
            let mut stmt = tx
                .prepare_cached("DELETE FROM store_groups WHERE group_id = ?1 AND store_id = ?2")?;
            let mut n = 0;
            for s in stores {
                n += stmt.execute(params![group.as_str(), s.as_str()])?;
            }
            Ok(n)
        })
    }

    fn store_groups(&self) -> Result<BTreeMap<StoreGroupId, Vec<StoreId>>, StorageError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT group_id, store_id FROM store_groups ORDER BY group_id, store_id",
            )?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut out: BTreeMap<StoreGroupId, Vec<StoreId>> = BTreeMap::new();
            for row in rows {
                let (g, s) = row?;
                out.entry(parse_col(g, "group_id")?)
                    .or_default()
                    .push(parse_col(s, "store_id")?);
            }
            Ok(out)
        })
    }

    fn assign_template_to_groups(
        &mut self,
        id: TemplateId,
        groups: &[StoreGroupId],
    ) -> Result<(), StorageError> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO template_groups (template_id, group_id) VALUES (?1, ?2)",
            )?;
            for g in groups {
                stmt.execute(params![id.0.as_bytes(), g.as_str()])?;
            }
            Ok(())
        })
    }

    fn template_groups(&self, id: TemplateId) -> Result<Vec<StoreGroupId>, StorageError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT group_id FROM template_groups WHERE template_id = ?1 ORDER BY group_id",
            )?;
            let rows = stmt.query_map([id.0.as_bytes()], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for r in rows {
                out.push(parse_col(r?, "group_id")?);
            }
            Ok(out)
        })
    }

    fn list_tokens(&self, principal: Option<&Principal>) -> Result<Vec<TokenInfo>, StorageError> {
        let want = principal.map(encode_principal);
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT token_hash, principal, label, created_at, expires_at, revoked_at
                   FROM tokens WHERE ?1 IS NULL OR principal = ?1
                  ORDER BY created_at DESC, token_hash",
            )?;
            let rows = stmt.query_map([want], |r| {
                Ok(TokenInfo {
                    id: hex::encode(r.get::<_, Vec<u8>>(0)?)[..TOKEN_ID_LEN].to_owned(),
                    principal: r.get(1)?,
                    label: r.get(2)?,
                    created_at: r.get(3)?,
                    expires_at: r.get(4)?,
                    revoked_at: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn token_hash_by_id(&self, id: &str) -> Result<Option<[u8; 32]>, StorageError> {
        let id = id.to_ascii_lowercase();
        if id.len() != TOKEN_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT token_hash FROM tokens WHERE substr(lower(hex(token_hash)), 1, 12) = ?1",
            )?;
            let found: Vec<Vec<u8>> = stmt
                .query_map([&id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            // Two tokens sharing 48 bits of hash is astronomically unlikely;
            // refuse to guess if it ever happens.
            Ok(match found.as_slice() {
                [one] => one.as_slice().try_into().ok(),
                _ => None,
            })
        })
    }

    fn expire_token(&mut self, hash: [u8; 32], at_ms: i64) -> Result<bool, StorageError> {
        self.write(|tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE tokens SET expires_at = ?2 WHERE token_hash = ?1 AND revoked_at IS NULL",
                )?
                .execute(params![&hash[..], at_ms])?;
            Ok(n > 0)
        })
    }

    fn token_principal(&self, hash: [u8; 32]) -> Result<Option<Principal>, StorageError> {
        self.read(|c| {
            let p: Option<String> = c
                .prepare_cached("SELECT principal FROM tokens WHERE token_hash = ?1")?
                .query_row([&hash[..]], |r| r.get(0))
                .optional()?;
            Ok(p.and_then(|p| decode_principal(&p)))
        })
    }

    fn remove_store_record(&mut self, store: &StoreId, now_ms: i64) -> Result<usize, StorageError> {
        let principal = encode_principal(&Principal::Store(store.clone()));
        self.write(|tx| {
            let revoked = tx
                .prepare_cached(
                    "UPDATE tokens SET revoked_at = ?2 WHERE principal = ?1 AND revoked_at IS NULL",
                )?
                .execute(params![principal, now_ms])?;
            for sql in [
                "DELETE FROM template_stores WHERE store_id = ?1",
                "DELETE FROM store_groups WHERE store_id = ?1",
                "DELETE FROM store_sync WHERE store_id = ?1",
                "DELETE FROM stores WHERE store_id = ?1",
            ] {
                tx.prepare_cached(sql)?.execute([store.as_str()])?;
            }
            Ok(revoked)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sqlite::testing::temp_store;
    use crate::storage::StoreRecord;

    fn store(s: &mut SqliteDatabase, id: &str) -> StoreId {
        let id: StoreId = id.parse().unwrap();
        s.put_store(&StoreRecord {
            id: id.clone(),
            name: id.to_string(),
            time_zone: "Europe/Berlin".into(),
        })
        .unwrap();
        id
    }

    #[test]
    fn a_template_reaches_its_groups_members_including_later_ones() {
        let (_d, mut s) = temp_store();
        let a = store(&mut s, "s-a");
        let b = store(&mut s, "s-b");
        let c = store(&mut s, "s-c");
        let north: StoreGroupId = "north".parse().unwrap();
        let t = TemplateId(uuid::Uuid::from_u128(9));
        s.add_to_group(&north, std::slice::from_ref(&a)).unwrap();
        s.assign_template(t, std::slice::from_ref(&c)).unwrap();
        s.assign_template_to_groups(t, std::slice::from_ref(&north))
            .unwrap();
        assert_eq!(s.template_stores(t).unwrap(), vec![a.clone(), c.clone()]);
        s.add_to_group(&north, &[b.clone(), c.clone()]).unwrap();
        assert_eq!(
            s.template_stores(t).unwrap(),
            vec![a.clone(), b.clone(), c.clone()],
            "no duplicates"
        );
        assert_eq!(
            s.remove_from_group(&north, std::slice::from_ref(&a))
                .unwrap(),
            1
        );
        assert_eq!(s.template_stores(t).unwrap(), vec![b.clone(), c.clone()]);
        assert_eq!(
            s.store_groups().unwrap()[&north],
            vec![b.clone(), c.clone()]
        );
        assert_eq!(s.template_groups(t).unwrap(), vec![north]);

        s.put_token([1; 32], &Principal::Store(b.clone()), "till 1", 5, None)
            .unwrap();
        assert_eq!(s.remove_store_record(&b, 10).unwrap(), 1);
        assert_eq!(s.template_stores(t).unwrap(), vec![c]);
        assert!(s.get_store(&b).unwrap().is_none());
        assert_eq!(
            s.check_token([1; 32], 11).unwrap(),
            crate::storage::TokenCheck::Revoked
        );
    }

    #[test]
    fn tokens_list_by_short_id_and_expire() {
        let (_d, mut s) = temp_store();
        let st: StoreId = "s-1".parse().unwrap();
        let mut h = [0u8; 32];
        h[0] = 0xAB;
        s.put_token(h, &Principal::Store(st.clone()), "till", 1, None)
            .unwrap();
        s.put_token([2; 32], &Principal::Hq, "admin", 2, None)
            .unwrap();
        let all = s.list_tokens(None).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].label, "admin", "newest first");
        let mine = s.list_tokens(Some(&Principal::Store(st))).unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].id, "ab0000000000");
        assert_eq!(s.token_hash_by_id("AB0000000000").unwrap(), Some(h));
        assert_eq!(s.token_hash_by_id("ab00").unwrap(), None);
        assert_eq!(s.token_hash_by_id("zz0000000000").unwrap(), None);
        assert!(s.expire_token(h, 100).unwrap());
        assert_eq!(
            s.check_token(h, 99).unwrap(),
            crate::storage::TokenCheck::Valid(Principal::Store("s-1".parse().unwrap()))
        );
        assert_eq!(
            s.check_token(h, 100).unwrap(),
            crate::storage::TokenCheck::Expired
        );
    }
}
