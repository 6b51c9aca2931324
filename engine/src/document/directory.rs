//! A store's directory document: which instances the store holds and the
//! templates it may materialize offline. Written by the hub; a store may
//! only add entries for lists it created itself.
//!
//! Entries and templates are JSON strings under a key (no nested
//! containers), so concurrent writes of one entry merge as a plain
//! last-writer-wins register and nothing needs a genesis beyond the
//! document's own.

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{Automerge, Change, ReadDoc, ROOT};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::genesis::{self, DocKind};
use super::{keys, read};
use crate::ids::{DocumentId, StoreId, TemplateId, WorkerGroupId, WorkerId};
use crate::model::{CreatedBy, ModelError};

/// One instance the store holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    pub name: String,
    pub date: NaiveDate,
    pub template: Option<TemplateId>,
    pub created_by: CreatedBy,
}

/// A template as a store's directory carries it: enough to materialize
/// recurring instances offline exactly as the hub does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryTemplate {
    pub template: crate::template::Template,
    pub time_zone: String,
}

/// A worker on the store's roster, as HQ wrote it. `role` (e.g.
/// `manager`, `cashier`) counts as one more group for assignments, and
/// `manager` unlocks the manager view at the terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterWorker {
    pub name: String,
    pub role: WorkerGroupId,
    #[serde(default)]
    pub groups: Vec<WorkerGroupId>,
    /// Salted hash of the worker's sign-in PIN (`PinHash`), if one is set.
    #[serde(default)]
    pub pin: Option<String>,
}

/// The role that may assign, create tasks and resolve conflicts at a terminal.
pub const MANAGER_ROLE: &str = "manager";

/// The roles HQ may give a worker. A role is a permission (`manager`) or a
/// job everyone in the chain shares (`group:cashier` reaches every
/// cashier), so a typo must not make a new one: `manger` would be a worker
/// without manager rights that no `group:manager` task reaches. Worker
/// groups (`closers`, ...) stay free-form. Add a role here.
pub const ROLES: [&str; 4] = [MANAGER_ROLE, "cashier", "stocker", "clerk"];

/// `role` if it is one of [`ROLES`]; else an error listing them.
pub fn parse_role(role: &str) -> Result<WorkerGroupId, ModelError> {
    if !ROLES.contains(&role) {
        return Err(ModelError::BadField {
            field: "role",
            reason: format!(
                "unknown role {role:?}; a role is one of {}",
                ROLES.join(", ")
            ),
        });
    }
    Ok(role.parse()?)
}

impl RosterWorker {
    /// The worker's role and groups: what a `group:` assignee matches.
    pub fn in_group(&self, g: &WorkerGroupId) -> bool {
        &self.role == g || self.groups.contains(g)
    }

    pub fn is_manager(&self) -> bool {
        self.role.as_str() == MANAGER_ROLE
    }

    /// Does `pin` match the stored hash? False when no PIN is set.
    pub fn check_pin(&self, worker: &WorkerId, pin: &str) -> bool {
        self.pin
            .as_deref()
            .and_then(|h| h.parse::<PinHash>().ok())
            .is_some_and(|h| h.matches(worker, pin))
    }
}

/// A sign-in PIN as stored: `sha256$<salt hex>$<digest hex>` over salt,
/// worker id and PIN. The roster syncs to the store's terminals, so a
/// terminal can check a PIN offline; a short numeric PIN is guessable by
/// anyone holding the terminal's database, so it is a sign-in convenience
/// at a trusted terminal, not a secret against its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinHash {
    salt: [u8; 16],
    digest: [u8; 32],
}

impl PinHash {
    /// Hash `pin` for `worker`. The salt comes from the caller (the engine
    /// does no I/O, randomness included).
    pub fn new(worker: &WorkerId, pin: &str, salt: [u8; 16]) -> Result<PinHash, ModelError> {
        check_pin_format(pin)?;
        Ok(PinHash {
            salt,
            digest: pin_digest(&salt, worker, pin),
        })
    }

    pub fn matches(&self, worker: &WorkerId, pin: &str) -> bool {
        pin_digest(&self.salt, worker, pin) == self.digest
    }
}

/// A PIN is 4 to 8 digits.
pub fn check_pin_format(pin: &str) -> Result<(), ModelError> {
    if (4..=8).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ModelError::BadField {
            field: "pin",
            reason: "a PIN is 4 to 8 digits".into(),
        })
    }
}

fn pin_digest(salt: &[u8; 16], worker: &WorkerId, pin: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"storetasks/pin/v1");
    h.update(salt);
    h.update((worker.as_str().len() as u64).to_be_bytes());
    h.update(worker.as_str());
    h.update(pin);
    h.finalize().into()
}

impl std::fmt::Display for PinHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sha256${}${}",
            hex::encode(self.salt),
            hex::encode(self.digest)
        )
    }
}

impl std::str::FromStr for PinHash {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<PinHash, ModelError> {
        let bad = || ModelError::BadField {
            field: "pin",
            reason: "not a sha256$<salt>$<digest> PIN hash".into(),
        };
        let mut parts = s.split('$');
        let (Some("sha256"), Some(salt), Some(digest), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let mut out = PinHash {
            salt: [0; 16],
            digest: [0; 32],
        };
        hex::decode_to_slice(salt, &mut out.salt).map_err(|_| bad())?;
        hex::decode_to_slice(digest, &mut out.digest).map_err(|_| bad())?;
        Ok(out)
    }
}

/// The directory read into the model.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DirectoryView {
    pub entries: BTreeMap<DocumentId, DirectoryEntry>,
    /// The store's workers (empty until HQ adds the first one).
    pub roster: BTreeMap<WorkerId, RosterWorker>,
    /// Template id -> the template as JSON (its shape belongs to the HQ
    /// side; the directory only carries it).
    pub templates: BTreeMap<TemplateId, String>,
    /// Entries that did not parse (a buggy or hostile writer); counted.
    pub malformed: usize,
    /// The store's locale as HQ set it ([`put_locale`]); `None` for a store
    /// HQ never gave one (the terminal then speaks [`DEFAULT_LOCALE`]).
    #[serde(default)]
    pub locale: Option<String>,
}

/// The locale of a store HQ gave none.
pub const DEFAULT_LOCALE: &str = "en";

/// Root key of the store's locale: a scalar string, last writer wins, so
/// it needs no genesis and a directory without it reads as before.
const LOCALE: &str = "locale";

/// A locale as HQ may set it: a language (`de`), or a language and a
/// region (`de-DE`), as BCP 47 writes them. It picks the terminal's
/// language and its date and number formats.
pub fn parse_locale(s: &str) -> Result<String, ModelError> {
    let bad = || ModelError::BadField {
        field: "locale",
        reason: format!(
            "{s:?}; use a language and region such as de-DE or en-GB, or a language such as de"
        ),
    };
    let (lang, region) = match s.split_once('-') {
        Some((l, r)) => (l, Some(r)),
        None => (s, None),
    };
    let lang_ok = (2..=3).contains(&lang.len()) && lang.bytes().all(|b| b.is_ascii_lowercase());
    let region_ok =
        region.is_none_or(|r| r.len() == 2 && r.bytes().all(|b| b.is_ascii_uppercase()));
    if lang_ok && region_ok {
        Ok(s.to_owned())
    } else {
        Err(bad())
    }
}

/// Set the store's locale (checked with [`parse_locale`]). `None` when it
/// already was this one.
pub fn put_locale(
    doc: &mut Automerge,
    locale: &str,
    wall_ms: i64,
) -> Result<Option<Change>, ModelError> {
    let locale = parse_locale(locale)?;
    map_of(doc, keys::ENTRIES)?;
    if read::string(doc, &ROOT, LOCALE).as_deref() == Some(locale.as_str()) {
        return Ok(None);
    }
    super::commit(doc, wall_ms, |tx| tx.put(ROOT, LOCALE, locale))
}

/// The genesis-only directory document of `store`.
pub fn create(store: &StoreId, actor: automerge::ActorId) -> Automerge {
    let mut d = genesis::genesis_document(DocumentId::directory_of(store), DocKind::Directory);
    d.set_actor(actor);
    d
}

fn map_of<R: ReadDoc>(doc: &R, key: &'static str) -> Result<automerge::ObjId, ModelError> {
    if read::string(doc, &ROOT, keys::KIND).as_deref() != Some(DocKind::Directory.as_str()) {
        return Err(ModelError::NotADirectory("kind is not directory".into()));
    }
    read::obj(doc, &ROOT, key).ok_or_else(|| ModelError::NotADirectory(format!("no {key} map")))
}

pub fn read<R: ReadDoc>(doc: &R) -> Result<DirectoryView, ModelError> {
    let mut view = DirectoryView::default();
    let entries = map_of(doc, keys::ENTRIES)?;
    for item in doc.map_range(&entries, ..) {
        let parsed = item.key.parse::<DocumentId>().ok().zip(match item.value {
            automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(s)) => {
                serde_json::from_str::<DirectoryEntry>(&s).ok()
            }
            _ => None,
        });
        match parsed {
            Some((id, e)) => {
                view.entries.insert(id, e);
            }
            None => view.malformed += 1,
        }
    }
    if let Some(roster) = read::obj(doc, &ROOT, keys::ROSTER) {
        for item in doc.map_range(&roster, ..) {
            let parsed = item.key.parse::<WorkerId>().ok().zip(match item.value {
                automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(s)) => {
                    serde_json::from_str::<RosterWorker>(&s).ok()
                }
                _ => None,
            });
            match parsed {
                Some((id, w)) => {
                    view.roster.insert(id, w);
                }
                None => view.malformed += 1,
            }
        }
    }
    // A locale that does not parse is ignored (counted): the terminal
    // keeps its default rather than guess.
    match read::string(doc, &ROOT, LOCALE).map(|l| parse_locale(&l)) {
        Some(Ok(l)) => view.locale = Some(l),
        Some(Err(_)) => view.malformed += 1,
        None => {}
    }
    let templates = map_of(doc, keys::TEMPLATES)?;
    for item in doc.map_range(&templates, ..) {
        match (item.key.parse::<TemplateId>(), item.value) {
            (Ok(id), automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(s))) => {
                view.templates.insert(id, s.to_string());
            }
            _ => view.malformed += 1,
        }
    }
    Ok(view)
}

fn commit(
    doc: &mut Automerge,
    key: &'static str,
    wall_ms: i64,
    f: impl FnOnce(
        &mut automerge::transaction::Transaction<'_>,
        &automerge::ObjId,
    ) -> Result<(), automerge::AutomergeError>,
) -> Result<Option<Change>, ModelError> {
    let obj = map_of(doc, key)?;
    super::commit(doc, wall_ms, |tx| f(tx, &obj))
}

/// Add or replace the entry for `instance`.
pub fn put_entry(
    doc: &mut Automerge,
    instance: DocumentId,
    entry: &DirectoryEntry,
    wall_ms: i64,
) -> Result<Option<Change>, ModelError> {
    let json = serde_json::to_string(entry).expect("entries serialize");
    commit(doc, keys::ENTRIES, wall_ms, |tx, o| {
        tx.put(o, instance.0.to_string(), json)
    })
}

/// Drop an instance from the store's directory (retention, bulk delete).
pub fn remove_entry(
    doc: &mut Automerge,
    instance: DocumentId,
    wall_ms: i64,
) -> Result<Option<Change>, ModelError> {
    commit(doc, keys::ENTRIES, wall_ms, |tx, o| {
        tx.delete(o, instance.0.to_string())
    })
}

/// Add or replace a template the store may materialize offline.
pub fn put_template(
    doc: &mut Automerge,
    template: TemplateId,
    json: &str,
    wall_ms: i64,
) -> Result<Option<Change>, ModelError> {
    commit(doc, keys::TEMPLATES, wall_ms, |tx, o| {
        tx.put(o, template.0.to_string(), json)
    })
}

/// Drop a template the store may no longer materialize (HQ deleted it or
/// took it off this store). `None` when the directory did not hold it.
pub fn remove_template(
    doc: &mut Automerge,
    template: TemplateId,
    wall_ms: i64,
) -> Result<Option<Change>, ModelError> {
    let map = map_of(doc, keys::TEMPLATES)?;
    let key = template.0.to_string();
    if doc.get(&map, key.as_str()).ok().flatten().is_none() {
        return Ok(None);
    }
    commit(doc, keys::TEMPLATES, wall_ms, |tx, o| tx.delete(o, key))
}

/// Add or replace a worker on the roster. The first worker also brings
/// the roster map (its deterministic genesis), so this may return two
/// changes; persist them all.
pub fn put_worker(
    doc: &mut Automerge,
    worker: &WorkerId,
    rec: &RosterWorker,
    wall_ms: i64,
) -> Result<Vec<Change>, ModelError> {
    let mut out = ensure_roster(doc)?;
    let json = serde_json::to_string(rec).expect("roster entries serialize");
    out.extend(commit(doc, keys::ROSTER, wall_ms, |tx, o| {
        tx.put(o, worker.as_str(), json)
    })?);
    Ok(out)
}

/// The ids on the roster, without parsing their entries (the hub asks
/// this for every batch of status events it validates).
pub fn roster_ids<R: ReadDoc>(doc: &R) -> Vec<WorkerId> {
    let Some(roster) = read::obj(doc, &ROOT, keys::ROSTER) else {
        return Vec::new();
    };
    doc.map_range(&roster, ..)
        .filter_map(|item| item.key.parse().ok())
        .collect()
}

/// Take a worker off the roster. `None` when the worker was not on it.
pub fn remove_worker(
    doc: &mut Automerge,
    worker: &WorkerId,
    wall_ms: i64,
) -> Result<Option<Change>, ModelError> {
    let Some(roster) = read::obj(doc, &ROOT, keys::ROSTER) else {
        return Ok(None);
    };
    if doc.get(&roster, worker.as_str()).ok().flatten().is_none() {
        return Ok(None);
    }
    commit(doc, keys::ROSTER, wall_ms, |tx, o| {
        tx.delete(o, worker.as_str())
    })
}

/// Apply the roster genesis if this directory has no roster map yet.
fn ensure_roster(doc: &mut Automerge) -> Result<Vec<Change>, ModelError> {
    map_of(doc, keys::ENTRIES)?;
    if read::obj(doc, &ROOT, keys::ROSTER).is_some() {
        return Ok(Vec::new());
    }
    let id = read::string(doc, &ROOT, keys::ID)
        .and_then(|s| s.parse::<uuid::Uuid>().ok())
        .map(DocumentId)
        .ok_or_else(|| ModelError::NotADirectory("no document id".into()))?;
    let g = genesis::roster_genesis(id);
    doc.apply_changes([g.clone()])
        .map_err(|e| ModelError::Automerge(e.to_string()))?;
    Ok(vec![g])
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn rosters_added_on_two_replicas_share_one_map_and_pins_check() {
        let store: StoreId = "s1".parse().unwrap();
        let mut a = create(&store, automerge::ActorId::random());
        let mut b = create(&store, automerge::ActorId::random());
        let ana: WorkerId = "w-1".parse().unwrap();
        let bo: WorkerId = "w-2".parse().unwrap();
        let pin = PinHash::new(&ana, "1234", [7; 16]).unwrap().to_string();
        let rec = |role: &str, pin: Option<String>| RosterWorker {
            name: "x".into(),
            role: role.parse().unwrap(),
            groups: vec!["closers".parse().unwrap()],
            pin,
        };
        assert_eq!(
            put_worker(&mut a, &ana, &rec("manager", Some(pin)), 0)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            put_worker(&mut a, &ana, &rec("manager", None), 1)
                .unwrap()
                .len(),
            1
        );
        put_worker(&mut b, &bo, &rec("cashier", None), 0).unwrap();
        a.merge(&mut b).unwrap();
        let v = read(&a).unwrap();
        assert_eq!(v.roster.len(), 2, "both workers, one roster map");
        assert!(v.roster[&ana].is_manager());
        assert!(v.roster[&bo].in_group(&"cashier".parse().unwrap()));
        assert!(v.roster[&bo].in_group(&"closers".parse().unwrap()));
        assert!(!v.roster[&bo].in_group(&"manager".parse().unwrap()));
        assert!(remove_worker(&mut a, &bo, 2).unwrap().is_some());
        assert!(remove_worker(&mut a, &bo, 3).unwrap().is_none());
        assert_eq!(read(&a).unwrap().roster.len(), 1);

        let h = PinHash::new(&ana, "1234", [7; 16]).unwrap();
        let w = RosterWorker {
            pin: Some(h.to_string()),
            ..rec("cashier", None)
        };
        assert!(w.check_pin(&ana, "1234"));
        assert!(!w.check_pin(&ana, "1235"));
        assert!(!w.check_pin(&bo, "1234"), "the hash is bound to the worker");
        assert!(!rec("cashier", None).check_pin(&ana, "1234"));
        assert_eq!(h.to_string().parse::<PinHash>().unwrap(), h);
        for bad in ["123", "123456789", "12a4", ""] {
            assert!(PinHash::new(&ana, bad, [0; 16]).is_err(), "{bad:?}");
        }
        assert!("sha256$zz$00".parse::<PinHash>().is_err());
    }

    #[test]
    fn directories_made_on_two_replicas_merge_into_one() {
        let store: StoreId = "s1".parse().unwrap();
        let mut hub = create(&store, automerge::ActorId::random());
        let mut agent = create(&store, automerge::ActorId::random());
        let inst = DocumentId(Uuid::from_u128(5));
        let entry = DirectoryEntry {
            name: "Closing".into(),
            date: NaiveDate::from_ymd_opt(2026, 11, 26).unwrap(),
            template: None,
            created_by: CreatedBy::Hq,
        };
        put_entry(&mut hub, inst, &entry, 0).unwrap();
        agent.merge(&mut hub).unwrap();
        let v = read(&agent).unwrap();
        assert_eq!(v.entries.get(&inst), Some(&entry));
        assert_eq!(agent.get_all(ROOT, keys::ENTRIES).unwrap().len(), 1);
        remove_entry(&mut agent, inst, 1).unwrap();
        assert!(read(&agent).unwrap().entries.is_empty());
    }

    #[test]
    fn a_stores_locale_is_checked_set_once_and_read_back() {
        let store: StoreId = "s1".parse().unwrap();
        let mut d = create(&store, automerge::ActorId::random());
        assert_eq!(read(&d).unwrap().locale, None, "old stores have none");
        for ok in ["de", "de-DE", "en-GB", "fil"] {
            assert!(parse_locale(ok).is_ok(), "{ok}");
        }
        for bad in ["", "DE", "de_DE", "de-de", "german", "de-DE-x", "d"] {
            assert!(parse_locale(bad).is_err(), "{bad:?}");
        }
        assert!(put_locale(&mut d, "de-DE", 1).unwrap().is_some());
        assert!(
            put_locale(&mut d, "de-DE", 2).unwrap().is_none(),
            "unchanged"
        );
        assert!(put_locale(&mut d, "de DE", 2).is_err());
        assert_eq!(read(&d).unwrap().locale.as_deref(), Some("de-DE"));
    }
}
