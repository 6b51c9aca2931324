//! `hub stores ...`: add, list, update and remove stores, and their
//! tokens (issue, list, expire, revoke).

use anyhow::bail;
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::remote::{call, lines, print, s, Remote};

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
        /// The terminals' language and date formats, e.g. de-DE (default: en).
        #[arg(long)]
        locale: Option<String>,
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
        /// The terminals' language and date formats, e.g. de-DE.
        #[arg(long)]
        locale: Option<String>,
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

pub async fn stores(remote: &Remote, cmd: StoresCmd) -> anyhow::Result<()> {
    match cmd {
        StoresCmd::Add {
            id,
            name,
            tz,
            locale,
        } => {
            let v = call(
                remote,
                Method::POST,
                "/api/stores",
                Some(json!({"id": id, "name": name, "time_zone": tz, "locale": locale})),
            )
            .await?;
            print(remote, &v, |v| {
                format!(
                    "store {} added ({}, {})",
                    s(&v["id"]),
                    s(&v["time_zone"]),
                    s(&v["locale"])
                )
            });
        }
        StoresCmd::List => {
            let v = call(remote, Method::GET, "/api/stores", None).await?;
            print(remote, &v, |v| {
                lines(v, "no stores yet (hub stores add)", |s| {
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
        StoresCmd::Update {
            id,
            name,
            tz,
            locale,
        } => {
            if name.is_none() && tz.is_none() && locale.is_none() {
                bail!("nothing to change: pass --name, --tz and/or --locale");
            }
            let v = call(
                remote,
                Method::PATCH,
                &format!("/api/stores/{id}"),
                Some(json!({"name": name, "time_zone": tz, "locale": locale})),
            )
            .await?;
            print(remote, &v, |v| {
                format!(
                    "store {} is now {:?} in {}, locale {}",
                    s(&v["id"]),
                    s(&v["name"]),
                    s(&v["time_zone"]),
                    s(&v["locale"])
                )
            });
        }
        StoresCmd::Remove { id, yes } => {
            if !yes {
                bail!("removing store {id} revokes its tokens and deletes its lists and their history from the hub; add --yes to do it");
            }
            let v = call(remote, Method::DELETE, &format!("/api/stores/{id}"), None).await?;
            print(remote, &v, |v| {
                format!(
                    "store {} removed: {} tokens revoked, {} documents deleted",
                    s(&v["store"]),
                    v["tokens_revoked"],
                    v["documents_deleted"]
                )
            });
        }
        StoresCmd::Tokens { store } => {
            let path = match store {
                Some(st) => format!("/api/tokens?store={st}"),
                None => "/api/tokens".into(),
            };
            let v = call(remote, Method::GET, &path, None).await?;
            print(remote, &v, |v| {
                lines(
                    v,
                    "no tokens (hub stores token --store <id> makes one)",
                    |t| {
                        format!(
                            "{}\t{}\t{}\t{}\tcreated {}{}",
                            s(&t["id"]),
                            s(&t["principal"]),
                            s(&t["state"]),
                            s(&t["label"]),
                            s(&t["created_at"]),
                            t["expires_at"]
                                .as_str()
                                .map(|e| format!(", expires {e}"))
                                .unwrap_or_default()
                        )
                    },
                )
            });
        }
        StoresCmd::Expire { id, at } => {
            let v = call(
                remote,
                Method::POST,
                &format!("/api/tokens/{id}/expire"),
                Some(json!({ "at": at })),
            )
            .await?;
            print(remote, &v, |_| {
                format!("token {id} expires {}", at.as_deref().unwrap_or("now"))
            });
        }
        StoresCmd::Revoke { id: Some(id), .. } => {
            let v = call(
                remote,
                Method::POST,
                &format!("/api/tokens/{id}/revoke"),
                None,
            )
            .await?;
            print(remote, &v, |_| "revoked".into());
        }
        other => bail!("unexpected command {other:?}"),
    }
    Ok(())
}
