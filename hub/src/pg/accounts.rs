//! HQ's people on PostgreSQL (schema step 3): accounts, personal API
//! tokens and the append-only audit, as on SQLite. None of it belongs to
//! a store, so these writes touch no lease (the fence has nothing to check).

use engine::hq_accounts::*;
use engine::ids::HqUserId;
use engine::storage::roles::*;
use engine::storage::{StorageError, TOKEN_ID_LEN};
use tokio_postgres::Row;

use super::{errors, parse_col, Failure, PgDatabase};

fn user_of(location: &str, r: &Row) -> Result<HqUser, Failure> {
    let scope: String = r.get(2);
    Ok(HqUser {
        id: parse_col(location, r.get(0), "HQ user id")?,
        role: parse_col(location, r.get(1), "HQ role")?,
        scope: HqScope::decode(&scope).ok_or_else(|| {
            Failure::Storage(errors::damaged(
                location,
                format!("a stored HQ scope does not parse: {scope:?}"),
            ))
        })?,
        password_hash: r.get(3),
        must_change_password: r.get::<_, i32>(4) != 0,
        disabled_at: r.get(5),
        created_at: r.get(6),
    })
}

/// A personal token id (12 hex digits), lower-cased, or `None`.
fn token_id(id: &str) -> Option<String> {
    let id = id.to_ascii_lowercase();
    (id.len() == TOKEN_ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

impl HqAccounts for PgDatabase {
    fn put_hq_user(&mut self, user: &HqUser) -> Result<(), StorageError> {
        self.write(async |tx| {
            tx.execute(
                "INSERT INTO hq_users (user_id, role, scope, password_hash,
                     must_change_password, disabled_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (user_id) DO UPDATE SET role = excluded.role,
                     scope = excluded.scope, password_hash = excluded.password_hash,
                     must_change_password = excluded.must_change_password,
                     disabled_at = excluded.disabled_at, created_at = excluded.created_at",
                &[
                    &user.id.as_str(),
                    &user.role.as_str(),
                    &user.scope.encode(),
                    &user.password_hash,
                    &i32::from(user.must_change_password),
                    &user.disabled_at,
                    &user.created_at,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn hq_user(&self, id: &HqUserId) -> Result<Option<HqUser>, StorageError> {
        self.read(async |tx| {
            let row = tx
                .query_opt(
                    "SELECT user_id, role, scope, password_hash, must_change_password,
                            disabled_at, created_at
                       FROM hq_users WHERE user_id = $1",
                    &[&id.as_str()],
                )
                .await?;
            row.map(|r| user_of(tx.location(), &r)).transpose()
        })
    }

    fn hq_users(&self) -> Result<Vec<HqUser>, StorageError> {
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT user_id, role, scope, password_hash, must_change_password,
                            disabled_at, created_at
                       FROM hq_users ORDER BY user_id COLLATE \"C\"",
                    &[],
                )
                .await?;
            rows.iter().map(|r| user_of(tx.location(), r)).collect()
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
        self.write(async |tx| {
            tx.execute(
                "INSERT INTO personal_tokens (token_hash, user_id, label, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &&token_hash[..],
                    &user.as_str(),
                    &label,
                    &now_ms,
                    &expires_at_ms,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn check_personal_token(
        &self,
        token_hash: [u8; 32],
        now_ms: i64,
    ) -> Result<PersonalTokenCheck, StorageError> {
        self.read(async |tx| {
            let row = tx
                .query_opt(
                    "SELECT user_id, expires_at, revoked_at FROM personal_tokens
                      WHERE token_hash = $1",
                    &[&&token_hash[..]],
                )
                .await?;
            let Some(r) = row else {
                return Ok(PersonalTokenCheck::Unknown);
            };
            let (expires, revoked): (Option<i64>, Option<i64>) = (r.get(1), r.get(2));
            Ok(match (expires, revoked) {
                (_, Some(_)) => PersonalTokenCheck::Revoked,
                (Some(exp), None) if exp <= now_ms => PersonalTokenCheck::Expired,
                _ => PersonalTokenCheck::Valid(parse_col(tx.location(), r.get(0), "HQ user id")?),
            })
        })
    }

    fn personal_tokens(
        &self,
        user: Option<&HqUserId>,
    ) -> Result<Vec<PersonalTokenInfo>, StorageError> {
        let want = user.map(HqUserId::as_str);
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT token_hash, user_id, label, created_at, expires_at, revoked_at
                       FROM personal_tokens WHERE $1::text IS NULL OR user_id = $1
                      ORDER BY created_at DESC, token_hash",
                    &[&want],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(PersonalTokenInfo {
                        id: hex::encode(r.get::<_, Vec<u8>>(0))[..TOKEN_ID_LEN].to_owned(),
                        user: parse_col(tx.location(), r.get(1), "HQ user id")?,
                        label: r.get(2),
                        created_at: r.get(3),
                        expires_at: r.get(4),
                        revoked_at: r.get(5),
                    })
                })
                .collect()
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
        self.write(async |tx| {
            let n = tx
                .execute(
                    "UPDATE personal_tokens SET revoked_at = $3
                      WHERE substr(encode(token_hash, 'hex'), 1, 12) = $1
                        AND ($2::text IS NULL OR user_id = $2) AND revoked_at IS NULL",
                    &[&id, &user, &now_ms],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn revoke_personal_tokens_of(
        &mut self,
        user: &HqUserId,
        now_ms: i64,
    ) -> Result<usize, StorageError> {
        self.write(async |tx| {
            let n = tx
                .execute(
                    "UPDATE personal_tokens SET revoked_at = $2
                      WHERE user_id = $1 AND revoked_at IS NULL",
                    &[&user.as_str(), &now_ms],
                )
                .await?;
            Ok(n as usize)
        })
    }

    fn append_audit(&mut self, entry: &AuditEntry) -> Result<(), StorageError> {
        let stores = serde_json::to_string(&entry.stores).expect("strings encode");
        let status = i32::from(entry.status);
        self.write(async |tx| {
            tx.execute(
                "INSERT INTO hq_audit (at_ms, user_id, action, stores, status, outcome)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &entry.at_ms,
                    &entry.user,
                    &entry.action,
                    &stores,
                    &status,
                    &entry.outcome,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StorageError> {
        let since = query.since_ms.unwrap_or(i64::MIN);
        let limit = i64::from(query.limit);
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT at_ms, user_id, action, stores, status, outcome FROM hq_audit
                      WHERE at_ms >= $1 AND ($2::text IS NULL OR user_id = $2)
                      ORDER BY at_ms DESC, id DESC LIMIT $3",
                    &[&since, &query.user, &limit],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    let stores: String = r.get(3);
                    let status: i32 = r.get(4);
                    Ok(AuditEntry {
                        at_ms: r.get(0),
                        user: r.get(1),
                        action: r.get(2),
                        stores: serde_json::from_str(&stores).map_err(|_| {
                            Failure::Storage(errors::damaged(
                                tx.location(),
                                format!("an audit entry's stores are not a list: {stores:?}"),
                            ))
                        })?,
                        status: u16::try_from(status).unwrap_or(0),
                        outcome: r.get(5),
                    })
                })
                .collect()
        })
    }
}
