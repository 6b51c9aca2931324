//! The fleet at a glance (issue #23): the roll-up by store group (share
//! completed on time, past due, conflicts) that drills down to a group's
//! stores and a store's lists, and past due grouped by list. Each answer
//! is the caller's stores only (`Reach::Scope`: narrowed here, since a
//! paged answer cannot be narrowed after it is cut), one page at a time,
//! from the status index read on a read-only connection.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use chrono::NaiveDate;
use engine::fleet::{in_store_zone, OnTime};
use engine::hq_accounts::{HqScope, Need};
use engine::ids::{StoreGroupId, StoreId};
use engine::replica::hub::HubError;
use engine::storage::{StoreListRow, StoreRecord};
use serde::Deserialize;
use serde_json::{json, Value};

use super::access::{Access::Hq, ApiRoutes, Reach};
use super::auth::require_hq_read;
use super::reply::{bad_request, parse, reply, rfc3339, ApiError};
use super::state::AppState;
use crate::runtime::now_ms;

pub fn routes() -> ApiRoutes {
    let read = Hq(Need::Read, Reach::Scope);
    ApiRoutes::default()
        .route(Method::GET, "/fleet/rollup", read, rollup_by_group)
        .route(Method::GET, "/fleet/rollup/stores", read, rollup_stores)
        .route(Method::GET, "/fleet/rollup/lists", read, rollup_lists)
        .route(Method::GET, "/fleet/past-due", read, past_due_by_list)
}

const PAGE: usize = 50;
const PAGE_MAX: usize = 500;
/// Days the roll-up covers when none are asked for: the last week.
const DEFAULT_DAYS: i64 = 7;

#[derive(Deserialize)]
struct FleetQuery {
    /// Lists dated from (YYYY-MM-DD, store-local, inclusive).
    from: Option<String>,
    /// Lists dated up to (inclusive).
    to: Option<String>,
    /// The stores of this group (`rollup/stores`).
    group: Option<String>,
    /// The stores in no group (`rollup/stores`).
    #[serde(default)]
    ungrouped: bool,
    /// This store's lists (`rollup/lists`).
    store: Option<String>,
    /// This list's stores (`past-due`).
    list: Option<String>,
    /// From 1.
    page: Option<usize>,
    limit: Option<usize>,
}

impl FleetQuery {
    /// The days asked, store-local: by default the week up to today,
    /// and tomorrow, where stores east of UTC already are.
    fn days(&self) -> Result<(NaiveDate, NaiveDate), ApiError> {
        let day = |field: &str, v: &Option<String>| {
            v.as_deref()
                .filter(|d| !d.is_empty())
                .map(|d| {
                    NaiveDate::parse_from_str(d, "%Y-%m-%d")
                        .map_err(|_| bad_request(format!("{field} {d:?}: use YYYY-MM-DD")))
                })
                .transpose()
        };
        let today = chrono::Utc::now().date_naive();
        let from =
            day("from", &self.from)?.unwrap_or(today - chrono::Duration::days(DEFAULT_DAYS - 1));
        let to = day("to", &self.to)?.unwrap_or(today + chrono::Duration::days(1));
        if from > to {
            return Err(bad_request(format!(
                "from {from} is after to {to}: give the earlier day first"
            )));
        }
        Ok((from, to))
    }

    /// `rows` cut to the page asked, and the paging facts.
    fn page<T>(&self, rows: Vec<T>) -> (Vec<T>, Value) {
        let limit = self.limit.unwrap_or(PAGE).clamp(1, PAGE_MAX);
        let page = self.page.unwrap_or(1).max(1);
        let total = rows.len();
        let shown = rows
            .into_iter()
            .skip((page - 1).saturating_mul(limit))
            .take(limit)
            .collect();
        let facts = json!({
            "total": total, "page": page, "limit": limit,
            "pages": total.div_ceil(limit).max(1),
        });
        (shown, facts)
    }
}

/// A store the caller may see, with its groups within the caller's scope.
struct ScopedStore {
    rec: StoreRecord,
    groups: Vec<StoreGroupId>,
}

/// The caller's stores (by id) and what the status index holds of them.
struct Fleet<T> {
    stores: BTreeMap<StoreId, ScopedStore>,
    rows: Vec<T>,
}

/// Read the caller's stores and `rows` (the status index) on one read-only
/// connection, and keep only the rows of the caller's stores.
async fn read_fleet<T: Send + 'static>(
    state: &AppState,
    scope: HqScope,
    rows: impl FnOnce(
            &crate::read_pool::StatusReader,
            i64,
        ) -> Result<Vec<T>, engine::storage::StorageError>
        + Send
        + 'static,
    store_of: impl Fn(&T) -> &str,
) -> Result<Fleet<T>, ApiError> {
    let now = now_ms();
    let (records, groups_of, rows) = state
        .readers
        .status(move |s| {
            Ok::<_, engine::storage::StorageError>((s.stores()?, s.groups_of()?, rows(s, now)?))
        })
        .await??;
    let mut stores = BTreeMap::new();
    for rec in records {
        let all = groups_of.get(&rec.id).map(Vec::as_slice).unwrap_or(&[]);
        if !scope.covers(all.iter()) {
            continue;
        }
        let groups = all
            .iter()
            .filter(|g| scope.covers(std::iter::once(*g)))
            .cloned()
            .collect();
        stores.insert(rec.id.clone(), ScopedStore { rec, groups });
    }
    let rows = rows
        .into_iter()
        .filter(|r| {
            store_of(r)
                .parse::<StoreId>()
                .is_ok_and(|s| stores.contains_key(&s))
        })
        .collect();
    Ok(Fleet { stores, rows })
}

/// The roll-up's figures as the API answers them.
fn figures(t: &OnTime) -> Value {
    json!({
        "tasks": t.tasks, "completed": t.completed, "on_time": t.on_time,
        "past_due": t.past_due, "conflicts": t.conflicts,
        "on_time_share": t.share(),
    })
}

/// Each store's figures over the days asked.
fn by_store(rows: &[StoreListRow]) -> HashMap<&str, OnTime> {
    let mut out: HashMap<&str, OnTime> = HashMap::new();
    for r in rows {
        out.entry(r.store.as_str()).or_default().add(r);
    }
    out
}

/// Per store group of the caller, most behind first
/// (`engine::fleet::OnTime::order`): how many stores, and their figures
/// added up. A store in two groups counts in both; the stores in no group
/// are one row with `group: null` (only a caller over all stores has any).
async fn rollup_by_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<FleetQuery>,
) -> Response {
    let caller = match require_hq_read(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r: Result<Value, ApiError> = async {
        let (from, to) = q.days()?;
        let fleet = read_fleet(
            &state,
            caller.scope(),
            move |s, now| s.status_by_store_list(Some(from), Some(to), now),
            |r| &r.store,
        )
        .await?;
        let per_store = by_store(&fleet.rows);
        let mut groups: BTreeMap<Option<&StoreGroupId>, (usize, OnTime)> = BTreeMap::new();
        for (id, s) in &fleet.stores {
            let t = per_store.get(id.as_str()).copied().unwrap_or_default();
            let keys: Vec<Option<&StoreGroupId>> = match s.groups.is_empty() {
                true => vec![None],
                false => s.groups.iter().map(Some).collect(),
            };
            for g in keys {
                let entry = groups.entry(g).or_default();
                entry.0 += 1;
                entry.1 += t;
            }
        }
        let mut rows: Vec<_> = groups.into_iter().collect();
        // Most behind first; the stores in no group after the groups.
        rows.sort_by(|a, b| {
            a.0.is_none()
                .cmp(&b.0.is_none())
                .then_with(|| a.1 .1.order(&b.1 .1))
                .then_with(|| a.0.cmp(&b.0))
        });
        let (shown, paging) = q.page(rows);
        let shown: Vec<Value> = shown
            .into_iter()
            .map(|(g, (stores, t))| {
                let mut v = figures(&t);
                v["group"] = json!(g);
                v["stores"] = json!(stores);
                v
            })
            .collect();
        let mut answer = paging;
        answer["from"] = json!(from);
        answer["to"] = json!(to);
        answer["groups"] = json!(shown);
        Ok(answer)
    }
    .await;
    reply(StatusCode::OK, r)
}

/// The stores of one group (`group=`), of none (`ungrouped=true`) or all
/// the caller's, most behind first, each with its figures. A group with
/// none of the caller's stores is answered as one that does not exist.
async fn rollup_stores(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<FleetQuery>,
) -> Response {
    let caller = match require_hq_read(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r: Result<Value, ApiError> = async {
        let (from, to) = q.days()?;
        let group: Option<StoreGroupId> = q
            .group
            .as_deref()
            .filter(|g| !g.is_empty())
            .map(|g| parse("group", g))
            .transpose()?;
        let fleet = read_fleet(
            &state,
            caller.scope(),
            move |s, now| s.status_by_store_list(Some(from), Some(to), now),
            |r| &r.store,
        )
        .await?;
        let per_store = by_store(&fleet.rows);
        let mut rows: Vec<(&ScopedStore, OnTime)> = fleet
            .stores
            .values()
            .filter(|s| match &group {
                Some(g) => s.groups.contains(g),
                None => !q.ungrouped || s.groups.is_empty(),
            })
            .map(|s| {
                let t = per_store
                    .get(s.rec.id.as_str())
                    .copied()
                    .unwrap_or_default();
                (s, t)
            })
            .collect();
        if let (Some(g), true) = (&group, rows.is_empty()) {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("unknown store group {g}"),
            ));
        }
        rows.sort_by(|a, b| {
            a.1.order(&b.1)
                .then_with(|| a.0.rec.name.cmp(&b.0.rec.name))
                .then_with(|| a.0.rec.id.cmp(&b.0.rec.id))
        });
        let (shown, paging) = q.page(rows);
        let shown: Vec<Value> = shown
            .into_iter()
            .map(|(s, t)| {
                let mut v = figures(&t);
                v["id"] = json!(s.rec.id);
                v["name"] = json!(s.rec.name);
                v["time_zone"] = json!(s.rec.time_zone);
                v["groups"] = json!(s.groups);
                v
            })
            .collect();
        let mut answer = paging;
        answer["from"] = json!(from);
        answer["to"] = json!(to);
        answer["group"] = json!(group);
        answer["stores"] = json!(shown);
        Ok(answer)
    }
    .await;
    reply(StatusCode::OK, r)
}

/// One store's lists (`store=`), most behind first, each with its
/// figures and how many days of it there were. A store outside the
/// caller's scope is answered as one that does not exist.
async fn rollup_lists(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<FleetQuery>,
) -> Response {
    let caller = match require_hq_read(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r: Result<Value, ApiError> = async {
        let (from, to) = q.days()?;
        let store: StoreId = match q.store.as_deref() {
            Some(s) => parse("store", s)?,
            None => return Err(bad_request("give the store: ?store=<id>")),
        };
        let fleet = read_fleet(
            &state,
            caller.scope(),
            move |s, now| s.status_by_store_list(Some(from), Some(to), now),
            |r| &r.store,
        )
        .await?;
        let Some(s) = fleet.stores.get(&store) else {
            return Err(HubError::UnknownStore(store).into());
        };
        let mut rows: Vec<(&StoreListRow, OnTime)> = fleet
            .rows
            .iter()
            .filter(|r| r.store == store.as_str())
            .map(|r| (r, OnTime::of([r])))
            .collect();
        rows.sort_by(|a, b| a.1.order(&b.1).then_with(|| a.0.list.cmp(&b.0.list)));
        let store_figures = OnTime::of(rows.iter().map(|r| r.0));
        let (shown, paging) = q.page(rows);
        let shown: Vec<Value> = shown
            .into_iter()
            .map(|(r, t)| {
                let mut v = figures(&t);
                v["list"] = json!(r.list);
                v["days"] = json!(r.instances);
                v
            })
            .collect();
        let mut answer = paging;
        answer["from"] = json!(from);
        answer["to"] = json!(to);
        answer["store"] = json!({
            "id": s.rec.id, "name": s.rec.name, "time_zone": s.rec.time_zone,
            "groups": s.groups, "figures": figures(&store_figures),
        });
        answer["lists"] = json!(shown);
        Ok(answer)
    }
    .await;
    reply(StatusCode::OK, r)
}

/// Past due grouped by list name, the most past-due tasks first: per list
/// how many tasks in how many stores, and the oldest due time (counted by
/// the index, `past_due_counts`). With `list=`, that list's stores
/// instead, the longest overdue first, each with its past-due tasks and
/// their due times on the store's clock, the zone named
/// (`2026-12-07 07:00 JST (Asia/Tokyo)`). `past_due_tasks`: how many in all.
async fn past_due_by_list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<FleetQuery>,
) -> Response {
    let caller = match require_hq_read(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r: Result<Value, ApiError> = async {
        let now = now_ms();
        let Some(list) = &q.list else {
            // Counted by the index per store and list, then added up here.
            let fleet = read_fleet(
                &state,
                caller.scope(),
                move |s, now| s.past_due_counts(now),
                |r| &r.store,
            )
            .await?;
            let mut lists: BTreeMap<&str, (u32, usize, i64)> = BTreeMap::new();
            for r in &fleet.rows {
                let l = lists.entry(r.list.as_str()).or_insert((0, 0, i64::MAX));
                l.0 += r.tasks;
                l.1 += 1;
                l.2 = l.2.min(r.oldest_due_ms);
            }
            let total_tasks: u32 = lists.values().map(|l| l.0).sum();
            let mut lists: Vec<_> = lists.into_iter().collect();
            lists.sort_by(|a, b| {
                b.1 .0
                    .cmp(&a.1 .0)
                    .then(a.1 .2.cmp(&b.1 .2))
                    .then(a.0.cmp(b.0))
            });
            let (shown, paging) = q.page(lists);
            let shown: Vec<Value> = shown
                .into_iter()
                .map(|(list, (tasks, stores, oldest))| {
                    json!({
                        "list": list, "tasks": tasks, "stores": stores,
                        "oldest_due": rfc3339(oldest),
                        "oldest_late": engine::due::late_text_ms(oldest, now),
                    })
                })
                .collect();
            let mut answer = paging;
            answer["past_due_tasks"] = json!(total_tasks);
            answer["list"] = Value::Null;
            answer["lists"] = json!(shown);
            return Ok(answer);
        };
        let fleet = read_fleet(
            &state,
            caller.scope(),
            move |s, _| s.past_due(None, now, u32::MAX),
            |r| &r.store,
        )
        .await?;
        // Rows come most overdue first, so stores do too.
        let mut stores: Vec<(&str, Vec<&engine::storage::PastDueRow>)> = Vec::new();
        let mut at: HashMap<&str, usize> = HashMap::new();
        for r in fleet.rows.iter().filter(|r| &r.list == list) {
            let i = *at.entry(r.store.as_str()).or_insert_with(|| {
                stores.push((r.store.as_str(), Vec::new()));
                stores.len() - 1
            });
            stores[i].1.push(r);
        }
        let total_tasks = stores.iter().map(|s| s.1.len()).sum::<usize>();
        let (shown, paging) = q.page(stores);
        let shown: Vec<Value> = shown
            .into_iter()
            .filter_map(|(store, tasks)| {
                let s = fleet.stores.get(&store.parse::<StoreId>().ok()?)?;
                let zone = &s.rec.time_zone;
                let tasks: Vec<Value> = tasks
                    .into_iter()
                    .map(|r| {
                        json!({
                            "doc": r.doc, "task": r.task, "title": r.title, "date": r.date,
                            "due": rfc3339(r.due_ms), "due_ms": r.due_ms,
                            "due_local": in_store_zone(r.due_ms, zone),
                            "late": engine::due::late_text_ms(r.due_ms, now),
                            "assignee": r.assignee, "status": r.status,
                            "conflict": r.conflict,
                        })
                    })
                    .collect();
                Some(json!({
                    "store": s.rec.id, "name": s.rec.name, "time_zone": zone,
                    "tasks": tasks,
                }))
            })
            .collect();
        let mut answer = paging;
        answer["past_due_tasks"] = json!(total_tasks);
        answer["list"] = json!(list);
        answer["stores"] = json!(shown);
        Ok(answer)
    }
    .await;
    reply(StatusCode::OK, r)
}
