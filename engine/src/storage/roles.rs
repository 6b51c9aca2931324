//! The storage seam: traits cut by role. A replica reaches its database
//! only through these; [`SqliteDatabase`](super::SqliteDatabase)
//! implements them all (the agent needs `Documents` and `SyncStates`, the
//! hub all of them), and a second backend implements the same set and
//! passes the same conformance suite (`storage::conformance`).
//!
//! Every write method is one unit of work on its own, durable when it
//! returns Ok, unless the hub's group commit (`Hub::batch`) is open: then
//! it is part of that unit of work and durable when the batch commits.

#![allow(clippy::too_many_arguments)]

use std::collections::BTreeMap;

use automerge::{ActorId, Automerge, Change, ChangeHash};

use super::*;
use crate::document::instance::InstanceView;
use crate::document::DocKind;
use crate::hq_accounts::*;
use crate::ids::*;
use crate::template::Template;

/// Documents and their changes: what every replica keeps (the agent and the hub).
pub trait Documents {
    /// Persist `changes` of `doc` in one transaction; returns how many were
    /// not already stored as change rows. Inside a batch a backend may hold
    /// the rows until something reads them or the batch commits (the hub's
    /// PostgreSQL backend does); it then counts the changes the batch had
    /// not written yet.
    ///
    /// Storing a change twice is a no-op (rows are keyed by document and
    /// change hash), so a peer resending changes costs nothing. A change that
    /// was already folded into the snapshot is not detected here (that would
    /// mean loading the snapshot); it is stored again, loads harmlessly, and
    /// the next compaction drops it.
    fn append_changes(
        &mut self,
        doc: DocumentId,
        changes: &[Change],
    ) -> Result<usize, StorageError>;

    /// The document (snapshot plus change rows), or `None` if not stored.
    ///
    /// The returned document's actor is this replica's, so changes made on it
    /// are attributed to this replica. A snapshot or change row that does
    /// not decode gives [`StorageError::Damaged`] naming this document
    /// ([`super::Damage::Document`]) and only this one.
    fn load_document(&self, doc: DocumentId) -> Result<Option<Automerge>, StorageError>;

    /// Every stored document, each with its own result: one corrupt document
    /// must not keep a store's other task lists from loading. The outer error
    /// is only for failing to read the list itself.
    fn load_all_documents(&self) -> Result<Vec<(DocumentId, DocumentLoad)>, StorageError>;

    /// Ids of all stored documents, in id order.
    fn list_documents(&self) -> Result<Vec<DocumentId>, StorageError>;

    /// How many documents are stored (what `/metrics` reports; cheaper
    /// than listing them).
    fn document_count(&self) -> Result<usize, StorageError>;

    /// Whether `doc` is stored (even if all its changes still wait for dependencies).
    fn document_exists(&self, doc: DocumentId) -> Result<bool, StorageError>;

    /// Delete a document with its changes and every peer's sync state for it.
    /// Returns whether it existed.
    fn delete_document(&mut self, doc: DocumentId) -> Result<bool, StorageError>;

    /// Replace everything stored for `doc` (snapshot, change rows, sync
    /// states) with `changes`, in one transaction: after a rebase the old
    /// copy and the new one never mix, and a crash leaves one or the other.
    fn replace_document(&mut self, doc: DocumentId, changes: &[Change])
        -> Result<(), StorageError>;

    /// `replace_document`, and in the same transaction this replica's actor
    /// becomes `new_actor` and each `meta` key is set: after a diverged
    /// history is dropped, the fresh actor that re-records the dropped work
    /// is on disk together with that work, so a crash leaves either the old
    /// document under the old actor or the new one under the new actor,
    /// never changes under an actor the file does not name.
    fn replace_document_with_actor(
        &mut self,
        doc: DocumentId,
        changes: &[Change],
        new_actor: [u8; 16],
        meta: &[(&str, Vec<u8>)],
    ) -> Result<(), StorageError>;

    /// Set aside a document that does not load: its raw snapshot and change
    /// rows are copied into `meta` under `quarantine/<doc>/<n>` (kept for
    /// an operator or a later salvage, never read by the replica), and the
    /// document, its changes and its sync states are deleted, in one
    /// transaction, so the replica can fetch it again from a peer. Returns
    /// how many rows were set aside.
    fn quarantine_document(&mut self, doc: DocumentId) -> Result<usize, StorageError>;

    /// Rows set aside by [`quarantine_document`](SqliteDatabase::quarantine_document):
    /// (meta key, bytes).
    fn quarantined(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError>;

    /// How many change rows `doc` has that are not yet folded into its snapshot.
    fn change_row_count(&self, doc: DocumentId) -> Result<usize, StorageError>;

    /// Documents with at least `threshold_changes` change rows, for a
    /// background task to [`compact`](SqliteDatabase::compact).
    fn documents_needing_compaction(
        &self,
        threshold_changes: usize,
    ) -> Result<Vec<DocumentId>, StorageError>;

    /// Fold `doc`'s change rows into a new snapshot.
    ///
    /// Safe against losing changes in two ways: the whole read-save-delete
    /// runs in one write transaction (no other writer can add rows in
    /// between), and it deletes rows by row id, only those whose change is
    /// now in the saved history. A change still waiting for a dependency is
    /// not in `save()`'s output, so its row stays.
    /// Background compaction step: fold up to `max_documents` documents
    /// holding at least `threshold_changes` change rows. Bounded so the
    /// replica's thread is never blocked for long; a document that fails
    /// (corrupt) is logged and skipped, the rest still compact. Returns how
    /// many documents were compacted.
    fn compact_some(
        &mut self,
        threshold_changes: usize,
        max_documents: usize,
    ) -> Result<usize, StorageError>;

    fn compact(&mut self, doc: DocumentId) -> Result<CompactionStats, StorageError>;
}

/// Automerge sync state per peer and document, kept across connections.
pub trait SyncStates {
    /// Replace the sync state for (`peer`, `doc`). Durable when this returns.
    fn save_sync_state(
        &mut self,
        peer: &PeerId,
        doc: DocumentId,
        state: &[u8],
    ) -> Result<(), StorageError>;

    /// Save many documents' sync states for `peer` in one transaction (a
    /// disconnect saves every document of the session: one fsync, not one
    /// per document).
    fn save_sync_states(
        &mut self,
        peer: &PeerId,
        states: &[(DocumentId, Vec<u8>)],
    ) -> Result<(), StorageError>;

    /// The last saved sync state for (`peer`, `doc`), if any.
    fn load_sync_state(
        &self,
        peer: &PeerId,
        doc: DocumentId,
    ) -> Result<Option<Vec<u8>>, StorageError>;

    /// Drop every sync state of `peer` (it was removed, or its store was
    /// reset and its old state would make us skip changes it no longer
    /// has). Returns how many documents had one.
    fn forget_peer(&mut self, peer: &PeerId) -> Result<usize, StorageError>;
}

/// The hub's registry: stores, tokens, document owners, actors, known content, rejections, former workers.
pub trait Registry {
    fn put_store(&mut self, rec: &StoreRecord) -> Result<(), StorageError>;

    fn get_store(&self, id: &StoreId) -> Result<Option<StoreRecord>, StorageError>;

    fn list_stores(&self) -> Result<Vec<StoreRecord>, StorageError>;

    /// Remember when stores last synced with the hub (`(store, unix ms)`);
    /// an older time never overwrites a newer one. The hub calls this at a
    /// bounded rate, not per frame. `&self`: this is connection bookkeeping
    /// beside the replica, written from the hub's runtime, which holds the
    /// replica's store by shared reference only; it touches no replica data.
    fn record_store_sync(&self, seen: &[(StoreId, i64)]) -> Result<(), StorageError>;

    /// When each store last synced, as recorded by `record_store_sync`.
    fn store_sync_times(&self) -> Result<Vec<(StoreId, i64)>, StorageError>;

    /// Remember that `worker` was on `store`'s roster before HQ took them
    /// off it (see schema v11).
    fn note_former_worker(
        &mut self,
        store: &StoreId,
        worker: &WorkerId,
    ) -> Result<(), StorageError>;

    /// Workers once on `store`'s roster and taken off it.
    fn former_workers(&self, store: &StoreId) -> Result<Vec<WorkerId>, StorageError>;

    /// Record a token (by its SHA-256) for `principal`.
    fn put_token(
        &mut self,
        token_hash: [u8; 32],
        principal: &Principal,
        label: &str,
        now_ms: i64,
        expires_at_ms: Option<i64>,
    ) -> Result<(), StorageError>;

    fn revoke_token(&mut self, token_hash: [u8; 32], now_ms: i64) -> Result<bool, StorageError>;

    fn check_token(&self, token_hash: [u8; 32], now_ms: i64) -> Result<TokenCheck, StorageError>;

    /// Record which store a document belongs to (and what kind it is).
    fn set_doc_owner(
        &mut self,
        doc: DocumentId,
        store: &StoreId,
        kind: DocKind,
    ) -> Result<(), StorageError>;

    fn doc_owner(&self, doc: DocumentId) -> Result<Option<(StoreId, DocKind)>, StorageError>;

    fn documents_of_store(&self, store: &StoreId) -> Result<Vec<DocumentId>, StorageError>;

    fn actor_owner(&self, actor: &ActorId) -> Result<Option<Principal>, StorageError>;

    /// Record that HQ vouches for these deterministic content changes.
    /// Record `hashes` as content HQ vouches for in `doc` (adds to what
    /// is known already).
    fn add_known_content(
        &mut self,
        doc: DocumentId,
        hashes: &[ChangeHash],
    ) -> Result<(), StorageError>;

    fn known_content(&self, doc: DocumentId) -> Result<Vec<ChangeHash>, StorageError>;

    /// Store accepted changes and claim their new actors for `author`, in
    /// one transaction: durable together or not at all.
    fn commit_accepted(
        &mut self,
        doc: DocumentId,
        changes: &[Change],
        new_actors: &[ActorId],
        author: &Principal,
    ) -> Result<usize, StorageError>;

    /// Claim an actor for a principal (the hub's own actor at start-up).
    fn claim_actor(&mut self, actor: &ActorId, owner: &Principal) -> Result<(), StorageError>;

    fn record_rejection(&mut self, rec: &RejectionRecord) -> Result<(), StorageError>;

    fn rejections(&self) -> Result<Vec<RejectionRecord>, StorageError>;
}

/// The hub's store groups, and token listing and expiry.
pub trait Groups {
    /// Put `stores` in `group` (creating the group). Idempotent.
    fn add_to_group(
        &mut self,
        group: &StoreGroupId,
        stores: &[StoreId],
    ) -> Result<(), StorageError>;

    /// Take `stores` out of `group`; returns how many were members.
    fn remove_from_group(
        &mut self,
        group: &StoreGroupId,
        stores: &[StoreId],
    ) -> Result<usize, StorageError>;

    /// Every group with its members (a group exists while it has members).
    fn store_groups(&self) -> Result<BTreeMap<StoreGroupId, Vec<StoreId>>, StorageError>;

    /// Assign a template to store groups (now and future members).
    fn assign_template_to_groups(
        &mut self,
        id: TemplateId,
        groups: &[StoreGroupId],
    ) -> Result<(), StorageError>;

    fn template_groups(&self, id: TemplateId) -> Result<Vec<StoreGroupId>, StorageError>;

    /// Every token, newest first; `principal` narrows to one principal.
    fn list_tokens(&self, principal: Option<&Principal>) -> Result<Vec<TokenInfo>, StorageError>;

    /// The full hash of the token whose id is `id` (see [`TokenInfo`]).
    fn token_hash_by_id(&self, id: &str) -> Result<Option<[u8; 32]>, StorageError>;

    /// Make a token expire at `at_ms` (now, to cut it off). False if it is
    /// unknown or revoked.
    fn expire_token(&mut self, hash: [u8; 32], at_ms: i64) -> Result<bool, StorageError>;

    /// Which principal a token (by hash) belongs to, if any.
    fn token_principal(&self, hash: [u8; 32]) -> Result<Option<Principal>, StorageError>;

    /// Remove a store's registration in one transaction: revoke its tokens,
    /// drop its template assignments and group memberships and its row.
    /// Its documents are removed by the caller (they need the hub's copy
    /// dropped too). Returns how many tokens were revoked.
    fn remove_store_record(&mut self, store: &StoreId, now_ms: i64) -> Result<usize, StorageError>;
}

/// The hub's recurring-list templates and where they are assigned.
pub trait Templates {
    /// Store a new revision (the caller numbers it).
    fn put_template(&mut self, t: &Template) -> Result<(), StorageError>;

    /// Every revision of a template, oldest first.
    fn template_revisions(&self, id: TemplateId) -> Result<Vec<Template>, StorageError>;

    /// The latest revision of every template.
    fn latest_templates(&self) -> Result<Vec<Template>, StorageError>;

    fn assign_template(&mut self, id: TemplateId, stores: &[StoreId]) -> Result<(), StorageError>;

    /// Stores a template is assigned to by name (not through a group).
    fn template_direct_stores(&self, id: TemplateId) -> Result<Vec<StoreId>, StorageError>;

    /// Take a template off `stores` and `groups`, in one transaction.
    fn unassign_template(
        &mut self,
        id: TemplateId,
        stores: &[StoreId],
        groups: &[StoreGroupId],
    ) -> Result<(), StorageError>;

    /// Delete a template: every revision and every assignment, in one
    /// transaction. Its instances are the caller's business.
    fn delete_template(&mut self, id: TemplateId) -> Result<(), StorageError>;

    /// Stores a template reaches: assigned directly or through a store
    /// group (membership as it is now, so a store added to a group later
    /// gets the group's lists at the next materialization).
    fn template_stores(&self, id: TemplateId) -> Result<Vec<StoreId>, StorageError>;
}

/// Writes to the hub's status index: the projection of instance documents that the readers query.
pub trait StatusIndex {
    /// Replace the index rows of one instance with its current view.
    fn index_instance(&mut self, view: &InstanceView) -> Result<(), StorageError>;

    /// Bring the index rows of one instance to its current view. `last` is
    /// what the previous update of this instance returned, if nothing has
    /// written its rows since (no purge, no rolled-back transaction): then only the rows that
    /// differ are written. Without it the instance's rows are read back
    /// from the table first, which is still far cheaper than rewriting
    /// them. Either way the table ends up as a full rewrite leaves it.
    fn update_index(
        &mut self,
        view: &InstanceView,
        last: Option<&IndexedRows>,
    ) -> Result<IndexUpdate, StorageError>;

    fn unindex_instance(&mut self, doc: DocumentId) -> Result<(), StorageError>;

    /// Delete an instance and everything the hub knows of it, in one
    /// transaction: its rows, sync states, owner, vouched content, index.
    fn purge_document(&mut self, doc: DocumentId) -> Result<(), StorageError>;

    /// Mark lists whose index rows are now behind their documents; written
    /// with the changes, so a crash before the index catches up loses
    /// nothing (`index_due` lists them at the next start).
    fn mark_index_due(&mut self, docs: &[DocumentId]) -> Result<(), StorageError>;

    /// Lists marked by [`Store::mark_index_due`] and not indexed since.
    fn index_due(&self) -> Result<Vec<DocumentId>, StorageError>;
}

/// The status index as the readers (dashboard, `hub status`, purge) query it.
pub trait StatusQueries {
    /// Lists x stores with counts; `past_due` = not completed and due before `now_ms`.
    fn status_by_list(
        &self,
        store: Option<&StoreId>,
        now_ms: i64,
    ) -> Result<Vec<ListStatusRow>, StorageError>;

    /// [`Store::status_by_list`] for lists dated (store-local) from `from`
    /// to `to`, both inclusive; `None` leaves that side open.
    fn status_by_list_between(
        &self,
        store: Option<&StoreId>,
        from: Option<chrono::NaiveDate>,
        to: Option<chrono::NaiveDate>,
        now_ms: i64,
    ) -> Result<Vec<ListStatusRow>, StorageError>;

    /// Per store and list name, the tasks of lists dated (store-local)
    /// from `from` to `to` (inclusive; `None` leaves that side open): how
    /// many, completed, completed on time, past due, in conflict; by store
    /// then list. The fleet roll-up adds these up per store group.
    fn status_by_store_list(
        &self,
        from: Option<chrono::NaiveDate>,
        to: Option<chrono::NaiveDate>,
        now_ms: i64,
    ) -> Result<Vec<StoreListRow>, StorageError>;

    /// [`Store::past_due`] counted per store and list, with the oldest
    /// due time of each; by store then list.
    fn past_due_counts(&self, now_ms: i64) -> Result<Vec<PastDueCount>, StorageError>;

    /// Open tasks (not completed) due before `now_ms`, most overdue first,
    /// optionally for one store.
    fn past_due(
        &self,
        store: Option<&StoreId>,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<PastDueRow>, StorageError>;

    /// Every status event, newest first, optionally for one store or worker.
    fn status_by_worker(
        &self,
        store: Option<&StoreId>,
        worker: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WorkerEventRow>, StorageError>;

    /// Every task in a list dated (store-local) from `from` to `to`,
    /// both inclusive, with its due time and when and by whom it was
    /// completed if its status is completed now: the facts of the
    /// compliance report (`crate::compliance`), ordered by store, date,
    /// list, document and task.
    fn report_tasks_between(
        &self,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<crate::compliance::ReportTask>, StorageError>;

    /// Instances matching `filter`, from the status index, with their store.
    fn purge_candidates(
        &self,
        filter: &PurgeFilter,
    ) -> Result<Vec<(DocumentId, StoreId)>, StorageError>;
}

/// HQ's people (issue #23): accounts, their personal API tokens, and the
/// audit of HQ's actions. The audit is append-only: the backends refuse
/// to change or delete its rows.
pub trait HqAccounts {
    /// Add an account, or replace the one with the same id.
    fn put_hq_user(&mut self, user: &HqUser) -> Result<(), StorageError>;

    fn hq_user(&self, id: &HqUserId) -> Result<Option<HqUser>, StorageError>;

    /// Every account, by id.
    fn hq_users(&self) -> Result<Vec<HqUser>, StorageError>;

    /// Record a personal token (by its SHA-256) of `user`.
    fn put_personal_token(
        &mut self,
        token_hash: [u8; 32],
        user: &HqUserId,
        label: &str,
        now_ms: i64,
        expires_at_ms: Option<i64>,
    ) -> Result<(), StorageError>;

    fn check_personal_token(
        &self,
        token_hash: [u8; 32],
        now_ms: i64,
    ) -> Result<PersonalTokenCheck, StorageError>;

    /// Personal tokens, newest first; `user` narrows to one account's.
    fn personal_tokens(
        &self,
        user: Option<&HqUserId>,
    ) -> Result<Vec<PersonalTokenInfo>, StorageError>;

    /// Revoke the personal token whose id ([`PersonalTokenInfo::id`]) is
    /// `id`, if it belongs to `user` (any account's when `None`). False if
    /// there is no such token, or it was revoked already.
    fn revoke_personal_token(
        &mut self,
        id: &str,
        user: Option<&HqUserId>,
        now_ms: i64,
    ) -> Result<bool, StorageError>;

    /// Revoke every personal token of `user` (disabling an account);
    /// returns how many.
    fn revoke_personal_tokens_of(
        &mut self,
        user: &HqUserId,
        now_ms: i64,
    ) -> Result<usize, StorageError>;

    /// Append one entry to the audit.
    fn append_audit(&mut self, entry: &AuditEntry) -> Result<(), StorageError>;

    /// Audit entries matching `query`, newest first.
    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StorageError>;
}

/// The database as a whole: the replica's identity (its actor id), its
/// settings, where it is, and giving space back.
pub trait Replica {
    /// This replica's Automerge actor id: use it for every change it makes.
    fn actor_id(&self) -> ActorId;

    /// Give this replica a new actor id. Call it after restoring from a
    /// backup: the backup may lack changes this replica made and sent after
    /// the backup was taken, and reusing the actor would mint different
    /// changes with the same (actor, seq), which diverges documents forever
    /// (DESIGN rule 2).
    fn reset_actor(&mut self, new: [u8; 16]) -> Result<(), StorageError>;

    /// A replica-level setting, or `None` if never set.
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Set a replica-level setting (durable when this returns).
    fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StorageError>;

    /// Give the file's free pages back to the file system (after
    /// compaction or deletes). Bounded by the free pages there are; runs
    /// outside any transaction, as SQLite requires.
    fn release_free_pages(&mut self) -> Result<i64, StorageError>;

    /// Which database this is, for messages: a file path, or a server
    /// address without credentials.
    fn location(&self) -> String;
}

/// The hub's unit of work: writes between `begin_batch` and `commit_batch`
/// share one transaction (one fsync) and are durable only when it commits;
/// an operation inside it can be undone alone. Only `Hub::batch` and
/// `Hub::batched` drive it.
pub trait UnitOfWork {
    /// Group commit: the writes until `commit_batch` share one transaction
    /// and one fsync. The caller must not let anything depending on them
    /// out (no reply, no acknowledgement) before `commit_batch` returns Ok.
    fn begin_batch(&mut self) -> Result<(), StorageError>;

    /// Make the batch durable. On error nothing of it was saved (rolled
    /// back), and whatever was derived from it in memory must be dropped.
    fn commit_batch(&mut self) -> Result<(), StorageError>;

    fn in_batch(&self) -> bool;

    /// Inside a batch: a point to return to if an operation of several
    /// writes fails part-way (`rollback_operation`), so the batch keeps
    /// only whole operations. Close it with `end_operation`.
    fn begin_operation(&mut self) -> Result<(), StorageError>;

    fn end_operation(&mut self) -> Result<(), StorageError>;

    /// Undo every write since `begin_operation` (the batch goes on).
    fn rollback_operation(&mut self) -> Result<(), StorageError>;
}

/// Everything the hub asks of its database: one value of this type is the
/// hub's storage (`Hub::open` takes any).
pub trait HubStorage:
    Documents
    + SyncStates
    + Registry
    + Groups
    + Templates
    + StatusIndex
    + StatusQueries
    + HqAccounts
    + UnitOfWork
    + Replica
    + Send
{
    /// This database as its [`HqAccounts`] role alone (the hub shell
    /// writes accounts and the audit on the hub thread through it).
    fn accounts_mut(&mut self) -> &mut dyn HqAccounts;
}

impl<T> HubStorage for T
where
    T: Documents
        + SyncStates
        + Registry
        + Groups
        + Templates
        + StatusIndex
        + StatusQueries
        + HqAccounts
        + UnitOfWork
        + Replica
        + Send,
{
    fn accounts_mut(&mut self) -> &mut dyn HqAccounts {
        self
    }
}
