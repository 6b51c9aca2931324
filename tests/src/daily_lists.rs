//! Daily task lists as HQ materializes them for one store, and the status
//! updates a worker records on them: realistic shapes with deterministic ids,
//! shared by the crash test's writer process and the load benchmark.

use chrono::{NaiveDate, NaiveTime, TimeDelta};
use engine::ids::{DocumentId, EventId, StoreId, TaskId, TemplateId};
use engine::model::{
    CreatedBy, InstanceContent, ListMeta, Priority, Status, StatusUpdate, TaskSpec,
};
use uuid::Uuid;

/// The store every fixture list belongs to.
pub fn store() -> StoreId {
    "store-042".parse().expect("a valid store code")
}

/// The template behind fixture list number `list` (one per daily list).
pub fn template(list: u32) -> TemplateId {
    TemplateId(Uuid::from_u128(0x7e3a_0000 + u128::from(list)))
}

/// The content of daily list `list` on `date`, with `tasks` tasks spread
/// over the shop's day, as HQ would materialize it from the template.
pub fn daily_list(list: u32, date: NaiveDate, tasks: usize) -> InstanceContent {
    let store = store();
    let template = template(list);
    let id = DocumentId::recurring_instance(template, &store, date);
    let opening = date.and_time(NaiveTime::from_hms_opt(7, 0, 0).expect("a valid time"));
    let tasks = (0..tasks)
        .map(|n| {
            let start = (opening + TimeDelta::minutes(30 * n as i64)).and_utc();
            TaskSpec {
                // Unique per list instance, stable across runs.
                id: TaskId(Uuid::new_v5(&id.0, format!("task/{n}").as_bytes())),
                title: format!("List {list} task {n}: check shelf {n} and refill"),
                description: "Count the facings, refill from the back store, note gaps.".into(),
                start: Some(start),
                due: Some(start + TimeDelta::minutes(45)),
                priority: if n % 5 == 0 {
                    Priority::High
                } else {
                    Priority::Normal
                },
                link: Some("pos:stock-count".parse().expect("a valid link")),
                assignee: Some("group:floor".parse().expect("a valid assignee")),
                created_by: CreatedBy::Hq,
                position: n as i64,
            }
        })
        .collect();
    InstanceContent {
        id,
        meta: ListMeta {
            store,
            name: format!("Daily list {list}"),
            template: Some(template),
            date,
            time_zone: "Europe/Berlin".into(),
            created_by: CreatedBy::Hq,
        },
        tasks,
    }
}

/// The status a worker records next on a task that is `current`:
/// start it, complete it, reopen it once completed, start it again.
pub fn next_status(current: Status) -> Status {
    match current {
        Status::NotStarted | Status::Reopened => Status::InProgress,
        Status::InProgress => Status::Completed,
        Status::Completed => Status::Reopened,
    }
}

/// A worker's status update with a caller-chosen id (from the caller's RNG).
pub fn status_update(id: [u8; 16], task: TaskId, status: Status, worker: u32) -> StatusUpdate {
    StatusUpdate {
        id: EventId(uuid::Builder::from_random_bytes(id).into_uuid()),
        task,
        status,
        worker: format!("w{worker}").parse().expect("a valid worker code"),
        terminal: "pos-1".parse().expect("a valid terminal code"),
        note: None,
    }
}
