//! A store's terminal inside a test process: an agent replica and its
//! sync client, so a test can record status as a terminal does without
//! the terminal's sign-in (the browser tests of the HQ dashboard include
//! this file with `#[path]`).

// Each test that includes this uses only part of it.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use engine::ids::{DocumentId, EventId, TaskId, TerminalId};
use engine::model::{Status, StatusUpdate};
use pos_agent::agent::Terminal;
use pos_agent::sync_client::{Backoff, Keepalive};
use tokio_util::sync::CancellationToken;

use tests::procs;

/// How long a till waits for a list to arrive.
const DEADLINE: Duration = Duration::from_secs(60);

/// One terminal of a store, offline until `go_online`; dropping it takes
/// it offline.
pub struct Till {
    terminal: Terminal,
    sync: CancellationToken,
}

impl Till {
    /// Terminal `name` of `store`, its data in `dir/name`.
    pub fn open(dir: &Path, store: &str, name: &str) -> Till {
        let terminal: TerminalId = name.parse().expect("a terminal id");
        let terminal = pos_agent::agent::open(&dir.join(name), Some(store), terminal)
            .expect("opening the agent");
        Till {
            terminal,
            sync: CancellationToken::new(),
        }
    }

    /// Sync with the hub at `hub` (host:port) with the store's `token`.
    pub fn go_online(&mut self, hub: &str, token: &str) {
        self.sync = CancellationToken::new();
        tokio::spawn(pos_agent::sync_client::run(
            format!("ws://{hub}/sync"),
            token.to_owned(),
            self.terminal.handle.clone(),
            Backoff::default(),
            Keepalive::default(),
            self.sync.clone(),
        ));
    }

    pub fn go_offline(&self) {
        self.sync.cancel();
    }

    /// Wait until list `doc` is here with `n` tasks; its task ids in order.
    pub async fn has_tasks(&self, doc: DocumentId, n: usize) -> Vec<TaskId> {
        let h = self.terminal.handle.clone();
        procs::wait_for("the terminal to receive the list", DEADLINE, async || {
            let tasks = h
                .call(move |a, _| {
                    let ids = a
                        .list(doc)
                        .ok()
                        .map(|v| v.tasks.iter().map(|t| t.spec.id).collect::<Vec<_>>());
                    (ids, Vec::new())
                })
                .await
                .ok()??;
            (tasks.len() == n).then_some(tasks)
        })
        .await
    }

    /// Record `status` of `task` as `worker` (rostered) did it now.
    pub async fn record(
        &self,
        doc: DocumentId,
        task: TaskId,
        status: Status,
        worker: &str,
        note: Option<&str>,
    ) {
        let update = StatusUpdate {
            id: EventId(uuid::Uuid::new_v4()),
            task,
            status,
            worker: worker.parse().expect("a worker id"),
            terminal: self.terminal.terminal.clone(),
            note: note.map(str::to_owned),
        };
        self.terminal
            .handle
            .call(move |a, now| match a.record_status(doc, &update, now) {
                Ok((_, out)) => (Ok(()), out),
                Err(e) => (Err(e), Vec::new()),
            })
            .await
            .expect("agent thread")
            .expect("recording status");
    }
}

impl Drop for Till {
    fn drop(&mut self) {
        self.sync.cancel();
    }
}
