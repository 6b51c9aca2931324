//! Recurring lists (templates): list, save a revision, assign to and take
//! off stores and store groups, delete.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{NaiveDate, NaiveTime};
use engine::ids::StoreId;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::{hq, hq_read};
use super::reply::{bad_request, json_reply, reply, ApiError};
use super::state::AppState;
use crate::runtime::answer_with;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/templates", get(list_templates).post(put_template))
        .route("/templates/{id}", axum::routing::delete(delete_template))
        .route("/templates/{id}/assign", post(assign_template))
        .route("/templates/{id}/unassign", post(unassign_template))
}

/// Every template's latest revision with the stores it is assigned to.
async fn list_templates(State(state): State<AppState>, headers: HeaderMap) -> Response {
    hq_read!(state, headers);
    json_reply(
        state
            .hub
            .call_soon(|hub, _| {
                let r = hub.templates_with_stores().map(|ts| {
                    ts.into_iter()
                        .map(|(t, stores)| json!({"template": t, "stores": stores}))
                        .collect::<Vec<_>>()
                });
                (r, Vec::new())
            })
            .await,
    )
}

/// A recurring list as HQ types it.
#[derive(Deserialize, Serialize)]
pub struct NewTemplate {
    /// Omit to create; give an existing id to save a new revision.
    pub id: Option<String>,
    pub name: String,
    /// RFC 5545 RRULE, e.g. FREQ=WEEKLY;BYDAY=TH.
    pub rrule: String,
    /// Local start time of each occurrence ("HH:MM").
    pub time: String,
    /// First date the rule applies (YYYY-MM-DD); default today (UTC).
    pub start_date: Option<String>,
    pub tasks: Vec<NewTemplateTask>,
    /// Stores to assign it to, in the same request (all checked first).
    #[serde(default)]
    pub stores: Vec<String>,
    /// Store groups to assign it to, in the same request.
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone)]
pub struct NewTemplateTask {
    /// Stable key across revisions; omit for a new task.
    pub key: Option<String>,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Local time of day ("HH:MM") or minutes after the list starts ("+30").
    pub due: Option<String>,
    pub priority: Option<String>,
    pub link: Option<String>,
    pub assignee: Option<String>,
}

/// Store and store group ids as a request names them.
fn targets(
    stores: &[String],
    groups: &[String],
) -> Result<(Vec<StoreId>, Vec<engine::ids::StoreGroupId>), ApiError> {
    let stores = stores
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|e| bad_request(format!("store {s:?}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let groups = groups
        .iter()
        .map(|g| {
            g.parse()
                .map_err(|e| bad_request(format!("group {g:?}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok((stores, groups))
}

fn template_from_request(req: NewTemplate) -> Result<engine::template::Template, ApiError> {
    use engine::recurrence::Recurrence;
    use engine::template::{DueSpec, Template, TemplateTask};
    let id = match &req.id {
        Some(i) => i.parse().map_err(|e| bad_request(format!("id: {e}")))?,
        None => engine::ids::TemplateId(uuid::Uuid::new_v4()),
    };
    let time = NaiveTime::parse_from_str(&req.time, "%H:%M").map_err(|_| {
        bad_request(format!(
            "time {:?}: use a local time of day like 21:00",
            req.time
        ))
    })?;
    let start = match &req.start_date {
        Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| bad_request(format!("start_date {d:?}: use YYYY-MM-DD")))?,
        None => chrono::Utc::now().date_naive(),
    };
    let recurrence =
        Recurrence::new(&req.rrule, start, time).map_err(|e| bad_request(e.to_string()))?;
    let mut tasks = Vec::new();
    for (i, t) in req.tasks.into_iter().enumerate() {
        let at = |what: &str| format!("task {}: {what}", i + 1);
        let due = match t.due.as_deref() {
            None => None,
            Some(d) if d.starts_with('+') => {
                Some(DueSpec::AfterStart(d[1..].parse().map_err(|_| {
                    bad_request(at("due \"+N\" takes whole minutes, e.g. +30"))
                })?))
            }
            Some(d) => Some(DueSpec::At(
                NaiveTime::parse_from_str(d, "%H:%M")
                    .map_err(|_| bad_request(at("due: use HH:MM or +minutes")))?,
            )),
        };
        tasks.push(TemplateTask {
            key: match t.key {
                Some(k) => k
                    .parse()
                    .map_err(|_| bad_request(at("key is not a UUID")))?,
                None => uuid::Uuid::new_v4(),
            },
            title: t.title,
            description: t.description,
            due,
            priority: t
                .priority
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| bad_request(at(&format!("{e}"))))?
                .unwrap_or_default(),
            link: t
                .link
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| bad_request(at(&format!("{e}"))))?,
            assignee: t
                .assignee
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| bad_request(at(&format!("{e}"))))?,
        });
    }
    let t = Template {
        id,
        revision: 0,
        name: req.name,
        recurrence,
        tasks,
    };
    t.validate().map_err(|e| bad_request(e.to_string()))?;
    Ok(t)
}

async fn put_template(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<NewTemplate>, axum::extract::rejection::JsonRejection>,
) -> Response {
    hq!(state, headers);
    let r: Result<engine::template::Template, ApiError> = async {
        let Json(req) = body.map_err(|e| bad_request(format!("bad JSON: {e}")))?;
        let (stores, groups) = targets(&req.stores, &req.groups)?;
        let t = template_from_request(req)?;
        let saved = state
            .hub
            .call(
                move |hub, now| match hub.save_template(t, &stores, &groups) {
                    Ok(saved) => {
                        // Existing future instances follow the new revision now.
                        let out = hub.materialize_horizon(now).unwrap_or_default();
                        (Ok(saved), out)
                    }
                    Err(e) => (Err(e), Vec::new()),
                },
            )
            .await??;
        Ok(saved)
    }
    .await;
    reply(StatusCode::CREATED, r)
}

#[derive(Deserialize)]
struct AssignTemplate {
    #[serde(default)]
    stores: Vec<String>,
    /// Store groups: every store in them now and every store added later.
    #[serde(default)]
    groups: Vec<String>,
}

async fn assign_template(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<AssignTemplate>, axum::extract::rejection::JsonRejection>,
) -> Response {
    hq!(state, headers);
    let r: Result<(), ApiError> = async {
        let Json(req) = body.map_err(|e| {
            bad_request(format!(
                "bad JSON: {e}; send {{\"stores\": [ids], \"groups\": [ids]}}"
            ))
        })?;
        let id: engine::ids::TemplateId = id
            .parse()
            .map_err(|e| bad_request(format!("template id: {e}")))?;
        let (stores, groups) = targets(&req.stores, &req.groups)?;
        if stores.is_empty() && groups.is_empty() {
            return Err(bad_request("name at least one store or store group"));
        }
        state
            .hub
            .call(
                move |hub, now| match hub.assign_template_to(id, &stores, &groups) {
                    Ok(()) => (Ok(()), hub.materialize_horizon(now).unwrap_or_default()),
                    Err(e) => (Err(e), Vec::new()),
                },
            )
            .await??;
        Ok(())
    }
    .await;
    match r {
        Ok(()) => Json(json!({"assigned": true})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/templates/{id}/unassign` (`{"stores", "groups"}`): take a
/// template off stores or store groups; the stores it no longer reaches
/// have its future lists withdrawn (see `Hub::unassign_template`).
async fn unassign_template(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<AssignTemplate>, axum::extract::rejection::JsonRejection>,
) -> Response {
    hq!(state, headers);
    let r: Result<engine::replica::TemplateRemoval, ApiError> = async {
        let Json(req) = body.map_err(|e| {
            bad_request(format!(
                "bad JSON: {e}; send {{\"stores\": [ids], \"groups\": [ids]}}"
            ))
        })?;
        let id: engine::ids::TemplateId = id
            .parse()
            .map_err(|e| bad_request(format!("template id: {e}")))?;
        let (stores, groups) = targets(&req.stores, &req.groups)?;
        Ok(state
            .hub
            .call(move |hub, now| answer_with(hub.unassign_template(id, &stores, &groups, now)))
            .await??)
    }
    .await;
    reply(StatusCode::OK, r)
}

/// `DELETE /api/templates/{id}`: delete a template, its revisions and
/// assignments; future lists nobody started are withdrawn, the rest stay
/// (see `Hub::delete_template`).
async fn delete_template(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    hq!(state, headers);
    let r: Result<engine::replica::TemplateRemoval, ApiError> = async {
        let id: engine::ids::TemplateId = id
            .parse()
            .map_err(|e| bad_request(format!("template id: {e}")))?;
        Ok(state
            .hub
            .call(move |hub, now| answer_with(hub.delete_template(id, now)))
            .await??)
    }
    .await;
    reply(StatusCode::OK, r)
}
