//! Crash durability: a writer process records status updates on a replica
//! and is killed with SIGKILL at random points, again and again on the same
//! file. After every kill the file must pass SQLite's integrity check, open,
//! load every document without gaps, and hold every update the writer
//! reported as saved, exactly once.
//!
//! `CRASH_SEED=<n>` replays a run (the seed is printed on failure);
//! `CRASH_ITERATIONS=<n>` runs more kills than the CI default.

use engine::storage::roles::*;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use automerge::{ActorId, ReadDoc};
use engine::document::instance;
use engine::ids::EventId;
use engine::storage::SqliteDatabase;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Kills per CI run: enough to land in open, setup, append and compaction,
/// small enough to keep the test around ten seconds.
const DEFAULT_ITERATIONS: u32 = 30;

/// Longest any single wait on the writer may take; past it the writer is hung.
const DEADLINE: Duration = Duration::from_secs(30);

/// SIGKILL's number on every Unix (what `Child::kill` sends).
const SIGKILL: i32 = 9;

/// Most updates the writer could record in one life; it is always killed first.
const WRITER_COUNT: u64 = 1_000_000;

#[test]
fn every_update_reported_saved_survives_sigkill() {
    let seed = env_number("CRASH_SEED").unwrap_or_else(rand::random);
    let iterations = env_number("CRASH_ITERATIONS").map_or(DEFAULT_ITERATIONS, |n| n as u32);
    eprintln!("crash_durability: CRASH_SEED={seed} CRASH_ITERATIONS={iterations}");
    let dir = tempfile::tempdir().expect("a temporary directory");
    match run(seed, iterations, &dir.path().join("replica.sqlite3")) {
        Ok(summary) => eprintln!("crash_durability: {summary}"),
        Err(e) => {
            // Keep the damaged file for a look.
            let kept = dir.keep();
            panic!(
                "crash durability failed; replay with CRASH_SEED={seed} \
                 CRASH_ITERATIONS={iterations} (replica kept in {}): {e:#}",
                kept.display()
            )
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|e| panic!("{name}={value:?} is not a number: {e}")),
    )
}

/// Where in its life the writer is killed.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// Right after it reported this many saved updates (lands in append or compaction).
    AfterSaved(usize),
    /// This long after spawning (may land in open, migration or setup).
    AfterDelay(Duration),
}

fn run(seed: u64, iterations: u32, db: &Path) -> Result<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut saved = BTreeSet::new();
    // Every event ever found in the file: once durable, it must stay.
    let mut found = BTreeSet::new();
    let mut actor: Option<ActorId> = None;
    let (mut killed, mut compactions) = (0, 0);

    for iteration in 0..iterations {
        let kill_at = if rng.gen_bool(0.5) {
            KillAt::AfterSaved(rng.gen_range(0..60))
        } else {
            KillAt::AfterDelay(Duration::from_millis(rng.gen_range(0..300)))
        };
        let life = Writer::spawn(db, rng.gen())?
            .kill(kill_at)
            .with_context(|| format!("iteration {iteration}, killed {kill_at:?}"))?;
        killed += usize::from(life.status.signal() == Some(SIGKILL));
        compactions += life.compactions;
        saved.extend(life.saved);

        found = check_replica(db, &saved, &found)
            .with_context(|| format!("after iteration {iteration}, killed {kill_at:?}"))?;
        let store = SqliteDatabase::open(db, [0xEE; 16])?;
        match &actor {
            None => actor = Some(store.actor_id()),
            Some(a) => ensure!(
                *a == store.actor_id(),
                "the replica's actor changed from {a} to {} across a crash",
                store.actor_id()
            ),
        }
    }
    ensure!(!saved.is_empty(), "the writer never saved anything");
    Ok(format!(
        "{iterations} writer lives ({killed} ended by SIGKILL), {} updates reported saved, \
         {} found, {compactions} compactions, all saved updates present once",
        saved.len(),
        found.len()
    ))
}

/// A running writer process and the threads reading its output.
struct Writer {
    child: Child,
    lines: Receiver<String>,
    stdout: JoinHandle<std::io::Result<String>>,
    stderr: JoinHandle<String>,
}

/// What one writer life left behind.
struct Life {
    status: ExitStatus,
    saved: Vec<EventId>,
    compactions: usize,
}

impl Writer {
    fn spawn(db: &Path, seed: u64) -> Result<Writer> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_status_writer"))
            .arg("--db")
            .arg(db)
            .args(["--count", &WRITER_COUNT.to_string()])
            .args(["--seed", &seed.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning status_writer")?;
        let (send, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        Ok(Writer {
            child,
            lines,
            stdout: thread::spawn(move || read_lines(stdout, send)),
            stderr: thread::spawn(move || read_all(stderr)),
        })
    }

    /// Kill the writer at `kill_at` and collect everything it reported.
    fn kill(mut self, kill_at: KillAt) -> Result<Life> {
        let mut lines = Vec::new();
        match kill_at {
            KillAt::AfterSaved(n) => {
                let deadline = Instant::now() + DEADLINE;
                while lines
                    .iter()
                    .filter(|l: &&String| l.starts_with("saved "))
                    .count()
                    < n
                {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match self.lines.recv_timeout(left) {
                        Ok(line) => lines.push(line),
                        // It exited by itself: the status below says why.
                        Err(RecvTimeoutError::Disconnected) => break,
                        Err(RecvTimeoutError::Timeout) => {
                            let _ = self.child.kill();
                            bail!(
                                "the writer reported fewer than {n} saved updates in {DEADLINE:?}"
                            )
                        }
                    }
                }
            }
            // The delay is the test's randomness, not a wait for anything.
            KillAt::AfterDelay(delay) => thread::sleep(delay),
        }
        self.child.kill().context("killing the writer")?;
        let status = self.child.wait().context("waiting for the killed writer")?;

        // Killed, the writer closed its end: read what is still in the pipe.
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    bail!("the writer's stdout stayed open after it died")
                }
            }
        }
        let unterminated = self
            .stdout
            .join()
            .expect("the stdout reader does not panic")
            .context("reading the writer's stdout")?;
        let stderr = self
            .stderr
            .join()
            .expect("the stderr reader does not panic");

        let ended_well = status.signal() == Some(SIGKILL) || status.success();
        ensure!(ended_well, "the writer failed ({status}): {stderr}");
        // A line is written in one write(2) below PIPE_BUF, so the kill cannot cut one.
        ensure!(
            unterminated.is_empty(),
            "the writer's last line was cut: {unterminated:?}"
        );

        let mut life = Life {
            status,
            saved: Vec::new(),
            compactions: 0,
        };
        for line in lines {
            if let Some(id) = line.strip_prefix("saved ") {
                life.saved
                    .push(id.parse().with_context(|| format!("bad line {line:?}"))?);
            } else if line.starts_with("compacted ") {
                life.compactions += 1;
            } else {
                bail!("unexpected line from the writer: {line:?}");
            }
        }
        Ok(life)
    }
}

/// Send each complete line; return a trailing fragment without a newline.
fn read_lines(stdout: ChildStdout, send: mpsc::Sender<String>) -> std::io::Result<String> {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(String::new());
        }
        let Some(line) = buf.strip_suffix(b"\n") else {
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        };
        if send
            .send(String::from_utf8_lossy(line).into_owned())
            .is_err()
        {
            return Ok(String::new()); // The test stopped listening.
        }
    }
}

fn read_all(stderr: ChildStderr) -> String {
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
    text
}

/// Check the replica as the kill left it; returns every event it holds.
fn check_replica(
    db: &Path,
    saved: &BTreeSet<EventId>,
    found_before: &BTreeSet<EventId>,
) -> Result<BTreeSet<EventId>> {
    // SQLite's own verdict first, on the file exactly as the kill left it.
    {
        let conn = rusqlite::Connection::open(db).context("opening with rusqlite")?;
        let problems = conn
            .prepare("PRAGMA integrity_check")?
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        ensure!(problems == ["ok"], "integrity_check: {problems:?}");
        let orphans = conn
            .prepare("PRAGMA foreign_key_check")?
            .query_map([], |_| Ok(()))?
            .count();
        ensure!(orphans == 0, "{orphans} rows break a foreign key");
    }

    let store = SqliteDatabase::open(db, [0xEE; 16]).context("reopening the replica")?;
    let mut found = BTreeSet::new();
    for (id, loaded) in store.load_all_documents()? {
        let doc = loaded.with_context(|| format!("document {id} does not load"))?;
        let missing = doc.get_missing_deps(&[]);
        ensure!(
            missing.is_empty(),
            "document {id} lacks changes its history depends on: {missing:?}"
        );
        let view = instance::read(&doc).with_context(|| format!("reading document {id}"))?;
        ensure!(view.id == id, "document {id} says it is {}", view.id);
        ensure!(
            view.malformed_events == 0,
            "document {id} has {} malformed events",
            view.malformed_events
        );
        // The raw log, before derivation dedupes by id: each event once.
        let (log, _) = instance::read_events(&doc)?;
        let mut in_log = BTreeSet::new();
        for event in &log {
            ensure!(
                in_log.insert(event.id),
                "event {} is in document {id} twice",
                event.id
            );
        }
        // The derived view: every logged event in its task's history.
        let derived: BTreeSet<EventId> = view
            .tasks
            .iter()
            .flat_map(|t| t.status.history.iter().map(|e| e.id))
            .collect();
        ensure!(
            derived == in_log,
            "document {id}: {} events in the log but {} in the derived histories",
            in_log.len(),
            derived.len()
        );
        for event in derived {
            ensure!(found.insert(event), "event {event} is in two documents");
        }
    }

    let lost: Vec<_> = saved.difference(&found).collect();
    ensure!(
        lost.is_empty(),
        "{} of {} updates reported saved are missing, e.g. {:?}",
        lost.len(),
        saved.len(),
        &lost[..lost.len().min(5)]
    );
    let vanished: Vec<_> = found_before.difference(&found).collect();
    ensure!(
        vanished.is_empty(),
        "{} events present after an earlier crash are gone, e.g. {:?}",
        vanished.len(),
        &vanished[..vanished.len().min(5)]
    );
    Ok(found)
}
