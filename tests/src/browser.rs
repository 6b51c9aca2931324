//! What the headless-browser tests need: the workspace root, the system
//! Chromium (Debian's package; `.ci/run` installs it), and Node 20+ with
//! playwright-core installed in `tests/js` (never a downloaded browser).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::procs::Proc;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// The system Chromium, or `None` (the caller skips) outside CI when it is
/// missing; under `CI=true` a missing Chromium fails the test.
pub fn chromium(test: &str) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()));
    if path.exists() {
        return Some(path);
    }
    let msg = format!(
        "the {test} browser test needs Chromium at {} (Debian: `apt-get install chromium`, \
         or set CHROMIUM=/path/to/chromium)",
        path.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// Node 20+ on PATH and playwright-core in `tests/js` (`npm ci` once if
/// missing).
pub fn node_ready(test: &str) {
    let js = root().join("tests/js");
    let version = Command::new("node")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("the {test} test needs Node.js 20+ on PATH: {e}"));
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "Node.js 20+ needed, `node --version` says {version:?}"
    );
    if !js
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&js)
            .status()
            .unwrap_or_else(|e| panic!("running `npm ci` in {}: {e}", js.display()));
        assert!(status.success(), "`npm ci` in {} failed", js.display());
    }
}

/// Run the one-shot browser script `tests/js/<script>` against terminal
/// `pos` (its screenshots go to `target/tmp/<shots>`), within `deadline`.
/// The script prints one `RESULT <json>` line; it must exit with success
/// and report no errors. Returns the report and the screenshots' folder.
pub async fn run_pos_script(
    script: &str,
    shots: &str,
    pos: &Proc,
    chromium: &Path,
    deadline: Duration,
) -> (Value, PathBuf) {
    let shots = root().join("target/tmp").join(shots);
    std::fs::create_dir_all(&shots).unwrap();
    let out = tokio::time::timeout(
        deadline,
        tokio::process::Command::new("node")
            .arg(root().join("tests/js").join(script))
            .arg(format!("http://{}", pos.addr))
            .arg(&shots)
            .env("CHROMIUM", chromium)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser script finished in time")
    .unwrap_or_else(|e| panic!("running node tests/js/{script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|r| serde_json::from_str(r).unwrap())
        .unwrap_or_else(|| {
            panic!(
                "no RESULT from the script: {}\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(
        out.status.success() && report["errors"] == json!([]),
        "{}: {report:#}\npos-1 log:\n{}",
        out.status,
        pos.log_tail()
    );
    (report, shots)
}
