//! Child process of the crash-durability test: records status updates on a
//! replica as fast as it can and reports each one on stdout only once it is
//! durable, so the test can kill it at any moment and check that every
//! reported update survived.
//!
//! Protocol (stdout, one line each, flushed):
//! - `saved <event id>`: `append_changes` returned Ok for this event.
//! - `compacted <document id>`: a compaction committed.
//!
//! Exits 0 after `--count` updates; the test normally kills it long before.

use engine::storage::roles::*;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use automerge::Automerge;
use chrono::NaiveDate;
use clap::Parser;
use engine::document::instance;
use engine::ids::{DocumentId, TaskId};
use engine::model::Status;
use engine::storage::SqliteDatabase;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tests::daily_lists::{daily_list, next_status, status_update};

/// How many lists the writer works on, and their size. Small, so kills
/// often land in compaction too.
const LISTS: u32 = 3;
const TASKS_PER_LIST: usize = 8;

/// One update in this many is followed by a compaction of its document.
const COMPACT_ONE_IN: u32 = 8;

#[derive(Parser)]
#[command(about = "Write status updates to a replica until killed (crash test child)")]
struct Args {
    /// Replica database file; created if missing.
    #[arg(long)]
    db: PathBuf,
    /// Number of status updates to record before exiting.
    #[arg(long)]
    count: u64,
    /// Seed for the actor of a new replica, event ids and every choice made.
    #[arg(long)]
    seed: u64,
}

/// One list the writer works on, with the status it last recorded per task.
struct List {
    id: DocumentId,
    doc: Automerge,
    tasks: Vec<TaskId>,
    status: HashMap<TaskId, Status>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut store = SqliteDatabase::open(&args.db, rng.gen())
        .with_context(|| format!("opening replica {}", args.db.display()))?;
    let mut lists = open_lists(&mut store)?;
    let mut out = std::io::stdout().lock();

    for _ in 0..args.count {
        let list = &mut lists[rng.gen_range(0..LISTS as usize)];
        let task = list.tasks[rng.gen_range(0..list.tasks.len())];
        let current = list
            .status
            .get(&task)
            .copied()
            .unwrap_or(Status::NotStarted);
        let update = status_update(rng.gen(), task, next_status(current), rng.gen_range(1..5));
        let (event, change) = instance::record_status(&mut list.doc, &update, wall_ms())
            .with_context(|| format!("recording {update:?}"))?;
        store
            .append_changes(list.id, &[change])
            .with_context(|| format!("saving event {} of {}", event.id, list.id))?;
        // Only now is it durable: report it.
        writeln!(out, "saved {}", event.id).context("reporting a saved event")?;
        out.flush().context("reporting a saved event")?;
        list.status.insert(task, event.status);

        if rng.gen_ratio(1, COMPACT_ONE_IN) {
            store
                .compact(list.id)
                .with_context(|| format!("compacting {}", list.id))?;
            writeln!(out, "compacted {}", list.id).context("reporting a compaction")?;
            out.flush().context("reporting a compaction")?;
        }
    }
    Ok(())
}

/// Load the writer's lists, materializing (and persisting) any that a
/// previous run was killed before saving.
fn open_lists(store: &mut SqliteDatabase) -> Result<Vec<List>> {
    let date = NaiveDate::from_ymd_opt(2026, 11, 26).expect("a valid date");
    (0..LISTS)
        .map(|n| {
            let content = daily_list(n, date, TASKS_PER_LIST);
            let id = content.id;
            let doc = match store.load_document(id)? {
                Some(doc) => doc,
                None => {
                    // Deterministic changes, one transaction: a kill leaves
                    // the whole list or none of it.
                    let changes = instance::materialize(&content)?;
                    store.append_changes(id, &changes)?;
                    store
                        .load_document(id)?
                        .context("a document just saved does not load")?
                }
            };
            let view = instance::read(&doc).with_context(|| format!("reading list {id}"))?;
            ensure!(
                view.tasks.len() == TASKS_PER_LIST,
                "list {id} has {} tasks, expected {TASKS_PER_LIST}",
                view.tasks.len()
            );
            Ok(List {
                id,
                tasks: view.tasks.iter().map(|t| t.spec.id).collect(),
                status: view
                    .tasks
                    .iter()
                    .map(|t| (t.spec.id, t.status.current))
                    .collect(),
                doc,
            })
        })
        .collect()
}

fn wall_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds fit in i64 until year 292 million")
}
