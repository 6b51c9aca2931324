//! Benchmarks whose numbers go in BENCHMARKS.md.
//!
//! `cargo run -p tests --release --bin bench -- load` measures opening a
//! replica holding a year of daily lists, as a store and as the agent does
//! it (see `tests::load_bench`).
//!
//! `cargo run -p tests --release --bin bench -- net` runs the network
//! workloads (reconnect storm, publish fan-out, steady state, memory)
//! against the `hub` binary and the JS automerge-repo sync server, and
//! `-- agent` the terminal's local update latency (see `tests::netbench`).
//!
//! `-- lan` times a tap on one terminal until it shows on the store's
//! other terminals over the LAN with the hub stopped, with real `hub` and
//! `pos-agent` processes (see `tests::lan_bench`).
//!
//! Each takes `--record [FILE]` to append its table, with the command, the
//! machine and the commit, to BENCHMARKS.md (`tests::bench_record`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tests::bench_record::{self, Machine};
use tests::load_bench::{self, Sizes};
use tests::netbench::{self, agent_latency, server::Kind, server::Programs};

/// mimalloc, as in the hub: with glibc's malloc, allocating and freeing was
/// about a fifth of the load generator's CPU in the reconnect storm, and the
/// generator shares this machine's two cores with the server it measures
/// (either server: the hub and the JS baseline gain alike).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Our hub and the JS automerge-repo sync server under the same load:
    /// reconnect storm, HQ publish fan-out, steady state, memory.
    Net(NetArgs),
    /// A terminal's replica with DAYS x LISTS daily lists: cold start and
    /// local status update latency (durable write included).
    Agent(AgentArgs),
    /// The hub's storage on its hot path (group commits of changes with
    /// their sync states), embedded SQLite and PostgreSQL side by side.
    Storage(StorageArgs),
    /// A tap on one terminal until the store's other terminals show it,
    /// over the LAN with the hub stopped: p50 and p99, for each count of
    /// terminals (real pos-agent processes on loopback).
    Lan(LanArgs),
}

#[derive(clap::Args)]
struct LanArgs {
    /// Counts of terminals, comma-separated, one run each.
    #[arg(long, default_value = "3,10", value_delimiter = ',')]
    terminals: Vec<usize>,
    /// Taps per run.
    #[arg(long, default_value_t = 300)]
    taps: usize,
    /// Tasks on the store's list.
    #[arg(long, default_value_t = 10)]
    tasks: usize,
    /// The `hub` and `pos-agent` binaries' directory (default: this
    /// one's; build them with `cargo build -p hub -p pos-agent --release`).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Keep data directories and logs here (default: a temporary
    /// directory, removed at the end).
    #[arg(long)]
    work: Option<PathBuf>,
    /// 3 terminals, a few taps: checks the benchmark works; not recorded.
    #[arg(long)]
    smoke: bool,
    #[command(flatten)]
    record: RecordArg,
}

#[derive(clap::Args)]
struct StorageArgs {
    /// Stores, one list each.
    #[arg(long, default_value_t = 1_000)]
    stores: usize,
    /// Group commits measured.
    #[arg(long, default_value_t = 2_000)]
    commits: usize,
    /// Changes per group commit (the hub batches frames of many stores).
    #[arg(long, default_value_t = 16)]
    per_batch: usize,
    /// A few commits only, to check the command works; not recorded.
    #[arg(long)]
    smoke: bool,
    #[command(flatten)]
    record: RecordArg,
}

#[derive(clap::Args)]
struct NetArgs {
    #[arg(long, default_value_t = netbench::Sizes::DEFAULT.stores)]
    stores: usize,
    /// Instance lists per store.
    #[arg(long, default_value_t = netbench::Sizes::DEFAULT.lists)]
    lists: usize,
    /// Tasks per list.
    #[arg(long, default_value_t = netbench::Sizes::DEFAULT.tasks)]
    tasks: usize,
    /// Storm: status changes per list per store made offline.
    #[arg(long, default_value_t = netbench::Sizes::DEFAULT.changes)]
    changes: usize,
    /// Steady state: duration in seconds.
    #[arg(long, default_value_t = netbench::Sizes::DEFAULT.steady_secs)]
    steady_secs: u64,
    /// Steady state: status changes per store per second.
    #[arg(long, default_value_t = netbench::Sizes::DEFAULT.steady_rate)]
    steady_rate: f64,
    /// Memory: stores per step.
    #[arg(long, default_value_t = netbench::Sizes::DEFAULT.memory_batch)]
    memory_batch: usize,
    /// Which servers, comma-separated, run in this order: hub (embedded
    /// SQLite), hub-pg (one node on PostgreSQL), hub-pg3 (three nodes on
    /// PostgreSQL), baseline (the JS sync server), or both (hub,baseline).
    #[arg(long, default_value = "both")]
    servers: String,
    /// The `hub` binary (default: next to this one; build it with
    /// `cargo build -p hub --release`).
    #[arg(long)]
    hub_bin: Option<PathBuf>,
    /// The hub fixture (stores, tokens, lists) is cached here between runs.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// An extra argument for `hub serve`, e.g.
    /// `--hub-arg=--max-cached-documents=40000`; repeat for more.
    #[arg(long = "hub-arg", allow_hyphen_values = true)]
    hub_args: Vec<String>,
    /// Keep data directories and server logs here (default: a temporary
    /// directory, removed at the end).
    #[arg(long)]
    work: Option<PathBuf>,
    /// Tiny sizes: checks the benchmark works, measures nothing useful.
    #[arg(long)]
    smoke: bool,
    #[command(flatten)]
    record: RecordArg,
}

/// `--record [FILE]`: append the table to BENCHMARKS.md (the workspace's,
/// or FILE) with the command, the machine, the commit and the time.
#[derive(clap::Args)]
struct RecordArg {
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    record: Option<Option<PathBuf>>,
}

impl RecordArg {
    /// Where to record, checked before the run: a smoke run measures
    /// nothing worth keeping, and a missing file fails now, not after an
    /// hour of benchmark.
    fn target(&self, smoke: bool) -> Result<Option<PathBuf>> {
        let Some(file) = &self.record else {
            return Ok(None);
        };
        anyhow::ensure!(!smoke, "--smoke measures nothing; it is not recorded");
        let file = file.clone().unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md")
        });
        anyhow::ensure!(file.is_file(), "--record {}: no such file", file.display());
        Ok(Some(file))
    }
}

/// Append `report` to `file` (if recording) as run `what`.
fn record(file: Option<PathBuf>, what: &str, machine: Option<Machine>, report: &str) -> Result<()> {
    let (Some(file), Some(machine)) = (file, machine) else {
        return Ok(());
    };
    let command = bench_record::command_line(std::env::args());
    let section = bench_record::section(what, &command, &machine, chrono::Utc::now(), report);
    bench_record::append(&file, &section)?;
    eprintln!("recorded in {}", file.display());
    Ok(())
}

#[derive(clap::Args)]
struct AgentArgs {
    #[command(flatten)]
    replica: ReplicaArgs,
    /// Timed status updates.
    #[arg(long, default_value_t = 500)]
    updates: usize,
    #[command(flatten)]
    record: RecordArg,
}

#[derive(clap::Args)]
struct LoadArgs {
    #[command(flatten)]
    replica: ReplicaArgs,
    /// Timed runs of each measurement.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[command(flatten)]
    record: RecordArg,
}

/// The replica `load` and `agent` measure: a year of daily lists by default.
#[derive(clap::Args)]
struct ReplicaArgs {
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
    /// Replica file: built if missing and kept (`load` also keeps a
    /// `.changes-only` sibling), measured as it is if it exists. Default:
    /// a temporary directory.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Tiny sizes and few runs: checks the benchmark works, measures nothing useful.
    #[arg(long)]
    smoke: bool,
}

impl ReplicaArgs {
    fn sizes(&self) -> Sizes {
        if self.smoke {
            return Sizes::SMOKE;
        }
        Sizes {
            days: self.days,
            lists: self.lists,
            tasks: self.tasks,
            events: self.events,
        }
    }

    /// `--db`, or a file in a temporary directory kept alive in `temp`.
    fn db(&self, temp: &mut Option<tempfile::TempDir>) -> Result<PathBuf> {
        if let Some(db) = &self.db {
            return Ok(db.clone());
        }
        let dir = temp.insert(tempfile::tempdir().context("creating a temporary directory")?);
        Ok(dir.path().join("replica.sqlite3"))
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Load(args) => load(args),
        Command::Net(args) => net(args),
        Command::Agent(args) => agent(args),
        Command::Storage(args) => storage(args),
        Command::Lan(args) => lan(args),
    }
}

fn lan(args: LanArgs) -> Result<()> {
    use tests::lan_bench;
    let record_in = args.record.target(args.smoke)?;
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary's directory")?
            .to_path_buf(),
    };
    let programs = lan_bench::Programs {
        hub: bin_dir.join("hub"),
        pos_agent: bin_dir.join("pos-agent"),
    };
    for p in [&programs.hub, &programs.pos_agent] {
        anyhow::ensure!(
            p.exists(),
            "no {} ; build it (cargo build -p hub -p pos-agent --release) or pass --bin-dir",
            p.display()
        );
    }
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let work = match args.work {
        Some(w) => w,
        None => temp.path().to_path_buf(),
    };
    let opts = lan_bench::Options {
        programs,
        terminals: if args.smoke { vec![3] } else { args.terminals },
        taps: if args.smoke { 6 } else { args.taps },
        tasks: args.tasks,
        work,
    };
    let machine = record_in.is_some().then(|| Machine::here(false));
    let runtime = tokio::runtime::Runtime::new()?;
    let runs = runtime.block_on(lan_bench::run(&opts))?;
    let report = lan_bench::table(&runs);
    println!("{report}");
    record(record_in, "bench lan", machine, &report)
}

fn storage(args: StorageArgs) -> Result<()> {
    use tests::storage_bench;
    let record_in = args.record.target(args.smoke)?;
    let machine = record_in.is_some().then(|| Machine::here(false));
    let sizes = storage_bench::Sizes {
        stores: if args.smoke { 20 } else { args.stores },
        commits: if args.smoke { 20 } else { args.commits },
        per_batch: args.per_batch,
    };
    let mut runs = Vec::new();
    let dir = tempfile::tempdir()?;
    let mut sqlite = engine::storage::SqliteDatabase::open(
        dir.path().join("hub.db"),
        *uuid::Uuid::new_v4().as_bytes(),
    )?;
    runs.push(storage_bench::run(
        "embedded SQLite (WAL, synchronous=FULL)",
        &mut sqlite,
        sizes,
        &|| std::time::Duration::ZERO,
    )?);
    drop(sqlite);
    let server = hub::pg::testing::PgServer::start_durable()
        .context("PostgreSQL is not installed (apt-get install postgresql)")?;
    let url = server.new_database();
    let mut pg = hub::pg::PgDatabase::connect(&url, "bench", *uuid::Uuid::new_v4().as_bytes())?;
    let marker = server.dir().display().to_string();
    runs.push(storage_bench::run(
        "PostgreSQL on loopback (fsync on)",
        &mut pg,
        sizes,
        &|| storage_bench::cpu_of_server(&marker),
    )?);
    let report = storage_bench::table(sizes, &runs);
    println!("{report}");
    record(record_in, "bench storage", machine, &report)
}

/// Raise this process's open-file limit to at least `n` (its children,
/// the servers, inherit it), or say why the run cannot go on: at 10,000
/// stores the generator holds 20,000 sockets, and running out of them
/// fails a phase after minutes.
fn ensure_open_files(n: u64) -> Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            anyhow::bail!(
                "reading the open-file limit: {}",
                std::io::Error::last_os_error()
            );
        }
        if lim.rlim_cur >= n {
            return Ok(());
        }
        let want = libc::rlimit {
            rlim_cur: n,
            rlim_max: lim.rlim_max.max(n),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
            anyhow::bail!(
                "this run needs {n} open files and the limit is {} (hard {}): {}; raise it \
                 (ulimit -n {n}) or run fewer stores",
                lim.rlim_cur,
                lim.rlim_max,
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

fn net(args: NetArgs) -> Result<()> {
    let record_in = args.record.target(args.smoke)?;
    // Two terminals' sockets per store, and room for the rest.
    ensure_open_files(2 * args.stores as u64 + 1024)?;
    let sizes = if args.smoke {
        netbench::Sizes::SMOKE
    } else {
        netbench::Sizes {
            stores: args.stores,
            lists: args.lists,
            tasks: args.tasks,
            changes: args.changes,
            steady_secs: args.steady_secs,
            steady_rate: args.steady_rate,
            fanout_tasks: args.tasks,
            memory_batch: args.memory_batch,
        }
    };
    let servers = args
        .servers
        .split(',')
        .map(|name| {
            Ok(match name.trim() {
                "both" => vec![Kind::Hub, Kind::Baseline],
                "hub" => vec![Kind::Hub],
                "hub-pg" => vec![Kind::HubPg],
                "hub-pg3" => vec![Kind::HubPg3],
                "baseline" => vec![Kind::Baseline],
                other => anyhow::bail!(
                    "--servers {other:?}: say hub, hub-pg, hub-pg3, baseline or both (comma-separated)"
                ),
            })
        })
        .collect::<Result<Vec<_>>>()?
        .concat();
    let hub = match args.hub_bin {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary's directory")?
            .join("hub"),
    };
    anyhow::ensure!(
        hub.exists(),
        "no hub binary at {}; build it (cargo build -p hub --release) or pass --hub-bin",
        hub.display()
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let work = match args.work {
        Some(w) => {
            std::fs::create_dir_all(&w)?;
            w
        }
        None => temp.path().to_path_buf(),
    };
    let opts = netbench::Options {
        sizes,
        programs: Programs {
            hub,
            js_dir: root.join("js"),
            hub_args: args.hub_args,
        },
        cache: args
            .cache
            .unwrap_or_else(|| std::env::temp_dir().join("netbench-cache")),
        work,
        servers,
    };
    // The machine as it was when the run started (its load average).
    let machine = record_in
        .is_some()
        .then(|| Machine::here(opts.servers.contains(&Kind::Baseline)));
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(netbench::run(&opts))?;
    println!("{report}");
    record(record_in, "bench net", machine, &report.to_string())
}

fn agent(args: AgentArgs) -> Result<()> {
    let record_in = args.record.target(args.replica.smoke)?;
    let machine = record_in.is_some().then(|| Machine::here(false));
    let sizes = args.replica.sizes();
    let updates = if args.replica.smoke { 20 } else { args.updates };
    let mut temp = None;
    let db = args.replica.db(&mut temp)?;
    let r = agent_latency::run(&db, sizes, updates)?;
    let report = format!(
        "Replica: {} documents ({} days x {} lists x {} tasks)\n\n| measure | value |\n|---|---|\n| cold start (SqliteDatabase::open + Agent::open) | {:.1} ms |\n| local status update p50 / p99 / max ({} updates, durable) | {:.2} / {:.2} / {:.2} ms |",
        r.documents,
        sizes.days,
        sizes.lists,
        sizes.tasks,
        r.cold_start.as_secs_f64() * 1e3,
        r.updates,
        r.p50.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3,
        r.max.as_secs_f64() * 1e3,
    );
    println!("{report}");
    record(record_in, "bench agent", machine, &report)
}

fn load(args: LoadArgs) -> Result<()> {
    let record_in = args.record.target(args.replica.smoke)?;
    let machine = record_in.is_some().then(|| Machine::here(false));
    let sizes = args.replica.sizes();
    let runs = if args.replica.smoke { 2 } else { args.runs };
    let mut temp = None;
    let db = args.replica.db(&mut temp)?;
    let report = load_bench::run(&db, sizes, runs)?;
    println!("{report}");
    record(record_in, "bench load", machine, &report.to_string())
}
