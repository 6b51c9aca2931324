//! Latency of the terminal's local API: from a status update's HTTP call to
//! its durable write (SQLite, synchronous=FULL) and the response, on the
//! real `pos-agent` binary with a realistic replica and the hub unreachable
//! (the offline path a worker waits on).
//!
//!   cargo run -p tests --release --bin pos_latency [-- --requests 2000]
//!
//! Builds `pos-agent` (release), writes a replica of `--days` days of
//! `--lists` daily lists with `--tasks` tasks each (every list in the
//! store's directory, some history on each, a roster of 20 workers),
//! starts the agent on it, and times `--requests` sequential
//! `POST /api/tasks/{task}/status` calls over one keep-alive connection
//! after a warm-up. Prints p50 / p99 / max in milliseconds.

use engine::storage::roles::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use chrono::{NaiveDate, TimeDelta, Utc};
use clap::Parser;
use engine::document::directory::{self, DirectoryEntry, PinHash, RosterWorker};
use engine::document::instance;
use engine::ids::{DocumentId, WorkerId};
use engine::model::Status;
use engine::storage::SqliteDatabase;
use tests::daily_lists::{daily_list, next_status, status_update, store, template};

#[derive(Parser, Debug)]
struct Args {
    /// Timed status updates.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Untimed ones first (connection, caches, page cache).
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    #[arg(long, default_value_t = 60)]
    days: u32,
    #[arg(long, default_value_t = 6)]
    lists: u32,
    #[arg(long, default_value_t = 25)]
    tasks: usize,
    /// The agent binary (default: build target/release/pos-agent).
    #[arg(long)]
    agent: Option<PathBuf>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

fn agent_binary(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "pos-agent",
            "--bin",
            "pos-agent",
        ])
        .current_dir(root())
        .status()
        .context("running cargo build")?;
    ensure!(status.success(), "building pos-agent failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or(root().join("target"));
    Ok(target.join("release/pos-agent"))
}

/// The replica a terminal holds after `days` days: every list in the
/// directory, a few status events on each task, the store's roster.
/// Returns today's task ids (the ones the benchmark updates).
fn build_replica(dir: &Path, a: &Args) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut st = SqliteDatabase::open(dir.join("agent.db"), [0x42; 16])?;
    st.set_meta("store_id", store().as_str().as_bytes())?;
    let dir_id = DocumentId::directory_of(&store());
    let mut directory = directory::create(&store(), automerge::ActorId::from([0x11; 16]));
    for n in 0..20u8 {
        let id: WorkerId = format!("w{n}").parse()?;
        let rec = RosterWorker {
            name: format!("Worker {n}"),
            role: if n == 0 { "manager" } else { "cashier" }.parse()?,
            groups: vec!["floor".parse()?],
            pin: Some(PinHash::new(&id, "1234", [n; 16])?.to_string()),
        };
        directory::put_worker(&mut directory, &id, &rec, 0)?;
    }
    let today: NaiveDate = Utc::now().date_naive();
    let first = today - TimeDelta::days(i64::from(a.days) - 1);
    let mut todays = Vec::new();
    let mut seq = 0u64;
    for day in 0..a.days {
        let date = first + TimeDelta::days(i64::from(day));
        for list in 0..a.lists {
            let content = daily_list(list, date, a.tasks);
            let mut doc = instance::create(&content, automerge::ActorId::from([0x22; 16]))?;
            // History: each task started and completed once.
            for t in &content.tasks {
                let mut status = Status::NotStarted;
                for _ in 0..2 {
                    status = next_status(status);
                    seq += 1;
                    let mut id = [0u8; 16];
                    id[..8].copy_from_slice(&seq.to_be_bytes());
                    let at = date.and_hms_opt(12, 0, 0).expect("noon").and_utc();
                    instance::record_status(
                        &mut doc,
                        &status_update(id, t.id, status, 1),
                        at.timestamp_millis(),
                    )?;
                }
                if date == today {
                    todays.push(t.id.to_string());
                }
            }
            st.append_changes(content.id, &doc.get_changes(&[]))?;
            directory::put_entry(
                &mut directory,
                content.id,
                &DirectoryEntry {
                    name: content.meta.name.clone(),
                    date,
                    template: Some(template(list)),
                    created_by: content.meta.created_by.clone(),
                },
                0,
            )?;
        }
    }
    st.append_changes(dir_id, &directory.get_changes(&[]))?;
    st.compact_some(1, usize::MAX)?;
    Ok(todays)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let a = Args::parse();
    let bin = agent_binary(a.agent.clone())?;
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("agent");
    let t0 = Instant::now();
    let tasks = build_replica(&data, &a)?;
    ensure!(!tasks.is_empty(), "no lists for today");
    eprintln!(
        "replica: {} lists x {} tasks over {} days, built in {:.1} s",
        a.days * a.lists,
        a.tasks,
        a.days,
        t0.elapsed().as_secs_f64()
    );
    // Nothing listens on port 9: the agent works offline throughout.
    let mut child = Command::new(&bin)
        .arg("run")
        .arg("--data")
        .arg(&data)
        .args(["--hub", "ws://127.0.0.1:9/sync", "--token", "offline"])
        .args(["--store", store().as_str(), "--terminal", "pos-1"])
        .args(["--http", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let line = lines.next().context("the agent printed nothing")??;
    let Some(addr) = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
    else {
        let _ = child.kill();
        bail!("no address in {line:?}");
    };
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let statuses = ["in_progress", "completed", "reopened"];
    let mut timings = Vec::with_capacity(a.requests);
    let result: Result<()> = async {
        for i in 0..a.warmup + a.requests {
            // Round robin over today's tasks; each one goes in progress,
            // completed, reopened, ... (the history makes it completed).
            let task = &tasks[i % tasks.len()];
            let status = statuses[(i / tasks.len()) % statuses.len()];
            let body = format!(r#"{{"status": "{status}", "worker": "w{}"}}"#, i % 20);
            let start = Instant::now();
            let r = client
                .post(format!("{base}/api/tasks/{task}/status"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            let code = r.status();
            let text = r.text().await?;
            let took = start.elapsed();
            ensure!(code.as_u16() == 201, "{code}: {text}");
            if i >= a.warmup {
                timings.push(took);
            }
        }
        Ok(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result?;
    timings.sort();
    println!(
        "POS local API, status update (call -> durable write -> response), {} requests offline:",
        timings.len()
    );
    println!(
        "  p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        ms(percentile(&timings, 0.50)),
        ms(percentile(&timings, 0.99)),
        ms(*timings.last().expect("some requests"))
    );
    Ok(())
}
