//! Server-side dashboard sessions. The browser holds a random token in a `__Host-` cookie
//! (Secure, HttpOnly, SameSite=Strict, Path=/); the server keeps only its SHA-256 with who it
//! belongs to and when it expires (idle and absolute limits).
//!
//! CSRF: every unsafe request (POST, PUT, PATCH, DELETE) authenticated by the cookie must carry
//! `X-CSRF-Token`, a value derived from the session token (SHA-256 with a purpose label) that the
//! sign-in answer and `GET /api/v1/auth/me` return to the dashboard's own script. Another site can
//! neither read the cookie nor that answer, so it cannot forge the header; SameSite=Strict is a
//! second, independent barrier. Bearer credentials (API keys, the operator token) are not sent by
//! browsers on their own and need no CSRF token.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::secret::{labelled_hash, new_token, token_hash};
use super::{AuthSettings, Clock};
use crate::storage::collections as tags;
use crate::storage::{
    GlobalCollection, OperatorId, Record, Store, StoreError, TenantId, UserId, WriteCtx,
};

pub const COOKIE_NAME: &str = "__Host-wacrm_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// `last_seen` is written at most this often (a write per request would be wasteful).
const TOUCH_EVERY_MS: i64 = 60_000;

/// Whose session it is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    Operator { operator: OperatorId },
    User { tenant: TenantId, user: UserId },
}

impl Subject {
    pub fn tenant(&self) -> Option<TenantId> {
        match self {
            Subject::Operator { .. } => None,
            Subject::User { tenant, .. } => Some(*tenant),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Session {
    pub subject: Subject,
    /// `password`, `oidc` or `invitation`.
    pub method: String,
    pub created_at_ms: i64,
    pub last_seen_ms: i64,
    pub expires_at_ms: i64,
    pub ip: Option<IpAddr>,
}

impl Record for Session {
    const VERSION: u16 = 1;
    const NAME: &'static str = "session";
}

pub const SESSIONS: GlobalCollection<Session> = GlobalCollection::new(tags::SESSIONS);

/// A session about to be created: the token goes to the browser once, the record to the store.
pub struct NewSession {
    pub token: String,
    pub key: [u8; 32],
    pub session: Session,
}

impl NewSession {
    pub fn new(
        settings: &AuthSettings,
        clock: &Clock,
        subject: Subject,
        method: &str,
        ip: Option<IpAddr>,
    ) -> Self {
        let now = clock.now_ms();
        let token = new_token("wss");
        let key = token_hash(&token);
        Self {
            token,
            key,
            session: Session {
                subject,
                method: method.into(),
                created_at_ms: now,
                last_seen_ms: now,
                expires_at_ms: now + settings.session_max_hours as i64 * 3_600_000,
                ip,
            },
        }
    }

    /// Stores the session in the caller's commit.
    pub fn put(&self, ctx: &mut WriteCtx<'_>) -> Result<(), StoreError> {
        ctx.operator().put(&SESSIONS, &self.key, &self.session)
    }

    pub fn csrf_token(&self) -> String {
        csrf_token(&self.token)
    }

    pub fn cookie(&self, settings: &AuthSettings) -> String {
        format!(
            "{COOKIE_NAME}={}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
            self.token,
            settings.session_max_hours * 3600
        )
    }
}

/// The cookie that makes the browser forget its session.
pub fn clearing_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

pub fn csrf_token(session_token: &str) -> String {
    hex::encode(labelled_hash("wacrm csrf", session_token))
}

/// The session token in a `Cookie` header, if any.
pub fn token_from_cookies(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A live session of `token`, or None if unknown or expired (idle or absolute).
pub fn find(
    store: &Store,
    settings: &AuthSettings,
    clock: &Clock,
    token: &str,
) -> Result<Option<([u8; 32], Session)>, StoreError> {
    let key = token_hash(token);
    let Some(session) = store.read(|r| r.operator().get(&SESSIONS, &key))? else {
        return Ok(None);
    };
    let now = clock.now_ms();
    let idle_ms = settings.session_idle_minutes as i64 * 60_000;
    if now >= session.expires_at_ms || now - session.last_seen_ms > idle_ms {
        return Ok(None);
    }
    Ok(Some((key, session)))
}

/// Records activity, at most once a minute, without holding up the request.
pub fn touch(store: &Store, clock: &Clock, key: [u8; 32], session: &Session) {
    let now = clock.now_ms();
    if now - session.last_seen_ms < TOUCH_EVERY_MS {
        return;
    }
    let store = store.clone();
    tokio::spawn(async move {
        let result = store
            .write(move |ctx| {
                let mut op = ctx.operator();
                if let Some(mut s) = op.get(&SESSIONS, &key)? {
                    s.last_seen_ms = s.last_seen_ms.max(now);
                    op.put(&SESSIONS, &key, &s)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot record session activity");
        }
    });
}

pub async fn delete(store: &Store, token: &str) -> Result<Option<Session>, StoreError> {
    let key = token_hash(token);
    store
        .write(move |ctx| {
            let mut op = ctx.operator();
            let found = op.get(&SESSIONS, &key)?;
            op.delete(&SESSIONS, &key)?;
            Ok(found)
        })
        .await
}

/// Removes every session matching `pred`, in the caller's commit. Returns how many.
pub fn delete_where(
    ctx: &mut WriteCtx<'_>,
    pred: impl Fn(&Session) -> bool,
) -> Result<u64, StoreError> {
    let mut op = ctx.operator();
    let doomed: Vec<Vec<u8>> = op
        .scan(&SESSIONS, &[], false, usize::MAX)?
        .into_iter()
        .filter(|(_, s)| pred(s))
        .map(|(k, _)| k)
        .collect();
    for k in &doomed {
        op.delete(&SESSIONS, k)?;
    }
    Ok(doomed.len() as u64)
}
