//! JSON API for conversations: list, read, and the agent's actions.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{actions, Conversation, ConversationState, LiveUpdate, Message};
use crate::people::audit::{self, AuditEntry};
use crate::people::Role;
use crate::storage::{ConversationId, TenantId};
use crate::web::auth::{Member, MemberKind, Principal, TenantCtx};
use crate::web::{Access, Api, ApiError, AppState};

pub fn api() -> Api {
    use Access::Tenant;
    Api::new()
        .get(
            "/api/v1/tenants/{tenant}/conversations",
            Tenant(Role::Viewer),
            list,
        )
        .get(
            "/api/v1/tenants/{tenant}/conversations/{id}",
            Tenant(Role::Viewer),
            show,
        )
        .post(
            "/api/v1/tenants/{tenant}/conversations/{id}/takeover",
            Tenant(Role::Agent),
            take_over,
        )
        .post(
            "/api/v1/tenants/{tenant}/conversations/{id}/reply",
            Tenant(Role::Agent),
            reply,
        )
        .post(
            "/api/v1/tenants/{tenant}/conversations/{id}/handback",
            Tenant(Role::Agent),
            hand_back,
        )
        .post(
            "/api/v1/tenants/{tenant}/conversations/{id}/close",
            Tenant(Role::Agent),
            close,
        )
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

fn parse_state(s: &str) -> Result<ConversationState, ApiError> {
    Ok(match s {
        "bot" => ConversationState::Bot,
        "pending_human" => ConversationState::PendingHuman,
        "human" => ConversationState::Human,
        "closed" => ConversationState::Closed,
        other => {
            return Err(ApiError::bad_request(
                "invalid_input",
                format!("state: {other:?} is not one of bot, pending_human, human, closed"),
            ))
        }
    })
}

/// The conversation `id` of the caller's tenant, if the caller works for its outlet.
fn conversation_for(
    state: &AppState,
    ctx: &TenantCtx,
    id: &str,
) -> Result<(TenantId, Conversation), ApiError> {
    let id: ConversationId = id
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_input", "id: not a conversation id"))?;
    let conversation = super::get_conversation(&state.store, ctx.id(), id)?
        .ok_or_else(|| ApiError::not_found(format!("conversation {id} not found")))?;
    if !ctx.principal.covers_outlet(conversation.outlet) {
        return Err(ApiError::forbidden(
            "this conversation belongs to an outlet you do not work for",
        ));
    }
    Ok((ctx.id(), conversation))
}

async fn list(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Conversation>>, ApiError> {
    let filter = q.state.as_deref().map(parse_state).transpose()?;
    let limit = q.limit.min(1000);
    // Every conversation of the tenant is read to order them by activity: on a blocking thread,
    // as the runtime may have a single worker, which also answers webhooks.
    let (store, tenant) = (state.store.clone(), ctx.id());
    let all = tokio::task::spawn_blocking(move || {
        super::list_conversations(&store, tenant, filter, usize::MAX)
    })
    .await
    .map_err(|e| ApiError::internal_message(format!("conversation list task: {e}")))??;
    // Outlet-limited callers see their outlets' conversations only.
    Ok(Json(
        all.into_iter()
            .filter(|c| ctx.principal.covers_outlet(c.outlet))
            .take(limit)
            .collect(),
    ))
}

#[derive(Serialize)]
struct ConversationDetail {
    conversation: Conversation,
    messages: Vec<Message>,
}

async fn show(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<ConversationDetail>, ApiError> {
    let (tenant, conversation) = conversation_for(&state, &ctx, &id)?;
    let messages = super::recent_messages(&state.store, tenant, conversation.id, 500)?;
    Ok(Json(ConversationDetail {
        conversation,
        messages,
    }))
}

async fn take_over(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Conversation>, ApiError> {
    let (tenant, conversation) = conversation_for(&state, &ctx, &id)?;
    let taker = match &ctx.principal {
        Principal::Member(Member {
            kind: MemberKind::User { id, .. },
            ..
        }) => Some(id.to_string()),
        _ => None,
    };
    let c = take_over_as(&state, tenant, conversation.id, taker, ctx.actor()).await?;
    Ok(Json(c))
}

/// Takes the conversation over for `taker` (a user id; None for the operator or an API key),
/// announces every conversation whose assignment changed, and records it in the audit log. The
/// API and the dashboard both take over through here.
pub(crate) async fn take_over_as(
    state: &AppState,
    tenant: TenantId,
    id: ConversationId,
    taker: Option<String>,
    actor: audit::Actor,
) -> Result<Conversation, ApiError> {
    let (c, reassigned) = actions::take_over_by(&state.store, tenant, id, taker).await?;
    state.live.publish(LiveUpdate::state(tenant, id));
    for other in reassigned {
        state.live.publish(LiveUpdate::assignment(tenant, other));
    }
    audit::record_now(
        &state.store,
        AuditEntry::new(
            actor,
            "conversation.taken_over",
            format!("conversation {id}"),
        )
        .tenant(tenant)
        .detail(serde_json::json!({"outlet": c.outlet})),
    )
    .await?;
    Ok(c)
}

#[derive(Deserialize)]
struct ReplyBody {
    text: String,
}

async fn reply(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, id)): Path<(String, String)>,
    body: Result<Json<ReplyBody>, JsonRejection>,
) -> Result<Json<Message>, ApiError> {
    let Json(body) = body?;
    let (tenant, conversation) = conversation_for(&state, &ctx, &id)?;
    let id = conversation.id;
    let m = actions::agent_reply(&state.store, tenant, id, body.text).await?;
    state.live.publish(LiveUpdate::message(tenant, id));
    Ok(Json(m))
}

async fn hand_back(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Conversation>, ApiError> {
    let (tenant, conversation) = conversation_for(&state, &ctx, &id)?;
    Ok(Json(
        hand_back_announced(&state, tenant, conversation.id).await?,
    ))
}

/// Hands back to the assistant and announces the conversations the freed slot went to (the API
/// and the dashboard).
pub(crate) async fn hand_back_announced(
    state: &AppState,
    tenant: TenantId,
    id: ConversationId,
) -> Result<Conversation, ApiError> {
    let (c, routed) = actions::hand_back_routed(&state.store, tenant, id).await?;
    state.live.publish(LiveUpdate::state(tenant, id));
    for other in routed {
        state.live.publish(LiveUpdate::assignment(tenant, other));
    }
    Ok(c)
}

async fn close(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Conversation>, ApiError> {
    let (tenant, conversation) = conversation_for(&state, &ctx, &id)?;
    Ok(Json(
        close_announced(&state, tenant, conversation.id).await?,
    ))
}

/// Closes and announces the conversations the freed slot went to (the API and the dashboard).
pub(crate) async fn close_announced(
    state: &AppState,
    tenant: TenantId,
    id: ConversationId,
) -> Result<Conversation, ApiError> {
    let (c, routed) = actions::close_routed(&state.store, tenant, id).await?;
    state.live.publish(LiveUpdate::state(tenant, id));
    for other in routed {
        state.live.publish(LiveUpdate::assignment(tenant, other));
    }
    Ok(c)
}
