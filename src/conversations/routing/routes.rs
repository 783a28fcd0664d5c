//! Routing API (operator-authenticated until people and roles land):
//!
//! - `GET  /api/v1/tenants/{t}/agents` — agents with their load ([`AgentView`]).
//! - `GET|PUT|DELETE /api/v1/tenants/{t}/agents/{user}` — one agent; PUT takes
//!   `{"outlets": [..], "capacity": n, "online": bool}` (each optional) and creates the agent.
//! - `POST /api/v1/tenants/{t}/agents/{user}/presence` — `{"online": bool}`.
//! - `GET  /api/v1/tenants/{t}/routing/queue[?outlet=id|none]` — waiting conversations, oldest first.
//! - `GET|PUT /api/v1/tenants/{t}/routing/settings` — [`RoutingSettings`].
//! - `GET|PUT|DELETE /api/v1/tenants/{t}/outlets/{outlet}/hours` — [`BusinessHours`] of an outlet,
//!   or with `default` the tenant's default.
//! - `POST /api/v1/tenants/{t}/conversations/{id}/assign` — `{"agent": "user" | null}`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{AgentUpdate, AgentView, BusinessHours, QueueEntry, RoutingError, RoutingSettings};
use crate::conversations::{Conversation, LiveUpdate};
use crate::storage::{ConversationId, OutletId, TenantId};
use crate::tenants;
use crate::web::auth::Operator;
use crate::web::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tenants/{tenant}/agents", get(list_agents))
        .route(
            "/api/v1/tenants/{tenant}/agents/{user}",
            get(get_agent).put(put_agent).delete(delete_agent),
        )
        .route(
            "/api/v1/tenants/{tenant}/agents/{user}/presence",
            post(presence),
        )
        .route("/api/v1/tenants/{tenant}/routing/queue", get(queue))
        .route(
            "/api/v1/tenants/{tenant}/routing/settings",
            get(get_settings).put(put_settings),
        )
        .route(
            "/api/v1/tenants/{tenant}/outlets/{outlet}/hours",
            get(get_hours).put(put_hours).delete(delete_hours),
        )
        .route(
            "/api/v1/tenants/{tenant}/conversations/{id}/assign",
            post(assign),
        )
}

impl From<RoutingError> for ApiError {
    fn from(e: RoutingError) -> Self {
        match e {
            RoutingError::Store(s) => s.into(),
            RoutingError::NotFound(_) => ApiError::not_found(e.to_string()),
            RoutingError::Invalid { .. } => ApiError::bad_request(e.code(), e.to_string()),
            RoutingError::Rejected { code, message } => {
                crate::storage::StoreError::Rejected { code, message }.into()
            }
        }
    }
}

fn tenant_id(state: &AppState, tenant: &str) -> Result<TenantId, ApiError> {
    Ok(tenants::find_tenant(&state.store, tenant)?.id)
}

fn announce(state: &AppState, tenant: TenantId, changed: &[ConversationId]) {
    for c in changed {
        state.live.publish(LiveUpdate::assignment(tenant, *c));
    }
}

async fn list_agents(
    _op: Operator,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<AgentView>>, ApiError> {
    let tenant = tenant_id(&state, &tenant)?;
    Ok(Json(super::list_agents(&state.store, tenant)?))
}

async fn get_agent(
    _op: Operator,
    State(state): State<AppState>,
    Path((tenant, user)): Path<(String, String)>,
) -> Result<Json<AgentView>, ApiError> {
    let tenant = tenant_id(&state, &tenant)?;
    Ok(Json(super::get_agent(&state.store, tenant, &user)?))
}

async fn put_agent(
    _op: Operator,
    State(state): State<AppState>,
    Path((tenant, user)): Path<(String, String)>,
    body: Result<Json<AgentUpdate>, JsonRejection>,
) -> Result<Json<AgentView>, ApiError> {
    let Json(update) = body?;
    let tenant = tenant_id(&state, &tenant)?;
    let changed = super::update_agent(&state.store, tenant, &user, update).await?;
    announce(&state, tenant, &changed.conversations);
    Ok(Json(changed.value))
}

async fn delete_agent(
    _op: Operator,
    State(state): State<AppState>,
    Path((tenant, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = tenant_id(&state, &tenant)?;
    let changed = super::remove_agent(&state.store, tenant, &user).await?;
    announce(&state, tenant, &changed);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Presence {
    online: bool,
}

async fn presence(
    _op: Operator,
    State(state): State<AppState>,
    Path((tenant, user)): Path<(String, String)>,
    body: Result<Json<Presence>, JsonRejection>,
) -> Result<Json<AgentView>, ApiError> {
    let Json(p) = body?;
    let tenant = tenant_id(&state, &tenant)?;
    let changed = super::set_online(&state.store, tenant, &user, p.online).await?;
    announce(&state, tenant, &changed.conversations);
    Ok(Json(changed.value))
}

#[derive(Deserialize)]
struct QueueQuery {
    outlet: Option<String>,
}

/// `default`/`none` → no outlet; otherwise an outlet id.
fn parse_outlet(field: &str, value: &str, none_word: &str) -> Result<Option<OutletId>, ApiError> {
    if value == none_word {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        ApiError::bad_request(
            "invalid_input",
            format!("{field}: must be {none_word} or an outlet id"),
        )
    })
}

async fn queue(
    _op: Operator,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Query(q): Query<QueueQuery>,
) -> Result<Json<Vec<QueueEntry>>, ApiError> {
    let tenant = tenant_id(&state, &tenant)?;
    let outlet = q
        .outlet
        .as_deref()
        .map(|o| parse_outlet("outlet", o, "none"))
        .transpose()?;
    Ok(Json(super::queue(&state.store, tenant, outlet)?))
}

async fn get_settings(
    _op: Operator,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Json<RoutingSettings>, ApiError> {
    let tenant = tenant_id(&state, &tenant)?;
    Ok(Json(super::settings(&state.store, tenant)?))
}

async fn put_settings(
    _op: Operator,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    body: Result<Json<RoutingSettings>, JsonRejection>,
) -> Result<Json<RoutingSettings>, ApiError> {
    let Json(new) = body?;
    let tenant = tenant_id(&state, &tenant)?;
    Ok(Json(super::set_settings(&state.store, tenant, new).await?))
}

async fn get_hours(
    _op: Operator,
    State(state): State<AppState>,
    Path((tenant, outlet)): Path<(String, String)>,
) -> Result<Json<Option<BusinessHours>>, ApiError> {
    let tenant = tenant_id(&state, &tenant)?;
    let outlet = parse_outlet("outlet", &outlet, "default")?;
    Ok(Json(super::business_hours(&state.store, tenant, outlet)?))
}

async fn put_hours(
    _op: Operator,
    State(state): State<AppState>,
    Path((tenant, outlet)): Path<(String, String)>,
    body: Result<Json<BusinessHours>, JsonRejection>,
) -> Result<Json<Option<BusinessHours>>, ApiError> {
    let Json(hours) = body?;
    let tenant = tenant_id(&state, &tenant)?;
    let outlet = parse_outlet("outlet", &outlet, "default")?;
    Ok(Json(
        super::set_business_hours(&state.store, tenant, outlet, Some(hours)).await?,
    ))
}

async fn delete_hours(
    _op: Operator,
    State(state): State<AppState>,
    Path((tenant, outlet)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = tenant_id(&state, &tenant)?;
    let outlet = parse_outlet("outlet", &outlet, "default")?;
    super::set_business_hours(&state.store, tenant, outlet, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    agent: Option<String>,
}

async fn assign(
    _op: Operator,
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
    body: Result<Json<AssignBody>, JsonRejection>,
) -> Result<Json<Conversation>, ApiError> {
    let Json(body) = body?;
    let tenant = tenant_id(&state, &tenant)?;
    let id: ConversationId = id
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_input", "id: not a conversation id"))?;
    let changed = super::assign(&state.store, tenant, id, body.agent).await?;
    announce(&state, tenant, &changed.conversations);
    Ok(Json(changed.value))
}
