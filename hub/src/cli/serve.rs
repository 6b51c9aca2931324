//! `hub serve`: run the hub on a data directory until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use engine::replica::hub::HubLimits;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::connection_slots::ConnectionCaps;

// The flags of `hub serve` (its help text is the doc of `Cmd::Serve`).
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Data directory (created on first start).
    #[arg(long, env = "HUB_DATA", default_value = "./hub-data")]
    pub data: PathBuf,
    #[arg(long, env = "HUB_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Keep the hub's data in PostgreSQL instead of DATA/hub.db:
    /// `postgres://USER:PASSWORD@HOST:PORT/DB`. Hub nodes that share a
    /// database form a cluster (see docs/operations.md).
    #[arg(long, env = "HUB_DATABASE")]
    pub database: Option<String>,
    /// Run as node NAME of a cluster of hubs sharing --database (letters,
    /// digits, - and _; unique per node and stable across restarts). Each
    /// store is served by one node at a time, under a lease. Without it,
    /// this hub is the database's only one.
    #[arg(long, env = "HUB_NODE", value_parser = node_name)]
    pub node: Option<String>,
    /// The sync URL terminals are sent to for the stores this node serves
    /// (cluster nodes only). Default: ws://LISTEN/sync.
    #[arg(long, env = "HUB_ADVERTISE")]
    pub advertise: Option<String>,
    /// Replica threads of a cluster node, each with its own database
    /// connection and its share of the node's stores (cluster nodes only;
    /// the embedded database has one writer). Default: the machine's
    /// cores, at most 8.
    #[arg(long, env = "HUB_REPLICA_THREADS", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub replica_threads: Option<u16>,
    /// TOML file of these settings (keys are the flag names with
    /// underscores, e.g. `retention_days = 90`); flags and HUB_* win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Register this admin token instead of minting one into DATA/admin-token.
    #[arg(long, env = "HUB_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Largest WebSocket frame accepted, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_frame_bytes: usize,
    /// Sustained messages per second per connection.
    #[arg(long, default_value_t = 200)]
    pub max_messages_per_second: u32,
    /// Documents one connection may sync.
    #[arg(long, default_value_t = 10_000)]
    pub max_documents_per_connection: usize,
    /// Days ahead (store-local) that recurring lists are materialized
    /// and pushed, so terminals have them through an outage.
    #[arg(long, default_value_t = engine::replica::DEFAULT_HORIZON_DAYS,
          value_parser = clap::value_parser!(i64).range(0..=366))]
    pub horizon_days: i64,
    /// Delete lists dated more than this many days ago, at the hub and
    /// on the terminals (checked every minute). Default: keep all.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    pub retention_days: Option<i64>,
    /// Documents kept in memory; idle ones beyond this are evicted (and
    /// reloaded from SQLite when a terminal syncs them again).
    #[arg(long, default_value_t = 10_000)]
    pub max_cached_documents: usize,
    /// Ping every connection this often (seconds); one silent for three
    /// intervals is closed.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub keepalive_secs: u64,
    /// Sync connections one token may hold open at once; more are
    /// refused with 429 (a terminal holds one, two or three while it
    /// reconnects after a network fault).
    #[arg(long, default_value_t = ConnectionCaps::default().per_token,
          value_parser = at_least_one)]
    pub max_connections_per_token: usize,
    /// Sync connections one store may hold open at once, over all its
    /// tokens; more are refused with 429.
    #[arg(long, default_value_t = ConnectionCaps::default().per_store,
          value_parser = at_least_one)]
    pub max_connections_per_store: usize,
}

/// Serve until a signal says stop.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let ServeArgs {
        config: _,
        data,
        listen,
        database,
        node,
        advertise,
        replica_threads,
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
    } = args;
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
    let database = match database {
        None => {
            if node.is_some() || advertise.is_some() || replica_threads.is_some() {
                anyhow::bail!(
                    "--node, --advertise and --replica-threads are for a node of a PostgreSQL \
                     cluster: give --database too"
                );
            }
            crate::data_dir::Database::Sqlite
        }
        Some(url) => crate::data_dir::Database::Postgres {
            url,
            cluster: match node {
                None if advertise.is_some() || replica_threads.is_some() => {
                    anyhow::bail!(
                        "--advertise and --replica-threads are for a cluster node: give --node too"
                    )
                }
                None => None,
                Some(node) => Some(crate::data_dir::Member {
                    node,
                    address: match advertise {
                        Some(a) => a,
                        None => format!("ws://{}/sync", listener.local_addr()?),
                    },
                    replica_threads: replica_threads
                        .map_or_else(default_replica_threads, usize::from),
                }),
            },
        },
    };
    // Blocking: the PostgreSQL backend drives its connection with a
    // runtime of its own, which cannot start inside this one.
    let opened = tokio::task::spawn_blocking(move || {
        crate::data_dir::open(&data, limits, admin_token.as_deref(), &database)
    })
    .await??;
    let state = opened.state.with_connection_caps(ConnectionCaps {
        per_token: max_connections_per_token,
        per_store: max_connections_per_store,
    });
    let addr = listener.local_addr()?;
    println!(
        "hub listening on http://{addr} (sync: ws://{addr}/sync, admin API: http://{addr}/api/)"
    );
    if opened.new_admin_token.is_some() {
        println!(
            "admin token written to {}",
            opened.admin_token_file.display()
        );
    }
    if let Some(file) = &opened.setup_secret_file {
        println!(
            "first HQ account: {}; its one-time setup secret is in {} \
             (`hub login --user {}` asks for it and for a new password)",
            crate::data_dir::FIRST_ADMIN,
            file.display(),
            crate::data_dir::FIRST_ADMIN
        );
    }
    let shutdown = CancellationToken::new();
    if let Some(node) = opened.cluster {
        println!(
            "cluster node {} (terminals sent to {})",
            node.node, node.address
        );
        tokio::spawn(crate::cluster::share_links_loop(
            node.clone(),
            state.hub.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(crate::cluster::run(
            node,
            state.hub.clone(),
            shutdown.clone(),
        ));
    }
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down");
        stop.cancel();
    });
    crate::server::run(listener, state, shutdown).await
}

/// A cluster node's replica threads unless told: one per core, at most 8.
fn default_replica_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// A node name: 1 to 64 of letters, digits, `-` and `_`.
fn node_name(s: &str) -> Result<String, String> {
    let ok = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a node name: use 1 to 64 letters, digits, - or _"
        ))
    }
}

/// A cap of at least one connection (0 would lock every terminal out).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not a number of connections, 1 or more")),
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
