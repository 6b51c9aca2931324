//! When a task is past due: one rule for every screen, query and check
//! (the terminal's views and alerts, the hub's status index and its
//! dashboard). A task due at 18:00 is due *at* 18:00:00.000, and past due
//! from the next millisecond on; an open task with no due time never is.

use chrono::{DateTime, Utc};

/// Has a due time of `due_ms` passed at `now_ms` (both Unix milliseconds)?
pub fn has_passed_ms(due_ms: i64, now_ms: i64) -> bool {
    due_ms < now_ms
}

/// [`has_passed_ms`] on times.
pub fn has_passed(due: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    has_passed_ms(due.timestamp_millis(), now.timestamp_millis())
}

/// Is an open task with due time `due` past due at `now`?
pub fn is_past_due(due: Option<DateTime<Utc>>, open: bool, now: DateTime<Utc>) -> bool {
    open && due.is_some_and(|d| has_passed(d, now))
}

/// How late a task due at `due_ms` is at `now_ms`, in the words every
/// screen uses: the terminal's alerts and the dashboard's past-due list.
pub fn late_text_ms(due_ms: i64, now_ms: i64) -> String {
    late_text((now_ms - due_ms).max(0) / 60_000)
}

/// `minutes` late, in whole minutes rounded down: "45 min late" under an
/// hour, "4 h 45 min late" under two days, then "3 days late". A shift
/// reads hours and minutes; "285 min late" makes a worker do sums.
pub fn late_text(minutes: i64) -> String {
    match Lateness::of(minutes) {
        Lateness::Minutes { minutes } => format!("{minutes} min late"),
        Lateness::Hours { hours, minutes } => format!("{hours} h {minutes} min late"),
        Lateness::Days { days } => format!("{days} days late"),
    }
}

/// How late, in the units [`late_text`] says it: for a screen that says
/// it in another language with the same rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "unit", rename_all = "snake_case")]
pub enum Lateness {
    /// Under an hour.
    Minutes {
        minutes: i64,
    },
    /// Under two days.
    Hours {
        hours: i64,
        minutes: i64,
    },
    Days {
        days: i64,
    },
}

impl Lateness {
    /// `minutes` late (rounded down; negative reads as 0).
    pub fn of(minutes: i64) -> Lateness {
        let m = minutes.max(0);
        if m < 60 {
            Lateness::Minutes { minutes: m }
        } else if m < 48 * 60 {
            Lateness::Hours {
                hours: m / 60,
                minutes: m % 60,
            }
        } else {
            Lateness::Days {
                days: m / (24 * 60),
            }
        }
    }
}

/// The same rule in SQL, over a `due_ms` column and the query's `?2` as
/// now (ms): `storage::status_index` builds its past-due queries from it,
/// and `tests::the_sql_rule_is_the_rust_rule` holds the two together.
#[macro_export]
macro_rules! due_has_passed_sql {
    () => {
        "(due_ms IS NOT NULL AND due_ms < ?2)"
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_is_not_yet_past_at_its_own_millisecond() {
        let due = 1_800_000_000_000;
        assert!(!has_passed_ms(due, due - 1));
        assert!(
            !has_passed_ms(due, due),
            "at the due time it is due, not late"
        );
        assert!(has_passed_ms(due, due + 1));
        let t = |ms| DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
        assert!(!is_past_due(Some(t(due)), true, t(due)));
        assert!(is_past_due(Some(t(due)), true, t(due + 1)));
        assert!(
            !is_past_due(Some(t(due)), false, t(due + 1)),
            "done is never late"
        );
        assert!(!is_past_due(None, true, t(due + 1)));
    }

    #[test]
    fn lateness_reads_in_hours_and_minutes() {
        assert_eq!(late_text(0), "0 min late");
        assert_eq!(late_text(59), "59 min late");
        assert_eq!(late_text(60), "1 h 0 min late");
        assert_eq!(late_text(285), "4 h 45 min late");
        assert_eq!(late_text(48 * 60 - 1), "47 h 59 min late");
        assert_eq!(late_text(3 * 24 * 60 + 5), "3 days late");
        let due = 1_800_000_000_000;
        assert_eq!(late_text_ms(due, due + 1), "0 min late");
        assert_eq!(
            late_text_ms(due, due + 285 * 60_000 + 59_999),
            "4 h 45 min late",
            "rounded down, as the alerts count minutes"
        );
        assert_eq!(late_text_ms(due, due - 1), "0 min late");
    }

    #[test]
    fn the_sql_rule_is_the_rust_rule() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let sql = concat!(
            "SELECT ",
            due_has_passed_sql!(),
            " FROM (SELECT ?1 AS due_ms)"
        );
        let due = 1_800_000_000_000_i64;
        for now in [due - 1, due, due + 1] {
            let passed: bool = c
                .query_row(sql, rusqlite::params![due, now], |r| r.get(0))
                .unwrap();
            assert_eq!(passed, has_passed_ms(due, now), "now = due {:+}", now - due);
        }
        let none: Option<bool> = c
            .query_row(sql, rusqlite::params![None::<i64>, due], |r| r.get(0))
            .unwrap();
        assert_eq!(none, Some(false));
    }
}
