//! The `hub` command line: `serve` runs the hub; every other command calls
//! a running hub's admin API (each takes `--json`; the hub URL and admin
//! token come from flags or `HUB_URL` / `HUB_TOKEN`). One module per
//! command group; `remote` is what they share.

mod accounts;
mod cluster;
mod groups;
mod lists;
mod remote;
mod report;
mod serve;
mod status;
mod stores;
mod workers;

use clap::{Parser, Subcommand};

pub use groups::{groups, GroupsCmd};
pub use lists::{lists, ListsCmd};
pub use remote::Remote;
pub use serve::{serve, ServeArgs};
pub use status::{purge, status};
pub use stores::{stores, StoresCmd};
pub use workers::{workers, WorkersCmd};

// The command line; its `about` is the text below (a doc comment would
// become its long help).
#[derive(Parser, Debug)]
#[command(
    name = "hub",
    about = "HQ hub for store task lists: sync server, admin API and CLI"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

// One `hub` command.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the hub: WebSocket sync at /sync, admin API under /api/.
    Serve(ServeArgs),
    /// Manage stores and their tokens.
    Stores {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        cmd: StoresCmd,
    },
    /// Status by store (lists x stores with counts) or by worker, or past-due tasks.
    Status {
        #[command(flatten)]
        remote: Remote,
        #[arg(long, default_value = "store")]
        by: String,
        #[arg(long)]
        store: Option<String>,
        #[arg(long)]
        worker: Option<String>,
        /// Open tasks whose due time has passed, most overdue first (instead of --by).
        #[arg(long)]
        past_due: bool,
    },
    /// The compliance report: the share of tasks completed on time, by
    /// store, group, list or worker, over lists dated FROM to TO.
    Report {
        #[command(flatten)]
        remote: Remote,
        /// First list date (store-local), YYYY-MM-DD.
        #[arg(long)]
        from: String,
        /// Last list date (store-local, inclusive), YYYY-MM-DD.
        #[arg(long)]
        to: String,
        /// One row per store, group, list or worker.
        #[arg(long, default_value = "store", value_parser = ["store", "group", "list", "worker"])]
        by: String,
        /// Print CSV with a header row (instead of a table; --json prints JSON).
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// Bulk delete old lists: counts first (dry run) unless --yes.
    Purge {
        #[command(flatten)]
        remote: Remote,
        /// Lists dated before this store-local date, YYYY-MM-DD.
        #[arg(long)]
        before: Option<String>,
        #[arg(long)]
        store: Option<String>,
        /// Only lists with this name.
        #[arg(long)]
        list: Option<String>,
        /// Only lists whose every task is completed.
        #[arg(long)]
        completed: bool,
        /// Really delete (without it, only count).
        #[arg(long)]
        yes: bool,
    },
    /// A store's workers and roles (its terminals sign them in by PIN).
    Workers {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        cmd: WorkersCmd,
    },
    /// Store groups (region, format, ...) that lists can be assigned to.
    Groups {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        cmd: GroupsCmd,
    },
    /// Publish task lists.
    Lists {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        cmd: ListsCmd,
    },
    /// A cluster of hub nodes on PostgreSQL: its nodes and store leases.
    Cluster {
        #[command(subcommand)]
        cmd: cluster::ClusterCmd,
    },
    /// HQ accounts: roles (admin, editor, viewer) and scopes (store groups).
    Users {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        cmd: accounts::UsersCmd,
    },
    /// Sign in: the password from standard input; saves a personal token
    /// the other commands use.
    Login {
        #[command(flatten)]
        remote: Remote,
        #[arg(long)]
        user: String,
        /// What the token is for (e.g. "laptop").
        #[arg(long)]
        label: Option<String>,
    },
    /// Personal API tokens: list and revoke.
    Tokens {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        cmd: accounts::TokensCmd,
    },
    /// What HQ did, newest first (admins).
    Audit {
        #[command(flatten)]
        remote: Remote,
        /// From this time: RFC 3339, YYYY-MM-DD or unix ms.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Copy a stopped hub's data (DATA/hub.db) into an empty PostgreSQL
    /// database, to run it as `hub serve --database URL` from then on.
    CopyToPostgres {
        /// The hub's data directory, as given to `hub serve --data`.
        #[arg(long, default_value = "hub-data")]
        data: std::path::PathBuf,
        /// The PostgreSQL database to copy into (created tables, no data).
        #[arg(long, env = "HUB_DATABASE")]
        database: String,
    },
}

impl Cli {
    /// Whether this runs the server (rather than calling one).
    pub fn serves(&self) -> bool {
        matches!(self.cmd, Cmd::Serve(_))
    }

    /// Run the command.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.cmd {
            Cmd::Serve(args) => serve(args).await,
            Cmd::Stores { remote, cmd } => stores(&remote, cmd).await,
            Cmd::Lists { remote, cmd } => lists(&remote, cmd).await,
            Cmd::Cluster { cmd } => cluster::cluster(cmd).await,
            Cmd::Users { remote, cmd } => accounts::users(&remote, cmd).await,
            Cmd::Login {
                remote,
                user,
                label,
            } => accounts::login(&remote, user, label).await,
            Cmd::Tokens { remote, cmd } => accounts::tokens(&remote, cmd).await,
            Cmd::Audit {
                remote,
                since,
                user,
                limit,
            } => accounts::audit(&remote, since, user, limit).await,
            Cmd::CopyToPostgres { data, database } => {
                cluster::copy_to_postgres(&data, &database).await
            }
            Cmd::Workers { remote, cmd } => workers(&remote, cmd).await,
            Cmd::Groups { remote, cmd } => groups(&remote, cmd).await,
            Cmd::Purge {
                remote,
                before,
                store,
                list,
                completed,
                yes,
            } => purge(&remote, before, store, list, completed, !yes).await,
            Cmd::Report {
                remote,
                from,
                to,
                by,
                csv,
            } => report::report(&remote, &from, &to, &by, csv).await,
            Cmd::Status {
                remote,
                by,
                store,
                worker,
                past_due,
            } => status(&remote, &by, store, worker, past_due).await,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn serve_takes_its_limits_from_flags() {
        use clap::Parser;
        let cli = super::Cli::try_parse_from([
            "hub",
            "serve",
            "--max-cached-documents",
            "50000",
            "--horizon-days",
            "7",
            "--retention-days",
            "90",
            "--keepalive-secs",
            "5",
        ])
        .unwrap();
        let super::Cmd::Serve(super::ServeArgs {
            max_cached_documents,
            horizon_days,
            retention_days,
            keepalive_secs,
            ..
        }) = cli.cmd
        else {
            panic!("not serve");
        };
        assert_eq!(
            (
                max_cached_documents,
                horizon_days,
                retention_days,
                keepalive_secs
            ),
            (50_000, 7, Some(90), 5)
        );
        assert!(super::Cli::try_parse_from(["hub", "serve", "--horizon-days", "400"]).is_err());
        let cli = super::Cli::try_parse_from(["hub", "serve", "--max-connections-per-token", "4"])
            .unwrap();
        let super::Cmd::Serve(super::ServeArgs {
            max_connections_per_token,
            max_connections_per_store,
            ..
        }) = cli.cmd
        else {
            panic!("not serve");
        };
        assert_eq!(
            (max_connections_per_token, max_connections_per_store),
            (4, 32)
        );
        for zero in ["--max-connections-per-token", "--max-connections-per-store"] {
            let e = super::Cli::try_parse_from(["hub", "serve", zero, "0"]).unwrap_err();
            assert!(e.to_string().contains("1 or more"), "{e}");
        }
        assert!(super::Cli::try_parse_from(["hub", "serve", "--retention-days", "0"]).is_err());
    }
}
