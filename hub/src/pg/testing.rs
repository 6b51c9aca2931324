//! A throwaway PostgreSQL server for tests: started from the
//! distribution's binaries (`/usr/lib/postgresql/*/bin`) in a temporary
//! directory on a random loopback port, one per test process, with a fresh
//! database per test. PostgreSQL refuses to run as root, so as root (CI)
//! every server command runs as the `postgres` user through `runuser`.
//!
//! The server dies with the test process: a small shell watchdog started
//! beside it stops it (immediate shutdown) and removes its directory once
//! the process that started it is gone, panics included.
//!
//! Where the binaries are absent, [`PgServer::shared`] prints a notice and
//! returns `None` so the test can skip, except under `CI=true`, where a
//! missing server is an error: CI installs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// One running test server.
pub struct PgServer {
    bin: PathBuf,
    dir: PathBuf,
    port: Mutex<u16>,
    as_postgres: bool,
    next_db: AtomicU32,
    /// The watchdog shells (each outlives this process only by its cleanup).
    watchdogs: Mutex<Vec<std::process::Child>>,
}

static SHARED: OnceLock<Option<PgServer>> = OnceLock::new();

/// The newest installed server's binary directory.
fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

impl PgServer {
    /// The test process's server, started on first use; `None` (after a
    /// notice) where PostgreSQL is not installed and this is not CI.
    pub fn shared() -> Option<&'static PgServer> {
        SHARED
            .get_or_init(|| match find_bin() {
                Some(bin) => Some(PgServer::start(bin)),
                None if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
                    "CI=true but PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); \
                     .ci/run installs it with apt-get install postgresql"
                ),
                None => {
                    eprintln!(
                        "SKIPPED: PostgreSQL tests need the server binaries \
                         (apt-get install postgresql)"
                    );
                    None
                }
            })
            .as_ref()
    }

    fn start(bin: PathBuf) -> PgServer {
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = std::env::temp_dir().join(format!(
            "hub-pg-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("making the PostgreSQL test directory");
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir));
        }
        let server = PgServer {
            bin,
            dir,
            port: Mutex::new(0),
            as_postgres,
            next_db: AtomicU32::new(0),
            watchdogs: Mutex::new(Vec::new()),
        };
        let mut initdb = server.command("initdb");
        initdb.arg("-D").arg(server.data()).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run(&mut initdb);
        server.spawn(true);
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A server command, as the `postgres` user when we are root.
    fn command(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    /// Start the server on a free port, with a watchdog that stops it when
    /// this process ends (and, for the first start, removes the directory).
    fn spawn(&self, first: bool) {
        let old = self.port();
        for attempt in 0..10 {
            // A restart takes the old port back, so clients reconnect to it.
            let port = if attempt == 0 && old != 0 {
                old
            } else {
                free_port()
            };
            let postgres = self.bin.join("postgres");
            let me = std::process::id();
            let cleanup = if first {
                format!("sleep 1; rm -rf '{}'", self.dir.display())
            } else {
                String::new()
            };
            let script = format!(
                "'{postgres}' -D '{data}' -k '{dir}' -p {port} -c listen_addresses=127.0.0.1 \
                 -c fsync=off -c full_page_writes=off \
                 -c max_connections=300 >>'{dir}/server.log' 2>&1 & p=$!; \
                 while [ -d /proc/{me} ]; do sleep 0.5; done; \
                 kill -QUIT $p 2>/dev/null; {cleanup}",
                postgres = postgres.display(),
                data = self.data().display(),
                dir = self.dir.display(),
            );
            let mut sh = if self.as_postgres {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--", "sh", "-c", &script]);
                c
            } else {
                let mut c = Command::new("sh");
                c.args(["-c", &script]);
                c
            };
            sh.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let watchdog = sh.spawn().expect("starting PostgreSQL");
            self.watchdogs.lock().unwrap().push(watchdog);
            *self.port.lock().unwrap() = port;
            if self.wait_ready(Duration::from_secs(30)) {
                return;
            }
        }
        panic!(
            "PostgreSQL did not start; see {}/server.log",
            self.dir.display()
        );
    }

    /// Whether the server accepts connections within `limit`.
    fn wait_ready(&self, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn port(&self) -> u16 {
        *self.port.lock().unwrap()
    }

    /// A new, empty database on this server; returns its URL.
    pub fn new_database(&self) -> String {
        let n = self.next_db.fetch_add(1, Ordering::Relaxed);
        let name = format!("t_{}_{n}", std::process::id());
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port())
    }

    /// Run `sql` in database `db` with psql; panics on failure. Returns
    /// the output (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port().to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", db, "-c", sql])
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Stop the server as a crash would (`-m immediate`: no checkpoint,
    /// recovery at the next start) and start it again on the same data.
    /// It keeps its port unless another process took it meanwhile.
    pub fn restart_immediate(&self) {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"]);
        run(&mut stop);
        self.spawn(false);
    }

    /// Where the server keeps its data and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("finding a free port")
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
