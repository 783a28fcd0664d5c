//! Running the appliance: data format and migrations, backup and restore, the store check,
//! health and readiness, metrics, resource limits (disk, floods, failed requests), retention and
//! erasure, TLS, and `wacrm doctor`.

pub mod backup;
pub mod bench;
pub mod check;
pub mod cli;
pub mod clientip;
pub mod disk;
pub mod doctor;
pub mod format;
pub mod fsutil;
pub mod guard;
pub mod metrics;
pub mod ratelimit;
pub mod readiness;
pub mod restore;
pub mod retention;
pub mod routes;
pub mod snapshot;
pub mod tls;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Config;
use crate::storage::TenantId;

/// Operations state shared by the HTTP layer and the background tasks (in `AppState::ops`).
pub struct OpsState {
    pub readiness: readiness::Readiness,
    pub disk: disk::DiskGuard,
    /// Failed webhook requests per IP.
    pub webhook_failures: ratelimit::FailureLimiter,
    /// Failed sign-ins per IP. The sign-in route (people and roles) calls `sign_in_allowed` before
    /// checking a password and `sign_in_failed` / `sign_in_succeeded` after.
    pub sign_in_failures: ratelimit::FailureLimiter,
    /// Webhook requests handled at once.
    pub webhook_slots: Arc<tokio::sync::Semaphore>,
    pub proxies: Arc<clientip::TrustedProxies>,
    /// Search indexes, analytics and documents register here to forget erased or expired data.
    pub hooks: retention::HookRegistry,
    pub tls: Option<tls::TlsState>,
    /// Rows and bytes per tenant, measured every few minutes (metrics).
    pub tenant_footprints: Mutex<Vec<(TenantId, u64)>>,
}

impl OpsState {
    pub fn new(config: &Config, tls: Option<tls::TlsState>) -> Self {
        let r = &config.resources;
        Self {
            readiness: readiness::Readiness::default(),
            disk: disk::DiskGuard::new(&config.data_dir, r.clone()),
            webhook_failures: ratelimit::FailureLimiter::new(
                r.webhook_failures_per_minute,
                Duration::from_secs(60),
            ),
            sign_in_failures: ratelimit::FailureLimiter::new(
                r.sign_in_failures_per_15_minutes,
                Duration::from_secs(15 * 60),
            ),
            webhook_slots: Arc::new(tokio::sync::Semaphore::new(r.max_inflight_webhooks)),
            proxies: Arc::new(clientip::TrustedProxies::new(&config.trusted_proxies)),
            hooks: retention::HookRegistry::default(),
            tls,
            tenant_footprints: Mutex::new(Vec::new()),
        }
    }

    /// For the sign-in route: Err(seconds to wait) when this address failed too often.
    pub fn sign_in_allowed(&self, ip: IpAddr) -> Result<(), u64> {
        self.sign_in_failures
            .check(ip)
            .map_err(|wait| wait.as_secs().max(1))
    }

    pub fn sign_in_failed(&self, ip: IpAddr) {
        self.sign_in_failures.record_failure(ip);
    }

    pub fn sign_in_succeeded(&self, ip: IpAddr) {
        self.sign_in_failures.record_success(ip);
    }
}

/// Starts the operations background tasks: disk guard, retention sweep, tenant footprints.
pub fn spawn_background(
    state: &crate::web::AppState,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(state.ops.disk.clone().run(stop.clone())),
        tokio::spawn(retention::run_sweeper(
            state.store.clone(),
            state.ops.hooks.clone(),
            Duration::from_secs(state.config.retention.sweep_interval_s),
            stop.clone(),
        )),
        tokio::spawn(routes::run_footprints(
            state.clone(),
            Duration::from_secs(300),
            stop,
        )),
    ]
}
