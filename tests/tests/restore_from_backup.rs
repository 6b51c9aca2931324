//! Real processes: a terminal whose data directory is restored from a
//! backup, and a terminal whose actor another holder of the store token
//! writes under while it is offline. Either way the terminal's next
//! changes reuse (actor, sequence number) pairs the hub holds with other
//! content. The terminal must notice, take a fresh actor, record its
//! unconfirmed status events again, go online with nothing unconfirmed,
//! and say so in `sync-status`; every event a worker was told is saved
//! ends up at the hub exactly once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use engine::ids::{DocumentId, EventId};
use serde_json::Value;
use tests::procs::{
    agent_get, agent_tasks, bin, check_saved_exactly_once, get, log_of, set_status, setup_store,
    start_agent, start_hub, wait_for, AgentArgs, Proc, WORKERS,
};

const DEADLINE: Duration = Duration::from_secs(60);

/// Copy a stopped replica's database (the file and its write-ahead log)
/// from one data directory to another, replacing what is there.
fn copy_db(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["agent.db", "agent.db-wal", "agent.db-shm"] {
        let _ = std::fs::remove_file(to.join(name));
        if name != "agent.db-shm" && from.join(name).exists() {
            std::fs::copy(from.join(name), to.join(name)).unwrap();
        }
    }
}

struct Shop {
    dir: tempfile::TempDir,
    hub: Option<Proc>,
    hub_addr: String,
    token: String,
    list: DocumentId,
    tasks: Vec<String>,
    /// Every event an agent answered "saved".
    saved: Vec<(EventId, usize)>,
}

impl Shop {
    async fn open() -> Shop {
        let dir = tempfile::tempdir().unwrap();
        let hub = start_hub(&dir.path().join("hub"), "127.0.0.1:0");
        let hub_addr = hub.addr.clone();
        let setup = setup_store(&hub_addr, 4).await;
        Shop {
            dir,
            hub: Some(hub),
            hub_addr,
            token: setup.token,
            list: setup.list,
            tasks: Vec::new(),
            saved: Vec::new(),
        }
    }

    fn data(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn agent(&self, data: &str) -> Proc {
        start_agent(
            &self.data(data),
            &AgentArgs {
                hub: self.hub_addr.clone(),
                token: self.token.clone(),
                terminal: "pos-1".into(),
                http: "127.0.0.1:0".into(),
            },
        )
    }

    async fn wait_for_list(&mut self, agent: &Proc) {
        let tasks = wait_for("the agent to hold the list", DEADLINE, async || {
            agent_tasks(&agent.addr).await.filter(|t| t.len() == 4)
        })
        .await;
        self.tasks = tasks
            .iter()
            .map(|t| t["task"].as_str().expect("a task id").to_owned())
            .collect();
    }

    /// `n` status updates at `agent`, each answered "saved".
    async fn record(&mut self, agent: &Proc, n: usize) {
        for k in 0..n {
            let task = &self.tasks[(self.saved.len() + k) % self.tasks.len()];
            let status = ["in_progress", "completed"][k % 2];
            let event = set_status(&agent.addr, task, status, WORKERS[k % WORKERS.len()])
                .await
                .unwrap_or_else(|e| panic!("a status update was not saved: {e}"));
            self.saved.push((event, 0));
        }
    }

    /// Until the hub holds every saved event.
    async fn hub_has_everything(&self) {
        let want: Vec<String> = self.saved.iter().map(|(e, _)| e.to_string()).collect();
        wait_for("the hub to hold every saved event", DEADLINE, async || {
            let doc = get(format!(
                "http://{}/api/documents/{}",
                self.hub_addr, self.list
            ))
            .await?;
            let held = tests::procs::task_histories(&doc)?;
            let all: Vec<&String> = held.values().flat_map(|(_, h)| h).collect();
            want.iter().all(|e| all.contains(&e)).then_some(())
        })
        .await;
    }

    fn stop_hub(&mut self) {
        self.hub.take().expect("the hub runs").kill();
    }

    fn start_hub_again(&mut self) {
        self.hub = Some(start_hub(&self.data("hub"), &self.hub_addr));
    }

    /// Until `agent` is online with nothing unconfirmed and reports that
    /// its history diverged; returns its `sync-status`.
    async fn recovered(&self, agent: &Proc) -> Value {
        wait_for(
            "the agent to go online with nothing unconfirmed and report the actor change",
            DEADLINE,
            async || {
                let s = agent_get(format!("http://{}/api/sync-status", agent.addr)).await?;
                (s["online"] == true
                    && s["unconfirmed_changes"] == 0
                    && s["actor_changes"].as_array().is_some_and(|c| !c.is_empty()))
                .then_some(s)
            },
        )
        .await
    }

    /// Stop everything and check both databases hold every saved event of
    /// the list exactly once.
    fn check_exactly_once(mut self, agent: Proc, data: &str) {
        agent.kill();
        self.stop_hub();
        check_saved_exactly_once(
            &[
                self.data("hub").join("hub.db"),
                self.data(data).join("agent.db"),
            ],
            self.list,
            &self.saved,
        )
        .unwrap();
    }
}

/// The CLI's `sync-status` text for the agent at `addr`.
fn cli_sync_status(addr: &str) -> String {
    let out = Command::new(bin("pos-agent"))
        .args(["--agent-url", &format!("http://{addr}"), "sync-status"])
        .output()
        .expect("running pos-agent sync-status");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn assert_reports_the_change(status: &Value, agent: &Proc, log: &Path) {
    let change = &status["actor_changes"][0];
    assert_ne!(change["old_actor"], change["new_actor"], "{status}");
    assert!(
        change["rerecorded"].as_u64().unwrap_or(0) > 0,
        "the offline updates were recorded again: {status}"
    );
    assert_eq!(status["rejected"], serde_json::json!([]), "{status}");
    let text = cli_sync_status(&agent.addr);
    assert!(
        text.contains("history diverged")
            && text.contains(change["new_actor"].as_str().unwrap())
            && text.starts_with("online; 0 local change(s)"),
        "the CLI says what happened: {text}"
    );
    let log = std::fs::read_to_string(log).unwrap();
    assert!(
        log.contains("diverged") && log.contains(change["old_actor"].as_str().unwrap()),
        "the agent logs the actor change: {}",
        agent.log_tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_restored_from_a_backup_syncs_again_and_loses_nothing() {
    let mut shop = Shop::open().await;
    let agent = shop.agent("agent");
    shop.wait_for_list(&agent).await;
    shop.record(&agent, 2).await;
    shop.hub_has_everything().await;

    // The backup, taken of the stopped terminal.
    agent.kill();
    copy_db(&shop.data("agent"), &shop.data("backup"));

    // Work after the backup, synced to the hub.
    let agent = shop.agent("agent");
    shop.record(&agent, 3).await;
    shop.hub_has_everything().await;
    agent.kill();

    // Restored; the hub is unreachable while the worker goes on.
    copy_db(&shop.data("backup"), &shop.data("agent"));
    shop.stop_hub();
    let agent = shop.agent("agent");
    shop.record(&agent, 3).await;

    shop.start_hub_again();
    let status = shop.recovered(&agent).await;
    shop.hub_has_everything().await;
    assert_reports_the_change(&status, &agent, &log_of(&shop.data("agent")));
    shop.check_exactly_once(agent, "agent");
}

/// Another holder of the store's token writes under the terminal's actor
/// (here: a clone of the terminal's data directory, which is the actor and
/// the token both) while the terminal is offline. The hub accepts it: the
/// actor belongs to the store. The terminal must not be wedged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_holder_writing_under_the_terminals_actor_does_not_wedge_it() {
    let mut shop = Shop::open().await;
    let agent = shop.agent("agent");
    shop.wait_for_list(&agent).await;
    shop.record(&agent, 2).await;
    shop.hub_has_everything().await;
    agent.kill();

    // The impostor writes while the terminal is down.
    copy_db(&shop.data("agent"), &shop.data("impostor"));
    let impostor = shop.agent("impostor");
    shop.record(&impostor, 2).await;
    shop.hub_has_everything().await;
    impostor.kill();

    // The terminal works offline under the same actor, then reconnects.
    shop.stop_hub();
    let agent = shop.agent("agent");
    shop.record(&agent, 3).await;
    shop.start_hub_again();
    let status = shop.recovered(&agent).await;
    shop.hub_has_everything().await;
    assert_reports_the_change(&status, &agent, &log_of(&shop.data("agent")));
    shop.check_exactly_once(agent, "agent");
}
