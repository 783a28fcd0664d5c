//! The knowledge service: owns the indexes and the embedding provider, and is the one way in for
//! the API, the CLI, the assistant and the ingestion consumer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use super::embeddings::Embeddings;
use super::index::{IndexItem, SearchIndex, SyncReport, INDEX_DIR};
use super::model::*;
use super::store::{self, original_path, Added, NewDocument};
use super::KnowledgeError;
use crate::config::{Config, KnowledgeConfig};
use crate::ops::readiness::{Condition, Readiness};
use crate::storage::{DocumentId, KnowledgeBaseId, OutletId, Store, TenantId};

/// Names of this service's `/readyz` conditions.
const READY_INDEXES: &str = "search indexes";
const READY_MODEL: &str = "embedding model";

/// Documents parsed and embedded at once across all tenants: bounds memory on a small box (the
/// embedder itself runs one batch at a time anyway).
const INGEST_CONCURRENCY: usize = 2;
/// How often changed vector graphs are written to disk and worn ones compacted.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(30);

pub struct KnowledgeService {
    pub(crate) store: Store,
    pub(crate) config: KnowledgeConfig,
    pub(crate) data_dir: PathBuf,
    pub(crate) embeddings: Arc<Embeddings>,
    pub(crate) index: Arc<SearchIndex>,
    pub(crate) ingest_permits: Semaphore,
    pub(crate) allow_loopback_urls: bool,
    changes: watch::Sender<u64>,
    /// Embedding tokens of questions (assistant turns, search tester) not yet recorded per tenant:
    /// written every maintenance tick rather than in a commit per question.
    query_tokens: std::sync::Mutex<std::collections::HashMap<TenantId, u64>>,
}

impl KnowledgeService {
    /// Opens the indexes in the data directory. The embedding model is loaded on first use.
    pub fn open(config: &Config, store: Store) -> Result<Arc<Self>, KnowledgeError> {
        let embeddings = Embeddings::from_config(&config.embeddings, &config.models_dir)
            .map_err(KnowledgeError::Embedding)?;
        Self::with_embeddings(config, store, Arc::new(embeddings))
    }

    pub fn with_embeddings(
        config: &Config,
        store: Store,
        embeddings: Arc<Embeddings>,
    ) -> Result<Arc<Self>, KnowledgeError> {
        let index =
            SearchIndex::open(&config.data_dir.join(INDEX_DIR)).map_err(KnowledgeError::Index)?;
        let (changes, _) = watch::channel(0);
        Ok(Arc::new(Self {
            store,
            config: config.knowledge.clone(),
            data_dir: config.data_dir.clone(),
            embeddings,
            index: Arc::new(index),
            ingest_permits: Semaphore::new(INGEST_CONCURRENCY),
            allow_loopback_urls: config.knowledge.allow_loopback_urls,
            changes,
            query_tokens: Default::default(),
        }))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn embeddings(&self) -> &Arc<Embeddings> {
        &self.embeddings
    }

    pub fn index(&self) -> &Arc<SearchIndex> {
        &self.index
    }

    pub fn config(&self) -> &KnowledgeConfig {
        &self.config
    }

    /// Ticks whenever a document changes status or progress (CLI progress bars, tests).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn notify(&self, _tenant: TenantId) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Start-up work and periodic maintenance, until `stop` turns true: reconcile the indexes with
    /// redb, re-queue documents embedded with another model, then save changed graphs and compact
    /// worn ones every 30 s (and once more when stopping). `/readyz` waits for the indexes (and
    /// for the embedding model, when some tenant has a knowledge base).
    pub fn start(
        self: &Arc<Self>,
        readiness: Readiness,
        mut stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let this = self.clone();
        readiness.register(
            READY_INDEXES,
            "reconciling the search indexes with the database",
        );
        tokio::spawn(async move {
            if let Err(e) = this.requeue_for_model_change().await {
                tracing::warn!(error = %e, "cannot check knowledge bases for a model change");
            }
            match this.reconcile_all(false).await {
                Ok(r) if r.text_added + r.text_removed + r.vectors_added > 0 => {
                    tracing::info!(
                        chunks = r.chunks,
                        text_added = r.text_added,
                        text_removed = r.text_removed,
                        vectors_added = r.vectors_added,
                        "search indexes repaired from the database"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "index reconciliation failed"),
            }
            // Searches work from here on (a failed reconciliation left the indexes as they were).
            readiness.set_ready(READY_INDEXES);
            if this.has_any_base() {
                readiness.register(READY_MODEL, "loading the embedding model");
                match this.embeddings.warm_up().await {
                    Ok(()) => readiness.set_ready(READY_MODEL),
                    Err(e) => {
                        tracing::warn!(code = e.code, error = %e, "embedding model not loaded; documents will fail until it is installed");
                        readiness.set(
                            READY_MODEL,
                            Condition::Waiting(format!("not loaded: {e} (run `wacrm doctor`)")),
                        );
                    }
                }
            }
            loop {
                tokio::select! {
                    _ = stop.changed() => {
                        if *stop.borrow() { break; }
                    }
                    _ = tokio::time::sleep(MAINTENANCE_EVERY) => {
                        this.maintain().await;
                    }
                }
            }
            this.flush_query_tokens().await;
            let index = this.index.clone();
            let _ = tokio::task::spawn_blocking(move || index.save_graphs()).await;
        })
    }

    fn has_any_base(&self) -> bool {
        crate::tenants::list_tenants(&self.store)
            .unwrap_or_default()
            .iter()
            .any(|t| {
                !store::list_kbs(&self.store, t.id)
                    .unwrap_or_default()
                    .is_empty()
            })
    }

    /// Counts a question's embedding tokens for its tenant (recorded at the next maintenance).
    pub(crate) fn count_query_tokens(&self, tenant: TenantId, question: &str) {
        let tokens = super::chunk::count_tokens(question) as u64;
        let mut pending = self
            .query_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *pending.entry(tenant).or_default() += tokens;
    }

    /// Records embedding tokens against the tenant's current period (cost visibility; plans do
    /// not cap them).
    pub(crate) async fn record_embedding_tokens(&self, tenant: TenantId, tokens: u64) {
        let usage = crate::billing::meter::TokenUsage {
            embedding_tokens: tokens,
            ..Default::default()
        };
        if let Err(e) = crate::billing::meter::record_tokens(&self.store, tenant, usage).await {
            tracing::warn!(%tenant, error = %e, "cannot record embedding tokens");
        }
    }

    async fn flush_query_tokens(&self) {
        let pending = std::mem::take(
            &mut *self
                .query_tokens
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (tenant, tokens) in pending {
            self.record_embedding_tokens(tenant, tokens).await;
        }
    }

    async fn maintain(self: &Arc<Self>) {
        self.flush_query_tokens().await;
        let index = self.index.clone();
        let store = self.store.clone();
        let model = self.embeddings.model_id().to_string();
        let _ = tokio::task::spawn_blocking(move || {
            for (tenant, graph) in index.vectors.tenants() {
                if graph.needs_compaction() {
                    match index.sync_tenant(&store, tenant, &model, true) {
                        Ok(r) => tracing::info!(%tenant, vectors = r.vectors_added, "vector graph compacted"),
                        Err(e) => tracing::warn!(%tenant, error = %e, "compaction failed"),
                    }
                    // Chunks indexed into the old graph while the new one was built.
                    if let Err(e) = index.sync_tenant(&store, tenant, &model, false) {
                        tracing::warn!(%tenant, error = %e, "post-compaction sync failed");
                    }
                }
            }
            index.save_graphs();
        })
        .await;
    }

    async fn requeue_for_model_change(&self) -> Result<(), KnowledgeError> {
        let model = self.embeddings.model_id().to_string();
        for tenant in crate::tenants::list_tenants(&self.store).unwrap_or_default() {
            let stale: Vec<KnowledgeBaseId> = store::list_kbs(&self.store, tenant.id)?
                .into_iter()
                .filter(|kb| kb.embedding.as_ref().is_some_and(|e| e.id != model))
                .map(|kb| kb.id)
                .collect();
            if stale.is_empty() {
                continue;
            }
            let tenant_id = tenant.id;
            let n = self
                .store
                .write(move |ctx| store::requeue_documents(ctx, tenant_id, &stale))
                .await?;
            tracing::info!(tenant = %tenant_id, documents = n, %model, "embedding model changed; re-indexing");
        }
        Ok(())
    }

    /// Reconciles every tenant's indexes with redb; `fresh` rebuilds them from scratch.
    pub async fn reconcile_all(&self, fresh: bool) -> Result<SyncReport, KnowledgeError> {
        let tenants: Vec<TenantId> = crate::tenants::list_tenants(&self.store)
            .map_err(|e| KnowledgeError::Index(e.to_string()))?
            .into_iter()
            .map(|t| t.id)
            .collect();
        let index = self.index.clone();
        let store = self.store.clone();
        let model = self.embeddings.model_id().to_string();
        tokio::task::spawn_blocking(move || {
            if fresh {
                index.rebuild(&store, &tenants, &model)
            } else {
                let mut total = SyncReport::default();
                for t in &tenants {
                    total += index.sync_tenant(&store, *t, &model, false)?;
                }
                Ok(total)
            }
        })
        .await
        .map_err(|e| KnowledgeError::Index(e.to_string()))?
        .map_err(KnowledgeError::Index)
    }

    pub(crate) async fn index_changes(
        &self,
        tenant: TenantId,
        add: Vec<IndexItem>,
        gone: Vec<u64>,
    ) {
        let index = self.index.clone();
        let model = self.embeddings.model_id().to_string();
        let result = tokio::task::spawn_blocking(move || {
            if !gone.is_empty() {
                index.remove(tenant, &gone)?;
            }
            if !add.is_empty() {
                index.add(tenant, &model, &add)?;
            }
            Ok::<(), String>(())
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(%tenant, error = %e, "index update failed; the next start repairs it")
            }
            Err(e) => tracing::warn!(%tenant, error = %e, "index update crashed"),
        }
    }

    // ---------------------------------------------------------------- bases

    pub async fn create_kb(
        &self,
        tenant: TenantId,
        name: &str,
        outlets: Vec<OutletId>,
    ) -> Result<KnowledgeBase, KnowledgeError> {
        store::create_kb(&self.store, tenant, name, outlets).await
    }

    pub fn list_kbs(&self, tenant: TenantId) -> Result<Vec<KnowledgeBase>, KnowledgeError> {
        Ok(store::list_kbs(&self.store, tenant)?)
    }

    pub fn get_kb(
        &self,
        tenant: TenantId,
        kb: KnowledgeBaseId,
    ) -> Result<KnowledgeBase, KnowledgeError> {
        store::get_kb(&self.store, tenant, kb)
    }

    pub async fn delete_kb(
        &self,
        tenant: TenantId,
        kb: KnowledgeBaseId,
    ) -> Result<(), KnowledgeError> {
        let removed = store::delete_kb(&self.store, tenant, kb).await?;
        self.index_changes(tenant, Vec::new(), removed.chunks).await;
        for d in removed.value {
            self.remove_original(tenant, d.id, d.generation);
        }
        self.notify(tenant);
        Ok(())
    }

    // ---------------------------------------------------------------- documents

    pub fn list_documents(
        &self,
        tenant: TenantId,
        kb: Option<KnowledgeBaseId>,
    ) -> Result<Vec<Document>, KnowledgeError> {
        Ok(store::list_documents(&self.store, tenant, kb)?)
    }

    pub fn get_document(
        &self,
        tenant: TenantId,
        doc: DocumentId,
    ) -> Result<Document, KnowledgeError> {
        store::get_document(&self.store, tenant, doc)
    }

    fn check_size(&self, len: usize) -> Result<(), KnowledgeError> {
        if len > self.config.max_document_bytes {
            return Err(KnowledgeError::TooLarge {
                limit: self.config.max_document_bytes,
            });
        }
        if len == 0 {
            return Err(KnowledgeError::invalid("file", "is empty"));
        }
        Ok(())
    }

    fn write_original(
        &self,
        tenant: TenantId,
        doc: DocumentId,
        generation: u32,
        bytes: &[u8],
    ) -> Result<PathBuf, KnowledgeError> {
        let path = original_path(&self.data_dir, tenant, doc, generation);
        let io = |e: std::io::Error| KnowledgeError::Io(format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // Durable before the row that points at it commits.
        let mut file = std::fs::File::create(&path).map_err(io)?;
        std::io::Write::write_all(&mut file, bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(path)
    }

    fn remove_original(&self, tenant: TenantId, doc: DocumentId, generation: u32) {
        let _ = std::fs::remove_file(original_path(&self.data_dir, tenant, doc, generation));
    }

    /// Stores a document's original and queues it for ingestion. The same bytes added to the
    /// same base again return the existing document (`created: false`).
    pub async fn add_document(
        &self,
        tenant: TenantId,
        kb: KnowledgeBaseId,
        name: &str,
        mime: Option<String>,
        bytes: &[u8],
        source: DocumentSource,
    ) -> Result<Added, KnowledgeError> {
        self.check_size(bytes.len())?;
        let name = match source {
            DocumentSource::Upload => clean_name(name)?,
            DocumentSource::Url { .. } => name.chars().take(2048).collect(),
        };
        let id = DocumentId::new();
        let path = self.write_original(tenant, id, 1, bytes)?;
        let new = NewDocument {
            kb,
            name,
            source,
            mime,
            size_bytes: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
        };
        match store::insert_document(&self.store, tenant, id, new).await {
            Ok(added) => {
                if !added.created {
                    let _ = std::fs::remove_file(&path);
                }
                self.notify(tenant);
                Ok(added)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Fetches a page (http/https only, never private or loopback addresses) and adds it.
    pub async fn add_url(
        &self,
        tenant: TenantId,
        kb: KnowledgeBaseId,
        url: &str,
    ) -> Result<Added, KnowledgeError> {
        store::get_kb(&self.store, tenant, kb)?;
        let page = super::fetch::fetch_page(
            url,
            self.config.max_document_bytes,
            Duration::from_millis(self.config.fetch_timeout_ms),
            self.allow_loopback_urls,
        )
        .await?;
        self.add_document(
            tenant,
            kb,
            &page.url,
            page.content_type,
            &page.body,
            DocumentSource::Url {
                url: page.url.clone(),
            },
        )
        .await
    }

    /// Replaces a document's content: its old chunks leave the answers at once.
    pub async fn replace_document(
        &self,
        tenant: TenantId,
        doc: DocumentId,
        name: Option<&str>,
        mime: Option<String>,
        bytes: &[u8],
    ) -> Result<Document, KnowledgeError> {
        self.check_size(bytes.len())?;
        let current = store::get_document(&self.store, tenant, doc)?;
        let generation = current.generation + 1;
        let path = self.write_original(tenant, doc, generation, bytes)?;
        let new = NewDocument {
            kb: current.kb,
            name: match name {
                Some(n) => clean_name(n)?,
                None => current.name.clone(),
            },
            source: current.source.clone(),
            mime,
            size_bytes: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
        };
        match store::replace_document(&self.store, tenant, doc, generation, new).await {
            Ok(removed) => {
                self.remove_original(tenant, doc, current.generation);
                self.index_changes(tenant, Vec::new(), removed.chunks).await;
                self.notify(tenant);
                Ok(removed.value)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Deletes a document: from the moment this returns it is in no answer.
    pub async fn delete_document(
        &self,
        tenant: TenantId,
        doc: DocumentId,
    ) -> Result<Document, KnowledgeError> {
        let removed = store::delete_document(&self.store, tenant, doc).await?;
        self.index_changes(tenant, Vec::new(), removed.chunks).await;
        self.remove_original(tenant, doc, removed.value.generation);
        self.notify(tenant);
        Ok(removed.value)
    }

    pub fn settings(&self, tenant: TenantId) -> Result<KnowledgeSettings, KnowledgeError> {
        Ok(store::get_settings(&self.store, tenant)?)
    }

    pub async fn put_settings(
        &self,
        tenant: TenantId,
        settings: KnowledgeSettings,
    ) -> Result<(), KnowledgeError> {
        Ok(store::put_settings(&self.store, tenant, settings).await?)
    }

    /// Waits until every listed document has reached `ready` or `failed` (tests, CLI, eval).
    pub async fn wait_settled(
        &self,
        tenant: TenantId,
        docs: &[DocumentId],
        timeout: Duration,
    ) -> Result<Vec<Document>, KnowledgeError> {
        let mut changes = self.changes();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut all = Vec::with_capacity(docs.len());
            let mut settled = true;
            for d in docs {
                let doc = store::get_document(&self.store, tenant, *d)?;
                settled &= doc.status.is_final();
                all.push(doc);
            }
            if settled {
                return Ok(all);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(KnowledgeError::Conflict(
                    "documents still ingesting after the timeout".into(),
                ));
            }
            let _ = tokio::time::timeout(
                (deadline - now).min(Duration::from_millis(500)),
                changes.changed(),
            )
            .await;
        }
    }
}

/// A file name as shown to people: the last path component, trimmed, bounded.
fn clean_name(name: &str) -> Result<String, KnowledgeError> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name).trim();
    let base: String = base.chars().filter(|c| !c.is_control()).take(255).collect();
    if base.is_empty() {
        return Err(KnowledgeError::invalid("filename", "must not be empty"));
    }
    Ok(base)
}

/// Deleting a tenant removes its originals and its index entries (the rows go with the tenant's
/// redb keys).
impl crate::tenants::lifecycle::TenantDataOwner for KnowledgeService {
    fn name(&self) -> &'static str {
        "knowledge"
    }

    fn purge_tenant(
        &self,
        tenant: &crate::tenants::Tenant,
    ) -> Result<crate::tenants::lifecycle::PurgeReport, String> {
        let mut report = crate::tenants::lifecycle::PurgeReport::default();
        let dir = self
            .data_dir
            .join(store::DOCUMENTS_DIR)
            .join(tenant.id.to_string());
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                report.files += 1;
                report.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
        let (entries, graph_files) = self.index.purge_tenant(tenant.id)?;
        report.files += graph_files;
        report.detail.insert("text index entries".into(), entries);
        Ok(report)
    }
}
