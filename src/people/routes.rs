//! JSON API of people and roles: sign-in and sessions, operator accounts, tenant users,
//! invitations, API keys, and the audit log.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::audit::{self, AuditEntry, AuditQuery};
use super::sessions::{self, NewSession};
use super::{apikeys, invitations, operators, signin, users, PeopleError, Role, User};
use crate::storage::{ApiKeyId, InvitationId, OutletId, TenantId, UserId};
use crate::web::auth::{Authorized, MemberKind, Principal, TenantCtx};
use crate::web::{Access, Api, ApiError, AppState};

pub fn api() -> Api {
    use Access::*;
    Api::new()
        .post("/api/v1/auth/sign-in", Public, sign_in)
        .post("/api/v1/auth/sign-out", Public, sign_out)
        .post("/api/v1/auth/oidc", Public, oidc_sign_in)
        .post("/api/v1/auth/invitations/accept", Public, accept_invitation)
        .get("/api/v1/auth/me", SignedIn, me)
        .get("/api/v1/operators", Operator, list_operators)
        .post("/api/v1/operators", Operator, create_operator)
        .get("/api/v1/audit", Operator, audit_all)
        .get(
            "/api/v1/tenants/{tenant}/audit",
            Tenant(Role::Admin),
            audit_tenant,
        )
        .get(
            "/api/v1/tenants/{tenant}/users",
            Tenant(Role::Admin),
            list_users,
        )
        .post("/api/v1/tenants/{tenant}/users", TenantPeople, create_user)
        .patch(
            "/api/v1/tenants/{tenant}/users/{user}",
            TenantPeople,
            update_user,
        )
        .delete(
            "/api/v1/tenants/{tenant}/users/{user}",
            TenantPeople,
            delete_user,
        )
        .get(
            "/api/v1/tenants/{tenant}/invitations",
            Tenant(Role::Admin),
            list_invitations,
        )
        .post(
            "/api/v1/tenants/{tenant}/invitations",
            TenantPeople,
            create_invitation,
        )
        .delete(
            "/api/v1/tenants/{tenant}/invitations/{invitation}",
            TenantPeople,
            revoke_invitation,
        )
        .get(
            "/api/v1/tenants/{tenant}/api-keys",
            Tenant(Role::Admin),
            list_api_keys,
        )
        .post(
            "/api/v1/tenants/{tenant}/api-keys",
            TenantPeople,
            create_api_key,
        )
        .delete(
            "/api/v1/tenants/{tenant}/api-keys/{key}",
            TenantPeople,
            revoke_api_key,
        )
}

impl From<PeopleError> for ApiError {
    fn from(e: PeopleError) -> Self {
        let status = match &e {
            PeopleError::Store(_) => {
                return match e {
                    PeopleError::Store(s) => s.into(),
                    _ => ApiError::internal_message("unreachable"),
                }
            }
            PeopleError::Hash(_) => return ApiError::internal_message(e),
            PeopleError::Invalid { .. } => StatusCode::BAD_REQUEST,
            PeopleError::NotFound(_) => StatusCode::NOT_FOUND,
            PeopleError::Conflict(_) => StatusCode::CONFLICT,
            PeopleError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            PeopleError::Forbidden(_) | PeopleError::TenantSuspended => StatusCode::FORBIDDEN,
            PeopleError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            PeopleError::Locked { .. } => StatusCode::LOCKED,
            PeopleError::IdentityProvider(_) => StatusCode::BAD_GATEWAY,
            PeopleError::Rejected { code, .. } => match *code {
                "not_found" => StatusCode::NOT_FOUND,
                "conflict" => StatusCode::CONFLICT,
                "invalid_credentials" => StatusCode::UNAUTHORIZED,
                "forbidden" | "tenant_suspended" => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            },
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

/// An error answer, with `Retry-After` when the caller must wait.
fn refusal(e: PeopleError) -> Response {
    let retry = match &e {
        PeopleError::Throttled { retry_after_s } | PeopleError::Locked { retry_after_s } => {
            Some(*retry_after_s)
        }
        _ => None,
    };
    let mut response = ApiError::from(e).into_response();
    if let Some(secs) = retry {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    response
}

/// Who the caller is, as the dashboard needs it.
#[derive(Debug, Serialize)]
pub struct Me {
    pub kind: &'static str,
    pub id: Option<String>,
    pub label: String,
    pub tenant: Option<TenantId>,
    pub tenant_slug: Option<String>,
    pub role: Option<Role>,
    pub outlets: Vec<OutletId>,
    /// For session callers: the value to send as `X-CSRF-Token` on unsafe requests.
    pub csrf_token: Option<String>,
}

fn me_of(state: &AppState, principal: &Principal, session_token: Option<&str>) -> Me {
    let csrf_token = session_token.map(sessions::csrf_token);
    match principal {
        Principal::Operator { account, label } => Me {
            kind: "operator",
            id: account.map(|a| a.to_string()),
            label: label.clone(),
            tenant: None,
            tenant_slug: None,
            role: None,
            outlets: Vec::new(),
            csrf_token,
        },
        Principal::Member(m) => {
            let (kind, id, label) = match &m.kind {
                MemberKind::User { id, email } => ("user", id.to_string(), email.clone()),
                MemberKind::ApiKey { id, name } => ("api_key", id.to_string(), name.clone()),
            };
            let slug = crate::tenants::get_tenant(&state.store, m.tenant)
                .ok()
                .flatten()
                .map(|t| t.slug);
            Me {
                kind,
                id: Some(id),
                label,
                tenant: Some(m.tenant),
                tenant_slug: slug,
                role: Some(m.role),
                outlets: m.outlets.clone(),
                csrf_token,
            }
        }
    }
}

/// The answer to a successful sign-in: the session cookie and who signed in.
fn signed_in(state: &AppState, session: NewSession) -> Response {
    let principal = match crate::web::auth::resolve_session_subject(state, &session.session) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let body = json!({
        "principal": me_of(state, &principal, Some(&session.token)),
        "csrf_token": session.csrf_token(),
        "expires_at_ms": session.session.expires_at_ms,
    });
    let mut response = (StatusCode::OK, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&session.cookie(&state.people.settings)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn sign_in(
    State(state): State<AppState>,
    auth: Authorized,
    body: Result<Json<signin::Credentials>, JsonRejection>,
) -> Response {
    let Json(credentials) = match body {
        Ok(b) => b,
        Err(r) => return ApiError::from(r).into_response(),
    };
    match signin::sign_in(&state.store, &state.people, credentials, auth.ip).await {
        Ok(session) => signed_in(&state, session),
        Err(e) => refusal(e),
    }
}

#[derive(Deserialize)]
struct IdTokenBody {
    id_token: String,
}

async fn oidc_sign_in(
    State(state): State<AppState>,
    auth: Authorized,
    body: Result<Json<IdTokenBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(r) => return ApiError::from(r).into_response(),
    };
    match super::oidc::sign_in(&state.store, &state.people, &body.id_token, auth.ip).await {
        Ok(session) => signed_in(&state, session),
        Err(e) => refusal(e),
    }
}

async fn accept_invitation(
    State(state): State<AppState>,
    auth: Authorized,
    body: Result<Json<invitations::Acceptance>, JsonRejection>,
) -> Response {
    let Json(acceptance) = match body {
        Ok(b) => b,
        Err(r) => return ApiError::from(r).into_response(),
    };
    let accepted = invitations::accept(&state.store, &state.people, acceptance, auth.ip).await;
    let (tenant, user) = match accepted {
        Ok(x) => x,
        Err(e) => return refusal(e),
    };
    let subject = sessions::Subject::User {
        tenant,
        user: user.id,
    };
    let actor = signin::actor_for(&subject, user.id.to_string(), &user.email, auth.ip);
    match signin::open_session(
        &state.store,
        &state.people,
        subject,
        actor,
        "invitation",
        None,
    )
    .await
    {
        Ok(session) => signed_in(&state, session),
        Err(e) => refusal(e),
    }
}

/// Ends the session of the cookie (if it is one, and the CSRF token matches) and clears the cookie.
async fn sign_out(
    State(state): State<AppState>,
    auth: Authorized,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = sessions::token_from_cookies(&headers) {
        let csrf_ok = auth.session_token.as_deref() == Some(token.as_str());
        if csrf_ok {
            if let Some(session) = sessions::delete(&state.store, &token).await? {
                let entry = AuditEntry::new(auth.actor(), "auth.sign_out", "session");
                let entry = match session.subject.tenant() {
                    Some(t) => entry.tenant(t),
                    None => entry,
                };
                audit::record_now(&state.store, entry).await?;
            }
        } else if sessions::find(
            &state.store,
            &state.people.settings,
            &state.people.clock,
            &token,
        )?
        .is_some()
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                "missing or wrong X-CSRF-Token for this session",
            ));
        }
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&sessions::clearing_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

async fn me(State(state): State<AppState>, auth: Authorized) -> Result<Json<Me>, ApiError> {
    let principal = auth
        .principal
        .as_ref()
        .ok_or_else(|| ApiError::unauthorized("credentials required"))?;
    Ok(Json(me_of(
        &state,
        principal,
        auth.session_token.as_deref(),
    )))
}

#[derive(Deserialize)]
struct NewOperator {
    email: String,
    name: String,
    /// Absent: one is generated and returned once.
    #[serde(default)]
    password: Option<String>,
}

async fn list_operators(
    State(state): State<AppState>,
) -> Result<Json<Vec<operators::OperatorView>>, ApiError> {
    Ok(Json(
        operators::list(&state.store)?
            .iter()
            .map(operators::OperatorView::from)
            .collect(),
    ))
}

async fn create_operator(
    State(state): State<AppState>,
    auth: Authorized,
    body: Result<Json<NewOperator>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(new) = body?;
    let (password, generated) = match new.password {
        Some(p) => (p, None),
        None => {
            let p = super::password::generate();
            (p.clone(), Some(p))
        }
    };
    let account = operators::create(
        &state.store,
        &state.people,
        &new.email,
        &new.name,
        password,
        auth.actor(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "operator": operators::OperatorView::from(&account),
            "generated_password": generated,
        })),
    ))
}

async fn audit_all(
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    Ok(Json(audit::list_all(&state.store, &q)?))
}

async fn audit_tenant(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    Ok(Json(audit::list_tenant(&state.store, ctx.id(), &q)?))
}

/// A user as shown: never the password hash.
#[derive(Debug, Serialize)]
pub struct UserView {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub outlets: Vec<OutletId>,
    pub status: super::UserStatus,
    pub has_password: bool,
    pub sso_linked: bool,
    pub created_at_ms: i64,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            email: u.email,
            name: u.name,
            role: u.role,
            outlets: u.outlets,
            status: u.status,
            has_password: u.password_hash.is_some(),
            sso_linked: u.oidc_subject.is_some(),
            created_at_ms: u.created_at_ms,
        }
    }
}

fn parse_id<T: std::str::FromStr>(field: &'static str, s: &str) -> Result<T, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request("invalid_input", format!("{field}: not an id")))
}

async fn list_users(
    State(state): State<AppState>,
    ctx: TenantCtx,
) -> Result<Json<Vec<UserView>>, ApiError> {
    Ok(Json(
        users::list(&state.store, ctx.id())?
            .into_iter()
            .map(UserView::from)
            .collect(),
    ))
}

async fn create_user(
    State(state): State<AppState>,
    ctx: TenantCtx,
    body: Result<Json<users::NewUser>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(new) = body?;
    let (user, generated) =
        users::create(&state.store, &state.people, ctx.id(), new, ctx.actor()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"user": UserView::from(user), "generated_password": generated})),
    ))
}

async fn update_user(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, user)): Path<(String, String)>,
    body: Result<Json<users::UserChange>, JsonRejection>,
) -> Result<Json<UserView>, ApiError> {
    let Json(change) = body?;
    let id: UserId = parse_id("user", &user)?;
    let user = users::update(&state.store, ctx.id(), id, change, ctx.actor()).await?;
    Ok(Json(user.into()))
}

async fn delete_user(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, user)): Path<(String, String)>,
) -> Result<Json<UserView>, ApiError> {
    let id: UserId = parse_id("user", &user)?;
    let user = users::delete(&state.store, ctx.id(), id, ctx.actor()).await?;
    Ok(Json(user.into()))
}

async fn list_invitations(
    State(state): State<AppState>,
    ctx: TenantCtx,
) -> Result<Json<Vec<invitations::Invitation>>, ApiError> {
    Ok(Json(invitations::list(&state.store, ctx.id())?))
}

async fn create_invitation(
    State(state): State<AppState>,
    ctx: TenantCtx,
    body: Result<Json<invitations::NewInvitation>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(new) = body?;
    let (token, invitation) =
        invitations::create(&state.store, &state.people, ctx.id(), new, ctx.actor()).await?;
    let link = invitations::link(&state.config.public_url(), &token);
    Ok((
        StatusCode::CREATED,
        Json(json!({"invitation": invitation, "token": token, "link": link})),
    ))
}

async fn revoke_invitation(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, invitation)): Path<(String, String)>,
) -> Result<Json<invitations::Invitation>, ApiError> {
    let id: InvitationId = parse_id("invitation", &invitation)?;
    Ok(Json(
        invitations::revoke(&state.store, ctx.id(), id, ctx.actor()).await?,
    ))
}

async fn list_api_keys(
    State(state): State<AppState>,
    ctx: TenantCtx,
) -> Result<Json<Vec<apikeys::ApiKey>>, ApiError> {
    Ok(Json(apikeys::list(&state.store, ctx.id())?))
}

async fn create_api_key(
    State(state): State<AppState>,
    ctx: TenantCtx,
    body: Result<Json<apikeys::NewApiKey>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(new) = body?;
    let (secret, key) = apikeys::create(
        &state.store,
        &state.people.clock,
        ctx.id(),
        new,
        ctx.actor(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"api_key": key, "secret": secret})),
    ))
}

async fn revoke_api_key(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((_, key)): Path<(String, String)>,
) -> Result<Json<apikeys::ApiKey>, ApiError> {
    let id: ApiKeyId = parse_id("key", &key)?;
    Ok(Json(
        apikeys::revoke(&state.store, &state.people.clock, ctx.id(), id, ctx.actor()).await?,
    ))
}
