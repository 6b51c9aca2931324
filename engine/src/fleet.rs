//! Which stores HQ looks at first (issue #23): the fleet's order by
//! trouble, once, for every screen and query that lists stores.

use std::cmp::Ordering;

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

#[cfg(test)]
mod tests {
    use super::*;

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
