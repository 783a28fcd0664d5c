//! `wacrm bench ingest`: signed webhooks over HTTP at full speed into the real appliance, against
//! the ceiling of raw redb commits of the same rows with the same durability.
//!
//! What one accepted webhook message costs the store: its received-marker row (deduplication by
//! wamid) and its event-queue row (the outbox), committed durably before the 200. The ceiling
//! writes exactly those key/value bytes straight into redb with `Durability::Immediate`, from one
//! thread, in batches of several sizes, and the best batch size is the ceiling. No HTTP, no JSON
//! parsing, no signature check, no group-commit machinery, no pipeline running beside it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, Durability, TableDefinition};

use super::harness::{self, BenchApp, ScratchDir, SignedWebhook};
use super::stats::{ms, per_sec, ratio, verdict, Latency, Table};
use super::BenchError;
use crate::config::{Config, LlmSettings};
use crate::events::{queue_key, Consumer, Envelope, EventPayload};
use crate::storage::collections as tags;
use crate::storage::record::encode;
use crate::storage::{ChannelId, TenantId};
use crate::testkit::fake_graph::{FakeGraph, FakeGraphOptions};
use crate::whatsapp::ingress::{Received, RECEIVED};
use crate::whatsapp::payload::parse_webhook;

/// The ratio the appliance should reach against the ceiling.
pub const TARGET_RATIO: f64 = 0.50;

/// Longest one ceiling batch size may run; small batches are fsync-bound and would otherwise take
/// minutes, so they are measured on a prefix of the records.
const CEILING_BUDGET: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub messages: usize,
    pub concurrency: usize,
    /// Where the throwaway data directories go (the system temp dir when None).
    pub work_dir: Option<PathBuf>,
    /// The operator's configuration: its tunables apply, its data directory is never touched.
    pub config: Config,
}

/// One ceiling measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ceiling {
    pub batch: usize,
    /// Messages actually written (a prefix when the time budget ran out).
    pub messages: usize,
    pub elapsed: Duration,
    pub msgs_per_sec: f64,
}

#[derive(Debug, Clone)]
pub struct IngestReport {
    pub messages: usize,
    pub concurrency: usize,
    /// Webhooks answered 200.
    pub accepted: usize,
    /// Webhooks answered anything else, or not at all.
    pub failed: usize,
    pub elapsed: Duration,
    pub msgs_per_sec: f64,
    /// Time from starting the POST to having read the 200.
    pub latency: Latency,
    /// Durable commits of the store during the measured window, and the writes they held (the
    /// pipeline's own writes included).
    pub commits: u64,
    pub writes: u64,
    /// Writer thread time in the window: running jobs, and committing (page writes + fsync).
    pub writer_run: Duration,
    pub writer_commit: Duration,
    /// Events not yet handled by the conversations consumer when the last webhook was answered.
    pub backlog_at_end: usize,
    pub ceilings: Vec<Ceiling>,
    /// `fdatasync` of a small write on the same disk, sampled during the measured window.
    pub fsync: Latency,
}

impl IngestReport {
    pub fn best_ceiling(&self) -> Option<Ceiling> {
        self.ceilings
            .iter()
            .copied()
            .max_by(|a, b| a.msgs_per_sec.total_cmp(&b.msgs_per_sec))
    }

    /// The ceiling at the largest batch a group commit can hold here: with C clients waiting for
    /// their answers, at most C webhooks can share one commit.
    pub fn reachable_ceiling(&self) -> Option<Ceiling> {
        self.ceilings
            .iter()
            .copied()
            .filter(|c| c.batch <= self.concurrency)
            .max_by(|a, b| a.msgs_per_sec.total_cmp(&b.msgs_per_sec))
    }

    pub fn ratio(&self) -> f64 {
        ratio(
            self.msgs_per_sec,
            self.best_ceiling().map(|c| c.msgs_per_sec).unwrap_or(0.0),
        )
    }

    pub fn table(&self) -> Table {
        let mut t = Table::new(format!(
            "wacrm bench ingest: {} signed text webhooks, {} concurrent clients (keep-alive), {} CPUs",
            self.messages,
            self.concurrency,
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        ));
        t.row(
            "ingest (HTTP -> 200)",
            format!(
                "{:>10.0} msgs/s   ({} accepted, {} failed, {:.2} s)",
                self.msgs_per_sec,
                self.accepted,
                self.failed,
                self.elapsed.as_secs_f64()
            ),
        );
        t.row(
            "  time to 200",
            format!(
                "p50 {}   p90 {}   p99 {}   max {}",
                ms(self.latency.p50),
                ms(self.latency.p90),
                ms(self.latency.p99),
                ms(self.latency.max)
            ),
        );
        t.row(
            "  group commit",
            format!(
                "{} commits, {:.1} writes/commit (pipeline writes included); backlog at end {}",
                self.commits,
                ratio(self.writes as f64, self.commits as f64),
                self.backlog_at_end
            ),
        );
        let busy = |d: Duration| 100.0 * ratio(d.as_secs_f64(), self.elapsed.as_secs_f64());
        t.row(
            "  writer thread",
            format!(
                "running jobs {:.0}% of the window, committing {:.0}% (page writes + fsync)",
                busy(self.writer_run),
                busy(self.writer_commit)
            ),
        );
        t.row(
            "disk: 16 KiB write + fdatasync",
            format!(
                "p50 {}   p99 {}   (sampled during the ingest; every commit pays at least this)",
                ms(self.fsync.p50),
                ms(self.fsync.p99)
            ),
        );
        for c in &self.ceilings {
            let sampled = if c.messages < self.messages {
                format!("  (first {} messages, time budget)", c.messages)
            } else {
                String::new()
            };
            t.row(
                format!("ceiling, batch {:>6}", c.batch),
                format!("{:>10.0} msgs/s{sampled}", c.msgs_per_sec),
            );
        }
        if let Some(best) = self.best_ceiling() {
            t.row(
                "ratio ingest / best ceiling",
                format!(
                    "{:.3}   (best batch {}; target >= {TARGET_RATIO:.2}: {})",
                    self.ratio(),
                    best.batch,
                    verdict(self.ratio() >= TARGET_RATIO)
                ),
            );
        }
        if let Some(reach) = self.reachable_ceiling() {
            t.row(
                format!("ratio ingest / ceiling at batch <= {}", self.concurrency),
                format!(
                    "{:.3}   (at most {} webhooks are in flight, so no commit can hold more)",
                    ratio(self.msgs_per_sec, reach.msgs_per_sec),
                    self.concurrency
                ),
            );
        }
        t
    }
}

/// One message's rows, as ingress writes them.
struct Rows {
    received_key: Vec<u8>,
    received_value: Vec<u8>,
    event_key: Vec<u8>,
    event_value: Vec<u8>,
}

pub async fn run(opts: IngestOptions) -> Result<IngestReport, BenchError> {
    let messages = opts.messages.max(1);
    let concurrency = opts.concurrency.max(1);
    let scratch = ScratchDir::new(opts.work_dir.as_deref(), "ingest")?;

    // The offline assistant hands each new customer to a human and sends a notice: the sender
    // needs somewhere to send it.
    let graph = FakeGraph::start(FakeGraphOptions::new(harness::ACCESS_TOKEN))
        .await
        .map_err(|e| BenchError::Setup(format!("fake graph: {e}")))?;
    let mut config = harness::bench_config(&opts.config, &scratch.path().join("app"));
    config.llm = LlmSettings::Offline;
    config.graph.base_url = graph.base_url();
    let app = BenchApp::start(config).await?;
    let (tenant, channel) = (app.tenant, app.channel);

    // Built and signed before the clock starts: signing is Meta's work, not ours.
    let hooks: Arc<Vec<SignedWebhook>> = Arc::new(
        (0..messages)
            .map(|i| {
                SignedWebhook::text(
                    &harness::customer(i % concurrency),
                    &format!("wamid.bench.{i:08}"),
                    &format!("Halo, apakah buka hari Minggu? ({i})"),
                )
            })
            .collect(),
    );
    let http = harness::http_client(concurrency)?;
    let url = Arc::new(app.webhook_url.clone());

    // Warm-up: open every connection and fill the route cache.
    let warm: Vec<SignedWebhook> = (0..concurrency)
        .map(|i| {
            SignedWebhook::text(
                &harness::customer(i),
                &format!("wamid.warmup.{i:08}"),
                "halo",
            )
        })
        .collect();
    let mut warmups = tokio::task::JoinSet::new();
    for hook in warm {
        let (http, url) = (http.clone(), url.clone());
        warmups.spawn(async move { harness::post_webhook(&http, &url, &hook).await });
    }
    while let Some(done) = warmups.join_next().await {
        let status = done.map_err(|e| BenchError::Setup(format!("warm-up task: {e}")))??;
        if status != 200 {
            return Err(BenchError::Setup(format!(
                "warm-up webhook answered {status}"
            )));
        }
    }

    let store = app
        .store()
        .ok_or_else(|| BenchError::Setup("app not running".into()))?
        .clone();
    let before = store.stats();
    let disk = harness::DiskSampler::start(scratch.path())?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (http, url, hooks, next) = (http.clone(), url.clone(), hooks.clone(), next.clone());
        clients.spawn(async move {
            let mut latencies = Vec::with_capacity(hooks.len() / concurrency + 1);
            let mut failed = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(hook) = hooks.get(i) else { break };
                let sent = Instant::now();
                match harness::post_webhook(&http, &url, hook).await {
                    Ok(200) => latencies.push(sent.elapsed()),
                    Ok(_) | Err(_) => failed += 1,
                }
            }
            (latencies, failed)
        });
    }
    let mut latencies = Vec::with_capacity(messages);
    let mut failed = 0;
    while let Some(done) = clients.join_next().await {
        let (l, f) = done.map_err(|e| BenchError::Setup(format!("client task: {e}")))?;
        latencies.extend(l);
        failed += f;
    }
    let elapsed = started.elapsed();
    let after = store.stats();
    let fsync = disk.finish()?;
    let backlog_at_end = crate::events::queue_depth(&store, Consumer::Conversations)
        .map_err(|e| BenchError::Storage(e.to_string()))?;
    drop(store);
    app.stop().await;
    graph.shutdown().await;

    let accepted = latencies.len();
    let rows = Arc::new(rows_of(&hooks, tenant, channel)?);
    let mut batches: Vec<usize> = [1, concurrency, 256, messages]
        .into_iter()
        .map(|b| b.min(messages))
        .collect();
    batches.sort_unstable();
    batches.dedup();
    let mut ceilings = Vec::new();
    for batch in batches {
        let path = scratch.path().join(format!("ceiling-{batch}.redb"));
        let rows = rows.clone();
        let ceiling = tokio::task::spawn_blocking(move || ceiling(&path, &rows, batch))
            .await
            .map_err(|e| BenchError::Setup(format!("ceiling task: {e}")))??;
        ceilings.push(ceiling);
    }

    Ok(IngestReport {
        messages,
        concurrency,
        accepted,
        failed,
        elapsed,
        msgs_per_sec: per_sec(accepted, elapsed),
        latency: Latency::of(latencies),
        commits: after.commits - before.commits,
        writes: after.jobs - before.jobs,
        writer_run: Duration::from_micros(after.run_us - before.run_us),
        writer_commit: Duration::from_micros(after.commit_us - before.commit_us),
        backlog_at_end,
        ceilings,
        fsync,
    })
}

/// The key/value bytes ingress writes for each webhook (see `ingress::store_message`,
/// `events::publish` and the key layout of `storage::scoped`).
fn rows_of(
    hooks: &[SignedWebhook],
    tenant: TenantId,
    channel: ChannelId,
) -> Result<Vec<Rows>, BenchError> {
    let corrupt = |e: crate::storage::StoreError| BenchError::Storage(e.to_string());
    let mut rows = Vec::with_capacity(hooks.len());
    for (seq, hook) in (1u64..).zip(hooks) {
        let batches =
            parse_webhook(&hook.body).map_err(|e| BenchError::Setup(format!("payload: {e}")))?;
        for batch in batches {
            let profile_name = batch.contacts.first().and_then(|c| c.name.clone());
            for message in batch.messages {
                let at_ms = crate::events::now_ms();
                // Tenant table: tenant id | collection tag | suffix.
                let mut received_key = tenant.as_bytes().to_vec();
                received_key.push(RECEIVED.tag());
                received_key.extend_from_slice(message.wamid.as_bytes());
                let received_value = encode(&Received { at_ms, channel }).map_err(corrupt)?;
                // Global table: collection tag | suffix.
                let mut event_key = vec![tags::EVENT_QUEUE];
                event_key.extend_from_slice(&queue_key(Consumer::Conversations, seq));
                let event_value = encode(&Envelope {
                    seq,
                    consumer: Consumer::Conversations,
                    tenant,
                    at_ms,
                    payload: EventPayload::InboundMessage {
                        channel,
                        profile_name: profile_name.clone(),
                        message: Box::new(message),
                    },
                })
                .map_err(corrupt)?;
                rows.push(Rows {
                    received_key,
                    received_value,
                    event_key,
                    event_value,
                });
            }
        }
    }
    Ok(rows)
}

const TENANT_ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tenant_rows");
const GLOBAL_ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("global_rows");

/// Writes `rows` into a fresh database, `batch` messages per durable commit, from one thread.
fn ceiling(path: &std::path::Path, rows: &[Rows], batch: usize) -> Result<Ceiling, BenchError> {
    let io = |e: redb::Error| BenchError::Storage(e.to_string());
    let db = Database::create(path).map_err(|e| io(e.into()))?;
    {
        let txn = db.begin_write().map_err(|e| io(e.into()))?;
        txn.open_table(TENANT_ROWS).map_err(|e| io(e.into()))?;
        txn.open_table(GLOBAL_ROWS).map_err(|e| io(e.into()))?;
        txn.commit().map_err(|e| io(e.into()))?;
    }
    let started = Instant::now();
    let mut written = 0;
    for chunk in rows.chunks(batch.max(1)) {
        let mut txn = db.begin_write().map_err(|e| io(e.into()))?;
        txn.set_durability(Durability::Immediate);
        {
            let mut tenant = txn.open_table(TENANT_ROWS).map_err(|e| io(e.into()))?;
            let mut global = txn.open_table(GLOBAL_ROWS).map_err(|e| io(e.into()))?;
            for r in chunk {
                tenant
                    .insert(r.received_key.as_slice(), r.received_value.as_slice())
                    .map_err(|e| io(e.into()))?;
                global
                    .insert(r.event_key.as_slice(), r.event_value.as_slice())
                    .map_err(|e| io(e.into()))?;
            }
        }
        txn.commit().map_err(|e| io(e.into()))?;
        written += chunk.len();
        if started.elapsed() > CEILING_BUDGET {
            break;
        }
    }
    let elapsed = started.elapsed();
    Ok(Ceiling {
        batch,
        messages: written,
        elapsed,
        msgs_per_sec: per_sec(written, elapsed),
    })
}
