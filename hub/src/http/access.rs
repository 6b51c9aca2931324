//! Who may call which `/api` route (issue #23). Every route is added
//! through [`ApiRoutes`] with its [`Access`] rule, so a route cannot exist
//! without one; the [`authorize`] middleware checks each request against
//! its route's rule before the handler runs, and records every HQ write in
//! the audit after it.
//!
//! A rule is the role it needs (`engine::hq_accounts::Need`) and which
//! stores it reaches ([`Reach`]). A store outside the caller's scope is
//! answered exactly as a store that does not exist (404), so a scoped
//! account cannot learn which other stores there are.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::Router;
use engine::hq_accounts::{AuditEntry, Caller, HqScope, Need};
use engine::ids::{DocumentId, StoreGroupId, StoreId};
use engine::replica::hub::HubError;
use serde_json::Value;

use super::auth::presented_token;
use super::reply::ApiError;
use super::session;
use super::state::AppState;
use crate::runtime::now_ms;

/// On a write one cluster node passes to another: the nodes' shared
/// secret (`AppState::audit_secret`), saying the node it reached audited it.
pub const AUDITED: &str = "x-hub-audited";

/// Largest request body read to find the stores it names.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Which stores a route reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// No store's data: accounts, tokens, the hub's own counters.
    Nothing,
    /// The store in the path (`{id}` or `{store}`).
    PathStore,
    /// The store of the document in the path (`{id}`).
    PathDocument,
    /// The stores the request names: `?store=`, and the body's `store`,
    /// `stores` and `groups`. Naming none means every store ([`Reach::Fleet`]).
    Named,
    /// Every store. A scoped caller may read it only if the answer is a
    /// list of rows keyed by a store (`rows_by`): it gets its stores' rows.
    /// A write to every store needs a caller whose scope is all stores.
    Fleet { rows_by: Option<&'static str> },
    /// The stores in the caller's scope, for a read whose handler narrows
    /// its answer itself (a paged answer cannot be narrowed after it is
    /// cut into pages).
    Scope,
}

/// A route's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credential (signing in).
    Public,
    /// An HQ caller whose role allows `Need`, within its scope.
    Hq(Need, Reach),
}

/// The `/api` routes, each with its rule.
pub struct ApiRoutes {
    router: Router<AppState>,
    rules: Vec<(Method, &'static str, Access)>,
}

impl Default for ApiRoutes {
    fn default() -> Self {
        ApiRoutes {
            router: Router::new(),
            rules: Vec::new(),
        }
    }
}

impl ApiRoutes {
    /// `handler` for `method` at `path` (under `/api`), under `access`.
    pub fn route<H, T>(mut self, method: Method, path: &'static str, access: Access, h: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        assert!(
            !matches!(access, Access::Hq(need, Reach::Scope) if need != Need::Read),
            "{method} {path}: only a read may narrow its answer itself (Reach::Scope)"
        );
        let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
        self.router = self.router.route(path, on(filter, h));
        self.rules.push((method, path, access));
        self
    }

    pub fn merge(mut self, other: ApiRoutes) -> Self {
        self.router = self.router.merge(other.router);
        self.rules.extend(other.rules);
        self
    }

    /// Every route and its rule.
    pub fn rules(&self) -> &[(Method, &'static str, Access)] {
        &self.rules
    }

    /// The router, with `inner` layered inside and every request
    /// authorized by its rule before it reaches `inner`.
    pub fn into_router(
        self,
        state: AppState,
        inner: impl FnOnce(Router<AppState>) -> Router<AppState>,
    ) -> Router<AppState> {
        let rules: Arc<Rules> = Arc::new(
            self.rules
                .into_iter()
                .map(|(m, p, a)| ((m, p.to_owned()), a))
                .collect(),
        );
        inner(self.router).route_layer(axum::middleware::from_fn_with_state(
            Authorizer { state, rules },
            authorize,
        ))
    }
}

type Rules = HashMap<(Method, String), Access>;

#[derive(Clone)]
pub struct Authorizer {
    state: AppState,
    rules: Arc<Rules>,
}

/// The error a store outside the caller's scope gets: the same as a
/// store that does not exist.
fn no_such_store(store: StoreId) -> Response {
    ApiError::from(HubError::UnknownStore(store)).into_response()
}

fn forbidden(msg: String) -> Response {
    ApiError(StatusCode::FORBIDDEN, msg).into_response()
}

/// Check a request against its route's rule; run it; audit it if it writes.
pub async fn authorize(State(auth): State<Authorizer>, req: Request, next: Next) -> Response {
    let state = &auth.state;
    let Some(route) = req.extensions().get::<MatchedPath>().map(|m| {
        let p = m.as_str();
        p.strip_prefix("/api").unwrap_or(p).to_owned()
    }) else {
        return next.run(req).await;
    };
    let method = if req.method() == Method::HEAD {
        Method::GET
    } else {
        req.method().clone()
    };
    let Some(access) = auth.rules.get(&(method.clone(), route.clone())).copied() else {
        return ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{method} {route} has no access rule; refused"),
        )
        .into_response();
    };
    let Access::Hq(need, reach) = access else {
        return next.run(req).await;
    };
    let writes = method != Method::GET;
    // A bearer token (CLI, scripts) wins; else the dashboard's session
    // cookie, whose writes must also carry its CSRF token.
    let bearer = presented_token(req.headers(), None);
    let session = match bearer {
        Some(_) => None,
        None => session::cookie_token(req.headers()),
    };
    let csrf_missing = writes
        && session
            .as_deref()
            .is_some_and(|t| !session::csrf_ok(req.headers(), t));
    let token = bearer.or_else(|| session.clone());
    // A write's caller is read on the hub thread, in order with what is
    // queued there: a revocation, a disabled account or a changed role
    // asked for before it applies to it. A read's, off it (`ReadPool`).
    let caller = if writes {
        state
            .hub
            .registry()
            .call(move |hub, now| (hub.caller(token.as_deref(), now), Vec::new()))
            .await
    } else {
        state.readers.caller(token, now_ms()).await
    };
    let caller = match caller {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::warn!(reason = %e, "refused an API request");
            return (StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    // A request another node passed here was audited where it arrived
    // (once per action, by the node the operator reached).
    let passed_audited = match (&state.audit_secret, req.headers().get(AUDITED)) {
        (Some(secret), Some(v)) => v.as_bytes() == secret.as_bytes(),
        _ => false,
    };
    let audited = writes && !passed_audited;
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().path().to_owned(), |u| u.path().to_owned());
    let action = format!("{} {path}", req.method());

    let (mut parts, body) = req.into_parts();
    parts.headers.remove(AUDITED);
    if let Some(v) = session
        .as_deref()
        .and_then(|t| axum::http::HeaderValue::from_str(&format!("Bearer {t}")).ok())
    {
        // The handler (`auth::require_hq`) and another cluster node
        // (`forward`) see the session as the token it is.
        parts.headers.insert(axum::http::header::AUTHORIZATION, v);
    }
    if let Some(v) = state
        .audit_secret
        .as_deref()
        .and_then(|s| axum::http::HeaderValue::from_str(s).ok())
    {
        // Passed on to other nodes (`forward`), which do not audit it again.
        parts.headers.insert(AUDITED, v);
    }
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response();
    };
    let named = named_stores(&route, reach, &parts, &bytes);
    let answer = match check(state, &caller, need, reach, &named).await {
        _ if csrf_missing => forbidden(format!(
            "a write signed in with the dashboard's session cookie must carry the session's \
             CSRF token in the {} header (GET /api/session answers it)",
            session::CSRF_HEADER
        )),
        Err(refusal) => refusal,
        Ok(filter) => {
            let resp = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            match filter {
                Some((field, stores)) => keep_rows(resp, field, &stores).await,
                None => resp,
            }
        }
    };
    if !audited {
        return answer;
    }
    let (answer, outcome) = error_text(answer).await;
    let entry = AuditEntry {
        at_ms: now_ms(),
        user: caller.audit_name(),
        action,
        stores: audited_stores(reach, &named),
        status: answer.status().as_u16(),
        outcome,
    };
    let recorded = state
        .hub
        .registry()
        .call(move |hub, _| (hub.hq_accounts().append_audit(&entry), Vec::new()))
        .await;
    match recorded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "an HQ action could not be audited"),
        Err(e) => tracing::error!(error = %e, "an HQ action could not be audited"),
    }
    answer
}

/// What a request names: stores, store groups, a document.
#[derive(Debug, Default)]
struct Named {
    stores: BTreeSet<StoreId>,
    groups: BTreeSet<StoreGroupId>,
    doc: Option<DocumentId>,
    /// A path or body value that does not parse: the handler answers it.
    unparsed: bool,
}

fn named_stores(
    route: &str,
    reach: Reach,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> Named {
    let mut named = Named::default();
    let path = parts.uri.path();
    let path = path.strip_prefix("/api").unwrap_or(path);
    let params = route
        .trim_matches('/')
        .split('/')
        .zip(path.trim_matches('/').split('/'));
    for (template, value) in params {
        match (reach, template) {
            (Reach::PathStore, "{id}" | "{store}") => match value.parse() {
                Ok(s) => {
                    named.stores.insert(s);
                }
                Err(_) => named.unparsed = true,
            },
            (Reach::PathDocument, "{id}") => match value.parse() {
                Ok(d) => named.doc = Some(d),
                Err(_) => named.unparsed = true,
            },
            _ => {}
        }
    }
    if reach == Reach::Named {
        let query = parts.uri.query().unwrap_or("");
        for (k, v) in form_urlencoded_pairs(query) {
            if k == "store" && !v.is_empty() {
                match v.parse() {
                    Ok(s) => {
                        named.stores.insert(s);
                    }
                    Err(_) => named.unparsed = true,
                }
            }
        }
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let mut add = |field: &str, v: &Value| {
            let ok = match field {
                "groups" => v
                    .as_str()
                    .and_then(|g| g.parse().ok())
                    .map(|g| named.groups.insert(g)),
                _ => v
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .map(|s| named.stores.insert(s)),
            };
            if ok.is_none() {
                named.unparsed = true;
            }
        };
        if let Some(s) = v.get("store").filter(|s| !s.is_null()) {
            add("store", s);
        }
        for field in ["stores", "groups"] {
            for s in v.get(field).and_then(Value::as_array).into_iter().flatten() {
                add(field, s);
            }
        }
    }
    named
}

/// What the audit records as a write's stores: those it named, its store
/// groups as `group:<id>`, and `*` for a write that reaches every store.
fn audited_stores(reach: Reach, named: &Named) -> Vec<String> {
    let mut out: Vec<String> = named.stores.iter().map(|s| s.to_string()).collect();
    out.extend(named.groups.iter().map(|g| format!("group:{g}")));
    let fleet = matches!(reach, Reach::Fleet { .. })
        || (reach == Reach::Named && out.is_empty() && !named.unparsed);
    if fleet {
        out.push("*".into());
    }
    out
}

/// `a=1&b=2` as pairs, percent-decoded.
fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    let uri: axum::http::Uri = match format!("/?{query}").parse() {
        Ok(u) => u,
        Err(_) => return Vec::new(),
    };
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

/// Whether `caller` may do this; `Ok(Some(..))`: only the rows of these
/// stores may be answered.
async fn check(
    state: &AppState,
    caller: &Caller,
    need: Need,
    reach: Reach,
    named: &Named,
) -> Result<Option<(&'static str, BTreeSet<StoreId>)>, Response> {
    let Some(role) = caller.role() else {
        return Err(forbidden(
            "this is a store token; the admin API needs an HQ token (the admin token or a \
             personal token from `hub login`)"
                .into(),
        ));
    };
    if !role.may(need) {
        return Err(forbidden(format!(
            "your role ({role}) may not do this; {} can",
            match need {
                Need::Read => "any HQ role",
                Need::Author => "an editor or an admin",
                Need::Administer => "only an admin",
            }
        )));
    }
    let HqScope::Groups(mine) = caller.scope() else {
        return Ok(None);
    };
    let facts = match state.readers.scope_facts(named.doc).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return Err(ApiError::from(e).into_response()),
        Err(e) => return Err(ApiError::from(e).into_response()),
    };
    let in_scope = |s: &StoreId| {
        facts
            .groups_of
            .get(s)
            .is_some_and(|g| g.iter().any(|g| mine.contains(g)))
    };
    for s in &named.stores {
        if !in_scope(s) {
            return Err(no_such_store(s.clone()));
        }
    }
    if let Some(g) = named.groups.iter().find(|g| !mine.contains(*g)) {
        return Err(
            ApiError(StatusCode::NOT_FOUND, format!("unknown store group {g}")).into_response(),
        );
    }
    if let Some(d) = named.doc {
        match &facts.doc_store {
            Some(s) if !in_scope(s) => {
                return Err(ApiError::from(HubError::UnknownDocument(d)).into_response())
            }
            _ => {}
        }
    }
    let fleet = match reach {
        Reach::Fleet { rows_by } => Some(rows_by),
        Reach::Named if named.stores.is_empty() && named.groups.is_empty() && !named.unparsed => {
            Some(Some("store"))
        }
        _ => None,
    };
    match fleet {
        None => Ok(None),
        Some(Some(field)) if need == Need::Read => Ok(Some((
            field,
            facts
                .groups_of
                .keys()
                .filter(|s| in_scope(s))
                .cloned()
                .collect(),
        ))),
        Some(_) => Err(forbidden(format!(
            "this reaches every store; your scope is {}: name stores in it",
            caller.scope()
        ))),
    }
}

/// `resp`, a JSON list of rows, with only the rows whose `field` is one of
/// `stores`.
async fn keep_rows(resp: Response, field: &str, stores: &BTreeSet<StoreId>) -> Response {
    if !resp.status().is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Ok(Value::Array(rows)) = serde_json::from_slice::<Value>(&bytes) else {
        // Not rows by store: answer nothing rather than everything.
        return forbidden("this answer cannot be narrowed to your stores".into());
    };
    let kept: Vec<Value> = rows
        .into_iter()
        .filter(|r| {
            r.get(field)
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<StoreId>().ok())
                .is_some_and(|s| stores.contains(&s))
        })
        .collect();
    let bytes = serde_json::to_vec(&kept).expect("JSON encodes");
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}

/// The answer unchanged, and its `error` text if it failed.
async fn error_text(resp: Response) -> (Response, String) {
    if resp.status().is_success() {
        return (resp, String::new());
    }
    let (parts, body) = resp.into_parts();
    let bytes = to_bytes(body, MAX_BODY).await.unwrap_or_default();
    let text = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned());
    (Response::from_parts(parts, Body::from(bytes)), text)
}
