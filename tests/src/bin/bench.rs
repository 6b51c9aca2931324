//! Benchmarks that write their numbers to BENCHMARKS.md by hand.
//!
//! `cargo run -p tests --release --bin bench -- load` measures opening a
//! replica holding a year of daily lists, as a store and as the agent does
//! it (see `tests::load_bench`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tests::load_bench::{self, Sizes};

#[derive(Parser)]
#[command(about = "Benchmarks of the sync engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open, load and read a replica holding DAYS x LISTS daily lists,
    /// compacted and as bare change rows, and open it as the agent does
    /// (only its working set).
    Load(LoadArgs),
}

#[derive(clap::Args)]
struct LoadArgs {
    #[arg(long, default_value_t = Sizes::YEAR.days)]
    days: u32,
    #[arg(long, default_value_t = Sizes::YEAR.lists)]
    lists: u32,
    /// Tasks per list.
    #[arg(long, default_value_t = Sizes::YEAR.tasks)]
    tasks: usize,
    /// Status events per task.
    #[arg(long, default_value_t = Sizes::YEAR.events)]
    events: usize,
    /// Timed runs of each measurement.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Replica file to build (kept, with a `.changes-only` sibling), or to
    /// measure as it is if it exists. Default: a temporary directory.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Tiny sizes and two runs: checks the benchmark works, measures nothing useful.
    #[arg(long)]
    smoke: bool,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Load(args) => load(args),
    }
}

fn load(args: LoadArgs) -> Result<()> {
    let (sizes, runs) = if args.smoke {
        (Sizes::SMOKE, 2)
    } else {
        let sizes = Sizes {
            days: args.days,
            lists: args.lists,
            tasks: args.tasks,
            events: args.events,
        };
        (sizes, args.runs)
    };
    let temp;
    let db = match args.db {
        Some(db) => db,
        None => {
            temp = tempfile::tempdir().context("creating a temporary directory")?;
            temp.path().join("replica.sqlite3")
        }
    };
    let report = load_bench::run(&db, sizes, runs)?;
    println!("{report}");
    Ok(())
}
