//! A terminal for API tests: its replica seeded as if synced earlier (lists,
//! the store's roster, changes from other terminals), served on a loopback
//! port with no hub at all.

#![allow(dead_code)]

use engine::storage::roles::*;
use std::path::Path;

use automerge::Automerge;
use engine::document::directory::{self, PinHash, RosterWorker};
use engine::ids::{DocumentId, StoreId, WorkerId};
use engine::model::InstanceContent;
use engine::storage::SqliteDatabase;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const STORE: &str = "store-042";

pub fn store() -> StoreId {
    STORE.parse().unwrap()
}

/// (id, name, role, groups, PIN)
pub type Worker<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], Option<&'a str>);

/// Write the store's directory with `workers` on its roster, as HQ would.
pub fn seed_roster(dir: &Path, workers: &[Worker<'_>]) {
    let mut st = open_store(dir);
    let mut doc = directory::create(&store(), automerge::ActorId::random());
    for (n, (id, name, role, groups, pin)) in workers.iter().enumerate() {
        let wid: WorkerId = id.parse().unwrap();
        let rec = RosterWorker {
            name: (*name).into(),
            role: role.parse().unwrap(),
            groups: groups.iter().map(|g| g.parse().unwrap()).collect(),
            pin: pin.map(|p| PinHash::new(&wid, p, [n as u8; 16]).unwrap().to_string()),
        };
        directory::put_worker(&mut doc, &wid, &rec, 0).unwrap();
    }
    st.append_changes(DocumentId::directory_of(&store()), &doc.get_changes(&[]))
        .unwrap();
}

/// Store a list as HQ materialized it.
pub fn seed_list(dir: &Path, content: &InstanceContent) {
    let mut st = open_store(dir);
    st.append_changes(
        content.id,
        &engine::document::instance::materialize(content).unwrap(),
    )
    .unwrap();
}

/// Store every change of `doc` (edits other terminals made, merged).
pub fn seed_doc(dir: &Path, id: DocumentId, doc: &Automerge) {
    open_store(dir)
        .append_changes(id, &doc.get_changes(&[]))
        .unwrap();
}

/// Store a row of the hub's refusals as the terminal keeps it.
pub fn seed_rejection(dir: &Path, rec: &engine::storage::RejectionRecord) {
    open_store(dir).record_rejection(rec).unwrap();
}

fn open_store(dir: &Path) -> SqliteDatabase {
    let mut st = SqliteDatabase::open(dir.join("agent.db"), [7; 16]).unwrap();
    st.set_meta("store_id", STORE.as_bytes()).unwrap();
    st
}

/// A running terminal API on a loopback port.
pub struct Local {
    pub base: String,
    stop: CancellationToken,
    served: tokio::task::JoinHandle<()>,
}

impl Local {
    /// Open the agent in `dir` and serve its API (no hub).
    pub async fn start(dir: &Path) -> Local {
        let terminal = pos_agent::agent::open(dir, Some(STORE), "pos-1".parse().unwrap()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let s = stop.clone();
        let served = tokio::spawn(async move {
            axum::serve(listener, pos_agent::api::router(terminal))
                .with_graceful_shutdown(async move { s.cancelled().await })
                .await
                .unwrap();
        });
        Local { base, stop, served }
    }

    /// Stop serving and let go of the replica (a restart of the agent).
    pub async fn stop(self) {
        self.stop.cancel();
        self.served.await.unwrap();
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, None, None).await
    }

    pub async fn get_as(&self, token: &str, path: &str) -> (u16, Value) {
        self.send("GET", path, None, Some(token)).await
    }

    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.send("POST", path, Some(body), None).await
    }

    pub async fn post_as(&self, token: &str, path: &str, body: &str) -> (u16, Value) {
        self.send("POST", path, Some(body), Some(token)).await
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> (u16, Value) {
        // A client per call: no pooled connection outlives a restart.
        let mut req =
            reqwest::Client::new().request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Sign in and return the session token.
    pub async fn sign_in(&self, worker: &str, pin: &str) -> String {
        let (s, v) = self
            .post(
                "/api/session",
                &serde_json::json!({"worker": worker, "pin": pin}).to_string(),
            )
            .await;
        assert_eq!(s, 201, "signing in as {worker}: {v}");
        v["token"].as_str().unwrap().to_owned()
    }
}
