//! Real processes on loopback: the built `hub` and three `pos-agent`s.
//! Stop the hub, make conflicting status changes on two agents while it is
//! down, restart it, and check that every replica converges and reports
//! the conflict.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ADMIN: &str = "process-test-admin-token";

/// Build the two binaries once (cargo has finished building the tests by
/// the time they run, so this nested build only links what is missing).
fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf();
        let status = Command::new(cargo)
            .args(["build", "-q", "--workspace", "--bins"])
            .current_dir(&root)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building hub and pos-agent failed");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or(root.join("target"));
        target.join("debug")
    });
    dir.join(name)
}

/// A child process killed when dropped, with the address it printed.
struct Proc {
    child: Child,
    addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `cmd` and wait for its "listening on http://ADDR" line.
fn spawn_listening(mut cmd: Command) -> Proc {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next().expect("a first line").expect("reading stdout");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Proc { child, addr }
}

fn start_hub(data: &Path, listen: &str) -> Proc {
    let mut cmd = Command::new(bin("hub"));
    cmd.args(["serve", "--listen", listen, "--admin-token", ADMIN])
        .arg("--data")
        .arg(data);
    spawn_listening(cmd)
}

fn start_agent(data: &Path, hub: &str, token: &str, terminal: &str) -> Proc {
    let mut cmd = Command::new(bin("pos-agent"));
    cmd.arg("run")
        .arg("--data")
        .arg(data)
        .args([
            "--hub",
            &format!("ws://{hub}/sync"),
            "--token",
            token,
            "--store",
            "store-042",
        ])
        .args(["--terminal", terminal, "--http", "127.0.0.1:0"]);
    spawn_listening(cmd)
}

async fn wait_for<T>(what: &str, deadline: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(url: String) -> Option<Value> {
    let r = reqwest::Client::new()
        .get(url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .ok()?;
    r.status().is_success().then_some(())?;
    r.json().await.ok()
}

async fn post(url: String, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(&url)
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "POST {url}: {status} {v}");
    v
}

/// The tasks an agent shows, keyed by task id.
async fn agent_tasks(agent: &Proc) -> Option<Vec<Value>> {
    get(format!("http://{}/api/tasks", agent.addr))
        .await?
        .as_array()
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_converge_after_the_hub_returns_and_report_the_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let hub_data = dir.path().join("hub");
    let hub = start_hub(&hub_data, "127.0.0.1:0");
    let hub_addr = hub.addr.clone();
    let api = format!("http://{hub_addr}/api");
    post(
        format!("{api}/stores"),
        json!({"id": "store-042", "name": "Main St", "time_zone": "Europe/Berlin"}),
    )
    .await;
    let token = post(
        format!("{api}/stores/store-042/tokens"),
        json!({"label": "test"}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let list = post(
        format!("{api}/lists"),
        json!({"store": "store-042", "name": "Closing", "date": "2026-11-26",
               "tasks": [{"title": "Count the till", "due": "21:30"}, {"title": "Lock the doors"}]}),
    )
    .await;
    let list_id = list["id"].as_str().unwrap().to_owned();

    let agents: Vec<Proc> = (0..3)
        .map(|i| {
            start_agent(
                &dir.path().join(format!("agent{i}")),
                &hub_addr,
                &token,
                &format!("pos-{i}"),
            )
        })
        .collect();
    for a in &agents {
        wait_for(
            "every agent to receive the list",
            Duration::from_secs(30),
            async || agent_tasks(a).await.filter(|t| t.len() == 2),
        )
        .await;
    }
    let task = agent_tasks(&agents[0]).await.unwrap()[0]["task"]
        .as_str()
        .unwrap()
        .to_owned();

    // The hub goes down; two terminals disagree while it is away.
    drop(hub);
    for (a, status, worker) in [
        (&agents[0], "completed", "w-1"),
        (&agents[1], "in_progress", "w-2"),
    ] {
        let v = post(
            format!("http://{}/api/tasks/{task}/status", a.addr),
            json!({"status": status, "worker": worker}),
        )
        .await;
        assert_eq!(v["saved"], true, "saved while the hub is down");
    }

    let restarted = Instant::now();
    let _hub = start_hub(&hub_data, &hub_addr);
    let mut views = Vec::new();
    for a in &agents {
        let row = wait_for(
            "the conflict to reach every agent",
            Duration::from_secs(60),
            async || {
                agent_tasks(a)
                    .await?
                    .into_iter()
                    .find(|t| t["task"] == task.as_str() && t["conflict"] == true)
            },
        )
        .await;
        views.push(row["status"].clone());
    }
    let converged = restarted.elapsed();
    eprintln!(
        "3 agents converged {converged:?} after the hub restarted (includes reconnect backoff)"
    );
    assert!(
        views.iter().all(|s| *s == views[0]),
        "same status shown everywhere: {views:?}"
    );

    // The hub holds both sides of the conflict too.
    let doc = wait_for(
        "the hub to hold the conflict",
        Duration::from_secs(30),
        async || {
            let d = get(format!("{api}/documents/{list_id}")).await?;
            let t = d["tasks"]
                .as_array()?
                .iter()
                .find(|t| t["spec"]["id"] == task.as_str())?
                .clone();
            (t["status"]["conflict"].as_array()?.len() == 2).then_some(t)
        },
    )
    .await;
    let workers: Vec<&str> = doc["status"]["conflict"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["worker"].as_str().unwrap())
        .collect();
    assert!(
        workers.contains(&"w-1") && workers.contains(&"w-2"),
        "{workers:?}"
    );
}
