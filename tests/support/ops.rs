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
