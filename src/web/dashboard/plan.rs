//! Plan and usage (tenant admins) and the operator's tenants and plans, from `billing`.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::pages::{html, Nav};
use super::session::Viewer;
use super::DashError;
use crate::billing::quota::bytes_label;
use crate::billing::report::{self, LimitUse};
use crate::billing::BillingError;
use crate::web::AppState;

impl From<BillingError> for DashError {
    fn from(e: BillingError) -> Self {
        match e {
            BillingError::Store(s) => s.into(),
            BillingError::NotFound(m) => DashError::NotFound(m),
            other => DashError::internal(other),
        }
    }
}

/// One quota as a bar: how much of it is used, and whether that deserves a warning.
pub struct QuotaBar {
    pub label: &'static str,
    pub used: String,
    pub limit: String,
    /// 0-100, for the bar's width.
    pub percent: u64,
    /// "ok", "warn" (80 % or more) or "full".
    pub level: &'static str,
}

fn bar(label: &'static str, u: &LimitUse, show: impl Fn(u64) -> String) -> QuotaBar {
    match u.limit.max() {
        None => QuotaBar {
            label,
            used: show(u.used),
            limit: "unlimited".into(),
            percent: 0,
            level: "ok",
        },
        Some(max) => {
            // A zero quota is full from the start.
            let percent = u
                .used
                .saturating_mul(100)
                .checked_div(max)
                .unwrap_or(100)
                .min(100);
            QuotaBar {
                label,
                used: show(u.used),
                limit: show(max),
                percent,
                level: if u.used >= max {
                    "full"
                } else if percent >= 80 {
                    "warn"
                } else {
                    "ok"
                },
            }
        }
    }
}

fn count(n: u64) -> String {
    n.to_string()
}

#[derive(Template)]
#[template(path = "admin/plan.html")]
struct PlanPage {
    nav: Nav,
    plan: String,
    price: String,
    period: String,
    overage: String,
    charge: String,
    bars: Vec<QuotaBar>,
    warnings: Vec<String>,
    quota_handoffs: u64,
    overage_messages: u64,
    tokens: String,
}

pub async fn plan(State(state): State<AppState>, viewer: Viewer) -> Result<Response, DashError> {
    viewer.require_admin()?;
    let tenant = crate::tenants::get_tenant(&state.store, viewer.tenant)?
        .ok_or_else(|| DashError::NotFound("tenant".into()))?;
    let v = report::account_view(&state.store, &tenant, jiff::Timestamp::now())?;
    let u = &v.usage;
    let bars = vec![
        bar(
            "Assistant replies this period",
            &u.assistant_messages,
            count,
        ),
        bar("Outlets", &u.outlets, count),
        bar("Knowledge bases", &u.knowledge_bases, count),
        bar("Knowledge storage", &u.storage_bytes, bytes_label),
    ];
    let mut warnings = Vec::new();
    for b in &bars {
        match b.level {
            "full" => warnings.push(format!(
                "{}: the quota is used up ({} of {}).",
                b.label, b.used, b.limit
            )),
            "warn" => warnings.push(format!(
                "{}: {} % used ({} of {}).",
                b.label, b.percent, b.used, b.limit
            )),
            _ => {}
        }
    }
    if u.quota_handoffs > 0 {
        warnings.push(format!(
            "{} conversations went to people this period because the assistant's quota was used up.",
            u.quota_handoffs
        ));
    }
    html(PlanPage {
        nav: Nav::new(&state, &viewer, "plan")?,
        plan: v.plan.name.clone(),
        price: v.plan.price.to_string(),
        period: v.period.label.clone(),
        overage: match &v.plan.overage {
            Some(m) => format!("{m} per reply past the quota"),
            None => "none: past the quota, conversations go to people".into(),
        },
        charge: v.period_charge.to_string(),
        bars,
        warnings,
        quota_handoffs: u.quota_handoffs,
        overage_messages: u.overage_messages,
        tokens: format!(
            "{} model calls, {} prompt + {} completion tokens, {} embedding tokens",
            u.tokens.llm_calls,
            u.tokens.llm_prompt_tokens,
            u.tokens.llm_completion_tokens,
            u.tokens.embedding_tokens
        ),
    })
}

pub struct TenantRow {
    pub slug: String,
    pub name: String,
    pub status: &'static str,
    pub plan: String,
    pub period: String,
    pub replies: QuotaBar,
    pub outlets: String,
    pub storage: String,
    pub charge: String,
}

pub struct PlanRow {
    pub id: String,
    pub name: String,
    pub price: String,
    pub replies: String,
    pub outlets: String,
    pub knowledge_bases: String,
    pub storage: String,
    pub overage: String,
    pub archived: bool,
}

#[derive(Template)]
#[template(path = "admin/operator.html")]
struct OperatorPage {
    nav: Nav,
    tenants: Vec<TenantRow>,
    plans: Vec<PlanRow>,
}

pub async fn operator(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Response, DashError> {
    viewer.require_operator()?;
    let tenants = report::overview(&state.store, jiff::Timestamp::now())?
        .into_iter()
        .map(|r| TenantRow {
            status: match r.status {
                crate::tenants::TenantStatus::Active => "active",
                crate::tenants::TenantStatus::Suspended => "suspended",
            },
            replies: bar("Assistant replies", &r.assistant_messages, count),
            outlets: format!("{} of {}", r.outlets.used, r.outlets.limit),
            storage: format!(
                "{} of {}",
                bytes_label(r.storage_bytes.used),
                r.storage_bytes
                    .limit
                    .max()
                    .map(bytes_label)
                    .unwrap_or_else(|| "unlimited".into())
            ),
            charge: r.period_charge.to_string(),
            slug: r.slug,
            name: r.name,
            plan: r.plan,
            period: r.period,
        })
        .collect();
    let plans = crate::billing::plans::list_plans(&state.store)?
        .into_iter()
        .map(|p| PlanRow {
            id: p.id.to_string(),
            name: p.name,
            price: p.price.to_string(),
            replies: p.limits.assistant_messages.to_string(),
            outlets: p.limits.outlets.to_string(),
            knowledge_bases: p.limits.knowledge_bases.to_string(),
            storage: p
                .limits
                .storage_bytes
                .max()
                .map(bytes_label)
                .unwrap_or_else(|| "unlimited".into()),
            overage: p
                .overage
                .map(|m| m.to_string())
                .unwrap_or_else(|| "none".into()),
            archived: p.archived,
        })
        .collect();
    html(OperatorPage {
        nav: Nav::new(&state, &viewer, "operator")?,
        tenants,
        plans,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::Limit;

    #[test]
    fn bars_warn_from_80_percent_and_when_full() {
        let u = |used, max| LimitUse {
            limit: Limit::Max(max),
            used,
            remaining: Some(max - used.min(max)),
        };
        assert_eq!(bar("x", &u(10, 100), count).level, "ok");
        assert_eq!(bar("x", &u(80, 100), count).level, "warn");
        assert_eq!(bar("x", &u(100, 100), count).level, "full");
        assert_eq!(bar("x", &u(100, 100), count).percent, 100);
        let unlimited = LimitUse {
            limit: Limit::Unlimited,
            used: 7,
            remaining: None,
        };
        assert_eq!(bar("x", &unlimited, count).limit, "unlimited");
    }
}
