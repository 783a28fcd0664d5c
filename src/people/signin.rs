//! Signing in with an email and a password, slowed and then locked out on repeated failures.
//!
//! Two limits apply. Per client address, an in-memory count of failures (see `limiter`). Per
//! sign-in name, a durable counter (it survives restarts): after `free_failures` failures each
//! attempt must wait a delay that doubles with every further failure, and at `lock_after_failures`
//! the name is locked for `lock_minutes`. Attempts refused by either limit never reach the
//! password check, so they cannot be used to guess. Names that have no account are counted the
//! same way and cost the same hashing time, so neither the answers nor their timing tell which
//! emails have accounts. Every failure is logged and audited; the lock is audited too.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::audit::{self, Actor, AuditEntry};
use super::secret::labelled_hash;
use super::sessions::{NewSession, Subject};
use super::{
    normalize_email, LoginRef, PeopleError, PeopleState, SignInSettings, UserStatus, LOGINS,
    OPERATORS, USERS,
};
use crate::storage::collections as tags;
use crate::storage::{GlobalCollection, Record, Store, StoreError, TenantId};
use crate::tenants::{TenantStatus, TENANTS};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Lockout {
    /// Failures since the last success (or the end of the last lock).
    pub failures: u32,
    pub last_failure_ms: i64,
    pub locked_until_ms: Option<i64>,
}

impl Record for Lockout {
    const VERSION: u16 = 1;
    const NAME: &'static str = "sign-in lockout";
}

pub const LOCKOUTS: GlobalCollection<Lockout> = GlobalCollection::new(tags::SIGN_IN_LOCKOUTS);

pub fn lockout_key(email: &str) -> [u8; 32] {
    labelled_hash("wacrm sign-in", email)
}

/// Why an attempt may not be made now, if it may not.
fn refusal(s: &SignInSettings, l: &Lockout, now: i64) -> Option<PeopleError> {
    let secs = |ms: i64| (ms.max(1) as u64).div_ceil(1000);
    if let Some(until) = l.locked_until_ms {
        if now < until {
            return Some(PeopleError::Locked {
                retry_after_s: secs(until - now),
            });
        }
    }
    if l.failures >= s.free_failures {
        let doublings = (l.failures - s.free_failures).min(30);
        let delay = s
            .base_delay_ms
            .saturating_mul(1u64 << doublings)
            .min(s.max_delay_ms) as i64;
        let next = l.last_failure_ms + delay;
        if now < next {
            return Some(PeopleError::Throttled {
                retry_after_s: secs(next - now),
            });
        }
    }
    None
}

/// Who a sign-in name belongs to, with what the password check and the session need.
struct Account {
    subject: Subject,
    password_hash: Option<String>,
    actor_id: String,
    disabled: bool,
    tenant_status: Option<TenantStatus>,
}

fn find_account(store: &Store, email: &str) -> Result<Option<Account>, StoreError> {
    store.read(|r| {
        let op = r.operator();
        match op.get(&LOGINS, email.as_bytes())? {
            Some(LoginRef::Operator { operator }) => {
                Ok(op.get(&OPERATORS, operator.as_bytes())?.map(|o| Account {
                    subject: Subject::Operator { operator },
                    password_hash: Some(o.password_hash),
                    actor_id: operator.to_string(),
                    disabled: false,
                    tenant_status: None,
                }))
            }
            Some(LoginRef::User { tenant, user }) => {
                let status = op.get(&TENANTS, tenant.as_bytes())?.map(|t| t.status);
                Ok(r.tenant(tenant)
                    .get(&USERS, user.as_bytes())?
                    .map(|u| Account {
                        subject: Subject::User { tenant, user },
                        password_hash: u.password_hash,
                        actor_id: user.to_string(),
                        disabled: u.status == UserStatus::Disabled,
                        tenant_status: status,
                    }))
            }
            None => Ok(None),
        }
    })
}

pub fn actor_for(subject: &Subject, id: String, email: &str, ip: Option<IpAddr>) -> Actor {
    Actor {
        kind: match subject {
            Subject::Operator { .. } => "operator",
            Subject::User { .. } => "user",
        }
        .into(),
        id: Some(id),
        label: email.into(),
        ip,
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

/// Checks the password and opens a session. Errors: `Throttled` and `Locked` (wait),
/// `Unauthenticated` (wrong email or password; nothing more is said), `TenantSuspended`, `Forbidden`.
pub async fn sign_in(
    store: &Store,
    people: &PeopleState,
    credentials: Credentials,
    ip: Option<IpAddr>,
) -> Result<NewSession, PeopleError> {
    if let Some(ip) = ip {
        if let Err(retry_after_s) = people.ip_limiter.check(ip) {
            tracing::warn!(%ip, "sign-in refused: too many failures from this address");
            return Err(PeopleError::Throttled { retry_after_s });
        }
    }
    let wrong = || PeopleError::Unauthenticated("wrong email or password".into());
    // A malformed name is a failure like any other, counted under what was typed.
    let email = normalize_email(&credentials.email)
        .unwrap_or_else(|_| credentials.email.trim().to_lowercase());
    let key = lockout_key(&email);
    // The attempt is counted before the password is checked (and forgiven on success), in one
    // commit with the check of the limits, so parallel attempts cannot slip past them.
    let admitted = admit(store, people, key).await?;
    let attempt = match admitted {
        Ok(attempt) => attempt,
        Err(refused) => {
            tracing::warn!(?ip, "sign-in refused: {refused}");
            return Err(refused);
        }
    };
    let account = find_account(store, &email)?;
    let hash = account.as_ref().and_then(|a| a.password_hash.clone());
    let ok = people
        .hasher
        .verify_blocking(credentials.password, hash)
        .await;
    let Some(account) = account.filter(|_| ok) else {
        record_failure(store, people, &email, attempt, ip).await?;
        return Err(wrong());
    };
    if let Some(ip) = ip {
        people.ip_limiter.succeeded(ip);
    }
    let actor = actor_for(&account.subject, account.actor_id.clone(), &email, ip);
    let refused = if account.disabled {
        Some(PeopleError::Forbidden("this account is disabled".into()))
    } else if account.subject.tenant().is_some()
        && account.tenant_status != Some(TenantStatus::Active)
    {
        Some(PeopleError::TenantSuspended)
    } else {
        None
    };
    if let Some(refused) = refused {
        let entry = AuditEntry::new(actor, "auth.sign_in_refused", format!("login {email}"))
            .detail(serde_json::json!({"reason": refused.code()}));
        let entry = match account.subject.tenant() {
            Some(t) => entry.tenant(t),
            None => entry,
        };
        audit::record_now(store, entry).await?;
        return Err(refused);
    }
    open_session(store, people, account.subject, actor, "password", Some(key)).await
}

/// Checks the limits of a sign-in name and, if an attempt may be made, counts it as a failure
/// (forgiven if the password turns out right). Ok(Err(..)): refused, nothing counted.
async fn admit(
    store: &Store,
    people: &PeopleState,
    key: [u8; 32],
) -> Result<Result<Lockout, PeopleError>, PeopleError> {
    let now = people.clock.now_ms();
    let settings = people.settings.sign_in.clone();
    Ok(store
        .write(move |ctx| {
            let mut op = ctx.operator();
            let mut l = op.get(&LOCKOUTS, &key)?.unwrap_or_default();
            if let Some(refused) = refusal(&settings, &l, now) {
                return Ok(Err(refused));
            }
            if l.locked_until_ms.is_some() {
                // The lock ran out: count afresh.
                l = Lockout::default();
            }
            l.failures += 1;
            l.last_failure_ms = now;
            if l.failures >= settings.lock_after_failures {
                l.locked_until_ms = Some(now + settings.lock_minutes as i64 * 60_000);
            }
            op.put(&LOCKOUTS, &key, &l)?;
            Ok(Ok(l))
        })
        .await?)
}

/// Logs and audits a failed attempt (already counted by `admit`), and the lock it caused.
async fn record_failure(
    store: &Store,
    people: &PeopleState,
    email: &str,
    attempt: Lockout,
    ip: Option<IpAddr>,
) -> Result<(), PeopleError> {
    if let Some(ip) = ip {
        people.ip_limiter.failed(ip);
    }
    let email = email.to_string();
    let failures = attempt.failures;
    let locked = attempt.locked_until_ms.is_some();
    store
        .write(move |ctx| {
            // Whose log: the tenant's if the name is one of its users', else the global one.
            let tenant: Option<TenantId> = ctx
                .operator()
                .get(&LOGINS, email.as_bytes())?
                .and_then(|r| r.tenant());
            let actor = Actor::anonymous(email.clone(), ip);
            let at = attempt.last_failure_ms;
            let mut entries = vec![AuditEntry::new(
                actor.clone(),
                "auth.sign_in_failed",
                format!("login {email}"),
            )
            .at(at)
            .detail(serde_json::json!({"failures": failures}))];
            if locked {
                entries.push(
                    AuditEntry::new(actor, "auth.locked", format!("login {email}"))
                        .at(at)
                        .detail(serde_json::json!({"failures": failures, "locked_until_ms": attempt.locked_until_ms})),
                );
            }
            for e in entries {
                let e = match tenant {
                    Some(t) => e.tenant(t),
                    None => e,
                };
                audit::record(ctx, &e)?;
            }
            Ok(())
        })
        .await?;
    tracing::warn!(?ip, failures, locked, "sign-in failed");
    Ok(())
}

/// Opens a session for an authenticated person: stores it, clears their failure count, audits.
pub async fn open_session(
    store: &Store,
    people: &PeopleState,
    subject: Subject,
    actor: Actor,
    method: &str,
    lockout: Option<[u8; 32]>,
) -> Result<NewSession, PeopleError> {
    let session = NewSession::new(&people.settings, &people.clock, subject, method, actor.ip);
    let record = NewSession {
        token: String::new(),
        key: session.key,
        session: session.session.clone(),
    };
    let method = method.to_string();
    let now = people.clock.now_ms();
    let idle_ms = people.settings.session_idle_minutes as i64 * 60_000;
    let stale_lockout_ms = (people.settings.sign_in.lock_minutes as i64 * 60_000).max(86_400_000);
    store
        .write(move |ctx| {
            // Housekeeping while we write anyway: sessions that can no longer be used, and failure
            // counters nobody has added to for a day (and that lock nothing).
            super::sessions::delete_where(ctx, |s| {
                now >= s.expires_at_ms || now - s.last_seen_ms > idle_ms
            })?;
            let mut op = ctx.operator();
            let stale: Vec<Vec<u8>> = op
                .scan(&LOCKOUTS, &[], false, usize::MAX)?
                .into_iter()
                .filter(|(_, l)| {
                    now - l.last_failure_ms > stale_lockout_ms
                        && l.locked_until_ms.is_none_or(|until| until <= now)
                })
                .map(|(k, _)| k)
                .collect();
            for k in stale {
                op.delete(&LOCKOUTS, &k)?;
            }
            record.put(ctx)?;
            if let Some(key) = lockout {
                ctx.operator().delete(&LOCKOUTS, &key)?;
            }
            let entry = AuditEntry::new(
                actor.clone(),
                "auth.sign_in",
                format!("{} {}", actor.kind, actor.id.clone().unwrap_or_default()),
            )
            .detail(serde_json::json!({"method": method}));
            let entry = match subject.tenant() {
                Some(t) => entry.tenant(t),
                None => entry,
            };
            audit::record(ctx, &entry)
        })
        .await?;
    Ok(session)
}
