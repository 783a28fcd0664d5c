//! Accepting an invitation: the link an admin sent (`/invitations#<token>`) opens a form for the
//! person's name and password; the people service turns the invitation into their account and
//! they are signed in. The token travels in the link's fragment (never sent to a server by a
//! browser, so never in a log); the page's one line of script copies it into the form.

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::pages::{html, Nav};
use super::session;
use super::DashError;
use crate::people::invitations::{self, Acceptance};
use crate::people::sessions::Subject;
use crate::people::signin;
use crate::web::{Access, Api, AppState};

pub fn api() -> Api {
    Api::new().get("/invitations", Access::Public, form).post(
        "/invitations",
        Access::Public,
        accept,
    )
}

#[derive(Template)]
#[template(path = "invitation.html")]
struct InvitationPage {
    nav: Nav,
    csrf: String,
    error: Option<String>,
    name: String,
}

fn signed_out_nav() -> Nav {
    Nav::signed_out_on("invitation")
}

/// The form, with a fresh double-submit token in its field and in a cookie.
fn render(
    state: &AppState,
    status: StatusCode,
    error: Option<String>,
    name: String,
) -> Result<Response, DashError> {
    let csrf = session::random_token();
    let cookie = session::set_cookie(state, session::SIGNIN_COOKIE, &csrf, Some(3600));
    let page = html(InvitationPage {
        nav: signed_out_nav(),
        csrf,
        error,
        name,
    })?;
    Ok((status, [(header::SET_COOKIE, cookie)], page).into_response())
}

async fn form(State(state): State<AppState>) -> Result<Response, DashError> {
    render(&state, StatusCode::OK, None, String::new())
}

#[derive(Deserialize)]
struct AcceptForm {
    csrf: String,
    token: String,
    name: String,
    password: String,
}

async fn accept(
    State(state): State<AppState>,
    auth: crate::web::auth::Authorized,
    headers: HeaderMap,
    Form(f): Form<AcceptForm>,
) -> Result<Response, DashError> {
    let cookie = session::cookie_value(&headers, session::SIGNIN_COOKIE).unwrap_or_default();
    if cookie.is_empty() || !session::constant_time_eq(cookie.as_bytes(), f.csrf.as_bytes()) {
        return Err(DashError::Forbidden(
            "the form expired; open the invitation link again".into(),
        ));
    }
    let ip = auth.ip;
    let acceptance = Acceptance {
        token: f.token,
        name: f.name.clone(),
        password: f.password,
    };
    let (tenant, user) =
        match invitations::accept(&state.store, &state.people, acceptance, ip).await {
            Ok(x) => x,
            Err(e) => {
                let api = crate::web::ApiError::from(e);
                if api.code == "internal" {
                    return Err(DashError::Internal);
                }
                return render(&state, api.status, Some(api.message), f.name);
            }
        };
    let subject = Subject::User {
        tenant,
        user: user.id,
    };
    let actor = signin::actor_for(&subject, user.id.to_string(), &user.email, ip);
    let opened = signin::open_session(
        &state.store,
        &state.people,
        subject,
        actor,
        "invitation",
        None,
    )
    .await
    .map_err(crate::web::ApiError::from)?;
    let cookie = opened.cookie(&state.people.settings);
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/dash/inbox")).into_response())
}
