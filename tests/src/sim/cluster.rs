//! Several hub nodes in the simulator: each store is served by one node
//! under a lease in the shared table (`crate::cluster`), placed by
//! rendezvous hashing over the live nodes, renewed every tick, given up
//! when the node's local deadline passes (it was paused) and handed off
//! when placement moves it. The nodes share the hub's database file, each
//! through the fence, and take each frame in a batch, so a node that lost
//! a store cannot commit for it. Ticks run in virtual time, interleaved
//! with the events, and never on their own: a run with nothing in flight
//! is quiescent.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use engine::cluster::placement;
use engine::ids::{DocumentId, NodeId, StoreId};
use engine::replica::hub::{Hub, HubConfig};
use engine::storage::SqliteDatabase;
use rand::Rng;

use super::network::Event;
use super::{HubNode, Sim};
use crate::cluster::{FencedDatabase, LeaseTable, LeaseView};

/// Lease settings of the design memo (§3), in virtual ms.
const TTL_MS: i64 = 6_000;
const TICK_MS: i64 = 1_000;
/// How long before the table's expiry a node stops on its own.
const STEP_DOWN_MARGIN_MS: i64 = 1_500;
/// A node is live while its heartbeat is younger than this.
const LIVE_MS: i64 = 5_000;
/// A node receives stores only once it has been up this long.
const SETTLED_MS: i64 = 2 * TICK_MS;

/// One node's side of the leases.
pub(super) struct NodeLease {
    pub(super) node: NodeId,
    /// The stores it believes it holds, read by its fence.
    view: LeaseView,
    paused_until: Option<i64>,
    next_tick_ms: i64,
    /// Its local step-down deadline: measured from when it sent its last
    /// successful renewal.
    deadline_ms: i64,
    /// Its heartbeat as the table sees it; `None` while crashed.
    heartbeat_ms: Option<i64>,
    joined_ms: i64,
}

impl NodeLease {
    fn new(node: NodeId, now_ms: i64) -> NodeLease {
        NodeLease {
            node,
            view: Arc::new(Mutex::new(BTreeMap::new())),
            paused_until: None,
            next_tick_ms: now_ms,
            deadline_ms: now_ms,
            heartbeat_ms: Some(now_ms),
            joined_ms: now_ms - SETTLED_MS,
        }
    }

    fn held(&self) -> BTreeMap<StoreId, u64> {
        self.view.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_held(&self, held: BTreeMap<StoreId, u64>) {
        *self.view.lock().unwrap_or_else(|e| e.into_inner()) = held;
    }

    fn holds(&self, store: &StoreId) -> bool {
        self.held().contains_key(store)
    }

    /// Killed: its memory (and so its view of the leases) is gone; its
    /// rows in the table stay until they expire.
    pub(super) fn crashed(&mut self) {
        self.set_held(BTreeMap::new());
        self.heartbeat_ms = None;
        self.paused_until = None;
    }

    /// Its database, when it starts again: a fresh view, nothing held.
    pub(super) fn rejoin(
        &mut self,
        db: SqliteDatabase,
        table: LeaseTable,
        now_ms: i64,
    ) -> FencedDatabase {
        self.view = Arc::new(Mutex::new(BTreeMap::new()));
        self.heartbeat_ms = Some(now_ms);
        self.joined_ms = now_ms;
        self.next_tick_ms = now_ms;
        self.deadline_ms = now_ms;
        FencedDatabase::new(db, self.node.clone(), table, self.view.clone())
    }

    /// The node's hub serves (HQ writes, timers, index catch-up) only
    /// the stores its view holds, as the cluster shell arranges.
    pub(super) fn serve_only_held(&self, hub: &mut Hub) {
        let view = self.view.clone();
        hub.serve_only(move |s| {
            view.lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(s)
        });
    }

    pub(super) fn hub_cfg(&self, base: &HubConfig) -> HubConfig {
        HubConfig {
            peer_id: engine::protocol::wire::PeerId::new(self.node.as_str()),
            ..base.clone()
        }
    }
}

impl Sim {
    /// Replace the one hub by `cfg.hubs` nodes over its file, each claiming
    /// the stores placement gives it.
    pub(super) fn start_cluster(&mut self) {
        let table = LeaseTable::new(TTL_MS, self.now_ms);
        self.leases = Some(table.clone());
        self.hubs.clear();
        for h in 0..self.cfg.hubs {
            let node: NodeId = format!("hub-{h}").parse().expect("a valid node code");
            let mut lease = NodeLease::new(node, self.now_ms);
            let db = SqliteDatabase::open(&self.hub_path, self.rng.gen()).expect("open the hub");
            let fenced = lease.rejoin(db, table.clone(), self.now_ms);
            lease.joined_ms = self.now_ms - SETTLED_MS;
            let mut hub = Hub::open(fenced, lease.hub_cfg(&self.hub_cfg)).expect("open a hub node");
            lease.serve_only_held(&mut hub);
            self.hubs.push(HubNode {
                hub: Some(hub),
                restart_pending: false,
                conns: BTreeMap::new(),
                lease: Some(lease),
            });
        }
        let now = self.now_ms;
        for h in 0..self.hubs.len() {
            self.lease_tick(h, now);
        }
    }

    /// The node agent `i` reaches: the one hub, or the node that serves its
    /// store now (a load balancer that knows the leases); `None` if no
    /// node serves it at the moment.
    pub(super) fn hub_for_agent(&self, i: usize) -> Option<usize> {
        if self.leases.is_none() {
            return self.hubs[0].hub.is_some().then_some(0);
        }
        let store = self.agents[i].cfg.store_id.clone();
        self.serving(&store)
    }

    /// The node serving `store` per the table, if it is up, running and
    /// believes it holds it.
    fn serving(&self, store: &StoreId) -> Option<usize> {
        let owner = self.leases.as_ref()?.lease(store)?.owner?;
        self.hubs.iter().position(|n| {
            n.hub.is_some()
                && n.lease
                    .as_ref()
                    .is_some_and(|l| l.node == owner && l.paused_until.is_none() && l.holds(store))
        })
    }

    /// Where HQ's operations on `store` run: the hub, or the node serving
    /// the store. `None`: HQ tries again later.
    pub(super) fn hq_node(&self, store: &StoreId) -> Option<usize> {
        if self.leases.is_none() {
            return self.hubs[0].hub.is_some().then_some(0);
        }
        self.serving(store)
    }

    pub(super) fn hq_node_of_doc(&self, doc: DocumentId) -> Option<usize> {
        if self.leases.is_none() {
            return self.hq_node(&self.main_store);
        }
        let store = [&self.main_store, &self.other_store]
            .into_iter()
            .find(|s| {
                DocumentId::directory_of(s) == doc
                    || self.published.get(*s).is_some_and(|p| p.contains(&doc))
            })?
            .clone();
        self.hq_node(&store)
    }

    /// A fault on a random node: killed (back after a while) or stopped
    /// (SIGSTOP) for up to twice the lease.
    pub(super) fn random_node_fault(&mut self) {
        let h = self.rng.gen_range(0..self.hubs.len());
        if self.rng.gen_bool(0.5) {
            let down = self.rng.gen_range(200..=10_000);
            self.crash_node(h, Some(down));
        } else {
            let pause = self.rng.gen_range(500..=2 * TTL_MS);
            self.pause_node(h, pause);
        }
    }

    /// Node `h` stops for `ms`: it takes nothing in (frames wait in its
    /// socket buffers), renews nothing and sends no heartbeat.
    pub fn pause_node(&mut self, h: usize, ms: i64) {
        let up = self.hubs[h].hub.is_some();
        let Some(lease) = self.hubs[h].lease.as_mut() else {
            return;
        };
        if !up || lease.paused_until.is_some() {
            return;
        }
        lease.paused_until = Some(self.now_ms + ms);
        self.stats.hub_pauses += 1;
        self.trace_note(&("hub pause", h, ms));
        self.schedule(ms, Event::HubResume { hub: h });
    }

    /// Node `h` continues; its next tick comes at a random point in the
    /// next second, so it may take frames that waited before it notices
    /// that its leases lapsed (then the fence refuses their commit).
    pub(super) fn resume_node(&mut self, h: usize) {
        let paused = self.hubs[h]
            .lease
            .as_ref()
            .is_some_and(|l| l.paused_until.is_some());
        if !paused {
            return;
        }
        let jitter = self.rng.gen_range(0..=TICK_MS);
        let now = self.now_ms;
        let lease = self.hubs[h].lease.as_mut().expect("checked above");
        lease.paused_until = None;
        lease.next_tick_ms = now + jitter;
        self.trace_note(&("hub resume", h));
    }

    /// Before quiescence: every node runs.
    pub(super) fn resume_nodes(&mut self) {
        self.events
            .retain(|_, e| !matches!(e, Event::HubResume { .. }));
        for h in 0..self.hubs.len() {
            self.resume_node(h);
        }
    }

    /// An event for a paused node waits until it runs again (in order:
    /// everything deferred goes to the same moment, in sequence).
    pub(super) fn defer_if_paused(&mut self, event: Event) -> Option<Event> {
        let conn = match &event {
            Event::Frame {
                conn,
                dir: super::Dir::ToHub,
                ..
            }
            | Event::Fin {
                conn,
                dir: super::Dir::ToHub,
                ..
            }
            | Event::HubDetectsCut { conn } => *conn,
            _ => return Some(event),
        };
        let until = self
            .conn_hub
            .get(&conn)
            .and_then(|&h| self.hubs[h].lease.as_ref())
            .and_then(|l| l.paused_until);
        match until {
            Some(t) => {
                self.schedule_at(t, event);
                None
            }
            None => Some(event),
        }
    }

    /// Node `h`'s commit was refused for `stores`: it stops serving them
    /// (its hub has closed their connections already).
    pub(super) fn lost_leases(&mut self, h: usize, stores: &[StoreId]) {
        let lease = self.hubs[h]
            .lease
            .as_ref()
            .expect("only nodes of a cluster lose leases");
        let mut held = lease.held();
        for s in stores {
            held.remove(s);
        }
        lease.set_held(held);
        self.trace_note(&("lease lost", h, stores));
    }

    /// Run every node's ticks due up to `until`, in time order.
    pub(super) fn lease_ticks_until(&mut self, until: i64) {
        if self.leases.is_none() {
            return;
        }
        loop {
            let next = (0..self.hubs.len())
                .filter_map(|h| {
                    let l = self.hubs[h].lease.as_ref()?;
                    let running = self.hubs[h].hub.is_some() && l.paused_until.is_none();
                    (running && l.next_tick_ms <= until).then_some((l.next_tick_ms, h))
                })
                .min();
            let Some((at, h)) = next else { return };
            self.now_ms = self.now_ms.max(at);
            let now = self.now_ms;
            self.lease_tick(h, now);
        }
    }

    /// One tick of node `h`: heartbeat; step down if its local deadline
    /// passed; renew (a store missing from the answer is lost); claim what
    /// placement gives it and nobody holds; hand off what placement gives
    /// a settled other node.
    fn lease_tick(&mut self, h: usize, now: i64) {
        let table = self.leases.clone().expect("ticks run with leases");
        table.set_now(now);
        let live = self.live_nodes(now);
        let settled: Vec<NodeId> = live
            .iter()
            .filter(|n| self.settled(n, now))
            .cloned()
            .collect();
        let stores = [self.main_store.clone(), self.other_store.clone()];
        let lease = self.hubs[h].lease.as_mut().expect("a node");
        lease.heartbeat_ms = Some(now);
        lease.next_tick_ms = now + TICK_MS;
        let node = lease.node.clone();
        let mut held = lease.held();
        let mut gone: Vec<StoreId> = Vec::new();
        if now >= lease.deadline_ms && !held.is_empty() {
            // Paused or cut off past its deadline: stop serving everything,
            // then rejoin through the claim below.
            gone.extend(std::mem::take(&mut held).into_keys());
        }
        let renewed = table.renew(&node, &held);
        lease.deadline_ms = now + TTL_MS - STEP_DOWN_MARGIN_MS;
        gone.extend(held.keys().filter(|s| !renewed.contains_key(*s)).cloned());
        held.retain(|s, _| renewed.contains_key(s));
        let mut claimed = Vec::new();
        let mut handed = Vec::new();
        for store in &stores {
            let target = placement(&live, store);
            if target == Some(&node) {
                if !held.contains_key(store) {
                    if let Some(epoch) = table.claim(&node, store) {
                        held.insert(store.clone(), epoch);
                        claimed.push(store.clone());
                    }
                }
            } else if let (Some(epoch), Some(target)) = (held.get(store).copied(), target) {
                if settled.contains(target) {
                    handed.push((store.clone(), epoch));
                }
            }
        }
        for (store, _) in &handed {
            held.remove(store);
        }
        self.hubs[h].lease.as_ref().expect("a node").set_held(held);
        let mut out = Vec::new();
        let hub = self.hubs[h].hub.as_mut().expect("ticks run on live nodes");
        for store in &gone {
            out.extend(hub.close_store_moved(store, None));
        }
        for (store, epoch) in &handed {
            // Flushed already (a batch per frame): close, then release.
            out.extend(hub.close_store_moved(store, None));
            table.release(&node, store, *epoch);
        }
        for store in &claimed {
            hub.store_arrived(store).expect("take the store over");
        }
        if !(gone.is_empty() && handed.is_empty() && claimed.is_empty()) {
            self.trace_note(&("lease tick", h, &gone, &handed, &claimed));
        }
        self.route_hub(h, out);
    }

    /// Nodes whose heartbeat is recent, in a fixed order.
    fn live_nodes(&self, now: i64) -> Vec<NodeId> {
        self.hubs
            .iter()
            .filter_map(|n| n.lease.as_ref())
            .filter(|l| l.heartbeat_ms.is_some_and(|t| t > now - LIVE_MS))
            .map(|l| l.node.clone())
            .collect()
    }

    fn settled(&self, node: &NodeId, now: i64) -> bool {
        self.hubs
            .iter()
            .filter_map(|n| n.lease.as_ref())
            .any(|l| &l.node == node && l.joined_ms + SETTLED_MS <= now)
    }
}
