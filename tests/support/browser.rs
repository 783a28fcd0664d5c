//! A small WebDriver client for the browser tests: Debian's headless Chromium driven through
//! chromedriver over plain HTTP (reqwest), no extra crate. One browser serves a whole suite.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Longest a single wait for something on the page may take.
pub const PAGE_WAIT: Duration = Duration::from_secs(20);
/// One in-page wait; a navigation in the middle costs at most this (plus the script timeout).
const STEP_MS: u64 = 2_000;

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// Where the screenshots of each run go.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots")
}

impl Browser {
    /// Starts chromedriver (which prints its port once it listens) and one headless Chromium.
    pub async fn start() -> Self {
        let mut driver = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver not found: apt-get install -y chromium chromium-driver");
        let stdout = driver.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').trim().parse::<u16>().unwrap();
                }
            }
            panic!("chromedriver exited before listening");
        })
        .await
        .expect("chromedriver did not start");
        // Keep draining its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let profile = tempfile::tempdir().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-dev-shm-usage", "--no-first-run", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {resp}"))
            .to_string();
        let b = Self {
            driver,
            base,
            session,
            http,
            _profile: profile,
        };
        b.cmd(
            "POST",
            "timeouts",
            json!({"script": STEP_MS + 1_000, "pageLoad": 30_000}),
        )
        .await;
        b
    }

    async fn try_cmd(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}/session/{}/{}", self.base, self.session, path);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let resp: Value = req
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if let Some(err) = resp["value"].get("error") {
            return Err(format!("{err} {}", resp["value"]["message"]));
        }
        Ok(resp["value"].clone())
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        match self.try_cmd(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    /// Clicks a form's button and waits until the page it leads to has loaded.
    pub async fn submit(&self, css: &str) {
        self.js("window.__wacrmBefore = true;", json!([])).await;
        self.click(css).await;
        let deadline = tokio::time::Instant::now() + PAGE_WAIT;
        loop {
            let loaded = self
                .try_cmd(
                    "POST",
                    "execute/sync",
                    json!({"script": "return !window.__wacrmBefore && document.readyState === 'complete';", "args": []}),
                )
                .await;
            if loaded == Ok(Value::Bool(true)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no new page after clicking {css}"
            );
            // Navigation gives no event to wait on from here: re-check shortly.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "url", json!({"url": url})).await;
    }

    pub async fn url(&self) -> String {
        self.cmd("GET", "url", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                "POST",
                "element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("find {css}: {v}"))
            .to_string()
    }

    pub async fn count(&self, css: &str) -> usize {
        self.cmd(
            "POST",
            "elements",
            json!({"using": "css selector", "value": css}),
        )
        .await
        .as_array()
        .map(|a| a.len())
        .unwrap_or(0)
    }

    /// Clicks `css`; if the live updates replaced it between finding and clicking, finds it again.
    pub async fn click(&self, css: &str) {
        for _ in 0..5 {
            let id = self.find(css).await;
            match self
                .try_cmd("POST", &format!("element/{id}/click"), json!({}))
                .await
            {
                Ok(_) => return,
                Err(e) if e.contains("stale element") => continue,
                Err(e) => panic!("click {css}: {e}"),
            }
        }
        panic!("click {css}: the element kept being replaced");
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd("POST", &format!("element/{id}/clear"), json!({}))
            .await;
        self.cmd(
            "POST",
            &format!("element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// Chooses files for an `<input type=file>` (several for a `multiple` one).
    pub async fn choose_files(&self, css: &str, paths: &[&std::path::Path]) {
        let id = self.find(css).await;
        let text = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join("\n");
        self.cmd(
            "POST",
            &format!("element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// Chooses the option with this value of a <select>.
    pub async fn select(&self, css: &str, value: &str) {
        self.click(&format!("{css} option[value=\"{value}\"]"))
            .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.cmd("GET", &format!("element/{id}/text"), Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Waits (in the page, re-checking on every DOM change and every 50 ms, at most PAGE_WAIT)
    /// until `condition` (a JS expression) holds. Returns the wall-clock ms when it did. A page
    /// that navigates meanwhile (a form's redirect, a live reload) is waited on afresh.
    pub async fn wait_until(&self, condition: &str) -> f64 {
        let script = format!(
            r#"var done = arguments[arguments.length - 1];
            var limit = Date.now() + {STEP_MS};
            function ok() {{ try {{ return !!({condition}); }} catch (e) {{ return false; }} }}
            if (ok()) {{ done(Date.now()); return; }}
            var obs = new MutationObserver(check);
            var timer = setInterval(check, 50);
            function check() {{
              if (ok()) {{ obs.disconnect(); clearInterval(timer); done(Date.now()); }}
              else if (Date.now() > limit) {{ obs.disconnect(); clearInterval(timer); done(-1); }}
            }}
            obs.observe(document.documentElement, {{subtree: true, childList: true, characterData: true, attributes: true}});"#,
        );
        let deadline = tokio::time::Instant::now() + PAGE_WAIT;
        loop {
            let got = self
                .try_cmd(
                    "POST",
                    "execute/async",
                    json!({"script": script, "args": []}),
                )
                .await;
            if let Ok(at) = got.as_ref().map(|v| v.as_f64().unwrap_or(-1.0)) {
                if at >= 0.0 {
                    return at;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page never satisfied: {condition} (last: {got:?})"
            );
        }
    }

    /// Waits until the page shows `text` somewhere in `css`.
    pub async fn wait_text(&self, css: &str, text: &str) -> f64 {
        self.wait_until(&format!(
            "Array.from(document.querySelectorAll({css:?})).some(function (e) {{ return e.innerText.indexOf({text:?}) >= 0; }})"
        ))
        .await
    }

    pub async fn page_text(&self) -> String {
        self.js("return document.body.innerText;", json!([]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn set_size(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    /// Saves a PNG of the viewport under target/browser-screenshots/.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd("GET", "screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    pub async fn delete_cookies(&self) {
        self.cmd("DELETE", "cookie", Value::Null).await;
    }

    pub async fn quit(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        let _ = self.driver.kill().await;
    }
}
