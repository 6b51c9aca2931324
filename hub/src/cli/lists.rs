//! `hub lists ...`: publish one-off lists, and create, assign, take off
//! and delete recurring lists (templates).

use anyhow::bail;
use clap::Subcommand;
use engine::publish::{NewList, NewTask};
use serde_json::{json, Value};

use super::remote::{call, lines, print, published_lines, Remote};

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
                lines(v, "no recurring lists (hub lists create)", |e| {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
