//! Analytics API, for viewers and up (access in the route table, `web::access`). All take the
//! same query: `from`, `to` (local dates, `YYYY-MM-DD`, inclusive; default the last 30 days),
//! `outlet` (`all`, `none` for channels without an outlet, or an outlet id) and, for the report,
//! `top` (unanswered questions listed, default 20). An outlet-limited caller's `all` means the
//! outlets they work for; naming another outlet (or `none`) is refused, as with conversations.
//!
//! - `GET /api/v1/tenants/{t}/analytics` — the report as JSON ([`Report`]).
//! - `GET /api/v1/tenants/{t}/analytics/export/{table}` — one table as CSV: `days`, `hours`,
//!   `handoff_reasons`, `response_times`, `unanswered`.
//! - `GET /api/v1/tenants/{t}/analytics/charts/daily?metric=…` — per-day SVG bar chart of
//!   `conversations` (default), `handed_off`, `resolved_by_assistant`, `resolved_by_human`,
//!   `customer_messages`, `assistant_messages` or `agent_messages`.
//! - `GET /api/v1/tenants/{t}/analytics/charts/hours` — SVG histogram of customer messages by
//!   local hour.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Deserialize;

use super::report::{DayRow, DEFAULT_DAYS};
use super::{csv, report_off_runtime, svg, AnalyticsError, Period, Report, Scope};
use crate::people::Role;
use crate::storage::OutletId;
use crate::tenants::{self, Tenant};
use crate::web::auth::{forbidden, Principal, TenantCtx};
use crate::web::{Access, Api, ApiError, AppState};

pub fn api() -> Api {
    use Access::Tenant;
    Api::new()
        .get(
            "/api/v1/tenants/{tenant}/analytics",
            Tenant(Role::Viewer),
            show,
        )
        .get(
            "/api/v1/tenants/{tenant}/analytics/export/{table}",
            Tenant(Role::Viewer),
            export,
        )
        .get(
            "/api/v1/tenants/{tenant}/analytics/charts/{chart}",
            Tenant(Role::Viewer),
            chart,
        )
}

impl From<AnalyticsError> for ApiError {
    fn from(e: AnalyticsError) -> Self {
        match e {
            AnalyticsError::Store(s) => s.into(),
            AnalyticsError::NotFound(_) => ApiError::not_found(e.to_string()),
            AnalyticsError::Invalid { .. } => ApiError::bad_request(e.code(), e.to_string()),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ReportQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub outlet: Option<String>,
    pub top: Option<usize>,
    pub metric: Option<String>,
}

fn parse_date(field: &'static str, value: &str) -> Result<Date, AnalyticsError> {
    value.parse::<Date>().map_err(|_| {
        AnalyticsError::invalid(field, format!("{value:?} is not a date like 2024-05-31"))
    })
}

fn time_zone(tenant: &Tenant) -> TimeZone {
    TimeZone::get(&tenant.time_zone).unwrap_or(TimeZone::UTC)
}

/// Resolves the query against a tenant: its period and scope.
pub fn resolve(
    state: &AppState,
    tenant: &Tenant,
    q: &ReportQuery,
) -> Result<(Period, Scope), AnalyticsError> {
    let tz = time_zone(tenant);
    let default = Period::last_days(DEFAULT_DAYS, &tz);
    let to = match &q.to {
        Some(s) => parse_date("to", s)?,
        None => default.to,
    };
    let from = match &q.from {
        Some(s) => parse_date("from", s)?,
        None => to
            .checked_sub(jiff::Span::new().days(i64::from(DEFAULT_DAYS - 1)))
            .unwrap_or(to),
    };
    let period = Period::new(from, to)?;
    let scope = match q.outlet.as_deref() {
        None | Some("all") => Scope::All,
        Some("none") => Scope::Outlet(None),
        Some(id) => {
            let outlet: OutletId = id.parse().map_err(|_| {
                AnalyticsError::invalid("outlet", "must be all, none or an outlet id")
            })?;
            let exists = state.store.read(|r| {
                r.tenant(tenant.id)
                    .contains(&tenants::OUTLETS, outlet.as_bytes())
            })?;
            if !exists {
                return Err(AnalyticsError::NotFound(format!("outlet {outlet}")));
            }
            Scope::Outlet(Some(outlet))
        }
    };
    Ok((period, scope))
}

/// Narrows a scope to what `principal` may see (see [`Scope::limited_to`]).
pub fn limit_scope(principal: &Principal, scope: Scope) -> Result<Scope, ApiError> {
    let outlets = principal.member().map_or(&[][..], |m| m.outlets.as_slice());
    scope
        .limited_to(outlets)
        .ok_or_else(|| forbidden(OUTSIDE_YOUR_OUTLETS))
}

/// Why a report scope is refused to an outlet-limited caller.
pub const OUTSIDE_YOUR_OUTLETS: &str = "these analytics cover an outlet you do not work for";

async fn build(state: &AppState, ctx: &TenantCtx, q: &ReportQuery) -> Result<Report, ApiError> {
    let tenant = &ctx.tenant;
    let (period, scope) = resolve(state, tenant, q)?;
    let scope = limit_scope(&ctx.principal, scope)?;
    Ok(report_off_runtime(
        &state.store,
        tenant.id,
        &tenant.time_zone,
        period,
        scope,
        q.top.unwrap_or(20),
    )
    .await?)
}

async fn show(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(q): Query<ReportQuery>,
) -> Result<Json<Report>, ApiError> {
    Ok(Json(build(&state, &ctx, &q).await?))
}

async fn export(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, table)): Path<(String, String)>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let table = table.strip_suffix(".csv").unwrap_or(&table).to_string();
    if !csv::TABLES.contains(&table.as_str()) {
        return Err(ApiError::not_found(format!(
            "table {table:?} (tables: {})",
            csv::TABLES.join(", ")
        )));
    }
    let report = build(&state, &ctx, &q).await?;
    let body = csv::table(&report, &table).unwrap_or_default();
    let filename = format!("analytics-{table}-{}-{}.csv", report.from, report.to);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// The per-day metrics a daily chart can show.
pub const DAILY_METRICS: &[&str] = &[
    "conversations",
    "handed_off",
    "resolved_by_assistant",
    "resolved_by_human",
    "customer_messages",
    "assistant_messages",
    "agent_messages",
];

fn metric_of(day: &DayRow, metric: &str) -> u64 {
    match metric {
        "handed_off" => day.handed_off,
        "resolved_by_assistant" => day.resolved_by_assistant,
        "resolved_by_human" => day.resolved_by_human,
        "customer_messages" => day.customer_messages,
        "assistant_messages" => day.assistant_messages,
        "agent_messages" => day.agent_messages,
        _ => day.conversations,
    }
}

async fn chart(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, chart)): Path<(String, String)>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let chart = chart.strip_suffix(".svg").unwrap_or(&chart).to_string();
    let svg = match chart.as_str() {
        "daily" => {
            let metric = q.metric.as_deref().unwrap_or("conversations");
            if !DAILY_METRICS.contains(&metric) {
                return Err(ApiError::bad_request(
                    "invalid_input",
                    format!("metric: must be one of {}", DAILY_METRICS.join(", ")),
                ));
            }
            let report = build(&state, &ctx, &q).await?;
            let points: Vec<(String, u64)> = report
                .days
                .iter()
                .map(|d| (d.date.clone(), metric_of(d, metric)))
                .collect();
            svg::daily_series(&format!("{} per day", metric.replace('_', " ")), &points)
        }
        "hours" => {
            let report = build(&state, &ctx, &q).await?;
            svg::hour_histogram(
                &format!("Customer messages by hour ({})", report.time_zone),
                &report.hours,
            )
        }
        other => {
            return Err(ApiError::not_found(format!(
                "chart {other:?} (charts: daily, hours)"
            )))
        }
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8")],
        svg,
    )
        .into_response())
}
