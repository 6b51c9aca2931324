//! A hub node of a PostgreSQL cluster as a real process, for the cluster
//! tests: started with `--node NAME` on a database, killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub struct Node {
    child: Child,
    pub name: String,
    pub addr: String,
}

/// Start `hub serve` as `cmd` (stdout read, stderr dropped) and wait for
/// its "listening on http://ADDR" line: the child and ADDR.
pub fn spawn_listening(mut cmd: Command) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning the hub");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().expect("a line").expect("stdout");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("an address")
        .to_owned();
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// `hub serve --node NAME` on the database at `url`, its data in
    /// `data/NAME`, admin token `admin`.
    pub fn start(url: &str, name: &str, data: &std::path::Path) -> Node {
        Node::start_with(url, name, data, &[])
    }

    /// [`Node::start`] with `extra` arguments to `hub serve`.
    pub fn start_with(url: &str, name: &str, data: &std::path::Path, extra: &[&str]) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hub"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--admin-token", "admin"])
            .args(["--database", url, "--node", name])
            .args(extra)
            .arg("--data")
            .arg(data.join(name));
        let (child, addr) = spawn_listening(cmd);
        Node {
            child,
            name: name.to_owned(),
            addr,
        }
    }

    /// SIGKILL: no hand-over, no flush; its leases must run out.
    pub fn kill9(&self) {
        self.signal(libc::SIGKILL);
    }

    /// Send `sig` (SIGSTOP, SIGCONT, ...) to the node.
    pub fn signal(&self, sig: i32) {
        // SAFETY: a plain signal to our own child process.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// `method` `/api{path}` with `token`: the status and the JSON body
    /// (Null if none).
    pub async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("http://{}/api{path}", self.addr))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POST `/api{path}` with the admin token.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("admin", reqwest::Method::POST, path, Some(body))
            .await
    }

    /// PUT `/api{path}` with the admin token: the status.
    pub async fn put(&self, path: &str, body: Value) -> u16 {
        self.call("admin", reqwest::Method::PUT, path, Some(body))
            .await
            .0
    }

    pub fn sync_url(&self) -> String {
        format!("ws://{}/sync", self.addr)
    }
}
