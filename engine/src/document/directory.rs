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
use crate::ids::{DocumentId, StoreId, TemplateId};
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

/// The directory read into the model.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DirectoryView {
    pub entries: BTreeMap<DocumentId, DirectoryEntry>,
    /// Template id -> the template as JSON (its shape belongs to the HQ
    /// side; the directory only carries it).
    pub templates: BTreeMap<TemplateId, String>,
    /// Entries that did not parse (a buggy or hostile writer); counted.
    pub malformed: usize,
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

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

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
}
