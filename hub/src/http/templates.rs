//! Recurring lists (templates): list, save a revision, assign to and take
//! off stores and store groups, delete.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::ids::StoreId;
use engine::publish::NewTemplate;
use serde::Deserialize;
use serde_json::json;

use super::access::{
    Access::{self, Hq},
    ApiRoutes, Reach,
};
use super::auth::{hq, require_hq, require_hq_read};
use super::reply::{bad_request, reply, ApiError};
use super::state::AppState;
use crate::runtime::answer_with;
use axum::http::Method;
use engine::hq_accounts::{HqScope, Need};

pub fn routes() -> ApiRoutes {
    // A template's removal reaches every store it is assigned to. An
    // editor scoped to some groups may save one for her stores (naming
    // them) and assign it to them; a revision of a template that also
    // reaches other stores is refused in `put_template`.
    const FLEET: Access = Hq(Need::Author, Reach::Fleet { rows_by: None });
    const ASSIGN: Access = Hq(Need::Author, Reach::Named);
    ApiRoutes::default()
        // Each template names the stores it reaches: a scoped account's
        // answer is narrowed to its own stores (`list_templates`).
        .route(
            Method::GET,
            "/templates",
            Hq(Need::Read, Reach::Scope),
            list_templates,
        )
        .route(Method::POST, "/templates", ASSIGN, put_template)
        .route(Method::DELETE, "/templates/{id}", FLEET, delete_template)
        .route(
            Method::POST,
            "/templates/{id}/assign",
            ASSIGN,
            assign_template,
        )
        .route(
            Method::POST,
            "/templates/{id}/unassign",
            ASSIGN,
            unassign_template,
        )
}

/// Every template's latest revision with the stores it is assigned to.
///
/// A caller scoped to some store groups sees the templates that reach one
/// of its stores or none yet (which it may assign to its own), each with
/// only its own stores: it can author for its region without learning
/// which other stores there are.
async fn list_templates(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let caller = match require_hq_read(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r: Result<Vec<serde_json::Value>, ApiError> = async {
        let all = state
            .hub
            .registry()
            .call_soon(|hub, _| (hub.templates_with_stores(), Vec::new()))
            .await??;
        let scope = caller.scope();
        let facts = match scope {
            HqScope::AllStores => None,
            HqScope::Groups(_) => Some(state.readers.scope_facts(None).await??),
        };
        let mine = |s: &StoreId| match &facts {
            None => true,
            Some(f) => f.groups_of.get(s).is_some_and(|g| scope.covers(g.iter())),
        };
        Ok(all
            .into_iter()
            .filter_map(|(t, stores)| {
                let reached = !stores.is_empty();
                let stores: Vec<StoreId> = stores.into_iter().filter(|s| mine(s)).collect();
                (!reached || !stores.is_empty()).then(|| json!({"template": t, "stores": stores}))
            })
            .collect())
    }
    .await;
    reply(StatusCode::OK, r)
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

async fn put_template(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<NewTemplate>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let caller = match require_hq(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r: Result<engine::template::Template, ApiError> = async {
        let Json(req) = body.map_err(|e| bad_request(format!("bad JSON: {e}")))?;
        let (stores, groups) = targets(&req.stores, &req.groups)?;
        let t = req.template(chrono::Utc::now().date_naive(), &mut uuid::Uuid::new_v4)?;
        let scope = caller.scope();
        let saved = state
            .hub
            .registry()
            .call(move |hub, now| {
                // Checked on the hub thread, in order with assignments.
                if let Err(e) = revision_in_scope(hub, &scope, &t) {
                    return (Err(e), Vec::new());
                }
                match hub.save_template(t, &stores, &groups) {
                    Ok(saved) => {
                        // Existing future instances follow the new revision now.
                        let out = crate::replicas::materialize_now(hub, now);
                        (Ok(saved), out)
                    }
                    Err(e) => (Err(ApiError::from(e)), Vec::new()),
                }
            })
            .await??;
        state
            .hub
            .materialize_on_other_threads(state.hub.registry())
            .await;
        Ok(saved)
    }
    .await;
    reply(StatusCode::CREATED, r)
}

/// A caller scoped to some store groups may revise a template only if
/// every store it reaches now is in her groups: a revision changes the
/// lists of every store it is assigned to.
fn revision_in_scope(
    hub: &engine::replica::hub::Hub,
    scope: &HqScope,
    t: &engine::template::Template,
) -> Result<(), ApiError> {
    let HqScope::Groups(mine) = scope else {
        return Ok(());
    };
    let groups = hub.store_groups()?;
    let covered: std::collections::BTreeSet<&StoreId> = groups
        .iter()
        .filter(|(g, _)| mine.contains(*g))
        .flat_map(|(_, stores)| stores)
        .collect();
    let reached = hub.template_stores(t.id)?;
    if reached.iter().all(|s| covered.contains(s)) {
        return Ok(());
    }
    Err(ApiError(
        axum::http::StatusCode::FORBIDDEN,
        format!(
            "template {} also reaches stores outside your scope ({scope}); an editor over \
             all stores can revise it, or save a new template for your stores",
            t.id.0
        ),
    ))
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
            .registry()
            .call(
                move |hub, now| match hub.assign_template_to(id, &stores, &groups) {
                    Ok(()) => (Ok(()), crate::replicas::materialize_now(hub, now)),
                    Err(e) => (Err(e), Vec::new()),
                },
            )
            .await??;
        state
            .hub
            .materialize_on_other_threads(state.hub.registry())
            .await;
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
        let removal = state
            .hub
            .registry()
            .call(move |hub, now| answer_with(hub.unassign_template(id, &stores, &groups, now)))
            .await??;
        // The other replica threads withdraw their stores' lists now (what
        // they withdraw is not in this answer; see `withdraw_templates_gone`).
        state
            .hub
            .materialize_on_other_threads(state.hub.registry())
            .await;
        Ok(removal)
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
        let removal = state
            .hub
            .registry()
            .call(move |hub, now| answer_with(hub.delete_template(id, now)))
            .await??;
        state
            .hub
            .materialize_on_other_threads(state.hub.registry())
            .await;
        Ok(removal)
    }
    .await;
    reply(StatusCode::OK, r)
}
