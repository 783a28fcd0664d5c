//! Hybrid retrieval: BM25 and dense candidates, fused by reciprocal rank, re-read from the tenant's
//! rows (so a deleted or foreign chunk can never come back), and scored on a 0-1 relevance scale.
//!
//! Ranking uses reciprocal rank fusion (k = 60): a chunk high in both lists beats one high in a
//! single list, with no need to make BM25 and cosine scores comparable. The *score* reported with
//! each hit, and compared with `knowledge.min_score`, is the calibrated dense relevance (see
//! `embeddings::Calibration`): 0 means "as similar as unrelated text usually is", 1 means "as
//! similar as a close paraphrase". Without a query vector (embedding provider down) it falls back
//! to a BM25-only score, `bm25 / (bm25 + 5)`.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::embeddings::dot;
use super::model::*;
use super::service::KnowledgeService;
use super::KnowledgeError;
use crate::assistant::{KnowledgePassage, KnowledgeRetriever, RetrieveFuture};
use crate::storage::{DocumentId, KnowledgeBaseId, OutletId, TenantId};

/// Candidates taken from each ranking before fusion.
const CANDIDATES: usize = 30;
const RRF_K: f32 = 60.0;

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub tenant: TenantId,
    /// The conversation's outlet: tenant-wide bases plus this outlet's.
    pub outlet: Option<OutletId>,
    /// Restrict to one base (search tester).
    pub kb: Option<KnowledgeBaseId>,
    pub query: String,
    pub limit: usize,
    /// Hits below this relevance are dropped (None: keep all).
    pub min_score: Option<f32>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hit {
    pub chunk: u64,
    pub kb: KnowledgeBaseId,
    pub document: DocumentId,
    /// File name or page URL.
    pub document_name: String,
    /// Title found in the document (first heading, HTML title, PDF metadata), if any.
    pub document_title: Option<String>,
    pub ordinal: u32,
    pub heading_path: Vec<String>,
    pub page: Option<u32>,
    pub text: String,
    /// Relevance, 0-1 (see the module documentation).
    pub score: f32,
    pub fused: f32,
    pub cosine: Option<f32>,
    pub bm25: Option<f32>,
    pub bm25_rank: Option<usize>,
    pub dense_rank: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct SearchOutcome {
    pub hits: Vec<Hit>,
    /// Why dense retrieval was skipped, if it was.
    pub dense_unavailable: Option<String>,
}

impl KnowledgeService {
    pub async fn search(&self, req: &SearchRequest) -> Result<SearchOutcome, KnowledgeError> {
        let question = req.query.trim();
        if question.is_empty() {
            return Ok(SearchOutcome::default());
        }
        let allowed = self.allowed_bases(req.tenant, req.outlet, req.kb)?;
        if allowed.is_empty() {
            return Ok(SearchOutcome::default());
        }
        let (query_vector, dense_unavailable) = match self.embeddings.embed_query(question).await {
            Ok(v) => {
                self.count_query_tokens(req.tenant, question);
                (Some(v), None)
            }
            Err(e) => {
                tracing::warn!(tenant = %req.tenant, code = e.code, error = %e, "dense retrieval unavailable; BM25 only");
                (None, Some(e.message))
            }
        };
        let hits = self.search_with_vector(req, &allowed, query_vector).await?;
        Ok(SearchOutcome {
            hits,
            dense_unavailable,
        })
    }

    /// The bases a conversation of `outlet` may search.
    pub fn allowed_bases(
        &self,
        tenant: TenantId,
        outlet: Option<OutletId>,
        only: Option<KnowledgeBaseId>,
    ) -> Result<Vec<KnowledgeBaseId>, KnowledgeError> {
        Ok(super::store::list_kbs(&self.store, tenant)?
            .into_iter()
            .filter(|kb| only.is_none_or(|o| o == kb.id))
            .filter(|kb| only.is_some() || kb.serves(outlet))
            .map(|kb| kb.id)
            .collect())
    }

    /// Hybrid search with a ready query vector (benchmarks pass synthetic ones).
    pub async fn search_with_vector(
        &self,
        req: &SearchRequest,
        allowed: &[KnowledgeBaseId],
        query_vector: Option<Vec<f32>>,
    ) -> Result<Vec<Hit>, KnowledgeError> {
        let index = self.index.clone();
        let store = self.store.clone();
        let req = req.clone();
        let allowed = allowed.to_vec();
        let model = self.embeddings.model_id().to_string();
        let calibration = self.embeddings.calibration();
        tokio::task::spawn_blocking(move || {
            hybrid(
                &index,
                &store,
                &req,
                &allowed,
                query_vector.as_deref(),
                &model,
                calibration,
            )
        })
        .await
        .map_err(|e| KnowledgeError::Index(e.to_string()))?
    }
}

/// The blocking core of a search: both rankings, fusion, re-read, scoring.
pub fn hybrid(
    index: &super::index::SearchIndex,
    store: &crate::storage::Store,
    req: &SearchRequest,
    allowed: &[KnowledgeBaseId],
    query_vector: Option<&[f32]>,
    model: &str,
    calibration: super::embeddings::Calibration,
) -> Result<Vec<Hit>, KnowledgeError> {
    let tenant = req.tenant;
    let every_base = super::store::list_kbs(store, tenant)?
        .iter()
        .all(|kb| allowed.contains(&kb.id));
    let bm25 = index
        .text
        .search(
            tenant,
            (!every_base).then_some(allowed),
            &req.query,
            CANDIDATES,
        )
        .map_err(KnowledgeError::Index)?;
    let dense = match (query_vector, index.vectors.get(tenant)) {
        (Some(q), Some(graph)) if graph.model == model => graph.search(q, CANDIDATES, allowed),
        _ => Vec::new(),
    };
    struct Candidate {
        fused: f32,
        bm25: Option<(usize, f32)>,
        dense: Option<(usize, f32)>,
    }
    let mut candidates: HashMap<u64, Candidate> = HashMap::new();
    for (rank, (id, score)) in bm25.iter().enumerate() {
        let c = candidates.entry(*id).or_insert(Candidate {
            fused: 0.0,
            bm25: None,
            dense: None,
        });
        c.fused += 1.0 / (RRF_K + rank as f32 + 1.0);
        c.bm25 = Some((rank + 1, *score));
    }
    for (rank, (id, cosine)) in dense.iter().enumerate() {
        let c = candidates.entry(*id).or_insert(Candidate {
            fused: 0.0,
            bm25: None,
            dense: None,
        });
        c.fused += 1.0 / (RRF_K + rank as f32 + 1.0);
        c.dense = Some((rank + 1, *cosine));
    }
    let mut ranked: Vec<(u64, Candidate)> = candidates.into_iter().collect();
    ranked.sort_by(|a, b| b.1.fused.total_cmp(&a.1.fused).then(a.0.cmp(&b.0)));

    // Re-read every candidate through the tenant's own handle: the rows, not the indexes, decide.
    let hits = store.read(|r| {
        let t = r.tenant(tenant);
        let mut names: HashMap<DocumentId, (String, Option<String>)> = HashMap::new();
        let mut hits = Vec::new();
        for (id, c) in &ranked {
            let key = chunk_key(*id);
            let Some(chunk) = t.get(&CHUNKS, &key)? else {
                continue;
            };
            if !allowed.contains(&chunk.kb) {
                continue;
            }
            let Some(owner) = chunk.owners.first().cloned() else {
                continue;
            };
            let cosine = match (c.dense, query_vector) {
                (Some((_, cos)), _) => Some(cos),
                (None, Some(q)) => t
                    .get(&CHUNK_VECTORS, &key)?
                    .filter(|v| v.model == model)
                    .and_then(|v| v.vector())
                    .filter(|v| v.len() == q.len())
                    .map(|v| dot(q, &v)),
                (None, None) => None,
            };
            let score = match (cosine, c.bm25) {
                (Some(cos), _) => calibration.relevance(cos),
                (None, Some((_, b))) => b / (b + 5.0),
                (None, None) => 0.0,
            };
            if req.min_score.is_some_and(|m| score < m) {
                continue;
            }
            let (name, title) = match names.get(&owner.document) {
                Some(n) => n.clone(),
                None => {
                    let n = t
                        .get(&DOCUMENTS, owner.document.as_bytes())?
                        .map(|d| (d.name, d.title.filter(|t| !t.trim().is_empty())))
                        .unwrap_or_default();
                    names.insert(owner.document, n.clone());
                    n
                }
            };
            hits.push(Hit {
                chunk: chunk.id,
                kb: chunk.kb,
                document: owner.document,
                document_name: name,
                document_title: title,
                ordinal: owner.ordinal,
                heading_path: owner.heading_path,
                page: owner.page,
                text: chunk.text,
                score,
                fused: c.fused,
                cosine,
                bm25: c.bm25.map(|(_, s)| s),
                bm25_rank: c.bm25.map(|(r, _)| r),
                dense_rank: c.dense.map(|(r, _)| r),
            });
            if hits.len() >= req.limit {
                break;
            }
        }
        Ok(hits)
    })?;
    Ok(hits)
}

/// Sentences (and table rows: one per line) of a passage.
fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut start = 0;
        let bytes: Vec<(usize, char)> = line.char_indices().collect();
        for (i, (pos, ch)) in bytes.iter().enumerate() {
            let next_is_space = bytes.get(i + 1).is_none_or(|(_, c)| c.is_whitespace());
            if matches!(ch, '.' | '!' | '?') && next_is_space {
                let end = pos + ch.len_utf8();
                let s = line[start..end].trim();
                if !s.is_empty() {
                    out.push(s.to_string());
                }
                start = end;
            }
        }
        let rest = line[start..].trim();
        if !rest.is_empty() {
            out.push(rest.to_string());
        }
    }
    out
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() > 2)
        .map(str::to_lowercase)
        .collect()
}

/// Most characters an offline answer quotes.
const EXCERPT_MAX_CHARS: usize = 320;

/// Picks the sentence of `text` that best answers `question` (by embedding when a query vector
/// and sentence vectors are given, else by shared words) and the next one when it is short.
pub fn excerpt(text: &str, question: &str, sentence_scores: Option<&[f32]>) -> String {
    let sents = sentences(text);
    if sents.is_empty() {
        return String::new();
    }
    let q: Vec<String> = words(question);
    let lexical = |s: &str| -> f32 {
        let w = words(s);
        if w.is_empty() {
            return 0.0;
        }
        w.iter().filter(|x| q.contains(x)).count() as f32 / (w.len() as f32).sqrt()
    };
    let best = (0..sents.len())
        .max_by(|a, b| {
            let score = |i: usize| {
                sentence_scores
                    .and_then(|s| s.get(i).copied())
                    .unwrap_or(0.0)
                    + 0.01 * lexical(&sents[i])
            };
            score(*a).total_cmp(&score(*b)).then(b.cmp(a))
        })
        .unwrap_or(0);
    let mut out = sents[best].clone();
    // A heading-like line ("Opening hours:") or a fragment says little alone: add the next one.
    if (out.ends_with(':') || out.chars().count() < 60) && best + 1 < sents.len() {
        out.push(' ');
        out.push_str(&sents[best + 1]);
    }
    if out.chars().count() > EXCERPT_MAX_CHARS {
        let cut: String = out.chars().take(EXCERPT_MAX_CHARS - 3).collect();
        let cut = match cut.rfind(' ') {
            Some(i) if i > EXCERPT_MAX_CHARS / 2 => cut[..i].to_string(),
            _ => cut,
        };
        out = format!("{cut}...");
    }
    out
}

impl KnowledgeService {
    /// The assistant's view: top passages above the minimum score, the best one with a brief
    /// excerpt for the offline responder.
    pub async fn retrieve_passages(
        &self,
        tenant: TenantId,
        outlet: Option<OutletId>,
        question: &str,
    ) -> Vec<KnowledgePassage> {
        let req = SearchRequest {
            tenant,
            outlet,
            kb: None,
            query: question.to_string(),
            limit: self.config.top_k,
            min_score: Some(self.config.min_score),
        };
        let outcome = match self.search(&req).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(%tenant, code = e.code(), error = %e, "knowledge search failed");
                return Vec::new();
            }
        };
        let mut passages: Vec<KnowledgePassage> = outcome
            .hits
            .iter()
            .map(|h| KnowledgePassage {
                document: h
                    .document_title
                    .clone()
                    .unwrap_or_else(|| h.document_name.clone()),
                chunk: format!("{}#{}", h.document, h.ordinal),
                text: h.text.clone(),
                excerpt: String::new(),
                score: h.score,
                // Without the dense model the score is BM25's guess: never enough alone.
                confident: outcome.dense_unavailable.is_none()
                    && h.score >= self.config.confident_score,
            })
            .collect();
        if let Some(best) = passages.first_mut() {
            let scores = if best.confident {
                self.sentence_scores(question, &best.text).await
            } else {
                None
            };
            best.excerpt = excerpt(&best.text, question, scores.as_deref());
        }
        passages
    }

    /// Cosine of each sentence of `text` with the question (one small embedding batch).
    async fn sentence_scores(&self, question: &str, text: &str) -> Option<Vec<f32>> {
        let sents = sentences(text);
        if sents.len() < 2 || sents.len() > 64 {
            return None;
        }
        let q = self.embeddings.embed_query(question).await.ok()?;
        let vs = self.embeddings.embed_passages(sents).await.ok()?;
        Some(vs.iter().map(|v| dot(&q, v)).collect())
    }
}

impl KnowledgeRetriever for KnowledgeService {
    fn retrieve<'a>(
        &'a self,
        tenant: TenantId,
        outlet: Option<OutletId>,
        question: &'a str,
    ) -> RetrieveFuture<'a> {
        Box::pin(self.retrieve_passages(tenant, outlet, question))
    }

    fn no_answer_policy(&self, tenant: TenantId) -> NoAnswerPolicy {
        self.settings(tenant)
            .map(|s| s.no_answer)
            .unwrap_or_default()
    }
}

/// Shared handle type the app wires into the assistant.
pub type SharedRetriever = Arc<dyn KnowledgeRetriever>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_sentences_and_rows() {
        let s = sentences(
            "Opening hours: 9 am to 9 pm. Closed on Mondays!\nItem: Latte; Price: 35000\n\n",
        );
        assert_eq!(
            s,
            vec![
                "Opening hours: 9 am to 9 pm.",
                "Closed on Mondays!",
                "Item: Latte; Price: 35000"
            ]
        );
        assert_eq!(sentences("Version 2.5 is out"), vec!["Version 2.5 is out"]);
    }

    #[test]
    fn excerpt_is_brief_and_picks_the_matching_sentence() {
        let text = "Welcome to Kopi Nusantara, the home of fine coffee since 1998 in Bandung. \
                    We roast our own beans every morning in small batches for freshness. \
                    Delivery is free for orders above 100000 rupiah within the city limits. \
                    Our loyalty card gives you one free drink for every ten purchased drinks.";
        let e = excerpt(text, "is delivery free?", None);
        assert!(e.starts_with("Delivery is free"), "{e}");
        assert!(e.len() < text.len() / 2, "{e}");
        // Embedding scores, when given, decide over shared words.
        let e = excerpt(text, "is delivery free?", Some(&[0.1, 0.2, 0.3, 0.9]));
        assert!(e.starts_with("Our loyalty card"), "{e}");
    }
}
