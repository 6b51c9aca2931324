//! `pos-agent` commands that call the terminal's local API, for scripting
//! and support staff. `--json` prints the API's answer as is. Manager
//! commands sign in first with `--as <worker> --pin <pin>` and sign out
//! after. Every command says what it did, or that there is nothing; rows
//! come in due order, the more urgent first within one due time (as the
//! API gives them, `views::due_order`), under a header line.

use anyhow::{bail, Context};
use serde_json::{json, Value};

pub struct Local {
    pub url: String,
    pub json: bool,
    /// Worker and PIN to sign in with before the call.
    pub sign_in: Option<(String, String)>,
}

async fn request(
    l: &Local,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> anyhow::Result<Value> {
    let url = format!("{}{}", l.url.trim_end_matches('/'), path);
    let mut req = reqwest::Client::new().request(method, &url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
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

/// Call the API, signed in as `--as` if given.
async fn call(
    l: &Local,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let Some((worker, pin)) = &l.sign_in else {
        return request(l, method, path, body, None).await;
    };
    let session = request(
        l,
        reqwest::Method::POST,
        "/api/session",
        Some(json!({"worker": worker, "pin": pin})),
        None,
    )
    .await
    .with_context(|| format!("signing in as {worker}"))?;
    let token = session["token"].as_str().unwrap_or_default().to_owned();
    let r = request(l, method, path, body, Some(&token)).await;
    let _ = request(
        l,
        reqwest::Method::DELETE,
        "/api/session",
        None,
        Some(&token),
    )
    .await;
    r
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

pub async fn tasks(l: &Local) -> anyhow::Result<()> {
    let v = call(l, reqwest::Method::GET, "/api/tasks", None).await?;
    if l.json {
        return print_json(&v);
    }
    let rows = v.as_array().map(Vec::as_slice).unwrap_or_default();
    if rows.is_empty() {
        println!("no tasks on this terminal (HQ has published no list for this store yet, or it has not synced)");
        return Ok(());
    }
    println!(
        "{:<36}\t{:<12}\t{:<5}\t{:<8}\tlist\ttitle",
        "task", "status", "due", "priority"
    );
    for t in rows {
        println!(
            "{:<36}\t{:<12}\t{:<5}\t{:<8}\t{}\t{}{}",
            s(t, "task"),
            s(t, "status"),
            t["due_local"].as_str().unwrap_or("-"),
            s(t, "priority"),
            s(t, "list_name"),
            s(t, "title"),
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
        print_json(&v)
    } else {
        println!(
            "saved: {} is {} by {worker}",
            task_name(l, task).await,
            status.replace('_', " ")
        );
        Ok(())
    }
}

pub async fn claim(l: &Local, task: &str, worker: &str) -> anyhow::Result<()> {
    let v = call(
        l,
        reqwest::Method::POST,
        &format!("/api/tasks/{task}/claim"),
        Some(json!({ "worker": worker })),
    )
    .await?;
    if l.json {
        print_json(&v)
    } else {
        println!("saved: {} is now {worker}'s own", task_name(l, task).await);
        Ok(())
    }
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
        print_json(&v)
    } else {
        let what = task_name(l, task).await;
        match &to {
            Some(to) => println!(
                "saved: {what} is assigned to {}",
                assignee_text(l, &v["assignee"], to).await
            ),
            None => println!("saved: {what} is unassigned"),
        }
        Ok(())
    }
}

/// A task as a person reads it: `"Count the till" (task <id>)`, or the
/// id alone if the title cannot be read. For what a command says after
/// it did its work, so a failure here is not the command's.
async fn task_name(l: &Local, task: &str) -> String {
    match request(
        l,
        reqwest::Method::GET,
        &format!("/api/tasks/{task}"),
        None,
        None,
    )
    .await
    {
        Ok(v) if !s(&v, "title").is_empty() => format!("\"{}\" (task {task})", s(&v, "title")),
        _ => format!("task {task}"),
    }
}

/// Whom a task went to, as the API answered: `Ana Lopez (w-1007)` for a
/// worker on the roster, `group closers`; what was asked for if the
/// answer does not say.
async fn assignee_text(l: &Local, answer: &Value, asked: &str) -> String {
    match (answer["kind"].as_str(), answer["id"].as_str()) {
        (Some("worker"), Some(id)) => {
            let roster = request(l, reqwest::Method::GET, "/api/workers", None, None).await;
            let name = roster.ok().and_then(|r| {
                r.as_array()?
                    .iter()
                    .find(|w| s(w, "id") == id)
                    .map(|w| s(w, "name").to_owned())
            });
            match name {
                Some(n) if !n.is_empty() => format!("{n} ({id})"),
                _ => format!("worker {id}"),
            }
        }
        (Some(kind), Some(id)) => format!("{kind} {id}"),
        _ => asked.to_owned(),
    }
}

pub async fn add_task(l: &Local, list: &str, task: Value) -> anyhow::Result<()> {
    let v = call(
        l,
        reqwest::Method::POST,
        &format!("/api/lists/{list}/tasks"),
        Some(task),
    )
    .await?;
    if l.json {
        print_json(&v)
    } else {
        println!("saved: task {} in list {list}", s(&v, "task"));
        Ok(())
    }
}

/// `tasks` are "Title" or "Title@HH:MM".
pub async fn add_list(
    l: &Local,
    name: &str,
    date: Option<&str>,
    tasks: &[String],
) -> anyhow::Result<()> {
    let tasks: Vec<Value> = tasks
        .iter()
        .map(|t| match t.rsplit_once('@') {
            Some((title, due)) => json!({"title": title, "due": due}),
            None => json!({ "title": t }),
        })
        .collect();
    let v = call(
        l,
        reqwest::Method::POST,
        "/api/lists",
        Some(json!({"name": name, "date": date, "tasks": tasks})),
    )
    .await?;
    if l.json {
        print_json(&v)
    } else {
        println!("saved: list {}", s(&v, "list"));
        for t in v["tasks"].as_array().into_iter().flatten() {
            println!("  task {}", t.as_str().unwrap_or(""));
        }
        Ok(())
    }
}

pub async fn notifications(
    l: &Local,
    window: Option<i64>,
    worker: Option<&str>,
) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(w) = window {
        query.push(format!("window={w}"));
    }
    if let Some(w) = worker {
        query.push(format!("worker={w}"));
    }
    let path = format!("/api/notifications?{}", query.join("&"));
    let v = call(l, reqwest::Method::GET, &path, None).await?;
    if l.json {
        return print_json(&v);
    }
    println!(
        "{} pending task(s) today",
        v["pending"].as_u64().unwrap_or(0)
    );
    let past_due = v["past_due"].as_array().map_or(0, Vec::len);
    let upcoming = v["upcoming"].as_array().map_or(0, Vec::len);
    if past_due + upcoming == 0 {
        println!("nothing past due and nothing due soon");
        return Ok(());
    }
    // The API's order: by due time, the more urgent first within one.
    // How late in the engine's words, as the screens and the dashboard say it.
    for n in v["past_due"].as_array().into_iter().flatten() {
        println!(
            "PAST DUE\t{}\t{}\t{}\t{}",
            n["late"]
                .as_str()
                .map_or_else(|| format!("{} min late", n["minutes"]), str::to_owned),
            s(n, "task"),
            s(n, "list_name"),
            s(n, "title")
        );
    }
    for n in v["upcoming"].as_array().into_iter().flatten() {
        println!(
            "upcoming\tdue {}\t{}\t{}\t{}",
            s(n, "due_local"),
            s(n, "task"),
            s(n, "list_name"),
            s(n, "title")
        );
    }
    Ok(())
}

pub async fn workers(l: &Local) -> anyhow::Result<()> {
    let v = call(l, reqwest::Method::GET, "/api/workers", None).await?;
    if l.json {
        return print_json(&v);
    }
    let roster = v.as_array().map(Vec::as_slice).unwrap_or_default();
    if roster.is_empty() {
        println!("no workers on this store's roster yet (HQ adds them: hub workers add)");
        return Ok(());
    }
    println!("worker\tname\trole\tgroups");
    for w in roster {
        let groups: Vec<&str> = w["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "{}\t{}\t{}\t{}",
            s(w, "id"),
            s(w, "name"),
            s(w, "role"),
            groups.join(",")
        );
    }
    Ok(())
}

pub async fn conflicts(l: &Local) -> anyhow::Result<()> {
    let v = call(l, reqwest::Method::GET, "/api/conflicts", None).await?;
    if l.json {
        return print_json(&v);
    }
    // The API's order, as `tasks` lists them: by due time (undated last),
    // the more urgent first within one due time.
    let conflicts: Vec<&Value> = v.as_array().into_iter().flatten().collect();
    if conflicts.is_empty() {
        println!("no conflicts");
        return Ok(());
    }
    println!("task\tdue\tlist\ttitle");
    for c in conflicts {
        println!(
            "{}\t{}\t{}\t{}",
            s(c, "task"),
            c["due_local"].as_str().unwrap_or("-"),
            s(c, "list_name"),
            s(c, "title")
        );
        for e in c["statuses"].as_array().into_iter().flatten() {
            println!(
                "  status {} by {} on {}",
                s(e, "status"),
                s(e, "worker"),
                s(e, "terminal")
            );
        }
        for a in c["assignees"].as_array().into_iter().flatten() {
            println!("  assignee {}:{}", s(a, "kind"), s(a, "id"));
        }
    }
    Ok(())
}

pub async fn sync_status(l: &Local) -> anyhow::Result<()> {
    let v = call(l, reqwest::Method::GET, "/api/sync-status", None).await?;
    if l.json {
        return print_json(&v);
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
        // The rule's code after the text: what to look up, or grep for.
        println!("rejected by hub: {} [{}]", s(r, "reason"), s(r, "rule"));
    }
    for r in v["reported_by_peers"].as_array().into_iter().flatten() {
        // A peer's word: kept until this terminal's own hub connection
        // refuses the change (then it is dropped) or takes it.
        println!(
            "rejected by hub, as a peer terminal reports (kept until the hub confirms): {} [{}]",
            s(r, "reason"),
            s(r, "rule")
        );
    }
    for c in v["actor_changes"].as_array().into_iter().flatten() {
        println!(
            "history diverged from the hub's in list {} (restored from a backup, or another holder of the store token wrote as this terminal): now actor {} (was {}); {} status event(s) recorded again, {} other local edit(s) not remade; {}",
            s(c, "doc"),
            s(c, "new_actor"),
            s(c, "old_actor"),
            c["rerecorded"].as_u64().unwrap_or(0),
            c["not_rerecorded"].as_u64().unwrap_or(0),
            s(c, "reason"),
        );
    }
    Ok(())
}
