//! The compliance report (issue #23): how many tasks were completed on
//! time, by store, store group, list or worker, over a range of list
//! dates. One rule for the CLI (`hub report`), the API (`GET /api/report`)
//! and the dashboard's CSV download; the status index supplies the facts
//! ([`ReportTask`], `StatusQueries::report_tasks_between`).
//!
//! # What counts, and how
//!
//! - **Which tasks.** Every task in a list dated, in its store's calendar
//!   (the list date, which is store-local), from `from` to `to`, both
//!   inclusive. Each occurrence of a recurring list is its own list on its
//!   own date, so a daily list counts once per day in the range, under the
//!   list's name, like a one-off list of that name.
//! - **Completion time.** A task counts as completed when its current
//!   status (`status::derive`, as the status index holds it) is completed;
//!   its completion time is the newest `completed` event of its log. Under
//!   the log's hybrid-logical clock that is the event that decided the
//!   current status, so a task completed, reopened and completed again is
//!   completed when it was completed the last time.
//! - **On time:** completed at or before its due time (a task due at 18:00
//!   and completed at 18:00:00.000 is on time; `due::has_passed_ms`, the
//!   past-due rule), or completed with no due time (no deadline was
//!   missed). Due times are instants: a store's 07:00 in Tokyo is compared
//!   with the completion's instant, whatever zone HQ sits in.
//! - **Late:** completed after its due time.
//! - **Missed:** not completed (never, or reopened and not completed
//!   again), and past due when the report is made (`engine::due`). A task
//!   not completed by the end of the range is therefore not on time once
//!   its due time has passed.
//! - **Open:** not completed and not past due: its due time is still ahead
//!   (only in a range that reaches today), or it has none. It can still be
//!   done on time, so it is shown but left out of the rate.
//! - **Rate:** on time / (on time + late + missed); none when nothing in the
//!   row was decided. This is the dashboard roll-up's "share on time" too:
//!   completed on time over completed plus past due.
//! - **By worker:** a completed task is the worker's who completed it; an
//!   open or missed one is the worker's it is assigned to (`worker:<id>`),
//!   else no worker's. Worker ids are per store, so a worker row is a
//!   (store, worker) pair.
//! - **By group:** a store's tasks count in every group the store is in; a
//!   store in no group counts in the row with no group.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Longest range one report covers, in days (both ends counted).
pub const MAX_DAYS: i64 = 366;

/// One task of the status index, as the report reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportTask {
    pub store: String,
    pub list: String,
    /// The list's date (store-local), `YYYY-MM-DD`.
    pub date: String,
    pub due_ms: Option<i64>,
    /// When it was completed, if its status is completed now.
    pub completed_ms: Option<i64>,
    /// The worker who completed it (with `completed_ms`).
    pub completed_by: Option<String>,
    /// `worker:<id>` or `group:<id>`.
    pub assignee: Option<String>,
}

/// Where a task stands in the report (see the module's rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    OnTime,
    Late,
    Missed,
    Open,
}

impl ReportTask {
    /// This task's outcome when the report is made at `now_ms`.
    pub fn outcome(&self, now_ms: i64) -> Outcome {
        let passed_at = |ms: i64| {
            self.due_ms
                .is_some_and(|due| crate::due::has_passed_ms(due, ms))
        };
        match self.completed_ms {
            Some(done) if passed_at(done) => Outcome::Late,
            Some(_) => Outcome::OnTime,
            None if passed_at(now_ms) => Outcome::Missed,
            None => Outcome::Open,
        }
    }

    /// The worker the task is counted under: who completed it, else the
    /// worker it is assigned to.
    pub fn worker(&self) -> Option<&str> {
        match &self.completed_ms {
            Some(_) => self.completed_by.as_deref(),
            None => self
                .assignee
                .as_deref()
                .and_then(|a| a.strip_prefix("worker:")),
        }
    }
}

/// What a report's rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum By {
    Store,
    Group,
    List,
    Worker,
}

impl std::str::FromStr for By {
    type Err = String;
    fn from_str(s: &str) -> Result<By, String> {
        match s {
            "store" => Ok(By::Store),
            "group" => Ok(By::Group),
            "list" => Ok(By::List),
            "worker" => Ok(By::Worker),
            other => Err(format!("by {other:?}: use store, group, list or worker")),
        }
    }
}

/// A range a report may not cover.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("from {from} is after to {to}: give a from on or before the to")]
    Reversed { from: NaiveDate, to: NaiveDate },
    #[error(
        "from {from} to {to} is {days} days; a report covers at most {MAX_DAYS} days: \
         ask for a shorter range (several reports for a longer period)"
    )]
    TooLong {
        from: NaiveDate,
        to: NaiveDate,
        days: i64,
    },
}

/// Whether a report may cover `from` to `to` (both inclusive).
pub fn check_range(from: NaiveDate, to: NaiveDate) -> Result<(), RangeError> {
    if from > to {
        return Err(RangeError::Reversed { from, to });
    }
    let days = (to - from).num_days() + 1;
    if days > MAX_DAYS {
        return Err(RangeError::TooLong { from, to, days });
    }
    Ok(())
}

/// One row of a report. The fields of the dimensions the report is not
/// by are null (`store` is set on a worker's row too: worker ids are per
/// store).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportRow {
    pub store: Option<String>,
    pub group: Option<String>,
    pub list: Option<String>,
    pub worker: Option<String>,
    /// The store's name (by store) or the worker's (by worker), if known.
    pub name: Option<String>,
    /// How many stores the row's tasks come from.
    pub stores: u32,
    /// Tasks decided: on time + late + missed.
    pub tasks: u32,
    pub on_time: u32,
    pub late: u32,
    pub missed: u32,
    /// Not completed, due time still ahead: not in the rate.
    pub open: u32,
    /// `on_time / tasks`, rounded to 4 decimals; none with no task decided.
    pub on_time_rate: Option<f64>,
}

/// What the report knows besides the tasks: names and groups.
#[derive(Debug, Clone, Default)]
pub struct ReportFacts {
    /// Store id -> its name.
    pub store_names: HashMap<String, String>,
    /// Store id -> the groups it is in.
    pub groups_of: HashMap<String, Vec<String>>,
    /// (store id, worker id) -> the worker's name on the store's roster.
    pub worker_names: HashMap<(String, String), String>,
}

#[derive(Default)]
struct Tally {
    stores: BTreeSet<String>,
    on_time: u32,
    late: u32,
    missed: u32,
    open: u32,
}

/// The key a task is counted under: (store, group, list, worker).
type Key = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The report over `tasks` at `now_ms`, one row per `by` key, in key
/// order. `show_group` says which groups may have a row (a scoped caller
/// sees only its own groups, though its stores may be in others too).
pub fn report(
    tasks: &[ReportTask],
    by: By,
    now_ms: i64,
    facts: &ReportFacts,
    show_group: impl Fn(&str) -> bool,
) -> Vec<ReportRow> {
    let mut tallies: BTreeMap<Key, Tally> = BTreeMap::new();
    let no_groups = Vec::new();
    for t in tasks {
        let keys: Vec<Key> = match by {
            By::Store => vec![(Some(t.store.clone()), None, None, None)],
            By::List => vec![(None, None, Some(t.list.clone()), None)],
            By::Worker => vec![(
                Some(t.store.clone()),
                None,
                None,
                t.worker().map(str::to_owned),
            )],
            By::Group => {
                let groups = facts.groups_of.get(&t.store).unwrap_or(&no_groups);
                if groups.is_empty() {
                    vec![(None, None, None, None)]
                } else {
                    groups
                        .iter()
                        .filter(|g| show_group(g))
                        .map(|g| (None, Some(g.clone()), None, None))
                        .collect()
                }
            }
        };
        let outcome = t.outcome(now_ms);
        for key in keys {
            let tally = tallies.entry(key).or_default();
            tally.stores.insert(t.store.clone());
            match outcome {
                Outcome::OnTime => tally.on_time += 1,
                Outcome::Late => tally.late += 1,
                Outcome::Missed => tally.missed += 1,
                Outcome::Open => tally.open += 1,
            }
        }
    }
    tallies
        .into_iter()
        .map(|((store, group, list, worker), t)| {
            let name = match (by, &store, &worker) {
                (By::Store, Some(s), _) => facts.store_names.get(s).cloned(),
                (By::Worker, Some(s), Some(w)) => {
                    facts.worker_names.get(&(s.clone(), w.clone())).cloned()
                }
                _ => None,
            };
            let decided = t.on_time + t.late + t.missed;
            ReportRow {
                store,
                group,
                list,
                worker,
                name,
                stores: t.stores.len() as u32,
                tasks: decided,
                on_time: t.on_time,
                late: t.late,
                missed: t.missed,
                open: t.open,
                on_time_rate: (decided > 0).then(|| {
                    (f64::from(t.on_time) / f64::from(decided) * 10_000.0).round() / 10_000.0
                }),
            }
        })
        .collect()
}

/// The report as CSV: a header row, then one line per row. The key columns
/// depend on `by`; the counts follow.
pub fn to_csv(by: By, rows: &[ReportRow]) -> String {
    let keys: &[&str] = match by {
        By::Store => &["store", "name"],
        By::Group => &["group"],
        By::List => &["list"],
        By::Worker => &["store", "worker", "name"],
    };
    let counts = [
        "stores",
        "tasks",
        "on_time",
        "late",
        "missed",
        "open",
        "on_time_rate",
    ];
    let mut out = String::new();
    let header: Vec<&str> = keys.iter().chain(counts.iter()).copied().collect();
    out.push_str(&header.join(","));
    out.push('\n');
    for r in rows {
        let mut cells: Vec<String> = keys
            .iter()
            .map(|k| {
                let v = match *k {
                    "store" => &r.store,
                    "group" => &r.group,
                    "list" => &r.list,
                    "worker" => &r.worker,
                    _ => &r.name,
                };
                csv_cell(v.as_deref().unwrap_or(""))
            })
            .collect();
        cells.extend([
            r.stores.to_string(),
            r.tasks.to_string(),
            r.on_time.to_string(),
            r.late.to_string(),
            r.missed.to_string(),
            r.open.to_string(),
            r.on_time_rate
                .map(|x| format!("{x:.4}"))
                .unwrap_or_default(),
        ]);
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line
/// break. A field a spreadsheet would run as a formula (`=`, `+`, `-`,
/// `@` first) gets a leading `'`, since list and worker names are typed by
/// people.
fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUE: i64 = 1_000_000;

    fn task(
        store: &str,
        list: &str,
        done: Option<(i64, &str)>,
        assignee: Option<&str>,
    ) -> ReportTask {
        ReportTask {
            store: store.into(),
            list: list.into(),
            date: "2026-12-01".into(),
            due_ms: Some(DUE),
            completed_ms: done.map(|d| d.0),
            completed_by: done.map(|d| d.1.to_owned()),
            assignee: assignee.map(str::to_owned),
        }
    }

    #[test]
    fn on_time_is_at_or_before_the_due_millisecond() {
        let now = DUE + 10;
        assert_eq!(
            task("s", "l", Some((DUE, "w")), None).outcome(now),
            Outcome::OnTime
        );
        assert_eq!(
            task("s", "l", Some((DUE + 1, "w")), None).outcome(now),
            Outcome::Late
        );
        assert_eq!(task("s", "l", None, None).outcome(now), Outcome::Missed);
        assert_eq!(task("s", "l", None, None).outcome(DUE), Outcome::Open);
        // Done later than it is now (a terminal's clock ahead) is still late.
        assert_eq!(
            task("s", "l", Some((DUE + 99, "w")), None).outcome(DUE),
            Outcome::Late
        );
        // No due time: done is on time, not done is never missed.
        let no_due = |done| ReportTask {
            due_ms: None,
            ..task("s", "l", done, None)
        };
        assert_eq!(no_due(Some((DUE * 9, "w"))).outcome(now), Outcome::OnTime);
        assert_eq!(no_due(None).outcome(DUE * 9), Outcome::Open);
    }

    #[test]
    fn ranges_are_checked() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert!(check_range(d("2026-01-01"), d("2026-12-31")).is_ok());
        assert!(
            check_range(d("2024-01-01"), d("2024-12-31")).is_ok(),
            "366 days"
        );
        assert!(
            check_range(d("2026-01-01"), d("2027-01-01")).is_ok(),
            "366 days"
        );
        assert!(matches!(
            check_range(d("2025-01-01"), d("2026-01-02")),
            Err(RangeError::TooLong { days: 367, .. })
        ));
        assert!(matches!(
            check_range(d("2026-01-02"), d("2026-01-01")),
            Err(RangeError::Reversed { .. })
        ));
    }

    #[test]
    fn a_worker_row_is_who_completed_it_else_its_assignee() {
        let now = DUE + 10;
        let tasks = [
            task("s1", "Open", Some((DUE - 5, "ann")), Some("worker:bob")),
            task("s1", "Open", None, Some("worker:bob")),
            task("s1", "Open", None, Some("group:leads")),
            task("s2", "Open", Some((DUE + 5, "ann")), None),
        ];
        let mut facts = ReportFacts::default();
        facts
            .worker_names
            .insert(("s1".into(), "ann".into()), "Ann Lee".into());
        let rows = report(&tasks, By::Worker, now, &facts, |_| true);
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.store.as_deref().unwrap(),
                    r.worker.as_deref(),
                    r.name.as_deref(),
                    (r.on_time, r.late, r.missed),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("s1", None, None, (0, 0, 1)),
                ("s1", Some("ann"), Some("Ann Lee"), (1, 0, 0)),
                ("s1", Some("bob"), None, (0, 0, 1)),
                ("s2", Some("ann"), None, (0, 1, 0)),
            ]
        );
    }

    #[test]
    fn csv_quotes_and_defuses_what_people_typed() {
        let row = ReportRow {
            store: None,
            group: None,
            list: Some("=HYPERLINK(\"x\"), closing".into()),
            worker: None,
            name: None,
            stores: 1,
            tasks: 3,
            on_time: 2,
            late: 1,
            missed: 0,
            open: 0,
            on_time_rate: Some(0.6667),
        };
        assert_eq!(
            to_csv(By::List, &[row]),
            "list,stores,tasks,on_time,late,missed,open,on_time_rate\n\
             \"'=HYPERLINK(\"\"x\"\"), closing\",1,3,2,1,0,0,0.6667\n"
        );
    }
}
