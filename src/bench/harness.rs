//! What both benches share: a throwaway data directory, the real appliance launched in-process on
//! 127.0.0.1:0, a tenant with a Cloud API channel, and Meta-shaped signed webhooks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;
use tokio::sync::oneshot;

use super::BenchError;
use crate::app::{launch_with, LaunchOptions, Running};
use crate::config::{Config, Secret};
use crate::storage::TenantId;
use crate::tenants::{self, NewChannel, NewChannelKind, NewTenant};
use crate::whatsapp::ingress::sign;

pub const ACCESS_TOKEN: &str = "EAAbench-access-token";
pub const APP_SECRET: &str = "bench-app-secret";
pub const PHONE_NUMBER_ID: &str = "106540352242922";
pub const WABA_ID: &str = "102290129340398";

/// A directory removed (with everything in it) when dropped.
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// A fresh directory under `parent` (the system temp dir when None).
    pub fn new(parent: Option<&Path>, label: &str) -> Result<Self, BenchError> {
        let parent = parent
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        let path = parent.join(format!(
            "wacrm-bench-{label}-{}",
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| BenchError::Setup(format!("cannot create {}: {e}", path.display())))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The appliance under test, with one tenant and one Cloud API channel.
pub struct BenchApp {
    running: Option<Running>,
    stop: Option<oneshot::Sender<()>>,
    pub tenant: TenantId,
    pub channel: crate::storage::ChannelId,
    pub webhook_url: String,
}

impl BenchApp {
    /// Launches on `config` (its data_dir and listen are overridden by the caller) and connects
    /// the channel through the same store functions the API uses.
    pub async fn start(config: Config) -> Result<Self, BenchError> {
        Self::start_with(config, LaunchOptions::default()).await
    }

    /// [`BenchApp::start`] with launch options (a held pipeline).
    pub async fn start_with(config: Config, options: LaunchOptions) -> Result<Self, BenchError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| BenchError::Setup(format!("cannot bind 127.0.0.1:0: {e}")))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let running = launch_with(
            config,
            listener,
            async {
                let _ = stopped.await;
            },
            options,
        )
        .await
        .map_err(|e| BenchError::Setup(format!("launch: {e}")))?;
        let store = running.store().clone();
        let tenant = tenants::create_tenant(
            &store,
            NewTenant {
                slug: "bench".into(),
                name: "Bench Coffee".into(),
                time_zone: "UTC".into(),
            },
        )
        .await
        .map_err(|e| BenchError::Setup(format!("tenant: {e}")))?;
        // A reply quota the run never exhausts (the default plan's would turn later turns into
        // handoffs), yet finite, so every metered turn takes metering's full path: the limit
        // check, the increment and the warning thresholds.
        crate::billing::subscription::set_overrides(
            &store,
            tenant.id,
            crate::billing::LimitOverrides {
                assistant_messages: Some(crate::billing::Limit::Max(u64::MAX / 2)),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| BenchError::Setup(format!("billing overrides: {e}")))?;
        let channel = tenants::add_channel(
            &store,
            &running.state.key,
            tenant.id,
            NewChannel {
                name: "Bench WA".into(),
                outlet: None,
                kind: NewChannelKind::CloudApi {
                    phone_number_id: PHONE_NUMBER_ID.into(),
                    waba_id: WABA_ID.into(),
                    display_phone_number: "15550783881".into(),
                    api_version: tenants::default_api_version(),
                    access_token: Secret::new(ACCESS_TOKEN),
                    app_secret: Secret::new(APP_SECRET),
                    verify_token: Secret::new("bench-verify-token"),
                },
            },
        )
        .await
        .map_err(|e| BenchError::Setup(format!("channel: {e}")))?;
        // Channels added behind the API's back: make sure no stale route is cached.
        running.state.routes.invalidate();
        let webhook_url = format!("{}/webhooks/whatsapp", running.url());
        Ok(Self {
            running: Some(running),
            stop: Some(stop),
            tenant: tenant.id,
            channel: channel.id,
            webhook_url,
        })
    }

    pub fn store(&self) -> Option<&crate::storage::Store> {
        self.running.as_ref().map(|r| r.store())
    }

    pub fn addr(&self) -> Option<std::net::SocketAddr> {
        self.running.as_ref().map(|r| r.addr)
    }

    /// Starts the held event consumers (see `LaunchOptions::hold_pipeline`).
    pub fn release_pipeline(&self) {
        if let Some(running) = &self.running {
            running.release_pipeline();
        }
    }

    /// Graceful stop: in-flight work finishes, queued work stays in the (throwaway) store.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(running) = self.running.take() {
            running.wait().await;
        }
    }
}

/// Starts from the operator's config (tunables such as `storage.max_batch` and
/// `pipeline.concurrency` apply) but never touches their data directory.
pub fn bench_config(base: &Config, data_dir: &Path) -> Config {
    let mut config = base.clone();
    config.data_dir = data_dir.to_path_buf();
    config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.public_url = None;
    config
}

/// A Meta-shaped text-message webhook (the shape of Meta's webhook reference).
pub fn text_webhook(from: &str, wamid: &str, text: &str) -> Vec<u8> {
    let ts = jiff::Timestamp::now().as_second().to_string();
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": WABA_ID,
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
                    "contacts": [{"profile": {"name": "Budi"}, "wa_id": from}],
                    "messages": [{"from": from, "id": wamid, "timestamp": ts, "type": "text", "text": {"body": text}}]
                }
            }]
        }]
    })
    .to_string()
    .into_bytes()
}

/// A webhook ready to POST: body and its `X-Hub-Signature-256`.
#[derive(Clone)]
pub struct SignedWebhook {
    pub body: bytes::Bytes,
    pub signature: String,
}

impl SignedWebhook {
    pub fn text(from: &str, wamid: &str, text: &str) -> Self {
        let body = text_webhook(from, wamid, text);
        let signature = sign(APP_SECRET.as_bytes(), &body);
        Self {
            body: body.into(),
            signature,
        }
    }
}

/// The i-th simulated customer's WhatsApp id (13 digits, like an Indonesian mobile number).
pub fn customer(i: usize) -> String {
    format!("628{:010}", i)
}

/// An HTTP client that keeps up to `connections` connections alive to one host.
pub fn http_client(connections: usize) -> Result<reqwest::Client, BenchError> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections.max(1))
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| BenchError::Setup(format!("http client: {e}")))
}

/// POSTs one signed webhook; returns the HTTP status.
pub async fn post_webhook(
    http: &reqwest::Client,
    url: &str,
    hook: &SignedWebhook,
) -> Result<u16, BenchError> {
    let resp = http
        .post(url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", hook.signature.as_str())
        .body(hook.body.clone())
        .send()
        .await
        .map_err(|e| BenchError::Http(e.to_string()))?;
    let status = resp.status().as_u16();
    // Drain the body so the connection goes back to the pool.
    let _ = resp.bytes().await;
    Ok(status)
}

/// Samples what one durable write costs on this disk while a measurement runs: 16 KiB written
/// then `fdatasync` (the shape of a small redb commit) every few milliseconds, on a file of its
/// own. Every durable commit pays at least this, so it bounds the benches from below; on a shared
/// or busy disk it moves a lot between runs, which is why it is taken during the run itself.
pub struct DiskSampler {
    stop: Arc<AtomicBool>,
    worker: std::thread::JoinHandle<std::io::Result<Vec<std::time::Duration>>>,
}

impl DiskSampler {
    pub fn start(dir: &Path) -> Result<Self, BenchError> {
        let path = dir.join("fsync-probe.bin");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let worker = std::thread::Builder::new()
            .name("bench-fsync-probe".into())
            .spawn(move || {
                use std::os::unix::fs::FileExt;
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .open(&path)?;
                let block = vec![0x5au8; 16 * 1024];
                let mut out = Vec::new();
                // At least a few samples, even for a window shorter than the interval.
                while out.len() < 5 || !stopped.load(Ordering::Relaxed) {
                    file.write_at(&block, (out.len() % 64) as u64 * block.len() as u64)?;
                    let started = std::time::Instant::now();
                    file.sync_data()?;
                    out.push(started.elapsed());
                    std::thread::sleep(SAMPLE_EVERY);
                }
                drop(file);
                std::fs::remove_file(&path)?;
                Ok(out)
            })
            .map_err(|e| BenchError::Setup(format!("fsync probe: {e}")))?;
        Ok(Self { stop, worker })
    }

    pub fn finish(self) -> Result<super::stats::Latency, BenchError> {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self
            .worker
            .join()
            .map_err(|_| BenchError::Setup("fsync probe panicked".into()))?
            .map_err(|e| BenchError::Setup(format!("fsync probe: {e}")))?;
        Ok(super::stats::Latency::of(samples))
    }
}

/// Rare enough to add no load worth mentioning (the appliance commits hundreds of times a second).
const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_millis(20);
