//! Which stores HQ looks at first (issue #23): the fleet's order by
//! trouble, and the roll-up's figures (share completed on time), once,
//! for every screen and query that lists stores or adds them up.

use std::cmp::Ordering;

use serde::Serialize;

use crate::storage::StoreListRow;

/// What makes a store need attention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trouble {
    /// Sync connections open now.
    pub connections: usize,
    /// Unix ms of its last sync; `None`: it never synced.
    pub last_sync_ms: Option<i64>,
    /// Open tasks past their due time.
    pub past_due: usize,
}

impl Trouble {
    /// How a store stands, most troubled first: offline after having
    /// synced (the longest offline first), then never synced, then online.
    fn rank(&self) -> u8 {
        match (self.connections > 0, self.last_sync_ms) {
            (false, Some(_)) => 0,
            (false, None) => 1,
            (true, _) => 2,
        }
    }

    /// Most troubled first: offline longest, never synced, then the most
    /// past due (which also orders stores within the first two).
    pub fn order(&self, other: &Trouble) -> Ordering {
        self.rank().cmp(&other.rank()).then_with(|| {
            let offline_since = |t: &Trouble| match t.rank() {
                0 => t.last_sync_ms,
                _ => None,
            };
            offline_since(self)
                .cmp(&offline_since(other))
                .then(other.past_due.cmp(&self.past_due))
        })
    }

    /// In a few words, what the trouble is (`None`: none).
    pub fn words(&self) -> Option<&'static str> {
        match (self.rank(), self.past_due) {
            (0, _) => Some("offline"),
            (1, _) => Some("never synced"),
            (_, 0) => None,
            _ => Some("past due"),
        }
    }
}

/// How a set of lists stands over some days: one store's list, a store,
/// a store group. Sums of the status index's [`StoreListRow`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OnTime {
    pub tasks: u32,
    pub completed: u32,
    /// Completed by their due time (or with none).
    pub on_time: u32,
    /// Open after their due time.
    pub past_due: u32,
    pub conflicts: u32,
}

impl std::ops::AddAssign for OnTime {
    fn add_assign(&mut self, other: OnTime) {
        self.tasks += other.tasks;
        self.completed += other.completed;
        self.on_time += other.on_time;
        self.past_due += other.past_due;
        self.conflicts += other.conflicts;
    }
}

impl OnTime {
    pub fn add(&mut self, row: &StoreListRow) {
        *self += OnTime {
            tasks: row.tasks,
            completed: row.completed,
            on_time: row.on_time,
            past_due: row.past_due,
            conflicts: row.conflicts,
        };
    }

    pub fn of(rows: impl IntoIterator<Item = impl std::borrow::Borrow<StoreListRow>>) -> OnTime {
        let mut sum = OnTime::default();
        for r in rows {
            sum.add(r.borrow());
        }
        sum
    }

    /// The share of the tasks that were due or done (completed, or open
    /// past due) that were completed on time, 0..=1; `None` when no task
    /// was due or done yet. A task still open before its due time is not
    /// counted either way: it may yet be done on time.
    pub fn share(&self) -> Option<f64> {
        let due_or_done = self.completed + self.past_due;
        (due_or_done > 0).then(|| f64::from(self.on_time) / f64::from(due_or_done))
    }

    /// Most behind first: the lowest share on time (none due yet last),
    /// then the most past due, then the most conflicts.
    pub fn order(&self, other: &OnTime) -> Ordering {
        let share = |t: &OnTime| t.share().unwrap_or(f64::INFINITY);
        share(self)
            .total_cmp(&share(other))
            .then(other.past_due.cmp(&self.past_due))
            .then(other.conflicts.cmp(&self.conflicts))
    }
}

/// `ms` on the store's clock with the zone named, as HQ reads a store's
/// times: `2026-12-07 07:00 JST (Asia/Tokyo)`; in UTC, so named, if the
/// zone is unknown.
pub fn in_store_zone(ms: i64, zone: &str) -> String {
    let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
        return String::new();
    };
    match zone.parse::<chrono_tz::Tz>() {
        Ok(tz) => format!(
            "{} ({zone})",
            t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z")
        ),
        Err(_) => format!("{} (UTC)", t.format("%Y-%m-%d %H:%M")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tasks: u32, completed: u32, on_time: u32, past_due: u32) -> StoreListRow {
        StoreListRow {
            store: "s".into(),
            list: "l".into(),
            instances: 1,
            tasks,
            completed,
            on_time,
            past_due,
            conflicts: 0,
        }
    }

    #[test]
    fn the_share_on_time_counts_what_was_due_or_done() {
        // 4 done (3 on time), 2 open past due, 4 open not yet due.
        let t = OnTime::of([row(6, 4, 3, 2), row(4, 0, 0, 0)]);
        assert_eq!((t.tasks, t.completed, t.on_time, t.past_due), (10, 4, 3, 2));
        assert_eq!(t.share(), Some(0.5));
        assert_eq!(
            OnTime::of([row(4, 0, 0, 0)]).share(),
            None,
            "nothing due yet"
        );
        let mut groups = [
            ("nothing due", OnTime::of([row(4, 0, 0, 0)])),
            ("all on time", OnTime::of([row(2, 2, 2, 0)])),
            ("half, 1 past due", OnTime::of([row(2, 1, 1, 1)])),
            ("half, 2 past due", OnTime::of([row(4, 2, 2, 2)])),
        ];
        groups.sort_by(|a, b| a.1.order(&b.1));
        let names: Vec<&str> = groups.iter().map(|g| g.0).collect();
        assert_eq!(
            names,
            [
                "half, 2 past due",
                "half, 1 past due",
                "all on time",
                "nothing due"
            ]
        );
    }

    #[test]
    fn a_time_reads_on_the_stores_clock_with_the_zone_named() {
        // 2026-12-06 22:00 UTC is 07:00 the next morning in Tokyo.
        let ms = 1_796_594_400_000;
        assert_eq!(
            in_store_zone(ms, "Asia/Tokyo"),
            "2026-12-07 07:00 JST (Asia/Tokyo)"
        );
        assert_eq!(in_store_zone(ms, "Mars/Base"), "2026-12-06 22:00 (UTC)");
    }

    fn t(connections: usize, last_sync_ms: Option<i64>, past_due: usize) -> Trouble {
        Trouble {
            connections,
            last_sync_ms,
            past_due,
        }
    }

    #[test]
    fn offline_longest_then_never_synced_then_most_past_due() {
        let mut stores = [
            ("online, fine", t(1, Some(90), 0)),
            ("online, 3 past due", t(2, Some(90), 3)),
            ("never synced", t(0, None, 0)),
            ("offline since 50", t(0, Some(50), 0)),
            ("offline since 10", t(0, Some(10), 0)),
            ("never synced, 1 past due", t(0, None, 1)),
            ("online, 1 past due", t(1, Some(90), 1)),
        ];
        stores.sort_by(|a, b| a.1.order(&b.1));
        let names: Vec<&str> = stores.iter().map(|s| s.0).collect();
        assert_eq!(
            names,
            [
                "offline since 10",
                "offline since 50",
                "never synced, 1 past due",
                "never synced",
                "online, 3 past due",
                "online, 1 past due",
                "online, fine",
            ]
        );
        assert_eq!(t(1, Some(9), 0).words(), None);
        assert_eq!(t(1, Some(9), 2).words(), Some("past due"));
    }
}
