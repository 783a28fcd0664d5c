//! Which principal may call which route: one table, enforced in one place.
//!
//! Every route is declared through [`Api`] with its [`Access`]; the router is built from those
//! declarations and the gate (`enforce`) looks each request's route up in the same table before
//! any handler or body extractor runs. A route that reached the router some other way has no
//! entry and is refused for everyone (fail closed); the authorization matrix test walks the table.
//!
//! Tenant routes name their tenant in the path (`{tenant}`, a slug or an id). The gate resolves it
//! and checks that the principal belongs to it: a member of another tenant gets the same
//! `404 tenant_not_found` as a tenant that does not exist, so valid credentials of one tenant
//! learn nothing about another (not even that it exists). Answers:
//! - 401 `unauthorized`: no, unknown, revoked or expired credentials (on any non-public route);
//! - 404 `tenant_not_found`: the path's tenant does not exist or is not the caller's;
//! - 403 `forbidden`: the caller's role is too low, or an API key on a people-and-keys route;
//! - 403 `csrf_failed`: a session request with an unsafe method and no valid `X-CSRF-Token`;
//! - 403 `tenant_suspended`: a member of a suspended tenant.
//!
//! Finer checks stay with the handlers: outlet limits on conversations (403 `forbidden`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Router;

use super::auth::{self, Authorized, Principal};
use super::{ApiError, AppState};
use crate::people::Role;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Anyone; the handler authenticates by other means if at all (webhook signatures,
    /// passwords, ID tokens, invitation tokens). Credentials, if sent, are resolved leniently.
    Public,
    /// Any valid credentials.
    SignedIn,
    /// The operator only (token or operator account).
    Operator,
    /// The operator, or a member of the path's tenant with at least this role.
    Tenant(Role),
    /// The operator, or an admin of the path's tenant signed in as a person: managing people and
    /// keys is not for API keys (a leaked key must not mint more keys or admins).
    TenantPeople,
    /// A dashboard page or form. The gate resolves nothing: the page's `Viewer` extractor signs
    /// the person in from the dashboard session cookie (none: a redirect to the sign-in form), and
    /// the handler checks role, outlets and, on POST, the form's CSRF token.
    Page,
}

/// One row of the route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

/// A router whose every route carries its access rule.
pub struct Api {
    router: Router<AppState>,
    /// Public routes served without the gate and the router-wide layers (see `ungated`).
    ungated: Router<AppState>,
    specs: Vec<RouteSpec>,
}

impl Default for Api {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! method_fns {
    ($($name:ident => $method:ident),*) => {$(
        pub fn $name<H, T>(self, path: &'static str, access: Access, handler: H) -> Self
        where
            H: Handler<T, AppState>,
            T: 'static,
        {
            self.on(Method::$method, path, access, axum::routing::$name(handler))
        }
    )*};
}

impl Api {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            ungated: Router::new(),
            specs: Vec::new(),
        }
    }

    method_fns!(get => GET, post => POST, put => PUT, patch => PATCH, delete => DELETE);

    /// Adds `endpoint` (for `method` only) with its access rule. Use it to attach layers
    /// (e.g. a body limit) to one route.
    pub fn on(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        endpoint: MethodRouter<AppState>,
    ) -> Self {
        self.specs.push(RouteSpec {
            method,
            path,
            access,
        });
        self.router = self.router.route(path, endpoint);
        self
    }

    /// Adds a public endpoint served without the gate and without the router-wide layers (client
    /// address, body limit), for Meta's webhook: its handler authenticates by signature and does
    /// itself the little it needs of them (the client address for the webhook guard, its own body
    /// limit). Each layer costs every request a boxed service clone and a boxed future; on the
    /// webhook path, the busiest of all, the three of them took a fifth of the CPU of a request
    /// (`wacrm bench ingest`, CPU per message by thread). Listed in the table as `Public`.
    pub fn ungated(
        mut self,
        method: Method,
        path: &'static str,
        endpoint: MethodRouter<AppState>,
    ) -> Self {
        self.specs.push(RouteSpec {
            method,
            path,
            access: Access::Public,
        });
        self.ungated = self.ungated.route(path, endpoint);
        self
    }

    pub fn merge(mut self, other: Api) -> Self {
        self.router = self.router.merge(other.router);
        self.ungated = self.ungated.merge(other.ungated);
        self.specs.extend(other.specs);
        self
    }

    /// Applies `f` to the routes declared so far (layers such as a body limit for all of them).
    pub fn map_router(mut self, f: impl FnOnce(Router<AppState>) -> Router<AppState>) -> Self {
        self.router = f(self.router);
        self
    }

    pub fn specs(&self) -> &[RouteSpec] {
        &self.specs
    }

    /// The router with the gate in front of every route, and the ungated routes beside it.
    pub fn into_routers(self, state: &AppState) -> (Router<AppState>, Router<AppState>) {
        let mut table: HashMap<&'static str, Vec<(Method, Access)>> = HashMap::new();
        for s in &self.specs {
            table
                .entry(s.path)
                .or_default()
                .push((s.method.clone(), s.access));
        }
        let gate = Gate {
            state: state.clone(),
            table: Arc::new(table),
        };
        let router = self
            .router
            .route_layer(axum::middleware::from_fn_with_state(gate, enforce));
        (router, self.ungated)
    }
}

#[derive(Clone)]
pub struct Gate {
    state: AppState,
    /// Route pattern -> the methods declared on it, each with its rule. Looked up on every
    /// request, so keyed by the pattern rather than scanned.
    table: Arc<HashMap<&'static str, Vec<(Method, Access)>>>,
}

impl Gate {
    fn lookup(&self, method: &Method, path: &str) -> Result<Access, StatusCode> {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        let Some(methods) = self.table.get(path) else {
            return Err(StatusCode::INTERNAL_SERVER_ERROR);
        };
        methods
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, access)| *access)
            .ok_or(StatusCode::METHOD_NOT_ALLOWED)
    }
}

/// The gate: resolves the caller and checks the route's rule before the handler runs.
pub async fn enforce(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let path = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str())
        .unwrap_or_default();
    let access = match gate.lookup(&parts.method, path) {
        Ok(a) => a,
        Err(StatusCode::METHOD_NOT_ALLOWED) => {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        Err(_) => {
            return ApiError::internal_message(format!(
                "route {} {path} has no access rule: refused",
                parts.method
            ))
            .into_response()
        }
    };
    let tenant_param = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .ok()
        .and_then(|params| {
            params
                .iter()
                .find(|(name, _)| *name == "tenant")
                .map(|(_, v)| v.to_string())
        });
    let ip = auth::client_ip(&parts);
    match decide(&gate.state, access, &parts, tenant_param.as_deref()) {
        Ok((principal, session_token, tenant)) => {
            parts.extensions.insert(Authorized {
                principal,
                tenant,
                ip,
                session_token,
            });
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => e.into_response(),
    }
}

type Decision = (
    Option<Principal>,
    Option<String>,
    Option<crate::tenants::Tenant>,
);

fn tenant_not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "tenant_not_found",
        format!("tenant {name:?} not found"),
    )
}

fn decide(
    state: &AppState,
    access: Access,
    parts: &axum::http::request::Parts,
    tenant_param: Option<&str>,
) -> Result<Decision, ApiError> {
    if access == Access::Page {
        return Ok((None, None, None));
    }
    if access == Access::Public {
        let resolved = auth::resolve(state, &parts.method, &parts.headers)
            .ok()
            .flatten();
        let (principal, token) = match resolved {
            Some((p, t)) => (Some(p), t),
            None => (None, None),
        };
        return Ok((principal, token, None));
    }
    let (principal, token) = auth::resolve(state, &parts.method, &parts.headers)?
        .ok_or_else(|| ApiError::unauthorized("credentials required"))?;
    let (min, people_only) = match access {
        Access::Public | Access::Page | Access::SignedIn => {
            return Ok((Some(principal), token, None))
        }
        Access::Operator => {
            if !principal.is_operator() {
                return Err(auth::forbidden("only the operator may do this"));
            }
            return Ok((Some(principal), token, None));
        }
        Access::Tenant(min) => (min, false),
        Access::TenantPeople => (Role::Admin, true),
    };
    let name = tenant_param.ok_or_else(|| {
        ApiError::internal_message("a tenant access rule on a route without {tenant}")
    })?;
    let tenant = match crate::tenants::find_tenant(&state.store, name) {
        Ok(t) => t,
        Err(crate::tenants::TenantError::NotFound(_)) => return Err(tenant_not_found(name)),
        Err(e) => return Err(e.into()),
    };
    let Some(role) = principal.role_in(tenant.id) else {
        return Err(tenant_not_found(name));
    };
    if role < min {
        return Err(auth::forbidden(format!(
            "this needs the {} role or higher",
            min.as_str()
        )));
    }
    if people_only && !principal.is_person() {
        return Err(auth::forbidden(
            "API keys cannot manage people or keys; sign in as an admin",
        ));
    }
    Ok((Some(principal), token, Some(tenant)))
}
