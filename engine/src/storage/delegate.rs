//! A storage wrapper's boilerplate: every role but [`UnitOfWork`](super::roles::UnitOfWork)
//! handed to an inner database unchanged, so a wrapper (a test's failing
//! backend, the simulator's fenced one) writes only the part it changes.
//! Every write that belongs to a store says so first, and may be refused ([`StoreWrites`]),
//! which is what a fence checks at commit.

use crate::ids::{DocumentId, StoreId};

/// What a wrapper hears of each write before it is handed on, and may
/// refuse (a fence outside a batch): the document (whose store the
/// wrapper may look up) or the store it belongs to. Writes that belong to
/// no store (tokens, templates, groups, the store registry's records) say
/// nothing. Both default to letting the write through.
pub trait StoreWrites {
    fn writing_doc(&self, _doc: DocumentId) -> Result<(), crate::storage::StorageError> {
        Ok(())
    }
    fn writing_store(&self, _store: &StoreId) -> Result<(), crate::storage::StorageError> {
        Ok(())
    }
}

/// Implement every storage role except `UnitOfWork` for `$ty` by calling
/// the same method on `self.$field`, after telling `$ty`'s
/// [`StoreWrites`] about each write. The wrapper implements
/// `UnitOfWork` (and `StoreWrites`) itself: that is where a fence or an
/// injected failure goes.
#[doc(hidden)]
#[macro_export]
macro_rules! delegate_storage_roles {
    ($ty:ty => $field:ident) => {
        const _: () = {
            #[allow(unused_imports)]
            use ::std::collections::BTreeMap;
            #[allow(unused_imports)]
            use $crate::automerge::{ActorId, Automerge, Change, ChangeHash};
            use $crate::document::instance::InstanceView;
            use $crate::document::DocKind;
            use $crate::ids::*;
            use $crate::storage::roles::*;
            use $crate::storage::*;
            use $crate::template::Template;

            impl Documents for $ty {
                fn append_changes(
                    &mut self,
                    doc: DocumentId,
                    changes: &[Change],
                ) -> Result<usize, StorageError> {
                    $crate::storage::StoreWrites::writing_doc(self, doc)?;
                    self.$field.append_changes(doc, changes)
                }
                fn load_document(
                    &self,
                    doc: DocumentId,
                ) -> Result<Option<Automerge>, StorageError> {
                    self.$field.load_document(doc)
                }
                fn load_all_documents(
                    &self,
                ) -> Result<Vec<(DocumentId, DocumentLoad)>, StorageError> {
                    self.$field.load_all_documents()
                }
                fn list_documents(&self) -> Result<Vec<DocumentId>, StorageError> {
                    self.$field.list_documents()
                }
                fn document_count(&self) -> Result<usize, StorageError> {
                    self.$field.document_count()
                }
                fn document_exists(&self, doc: DocumentId) -> Result<bool, StorageError> {
                    self.$field.document_exists(doc)
                }
                fn delete_document(&mut self, doc: DocumentId) -> Result<bool, StorageError> {
                    $crate::storage::StoreWrites::writing_doc(self, doc)?;
                    self.$field.delete_document(doc)
                }
                fn replace_document(
                    &mut self,
                    doc: DocumentId,
                    changes: &[Change],
                ) -> Result<(), StorageError> {
                    $crate::storage::StoreWrites::writing_doc(self, doc)?;
                    self.$field.replace_document(doc, changes)
                }
                fn replace_document_with_actor(
                    &mut self,
                    doc: DocumentId,
                    changes: &[Change],
                    new_actor: [u8; 16],
                    meta: &[(&str, Vec<u8>)],
                ) -> Result<(), StorageError> {
                    $crate::storage::StoreWrites::writing_doc(self, doc)?;
                    self.$field
                        .replace_document_with_actor(doc, changes, new_actor, meta)
                }
                fn quarantine_document(&mut self, doc: DocumentId) -> Result<usize, StorageError> {
                    $crate::storage::StoreWrites::writing_doc(self, doc)?;
                    self.$field.quarantine_document(doc)
                }
                fn quarantined(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
                    self.$field.quarantined()
                }
                fn change_row_count(&self, doc: DocumentId) -> Result<usize, StorageError> {
                    self.$field.change_row_count(doc)
                }
                fn documents_needing_compaction(
                    &self,
                    threshold_changes: usize,
                ) -> Result<Vec<DocumentId>, StorageError> {
                    self.$field.documents_needing_compaction(threshold_changes)
                }
                fn compact_some(
                    &mut self,
                    threshold_changes: usize,
                    max_documents: usize,
                ) -> Result<usize, StorageError> {
                    self.$field.compact_some(threshold_changes, max_documents)
                }
                fn compact(&mut self, doc: DocumentId) -> Result<CompactionStats, StorageError> {
                    $crate::storage::StoreWrites::writing_doc(self, doc)?;
                    self.$field.compact(doc)
                }
            }
            impl SyncStates for $ty {
                fn save_sync_state(
                    &mut self,
                    peer: &PeerId,
                    doc: DocumentId,
                    state: &[u8],
                ) -> Result<(), StorageError> {
                    $crate::storage::StoreWrites::writing_doc(self, doc)?;
                    self.$field.save_sync_state(peer, doc, state)
                }
                fn save_sync_states(
                    &mut self,
                    peer: &PeerId,
                    states: &[(DocumentId, Vec<u8>)],
                ) -> Result<(), StorageError> {
                    for (d, _) in states {
                        $crate::storage::StoreWrites::writing_doc(self, *d)?;
                    }
                    self.$field.save_sync_states(peer, states)
                }
                fn load_sync_state(
                    &self,
                    peer: &PeerId,
                    doc: DocumentId,
                ) -> Result<Option<Vec<u8>>, StorageError> {
                    self.$field.load_sync_state(peer, doc)
                }
                fn forget_peer(&mut self, peer: &PeerId) -> Result<usize, StorageError> {
                    self.$field.forget_peer(peer)
                }
            }
            impl Registry for $ty {
                fn put_store(&mut self, rec: &StoreRecord) -> Result<(), StorageError> {
                    self.$field.put_store(rec)
                }
                fn get_store(&self, id: &StoreId) -> Result<Option<StoreRecord>, StorageError> {
                    self.$field.get_store(id)
                }
                fn list_stores(&self) -> Result<Vec<StoreRecord>, StorageError> {
                    self.$field.list_stores()
                }
                fn record_store_sync(&self, seen: &[(StoreId, i64)]) -> Result<(), StorageError> {
                    for (s, _) in seen {
                        $crate::storage::StoreWrites::writing_store(self, s)?;
                    }
                    self.$field.record_store_sync(seen)
                }
                fn store_sync_times(&self) -> Result<Vec<(StoreId, i64)>, StorageError> {
                    self.$field.store_sync_times()
                }
                fn note_former_worker(
                    &mut self,
                    store: &StoreId,
                    worker: &WorkerId,
                ) -> Result<(), StorageError> {
                    $crate::storage::StoreWrites::writing_store(self, store)?;
                    self.$field.note_former_worker(store, worker)
                }
                fn former_workers(&self, store: &StoreId) -> Result<Vec<WorkerId>, StorageError> {
                    self.$field.former_workers(store)
                }
                fn put_token(
                    &mut self,
                    token_hash: [u8; 32],
                    principal: &Principal,
                    label: &str,
                    now_ms: i64,
                    expires_at_ms: Option<i64>,
                ) -> Result<(), StorageError> {
                    self.$field
                        .put_token(token_hash, principal, label, now_ms, expires_at_ms)
                }
                fn revoke_token(
                    &mut self,
                    token_hash: [u8; 32],
                    now_ms: i64,
                ) -> Result<bool, StorageError> {
                    self.$field.revoke_token(token_hash, now_ms)
                }
                fn check_token(
                    &self,
                    token_hash: [u8; 32],
                    now_ms: i64,
                ) -> Result<TokenCheck, StorageError> {
                    self.$field.check_token(token_hash, now_ms)
                }
                fn set_doc_owner(
                    &mut self,
                    doc: DocumentId,
                    store: &StoreId,
                    kind: DocKind,
                ) -> Result<(), StorageError> {
                    $crate::storage::StoreWrites::writing_store(self, store)?;
                    self.$field.set_doc_owner(doc, store, kind)
                }
                fn doc_owner(
                    &self,
                    doc: DocumentId,
                ) -> Result<Option<(StoreId, DocKind)>, StorageError> {
                    self.$field.doc_owner(doc)
                }
                fn documents_of_store(
                    &self,
                    store: &StoreId,
                ) -> Result<Vec<DocumentId>, StorageError> {
                    self.$field.documents_of_store(store)
                }
                fn actor_owner(&self, actor: &ActorId) -> Result<Option<Principal>, StorageError> {
                    self.$field.actor_owner(actor)
                }
                fn add_known_content(
                    &mut self,
                    doc: DocumentId,
                    hashes: &[ChangeHash],
                ) -> Result<(), StorageError> {
                    $crate::storage::StoreWrites::writing_doc(self, doc)?;
                    self.$field.add_known_content(doc, hashes)
                }
                fn known_content(&self, doc: DocumentId) -> Result<Vec<ChangeHash>, StorageError> {
                    self.$field.known_content(doc)
                }
                fn commit_accepted(
                    &mut self,
                    doc: DocumentId,
                    changes: &[Change],
                    new_actors: &[ActorId],
                    author: &Principal,
                ) -> Result<usize, StorageError> {
                    $crate::storage::StoreWrites::writing_doc(self, doc)?;
                    self.$field
                        .commit_accepted(doc, changes, new_actors, author)
                }
                fn claim_actor(
                    &mut self,
                    actor: &ActorId,
                    owner: &Principal,
                ) -> Result<(), StorageError> {
                    self.$field.claim_actor(actor, owner)
                }
                fn record_rejection(&mut self, rec: &RejectionRecord) -> Result<(), StorageError> {
                    self.$field.record_rejection(rec)
                }
                fn rejections(&self) -> Result<Vec<RejectionRecord>, StorageError> {
                    self.$field.rejections()
                }
            }
            impl Groups for $ty {
                fn add_to_group(
                    &mut self,
                    group: &StoreGroupId,
                    stores: &[StoreId],
                ) -> Result<(), StorageError> {
                    self.$field.add_to_group(group, stores)
                }
                fn remove_from_group(
                    &mut self,
                    group: &StoreGroupId,
                    stores: &[StoreId],
                ) -> Result<usize, StorageError> {
                    self.$field.remove_from_group(group, stores)
                }
                fn store_groups(
                    &self,
                ) -> Result<BTreeMap<StoreGroupId, Vec<StoreId>>, StorageError> {
                    self.$field.store_groups()
                }
                fn assign_template_to_groups(
                    &mut self,
                    id: TemplateId,
                    groups: &[StoreGroupId],
                ) -> Result<(), StorageError> {
                    self.$field.assign_template_to_groups(id, groups)
                }
                fn template_groups(
                    &self,
                    id: TemplateId,
                ) -> Result<Vec<StoreGroupId>, StorageError> {
                    self.$field.template_groups(id)
                }
                fn list_tokens(
                    &self,
                    principal: Option<&Principal>,
                ) -> Result<Vec<TokenInfo>, StorageError> {
                    self.$field.list_tokens(principal)
                }
                fn token_hash_by_id(&self, id: &str) -> Result<Option<[u8; 32]>, StorageError> {
                    self.$field.token_hash_by_id(id)
                }
                fn expire_token(
                    &mut self,
                    hash: [u8; 32],
                    at_ms: i64,
                ) -> Result<bool, StorageError> {
                    self.$field.expire_token(hash, at_ms)
                }
                fn token_principal(
                    &self,
                    hash: [u8; 32],
                ) -> Result<Option<Principal>, StorageError> {
                    self.$field.token_principal(hash)
                }
                fn remove_store_record(
                    &mut self,
                    store: &StoreId,
                    now_ms: i64,
                ) -> Result<usize, StorageError> {
                    $crate::storage::StoreWrites::writing_store(self, store)?;
                    self.$field.remove_store_record(store, now_ms)
                }
            }
            impl Templates for $ty {
                fn put_template(&mut self, t: &Template) -> Result<(), StorageError> {
                    self.$field.put_template(t)
                }
                fn template_revisions(
                    &self,
                    id: TemplateId,
                ) -> Result<Vec<Template>, StorageError> {
                    self.$field.template_revisions(id)
                }
                fn latest_templates(&self) -> Result<Vec<Template>, StorageError> {
                    self.$field.latest_templates()
                }
                fn assign_template(
                    &mut self,
                    id: TemplateId,
                    stores: &[StoreId],
                ) -> Result<(), StorageError> {
                    self.$field.assign_template(id, stores)
                }
                fn template_direct_stores(
                    &self,
                    id: TemplateId,
                ) -> Result<Vec<StoreId>, StorageError> {
                    self.$field.template_direct_stores(id)
                }
                fn unassign_template(
                    &mut self,
                    id: TemplateId,
                    stores: &[StoreId],
                    groups: &[StoreGroupId],
                ) -> Result<(), StorageError> {
                    self.$field.unassign_template(id, stores, groups)
                }
                fn delete_template(&mut self, id: TemplateId) -> Result<(), StorageError> {
                    self.$field.delete_template(id)
                }
                fn template_stores(&self, id: TemplateId) -> Result<Vec<StoreId>, StorageError> {
                    self.$field.template_stores(id)
                }
            }
            impl StatusIndex for $ty {
                fn index_instance(&mut self, view: &InstanceView) -> Result<(), StorageError> {
                    $crate::storage::StoreWrites::writing_store(self, &view.meta.store)?;
                    self.$field.index_instance(view)
                }
                fn update_index(
                    &mut self,
                    view: &InstanceView,
                    last: Option<&IndexedRows>,
                ) -> Result<IndexUpdate, StorageError> {
                    $crate::storage::StoreWrites::writing_store(self, &view.meta.store)?;
                    self.$field.update_index(view, last)
                }
                fn unindex_instance(&mut self, doc: DocumentId) -> Result<(), StorageError> {
                    $crate::storage::StoreWrites::writing_doc(self, doc)?;
                    self.$field.unindex_instance(doc)
                }
                fn purge_document(&mut self, doc: DocumentId) -> Result<(), StorageError> {
                    $crate::storage::StoreWrites::writing_doc(self, doc)?;
                    self.$field.purge_document(doc)
                }
                fn mark_index_due(&mut self, docs: &[DocumentId]) -> Result<(), StorageError> {
                    for d in docs {
                        $crate::storage::StoreWrites::writing_doc(self, *d)?;
                    }
                    self.$field.mark_index_due(docs)
                }
                fn index_due(&self) -> Result<Vec<DocumentId>, StorageError> {
                    self.$field.index_due()
                }
            }
            impl StatusQueries for $ty {
                fn status_by_list(
                    &self,
                    store: Option<&StoreId>,
                    now_ms: i64,
                ) -> Result<Vec<ListStatusRow>, StorageError> {
                    self.$field.status_by_list(store, now_ms)
                }
                fn status_by_list_between(
                    &self,
                    store: Option<&StoreId>,
                    from: Option<chrono::NaiveDate>,
                    to: Option<chrono::NaiveDate>,
                    now_ms: i64,
                ) -> Result<Vec<ListStatusRow>, StorageError> {
                    self.$field.status_by_list_between(store, from, to, now_ms)
                }
                fn past_due_counts(
                    &self,
                    now_ms: i64,
                ) -> Result<Vec<$crate::storage::PastDueCount>, StorageError> {
                    self.$field.past_due_counts(now_ms)
                }
                fn status_by_store_list(
                    &self,
                    from: Option<chrono::NaiveDate>,
                    to: Option<chrono::NaiveDate>,
                    now_ms: i64,
                ) -> Result<Vec<$crate::storage::StoreListRow>, StorageError> {
                    self.$field.status_by_store_list(from, to, now_ms)
                }
                fn past_due(
                    &self,
                    store: Option<&StoreId>,
                    now_ms: i64,
                    limit: u32,
                ) -> Result<Vec<PastDueRow>, StorageError> {
                    self.$field.past_due(store, now_ms, limit)
                }
                fn status_by_worker(
                    &self,
                    store: Option<&StoreId>,
                    worker: Option<&str>,
                    limit: u32,
                ) -> Result<Vec<WorkerEventRow>, StorageError> {
                    self.$field.status_by_worker(store, worker, limit)
                }
                fn report_tasks_between(
                    &self,
                    from: chrono::NaiveDate,
                    to: chrono::NaiveDate,
                ) -> Result<Vec<$crate::compliance::ReportTask>, StorageError> {
                    self.$field.report_tasks_between(from, to)
                }
                fn purge_candidates(
                    &self,
                    filter: &PurgeFilter,
                ) -> Result<Vec<(DocumentId, StoreId)>, StorageError> {
                    self.$field.purge_candidates(filter)
                }
            }
            impl HqAccounts for $ty {
                fn put_hq_user(
                    &mut self,
                    user: &$crate::hq_accounts::HqUser,
                ) -> Result<(), StorageError> {
                    self.$field.put_hq_user(user)
                }
                fn hq_user(
                    &self,
                    id: &HqUserId,
                ) -> Result<Option<$crate::hq_accounts::HqUser>, StorageError> {
                    self.$field.hq_user(id)
                }
                fn hq_users(&self) -> Result<Vec<$crate::hq_accounts::HqUser>, StorageError> {
                    self.$field.hq_users()
                }
                fn put_personal_token(
                    &mut self,
                    token_hash: [u8; 32],
                    user: &HqUserId,
                    label: &str,
                    now_ms: i64,
                    expires_at_ms: Option<i64>,
                ) -> Result<(), StorageError> {
                    self.$field
                        .put_personal_token(token_hash, user, label, now_ms, expires_at_ms)
                }
                fn check_personal_token(
                    &self,
                    token_hash: [u8; 32],
                    now_ms: i64,
                ) -> Result<$crate::hq_accounts::PersonalTokenCheck, StorageError> {
                    self.$field.check_personal_token(token_hash, now_ms)
                }
                fn personal_tokens(
                    &self,
                    user: Option<&HqUserId>,
                ) -> Result<Vec<$crate::hq_accounts::PersonalTokenInfo>, StorageError> {
                    self.$field.personal_tokens(user)
                }
                fn revoke_personal_token(
                    &mut self,
                    id: &str,
                    user: Option<&HqUserId>,
                    now_ms: i64,
                ) -> Result<bool, StorageError> {
                    self.$field.revoke_personal_token(id, user, now_ms)
                }
                fn revoke_personal_tokens_of(
                    &mut self,
                    user: &HqUserId,
                    now_ms: i64,
                ) -> Result<usize, StorageError> {
                    self.$field.revoke_personal_tokens_of(user, now_ms)
                }
                fn append_audit(
                    &mut self,
                    entry: &$crate::hq_accounts::AuditEntry,
                ) -> Result<(), StorageError> {
                    self.$field.append_audit(entry)
                }
                fn audit(
                    &self,
                    query: &$crate::hq_accounts::AuditQuery,
                ) -> Result<Vec<$crate::hq_accounts::AuditEntry>, StorageError> {
                    self.$field.audit(query)
                }
            }
            impl Replica for $ty {
                fn actor_id(&self) -> ActorId {
                    self.$field.actor_id()
                }
                fn reset_actor(&mut self, new: [u8; 16]) -> Result<(), StorageError> {
                    self.$field.reset_actor(new)
                }
                fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
                    self.$field.get_meta(key)
                }
                fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StorageError> {
                    self.$field.set_meta(key, value)
                }
                fn release_free_pages(&mut self) -> Result<i64, StorageError> {
                    self.$field.release_free_pages()
                }
                fn location(&self) -> String {
                    self.$field.location()
                }
            }
        };
    };
}
