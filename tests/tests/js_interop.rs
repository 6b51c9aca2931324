//! Interop with an unmodified JavaScript `@automerge/automerge-repo` client.
//!
//! The hub runs in-process on a loopback port; a Rust pos-agent syncs with
//! it; `tests/js/interop.mjs` (Node 20, packages pinned in
//! `tests/js/package-lock.json`) connects with a store token, finds one of
//! that store's lists, reads its tasks and completes the first one. The
//! change must be accepted by the hub and reach the Rust agent. The same
//! client asking for another store's document must get "unavailable", and an
//! edit of an HQ-authored field must be refused and reported to it.
//!
//! Needs `node` (20 or later) and `npm` on PATH: the test fails, rather than
//! skips, without them. It runs `npm ci` in `tests/js` when the packages are
//! missing. Hub and agent logs: `RUST_LOG=debug cargo test -p tests --test
//! js_interop -- --nocapture`.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use engine::ids::{DocumentId, EventId, Principal, StoreId, TaskId, TerminalId};
use engine::model::{CreatedBy, InstanceContent, ListMeta, Priority, Status, TaskSpec};
use engine::replica::hub::{HubCounters, HubLimits};
use engine::storage::StoreRecord;
use hub::data_dir::Opened;
use pos_agent::agent::Terminal;
use pos_agent::sync_client::Backoff;
use serde_json::Value;
use tests::procs;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

const TITLES: [&str; 3] = [
    "Count the till",
    "Lock the back door",
    "Switch off the ovens",
];
/// How long any one wait may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Node is there (20+) and `tests/js` has its packages; `npm ci` once if not.
fn node_ready() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let r = READY.get_or_init(|| {
        let out = std::process::Command::new("node")
            .arg("--version")
            .output()
            .map_err(|e| {
                format!(
                    "the JS interop test needs Node.js 20 or later and npm on PATH \
                     (could not run `node --version`: {e}); install Node 20, \
                     e.g. `apt-get install nodejs npm`"
                )
            })?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let major: u32 = version
            .trim_start_matches('v')
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 20 {
            return Err(format!(
                "the JS interop test needs Node.js 20 or later; `node --version` says {version:?}"
            ));
        }
        let installed = js_dir()
            .join("node_modules/@automerge/automerge-repo-network-websocket/package.json")
            .exists();
        if !installed {
            let status = std::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(js_dir())
                .status()
                .map_err(|e| {
                    format!(
                        "could not run `npm ci` in {}: {e}; install npm",
                        js_dir().display()
                    )
                })?;
            if !status.success() {
                return Err(format!(
                    "`npm ci` in {} failed: {status}",
                    js_dir().display()
                ));
            }
        }
        Ok(())
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

struct Published {
    doc: DocumentId,
    tasks: Vec<TaskId>,
}

fn list_for(store: &StoreId, name: &str) -> InstanceContent {
    let tasks = TITLES
        .iter()
        .enumerate()
        .map(|(i, title)| TaskSpec {
            id: TaskId(uuid::Uuid::new_v4()),
            title: (*title).to_owned(),
            description: String::new(),
            start: None,
            due: None,
            priority: Priority::Normal,
            link: None,
            assignee: None,
            created_by: CreatedBy::Hq,
            position: i as i64,
        })
        .collect();
    InstanceContent {
        id: DocumentId(uuid::Uuid::new_v4()),
        meta: ListMeta {
            store: store.clone(),
            name: name.to_owned(),
            template: None,
            date: NaiveDate::from_ymd_opt(2026, 11, 26).expect("a date"),
            time_zone: "Europe/Berlin".into(),
            created_by: CreatedBy::Hq,
        },
        tasks,
    }
}

/// A hub on a loopback port with two stores, each with a token and one list,
/// and a Rust pos-agent of store A that already holds store A's list.
struct Fixture {
    _dir: tempfile::TempDir,
    opened: Opened,
    port: u16,
    token_a: String,
    list_a: Published,
    list_b: Published,
    agent: Terminal,
    shutdown: CancellationToken,
}

impl Fixture {
    async fn start() -> Fixture {
        init_logs();
        node_ready();
        let dir = tempfile::tempdir().expect("temp dir");
        let opened = hub::data_dir::open(
            &dir.path().join("hub"),
            HubLimits::default(),
            Some("admin-token"),
            &Default::default(),
        )
        .expect("opening the hub");
        let store_a: StoreId = "store-a".parse().unwrap();
        let store_b: StoreId = "store-b".parse().unwrap();
        let token_a = hub::secrets::random_token();
        let token_b = hub::secrets::random_token();
        let content_a = list_for(&store_a, "Closing");
        let content_b = list_for(&store_b, "Closing");
        let published = |c: &InstanceContent| Published {
            doc: c.id,
            tasks: c.tasks.iter().map(|t| t.id).collect(),
        };
        let (list_a, list_b) = (published(&content_a), published(&content_b));
        let (ta, tb) = (token_a.clone(), token_b.clone());
        opened
            .state
            .hub
            .registry()
            .call(move |hub, now| {
                let mut out = Vec::new();
                let r = (|| -> Result<(), engine::replica::hub::HubError> {
                    for (store, token, content) in
                        [(store_a, ta, content_a), (store_b, tb, content_b)]
                    {
                        hub.add_store(&StoreRecord {
                            id: store.clone(),
                            name: format!("Shop {store}"),
                            time_zone: "Europe/Berlin".into(),
                        })?;
                        hub.add_token(
                            &token,
                            &Principal::Store(store.clone()),
                            "js interop",
                            now,
                            None,
                        )?;
                        out.extend(hub.publish(&content, now)?);
                        // The JS client records as w-1007: the hub refuses
                        // events by a worker not on the store's roster.
                        let rec = engine::document::directory::RosterWorker {
                            name: "Ana".into(),
                            role: "cashier".parse().expect("a valid role"),
                            groups: Vec::new(),
                            pin: None,
                        };
                        out.extend(hub.put_worker(
                            &store,
                            &"w-1007".parse().expect("a worker id"),
                            &rec,
                            now,
                        )?);
                    }
                    Ok(())
                })();
                (r, out)
            })
            .await
            .expect("hub thread")
            .expect("setting up stores and lists");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port");
        let port = listener.local_addr().unwrap().port();
        let shutdown = CancellationToken::new();
        tokio::spawn(hub::server::run(
            listener,
            opened.state.clone(),
            shutdown.clone(),
        ));

        let terminal: TerminalId = "pos-1".parse().unwrap();
        let agent = pos_agent::agent::open(&dir.path().join("agent"), Some("store-a"), terminal)
            .expect("opening the agent");
        tokio::spawn(pos_agent::sync_client::run(
            format!("ws://127.0.0.1:{port}/sync"),
            token_a.clone(),
            agent.handle.clone(),
            Backoff::default(),
            pos_agent::sync_client::Keepalive::default(),
            shutdown.clone(),
        ));

        let fx = Fixture {
            _dir: dir,
            opened,
            port,
            token_a,
            list_a,
            list_b,
            agent,
            shutdown,
        };
        let doc = fx.list_a.doc;
        fx.agent_until("the agent has store A's list", move |a| {
            a.list(doc).is_ok_and(|v| v.tasks.len() == TITLES.len())
        })
        .await;
        fx
    }

    fn sync_url(&self, token: &str) -> String {
        format!("ws://127.0.0.1:{}/sync?token={token}", self.port)
    }

    /// Poll the agent's replica until `done` holds, or fail at the deadline.
    async fn agent_until(
        &self,
        what: &str,
        done: impl Fn(&engine::replica::agent::Agent) -> bool + Clone + Send + 'static,
    ) {
        let start = Instant::now();
        loop {
            let d = done.clone();
            let ok = self
                .agent
                .handle
                .call(move |a, _| (d(a), Vec::new()))
                .await
                .expect("agent thread");
            if ok {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out after {DEADLINE:?} waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn counters(&self) -> HubCounters {
        self.opened
            .state
            .hub
            .registry()
            .call(|hub, _| (hub.counters(), Vec::new()))
            .await
            .expect("hub thread")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A running `node interop.mjs`: its stdout result line, stderr kept for failures.
struct JsClient {
    child: Child,
    stderr: tokio::task::JoinHandle<String>,
    mode: String,
}

impl JsClient {
    fn spawn(sync_url: &str, doc: DocumentId, worker: &str, mode: &str) -> JsClient {
        let mut child = Command::new("node")
            .arg(js_dir().join("interop.mjs"))
            .args([sync_url, &doc.to_url(), worker, mode])
            .current_dir(js_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("running node (install Node.js 20 or later)");
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = tokio::spawn(async move {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s).await;
            s
        });
        JsClient {
            child,
            stderr,
            mode: mode.to_owned(),
        }
    }

    /// The first stdout line (the script's JSON result). On EOF or a
    /// timeout, fail with the script's exit status and stderr.
    async fn result(&mut self) -> Value {
        let out = self.child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(out).lines();
        match tokio::time::timeout(DEADLINE, lines.next_line()).await {
            Ok(Ok(Some(line))) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("interop.mjs printed {line:?}, not JSON: {e}")),
            other => {
                let _ = self.child.start_kill();
                let status = self.child.wait().await;
                let stderr = (&mut self.stderr).await.unwrap_or_default();
                panic!(
                    "interop.mjs ({}) printed no result ({other:?}); exit {status:?}; stderr:\n{stderr}",
                    self.mode
                );
            }
        }
    }

    /// Close its stdin (it may leave) and require a clean exit.
    async fn finish(mut self) {
        drop(self.child.stdin.take());
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("interop.mjs did not exit after stdin closed")
            .expect("waiting for node");
        let stderr = self.stderr.await.unwrap_or_default();
        assert!(
            status.success(),
            "interop.mjs ({}) exited with {status}; stderr:\n{stderr}",
            self.mode
        );
    }
}

fn titles(v: &Value) -> Vec<String> {
    v["read"]
        .as_array()
        .unwrap_or_else(|| panic!("no \"read\" titles in {v}"))
        .iter()
        .map(|t| t.as_str().expect("titles are strings").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_completes_a_task_and_the_rust_agent_sees_it() {
    let fx = Fixture::start().await;
    let before = fx.counters().await;

    let mut js = JsClient::spawn(
        &fx.sync_url(&fx.token_a),
        fx.list_a.doc,
        "w-1007",
        "complete",
    );
    let result = js.result().await;
    assert_eq!(
        result.get("rejections"),
        None,
        "the hub rejected the JS client's change: {result}"
    );
    assert_eq!(
        titles(&result),
        TITLES,
        "the JS client read the list's tasks"
    );
    let task = fx.list_a.tasks[0];
    assert_eq!(
        result["task"],
        task.to_string(),
        "it completed the first task"
    );
    let event: EventId = result["event_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no event_id in {result}"))
        .parse()
        .expect("the event id is a UUID");

    // The change reaches the Rust agent through the hub.
    let doc = fx.list_a.doc;
    fx.agent_until("the agent shows the JS client's completion", move |a| {
        a.list(doc).is_ok_and(|v| {
            v.task(task).is_some_and(|t| {
                t.status.current == Status::Completed
                    && t.status.latest.as_ref().is_some_and(|e| e.id == event)
            })
        })
    })
    .await;
    let view = fx
        .agent
        .handle
        .call(move |a, _| (a.list(doc), Vec::new()))
        .await
        .expect("agent thread")
        .expect("the agent holds the list");
    let t = view.task(task).expect("the task");
    let e = t.status.latest.as_ref().expect("an event");
    assert_eq!(e.worker.as_str(), "w-1007");
    assert_eq!(e.terminal.as_str(), "js-interop");
    assert!(e.prev.is_empty(), "first event supersedes nothing");
    assert!(t.status.conflict.is_empty());
    assert_eq!(view.malformed_events, 0);
    for other in &fx.list_a.tasks[1..] {
        let s = &view.task(*other).expect("task").status;
        assert_eq!(s.current, Status::NotStarted, "only the first task changed");
    }

    // The hub accepted it and refused nothing.
    let after = fx.counters().await;
    assert_eq!(
        after.changes_rejected, before.changes_rejected,
        "the hub rejected a change"
    );
    assert!(after.changes_accepted > before.changes_accepted);
    js.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_finds_another_stores_document_unavailable() {
    let fx = Fixture::start().await;
    let mut js = JsClient::spawn(
        &fx.sync_url(&fx.token_a),
        fx.list_b.doc,
        "w-1007",
        "unavailable",
    );
    let result = js.result().await;
    assert_eq!(
        result["unavailable"], true,
        "store A's token must not find store B's list: {result}"
    );
    assert!(
        result["error"]
            .as_str()
            .is_some_and(|e| e.contains(&fx.list_b.doc.to_bs58check())),
        "the error names the document: {result}"
    );
    js.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_edit_of_an_hq_field_is_refused_and_reported() {
    let fx = Fixture::start().await;
    let before = fx.counters().await;
    let mut js = JsClient::spawn(
        &fx.sync_url(&fx.token_a),
        fx.list_a.doc,
        "w-1007",
        "hq-edit",
    );
    let result = js.result().await;
    assert_eq!(titles(&result), TITLES);
    let rejections = result["rejections"]
        .as_array()
        .unwrap_or_else(|| panic!("no rejections in {result}"));
    assert!(
        rejections.iter().any(|r| r.as_str().is_some_and(|r| {
            r.contains("rejected change")
                && r.contains(&fx.list_a.doc.to_bs58check())
                && r.contains("authored by HQ")
        })),
        "the JS client was told why: {result}"
    );
    js.finish().await;
    let after = fx.counters().await;
    assert!(after.changes_rejected > before.changes_rejected);
    assert_eq!(after.changes_accepted, before.changes_accepted);
    // The title the agent shows is still HQ's.
    let doc = fx.list_a.doc;
    let first = fx.list_a.tasks[0];
    let view = fx
        .agent
        .handle
        .call(move |a, _| (a.list(doc), Vec::new()))
        .await
        .expect("agent thread")
        .expect("the agent holds the list");
    assert_eq!(view.task(first).expect("task").spec.title, TITLES[0]);
}

/// The JS client at a hub node that does not serve its store (a cluster on
/// PostgreSQL): the node proxies it to the node that does, and its
/// completion is accepted there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_through_a_node_that_does_not_serve_its_store() {
    init_logs();
    let Some(server) = hub::pg::testing::PgServer::shared() else {
        return;
    };
    node_ready();
    let url = server.new_database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let nodes = [
        procs::start_hub_node(&dir.path().join("node-a"), &url, "node-a"),
        procs::start_hub_node(&dir.path().join("node-b"), &url, "node-b"),
    ];
    let token = procs::open_store(
        &nodes[0].addr,
        serde_json::json!({"id": procs::STORE, "name": "A", "time_zone": "Europe/Berlin"}),
        &[("w-1007", "Ana", "cashier", &[], "1234")],
        "js through a node",
    )
    .await;
    let owner = {
        let started = Instant::now();
        loop {
            let o = server.psql(
                &db,
                &format!(
                    "SELECT owner FROM store_leases WHERE store_id = '{}' \
                     AND expires_at > clock_timestamp()",
                    procs::STORE
                ),
            );
            if !o.is_empty() {
                break o;
            }
            assert!(started.elapsed() < DEADLINE, "no node took the store");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let stranger = if owner == "node-a" {
        &nodes[1]
    } else {
        &nodes[0]
    };
    let list: DocumentId = procs::post(
        format!("http://{}/api/lists", stranger.addr),
        serde_json::json!({"store": procs::STORE, "name": "Closing", "date": "2026-11-26",
               "tasks": TITLES.iter().map(|t| serde_json::json!({"title": t})).collect::<Vec<_>>()}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let mut js = JsClient::spawn(
        &format!("ws://{}/sync?token={token}", stranger.addr),
        list,
        "w-1007",
        "complete",
    );
    let result = js.result().await;
    assert_eq!(result.get("rejections"), None, "refused: {result}");
    assert_eq!(
        titles(&result),
        TITLES,
        "the JS client read the list through the proxy"
    );
    js.finish().await;
    // The serving node stored the completion.
    let started = Instant::now();
    loop {
        let events = server.psql(
            &db,
            "SELECT count(*) FROM status_events WHERE worker = 'w-1007'",
        );
        if events == "1" {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the completion did not land ({events} events)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
