//! Helpers for the operations tests: raw views of a data directory, webhook load, child processes.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::{Database, ReadableTable, TableDefinition, TableHandle};

use super::*;

/// Every row of every table of a database file (which must not be open elsewhere).
pub fn dump(db_path: &Path) -> BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>> {
    let db = Database::open(db_path).unwrap();
    let txn = db.begin_read().unwrap();
    let mut out = BTreeMap::new();
    for handle in txn.list_tables().unwrap() {
        let name = handle.name().to_string();
        let table = txn
            .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
            .unwrap();
        let rows = table
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value().to_vec(), v.value().to_vec())
            })
            .collect();
        out.insert(name, rows);
    }
    out
}

/// Writes `server.json` the way `wacrm serve` does, so the CLI finds the test's server.
pub fn write_server_file(app: &TestApp) {
    let body = serde_json::json!({"url": app.url, "pid": std::process::id()}).to_string();
    std::fs::write(app.dir.path().join("server.json"), body).unwrap();
}

/// Signed webhooks sent one after another (several senders) until stopped; records which wamids
/// were acknowledged (200) and when.
pub struct Load {
    stop: tokio::sync::watch::Sender<bool>,
    pub acked: Arc<Mutex<Vec<(std::time::Instant, String)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(app: &TestApp, phone_number_id: &str, senders: usize) -> Self {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let acked = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for s in 0..senders {
            let (url, http, acked, stop_rx) = (
                app.url.clone(),
                app.http.clone(),
                acked.clone(),
                stop_rx.clone(),
            );
            let phone = phone_number_id.to_string();
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !*stop_rx.borrow() && i < 100_000 {
                    i += 1;
                    let wamid = format!("wamid.load.{s}.{i}");
                    let body = text_webhook(
                        &phone,
                        &format!("6281{:08}", s * 1000 + (i % 50) as usize),
                        &wamid,
                        "load",
                    );
                    let sig = wacrm::whatsapp::ingress::sign(APP_SECRET.as_bytes(), &body);
                    let resp = http
                        .post(format!("{url}/webhooks/whatsapp"))
                        .header("content-type", "application/json")
                        .header("x-hub-signature-256", sig)
                        .body(body)
                        .send()
                        .await;
                    if let Ok(r) = resp {
                        if r.status().is_success() {
                            acked
                                .lock()
                                .unwrap()
                                .push((std::time::Instant::now(), wamid));
                        }
                    }
                }
            }));
        }
        Self { stop, acked, tasks }
    }

    pub fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits (bounded) until at least `n` webhooks were acknowledged.
    pub async fn wait_for(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.count() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "load stalled at {}",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(self) -> Vec<(std::time::Instant, String)> {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.await.unwrap();
        }
        let list = self.acked.lock().unwrap().clone();
        list
    }
}

/// Whether the webhook dedupe marker of `wamid` is stored for `tenant` (the acknowledged write).
pub fn received(store: &wacrm::storage::Store, tenant: TenantId, wamid: &str) -> bool {
    store
        .read(|r| {
            r.tenant(tenant)
                .contains(&wacrm::whatsapp::ingress::RECEIVED, wamid.as_bytes())
        })
        .unwrap()
}

/// Polls `check` every 20 ms until it holds or `timeout` passes (for conditions in other
/// processes or on disk, which no live update announces).
pub async fn poll_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The customer numbers the dashboard's inbox lists for the search `q` (every view), as the
/// signed-in person `who` sees it.
pub async fn inbox_search(app: &TestApp, who: &super::people::Cred, q: &str) -> Vec<String> {
    let super::people::Cred::Session { token, .. } = who else {
        panic!("the dashboard needs a session");
    };
    let resp = app
        .http
        .get(format!("{}/dash/inbox", app.url))
        .query(&[("view", "all"), ("q", q)])
        .header(
            "cookie",
            format!("{}={token}", wacrm::people::sessions::COOKIE_NAME),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "inbox search {q:?}");
    let html = resp.text().await.unwrap();
    html.split("<span class=\"number\">")
        .skip(1)
        .filter_map(|s| s.split('<').next())
        .map(|s| s.trim_start_matches('+').to_string())
        .collect()
}

/// Repeats the inbox search (bounded) until it lists exactly `expected`: the index follows the
/// store through the live feed, a moment behind it. Returns the last answer.
pub async fn inbox_search_until(
    app: &TestApp,
    who: &super::people::Cred,
    q: &str,
    expected: &[&str],
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut found = inbox_search(app, who, q).await;
        found.sort();
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        if found == want || tokio::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
            {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

/// What a search index at `dir` (a tantivy index, opened read-only beside the service's writer)
/// holds: every term of every field and every stored value, of every document still in its
/// segments (deleted ones too, until a merge drops them), and the files on disk that belong to
/// no current segment. Terms sit in a compressed dictionary and stored values in compressed
/// blocks, so a scan of the files' bytes cannot prove a word absent; this reads them.
pub struct IndexContents {
    pub terms: Vec<String>,
    pub stored: Vec<String>,
    pub stray_files: Vec<String>,
}

pub fn index_contents(dir: &Path) -> IndexContents {
    use tantivy::schema::document::Value;
    let index = tantivy::Index::open_in_dir(dir).unwrap();
    let reader = index.reader().unwrap();
    let searcher = reader.searcher();
    let schema = index.schema();
    let (mut terms, mut stored) = (Vec::new(), Vec::new());
    let mut segments = Vec::new();
    for segment in searcher.segment_readers() {
        segments.push(segment.segment_id().uuid_string());
        for (field, entry) in schema.fields() {
            if !entry.is_indexed() {
                continue;
            }
            let inverted = segment.inverted_index(field).unwrap();
            let mut stream = inverted.terms().stream().unwrap();
            while stream.advance() {
                terms.push(String::from_utf8_lossy(stream.key()).to_string());
            }
        }
        let store = segment.get_store_reader(0).unwrap();
        for doc in 0..segment.max_doc() {
            let d: tantivy::TantivyDocument = store.get(doc).unwrap();
            for (_, value) in d.field_values() {
                if let Some(text) = value.as_str() {
                    stored.push(text.to_string());
                }
            }
        }
    }
    let stray_files = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|name| {
            let stem = name.split('.').next().unwrap_or("");
            stem.len() == 32
                && stem.chars().all(|c| c.is_ascii_hexdigit())
                && !segments.contains(&stem.to_string())
        })
        .collect();
    IndexContents {
        terms,
        stored,
        stray_files,
    }
}

/// Whether any term or stored value of the index at `dir` contains `needle`.
pub fn index_mentions(dir: &Path, needle: &str) -> bool {
    let contents = index_contents(dir);
    contents
        .terms
        .iter()
        .chain(&contents.stored)
        .any(|t| t.contains(needle))
}

/// Checks that no file of a former segment is left on disk (call it once the service stopped:
/// while it runs, the indexer may be writing a new segment's files).
pub fn assert_no_former_segments(dir: &Path) {
    let strays = index_contents(dir).stray_files;
    assert!(
        strays.is_empty(),
        "files of former segments left: {strays:?}"
    );
}
