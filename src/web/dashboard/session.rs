//! Who is looking at the dashboard: the `Viewer` extractor, the TEMPORARY sign-in, and CSRF.
//!
//! Two ways in. People with a user account sign in with their email and password (the people
//! service's session and its CSRF token; the role and outlets are theirs). The operator, until
//! operator accounts have a dashboard of their own, signs in with the operator token and chooses
//! the tenant, a role (admin, agent, viewer), a display name and an optional outlet; those
//! sessions are kept in memory (a restart signs them out) and sent as a Secure (on https),
//! HttpOnly, SameSite=Strict cookie. Every tenant, role and outlet check of the dashboard (pages,
//! actions and the live channel) goes through `Viewer`; every POST carries the CSRF token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use rand::RngCore;
use sha2::Digest;

use super::error::DashError;
use crate::storage::{OutletId, TenantId};
use crate::web::AppState;

pub const SESSION_COOKIE: &str = "wacrm_session";
pub const SIGNIN_COOKIE: &str = "wacrm_signin";
/// A session unused for this long is signed out.
const IDLE_LIMIT: Duration = Duration::from_secs(12 * 3600);

/// What a signed-in person may do, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads conversations.
    Viewer,
    /// Works conversations: takes over, replies, hands back, assigns, labels, closes.
    Agent,
    /// Also manages outlets, channels, canned responses; plays customers in the simulator.
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
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Role::Viewer),
            "agent" => Some(Role::Agent),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The signed-in person of a request.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub tenant: TenantId,
    pub tenant_slug: String,
    pub tenant_name: String,
    pub time_zone: String,
    pub role: Role,
    /// Outlets this person works for; empty means all of the tenant's.
    pub outlets: Vec<OutletId>,
    pub name: String,
    /// The people service's user id of a person signed in with an account: who routing assigns
    /// conversations to and whose presence the header sets. None for the operator's sessions,
    /// which act on conversations but are nobody's agent.
    pub user: Option<String>,
    /// The group's operator (all tenants, plans). The temporary sign-in takes the operator
    /// token, so every session it makes is the operator's.
    pub operator: bool,
    pub csrf: String,
    /// Identifies this session (for presence), never the cookie's secret.
    pub session_id: u64,
}

impl Viewer {
    pub fn can_act(&self) -> bool {
        self.role >= Role::Agent
    }
    pub fn is_admin(&self) -> bool {
        self.role >= Role::Admin
    }
    /// Whether this person may see a conversation of `outlet` (None: not tied to an outlet, which
    /// only people of all outlets see).
    pub fn covers_outlet(&self, outlet: Option<OutletId>) -> bool {
        self.outlets.is_empty() || outlet.is_some_and(|o| self.outlets.contains(&o))
    }
    pub fn require_agent(&self) -> Result<(), DashError> {
        if self.can_act() {
            Ok(())
        } else {
            Err(DashError::Forbidden(
                "viewers can read conversations but not act on them".into(),
            ))
        }
    }
    pub fn require_operator(&self) -> Result<(), DashError> {
        if self.operator {
            Ok(())
        } else {
            Err(DashError::Forbidden("this page is for the operator".into()))
        }
    }
    pub fn require_admin(&self) -> Result<(), DashError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(DashError::Forbidden("this page is for admins".into()))
        }
    }
    /// Who acted, for the audit log.
    pub fn actor(&self) -> crate::people::audit::Actor {
        match &self.user {
            Some(id) => crate::people::audit::Actor {
                kind: "user".into(),
                id: Some(id.clone()),
                label: self.name.clone(),
                ip: None,
            },
            None => crate::people::audit::Actor {
                kind: "operator".into(),
                id: None,
                label: format!("operator token (dashboard, as {})", self.name),
                ip: None,
            },
        }
    }
    /// Every state-changing form carries the session's token; a forged cross-site POST cannot.
    pub fn check_csrf(&self, token: &str) -> Result<(), DashError> {
        if constant_time_eq(token.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(DashError::Forbidden(
                "the form's security token is missing or stale; reload the page and try again"
                    .into(),
            ))
        }
    }
}

struct SessionEntry {
    viewer: Viewer,
    last_used: Instant,
}

/// In-memory sessions by cookie secret.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, SessionEntry>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Sessions {
    /// Starts a session for `viewer` (its csrf and id are filled in); returns the cookie secret.
    pub fn create(&self, mut viewer: Viewer) -> String {
        let secret = random_token();
        viewer.csrf = random_token();
        viewer.session_id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let mut map = lock(&self.map);
        map.retain(|_, s| s.last_used.elapsed() < IDLE_LIMIT);
        map.insert(
            secret.clone(),
            SessionEntry {
                viewer,
                last_used: Instant::now(),
            },
        );
        secret
    }

    pub fn get(&self, secret: &str) -> Option<Viewer> {
        let mut map = lock(&self.map);
        let entry = map.get_mut(secret)?;
        if entry.last_used.elapsed() >= IDLE_LIMIT {
            map.remove(secret);
            return None;
        }
        entry.last_used = Instant::now();
        Some(entry.viewer.clone())
    }

    pub fn remove(&self, secret: &str) {
        lock(&self.map).remove(secret);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

pub fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A Set-Cookie value; `Secure` when the dashboard is served over https.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if state.config.public_url().starts_with("https://") {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = DashError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, DashError> {
        if let Some(secret) = cookie_value(&parts.headers, SESSION_COOKIE) {
            if let Some(viewer) = state.dashboard.sessions.get(&secret) {
                // A tenant suspended or deleted since sign-in ends the session.
                return match crate::tenants::get_tenant(&state.store, viewer.tenant) {
                    Ok(Some(t)) if t.status == crate::tenants::TenantStatus::Active => Ok(viewer),
                    Ok(_) => {
                        state.dashboard.sessions.remove(&secret);
                        Err(DashError::SignIn)
                    }
                    Err(e) => Err(DashError::from(crate::web::ApiError::from(e))),
                };
            }
        }
        people_viewer(state, &parts.headers)?.ok_or(DashError::SignIn)
    }
}

/// A person signed in with a user account (the people service's session cookie). Their forms
/// carry the session's CSRF token as a field, since a form cannot send the API's header.
fn people_viewer(state: &AppState, headers: &HeaderMap) -> Result<Option<Viewer>, DashError> {
    use crate::web::auth::{MemberKind, Principal};
    let Some(token) = crate::people::sessions::token_from_cookies(headers) else {
        return Ok(None);
    };
    // As a read: the API's CSRF header is not what guards these pages (`check_csrf` is).
    let Ok(Some((Principal::Member(member), Some(_)))) =
        crate::web::auth::resolve(state, &axum::http::Method::GET, headers)
    else {
        return Ok(None);
    };
    let MemberKind::User { id, email } = &member.kind else {
        return Ok(None);
    };
    let Some(tenant) = crate::tenants::get_tenant(&state.store, member.tenant)?
        .filter(|t| t.status == crate::tenants::TenantStatus::Active)
    else {
        return Ok(None);
    };
    let role = match member.role {
        crate::people::Role::Viewer => Role::Viewer,
        crate::people::Role::Agent => Role::Agent,
        crate::people::Role::Admin => Role::Admin,
    };
    let digest = sha2::Sha256::digest(token.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    Ok(Some(Viewer {
        tenant: tenant.id,
        tenant_slug: tenant.slug,
        tenant_name: tenant.name,
        time_zone: tenant.time_zone,
        role,
        outlets: member.outlets.clone(),
        name: email.clone(),
        user: Some(id.to_string()),
        operator: false,
        csrf: crate::people::sessions::csrf_token(&token),
        // Marks this session's tabs for presence; the top bit keeps it apart from the
        // temporary sessions' small numbers.
        session_id: u64::from_be_bytes(first) | (1 << 63),
    }))
}

/// An optional viewer: pages that also work signed out (the sign-in page).
pub struct MaybeViewer(pub Option<Viewer>);

impl FromRequestParts<AppState> for MaybeViewer {
    type Rejection = DashError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, DashError> {
        match Viewer::from_request_parts(parts, state).await {
            Ok(v) => Ok(MaybeViewer(Some(v))),
            Err(DashError::SignIn) => Ok(MaybeViewer(None)),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn viewer(role: Role, outlets: Vec<OutletId>) -> Viewer {
        Viewer {
            tenant: TenantId::new(),
            tenant_slug: "acme".into(),
            tenant_name: "Acme".into(),
            time_zone: "UTC".into(),
            role,
            outlets,
            name: "Ana".into(),
            user: None,
            operator: false,
            csrf: String::new(),
            session_id: 0,
        }
    }

    #[test]
    fn roles_and_outlets_limit_what_a_viewer_may_do_and_see() {
        let o = OutletId::new();
        let v = viewer(Role::Viewer, vec![]);
        assert!(v.require_agent().is_err());
        assert!(v.covers_outlet(None) && v.covers_outlet(Some(o)));
        let a = viewer(Role::Agent, vec![o]);
        assert!(a.require_agent().is_ok() && a.require_admin().is_err());
        assert!(a.covers_outlet(Some(o)));
        assert!(!a.covers_outlet(Some(OutletId::new())));
        assert!(!a.covers_outlet(None));
    }

    #[test]
    fn sessions_issue_distinct_csrf_tokens_and_sign_out() {
        let sessions = Sessions::default();
        let s1 = sessions.create(viewer(Role::Admin, vec![]));
        let s2 = sessions.create(viewer(Role::Admin, vec![]));
        let (v1, v2) = (sessions.get(&s1).unwrap(), sessions.get(&s2).unwrap());
        assert_ne!(v1.csrf, v2.csrf);
        assert_ne!(v1.session_id, v2.session_id);
        assert!(v1.check_csrf(&v1.csrf).is_ok());
        assert!(v1.check_csrf(&v2.csrf).is_err());
        assert!(v1.check_csrf("").is_err());
        sessions.remove(&s1);
        assert!(sessions.get(&s1).is_none());
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; wacrm_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_value(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie_value(&h, "zzz"), None);
    }
}
