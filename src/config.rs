//! Layered configuration: built-in defaults, then a TOML file, then `WACRM_*` environment variables
//! (nested keys joined by `__`, e.g. `WACRM_LLM__API_KEY`). The whole configuration is validated once
//! at start-up; every error names the setting at fault.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// A secret string: serialised as itself (config files need it), but never shown by `Debug`.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(<empty>)")
        } else {
            f.write_str("Secret(<redacted>)")
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where every byte of state lives. Backed up by copying it.
    pub data_dir: PathBuf,
    /// Address the HTTP server (webhooks, API, dashboard) listens on.
    pub listen: SocketAddr,
    /// The externally visible base URL (what Meta calls). Defaults to `http://{listen}`.
    pub public_url: Option<String>,
    pub llm: LlmSettings,
    pub graph: GraphSettings,
    pub pipeline: PipelineSettings,
    pub storage: StorageSettings,
    /// Where the local embedding model and ONNX Runtime live (`scripts/fetch-models.sh` fills it;
    /// install.sh puts it beside the binary, e.g. /opt/wacrm/models).
    pub models_dir: PathBuf,
    pub embeddings: EmbeddingSettings,
    pub knowledge: KnowledgeConfig,
    /// Log format: "text" for terminals, "json" for journald and log shippers.
    pub log_format: LogFormat,
    /// Sign-in, sessions, single sign-on.
    pub auth: crate::people::AuthSettings,
    /// HTTPS served directly from certificate files. Absent: plain HTTP (behind a reverse proxy).
    pub tls: Option<TlsSettings>,
    /// Reverse proxies (IP addresses or CIDR blocks) whose X-Forwarded-For / X-Forwarded-Proto are
    /// believed. Requests from anywhere else are taken at their socket address.
    pub trusted_proxies: Vec<String>,
    /// Prometheus metrics on their own listener (keep it off the public interface). Absent: off.
    pub metrics_listen: Option<SocketAddr>,
    pub resources: ResourceSettings,
    pub retention: RetentionSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain (leaf first), e.g. Let's Encrypt's fullchain.pem.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// A plain-HTTP listener that only redirects to HTTPS (e.g. 0.0.0.0:80). Absent: no plain HTTP.
    #[serde(default)]
    pub redirect_listen: Option<SocketAddr>,
    /// How often the files are checked for change (they are also reloaded on SIGHUP).
    #[serde(default = "default_tls_check_ms")]
    pub reload_check_ms: u64,
}

fn default_tls_check_ms() -> u64 {
    30_000
}

/// Limits that keep the appliance answering under a full disk or a flood.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSettings {
    /// Below this much free space on the data directory's filesystem, uploads are refused.
    pub min_free_mb_uploads: u64,
    /// Below this, the service warns (log, /readyz, metrics) that webhooks will soon be refused.
    pub min_free_mb_warn: u64,
    /// Below this, webhooks are answered 503 (Meta retries them) so the store never fills up.
    pub min_free_mb_webhooks: u64,
    pub disk_check_ms: u64,
    /// Webhook requests handled at once; more are answered 503 with Retry-After.
    pub max_inflight_webhooks: usize,
    /// Failed (unsigned, forged, malformed) webhook requests per IP per minute before that IP is
    /// answered 429. Signed requests never count, so Meta's traffic cannot be locked out.
    pub webhook_failures_per_minute: u32,
    /// Failed sign-ins per IP per 15 minutes before that IP must wait.
    pub sign_in_failures_per_15_minutes: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// How often the per-tenant retention sweep runs.
    pub sweep_interval_s: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// How the assistant generates answers. An enum, so "an API key without a URL" cannot be written down.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "provider", rename_all = "snake_case", deny_unknown_fields)]
pub enum LlmSettings {
    /// No generation API: the offline responder answers from the knowledge base or hands off.
    Offline,
    /// Any OpenAI-compatible chat-completions API.
    Openai {
        base_url: String,
        #[serde(default)]
        api_key: Secret,
        #[serde(default = "default_model")]
        model: String,
        #[serde(default = "default_llm_timeout_ms")]
        timeout_ms: u64,
        #[serde(default = "default_llm_retries")]
        max_retries: u32,
    },
}

fn default_model() -> String {
    "gpt-4o-mini".into()
}
fn default_llm_timeout_ms() -> u64 {
    20_000
}
fn default_llm_retries() -> u32 {
    2
}

/// Which model turns knowledge-base chunks and questions into vectors. Only the provider tag is in
/// the defaults, so a file that switches provider does not inherit the other variant's fields.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "provider", rename_all = "snake_case", deny_unknown_fields)]
pub enum EmbeddingSettings {
    /// An ONNX model run in process from `models_dir` (multilingual-e5-small by default).
    Local {
        #[serde(
            default = "default_local_embedding_model",
            skip_serializing_if = "is_default_local_embedding_model"
        )]
        model: String,
        /// ONNX Runtime intra-op threads; all cores when unset.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        threads: Option<usize>,
    },
    /// Any OpenAI-compatible embeddings API.
    Openai {
        base_url: String,
        #[serde(default)]
        api_key: Secret,
        #[serde(default = "default_api_embedding_model")]
        model: String,
        /// Ask the API for shortened vectors (text-embedding-3 models support it).
        #[serde(default)]
        dimensions: Option<usize>,
        #[serde(default = "default_llm_timeout_ms")]
        timeout_ms: u64,
    },
}

fn default_local_embedding_model() -> String {
    "multilingual-e5-small".into()
}
fn is_default_local_embedding_model(model: &String) -> bool {
    *model == default_local_embedding_model()
}
fn default_api_embedding_model() -> String {
    "text-embedding-3-small".into()
}

impl EmbeddingSettings {
    /// The model id recorded with every stored vector; a change re-indexes.
    pub fn model_id(&self) -> String {
        match self {
            EmbeddingSettings::Local { model, .. } => model.clone(),
            EmbeddingSettings::Openai {
                model, dimensions, ..
            } => match dimensions {
                Some(d) => format!("openai:{model}:{d}"),
                None => format!("openai:{model}"),
            },
        }
    }
}

/// Knowledge bases: ingestion limits and retrieval thresholds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeConfig {
    /// Passages given to the assistant per question.
    pub top_k: usize,
    /// Minimum relevance (0-1, see `knowledge::retrieve`) for a passage to be used at all. 0.2
    /// (multilingual-e5 cosine 0.80) keeps the right passage for 89% of the evaluation set's
    /// questions and leaves 83% of the questions it does not cover with nothing (eval/README.md).
    pub min_score: f32,
    /// Relevance at which the offline responder answers with the passage alone. 0.7 (cosine
    /// 0.85): no question outside the evaluation set reaches it.
    pub confident_score: f32,
    /// Largest accepted upload or fetched page.
    pub max_document_bytes: usize,
    pub chunk_max_tokens: usize,
    pub chunk_overlap_tokens: usize,
    pub fetch_timeout_ms: u64,
    /// Let "add by URL" fetch loopback addresses. Tests only: it opens the door to SSRF.
    pub allow_loopback_urls: bool,
}

impl Default for KnowledgeConfig {
    fn default() -> Self {
        Self {
            top_k: 5,
            min_score: 0.2,
            confident_score: 0.7,
            max_document_bytes: 20 * 1024 * 1024,
            chunk_max_tokens: 500,
            chunk_overlap_tokens: 50,
            fetch_timeout_ms: 15_000,
            allow_loopback_urls: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSettings {
    /// Base URL of the Graph API; tests point it at a local fake.
    pub base_url: String,
    pub timeout_ms: u64,
    /// Messages per second per business phone number (Meta's default throughput is 80/s).
    pub rate_per_second: u32,
    /// Minimum gap between two messages to the same customer.
    pub recipient_gap_ms: u64,
    /// Attempts per message before it is marked failed.
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// How long an unconfirmed send (timeout after the request left, or a crash mid-send) waits for
    /// Meta's status webhook before it is resent. See `whatsapp::sender` for why.
    pub reconcile_after_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSettings {
    /// A burst of customer messages within this window becomes one assistant turn.
    pub debounce_ms: u64,
    /// Messages of history given to the model.
    pub history_messages: usize,
    /// Bound on model round-trips in one turn (guards against tool-call loops).
    pub max_tool_rounds: u32,
    /// Concurrent event handlers per consumer.
    pub concurrency: usize,
    /// Not a setting: never read from a file or the environment (naming it there is an unknown
    /// field), so the product always meters assistant replies against the tenants' plans. Only
    /// `wacrm bench pipeline` turns it off, on one of two appliances it compares in one run, to
    /// measure what metering and the quota check cost. With it off, quotas are not enforced.
    #[serde(skip, default = "always_meter")]
    pub metering: bool,
}

fn always_meter() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// Most writes folded into one durable commit.
    pub max_batch: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            llm: LlmSettings::Offline,
            graph: GraphSettings::default(),
            pipeline: PipelineSettings::default(),
            storage: StorageSettings { max_batch: 512 },
            models_dir: PathBuf::from("models"),
            embeddings: EmbeddingSettings::Local {
                model: default_local_embedding_model(),
                threads: None,
            },
            knowledge: KnowledgeConfig::default(),
            log_format: LogFormat::Text,
            auth: crate::people::AuthSettings::default(),
            tls: None,
            trusted_proxies: Vec::new(),
            metrics_listen: None,
            resources: ResourceSettings::default(),
            retention: RetentionSettings {
                sweep_interval_s: 3_600,
            },
        }
    }
}

impl Default for ResourceSettings {
    fn default() -> Self {
        Self {
            min_free_mb_uploads: 1_024,
            min_free_mb_warn: 512,
            min_free_mb_webhooks: 128,
            disk_check_ms: 5_000,
            max_inflight_webhooks: 512,
            webhook_failures_per_minute: 120,
            sign_in_failures_per_15_minutes: 10,
        }
    }
}

impl Default for GraphSettings {
    fn default() -> Self {
        Self {
            base_url: "https://graph.facebook.com".into(),
            timeout_ms: 15_000,
            rate_per_second: 80,
            recipient_gap_ms: 1_000,
            max_attempts: 8,
            backoff_base_ms: 500,
            backoff_max_ms: 60_000,
            reconcile_after_ms: 120_000,
        }
    }
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            debounce_ms: 1_500,
            history_messages: 12,
            max_tool_rounds: 3,
            concurrency: 64,
            metering: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(String),
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<String>),
}

/// `WACRM_*` variables that are not settings: the config file's path and the log filter (read by
/// the CLI), channel secrets of `wacrm channel add-cloud`, and install.sh's inputs. Without this
/// list, setting any of them made the configuration fail to load ("unknown field").
const ENV_NOT_SETTINGS: &[&str] = &[
    "config",
    "log",
    "channel_access_token",
    "channel_app_secret",
    "channel_verify_token",
    "operator_password",
    "operator_email",
    "user_password",
    "install_root",
    "bin",
    "skip_models",
    "models_src",
];

impl Config {
    /// Defaults, then `file` (if given; it must exist), then `WACRM_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Load(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("WACRM_").ignore(ENV_NOT_SETTINGS).split("__"));
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the configuration as a whole and reports every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        if self.data_dir.as_os_str().is_empty() {
            errors.push("data_dir: must not be empty".to_string());
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                errors.push(format!(
                    "public_url: {url:?} must start with http:// or https://"
                ));
            }
        }
        if let LlmSettings::Openai {
            base_url,
            model,
            timeout_ms,
            ..
        } = &self.llm
        {
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                errors.push(format!(
                    "llm.base_url: {base_url:?} must start with http:// or https://"
                ));
            }
            if model.trim().is_empty() {
                errors.push("llm.model: must not be empty".into());
            }
            if *timeout_ms == 0 {
                errors.push("llm.timeout_ms: must be greater than 0".into());
            }
        }
        let g = &self.graph;
        if !(g.base_url.starts_with("http://") || g.base_url.starts_with("https://")) {
            errors.push(format!(
                "graph.base_url: {:?} must start with http:// or https://",
                g.base_url
            ));
        }
        if g.timeout_ms == 0 {
            errors.push("graph.timeout_ms: must be greater than 0".into());
        }
        if g.rate_per_second == 0 {
            errors.push("graph.rate_per_second: must be greater than 0".into());
        }
        if g.max_attempts == 0 {
            errors.push("graph.max_attempts: must be at least 1".into());
        }
        if g.backoff_base_ms > g.backoff_max_ms {
            errors.push("graph.backoff_base_ms: must not exceed graph.backoff_max_ms".into());
        }
        if self.pipeline.concurrency == 0 {
            errors.push("pipeline.concurrency: must be at least 1".into());
        }
        if self.pipeline.max_tool_rounds == 0 {
            errors.push("pipeline.max_tool_rounds: must be at least 1".into());
        }
        if let EmbeddingSettings::Openai {
            base_url,
            model,
            timeout_ms,
            dimensions,
            ..
        } = &self.embeddings
        {
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                errors.push(format!(
                    "embeddings.base_url: {base_url:?} must start with http:// or https://"
                ));
            }
            if model.trim().is_empty() {
                errors.push("embeddings.model: must not be empty".into());
            }
            if *timeout_ms == 0 {
                errors.push("embeddings.timeout_ms: must be greater than 0".into());
            }
            if *dimensions == Some(0) {
                errors.push("embeddings.dimensions: must be greater than 0".into());
            }
        }
        let k = &self.knowledge;
        if k.top_k == 0 {
            errors.push("knowledge.top_k: must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&k.min_score) || !(0.0..=1.0).contains(&k.confident_score) {
            errors
                .push("knowledge.min_score, knowledge.confident_score: must be within 0..1".into());
        }
        if k.chunk_max_tokens < 16 || k.chunk_overlap_tokens >= k.chunk_max_tokens {
            errors.push(
                "knowledge.chunk_max_tokens: must be at least 16 and above chunk_overlap_tokens"
                    .into(),
            );
        }
        if k.max_document_bytes == 0 {
            errors.push("knowledge.max_document_bytes: must be greater than 0".into());
        }
        if self.storage.max_batch == 0 {
            errors.push("storage.max_batch: must be at least 1".into());
        }
        self.auth.validate(&mut errors);
        for proxy in &self.trusted_proxies {
            if crate::ops::clientip::IpNet::parse(proxy).is_none() {
                errors.push(format!(
                    "trusted_proxies: {proxy:?} is not an IP address or CIDR block"
                ));
            }
        }
        if let Some(tls) = &self.tls {
            if tls.reload_check_ms == 0 {
                errors.push("tls.reload_check_ms: must be greater than 0".into());
            }
            if tls.redirect_listen == Some(self.listen) {
                errors.push("tls.redirect_listen: must differ from listen".into());
            }
        }
        let r = &self.resources;
        if r.min_free_mb_webhooks > r.min_free_mb_warn {
            errors.push(
                "resources.min_free_mb_webhooks: must not exceed resources.min_free_mb_warn".into(),
            );
        }
        if r.max_inflight_webhooks == 0 {
            errors.push("resources.max_inflight_webhooks: must be at least 1".into());
        }
        if r.disk_check_ms == 0 {
            errors.push("resources.disk_check_ms: must be greater than 0".into());
        }
        if self.retention.sweep_interval_s == 0 {
            errors.push("retention.sweep_interval_s: must be greater than 0".into());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    pub fn public_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", self.listen))
    }

    pub fn debounce(&self) -> Duration {
        Duration::from_millis(self.pipeline.debounce_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns figment::Error
    fn file_then_environment_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wacrm.toml");
        std::fs::write(
            &path,
            "data_dir = \"/srv/wacrm\"\n[pipeline]\ndebounce_ms = 900\nhistory_messages = 4\nmax_tool_rounds = 2\nconcurrency = 8\n[llm]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key = \"sk-test\"\n",
        )
        .unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("WACRM_PIPELINE__DEBOUNCE_MS", "200");
            let config = Config::load(Some(&path)).unwrap();
            assert_eq!(config.data_dir, PathBuf::from("/srv/wacrm"));
            assert_eq!(config.pipeline.debounce_ms, 200);
            assert_eq!(config.pipeline.history_messages, 4);
            match &config.llm {
                LlmSettings::Openai { model, api_key, .. } => {
                    assert_eq!(model, "gpt-4o-mini");
                    assert_eq!(api_key.expose(), "sk-test");
                }
                other => panic!("unexpected {other:?}"),
            }
            assert!(!format!("{config:?}").contains("sk-test"), "secret leaked");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn embeddings_provider_switch_does_not_inherit_local_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wacrm.toml");
        std::fs::write(
            &path,
            "models_dir = \"/opt/wacrm/models\"\n[embeddings]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key = \"sk-emb\"\n",
        )
        .unwrap();
        figment::Jail::expect_with(|_| {
            let config = Config::load(Some(&path)).unwrap();
            assert_eq!(config.models_dir, PathBuf::from("/opt/wacrm/models"));
            assert_eq!(
                config.embeddings.model_id(),
                "openai:text-embedding-3-small"
            );
            assert!(!format!("{config:?}").contains("sk-emb"), "secret leaked");
            Ok(())
        });
        assert_eq!(
            Config::default().embeddings.model_id(),
            "multilingual-e5-small"
        );
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns figment::Error
    fn cli_variables_are_not_mistaken_for_settings() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("WACRM_CONFIG", "/etc/wacrm/wacrm.toml");
            jail.set_env("WACRM_LOG", "debug");
            jail.set_env("WACRM_CHANNEL_APP_SECRET", "s");
            jail.set_env("WACRM_LISTEN", "127.0.0.1:9999");
            let config = Config::load(None).unwrap();
            assert_eq!(config.listen.port(), 9999);
            jail.set_env("WACRM_LISTNE", "127.0.0.1:9999");
            assert!(Config::load(None).is_err(), "typos are still errors");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns figment::Error
    fn metering_cannot_be_turned_off_by_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wacrm.toml");
        std::fs::write(&path, "[pipeline]\nmetering = false\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("metering"), "{err}");
        figment::Jail::expect_with(|jail| {
            assert!(Config::load(None).unwrap().pipeline.metering);
            jail.set_env("WACRM_PIPELINE__METERING", "false");
            assert!(Config::load(None).is_err(), "not a setting");
            Ok(())
        });
    }

    #[test]
    fn invalid_settings_are_named() {
        let mut config = Config::default();
        config.graph.rate_per_second = 0;
        config.llm = LlmSettings::Openai {
            base_url: "ftp://x".into(),
            api_key: Secret::default(),
            model: "m".into(),
            timeout_ms: 0,
            max_retries: 1,
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("graph.rate_per_second"), "{err}");
        assert!(err.contains("llm.base_url"), "{err}");
        assert!(err.contains("llm.timeout_ms"), "{err}");
    }

    #[test]
    fn unknown_keys_and_missing_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wacrm.toml");
        std::fs::write(&path, "data_dri = \"x\"\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("data_dri"), "{err}");
        let err = Config::load(Some(&dir.path().join("missing.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}
