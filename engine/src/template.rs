//! HQ list templates: a list definition with a recurrence, turned into the
//! exact instance content of one occurrence in one store.
//!
//! Everything here is a pure function of (template revision, store, time
//! zone, occurrence), so the hub and an offline agent holding the same
//! revision materialize byte-identical documents (DESIGN rule 5 and the
//! content-change invariant in ARCHITECTURE.md). Task ids inside an
//! instance are UUIDv5 of (instance, template task key): stable across
//! replicas and unique across instances.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{DocumentId, StoreId, TaskId, TemplateId};
use crate::model::{
    Assignee, CreatedBy, InstanceContent, Link, ListMeta, ModelError, Priority, TaskSpec,
};
use crate::recurrence::{self, Occurrence, Recurrence, RecurrenceError};

/// When a task is due, relative to its list's occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DueSpec {
    /// A local time of day; earlier than the list's start means the next day
    /// (a 21:00 closing list with a task due 00:30).
    At(NaiveTime),
    /// Minutes after the list starts.
    AfterStart(u32),
}

/// A task as HQ defines it in a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateTask {
    /// Stable key of this task across revisions of the template.
    pub key: Uuid,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub due: Option<DueSpec>,
    #[serde(default)]
    pub priority: Priority,
    pub link: Option<Link>,
    pub assignee: Option<Assignee>,
}

/// One revision of an HQ list template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub id: TemplateId,
    /// Increases with every edit; instances record content, not revisions.
    pub revision: u32,
    pub name: String,
    pub recurrence: Recurrence,
    pub tasks: Vec<TemplateTask>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template name is empty; give the list a name")]
    EmptyName,
    #[error("template has no tasks; add at least one")]
    NoTasks,
    #[error("task {index}: {reason}")]
    Task { index: usize, reason: String },
    #[error("two tasks share the key {0}; every task needs its own key")]
    DuplicateKey(Uuid),
    #[error("template has {0} tasks; the limit is 500")]
    TooManyTasks(usize),
    #[error(transparent)]
    Recurrence(#[from] RecurrenceError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// How far past midnight a due time earlier than the list's start may
/// reach: it is read as the next day within this many hours of the start.
pub const NEXT_DAY_DUE_HOURS: i64 = 12;

/// The id of a template task inside one instance.
pub fn task_id_in(instance: DocumentId, key: Uuid) -> TaskId {
    TaskId(Uuid::new_v5(&instance.0, key.as_bytes()))
}

fn due_at(
    spec: DueSpec,
    start: DateTime<Utc>,
    local_start: chrono::NaiveDateTime,
    tz: chrono_tz::Tz,
) -> DateTime<Utc> {
    match spec {
        DueSpec::AfterStart(m) => start + Duration::minutes(m as i64),
        DueSpec::At(t) => {
            let day = if t < local_start.time() {
                local_start.date() + Duration::days(1)
            } else {
                local_start.date()
            };
            // A due time inside a DST gap moves to the first valid instant
            // after it; an ambiguous one takes the earlier instant.
            let naive = day.and_time(t);
            tz.from_local_datetime(&naive)
                .earliest()
                .or_else(|| {
                    tz.from_local_datetime(&(naive + Duration::hours(1)))
                        .earliest()
                })
                .map(|d| d.with_timezone(&Utc))
                .unwrap_or(start)
        }
    }
}

impl Template {
    /// Check what HQ typed; errors say what to fix.
    pub fn validate(&self) -> Result<(), TemplateError> {
        if self.name.trim().is_empty() {
            return Err(TemplateError::EmptyName);
        }
        if self.tasks.is_empty() {
            return Err(TemplateError::NoTasks);
        }
        if self.tasks.len() > 500 {
            return Err(TemplateError::TooManyTasks(self.tasks.len()));
        }
        let mut keys = std::collections::HashSet::new();
        for (i, t) in self.tasks.iter().enumerate() {
            if !keys.insert(t.key) {
                return Err(TemplateError::DuplicateKey(t.key));
            }
            if t.title.trim().is_empty() {
                return Err(TemplateError::Task {
                    index: i + 1,
                    reason: "title is empty".into(),
                });
            }
            if let Some(DueSpec::At(due)) = t.due {
                self.check_due_after_start(due)
                    .map_err(|reason| TemplateError::Task {
                        index: i + 1,
                        reason,
                    })?;
            }
        }
        Ok(())
    }

    /// A due time of day earlier than the list's start is the next day
    /// (00:30 for a 21:00 closing list), but only within
    /// [`NEXT_DAY_DUE_HOURS`] of the start: 20:00 for a 21:00 list is far
    /// likelier a mistake than "23 hours later", and a one-off list refuses
    /// a due time before its start too. Times quoted as typed (store-local).
    fn check_due_after_start(&self, due: NaiveTime) -> Result<(), String> {
        let start = self.recurrence.time_of_day();
        if due >= start {
            return Ok(());
        }
        let after = Duration::days(1) - (start - due);
        if after <= Duration::hours(NEXT_DAY_DUE_HOURS) {
            return Ok(());
        }
        Err(format!(
            "due {} is before the list's start {} (store time); a due time earlier than the \
             start means the next day only up to {NEXT_DAY_DUE_HOURS} hours after the start \
             (e.g. 00:30 for a 21:00 list): give a time after {}, or minutes after the \
             start (+30)",
            due.format("%H:%M"),
            start.format("%H:%M"),
            start.format("%H:%M"),
        ))
    }

    /// The instance content of `occ` in `store` (zone `time_zone`).
    pub fn instance(
        &self,
        store: &StoreId,
        time_zone: &str,
        occ: &Occurrence,
    ) -> Result<InstanceContent, TemplateError> {
        let tz = recurrence::parse_time_zone(time_zone)?;
        let id = recurrence::occurrence_instance_id(self.id, store, occ);
        let tasks = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| TaskSpec {
                id: task_id_in(id, t.key),
                title: t.title.clone(),
                description: t.description.clone(),
                start: Some(occ.start_utc),
                due: t.due.map(|d| due_at(d, occ.start_utc, occ.local_start, tz)),
                priority: t.priority,
                link: t.link.clone(),
                assignee: t.assignee.clone(),
                created_by: CreatedBy::Hq,
                position: i as i64,
            })
            .collect();
        let content = InstanceContent {
            id,
            meta: ListMeta {
                store: store.clone(),
                name: self.name.clone(),
                template: Some(self.id),
                date: occ.local_date,
                time_zone: time_zone.to_owned(),
                created_by: CreatedBy::Hq,
            },
            tasks,
        };
        content.meta.validate()?;
        for t in &content.tasks {
            t.validate().map_err(|e| TemplateError::Task {
                index: t.position as usize + 1,
                reason: e.to_string(),
            })?;
        }
        Ok(content)
    }

    /// Every instance whose local date falls in `from..=until` in the store's zone.
    pub fn instances_between(
        &self,
        store: &StoreId,
        time_zone: &str,
        from: chrono::NaiveDate,
        until: chrono::NaiveDate,
    ) -> Result<Vec<InstanceContent>, TemplateError> {
        let tz = recurrence::parse_time_zone(time_zone)?;
        self.recurrence
            .occurrences(tz, from, until)?
            .iter()
            .map(|o| self.instance(store, time_zone, o))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::instance;
    use chrono::NaiveDate;

    pub(crate) fn closing(revision: u32) -> Template {
        Template {
            id: TemplateId(Uuid::from_u128(42)),
            revision,
            name: "Thursday closing".into(),
            recurrence: Recurrence::new(
                "FREQ=WEEKLY;BYDAY=TH",
                NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                NaiveTime::from_hms_opt(21, 0, 0).unwrap(),
            )
            .unwrap(),
            tasks: vec![
                TemplateTask {
                    key: Uuid::from_u128(1),
                    title: "Count the till".into(),
                    description: String::new(),
                    due: Some(DueSpec::AfterStart(30)),
                    priority: Priority::High,
                    link: Some("pos:tender-declaration".parse().unwrap()),
                    assignee: Some("group:cashiers".parse().unwrap()),
                },
                TemplateTask {
                    key: Uuid::from_u128(2),
                    title: "Lock the back door".into(),
                    description: String::new(),
                    due: Some(DueSpec::At(NaiveTime::from_hms_opt(0, 30, 0).unwrap())),
                    priority: Priority::Normal,
                    link: None,
                    assignee: None,
                },
            ],
        }
    }

    #[test]
    fn hub_and_agent_materialize_identical_documents() {
        let store: StoreId = "store-042".parse().unwrap();
        let t = closing(1);
        let day = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        let a = t
            .instances_between(&store, "Europe/Berlin", day, day)
            .unwrap();
        let b = t
            .instances_between(&store, "Europe/Berlin", day, day)
            .unwrap();
        assert_eq!(a.len(), 1);
        let (mut ca, mut cb) = (
            instance::materialize(&a[0]).unwrap(),
            instance::materialize(&b[0]).unwrap(),
        );
        for (x, y) in ca.iter_mut().zip(cb.iter_mut()) {
            assert_eq!(x.bytes(), y.bytes());
        }
    }

    #[test]
    fn due_times_follow_the_local_clock_and_roll_past_midnight() {
        let store: StoreId = "store-042".parse().unwrap();
        let t = closing(1);
        let day = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        let c = &t
            .instances_between(&store, "Europe/Berlin", day, day)
            .unwrap()[0];
        // 21:00 CET is 20:00 UTC; +30 min; 00:30 local next day is 23:30 UTC.
        assert_eq!(
            c.tasks[0].due.unwrap().to_rfc3339(),
            "2026-11-26T20:30:00+00:00"
        );
        assert_eq!(
            c.tasks[1].due.unwrap().to_rfc3339(),
            "2026-11-26T23:30:00+00:00"
        );
        assert_eq!(c.meta.date, day);
    }

    #[test]
    fn task_ids_are_unique_across_instances_and_stable_across_revisions() {
        let store: StoreId = "store-042".parse().unwrap();
        let from = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let until = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let v1 = closing(1)
            .instances_between(&store, "Europe/Berlin", from, until)
            .unwrap();
        let mut edited = closing(2);
        edited.tasks[0].title = "Count and bag the till".into();
        let v2 = edited
            .instances_between(&store, "Europe/Berlin", from, until)
            .unwrap();
        assert_eq!(v1.len(), 4, "four Thursdays in November 2026");
        let ids: std::collections::HashSet<TaskId> = v1
            .iter()
            .flat_map(|c| c.tasks.iter().map(|t| t.id))
            .collect();
        assert_eq!(ids.len(), 8);
        for (a, b) in v1.iter().zip(&v2) {
            assert_eq!(a.id, b.id);
            assert_eq!(a.tasks[0].id, b.tasks[0].id);
        }
    }

    #[test]
    fn bad_templates_say_what_to_fix() {
        let mut t = closing(1);
        t.name = " ".into();
        assert_eq!(t.validate(), Err(TemplateError::EmptyName));
        let mut t = closing(1);
        t.tasks[1].key = t.tasks[0].key;
        assert!(matches!(t.validate(), Err(TemplateError::DuplicateKey(_))));
        let mut t = closing(1);
        t.tasks[0].title.clear();
        assert!(matches!(
            t.validate(),
            Err(TemplateError::Task { index: 1, .. })
        ));
        // Due before the start: the next day only within 12 hours.
        let mut t = closing(1);
        t.tasks[1].due = Some(DueSpec::At(NaiveTime::from_hms_opt(20, 0, 0).unwrap()));
        let err = t.validate().unwrap_err().to_string();
        assert!(
            err.contains("task 2: due 20:00 is before the list's start 21:00 (store time)"),
            "{err}"
        );
        t.tasks[1].due = Some(DueSpec::At(NaiveTime::from_hms_opt(9, 0, 0).unwrap()));
        assert!(t.validate().is_ok(), "09:00 is 12 hours after 21:00");
        t.tasks[1].due = Some(DueSpec::At(NaiveTime::from_hms_opt(9, 1, 0).unwrap()));
        assert!(t.validate().is_err());
        let t = closing(1);
        let store: StoreId = "s".parse().unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        assert!(matches!(
            t.instances_between(&store, "Mars/Base", d, d),
            Err(TemplateError::Recurrence(
                RecurrenceError::UnknownTimeZone { .. }
            ))
        ));
    }
}
