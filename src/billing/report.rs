//! What the API and CLI show: a tenant's plan, period and usage against each limit; its periods;
//! a period's statement; the operator's view across tenants.

use jiff::Timestamp;
use serde::Serialize;

use super::meter::{self, PeriodUsage, TokenUsage};
use super::period::{Period, PeriodView};
use super::plans::{Limit, LimitOverrides, Plan};
use super::quota;
use super::statement::{self, Statement};
use super::subscription::{load_account, Account, PlanSpan};
use super::{BillingError, Money};
use crate::storage::{Store, TenantId};
use crate::tenants::{self, Tenant};

#[derive(Debug, Clone, Serialize)]
pub struct LimitUse {
    pub limit: Limit,
    pub used: u64,
    /// None when unlimited.
    pub remaining: Option<u64>,
}

impl LimitUse {
    fn new(limit: Limit, used: u64) -> Self {
        Self {
            limit,
            used,
            remaining: limit.max().map(|m| m.saturating_sub(used)),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct UsageView {
    pub assistant_messages: LimitUse,
    pub overage_messages: u64,
    pub overage_charge: Money,
    pub quota_handoffs: u64,
    pub outlets: LimitUse,
    pub knowledge_bases: LimitUse,
    pub storage_bytes: LimitUse,
    pub tokens: TokenUsage,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionView {
    pub started_at_ms: i64,
    pub anchor: String,
    pub time_zone: String,
    pub spans: Vec<PlanSpan>,
    pub overrides: LimitOverrides,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    pub tenant: TenantId,
    pub slug: String,
    /// The current plan as it is now.
    pub plan: Plan,
    /// The plan's limits with the tenant's overrides applied.
    pub limits: super::Limits,
    pub subscription: SubscriptionView,
    pub period: PeriodView,
    pub usage: UsageView,
    /// What the current period will cost if nothing changes (plan shares + overage so far).
    pub period_charge: Money,
}

fn current_period(account: &Account, now: Timestamp) -> Result<Period, BillingError> {
    Ok(account.calendar.period_at(now)?)
}

pub fn account_view(
    store: &Store,
    tenant: &Tenant,
    now: Timestamp,
) -> Result<AccountView, BillingError> {
    let account = load_account(store, tenant.id)?;
    let period = current_period(&account, now)?;
    let usage = meter::usage_of(store, tenant.id, period.number)?;
    let (outlets, holdings) = quota::held(store, tenant.id)?;
    let st = statement::statement(&account.subscription, &period, usage.clone())?;
    let usage = usage.unwrap_or_default();
    let limits = account.limits;
    let sub = &account.subscription;
    Ok(AccountView {
        tenant: tenant.id,
        slug: tenant.slug.clone(),
        plan: account.plan.clone(),
        limits,
        subscription: SubscriptionView {
            started_at_ms: sub.started_at_ms,
            anchor: sub.anchor.to_string(),
            time_zone: sub.time_zone.clone(),
            spans: sub.spans.clone(),
            overrides: sub.overrides,
        },
        period: period.view(),
        usage: UsageView {
            assistant_messages: LimitUse::new(limits.assistant_messages, usage.assistant_replies),
            overage_messages: usage.overage_replies,
            overage_charge: Money::new(usage.overage_charge_minor, sub.currency()),
            quota_handoffs: usage.quota_handoffs,
            outlets: LimitUse::new(limits.outlets, outlets),
            knowledge_bases: LimitUse::new(limits.knowledge_bases, holdings.knowledge_bases),
            storage_bytes: LimitUse::new(limits.storage_bytes, holdings.storage_bytes),
            tokens: TokenUsage {
                llm_calls: usage.llm_calls,
                llm_prompt_tokens: usage.llm_prompt_tokens,
                llm_completion_tokens: usage.llm_completion_tokens,
                embedding_tokens: usage.embedding_tokens,
            },
        },
        period_charge: st.total,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct PeriodSummary {
    pub period: PeriodView,
    pub current: bool,
    pub usage: PeriodUsage,
    pub total: Money,
}

/// Every period from the subscription's first to the current one, newest first.
pub fn periods(
    store: &Store,
    tenant: TenantId,
    now: Timestamp,
) -> Result<Vec<PeriodSummary>, BillingError> {
    let account = load_account(store, tenant)?;
    let current = current_period(&account, now)?;
    let mut rows = meter::usage_rows(store, tenant)?;
    let mut out = Vec::new();
    for number in (0..=current.number).rev() {
        let period = account.calendar.period(number)?;
        let usage = rows
            .iter()
            .position(|u| u.period == number)
            .map(|i| rows.swap_remove(i));
        let st = statement::statement(&account.subscription, &period, usage)?;
        out.push(PeriodSummary {
            period: st.period,
            current: number == current.number,
            usage: st.usage,
            total: st.total,
        });
    }
    Ok(out)
}

/// Finds a period by "current", its number, or its local start date ("2024-04-16").
pub fn find_period(account: &Account, which: &str, now: Timestamp) -> Result<Period, BillingError> {
    let current = current_period(account, now)?;
    let not_found = || BillingError::NotFound(format!("period {which:?}"));
    let period = if which == "current" {
        current.clone()
    } else if let Ok(number) = which.parse::<u32>() {
        account.calendar.period(number)?
    } else if let Ok(date) = which.parse::<jiff::civil::Date>() {
        let at = date
            .to_zoned(account.calendar.tz.clone())
            .and_then(|z| z.start_of_day())
            .map_err(|_| not_found())?;
        let p = account.calendar.period_at(at.timestamp())?;
        if p.label() != which {
            return Err(not_found());
        }
        p
    } else {
        return Err(BillingError::invalid(
            "period",
            format!("{which:?}: give \"current\", a period number, or the period's start date (YYYY-MM-DD)"),
        ));
    };
    if period.number > current.number {
        return Err(BillingError::NotFound(format!(
            "period {which:?} (it has not started)"
        )));
    }
    Ok(period)
}

pub fn statement_of(
    store: &Store,
    tenant: TenantId,
    which: &str,
    now: Timestamp,
) -> Result<Statement, BillingError> {
    let account = load_account(store, tenant)?;
    let period = find_period(&account, which, now)?;
    let usage = meter::usage_of(store, tenant, period.number)?;
    Ok(statement::statement(&account.subscription, &period, usage)?)
}

/// One tenant in the operator's view.
#[derive(Debug, Clone, Serialize)]
pub struct OverviewRow {
    pub tenant: TenantId,
    pub slug: String,
    pub name: String,
    pub status: tenants::TenantStatus,
    pub plan: String,
    pub period: String,
    pub assistant_messages: LimitUse,
    pub overage_messages: u64,
    pub quota_handoffs: u64,
    pub outlets: LimitUse,
    pub knowledge_bases: LimitUse,
    pub storage_bytes: LimitUse,
    pub llm_tokens: u64,
    pub period_charge: Money,
}

pub fn overview(store: &Store, now: Timestamp) -> Result<Vec<OverviewRow>, BillingError> {
    let all = tenants::list_tenants(store).map_err(|e| match e {
        tenants::TenantError::Store(s) => BillingError::from(s),
        other => BillingError::Conflict(other.to_string()),
    })?;
    let mut rows = Vec::with_capacity(all.len());
    for t in all {
        let v = account_view(store, &t, now)?;
        rows.push(OverviewRow {
            tenant: t.id,
            slug: t.slug,
            name: t.name,
            status: t.status,
            plan: v.plan.id,
            period: v.period.label,
            assistant_messages: v.usage.assistant_messages,
            overage_messages: v.usage.overage_messages,
            quota_handoffs: v.usage.quota_handoffs,
            outlets: v.usage.outlets,
            knowledge_bases: v.usage.knowledge_bases,
            storage_bytes: v.usage.storage_bytes,
            llm_tokens: v.usage.tokens.llm_prompt_tokens + v.usage.tokens.llm_completion_tokens,
            period_charge: v.period_charge,
        });
    }
    Ok(rows)
}
