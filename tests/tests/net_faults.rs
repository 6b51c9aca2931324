//! Network faults between real processes: each of two agents reaches the
//! hub through its own `FaultProxy`, workers record status changes on
//! both without pause, and the proxies delay and fragment bytes, cut
//! connections mid-message, refuse new ones, half-close them toward either
//! side, stall them, and let them die silently. Afterwards every change an
//! agent answered "saved" is on the hub and both agents exactly once, all
//! show the same status, and no connection is left stuck: each agent is
//! online and the hub holds exactly one connection per agent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tests::fault_proxy::{FaultProxy, Side};
use tests::procs::{
    agent_get, agent_tasks, busy_worker, check_saved_exactly_once, converged, get, set_status,
    setup_store, start_agent, start_hub, wait_for, AgentArgs, Proc, Saved, WORKERS,
};

const TASKS: usize = 4;

/// Longest an agent may take to be back in sync once the network is good
/// again: the reconnect backoff's cap (30 s) plus the sync itself.
const RECOVERY: Duration = Duration::from_secs(45);

struct Net {
    _dir: tempfile::TempDir,
    hub: Proc,
    proxies: Vec<FaultProxy>,
    agents: Vec<Proc>,
    list: engine::ids::DocumentId,
    tasks: Vec<String>,
}

impl Net {
    async fn start(agents: usize) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let hub = start_hub(&dir.path().join("hub"), "127.0.0.1:0");
        let setup = setup_store(&hub.addr, TASKS).await;
        let mut proxies = Vec::new();
        let mut procs = Vec::new();
        for i in 0..agents {
            let proxy = FaultProxy::start(hub.addr.clone()).await;
            let args = AgentArgs {
                hub: proxy.addr(),
                token: setup.token.clone(),
                terminal: format!("pos-{i}"),
                http: "127.0.0.1:0".into(),
            };
            let data = dir.path().join(format!("agent{i}"));
            procs.push(
                tokio::task::spawn_blocking(move || start_agent(&data, &args))
                    .await
                    .unwrap(),
            );
            proxies.push(proxy);
        }
        let mut tasks = Vec::new();
        for a in &procs {
            tasks = wait_for(
                "the list on every agent",
                Duration::from_secs(30),
                async || agent_tasks(&a.addr).await.filter(|t| t.len() == TASKS),
            )
            .await
            .iter()
            .map(|t| t["task"].as_str().unwrap().to_owned())
            .collect();
        }
        Net {
            _dir: dir,
            hub,
            proxies,
            agents: procs,
            list: setup.list,
            tasks,
        }
    }

    fn agent_addrs(&self) -> Vec<String> {
        self.agents.iter().map(|a| a.addr.clone()).collect()
    }

    fn logs(&self) -> String {
        let mut s = format!("--- hub ---\n{}\n", self.hub.log_tail());
        for a in &self.agents {
            s += &format!("--- agent ---\n{}\n", a.log_tail());
        }
        s
    }

    fn each(&self, f: impl Fn(&FaultProxy)) {
        for p in &self.proxies {
            f(p);
        }
    }

    /// Everything saved is everywhere, the same everywhere, and nothing is
    /// stuck: every agent online with nothing unconfirmed, one hub
    /// connection per agent. Panics with the logs after `RECOVERY`.
    async fn check_recovered(
        &self,
        saved: &[(engine::ids::EventId, usize)],
        what: &str,
    ) -> Duration {
        let start = Instant::now();
        let addrs = self.agent_addrs();
        let hub = self.hub.addr.clone();
        let ok = tokio::time::timeout(RECOVERY, async {
            loop {
                if self.recovered(&hub, &addrs, saved).await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        if ok.is_err() {
            let status = get(format!("http://{hub}/api/status")).await;
            panic!(
                "not recovered {RECOVERY:?} after {what}: hub status {status:?}, proxies' open \
                 connections {:?}\n{}",
                self.proxies
                    .iter()
                    .map(FaultProxy::open_connections)
                    .collect::<Vec<_>>(),
                self.logs()
            );
        }
        start.elapsed()
    }

    async fn recovered(
        &self,
        hub: &str,
        addrs: &[String],
        saved: &[(engine::ids::EventId, usize)],
    ) -> bool {
        if converged(hub, addrs, self.list, saved).await.is_none() {
            return false;
        }
        for a in addrs {
            let Some(s) = agent_get(format!("http://{a}/api/sync-status")).await else {
                return false;
            };
            if s["online"] != true || s["unconfirmed_changes"] != 0 {
                return false;
            }
        }
        let Some(status) = get(format!("http://{hub}/api/status")).await else {
            return false;
        };
        status["connections"] == addrs.len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_survive_delays_cuts_refusals_half_closes_and_stalls() {
    let started = Instant::now();
    let net = Net::start(2).await;
    let saved: Saved = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = net
        .agents
        .iter()
        .enumerate()
        .map(|(i, a)| {
            tokio::spawn(busy_worker(
                i,
                a.addr.clone(),
                net.tasks.clone(),
                saved.clone(),
                stop.clone(),
                rand::random(),
            ))
        })
        .collect();
    let phase = |d: u64| tokio::time::sleep(Duration::from_millis(d));

    // A slow link that delivers bytes a few at a time.
    net.each(|p| {
        p.set_delay(Duration::from_millis(30));
        p.set_fragment(7);
    });
    phase(1500).await;
    net.each(FaultProxy::clear);

    // Connections cut after a few hundred bytes: in the upgrade, in the
    // handshake, in the middle of a sync message.
    net.each(|p| p.set_cut_within(2000));
    net.each(FaultProxy::cut_all);
    phase(1500).await;
    net.each(FaultProxy::clear);
    net.each(FaultProxy::cut_all);

    // The link drops: open connections cut, new ones refused.
    net.each(|p| p.set_refuse(true));
    net.each(FaultProxy::cut_all);
    phase(1000).await;
    net.each(FaultProxy::clear);

    // Half-closes: FIN to the agent, later FIN to the hub.
    phase(1000).await;
    net.each(|p| p.half_close_all(Side::Client));
    phase(1000).await;
    net.each(|p| p.half_close_all(Side::Server));
    phase(1000).await;

    // A stall: nothing moves for a while, then everything resumes.
    net.each(|p| p.set_stall(true));
    phase(1500).await;
    net.each(FaultProxy::clear);

    phase(500).await;
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut failed) = (0, 0);
    for w in workers {
        let (o, f) = w.await.unwrap();
        ok += o;
        failed += f;
    }
    let saved = saved.lock().unwrap().clone();
    assert!(ok > 20, "only {ok} changes saved");
    let took = net.check_recovered(&saved, "the faults").await;
    eprintln!(
        "net_faults: {ok} saved, {failed} failed requests, {} connections accepted; \
         recovered {took:?} after the faults ended",
        net.proxies.iter().map(FaultProxy::accepted).sum::<u64>()
    );

    let Net {
        _dir: dir,
        hub,
        agents,
        list,
        ..
    } = net;
    let mut dbs = vec![dir.path().join("hub/hub.db")];
    dbs.extend((0..agents.len()).map(|i| dir.path().join(format!("agent{i}/agent.db"))));
    hub.kill();
    agents.into_iter().for_each(Proc::kill);
    check_saved_exactly_once(&dbs, list, &saved).unwrap();
    eprintln!("net_faults: done in {:?}", started.elapsed());
}

/// A link that dies without a FIN or RST (a NAT or firewall forgets the
/// flow): both ends still think the connection is open. The agent must
/// notice, connect again, and deliver what was saved meanwhile; the hub
/// must drop the dead connection.
///
/// The link dies silently (no FIN, no RST): the agent's pings go
/// unanswered, it replaces the connection after three keepalive intervals,
/// and the hub closes its side of the dead one the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_connection_is_replaced() {
    let net = Net::start(1).await;
    let task = net.tasks[0].clone();
    net.proxies[0].vanish_all();
    let event = set_status(&net.agents[0].addr, &task, "completed", WORKERS[0])
        .await
        .expect("saved offline");
    let took = net
        .check_recovered(&[(event, 0)], "the connection vanished")
        .await;
    eprintln!("net_faults: a vanished connection was replaced in {took:?}");
}
