//! The audit log page (a tenant's admins read their tenant's log, the operator reads every log),
//! and who a dashboard action is recorded as (`Acting`): the same actor the JSON API records for
//! that person.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::response::Response;
use serde::Deserialize;

use super::pages::{enc, html, Nav};
use super::session::Viewer;
use super::DashError;
use crate::people::audit::{self, Actor, AuditEntry, AuditQuery};
use crate::storage::TenantId;
use crate::web::auth::{Authorized, Principal};
use crate::web::{Access, Api, AppState};

pub fn api() -> Api {
    Api::new().get("/dash/admin/audit", Access::Page, page)
}

/// Who is acting, for the audit log. A person with an account is recorded as the JSON API
/// records them (kind `user`, their id and email); the operator's temporary dashboard session
/// as the operator token, naming the display name it chose.
pub struct Acting(pub Actor);

impl FromRequestParts<AppState> for Acting {
    type Rejection = DashError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, DashError> {
        let viewer = Viewer::from_request_parts(parts, state).await?;
        let ip = parts
            .extensions
            .get::<Authorized>()
            .and_then(|a| a.ip)
            .or_else(|| crate::web::auth::client_ip(parts));
        if viewer.operator {
            return Ok(Acting(Actor {
                kind: "operator".into(),
                id: None,
                label: format!("operator token (dashboard: {})", viewer.name),
                ip,
            }));
        }
        match crate::web::auth::resolve(state, &Method::GET, &parts.headers) {
            Ok(Some((p @ Principal::Member(_), _))) => Ok(Acting(p.actor(ip))),
            _ => Err(DashError::SignIn),
        }
    }
}

/// A moment as the log shows it: date, time and zone.
pub fn stamp(ms: i64, tz: &str) -> String {
    let Ok(ts) = jiff::Timestamp::from_millisecond(ms) else {
        return String::new();
    };
    let zone = jiff::tz::TimeZone::get(tz).unwrap_or(jiff::tz::TimeZone::UTC);
    ts.to_zoned(zone)
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

const PAGE_SIZE: usize = 50;
/// The log is read newest first up to this many entries (the reader's own bound).
const READ_LIMIT: usize = 10_000;

/// Actions offered as filters (a filter is a prefix: `user.` is every change to people).
const KNOWN_ACTIONS: &[&str] = &[
    "auth.",
    "auth.sign_in",
    "auth.sign_in_failed",
    "auth.sign_out",
    "auth.locked",
    "user.",
    "user.invited",
    "user.invitation_accepted",
    "user.invitation_revoked",
    "user.role_changed",
    "user.outlets_changed",
    "user.disabled",
    "user.enabled",
    "api_key.",
    "knowledge_base.",
    "document.",
    "channel.",
    "outlet.",
    "conversation.",
    "plan.",
    "tenant.",
    "retention.",
];

#[derive(Deserialize, Default)]
struct Params {
    #[serde(default)]
    action: String,
    #[serde(default)]
    page: usize,
}

pub struct EntryView {
    pub when: String,
    pub who: String,
    pub who_kind: String,
    pub action: String,
    pub object: String,
    pub detail: String,
    pub from: String,
    pub tenant: String,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    nav: Nav,
    entries: Vec<EntryView>,
    action: String,
    known: &'static [&'static str],
    all_tenants: bool,
    time_zone: String,
    page: usize,
    newer: Option<String>,
    older: Option<String>,
}

fn detail_text(v: &serde_json::Value) -> String {
    if v.is_null() {
        return String::new();
    }
    let text = v.to_string();
    if text.chars().count() > 300 {
        text.chars().take(300).chain("…".chars()).collect()
    } else {
        text
    }
}

async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<Params>,
) -> Result<Response, DashError> {
    viewer.require_admin()?;
    let action = p.action.trim().to_string();
    let page = p.page.min(READ_LIMIT / PAGE_SIZE - 1);
    let q = AuditQuery {
        action: Some(action.clone()).filter(|a| !a.is_empty()),
        since_ms: 0,
        // One more than shown: whether there is an older page.
        limit: (page + 1) * PAGE_SIZE + 1,
    };
    // The operator's view names each entry's tenant and shows it in that tenant's zone.
    let mut zones: HashMap<TenantId, (String, String)> = HashMap::new();
    let entries: Vec<AuditEntry> = if viewer.operator {
        for t in crate::tenants::list_tenants(&state.store)? {
            zones.insert(t.id, (t.slug, t.time_zone));
        }
        audit::list_all(&state.store, &q)?
    } else {
        audit::list_tenant(&state.store, viewer.tenant, &q)?
    };
    let more = entries.len() > (page + 1) * PAGE_SIZE;
    let entries = entries
        .into_iter()
        .skip(page * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|e| {
            // The operator's view: each entry in its own tenant's zone; entries of no tenant in UTC.
            let (tenant, tz) = match (viewer.operator, e.tenant) {
                (false, _) => (String::new(), viewer.time_zone.clone()),
                (true, None) => ("—".to_string(), "UTC".to_string()),
                (true, Some(t)) => zones
                    .get(&t)
                    .cloned()
                    .unwrap_or_else(|| (t.to_string(), "UTC".into())),
            };
            EntryView {
                when: stamp(e.at_ms, &tz),
                who: e.actor.label,
                who_kind: e.actor.kind,
                action: e.action,
                object: e.target,
                detail: detail_text(&e.detail),
                from: e.actor.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                tenant,
            }
        })
        .collect();
    let link = |page: usize| format!("/dash/admin/audit?action={}&page={page}", enc(&action));
    html(AuditPage {
        nav: Nav::new(&state, &viewer, "audit")?,
        entries,
        known: KNOWN_ACTIONS,
        all_tenants: viewer.operator,
        time_zone: viewer.time_zone.clone(),
        newer: (page > 0).then(|| link(page - 1)),
        older: more.then(|| link(page + 1)),
        page: page + 1,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_in_the_tenants_zone_with_the_date() {
        // 2024-01-15 03:04:05 UTC is 10:04:05 in Jakarta (UTC+7).
        let ms = 1_705_287_845_000;
        assert_eq!(stamp(ms, "UTC"), "2024-01-15 03:04:05 UTC");
        assert!(stamp(ms, "Asia/Jakarta").starts_with("2024-01-15 10:04:05"));
        // An unknown zone falls back to UTC rather than failing the page.
        assert_eq!(stamp(ms, "Nowhere/Else"), "2024-01-15 03:04:05 UTC");
    }

    #[test]
    fn long_details_are_shortened() {
        let long = serde_json::json!({"text": "x".repeat(1000)});
        assert!(detail_text(&long).chars().count() <= 301);
        assert_eq!(detail_text(&serde_json::Value::Null), "");
    }
}
