//! Test harness: a whole appliance on its own temporary data directory and port 0, wired to a
//! local fake Graph API (which sends Meta-shaped status webhooks back) and, optionally, a local
//! fake OpenAI-compatible server.
#![allow(dead_code)]

pub mod ops;
pub mod people;

use std::time::Duration;

use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::oneshot;

use wacrm::app::{launch, Running};
use wacrm::config::{Config, GraphSettings, LlmSettings, PipelineSettings, Secret};
use wacrm::conversations::turns::TURN_SCHEDULE;
use wacrm::conversations::{self, Author, Conversation, Message};
use wacrm::events::{queue_depth, Consumer};
use wacrm::storage::{next_event_seq, Store, TenantId};
use wacrm::testkit::fake_graph::{
    status_webhook_payload, FakeGraph, FakeGraphOptions, RecordedSend, StatusKind,
    StatusWebhookConfig,
};
use wacrm::testkit::fake_llm::{FakeLlm, FakeLlmOptions, FAKE_LLM_API_KEY};
use wacrm::whatsapp::ingress::sign;

pub const ACCESS_TOKEN: &str = "EAAtest-access-token";
pub const APP_SECRET: &str = "test-app-secret";
pub const VERIFY_TOKEN: &str = "test-verify-token";
pub const WABA_ID: &str = "102290129340398";
pub const WAIT: Duration = Duration::from_secs(15);

/// See [`TestApp::footprint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    pub next_event_seq: u64,
    pub queued: Vec<usize>,
    pub tenant_rows: Vec<(u64, u64)>,
}

pub enum Llm {
    Offline,
    Fake(FakeLlmOptions),
}

pub struct Options {
    pub llm: Llm,
    pub debounce_ms: u64,
    /// Fake Graph posts sent/delivered/read status webhooks back to the app.
    pub status_webhooks: bool,
    pub tweak: Box<dyn FnOnce(&mut Config) + Send>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            llm: Llm::Fake(FakeLlmOptions::default()),
            debounce_ms: 50,
            status_webhooks: true,
            tweak: Box::new(|_| {}),
        }
    }
}

impl Options {
    /// Ingress only: no assistant turn fires during a test (offline, hour-long debounce) and the
    /// fake Graph sends no status webhooks, so the store changes only through what the test posts.
    pub fn quiet() -> Self {
        Self {
            llm: Llm::Offline,
            debounce_ms: 3_600_000,
            status_webhooks: false,
            ..Self::default()
        }
    }
}

pub struct TestApp {
    pub dir: TempDir,
    pub running: Option<Running>,
    stop: Option<oneshot::Sender<()>>,
    pub url: String,
    pub token: String,
    pub graph: FakeGraph,
    pub llm: Option<FakeLlm>,
    pub http: reqwest::Client,
    /// Whether the fake Graph posts status webhooks back (re-pointed on restart).
    status_webhooks: bool,
}

/// The config a test app runs with (fast timers, fakes for remote APIs).
pub fn test_config(
    dir: &std::path::Path,
    graph_url: &str,
    llm: Option<&FakeLlm>,
    debounce_ms: u64,
) -> Config {
    let defaults = Config::default();
    Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        graph: GraphSettings {
            base_url: graph_url.to_string(),
            timeout_ms: 2_000,
            recipient_gap_ms: 0,
            backoff_base_ms: 20,
            backoff_max_ms: 400,
            reconcile_after_ms: 3_000,
            ..defaults.graph
        },
        pipeline: PipelineSettings {
            debounce_ms,
            ..defaults.pipeline
        },
        llm: match llm {
            Some(fake) => LlmSettings::Openai {
                base_url: fake.base_url(),
                api_key: Secret::new(FAKE_LLM_API_KEY),
                model: "gpt-4o-mini".into(),
                timeout_ms: 2_000,
                max_retries: 1,
            },
            None => LlmSettings::Offline,
        },
        ..defaults
    }
}

impl TestApp {
    pub async fn start(opts: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let graph = FakeGraph::start(FakeGraphOptions::new(ACCESS_TOKEN))
            .await
            .unwrap();
        let llm = match opts.llm {
            Llm::Offline => None,
            Llm::Fake(o) => Some(FakeLlm::start(o).await.unwrap()),
        };
        let mut config = test_config(
            dir.path(),
            &graph.base_url(),
            llm.as_ref(),
            opts.debounce_ms,
        );
        (opts.tweak)(&mut config);
        Self::launch_on(dir, config, graph, llm, opts.status_webhooks).await
    }

    async fn launch_on(
        dir: TempDir,
        config: Config,
        graph: FakeGraph,
        llm: Option<FakeLlm>,
        status_webhooks: bool,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        // Pointed at the new port before launch: a restarted app resumes sending at once, and
        // the statuses of those sends must reach it (connections wait in the listen backlog).
        if status_webhooks {
            graph.set_status_webhook(Some(StatusWebhookConfig::new(
                format!(
                    "http://{}/webhooks/whatsapp",
                    listener.local_addr().unwrap()
                ),
                APP_SECRET,
            )));
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let running = launch(config, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
        let url = running.url();
        let token = running.state.operator_token.clone();
        Self {
            dir,
            running: Some(running),
            stop: Some(stop),
            url,
            token,
            graph,
            llm,
            http: reqwest::Client::new(),
            status_webhooks,
        }
    }

    pub fn store(&self) -> &Store {
        self.running.as_ref().unwrap().store()
    }

    /// Graceful stop of the appliance (the fakes keep running).
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(running) = self.running.take() {
            running.wait().await;
        }
    }

    /// Stops and starts the appliance again on the same data directory.
    pub async fn restart(mut self, tweak: impl FnOnce(&mut Config)) -> Self {
        self.stop().await;
        let mut config = test_config(
            self.dir.path(),
            &self.graph.base_url(),
            self.llm.as_ref(),
            50,
        );
        tweak(&mut config);
        let Self {
            dir,
            graph,
            llm,
            status_webhooks,
            ..
        } = self;
        Self::launch_on(dir, config, graph, llm, status_webhooks).await
    }

    /// The fake LLM (panics for offline apps).
    pub fn llm(&self) -> &FakeLlm {
        self.llm.as_ref().expect("this test app has no fake LLM")
    }

    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.url, path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, v) = self.api(reqwest::Method::GET, path, None).await;
        assert!(status < 300, "GET {path}: {status} {v}");
        v
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.api(reqwest::Method::POST, path, Some(body)).await;
        assert!(status < 300, "POST {path}: {status} {v}");
        v
    }

    pub async fn put(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.api(reqwest::Method::PUT, path, Some(body)).await;
        assert!(status < 300, "PUT {path}: {status} {v}");
        v
    }

    pub async fn create_tenant(&self, slug: &str) -> TenantId {
        let v = self
            .post(
                "/api/v1/tenants",
                json!({"slug": slug, "name": format!("Tenant {slug}")}),
            )
            .await;
        v["id"].as_str().unwrap().parse().unwrap()
    }

    /// Connects a Cloud API number (access token and app secret of the fakes).
    pub async fn add_cloud_channel(&self, tenant: &str, phone_number_id: &str) -> Value {
        self.post(
            &format!("/api/v1/tenants/{tenant}/channels"),
            json!({
                "type": "cloud_api", "name": format!("WA {phone_number_id}"),
                "phone_number_id": phone_number_id, "waba_id": WABA_ID,
                "access_token": ACCESS_TOKEN, "app_secret": APP_SECRET,
                "verify_token": format!("{VERIFY_TOKEN}-{phone_number_id}"),
            }),
        )
        .await
    }

    /// A tenant with one Cloud API channel: returns the tenant id.
    pub async fn tenant_with_channel(&self, slug: &str, phone_number_id: &str) -> TenantId {
        let id = self.create_tenant(slug).await;
        self.add_cloud_channel(slug, phone_number_id).await;
        id
    }

    /// POSTs a webhook body with the given signature header (None: no header).
    pub async fn post_webhook(&self, body: &[u8], signature: Option<&str>) -> (u16, String) {
        let mut req = self
            .http
            .post(format!("{}/webhooks/whatsapp", self.url))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header("x-hub-signature-256", sig);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// POSTs a webhook signed with the test app secret, as Meta would.
    pub async fn post_signed(&self, body: &[u8]) -> (u16, String) {
        let sig = sign(APP_SECRET.as_bytes(), body);
        self.post_webhook(body, Some(&sig)).await
    }

    /// What a request could have left behind: the event sequence (any event ever published moves
    /// it), the consumers' queues, and every row stored under each of `tenants`.
    pub fn footprint(&self, tenants: &[TenantId]) -> Footprint {
        let next_event_seq = self
            .store()
            .read(|r| next_event_seq(&r.operator()))
            .unwrap();
        let queued = Consumer::ALL
            .iter()
            .map(|c| queue_depth(self.store(), *c).unwrap())
            .collect();
        let tenant_rows = tenants
            .iter()
            .map(|t| {
                self.store()
                    .read(|r| r.operator().tenant_footprint(t))
                    .unwrap()
            })
            .collect();
        Footprint {
            next_event_seq,
            queued,
            tenant_rows,
        }
    }

    /// Waits until every published event has been handled, then returns the footprint.
    pub async fn settled_footprint(&self, tenants: &[TenantId]) -> Footprint {
        self.wait_for(WAIT, |app| {
            let f = app.footprint(tenants);
            f.queued.iter().all(|&n| n == 0).then_some(f)
        })
        .await
    }

    /// The stored message with this wamid in `tenant`, with its conversation.
    pub fn message_by_wamid(
        &self,
        tenant: TenantId,
        wamid: &str,
    ) -> Option<(Conversation, Message)> {
        self.conversations(tenant).into_iter().find_map(|c| {
            let m = self
                .messages(tenant, &c)
                .into_iter()
                .find(|m| m.wamid.as_deref() == Some(wamid))?;
            Some((c, m))
        })
    }

    /// Every stored message of `tenant`, across its conversations.
    pub fn all_messages(&self, tenant: TenantId) -> Vec<Message> {
        self.conversations(tenant)
            .iter()
            .flat_map(|c| self.messages(tenant, c))
            .collect()
    }

    pub fn conversations(&self, tenant: TenantId) -> Vec<Conversation> {
        conversations::list_conversations(self.store(), tenant, None, usize::MAX).unwrap()
    }

    pub fn messages(&self, tenant: TenantId, conversation: &Conversation) -> Vec<Message> {
        conversations::recent_messages(self.store(), tenant, conversation.id, usize::MAX).unwrap()
    }

    /// The newest conversation of customer `wa_id`.
    pub fn conversation_of(&self, tenant: TenantId, wa_id: &str) -> Option<Conversation> {
        self.conversations(tenant)
            .into_iter()
            .find(|c| c.contact_wa_id == wa_id)
    }

    /// Messages of `conversation` written by `author`, oldest first.
    pub fn messages_by(
        &self,
        tenant: TenantId,
        conversation: &Conversation,
        author: Author,
    ) -> Vec<Message> {
        self.messages(tenant, conversation)
            .into_iter()
            .filter(|m| m.author == author)
            .collect()
    }

    /// Nothing left to do: no queued event for any consumer and no scheduled assistant turn.
    /// A turn commits its reply's event in the same write that removes it from the schedule, so
    /// once idle, every reply that will ever be sent for what came in so far has been sent.
    pub fn is_idle(&self) -> bool {
        let store = self.store();
        let queues_empty = Consumer::ALL
            .iter()
            .all(|c| queue_depth(store, *c).unwrap() == 0);
        let no_turns = store
            .read(|r| r.operator().scan(&TURN_SCHEDULE, &[], false, 1))
            .unwrap()
            .is_empty();
        queues_empty && no_turns
    }

    pub async fn wait_idle(&self) {
        self.wait_for(WAIT, |app| app.is_idle().then_some(())).await
    }

    /// Waits (woken by the app's live updates, bounded by `timeout`) until `check` holds.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let mut updates = self.running.as_ref().unwrap().state.live.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            let now = tokio::time::Instant::now();
            assert!(now < deadline, "condition not reached within {timeout:?}");
            // Woken by any committed change; re-checked at least every 100 ms regardless.
            let _ = tokio::time::timeout(
                Duration::from_millis(100).min(deadline - now),
                updates.recv(),
            )
            .await;
        }
    }
}

/// A Meta-shaped text-message webhook (as in Meta's webhook reference).
pub fn text_webhook(phone_number_id: &str, from: &str, wamid: &str, text: &str) -> Vec<u8> {
    text_webhook_at(
        phone_number_id,
        from,
        wamid,
        text,
        jiff::Timestamp::now().as_second(),
    )
}

/// A text-message webhook whose message WhatsApp timestamped `unix_seconds`.
pub fn text_webhook_at(
    phone_number_id: &str,
    from: &str,
    wamid: &str,
    text: &str,
    unix_seconds: i64,
) -> Vec<u8> {
    let ts = unix_seconds.to_string();
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": WABA_ID,
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
                    "contacts": [{"profile": {"name": "Budi"}, "wa_id": from}],
                    "messages": [{"from": from, "id": wamid, "timestamp": ts, "type": "text", "text": {"body": text}}]
                }
            }]
        }]
    })
    .to_string()
    .into_bytes()
}

/// Replaces the fixture's phone_number_id(s) with `phone_number_id` and its timestamps with now.
pub fn fixture(name: &str, phone_number_id: &str) -> Vec<u8> {
    let mut v = fixture_value(name);
    for entry in v["entry"].as_array_mut().unwrap() {
        for change in entry["changes"].as_array_mut().unwrap() {
            let value = &mut change["value"];
            if value.get("metadata").is_some() {
                value["metadata"]["phone_number_id"] = json!(phone_number_id);
            }
        }
    }
    v.to_string().into_bytes()
}

/// A fixture with its timestamps set to now, everything else (phone_number_ids too) as in the file.
pub fn fixture_value(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let raw = std::fs::read_to_string(&path).unwrap();
    let mut v: Value = serde_json::from_str(&raw).unwrap();
    let now = jiff::Timestamp::now().as_second().to_string();
    for entry in v["entry"].as_array_mut().unwrap() {
        for change in entry["changes"].as_array_mut().unwrap() {
            let value = &mut change["value"];
            for list in ["messages", "statuses"] {
                if let Some(items) = value.get_mut(list).and_then(|l| l.as_array_mut()) {
                    for item in items {
                        item["timestamp"] = json!(now);
                    }
                }
            }
        }
    }
    v
}

/// The wamids of the messages (not statuses) in a webhook body, in order.
pub fn message_wamids(body: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(body).unwrap();
    let mut out = Vec::new();
    for entry in v["entry"].as_array().unwrap() {
        for change in entry["changes"].as_array().unwrap() {
            if let Some(messages) = change["value"]["messages"].as_array() {
                out.extend(
                    messages
                        .iter()
                        .map(|m| m["id"].as_str().unwrap().to_string()),
                );
            }
        }
    }
    out
}

/// The status webhook Meta would post for `send` (carrying its biz_opaque_callback_data).
pub fn status_webhook(send: &RecordedSend, status: StatusKind) -> Vec<u8> {
    let config = StatusWebhookConfig::new("unused", APP_SECRET);
    status_webhook_payload(&config, send, status, jiff::Timestamp::now())
        .to_string()
        .into_bytes()
}

impl TestApp {
    /// Stops this app and starts one on another data directory (a copy or a restore), with the
    /// same fakes. The temporary directory of the original is kept for the app's life.
    pub async fn restart_on(mut self, data_dir: &std::path::Path) -> Self {
        self.stop().await;
        let config = test_config(data_dir, &self.graph.base_url(), self.llm.as_ref(), 50);
        let Self {
            dir,
            graph,
            llm,
            status_webhooks,
            ..
        } = self;
        Self::launch_on(dir, config, graph, llm, status_webhooks).await
    }
}
