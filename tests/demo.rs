//! `wacrm demo`, as a newcomer runs it: the real binary on a fresh data directory prints the
//! dashboard URL and an admin's password; that admin signs in, the demo knowledge base finishes
//! ingesting, a simulated customer's question is answered from it, and a second start reuses
//! everything instead of creating it twice.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const WAIT: Duration = Duration::from_secs(120);

struct Demo {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    printed: Vec<String>,
}

fn start(data_dir: &std::path::Path) -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wacrm"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env(
            "WACRM_MODELS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/models"),
        )
        .env("WACRM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout");
    Demo {
        child,
        lines: BufReader::new(stdout).lines(),
        printed: Vec::new(),
    }
}

impl Demo {
    /// Reads what the demo prints until the line starting with `prefix`; returns that line.
    async fn until(&mut self, prefix: &str) -> String {
        let read = async {
            while let Some(line) = self.lines.next_line().await.expect("stdout readable") {
                self.printed.push(line.clone());
                if line.trim_start().starts_with(prefix) {
                    return line;
                }
            }
            panic!(
                "the demo exited before printing {prefix:?}: {:?}",
                self.printed
            );
        };
        tokio::time::timeout(WAIT, read)
            .await
            .unwrap_or_else(|_| panic!("no {prefix:?} line: {:?}", self.printed))
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

struct Session {
    http: reqwest::Client,
    url: String,
    cookie: String,
    csrf: String,
}

impl Session {
    async fn sign_in(url: &str, email: &str, password: &str) -> Session {
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{url}/api/v1/auth/sign-in"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "sign-in with the printed password");
        let cookie = resp
            .headers()
            .get("set-cookie")
            .and_then(|c| c.to_str().ok())
            .and_then(|c| c.split(';').next())
            .expect("a session cookie")
            .to_string();
        let body: Value = resp.json().await.unwrap();
        Session {
            http,
            url: url.to_string(),
            cookie,
            csrf: body["csrf_token"].as_str().unwrap().to_string(),
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "POST {path}: {}", resp.status());
        resp.json().await.unwrap()
    }
}

async fn documents(s: &Session) -> Vec<Value> {
    s.get_json("/api/v1/tenants/demo/knowledge-bases/faq/documents")
        .await
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_signs_in_answers_from_its_knowledge_base_and_restarts_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = start(dir.path());
    let running = demo.until("wacrm is running at ").await;
    let url = running
        .trim_start_matches("wacrm is running at ")
        .trim()
        .to_string();
    let channel_line = demo.until("demo tenant: ").await;
    let channel = channel_line
        .rsplit("sandbox channel: ")
        .next()
        .unwrap()
        .trim()
        .to_string();
    let dashboard = demo.until("dashboard: ").await;
    assert!(dashboard.contains(&format!("{url}/dash")), "{dashboard}");
    let password = demo.until("password (shown once): ").await;
    let password = password.rsplit(": ").next().unwrap().trim().to_string();

    let admin = Session::sign_in(&url, "admin@demo.local", &password).await;
    let (status, inbox) = admin.get("/dash/inbox").await;
    assert_eq!(status, 200, "{inbox}");

    // The demo's FAQ becomes searchable in the background.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let docs = documents(&admin).await;
        assert_eq!(docs.len(), 1, "{docs:?}");
        match docs[0]["status"].as_str() {
            Some("ready") => break,
            Some("failed") => panic!("the demo FAQ failed: {docs:?}"),
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready: {docs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A customer asks on the sandbox channel; the assistant answers from the FAQ.
    let customer = "6281200000001";
    let sandbox = format!("/api/v1/tenants/demo/sandbox/{channel}/messages");
    admin
        .post(
            &sandbox,
            json!({"from": customer, "text": "What time do you open on Sunday?"}),
        )
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let answer = loop {
        let view = admin
            .get_json(&format!("{sandbox}?from={customer}&wait_ms=5000"))
            .await;
        if let Some(m) = view["messages"].as_array().and_then(|m| m.first()) {
            break m["text"].as_str().unwrap().to_string();
        }
        assert!(tokio::time::Instant::now() < deadline, "no answer: {view}");
    };
    assert!(answer.contains("09:00"), "answered from the FAQ: {answer}");
    demo.stop().await;

    // A second start finds everything in place and creates nothing twice.
    let mut demo = start(dir.path());
    let running = demo.until("wacrm is running at ").await;
    let url = running
        .trim_start_matches("wacrm is running at ")
        .trim()
        .to_string();
    let again = demo.until("password: ").await;
    assert!(!again.contains("shown once"), "{again}");
    let admin = Session::sign_in(&url, "admin@demo.local", &password).await;
    assert_eq!(documents(&admin).await.len(), 1);
    let channels = admin.get_json("/api/v1/tenants/demo/channels").await;
    assert_eq!(channels.as_array().unwrap().len(), 1, "{channels}");
    demo.stop().await;
}
