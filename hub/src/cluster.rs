//! A hub node in a PostgreSQL cluster: the lease manager that claims,
//! renews and releases this node's stores each second, and closes the
//! terminals of a store this node stops serving with the `moved` reason
//! (naming the node that serves it, where known), so they reconnect there
//! at once. What the leases mean and how commits are fenced:
//! `crate::pg::lease`.

use std::sync::Arc;
use std::time::Duration;

use engine::ids::{NodeId, StoreId};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::pg::lease::{share_links, LeaseTimings, LeaseView, Leases};
use crate::replicas::Replicas;

/// What a node needs to take part in a cluster.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub url: String,
    pub node: NodeId,
    /// The sync URL terminals are sent to for this node's stores.
    pub address: String,
    pub view: Arc<LeaseView>,
}

/// Run the lease manager until `shutdown`; then leave the cluster (hand
/// every store over at once instead of letting the leases expire).
pub async fn run(node: ClusterNode, hub: Replicas, shutdown: CancellationToken) {
    let timings = LeaseTimings::default();
    loop {
        let client = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = connect(&node.url) => c,
        };
        let Some(client) = client else {
            close_expired(&node.view, &hub).await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(timings.tick) => continue,
            }
        };
        let mut leases = Leases::new(
            client,
            node.node.clone(),
            node.address.clone(),
            timings,
            node.view.clone(),
        );
        // Tokens ended on any node close their connections here too
        // (checked each round, so within about a second). A window that
        // overlaps the last one, for clocks a little apart; each token
        // is handled once.
        let mut tokens_since = crate::runtime::now_ms() - 2_000;
        let mut handled: std::collections::HashSet<[u8; 32]> = Default::default();
        loop {
            let now = crate::runtime::now_ms();
            match leases.tokens_ended(tokens_since - 2_000, now).await {
                Ok(ended) => {
                    tokens_since = now;
                    let new: Vec<[u8; 32]> = ended
                        .iter()
                        .filter(|h| !handled.contains(*h))
                        .copied()
                        .collect();
                    // Only the overlap with the next window needs
                    // remembering: the set stays as small as one window.
                    handled = ended.into_iter().collect();
                    if !new.is_empty() {
                        // Not awaited: the hub thread may be busy for a
                        // while, and the lease round must not wait for it.
                        let hub = hub.clone();
                        tokio::spawn(async move { close_token_holders(&hub, new).await });
                    }
                }
                Err(e) => warn!(error = %e, "could not check for revoked tokens"),
            }
            match leases.tick().await {
                Ok(round) => {
                    if !round.claimed.is_empty() {
                        info!(stores = round.claimed.len(), "claimed store leases");
                        arrived(&hub, round.claimed.into_iter().map(|(s, _)| s).collect()).await;
                    }
                    let gone: Vec<StoreId> = round.lost.into_iter().chain(round.released).collect();
                    if !gone.is_empty() {
                        info!(
                            stores = gone.len(),
                            "no longer serving stores; moving their terminals"
                        );
                        spawn_close_moved(&node.view, &hub, gone);
                    }
                }
                Err(e) => {
                    warn!(error = %e, "lease round failed");
                    close_expired(&node.view, &hub).await;
                    if e.is_closed() {
                        break;
                    }
                }
            }
            close_expired(&node.view, &hub).await;
            tokio::select! {
                _ = shutdown.cancelled() => {
                    if let Err(e) = leases.leave().await {
                        warn!(error = %e, "could not hand the stores over on the way out");
                    }
                    return;
                }
                _ = tokio::time::sleep(timings.tick) => {}
            }
        }
    }
}

async fn connect(url: &str) -> Option<tokio_postgres::Client> {
    match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    warn!(error = %e, "lease connection ended");
                }
            });
            Some(client)
        }
        Err(e) => {
            warn!(error = %e, "cannot reach PostgreSQL for the leases");
            None
        }
    }
}

/// Each second, share the connections and last sync of the stores this
/// node serves, and learn every other node's (for the dashboard, `GET
/// /api/stores`). A task of its own with its own connection: it asks the
/// hub thread, which may be busy for seconds under a reconnect storm, and
/// the lease rounds must never wait for that.
pub async fn share_links_loop(node: ClusterNode, hub: Replicas, shutdown: CancellationToken) {
    let tick = LeaseTimings::default().tick;
    loop {
        let client = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = connect(&node.url) => c,
        };
        if let Some(client) = client {
            loop {
                let held: Vec<StoreId> = node.view.held().into_iter().map(|(s, _)| s).collect();
                // Each store's links are on the replica thread serving it.
                let mut mine: Vec<(StoreId, engine::replica::StoreLink)> = Vec::new();
                let mut gone = false;
                for (thread, stores) in hub.split(held) {
                    let share = thread
                        .call(move |hub, _now| {
                            let links = hub.store_links();
                            let share: Vec<(StoreId, engine::replica::StoreLink)> = stores
                                .into_iter()
                                .map(|s| {
                                    let link = links.get(&s).cloned().unwrap_or_default();
                                    (s, link)
                                })
                                .collect();
                            (share, Vec::new())
                        })
                        .await;
                    match share {
                        Ok(share) => mine.extend(share),
                        Err(_) => gone = true,
                    }
                }
                if gone {
                    return;
                }
                if let Err(e) = share_links(&client, &node.node, &node.view, &mine).await {
                    warn!(error = %e, "could not share the stores' connections with the cluster");
                    if e.is_closed() {
                        break;
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(tick) => {}
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

/// Close the terminals of stores whose lease ran out locally (no renewal
/// came back in time).
async fn close_expired(view: &Arc<LeaseView>, hub: &Replicas) {
    let gone = view.drop_expired();
    if !gone.is_empty() {
        warn!(
            stores = gone.len(),
            "store leases ran out before a renewal came back"
        );
        spawn_close_moved(view, hub, gone);
    }
}

async fn close_token_holders(hub: &Replicas, hashes: Vec<[u8; 32]>) {
    // A token's connections are on its store's thread; which store is a
    // database read, so each thread looks for its own.
    let done = hub
        .call_each(move |hub, _now| {
            let mut out = Vec::new();
            for h in &hashes {
                match hub.token_ended_elsewhere(*h) {
                    Ok(o) => out.extend(o),
                    Err(e) => warn!(error = %e, "could not close a revoked token's connections"),
                }
            }
            ((), out)
        })
        .await;
    if done.is_err() {
        warn!("a replica thread is gone; cannot close revoked tokens' connections");
    }
}

/// Tell the replica threads they now serve `stores` (see `Hub::store_arrived`).
async fn arrived(hub: &Replicas, stores: Vec<StoreId>) {
    for (thread, stores) in hub.split(stores) {
        let done = thread
            .call(move |hub, _now| {
                for store in &stores {
                    if let Err(e) = hub.store_arrived(store) {
                        warn!(%store, error = %e, "could not take the store over cleanly");
                    }
                }
                ((), Vec::new())
            })
            .await;
        if done.is_err() {
            warn!("a replica thread is gone; cannot take stores over");
        }
    }
}

/// `close_moved` in a task of its own: the hub thread may be busy for
/// seconds (a reconnect storm), and the lease rounds, which keep this
/// node's other stores, must not wait for it. (The stores are already out
/// of the view: nothing new of theirs is accepted meanwhile.)
fn spawn_close_moved(view: &Arc<LeaseView>, hub: &Replicas, stores: Vec<StoreId>) {
    let (view, hub) = (view.clone(), hub.clone());
    tokio::spawn(async move { close_moved(&view, &hub, stores).await });
}

async fn close_moved(view: &Arc<LeaseView>, hub: &Replicas, stores: Vec<StoreId>) {
    for (thread, stores) in hub.split(stores) {
        let routes: Vec<(StoreId, Option<String>)> = stores
            .into_iter()
            .map(|s| {
                let to = view.route(&s);
                (s, to)
            })
            .collect();
        let closed = thread
            .call(move |hub, _now| {
                let mut out = Vec::new();
                for (store, to) in &routes {
                    out.extend(hub.close_store_moved(store, to.as_deref()));
                }
                ((), out)
            })
            .await;
        if closed.is_err() {
            warn!("a replica thread is gone; cannot move terminals");
        }
    }
}

/// How long a terminal's upgrade waits for its store to get an owner
/// (a failover: the old owner's lease must expire first).
pub const PARK_FOR: Duration = Duration::from_secs(8);
