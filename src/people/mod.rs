//! People and roles: operator accounts, tenant users (admin, agent, viewer; optionally limited to
//! some outlets), invitations, sign-in (passwords, sessions, OIDC), API keys and the audit log.
//!
//! Storage: users, API keys, invitations and a tenant's audit entries are tenant rows (removed with
//! the tenant's prefix). What must be found before the tenant is known (a sign-in name, a session
//! cookie, an API key, an invitation link, an OIDC subject) is a global index holding only a hash
//! of any secret, and [`purge_tenant_rows`] removes a tenant's entries from those indexes.

pub mod apikeys;
pub mod audit;
pub mod clock;
pub mod invitations;
pub mod limiter;
pub mod oidc;
pub mod operators;
pub mod password;
pub mod purge;
pub mod routes;
pub mod secret;
pub mod sessions;
pub mod settings;
pub mod signin;
pub mod users;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::storage::collections as tags;
use crate::storage::{
    Collection, GlobalCollection, OperatorId, OutletId, Record, StoreError, TenantId, UserId,
};
pub use clock::Clock;
pub use purge::purge_tenant_rows;
pub use settings::{AuthSettings, OidcSettings, SignInSettings};

/// What a tenant member may do. Ordered: each role may do everything the ones below it may.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads conversations, outlets, channels.
    #[default]
    Viewer,
    /// Works the conversations of their outlets: takes over, replies, hands back, closes.
    Agent,
    /// Manages the tenant: outlets, channels, people, API keys, knowledge; reads the audit log.
    Admin,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Agent => "agent",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = PeopleError;
    fn from_str(s: &str) -> Result<Self, PeopleError> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "agent" => Ok(Role::Agent),
            "admin" => Ok(Role::Admin),
            other => Err(PeopleError::invalid(
                "role",
                format!("{other:?} is not one of admin, agent, viewer"),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    /// Cannot sign in; sessions and links stop working. Kept for the audit trail.
    Disabled,
}

/// A person of one tenant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub id: UserId,
    /// Lower-cased; unique across the appliance (one sign-in name, one tenant).
    pub email: String,
    pub name: String,
    pub role: Role,
    /// Outlets this person works for; empty means all of the tenant's outlets.
    pub outlets: Vec<OutletId>,
    pub status: UserStatus,
    /// argon2id PHC string; None for people who sign in only through the identity provider.
    pub password_hash: Option<String>,
    /// `issuer|subject` of the identity-provider account linked at the first OIDC sign-in.
    pub oidc_subject: Option<String>,
    pub created_at_ms: i64,
}

impl Record for User {
    const VERSION: u16 = 1;
    const NAME: &'static str = "user";
}

/// The appliance's operator (the group's administrator).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OperatorAccount {
    pub id: OperatorId,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub created_at_ms: i64,
}

impl Record for OperatorAccount {
    const VERSION: u16 = 1;
    const NAME: &'static str = "operator account";
}

/// Whose sign-in name an email is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoginRef {
    Operator { operator: OperatorId },
    User { tenant: TenantId, user: UserId },
}

impl Record for LoginRef {
    const VERSION: u16 = 1;
    const NAME: &'static str = "login";
}

impl LoginRef {
    pub fn tenant(&self) -> Option<TenantId> {
        match self {
            LoginRef::Operator { .. } => None,
            LoginRef::User { tenant, .. } => Some(*tenant),
        }
    }
}

pub const USERS: Collection<User> = Collection::new(tags::USERS);
pub const LOGINS: GlobalCollection<LoginRef> = GlobalCollection::new(tags::LOGINS);
pub const OPERATORS: GlobalCollection<OperatorAccount> = GlobalCollection::new(tags::OPERATORS);

#[derive(Debug, thiserror::Error)]
pub enum PeopleError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Wrong email or password, unknown or revoked credentials. Says no more, on purpose.
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("the tenant is suspended")]
    TenantSuspended,
    /// Too many failed attempts: try again after `retry_after_s`.
    #[error("too many failed sign-ins; try again in {retry_after_s} s")]
    Throttled { retry_after_s: u64 },
    #[error(
        "this account is locked after repeated failed sign-ins; try again in {retry_after_s} s"
    )]
    Locked { retry_after_s: u64 },
    #[error("the identity provider cannot be reached: {0}")]
    IdentityProvider(String),
    #[error("{message}")]
    Rejected { code: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

impl PeopleError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        PeopleError::Invalid {
            field,
            reason: reason.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            PeopleError::Invalid { .. } => "invalid_input",
            PeopleError::NotFound(_) => "not_found",
            PeopleError::Conflict(_) => "conflict",
            PeopleError::Unauthenticated(_) => "invalid_credentials",
            PeopleError::Forbidden(_) => "forbidden",
            PeopleError::TenantSuspended => "tenant_suspended",
            PeopleError::Throttled { .. } => "sign_in_throttled",
            PeopleError::Locked { .. } => "account_locked",
            PeopleError::IdentityProvider(_) => "identity_provider_unavailable",
            PeopleError::Rejected { code, .. } => code,
            PeopleError::Store(e) => e.code(),
            PeopleError::Hash(_) => "internal",
        }
    }

    /// Turns the error into a store rejection so it can abort a write (and come back out intact).
    pub(crate) fn reject(self) -> StoreError {
        StoreError::rejected(self.code(), self.to_string())
    }

    pub(crate) fn unreject(e: StoreError) -> Self {
        match e {
            StoreError::Rejected { code, message } => PeopleError::Rejected { code, message },
            other => PeopleError::Store(other),
        }
    }
}

/// Shared state of the identity service (in `AppState::people`).
pub struct PeopleState {
    pub settings: AuthSettings,
    pub clock: Clock,
    /// Failed sign-ins per client address (behind a trait: the operations service may bring its own).
    pub ip_limiter: Arc<dyn limiter::FailureLimiter>,
    pub oidc: Option<oidc::OidcVerifier>,
    pub hasher: password::Hasher,
}

impl PeopleState {
    pub fn new(settings: AuthSettings) -> Result<Self, PeopleError> {
        let clock = Clock::default();
        let ip_limiter: Arc<dyn limiter::FailureLimiter> = Arc::new(limiter::MemoryLimiter::new(
            settings.sign_in.ip_failures_per_window,
            settings.sign_in.ip_window_seconds * 1000,
            clock.clone(),
        ));
        let oidc = match &settings.oidc {
            Some(o) => Some(oidc::OidcVerifier::new(o.clone(), clock.clone())?),
            None => None,
        };
        let hasher = password::Hasher::new(&settings.password)?;
        Ok(Self {
            settings,
            clock,
            ip_limiter,
            oidc,
            hasher,
        })
    }
}

/// Lower-cases and checks an email address (the sign-in name). Deliberately loose: one `@`,
/// something on each side, no spaces; the identity of a person is proven by their password or IdP.
pub fn normalize_email(email: &str) -> Result<String, PeopleError> {
    let email = email.trim().to_lowercase();
    let ok = email.len() <= 254
        && email.split('@').count() == 2
        && email.split('@').all(|part| !part.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(email)
    } else {
        Err(PeopleError::invalid("email", "must be an email address"))
    }
}

pub(crate) fn validate_name(name: &str) -> Result<String, PeopleError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 120 {
        return Err(PeopleError::invalid("name", "must be 1-120 characters"));
    }
    Ok(name.to_string())
}
