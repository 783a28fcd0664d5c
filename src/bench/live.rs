//! `wacrm bench live`: fan-out of live updates to many dashboards.
//!
//! Runs the real binary (`wacrm serve`, so its memory is measured alone) on a throwaway data
//! directory, signs in, opens `clients` live sockets for one tenant and `other_clients` spread
//! over other tenants, then posts signed customer webhooks at a fixed rate to every tenant.
//! Reports, for the sockets of the main tenant, the latency from the commit that filed each
//! message (the feed entry's timestamp) to its receipt, and from the webhook's POST to receipt;
//! the server's resident memory per socket; and whether every socket got every message of its
//! own tenant exactly once and none of another's. The assistant is kept out of the way (an hour
//! of debounce) so the figures are the live channel's own.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const APP_SECRET: &str = "bench-app-secret";

pub struct LiveArgs {
    pub clients: usize,
    pub other_tenants: usize,
    pub other_clients: usize,
    pub messages: usize,
    pub rate: f64,
}

struct Server {
    child: tokio::process::Child,
    url: String,
    token: String,
    _dir: TempDir,
}

/// A throwaway data directory, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "wacrm-bench-live-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for pid {pid}"))
}

async fn start_server() -> anyhow::Result<Server> {
    let dir = TempDir::new()?;
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        // No assistant turn and no Graph API reachable: only the live channel works.
        .env("WACRM_PIPELINE__DEBOUNCE_MS", "3600000")
        .env("WACRM_GRAPH__BASE_URL", "http://127.0.0.1:9")
        .env("WACRM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start wacrm serve")?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.strip_prefix("wacrm is running at ") {
                return Ok::<_, anyhow::Error>(url.trim().to_string());
            }
        }
        bail!("the server exited before listening")
    })
    .await
    .context("the server did not start")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let token = std::fs::read_to_string(dir.path().join(crate::web::auth::OPERATOR_TOKEN_FILE))?
        .trim()
        .to_string();
    Ok(Server {
        child,
        url,
        token,
        _dir: dir,
    })
}

async fn api(http: &reqwest::Client, s: &Server, path: &str, body: Value) -> anyhow::Result<Value> {
    let resp = http
        .post(format!("{}{}", s.url, path))
        .bearer_auth(&s.token)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("POST {path}: {status} {v}");
    }
    Ok(v)
}

fn cookie_from(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            let (k, v) = c.split(';').next()?.split_once('=')?;
            (k == name && !v.is_empty()).then(|| v.to_string())
        })
}

/// Signs in to the dashboard as an agent of `tenant`; returns the Cookie header.
async fn sign_in(s: &Server, tenant: &str) -> anyhow::Result<String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let form = http.get(format!("{}/dash/signin", s.url)).send().await?;
    let signin = cookie_from(&form, crate::web::dashboard::session::SIGNIN_COOKIE)
        .ok_or_else(|| anyhow!("no sign-in cookie"))?;
    let html = form.text().await?;
    let at = html
        .find("name=\"csrf\" value=\"")
        .ok_or_else(|| anyhow!("no csrf on the sign-in form"))?
        + 19;
    let csrf = html[at..].split('"').next().unwrap_or_default().to_string();
    let resp = http
        .post(format!("{}/dash/signin", s.url))
        .header("cookie", format!("wacrm_signin={signin}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("token", s.token.as_str()),
            ("tenant", tenant),
            ("name", "Bench"),
            ("role", "agent"),
            ("outlet", ""),
        ])
        .send()
        .await?;
    let session = cookie_from(&resp, crate::web::dashboard::session::SESSION_COOKIE)
        .ok_or_else(|| anyhow!("sign-in refused: {}", resp.status()))?;
    Ok(format!("wacrm_session={session}"))
}

fn webhook(phone_number_id: &str, from: &str, wamid: &str, text: &str) -> Vec<u8> {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
            "contacts": [{"profile": {"name": "Bench"}, "wa_id": from}],
            "messages": [{"from": from, "id": wamid, "timestamp": jiff::Timestamp::now().as_second().to_string(),
                          "type": "text", "text": {"body": text}}]
        }}]}]
    })
    .to_string()
    .into_bytes()
}

/// What one socket saw.
#[derive(Default)]
struct Seen {
    /// message id → latency from the filing commit (µs).
    commit_latency: HashMap<String, i64>,
    /// Texts of the customer messages received, for the post-to-receipt figure.
    texts: HashMap<String, i64>,
    duplicates: usize,
    foreign: usize,
}

fn now_us() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

async fn client(
    url: String,
    cookie: String,
    tenant_marker: String,
    seen: Arc<Mutex<Seen>>,
    ready: tokio::sync::mpsc::UnboundedSender<()>,
) -> anyhow::Result<()> {
    let mut req = format!("{}/dash/live", url.replacen("http", "ws", 1)).into_client_request()?;
    req.headers_mut().insert("cookie", cookie.parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    while let Some(msg) = ws.next().await {
        // Receipt time first: parsing is the client's cost, not the fan-out's.
        let at = now_us();
        let WsMessage::Text(text) = msg? else {
            continue;
        };
        // String search, not a JSON parse: with thousands of sockets in one process, the
        // client's own parsing would otherwise delay the receipts it is timing.
        let text: &str = &text;
        if text.contains("\"t\":\"ready\"") {
            let _ = ready.send(());
            continue;
        }
        if !(text.contains("\"kind\":\"message\"") && text.contains("\"author\":\"customer\"")) {
            continue;
        }
        let id = field(text, "\"m\":\"", '"').unwrap_or_default().to_string();
        let at_us = field(text, "\"at_us\":", ',')
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(at);
        let body = field(text, "<p class=\\\"text\\\">", '<').map(str::to_string);
        let mut s = seen.lock().map_err(|_| anyhow!("poisoned"))?;
        if !text.contains(&tenant_marker) {
            s.foreign += 1;
        }
        if s.commit_latency.insert(id, at - at_us).is_some() {
            s.duplicates += 1;
        }
        if let Some(body) = body {
            s.texts.insert(body, at);
        }
    }
    Ok(())
}

/// The text after `start` up to `end` (exclusive).
fn field<'a>(text: &'a str, start: &str, end: char) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let rest = &text[from..];
    Some(&rest[..rest.find(end)?])
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

pub async fn run(args: LiveArgs) -> anyhow::Result<()> {
    let server = start_server().await?;
    let pid = server
        .child
        .id()
        .ok_or_else(|| anyhow!("server has no pid"))?;
    let http = reqwest::Client::new();
    println!("live bench: server {} (pid {pid})", server.url);

    // Tenants, each with one Cloud API number whose webhooks the bench signs.
    let mut tenants = vec![("bench-main".to_string(), "900000000000".to_string())];
    for i in 0..args.other_tenants {
        tenants.push((format!("bench-other-{i}"), format!("9000000001{i:02}")));
    }
    let mut cookies = Vec::new();
    for (slug, phone) in &tenants {
        api(
            &http,
            &server,
            "/api/v1/tenants",
            json!({"slug": slug, "name": slug}),
        )
        .await?;
        api(
            &http,
            &server,
            &format!("/api/v1/tenants/{slug}/channels"),
            json!({"type": "cloud_api", "name": "bench", "phone_number_id": phone, "waba_id": "1",
                   "access_token": "x", "app_secret": APP_SECRET, "verify_token": format!("vt-{slug}")}),
        )
        .await?;
        cookies.push(sign_in(&server, slug).await?);
    }

    let rss_before = rss_kib(pid)?;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut sockets: Vec<(usize, Arc<Mutex<Seen>>)> = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    let total = args.clients + args.other_clients;
    let connect_started = Instant::now();
    for i in 0..total {
        let t = if i < args.clients || tenants.len() == 1 {
            0
        } else {
            1 + (i - args.clients) % (tenants.len() - 1)
        };
        let seen = Arc::new(Mutex::new(Seen::default()));
        sockets.push((t, seen.clone()));
        let (url, cookie, marker, ready) = (
            server.url.clone(),
            cookies[t].clone(),
            format!("[{}]", tenants[t].0),
            ready_tx.clone(),
        );
        tasks.spawn(async move {
            if let Err(e) = client(url, cookie, marker, seen, ready).await {
                tracing::warn!(error = %e, "bench client ended");
            }
        });
    }
    for n in 0..total {
        tokio::time::timeout(Duration::from_secs(120), ready_rx.recv())
            .await
            .map_err(|_| anyhow!("only {n} of {total} sockets became ready"))?;
    }
    let connect_time = connect_started.elapsed();
    // Let the server settle its allocations before reading its memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib(pid)?;
    println!(
        "{total} sockets ready in {:.1} s; server RSS {} MiB -> {} MiB",
        connect_time.as_secs_f64(),
        rss_before / 1024,
        rss_after / 1024
    );

    // Customer messages at a fixed rate, round robin over the tenants (the main tenant gets
    // `messages`; each other tenant a share), each text tagged with its tenant.
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.1));
    let mut posted_at: HashMap<String, i64> = HashMap::new();
    let mut expected: Vec<usize> = vec![0; tenants.len()];
    let mut tick = tokio::time::interval(interval);
    for i in 0..args.messages {
        tick.tick().await;
        let t = if tenants.len() == 1 || i % 4 != 3 {
            0
        } else {
            1 + (i / 4) % (tenants.len() - 1)
        };
        let (slug, phone) = &tenants[t];
        let text = format!("[{slug}] message {i}");
        let body = webhook(
            phone,
            &format!("62811{:07}", i % 50),
            &format!("wamid.bench.{i}"),
            &text,
        );
        let sig = crate::whatsapp::ingress::sign(APP_SECRET.as_bytes(), &body);
        posted_at.insert(text.clone(), now_us());
        let resp = http
            .post(format!("{}/webhooks/whatsapp", server.url))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sig)
            .body(body)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("webhook refused: {}", resp.status());
        }
        expected[t] += 1;
    }

    // Wait (bounded) until every socket has its tenant's messages.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = sockets.iter().all(|(t, s)| {
            s.lock()
                .map(|s| s.commit_latency.len() >= expected[*t])
                .unwrap_or(false)
        });
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = tokio::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .await;
    tasks.abort_all();

    let mut commit = Vec::new();
    let mut post = Vec::new();
    let (mut missing, mut duplicates, mut foreign) = (0usize, 0usize, 0usize);
    let mut main_sockets = 0usize;
    for (t, s) in &sockets {
        let s = s.lock().map_err(|_| anyhow!("poisoned"))?;
        missing += expected[*t].saturating_sub(s.commit_latency.len());
        duplicates += s.duplicates;
        foreign += s.foreign;
        if *t == 0 {
            main_sockets += 1;
            commit.extend(s.commit_latency.values().copied());
            for (text, at) in &s.texts {
                if let Some(p) = posted_at.get(text) {
                    post.push(at - p);
                }
            }
        }
    }
    commit.sort_unstable();
    post.sort_unstable();
    let per_socket = (rss_after.saturating_sub(rss_before) as f64) / total.max(1) as f64;
    println!();
    println!(
        "| live fan-out ({main_sockets} sockets of one tenant, {} of {} others) | value |",
        total - main_sockets,
        tenants.len() - 1
    );
    println!("|---|---|");
    println!(
        "| messages posted (main tenant / all) | {} / {} |",
        expected[0], args.messages
    );
    println!("| deliveries measured | {} |", commit.len());
    println!(
        "| commit -> socket p50 | {:.1} ms |",
        percentile(&commit, 0.50)
    );
    println!(
        "| commit -> socket p99 | {:.1} ms |",
        percentile(&commit, 0.99)
    );
    println!(
        "| commit -> socket max | {:.1} ms |",
        percentile(&commit, 1.0)
    );
    println!(
        "| webhook POST -> socket p50 | {:.1} ms |",
        percentile(&post, 0.50)
    );
    println!(
        "| webhook POST -> socket p99 | {:.1} ms |",
        percentile(&post, 0.99)
    );
    println!("| server memory per socket | {:.1} KiB |", per_socket);
    println!("| missing / duplicated / other tenant's | {missing} / {duplicates} / {foreign} |");
    let target = if percentile(&commit, 0.99) < 100.0 {
        "met"
    } else {
        "NOT met"
    };
    println!("target (p99 < 100 ms at 2,000 sockets): {target} at {main_sockets} sockets");
    if missing + duplicates + foreign > 0 {
        bail!("live fan-out lost, duplicated or leaked messages");
    }
    Ok(())
}
