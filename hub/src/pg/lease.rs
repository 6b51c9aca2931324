//! Store leases: which hub node serves which store, on PostgreSQL's clock.
//!
//! Each store has one row in `store_leases` with an owner, an expiry and
//! an epoch that grows at every claim. A node:
//! - announces itself in `nodes` with a heartbeat ([`Leases::heartbeat`]);
//! - claims the stores that rendezvous placement over the live nodes gives
//!   it, once nobody else holds them unexpired ([`Leases::claim`]);
//! - renews what it holds ([`Leases::renew`]), and lets go of what
//!   placement now gives another node ([`Leases::release`]).
//!
//! The rows say who may write; the fence makes it so. Every commit that
//! wrote anything of a store checks, in the same transaction and with a
//! share lock on the lease row, that this node still holds it at the
//! epoch it claimed ([`fence`]). A claimer's UPDATE waits for that lock,
//! so a commit and a takeover never interleave: an old owner that was
//! paused or cut off past its lease can never commit again (Plane's
//! `backend_key` with a fencing token; Zero's ownership check inside the
//! flush transaction).
//!
//! The node keeps what it holds in a [`LeaseView`] with a local deadline
//! measured from when the renewal was *sent* (monotonic clock), earlier
//! than the database's expiry: it stops serving before anyone else may
//! claim.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use engine::ids::{NodeId, StoreId};
use engine::replica::StoreLink;
use tokio_postgres::Client;

/// Lease timings. Defaults: heartbeat and renew every second, a lease
/// lasts 6 s on the database clock, a node is live while its heartbeat is
/// younger than 5 s.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTimings {
    pub ttl: Duration,
    /// How long before the database expiry this node stops writing.
    pub margin: Duration,
    pub live_within: Duration,
    pub tick: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings {
            ttl: Duration::from_secs(6),
            margin: Duration::from_millis(1500),
            live_within: Duration::from_secs(5),
            tick: Duration::from_secs(1),
        }
    }
}

/// A lease this node holds: its epoch, and until when (local clock) it
/// may write under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub epoch: i64,
    pub deadline: Instant,
}

/// What this node holds, shared by the lease manager (writes) and the
/// storage's fence and the router (read).
#[derive(Debug, Default)]
pub struct LeaseView {
    held: RwLock<HashMap<StoreId, Held>>,
    /// Where each store held by another live node is served (its sync
    /// URL), as of the last round: where this node sends its terminals.
    routes: RwLock<HashMap<StoreId, String>>,
    /// The live nodes and their sync URLs, as of the last round.
    nodes: RwLock<Vec<(NodeId, String)>>,
    /// Grows each time this node takes a store (a claim, not a renewal):
    /// rows another node may have written meanwhile are read afresh.
    taken: std::sync::atomic::AtomicU64,
    /// Every store's terminals as its serving node last shared them (see
    /// `share_links`): what any node's dashboard shows.
    links: RwLock<HashMap<StoreId, StoreLink>>,
}

impl LeaseView {
    /// The epoch this node may commit `store` under now, if any.
    pub fn epoch_of(&self, store: &StoreId) -> Option<i64> {
        let held = self.held.read().unwrap_or_else(|e| e.into_inner());
        held.get(store)
            .filter(|h| h.deadline > Instant::now())
            .map(|h| h.epoch)
    }

    /// Whether this node serves `store` now.
    pub fn holds(&self, store: &StoreId) -> bool {
        self.epoch_of(store).is_some()
    }

    /// Every store held now, with its epoch.
    pub fn held(&self) -> Vec<(StoreId, i64)> {
        let held = self.held.read().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut out: Vec<_> = held
            .iter()
            .filter(|(_, h)| h.deadline > now)
            .map(|(s, h)| (s.clone(), h.epoch))
            .collect();
        out.sort();
        out
    }

    fn put(&self, store: StoreId, held: Held) {
        let before = self
            .held
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(store, held);
        if before.map(|b| b.epoch) != Some(held.epoch) {
            self.taken.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// How many times this node has taken a store so far; a change means
    /// what it remembers of stores' rows may be stale.
    pub fn takeovers(&self) -> u64 {
        self.taken.load(std::sync::atomic::Ordering::Acquire)
    }

    /// What the cluster knows of each store's terminals, as of the last
    /// round: open connections at its serving node, and the last sync
    /// that node saw in its run.
    pub fn links(&self) -> HashMap<StoreId, StoreLink> {
        self.links.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The sync URL of the node serving `store`, if another node does.
    pub fn route(&self, store: &StoreId) -> Option<String> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        routes.get(store).cloned()
    }

    /// The live nodes (this one included) and their sync URLs, as of the
    /// last round.
    pub fn live_nodes(&self) -> Vec<(NodeId, String)> {
        self.nodes.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Which node serves `store`: this one, or another at its sync URL.
    /// While no node is known to (a store just added, or being taken
    /// over), ask again every 100 ms for up to `wait`; `None` after that.
    pub async fn serving(&self, store: &StoreId, wait: Duration) -> Option<Serving> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            if self.holds(store) {
                return Some(Serving::Here);
            }
            if let Some(to) = self.route(store) {
                return Some(Serving::There(to));
            }
            if tokio::time::Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Forget the stores whose local deadline passed (no renewal came
    /// back in time: the database is slow or unreachable); returns them.
    pub fn drop_expired(&self) -> Vec<StoreId> {
        let mut held = self.held.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let gone: Vec<StoreId> = held
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(s, _)| s.clone())
            .collect();
        for s in &gone {
            held.remove(s);
        }
        gone
    }

    /// Forget `stores` (lost or released); returns the ones that were held.
    pub fn drop_stores(&self, stores: &[StoreId]) -> Vec<StoreId> {
        let mut held = self.held.write().unwrap_or_else(|e| e.into_inner());
        stores
            .iter()
            .filter(|s| held.remove(*s).is_some())
            .cloned()
            .collect()
    }
}

/// Share what node `node` knows of its stores' terminals (`mine`: the
/// stores it holds, with their links), forget what it shared of stores
/// it no longer holds, and read back every store's links as their
/// serving nodes shared them, into `view`. On a connection of its own,
/// apart from the lease rounds: it waits for the hub thread, which a
/// renewal must never do.
pub async fn share_links(
    client: &Client,
    node: &NodeId,
    view: &LeaseView,
    mine: &[(StoreId, StoreLink)],
) -> Result<(), tokio_postgres::Error> {
    let stores: Vec<&str> = mine.iter().map(|(s, _)| s.as_str()).collect();
    let connections: Vec<i64> = mine.iter().map(|(_, l)| l.connections as i64).collect();
    let synced: Vec<Option<i64>> = mine.iter().map(|(_, l)| l.last_sync_ms).collect();
    client
        .execute(
            "WITH gone AS (DELETE FROM store_links
                            WHERE node_id = $1 AND store_id <> ALL($2::text[]))
             INSERT INTO store_links (store_id, node_id, connections, last_sync_ms)
             SELECT s, $1, c, t FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS x(s, c, t)
             ON CONFLICT (store_id) DO UPDATE
             SET node_id = excluded.node_id, connections = excluded.connections,
                 last_sync_ms = greatest(store_links.last_sync_ms, excluded.last_sync_ms)",
            &[&node.as_str(), &stores, &connections, &synced],
        )
        .await?;
    // Only a store's serving node's figures count: a node that died
    // with connections open shared figures that are not true any more.
    let rows = client
        .query(
            "SELECT k.store_id, k.connections, k.last_sync_ms
               FROM store_links k JOIN store_leases l
                 ON l.store_id = k.store_id AND l.owner = k.node_id
                AND l.expires_at > clock_timestamp()",
            &[],
        )
        .await?;
    let links = rows
        .iter()
        .filter_map(|r| {
            let store: StoreId = r.get::<_, &str>(0).parse().ok()?;
            Some((
                store,
                StoreLink {
                    connections: r.get::<_, i64>(1).max(0) as usize,
                    last_sync_ms: r.get(2),
                },
            ))
        })
        .collect();
    *view.links.write().unwrap_or_else(|e| e.into_inner()) = links;
    Ok(())
}

/// Where a store is served, as [`LeaseView::serving`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serving {
    Here,
    /// At another node, whose sync URL this is.
    There(String),
}

/// The fence, run as the last statement of a transaction before COMMIT,
/// over the stores the transaction wrote (`$1`) with the epochs this node
/// claimed them under (`$2`; -1 for one it does not hold): each store's
/// lease row with whether this node (`$3`) still holds it at that epoch,
/// unexpired. It locks the rows it reads (`FOR SHARE`) until the
/// transaction ends, so no claim (an UPDATE, which waits for that lock)
/// lands between this check and the commit. A store without a lease row
/// (removed) is not fenced.
/// Every statement that locks lease rows locks them in `store_id` order
/// (this one by its ORDER BY, the renewal, claim and release by a
/// sub-select `ORDER BY store_id FOR NO KEY UPDATE`): a commit's fence and
/// a lease round over overlapping stores would otherwise each hold a row
/// the other waits for, and PostgreSQL would abort one as a deadlock (seen
/// in `bench net` at 1,000 stores: a whole batch refused).
pub(crate) const FENCE: &str = "
    SELECT l.store_id,
           (l.owner IS NOT DISTINCT FROM $3 AND l.epoch = h.epoch
            AND l.expires_at > clock_timestamp()) AS held
      FROM store_leases l
      JOIN unnest($1::text[], $2::bigint[]) AS h(store_id, epoch) ON h.store_id = l.store_id
     ORDER BY l.store_id
       FOR SHARE OF l";

/// A store lease row as `hub cluster status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseRow {
    pub store: String,
    pub owner: Option<String>,
    pub epoch: i64,
    /// Milliseconds until it expires (negative: expired), database clock.
    pub expires_in_ms: i64,
}

/// A node as the cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeRow {
    pub node: String,
    pub address: String,
    pub state: String,
    /// Milliseconds since its last heartbeat, database clock.
    pub heartbeat_age_ms: i64,
}

/// One node's lease operations on its own connection.
pub struct Leases {
    client: Client,
    node: NodeId,
    address: String,
    timings: LeaseTimings,
    view: Arc<LeaseView>,
}

/// What one [`Leases::tick`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TickOutcome {
    pub claimed: Vec<(StoreId, i64)>,
    /// Held before, not renewed: another node has them now (or may).
    pub lost: Vec<StoreId>,
    /// Let go because placement gives them to another live node.
    pub released: Vec<StoreId>,
}

impl Leases {
    /// Lease operations for `node` (advertising `address`, the URL agents
    /// are sent to) over `client`, writing what it holds into `view`.
    pub fn new(
        client: Client,
        node: NodeId,
        address: String,
        timings: LeaseTimings,
        view: Arc<LeaseView>,
    ) -> Leases {
        Leases {
            client,
            node,
            address,
            timings,
            view,
        }
    }

    pub fn view(&self) -> &Arc<LeaseView> {
        &self.view
    }

    /// Tokens revoked, or expired, between `since_ms` and `now_ms` (the
    /// hub's clock, as the token rows keep it), on any node.
    pub async fn tokens_ended(
        &self,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<[u8; 32]>, tokio_postgres::Error> {
        let rows = self
            .client
            .query(
                "SELECT token_hash FROM tokens
                  WHERE revoked_at > $1 OR (expires_at > $1 AND expires_at <= $2)",
                &[&since_ms, &now_ms],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get::<_, &[u8]>(0).try_into().ok())
            .collect())
    }

    fn interval(d: Duration) -> String {
        format!("{} milliseconds", d.as_millis())
    }

    /// Say this node is alive (and where agents reach it).
    pub async fn heartbeat(&self) -> Result<(), tokio_postgres::Error> {
        self.client
            .execute(
                "INSERT INTO nodes (node_id, address, state, heartbeat_at)
                 VALUES ($1, $2, 'active', clock_timestamp())
                 ON CONFLICT (node_id) DO UPDATE
                 SET address = excluded.address, state = 'active', heartbeat_at = clock_timestamp()",
                &[&self.node.as_str(), &self.address],
            )
            .await?;
        Ok(())
    }

    /// The nodes whose heartbeat is recent, active ones only, with their
    /// sync URLs.
    pub async fn live_nodes(&self) -> Result<Vec<(NodeId, String)>, tokio_postgres::Error> {
        let rows = self
            .client
            .query(
                "SELECT node_id, address FROM nodes WHERE state = 'active'
                   AND heartbeat_at > clock_timestamp() - $1::text::interval
                 ORDER BY node_id",
                &[&Self::interval(self.timings.live_within)],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.get::<_, &str>(0).parse().ok()?, r.get(1))))
            .collect())
    }

    /// Extend every lease this node holds; the ones that could not be
    /// renewed (expired, taken) are dropped from the view and returned.
    pub async fn renew(&self) -> Result<Vec<StoreId>, tokio_postgres::Error> {
        let sent = Instant::now();
        // Only what this run holds: a lease row left under this node's
        // name by an earlier run (a restart within the lease time) must
        // run out, not be kept alive for a store placement gave elsewhere
        // (the simulator found one stuck that way).
        let held: Vec<String> = self
            .view
            .held()
            .into_iter()
            .map(|(s, _)| s.as_str().to_owned())
            .collect();
        let rows = self
            .client
            .query(
                "UPDATE store_leases l SET expires_at = clock_timestamp() + $2::text::interval
                   FROM (SELECT store_id FROM store_leases
                          WHERE owner = $1 AND store_id = ANY($3)
                          ORDER BY store_id FOR NO KEY UPDATE) o
                  WHERE l.store_id = o.store_id
                    AND l.owner = $1 AND l.expires_at > clock_timestamp()
                 RETURNING l.store_id, l.epoch",
                &[
                    &self.node.as_str(),
                    &Self::interval(self.timings.ttl),
                    &held,
                ],
            )
            .await?;
        let deadline = sent + self.timings.ttl.saturating_sub(self.timings.margin);
        let mut renewed = HashMap::new();
        for r in &rows {
            if let Ok(store) = r.get::<_, &str>(0).parse::<StoreId>() {
                renewed.insert(store, r.get::<_, i64>(1));
            }
        }
        let before = self.view.held();
        let mut lost = Vec::new();
        for (store, epoch) in before {
            match renewed.get(&store) {
                Some(e) if *e == epoch => self.view.put(store, Held { epoch, deadline }),
                _ => lost.push(store),
            }
        }
        self.view.drop_stores(&lost);
        Ok(lost)
    }

    /// Claim `stores` where nobody holds them unexpired (or this node
    /// does, from before a restart): each gets a new epoch, recorded in
    /// `lease_history`. Returns what was claimed.
    pub async fn claim(
        &mut self,
        stores: &[StoreId],
    ) -> Result<Vec<(StoreId, i64)>, tokio_postgres::Error> {
        if stores.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = stores.iter().map(StoreId::as_str).collect();
        let sent = Instant::now();
        let tx = self.client.transaction().await?;
        tx.batch_execute("SET LOCAL lock_timeout = '2s'").await?;
        let rows = tx
            .query(
                "UPDATE store_leases l
                    SET owner = $2, epoch = l.epoch + 1,
                        expires_at = clock_timestamp() + $3::text::interval,
                        acquired_at = clock_timestamp()
                   FROM (SELECT store_id FROM store_leases WHERE store_id = ANY($1)
                          ORDER BY store_id FOR NO KEY UPDATE) o
                  WHERE l.store_id = o.store_id
                    AND (l.owner IS NULL OR l.owner = $2 OR l.expires_at <= clock_timestamp())
                 RETURNING l.store_id, l.epoch",
                &[&ids, &self.node.as_str(), &Self::interval(self.timings.ttl)],
            )
            .await?;
        let claimed: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        if !claimed.is_empty() {
            let (s, e): (Vec<&str>, Vec<i64>) =
                claimed.iter().map(|(s, e)| (s.as_str(), *e)).unzip();
            tx.execute(
                "INSERT INTO lease_history (store_id, epoch, owner)
                 SELECT s, e, $3 FROM unnest($1::text[], $2::bigint[]) AS x(s, e)",
                &[&s, &e, &self.node.as_str()],
            )
            .await?;
        }
        tx.commit().await?;
        let deadline = sent + self.timings.ttl.saturating_sub(self.timings.margin);
        let mut out = Vec::new();
        for (store, epoch) in claimed {
            if let Ok(store) = store.parse::<StoreId>() {
                self.view.put(store.clone(), Held { epoch, deadline });
                out.push((store, epoch));
            }
        }
        Ok(out)
    }

    /// Leave the cluster: let go of every store and say this node is
    /// leaving, so the others take its stores at once, not after expiry.
    pub async fn leave(&self) -> Result<(), tokio_postgres::Error> {
        let held: Vec<StoreId> = self.view.held().into_iter().map(|(s, _)| s).collect();
        self.release(&held).await?;
        self.client
            .execute(
                "UPDATE nodes SET state = 'leaving' WHERE node_id = $1",
                &[&self.node.as_str()],
            )
            .await?;
        Ok(())
    }

    /// Let go of `stores` so their new owner can claim them at once
    /// instead of after the lease expires. Forget them first: from here
    /// on this node's commits touching them fail the fence.
    pub async fn release(&self, stores: &[StoreId]) -> Result<(), tokio_postgres::Error> {
        // Also rows this node holds from an earlier run (not in the view).
        self.view.drop_stores(stores);
        if stores.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = stores.iter().map(StoreId::as_str).collect();
        self.client
            .execute(
                "UPDATE store_leases l SET owner = NULL, expires_at = '-infinity'
                   FROM (SELECT store_id FROM store_leases
                          WHERE store_id = ANY($1) AND owner = $2
                          ORDER BY store_id FOR NO KEY UPDATE) o
                  WHERE l.store_id = o.store_id AND l.owner = $2",
                &[&ids, &self.node.as_str()],
            )
            .await?;
        Ok(())
    }

    /// One round: heartbeat, renew, then claim what placement gives this
    /// node and release what it gives a live other node.
    pub async fn tick(&mut self) -> Result<TickOutcome, tokio_postgres::Error> {
        self.heartbeat().await?;
        let lost = self.renew().await?;
        let nodes = self.live_nodes().await?;
        let live: Vec<NodeId> = nodes.iter().map(|(n, _)| n.clone()).collect();
        *self.view.nodes.write().unwrap_or_else(|e| e.into_inner()) = nodes;
        let rows = self
            .client
            .query(
                "SELECT l.store_id, l.owner, l.expires_at > clock_timestamp(), n.address
                   FROM store_leases l LEFT JOIN nodes n ON n.node_id = l.owner",
                &[],
            )
            .await?;
        let mut routes = HashMap::new();
        let mut want = Vec::new();
        let mut give_up = Vec::new();
        for r in &rows {
            let Ok(store) = r.get::<_, &str>(0).parse::<StoreId>() else {
                continue;
            };
            let owner: Option<&str> = r.get(1);
            let unexpired: bool = r.get(2);
            if let (Some(o), true, Some(address)) = (owner, unexpired, r.get::<_, Option<&str>>(3))
            {
                if o != self.node.as_str() {
                    routes.insert(store.clone(), address.to_owned());
                }
            }
            let mine = engine::cluster::placement(&live, &store) == Some(&self.node);
            let held_by_me = owner == Some(self.node.as_str()) && unexpired;
            if mine && !held_by_me && !(unexpired && owner.is_some()) {
                want.push(store);
            } else if mine && held_by_me && !self.view.holds(&store) {
                // Held in the database from before a restart: claim anew
                // (new epoch), so nothing written under the old one counts.
                want.push(store);
            } else if !mine && held_by_me && !live.is_empty() {
                give_up.push(store);
            }
        }
        *self.view.routes.write().unwrap_or_else(|e| e.into_inner()) = routes;
        let claimed = self.claim(&want).await?;
        self.release(&give_up).await?;
        Ok(TickOutcome {
            claimed,
            lost,
            released: give_up,
        })
    }
}

/// The nodes and every store's lease, for `hub cluster status`.
pub async fn cluster_status(
    client: &Client,
) -> Result<(Vec<NodeRow>, Vec<LeaseRow>), tokio_postgres::Error> {
    let nodes = client
        .query(
            "SELECT node_id, address, state,
                    (extract(epoch FROM clock_timestamp() - heartbeat_at) * 1000)::bigint
               FROM nodes ORDER BY node_id",
            &[],
        )
        .await?
        .iter()
        .map(|r| NodeRow {
            node: r.get(0),
            address: r.get(1),
            state: r.get(2),
            heartbeat_age_ms: r.get(3),
        })
        .collect();
    let leases = client
        .query(
            "SELECT store_id, owner, epoch,
                    CASE WHEN expires_at = '-infinity' THEN -1
                         ELSE (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint END
               FROM store_leases ORDER BY store_id COLLATE \"C\"",
            &[],
        )
        .await?
        .iter()
        .map(|r| LeaseRow {
            store: r.get(0),
            owner: r.get(1),
            epoch: r.get(2),
            expires_in_ms: r.get(3),
        })
        .collect();
    Ok((nodes, leases))
}
