//! The audit log: who did what to which object, when, from where.
//!
//! An entry is written in the same commit as the change it records where the change is ours
//! (roles, keys, sessions, tenants); other services call [`record`] inside their own writes
//! (the knowledge service for document deletions, billing for plan changes). A tenant's entries
//! are tenant rows (its admins read them, and they go with the tenant); entries about no tenant
//! (operator accounts, sign-ins with unknown names, tenant deletions) are global. The operator
//! reads both.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::storage::collections as tags;
use crate::storage::{Collection, GlobalCollection, Record, Store, StoreError, TenantId, WriteCtx};

/// Who acted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Actor {
    /// `operator`, `user`, `api_key`, `system` or `anonymous`.
    pub kind: String,
    /// The account's or key's id, if any.
    pub id: Option<String>,
    /// Human-readable: an email, a key's name, "operator token".
    pub label: String,
    /// The client's address, if the action came over the network.
    pub ip: Option<IpAddr>,
}

impl Actor {
    pub fn system(label: &str) -> Self {
        Self {
            kind: "system".into(),
            id: None,
            label: label.into(),
            ip: None,
        }
    }

    pub fn anonymous(label: impl Into<String>, ip: Option<IpAddr>) -> Self {
        Self {
            kind: "anonymous".into(),
            id: None,
            label: label.into(),
            ip,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub actor: Actor,
    /// Dotted verb, stable for filtering: `auth.sign_in`, `auth.sign_in_failed`, `auth.locked`,
    /// `user.role_changed`, `api_key.created`, `api_key.revoked`, `channel.created`,
    /// `conversation.taken_over`, `document.deleted`, `plan.changed`, `tenant.suspended`, ...
    pub action: String,
    pub tenant: Option<TenantId>,
    /// The object acted on, e.g. `user 0190…`, `channel 0190…`.
    pub target: String,
    #[serde(default)]
    pub detail: serde_json::Value,
}

impl Record for AuditEntry {
    const VERSION: u16 = 1;
    const NAME: &'static str = "audit entry";
}

impl AuditEntry {
    pub fn new(actor: Actor, action: &str, target: impl Into<String>) -> Self {
        Self {
            at_ms: crate::events::now_ms(),
            actor,
            action: action.into(),
            tenant: None,
            target: target.into(),
            detail: serde_json::Value::Null,
        }
    }

    pub fn tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = Some(tenant);
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    pub fn at(mut self, at_ms: i64) -> Self {
        self.at_ms = at_ms;
        self
    }
}

pub const TENANT_AUDIT: Collection<AuditEntry> = Collection::new(tags::TENANT_AUDIT);
pub const GLOBAL_AUDIT: GlobalCollection<AuditEntry> = GlobalCollection::new(tags::GLOBAL_AUDIT);

/// Time-ordered and unique: (at_ms, random).
fn key(at_ms: i64) -> Vec<u8> {
    let mut key = (at_ms.max(0) as u64).to_be_bytes().to_vec();
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key
}

/// Writes `entry` in the caller's commit: into its tenant's log, or the global one.
pub fn record(ctx: &mut WriteCtx<'_>, entry: &AuditEntry) -> Result<(), StoreError> {
    let k = key(entry.at_ms);
    match entry.tenant {
        Some(tenant) => ctx.tenant(tenant).put(&TENANT_AUDIT, &k, entry),
        None => ctx.operator().put(&GLOBAL_AUDIT, &k, entry),
    }
}

/// Writes `entry` in a commit of its own (when the change it records had no write of ours).
pub async fn record_now(store: &Store, entry: AuditEntry) -> Result<(), StoreError> {
    store.write(move |ctx| record(ctx, &entry)).await
}

/// Filters for reading the log.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditQuery {
    /// Only entries whose action starts with this (`auth.`, `user.role_changed`).
    pub action: Option<String>,
    #[serde(default)]
    pub since_ms: i64,
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_limit() -> usize {
    200
}

fn matches(q: &AuditQuery, e: &AuditEntry) -> bool {
    e.at_ms >= q.since_ms
        && q.action
            .as_deref()
            .is_none_or(|prefix| e.action.starts_with(prefix))
}

/// A tenant's log, newest first.
pub fn list_tenant(
    store: &Store,
    tenant: TenantId,
    q: &AuditQuery,
) -> Result<Vec<AuditEntry>, StoreError> {
    let limit = q.limit.clamp(1, 10_000);
    store.read(|r| {
        Ok(r.tenant(tenant)
            .scan(&TENANT_AUDIT, &[], true, usize::MAX)?
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| matches(q, e))
            .take(limit)
            .collect())
    })
}

/// Everything: the global log and every tenant's, newest first.
pub fn list_all(store: &Store, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
    let limit = q.limit.clamp(1, 10_000);
    let tenants = crate::tenants::list_tenants(store).map_err(|e| match e {
        crate::tenants::TenantError::Store(s) => s,
        other => StoreError::Io(other.to_string()),
    })?;
    let mut all: Vec<AuditEntry> = store.read(|r| {
        let mut out: Vec<AuditEntry> = r
            .operator()
            .scan(&GLOBAL_AUDIT, &[], true, usize::MAX)?
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| matches(q, e))
            .take(limit)
            .collect();
        for t in &tenants {
            out.extend(
                r.tenant(t.id)
                    .scan(&TENANT_AUDIT, &[], true, usize::MAX)?
                    .into_iter()
                    .map(|(_, e)| e)
                    .filter(|e| matches(q, e))
                    .take(limit),
            );
        }
        Ok(out)
    })?;
    all.sort_by_key(|e| std::cmp::Reverse(e.at_ms));
    all.truncate(limit);
    Ok(all)
}
