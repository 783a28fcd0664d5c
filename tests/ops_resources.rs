//! Resource safety: a full disk, a webhook flood and forged traffic keep the store intact and the
//! service answering, without locking out Meta's signed traffic.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::ops::*;
use support::*;
use wacrm::ops::check::check_database;

const PHONE: &str = "106540352242922";

fn quiet(tweak: impl FnOnce(&mut wacrm::config::Config) + Send + 'static) -> Options {
    Options {
        llm: Llm::Offline,
        debounce_ms: 600_000,
        status_webhooks: false,
        tweak: Box::new(tweak),
    }
}

/// A small tmpfs, unmounted on drop. None where mounting is not allowed (not root, no CAP_SYS_ADMIN).
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size_mb: u64) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mb}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(Self(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a test that failed half-way may still hold files open in it.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

fn big_webhook(i: usize) -> (String, Vec<u8>) {
    let wamid = format!("wamid.disk.{i}");
    (
        wamid.clone(),
        text_webhook(PHONE, "628555", &wamid, &"isi ".repeat(4000)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_webhooks_before_the_store_breaks_and_recovers() {
    // A real small filesystem when we may mount one; otherwise a simulated free-space probe.
    let tmpfs = Tmpfs::mount(48);
    let data_dir = match &tmpfs {
        Some(t) => t.0.path().join("data"),
        None => {
            eprintln!("cannot mount a tmpfs here: simulating free space through the probe");
            tempfile::tempdir().unwrap().keep().join("data")
        }
    };
    let dir_for_config = data_dir.clone();
    let mut app = TestApp::start(quiet(move |c| {
        c.data_dir = dir_for_config;
        c.resources.min_free_mb_webhooks = 8;
        c.resources.min_free_mb_warn = 12;
        c.resources.min_free_mb_uploads = 16;
        c.resources.disk_check_ms = 20;
    }))
    .await;
    let tenant = app.tenant_with_channel("acme", PHONE).await;
    let ops = app.running.as_ref().unwrap().state.ops.clone();

    // Leave about 14 MB free: 6 MB above the point where webhooks are refused.
    let filler = data_dir.join("filler");
    let simulated = Arc::new(AtomicU64::new(14 << 20));
    if tmpfs.is_some() {
        let free = wacrm::ops::disk::statvfs_free(&data_dir).unwrap();
        let f = std::fs::File::create(&filler).unwrap();
        f.set_len(free - (14 << 20)).unwrap();
        // tmpfs allocates on write, not on set_len.
        std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=1M", "conv=notrunc,fsync", "status=none"])
            .arg(format!("of={}", filler.display()))
            .arg(format!("count={}", (free >> 20) - 14))
            .status()
            .unwrap();
    } else {
        let s = simulated.clone();
        ops.disk
            .set_probe(Arc::new(move |_| Ok(s.load(Ordering::SeqCst))));
    }
    ops.disk.refresh();
    // Uploads (the knowledge service asks first) are refused below 16 MB free.
    assert!(ops.disk.allow_upload(1).is_err());

    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..2_000 {
        let (wamid, body) = big_webhook(i);
        let (status, text) = app.post_signed(&body).await;
        match status {
            200 => {
                acked.push(wamid);
                if tmpfs.is_none() {
                    simulated.fetch_sub(64 << 10, Ordering::SeqCst);
                    ops.disk.refresh();
                }
            }
            503 => {
                refused = Some(text);
                break;
            }
            other => panic!("webhook {i}: HTTP {other} {text}"),
        }
    }
    let refused = refused.expect("the disk never filled");
    assert!(refused.contains("disk_full"), "{refused}");
    assert!(!acked.is_empty());

    // Still answering: liveness, reads, and readiness saying why it is not ready.
    assert_eq!(
        app.http
            .get(format!("{}/healthz", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.get("/api/v1/tenants").await;
    let ready = app
        .http
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["disk"], "critical");

    // Space freed: webhooks are taken again (Meta's retry of the refused one succeeds).
    if tmpfs.is_some() {
        std::fs::remove_file(&filler).unwrap();
    } else {
        simulated.store(1 << 40, Ordering::SeqCst);
    }
    let d = ops.disk.clone();
    assert!(
        poll_until(Duration::from_secs(10), || d.refresh()
            == wacrm::ops::disk::DiskState::Ok)
        .await
    );
    let (wamid, body) = big_webhook(acked.len());
    assert_eq!(app.post_signed(&body).await.0, 200);
    acked.push(wamid);

    for wamid in &acked {
        assert!(
            received(app.store(), tenant, wamid),
            "{wamid} was acknowledged but is missing"
        );
    }
    app.stop().await;
    let check = check_database(&data_dir.join("wacrm.redb")).unwrap();
    assert!(check.ok(), "{check:?}");
    drop(app);
    drop(tmpfs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_flood_is_shed_with_retry_after_and_nothing_acknowledged_is_lost() {
    let app = TestApp::start(quiet(|c| c.resources.max_inflight_webhooks = 2)).await;
    let tenant = app.tenant_with_channel("acme", PHONE).await;
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..300 {
        let (http, url) = (app.http.clone(), app.url.clone());
        flood.spawn(async move {
            let wamid = format!("wamid.flood.{i}");
            let body = text_webhook(PHONE, &format!("62877{i:04}"), &wamid, "banjir");
            let sig = wacrm::whatsapp::ingress::sign(APP_SECRET.as_bytes(), &body);
            let resp = http
                .post(format!("{url}/webhooks/whatsapp"))
                .header("x-hub-signature-256", sig)
                .body(body)
                .send()
                .await
                .unwrap();
            let retry_after = resp.headers().get("retry-after").is_some();
            (wamid, resp.status().as_u16(), retry_after)
        });
    }
    let mut acked = Vec::new();
    let mut shed = Vec::new();
    while let Some(r) = flood.join_next().await {
        let (wamid, status, retry_after) = r.unwrap();
        match status {
            200 => acked.push(wamid),
            503 => {
                assert!(retry_after, "503 without Retry-After");
                shed.push(wamid)
            }
            other => panic!("HTTP {other}"),
        }
    }
    assert!(
        !shed.is_empty(),
        "nothing was shed with 2 slots and 300 concurrent webhooks"
    );
    assert_eq!(
        app.http
            .get(format!("{}/healthz", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for wamid in &acked {
        assert!(received(app.store(), tenant, wamid));
    }
    // Meta retries what was refused; each is stored exactly once.
    for wamid in &shed {
        assert!(!received(app.store(), tenant, wamid));
        let i: usize = wamid.rsplit('.').next().unwrap().parse().unwrap();
        let body = text_webhook(PHONE, &format!("62877{i:04}"), wamid, "banjir");
        assert_eq!(app.post_signed(&body).await.0, 200);
        assert!(received(app.store(), tenant, wamid));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_webhooks_lock_out_their_sender_but_never_metas_signed_traffic() {
    let app = TestApp::start(quiet(|c| {
        c.trusted_proxies = vec!["127.0.0.1".into()];
        c.resources.webhook_failures_per_minute = 5;
    }))
    .await;
    let tenant = app.tenant_with_channel("acme", PHONE).await;
    let send = |from: &'static str, signed: bool, i: usize| {
        let (http, url) = (app.http.clone(), app.url.clone());
        async move {
            let wamid = format!("wamid.ip.{from}.{i}");
            let body = text_webhook(PHONE, "628999", &wamid, "hi");
            let sig = if signed {
                wacrm::whatsapp::ingress::sign(APP_SECRET.as_bytes(), &body)
            } else {
                "sha256=0000".to_string()
            };
            http.post(format!("{url}/webhooks/whatsapp"))
                .header("x-hub-signature-256", sig)
                .header("x-forwarded-for", from)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(send("203.0.113.9", false, i).await);
    }
    assert_eq!(&statuses[..5], &[401; 5]);
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // Meta's address, interleaved with the attack, is never limited: its requests verify.
    for i in 0..30 {
        assert_eq!(send("173.252.88.1", true, i).await, 200);
        assert_eq!(send("203.0.113.9", false, 100 + i).await, 429);
    }
    assert!(received(app.store(), tenant, "wamid.ip.173.252.88.1.29"));
    // A forwarded header from an untrusted peer is ignored: the proxy's own address is not blamed
    // for what it forwards, and a client cannot pick its address.
    let limiter = &app.running.as_ref().unwrap().state.ops.webhook_failures;
    assert!(limiter.check("127.0.0.1".parse().unwrap()).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_before_they_are_read() {
    let app = TestApp::start(quiet(|_| {})).await;
    // The refused requests go over connections of their own: the server answers before reading
    // the body and closes, and a pooled client could otherwise hand the closed connection to the
    // next request (a broken pipe that says nothing about the server).
    let unpooled = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let big = vec![b'x'; 2 * 1024 * 1024];
    let resp = unpooled
        .post(format!("{}/api/v1/tenants", app.url))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // Refused on its Content-Length: a 413, or the connection closed while the client still writes.
    let resp = unpooled
        .post(format!("{}/webhooks/whatsapp", app.url))
        .header("x-hub-signature-256", "sha256=00")
        .body(vec![b'x'; 4 * 1024 * 1024])
        .send()
        .await;
    match resp {
        Ok(r) => assert_eq!(r.status(), 413),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    let (status, _) = app.post_webhook(&big, Some("sha256=00")).await;
    assert_eq!(status, 400);
}
