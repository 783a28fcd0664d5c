//! The configured embedding provider: the local ONNX model (loaded once per process, lazily, and
//! run on blocking threads) or an OpenAI-compatible embeddings API.
//!
//! Raw cosine similarity means different things per model (multilingual-e5 puts unrelated texts
//! at 0.73-0.78, OpenAI's models near 0.1-0.2), so every provider carries a calibration that maps
//! cosine onto a 0-1 relevance: 0 at the similarity typical of unrelated text, 1 at that of a
//! close paraphrase. Thresholds in the configuration are on that relevance scale.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::embedder::{EmbedderConfig, LocalEmbedder};
use crate::config::EmbeddingSettings;

/// Cosine values that map to relevance 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub unrelated: f32,
    pub paraphrase: f32,
}

impl Calibration {
    /// multilingual-e5-small, measured on `eval/` (see eval/README.md): the best passage for a
    /// question the documents do not cover mostly sits below 0.80, a passage that answers the
    /// question at 0.80-0.90 (English and Indonesian alike).
    pub const E5: Calibration = Calibration {
        unrelated: 0.78,
        paraphrase: 0.88,
    };
    /// text-embedding-3-small: unrelated pairs near 0.1-0.2, answers from 0.4 up (not measured
    /// here; no remote API is reachable from the build machines).
    pub const OPENAI: Calibration = Calibration {
        unrelated: 0.2,
        paraphrase: 0.6,
    };

    pub fn for_model(model_id: &str) -> Self {
        if model_id.starts_with("openai:") {
            Self::OPENAI
        } else {
            Self::E5
        }
    }

    pub fn relevance(&self, cosine: f32) -> f32 {
        let span = (self.paraphrase - self.unrelated).max(1e-6);
        ((cosine - self.unrelated) / span).clamp(0.0, 1.0)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct EmbedFailure {
    pub code: &'static str,
    pub message: String,
}

impl EmbedFailure {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// How long a failed model load is remembered before the next attempt (a missing model is not
/// re-read from disk for every question).
const LOAD_RETRY_AFTER: Duration = Duration::from_secs(30);

enum Provider {
    Local {
        models_dir: PathBuf,
        config: EmbedderConfig,
        failed: Mutex<Option<(Instant, EmbedFailure)>>,
    },
    Api(ApiEmbedder),
}

/// The embedding provider of this process. Cheap to share behind an `Arc`.
pub struct Embeddings {
    provider: Provider,
    model_id: String,
    calibration: Calibration,
}

impl std::fmt::Debug for Embeddings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embeddings")
            .field("model_id", &self.model_id)
            .finish_non_exhaustive()
    }
}

impl Embeddings {
    pub fn from_config(settings: &EmbeddingSettings, models_dir: &Path) -> Result<Self, String> {
        let model_id = settings.model_id();
        let provider = match settings {
            EmbeddingSettings::Local { model, threads } => Provider::Local {
                models_dir: models_dir.to_path_buf(),
                config: EmbedderConfig {
                    model_id: model.clone(),
                    intra_threads: *threads,
                    ..EmbedderConfig::default()
                },
                failed: Mutex::new(None),
            },
            EmbeddingSettings::Openai {
                base_url,
                api_key,
                model,
                dimensions,
                timeout_ms,
            } => Provider::Api(ApiEmbedder::new(
                base_url,
                api_key.expose(),
                model,
                *dimensions,
                Duration::from_millis(*timeout_ms),
            )?),
        };
        Ok(Self {
            provider,
            calibration: Calibration::for_model(&model_id),
            model_id,
        })
    }

    /// The id recorded with every vector; vectors of another id are never compared with these.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    pub fn calibration(&self) -> Calibration {
        self.calibration
    }

    /// Loads the local model now (a no-op for the API), so the first question does not wait.
    pub async fn warm_up(self: &Arc<Self>) -> Result<(), EmbedFailure> {
        if let Provider::Local { .. } = &self.provider {
            let this = self.clone();
            run_blocking(move || this.local().map(|_| ())).await?;
        }
        Ok(())
    }

    pub async fn embed_passages(
        self: &Arc<Self>,
        texts: Vec<String>,
    ) -> Result<Vec<Vec<f32>>, EmbedFailure> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        match &self.provider {
            Provider::Local { .. } => {
                let this = self.clone();
                run_blocking(move || {
                    let model = this.local()?;
                    model
                        .embed_passages(&texts)
                        .map_err(|e| EmbedFailure::new("embed.inference", e.to_string()))
                })
                .await
            }
            Provider::Api(api) => api.embed(&texts).await,
        }
        .map(normalise_all)
    }

    pub async fn embed_query(self: &Arc<Self>, text: &str) -> Result<Vec<f32>, EmbedFailure> {
        let mut v = match &self.provider {
            Provider::Local { .. } => {
                let this = self.clone();
                let text = text.to_string();
                run_blocking(move || {
                    let model = this.local()?;
                    model
                        .embed_query(&text)
                        .map_err(|e| EmbedFailure::new("embed.inference", e.to_string()))
                })
                .await?
            }
            Provider::Api(api) => api
                .embed(&[text.to_string()])
                .await?
                .pop()
                .ok_or_else(|| EmbedFailure::new("embed.api", "no vector returned"))?,
        };
        normalise(&mut v);
        Ok(v)
    }

    /// The loaded local model (blocking: call from a blocking thread).
    fn local(&self) -> Result<Arc<LocalEmbedder>, EmbedFailure> {
        let Provider::Local {
            models_dir,
            config,
            failed,
        } = &self.provider
        else {
            return Err(EmbedFailure::new("embed.config", "not a local provider"));
        };
        {
            let failed = failed.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((at, error)) = failed.as_ref() {
                if at.elapsed() < LOAD_RETRY_AFTER {
                    return Err(error.clone());
                }
            }
        }
        match shared_local_embedder(models_dir, config) {
            Ok(model) => Ok(model),
            Err(error) => {
                *failed.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((Instant::now(), error.clone()));
                Err(error)
            }
        }
    }
}

/// ONNX Runtime allows one environment per process and the model takes ~700 MB: every service,
/// test and benchmark in a process shares one loaded model per (directory, model id).
pub fn shared_local_embedder(
    models_dir: &Path,
    config: &EmbedderConfig,
) -> Result<Arc<LocalEmbedder>, EmbedFailure> {
    type Cache = Mutex<HashMap<(PathBuf, String), Arc<LocalEmbedder>>>;
    static LOADED: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = LOADED.get_or_init(Cache::default);
    // Held during the load so two first callers do not load the model twice.
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    let key = (models_dir.to_path_buf(), config.model_id.clone());
    if let Some(model) = cache.get(&key) {
        return Ok(model.clone());
    }
    let started = Instant::now();
    let model = LocalEmbedder::load_with(models_dir, config)
        .map_err(|e| EmbedFailure::new(e.code(), format!("embedding model unavailable: {e}")))?;
    tracing::info!(model = %config.model_id, dimension = model.dimension(), elapsed_ms = started.elapsed().as_millis() as u64, "embedding model loaded");
    let model = Arc::new(model);
    cache.insert(key, model.clone());
    Ok(model)
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EmbedFailure> + Send + 'static,
) -> Result<T, EmbedFailure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EmbedFailure::new("embed.panic", format!("embedding thread failed: {e}")))?
}

pub fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x /= norm;
        }
    }
}

fn normalise_all(mut vs: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    for v in &mut vs {
        normalise(v);
    }
    vs
}

/// Dot product in eight independent lanes: the compiler turns this into SIMD, which it may not do
/// for a plain sequential sum (float addition is not associative). Vector search spends most of
/// its time here.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0f32; 8];
    let mut xs = a.chunks_exact(8);
    let mut ys = b.chunks_exact(8);
    for (x, y) in (&mut xs).zip(&mut ys) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let tail: f32 = xs
        .remainder()
        .iter()
        .zip(ys.remainder())
        .map(|(x, y)| x * y)
        .sum();
    lanes.iter().sum::<f32>() + tail
}

/// Inputs per API request (OpenAI accepts up to 2048; smaller keeps one retry cheap).
const API_BATCH: usize = 64;
const API_ATTEMPTS: u32 = 3;

/// Client of an OpenAI-compatible `POST /embeddings`.
pub struct ApiEmbedder {
    http: reqwest::Client,
    url: String,
    api_key: String,
    model: String,
    dimensions: Option<usize>,
}

impl ApiEmbedder {
    pub fn new(
        base_url: &str,
        api_key: &str,
        model: &str,
        dimensions: Option<usize>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            url: format!("{}/embeddings", base_url.trim_end_matches('/')),
            api_key: api_key.to_string(),
            model: model.to_string(),
            dimensions,
        })
    }

    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedFailure> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(API_BATCH) {
            out.extend(self.embed_batch(batch).await?);
        }
        Ok(out)
    }

    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedFailure> {
        let mut body = json!({"model": self.model, "input": texts, "encoding_format": "float"});
        if let Some(d) = self.dimensions {
            body["dimensions"] = json!(d);
        }
        let mut last = EmbedFailure::new("embed.api", "no attempt made");
        for attempt in 0..API_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
            }
            let mut request = self.http.post(&self.url).json(&body);
            if !self.api_key.is_empty() {
                request = request.bearer_auth(&self.api_key);
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = EmbedFailure::new("embed.api_unreachable", e.to_string());
                    continue;
                }
            };
            let status = response.status();
            let value: Value = response.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                return parse_embeddings(&value, texts.len());
            }
            let message = value["error"]["message"]
                .as_str()
                .unwrap_or("request failed")
                .to_string();
            last = EmbedFailure::new(
                "embed.api_status",
                format!("HTTP {}: {message}", status.as_u16()),
            );
            if !(status.as_u16() == 429 || status.is_server_error()) {
                break;
            }
        }
        Err(last)
    }
}

fn parse_embeddings(value: &Value, expected: usize) -> Result<Vec<Vec<f32>>, EmbedFailure> {
    let bad = |m: &str| EmbedFailure::new("embed.api_response", m.to_string());
    let data = value["data"]
        .as_array()
        .ok_or_else(|| bad("response has no data array"))?;
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for (position, item) in data.iter().enumerate() {
        let index = item["index"]
            .as_u64()
            .map(|i| i as usize)
            .unwrap_or(position);
        let vector: Vec<f32> = item["embedding"]
            .as_array()
            .ok_or_else(|| bad("an item has no embedding"))?
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("an embedding holds a non-number"))?;
        let slot = slots
            .get_mut(index)
            .ok_or_else(|| bad("an embedding index is out of range"))?;
        *slot = Some(vector);
    }
    slots
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("fewer embeddings than inputs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_dot_matches_the_plain_sum() {
        for len in [0usize, 3, 8, 13, 384] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "{len}");
        }
    }

    #[test]
    fn relevance_is_clamped_onto_0_1() {
        let c = Calibration::E5;
        assert_eq!(c.relevance(0.5), 0.0);
        assert_eq!(c.relevance(0.99), 1.0);
        let mid = c.relevance((c.unrelated + c.paraphrase) / 2.0);
        assert!((mid - 0.5).abs() < 1e-4);
    }

    #[test]
    fn api_embeddings_are_put_back_in_input_order() {
        let v = json!({"data": [
            {"index": 1, "embedding": [0.0, 1.0]},
            {"index": 0, "embedding": [1.0, 0.0]}
        ]});
        let out = parse_embeddings(&v, 2).unwrap();
        assert_eq!(out, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
        assert!(parse_embeddings(&v, 3).is_err());
        assert!(parse_embeddings(&json!({"data": [{"index": 0}]}), 1).is_err());
    }
}
