//! Newtype identifiers. Parse at the edge (`FromStr`), trust inside.
//!
//! Shop-side codes (stores, workers, worker groups) are short human codes an
//! operator types; everything the system mints itself is a UUID.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why an identifier could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} id is empty; give 1 to 64 characters from a-z, A-Z, 0-9, '-', '_', '.'")]
    Empty { kind: &'static str },
    #[error("{kind} id {value:?} is too long ({len} characters); the limit is 64")]
    TooLong {
        kind: &'static str,
        value: String,
        len: usize,
    },
    #[error("{kind} id {value:?} has character {ch:?}; use only a-z, A-Z, 0-9, '-', '_', '.'")]
    BadChar {
        kind: &'static str,
        value: String,
        ch: char,
    },
    #[error("{kind} id {value:?} is not a UUID: {reason}")]
    NotUuid {
        kind: &'static str,
        value: String,
        reason: String,
    },
    #[error("document id {value:?} is not a valid automerge-repo id: {reason}")]
    BadDocumentId { value: String, reason: String },
}

fn check_code(kind: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    let len = value.chars().count();
    if len > 64 {
        return Err(IdError::TooLong {
            kind,
            value: value.to_owned(),
            len,
        });
    }
    if let Some(ch) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(IdError::BadChar {
            kind,
            value: value.to_owned(),
            ch,
        });
    }
    Ok(())
}

macro_rules! code_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                check_code($kind, s)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                check_code($kind, &s)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Uuid::parse_str(s).map(Self).map_err(|e| IdError::NotUuid {
                    kind: $kind,
                    value: s.to_owned(),
                    reason: e.to_string(),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

code_id!(
    /// A store (shop) code, e.g. `store-042`.
    StoreId,
    "store"
);
code_id!(
    /// A worker's roster id within a store, e.g. `w-1007`.
    WorkerId,
    "worker"
);
code_id!(
    /// A worker group or role, e.g. `cashiers`, `managers`: anyone in it may claim a task.
    WorkerGroupId,
    "worker group"
);
code_id!(
    /// A group of stores HQ assigns lists to, e.g. `region-north`, `format-express`.
    StoreGroupId,
    "store group"
);
code_id!(
    /// An HQ person's sign-in name, e.g. `anna.berg` (issue #23).
    HqUserId,
    "HQ user"
);
code_id!(
    /// A POS terminal, e.g. `pos-2`. Recorded on every status event.
    TerminalId,
    "terminal"
);
code_id!(
    /// A hub node of a cluster, e.g. `hub-a`: stable across its restarts,
    /// so placement (which hashes it) does not move stores when it comes back.
    NodeId,
    "node"
);
uuid_id!(
    /// An HQ task-list template (list definition, recurrence, assignment).
    TemplateId,
    "template"
);
uuid_id!(
    /// A task inside a list.
    TaskId,
    "task"
);
uuid_id!(
    /// A status event in a task's log.
    EventId,
    "event"
);

/// Namespace for recurring instance ids (UUIDv5). Never change it: every
/// replica must derive the same instance id for the same occurrence.
pub const INSTANCE_NAMESPACE: Uuid = Uuid::from_u128(0x6f1d_3c2a_9b8e_4f7d_a1c3_52e0_7b94_d611);

/// One Automerge document: a task-list instance or a store directory.
///
/// Shown on the wire in automerge-repo's form: bs58check of the 16 UUID bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DocumentId(pub Uuid);

impl DocumentId {
    /// A new random id (`random` comes from the caller: the engine has no RNG).
    pub fn from_random_bytes(random: [u8; 16]) -> Self {
        Self(uuid::Builder::from_random_bytes(random).into_uuid())
    }

    /// The id of a store's directory document: derived, so the hub and the
    /// agent agree on it without talking.
    pub fn directory_of(store: &StoreId) -> Self {
        Self(Uuid::new_v5(
            &INSTANCE_NAMESPACE,
            format!("directory/{}", store.as_str()).as_bytes(),
        ))
    }

    /// The id of the instance of `template` for `store` on the store-local
    /// occurrence date `date` (rule 5 in DESIGN.md).
    pub fn recurring_instance(
        template: TemplateId,
        store: &StoreId,
        date: chrono::NaiveDate,
    ) -> Self {
        let name = format!(
            "instance/{}/{}/{}",
            template.0,
            store.as_str(),
            date.format("%Y-%m-%d")
        );
        Self(Uuid::new_v5(&INSTANCE_NAMESPACE, name.as_bytes()))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// automerge-repo's document id: bs58check of the UUID bytes.
    pub fn to_bs58check(&self) -> String {
        bs58::encode(self.0.as_bytes()).with_check().into_string()
    }

    /// Parse automerge-repo's bs58check form (with or without `automerge:`).
    pub fn from_bs58check(s: &str) -> Result<Self, IdError> {
        let raw = s.strip_prefix("automerge:").unwrap_or(s);
        let bytes =
            bs58::decode(raw)
                .with_check(None)
                .into_vec()
                .map_err(|e| IdError::BadDocumentId {
                    value: s.to_owned(),
                    reason: e.to_string(),
                })?;
        let arr: [u8; 16] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| IdError::BadDocumentId {
                value: s.to_owned(),
                reason: format!("decodes to {} bytes, expected 16", b.len()),
            })?;
        Ok(Self(Uuid::from_bytes(arr)))
    }

    /// `automerge:<bs58check>`, the URL automerge-repo clients pass to `find`.
    pub fn to_url(&self) -> String {
        format!("automerge:{}", self.to_bs58check())
    }
}

impl FromStr for DocumentId {
    type Err = IdError;
    /// Accepts the canonical UUID form or automerge-repo's bs58check form.
    fn from_str(s: &str) -> Result<Self, IdError> {
        match Uuid::parse_str(s) {
            Ok(u) => Ok(Self(u)),
            Err(_) => Self::from_bs58check(s),
        }
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Who authored a change, for validation: HQ (through the hub) or one store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    Hq,
    Store(StoreId),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Hq => f.write_str("hq"),
            Principal::Store(s) => write!(f, "store:{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_codes_are_checked() {
        assert!("store-042".parse::<StoreId>().is_ok());
        assert!(matches!("".parse::<StoreId>(), Err(IdError::Empty { .. })));
        assert!(matches!(
            "a b".parse::<StoreId>(),
            Err(IdError::BadChar { ch: ' ', .. })
        ));
        assert!(matches!(
            "x".repeat(65).parse::<StoreId>(),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn document_id_roundtrips_through_bs58check() {
        let id = DocumentId::from_random_bytes([7; 16]);
        let s = id.to_bs58check();
        assert_eq!(DocumentId::from_bs58check(&s).unwrap(), id);
        assert_eq!(id.to_url().parse::<DocumentId>().unwrap(), id);
        assert_eq!(id.0.to_string().parse::<DocumentId>().unwrap(), id);
    }

    #[test]
    fn bs58check_rejects_bad_checksum() {
        let mut s = DocumentId::from_random_bytes([9; 16]).to_bs58check();
        let last = s.pop().unwrap();
        s.push(if last == '2' { '3' } else { '2' });
        assert!(DocumentId::from_bs58check(&s).is_err());
    }

    #[test]
    fn recurring_instance_ids_are_deterministic_and_distinct() {
        let t = TemplateId(Uuid::from_u128(1));
        let s: StoreId = "store-1".parse().unwrap();
        let d = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        let a = DocumentId::recurring_instance(t, &s, d);
        assert_eq!(a, DocumentId::recurring_instance(t, &s, d));
        assert_ne!(
            a,
            DocumentId::recurring_instance(t, &s, d.succ_opt().unwrap())
        );
        let s2: StoreId = "store-2".parse().unwrap();
        assert_ne!(a, DocumentId::recurring_instance(t, &s2, d));
    }
}
