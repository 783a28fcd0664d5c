//! Authentication of the JSON API. Until people and roles exist (their own issue), the API is the
//! operator's: a bearer token generated on first start and kept in the data directory (0600),
//! which the CLI on the same machine reads.

use std::path::Path;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rand::RngCore;

use super::{ApiError, AppState};
use crate::tenants::crypto::write_private;

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

/// Proof that the request carries the operator's token.
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthorized("Authorization must be a Bearer token"))?;
        if constant_time_eq(token.trim().as_bytes(), state.operator_token.as_bytes()) {
            Ok(Operator)
        } else {
            Err(ApiError::unauthorized("invalid token"))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
