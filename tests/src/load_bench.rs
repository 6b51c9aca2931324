//! The load benchmark: how long a replica holding `days x lists` daily lists
//! takes to open, to load every document and to derive every list's view,
//! compacted and as bare change rows, plus where that time goes, and how
//! long the agent takes to open it (loading only its working set).
//! `cargo run -p tests --release --bin bench -- load` prints it; a smoke
//! test runs it at tiny sizes so it keeps working.

use engine::storage::roles::*;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use automerge::{Automerge, Change, LoadOptions, VerificationMode};
use chrono::{NaiveDate, NaiveTime, TimeDelta};
use engine::document::directory::{self, DirectoryEntry};
use engine::document::instance;
use engine::ids::DocumentId;
use engine::model::Status;
use engine::protocol::wire::{PeerId, StorageId, WireLimits};
use engine::replica::agent::{Agent, AgentConfig};
use engine::storage::SqliteDatabase;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::daily_lists::{daily_list, next_status, status_update, store, template};

/// Actor bytes for opening an existing replica: never used, it has one.
const EXISTING: [u8; 16] = [0xBE; 16];

/// How big the replica is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub days: u32,
    pub lists: u32,
    pub tasks: usize,
    /// Status events per task.
    pub events: usize,
}

impl Sizes {
    /// The target: a year of daily lists.
    pub const YEAR: Sizes = Sizes {
        days: 365,
        lists: 5,
        tasks: 20,
        events: 3,
    };
    /// Small enough for a unit test, big enough to touch every code path.
    pub const SMOKE: Sizes = Sizes {
        days: 2,
        lists: 2,
        tasks: 3,
        events: 3,
    };

    pub fn documents(&self) -> usize {
        self.days as usize * self.lists as usize
    }

    pub fn events_total(&self) -> usize {
        self.documents() * self.tasks * self.events
    }
}

/// Durations of repeated runs of one measurement.
#[derive(Debug, Clone)]
pub struct Timings {
    sorted: Vec<Duration>,
}

impl Timings {
    /// Run `f` `runs` times, timing each call; what it returns is dropped
    /// after the clock stops (closing a store is not part of opening it).
    fn measure<T>(runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<Timings> {
        ensure!(runs > 0, "need at least one run");
        let mut sorted = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            let out = f()?;
            sorted.push(start.elapsed());
            drop(out);
        }
        sorted.sort();
        Ok(Timings { sorted })
    }

    pub fn min(&self) -> Duration {
        self.sorted[0]
    }

    pub fn median(&self) -> Duration {
        self.sorted[self.sorted.len() / 2]
    }

    pub fn max(&self) -> Duration {
        self.sorted[self.sorted.len() - 1]
    }
}

/// The pieces of open + load + read, each timed alone (median of runs).
#[derive(Debug, Clone)]
pub struct Phases {
    /// `PRAGMA quick_check`, which `SqliteDatabase::open` runs on every open.
    pub quick_check: Timings,
    /// `SqliteDatabase::open` as a whole (quick check, pragmas, migrations, identity).
    pub open: Timings,
    /// Reading every snapshot and change row out of SQLite.
    pub sql_read: Timings,
    /// `Automerge::load` of each snapshot plus `apply_changes` of its rows, as the store does.
    pub decode: Timings,
    /// The same with `VerificationMode::DontCheck` (heads not re-hashed).
    pub decode_unverified: Timings,
    /// `instance::read` of every loaded document (status derivation included).
    pub derive: Timings,
    /// `ReadDoc::hydrate` of every loaded document: one pass over each,
    /// roughly what a reader that walks each map once instead of one `get`
    /// per field would cost.
    pub hydrate: Timings,
}

/// One replica file and how long it takes to open.
#[derive(Debug, Clone)]
pub struct ReplicaReport {
    pub label: &'static str,
    pub path: PathBuf,
    pub documents: usize,
    /// Change rows not folded into a snapshot.
    pub change_rows: usize,
    /// Database file plus any write-ahead log.
    pub file_bytes: u64,
    /// Free pages in the file (compaction deletes rows; nothing vacuums).
    pub free_bytes: u64,
    /// Status events seen through the derived views: proof the measured
    /// runs did the whole job.
    pub events_read: usize,
    /// `SqliteDatabase::open` + `list_documents`.
    pub open_list: Timings,
    /// `SqliteDatabase::open` + `load_all_documents`.
    pub open_load: Timings,
    /// `SqliteDatabase::open` + `load_all_documents` + `instance::read` of each.
    pub open_load_read: Timings,
    /// `SqliteDatabase::open` + `load_document` + `instance::read` of the newest
    /// day's lists only: what an agent that loads lazily does at start.
    /// `None` for an existing replica (its days are unknown).
    pub open_newest_day: Option<Timings>,
    /// `Agent::open` at noon (UTC) of the newest day in the directory, and
    /// what it loaded. `None` when the replica has no directory (built
    /// before the benchmark wrote one).
    pub agent: Option<AgentOpen>,
    pub phases: Phases,
}

/// The pos-agent opening the replica: `Agent::open` loads the directory and
/// the lists of the last three days only.
#[derive(Debug, Clone)]
pub struct AgentOpen {
    /// `SqliteDatabase::open` + `Agent::open`.
    pub open: Timings,
    /// The same + `Agent::lists()`: the views the terminal shows first.
    pub open_lists: Timings,
    /// Documents in memory after `Agent::open` (the directory included).
    pub loaded: usize,
}

/// Everything one benchmark run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// `None` when an existing replica was measured.
    pub sizes: Option<Sizes>,
    pub runs: usize,
    /// Building the changes-only replica (one transaction per list).
    pub build: Option<Duration>,
    /// Compacting every document of the copy.
    pub compaction: Option<Duration>,
    pub replicas: Vec<ReplicaReport>,
}

/// Build (unless `db` exists) and measure. A new build leaves the compacted
/// replica at `db` and the changes-only one next to it; an existing `db` is
/// measured as it is.
pub fn run(db: &Path, sizes: Sizes, runs: usize) -> Result<Report> {
    if db.exists() {
        return Ok(Report {
            sizes: None,
            runs,
            build: None,
            compaction: None,
            replicas: vec![measure(db, "existing", runs, &[])?],
        });
    }
    let changes_only = suffixed(db, ".changes-only");
    if changes_only.exists() {
        bail!(
            "{} is left from an earlier run; remove it or choose another --db",
            changes_only.display()
        );
    }
    let build = build(&changes_only, sizes)
        .with_context(|| format!("building {}", changes_only.display()))?;
    copy_replica(&changes_only, db)?;
    let compaction = compact_all(db).with_context(|| format!("compacting {}", db.display()))?;
    let newest = newest_day(sizes);
    let replicas = vec![
        measure(db, "compacted", runs, &newest)?,
        measure(&changes_only, "changes only", runs, &newest)?,
    ];
    for r in &replicas {
        ensure!(
            r.documents == sizes.documents() && r.events_read == sizes.events_total(),
            "{} holds {} documents and {} events, built {} and {}",
            r.label,
            r.documents,
            r.events_read,
            sizes.documents(),
            sizes.events_total()
        );
    }
    Ok(Report {
        sizes: Some(sizes),
        runs,
        build: Some(build),
        compaction: Some(compaction),
        replicas,
    })
}

/// `path` with `suffix` appended to its file name (SQLite names its log so).
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).expect("a valid date")
}

/// The lists of the last day `build` made.
fn newest_day(sizes: Sizes) -> Vec<DocumentId> {
    let date = first_day() + TimeDelta::days(i64::from(sizes.days) - 1);
    (0..sizes.lists)
        .map(|list| DocumentId::recurring_instance(template(list), &store(), date))
        .collect()
}

/// The replica an agent holds after `sizes.days` days, before any
/// compaction: every list materialized and entered in the store's
/// directory, every task updated a few times.
fn build(path: &Path, sizes: Sizes) -> Result<Duration> {
    let start = Instant::now();
    let mut rng = StdRng::seed_from_u64(0x10AD);
    let store_id = store();
    let mut store = SqliteDatabase::open(path, rng.gen())?;
    // One directory entry per list, one change each, as the hub's
    // `publish` writes them.
    let dir_id = DocumentId::directory_of(&store_id);
    let mut dir = directory::create(&store_id, store.actor_id());
    store.append_changes(dir_id, &dir.get_changes(&[]))?;
    // The workers the status events name, on the roster: a terminal
    // records status only for them.
    for w in 1..=4 {
        let rec = directory::RosterWorker {
            name: format!("Worker {w}"),
            role: "cashier".parse()?,
            groups: Vec::new(),
            pin: None,
        };
        let wall = first_day()
            .and_time(NaiveTime::MIN)
            .and_utc()
            .timestamp_millis();
        let changes = directory::put_worker(&mut dir, &format!("w{w}").parse()?, &rec, wall)?;
        store.append_changes(dir_id, &changes)?;
    }
    for day in 0..sizes.days {
        let date = first_day() + TimeDelta::days(day.into());
        for list in 0..sizes.lists {
            let content = daily_list(list, date, sizes.tasks);
            let mut changes = instance::materialize(&content)?;
            let mut doc = Automerge::new();
            doc.apply_changes(changes.iter().cloned())?;
            doc.set_actor(store.actor_id());
            for task in &content.tasks {
                let start = task.start.expect("fixture tasks have a start");
                let mut status = Status::NotStarted;
                for n in 0..sizes.events {
                    status = next_status(status);
                    let update = status_update(rng.gen(), task.id, status, n as u32 % 4 + 1);
                    let at = start + TimeDelta::minutes(10 * n as i64);
                    let (_, change) =
                        instance::record_status(&mut doc, &update, at.timestamp_millis())?;
                    changes.push(change);
                }
            }
            // One transaction per list rather than one per tap: the same
            // rows, without ~100k fsyncs that would only slow the build.
            store.append_changes(content.id, &changes)?;
            let entry = DirectoryEntry {
                name: content.meta.name.clone(),
                date,
                template: content.meta.template,
                created_by: content.meta.created_by.clone(),
            };
            let wall = date.and_time(NaiveTime::MIN).and_utc().timestamp_millis();
            if let Some(c) = directory::put_entry(&mut dir, content.id, &entry, wall)? {
                store.append_changes(dir_id, &[c])?;
            }
        }
    }
    Ok(start.elapsed())
}

fn is_directory(id: DocumentId) -> bool {
    id == DocumentId::directory_of(&store())
}

/// Noon (UTC) of the newest day the replica's directory lists, or `None`
/// without a directory.
fn newest_in_directory(store: &SqliteDatabase) -> Result<Option<i64>> {
    let Some(doc) = store.load_document(DocumentId::directory_of(&crate::daily_lists::store()))?
    else {
        return Ok(None);
    };
    let newest = directory::read(&doc)?
        .entries
        .values()
        .map(|e| e.date)
        .max();
    Ok(newest.map(|d| {
        d.and_time(NaiveTime::from_hms_opt(12, 0, 0).expect("a valid time"))
            .and_utc()
            .timestamp_millis()
    }))
}

fn agent_config() -> AgentConfig {
    AgentConfig {
        store_id: store(),
        peer_id: PeerId::new("bench-terminal"),
        storage_id: StorageId::new("bench-storage"),
        wire: WireLimits::default(),
    }
}

/// Time `Agent::open` as the terminal does at start, at `now_ms`.
fn agent_open(path: &Path, runs: usize, now_ms: i64) -> Result<AgentOpen> {
    let open = Timings::measure(runs, || {
        Ok(Agent::open(
            SqliteDatabase::open(path, EXISTING)?,
            agent_config(),
            now_ms,
        )?)
    })?;
    let open_lists = Timings::measure(runs, || {
        let agent = Agent::open(
            SqliteDatabase::open(path, EXISTING)?,
            agent_config(),
            now_ms,
        )?;
        let lists = agent.lists();
        ensure!(!lists.is_empty(), "the agent's working set is empty");
        Ok((agent, lists))
    })?;
    let loaded = Agent::open(
        SqliteDatabase::open(path, EXISTING)?,
        agent_config(),
        now_ms,
    )?
    .loaded_count();
    Ok(AgentOpen {
        open,
        open_lists,
        loaded,
    })
}

/// Copy a closed replica (its log too, if closing left one).
fn copy_replica(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    let wal = suffixed(from, "-wal");
    if wal.exists() {
        fs::copy(&wal, suffixed(to, "-wal")).context("copying the write-ahead log")?;
    }
    Ok(())
}

/// What a background compaction task would do, for every document at once.
fn compact_all(path: &Path) -> Result<Duration> {
    let mut store = SqliteDatabase::open(path, EXISTING)?;
    let start = Instant::now();
    for doc in store.documents_needing_compaction(1)? {
        store.compact(doc)?;
    }
    Ok(start.elapsed())
}

fn file_bytes(path: &Path) -> Result<u64> {
    let main = fs::metadata(path)
        .with_context(|| format!("reading the size of {}", path.display()))?
        .len();
    Ok(main + fs::metadata(suffixed(path, "-wal")).map_or(0, |m| m.len()))
}

fn free_bytes(path: &Path) -> Result<u64> {
    let conn = rusqlite::Connection::open(path)?;
    let pages: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(u64::try_from(pages * page_size).unwrap_or(0))
}

fn measure(
    path: &Path,
    label: &'static str,
    runs: usize,
    newest: &[DocumentId],
) -> Result<ReplicaReport> {
    let (documents, change_rows, agent_now) = {
        let store = SqliteDatabase::open(path, EXISTING)?;
        let docs = store.list_documents()?;
        let mut rows = 0;
        for doc in &docs {
            rows += store.change_row_count(*doc)?;
        }
        let lists = docs.iter().filter(|d| !is_directory(**d)).count();
        (lists, rows, newest_in_directory(&store)?)
    };

    let open_list = Timings::measure(runs, || {
        let store = SqliteDatabase::open(path, EXISTING)?;
        let docs = store.list_documents()?;
        Ok((store, docs))
    })?;
    let open_load = Timings::measure(runs, || {
        let store = SqliteDatabase::open(path, EXISTING)?;
        let docs = store
            .load_all_documents()?
            .into_iter()
            .map(|(id, doc)| doc.with_context(|| format!("loading {id}")))
            .collect::<Result<Vec<_>>>()?;
        Ok((store, docs))
    })?;
    let mut events_read = 0;
    let open_load_read = Timings::measure(runs, || {
        let store = SqliteDatabase::open(path, EXISTING)?;
        let mut views = Vec::new();
        for (id, doc) in store.load_all_documents()? {
            let doc = doc.with_context(|| format!("loading {id}"))?;
            if !is_directory(id) {
                views.push(instance::read(&doc).with_context(|| format!("reading {id}"))?);
            }
        }
        events_read = views
            .iter()
            .flat_map(|v| &v.tasks)
            .map(|t| t.status.history.len())
            .sum();
        Ok((store, views))
    })?;
    let open_newest_day = if newest.is_empty() {
        None
    } else {
        Some(Timings::measure(runs, || {
            let store = SqliteDatabase::open(path, EXISTING)?;
            let mut views = Vec::new();
            for id in newest {
                let doc = store
                    .load_document(*id)?
                    .with_context(|| format!("{id} of the newest day is not stored"))?;
                views.push(instance::read(&doc)?);
            }
            Ok((store, views))
        })?)
    };

    Ok(ReplicaReport {
        label,
        path: path.to_path_buf(),
        documents,
        change_rows,
        file_bytes: file_bytes(path)?,
        free_bytes: free_bytes(path)?,
        events_read,
        open_list,
        open_load,
        open_load_read,
        open_newest_day,
        agent: agent_now
            .map(|now| agent_open(path, runs, now))
            .transpose()?,
        phases: phases(path, runs)?,
    })
}

/// One document's stored bytes, read straight from the file.
struct StoredBytes {
    /// Not a list: the store's directory.
    directory: bool,
    snapshot: Option<Vec<u8>>,
    changes: Vec<Vec<u8>>,
}

/// Time each piece of open + load + read on its own. The SQL mirrors the
/// storage schema (v2): a benchmark may look past the `Store`.
fn phases(path: &Path, runs: usize) -> Result<Phases> {
    let quick_check = Timings::measure(runs, || {
        let conn = rusqlite::Connection::open(path)?;
        let verdict: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        ensure!(verdict == "ok", "quick_check: {verdict}");
        Ok(conn)
    })?;
    let open = Timings::measure(runs, || Ok(SqliteDatabase::open(path, EXISTING)?))?;

    let conn = rusqlite::Connection::open(path)?;
    let mut stored = Vec::new();
    let sql_read = Timings::measure(runs, || {
        stored = read_bytes(&conn)?;
        Ok(())
    })?;
    let decode = Timings::measure(runs, || decode_all(&stored, VerificationMode::Check))?;
    let decode_unverified =
        Timings::measure(runs, || decode_all(&stored, VerificationMode::DontCheck))?;
    let docs = decode_all(&stored, VerificationMode::Check)?;
    let lists: Vec<&Automerge> = docs
        .iter()
        .zip(&stored)
        .filter(|(_, s)| !s.directory)
        .map(|(d, _)| d)
        .collect();
    let derive = Timings::measure(runs, || {
        lists
            .iter()
            .map(|d| Ok(instance::read(*d)?))
            .collect::<Result<Vec<_>>>()
    })?;
    let hydrate = Timings::measure(runs, || {
        Ok(docs.iter().map(|d| d.hydrate(None)).collect::<Vec<_>>())
    })?;
    Ok(Phases {
        quick_check,
        open,
        sql_read,
        decode,
        decode_unverified,
        derive,
        hydrate,
    })
}

fn read_bytes(conn: &rusqlite::Connection) -> Result<Vec<StoredBytes>> {
    let tx = conn.unchecked_transaction()?;
    let mut docs = tx.prepare("SELECT doc_id, snapshot FROM documents ORDER BY doc_id")?;
    let mut changes = tx.prepare("SELECT bytes FROM changes WHERE doc_id = ?1 ORDER BY id")?;
    let mut out = Vec::new();
    let mut rows = docs.query([])?;
    while let Some(row) = rows.next()? {
        let id: Vec<u8> = row.get(0)?;
        let directory = <[u8; 16]>::try_from(id.as_slice())
            .is_ok_and(|b| is_directory(DocumentId(uuid::Uuid::from_bytes(b))));
        out.push(StoredBytes {
            directory,
            snapshot: row.get(1)?,
            changes: changes
                .query_map([id], |r| r.get(0))?
                .collect::<Result<_, _>>()?,
        });
    }
    Ok(out)
}

fn decode_all(stored: &[StoredBytes], mode: VerificationMode) -> Result<Vec<Automerge>> {
    stored
        .iter()
        .map(|s| {
            let mut doc = match &s.snapshot {
                Some(bytes) => {
                    Automerge::load_with_options(bytes, LoadOptions::new().verification_mode(mode))?
                }
                None => Automerge::new(),
            };
            let changes = s
                .changes
                .iter()
                .map(|b| Change::from_bytes(b.clone()))
                .collect::<Result<Vec<_>, _>>()?;
            doc.apply_changes(changes)?;
            Ok(doc)
        })
        .collect()
}

fn cell(t: &Timings) -> String {
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    format!("{} / {} / {}", ms(t.min()), ms(t.median()), ms(t.max()))
}

/// Rows of the report's table: a label and one cell per replica.
type Row = (&'static str, fn(&ReplicaReport) -> String);

const ROWS: &[Row] = &[
    ("file size, MB (of which free pages)", |r| {
        format!(
            "{:.1} ({:.1})",
            r.file_bytes as f64 / 1e6,
            r.free_bytes as f64 / 1e6
        )
    }),
    ("documents (lists; plus the directory)", |r| {
        r.documents.to_string()
    }),
    ("change rows not in a snapshot", |r| {
        r.change_rows.to_string()
    }),
    ("**open + list documents**", |r| cell(&r.open_list)),
    ("**open + load all documents**", |r| cell(&r.open_load)),
    ("**open + load all + read all views**", |r| {
        cell(&r.open_load_read)
    }),
    ("**open + load + read newest day only**", |r| {
        r.open_newest_day.as_ref().map_or("-".into(), cell)
    }),
    ("**agent open (lazy)**", |r| {
        r.agent.as_ref().map_or("-".into(), |a| cell(&a.open))
    }),
    ("**agent open + `lists()` (working set views)**", |r| {
        r.agent.as_ref().map_or("-".into(), |a| cell(&a.open_lists))
    }),
    ("documents the agent loads at open", |r| {
        r.agent
            .as_ref()
            .map_or("-".into(), |a| a.loaded.to_string())
    }),
    ("phase: `PRAGMA quick_check`", |r| {
        cell(&r.phases.quick_check)
    }),
    ("phase: `SqliteDatabase::open`", |r| cell(&r.phases.open)),
    ("phase: SQL read of every row", |r| cell(&r.phases.sql_read)),
    ("phase: Automerge decode (load + apply)", |r| {
        cell(&r.phases.decode)
    }),
    ("phase: decode, heads unverified", |r| {
        cell(&r.phases.decode_unverified)
    }),
    ("phase: `instance::read` of all", |r| cell(&r.phases.derive)),
    ("phase: `hydrate` of all (one pass each)", |r| {
        cell(&r.phases.hydrate)
    }),
];

/// A Markdown table, ready for BENCHMARKS.md.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.sizes {
            Some(s) => writeln!(
                f,
                "Replica: {} days x {} lists x {} tasks x {} status events = {} documents, \
                 {} events.",
                s.days,
                s.lists,
                s.tasks,
                s.events,
                s.documents(),
                s.events_total()
            )?,
            None => writeln!(f, "Replica: an existing file.")?,
        }
        if let (Some(b), Some(c)) = (self.build, self.compaction) {
            writeln!(
                f,
                "Built in {:.1} s (one transaction per list), compacted in {:.1} s.",
                b.as_secs_f64(),
                c.as_secs_f64()
            )?;
        }
        writeln!(
            f,
            "{} runs of each measurement, page cache warm; times in ms, min / median / max.\n",
            self.runs
        )?;
        write!(f, "| |")?;
        for r in &self.replicas {
            write!(f, " {} |", r.label)?;
        }
        write!(f, "\n|---|")?;
        for _ in &self.replicas {
            write!(f, "---|")?;
        }
        writeln!(f)?;
        for (label, value) in ROWS {
            write!(f, "| {label} |")?;
            for r in &self.replicas {
                write!(f, " {} |", value(r))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark at tiny sizes: it builds, measures real work, and its
    /// numbers hang together. Keeps the bench from rotting between uses.
    #[test]
    fn smoke() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = dir.path().join("replica.sqlite3");
        let report = run(&db, Sizes::SMOKE, 2).expect("the benchmark runs");
        assert_eq!(report.replicas.len(), 2);
        let [compacted, changes_only] = &report.replicas[..] else {
            unreachable!()
        };
        for r in [compacted, changes_only] {
            assert_eq!(r.documents, Sizes::SMOKE.documents(), "{}", r.label);
            assert_eq!(r.events_read, Sizes::SMOKE.events_total(), "{}", r.label);
            assert!(r.file_bytes > 0, "{}", r.label);
            for t in [
                &r.open_list,
                &r.open_load,
                &r.open_load_read,
                &r.phases.decode,
            ] {
                assert!(t.min() > Duration::ZERO && t.min() <= t.median() && t.median() <= t.max());
            }
        }
        assert_eq!(compacted.change_rows, 0, "compaction folded every row");
        let per_list = 1 + Sizes::SMOKE.tasks + 1 + Sizes::SMOKE.tasks * Sizes::SMOKE.events;
        // The directory: its genesis, the roster (its genesis and the four
        // workers the events name), and one entry per list.
        let directory = 1 + (1 + 4) + Sizes::SMOKE.documents();
        assert_eq!(
            changes_only.change_rows,
            Sizes::SMOKE.documents() * per_list + directory
        );
        assert!(report.to_string().contains("open + load all"));
        assert!(compacted.open_newest_day.is_some());
        for r in [compacted, changes_only] {
            let agent = r.agent.as_ref().expect("the replica has a directory");
            // Two days of lists, both within the last three days, and the directory.
            assert_eq!(agent.loaded, Sizes::SMOKE.documents() + 1, "{}", r.label);
            assert!(agent.open.min() > Duration::ZERO);
        }

        // A second run measures the existing compacted file without rebuilding.
        let again = run(&db, Sizes::SMOKE, 1).expect("measuring an existing replica");
        assert_eq!(again.build, None);
        assert_eq!(again.replicas[0].change_rows, 0);
    }
}
