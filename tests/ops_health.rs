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
