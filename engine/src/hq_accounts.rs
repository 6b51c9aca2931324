//! HQ people (issue #23): accounts with a role and a scope of stores,
//! their personal API tokens, and the audit of what HQ did. Who may do
//! what is decided here, once (`HqRole::may`, `HqScope::covers`); the
//! hub's HTTP layer asks these rules for every route.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{HqUserId, Principal, StoreGroupId};
use crate::storage::roles::{HqAccounts, Registry};
use crate::storage::TokenCheck;

/// What an HQ person may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HqRole {
    /// Everything: stores, tokens, accounts, the audit.
    Admin,
    /// Author, assign and publish lists and manage rosters, within scope.
    Editor,
    /// Read-only status within scope.
    Viewer,
}

/// What a request needs of its caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Need {
    /// Reading status, lists, rosters.
    Read,
    /// Writing lists, templates, rosters, purges (an editor's work).
    Author,
    /// Stores, groups, tokens, accounts and the audit (an admin's).
    Administer,
}

impl HqRole {
    /// Whether this role may do what `need` asks.
    pub fn may(self, need: Need) -> bool {
        match self {
            HqRole::Admin => true,
            HqRole::Editor => need != Need::Administer,
            HqRole::Viewer => need == Need::Read,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HqRole::Admin => "admin",
            HqRole::Editor => "editor",
            HqRole::Viewer => "viewer",
        }
    }
}

impl fmt::Display for HqRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HqRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(HqRole::Admin),
            "editor" => Ok(HqRole::Editor),
            "viewer" => Ok(HqRole::Viewer),
            other => Err(format!(
                "role {other:?} is not one of admin, editor, viewer"
            )),
        }
    }
}

/// Which stores an HQ person sees: all, or the members of some store
/// groups (membership as it is at each request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HqScope {
    AllStores,
    Groups(BTreeSet<StoreGroupId>),
}

impl HqScope {
    /// Whether a store in `groups` is in this scope.
    pub fn covers<'a>(&self, mut groups: impl Iterator<Item = &'a StoreGroupId>) -> bool {
        match self {
            HqScope::AllStores => true,
            HqScope::Groups(mine) => groups.any(|g| mine.contains(g)),
        }
    }

    /// As stored: `*`, or the group ids separated by spaces (ids have none).
    pub fn encode(&self) -> String {
        match self {
            HqScope::AllStores => "*".into(),
            HqScope::Groups(g) => g
                .iter()
                .map(StoreGroupId::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// What [`HqScope::encode`] wrote; `None` if it is not that.
    pub fn decode(s: &str) -> Option<HqScope> {
        if s == "*" {
            return Some(HqScope::AllStores);
        }
        s.split(' ')
            .filter(|g| !g.is_empty())
            .map(|g| g.parse().ok())
            .collect::<Option<BTreeSet<_>>>()
            .map(HqScope::Groups)
    }
}

impl fmt::Display for HqScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HqScope::AllStores => f.write_str("all stores"),
            HqScope::Groups(g) => write!(
                f,
                "groups {}",
                g.iter()
                    .map(StoreGroupId::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

/// `all`, or store groups separated by commas (`region-north,region-east`).
impl FromStr for HqScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" || s == "*" {
            return Ok(HqScope::AllStores);
        }
        let groups = s
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(|g| g.parse::<StoreGroupId>().map_err(|e| e.to_string()))
            .collect::<Result<BTreeSet<_>, _>>()?;
        if groups.is_empty() {
            return Err("a scope is `all` or store groups separated by commas".into());
        }
        Ok(HqScope::Groups(groups))
    }
}

/// An HQ account as stored. The password is an argon2 PHC string (the
/// hub hashes; the engine only keeps it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HqUser {
    pub id: HqUserId,
    pub role: HqRole,
    pub scope: HqScope,
    pub password_hash: String,
    /// Set for the first admin's one-time setup secret: the first sign-in
    /// must choose a password.
    pub must_change_password: bool,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
}

/// What a personal API token resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonalTokenCheck {
    Valid(HqUserId),
    Unknown,
    Expired,
    Revoked,
}

/// A personal token as it may be listed: never the token, a short id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonalTokenInfo {
    /// First 12 hex digits of the token's SHA-256 (as `TokenInfo::id`).
    pub id: String,
    pub user: HqUserId,
    pub label: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// One HQ action, as the audit keeps it (append-only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// The account, or [`ADMIN_TOKEN_USER`] for the admin token.
    pub user: String,
    /// `METHOD /api/path`.
    pub action: String,
    /// Stores the request named (path, `store`, `stores`); empty if none.
    pub stores: Vec<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// The error text for a refusal or failure; empty on success.
    pub outcome: String,
}

/// Which audit entries to read: since a time, of one user, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub since_ms: Option<i64>,
    pub user: Option<String>,
    pub limit: u32,
}

/// How the admin token appears in the audit.
pub const ADMIN_TOKEN_USER: &str = "admin-token";

/// Who an HQ request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The hub's admin token: an admin over all stores.
    AdminToken,
    /// A store's sync token: never allowed on the admin API.
    Store(crate::ids::StoreId),
    /// An HQ account, by its personal API token.
    User {
        id: HqUserId,
        role: HqRole,
        scope: HqScope,
    },
}

impl Caller {
    pub fn role(&self) -> Option<HqRole> {
        match self {
            Caller::AdminToken => Some(HqRole::Admin),
            Caller::User { role, .. } => Some(*role),
            Caller::Store(_) => None,
        }
    }

    pub fn scope(&self) -> HqScope {
        match self {
            Caller::User { scope, .. } => scope.clone(),
            _ => HqScope::AllStores,
        }
    }

    /// The name the audit records.
    pub fn audit_name(&self) -> String {
        match self {
            Caller::AdminToken => ADMIN_TOKEN_USER.into(),
            Caller::Store(s) => format!("store:{s}"),
            Caller::User { id, .. } => id.to_string(),
        }
    }
}

/// Why a caller was not recognised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallerError {
    #[error(transparent)]
    Token(#[from] crate::replica::hub::AuthError),
    #[error("account {0} is disabled; an admin can enable it with `hub users update`")]
    Disabled(HqUserId),
}

/// Who `token` is: a token of the registry (the admin token, a store's),
/// else a personal token of an enabled account. On any connection to the
/// hub's database, like `replica::hub::authenticate_on`.
pub fn caller_on(
    db: &(impl Registry + HqAccounts + ?Sized),
    token: Option<&str>,
    now_ms: i64,
) -> Result<Caller, CallerError> {
    use crate::replica::hub::{token_hash, AuthError};
    let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
    let hash = token_hash(token);
    let storage = |e: crate::storage::StorageError| AuthError::Storage(e.to_string());
    match db.check_token(hash, now_ms).map_err(storage)? {
        TokenCheck::Valid(Principal::Hq) => return Ok(Caller::AdminToken),
        TokenCheck::Valid(Principal::Store(s)) => return Ok(Caller::Store(s)),
        TokenCheck::Expired => return Err(AuthError::Expired.into()),
        TokenCheck::Revoked => return Err(AuthError::Revoked.into()),
        TokenCheck::Unknown => {}
    }
    let id = match db.check_personal_token(hash, now_ms).map_err(storage)? {
        PersonalTokenCheck::Valid(id) => id,
        PersonalTokenCheck::Unknown => return Err(AuthError::Unknown.into()),
        PersonalTokenCheck::Expired => return Err(AuthError::Expired.into()),
        PersonalTokenCheck::Revoked => return Err(AuthError::Revoked.into()),
    };
    let user = db
        .hq_user(&id)
        .map_err(storage)?
        .ok_or(AuthError::Unknown)?;
    if user.disabled_at.is_some() {
        return Err(CallerError::Disabled(id));
    }
    Ok(Caller::User {
        id,
        role: user.role,
        scope: user.scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_viewer_in_editor_in_admin() {
        use HqRole::*;
        use Need::*;
        let table = [
            (Admin, [true, true, true]),
            (Editor, [true, true, false]),
            (Viewer, [true, false, false]),
        ];
        for (role, may) in table {
            assert_eq!(
                [role.may(Read), role.may(Author), role.may(Administer)],
                may
            );
            assert_eq!(role.as_str().parse::<HqRole>().unwrap(), role);
        }
    }

    #[test]
    fn a_scope_round_trips_and_covers_its_groups_members() {
        let north: StoreGroupId = "region-north".parse().unwrap();
        let south: StoreGroupId = "region-south".parse().unwrap();
        let scope: HqScope = "region-north, format-express".parse().unwrap();
        assert_eq!(HqScope::decode(&scope.encode()), Some(scope.clone()));
        assert!(scope.covers([&south, &north].into_iter()));
        assert!(!scope.covers([&south].into_iter()));
        assert!(!scope.covers(std::iter::empty()));
        assert!(HqScope::AllStores.covers(std::iter::empty()));
        assert_eq!(HqScope::decode("*"), Some(HqScope::AllStores));
        assert_eq!("all".parse::<HqScope>().unwrap(), HqScope::AllStores);
        assert!(",".parse::<HqScope>().is_err());
        assert!("a b".parse::<HqScope>().is_err());
    }
}
