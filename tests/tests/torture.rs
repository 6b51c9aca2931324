//! SIGKILL torture of the real binaries: a hub and two terminals' agents
//! of one store, workers recording status changes through both agents'
//! local APIs without pause, and at random moments one process (or all of
//! them) killed with SIGKILL and restarted on its data, again and again,
//! while writes and sync are in flight.
//!
//! At the end, with everything up: every status change an agent answered
//! "saved" (201) is on that agent, reaches the hub, and every replica shows
//! the same history and status; then, with the processes stopped, each
//! replica's raw status log holds every saved event exactly once.
//!
//! `TORTURE_ITERATIONS=<n>` (default 10) for a longer run, `TORTURE_SEED`
//! to replay the kill schedule (the timing of real processes still varies).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::ids::EventId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tests::procs::{
    agent_tasks, busy_worker, check_saved_exactly_once, converged, log_tail, setup_store,
    start_agent, start_hub, wait_for, AgentArgs, Proc, Saved,
};

const DEFAULT_ITERATIONS: u64 = 10;
const AGENTS: usize = 2;
const TASKS: usize = 6;

/// The processes, each with the data directory and address it restarts on.
struct Cluster {
    hub: Option<Proc>,
    hub_data: PathBuf,
    hub_addr: String,
    agents: Vec<Option<Proc>>,
    agent_data: Vec<PathBuf>,
    agent_args: Vec<AgentArgs>,
}

impl Cluster {
    async fn restart_hub(&mut self) {
        let (data, addr) = (self.hub_data.clone(), self.hub_addr.clone());
        self.hub = Some(spawn_blocking(move || start_hub(&data, &addr)).await);
    }

    async fn restart_agent(&mut self, i: usize) {
        let (data, args) = (self.agent_data[i].clone(), self.agent_args[i].clone());
        self.agents[i] = Some(spawn_blocking(move || start_agent(&data, &args)).await);
    }

    fn kill(&mut self, victim: usize) {
        let p = if victim == AGENTS {
            self.hub.take()
        } else {
            self.agents[victim].take()
        };
        if let Some(p) = p {
            p.kill();
        }
    }

    async fn restart(&mut self, victim: usize) {
        if victim == AGENTS {
            self.restart_hub().await;
        } else {
            self.restart_agent(victim).await;
        }
    }

    fn logs(&self) -> String {
        let mut s = format!("--- hub log ---\n{}\n", log_tail(&log(&self.hub_data)));
        for d in &self.agent_data {
            s += &format!("--- {} log ---\n{}\n", d.display(), log_tail(&log(d)));
        }
        s
    }
}

fn log(data: &Path) -> PathBuf {
    tests::procs::log_of(data)
}

async fn spawn_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("the start helper does not panic")
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|e| panic!("{name}={value:?} is not a number: {e}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_saved_status_change_survives_sigkill_of_agents_and_hub() {
    let seed = env_number("TORTURE_SEED").unwrap_or_else(rand::random);
    let iterations = env_number("TORTURE_ITERATIONS").unwrap_or(DEFAULT_ITERATIONS);
    eprintln!("torture: TORTURE_SEED={seed} TORTURE_ITERATIONS={iterations}");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();

    let dir = tempfile::tempdir().unwrap();
    let hub_data = dir.path().join("hub");
    let hub = start_hub(&hub_data, "127.0.0.1:0");
    let hub_addr = hub.addr.clone();
    let setup = setup_store(&hub_addr, TASKS).await;
    let mut cluster = Cluster {
        hub: Some(hub),
        hub_data,
        hub_addr: hub_addr.clone(),
        agents: Vec::new(),
        agent_data: Vec::new(),
        agent_args: Vec::new(),
    };
    for i in 0..AGENTS {
        let data = dir.path().join(format!("agent{i}"));
        let mut args = AgentArgs {
            hub: hub_addr.clone(),
            token: setup.token.clone(),
            terminal: format!("pos-{i}"),
            http: "127.0.0.1:0".into(),
        };
        let p = start_agent(&data, &args);
        // Restarts reuse the port, so the workers keep one address.
        args.http = p.addr.clone();
        cluster.agents.push(Some(p));
        cluster.agent_data.push(data);
        cluster.agent_args.push(args);
    }
    let mut tasks = Vec::new();
    for a in &cluster.agent_args {
        tasks = wait_for(
            "every agent to have the list",
            Duration::from_secs(30),
            async || agent_tasks(&a.http).await.filter(|t| t.len() == TASKS),
        )
        .await
        .iter()
        .map(|t| t["task"].as_str().unwrap().to_owned())
        .collect();
    }

    let saved: Saved = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..AGENTS)
        .map(|i| {
            tokio::spawn(busy_worker(
                i,
                cluster.agent_args[i].http.clone(),
                tasks.clone(),
                saved.clone(),
                stop.clone(),
                rng.gen(),
            ))
        })
        .collect();

    let mut kills = BTreeMap::<&str, usize>::new();
    for _ in 0..iterations {
        // Let writes and sync run, then kill at an arbitrary moment.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..800))).await;
        let victims: Vec<usize> = if rng.gen_bool(0.15) {
            (0..=AGENTS).collect() // everything at once: a power cut
        } else {
            vec![rng.gen_range(0..=AGENTS)]
        };
        for &v in &victims {
            cluster.kill(v);
            *kills
                .entry(if v == AGENTS { "hub" } else { "agent" })
                .or_default() += 1;
        }
        // Down for a while: the others keep writing (offline if the hub is down).
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..400))).await;
        for &v in &victims {
            cluster.restart(v).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let mut attempts = (0, 0);
    for w in workers {
        let (ok, failed) = w.await.unwrap();
        attempts = (attempts.0 + ok, attempts.1 + failed);
    }
    let saved: Vec<(EventId, usize)> = saved.lock().unwrap().clone();
    assert!(
        saved.len() > 20,
        "the workers saved only {} changes",
        saved.len()
    );
    eprintln!(
        "torture: {iterations} iterations, kills {kills:?}, {} changes saved, {} requests failed (process down)",
        attempts.0, attempts.1
    );

    // Everything up: every saved change reaches every replica, and all
    // replicas show the same status and history.
    let list = setup.list;
    let converge = Instant::now();
    let agent_addrs: Vec<String> = cluster.agent_args.iter().map(|a| a.http.clone()).collect();
    let result = tokio::time::timeout(
        Duration::from_secs(90),
        wait_for("convergence", Duration::from_secs(90), async || {
            converged(&hub_addr, &agent_addrs, list, &saved).await
        }),
    )
    .await;
    let views = match result {
        Ok(v) => v,
        Err(_) => panic!(
            "replicas did not converge (TORTURE_SEED={seed}); logs:\n{}",
            cluster.logs()
        ),
    };
    eprintln!(
        "torture: converged {:?} after the last restart; {} events in the log",
        converge.elapsed(),
        views[0].values().map(|(_, h)| h.len()).sum::<usize>()
    );

    // Stopped: each replica's raw log holds every saved event exactly once.
    cluster.kill(AGENTS);
    for i in 0..AGENTS {
        cluster.kill(i);
    }
    let mut dbs = vec![cluster.hub_data.join("hub.db")];
    dbs.extend(cluster.agent_data.iter().map(|d| d.join("agent.db")));
    if let Err(e) = check_saved_exactly_once(&dbs, list, &saved) {
        panic!("{e:#} (TORTURE_SEED={seed})");
    }
    eprintln!("torture: done in {:?}", started.elapsed());
}
