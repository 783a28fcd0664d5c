//! Health, readiness and metrics as an operator's tools see them.

mod support;

use support::*;

const PHONE: &str = "106540352242922";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_probes_storage_and_follows_registered_conditions() {
    let app = TestApp::start(Options::default()).await;
    let health = app
        .http
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let ready = app
        .http
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["storage"], "ok");
    assert_eq!(body["queue_depth"]["conversations"], 0);

    // The knowledge service registers "indexes loaded" before loading them: not ready until set.
    let ops = &app.running.as_ref().unwrap().state.ops;
    ops.readiness.register("search_indexes", "loading indexes");
    let ready = app
        .http
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["search_indexes"], "loading indexes");
    ops.readiness.set_ready("search_indexes");
    let ready = app
        .http
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_on_their_own_listener_with_tenant_slugs() {
    let app = TestApp::start(Options {
        tweak: Box::new(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())),
        ..Options::default()
    })
    .await;
    let tenant = app.tenant_with_channel("acme", PHONE).await;
    app.post_signed(&text_webhook(
        PHONE,
        "628123",
        "wamid.m1",
        "mau bicara dengan CS",
    ))
    .await;
    app.post_webhook(b"{}", Some("sha256=00")).await;
    // The customer asked for a person: a turn that hands off.
    app.wait_for(WAIT, |a| {
        a.conversations(tenant)
            .pop()
            .filter(|c| c.handoff_reason.is_some())
    })
    .await;

    let metrics_addr = app.running.as_ref().unwrap().metrics_addr.unwrap();
    assert_ne!(
        metrics_addr.port(),
        app.running.as_ref().unwrap().addr.port()
    );
    let text = app
        .http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "wacrm_webhooks_received_total{outcome=\"accepted\"}",
        "wacrm_webhooks_received_total{outcome=\"malformed\"}",
        "wacrm_turns_total{tenant=\"acme\",outcome=\"handoff\"}",
        "wacrm_handoffs_total{tenant=\"acme\",reason=\"customer_asked\"}",
        "wacrm_queue_depth{consumer=\"conversations\"}",
        "wacrm_queue_oldest_age_seconds{consumer=\"whatsapp_sender\"}",
        "wacrm_storage_bytes{part=\"database\"}",
        "wacrm_disk_free_bytes",
        "wacrm_ready 1",
        "# TYPE wacrm_llm_request_seconds histogram",
    ] {
        assert!(text.contains(expected), "missing {expected}:\n{text}");
    }
    // Not on the public listener.
    let public = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
}

/// Waits (bounded) until `/readyz` answers `status`; returns its body.
async fn readyz_until(app: &TestApp, status: u16) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let resp = app
            .http
            .get(format!("{}/readyz", app.url))
            .send()
            .await
            .unwrap();
        let got = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap();
        if got == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never answered {status}: {got} {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_the_search_indexes_and_the_embedding_model() {
    let app = TestApp::start(Options::quiet()).await;
    app.create_tenant("acme").await;
    let body = readyz_until(&app, 200).await;
    assert_eq!(body["checks"]["search indexes"], "ok", "{body}");
    // A knowledge base exists: from the next start on, readiness also waits for the model.
    let kb = app.create_kb("acme", "faq", &[]).await;
    let docs = app
        .upload_and_wait(
            "acme",
            &kb,
            &[("faq.md", b"# Hours\n\nOpen daily from 8 am.\n".to_vec())],
        )
        .await;
    assert_eq!(docs[0]["status"], "ready", "{}", docs[0]);
    let app = app.restart(|_| {}).await;
    let body = readyz_until(&app, 200).await;
    assert_eq!(body["checks"]["search indexes"], "ok", "{body}");
    assert_eq!(body["checks"]["embedding model"], "ok", "{body}");

    // Without the model files the service is not ready, and says why and what to run.
    let empty = tempfile::tempdir().unwrap();
    let models = empty.path().to_path_buf();
    let app = app.restart(move |c| c.models_dir = models).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let body = loop {
        let body = readyz_until(&app, 503).await;
        let why = body["checks"]["embedding model"].as_str().unwrap_or("");
        if why.contains("not loaded") {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let why = body["checks"]["embedding model"].as_str().unwrap();
    assert!(why.contains("fetch-models.sh"), "{why}");
    assert!(why.contains("wacrm doctor"), "{why}");
    assert_eq!(body["checks"]["search indexes"], "ok", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_configured_models_and_says_how_to_fix_them() {
    use sha2::{Digest, Sha256};
    use wacrm::ops::doctor::{diagnose, Finding, Level};
    let dir = tempfile::tempdir().unwrap();
    let config_for = |name: &str, models: &std::path::Path, extra: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "data_dir = {:?}\nmodels_dir = {:?}\n[graph]\nbase_url = \"http://127.0.0.1:9\"\n{extra}",
                dir.path().join("data").display().to_string(),
                models.display().to_string()
            ),
        )
        .unwrap();
        path
    };
    fn find(findings: &[Finding], check: &str, level: Level) -> String {
        findings
            .iter()
            .find(|f| f.check == check && f.level == level)
            .map(|f| f.message.clone())
            .unwrap_or_else(|| panic!("no {level:?} {check} in {findings:#?}"))
    }

    // The models fetched into the checkout: there, matching their MANIFEST, and loading.
    let real = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/models"));
    let findings = diagnose(Some(&config_for("real", &real, "")), None).await;
    find(&findings, "onnx_runtime", Level::Ok);
    let ok = find(&findings, "models", Level::Ok);
    assert!(ok.contains("loads and embeds (384 dimensions)"), "{ok}");

    // None there: both checks fail, naming the directory and the command that fills it.
    let empty = dir.path().join("no-models");
    std::fs::create_dir(&empty).unwrap();
    let findings = diagnose(Some(&config_for("empty", &empty, "")), None).await;
    let runtime = find(&findings, "onnx_runtime", Level::Fail);
    assert!(
        runtime.contains(&format!("scripts/fetch-models.sh {}", empty.display())),
        "{runtime}"
    );
    let model = find(&findings, "models", Level::Fail);
    assert!(
        model.contains("multilingual-e5-small/model.onnx") && model.contains("fetch-models.sh"),
        "{model}"
    );

    // All there but one file changed since the MANIFEST was written.
    let damaged = dir.path().join("damaged-models");
    let mut manifest = String::from("# wacrm local embedding models\n");
    for name in [
        "libonnxruntime.so.1.32.0",
        "multilingual-e5-small/model.onnx",
        "multilingual-e5-small/tokenizer.json",
        "multilingual-e5-small/config.json",
        "multilingual-e5-small/special_tokens_map.json",
        "multilingual-e5-small/tokenizer_config.json",
    ] {
        let path = damaged.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, name).unwrap();
        manifest.push_str(&format!(
            "{}  {name}\n",
            hex::encode(Sha256::digest(name.as_bytes()))
        ));
    }
    std::fs::write(damaged.join("MANIFEST"), manifest).unwrap();
    std::fs::write(damaged.join("multilingual-e5-small/model.onnx"), "changed").unwrap();
    let findings = diagnose(Some(&config_for("damaged", &damaged, "")), None).await;
    let model = find(&findings, "models", Level::Fail);
    assert!(
        model.contains("multilingual-e5-small/model.onnx (damaged)")
            && model.contains("fetch-models.sh"),
        "{model}"
    );

    // Embeddings from an API need no local model.
    let api = "[embeddings]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n";
    let findings = diagnose(Some(&config_for("api", &empty, api)), None).await;
    assert!(find(&findings, "models", Level::Ok).contains("no local model needed"));
    assert!(!findings.iter().any(|f| f.check == "onnx_runtime"));

    // The binary prints the same and exits non-zero.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wacrm"))
        .arg("--config")
        .arg(config_for("empty", &empty, ""))
        .arg("doctor")
        .env_remove("WACRM_MODELS_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL onnx_runtime") && text.contains("FAIL models"),
        "{text}"
    );
}

/// A backlog as readiness reports it: the pipeline held (as when it is behind), a few webhooks
/// queued, their depth and the age of the oldest one per consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_the_depth_and_age_of_a_backlog() {
    use wacrm::app::LaunchOptions;
    use wacrm::bench::harness::{self, BenchApp, SignedWebhook};

    let dir = tempfile::tempdir().unwrap();
    let mut config = harness::bench_config(&wacrm::config::Config::default(), dir.path());
    config.llm = wacrm::config::LlmSettings::Offline;
    let app = BenchApp::start_with(
        config,
        LaunchOptions {
            hold_pipeline: true,
        },
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    for i in 0..5 {
        let hook =
            SignedWebhook::text(&harness::customer(i), &format!("wamid.backlog.{i}"), "halo");
        let status = harness::post_webhook(&http, &app.webhook_url, &hook)
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let readyz = format!("http://{}/readyz", app.addr().unwrap());
    let body: serde_json::Value = http
        .get(&readyz)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["queue_depth"]["conversations"], 5, "{body}");
    let age = body["queue_oldest_age_s"]["conversations"]
        .as_f64()
        .unwrap();
    assert!((0.05..60.0).contains(&age), "{body}");
    // A consumer with nothing queued has no age.
    assert_eq!(body["queue_depth"]["whatsapp_sender"], 0, "{body}");
    assert_eq!(body["queue_oldest_age_s"]["whatsapp_sender"], 0.0, "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    app.stop().await;
}
