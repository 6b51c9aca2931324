//! `bench net --smoke` and `bench agent --smoke` in-process: tiny sizes,
//! both servers (the `hub` binary and the JS automerge-repo sync server),
//! so a change that breaks the benchmark shows up in `cargo test`. It
//! measures nothing. Needs `node` 20+ with `tests/js` installed (`npm ci`),
//! like the JS interop test.

use std::path::{Path, PathBuf};
use std::process::Command;

use tests::netbench::{self, agent_latency, server::Kind, server::Programs};

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
        },
        cache: work.path().join("cache"),
        work: work.path().to_path_buf(),
        servers: vec![Kind::Hub, Kind::Baseline],
        known_content_index: false,
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
        assert_eq!(r.fanout.stores, stores, "{k}: every store got the new list");
        assert!(!r.memory.steps.is_empty(), "{k}: memory steps");
    }
    // The table renders with both columns.
    let table = report.to_string();
    assert!(
        table.contains("JS baseline") && table.contains("storm"),
        "{table}"
    );
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
