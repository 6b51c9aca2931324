//! HQ's administration of stores at the hub: the worker roster each store
//! syncs (in its directory), store groups, store updates and removal, and
//! token listing and expiry. Template and list operations live in
//! `hub_templates`.

use std::collections::BTreeMap;

use super::hub::{token_hash, Hub, HubError};
use super::Output;
use crate::document::directory::{self, RosterWorker};
use crate::ids::{DocumentId, Principal, StoreGroupId, StoreId, TemplateId, WorkerId};
use crate::model::ModelError;
use crate::storage::{StoreRecord, TokenInfo};

/// What removing a store took away.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RemovedStore {
    pub store: StoreId,
    pub tokens_revoked: usize,
    pub documents_deleted: usize,
}

impl Hub {
    pub(crate) fn require_store(&self, store: &StoreId) -> Result<StoreRecord, HubError> {
        self.db()
            .get_store(store)?
            .ok_or_else(|| HubError::UnknownStore(store.clone()))
    }

    /// The store's workers as its directory holds them.
    pub fn roster(
        &mut self,
        store: &StoreId,
    ) -> Result<BTreeMap<WorkerId, RosterWorker>, HubError> {
        self.require_store(store)?;
        let dir = DocumentId::directory_of(store);
        Ok(directory::read(self.document(dir)?)?.roster)
    }

    /// Register as `store`'s the lists its directory says it created at a
    /// terminal (ad-hoc lists), so the hub accepts their documents. Only
    /// random (v4) ids nobody owns yet: recurring instances have v5 ids a
    /// store could compute for another store, and must not be squatted.
    pub(crate) fn adopt_store_lists(&mut self, dir: DocumentId, store: &StoreId) {
        let view = match self.document(dir).map(directory::read) {
            Ok(Ok(v)) => v,
            _ => return,
        };
        let mine = crate::model::CreatedBy::Store(store.clone());
        for (id, entry) in view.entries {
            if entry.created_by != mine || id.0.get_version_num() != 4 {
                continue;
            }
            match self.db().doc_owner(id) {
                Ok(None) => {
                    // Its genesis is deterministic: the hub holds it from
                    // now on, and the terminal's sync brings the rest.
                    let kind = crate::document::DocKind::Instance;
                    let g = crate::document::genesis::genesis(id, kind);
                    let adopted = self
                        .db_mut()
                        .append_changes(id, &[g])
                        .and_then(|_| self.db_mut().set_doc_owner(id, store, kind));
                    if let Err(e) = adopted {
                        tracing::warn!(doc = %id, error = %e, "could not adopt a store's list");
                    } else {
                        tracing::info!(doc = %id, %store, "store created a list at a terminal");
                    }
                }
                Ok(Some(_)) => {}
                Err(e) => tracing::warn!(doc = %id, error = %e, "could not check a list's owner"),
            }
        }
    }

    /// Add or update a worker on a store's roster; it reaches the store's
    /// terminals with the directory (pushed to connected ones now).
    pub fn put_worker(
        &mut self,
        store: &StoreId,
        worker: &WorkerId,
        rec: &RosterWorker,
        now_ms: i64,
    ) -> Result<Vec<Output>, HubError> {
        self.require_store(store)?;
        if rec.name.trim().is_empty() {
            return Err(ModelError::BadField {
                field: "name",
                reason: "a worker needs a name".into(),
            }
            .into());
        }
        if let Some(p) = &rec.pin {
            p.parse::<directory::PinHash>()?;
        }
        let dir = DocumentId::directory_of(store);
        self.edit(dir, now_ms, |d| {
            directory::put_worker(d, worker, rec, now_ms)
        })
    }

    /// Take a worker off a store's roster. `false` if they were not on it.
    /// Their past status events stay (they are history).
    pub fn remove_worker(
        &mut self,
        store: &StoreId,
        worker: &WorkerId,
        now_ms: i64,
    ) -> Result<(bool, Vec<Output>), HubError> {
        self.require_store(store)?;
        // First, so a terminal's events by them are never refused for a
        // moment: they stay known to validation (`Hub::workers_of`).
        let dir = DocumentId::directory_of(store);
        if directory::roster_ids(self.document(dir)?).contains(worker) {
            self.db_mut().note_former_worker(store, worker)?;
        }
        let mut removed = false;
        let out = self.edit(dir, now_ms, |d| {
            let c = directory::remove_worker(d, worker, now_ms)?;
            removed = c.is_some();
            Ok(c.into_iter().collect())
        })?;
        Ok((removed, out))
    }

    /// Set a store's locale (`de-DE`): it travels in the store's
    /// directory, like its roster, so the terminals pick their language
    /// and formats from it offline too.
    pub fn set_store_locale(
        &mut self,
        store: &StoreId,
        locale: &str,
        now_ms: i64,
    ) -> Result<Vec<Output>, HubError> {
        self.require_store(store)?;
        self.require_served(store)?;
        let dir = DocumentId::directory_of(store);
        self.edit(dir, now_ms, |d| {
            Ok(directory::put_locale(d, locale, now_ms)?
                .into_iter()
                .collect())
        })
    }

    /// The store's locale as its directory carries it ([`Self::set_store_locale`]),
    /// or [`directory::DEFAULT_LOCALE`] for a store HQ gave none.
    pub fn store_locale(&mut self, store: &StoreId) -> Result<String, HubError> {
        let dir = DocumentId::directory_of(store);
        // In a cluster, a store just added has no directory until the node
        // that takes it makes one: it speaks the default until then.
        if self.db().doc_owner(dir)?.is_none() {
            return Ok(directory::DEFAULT_LOCALE.to_owned());
        }
        Ok(directory::read(self.document(dir)?)?
            .locale
            .unwrap_or_else(|| directory::DEFAULT_LOCALE.to_owned()))
    }

    /// Change an existing store's name or time zone. Recurring lists
    /// follow the new zone at the next materialization.
    pub fn update_store(&mut self, rec: &StoreRecord) -> Result<(), HubError> {
        self.require_store(&rec.id)?;
        self.add_store(rec)
    }

    /// Remove a store: revoke its tokens, close its connections, drop its
    /// assignments and group memberships, and delete its documents (its
    /// lists, their status history and its directory) from the hub.
    pub fn remove_store(
        &mut self,
        store: &StoreId,
        now_ms: i64,
    ) -> Result<(RemovedStore, Vec<Output>), HubError> {
        self.require_store(store)?;
        let out = self.close_principal(&Principal::Store(store.clone()), "the store was removed");
        let tokens_revoked = self.db_mut().remove_store_record(store, now_ms)?;
        let docs = self.db().documents_of_store(store)?;
        for d in &docs {
            self.forget_document(*d);
            self.db_mut().purge_document(*d)?;
        }
        Ok((
            RemovedStore {
                store: store.clone(),
                tokens_revoked,
                documents_deleted: docs.len(),
            },
            out,
        ))
    }

    /// Put stores into a group (all must exist).
    pub fn add_to_group(
        &mut self,
        group: &StoreGroupId,
        stores: &[StoreId],
    ) -> Result<(), HubError> {
        for s in stores {
            self.require_store(s)?;
        }
        Ok(self.db_mut().add_to_group(group, stores)?)
    }

    pub fn remove_from_group(
        &mut self,
        group: &StoreGroupId,
        stores: &[StoreId],
    ) -> Result<usize, HubError> {
        Ok(self.db_mut().remove_from_group(group, stores)?)
    }

    /// Assign a template to store groups: every store in them now, and
    /// every store added later.
    pub fn assign_template_to_groups(
        &mut self,
        id: TemplateId,
        groups: &[StoreGroupId],
    ) -> Result<(), HubError> {
        self.assign_template_to(id, &[], groups)
    }

    /// Every `worker:` assignee in `named` (task number, worker) must be
    /// on `store`'s roster: a task for nobody would sit unclaimed. The
    /// error lists the roster, so a typo is easy to see.
    pub fn check_worker_assignees(
        &mut self,
        store: &StoreId,
        named: &[(usize, WorkerId)],
    ) -> Result<(), HubError> {
        if named.is_empty() {
            return Ok(());
        }
        let roster = self.roster(store)?;
        let Some((i, w)) = named.iter().find(|(_, w)| !roster.contains_key(w)) else {
            return Ok(());
        };
        /// Workers named in the answer; the rest are counted.
        const NAMED: usize = 20;
        let reason = if roster.is_empty() {
            format!(
                "task {i}: worker:{w} is not on the roster of store {store}, which has no workers yet; \
                 add them first (`hub workers add --store {store} ...`)"
            )
        } else {
            let mut ids: Vec<&str> = roster.keys().take(NAMED).map(|k| k.as_str()).collect();
            let more = roster.len().saturating_sub(NAMED);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            ids.sort_unstable();
            format!(
                "task {i}: worker:{w} is not on the roster of store {store}; its workers are {}{more} \
                 (`hub workers list --store {store}`)",
                ids.join(", ")
            )
        };
        Err(ModelError::BadField {
            field: "assignee",
            reason,
        }
        .into())
    }

    pub fn list_tokens(&self, store: Option<&StoreId>) -> Result<Vec<TokenInfo>, HubError> {
        let p = store.map(|s| Principal::Store(s.clone()));
        Ok(self.db().list_tokens(p.as_ref())?)
    }

    /// Expire a token (by its listed id) at `at_ms`; if that is now or
    /// earlier, its live connections are closed. `None`: no such token.
    pub fn expire_token_by_id(
        &mut self,
        id: &str,
        at_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Vec<Output>>, HubError> {
        let Some(hash) = self.db().token_hash_by_id(id)? else {
            return Ok(None);
        };
        if !self.db_mut().expire_token(hash, at_ms)? {
            return Ok(None);
        }
        Ok(Some(if at_ms <= now_ms {
            self.close_token_holder(hash, "token expired")?
        } else {
            Vec::new()
        }))
    }

    /// Revoke a token given by its listed id; closes its live connections.
    pub fn revoke_token_by_id(
        &mut self,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<Vec<Output>>, HubError> {
        let Some(hash) = self.db().token_hash_by_id(id)? else {
            return Ok(None);
        };
        if !self.db_mut().revoke_token(hash, now_ms)? {
            return Ok(None);
        }
        Ok(Some(self.close_token_holder(hash, "token revoked")?))
    }

    /// Revoke a token given in full; closes its live connections.
    pub fn revoke_token(
        &mut self,
        token: &str,
        now_ms: i64,
    ) -> Result<Option<Vec<Output>>, HubError> {
        let hash = token_hash(token);
        if !self.db_mut().revoke_token(hash, now_ms)? {
            return Ok(None);
        }
        Ok(Some(self.close_token_holder(hash, "token revoked")?))
    }

    /// Another hub node of the cluster revoked or expired the token with
    /// this hash: close its holders here too, as `revoke_token` does.
    pub fn token_ended_elsewhere(&mut self, hash: [u8; 32]) -> Result<Vec<Output>, HubError> {
        self.close_token_holder(hash, "the token was revoked or expired")
    }

    /// Connections do not remember which token opened them, so every
    /// connection of the token's principal is closed; holders of other
    /// valid tokens reconnect at once.
    fn close_token_holder(
        &mut self,
        hash: [u8; 32],
        reason: &str,
    ) -> Result<Vec<Output>, HubError> {
        Ok(match self.db().token_principal(hash)? {
            Some(p @ Principal::Store(_)) => self.close_principal(&p, reason),
            _ => Vec::new(),
        })
    }
}
