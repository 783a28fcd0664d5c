//! A tenant's subscription: which plan since when (at what price), its overrides, and the
//! calendar of its periods.
//!
//! A plan change applies at once: from the instant it is made, the new plan's limits hold (the
//! period's usage so far counts against them) and its price accrues (see `statement` for the
//! proration rule). Resources already held beyond a lower limit are kept; only new ones are
//! refused.

use jiff::civil::Date;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::money::Currency;
use super::period::{Calendar, PeriodError};
use super::plans::{self, LimitOverrides, Limits, Plan, PlanId};
use super::{calendar_failure, BillingError, Money, SUBSCRIPTION};
use crate::storage::{ReadCtx, Record, Store, StoreError, TenantId, WriteCtx};
use crate::tenants::{Tenant, TENANTS};

/// One stretch of time on one plan, at the price the plan had when the tenant moved onto it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSpan {
    pub from_ms: i64,
    pub plan: PlanId,
    pub plan_name: String,
    pub price: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub started_at_ms: i64,
    /// Local date periods are anchored on (period n starts at its midnight + n months).
    pub anchor: Date,
    /// The zone the periods are computed in (the tenant's when the subscription started).
    pub time_zone: String,
    /// Oldest first; never empty. The last span is the current plan.
    pub spans: Vec<PlanSpan>,
    pub overrides: LimitOverrides,
}

impl Record for Subscription {
    const VERSION: u16 = 1;
    const NAME: &'static str = "subscription";
}

impl Subscription {
    /// Starts on `plan` at local midnight of the day `started_at_ms` falls on.
    pub fn start(
        started_at_ms: i64,
        time_zone: &str,
        plan: &Plan,
    ) -> Result<Subscription, PeriodError> {
        let at = Timestamp::from_millisecond(started_at_ms)
            .map_err(|e| PeriodError::Range(e.to_string()))?;
        let anchor = Calendar::anchor_for(at, time_zone)?;
        let calendar = Calendar::new(anchor, time_zone)?;
        let first = calendar.period(0)?;
        Ok(Subscription {
            started_at_ms,
            anchor,
            time_zone: time_zone.to_string(),
            spans: vec![PlanSpan {
                from_ms: first.start_ms(),
                plan: plan.id.clone(),
                plan_name: plan.name.clone(),
                price: plan.price,
            }],
            overrides: LimitOverrides::default(),
        })
    }

    pub fn calendar(&self) -> Result<Calendar, PeriodError> {
        Calendar::new(self.anchor, &self.time_zone)
    }

    pub fn current(&self) -> Option<&PlanSpan> {
        self.spans.last()
    }

    pub fn currency(&self) -> Currency {
        self.current()
            .map(|s| s.price.currency)
            .unwrap_or(Currency::USD)
    }
}

/// Everything billing needs to know about a tenant at one moment.
#[derive(Debug, Clone)]
pub struct Account {
    pub tenant: TenantId,
    pub subscription: Subscription,
    /// False while the subscription is still the implicit default (no row yet).
    pub stored: bool,
    /// The current plan as it is now (live limits and overage price).
    pub plan: Plan,
    /// The plan's limits with the tenant's overrides applied.
    pub limits: Limits,
    pub calendar: Calendar,
}

fn build(
    tenant: TenantId,
    row: Option<Subscription>,
    tenant_row: Option<Tenant>,
    plan_of: impl Fn(&str) -> Result<Option<Plan>, StoreError>,
) -> Result<Option<Account>, StoreError> {
    let (subscription, stored) = match row {
        Some(s) => (s, true),
        None => {
            let Some(t) = tenant_row else {
                return Ok(None);
            };
            let plan = plan_of(plans::DEFAULT_PLAN)?.ok_or_else(|| {
                StoreError::Corrupt(format!("default plan {:?} missing", plans::DEFAULT_PLAN))
            })?;
            let s = Subscription::start(t.created_at_ms, &t.time_zone, &plan)
                .map_err(calendar_failure)?;
            (s, false)
        }
    };
    let current = subscription
        .current()
        .ok_or_else(|| StoreError::Corrupt(format!("subscription of {tenant} has no plan")))?;
    let plan = plan_of(&current.plan)?
        .ok_or_else(|| StoreError::Corrupt(format!("plan {:?} missing", current.plan)))?;
    let limits = plan.limits.with(&subscription.overrides);
    let calendar = subscription.calendar().map_err(calendar_failure)?;
    Ok(Some(Account {
        tenant,
        subscription,
        stored,
        plan,
        limits,
        calendar,
    }))
}

/// The tenant's account as of a read snapshot; None when the tenant does not exist.
pub fn account(r: &ReadCtx, tenant: TenantId) -> Result<Option<Account>, StoreError> {
    let op = r.operator();
    let row = r.tenant(tenant).get(&SUBSCRIPTION, &[])?;
    let tenant_row = match row {
        Some(_) => None,
        None => op.get(&TENANTS, tenant.as_bytes())?,
    };
    build(tenant, row, tenant_row, |id| plans::get_plan(&op, id))
}

/// The tenant's account inside a write.
pub fn account_in_write(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
) -> Result<Option<Account>, StoreError> {
    let row = ctx.tenant(tenant).get(&SUBSCRIPTION, &[])?;
    let tenant_row = match row {
        Some(_) => None,
        None => ctx.operator().get(&TENANTS, tenant.as_bytes())?,
    };
    // The one plan `build` will ask for: the current one, or the default for a new account.
    let wanted = row
        .as_ref()
        .and_then(|r| r.current())
        .map_or(plans::DEFAULT_PLAN.to_string(), |s| s.plan.clone());
    let plan = plans::plan_in_write(ctx, &wanted)?;
    build(tenant, row, tenant_row, |id| {
        Ok(plan.as_ref().filter(|p| p.id == id).cloned())
    })
}

/// Writes the subscription row if it is still the implicit default, freezing its start and price.
pub fn materialize(ctx: &mut WriteCtx<'_>, account: &mut Account) -> Result<(), StoreError> {
    if !account.stored {
        ctx.tenant(account.tenant)
            .put(&SUBSCRIPTION, &[], &account.subscription)?;
        account.stored = true;
    }
    Ok(())
}

fn missing_tenant(tenant: TenantId) -> StoreError {
    StoreError::rejected("not_found", format!("tenant {tenant} not found"))
}

/// Moves the tenant onto `plan_id` from `now`. Choosing the current plan again re-prices it
/// (takes the plan's current price from now on); if the price is unchanged nothing happens.
pub async fn change_plan(
    store: &Store,
    tenant: TenantId,
    plan_id: &str,
    now: Timestamp,
) -> Result<Account, BillingError> {
    let plan_id = plan_id.to_string();
    let account = store
        .write(move |ctx| {
            let mut account =
                account_in_write(ctx, tenant)?.ok_or_else(|| missing_tenant(tenant))?;
            let plan = plans::plan_in_write(ctx, &plan_id)?.ok_or_else(|| {
                StoreError::rejected("not_found", format!("plan {plan_id:?} not found"))
            })?;
            if plan.archived {
                return Err(StoreError::rejected(
                    "conflict",
                    format!("plan {:?} is archived and cannot be assigned", plan.id),
                ));
            }
            let currency = account.subscription.currency();
            if plan.price.currency != currency {
                return Err(StoreError::rejected(
                    "conflict",
                    format!(
                        "the subscription is billed in {currency}; plan {:?} is priced in {}",
                        plan.id, plan.price.currency
                    ),
                ));
            }
            let unchanged = account
                .subscription
                .current()
                .is_some_and(|s| s.plan == plan.id && s.price == plan.price);
            if unchanged {
                return Ok(account);
            }
            let at = now.as_millisecond();
            let spans = &mut account.subscription.spans;
            // Two changes at the same instant: the later one wins outright.
            if spans.len() > 1 && spans.last().is_some_and(|s| s.from_ms >= at) {
                spans.pop();
            }
            let from_ms = spans.last().map_or(at, |s| at.max(s.from_ms));
            spans.push(PlanSpan {
                from_ms,
                plan: plan.id.clone(),
                plan_name: plan.name.clone(),
                price: plan.price,
            });
            account.limits = plan.limits.with(&account.subscription.overrides);
            account.plan = plan;
            ctx.tenant(tenant)
                .put(&SUBSCRIPTION, &[], &account.subscription)?;
            account.stored = true;
            Ok(account)
        })
        .await?;
    Ok(account)
}

/// Replaces the tenant's limit overrides (an absent field: the plan's limit holds).
pub async fn set_overrides(
    store: &Store,
    tenant: TenantId,
    overrides: LimitOverrides,
) -> Result<Account, BillingError> {
    let account = store
        .write(move |ctx| {
            let mut account =
                account_in_write(ctx, tenant)?.ok_or_else(|| missing_tenant(tenant))?;
            account.subscription.overrides = overrides;
            account.limits = account.plan.limits.with(&overrides);
            ctx.tenant(tenant)
                .put(&SUBSCRIPTION, &[], &account.subscription)?;
            account.stored = true;
            Ok(account)
        })
        .await?;
    Ok(account)
}

pub fn load_account(store: &Store, tenant: TenantId) -> Result<Account, BillingError> {
    store
        .read(|r| account(r, tenant))?
        .ok_or_else(|| BillingError::NotFound(format!("tenant {tenant}")))
}
