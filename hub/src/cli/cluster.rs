//! `hub cluster status`: the nodes of a PostgreSQL cluster, how many
//! stores each serves, and every store's lease, read straight from the
//! database (it answers even when no node runs).

use anyhow::Context;
use clap::Subcommand;

use crate::pg::lease::{cluster_status, LeaseRow, NodeRow};

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Nodes (address, state, heartbeat age, stores served) and every
    /// store's lease (owner, epoch, time left).
    Status {
        /// The cluster's database, as given to `hub serve --database`.
        #[arg(long, env = "HUB_DATABASE")]
        database: String,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

pub async fn cluster(cmd: ClusterCmd) -> anyhow::Result<()> {
    let ClusterCmd::Status { database, json } = cmd;
    let (client, conn) = tokio_postgres::connect(&database, tokio_postgres::NoTls)
        .await
        .context("connecting to the cluster's database")?;
    tokio::spawn(conn);
    let (nodes, leases) = cluster_status(&client)
        .await
        .context("reading the cluster's nodes and leases")?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"nodes": nodes, "leases": leases}))?
        );
        return Ok(());
    }
    print!("{}", render(&nodes, &leases));
    Ok(())
}

/// `hub copy-to-postgres`: what was copied, table by table.
pub async fn copy_to_postgres(data: &std::path::Path, database: &str) -> anyhow::Result<()> {
    let file = data.join("hub.db");
    let copied = crate::pg::copy::copy_to_postgres(&file, database)
        .await
        .with_context(|| format!("copying {} to PostgreSQL", file.display()))?;
    for (table, rows) in &copied.tables {
        println!("{table:<20} {rows:>10} rows");
    }
    println!(
        "copied {}; start the hub with: hub serve --database <URL> [--node NAME --advertise URL]",
        file.display()
    );
    Ok(())
}

/// The two tables `hub cluster status` prints.
fn render(nodes: &[NodeRow], leases: &[LeaseRow]) -> String {
    let mut out = String::new();
    if nodes.is_empty() {
        out.push_str("no hub node has joined this database yet\n");
    } else {
        out.push_str(&format!(
            "{:<16} {:<8} {:>10} {:>7}  {}\n",
            "NODE", "STATE", "HEARTBEAT", "STORES", "ADDRESS"
        ));
        for n in nodes {
            let serving = leases
                .iter()
                .filter(|l| l.owner.as_deref() == Some(&n.node) && l.expires_in_ms > 0)
                .count();
            out.push_str(&format!(
                "{:<16} {:<8} {:>8.1} s {:>7}  {}\n",
                n.node,
                n.state,
                n.heartbeat_age_ms as f64 / 1000.0,
                serving,
                n.address
            ));
        }
    }
    out.push('\n');
    if leases.is_empty() {
        out.push_str("no stores yet\n");
        return out;
    }
    out.push_str(&format!(
        "{:<24} {:<16} {:>6} {:>10}\n",
        "STORE", "NODE", "EPOCH", "EXPIRES"
    ));
    for l in leases {
        let (node, expires) = match &l.owner {
            Some(o) if l.expires_in_ms > 0 => (
                o.as_str(),
                format!("in {:.1} s", l.expires_in_ms as f64 / 1000.0),
            ),
            _ => ("(nobody)", "-".to_owned()),
        };
        out.push_str(&format!(
            "{:<24} {:<16} {:>6} {:>10}\n",
            l.store, node, l.epoch, expires
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_name_each_nodes_stores_and_unserved_stores_say_nobody() {
        let nodes = vec![NodeRow {
            node: "hub-a".into(),
            address: "ws://10.0.0.1:8080/sync".into(),
            state: "active".into(),
            heartbeat_age_ms: 400,
        }];
        let lease = |store: &str, owner: Option<&str>, epoch, ms| LeaseRow {
            store: store.into(),
            owner: owner.map(str::to_owned),
            epoch,
            expires_in_ms: ms,
        };
        let leases = vec![
            lease("store-001", Some("hub-a"), 3, 5_200),
            lease("store-002", Some("hub-b"), 1, -800),
            lease("store-003", None, 0, -1),
        ];
        let text = render(&nodes, &leases);
        assert!(
            text.contains("hub-a            active        0.4 s       1  ws://10.0.0.1:8080/sync"),
            "{text}"
        );
        assert!(
            text.contains("store-001                hub-a                 3   in 5.2 s"),
            "{text}"
        );
        assert!(
            text.contains("store-002                (nobody)              1          -"),
            "{text}"
        );
        assert!(text.contains("store-003                (nobody)"), "{text}");
        assert_eq!(
            render(&[], &[]),
            "no hub node has joined this database yet\n\nno stores yet\n"
        );
    }
}
