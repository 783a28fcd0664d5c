//! The analytics page (viewers and up): a period in the tenant's time zone, an outlet, the
//! report's figures, its charts drawn inline as SVG, and every table as a CSV download. The
//! figures are `crate::analytics`' report (sums of the day rows the events keep up to date);
//! people limited to some outlets see those outlets' figures only, as with conversations.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::pages::{enc, html, Nav};
use super::session::Viewer;
use super::DashError;
use crate::analytics::report::{Report, TimeStat};
use crate::analytics::routes::{resolve, ReportQuery};
use crate::analytics::{self, csv, svg, AnalyticsError, Scope};
use crate::conversations::HandoffReason;
use crate::tenants::{self, Tenant};
use crate::web::{Access, Api, ApiError, AppState};

pub fn api() -> Api {
    use Access::Page;
    Api::new().get("/dash/analytics", Page, page).get(
        "/dash/analytics/export/{table}",
        Page,
        export,
    )
}

impl From<AnalyticsError> for DashError {
    fn from(e: AnalyticsError) -> Self {
        ApiError::from(e).into()
    }
}

/// Unanswered questions listed on the page (the CSV has the same).
const TOP: usize = 20;

#[derive(Deserialize, Default)]
pub struct Params {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    outlet: String,
}

impl Params {
    fn query(&self) -> ReportQuery {
        let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        ReportQuery {
            from: some(&self.from),
            to: some(&self.to),
            outlet: some(&self.outlet),
            top: Some(TOP),
            metric: None,
        }
    }
}

/// Narrows `scope` to what `viewer` may see (see [`Scope::limited_to`]).
fn limit_scope(viewer: &Viewer, scope: Scope) -> Result<Scope, DashError> {
    scope
        .limited_to(&viewer.outlets)
        .ok_or_else(|| DashError::Forbidden(analytics::routes::OUTSIDE_YOUR_OUTLETS.into()))
}

async fn build(
    state: &AppState,
    viewer: &Viewer,
    p: &Params,
) -> Result<(Tenant, Report), DashError> {
    let tenant = tenants::get_tenant(&state.store, viewer.tenant)?
        .ok_or_else(|| DashError::NotFound("no such tenant".into()))?;
    let (period, scope) = resolve(state, &tenant, &p.query())?;
    let scope = limit_scope(viewer, scope)?;
    let report = analytics::report_off_runtime(
        &state.store,
        tenant.id,
        &tenant.time_zone,
        period,
        scope,
        TOP,
    )
    .await?;
    Ok((tenant, report))
}

pub struct Figure {
    label: &'static str,
    value: String,
    id: &'static str,
}

pub struct TimeRow {
    label: &'static str,
    count: u64,
    avg: String,
    max: String,
}

pub struct ReasonRow {
    label: String,
    conversations: u64,
    share: String,
}

pub struct DayRow {
    date: String,
    conversations: u64,
    handed_off: u64,
    customer: u64,
    assistant: u64,
    agent: u64,
}

pub struct Export {
    label: &'static str,
    href: String,
}

#[derive(Template)]
#[template(path = "analytics.html")]
struct AnalyticsPage {
    nav: Nav,
    from: String,
    to: String,
    time_zone: String,
    /// (value, label, selected)
    outlets: Vec<(String, String, bool)>,
    figures: Vec<Figure>,
    charts: Vec<String>,
    reasons: Vec<ReasonRow>,
    times: Vec<TimeRow>,
    days: Vec<DayRow>,
    unanswered: Vec<(String, u64)>,
    exports: Vec<Export>,
}

fn percent(share: Option<f64>) -> String {
    share
        .map(|s| format!("{:.0}%", s * 100.0))
        .unwrap_or_else(|| "–".into())
}

/// A duration as people read it: "42 s", "3 min 5 s", "2 h 10 min".
fn duration(ms: Option<u64>) -> String {
    let Some(ms) = ms else {
        return "–".into();
    };
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

fn time_row(label: &'static str, t: &TimeStat) -> TimeRow {
    TimeRow {
        label,
        count: t.count,
        avg: duration(t.avg_ms),
        max: duration(t.max_ms),
    }
}

async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<Params>,
) -> Result<Response, DashError> {
    let nav = Nav::new(&state, &viewer, "analytics")?;
    let (tenant, r) = build(&state, &viewer, &p).await?;
    let t = &r.totals;
    let mut outlets = vec![("all".to_string(), "All I may see".to_string(), false)];
    if viewer.outlets.is_empty() {
        outlets.push(("none".into(), "Numbers without an outlet".into(), false));
    }
    outlets.extend(
        tenants::list_outlets(&state.store, tenant.id)?
            .into_iter()
            .filter(|o| viewer.covers_outlet(Some(o.id)))
            .map(|o| (o.id.to_string(), o.name, false)),
    );
    let chosen = Some(p.outlet.trim())
        .filter(|o| !o.is_empty())
        .unwrap_or("all");
    for o in &mut outlets {
        o.2 = o.0 == chosen;
    }
    let points = |f: fn(&analytics::report::DayRow) -> u64| -> Vec<(String, u64)> {
        r.days.iter().map(|d| (d.date.clone(), f(d))).collect()
    };
    let charts = vec![
        svg::daily_series("Conversations per day", &points(|d| d.conversations)),
        svg::daily_series(
            "Customer messages per day",
            &points(|d| d.customer_messages),
        ),
        svg::daily_series("Handed to a person per day", &points(|d| d.handed_off)),
        svg::hour_histogram(
            &format!("Customer messages by hour ({})", r.time_zone),
            &r.hours,
        ),
    ];
    let query = format!(
        "from={}&to={}&outlet={}",
        enc(&r.from),
        enc(&r.to),
        enc(chosen)
    );
    let exports = [
        ("Per day", "days"),
        ("Busiest hours", "hours"),
        ("Handoff reasons", "handoff_reasons"),
        ("Response times", "response_times"),
        ("Unanswered questions", "unanswered"),
    ]
    .into_iter()
    .map(|(label, table)| Export {
        label,
        href: format!("/dash/analytics/export/{table}?{query}"),
    })
    .collect();
    html(AnalyticsPage {
        nav,
        from: r.from.clone(),
        to: r.to.clone(),
        time_zone: r.time_zone.clone(),
        outlets,
        figures: vec![
            Figure {
                label: "Conversations",
                value: t.conversations.to_string(),
                id: "fig-conversations",
            },
            Figure {
                label: "Messages (customer / assistant / agents)",
                value: format!(
                    "{} / {} / {}",
                    t.customer_messages, t.assistant_messages, t.agent_messages
                ),
                id: "fig-messages",
            },
            Figure {
                label: "Handed to a person",
                value: format!("{} ({})", t.handed_off, percent(t.handoff_share)),
                id: "fig-handed-off",
            },
            Figure {
                label: "Resolved by the assistant / by a person",
                value: match t.assistant_resolution_share {
                    Some(share) => format!(
                        "{} / {} ({} of those closed by the assistant)",
                        t.resolved_by_assistant,
                        t.resolved_by_human,
                        percent(Some(share))
                    ),
                    None => "none closed yet".into(),
                },
                id: "fig-resolved",
            },
        ],
        charts,
        reasons: r
            .handoff_reasons
            .iter()
            .map(|x| ReasonRow {
                label: HandoffReason::label(&x.reason).to_string(),
                conversations: x.conversations,
                share: percent(Some(x.share)),
            })
            .collect(),
        times: vec![
            time_row(
                "First response by the assistant",
                &t.first_response_assistant,
            ),
            time_row("First response by a person", &t.first_response_human),
            time_row("Resolution by the assistant", &t.resolution_assistant),
            time_row("Resolution by a person", &t.resolution_human),
        ],
        days: r
            .days
            .iter()
            .rev()
            .map(|d| DayRow {
                date: d.date.clone(),
                conversations: d.conversations,
                handed_off: d.handed_off,
                customer: d.customer_messages,
                assistant: d.assistant_messages,
                agent: d.agent_messages,
            })
            .collect(),
        unanswered: r
            .unanswered
            .iter()
            .map(|u| (u.question.clone(), u.count))
            .collect(),
        exports,
    })
}

async fn export(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(table): Path<String>,
    Query(p): Query<Params>,
) -> Result<Response, DashError> {
    let table = table.strip_suffix(".csv").unwrap_or(&table).to_string();
    if !csv::TABLES.contains(&table.as_str()) {
        return Err(DashError::NotFound(format!(
            "no table {table:?} (tables: {})",
            csv::TABLES.join(", ")
        )));
    }
    let (_, report) = build(&state, &viewer, &p).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{OutletId, TenantId};

    fn viewer(outlets: Vec<OutletId>) -> Viewer {
        Viewer {
            tenant: TenantId::new(),
            tenant_slug: "acme".into(),
            tenant_name: "Acme".into(),
            time_zone: "UTC".into(),
            role: super::super::Role::Viewer,
            outlets,
            name: "Vera".into(),
            user: None,
            operator: false,
            csrf: String::new(),
            session_id: 0,
        }
    }

    #[test]
    fn outlet_limited_people_see_their_outlets_only() {
        let (a, b) = (OutletId::new(), OutletId::new());
        let all = viewer(vec![]);
        assert_eq!(limit_scope(&all, Scope::All).unwrap(), Scope::All);
        let vera = viewer(vec![a]);
        assert_eq!(
            limit_scope(&vera, Scope::All).unwrap(),
            Scope::Outlets(vec![a])
        );
        assert_eq!(
            limit_scope(&vera, Scope::Outlet(Some(a))).unwrap(),
            Scope::Outlet(Some(a))
        );
        assert!(limit_scope(&vera, Scope::Outlet(Some(b))).is_err());
        assert!(limit_scope(&vera, Scope::Outlet(None)).is_err());
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(None), "–");
        assert_eq!(duration(Some(42_300)), "42 s");
        assert_eq!(duration(Some(185_000)), "3 min 5 s");
        assert_eq!(duration(Some(7_800_000)), "2 h 10 min");
    }
}
