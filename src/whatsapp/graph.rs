//! WhatsApp Cloud API sender: one `POST /{Version}/{Phone-Number-ID}/messages` per message, and
//! a verdict the caller can act on without ever sending a message twice that it could have known
//! was sent.
//!
//! The client itself never retries: retry policy (rate limits, pacing, attempts) belongs to the
//! outbox dispatcher, which persists attempts. This module only says what happened and, via
//! [`backoff_delay`], how long to wait.

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;
use serde_json::{json, Value};

/// Meta's production Graph API host.
pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";

/// A `Retry-After` larger than this is clamped, so a hostile or broken header cannot park a
/// message for months or overflow the caller's `Instant` arithmetic.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Errors at the sender's boundary. `code()` is the stable machine-readable form.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("invalid Graph API credentials: {0}")]
    InvalidCredentials(String),
    #[error("invalid Graph API client configuration: {0}")]
    InvalidConfig(String),
    #[error("Graph API request failed and may be retried: {reason}")]
    Retryable {
        code: Option<i64>,
        http_status: u16,
        reason: String,
        retry_after: Option<Duration>,
    },
    #[error("Graph API rejected the request: {reason}")]
    Permanent {
        code: Option<i64>,
        http_status: u16,
        reason: String,
    },
    #[error("Graph API outcome unknown: {reason}")]
    Ambiguous { reason: String },
    #[error("unexpected Graph API response: {0}")]
    UnexpectedResponse(String),
}

impl GraphError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidCredentials(_) => "graph.invalid_credentials",
            Self::InvalidConfig(_) => "graph.invalid_config",
            Self::Retryable { .. } => "graph.retryable",
            Self::Permanent { .. } => "graph.permanent",
            Self::Ambiguous { .. } => "graph.ambiguous",
            Self::UnexpectedResponse(_) => "graph.unexpected_response",
        }
    }
}

/// What one send attempt achieved.
///
/// `http_status` is `0` when no HTTP response was received (the connection never opened).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Meta accepted the message; statuses for `wamid` will follow by webhook.
    Accepted { wamid: String },
    /// Meta definitely did not take the message; sending it again later is safe.
    Retryable {
        code: Option<i64>,
        http_status: u16,
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Meta refused the message and will refuse it again; do not retry.
    Permanent {
        code: Option<i64>,
        http_status: u16,
        reason: String,
    },
    /// The request may have reached Meta, but we never learned the answer. Resending could
    /// deliver the message twice: the caller must park it for reconciliation (a status webhook
    /// carrying our `biz_opaque_callback_data` proves it was sent) instead of resending blindly.
    Ambiguous { reason: String },
}

impl SendOutcome {
    /// Stable machine-readable name of the outcome class.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Accepted { .. } => "accepted",
            Self::Retryable { .. } => "retryable",
            Self::Permanent { .. } => "permanent",
            Self::Ambiguous { .. } => "ambiguous",
        }
    }
}

/// Which number sends, as whom. The token never appears in `Debug`, logs or error reasons.
#[derive(Clone)]
pub struct SendCredentials {
    api_version: String,
    phone_number_id: String,
    access_token: String,
}

impl SendCredentials {
    /// `api_version` like `v21.0`; `phone_number_id` as shown in WhatsApp Manager. Both become URL
    /// path segments, so they are checked here rather than escaped later.
    pub fn new(
        api_version: impl Into<String>,
        phone_number_id: impl Into<String>,
        access_token: impl Into<String>,
    ) -> Result<Self, GraphError> {
        let api_version = api_version.into();
        let phone_number_id = phone_number_id.into();
        let access_token = access_token.into();
        if !is_api_version(&api_version) {
            return Err(GraphError::InvalidCredentials(format!(
                "api_version {api_version:?} is not of the form v21.0"
            )));
        }
        if phone_number_id.is_empty()
            || phone_number_id.len() > 64
            || !phone_number_id.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(GraphError::InvalidCredentials(
                "phone_number_id must be 1 to 64 ASCII letters or digits".into(),
            ));
        }
        // Must be a valid header value; the value itself is never echoed.
        if access_token.is_empty() || !access_token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(GraphError::InvalidCredentials(
                "access_token must be non-empty printable ASCII without spaces".into(),
            ));
        }
        Ok(Self {
            api_version,
            phone_number_id,
            access_token,
        })
    }

    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    pub fn phone_number_id(&self) -> &str {
        &self.phone_number_id
    }
}

impl fmt::Debug for SendCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendCredentials")
            .field("api_version", &self.api_version)
            .field("phone_number_id", &self.phone_number_id)
            .field("access_token", &"<redacted>")
            .finish()
    }
}

fn is_api_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let Some((major, minor)) = rest.split_once('.') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    digits(major) && digits(minor)
}

#[derive(Clone, Debug)]
pub struct GraphClientConfig {
    /// `https://graph.facebook.com` in production; a `FakeGraph` URL in tests and benches.
    pub base_url: String,
    /// Whole-request deadline. Past it the outcome is `Ambiguous`, so keep it well above Meta's
    /// normal latency.
    pub request_timeout: Duration,
    /// Deadline for opening the connection; failing here is safely `Retryable`.
    pub connect_timeout: Duration,
}

impl Default for GraphClientConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.into(),
            request_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// HTTP client for the Cloud API messages endpoint. Cheap to clone (shares one connection pool).
#[derive(Clone, Debug)]
pub struct GraphClient {
    http: reqwest::Client,
    base_url: String,
}

impl GraphClient {
    pub fn new(config: GraphClientConfig) -> Result<Self, GraphError> {
        let base_url = config.base_url.trim_end_matches('/').to_string();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(GraphError::InvalidConfig(format!(
                "base_url {base_url:?} must start with https:// or http://"
            )));
        }
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            // Graph never redirects this endpoint; following one would re-POST a message to a
            // host we did not choose.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wacrm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GraphError::InvalidConfig(format!("building HTTP client: {e}")))?;
        Ok(Self { http, base_url })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Sends one message body (see `OutboundContent::to_graph_body`). Never retries by itself.
    pub async fn send(&self, creds: &SendCredentials, body: &Value) -> SendOutcome {
        let outcome = match self.post(creds, body).await {
            Ok(bytes) => match accepted_wamid(&bytes) {
                Some(wamid) => SendOutcome::Accepted { wamid },
                // Meta said 2xx, so the message was most likely taken; without its id we can
                // neither track nor safely resend it.
                None => SendOutcome::Ambiguous {
                    reason: format!("2xx response without messages[0].id: {}", snippet(&bytes)),
                },
            },
            Err(failed) => failed.into_send_outcome(),
        };
        tracing::debug!(
            phone_number_id = creds.phone_number_id(),
            outcome = outcome.kind(),
            "graph send"
        );
        outcome
    }

    /// Marks an incoming message (and all earlier ones) as read, optionally showing the typing
    /// indicator until our reply or 25 s. Idempotent, so any error may simply be retried.
    pub async fn mark_read(
        &self,
        creds: &SendCredentials,
        wamid: &str,
        typing_indicator: bool,
    ) -> Result<(), GraphError> {
        let body = mark_read_body(wamid, typing_indicator);
        let bytes = self
            .post(creds, &body)
            .await
            .map_err(Failed::into_graph_error)?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) if v.get("success") == Some(&Value::Bool(true)) => Ok(()),
            _ => Err(GraphError::UnexpectedResponse(format!(
                "mark read answered {}",
                snippet(&bytes)
            ))),
        }
    }

    /// POSTs `body`; `Ok` carries the body of a 2xx answer.
    async fn post(&self, creds: &SendCredentials, body: &Value) -> Result<Bytes, Failed> {
        let url = format!(
            "{}/{}/{}/messages",
            self.base_url, creds.api_version, creds.phone_number_id
        );
        // bearer_auth marks the header sensitive, so reqwest never prints it either.
        let response = self
            .http
            .post(url)
            .bearer_auth(&creds.access_token)
            .json(body)
            .send()
            .await
            .map_err(|e| transport_failure(&e))?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers(), jiff::Timestamp::now());
        let bytes = response.bytes().await;
        if (200..300).contains(&status) {
            return bytes.map_err(|e| Failed::Ambiguous {
                reason: format!(
                    "HTTP {status} but the response body was lost: {}",
                    chain(&e)
                ),
            });
        }
        // A lost error body does not change the verdict: the status already says "not taken".
        let bytes = bytes.unwrap_or_default();
        Err(error_response(status, &bytes, retry_after))
    }
}

/// The documented mark-as-read body.
pub fn mark_read_body(wamid: &str, typing_indicator: bool) -> Value {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": wamid,
    });
    if typing_indicator {
        body["typing_indicator"] = json!({ "type": "text" });
    }
    body
}

/// A failed POST, before it is phrased as a `SendOutcome` or a `GraphError`.
enum Failed {
    Retryable {
        code: Option<i64>,
        http_status: u16,
        reason: String,
        retry_after: Option<Duration>,
    },
    Permanent {
        code: Option<i64>,
        http_status: u16,
        reason: String,
    },
    Ambiguous {
        reason: String,
    },
}

impl Failed {
    fn into_send_outcome(self) -> SendOutcome {
        match self {
            Self::Retryable {
                code,
                http_status,
                reason,
                retry_after,
            } => SendOutcome::Retryable {
                code,
                http_status,
                reason,
                retry_after,
            },
            Self::Permanent {
                code,
                http_status,
                reason,
            } => SendOutcome::Permanent {
                code,
                http_status,
                reason,
            },
            Self::Ambiguous { reason } => SendOutcome::Ambiguous { reason },
        }
    }

    fn into_graph_error(self) -> GraphError {
        match self {
            Self::Retryable {
                code,
                http_status,
                reason,
                retry_after,
            } => GraphError::Retryable {
                code,
                http_status,
                reason,
                retry_after,
            },
            Self::Permanent {
                code,
                http_status,
                reason,
            } => GraphError::Permanent {
                code,
                http_status,
                reason,
            },
            Self::Ambiguous { reason } => GraphError::Ambiguous { reason },
        }
    }
}

/// Whether a failed request may be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Retryable,
    Permanent,
    Ambiguous,
}

/// Classifies a Graph error response. Meta asks integrators to key on the error `code`, not the
/// HTTP status (throttling errors such as 130429 arrive as HTTP 400), so known codes win and the
/// status only decides for unknown codes.
///
/// | code | meaning | verdict | why |
/// |---|---|---|---|
/// | 130429 | Cloud API throughput reached | retry | per-number messages/second cap; clears within seconds |
/// | 131056 | (business, consumer) pair rate limit | retry | too many messages to one recipient; clears after a pause |
/// | 80007 | WABA rate limit | retry | account-level API call cap; clears with time |
/// | 4 | app API call rate limit | retry | app-level cap; clears with time |
/// | 2 | temporary downtime or overload | retry | Meta documents it as temporary |
/// | 131016 | service unavailable | retry | Meta-side outage |
/// | 1, 131000 with HTTP 5xx | unknown / something went wrong | retry | server-side failure, the message was not taken |
/// | 1, 131000 with HTTP 4xx | unknown / something went wrong | permanent | Meta blames the request; the same body fails again |
/// | 131047 | outside the 24-hour window | permanent | only a template can reach the customer now |
/// | 131026 | undeliverable | permanent | not on WhatsApp, old client, or terms not accepted |
/// | 190 | access token expired or invalid | permanent | needs a new token from an operator |
/// | 0 | auth exception | permanent | same as 190 |
/// | 100 | invalid parameter | permanent | the body is wrong; resending it changes nothing |
/// | 131051 | unsupported message type | permanent | the body is wrong |
/// | 131021 | recipient is the sender | permanent | the body is wrong |
/// | 368 | blocked for policy violations | permanent | account restriction, not transient |
/// | 131031 | business account locked | permanent | account restriction, not transient |
/// | 3, 10, 200-299 | missing capability or permission | permanent | needs an operator to grant permissions |
/// | none, HTTP 504 | gateway timeout | ambiguous | a proxy gave up waiting for Graph, which may still have taken the message: our own timeout, seen through a proxy |
/// | other, HTTP 429 or 5xx | | retry | generic throttling or server failure |
/// | other, any other status | | permanent | generic client error |
///
/// Retries of a `Retryable` verdict must wait at least the response's `Retry-After`.
pub fn classify(http_status: u16, code: Option<i64>) -> Verdict {
    let server_error = (500..600).contains(&http_status);
    match code {
        Some(130429 | 131056 | 80007 | 4 | 2 | 131016) => Verdict::Retryable,
        Some(1 | 131000) if server_error => Verdict::Retryable,
        Some(1 | 131000) => Verdict::Permanent,
        Some(131047 | 131026 | 190 | 0 | 100 | 131051 | 131021 | 368 | 131031 | 3 | 10) => {
            Verdict::Permanent
        }
        Some(200..=299) => Verdict::Permanent,
        None if http_status == 504 => Verdict::Ambiguous,
        _ if http_status == 429 || server_error => Verdict::Retryable,
        _ => Verdict::Permanent,
    }
}

/// `{"error": {...}}` as documented for Graph API errors.
#[derive(Deserialize)]
struct GraphErrorEnvelope {
    error: GraphErrorBody,
}

#[derive(Deserialize)]
struct GraphErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    error_data: Option<GraphErrorData>,
}

#[derive(Deserialize)]
struct GraphErrorData {
    #[serde(default)]
    details: Option<String>,
}

fn error_response(http_status: u16, body: &[u8], retry_after: Option<Duration>) -> Failed {
    let parsed = serde_json::from_slice::<GraphErrorEnvelope>(body)
        .ok()
        .map(|e| e.error);
    let code = parsed.as_ref().and_then(|e| e.code);
    let reason = match &parsed {
        Some(err) => graph_reason(http_status, err),
        None => format!("HTTP {http_status}: {}", snippet(body)),
    };
    match classify(http_status, code) {
        Verdict::Retryable => Failed::Retryable {
            code,
            http_status,
            reason,
            retry_after,
        },
        Verdict::Permanent => Failed::Permanent {
            code,
            http_status,
            reason,
        },
        Verdict::Ambiguous => Failed::Ambiguous { reason },
    }
}

/// "code N: title (details)". Graph prefixes `message` with "(#N) ", which would repeat the code.
fn graph_reason(http_status: u16, err: &GraphErrorBody) -> String {
    let message = err.message.as_deref().unwrap_or("no message");
    let title = match message.strip_prefix("(#") {
        Some(rest) => rest.split_once(") ").map_or(message, |(_, t)| t),
        None => message,
    };
    let mut reason = match err.code {
        Some(code) => format!("code {code}: {title}"),
        None => format!("HTTP {http_status}: {title}"),
    };
    if let Some(details) = err.error_data.as_ref().and_then(|d| d.details.as_deref()) {
        if !details.is_empty() && details != title {
            reason.push_str(" (");
            reason.push_str(details);
            reason.push(')');
        }
    }
    reason
}

fn transport_failure(e: &reqwest::Error) -> Failed {
    if e.is_connect() {
        // Connection refused, DNS failure, TLS handshake failure: no request byte reached Meta.
        Failed::Retryable {
            code: None,
            http_status: 0,
            reason: format!("could not connect: {}", chain(e)),
            retry_after: None,
        }
    } else if e.is_builder() {
        Failed::Permanent {
            code: None,
            http_status: 0,
            reason: format!("could not build the request: {}", chain(e)),
        }
    } else if e.is_timeout() {
        Failed::Ambiguous {
            reason: format!(
                "timed out after the request may have been sent: {}",
                chain(e)
            ),
        }
    } else {
        Failed::Ambiguous {
            reason: format!(
                "connection lost after the request may have been sent: {}",
                chain(e)
            ),
        }
    }
}

/// The error and its causes on one line; reqwest's own `Display` hides the useful part.
fn chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn accepted_wamid(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let id = value.get("messages")?.get(0)?.get("id")?.as_str()?;
    (!id.is_empty()).then(|| id.to_string())
}

/// At most 200 characters of a response body, for error reasons.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    match trimmed.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &trimmed[..cut]),
        None => trimmed.to_string(),
    }
}

fn retry_after(headers: &HeaderMap, now: jiff::Timestamp) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, now)
}

/// `Retry-After` is either delay-seconds or an HTTP-date (RFC 9110 §10.2.3). A date in the past
/// means "now"; values are clamped to [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    static HTTP_DATE: jiff::fmt::rfc2822::DateTimeParser =
        jiff::fmt::rfc2822::DateTimeParser::new();
    let value = value.trim();
    let delay = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        let at = HTTP_DATE.parse_timestamp(value).ok()?;
        Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// Delay before retry number `attempt` (0 for the first retry): "full jitter" exponential
/// backoff, uniform in `[0, min(max, base * 2^attempt)]`, so many senders throttled at once do
/// not retry in lockstep; then raised to `retry_after`, because Meta's explicit wait wins over
/// our cap.
pub fn backoff_delay(
    attempt: u32,
    retry_after: Option<Duration>,
    base: Duration,
    max: Duration,
) -> Duration {
    backoff_delay_with(&mut rand::thread_rng(), attempt, retry_after, base, max)
}

fn backoff_delay_with<R: Rng + ?Sized>(
    rng: &mut R,
    attempt: u32,
    retry_after: Option<Duration>,
    base: Duration,
    max: Duration,
) -> Duration {
    let cap = backoff_cap(attempt, base, max);
    let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    let jittered = Duration::from_nanos(rng.gen_range(0..=cap_nanos));
    jittered.max(retry_after.unwrap_or(Duration::ZERO))
}

/// `min(max, base * 2^attempt)` without overflow.
fn backoff_cap(attempt: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u128 << attempt.min(100);
    let nanos = base.as_nanos().saturating_mul(factor).min(max.as_nanos());
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::fake_graph::{Failure, FakeGraph, FakeGraphOptions};
    use crate::whatsapp::outbound::OutboundContent;
    use proptest::prelude::*;

    const TOKEN: &str = "EAAJBtest-token";
    const PHONE_ID: &str = "106540352242922";
    const WAIT: Duration = Duration::from_secs(10);

    fn creds(token: &str) -> SendCredentials {
        SendCredentials::new("v21.0", PHONE_ID, token).unwrap()
    }

    fn client(base_url: &str, request_timeout: Duration) -> GraphClient {
        GraphClient::new(GraphClientConfig {
            base_url: base_url.into(),
            request_timeout,
            connect_timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    fn hello() -> Value {
        OutboundContent::Text {
            body: "Hello".into(),
            preview_url: false,
        }
        .to_graph_body("+16505551234", None, Some("outbox:1"))
    }

    async fn fake() -> (FakeGraph, GraphClient) {
        let fake = FakeGraph::start(FakeGraphOptions::new(TOKEN))
            .await
            .unwrap();
        let client = client(&fake.base_url(), Duration::from_secs(10));
        (fake, client)
    }

    #[tokio::test]
    async fn accepted_send_returns_the_wamid_the_fake_recorded() {
        let (fake, client) = fake().await;
        let outcome = client.send(&creds(TOKEN), &hello()).await;
        let SendOutcome::Accepted { wamid } = outcome else {
            panic!("expected Accepted, got {outcome:?}");
        };
        let sent = fake.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].wamid, wamid);
        assert_eq!(sent[0].to, "+16505551234");
        assert_eq!(sent[0].phone_number_id, PHONE_ID);
        assert_eq!(
            sent[0].biz_opaque_callback_data.as_deref(),
            Some("outbox:1")
        );
        assert_eq!(sent[0].body, hello());
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn http_429_with_retry_after_is_retryable_and_honoured() {
        let (fake, client) = fake().await;
        fake.fail_next(
            1,
            Failure::TooManyRequests {
                retry_after: Some(Duration::from_secs(7)),
            },
        );
        let outcome = client.send(&creds(TOKEN), &hello()).await;
        let SendOutcome::Retryable {
            http_status,
            retry_after,
            code,
            ..
        } = outcome
        else {
            panic!("expected Retryable, got {outcome:?}");
        };
        assert_eq!(http_status, 429);
        assert_eq!(code, Some(4));
        assert_eq!(retry_after, Some(Duration::from_secs(7)));
        let delay = backoff_delay(
            0,
            retry_after,
            Duration::from_millis(100),
            Duration::from_secs(1),
        );
        assert!(delay >= Duration::from_secs(7));
        assert!(fake.sent().is_empty());
        // The queue held one failure: the next attempt goes through.
        assert_eq!(
            client.send(&creds(TOKEN), &hello()).await.kind(),
            "accepted"
        );
        assert_eq!(fake.attempts().len(), 2);
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn http_503_is_retryable() {
        let (fake, client) = fake().await;
        fake.fail_next(1, Failure::Http5xx(503));
        let outcome = client.send(&creds(TOKEN), &hello()).await;
        assert!(
            matches!(
                outcome,
                SendOutcome::Retryable {
                    http_status: 503,
                    ..
                }
            ),
            "{outcome:?}"
        );
        fake.fail_next(1, Failure::Http5xx(502));
        let outcome = client.send(&creds(TOKEN), &hello()).await;
        assert!(
            matches!(
                outcome,
                SendOutcome::Retryable {
                    http_status: 502,
                    code: None,
                    ..
                }
            ),
            "non-JSON gateway error: {outcome:?}"
        );
        fake.fail_next(1, Failure::Http5xx(504));
        let outcome = client.send(&creds(TOKEN), &hello()).await;
        assert!(
            matches!(outcome, SendOutcome::Ambiguous { .. }),
            "a bare gateway timeout may hide an accepted message: {outcome:?}"
        );
        assert!(fake.sent().is_empty());
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn throughput_limit_130429_is_retryable_despite_http_400() {
        let (fake, client) = fake().await;
        fake.fail_next(
            1,
            Failure::RateLimited {
                code: 130429,
                retry_after: Some(Duration::from_secs(1)),
            },
        );
        let outcome = client.send(&creds(TOKEN), &hello()).await;
        match outcome {
            SendOutcome::Retryable {
                code,
                http_status,
                retry_after,
                reason,
            } => {
                assert_eq!(code, Some(130429));
                assert_eq!(http_status, 400);
                assert_eq!(retry_after, Some(Duration::from_secs(1)));
                assert!(
                    reason.starts_with("code 130429: Rate limit hit"),
                    "{reason}"
                );
            }
            other => panic!("expected Retryable, got {other:?}"),
        }
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn outside_window_131047_is_permanent() {
        let (fake, client) = fake().await;
        fake.fail_next(1, Failure::permanent(131047));
        let outcome = client.send(&creds(TOKEN), &hello()).await;
        match outcome {
            SendOutcome::Permanent {
                code,
                http_status,
                reason,
            } => {
                assert_eq!(code, Some(131047));
                assert_eq!(http_status, 400);
                assert!(
                    reason.starts_with("code 131047: Re-engagement message"),
                    "{reason}"
                );
            }
            other => panic!("expected Permanent, got {other:?}"),
        }
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn bad_token_is_permanent_190_and_never_echoed() {
        let (fake, client) = fake().await;
        let wrong = "EAAJBwrong-secret-token";
        let outcome = client.send(&creds(wrong), &hello()).await;
        match &outcome {
            SendOutcome::Permanent {
                code, http_status, ..
            } => {
                assert_eq!(*code, Some(190));
                assert_eq!(*http_status, 401);
            }
            other => panic!("expected Permanent, got {other:?}"),
        }
        assert!(!format!("{outcome:?}").contains(wrong));
        assert!(!format!("{:?}", creds(wrong)).contains(wrong));
        let attempts = fake.attempts();
        assert_eq!(attempts.len(), 1);
        assert!(!attempts[0].authorized);
        assert!(fake.sent().is_empty());
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn invalid_body_is_permanent_100() {
        let (fake, client) = fake().await;
        let mut body = hello();
        body.as_object_mut().unwrap().remove("to");
        let outcome = client.send(&creds(TOKEN), &body).await;
        assert!(
            matches!(
                outcome,
                SendOutcome::Permanent {
                    code: Some(100),
                    http_status: 400,
                    ..
                }
            ),
            "{outcome:?}"
        );
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn timeout_is_ambiguous_and_the_fake_did_deliver() {
        let fake = FakeGraph::start(FakeGraphOptions::new(TOKEN))
            .await
            .unwrap();
        let client = client(&fake.base_url(), Duration::from_millis(1500));
        fake.fail_next(1, Failure::Timeout);
        let outcome = client.send(&creds(TOKEN), &hello()).await;
        assert!(
            matches!(outcome, SendOutcome::Ambiguous { .. }),
            "{outcome:?}"
        );
        // This is why a timeout must not be resent blindly: Meta took the message.
        let sent = fake.wait_for_sent(1, WAIT).await;
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0].biz_opaque_callback_data.as_deref(),
            Some("outbox:1")
        );
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn dropped_connection_after_send_is_ambiguous() {
        let (fake, client) = fake().await;
        fake.fail_next(1, Failure::DropConnection);
        let outcome = client.send(&creds(TOKEN), &hello()).await;
        assert!(
            matches!(outcome, SendOutcome::Ambiguous { .. }),
            "{outcome:?}"
        );
        assert_eq!(fake.wait_for_sent(1, WAIT).await.len(), 1);
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn connection_refused_is_retryable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = client(&format!("http://{addr}"), Duration::from_secs(10));
        let outcome = client.send(&creds(TOKEN), &hello()).await;
        assert!(
            matches!(
                outcome,
                SendOutcome::Retryable {
                    http_status: 0,
                    code: None,
                    ..
                }
            ),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn mark_read_sends_the_documented_body() {
        let (fake, client) = fake().await;
        client
            .mark_read(&creds(TOKEN), "wamid.INCOMING1", true)
            .await
            .unwrap();
        client
            .mark_read(&creds(TOKEN), "wamid.INCOMING2", false)
            .await
            .unwrap();
        let receipts = fake.read_receipts();
        assert_eq!(receipts.len(), 2);
        assert_eq!(
            receipts[0].body,
            json!({
                "messaging_product": "whatsapp",
                "status": "read",
                "message_id": "wamid.INCOMING1",
                "typing_indicator": { "type": "text" }
            })
        );
        assert!(receipts[0].typing_indicator);
        assert_eq!(
            receipts[1].body,
            json!({
                "messaging_product": "whatsapp",
                "status": "read",
                "message_id": "wamid.INCOMING2"
            })
        );
        assert!(fake.sent().is_empty());
        let err = client
            .mark_read(&creds("nope"), "wamid.INCOMING1", false)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "graph.permanent");
        fake.shutdown().await;
    }

    #[test]
    fn classification_table() {
        use Verdict::*;
        let cases = [
            (400, Some(130429), Retryable),
            (400, Some(131056), Retryable),
            (400, Some(80007), Retryable),
            (429, Some(4), Retryable),
            (400, Some(4), Retryable),
            (503, Some(2), Retryable),
            (503, Some(131016), Retryable),
            (500, Some(131000), Retryable),
            (500, Some(1), Retryable),
            (400, Some(131000), Permanent),
            (400, Some(1), Permanent),
            (400, Some(131047), Permanent),
            (400, Some(131026), Permanent),
            (401, Some(190), Permanent),
            (400, Some(100), Permanent),
            (400, Some(131051), Permanent),
            (400, Some(131021), Permanent),
            (403, Some(368), Permanent),
            (403, Some(131031), Permanent),
            (403, Some(10), Permanent),
            (403, Some(200), Permanent),
            (403, Some(299), Permanent),
            (500, Some(3), Permanent),
            (429, None, Retryable),
            (502, None, Retryable),
            (504, None, Ambiguous),
            (504, Some(131016), Retryable),
            (500, Some(999_999), Retryable),
            (404, None, Permanent),
            (400, Some(999_999), Permanent),
            (302, None, Permanent),
        ];
        for (status, code, want) in cases {
            assert_eq!(classify(status, code), want, "HTTP {status} code {code:?}");
        }
    }

    #[test]
    fn reason_strips_the_code_prefix_and_keeps_details() {
        let body = br#"{"error":{"message":"(#131047) Re-engagement message","type":"OAuthException","code":131047,"error_data":{"messaging_product":"whatsapp","details":"More than 24 hours have passed since the recipient last replied to the sender number."},"fbtrace_id":"Az8or2yhqkZfEZ"}}"#;
        let Failed::Permanent { reason, .. } = error_response(400, body, None) else {
            panic!("expected permanent");
        };
        assert_eq!(
            reason,
            "code 131047: Re-engagement message (More than 24 hours have passed since the recipient last replied to the sender number.)"
        );
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now: jiff::Timestamp = "2024-06-01T12:00:00Z".parse().unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sat, 01 Jun 2024 12:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sat, 01 Jun 2024 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("99999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn credentials_reject_path_injection() {
        assert!(SendCredentials::new("v21.0", "123", "t").is_ok());
        assert!(SendCredentials::new("21.0", "123", "t").is_err());
        assert!(SendCredentials::new("v21.0", "123/../me", "t").is_err());
        assert!(SendCredentials::new("v21.0", "", "t").is_err());
        assert!(SendCredentials::new("v21.0", "123", "has space").is_err());
    }

    proptest! {
        #[test]
        fn backoff_stays_within_bounds(
            attempt in 0u32..200,
            base_ms in 0u64..10_000,
            max_ms in 0u64..3_600_000,
            retry_after_ms in proptest::option::of(0u64..7_200_000),
            seed in any::<u64>(),
        ) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let base = Duration::from_millis(base_ms);
            let max = Duration::from_millis(max_ms);
            let retry_after = retry_after_ms.map(Duration::from_millis);
            let delay = backoff_delay_with(&mut rng, attempt, retry_after, base, max);
            let floor = retry_after.unwrap_or(Duration::ZERO);
            let exp = base.saturating_mul(2u32.saturating_pow(attempt.min(31))).min(max);
            prop_assert!(delay >= floor);
            prop_assert!(delay <= exp.max(floor));
            if retry_after.is_none() {
                prop_assert!(delay <= max);
            }
        }

        #[test]
        fn backoff_cap_grows_then_saturates(
            attempt in 0u32..200,
            base_ms in 1u64..10_000,
            max_ms in 1u64..3_600_000,
        ) {
            let base = Duration::from_millis(base_ms);
            let max = Duration::from_millis(max_ms);
            let now = backoff_cap(attempt, base, max);
            let next = backoff_cap(attempt + 1, base, max);
            prop_assert!(next >= now);
            prop_assert!(next <= max);
        }
    }
}
