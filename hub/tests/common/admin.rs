//! A hub in the test process with stores `s1` (Europe/Berlin) and `s2`
//! (America/New_York), driven over its admin API with the admin token:
//! shared by the `store_admin` and `hq_input` tests.

use engine::replica::hub::HubLimits;
use hub::runtime::HubHandle;
use hub::{data_dir, server};
use reqwest::Method;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub struct Api {
    _dir: tempfile::TempDir,
    /// `http://host:port/api`
    pub base: String,
    /// host:port
    pub addr: String,
    pub hub: HubHandle,
    shutdown: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn start() -> Api {
    start_with(HubLimits::default()).await
}

pub async fn start_with(limits: HubLimits) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let opened = data_dir::open(dir.path(), limits, Some("admin"), &Default::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let hub = opened.state.hub.registry().clone();
    tokio::spawn(server::run(listener, opened.state, shutdown.clone()));
    let api = Api {
        _dir: dir,
        base: format!("http://{addr}/api"),
        addr,
        hub,
        shutdown,
    };
    for (id, tz) in [("s1", "Europe/Berlin"), ("s2", "America/New_York")] {
        let (s, v) = api
            .call(
                Method::POST,
                "/stores",
                Some(json!({"id": id, "name": id, "time_zone": tz})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    api
}

impl Api {
    /// `method` on `base` + `path` with the admin token: status and JSON body.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as("admin", method, path, body).await
    }

    /// `call` with `token` (an HQ account's personal token, or none: "").
    #[allow(dead_code)]
    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}
