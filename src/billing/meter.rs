//! Metering of assistant replies against the period's quota, with the 80 % / 100 % warnings, and
//! token counts for cost visibility.
//!
//! `meter_reply` is called inside the turn's commit (one writer, one transaction), so the check
//! and the increment are one atomic step: concurrent turns at the edge of the quota never exceed
//! it, and a turn that commits once is metered once. `reply_allowed` is the cheap read-only
//! pre-check a turn makes before calling the model; the commit decides.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::subscription::{account, account_in_write, materialize, Account};
use super::{calendar_failure, BillingError, PERIOD_USAGE, QUOTA_WARNINGS};
use crate::events::{publish, EventPayload};
use crate::storage::{Record, Store, StoreError, TenantId, WriteCtx};

/// One period's usage. Usage resets by starting a new row at each period boundary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeriodUsage {
    pub period: u32,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Replies counted against the quota.
    pub assistant_replies: u64,
    /// Replies past the quota on a plan that allows overage (metered separately).
    pub overage_replies: u64,
    /// Sum of the overage price in force at each overage reply, in the subscription's currency.
    pub overage_charge_minor: i64,
    /// Turns handed to people because the quota was used up (their notices are not metered).
    pub quota_handoffs: u64,
    pub llm_calls: u64,
    pub llm_prompt_tokens: u64,
    pub llm_completion_tokens: u64,
    pub embedding_tokens: u64,
}

impl Record for PeriodUsage {
    const VERSION: u16 = 1;
    const NAME: &'static str = "period usage";
}

/// A quota warning as tenant admins see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaWarning {
    pub period: u32,
    /// The period's local start date ("2024-04-16").
    pub period_label: String,
    pub threshold_percent: u8,
    pub used: u64,
    pub limit: u64,
    pub plan: String,
    pub at_ms: i64,
}

impl Record for QuotaWarning {
    const VERSION: u16 = 1;
    const NAME: &'static str = "quota warning";
}

pub const THRESHOLDS: [u8; 2] = [80, 100];

pub fn usage_key(period: u32) -> [u8; 4] {
    period.to_be_bytes()
}

fn warning_key(period: u32, threshold: u8) -> [u8; 5] {
    let mut key = [0u8; 5];
    key[..4].copy_from_slice(&period.to_be_bytes());
    key[4] = threshold;
    key
}

/// Tokens spent on the tenant's behalf (recorded, never capped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub llm_calls: u64,
    pub llm_prompt_tokens: u64,
    pub llm_completion_tokens: u64,
    pub embedding_tokens: u64,
}

impl TokenUsage {
    pub fn is_empty(&self) -> bool {
        *self == TokenUsage::default()
    }
}

/// What the commit may do with an assistant reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metered {
    /// Counted within the quota: send it.
    Included,
    /// Counted as overage (the plan allows it): send it.
    Overage,
    /// No quota left and no overage: do not send it; hand the conversation to a person.
    Exhausted,
    /// The tenant is unknown to billing (deleted meanwhile): nothing counted.
    Unmetered,
}

impl Metered {
    pub fn may_reply(&self) -> bool {
        !matches!(self, Metered::Exhausted)
    }
}

struct Metering {
    account: Account,
    period: super::period::Period,
    usage: PeriodUsage,
}

fn open(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    now: Timestamp,
) -> Result<Option<Metering>, StoreError> {
    let Some(mut account) = account_in_write(ctx, tenant)? else {
        return Ok(None);
    };
    materialize(ctx, &mut account)?;
    let period = account.calendar.period_at(now).map_err(calendar_failure)?;
    let usage = ctx
        .tenant(tenant)
        .get(&PERIOD_USAGE, &usage_key(period.number))?
        .unwrap_or_else(|| PeriodUsage {
            period: period.number,
            start_ms: period.start_ms(),
            end_ms: period.end_ms(),
            ..PeriodUsage::default()
        });
    Ok(Some(Metering {
        account,
        period,
        usage,
    }))
}

fn save(ctx: &mut WriteCtx<'_>, tenant: TenantId, m: &Metering) -> Result<(), StoreError> {
    ctx.tenant(tenant)
        .put(&PERIOD_USAGE, &usage_key(m.period.number), &m.usage)
}

/// Meters one assistant reply at `now`, in the caller's write (the turn's commit).
pub fn meter_reply(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    now: Timestamp,
) -> Result<Metered, StoreError> {
    let Some(mut m) = open(ctx, tenant, now)? else {
        return Ok(Metered::Unmetered);
    };
    let outcome = if m
        .account
        .limits
        .assistant_messages
        .allows(m.usage.assistant_replies, 1)
    {
        m.usage.assistant_replies += 1;
        Metered::Included
    } else if let Some(price) = m.account.plan.overage {
        m.usage.overage_replies += 1;
        m.usage.overage_charge_minor = m.usage.overage_charge_minor.saturating_add(price.minor);
        Metered::Overage
    } else {
        m.usage.quota_handoffs += 1;
        Metered::Exhausted
    };
    save(ctx, tenant, &m)?;
    warn_on_thresholds(ctx, tenant, &m, now)?;
    Ok(outcome)
}

/// Records a turn the pre-check already handed off for lack of quota.
pub fn record_quota_handoff(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    now: Timestamp,
) -> Result<(), StoreError> {
    if let Some(mut m) = open(ctx, tenant, now)? {
        m.usage.quota_handoffs += 1;
        save(ctx, tenant, &m)?;
        warn_on_thresholds(ctx, tenant, &m, now)?;
    }
    Ok(())
}

/// Adds token counts to the period of `now`, in the caller's write.
pub fn record_tokens_in(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    tokens: TokenUsage,
    now: Timestamp,
) -> Result<(), StoreError> {
    if tokens.is_empty() {
        return Ok(());
    }
    if let Some(mut m) = open(ctx, tenant, now)? {
        let u = &mut m.usage;
        u.llm_calls = u.llm_calls.saturating_add(tokens.llm_calls);
        u.llm_prompt_tokens = u.llm_prompt_tokens.saturating_add(tokens.llm_prompt_tokens);
        u.llm_completion_tokens = u
            .llm_completion_tokens
            .saturating_add(tokens.llm_completion_tokens);
        u.embedding_tokens = u.embedding_tokens.saturating_add(tokens.embedding_tokens);
        save(ctx, tenant, &m)?;
    }
    Ok(())
}

/// Adds token counts in a write of their own (for work outside a commit, e.g. embedding).
pub async fn record_tokens(
    store: &Store,
    tenant: TenantId,
    tokens: TokenUsage,
) -> Result<(), BillingError> {
    if tokens.is_empty() {
        return Ok(());
    }
    store
        .write(move |ctx| record_tokens_in(ctx, tenant, tokens, Timestamp::now()))
        .await?;
    Ok(())
}

/// The count at which `percent` of `limit` is reached (rounded up: 80 % of 10 is 8).
pub fn threshold_count(limit: u64, percent: u8) -> u64 {
    (u128::from(limit) * u128::from(percent)).div_ceil(100) as u64
}

/// Publishes each threshold the period's usage has reached and not yet announced: once per
/// threshold per period, in the commit that reaches it.
fn warn_on_thresholds(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    m: &Metering,
    now: Timestamp,
) -> Result<(), StoreError> {
    let Some(limit) = m.account.limits.assistant_messages.max() else {
        return Ok(());
    };
    if limit == 0 {
        return Ok(());
    }
    let used = m.usage.assistant_replies;
    for threshold in THRESHOLDS {
        if used < threshold_count(limit, threshold) {
            continue;
        }
        let key = warning_key(m.period.number, threshold);
        let warning = QuotaWarning {
            period: m.period.number,
            period_label: m.period.label(),
            threshold_percent: threshold,
            used,
            limit,
            plan: m.account.plan.id.clone(),
            at_ms: now.as_millisecond(),
        };
        if ctx
            .tenant(tenant)
            .insert_new(&QUOTA_WARNINGS, &key, &warning)?
        {
            tracing::info!(tenant = %tenant, threshold, used, limit, period = %warning.period_label, "quota warning");
            publish(
                ctx,
                tenant,
                EventPayload::QuotaWarning {
                    threshold_percent: u32::from(threshold),
                    period: warning.period_label.clone(),
                },
            )?;
        }
    }
    Ok(())
}

/// The pre-check: may the assistant still reply at `now`? Read-only and cheap; the commit's
/// `meter_reply` has the final word.
pub fn reply_allowed(
    store: &Store,
    tenant: TenantId,
    now: Timestamp,
) -> Result<bool, BillingError> {
    Ok(store.read(|r| {
        let Some(account) = account(r, tenant)? else {
            return Ok(true);
        };
        if account.plan.overage.is_some() {
            return Ok(true);
        }
        let period = account.calendar.period_at(now).map_err(calendar_failure)?;
        let used = r
            .tenant(tenant)
            .get(&PERIOD_USAGE, &usage_key(period.number))?
            .map_or(0, |u| u.assistant_replies);
        Ok(account.limits.assistant_messages.allows(used, 1))
    })?)
}

/// Usage rows of a tenant, oldest first.
pub fn usage_rows(store: &Store, tenant: TenantId) -> Result<Vec<PeriodUsage>, BillingError> {
    Ok(store
        .read(|r| r.tenant(tenant).scan(&PERIOD_USAGE, &[], false, usize::MAX))?
        .into_iter()
        .map(|(_, u)| u)
        .collect())
}

pub fn usage_of(
    store: &Store,
    tenant: TenantId,
    period: u32,
) -> Result<Option<PeriodUsage>, BillingError> {
    Ok(store.read(|r| r.tenant(tenant).get(&PERIOD_USAGE, &usage_key(period)))?)
}

/// A tenant's quota warnings, newest first.
pub fn warnings(store: &Store, tenant: TenantId) -> Result<Vec<QuotaWarning>, BillingError> {
    Ok(store
        .read(|r| {
            r.tenant(tenant)
                .scan(&QUOTA_WARNINGS, &[], true, usize::MAX)
        })?
        .into_iter()
        .map(|(_, w)| w)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_round_up() {
        assert_eq!(threshold_count(10, 80), 8);
        assert_eq!(threshold_count(10, 100), 10);
        assert_eq!(threshold_count(500, 80), 400);
        assert_eq!(threshold_count(3, 80), 3);
        assert_eq!(threshold_count(1, 80), 1);
        assert_eq!(threshold_count(u64::MAX, 100), u64::MAX);
    }
}
