//! `GET /api/report`: the compliance report (`engine::compliance`) over
//! the status index, as JSON rows or a CSV download, narrowed to the
//! caller's stores. On a cluster node it reads PostgreSQL through the read
//! pool, as every status query does, so any node answers the same.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use engine::compliance::{self, By, ReportFacts, ReportRow, ReportTask};
use engine::hq_accounts::HqScope;
use engine::storage::StorageError;
use serde::Deserialize;

use super::{index_read, INDEX_BEHIND_HEADER};
use crate::http::auth::require_hq_read;
use crate::http::reply::{bad_request, ApiError};
use crate::http::state::AppState;
use crate::read_pool::StatusReader;

#[derive(Deserialize)]
pub(super) struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
    format: Option<String>,
}

/// What a report request asks for, checked.
struct Asked {
    from: NaiveDate,
    to: NaiveDate,
    by: By,
    csv: bool,
}

fn day(field: &str, v: &Option<String>) -> Result<NaiveDate, ApiError> {
    let v = v.as_deref().ok_or_else(|| {
        bad_request(format!(
            "{field} is required: a report covers lists dated from=YYYY-MM-DD to=YYYY-MM-DD \
             (both inclusive, store-local dates)"
        ))
    })?;
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .map_err(|_| bad_request(format!("{field} {v:?} is not a date: use YYYY-MM-DD")))
}

fn asked(q: &ReportQuery) -> Result<Asked, ApiError> {
    let (from, to) = (day("from", &q.from)?, day("to", &q.to)?);
    compliance::check_range(from, to).map_err(|e| bad_request(e.to_string()))?;
    let by =
        q.by.as_deref()
            .unwrap_or("store")
            .parse()
            .map_err(bad_request)?;
    let csv = match q.format.as_deref().unwrap_or("json") {
        "json" => false,
        "csv" => true,
        other => return Err(bad_request(format!("format {other:?}: use json or csv"))),
    };
    Ok(Asked { from, to, by, csv })
}

/// The on-time completion rate by store, group, list or worker over lists
/// dated `from` to `to`: JSON rows, or CSV with a header row as an
/// attachment. A scoped caller's report covers only the stores in its
/// groups, and by group only its groups.
pub(super) async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ReportQuery>,
) -> Response {
    let caller = match require_hq_read(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let asked = match asked(&q) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let (from, to, by) = (asked.from, asked.to, asked.by);
    let scope = caller.scope();
    let read = index_read(&state, None, move |s, now| {
        rows(s, from, to, by, &scope, now)
    })
    .await;
    let (rows, behind) = match read {
        Ok((Ok(rows), behind)) => (rows, behind),
        Ok((Err(e), _)) => return ApiError::from(e).into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut resp = if asked.csv {
        let name = format!(
            "attachment; filename=\"report-by-{}-{from}-{to}.csv\"",
            by_word(by)
        );
        let mut resp = (StatusCode::OK, compliance::to_csv(by, &rows)).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        if let Ok(v) = HeaderValue::from_str(&name) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        resp
    } else {
        Json(rows).into_response()
    };
    resp.headers_mut()
        .insert(INDEX_BEHIND_HEADER, HeaderValue::from(behind));
    resp
}

fn by_word(by: By) -> &'static str {
    match by {
        By::Store => "store",
        By::Group => "group",
        By::List => "list",
        By::Worker => "worker",
    }
}

/// The report's rows, read on one read-only connection: the tasks of the
/// caller's stores, their stores' names and groups, and (by worker) the
/// names on those stores' rosters.
fn rows(
    s: &StatusReader,
    from: NaiveDate,
    to: NaiveDate,
    by: By,
    scope: &HqScope,
    now_ms: i64,
) -> Result<Vec<ReportRow>, StorageError> {
    let mut facts = ReportFacts::default();
    for (group, stores) in s.store_groups()? {
        for store in stores {
            facts
                .groups_of
                .entry(store.to_string())
                .or_default()
                .push(group.to_string());
        }
    }
    let no_groups = Vec::new();
    let in_scope = |store: &str| {
        let groups = facts.groups_of.get(store).unwrap_or(&no_groups);
        match scope {
            HqScope::AllStores => true,
            HqScope::Groups(mine) => groups.iter().any(|g| mine.iter().any(|m| m.as_str() == g)),
        }
    };
    let tasks: Vec<ReportTask> = s
        .report_tasks_between(from, to)?
        .into_iter()
        .filter(|t| in_scope(&t.store))
        .collect();
    facts.store_names = s
        .stores()?
        .into_iter()
        .map(|r| (r.id.to_string(), r.name))
        .collect();
    if by == By::Worker {
        for t in &tasks {
            let Some(worker) = t.worker() else { continue };
            let key = (t.store.clone(), worker.to_owned());
            if facts.worker_names.contains_key(&key) {
                continue;
            }
            if let Some(name) = s.worker_name(&t.store, worker) {
                facts.worker_names.insert(key, name);
            }
        }
    }
    let show_group = |g: &str| match scope {
        HqScope::AllStores => true,
        HqScope::Groups(mine) => mine.iter().any(|m| m.as_str() == g),
    };
    Ok(compliance::report(&tasks, by, now_ms, &facts, show_group))
}
