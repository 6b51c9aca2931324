//! `hub` subcommands that call a running hub's admin API. Every command
//! takes `--json`; the hub URL and admin token come from flags or
//! `HUB_URL` / `HUB_TOKEN`.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use engine::publish::{NewList, NewTask};

#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// Base URL of the hub, with its scheme: http://HOST:PORT (or https://
    /// behind a TLS proxy). A bare HOST:PORT is refused, not guessed.
    #[arg(
        long,
        global = true,
        env = "HUB_URL",
        default_value = "http://127.0.0.1:8080",
        value_parser = hub_url
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
    /// Add a store (an id already taken is refused: change a store with
    /// `stores update`).
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// IANA time zone, e.g. Europe/Berlin.
        #[arg(long)]
        tz: String,
    },
    /// List stores: online (terminals connected) or offline, last sync.
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
    /// Revoke a token: the token itself, or its id from `stores tokens`.
    Revoke {
        #[arg(long, required_unless_present = "id")]
        token_to_revoke: Option<String>,
        #[arg(long, conflicts_with = "token_to_revoke")]
        id: Option<String>,
    },
    /// Change a store's name or time zone.
    Update {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// IANA time zone, e.g. Europe/Berlin.
        #[arg(long)]
        tz: Option<String>,
    },
    /// Remove a store: revokes its tokens, closes its connections and
    /// deletes its lists and their history from the hub.
    Remove {
        #[arg(long)]
        id: String,
        /// Really remove (without it, nothing happens).
        #[arg(long)]
        yes: bool,
    },
    /// List tokens (ids, labels, state; never the tokens themselves).
    Tokens {
        #[arg(long)]
        store: Option<String>,
    },
    /// Make a token expire now, or at `--at` (RFC 3339).
    Expire {
        #[arg(long)]
        id: String,
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ListsCmd {
    /// Show recurring lists (templates): id, revision, rule, stores.
    Templates,
    /// Create a recurring list (template) and assign it to stores, in one
    /// request (nothing is saved if a store or group is unknown):
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
        /// Store groups to assign it to: their stores now and later.
        #[arg(long = "group", value_delimiter = ',')]
        groups: Vec<String>,
    },
    /// Assign an existing recurring list (template id from `lists templates`)
    /// to more stores or store groups; their lists are made and pushed at once.
    Assign {
        #[arg(long)]
        template: String,
        #[arg(long = "store", value_delimiter = ',')]
        stores: Vec<String>,
        #[arg(long = "group", value_delimiter = ',')]
        groups: Vec<String>,
    },
    /// Take a recurring list (template) off stores or store groups. Stores
    /// it no longer reaches lose its future lists nobody started; today's
    /// list and lists with status recorded stay.
    Unassign {
        #[arg(long)]
        template: String,
        #[arg(long = "store", value_delimiter = ',')]
        stores: Vec<String>,
        #[arg(long = "group", value_delimiter = ',')]
        groups: Vec<String>,
    },
    /// Delete a recurring list (template): no more lists are made from it,
    /// its future lists nobody started are withdrawn from the stores;
    /// today's list and lists with status recorded stay.
    Delete {
        #[arg(long)]
        template: String,
        /// Really delete (without it, nothing happens).
        #[arg(long)]
        yes: bool,
    },
    /// Publish a one-off list to a store, or the same list to several
    /// (`--store a,b,c`, one request): `--task "Title@21:00"` (due time
    /// optional).
    Publish {
        #[arg(long = "store", value_delimiter = ',', required = true)]
        stores: Vec<String>,
        #[arg(long)]
        name: String,
        /// Store-local date, YYYY-MM-DD.
        #[arg(long)]
        date: String,
        #[arg(long = "task", required = true)]
        tasks: Vec<String>,
    },
}

/// `--hub-url` / `HUB_URL`: an http or https URL. Without a scheme,
/// `127.0.0.1:8090` failed later as "relative URL without a base", and
/// `localhost:8090` parses as a URL of scheme "localhost".
fn hub_url(s: &str) -> Result<String, String> {
    let use_instead = "use http://HOST:PORT, e.g. http://127.0.0.1:8080 (--hub-url or HUB_URL)";
    match reqwest::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(s.to_owned()),
        _ => Err(format!(
            "{s:?} is not an http:// or https:// URL: {use_instead}"
        )),
    }
}

pub(crate) async fn call(
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
    if let Some(note) = behind_note(resp.headers()) {
        eprintln!("{note}");
    }
    let text = resp.text().await.unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.trim().to_owned()));
    if !status.is_success() {
        let mut msg = value
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        // A many-store publish that failed part-way names what went out.
        if let Some(lists) = value.get("lists").and_then(Value::as_array) {
            msg.push_str(&format!("\n{}", published_lines(lists)));
        }
        bail!("{status}: {msg}");
    }
    Ok(value)
}

/// What to tell the operator when a status query was answered before the
/// hub's status index caught up (`status-index-behind`, see
/// `http::status::index_read`).
fn behind_note(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let lists: u64 = headers
        .get(crate::http::status::INDEX_BEHIND_HEADER)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    (lists > 0).then(|| {
        format!(
            "note: the hub is still indexing {lists} changed list(s); \
             these figures may not include their latest changes yet"
        )
    })
}

/// "published <id> to <store>", a line per `{"store", "id"}`.
fn published_lines(lists: &[Value]) -> String {
    lists
        .iter()
        .map(|l| {
            format!(
                "published {} to {}",
                l["id"].as_str().unwrap_or("?"),
                l["store"].as_str().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn print(remote: &Remote, v: &Value, text: impl FnOnce(&Value) -> String) {
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
                                let online = match s["connections"].as_u64() {
                                    _ if s["online"].as_bool() != Some(true) => "offline".into(),
                                    Some(1) => "online (1 connection)".to_owned(),
                                    Some(n) => format!("online ({n} connections)"),
                                    None => "online".into(),
                                };
                                format!(
                                    "{}\t{}\t{}\t{online}\tlast sync {}",
                                    s["id"].as_str().unwrap_or(""),
                                    s["name"].as_str().unwrap_or(""),
                                    s["time_zone"].as_str().unwrap_or(""),
                                    s["last_sync"].as_str().unwrap_or("never"),
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
        StoresCmd::Revoke {
            token_to_revoke: Some(token),
            ..
        } => {
            let v = call(
                remote,
                Method::POST,
                "/api/tokens/revoke",
                Some(json!({"token": token})),
            )
            .await?;
            print(remote, &v, |_| "revoked".into());
        }
        other => crate::cli_admin::stores(remote, other).await?,
    }
    Ok(())
}

/// `"Title@21:00"` -> due at 21:00 local; `"Title@+30"` -> 30 minutes
/// after the list starts (recurring lists only); plain text -> no due time.
/// An `@` followed by a digit or `+` starts a due time, which must then be
/// one (`A@9pm` is refused, not made a title); any other `@` is part of
/// the title (`Email boss@example.com`).
fn parse_task_arg(arg: &str) -> anyhow::Result<NewTask> {
    let (title, due) = match arg.rsplit_once('@') {
        Some((t, d)) if d.starts_with(|c: char| c.is_ascii_digit() || c == '+') => {
            (t.to_owned(), Some(due_arg(arg, d)?))
        }
        _ => (arg.to_owned(), None),
    };
    if title.trim().is_empty() {
        bail!("--task {arg:?}: the title is empty; write --task \"Title@21:30\"");
    }
    Ok(NewTask {
        title,
        description: String::new(),
        start: None,
        due,
        priority: None,
        link: None,
        assignee: None,
    })
}

/// The due part of `--task` (after the `@`): `HH:MM` (24-hour; `9:30` is
/// 09:30) or `+minutes`.
fn due_arg(arg: &str, d: &str) -> anyhow::Result<String> {
    if let Some(m) = d.strip_prefix('+') {
        if !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()) && m.parse::<u32>().is_ok() {
            return Ok(d.to_owned());
        }
    } else if let Ok(t) = chrono::NaiveTime::parse_from_str(d, "%H:%M") {
        return Ok(t.format("%H:%M").to_string());
    }
    bail!(
        "--task {arg:?}: due {d:?} is not a time; write a 24-hour time (\"Title@21:00\") or \
         minutes after the list starts (\"Title@+30\")"
    )
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
            groups,
        } => {
            let tasks: Vec<Value> = tasks
                .iter()
                .map(|t| {
                    let nt = parse_task_arg(t)?;
                    Ok(json!({"title": nt.title, "due": nt.due}))
                })
                .collect::<anyhow::Result<_>>()?;
            // One request: the template and its stores are saved together
            // or not at all.
            let body = json!({"name": name, "rrule": rrule, "time": time, "start_date": start_date,
                              "tasks": tasks, "stores": stores, "groups": groups});
            let t = call(remote, reqwest::Method::POST, "/api/templates", Some(body)).await?;
            let id = t["id"].as_str().unwrap_or_default().to_owned();
            let targets: Vec<String> = stores
                .iter()
                .cloned()
                .chain(groups.iter().map(|g| format!("group {g}")))
                .collect();
            print(remote, &t, |_| {
                format!(
                    "template {id} (revision {}) assigned to {}",
                    t["revision"],
                    targets.join(", ")
                )
            });
        }
        ListsCmd::Assign {
            template,
            stores,
            groups,
        } => {
            if stores.is_empty() && groups.is_empty() {
                bail!("name at least one --store or --group");
            }
            let v = call(
                remote,
                reqwest::Method::POST,
                &format!("/api/templates/{template}/assign"),
                Some(json!({ "stores": stores, "groups": groups })),
            )
            .await?;
            print(remote, &v, |_| format!("template {template} assigned"));
        }
        ListsCmd::Unassign {
            template,
            stores,
            groups,
        } => {
            if stores.is_empty() && groups.is_empty() {
                bail!("name at least one --store or --group to take the template off");
            }
            let v = call(
                remote,
                reqwest::Method::POST,
                &format!("/api/templates/{template}/unassign"),
                Some(json!({ "stores": stores, "groups": groups })),
            )
            .await?;
            print(remote, &v, |v| removal_text(&template, "unassigned", v));
        }
        ListsCmd::Delete { template, yes } => {
            if !yes {
                bail!("deleting template {template} stops its lists and withdraws its future lists nobody started from the stores (today's and lists with status stay); add --yes to do it");
            }
            let v = call(
                remote,
                reqwest::Method::DELETE,
                &format!("/api/templates/{template}"),
                None,
            )
            .await?;
            print(remote, &v, |v| removal_text(&template, "deleted", v));
        }
        ListsCmd::Publish {
            mut stores,
            name,
            date,
            tasks,
        } => {
            let req = NewList {
                store: stores.first().cloned().unwrap_or_default(),
                name,
                date,
                tasks: tasks
                    .iter()
                    .map(|t| parse_task_arg(t))
                    .collect::<anyhow::Result<_>>()?,
            };
            let mut body = serde_json::to_value(req)?;
            if stores.len() > 1 {
                // The same list for each store, in one request.
                body["stores"] = json!(std::mem::take(&mut stores));
                if let Some(o) = body.as_object_mut() {
                    o.remove("store");
                }
            }
            let v = call(remote, reqwest::Method::POST, "/api/lists", Some(body)).await?;
            print(remote, &v, |v| match v["lists"].as_array() {
                Some(lists) => published_lines(lists),
                None => format!("published {}", v["id"].as_str().unwrap_or("?")),
            });
        }
    }
    Ok(())
}

/// What `lists unassign|delete` did: `TemplateRemoval` as text.
fn removal_text(template: &str, done: &str, v: &Value) -> String {
    let n = |k: &str| v[k].as_array().map(Vec::len).unwrap_or(0);
    let stores: Vec<&str> = v["stores"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!(
        "template {template} {done}; {} future list(s) withdrawn from {}; {} kept (today's or with status recorded)",
        n("withdrawn"),
        if stores.is_empty() {
            "no store".to_owned()
        } else {
            stores.join(", ")
        },
        n("kept")
    )
}

/// `hub status --by store|worker`, or `hub status --past-due`.
pub async fn status(
    remote: &Remote,
    by: &str,
    store: Option<String>,
    worker: Option<String>,
    past_due: bool,
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
    if past_due {
        let v = call(
            remote,
            reqwest::Method::GET,
            &format!("/api/status/past-due{query}"),
            None,
        )
        .await?;
        print(remote, &v, past_due_text);
        return Ok(());
    }
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

/// One line per past-due task: due, how late, store, date, list, task, assignee, status.
fn past_due_text(v: &Value) -> String {
    let rows = v.as_array().map(Vec::as_slice).unwrap_or_default();
    if rows.is_empty() {
        return "nothing is past due".into();
    }
    let now = chrono::Utc::now().timestamp_millis();
    let mut out = vec!["due\tlate\tstore\tdate\tlist\ttask\tassignee\tstatus".to_owned()];
    for r in rows {
        let late_min = (now - r["due_ms"].as_i64().unwrap_or(now)).max(0) / 60_000;
        out.push(format!(
            "{}\t{}h{:02}m\t{}\t{}\t{}\t{}\t{}\t{}{}",
            r["due"].as_str().unwrap_or(""),
            late_min / 60,
            late_min % 60,
            r["store"].as_str().unwrap_or(""),
            r["date"].as_str().unwrap_or(""),
            r["list"].as_str().unwrap_or(""),
            r["title"].as_str().unwrap_or(""),
            r["assignee"].as_str().unwrap_or("-"),
            r["status"].as_str().unwrap_or(""),
            if r["conflict"].as_bool() == Some(true) {
                " (conflict)"
            } else {
                ""
            }
        ));
    }
    out.join("\n")
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
    fn a_status_answer_with_lists_behind_gets_a_note_and_one_without_none() {
        let with = |v: &str| {
            let mut h = reqwest::header::HeaderMap::new();
            h.insert(crate::http::status::INDEX_BEHIND_HEADER, v.parse().unwrap());
            behind_note(&h)
        };
        assert!(with("12").unwrap().contains("indexing 12 changed list(s)"));
        assert_eq!(with("0"), None);
        assert_eq!(with("many"), None);
        assert_eq!(behind_note(&reqwest::header::HeaderMap::new()), None);
    }

    #[test]
    fn a_task_arg_whose_due_time_is_not_a_time_is_refused_not_made_a_title() {
        for bad in ["A@9pm", "A@21.30", "A@25:00", "A@+", "A@+3x"] {
            let err = parse_task_arg(bad).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains("is not a time") && e.contains("\"Title@21:00\"")),
                "{bad}: {err:?}"
            );
        }
        let t = parse_task_arg("Open up@9:30").unwrap();
        assert_eq!(
            t.due.as_deref(),
            Some("09:30"),
            "a 24-hour time without its 0"
        );
        assert!(parse_task_arg("@21:00").is_err(), "no title");
    }

    #[test]
    fn task_args_take_an_optional_due_time() {
        let t = parse_task_arg("Count the till@21:30").unwrap();
        assert_eq!(
            (t.title.as_str(), t.due.as_deref()),
            ("Count the till", Some("21:30"))
        );
        let t = parse_task_arg("Restock@+45").unwrap();
        assert_eq!(
            (t.title.as_str(), t.due.as_deref()),
            ("Restock", Some("+45"))
        );
        let t = parse_task_arg("Email boss@example.com").unwrap();
        assert_eq!((t.title.as_str(), t.due), ("Email boss@example.com", None));
    }

    #[test]
    fn past_due_rows_print_one_line_each() {
        assert_eq!(past_due_text(&json!([])), "nothing is past due");
        let due = chrono::Utc::now().timestamp_millis() - 90 * 60_000;
        let text = past_due_text(&json!([{"due": "2026-11-26T08:00:00.000Z", "due_ms": due,
            "store": "s1", "date": "2026-11-26", "list": "Opening", "title": "Unlock",
            "assignee": "worker:w-1", "status": "in_progress", "conflict": true}]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(
            lines[1],
            "2026-11-26T08:00:00.000Z\t1h30m\ts1\t2026-11-26\tOpening\tUnlock\tworker:w-1\tin_progress (conflict)"
        );
    }
}
