//! Client for OpenAI-compatible `POST {base_url}/chat/completions`, plain and streamed.
//!
//! Failures are folded into [`LlmError`] with stable codes. Transient ones (timeout, 429, 5xx,
//! connection failures) are retried a bounded number of times with jittered exponential backoff; a
//! streamed request is only retried while no text has been handed to the caller yet, so a caller
//! never sees a delta twice.

mod stream;
mod wire;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::{timeout_at, Instant};

pub const DEFAULT_MODEL: &str = "gpt-4o-mini";
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Longest provider error text kept in an [`LlmError`]; bodies can be whole HTML pages.
const MAX_PROVIDER_MESSAGE: usize = 300;

#[derive(Clone)]
pub struct LlmConfig {
    /// Base URL up to and including the version segment, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    /// Upper bound for one attempt, from sending the request to the last byte of the answer.
    pub timeout: Duration,
    /// Extra attempts after the first one, for transient failures only.
    pub max_retries: u32,
    pub temperature: Option<f32>,
    /// First backoff step; doubled per retry, then jittered down by up to half.
    pub retry_base_delay: Duration,
    /// Cap on one backoff wait. A `Retry-After` longer than this is not waited for: the call
    /// fails with `rate_limited` at once, carrying the provider's hint.
    pub max_retry_delay: Duration,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: String::new(),
            model: DEFAULT_MODEL.to_owned(),
            timeout: Duration::from_secs(30),
            max_retries: 2,
            temperature: Some(0.2),
            retry_base_delay: Duration::from_millis(250),
            max_retry_delay: Duration::from_secs(8),
        }
    }
}

impl LlmConfig {
    /// Worst-case wall time of one `chat` call: every attempt times out and every backoff is
    /// at its cap.
    pub fn max_total_time(&self) -> Duration {
        self.timeout * (self.max_retries + 1) + self.max_retry_delay * self.max_retries
    }
}

impl fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.api_key.is_empty() {
            "<unset>"
        } else {
            "<redacted>"
        };
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &key)
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("temperature", &self.temperature)
            .field("retry_base_delay", &self.retry_base_delay)
            .field("max_retry_delay", &self.max_retry_delay)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: Option<String>,
    /// Only on assistant turns that called tools; sent back verbatim in later requests.
    pub tool_calls: Vec<ToolCall>,
    /// Only on `tool` turns: which call this is the result of.
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
}

impl ChatMessage {
    fn new(role: Role, content: Option<String>) -> Self {
        Self {
            role,
            content,
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, Some(content.into()))
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, Some(content.into()))
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, Some(content.into()))
    }

    /// An assistant turn that called tools, to be followed by one [`ChatMessage::tool_result`]
    /// per call.
    pub fn assistant_tool_calls(content: Option<String>, tool_calls: Vec<ToolCall>) -> Self {
        Self {
            tool_calls,
            ..Self::new(Role::Assistant, content)
        }
    }

    pub fn tool_result(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(tool_call_id.into()),
            ..Self::new(Role::Tool, Some(content.into()))
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
}

impl ToolDef {
    pub fn new(name: impl Into<String>, description: impl Into<String>, parameters: Value) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            parameters,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    #[default]
    Auto,
    None,
    Required,
    /// Force this one function.
    Function(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolDef>,
    /// Ignored (not sent) when `tools` is empty: the API rejects a choice without tools.
    pub tool_choice: ToolChoice,
    /// Overrides [`LlmConfig::temperature`].
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    /// Overrides [`LlmConfig::model`].
    pub model: Option<String>,
}

impl ChatRequest {
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        Self {
            messages,
            ..Self::default()
        }
    }

    pub fn with_tools(mut self, tools: Vec<ToolDef>) -> Self {
        self.tools = tools;
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The parsed arguments object; `Null` when `arguments_error` is set.
    pub arguments: Value,
    /// Exactly what the model produced, replayed when the turn is sent back in the history.
    pub raw_arguments: String,
    /// Why `raw_arguments` is not a JSON object. Models do emit broken JSON; the caller decides
    /// whether to report it back to the model or give up.
    pub arguments_error: Option<String>,
}

impl ToolCall {
    pub fn new(id: impl Into<String>, name: impl Into<String>, arguments: Value) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            raw_arguments: arguments.to_string(),
            arguments,
            arguments_error: None,
        }
    }

    /// Builds a call from the provider's `arguments` string, keeping a parse failure as data.
    pub fn from_wire(id: String, name: String, raw_arguments: String) -> Self {
        // Some compatible servers send "" for a function without parameters.
        let parsed = if raw_arguments.trim().is_empty() {
            Ok(Value::Object(Default::default()))
        } else {
            serde_json::from_str::<Value>(&raw_arguments).map_err(|e| e.to_string())
        };
        let (arguments, arguments_error) = match parsed {
            Ok(value @ Value::Object(_)) => (value, None),
            Ok(_) => (
                Value::Null,
                Some("arguments are not a JSON object".to_owned()),
            ),
            Err(e) => (Value::Null, Some(e)),
        };
        Self {
            id,
            name,
            arguments,
            raw_arguments,
            arguments_error,
        }
    }

    /// The arguments object, or `invalid_tool_arguments`.
    pub fn args(&self) -> Result<&Value, LlmError> {
        match &self.arguments_error {
            None => Ok(&self.arguments),
            Some(detail) => Err(LlmError::InvalidToolArguments {
                tool: self.name.clone(),
                detail: detail.clone(),
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    /// Anything else the provider sent, or "" when it sent nothing.
    Other(String),
}

impl FinishReason {
    fn from_wire(reason: Option<&str>) -> Self {
        match reason {
            Some("stop") => Self::Stop,
            Some("length") => Self::Length,
            Some("tool_calls") => Self::ToolCalls,
            Some("content_filter") => Self::ContentFilter,
            Some(other) => Self::Other(other.to_owned()),
            None => Self::Other(String::new()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

impl From<wire::WireUsage> for Usage {
    fn from(u: wire::WireUsage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
    /// Zero when the provider did not report usage.
    pub usage: Usage,
}

impl ChatResponse {
    pub fn text(&self) -> &str {
        self.content.as_deref().unwrap_or("")
    }

    /// This reply as an assistant turn for the next request's history.
    pub fn to_assistant_message(&self) -> ChatMessage {
        ChatMessage::assistant_tool_calls(self.content.clone(), self.tool_calls.clone())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    #[error("LLM request timed out after {after:?}")]
    Timeout { after: Duration },
    #[error("LLM rate limited: {message}")]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
        provider_code: Option<String>,
    },
    #[error("LLM server error{}: {message}", status_label(.status))]
    ServerError {
        /// `None` when the failure was reported inside an already-started stream.
        status: Option<u16>,
        message: String,
    },
    #[error("LLM rejected the request ({status}): {message}")]
    BadRequest {
        status: u16,
        message: String,
        /// e.g. `invalid_api_key`, `context_length_exceeded`.
        provider_code: Option<String>,
    },
    #[error("malformed LLM response: {detail}")]
    MalformedResponse { detail: String },
    #[error("LLM unreachable: {detail}")]
    Unreachable { detail: String },
    #[error("tool call `{tool}` has unusable arguments: {detail}")]
    InvalidToolArguments { tool: String, detail: String },
    #[error("invalid LLM configuration: {detail}")]
    Config { detail: String },
}

fn status_label(status: &Option<u16>) -> String {
    status.map(|s| format!(" ({s})")).unwrap_or_default()
}

impl LlmError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::RateLimited { .. } => "rate_limited",
            Self::ServerError { .. } => "server_error",
            Self::BadRequest { .. } => "bad_request",
            Self::MalformedResponse { .. } => "malformed_response",
            Self::Unreachable { .. } => "unreachable",
            Self::InvalidToolArguments { .. } => "invalid_tool_arguments",
            Self::Config { .. } => "config",
        }
    }

    /// Whether the provider (not our configuration) failed us: callers fall back to a human or a
    /// canned reply on these.
    pub fn is_provider_failure(&self) -> bool {
        !matches!(self, Self::Config { .. })
    }

    /// Whether another attempt could succeed without changing the request.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::ServerError { .. } | Self::Unreachable { .. } => true,
            // OpenAI reports an exhausted quota as 429 too; waiting does not refill it.
            Self::RateLimited { provider_code, .. } => {
                provider_code.as_deref() != Some("insufficient_quota")
            }
            _ => false,
        }
    }

    fn malformed(detail: impl Into<String>) -> Self {
        Self::MalformedResponse {
            detail: detail.into(),
        }
    }
}

#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    config: Arc<LlmConfig>,
    endpoint: reqwest::Url,
}

impl fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LlmClient {
    pub fn new(config: LlmConfig) -> Result<Self, LlmError> {
        let endpoint = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        let endpoint = reqwest::Url::parse(&endpoint).map_err(|e| LlmError::Config {
            detail: format!("base_url: {e}"),
        })?;
        if config.timeout.is_zero() {
            return Err(LlmError::Config {
                detail: "timeout must be positive".into(),
            });
        }
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(config.timeout)
            // A redirected POST would silently become a GET; treat it as an error instead.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wacrm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Config {
                detail: format!("http client: {e}"),
            })?;
        Ok(Self {
            http,
            config: Arc::new(config),
            endpoint,
        })
    }

    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    pub async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let body = self.encode(req, false)?;
        let mut attempt = 0;
        loop {
            match self.chat_once(body.clone()).await {
                Ok(response) => return Ok(response),
                Err(err) => attempt = self.before_retry(attempt, err).await?,
            }
        }
    }

    /// Streams the reply, handing each text piece to `on_delta` as it arrives, and returns the
    /// same [`ChatResponse`] `chat` would have.
    pub async fn chat_stream(
        &self,
        req: &ChatRequest,
        mut on_delta: impl FnMut(&str),
    ) -> Result<ChatResponse, LlmError> {
        let body = self.encode(req, true)?;
        let mut attempt = 0;
        loop {
            let mut emitted = false;
            let mut forward = |text: &str| {
                emitted = true;
                on_delta(text);
            };
            match self.stream_once(body.clone(), &mut forward).await {
                Ok(response) => return Ok(response),
                Err(err) if emitted => return Err(err),
                Err(err) => attempt = self.before_retry(attempt, err).await?,
            }
        }
    }

    /// Waits before the next attempt, or gives the error back when it must not be retried.
    async fn before_retry(&self, attempt: u32, err: LlmError) -> Result<u32, LlmError> {
        let jitter = rand::thread_rng().gen_range(0.5..=1.0);
        let Some(delay) = retry_delay(&self.config, attempt, &err, jitter) else {
            return Err(err);
        };
        tracing::warn!(
            code = err.code(),
            error = %err,
            attempt = attempt + 1,
            delay_ms = delay.as_millis() as u64,
            "LLM call failed, retrying"
        );
        tokio::time::sleep(delay).await;
        Ok(attempt + 1)
    }

    fn encode(&self, req: &ChatRequest, stream: bool) -> Result<Bytes, LlmError> {
        let tool_choice = if req.tools.is_empty() {
            None
        } else {
            Some(match &req.tool_choice {
                ToolChoice::Auto => Value::from("auto"),
                ToolChoice::None => Value::from("none"),
                ToolChoice::Required => Value::from("required"),
                ToolChoice::Function(name) => {
                    serde_json::json!({"type": "function", "function": {"name": name}})
                }
            })
        };
        let body = wire::Request {
            model: req.model.as_deref().unwrap_or(&self.config.model),
            messages: req.messages.iter().map(wire_message).collect(),
            tools: req
                .tools
                .iter()
                .map(|t| wire::Tool {
                    kind: "function",
                    function: wire::ToolFunction {
                        name: &t.name,
                        description: &t.description,
                        parameters: &t.parameters,
                    },
                })
                .collect(),
            tool_choice,
            temperature: req.temperature.or(self.config.temperature),
            max_tokens: req.max_tokens,
            stream,
            stream_options: stream.then_some(wire::StreamOptions {
                include_usage: true,
            }),
        };
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .map_err(|e| LlmError::Config {
                detail: format!("request does not serialize: {e}"),
            })
    }

    async fn send(&self, body: Bytes, deadline: Instant) -> Result<reqwest::Response, LlmError> {
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        // Local compatible servers need no key; reqwest marks the bearer header sensitive.
        if !self.config.api_key.is_empty() {
            request = request.bearer_auth(&self.config.api_key);
        }
        let request = request.send();
        let response = timeout_at(deadline, request)
            .await
            .map_err(|_| self.timed_out())?
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let headers = response.headers().clone();
        let body = timeout_at(deadline, response.bytes())
            .await
            .map_err(|_| self.timed_out())?
            .map_err(|e| self.transport_error(e))?;
        Err(error_from_status(
            status.as_u16(),
            &headers,
            &body,
            &self.config.api_key,
        ))
    }

    async fn chat_once(&self, body: Bytes) -> Result<ChatResponse, LlmError> {
        let deadline = Instant::now() + self.config.timeout;
        let response = self.send(body, deadline).await?;
        let bytes = timeout_at(deadline, response.bytes())
            .await
            .map_err(|_| self.timed_out())?
            .map_err(|e| self.transport_error(e))?;
        parse_completion(&bytes)
    }

    async fn stream_once(
        &self,
        body: Bytes,
        on_delta: &mut impl FnMut(&str),
    ) -> Result<ChatResponse, LlmError> {
        let deadline = Instant::now() + self.config.timeout;
        let response = self.send(body, deadline).await?;
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            // Some compatible servers ignore `stream: true` and answer with a plain completion.
            let bytes = timeout_at(deadline, response.bytes())
                .await
                .map_err(|_| self.timed_out())?
                .map_err(|e| self.transport_error(e))?;
            let completion = parse_completion(&bytes)?;
            if let Some(text) = completion.content.as_deref().filter(|t| !t.is_empty()) {
                on_delta(text);
            }
            return Ok(completion);
        }
        let mut body = response.bytes_stream();
        let mut decoder = stream::SseDecoder::default();
        let mut acc = stream::Accumulator::default();
        while !acc.is_done() {
            let next = timeout_at(deadline, body.next())
                .await
                .map_err(|_| self.timed_out())?;
            let Some(piece) = next else { break };
            let piece = piece.map_err(|e| self.transport_error(e))?;
            for event in decoder.push(&piece)? {
                acc.apply(&event, on_delta)?;
            }
        }
        if !acc.is_done() {
            if let Some(event) = decoder.finish()? {
                acc.apply(&event, on_delta)?;
            }
        }
        acc.finish()
    }

    fn timed_out(&self) -> LlmError {
        LlmError::Timeout {
            after: self.config.timeout,
        }
    }

    fn transport_error(&self, err: reqwest::Error) -> LlmError {
        if err.is_timeout() {
            return self.timed_out();
        }
        if err.is_decode() {
            return LlmError::malformed(error_chain(&err));
        }
        LlmError::Unreachable {
            detail: error_chain(&err),
        }
    }
}

fn wire_message(m: &ChatMessage) -> wire::Message<'_> {
    wire::Message {
        role: m.role.as_str(),
        content: m.content.as_deref(),
        tool_calls: m
            .tool_calls
            .iter()
            .map(|c| wire::OutToolCall {
                id: &c.id,
                kind: "function",
                function: wire::OutFunction {
                    name: &c.name,
                    arguments: &c.raw_arguments,
                },
            })
            .collect(),
        tool_call_id: m.tool_call_id.as_deref(),
        name: m.name.as_deref(),
    }
}

fn parse_completion(bytes: &[u8]) -> Result<ChatResponse, LlmError> {
    let completion: wire::Completion = serde_json::from_slice(bytes)
        .map_err(|e| LlmError::malformed(format!("completion is not valid JSON: {e}")))?;
    let choice = completion
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| LlmError::malformed("completion has no choices"))?;
    let tool_calls = choice
        .message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(|c| ToolCall::from_wire(c.id, c.function.name, c.function.arguments))
        .collect();
    Ok(ChatResponse {
        content: choice.message.content,
        tool_calls,
        finish_reason: FinishReason::from_wire(choice.finish_reason.as_deref()),
        usage: completion.usage.map(Usage::from).unwrap_or_default(),
    })
}

fn error_from_status(status: u16, headers: &HeaderMap, body: &[u8], api_key: &str) -> LlmError {
    let (message, provider_code) = match serde_json::from_slice::<wire::ErrorEnvelope>(body) {
        Ok(envelope) => {
            let code = envelope.error.code_str();
            let message = envelope
                .error
                .message
                .or(envelope.error.kind)
                .unwrap_or_default();
            (message, code)
        }
        Err(_) => (String::from_utf8_lossy(body).into_owned(), None),
    };
    let message = sanitize(&message, api_key);
    match status {
        429 => LlmError::RateLimited {
            retry_after: retry_after(headers),
            message,
            provider_code,
        },
        500..=599 => LlmError::ServerError {
            status: Some(status),
            message,
        },
        400..=499 => LlmError::BadRequest {
            status,
            message,
            provider_code,
        },
        _ => LlmError::malformed(format!("unexpected HTTP status {status}: {message}")),
    }
}

/// Keeps provider text short and free of our key (some providers echo a rejected key back).
fn sanitize(message: &str, api_key: &str) -> String {
    let mut message = message.trim().to_owned();
    if api_key.len() >= 4 {
        message = message.replace(api_key, "<redacted>");
    }
    if message.len() > MAX_PROVIDER_MESSAGE {
        let mut cut = MAX_PROVIDER_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}

/// `retry-after-ms` (sent by OpenAI, preferred by its SDKs) or `Retry-After` in seconds.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| -> Option<f64> {
        let value = headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()?;
        (value.is_finite() && value >= 0.0).then_some(value)
    };
    if let Some(ms) = number("retry-after-ms") {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    number("retry-after").map(Duration::from_secs_f64)
}

/// The wait before retry number `attempt + 1`, or `None` when the error must be returned.
/// `jitter` in `[0.5, 1.0]` spreads simultaneous retries from many conversations.
fn retry_delay(config: &LlmConfig, attempt: u32, err: &LlmError, jitter: f64) -> Option<Duration> {
    if attempt >= config.max_retries || !err.is_retryable() {
        return None;
    }
    let exponential = config
        .retry_base_delay
        .saturating_mul(2u32.saturating_pow(attempt));
    let backoff = exponential.min(config.max_retry_delay).mul_f64(jitter);
    match err {
        LlmError::RateLimited {
            retry_after: Some(wait),
            ..
        } => (*wait <= config.max_retry_delay).then(|| backoff.max(*wait)),
        _ => Some(backoff),
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
