//! `hub report`: the compliance report (`GET /api/report`) as a table,
//! CSV or JSON.

use serde_json::Value;

use super::remote::{call, print, s, Remote};

/// `hub report --from --to [--by store|group|list|worker] [--csv|--json]`.
pub async fn report(
    remote: &Remote,
    from: &str,
    to: &str,
    by: &str,
    csv: bool,
) -> anyhow::Result<()> {
    let format = if csv { "csv" } else { "json" };
    let query: String = url_pairs(&[("from", from), ("to", to), ("by", by), ("format", format)]);
    let v = call(
        remote,
        reqwest::Method::GET,
        &format!("/api/report?{query}"),
        None,
    )
    .await?;
    if csv {
        println!("{}", s(&v));
        return Ok(());
    }
    print(remote, &v, |v| table(v, by, from, to));
    Ok(())
}

/// `a=1&b=2`, each value percent-encoded.
fn url_pairs(pairs: &[(&str, &str)]) -> String {
    let mut u = reqwest::Url::parse("http://x/").expect("a fixed URL parses");
    u.query_pairs_mut().extend_pairs(pairs);
    u.query().unwrap_or("").to_owned()
}

/// A header and one line per row: who, then on time / tasks and the rate.
fn table(v: &Value, by: &str, from: &str, to: &str) -> String {
    let rows = v.as_array().map(Vec::as_slice).unwrap_or_default();
    if rows.is_empty() {
        return format!("no tasks with a due time in lists dated {from} to {to}");
    }
    let key = |r: &Value| -> String {
        match by {
            "group" => r["group"].as_str().unwrap_or("(no group)").to_owned(),
            "list" => s(&r["list"]).to_owned(),
            "worker" => {
                let who = match (r["worker"].as_str(), r["name"].as_str()) {
                    (Some(w), Some(n)) => format!("{n} ({w})"),
                    (Some(w), None) => w.to_owned(),
                    (None, _) => "(no worker)".to_owned(),
                };
                format!("{}\t{who}", s(&r["store"]))
            }
            _ => match r["name"].as_str() {
                Some(n) => format!("{}\t{n}", s(&r["store"])),
                None => format!("{}\t", s(&r["store"])),
            },
        }
    };
    let head = match by {
        "group" => "group",
        "list" => "list",
        "worker" => "store\tworker",
        _ => "store\tname",
    };
    let mut out = vec![format!(
        "{head}\ton time\ttasks\trate\tlate\tmissed\topen (not yet due)"
    )];
    for r in rows {
        let rate = r["on_time_rate"]
            .as_f64()
            .map(|x| format!("{:.1}%", x * 100.0))
            .unwrap_or_else(|| "-".into());
        out.push(format!(
            "{}\t{}\t{}\t{rate}\t{}\t{}\t{}",
            key(r),
            r["on_time"],
            r["tasks"],
            r["late"],
            r["missed"],
            r["open"]
        ));
    }
    out.push(format!(
        "lists dated {from} to {to}; on time: completed at or before the due time, or with none"
    ));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_names_who_and_shows_the_rate() {
        let v = json!([
            {"store": "s1", "worker": "w-1", "name": "Ana", "tasks": 3, "on_time": 2,
             "late": 1, "missed": 0, "open": 0, "on_time_rate": 0.6667},
            {"store": "s1", "worker": null, "name": null, "tasks": 0, "on_time": 0,
             "late": 0, "missed": 0, "open": 2, "on_time_rate": null},
        ]);
        let t = table(&v, "worker", "2026-11-01", "2026-11-30");
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[1], "s1\tAna (w-1)\t2\t3\t66.7%\t1\t0\t0");
        assert_eq!(lines[2], "s1\t(no worker)\t0\t0\t-\t0\t0\t2");
        assert!(table(&json!([]), "store", "2026-11-01", "2026-11-30").starts_with("no tasks"));
    }
}
