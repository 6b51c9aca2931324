//! How the task model sits in Automerge documents.
//!
//! Two kinds of document: a task-list **instance** (one list, one store, one
//! day) and a store **directory** (which instances a store holds, plus the
//! templates it needs to materialize recurring lists offline).
//!
//! Every container is created exactly once, by a change whose bytes every
//! replica can recompute (DESIGN rule 1): the document genesis creates the
//! top-level containers, a task genesis creates one task's map. Everything
//! else is scalar puts and list inserts, which Automerge merges without
//! duplicating anything.

pub mod directory;
pub mod genesis;
pub mod instance;
pub(crate) mod read;

#[cfg(test)]
pub(crate) mod instance_tests;

pub use genesis::DocKind;

/// Keys of the documents. Changing one breaks every stored document and
/// every peer: add, never rename.
pub mod keys {
    pub const SCHEMA: &str = "schema";
    pub const KIND: &str = "kind";
    pub const ID: &str = "id";
    pub const META: &str = "meta";
    pub const TASKS: &str = "tasks";
    pub const EVENTS: &str = "events";
    pub const ENTRIES: &str = "entries";
    pub const TEMPLATES: &str = "templates";
    /// Directory: the store's workers (added by the roster genesis).
    pub const ROSTER: &str = "roster";

    // meta (instance)
    pub const STORE: &str = "store";
    pub const NAME: &str = "name";
    pub const TEMPLATE: &str = "template";
    pub const DATE: &str = "date";
    pub const TIME_ZONE: &str = "time_zone";
    pub const CREATED_BY: &str = "created_by";

    // task
    pub const TITLE: &str = "title";
    pub const DESCRIPTION: &str = "description";
    pub const START: &str = "start";
    pub const DUE: &str = "due";
    pub const PRIORITY: &str = "priority";
    pub const LINK: &str = "link";
    pub const ASSIGNEE: &str = "assignee";
    pub const POSITION: &str = "position";

    // status event
    pub const EVENT_ID: &str = "id";
    pub const TASK: &str = "task";
    pub const STATUS: &str = "status";
    pub const WORKER: &str = "worker";
    pub const TERMINAL: &str = "terminal";
    pub const AT: &str = "at";
    pub const PREV: &str = "prev";
    pub const NOTE: &str = "note";

    /// Fields of an HQ-authored task a store may still write.
    pub const STORE_WRITABLE_TASK_FIELDS: &[&str] = &[ASSIGNEE];
    /// Fields a status event may carry.
    pub const EVENT_FIELDS: &[&str] = &[EVENT_ID, TASK, STATUS, WORKER, TERMINAL, AT, PREV, NOTE];
    /// Fields a task map may carry.
    pub const TASK_FIELDS: &[&str] = &[
        TITLE,
        DESCRIPTION,
        START,
        DUE,
        PRIORITY,
        LINK,
        ASSIGNEE,
        CREATED_BY,
        POSITION,
    ];
    /// Fields of an instance's meta map.
    pub const META_FIELDS: &[&str] = &[STORE, NAME, TEMPLATE, DATE, TIME_ZONE, CREATED_BY];
}

/// Commit `f` as one change by the document's own actor. `None` when it
/// wrote nothing: Automerge skips a put of the value a key already holds,
/// so "assign to the current assignee" is no change at all.
pub(crate) fn commit(
    doc: &mut automerge::Automerge,
    wall_ms: i64,
    f: impl FnOnce(
        &mut automerge::transaction::Transaction<'_>,
    ) -> Result<(), automerge::AutomergeError>,
) -> Result<Option<automerge::Change>, crate::model::ModelError> {
    let opts = automerge::transaction::CommitOptions::default().with_time(wall_ms.div_euclid(1000));
    let done = doc.transact_with(|_| opts, f).map_err(|f| f.error)?;
    Ok(done.hash.map(|h| {
        use automerge::ReadDoc;
        doc.get_change_by_hash(&h)
            .expect("the change just committed is in the document")
    }))
}

/// Schema version written by the genesis.
pub const SCHEMA_VERSION: i64 = 1;
