//! `bench net --smoke`, `bench agent --smoke` and `bench lan --smoke`
//! in-process: tiny sizes, both servers (the `hub` binary and the JS
//! automerge-repo sync server), real peered terminals for `lan`, so a
//! change that breaks a benchmark shows up in `cargo test`. They measure
//! nothing. Needs `node` 20+ with `tests/js` installed (`npm ci`),
//! like the JS interop test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use engine::ids::EventId;
use engine::model::{Status, StatusUpdate};
use tests::fault_proxy::FaultProxy;
use tests::netbench::fixture::{self, World, WorldSizes};
use tests::netbench::fleet::{terminal_of, Fleet};
use tests::netbench::server::Server;
use tests::netbench::terminal::{Cmd, Goal, ReconnectPolicy, Report};
use tests::netbench::{self, agent_latency, server::Kind, server::Programs, workloads};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// Build the hub binary (cargo has built the test by now, so this nested
/// build only links what is missing) and return its path.
fn hub_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-q", "-p", "hub", "--bin", "hub"])
        .current_dir(root())
        .status()
        .expect("running cargo build");
    assert!(status.success(), "building the hub failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or(root().join("target"));
    target.join("debug").join("hub")
}

fn js_ready(js: &Path) {
    if !js
        .join("node_modules/@automerge/automerge-repo-storage-nodefs/package.json")
        .exists()
    {
        let status = Command::new("npm")
            .arg("ci")
            .current_dir(js)
            .status()
            .expect("running npm ci (install Node.js 20 and npm)");
        assert!(status.success(), "npm ci in tests/js failed");
    }
}

#[test]
fn net_workloads_run_against_both_servers() {
    let js = root().join("tests/js");
    js_ready(&js);
    let work = tempfile::tempdir().unwrap();
    let opts = netbench::Options {
        sizes: netbench::Sizes::SMOKE,
        programs: Programs {
            hub: hub_binary(),
            js_dir: js,
            hub_args: vec!["--max-cached-documents=1000".into()],
        },
        cache: work.path().join("cache"),
        work: work.path().to_path_buf(),
        servers: if hub::pg::testing::PgServer::shared().is_some() {
            // Three nodes on PostgreSQL as well (one database server,
            // durable, of the run's own).
            vec![Kind::Hub, Kind::HubPg3, Kind::Baseline]
        } else {
            vec![Kind::Hub, Kind::Baseline]
        },
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let report = runtime.block_on(netbench::run(&opts)).unwrap();
    let stores = netbench::Sizes::SMOKE.stores;
    for (kind, r) in &report.results {
        let k = kind.label();
        assert!(
            r.storm.changes > 0 && r.storm.total > std::time::Duration::ZERO,
            "{k}: storm"
        );
        assert_eq!(
            r.steady.delivered, r.steady.made,
            "{k}: every steady change arrives"
        );
        // The last of each store's changes is made 1.5 s in (4 at 2/s).
        assert!(
            r.steady.span >= std::time::Duration::from_millis(1500)
                && r.steady.span < std::time::Duration::from_secs(30),
            "{k}: first made to last delivered: {:?}",
            r.steady.span
        );
        // The generator made and applied every change: it used some CPU.
        assert!(
            r.steady.generator_cpu > std::time::Duration::ZERO,
            "{k}: the generator's CPU in steady state"
        );
        assert_eq!(r.fanout.stores, stores, "{k}: every store got the new list");
        assert_eq!(
            r.storm.index_all.is_some(),
            kind.is_hub(),
            "{k}: the hub's status index is timed"
        );
        assert!(!r.memory.steps.is_empty(), "{k}: memory steps");
        assert_eq!(
            r.failover.as_ref().map(|f| f.stores > 0),
            (kind.nodes() > 1).then_some(true),
            "{k}: a cluster's failover ran"
        );
        if kind.on_postgres() {
            assert!(
                r.steady.db_cpu > std::time::Duration::ZERO,
                "{k}: the database server's CPU is counted"
            );
        }
    }
    assert_eq!(
        report.results.len() + report.failures.len(),
        opts.servers.len(),
        "every server ran: {:?}",
        report.failures
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    // The table renders with both columns.
    let table = report.to_string();
    assert!(
        table.contains("JS baseline") && table.contains("storm"),
        "{table}"
    );
    // The hub ran with the extra argument (it refuses unknown ones).
    assert!(table.contains("--max-cached-documents=1000"), "{table}");
}

/// Dropped connections are not fatal (the JS baseline resets them under
/// load): behind a `FaultProxy`, every terminal's connection is cut and
/// kept down while each records a change, then cut again in the middle of
/// the steady-state workload. The terminals reconnect, resume from their
/// sync state and deliver everything, against both servers.
#[test]
fn terminals_reconnect_and_deliver_what_changed_while_offline() {
    let js = root().join("tests/js");
    js_ready(&js);
    let programs = Programs {
        hub: hub_binary(),
        js_dir: js,
        hub_args: Vec::new(),
    };
    let work = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for kind in [Kind::Hub, Kind::Baseline] {
        runtime
            .block_on(reconnect_case(kind, &programs, work.path()))
            .with_context(|| kind.label())
            .unwrap();
    }
}

async fn reconnect_case(kind: Kind, programs: &Programs, work: &Path) -> anyhow::Result<()> {
    let sizes = netbench::Sizes {
        stores: 2,
        lists: 2,
        tasks: 3,
        steady_secs: 2,
        steady_rate: 4.0,
        ..netbench::Sizes::SMOKE
    };
    let world = World::new(WorldSizes {
        stores: sizes.stores,
        lists: sizes.lists,
        tasks: sizes.tasks,
    });
    let cache = work.join("cache");
    let label = kind.label().replace(' ', "-");
    let data = work.join(format!("{label}-data"));
    match kind {
        Kind::Baseline => std::fs::create_dir_all(&data)?,
        _ => fixture::hub_data(&world, &cache, &data)?,
    }
    let log = work.join(format!("{label}.log"));
    let mut srv = Server::start(kind, programs, &data, &log, None).await?;
    if kind == Kind::Baseline {
        let fixture_dir = work.join("fixture");
        fixture::hub_data(&world, &cache, &fixture_dir)?;
        workloads::seed(&world, &srv, &fixture_dir.join("hub.db")).await?;
    }
    let proxy = FaultProxy::start(srv.addr.clone()).await;
    // From here on the terminals reach the server through the proxy.
    srv.addr = proxy.addr();
    srv.addrs = vec![proxy.addr()];
    let n = 2 * sizes.stores;
    let policy = ReconnectPolicy {
        min_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(500),
        ..ReconnectPolicy::DEFAULT
    };
    let mut fleet = Fleet::with_policy("rc", n, policy);
    workloads::online(&world, &srv, &mut fleet).await?;
    assert_eq!(fleet.take_reconnects(), 0, "no drop yet");

    // Every connection drops and stays down while each terminal records.
    proxy.set_refuse(true);
    proxy.cut_all();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fleet.reconnecting() < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the terminals did not see the cut"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut recorded = Vec::new();
    for s in 0..sizes.stores {
        let doc = world.lists(s)[0];
        for t in 0..2 {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let update = StatusUpdate {
                id: EventId(uuid::Uuid::new_v4()),
                task: world.task_ids(doc)[t],
                status: Status::Completed,
                worker: "w1".parse()?,
                terminal: format!("pos-{}", t + 1).parse()?,
                note: None,
            };
            fleet.send(
                terminal_of(s, t),
                Cmd::Record {
                    doc,
                    update,
                    done: Some(tx),
                },
            );
            recorded.push((s, doc, rx.await?.map_err(anyhow::Error::msg)?));
        }
    }
    for s in 0..sizes.stores {
        let mut heads: Vec<_> = recorded.iter().filter(|r| r.0 == s).map(|r| r.2).collect();
        heads.sort();
        let doc = world.lists(s)[0];
        for t in 0..2 {
            fleet.send(
                terminal_of(s, t),
                Cmd::Goals(vec![(doc, Goal::Heads(heads.clone()))]),
            );
        }
    }
    proxy.set_refuse(false);
    fleet
        .wait_count(
            "delivering what changed while offline",
            Duration::from_secs(60),
            n,
            |r| matches!(r, Report::Reached { .. }),
        )
        .await?;
    assert_eq!(
        fleet.take_reconnects(),
        n as u64,
        "each terminal reconnected"
    );

    // Cut again once steady state is under way; nothing made is lost.
    let shared = fleet.shared.clone();
    let cut = async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while shared.latencies.lock().unwrap().len() < sizes.stores && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        proxy.cut_all();
    };
    let (steady, ()) = tokio::join!(workloads::steady(&world, &sizes, &srv, &mut fleet), cut);
    let steady = steady?;
    assert_eq!(steady.delivered, steady.made, "every steady change arrives");
    assert!(
        steady.reconnects >= n as u64,
        "every terminal reconnected during steady state: {}",
        steady.reconnects
    );
    fleet.disconnect_all().await;
    srv.stop(Duration::from_secs(5))?;
    Ok(())
}

#[test]
fn agent_latency_runs() {
    let work = tempfile::tempdir().unwrap();
    let r = agent_latency::run(
        &work.path().join("replica.sqlite3"),
        tests::load_bench::Sizes::SMOKE,
        10,
    )
    .unwrap();
    assert_eq!(r.updates, 10);
    assert!(r.p50 <= r.p99 && r.p99 <= r.max);
}

/// `bench storage`'s workload on both backends at a tiny size: every
/// commit lands (the change rows are there afterwards) and the figures
/// are consistent.
#[test]
fn storage_workload_runs_on_both_backends() {
    use engine::storage::roles::*;
    use tests::storage_bench::{run, table, Sizes};
    let sizes = Sizes {
        stores: 5,
        commits: 10,
        per_batch: 4,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite =
        engine::storage::SqliteDatabase::open(dir.path().join("hub.db"), [3; 16]).unwrap();
    let mut runs = vec![run("sqlite", &mut sqlite, sizes, &|| Duration::ZERO).unwrap()];
    // One change per store at setup, and 10 x 4 more spread over the 5.
    let rows: usize = sqlite
        .list_documents()
        .unwrap()
        .into_iter()
        .map(|d| sqlite.change_row_count(d).unwrap())
        .sum();
    assert_eq!(rows, 5 + 40);
    if let Some(server) = hub::pg::testing::PgServer::shared() {
        let url = server.new_database();
        let mut pg = hub::pg::PgDatabase::connect(&url, "bench", [4; 16]).unwrap();
        runs.push(run("postgres", &mut pg, sizes, &|| Duration::ZERO).unwrap());
        let rows: usize = pg
            .list_documents()
            .unwrap()
            .into_iter()
            .map(|d| pg.change_row_count(d).unwrap())
            .sum();
        assert_eq!(rows, 5 + 40);
    }
    for m in &runs {
        assert_eq!((m.commits, m.changes), (10, 40));
        assert!(m.p50 <= m.p99);
    }
    let t = table(sizes, &runs);
    assert!(t.contains("| sqlite |"), "{t}");
    assert_eq!(
        t.lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| backend"))
            .count(),
        runs.len(),
        "{t}"
    );
}

/// `bench lan`'s run at a tiny size on the debug binaries: three peered
/// terminals with the hub stopped, every tap shown on the other two.
#[test]
fn lan_tap_latency_runs() {
    use tests::lan_bench::{self, Options, Programs};
    let work = tempfile::tempdir().unwrap();
    let opts = Options {
        programs: Programs {
            hub: tests::procs::bin("hub"),
            pos_agent: tests::procs::bin("pos-agent"),
        },
        terminals: vec![3],
        taps: 6,
        tasks: 4,
        work: work.path().to_path_buf(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let runs = runtime.block_on(lan_bench::run(&opts)).unwrap();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!((r.terminals, r.taps), (3, 6));
    assert!(r.next.p50 <= r.next.p99 && r.next.p99 <= r.next.max);
    assert!(r.next.max <= r.all.max && r.all.p50 <= r.all.p99);
    let t = lan_bench::table(&runs);
    assert!(t.contains("| 3 | 6 |"), "{t}");
}
