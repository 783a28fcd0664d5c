//! `wacrm bench kb`: parsing and chunking throughput, local embedding throughput, hybrid retrieval
//! latency and HNSW recall at 10k and 100k chunks, and quality on the shipped evaluation set.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::Config;
use crate::knowledge::chunk::{chunk, ChunkConfig};
use crate::knowledge::embedder::EmbedderConfig;
use crate::knowledge::embeddings::{normalise, shared_local_embedder, Embeddings};
use crate::knowledge::eval::ScratchDir;
use crate::knowledge::index::vector::exact_top_k;
use crate::knowledge::index::SearchIndex;
use crate::knowledge::model::*;
use crate::knowledge::parse::{parse, ParseLimits};
use crate::knowledge::retrieve::{hybrid, SearchRequest};
use crate::storage::{KnowledgeBaseId, Store, TenantId};

pub struct KbBenchOptions {
    pub sizes: Vec<usize>,
    pub queries: usize,
    pub other_tenants: usize,
    pub other_tenant_chunks: usize,
    pub skip_embedding: bool,
}

const DIM: usize = 384;

pub async fn run(config: Config, opts: KbBenchOptions) -> anyhow::Result<()> {
    // Latency on a shared 2-core box depends on what else runs: say so next to the numbers.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!(
            "machine: {} cores, load average {} at start",
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    println!("== parsing and chunking (500-token chunks, 50 overlap) ==");
    parse_throughput();
    if !opts.skip_embedding {
        println!(
            "\n== local embedding ({}) ==",
            crate::knowledge::embedder::DEFAULT_MODEL_ID
        );
        embedding_throughput(&config.models_dir).await?;
    }
    println!(
        "\n== hybrid retrieval, top 5 (BM25 + HNSW, fused), one tenant among {} others of {} chunks each ==",
        opts.other_tenants, opts.other_tenant_chunks
    );
    println!("vectors: synthetic unit vectors ({DIM}-d, clustered like text embeddings), not model output;");
    println!("texts: synthetic sentences over a 5,000-word vocabulary; query embedding time not included.");
    for size in &opts.sizes {
        retrieval(*size, &opts).await?;
    }
    let eval_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("eval");
    if eval_dir.join("queries.jsonl").is_file() {
        println!("\n== quality on the shipped evaluation set (eval/) ==");
        let report = crate::knowledge::eval::run(
            &config,
            &eval_dir.join("docs"),
            &eval_dir.join("queries.jsonl"),
        )
        .await?;
        for (lang, r) in &report.by_lang {
            let target = if lang == "en" {
                "  (target >= 0.85)"
            } else {
                ""
            };
            println!(
                "{lang}: hit@1 {:.3}  hit@5 {:.3}{target}  MRR {:.3}  ({} queries)",
                r.hit_at_1, r.hit_at_5, r.mrr, r.queries
            );
        }
    }
    Ok(())
}

fn mb_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

/// Runs `f` over the input until about a second has passed; returns MB/s.
fn measure(bytes: &[u8], mut f: impl FnMut(&[u8]) -> bool) -> Option<f64> {
    let started = Instant::now();
    let mut total = 0;
    while started.elapsed() < Duration::from_millis(800) {
        if !f(bytes) {
            return None;
        }
        total += bytes.len();
    }
    Some(mb_per_s(total, started.elapsed()))
}

fn parse_throughput() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/documents");
    let eval_doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("eval/docs/passports.md");
    let text: Vec<u8> = std::fs::read_to_string(&eval_doc)
        .unwrap_or_else(|_| "Opening hours are nine to five. ".repeat(40))
        .repeat(50)
        .into_bytes();
    let mut samples: Vec<(&str, String, Vec<u8>)> = vec![("text", "sample.txt".into(), text)];
    for (kind, name) in [("PDF", "two_column.pdf"), ("DOCX", "return_policy.docx")] {
        match std::fs::read(fixtures.join(name)) {
            Ok(b) => samples.push((kind, name.into(), b)),
            Err(_) => println!("{kind:<5} skipped: no sample at tests/fixtures/documents/{name}"),
        }
    }
    // Baseline: UTF-8 validation of the same bytes, the least any text pipeline does.
    println!(
        "{:<5} {:>10} {:>14} {:>16} {:>7}",
        "kind", "size", "parse+chunk", "utf-8 baseline", "ratio"
    );
    let limits = ParseLimits::default();
    let config = ChunkConfig::default();
    for (kind, name, bytes) in samples {
        let pipeline = measure(&bytes, |b| match parse(b, &name, None, &limits) {
            Ok(doc) => !chunk(&doc, &config).is_empty(),
            Err(_) => false,
        });
        let baseline = measure(&bytes, |b| {
            std::hint::black_box(String::from_utf8_lossy(b).len()) > 0
        });
        match (pipeline, baseline) {
            (Some(p), Some(b)) => println!(
                "{kind:<5} {:>8} kB {:>9.2} MB/s {:>11.1} MB/s {:>6.3}x",
                bytes.len() / 1000,
                p,
                b,
                p / b
            ),
            _ => println!("{kind:<5} {name}: could not be parsed by this build"),
        }
    }
}

async fn embedding_throughput(models_dir: &Path) -> anyhow::Result<()> {
    let dir = models_dir.to_path_buf();
    let result = tokio::task::spawn_blocking(move || -> anyhow::Result<(f64, f64)> {
        let model = shared_local_embedder(&dir, &EmbedderConfig::default())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let passage = "Delivery is free for orders above 100000 rupiah within the city; smaller orders pay a flat fee of 15000 rupiah, and deliveries outside the city are quoted on request.";
        let texts: Vec<String> = (0..128).map(|i| format!("{passage} (#{i})")).collect();
        model
            .embed_passages(&texts[..4])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let started = Instant::now();
        model
            .embed_passages(&texts)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let batched = texts.len() as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        for t in &texts[..32] {
            model
                .embed_passages(std::slice::from_ref(t))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let single = 32.0 / started.elapsed().as_secs_f64();
        Ok((batched, single))
    })
    .await??;
    let (batched, single) = result;
    println!(
        "{:.0} chunks/s in batches of 32 (~40-token passages); one at a time {:.0}/s; ratio {:.2}x",
        batched,
        single,
        batched / single
    );
    Ok(())
}

struct Synthetic {
    rng: StdRng,
    vocabulary: Vec<String>,
    centers: Vec<Vec<f32>>,
}

impl Synthetic {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let vocabulary = (0..5000)
            .map(|i| {
                let len = rng.gen_range(3..9);
                let w: String = (0..len)
                    .map(|_| rng.gen_range(b'a'..=b'z') as char)
                    .collect();
                format!("{w}{}", i % 7)
            })
            .collect();
        let centers = (0..500).map(|_| random_unit(&mut rng)).collect();
        Self {
            rng,
            vocabulary,
            centers,
        }
    }

    /// Zipf-like word choice: a few words are common, most are rare (as in real text).
    fn word(&mut self) -> &str {
        let x: f64 = self.rng.gen();
        let i = ((self.vocabulary.len() as f64).powf(x) as usize).saturating_sub(1);
        &self.vocabulary[i.min(self.vocabulary.len() - 1)]
    }

    fn text(&mut self, words: usize) -> String {
        (0..words)
            .map(|_| self.word().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn vector(&mut self) -> Vec<f32> {
        let c = self.rng.gen_range(0..self.centers.len());
        let mut v: Vec<f32> = self.centers[c]
            .iter()
            .map(|x| x + 0.07 * (self.rng.gen::<f32>() * 2.0 - 1.0))
            .collect();
        normalise(&mut v);
        v
    }

    fn near(&mut self, v: &[f32]) -> Vec<f32> {
        let mut q: Vec<f32> = v
            .iter()
            .map(|x| x + 0.03 * (self.rng.gen::<f32>() * 2.0 - 1.0))
            .collect();
        normalise(&mut q);
        q
    }
}

fn random_unit(rng: &mut StdRng) -> Vec<f32> {
    let mut v: Vec<f32> = (0..DIM).map(|_| rng.gen::<f32>() * 2.0 - 1.0).collect();
    normalise(&mut v);
    v
}

const MODEL: &str = "synthetic";

/// Writes `n` synthetic chunks with vectors straight into redb for one tenant.
async fn fill(
    store: &Store,
    synth: &mut Synthetic,
    tenant: TenantId,
    kb: KnowledgeBaseId,
    n: usize,
) -> anyhow::Result<Vec<(u64, Vec<f32>)>> {
    let mut vectors = Vec::with_capacity(n);
    let mut next = 1u64;
    while (next as usize) <= n {
        let batch: Vec<(StoredChunk, StoredVector, Vec<f32>)> = (0..2000)
            .take_while(|i| next as usize + i <= n)
            .map(|i| {
                let id = next + i as u64;
                let v = synth.vector();
                let chunk = StoredChunk {
                    id,
                    kb,
                    text: synth.text(60),
                    token_count: 80,
                    hash: format!("{id:064x}"),
                    owners: vec![ChunkOwner {
                        document: crate::storage::DocumentId::new(),
                        ordinal: 0,
                        heading_path: Vec::new(),
                        page: None,
                    }],
                };
                (chunk, StoredVector::new(MODEL, &v), v)
            })
            .collect();
        next += batch.len() as u64;
        for (c, _, v) in &batch {
            vectors.push((c.id, v.clone()));
        }
        let rows: Vec<(StoredChunk, StoredVector)> =
            batch.into_iter().map(|(c, s, _)| (c, s)).collect();
        let rows = Arc::new(rows);
        store
            .write(move |ctx| {
                let mut t = ctx.tenant(tenant);
                for (c, v) in rows.iter() {
                    t.put(&CHUNKS, &chunk_key(c.id), c)?;
                    t.put(&CHUNK_VECTORS, &chunk_key(c.id), v)?;
                }
                Ok(())
            })
            .await?;
    }
    Ok(vectors)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn retrieval(size: usize, opts: &KbBenchOptions) -> anyhow::Result<()> {
    let scratch = ScratchDir::new("bench-kb")?;
    let (store, _rx) = crate::app::open_store(&Config {
        data_dir: scratch.path().to_path_buf(),
        ..Config::default()
    })?;
    let mut synth = Synthetic::new(size as u64);
    let tenant = TenantId::new();
    let kb = KnowledgeBaseId::new();
    let started = Instant::now();
    let vectors = fill(&store, &mut synth, tenant, kb, size).await?;
    let mut others = Vec::new();
    for _ in 0..opts.other_tenants {
        let t = TenantId::new();
        fill(
            &store,
            &mut synth,
            t,
            KnowledgeBaseId::new(),
            opts.other_tenant_chunks,
        )
        .await?;
        others.push(t);
    }
    let stored = started.elapsed();
    let index_dir = scratch.path().join("index");
    let store2 = store.clone();
    let (index, built) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(SearchIndex, Duration)> {
            let index = SearchIndex::open(&index_dir).map_err(anyhow::Error::msg)?;
            let started = Instant::now();
            index
                .sync_tenant(&store2, tenant, MODEL, true)
                .map_err(anyhow::Error::msg)?;
            for t in &others {
                index
                    .sync_tenant(&store2, *t, MODEL, true)
                    .map_err(anyhow::Error::msg)?;
            }
            Ok((index, started.elapsed()))
        })
        .await??;
    println!(
        "\n{size} chunks: stored in {:.1} s, indexed (BM25 + HNSW) in {:.1} s",
        stored.as_secs_f64(),
        built.as_secs_f64()
    );

    let queries: Vec<(String, Vec<f32>)> = (0..opts.queries)
        .map(|_| {
            let i = synth.rng.gen_range(0..vectors.len());
            let q = synth.near(&vectors[i].1);
            (synth.text(6), q)
        })
        .collect();
    let store3 = store.clone();
    let calibration = Embeddings::from_config(&Config::default().embeddings, Path::new("models"))
        .map_err(anyhow::Error::msg)?
        .calibration();
    let (latencies, recall, exact_times, leaked, parts) = tokio::task::spawn_blocking(move || {
        let mut latencies = Vec::with_capacity(queries.len());
        let mut exact_times = Vec::with_capacity(queries.len());
        let mut bm25_times = Vec::with_capacity(queries.len());
        let mut hnsw_times = Vec::with_capacity(queries.len());
        let mut hits = 0usize;
        let mut leaked = 0usize;
        let graph = index.vectors.get(tenant);
        for (text, q) in &queries {
            let req = SearchRequest {
                tenant,
                outlet: None,
                kb: None,
                query: text.clone(),
                limit: 5,
                min_score: None,
            };
            let started = Instant::now();
            let result = hybrid(&index, &store3, &req, &[kb], Some(q), MODEL, calibration);
            latencies.push(started.elapsed());
            if let Ok(found) = result {
                leaked += found.iter().filter(|h| h.kb != kb).count();
            }
            let started = Instant::now();
            let _ = index.text.search(tenant, None, text, 30);
            bm25_times.push(started.elapsed());
            let started = Instant::now();
            let exact = exact_top_k(q, &vectors, 5);
            exact_times.push(started.elapsed());
            if let Some(g) = &graph {
                let started = Instant::now();
                let _ = g.search(q, 30, &[kb]);
                hnsw_times.push(started.elapsed());
                let approx: Vec<u64> = g
                    .search(q, 5, &[kb])
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                hits += exact.iter().filter(|(id, _)| approx.contains(id)).count();
            }
        }
        latencies.sort();
        exact_times.sort();
        bm25_times.sort();
        hnsw_times.sort();
        let recall = hits as f64 / (queries.len() * 5) as f64;
        let parts = (percentile(&bm25_times, 0.5), percentile(&hnsw_times, 0.5));
        (latencies, recall, exact_times, leaked, parts)
    })
    .await?;
    let p50 = percentile(&latencies, 0.5);
    let p99 = percentile(&latencies, 0.99);
    let exact50 = percentile(&exact_times, 0.5);
    println!(
        "hybrid top-5 over {} queries: p50 {:.2} ms, p99 {:.2} ms (target p99 < 10 ms: {})",
        latencies.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        if p99 < Duration::from_millis(10) {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "HNSW recall@5 against exact search: {:.3} (target >= 0.95: {}); exact search alone p50 {:.2} ms, ratio hybrid/exact {:.2}x",
        recall,
        if recall >= 0.95 { "met" } else { "NOT met" },
        exact50.as_secs_f64() * 1e3,
        p50.as_secs_f64() / exact50.as_secs_f64().max(1e-9)
    );
    println!(
        "parts (p50): BM25 top-30 {:.2} ms, HNSW top-30 {:.2} ms; other tenants' chunks in results: {leaked}",
        parts.0.as_secs_f64() * 1e3,
        parts.1.as_secs_f64() * 1e3
    );
    Ok(())
}
