//! Form fields as sent, repeats included (a list of ticked outlets), which the struct-shaped form
//! extractor cannot collect, and the refusal of a service shown on the page that asked for it.

use axum::http::StatusCode;

use super::DashError;
use crate::storage::{OutletId, TenantId};
use crate::web::ApiError;

/// The fields of an `application/x-www-form-urlencoded` body (`Form<Vec<(String, String)>>`).
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, or "".
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The ticked outlets, each one of the tenant's.
    pub fn outlets(
        &self,
        state: &crate::web::AppState,
        tenant: TenantId,
    ) -> Result<Vec<OutletId>, DashError> {
        let known = crate::tenants::list_outlets(&state.store, tenant)?;
        let mut out = Vec::new();
        for v in self.all("outlets").filter(|v| !v.is_empty()) {
            match v.parse::<OutletId>() {
                Ok(o) if known.iter().any(|k| k.id == o) => {
                    if !out.contains(&o) {
                        out.push(o)
                    }
                }
                _ => {
                    return Err(DashError::BadRequest(
                        "outlets: not one of this tenant's outlets".into(),
                    ))
                }
            }
        }
        Ok(out)
    }
}

/// Parses an id field, or says which field was wrong.
pub fn id_field<T: std::str::FromStr>(field: &str, value: &str) -> Result<T, DashError> {
    value
        .trim()
        .parse()
        .map_err(|_| DashError::BadRequest(format!("{field}: not a valid id")))
}

/// A service's refusal to show on the page (status and what it said); internal failures (already
/// logged by `ApiError`) stay an error page that says nothing.
pub fn refusal(e: impl Into<ApiError>) -> Result<(StatusCode, String), DashError> {
    let e = e.into();
    if e.code == "internal" {
        return Err(DashError::Internal);
    }
    Ok((e.status, e.message))
}

/// An admin's form post: the signed-in viewer (an admin), its fields, and its CSRF token already
/// checked, in that order (a forged token is refused before the role is looked at).
pub struct AdminForm {
    pub viewer: super::Viewer,
    pub fields: Fields,
}

impl axum::extract::FromRequest<crate::web::AppState> for AdminForm {
    type Rejection = axum::response::Response;

    async fn from_request(
        req: axum::extract::Request,
        state: &crate::web::AppState,
    ) -> Result<Self, Self::Rejection> {
        use axum::extract::FromRequestParts;
        use axum::response::IntoResponse;
        let (mut parts, body) = req.into_parts();
        let viewer = super::Viewer::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let req = axum::extract::Request::from_parts(parts, body);
        let axum::Form(fields) = axum::Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let fields = Fields(fields);
        viewer
            .check_csrf(fields.get("csrf"))
            .and_then(|()| viewer.require_admin())
            .map_err(IntoResponse::into_response)?;
        Ok(AdminForm { viewer, fields })
    }
}
