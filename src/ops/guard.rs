//! The webhook endpoint's guard: per-IP limit on failed requests, refusal while the disk is nearly
//! full, and load shedding when the storage writer is saturated. Refusals are 503 with Retry-After
//! (Meta retries webhooks for days), so a flood costs bounded memory instead of an ever-growing
//! queue, and legitimate, signed traffic is never counted against its sender.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::clientip::ClientInfo;
use super::metrics;
use crate::web::AppState;

use crate::whatsapp::routes::WEBHOOK_PATH;

fn refuse(status: StatusCode, retry_after_s: u64, code: &str, message: &str) -> Response {
    (
        status,
        [(header::RETRY_AFTER, retry_after_s.to_string())],
        axum::Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

pub async fn webhook_guard(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() != WEBHOOK_PATH {
        return next.run(request).await;
    }
    let ip = request
        .extensions()
        .get::<ClientInfo>()
        .map(|c| c.ip)
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let post = request.method() == Method::POST;
    let ops = &state.ops;
    if let Err(wait) = ops.webhook_failures.check(ip) {
        metrics::webhook_received("rate_limited");
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            wait.as_secs().max(1),
            "rate_limited",
            "too many failed webhook requests from this address",
        );
    }
    let _permit = if post {
        if let Err(e) = ops.disk.allow_webhooks() {
            metrics::webhook_received("disk_full");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                60,
                e.code(),
                &e.to_string(),
            );
        }
        let (waiting, capacity) = state.store.writer_backlog();
        let permit = ops.webhook_slots.clone().try_acquire_owned().ok();
        if waiting * 10 >= capacity * 9 || permit.is_none() {
            metrics::webhook_received("shed");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                5,
                "overloaded",
                "the service is saturated; retry shortly",
            );
        }
        permit
    } else {
        None
    };
    let response = next.run(request).await;
    let status = response.status();
    // Only failures count: a sender whose requests verify is never limited.
    if matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::PAYLOAD_TOO_LARGE
    ) {
        ops.webhook_failures.record_failure(ip);
    }
    if post {
        metrics::webhook_received(match status {
            s if s.is_success() => "accepted",
            StatusCode::UNAUTHORIZED => "bad_signature",
            StatusCode::BAD_REQUEST => "malformed",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            _ => "error",
        });
    }
    response
}
