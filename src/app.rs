//! Wiring: opens the data directory, starts the services and the HTTP server, and stops them in
//! order. `launch` takes its listener and a shutdown future so tests bind port 0 and stop cleanly.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::assistant::{llm, Assistant};
use crate::config::{Config, LlmSettings};
use crate::conversations::turns::{run_scheduler, TurnScheduler};
use crate::conversations::{inbound, LiveBus};
use crate::events::{Consumer, Dispatcher, Envelope};
use crate::knowledge::ingest::IngestHandler;
use crate::knowledge::KnowledgeService;
use crate::storage::Store;
use crate::tenants::crypto::MasterKey;
use crate::web::{self, AppInner, AppState};
use crate::whatsapp::graph::{GraphClient, GraphClientConfig};
use crate::whatsapp::ingress::RouteCache;
use crate::whatsapp::sender::SenderHandle;

pub const DATABASE_FILE: &str = "wacrm.redb";
pub const MASTER_KEY_FILE: &str = "master.key";
/// Longest wait at shutdown for the last users of the store to let go.

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("cannot open the database: {0} (is another wacrm running on this data directory?)")]
    Store(#[from] crate::storage::StoreError),
    #[error(transparent)]
    Crypto(#[from] crate::tenants::crypto::CryptoError),
    #[error(transparent)]
    Format(#[from] crate::ops::format::FormatError),
    #[error(transparent)]
    Tls(#[from] crate::ops::tls::TlsError),
    #[error("{0}")]
    Setup(String),
}

/// A running appliance.
pub struct Running {
    pub addr: SocketAddr,
    /// The Prometheus listener, when `metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// The plain-HTTP redirect listener, when `tls.redirect_listen` is set.
    pub redirect_addr: Option<SocketAddr>,
    pub state: AppState,
    server: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    stop_workers: watch::Sender<bool>,
    pipeline_hold: watch::Sender<bool>,
}

impl Running {
    pub fn store(&self) -> &Store {
        &self.state.store
    }

    pub fn url(&self) -> String {
        let scheme = if self.state.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// Lets the event consumers start on what ingress queued while they were held
    /// (`LaunchOptions::hold_pipeline`). Does nothing if they were never held.
    pub fn release_pipeline(&self) {
        let _ = self.pipeline_hold.send(false);
    }

    /// Waits for the server to stop (after the shutdown future fired), then stops the workers:
    /// in-flight work finishes, queued work stays in redb for the next start. Returns once the
    /// database is closed, so the process may exit (or the data directory be opened again).
    pub async fn wait(self) {
        let _ = self.server.await;
        let _ = self.stop_workers.send(true);
        for worker in self.workers {
            let _ = worker.await;
        }
        // No turn or send runs any more: replies a turn claimed but never sent go back to queued.
        self.state.sender.release_claims().await;
        // The writer thread releases the database only after the last handle is gone; wait for
        // it so the data directory can be opened again as soon as this returns.
        let closed = self.state.store.closed(Duration::from_secs(20));
        drop(self.state);
        if !closed.await {
            tracing::warn!("the database is still held by unfinished work");
        }
        tracing::info!("stopped");
    }
}

fn prepare_data_dir(dir: &Path) -> Result<(), LaunchError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |reason: String| LaunchError::DataDir {
        path: dir.display().to_string(),
        reason,
    };
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create: {e}")))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| err(format!("cannot set permissions: {e}")))?;
    }
    if !dir.is_dir() {
        return Err(err("is not a directory".into()));
    }
    Ok(())
}

/// Opens the store with its event listener wired to one channel per consumer.
pub fn open_store(
    config: &Config,
) -> Result<(Store, HashMap<Consumer, mpsc::UnboundedReceiver<Envelope>>), LaunchError> {
    prepare_data_dir(&config.data_dir)?;
    // Refuses a directory of a newer binary; migrates an older one (after a backup).
    let format = crate::ops::format::prepare(&config.data_dir)?;
    if format.from != format.to || format.resumed {
        tracing::info!(from = format.from, to = format.to, resumed = format.resumed, backup = ?format.backup, "data directory upgraded");
    }
    let mut senders = HashMap::new();
    let mut receivers = HashMap::new();
    for consumer in Consumer::ALL {
        let (tx, rx) = mpsc::unbounded_channel();
        senders.insert(*consumer, tx);
        receivers.insert(*consumer, rx);
    }
    let listener = Box::new(move |envelopes: Vec<Envelope>| {
        for envelope in envelopes {
            if let Some(tx) = senders.get(&envelope.consumer) {
                let _ = tx.send(envelope);
            }
        }
    });
    let store = Store::open(
        &config.data_dir.join(DATABASE_FILE),
        config.storage.max_batch,
        listener,
    )?;
    Ok((store, receivers))
}

pub fn llm_client(config: &Config) -> Result<Option<Arc<llm::LlmClient>>, LaunchError> {
    match &config.llm {
        LlmSettings::Offline => Ok(None),
        LlmSettings::Openai {
            base_url,
            api_key,
            model,
            timeout_ms,
            max_retries,
        } => {
            let client = llm::LlmClient::new(llm::LlmConfig {
                base_url: base_url.clone(),
                api_key: api_key.expose().to_string(),
                model: model.clone(),
                timeout: Duration::from_millis(*timeout_ms),
                max_retries: *max_retries,
                ..llm::LlmConfig::default()
            })
            .map_err(|e| LaunchError::Setup(format!("llm: {e}")))?;
            Ok(Some(Arc::new(client)))
        }
    }
}

/// How to start, beyond the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct LaunchOptions {
    /// Start with the event consumers held: ingress accepts and queues durably, nothing is
    /// handled until `Running::release_pipeline`. The ingest benchmark uses it to measure the
    /// webhook path on its own, then the pipeline draining what it queued.
    pub hold_pipeline: bool,
}

/// Starts everything on `listener`; stops when `shutdown` completes.
pub async fn launch(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, LaunchError> {
    launch_with(config, listener, shutdown, LaunchOptions::default()).await
}

/// [`launch`] with options.
pub async fn launch_with(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: LaunchOptions,
) -> Result<Running, LaunchError> {
    let (store, mut receivers) = open_store(&config)?;
    let key = MasterKey::load_or_create(&config.data_dir.join(MASTER_KEY_FILE))?;
    let operator_token =
        web::auth::load_or_create_operator_token(&config.data_dir).map_err(|e| {
            LaunchError::DataDir {
                path: config.data_dir.display().to_string(),
                reason: format!("operator token: {e}"),
            }
        })?;
    let people = crate::people::PeopleState::new(config.auth.clone())
        .map_err(|e| LaunchError::Setup(format!("auth: {e}")))?;
    let live = LiveBus::default();
    let graph = GraphClient::new(GraphClientConfig {
        base_url: config.graph.base_url.clone(),
        request_timeout: Duration::from_millis(config.graph.timeout_ms),
        connect_timeout: Duration::from_millis(config.graph.timeout_ms.min(5_000)),
    })
    .map_err(|e| LaunchError::Setup(format!("graph: {e}")))?;
    let (stop_workers, stop_rx) = watch::channel(false);
    let (pipeline_hold, held) = watch::channel(options.hold_pipeline);
    let sender = SenderHandle::new(
        store.clone(),
        key.clone(),
        graph,
        config.graph.clone(),
        live.clone(),
        stop_rx.clone(),
    );
    let (turns, turn_rx) = TurnScheduler::channel();
    let knowledge = KnowledgeService::open(&config, store.clone())
        .map_err(|e| LaunchError::Setup(format!("knowledge: {e}")))?;
    let assistant = Assistant {
        store: store.clone(),
        llm: llm_client(&config)?,
        knowledge: Some(knowledge.clone()),
        sender: sender.clone(),
        live: live.clone(),
        history_messages: config.pipeline.history_messages,
        max_tool_rounds: config.pipeline.max_tool_rounds,
        metering: config.pipeline.metering,
    };

    let concurrency = config.pipeline.concurrency;
    let mut workers = Vec::new();
    let handlers: Vec<Arc<dyn crate::events::Handler>> = vec![
        inbound::handler(
            store.clone(),
            config.pipeline.debounce_ms as i64,
            turns.clone(),
            live.clone(),
        ),
        Arc::new(sender.clone()),
        Arc::new(IngestHandler {
            service: knowledge.clone(),
        }),
        crate::analytics::handler(store.clone()),
    ];
    for handler in handlers {
        let mut rx = receivers
            .remove(&handler.consumer())
            .ok_or_else(|| LaunchError::Setup("consumer wired twice".into()))?;
        let (store, stop, mut held) = (store.clone(), stop_rx.clone(), held.clone());
        workers.push(tokio::spawn(async move {
            // While held, live envelopes are dropped as they arrive: redb has every one of them,
            // and the dispatcher starts by reading the backlog from redb a page at a time.
            // Keeping them would grow memory by a copy of every event queued while held.
            let mut stopping = stop.clone();
            loop {
                tokio::select! {
                    _ = held.wait_for(|held| !*held) => break,
                    _ = stopping.wait_for(|stop| *stop) => return,
                    dropped = rx.recv() => if dropped.is_none() { return },
                }
            }
            Dispatcher::run(store, handler, rx, concurrency, stop).await
        }));
    }
    workers.push(tokio::spawn(run_scheduler(
        store.clone(),
        Arc::new(assistant),
        turn_rx,
        concurrency,
        stop_rx.clone(),
    )));

    let tls = match &config.tls {
        Some(settings) => Some(crate::ops::tls::TlsState::new(settings)?),
        None => None,
    };
    let ops = Arc::new(crate::ops::OpsState::new(&config, tls.clone()));
    let (dashboard, dashboard_tasks) = web::dashboard::DashboardState::start(
        store.clone(),
        live.clone(),
        &config.data_dir,
        stop_rx.clone(),
    )
    .map_err(|e| LaunchError::Setup(format!("dashboard: {e}")))?;
    workers.extend(dashboard_tasks);

    // Erasure and retention reach the analytics detail in their own commits.
    ops.hooks
        .register(Arc::new(crate::analytics::AnalyticsForgets));
    ops.hooks
        .register(Arc::new(web::dashboard::forget::DashboardForgets {
            search: dashboard.search.clone(),
        }));
    let state = AppState {
        inner: Arc::new(AppInner {
            config,
            store,
            key,
            routes: RouteCache::default(),
            live,
            sender,
            operator_token,
            people: Arc::new(people),
            tenant_data: Default::default(),
            ops: ops.clone(),
            dashboard,
            knowledge: knowledge.clone(),
        }),
    };
    state.tenant_data.register(state.dashboard.search.clone());
    // Deleting a tenant removes its documents' originals and index entries too.
    state.tenant_data.register(knowledge.clone());
    workers.push(knowledge.start(ops.readiness.clone(), stop_rx.clone()));
    workers.extend(crate::ops::spawn_background(&state, stop_rx.clone()));
    let metrics_addr = match state.config.metrics_listen {
        Some(at) => {
            let metrics_listener = TcpListener::bind(at)
                .await
                .map_err(|e| LaunchError::Setup(format!("metrics_listen {at}: {e}")))?;
            let bound = metrics_listener.local_addr().ok();
            let app = crate::ops::routes::metrics_router(state.clone());
            let mut stop = stop_rx.clone();
            workers.push(tokio::spawn(async move {
                let served = axum::serve(metrics_listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.changed().await;
                    })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            }));
            bound
        }
        None => None,
    };
    let addr = listener
        .local_addr()
        .map_err(|e| LaunchError::Setup(format!("listener: {e}")))?;
    let mut redirect_addr = None;
    if let Some(at) = state.config.tls.as_ref().and_then(|t| t.redirect_listen) {
        let redirect = TcpListener::bind(at)
            .await
            .map_err(|e| LaunchError::Setup(format!("tls.redirect_listen {at}: {e}")))?;
        redirect_addr = redirect.local_addr().ok();
        workers.push(tokio::spawn(crate::ops::tls::serve_redirect(
            redirect,
            addr.port(),
            stop_rx.clone(),
        )));
    }
    let app = web::router(state.clone());
    let server = match tls {
        Some(tls) => {
            workers.push(tokio::spawn(tls.clone().watch(stop_rx.clone())));
            crate::ops::tls::spawn_https(listener, tls, app, shutdown)
                .map_err(|e| LaunchError::Setup(format!("listener: {e}")))?
        }
        None => tokio::spawn(async move {
            let served = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }),
    };
    tracing::info!(%addr, metrics = ?metrics_addr, "wacrm is running");
    Ok(Running {
        addr,
        metrics_addr,
        redirect_addr,
        state,
        server,
        workers,
        stop_workers,
        pipeline_hold,
    })
}
