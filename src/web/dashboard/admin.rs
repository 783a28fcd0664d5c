//! Admin pages: outlets, channels (what to paste into Meta's console), the sandbox simulator;
//! knowledge, users, plan & usage, the audit log and the operator's page have modules of their
//! own, merged in here.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::pages::{enc, html, Nav};
use super::session::Viewer;
use super::views::{self, MessageView};
use super::DashError;
use crate::conversations::{self, MessageBody};
use crate::storage::{ChannelId, OutletId};
use crate::tenants::{self, ChannelKind, NewChannel, NewChannelKind};
use crate::web::{Access, Api, AppState};

/// The admin and operator pages. Each checks its viewer's role itself (`Viewer::require_*`).
pub fn api() -> Api {
    use Access::Page;
    Api::new()
        .get("/dash/admin/outlets", Page, outlets)
        .post("/dash/admin/outlets", Page, outlet_add)
        .get("/dash/admin/channels", Page, channels)
        .post("/dash/admin/channels", Page, channel_add)
        .get("/dash/admin/simulator", Page, simulator)
        .post("/dash/admin/simulator", Page, simulator_send)
        .get("/dash/admin/plan", Page, super::plan::plan)
        .get("/dash/operator", Page, super::plan::operator)
        .merge(super::knowledge::api())
        .merge(super::users::api())
        .merge(super::audit::api())
        .merge(super::invitation::api())
}

pub struct OutletRow {
    id: String,
    name: String,
    channels: String,
    hours: String,
}

#[derive(Template)]
#[template(path = "admin/outlets.html")]
struct OutletsPage {
    nav: Nav,
    outlets: Vec<OutletRow>,
}

async fn outlets(State(state): State<AppState>, viewer: Viewer) -> Result<Response, DashError> {
    viewer.require_admin()?;
    let channels = tenants::list_channels(&state.store, viewer.tenant)?;
    let outlets = tenants::list_outlets(&state.store, viewer.tenant)?
        .into_iter()
        .filter(|o| viewer.covers_outlet(Some(o.id)))
        .map(|o| OutletRow {
            id: o.id.to_string(),
            channels: channels
                .iter()
                .filter(|c| c.outlet == Some(o.id))
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
            name: o.name,
            // Business hours arrive with routing; until then every outlet is always open.
            hours: "Not set (always open)".into(),
        })
        .collect();
    html(OutletsPage {
        nav: Nav::new(&state, &viewer, "outlets")?,
        outlets,
    })
}

#[derive(Deserialize)]
struct NameForm {
    csrf: String,
    name: String,
    #[serde(default)]
    outlet: String,
}

async fn outlet_add(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(f): Form<NameForm>,
) -> Result<Response, DashError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require_admin()?;
    tenants::create_outlet(&state.store, viewer.tenant, &f.name).await?;
    Ok(Redirect::to("/dash/admin/outlets").into_response())
}

pub struct ChannelRow {
    id: String,
    name: String,
    kind: &'static str,
    phone_number_id: String,
    display_phone_number: Option<String>,
    outlet: Option<String>,
    webhook_url: Option<String>,
    verify_token: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/channels.html")]
struct ChannelsPage {
    nav: Nav,
    channels: Vec<ChannelRow>,
    outlets: Vec<(String, String)>,
    public_url: String,
    https: bool,
}

async fn channels(State(state): State<AppState>, viewer: Viewer) -> Result<Response, DashError> {
    viewer.require_admin()?;
    let public_url = state.config.public_url();
    let webhook_url = format!("{}/webhooks/whatsapp", public_url.trim_end_matches('/'));
    let outlets = tenants::list_outlets(&state.store, viewer.tenant)?;
    let channels = tenants::list_channels(&state.store, viewer.tenant)?
        .into_iter()
        .map(|c| {
            let outlet = c
                .outlet
                .and_then(|o| outlets.iter().find(|x| x.id == o).map(|x| x.name.clone()));
            let (kind, display, url, token) = match &c.kind {
                ChannelKind::CloudApi {
                    display_phone_number,
                    verify_token,
                    ..
                } => (
                    "cloud_api",
                    Some(display_phone_number.clone()).filter(|d| !d.is_empty()),
                    Some(webhook_url.clone()),
                    Some(verify_token.clone()),
                ),
                ChannelKind::Sandbox => ("sandbox", None, None, None),
            };
            ChannelRow {
                id: c.id.to_string(),
                name: c.name,
                kind,
                phone_number_id: c.phone_number_id,
                display_phone_number: display,
                outlet,
                webhook_url: url,
                verify_token: token,
            }
        })
        .collect();
    html(ChannelsPage {
        nav: Nav::new(&state, &viewer, "channels")?,
        channels,
        outlets: outlets
            .into_iter()
            .map(|o| (o.id.to_string(), o.name))
            .collect(),
        https: public_url.starts_with("https://"),
        public_url,
    })
}

async fn channel_add(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(f): Form<NameForm>,
) -> Result<Response, DashError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require_admin()?;
    let outlet = match f.outlet.trim() {
        "" => None,
        o => Some(
            o.parse::<OutletId>()
                .map_err(|_| DashError::BadRequest("outlet: not an outlet id".into()))?,
        ),
    };
    tenants::add_channel(
        &state.store,
        &state.key,
        viewer.tenant,
        NewChannel {
            name: f.name,
            outlet,
            kind: NewChannelKind::Sandbox,
        },
    )
    .await?;
    state.routes.invalidate();
    Ok(Redirect::to("/dash/admin/channels").into_response())
}

#[derive(Deserialize, Default)]
struct SimulatorParams {
    #[serde(default)]
    channel: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    name: String,
}

#[derive(Template)]
#[template(path = "admin/simulator.html")]
struct SimulatorPage {
    nav: Nav,
    channels: Vec<(String, String, bool)>,
    channel: String,
    from: String,
    name: String,
    conversation: Option<String>,
    messages: Vec<MessageView>,
}

const DEFAULT_CUSTOMER: &str = "6281200000001";

async fn simulator(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<SimulatorParams>,
) -> Result<Response, DashError> {
    viewer.require_admin()?;
    let nav = Nav::new(&state, &viewer, "simulator")?;
    let sandboxes: Vec<_> = tenants::list_channels(&state.store, viewer.tenant)?
        .into_iter()
        .filter(|c| c.is_sandbox() && viewer.covers_outlet(c.outlet))
        .collect();
    let chosen = sandboxes
        .iter()
        .find(|c| c.id.to_string() == p.channel)
        .or(sandboxes.first());
    let from = Some(p.from.trim().trim_start_matches('+').to_string())
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| DEFAULT_CUSTOMER.into());
    let name = Some(p.name.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "Sandbox Customer".into());
    let mut conversation = None;
    let mut messages = Vec::new();
    if let Some(ch) = chosen {
        if let Some(c) =
            conversations::open_conversation_of(&state.store, viewer.tenant, ch.id, &from)?
        {
            conversation = Some(c.id.to_string());
            // What the customer's phone shows: their messages and ours, never notes.
            messages = conversations::recent_messages(&state.store, viewer.tenant, c.id, 200)?
                .iter()
                .filter(|m| !matches!(m.body, MessageBody::Note { .. }))
                .map(|m| views::message_view(m, &viewer.time_zone))
                .collect();
        }
    }
    html(SimulatorPage {
        nav,
        channel: chosen.map(|c| c.id.to_string()).unwrap_or_default(),
        channels: sandboxes
            .iter()
            .map(|c| {
                let sel = Some(c.id) == chosen.map(|x| x.id);
                (c.id.to_string(), c.name.clone(), sel)
            })
            .collect(),
        from,
        name,
        conversation,
        messages,
    })
}

#[derive(Deserialize)]
struct SimulatorForm {
    csrf: String,
    channel: String,
    from: String,
    #[serde(default)]
    name: String,
    text: String,
}

async fn simulator_send(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(f): Form<SimulatorForm>,
) -> Result<Response, DashError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require_admin()?;
    let channel: ChannelId = f
        .channel
        .parse()
        .map_err(|_| DashError::BadRequest("channel: not a channel id".into()))?;
    let name = Some(f.name.trim().to_string()).filter(|n| !n.is_empty());
    crate::whatsapp::routes::simulated_customer_writes(
        &state,
        viewer.tenant,
        channel,
        &f.from,
        name,
        &f.text,
    )
    .await?;
    Ok(Redirect::to(&format!(
        "/dash/admin/simulator?channel={}&from={}&name={}",
        enc(&f.channel),
        enc(&f.from),
        enc(&f.name)
    ))
    .into_response())
}
