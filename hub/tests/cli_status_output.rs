//! `hub status` as an operator reads it: a header over the rows, and a
//! sentence when there is nothing, never a blank line; the other listings
//! say when they are empty too.

use std::process::Command;

use reqwest::Method;
use serde_json::json;

mod common;
use common::admin::start;

/// `hub ARGS` against `addr` with the admin token, no HUB_* settings from
/// the environment running the tests; its stdout.
async fn hub(addr: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hub"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HUB_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .args(["--hub-url", &format!("http://{addr}"), "--token", "admin"]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn status_says_when_there_is_nothing_and_heads_its_rows() {
    let api = start().await;
    assert_eq!(
        hub(&api.addr, &["status", "--by", "worker", "--store", "s1"]).await,
        "no status changes recorded in store s1\n"
    );
    assert_eq!(
        hub(&api.addr, &["status", "--by", "worker", "--worker", "w-1"]).await,
        "no status changes recorded by w-1\n"
    );
    assert_eq!(
        hub(&api.addr, &["status", "--by", "store", "--store", "s1"]).await,
        "no lists for store s1\n"
    );
    assert_eq!(
        hub(&api.addr, &["status", "--past-due"]).await,
        "nothing is past due\n"
    );

    let (s, v) = api
        .call(
            Method::POST,
            "/lists",
            Some(json!({"store": "s1", "name": "Closing", "date": "2026-11-26",
                        "tasks": [{"title": "Count the till", "due": "21:30"}, {"title": "Lock up"}]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let text = hub(&api.addr, &["status", "--by", "store", "--store", "s1"]).await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "store\tdate\tlist\tnot started\tin progress\tcompleted\tpast due\tconflicts",
            "s1\t2026-11-26\tClosing\t2\t0\t0\t1\t0"
        ],
        "{text}"
    );
}

#[tokio::test]
async fn empty_listings_say_so() {
    let api = start().await;
    for (args, says) in [
        (
            &["workers", "list", "--store", "s1"][..],
            "no workers on store s1's roster (hub workers add)\n",
        ),
        (&["groups", "list"], "no store groups (hub groups add)\n"),
        (
            &["lists", "templates"],
            "no recurring lists (hub lists create)\n",
        ),
        (
            &["stores", "tokens", "--store", "s1"],
            "no tokens (hub stores token --store <id> makes one)\n",
        ),
    ] {
        assert_eq!(hub(&api.addr, args).await, says, "{args:?}");
    }
}
