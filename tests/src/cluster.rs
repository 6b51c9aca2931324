//! The cluster's leases and fence, modelled on simulated time for tests of
//! several hubs: one shared lease table (the `store_leases` rows of the
//! design memo, with `lease_history`), and a database wrapper that applies
//! the memo's fence rule to the hub's SQLite file, which every simulated
//! node opens (it stands in for the one PostgreSQL database).
//!
//! The rule: a unit of work that wrote anything belonging to a store
//! commits only if this node holds that store's lease at the epoch it
//! claimed, unexpired at the moment of the commit; otherwise nothing of it
//! is saved and the commit returns `StorageError::LeaseLost`. A write
//! outside a batch is its own unit of work and is fenced the same way.
//! Which stores a unit of work wrote is derived from the writes themselves
//! (`StoreWrites`), not declared by the replica.
//!
//! What the model leaves out: the database clock and the node's local
//! step-down deadline are the same simulated clock, and a commit is
//! instantaneous, so the race the memo's `FOR SHARE` lock closes (a claim
//! between the check and the `COMMIT`) cannot happen here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use engine::ids::{DocumentId, NodeId, StoreId};
use engine::storage::roles::*;
use engine::storage::{SqliteDatabase, StorageError, StoreWrites};

/// One store's lease row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: Option<NodeId>,
    /// Grows by one at every claim; a renewal keeps it.
    pub epoch: u64,
    pub expires_ms: i64,
}

/// A claim that succeeded (`lease_history`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub store: StoreId,
    pub node: NodeId,
    pub epoch: u64,
    pub at_ms: i64,
}

/// A unit of work the fence let through, per store it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencedCommit {
    pub store: StoreId,
    pub node: NodeId,
    pub epoch: u64,
    pub at_ms: i64,
    /// How many grants the table had made when it committed: orders a
    /// commit against claims made at the same millisecond.
    pub grants_before: usize,
}

#[derive(Default)]
struct Table {
    now_ms: i64,
    ttl_ms: i64,
    rows: BTreeMap<StoreId, Lease>,
    history: Vec<Grant>,
    commits: Vec<FencedCommit>,
    refusals: Vec<FencedCommit>,
}

/// The shared lease table; clones share it.
#[derive(Clone)]
pub struct LeaseTable(Arc<Mutex<Table>>);

impl LeaseTable {
    pub fn new(ttl_ms: i64, now_ms: i64) -> LeaseTable {
        LeaseTable(Arc::new(Mutex::new(Table {
            now_ms,
            ttl_ms,
            ..Table::default()
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The database clock moves on.
    pub fn set_now(&self, now_ms: i64) {
        self.lock().now_ms = now_ms;
    }

    pub fn now_ms(&self) -> i64 {
        self.lock().now_ms
    }

    /// `node` claims `store`: it gets the lease, at a new epoch, if nobody
    /// holds it unexpired. Returns the epoch.
    pub fn claim(&self, node: &NodeId, store: &StoreId) -> Option<u64> {
        let mut t = self.lock();
        let (now, ttl) = (t.now_ms, t.ttl_ms);
        let row = t.rows.entry(store.clone()).or_insert(Lease {
            owner: None,
            epoch: 0,
            expires_ms: i64::MIN,
        });
        if row.owner.is_some() && row.expires_ms > now {
            return None;
        }
        row.owner = Some(node.clone());
        row.epoch += 1;
        row.expires_ms = now + ttl;
        let epoch = row.epoch;
        t.history.push(Grant {
            store: store.clone(),
            node: node.clone(),
            epoch,
            at_ms: now,
        });
        Some(epoch)
    }

    /// `node` renews the leases of `held` (the stores it serves, at their
    /// epochs) that it still holds unexpired; returns them. A store missing
    /// from the answer is lost.
    ///
    /// Naming the stores matters: a node restarted within the lease's TTL
    /// has the same id, and a renewal of "every row I own" would keep
    /// alive the leases of its previous run, which it no longer serves, so
    /// nobody would ever claim them (the simulator found this).
    pub fn renew(&self, node: &NodeId, held: &BTreeMap<StoreId, u64>) -> BTreeMap<StoreId, u64> {
        let mut t = self.lock();
        let (now, ttl) = (t.now_ms, t.ttl_ms);
        t.rows
            .iter_mut()
            .filter(|(s, l)| {
                l.owner.as_ref() == Some(node)
                    && held.get(*s) == Some(&l.epoch)
                    && l.expires_ms > now
            })
            .map(|(s, l)| {
                l.expires_ms = now + ttl;
                (s.clone(), l.epoch)
            })
            .collect()
    }

    /// `node` lets `store` go (a hand-off): the next claim needs no wait.
    /// The epoch stays; the next claimer bumps it.
    pub fn release(&self, node: &NodeId, store: &StoreId, epoch: u64) {
        let mut t = self.lock();
        if let Some(l) = t.rows.get_mut(store) {
            if l.owner.as_ref() == Some(node) && l.epoch == epoch {
                l.owner = None;
                l.expires_ms = i64::MIN;
            }
        }
    }

    pub fn lease(&self, store: &StoreId) -> Option<Lease> {
        self.lock().rows.get(store).cloned()
    }

    /// The fence: whether `node` holds each of `held` at its epoch,
    /// unexpired now. All or nothing; the stores it does not hold if not.
    fn fence(&self, node: &NodeId, held: &[(StoreId, Option<u64>)]) -> Result<(), Vec<StoreId>> {
        let mut t = self.lock();
        let (now, grants_before) = (t.now_ms, t.history.len());
        let lost: Vec<StoreId> = held
            .iter()
            .filter(|(s, epoch)| {
                !t.rows.get(s).is_some_and(|l| {
                    l.owner.as_ref() == Some(node) && Some(l.epoch) == *epoch && l.expires_ms > now
                })
            })
            .map(|(s, _)| s.clone())
            .collect();
        let log: Vec<FencedCommit> = held
            .iter()
            .map(|(s, epoch)| FencedCommit {
                store: s.clone(),
                node: node.clone(),
                epoch: epoch.unwrap_or(0),
                at_ms: now,
                grants_before,
            })
            .collect();
        if lost.is_empty() {
            t.commits.extend(log);
            Ok(())
        } else {
            t.refusals.extend(log);
            Err(lost)
        }
    }

    pub fn history(&self) -> Vec<Grant> {
        self.lock().history.clone()
    }

    pub fn commits(&self) -> Vec<FencedCommit> {
        self.lock().commits.clone()
    }

    pub fn refusals(&self) -> Vec<FencedCommit> {
        self.lock().refusals.clone()
    }

    /// The lease invariants, from the table's own records: per store, the
    /// epochs granted only grow (by one per claim), and every commit the
    /// fence let through ran under the epoch that was current then, held
    /// by the committing node (no commit under an old epoch).
    pub fn check(&self) {
        let t = self.lock();
        let mut granted: BTreeMap<&StoreId, Vec<&Grant>> = BTreeMap::new();
        for g in &t.history {
            granted.entry(&g.store).or_default().push(g);
        }
        for (store, grants) in &granted {
            for (i, g) in grants.iter().enumerate() {
                assert_eq!(g.epoch, i as u64 + 1, "{store}: epochs {grants:?}");
            }
        }
        for c in &t.commits {
            let current = t.history[..c.grants_before]
                .iter()
                .rev()
                .find(|g| g.store == c.store)
                .unwrap_or_else(|| panic!("{c:?} committed for a store never granted"));
            assert!(
                current.epoch == c.epoch && current.node == c.node,
                "{c:?} committed under an old epoch: the lease was {current:?}"
            );
        }
    }
}

/// The stores this node believes it holds and at which epoch (the memo's
/// `LeaseView`): written by the node's lease handling, read by the fence.
pub type LeaseView = Arc<Mutex<BTreeMap<StoreId, u64>>>;

/// A hub node's database: the shared SQLite file behind the fence.
pub struct FencedDatabase {
    db: SqliteDatabase,
    node: NodeId,
    table: LeaseTable,
    view: LeaseView,
    /// Stores the open batch wrote.
    touched: Mutex<BTreeSet<StoreId>>,
}

engine::delegate_storage_roles!(FencedDatabase => db);

impl FencedDatabase {
    pub fn new(db: SqliteDatabase, node: NodeId, table: LeaseTable, view: LeaseView) -> Self {
        FencedDatabase {
            db,
            node,
            table,
            view,
            touched: Mutex::new(BTreeSet::new()),
        }
    }

    fn touched(&self) -> MutexGuard<'_, BTreeSet<StoreId>> {
        self.touched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fence over `stores`, at the epochs this node believes it holds.
    fn fence(&self, stores: impl IntoIterator<Item = StoreId>) -> Result<(), StorageError> {
        let held: Vec<(StoreId, Option<u64>)> = {
            let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
            stores
                .into_iter()
                .map(|s| {
                    let epoch = view.get(&s).copied();
                    (s, epoch)
                })
                .collect()
        };
        if held.is_empty() {
            return Ok(());
        }
        self.table
            .fence(&self.node, &held)
            .map_err(|lost| StorageError::LeaseLost {
                location: format!("{} (as {})", self.db.location(), self.node),
                stores: lost.iter().map(|s| s.to_string()).collect(),
            })
    }
}

impl StoreWrites for FencedDatabase {
    fn writing_doc(&self, doc: DocumentId) -> Result<(), StorageError> {
        // A document without an owner yet is being created: the write
        // that names its owner (`set_doc_owner`) names the store.
        match self.db.doc_owner(doc)? {
            Some((store, _)) => self.writing_store(&store),
            None => Ok(()),
        }
    }

    fn writing_store(&self, store: &StoreId) -> Result<(), StorageError> {
        if self.db.in_batch() {
            self.touched().insert(store.clone());
            Ok(())
        } else {
            // Its own unit of work: fenced now.
            self.fence([store.clone()])
        }
    }
}

impl UnitOfWork for FencedDatabase {
    fn begin_batch(&mut self) -> Result<(), StorageError> {
        if self.db.in_batch() {
            return Ok(());
        }
        self.db.begin_batch()?;
        self.touched().clear();
        // A savepoint around the whole batch, so a refused commit undoes
        // it through the trait alone.
        self.db.begin_operation()
    }

    fn commit_batch(&mut self) -> Result<(), StorageError> {
        if !self.db.in_batch() {
            return Ok(());
        }
        let touched = std::mem::take(&mut *self.touched());
        match self.fence(touched) {
            Ok(()) => {
                self.db.end_operation()?;
                self.db.commit_batch()
            }
            Err(lost) => {
                self.db.rollback_operation()?;
                self.db.commit_batch()?;
                Err(lost)
            }
        }
    }

    fn in_batch(&self) -> bool {
        self.db.in_batch()
    }

    fn begin_operation(&mut self) -> Result<(), StorageError> {
        self.db.begin_operation()
    }

    fn end_operation(&mut self) -> Result<(), StorageError> {
        self.db.end_operation()
    }

    fn rollback_operation(&mut self) -> Result<(), StorageError> {
        // What the undone operation wrote stays in `touched`: fencing a
        // store more than needed is safe, fencing one less is not.
        self.db.rollback_operation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(s: &str) -> NodeId {
        s.parse().unwrap()
    }

    #[test]
    fn a_lease_is_claimed_once_renewed_in_place_and_reclaimed_at_a_new_epoch() {
        let t = LeaseTable::new(6_000, 0);
        let s: StoreId = "store-1".parse().unwrap();
        let (a, b) = (node("hub-a"), node("hub-b"));
        assert_eq!(t.claim(&a, &s), Some(1));
        assert_eq!(t.claim(&b, &s), None, "held and unexpired");
        let held = BTreeMap::from([(s.clone(), 1)]);
        t.set_now(5_000);
        assert_eq!(
            t.renew(&a, &held).get(&s),
            Some(&1),
            "a renewal keeps the epoch"
        );
        t.set_now(10_000);
        assert_eq!(t.claim(&b, &s), None, "renewed until 11,000");
        assert!(
            t.renew(&a, &BTreeMap::new()).is_empty(),
            "only what the node names: not a lease of its previous run"
        );
        t.set_now(11_000);
        assert!(t.renew(&a, &held).is_empty(), "expired: lost");
        assert_eq!(t.claim(&b, &s), Some(2));
        // A hand-off needs no wait.
        t.release(&b, &s, 2);
        assert_eq!(t.claim(&a, &s), Some(3));
        assert_eq!(
            t.history().iter().map(|g| g.epoch).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn the_fence_lets_only_the_holder_at_its_epoch_commit() {
        let t = LeaseTable::new(6_000, 0);
        let s: StoreId = "store-1".parse().unwrap();
        let (a, b) = (node("hub-a"), node("hub-b"));
        t.claim(&a, &s);
        assert_eq!(t.fence(&a, &[(s.clone(), Some(1))]), Ok(()));
        t.set_now(7_000);
        assert_eq!(
            t.fence(&a, &[(s.clone(), Some(1))]),
            Err(vec![s.clone()]),
            "expired, though nobody claimed it yet"
        );
        t.claim(&b, &s);
        assert_eq!(t.fence(&a, &[(s.clone(), Some(1))]), Err(vec![s.clone()]));
        assert_eq!(
            t.fence(&a, &[(s.clone(), None)]),
            Err(vec![s.clone()]),
            "a store the node does not believe it holds"
        );
        assert_eq!(t.fence(&b, &[(s.clone(), Some(2))]), Ok(()));
        t.check();
        assert_eq!(t.commits().len(), 2);
        assert_eq!(t.refusals().len(), 3);
    }
}
