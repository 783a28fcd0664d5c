//! Ingestion: the knowledge service's own consumer of `knowledge.document.uploaded`.
//!
//! parse → chunk → embed → one commit (chunks, vectors, status `ready`, and the event's ack) →
//! index. A crash anywhere before the commit leaves the event queued and the whole document is
//! ingested again on restart; a crash after it leaves the indexes behind redb, which the start-up
//! reconciliation repairs. A document that cannot be ingested is marked `failed` with its reason
//! and acked, so it never blocks the queue.

use std::collections::HashSet;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::chunk::{chunk, ChunkConfig};
use super::index::IndexItem;
use super::model::*;
use super::parse::{self, ParseLimits, ParsedDocument};
use super::service::KnowledgeService;
use super::store::{self, allocate_chunk_ids, detach_document_chunks, original_path};
use crate::events::{Consumer, Delivery, Envelope, EventPayload, Handler, HandlerError};
use crate::events::{HandlerFuture, LaneKey};
use crate::storage::{DocumentId, StoreError, TenantId};

/// Chunks embedded per call, and so per progress update.
const EMBED_BATCH: usize = 32;

pub struct IngestHandler {
    pub service: Arc<KnowledgeService>,
}

impl Handler for IngestHandler {
    fn consumer(&self) -> Consumer {
        Consumer::Knowledge
    }

    /// One tenant's documents one after another; tenants side by side.
    fn lane(&self, envelope: &Envelope) -> LaneKey {
        envelope.tenant.to_string()
    }

    fn handle<'a>(&'a self, delivery: &'a Delivery) -> HandlerFuture<'a> {
        Box::pin(async move {
            let EventPayload::DocumentUploaded { document } = &delivery.envelope.payload else {
                return Ok(());
            };
            let Ok(doc) = document.parse::<DocumentId>() else {
                return Err(HandlerError::Permanent(format!(
                    "not a document id: {document:?}"
                )));
            };
            self.service
                .ingest(delivery, delivery.envelope.tenant, doc)
                .await
        })
    }
}

/// A chunk of the document being ingested, deduplicated within it.
struct Planned {
    hash: String,
    text: String,
    owner: ChunkOwner,
    token_count: u32,
    /// Text given to the embedder and BM25: the heading path gives a short chunk its context.
    index_text: String,
    vector: Option<Vec<f32>>,
}

pub fn chunk_hash(text: &str) -> String {
    let normalised: Vec<&str> = text.split_whitespace().collect();
    hex::encode(Sha256::digest(normalised.join(" ").as_bytes()))
}

pub(crate) fn index_text(heading_path: &[String], text: &str) -> String {
    let heading = heading_path.join(" > ");
    if heading.is_empty() || text.starts_with(heading_path.last().map_or("", String::as_str)) {
        text.to_string()
    } else {
        format!("{heading}\n{text}")
    }
}

/// Why a document failed, as stored for the user.
pub struct Failure {
    pub code: String,
    pub reason: String,
}

impl KnowledgeService {
    pub(crate) async fn ingest(
        &self,
        delivery: &Delivery,
        tenant: TenantId,
        doc_id: DocumentId,
    ) -> Result<(), HandlerError> {
        let Some(doc) = self
            .store
            .read(|r| r.tenant(tenant).get(&DOCUMENTS, doc_id.as_bytes()))?
        else {
            return Ok(());
        };
        if doc.status.is_final() {
            return Ok(());
        }
        let _permit = self.ingest_permits.acquire().await;
        let generation = doc.generation;
        store::set_status(
            &self.store,
            tenant,
            doc_id,
            generation,
            DocumentStatus::Parsing,
            0,
        )
        .await?;
        self.notify(tenant);

        let parsed = match self.parse_original(tenant, &doc).await {
            Ok(p) => p,
            Err(failure) => return self.fail(delivery, tenant, &doc, failure).await,
        };
        let config = ChunkConfig {
            max_tokens: self.config.chunk_max_tokens,
            overlap_tokens: self.config.chunk_overlap_tokens,
        };
        let parsed_title = parsed.title.clone();
        let chunks = tokio::task::spawn_blocking(move || chunk(&parsed, &config))
            .await
            .map_err(|e| HandlerError::Retry(format!("chunking thread failed: {e}")))?;
        let mut seen = HashSet::new();
        let mut planned: Vec<Planned> = Vec::with_capacity(chunks.len());
        for c in chunks {
            // A heading alone (a document title before its first section) answers nothing and
            // only crowds out real passages.
            let bare_heading = c
                .heading_path
                .last()
                .is_some_and(|h| h.trim() == c.text.trim());
            if c.text.trim().is_empty() || bare_heading {
                continue;
            }
            let hash = chunk_hash(&c.text);
            if !seen.insert(hash.clone()) {
                continue;
            }
            planned.push(Planned {
                index_text: index_text(&c.heading_path, &c.text),
                hash,
                owner: ChunkOwner {
                    document: doc_id,
                    ordinal: c.ordinal,
                    heading_path: c.heading_path,
                    page: c.page,
                },
                token_count: c.token_count.min(u32::MAX as usize) as u32,
                text: c.text,
                vector: None,
            });
        }
        if planned.is_empty() {
            let failure = Failure {
                code: "no_extractable_text".into(),
                reason: "no extractable text".into(),
            };
            return self.fail(delivery, tenant, &doc, failure).await;
        }

        // Chunks this base already holds with a vector of the current model are not embedded again.
        let model = self.embeddings.model_id().to_string();
        let known: HashSet<String> = self.store.read(|r| {
            let t = r.tenant(tenant);
            let mut known = HashSet::new();
            for p in &planned {
                if let Some(r) = t.get(&CHUNK_BY_HASH, &hash_key(doc.kb, &p.hash))? {
                    if t.get(&CHUNK_VECTORS, &chunk_key(r.chunk))?
                        .is_some_and(|v| v.model == model)
                    {
                        known.insert(p.hash.clone());
                    }
                }
            }
            Ok(known)
        })?;
        let to_embed: Vec<usize> = (0..planned.len())
            .filter(|i| !known.contains(&planned[*i].hash))
            .collect();
        store::set_status(
            &self.store,
            tenant,
            doc_id,
            generation,
            DocumentStatus::Embedding,
            0,
        )
        .await?;
        self.notify(tenant);
        let mut done = 0usize;
        let mut last_progress = 0u8;
        for batch in to_embed.chunks(EMBED_BATCH) {
            let texts: Vec<String> = batch
                .iter()
                .map(|i| planned[*i].index_text.clone())
                .collect();
            let vectors = match self.embeddings.embed_passages(texts).await {
                Ok(v) => v,
                Err(e) => {
                    let failure = Failure {
                        code: e.code.to_string(),
                        reason: format!("embedding failed: {}", e.message),
                    };
                    return self.fail(delivery, tenant, &doc, failure).await;
                }
            };
            for (i, v) in batch.iter().zip(vectors) {
                planned[*i].vector = Some(v);
            }
            done += batch.len();
            let progress = (done * 100 / to_embed.len().max(1)).min(99) as u8;
            if progress >= last_progress + 5 {
                last_progress = progress;
                let still = store::set_status(
                    &self.store,
                    tenant,
                    doc_id,
                    generation,
                    DocumentStatus::Embedding,
                    progress,
                )
                .await?;
                if !still {
                    // Deleted or replaced meanwhile: the newer state has its own event.
                    return Ok(());
                }
                self.notify(tenant);
            }
        }
        let embedded_tokens: u64 = to_embed
            .iter()
            .map(|i| super::chunk::count_tokens(&planned[*i].index_text) as u64)
            .sum();
        if embedded_tokens > 0 {
            self.record_embedding_tokens(tenant, embedded_tokens).await;
        }
        let dimension = planned.iter().find_map(|p| p.vector.as_ref().map(Vec::len));
        self.commit_ingest(
            delivery,
            tenant,
            &doc,
            planned,
            parsed_title,
            model,
            dimension,
        )
        .await
    }

    async fn parse_original(
        &self,
        tenant: TenantId,
        doc: &Document,
    ) -> Result<ParsedDocument, Failure> {
        let path = original_path(&self.data_dir, tenant, doc.id, doc.generation);
        let bytes = tokio::fs::read(&path).await.map_err(|e| Failure {
            code: "file_missing".into(),
            reason: format!("the original file cannot be read: {e}"),
        })?;
        let limits = ParseLimits {
            max_bytes: self.config.max_document_bytes,
            ..ParseLimits::default()
        };
        let name = doc.name.clone();
        let mime = doc.mime.clone();
        let is_page = matches!(doc.source, DocumentSource::Url { .. });
        let parsed = tokio::task::spawn_blocking(move || {
            if is_page {
                parse::parse_html_page(&bytes, mime.as_deref(), &limits)
            } else {
                parse::parse(&bytes, &name, mime.as_deref(), &limits)
            }
        })
        .await
        .map_err(|e| Failure {
            code: "parse.crashed".into(),
            reason: format!("the parser failed on this file: {e}"),
        })?;
        parsed.map_err(|e| Failure {
            code: e.code().to_string(),
            reason: e.to_string(),
        })
    }

    async fn fail(
        &self,
        delivery: &Delivery,
        tenant: TenantId,
        doc: &Document,
        failure: Failure,
    ) -> Result<(), HandlerError> {
        tracing::info!(%tenant, document = %doc.id, code = %failure.code, reason = %failure.reason, "document failed");
        let (doc_id, generation) = (doc.id, doc.generation);
        let failure = DocumentFailure {
            code: failure.code,
            reason: failure.reason,
        };
        let (consumer, seq) = (delivery.envelope.consumer, delivery.envelope.seq);
        self.store
            .write(move |ctx| {
                let mut t = ctx.tenant(tenant);
                if let Some(mut d) = t.get(&DOCUMENTS, doc_id.as_bytes())? {
                    if d.generation == generation {
                        d.status = DocumentStatus::Failed;
                        d.failure = Some(failure.clone());
                        d.progress = 0;
                        d.updated_at_ms = crate::events::now_ms();
                        t.put(&DOCUMENTS, doc_id.as_bytes(), &d)?;
                    }
                }
                crate::events::ack(ctx, consumer, seq)
            })
            .await?;
        delivery.mark_acked();
        self.notify(tenant);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn commit_ingest(
        &self,
        delivery: &Delivery,
        tenant: TenantId,
        doc: &Document,
        planned: Vec<Planned>,
        title: Option<String>,
        model: String,
        dimension: Option<usize>,
    ) -> Result<(), HandlerError> {
        let (doc_id, generation, kb) = (doc.id, doc.generation, doc.kb);
        let planned = Arc::new(planned);
        let commit_model = model.clone();
        let consumer = delivery.envelope.consumer;
        let seq = delivery.envelope.seq;
        let outcome = self
            .store
            .write({
                let planned = planned.clone();
                move |ctx| {
                    let mut t = ctx.tenant(tenant);
                    let current = t.get(&DOCUMENTS, doc_id.as_bytes())?;
                    let Some(mut d) = current.filter(|d| d.generation == generation) else {
                        // Deleted or replaced meanwhile: the newer state has its own event.
                        crate::events::ack(ctx, consumer, seq)?;
                        return Ok(None);
                    };
                    // A re-ingestion (model change) replaces what the document had.
                    let removed = detach_document_chunks(&mut t, doc_id)?;
                    let mut fresh = 0u64;
                    for p in planned.iter() {
                        if !t.contains(&CHUNK_BY_HASH, &hash_key(kb, &p.hash))? {
                            fresh += 1;
                        }
                    }
                    let mut next = allocate_chunk_ids(&mut t, fresh)?;
                    let mut indexed = Vec::new();
                    for p in planned.iter() {
                        let by_hash = hash_key(kb, &p.hash);
                        let existing = t.get(&CHUNK_BY_HASH, &by_hash)?;
                        let (id, is_new) = match existing {
                            Some(r) => (r.chunk, false),
                            None => {
                                let id = next;
                                next += 1;
                                (id, true)
                            }
                        };
                        let key = chunk_key(id);
                        let mut chunk = match t.get(&CHUNKS, &key)? {
                            Some(c) if !is_new => c,
                            _ => StoredChunk {
                                id,
                                kb,
                                text: p.text.clone(),
                                token_count: p.token_count,
                                hash: p.hash.clone(),
                                owners: Vec::new(),
                            },
                        };
                        if !chunk.owners.iter().any(|o| o.document == doc_id) {
                            chunk.owners.push(p.owner.clone());
                        }
                        t.put(&CHUNKS, &key, &chunk)?;
                        t.put(&CHUNK_BY_HASH, &by_hash, &ChunkRef { chunk: id })?;
                        t.put(
                            &DOCUMENT_CHUNKS,
                            &document_chunk_key(doc_id, p.owner.ordinal),
                            &ChunkRef { chunk: id },
                        )?;
                        match &p.vector {
                            Some(v) => {
                                t.put(&CHUNK_VECTORS, &key, &StoredVector::new(&commit_model, v))?;
                            }
                            None => {
                                let has = t
                                    .get(&CHUNK_VECTORS, &key)?
                                    .is_some_and(|v| v.model == commit_model);
                                if !has {
                                    // The chunk it was going to share vanished meanwhile.
                                    return Err(StoreError::rejected(
                                        "retry",
                                        "a shared chunk was deleted during ingestion",
                                    ));
                                }
                            }
                        }
                        if is_new || p.vector.is_some() || removed.contains(&id) {
                            indexed.push(id);
                        }
                    }
                    if let Some(dimension) = dimension {
                        if let Some(mut base) = t.get(&KNOWLEDGE_BASES, kb.as_bytes())? {
                            let wanted = EmbeddingModel {
                                id: commit_model.clone(),
                                dimension,
                            };
                            if base.embedding.as_ref() != Some(&wanted) {
                                base.embedding = Some(wanted);
                                t.put(&KNOWLEDGE_BASES, kb.as_bytes(), &base)?;
                            }
                        }
                    }
                    // Still `embedding`: the document turns `ready` only once it is searchable.
                    d.progress = 100;
                    d.chunk_count = planned.len() as u32;
                    d.title = title.clone().or(d.title);
                    d.updated_at_ms = crate::events::now_ms();
                    t.put(&DOCUMENTS, doc_id.as_bytes(), &d)?;
                    let still_used: HashSet<u64> = indexed.iter().copied().collect();
                    let gone: Vec<u64> = removed
                        .into_iter()
                        .filter(|id| !still_used.contains(id))
                        .collect();
                    Ok(Some((indexed, gone)))
                }
            })
            .await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(StoreError::Rejected {
                code: "retry",
                message,
            }) => return Err(HandlerError::Retry(message)),
            Err(e) => return Err(e.into()),
        };
        let Some((indexed, gone)) = outcome else {
            delivery.mark_acked();
            return Ok(());
        };
        // Index what was committed. Shared chunks that already had vectors are re-read from redb.
        let items = self.store.read(|r| {
            let t = r.tenant(tenant);
            let mut items = Vec::with_capacity(indexed.len());
            for id in &indexed {
                let key = chunk_key(*id);
                let Some(c) = t.get(&CHUNKS, &key)? else {
                    continue;
                };
                let vector = t
                    .get(&CHUNK_VECTORS, &key)?
                    .filter(|v| v.model == model)
                    .and_then(|v| v.vector());
                let heading = c
                    .owners
                    .first()
                    .map(|o| o.heading_path.clone())
                    .unwrap_or_default();
                items.push(IndexItem {
                    chunk: c.id,
                    kb: c.kb,
                    text: index_text(&heading, &c.text),
                    vector,
                });
            }
            Ok(items)
        })?;
        self.index_changes(tenant, items, gone).await;
        // A crash before this commit re-runs the whole ingestion; the start-up reconciliation
        // drops index entries the re-run does not recreate.
        self.store
            .write(move |ctx| {
                let mut t = ctx.tenant(tenant);
                if let Some(mut d) = t.get(&DOCUMENTS, doc_id.as_bytes())? {
                    if d.generation == generation && !d.status.is_final() {
                        d.status = DocumentStatus::Ready;
                        d.failure = None;
                        d.updated_at_ms = crate::events::now_ms();
                        t.put(&DOCUMENTS, doc_id.as_bytes(), &d)?;
                    }
                }
                crate::events::ack(ctx, consumer, seq)
            })
            .await?;
        delivery.mark_acked();
        self.notify(tenant);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_ignore_whitespace_layout_only() {
        assert_eq!(chunk_hash("a  b\nc"), chunk_hash("a b c"));
        assert_ne!(chunk_hash("a b c"), chunk_hash("a b d"));
    }

    #[test]
    fn heading_is_prefixed_once() {
        let path = vec!["Menu".to_string(), "Drinks".to_string()];
        assert_eq!(index_text(&path, "Latte 35k"), "Menu > Drinks\nLatte 35k");
        assert_eq!(index_text(&path, "Drinks\nLatte"), "Drinks\nLatte");
        assert_eq!(index_text(&[], "x"), "x");
    }
}
