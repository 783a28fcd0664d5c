//! JSON API for tenants, outlets and channels (operator-authenticated for now).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::{ChannelKind, NewChannel, NewTenant, Outlet, Tenant};
use crate::storage::{ChannelId, OutletId};
use crate::web::auth::Operator;
use crate::web::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tenants", get(list_tenants).post(create_tenant))
        .route("/api/v1/tenants/{tenant}", get(get_tenant))
        .route(
            "/api/v1/tenants/{tenant}/outlets",
            get(list_outlets).post(create_outlet),
        )
        .route(
            "/api/v1/tenants/{tenant}/channels",
            get(list_channels).post(add_channel),
        )
}

async fn list_tenants(
    _op: Operator,
    State(state): State<AppState>,
) -> Result<Json<Vec<Tenant>>, ApiError> {
    Ok(Json(super::list_tenants(&state.store)?))
}

async fn create_tenant(
    _op: Operator,
    State(state): State<AppState>,
    body: Result<Json<NewTenant>, JsonRejection>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    let Json(new) = body?;
    Ok((
        StatusCode::CREATED,
        Json(super::create_tenant(&state.store, new).await?),
    ))
}

async fn get_tenant(
    _op: Operator,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    Ok(Json(super::find_tenant(&state.store, &tenant)?))
}

async fn list_outlets(
    _op: Operator,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<Outlet>>, ApiError> {
    let tenant = super::find_tenant(&state.store, &tenant)?;
    Ok(Json(super::list_outlets(&state.store, tenant.id)?))
}

#[derive(serde::Deserialize)]
struct NewOutlet {
    name: String,
}

async fn create_outlet(
    _op: Operator,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    body: Result<Json<NewOutlet>, JsonRejection>,
) -> Result<(StatusCode, Json<Outlet>), ApiError> {
    let Json(new) = body?;
    let tenant = super::find_tenant(&state.store, &tenant)?;
    Ok((
        StatusCode::CREATED,
        Json(super::create_outlet(&state.store, tenant.id, &new.name).await?),
    ))
}

/// A channel as shown to admins: never its secrets; the webhook URL and verify token to paste into
/// Meta's console.
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

fn view(state: &AppState, c: super::Channel) -> ChannelView {
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
            verify_token: Some(verify_token),
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
    _op: Operator,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<ChannelView>>, ApiError> {
    let tenant = super::find_tenant(&state.store, &tenant)?;
    let channels = super::list_channels(&state.store, tenant.id)?;
    Ok(Json(
        channels.into_iter().map(|c| view(&state, c)).collect(),
    ))
}

async fn add_channel(
    _op: Operator,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    body: Result<Json<NewChannel>, JsonRejection>,
) -> Result<(StatusCode, Json<ChannelView>), ApiError> {
    let Json(new) = body?;
    let tenant = super::find_tenant(&state.store, &tenant)?;
    let channel = super::add_channel(&state.store, &state.key, tenant.id, new).await?;
    state.routes.invalidate();
    Ok((StatusCode::CREATED, Json(view(&state, channel))))
}
