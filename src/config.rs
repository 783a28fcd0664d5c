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
    /// Log format: "text" for terminals, "json" for journald and log shippers.
    pub log_format: LogFormat,
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
            log_format: LogFormat::Text,
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
        }
    }
}

/// `WACRM_*` environment variables that belong to the command line or the log filter.
const NOT_SETTINGS: &[&str] = &[
    "log",
    "config",
    "channel_access_token",
    "channel_app_secret",
    "channel_verify_token",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(String),
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<String>),
}

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
        // The CLI and the log filter read these WACRM_* variables themselves; they are not settings.
        figment = figment.merge(Env::prefixed("WACRM_").ignore(NOT_SETTINGS).split("__"));
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
        if self.storage.max_batch == 0 {
            errors.push("storage.max_batch: must be at least 1".into());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
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
            // Read by the CLI and the log filter, not settings: must not be "unknown field".
            jail.set_env("WACRM_LOG", "debug");
            jail.set_env("WACRM_CONFIG", path.display().to_string());
            jail.set_env("WACRM_CHANNEL_APP_SECRET", "s");
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
