//! HQ templates at the hub: store revisions, assign to stores, and keep a
//! horizon of instances materialized in every assigned store's local time.
//! Editing a template updates the future instances already made (their
//! HQ-authored fields only: status logs and store assignments stay).
//! Taking a template off a store, or deleting it, withdraws the future
//! lists nobody started and keeps the rest (see `withdraw`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{Duration, TimeZone, Utc};

use super::hub::{Hub, HubError};
use super::Output;
use crate::document::directory::{self, DirectoryTemplate};
use crate::document::instance;
use crate::ids::{DocumentId, StoreGroupId, StoreId, TemplateId, WorkerId};
use crate::model::{Assignee, InstanceContent, ModelError};
use crate::template::{Template, TemplateError};

/// Days ahead the hub keeps instances materialized (DESIGN: 14).
pub const DEFAULT_HORIZON_DAYS: i64 = 14;

impl From<TemplateError> for HubError {
    fn from(e: TemplateError) -> Self {
        match e {
            TemplateError::Model(m) => HubError::Model(m),
            other => HubError::Model(ModelError::BadField {
                field: "template",
                reason: other.to_string(),
            }),
        }
    }
}

/// What taking a template off stores, or deleting it, did to their lists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TemplateRemoval {
    pub template: TemplateId,
    /// Stores the template no longer reaches.
    pub stores: Vec<StoreId>,
    /// Future lists nobody had started: out of their store's directory
    /// (terminals delete their copies) and deleted at the hub.
    pub withdrawn: Vec<DocumentId>,
    /// Lists of the template from today on that stay: today's, and any
    /// with status recorded.
    pub kept: Vec<DocumentId>,
}

fn unknown_template(id: TemplateId) -> HubError {
    HubError::Model(ModelError::BadField {
        field: "template",
        reason: format!("unknown template {id}; `hub lists templates` lists them"),
    })
}

/// What a bulk delete did (or, as a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PurgeReport {
    pub dry_run: bool,
    pub count: usize,
    pub documents: Vec<DocumentId>,
}

impl Hub {
    /// Bulk delete (retention): instances matching `filter` leave their
    /// store's directory (pushed to connected terminals, which then delete
    /// their copies) and are deleted at the hub. With `dry_run`, only
    /// counts. A recurring instance inside the materialization horizon would
    /// be made again by the next tick; retention is for the past.
    pub fn purge(
        &mut self,
        filter: &crate::storage::PurgeFilter,
        dry_run: bool,
        now_ms: i64,
    ) -> Result<(PurgeReport, Vec<Output>), HubError> {
        let mut found = self.indexed_store().purge_candidates(filter)?;
        // In a cluster, each node deletes its own stores' lists.
        found.retain(|(_, store)| self.serves(store));
        let report = PurgeReport {
            dry_run,
            count: found.len(),
            documents: found.iter().map(|(d, _)| *d).collect(),
        };
        if dry_run {
            return Ok((report, Vec::new()));
        }
        let mut out = Vec::new();
        for (doc, store) in found {
            let dir = DocumentId::directory_of(&store);
            out.extend(self.edit(dir, now_ms, |d| {
                Ok(directory::remove_entry(d, doc, now_ms)?
                    .into_iter()
                    .collect())
            })?);
            self.forget_document(doc);
            self.db_mut().purge_document(doc)?;
        }
        if report.count > 0 {
            if let Err(e) = self.db_mut().release_free_pages() {
                tracing::warn!(error = %e, "could not release free pages after a purge");
            }
        }
        Ok((report, out))
    }

    /// Delete lists dated more than `days` before today (UTC date; a store
    /// a day off UTC keeps its list a day longer or shorter). Returns how
    /// many went and the directory edits to deliver.
    pub fn apply_retention(
        &mut self,
        now_ms: i64,
        days: i64,
    ) -> Result<(usize, Vec<Output>), HubError> {
        let today = Utc
            .timestamp_millis_opt(now_ms)
            .single()
            .unwrap_or_else(Utc::now)
            .date_naive();
        let filter = crate::storage::PurgeFilter {
            before: Some(today - Duration::days(days)),
            ..Default::default()
        };
        let (report, out) = self.purge(&filter, false, now_ms)?;
        if report.count > 0 {
            tracing::info!(count = report.count, days, "retention deleted old lists");
        }
        Ok((report.count, out))
    }

    /// `apply_retention` with the configured `HubLimits::retention_days`.
    pub fn apply_retention_policy(&mut self, now_ms: i64) -> Result<Vec<Output>, HubError> {
        match self.limits().retention_days {
            Some(days) => Ok(self.apply_retention(now_ms, days)?.1),
            None => Ok(Vec::new()),
        }
    }

    /// Save a template as its next revision (the hub numbers revisions),
    /// checked against the stores it is assigned to already.
    pub fn put_template(&mut self, t: Template) -> Result<Template, HubError> {
        self.save_template(t, &[], &[])
    }

    /// Save a template as its next revision and assign it to `stores` and
    /// `groups`: everything is checked first (the template, every store
    /// and group, its `worker:` assignees against the rosters), then
    /// written in one transaction, so a refused request leaves nothing.
    pub fn save_template(
        &mut self,
        mut t: Template,
        stores: &[StoreId],
        groups: &[StoreGroupId],
    ) -> Result<Template, HubError> {
        t.validate()?;
        self.check_template_targets(&t, stores, groups)?;
        let latest = self
            .db()
            .template_revisions(t.id)?
            .last()
            .map(|l| l.revision)
            .unwrap_or(0);
        t.revision = latest + 1;
        let (r, _) = self.batched(|hub| {
            hub.db_mut().put_template(&t)?;
            hub.db_mut().assign_template(t.id, stores)?;
            hub.db_mut().assign_template_to_groups(t.id, groups)?;
            Ok(((), Vec::new()))
        });
        r.map(|()| t)
    }

    /// Assign a template to stores (all must exist).
    pub fn assign_template(&mut self, id: TemplateId, stores: &[StoreId]) -> Result<(), HubError> {
        self.assign_template_to(id, stores, &[])
    }

    /// Assign a template to `stores` and to store `groups` (every store in
    /// them now and every store added later): all checked, then written in
    /// one transaction.
    pub fn assign_template_to(
        &mut self,
        id: TemplateId,
        stores: &[StoreId],
        groups: &[StoreGroupId],
    ) -> Result<(), HubError> {
        let t = self.latest_template(id)?;
        self.check_template_targets(&t, stores, groups)?;
        let (r, _) = self.batched(|hub| {
            hub.db_mut().assign_template(id, stores)?;
            hub.db_mut().assign_template_to_groups(id, groups)?;
            Ok(((), Vec::new()))
        });
        r
    }

    /// The latest revision of template `id`.
    pub fn latest_template(&self, id: TemplateId) -> Result<Template, HubError> {
        self.db()
            .template_revisions(id)?
            .pop()
            .ok_or_else(|| unknown_template(id))
    }

    /// Can `t` go to `stores` and `groups` on top of where it goes now?
    /// Every store and group must exist. A `worker:` assignee must be on
    /// the roster of every store the template reaches by name; a template
    /// for store groups may not name a worker at all: a worker id belongs
    /// to one store's roster, and a group gains stores later, whose
    /// rosters nobody checked (use a role or worker group there).
    fn check_template_targets(
        &mut self,
        t: &Template,
        stores: &[StoreId],
        groups: &[StoreGroupId],
    ) -> Result<(), HubError> {
        for s in stores {
            self.require_store(s)?;
        }
        if !groups.is_empty() {
            let known = self.db().store_groups()?;
            let unknown: Vec<&str> = groups
                .iter()
                .filter(|g| !known.contains_key(*g))
                .map(|g| g.as_str())
                .collect();
            if !unknown.is_empty() {
                let valid = if known.is_empty() {
                    "there are no store groups yet".to_owned()
                } else {
                    let names: Vec<&str> = known.keys().map(|g| g.as_str()).collect();
                    format!("the store groups are {}", names.join(", "))
                };
                return Err(ModelError::BadField {
                    field: "groups",
                    reason: format!(
                        "unknown store group {}; {valid} (a group is made by putting a store in it: `hub groups add --group G --store S`)",
                        unknown.join(", ")
                    ),
                }
                .into());
            }
        }
        let named: Vec<(usize, WorkerId)> = t
            .tasks
            .iter()
            .enumerate()
            .filter_map(|(i, task)| match &task.assignee {
                Some(Assignee::Worker(w)) => Some((i + 1, w.clone())),
                _ => None,
            })
            .collect();
        let Some((i, w)) = named.first() else {
            return Ok(());
        };
        if !groups.is_empty() || !self.db().template_groups(t.id)?.is_empty() {
            return Err(ModelError::BadField {
                field: "assignee",
                reason: format!(
                    "task {i}: a list for store groups cannot be assigned to worker:{w}: a worker id \
                     belongs to one store's roster, and stores joining the group later have other \
                     workers; assign the task to a role or worker group (e.g. group:cashier) instead"
                ),
            }
            .into());
        }
        let mut targets: BTreeSet<StoreId> = self
            .db()
            .template_direct_stores(t.id)?
            .into_iter()
            .collect();
        targets.extend(stores.iter().cloned());
        for s in &targets {
            self.check_worker_assignees(s, &named)?;
        }
        Ok(())
    }

    /// Take template `id` off `stores` and store `groups`. The stores it no
    /// longer reaches (a store may still get it through another group)
    /// lose it from their directory and have its future lists withdrawn
    /// (`withdraw`). Everything named must be assigned now.
    pub fn unassign_template(
        &mut self,
        id: TemplateId,
        stores: &[StoreId],
        groups: &[StoreGroupId],
        now_ms: i64,
    ) -> Result<(TemplateRemoval, Vec<Output>), HubError> {
        let t = self.latest_template(id)?;
        if stores.is_empty() && groups.is_empty() {
            return Err(ModelError::BadField {
                field: "stores",
                reason: "name at least one store or store group to take the template off".into(),
            }
            .into());
        }
        let direct = self.db().template_direct_stores(id)?;
        let assigned_groups = self.db().template_groups(id)?;
        let assignments = || {
            let mut v: Vec<String> = direct.iter().map(|s| format!("store {s}")).collect();
            v.extend(assigned_groups.iter().map(|g| format!("group {g}")));
            if v.is_empty() {
                "it is assigned nowhere".to_owned()
            } else {
                format!("it is assigned to {}", v.join(", "))
            }
        };
        let not_assigned: Vec<String> = stores
            .iter()
            .filter(|s| !direct.contains(s))
            .map(|s| format!("store {s}"))
            .chain(
                groups
                    .iter()
                    .filter(|g| !assigned_groups.contains(g))
                    .map(|g| format!("group {g}")),
            )
            .collect();
        if !not_assigned.is_empty() {
            return Err(ModelError::BadField {
                field: "stores",
                reason: format!(
                    "template {id} is not assigned to {}; {}",
                    not_assigned.join(", "),
                    assignments()
                ),
            }
            .into());
        }
        let before: BTreeSet<StoreId> = self.db().template_stores(id)?.into_iter().collect();
        let members = self.db().store_groups()?;
        let mut after: BTreeSet<StoreId> = direct
            .iter()
            .filter(|s| !stores.contains(s))
            .cloned()
            .collect();
        for g in assigned_groups.iter().filter(|g| !groups.contains(g)) {
            after.extend(members.get(g).into_iter().flatten().cloned());
        }
        let gone: Vec<StoreId> = before.difference(&after).cloned().collect();
        let (r, out) = self.batched(|hub| {
            // Withdrawn first: if that fails part-way the template is still
            // assigned, and the next materialization makes the lists again.
            let (removal, out) = hub.withdraw(t.id, &gone, now_ms)?;
            hub.db_mut().unassign_template(id, stores, groups)?;
            Ok((removal, out))
        });
        r.map(|removal| (removal, out))
    }

    /// Delete template `id`: every revision and assignment. Each store it
    /// reached loses it from its directory (so no terminal makes its
    /// lists offline any more) and has its future lists withdrawn
    /// (`withdraw`); lists already under way and past lists stay.
    pub fn delete_template(
        &mut self,
        id: TemplateId,
        now_ms: i64,
    ) -> Result<(TemplateRemoval, Vec<Output>), HubError> {
        let t = self.latest_template(id)?;
        let reached = self.db().template_stores(id)?;
        let (r, out) = self.batched(|hub| {
            let (removal, out) = hub.withdraw(t.id, &reached, now_ms)?;
            hub.db_mut().delete_template(id)?;
            Ok((removal, out))
        });
        r.map(|removal| (removal, out))
    }

    /// Template `t` no longer reaches `stores`: drop it from their
    /// directories, and withdraw its lists dated after today (store-local)
    /// that nobody recorded status on, like a purge: out of the directory
    /// (terminals delete their copies) and deleted at the hub. Today's list
    /// stays (terminals are working on it; `hub purge` deletes it if
    /// wanted), and so does every list with status recorded: status
    /// history is never deleted as a side effect.
    fn withdraw(
        &mut self,
        t: TemplateId,
        stores: &[StoreId],
        now_ms: i64,
    ) -> Result<(TemplateRemoval, Vec<Output>), HubError> {
        let now = Utc
            .timestamp_millis_opt(now_ms)
            .single()
            .unwrap_or_else(Utc::now);
        let days = self.limits().horizon_days + 1;
        let mut removal = TemplateRemoval {
            template: t,
            stores: stores.to_vec(),
            withdrawn: Vec::new(),
            kept: Vec::new(),
        };
        let mut out = Vec::new();
        for store in stores {
            // Another node's (or replica thread's) store: it withdraws the
            // lists when its materialization finds the template gone
            // (`withdraw_templates_gone`).
            if !self.serves(store) {
                continue;
            }
            let Some(rec) = self.db().get_store(store)? else {
                continue;
            };
            let tz =
                crate::recurrence::parse_time_zone(&rec.time_zone).map_err(TemplateError::from)?;
            let today = now.with_timezone(&tz).date_naive();
            let dir = DocumentId::directory_of(store);
            out.extend(self.edit(dir, now_ms, |d| {
                Ok(directory::remove_template(d, t, now_ms)?
                    .into_iter()
                    .collect())
            })?);
            for day in 0..=days {
                let doc = DocumentId::recurring_instance(t, store, today + Duration::days(day));
                if self.db().doc_owner(doc)?.is_none() {
                    continue;
                }
                let view = instance::read(self.document(doc)?)?;
                let untouched = view.tasks.iter().all(|t| t.status.history.is_empty());
                if day == 0 || !untouched {
                    removal.kept.push(doc);
                    continue;
                }
                out.extend(self.edit(dir, now_ms, |d| {
                    Ok(directory::remove_entry(d, doc, now_ms)?
                        .into_iter()
                        .collect())
                })?);
                self.forget_document(doc);
                self.db_mut().purge_document(doc)?;
                removal.withdrawn.push(doc);
            }
        }
        Ok((removal, out))
    }

    /// `materialize` over the configured horizon (`HubLimits::horizon_days`).
    pub fn materialize_horizon(&mut self, now_ms: i64) -> Result<Vec<Output>, HubError> {
        let days = self.limits().horizon_days;
        self.materialize(now_ms, days)
    }

    /// Materialize every assigned template's occurrences from today to
    /// `horizon_days` ahead in each store's local time; bring instances
    /// made from an older revision up to date; give each store's directory
    /// the templates it may materialize offline. Idempotent: call it on a
    /// timer.
    pub fn materialize(&mut self, now_ms: i64, horizon_days: i64) -> Result<Vec<Output>, HubError> {
        let mut out = Vec::new();
        let now = Utc
            .timestamp_millis_opt(now_ms)
            .single()
            .unwrap_or_else(Utc::now);
        let mut reach: HashMap<StoreId, HashSet<TemplateId>> = HashMap::new();
        for t in self.db().latest_templates()? {
            let revisions = self.db().template_revisions(t.id)?;
            for store_id in self.db().template_stores(t.id)? {
                // Another node's store: that node materializes it.
                if !self.serves(&store_id) {
                    continue;
                }
                reach.entry(store_id.clone()).or_default().insert(t.id);
                let Some(rec) = self.db().get_store(&store_id)? else {
                    continue;
                };
                let tz = crate::recurrence::parse_time_zone(&rec.time_zone)
                    .map_err(TemplateError::from)?;
                let today = now.with_timezone(&tz).date_naive();
                let contents = t.instances_between(
                    &store_id,
                    &rec.time_zone,
                    today,
                    today + Duration::days(horizon_days),
                )?;
                for content in contents {
                    // One instance that cannot be brought up to date must
                    // not stop every other store's lists from being made.
                    match self.ensure_instance(&content, &revisions, now_ms) {
                        Ok(o) => out.extend(o),
                        Err(e) => {
                            tracing::warn!(doc = %content.id, error = %e, "could not materialize instance")
                        }
                    }
                }
                out.extend(self.ensure_directory_template(
                    &store_id,
                    &t,
                    &rec.time_zone,
                    now_ms,
                )?);
            }
        }
        out.extend(self.withdraw_templates_gone(&reach, now_ms)?);
        Ok(out)
    }

    /// In a cluster: templates taken off a store this hub serves, or
    /// deleted, through another node or replica thread (which withdraws
    /// only its own stores' lists) are still in the store's directory
    /// here; withdraw them now as `withdraw` does. `reach` is which
    /// templates reach each served store. Outside a cluster the hub that
    /// took the template off did this already, and nothing is left.
    fn withdraw_templates_gone(
        &mut self,
        reach: &HashMap<StoreId, HashSet<TemplateId>>,
        now_ms: i64,
    ) -> Result<Vec<Output>, HubError> {
        if !self.serves_some_stores_only() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for rec in self.db().list_stores()? {
            if !self.serves(&rec.id) {
                continue;
            }
            let dir = DocumentId::directory_of(&rec.id);
            if self.db().doc_owner(dir)?.is_none() {
                continue;
            }
            let held: Vec<TemplateId> = directory::read(self.document(dir)?)?
                .templates
                .into_keys()
                .collect();
            let none = HashSet::new();
            let reaching = reach.get(&rec.id).unwrap_or(&none);
            for t in held.into_iter().filter(|t| !reaching.contains(t)) {
                tracing::info!(store = %rec.id, template = %t, "withdrawing a template taken off elsewhere");
                out.extend(self.withdraw(t, std::slice::from_ref(&rec.id), now_ms)?.1);
            }
        }
        Ok(out)
    }

    /// Make `content`'s instance if missing, else update its HQ fields.
    fn ensure_instance(
        &mut self,
        content: &InstanceContent,
        revisions: &[Template],
        now_ms: i64,
    ) -> Result<Vec<Output>, HubError> {
        // Content any revision would have produced for this date: an offline
        // agent holding an older revision makes it, and it must be accepted.
        let mut known = Vec::new();
        let store = content.meta.store.clone();
        for r in revisions {
            let tz = &content.meta.time_zone;
            for c in r.instances_between(&store, tz, content.meta.date, content.meta.date)? {
                if c.id == content.id {
                    known.extend(instance::materialize(&c)?.iter().map(|ch| ch.hash()));
                }
            }
        }
        self.db_mut().add_known_content(content.id, &known)?;
        if self.db().doc_owner(content.id)?.is_none() {
            return self.publish(content, now_ms);
        }
        self.reconcile(content, now_ms)
    }

    /// Bring an existing instance's HQ-authored task fields to `content`:
    /// changed tasks updated (keeping the store's assignee), new tasks
    /// added, removed tasks deleted if nobody recorded status on them.
    fn reconcile(
        &mut self,
        content: &InstanceContent,
        now_ms: i64,
    ) -> Result<Vec<Output>, HubError> {
        let view = instance::read(self.document(content.id)?)?;
        let current: BTreeMap<_, _> = view.tasks.iter().map(|t| (t.spec.id, t)).collect();
        let wanted: BTreeSet<_> = content.tasks.iter().map(|t| t.id).collect();
        let mut out = Vec::new();
        for spec in &content.tasks {
            match current.get(&spec.id) {
                Some(t) => {
                    let mut target = spec.clone();
                    target.assignee = t.spec.assignee.clone();
                    if t.spec != target {
                        out.extend(self.edit(content.id, now_ms, |d| {
                            Ok(instance::update_task(d, &target, now_ms)?
                                .into_iter()
                                .collect())
                        })?);
                    }
                }
                None => out.extend(
                    self.edit(content.id, now_ms, |d| instance::add_task(d, spec, now_ms))?,
                ),
            }
        }
        for (id, t) in &current {
            if !wanted.contains(id)
                && t.status.history.is_empty()
                && t.spec.created_by == crate::model::CreatedBy::Hq
            {
                let id = *id;
                out.extend(self.edit(content.id, now_ms, |d| {
                    Ok(instance::remove_task(d, id, now_ms)?.into_iter().collect())
                })?);
            }
        }
        Ok(out)
    }

    fn ensure_directory_template(
        &mut self,
        store: &StoreId,
        t: &Template,
        time_zone: &str,
        now_ms: i64,
    ) -> Result<Vec<Output>, HubError> {
        let dir_id = DocumentId::directory_of(store);
        let entry = DirectoryTemplate {
            template: t.clone(),
            time_zone: time_zone.to_owned(),
        };
        let json = serde_json::to_string(&entry).expect("templates serialize");
        let view = directory::read(self.document(dir_id)?)?;
        if view.templates.get(&t.id) == Some(&json) {
            return Ok(Vec::new());
        }
        self.edit(dir_id, now_ms, |d| {
            Ok(directory::put_template(d, t.id, &json, now_ms)?
                .into_iter()
                .collect())
        })
    }
}
