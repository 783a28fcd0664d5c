//! The webhook endpoint's guard: per-IP limit on failed requests, refusal while the disk is nearly
//! full, and load shedding when the storage writer is saturated. Refusals are 503 with Retry-After
//! (Meta retries webhooks for days), so a flood costs bounded memory instead of an ever-growing
//! queue, and legitimate, signed traffic is never counted against its sender.

use std::net::IpAddr;

use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::OwnedSemaphorePermit;

use super::{metrics, OpsState};
use crate::web::AppState;

/// A webhook request the guard turned away: answered with its status, a Retry-After and the
/// usual JSON error.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    retry_after_s: u64,
    code: &'static str,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::RETRY_AFTER, self.retry_after_s.to_string())],
            axum::Json(serde_json::json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

fn refuse(
    status: StatusCode,
    retry_after_s: u64,
    code: &'static str,
    message: impl Into<String>,
) -> Refusal {
    Refusal {
        status,
        retry_after_s,
        code,
        message: message.into(),
    }
}

/// A webhook request let in by the guard; `settle` it with the answer.
pub struct Admission<'a> {
    ops: &'a OpsState,
    ip: IpAddr,
    post: bool,
    /// Held until the answer: one of the bounded in-flight webhook slots.
    _slot: Option<OwnedSemaphorePermit>,
}

/// Lets a webhook request from `ip` in, or answers it with the refusal: 429 after too many
/// failed requests from that address, and for a POST, 503 while the disk is nearly full or the
/// storage writer is saturated. The webhook handlers call it themselves (they are served
/// outside the router-wide middleware, see `web::access::Api::ungated`).
pub fn admit<'a>(
    state: &'a AppState,
    ip: IpAddr,
    method: &Method,
) -> Result<Admission<'a>, Refusal> {
    let post = method == Method::POST;
    let ops = &state.ops;
    if let Err(wait) = ops.webhook_failures.check(ip) {
        metrics::webhook_received("rate_limited");
        return Err(refuse(
            StatusCode::TOO_MANY_REQUESTS,
            wait.as_secs().max(1),
            "rate_limited",
            "too many failed webhook requests from this address",
        ));
    }
    let slot = if post {
        if let Err(e) = ops.disk.allow_webhooks() {
            metrics::webhook_received("disk_full");
            return Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                60,
                e.code(),
                e.to_string(),
            ));
        }
        let (waiting, capacity) = state.store.writer_backlog();
        let slot = ops.webhook_slots.clone().try_acquire_owned().ok();
        if waiting * 10 >= capacity * 9 || slot.is_none() {
            metrics::webhook_received("shed");
            return Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                5,
                "overloaded",
                "the service is saturated; retry shortly",
            ));
        }
        slot
    } else {
        None
    };
    Ok(Admission {
        ops,
        ip,
        post,
        _slot: slot,
    })
}

impl Admission<'_> {
    /// Counts the answer: a failure against the sender's address (only failures count: a sender
    /// whose requests verify is never limited), and every POST in the webhook metrics.
    pub fn settle(self, response: Response) -> Response {
        let status = response.status();
        // The request log of the other routes (`clientip::resolve_client`), off unless debugging.
        tracing::debug!(client = %self.ip, post = self.post, status = status.as_u16(), "webhook request");
        if matches!(
            status,
            StatusCode::BAD_REQUEST
                | StatusCode::UNAUTHORIZED
                | StatusCode::FORBIDDEN
                | StatusCode::PAYLOAD_TOO_LARGE
        ) {
            self.ops.webhook_failures.record_failure(self.ip);
        }
        if self.post {
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
}
