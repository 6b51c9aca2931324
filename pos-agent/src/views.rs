//! What the terminal shows, computed from the replica's lists with no I/O:
//! task rows with local due times, a worker's tasks for today, the
//! upcoming / past-due notifications and the pending count, the conflicts a
//! manager decides. Times are the store's (IANA zone), so a terminal gets
//! them right offline.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use engine::document::directory::RosterWorker;
use engine::document::instance::{InstanceView, TaskView};
use engine::ids::{DocumentId, TaskId, WorkerId};
use engine::model::{Assignee, CreatedBy, Link, Priority, Status, StatusEvent};
use serde::Serialize;

/// One task as the terminal shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRow {
    pub list: DocumentId,
    pub list_name: String,
    pub list_date: NaiveDate,
    pub task: TaskId,
    pub title: String,
    pub description: String,
    pub start: Option<DateTime<Utc>>,
    pub due: Option<DateTime<Utc>>,
    /// The due time on the store's clock, `HH:MM`, with the date in front
    /// when it is not today.
    pub due_local: Option<String>,
    pub priority: Priority,
    pub link: Option<Link>,
    /// The POS operation of a `pos:` link, and whether it may be handed
    /// to the POS host ([`pos_operation`]).
    pub operation: Option<PosOperation>,
    pub assignee: Option<Assignee>,
    /// Every value when two people assigned (or claimed) at once.
    pub assignee_conflict: Vec<Option<Assignee>>,
    pub status: Status,
    /// Who recorded the shown status, from which terminal, when.
    pub status_by: Option<WorkerId>,
    pub status_terminal: Option<String>,
    pub status_at: Option<i64>,
    pub status_note: Option<String>,
    pub conflict: bool,
    pub created_by: CreatedBy,
    /// Open and its due time has passed (`engine::due`), as of when the
    /// row was made: the screen marks it, it does not judge by itself.
    pub past_due: bool,
}

/// The store's local date and a formatter for due times.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub tz: Tz,
    pub now: DateTime<Utc>,
}

impl Clock {
    pub fn today(&self) -> NaiveDate {
        self.now.with_timezone(&self.tz).date_naive()
    }

    fn local(&self, t: DateTime<Utc>) -> String {
        let l = t.with_timezone(&self.tz);
        if l.date_naive() == self.today() {
            l.format("%H:%M").to_string()
        } else {
            l.format("%a %d %b %H:%M").to_string()
        }
    }

    fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.tz).date_naive()
    }
}

pub fn row(list: &InstanceView, t: &TaskView, clock: &Clock) -> TaskRow {
    let latest = t.status.latest.as_ref();
    let mut row = TaskRow {
        list: list.id,
        list_name: list.meta.name.clone(),
        list_date: list.meta.date,
        task: t.spec.id,
        title: t.spec.title.clone(),
        description: t.spec.description.clone(),
        start: t.spec.start,
        due: t.spec.due,
        due_local: t.spec.due.map(|d| clock.local(d)),
        priority: t.spec.priority,
        link: t.spec.link.clone(),
        operation: pos_operation(t.spec.link.as_ref()),
        assignee: t.spec.assignee.clone(),
        assignee_conflict: t.assignee_conflict.clone(),
        status: t.status.current,
        status_by: latest.map(|e| e.worker.clone()),
        status_terminal: latest.map(|e| e.terminal.to_string()),
        status_at: latest.map(|e| e.at),
        status_note: latest.and_then(|e| e.note.clone()),
        conflict: t.status.is_conflicted(),
        created_by: t.spec.created_by.clone(),
        past_due: false,
    };
    row.past_due = engine::due::is_past_due(row.due, row.is_open(), clock.now);
    row
}

/// A task's `pos:<operation>` link as the terminal hands it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PosOperation {
    /// The operation's name, as HQ wrote it (shown as text, whatever it is).
    pub name: String,
    /// Why the terminal will not hand it to the POS; `None`: it will.
    pub refused: Option<String>,
}

/// The longest operation name handed to the POS host.
pub const POS_OPERATION_MAX: usize = 64;

/// The operation of a `pos:` link, if the task has one. Only a sane name
/// (`[a-z0-9._-]`, 1 to [`POS_OPERATION_MAX`] characters) goes to the POS
/// host: the host turns it into a screen or a command, so anything else
/// (spaces, slashes, a URL, upper case, a 128-character blob) is shown as
/// text and refused with the reason.
pub fn pos_operation(link: Option<&Link>) -> Option<PosOperation> {
    let Some(Link::PosOperation(name)) = link else {
        return None;
    };
    let sane = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b);
    let refused = if name.is_empty() || name.len() > POS_OPERATION_MAX {
        Some(format!(
            "the POS operation name has {} characters; the POS takes 1 to {POS_OPERATION_MAX}",
            name.len()
        ))
    } else if !name.bytes().all(sane) {
        Some(
            "the POS operation name may only hold a-z, 0-9, '.', '_' and '-'; ask HQ to fix the task's link"
                .to_owned(),
        )
    } else {
        None
    };
    Some(PosOperation {
        name: name.clone(),
        refused,
    })
}

/// The order a shift works through tasks, everywhere the terminal lists
/// them: by due time (undated last), then the more urgent first within
/// one due time. Callers add their own tie-breaks after it.
pub fn due_order(
    due: Option<DateTime<Utc>>,
    priority: Priority,
) -> (bool, Option<DateTime<Utc>>, std::cmp::Reverse<Priority>) {
    (due.is_none(), due, std::cmp::Reverse(priority))
}

fn done(t: &TaskView) -> bool {
    t.status.effective() == Status::Completed
}

/// Today's work: tasks of today's lists, tasks due today, and anything
/// still open whose due time has passed (yesterday's unfinished closing).
pub fn is_today(list: &InstanceView, t: &TaskView, clock: &Clock) -> bool {
    let today = clock.today();
    match t.spec.due {
        Some(due) => {
            clock.local_date(due) == today
                || (list.meta.date == today && clock.local_date(due) >= today)
                || engine::due::is_past_due(Some(due), !done(t), clock.now)
        }
        None => list.meta.date == today,
    }
}

/// Is `t` for this worker: assigned to them, or to their role or a group
/// they are in. Either side of an assignee conflict counts.
pub fn is_mine(t: &TaskView, worker: &WorkerId, rec: &RosterWorker) -> bool {
    let fits = |a: &Option<Assignee>| match a {
        Some(Assignee::Worker(w)) => w == worker,
        Some(Assignee::Group(g)) => rec.in_group(g),
        None => false,
    };
    fits(&t.spec.assignee) || t.assignee_conflict.iter().any(fits)
}

/// Is `t` on this worker's home screen: theirs ([`is_mine`]), or held by
/// nobody, so anyone on shift may do it. Unassigned work (every task in
/// the demo) would otherwise reach no one: "Nothing for you today" while
/// "All today" shows it late. Either side of an assignee conflict counts,
/// as in [`is_mine`]. The home screen, its tiles and the alerts all use
/// this one rule; "late first" follows from the due order of
/// [`today_by_list`].
pub fn is_for(t: &TaskView, worker: &WorkerId, rec: &RosterWorker) -> bool {
    is_mine(t, worker, rec) || is_for_anyone(t)
}

/// Held by nobody: unassigned, or unassigned on one side of an assignee
/// conflict nobody has decided yet.
pub fn is_for_anyone(t: &TaskView) -> bool {
    t.spec.assignee.is_none() || t.assignee_conflict.iter().any(Option::is_none)
}

/// Rows of one list, in due order (tasks without a due time last, then
/// by position).
#[derive(Debug, Clone, Serialize)]
pub struct ListGroup {
    pub list: DocumentId,
    pub name: String,
    pub date: NaiveDate,
    pub tasks: Vec<TaskRow>,
}

/// Today's tasks that pass `keep`, grouped by list; lists ordered by
/// their first due time, tasks by due time.
pub fn today_by_list(
    lists: &[InstanceView],
    clock: &Clock,
    keep: impl Fn(&TaskView) -> bool,
) -> Vec<ListGroup> {
    let mut groups: Vec<ListGroup> = lists
        .iter()
        .filter_map(|l| {
            let mut tasks: Vec<&TaskView> = l
                .tasks
                .iter()
                .filter(|t| is_today(l, t, clock) && keep(t))
                .collect();
            if tasks.is_empty() {
                return None;
            }
            tasks.sort_by_key(|t| {
                (
                    due_order(t.spec.due, t.spec.priority),
                    t.spec.position,
                    t.spec.id,
                )
            });
            Some(ListGroup {
                list: l.id,
                name: l.meta.name.clone(),
                date: l.meta.date,
                tasks: tasks.into_iter().map(|t| row(l, t, clock)).collect(),
            })
        })
        .collect();
    groups.sort_by_key(|g| {
        (
            g.tasks.iter().filter_map(|t| t.due).min().is_none(),
            g.tasks.iter().filter_map(|t| t.due).min(),
            g.name.clone(),
            g.list,
        )
    });
    groups
}

impl TaskRow {
    /// Still to do: not completed, or completed on one side of a conflict
    /// nobody has decided yet.
    pub fn is_open(&self) -> bool {
        self.status != Status::Completed || self.conflict
    }
}

/// Open tasks among `groups`: the pending-tasks tile.
pub fn pending(groups: &[ListGroup]) -> usize {
    groups
        .iter()
        .flat_map(|g| &g.tasks)
        .filter(|t| t.is_open())
        .count()
}

/// A task that needs attention soon, or is late.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    #[serde(flatten)]
    pub task: TaskRow,
    /// Minutes until due (upcoming) or since due (past due), rounded down.
    pub minutes: i64,
    /// How late, past due only, in the engine's words (the dashboard's).
    pub late: Option<String>,
    /// The same in units, for a screen that says it in the store's
    /// language (`engine::due::Lateness`).
    pub lateness: Option<engine::due::Lateness>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Notifications {
    pub now: DateTime<Utc>,
    pub time_zone: String,
    pub window_minutes: i64,
    /// Open tasks due within the window, soonest first.
    pub upcoming: Vec<Notice>,
    /// Open tasks whose due time has passed, most overdue first.
    pub past_due: Vec<Notice>,
    /// Open tasks of today (the role-center tile).
    pub pending: usize,
}

pub fn notifications(groups: &[ListGroup], clock: &Clock, window_minutes: i64) -> Notifications {
    let mut upcoming = Vec::new();
    let mut past_due = Vec::new();
    for t in groups.iter().flat_map(|g| &g.tasks) {
        if !t.is_open() {
            continue;
        }
        let Some(due) = t.due else { continue };
        let delta = (due - clock.now).num_minutes();
        if engine::due::has_passed(due, clock.now) {
            past_due.push(Notice {
                task: t.clone(),
                minutes: (clock.now - due).num_minutes(),
                late: Some(engine::due::late_text_ms(
                    due.timestamp_millis(),
                    clock.now.timestamp_millis(),
                )),
                lateness: Some(engine::due::Lateness::of((clock.now - due).num_minutes())),
            });
        } else if delta < window_minutes {
            upcoming.push(Notice {
                task: t.clone(),
                minutes: delta,
                late: None,
                lateness: None,
            });
        }
    }
    upcoming.sort_by_key(|n| (due_order(n.task.due, n.task.priority), n.task.task));
    past_due.sort_by_key(|n| (due_order(n.task.due, n.task.priority), n.task.task));
    Notifications {
        now: clock.now,
        time_zone: clock.tz.name().to_owned(),
        window_minutes,
        upcoming,
        past_due,
        pending: pending(groups),
    }
}

/// A disagreement waiting for a manager's decision.
#[derive(Debug, Clone, Serialize)]
pub struct Conflict {
    #[serde(flatten)]
    pub task: TaskRow,
    /// The concurrent status heads (each with who, where, when), if the
    /// status is in conflict.
    pub statuses: Vec<StatusEvent>,
    /// The concurrent assignee values, if the assignee is.
    pub assignees: Vec<Option<Assignee>>,
}

pub fn conflicts(lists: &[InstanceView], clock: &Clock) -> Vec<Conflict> {
    let mut out = Vec::new();
    for l in lists {
        for t in &l.tasks {
            if t.has_conflict() {
                out.push(Conflict {
                    task: row(l, t, clock),
                    statuses: t.status.conflict.clone(),
                    assignees: t.assignee_conflict.clone(),
                });
            }
        }
    }
    out.sort_by_key(|c| (due_order(c.task.due, c.task.priority), c.task.task));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use engine::model::TaskSpec;
    use engine::status::TaskStatus;
    use uuid::Uuid;

    fn task(n: u128, due: Option<DateTime<Utc>>, assignee: Option<&str>) -> TaskView {
        TaskView {
            spec: TaskSpec {
                id: TaskId(Uuid::from_u128(n)),
                title: format!("t{n}"),
                description: String::new(),
                start: None,
                due,
                priority: Priority::Normal,
                link: None,
                assignee: assignee.map(|a| a.parse().unwrap()),
                created_by: CreatedBy::Hq,
                position: n as i64,
            },
            assignee_conflict: Vec::new(),
            status: TaskStatus {
                current: Status::NotStarted,
                latest: None,
                conflict: Vec::new(),
                history: Vec::new(),
            },
        }
    }

    fn list(n: u128, date: NaiveDate, tasks: Vec<TaskView>) -> InstanceView {
        InstanceView {
            id: DocumentId(Uuid::from_u128(n)),
            meta: engine::model::ListMeta {
                store: "s1".parse().unwrap(),
                name: format!("list {n}"),
                template: None,
                date,
                time_zone: "Europe/Berlin".into(),
                created_by: CreatedBy::Hq,
            },
            tasks,
            malformed_events: 0,
        }
    }

    #[test]
    fn todays_tasks_group_by_list_in_due_order_and_notify_in_store_time() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 20:00 in Berlin (UTC+1 in November).
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 19, 0, 0).unwrap();
        let clock = Clock { tz, now };
        let today = clock.today();
        let at = |h, m| {
            tz.with_ymd_and_hms(2026, 11, 26, h, m, 0)
                .unwrap()
                .with_timezone(&Utc)
        };
        let yesterday = today.pred_opt().unwrap();
        let lists = vec![
            list(
                1,
                today,
                vec![
                    task(1, Some(at(21, 30)), Some("worker:w-1")),
                    task(2, Some(at(20, 15)), Some("group:closers")),
                    task(3, None, Some("worker:w-2")),
                ],
            ),
            list(
                2,
                yesterday,
                vec![
                    task(
                        4,
                        Some(at(19, 30) - chrono::Duration::days(1)),
                        Some("worker:w-1"),
                    ),
                    task(5, Some(at(9, 0) - chrono::Duration::days(3)), None),
                ],
            ),
        ];
        let rec = RosterWorker {
            name: "Ana".into(),
            role: "cashier".parse().unwrap(),
            groups: vec!["closers".parse().unwrap()],
            pin: None,
        };
        let me: WorkerId = "w-1".parse().unwrap();
        let mine = today_by_list(&lists, &clock, |t| is_mine(t, &me, &rec));
        let ids: Vec<Vec<u128>> = mine
            .iter()
            .map(|g| g.tasks.iter().map(|t| t.task.0.as_u128()).collect())
            .collect();
        assert_eq!(
            ids,
            vec![vec![4], vec![2, 1]],
            "overdue list first; due order"
        );
        assert_eq!(mine[1].tasks[0].due_local.as_deref(), Some("20:15"));
        assert_eq!(pending(&mine), 3);

        let n = notifications(&mine, &clock, 30);
        assert_eq!(n.upcoming.len(), 1);
        assert_eq!(n.upcoming[0].minutes, 15);
        assert_eq!(n.past_due.len(), 1);
        assert_eq!(n.past_due[0].task.task.0.as_u128(), 4);
        assert_eq!(n.past_due[0].minutes, 24 * 60 + 30);
        let wide = notifications(&mine, &clock, 120);
        assert_eq!(wide.upcoming.len(), 2);

        let all = today_by_list(&lists, &clock, |_| true);
        assert_eq!(all.iter().map(|g| g.tasks.len()).sum::<usize>(), 5);
    }

    /// Issue #24: in the demo every task is unassigned, and a worker's home
    /// said "Nothing for you today" with 0 past due while "All today"
    /// showed two late tasks. Work nobody holds is for anyone on shift:
    /// on the home screen, late first, and counted in its tiles.
    #[test]
    fn unassigned_work_is_for_anyone_on_shift_late_first() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 19, 0, 0).unwrap();
        let clock = Clock { tz, now };
        let at = |h, m| {
            tz.with_ymd_and_hms(2026, 11, 26, h, m, 0)
                .unwrap()
                .with_timezone(&Utc)
        };
        let mut contested = task(5, Some(at(21, 0)), Some("worker:w-2"));
        contested.assignee_conflict = vec![None, Some("worker:w-2".parse().unwrap())];
        let lists = vec![list(
            1,
            clock.today(),
            vec![
                task(1, Some(at(20, 10)), None),
                task(2, Some(at(15, 0)), None),
                task(3, Some(at(17, 45)), None),
                task(4, Some(at(16, 0)), Some("worker:w-2")),
                contested,
            ],
        )];
        let rec = RosterWorker {
            name: "Ana".into(),
            role: "cashier".parse().unwrap(),
            groups: Vec::new(),
            pin: None,
        };
        let me: WorkerId = "w-1".parse().unwrap();
        let t = |n: usize| &lists[0].tasks[n];
        assert!(is_for_anyone(t(0)) && !is_mine(t(0), &me, &rec));
        assert!(is_for(t(0), &me, &rec), "unassigned is for anyone on shift");
        assert!(!is_for(t(3), &me, &rec), "Bo's task stays Bo's");
        assert!(
            is_for(t(4), &me, &rec),
            "one side of an undecided assignment left it to anyone"
        );

        let home = today_by_list(&lists, &clock, |t| is_for(t, &me, &rec));
        let ids: Vec<u128> = home[0].tasks.iter().map(|t| t.task.0.as_u128()).collect();
        assert_eq!(ids, vec![2, 3, 1, 5], "late first, then in due order");
        assert!(home[0].tasks[0].past_due && home[0].tasks[1].past_due);
        let n = notifications(&home, &clock, 30);
        assert_eq!(n.pending, 4, "the pending tile counts them");
        assert_eq!(
            n.past_due
                .iter()
                .map(|n| n.task.title.as_str())
                .collect::<Vec<_>>(),
            vec!["t2", "t3"],
            "the past-due tile counts them, most overdue first"
        );
        assert_eq!(n.upcoming.len(), 1);
        // Done, unassigned work leaves the tiles like anyone's.
        let mut finished = lists.clone();
        finished[0].tasks[1].status.current = Status::Completed;
        let home = today_by_list(&finished, &clock, |t| is_for(t, &me, &rec));
        assert_eq!(notifications(&home, &clock, 30).past_due.len(), 1);
    }

    /// Past due is `engine::due`'s rule on every path of the terminal: at
    /// its due millisecond a task is due, not late; a millisecond later it
    /// is late in the alerts, in "today" and on its row alike.
    #[test]
    fn past_due_begins_after_the_due_time_on_every_path() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let due = Utc.with_ymd_and_hms(2026, 11, 25, 17, 0, 0).unwrap();
        // Yesterday's list: only a late task is still "today".
        let yesterday = due.with_timezone(&tz).date_naive();
        let lists = vec![list(1, yesterday, vec![task(1, Some(due), None)])];
        for (now, late) in [
            (due, false),
            (due + chrono::Duration::milliseconds(1), true),
        ] {
            let clock = Clock { tz, now };
            let t = &lists[0].tasks[0];
            assert_eq!(row(&lists[0], t, &clock).past_due, late, "row at {now}");
            let all = today_by_list(&lists, &clock, |_| true);
            let n = notifications(&all, &clock, 30);
            assert_eq!(n.past_due.len(), late as usize, "alerts at {now}");
            assert_eq!(
                n.upcoming.len(),
                !late as usize,
                "due now is upcoming at {now}"
            );
        }
        // Two days on, an open late task is still in today's work; done, it is not.
        let later = Clock {
            tz,
            now: due + chrono::Duration::days(2),
        };
        assert!(is_today(&lists[0], &lists[0].tasks[0], &later));
        let mut done = lists[0].tasks[0].clone();
        done.status.current = Status::Completed;
        assert!(!is_today(&lists[0], &done, &later));
        assert!(!row(&lists[0], &done, &later).past_due);
    }

    /// Issue #24 item 5: only a sane operation name reaches the POS host.
    #[test]
    fn only_sane_pos_operation_names_are_handed_on() {
        let op = |s: &str| pos_operation(Some(&Link::PosOperation(s.into()))).unwrap();
        for ok in ["price-check", "till.count_2", "a"] {
            assert_eq!(op(ok).refused, None, "{ok}");
        }
        for bad in ["Open Drawer", "x/../y", "price check", "PRICE", "émoji", ""] {
            assert!(op(bad).refused.is_some(), "{bad:?}");
        }
        assert!(op(&"a".repeat(POS_OPERATION_MAX)).refused.is_none());
        assert!(op(&"a".repeat(POS_OPERATION_MAX + 1)).refused.is_some());
        assert_eq!(
            pos_operation(Some(&Link::Url("https://example.com".into()))),
            None
        );
        assert_eq!(pos_operation(None), None);
    }

    /// Within one due time the more urgent task comes first; undated last.
    #[test]
    fn due_order_puts_the_more_urgent_first_within_one_due_time() {
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 19, 0, 0).unwrap();
        let mut keys = [
            (Some(at), Priority::Low),
            (None, Priority::Urgent),
            (Some(at), Priority::Urgent),
            (Some(at - chrono::Duration::minutes(1)), Priority::Low),
            (Some(at), Priority::Normal),
        ];
        keys.sort_by_key(|&(d, p)| due_order(d, p));
        assert_eq!(
            keys.map(|k| k.1),
            [
                Priority::Low,
                Priority::Urgent,
                Priority::Normal,
                Priority::Low,
                Priority::Urgent
            ]
        );
    }
}
