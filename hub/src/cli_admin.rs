//! `hub stores update|remove|tokens|expire|revoke --id`, `hub workers ...`
//! and `hub groups ...`: store administration through the admin API.

use anyhow::bail;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{call, print, Remote, StoresCmd};

#[derive(Subcommand, Debug)]
pub enum WorkersCmd {
    /// Add a worker to a store's roster (reaches its terminals). An id
    /// already on the roster is refused: change a worker with `update`.
    Add {
        #[arg(long)]
        store: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// manager, cashier, stocker or clerk (counts as a group for
        /// assignments).
        #[arg(long)]
        role: String,
        /// Worker groups (repeat or comma-separate).
        #[arg(long = "group", value_delimiter = ',')]
        groups: Vec<String>,
        /// Sign-in PIN, 4 to 8 digits (kept as a salted hash).
        #[arg(long)]
        pin: Option<String>,
    },
    /// Change a worker on a store's roster: only what is given changes
    /// (their groups and PIN stay unless given).
    Update {
        #[arg(long)]
        store: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// manager, cashier, stocker or clerk.
        #[arg(long)]
        role: Option<String>,
        /// Replace the worker's groups (repeat or comma-separate).
        #[arg(long = "group", value_delimiter = ',', conflicts_with = "no_groups")]
        groups: Vec<String>,
        /// Take the worker out of every group.
        #[arg(long)]
        no_groups: bool,
        /// A new sign-in PIN, 4 to 8 digits.
        #[arg(long)]
        pin: Option<String>,
    },
    /// A store's roster.
    List {
        #[arg(long)]
        store: String,
    },
    /// Take a worker off a store's roster (their history stays).
    Remove {
        #[arg(long)]
        store: String,
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupsCmd {
    /// Every store group and its stores.
    List,
    /// Put stores into a group (made on first use); lists assigned to the
    /// group reach them at once.
    Add {
        #[arg(long)]
        group: String,
        #[arg(long = "store", value_delimiter = ',', required = true)]
        stores: Vec<String>,
    },
    /// Take a store out of a group.
    Remove {
        #[arg(long)]
        group: String,
        #[arg(long)]
        store: String,
    },
}

fn lines(v: &Value, f: impl Fn(&Value) -> String) -> String {
    v.as_array()
        .map(|a| a.iter().map(f).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

pub(crate) async fn stores(remote: &Remote, cmd: StoresCmd) -> anyhow::Result<()> {
    match cmd {
        StoresCmd::Update { id, name, tz } => {
            if name.is_none() && tz.is_none() {
                bail!("nothing to change: pass --name and/or --tz");
            }
            let v = call(
                remote,
                Method::PATCH,
                &format!("/api/stores/{id}"),
                Some(json!({"name": name, "time_zone": tz})),
            )
            .await?;
            print(remote, &v, |v| {
                format!(
                    "store {} is now {:?} in {}",
                    s(&v["id"]),
                    s(&v["name"]),
                    s(&v["time_zone"])
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
                lines(v, |t| {
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
                })
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

pub async fn workers(remote: &Remote, cmd: WorkersCmd) -> anyhow::Result<()> {
    match cmd {
        WorkersCmd::Add {
            store,
            id,
            name,
            role,
            groups,
            pin,
        } => {
            let v = call(
                remote,
                Method::PUT,
                &format!("/api/stores/{store}/workers/{id}"),
                Some(json!({"name": name, "role": role, "groups": groups, "pin": pin})),
            )
            .await?;
            print(remote, &v, |v| {
                format!(
                    "worker {} ({}) added to the roster of {store}",
                    s(&v["id"]),
                    s(&v["role"])
                )
            });
        }
        WorkersCmd::Update {
            store,
            id,
            name,
            role,
            groups,
            no_groups,
            pin,
        } => {
            let mut body = serde_json::Map::new();
            for (k, v) in [("name", name), ("role", role), ("pin", pin)] {
                if let Some(v) = v {
                    body.insert(k.into(), json!(v));
                }
            }
            if no_groups || !groups.is_empty() {
                body.insert("groups".into(), json!(groups));
            }
            if body.is_empty() {
                bail!("nothing to change: pass --name, --role, --group, --no-groups and/or --pin");
            }
            let v = call(
                remote,
                Method::PATCH,
                &format!("/api/stores/{store}/workers/{id}"),
                Some(Value::Object(body)),
            )
            .await?;
            print(remote, &v, |v| {
                format!(
                    "worker {} ({}) updated on the roster of {store}",
                    s(&v["id"]),
                    s(&v["role"])
                )
            });
        }
        WorkersCmd::List { store } => {
            let v = call(
                remote,
                Method::GET,
                &format!("/api/stores/{store}/workers"),
                None,
            )
            .await?;
            print(remote, &v, |v| {
                lines(v, |w| {
                    let groups: Vec<&str> = w["groups"]
                        .as_array()
                        .map(|g| g.iter().map(s).collect())
                        .unwrap_or_default();
                    format!(
                        "{}\t{}\t{}\t{}\t{}",
                        s(&w["id"]),
                        s(&w["name"]),
                        s(&w["role"]),
                        groups.join(","),
                        if w["has_pin"].as_bool() == Some(true) {
                            "pin"
                        } else {
                            "no pin"
                        }
                    )
                })
            });
        }
        WorkersCmd::Remove { store, id } => {
            let v = call(
                remote,
                Method::DELETE,
                &format!("/api/stores/{store}/workers/{id}"),
                None,
            )
            .await?;
            print(remote, &v, |_| format!("worker {id} removed from {store}"));
        }
    }
    Ok(())
}

pub async fn groups(remote: &Remote, cmd: GroupsCmd) -> anyhow::Result<()> {
    match cmd {
        GroupsCmd::List => {
            let v = call(remote, Method::GET, "/api/store-groups", None).await?;
            print(remote, &v, |v| {
                v.as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(g, st)| {
                                let st: Vec<&str> = st
                                    .as_array()
                                    .map(|a| a.iter().map(s).collect())
                                    .unwrap_or_default();
                                format!("{g}\t{}", st.join(","))
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
        }
        GroupsCmd::Add { group, stores } => {
            let v = call(
                remote,
                Method::POST,
                &format!("/api/store-groups/{group}/stores"),
                Some(json!({ "stores": stores })),
            )
            .await?;
            print(remote, &v, |v| {
                let st: Vec<&str> = v["stores"]
                    .as_array()
                    .map(|a| a.iter().map(s).collect())
                    .unwrap_or_default();
                format!("group {group}: {}", st.join(", "))
            });
        }
        GroupsCmd::Remove { group, store } => {
            let v = call(
                remote,
                Method::DELETE,
                &format!("/api/store-groups/{group}/stores/{store}"),
                None,
            )
            .await?;
            print(remote, &v, |_| format!("store {store} left group {group}"));
        }
    }
    Ok(())
}
