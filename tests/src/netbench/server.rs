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
    /// Our `hub serve`, on its embedded SQLite (the default deployment).
    Hub,
    /// One `hub serve --database postgres://...`, alone.
    HubPg,
    /// Three hub nodes (`--node`) on one PostgreSQL database, each serving
    /// the stores it holds leases on; terminals connect to their store's.
    HubPg3,
    /// `node tests/js/baseline-server.mjs`: automerge-repo's sync server.
    Baseline,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Hub => "hub",
            Kind::HubPg => "hub on PostgreSQL",
            Kind::HubPg3 => "3 hubs on PostgreSQL",
            Kind::Baseline => "JS baseline",
        }
    }

    /// One of ours (admin API, status index, metrics).
    pub fn is_hub(self) -> bool {
        self != Kind::Baseline
    }

    /// Hub processes it runs.
    pub fn nodes(self) -> usize {
        match self {
            Kind::HubPg3 => 3,
            _ => 1,
        }
    }

    pub fn on_postgres(self) -> bool {
        matches!(self, Kind::HubPg | Kind::HubPg3)
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

/// A running server (for `HubPg3`, its three nodes), killed when dropped.
pub struct Server {
    pub kind: Kind,
    children: Vec<Child>,
    /// Each node's host:port; HQ calls go to the first.
    pub addrs: Vec<String>,
    pub addr: String,
    /// Which node serves each store (by index), for a cluster; empty
    /// otherwise (every store at `addr`).
    routes: Vec<usize>,
    /// The database server's directory, whose processes' CPU counts as
    /// the database's (PostgreSQL kinds).
    db_marker: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where a PostgreSQL kind keeps its data: the database's URL, and the
/// server's directory (to count its processes' CPU).
#[derive(Debug, Clone)]
pub struct Database {
    pub url: String,
    pub marker: String,
}

/// CPU and memory of a process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// User + system CPU time since the process started.
    pub cpu: Duration,
    pub rss_kib: u64,
    /// Peak resident set (VmHWM) since the process started.
    pub hwm_kib: u64,
    /// CPU of the database server's processes so far (PostgreSQL kinds).
    pub db_cpu: Duration,
}

impl ProcStats {
    fn add(self, o: ProcStats) -> ProcStats {
        ProcStats {
            cpu: self.cpu + o.cpu,
            rss_kib: self.rss_kib + o.rss_kib,
            hwm_kib: self.hwm_kib + o.hwm_kib,
            db_cpu: self.db_cpu + o.db_cpu,
        }
    }
}

impl Server {
    /// Start a server on `data` (for the hub: a data directory, e.g. from
    /// `fixture::hub_data`; for the baseline: its storage directory).
    /// For the PostgreSQL kinds, `database` is where the data is (a copy
    /// of the fixture); `data` then only holds each node's directory.
    pub async fn start(
        kind: Kind,
        programs: &Programs,
        data: &Path,
        log: &Path,
        database: Option<&Database>,
    ) -> Result<Server> {
        let mut children = Vec::new();
        let mut addrs = Vec::new();
        for n in 0..kind.nodes() {
            let (log, data) = if kind.nodes() == 1 {
                (log.to_path_buf(), data.to_path_buf())
            } else {
                (
                    log.with_extension(format!("node{}.log", n + 1)),
                    data.join(format!("node{}", n + 1)),
                )
            };
            let mut extra = Vec::new();
            if let Some(db) = database {
                extra.extend(["--database".to_owned(), db.url.clone()]);
                if kind.nodes() > 1 {
                    extra.extend(["--node".to_owned(), format!("n{}", n + 1)]);
                }
            }
            let (child, addr) = start_one(kind, programs, &data, &log, &extra)?;
            children.push(child);
            addrs.push(addr);
        }
        let mut server = Server {
            kind,
            addr: addrs[0].clone(),
            addrs,
            children,
            routes: Vec::new(),
            db_marker: database.map(|d| d.marker.clone()),
        };
        if kind.nodes() > 1 {
            let db = database.context("a cluster needs its database")?;
            server.routes = wait_for_leases(&db.url, server.addrs.len()).await?;
        }
        Ok(server)
    }
}

/// Until every store is held by a node: which node (by index) serves
/// each store, in store order (`bench-00000` first).
async fn wait_for_leases(url: &str, nodes: usize) -> Result<Vec<usize>> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to the cluster's database")?;
    tokio::spawn(conn);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = client
            .query(
                "SELECT l.owner, l.expires_at > clock_timestamp()
                   FROM store_leases l ORDER BY l.store_id COLLATE \"C\"",
                &[],
            )
            .await?;
        let routes: Option<Vec<usize>> = rows
            .iter()
            .map(|r| {
                let owner: Option<String> = r.get(0);
                let live: bool = r.get(1);
                let n: usize = owner?.strip_prefix('n')?.parse().ok()?;
                (live && (1..=nodes).contains(&n)).then_some(n - 1)
            })
            .collect();
        if let Some(routes) = routes.filter(|r| !r.is_empty()) {
            let mut per_node = vec![0; nodes];
            for r in &routes {
                per_node[*r] += 1;
            }
            eprintln!("every store is served; stores per node: {per_node:?}");
            return Ok(routes);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the cluster's nodes did not take every store within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Start one server process; its child and host:port.
fn start_one(
    kind: Kind,
    programs: &Programs,
    data: &Path,
    log: &Path,
    extra: &[String],
) -> Result<(Child, String)> {
    {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("creating the server log {}", log.display()))?;
        let mut cmd = match kind {
            Kind::Hub | Kind::HubPg | Kind::HubPg3 => {
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
                .args(extra)
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
        Ok((child, addr))
    }
}

impl Server {
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// The WebSocket URL a store's terminal connects to: its store's node.
    pub fn sync_url(&self, store: usize) -> String {
        match self.kind {
            Kind::Baseline => format!("ws://{}/", self.addr),
            _ => {
                let node = self.routes.get(store).copied().unwrap_or(0);
                format!(
                    "ws://{}/sync?token={}",
                    self.addrs[node],
                    store_token(store)
                )
            }
        }
    }

    /// HQ's connection for the baseline (it has no admin API). The hub
    /// has none: HQ writes through its admin API, and `/sync` refuses the
    /// admin token.
    pub fn hq_url(&self) -> Result<String> {
        match self.kind {
            Kind::Baseline => Ok(format!("ws://{}/", self.addr)),
            _ => bail!("the hub takes HQ's writes at its admin API, not at /sync"),
        }
    }

    /// Summed over the server's processes; with the database server's
    /// CPU beside (PostgreSQL kinds).
    pub fn stats(&self) -> Result<ProcStats> {
        let mut sum = ProcStats::default();
        for pid in self.pids() {
            sum = sum.add(proc_stats(pid)?);
        }
        if let Some(marker) = &self.db_marker {
            sum.db_cpu = crate::storage_bench::cpu_of_server(marker);
        }
        Ok(sum)
    }

    /// Stop gracefully (SIGTERM) and wait up to `grace` before killing.
    pub fn stop(mut self, grace: Duration) -> Result<()> {
        for pid in self.pids() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let deadline = Instant::now() + grace;
        for child in &mut self.children {
            while Instant::now() < deadline {
                if child.try_wait()?.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
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
        db_cpu: Duration::ZERO,
    })
}

/// Our own process (the load generator), for comparison.
pub fn self_stats() -> Result<ProcStats> {
    proc_stats(std::process::id())
}
