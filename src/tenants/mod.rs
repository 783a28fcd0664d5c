//! Tenants (the group's businesses), their outlets, and their WhatsApp channels.
//!
//! The tenant registry and the webhook routing index are global (operator path); outlets and
//! channels are tenant-owned rows. Channel secrets are sealed with the master key.

pub mod crypto;
pub mod lifecycle;
pub mod routes;

use serde::{Deserialize, Serialize};

use crate::storage::collections as tags;
use crate::storage::{
    ChannelId, Collection, GlobalCollection, OutletId, Record, Store, StoreError, TenantId,
};
use crypto::{MasterKey, Sealed};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    /// Webhooks are still stored, but the assistant does not answer and users cannot sign in.
    Suspended,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tenant {
    pub id: TenantId,
    /// Short stable name used in URLs and the CLI (`acme-coffee`).
    pub slug: String,
    pub name: String,
    pub status: TenantStatus,
    /// IANA time zone (billing periods, business hours, reports).
    pub time_zone: String,
    pub created_at_ms: i64,
}

impl Record for Tenant {
    const VERSION: u16 = 1;
    const NAME: &'static str = "tenant";
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Outlet {
    pub id: OutletId,
    pub name: String,
    pub created_at_ms: i64,
}

impl Record for Outlet {
    const VERSION: u16 = 1;
    const NAME: &'static str = "outlet";
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Channel {
    pub id: ChannelId,
    pub name: String,
    pub outlet: Option<OutletId>,
    /// Meta's id of the business phone number; for sandbox channels a synthetic `sandbox-…` id.
    pub phone_number_id: String,
    pub kind: ChannelKind,
    pub created_at_ms: i64,
}

impl Record for Channel {
    const VERSION: u16 = 1;
    const NAME: &'static str = "channel";
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChannelKind {
    /// A real WhatsApp Business number on the Cloud API.
    CloudApi {
        waba_id: String,
        display_phone_number: String,
        api_version: String,
        access_token: Sealed,
        app_secret: Sealed,
        verify_token: String,
    },
    /// Needs no Meta account: customers are played through the simulator.
    Sandbox,
}

impl Channel {
    pub fn is_sandbox(&self) -> bool {
        matches!(self.kind, ChannelKind::Sandbox)
    }
}

/// Global routing index: which tenant and channel a phone_number_id belongs to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct PhoneRoute {
    pub tenant: TenantId,
    pub channel: ChannelId,
}

impl Record for PhoneRoute {
    const VERSION: u16 = 1;
    const NAME: &'static str = "phone route";
}

pub const TENANTS: GlobalCollection<Tenant> = GlobalCollection::new(tags::TENANTS);
pub const TENANT_BY_SLUG: GlobalCollection<TenantId> = GlobalCollection::new(tags::TENANT_BY_SLUG);
pub const ROUTES: GlobalCollection<PhoneRoute> =
    GlobalCollection::new(tags::ROUTE_BY_PHONE_NUMBER_ID);
/// Verify tokens of all Cloud API channels (Meta's GET handshake names no number).
pub const VERIFY_TOKENS: GlobalCollection<PhoneRoute> = GlobalCollection::new(tags::VERIFY_TOKENS);
pub const OUTLETS: Collection<Outlet> = Collection::new(tags::OUTLETS);
pub const CHANNELS: Collection<Channel> = Collection::new(tags::CHANNELS);

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A conflict or missing row found inside the write itself.
    #[error("{message}")]
    Rejected { code: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
}

impl TenantError {
    pub fn code(&self) -> &'static str {
        match self {
            TenantError::NotFound(_) => "not_found",
            TenantError::Conflict(_) => "conflict",
            TenantError::Invalid { .. } => "invalid_input",
            TenantError::Rejected { code, .. } => code,
            TenantError::Store(e) => e.code(),
            TenantError::Crypto(_) => "secret_unreadable",
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> TenantError {
    TenantError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn reject(e: TenantError) -> StoreError {
    StoreError::rejected(e.code(), e.to_string())
}

fn unreject(e: StoreError) -> TenantError {
    match e {
        StoreError::Rejected { code, message } => TenantError::Rejected { code, message },
        other => TenantError::Store(other),
    }
}

pub fn validate_slug(slug: &str) -> Result<(), TenantError> {
    let ok = (2..=40).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "slug",
            format!("{slug:?} must be 2-40 characters of a-z, 0-9 and '-', not starting or ending with '-'"),
        ))
    }
}

fn validate_name(field: &'static str, name: &str) -> Result<String, TenantError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 120 {
        return Err(invalid(field, "must be 1-120 characters"));
    }
    Ok(name.to_string())
}

fn validate_time_zone(tz: &str) -> Result<(), TenantError> {
    jiff::tz::TimeZone::get(tz)
        .map(|_| ())
        .map_err(|_| invalid("time_zone", format!("{tz:?} is not an IANA time zone")))
}

#[derive(Debug, Clone, Deserialize)]
pub struct NewTenant {
    pub slug: String,
    pub name: String,
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "UTC".into()
}

pub async fn create_tenant(store: &Store, new: NewTenant) -> Result<Tenant, TenantError> {
    validate_slug(&new.slug)?;
    let name = validate_name("name", &new.name)?;
    validate_time_zone(&new.time_zone)?;
    let tenant = Tenant {
        id: TenantId::new(),
        slug: new.slug,
        name,
        status: TenantStatus::Active,
        time_zone: new.time_zone,
        created_at_ms: crate::events::now_ms(),
    };
    let record = tenant.clone();
    store
        .write(move |ctx| {
            let mut op = ctx.operator();
            if op.get(&TENANT_BY_SLUG, record.slug.as_bytes())?.is_some() {
                return Err(reject(TenantError::Conflict(format!(
                    "a tenant with slug {:?} already exists",
                    record.slug
                ))));
            }
            op.put(&TENANTS, record.id.as_bytes(), &record)?;
            op.put(&TENANT_BY_SLUG, record.slug.as_bytes(), &record.id)?;
            Ok(())
        })
        .await
        .map_err(unreject)?;
    Ok(tenant)
}

pub fn list_tenants(store: &Store) -> Result<Vec<Tenant>, TenantError> {
    Ok(store
        .read(|r| r.operator().scan(&TENANTS, &[], false, usize::MAX))?
        .into_iter()
        .map(|(_, t)| t)
        .collect())
}

/// Finds a tenant by slug or id.
pub fn find_tenant(store: &Store, slug_or_id: &str) -> Result<Tenant, TenantError> {
    let found = store.read(|r| {
        let op = r.operator();
        let id = match slug_or_id.parse::<TenantId>() {
            Ok(id) => Some(id),
            Err(_) => op.get(&TENANT_BY_SLUG, slug_or_id.as_bytes())?,
        };
        match id {
            Some(id) => op.get(&TENANTS, id.as_bytes()),
            None => Ok(None),
        }
    })?;
    found.ok_or_else(|| TenantError::NotFound(format!("tenant {slug_or_id:?}")))
}

pub fn get_tenant(store: &Store, id: TenantId) -> Result<Option<Tenant>, TenantError> {
    Ok(store.read(|r| r.operator().get(&TENANTS, id.as_bytes()))?)
}

pub async fn create_outlet(
    store: &Store,
    tenant: TenantId,
    name: &str,
) -> Result<Outlet, TenantError> {
    let outlet = Outlet {
        id: OutletId::new(),
        name: validate_name("name", name)?,
        created_at_ms: crate::events::now_ms(),
    };
    let record = outlet.clone();
    store
        .write(move |ctx| {
            // In the same write: a refused outlet leaves nothing behind, and two concurrent
            // creations cannot both take the plan's last slot.
            crate::billing::check_quota(ctx, tenant, crate::billing::Resource::Outlets)?;
            ctx.tenant(tenant)
                .put(&OUTLETS, record.id.as_bytes(), &record)
        })
        .await
        .map_err(unreject)?;
    Ok(outlet)
}

pub fn list_outlets(store: &Store, tenant: TenantId) -> Result<Vec<Outlet>, TenantError> {
    Ok(store
        .read(|r| r.tenant(tenant).scan(&OUTLETS, &[], false, usize::MAX))?
        .into_iter()
        .map(|(_, o)| o)
        .collect())
}

/// What an admin supplies to connect a number. Secrets arrive in plain text and are sealed here.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NewChannelKind {
    CloudApi {
        phone_number_id: String,
        waba_id: String,
        #[serde(default)]
        display_phone_number: String,
        #[serde(default = "default_api_version")]
        api_version: String,
        access_token: crate::config::Secret,
        app_secret: crate::config::Secret,
        verify_token: crate::config::Secret,
    },
    Sandbox,
}

pub fn default_api_version() -> String {
    "v21.0".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct NewChannel {
    pub name: String,
    #[serde(default)]
    pub outlet: Option<OutletId>,
    #[serde(flatten)]
    pub kind: NewChannelKind,
}

fn secret_context(tenant: TenantId, channel: ChannelId, field: &str) -> String {
    format!("{tenant}/{channel}/{field}")
}

fn validate_digits(field: &'static str, value: &str) -> Result<(), TenantError> {
    if value.is_empty() || value.len() > 32 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            field,
            "must be the numeric id shown in Meta's console",
        ));
    }
    Ok(())
}

pub async fn add_channel(
    store: &Store,
    key: &MasterKey,
    tenant: TenantId,
    new: NewChannel,
) -> Result<Channel, TenantError> {
    let id = ChannelId::new();
    let name = validate_name("name", &new.name)?;
    let (phone_number_id, kind, verify_token) = match new.kind {
        NewChannelKind::CloudApi {
            phone_number_id,
            waba_id,
            display_phone_number,
            api_version,
            access_token,
            app_secret,
            verify_token,
        } => {
            validate_digits("phone_number_id", &phone_number_id)?;
            validate_digits("waba_id", &waba_id)?;
            if !api_version.starts_with('v') || api_version.len() > 8 {
                return Err(invalid("api_version", "must look like v21.0"));
            }
            for (field, secret) in [
                ("access_token", &access_token),
                ("app_secret", &app_secret),
                ("verify_token", &verify_token),
            ] {
                if secret.expose().trim().is_empty() {
                    return Err(invalid(
                        match field {
                            "access_token" => "access_token",
                            "app_secret" => "app_secret",
                            _ => "verify_token",
                        },
                        "must not be empty",
                    ));
                }
            }
            let kind = ChannelKind::CloudApi {
                waba_id,
                display_phone_number,
                api_version,
                access_token: key.seal(
                    access_token.expose(),
                    &secret_context(tenant, id, "access_token"),
                ),
                app_secret: key.seal(
                    app_secret.expose(),
                    &secret_context(tenant, id, "app_secret"),
                ),
                verify_token: verify_token.expose().to_string(),
            };
            (
                phone_number_id,
                kind,
                Some(verify_token.expose().to_string()),
            )
        }
        NewChannelKind::Sandbox => (
            format!("sandbox-{}", id.0.simple()),
            ChannelKind::Sandbox,
            None,
        ),
    };
    if let Some(outlet) = new.outlet {
        let exists = store.read(|r| r.tenant(tenant).contains(&OUTLETS, outlet.as_bytes()))?;
        if !exists {
            return Err(TenantError::NotFound(format!("outlet {outlet}")));
        }
    }
    let channel = Channel {
        id,
        name,
        outlet: new.outlet,
        phone_number_id,
        kind,
        created_at_ms: crate::events::now_ms(),
    };
    let record = channel.clone();
    store
        .write(move |ctx| {
            let mut op = ctx.operator();
            if op.get(&TENANTS, tenant.as_bytes())?.is_none() {
                return Err(reject(TenantError::NotFound(format!("tenant {tenant}"))));
            }
            if op
                .get(&ROUTES, record.phone_number_id.as_bytes())?
                .is_some()
            {
                return Err(reject(TenantError::Conflict(format!(
                    "phone_number_id {} is already connected",
                    record.phone_number_id
                ))));
            }
            let route = PhoneRoute {
                tenant,
                channel: record.id,
            };
            op.put(&ROUTES, record.phone_number_id.as_bytes(), &route)?;
            if let Some(token) = &verify_token {
                op.put(&VERIFY_TOKENS, token.as_bytes(), &route)?;
            }
            ctx.tenant(tenant)
                .put(&CHANNELS, record.id.as_bytes(), &record)?;
            Ok(())
        })
        .await
        .map_err(unreject)?;
    Ok(channel)
}

pub fn list_channels(store: &Store, tenant: TenantId) -> Result<Vec<Channel>, TenantError> {
    Ok(store
        .read(|r| r.tenant(tenant).scan(&CHANNELS, &[], false, usize::MAX))?
        .into_iter()
        .map(|(_, c)| c)
        .collect())
}

/// A channel resolved from a webhook's phone_number_id, with its tenant.
#[derive(Debug, Clone)]
pub struct RoutedChannel {
    pub tenant: Tenant,
    pub channel: Channel,
}

/// Operator path: which tenant and channel own this phone_number_id.
pub fn route_phone_number(
    store: &Store,
    phone_number_id: &str,
) -> Result<Option<RoutedChannel>, TenantError> {
    Ok(store.read(|r| {
        let op = r.operator();
        let Some(route) = op.get(&ROUTES, phone_number_id.as_bytes())? else {
            return Ok(None);
        };
        let Some(tenant) = op.get(&TENANTS, route.tenant.as_bytes())? else {
            return Ok(None);
        };
        let channel = r
            .tenant(route.tenant)
            .get(&CHANNELS, route.channel.as_bytes())?;
        Ok(channel.map(|channel| RoutedChannel { tenant, channel }))
    })?)
}

/// Whether any Cloud API channel uses this verify token (Meta's subscription handshake).
pub fn verify_token_known(store: &Store, token: &str) -> Result<bool, TenantError> {
    if token.is_empty() {
        return Ok(false);
    }
    Ok(store
        .read(|r| r.operator().get(&VERIFY_TOKENS, token.as_bytes()))?
        .is_some())
}

pub fn get_channel(
    store: &Store,
    tenant: TenantId,
    channel: ChannelId,
) -> Result<Option<Channel>, TenantError> {
    Ok(store.read(|r| r.tenant(tenant).get(&CHANNELS, channel.as_bytes()))?)
}

/// Decrypted credentials of a Cloud API channel.
pub struct ChannelSecrets {
    pub access_token: String,
    pub app_secret: String,
}

impl std::fmt::Debug for ChannelSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChannelSecrets(..)")
    }
}

pub fn channel_secrets(
    key: &MasterKey,
    tenant: TenantId,
    channel: &Channel,
) -> Result<Option<ChannelSecrets>, TenantError> {
    match &channel.kind {
        ChannelKind::CloudApi {
            access_token,
            app_secret,
            ..
        } => Ok(Some(ChannelSecrets {
            access_token: key.open(
                access_token,
                &secret_context(tenant, channel.id, "access_token"),
            )?,
            app_secret: key.open(
                app_secret,
                &secret_context(tenant, channel.id, "app_secret"),
            )?,
        })),
        ChannelKind::Sandbox => Ok(None),
    }
}

#[cfg(test)]
mod tests;
