//! Plans, usage metering and quota checks.
//!
//! Data model (all tenant rows are keyed by the tenant, so deleting a tenant deletes its billing):
//! - `PLANS` (global): plans as data; the original tiers are built-in seeds (see `plans`).
//! - `SUBSCRIPTION` (tenant, one row): the plan history as spans with the price each was taken
//!   at, the per-tenant limit overrides, and the calendar (anchor date, time zone) of its monthly
//!   periods. A tenant without a row is on the default plan since its creation; the row is
//!   written the first time billing records anything for it.
//! - `PERIOD_USAGE` (tenant, one row per period number): metered replies, overage, handoffs for
//!   lack of quota, and LLM/embedding token counts. A new period is a new row: usage resets at the
//!   period boundary, which is local midnight in the tenant's zone.
//! - `QUOTA_WARNINGS` (tenant, per period and threshold): the 80 % / 100 % warnings tenant
//!   admins see; written in the same commit as the `billing.quota.warning` event, once.
//! - `HOLDINGS` (tenant, one row): knowledge bases and stored bytes as recorded by
//!   `check_quota` and given back by `release_quota`. Outlets are counted from their own rows.
//!
//! What is metered: an assistant reply committed for sending to a customer, counted in the same
//! commit that queues it (the turn's commit, which runs once per turn whatever the retries or
//! redeliveries, see `assistant::turn`). Not metered: agents' messages, the assistant's handoff
//! notices (including the one sent when the quota is used up: it is how the customer learns a
//! person will answer, and it must go out exactly when there is no quota left), and internal
//! notes. A reply WhatsApp later fails to deliver stays counted: the quota is spent when the
//! reply is committed, which is what keeps concurrent turns from ever exceeding it.

pub mod meter;
pub mod money;
pub mod period;
pub mod plans;
pub mod quota;
pub mod report;
pub mod routes;
pub mod statement;
pub mod subscription;

use crate::storage::collections as tags;
use crate::storage::{Collection, GlobalCollection, StoreError};

pub use meter::{meter_reply, record_quota_handoff, record_tokens, reply_allowed, Metered};
pub use money::{Currency, Money};
pub use plans::{Limit, LimitOverrides, Limits, Plan};
pub use quota::{check_quota, release_quota, Resource};

pub const PLANS: GlobalCollection<plans::Plan> = GlobalCollection::new(tags::BILLING_PLANS);
pub const SUBSCRIPTION: Collection<subscription::Subscription> =
    Collection::new(tags::BILLING_SUBSCRIPTION);
pub const PERIOD_USAGE: Collection<meter::PeriodUsage> =
    Collection::new(tags::BILLING_PERIOD_USAGE);
pub const QUOTA_WARNINGS: Collection<meter::QuotaWarning> =
    Collection::new(tags::BILLING_QUOTA_WARNINGS);
pub const HOLDINGS: Collection<quota::Holdings> = Collection::new(tags::BILLING_HOLDINGS);

/// The code of every quota refusal (HTTP 403), for creations, uploads and the API alike.
pub const QUOTA_EXCEEDED: &str = "quota_exceeded";

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    Conflict(String),
    /// Refused by its own logic inside a write (quota, conflict); nothing was committed.
    #[error("{message}")]
    Rejected { code: &'static str, message: String },
    #[error(transparent)]
    Period(#[from] period::PeriodError),
    #[error(transparent)]
    Money(#[from] money::MoneyError),
    #[error(transparent)]
    Store(StoreError),
}

impl BillingError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        BillingError::Invalid {
            field,
            reason: reason.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            BillingError::NotFound(_) => "not_found",
            BillingError::Invalid { .. } => "invalid_input",
            BillingError::Conflict(_) => "conflict",
            BillingError::Rejected { code, .. } => code,
            BillingError::Period(_) => "billing_calendar",
            BillingError::Money(_) => "invalid_amount",
            BillingError::Store(e) => e.code(),
        }
    }

    /// For returning from inside a `Store::write` closure; `From<StoreError>` turns it back.
    pub fn into_rejection(self) -> StoreError {
        match self {
            BillingError::Store(e) => e,
            other => StoreError::rejected(other.code(), other.to_string()),
        }
    }
}

impl From<StoreError> for BillingError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rejected { code, message } => BillingError::Rejected { code, message },
            other => BillingError::Store(other),
        }
    }
}

/// Calendar trouble inside a write (an unknown zone can only mean a broken time zone database).
fn calendar_failure(e: period::PeriodError) -> StoreError {
    StoreError::Corrupt(format!("billing calendar: {e}"))
}

#[cfg(test)]
mod tests;
