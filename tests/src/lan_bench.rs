//! `bench lan`: how long a tap on one terminal takes to show on the
//! store's other terminals over the LAN with the hub stopped (issue #22).
//!
//! Real processes on loopback: a hub (to set the store up, then stopped),
//! N `pos-agent run` peered pairwise (`--peer-listen`, `--peer`). A tap is
//! a status change POSTed to one terminal's local API; it is seen when
//! another terminal's API shows that status. Each tap waits until every
//! other terminal shows it before the next, and the tapping terminal goes
//! round, so every tap starts from a quiet mesh. Two figures per tap: the
//! next terminal (one other terminal), and the last of all the others.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::procs::{
    agent_command_of, agent_tasks, hub_command, log_of, set_status, setup_store, spawn_listening,
    AgentArgs, Proc,
};

/// The binaries the benchmark runs.
#[derive(Debug, Clone)]
pub struct Programs {
    pub hub: PathBuf,
    pub pos_agent: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub programs: Programs,
    /// One run per count of terminals, in this order.
    pub terminals: Vec<usize>,
    /// Taps per run.
    pub taps: usize,
    /// Tasks on the list the taps go round.
    pub tasks: usize,
    /// Data directories and logs go here.
    pub work: PathBuf,
}

/// One run's figures.
#[derive(Debug, Clone)]
pub struct Run {
    pub terminals: usize,
    pub taps: usize,
    /// Tap to shown on the next terminal.
    pub next: Percentiles,
    /// Tap to shown on every other terminal.
    pub all: Percentiles,
}

#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    fn of(mut samples: Vec<Duration>) -> Percentiles {
        samples.sort();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i]
        };
        Percentiles {
            p50: at(0.50),
            p99: at(0.99),
            max: *samples.last().expect("at least one tap"),
        }
    }
}

/// Longest a tap may take to show everywhere before the run fails.
const TAP_DEADLINE: Duration = Duration::from_secs(10);

/// Each count of terminals in turn.
pub async fn run(opts: &Options) -> Result<Vec<Run>> {
    anyhow::ensure!(
        opts.taps > 0 && opts.tasks > 0,
        "taps and tasks must be > 0"
    );
    let mut runs = Vec::new();
    for &n in &opts.terminals {
        anyhow::ensure!(n >= 2, "--terminals {n}: a LAN needs two terminals");
        let work = opts.work.join(format!("terminals-{n}"));
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        let r = run_one(opts, n, &work).await?;
        eprintln!(
            "{n} terminals: next p50 {:?} p99 {:?}; all p50 {:?} p99 {:?}",
            r.next.p50, r.next.p99, r.all.p50, r.all.p99
        );
        runs.push(r);
    }
    Ok(runs)
}

async fn run_one(opts: &Options, n: usize, work: &Path) -> Result<Run> {
    let hub_data = work.join("hub");
    let hub = spawn_listening(
        hub_command(&opts.programs.hub, &hub_data, "127.0.0.1:0"),
        &log_of(&hub_data),
    )
    .context("starting the hub")?;
    let setup = setup_store(&hub.addr, opts.tasks).await;
    let ports = (0..n).map(|_| free_port()).collect::<Result<Vec<u16>>>()?;
    // Each dials the ones after it: every pair once.
    let mut agents: Vec<Proc> = Vec::new();
    for i in 0..n {
        let data = work.join(format!("agent{i}"));
        let mut cmd = agent_command_of(
            &opts.programs.pos_agent,
            &data,
            &AgentArgs {
                hub: hub.addr.clone(),
                token: setup.token.clone(),
                terminal: format!("pos-{i}"),
                http: "127.0.0.1:0".into(),
            },
        );
        cmd.args(["--peer-listen", &format!("127.0.0.1:{}", ports[i])]);
        for p in &ports[i + 1..] {
            cmd.args(["--peer", &format!("ws://127.0.0.1:{p}/lan")]);
        }
        agents.push(
            spawn_listening(cmd, &log_of(&data)).with_context(|| format!("starting agent {i}"))?,
        );
    }
    for (i, a) in agents.iter().enumerate() {
        wait_until(Duration::from_secs(60), async || {
            let tasks = agent_tasks(&a.addr).await?;
            let s = crate::procs::agent_get(format!("http://{}/api/sync-status", a.addr)).await?;
            (tasks.len() == opts.tasks && s["lan_peers"] == (n - 1) as u64).then_some(())
        })
        .await
        .with_context(|| {
            format!(
                "agent {i} never held the list with {} peers; its log:\n{}",
                n - 1,
                a.log_tail()
            )
        })?;
    }
    let tasks: Vec<String> = agent_tasks(&agents[0].addr)
        .await
        .context("the list's tasks")?
        .iter()
        .filter_map(|t| t["task"].as_str().map(str::to_owned))
        .collect();
    // The store's internet link is down from here on.
    hub.kill();

    let mut next = Vec::with_capacity(opts.taps);
    let mut all = Vec::with_capacity(opts.taps);
    for k in 0..opts.taps {
        let tapper = k % n;
        let task = &tasks[k % tasks.len()];
        // Per task: started, then completed and reopened in turn.
        let status = match k / tasks.len() {
            0 => "in_progress",
            r if r % 2 == 1 => "completed",
            _ => "reopened",
        };
        let tapped = Instant::now();
        if let Err(e) = set_status(&agents[tapper].addr, task, status, "w-1").await {
            bail!("tap {k} on terminal {tapper}: {e}");
        }
        let mut seen: Vec<Option<Duration>> = vec![None; n];
        seen[tapper] = Some(Duration::ZERO);
        while seen.iter().any(Option::is_none) {
            if tapped.elapsed() > TAP_DEADLINE {
                bail!("tap {k} on terminal {tapper} not shown everywhere after {TAP_DEADLINE:?}: {seen:?}");
            }
            let polls = (0..n).filter(|&j| seen[j].is_none()).map(|j| {
                let addr = agents[j].addr.clone();
                async move { (j, status_of(&addr, task).await) }
            });
            for (j, shown) in futures_util::future::join_all(polls).await {
                if shown.as_deref() == Some(status) {
                    seen[j] = Some(tapped.elapsed());
                }
            }
        }
        let seen: Vec<Duration> = seen.into_iter().flatten().collect();
        next.push(seen[(tapper + 1) % n]);
        all.push(*seen.iter().max().expect("n >= 2"));
    }
    drop(agents);
    Ok(Run {
        terminals: n,
        taps: opts.taps,
        next: Percentiles::of(next),
        all: Percentiles::of(all),
    })
}

/// The status a terminal's API shows for `task`.
async fn status_of(agent: &str, task: &str) -> Option<String> {
    agent_tasks(agent)
        .await?
        .into_iter()
        .find(|t| t["task"] == task)?["status"]
        .as_str()
        .map(str::to_owned)
}

/// Poll `f` until it gives a value, or `None` after `deadline`.
async fn wait_until<T>(deadline: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if start.elapsed() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A loopback port nobody listens on now, for a peer endpoint the other
/// terminals must know before it starts.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(l.local_addr()?.port())
}

/// The Markdown table `bench lan` prints and records.
pub fn table(runs: &[Run]) -> String {
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
    let mut s = String::from(
        "Tap (status change POSTed to one terminal's API) until another terminal's API shows it, over the LAN, hub stopped; terminals on loopback, peered pairwise.\n\n\
         | terminals | taps | next terminal p50 / p99 / max (ms) | all other terminals p50 / p99 / max (ms) |\n|---|---|---|---|\n",
    );
    for r in runs {
        s.push_str(&format!(
            "| {} | {} | {} / {} / {} | {} / {} / {} |\n",
            r.terminals,
            r.taps,
            ms(r.next.p50),
            ms(r.next.p99),
            ms(r.next.max),
            ms(r.all.p50),
            ms(r.all.p99),
            ms(r.all.max),
        ));
    }
    s
}
