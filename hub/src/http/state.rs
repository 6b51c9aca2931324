//! What every request handler shares: the hub thread, its limits, the
//! read-only pool, the connection caps and the shutdown signal.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use engine::replica::hub::HubLimits;
use tokio_util::sync::CancellationToken;

use crate::connection_slots::{ConnectionCaps, ConnectionSlots};
use crate::read_pool::{ReadPool, ReadSource};
use crate::replicas::Replicas;

/// Shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    /// The node's replica threads (see `replicas` for which gets what).
    pub hub: Replicas,
    pub limits: Arc<HubLimits>,
    /// Read-only connections for the reads off the hub thread (see `ReadPool`).
    pub readers: Arc<ReadPool>,
    /// How long a status query may spend bringing the index up to date
    /// before it answers from the index as it stands (`status::index_read`).
    pub index_read_budget: Duration,
    /// Sync connections open per token and per store, under their caps.
    pub slots: Arc<ConnectionSlots>,
    pub(crate) next_conn: Arc<AtomicU64>,
    /// Cancelled at shutdown: open WebSockets close too.
    pub(crate) shutdown: CancellationToken,
    /// In a PostgreSQL cluster: the stores this node serves, and where
    /// the others are served (see `crate::cluster`).
    pub leases: Option<Arc<crate::pg::lease::LeaseView>>,
    /// In a cluster: this node's advertised sync URL (HQ writes are
    /// passed between nodes at its HTTP base).
    pub cluster_address: Option<String>,
    /// In a cluster: the secret the nodes share (in the database) to tell
    /// each other a write passed on was audited where it arrived
    /// (`access::AUDITED`); a client cannot forge it to go unaudited.
    pub audit_secret: Option<Arc<str>>,
    /// Failed sign-ins per account and source (`POST /api/login`).
    pub sign_in: Arc<crate::sign_in::SignInLimiter>,
}

/// See `AppState::index_read_budget`: a dashboard read every few seconds
/// costs the hub thread at most this, in chunks sync is served between.
pub const INDEX_READ_BUDGET: Duration = Duration::from_millis(250);

impl AppState {
    /// `db` is the hub's database file, which status queries read.
    pub fn new(hub: Replicas, limits: HubLimits, db: ReadSource) -> AppState {
        AppState {
            hub,
            limits: Arc::new(limits),
            readers: Arc::new(ReadPool::new(db)),
            index_read_budget: INDEX_READ_BUDGET,
            slots: ConnectionSlots::new(ConnectionCaps::default()),
            next_conn: Arc::new(AtomicU64::new(1)),
            shutdown: CancellationToken::new(),
            leases: None,
            cluster_address: None,
            audit_secret: None,
            sign_in: Arc::default(),
        }
    }

    /// These caps on open sync connections instead of the defaults.
    pub fn with_connection_caps(mut self, caps: ConnectionCaps) -> AppState {
        self.slots = ConnectionSlots::new(caps);
        self
    }
}
