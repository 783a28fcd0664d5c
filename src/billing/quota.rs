//! Quotas on what a tenant holds: outlets, knowledge bases, stored bytes.
//!
//! `check_quota` runs inside the creating write (the same `Store::write` closure that stores the
//! outlet, the knowledge base or the upload), so a refusal aborts the whole write: nothing is
//! half-created, and two concurrent creations cannot both take the last slot. Outlets are
//! counted from their rows; knowledge bases and bytes are counted by billing itself (`HOLDINGS`)
//! from what `check_quota` recorded and `release_quota` gave back, so the knowledge module must
//! call `release_quota` in the write that deletes a base or a document.

use serde::{Deserialize, Serialize};

use super::plans::{Limit, MB};
use super::subscription::{account_in_write, Account};
use super::{HOLDINGS, QUOTA_EXCEEDED};
use crate::storage::{Record, Store, StoreError, TenantId, WriteCtx};
use crate::tenants::OUTLETS;

/// What a creation or upload adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// One more outlet.
    Outlets,
    /// One more knowledge base.
    KnowledgeBases,
    /// This many more stored bytes (an upload's size).
    StorageBytes(u64),
}

/// Knowledge bases and bytes held, as recorded by billing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holdings {
    pub knowledge_bases: u64,
    pub storage_bytes: u64,
}

impl Record for Holdings {
    const VERSION: u16 = 1;
    const NAME: &'static str = "billing holdings";
}

/// Human form of a byte count ("50 MB", "1.5 KB").
pub fn bytes_label(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GB", 1024 * MB), ("MB", MB), ("KB", 1024)];
    for (unit, size) in UNITS {
        if bytes >= size {
            let tenths = (u128::from(bytes) * 10 + u128::from(size) / 2) / u128::from(size);
            return if tenths % 10 == 0 {
                format!("{} {unit}", tenths / 10)
            } else {
                format!("{}.{} {unit}", tenths / 10, tenths % 10)
            };
        }
    }
    format!("{bytes} bytes")
}

fn refuse(account: &Account, what: String) -> StoreError {
    StoreError::rejected(
        QUOTA_EXCEEDED,
        format!(
            "{what} (plan {:?}); ask the operator for a larger plan or an override",
            account.plan.name
        ),
    )
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Counts `resource` against the tenant's limits and, for knowledge bases and bytes, records it
/// as held, all in the caller's write. Errors with code `quota_exceeded` (naming the limit and
/// the plan) when it does not fit; the caller returns that error from its closure so nothing of
/// the write is committed.
pub fn check_quota(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    resource: Resource,
) -> Result<(), StoreError> {
    let account = account_in_write(ctx, tenant)?
        .ok_or_else(|| StoreError::rejected("not_found", format!("tenant {tenant} not found")))?;
    let limits = account.limits;
    match resource {
        Resource::Outlets => {
            let Limit::Max(max) = limits.outlets else {
                return Ok(());
            };
            let bound = usize::try_from(max.saturating_add(1)).unwrap_or(usize::MAX);
            let held = ctx.tenant(tenant).scan(&OUTLETS, &[], false, bound)?.len() as u64;
            if !limits.outlets.allows(held, 1) {
                return Err(refuse(
                    &account,
                    format!(
                        "outlet limit reached: the plan allows {} and the tenant has {held}",
                        plural(max, "outlet", "outlets")
                    ),
                ));
            }
        }
        Resource::KnowledgeBases => {
            let mut holdings = ctx.tenant(tenant).get(&HOLDINGS, &[])?.unwrap_or_default();
            if !limits.knowledge_bases.allows(holdings.knowledge_bases, 1) {
                let max = limits.knowledge_bases.max().unwrap_or(0);
                return Err(refuse(
                    &account,
                    format!(
                        "knowledge base limit reached: the plan allows {} and the tenant has {}",
                        plural(max, "knowledge base", "knowledge bases"),
                        holdings.knowledge_bases
                    ),
                ));
            }
            holdings.knowledge_bases += 1;
            ctx.tenant(tenant).put(&HOLDINGS, &[], &holdings)?;
        }
        Resource::StorageBytes(bytes) => {
            let mut holdings = ctx.tenant(tenant).get(&HOLDINGS, &[])?.unwrap_or_default();
            if !limits.storage_bytes.allows(holdings.storage_bytes, bytes) {
                let max = limits.storage_bytes.max().unwrap_or(0);
                return Err(refuse(
                    &account,
                    format!(
                        "storage limit reached: the plan allows {} of documents, {} are stored and this upload needs {}",
                        bytes_label(max),
                        bytes_label(holdings.storage_bytes),
                        bytes_label(bytes)
                    ),
                ));
            }
            holdings.storage_bytes = holdings.storage_bytes.saturating_add(bytes);
            ctx.tenant(tenant).put(&HOLDINGS, &[], &holdings)?;
        }
    }
    Ok(())
}

/// Gives back what a deletion freed, in the deleting write. Outlets need no release.
pub fn release_quota(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    resource: Resource,
) -> Result<(), StoreError> {
    let mut t = ctx.tenant(tenant);
    let mut holdings = t.get(&HOLDINGS, &[])?.unwrap_or_default();
    match resource {
        Resource::Outlets => return Ok(()),
        Resource::KnowledgeBases => {
            holdings.knowledge_bases = holdings.knowledge_bases.saturating_sub(1)
        }
        Resource::StorageBytes(bytes) => {
            holdings.storage_bytes = holdings.storage_bytes.saturating_sub(bytes)
        }
    }
    t.put(&HOLDINGS, &[], &holdings)
}

/// Held resources: (outlets, knowledge bases, bytes).
pub fn held(store: &Store, tenant: TenantId) -> Result<(u64, Holdings), StoreError> {
    store.read(|r| {
        let t = r.tenant(tenant);
        let outlets = t.scan(&OUTLETS, &[], false, usize::MAX)?.len() as u64;
        let holdings = t.get(&HOLDINGS, &[])?.unwrap_or_default();
        Ok((outlets, holdings))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_labels_are_readable() {
        assert_eq!(bytes_label(50 * MB), "50 MB");
        assert_eq!(bytes_label(1024 * MB), "1 GB");
        assert_eq!(bytes_label(1536), "1.5 KB");
        assert_eq!(bytes_label(12), "12 bytes");
        assert_eq!(bytes_label(50 * MB + 1), "50 MB");
    }
}
