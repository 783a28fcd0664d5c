//! Users and roles (admins): the tenant's people with their role, outlets, status and last
//! sign-in; invitations (the link shown once, with its expiry); role and outlet changes,
//! disabling and enabling, revoking invitations. Every change goes through the people service's
//! functions, the ones the JSON API uses, so their rules (the last active admin stays an admin,
//! an email has one account) and audit entries hold here too.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::audit::{stamp, Acting};
use super::forms::{id_field, refusal, AdminForm, Fields};
use super::pages::{html, Nav};
use super::session::Viewer;
use super::DashError;
use crate::people::audit::{self as people_audit, AuditQuery};
use crate::people::invitations::{self, NewInvitation};
use crate::people::users::{self, UserChange};
use crate::people::{Role, UserStatus};
use crate::storage::{InvitationId, OutletId, UserId};
use crate::web::{Access, Api, AppState};

pub fn api() -> Api {
    use Access::Page;
    Api::new()
        .get("/dash/admin/users", Page, page)
        .post("/dash/admin/users/invite", Page, invite)
        .post("/dash/admin/users/change", Page, change)
        .post("/dash/admin/users/status", Page, set_status)
        .post("/dash/admin/users/revoke", Page, revoke)
}

pub struct OutletChoice {
    pub id: String,
    pub name: String,
    pub checked: bool,
}

pub struct PersonRow {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: &'static str,
    pub roles: Vec<(&'static str, bool)>,
    pub outlets: String,
    pub choices: Vec<OutletChoice>,
    pub active: bool,
    pub last_sign_in: String,
    pub is_me: bool,
}

pub struct InvitationRow {
    pub id: String,
    pub email: String,
    pub role: &'static str,
    pub outlets: String,
    pub invited_by: String,
    pub expires: String,
    pub expired: bool,
}

/// A new invitation's link: shown on the page that created it, and never again.
pub struct NewLink {
    pub email: String,
    pub link: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    nav: Nav,
    people: Vec<PersonRow>,
    invitations: Vec<InvitationRow>,
    outlets: Vec<OutletChoice>,
    created: Option<NewLink>,
}

const ROLES: [Role; 3] = [Role::Admin, Role::Agent, Role::Viewer];

fn outlet_names(ids: &[OutletId], names: &HashMap<OutletId, String>) -> String {
    if ids.is_empty() {
        return "All outlets".into();
    }
    ids.iter()
        .map(|o| names.get(o).cloned().unwrap_or_else(|| o.to_string()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// When each person last signed in, from the tenant's audit log (newest first).
fn last_sign_ins(state: &AppState, viewer: &Viewer) -> Result<HashMap<String, i64>, DashError> {
    let q = AuditQuery {
        action: Some("auth.sign_in".into()),
        since_ms: 0,
        limit: 10_000,
    };
    let mut last = HashMap::new();
    for e in people_audit::list_tenant(&state.store, viewer.tenant, &q)? {
        if e.action == "auth.sign_in" && e.actor.kind == "user" {
            if let Some(id) = e.actor.id {
                last.entry(id).or_insert(e.at_ms);
            }
        }
    }
    Ok(last)
}

async fn render(
    state: &AppState,
    viewer: &Viewer,
    created: Option<NewLink>,
    flash: Option<(StatusCode, String)>,
) -> Result<Response, DashError> {
    let tz = viewer.time_zone.as_str();
    let outlets = crate::tenants::list_outlets(&state.store, viewer.tenant)?;
    let names: HashMap<OutletId, String> = outlets.iter().map(|o| (o.id, o.name.clone())).collect();
    let choices = |chosen: &[OutletId]| -> Vec<OutletChoice> {
        outlets
            .iter()
            .map(|o| OutletChoice {
                id: o.id.to_string(),
                name: o.name.clone(),
                checked: chosen.contains(&o.id),
            })
            .collect()
    };
    let last = last_sign_ins(state, viewer)?;
    let mut people: Vec<PersonRow> = users::list(&state.store, viewer.tenant)?
        .into_iter()
        .map(|u| PersonRow {
            id: u.id.to_string(),
            role: u.role.as_str(),
            roles: ROLES.iter().map(|r| (r.as_str(), *r == u.role)).collect(),
            outlets: outlet_names(&u.outlets, &names),
            choices: choices(&u.outlets),
            active: u.status == UserStatus::Active,
            last_sign_in: last
                .get(&u.id.to_string())
                .map(|ms| stamp(*ms, tz))
                .unwrap_or_else(|| "never".into()),
            is_me: !viewer.operator && viewer.name == u.email,
            name: u.name,
            email: u.email,
        })
        .collect();
    people.sort_by(|a, b| a.email.cmp(&b.email));
    let now = state.people.clock.now_ms();
    let invitations = invitations::list(&state.store, viewer.tenant)?
        .into_iter()
        .map(|i| InvitationRow {
            id: i.id.to_string(),
            email: i.email,
            role: i.role.as_str(),
            outlets: outlet_names(&i.outlets, &names),
            invited_by: i.invited_by,
            expires: stamp(i.expires_at_ms, tz),
            expired: now >= i.expires_at_ms,
        })
        .collect();
    let mut nav = Nav::new(state, viewer, "users")?;
    let status = match flash {
        Some((status, message)) => {
            nav.flash = Some(message);
            status
        }
        None => StatusCode::OK,
    };
    let page = html(UsersPage {
        nav,
        people,
        invitations,
        outlets: choices(&[]),
        created,
    })?;
    Ok((status, page).into_response())
}

async fn page(State(state): State<AppState>, viewer: Viewer) -> Result<Response, DashError> {
    viewer.require_admin()?;
    render(&state, &viewer, None, None).await
}

fn role_field(f: &Fields) -> Result<Role, DashError> {
    f.get("role")
        .parse()
        .map_err(|_| DashError::BadRequest("role: choose admin, agent or viewer".into()))
}

/// After a change: back to the list, or the list with what the people service refused.
async fn after<T>(
    state: &AppState,
    viewer: &Viewer,
    done: Result<T, crate::people::PeopleError>,
) -> Result<Response, DashError> {
    match done {
        Ok(_) => Ok(Redirect::to("/dash/admin/users").into_response()),
        Err(e) => render(state, viewer, None, Some(refusal(e)?)).await,
    }
}

async fn invite(
    State(state): State<AppState>,
    Acting(actor): Acting,
    AdminForm { viewer, fields: f }: AdminForm,
) -> Result<Response, DashError> {
    let new = NewInvitation {
        email: f.get("email").to_string(),
        role: role_field(&f)?,
        outlets: f.outlets(&state, viewer.tenant)?,
    };
    match invitations::create(&state.store, &state.people, viewer.tenant, new, actor).await {
        Ok((token, invitation)) => {
            let created = NewLink {
                link: invitations::link(&state.config.public_url(), &token),
                expires: stamp(invitation.expires_at_ms, &viewer.time_zone),
                email: invitation.email,
            };
            render(&state, &viewer, Some(created), None).await
        }
        Err(e) => render(&state, &viewer, None, Some(refusal(e)?)).await,
    }
}

async fn change(
    State(state): State<AppState>,
    Acting(actor): Acting,
    AdminForm { viewer, fields: f }: AdminForm,
) -> Result<Response, DashError> {
    let user: UserId = id_field("user", f.get("user"))?;
    let change = UserChange {
        role: Some(role_field(&f)?),
        outlets: Some(f.outlets(&state, viewer.tenant)?),
        ..UserChange::default()
    };
    let done = users::update(&state.store, viewer.tenant, user, change, actor).await;
    after(&state, &viewer, done).await
}

async fn set_status(
    State(state): State<AppState>,
    Acting(actor): Acting,
    AdminForm { viewer, fields: f }: AdminForm,
) -> Result<Response, DashError> {
    let user: UserId = id_field("user", f.get("user"))?;
    let disabled = match f.get("disabled") {
        "true" => true,
        "false" => false,
        _ => return Err(DashError::BadRequest("disabled: true or false".into())),
    };
    let change = UserChange {
        disabled: Some(disabled),
        ..UserChange::default()
    };
    let done = users::update(&state.store, viewer.tenant, user, change, actor).await;
    after(&state, &viewer, done).await
}

async fn revoke(
    State(state): State<AppState>,
    Acting(actor): Acting,
    AdminForm { viewer, fields: f }: AdminForm,
) -> Result<Response, DashError> {
    let id: InvitationId = id_field("invitation", f.get("invitation"))?;
    let done = invitations::revoke(&state.store, viewer.tenant, id, actor).await;
    after(&state, &viewer, done).await
}
