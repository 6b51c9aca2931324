//! The replica threads of one hub node, and which one a piece of work
//! goes to.
//!
//! A store's documents, its terminals' connections and its fan-out live
//! on one replica thread (a `Hub` and its database connection, see
//! `runtime`). On the embedded SQLite database there is exactly one: the
//! file has one writer. A cluster node on PostgreSQL runs several
//! (`--replica-threads`), each serving the stores that hash to it among
//! those the node holds the lease of, so a node uses all its cores. The
//! threads of a node are to each other what nodes are to each other: a
//! thread writes only its own stores' documents (the fence checks it),
//! and reads another's afresh from the database.
//!
//! Work goes to:
//! - `for_store`: everything about one store's documents or connections
//!   (a terminal's sync, its roster, a publish to it, its removal);
//! - `registry`: the shared rows any thread may read or write (tokens,
//!   accounts, audit, store groups, templates) and reads of the shared
//!   database (a thread not serving a store reads its rows afresh);
//! - `each`: what concerns every store or connection (a revoked token's
//!   connections, purges, timers, counters and health).

use std::sync::Arc;

use engine::ids::StoreId;
use engine::replica::hub::Hub;
use engine::replica::Output;
use tracing::warn;

use crate::runtime::HubHandle;

/// A node's replica threads. Cheap to clone.
#[derive(Clone)]
pub struct Replicas {
    threads: Arc<[HubHandle]>,
}

impl Replicas {
    /// A node with the replica threads `threads` (at least one), where
    /// thread `i` serves the stores `thread_of(store, threads.len()) == i`.
    pub fn new(threads: Vec<HubHandle>) -> Replicas {
        assert!(
            !threads.is_empty(),
            "a node runs at least one replica thread"
        );
        Replicas {
            threads: threads.into(),
        }
    }

    /// How many replica threads this node runs.
    pub fn count(&self) -> usize {
        self.threads.len()
    }

    /// The thread that serves `store`'s documents and connections.
    pub fn for_store(&self, store: &StoreId) -> &HubHandle {
        &self.threads[thread_of(store, self.threads.len())]
    }

    /// The thread for the shared registry and reads of the database: the
    /// first (on the embedded database, the only one).
    pub fn registry(&self) -> &HubHandle {
        &self.threads[0]
    }

    /// Message handling times, one histogram for every thread.
    pub fn latency(&self) -> &crate::metrics::Latency {
        &self.threads[0].latency
    }

    /// Every thread, in order.
    pub fn each(&self) -> &[HubHandle] {
        &self.threads
    }

    /// Run `f` on every thread (in turn, each waiting for its answer) and
    /// collect the answers in thread order.
    pub async fn call_each<T: Send + 'static>(
        &self,
        f: impl Fn(&mut Hub, i64) -> (T, Vec<Output>) + Clone + Send + 'static,
    ) -> anyhow::Result<Vec<T>> {
        let mut all = Vec::with_capacity(self.threads.len());
        for t in self.threads.iter() {
            all.push(t.call(f.clone()).await?);
        }
        Ok(all)
    }

    /// [`Replicas::call_each`] with `HubHandle::call_soon` (reads only).
    pub async fn call_soon_each<T: Send + 'static>(
        &self,
        f: impl Fn(&mut Hub, i64) -> (T, Vec<Output>) + Clone + Send + 'static,
    ) -> anyhow::Result<Vec<T>> {
        let mut all = Vec::with_capacity(self.threads.len());
        for t in self.threads.iter() {
            all.push(t.call_soon(f.clone()).await?);
        }
        Ok(all)
    }

    /// After a registry write that changes which lists stores get (a
    /// template saved or assigned, a store group's members, a store's
    /// zone): the other threads make their stores' lists now, not at
    /// their timer's next tick. (The thread that wrote made its own.)
    pub async fn materialize_on_other_threads(&self, except: &HubHandle) {
        for t in self.threads.iter().filter(|t| !t.same_thread(except)) {
            let r = t
                .call(|h, now| match h.materialize_horizon(now) {
                    Ok(out) => (Ok(()), out),
                    Err(e) => (Err(e), Vec::new()),
                })
                .await;
            if let Ok(Err(e)) = r {
                warn!(error = %e, "materializing recurring lists failed; the timer retries");
            }
        }
    }

    /// A token with this hash was revoked or expired on the registry
    /// thread, which closed its holders there: close them on the others.
    pub async fn close_token_on_other_threads(&self, hash: [u8; 32]) {
        for t in self.threads.iter().skip(1) {
            let r = t
                .call(move |h, _| match h.token_ended_elsewhere(hash) {
                    Ok(out) => (Ok(()), out),
                    Err(e) => (Err(e), Vec::new()),
                })
                .await;
            if let Ok(Err(e)) = r {
                warn!(error = %e, "could not close a revoked token's connections");
            }
        }
    }

    /// `stores` split by the thread that serves each, in thread order,
    /// leaving out threads with none.
    pub fn split(&self, stores: Vec<StoreId>) -> Vec<(&HubHandle, Vec<StoreId>)> {
        let mut shares: Vec<Vec<StoreId>> = vec![Vec::new(); self.threads.len()];
        for s in stores {
            shares[thread_of(&s, self.threads.len())].push(s);
        }
        self.threads
            .iter()
            .zip(shares)
            .filter(|(_, share)| !share.is_empty())
            .collect()
    }
}

/// Which of `threads` replica threads serves `store`: FNV-1a of its id.
/// Stable for a given count (a node keeps its count for its lifetime).
pub fn thread_of(store: &StoreId, threads: usize) -> usize {
    if threads <= 1 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in store.as_str().as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % threads as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_spread_over_the_threads_and_each_stays_on_one() {
        let stores: Vec<StoreId> = (0..1000)
            .map(|i| format!("store-{i:04}").parse().unwrap())
            .collect();
        let mut per = [0usize; 4];
        for s in &stores {
            let t = thread_of(s, 4);
            assert_eq!(t, thread_of(s, 4), "always the same thread");
            per[t] += 1;
        }
        // Within a fifth of an even share each.
        for n in per {
            assert!((200..=300).contains(&n), "{per:?}");
        }
        assert!(stores.iter().all(|s| thread_of(s, 1) == 0));
    }
}
