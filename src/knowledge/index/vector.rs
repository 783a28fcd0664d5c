//! Dense vectors: one hnsw_rs graph per tenant, so a tenant's search never walks another tenant's
//! points. hnsw_rs cannot delete, so each graph keeps its live set (chunk number → knowledge base):
//! a removed chunk leaves the live set at once and is filtered out of every search, and the graph
//! is rebuilt from redb once dead points make up a large share of it.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use hnsw_rs::prelude::{AnnT, Distance, Hnsw, HnswIo};
use serde::{Deserialize, Serialize};

use crate::storage::{KnowledgeBaseId, TenantId};

/// Graph shape: 16 links per node and a construction beam of 100 keep recall@5 at or above 0.95
/// at 100k points (`wacrm bench kb` measures it against exact search) while a 2-core box still
/// builds 100k points in minutes.
const MAX_CONNECTIONS: usize = 16;
const EF_CONSTRUCTION: usize = 100;
const MAX_LAYERS: usize = 16;
/// Search beam. Results are filtered by the live set and the allowed bases inside the search.
pub const EF_SEARCH: usize = 64;

/// Cosine distance on unit vectors. hnsw_rs's own `DistDot` asserts `dot <= 1`, which float
/// rounding breaks for near-identical vectors; this one clamps instead.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - crate::knowledge::embeddings::dot(a, b)).max(0.0)
    }
}

type Graph = Hnsw<'static, f32, UnitCosine>;

/// One tenant's graph with its live set.
pub struct TenantGraph {
    pub model: String,
    pub dimension: usize,
    graph: Graph,
    live: RwLock<HashMap<u64, KnowledgeBaseId>>,
    /// Points in the graph, live or dead.
    points: AtomicUsize,
    dirty: AtomicBool,
}

#[derive(Debug, Serialize, Deserialize)]
struct GraphMeta {
    format: u32,
    model: String,
    dimension: usize,
}

const GRAPH_BASENAME: &str = "graph";
const META_FILE: &str = "meta.json";

impl TenantGraph {
    pub fn new(model: &str, dimension: usize, expected: usize) -> Self {
        Self {
            model: model.to_string(),
            dimension,
            graph: Hnsw::new(
                MAX_CONNECTIONS,
                expected.max(1024),
                MAX_LAYERS,
                EF_CONSTRUCTION,
                UnitCosine,
            ),
            live: RwLock::new(HashMap::new()),
            points: AtomicUsize::new(0),
            dirty: AtomicBool::new(true),
        }
    }

    /// Adds points (parallel on the rayon pool for large batches). Vectors of another dimension
    /// are skipped: they belong to another model.
    pub fn insert(&self, items: &[(u64, KnowledgeBaseId, Vec<f32>)]) {
        let items: Vec<&(u64, KnowledgeBaseId, Vec<f32>)> = items
            .iter()
            .filter(|(_, _, v)| v.len() == self.dimension)
            .collect();
        if items.is_empty() {
            return;
        }
        if items.len() >= 256 {
            let data: Vec<(&[f32], usize)> = items
                .iter()
                .map(|(id, _, v)| (v.as_slice(), *id as usize))
                .collect();
            self.graph.parallel_insert_slice(&data);
        } else {
            for (id, _, v) in &items {
                self.graph.insert_slice((v.as_slice(), *id as usize));
            }
        }
        let mut live = self.live.write().unwrap_or_else(PoisonError::into_inner);
        for (id, kb, _) in &items {
            live.insert(*id, *kb);
        }
        self.points.fetch_add(items.len(), Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    pub fn remove(&self, ids: &[u64]) {
        let mut live = self.live.write().unwrap_or_else(PoisonError::into_inner);
        for id in ids {
            live.remove(id);
        }
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Drops every live id below `newer_from` that is not in `keep` (a snapshot of redb; ids from
    /// `newer_from` on were added after it and stay).
    pub fn retain(&self, keep: &HashMap<u64, KnowledgeBaseId>, newer_from: u64) {
        let mut live = self.live.write().unwrap_or_else(PoisonError::into_inner);
        live.retain(|id, kb| *id >= newer_from || keep.get(id) == Some(kb));
    }

    pub fn live_ids(&self) -> Vec<u64> {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }

    pub fn live_count(&self) -> usize {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn dead_count(&self) -> usize {
        self.points
            .load(Ordering::Relaxed)
            .saturating_sub(self.live_count())
    }

    /// Worth rebuilding: dead points are at least a quarter of the graph (and not just a few).
    pub fn needs_compaction(&self) -> bool {
        let dead = self.dead_count();
        dead >= 256 && dead * 4 >= self.points.load(Ordering::Relaxed)
    }

    /// Nearest live points of the allowed bases: (chunk number, cosine similarity), best first.
    pub fn search(&self, query: &[f32], k: usize, allowed: &[KnowledgeBaseId]) -> Vec<(u64, f32)> {
        if query.len() != self.dimension || k == 0 {
            return Vec::new();
        }
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        if live.is_empty() {
            return Vec::new();
        }
        let filter = |id: &usize| {
            live.get(&(*id as u64))
                .is_some_and(|kb| allowed.contains(kb))
        };
        let found = self
            .graph
            .search_filter(query, k, EF_SEARCH.max(k), Some(&filter));
        found
            .into_iter()
            .map(|n| (n.d_id as u64, 1.0 - n.distance))
            .collect()
    }

    /// Writes the graph beside its metadata, replacing the previous dump atomically (a fresh
    /// directory renamed over the old one).
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        if !self.dirty.swap(false, Ordering::Relaxed) && dir.join(META_FILE).is_file() {
            return Ok(());
        }
        let tmp = dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
        if self.points.load(Ordering::Relaxed) > 0 {
            self.graph
                .file_dump(&tmp, GRAPH_BASENAME)
                .map_err(|e| e.to_string())?;
        }
        let meta = GraphMeta {
            format: 1,
            model: self.model.clone(),
            dimension: self.dimension,
        };
        let meta = serde_json::to_vec(&meta).map_err(|e| e.to_string())?;
        std::fs::write(tmp.join(META_FILE), meta).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::rename(&tmp, dir).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Loads a dump written by `save`. The live set starts with every point of the dump; the
    /// caller trims it to what redb holds (`retain`). Any damage is an error (never a panic), and
    /// the caller rebuilds from redb.
    pub fn load(dir: &Path, kb_of: &HashMap<u64, KnowledgeBaseId>) -> Result<Self, String> {
        let meta: GraphMeta =
            serde_json::from_slice(&std::fs::read(dir.join(META_FILE)).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        if meta.format != 1 {
            return Err(format!("unknown graph format {}", meta.format));
        }
        let data_file = dir.join(format!("{GRAPH_BASENAME}.hnsw.data"));
        if !data_file.is_file() {
            return Ok(Self::new(&meta.model, meta.dimension, 0));
        }
        let dir_owned: PathBuf = dir.to_path_buf();
        // hnsw_rs asserts on malformed files; a damaged dump must not take the process down.
        let loaded = std::panic::catch_unwind(AssertUnwindSafe(move || {
            // The loaded graph borrows its loader for its whole life; loads happen once per
            // tenant per start (or reindex), so the small loader is leaked rather than tracked.
            let io: &'static mut HnswIo =
                Box::leak(Box::new(HnswIo::new(&dir_owned, GRAPH_BASENAME)));
            io.load_hnsw::<f32, UnitCosine>().map_err(|e| e.to_string())
        }))
        .map_err(|_| "graph dump is damaged".to_string())??;
        if loaded.get_point_indexation().get_data_dimension() != meta.dimension
            && loaded.get_nb_point() > 0
        {
            return Err("graph dimension differs from its metadata".into());
        }
        let mut live = HashMap::new();
        let mut points = 0usize;
        for point in loaded.get_point_indexation() {
            points += 1;
            let id = point.get_origin_id() as u64;
            if let Some(kb) = kb_of.get(&id) {
                live.insert(id, *kb);
            }
        }
        Ok(Self {
            model: meta.model,
            dimension: meta.dimension,
            graph: loaded,
            live: RwLock::new(live),
            points: AtomicUsize::new(points),
            dirty: AtomicBool::new(false),
        })
    }
}

/// Every tenant's graph.
#[derive(Default)]
pub struct VectorIndex {
    graphs: RwLock<HashMap<TenantId, Arc<TenantGraph>>>,
}

impl VectorIndex {
    pub fn get(&self, tenant: TenantId) -> Option<Arc<TenantGraph>> {
        self.graphs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&tenant)
            .cloned()
    }

    /// The tenant's graph for this model, created empty (replacing one of another model) if needed.
    pub fn ensure(&self, tenant: TenantId, model: &str, dimension: usize) -> Arc<TenantGraph> {
        if let Some(g) = self.get(tenant) {
            if g.model == model && g.dimension == dimension {
                return g;
            }
        }
        let mut graphs = self.graphs.write().unwrap_or_else(PoisonError::into_inner);
        let graph = graphs
            .entry(tenant)
            .or_insert_with(|| Arc::new(TenantGraph::new(model, dimension, 0)));
        if graph.model != model || graph.dimension != dimension {
            *graph = Arc::new(TenantGraph::new(model, dimension, 0));
        }
        graph.clone()
    }

    pub fn put(&self, tenant: TenantId, graph: Arc<TenantGraph>) {
        self.graphs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant, graph);
    }

    pub fn drop_tenant(&self, tenant: TenantId) {
        self.graphs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&tenant);
    }

    pub fn tenants(&self) -> Vec<(TenantId, Arc<TenantGraph>)> {
        self.graphs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(t, g)| (*t, g.clone()))
            .collect()
    }
}

/// Exact search over the same vectors, for measuring the graph's recall.
pub fn exact_top_k(query: &[f32], vectors: &[(u64, Vec<f32>)], k: usize) -> Vec<(u64, f32)> {
    let mut scored: Vec<(u64, f32)> = vectors
        .iter()
        .map(|(id, v)| (*id, super::super::embeddings::dot(query, v)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(k);
    scored
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v: Vec<f32> = (0..dim)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2000) as f32 / 1000.0 - 1.0
            })
            .collect();
        crate::knowledge::embeddings::normalise(&mut v);
        v
    }

    #[test]
    fn removed_points_never_come_back_and_bases_filter() {
        let kb1 = KnowledgeBaseId::new();
        let kb2 = KnowledgeBaseId::new();
        let g = TenantGraph::new("m", 16, 0);
        let items: Vec<_> = (1..=50u64)
            .map(|i| (i, if i % 2 == 0 { kb1 } else { kb2 }, unit(i, 16)))
            .collect();
        g.insert(&items);
        let q = unit(7, 16);
        assert_eq!(g.search(&q, 1, &[kb1, kb2])[0].0, 7);
        assert!(g.search(&q, 5, &[kb1]).iter().all(|(id, _)| id % 2 == 0));
        g.remove(&[7]);
        assert!(g.search(&q, 10, &[kb1, kb2]).iter().all(|(id, _)| *id != 7));
        assert_eq!(g.dead_count(), 1);
    }

    #[test]
    fn a_saved_graph_loads_with_the_same_answers() {
        let dir = tempfile::tempdir().unwrap();
        let kb = KnowledgeBaseId::new();
        let g = TenantGraph::new("m", 16, 0);
        let items: Vec<_> = (1..=40u64).map(|i| (i, kb, unit(i, 16))).collect();
        g.insert(&items);
        let path = dir.path().join("t");
        g.save(&path).unwrap();
        let kb_of: HashMap<u64, KnowledgeBaseId> = (1..=40u64).map(|i| (i, kb)).collect();
        let loaded = TenantGraph::load(&path, &kb_of).unwrap();
        assert_eq!(loaded.live_count(), 40);
        for i in [3u64, 17, 40] {
            let q = unit(i, 16);
            assert_eq!(loaded.search(&q, 3, &[kb]), g.search(&q, 3, &[kb]));
        }
        std::fs::write(path.join("graph.hnsw.graph"), b"garbage").unwrap();
        assert!(TenantGraph::load(&path, &kb_of).is_err());
    }
}
