//! Caps on the sync connections one token and one store hold open at once.
//! A slot is taken at the WebSocket upgrade, before the hub answers 101,
//! and given back when the `Slot` is dropped: whatever ends the connection
//! (the peer's close, a dropped socket, a hub-side close, a failed
//! upgrade, a panic in the connection's task) releases it.
//!
//! Without them one leaked store token opened a thousand connections, each
//! a file descriptor and about 14 KB, until the hub had no descriptors left
//! for the other stores.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use engine::ids::Principal;

/// How many sync connections may be open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// Per token. A terminal holds one connection; after a network fault
    /// the hub keeps the dead one until the keepalive notices (three
    /// intervals, 90 s by default) while the terminal already reconnects,
    /// so one terminal briefly holds two or three.
    pub per_token: usize,
    /// Per store, over all its tokens: its terminals, each with its own
    /// token or sharing one.
    pub per_store: usize,
}

/// A store has a handful of terminals (one to eight tills is usual). 16
/// per token covers eight terminals sharing one token through a reconnect
/// each; 32 per store covers sixteen terminals, or a token rotation where
/// old and new tokens are both in use. A leaked token holds at most 16
/// descriptors (about 224 KB), its store at most 32.
impl Default for ConnectionCaps {
    fn default() -> Self {
        ConnectionCaps {
            per_token: 16,
            per_store: 32,
        }
    }
}

/// Why an upgrade was refused; the text is what the peer reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "this token already holds {cap} open sync connections, the most one token may hold; \
         close one, or raise the cap with `hub serve --max-connections-per-token N`"
    )]
    Token { cap: usize },
    #[error(
        "{principal} already holds {cap} open sync connections, the most one store may hold; \
         close one, or raise the cap with `hub serve --max-connections-per-store N`"
    )]
    Store { principal: Principal, cap: usize },
}

#[derive(Default)]
struct Held {
    /// By token hash: raw tokens are not kept.
    by_token: HashMap<[u8; 32], Count>,
    by_principal: HashMap<Principal, Count>,
}

#[derive(Default)]
struct Count {
    open: usize,
    /// A refusal was logged since a slot was last released: a peer that
    /// keeps trying at the cap is logged once, not at every attempt.
    refusal_logged: bool,
}

/// The connections open per token and per store.
pub struct ConnectionSlots {
    caps: ConnectionCaps,
    held: Mutex<Held>,
    /// Upgrades refused over a cap, for `/metrics` (the log says only
    /// the first of a run of refusals).
    refused: AtomicU64,
}

/// One open connection's place under the caps; released on drop.
pub struct Slot {
    slots: Arc<ConnectionSlots>,
    token: [u8; 32],
    principal: Principal,
}

/// A refusal, and whether it is the first since the peer last had a free
/// slot (log that one).
#[derive(Debug)]
pub struct Refusal {
    pub why: Refused,
    pub first: bool,
}

impl ConnectionSlots {
    pub fn new(caps: ConnectionCaps) -> Arc<ConnectionSlots> {
        Arc::new(ConnectionSlots {
            caps,
            held: Mutex::new(Held::default()),
            refused: AtomicU64::new(0),
        })
    }

    pub fn caps(&self) -> ConnectionCaps {
        self.caps
    }

    /// A slot for one more connection of `token_hash`, which belongs to
    /// `principal`. Checked and counted under one lock, so upgrades racing
    /// each other never exceed a cap.
    pub fn take(
        self: &Arc<Self>,
        token_hash: [u8; 32],
        principal: &Principal,
    ) -> Result<Slot, Refusal> {
        let mut held = self.lock();
        let Held {
            by_token,
            by_principal,
        } = &mut *held;
        let token = by_token.entry(token_hash).or_default();
        let store = by_principal.entry(principal.clone()).or_default();
        let why = if token.open >= self.caps.per_token {
            Some(Refused::Token {
                cap: self.caps.per_token,
            })
        } else if store.open >= self.caps.per_store {
            Some(Refused::Store {
                principal: principal.clone(),
                cap: self.caps.per_store,
            })
        } else {
            None
        };
        if let Some(why) = why {
            let count = match why {
                Refused::Token { .. } => token,
                Refused::Store { .. } => store,
            };
            self.refused.fetch_add(1, Ordering::Relaxed);
            let first = !count.refusal_logged;
            count.refusal_logged = true;
            // An entry made for this attempt alone holds nothing.
            by_token.retain(|_, c| c.open > 0 || c.refusal_logged);
            by_principal.retain(|_, c| c.open > 0 || c.refusal_logged);
            return Err(Refusal { why, first });
        }
        token.open += 1;
        store.open += 1;
        Ok(Slot {
            slots: self.clone(),
            token: token_hash,
            principal: principal.clone(),
        })
    }

    /// Upgrades refused over a cap since the hub started.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections `principal` holds open (all its tokens).
    pub fn open_for(&self, principal: &Principal) -> usize {
        self.lock()
            .by_principal
            .get(principal)
            .map_or(0, |c| c.open)
    }

    fn release(&self, token: &[u8; 32], principal: &Principal) {
        let mut held = self.lock();
        fn down<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Count>, key: &K) {
            if let Some(c) = map.get_mut(key) {
                c.open = c.open.saturating_sub(1);
                c.refusal_logged = false;
                if c.open == 0 {
                    map.remove(key);
                }
            }
        }
        down(&mut held.by_token, token);
        down(&mut held.by_principal, principal);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // Counts stay consistent even if a holder panicked: every change
        // is made whole under the lock.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(&self.token, &self.principal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(s: &str) -> Principal {
        Principal::Store(s.parse().unwrap())
    }

    #[test]
    fn caps_hold_per_token_and_per_store_and_dropping_a_slot_frees_it() {
        let slots = ConnectionSlots::new(ConnectionCaps {
            per_token: 2,
            per_store: 3,
        });
        let a = store("store-a");
        let t1 = slots.take([1; 32], &a).unwrap();
        let _t1b = slots.take([1; 32], &a).unwrap();
        let refused = slots.take([1; 32], &a).err().unwrap();
        assert_eq!(refused.why, Refused::Token { cap: 2 });
        assert!(refused.first);
        assert!(!slots.take([1; 32], &a).err().unwrap().first, "logged once");
        let _t2 = slots.take([2; 32], &a).unwrap();
        let refused = slots.take([3; 32], &a).err().unwrap();
        assert_eq!(
            refused.why,
            Refused::Store {
                principal: a.clone(),
                cap: 3
            }
        );
        assert!(refused
            .why
            .to_string()
            .contains("--max-connections-per-store"));
        // Another store is not affected.
        let _b = slots.take([9; 32], &store("store-b")).unwrap();
        assert_eq!(slots.open_for(&a), 3);
        assert_eq!(slots.refused(), 3);
        drop(t1);
        assert_eq!(slots.open_for(&a), 2);
        let again = slots.take([1; 32], &a);
        assert!(again.is_ok(), "the released slot is free again");
        assert!(
            slots.take([3; 32], &a).err().unwrap().first,
            "a new refusal after a release is logged again"
        );
    }

    #[test]
    fn racing_takes_never_exceed_the_cap() {
        let slots = ConnectionSlots::new(ConnectionCaps {
            per_token: 5,
            per_store: 100,
        });
        let a = store("store-a");
        let taken: Vec<Slot> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..64)
                .map(|_| s.spawn(|| slots.take([7; 32], &a).ok()))
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(taken.len(), 5);
        assert_eq!(slots.open_for(&a), 5);
        drop(taken);
        assert_eq!(slots.open_for(&a), 0);
        assert!(slots.lock().by_token.is_empty() && slots.lock().by_principal.is_empty());
    }
}
