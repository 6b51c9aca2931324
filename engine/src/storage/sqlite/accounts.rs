//! HQ's people on SQLite (schema v14): accounts, personal API tokens and
//! the append-only audit (its triggers refuse UPDATE and DELETE).

use rusqlite::{params, OptionalExtension};

use super::{Failure, SqliteDatabase, StorageError, TOKEN_ID_LEN};
use crate::hq_accounts::*;
use crate::ids::HqUserId;
use crate::storage::roles::*;

fn bad_row(what: &str) -> Failure {
    Failure::Sql(rusqlite::Error::InvalidColumnType(
        0,
        what.to_owned(),
        rusqlite::types::Type::Text,
    ))
}

type UserRow = (String, String, String, String, bool, Option<i64>, i64);

fn user_of(row: UserRow) -> Result<HqUser, Failure> {
    let (id, role, scope, password_hash, must_change_password, disabled_at, created_at) = row;
    Ok(HqUser {
        id: id.parse().map_err(|_| bad_row("hq_users.user_id"))?,
        role: role.parse().map_err(|_| bad_row("hq_users.role"))?,
        scope: HqScope::decode(&scope).ok_or_else(|| bad_row("hq_users.scope"))?,
        password_hash,
        must_change_password,
        disabled_at,
        created_at,
    })
}

const USER_COLUMNS: &str =
    "user_id, role, scope, password_hash, must_change_password, disabled_at, created_at";

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

/// A personal token id (12 hex digits), lower-cased, or `None`.
pub(crate) fn token_id(id: &str) -> Option<String> {
    let id = id.to_ascii_lowercase();
    (id.len() == TOKEN_ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

impl HqAccounts for SqliteDatabase {
    fn put_hq_user(&mut self, user: &HqUser) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.prepare_cached(&format!(
                "INSERT OR REPLACE INTO hq_users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?
            .execute(params![
                user.id.as_str(),
                user.role.as_str(),
                user.scope.encode(),
                user.password_hash,
                user.must_change_password,
                user.disabled_at,
                user.created_at
            ])?;
            Ok(())
        })
    }

    fn hq_user(&self, id: &HqUserId) -> Result<Option<HqUser>, StorageError> {
        self.read(|c| {
            let row = c
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM hq_users WHERE user_id = ?1"
                ))?
                .query_row([id.as_str()], user_row)
                .optional()?;
            row.map(user_of).transpose()
        })
    }

    fn hq_users(&self) -> Result<Vec<HqUser>, StorageError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM hq_users ORDER BY user_id"
            ))?;
            let rows = stmt.query_map([], user_row)?;
            rows.map(|r| user_of(r?)).collect()
        })
    }

    fn put_personal_token(
        &mut self,
        token_hash: [u8; 32],
        user: &HqUserId,
        label: &str,
        now_ms: i64,
        expires_at_ms: Option<i64>,
    ) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO personal_tokens (token_hash, user_id, label, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                &token_hash[..],
                user.as_str(),
                label,
                now_ms,
                expires_at_ms
            ])?;
            Ok(())
        })
    }

    fn check_personal_token(
        &self,
        token_hash: [u8; 32],
        now_ms: i64,
    ) -> Result<PersonalTokenCheck, StorageError> {
        self.read(|c| {
            let row = c
                .prepare_cached(
                    "SELECT user_id, expires_at, revoked_at FROM personal_tokens
                      WHERE token_hash = ?1",
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
                None => PersonalTokenCheck::Unknown,
                Some((_, _, Some(_))) => PersonalTokenCheck::Revoked,
                Some((_, Some(exp), None)) if exp <= now_ms => PersonalTokenCheck::Expired,
                Some((user, _, None)) => PersonalTokenCheck::Valid(
                    user.parse()
                        .map_err(|_| bad_row("personal_tokens.user_id"))?,
                ),
            })
        })
    }

    fn personal_tokens(
        &self,
        user: Option<&HqUserId>,
    ) -> Result<Vec<PersonalTokenInfo>, StorageError> {
        let want = user.map(HqUserId::as_str);
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT token_hash, user_id, label, created_at, expires_at, revoked_at
                   FROM personal_tokens WHERE ?1 IS NULL OR user_id = ?1
                  ORDER BY created_at DESC, token_hash",
            )?;
            let rows = stmt.query_map([want], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (hash, user, label, created_at, expires_at, revoked_at) = row?;
                out.push(PersonalTokenInfo {
                    id: hex::encode(hash)[..TOKEN_ID_LEN].to_owned(),
                    user: user
                        .parse()
                        .map_err(|_| bad_row("personal_tokens.user_id"))?,
                    label,
                    created_at,
                    expires_at,
                    revoked_at,
                });
            }
            Ok(out)
        })
    }

    fn revoke_personal_token(
        &mut self,
        id: &str,
        user: Option<&HqUserId>,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let Some(id) = token_id(id) else {
            return Ok(false);
        };
        let user = user.map(HqUserId::as_str);
        self.write(|tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE personal_tokens SET revoked_at = ?3
                      WHERE substr(lower(hex(token_hash)), 1, 12) = ?1
                        AND (?2 IS NULL OR user_id = ?2) AND revoked_at IS NULL",
                )?
                .execute(params![id, user, now_ms])?;
            Ok(n > 0)
        })
    }

    fn revoke_personal_tokens_of(
        &mut self,
        user: &HqUserId,
        now_ms: i64,
    ) -> Result<usize, StorageError> {
        self.write(|tx| {
            Ok(tx
                .prepare_cached(
                    "UPDATE personal_tokens SET revoked_at = ?2
                      WHERE user_id = ?1 AND revoked_at IS NULL",
                )?
                .execute(params![user.as_str(), now_ms])?)
        })
    }

    fn append_audit(&mut self, entry: &AuditEntry) -> Result<(), StorageError> {
        let stores = serde_json::to_string(&entry.stores).expect("strings encode");
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO hq_audit (at_ms, user_id, action, stores, status, outcome)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                entry.at_ms,
                entry.user,
                entry.action,
                stores,
                entry.status,
                entry.outcome
            ])?;
            Ok(())
        })
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StorageError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT at_ms, user_id, action, stores, status, outcome FROM hq_audit
                  WHERE at_ms >= ?1 AND (?2 IS NULL OR user_id = ?2)
                  ORDER BY at_ms DESC, id DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![query.since_ms.unwrap_or(i64::MIN), query.user, query.limit],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, u16>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (at_ms, user, action, stores, status, outcome) = row?;
                out.push(AuditEntry {
                    at_ms,
                    user,
                    action,
                    stores: serde_json::from_str(&stores)
                        .map_err(|_| bad_row("hq_audit.stores"))?,
                    status,
                    outcome,
                });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sqlite::testing::temp_store;

    /// The audit's rows cannot be changed or deleted, even by SQL that
    /// goes around the trait.
    #[test]
    fn the_audit_refuses_updates_and_deletes() {
        let (_d, mut s) = temp_store();
        s.append_audit(&AuditEntry {
            at_ms: 1,
            user: "anna".into(),
            action: "POST /api/lists".into(),
            stores: vec!["s1".into()],
            status: 201,
            outcome: String::new(),
        })
        .unwrap();
        for sql in [
            "UPDATE hq_audit SET user_id = 'someone'",
            "DELETE FROM hq_audit",
        ] {
            let e = s.conn.execute(sql, []).unwrap_err();
            assert!(e.to_string().contains("append-only"), "{sql}: {e}");
        }
        assert_eq!(
            s.audit(&AuditQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap()
            .len(),
            1
        );
    }
}
