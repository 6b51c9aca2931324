//! What the headless-browser tests need: the workspace root, the system
//! Chromium (Debian's package; `.ci/run` installs it), and Node 20+ with
//! playwright-core installed in `tests/js` (never a downloaded browser).

use std::path::{Path, PathBuf};
use std::process::Command;

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
