//! Workload 4: a terminal's replica holding a year of daily lists (built
//! by `load_bench`): cold start (`SqliteDatabase::open` + `Agent::open`), then the
//! latency of local status updates, each durable (SQLite commit) before
//! `Agent::record_status` returns.

use engine::storage::roles::*;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{NaiveDate, NaiveTime, TimeDelta};
use engine::ids::{DocumentId, StoreId};
use engine::model::Status;
use engine::protocol::wire::{PeerId, StorageId, WireLimits};
use engine::replica::agent::{Agent, AgentConfig};
use engine::storage::SqliteDatabase;

use super::fleet::percentile;
use crate::daily_lists::{self, status_update, template};
use crate::load_bench::{self, Sizes};

#[derive(Debug, Clone, Default)]
pub struct AgentLatency {
    pub documents: usize,
    pub cold_start: Duration,
    pub updates: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// Build (unless `db` exists) and measure. `sizes` as in `bench load`.
pub fn run(db: &Path, sizes: Sizes, updates: usize) -> Result<AgentLatency> {
    if !db.exists() {
        if let Some(dir) = db.parent() {
            std::fs::create_dir_all(dir)?;
        }
        load_bench::run(db, sizes, 1)?;
    }
    let first = NaiveDate::from_ymd_opt(2026, 1, 1).expect("a valid date");
    let newest = first + TimeDelta::days(i64::from(sizes.days) - 1);
    let now = newest
        .and_time(NaiveTime::from_hms_opt(12, 0, 0).expect("a valid time"))
        .and_utc()
        .timestamp_millis();
    let store_id: StoreId = daily_lists::store();
    let cfg = AgentConfig {
        store_id: store_id.clone(),
        peer_id: PeerId::new("bench-terminal"),
        storage_id: StorageId::new("bench-storage"),
        wire: WireLimits::default(),
    };
    let started = Instant::now();
    let store = SqliteDatabase::open(db, *uuid::Uuid::new_v4().as_bytes())?;
    let documents = store.list_documents()?.len();
    let mut agent = Agent::open(store, cfg, now)?;
    let cold_start = started.elapsed();

    let lists: Vec<DocumentId> = (0..sizes.lists)
        .map(|l| DocumentId::recurring_instance(template(l), &store_id, newest))
        .collect();
    let mut times = Vec::with_capacity(updates);
    for i in 0..updates {
        let list = lists[i % lists.len()];
        let view = agent.list(list)?;
        let task = view.tasks[(i / lists.len()) % view.tasks.len()].spec.id;
        let status = if (i / lists.len() / view.tasks.len()).is_multiple_of(2) {
            Status::InProgress
        } else {
            Status::Completed
        };
        let update = status_update(rand::random(), task, status, 1);
        let t = Instant::now();
        agent
            .record_status(list, &update, now + i as i64)
            .map_err(|e| match e {
                engine::replica::agent::AgentError::UnknownWorker(w) => anyhow::anyhow!(
                    "{w} is not on the roster of the replica at {}: it was built before its \
                     workers were put on the roster; delete it so it is built again",
                    db.display()
                ),
                e => e.into(),
            })?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(AgentLatency {
        documents,
        cold_start,
        updates,
        p50: percentile(&times, 0.5),
        p99: percentile(&times, 0.99),
        max: times.last().copied().unwrap_or_default(),
    })
}
