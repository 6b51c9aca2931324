//! Storage faults on a terminal, with the real binaries: while the agent is
//! stopped its database loses a document (corrupt rows), is truncated,
//! overwritten with garbage, or deleted. The agent either sets the damaged
//! document aside and fetches it again from the hub, or refuses to start
//! with a message naming the file and saying what to do; once the file is
//! moved aside it starts empty and gets every list back from the hub. No
//! other document is lost along the way.

use engine::storage::roles::*;
use std::path::Path;
use std::time::Duration;

use engine::ids::DocumentId;
use serde_json::Value;
use tests::procs::{
    agent_get, converged, log_of, set_status, setup_store, start_agent, start_hub, try_start_agent,
    wait_for, AgentArgs, Proc, WORKERS,
};

const TASKS: usize = 3;

/// A hub and one agent of `STORE`, each task of the list recorded once and
/// on the hub. Returns the saved events too.
struct Shop {
    dir: tempfile::TempDir,
    _hub: Proc,
    hub_addr: String,
    agent: Option<Proc>,
    args: AgentArgs,
    list: DocumentId,
    saved: Vec<(engine::ids::EventId, usize)>,
}

impl Shop {
    async fn start() -> Shop {
        let dir = tempfile::tempdir().unwrap();
        let hub = start_hub(&dir.path().join("hub"), "127.0.0.1:0");
        let setup = setup_store(&hub.addr, TASKS).await;
        let mut args = AgentArgs {
            hub: hub.addr.clone(),
            token: setup.token.clone(),
            terminal: "pos-1".into(),
            http: "127.0.0.1:0".into(),
        };
        let data = dir.path().join("agent");
        let agent = start_agent(&data, &args);
        args.http = agent.addr.clone();
        let tasks = wait_for("the list", Duration::from_secs(30), async || {
            tests::procs::agent_tasks(&agent.addr)
                .await
                .filter(|t| t.len() == TASKS)
        })
        .await;
        let mut saved = Vec::new();
        for (i, t) in tasks.iter().enumerate() {
            let task = t["task"].as_str().unwrap();
            let e = set_status(&agent.addr, task, "completed", WORKERS[i % WORKERS.len()])
                .await
                .unwrap();
            saved.push((e, 0));
        }
        let hub_addr = hub.addr.clone();
        let shop = Shop {
            dir,
            _hub: hub,
            hub_addr,
            agent: Some(agent),
            args,
            list: setup.list,
            saved,
        };
        shop.wait_converged("the first sync").await;
        shop
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("agent")
    }

    fn db(&self) -> std::path::PathBuf {
        self.data().join("agent.db")
    }

    fn stop_agent(&mut self) {
        if let Some(a) = self.agent.take() {
            a.kill();
        }
    }

    async fn restart_agent(&mut self) -> anyhow::Result<()> {
        let (data, args) = (self.data(), self.args.clone());
        let p = tokio::task::spawn_blocking(move || try_start_agent(&data, &args))
            .await
            .unwrap()?;
        self.agent = Some(p);
        Ok(())
    }

    /// The hub and the agent hold every saved event and agree.
    async fn wait_converged(&self, what: &str) {
        let agents = [self.args.http.clone()];
        let r = tokio::time::timeout(Duration::from_secs(45), async {
            loop {
                if converged(&self.hub_addr, &agents, self.list, &self.saved)
                    .await
                    .is_some()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        if r.is_err() {
            panic!(
                "the agent did not get everything back after {what}; its log:\n{}",
                tests::procs::log_tail(&log_of(&self.data()))
            );
        }
    }
}

/// Flush the WAL into the main file, as a clean shutdown would.
fn checkpoint(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_document_is_set_aside_and_fetched_again_from_the_hub() {
    let mut shop = Shop::start().await;
    shop.stop_agent();
    let list = shop.list;
    {
        let conn = rusqlite::Connection::open(shop.db()).unwrap();
        let rows = conn
            .execute(
                "UPDATE changes SET bytes = X'00112233' WHERE doc_id = ?1",
                [list.as_bytes()],
            )
            .unwrap();
        conn.execute(
            "UPDATE documents SET snapshot = X'DEADBEEF' WHERE doc_id = ?1 AND snapshot IS NOT NULL",
            [list.as_bytes()],
        )
        .unwrap();
        assert!(rows > 0, "the list had change rows to damage");
    }

    shop.restart_agent().await.unwrap();
    shop.wait_converged("its list was corrupted").await;
    let log = std::fs::read_to_string(log_of(&shop.data())).unwrap();
    assert!(
        log.contains("set aside") && log.contains(&list.to_string()),
        "the agent said loudly what it did"
    );
    // It keeps working: a new change on the re-fetched list is saved and synced.
    let task = agent_get(format!("http://{}/api/lists/{list}", shop.args.http))
        .await
        .unwrap()["tasks"][0]["spec"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let e = set_status(&shop.args.http, &task, "in_progress", WORKERS[0])
        .await
        .unwrap();
    shop.saved.push((e, 0));
    shop.wait_converged("a change after the repair").await;

    // The damaged bytes are kept, not thrown away.
    shop.stop_agent();
    let store = engine::storage::SqliteDatabase::open(shop.db(), [0; 16]).unwrap();
    let kept = store.quarantined().unwrap();
    assert!(
        kept.iter()
            .any(|(k, v)| k.contains(&list.to_string()) && v == &[0x00, 0x11, 0x22, 0x33]),
        "{kept:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_deleted_database_is_refused_clearly_and_a_fresh_one_resyncs() {
    let mut shop = Shop::start().await;

    // Truncated: refused, naming the file and what to do.
    shop.stop_agent();
    checkpoint(&shop.db());
    let len = std::fs::metadata(shop.db()).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(shop.db())
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let err = shop.restart_agent().await.unwrap_err().to_string();
    assert!(
        err.contains(&shop.db().display().to_string()) && err.contains("move it aside"),
        "{err}"
    );

    // Garbage: refused too.
    std::fs::write(shop.db(), vec![0x5a; len as usize]).unwrap();
    let err = shop.restart_agent().await.unwrap_err().to_string();
    assert!(err.contains("not a SQLite database"), "{err}");

    // Moved aside as the message says: a new replica gets everything back.
    std::fs::rename(shop.db(), shop.data().join("agent.db.damaged")).unwrap();
    shop.restart_agent().await.unwrap();
    shop.wait_converged("its database was moved aside").await;

    // Deleted outright (with its WAL): the same.
    shop.stop_agent();
    for f in ["agent.db", "agent.db-wal", "agent.db-shm"] {
        let _ = std::fs::remove_file(shop.data().join(f));
    }
    shop.restart_agent().await.unwrap();
    shop.wait_converged("its database was deleted").await;
    let status: Value = agent_get(format!("http://{}/api/sync-status", shop.args.http))
        .await
        .unwrap();
    assert_eq!(status["online"], true);
}
