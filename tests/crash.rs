//! Crash safety of the real binary under load.
//!
//! Acceptance: "a load of many conversations, the server killed with SIGKILL at random points and
//! restarted: every acknowledged inbound message is stored and every turn is answered exactly
//! once."
//!
//! How. The real `wacrm serve` runs as a child process on a temporary data directory, configured
//! by a TOML file that points the Graph API and the model at fakes living in this test process:
//! the fake Graph API records every message it accepts and posts signed sent/delivered/read status
//! webhooks back, retrying failed deliveries like Meta does (that retry is what lets the sender
//! confirm a message it sent just before being killed, instead of sending it twice); the fake
//! model echoes, so a reply to "X" is "You said: X". The child listens on one fixed port across
//! restarts, as a real deployment keeps its webhook URL.
//!
//! Timing is set so kills land inside the interesting windows: the model answers slowly (a kill
//! interrupts a turn), the fake Graph API waits before taking a message (a kill there means it was
//! never sent: it must go out once after the reconciliation delay) and holds its answer after
//! taking it, with the status reports a moment later (a kill there means it *was* sent but the app
//! does not know: it must be confirmed by the redelivered status reports, never sent again).
//! Debounce and reconciliation delays are short so the whole run takes seconds.
//!
//! Many customers each send one distinct text, at random moments, from concurrent tasks. A
//! customer whose webhook is not answered 200 (connection refused, cut mid-request) posts it again
//! after a short backoff, as Meta redelivers; some customers whose webhook *was* acknowledged post
//! it once more later, which must be a no-op. Meanwhile the child is SIGKILLed at random moments
//! and restarted on the same data directory, several times. The plan (start times, which messages
//! are redelivered, kill moments) comes from a seeded RNG; the seed is printed, and
//! `WACRM_CRASH_SEED=<seed>` replays the plan (the interleaving with the child is still real
//! time, so a replay is likely, not certain, to hit the same windows).
//!
//! After the last restart the test waits, bounded, until the appliance is idle (every customer
//! answered, every status webhook delivered, both event queues empty), then checks, through the
//! JSON API and the fake's records:
//! - every message is stored exactly once, with its text, in its customer's one conversation
//!   (all messages end up acknowledged, so this covers every acknowledged one; the messages that
//!   were acknowledged before a kill and never redelivered are the ones that prove durability,
//!   and the test insists there are some);
//! - every customer received exactly one message at the fake Graph API, the echo of their text,
//!   and the stored reply carries that message's wamid and reached `read`.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use support::{test_config, text_webhook, ACCESS_TOKEN, APP_SECRET, VERIFY_TOKEN, WABA_ID};
use wacrm::testkit::fake_graph::{FakeGraph, FakeGraphOptions, StatusWebhookConfig};
use wacrm::testkit::fake_llm::{FakeLlm, FakeLlmOptions};
use wacrm::whatsapp::ingress::sign;

const PHONE_NUMBER_ID: &str = "106540352242922";
const TENANT: &str = "crash";
const CUSTOMERS: usize = 100;
const KILLS: usize = 5;
/// Customers start writing at random moments within this window, which the kills overlap.
const LOAD_WINDOW: Duration = Duration::from_secs(6);
/// Bound on every wait for a condition (start-up, all answered, idle).
const BOUND: Duration = Duration::from_secs(60);

/// The child process and how to (re)start it.
struct Server {
    bin: PathBuf,
    config: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    listen: String,
    url: String,
    child: Option<Child>,
    token: String,
    /// Fresh per start: pooled connections to a killed process are dead.
    api: reqwest::Client,
}

impl Server {
    async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("serve")
            .arg("--listen")
            .arg(&self.listen)
            .env("WACRM_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        // The developer's own WACRM_* settings must not leak into the child's configuration.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("WACRM_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd.spawn().unwrap();
        self.api = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        // The one readiness wait for a child process: poll /healthz, bounded.
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "wacrm exited during start-up ({status}); log:\n{}",
                    self.log_tail()
                );
            }
            let probe = self
                .api
                .get(format!("{}/healthz", self.url))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if probe.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "wacrm did not answer /healthz within {BOUND:?}; log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Created before the server listens, so it exists once /healthz answers.
        self.token = std::fs::read_to_string(self.data_dir.join("operator.token"))
            .unwrap()
            .trim()
            .to_string();
        self.child = Some(child);
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap it.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .api
            .request(method.clone(), format!("{}{}", self.url, path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }

    async fn get(&self, path: &str) -> Value {
        self.api(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.api(reqwest::Method::POST, path, Some(body)).await
    }
}

/// A port that was free a moment ago (the child must keep one URL across restarts).
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

fn write_config(path: &Path, data_dir: &Path, listen: &str, graph: &FakeGraph, llm: &FakeLlm) {
    let mut config = test_config(data_dir, &graph.base_url(), Some(llm), 100);
    config.listen = listen.parse().unwrap();
    config.graph.reconcile_after_ms = 4_000;
    config.graph.rate_per_second = 1_000;
    std::fs::write(path, toml::to_string(&config).unwrap()).unwrap();
}

struct Customer {
    wa_id: String,
    wamid: String,
    text: String,
    body: Vec<u8>,
    start_after: Duration,
    /// Post it once more this long after it was acknowledged.
    redeliver_after: Option<Duration>,
}

/// What the load saw, per customer.
#[derive(Default, Clone, Copy)]
struct Outcome {
    /// Generation (number of kills so far) when the first 200 came back.
    acked_in_generation: u32,
    failed_posts: u32,
    redelivered: bool,
}

/// Posts a signed webhook until it gets a 200, as Meta does; returns the failed tries.
async fn deliver(http: &reqwest::Client, url: &str, body: &[u8], rng: &mut StdRng) -> u32 {
    let signature = sign(APP_SECRET.as_bytes(), body);
    let mut failed = 0;
    loop {
        let answer = http
            .post(format!("{url}/webhooks/whatsapp"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", &signature)
            .body(body.to_vec())
            .send()
            .await;
        if answer.is_ok_and(|r| r.status().as_u16() == 200) {
            return failed;
        }
        failed += 1;
        assert!(failed < 2_000, "a webhook was never acknowledged");
        // Meta's redelivery backoff, shortened.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(30..150))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill_and_every_turn_is_answered_exactly_once() {
    let seed: u64 = std::env::var("WACRM_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("crash test seed: {seed} (replay with WACRM_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let graph = FakeGraph::start(FakeGraphOptions::new(ACCESS_TOKEN))
        .await
        .unwrap();
    // Latency on both fakes keeps turns and sends in flight long enough for kills to land in
    // them: before the Graph API takes a message (it was never sent: send it again), and after
    // it took it but before the answer arrived (it was sent: never send it again).
    graph.set_latency(Some(Duration::from_millis(40)));
    graph.set_answer_delay(Some(Duration::from_millis(80)));
    let llm = FakeLlm::start(FakeLlmOptions {
        latency: Duration::from_millis(150),
        ..FakeLlmOptions::default()
    })
    .await
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{listen}");
    let mut server = Server {
        bin: PathBuf::from(env!("CARGO_BIN_EXE_wacrm")),
        config: dir.path().join("wacrm.toml"),
        data_dir: dir.path().join("data"),
        log: dir.path().join("wacrm.log"),
        listen: listen.clone(),
        url: url.clone(),
        child: None,
        token: String::new(),
        api: reqwest::Client::new(),
    };
    write_config(&server.config, &server.data_dir, &listen, &graph, &llm);
    let mut hook = StatusWebhookConfig::new(format!("{url}/webhooks/whatsapp"), APP_SECRET);
    hook.retry_for = Duration::from_secs(30);
    hook.retry_max_delay = Duration::from_millis(300);
    // Statuses come a moment after the answer, so a kill can fall between the Graph API taking a
    // message and the app learning of it either way.
    hook.delay = Duration::from_millis(300);
    graph.set_status_webhook(Some(hook));

    server.start().await;
    server
        .post(
            "/api/v1/tenants",
            json!({"slug": TENANT, "name": "Crash Test"}),
        )
        .await;
    server
        .post(
            &format!("/api/v1/tenants/{TENANT}/channels"),
            json!({
                "type": "cloud_api", "name": "WA crash",
                "phone_number_id": PHONE_NUMBER_ID, "waba_id": WABA_ID,
                "access_token": ACCESS_TOKEN, "app_secret": APP_SECRET,
                "verify_token": VERIFY_TOKEN,
            }),
        )
        .await;

    // The plan, drawn up front from the seed.
    let customers: Vec<Arc<Customer>> = (0..CUSTOMERS)
        .map(|i| {
            let wa_id = format!("62812{i:07}");
            let wamid = format!("wamid.CRASH{i:04}");
            let text = format!("Message {i}: is order number {i} ready for pickup?");
            Arc::new(Customer {
                body: text_webhook(PHONE_NUMBER_ID, &wa_id, &wamid, &text),
                wa_id,
                wamid,
                text,
                start_after: rng.gen_range(Duration::ZERO..LOAD_WINDOW),
                redeliver_after: rng
                    .gen_bool(0.3)
                    .then(|| rng.gen_range(Duration::ZERO..Duration::from_secs(3))),
            })
        })
        .collect();
    let kills: Vec<(Duration, Duration)> = (0..KILLS)
        .map(|_| {
            (
                rng.gen_range(Duration::from_millis(50)..Duration::from_millis(2_000)),
                rng.gen_range(Duration::ZERO..Duration::from_millis(300)),
            )
        })
        .collect();

    // The load: one task per customer, posting like Meta.
    let generation = Arc::new(AtomicU32::new(0));
    let outcomes = Arc::new(Mutex::new(vec![Outcome::default(); CUSTOMERS]));
    let load_http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut load = tokio::task::JoinSet::new();
    for (i, customer) in customers.iter().enumerate() {
        let (customer, http, url) = (customer.clone(), load_http.clone(), url.clone());
        let (generation, outcomes) = (generation.clone(), outcomes.clone());
        let mut task_rng = StdRng::seed_from_u64(seed ^ (i as u64 + 1));
        load.spawn(async move {
            tokio::time::sleep(customer.start_after).await;
            let failed = deliver(&http, &url, &customer.body, &mut task_rng).await;
            let acked_in_generation = generation.load(Ordering::SeqCst);
            outcomes.lock().unwrap()[i] = Outcome {
                acked_in_generation,
                failed_posts: failed,
                redelivered: false,
            };
            if let Some(after) = customer.redeliver_after {
                tokio::time::sleep(after).await;
                let failed = deliver(&http, &url, &customer.body, &mut task_rng).await;
                let mut all = outcomes.lock().unwrap();
                all[i].redelivered = true;
                all[i].failed_posts += failed;
            }
        });
    }

    // The chaos: SIGKILL at random moments, restart on the same data directory and port.
    for (k, (uptime, downtime)) in kills.iter().enumerate() {
        tokio::time::sleep(*uptime).await;
        server.kill().await;
        generation.fetch_add(1, Ordering::SeqCst);
        println!(
            "kill {}: after {uptime:?} up; {} sends so far; down for {downtime:?}",
            k + 1,
            graph.sent().len()
        );
        tokio::time::sleep(*downtime).await;
        server.start().await;
    }

    let joined = tokio::time::timeout(BOUND, async {
        while let Some(r) = load.join_next().await {
            r.unwrap();
        }
    })
    .await;
    assert!(joined.is_ok(), "the load did not finish within {BOUND:?}");

    // Wait (bounded) until the appliance is idle: every customer answered, every status webhook
    // delivered and applied, nothing queued. Only then can no further send happen.
    let deadline = Instant::now() + BOUND;
    loop {
        let sent = graph.sent();
        let answered = customers
            .iter()
            .all(|c| sent.iter().any(|s| s.to == c.wa_id));
        let webhooks_done = graph.webhook_deliveries().len() == 3 * sent.len();
        let ready = server.get("/readyz").await;
        let idle = ready["queue_depth"]
            .as_object()
            .is_some_and(|d| d.values().all(|v| v.as_u64() == Some(0)));
        if answered && webhooks_done && idle {
            break;
        }
        if Instant::now() >= deadline {
            let unanswered: Vec<&str> = customers
                .iter()
                .filter(|c| !sent.iter().any(|s| s.to == c.wa_id))
                .map(|c| c.wa_id.as_str())
                .collect();
            let conversations = server
                .get(&format!(
                    "/api/v1/tenants/{TENANT}/conversations?limit=1000"
                ))
                .await;
            let stored: Vec<&str> = conversations
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["contact_wa_id"].as_str())
                .filter(|wa_id| unanswered.contains(wa_id))
                .collect();
            panic!(
                "not idle within {BOUND:?}: {} sends, {} status webhooks done, {ready}\n\
                 unanswered customers {unanswered:?}, of whom these have a conversation: \
                 {stored:?}\nlog:\n{}",
                sent.len(),
                graph.webhook_deliveries().len(),
                server.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let outcomes = outcomes.lock().unwrap().clone();
    let durable_witnesses = outcomes
        .iter()
        .filter(|o| o.acked_in_generation < KILLS as u32 && !o.redelivered)
        .count();
    println!(
        "{CUSTOMERS} customers, {KILLS} kills: {} webhook posts failed and were redelivered, {} \
         acknowledged ones redelivered, {durable_witnesses} acknowledged before a kill and never \
         redelivered; {} Graph requests, {} accepted",
        outcomes.iter().map(|o| o.failed_posts).sum::<u32>(),
        outcomes.iter().filter(|o| o.redelivered).count(),
        graph.attempts().len(),
        graph.sent().len()
    );
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    println!(
        "recovery seen in the log: {} resumptions of queued events, {} of scheduled turns, {} \
         unconfirmed sends resent",
        log.matches("resuming queued events").count(),
        log.matches("resuming scheduled assistant turns").count(),
        log.matches("no status report for an unconfirmed send")
            .count(),
    );
    println!(
        "status webhooks posted while the app was down and retried: {}",
        graph
            .webhook_deliveries()
            .iter()
            .filter(|d| d.tries > 1)
            .count()
    );
    assert!(
        durable_witnesses > 0,
        "no message was acknowledged before a kill without being redelivered: the plan proves nothing"
    );
    for webhook in graph.webhook_deliveries() {
        assert_eq!(webhook.http_status, Some(200), "{webhook:?}");
    }

    // Exactly one reply per customer, the echo of their message.
    let mut sent_to: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for send in graph.sent() {
        sent_to.entry(send.to.clone()).or_default().push(send);
    }
    for c in &customers {
        let sends = sent_to.remove(&c.wa_id).unwrap_or_default();
        let texts: Vec<&Value> = sends.iter().map(|s| &s.body["text"]["body"]).collect();
        assert_eq!(sends.len(), 1, "customer {} got {texts:?}", c.wa_id);
        assert_eq!(texts[0], &json!(format!("You said: {}", c.text)));
    }
    assert!(sent_to.is_empty(), "sends to strangers: {sent_to:?}");
    let wamid_of_reply: HashMap<String, String> =
        graph.sent().into_iter().map(|s| (s.to, s.wamid)).collect();

    // Every message stored exactly once, in its customer's one conversation, with its reply.
    let list = server
        .get(&format!(
            "/api/v1/tenants/{TENANT}/conversations?limit=1000"
        ))
        .await;
    let conversations = list.as_array().unwrap();
    assert_eq!(
        conversations.len(),
        CUSTOMERS,
        "one conversation per customer"
    );
    let mut by_customer: HashMap<String, String> = HashMap::new();
    for c in conversations {
        let previous = by_customer.insert(
            c["contact_wa_id"].as_str().unwrap().to_string(),
            c["id"].as_str().unwrap().to_string(),
        );
        assert!(
            previous.is_none(),
            "two conversations for {}",
            c["contact_wa_id"]
        );
    }
    let mut confirmed_after_crash = 0;
    for c in &customers {
        let id = by_customer
            .get(&c.wa_id)
            .unwrap_or_else(|| panic!("no conversation for {}", c.wa_id));
        let detail = server
            .get(&format!("/api/v1/tenants/{TENANT}/conversations/{id}"))
            .await;
        let messages = detail["messages"].as_array().unwrap();
        let inbound: Vec<&Value> = messages
            .iter()
            .filter(|m| m["author"] == "customer")
            .collect();
        let replies: Vec<&Value> = messages
            .iter()
            .filter(|m| m["author"] == "assistant")
            .collect();
        assert_eq!(inbound.len(), 1, "{}: {messages:#?}", c.wa_id);
        assert_eq!(inbound[0]["wamid"], c.wamid.as_str());
        assert_eq!(
            inbound[0]["body"]["content"]["data"]["body"],
            c.text.as_str(),
            "{inbound:?}"
        );
        assert_eq!(replies.len(), 1, "{}: {messages:#?}", c.wa_id);
        if replies[0]["failure"]
            .as_str()
            .is_some_and(|f| f.starts_with("interrupted while sending"))
        {
            confirmed_after_crash += 1;
        }
        assert_eq!(
            replies[0]["body"]["content"]["body"],
            format!("You said: {}", c.text).as_str()
        );
        assert_eq!(replies[0]["status"], "read", "{:?}", replies[0]);
        assert_eq!(replies[0]["wamid"], wamid_of_reply[&c.wa_id].as_str());
        assert_eq!(messages.len(), 2, "{}: {messages:#?}", c.wa_id);
        assert_eq!(detail["conversation"]["state"], "bot");
    }

    println!(
        "replies in flight at a kill, then confirmed by their status reports (not resent): \
         {confirmed_after_crash}"
    );
    server.kill().await;
}

/// The in-process cousin of a crash mid-send: the answer to a send is lost (the request times
/// out) although Meta took the message, and its status reports (sent, delivered, read) arrive
/// while the sender still waits. The message is confirmed by them; it must not be marked
/// unconfirmed afterwards and sent again once the reconciliation delay has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_whose_answer_is_lost_is_confirmed_by_its_status_reports_not_resent() {
    use support::{Options, TestApp, WAIT};
    use wacrm::events::{queue_depth, Consumer};
    use wacrm::testkit::fake_graph::Failure;

    let app = TestApp::start(Options {
        tweak: Box::new(|c| {
            // Long enough for the statuses to arrive while the request is held.
            c.graph.timeout_ms = 1_000;
            c.graph.reconcile_after_ms = 1_000;
        }),
        ..Options::default()
    })
    .await;
    let tenant = app.tenant_with_channel("acme", PHONE_NUMBER_ID).await;
    // The turn's read receipt and its reply are the next two requests, in either order: both
    // are held past the client's timeout (the fake accepts them and reports statuses at once).
    app.graph.fail_next(2, Failure::Timeout);
    let body = text_webhook(
        PHONE_NUMBER_ID,
        "6281234567890",
        "wamid.LOST1",
        "hello there",
    );
    assert_eq!(app.post_signed(&body).await.0, 200);

    // Idle: the reply is read and the sender has nothing left to do, so no later send can come.
    app.wait_for(WAIT, |app| {
        let c = app.conversations(tenant).pop()?;
        let read = app.messages(tenant, &c).into_iter().any(|m| {
            m.author == wacrm::conversations::Author::Assistant
                && m.status == wacrm::conversations::MessageStatus::Read
        });
        (read && queue_depth(app.store(), Consumer::Sender).ok()? == 0).then_some(())
    })
    .await;
    let timed_out = app
        .graph
        .attempts()
        .iter()
        .filter(|a| a.injected == Some(Failure::Timeout) && a.wamid.is_some())
        .count();
    assert_eq!(timed_out, 1, "the reply's send timed out");
    let sent = app.graph.sent();
    assert_eq!(sent.len(), 1, "the customer got the reply twice: {sent:#?}");
}
