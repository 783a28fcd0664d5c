//! `wacrm bench backup`: how long a backup of a data directory of a given size takes, and what it
//! does to webhook latency. The same steady webhook load runs twice in one run, once alone (the
//! baseline) and once while `wacrm backup` copies the directory through the running server, and
//! the p50/p99 of both are printed side by side.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::config::{Config, LlmSettings};
use crate::conversations::{
    message_key, Author, Direction, Message, MessageBody, MessageStatus, MESSAGES,
};
use crate::storage::{ConversationId, MessageId, TenantId};
use crate::testkit::fake_graph::{FakeGraph, FakeGraphOptions};
use crate::whatsapp::ingress::sign;
use crate::whatsapp::payload::MessageContent;

const TOKEN: &str = "EAAbench";
const SECRET: &str = "bench-app-secret";
const PHONE_NUMBER_ID: &str = "106540352242922";

#[derive(Args, Debug, Clone)]
pub struct BackupBenchArgs {
    /// Size of the data directory to back up, in MiB (filled with 1 KiB messages).
    #[arg(long, default_value_t = 64)]
    pub size_mb: u64,
    /// Signed webhooks per second of steady load, in both phases.
    #[arg(long, default_value_t = 100)]
    pub rate: u32,
    /// Seconds of load in the baseline phase.
    #[arg(long, default_value_t = 5)]
    pub baseline_secs: u64,
}

fn webhook(seq: u64) -> Vec<u8> {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Bench"}, "wa_id": format!("62812{:07}", seq % 5000)}],
            "messages": [{"from": format!("62812{:07}", seq % 5000), "id": format!("wamid.bench.{seq}.{}", std::process::id()),
                "timestamp": jiff::Timestamp::now().as_second().to_string(), "type": "text", "text": {"body": "halo"}}]
        }}]}]
    })
    .to_string()
    .into_bytes()
}

/// Sends `rate` webhooks per second until `until` resolves; returns each request's latency.
async fn load(
    url: String,
    rate: u32,
    first_seq: u64,
    until: impl std::future::Future<Output = ()>,
) -> (Vec<Duration>, u64) {
    let http = reqwest::Client::new();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    let mut tasks = tokio::task::JoinSet::new();
    let mut seq = first_seq;
    tokio::pin!(until);
    loop {
        tokio::select! {
            _ = &mut until => break,
            _ = tick.tick() => {}
        }
        seq += 1;
        let body = webhook(seq);
        let signature = sign(SECRET.as_bytes(), &body);
        let (http, url, latencies, failures) = (
            http.clone(),
            url.clone(),
            latencies.clone(),
            failures.clone(),
        );
        tasks.spawn(async move {
            let started = Instant::now();
            let sent = http
                .post(format!("{url}/webhooks/whatsapp"))
                .header("content-type", "application/json")
                .header("x-hub-signature-256", signature)
                .body(body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    if let Ok(mut l) = latencies.lock() {
                        l.push(started.elapsed());
                    }
                }
                _ => {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let list = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    (list, failures.load(std::sync::atomic::Ordering::Relaxed))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn fill(
    store: &crate::storage::Store,
    tenant: TenantId,
    data_dir: &std::path::Path,
    size_mb: u64,
) -> anyhow::Result<u64> {
    let target = size_mb * 1024 * 1024;
    let text = "x".repeat(1024);
    let mut rows = 0u64;
    while crate::ops::fsutil::tree_size(&data_dir.join(crate::app::DATABASE_FILE)) < target {
        let conversation = ConversationId::new();
        let text = text.clone();
        store
            .write(move |ctx| {
                let mut t = ctx.tenant(tenant);
                for _ in 0..2_000 {
                    let m = Message {
                        id: MessageId::new(),
                        conversation,
                        direction: Direction::Inbound,
                        author: Author::Customer,
                        body: MessageBody::Inbound {
                            content: MessageContent::Text { body: text.clone() },
                            context: None,
                            referral: None,
                        },
                        status: MessageStatus::Received,
                        wamid: None,
                        created_at_ms: 0,
                        status_at_ms: 0,
                        failure: None,
                        attempts: 0,
                        sources: Vec::new(),
                        unanswered: None,
                    };
                    t.put(&MESSAGES, &message_key(conversation, m.id), &m)?;
                }
                Ok(())
            })
            .await?;
        rows += 2_000;
    }
    Ok(rows)
}

pub async fn run(_config: Config, args: BackupBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let data_dir = dir.join("data");
    let graph = FakeGraph::start(FakeGraphOptions::new(TOKEN)).await?;
    let mut config = Config {
        data_dir: data_dir.clone(),
        llm: LlmSettings::Offline,
        ..Config::default()
    };
    config.graph.base_url = graph.base_url();
    config.graph.recipient_gap_ms = 0;
    config.resources.min_free_mb_uploads = 0;
    config.resources.min_free_mb_warn = 0;
    config.resources.min_free_mb_webhooks = 0;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = crate::app::launch(config, listener, async {
        let _ = stopped.await;
    })
    .await?;
    let url = running.url();
    let api = crate::cli::ApiClient::new(&url, &running.state.operator_token);
    let tenant = api
        .post("/api/v1/tenants", json!({"slug": "bench", "name": "Bench"}))
        .await?;
    let tenant: TenantId = tenant["id"].as_str().unwrap_or_default().parse()?;
    api.post(
        "/api/v1/tenants/bench/channels",
        json!({"type": "cloud_api", "name": "Bench", "phone_number_id": PHONE_NUMBER_ID,
               "waba_id": "102290129340398", "access_token": TOKEN, "app_secret": SECRET,
               "verify_token": "bench-verify"}),
    )
    .await?;

    println!("filling a data directory of {} MiB ...", args.size_mb);
    let rows = fill(running.store(), tenant, &data_dir, args.size_mb).await?;
    let db_bytes = crate::ops::fsutil::tree_size(&data_dir.join(crate::app::DATABASE_FILE));

    // Warm-up (connections, first conversations), not measured.
    load(
        url.clone(),
        args.rate,
        20_000_000,
        tokio::time::sleep(Duration::from_secs(1)),
    )
    .await;
    println!(
        "baseline: {} webhooks/s for {} s without a backup ...",
        args.rate, args.baseline_secs
    );
    let (mut baseline, base_failures) = load(
        url.clone(),
        args.rate,
        0,
        tokio::time::sleep(Duration::from_secs(args.baseline_secs)),
    )
    .await;

    println!("the same load during a backup ...");
    let dest = dir.join("backup");
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let token = running.state.operator_token.clone();
    let (backup_url, backup_data, backup_dest) = (url.clone(), data_dir.clone(), dest.clone());
    let backup = tokio::spawn(async move {
        let started = Instant::now();
        let report =
            super::backup::backup_from_server(&backup_url, &token, &backup_data, &backup_dest)
                .await;
        let _ = done_tx.send(());
        (report, started.elapsed())
    });
    let (mut during, during_failures) = load(url.clone(), args.rate, 10_000_000, async {
        let _ = done_rx.await;
    })
    .await;
    let (report, elapsed) = backup.await?;
    let report = report?;

    baseline.sort();
    during.sort();
    let mib = db_bytes as f64 / (1024.0 * 1024.0);
    println!();
    println!(
        "data directory: {mib:.1} MiB, {} rows ({rows} filler messages)",
        report.manifest.rows
    );
    println!(
        "backup: {:.2} s, {:.1} MiB/s, {:.0} rows/s (checked and renamed into place)",
        elapsed.as_secs_f64(),
        mib / elapsed.as_secs_f64().max(1e-9),
        report.manifest.rows as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("webhook latency      p50        p99      requests  failed");
    println!(
        "  without backup  {:>7.1} ms {:>7.1} ms  {:>8}  {base_failures}",
        ms(percentile(&baseline, 0.5)),
        ms(percentile(&baseline, 0.99)),
        baseline.len()
    );
    println!(
        "  during backup   {:>7.1} ms {:>7.1} ms  {:>8}  {during_failures}",
        ms(percentile(&during, 0.5)),
        ms(percentile(&during, 0.99)),
        during.len()
    );
    let base_p99 = ms(percentile(&baseline, 0.99)).max(1e-6);
    println!(
        "  p99 ratio (during / without): {:.2}x",
        ms(percentile(&during, 0.99)) / base_p99
    );
    let _ = stop.send(());
    running.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "wacrm-bench-backup-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
