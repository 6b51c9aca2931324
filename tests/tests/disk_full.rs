//! The terminal's disk fills up during writes (a real, size-limited tmpfs
//! under the real `pos-agent`): the write that does not fit is answered
//! 507 and not saved, the agent keeps serving, every write answered
//! "saved" before is intact, and once space is freed writes work again
//! and everything reaches the hub exactly once.
//!
//! Needs `mount -t tmpfs` (root, as in CI here); where mounting is not
//! allowed the test prints a notice and checks nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use tests::procs::{
    agent_get, check_saved_exactly_once, converged, setup_store, start_agent, start_hub, try_post,
    wait_for, AgentArgs, WORKERS,
};

/// A tmpfs of `size` mounted at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_the_write_that_does_not_fit_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("small-disk"), "3m") else {
        eprintln!("NOTICE: disk_full skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let hub = start_hub(&dir.path().join("hub"), "127.0.0.1:0");
    let setup = setup_store(&hub.addr, 4).await;
    let agent_data = fs.0.join("agent");
    let agent = start_agent(
        &agent_data,
        &AgentArgs {
            hub: hub.addr.clone(),
            token: setup.token.clone(),
            terminal: "pos-1".into(),
            http: "127.0.0.1:0".into(),
        },
    );
    let tasks: Vec<String> = wait_for(
        "the list on the terminal",
        Duration::from_secs(30),
        async || {
            let t = tests::procs::agent_tasks(&agent.addr).await?;
            (t.len() == 4).then(|| {
                t.iter()
                    .map(|t| t["task"].as_str().unwrap().to_owned())
                    .collect()
            })
        },
    )
    .await;
    // Leave a little room, and keep a ballast file to free later.
    let ballast = fs.0.join("ballast");
    let free = fs2_free(&fs.0);
    std::fs::write(
        &ballast,
        vec![0u8; free.saturating_sub(400 * 1024) as usize],
    )
    .unwrap();

    let note = "n".repeat(1900);
    let mut saved = Vec::new();
    let mut full = None;
    for i in 0..5000 {
        let url = format!("http://{}/api/tasks/{}/status", agent.addr, tasks[i % 4]);
        let status = ["in_progress", "completed"][i % 2];
        let body = json!({"status": status, "worker": WORKERS[0], "note": note});
        match try_post(&url, &body, false)
            .await
            .expect("the agent answers")
        {
            (201, v) => saved.push((v["event"]["id"].as_str().unwrap().parse().unwrap(), 0)),
            (code, v) => {
                full = Some((code, v));
                break;
            }
        }
    }
    let (code, v) = full.expect("the disk filled up");
    eprintln!(
        "disk_full: {} writes saved before the disk was full",
        saved.len()
    );
    assert_eq!(code, 507, "{v}");
    assert!(v["error"].as_str().unwrap().contains("disk full"), "{v}");
    assert!(saved.len() > 10, "some writes fit first: {}", saved.len());
    // Still serving reads, and the next write is refused the same way.
    assert!(agent_get(format!("http://{}/api/tasks", agent.addr))
        .await
        .is_some());

    // Space comes back: writing works again without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let url = format!("http://{}/api/tasks/{}/status", agent.addr, tasks[0]);
    let (code, v) = try_post(
        &url,
        &json!({"status": "completed", "worker": WORKERS[1]}),
        false,
    )
    .await
    .unwrap();
    assert_eq!(code, 201, "{v}");
    saved.push((v["event"]["id"].as_str().unwrap().parse().unwrap(), 0));

    let agents = vec![agent.addr.clone()];
    wait_for(
        "the hub and the terminal to agree",
        Duration::from_secs(60),
        async || converged(&hub.addr, &agents, setup.list, &saved).await,
    )
    .await;
    agent.kill();
    hub.kill();
    check_saved_exactly_once(
        &[
            agent_data.join("agent.db"),
            dir.path().join("hub").join("hub.db"),
        ],
        setup.list,
        &saved,
    )
    .unwrap();
}

/// Free bytes on the file system holding `dir`.
fn fs2_free(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}
