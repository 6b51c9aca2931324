//! `pos-agent`: run a terminal's replica, or script it through its local API.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pos_agent::cli::{self, Local};
use pos_agent::sync_client::{self, Backoff};
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
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the agent: local replica, hub sync, local API.
    Run {
        #[arg(long, env = "POS_AGENT_DATA", default_value = "./agent-data")]
        data: PathBuf,
        /// The hub's sync endpoint, e.g. ws://hub.example:8080/sync.
        #[arg(long, env = "POS_AGENT_HUB")]
        hub: String,
        /// This store's token (from `hub stores token`).
        #[arg(long, env = "POS_AGENT_TOKEN", hide_env_values = true)]
        token: String,
        /// The store id (needed on first start; remembered after).
        #[arg(long, env = "POS_AGENT_STORE")]
        store: Option<String>,
        /// This terminal's id, recorded on every status change.
        #[arg(long, env = "POS_AGENT_TERMINAL", default_value = "pos-1")]
        terminal: String,
        /// Local API address (loopback by default).
        #[arg(long, env = "POS_AGENT_HTTP", default_value = "127.0.0.1:7878")]
        http: SocketAddr,
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
    /// Assign a task: --to worker:<id> or group:<id>; omit to unassign.
    Assign {
        task: String,
        #[arg(long)]
        to: Option<String>,
    },
    /// Online/offline, unconfirmed changes, rejections.
    SyncStatus,
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
    let local = Local {
        url: cli.agent_url,
        json: cli.json,
    };
    match cli.cmd {
        Cmd::Run {
            data,
            hub,
            token,
            store,
            terminal,
            http,
        } => {
            let terminal = pos_agent::agent::open(&data, store.as_deref(), terminal.parse()?)?;
            let shutdown = CancellationToken::new();
            let listener = tokio::net::TcpListener::bind(http)
                .await
                .with_context(|| format!("listening on {http}"))?;
            println!(
                "pos-agent for store {} listening on http://{} (hub: {hub})",
                terminal.store,
                listener.local_addr()?
            );
            let sync = tokio::spawn(sync_client::run(
                hub,
                token,
                terminal.handle.clone(),
                Backoff::default(),
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
            let app = pos_agent::api::router(terminal);
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
        Cmd::Assign { task, to } => cli::assign(&local, &task, to).await,
        Cmd::SyncStatus => cli::sync_status(&local).await,
    }
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
