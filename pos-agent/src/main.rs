//! `pos-agent`: run a terminal's replica, or script it through its local API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pos_agent::cli::{self, Local};
use pos_agent::sync_client::{self, Backoff, Keepalive};
use tokio_util::sync::CancellationToken;
use tracing::info;

#[derive(Parser, Debug)]
#[command(
    name = "pos-agent",
    about = "Store terminal agent: task lists that work offline"
)]
struct Cli {
    /// The local API of a running agent (for the commands other than `run`).
    #[arg(
        long,
        global = true,
        env = "POS_AGENT_URL",
        default_value = "http://127.0.0.1:7878"
    )]
    agent_url: String,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Sign in as this worker first (manager commands: assign, add, conflicts).
    #[arg(long = "as", global = true, env = "POS_AGENT_WORKER")]
    as_worker: Option<String>,
    /// The PIN for --as; without --as, the PIN of --worker, for a terminal
    /// run with --require-pin-for-cli.
    #[arg(long, global = true, env = "POS_AGENT_PIN", hide_env_values = true)]
    pin: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once at start: `Run`'s size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the agent: local replica, hub sync, local API.
    Run {
        #[arg(long, env = "POS_AGENT_DATA", default_value = "./agent-data")]
        data: PathBuf,
        /// The hub's sync endpoint, e.g. ws://hub.example:8080/sync.
        #[arg(long, env = "POS_AGENT_HUB")]
        hub: String,
        /// This store's token (from `hub stores token`). Prefer the
        /// environment or --token-file: a flag shows in `ps`.
        #[arg(long, env = "POS_AGENT_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// A file holding this store's token (one line).
        #[arg(long, env = "POS_AGENT_TOKEN_FILE", conflicts_with = "token")]
        token_file: Option<PathBuf>,
        /// Status changes and claims from the command line (or any local
        /// program) need the worker's PIN: `--worker W --pin P`. Without
        /// it anyone who can reach the local API records work under any
        /// roster worker's name.
        #[arg(long, env = "POS_AGENT_REQUIRE_PIN_FOR_CLI")]
        require_pin_for_cli: bool,
        /// The POS's URL for a task's `pos:<operation>` link: when a worker
        /// opens one, the agent POSTs {"type": "pos-operation",
        /// "operation", "task", "title", "worker", "terminal"} there.
        #[arg(long, env = "POS_AGENT_POS_CALLBACK")]
        pos_callback: Option<reqwest::Url>,
        /// The store id (needed on first start; remembered after).
        #[arg(long, env = "POS_AGENT_STORE")]
        store: Option<String>,
        /// This terminal's id, recorded on every status change.
        #[arg(long, env = "POS_AGENT_TERMINAL", default_value = "pos-1")]
        terminal: String,
        /// Local API address (loopback by default).
        #[arg(long, env = "POS_AGENT_HTTP", default_value = "127.0.0.1:7878")]
        http: SocketAddr,
        /// Tasks due within this many minutes show as upcoming.
        #[arg(long, env = "POS_AGENT_NOTIFY_WINDOW", default_value_t = 30)]
        notify_window: i64,
        /// The store's IANA time zone (default: the zone of its newest list).
        #[arg(long, env = "POS_AGENT_TIME_ZONE")]
        time_zone: Option<String>,
        /// Ping the hub this often (seconds); a link silent for three
        /// intervals is replaced.
        #[arg(long, env = "POS_AGENT_KEEPALIVE_SECS", default_value_t = 15,
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        keepalive_secs: u64,
        /// Another terminal of this store to sync with directly, e.g.
        /// ws://10.0.0.12:7879/lan (its --peer-listen address); repeat for
        /// each. Works with the hub down; the store token never crosses.
        #[arg(long = "peer", env = "POS_AGENT_PEERS", value_delimiter = ',')]
        peers: Vec<String>,
        /// Where this terminal accepts the store's other terminals, e.g.
        /// 0.0.0.0:7879 (off by default; they must hold the store token).
        #[arg(long, env = "POS_AGENT_PEER_LISTEN")]
        peer_listen: Option<SocketAddr>,
    },
    /// List tasks on this terminal.
    Tasks,
    /// Mark a task in progress.
    Start {
        task: String,
        #[arg(long)]
        worker: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Mark a task completed.
    Complete {
        task: String,
        #[arg(long)]
        worker: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Reopen a completed task.
    Reopen {
        task: String,
        #[arg(long)]
        worker: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Take a group task: it becomes the worker's own.
    Claim {
        task: String,
        #[arg(long)]
        worker: String,
    },
    /// Assign a task (manager, with --as/--pin): --to <worker id>,
    /// worker:<id> or group:<id>; omit to unassign.
    Assign {
        task: String,
        #[arg(long)]
        to: Option<String>,
    },
    /// Add a single task or an ad-hoc list (manager, with --as/--pin).
    #[command(subcommand)]
    Add(Add),
    /// Upcoming and past-due tasks, and the pending count.
    Notifications {
        /// Minutes ahead that count as upcoming.
        #[arg(long)]
        window: Option<i64>,
        /// Only this worker's tasks (theirs and their groups').
        #[arg(long)]
        worker: Option<String>,
    },
    /// The store's roster (names, roles, groups).
    Workers,
    /// Conflicts waiting for a decision (manager, with --as/--pin).
    Conflicts,
    /// Online/offline, unconfirmed changes, rejections.
    SyncStatus,
}

#[derive(Subcommand, Debug)]
enum Add {
    /// A single task in an existing list.
    Task {
        title: String,
        /// The list's id (see `pos-agent tasks --json`).
        #[arg(long)]
        list: String,
        /// Due time, HH:MM store time on the list's date.
        #[arg(long)]
        due: Option<String>,
        /// worker:<id>, group:<id> or a worker id.
        #[arg(long)]
        to: Option<String>,
        /// pos:<operation> or an http(s) URL.
        #[arg(long)]
        link: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// An ad-hoc list of this store, with its tasks.
    List {
        name: String,
        /// YYYY-MM-DD (default: today, store time).
        #[arg(long)]
        date: Option<String>,
        /// A task: "Title" or "Title@HH:MM"; repeat for more.
        #[arg(long = "task")]
        tasks: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // `--as` signs in for the call; without it, a `--pin` is the PIN of
    // the worker the command names (`complete TASK --worker W --pin P`).
    let named = match &cli.cmd {
        Cmd::Start { worker, .. }
        | Cmd::Complete { worker, .. }
        | Cmd::Reopen { worker, .. }
        | Cmd::Claim { worker, .. } => Some(worker.clone()),
        _ => None,
    };
    let signer = match (cli.as_worker, &cli.pin) {
        (Some(w), _) => Some(w),
        (None, Some(_)) => named,
        (None, None) => None,
    };
    let local = Local {
        url: cli.agent_url,
        json: cli.json,
        sign_in: signer.map(|w| (w, cli.pin.unwrap_or_default())),
    };
    if !matches!(cli.cmd, Cmd::Run { .. }) {
        quiet_on_closed_stdout();
    }
    match cli.cmd {
        Cmd::Run {
            data,
            hub,
            token,
            token_file,
            require_pin_for_cli,
            pos_callback,
            store,
            terminal,
            http,
            notify_window,
            time_zone,
            keepalive_secs,
            peers,
            peer_listen,
        } => {
            let api_cfg = pos_agent::api::ApiConfig {
                notify_window_minutes: notify_window,
                time_zone: time_zone
                    .map(|z| {
                        z.parse::<chrono_tz::Tz>().map_err(|_| {
                            anyhow::anyhow!(
                                "--time-zone {z:?} is not an IANA zone such as Europe/Berlin"
                            )
                        })
                    })
                    .transpose()?,
                cli_needs_pin: require_pin_for_cli,
                pos_callback,
            };
            let token = store_token(token, token_file.as_deref())?;
            anyhow::ensure!(
                (1..=1440).contains(&notify_window),
                "--notify-window is minutes, from 1 to 1440"
            );
            for url in &peers {
                anyhow::ensure!(
                    url.starts_with("ws://") || url.starts_with("wss://"),
                    "--peer {url:?} is not a WebSocket URL such as ws://10.0.0.12:7879/lan"
                );
            }
            let terminal = pos_agent::agent::open(&data, store.as_deref(), terminal.parse()?)?;
            let shutdown = CancellationToken::new();
            let listener = tokio::net::TcpListener::bind(http)
                .await
                .with_context(|| format!("listening on {http}"))?;
            let peer_listener = match peer_listen {
                Some(addr) => Some(
                    tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("listening for peer terminals on {addr}"))?,
                ),
                None => None,
            };
            let lan_addr = match &peer_listener {
                Some(l) => format!(", peers at ws://{}/lan", l.local_addr()?),
                None => String::new(),
            };
            println!(
                "pos-agent for store {} listening on http://{} (hub: {hub}{lan_addr})",
                terminal.store,
                listener.local_addr()?
            );
            let keepalive = Keepalive::every(Duration::from_secs(keepalive_secs));
            if peer_listener.is_some() || !peers.is_empty() {
                let mut lan = pos_agent::lan::LanConfig::new(
                    engine::protocol::peer_auth::PeerKey::derive(&token, &terminal.store),
                );
                lan.keepalive = keepalive;
                let lan = std::sync::Arc::new(lan);
                if let Some(l) = peer_listener {
                    tokio::spawn(pos_agent::lan::serve(
                        l,
                        lan.clone(),
                        terminal.handle.clone(),
                        shutdown.clone(),
                    ));
                }
                for url in peers {
                    tokio::spawn(pos_agent::lan::dial(
                        url,
                        lan.clone(),
                        terminal.handle.clone(),
                        Backoff::default(),
                        shutdown.clone(),
                    ));
                }
            }
            let sync = tokio::spawn(sync_client::run(
                hub,
                token,
                terminal.handle.clone(),
                Backoff::default(),
                keepalive,
                shutdown.clone(),
            ));
            let stop = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                info!("shutting down");
                stop.cancel();
            });
            tokio::spawn(materialize_on_a_timer(
                terminal.handle.clone(),
                shutdown.clone(),
            ));
            tokio::spawn(compact_on_a_timer(
                terminal.handle.clone(),
                shutdown.clone(),
            ));
            let app = pos_agent::api::router_with(terminal, api_cfg);
            let stop = shutdown.clone();
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await?;
            let _ = sync.await;
            Ok(())
        }
        Cmd::Tasks => cli::tasks(&local).await,
        Cmd::Start { task, worker, note } => {
            cli::set_status(&local, &task, "in_progress", &worker, note).await
        }
        Cmd::Complete { task, worker, note } => {
            cli::set_status(&local, &task, "completed", &worker, note).await
        }
        Cmd::Reopen { task, worker, note } => {
            cli::set_status(&local, &task, "reopened", &worker, note).await
        }
        Cmd::Claim { task, worker } => cli::claim(&local, &task, &worker).await,
        Cmd::Assign { task, to } => cli::assign(&local, &task, to).await,
        Cmd::Add(Add::Task {
            title,
            list,
            due,
            to,
            link,
            description,
        }) => {
            let task = serde_json::json!({"title": title, "due": due, "assignee": to,
                                          "link": link, "description": description});
            cli::add_task(&local, &list, task).await
        }
        Cmd::Add(Add::List { name, date, tasks }) => {
            cli::add_list(&local, &name, date.as_deref(), &tasks).await
        }
        Cmd::Notifications { window, worker } => {
            cli::notifications(&local, window, worker.as_deref()).await
        }
        Cmd::Workers => cli::workers(&local).await,
        Cmd::Conflicts => cli::conflicts(&local).await,
        Cmd::SyncStatus => cli::sync_status(&local).await,
    }
}

/// The store token from `--token` / `POS_AGENT_TOKEN`, or from the file
/// `--token-file` names.
fn store_token(token: Option<String>, file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let token = match (token, file) {
        (Some(t), _) => t,
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the store token from {}", f.display()))?,
        (None, None) => anyhow::bail!(
            "no store token: set POS_AGENT_TOKEN or pass --token-file FILE (from `hub stores token`)"
        ),
    };
    let token = token.trim().to_owned();
    anyhow::ensure!(
        !token.is_empty(),
        "the store token is empty; put the output of `hub stores token` there"
    );
    Ok(token)
}

/// While the hub is away for days, keep today's and tomorrow's recurring
/// lists coming from the templates the directory holds.
async fn materialize_on_a_timer(
    handle: pos_agent::runtime::AgentHandle,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(300));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let r = handle
            .call(|a, now| match a.materialize_offline(now, 1) {
                Ok(out) => (Ok(()), out),
                Err(e) => (Err(e), Vec::new()),
            })
            .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "offline materialization failed"),
            Err(_) => return,
        }
    }
}

/// Fold busy lists' change rows into snapshots a few at a time, so the
/// terminal keeps opening fast however many taps a list collects.
async fn compact_on_a_timer(handle: pos_agent::runtime::AgentHandle, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match handle
            .call(|a, _| (a.compact_storage(32, 10), Vec::new()))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "compaction failed; retrying later"),
            Err(_) => return,
        }
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
}
