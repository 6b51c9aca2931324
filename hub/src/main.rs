//! `hub`: serve the sync endpoint and admin API, or call a running hub.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use engine::replica::hub::HubLimits;
use hub::cli::{self, ListsCmd, Remote, StoresCmd};
use hub::cli_admin::{self, GroupsCmd, WorkersCmd};
use hub::connection_slots::ConnectionCaps;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// mimalloc instead of glibc's malloc: the replica thread frees what the
/// socket threads allocate (frames), the pattern glibc's per-thread arenas
/// handle worst; BENCHMARKS.md has the before and after.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "hub",
    about = "HQ hub for store task lists: sync server, admin API and CLI"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the hub: WebSocket sync at /sync, admin API under /api/.
    Serve {
        /// Data directory (created on first start).
        #[arg(long, env = "HUB_DATA", default_value = "./hub-data")]
        data: PathBuf,
        #[arg(long, env = "HUB_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// TOML file of these settings (keys are the flag names with
        /// underscores, e.g. `retention_days = 90`); flags and HUB_* win.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Register this admin token instead of minting one into DATA/admin-token.
        #[arg(long, env = "HUB_ADMIN_TOKEN")]
        admin_token: Option<String>,
        /// Largest WebSocket frame accepted, in bytes.
        #[arg(long, default_value_t = 16 * 1024 * 1024)]
        max_frame_bytes: usize,
        /// Sustained messages per second per connection.
        #[arg(long, default_value_t = 200)]
        max_messages_per_second: u32,
        /// Documents one connection may sync.
        #[arg(long, default_value_t = 10_000)]
        max_documents_per_connection: usize,
        /// Days ahead (store-local) that recurring lists are materialized
        /// and pushed, so terminals have them through an outage.
        #[arg(long, default_value_t = engine::replica::DEFAULT_HORIZON_DAYS,
              value_parser = clap::value_parser!(i64).range(0..=366))]
        horizon_days: i64,
        /// Delete lists dated more than this many days ago, at the hub and
        /// on the terminals (checked every minute). Default: keep all.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        retention_days: Option<i64>,
        /// Documents kept in memory; idle ones beyond this are evicted (and
        /// reloaded from SQLite when a terminal syncs them again).
        #[arg(long, default_value_t = 10_000)]
        max_cached_documents: usize,
        /// Ping every connection this often (seconds); one silent for three
        /// intervals is closed.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
        keepalive_secs: u64,
        /// Sync connections one token may hold open at once; more are
        /// refused with 429 (a terminal holds one, two or three while it
        /// reconnects after a network fault).
        #[arg(long, default_value_t = ConnectionCaps::default().per_token,
              value_parser = at_least_one)]
        max_connections_per_token: usize,
        /// Sync connections one store may hold open at once, over all its
        /// tokens; more are refused with 429.
        #[arg(long, default_value_t = ConnectionCaps::default().per_store,
              value_parser = at_least_one)]
        max_connections_per_store: usize,
    },
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
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = hub::config::expand_args(std::env::args_os().collect(), "HUB_", |k| {
        std::env::var(k).ok()
    })?;
    let cli = Cli::parse_from(args);
    if !matches!(cli.cmd, Cmd::Serve { .. }) {
        quiet_on_closed_stdout();
    }
    match cli.cmd {
        Cmd::Serve {
            config: _,
            data,
            listen,
            admin_token,
            max_frame_bytes,
            max_messages_per_second,
            max_documents_per_connection,
            horizon_days,
            retention_days,
            keepalive_secs,
            max_cached_documents,
            max_connections_per_token,
            max_connections_per_store,
        } => {
            let mut limits = HubLimits {
                horizon_days,
                retention_days,
                keepalive_secs,
                max_cached_documents,
                ..HubLimits::default()
            };
            limits.wire.max_message_bytes = max_frame_bytes;
            limits.messages_per_second = max_messages_per_second;
            limits.max_documents_per_connection = max_documents_per_connection;
            // Bind first: a start that fails here (the address is in use)
            // must not create the data directory and mint the admin token,
            // or the start that works would not say where the token is.
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            let opened = hub::data_dir::open(&data, limits, admin_token.as_deref())?;
            let state = opened.state.with_connection_caps(ConnectionCaps {
                per_token: max_connections_per_token,
                per_store: max_connections_per_store,
            });
            let addr = listener.local_addr()?;
            println!("hub listening on http://{addr} (sync: ws://{addr}/sync, admin API: http://{addr}/api/)");
            if opened.new_admin_token.is_some() {
                println!(
                    "admin token written to {}",
                    opened.admin_token_file.display()
                );
            }
            let shutdown = CancellationToken::new();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                info!("shutting down");
                stop.cancel();
            });
            hub::server::run(listener, state, shutdown).await
        }
        Cmd::Stores { remote, cmd } => cli::stores(&remote, cmd).await,
        Cmd::Lists { remote, cmd } => cli::lists(&remote, cmd).await,
        Cmd::Workers { remote, cmd } => cli_admin::workers(&remote, cmd).await,
        Cmd::Groups { remote, cmd } => cli_admin::groups(&remote, cmd).await,
        Cmd::Purge {
            remote,
            before,
            store,
            list,
            completed,
            yes,
        } => cli::purge(&remote, before, store, list, completed, !yes).await,
        Cmd::Status {
            remote,
            by,
            store,
            worker,
            past_due,
        } => cli::status(&remote, &by, store, worker, past_due).await,
    }
}

/// A cap of at least one connection (0 would lock every terminal out).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not a number of connections, 1 or more")),
    }
}

/// Let a write to a closed stdout end the process quietly, as it does for
/// other command-line tools (`... | head`). Rust ignores SIGPIPE, so the
/// write failed instead and `println!` panicked. Not for a server: its
/// sockets report a closed peer as an error, never by this signal.
fn quiet_on_closed_stdout() {
    // SAFETY: sets one signal's action back to the default; no handler
    // is installed, so no Rust code runs in a signal context.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
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
        let super::Cmd::Serve {
            max_cached_documents,
            horizon_days,
            retention_days,
            keepalive_secs,
            ..
        } = cli.cmd
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
        let super::Cmd::Serve {
            max_connections_per_token,
            max_connections_per_store,
            ..
        } = cli.cmd
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
