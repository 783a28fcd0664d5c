//! Knowledge rows in redb: bases, documents, chunks. Every function goes through a tenant-scoped
//! handle; a document's change and the event announcing it commit together.

use std::path::{Path, PathBuf};

use super::model::*;
use super::KnowledgeError;
use crate::billing::Resource;
use crate::events::{self, EventPayload};
use crate::storage::{
    DocumentId, KnowledgeBaseId, OutletId, Store, StoreError, TenantId, TenantWrite, WriteCtx,
};

pub const DOCUMENTS_DIR: &str = "documents";

/// Where a document's original bytes live: one file per generation, so a replacement never
/// overwrites the bytes an in-flight ingestion is reading.
pub fn original_path(
    data_dir: &Path,
    tenant: TenantId,
    doc: DocumentId,
    generation: u32,
) -> PathBuf {
    data_dir
        .join(DOCUMENTS_DIR)
        .join(tenant.to_string())
        .join(format!("{doc}.{generation}"))
}

fn reject(e: KnowledgeError) -> StoreError {
    StoreError::rejected(e.code(), e.to_string())
}

pub fn unreject(e: StoreError) -> KnowledgeError {
    match e {
        StoreError::Rejected { code, message } => match code {
            "not_found" => KnowledgeError::NotFound(message),
            "conflict" => KnowledgeError::Conflict(message),
            // Billing's refusals (quota_exceeded, ...) keep their code and status.
            crate::billing::QUOTA_EXCEEDED => {
                KnowledgeError::Store(StoreError::Rejected { code, message })
            }
            _ => KnowledgeError::Invalid {
                field: "request",
                reason: message,
            },
        },
        other => KnowledgeError::Store(other),
    }
}

pub fn validate_name(name: &str) -> Result<String, KnowledgeError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 120 {
        return Err(KnowledgeError::invalid("name", "must be 1-120 characters"));
    }
    Ok(name.to_string())
}

pub async fn create_kb(
    store: &Store,
    tenant: TenantId,
    name: &str,
    outlets: Vec<OutletId>,
) -> Result<KnowledgeBase, KnowledgeError> {
    let kb = KnowledgeBase {
        id: KnowledgeBaseId::new(),
        name: validate_name(name)?,
        outlets,
        embedding: None,
        created_at_ms: events::now_ms(),
    };
    let record = kb.clone();
    store
        .write(move |ctx| {
            // In the same write: a refused base leaves nothing behind, and two concurrent
            // creations cannot both take the plan's last slot.
            crate::billing::check_quota(ctx, tenant, Resource::KnowledgeBases)?;
            let mut t = ctx.tenant(tenant);
            for outlet in &record.outlets {
                if !t.contains(&crate::tenants::OUTLETS, outlet.as_bytes())? {
                    return Err(reject(KnowledgeError::NotFound(format!("outlet {outlet}"))));
                }
            }
            t.put(&KNOWLEDGE_BASES, record.id.as_bytes(), &record)
        })
        .await
        .map_err(unreject)?;
    Ok(kb)
}

pub fn list_kbs(store: &Store, tenant: TenantId) -> Result<Vec<KnowledgeBase>, StoreError> {
    Ok(store
        .read(|r| {
            r.tenant(tenant)
                .scan(&KNOWLEDGE_BASES, &[], false, usize::MAX)
        })?
        .into_iter()
        .map(|(_, kb)| kb)
        .collect())
}

pub fn get_kb(
    store: &Store,
    tenant: TenantId,
    kb: KnowledgeBaseId,
) -> Result<KnowledgeBase, KnowledgeError> {
    store
        .read(|r| r.tenant(tenant).get(&KNOWLEDGE_BASES, kb.as_bytes()))?
        .ok_or_else(|| KnowledgeError::NotFound(format!("knowledge base {kb}")))
}

pub fn list_documents(
    store: &Store,
    tenant: TenantId,
    kb: Option<KnowledgeBaseId>,
) -> Result<Vec<Document>, StoreError> {
    Ok(store
        .read(|r| r.tenant(tenant).scan(&DOCUMENTS, &[], false, usize::MAX))?
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| kb.is_none_or(|k| d.kb == k))
        .collect())
}

pub fn get_document(
    store: &Store,
    tenant: TenantId,
    doc: DocumentId,
) -> Result<Document, KnowledgeError> {
    store
        .read(|r| r.tenant(tenant).get(&DOCUMENTS, doc.as_bytes()))?
        .ok_or_else(|| KnowledgeError::NotFound(format!("document {doc}")))
}

pub fn get_settings(store: &Store, tenant: TenantId) -> Result<KnowledgeSettings, StoreError> {
    Ok(store
        .read(|r| r.tenant(tenant).get(&KNOWLEDGE_SETTINGS, SETTINGS_KEY))?
        .unwrap_or_default())
}

pub async fn put_settings(
    store: &Store,
    tenant: TenantId,
    settings: KnowledgeSettings,
) -> Result<(), StoreError> {
    store
        .write(move |ctx| {
            ctx.tenant(tenant)
                .put(&KNOWLEDGE_SETTINGS, SETTINGS_KEY, &settings)
        })
        .await
}

/// A new document's metadata, before it has an id.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub kb: KnowledgeBaseId,
    pub name: String,
    pub source: DocumentSource,
    pub mime: Option<String>,
    pub size_bytes: u64,
    pub sha256: String,
}

/// Result of adding: the document, and whether it is new (false: the same bytes were already in
/// that knowledge base, and nothing changed).
pub struct Added {
    pub document: Document,
    pub created: bool,
}

/// Records a document whose original is already at `original_path(.., id, 1)`, and announces it.
pub async fn insert_document(
    store: &Store,
    tenant: TenantId,
    id: DocumentId,
    new: NewDocument,
) -> Result<Added, KnowledgeError> {
    store
        .write(move |ctx| {
            let now = events::now_ms();
            let t = ctx.tenant(tenant);
            if !t.contains(&KNOWLEDGE_BASES, new.kb.as_bytes())? {
                return Err(reject(KnowledgeError::NotFound(format!(
                    "knowledge base {}",
                    new.kb
                ))));
            }
            let by_hash = hash_key(new.kb, &new.sha256);
            if let Some(existing) = t.get(&DOCUMENT_BY_HASH, &by_hash)? {
                if let Some(document) = t.get(&DOCUMENTS, existing.document.as_bytes())? {
                    return Ok(Added {
                        document,
                        created: false,
                    });
                }
            }
            // The original's bytes count against the plan's storage from this commit on.
            crate::billing::check_quota(ctx, tenant, Resource::StorageBytes(new.size_bytes))?;
            let mut t = ctx.tenant(tenant);
            let document = Document {
                id,
                kb: new.kb,
                name: new.name.clone(),
                title: None,
                source: new.source.clone(),
                mime: new.mime.clone(),
                size_bytes: new.size_bytes,
                sha256: new.sha256.clone(),
                status: DocumentStatus::Queued,
                progress: 0,
                failure: None,
                chunk_count: 0,
                generation: 1,
                created_at_ms: now,
                updated_at_ms: now,
            };
            t.put(&DOCUMENTS, id.as_bytes(), &document)?;
            t.put(&DOCUMENT_BY_HASH, &by_hash, &DocumentRef { document: id })?;
            events::publish(
                ctx,
                tenant,
                EventPayload::DocumentUploaded {
                    document: id.to_string(),
                },
            )?;
            Ok(Added {
                document,
                created: true,
            })
        })
        .await
        .map_err(unreject)
}

/// The outcome of a change that removed chunks: which chunk numbers left the indexes.
pub struct Removed<T> {
    pub value: T,
    pub chunks: Vec<u64>,
}

/// Replaces a document's content (the new original already at `generation`), removing its chunks
/// in the same commit and queueing the new content.
pub async fn replace_document(
    store: &Store,
    tenant: TenantId,
    doc: DocumentId,
    generation: u32,
    new: NewDocument,
) -> Result<Removed<Document>, KnowledgeError> {
    store
        .write(move |ctx| {
            let t = ctx.tenant(tenant);
            let Some(mut document) = t.get(&DOCUMENTS, doc.as_bytes())? else {
                return Err(reject(KnowledgeError::NotFound(format!("document {doc}"))));
            };
            if document.generation + 1 != generation {
                return Err(reject(KnowledgeError::Conflict(
                    "the document was replaced meanwhile; try again".into(),
                )));
            }
            // The old original is removed once this commits; the new one takes its place.
            crate::billing::release_quota(
                ctx,
                tenant,
                Resource::StorageBytes(document.size_bytes),
            )?;
            crate::billing::check_quota(ctx, tenant, Resource::StorageBytes(new.size_bytes))?;
            let mut t = ctx.tenant(tenant);
            let chunks = detach_document_chunks(&mut t, doc)?;
            t.delete(&DOCUMENT_BY_HASH, &hash_key(document.kb, &document.sha256))?;
            let by_hash = hash_key(document.kb, &new.sha256);
            if let Some(other) = t.get(&DOCUMENT_BY_HASH, &by_hash)? {
                if other.document != doc {
                    return Err(reject(KnowledgeError::Conflict(format!(
                        "the same content is already document {}",
                        other.document
                    ))));
                }
            }
            t.put(&DOCUMENT_BY_HASH, &by_hash, &DocumentRef { document: doc })?;
            document.name = new.name.clone();
            document.source = new.source.clone();
            document.mime = new.mime.clone();
            document.size_bytes = new.size_bytes;
            document.sha256 = new.sha256.clone();
            document.title = None;
            document.status = DocumentStatus::Queued;
            document.progress = 0;
            document.failure = None;
            document.chunk_count = 0;
            document.generation = generation;
            document.updated_at_ms = events::now_ms();
            t.put(&DOCUMENTS, doc.as_bytes(), &document)?;
            events::publish(
                ctx,
                tenant,
                EventPayload::DocumentUploaded {
                    document: doc.to_string(),
                },
            )?;
            Ok(Removed {
                value: document,
                chunks,
            })
        })
        .await
        .map_err(unreject)
}

/// Deletes a document and its chunks in one commit.
pub async fn delete_document(
    store: &Store,
    tenant: TenantId,
    doc: DocumentId,
) -> Result<Removed<Document>, KnowledgeError> {
    store
        .write(move |ctx| {
            let mut t = ctx.tenant(tenant);
            let Some(document) = t.get(&DOCUMENTS, doc.as_bytes())? else {
                return Err(reject(KnowledgeError::NotFound(format!("document {doc}"))));
            };
            let chunks = remove_document_rows(&mut t, &document)?;
            crate::billing::release_quota(
                ctx,
                tenant,
                Resource::StorageBytes(document.size_bytes),
            )?;
            Ok(Removed {
                value: document,
                chunks,
            })
        })
        .await
        .map_err(unreject)
}

/// Deletes a knowledge base with all its documents and chunks in one commit.
pub async fn delete_kb(
    store: &Store,
    tenant: TenantId,
    kb: KnowledgeBaseId,
) -> Result<Removed<Vec<Document>>, KnowledgeError> {
    store
        .write(move |ctx| {
            let mut t = ctx.tenant(tenant);
            if !t.contains(&KNOWLEDGE_BASES, kb.as_bytes())? {
                return Err(reject(KnowledgeError::NotFound(format!(
                    "knowledge base {kb}"
                ))));
            }
            let documents: Vec<Document> = t
                .scan(&DOCUMENTS, &[], false, usize::MAX)?
                .into_iter()
                .map(|(_, d)| d)
                .filter(|d| d.kb == kb)
                .collect();
            let mut chunks = Vec::new();
            for d in &documents {
                chunks.extend(remove_document_rows(&mut t, d)?);
            }
            t.delete(&KNOWLEDGE_BASES, kb.as_bytes())?;
            for d in &documents {
                crate::billing::release_quota(ctx, tenant, Resource::StorageBytes(d.size_bytes))?;
            }
            crate::billing::release_quota(ctx, tenant, Resource::KnowledgeBases)?;
            Ok(Removed {
                value: documents.clone(),
                chunks,
            })
        })
        .await
        .map_err(unreject)
}

fn remove_document_rows(
    t: &mut TenantWrite<'_, '_>,
    document: &Document,
) -> Result<Vec<u64>, StoreError> {
    let chunks = detach_document_chunks(t, document.id)?;
    let by_hash = hash_key(document.kb, &document.sha256);
    if t.get(&DOCUMENT_BY_HASH, &by_hash)?
        .is_some_and(|r| r.document == document.id)
    {
        t.delete(&DOCUMENT_BY_HASH, &by_hash)?;
    }
    t.delete(&DOCUMENTS, document.id.as_bytes())?;
    Ok(chunks)
}

/// Removes a document from every chunk it uses; chunks no other document uses are deleted.
/// Returns the deleted chunk numbers.
pub fn detach_document_chunks(
    t: &mut TenantWrite<'_, '_>,
    doc: DocumentId,
) -> Result<Vec<u64>, StoreError> {
    let refs = t.scan(&DOCUMENT_CHUNKS, doc.as_bytes(), false, usize::MAX)?;
    let mut deleted = Vec::new();
    for (suffix, r) in refs {
        t.delete(&DOCUMENT_CHUNKS, &suffix)?;
        let key = chunk_key(r.chunk);
        let Some(mut chunk) = t.get(&CHUNKS, &key)? else {
            continue;
        };
        chunk.owners.retain(|o| o.document != doc);
        if chunk.owners.is_empty() {
            t.delete(&CHUNKS, &key)?;
            t.delete(&CHUNK_VECTORS, &key)?;
            t.delete(&CHUNK_BY_HASH, &hash_key(chunk.kb, &chunk.hash))?;
            deleted.push(chunk.id);
        } else {
            t.put(&CHUNKS, &key, &chunk)?;
        }
    }
    Ok(deleted)
}

/// Reserves `n` consecutive chunk numbers of a tenant.
pub fn allocate_chunk_ids(t: &mut TenantWrite<'_, '_>, n: u64) -> Result<u64, StoreError> {
    let mut counter = t
        .get(&KNOWLEDGE_COUNTERS, CHUNK_COUNTER_KEY)?
        .unwrap_or(Counter { next: 1 });
    let first = counter.next.max(1);
    counter.next = first + n;
    t.put(&KNOWLEDGE_COUNTERS, CHUNK_COUNTER_KEY, &counter)?;
    Ok(first)
}

/// Updates a document's status and progress if it is still at `generation` (a replaced or
/// deleted document is left alone). Returns whether it did.
pub async fn set_status(
    store: &Store,
    tenant: TenantId,
    doc: DocumentId,
    generation: u32,
    status: DocumentStatus,
    progress: u8,
) -> Result<bool, StoreError> {
    store
        .write(move |ctx| {
            let mut t = ctx.tenant(tenant);
            match t.get(&DOCUMENTS, doc.as_bytes())? {
                Some(mut d) if d.generation == generation && !d.status.is_final() => {
                    d.status = status;
                    d.progress = progress.min(100);
                    d.updated_at_ms = events::now_ms();
                    t.put(&DOCUMENTS, doc.as_bytes(), &d)?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
        .await
}

/// Marks every document of the given bases for re-ingestion (a model change) and queues them.
pub fn requeue_documents(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    kbs: &[KnowledgeBaseId],
) -> Result<usize, StoreError> {
    let docs: Vec<Document> = ctx
        .tenant(tenant)
        .scan(&DOCUMENTS, &[], false, usize::MAX)?
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| kbs.contains(&d.kb) && d.status == DocumentStatus::Ready)
        .collect();
    for mut d in docs.clone() {
        d.status = DocumentStatus::Queued;
        d.progress = 0;
        d.updated_at_ms = events::now_ms();
        ctx.tenant(tenant).put(&DOCUMENTS, d.id.as_bytes(), &d)?;
        events::publish(
            ctx,
            tenant,
            EventPayload::DocumentUploaded {
                document: d.id.to_string(),
            },
        )?;
    }
    Ok(docs.len())
}
