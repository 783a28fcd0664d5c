//! HTTP routes of the WhatsApp service: Meta's webhook, and the sandbox channel's simulator API
//! (the customer's phone for channels without a Meta account).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::ingress::{self, IngestReport};
use super::payload::{self, InboundMessage, MessageContent};
use crate::conversations::{self, Message, MessageBody};
use crate::ops::clientip::ClientAddr;
use crate::ops::guard;
use crate::people::Role;
use crate::storage::ChannelId;
use crate::tenants;
use crate::web::auth::TenantCtx;
use crate::web::{Access, Api, ApiError, AppState};

/// The one callback URL of every channel.
pub const WEBHOOK_PATH: &str = "/webhooks/whatsapp";

/// Meta's payloads are small; anything near this is not a webhook.
const WEBHOOK_BODY_LIMIT: usize = 3 * 1024 * 1024;

pub fn api() -> Api {
    use Access::*;
    Api::new()
        // Served outside the gate and the router-wide layers (the busiest path of all): the
        // handlers admit themselves through the webhook guard, and authenticate by signature.
        .ungated(Method::GET, WEBHOOK_PATH, get(verify_subscription))
        .ungated(
            Method::POST,
            WEBHOOK_PATH,
            post(receive).layer(axum::extract::DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT)),
        )
        // The simulator plays customers of the tenant's sandbox channel: an admin's tool.
        .post(
            "/api/v1/tenants/{tenant}/sandbox/{channel}/messages",
            Tenant(Role::Admin),
            sandbox_send,
        )
        .get(
            "/api/v1/tenants/{tenant}/sandbox/{channel}/messages",
            Tenant(Role::Admin),
            sandbox_poll,
        )
}

#[derive(Deserialize)]
struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// Meta's subscription handshake: echo `hub.challenge` if the verify token is one of ours.
async fn verify_subscription(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    method: Method,
    query: Result<Query<Handshake>, QueryRejection>,
) -> Response {
    let admission = match guard::admit(&state, client, &method) {
        Ok(admission) => admission,
        Err(refusal) => return refusal.into_response(),
    };
    let answer = match query {
        Ok(Query(q)) => handshake(&state, q),
        Err(rejection) => rejection.into_response(),
    };
    admission.settle(answer)
}

fn handshake(state: &AppState, q: Handshake) -> Response {
    let token_ok = match q.verify_token.as_deref() {
        Some(token) => tenants::verify_token_known(&state.store, token).unwrap_or(false),
        None => false,
    };
    match (q.mode.as_deref(), q.challenge) {
        (Some("subscribe"), Some(challenge)) if token_ok => {
            (StatusCode::OK, challenge).into_response()
        }
        _ => (StatusCode::FORBIDDEN, "verification failed").into_response(),
    }
}

async fn receive(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    request: Request,
) -> Response {
    // Admitted before the body is read: a refused flood costs no buffering.
    let admission = match guard::admit(&state, client, &Method::POST) {
        Ok(admission) => admission,
        Err(refusal) => return refusal.into_response(),
    };
    let signature = request.headers().get("x-hub-signature-256").cloned();
    // The body limit is the route's (`DefaultBodyLimit` above), not the JSON API's.
    let answer = match Bytes::from_request(request, &state).await {
        Ok(body) => {
            let signature = signature.as_ref().and_then(|v| v.to_str().ok());
            accept(&state, signature, &body).await.into_response()
        }
        Err(rejection) => rejection.into_response(),
    };
    admission.settle(answer)
}

/// Parses, verifies, routes and stores one webhook delivery; answers 200 once it is durable.
async fn accept(
    state: &AppState,
    signature: Option<&str>,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let parsed =
        payload::parse_webhook(body).map_err(|e| ApiError::bad_request(e.code(), e.to_string()))?;
    let mut report = IngestReport::default();
    let verified = ingress::route_and_verify(
        &state.store,
        &state.key,
        &state.routes,
        parsed,
        body,
        signature,
        &mut report,
    )?;
    if verified.is_empty() && report.bad_signature > 0 {
        return Err(ApiError::unauthorized(
            "X-Hub-Signature-256 is missing or does not match the app secret",
        ));
    }
    ingress::store_batches(&state.store, verified, &mut report).await?;
    Ok((StatusCode::OK, "EVENT_RECEIVED").into_response())
}

#[derive(Deserialize)]
struct SandboxMessage {
    /// The simulated customer's number, digits only (e.g. 6281234567890).
    from: String,
    #[serde(default)]
    name: Option<String>,
    text: String,
}

#[derive(Serialize)]
struct SandboxAccepted {
    wamid: String,
}

fn sandbox_channel(
    state: &AppState,
    ctx: &TenantCtx,
    channel: &str,
) -> Result<(tenants::Tenant, ChannelId), ApiError> {
    let tenant = ctx.tenant.clone();
    let channel: ChannelId = channel
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_input", "channel: not a channel id"))?;
    match tenants::get_channel(&state.store, tenant.id, channel)? {
        Some(c) if c.is_sandbox() => Ok((tenant, channel)),
        Some(_) => Err(ApiError::bad_request(
            "invalid_input",
            "channel: only sandbox channels accept simulated customers",
        )),
        None => Err(ApiError::not_found(format!("channel {channel} not found"))),
    }
}

fn valid_wa_id(s: &str) -> bool {
    (6..=15).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// The simulated customer writes. The message takes exactly the path of a real webhook.
async fn sandbox_send(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, channel)): Path<(String, String)>,
    body: Result<Json<SandboxMessage>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SandboxAccepted>, ApiError> {
    let Json(msg) = body?;
    let (tenant, channel) = sandbox_channel(&state, &ctx, &channel)?;
    let wamid =
        simulated_customer_writes(&state, tenant.id, channel, &msg.from, msg.name, &msg.text)
            .await?;
    Ok(Json(SandboxAccepted { wamid }))
}

/// Stores a simulated customer's message on a sandbox channel as webhook ingress would (the
/// simulator API and the dashboard's simulator page). Returns its wamid.
pub async fn simulated_customer_writes(
    state: &AppState,
    tenant: crate::storage::TenantId,
    channel: ChannelId,
    from: &str,
    name: Option<String>,
    text: &str,
) -> Result<String, ApiError> {
    match tenants::get_channel(&state.store, tenant, channel)? {
        Some(c) if c.is_sandbox() => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_input",
                "channel: only sandbox channels accept simulated customers",
            ))
        }
        None => return Err(ApiError::not_found(format!("channel {channel} not found"))),
    }
    let from = from.trim().trim_start_matches('+').to_string();
    if !valid_wa_id(&from) {
        return Err(ApiError::bad_request(
            "invalid_input",
            "from: must be a phone number of 6-15 digits",
        ));
    }
    let text = text.trim().to_string();
    if text.is_empty() || text.chars().count() > 4096 {
        return Err(ApiError::bad_request(
            "invalid_input",
            "text: must be 1-4096 characters",
        ));
    }
    let wamid = format!("wamid.sandbox.{}", uuid::Uuid::now_v7().simple());
    let inbound = InboundMessage {
        wamid: wamid.clone(),
        from: from.clone(),
        from_user_id: None,
        timestamp: jiff::Timestamp::now().as_second(),
        content: MessageContent::Text { body: text.clone() },
        context: None,
        referral: None,
        raw: serde_json::json!({"from": from, "id": wamid, "type": "text", "text": {"body": text}})
            .into(),
    };
    state
        .store
        .write(move |ctx| ingress::store_message(ctx, tenant, channel, name.clone(), &inbound))
        .await?;
    Ok(wamid)
}

#[derive(Deserialize)]
struct SandboxPoll {
    from: String,
    /// Only messages created after this time (ms since the epoch).
    #[serde(default)]
    after_ms: i64,
    /// Wait up to this long for something new (long poll), at most 30 s.
    #[serde(default)]
    wait_ms: u64,
}

#[derive(Serialize)]
struct SandboxView {
    conversation: Option<String>,
    state: Option<&'static str>,
    messages: Vec<SandboxLine>,
}

#[derive(Serialize)]
struct SandboxLine {
    at_ms: i64,
    author: crate::conversations::Author,
    text: String,
    status: &'static str,
}

/// What the simulated customer's phone shows: the messages sent to them after `after_ms`.
async fn sandbox_poll(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, channel)): Path<(String, String)>,
    Query(q): Query<SandboxPoll>,
) -> Result<Json<SandboxView>, ApiError> {
    let (tenant, channel) = sandbox_channel(&state, &ctx, &channel)?;
    let from = q.from.trim_start_matches('+').to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(q.wait_ms.min(30_000));
    let mut updates = state.live.subscribe();
    loop {
        let view = sandbox_view(&state, tenant.id, channel, &from, q.after_ms)?;
        if !view.messages.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(view));
        }
        // Wake on any change of this tenant, then look again; the store is the truth.
        let _ = tokio::time::timeout_at(deadline, async {
            loop {
                match updates.recv().await {
                    Ok(u) if u.tenant == tenant.id => return,
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                    Err(_) => return,
                }
            }
        })
        .await;
    }
}

fn sandbox_view(
    state: &AppState,
    tenant: crate::storage::TenantId,
    channel: ChannelId,
    from: &str,
    after_ms: i64,
) -> Result<SandboxView, ApiError> {
    let conversation = conversations::open_conversation_of(&state.store, tenant, channel, from)?;
    let Some(conversation) = conversation else {
        return Ok(SandboxView {
            conversation: None,
            state: None,
            messages: Vec::new(),
        });
    };
    let messages: Vec<Message> =
        conversations::recent_messages(&state.store, tenant, conversation.id, 200)?;
    let lines = messages
        .into_iter()
        .filter(|m| m.created_at_ms > after_ms)
        .filter(|m| matches!(m.body, MessageBody::Outbound { .. }))
        .filter(|m| {
            matches!(
                m.status,
                conversations::MessageStatus::Sent
                    | conversations::MessageStatus::Delivered
                    | conversations::MessageStatus::Read
            )
        })
        .map(|m| SandboxLine {
            at_ms: m.created_at_ms,
            author: m.author,
            text: m.body.preview_text(),
            status: m.status.as_str(),
        })
        .collect();
    Ok(SandboxView {
        conversation: Some(conversation.id.to_string()),
        state: Some(conversation.state.as_str()),
        messages: lines,
    })
}
