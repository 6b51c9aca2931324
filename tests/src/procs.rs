//! Real processes for cross-process tests: build the `hub` and `pos-agent`
//! binaries once, start them on loopback, SIGKILL and restart them on the
//! same data, talk to their HTTP APIs, and read a stopped replica's file.
//!
//! Each process's stderr goes to a log file next to its data directory
//! (appended across restarts), so a failing test can show what it said.

use engine::storage::roles::*;
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use engine::document::instance;
use engine::ids::{DocumentId, EventId};
use engine::storage::SqliteDatabase;
use serde_json::{json, Value};

/// The hub's admin token in every process test.
pub const ADMIN: &str = "process-test-admin-token";
/// The store every process test uses.
pub const STORE: &str = "store-042";

/// A time zone where it is now about noon (`Etc/GMT-N` is UTC+N, without
/// daylight saving), so a test's times from a few hours ago to a few hours
/// ahead all fall on one local day whatever hour the suite runs at. Chosen
/// once per test process, so every caller in it agrees.
pub fn noon_zone() -> &'static str {
    static ZONE: OnceLock<String> = OnceLock::new();
    ZONE.get_or_init(|| {
        use chrono::Timelike;
        let east = (12 - chrono::Utc::now().hour() as i32).rem_euclid(24);
        let east = if east > 12 { east - 24 } else { east };
        match east {
            0 => "Etc/GMT".to_owned(),
            e if e > 0 => format!("Etc/GMT-{e}"),
            e => format!("Etc/GMT+{}", -e),
        }
    })
}

/// `HH:MM` on the clock of [`noon_zone`], `minutes` from now.
pub fn noon_zone_in(minutes: i64) -> String {
    (noon_zone_now() + chrono::Duration::minutes(minutes))
        .format("%H:%M")
        .to_string()
}

/// Today's date (`YYYY-MM-DD`) in [`noon_zone`].
pub fn noon_zone_today() -> String {
    noon_zone_now().date_naive().to_string()
}

fn noon_zone_now() -> chrono::DateTime<chrono::FixedOffset> {
    let zone = engine::recurrence::parse_time_zone(noon_zone()).expect("Etc/GMT zones exist");
    chrono::Utc::now().with_timezone(&zone).fixed_offset()
}

/// Build the two binaries once (cargo has finished building the tests by
/// the time they run, so this nested build only links what is missing).
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ has a parent")
            .to_path_buf();
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "hub", "-p", "pos-agent", "--bins"])
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

/// A child process, SIGKILLed when dropped, with the address it printed.
pub struct Proc {
    child: Child,
    pub addr: String,
    log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (what `Child::kill` sends) and reap: no shutdown code runs.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines of its log (stderr of every life of this data dir).
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last 40 lines of a log file.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Start `cmd` with stderr appended to `log` and wait for its
/// "listening on http://ADDR" line. An error (with the log's tail) if it
/// exits first, e.g. because it refuses a damaged database.
pub fn spawn_listening(mut cmd: Command, log: &Path) -> anyhow::Result<Proc> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut child = cmd
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .context("spawning")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = match lines.next() {
        Some(Ok(line)) => line,
        _ => {
            let status = child.wait().ok();
            bail!(
                "exited ({status:?}) before listening; its log:\n{}",
                log_tail(log)
            )
        }
    };
    let Some(addr) = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
    else {
        let _ = child.kill();
        bail!("no address in {line:?}")
    };
    let addr = addr.to_owned();
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(Proc {
        child,
        addr,
        log: log.to_path_buf(),
    })
}

/// `hub serve` on `data` (log: `data` + ".log"), listening on `listen`
/// (`127.0.0.1:0` for any port; an earlier address to restart in place).
pub fn start_hub(data: &Path, listen: &str) -> Proc {
    spawn_listening(hub_command(&bin("hub"), data, listen), &log_of(data))
        .expect("starting the hub")
}

/// The `hub serve` command of `start_hub`, for the hub binary at `program`.
pub fn hub_command(program: &Path, data: &Path, listen: &str) -> Command {
    let mut cmd = Command::new(program);
    // Short keepalives, so a silently dead link is noticed within seconds.
    cmd.args(["serve", "--listen", listen, "--admin-token", ADMIN])
        .args(["--keepalive-secs", KEEPALIVE_SECS])
        .arg("--data")
        .arg(data);
    cmd
}

/// `hub serve` as node `node` of a cluster on the PostgreSQL database at
/// `url`, otherwise as `start_hub`.
pub fn start_hub_node(data: &Path, url: &str, node: &str) -> Proc {
    let mut cmd = Command::new(bin("hub"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--admin-token", ADMIN])
        .args(["--keepalive-secs", KEEPALIVE_SECS])
        .args(["--database", url, "--node", node])
        .arg("--data")
        .arg(data);
    spawn_listening(cmd, &log_of(data)).expect("starting a hub node")
}

/// Ping interval of the hub and the agents the tests start (seconds).
pub const KEEPALIVE_SECS: &str = "2";

/// The log file of the process whose data directory is `data`.
pub fn log_of(data: &Path) -> PathBuf {
    data.with_extension("log")
}

/// What `start_agent` needs besides its data directory.
#[derive(Debug, Clone)]
pub struct AgentArgs {
    /// host:port of the hub's sync endpoint (or a proxy in front of it).
    pub hub: String,
    pub token: String,
    pub terminal: String,
    /// Local API address; `127.0.0.1:0` for any port.
    pub http: String,
}

/// The `pos-agent run` command for `data`.
pub fn agent_command(data: &Path, a: &AgentArgs) -> Command {
    agent_command_of(&bin("pos-agent"), data, a)
}

/// `agent_command` for the pos-agent binary at `program`.
pub fn agent_command_of(program: &Path, data: &Path, a: &AgentArgs) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg("run")
        .arg("--data")
        .arg(data)
        .args(["--hub", &format!("ws://{}/sync", a.hub)])
        // The store token by the environment, as the README says, so it
        // is not in `ps`.
        .env("POS_AGENT_TOKEN", &a.token)
        .args(["--store", STORE])
        .args(["--terminal", &a.terminal, "--http", &a.http])
        .args(["--keepalive-secs", KEEPALIVE_SECS]);
    cmd
}

/// A loopback port nobody listens on now, for a peer endpoint other
/// agents must know before it starts.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    l.local_addr().expect("a bound address").port()
}

/// `pos-agent run` on the store LAN: listening for peers on `listen`,
/// dialing `peers` (their `--peer-listen` ports).
pub fn start_peer_agent(data: &Path, a: &AgentArgs, listen: u16, peers: &[u16]) -> Proc {
    let mut cmd = agent_command(data, a);
    cmd.args(["--peer-listen", &format!("127.0.0.1:{listen}")]);
    for p in peers {
        cmd.args(["--peer", &format!("ws://127.0.0.1:{p}/lan")]);
    }
    spawn_listening(cmd, &log_of(data)).expect("starting a peered agent")
}

/// Start an agent, or an error with its log if it exits first.
pub fn try_start_agent(data: &Path, a: &AgentArgs) -> anyhow::Result<Proc> {
    spawn_listening(agent_command(data, a), &log_of(data))
}

pub fn start_agent(data: &Path, a: &AgentArgs) -> Proc {
    try_start_agent(data, a).expect("starting the agent")
}

/// Wait until `f` gives a value; panic after `deadline`. Never a bare sleep.
pub async fn wait_for<T>(
    what: &str,
    deadline: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
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

/// A fresh client per call: no pooled connection to a killed process.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a reqwest client")
}

/// GET from the hub with the admin token; `None` on any failure (process
/// down, 4xx, 5xx).
pub async fn get(url: String) -> Option<Value> {
    let r = client().get(url).bearer_auth(ADMIN).send().await.ok()?;
    r.status().is_success().then_some(())?;
    r.json().await.ok()
}

/// GET from an agent's local API (no token: a bearer there is a worker's
/// session); `None` on any failure.
pub async fn agent_get(url: String) -> Option<Value> {
    let r = client().get(url).send().await.ok()?;
    r.status().is_success().then_some(())?;
    r.json().await.ok()
}

/// POST (with the admin token when `admin`): the status and the JSON body
/// (Null if none), or the transport error (process down, connection cut).
pub async fn try_post(
    url: &str,
    body: &Value,
    admin: bool,
) -> Result<(u16, Value), reqwest::Error> {
    let mut req = client().post(url).json(body);
    if admin {
        req = req.bearer_auth(ADMIN);
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// POST to the hub's admin API that must succeed.
pub async fn post(url: String, body: Value) -> Value {
    let (status, v) = try_post(&url, &body, true)
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    assert!((200..300).contains(&status), "POST {url}: {status} {v}");
    v
}

/// Put worker `id` on the test store's roster through the admin API
/// (`body`: name, role, groups, pin); panics with the hub's answer if refused.
pub async fn put_worker(hub: &str, id: &str, body: Value) {
    let url = format!("http://{hub}/api/stores/{STORE}/workers/{id}");
    let r = client()
        .put(&url)
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
    let status = r.status();
    assert!(
        status.is_success(),
        "PUT {url}: {status} {}",
        r.text().await.unwrap_or_default()
    );
}

/// POST to an agent's local API (host:port) as a named worker, the CLI's
/// way; the answer must be a success.
pub async fn agent_post_ok(agent: &str, path: &str, body: Value) {
    let (status, v) = try_post(&format!("http://{agent}{path}"), &body, false)
        .await
        .unwrap_or_else(|e| panic!("POST {path} on {agent}: {e}"));
    assert!(
        (200..300).contains(&status),
        "POST {path} on {agent}: {status} {v}"
    );
}

/// The id of the task titled `title` on the agent at `agent`.
pub async fn task_id(agent: &str, title: &str) -> String {
    let tasks = agent_tasks(agent).await.expect("the agent's tasks");
    tasks
        .iter()
        .find(|t| t["title"] == title)
        .and_then(|t| t["task"].as_str())
        .unwrap_or_else(|| panic!("no task {title:?} on {agent}"))
        .to_owned()
}

/// A terminal with no hub to reach (an address nobody listens on),
/// holding what it received before: offline from its first second.
pub fn start_agent_offline(data: &Path, args: &AgentArgs) -> Proc {
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = nobody.local_addr().unwrap().to_string();
    drop(nobody);
    start_agent(
        data,
        &AgentArgs {
            hub: addr,
            ..args.clone()
        },
    )
}

/// A worker on the test store's roster: id, name, role, groups, PIN.
pub type RosterRow<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], &'a str);

/// HQ opens the test store `STORE` at the hub at `hub` (host:port):
/// `store` is the `POST /api/stores` body, `roster` its workers; returns
/// a token (labelled `label`) for its terminal.
pub async fn open_store(hub: &str, store: Value, roster: &[RosterRow<'_>], label: &str) -> String {
    post(format!("http://{hub}/api/stores"), store).await;
    for (id, name, role, groups, pin) in roster {
        put_worker(
            hub,
            id,
            serde_json::json!({"name": name, "role": role, "groups": groups, "pin": pin}),
        )
        .await;
    }
    post(
        format!("http://{hub}/api/stores/{STORE}/tokens"),
        serde_json::json!({ "label": label }),
    )
    .await["token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

/// HQ's side of a test: the store, a token for it, and one list for today.
pub struct Setup {
    pub token: String,
    pub list: DocumentId,
    pub tasks: usize,
}

/// Workers on `STORE`'s roster in `setup_store`: the ones tests act as.
pub const WORKERS: [&str; 4] = ["w-1", "w-2", "w-3", "w-4"];

/// Put `worker` on `STORE`'s roster (status changes need a rostered worker).
pub async fn add_worker(hub: &str, worker: &str) {
    let url = format!("http://{hub}/api/stores/{STORE}/workers/{worker}");
    let r = client()
        .put(&url)
        .bearer_auth(ADMIN)
        .json(&json!({"name": worker, "role": "cashier"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
    assert!(r.status().is_success(), "PUT {url}: {}", r.status());
}

/// Add `STORE` with `WORKERS` on its roster, issue a token, publish a list
/// of `tasks` tasks dated today (so it is in every terminal's working set).
pub async fn setup_store(hub: &str, tasks: usize) -> Setup {
    let api = format!("http://{hub}/api");
    post(
        format!("{api}/stores"),
        json!({"id": STORE, "name": "Main St", "time_zone": "Europe/Berlin"}),
    )
    .await;
    for w in WORKERS {
        add_worker(hub, w).await;
    }
    let token = post(
        format!("{api}/stores/{STORE}/tokens"),
        json!({"label": "test"}),
    )
    .await["token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let today = chrono::Utc::now().date_naive().to_string();
    let list = post(
        format!("{api}/lists"),
        json!({"store": STORE, "name": "Closing", "date": today,
               "tasks": (0..tasks).map(|i| json!({"title": format!("Task {i}")})).collect::<Vec<_>>()}),
    )
    .await;
    Setup {
        token,
        list: list["id"]
            .as_str()
            .expect("a list id")
            .parse()
            .expect("a document id"),
        tasks,
    }
}

/// The tasks an agent shows (its working set).
pub async fn agent_tasks(agent: &str) -> Option<Vec<Value>> {
    agent_get(format!("http://{agent}/api/tasks"))
        .await?
        .as_array()
        .cloned()
}

/// Record a status change through an agent's local API. `Ok(event id)`
/// only for the 201 that means "saved"; the error says what came back.
pub async fn set_status(
    agent: &str,
    task: &str,
    status: &str,
    worker: &str,
) -> Result<EventId, String> {
    let url = format!("http://{agent}/api/tasks/{task}/status");
    match try_post(&url, &json!({"status": status, "worker": worker}), false).await {
        Ok((201, v)) if v["saved"] == true => v["event"]["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("saved without an event id: {v}")),
        Ok((status, v)) => Err(format!("{status} {v}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Per task id: its status and every event id in its history, from an
/// `InstanceView` as the agent's `/api/lists/{id}` and the hub's
/// `/api/documents/{id}` return it.
pub fn task_histories(view: &Value) -> Option<BTreeMap<String, (String, Vec<String>)>> {
    let mut out = BTreeMap::new();
    for t in view["tasks"].as_array()? {
        let id = t["spec"]["id"].as_str()?.to_owned();
        let status = t["status"]["current"].as_str()?.to_owned();
        let history = t["status"]["history"]
            .as_array()?
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect();
        out.insert(id, (status, history));
    }
    Some(out)
}

/// Every status event id in the raw log of each document of a stopped
/// replica's database (agent or hub), duplicates included: the derived
/// views dedupe by id, so "exactly once" is checked here.
pub fn raw_events(db: &Path) -> anyhow::Result<BTreeMap<DocumentId, Vec<EventId>>> {
    let store = SqliteDatabase::open(db, [0xEE; 16])
        .with_context(|| format!("opening {}", db.display()))?;
    let mut out = BTreeMap::new();
    for (id, loaded) in store.load_all_documents()? {
        let doc = loaded.with_context(|| format!("document {id} does not load"))?;
        if let Ok((log, _)) = instance::read_events(&doc) {
            out.insert(id, log.into_iter().map(|e| e.id).collect());
        }
    }
    Ok(out)
}

/// Status changes each agent answered "saved": (event, agent index).
pub type Saved = std::sync::Arc<std::sync::Mutex<Vec<(EventId, usize)>>>;

/// A busy worker at terminal `i` (local API at `addr`): status changes on
/// random tasks every few tens of ms until `stop`, each one the agent
/// answered "saved" pushed to `saved`. Returns (saved, failed) counts;
/// a failure (agent down, request cut) is fine: the worker was not told
/// "saved".
pub async fn busy_worker(
    i: usize,
    addr: String,
    tasks: Vec<String>,
    saved: Saved,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seed: u64,
) -> (usize, usize) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut ok, mut failed) = (0, 0);
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let task = &tasks[rng.gen_range(0..tasks.len())];
        let status = ["in_progress", "completed"][rng.gen_range(0..2)];
        let who = WORKERS[rng.gen_range(0..WORKERS.len())];
        match set_status(&addr, task, status, who).await {
            Ok(event) => {
                saved.lock().expect("not poisoned").push((event, i));
                ok += 1;
            }
            Err(_) => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(15..60))).await;
    }
    (ok, failed)
}

/// One look at the hub and every agent: `Some(views)` once each holds
/// every event in `saved` and all show the same status and history.
pub async fn converged(
    hub: &str,
    agents: &[String],
    list: DocumentId,
    saved: &[(EventId, usize)],
) -> Option<Vec<BTreeMap<String, (String, Vec<String>)>>> {
    let mut views = vec![task_histories(
        &get(format!("http://{hub}/api/documents/{list}")).await?,
    )?];
    for a in agents {
        views.push(task_histories(
            &agent_get(format!("http://{a}/api/lists/{list}")).await?,
        )?);
    }
    let complete = views.iter().all(|v| {
        let held: std::collections::BTreeSet<&str> = v
            .values()
            .flat_map(|(_, h)| h.iter().map(String::as_str))
            .collect();
        saved
            .iter()
            .all(|(e, _)| held.contains(e.to_string().as_str()))
    });
    let same = views.iter().all(|v| *v == views[0]);
    (complete && same).then_some(views)
}

/// With the processes stopped: each database's raw log of `list` holds
/// every saved event exactly once, and they all hold the same events.
pub fn check_saved_exactly_once(
    dbs: &[PathBuf],
    list: DocumentId,
    saved: &[(EventId, usize)],
) -> anyhow::Result<()> {
    let mut logs = Vec::new();
    for db in dbs {
        let raw = raw_events(db)?;
        let mut counts = BTreeMap::<EventId, usize>::new();
        for e in raw.get(&list).into_iter().flatten() {
            *counts.entry(*e).or_default() += 1;
        }
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        anyhow::ensure!(
            twice.is_empty(),
            "{}: events recorded more than once: {twice:?}",
            db.display()
        );
        for (e, agent) in saved {
            anyhow::ensure!(
                counts.contains_key(e),
                "{}: event {e}, saved by agent {agent}, is missing",
                db.display()
            );
        }
        logs.push(counts.into_keys().collect::<Vec<_>>());
    }
    anyhow::ensure!(
        logs.iter().all(|l| *l == logs[0]),
        "the replicas' logs hold different events"
    );
    Ok(())
}
