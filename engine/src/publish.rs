//! What HQ publishes, as it types it, turned into what the hub stores: a
//! one-off list ([`PublishRequest`]: which stores it names, and each
//! store's list with its dates and times read in that store's time zone)
//! and a recurring list ([`NewTemplate`]). The hub's HTTP layer only
//! decodes the JSON into these; `Hub::publish_request` runs a one-off list.

use std::collections::HashSet;

use chrono::{NaiveDate, NaiveTime, TimeZone};
use serde::{Deserialize, Serialize};

use crate::ids::{DocumentId, StoreId, TaskId, TemplateId};
use crate::model::{Assignee, CreatedBy, InstanceContent, Link, ListMeta, Priority, TaskSpec};
use crate::recurrence::Recurrence;
use crate::template::{DueSpec, Template, TemplateTask};

/// A task as HQ types it in a publish request.
#[derive(Debug, Deserialize, Serialize, Clone)]
pub struct NewTask {
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Local time of day the task starts and is due ("HH:MM"), on the list's date.
    pub start: Option<String>,
    pub due: Option<String>,
    pub priority: Option<String>,
    pub link: Option<String>,
    pub assignee: Option<String>,
}

/// The one-store form of `POST /api/lists`, as the CLI sends it.
#[derive(Debug, Deserialize, Serialize)]
pub struct NewList {
    pub store: String,
    pub name: String,
    /// Store-local date (YYYY-MM-DD).
    pub date: String,
    pub tasks: Vec<NewTask>,
}

/// The body of `POST /api/lists`: a list for one store (`store`, the shape
/// of [`NewList`]) or the same list for many (`stores`). Each store gets
/// its own document, its dates and times read in its own time zone.
#[derive(Debug, Deserialize)]
pub struct PublishRequest {
    pub store: Option<String>,
    pub stores: Option<Vec<String>>,
    pub name: String,
    /// Store-local date (YYYY-MM-DD).
    pub date: String,
    pub tasks: Vec<NewTask>,
}

/// Most stores one publish request may name. The whole request is one
/// job on the hub thread and one transaction, and no sync frame is handled
/// meanwhile: about 1.3 ms per store for a 20-task list (release build),
/// so this bounds that pause to a second or two. A larger fleet takes a
/// few requests.
pub const MAX_STORES_PER_PUBLISH: usize = 1_000;

/// A publish request that cannot be published as it is; the message says
/// what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRequest(pub String);

fn invalid(msg: impl Into<String>) -> InvalidRequest {
    InvalidRequest(msg.into())
}

impl PublishRequest {
    /// The stores this request names: exactly one of `store` and
    /// `stores`, every id well formed, each store once, at most
    /// [`MAX_STORES_PER_PUBLISH`].
    pub fn stores_named(&self) -> Result<Vec<StoreId>, InvalidRequest> {
        let parse = |field: &str, s: &str| {
            s.parse::<StoreId>()
                .map_err(|e| invalid(format!("{field} {s:?}: {e}")))
        };
        match (&self.store, &self.stores) {
            (Some(_), Some(_)) => Err(invalid(
                "give either \"store\" (one store) or \"stores\" (a list of stores), not both",
            )),
            (None, None) => Err(invalid(
                "name the store: \"store\": \"<id>\", or \"stores\": [\"<id>\", ...] for the same list in many stores",
            )),
            (Some(s), None) => Ok(vec![parse("store", s)?]),
            (None, Some(v)) if v.is_empty() => {
                Err(invalid("stores is empty; name at least one store"))
            }
            (None, Some(v)) if v.len() > MAX_STORES_PER_PUBLISH => Err(invalid(format!(
                "stores names {} stores; one request may name at most {MAX_STORES_PER_PUBLISH}: split them over several requests",
                v.len()
            ))),
            (None, Some(v)) => {
                let mut seen = HashSet::with_capacity(v.len());
                v.iter()
                    .map(|s| {
                        let id = parse("stores", s)?;
                        if !seen.insert(id.clone()) {
                            return Err(invalid(format!(
                                "stores names {id} more than once; name each store once"
                            )));
                        }
                        Ok(id)
                    })
                    .collect()
            }
        }
    }

    /// This request as the instance content of `store`, whose time zone is
    /// `time_zone`. `new_id` gives the ids of the new list and its tasks
    /// (the caller's randomness).
    pub fn list_content(
        &self,
        store: &StoreId,
        time_zone: &str,
        new_id: &mut dyn FnMut() -> uuid::Uuid,
    ) -> Result<InstanceContent, InvalidRequest> {
        let date = NaiveDate::parse_from_str(&self.date, "%Y-%m-%d")
            .map_err(|_| invalid(format!("date {:?}: use YYYY-MM-DD", self.date)))?;
        let tz: chrono_tz::Tz = time_zone
            .parse()
            .map_err(|_| invalid(format!("store time zone {time_zone:?} is not an IANA zone")))?;
        if self.tasks.is_empty() {
            return Err(invalid("a list needs at least one task"));
        }
        let mut tasks = Vec::new();
        for (i, t) in self.tasks.iter().enumerate() {
            let start = local_time("start", &t.start, date, tz)?;
            let due = local_time("due", &t.due, date, tz)?;
            if let (Some(s), Some(d), Some(ls), Some(ld)) = (start, due, &t.start, &t.due) {
                // Said here in the store's time, as typed: the model's own
                // check would quote the instants in UTC.
                if d < s {
                    return Err(invalid(format!(
                        "task {}: due {ld} is before its start {ls} (store time, {tz}); \
                         move the due time after the start",
                        i + 1
                    )));
                }
            }
            let spec = TaskSpec {
                id: TaskId(new_id()),
                title: t.title.clone(),
                description: t.description.clone(),
                start,
                due,
                priority: match &t.priority {
                    Some(p) => p
                        .parse::<Priority>()
                        .map_err(|e| invalid(format!("task {}: {e}", i + 1)))?,
                    None => Priority::Normal,
                },
                link: t
                    .link
                    .as_deref()
                    .map(str::parse::<Link>)
                    .transpose()
                    .map_err(|e| invalid(format!("task {}: {e}", i + 1)))?,
                assignee: t
                    .assignee
                    .as_deref()
                    .map(str::parse::<Assignee>)
                    .transpose()
                    .map_err(|e| invalid(format!("task {}: {e}", i + 1)))?,
                created_by: CreatedBy::Hq,
                position: i as i64,
            };
            spec.validate()
                .map_err(|e| invalid(format!("task {}: {e}", i + 1)))?;
            tasks.push(spec);
        }
        let meta = ListMeta {
            store: store.clone(),
            name: self.name.clone(),
            template: None,
            date,
            time_zone: time_zone.to_owned(),
            created_by: CreatedBy::Hq,
        };
        meta.validate().map_err(|e| invalid(e.to_string()))?;
        Ok(InstanceContent {
            id: DocumentId(new_id()),
            meta,
            tasks,
        })
    }
}

/// A recurring list as HQ types it.
#[derive(Debug, Deserialize, Serialize)]
pub struct NewTemplate {
    /// Omit to create; give an existing id to save a new revision.
    pub id: Option<String>,
    pub name: String,
    /// RFC 5545 RRULE, e.g. FREQ=WEEKLY;BYDAY=TH.
    pub rrule: String,
    /// Local start time of each occurrence ("HH:MM").
    pub time: String,
    /// First date the rule applies (YYYY-MM-DD); default today (UTC).
    pub start_date: Option<String>,
    pub tasks: Vec<NewTemplateTask>,
    /// Stores to assign it to, in the same request (all checked first).
    #[serde(default)]
    pub stores: Vec<String>,
    /// Store groups to assign it to, in the same request.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A task of a recurring list as HQ types it.
#[derive(Debug, Deserialize, Serialize, Clone)]
pub struct NewTemplateTask {
    /// Stable key across revisions; omit for a new task.
    pub key: Option<String>,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Local time of day ("HH:MM") or minutes after the list starts ("+30").
    pub due: Option<String>,
    pub priority: Option<String>,
    pub link: Option<String>,
    pub assignee: Option<String>,
}

impl NewTemplate {
    /// This request as a template (revision 0: saving numbers it). A
    /// missing `start_date` is `today`; `new_id` gives the ids of a new
    /// template and of new tasks (the caller's randomness).
    pub fn template(
        self,
        today: NaiveDate,
        new_id: &mut dyn FnMut() -> uuid::Uuid,
    ) -> Result<Template, InvalidRequest> {
        let id = match &self.id {
            Some(i) => i.parse().map_err(|e| invalid(format!("id: {e}")))?,
            None => TemplateId(new_id()),
        };
        let time = NaiveTime::parse_from_str(&self.time, "%H:%M").map_err(|_| {
            invalid(format!(
                "time {:?}: use a local time of day like 21:00",
                self.time
            ))
        })?;
        let start = match &self.start_date {
            Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| invalid(format!("start_date {d:?}: use YYYY-MM-DD")))?,
            None => today,
        };
        let recurrence =
            Recurrence::new(&self.rrule, start, time).map_err(|e| invalid(e.to_string()))?;
        let mut tasks = Vec::new();
        for (i, t) in self.tasks.into_iter().enumerate() {
            let at = |what: &str| format!("task {}: {what}", i + 1);
            let due = match t.due.as_deref() {
                None => None,
                Some(d) if d.starts_with('+') => {
                    Some(DueSpec::AfterStart(d[1..].parse().map_err(|_| {
                        invalid(at("due \"+N\" takes whole minutes, e.g. +30"))
                    })?))
                }
                Some(d) => Some(DueSpec::At(
                    NaiveTime::parse_from_str(d, "%H:%M")
                        .map_err(|_| invalid(at("due: use HH:MM or +minutes")))?,
                )),
            };
            tasks.push(TemplateTask {
                key: match t.key {
                    Some(k) => k.parse().map_err(|_| invalid(at("key is not a UUID")))?,
                    None => new_id(),
                },
                title: t.title,
                description: t.description,
                due,
                priority: t
                    .priority
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(|e| invalid(at(&format!("{e}"))))?
                    .unwrap_or_default(),
                link: t
                    .link
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(|e| invalid(at(&format!("{e}"))))?,
                assignee: t
                    .assignee
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(|e| invalid(at(&format!("{e}"))))?,
            });
        }
        let t = Template {
            id,
            revision: 0,
            name: self.name,
            recurrence,
            tasks,
        };
        t.validate().map_err(|e| invalid(e.to_string()))?;
        Ok(t)
    }
}

/// `value` ("HH:MM", store-local, on `date` in `tz`) as an instant.
fn local_time(
    field: &str,
    value: &Option<String>,
    date: NaiveDate,
    tz: chrono_tz::Tz,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, InvalidRequest> {
    let Some(v) = value else { return Ok(None) };
    let t = NaiveTime::parse_from_str(v, "%H:%M")
        .map_err(|_| invalid(format!("{field} {v:?}: use a local time of day like 21:00")))?;
    let local = tz
        .from_local_datetime(&date.and_time(t))
        .earliest()
        .ok_or_else(|| {
            invalid(format!(
                "{field} {v} does not exist on {date} in {tz} (clock change)"
            ))
        })?;
    Ok(Some(local.with_timezone(&chrono::Utc)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_one_store_form_is_a_publish_request_for_that_store() {
        let cli = NewList {
            store: "store-042".into(),
            name: "Promo".into(),
            date: "2026-11-26".into(),
            tasks: vec![],
        };
        let req: PublishRequest =
            serde_json::from_value(serde_json::to_value(cli).unwrap()).unwrap();
        let stores = req.stores_named().unwrap_or_else(|e| panic!("{}", e.0));
        assert_eq!(stores, vec!["store-042".parse::<StoreId>().unwrap()]);
    }

    fn request(start: Option<&str>, due: Option<&str>) -> PublishRequest {
        PublishRequest {
            store: Some("s1".into()),
            stores: None,
            name: "Closing".into(),
            date: "2026-03-29".into(),
            tasks: vec![NewTask {
                title: "Count the till".into(),
                description: String::new(),
                start: start.map(String::from),
                due: due.map(String::from),
                priority: None,
                link: None,
                assignee: None,
            }],
        }
    }

    #[test]
    fn times_are_read_in_the_stores_time_zone() {
        let mut n = 0u128;
        let mut ids = || {
            n += 1;
            uuid::Uuid::from_u128(n)
        };
        let s1: StoreId = "s1".parse().unwrap();
        // 29 March 2026: Berlin is on summer time (UTC+2) from 02:00.
        let c = request(None, Some("21:00"))
            .list_content(&s1, "Europe/Berlin", &mut ids)
            .unwrap();
        assert_eq!(
            c.tasks[0].due.map(|d| d.to_rfc3339()),
            Some("2026-03-29T19:00:00+00:00".to_owned())
        );
        assert_eq!(c.meta.time_zone, "Europe/Berlin");
        let gap = request(None, Some("02:30"))
            .list_content(&s1, "Europe/Berlin", &mut ids)
            .unwrap_err();
        assert!(gap.0.contains("does not exist on 2026-03-29"), "{gap}");
        let backwards = request(Some("21:00"), Some("20:00"))
            .list_content(&s1, "Europe/Berlin", &mut ids)
            .unwrap_err();
        assert!(
            backwards.0.contains("due 20:00 is before its start 21:00"),
            "{backwards}"
        );
    }

    #[test]
    fn a_recurring_list_starts_today_unless_told_and_takes_both_due_forms() {
        let req: NewTemplate = serde_json::from_value(serde_json::json!({
            "name": "Closing", "rrule": "FREQ=DAILY", "time": "20:00",
            "tasks": [{"title": "Count the till", "due": "21:30"},
                      {"title": "Lock up", "due": "+90"}]
        }))
        .unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        let mut n = 0u128;
        let mut ids = || {
            n += 1;
            uuid::Uuid::from_u128(n)
        };
        let t = req.template(today, &mut ids).unwrap();
        assert_eq!(t.id, TemplateId(uuid::Uuid::from_u128(1)));
        assert_eq!(t.recurrence.start_date(), today);
        assert_eq!(
            t.tasks.iter().map(|t| t.due).collect::<Vec<_>>(),
            vec![
                Some(DueSpec::At(NaiveTime::from_hms_opt(21, 30, 0).unwrap())),
                Some(DueSpec::AfterStart(90))
            ]
        );
        let bad: NewTemplate = serde_json::from_value(serde_json::json!({
            "name": "Closing", "rrule": "FREQ=DAILY", "time": "20:00",
            "tasks": [{"title": "Lock up", "due": "+1h"}]
        }))
        .unwrap();
        let e = bad.template(today, &mut ids).unwrap_err();
        assert_eq!(e.0, "task 1: due \"+N\" takes whole minutes, e.g. +30");
    }
}
