//! The benchmark's world: N stores, each with L instance lists of T tasks,
//! a token per store, and the hub's data directory holding all of it,
//! built in-process through the `Hub` (untimed) and cached between runs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use automerge::{Automerge, ChangeHash};
use chrono::NaiveDate;
use engine::document::instance;
use engine::ids::{DocumentId, Principal, StoreId, TaskId, TemplateId};
use engine::model::{CreatedBy, InstanceContent, ListMeta, Priority, TaskSpec};
use engine::protocol::wire::{PeerId, StorageId};
use engine::replica::hub::{Hub, HubConfig, HubLimits};
use engine::storage::{SqliteDatabase, StoreRecord};
use uuid::Uuid;

/// The admin token the benchmark's hub is started with.
pub const ADMIN_TOKEN: &str = "netbench-admin-token";

/// Shape of the world (the workloads' sizes are elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorldSizes {
    pub stores: usize,
    pub lists: usize,
    pub tasks: usize,
}

/// Ids of everything in the world; cheap to recompute from the sizes.
#[derive(Debug, Clone)]
pub struct World {
    pub sizes: WorldSizes,
    pub stores: Vec<StoreId>,
}

pub fn store_id(n: usize) -> StoreId {
    format!("bench-{n:05}").parse().expect("a valid store code")
}

pub fn store_token(n: usize) -> String {
    format!("netbench-store-{n:05}")
}

fn template(list: usize) -> TemplateId {
    TemplateId(Uuid::from_u128(0x4e7b_0000 + list as u128))
}

fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 26).expect("a valid date")
}

impl World {
    pub fn new(sizes: WorldSizes) -> World {
        World {
            sizes,
            stores: (0..sizes.stores).map(store_id).collect(),
        }
    }

    /// The instance lists of store `s`.
    pub fn lists(&self, s: usize) -> Vec<DocumentId> {
        (0..self.sizes.lists)
            .map(|l| DocumentId::recurring_instance(template(l), &self.stores[s], date()))
            .collect()
    }

    pub fn directory(&self, s: usize) -> DocumentId {
        DocumentId::directory_of(&self.stores[s])
    }

    /// What HQ materialized for list `l` of store `s`.
    pub fn content(&self, s: usize, l: usize) -> InstanceContent {
        list_content(&self.stores[s], l, self.sizes.tasks)
    }

    /// Task ids of a list, in position order.
    pub fn task_ids(&self, doc: DocumentId) -> Vec<TaskId> {
        (0..self.sizes.tasks).map(|t| task_id(doc, t)).collect()
    }

    /// Heads of a freshly materialized list (deterministic: invariant 2).
    pub fn fresh_heads(&self, s: usize, l: usize) -> Result<Vec<ChangeHash>> {
        let mut doc = Automerge::new();
        doc.apply_changes(instance::materialize(&self.content(s, l))?)?;
        let mut h = doc.get_heads();
        h.sort();
        Ok(h)
    }
}

fn task_id(doc: DocumentId, t: usize) -> TaskId {
    TaskId(Uuid::new_v5(&doc.0, format!("task/{t}").as_bytes()))
}

/// A list as HQ publishes it: `tasks` tasks of a realistic size.
pub fn list_content(store: &StoreId, l: usize, tasks: usize) -> InstanceContent {
    let template = template(l);
    let id = DocumentId::recurring_instance(template, store, date());
    InstanceContent {
        id,
        meta: ListMeta {
            store: store.clone(),
            name: format!("Daily list {l}"),
            template: Some(template),
            date: date(),
            time_zone: "Europe/Berlin".into(),
            created_by: CreatedBy::Hq,
        },
        tasks: (0..tasks)
            .map(|t| TaskSpec {
                id: task_id(id, t),
                title: format!("List {l} task {t}: check shelf {t} and refill"),
                description: "Count the facings, refill from the back store, note gaps.".into(),
                start: None,
                due: None,
                priority: if t % 5 == 0 {
                    Priority::High
                } else {
                    Priority::Normal
                },
                link: Some("pos:stock-count".parse().expect("a valid link")),
                assignee: Some("group:floor".parse().expect("a valid assignee")),
                created_by: CreatedBy::Hq,
                position: t as i64,
            })
            .collect(),
    }
}

/// A hub data directory holding `world` (stores, tokens, every list
/// published), copied from a cache under `cache` (built there on first use).
pub fn hub_data(world: &World, cache: &Path, into: &Path) -> Result<()> {
    let s = world.sizes;
    let cached = cache.join(format!("hub-{}x{}x{}-v2", s.stores, s.lists, s.tasks));
    if !cached.join("hub.db").exists() {
        let building = cache.join(format!(
            "building-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let started = Instant::now();
        build_hub_data(world, &building)?;
        std::fs::rename(&building, &cached)
            .with_context(|| format!("moving {} into place", building.display()))?;
        eprintln!(
            "built the hub fixture ({} stores x {} lists) in {:.1} s: {}",
            s.stores,
            s.lists,
            started.elapsed().as_secs_f64(),
            cached.display()
        );
    }
    std::fs::create_dir_all(into)?;
    for f in ["hub.db", "hub.db-wal"] {
        let from = cached.join(f);
        if from.exists() {
            std::fs::copy(&from, into.join(f))
                .with_context(|| format!("copying {}", from.display()))?;
        }
    }
    Ok(())
}

fn build_hub_data(world: &World, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let db = dir.join("hub.db");
    let store = SqliteDatabase::open(&db, *Uuid::new_v4().as_bytes())?;
    let cfg = HubConfig {
        peer_id: PeerId::new("netbench-setup"),
        storage_id: StorageId::new("netbench-setup"),
        limits: HubLimits::default(),
    };
    let mut hub = Hub::open(store, cfg)?;
    let now = chrono::Utc::now().timestamp_millis();
    for (n, id) in world.stores.iter().enumerate() {
        hub.add_store(&StoreRecord {
            id: id.clone(),
            name: format!("Bench store {n}"),
            time_zone: "Europe/Berlin".into(),
        })?;
        hub.add_token(
            &store_token(n),
            &Principal::Store(id.clone()),
            "netbench",
            now,
            None,
        )?;
        // The workers the simulated terminals record as (`w1`, `w2`):
        // the hub refuses events by anyone not on the roster.
        for w in 1..=2 {
            let rec = engine::document::directory::RosterWorker {
                name: format!("Worker {w}"),
                role: "clerk".parse().expect("a valid role"),
                groups: Vec::new(),
                pin: None,
            };
            hub.put_worker(id, &format!("w{w}").parse()?, &rec, now)?;
        }
        for l in 0..world.sizes.lists {
            hub.publish(&world.content(n, l), now)?;
        }
    }
    drop(hub);
    Ok(db)
}
