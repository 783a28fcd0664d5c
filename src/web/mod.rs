//! The axum server: shared state, the API error type, authentication, and the router.

pub mod auth;
pub mod error;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Json, Router};

use crate::config::Config;
use crate::conversations::LiveBus;
use crate::storage::Store;
use crate::tenants::crypto::MasterKey;
use crate::whatsapp::ingress::RouteCache;
use crate::whatsapp::sender::SenderHandle;

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
}

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.inner
    }
}

/// Request bodies above this are refused with 413 before they are read in full.
const API_BODY_LIMIT: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(crate::whatsapp::routes::router())
        .merge(crate::tenants::routes::router())
        .merge(crate::conversations::routes::router())
        .merge(crate::conversations::routing::routes::router())
        .merge(crate::analytics::routes::router())
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
