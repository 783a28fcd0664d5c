//! The derived search indexes (BM25 and dense), kept in `<data_dir>/index/` and reconciled with
//! redb: anything missing is added, anything no longer in redb is removed. A lost or damaged index
//! is rebuilt, never a loss of data.

pub mod text;
pub mod vector;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::storage::{KnowledgeBaseId, Store, StoreError, TenantId};

use super::model::{chunk_id_of_key, CHUNKS, CHUNK_COUNTER_KEY, CHUNK_VECTORS, KNOWLEDGE_COUNTERS};
use text::{TextEntry, TextIndex};
use vector::{TenantGraph, VectorIndex};

pub const INDEX_DIR: &str = "index";

/// One chunk on its way into the indexes.
#[derive(Debug, Clone)]
pub struct IndexItem {
    pub chunk: u64,
    pub kb: KnowledgeBaseId,
    pub text: String,
    /// Present when the chunk has a vector of the current model.
    pub vector: Option<Vec<f32>>,
}

/// What a reconciliation changed, for logs and `wacrm reindex`.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct SyncReport {
    pub chunks: usize,
    pub text_added: usize,
    pub text_removed: usize,
    pub vectors_added: usize,
}

impl std::ops::AddAssign for SyncReport {
    fn add_assign(&mut self, o: Self) {
        self.chunks += o.chunks;
        self.text_added += o.text_added;
        self.text_removed += o.text_removed;
        self.vectors_added += o.vectors_added;
    }
}

pub struct SearchIndex {
    pub text: TextIndex,
    pub vectors: VectorIndex,
    dir: PathBuf,
}

impl SearchIndex {
    /// Opens the indexes under `dir`. A text index that cannot be opened is moved aside and
    /// started afresh (reconciliation then refills it from redb).
    pub fn open(dir: &Path) -> Result<Self, String> {
        let text_dir = dir.join("text");
        let text = match TextIndex::open(&text_dir) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "text index unreadable; rebuilding it from the database");
                let _ = std::fs::remove_dir_all(&text_dir);
                TextIndex::open(&text_dir)?
            }
        };
        std::fs::create_dir_all(dir.join("vectors")).map_err(|e| e.to_string())?;
        Ok(Self {
            text,
            vectors: VectorIndex::default(),
            dir: dir.to_path_buf(),
        })
    }

    fn graph_dir(&self, tenant: TenantId) -> PathBuf {
        self.dir.join("vectors").join(tenant.to_string())
    }

    /// Indexes committed chunks. Vectors of another dimension than the tenant's graph replace it
    /// (a model change).
    pub fn add(&self, tenant: TenantId, model: &str, items: &[IndexItem]) -> Result<(), String> {
        let entries: Vec<TextEntry<'_>> = items
            .iter()
            .map(|i| TextEntry {
                tenant,
                kb: i.kb,
                chunk: i.chunk,
                text: &i.text,
            })
            .collect();
        self.text.apply(&entries, &[])?;
        let vectors: Vec<(u64, KnowledgeBaseId, Vec<f32>)> = items
            .iter()
            .filter_map(|i| i.vector.clone().map(|v| (i.chunk, i.kb, v)))
            .collect();
        if let Some((_, _, first)) = vectors.first() {
            self.vectors
                .ensure(tenant, model, first.len())
                .insert(&vectors);
        }
        Ok(())
    }

    pub fn remove(&self, tenant: TenantId, chunks: &[u64]) -> Result<(), String> {
        if let Some(graph) = self.vectors.get(tenant) {
            graph.remove(chunks);
        }
        let pairs: Vec<(TenantId, u64)> = chunks.iter().map(|c| (tenant, *c)).collect();
        self.text.apply(&[], &pairs)
    }

    /// Removes a tenant from both indexes, on disk too. Returns (text entries, graph files).
    pub fn purge_tenant(&self, tenant: TenantId) -> Result<(u64, u64), String> {
        let text = self.text.purge_tenant(tenant)?;
        self.vectors.drop_tenant(tenant);
        let dir = self.graph_dir(tenant);
        let mut files = 0;
        for d in [dir.clone(), dir.with_extension("tmp")] {
            files += std::fs::read_dir(&d).map(|e| e.count() as u64).unwrap_or(0);
            match std::fs::remove_dir_all(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", d.display())),
            }
        }
        Ok((text, files))
    }

    /// Writes every changed graph to disk.
    pub fn save_graphs(&self) {
        for (tenant, graph) in self.vectors.tenants() {
            if let Err(e) = graph.save(&self.graph_dir(tenant)) {
                tracing::warn!(%tenant, error = %e, "cannot save the vector graph; it will be rebuilt at the next start");
            }
        }
    }

    /// Brings one tenant's indexes in line with redb (blocking; run on a blocking thread).
    /// `fresh` drops the tenant's graph first and rebuilds it from the stored vectors.
    pub fn sync_tenant(
        &self,
        store: &Store,
        tenant: TenantId,
        model: &str,
        fresh: bool,
    ) -> Result<SyncReport, String> {
        let (live, next_id) = load_tenant(store, tenant, model).map_err(|e| e.to_string())?;
        let mut report = SyncReport {
            chunks: live.len(),
            ..SyncReport::default()
        };
        let live_ids: HashSet<u64> = live.iter().map(|i| i.chunk).collect();
        let indexed = self.text.tenant_chunks(tenant)?;
        let missing: Vec<TextEntry<'_>> = live
            .iter()
            .filter(|i| !indexed.contains(&i.chunk))
            .map(|i| TextEntry {
                tenant,
                kb: i.kb,
                chunk: i.chunk,
                text: &i.text,
            })
            .collect();
        // Chunks numbered from `next_id` on were committed after the snapshot (an ingestion
        // running meanwhile): they are not extra, just newer.
        let extra: Vec<(TenantId, u64)> = indexed
            .iter()
            .filter(|c| !live_ids.contains(c) && **c < next_id)
            .map(|c| (tenant, *c))
            .collect();
        report.text_added = missing.len();
        report.text_removed = extra.len();
        self.text.apply(&missing, &extra)?;

        let kb_of: HashMap<u64, KnowledgeBaseId> = live
            .iter()
            .filter(|i| i.vector.is_some())
            .map(|i| (i.chunk, i.kb))
            .collect();
        let dimension = live.iter().find_map(|i| i.vector.as_ref().map(Vec::len));
        let Some(dimension) = dimension else {
            self.vectors.drop_tenant(tenant);
            let _ = std::fs::remove_dir_all(self.graph_dir(tenant));
            return Ok(report);
        };
        let graph = match (fresh, self.vectors.get(tenant)) {
            (false, Some(g)) if g.model == model && g.dimension == dimension => g,
            _ => {
                let loaded = if fresh {
                    None
                } else {
                    match TenantGraph::load(&self.graph_dir(tenant), &kb_of) {
                        Ok(g) if g.model == model && g.dimension == dimension => Some(g),
                        Ok(_) => None,
                        Err(e) => {
                            if self.graph_dir(tenant).exists() {
                                tracing::warn!(%tenant, error = %e, "vector graph unreadable; rebuilding it");
                            }
                            None
                        }
                    }
                };
                let graph = Arc::new(
                    loaded.unwrap_or_else(|| TenantGraph::new(model, dimension, kb_of.len())),
                );
                self.vectors.put(tenant, graph.clone());
                graph
            }
        };
        graph.retain(&kb_of, next_id);
        let present: HashSet<u64> = graph.live_ids().into_iter().collect();
        let to_insert: Vec<(u64, KnowledgeBaseId, Vec<f32>)> = live
            .into_iter()
            .filter(|i| !present.contains(&i.chunk))
            .filter_map(|i| i.vector.map(|v| (i.chunk, i.kb, v)))
            .collect();
        report.vectors_added = to_insert.len();
        graph.insert(&to_insert);
        if report.vectors_added > 0 || fresh {
            if let Err(e) = graph.save(&self.graph_dir(tenant)) {
                tracing::warn!(%tenant, error = %e, "cannot save the vector graph");
            }
        }
        Ok(report)
    }

    /// Forgets everything and rebuilds from redb (`wacrm reindex`).
    pub fn rebuild(
        &self,
        store: &Store,
        tenants: &[TenantId],
        model: &str,
    ) -> Result<SyncReport, String> {
        self.text.clear()?;
        for (tenant, _) in self.vectors.tenants() {
            self.vectors.drop_tenant(tenant);
        }
        let _ = std::fs::remove_dir_all(self.dir.join("vectors"));
        std::fs::create_dir_all(self.dir.join("vectors")).map_err(|e| e.to_string())?;
        let mut total = SyncReport::default();
        for tenant in tenants {
            total += self.sync_tenant(store, *tenant, model, true)?;
        }
        Ok(total)
    }
}

/// A tenant's live chunks with their vectors of `model`, in chunk order, and the next chunk
/// number as of the same snapshot.
pub fn load_tenant(
    store: &Store,
    tenant: TenantId,
    model: &str,
) -> Result<(Vec<IndexItem>, u64), StoreError> {
    store.read(|r| {
        let t = r.tenant(tenant);
        let next_id = t
            .get(&KNOWLEDGE_COUNTERS, CHUNK_COUNTER_KEY)?
            .map_or(u64::MAX, |c| c.next);
        let mut vectors: HashMap<u64, Vec<f32>> = HashMap::new();
        for (key, v) in t.scan(&CHUNK_VECTORS, &[], false, usize::MAX)? {
            if v.model != model {
                continue;
            }
            if let (Some(id), Some(vector)) = (chunk_id_of_key(&key), v.vector()) {
                vectors.insert(id, vector);
            }
        }
        let chunks = t.scan(&CHUNKS, &[], false, usize::MAX)?;
        let items = chunks
            .into_iter()
            .map(|(_, c)| {
                let heading = c
                    .owners
                    .first()
                    .map(|o| o.heading_path.clone())
                    .unwrap_or_default();
                IndexItem {
                    chunk: c.id,
                    kb: c.kb,
                    vector: vectors.remove(&c.id),
                    text: super::ingest::index_text(&heading, &c.text),
                }
            })
            .collect();
        Ok((items, next_id))
    })
}
