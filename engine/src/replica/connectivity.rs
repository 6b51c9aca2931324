//! Which stores are syncing now and when each last did: kept by the hub
//! replica as connections open, send frames and close (inputs like any
//! other), read by the admin API through `Hub::store_links`. Last-sync
//! times go to the database at a bounded rate (at most once per
//! [`WRITE_EVERY_MS`] per store, and on disconnect), not per frame, in the
//! unit of work of the input that made them due.

use std::collections::HashMap;

use crate::ids::{Principal, StoreId};
use crate::replica::ConnId;

/// A store's last-sync time is written at most this often while it syncs.
pub const WRITE_EVERY_MS: i64 = 10_000;

#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Last frame received or connection opened (unix ms).
    last: i64,
    /// What the database holds (0: nothing written by this run yet).
    written: i64,
}

/// Store connections and last-sync times as the hub thread sees them.
#[derive(Debug, Default)]
pub struct StoreActivity {
    stores_of_conns: HashMap<ConnId, StoreId>,
    seen: HashMap<StoreId, Seen>,
}

/// What the admin API reports for one store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreLink {
    pub connections: usize,
    /// Unix ms, from this run (the database may know an older time).
    pub last_sync_ms: Option<i64>,
}

impl StoreActivity {
    /// A connection authenticated as `principal` opened. Returns a last-sync
    /// time to write now, if one is due.
    pub fn connected(
        &mut self,
        conn: ConnId,
        principal: &Principal,
        now_ms: i64,
    ) -> Option<(StoreId, i64)> {
        let Principal::Store(store) = principal else {
            return None;
        };
        self.stores_of_conns.insert(conn, store.clone());
        self.touch(store.clone(), now_ms)
    }

    /// A frame arrived on `conn`.
    pub fn frame(&mut self, conn: ConnId, now_ms: i64) -> Option<(StoreId, i64)> {
        let store = self.stores_of_conns.get(&conn)?.clone();
        self.touch(store, now_ms)
    }

    /// `conn` closed (called again for an already closed one: no effect).
    /// Writes the store's latest time if the database lags behind it.
    pub fn disconnected(&mut self, conn: ConnId) -> Option<(StoreId, i64)> {
        let store = self.stores_of_conns.remove(&conn)?;
        let seen = self.seen.get_mut(&store)?;
        (seen.last > seen.written).then(|| {
            seen.written = seen.last;
            (store, seen.last)
        })
    }

    /// Every time not yet written (at shutdown).
    pub fn unwritten(&mut self) -> Vec<(StoreId, i64)> {
        self.seen
            .iter_mut()
            .filter(|(_, s)| s.last > s.written)
            .map(|(store, s)| {
                s.written = s.last;
                (store.clone(), s.last)
            })
            .collect()
    }

    fn touch(&mut self, store: StoreId, now_ms: i64) -> Option<(StoreId, i64)> {
        let seen = self.seen.entry(store.clone()).or_insert(Seen {
            last: now_ms,
            written: 0,
        });
        seen.last = seen.last.max(now_ms);
        let due = seen.written == 0 || seen.last - seen.written >= WRITE_EVERY_MS;
        due.then(|| {
            seen.written = seen.last;
            (store, seen.last)
        })
    }

    /// Open connections and last-sync time (this run) of every store seen.
    pub fn links(&self) -> HashMap<StoreId, StoreLink> {
        let mut out: HashMap<StoreId, StoreLink> = self
            .seen
            .iter()
            .map(|(store, s)| {
                let link = StoreLink {
                    connections: 0,
                    last_sync_ms: Some(s.last),
                };
                (store.clone(), link)
            })
            .collect();
        for store in self.stores_of_conns.values() {
            out.entry(store.clone())
                .or_insert(StoreLink {
                    connections: 0,
                    last_sync_ms: None,
                })
                .connections += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(s: &str) -> Principal {
        Principal::Store(s.parse().unwrap())
    }

    #[test]
    fn last_sync_is_written_at_a_bounded_rate_and_on_disconnect() {
        let mut a = StoreActivity::default();
        let s1: StoreId = "s1".parse().unwrap();
        assert_eq!(
            a.connected(1, &store("s1"), 1_000),
            Some((s1.clone(), 1_000))
        );
        // Frames within the interval are remembered, not written.
        for t in [2_000, 5_000, 10_999] {
            assert_eq!(a.frame(1, t), None);
        }
        assert_eq!(a.links()[&s1].last_sync_ms, Some(10_999));
        assert_eq!(a.frame(1, 11_000), Some((s1.clone(), 11_000)));
        assert_eq!(a.frame(1, 12_000), None);
        // A second terminal of the same store does not reset the clock.
        assert_eq!(a.connected(2, &store("s1"), 13_000), None);
        assert_eq!(a.links()[&s1].connections, 2);
        assert_eq!(a.disconnected(1), Some((s1.clone(), 13_000)));
        assert_eq!(a.disconnected(1), None, "a second close is ignored");
        assert_eq!(a.disconnected(2), None, "nothing newer to write");
        assert_eq!(
            a.links()[&s1],
            StoreLink {
                connections: 0,
                last_sync_ms: Some(13_000)
            }
        );
        assert_eq!(a.frame(2, 20_000), None, "frames of closed connections");
        assert!(a.unwritten().is_empty());
    }

    #[test]
    fn hq_connections_are_not_stores() {
        let mut a = StoreActivity::default();
        assert_eq!(a.connected(1, &Principal::Hq, 1_000), None);
        assert_eq!(a.frame(1, 2_000), None);
        assert!(a.links().is_empty());
    }

    #[test]
    fn shutdown_writes_what_the_interval_held_back() {
        let mut a = StoreActivity::default();
        a.connected(1, &store("s1"), 1_000);
        a.frame(1, 4_000);
        assert_eq!(a.unwritten(), vec![("s1".parse().unwrap(), 4_000)]);
        assert!(a.unwritten().is_empty());
    }
}
