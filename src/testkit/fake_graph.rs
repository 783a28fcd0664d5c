//! A local stand-in for the WhatsApp Cloud API messages endpoint, for tests, `wacrm bench` and
//! demos without a Meta account.
//!
//! It speaks the documented protocol of `POST /{Version}/{Phone-Number-ID}/messages`: bearer
//! auth (401 / code 190 otherwise), body validation (400 / code 100), the documented success and
//! error bodies, read receipts, and optionally Meta-shaped, signed status webhooks. Failures are
//! injected explicitly: a scripted queue for the next requests, a "fail for a while" mode, a
//! per-request latency, and a per-recipient pair rate limit (131056).
//!
//! It is deliberately written against raw JSON, not wacrm's own message model, so a mistake in
//! that model cannot be mirrored here and pass unnoticed.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the fake behaves from the start. Everything except the tokens can also be changed while
/// it runs.
#[derive(Clone, Debug)]
pub struct FakeGraphOptions {
    /// Bearer tokens the fake accepts (any phone number id).
    pub access_tokens: Vec<String>,
    /// When set, other phone number ids get Graph's "object does not exist" error.
    pub phone_number_ids: Option<Vec<String>>,
    /// Added before every request is answered.
    pub latency: Option<Duration>,
    /// How long `Failure::Timeout` holds the response; must exceed the client's timeout.
    pub timeout_hold: Duration,
    /// Minimum gap between accepted messages to one recipient from one number; closer sends get
    /// error 131056, like Meta's pair rate limit.
    pub pair_min_gap: Option<Duration>,
    pub status_webhook: Option<StatusWebhookConfig>,
}

impl FakeGraphOptions {
    pub fn new(access_token: impl Into<String>) -> Self {
        Self {
            access_tokens: vec![access_token.into()],
            phone_number_ids: None,
            latency: None,
            timeout_hold: Duration::from_secs(60),
            pair_min_gap: None,
            status_webhook: None,
        }
    }
}

/// Where and how to POST status webhooks for accepted messages.
#[derive(Clone, Debug)]
pub struct StatusWebhookConfig {
    /// The app's webhook callback URL, e.g. `http://127.0.0.1:PORT/webhooks/whatsapp`.
    pub url: String,
    /// Key of the `X-Hub-Signature-256` HMAC.
    pub app_secret: String,
    /// `entry[].id`.
    pub waba_id: String,
    /// `metadata.display_phone_number`.
    pub display_phone_number: String,
    /// Sent in this order per message. Reactions only ever get `Sent`, as on Meta.
    pub statuses: Vec<StatusKind>,
    /// Meta redelivers a webhook that got no answer or a non-2xx one, with backoff, for days; the
    /// fake keeps retrying for this long (0: one try only). Crash tests rely on it: a status
    /// posted while the app is down must still arrive after it restarts.
    pub retry_for: Duration,
    /// First retry delay; it doubles up to `retry_max_delay`.
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    /// Wait after accepting a message before its first status: Meta's statuses come a moment
    /// after the answer, not with it.
    pub delay: Duration,
}

impl StatusWebhookConfig {
    pub fn new(url: impl Into<String>, app_secret: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            app_secret: app_secret.into(),
            waba_id: "102290129340398".into(),
            display_phone_number: "15550783881".into(),
            statuses: vec![StatusKind::Sent, StatusKind::Delivered, StatusKind::Read],
            retry_for: Duration::from_secs(30),
            retry_base_delay: Duration::from_millis(50),
            retry_max_delay: Duration::from_millis(500),
            delay: Duration::ZERO,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusKind {
    Sent,
    Delivered,
    Read,
}

impl StatusKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
        }
    }
}

/// An injected answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A documented throttling error (130429, 131056, 80007, 4, ...): HTTP 400 as Meta sends
    /// them (429 for code 4), with a `Retry-After` header when given.
    RateLimited {
        code: i64,
        retry_after: Option<Duration>,
    },
    /// HTTP 429 with Graph error code 4 and an optional `Retry-After`.
    TooManyRequests { retry_after: Option<Duration> },
    /// 500 answers code 131000, 503 code 131016, other statuses a non-JSON gateway page.
    Http5xx(u16),
    /// Any Graph error; see [`Failure::permanent`] for documented ones.
    Permanent {
        code: i64,
        http_status: u16,
        message: String,
        details: Option<String>,
    },
    /// Accept and record the message (it is delivered, webhooks fire), but answer only after
    /// `timeout_hold`: the client times out without knowing that Meta took it.
    Timeout,
    /// Accept and record the message, then cut the connection before the answer completes.
    DropConnection,
}

impl Failure {
    /// The documented error for `code` with its documented HTTP status.
    pub fn permanent(code: i64) -> Self {
        let (http_status, message, details) = match code {
            131047 => (
                400,
                "Re-engagement message",
                "More than 24 hours have passed since the recipient last replied to the sender number.",
            ),
            131026 => (
                400,
                "Message Undeliverable",
                "Unable to deliver message. Reasons can include: The recipient phone number is not a WhatsApp phone number.",
            ),
            131051 => (400, "Unsupported message type", "Message type is not currently supported."),
            131021 => (400, "Recipient cannot be sender", "Sender and recipient phone number is the same."),
            368 => (403, "Temporarily blocked for policies violations", "The WhatsApp Business Account has been restricted for violating a platform policy."),
            131031 => (403, "Account has been locked", "The WhatsApp Business Account has been locked."),
            10 => (403, "Permission denied", "Permission is either not granted or has been removed."),
            100 => (400, "Invalid parameter", "Invalid parameter"),
            _ => (400, "Error", "Injected error"),
        };
        Self::Permanent {
            code,
            http_status,
            message: message.into(),
            details: Some(details.into()),
        }
    }
}

/// A message the fake accepted (what Meta would deliver).
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedSend {
    pub api_version: String,
    pub phone_number_id: String,
    pub wamid: String,
    pub to: String,
    pub wa_id: String,
    pub message_type: String,
    pub biz_opaque_callback_data: Option<String>,
    pub body: Value,
    pub received_at: jiff::Timestamp,
}

/// Any request to the messages endpoint, and how it was answered.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedAttempt {
    pub api_version: String,
    pub phone_number_id: String,
    pub authorized: bool,
    /// `None` when the body was not JSON.
    pub body: Option<Value>,
    /// The status answered (200 for `Timeout` / `DropConnection`, which accept the message).
    pub http_status: u16,
    pub error_code: Option<i64>,
    pub wamid: Option<String>,
    pub injected: Option<Failure>,
    pub received_at: jiff::Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RecordedReadReceipt {
    pub api_version: String,
    pub phone_number_id: String,
    pub message_id: String,
    pub typing_indicator: bool,
    pub body: Value,
    pub received_at: jiff::Timestamp,
}

/// One status webhook the fake POSTed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub wamid: String,
    pub status: StatusKind,
    /// Last HTTP status from the receiver, `None` if it never answered.
    pub http_status: Option<u16>,
    pub tries: u32,
}

/// The running fake. Dropping it stops it too; `shutdown` also waits until it has stopped.
pub struct FakeGraph {
    addr: SocketAddr,
    inner: Arc<Inner>,
    server: Option<JoinHandle<()>>,
}

struct Inner {
    tokens: Vec<String>,
    phone_number_ids: Option<Vec<String>>,
    timeout_hold: Duration,
    state: Mutex<FakeState>,
    counts: watch::Sender<Counts>,
    shutdown: watch::Sender<bool>,
    webhook_http: reqwest::Client,
}

#[derive(Default)]
struct FakeState {
    latency: Option<Duration>,
    answer_delay: Option<Duration>,
    pair_min_gap: Option<Duration>,
    status_webhook: Option<Arc<StatusWebhookConfig>>,
    script: VecDeque<Failure>,
    fail_window: Option<(Failure, Option<Instant>)>,
    last_accepted: HashMap<(String, String), Instant>,
    next_id: u64,
    sent: Vec<RecordedSend>,
    attempts: Vec<RecordedAttempt>,
    read_receipts: Vec<RecordedReadReceipt>,
    webhooks: Vec<WebhookDelivery>,
}

/// Record counts, published after each record so waiters need no polling.
#[derive(Clone, Copy, Default)]
struct Counts {
    sent: usize,
    attempts: usize,
    read_receipts: usize,
    webhooks: usize,
}

impl FakeGraph {
    /// Binds 127.0.0.1 on a free port and serves until `shutdown` or drop.
    pub async fn start(opts: FakeGraphOptions) -> std::io::Result<FakeGraph> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let webhook_http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs(10))
            .user_agent("facebookexternalua")
            .build()
            .map_err(std::io::Error::other)?;
        let (counts, _) = watch::channel(Counts::default());
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            tokens: opts.access_tokens,
            phone_number_ids: opts.phone_number_ids,
            timeout_hold: opts.timeout_hold,
            state: Mutex::new(FakeState {
                latency: opts.latency,
                pair_min_gap: opts.pair_min_gap,
                status_webhook: opts.status_webhook.map(Arc::new),
                ..FakeState::default()
            }),
            counts,
            shutdown,
            webhook_http,
        });
        let app = Router::new()
            .route("/{version}/{phone_number_id}/messages", post(messages))
            .fallback(unknown_path)
            .with_state(inner.clone());
        let mut stop = inner.shutdown.subscribe();
        let server = tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::warn!(error = %e, "fake graph server stopped with an error");
            }
        });
        Ok(FakeGraph {
            addr,
            inner,
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`, to use as the Graph client's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn sent(&self) -> Vec<RecordedSend> {
        self.inner.state().sent.clone()
    }

    pub fn attempts(&self) -> Vec<RecordedAttempt> {
        self.inner.state().attempts.clone()
    }

    pub fn read_receipts(&self) -> Vec<RecordedReadReceipt> {
        self.inner.state().read_receipts.clone()
    }

    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.inner.state().webhooks.clone()
    }

    /// Waits until at least `n` messages were accepted, or `timeout`; returns all accepted.
    pub async fn wait_for_sent(&self, n: usize, timeout: Duration) -> Vec<RecordedSend> {
        self.wait_until(timeout, |c| c.sent >= n).await;
        self.sent()
    }

    pub async fn wait_for_attempts(&self, n: usize, timeout: Duration) -> Vec<RecordedAttempt> {
        self.wait_until(timeout, |c| c.attempts >= n).await;
        self.attempts()
    }

    pub async fn wait_for_read_receipts(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Vec<RecordedReadReceipt> {
        self.wait_until(timeout, |c| c.read_receipts >= n).await;
        self.read_receipts()
    }

    /// Waits until at least `n` status webhooks were attempted (answered or given up).
    pub async fn wait_for_webhooks(&self, n: usize, timeout: Duration) -> Vec<WebhookDelivery> {
        self.wait_until(timeout, |c| c.webhooks >= n).await;
        self.webhook_deliveries()
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn(&Counts) -> bool) {
        let mut rx = self.inner.counts.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|c| done(c))).await;
    }

    /// Answers the next `n` requests with `failure` (after any already queued).
    pub fn fail_next(&self, n: usize, failure: Failure) {
        let mut state = self.inner.state();
        state.script.extend(std::iter::repeat_n(failure, n));
    }

    /// Answers every request with `failure` for `duration` (once the queue is empty).
    pub fn fail_for(&self, duration: Duration, failure: Failure) {
        self.inner.state().fail_window = Some((failure, Instant::now().checked_add(duration)));
    }

    /// Answers every request with `failure` until `clear_failures`.
    pub fn fail_always(&self, failure: Failure) {
        self.inner.state().fail_window = Some((failure, None));
    }

    pub fn clear_failures(&self) {
        let mut state = self.inner.state();
        state.script.clear();
        state.fail_window = None;
    }

    pub fn set_latency(&self, latency: Option<Duration>) {
        self.inner.state().latency = latency;
    }

    /// Holds every answer this long *after* the request was decided and recorded: the window in
    /// which Meta has the message but the client does not know yet (where a crash or a lost
    /// answer leaves the client unsure whether it was sent). `set_latency` delays before.
    pub fn set_answer_delay(&self, delay: Option<Duration>) {
        self.inner.state().answer_delay = delay;
    }

    pub fn set_pair_min_gap(&self, gap: Option<Duration>) {
        self.inner.state().pair_min_gap = gap;
    }

    /// Lets a bench start the fake first and point it at the app's webhook once that listens.
    pub fn set_status_webhook(&self, config: Option<StatusWebhookConfig>) {
        self.inner.state().status_webhook = config.map(Arc::new);
    }

    /// Stops serving: held requests are answered at once, webhook senders stop.
    pub async fn shutdown(mut self) {
        self.inner.shutdown.send_replace(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for FakeGraph {
    fn drop(&mut self) {
        self.inner.shutdown.send_replace(true);
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, FakeState> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes new counts; called after the state lock is released, so a waiter reading
    /// counts never contends with a recorder holding the state.
    fn bump(&self, f: impl FnOnce(&mut Counts)) {
        self.counts.send_modify(f);
    }
}

/// What the handler does after deciding.
enum Reply {
    Now(Response),
    Hold(Response),
    Drop,
}

async fn messages(
    State(inner): State<Arc<Inner>>,
    Path((version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = inner.state().latency;
    if let Some(latency) = latency {
        tokio::time::sleep(latency).await;
    }
    let request = Request {
        authorized: bearer_ok(&headers, &inner.tokens),
        body: serde_json::from_slice(&body).ok(),
        version,
        phone_number_id,
        received_at: jiff::Timestamp::now(),
    };
    let (reply, accepted) = decide(&inner, request);
    if let Some((send, config)) = accepted {
        spawn_status_webhooks(inner.clone(), config, send);
    }
    let answer_delay = inner.state().answer_delay;
    if let Some(delay) = answer_delay {
        let mut stop = inner.shutdown.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
    match reply {
        Reply::Now(response) => response,
        Reply::Hold(response) => {
            let mut stop = inner.shutdown.subscribe();
            tokio::select! {
                _ = tokio::time::sleep(inner.timeout_hold) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            response
        }
        Reply::Drop => {
            // Headers may go out, the body never completes: the client sees a broken response.
            let broken = futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "fake graph dropped the connection",
                ))
            });
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(broken))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    }
}

struct Request {
    authorized: bool,
    body: Option<Value>,
    version: String,
    phone_number_id: String,
    received_at: jiff::Timestamp,
}

enum Outcome {
    Rejected,
    Sent(Box<RecordedSend>),
    Read(RecordedReadReceipt),
}

/// Decides the answer and records it, under one lock so concurrent requests see a consistent
/// script, pair-limit clock and id counter.
fn decide(
    inner: &Inner,
    req: Request,
) -> (Reply, Option<(RecordedSend, Arc<StatusWebhookConfig>)>) {
    let mut state = inner.state();
    let mut attempt = RecordedAttempt {
        api_version: req.version.clone(),
        phone_number_id: req.phone_number_id.clone(),
        authorized: req.authorized,
        body: req.body.clone(),
        http_status: 200,
        error_code: None,
        wamid: None,
        injected: None,
        received_at: req.received_at,
    };
    let (reply, outcome) = match answer(inner, &mut state, &req, &mut attempt) {
        Ok(answered) => answered,
        Err(rejection) => {
            attempt.http_status = rejection.http_status;
            attempt.error_code = rejection.code;
            (Reply::Now(*rejection.response), Outcome::Rejected)
        }
    };
    state.attempts.push(attempt);
    let mut accepted = None;
    let (mut sent, mut read) = (0, 0);
    match outcome {
        Outcome::Rejected => {}
        Outcome::Sent(send) => {
            accepted = state.status_webhook.clone().map(|c| ((*send).clone(), c));
            state.sent.push(*send);
            sent = 1;
        }
        Outcome::Read(receipt) => {
            state.read_receipts.push(receipt);
            read = 1;
        }
    }
    drop(state);
    inner.bump(|c| {
        c.attempts += 1;
        c.sent += sent;
        c.read_receipts += read;
    });
    (reply, accepted)
}

/// A Graph error answer.
struct Rejection {
    http_status: u16,
    code: Option<i64>,
    /// Boxed: a `Response` would make every `Result<_, Rejection>` needlessly large.
    response: Box<Response>,
}

fn answer(
    inner: &Inner,
    state: &mut FakeState,
    req: &Request,
    attempt: &mut RecordedAttempt,
) -> Result<(Reply, Outcome), Rejection> {
    if !is_api_version(&req.version) {
        return Err(graph_error(
            400,
            2500,
            &format!(
                "Unknown path components: /{}/{}/messages",
                req.version, req.phone_number_id
            ),
            None,
            None,
        ));
    }
    if !req.authorized {
        let mut rejection = graph_error(
            401,
            190,
            "Invalid OAuth access token - Cannot parse access token",
            None,
            None,
        );
        rejection.response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "OAuth \"Facebook Platform\" \"invalid_token\" \"Invalid OAuth access token - Cannot parse access token\"",
            ),
        );
        return Err(rejection);
    }
    if let Some(known) = &inner.phone_number_ids {
        if !known.contains(&req.phone_number_id) {
            return Err(graph_error(
                400,
                100,
                &format!(
                    "Unsupported post request. Object with ID '{}' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api",
                    req.phone_number_id
                ),
                None,
                None,
            ));
        }
    }

    let injected = next_failure(state);
    attempt.injected = injected.clone();
    if let Some(failure) = &injected {
        if let Some(rejection) = injected_rejection(failure) {
            return Err(rejection);
        }
    }
    // Only Timeout and DropConnection get here: they accept first, then misbehave.
    let wrap = |response: Response| match injected {
        Some(Failure::Timeout) => Reply::Hold(response),
        Some(Failure::DropConnection) => Reply::Drop,
        _ => Reply::Now(response),
    };

    let Some(body) = req.body.as_ref().and_then(Value::as_object) else {
        return Err(invalid_parameter("The request body must be a JSON object."));
    };
    if body.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return Err(graph_error(
            400,
            100,
            "(#100) The parameter messaging_product is required.",
            None,
            None,
        ));
    }

    if body.contains_key("status") {
        let receipt = read_receipt(req, body)?;
        let response = axum::Json(json!({ "success": true })).into_response();
        return Ok((wrap(response), Outcome::Read(receipt)));
    }

    let fields = validate_send(body)?;
    let now = Instant::now();
    let pair = (req.phone_number_id.clone(), fields.wa_id.clone());
    if let (Some(gap), Some(last)) = (state.pair_min_gap, state.last_accepted.get(&pair)) {
        if now.duration_since(*last) < gap {
            return Err(graph_error(
                400,
                131056,
                "(#131056) (Business Account, Consumer Account) pair rate limit hit",
                Some("Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time."),
                None,
            ));
        }
    }
    state.last_accepted.insert(pair, now);
    state.next_id += 1;
    let wamid = make_wamid(&req.phone_number_id, &fields.wa_id, state.next_id);
    attempt.wamid = Some(wamid.clone());

    let mut message = json!({ "id": wamid });
    if fields.message_type == "template" {
        message["message_status"] = json!("accepted");
    }
    let response = axum::Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [ { "input": fields.to, "wa_id": fields.wa_id } ],
        "messages": [ message ],
    }))
    .into_response();
    let send = RecordedSend {
        api_version: req.version.clone(),
        phone_number_id: req.phone_number_id.clone(),
        wamid,
        to: fields.to,
        wa_id: fields.wa_id,
        message_type: fields.message_type,
        biz_opaque_callback_data: fields.biz_opaque_callback_data,
        body: Value::Object(body.clone()),
        received_at: req.received_at,
    };
    Ok((wrap(response), Outcome::Sent(Box::new(send))))
}

/// The scripted queue first, then the "fail for a while" window.
fn next_failure(state: &mut FakeState) -> Option<Failure> {
    if let Some(failure) = state.script.pop_front() {
        return Some(failure);
    }
    match &state.fail_window {
        Some((failure, None)) => Some(failure.clone()),
        Some((failure, Some(until))) if Instant::now() < *until => Some(failure.clone()),
        Some(_) => {
            state.fail_window = None;
            None
        }
        None => None,
    }
}

fn injected_rejection(failure: &Failure) -> Option<Rejection> {
    Some(match failure {
        Failure::RateLimited { code, retry_after } => {
            let (status, title, details) = throttle_error(*code);
            graph_error(
                status,
                *code,
                &numbered(*code, title),
                Some(details),
                *retry_after,
            )
        }
        Failure::TooManyRequests { retry_after } => {
            let (_, title, details) = throttle_error(4);
            graph_error(429, 4, &numbered(4, title), Some(details), *retry_after)
        }
        Failure::Http5xx(500) => graph_error(
            500,
            131000,
            "(#131000) Something went wrong",
            Some("Message failed to send due to an unknown error."),
            None,
        ),
        Failure::Http5xx(503) => graph_error(
            503,
            131016,
            "(#131016) Service unavailable",
            Some("A service is temporarily unavailable."),
            None,
        ),
        Failure::Http5xx(status) => {
            // What a load balancer in front of Graph answers: not JSON, no Graph code.
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
            let page = format!(
                "<html><body><h1>{} {}</h1></body></html>",
                code.as_u16(),
                code.canonical_reason().unwrap_or("Error")
            );
            Rejection {
                http_status: code.as_u16(),
                code: None,
                response: Box::new(
                    (code, [(header::CONTENT_TYPE, "text/html")], page).into_response(),
                ),
            }
        }
        Failure::Permanent {
            code,
            http_status,
            message,
            details,
        } => graph_error(
            *http_status,
            *code,
            &numbered(*code, message),
            details.as_deref(),
            None,
        ),
        Failure::Timeout | Failure::DropConnection => return None,
    })
}

/// Documented status, title and details of the throttling codes.
fn throttle_error(code: i64) -> (u16, &'static str, &'static str) {
    match code {
        130429 => (
            400,
            "Rate limit hit",
            "Message failed to send because there were too many messages sent from this phone number in a short period of time",
        ),
        131056 => (
            400,
            "(Business Account, Consumer Account) pair rate limit hit",
            "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.",
        ),
        80007 => (
            400,
            "Rate limit issues",
            "The WhatsApp Business Account has reached its rate limit.",
        ),
        4 => (
            429,
            "Application request limit reached",
            "The app has reached its API call rate limit.",
        ),
        _ => (400, "Rate limit hit", "Too many requests."),
    }
}

fn numbered(code: i64, title: &str) -> String {
    format!("(#{code}) {title}")
}

fn graph_error(
    http_status: u16,
    code: i64,
    message: &str,
    details: Option<&str>,
    retry_after: Option<Duration>,
) -> Rejection {
    let mut error = json!({
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": fbtrace_id(),
    });
    if let Some(details) = details {
        error["error_data"] = json!({ "messaging_product": "whatsapp", "details": details });
    }
    let status = StatusCode::from_u16(http_status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, axum::Json(json!({ "error": error }))).into_response();
    if let Some(delay) = retry_after {
        let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    Rejection {
        http_status: status.as_u16(),
        code: Some(code),
        response: Box::new(response),
    }
}

fn invalid_parameter(details: &str) -> Rejection {
    graph_error(400, 100, "(#100) Invalid parameter", Some(details), None)
}

fn required(param: &str) -> Rejection {
    graph_error(
        400,
        100,
        &format!("(#100) The parameter {param} is required."),
        None,
        None,
    )
}

fn read_receipt(
    req: &Request,
    body: &Map<String, Value>,
) -> Result<RecordedReadReceipt, Rejection> {
    if body.get("status").and_then(Value::as_str) != Some("read") {
        return Err(invalid_parameter("Parameter 'status' must be 'read'."));
    }
    let message_id = non_empty_str(body, "message_id").ok_or_else(|| required("message_id"))?;
    let typing_indicator = match body.get("typing_indicator") {
        None => false,
        Some(t) if t.get("type").and_then(Value::as_str) == Some("text") => true,
        Some(_) => {
            return Err(invalid_parameter(
                "Parameter 'typing_indicator.type' must be 'text'.",
            ))
        }
    };
    Ok(RecordedReadReceipt {
        api_version: req.version.clone(),
        phone_number_id: req.phone_number_id.clone(),
        message_id: message_id.to_string(),
        typing_indicator,
        body: Value::Object(body.clone()),
        received_at: req.received_at,
    })
}

struct SendFields {
    to: String,
    wa_id: String,
    message_type: String,
    biz_opaque_callback_data: Option<String>,
}

/// The documented shape of a send body; stricter than Meta only where Meta's leniency would
/// hide a bug of ours (`type` is required here, Meta defaults it to text).
fn validate_send(body: &Map<String, Value>) -> Result<SendFields, Rejection> {
    let to = non_empty_str(body, "to").ok_or_else(|| required("to"))?;
    let wa_id: String = to.chars().filter(char::is_ascii_digit).collect();
    let allowed = |c: char| c.is_ascii_digit() || " +-()".contains(c);
    if !(5..=20).contains(&wa_id.len()) || !to.chars().all(allowed) {
        return Err(invalid_parameter(
            "Parameter 'to' is not a valid phone number.",
        ));
    }
    if let Some(kind) = body.get("recipient_type") {
        if kind != "individual" && kind != "group" {
            return Err(invalid_parameter(
                "Parameter 'recipient_type' must be 'individual' or 'group'.",
            ));
        }
    }
    if let Some(context) = body.get("context") {
        if context.get("message_id").and_then(Value::as_str).is_none() {
            return Err(required("context.message_id"));
        }
    }
    let biz_opaque_callback_data =
        match body.get("biz_opaque_callback_data") {
            None => None,
            Some(Value::String(s)) if s.chars().count() <= 512 => Some(s.clone()),
            Some(_) => return Err(invalid_parameter(
                "Parameter 'biz_opaque_callback_data' must be a string of at most 512 characters.",
            )),
        };
    let message_type = non_empty_str(body, "type").ok_or_else(|| required("type"))?;
    validate_type_object(body, message_type)?;
    Ok(SendFields {
        to: to.to_string(),
        wa_id,
        message_type: message_type.to_string(),
        biz_opaque_callback_data,
    })
}

fn validate_type_object(body: &Map<String, Value>, kind: &str) -> Result<(), Rejection> {
    if kind == "contacts" {
        return match body.get("contacts").and_then(Value::as_array) {
            Some(cards) if !cards.is_empty() => Ok(()),
            _ => Err(required("contacts")),
        };
    }
    let known = [
        "text",
        "image",
        "audio",
        "video",
        "document",
        "sticker",
        "template",
        "interactive",
        "reaction",
        "location",
    ];
    if !known.contains(&kind) {
        return Err(invalid_parameter(&format!(
            "Parameter 'type' must be one of {}.",
            known.join(", ")
        )));
    }
    let obj = body
        .get(kind)
        .and_then(Value::as_object)
        .ok_or_else(|| required(kind))?;
    let need = |key: &str| {
        non_empty_str(obj, key)
            .map(|_| ())
            .ok_or_else(|| required(&format!("{kind}.{key}")))
    };
    match kind {
        "text" => need("body"),
        "image" | "audio" | "video" | "document" | "sticker" => {
            match (non_empty_str(obj, "id"), non_empty_str(obj, "link")) {
                (Some(_), None) | (None, Some(_)) => Ok(()),
                _ => Err(invalid_parameter(&format!(
                    "Exactly one of {kind}.id and {kind}.link is required."
                ))),
            }
        }
        "template" => {
            need("name")?;
            let code = obj.get("language").and_then(|l| l.get("code"));
            if code.and_then(Value::as_str).is_none_or(str::is_empty) {
                return Err(required("template.language.code"));
            }
            match obj.get("components") {
                None | Some(Value::Array(_)) => Ok(()),
                Some(_) => Err(invalid_parameter(
                    "Parameter 'template.components' must be an array.",
                )),
            }
        }
        "interactive" => {
            let itype = non_empty_str(obj, "type").ok_or_else(|| required("interactive.type"))?;
            if !obj.get("action").is_some_and(Value::is_object) {
                return Err(required("interactive.action"));
            }
            let needs_body = ["button", "list", "cta_url", "product_list"].contains(&itype);
            let has_body = obj
                .get("body")
                .and_then(|b| b.get("text"))
                .and_then(Value::as_str)
                .is_some_and(|t| !t.is_empty());
            if needs_body && !has_body {
                return Err(required("interactive.body.text"));
            }
            Ok(())
        }
        "reaction" => {
            need("message_id")?;
            // An empty emoji removes a reaction, so only its presence is required.
            match obj.get("emoji") {
                Some(Value::String(_)) => Ok(()),
                _ => Err(required("reaction.emoji")),
            }
        }
        "location" => {
            let degrees = |key: &str| match obj.get(key) {
                Some(Value::Number(n)) => n.as_f64(),
                Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            match (degrees("latitude"), degrees("longitude")) {
                (Some(lat), Some(lon)) if lat.abs() <= 90.0 && lon.abs() <= 180.0 => Ok(()),
                _ => Err(invalid_parameter(
                    "Parameters 'location.latitude' and 'location.longitude' must be decimal degrees.",
                )),
            }
        }
        _ => Ok(()),
    }
}

fn non_empty_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn is_api_version(v: &str) -> bool {
    let Some((major, minor)) = v.strip_prefix('v').and_then(|r| r.split_once('.')) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(major) && digits(minor)
}

fn bearer_ok(headers: &HeaderMap, tokens: &[String]) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| tokens.iter().any(|t| t == token))
}

/// Unique and shaped like Meta's: `wamid.` and base64.
fn make_wamid(phone_number_id: &str, wa_id: &str, n: u64) -> String {
    let raw = format!(
        "{wa_id}:{phone_number_id}:{n}:{}",
        uuid::Uuid::new_v4().simple()
    );
    format!(
        "wamid.{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn fbtrace_id() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
}

async fn unknown_path() -> Response {
    *graph_error(400, 2500, "Unknown path components", None, None).response
}

/// `sha256=<hex HMAC-SHA256(app_secret, raw_body)>`, the `X-Hub-Signature-256` value Meta sends.
pub fn sign_webhook(app_secret: &str, raw_body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail; stay total anyway.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()) else {
        return String::new();
    };
    mac.update(raw_body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The documented status webhook for one message and one status.
pub fn status_webhook_payload(
    config: &StatusWebhookConfig,
    send: &RecordedSend,
    status: StatusKind,
    at: jiff::Timestamp,
) -> Value {
    let mut entry = json!({
        "id": send.wamid,
        "status": status.as_str(),
        "timestamp": at.as_second().to_string(),
        "recipient_id": send.wa_id,
    });
    if let Some(data) = &send.biz_opaque_callback_data {
        entry["biz_opaque_callback_data"] = json!(data);
    }
    // Pricing rides on `sent` and one of `delivered`/`read`.
    if status != StatusKind::Read {
        let template = send.message_type == "template";
        entry["pricing"] = json!({
            "billable": template,
            "pricing_model": "PMP",
            "type": if template { "regular" } else { "free_customer_service" },
            "category": if template { "utility" } else { "service" },
        });
    }
    json!({
        "object": "whatsapp_business_account",
        "entry": [ {
            "id": config.waba_id,
            "changes": [ {
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": config.display_phone_number,
                        "phone_number_id": send.phone_number_id,
                    },
                    "statuses": [ entry ],
                },
                "field": "messages",
            } ],
        } ],
    })
}

fn spawn_status_webhooks(inner: Arc<Inner>, config: Arc<StatusWebhookConfig>, send: RecordedSend) {
    tokio::spawn(async move {
        let mut stop = inner.shutdown.subscribe();
        if !config.delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(config.delay) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        let reaction = send.message_type == "reaction";
        for &status in &config.statuses {
            if reaction && status != StatusKind::Sent {
                continue;
            }
            let payload = status_webhook_payload(&config, &send, status, jiff::Timestamp::now());
            let Ok(raw) = serde_json::to_vec(&payload) else {
                return;
            };
            let signature = sign_webhook(&config.app_secret, &raw);
            let delivery = tokio::select! {
                d = post_webhook(&inner.webhook_http, &config, raw, &signature) => d,
                _ = stop.wait_for(|s| *s) => return,
            };
            let (http_status, tries) = delivery;
            inner.state().webhooks.push(WebhookDelivery {
                wamid: send.wamid.clone(),
                status,
                http_status,
                tries,
            });
            inner.bump(|c| c.webhooks += 1);
        }
    });
}

/// Posts one webhook, retrying failures (connection errors, non-2xx answers) with doubling
/// delays until `config.retry_for` is spent. Returns the last HTTP status and the tries made.
async fn post_webhook(
    http: &reqwest::Client,
    config: &StatusWebhookConfig,
    raw: Vec<u8>,
    signature: &str,
) -> (Option<u16>, u32) {
    let started = Instant::now();
    let mut delay = config.retry_base_delay;
    let mut last = None;
    let mut tries = 0u32;
    loop {
        tries += 1;
        let result = http
            .post(&config.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header("X-Hub-Signature-256", signature)
            .body(raw.clone())
            .send()
            .await;
        if let Ok(response) = result {
            let status = response.status();
            last = Some(status.as_u16());
            if status.is_success() {
                return (last, tries);
            }
        }
        if started.elapsed() + delay > config.retry_for {
            return (last, tries);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(config.retry_max_delay.max(config.retry_base_delay));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    const TOKEN: &str = "EAAJBfake";
    const PHONE_ID: &str = "106540352242922";
    const WAIT: Duration = Duration::from_secs(10);

    struct Client {
        http: reqwest::Client,
        url: String,
    }

    impl Client {
        fn new(fake: &FakeGraph) -> Self {
            Self {
                http: reqwest::Client::new(),
                url: format!("{}/v21.0/{PHONE_ID}/messages", fake.base_url()),
            }
        }

        async fn post(&self, token: &str, body: &Value) -> (u16, HeaderMap, Value) {
            let response = self
                .http
                .post(&self.url)
                .bearer_auth(token)
                .json(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.json::<Value>().await.unwrap_or(Value::Null);
            (status, headers, body)
        }
    }

    fn text_to(to: &str) -> Value {
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": { "body": "hi" },
            "biz_opaque_callback_data": "outbox:7"
        })
    }

    async fn start() -> (FakeGraph, Client) {
        let fake = FakeGraph::start(FakeGraphOptions::new(TOKEN))
            .await
            .unwrap();
        let client = Client::new(&fake);
        (fake, client)
    }

    #[tokio::test]
    async fn success_body_is_the_documented_shape_with_unique_wamids() {
        let (fake, client) = start().await;
        let (status, _, first) = client.post(TOKEN, &text_to("+1 650-555-1234")).await;
        assert_eq!(status, 200);
        assert_eq!(first["messaging_product"], "whatsapp");
        assert_eq!(
            first["contacts"],
            json!([ { "input": "+1 650-555-1234", "wa_id": "16505551234" } ])
        );
        let id = first["messages"][0]["id"].as_str().unwrap();
        assert!(id.starts_with("wamid."));
        let template = json!({
            "messaging_product": "whatsapp",
            "to": "16505551234",
            "type": "template",
            "template": { "name": "hello_world", "language": { "code": "en_US" } }
        });
        let (_, _, second) = client.post(TOKEN, &template).await;
        assert_eq!(second["messages"][0]["message_status"], "accepted");
        assert_ne!(second["messages"][0]["id"], first["messages"][0]["id"]);
        let sent = fake.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].wamid, id);
        assert_eq!(sent[0].message_type, "text");
        assert_eq!(sent[1].message_type, "template");
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn wrong_token_gets_401_oauth_exception_190() {
        let (fake, client) = start().await;
        let (status, headers, body) = client.post("wrong", &text_to("16505551234")).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"]["code"], 190);
        assert_eq!(body["error"]["type"], "OAuthException");
        assert!(body["error"]["fbtrace_id"].is_string());
        assert!(headers.contains_key(header::WWW_AUTHENTICATE));
        assert!(fake.sent().is_empty());
        assert_eq!(fake.attempts().len(), 1);
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn malformed_bodies_get_400_code_100() {
        let (fake, client) = start().await;
        let mut cases = Vec::new();
        for key in ["to", "type", "messaging_product", "text"] {
            let mut body = text_to("16505551234");
            body.as_object_mut().unwrap().remove(key);
            cases.push(body);
        }
        cases.push(json!({
            "messaging_product": "whatsapp", "to": "16505551234", "type": "image",
            "image": { "id": "1", "link": "https://x/y.png" }
        }));
        cases.push(json!({
            "messaging_product": "whatsapp", "to": "16505551234", "type": "template",
            "template": { "name": "t" }
        }));
        cases.push(json!({
            "messaging_product": "whatsapp", "to": "not-a-number", "type": "text",
            "text": { "body": "x" }
        }));
        cases.push(json!([1, 2]));
        for body in cases {
            let (status, _, answer) = client.post(TOKEN, &body).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(answer["error"]["code"], 100, "{body}");
        }
        assert!(fake.sent().is_empty());
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn unknown_version_and_phone_number_id_are_rejected() {
        let mut opts = FakeGraphOptions::new(TOKEN);
        opts.phone_number_ids = Some(vec![PHONE_ID.into()]);
        let fake = FakeGraph::start(opts).await.unwrap();
        let http = reqwest::Client::new();
        for (path, code) in [
            ("v21.0/999/messages", 100),
            ("latest/106540352242922/messages", 2500),
        ] {
            let response = http
                .post(format!("{}/{path}", fake.base_url()))
                .bearer_auth(TOKEN)
                .json(&text_to("16505551234"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], code, "{path}");
        }
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn pair_rate_limit_rejects_a_second_message_to_the_same_recipient() {
        let mut opts = FakeGraphOptions::new(TOKEN);
        opts.pair_min_gap = Some(Duration::from_secs(3600));
        let fake = FakeGraph::start(opts).await.unwrap();
        let client = Client::new(&fake);
        assert_eq!(client.post(TOKEN, &text_to("16505551234")).await.0, 200);
        let (status, _, body) = client.post(TOKEN, &text_to("+16505551234")).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], 131056);
        assert_eq!(client.post(TOKEN, &text_to("16505550000")).await.0, 200);
        fake.set_pair_min_gap(None);
        assert_eq!(client.post(TOKEN, &text_to("16505551234")).await.0, 200);
        assert_eq!(fake.sent().len(), 3);
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn scripted_failures_are_consumed_in_order_then_the_window_applies() {
        let (fake, client) = start().await;
        fake.fail_next(1, Failure::permanent(131026));
        fake.fail_next(
            1,
            Failure::RateLimited {
                code: 80007,
                retry_after: Some(Duration::from_millis(1500)),
            },
        );
        let (status, _, body) = client.post(TOKEN, &text_to("16505551234")).await;
        assert_eq!(
            (status, body["error"]["code"].as_i64()),
            (400, Some(131026))
        );
        let (status, headers, body) = client.post(TOKEN, &text_to("16505551234")).await;
        assert_eq!((status, body["error"]["code"].as_i64()), (400, Some(80007)));
        assert_eq!(headers[header::RETRY_AFTER], "2");
        fake.fail_always(Failure::Http5xx(500));
        for _ in 0..2 {
            let (status, _, body) = client.post(TOKEN, &text_to("16505551234")).await;
            assert_eq!(
                (status, body["error"]["code"].as_i64()),
                (500, Some(131000))
            );
        }
        fake.clear_failures();
        assert_eq!(client.post(TOKEN, &text_to("16505551234")).await.0, 200);
        let attempts = fake.attempts();
        assert_eq!(attempts.len(), 5);
        assert_eq!(attempts[0].injected, Some(Failure::permanent(131026)));
        assert_eq!(attempts[4].injected, None);
        assert_eq!(attempts[4].wamid, Some(fake.sent()[0].wamid.clone()));
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn concurrent_sends_are_all_recorded_and_awaitable() {
        let (fake, _) = start().await;
        let base = fake.base_url();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let url = format!("{base}/v21.0/{PHONE_ID}/messages");
                tokio::spawn(async move {
                    reqwest::Client::new()
                        .post(url)
                        .bearer_auth(TOKEN)
                        .json(&text_to(&format!("1650555{i:04}")))
                        .send()
                        .await
                        .unwrap()
                        .status()
                })
            })
            .collect();
        let sent = fake.wait_for_sent(20, WAIT).await;
        assert_eq!(sent.len(), 20);
        let mut ids: Vec<_> = sent.iter().map(|s| s.wamid.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 20);
        for task in tasks {
            assert_eq!(task.await.unwrap(), 200);
        }
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_releases_a_held_request() {
        let (fake, client) = start().await;
        fake.fail_next(1, Failure::Timeout);
        let pending =
            tokio::spawn(async move { client.post(TOKEN, &text_to("16505551234")).await });
        assert_eq!(fake.wait_for_sent(1, WAIT).await.len(), 1);
        fake.shutdown().await;
        let (status, _, body) = pending.await.unwrap();
        assert_eq!(status, 200);
        assert!(body["messages"][0]["id"].is_string());
    }

    #[tokio::test]
    async fn an_answer_delay_holds_the_answer_of_a_message_already_accepted() {
        let (fake, client) = start().await;
        fake.set_answer_delay(Some(Duration::from_secs(60)));
        let pending =
            tokio::spawn(async move { client.post(TOKEN, &text_to("16505551234")).await });
        assert_eq!(fake.wait_for_sent(1, WAIT).await.len(), 1);
        assert!(!pending.is_finished(), "answered before the delay");
        fake.shutdown().await;
        let (status, _, body) = pending.await.unwrap();
        assert_eq!(status, 200);
        assert!(body["messages"][0]["id"].is_string());
    }

    /// A stand-in for wacrm's webhook endpoint that hands each request to the test.
    async fn webhook_receiver() -> (String, mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = Router::new().route(
            "/webhooks/whatsapp",
            post(move |headers: HeaderMap, body: Bytes| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((headers, body));
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/webhooks/whatsapp",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, rx)
    }

    #[tokio::test]
    async fn status_webhooks_are_signed_ordered_and_carry_callback_data() {
        let (url, mut rx) = webhook_receiver().await;
        let mut opts = FakeGraphOptions::new(TOKEN);
        opts.status_webhook = Some(StatusWebhookConfig::new(url, "app-secret"));
        let fake = FakeGraph::start(opts).await.unwrap();
        let client = Client::new(&fake);
        let (_, _, answer) = client.post(TOKEN, &text_to("+16505551234")).await;
        let wamid = answer["messages"][0]["id"].as_str().unwrap().to_string();

        let mut statuses = Vec::new();
        for _ in 0..3 {
            let (headers, raw) = tokio::time::timeout(WAIT, rx.recv())
                .await
                .unwrap()
                .unwrap();
            let signature = headers["x-hub-signature-256"].to_str().unwrap();
            let hex_mac = signature.strip_prefix("sha256=").unwrap();
            let mut mac = Hmac::<Sha256>::new_from_slice(b"app-secret").unwrap();
            mac.update(&raw);
            mac.verify_slice(&hex::decode(hex_mac).unwrap()).unwrap();
            let mut wrong = Hmac::<Sha256>::new_from_slice(b"other-secret").unwrap();
            wrong.update(&raw);
            assert!(wrong.verify_slice(&hex::decode(hex_mac).unwrap()).is_err());

            let payload: Value = serde_json::from_slice(&raw).unwrap();
            assert_eq!(payload["object"], "whatsapp_business_account");
            let change = &payload["entry"][0]["changes"][0];
            assert_eq!(change["field"], "messages");
            assert_eq!(change["value"]["metadata"]["phone_number_id"], PHONE_ID);
            let status = &change["value"]["statuses"][0];
            assert_eq!(status["id"], wamid.as_str());
            assert_eq!(status["recipient_id"], "16505551234");
            assert_eq!(status["biz_opaque_callback_data"], "outbox:7");
            assert!(status["timestamp"].as_str().unwrap().parse::<i64>().is_ok());
            statuses.push(status["status"].as_str().unwrap().to_string());
        }
        assert_eq!(statuses, ["sent", "delivered", "read"]);
        let deliveries = fake.wait_for_webhooks(3, WAIT).await;
        assert!(deliveries
            .iter()
            .all(|d| d.http_status == Some(200) && d.tries == 1));
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn reactions_only_get_a_sent_status() {
        let (url, mut rx) = webhook_receiver().await;
        let fake = FakeGraph::start(FakeGraphOptions::new(TOKEN))
            .await
            .unwrap();
        fake.set_status_webhook(Some(StatusWebhookConfig::new(url, "s")));
        let client = Client::new(&fake);
        let reaction = json!({
            "messaging_product": "whatsapp", "to": "16505551234", "type": "reaction",
            "reaction": { "message_id": "wamid.X", "emoji": "\u{1F44D}" }
        });
        assert_eq!(client.post(TOKEN, &reaction).await.0, 200);
        // A text alongside gets all three, so a missing filter would show as extra deliveries.
        assert_eq!(client.post(TOKEN, &text_to("16505551234")).await.0, 200);
        let deliveries = fake.wait_for_webhooks(4, WAIT).await;
        assert_eq!(deliveries.len(), 4);
        let reaction_wamid = &fake.sent()[0].wamid;
        let for_reaction: Vec<_> = deliveries
            .iter()
            .filter(|d| &d.wamid == reaction_wamid)
            .collect();
        assert_eq!(for_reaction.len(), 1);
        assert_eq!(for_reaction[0].status, StatusKind::Sent);
        let mut received = 0;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, rx.recv()).await {
            received += 1;
        }
        assert_eq!(received, 4);
        fake.shutdown().await;
    }

    /// A webhook endpoint that answers 503 to its first `failures` requests, then 200.
    async fn flaky_receiver(failures: usize) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        let app = Router::new().route(
            "/webhooks/whatsapp",
            post(move || {
                let counter = counter.clone();
                async move {
                    if counter.fetch_add(1, Ordering::SeqCst) < failures {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/webhooks/whatsapp",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    #[tokio::test]
    async fn failed_status_webhooks_are_retried_like_meta_does() {
        let (url, _) = flaky_receiver(2).await;
        let fake = FakeGraph::start(FakeGraphOptions::new(TOKEN))
            .await
            .unwrap();
        let mut config = StatusWebhookConfig::new(url, "s");
        config.statuses = vec![StatusKind::Sent];
        config.retry_base_delay = Duration::from_millis(5);
        fake.set_status_webhook(Some(config));
        let client = Client::new(&fake);
        assert_eq!(client.post(TOKEN, &text_to("16505551234")).await.0, 200);
        let deliveries = fake.wait_for_webhooks(1, WAIT).await;
        assert_eq!(deliveries[0].http_status, Some(200));
        assert_eq!(deliveries[0].tries, 3);
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn webhook_retries_stop_when_the_retry_window_is_spent() {
        let (url, seen) = flaky_receiver(usize::MAX).await;
        let fake = FakeGraph::start(FakeGraphOptions::new(TOKEN))
            .await
            .unwrap();
        let mut config = StatusWebhookConfig::new(url, "s");
        config.statuses = vec![StatusKind::Sent];
        config.retry_for = Duration::ZERO;
        fake.set_status_webhook(Some(config));
        let client = Client::new(&fake);
        assert_eq!(client.post(TOKEN, &text_to("16505551234")).await.0, 200);
        let deliveries = fake.wait_for_webhooks(1, WAIT).await;
        assert_eq!(deliveries[0].http_status, Some(503));
        assert_eq!(deliveries[0].tries, 1);
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
        fake.shutdown().await;
    }
}
