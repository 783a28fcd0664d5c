//! HTTP endpoints of operations: `/readyz`, the snapshot stream for `wacrm backup`, retention and
//! erasure, the audit trail, and the Prometheus endpoint (on its own listener).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::metrics::{self, Gauge};
use super::readiness::Condition;
use super::retention::{self, RetentionPolicy};
use super::snapshot::{self, ChunkWriter};
use crate::events::{Consumer, EVENT_QUEUE};
use crate::storage::collections as tags;
use crate::storage::{GlobalCollection, Record};
use crate::tenants;
use crate::web::access::{Access, Api};
use crate::web::auth::Operator;
use crate::web::{ApiError, AppState};

/// A queue this deep means the consumers cannot keep up: not ready.
const MAX_SANE_QUEUE: usize = 50_000;

/// Operations endpoints with their access rules (the operator's, except readiness).
pub fn api() -> Api {
    Api::new()
        .get("/readyz", Access::Public, readyz)
        .get("/api/v1/ops/snapshot", Access::Operator, snapshot_stream)
        .get("/api/v1/ops/audit", Access::Operator, audit)
        .post("/api/v1/ops/retention/sweep", Access::Operator, sweep_now)
        .get(
            "/api/v1/tenants/{tenant}/retention",
            Access::Operator,
            get_retention,
        )
        .put(
            "/api/v1/tenants/{tenant}/retention",
            Access::Operator,
            put_retention,
        )
        .post(
            "/api/v1/tenants/{tenant}/customers/{customer}/erase",
            Access::Operator,
            erase_customer,
        )
}

/// The row `/readyz` writes: proof that a durable commit goes through.
#[derive(Debug, Serialize, Deserialize)]
struct ProbeMark {
    at_ms: i64,
}

impl Record for ProbeMark {
    const VERSION: u16 = 1;
    const NAME: &'static str = "readiness probe";
}

const PROBE: GlobalCollection<ProbeMark> = GlobalCollection::new(tags::OPS_PROBE);

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct QueueInfo {
    pub depth: usize,
    pub oldest_age_s: f64,
}

/// Depth and age of the oldest waiting event, per consumer. A consumer's queue is keyed by
/// sequence number, so its oldest event is its first row: only that one is decoded, the rest are
/// counted (a backlog after an outage can be hundreds of thousands of events, and every metrics
/// scrape and readiness probe asks).
pub fn queues(state: &AppState) -> Result<Vec<(Consumer, QueueInfo)>, crate::storage::StoreError> {
    let now = crate::events::now_ms();
    state.store.read(|r| {
        let op = r.operator();
        Consumer::ALL
            .iter()
            .map(|consumer| {
                let prefix = [consumer.tag()];
                let depth = op.count(&EVENT_QUEUE, &prefix)?;
                let oldest_age_s = op
                    .scan(&EVENT_QUEUE, &prefix, false, 1)?
                    .first()
                    .map_or(0.0, |(_, e)| (now - e.at_ms).max(0) as f64 / 1000.0);
                Ok((
                    *consumer,
                    QueueInfo {
                        depth,
                        oldest_age_s,
                    },
                ))
            })
            .collect()
    })
}

/// Runs every readiness check. Returns (ready, details).
pub async fn readiness(state: &AppState) -> (bool, serde_json::Value) {
    let mut ready = true;
    let mut checks = serde_json::Map::new();
    let probe = tokio::time::timeout(
        Duration::from_secs(2),
        state.store.write(|ctx| {
            ctx.operator().put(
                &PROBE,
                b"readyz",
                &ProbeMark {
                    at_ms: crate::events::now_ms(),
                },
            )
        }),
    )
    .await;
    let storage = match probe {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => format!("not writable: {}", e.code()),
        Err(_) => "not writable: a probe write took over 2 s".to_string(),
    };
    ready &= storage == "ok";
    checks.insert("storage".into(), storage.into());

    let mut depth = serde_json::Map::new();
    let mut ages = serde_json::Map::new();
    match queues(state) {
        Ok(list) => {
            for (consumer, info) in list {
                ready &= info.depth < MAX_SANE_QUEUE;
                depth.insert(consumer.name().into(), info.depth.into());
                ages.insert(consumer.name().into(), info.oldest_age_s.into());
            }
            checks.insert("queues".into(), "ok".into());
        }
        Err(e) => {
            ready = false;
            checks.insert("queues".into(), format!("unreadable: {}", e.code()).into());
        }
    }
    let disk = state.ops.disk.state();
    ready &= disk < super::disk::DiskState::Critical;
    checks.insert("disk".into(), disk.as_str().into());
    for (name, condition) in state.ops.readiness.snapshot() {
        let text = match condition {
            Condition::Ready => "ok".to_string(),
            Condition::Waiting(why) => {
                ready = false;
                why
            }
        };
        checks.insert(name, text.into());
    }
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": checks,
        "queue_depth": depth,
        "queue_oldest_age_s": ages,
        "disk_free_bytes": state.ops.disk.free_bytes(),
    });
    (ready, body)
}

async fn readyz(State(state): State<AppState>) -> Response {
    let (ready, body) = readiness(&state).await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The consistent snapshot `wacrm backup` copies. The read transaction starts here, before the
/// response: every write acknowledged before this request is in the stream.
async fn snapshot_stream(
    _op: Operator,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    let txn = state.store.begin_snapshot()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let mut writer = ChunkWriter::new(tx);
        match snapshot::write_snapshot(&txn, &mut writer) {
            Ok(counts) => {
                tracing::info!(
                    rows = counts.values().sum::<u64>(),
                    "snapshot streamed for a backup"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "snapshot failed");
                writer.fail(e.to_string());
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn audit(
    _op: Operator,
    State(state): State<AppState>,
) -> Result<Json<Vec<retention::AuditRecord>>, ApiError> {
    Ok(Json(retention::list_audit(&state.store, 500)?))
}

async fn sweep_now(
    _op: Operator,
    State(state): State<AppState>,
) -> Result<Json<retention::SweepReport>, ApiError> {
    Ok(Json(
        retention::sweep(&state.store, &state.ops.hooks, crate::events::now_ms()).await?,
    ))
}

async fn get_retention(
    _op: Operator,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Json<RetentionPolicy>, ApiError> {
    let tenant = tenants::find_tenant(&state.store, &tenant)?;
    Ok(Json(retention::get_policy(&state.store, tenant.id)?))
}

async fn put_retention(
    _op: Operator,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    body: Result<Json<RetentionPolicy>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<RetentionPolicy>, ApiError> {
    let Json(policy) = body?;
    let tenant = tenants::find_tenant(&state.store, &tenant)?;
    retention::set_policy(&state.store, tenant.id, policy.clone()).await?;
    Ok(Json(policy))
}

async fn erase_customer(
    _op: Operator,
    State(state): State<AppState>,
    Path((tenant, customer)): Path<(String, String)>,
) -> Result<Json<retention::ErasureReport>, ApiError> {
    let tenant = tenants::find_tenant(&state.store, &tenant)?;
    Ok(Json(
        retention::erase_customer(
            &state.store,
            &state.ops.hooks,
            tenant.id,
            &customer,
            "operator",
        )
        .await?,
    ))
}

/// Gauges measured at scrape time.
pub async fn gauges(state: &AppState) -> Vec<Gauge> {
    let mut out = Vec::new();
    let g = |name, labels: Vec<(&'static str, String)>, value: f64| Gauge {
        name,
        labels,
        value,
    };
    if let Ok(list) = queues(state) {
        for (consumer, info) in list {
            out.push(g(
                "wacrm_queue_depth",
                vec![("consumer", consumer.name().into())],
                info.depth as f64,
            ));
            out.push(g(
                "wacrm_queue_oldest_age_seconds",
                vec![("consumer", consumer.name().into())],
                info.oldest_age_s,
            ));
        }
    }
    out.push(g(
        "wacrm_writer_backlog",
        Vec::new(),
        state.store.writer_backlog().0 as f64,
    ));
    let dir = state.config.data_dir.clone();
    let sizes = tokio::task::spawn_blocking(move || {
        [
            ("database", dir.join(crate::app::DATABASE_FILE)),
            ("documents", dir.join("documents")),
            ("index", dir.join(super::backup::INDEX_DIR)),
            ("backups", dir.join(super::format::BACKUPS_DIR)),
        ]
        .map(|(part, path)| (part, super::fsutil::tree_size(&path)))
    })
    .await
    .unwrap_or_default();
    for (part, bytes) in sizes {
        out.push(g(
            "wacrm_storage_bytes",
            vec![("part", part.into())],
            bytes as f64,
        ));
    }
    if let Ok(list) = state.ops.tenant_footprints.lock() {
        for (tenant, bytes) in list.iter() {
            out.push(g(
                "wacrm_tenant_storage_bytes",
                vec![("tenant", tenant.to_string())],
                *bytes as f64,
            ));
        }
    }
    out.push(g(
        "wacrm_disk_free_bytes",
        Vec::new(),
        state.ops.disk.free_bytes() as f64,
    ));
    out.push(g(
        "wacrm_disk_state",
        Vec::new(),
        state.ops.disk.state() as u8 as f64,
    ));
    if let Some(tls) = &state.ops.tls {
        let left = tls.not_after() - jiff::Timestamp::now().as_second();
        out.push(g(
            "wacrm_tls_certificate_expiry_seconds",
            Vec::new(),
            left as f64,
        ));
    }
    out.push(g(
        "wacrm_build_info",
        vec![("version", env!("CARGO_PKG_VERSION").into())],
        1.0,
    ));
    out
}

async fn metrics_endpoint(State(state): State<AppState>) -> Response {
    let mut gauges = gauges(&state).await;
    let (ready, _) = readiness(&state).await;
    gauges.push(Gauge {
        name: "wacrm_ready",
        labels: Vec::new(),
        value: if ready { 1.0 } else { 0.0 },
    });
    let slugs: std::collections::HashMap<String, String> = tenants::list_tenants(&state.store)
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.id.to_string(), t.slug))
        .collect();
    let text = metrics::render(&gauges, &|id| slugs.get(id).cloned());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The metrics listener's router: `/metrics` only.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_endpoint))
        .with_state(state)
}

/// Measures each tenant's rows every `period` (a full scan: too slow for every scrape).
pub async fn run_footprints(
    state: AppState,
    period: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let s = state.clone();
        let measured =
            tokio::task::spawn_blocking(move || -> Result<Vec<_>, crate::storage::StoreError> {
                let list = tenants::list_tenants(&s.store).unwrap_or_default();
                s.store.read(|r| {
                    let mut out = Vec::new();
                    for t in list.iter().take(200) {
                        out.push((t.id, r.operator().tenant_footprint(&t.id)?.1));
                    }
                    Ok(out)
                })
            })
            .await;
        if let Ok(Ok(list)) = measured {
            if let Ok(mut f) = state.ops.tenant_footprints.lock() {
                *f = list;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}
