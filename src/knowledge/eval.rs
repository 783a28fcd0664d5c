//! `wacrm kb eval DOCS_DIR QUERIES.jsonl`: loads a directory of documents into a scratch knowledge
//! base (a throw-away data directory, the real ingestion and retrieval code) and measures how well
//! questions find their passage: hit@1, hit@5 and MRR per language, plus how the relevance score
//! separates answerable questions from ones the documents do not cover (to choose `min_score`).
//!
//! QUERIES.jsonl, one object a line:
//! `{"query": "...", "lang": "en", "expected": {"document": "faq.md", "contains": "free delivery"}}`
//! with `"expected": null` for a question the documents do not answer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::model::DocumentSource;
use super::retrieve::{Hit, SearchRequest};
use super::KnowledgeService;
use crate::config::Config;

#[derive(Debug, Clone, Deserialize)]
pub struct EvalQuery {
    pub query: String,
    #[serde(default = "default_lang")]
    pub lang: String,
    pub expected: Option<Expected>,
}

fn default_lang() -> String {
    "en".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct Expected {
    pub document: String,
    /// A piece of the passage that answers the question (case-insensitive).
    pub contains: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct LangReport {
    pub queries: usize,
    pub hit_at_1: f64,
    pub hit_at_5: f64,
    pub mrr: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThresholdRow {
    pub min_score: f32,
    /// Answerable questions whose right passage is still in the top 5 at this threshold.
    pub answerable_kept: f64,
    /// Questions outside the documents left with no passage at all.
    pub unanswerable_refused: f64,
    /// Of the answerable questions whose best passage reaches this score, the share where that
    /// best passage is the right one (what the offline responder's threshold needs).
    pub top1_precision: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub query: String,
    pub lang: String,
    pub expected: String,
    pub got: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub documents: usize,
    pub failed_documents: Vec<String>,
    pub chunks: u64,
    pub ingest_seconds: f64,
    pub by_lang: BTreeMap<String, LangReport>,
    pub unanswerable: usize,
    pub thresholds: Vec<ThresholdRow>,
    pub misses: Vec<Miss>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Knowledge(#[from] super::KnowledgeError),
}

pub fn read_queries(path: &Path) -> Result<Vec<EvalQuery>, EvalError> {
    let raw = std::fs::read_to_string(path)
        .map_err(|e| EvalError::Input(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in raw.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        out.push(
            serde_json::from_str(line)
                .map_err(|e| EvalError::Input(format!("{}:{}: {e}", path.display(), i + 1)))?,
        );
    }
    if out.is_empty() {
        return Err(EvalError::Input(format!(
            "{} has no queries",
            path.display()
        )));
    }
    Ok(out)
}

fn document_files(dir: &Path) -> Result<Vec<PathBuf>, EvalError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| EvalError::Input(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(EvalError::Input(format!("{} has no files", dir.display())));
    }
    Ok(files)
}

/// Runs the evaluation in a scratch data directory with `config`'s embedding settings.
pub async fn run(
    config: &Config,
    docs_dir: &Path,
    queries_file: &Path,
) -> Result<EvalReport, EvalError> {
    let queries = read_queries(queries_file)?;
    let files = document_files(docs_dir)?;
    let scratch = ScratchDir::new("eval").map_err(|e| EvalError::Setup(e.to_string()))?;
    let mut config = config.clone();
    config.data_dir = scratch.path().to_path_buf();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| EvalError::Setup(e.to_string()))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = crate::app::launch(config, listener, async {
        let _ = stopped.await;
    })
    .await
    .map_err(|e| EvalError::Setup(e.to_string()))?;
    let service = running.state.knowledge.clone();
    let result = evaluate(&service, &files, &queries).await;
    drop(service);
    let _ = stop.send(());
    running.wait().await;
    result
}

async fn evaluate(
    service: &Arc<KnowledgeService>,
    files: &[PathBuf],
    queries: &[EvalQuery],
) -> Result<EvalReport, EvalError> {
    let tenant = crate::tenants::create_tenant(
        service.store(),
        crate::tenants::NewTenant {
            slug: "eval".into(),
            name: "Evaluation".into(),
            time_zone: "UTC".into(),
        },
    )
    .await
    .map_err(|e| EvalError::Setup(e.to_string()))?;
    let kb = service.create_kb(tenant.id, "eval", Vec::new()).await?;
    let started = Instant::now();
    let mut ids = Vec::new();
    for f in files {
        let bytes =
            std::fs::read(f).map_err(|e| EvalError::Input(format!("{}: {e}", f.display())))?;
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let added = service
            .add_document(
                tenant.id,
                kb.id,
                &name,
                None,
                &bytes,
                DocumentSource::Upload,
            )
            .await?;
        ids.push(added.document.id);
    }
    let docs = service
        .wait_settled(tenant.id, &ids, Duration::from_secs(3600))
        .await?;
    let ingest_seconds = started.elapsed().as_secs_f64();
    let failed_documents = docs
        .iter()
        .filter(|d| d.failure.is_some())
        .map(|d| {
            format!(
                "{}: {}",
                d.name,
                d.failure.as_ref().map(|f| f.reason.as_str()).unwrap_or("")
            )
        })
        .collect();

    // Per query: the rank of the right passage (None: not in the top 5) and the best score.
    struct Outcome {
        lang: String,
        rank: Option<usize>,
        best_score: f32,
        right_score: Option<f32>,
    }
    let mut outcomes = Vec::new();
    let mut misses = Vec::new();
    for q in queries {
        let req = SearchRequest {
            tenant: tenant.id,
            outlet: None,
            kb: None,
            query: q.query.clone(),
            limit: 5,
            min_score: None,
        };
        let hits = service.search(&req).await?.hits;
        let best_score = hits.first().map_or(0.0, |h| h.score);
        let rank = q.expected.as_ref().and_then(|e| position(&hits, e));
        if let (Some(e), None) = (&q.expected, rank) {
            misses.push(Miss {
                query: q.query.clone(),
                lang: q.lang.clone(),
                expected: format!("{}: {}", e.document, e.contains),
                got: hits.first().map(|h| {
                    let t: String = h.text.chars().take(100).collect();
                    format!("{}: {t}", h.document_name)
                }),
            });
        }
        outcomes.push(Outcome {
            lang: if q.expected.is_some() {
                q.lang.clone()
            } else {
                "none".into()
            },
            right_score: rank.map(|r| hits[r].score),
            rank,
            best_score,
        });
    }
    let mut by_lang: BTreeMap<String, LangReport> = BTreeMap::new();
    for o in outcomes.iter().filter(|o| o.lang != "none") {
        let r = by_lang.entry(o.lang.clone()).or_default();
        r.queries += 1;
        if o.rank == Some(0) {
            r.hit_at_1 += 1.0;
        }
        if o.rank.is_some() {
            r.hit_at_5 += 1.0;
        }
        r.mrr += o.rank.map_or(0.0, |k| 1.0 / (k as f64 + 1.0));
    }
    for r in by_lang.values_mut() {
        let n = r.queries.max(1) as f64;
        r.hit_at_1 /= n;
        r.hit_at_5 /= n;
        r.mrr /= n;
    }
    let answerable: Vec<&Outcome> = outcomes.iter().filter(|o| o.lang != "none").collect();
    let unanswerable: Vec<&Outcome> = outcomes.iter().filter(|o| o.lang == "none").collect();
    let thresholds = (0..=10)
        .map(|i| {
            let t = i as f32 / 10.0;
            ThresholdRow {
                min_score: t,
                answerable_kept: ratio(
                    answerable
                        .iter()
                        .filter(|o| o.right_score.is_some_and(|s| s >= t))
                        .count(),
                    answerable.len(),
                ),
                unanswerable_refused: ratio(
                    unanswerable.iter().filter(|o| o.best_score < t).count(),
                    unanswerable.len(),
                ),
                top1_precision: ratio(
                    answerable
                        .iter()
                        .filter(|o| o.best_score >= t && o.rank == Some(0))
                        .count(),
                    answerable.iter().filter(|o| o.best_score >= t).count(),
                ),
            }
        })
        .collect();
    let chunks = docs.iter().map(|d| d.chunk_count as u64).sum();
    Ok(EvalReport {
        model: service.embeddings().model_id().to_string(),
        documents: docs.len(),
        failed_documents,
        chunks,
        ingest_seconds,
        by_lang,
        unanswerable: unanswerable.len(),
        thresholds,
        misses,
    })
}

/// A throw-away data directory, removed when dropped.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(purpose: &str) -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!("wacrm-{purpose}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ratio(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 / of as f64
    }
}

fn position(hits: &[Hit], expected: &Expected) -> Option<usize> {
    let needle = expected.contains.to_lowercase();
    hits.iter().position(|h| {
        h.document_name == expected.document && h.text.to_lowercase().contains(&needle)
    })
}

impl EvalReport {
    /// The report as people read it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "model {}; {} documents, {} chunks, ingested in {:.1} s\n",
            self.model, self.documents, self.chunks, self.ingest_seconds
        ));
        for f in &self.failed_documents {
            out.push_str(&format!("  failed: {f}\n"));
        }
        out.push_str("\nlang  queries  hit@1  hit@5  MRR\n");
        for (lang, r) in &self.by_lang {
            out.push_str(&format!(
                "{lang:<5} {:>7}  {:.3}  {:.3}  {:.3}\n",
                r.queries, r.hit_at_1, r.hit_at_5, r.mrr
            ));
        }
        out.push_str(&format!(
            "\nmin_score  answerable kept  unanswerable ({}) refused  top-1 precision\n",
            self.unanswerable
        ));
        for t in &self.thresholds {
            out.push_str(&format!(
                "{:>9.1}  {:>15.3}  {:>24.3}  {:>15.3}\n",
                t.min_score, t.answerable_kept, t.unanswerable_refused, t.top1_precision
            ));
        }
        if !self.misses.is_empty() {
            out.push_str(&format!("\nmisses ({}):\n", self.misses.len()));
            for m in &self.misses {
                out.push_str(&format!(
                    "  [{}] {:?}\n      expected {}\n      got      {}\n",
                    m.lang,
                    m.query,
                    m.expected,
                    m.got.as_deref().unwrap_or("(nothing)")
                ));
            }
        }
        out
    }
}
