//! Local, offline sentence embeddings: fastembed on ONNX Runtime, loaded from `models/`.
//!
//! Nothing is downloaded at run time. `scripts/fetch-models.sh` (run by `install.sh`)
//! puts ONNX Runtime's shared library and the model files in the models directory:
//!
//! ```text
//! models/libonnxruntime.so.1.32.0      (or libonnxruntime.so)
//! models/<model_id>/model.onnx         (or onnx/model.onnx, as in Hugging Face repos)
//! models/<model_id>/tokenizer.json, config.json, special_tokens_map.json, tokenizer_config.json
//! ```
//!
//! Embedding is CPU-bound and blocking: call it from `spawn_blocking` or a worker
//! thread, not from an async task. Inputs longer than 512 tokens are truncated, so
//! callers chunk documents first.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use fastembed::{
    InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel,
};
use ort::environment::Environment;

/// The multilingual model wacrm installs by default (about 100 languages, 384-d).
pub const DEFAULT_MODEL_ID: &str = "multilingual-e5-small";

/// Library names tried in the models directory, most specific first.
pub const ORT_LIBRARY_NAMES: &[&str] = &["libonnxruntime.so.1.32.0", "libonnxruntime.so"];

/// Sentences per ONNX Runtime call: large enough to amortise the call, small enough
/// that padding to the longest sentence in a batch stays cheap.
const DEFAULT_BATCH_SIZE: usize = 32;

const FIX_HINT: &str = "run install.sh or scripts/fetch-models.sh";

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embedding model file missing: {} ({FIX_HINT})", path.display())]
    MissingFile { path: PathBuf },
    #[error("cannot read {}: {source} ({FIX_HINT})", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid {}: {reason} ({FIX_HINT})", path.display())]
    BadConfig { path: PathBuf, reason: String },
    #[error("cannot load ONNX Runtime from {}: {reason} ({FIX_HINT})", path.display())]
    Runtime { path: PathBuf, reason: String },
    #[error("cannot load embedding model {model_id}: {reason}")]
    ModelLoad { model_id: String, reason: String },
    #[error("embedding failed: {0}")]
    Inference(String),
    #[error("model produced {got}-dimensional vectors, expected {expected}")]
    Dimension { expected: usize, got: usize },
}

impl EmbedError {
    /// Stable machine-readable code, for API errors and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingFile { .. } => "embed.missing_file",
            Self::Io { .. } => "embed.io",
            Self::BadConfig { .. } => "embed.bad_config",
            Self::Runtime { .. } => "embed.runtime",
            Self::ModelLoad { .. } => "embed.model_load",
            Self::Inference(_) => "embed.inference",
            Self::Dimension { .. } => "embed.dimension",
        }
    }
}

/// How to load an embedder; `Default` is the installed multilingual model.
#[derive(Debug, Clone)]
pub struct EmbedderConfig {
    /// Subdirectory of the models directory holding the model files.
    pub model_id: String,
    /// ONNX Runtime library; `None` looks in the models directory.
    pub ort_library: Option<PathBuf>,
    /// ONNX Runtime intra-op threads; `None` uses every core.
    pub intra_threads: Option<usize>,
    /// Let idle ONNX Runtime threads busy-wait for work. Off by default: on a small
    /// shared box spinning threads steal the cores the web server and other
    /// inference threads need, and throughput collapses under load.
    pub allow_spinning: bool,
    pub batch_size: usize,
}

impl Default for EmbedderConfig {
    fn default() -> Self {
        Self {
            model_id: DEFAULT_MODEL_ID.to_owned(),
            ort_library: None,
            intra_threads: None,
            allow_spinning: false,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }
}

/// A loaded embedding model. `Sync`: share it behind an `Arc`; calls are serialised
/// because a fastembed session needs `&mut` to run.
pub struct LocalEmbedder {
    model: Mutex<TextEmbedding>,
    model_id: String,
    dimension: usize,
    prefixes: Prefixes,
    batch_size: usize,
}

/// E5 models were trained with role prefixes and lose quality without them; other
/// sentence-transformers models (e.g. all-MiniLM-L6-v2) take plain text.
#[derive(Debug, Clone, Copy)]
struct Prefixes {
    query: &'static str,
    passage: &'static str,
}

impl Prefixes {
    fn for_model(model_id: &str) -> Self {
        if model_id.to_ascii_lowercase().contains("e5") {
            Self {
                query: "query: ",
                passage: "passage: ",
            }
        } else {
            Self {
                query: "",
                passage: "",
            }
        }
    }
}

impl LocalEmbedder {
    /// Load the default multilingual model from `models_dir`.
    pub fn load(models_dir: &Path) -> Result<Self, EmbedError> {
        Self::load_with(models_dir, &EmbedderConfig::default())
    }

    pub fn load_with(models_dir: &Path, config: &EmbedderConfig) -> Result<Self, EmbedError> {
        let model_dir = models_dir.join(&config.model_id);
        let onnx_path = find_model_file(&model_dir)?;
        let tokenizer_files = TokenizerFiles {
            tokenizer_file: read(&model_dir.join("tokenizer.json"))?,
            config_file: read(&model_dir.join("config.json"))?,
            special_tokens_map_file: read(&model_dir.join("special_tokens_map.json"))?,
            tokenizer_config_file: read(&model_dir.join("tokenizer_config.json"))?,
        };
        let declared_dim =
            hidden_size(&model_dir.join("config.json"), &tokenizer_files.config_file)?;

        let ort_library = match &config.ort_library {
            Some(path) => path.clone(),
            None => find_ort_library(models_dir)?,
        };
        let mut options =
            InitOptionsUserDefined::new().with_environment(ort_environment(&ort_library)?);
        if let Some(threads) = config.intra_threads {
            options = options.with_intra_threads(threads);
        }
        if !config.allow_spinning {
            options = options.with_session_config("session.intra_op.allow_spinning", "0");
        }
        let model = UserDefinedEmbeddingModel::new(read(&onnx_path)?, tokenizer_files)
            .with_pooling(Pooling::Mean);
        let model = TextEmbedding::try_new_from_user_defined(model, options).map_err(|e| {
            EmbedError::ModelLoad {
                model_id: config.model_id.clone(),
                reason: e.to_string(),
            }
        })?;

        let embedder = Self {
            model: Mutex::new(model),
            model_id: config.model_id.clone(),
            dimension: declared_dim,
            prefixes: Prefixes::for_model(&config.model_id),
            batch_size: config.batch_size.max(1),
        };
        // One tiny inference proves the graph runs and fixes the real output size,
        // so a broken or mismatched model fails at startup, not on the first message.
        let probe = embedder.embed_raw(vec!["passage: ok".to_owned()])?;
        let got = probe.first().map_or(0, Vec::len);
        if got != declared_dim {
            return Err(EmbedError::Dimension {
                expected: declared_dim,
                got,
            });
        }
        Ok(embedder)
    }

    /// Embed documents (knowledge-base chunks) for storage.
    pub fn embed_passages(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let prefixed = texts
            .iter()
            .map(|t| format!("{}{t}", self.prefixes.passage))
            .collect();
        self.embed_raw(prefixed)
    }

    /// Embed a customer question for searching the stored passages.
    pub fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut out = self.embed_raw(vec![format!("{}{text}", self.prefixes.query)])?;
        out.pop()
            .ok_or_else(|| EmbedError::Inference("no vector returned for the query".to_owned()))
    }

    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// Mean-pooled over the attention mask and L2-normalised by fastembed, so a dot
    /// product is the cosine similarity.
    fn embed_raw(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // A panic inside a previous call leaves the session itself intact.
        let mut model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        let vectors = model
            .embed(&texts, Some(self.batch_size))
            .map_err(|e| EmbedError::Inference(e.to_string()))?;
        if vectors.len() != texts.len() {
            return Err(EmbedError::Inference(format!(
                "{} vectors for {} texts",
                vectors.len(),
                texts.len()
            )));
        }
        Ok(vectors)
    }
}

/// ONNX Runtime allows one environment per process, and the library can be loaded
/// only once: every embedder shares the first one built.
fn ort_environment(library: &Path) -> Result<Environment, EmbedError> {
    static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);
    let mut shared = ENVIRONMENT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(environment) = shared.as_ref() {
        return Ok(environment.clone());
    }
    let runtime_error = |reason: String| EmbedError::Runtime {
        path: library.to_path_buf(),
        reason,
    };
    if !library.is_file() {
        return Err(EmbedError::MissingFile {
            path: library.to_path_buf(),
        });
    }
    let environment = ort::init_from(library)
        .map_err(|e| runtime_error(e.to_string()))?
        .with_name("wacrm")
        .build()
        .map_err(|e| runtime_error(e.to_string()))?;
    *shared = Some(environment.clone());
    Ok(environment)
}

fn find_ort_library(models_dir: &Path) -> Result<PathBuf, EmbedError> {
    ORT_LIBRARY_NAMES
        .iter()
        .map(|name| models_dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| EmbedError::MissingFile {
            path: models_dir.join(ORT_LIBRARY_NAMES[0]),
        })
}

/// `model.onnx` as fetch-models.sh writes it, or `onnx/model.onnx` as laid out in a
/// Hugging Face repository a user downloaded by hand.
fn find_model_file(model_dir: &Path) -> Result<PathBuf, EmbedError> {
    let flat = model_dir.join("model.onnx");
    if flat.is_file() {
        return Ok(flat);
    }
    let nested = model_dir.join("onnx").join("model.onnx");
    if nested.is_file() {
        return Ok(nested);
    }
    Err(EmbedError::MissingFile { path: flat })
}

fn read(path: &Path) -> Result<Vec<u8>, EmbedError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => EmbedError::MissingFile {
            path: path.to_path_buf(),
        },
        _ => EmbedError::Io {
            path: path.to_path_buf(),
            source,
        },
    })
}

fn hidden_size(path: &Path, config_json: &[u8]) -> Result<usize, EmbedError> {
    let bad = |reason: String| EmbedError::BadConfig {
        path: path.to_path_buf(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(config_json).map_err(|e| bad(e.to_string()))?;
    value
        .get("hidden_size")
        .and_then(serde_json::Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| bad("no positive integer `hidden_size`".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e5_models_get_role_prefixes_and_others_do_not() {
        let e5 = Prefixes::for_model("multilingual-e5-small");
        assert_eq!((e5.query, e5.passage), ("query: ", "passage: "));
        let minilm = Prefixes::for_model("all-MiniLM-L6-v2");
        assert_eq!((minilm.query, minilm.passage), ("", ""));
    }

    #[test]
    fn missing_models_dir_names_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = LocalEmbedder::load(dir.path()).err().unwrap();
        assert_eq!(err.code(), "embed.missing_file");
        let message = err.to_string();
        assert!(message.contains("model.onnx"), "{message}");
        assert!(message.contains("scripts/fetch-models.sh"), "{message}");
    }

    #[test]
    fn missing_runtime_is_reported_after_model_files() {
        let dir = tempfile::tempdir().unwrap();
        let model_dir = dir.path().join(DEFAULT_MODEL_ID);
        std::fs::create_dir_all(&model_dir).unwrap();
        for name in [
            "model.onnx",
            "tokenizer.json",
            "special_tokens_map.json",
            "tokenizer_config.json",
        ] {
            std::fs::write(model_dir.join(name), b"{}").unwrap();
        }
        std::fs::write(model_dir.join("config.json"), br#"{"hidden_size": 384}"#).unwrap();
        let err = LocalEmbedder::load(dir.path()).err().unwrap();
        assert_eq!(err.code(), "embed.missing_file");
        assert!(err.to_string().contains("libonnxruntime.so"), "{err}");
    }

    #[test]
    fn config_without_hidden_size_is_rejected() {
        let err = hidden_size(Path::new("config.json"), br#"{"pad_token_id": 1}"#).unwrap_err();
        assert_eq!(err.code(), "embed.bad_config");
        assert_eq!(
            hidden_size(Path::new("c"), br#"{"hidden_size": 384}"#).unwrap(),
            384
        );
    }
}
