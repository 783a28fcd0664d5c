//! Phase (c) of `wacrm bench pipeline`: what metering and the quota check add to a turn.
//!
//! Two appliances, identical but for metering, run side by side. The offered load alternates
//! between them in blocks of about a second (off, on, off, on, ...) at the latency phase's rate,
//! so both see the same load, the same disk and the same moments of the run; each turn's latency
//! (webhook POST to the reply's receipt) is compared at p50 and p99. End to end, a p99 moves with
//! the disk's fsync jitter far more than with metering, so the comparison prints its own noise
//! floor (the metering-off blocks split in two and compared with each other) and the two pieces
//! metering adds are also timed alone on the metered appliance: the quota pre-check (a read
//! before the model is called) and `meter_reply` inside a write transaction (the CPU it adds to
//! the turn's commit, before that commit's fsync). The target is judged by those pieces.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::harness::{self, BenchApp, SignedWebhook};
use super::pipeline::{
    replies_to, since, start_fakes_and_app, warm_up, Replies, QUESTION, WAIT, WARM_TURNS,
};
use super::stats::{ms, ratio, verdict, Latency, Table};
use super::BenchError;
use crate::config::Config;
use crate::storage::{Store, TenantId};
use crate::testkit::fake_llm::FakeLlm;

/// Issue 4: the quota check adds under 1 ms p99 to an assistant turn.
pub const TARGET_ADDED_P99: Duration = Duration::from_millis(1);
/// Most samples of each metering piece timed alone.
const PIECE_SAMPLES: usize = 300;
/// First customer number of this phase (distinct from the other phases' customers).
const FIRST_CUSTOMER: usize = 4_000_000;

/// One side of the comparison.
#[derive(Debug, Clone, Default)]
pub struct Arm {
    pub turns: usize,
    pub replied: usize,
    pub duplicates: usize,
    pub off_script: usize,
    pub webhooks_failed: usize,
    /// Webhook POST start to reply receipt.
    pub latency: Latency,
}

impl Arm {
    fn complete(&self) -> bool {
        self.replied == self.turns && self.duplicates + self.off_script + self.webhooks_failed == 0
    }
}

#[derive(Debug, Clone, Default)]
pub struct MeteringCost {
    pub rate: f64,
    /// Turns per block; blocks alternate off, on, off, on, ...
    pub block: usize,
    pub off: Arm,
    pub on: Arm,
    /// Metering-off turns of blocks 0, 4, 8, ... and of blocks 2, 6, 10, ...: what the comparison
    /// shows when nothing differs. None with fewer than four blocks.
    pub noise: Option<(Latency, Latency)>,
    /// The quota pre-check a metered turn makes before calling the model.
    pub precheck: Latency,
    /// `meter_reply` inside a write transaction: what metering adds to the turn's commit.
    pub meter_in_txn: Latency,
}

fn signed(a: Duration, b: Duration) -> String {
    format!("{:+.2} ms", (a.as_secs_f64() - b.as_secs_f64()) * 1e3)
}

impl MeteringCost {
    /// What metering adds to a turn at p99, measured directly: both pieces run on the turn's
    /// path one after the other (the pre-check before the model call, `meter_reply` in the
    /// commit's critical section), so their p99s add up to a bound on what they add.
    pub fn added_p99(&self) -> Duration {
        self.precheck.p99 + self.meter_in_txn.p99
    }

    pub fn rows(&self, t: &mut Table) {
        let arm = |a: &Arm| {
            format!(
                "p50 {}   p90 {}   p99 {}   max {}   ({} turns, {} replied, {} duplicates, {} off-script, {} webhooks failed)",
                ms(a.latency.p50),
                ms(a.latency.p90),
                ms(a.latency.p99),
                ms(a.latency.max),
                a.turns,
                a.replied,
                a.duplicates,
                a.off_script,
                a.webhooks_failed
            )
        };
        let (off, on) = (&self.off.latency, &self.on.latency);
        t.row(
            format!("(c) metering on vs off at {:.0} turns/s", self.rate),
            format!(
                "the same load alternating between two appliances in blocks of {} turns, same run",
                self.block
            ),
        );
        t.row("    metering off", arm(&self.off));
        t.row("    metering on", arm(&self.on));
        t.row(
            "    on - off, per turn",
            format!(
                "p50 {} (ratio {:.3})   p99 {} (ratio {:.3})",
                signed(on.p50, off.p50),
                ratio(on.p50.as_secs_f64(), off.p50.as_secs_f64()),
                signed(on.p99, off.p99),
                ratio(on.p99.as_secs_f64(), off.p99.as_secs_f64())
            ),
        );
        t.row(
            "    noise floor: off - off",
            match &self.noise {
                Some((a, b)) => format!(
                    "p50 {}   p99 {}   (metering-off blocks 0, 4, 8, ... against 2, 6, 10, ...)",
                    signed(a.p50, b.p50),
                    signed(a.p99, b.p99)
                ),
                None => "n/a (fewer than four blocks)".into(),
            },
        );
        t.row(
            "    metering's pieces alone",
            format!(
                "quota pre-check p50 {} p99 {};  meter_reply in the commit's transaction p50 {} p99 {}  ({} samples each)",
                ms(self.precheck.p50),
                ms(self.precheck.p99),
                ms(self.meter_in_txn.p50),
                ms(self.meter_in_txn.p99),
                self.precheck.samples
            ),
        );
        t.row(
            "    added to a turn at p99",
            format!(
                "{} (pre-check p99 + in-commit metering p99)",
                ms(self.added_p99())
            ),
        );
        let gap = |a: Duration, b: Duration| (a.as_secs_f64() - b.as_secs_f64()).abs();
        let end_to_end = match &self.noise {
            Some((a, b)) if gap(on.p99, off.p99) <= gap(a.p99, b.p99) => {
                "end to end, the p99 difference is within the noise floor"
            }
            Some(_) => "end to end, the p99 difference exceeds the noise floor",
            None => "no noise floor for the end-to-end difference",
        };
        t.row(
            "    target < 1 ms p99",
            format!(
                "{}   (judged by the pieces; {end_to_end})",
                verdict(
                    self.added_p99() < TARGET_ADDED_P99
                        && self.off.complete()
                        && self.on.complete()
                )
            ),
        );
    }
}

pub async fn measure(
    base: &Config,
    llm: &FakeLlm,
    dir: &Path,
    turns: usize,
    rate: f64,
) -> Result<MeteringCost, BenchError> {
    let (graph_off, app_off) = start_fakes_and_app(base, llm, &dir.join("off"), false).await?;
    let (graph_on, app_on) = start_fakes_and_app(base, llm, &dir.join("on"), true).await?;
    let http = harness::http_client(64)?;
    warm_up(&http, &app_off, &graph_off, FIRST_CUSTOMER + turns).await?;
    warm_up(
        &http,
        &app_on,
        &graph_on,
        FIRST_CUSTOMER + turns + WARM_TURNS,
    )
    .await?;

    // About a second of load per block, and at least four blocks (for the noise floor).
    let block = (rate as usize).min(turns / 4).max(1);
    let side = |i: usize| (i / block) % 2;
    let urls = [
        Arc::new(app_off.webhook_url.clone()),
        Arc::new(app_on.webhook_url.clone()),
    ];
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..turns {
        let hook = SignedWebhook::text(
            &harness::customer(FIRST_CUSTOMER + i),
            &format!("wamid.mt.{i:08}"),
            QUESTION,
        );
        tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
        let (http, url) = (http.clone(), urls[side(i)].clone());
        sends.spawn(async move {
            let posted_at = jiff::Timestamp::now();
            let ok = matches!(harness::post_webhook(&http, &url, &hook).await, Ok(200));
            (i, posted_at, ok)
        });
    }
    let mut posted = vec![None; turns];
    let mut failed = [0usize; 2];
    while let Some(done) = sends.join_next().await {
        let (i, at, ok) = done.map_err(|e| BenchError::Setup(format!("send task: {e}")))?;
        if ok {
            posted[i] = Some(at);
        } else {
            failed[side(i)] += 1;
        }
    }

    let mut arms = Vec::new();
    let mut off_latency_by_block = Vec::new();
    for (s, graph) in [(0, &graph_off), (1, &graph_on)] {
        let customers: HashMap<String, usize> = (0..turns)
            .filter(|i| side(*i) == s)
            .map(|i| (harness::customer(FIRST_CUSTOMER + i), i))
            .collect();
        let sent = graph
            .wait_for_sent(WARM_TURNS + customers.len(), WAIT)
            .await;
        let Replies {
            first,
            duplicates,
            off_script,
        } = replies_to(&sent, &customers);
        let latencies: Vec<(usize, Duration)> = first
            .iter()
            .filter_map(|(i, received)| posted[*i].map(|p| (*i, since(*received, p))))
            .collect();
        if s == 0 {
            off_latency_by_block = latencies.iter().map(|(i, d)| (i / block, *d)).collect();
        }
        arms.push(Arm {
            turns: customers.len(),
            replied: first.len(),
            duplicates,
            off_script,
            webhooks_failed: failed[s],
            latency: Latency::of(latencies.into_iter().map(|(_, d)| d).collect()),
        });
    }
    let noise = (turns.div_ceil(block) >= 4).then(|| {
        let quarter = |q: usize| {
            Latency::of(
                off_latency_by_block
                    .iter()
                    .filter(|(b, _)| b % 4 == q)
                    .map(|(_, d)| *d)
                    .collect(),
            )
        };
        (quarter(0), quarter(2))
    });

    let samples = (turns / 4).clamp(20, PIECE_SAMPLES);
    let (precheck, meter_in_txn) = pieces(&app_on, samples).await?;
    app_off.stop().await;
    app_on.stop().await;
    graph_off.shutdown().await;
    graph_on.shutdown().await;
    let on = arms.pop().unwrap_or_default();
    let off = arms.pop().unwrap_or_default();
    Ok(MeteringCost {
        rate,
        block,
        off,
        on,
        noise,
        precheck,
        meter_in_txn,
    })
}

/// Times metering's two pieces alone on the metered appliance's store (idle by now).
async fn pieces(app: &BenchApp, samples: usize) -> Result<(Latency, Latency), BenchError> {
    let store: Store = app
        .store()
        .ok_or_else(|| BenchError::Setup("app not running".into()))?
        .clone();
    let tenant: TenantId = app.tenant;
    let mut precheck = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        crate::billing::reply_allowed(&store, tenant, jiff::Timestamp::now())
            .map_err(|e| BenchError::Storage(format!("quota pre-check: {e}")))?;
        precheck.push(started.elapsed());
    }
    // One metered reply per transaction, as in a turn's commit; the fsync is not timed.
    let mut in_txn = Vec::with_capacity(samples);
    for _ in 0..samples {
        let took = store
            .write(move |ctx| {
                let started = Instant::now();
                crate::billing::meter_reply(ctx, tenant, jiff::Timestamp::now())?;
                Ok(started.elapsed())
            })
            .await
            .map_err(|e| BenchError::Storage(format!("meter_reply: {e}")))?;
        in_txn.push(took);
    }
    Ok((Latency::of(precheck), Latency::of(in_txn)))
}
