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
