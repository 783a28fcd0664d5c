//! The axum server: shared state, the API error type, authentication, and the router.

pub mod access;
pub mod auth;
pub mod dashboard;
pub mod error;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;

use crate::config::Config;
use crate::conversations::LiveBus;
use crate::storage::Store;
use crate::tenants::crypto::MasterKey;
use crate::whatsapp::ingress::RouteCache;
use crate::whatsapp::sender::SenderHandle;

pub use access::{Access, Api, RouteSpec};
pub use error::ApiError;

/// Everything a request handler may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<AppInner>,
}

pub struct AppInner {
    pub config: Config,
    pub store: Store,
    pub key: MasterKey,
    pub routes: RouteCache,
    pub live: LiveBus,
    pub sender: SenderHandle,
    pub operator_token: String,
    pub knowledge: Arc<crate::knowledge::KnowledgeService>,
    /// Identity: settings, clock, sign-in limiter, OIDC verifier, password hasher.
    pub people: Arc<crate::people::PeopleState>,
    /// Services holding tenant data outside redb's tenant rows, told when a tenant is deleted.
    pub tenant_data: crate::tenants::lifecycle::DataOwners,
    /// Operations: readiness, disk guard, limiters, data hooks, TLS (see `crate::ops`).
    pub ops: Arc<crate::ops::OpsState>,
    pub dashboard: dashboard::DashboardState,
}

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.inner
    }
}

/// Request bodies above this are refused with 413 before they are read in full.
const API_BODY_LIMIT: usize = 1024 * 1024;

/// Every route of the appliance with its access rule (the table the gate enforces and the
/// authorization matrix test walks).
pub fn api(state: &AppState) -> Api {
    Api::new()
        .get("/healthz", Access::Public, healthz)
        .merge(crate::ops::routes::api())
        .merge(crate::whatsapp::routes::api())
        .merge(crate::tenants::routes::api())
        .merge(crate::conversations::routes::api())
        .merge(crate::people::routes::api())
        .merge(crate::billing::routes::api())
        // Uploads carry their own, larger body limit (knowledge.max_document_bytes).
        .merge(crate::knowledge::routes::api(&state.config.knowledge))
        .merge(dashboard::api())
        .merge(crate::conversations::routing::routes::api())
        .merge(crate::analytics::routes::api())
}

pub fn router(state: AppState) -> Router {
    let (gated, ungated) = api(&state).into_routers(&state);
    gated
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.ops.proxies.clone(),
            crate::ops::clientip::resolve_client,
        ))
        // Added after the layers, so without them (see `Api::ungated`).
        .merge(ungated)
        .with_state(state)
}

/// The process is up and serving HTTP (liveness). Readiness is `/readyz` (`ops::routes`).
async fn healthz() -> &'static str {
    "ok"
}
