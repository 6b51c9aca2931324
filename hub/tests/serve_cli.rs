//! The `hub` binary as an operator meets it: a first start that cannot
//! bind leaves no admin token behind (so the start that works says where
//! it is), a hub URL without a scheme gets a message saying what to write,
//! and output piped into a reader that closes (`| head`) ends quietly.

use std::process::Command;

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
