//! A tenant's life after creation: suspended (webhooks still stored, no assistant answers, no
//! sign-ins, no API access for its members), resumed, and deleted.
//!
//! Deleting removes the tenant's data everywhere and reports what it removed:
//! 1. the tenant is suspended first (one commit), so nothing new is answered or signed in while
//!    the rest runs, and a failed deletion can simply be retried;
//! 2. every registered [`TenantDataOwner`] (knowledge documents and search indexes, ...) removes
//!    the tenant's files;
//! 3. one commit removes the tenant's key prefix (all its rows), its entries in the global
//!    collections (webhook routes, verify tokens, queued events, scheduled turns, dead letters,
//!    sign-in names, sessions, API key and invitation indexes, OIDC links, lockouts) and those of
//!    the owners (`purge_global_rows`), and the registry entry itself.
//!
//! The deletion is audited in the global log without the tenant's id or slug (they are data of
//! the tenant too); the report returned to the operator names them.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{reject, unreject, Tenant, TenantError, TenantStatus, TENANTS, TENANT_BY_SLUG};
use super::{ROUTES, VERIFY_TOKENS};
use crate::conversations::turns::TURN_SCHEDULE;
use crate::events::{DEAD_LETTERS, EVENT_QUEUE};
use crate::people::audit::{self, Actor, AuditEntry};
use crate::storage::{GlobalCollection, Record, Store, StoreError, TenantId, WriteCtx};

/// What an owner removed.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PurgeReport {
    pub files: u64,
    pub bytes: u64,
    /// Anything else worth reporting (index entries, cache entries), by kind.
    pub detail: BTreeMap<String, u64>,
}

/// A service that keeps tenant data outside the tenant's redb rows (files, indexes, global rows).
pub trait TenantDataOwner: Send + Sync {
    fn name(&self) -> &'static str;

    /// Removes the tenant's files and indexes. Runs in a blocking thread, after the tenant was
    /// suspended and before its rows go; must be idempotent (a failed deletion is retried).
    fn purge_tenant(&self, tenant: &Tenant) -> Result<PurgeReport, String>;

    /// Removes the tenant's rows in the owner's global collections, in the deletion's commit.
    fn purge_global_rows(
        &self,
        ctx: &mut WriteCtx<'_>,
        tenant: TenantId,
    ) -> Result<u64, StoreError> {
        let _ = (ctx, tenant);
        Ok(0)
    }
}

/// The registry of owners (in `AppState::tenant_data`); services register at start-up.
#[derive(Clone, Default)]
pub struct DataOwners(Arc<RwLock<Vec<Arc<dyn TenantDataOwner>>>>);

impl DataOwners {
    pub fn register(&self, owner: Arc<dyn TenantDataOwner>) {
        if let Ok(mut owners) = self.0.write() {
            owners.push(owner);
        }
    }

    pub fn all(&self) -> Vec<Arc<dyn TenantDataOwner>> {
        self.0.read().map(|o| o.clone()).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DeletionReport {
    pub tenant: TenantId,
    pub slug: String,
    /// Rows under the tenant's key prefix.
    pub tenant_rows: u64,
    /// Rows removed from global collections, by collection.
    pub global_rows: BTreeMap<String, u64>,
    /// What each data owner removed.
    pub owners: BTreeMap<String, PurgeReport>,
}

async fn set_status(
    store: &Store,
    tenant: TenantId,
    status: TenantStatus,
    actor: Actor,
) -> Result<Tenant, TenantError> {
    store
        .write(move |ctx| {
            let mut op = ctx.operator();
            let Some(mut t) = op.get(&TENANTS, tenant.as_bytes())? else {
                return Err(reject(TenantError::NotFound(format!("tenant {tenant}"))));
            };
            if t.status != status {
                t.status = status;
                op.put(&TENANTS, tenant.as_bytes(), &t)?;
                let action = match status {
                    TenantStatus::Active => "tenant.resumed",
                    TenantStatus::Suspended => "tenant.suspended",
                };
                audit::record(
                    ctx,
                    &AuditEntry::new(actor.clone(), action, format!("tenant {}", t.slug))
                        .tenant(tenant),
                )?;
            }
            Ok(t)
        })
        .await
        .map_err(unreject)
}

pub async fn suspend(store: &Store, tenant: TenantId, actor: Actor) -> Result<Tenant, TenantError> {
    set_status(store, tenant, TenantStatus::Suspended, actor).await
}

pub async fn resume(store: &Store, tenant: TenantId, actor: Actor) -> Result<Tenant, TenantError> {
    set_status(store, tenant, TenantStatus::Active, actor).await
}

/// Removes the rows of a global collection whose value belongs to `tenant`.
fn remove_where<V: Record>(
    ctx: &mut WriteCtx<'_>,
    collection: &GlobalCollection<V>,
    belongs: impl Fn(&V) -> bool,
) -> Result<u64, StoreError> {
    let mut op = ctx.operator();
    let doomed: Vec<Vec<u8>> = op
        .scan(collection, &[], false, usize::MAX)?
        .into_iter()
        .filter(|(_, v)| belongs(v))
        .map(|(k, _)| k)
        .collect();
    for k in &doomed {
        op.delete(collection, k)?;
    }
    Ok(doomed.len() as u64)
}

pub async fn delete(
    store: &Store,
    owners: &DataOwners,
    tenant: TenantId,
    actor: Actor,
) -> Result<DeletionReport, TenantError> {
    let suspended = suspend(store, tenant, actor.clone()).await?;
    let mut owner_reports = BTreeMap::new();
    for owner in owners.all() {
        let t = suspended.clone();
        let o = owner.clone();
        let report = tokio::task::spawn_blocking(move || o.purge_tenant(&t))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(|e| TenantError::Rejected {
                code: "purge_failed",
                message: format!(
                    "{} could not remove the tenant's data ({e}); the tenant stays suspended, try again",
                    owner.name()
                ),
            })?;
        owner_reports.insert(owner.name().to_string(), report);
    }
    let all_owners = owners.all();
    let slug = suspended.slug.clone();
    let (tenant_rows, global_rows) = store
        .write(move |ctx| {
            let mut global = BTreeMap::new();
            for (kind, n) in crate::people::purge_tenant_rows(ctx, tenant)? {
                global.insert(kind.to_string(), n);
            }
            for owner in &all_owners {
                let n = owner.purge_global_rows(ctx, tenant)?;
                global.insert(owner.name().to_string(), n);
            }
            global.insert(
                "webhook_routes".into(),
                remove_where(ctx, &ROUTES, |r| r.tenant == tenant)?,
            );
            global.insert(
                "verify_tokens".into(),
                remove_where(ctx, &VERIFY_TOKENS, |r| r.tenant == tenant)?,
            );
            global.insert(
                "queued_events".into(),
                remove_where(ctx, &EVENT_QUEUE, |e| e.tenant == tenant)?,
            );
            global.insert(
                "scheduled_turns".into(),
                remove_where(ctx, &TURN_SCHEDULE, |t| t.tenant == tenant)?,
            );
            global.insert(
                "dead_letters".into(),
                remove_where(ctx, &DEAD_LETTERS, |d| d.envelope.tenant == tenant)?,
            );
            let mut op = ctx.operator();
            let Some(t) = op.get(&TENANTS, tenant.as_bytes())? else {
                return Err(reject(TenantError::NotFound(format!("tenant {tenant}"))));
            };
            op.delete(&TENANT_BY_SLUG, t.slug.as_bytes())?;
            op.delete(&TENANTS, tenant.as_bytes())?;
            let rows = op.delete_tenant_rows(&tenant)?;
            let fingerprint = hex::encode(&Sha256::digest(tenant.as_bytes())[..8]);
            audit::record(
                ctx,
                &AuditEntry::new(
                    actor.clone(),
                    "tenant.deleted",
                    format!("tenant #{fingerprint}"),
                )
                .detail(serde_json::json!({"tenant_rows": rows, "global_rows": global})),
            )?;
            Ok((rows, global))
        })
        .await
        .map_err(unreject)?;
    tracing::info!(%tenant, slug, tenant_rows, "tenant deleted");
    Ok(DeletionReport {
        tenant,
        slug,
        tenant_rows,
        global_rows,
        owners: owner_reports,
    })
}
