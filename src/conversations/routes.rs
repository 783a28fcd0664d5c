//! JSON API for conversations: list, read, and the agent's actions.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{actions, Conversation, ConversationState, LiveUpdate, Message};
use crate::storage::ConversationId;
use crate::tenants;
use crate::web::auth::Operator;
use crate::web::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tenants/{tenant}/conversations", get(list))
        .route("/api/v1/tenants/{tenant}/conversations/{id}", get(show))
        .route(
            "/api/v1/tenants/{tenant}/conversations/{id}/takeover",
            post(take_over),
        )
        .route(
            "/api/v1/tenants/{tenant}/conversations/{id}/reply",
            post(reply),
        )
        .route(
            "/api/v1/tenants/{tenant}/conversations/{id}/handback",
            post(hand_back),
        )
        .route(
            "/api/v1/tenants/{tenant}/conversations/{id}/close",
            post(close),
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

fn ids(
    state: &AppState,
    tenant: &str,
    id: &str,
) -> Result<(crate::storage::TenantId, ConversationId), ApiError> {
    let tenant = tenants::find_tenant(&state.store, tenant)?;
    let id: ConversationId = id
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_input", "id: not a conversation id"))?;
    Ok((tenant.id, id))
}

async fn list(
    _op: Operator,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Conversation>>, ApiError> {
    let tenant = tenants::find_tenant(&state.store, &tenant)?;
    let filter = q.state.as_deref().map(parse_state).transpose()?;
    Ok(Json(super::list_conversations(
        &state.store,
        tenant.id,
        filter,
        q.limit.min(1000),
    )?))
}

#[derive(Serialize)]
struct ConversationDetail {
    conversation: Conversation,
    messages: Vec<Message>,
}

async fn show(
    _op: Operator,
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Json<ConversationDetail>, ApiError> {
    let (tenant, id) = ids(&state, &tenant, &id)?;
    let conversation = super::get_conversation(&state.store, tenant, id)?
        .ok_or_else(|| ApiError::not_found(format!("conversation {id} not found")))?;
    let messages = super::recent_messages(&state.store, tenant, id, 500)?;
    Ok(Json(ConversationDetail {
        conversation,
        messages,
    }))
}

async fn take_over(
    _op: Operator,
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Json<Conversation>, ApiError> {
    let (tenant, id) = ids(&state, &tenant, &id)?;
    let c = actions::take_over(&state.store, tenant, id).await?;
    state.live.publish(LiveUpdate::state(tenant, id));
    Ok(Json(c))
}

#[derive(Deserialize)]
struct ReplyBody {
    text: String,
}

async fn reply(
    _op: Operator,
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
    body: Result<Json<ReplyBody>, JsonRejection>,
) -> Result<Json<Message>, ApiError> {
    let Json(body) = body?;
    let (tenant, id) = ids(&state, &tenant, &id)?;
    let m = actions::agent_reply(&state.store, tenant, id, body.text).await?;
    state.live.publish(LiveUpdate::message(tenant, id));
    Ok(Json(m))
}

async fn hand_back(
    _op: Operator,
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Json<Conversation>, ApiError> {
    let (tenant, id) = ids(&state, &tenant, &id)?;
    let (c, routed) = actions::hand_back_routed(&state.store, tenant, id).await?;
    state.live.publish(LiveUpdate::state(tenant, id));
    for other in routed {
        state.live.publish(LiveUpdate::assignment(tenant, other));
    }
    Ok(Json(c))
}

async fn close(
    _op: Operator,
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Json<Conversation>, ApiError> {
    let (tenant, id) = ids(&state, &tenant, &id)?;
    let (c, routed) = actions::close_routed(&state.store, tenant, id).await?;
    state.live.publish(LiveUpdate::state(tenant, id));
    for other in routed {
        state.live.publish(LiveUpdate::assignment(tenant, other));
    }
    Ok(Json(c))
}
