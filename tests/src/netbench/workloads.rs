//! The workloads, each against one running server: bring the stores
//! online, reconnect storm, steady state, HQ publish fan-out, memory.

use engine::storage::roles::*;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use automerge::ChangeHash;
use engine::ids::{DocumentId, EventId};
use engine::model::{Status, StatusUpdate};
use engine::storage::SqliteDatabase;
use futures_util::StreamExt;
use tokio::sync::oneshot;

use super::fixture::{list_content, World, ADMIN_TOKEN};
use super::fleet::{percentile, since, terminal_of, Fleet};
use super::server::{self, Kind, ProcStats, Server};
use super::terminal::{Cmd, Goal, Report};
use super::Sizes;

/// Long enough for the default sizes on a slow machine; a stuck run fails.
const PHASE_TIMEOUT: Duration = Duration::from_secs(900);

#[derive(Debug, Clone, Default)]
pub struct Storm {
    pub changes: usize,
    /// Until every terminal has every other terminal's changes and has seen
    /// the server's heads equal the merged heads.
    pub total: Duration,
    /// Until the server's heads held every change (as its terminals saw).
    pub server_has_all: Duration,
    /// Hub only: until its status index (the dashboard's) held every
    /// change. The hub indexes after syncing, when idle or when the index
    /// is read; this reads it once the terminals are done, and the server
    /// CPU time below includes that work.
    pub index_all: Option<Duration>,
    pub server_cpu: Duration,
    /// The database server's CPU over the same phase (PostgreSQL kinds).
    pub db_cpu: Duration,
    /// Largest VmRSS sampled (every 100 ms) during the storm, and VmHWM after.
    pub peak_rss_kib: u64,
    pub hwm_kib: u64,
    pub bytes: u64,
    pub frames: u64,
    pub generator_cpu: Duration,
    /// Terminals' connections opened again after a drop (see `terminal`).
    pub reconnects: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Steady {
    pub secs: u64,
    pub made: usize,
    pub delivered: usize,
    /// From the first change made to the last one delivered: what the
    /// server sustained. Offered more than it can carry, `delivered /
    /// span` is its capacity.
    pub span: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub server_cpu: Duration,
    /// The database server's CPU over the same phase (PostgreSQL kinds).
    pub db_cpu: Duration,
    /// The load generator's own CPU time over the same phase: it shares
    /// the machine's cores with the server, so a server's capacity is
    /// only measured while this stays below what the machine has left.
    pub generator_cpu: Duration,
    pub bytes: u64,
    pub reconnects: u64,
}

impl Steady {
    /// The rate the server carried: the offered rate while it keeps up,
    /// its capacity once it cannot.
    pub fn delivered_per_sec(&self) -> f64 {
        self.delivered as f64 / self.span.as_secs_f64().max(1e-9)
    }

    /// `cpu` seconds and as a share of one core over the time worked: a
    /// server that fell behind works on past the offered seconds.
    pub fn cpu_share(&self, cpu: Duration) -> String {
        let worked = self.span.as_secs_f64().max(self.secs as f64);
        format!(
            "{:.1} s ({:.0} %)",
            cpu.as_secs_f64(),
            100.0 * cpu.as_secs_f64() / worked.max(1e-9)
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct Fanout {
    pub stores: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Until HQ's last publish returned (hub) or reached the server (baseline).
    pub published: Duration,
    pub server_cpu: Duration,
    /// The database server's CPU over the same phase (PostgreSQL kinds).
    pub db_cpu: Duration,
    /// The stores' terminals' and HQ's.
    pub reconnects: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Memory {
    pub idle_kib: u64,
    pub connected_kib: u64,
    pub stores: usize,
    /// (documents synced so far, VmRSS, documents in the server's memory if it says).
    pub steps: Vec<(usize, u64, Option<u64>)>,
    pub reconnects: u64,
}

impl Memory {
    pub fn per_store_kib(&self) -> f64 {
        (self.connected_kib as f64 - self.idle_kib as f64) / self.stores.max(1) as f64
    }

    /// Growth per document over the first step (before any eviction cap).
    pub fn per_doc_kib(&self, base_kib: u64) -> f64 {
        match self.steps.first() {
            Some((docs, rss, _)) if *docs > 0 => (*rss as f64 - base_kib as f64) / *docs as f64,
            _ => 0.0,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ServerResult {
    pub online: Duration,
    pub storm: Storm,
    pub steady: Steady,
    pub fanout: Fanout,
    pub memory: Memory,
    /// RSS after the memory workload's disconnect, before its batches.
    pub memory_base_kib: u64,
    /// Reconnects while seeding the baseline and bringing the stores online.
    pub setup_reconnects: u64,
}

/// Peak VmRSS of `pid`, sampled every 100 ms until the sampler is dropped.
struct RssSampler {
    peak: Arc<Mutex<u64>>,
    stop: Option<oneshot::Sender<()>>,
}

impl RssSampler {
    /// Samples the sum of `pids`' resident sets.
    fn start(pids: Vec<u32>) -> RssSampler {
        let peak = Arc::new(Mutex::new(0));
        let (tx, mut rx) = oneshot::channel();
        let p = peak.clone();
        tokio::spawn(async move {
            loop {
                let rss: u64 = pids
                    .iter()
                    .filter_map(|pid| server::proc_stats(*pid).ok())
                    .map(|s| s.rss_kib)
                    .sum();
                {
                    let mut m = p.lock().expect("not poisoned");
                    *m = (*m).max(rss);
                }
                tokio::select! {
                    _ = &mut rx => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        });
        RssSampler {
            peak,
            stop: Some(tx),
        }
    }

    fn peak(mut self) -> u64 {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        *self.peak.lock().expect("not poisoned")
    }
}

/// Have terminal `t` of store `s` fetch every document of its store from
/// `server` (want them, goal: synced, connect); returns how many.
fn fetch_store(fleet: &Fleet, world: &World, server: &Server, s: usize, t: usize) -> usize {
    let docs = documents_of(world, s);
    let i = terminal_of(s, t);
    fleet.send(i, Cmd::Want(docs.clone()));
    fleet.send(
        i,
        Cmd::Goals(docs.iter().map(|d| (*d, Goal::Synced)).collect()),
    );
    fleet.send(
        i,
        Cmd::Connect {
            url: server.sync_url(s),
        },
    );
    docs.len()
}

fn documents_of(world: &World, s: usize) -> Vec<DocumentId> {
    let mut docs = world.lists(s);
    docs.push(world.directory(s));
    docs
}

/// Baseline only: push every document (as the hub holds them, read from
/// its fixture database) to the JS server. Untimed setup. Returns how
/// often a seeder reconnected.
pub async fn seed(world: &World, server: &Server, fixture_db: &std::path::Path) -> Result<u64> {
    const BATCH: usize = 50;
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let db = fixture_db.to_path_buf();
    let w = world.clone();
    let loader = std::thread::spawn(move || -> Result<()> {
        let store = SqliteDatabase::open(&db, *uuid::Uuid::new_v4().as_bytes())?;
        for first in (0..w.sizes.stores).step_by(BATCH) {
            let mut batch = Vec::new();
            for s in first..(first + BATCH).min(w.sizes.stores) {
                let mut docs = Vec::new();
                for d in documents_of(&w, s) {
                    let doc = store
                        .load_document(d)?
                        .with_context(|| format!("{d} is not in the fixture"))?;
                    docs.push((d, doc));
                }
                batch.push(docs);
            }
            if tx.blocking_send(batch).is_err() {
                break;
            }
        }
        Ok(())
    });
    let mut reconnects = 0;
    while let Some(batch) = rx.recv().await {
        let mut fleet = Fleet::new("seeder", batch.len());
        let mut n = 0;
        for (i, docs) in batch.into_iter().enumerate() {
            let goals = docs
                .iter()
                .map(|(d, doc)| {
                    let mut h = doc.get_heads();
                    h.sort();
                    (*d, Goal::Heads(h))
                })
                .collect();
            n += docs.len();
            fleet.send(i, Cmd::Hold(docs));
            fleet.send(i, Cmd::Goals(goals));
            fleet.send(
                i,
                Cmd::Connect {
                    url: server.hq_url()?,
                },
            );
        }
        fleet
            .wait_count("seeding the baseline", PHASE_TIMEOUT, n, |r| {
                matches!(r, Report::Reached { .. })
            })
            .await?;
        fleet.disconnect_all().await;
        reconnects += fleet.take_reconnects();
    }
    loader
        .join()
        .map_err(|_| anyhow::anyhow!("the fixture loader panicked"))??;
    Ok(reconnects)
}

/// Stores brought online together in the (untimed) setup. In waves, so a
/// server that answers 62,000 first requests at once slowly (the JS
/// baseline at 1,000 stores stopped accepting connections for minutes)
/// still gets to the timed workloads; the storm is the all-at-once one.
const ONLINE_WAVE: usize = 100;

/// Bring both terminals of every store online holding every document.
pub async fn online(world: &World, server: &Server, fleet: &mut Fleet) -> Result<Duration> {
    let started = Instant::now();
    let stores: Vec<usize> = (0..world.sizes.stores).collect();
    for wave in stores.chunks(ONLINE_WAVE) {
        let mut n = 0;
        for &s in wave {
            for t in 0..2 {
                n += fetch_store(fleet, world, server, s, t);
            }
        }
        fleet
            .wait_count("bringing the stores online", PHASE_TIMEOUT, n, |r| {
                matches!(r, Report::Reached { .. })
            })
            .await?;
    }
    fleet.drain();
    Ok(started.elapsed())
}

fn update(task: engine::ids::TaskId, status: Status, terminal: usize) -> StatusUpdate {
    StatusUpdate {
        id: EventId(uuid::Uuid::new_v4()),
        task,
        status,
        worker: format!("w{}", terminal + 1)
            .parse()
            .expect("a valid worker code"),
        terminal: format!("pos-{}", terminal + 1)
            .parse()
            .expect("a valid terminal code"),
        note: None,
    }
}

/// Workload 1: everyone offline, `changes` status changes per list per
/// store (split between its two terminals), everyone back at once.
pub async fn storm(
    world: &World,
    sizes: &Sizes,
    server: &Server,
    fleet: &mut Fleet,
) -> Result<Storm> {
    fleet.disconnect_all().await;
    // Let the server see every close before the clock starts.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut pending = Vec::new();
    for s in 0..world.sizes.stores {
        for doc in world.lists(s) {
            let tasks = world.task_ids(doc);
            for k in 0..sizes.changes {
                let t = k % 2;
                // Terminal t takes every other task; the status alternates
                // each time it comes back to the same task.
                let task = tasks[k % tasks.len()];
                let status = if (k / tasks.len()).is_multiple_of(2) {
                    Status::InProgress
                } else {
                    Status::Completed
                };
                let (tx, rx) = oneshot::channel();
                fleet.send(
                    terminal_of(s, t),
                    Cmd::Record {
                        doc,
                        update: update(task, status, t),
                        done: Some(tx),
                    },
                );
                pending.push((s, doc, t, rx));
            }
        }
    }
    // The merged heads of a list: each terminal's last change.
    let mut last: HashMap<(DocumentId, usize), ChangeHash> = HashMap::new();
    let changes = pending.len();
    for (_, doc, t, rx) in pending {
        let hash = rx
            .await
            .context("a terminal stopped")?
            .map_err(|e| anyhow::anyhow!("recording a status change: {e}"))?;
        last.insert((doc, t), hash);
    }
    let mut expected: HashMap<DocumentId, Vec<ChangeHash>> = HashMap::new();
    for ((doc, _), h) in last {
        expected.entry(doc).or_default().push(h);
    }
    let mut n = 0;
    for s in 0..world.sizes.stores {
        for t in 0..2 {
            let goals: Vec<(DocumentId, Goal)> = world
                .lists(s)
                .into_iter()
                .filter_map(|d| {
                    let mut h = expected.get(&d)?.clone();
                    h.sort();
                    Some((d, Goal::Heads(h)))
                })
                .collect();
            n += goals.len();
            fleet.send(terminal_of(s, t), Cmd::Goals(goals));
        }
    }

    fleet.reset_counters();
    let before = server.stats()?;
    let gen_before = server::self_stats()?;
    let sampler = RssSampler::start(server.pids());
    // A mark for profiling the timed part (e.g. `perf record -p`).
    eprintln!(
        "[{}] storm: every terminal reconnects now",
        server.kind.label()
    );
    let start = Instant::now();
    for s in 0..world.sizes.stores {
        for t in 0..2 {
            fleet.send(
                terminal_of(s, t),
                Cmd::Connect {
                    url: server.sync_url(s),
                },
            );
        }
    }
    let reports = fleet
        .wait_count("reconnect storm", PHASE_TIMEOUT, n, |r| {
            matches!(r, Report::Reached { .. })
        })
        .await?;
    let index_all = if server.kind.is_hub() {
        status_lists(server).await?;
        Some(start.elapsed())
    } else {
        None
    };
    let after = server.stats()?;
    let gen_after = server::self_stats()?;
    let peak = sampler.peak();
    let mut total = Duration::ZERO;
    let mut server_has: HashMap<DocumentId, Instant> = HashMap::new();
    for r in &reports {
        match r {
            Report::Reached { at, .. } => total = total.max(since(start, *at)),
            Report::ServerHas { doc, at } => {
                let e = server_has.entry(*doc).or_insert(*at);
                *e = (*e).min(*at);
            }
            _ => {}
        }
    }
    let server_has_all = server_has
        .values()
        .map(|at| since(start, *at))
        .max()
        .unwrap_or_default();
    fleet.drain();
    Ok(Storm {
        changes,
        total,
        server_has_all,
        index_all,
        server_cpu: after.cpu.saturating_sub(before.cpu),
        db_cpu: after.db_cpu.saturating_sub(before.db_cpu),
        peak_rss_kib: peak.max(after.rss_kib),
        hwm_kib: after.hwm_kib,
        bytes: fleet.shared.bytes(),
        frames: fleet.frames(),
        generator_cpu: gen_after.cpu.saturating_sub(gen_before.cpu),
        reconnects: fleet.take_reconnects(),
    })
}

/// Workload 3: every store makes `rate` status changes per second, from
/// its two terminals in turn, for `secs`; latency is from the change
/// being made at one terminal to its arrival at the other.
pub async fn steady(
    world: &World,
    sizes: &Sizes,
    server: &Server,
    fleet: &mut Fleet,
) -> Result<Steady> {
    fleet.shared.latencies.lock().expect("not poisoned").clear();
    fleet.shared.sent_at.lock().expect("not poisoned").clear();
    *fleet.shared.last_delivery.lock().expect("not poisoned") = None;
    fleet.shared.track_latency.store(true, Ordering::Relaxed);
    fleet.reset_counters();
    let before = server.stats()?;
    let gen_before = server::self_stats()?;
    let per_store = (sizes.steady_secs as f64 * sizes.steady_rate).round() as usize;
    let interval = Duration::from_secs_f64(1.0 / sizes.steady_rate);
    let start = tokio::time::Instant::now();
    let stores = world.sizes.stores;
    let mut schedules = Vec::new();
    for s in 0..stores {
        let lists = world.lists(s);
        let tasks: Vec<Vec<engine::ids::TaskId>> =
            lists.iter().map(|d| world.task_ids(*d)).collect();
        let terminals = [
            fleet.terminals[terminal_of(s, 0)].clone(),
            fleet.terminals[terminal_of(s, 1)].clone(),
        ];
        // Spread the stores evenly over each interval.
        let offset = interval.mul_f64(s as f64 / stores as f64);
        schedules.push(tokio::spawn(async move {
            for i in 0..per_store {
                tokio::time::sleep_until(start + offset + interval * i as u32).await;
                let t = i % 2;
                let l = (i / 2) % lists.len();
                let task = tasks[l][(i / 2 / lists.len()) % tasks[l].len()];
                let status = if i % 4 < 2 {
                    Status::InProgress
                } else {
                    Status::Completed
                };
                let _ = terminals[t].send(Cmd::Record {
                    doc: lists[l],
                    update: update(task, status, t),
                    done: None,
                });
            }
        }));
    }
    for s in schedules {
        s.await?;
    }
    // Let the last changes arrive (a server that fell behind works off its
    // backlog here; what has not arrived by then counts as not delivered).
    let drain = tokio::time::Instant::now() + Duration::from_secs(120);
    let made = per_store * stores;
    while tokio::time::Instant::now() < drain
        && fleet.shared.latencies.lock().expect("not poisoned").len() < made
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = server.stats()?;
    let gen_after = server::self_stats()?;
    fleet.shared.track_latency.store(false, Ordering::Relaxed);
    if let Some(e) = fleet.first_error() {
        bail!("steady state: the server sent an error: {e}");
    }
    let mut lat = std::mem::take(&mut *fleet.shared.latencies.lock().expect("not poisoned"));
    lat.sort();
    Ok(Steady {
        secs: sizes.steady_secs,
        made,
        delivered: lat.len(),
        span: fleet
            .shared
            .last_delivery
            .lock()
            .expect("not poisoned")
            .map_or(Duration::ZERO, |l| {
                l.saturating_duration_since(start.into_std())
            }),
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        max: lat.last().copied().unwrap_or_default(),
        server_cpu: after.cpu.saturating_sub(before.cpu),
        db_cpu: after.db_cpu.saturating_sub(before.db_cpu),
        generator_cpu: gen_after.cpu.saturating_sub(gen_before.cpu),
        bytes: fleet.shared.bytes(),
        reconnects: fleet.take_reconnects(),
    })
}

/// Workload 2: HQ publishes one new list to every store; time until both
/// terminals of each store hold it. The hub gets `POST /api/lists` naming
/// a chunk of stores each (one transaction per chunk, so a chunk's stores
/// get the list as it commits); the baseline (no admin API) gets the list
/// pushed by an HQ connection, then the directory entry once the server
/// holds the list.
pub async fn fanout(
    world: &World,
    sizes: &Sizes,
    kind: Kind,
    server: &Server,
    fleet: &mut Fleet,
) -> Result<Fanout> {
    let stores = world.sizes.stores;
    for s in 0..stores {
        for t in 0..2 {
            fleet.send(
                terminal_of(s, t),
                Cmd::WatchDirectory {
                    doc: world.directory(s),
                    tasks: sizes.fanout_tasks,
                },
            );
        }
    }
    let new_list = world.sizes.lists + 1;
    let hq = match kind {
        Kind::Hub | Kind::HubPg | Kind::HubPg3 => None,
        Kind::Baseline => {
            // HQ holds every directory before the clock starts.
            let mut hq = Fleet::new("hq", 1);
            let dirs: Vec<DocumentId> = (0..stores).map(|s| world.directory(s)).collect();
            hq.send(0, Cmd::Want(dirs.clone()));
            hq.send(
                0,
                Cmd::Goals(dirs.iter().map(|d| (*d, Goal::Synced)).collect()),
            );
            hq.send(
                0,
                Cmd::Connect {
                    url: server.hq_url()?,
                },
            );
            hq.wait_count("HQ loading the directories", PHASE_TIMEOUT, stores, |r| {
                matches!(r, Report::Reached { .. })
            })
            .await?;
            Some(hq)
        }
    };
    let before = server.stats()?;
    let start = Instant::now();
    let mut hq_reconnects = 0;
    let published = match hq {
        None => {
            /// Stores named in one request: one hub transaction (fsync)
            /// each, and the hub thread busy for about as long as it takes.
            const STORES_PER_PUBLISH: usize = 50;
            /// Requests in flight; the hub runs them one after another.
            const PUBLISHES_IN_FLIGHT: usize = 4;
            let client = reqwest::Client::new();
            let url = format!("http://{}/api/lists", server.addr);
            // The same list for every store (name, date and tasks do not
            // depend on the store); the hub gives each its own document.
            let bodies: Vec<(usize, serde_json::Value)> = world.stores[..stores]
                .chunks(STORES_PER_PUBLISH)
                .map(|chunk| {
                    let list = list_content(&chunk[0], new_list, sizes.fanout_tasks);
                    (chunk.len(), publish_body(&list, chunk))
                })
                .collect();
            let results: Vec<Result<()>> = futures_util::stream::iter(bodies)
                .map(|(named, body)| {
                    let (client, url) = (client.clone(), url.clone());
                    async move {
                        let r = client
                            .post(&url)
                            .bearer_auth(ADMIN_TOKEN)
                            .json(&body)
                            .send()
                            .await?;
                        if !r.status().is_success() {
                            bail!("POST /api/lists: {} {}", r.status(), r.text().await?);
                        }
                        let reply: serde_json::Value = r.json().await?;
                        let published = reply["lists"].as_array().map_or(0, Vec::len);
                        if published != named {
                            bail!("POST /api/lists named {named} stores and published {published}: {reply}");
                        }
                        Ok(())
                    }
                })
                .buffer_unordered(PUBLISHES_IN_FLIGHT)
                .collect()
                .await;
            for r in results {
                r?;
            }
            start.elapsed()
        }
        Some(mut hq) => {
            for s in 0..stores {
                let content = list_content(&world.stores[s], new_list, sizes.fanout_tasks);
                hq.send(
                    0,
                    Cmd::Publish {
                        content: Box::new(content),
                        directory: world.directory(s),
                    },
                );
            }
            hq.wait_count("HQ publishing", PHASE_TIMEOUT, stores, |r| {
                matches!(r, Report::Published { .. })
            })
            .await?;
            let t = start.elapsed();
            hq_reconnects = hq.take_reconnects();
            // Keep HQ connected until the stores have the lists.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                hq.disconnect_all().await;
            });
            t
        }
    };
    let reports = fleet
        .wait_count("publish fan-out", PHASE_TIMEOUT, 2 * stores, |r| {
            matches!(r, Report::NewList { .. })
        })
        .await?;
    let after = server.stats()?;
    let mut per_store: HashMap<usize, Duration> = HashMap::new();
    for r in &reports {
        if let Report::NewList { terminal, at, .. } = r {
            let e = per_store.entry(terminal / 2).or_default();
            *e = (*e).max(since(start, *at));
        }
    }
    let mut times: Vec<Duration> = per_store.into_values().collect();
    times.sort();
    fleet.drain();
    Ok(Fanout {
        stores,
        p50: percentile(&times, 0.5),
        p99: percentile(&times, 0.99),
        max: times.last().copied().unwrap_or_default(),
        published,
        server_cpu: after.cpu.saturating_sub(before.cpu),
        db_cpu: after.db_cpu.saturating_sub(before.db_cpu),
        reconnects: fleet.take_reconnects() + hq_reconnects,
    })
}

/// The hub API's form of list `c` for every store in `stores` (it picks
/// each store's list id).
fn publish_body(
    c: &engine::model::InstanceContent,
    stores: &[engine::ids::StoreId],
) -> serde_json::Value {
    serde_json::json!({
        "stores": stores.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "name": format!("{} (new)", c.meta.name),
        "date": c.meta.date.to_string(),
        "tasks": c.tasks.iter().map(|t| serde_json::json!({
            "title": t.title,
            "description": t.description,
            "assignee": "group:floor",
            "link": "pos:stock-count",
        })).collect::<Vec<_>>(),
    })
}

/// Wait until the hub's status index (its dashboard's figures) has every
/// change: `/metrics` polled until `hub_status_index_backlog` is 0 (a
/// status read answers within a quarter second from the index as it
/// stands, and reading the whole fleet's grid over and over would cost
/// the hub more than the catching up), then one status read, which must
/// say nothing is behind (`status-index-behind: 0`).
async fn status_lists(server: &Server) -> Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let backlog = hub_metric(server, "hub_status_index_backlog").await?;
        if backlog == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the hub's status index was still {backlog} lists behind after {PHASE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = client
        .get(format!("http://{}/api/status/lists", server.addr))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .context("asking the hub for its status index")?;
    anyhow::ensure!(
        resp.status().is_success(),
        "the hub's status index answered {}",
        resp.status()
    );
    let behind = resp
        .headers()
        .get("status-index-behind")
        .context("the hub's status answer has no status-index-behind header")?;
    anyhow::ensure!(
        behind == "0",
        "the hub's status answer says {behind:?} lists are behind after its backlog was 0"
    );
    Ok(())
}

/// Documents the hub says it holds in memory (`/metrics`), if it says.
async fn documents_in_memory(kind: Kind, server: &Server) -> Option<u64> {
    if !kind.is_hub() {
        return None;
    }
    hub_metric(server, "hub_documents_in_memory").await.ok()
}

/// One of the hub's `/metrics` values, summed over its nodes.
async fn hub_metric(server: &Server, name: &str) -> Result<u64> {
    let mut sum = 0;
    for addr in &server.addrs {
        let text = reqwest::Client::new()
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .context("asking the hub for its metrics")?
            .text()
            .await?;
        let v: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .with_context(|| format!("the hub's metrics have no {name}"))?
            .trim()
            .parse()
            .with_context(|| format!("{name} in the hub's metrics"))?;
        sum += v;
    }
    Ok(sum)
}

/// Workload 5, on a freshly started server holding every document:
/// memory per connected store (every terminal connected, no document
/// synced), then per loaded document and whether it stays bounded (one
/// terminal per store in batches syncs its store's documents and leaves;
/// RSS after each batch).
pub async fn memory(
    world: &World,
    sizes: &Sizes,
    kind: Kind,
    server: &Server,
) -> Result<(Memory, u64)> {
    let stores = world.sizes.stores;
    if kind.is_hub() {
        // Lists the last run left due for indexing are indexed when the
        // hub is idle: that work (and its memory) is not a connection's.
        status_lists(server).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = server.stats()?;
    let mut fleet = Fleet::new("mem", 2 * stores);
    for s in 0..stores {
        for t in 0..2 {
            fleet.send(
                terminal_of(s, t),
                Cmd::Connect {
                    url: server.sync_url(s),
                },
            );
        }
    }
    fleet
        .wait_count(
            "connecting every terminal",
            PHASE_TIMEOUT,
            2 * stores,
            |r| matches!(r, Report::Opened { .. }),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connected: ProcStats = server.stats()?;
    fleet.disconnect_all().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = server.stats()?.rss_kib;
    let mut steps = Vec::new();
    let mut docs_so_far = 0;
    for first in (0..stores).step_by(sizes.memory_batch.max(1)) {
        let batch: Vec<usize> = (first..(first + sizes.memory_batch).min(stores)).collect();
        let mut n = 0;
        for &s in &batch {
            n += fetch_store(&fleet, world, server, s, 0);
        }
        fleet
            .wait_count("memory: syncing a batch", PHASE_TIMEOUT, n, |r| {
                matches!(r, Report::Reached { .. })
            })
            .await?;
        for &s in &batch {
            let (tx, rx) = oneshot::channel();
            fleet.send(terminal_of(s, 0), Cmd::Disconnect { done: tx });
            let _ = rx.await;
            fleet.send(terminal_of(s, 0), Cmd::DropAll);
        }
        docs_so_far += n;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss = server.stats()?.rss_kib;
        steps.push((docs_so_far, rss, documents_in_memory(kind, server).await));
        fleet.drain();
    }
    Ok((
        Memory {
            idle_kib: idle.rss_kib,
            connected_kib: connected.rss_kib,
            stores,
            steps,
            reconnects: fleet.take_reconnects(),
        },
        base,
    ))
}
