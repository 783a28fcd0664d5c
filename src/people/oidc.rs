//! Single sign-on: OpenID Connect ID tokens from the group's identity provider (the original design
//! used Firebase Auth), verified against the provider's published keys (JWKS) with the issuer,
//! the audience, the expiry and the signature checked, then mapped to a tenant user.
//!
//! Mapping: a token's (issuer, subject) is linked to a user at the first sign-in, found by the
//! token's email, which the provider must vouch for (`email_verified: true`); later sign-ins use the
//! link, so a changed email at the provider does not move the account. Nobody is created here:
//! people get accounts from an admin (user or invitation) first. Operators sign in with passwords.

use std::net::IpAddr;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::audit::{self, Actor, AuditEntry};
use super::sessions::{NewSession, Subject};
use super::signin::{actor_for, open_session};
use super::{Clock, LoginRef, OidcSettings, PeopleError, PeopleState, UserStatus, LOGINS, USERS};
use crate::storage::collections as tags;
use crate::storage::{GlobalCollection, Record, Store, TenantId, UserId};
use crate::tenants::{TenantStatus, TENANTS};

/// Asymmetric algorithms only: a token may never choose HMAC with the public key as its secret.
const ALLOWED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// A token naming an unknown key refetches the JWKS, but not more often than this.
const MIN_REFETCH_MS: i64 = 10_000;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct OidcLink {
    pub tenant: TenantId,
    pub user: UserId,
}

impl Record for OidcLink {
    const VERSION: u16 = 1;
    const NAME: &'static str = "OIDC link";
}

pub const OIDC_LINKS: GlobalCollection<OidcLink> = GlobalCollection::new(tags::OIDC_LINKS);

/// What a verified ID token says about its holder.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
}

impl Identity {
    pub fn link_key(&self) -> String {
        format!("{}|{}", self.issuer, self.subject)
    }
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
}

#[derive(Default)]
struct Cache {
    keys: Option<JwkSet>,
    fetched_at_ms: i64,
    last_attempt_ms: Option<i64>,
}

pub struct OidcVerifier {
    settings: OidcSettings,
    clock: Clock,
    http: reqwest::Client,
    cache: Mutex<Cache>,
}

impl OidcVerifier {
    pub fn new(settings: OidcSettings, clock: Clock) -> Result<Self, PeopleError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| PeopleError::IdentityProvider(e.to_string()))?;
        Ok(Self {
            settings,
            clock,
            http,
            cache: Mutex::new(Cache::default()),
        })
    }

    async fn fetch(&self) -> Result<JwkSet, PeopleError> {
        let resp = self
            .http
            .get(&self.settings.jwks_url)
            .send()
            .await
            .map_err(|e| PeopleError::IdentityProvider(format!("JWKS: {e}")))?;
        if !resp.status().is_success() {
            return Err(PeopleError::IdentityProvider(format!(
                "JWKS answered HTTP {}",
                resp.status().as_u16()
            )));
        }
        resp.json::<JwkSet>()
            .await
            .map_err(|e| PeopleError::IdentityProvider(format!("JWKS is not a key set: {e}")))
    }

    /// The provider's key `kid`, from the cache or a fresh copy of the JWKS.
    async fn key(&self, kid: &str) -> Result<Option<Jwk>, PeopleError> {
        let mut cache = self.cache.lock().await;
        let now = self.clock.now_ms();
        let fresh = cache.keys.is_some()
            && now - cache.fetched_at_ms < self.settings.jwks_cache_seconds as i64 * 1000;
        if fresh {
            if let Some(k) = cache.keys.as_ref().and_then(|s| s.find(kid)) {
                return Ok(Some(k.clone()));
            }
        }
        let may_fetch = !fresh
            || cache
                .last_attempt_ms
                .is_none_or(|t| now - t >= MIN_REFETCH_MS);
        if may_fetch {
            cache.last_attempt_ms = Some(now);
            match self.fetch().await {
                Ok(set) => {
                    cache.keys = Some(set);
                    cache.fetched_at_ms = now;
                }
                // Stale keys beat none while the provider is unreachable.
                Err(e) if cache.keys.is_none() => return Err(e),
                Err(e) => tracing::warn!(error = %e, "cannot refresh the identity provider's keys"),
            }
        }
        Ok(cache.keys.as_ref().and_then(|s| s.find(kid)).cloned())
    }

    /// Verifies an ID token. `Unauthenticated` says why a token was refused.
    pub async fn verify(&self, token: &str) -> Result<Identity, PeopleError> {
        let bad = |why: String| PeopleError::Unauthenticated(format!("ID token refused: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|e| bad(e.to_string()))?;
        if !ALLOWED.contains(&header.alg) {
            return Err(bad(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| bad("no key id (kid)".into()))?;
        let jwk = self
            .key(&kid)
            .await?
            .ok_or_else(|| bad(format!("unknown signing key {kid:?}")))?;
        if let Some(key_alg) = jwk.common.key_algorithm {
            if format!("{key_alg:?}") != format!("{:?}", header.alg) {
                return Err(bad("the token's algorithm is not its key's".into()));
            }
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| bad(format!("signing key: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[self.settings.issuer.as_str()]);
        validation.set_audience(&[self.settings.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.settings.leeway_seconds;
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| bad(e.to_string()))?;
        let c = data.claims;
        if c.sub.trim().is_empty() {
            return Err(bad("empty subject".into()));
        }
        Ok(Identity {
            issuer: c.iss,
            subject: c.sub,
            email: c.email.map(|e| e.trim().to_lowercase()),
            email_verified: c.email_verified.unwrap_or(false),
        })
    }
}

/// Signs a person in with an ID token; opens a session.
pub async fn sign_in(
    store: &Store,
    people: &PeopleState,
    id_token: &str,
    ip: Option<IpAddr>,
) -> Result<NewSession, PeopleError> {
    let Some(verifier) = &people.oidc else {
        return Err(PeopleError::NotFound(
            "single sign-on is not configured on this appliance".into(),
        ));
    };
    if let Some(ip) = ip {
        if let Err(retry_after_s) = people.ip_limiter.check(ip) {
            return Err(PeopleError::Throttled { retry_after_s });
        }
    }
    let identity = match verifier.verify(id_token.trim()).await {
        Ok(i) => i,
        Err(e) => {
            if let (Some(ip), PeopleError::Unauthenticated(_)) = (ip, &e) {
                people.ip_limiter.failed(ip);
            }
            tracing::warn!(?ip, error = %e, "OIDC sign-in failed");
            let entry = AuditEntry::new(
                Actor::anonymous("id token", ip),
                "auth.sign_in_failed",
                "oidc",
            )
            .detail(serde_json::json!({"method": "oidc", "reason": e.to_string()}));
            audit::record_now(store, entry).await?;
            return Err(e);
        }
    };
    let link_key = identity.link_key();
    let linked = store.read(|r| r.operator().get(&OIDC_LINKS, link_key.as_bytes()))?;
    let (tenant, user_id) = match linked {
        Some(link) => (link.tenant, link.user),
        None => match link_by_email(store, &identity).await {
            Ok(found) => found,
            Err(e) => {
                let entry = AuditEntry::new(
                    Actor::anonymous(
                        identity.email.clone().unwrap_or_else(|| link_key.clone()),
                        ip,
                    ),
                    "auth.sign_in_refused",
                    "oidc",
                )
                .detail(serde_json::json!({"method": "oidc", "reason": e.to_string()}));
                audit::record_now(store, entry).await?;
                return Err(e);
            }
        },
    };
    let (user, status) = store.read(|r| {
        Ok((
            r.tenant(tenant).get(&USERS, user_id.as_bytes())?,
            r.operator()
                .get(&TENANTS, tenant.as_bytes())?
                .map(|t| t.status),
        ))
    })?;
    let Some(user) = user else {
        return Err(PeopleError::Forbidden(
            "no account for this identity".into(),
        ));
    };
    let subject = Subject::User {
        tenant,
        user: user_id,
    };
    let actor = actor_for(&subject, user_id.to_string(), &user.email, ip);
    let refused = if user.status == UserStatus::Disabled {
        Some(PeopleError::Forbidden("this account is disabled".into()))
    } else if status != Some(TenantStatus::Active) {
        Some(PeopleError::TenantSuspended)
    } else {
        None
    };
    if let Some(refused) = refused {
        let entry = AuditEntry::new(actor, "auth.sign_in_refused", format!("user {user_id}"))
            .tenant(tenant)
            .detail(serde_json::json!({"method": "oidc", "reason": refused.code()}));
        audit::record_now(store, entry).await?;
        return Err(refused);
    }
    if let Some(ip) = ip {
        people.ip_limiter.succeeded(ip);
    }
    open_session(store, people, subject, actor, "oidc", None).await
}

/// First sign-in of an identity: find the user by the verified email and link them.
async fn link_by_email(
    store: &Store,
    identity: &Identity,
) -> Result<(TenantId, UserId), PeopleError> {
    let no_account = || {
        PeopleError::Forbidden(
            "no account for this identity; ask your admin for an invitation".into(),
        )
    };
    let email = match (&identity.email, identity.email_verified) {
        (Some(e), true) => e.clone(),
        (Some(_), false) => {
            return Err(PeopleError::Forbidden(
                "the identity provider has not verified this email address".into(),
            ))
        }
        (None, _) => return Err(no_account()),
    };
    let link_key = identity.link_key();
    store
        .write(move |ctx| {
            let (tenant, user) = match ctx.operator().get(&LOGINS, email.as_bytes())? {
                Some(LoginRef::User { tenant, user }) => (tenant, user),
                Some(LoginRef::Operator { .. }) => {
                    return Err(PeopleError::Forbidden(
                        "operators sign in with their password".into(),
                    )
                    .reject())
                }
                None => return Err(no_account().reject()),
            };
            let mut t = ctx.tenant(tenant);
            let Some(mut u) = t.get(&USERS, user.as_bytes())? else {
                return Err(no_account().reject());
            };
            if u.oidc_subject.as_deref().is_some_and(|s| s != link_key) {
                return Err(PeopleError::Forbidden(
                    "this account is linked to another identity".into(),
                )
                .reject());
            }
            u.oidc_subject = Some(link_key.clone());
            t.put(&USERS, user.as_bytes(), &u)?;
            ctx.operator()
                .put(&OIDC_LINKS, link_key.as_bytes(), &OidcLink { tenant, user })?;
            Ok((tenant, user))
        })
        .await
        .map_err(PeopleError::unreject)
}
