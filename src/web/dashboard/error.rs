//! The dashboard's error: an HTML page (or a redirect to sign in) with a message that says what
//! is wrong. Internal failures are logged and shown as a bare apology.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::storage::StoreError;
use crate::tenants::TenantError;
use crate::web::ApiError;

#[derive(Debug)]
pub enum DashError {
    /// Not signed in (or the session ended): go to the sign-in page.
    SignIn,
    Forbidden(String),
    NotFound(String),
    BadRequest(String),
    /// The action conflicts with the conversation's state (closed, window closed).
    Conflict(String),
    Internal,
}

impl DashError {
    pub fn code(&self) -> &'static str {
        match self {
            DashError::SignIn => "unauthorized",
            DashError::Forbidden(_) => "forbidden",
            DashError::NotFound(_) => "not_found",
            DashError::BadRequest(_) => "invalid_input",
            DashError::Conflict(_) => "conflict",
            DashError::Internal => "internal",
        }
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "dashboard internal error");
        DashError::Internal
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        let (status, title, message) = match &self {
            DashError::SignIn => return Redirect::to("/dash/signin").into_response(),
            DashError::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m.as_str()),
            DashError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m.as_str()),
            DashError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Cannot do that", m.as_str()),
            DashError::Conflict(m) => (StatusCode::CONFLICT, "Cannot do that now", m.as_str()),
            DashError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "An internal error occurred; it is in the server log.",
            ),
        };
        let page = ErrorPage {
            status: status.as_u16(),
            title,
            message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, message.to_string()).into_response(),
        }
    }
}

impl From<ApiError> for DashError {
    fn from(e: ApiError) -> Self {
        match e.status.as_u16() {
            404 => DashError::NotFound(e.message),
            409 => DashError::Conflict(e.message),
            401 | 403 => DashError::Forbidden(e.message),
            400..=499 => DashError::BadRequest(e.message),
            _ => DashError::Internal,
        }
    }
}

impl From<StoreError> for DashError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<TenantError> for DashError {
    fn from(e: TenantError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<askama::Error> for DashError {
    fn from(e: askama::Error) -> Self {
        DashError::internal(format!("template: {e}"))
    }
}
