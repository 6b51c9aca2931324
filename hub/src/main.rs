//! `hub`: serve the sync endpoint and admin API, or call a running hub.
//! The command line itself lives in `hub::cli`; this file sets up the
//! process (allocator, logging, SIGPIPE) and runs it.

use clap::Parser;
use hub::cli::Cli;

/// mimalloc instead of glibc's malloc: the replica thread frees what the
/// socket threads allocate (frames), the pattern glibc's per-thread arenas
/// handle worst; BENCHMARKS.md has the before and after.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    if !cli.serves() {
        quiet_on_closed_stdout();
    }
    cli.run().await
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
