//! The two servers under test as child processes, and what /proc says about
//! them: CPU time (user + system) and resident memory (now and peak).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::fixture::{store_token, ADMIN_TOKEN};

/// Which server a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Our `hub serve`.
    Hub,
    /// `node tests/js/baseline-server.mjs`: automerge-repo's sync server.
    Baseline,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Hub => "hub",
            Kind::Baseline => "JS baseline",
        }
    }
}

/// Where the two servers' programs are.
#[derive(Debug, Clone)]
pub struct Programs {
    pub hub: PathBuf,
    /// `tests/js`, holding `baseline-server.mjs` and its node_modules.
    pub js_dir: PathBuf,
    /// Extra arguments for `hub serve` (e.g. a larger document cache).
    pub hub_args: Vec<String>,
}

/// A running server, killed when dropped.
pub struct Server {
    pub kind: Kind,
    child: Child,
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU and memory of a process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// User + system CPU time since the process started.
    pub cpu: Duration,
    pub rss_kib: u64,
    /// Peak resident set (VmHWM) since the process started.
    pub hwm_kib: u64,
}

impl Server {
    /// Start a server on `data` (for the hub: a data directory, e.g. from
    /// `fixture::hub_data`; for the baseline: its storage directory).
    pub fn start(kind: Kind, programs: &Programs, data: &Path, log: &Path) -> Result<Server> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("creating the server log {}", log.display()))?;
        let mut cmd = match kind {
            Kind::Hub => {
                let mut c = Command::new(&programs.hub);
                c.args([
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--admin-token",
                    ADMIN_TOKEN,
                ])
                .arg("--data")
                .arg(data)
                .args(&programs.hub_args)
                // Per-connection info lines would be most of the log at
                // 2,000 connections; the baseline logs nothing either.
                .env("RUST_LOG", "warn");
                c
            }
            Kind::Baseline => {
                let mut c = Command::new("node");
                c.arg(programs.js_dir.join("baseline-server.mjs"))
                    .arg(data)
                    .current_dir(&programs.js_dir);
                c
            }
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting the {} server", kind.label()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let Some(line) = lines.next() else {
                let status = child.wait()?;
                bail!(
                    "the {} server exited ({status}) before listening; see {}",
                    kind.label(),
                    log.display()
                );
            };
            let line = line?;
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Server { kind, child, addr })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The WebSocket URL a store's terminal connects to.
    pub fn sync_url(&self, store: usize) -> String {
        match self.kind {
            Kind::Hub => format!("ws://{}/sync?token={}", self.addr, store_token(store)),
            Kind::Baseline => format!("ws://{}/", self.addr),
        }
    }

    /// HQ's connection for the baseline (it has no admin API). The hub
    /// has none: HQ writes through its admin API, and `/sync` refuses the
    /// admin token.
    pub fn hq_url(&self) -> Result<String> {
        match self.kind {
            Kind::Hub => bail!("the hub takes HQ's writes at its admin API, not at /sync"),
            Kind::Baseline => Ok(format!("ws://{}/", self.addr)),
        }
    }

    pub fn stats(&self) -> Result<ProcStats> {
        proc_stats(self.pid())
    }

    /// Stop gracefully (SIGTERM) and wait up to `grace` before killing.
    pub fn stop(mut self, grace: Duration) -> Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(())
    }
}

fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// CPU time from /proc/PID/stat (utime + stime), memory from
/// /proc/PID/status (VmRSS, VmHWM).
pub fn proc_stats(pid: u32) -> Result<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name, which may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i - 3)
            .context("short /proc/PID/stat")?
            .parse::<u64>()
            .context("bad number in /proc/PID/stat")
    };
    let cpu_ticks = ticks(14)? + ticks(15)?;
    let cpu = Duration::from_secs_f64(cpu_ticks as f64 / clock_ticks_per_second() as f64);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcStats {
        cpu,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    })
}

/// Our own process (the load generator), for comparison.
pub fn self_stats() -> Result<ProcStats> {
    proc_stats(std::process::id())
}
