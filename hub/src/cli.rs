//! `hub` subcommands that call a running hub's admin API. Every command
//! takes `--json`; the hub URL and admin token come from flags or
//! `HUB_URL` / `HUB_TOKEN`.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::api::{NewList, NewTask};

#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// Base URL of the hub.
    #[arg(
        long,
        global = true,
        env = "HUB_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub hub_url: String,
    /// HQ admin token (see DIR/admin-token after the first `hub serve`).
    #[arg(long, global = true, env = "HUB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum StoresCmd {
    /// Add or update a store.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// IANA time zone, e.g. Europe/Berlin.
        #[arg(long)]
        tz: String,
    },
    /// List stores and whether they are online.
    List,
    /// Issue a token for a store's terminals.
    Token {
        #[arg(long)]
        store: String,
        #[arg(long, default_value = "")]
        label: String,
        #[arg(long)]
        expires_in_hours: Option<u32>,
    },
    /// Revoke a token.
    Revoke {
        #[arg(long)]
        token_to_revoke: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ListsCmd {
    /// Show recurring lists (templates): id, revision, rule, stores.
    Templates,
    /// Create a recurring list (template) and assign it to stores:
    /// `--task "Title@21:30"` (due at a local time) or `--task "Title@+30"` (minutes after start).
    Create {
        #[arg(long)]
        name: String,
        /// RFC 5545 RRULE, e.g. "FREQ=WEEKLY;BYDAY=TH".
        #[arg(long)]
        rrule: String,
        /// Local start time of each occurrence, HH:MM.
        #[arg(long)]
        time: String,
        /// First date the rule applies, YYYY-MM-DD (default today).
        #[arg(long)]
        start_date: Option<String>,
        #[arg(long = "task", required = true)]
        tasks: Vec<String>,
        /// Stores to assign it to (repeat or comma-separate).
        #[arg(long = "store", value_delimiter = ',')]
        stores: Vec<String>,
    },
    /// Publish a one-off list to a store: `--task "Title@21:00"` (due time optional).
    Publish {
        #[arg(long)]
        store: String,
        #[arg(long)]
        name: String,
        /// Store-local date, YYYY-MM-DD.
        #[arg(long)]
        date: String,
        #[arg(long = "task", required = true)]
        tasks: Vec<String>,
    },
}

async fn call(
    remote: &Remote,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let url = format!("{}{}", remote.hub_url.trim_end_matches('/'), path);
    let client = reqwest::Client::new();
    let token = remote.token.as_deref().context(
        "no admin token: pass --token or set HUB_TOKEN (hub serve writes it to DATA/admin-token)",
    )?;
    let mut req = client.request(method, &url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("calling {url}; is the hub running?"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.trim().to_owned()));
    if !status.is_success() {
        let msg = value
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        bail!("{status}: {msg}");
    }
    Ok(value)
}

fn print(remote: &Remote, v: &Value, text: impl FnOnce(&Value) -> String) {
    if remote.json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        println!("{}", text(v));
    }
}

pub async fn stores(remote: &Remote, cmd: StoresCmd) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        StoresCmd::Add { id, name, tz } => {
            let v = call(
                remote,
                Method::POST,
                "/api/stores",
                Some(json!({"id": id, "name": name, "time_zone": tz})),
            )
            .await?;
            print(remote, &v, |v| {
                format!("store {} added", v["id"].as_str().unwrap_or("?"))
            });
        }
        StoresCmd::List => {
            let v = call(remote, Method::GET, "/api/stores", None).await?;
            print(remote, &v, |v| {
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .map(|s| {
                                format!(
                                    "{}\t{}\t{}\t{}",
                                    s["id"].as_str().unwrap_or(""),
                                    s["name"].as_str().unwrap_or(""),
                                    s["time_zone"].as_str().unwrap_or(""),
                                    if s["online"].as_bool() == Some(true) {
                                        "online"
                                    } else {
                                        "offline"
                                    }
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
        }
        StoresCmd::Token {
            store,
            label,
            expires_in_hours,
        } => {
            let v = call(
                remote,
                Method::POST,
                &format!("/api/stores/{store}/tokens"),
                Some(json!({"label": label, "expires_in_hours": expires_in_hours})),
            )
            .await?;
            print(remote, &v, |v| v["token"].as_str().unwrap_or("").to_owned());
        }
        StoresCmd::Revoke { token_to_revoke } => {
            let v = call(
                remote,
                Method::POST,
                "/api/tokens/revoke",
                Some(json!({"token": token_to_revoke})),
            )
            .await?;
            print(remote, &v, |_| "revoked".into());
        }
    }
    Ok(())
}

/// `"Title@21:00"` -> due at 21:00 local; `"Title@+30"` -> 30 minutes
/// after the list starts (recurring lists only); plain text -> no due time.
fn parse_task_arg(arg: &str) -> NewTask {
    let is_due = |d: &str| {
        (d.len() == 5 && d.as_bytes()[2] == b':')
            || (d.len() > 1 && d.starts_with('+') && d[1..].bytes().all(|b| b.is_ascii_digit()))
    };
    let (title, due) = match arg.rsplit_once('@') {
        Some((t, d)) if is_due(d) => (t.to_owned(), Some(d.to_owned())),
        _ => (arg.to_owned(), None),
    };
    NewTask {
        title,
        description: String::new(),
        start: None,
        due,
        priority: None,
        link: None,
        assignee: None,
    }
}

pub async fn lists(remote: &Remote, cmd: ListsCmd) -> anyhow::Result<()> {
    match cmd {
        ListsCmd::Templates => {
            let v = call(remote, reqwest::Method::GET, "/api/templates", None).await?;
            print(remote, &v, |v| {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        let t = &e["template"];
                        format!(
                            "{}\trev {}\t{}\t{} at {}\t{}",
                            t["id"].as_str().unwrap_or(""),
                            t["revision"],
                            t["name"].as_str().unwrap_or(""),
                            t["recurrence"]["rrule"].as_str().unwrap_or(""),
                            t["recurrence"]["time_of_day"].as_str().unwrap_or(""),
                            e["stores"]
                                .as_array()
                                .map(|s| s
                                    .iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join(","))
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        ListsCmd::Create {
            name,
            rrule,
            time,
            start_date,
            tasks,
            stores,
        } => {
            let tasks: Vec<Value> = tasks
                .iter()
                .map(|t| {
                    let nt = parse_task_arg(t);
                    json!({"title": nt.title, "due": nt.due})
                })
                .collect();
            let body = json!({"name": name, "rrule": rrule, "time": time, "start_date": start_date, "tasks": tasks});
            let t = call(remote, reqwest::Method::POST, "/api/templates", Some(body)).await?;
            let id = t["id"].as_str().unwrap_or_default().to_owned();
            if !stores.is_empty() {
                call(
                    remote,
                    reqwest::Method::POST,
                    &format!("/api/templates/{id}/assign"),
                    Some(json!({ "stores": stores })),
                )
                .await?;
            }
            print(remote, &t, |_| {
                format!(
                    "template {id} (revision {}) assigned to {}",
                    t["revision"],
                    stores.join(", ")
                )
            });
        }
        ListsCmd::Publish {
            store,
            name,
            date,
            tasks,
        } => {
            let req = NewList {
                store,
                name,
                date,
                tasks: tasks.iter().map(|t| parse_task_arg(t)).collect(),
            };
            let v = call(
                remote,
                reqwest::Method::POST,
                "/api/lists",
                Some(serde_json::to_value(req)?),
            )
            .await?;
            print(remote, &v, |v| {
                format!("published {}", v["id"].as_str().unwrap_or("?"))
            });
        }
    }
    Ok(())
}

/// `hub status --by store|worker`.
pub async fn status(
    remote: &Remote,
    by: &str,
    store: Option<String>,
    worker: Option<String>,
) -> anyhow::Result<()> {
    let mut q = Vec::new();
    if let Some(s) = &store {
        q.push(format!("store={s}"));
    }
    if let Some(w) = &worker {
        q.push(format!("worker={w}"));
    }
    let query = if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    };
    match by {
        "store" | "list" => {
            let v = call(
                remote,
                reqwest::Method::GET,
                &format!("/api/status/lists{query}"),
                None,
            )
            .await?;
            print(remote, &v, |v| {
                let mut out = vec![
                    "store\tdate\tlist\tnot started\tin progress\tcompleted\tpast due\tconflicts"
                        .to_owned(),
                ];
                for r in v.as_array().into_iter().flatten() {
                    out.push(format!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        r["store"].as_str().unwrap_or(""),
                        r["date"].as_str().unwrap_or(""),
                        r["list"].as_str().unwrap_or(""),
                        r["not_started"],
                        r["in_progress"],
                        r["completed"],
                        r["past_due"],
                        r["conflicts"]
                    ));
                }
                out.join("\n")
            });
        }
        "worker" => {
            let v = call(
                remote,
                reqwest::Method::GET,
                &format!("/api/status/workers{query}"),
                None,
            )
            .await?;
            print(remote, &v, |v| {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        let at = chrono::DateTime::from_timestamp_millis(
                            r["at_ms"].as_i64().unwrap_or(0),
                        )
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                        .unwrap_or_default();
                        format!(
                            "{at}\t{}\t{}\t{}\t{}\t{}",
                            r["store"].as_str().unwrap_or(""),
                            r["worker"].as_str().unwrap_or(""),
                            r["terminal"].as_str().unwrap_or(""),
                            r["status"].as_str().unwrap_or(""),
                            r["title"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        other => anyhow::bail!("--by {other:?}: use store or worker"),
    }
    Ok(())
}

/// `hub purge ...`: a dry run unless `dry_run` is false.
pub async fn purge(
    remote: &Remote,
    before: Option<String>,
    store: Option<String>,
    list: Option<String>,
    completed_only: bool,
    dry_run: bool,
) -> anyhow::Result<()> {
    let body = json!({"before": before, "store": store, "list": list,
                      "completed_only": completed_only, "dry_run": dry_run});
    let v = call(remote, reqwest::Method::POST, "/api/purge", Some(body)).await?;
    print(remote, &v, |v| {
        if dry_run {
            format!(
                "{} list(s) match; run again with --yes to delete them",
                v["count"]
            )
        } else {
            format!("deleted {} list(s)", v["count"])
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_args_take_an_optional_due_time() {
        let t = parse_task_arg("Count the till@21:30");
        assert_eq!(
            (t.title.as_str(), t.due.as_deref()),
            ("Count the till", Some("21:30"))
        );
        let t = parse_task_arg("Restock@+45");
        assert_eq!(
            (t.title.as_str(), t.due.as_deref()),
            ("Restock", Some("+45"))
        );
        let t = parse_task_arg("Email boss@example.com");
        assert_eq!((t.title.as_str(), t.due), ("Email boss@example.com", None));
    }
}
