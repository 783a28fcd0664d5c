//! Routing API. Access is declared in the route table (`web::access`); the finer checks (an
//! agent's own presence, outlet limits) stay here.
//!
//! - `GET  /api/v1/tenants/{t}/agents` — agents with their load ([`AgentView`]). Admin.
//! - `GET|PUT|DELETE /api/v1/tenants/{t}/agents/{agent}` — one agent (`agent` is a user id); PUT
//!   takes `{"outlets": [..], "capacity": n, "online": bool}` (each optional) and creates the
//!   agent. Admin; GET also the agent themself.
//! - `POST /api/v1/tenants/{t}/agents/{agent}/presence` — `{"online": bool}`. The agent themself
//!   (signed in as that user), or an admin.
//! - `GET  /api/v1/tenants/{t}/routing/queue[?outlet=id|none]` — waiting conversations, oldest
//!   first; outlet-limited callers see their outlets' only. Viewer.
//! - `GET|PUT /api/v1/tenants/{t}/routing/settings` — [`RoutingSettings`]. Admin.
//! - `GET|PUT|DELETE /api/v1/tenants/{t}/outlets/{outlet}/hours` — [`BusinessHours`] of an outlet,
//!   or with `default` the tenant's default. Reading: viewer; changing: admin of that outlet.
//! - `POST /api/v1/tenants/{t}/conversations/{id}/assign` — `{"agent": "user id" | null}`. Admin
//!   of the conversation's outlet.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::{AgentUpdate, AgentView, BusinessHours, QueueEntry, RoutingError, RoutingSettings};
use crate::conversations::{Conversation, LiveUpdate};
use crate::people::{Role, User, UserStatus};
use crate::storage::{ConversationId, OutletId, TenantId, UserId};
use crate::web::auth::{forbidden, Member, MemberKind, Principal, TenantCtx};
use crate::web::{Access, Api, ApiError, AppState};

pub fn api() -> Api {
    use Access::Tenant;
    Api::new()
        .get(
            "/api/v1/tenants/{tenant}/agents",
            Tenant(Role::Admin),
            list_agents,
        )
        // Agents read their own row and set their own presence: the gate lets agents in, the
        // handler lets them act on themselves only.
        .get(
            "/api/v1/tenants/{tenant}/agents/{agent}",
            Tenant(Role::Agent),
            get_agent,
        )
        .put(
            "/api/v1/tenants/{tenant}/agents/{agent}",
            Tenant(Role::Admin),
            put_agent,
        )
        .delete(
            "/api/v1/tenants/{tenant}/agents/{agent}",
            Tenant(Role::Admin),
            delete_agent,
        )
        .post(
            "/api/v1/tenants/{tenant}/agents/{agent}/presence",
            Tenant(Role::Agent),
            presence,
        )
        .get(
            "/api/v1/tenants/{tenant}/routing/queue",
            Tenant(Role::Viewer),
            queue,
        )
        .get(
            "/api/v1/tenants/{tenant}/routing/settings",
            Tenant(Role::Admin),
            get_settings,
        )
        .put(
            "/api/v1/tenants/{tenant}/routing/settings",
            Tenant(Role::Admin),
            put_settings,
        )
        .get(
            "/api/v1/tenants/{tenant}/outlets/{outlet}/hours",
            Tenant(Role::Viewer),
            get_hours,
        )
        .put(
            "/api/v1/tenants/{tenant}/outlets/{outlet}/hours",
            Tenant(Role::Admin),
            put_hours,
        )
        .delete(
            "/api/v1/tenants/{tenant}/outlets/{outlet}/hours",
            Tenant(Role::Admin),
            delete_hours,
        )
        .post(
            "/api/v1/tenants/{tenant}/conversations/{id}/assign",
            Tenant(Role::Admin),
            assign,
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

pub(crate) fn announce(state: &AppState, tenant: TenantId, changed: &[ConversationId]) {
    for c in changed {
        state.live.publish(LiveUpdate::assignment(tenant, *c));
    }
}

/// Whether the caller is the person `agent` names (a signed-in user, not an API key).
fn is_self(principal: &Principal, agent: &str) -> bool {
    matches!(
        principal,
        Principal::Member(Member {
            kind: MemberKind::User { id, .. },
            ..
        }) if id.to_string() == agent
    )
}

/// Admins act on any agent; anyone else on themselves only.
fn admin_or_self(ctx: &TenantCtx, agent: &str) -> Result<(), ApiError> {
    if ctx.principal.role_in(ctx.id()) == Some(Role::Admin) || is_self(&ctx.principal, agent) {
        Ok(())
    } else {
        Err(forbidden("agents may only see and set their own presence"))
    }
}

/// The person an agent row is for: an active user of the tenant who works conversations.
pub(crate) fn agent_user(
    state: &AppState,
    tenant: TenantId,
    agent: &str,
) -> Result<User, ApiError> {
    let id: UserId = agent
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_input", "agent: not a user id"))?;
    let user = crate::people::users::get(&state.store, tenant, id)?
        .ok_or_else(|| ApiError::not_found(format!("user {id} not found")))?;
    if user.status != UserStatus::Active {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "the user is disabled: conversations are not routed to them",
        ));
    }
    if user.role < Role::Agent {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "a viewer does not work conversations; give the user the agent role first",
        ));
    }
    Ok(user)
}

/// The outlets to store for an agent: never wider than the outlets the person works for (an
/// outlet-limited person's "all outlets" is their own outlets).
pub(crate) fn agent_outlets(
    state: &AppState,
    tenant: TenantId,
    user: &User,
    agent: &str,
    requested: Option<Vec<OutletId>>,
) -> Result<Option<Vec<OutletId>>, ApiError> {
    if user.outlets.is_empty() {
        return Ok(requested);
    }
    match requested {
        Some(list) if list.is_empty() => Ok(Some(user.outlets.clone())),
        Some(list) => match list.iter().find(|o| !user.outlets.contains(o)) {
            Some(o) => Err(ApiError::bad_request(
                "invalid_input",
                format!("outlets: the user does not work for outlet {o}"),
            )),
            None => Ok(Some(list)),
        },
        None => match super::get_agent(&state.store, tenant, agent) {
            Ok(_) => Ok(None),
            Err(RoutingError::NotFound(_)) => Ok(Some(user.outlets.clone())),
            Err(e) => Err(e.into()),
        },
    }
}

async fn list_agents(
    State(state): State<AppState>,
    ctx: TenantCtx,
) -> Result<Json<Vec<AgentView>>, ApiError> {
    Ok(Json(super::list_agents(&state.store, ctx.id())?))
}

async fn get_agent(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, agent)): Path<(String, String)>,
) -> Result<Json<AgentView>, ApiError> {
    admin_or_self(&ctx, &agent)?;
    Ok(Json(super::get_agent(&state.store, ctx.id(), &agent)?))
}

async fn put_agent(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, agent)): Path<(String, String)>,
    body: Result<Json<AgentUpdate>, JsonRejection>,
) -> Result<Json<AgentView>, ApiError> {
    let Json(update) = body?;
    Ok(Json(update_person(&state, ctx.id(), &agent, update).await?))
}

/// Creates or updates the agent row of the person `agent` (a user id): they must work
/// conversations, and serve no outlet they do not work for. Announces the conversations it
/// routed. The API and the dashboard's routing page change agents through here.
pub(crate) async fn update_person(
    state: &AppState,
    tenant: TenantId,
    agent: &str,
    mut update: AgentUpdate,
) -> Result<AgentView, ApiError> {
    let user = agent_user(state, tenant, agent)?;
    update.outlets = agent_outlets(state, tenant, &user, agent, update.outlets.take())?;
    let changed = super::update_agent(&state.store, tenant, agent, update).await?;
    announce(state, tenant, &changed.conversations);
    Ok(changed.value)
}

async fn delete_agent(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, agent)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let changed = super::remove_agent(&state.store, ctx.id(), &agent).await?;
    announce(&state, ctx.id(), &changed);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Presence {
    online: bool,
}

async fn presence(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, agent)): Path<(String, String)>,
    body: Result<Json<Presence>, JsonRejection>,
) -> Result<Json<AgentView>, ApiError> {
    admin_or_self(&ctx, &agent)?;
    let Json(p) = body?;
    Ok(Json(
        set_presence(&state, ctx.id(), &agent, p.online).await?,
    ))
}

/// The person `agent` goes online or away (the API and the dashboard's header). Going online
/// for the first time makes the person an agent of their own outlets.
pub(crate) async fn set_presence(
    state: &AppState,
    tenant: TenantId,
    agent: &str,
    online: bool,
) -> Result<AgentView, ApiError> {
    update_person(
        state,
        tenant,
        agent,
        AgentUpdate {
            online: Some(online),
            ..AgentUpdate::default()
        },
    )
    .await
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

fn outlet_refused() -> ApiError {
    forbidden("this outlet is not one you work for")
}

async fn queue(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(q): Query<QueueQuery>,
) -> Result<Json<Vec<QueueEntry>>, ApiError> {
    let outlet = q
        .outlet
        .as_deref()
        .map(|o| parse_outlet("outlet", o, "none"))
        .transpose()?;
    if let Some(o) = outlet {
        if !ctx.principal.covers_outlet(o) {
            return Err(outlet_refused());
        }
    }
    // Outlet-limited callers see their outlets' queues only (as with conversations).
    let entries = super::queue(&state.store, ctx.id(), outlet)?
        .into_iter()
        .filter(|e| ctx.principal.covers_outlet(e.outlet))
        .collect();
    Ok(Json(entries))
}

async fn get_settings(
    State(state): State<AppState>,
    ctx: TenantCtx,
) -> Result<Json<RoutingSettings>, ApiError> {
    Ok(Json(super::settings(&state.store, ctx.id())?))
}

async fn put_settings(
    State(state): State<AppState>,
    ctx: TenantCtx,
    body: Result<Json<RoutingSettings>, JsonRejection>,
) -> Result<Json<RoutingSettings>, ApiError> {
    let Json(new) = body?;
    Ok(Json(
        super::set_settings(&state.store, ctx.id(), new).await?,
    ))
}

async fn get_hours(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, outlet)): Path<(String, String)>,
) -> Result<Json<Option<BusinessHours>>, ApiError> {
    let outlet = parse_outlet("outlet", &outlet, "default")?;
    Ok(Json(super::business_hours(&state.store, ctx.id(), outlet)?))
}

/// Changing hours: an outlet's by an admin who works for it; the tenant's default by an admin
/// of every outlet.
fn hours_outlet(ctx: &TenantCtx, outlet: &str) -> Result<Option<OutletId>, ApiError> {
    let outlet = parse_outlet("outlet", outlet, "default")?;
    if !ctx.principal.covers_outlet(outlet) {
        return Err(outlet_refused());
    }
    Ok(outlet)
}

async fn put_hours(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, outlet)): Path<(String, String)>,
    body: Result<Json<BusinessHours>, JsonRejection>,
) -> Result<Json<Option<BusinessHours>>, ApiError> {
    let outlet = hours_outlet(&ctx, &outlet)?;
    let Json(hours) = body?;
    Ok(Json(
        super::set_business_hours(&state.store, ctx.id(), outlet, Some(hours)).await?,
    ))
}

async fn delete_hours(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, outlet)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let outlet = hours_outlet(&ctx, &outlet)?;
    super::set_business_hours(&state.store, ctx.id(), outlet, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    agent: Option<String>,
}

async fn assign(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, id)): Path<(String, String)>,
    body: Result<Json<AssignBody>, JsonRejection>,
) -> Result<Json<Conversation>, ApiError> {
    let tenant = ctx.id();
    let id: ConversationId = id
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_input", "id: not a conversation id"))?;
    let conversation = crate::conversations::get_conversation(&state.store, tenant, id)?
        .ok_or_else(|| ApiError::not_found(format!("conversation {id} not found")))?;
    if !ctx.principal.covers_outlet(conversation.outlet) {
        return Err(forbidden(
            "this conversation belongs to an outlet you do not work for",
        ));
    }
    let Json(body) = body?;
    Ok(Json(
        assign_audited(&state, tenant, id, body.agent, ctx.actor()).await?,
    ))
}

/// Assigns through routing (`None`: back to the queue), announces every conversation whose
/// assignment changed, and records it in the audit log (the API and the dashboard).
pub(crate) async fn assign_audited(
    state: &AppState,
    tenant: TenantId,
    id: ConversationId,
    agent: Option<String>,
    actor: crate::people::audit::Actor,
) -> Result<Conversation, ApiError> {
    let changed = super::assign(&state.store, tenant, id, agent).await?;
    announce(state, tenant, &changed.conversations);
    crate::people::audit::record_now(
        &state.store,
        crate::people::audit::AuditEntry::new(
            actor,
            "conversation.assigned",
            format!("conversation {id}"),
        )
        .tenant(tenant)
        .detail(serde_json::json!({"agent": changed.value.assigned_agent})),
    )
    .await?;
    Ok(changed.value)
}
