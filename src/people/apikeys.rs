//! API keys for integrations: a random secret shown once at creation; the server keeps its SHA-256
//! (global index, to find the key from a request) and a tenant row with the key's name, role,
//! outlets, expiry, revocation and last use.

use serde::{Deserialize, Serialize};

use super::audit::{self, Actor, AuditEntry};
use super::secret::{new_token, token_hash};
use super::{Clock, PeopleError, Role};
use crate::storage::collections as tags;
use crate::storage::{
    ApiKeyId, Collection, GlobalCollection, OutletId, Record, Store, StoreError, TenantId,
};

/// Written at most this often per key.
const LAST_USED_EVERY_MS: i64 = 60_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub name: String,
    pub role: Role,
    /// Empty: all outlets.
    pub outlets: Vec<OutletId>,
    /// The secret's first characters, to tell keys apart in lists.
    pub prefix: String,
    pub created_at_ms: i64,
    pub created_by: String,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
}

impl Record for ApiKey {
    const VERSION: u16 = 1;
    const NAME: &'static str = "API key";
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiKeyRef {
    pub tenant: TenantId,
    pub key: ApiKeyId,
}

impl Record for ApiKeyRef {
    const VERSION: u16 = 1;
    const NAME: &'static str = "API key index";
}

pub const API_KEYS: Collection<ApiKey> = Collection::new(tags::API_KEYS);
pub const API_KEY_INDEX: GlobalCollection<ApiKeyRef> = GlobalCollection::new(tags::API_KEY_INDEX);

pub const SECRET_PREFIX: &str = "wak";

#[derive(Debug, Clone, Deserialize)]
pub struct NewApiKey {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub outlets: Vec<OutletId>,
    /// Expires after this many days; absent: never.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// Creates a key; returns the secret (shown this once) and the record.
pub async fn create(
    store: &Store,
    clock: &Clock,
    tenant: TenantId,
    new: NewApiKey,
    actor: Actor,
) -> Result<(String, ApiKey), PeopleError> {
    let name = super::validate_name(&new.name)?;
    super::users::check_outlets(store, tenant, &new.outlets)?;
    if new.expires_in_days == Some(0) {
        return Err(PeopleError::invalid(
            "expires_in_days",
            "must be at least 1",
        ));
    }
    let now = clock.now_ms();
    let secret = new_token(SECRET_PREFIX);
    let key = ApiKey {
        id: ApiKeyId::new(),
        name,
        role: new.role,
        outlets: new.outlets,
        prefix: secret.chars().take(12).collect(),
        created_at_ms: now,
        created_by: actor.label.clone(),
        expires_at_ms: new.expires_in_days.map(|d| now + i64::from(d) * 86_400_000),
        revoked_at_ms: None,
        last_used_ms: None,
    };
    let hash = token_hash(&secret);
    let record = key.clone();
    store
        .write(move |ctx| {
            ctx.operator().put(
                &API_KEY_INDEX,
                &hash,
                &ApiKeyRef {
                    tenant,
                    key: record.id,
                },
            )?;
            ctx.tenant(tenant)
                .put(&API_KEYS, record.id.as_bytes(), &record)?;
            audit::record(
                ctx,
                &AuditEntry::new(actor.clone(), "api_key.created", format!("api key {}", record.id))
                    .tenant(tenant)
                    .detail(serde_json::json!({"name": record.name, "role": record.role, "outlets": record.outlets})),
            )
        })
        .await?;
    Ok((secret, key))
}

pub fn list(store: &Store, tenant: TenantId) -> Result<Vec<ApiKey>, StoreError> {
    Ok(store
        .read(|r| r.tenant(tenant).scan(&API_KEYS, &[], false, usize::MAX))?
        .into_iter()
        .map(|(_, k)| k)
        .collect())
}

/// Revokes a key at once: its index row goes, its record stays (with the time) for the list.
pub async fn revoke(
    store: &Store,
    clock: &Clock,
    tenant: TenantId,
    id: ApiKeyId,
    actor: Actor,
) -> Result<ApiKey, PeopleError> {
    let now = clock.now_ms();
    store
        .write(move |ctx| {
            let Some(mut key) = ctx.tenant(tenant).get(&API_KEYS, id.as_bytes())? else {
                return Err(PeopleError::NotFound(format!("api key {id}")).reject());
            };
            if key.revoked_at_ms.is_none() {
                key.revoked_at_ms = Some(now);
                ctx.tenant(tenant).put(&API_KEYS, id.as_bytes(), &key)?;
                let mut op = ctx.operator();
                let doomed: Vec<Vec<u8>> = op
                    .scan(&API_KEY_INDEX, &[], false, usize::MAX)?
                    .into_iter()
                    .filter(|(_, r)| r.tenant == tenant && r.key == id)
                    .map(|(k, _)| k)
                    .collect();
                for k in doomed {
                    op.delete(&API_KEY_INDEX, &k)?;
                }
                audit::record(
                    ctx,
                    &AuditEntry::new(actor.clone(), "api_key.revoked", format!("api key {id}"))
                        .tenant(tenant)
                        .detail(serde_json::json!({"name": key.name})),
                )?;
            }
            Ok(key)
        })
        .await
        .map_err(PeopleError::unreject)
}

/// The live key of `secret`: known, not revoked, not expired.
pub fn find(
    store: &Store,
    clock: &Clock,
    secret: &str,
) -> Result<Option<(TenantId, ApiKey)>, StoreError> {
    let hash = token_hash(secret);
    let found = store.read(|r| {
        let Some(index) = r.operator().get(&API_KEY_INDEX, &hash)? else {
            return Ok(None);
        };
        Ok(r.tenant(index.tenant)
            .get(&API_KEYS, index.key.as_bytes())?
            .map(|k| (index.tenant, k)))
    })?;
    let now = clock.now_ms();
    Ok(found
        .filter(|(_, k)| k.revoked_at_ms.is_none() && k.expires_at_ms.is_none_or(|at| now < at)))
}

/// Records that the key was used, at most once a minute, without holding up the request.
pub fn touch(store: &Store, clock: &Clock, tenant: TenantId, key: &ApiKey) {
    let now = clock.now_ms();
    if key
        .last_used_ms
        .is_some_and(|t| now - t < LAST_USED_EVERY_MS)
    {
        return;
    }
    let store = store.clone();
    let id = key.id;
    tokio::spawn(async move {
        let result = store
            .write(move |ctx| {
                let mut t = ctx.tenant(tenant);
                if let Some(mut k) = t.get(&API_KEYS, id.as_bytes())? {
                    k.last_used_ms = Some(k.last_used_ms.unwrap_or(0).max(now));
                    t.put(&API_KEYS, id.as_bytes(), &k)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot record API key use");
        }
    });
}
