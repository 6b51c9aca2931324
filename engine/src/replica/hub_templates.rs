//! HQ templates at the hub: store revisions, assign to stores, and keep a
//! horizon of instances materialized in every assigned store's local time.
//! Editing a template updates the future instances already made (their
//! HQ-authored fields only: status logs and store assignments stay).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, TimeZone, Utc};

use super::hub::{Hub, HubError};
use super::Output;
use crate::document::directory::{self, DirectoryTemplate};
use crate::document::instance;
use crate::ids::{DocumentId, StoreId, TemplateId};
use crate::model::{InstanceContent, ModelError};
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
        let found = self.indexed_store().purge_candidates(filter)?;
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
            self.store_mut().purge_document(doc)?;
        }
        if report.count > 0 {
            if let Err(e) = self.store_mut().release_free_pages() {
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

    /// Save a template as its next revision (the hub numbers revisions).
    pub fn put_template(&mut self, mut t: Template) -> Result<Template, HubError> {
        t.validate()?;
        let latest = self
            .store()
            .template_revisions(t.id)?
            .last()
            .map(|l| l.revision)
            .unwrap_or(0);
        t.revision = latest + 1;
        self.store_mut().put_template(&t)?;
        Ok(t)
    }

    /// Assign a template to stores (all must exist).
    pub fn assign_template(&mut self, id: TemplateId, stores: &[StoreId]) -> Result<(), HubError> {
        if self.store().template_revisions(id)?.is_empty() {
            return Err(HubError::Model(ModelError::BadField {
                field: "template",
                reason: format!("unknown template {id}; create it first"),
            }));
        }
        for s in stores {
            if self.store().get_store(s)?.is_none() {
                return Err(HubError::UnknownStore(s.clone()));
            }
        }
        self.store_mut().assign_template(id, stores)?;
        Ok(())
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
        for t in self.store().latest_templates()? {
            let revisions = self.store().template_revisions(t.id)?;
            for store_id in self.store().template_stores(t.id)? {
                let Some(rec) = self.store().get_store(&store_id)? else {
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
        self.store_mut().add_known_content(content.id, &known)?;
        if self.store().doc_owner(content.id)?.is_none() {
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
