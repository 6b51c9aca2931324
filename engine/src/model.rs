//! The task model in the shop's words: lists, tasks, assignees and status
//! events. Plain values; how they sit in an Automerge document is in
//! `document`, how current status is derived is in `status`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{
    DocumentId, EventId, IdError, StoreId, TaskId, TemplateId, TerminalId, WorkerGroupId, WorkerId,
};

/// A value in a document or a request that does not fit the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("bad {field}: {reason}")]
    BadField { field: &'static str, reason: String },
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("task {0} is not in this list")]
    UnknownTask(TaskId),
    #[error("document is not a task-list instance: {0}")]
    NotAnInstance(String),
    #[error("document is not a store directory: {0}")]
    NotADirectory(String),
    #[error(
        "task {task} cannot be reopened: it is {current}, only a completed task can be reopened"
    )]
    ReopenNotCompleted { task: TaskId, current: Status },
    #[error("status event {0} is already in the log; a new event needs a new id (history is append-only)")]
    DuplicateEvent(EventId),
    #[error("automerge: {0}")]
    Automerge(String),
}

impl From<automerge::AutomergeError> for ModelError {
    fn from(e: automerge::AutomergeError) -> Self {
        ModelError::Automerge(e.to_string())
    }
}

fn bad(field: &'static str, reason: impl Into<String>) -> ModelError {
    ModelError::BadField {
        field,
        reason: reason.into(),
    }
}

/// How urgent a task is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }
}

impl FromStr for Priority {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s {
            "low" => Ok(Priority::Low),
            "normal" => Ok(Priority::Normal),
            "high" => Ok(Priority::High),
            "urgent" => Ok(Priority::Urgent),
            other => Err(bad(
                "priority",
                format!("{other:?}; use low, normal, high or urgent"),
            )),
        }
    }
}

/// Where the work is done: a POS operation (by its operation id) or a URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "target")]
pub enum Link {
    PosOperation(String),
    Url(String),
}

impl Link {
    /// Stored form: `pos:<operation>` or the URL itself.
    pub fn encode(&self) -> String {
        match self {
            Link::PosOperation(op) => format!("pos:{op}"),
            Link::Url(u) => u.clone(),
        }
    }
}

impl FromStr for Link {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        if let Some(op) = s.strip_prefix("pos:") {
            if op.is_empty() || op.len() > 128 {
                return Err(bad(
                    "link",
                    "POS operation must be 1 to 128 characters after 'pos:'",
                ));
            }
            Ok(Link::PosOperation(op.to_owned()))
        } else if (s.starts_with("https://") || s.starts_with("http://")) && s.len() <= 2048 {
            Ok(Link::Url(s.to_owned()))
        } else {
            Err(bad(
                "link",
                format!(
                    "{s:?}; use pos:<operation id> or an http(s) URL of at most 2048 characters"
                ),
            ))
        }
    }
}

/// Who a task is for: one worker, or a group where anyone may claim it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum Assignee {
    Worker(WorkerId),
    Group(WorkerGroupId),
}

impl Assignee {
    /// Stored form: `worker:<id>` or `group:<id>`.
    pub fn encode(&self) -> String {
        match self {
            Assignee::Worker(w) => format!("worker:{w}"),
            Assignee::Group(g) => format!("group:{g}"),
        }
    }
}

impl FromStr for Assignee {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        if let Some(w) = s.strip_prefix("worker:") {
            Ok(Assignee::Worker(w.parse()?))
        } else if let Some(g) = s.strip_prefix("group:") {
            Ok(Assignee::Group(g.parse()?))
        } else {
            Err(bad(
                "assignee",
                format!("{s:?}; use worker:<id> or group:<id>"),
            ))
        }
    }
}

/// Who authored a list or task: HQ, or a store at its POS.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "store")]
pub enum CreatedBy {
    Hq,
    Store(StoreId),
}

impl CreatedBy {
    pub fn encode(&self) -> String {
        match self {
            CreatedBy::Hq => "hq".to_owned(),
            CreatedBy::Store(s) => format!("store:{s}"),
        }
    }
}

impl FromStr for CreatedBy {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        if s == "hq" {
            Ok(CreatedBy::Hq)
        } else if let Some(st) = s.strip_prefix("store:") {
            Ok(CreatedBy::Store(st.parse()?))
        } else {
            Err(bad("created_by", format!("{s:?}; use hq or store:<id>")))
        }
    }
}

/// A task as authored (HQ template or store ad-hoc task).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub id: TaskId,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub start: Option<DateTime<Utc>>,
    pub due: Option<DateTime<Utc>>,
    #[serde(default)]
    pub priority: Priority,
    pub link: Option<Link>,
    pub assignee: Option<Assignee>,
    pub created_by: CreatedBy,
    /// Display order within the list.
    #[serde(default)]
    pub position: i64,
}

impl TaskSpec {
    /// Check what a person typed: the error says what to fix.
    pub fn validate(&self) -> Result<(), ModelError> {
        let title = self.title.trim();
        if title.is_empty() {
            return Err(bad("title", "is empty; give the task a short title"));
        }
        if self.title.chars().count() > 200 {
            return Err(bad("title", "is longer than 200 characters"));
        }
        if self.description.chars().count() > 10_000 {
            return Err(bad("description", "is longer than 10000 characters"));
        }
        if let (Some(start), Some(due)) = (self.start, self.due) {
            if due < start {
                return Err(bad(
                    "due",
                    format!("{due} is before the start {start}; move the due time after the start"),
                ));
            }
        }
        Ok(())
    }
}

/// The list-level facts of one instance, written once when it is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListMeta {
    pub store: StoreId,
    pub name: String,
    /// The template this instance was made from; `None` for ad-hoc store lists.
    pub template: Option<TemplateId>,
    /// The store-local date the instance is for.
    pub date: NaiveDate,
    /// IANA zone of the store, so a terminal can compute due times offline.
    pub time_zone: String,
    pub created_by: CreatedBy,
}

impl ListMeta {
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.name.trim().is_empty() {
            return Err(bad("name", "is empty; give the list a name"));
        }
        if self.name.chars().count() > 200 {
            return Err(bad("name", "is longer than 200 characters"));
        }
        if self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(bad(
                "time_zone",
                format!(
                    "{:?} is not an IANA time zone such as Europe/Berlin",
                    self.time_zone
                ),
            ));
        }
        Ok(())
    }
}

/// Everything needed to make an instance document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceContent {
    pub id: DocumentId,
    pub meta: ListMeta,
    pub tasks: Vec<TaskSpec>,
}

/// A status a worker records. `Reopened` puts a completed task back to work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    NotStarted,
    InProgress,
    Completed,
    Reopened,
}

impl Status {
    /// May a new event record this status? `not_started` is only the
    /// state of a task with no events; undoing a completion is `reopened`,
    /// so a log never goes back to "nothing happened" (the terminal's API
    /// and the hub's validation both ask this).
    pub fn is_recordable(self) -> bool {
        !matches!(self, Status::NotStarted)
    }

    /// Why [`Status::is_recordable`] said no, for the worker or the peer.
    pub fn not_recordable_reason(self) -> String {
        format!(
            "{self} cannot be recorded as a new status; record in_progress, completed or reopened (reopened undoes a completion)"
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotStarted => "not_started",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Reopened => "reopened",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s {
            "not_started" => Ok(Status::NotStarted),
            "in_progress" => Ok(Status::InProgress),
            "completed" => Ok(Status::Completed),
            "reopened" => Ok(Status::Reopened),
            other => Err(bad(
                "status",
                format!("{other:?}; use not_started, in_progress, completed or reopened"),
            )),
        }
    }
}

/// One entry of a task's append-only status log (DESIGN rule 3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StatusEvent {
    pub id: EventId,
    pub task: TaskId,
    pub status: Status,
    pub worker: WorkerId,
    pub terminal: TerminalId,
    /// Hybrid logical clock, milliseconds since the Unix epoch:
    /// max(wall clock, latest event time in the document + 1) (rule 6).
    pub at: i64,
    /// The events this one supersedes: the task's current heads as the
    /// author saw them. Two events that supersede the same heads are
    /// concurrent; if they disagree, that is a conflict.
    pub prev: Vec<EventId>,
    pub note: Option<String>,
}

/// A worker's request to record a status; the engine fills in time and `prev`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub id: EventId,
    pub task: TaskId,
    pub status: Status,
    pub worker: WorkerId,
    pub terminal: TerminalId,
    pub note: Option<String>,
}

/// Longest note a worker may attach.
pub const MAX_NOTE_CHARS: usize = 2000;
