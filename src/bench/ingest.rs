//! `wacrm bench ingest`: signed webhooks over HTTP at full speed into the real appliance, against
//! the ceiling of raw redb commits of the same rows with the same durability.
//!
//! What one accepted webhook message costs the store: its received-marker row (deduplication by
//! wamid) and one event-queue row (the outbox) per consumer of incoming messages, committed
//! durably before the 200. The ceiling writes exactly those key/value bytes, copied out of the
//! appliance's own store after the burst, straight into redb with `Durability::Immediate`, from
//! one thread, in batches of several sizes, and the best batch size is the ceiling. No HTTP, no
//! JSON parsing, no signature check, no group-commit machinery, no pipeline running beside it.
//!
//! "Full speed" is measured, not assumed: each round sends the burst at several connection
//! counts (64, 128 and 256 by default), each into a fresh appliance, and the fastest is the
//! round's figure, as the fastest batch size is the ceiling's. With C connections each waiting
//! for its 200, at most C webhooks can share a commit, and in practice about half do (one half
//! rides the commit in progress while the other half is answered and sends again); more
//! connections buy bigger commits until the HTTP side runs out of CPU. Each count's figures are
//! printed, so the trade against time to 200 is in view.
//!
//! The webhook path is measured twice: with the event consumers held until the burst is
//! answered (what ingress itself sustains, and the figure held against the ceiling), and into a
//! fresh appliance whose pipeline runs beside it, competing for the same two cores and the same
//! writer. Between the two, the held pipeline's catch-up rate is measured too.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, Durability, TableDefinition};

use super::cpu;
use super::harness::{self, BenchApp, ScratchDir, SignedWebhook};
use super::meta_client::{MetaConnection, WireRequest};
use super::stats::{ms, per_sec, ratio, verdict, Latency, Table};
use super::BenchError;
use crate::app::LaunchOptions;
use crate::config::{Config, LlmSettings};
use crate::events::{Consumer, EVENT_QUEUE};
use crate::storage::collections as tags;
use crate::storage::{Store, TenantId, GLOBAL_TABLE, TENANT_TABLE};
use crate::testkit::fake_graph::{FakeGraph, FakeGraphOptions};
use crate::whatsapp::ingress::RECEIVED;
use crate::whatsapp::routes::WEBHOOK_PATH;

/// The ratio the appliance should reach against the ceiling.
pub const TARGET_RATIO: f64 = 0.50;

/// Longest one ceiling batch size may run; small batches are fsync-bound and would otherwise take
/// minutes, so they are measured on a prefix of the records.
const CEILING_BUDGET: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub messages: usize,
    /// Connection counts tried in each round, each into a fresh appliance; the fastest is the
    /// round's webhook figure (full speed), as the best batch size is the ceiling's.
    pub concurrency: Vec<usize>,
    /// Rounds of burst-then-ceiling; the median round (by ratio) is reported.
    pub rounds: usize,
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

/// One burst of webhooks against one appliance.
#[derive(Debug, Clone)]
pub struct Burst {
    /// Keep-alive connections, each with one webhook in flight.
    pub concurrency: usize,
    /// Webhooks answered 200.
    pub accepted: usize,
    /// Webhooks answered anything else, or not at all.
    pub failed: usize,
    pub elapsed: Duration,
    pub msgs_per_sec: f64,
    /// Time from writing the request to having read the 200.
    pub latency: Latency,
    /// Durable commits of the store during the burst, and the writes they held.
    pub commits: u64,
    pub writes: u64,
    /// Writer thread time in the burst: running jobs, and committing (page writes + fsync).
    pub writer_run: Duration,
    pub writer_commit: Duration,
    /// CPU time of the whole process in the burst (appliance and load generator, every
    /// thread). Per message, it moves far less between runs than the throughput does.
    pub cpu: Duration,
    /// The same by thread name, largest first.
    pub cpu_by_thread: Vec<(String, Duration)>,
}

/// The held pipeline catching up on what the burst queued.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    pub messages: usize,
    pub elapsed: Duration,
    pub msgs_per_sec: f64,
    /// False when the backlog was not empty within the time allowed.
    pub finished: bool,
}

#[derive(Debug, Clone)]
pub struct IngestReport {
    pub messages: usize,
    /// The webhook path on its own at each connection count tried, in the order run (median
    /// round): the event consumers held until the burst is answered, as they are when a burst
    /// arrives faster than the pipeline handles it.
    pub levels: Vec<Burst>,
    /// Index in `levels` of the fastest burst, the figure held against the ceiling.
    pub fastest: usize,
    /// The consumers released after the last round's fastest burst, filing what it queued.
    pub drain: Drain,
    /// The same burst into a fresh appliance whose pipeline runs beside it from the start.
    pub beside_pipeline: Burst,
    /// Events not yet handled by the conversations consumer when the last webhook of
    /// `beside_pipeline` was answered.
    pub backlog_at_end: usize,
    pub ceilings: Vec<Ceiling>,
    /// `fdatasync` of a small write on the same disk, sampled through the median round (its
    /// bursts and its ceiling alike).
    pub fsync: Latency,
    /// Each round's figures, in the order run. `levels`, `ceilings` and `fsync` are those of
    /// the median round by ratio.
    pub rounds: Vec<RoundFigures>,
}

/// What one round measured, in msgs/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundFigures {
    /// The fastest burst of the round, and its connection count.
    pub ingest: f64,
    pub concurrency: usize,
    /// The best ceiling of the round.
    pub ceiling: f64,
}

impl RoundFigures {
    pub fn ratio(&self) -> f64 {
        ratio(self.ingest, self.ceiling)
    }
}

/// One burst per connection count, each into a fresh held appliance, and the ceiling of the
/// rows the fastest one wrote, measured right after the bursts.
struct Round {
    levels: Vec<Burst>,
    /// Index in `levels` of the fastest burst.
    fastest: usize,
    ceilings: Vec<Ceiling>,
    fsync: Latency,
}

/// The fastest of `ceilings`.
fn best_of(ceilings: &[Ceiling]) -> Option<Ceiling> {
    ceilings
        .iter()
        .copied()
        .max_by(|a, b| a.msgs_per_sec.total_cmp(&b.msgs_per_sec))
}

impl Round {
    fn fastest(&self) -> &Burst {
        &self.levels[self.fastest]
    }

    fn figures(&self) -> RoundFigures {
        RoundFigures {
            ingest: self.fastest().msgs_per_sec,
            concurrency: self.fastest().concurrency,
            ceiling: best_of(&self.ceilings).map_or(0.0, |c| c.msgs_per_sec),
        }
    }
}

impl IngestReport {
    /// The fastest burst of the median round (see `levels`).
    pub fn alone(&self) -> &Burst {
        &self.levels[self.fastest]
    }

    pub fn best_ceiling(&self) -> Option<Ceiling> {
        best_of(&self.ceilings)
    }

    /// The ceiling at the largest batch a group commit can hold here: with C clients waiting for
    /// their answers, at most C webhooks can share one commit.
    pub fn reachable_ceiling(&self) -> Option<Ceiling> {
        self.ceilings
            .iter()
            .copied()
            .filter(|c| c.batch <= self.alone().concurrency)
            .max_by(|a, b| a.msgs_per_sec.total_cmp(&b.msgs_per_sec))
    }

    /// The webhook path against the best ceiling: the figure the target is about.
    pub fn ratio(&self) -> f64 {
        ratio(
            self.alone().msgs_per_sec,
            self.best_ceiling().map(|c| c.msgs_per_sec).unwrap_or(0.0),
        )
    }

    pub fn table(&self) -> Table {
        let tried: Vec<String> = self
            .levels
            .iter()
            .map(|b| b.concurrency.to_string())
            .collect();
        let mut t = Table::new(format!(
            "wacrm bench ingest: {} signed text webhooks over {} keep-alive connections, {} CPUs",
            self.messages,
            tried.join(" / "),
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        ));
        for b in &self.levels {
            t.row(
                format!("ingest, {:>4} connections", b.concurrency),
                format!(
                    "{:>10.0} msgs/s   p50 {}   p99 {}   {:.1} writes/commit   {:.1} µs CPU/msg",
                    b.msgs_per_sec,
                    ms(b.latency.p50),
                    ms(b.latency.p99),
                    ratio(b.writes as f64, b.commits as f64),
                    cpu_per_message_us(b),
                ),
            );
        }
        burst_rows(
            &mut t,
            &format!(
                "ingest (HTTP -> 200), fastest: {} connections",
                self.alone().concurrency
            ),
            self.alone(),
        );
        t.row(
            "  then the pipeline files them",
            format!(
                "{:>10.0} msgs/s   ({} queued messages in {:.2} s{})",
                self.drain.msgs_per_sec,
                self.drain.messages,
                self.drain.elapsed.as_secs_f64(),
                if self.drain.finished {
                    ""
                } else {
                    "; NOT finished in time"
                }
            ),
        );
        burst_rows(&mut t, "ingest beside the pipeline", &self.beside_pipeline);
        t.row(
            "  backlog at end",
            format!(
                "{} messages not yet filed when the last 200 was sent",
                self.backlog_at_end
            ),
        );
        t.row(
            "disk: 16 KiB write + fdatasync",
            format!(
                "p50 {}   p99 {}   (sampled through the round; every commit pays at least this)",
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
            t.row(
                "  beside the pipeline",
                format!(
                    "{:.3}",
                    ratio(self.beside_pipeline.msgs_per_sec, best.msgs_per_sec)
                ),
            );
        }
        if self.rounds.len() > 1 {
            let each: Vec<String> = self
                .rounds
                .iter()
                .map(|r| {
                    format!(
                        "{:.3} ({:.1}k@{}/{:.1}k)",
                        r.ratio(),
                        r.ingest / 1000.0,
                        r.concurrency,
                        r.ceiling / 1000.0
                    )
                })
                .collect();
            t.row(
                "  rounds (ingest@conns/ceiling)",
                format!(
                    "{}   (each in fresh appliances; the median is shown)",
                    each.join("  ")
                ),
            );
        }
        if let Some(reach) = self.reachable_ceiling() {
            t.row(
                format!(
                    "ratio ingest / ceiling at batch <= {}",
                    self.alone().concurrency
                ),
                format!(
                    "{:.3}   (at most {} webhooks are in flight, so no commit can hold more)",
                    ratio(self.alone().msgs_per_sec, reach.msgs_per_sec),
                    self.alone().concurrency
                ),
            );
        }
        t
    }
}

fn burst_rows(t: &mut Table, label: &str, b: &Burst) {
    t.row(
        label,
        format!(
            "{:>10.0} msgs/s   ({} accepted, {} failed, {:.2} s)",
            b.msgs_per_sec,
            b.accepted,
            b.failed,
            b.elapsed.as_secs_f64()
        ),
    );
    t.row(
        "  time to 200",
        format!(
            "p50 {}   p90 {}   p99 {}   max {}",
            ms(b.latency.p50),
            ms(b.latency.p90),
            ms(b.latency.p99),
            ms(b.latency.max)
        ),
    );
    t.row(
        "  group commit",
        format!(
            "{} commits, {:.1} writes/commit (pipeline writes included)",
            b.commits,
            ratio(b.writes as f64, b.commits as f64),
        ),
    );
    let busy = |d: Duration| 100.0 * ratio(d.as_secs_f64(), b.elapsed.as_secs_f64());
    t.row(
        "  writer thread",
        format!(
            "running jobs {:.0}% of the burst, committing {:.0}% (page writes + fsync)",
            busy(b.writer_run),
            busy(b.writer_commit)
        ),
    );
    t.row(
        "  CPU",
        format!(
            "{:.1} µs per message, all threads (the appliance and the load generator), {:.0}% of the cores",
            cpu_per_message_us(b),
            100.0
                * ratio(b.cpu.as_secs_f64(), b.elapsed.as_secs_f64())
                / std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
        ),
    );
    t.row("  CPU by thread (µs/msg)", cpu_by_thread(b));
}

fn cpu_by_thread(b: &Burst) -> String {
    let messages = (b.accepted + b.failed).max(1) as f64;
    b.cpu_by_thread
        .iter()
        .map(|(name, used)| format!("{name} {:.1}", used.as_secs_f64() * 1e6 / messages))
        .collect::<Vec<_>>()
        .join(", ")
}

fn cpu_per_message_us(b: &Burst) -> f64 {
    ratio(b.cpu.as_secs_f64() * 1e6, (b.accepted + b.failed) as f64)
}

/// One message's rows, as ingress wrote them: (key, value) in the tenant and global tables.
struct MessageRows {
    tenant: Vec<(Vec<u8>, Vec<u8>)>,
    global: Vec<(Vec<u8>, Vec<u8>)>,
}

/// How long the held pipeline may take to file a burst before the bench gives up waiting.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);

/// Customers writing in: the pipeline's lanes when it files the burst.
const CUSTOMERS: usize = 64;

/// Connection counts tried when none are given: from what a single busy number sees up to a
/// whole group's numbers at once. More connections let one commit hold more webhooks, until
/// the HTTP side runs out of CPU.
pub const DEFAULT_CONCURRENCY: [usize; 3] = [64, 128, 256];

pub async fn run(opts: IngestOptions) -> Result<IngestReport, BenchError> {
    let messages = opts.messages.max(1);
    let mut levels: Vec<usize> = opts.concurrency.iter().map(|c| (*c).max(1)).collect();
    levels.sort_unstable();
    levels.dedup();
    if levels.is_empty() {
        levels = DEFAULT_CONCURRENCY.to_vec();
    }
    let scratch = ScratchDir::new(opts.work_dir.as_deref(), "ingest")?;

    // The offline assistant hands each new customer to a human and sends a notice: the sender
    // needs somewhere to send it.
    let graph = FakeGraph::start(FakeGraphOptions::new(harness::ACCESS_TOKEN))
        .await
        .map_err(|e| BenchError::Setup(format!("fake graph: {e}")))?;
    let config_in = |dir: &str| {
        let mut config = harness::bench_config(&opts.config, &scratch.path().join(dir));
        config.llm = LlmSettings::Offline;
        config.graph.base_url = graph.base_url();
        config
    };

    // Built and signed before the clock starts: signing is Meta's work, not ours.
    let hooks: Vec<SignedWebhook> = (0..messages)
        .map(|i| {
            SignedWebhook::text(
                &harness::customer(i % CUSTOMERS),
                &format!("wamid.bench.{i:08}"),
                &format!("Halo, apakah buka hari Minggu? ({i})"),
            )
        })
        .collect();

    // Each round: one burst per connection count, each into a fresh appliance with its pipeline
    // held, then the ceiling of the rows the fastest one wrote, measured right after so both meet
    // the disk in the same state. The last round's fastest appliance stays up to measure the
    // drain.
    let rounds_wanted = opts.rounds.max(1);
    let mut rounds = Vec::with_capacity(rounds_wanted);
    let mut held = None;
    for round in 0..rounds_wanted {
        let keep = round + 1 == rounds_wanted;
        let (measured, app) =
            measure_round(&config_in, &hooks, &levels, scratch.path(), round, keep).await?;
        rounds.push(measured);
        held = app;
    }
    let held = held.ok_or_else(|| BenchError::Setup("no round ran".into()))?;
    let queued = rounds
        .last()
        .map_or(0, |r| r.fastest().accepted + r.fastest().concurrency);
    let drain = drain(&held, queued).await;
    held.stop().await;
    let drain = drain?;
    let round_figures: Vec<RoundFigures> = rounds.iter().map(Round::figures).collect();
    let mut by_ratio: Vec<usize> = (0..rounds.len()).collect();
    by_ratio.sort_by(|a, b| {
        round_figures[*a]
            .ratio()
            .total_cmp(&round_figures[*b].ratio())
    });
    let median = rounds.swap_remove(by_ratio[(by_ratio.len() - 1) / 2]);

    let live = BenchApp::start(config_in("live")).await?;
    settle_disk().await;
    let beside_pipeline = burst(&live, &hooks, median.fastest().concurrency).await;
    let backlog_at_end = match live.store() {
        Some(store) => crate::events::queue_depth(store, Consumer::Conversations)
            .map_err(|e| BenchError::Storage(e.to_string()))?,
        None => 0,
    };
    live.stop().await;
    graph.shutdown().await;
    let beside_pipeline = beside_pipeline?;

    Ok(IngestReport {
        messages,
        levels: median.levels,
        fastest: median.fastest,
        drain,
        beside_pipeline,
        backlog_at_end,
        ceilings: median.ceilings,
        fsync: median.fsync,
        rounds: round_figures,
    })
}

/// One round: a burst at each connection count into its own fresh held appliance, then the
/// ceiling of the fastest one's rows. Returns the fastest appliance still running when `keep`.
async fn measure_round(
    config_in: &dyn Fn(&str) -> Config,
    hooks: &[SignedWebhook],
    levels: &[usize],
    scratch: &std::path::Path,
    round: usize,
    keep: bool,
) -> Result<(Round, Option<BenchApp>), BenchError> {
    // The probe runs through the bursts and the ceiling alike, so its own fsyncs weigh on both.
    let disk = harness::DiskSampler::start(scratch)?;
    let mut bursts: Vec<Burst> = Vec::with_capacity(levels.len());
    let mut fastest: Option<(usize, BenchApp)> = None;
    for &concurrency in levels {
        let app = BenchApp::start_with(
            config_in(&format!("held-{round}-{concurrency}")),
            LaunchOptions {
                hold_pipeline: true,
            },
        )
        .await?;
        settle_disk().await;
        let measured = burst(&app, hooks, concurrency).await;
        let measured = match measured {
            Ok(b) => b,
            Err(e) => {
                app.stop().await;
                if let Some((_, best)) = fastest {
                    best.stop().await;
                }
                return Err(e);
            }
        };
        let faster = fastest
            .as_ref()
            .is_none_or(|(i, _)| measured.msgs_per_sec > bursts[*i].msgs_per_sec);
        bursts.push(measured);
        if faster {
            if let Some((_, slower)) = fastest.replace((bursts.len() - 1, app)) {
                slower.stop().await;
            }
        } else {
            app.stop().await;
        }
    }
    let (index, app) = fastest.ok_or_else(|| BenchError::Setup("no burst ran".into()))?;
    let rows = match app.store() {
        Some(store) => ingress_rows(store, app.tenant),
        None => Err(BenchError::Setup("app not running".into())),
    };
    let app = if keep {
        Some(app)
    } else {
        app.stop().await;
        None
    };
    let ceilings = ceilings(
        &scratch.join(format!("ceiling-{round}")),
        Arc::new(rows?),
        bursts[index].concurrency,
    )
    .await;
    let fsync = disk.finish()?;
    Ok((
        Round {
            levels: bursts,
            fastest: index,
            ceilings: ceilings?,
            fsync,
        },
        app,
    ))
}

/// Writes the ingress rows at each batch size (1, one commit per connection, 256, all at once).
async fn ceilings(
    scratch: &std::path::Path,
    rows: Arc<Vec<MessageRows>>,
    concurrency: usize,
) -> Result<Vec<Ceiling>, BenchError> {
    let mut batches: Vec<usize> = [1, concurrency, 256, rows.len()]
        .into_iter()
        .map(|b| b.min(rows.len()))
        .collect();
    batches.sort_unstable();
    batches.dedup();
    std::fs::create_dir_all(scratch)
        .map_err(|e| BenchError::Setup(format!("{}: {e}", scratch.display())))?;
    let mut ceilings = Vec::new();
    for batch in batches {
        let path = scratch.join(format!("batch-{batch}.redb"));
        let rows = rows.clone();
        settle_disk().await;
        let ceiling = tokio::task::spawn_blocking(move || ceiling(&path, &rows, batch))
            .await
            .map_err(|e| BenchError::Setup(format!("ceiling task: {e}")))??;
        ceilings.push(ceiling);
    }
    Ok(ceilings)
}

/// Flushes every dirty page on the machine (`sync`) before a measurement, so that it does not
/// pay for writeback left behind by whatever ran before it (a build, the previous phase).
async fn settle_disk() {
    let _ = tokio::task::spawn_blocking(rustix::fs::sync).await;
}

/// Posts every hook to `app` over `concurrency` keep-alive connections, each waiting for its
/// answer before sending the next (as Meta's delivery does), after one warm-up webhook per
/// connection.
async fn burst(
    app: &BenchApp,
    hooks: &[SignedWebhook],
    concurrency: usize,
) -> Result<Burst, BenchError> {
    let addr = app
        .addr()
        .ok_or_else(|| BenchError::Setup("app not running".into()))?;
    let store = app
        .store()
        .ok_or_else(|| BenchError::Setup("app not running".into()))?
        .clone();
    let host = addr.to_string();
    let requests: Arc<Vec<WireRequest>> = Arc::new(
        hooks
            .iter()
            .map(|hook| WireRequest::webhook(&host, WEBHOOK_PATH, hook))
            .collect(),
    );
    let load = LoadGenerator::connect(addr, host, requests, concurrency).await?;
    let before = store.stats();
    let cpu_before = cpu::process();
    let threads_before = cpu::ByThread::now();
    let LoadResult {
        latencies,
        mut failed,
        elapsed,
        cpu: load_cpu,
    } = load.run().await?;
    let after = store.stats();
    let cpu = cpu::process().saturating_sub(cpu_before);
    let mut cpu_by_thread = cpu::ByThread::now().since(&threads_before);
    cpu_by_thread.push(("bench-load".to_string(), load_cpu));
    cpu_by_thread.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
    // Messages a broken connection never sent are failures too.
    failed += hooks.len().saturating_sub(latencies.len() + failed);
    let accepted = latencies.len();
    Ok(Burst {
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
        cpu,
        cpu_by_thread,
    })
}

/// The load generator: Meta's side of the burst, on a thread and a single-threaded runtime of
/// its own. On the appliance's runtime it would take turns with the webhook handlers on the one
/// worker thread (see `main::runtime_workers`), so the server's worker would also be the
/// client's, and the machine's second core would sit idle whenever the writer waits on the disk.
/// Meta's delivery runs on machines of its own; the closest this machine can get is a thread the
/// kernel schedules beside the appliance's.
struct LoadGenerator {
    go: tokio::sync::oneshot::Sender<()>,
    done: tokio::sync::oneshot::Receiver<Result<LoadResult, BenchError>>,
    thread: std::thread::JoinHandle<()>,
}

/// What the load generator measured of a burst.
struct LoadResult {
    /// Time to 200 of each webhook answered 200.
    latencies: Vec<Duration>,
    failed: usize,
    elapsed: Duration,
    /// CPU time of the load generator's thread in the burst (it has ended by the time the
    /// appliance's threads are read).
    cpu: Duration,
}

impl LoadGenerator {
    /// Opens `concurrency` keep-alive connections and warms each with one webhook; returns once
    /// they are ready, with nothing else sent yet.
    async fn connect(
        addr: std::net::SocketAddr,
        host: String,
        requests: Arc<Vec<WireRequest>>,
        concurrency: usize,
    ) -> Result<Self, BenchError> {
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let (go, go_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("bench-load".into())
            .spawn(move || {
                let result = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(Self::post_all(
                        addr,
                        host,
                        requests,
                        concurrency,
                        ready_tx,
                        go_rx,
                    )),
                    Err(e) => Err(BenchError::Setup(format!("load generator runtime: {e}"))),
                };
                let _ = done_tx.send(result);
            })
            .map_err(|e| BenchError::Setup(format!("load generator thread: {e}")))?;
        let mut load = Self { go, done, thread };
        if ready.await.is_err() {
            // It stopped before its connections were ready: its result says why.
            let failed = (&mut load.done).await;
            let _ = load.thread.join();
            return Err(match failed {
                Ok(Err(e)) => e,
                _ => BenchError::Setup("load generator stopped while connecting".into()),
            });
        }
        Ok(load)
    }

    /// Starts the burst and waits for its last answer.
    async fn run(self) -> Result<LoadResult, BenchError> {
        let _ = self.go.send(());
        let result = self
            .done
            .await
            .map_err(|_| BenchError::Setup("load generator stopped without a result".into()));
        let _ = self.thread.join();
        result?
    }

    async fn post_all(
        addr: std::net::SocketAddr,
        host: String,
        requests: Arc<Vec<WireRequest>>,
        concurrency: usize,
        ready: tokio::sync::oneshot::Sender<()>,
        go: tokio::sync::oneshot::Receiver<()>,
    ) -> Result<LoadResult, BenchError> {
        let mut connections = Vec::with_capacity(concurrency);
        for i in 0..concurrency {
            let mut conn = MetaConnection::connect(addr).await?;
            let warm = SignedWebhook::text(
                &harness::customer(i),
                &format!("wamid.warmup.{i:08}"),
                "halo",
            );
            let status = conn
                .post(&WireRequest::webhook(&host, WEBHOOK_PATH, &warm))
                .await?;
            if status != 200 {
                return Err(BenchError::Setup(format!(
                    "warm-up webhook answered {status}"
                )));
            }
            connections.push(conn);
        }
        let _ = ready.send(());
        go.await
            .map_err(|_| BenchError::Setup("burst abandoned before it started".into()))?;
        let next = Arc::new(AtomicUsize::new(0));
        let cpu_before = cpu::this_thread();
        let started = Instant::now();
        let mut clients = tokio::task::JoinSet::new();
        for mut conn in connections {
            let (requests, next) = (requests.clone(), next.clone());
            clients.spawn(async move {
                let mut latencies = Vec::with_capacity(requests.len() / concurrency + 1);
                let mut failed = 0usize;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(request) = requests.get(i) else {
                        break;
                    };
                    let sent = Instant::now();
                    match conn.post(request).await {
                        Ok(200) => latencies.push(sent.elapsed()),
                        Ok(_) => failed += 1,
                        // The connection is unusable: count what it would have sent as failed.
                        Err(_) => {
                            failed += 1;
                            break;
                        }
                    }
                }
                (latencies, failed)
            });
        }
        let mut latencies = Vec::with_capacity(requests.len());
        let mut failed = 0;
        while let Some(done) = clients.join_next().await {
            let (l, f) = done.map_err(|e| BenchError::Setup(format!("client task: {e}")))?;
            latencies.extend(l);
            failed += f;
        }
        Ok(LoadResult {
            latencies,
            failed,
            elapsed: started.elapsed(),
            cpu: cpu::this_thread().saturating_sub(cpu_before),
        })
    }
}

/// Releases `app`'s held pipeline and waits until the conversations consumer has filed every
/// queued message.
async fn drain(app: &BenchApp, messages: usize) -> Result<Drain, BenchError> {
    let store = app
        .store()
        .ok_or_else(|| BenchError::Setup("app not running".into()))?
        .clone();
    let started = Instant::now();
    app.release_pipeline();
    let finished = loop {
        let empty = store
            .read(|r| {
                Ok(r.operator()
                    .scan(&EVENT_QUEUE, &[Consumer::Conversations.tag()], false, 1)?
                    .is_empty())
            })
            .map_err(|e| BenchError::Storage(e.to_string()))?;
        if empty {
            break true;
        }
        if started.elapsed() > DRAIN_LIMIT {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let elapsed = started.elapsed();
    Ok(Drain {
        messages,
        elapsed,
        msgs_per_sec: per_sec(messages, elapsed),
        finished,
    })
}

/// The rows ingress wrote for the burst, copied byte for byte out of the held appliance's store
/// (its pipeline has not touched them yet): each message's received marker (deduplication by
/// wamid) in the tenant table, and its events in the global queue, one per subscribed consumer.
/// Taking them from the store rather than rebuilding them keeps the ceiling honest when ingress
/// changes what it writes.
fn ingress_rows(store: &Store, tenant: TenantId) -> Result<Vec<MessageRows>, BenchError> {
    let io = |e: redb::Error| BenchError::Storage(e.to_string());
    let snapshot = store
        .begin_snapshot()
        .map_err(|e| BenchError::Storage(e.to_string()))?;
    let copy = |table: TableDefinition<&[u8], &[u8]>, prefix: Vec<u8>| {
        let table = snapshot.open_table(table).map_err(|e| io(e.into()))?;
        let mut rows = Vec::new();
        for row in table
            .range::<&[u8]>(prefix.as_slice()..)
            .map_err(|e| io(e.into()))?
        {
            let (k, v) = row.map_err(|e| io(e.into()))?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            rows.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok::<_, BenchError>(rows)
    };
    let mut received_prefix = tenant.as_bytes().to_vec();
    received_prefix.push(RECEIVED.tag());
    let received = copy(TENANT_TABLE, received_prefix)?;
    let events = copy(GLOBAL_TABLE, vec![tags::EVENT_QUEUE])?;
    if received.is_empty() {
        return Err(BenchError::Setup("ingress stored nothing".into()));
    }
    // Every message published the same events, so they are dealt out evenly.
    let per_message = events.len().div_ceil(received.len());
    let mut events = events.into_iter();
    Ok(received
        .into_iter()
        .map(|marker| MessageRows {
            tenant: vec![marker],
            global: events.by_ref().take(per_message).collect(),
        })
        .collect())
}

/// Writes `rows` into a fresh database, `batch` messages per durable commit, from one thread.
fn ceiling(
    path: &std::path::Path,
    rows: &[MessageRows],
    batch: usize,
) -> Result<Ceiling, BenchError> {
    let io = |e: redb::Error| BenchError::Storage(e.to_string());
    let db = Database::create(path).map_err(|e| io(e.into()))?;
    {
        let txn = db.begin_write().map_err(|e| io(e.into()))?;
        txn.open_table(TENANT_TABLE).map_err(|e| io(e.into()))?;
        txn.open_table(GLOBAL_TABLE).map_err(|e| io(e.into()))?;
        txn.commit().map_err(|e| io(e.into()))?;
    }
    let started = Instant::now();
    let mut written = 0;
    for chunk in rows.chunks(batch.max(1)) {
        let mut txn = db.begin_write().map_err(|e| io(e.into()))?;
        txn.set_durability(Durability::Immediate);
        {
            let mut tenant = txn.open_table(TENANT_TABLE).map_err(|e| io(e.into()))?;
            let mut global = txn.open_table(GLOBAL_TABLE).map_err(|e| io(e.into()))?;
            for message in chunk {
                for (k, v) in &message.tenant {
                    tenant
                        .insert(k.as_slice(), v.as_slice())
                        .map_err(|e| io(e.into()))?;
                }
                for (k, v) in &message.global {
                    global
                        .insert(k.as_slice(), v.as_slice())
                        .map_err(|e| io(e.into()))?;
                }
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
