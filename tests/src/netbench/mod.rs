//! `bench net`: our hub and the JS automerge-repo sync server side by side
//! under the same load, from the same generator (simulated terminals
//! speaking the automerge-repo wire protocol over loopback WebSockets,
//! thousands of connections in one process). See BENCHMARKS.md for what
//! each workload does and how it is measured.

pub mod agent_latency;
pub mod fixture;
pub mod fleet;
pub mod server;
pub mod terminal;
pub mod workloads;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use fixture::{World, WorldSizes};
use fleet::Fleet;
use server::{Database, Kind, Programs, Server};
use workloads::ServerResult;

/// Every size of the run; the defaults are the recorded ones.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub stores: usize,
    pub lists: usize,
    pub tasks: usize,
    /// Status changes per list per store while offline (workload 1).
    pub changes: usize,
    pub steady_secs: u64,
    /// Status changes per store per second (workload 3).
    pub steady_rate: f64,
    /// Tasks of the list HQ publishes (workload 2).
    pub fanout_tasks: usize,
    /// Stores per step of the memory workload (workload 5).
    pub memory_batch: usize,
}

impl Sizes {
    pub const DEFAULT: Sizes = Sizes {
        stores: 1000,
        lists: 30,
        tasks: 20,
        changes: 10,
        steady_secs: 60,
        steady_rate: 1.0,
        fanout_tasks: 20,
        memory_batch: 100,
    };
    pub const SMOKE: Sizes = Sizes {
        stores: 4,
        lists: 3,
        tasks: 4,
        changes: 3,
        steady_secs: 2,
        steady_rate: 2.0,
        fanout_tasks: 4,
        memory_batch: 2,
    };

    fn world(&self) -> WorldSizes {
        WorldSizes {
            stores: self.stores,
            lists: self.lists,
            tasks: self.tasks,
        }
    }
}

pub struct Options {
    pub sizes: Sizes,
    pub programs: Programs,
    /// Where the hub fixture is cached between runs.
    pub cache: PathBuf,
    /// Scratch space for this run (data directories, server logs).
    pub work: PathBuf,
    pub servers: Vec<Kind>,
}

pub struct Report {
    pub sizes: Sizes,
    pub results: Vec<(Kind, ServerResult)>,
    /// Servers whose run failed, and why (a crash is a result too).
    pub failures: Vec<(Kind, String)>,
    /// Extra arguments the hub was started with.
    pub hub_args: Vec<String>,
}

fn log_path(opts: &Options, kind: Kind, n: u32) -> PathBuf {
    opts.work
        .join(format!("{}-{n}.log", kind.label().replace(' ', "-")))
}

/// The last lines of the server's newest log, for a failure report.
fn server_log_tail(opts: &Options, kind: Kind) -> String {
    let text = [2, 1]
        .iter()
        .find_map(|n| std::fs::read_to_string(log_path(opts, kind, *n)).ok())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join(" / ")
}

/// Run every workload against each server in turn.
pub async fn run(opts: &Options) -> Result<Report> {
    let world = World::new(opts.sizes.world());
    std::fs::create_dir_all(&opts.cache)?;
    let fixture_dir = opts.work.join("fixture");
    fixture::hub_data(&world, &opts.cache, &fixture_dir).context("building the hub fixture")?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    // One PostgreSQL server for the kinds that need it, durable (fsync
    // on) as the hub's SQLite is; a fresh database per kind.
    let pg = if opts.servers.iter().any(|k| k.on_postgres()) {
        Some(
            hub::pg::testing::PgServer::start_durable()
                .context("PostgreSQL is not installed (apt-get install postgresql)")?,
        )
    } else {
        None
    };
    for &kind in &opts.servers {
        match run_one(opts, &world, kind, &fixture_dir, pg.as_ref()).await {
            Ok(r) => {
                results.push((kind, r));
                // Print as we go: a later server failing loses nothing.
                let partial = Report {
                    sizes: opts.sizes.clone(),
                    results: results.clone(),
                    failures: failures.clone(),
                    hub_args: opts.programs.hub_args.clone(),
                };
                eprintln!("{partial}");
            }
            Err(e) => {
                let log_tail = server_log_tail(opts, kind);
                eprintln!("[{}] failed: {e:#}\n{log_tail}", kind.label());
                failures.push((kind, format!("{e:#}; server log ends: {log_tail}")));
            }
        }
    }
    Ok(Report {
        sizes: opts.sizes.clone(),
        results,
        failures,
        hub_args: opts.programs.hub_args.clone(),
    })
}

async fn run_one(
    opts: &Options,
    world: &World,
    kind: Kind,
    fixture_dir: &std::path::Path,
    pg: Option<&hub::pg::testing::PgServer>,
) -> Result<ServerResult> {
    let sizes = &opts.sizes;
    let data = opts.work.join(kind.label().replace(' ', "-"));
    let _ = std::fs::remove_dir_all(&data);
    let mut database = None;
    match kind {
        Kind::Hub => {
            fixture::hub_data(world, &opts.cache, &data)?;
        }
        Kind::HubPg | Kind::HubPg3 => {
            std::fs::create_dir_all(&data)?;
            let pg = pg.context("no PostgreSQL server")?;
            let url = pg.new_database();
            eprintln!("[{}] copying the fixture into PostgreSQL ...", kind.label());
            let started = std::time::Instant::now();
            let out = std::process::Command::new(&opts.programs.hub)
                .args(["copy-to-postgres", "--database", &url, "--data"])
                .arg(fixture_dir)
                .output()
                .context("running hub copy-to-postgres")?;
            anyhow::ensure!(
                out.status.success(),
                "hub copy-to-postgres failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!(
                "[{}] copied in {:.1} s",
                kind.label(),
                started.elapsed().as_secs_f64()
            );
            database = Some(Database {
                url,
                marker: pg.dir().display().to_string(),
            });
        }
        Kind::Baseline => std::fs::create_dir_all(&data)?,
    }
    let log = |n: u32| {
        opts.work
            .join(format!("{}-{n}.log", kind.label().replace(' ', "-")))
    };
    let srv = Server::start(kind, &opts.programs, &data, &log(1), database.as_ref()).await?;
    let mut out = ServerResult::default();
    if kind == Kind::Baseline {
        eprintln!("seeding the baseline with every document ...");
        out.setup_reconnects = workloads::seed(world, &srv, &fixture_dir.join("hub.db")).await?;
        note_reconnects(kind, "seeding", out.setup_reconnects);
    }
    let mut fleet = Fleet::new(
        &format!("{}-term", kind.label().replace(' ', "-")),
        2 * sizes.stores,
    );
    eprintln!(
        "[{}] bringing {} stores online ...",
        kind.label(),
        sizes.stores
    );
    out.online = workloads::online(world, &srv, &mut fleet).await?;
    let online_reconnects = fleet.take_reconnects();
    note_reconnects(kind, "bringing the stores online", online_reconnects);
    out.setup_reconnects += online_reconnects;
    eprintln!("[{}] reconnect storm ...", kind.label());
    out.storm = workloads::storm(world, sizes, &srv, &mut fleet).await?;
    note_reconnects(kind, "the storm", out.storm.reconnects);
    // Each workload's headline as it ends: a later one failing (an
    // overloaded baseline, say) loses nothing already measured.
    let st = &out.storm;
    eprintln!(
        "[{}] storm: {:.2} s, server CPU {:.2} s, generator CPU {:.2} s",
        kind.label(),
        st.total.as_secs_f64(),
        st.server_cpu.as_secs_f64(),
        st.generator_cpu.as_secs_f64()
    );
    eprintln!("[{}] steady state ...", kind.label());
    out.steady = workloads::steady(world, sizes, &srv, &mut fleet).await?;
    note_reconnects(kind, "steady state", out.steady.reconnects);
    let st = &out.steady;
    eprintln!(
        "[{}] steady: {} of {} delivered, {:.0} per second; p50 / p99 {:.1} / {:.1} ms; server CPU {:.1} s, generator CPU {:.1} s",
        kind.label(),
        st.delivered,
        st.made,
        st.delivered_per_sec(),
        st.p50.as_secs_f64() * 1e3,
        st.p99.as_secs_f64() * 1e3,
        st.server_cpu.as_secs_f64(),
        st.generator_cpu.as_secs_f64()
    );
    eprintln!("[{}] publish fan-out ...", kind.label());
    out.fanout = workloads::fanout(world, sizes, kind, &srv, &mut fleet).await?;
    note_reconnects(kind, "the fan-out", out.fanout.reconnects);
    eprintln!(
        "[{}] fan-out: p50 / p99 {:.0} / {:.0} ms",
        kind.label(),
        out.fanout.p50.as_secs_f64() * 1e3,
        out.fanout.p99.as_secs_f64() * 1e3
    );
    fleet.disconnect_all().await;
    drop(fleet);
    srv.stop(Duration::from_secs(10))?;

    eprintln!("[{}] memory ...", kind.label());
    let srv = Server::start(kind, &opts.programs, &data, &log(2), database.as_ref()).await?;
    let (memory, base) = workloads::memory(world, sizes, kind, &srv).await?;
    note_reconnects(kind, "the memory workload", memory.reconnects);
    out.memory = memory;
    out.memory_base_kib = base;
    srv.stop(Duration::from_secs(10))?;
    Ok(out)
}

/// Say so as it happens: a server helped by retries is worth knowing
/// before the table.
fn note_reconnects(kind: Kind, phase: &str, n: u64) {
    if n > 0 {
        eprintln!(
            "[{}] terminals reconnected {n} times during {phase} (dropped connections)",
            kind.label()
        );
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// "ours / baseline" as a factor; `higher_is_better` flips it so that a
/// factor above 1 always favours the hub.
fn ratio(ours: f64, base: f64, higher_is_better: bool) -> String {
    if ours <= 0.0 || base <= 0.0 {
        return "-".into();
    }
    let r = if higher_is_better {
        ours / base
    } else {
        base / ours
    };
    format!("{r:.1}x")
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.sizes;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "Sizes: {} stores x 2 terminals, {} lists x {} tasks per store; storm: {} changes per list per store; steady: {} s at {}/s per store; fan-out list of {} tasks; memory steps of {} stores.\n",
            s.stores, s.lists, s.tasks, s.changes, s.steady_secs, s.steady_rate, s.fanout_tasks, s.memory_batch
        );
        if !self.hub_args.is_empty() {
            let _ = writeln!(
                t,
                "Hub started with `hub serve ... {}`.\n",
                self.hub_args.join(" ")
            );
        }
        let hub = self
            .results
            .iter()
            .find(|(k, _)| *k == Kind::Hub)
            .map(|r| &r.1);
        let base = self
            .results
            .iter()
            .find(|(k, _)| *k == Kind::Baseline)
            .map(|r| &r.1);
        type Row<'a> = (
            &'a str,
            Box<dyn Fn(&ServerResult) -> String>,
            Option<(Box<dyn Fn(&ServerResult) -> f64>, bool)>,
        );
        let rows: Vec<Row> = vec![
            (
                "setup: all stores online (untimed phase)",
                Box::new(|r| secs(r.online)),
                None,
            ),
            (
                "**1 storm: time until every terminal has every change**",
                Box::new(|r| secs(r.storm.total)),
                Some((Box::new(|r| r.storm.total.as_secs_f64()), false)),
            ),
            (
                "1 storm: time until the server has every change",
                Box::new(|r| secs(r.storm.server_has_all)),
                Some((Box::new(|r| r.storm.server_has_all.as_secs_f64()), false)),
            ),
            (
                "1 storm: time until the status index (dashboard) has every change",
                Box::new(|r| r.storm.index_all.map_or("-".into(), secs)),
                None,
            ),
            (
                "1 storm: throughput, changes/s (to all terminals)",
                Box::new(|r| {
                    format!(
                        "{:.0}",
                        r.storm.changes as f64 / r.storm.total.as_secs_f64().max(1e-9)
                    )
                }),
                Some((
                    Box::new(|r| r.storm.changes as f64 / r.storm.total.as_secs_f64().max(1e-9)),
                    true,
                )),
            ),
            (
                "1 storm: server CPU time",
                Box::new(|r| secs(r.storm.server_cpu)),
                Some((Box::new(|r| r.storm.server_cpu.as_secs_f64()), false)),
            ),
            (
                "1 storm: server CPU per change (summed over nodes) / with the database server's",
                Box::new(|r| {
                    let n = r.storm.changes.max(1) as f64;
                    format!(
                        "{:.0} µs / {:.0} µs",
                        r.storm.server_cpu.as_secs_f64() * 1e6 / n,
                        (r.storm.server_cpu + r.storm.db_cpu).as_secs_f64() * 1e6 / n
                    )
                }),
                None,
            ),
            (
                "1 storm: server peak RSS (sampled / VmHWM)",
                Box::new(|r| format!("{} / {}", mib(r.storm.peak_rss_kib), mib(r.storm.hwm_kib))),
                Some((Box::new(|r| r.storm.peak_rss_kib as f64), false)),
            ),
            (
                "1 storm: bytes on the wire (WebSocket payloads)",
                Box::new(|r| format!("{:.1} MB", r.storm.bytes as f64 / 1e6)),
                Some((Box::new(|r| r.storm.bytes as f64), false)),
            ),
            (
                "1 storm: frames",
                Box::new(|r| r.storm.frames.to_string()),
                None,
            ),
            (
                "1 storm: generator CPU time",
                Box::new(|r| secs(r.storm.generator_cpu)),
                None,
            ),
            (
                "**2 fan-out: p50 / p99 / max until a store has the list**",
                Box::new(|r| {
                    format!(
                        "{} / {} / {}",
                        ms(r.fanout.p50),
                        ms(r.fanout.p99),
                        ms(r.fanout.max)
                    )
                }),
                Some((Box::new(|r| r.fanout.p99.as_secs_f64()), false)),
            ),
            (
                "2 fan-out: HQ's publishing done after",
                Box::new(|r| ms(r.fanout.published)),
                None,
            ),
            (
                "2 fan-out: server CPU time",
                Box::new(|r| secs(r.fanout.server_cpu)),
                Some((Box::new(|r| r.fanout.server_cpu.as_secs_f64()), false)),
            ),
            (
                "**3 steady: latency terminal to terminal p50 / p99 / max**",
                Box::new(|r| {
                    format!(
                        "{} / {} / {}",
                        ms(r.steady.p50),
                        ms(r.steady.p99),
                        ms(r.steady.max)
                    )
                }),
                Some((Box::new(|r| r.steady.p99.as_secs_f64()), false)),
            ),
            (
                "3 steady: changes made / delivered",
                Box::new(|r| format!("{} / {}", r.steady.made, r.steady.delivered)),
                None,
            ),
            (
                "3 steady: delivered per second, first made to last delivered",
                Box::new(|r| format!("{:.0}", r.steady.delivered_per_sec())),
                Some((Box::new(|r| r.steady.delivered_per_sec()), true)),
            ),
            (
                "3 steady: server CPU (share of one core until the last delivery)",
                Box::new(|r| r.steady.cpu_share(r.steady.server_cpu)),
                Some((Box::new(|r| r.steady.server_cpu.as_secs_f64()), false)),
            ),
            (
                "3 steady: database server CPU (share of one core, same time)",
                Box::new(|r| r.steady.cpu_share(r.steady.db_cpu)),
                None,
            ),
            (
                "**3 steady: server CPU per change (summed over nodes) / with the database server's**",
                Box::new(|r| {
                    let n = r.steady.made.max(1) as f64;
                    format!(
                        "{:.0} µs / {:.0} µs",
                        r.steady.server_cpu.as_secs_f64() * 1e6 / n,
                        (r.steady.server_cpu + r.steady.db_cpu).as_secs_f64() * 1e6 / n
                    )
                }),
                None,
            ),
            (
                "3 steady: generator CPU (share of one core, same time)",
                Box::new(|r| r.steady.cpu_share(r.steady.generator_cpu)),
                None,
            ),
            (
                "3 steady: changes per server CPU second",
                Box::new(|r| {
                    format!(
                        "{:.0}",
                        r.steady.made as f64 / r.steady.server_cpu.as_secs_f64().max(1e-9)
                    )
                }),
                Some((
                    Box::new(|r| {
                        r.steady.made as f64 / r.steady.server_cpu.as_secs_f64().max(1e-9)
                    }),
                    true,
                )),
            ),
            (
                "5 memory: RSS idle / all terminals connected",
                Box::new(|r| {
                    format!(
                        "{} / {}",
                        mib(r.memory.idle_kib),
                        mib(r.memory.connected_kib)
                    )
                }),
                None,
            ),
            (
                "**5 memory: RSS per connected store (2 connections)**",
                Box::new(|r| format!("{:.0} KiB", r.memory.per_store_kib())),
                Some((Box::new(|r| r.memory.per_store_kib()), false)),
            ),
            (
                "**5 memory: RSS per loaded document (first step)**",
                Box::new(|r| format!("{:.1} KiB", r.memory.per_doc_kib(r.memory_base_kib))),
                Some((Box::new(|r| r.memory.per_doc_kib(r.memory_base_kib)), false)),
            ),
            (
                "5 memory: RSS after the last step (all documents synced once)",
                Box::new(|r| r.memory.steps.last().map(|s| mib(s.1)).unwrap_or_default()),
                Some((
                    Box::new(|r| r.memory.steps.last().map(|s| s.1 as f64).unwrap_or(0.0)),
                    false,
                )),
            ),
            (
                "generator reconnects after a dropped connection (setup / 1 storm / 3 steady / 2 fan-out / 5 memory)",
                Box::new(|r| {
                    format!(
                        "{} / {} / {} / {} / {}",
                        r.setup_reconnects,
                        r.storm.reconnects,
                        r.steady.reconnects,
                        r.fanout.reconnects,
                        r.memory.reconnects
                    )
                }),
                None,
            ),
        ];
        // One column per server run, in run order; the ratio compares
        // the embedded hub with the JS baseline when both ran.
        let labels: Vec<&str> = self.results.iter().map(|(k, _)| k.label()).collect();
        let _ = writeln!(
            t,
            "| workload / measure | {} | ratio hub / JS baseline (>1 favours the hub) |",
            labels.join(" | ")
        );
        let _ = writeln!(t, "|---|{}---|", "---|".repeat(labels.len()));
        for (name, show, cmp) in &rows {
            let r = match (cmp, hub, base) {
                (Some((v, hib)), Some(h), Some(b)) => ratio(v(h), v(b), *hib),
                _ => "".into(),
            };
            let cols: Vec<String> = self.results.iter().map(|(_, res)| show(res)).collect();
            let _ = writeln!(t, "| {name} | {} | {r} |", cols.join(" | "));
        }
        for (kind, why) in &self.failures {
            let _ = writeln!(t, "\n{} failed: {why}", kind.label());
        }
        let _ = writeln!(
            t,
            "\nMemory steps (documents synced so far -> server RSS, documents in memory):\n"
        );
        let _ = writeln!(
            t,
            "| documents | {} |",
            self.results
                .iter()
                .map(|(k, _)| format!("{} RSS (documents in memory)", k.label()))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(t, "|---|{}", "---|".repeat(self.results.len()));
        let n = self
            .results
            .iter()
            .map(|(_, r)| r.memory.steps.len())
            .max()
            .unwrap_or(0);
        for i in 0..n {
            let docs = self
                .results
                .iter()
                .find_map(|(_, r)| r.memory.steps.get(i))
                .map_or(0, |s| s.0);
            let cols: Vec<String> = self
                .results
                .iter()
                .map(|(_, r)| match r.memory.steps.get(i) {
                    Some((_, rss, Some(in_memory))) => format!("{} ({in_memory})", mib(*rss)),
                    Some((_, rss, None)) => mib(*rss),
                    None => "-".into(),
                })
                .collect();
            let _ = writeln!(t, "| {docs} | {} |", cols.join(" | "));
        }
        f.write_str(&t)
    }
}
