//! `hub users ...`, `hub login`, `hub tokens ...` and `hub audit`: HQ
//! accounts, personal API tokens and the audit (issue #23).

use std::io::BufRead;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::remote::{call, lines, print, s, token_file, Remote};

#[derive(Subcommand, Debug)]
pub enum UsersCmd {
    /// Every HQ account with its role and scope.
    List,
    /// Add an account. Without --password-stdin it gets a one-time setup
    /// secret (printed), replaced at its first `hub login`.
    Add {
        id: String,
        /// admin, editor or viewer.
        #[arg(long)]
        role: String,
        /// `all`, or store groups separated by commas.
        #[arg(long, default_value = "all")]
        scope: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change an account's role, scope or password, or enable it again.
    Update {
        id: String,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        scope: Option<String>,
        #[arg(long)]
        password_stdin: bool,
        /// Let a disabled account sign in again.
        #[arg(long)]
        enable: bool,
    },
    /// Stop an account from signing in, and revoke its tokens.
    Disable { id: String },
}

#[derive(Subcommand, Debug)]
pub enum TokensCmd {
    /// Your personal tokens (an admin: everyone's, or --user's).
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a personal token by its id (from `hub tokens list`).
    Revoke { id: String },
}

/// One line of standard input (a password; never an argument, which
/// other users of the machine could see).
fn read_line(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn user_line(u: &Value) -> String {
    let scope = match &u["scope"] {
        Value::String(s) => s.clone(),
        Value::Array(g) => g.iter().map(s).collect::<Vec<_>>().join(","),
        _ => String::new(),
    };
    format!(
        "{}\t{}\t{}{}",
        s(&u["id"]),
        s(&u["role"]),
        scope,
        if u["disabled"] == true {
            "\tdisabled"
        } else {
            ""
        }
    )
}

pub async fn users(remote: &Remote, cmd: UsersCmd) -> anyhow::Result<()> {
    let v = match cmd {
        UsersCmd::List => {
            let v = call(remote, Method::GET, "/api/users", None).await?;
            print(remote, &v, |v| lines(v, "no HQ accounts", user_line));
            return Ok(());
        }
        UsersCmd::Add {
            id,
            role,
            scope,
            password_stdin,
        } => {
            let mut body = json!({"id": id, "role": role, "scope": scope});
            if password_stdin {
                body["password"] = json!(read_line("password: ")?);
            }
            call(remote, Method::POST, "/api/users", Some(body)).await?
        }
        UsersCmd::Update {
            id,
            role,
            scope,
            password_stdin,
            enable,
        } => {
            let mut body = json!({});
            if let Some(r) = role {
                body["role"] = json!(r);
            }
            if let Some(sc) = scope {
                body["scope"] = json!(sc);
            }
            if password_stdin {
                body["password"] = json!(read_line("password: ")?);
            }
            if enable {
                body["disabled"] = json!(false);
            }
            call(
                remote,
                Method::PATCH,
                &format!("/api/users/{id}"),
                Some(body),
            )
            .await?
        }
        UsersCmd::Disable { id } => {
            call(
                remote,
                Method::PATCH,
                &format!("/api/users/{id}"),
                Some(json!({"disabled": true})),
            )
            .await?
        }
    };
    print(remote, &v, |v| {
        let mut out = user_line(v);
        if let Some(secret) = v["setup_secret"].as_str() {
            out.push_str(&format!(
                "\none-time setup secret: {secret}\n(the first `hub login --user {}` replaces it)",
                s(&v["id"])
            ));
        }
        out
    });
    Ok(())
}

/// Sign in and save a personal token where the other commands find it.
pub async fn login(remote: &Remote, user: String, label: Option<String>) -> anyhow::Result<()> {
    let password = read_line("password: ")?;
    let mut body = json!({"user": user, "password": password, "label": label});
    let v = match call(remote, Method::POST, "/api/login", Some(body.clone())).await {
        Ok(v) => v,
        Err(e) if e.to_string().contains("one-time setup secret") => {
            body["new_password"] = json!(read_line("choose your password: ")?);
            call(remote, Method::POST, "/api/login", Some(body)).await?
        }
        Err(e) => return Err(e),
    };
    let token = v["token"].as_str().context("the hub answered no token")?;
    let file = token_file(remote).context("no --token-file and no HOME to save the token in")?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if file.exists() {
        std::fs::remove_file(&file).with_context(|| format!("replacing {}", file.display()))?;
    }
    crate::secrets::write_secret(&file, token)?;
    print(
        remote,
        &json!({"user": v["user"], "role": v["role"], "token_file": file}),
        |_| {
            format!(
                "signed in as {} ({}); token saved to {}",
                s(&v["user"]),
                s(&v["role"]),
                file.display()
            )
        },
    );
    Ok(())
}

pub async fn tokens(remote: &Remote, cmd: TokensCmd) -> anyhow::Result<()> {
    match cmd {
        TokensCmd::List { user } => {
            let path = match user {
                Some(u) => format!("/api/personal-tokens?user={u}"),
                None => "/api/personal-tokens".into(),
            };
            let v = call(remote, Method::GET, &path, None).await?;
            print(remote, &v, |v| {
                lines(v, "no personal tokens (hub login makes one)", |t| {
                    format!(
                        "{}\t{}\t{}\tcreated {}{}",
                        s(&t["id"]),
                        s(&t["user"]),
                        s(&t["label"]),
                        s(&t["created_at"]),
                        t["revoked_at"]
                            .as_str()
                            .map(|r| format!("\trevoked {r}"))
                            .unwrap_or_default()
                    )
                })
            });
        }
        TokensCmd::Revoke { id } => {
            let v = call(
                remote,
                Method::POST,
                &format!("/api/personal-tokens/{id}/revoke"),
                None,
            )
            .await?;
            print(remote, &v, |_| format!("revoked {id}"));
        }
    }
    Ok(())
}

/// The audit, newest first.
pub async fn audit(
    remote: &Remote,
    since: Option<String>,
    user: Option<String>,
    limit: Option<u32>,
) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(s) = since {
        query.push(format!("since={}", s.replace('+', "%2B")));
    }
    if let Some(u) = user {
        query.push(format!("user={u}"));
    }
    if let Some(l) = limit {
        query.push(format!("limit={l}"));
    }
    let path = if query.is_empty() {
        "/api/audit".to_owned()
    } else {
        format!("/api/audit?{}", query.join("&"))
    };
    let v = call(remote, Method::GET, &path, None).await?;
    print(remote, &v, |v| {
        lines(v, "nothing audited", |e| {
            let stores: Vec<&str> = e["stores"]
                .as_array()
                .map(|a| a.iter().map(s).collect())
                .unwrap_or_default();
            format!(
                "{}\t{}\t{}\t{}\t{}{}",
                s(&e["at"]),
                s(&e["user"]),
                s(&e["action"]),
                stores.join(","),
                e["status"],
                match s(&e["outcome"]) {
                    "" => String::new(),
                    o => format!("\t{o}"),
                }
            )
        })
    });
    Ok(())
}
