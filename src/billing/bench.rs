//! `wacrm bench quota`: what metering adds to an assistant turn.
//!
//! The turn's commit is measured end to end (the real `Assistant::commit`, durable group commit
//! included) with metering on and off, alternating turn by turn in the same run so both see the
//! same disk and the same database size. The two pieces metering adds are also timed alone: the
//! read-only pre-check a turn makes before calling the model, and `meter_reply` inside a write
//! transaction (the CPU it adds to the commit's critical section, without the fsync).
//!
//! (`wacrm bench pipeline` is being written on another branch; there, `pipeline.metering = false`
//! in the configuration gives the same switch for the whole pipeline.)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::plans::Limit;
use super::subscription::set_overrides;
use super::LimitOverrides;
use crate::assistant::language::Lang;
use crate::assistant::turn::Decision;
use crate::assistant::Assistant;
use crate::config::GraphSettings;
use crate::conversations::turns::ScheduledTurn;
use crate::conversations::{
    Conversation, ConversationState, LiveBus, PendingTurn, CONVERSATIONS, PENDING_TURNS,
};
use crate::storage::{ChannelId, ConversationId, MessageId, Store, TenantId};
use crate::tenants::crypto::MasterKey;
use crate::tenants::{self, NewTenant};
use crate::whatsapp::graph::{GraphClient, GraphClientConfig};
use crate::whatsapp::sender::SenderHandle;

pub const TARGET_ADDED_P99: Duration = Duration::from_millis(1);
const IN_TXN_SAMPLES: usize = 300;

#[derive(Debug, Clone)]
pub struct QuotaBenchOptions {
    /// Turn commits measured (half with metering on, half off).
    pub turns: usize,
    /// Turns committing at once (they share group commits).
    pub concurrency: usize,
    pub work_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let n = samples.len();
        if n == 0 {
            return Self::default();
        }
        let at = |q: f64| samples[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        Self {
            n,
            p50: at(0.50),
            p99: at(0.99),
            max: samples[n - 1],
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct QuotaBenchReport {
    pub commit_off: Percentiles,
    pub commit_on: Percentiles,
    pub precheck: Percentiles,
    pub meter_in_txn: Percentiles,
    pub concurrency: usize,
}

impl QuotaBenchReport {
    /// What metering adds to a turn at p99, measured directly: the pre-check plus `meter_reply`
    /// inside the commit's transaction (it runs in the commit's critical section, before the
    /// fsync, and adds exactly its own time to it). The end-to-end commit comparison is printed
    /// beside it; at p99 it is dominated by fsync jitter, not by metering.
    pub fn added_p99(&self) -> Duration {
        self.precheck.p99 + self.meter_in_txn.p99
    }

    pub fn render(&self) -> String {
        let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
        let signed = |on: Duration, off: Duration| {
            let d = on.as_secs_f64() - off.as_secs_f64();
            format!("{:+.3} ms", d * 1e3)
        };
        let row = |name: &str, p: &Percentiles| {
            format!(
                "  {name:<44} n={:<6} p50 {:>10}  p99 {:>10}  max {:>10}\n",
                p.n,
                ms(p.p50),
                ms(p.p99),
                ms(p.max)
            )
        };
        let mut out = format!(
            "wacrm bench quota: turn commits alternating metering on/off, concurrency {}{}\n",
            self.concurrency,
            if cfg!(debug_assertions) {
                " (debug build: build with --release for real figures)"
            } else {
                ""
            }
        );
        out += &row("turn commit, metering off (baseline)", &self.commit_off);
        out += &row("turn commit, metering on", &self.commit_on);
        out += &row("quota pre-check (read, before the model)", &self.precheck);
        out += &row(
            "meter_reply inside the commit's transaction",
            &self.meter_in_txn,
        );
        out += &format!(
            "  turn commit on - off: p50 {}, p99 {} (end to end, fsync included)\n",
            signed(self.commit_on.p50, self.commit_off.p50),
            signed(self.commit_on.p99, self.commit_off.p99)
        );
        let added = self.added_p99();
        out +=
            &format!(
            "  added to a turn at p99 (pre-check + metering in the commit): {}  target < {}: {}\n",
            ms(added),
            ms(TARGET_ADDED_P99),
            if added < TARGET_ADDED_P99 { "met" } else { "NOT met" }
        );
        out
    }
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(work_dir: Option<&Path>) -> anyhow::Result<Scratch> {
    let base = work_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!(
        "wacrm-bench-quota-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(Scratch(dir))
}

fn assistant(store: &Store, key: MasterKey, metering: bool) -> anyhow::Result<Assistant> {
    let live = LiveBus::default();
    let graph = GraphClient::new(GraphClientConfig {
        base_url: "http://127.0.0.1:9".into(),
        request_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
    })?;
    let sender = SenderHandle::new(
        store.clone(),
        key,
        graph,
        GraphSettings::default(),
        live.clone(),
        // Never sends: the bench measures commits only.
        tokio::sync::watch::channel(false).1,
    );
    Ok(Assistant {
        store: store.clone(),
        llm: None,
        knowledge: None,
        sender,
        live,
        history_messages: 12,
        max_tool_rounds: 3,
        metering,
    })
}

/// Bot-mode conversations, each with a due turn, written in large batches (not measured).
async fn prepare_turns(
    store: &Store,
    tenant: TenantId,
    n: usize,
) -> anyhow::Result<Vec<ScheduledTurn>> {
    let channel = ChannelId::new();
    let mut turns = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(500) {
        let batch: Vec<ScheduledTurn> = (0..500.min(n - chunk * 500))
            .map(|_| ScheduledTurn {
                due_ms: 0,
                tenant,
                conversation: ConversationId::new(),
                turn: MessageId::new(),
            })
            .collect();
        let rows = batch.clone();
        store
            .write(move |ctx| {
                let now = crate::events::now_ms();
                let mut t = ctx.tenant(tenant);
                for (i, turn) in rows.iter().enumerate() {
                    let c = Conversation {
                        id: turn.conversation,
                        channel,
                        outlet: None,
                        contact_wa_id: format!("6281{i:08}"),
                        contact_name: None,
                        state: ConversationState::Bot,
                        handoff_reason: None,
                        opened_at_ms: now,
                        closed_at_ms: None,
                        last_customer_message_ms: now,
                        last_message_ms: now,
                        message_count: 1,
                    };
                    t.put(&CONVERSATIONS, c.id.as_bytes(), &c)?;
                    t.put(
                        &PENDING_TURNS,
                        c.id.as_bytes(),
                        &PendingTurn {
                            turn: turn.turn,
                            due_ms: 0,
                        },
                    )?;
                }
                Ok(())
            })
            .await?;
        turns.extend(batch);
    }
    Ok(turns)
}

pub async fn run(opts: QuotaBenchOptions) -> anyhow::Result<QuotaBenchReport> {
    let dir = scratch(opts.work_dir.as_deref())?;
    let store = Store::open(&dir.0.join("bench.redb"), 512, Box::new(|_| {}))?;
    let key = MasterKey::load_or_create(&dir.0.join("master.key"))?;
    let tenant = tenants::create_tenant(
        &store,
        NewTenant {
            slug: "bench".into(),
            name: "Bench".into(),
            time_zone: "America/New_York".into(),
        },
    )
    .await?
    .id;
    // A cap high enough never to run out, so every metered commit takes the full path (limit
    // check, increment, threshold checks).
    set_overrides(
        &store,
        tenant,
        LimitOverrides {
            assistant_messages: Some(Limit::Max(u64::MAX / 2)),
            ..Default::default()
        },
    )
    .await?;
    let on = Arc::new(assistant(&store, key.clone(), true)?);
    let off = Arc::new(assistant(&store, key, false)?);
    let turns = prepare_turns(&store, tenant, opts.turns.max(2)).await?;

    let workers = opts.concurrency.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let mine: Vec<(usize, ScheduledTurn)> = turns
            .iter()
            .copied()
            .enumerate()
            .filter(|(i, _)| i % workers == w)
            .collect();
        let (on, off, store) = (on.clone(), off.clone(), store.clone());
        tasks.spawn(async move {
            let mut samples = (Vec::new(), Vec::new(), Vec::new());
            for (i, turn) in mine {
                let metering = i % 2 == 0;
                let assistant = if metering { &on } else { &off };
                let decision = Decision::Reply {
                    text: "We open every day from 9 am to 9 pm.".into(),
                    sources: Vec::new(),
                };
                if metering {
                    let started = Instant::now();
                    let _ = super::reply_allowed(&store, tenant, Timestamp::now());
                    samples.2.push(started.elapsed());
                }
                let started = Instant::now();
                assistant
                    .commit(turn, decision, Lang::English, Default::default())
                    .await?;
                let took = started.elapsed();
                if metering {
                    samples.1.push(took);
                } else {
                    samples.0.push(took);
                }
            }
            Ok::<_, crate::storage::StoreError>(samples)
        });
    }
    let (mut commit_off, mut commit_on, mut precheck) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(joined) = tasks.join_next().await {
        let (off, on, pre) = joined??;
        commit_off.extend(off);
        commit_on.extend(on);
        precheck.extend(pre);
    }

    // The CPU meter_reply adds inside a commit's transaction, without the fsync: one metered
    // reply per transaction, as in a turn.
    let mut in_txn = Vec::with_capacity(IN_TXN_SAMPLES);
    for _ in 0..IN_TXN_SAMPLES {
        let took = store
            .write(move |ctx| {
                let started = Instant::now();
                super::meter_reply(ctx, tenant, Timestamp::now())?;
                Ok(started.elapsed())
            })
            .await?;
        in_txn.push(took);
    }
    drop(store);
    Ok(QuotaBenchReport {
        commit_off: Percentiles::of(commit_off),
        commit_on: Percentiles::of(commit_on),
        precheck: Percentiles::of(precheck),
        meter_in_txn: Percentiles::of(in_txn),
        concurrency: workers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_samples() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(samples);
        assert_eq!(p.p50, Duration::from_millis(50));
        assert_eq!(p.p99, Duration::from_millis(99));
        assert_eq!(p.max, Duration::from_millis(100));
        assert_eq!(Percentiles::of(Vec::new()).n, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_bench_runs_and_meters_only_the_metered_half() {
        let dir = tempfile::tempdir().unwrap();
        let report = run(QuotaBenchOptions {
            turns: 40,
            concurrency: 4,
            work_dir: Some(dir.path().to_path_buf()),
        })
        .await
        .unwrap();
        assert_eq!(report.commit_on.n, 20);
        assert_eq!(report.commit_off.n, 20);
        assert_eq!(report.precheck.n, 20);
        assert_eq!(report.meter_in_txn.n, IN_TXN_SAMPLES);
        assert!(report.render().contains("turn commit, metering on"));
        // The scratch data directory is removed afterwards.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
