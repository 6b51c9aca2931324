//! `hub groups ...`: store groups (list, add stores, remove a store).

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::remote::{call, or_none, print, s, Remote};

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

pub async fn groups(remote: &Remote, cmd: GroupsCmd) -> anyhow::Result<()> {
    match cmd {
        GroupsCmd::List => {
            let v = call(remote, Method::GET, "/api/store-groups", None).await?;
            print(remote, &v, |v| {
                let groups = v
                    .as_object()
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
                    .unwrap_or_default();
                or_none(groups, "no store groups (hub groups add)")
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
