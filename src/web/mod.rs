//! The axum server: shared state, the API error type, authentication, and the router.

pub mod access;
pub mod auth;
pub mod error;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::{Json, Router};

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
    /// Identity: settings, clock, sign-in limiter, OIDC verifier, password hasher.
    pub people: Arc<crate::people::PeopleState>,
    /// Services holding tenant data outside redb's tenant rows, told when a tenant is deleted.
    pub tenant_data: crate::tenants::lifecycle::DataOwners,
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
pub fn api(_state: &AppState) -> Api {
    Api::new()
        .get("/healthz", Access::Public, healthz)
        .get("/readyz", Access::Public, readyz)
        .merge(crate::whatsapp::routes::api())
        .merge(crate::tenants::routes::api())
        .merge(crate::conversations::routes::api())
        .merge(crate::people::routes::api())
        .merge(crate::billing::routes::api())
}

pub fn router(state: AppState) -> Router {
    let (router, _) = api(&state).into_router(&state);
    router
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut depth = serde_json::Map::new();
    for consumer in crate::events::Consumer::ALL {
        depth.insert(
            consumer.name().into(),
            crate::events::queue_depth(&state.store, *consumer)?.into(),
        );
    }
    Ok(Json(
        serde_json::json!({"status": "ready", "queue_depth": depth}),
    ))
}
