//! The `pos-agent` command line says what it did, or that there is
//! nothing, with a header over rows in due order; the store token comes
//! from a file or the environment, never needing the command line; and a
//! terminal run with `--require-pin-for-cli` takes status changes only
//! from a worker who gave their PIN (the web UI's session names the
//! worker in every mode).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::{seed_list, seed_roster, Local, STORE};
use engine::ids::{DocumentId, TaskId};
use engine::model::{CreatedBy, InstanceContent, ListMeta, Priority, TaskSpec};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const ROSTER: &[common::Worker<'static>] = &[
    ("w-1", "Ana Lopez", "cashier", &["closers"], Some("1234")),
    ("w-2", "Bo Novak", "cashier", &[], Some("2345")),
    ("m-1", "Mia Chen", "manager", &[], Some("9999")),
];

fn task(n: u128, title: &str, due: Option<chrono::DateTime<Utc>>) -> TaskSpec {
    TaskSpec {
        id: TaskId(uuid::Uuid::from_u128(n)),
        title: title.into(),
        description: String::new(),
        start: None,
        due,
        priority: Priority::Normal,
        link: None,
        assignee: None,
        created_by: CreatedBy::Hq,
        position: n as i64,
    }
}

/// Today's closing list, its tasks in position order 22:00, 19:00, none.
fn closing(dir: &Path) -> InstanceContent {
    let today = Utc::now().date_naive();
    let at = |h: u32| Some(Utc.from_utc_datetime(&today.and_hms_opt(h, 0, 0).unwrap()));
    let content = InstanceContent {
        id: DocumentId(uuid::Uuid::from_u128(1)),
        meta: ListMeta {
            store: common::store(),
            name: "Closing".into(),
            template: None,
            date: today,
            time_zone: "UTC".into(),
            created_by: CreatedBy::Hq,
        },
        tasks: vec![
            task(101, "Lock the back door", at(22)),
            task(102, "Count the till", at(19)),
            task(103, "Water the plants", None),
        ],
    };
    seed_list(dir, &content);
    content
}

/// `pos-agent ARGS --agent-url BASE`, with no settings from the
/// environment running the tests.
async fn cli(base: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pos-agent"));
    cmd.args(args).args(["--agent-url", base]);
    for (k, _) in std::env::vars() {
        if k.starts_with("POS_AGENT_") {
            cmd.env_remove(k);
        }
    }
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{o:?}");
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    assert!(!o.status.success(), "{o:?}");
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[tokio::test]
async fn each_command_says_there_is_nothing_when_there_is_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let l = Local::start(dir.path()).await;
    let tasks = stdout(&cli(&l.base, &["tasks"]).await);
    assert!(tasks.starts_with("no tasks on this terminal"), "{tasks}");
    let workers = stdout(&cli(&l.base, &["workers"]).await);
    assert!(workers.starts_with("no workers"), "{workers}");
    let notes = stdout(&cli(&l.base, &["notifications"]).await);
    assert_eq!(
        notes,
        "0 pending task(s) today\nnothing past due and nothing due soon\n"
    );
    l.stop().await;

    seed_roster(dir.path(), ROSTER);
    let l = Local::start(dir.path()).await;
    let conflicts = cli(&l.base, &["--as", "m-1", "--pin", "9999", "conflicts"]).await;
    assert_eq!(stdout(&conflicts), "no conflicts\n");
    let workers = stdout(&cli(&l.base, &["workers"]).await);
    let lines: Vec<&str> = workers.lines().collect();
    assert_eq!(lines[0], "worker\tname\trole\tgroups", "{workers}");
    assert_eq!(lines.len(), 1 + ROSTER.len(), "{workers}");
}

#[tokio::test]
async fn tasks_come_under_a_header_in_due_order() {
    let dir = tempfile::tempdir().unwrap();
    closing(dir.path());
    let l = Local::start(dir.path()).await;
    let out = stdout(&cli(&l.base, &["tasks"]).await);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("task "), "a header first: {out}");
    assert!(
        lines[0].contains("status") && lines[0].contains("due"),
        "{out}"
    );
    let titles: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.rsplit('\t').next().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["Count the till", "Lock the back door", "Water the plants"],
        "19:00 before 22:00, undated last: {out}"
    );

    // The API gives the same order, so `--json` and scripts see it too.
    let (_, v) = l.get("/api/tasks").await;
    let titles: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["Count the till", "Lock the back door", "Water the plants"]
    );
}

#[tokio::test]
async fn writes_say_what_was_done_to_which_task_and_for_whom() {
    let dir = tempfile::tempdir().unwrap();
    let list = closing(dir.path());
    seed_roster(dir.path(), ROSTER);
    let l = Local::start(dir.path()).await;
    let till = list.tasks[1].id.to_string();
    let manager = ["--as", "m-1", "--pin", "9999"];

    let out = cli(
        &l.base,
        &[&manager[..], &["assign", &till, "--to", "w-1"]].concat(),
    )
    .await;
    assert_eq!(
        stdout(&out),
        format!("saved: \"Count the till\" (task {till}) is assigned to Ana Lopez (w-1)\n")
    );
    let out = cli(
        &l.base,
        &[&manager[..], &["assign", &till, "--to", "group:closers"]].concat(),
    )
    .await;
    assert_eq!(
        stdout(&out),
        format!("saved: \"Count the till\" (task {till}) is assigned to group closers\n")
    );
    let out = cli(&l.base, &["claim", &till, "--worker", "w-1"]).await;
    assert_eq!(
        stdout(&out),
        format!("saved: \"Count the till\" (task {till}) is now w-1's own\n")
    );
    let out = cli(&l.base, &[&manager[..], &["assign", &till]].concat()).await;
    assert_eq!(
        stdout(&out),
        format!("saved: \"Count the till\" (task {till}) is unassigned\n")
    );

    let out = cli(&l.base, &["complete", &till, "--worker", "w-2"]).await;
    assert_eq!(
        stdout(&out),
        format!("saved: \"Count the till\" (task {till}) is completed by w-2\n")
    );
}

/// Serve the terminal in `dir` with `--require-pin-for-cli`.
async fn serve_requiring_pins(dir: &Path) -> (String, CancellationToken) {
    let terminal = pos_agent::agent::open(dir, Some(STORE), "pos-1".parse().unwrap()).unwrap();
    let cfg = pos_agent::api::ApiConfig {
        cli_needs_pin: true,
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, pos_agent::api::router_with(terminal, cfg))
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await
            .unwrap();
    });
    (base, stop)
}

async fn history_workers(base: &str, task: &str) -> Vec<String> {
    let v: serde_json::Value = reqwest::get(format!("{base}/api/tasks/{task}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["worker"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn with_require_pin_for_cli_a_named_worker_alone_is_refused_and_the_pin_works() {
    let dir = tempfile::tempdir().unwrap();
    let list = closing(dir.path());
    seed_roster(dir.path(), ROSTER);
    let (base, stop) = serve_requiring_pins(dir.path()).await;
    let till = list.tasks[1].id.to_string();

    let refused = stderr(&cli(&base, &["complete", &till, "--worker", "w-1"]).await);
    assert!(
        refused.contains("401") && refused.contains("--pin") && refused.contains("w-1"),
        "{refused}"
    );
    let wrong = stderr(
        &cli(
            &base,
            &["complete", &till, "--worker", "w-1", "--pin", "0000"],
        )
        .await,
    );
    assert!(wrong.contains("wrong PIN"), "{wrong}");
    let claim = stderr(&cli(&base, &["claim", &till, "--worker", "w-1"]).await);
    assert!(claim.contains("401"), "claims too: {claim}");
    assert!(
        history_workers(&base, &till).await.is_empty(),
        "nothing recorded"
    );

    let out = cli(
        &base,
        &["complete", &till, "--worker", "w-1", "--pin", "1234"],
    )
    .await;
    assert!(stdout(&out).contains("is completed by w-1"));
    // Another's PIN does not record work as w-1.
    let as_other = stderr(
        &cli(
            &base,
            &[
                "--as", "w-2", "--pin", "2345", "reopen", &till, "--worker", "w-1",
            ],
        )
        .await,
    );
    assert!(
        as_other.contains("403") && as_other.contains("signed in as w-2"),
        "{as_other}"
    );
    assert_eq!(history_workers(&base, &till).await, ["w-1"]);

    // Over the API: a request that only names a worker is refused; the
    // signed-in session names the worker.
    let status = format!("{base}/api/tasks/{till}/status");
    let http = reqwest::Client::new();
    let r = http
        .post(&status)
        .json(&json!({"status": "reopened", "worker": "w-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let session: serde_json::Value = http
        .post(format!("{base}/api/session"))
        .json(&json!({"worker": "w-2", "pin": "2345"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["token"].as_str().unwrap();
    let r = http
        .post(&status)
        .bearer_auth(token)
        .json(&json!({"status": "reopened"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(history_workers(&base, &till).await, ["w-1", "w-2"]);
    stop.cancel();
}

/// Without the option the web UI's session still names the worker: a
/// signed-in request acts as its worker and cannot name another.
#[tokio::test]
async fn the_signed_in_session_names_the_worker_in_the_default_mode_too() {
    let dir = tempfile::tempdir().unwrap();
    let list = closing(dir.path());
    seed_roster(dir.path(), ROSTER);
    let l = Local::start(dir.path()).await;
    let till = list.tasks[1].id;
    let path = format!("/api/tasks/{till}/status");
    let ana = l.sign_in("w-1", "1234").await;
    let (s, v) = l
        .post_as(&ana, &path, r#"{"status": "completed", "worker": "w-2"}"#)
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = l.post_as(&ana, &path, r#"{"status": "completed"}"#).await;
    assert_eq!(s, 201, "{v}");
    // Without a session, the CLI's --worker is taken (the documented default).
    let (s, v) = l
        .post(&path, r#"{"status": "reopened", "worker": "w-2"}"#)
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        history_workers(&l.base, &till.to_string()).await,
        ["w-1", "w-2"]
    );
}

/// A WebSocket server that reports the Authorization header of each
/// upgrade it sees.
async fn hub_that_reports_tokens() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                // The error type is tungstenite's, fixed by its callback trait.
                #[allow(clippy::result_large_err)]
                let cb = |req: &Request, resp: Response| {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let _ = tx.send(auth);
                    Ok(resp)
                };
                let _ = tokio_tungstenite::accept_hdr_async(tcp, cb).await;
            });
        }
    });
    (addr, rx)
}

/// `pos-agent run` with the store token from `how`; the token the hub
/// is shown, or the agent's error output if it exits first.
async fn token_the_hub_sees(how: &str, token: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let (hub, mut seen) = hub_that_reports_tokens().await;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pos-agent"));
    for (k, _) in std::env::vars() {
        if k.starts_with("POS_AGENT_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("run")
        .arg("--data")
        .arg(dir.path().join("agent"))
        .args(["--hub", &format!("ws://{hub}/sync"), "--store", STORE])
        .args(["--http", "127.0.0.1:0"]);
    match how {
        "file" => {
            let file = dir.path().join("store-token");
            std::fs::write(&file, format!("{token}\n")).unwrap();
            cmd.arg("--token-file").arg(&file);
        }
        "env" => {
            cmd.env("POS_AGENT_TOKEN", token);
        }
        "flag" => {
            cmd.args(["--token", token]);
        }
        _ => {}
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let said = tokio::task::spawn_blocking(move || {
        BufReader::new(err)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    });
    let r = tokio::select! {
        t = tokio::time::timeout(Duration::from_secs(30), seen.recv()) => {
            Ok(t.expect("the agent connects within 30 s").unwrap())
        }
        s = said => Err(s.unwrap()),
    };
    let _ = child.kill();
    let _ = child.wait();
    r
}

#[tokio::test]
async fn the_store_token_comes_from_a_file_or_the_environment_and_the_flag_still_works() {
    for how in ["file", "env", "flag"] {
        let seen = token_the_hub_sees(how, "tok-from-somewhere").await;
        assert_eq!(seen.as_deref(), Ok("Bearer tok-from-somewhere"), "{how}");
    }
    let none = token_the_hub_sees("none", "").await.unwrap_err();
    assert!(
        none.contains("no store token") && none.contains("POS_AGENT_TOKEN"),
        "{none}"
    );
    let empty = token_the_hub_sees("file", "  ").await.unwrap_err();
    assert!(empty.contains("store token is empty"), "{empty}");
}

/// A list of its own holding `title`, due at `hour` today (UTC), whose
/// status two other terminals set at once while offline.
fn seed_conflicted(dir: &Path, n: u128, title: &str, hour: u32) {
    use engine::document::instance;
    use engine::ids::EventId;
    use engine::model::{Status, StatusUpdate};

    let today = Utc::now().date_naive();
    let due = Utc.from_utc_datetime(&today.and_hms_opt(hour, 0, 0).unwrap());
    let content = InstanceContent {
        id: DocumentId(uuid::Uuid::from_u128(n)),
        meta: ListMeta {
            store: common::store(),
            name: format!("List {n}"),
            template: None,
            date: today,
            time_zone: "UTC".into(),
            created_by: CreatedBy::Hq,
        },
        tasks: vec![task(n * 100, title, Some(due))],
    };
    let base = instance::create(&content, automerge::ActorId::random()).unwrap();
    let mut forks = [base.fork(), base.fork()];
    for (i, (doc, (status, worker))) in forks
        .iter_mut()
        .zip([(Status::InProgress, "w-1"), (Status::Completed, "w-2")])
        .enumerate()
    {
        doc.set_actor(automerge::ActorId::random());
        let update = StatusUpdate {
            id: EventId(uuid::Uuid::from_u128(n * 1000 + i as u128)),
            task: TaskId(uuid::Uuid::from_u128(n * 100)),
            status,
            worker: worker.parse().unwrap(),
            terminal: format!("pos-{}", i + 2).parse().unwrap(),
            note: None,
        };
        instance::record_status(doc, &update, Utc::now().timestamp_millis() - 60_000).unwrap();
    }
    let [mut a, mut b] = forks;
    a.merge(&mut b).unwrap();
    common::seed_doc(dir, content.id, &a);
}

#[tokio::test]
async fn conflicts_come_under_a_header_in_due_order() {
    let dir = tempfile::tempdir().unwrap();
    seed_roster(dir.path(), ROSTER);
    seed_conflicted(dir.path(), 7, "Lock the back door", 22);
    seed_conflicted(dir.path(), 8, "Count the till", 19);
    let l = Local::start(dir.path()).await;
    let out = stdout(&cli(&l.base, &["--as", "m-1", "--pin", "9999", "conflicts"]).await);
    let heads: Vec<&str> = out.lines().filter(|l| !l.starts_with("  ")).collect();
    assert_eq!(heads.len(), 3, "{out}");
    assert_eq!(heads[0], "task\tdue\tlist\ttitle");
    assert!(
        heads[1].ends_with("\t19:00\tList 8\tCount the till"),
        "{out}"
    );
    assert!(
        heads[2].ends_with("\t22:00\tList 7\tLock the back door"),
        "{out}"
    );
    assert!(out.contains("  status completed by w-2 on pos-3"), "{out}");
}

/// Issue #24, items 5 and 8: within one due time the more urgent task
/// comes first, in `tasks` (with its priority in a column) and in
/// `notifications`, and lateness reads as the screens say it.
#[tokio::test]
async fn listings_put_the_more_urgent_first_within_one_due_time() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let late = Some(now - chrono::Duration::minutes(285));
    let soon = Some(now + chrono::Duration::minutes(10));
    let with = |n, title, due, priority| TaskSpec {
        priority,
        ..task(n, title, due)
    };
    seed_list(
        dir.path(),
        &InstanceContent {
            id: DocumentId(uuid::Uuid::from_u128(2)),
            meta: ListMeta {
                store: common::store(),
                name: "Morning".into(),
                template: None,
                date: now.date_naive(),
                time_zone: "UTC".into(),
                created_by: CreatedBy::Hq,
            },
            tasks: vec![
                with(201, "Sweep the entrance", late, Priority::Low),
                with(202, "Call the locksmith", late, Priority::Urgent),
                with(203, "Fill the fridge", soon, Priority::Normal),
                with(204, "Check the price labels", soon, Priority::High),
            ],
        },
    );
    let l = Local::start(dir.path()).await;

    let out = stdout(&cli(&l.base, &["tasks"]).await);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("priority"), "{out}");
    let rows: Vec<(String, &str)> = lines[1..]
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[3].trim().to_owned(), *f.last().unwrap())
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("urgent".to_owned(), "Call the locksmith"),
            ("low".to_owned(), "Sweep the entrance"),
            ("high".to_owned(), "Check the price labels"),
            ("normal".to_owned(), "Fill the fridge"),
        ],
        "{out}"
    );

    let out = stdout(&cli(&l.base, &["notifications"]).await);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "4 pending task(s) today", "{out}");
    assert!(
        lines[1].starts_with("PAST DUE\t4 h 45 min late\t")
            && lines[1].ends_with("Call the locksmith"),
        "{out}"
    );
    assert!(lines[2].ends_with("Sweep the entrance"), "{out}");
    assert!(lines[3].ends_with("Check the price labels"), "{out}");
    assert!(lines[4].ends_with("Fill the fridge"), "{out}");
    assert_eq!(lines.len(), 5, "{out}");
}
