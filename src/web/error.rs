//! The API's error: a status, a stable machine-readable code and a message that says what is wrong.
//! Internal failures are logged in full and answered with a bare 500 that leaks nothing.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::storage::StoreError;
use crate::tenants::TenantError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// A 500 that says nothing; `detail` goes to the log.
    pub fn internal_message(detail: impl std::fmt::Display) -> Self {
        Self::internal(detail)
    }
    fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

fn status_for_code(code: &str) -> Option<StatusCode> {
    Some(match code {
        "not_found" => StatusCode::NOT_FOUND,
        "conflict" | "window_closed" => StatusCode::CONFLICT,
        "invalid_input" => StatusCode::BAD_REQUEST,
        crate::billing::QUOTA_EXCEEDED => StatusCode::FORBIDDEN,
        "purge_failed" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => return None,
    })
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rejected { code, message } => match status_for_code(code) {
                Some(status) => ApiError::new(status, code, message),
                None => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message),
            },
            other => ApiError::internal(other),
        }
    }
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> Self {
        match e {
            TenantError::Store(s) => s.into(),
            TenantError::Crypto(c) => ApiError::internal(c),
            other => {
                let code = other.code();
                let status = status_for_code(code).unwrap_or(StatusCode::BAD_REQUEST);
                ApiError::new(status, code, other.to_string())
            }
        }
    }
}

/// JSON body rejections keep axum's status (400 syntax, 415 no JSON content type, 422 wrong
/// shape) with serde's explanation and the stable code `invalid_input`.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::new(r.status(), "invalid_input", r.body_text())
    }
}
