//! `hub status` (by store, by worker, past due) and `hub purge`.

use serde_json::{json, Value};

use super::remote::{call, print, Remote};

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
            print(remote, &v, |v| by_list_text(v, store.as_deref()));
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
                by_worker_text(v, store.as_deref(), worker.as_deref())
            });
        }
        other => anyhow::bail!("--by {other:?}: use store or worker"),
    }
    Ok(())
}

/// A header and one line per list with its counts, or what there is not.
fn by_list_text(v: &Value, store: Option<&str>) -> String {
    let rows = v.as_array().map(Vec::as_slice).unwrap_or_default();
    if rows.is_empty() {
        return match store {
            Some(s) => format!("no lists for store {s}"),
            None => {
                "no lists yet (hub lists publish, or hub lists create for a recurring one)".into()
            }
        };
    }
    let mut out = vec![
        "store\tdate\tlist\tnot started\tin progress\tcompleted\tpast due\tconflicts".to_owned(),
    ];
    for r in rows {
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
}

/// A header and one line per recorded status change (who did what, when,
/// from which terminal), or that none is recorded.
fn by_worker_text(v: &Value, store: Option<&str>, worker: Option<&str>) -> String {
    let rows = v.as_array().map(Vec::as_slice).unwrap_or_default();
    if rows.is_empty() {
        let mut whose = String::new();
        if let Some(w) = worker {
            whose.push_str(&format!(" by {w}"));
        }
        if let Some(s) = store {
            whose.push_str(&format!(" in store {s}"));
        }
        return format!("no status changes recorded{whose}");
    }
    let mut out = vec!["at\tstore\tworker\tterminal\tstatus\ttask".to_owned()];
    for r in rows {
        let at = match r["at_local"].as_str() {
            Some(local) => local.to_owned(),
            None => chrono::DateTime::from_timestamp_millis(r["at_ms"].as_i64().unwrap_or(0))
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
        };
        out.push(format!(
            "{at}\t{}\t{}\t{}\t{}\t{}",
            r["store"].as_str().unwrap_or(""),
            who(r["worker"].as_str().unwrap_or(""), &r["worker_name"]),
            r["terminal"].as_str().unwrap_or(""),
            r["status"].as_str().unwrap_or(""),
            r["title"].as_str().unwrap_or("")
        ));
    }
    out.join("\n")
}

/// A worker's id with the name the roster gives it, if any:
/// `Ana (w-1)`; a group assignee as it is.
fn who(id: &str, name: &Value) -> String {
    match name.as_str() {
        Some(n) => format!("{n} ({id})"),
        None => id.to_owned(),
    }
}

/// One line per past-due task: due (on the store's clock, its zone
/// named), how late, store, date, list, task, assignee, status.
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
            r["due_local"].as_str().or(r["due"].as_str()).unwrap_or(""),
            late_min / 60,
            late_min % 60,
            r["store"].as_str().unwrap_or(""),
            r["date"].as_str().unwrap_or(""),
            r["list"].as_str().unwrap_or(""),
            r["title"].as_str().unwrap_or(""),
            match r["assignee"].as_str() {
                Some(a) => who(a, &r["assignee_name"]),
                None => "-".to_owned(),
            },
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
    fn worker_rows_come_under_a_header_and_none_says_so() {
        assert_eq!(
            by_worker_text(&json!([]), Some("store-042"), None),
            "no status changes recorded in store store-042"
        );
        assert_eq!(
            by_worker_text(&json!([]), None, Some("w-1")),
            "no status changes recorded by w-1"
        );
        let text = by_worker_text(
            &json!([{"at_ms": 1_764_144_000_000i64, "store": "s1", "worker": "w-1",
                     "terminal": "pos-1", "status": "completed", "title": "Unlock"}]),
            None,
            None,
        );
        assert_eq!(
            text,
            "at\tstore\tworker\tterminal\tstatus\ttask\n2025-11-26T08:00:00Z\ts1\tw-1\tpos-1\tcompleted\tUnlock"
        );
    }

    #[test]
    fn list_rows_come_under_a_header_and_none_says_so() {
        assert_eq!(
            by_list_text(&json!([]), Some("s1")),
            "no lists for store s1"
        );
        let text = by_list_text(
            &json!([{"store": "s1", "date": "2026-11-26", "list": "Opening", "not_started": 1,
                     "in_progress": 0, "completed": 2, "past_due": 1, "conflicts": 0}]),
            None,
        );
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "store\tdate\tlist\tnot started\tin progress\tcompleted\tpast due\tconflicts",
                "s1\t2026-11-26\tOpening\t1\t0\t2\t1\t0"
            ]
        );
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
        // On the store's clock with its zone named, and the worker's name
        // (issue #23), when the hub gives them.
        let text = past_due_text(&json!([{"due": "2026-11-26T08:00:00.000Z", "due_ms": due,
            "due_local": "2026-11-26 17:00 JST (Asia/Tokyo)", "time_zone": "Asia/Tokyo",
            "store": "s3", "date": "2026-11-26", "list": "Delivery", "title": "Receive",
            "assignee": "worker:w-1", "assignee_name": "Aiko", "status": "not_started",
            "conflict": false}]));
        assert_eq!(
            text.lines().nth(1).unwrap(),
            "2026-11-26 17:00 JST (Asia/Tokyo)\t1h30m\ts3\t2026-11-26\tDelivery\tReceive\tAiko (worker:w-1)\tnot_started"
        );
    }
}
