//! A local server speaking the OpenAI chat-completions protocol, for tests, `wacrm bench` and the
//! demo. It validates requests the way the real API does (so a malformed history fails here
//! first), answers from a queue of scripted replies or a default responder, and can imitate the
//! provider's failure modes: error statuses, rate limits, hangs, overload and being down.

mod embeddings;
mod validate;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const FAKE_LLM_API_KEY: &str = "sk-fake-wacrm-0123456789";

/// What the fake answers when no scripted reply is queued.
#[derive(Debug, Clone, PartialEq)]
pub enum Responder {
    /// "You said: <last user message>".
    Echo,
    /// The same text every time, with no per-request work: for benchmarks.
    Instant(String),
}

/// One scripted answer, consumed by the next valid, authorised request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Text(String),
    ToolCall {
        name: String,
        arguments: Value,
    },
    /// `body` is sent as the JSON error body; see [`error_body`] for the documented shapes.
    Error {
        status: u16,
        body: Value,
    },
    /// 429 with the documented body and, when given, `Retry-After` in seconds.
    RateLimited {
        retry_after_secs: Option<u64>,
    },
    /// Arbitrary bytes, for responses the real server should never send.
    Raw {
        status: u16,
        content_type: String,
        body: String,
    },
    /// No answer until the fake shuts down: longer than any client timeout.
    Hang,
}

impl Reply {
    pub fn error(status: u16) -> Self {
        Self::Error {
            status,
            body: error_body(status),
        }
    }

    /// A 200 whose body is not JSON.
    pub fn malformed_json() -> Self {
        Self::Raw {
            status: 200,
            content_type: "application/json".into(),
            body: "{\"id\": \"chatcmpl-broken\", \"choices\": [".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct FakeLlmOptions {
    /// 127.0.0.1:0 unless a demo wants a fixed port.
    pub addr: SocketAddr,
    /// Expected bearer key; `None` accepts any (or none).
    pub api_key: Option<String>,
    pub default: Responder,
    /// Added before answering every request.
    pub latency: Duration,
    /// Keep every request body for [`FakeLlm::requests`]. Benchmarks turn this off so memory
    /// stays flat; [`FakeLlm::request_count`] still counts.
    pub record_bodies: bool,
}

impl Default for FakeLlmOptions {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            api_key: Some(FAKE_LLM_API_KEY.to_owned()),
            default: Responder::Echo,
            latency: Duration::ZERO,
            record_bodies: true,
        }
    }
}

struct Settings {
    api_key: Option<String>,
    default: Responder,
    latency: Duration,
    record_bodies: bool,
    queue: VecDeque<Reply>,
    fail_all: Option<u16>,
    unavailable: bool,
    requests: Vec<Value>,
}

struct Shared {
    settings: Mutex<Settings>,
    count: AtomicUsize,
    embedding_requests: AtomicUsize,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        // A panic while holding the lock cannot leave Settings half-updated; keep serving.
        self.settings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn until_shutdown(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|down| *down).await;
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

pub struct FakeLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for FakeLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeLlm")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeLlm {
    pub async fn start(opts: FakeLlmOptions) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(opts.addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            settings: Mutex::new(Settings {
                api_key: opts.api_key,
                default: opts.default,
                latency: opts.latency,
                record_bodies: opts.record_bodies,
                queue: VecDeque::new(),
                fail_all: None,
                unavailable: false,
                requests: Vec::new(),
            }),
            count: AtomicUsize::new(0),
            embedding_requests: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            shutdown,
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/embeddings", post(embeddings::handle))
            .fallback(not_found)
            .with_state(shared.clone());
        let signal = {
            let shared = shared.clone();
            async move { shared.until_shutdown().await }
        };
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::warn!(error = %e, "fake LLM server stopped");
            }
        });
        Ok(Self {
            addr,
            shared,
            server: Mutex::new(Some(server)),
        })
    }

    /// `http://127.0.0.1:<port>/v1`, the form `LlmConfig::base_url` takes.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn api_key(&self) -> Option<String> {
        self.shared.settings().api_key.clone()
    }

    pub fn push_reply(&self, reply: Reply) {
        self.shared.settings().queue.push_back(reply);
    }

    pub fn push_replies(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.settings().queue.extend(replies);
    }

    /// Scripted replies not yet consumed.
    pub fn pending_replies(&self) -> usize {
        self.shared.settings().queue.len()
    }

    pub fn set_default(&self, responder: Responder) {
        self.shared.settings().default = responder;
    }

    pub fn set_latency(&self, latency: Duration) {
        self.shared.settings().latency = latency;
    }

    /// Answer every request with this status and its documented error body (`None` to stop).
    pub fn fail_all(&self, status: Option<u16>) {
        self.shared.settings().fail_all = status;
    }

    /// Answer every request with 503 "overloaded", like a provider outage behind a load balancer.
    /// For connection refused, use [`FakeLlm::shutdown`].
    pub fn set_unavailable(&self, unavailable: bool) {
        self.shared.settings().unavailable = unavailable;
    }

    /// Every request body received, oldest first (non-JSON bodies as a JSON string).
    pub fn requests(&self) -> Vec<Value> {
        self.shared.settings().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// Requests to `/v1/embeddings` (not in [`FakeLlm::requests`], which holds chat requests).
    pub fn embedding_request_count(&self) -> usize {
        self.shared.embedding_requests.load(Ordering::SeqCst)
    }

    pub fn clear_requests(&self) {
        self.shared.settings().requests.clear();
        self.shared.count.store(0, Ordering::SeqCst);
    }

    /// Stops the server: after this returns, connections to `base_url` are refused. Hanging
    /// requests are released. Idempotent.
    pub async fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        let server = self
            .server
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(server) = server {
            let _ = server.await;
        }
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}

/// The documented error envelope: `{"error": {"message", "type", "param", "code"}}`.
pub fn openai_error(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

/// The body OpenAI sends with `status`, as far as its docs show one.
pub fn error_body(status: u16) -> Value {
    match status {
        400 => openai_error("Bad request.", "invalid_request_error", None, None),
        401 => openai_error(
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ),
        403 => openai_error(
            "Country, region, or territory not supported",
            "request_forbidden",
            None,
            Some("unsupported_country_region_territory"),
        ),
        404 => openai_error(
            "The model does not exist or you do not have access to it.",
            "invalid_request_error",
            None,
            Some("model_not_found"),
        ),
        429 => openai_error(
            "Rate limit reached for requests. Please try again later.",
            "requests",
            None,
            Some("rate_limit_exceeded"),
        ),
        500 => openai_error(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        ),
        503 => openai_error(
            "The engine is currently overloaded, please try again later.",
            "server_error",
            None,
            None,
        ),
        _ => openai_error(
            &format!("Request failed with status {status}."),
            if status >= 500 {
                "server_error"
            } else {
                "invalid_request_error"
            },
            None,
            None,
        ),
    }
}

fn error_response(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    let message = format!("Invalid URL ({method} {})", uri.path());
    error_response(
        404,
        openai_error(&message, "invalid_request_error", None, None),
    )
}

/// What to do with a request, decided under the settings lock and carried out after it.
enum Plan {
    Fail(Response),
    Answer(Reply),
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.count.fetch_add(1, Ordering::SeqCst);
    let parsed = serde_json::from_slice::<Value>(&body);
    let latency = {
        let mut settings = shared.settings();
        if settings.record_bodies {
            let recorded = match &parsed {
                Ok(value) => value.clone(),
                Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
            };
            settings.requests.push(recorded);
        }
        settings.latency
    };
    if !latency.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(latency) => {}
            _ = shared.until_shutdown() => {}
        }
    }

    let plan = {
        let mut settings = shared.settings();
        plan(&mut settings, &headers, parsed.as_ref().ok())
    };
    let (reply, request) = match (plan, parsed) {
        (Plan::Fail(response), _) => return response,
        (Plan::Answer(_), Err(_)) => return error_response(400, unparseable()),
        (Plan::Answer(reply), Ok(request)) => (reply, request),
    };
    match reply {
        Reply::Text(text) => complete(&shared, &request, Answer::Text(text)),
        Reply::ToolCall { name, arguments } => {
            complete(&shared, &request, Answer::Tool { name, arguments })
        }
        Reply::Error { status, body } => error_response(status, body),
        Reply::RateLimited { retry_after_secs } => {
            let mut response = error_response(429, error_body(429));
            if let Some(secs) = retry_after_secs {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
        Reply::Raw {
            status,
            content_type,
            body,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let content_type = HeaderValue::from_str(&content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Reply::Hang => {
            shared.until_shutdown().await;
            error_response(503, error_body(503))
        }
    }
}

fn unparseable() -> Value {
    openai_error(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
        "invalid_request_error",
        None,
        None,
    )
}

fn plan(settings: &mut Settings, headers: &HeaderMap, request: Option<&Value>) -> Plan {
    if let Some(expected) = &settings.api_key {
        if let Err(body) = check_auth(headers, expected) {
            return Plan::Fail(error_response(401, body));
        }
    }
    if settings.unavailable {
        return Plan::Fail(error_response(503, error_body(503)));
    }
    if let Some(status) = settings.fail_all {
        return Plan::Fail(error_response(status, error_body(status)));
    }
    let Some(request) = request else {
        return Plan::Fail(error_response(400, unparseable()));
    };
    if let Err(invalid) = validate::request(request) {
        return Plan::Fail(error_response(
            400,
            openai_error(
                &invalid.message,
                "invalid_request_error",
                invalid.param.as_deref(),
                None,
            ),
        ));
    }
    let reply = match settings.queue.pop_front() {
        Some(reply) => reply,
        None => match &settings.default {
            Responder::Echo => Reply::Text(format!("You said: {}", last_user_text(request))),
            Responder::Instant(text) => Reply::Text(text.clone()),
        },
    };
    Plan::Answer(reply)
}

fn check_auth(headers: &HeaderMap, expected: &str) -> Result<(), Value> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    match given {
        Some(key) if key == expected => Ok(()),
        Some(key) => Err(openai_error(
            &format!(
                "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                mask_key(key)
            ),
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        )),
        None => Err(openai_error(
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username. You can obtain an API key from https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            None,
        )),
    }
}

/// The provider shows the first and last characters of a rejected key.
fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        // Content parts: [{"type": "text", "text": "..."}, ...]
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn last_user_text(request: &Value) -> String {
    request["messages"]
        .as_array()
        .and_then(|messages| messages.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default()
}

/// Rough token counts (four characters a token), stable so tests can compare them.
fn usage(request: &Value, completion_chars: usize) -> Value {
    let messages = request["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let prompt_chars: usize = messages
        .iter()
        .map(|m| text_of(&m["content"]).chars().count())
        .sum();
    let prompt = prompt_chars.div_ceil(4) + 3 * messages.len();
    let completion = completion_chars.div_ceil(4).max(1);
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

enum Answer {
    Text(String),
    Tool { name: String, arguments: Value },
}

fn complete(shared: &Shared, request: &Value, answer: Answer) -> Response {
    let n = shared.next_id();
    let id = format!("chatcmpl-fake{n:08}");
    let model = request["model"]
        .as_str()
        .unwrap_or("gpt-4o-mini")
        .to_owned();
    let created = jiff::Timestamp::now().as_second();
    let stream = request["stream"] == true;
    let include_usage = request["stream_options"]["include_usage"] == true;
    let (completion_chars, message, finish_reason) = match &answer {
        Answer::Text(text) => (
            text.chars().count(),
            json!({"role": "assistant", "content": text, "refusal": null}),
            "stop",
        ),
        Answer::Tool { name, arguments } => {
            let arguments = arguments.to_string();
            (
                name.len() + arguments.chars().count(),
                json!({
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [{
                        "id": format!("call_fake{n:08}"),
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }],
                    "refusal": null,
                }),
                "tool_calls",
            )
        }
    };
    let usage = usage(request, completion_chars);
    if !stream {
        return Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
            "usage": usage,
            "system_fingerprint": null,
        }))
        .into_response();
    }

    let chunk = |delta: Value, finish: Option<&str>| {
        let mut chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    };
    let mut chunks = Vec::new();
    match answer {
        Answer::Text(text) => {
            chunks.push(chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                None,
            ));
            for piece in split_text(&text) {
                chunks.push(chunk(json!({"content": piece}), None));
            }
        }
        Answer::Tool { name, arguments } => {
            chunks.push(chunk(
                json!({
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [{
                        "index": 0,
                        "id": format!("call_fake{n:08}"),
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }],
                    "refusal": null,
                }),
                None,
            ));
            for piece in split_chars(&arguments.to_string(), 6) {
                chunks.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    None,
                ));
            }
        }
    }
    chunks.push(chunk(json!({}), Some(finish_reason)));
    if include_usage {
        chunks.push(json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": null,
            "choices": [],
            "usage": usage,
        }));
    }
    let mut events: Vec<Result<Bytes, Infallible>> = chunks
        .into_iter()
        .map(|c| Ok(Bytes::from(format!("data: {c}\n\n"))))
        .collect();
    events.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(futures::stream::iter(events)),
    )
        .into_response()
}

/// Word-sized pieces (spaces kept), so a stream has several deltas like a real one.
fn split_text(text: &str) -> Vec<String> {
    let pieces: Vec<String> = text.split_inclusive(' ').map(str::to_owned).collect();
    if pieces.len() > 1 {
        return pieces;
    }
    let half = text.chars().count().div_ceil(2).max(1);
    split_chars(text, half)
}

fn split_chars(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(size.max(1))
        .map(|c| c.iter().collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keys_like_the_provider() {
        assert_eq!(mask_key("sk-wrong-key-12345"), "sk-***********2345");
        assert_eq!(mask_key("short"), "*****");
    }

    #[test]
    fn splits_into_several_pieces_that_rejoin() {
        for text in ["You said: hello there", "hello", "ü✓x", ""] {
            let pieces = split_text(text);
            assert_eq!(pieces.concat(), text);
            if text.chars().count() > 1 {
                assert!(pieces.len() > 1, "{text:?} -> {pieces:?}");
            }
        }
    }
}
