//! The `hub` binary as an operator meets it: a first start that cannot
//! bind leaves no admin token behind (so the start that works says where
//! it is), a hub URL without a scheme gets a message saying what to write,
//! and output piped into a reader that closes (`| head`) ends quietly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use engine::replica::hub::HubLimits;

mod common;

/// `hub` with no HUB_* settings from the environment running the tests.
fn hub() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hub"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HUB_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_start_that_cannot_bind_writes_no_admin_token_and_the_next_start_says_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let failed = hub()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!failed.status.success());
    assert!(
        text(&failed.stderr).contains("listening on"),
        "{}",
        text(&failed.stderr)
    );
    let token_file = data.join("admin-token");
    assert!(
        !token_file.exists(),
        "no admin token minted by a failed start"
    );

    let mut child = hub()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut said = Vec::new();
    let told = loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) if l.contains("admin token written to") => break Some(l),
            Ok(l) => said.push(l),
            Err(_) => break None,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let told = told.unwrap_or_else(|| panic!("the start never said where the token is: {said:?}"));
    assert!(told.contains(&token_file.display().to_string()), "{told}");
    assert!(token_file.exists());
}

#[test]
fn a_hub_url_without_a_scheme_is_refused_saying_what_to_write() {
    for (how, url) in [("env", "127.0.0.1:8090"), ("flag", "localhost:8090")] {
        let mut cmd = hub();
        cmd.args(["stores", "list"]).env("HUB_TOKEN", "x");
        match how {
            "env" => cmd.env("HUB_URL", url),
            _ => cmd.args(["--hub-url", url]),
        };
        let out = cmd.output().unwrap();
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{url}");
        assert!(
            err.contains("http://HOST:PORT") && err.contains(url) && !err.contains("builder error"),
            "{url}: {err}"
        );
    }
    // With the scheme, the URL is taken (nothing listens there: the call
    // fails, not the parse).
    let out = hub()
        .args(["stores", "list", "--hub-url", "http://127.0.0.1:9"])
        .env("HUB_TOKEN", "x")
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("is the hub running?"),
        "{}",
        text(&out.stderr)
    );
}

/// `cmd` with its stdout a pipe whose reader is already gone.
fn output_into_closed_pipe(mut cmd: Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(writer).stderr(Stdio::piped());
    cmd.output().unwrap()
}

#[tokio::test]
async fn output_into_a_closed_pipe_ends_quietly() {
    let hub_in_process = common::start(HubLimits::default()).await;
    let mut cmd = hub();
    cmd.args(["stores", "list", "--json", "--token", "admin"])
        .args(["--hub-url", &format!("http://{}", hub_in_process.addr)]);
    let out = tokio::task::spawn_blocking(move || output_into_closed_pipe(cmd))
        .await
        .unwrap();
    assert_eq!(text(&out.stderr), "", "nothing said, no panic");
    assert_ne!(out.status.code(), Some(101), "not a panic");
}
