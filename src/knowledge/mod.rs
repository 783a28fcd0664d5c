//! Knowledge bases: documents in, passages out.
//!
//! A tenant owns knowledge bases, each tenant-wide or scoped to some of its outlets. A document
//! is stored (original bytes in `<data_dir>/documents/<tenant>/`, its row in redb), announced with
//! `knowledge.document.uploaded`, and ingested by this service's own event consumer: parse, chunk,
//! embed, commit the chunks with their vectors, then update the derived search indexes (tantivy for
//! BM25, one HNSW graph per tenant). redb is the truth; the indexes are rebuilt from it at will.
//!
//! Tenant isolation: every row is reached through a tenant-scoped handle, the BM25 query always
//! carries the tenant as a required term, each tenant has its own vector graph, and every hit is
//! re-read from the tenant's rows before it is returned, so a stale or foreign index entry can
//! never surface.

pub mod actions;
pub mod chunk;
pub mod embedder;
pub mod embeddings;
pub mod eval;
pub mod fetch;
pub mod index;
pub mod ingest;
pub mod model;
pub mod parse;
pub mod retrieve;
pub mod routes;
pub mod service;
pub mod store;

pub use model::*;
pub use service::KnowledgeService;

/// The knowledge service's error, with stable codes for the API and logs.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    Conflict(String),
    #[error("document is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("cannot fetch the page: {0}")]
    Fetch(String),
    #[error("URL refused: {0}")]
    UrlRefused(String),
    #[error("embedding failed: {0}")]
    Embedding(String),
    #[error("search index: {0}")]
    Index(String),
    #[error("file storage: {0}")]
    Io(String),
    #[error(transparent)]
    Store(#[from] crate::storage::StoreError),
}

impl KnowledgeError {
    pub fn code(&self) -> &'static str {
        match self {
            KnowledgeError::NotFound(_) => "not_found",
            KnowledgeError::Invalid { .. } => "invalid_input",
            KnowledgeError::Conflict(_) => "conflict",
            KnowledgeError::TooLarge { .. } => "too_large",
            KnowledgeError::Fetch(_) => "fetch_failed",
            KnowledgeError::UrlRefused(_) => "url_refused",
            KnowledgeError::Embedding(_) => "embedding_failed",
            KnowledgeError::Index(_) => "index_failed",
            KnowledgeError::Io(_) => "file_io",
            KnowledgeError::Store(e) => e.code(),
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        KnowledgeError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}
