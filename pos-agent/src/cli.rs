//! `pos-agent` commands that call the terminal's local API, for scripting
//! and support staff. `--json` prints the API's answer as is.

use anyhow::{bail, Context};
use serde_json::{json, Value};

pub struct Local {
    pub url: String,
    pub json: bool,
}

async fn call(
    l: &Local,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let url = format!("{}{}", l.url.trim_end_matches('/'), path);
    let mut req = reqwest::Client::new().request(method, &url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("calling {url}; is `pos-agent run` running?"))?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "{status}: {}",
            v.get("error")
                .and_then(Value::as_str)
                .unwrap_or("request failed")
        );
    }
    Ok(v)
}

pub async fn tasks(l: &Local) -> anyhow::Result<()> {
    let v = call(l, reqwest::Method::GET, "/api/tasks", None).await?;
    if l.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for t in v.as_array().into_iter().flatten() {
        println!(
            "{}\t{:<12}\t{}\t{}{}",
            t["task"].as_str().unwrap_or(""),
            t["status"].as_str().unwrap_or(""),
            t["list_name"].as_str().unwrap_or(""),
            t["title"].as_str().unwrap_or(""),
            if t["conflict"].as_bool() == Some(true) {
                "\t(conflict)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

pub async fn set_status(
    l: &Local,
    task: &str,
    status: &str,
    worker: &str,
    note: Option<String>,
) -> anyhow::Result<()> {
    let v = call(
        l,
        reqwest::Method::POST,
        &format!("/api/tasks/{task}/status"),
        Some(json!({"status": status, "worker": worker, "note": note})),
    )
    .await?;
    if l.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("saved: {task} is {status}");
    }
    Ok(())
}

pub async fn assign(l: &Local, task: &str, to: Option<String>) -> anyhow::Result<()> {
    let v = call(
        l,
        reqwest::Method::POST,
        &format!("/api/tasks/{task}/assign"),
        Some(json!({ "to": to })),
    )
    .await?;
    if l.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("saved");
    }
    Ok(())
}

pub async fn sync_status(l: &Local) -> anyhow::Result<()> {
    let v = call(l, reqwest::Method::GET, "/api/sync-status", None).await?;
    if l.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{}; {} local change(s) not yet confirmed by the hub",
        if v["online"].as_bool() == Some(true) {
            "online"
        } else {
            "offline"
        },
        v["unconfirmed_changes"].as_u64().unwrap_or(0)
    );
    for r in v["rejected"].as_array().into_iter().flatten() {
        println!("rejected by hub: {}", r["reason"].as_str().unwrap_or(""));
    }
    Ok(())
}
