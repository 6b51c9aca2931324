//! `bench storage`: the hub's storage on its hot path, SQLite and
//! PostgreSQL side by side in one run. Each round is one group commit as
//! the hub makes it for a batch of frames: for each of `per_batch`
//! stores, one new change appended to its list and its terminal's sync
//! state saved, and the list marked for indexing; then the commit (durable:
//! SQLite with `synchronous=FULL`, PostgreSQL with fsync on). Reported per
//! backend: commit latency p50/p99, changes per second, and CPU per change,
//! counting the database server's processes for PostgreSQL (the hub's
//! SQLite runs inside the hub).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit};
use engine::document::DocKind;
use engine::ids::{DocumentId, StoreId};
use engine::storage::roles::*;
use engine::storage::{PeerId, StoreRecord};

/// What one backend did.
#[derive(Debug, Clone)]
pub struct Measured {
    pub backend: &'static str,
    pub commits: usize,
    pub changes: usize,
    pub wall: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// CPU of this process plus, for PostgreSQL, the server's processes.
    pub cpu: Duration,
}

impl Measured {
    fn per_change_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.changes as f64
    }

    fn changes_per_sec(&self) -> f64 {
        self.changes as f64 / self.wall.as_secs_f64()
    }
}

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub stores: usize,
    pub commits: usize,
    pub per_batch: usize,
}

/// Run the workload on `db` (fresh), counting `extra_cpu` (the database
/// server's CPU so far) into CPU.
pub fn run(
    backend: &'static str,
    db: &mut dyn HubStorage,
    sizes: Sizes,
    extra_cpu: &dyn Fn() -> Duration,
) -> Result<Measured> {
    // Setup, not timed: a store, its list and its owner row per store.
    let mut docs = Vec::with_capacity(sizes.stores);
    for n in 0..sizes.stores {
        let store: StoreId = format!("store-{n:05}").parse()?;
        db.put_store(&StoreRecord {
            id: store.clone(),
            name: format!("Store {n}"),
            time_zone: "Europe/Berlin".into(),
        })?;
        let doc = DocumentId::from_random_bytes(*uuid::Uuid::new_v4().as_bytes());
        let mut am = AutoCommit::new().with_actor(ActorId::random());
        am.put(automerge::ROOT, "n", 0_i64)?;
        am.commit();
        db.append_changes(doc, &am.get_changes(&[]))?;
        db.set_doc_owner(doc, &store, DocKind::Instance)?;
        docs.push((doc, am));
    }
    let peer = PeerId::from("till-1");
    let state = vec![7u8; 200];
    let mut latencies = Vec::with_capacity(sizes.commits);
    let (cpu0, extra0) = (own_cpu()?, extra_cpu());
    let started = Instant::now();
    let mut next = 0;
    for round in 0..sizes.commits {
        let t = Instant::now();
        db.begin_batch()?;
        let mut touched = Vec::with_capacity(sizes.per_batch);
        for _ in 0..sizes.per_batch {
            let (doc, am) = &mut docs[next % sizes.stores];
            next += 1;
            // Never the value set up (0): an equal value makes no change.
            am.put(automerge::ROOT, "n", round as i64 + 1)?;
            let change = am.get_last_local_change().context("a change")?.clone();
            db.append_changes(*doc, &[change])?;
            db.save_sync_state(&peer, *doc, &state)?;
            touched.push(*doc);
        }
        db.mark_index_due(&touched)?;
        db.commit_batch()?;
        latencies.push(t.elapsed());
    }
    let wall = started.elapsed();
    let cpu = (own_cpu()? - cpu0) + (extra_cpu() - extra0);
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(Measured {
        backend,
        commits: sizes.commits,
        changes: sizes.commits * sizes.per_batch,
        wall,
        p50: at(0.5),
        p99: at(0.99),
        cpu,
    })
}

/// The table `bench storage` prints and records, with the ratio to the
/// first backend.
pub fn table(sizes: Sizes, runs: &[Measured]) -> String {
    let mut t = format!(
        "{} stores; {} group commits of {} changes each (a change appended and a sync state saved per store), durable\n\n\
         | backend | commit p50 | commit p99 | changes/s | CPU per change (incl. database server) | CPU ratio |\n|---|---|---|---|---|---|\n",
        sizes.stores, sizes.commits, sizes.per_batch
    );
    let base = runs.first().map(Measured::per_change_us).unwrap_or(0.0);
    for m in runs {
        // CPU is counted in clock ticks (10 ms): a tiny run may show none.
        let ratio = if base > 0.0 {
            format!("{:.2}x", m.per_change_us() / base)
        } else {
            "-".into()
        };
        t.push_str(&format!(
            "| {} | {:.2} ms | {:.2} ms | {:.0} | {:.0} µs | {ratio} |\n",
            m.backend,
            m.p50.as_secs_f64() * 1e3,
            m.p99.as_secs_f64() * 1e3,
            m.changes_per_sec(),
            m.per_change_us(),
        ));
    }
    t
}

/// This process's CPU time (user + system) so far.
pub fn own_cpu() -> Result<Duration> {
    cpu_of(std::process::id())
}

/// CPU time (user + system) of process `pid` so far.
pub fn cpu_of(pid: u32) -> Result<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = s.rsplit_once(')').map(|(_, r)| r).context("/proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    Ok(Duration::from_secs_f64(ticks as f64 / 100.0))
}

/// CPU so far of every process whose command line mentions `marker` (the
/// database server's directory: its postmaster and backends, whose
/// titles do not, are counted through their parent, the postmaster).
pub fn cpu_of_server(marker: &str) -> Duration {
    let mut postmasters = Vec::new();
    let mut all: Vec<(u32, u32)> = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0);
        if cmd.contains(marker) && cmd.contains("postgres -D") {
            postmasters.push(pid);
        }
        all.push((pid, ppid));
    }
    all.iter()
        .filter(|(pid, ppid)| postmasters.contains(pid) || postmasters.contains(ppid))
        .filter_map(|(pid, _)| cpu_of(*pid).ok())
        .sum()
}
