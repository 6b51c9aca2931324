//! `hub workers ...`: a store's roster (add, update, list, remove).

use anyhow::bail;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::remote::{call, lines, print, s, Remote};

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
                lines(
                    v,
                    &format!("no workers on store {store}'s roster (hub workers add)"),
                    |w| {
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
                    },
                )
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
