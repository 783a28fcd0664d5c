//! Who is calling: resolves the credentials of a request into a [`Principal`].
//!
//! - `Authorization: Bearer <operator token>`: the operator. The token is generated on first start
//!   and kept in the data directory (0600); install and the CLI on the machine use it.
//! - `Authorization: Bearer wak_…`: an API key of one tenant, with its role and outlets.
//! - Cookie `__Host-wacrm_session`: a dashboard session of an operator account or a tenant user.
//!   Unsafe methods must also carry `X-CSRF-Token` (see `people::sessions`).
//!
//! A bearer header that is present but wrong is refused; it never falls back to the cookie. Tenant
//! members (users and keys) of a suspended tenant are refused everywhere (403 `tenant_suspended`);
//! the operator is not. Which principal may call which route is decided by `web::access`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use rand::RngCore;

use super::{ApiError, AppState};
use crate::people::audit::Actor;
use crate::people::secret::constant_time_eq;
use crate::people::sessions::{self, Subject};
use crate::people::{apikeys, Role, UserStatus, OPERATORS, USERS};
use crate::storage::{ApiKeyId, OperatorId, OutletId, TenantId, UserId};
use crate::tenants::crypto::write_private;
use crate::tenants::{Tenant, TenantStatus, TENANTS};

pub const OPERATOR_TOKEN_FILE: &str = "operator.token";

/// Reads the operator token, creating it on first start.
pub fn load_or_create_operator_token(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join(OPERATOR_TOKEN_FILE);
    let create = || {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = format!("wop_{}", hex::encode(bytes));
        write_private(&path, token.as_bytes())?;
        Ok(token)
    };
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => Ok(token.trim().to_string()),
        Ok(_) => create(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(),
        Err(e) => Err(e),
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// The appliance's operator: by the operator token (`account` None) or an operator account.
    Operator {
        account: Option<OperatorId>,
        label: String,
    },
    /// A user or API key of one tenant.
    Member(Member),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub tenant: TenantId,
    pub role: Role,
    /// Empty: all the tenant's outlets.
    pub outlets: Vec<OutletId>,
    pub kind: MemberKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MemberKind {
    User { id: UserId, email: String },
    ApiKey { id: ApiKeyId, name: String },
}

impl Principal {
    pub fn is_operator(&self) -> bool {
        matches!(self, Principal::Operator { .. })
    }

    pub fn member(&self) -> Option<&Member> {
        match self {
            Principal::Member(m) => Some(m),
            Principal::Operator { .. } => None,
        }
    }

    /// The role this principal has in `tenant`: the operator acts as an admin everywhere.
    pub fn role_in(&self, tenant: TenantId) -> Option<Role> {
        match self {
            Principal::Operator { .. } => Some(Role::Admin),
            Principal::Member(m) if m.tenant == tenant => Some(m.role),
            Principal::Member(_) => None,
        }
    }

    /// Whether this principal works for `outlet` (None: tenant-wide, which only unlimited
    /// principals see).
    pub fn covers_outlet(&self, outlet: Option<OutletId>) -> bool {
        match self {
            Principal::Operator { .. } => true,
            Principal::Member(m) => {
                m.outlets.is_empty() || outlet.is_some_and(|o| m.outlets.contains(&o))
            }
        }
    }

    /// A person (not an integration's key).
    pub fn is_person(&self) -> bool {
        !matches!(
            self,
            Principal::Member(Member {
                kind: MemberKind::ApiKey { .. },
                ..
            })
        )
    }

    pub fn actor(&self, ip: Option<IpAddr>) -> Actor {
        let (kind, id, label) = match self {
            Principal::Operator { account, label } => {
                ("operator", account.map(|a| a.to_string()), label.clone())
            }
            Principal::Member(Member {
                kind: MemberKind::User { id, email },
                ..
            }) => ("user", Some(id.to_string()), email.clone()),
            Principal::Member(Member {
                kind: MemberKind::ApiKey { id, name },
                ..
            }) => ("api_key", Some(id.to_string()), name.clone()),
        };
        Actor {
            kind: kind.into(),
            id,
            label,
            ip,
        }
    }
}

/// What the access gate established for a request (a request extension).
#[derive(Debug, Clone, Default)]
pub struct Authorized {
    pub principal: Option<Principal>,
    /// The tenant named by the path, for tenant routes.
    pub tenant: Option<Tenant>,
    pub ip: Option<IpAddr>,
    /// The session token, when the principal came from the session cookie.
    pub session_token: Option<String>,
}

impl Authorized {
    pub fn actor(&self) -> Actor {
        match &self.principal {
            Some(p) => p.actor(self.ip),
            None => Actor::anonymous("anonymous", self.ip),
        }
    }
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::unauthorized(message)
}

pub fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

fn suspended() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "tenant_suspended",
        "the tenant is suspended",
    )
}

/// The client's address (the socket peer; the operations service refines it behind proxies).
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A member of a tenant that is still active, else the matching refusal.
fn active_tenant(state: &AppState, tenant: TenantId) -> Result<(), ApiError> {
    match state
        .store
        .read(|r| r.operator().get(&TENANTS, tenant.as_bytes()))?
    {
        Some(t) if t.status == TenantStatus::Active => Ok(()),
        Some(_) => Err(suspended()),
        None => Err(unauthenticated("unknown or expired credentials")),
    }
}

/// Resolves the request's credentials. Ok(None): no credentials at all.
pub fn resolve(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Option<(Principal, Option<String>)>, ApiError> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthenticated("Authorization must be a Bearer token"))?;
        return resolve_bearer(state, token).map(|p| Some((p, None)));
    }
    let Some(token) = sessions::token_from_cookies(headers) else {
        return Ok(None);
    };
    let people = &state.people;
    let Some((key, session)) =
        sessions::find(&state.store, &people.settings, &people.clock, &token)?
    else {
        return Err(unauthenticated("the session has expired; sign in again"));
    };
    if is_unsafe(method) {
        let sent = headers
            .get(sessions::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !constant_time_eq(sent.as_bytes(), sessions::csrf_token(&token).as_bytes()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                "missing or wrong X-CSRF-Token for this session",
            ));
        }
    }
    let principal = resolve_session_subject(state, &session)?;
    sessions::touch(&state.store, &people.clock, key, &session);
    Ok(Some((principal, Some(token))))
}

/// The principal a live session stands for (its account must still exist and be active).
pub fn resolve_session_subject(
    state: &AppState,
    session: &sessions::Session,
) -> Result<Principal, ApiError> {
    Ok(match session.subject {
        Subject::Operator { operator } => {
            let account = state
                .store
                .read(|r| r.operator().get(&OPERATORS, operator.as_bytes()))?
                .ok_or_else(|| unauthenticated("unknown or expired credentials"))?;
            Principal::Operator {
                account: Some(operator),
                label: account.email,
            }
        }
        Subject::User { tenant, user } => {
            let u = state
                .store
                .read(|r| r.tenant(tenant).get(&USERS, user.as_bytes()))?
                .filter(|u| u.status == UserStatus::Active)
                .ok_or_else(|| unauthenticated("unknown or expired credentials"))?;
            active_tenant(state, tenant)?;
            Principal::Member(Member {
                tenant,
                role: u.role,
                outlets: u.outlets,
                kind: MemberKind::User {
                    id: user,
                    email: u.email,
                },
            })
        }
    })
}

fn resolve_bearer(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    if constant_time_eq(token.as_bytes(), state.operator_token.as_bytes()) {
        return Ok(Principal::Operator {
            account: None,
            label: "operator token".into(),
        });
    }
    if token.starts_with(apikeys::SECRET_PREFIX) {
        if let Some((tenant, key)) = apikeys::find(&state.store, &state.people.clock, token)? {
            active_tenant(state, tenant)?;
            apikeys::touch(&state.store, &state.people.clock, tenant, &key);
            return Ok(Principal::Member(Member {
                tenant,
                role: key.role,
                outlets: key.outlets,
                kind: MemberKind::ApiKey {
                    id: key.id,
                    name: key.name,
                },
            }));
        }
    }
    Err(unauthenticated("unknown, revoked or expired token"))
}

fn authorized(parts: &Parts) -> Result<&Authorized, ApiError> {
    parts.extensions.get::<Authorized>().ok_or_else(|| {
        ApiError::internal_message(
            "a handler needing a caller runs on a route without an access rule",
        )
    })
}

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        authorized(parts).cloned()
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        authorized(parts)?
            .principal
            .clone()
            .ok_or_else(|| unauthenticated("credentials required"))
    }
}

/// A tenant route's caller and the tenant it is about, checked by the access gate.
#[derive(Debug, Clone)]
pub struct TenantCtx {
    pub tenant: Tenant,
    pub principal: Principal,
    pub ip: Option<IpAddr>,
}

impl TenantCtx {
    pub fn id(&self) -> TenantId {
        self.tenant.id
    }
    pub fn actor(&self) -> Actor {
        self.principal.actor(self.ip)
    }
}

impl FromRequestParts<AppState> for TenantCtx {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        let a = authorized(parts)?;
        match (&a.tenant, &a.principal) {
            (Some(tenant), Some(principal)) => Ok(TenantCtx {
                tenant: tenant.clone(),
                principal: principal.clone(),
                ip: a.ip,
            }),
            _ => Err(ApiError::internal_message(
                "a tenant handler runs on a route whose access rule names no tenant",
            )),
        }
    }
}

/// Proof that the caller is the operator, for handlers written before roles existed. New routes
/// declare `Access::Operator` in their `Api` row instead; this extractor checks it again.
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Principal::from_request_parts(parts, state).await? {
            p if p.is_operator() => Ok(Operator),
            _ => Err(forbidden("only the operator may do this")),
        }
    }
}
