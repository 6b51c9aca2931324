//! Status: the hub's own counters, the status index queries (lists x
//! stores, past due, by worker, the compliance report in `report`) and
//! purging old lists.

mod report;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use engine::ids::{DocumentId, StoreId};
use engine::replica::hub::Hub;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::access::{
    Access::{self, Hq},
    ApiRoutes, Reach,
};
use super::auth::{hq, hq_read};
use super::reply::{bad_request, in_zone, json_reply, reply, rfc3339, ApiError};
use super::state::AppState;
use crate::read_pool::StatusReader;
use crate::runtime::{answer_with, now_ms, HubHandle, INDEX_CHUNK};
use axum::http::Method;
use engine::hq_accounts::Need;

pub fn routes() -> ApiRoutes {
    const QUERY: Access = Hq(Need::Read, Reach::Named);
    ApiRoutes::default()
        .route(
            Method::GET,
            "/status",
            Hq(Need::Read, Reach::Nothing),
            status,
        )
        .route(Method::GET, "/status/lists", QUERY, status_by_list)
        .route(Method::GET, "/status/workers", QUERY, status_by_worker)
        .route(Method::GET, "/status/past-due", QUERY, status_past_due)
        .route(
            Method::GET,
            "/report",
            Hq(Need::Read, Reach::Scope),
            report::report,
        )
        .route(
            Method::POST,
            "/purge",
            Hq(Need::Author, Reach::Named),
            purge,
        )
}

async fn status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    hq_read!(state, headers);
    // Summed over the replica threads.
    let parts = state
        .hub
        .call_soon_each(|hub, _| {
            (
                (
                    hub.connection_count(),
                    hub.cached_document_count(),
                    hub.counters(),
                ),
                Vec::new(),
            )
        })
        .await;
    match parts {
        Ok(parts) => {
            let mut connections = 0;
            let mut cached = 0;
            let mut c = engine::replica::hub::HubCounters::default();
            for (conns, docs, n) in parts {
                connections += conns;
                cached += docs;
                c = c.plus(n);
            }
            Json(json!({
                "connections": connections,
                "cached_documents": cached,
                "counters": c,
            }))
            .into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[derive(Deserialize)]
struct StatusQuery {
    store: Option<String>,
    worker: Option<String>,
    limit: Option<u32>,
    /// Lists dated from (YYYY-MM-DD, store-local, inclusive).
    from: Option<String>,
    /// Lists dated up to (inclusive).
    to: Option<String>,
}

fn parse_day(field: &str, q: &Option<String>) -> Result<Option<NaiveDate>, ApiError> {
    q.as_deref()
        .map(|d| {
            NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| bad_request(format!("{field} {d:?}: use YYYY-MM-DD")))
        })
        .transpose()
}

/// The response header telling how many lists' status a query may not
/// reflect yet (see `index_read`); the dashboard shows it.
pub(crate) const INDEX_BEHIND_HEADER: &str = "status-index-behind";

/// Run a query of the status index over `store` (every store for `None`).
/// First the lists due for indexing that the query covers are brought up
/// to date on the hub thread, a chunk per job so sync is served between
/// chunks, for at most `AppState::index_read_budget`; during a reconnect
/// storm that is a fraction of what is due, and the query answers from
/// the index as it stands rather than hold the hub thread for seconds.
/// The query itself runs on a read-only connection on a blocking thread
/// (`ReadPool`). Returns its result and how many of the lists it
/// covers are still due (changed since their rows were written).
async fn index_read<T: Send + 'static>(
    state: &AppState,
    store: Option<StoreId>,
    f: impl FnOnce(&StatusReader, i64) -> T + Send + 'static,
) -> anyhow::Result<(T, usize)> {
    let deadline = tokio::time::Instant::now() + state.index_read_budget;
    let due_of = |hub: &mut Hub, store: &Option<StoreId>| hub.index_due_of(store.as_ref());
    // A store's lists are indexed by its replica thread; every thread's
    // for a query over every store.
    let threads: Vec<HubHandle> = match &store {
        Some(s) => vec![state.hub.for_store(s).clone()],
        None => state.hub.each().to_vec(),
    };
    for thread in &threads {
        let scope = store.clone();
        let mut due = thread
            .call_soon(move |hub, _| (due_of(hub, &scope), Vec::new()))
            .await??;
        while !due.is_empty() && tokio::time::Instant::now() < deadline {
            let chunk: Vec<DocumentId> = due.drain(..due.len().min(INDEX_CHUNK)).collect();
            thread
                .call_soon(move |hub, _| {
                    hub.catch_up_index_of(&chunk);
                    ((), Vec::new())
                })
                .await?;
        }
    }
    // Counted again: lists changed while this read caught up are behind too.
    let mut behind = 0;
    for thread in &threads {
        let scope = store.clone();
        behind += thread
            .call_soon(move |hub, _| (due_of(hub, &scope).map(|d| d.len()), Vec::new()))
            .await??;
    }
    let answer = state.readers.status(move |s| f(s, now_ms())).await?;
    Ok((answer, behind))
}

/// `json_reply` for `index_read`'s answer, with how many lists are behind
/// in the `status-index-behind` header.
fn index_reply<T: Serialize, E: Into<ApiError>>(
    r: anyhow::Result<(Result<T, E>, usize)>,
) -> Response {
    match r {
        Ok((answer, behind)) => {
            let mut resp = json_reply(Ok(answer));
            resp.headers_mut()
                .insert(INDEX_BEHIND_HEADER, axum::http::HeaderValue::from(behind));
            resp
        }
        Err(e) => json_reply::<T, E>(Err(e)),
    }
}

fn parse_store(q: &Option<String>) -> Result<Option<StoreId>, ApiError> {
    q.as_deref()
        .map(|s| s.parse().map_err(|e| bad_request(format!("store: {e}"))))
        .transpose()
}

/// Lists x stores with counts of not started / in progress / completed /
/// past due and conflicts, from the status index.
async fn status_by_list(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<StatusQuery>,
) -> Response {
    hq_read!(state, headers);
    let (store, from, to) = match (|| {
        Ok::<_, ApiError>((
            parse_store(&q.store)?,
            parse_day("from", &q.from)?,
            parse_day("to", &q.to)?,
        ))
    })() {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    index_reply(
        index_read(&state, store.clone(), move |s, now| {
            s.status_by_list_between(store.as_ref(), from, to, now)
        })
        .await,
    )
}

/// Open tasks whose due time has passed, most overdue first, from the
/// status index: store, list, task, due (RFC 3339, and `due_local` on
/// the store's clock with its `time_zone` named), how late (the engine's
/// words, as the terminal says it), assignee (and `assignee_name`, a
/// worker's name on the store's roster), status.
async fn status_past_due(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<StatusQuery>,
) -> Response {
    hq_read!(state, headers);
    let store = match parse_store(&q.store) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let limit = q.limit.unwrap_or(500).min(10_000);
    index_reply(
        index_read(&state, store.clone(), move |s, now| {
            let rows = s.past_due(store.as_ref(), now, limit)?;
            let zones = store_zones(s)?;
            Ok::<_, engine::storage::StorageError>(
                rows.into_iter()
                    .map(|r| {
                        let zone = zones.get(&r.store).map_or("UTC", String::as_str);
                        let assignee_name = r
                            .assignee
                            .as_deref()
                            .and_then(|a| a.strip_prefix("worker:"))
                            .and_then(|w| s.worker_name(&r.store, w));
                        json!({"store": r.store, "doc": r.doc, "list": r.list, "date": r.date,
                               "task": r.task, "title": r.title, "due": rfc3339(r.due_ms),
                               "due_ms": r.due_ms, "due_local": in_zone(r.due_ms, zone),
                               "time_zone": zone,
                               "late": engine::due::late_text_ms(r.due_ms, now),
                               "assignee": r.assignee, "assignee_name": assignee_name,
                               "status": r.status, "conflict": r.conflict})
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .await,
    )
}

/// Each store's time zone, by store id.
fn store_zones(
    s: &StatusReader,
) -> Result<std::collections::HashMap<String, String>, engine::storage::StorageError> {
    Ok(s.stores()?
        .into_iter()
        .map(|r| (r.id.to_string(), r.time_zone))
        .collect())
}

/// What each worker did, when and from which terminal, newest first; with
/// the worker's name on the store's roster (`worker_name`) and the time on
/// the store's clock (`at_local`, its `time_zone` named).
async fn status_by_worker(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<StatusQuery>,
) -> Response {
    hq_read!(state, headers);
    let store = match parse_store(&q.store) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let limit = q.limit.unwrap_or(200).min(10_000);
    index_reply(
        index_read(&state, store.clone(), move |s, _| {
            let rows = s.status_by_worker(store.as_ref(), q.worker.as_deref(), limit)?;
            let zones = store_zones(s)?;
            Ok::<_, engine::storage::StorageError>(
                rows.into_iter()
                    .map(|r| {
                        let zone = zones.get(&r.store).map_or("UTC", String::as_str).to_owned();
                        let mut v = serde_json::to_value(&r).expect("a row encodes as JSON");
                        v["worker_name"] = json!(s.worker_name(&r.store, &r.worker));
                        v["at_local"] = json!(in_zone(r.at_ms, &zone));
                        v["time_zone"] = json!(zone);
                        v
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .await,
    )
}

#[derive(Deserialize)]
struct PurgeRequest {
    /// YYYY-MM-DD: lists dated strictly before this (store-local).
    before: Option<String>,
    store: Option<String>,
    list: Option<String>,
    #[serde(default)]
    completed_only: bool,
    /// Count only (the default); pass false to delete.
    #[serde(default = "yes")]
    dry_run: bool,
}

fn yes() -> bool {
    true
}

/// Bulk delete of instances by filter; a dry run (the default) counts.
async fn purge(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<PurgeRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    hq!(state, headers);
    let r: Result<engine::replica::PurgeReport, ApiError> = async {
        let Json(req) = body.map_err(|e| bad_request(format!("bad JSON: {e}")))?;
        if req.before.is_none() && req.store.is_none() && req.list.is_none() && !req.completed_only {
            return Err(bad_request(
                "give at least one filter (before, store, list, completed_only); deleting everything is not a purge",
            ));
        }
        let filter = engine::storage::PurgeFilter {
            before: req
                .before
                .as_deref()
                .map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d"))
                .transpose()
                .map_err(|_| bad_request("before: use YYYY-MM-DD"))?,
            store: parse_store(&req.store)?,
            list: req.list,
            completed_only: req.completed_only,
        };
        let dry_run = req.dry_run;
        // Each replica thread purges the stores it serves.
        let threads: Vec<HubHandle> = match &filter.store {
            Some(s) => vec![state.hub.for_store(s).clone()],
            None => state.hub.each().to_vec(),
        };
        let filter = std::sync::Arc::new(filter);
        let mut report = engine::replica::PurgeReport {
            dry_run,
            count: 0,
            documents: Vec::new(),
        };
        for thread in threads {
            let filter = filter.clone();
            let part = thread
                .call(move |hub, now| answer_with(hub.purge(&filter, dry_run, now)))
                .await??;
            report.count += part.count;
            report.documents.extend(part.documents);
        }
        Ok(report)
    }
    .await;
    reply(StatusCode::OK, r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::publish::{NewTask, PublishRequest};
    use engine::storage::StoreRecord;
    use std::collections::HashSet;

    /// Publish `per_store` lists to each of `stores` (added first) in one
    /// batch, so their status index is left due, then start `read` and
    /// answer the backlog the publish left and what the read answered.
    ///
    /// The hub does not index on its own while idle here, so what is
    /// indexed is what the read did. The publish job waits, once done,
    /// until the read's first step is queued (a `call_soon` job, which
    /// then runs as the publish job returns, not before it).
    async fn publish_then_read<R: std::future::Future>(
        state: &AppState,
        stores: &[&str],
        per_store: usize,
        read: R,
    ) -> (usize, R::Output) {
        state.hub.registry().pause_idle_indexing();
        let stores: Vec<StoreId> = stores.iter().map(|s| s.parse().unwrap()).collect();
        let req = PublishRequest {
            store: None,
            stores: None,
            name: "Closing".into(),
            date: "2026-11-26".into(),
            tasks: vec![NewTask {
                title: "Count the till".into(),
                description: String::new(),
                start: None,
                due: None,
                priority: None,
                link: None,
                assignee: None,
            }],
        };
        let (published_tx, published_rx) = std::sync::mpsc::channel::<()>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let publish = state.hub.registry().call(move |hub, now| {
            for store in &stores {
                hub.add_store(&StoreRecord {
                    id: store.clone(),
                    name: store.to_string(),
                    time_zone: "Europe/Berlin".into(),
                })
                .unwrap();
            }
            let (r, out) = hub.batched(|hub| {
                let mut out = Vec::new();
                for store in &stores {
                    for _ in 0..per_store {
                        let c = req
                            .list_content(store, "Europe/Berlin", &mut uuid::Uuid::new_v4)
                            .unwrap_or_else(|e| panic!("{}", e.0));
                        out.extend(hub.publish(&c, now)?);
                    }
                }
                Ok(((), out))
            });
            r.unwrap();
            published_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            (hub.index_backlog(), out)
        });
        let (mut publish, mut read) = (
            std::pin::pin!(futures_util::future::maybe_done(publish)),
            std::pin::pin!(futures_util::future::maybe_done(read)),
        );
        let _ = futures_util::poll!(publish.as_mut());
        published_rx.recv().unwrap();
        let _ = futures_util::poll!(read.as_mut());
        go_tx.send(()).unwrap();
        tokio::join!(publish.as_mut(), read.as_mut());
        (
            publish.take_output().unwrap().unwrap(),
            read.take_output().unwrap(),
        )
    }

    /// Status queries run off the hub thread, on a read-only connection,
    /// and still see lists whose index was due when they were asked.
    #[tokio::test]
    async fn a_status_query_runs_off_the_hub_thread_and_sees_every_list() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = crate::data_dir::open_for_test(dir.path());
        // Room to catch up however slow the machine.
        state.index_read_budget = std::time::Duration::from_secs(60);
        let read = index_read(&state, None, |s, now| {
            let rows = s.status_by_list(None, now).unwrap();
            let lists: HashSet<_> = rows.iter().map(|r| r.doc).collect();
            (lists.len(), std::thread::current().name().map(String::from))
        });
        let (published, read) = publish_then_read(&state, &["store-a"], 5, read).await;
        assert_eq!(published, 5, "indexed later");
        let ((lists, thread), behind) = read.unwrap();
        assert_eq!(lists, 5, "the read sees every list");
        assert_eq!(behind, 0);
        assert_ne!(thread.as_deref(), Some("hub-replica"));
        // That the connection is read-only: `read_pool::tests`.
    }

    /// A read over a backlog it has no time left to index answers at once
    /// from the index as it stands, and says in its header how many lists
    /// it may not reflect.
    #[tokio::test]
    async fn a_status_read_out_of_budget_answers_as_indexed_and_says_how_many_lists_are_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = crate::data_dir::open_for_test(dir.path());
        state.index_read_budget = std::time::Duration::ZERO;
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer admin".parse().unwrap());
        let query = || StatusQuery {
            store: None,
            worker: None,
            limit: None,
            from: None,
            to: None,
        };
        // `index_read` itself: the handler's sign-in check is a hub job of
        // its own, after which the idle hub would index on its own.
        let fleet = async {
            index_reply(index_read(&state, None, |s, now| s.status_by_list(None, now)).await)
        };
        let a: StoreId = "store-a".parse().unwrap();
        let one_store = index_read(&state, Some(a), |_, _| ());
        let read = futures_util::future::join(fleet, one_store);
        let (published, (resp, one_store)) =
            publish_then_read(&state, &["store-a", "store-b"], 3, read).await;
        assert_eq!(published, 6);
        assert_eq!(one_store.unwrap().1, 3, "only store-a's lists count");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[INDEX_BEHIND_HEADER], "6");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        assert!(rows.is_empty(), "nothing was indexed: {rows:?}");

        // A read with time to catch up leaves nothing behind.
        state.index_read_budget = std::time::Duration::from_secs(60);
        let resp =
            status_by_list(State(state.clone()), headers, axum::extract::Query(query())).await;
        assert_eq!(resp.headers()[INDEX_BEHIND_HEADER], "0");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        let lists: HashSet<_> = rows.iter().map(|r| r["doc"].clone()).collect();
        assert_eq!(lists.len(), 6);
    }

    /// A read naming a store catches up that store's lists only, and
    /// counts only those as behind.
    #[tokio::test]
    async fn a_store_scoped_status_read_catches_up_that_stores_lists() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = crate::data_dir::open_for_test(dir.path());
        state.index_read_budget = std::time::Duration::from_secs(60);
        let a: StoreId = "store-a".parse().unwrap();
        let scope = a.clone();
        let read = index_read(&state, Some(a), move |s, now| {
            s.status_by_list(Some(&scope), now).unwrap().len()
        });
        let (published, read) = publish_then_read(&state, &["store-a", "store-b"], 3, read).await;
        assert_eq!(published, 6);
        let (rows, behind) = read.unwrap();
        assert_eq!(rows, 3, "store-a's three lists, one row each");
        assert_eq!(behind, 0, "nothing of store-a is behind");
    }
}
