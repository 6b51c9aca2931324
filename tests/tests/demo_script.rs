//! `demo.sh` does what the README's "Run it" says: it starts a hub and a
//! terminal, `demo.sh hub stop` stops only the hub while the terminal keeps
//! taking work (with the worker's PIN), `demo.sh hub start` brings it back
//! and the terminal catches up, and Ctrl-C stops both, the restarted hub
//! included. Needs bash and curl, as the demo does.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tests::procs::{bin, wait_for};

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

struct Demo {
    root: PathBuf,
    data: PathBuf,
    hub: String,
    agent: String,
}

impl Demo {
    fn script(&self) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(self.root.join("demo.sh"))
            .env("DEMO_BIN", bin("hub").parent().unwrap())
            .env("DEMO_DATA", &self.data)
            .env("DEMO_HUB_ADDR", &self.hub)
            .env("DEMO_AGENT_ADDR", &self.agent);
        cmd
    }

    async fn run(&self, args: &[&str]) -> String {
        let mut cmd = self.script();
        cmd.args(args);
        let out = blocking(cmd).await;
        assert!(out.status.success(), "demo.sh {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    async fn pos_agent(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin("pos-agent"));
        cmd.args(args)
            .env("POS_AGENT_URL", format!("http://{}", self.agent))
            .env_remove("POS_AGENT_WORKER")
            .env_remove("POS_AGENT_PIN");
        blocking(cmd).await
    }

    async fn sync_status(&self) -> Option<Value> {
        let out = self.pos_agent(&["sync-status", "--json"]).await;
        serde_json::from_slice(&out.stdout).ok()
    }
}

async fn blocking(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

async fn answers(addr: &str) -> bool {
    reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Ctrl-C at a terminal: SIGINT to the script's whole process group.
fn ctrl_c(child: &Child) {
    let sent = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// The demo, stopped as by Ctrl-C if the test ends early.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            ctrl_c(&child);
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn the_demo_works_offline_as_the_readme_says() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo {
        root: Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .into(),
        data: dir.path().join("demo-data"),
        hub: free_addr(),
        agent: free_addr(),
    };
    let log = std::fs::File::create(dir.path().join("demo.log")).unwrap();
    let mut cmd = demo.script();
    // Its own process group, as a terminal's Ctrl-C signals one.
    cmd.process_group(0)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null());
    let mut running = Running(Some(cmd.spawn().unwrap()));

    // The terminal answers, then gets the demo's list from the hub.
    let ids: Vec<String> = wait_for(
        "the terminal to show the demo's three tasks",
        Duration::from_secs(60),
        async || {
            let out = demo.pos_agent(&["tasks", "--json"]).await;
            let tasks: Value = serde_json::from_slice(&out.stdout).ok()?;
            let ids: Vec<String> = tasks
                .as_array()?
                .iter()
                .filter_map(|t| t["task"].as_str().map(str::to_owned))
                .collect();
            (ids.len() == 3).then_some(ids)
        },
    )
    .await;

    // The demo's terminal wants the worker's PIN from a shell.
    let refused = demo
        .pos_agent(&["complete", &ids[0], "--worker", "w-1007"])
        .await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--pin"));
    let done = demo
        .pos_agent(&["complete", &ids[0], "--worker", "w-1007", "--pin", "1234"])
        .await;
    assert!(done.status.success(), "{done:?}");

    let said = demo.run(&["hub", "stop"]).await;
    assert!(said.contains("hub stopped"), "{said}");
    assert!(!answers(&demo.hub).await, "the hub is down");
    assert!(answers(&demo.agent).await, "the terminal is not");
    let offline = demo
        .pos_agent(&["complete", &ids[1], "--worker", "w-1008", "--pin", "2345"])
        .await;
    assert!(offline.status.success(), "{offline:?}");
    wait_for(
        "the terminal to see it is offline",
        Duration::from_secs(30),
        async || {
            let s = demo.sync_status().await?;
            (s["online"] == false && s["unconfirmed_changes"].as_u64() >= Some(1)).then_some(())
        },
    )
    .await;

    let said = demo.run(&["hub", "start"]).await;
    assert!(said.contains("hub started"), "{said}");
    wait_for(
        "the terminal to catch up",
        Duration::from_secs(60),
        async || {
            let s = demo.sync_status().await?;
            (s["online"] == true && s["unconfirmed_changes"] == 0).then_some(())
        },
    )
    .await;
    let admin = std::fs::read_to_string(demo.data.join("hub/admin-token")).unwrap();
    let events: Value = reqwest::Client::new()
        .get(format!(
            "http://{}/api/status/workers?store=store-042",
            demo.hub
        ))
        .bearer_auth(admin.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut workers: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["worker"].as_str().unwrap())
        .collect();
    workers.sort();
    assert_eq!(workers, ["w-1007", "w-1008"], "{events}");

    // Ctrl-C stops the terminal and the hub started from the other shell.
    let mut child = running.0.take().unwrap();
    ctrl_c(&child);
    tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    wait_for("both to stop", Duration::from_secs(30), async || {
        (!answers(&demo.hub).await && !answers(&demo.agent).await).then_some(())
    })
    .await;
}
