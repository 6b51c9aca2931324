//! How the CLI talks to a running hub: the hub URL and admin token
//! (`Remote`), one admin API call, and printing its answer as text or JSON.

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;

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
    /// HQ token: a personal one (`hub login`) or the admin token (see
    /// DIR/admin-token after the first `hub serve`). Without it, the token
    /// `hub login` saved (--token-file) is used.
    #[arg(long, global = true, env = "HUB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where `hub login` saves the personal token and other commands read
    /// it when no --token is given (default: ~/.config/hub/token).
    #[arg(long, global = true, env = "HUB_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
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

pub(super) async fn call(
    remote: &Remote,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let url = format!("{}{}", remote.hub_url.trim_end_matches('/'), path);
    let client = reqwest::Client::new();
    let saved = saved_token(remote);
    let token = remote.token.as_deref().or(saved.as_deref());
    let mut req = client.request(method, &url);
    match token {
        Some(t) => req = req.bearer_auth(t),
        None if path == "/api/login" => {}
        None => bail!(
            "no token: sign in with `hub login --user NAME`, or pass --token or set HUB_TOKEN \
             (hub serve writes the admin token to DATA/admin-token)"
        ),
    }
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

/// The file `hub login` saves the personal token in.
pub(super) fn token_file(remote: &Remote) -> Option<std::path::PathBuf> {
    remote.token_file.clone().or_else(|| {
        std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".config/hub/token"))
    })
}

/// The token `hub login` saved, if any.
fn saved_token(remote: &Remote) -> Option<String> {
    let text = std::fs::read_to_string(token_file(remote)?).ok()?;
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_owned())
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
pub(super) fn published_lines(lists: &[Value]) -> String {
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

pub(super) fn print(remote: &Remote, v: &Value, text: impl FnOnce(&Value) -> String) {
    if remote.json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        println!("{}", text(v));
    }
}

/// `f` of each element of the JSON array `v`, a line each, or `none` when
/// there is no element: a listing never prints a blank line.
pub(super) fn lines(v: &Value, none: &str, f: impl Fn(&Value) -> String) -> String {
    or_none(
        v.as_array()
            .map(|a| a.iter().map(f).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default(),
        none,
    )
}

/// `text`, or `none` when it is empty.
pub(super) fn or_none(text: String, none: &str) -> String {
    if text.is_empty() {
        none.to_owned()
    } else {
        text
    }
}

/// `v` as a string, or "" if it is not one.
pub(super) fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
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
}
