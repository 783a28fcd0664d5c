//! JSON API for tenants, outlets and channels, and the tenants' life (suspend, resume, delete).

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use super::{lifecycle, ChannelKind, NewChannel, NewTenant, Outlet, Tenant};
use crate::people::audit::{self, AuditEntry};
use crate::people::Role;
use crate::storage::{ChannelId, OutletId};
use crate::web::auth::{Authorized, TenantCtx};
use crate::web::{Access, Api, ApiError, AppState};

pub fn api() -> Api {
    use Access::*;
    Api::new()
        .get("/api/v1/tenants", Operator, list_tenants)
        .post("/api/v1/tenants", Operator, create_tenant)
        .get("/api/v1/tenants/{tenant}", Tenant(Role::Viewer), get_tenant)
        .delete("/api/v1/tenants/{tenant}", Operator, delete_tenant)
        .post("/api/v1/tenants/{tenant}/suspend", Operator, suspend_tenant)
        .post("/api/v1/tenants/{tenant}/resume", Operator, resume_tenant)
        .get(
            "/api/v1/tenants/{tenant}/outlets",
            Tenant(Role::Viewer),
            list_outlets,
        )
        .post(
            "/api/v1/tenants/{tenant}/outlets",
            Tenant(Role::Admin),
            create_outlet,
        )
        .get(
            "/api/v1/tenants/{tenant}/channels",
            Tenant(Role::Viewer),
            list_channels,
        )
        .post(
            "/api/v1/tenants/{tenant}/channels",
            Tenant(Role::Admin),
            add_channel,
        )
}

async fn list_tenants(State(state): State<AppState>) -> Result<Json<Vec<Tenant>>, ApiError> {
    Ok(Json(super::list_tenants(&state.store)?))
}

async fn create_tenant(
    State(state): State<AppState>,
    auth: Authorized,
    body: Result<Json<NewTenant>, JsonRejection>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    let Json(new) = body?;
    let tenant = super::create_tenant(&state.store, new).await?;
    audit::record_now(
        &state.store,
        AuditEntry::new(
            auth.actor(),
            "tenant.created",
            format!("tenant {}", tenant.slug),
        )
        .tenant(tenant.id),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

async fn get_tenant(ctx: TenantCtx) -> Json<Tenant> {
    Json(ctx.tenant)
}

/// The operator's path names the tenant; the gate checked only that the caller is the operator.
fn path_tenant(state: &AppState, name: &str) -> Result<Tenant, ApiError> {
    Ok(super::find_tenant(&state.store, name)?)
}

async fn suspend_tenant(
    State(state): State<AppState>,
    auth: Authorized,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    let t = path_tenant(&state, &name)?;
    Ok(Json(
        lifecycle::suspend(&state.store, t.id, auth.actor()).await?,
    ))
}

async fn resume_tenant(
    State(state): State<AppState>,
    auth: Authorized,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    let t = path_tenant(&state, &name)?;
    Ok(Json(
        lifecycle::resume(&state.store, t.id, auth.actor()).await?,
    ))
}

async fn delete_tenant(
    State(state): State<AppState>,
    auth: Authorized,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<lifecycle::DeletionReport>, ApiError> {
    let t = path_tenant(&state, &name)?;
    let report = lifecycle::delete(&state.store, &state.tenant_data, t.id, auth.actor()).await?;
    state.routes.invalidate();
    Ok(Json(report))
}

async fn list_outlets(
    State(state): State<AppState>,
    ctx: TenantCtx,
) -> Result<Json<Vec<Outlet>>, ApiError> {
    Ok(Json(super::list_outlets(&state.store, ctx.id())?))
}

#[derive(serde::Deserialize)]
struct NewOutlet {
    name: String,
}

async fn create_outlet(
    State(state): State<AppState>,
    ctx: TenantCtx,
    body: Result<Json<NewOutlet>, JsonRejection>,
) -> Result<(StatusCode, Json<Outlet>), ApiError> {
    let Json(new) = body?;
    let outlet = super::create_outlet(&state.store, ctx.id(), &new.name).await?;
    audit::record_now(
        &state.store,
        AuditEntry::new(
            ctx.actor(),
            "outlet.created",
            format!("outlet {}", outlet.id),
        )
        .tenant(ctx.id())
        .detail(serde_json::json!({"name": outlet.name})),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(outlet)))
}

/// A channel as shown to admins: never its secrets; the webhook URL and verify token to paste into
/// Meta's console (the verify token only to admins).
#[derive(Serialize)]
pub struct ChannelView {
    pub id: ChannelId,
    pub name: String,
    pub outlet: Option<OutletId>,
    pub phone_number_id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub display_phone_number: Option<String>,
    pub waba_id: Option<String>,
    pub api_version: Option<String>,
    pub webhook_url: Option<String>,
    pub verify_token: Option<String>,
}

fn view(state: &AppState, c: super::Channel, admin: bool) -> ChannelView {
    let webhook_url = format!("{}/webhooks/whatsapp", state.config.public_url());
    match c.kind {
        ChannelKind::CloudApi {
            waba_id,
            display_phone_number,
            api_version,
            verify_token,
            ..
        } => ChannelView {
            id: c.id,
            name: c.name,
            outlet: c.outlet,
            phone_number_id: c.phone_number_id,
            kind: "cloud_api",
            display_phone_number: Some(display_phone_number),
            waba_id: Some(waba_id),
            api_version: Some(api_version),
            webhook_url: Some(webhook_url),
            verify_token: admin.then_some(verify_token),
        },
        ChannelKind::Sandbox => ChannelView {
            id: c.id,
            name: c.name,
            outlet: c.outlet,
            phone_number_id: c.phone_number_id,
            kind: "sandbox",
            display_phone_number: None,
            waba_id: None,
            api_version: None,
            webhook_url: None,
            verify_token: None,
        },
    }
}

async fn list_channels(
    State(state): State<AppState>,
    ctx: TenantCtx,
) -> Result<Json<Vec<ChannelView>>, ApiError> {
    let admin = ctx.principal.role_in(ctx.id()) == Some(Role::Admin);
    let channels = super::list_channels(&state.store, ctx.id())?;
    Ok(Json(
        channels
            .into_iter()
            .map(|c| view(&state, c, admin))
            .collect(),
    ))
}

async fn add_channel(
    State(state): State<AppState>,
    ctx: TenantCtx,
    body: Result<Json<NewChannel>, JsonRejection>,
) -> Result<(StatusCode, Json<ChannelView>), ApiError> {
    let Json(new) = body?;
    let channel = super::add_channel(&state.store, &state.key, ctx.id(), new).await?;
    state.routes.invalidate();
    audit::record_now(
        &state.store,
        AuditEntry::new(ctx.actor(), "channel.created", format!("channel {}", channel.id))
            .tenant(ctx.id())
            .detail(serde_json::json!({"name": channel.name, "phone_number_id": channel.phone_number_id, "outlet": channel.outlet})),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view(&state, channel, true))))
}
