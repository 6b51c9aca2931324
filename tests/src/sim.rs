//! The deterministic simulator: a hub and N pos-agents driven through the
//! sans-IO replicas by one seeded RNG and a virtual clock, over links that
//! delay and cut frames, with partitions, crashes and restarts from the
//! replicas' SQLite files. Everything random comes from the seed, so a
//! failing run replays exactly (`SIM_SEED=<n>`).
//!
//! The network model. Each agent-hub connection is a WebSocket over TCP:
//! frames arrive in order, each after a random delay, and a frame never
//! overtakes an earlier one in the same direction. A cut loses everything
//! in flight both ways; the agent notices at once, the hub only after a
//! while (a half-open socket), so for a moment the hub may hold two
//! connections for one agent. Frames of a cut connection are never
//! delivered on its successor: each frame carries its connection id and the
//! simulator drops (and counts) frames whose connection is gone.
//! TCP never duplicates or reorders within a connection, so those faults
//! exist only in `chaos` mode, which the protocol should survive too
//! because Automerge sync messages are idempotent.
//!
//! A crash drops the `Agent` or `Hub` value without any graceful path (no
//! `disconnected`, nothing flushed) and reopens it from the same file.
//!
//! With `SimConfig::lan`, the main store's terminals also sync with each
//! other directly over the store's LAN, and the store's internet link can
//! fail alone (`lan`).
//!
//! Layout: this file holds the simulator's state, the random driver, the
//! worker/HQ actions and the faults; `network` the links and the event
//! queue; `lan` the store's LAN links; `checks` the convergence
//! assertions; `seeds` the seed handling every test shares.

mod checks;
mod cluster;
mod lan;
mod network;
mod seeds;

use checks::{read_any, sorted};
use cluster::NodeLease;

use network::{Dir, Event, LinkClock};
pub use seeds::{for_each_seed, seeds};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use automerge::sync::SyncDoc;
use automerge::Automerge;
use chrono::NaiveDate;
use engine::ids::{DocumentId, EventId, StoreId, TaskId, TemplateId};
use engine::model::{
    Assignee, CreatedBy, InstanceContent, ListMeta, Priority, Status, StatusEvent, StatusUpdate,
    TaskSpec,
};
use engine::protocol::wire::{self, PeerId, StorageId, WireLimits, WireMessage};
use engine::replica::agent::{Agent, AgentConfig};
use engine::replica::hub::{Hub, HubConfig, HubLimits};
use engine::replica::ConnId;
use engine::storage::{SqliteDatabase, StoreRecord};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

/// Virtual time at the start of every run (ms since the Unix epoch, 2027).
pub const START_MS: i64 = 1_800_000_000_000;

/// Most events `run_until_quiescent` processes before it calls the run stuck.
const QUIESCENCE_BUDGET: usize = 200_000;

/// Reconnect backoff: first delay and cap (ms); each try waits half to all of it.
const BACKOFF_FIRST_MS: i64 = 100;
const BACKOFF_CAP_MS: i64 = 8_000;

/// How a run behaves. `SimConfig::new(agents)` is the default mix.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Agents (terminals) of the main store.
    pub agents: usize,
    /// Add one agent of a second store, to check that stores stay apart.
    pub other_store: bool,
    /// One-way delay of a frame, uniform in `min..=max` ms.
    pub latency_ms: (i64, i64),
    /// How long the hub takes to notice a cut connection, uniform in `0..=max` ms.
    pub hub_detects_cut_ms: i64,
    /// Largest clock error of an agent either way (ms), well within the
    /// hub's tolerance for event times.
    pub max_skew_ms: i64,
    /// Duplicate and reorder frames within a connection (see the module doc).
    pub chaos: bool,
    /// Percent of random steps that are a worker or HQ action.
    pub workload_percent: u32,
    /// Percent of random steps that are a fault (cut, partition, heal, crash).
    pub fault_percent: u32,
    /// Whether faults may crash the hub.
    pub hub_crashes: bool,
    /// The hub's cache of loaded documents; a small cap exercises eviction.
    pub max_cached_documents: usize,
    /// Hub nodes. With more than one, they share the hub's database file
    /// and serve each store under a lease (`tests::cluster`): placement by
    /// rendezvous hashing, renewal, expiry, hand-off, the fence, and the
    /// `moved` close; faults also pause a node (SIGSTOP).
    pub hubs: usize,
    /// The main store's terminals also sync pairwise over the store's LAN
    /// (`sim::lan`); faults then also cut LAN links and take the store's
    /// internet link down and up, and a rogue terminal offers forbidden
    /// changes now and then.
    pub lan: bool,
}

impl SimConfig {
    pub fn new(agents: usize) -> SimConfig {
        SimConfig {
            agents,
            other_store: true,
            latency_ms: (1, 80),
            hub_detects_cut_ms: 3_000,
            max_skew_ms: 30_000,
            chaos: false,
            workload_percent: 20,
            fault_percent: 4,
            hub_crashes: true,
            max_cached_documents: 10_000,
            hubs: 1,
            lan: false,
        }
    }
}

/// Counters of one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SimStats {
    /// Frames put on a link (including chaos duplicates).
    pub frames_sent: u64,
    pub frames_delivered: u64,
    pub bytes_delivered: u64,
    /// Frames dropped because their connection was cut or closed.
    pub stale_frames_dropped: u64,
    pub frames_duplicated: u64,
    pub frames_reordered: u64,
    pub connections: u64,
    pub cuts: u64,
    pub partitions: u64,
    pub agent_crashes: u64,
    pub hub_crashes: u64,
    /// Hub nodes stopped (SIGSTOP) for a while, with several nodes.
    pub hub_pauses: u64,
    /// Connections closed by a replica (protocol error, bad frame, ...).
    pub closes: u64,
    pub writes_acknowledged: u64,
    /// Local commands the agent refused (reopen of a task not completed, ...).
    pub writes_refused: u64,
    pub lists_published: u64,
    /// Requests for another store's document (all must be refused).
    pub snoops: u64,
    /// Frames that gave the hub changes whose dependencies it lacked.
    pub frames_with_missing_deps: u64,
    /// LAN connections dialed, cut, and frames delivered on them (also
    /// counted in `frames_delivered`).
    pub lan_connections: u64,
    pub lan_cuts: u64,
    pub lan_frames_delivered: u64,
    /// Times the store's internet link went down.
    pub wan_outages: u64,
    /// Forbidden changes a rogue terminal offered, and those refused.
    pub rogue_changes_sent: u64,
    pub rogue_changes_refused: u64,
}

/// What `run_until_quiescent` measured from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quiescence {
    /// Virtual time until the last frame was delivered.
    pub virtual_ms: i64,
    pub frames: u64,
    pub bytes: u64,
}

/// A status update whose `record_status` returned Ok: it is on the agent's
/// disk and must end up everywhere exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledged {
    pub agent: usize,
    pub list: DocumentId,
    pub event: StatusEvent,
}

/// One hub node (the only one, or one of several over the same file).
struct HubNode {
    /// `None` while crashed.
    hub: Option<Hub>,
    restart_pending: bool,
    /// Connections this node believes open, and whose agent each is.
    conns: BTreeMap<ConnId, usize>,
    /// Its leases, with several nodes.
    lease: Option<NodeLease>,
}

/// One simulated terminal.
struct AgentNode {
    name: String,
    cfg: AgentConfig,
    path: PathBuf,
    /// `None` while crashed.
    agent: Option<Agent>,
    /// The connection as the agent sees it.
    conn: Option<ConnId>,
    partitioned: bool,
    skew_ms: i64,
    backoff_ms: i64,
    reconnect_pending: bool,
    restart_pending: bool,
}

/// A hub and its agents on a simulated network, in virtual time.
pub struct Sim {
    seed: u64,
    rng: StdRng,
    now_ms: i64,
    cfg: SimConfig,
    dir: tempfile::TempDir,
    hub_path: PathBuf,
    hub_cfg: HubConfig,
    hubs: Vec<HubNode>,
    /// The lease table the nodes share, with several nodes.
    leases: Option<crate::cluster::LeaseTable>,
    agents: Vec<AgentNode>,
    /// Which node each connection reached.
    conn_hub: HashMap<ConnId, usize>,
    /// Every connection ever made -> its agent.
    conn_agent: HashMap<ConnId, usize>,
    /// Connections the network has cut: nothing on them arrives any more.
    cut: BTreeSet<ConnId>,
    clocks: HashMap<ConnId, LinkClock>,
    next_conn: ConnId,
    /// Pending events by (due time, sequence): the sequence keeps FIFO order
    /// among events due at the same millisecond.
    events: BTreeMap<(i64, u64), Event>,
    next_seq: u64,
    main_store: StoreId,
    other_store: StoreId,
    /// Lists HQ has published, per store.
    published: BTreeMap<StoreId, Vec<DocumentId>>,
    /// Lists HQ will publish during the run.
    unpublished: Vec<InstanceContent>,
    acked: Vec<Acknowledged>,
    /// (agent, document) pairs for which the hub was sent changes whose
    /// dependencies it lacked.
    missing_deps: BTreeSet<(usize, DocumentId)>,
    stats: SimStats,
    close_reasons: Vec<String>,
    /// Digest of every event processed, to check that a seed replays exactly.
    trace: std::collections::hash_map::DefaultHasher,
    /// Print every event (`SIM_TRACE=1`), to follow a failing seed.
    verbose: bool,
    /// Agent backups taken so far (names their files).
    backups: u32,
    /// The store's LAN links (none without `SimConfig::lan`).
    lan: lan::Lan,
    /// The main store's internet link is down: its terminals cannot reach
    /// the hub, whatever their own partitions.
    wan_down: bool,
    /// Random faults leave the WAN down (`hold_wan_outage`).
    wan_held: bool,
}

impl Sim {
    /// A hub with two stores; `agents` terminals of the main store (plus
    /// one of the other store); every replica on its own SQLite file.
    pub fn new(seed: u64, agents: usize) -> Sim {
        Sim::with_config(seed, SimConfig::new(agents))
    }

    pub fn with_config(seed: u64, cfg: SimConfig) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = scratch_dir();
        let main_store: StoreId = "store-042".parse().expect("a valid store code");
        let other_store: StoreId = "store-077".parse().expect("a valid store code");

        let hub_path = dir.path().join("hub.sqlite3");
        let hub_cfg = HubConfig {
            peer_id: PeerId::new("hub"),
            storage_id: StorageId::new("hub-storage"),
            limits: HubLimits {
                max_cached_documents: cfg.max_cached_documents,
                ..HubLimits::default()
            },
        };
        let store = SqliteDatabase::open(&hub_path, rng.gen()).expect("open the hub's store");
        let mut hub = Hub::open(store, hub_cfg.clone()).expect("open the hub");
        for (store, name) in [(&main_store, "Main Street"), (&other_store, "Harbour")] {
            hub.add_store(&StoreRecord {
                id: store.clone(),
                name: name.into(),
                time_zone: "Europe/Berlin".into(),
            })
            .expect("add a store");
            // The workers `record_random_status` acts as: the hub refuses
            // events by anyone not on the store's roster.
            for w in 1..=5 {
                let rec = engine::document::directory::RosterWorker {
                    name: format!("Worker {w}"),
                    role: "cashier".parse().expect("a valid role"),
                    groups: Vec::new(),
                    pin: None,
                };
                let id = format!("w{w}").parse().expect("a valid worker code");
                hub.put_worker(store, &id, &rec, START_MS)
                    .expect("put a worker on the roster");
            }
        }

        // Two lists at the start, a third published mid-run; one list for
        // the other store.
        let mut published: BTreeMap<StoreId, Vec<DocumentId>> = BTreeMap::new();
        let mut initial = vec![
            list_content(&main_store, 1, 3 + rng.gen_range(0..3)),
            list_content(&main_store, 2, 3 + rng.gen_range(0..3)),
        ];
        if cfg.other_store {
            initial.push(list_content(&other_store, 9, 3));
        }
        for c in &initial {
            hub.publish(c, START_MS).expect("publish a list");
            published
                .entry(c.meta.store.clone())
                .or_default()
                .push(c.id);
        }
        let unpublished = vec![list_content(&main_store, 3, 4)];

        let mut agents = Vec::new();
        let stores = std::iter::repeat_n(&main_store, cfg.agents)
            .chain(cfg.other_store.then_some(&other_store));
        for (i, store) in stores.enumerate() {
            let path = dir.path().join(format!("agent-{i}.sqlite3"));
            let agent_cfg = AgentConfig {
                store_id: store.clone(),
                peer_id: PeerId::new(format!("agent-{i}")),
                storage_id: StorageId::new(format!("agent-storage-{i}")),
                wire: WireLimits::default(),
            };
            let agent = Agent::open(
                SqliteDatabase::open(&path, rng.gen()).expect("open an agent's store"),
                agent_cfg.clone(),
                START_MS,
            )
            .expect("open an agent");
            agents.push(AgentNode {
                name: format!("agent {i} ({store})"),
                cfg: agent_cfg,
                path,
                agent: Some(agent),
                conn: None,
                partitioned: false,
                skew_ms: rng.gen_range(-cfg.max_skew_ms..=cfg.max_skew_ms),
                backoff_ms: BACKOFF_FIRST_MS,
                reconnect_pending: false,
                restart_pending: false,
            });
        }

        let mut sim = Sim {
            seed,
            rng,
            now_ms: START_MS,
            cfg,
            dir,
            hub_path,
            hub_cfg,
            hubs: vec![HubNode {
                hub: Some(hub),
                restart_pending: false,
                conns: BTreeMap::new(),
                lease: None,
            }],
            leases: None,
            agents,
            conn_hub: HashMap::new(),
            conn_agent: HashMap::new(),
            cut: BTreeSet::new(),
            clocks: HashMap::new(),
            next_conn: 1,
            events: BTreeMap::new(),
            next_seq: 0,
            main_store,
            other_store,
            published,
            unpublished,
            acked: Vec::new(),
            missing_deps: BTreeSet::new(),
            stats: SimStats::default(),
            close_reasons: Vec::new(),
            trace: Default::default(),
            verbose: std::env::var_os("SIM_TRACE").is_some(),
            backups: 0,
            lan: lan::Lan::default(),
            wan_down: false,
            wan_held: false,
        };
        if sim.cfg.lan {
            sim.lan = lan::Lan::mesh(sim.main_terminals().len());
        }
        if sim.cfg.hubs > 1 {
            sim.start_cluster();
        }
        for i in 0..sim.agents.len() {
            sim.try_connect(i);
        }
        for l in 0..sim.lan_link_count() {
            sim.dial(l);
        }
        sim
    }

    // ---- what a test reads ----------------------------------------------

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// Why replicas closed connections (empty in a healthy run without chaos).
    pub fn close_reasons(&self) -> &[String] {
        &self.close_reasons
    }

    pub fn acknowledged(&self) -> &[Acknowledged] {
        &self.acked
    }

    /// Number of agents, the other store's included (it is the last one).
    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    /// An agent, or `None` while it is crashed.
    pub fn agent(&self, i: usize) -> Option<&Agent> {
        self.agents[i].agent.as_ref()
    }

    /// The hub (the first node, with several), or `None` while it is crashed.
    pub fn hub(&mut self) -> Option<&mut Hub> {
        self.hubs[0].hub.as_mut()
    }

    /// The lease table the hub nodes share, with several nodes.
    pub fn lease_table(&self) -> Option<&crate::cluster::LeaseTable> {
        self.leases.as_ref()
    }

    /// The store the first `agents` terminals belong to.
    pub fn main_store(&self) -> &StoreId {
        &self.main_store
    }

    /// The main store's lists HQ has published so far.
    pub fn lists(&self) -> Vec<DocumentId> {
        self.published
            .get(&self.main_store)
            .cloned()
            .unwrap_or_default()
    }

    pub fn is_online(&self, i: usize) -> bool {
        self.agent(i)
            .and_then(|a| a.sync_status().ok())
            .is_some_and(|s| s.online)
    }

    /// Events and frames in flight (timers included).
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    /// A digest of everything that happened: equal for two runs of one seed.
    pub fn trace_digest(&self) -> u64 {
        self.trace.finish()
    }

    // ---- the random driver ------------------------------------------------

    /// `steps` random steps: worker and HQ actions, faults, and the network
    /// and timers moving on in virtual time.
    pub fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            self.step();
        }
    }

    pub fn step(&mut self) {
        self.now_ms += self.rng.gen_range(0..=10);
        let roll = self.rng.gen_range(0..100);
        if roll < self.cfg.workload_percent {
            self.random_action();
        } else if roll < self.cfg.workload_percent + self.cfg.fault_percent {
            self.random_fault();
        } else if !self.process_next() {
            self.now_ms += self.rng.gen_range(1..=500);
        }
    }

    fn random_action(&mut self) {
        match self.rng.gen_range(0..100) {
            0..80 => {
                let i = self.rng.gen_range(0..self.agents.len());
                self.record_random_status(i);
            }
            80..90 => {
                let i = self.rng.gen_range(0..self.agents.len());
                self.assign_random_worker(i);
            }
            90..95 => {
                self.publish_next_list();
            }
            _ if self.cfg.lan && self.rng.gen_bool(0.5) => self.rogue_peer_change(),
            _ => {
                self.snoop();
            }
        }
    }

    fn random_fault(&mut self) {
        if self.cfg.lan && self.rng.gen_bool(0.5) {
            self.random_lan_fault();
            return;
        }
        let i = self.rng.gen_range(0..self.agents.len());
        match self.rng.gen_range(0..100) {
            0..35 => self.cut(i),
            35..55 => self.partition(i),
            55..75 => {
                // Heal someone who is partitioned, if anyone is.
                let parted: Vec<usize> = (0..self.agents.len())
                    .filter(|&j| self.agents[j].partitioned)
                    .collect();
                if !parted.is_empty() {
                    let j = parted[self.rng.gen_range(0..parted.len())];
                    self.heal(j);
                }
            }
            75..93 => {
                let down = self.rng.gen_range(200..=5_000);
                self.crash_agent(i, Some(down));
            }
            _ if self.cfg.hub_crashes && self.leases.is_some() => self.random_node_fault(),
            _ if self.cfg.hub_crashes => {
                let down = self.rng.gen_range(200..=5_000);
                self.crash_hub(Some(down));
            }
            _ => {}
        }
    }

    // ---- worker and HQ actions ----------------------------------------------

    /// A worker on agent `i` records a random status on a random task of a
    /// random list the agent holds (online or not). Returns the event if it
    /// was acknowledged.
    pub fn record_random_status(&mut self, i: usize) -> Option<StatusEvent> {
        let (list, task) = self.random_task(i)?;
        let status = match self.rng.gen_range(0..10) {
            0..4 => Status::InProgress,
            4..8 => Status::Completed,
            _ => Status::Reopened,
        };
        let update = StatusUpdate {
            id: EventId(uuid::Builder::from_random_bytes(self.rng.gen()).into_uuid()),
            task,
            status,
            worker: format!("w{}", self.rng.gen_range(1..=5))
                .parse()
                .expect("a valid worker code"),
            terminal: format!("pos-{i}").parse().expect("a valid terminal code"),
            note: self.rng.gen_bool(0.2).then(|| "shelf 4 was empty".into()),
        };
        self.record_status(i, list, &update)
    }

    /// A worker on agent `i` starts or completes a random task of `list`
    /// (never a reopen, which the agent may refuse). Returns the event if
    /// it was acknowledged.
    pub fn record_random_status_in(&mut self, i: usize, list: DocumentId) -> Option<StatusEvent> {
        let tasks = self.agents[i].agent.as_ref()?.list(list).ok()?.tasks;
        if tasks.is_empty() {
            return None;
        }
        let task = tasks[self.rng.gen_range(0..tasks.len())].spec.id;
        let update = StatusUpdate {
            id: EventId(uuid::Builder::from_random_bytes(self.rng.gen()).into_uuid()),
            task,
            status: [Status::InProgress, Status::Completed][self.rng.gen_range(0..2)],
            worker: format!("w{}", self.rng.gen_range(1..=5))
                .parse()
                .expect("a valid worker code"),
            terminal: format!("pos-{i}").parse().expect("a valid terminal code"),
            note: None,
        };
        self.record_status(i, list, &update)
    }

    /// Record `update` on agent `i`. Ok means durable: it is kept as
    /// acknowledged. A refusal (reopening a task that is not completed) is
    /// counted and skipped.
    pub fn record_status(
        &mut self,
        i: usize,
        list: DocumentId,
        update: &StatusUpdate,
    ) -> Option<StatusEvent> {
        let wall = self.now_ms + self.agents[i].skew_ms;
        let agent = self.agents[i].agent.as_mut()?;
        match agent.record_status(list, update, wall) {
            Ok((event, out)) => {
                self.trace_note(&("ack", i, event.id));
                self.stats.writes_acknowledged += 1;
                self.acked.push(Acknowledged {
                    agent: i,
                    list,
                    event: event.clone(),
                });
                self.route_agent(i, out);
                Some(event)
            }
            Err(_) => {
                self.stats.writes_refused += 1;
                None
            }
        }
    }

    /// A manager on agent `i` assigns a random task to a random worker.
    pub fn assign_random_worker(&mut self, i: usize) {
        let Some((list, task)) = self.random_task(i) else {
            return;
        };
        let worker = Assignee::Worker(
            format!("w{}", self.rng.gen_range(1..=5))
                .parse()
                .expect("a valid worker code"),
        );
        self.assign(i, list, task, Some(&worker));
    }

    /// A manager on agent `i` assigns `task` (or unassigns it, with `None`).
    /// Returns whether the agent accepted the command.
    pub fn assign(
        &mut self,
        i: usize,
        list: DocumentId,
        task: TaskId,
        assignee: Option<&Assignee>,
    ) -> bool {
        let wall = self.now_ms + self.agents[i].skew_ms;
        let Some(agent) = self.agents[i].agent.as_mut() else {
            return false;
        };
        match agent.set_assignee(list, task, assignee, wall) {
            Ok(out) => {
                self.route_agent(i, out);
                true
            }
            Err(_) => {
                self.stats.writes_refused += 1;
                false
            }
        }
    }

    fn random_task(&mut self, i: usize) -> Option<(DocumentId, TaskId)> {
        let lists = self.agents[i].agent.as_ref()?.lists();
        if lists.is_empty() {
            return None;
        }
        let list = &lists[self.rng.gen_range(0..lists.len())];
        if list.tasks.is_empty() {
            return None;
        }
        let task = list.tasks[self.rng.gen_range(0..list.tasks.len())].spec.id;
        Some((list.id, task))
    }

    /// HQ edits a document at the hub (if it is up); the edit is pushed to
    /// every connected terminal syncing it.
    pub fn hq_edit(
        &mut self,
        doc: DocumentId,
        f: impl FnOnce(
            &mut automerge::Automerge,
        ) -> Result<Vec<automerge::Change>, engine::model::ModelError>,
    ) {
        let now = self.now_ms;
        let Some(h) = self.hq_node_of_doc(doc) else {
            return;
        };
        let hub = self.hubs[h].hub.as_mut().expect("an HQ node is up");
        let out = hub.edit(doc, now, f).expect("an HQ edit");
        self.route_hub(h, out);
    }

    /// HQ publishes the next prepared list, if the hub is up and one is left.
    pub fn publish_next_list(&mut self) {
        let Some(next) = self.unpublished.first() else {
            return;
        };
        let Some(h) = self.hq_node(&next.meta.store.clone()) else {
            return;
        };
        let content = self.unpublished.remove(0);
        let hub = self.hubs[h].hub.as_mut().expect("an HQ node is up");
        let out = hub.publish(&content, self.now_ms).expect("publish a list");
        self.stats.lists_published += 1;
        self.published
            .entry(content.meta.store.clone())
            .or_default()
            .push(content.id);
        self.route_hub(h, out);
    }

    /// The other store's terminal asks for one of the main store's lists,
    /// as a hostile or buggy client might. The hub must not hand it over.
    pub fn snoop(&mut self) {
        if !self.cfg.other_store {
            return;
        }
        let i = self.agents.len() - 1;
        let (Some(conn), Some(&target)) = (self.agents[i].conn, self.lists().first()) else {
            return;
        };
        let mut state = automerge::sync::State::new();
        let Some(msg) = Automerge::new().generate_sync_message(&mut state) else {
            return;
        };
        let frame = wire::encode(&WireMessage::Request {
            sender_id: self.agents[i].cfg.peer_id.clone(),
            target_id: self.hub_cfg.peer_id.clone(),
            document_id: target,
            data: msg.encode(),
        });
        self.stats.snoops += 1;
        self.send(i, conn, Dir::ToHub, frame);
    }

    // ---- faults -------------------------------------------------------------

    /// The network drops agent `i`'s connection: everything in flight is
    /// lost; the agent notices now, the hub a little later.
    pub fn cut(&mut self, i: usize) {
        let Some(conn) = self.agents[i].conn.take() else {
            return;
        };
        self.trace_note(&("cut", i, conn));
        self.stats.cuts += 1;
        self.cut.insert(conn);
        if let Some(agent) = self.agents[i].agent.as_mut() {
            agent.disconnected();
        }
        self.hub_notices_later(conn);
        self.schedule_reconnect(i);
    }

    /// Agent `i` loses the network until `heal(i)`.
    pub fn partition(&mut self, i: usize) {
        if self.agents[i].partitioned {
            return;
        }
        self.stats.partitions += 1;
        self.agents[i].partitioned = true;
        self.cut(i);
    }

    /// Agent `i` has the network back; it reconnects at its next retry.
    pub fn heal(&mut self, i: usize) {
        self.agents[i].partitioned = false;
        self.schedule_reconnect(i);
    }

    /// Heal, then connect now instead of at the next retry (measurements).
    pub fn heal_and_reconnect_now(&mut self, i: usize) {
        self.agents[i].partitioned = false;
        self.events
            .retain(|_, e| !matches!(e, Event::Reconnect { agent } if *agent == i));
        self.agents[i].reconnect_pending = false;
        self.agents[i].backoff_ms = BACKOFF_FIRST_MS;
        self.try_connect(i);
    }

    /// Agent `i`'s process dies: its memory is gone, its file stays. With
    /// `restart_after`, it comes back after that many ms.
    pub fn crash_agent(&mut self, i: usize, restart_after: Option<i64>) {
        if self.agents[i].agent.take().is_none() {
            return;
        }
        self.trace_note(&("crash", i));
        self.stats.agent_crashes += 1;
        if let Some(conn) = self.agents[i].conn.take() {
            self.cut.insert(conn);
            self.hub_notices_later(conn);
        }
        self.lan_terminal_crashed(i);
        if let Some(after) = restart_after {
            self.agents[i].restart_pending = true;
            self.schedule(after, Event::AgentRestart { agent: i });
        }
    }

    /// Reopen agent `i` from its file and connect.
    pub fn restart_agent(&mut self, i: usize) {
        let actor_bytes: [u8; 16] = self.rng.gen();
        let node = &mut self.agents[i];
        node.restart_pending = false;
        if node.agent.is_some() {
            return;
        }
        // Any actor bytes: the file keeps the replica's own actor id.
        let store = SqliteDatabase::open(&node.path, actor_bytes).expect("reopen an agent's store");
        node.agent =
            Some(Agent::open(store, node.cfg.clone(), self.now_ms).expect("reopen an agent"));
        node.backoff_ms = BACKOFF_FIRST_MS;
        self.trace_note(&("restart", i));
        self.try_connect(i);
        self.lan_terminal_restarted(i);
    }

    /// A copy of agent `i`'s SQLite file as it is on disk now: a backup of
    /// the terminal's data directory, or a VM snapshot. The simulator is
    /// between steps, so no transaction is open and the database and its
    /// write-ahead log together are a consistent copy.
    pub fn back_up_agent(&mut self, i: usize) -> AgentBackup {
        self.backups += 1;
        let path = self
            .dir
            .path()
            .join(format!("agent-{i}-backup-{}.sqlite3", self.backups));
        copy_database(&self.agents[i].path, &path);
        self.trace_note(&("backup", i, self.backups));
        AgentBackup { agent: i, path }
    }

    /// Agent `backup.agent`'s process dies, its file is replaced by the
    /// backup, and it starts again from it (connecting unless partitioned).
    /// Whatever the agent acknowledged after the backup and never sent to
    /// the hub is lost with the restore, as it would be on a real terminal:
    /// a test that checks nothing acknowledged was lost lets the agent sync
    /// first (`run_until_quiescent`).
    pub fn restore_agent(&mut self, backup: &AgentBackup) {
        let i = backup.agent;
        self.crash_agent(i, None);
        self.events
            .retain(|_, e| !matches!(e, Event::AgentRestart { agent } if *agent == i));
        copy_database(&backup.path, &self.agents[i].path);
        self.trace_note(&("restore", i));
        self.restart_agent(i);
    }

    /// The hub's process dies (the first node, with several); every agent
    /// connected to it sees its connection reset.
    pub fn crash_hub(&mut self, restart_after: Option<i64>) {
        self.crash_node(0, restart_after);
    }

    /// Hub node `h`'s process dies; its agents see their connections reset.
    pub(super) fn crash_node(&mut self, h: usize, restart_after: Option<i64>) {
        if self.hubs[h].hub.take().is_none() {
            return;
        }
        if self.leases.is_some() {
            self.trace_note(&("hub crash", h));
        } else {
            self.trace_note(&"hub crash");
        }
        self.stats.hub_crashes += 1;
        if let Some(lease) = self.hubs[h].lease.as_mut() {
            lease.crashed();
        }
        for conn in std::mem::take(&mut self.hubs[h].conns).into_keys() {
            self.cut.insert(conn);
        }
        for i in 0..self.agents.len() {
            let on_h = self.agents[i]
                .conn
                .is_some_and(|c| self.conn_hub.get(&c) == Some(&h));
            if on_h {
                let conn = self.agents[i].conn.take().expect("checked above");
                self.cut.insert(conn);
                if let Some(agent) = self.agents[i].agent.as_mut() {
                    agent.disconnected();
                }
                self.schedule_reconnect(i);
            }
        }
        if let Some(after) = restart_after {
            self.hubs[h].restart_pending = true;
            self.schedule(after, Event::HubRestart { hub: h });
        }
    }

    /// Reopen every crashed hub node from the file. Agents come back at
    /// their next retry.
    pub fn restart_hub(&mut self) {
        for h in 0..self.hubs.len() {
            self.restart_node(h);
        }
    }

    pub(super) fn restart_node(&mut self, h: usize) {
        self.hubs[h].restart_pending = false;
        if self.hubs[h].hub.is_some() {
            return;
        }
        let store =
            SqliteDatabase::open(&self.hub_path, self.rng.gen()).expect("reopen the hub's store");
        let hub = match self.hubs[h].lease.as_mut() {
            None => Hub::open(store, self.hub_cfg.clone()),
            Some(lease) => {
                let table = self.leases.clone().expect("nodes have a lease table");
                let db = lease.rejoin(store, table, self.now_ms);
                Hub::open(db, lease.hub_cfg(&self.hub_cfg)).map(|mut hub| {
                    lease.serve_only_held(&mut hub);
                    hub
                })
            }
        };
        self.hubs[h].hub = Some(hub.expect("reopen the hub"));
        if self.leases.is_some() {
            self.trace_note(&("hub restart", h));
        } else {
            self.trace_note(&"hub restart");
        }
    }

    // ---- quiescence and the checks ------------------------------------------

    /// Heal every partition, restart whatever is down, and let the network
    /// and timers run with no new actions or faults until nothing is in
    /// flight and every agent is online. Panics (with the seed) if that
    /// takes more than a fixed budget of events.
    pub fn run_until_quiescent(&mut self) -> Quiescence {
        let start_ms = self.now_ms;
        let start = self.stats;
        self.wan_restored();
        for i in 0..self.agents.len() {
            if self.agents[i].partitioned {
                self.heal(i);
            }
        }
        self.events
            .retain(|_, e| !matches!(e, Event::HubRestart { .. } | Event::AgentRestart { .. }));
        self.restart_hub();
        self.resume_nodes();
        for i in 0..self.agents.len() {
            self.restart_agent(i);
        }
        let mut last_frame_ms = start_ms;
        for _ in 0..QUIESCENCE_BUDGET {
            let was_frame = self
                .events
                .first_key_value()
                .is_some_and(|(_, e)| e.is_frame());
            if !self.process_next() {
                let offline: Vec<&str> = (0..self.agents.len())
                    .filter(|&i| !self.is_online(i))
                    .map(|i| self.agents[i].name.as_str())
                    .collect();
                assert!(
                    offline.is_empty(),
                    "seed {}: quiet, but offline with no retry pending: {offline:?}",
                    self.seed
                );
                return Quiescence {
                    virtual_ms: last_frame_ms - start_ms,
                    frames: self.stats.frames_delivered - start.frames_delivered,
                    bytes: self.stats.bytes_delivered - start.bytes_delivered,
                };
            }
            if was_frame {
                last_frame_ms = self.now_ms;
            }
        }
        panic!(
            "seed {}: not quiescent after {QUIESCENCE_BUDGET} events; {} pending, stats {:?}",
            self.seed,
            self.events.len(),
            self.stats
        );
    }

    /// Where the replicas' files are (removed when the `Sim` is dropped).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// A copy of an agent's SQLite file (`Sim::back_up_agent`).
#[derive(Debug, Clone)]
pub struct AgentBackup {
    agent: usize,
    path: PathBuf,
}

/// Copy an SQLite database in WAL mode (the file and its log; the shared
/// memory index is rebuilt from the log) over `to`, which must not be open.
fn copy_database(from: &std::path::Path, to: &std::path::Path) {
    let with = |p: &std::path::Path, suffix: &str| {
        let mut s = p.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    for suffix in ["", "-wal", "-shm"] {
        let (src, dst) = (with(from, suffix), with(to, suffix));
        match std::fs::remove_file(&dst) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("removing {}: {e}", dst.display()),
        }
        if suffix != "-shm" && src.exists() {
            std::fs::copy(&src, &dst)
                .unwrap_or_else(|e| panic!("copying {} to {}: {e}", src.display(), dst.display()));
        }
    }
}

/// SQLite files in memory when the machine has a tmpfs (`/dev/shm`): the
/// replicas fsync every commit, and the simulator is about logic, not disks.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let builder = tempfile::Builder::new().prefix("sim-").tempdir_in(shm);
    match builder {
        Ok(d) if shm.is_dir() => d,
        _ => tempfile::tempdir().expect("a temporary directory"),
    }
}

/// HQ's list number `n` for `store`: a recurring instance with `tasks` tasks.
pub fn list_content(store: &StoreId, n: u32, tasks: usize) -> InstanceContent {
    let template = TemplateId(Uuid::from_u128(0x5140_0000 + u128::from(n)));
    let date = NaiveDate::from_ymd_opt(2026, 11, 26).expect("a valid date");
    let id = DocumentId::recurring_instance(template, store, date);
    InstanceContent {
        id,
        meta: ListMeta {
            store: store.clone(),
            name: format!("Closing checklist {n}"),
            template: Some(template),
            date,
            time_zone: "Europe/Berlin".into(),
            created_by: CreatedBy::Hq,
        },
        tasks: (0..tasks)
            .map(|t| TaskSpec {
                id: TaskId(Uuid::new_v5(&id.0, format!("task/{t}").as_bytes())),
                title: format!("Task {t} of list {n}"),
                description: "Count, refill, sign off.".into(),
                start: None,
                due: None,
                priority: Priority::Normal,
                link: Some("pos:daily-close".parse().expect("a valid link")),
                assignee: Some("group:cashiers".parse().expect("a valid assignee")),
                created_by: CreatedBy::Hq,
                position: t as i64,
            })
            .collect(),
    }
}
