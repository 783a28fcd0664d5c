//! `wacrm bench pipeline`: a customer's webhook in, the assistant's reply accepted by the (fake)
//! Graph API out, through the real appliance: ingress, conversations, debounced turn (debounce 0),
//! the LLM client against a fake that answers at once, the sender.
//!
//! Three phases, each on fresh appliances: (a) throughput, many distinct customers writing at
//! full speed; (b) latency at a fixed offered load, open loop (sends are scheduled at fixed
//! intervals whatever the appliance does), measured from the start of the webhook POST to the
//! fake Graph API's recorded receipt of that customer's reply; (c) the same load alternating
//! between two appliances, one with metering and the quota check off (see `metering`). The
//! baseline is the bare cost of the two fakes: one LLM call and one Graph send made directly with
//! the appliance's own clients. Every appliance meters replies, as the product always does,
//! except the one phase (c) turns it off on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use super::baseline::Baseline;
use super::harness::{self, BenchApp, ScratchDir, SignedWebhook};
use super::metering::MeteringCost;
use super::stats::{ms, per_sec, ratio, verdict, Latency, Table};
use super::BenchError;
use crate::config::{Config, LlmSettings, Secret};
use crate::conversations::{self, Author};
use crate::testkit::fake_graph::{FakeGraph, FakeGraphOptions, RecordedSend};
use crate::testkit::fake_llm::{FakeLlm, FakeLlmOptions, Responder, FAKE_LLM_API_KEY};

pub const TARGET_TURNS_PER_SEC: f64 = 1_000.0;
pub const TARGET_P99: Duration = Duration::from_millis(25);

const ANSWER: &str = "We open every day from 9 am to 9 pm, Sundays included.";
pub(super) const QUESTION: &str = "Do you open on Sunday?";
/// Durable commits in a row between a customer's webhook and the Graph request of the reply:
/// ingress (before the 200: Meta redelivers what was not acknowledged), filing (schedules the
/// turn durably before the model is called), and the turn (the reply together with the sender's
/// claim on its first send, so the sender records no intent of its own before the request).
pub const CRITICAL_COMMITS: usize = 3;
/// Turns run before each measured phase to open connections and warm caches.
pub(super) const WARM_TURNS: usize = 16;
/// First customer number of the baseline's sends (distinct from both phases' customers).
pub(super) const ANSWER_SENDS_TO: usize = 3_000_000;

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Turns of the throughput phase (one per distinct customer).
    pub turns: usize,
    /// Concurrent webhook clients of the throughput phase.
    pub concurrency: usize,
    /// Turns of the latency phase.
    pub latency_turns: usize,
    /// Offered load of the latency phase, turns per second.
    pub rate: f64,
    /// Turns of the metering phase (c), split between metering off and on.
    pub metering_turns: usize,
    pub work_dir: Option<PathBuf>,
    pub config: Config,
}

#[derive(Debug, Clone, Default)]
pub struct Throughput {
    pub turns: usize,
    /// Customers whose reply the fake Graph API accepted.
    pub replied: usize,
    /// Replies beyond one per customer (must be 0).
    pub duplicates: usize,
    /// Replies other than the model's answer (must be 0).
    pub off_script: usize,
    pub webhooks_failed: usize,
    /// From the first webhook POST to the last reply's receipt.
    pub elapsed: Duration,
    /// Until the last webhook was answered 200.
    pub ingest_elapsed: Duration,
    pub turns_per_sec: f64,
    /// Store commits until the last reply, the writes they held, and the writer thread's time.
    pub commits: u64,
    pub writes: u64,
    pub writer_busy: Duration,
    /// `fdatasync` of a small write on the appliance's disk, sampled during the phase.
    pub fsync: Latency,
}

#[derive(Debug, Clone, Default)]
pub struct OpenLoop {
    pub turns: usize,
    pub rate: f64,
    pub replied: usize,
    pub duplicates: usize,
    pub off_script: usize,
    pub webhooks_failed: usize,
    /// Webhook POST start to reply receipt.
    pub latency: Latency,
    /// Latest a scheduled send actually started (the load generator's own lag).
    pub max_send_lag: Duration,
    /// Where the time goes, from the timestamps the appliance stored (millisecond resolution).
    pub stages: Stages,
    /// `fdatasync` of a small write on the appliance's disk, sampled during the phase.
    pub fsync: Latency,
}

/// A turn's latency split at the points the store records.
#[derive(Debug, Clone, Default)]
pub struct Stages {
    /// POST start to the customer's message filed in its conversation (ingress commit, dispatch,
    /// the filing job).
    pub filed: Latency,
    /// Filed to the reply queued (filing commit, scheduler, LLM call, the turn's job).
    pub queued: Latency,
    /// Reply queued to the Graph API's receipt (turn commit, dispatch, the durable `sending`
    /// intent, the HTTP send).
    pub sent: Latency,
}

#[derive(Debug, Clone)]
pub struct PipelineReport {
    pub concurrency: usize,
    pub baseline: Baseline,
    pub throughput: Throughput,
    pub open_loop: OpenLoop,
    pub metering: MeteringCost,
}

impl PipelineReport {
    pub fn table(&self) -> Table {
        let tp = &self.throughput;
        let ol = &self.open_loop;
        let b = &self.baseline;
        let mut t = Table::new(format!(
            "wacrm bench pipeline: webhook -> reply accepted by Graph (fake LLM answers at once, debounce 0), {} CPUs",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        ));
        t.row(
            "baseline: LLM call + Graph send",
            format!(
                "p50 {}   p99 {}   (LLM p50 {}, Graph p50 {}); {:.0} pairs/s with {} clients",
                ms(b.pair.p50),
                ms(b.pair.p99),
                ms(b.llm.p50),
                ms(b.graph.p50),
                b.pairs_per_sec,
                self.concurrency
            ),
        );
        t.row(
            "(a) max throughput",
            format!(
                "{:>8.0} turns/s   ({} customers, {} replied, {} duplicates, {} off-script, {} webhooks failed; {:.2} s, webhooks acked in {:.2} s)",
                tp.turns_per_sec,
                tp.turns,
                tp.replied,
                tp.duplicates,
                tp.off_script,
                tp.webhooks_failed,
                tp.elapsed.as_secs_f64(),
                tp.ingest_elapsed.as_secs_f64()
            ),
        );
        t.row(
            "    disk during (a)",
            format!(
                "16 KiB write + fdatasync p50 {}   p99 {}",
                ms(tp.fsync.p50),
                ms(tp.fsync.p99)
            ),
        );
        t.row(
            "    group commit",
            format!(
                "{} commits, {:.1} writes/commit, {:.1} writes/turn; writer thread busy {:.0}%",
                tp.commits,
                ratio(tp.writes as f64, tp.commits as f64),
                ratio(tp.writes as f64, tp.turns as f64),
                100.0 * ratio(tp.writer_busy.as_secs_f64(), tp.elapsed.as_secs_f64())
            ),
        );
        t.row(
            "    vs baseline pairs/s",
            format!("{:.3}", ratio(tp.turns_per_sec, b.pairs_per_sec)),
        );
        t.row(
            "    target >= 1000 turns/s",
            verdict(
                tp.turns_per_sec >= TARGET_TURNS_PER_SEC
                    && tp.replied == tp.turns
                    && tp.duplicates + tp.off_script == 0,
            ),
        );
        t.row(
            format!("(b) latency at {:.0} turns/s", ol.rate),
            format!(
                "p50 {}   p90 {}   p99 {}   max {}   ({} turns, {} replied, {} duplicates, {} off-script, {} webhooks failed; send lag max {})",
                ms(ol.latency.p50),
                ms(ol.latency.p90),
                ms(ol.latency.p99),
                ms(ol.latency.max),
                ol.turns,
                ol.replied,
                ol.duplicates,
                ol.off_script,
                ol.webhooks_failed,
                ms(ol.max_send_lag)
            ),
        );
        let stage = |l: &Latency| {
            format!(
                "p50 {:>2} ms  p99 {:>2} ms",
                l.p50.as_millis(),
                l.p99.as_millis()
            )
        };
        t.row(
            "    disk during (b)",
            format!(
                "16 KiB write + fdatasync p50 {}   p99 {}   (a reply waits for {CRITICAL_COMMITS} durable commits in a row: ingress, filing, turn with the sender's claim)",
                ms(ol.fsync.p50),
                ms(ol.fsync.p99)
            ),
        );
        t.row(
            "    why no fewer commits",
            "ingress must be durable before the 200 (Meta redelivers only what was not acknowledged); filing is the conversations service's commit (debounce, human mode, the turn scheduled durably before the model is called); the turn's commit holds the reply, its metering and the sender's claim (the intent to send must be durable before the request, or a crash could resend blindly)",
        );
        t.row(
            "    where it goes (ms resolution)",
            format!(
                "to filed: {}  |  filed to reply queued: {}  |  queued to Graph: {}",
                stage(&ol.stages.filed),
                stage(&ol.stages.queued),
                stage(&ol.stages.sent)
            ),
        );
        t.row(
            "    added over baseline",
            format!(
                "p50 {}   p99 {}   (same percentile, minus the fakes' bare cost)",
                ms(ol.latency.p50.saturating_sub(b.pair.p50)),
                ms(ol.latency.p99.saturating_sub(b.pair.p99))
            ),
        );
        t.row(
            "    target p99 < 25 ms",
            verdict(
                ol.latency.p99 < TARGET_P99
                    && ol.replied == ol.turns
                    && ol.duplicates + ol.off_script == 0,
            ),
        );
        self.metering.rows(&mut t);
        t
    }
}

pub async fn run(opts: PipelineOptions) -> Result<PipelineReport, BenchError> {
    let concurrency = opts.concurrency.max(1);
    let scratch = ScratchDir::new(opts.work_dir.as_deref(), "pipeline")?;
    let llm = FakeLlm::start(FakeLlmOptions {
        default: Responder::Instant(ANSWER.into()),
        record_bodies: false,
        ..FakeLlmOptions::default()
    })
    .await
    .map_err(|e| BenchError::Setup(format!("fake llm: {e}")))?;

    eprintln!("baseline: direct LLM call + Graph send ...");
    // Precision of the baseline follows the size of the run (tiny runs are smoke tests).
    let baseline = super::baseline::measure(
        &llm,
        concurrency,
        opts.turns.clamp(50, 400),
        (opts.turns * 2).clamp(100, 2_000),
    )
    .await?;

    eprintln!(
        "(a) throughput: {} customers, {concurrency} clients ...",
        opts.turns
    );
    let throughput = throughput(
        &opts.config,
        &llm,
        &scratch.path().join("throughput"),
        opts.turns.max(1),
        concurrency,
    )
    .await?;

    eprintln!(
        "(b) latency: {} turns at {:.0} turns/s ...",
        opts.latency_turns, opts.rate
    );
    let open_loop = open_loop(
        &opts.config,
        &llm,
        &scratch.path().join("latency"),
        opts.latency_turns.max(1),
        opts.rate.max(1.0),
    )
    .await?;

    eprintln!(
        "(c) metering on vs off: {} turns at {:.0} turns/s, alternating between two appliances ...",
        opts.metering_turns, opts.rate
    );
    let metering = super::metering::measure(
        &opts.config,
        &llm,
        &scratch.path().join("metering"),
        opts.metering_turns.max(2),
        opts.rate.max(1.0),
    )
    .await?;
    llm.shutdown().await;
    Ok(PipelineReport {
        concurrency,
        baseline,
        throughput,
        open_loop,
        metering,
    })
}

/// The appliance's configuration for this bench: answers from the fake LLM, sends to the fake
/// Graph API, no debounce, no per-recipient gap, and no per-number rate cap (Meta's 80 msg/s
/// default would otherwise be what is measured).
fn pipeline_config(
    base: &Config,
    dir: &std::path::Path,
    graph: &FakeGraph,
    llm: &FakeLlm,
    metering: bool,
) -> Config {
    let mut config = harness::bench_config(base, dir);
    config.llm = LlmSettings::Openai {
        base_url: llm.base_url(),
        api_key: Secret::new(FAKE_LLM_API_KEY),
        model: "gpt-4o-mini".into(),
        timeout_ms: 10_000,
        max_retries: 0,
    };
    config.graph.base_url = graph.base_url();
    config.graph.timeout_ms = 10_000;
    config.graph.recipient_gap_ms = 0;
    config.graph.rate_per_second = 1_000_000;
    config.graph.reconcile_after_ms = 600_000;
    config.pipeline.debounce_ms = 0;
    config.pipeline.metering = metering;
    config
}

/// A fake Graph API and an appliance sending to it; `metering` false only for phase (c)'s
/// comparison.
pub(super) async fn start_fakes_and_app(
    base: &Config,
    llm: &FakeLlm,
    dir: &std::path::Path,
    metering: bool,
) -> Result<(FakeGraph, BenchApp), BenchError> {
    let graph = FakeGraph::start(FakeGraphOptions::new(harness::ACCESS_TOKEN))
        .await
        .map_err(|e| BenchError::Setup(format!("fake graph: {e}")))?;
    let app = BenchApp::start(pipeline_config(base, dir, &graph, llm, metering)).await?;
    Ok((graph, app))
}

/// A few turns end to end, so connections are open and caches warm before the clock starts.
pub(super) async fn warm_up(
    http: &reqwest::Client,
    app: &BenchApp,
    graph: &FakeGraph,
    first_customer: usize,
) -> Result<(), BenchError> {
    for i in 0..WARM_TURNS {
        let hook = SignedWebhook::text(
            &harness::customer(first_customer + i),
            &format!("wamid.warm.{first_customer}.{i}"),
            QUESTION,
        );
        let status = harness::post_webhook(http, &app.webhook_url, &hook).await?;
        if status != 200 {
            return Err(BenchError::Setup(format!(
                "warm-up webhook answered {status}"
            )));
        }
    }
    let sent = graph.wait_for_sent(WARM_TURNS, WAIT).await;
    if sent.len() < WARM_TURNS {
        return Err(BenchError::Timeout(format!(
            "only {} of {WARM_TURNS} warm-up replies reached the Graph API",
            sent.len()
        )));
    }
    Ok(())
}

/// Bound on waiting for replies after the last webhook; generous, it only guards against a hang.
pub(super) const WAIT: Duration = Duration::from_secs(120);

/// The replies the fake Graph API accepted for the customers of one phase.
pub(super) struct Replies {
    /// When each customer's first reply arrived.
    pub first: HashMap<usize, jiff::Timestamp>,
    /// Replies beyond the first per customer.
    pub duplicates: usize,
    /// Replies other than the model's answer (a holding or handoff notice: the turn failed).
    pub off_script: usize,
}

pub(super) fn replies_to(sent: &[RecordedSend], customers: &HashMap<String, usize>) -> Replies {
    let mut replies = Replies {
        first: HashMap::new(),
        duplicates: 0,
        off_script: 0,
    };
    for s in sent {
        let Some(&i) = customers.get(&s.to) else {
            continue;
        };
        if s.body["text"]["body"].as_str() != Some(ANSWER) {
            replies.off_script += 1;
        }
        match replies.first.entry(i) {
            std::collections::hash_map::Entry::Occupied(_) => replies.duplicates += 1,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(s.received_at);
            }
        }
    }
    replies
}

pub(super) fn since(later: jiff::Timestamp, earlier: jiff::Timestamp) -> Duration {
    Duration::from_secs_f64(later.duration_since(earlier).as_secs_f64().max(0.0))
}

async fn throughput(
    base: &Config,
    llm: &FakeLlm,
    dir: &std::path::Path,
    turns: usize,
    concurrency: usize,
) -> Result<Throughput, BenchError> {
    let (graph, app) = start_fakes_and_app(base, llm, dir, true).await?;
    let http = harness::http_client(concurrency)?;
    let first_customer = 1_000_000;
    warm_up(&http, &app, &graph, first_customer + turns).await?;

    let customers: HashMap<String, usize> = (0..turns)
        .map(|i| (harness::customer(first_customer + i), i))
        .collect();
    let hooks: Arc<Vec<SignedWebhook>> = Arc::new(
        (0..turns)
            .map(|i| {
                SignedWebhook::text(
                    &harness::customer(first_customer + i),
                    &format!("wamid.tp.{i:08}"),
                    QUESTION,
                )
            })
            .collect(),
    );
    let url = Arc::new(app.webhook_url.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let store = app
        .store()
        .ok_or_else(|| BenchError::Setup("app not running".into()))?
        .clone();
    let before = store.stats();
    let disk = harness::DiskSampler::start(dir)?;
    let started_at = jiff::Timestamp::now();
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (http, url, hooks, next) = (http.clone(), url.clone(), hooks.clone(), next.clone());
        clients.spawn(async move {
            let mut failed = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(hook) = hooks.get(i) else { break };
                if !matches!(harness::post_webhook(&http, &url, hook).await, Ok(200)) {
                    failed += 1;
                }
            }
            failed
        });
    }
    let mut webhooks_failed = 0;
    while let Some(done) = clients.join_next().await {
        webhooks_failed += done.map_err(|e| BenchError::Setup(format!("client task: {e}")))?;
    }
    let ingest_elapsed = started.elapsed();
    let sent = graph.wait_for_sent(WARM_TURNS + turns, WAIT).await;
    let after = store.stats();
    let fsync = disk.finish()?;
    drop(store);
    let Replies {
        first,
        duplicates,
        off_script,
    } = replies_to(&sent, &customers);
    let last = first.values().max().copied().unwrap_or(started_at);
    let elapsed = since(last, started_at);
    app.stop().await;
    graph.shutdown().await;
    Ok(Throughput {
        turns,
        replied: first.len(),
        duplicates,
        off_script,
        webhooks_failed,
        elapsed,
        ingest_elapsed,
        turns_per_sec: per_sec(first.len(), elapsed),
        commits: after.commits - before.commits,
        writes: after.jobs - before.jobs,
        writer_busy: Duration::from_micros(
            (after.run_us + after.commit_us) - (before.run_us + before.commit_us),
        ),
        fsync,
    })
}

async fn open_loop(
    base: &Config,
    llm: &FakeLlm,
    dir: &std::path::Path,
    turns: usize,
    rate: f64,
) -> Result<OpenLoop, BenchError> {
    let (graph, app) = start_fakes_and_app(base, llm, dir, true).await?;
    // Enough connections for the requests in flight at this rate with some slack.
    let http = harness::http_client(64)?;
    let first_customer = 2_000_000;
    warm_up(&http, &app, &graph, first_customer + turns).await?;

    let customers: HashMap<String, usize> = (0..turns)
        .map(|i| (harness::customer(first_customer + i), i))
        .collect();
    let hooks: Vec<SignedWebhook> = (0..turns)
        .map(|i| {
            SignedWebhook::text(
                &harness::customer(first_customer + i),
                &format!("wamid.ol.{i:08}"),
                QUESTION,
            )
        })
        .collect();
    let url = Arc::new(app.webhook_url.clone());
    let interval = Duration::from_secs_f64(1.0 / rate);
    let disk = harness::DiskSampler::start(dir)?;
    let start = tokio::time::Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    let mut max_send_lag = Duration::ZERO;
    for (i, hook) in hooks.into_iter().enumerate() {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        max_send_lag = max_send_lag.max(tokio::time::Instant::now().saturating_duration_since(due));
        let (http, url) = (http.clone(), url.clone());
        sends.spawn(async move {
            let posted_at = jiff::Timestamp::now();
            let ok = matches!(harness::post_webhook(&http, &url, &hook).await, Ok(200));
            (i, posted_at, ok)
        });
    }
    let mut posted = vec![None; turns];
    let mut webhooks_failed = 0;
    while let Some(done) = sends.join_next().await {
        let (i, at, ok) = done.map_err(|e| BenchError::Setup(format!("send task: {e}")))?;
        if ok {
            posted[i] = Some(at);
        } else {
            webhooks_failed += 1;
        }
    }
    let sent = graph.wait_for_sent(WARM_TURNS + turns, WAIT).await;
    let fsync = disk.finish()?;
    let Replies {
        first,
        duplicates,
        off_script,
    } = replies_to(&sent, &customers);
    let latencies: Vec<Duration> = first
        .iter()
        .filter_map(|(i, received)| posted[*i].map(|p| since(*received, p)))
        .collect();
    let stages = match app.store() {
        Some(store) => stages(store, &app, &customers, &posted, &first),
        None => Stages::default(),
    };
    app.stop().await;
    graph.shutdown().await;
    Ok(OpenLoop {
        turns,
        rate,
        replied: first.len(),
        duplicates,
        off_script,
        webhooks_failed,
        latency: Latency::of(latencies),
        max_send_lag,
        stages,
        fsync,
    })
}

fn stages(
    store: &crate::storage::Store,
    app: &BenchApp,
    customers: &HashMap<String, usize>,
    posted: &[Option<jiff::Timestamp>],
    replies: &HashMap<usize, jiff::Timestamp>,
) -> Stages {
    let ms_between =
        |later: i64, earlier: i64| Duration::from_millis((later - earlier).max(0) as u64);
    let (mut filed, mut queued, mut sent) = (Vec::new(), Vec::new(), Vec::new());
    for (wa_id, i) in customers {
        let (Some(posted), Some(received)) = (posted[*i], replies.get(i)) else {
            continue;
        };
        let Ok(Some(conversation)) =
            conversations::open_conversation_of(store, app.tenant, app.channel, wa_id)
        else {
            continue;
        };
        let Ok(messages) = conversations::recent_messages(store, app.tenant, conversation.id, 8)
        else {
            continue;
        };
        let inbound = messages.iter().find(|m| m.author == Author::Customer);
        let reply = messages.iter().find(|m| m.author == Author::Assistant);
        if let (Some(inbound), Some(reply)) = (inbound, reply) {
            filed.push(ms_between(inbound.status_at_ms, posted.as_millisecond()));
            queued.push(ms_between(reply.created_at_ms, inbound.status_at_ms));
            sent.push(ms_between(received.as_millisecond(), reply.created_at_ms));
        }
    }
    Stages {
        filed: Latency::of(filed),
        queued: Latency::of(queued),
        sent: Latency::of(sent),
    }
}
