//! Stored shapes of the knowledge service (all tenant-owned rows).

use serde::{Deserialize, Serialize};

use crate::storage::collections as tags;
use crate::storage::{Collection, DocumentId, KnowledgeBaseId, OutletId, Record};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KnowledgeBase {
    pub id: KnowledgeBaseId,
    pub name: String,
    /// Empty: every conversation of the tenant searches it. Otherwise only these outlets' do.
    pub outlets: Vec<OutletId>,
    /// The embedding model its vectors were made with; a different configured model re-embeds.
    pub embedding: Option<EmbeddingModel>,
    pub created_at_ms: i64,
}

impl KnowledgeBase {
    pub fn serves(&self, outlet: Option<OutletId>) -> bool {
        self.outlets.is_empty() || outlet.is_some_and(|o| self.outlets.contains(&o))
    }
}

impl Record for KnowledgeBase {
    const VERSION: u16 = 1;
    const NAME: &'static str = "knowledge base";
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EmbeddingModel {
    pub id: String,
    pub dimension: usize,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DocumentStatus {
    Queued,
    Parsing,
    Embedding,
    Ready,
    Failed,
}

impl DocumentStatus {
    pub fn is_final(self) -> bool {
        matches!(self, DocumentStatus::Ready | DocumentStatus::Failed)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DocumentSource {
    Upload,
    Url { url: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DocumentFailure {
    pub code: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Document {
    pub id: DocumentId,
    pub kb: KnowledgeBaseId,
    /// File name, or the page URL.
    pub name: String,
    pub title: Option<String>,
    pub source: DocumentSource,
    pub mime: Option<String>,
    pub size_bytes: u64,
    /// SHA-256 of the original bytes: the same file added twice to a knowledge base is one document.
    pub sha256: String,
    pub status: DocumentStatus,
    /// 0-100 within the current status.
    pub progress: u8,
    pub failure: Option<DocumentFailure>,
    pub chunk_count: u32,
    /// Bumped by every replacement; an ingestion of an older generation is discarded.
    pub generation: u32,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Record for Document {
    const VERSION: u16 = 1;
    const NAME: &'static str = "document";
}

/// Where one document uses a chunk (a chunk's text may occur in several documents of a base).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChunkOwner {
    pub document: DocumentId,
    pub ordinal: u32,
    pub heading_path: Vec<String>,
    pub page: Option<u32>,
}

/// One indexed passage. Keyed by a per-tenant number that is also its id in both search indexes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredChunk {
    pub id: u64,
    pub kb: KnowledgeBaseId,
    pub text: String,
    pub token_count: u32,
    /// Hex SHA-256 of the normalised text (per-base deduplication).
    pub hash: String,
    pub owners: Vec<ChunkOwner>,
}

impl Record for StoredChunk {
    const VERSION: u16 = 1;
    const NAME: &'static str = "chunk";
}

/// A chunk's vector: little-endian f32s, base64 (a JSON array would be three times larger).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredVector {
    pub model: String,
    pub data: String,
}

impl StoredVector {
    pub fn new(model: &str, vector: &[f32]) -> Self {
        use base64::Engine;
        let mut bytes = Vec::with_capacity(vector.len() * 4);
        for v in vector {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        Self {
            model: model.to_string(),
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    pub fn vector(&self) -> Option<Vec<f32>> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.data)
            .ok()?;
        if bytes.len() % 4 != 0 {
            return None;
        }
        Some(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }
}

impl Record for StoredVector {
    const VERSION: u16 = 1;
    const NAME: &'static str = "chunk vector";
}

/// A reference to a chunk by its number.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkRef {
    pub chunk: u64,
}

impl Record for ChunkRef {
    const VERSION: u16 = 1;
    const NAME: &'static str = "chunk reference";
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct DocumentRef {
    pub document: DocumentId,
}

impl Record for DocumentRef {
    const VERSION: u16 = 1;
    const NAME: &'static str = "document reference";
}

/// What the assistant does when the knowledge base has nothing relevant.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum NoAnswerPolicy {
    /// Say it does not know and offer a person; the conversation stays with the bot.
    #[default]
    OfferHuman,
    /// Hand the conversation to a person at once.
    HandOff,
}

/// Per-tenant knowledge settings.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct KnowledgeSettings {
    #[serde(default)]
    pub no_answer: NoAnswerPolicy,
}

impl Record for KnowledgeSettings {
    const VERSION: u16 = 1;
    const NAME: &'static str = "knowledge settings";
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Counter {
    pub next: u64,
}

impl Record for Counter {
    const VERSION: u16 = 1;
    const NAME: &'static str = "counter";
}

pub const KNOWLEDGE_BASES: Collection<KnowledgeBase> = Collection::new(tags::KNOWLEDGE_BASES);
pub const DOCUMENTS: Collection<Document> = Collection::new(tags::DOCUMENTS);
/// Key: chunk number (u64 BE).
pub const CHUNKS: Collection<StoredChunk> = Collection::new(tags::CHUNKS);
/// Key: chunk number (u64 BE).
pub const CHUNK_VECTORS: Collection<StoredVector> = Collection::new(tags::CHUNK_VECTORS);
/// Key: knowledge base id | SHA-256 of the chunk text.
pub const CHUNK_BY_HASH: Collection<ChunkRef> = Collection::new(tags::CHUNK_BY_HASH);
/// Key: document id | ordinal (u32 BE).
pub const DOCUMENT_CHUNKS: Collection<ChunkRef> = Collection::new(tags::DOCUMENT_CHUNKS);
/// Key: knowledge base id | SHA-256 of the original bytes.
pub const DOCUMENT_BY_HASH: Collection<DocumentRef> = Collection::new(tags::DOCUMENT_BY_HASH);
/// Key: b"settings".
pub const KNOWLEDGE_SETTINGS: Collection<KnowledgeSettings> =
    Collection::new(tags::KNOWLEDGE_SETTINGS);
/// Key: b"chunk".
pub const KNOWLEDGE_COUNTERS: Collection<Counter> = Collection::new(tags::KNOWLEDGE_COUNTERS);

pub(crate) const SETTINGS_KEY: &[u8] = b"settings";
pub(crate) const CHUNK_COUNTER_KEY: &[u8] = b"chunk";

pub fn chunk_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

pub fn chunk_id_of_key(key: &[u8]) -> Option<u64> {
    key.try_into().ok().map(u64::from_be_bytes)
}

pub fn hash_key(kb: KnowledgeBaseId, hash_hex: &str) -> Vec<u8> {
    let mut key = kb.as_bytes().to_vec();
    key.extend_from_slice(hash_hex.as_bytes());
    key
}

pub fn document_chunk_key(document: DocumentId, ordinal: u32) -> Vec<u8> {
    let mut key = document.as_bytes().to_vec();
    key.extend_from_slice(&ordinal.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_their_stored_form() {
        let v = vec![0.25f32, -1.5, 3.0e-7, 0.0];
        assert_eq!(StoredVector::new("m", &v).vector().unwrap(), v);
    }

    #[test]
    fn outlet_scoping() {
        let outlet = OutletId::new();
        let mut kb = KnowledgeBase {
            id: KnowledgeBaseId::new(),
            name: "x".into(),
            outlets: vec![],
            embedding: None,
            created_at_ms: 0,
        };
        assert!(kb.serves(None) && kb.serves(Some(outlet)));
        kb.outlets = vec![outlet];
        assert!(!kb.serves(None));
        assert!(kb.serves(Some(outlet)));
        assert!(!kb.serves(Some(OutletId::new())));
    }
}
