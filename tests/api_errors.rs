//! The JSON API's answers to bad input: the right status and code, a message naming what is wrong,
//! nothing half-created, and the next good request served as usual.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::*;
use wacrm::storage::ConversationId;

const PNID: &str = "106540352242922";
const CUSTOMER: &str = "6281234567890";

/// A request with an explicit Authorization header (or none) and a raw body.
async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut req = app.http.request(method, format!("{}{}", app.url, path));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

fn slugs(tenants: &Value) -> Vec<&str> {
    tenants
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_operator_token_are_401_and_change_nothing() {
    let mut app = TestApp::start(Options::quiet()).await;
    let bearer = format!("Bearer {}", app.token);
    let wrong = format!("Bearer {}x", app.token);
    let basic = format!("Basic {}", app.token);
    let create = json!({"slug": "acme", "name": "Acme"}).to_string();
    for auth in [
        None,
        Some(wrong.as_str()),
        Some(basic.as_str()),
        Some("Bearer "),
    ] {
        let (status, v) = raw(&app, Method::GET, "/api/v1/tenants", auth, None).await;
        assert_eq!((status, code(&v)), (401, "unauthorized"), "{auth:?}: {v}");
        let (status, v) = raw(&app, Method::POST, "/api/v1/tenants", auth, Some(&create)).await;
        assert_eq!((status, code(&v)), (401, "unauthorized"), "{auth:?}: {v}");
    }
    // The refused creations did not happen; the operator's own requests work.
    let (status, v) = raw(&app, Method::GET, "/api/v1/tenants", Some(&bearer), None).await;
    assert_eq!(status, 200);
    assert!(slugs(&v).is_empty(), "{v}");
    app.create_tenant("acme").await;
    assert_eq!(slugs(&app.get("/api/v1/tenants").await), ["acme"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tenant_is_404_tenant_not_found() {
    let mut app = TestApp::start(Options::quiet()).await;
    app.create_tenant("acme").await;
    let random_id = wacrm::storage::TenantId::new();
    let channel = json!({"type": "sandbox", "name": "Sim"});
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/v1/tenants/globex".into(), None),
        (Method::GET, format!("/api/v1/tenants/{random_id}"), None),
        (Method::GET, "/api/v1/tenants/globex/channels".into(), None),
        (
            Method::POST,
            "/api/v1/tenants/globex/channels".into(),
            Some(channel.clone()),
        ),
        (
            Method::POST,
            "/api/v1/tenants/globex/outlets".into(),
            Some(json!({"name": "Downtown"})),
        ),
        (
            Method::GET,
            "/api/v1/tenants/globex/conversations".into(),
            None,
        ),
    ];
    for (method, path, body) in cases {
        let (status, v) = app.api(method.clone(), &path, body).await;
        assert_eq!(
            (status, code(&v)),
            (404, "tenant_not_found"),
            "{method} {path}: {v}"
        );
    }
    assert_eq!(slugs(&app.get("/api/v1/tenants").await), ["acme"]);
    app.post("/api/v1/tenants/acme/channels", channel).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tenants_are_400_naming_the_field_and_a_taken_slug_is_409() {
    let mut app = TestApp::start(Options::quiet()).await;
    let invalid = [
        (json!({"slug": "Acme Coffee", "name": "Acme"}), "slug"),
        (json!({"slug": "-acme", "name": "Acme"}), "slug"),
        (json!({"slug": "a", "name": "Acme"}), "slug"),
        (json!({"slug": "acme", "name": "   "}), "name"),
        (
            json!({"slug": "acme", "name": "Acme", "time_zone": "Mars/Olympus_Mons"}),
            "time_zone",
        ),
    ];
    for (body, field) in invalid {
        let (status, v) = app
            .api(Method::POST, "/api/v1/tenants", Some(body.clone()))
            .await;
        assert_eq!((status, code(&v)), (400, "invalid_input"), "{body}: {v}");
        assert!(message(&v).starts_with(field), "{body}: {v}");
        assert!(slugs(&app.get("/api/v1/tenants").await).is_empty());
    }

    app.post(
        "/api/v1/tenants",
        json!({"slug": "acme", "name": "Acme Coffee", "time_zone": "Asia/Jakarta"}),
    )
    .await;
    let (status, v) = app
        .api(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"slug": "acme", "name": "Impostor"})),
        )
        .await;
    assert_eq!((status, code(&v)), (409, "conflict"), "{v}");
    let acme = app.get("/api/v1/tenants/acme").await;
    assert_eq!(acme["name"], "Acme Coffee");
    assert_eq!(acme["time_zone"], "Asia/Jakarta");
    app.create_tenant("globex").await;
    assert_eq!(slugs(&app.get("/api/v1/tenants").await).len(), 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_connected_twice_is_409_and_the_first_connection_keeps_it() {
    let mut app = TestApp::start(Options::quiet()).await;
    let acme = app.tenant_with_channel("acme", PNID).await;
    let globex = app.create_tenant("globex").await;

    let duplicate = |token: &str| {
        json!({
            "type": "cloud_api", "name": "Stolen", "phone_number_id": PNID, "waba_id": WABA_ID,
            "access_token": "EAAother", "app_secret": "other-secret", "verify_token": token,
        })
    };
    for (tenant, token) in [("acme", "dup-token-1"), ("globex", "dup-token-2")] {
        let (status, v) = app
            .api(
                Method::POST,
                &format!("/api/v1/tenants/{tenant}/channels"),
                Some(duplicate(token)),
            )
            .await;
        assert_eq!((status, code(&v)), (409, "conflict"), "{tenant}: {v}");
    }
    let (status, v) = app
        .api(
            Method::POST,
            "/api/v1/tenants/globex/channels",
            Some(json!({
                "type": "cloud_api", "name": "Bad", "phone_number_id": "12ab", "waba_id": WABA_ID,
                "access_token": "t", "app_secret": "s", "verify_token": "v",
            })),
        )
        .await;
    assert_eq!((status, code(&v)), (400, "invalid_input"), "{v}");
    assert!(message(&v).starts_with("phone_number_id"), "{v}");

    // Nothing of the refused channels exists: not listed, their verify tokens unknown to Meta's
    // handshake, and the number's webhooks still reach the first tenant with its app secret.
    let acme_channels = app.get("/api/v1/tenants/acme/channels").await;
    assert_eq!(acme_channels.as_array().unwrap().len(), 1);
    assert_eq!(acme_channels[0]["name"], format!("WA {PNID}"));
    assert!(app
        .get("/api/v1/tenants/globex/channels")
        .await
        .as_array()
        .unwrap()
        .is_empty());
    for token in ["dup-token-1", "dup-token-2"] {
        let resp = app
            .http
            .get(format!("{}/webhooks/whatsapp", app.url))
            .query(&[
                ("hub.mode", "subscribe"),
                ("hub.verify_token", token),
                ("hub.challenge", "42"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 403, "{token}");
    }
    let body = text_webhook(PNID, CUSTOMER, "wamid.AFTER-DUP", "hello");
    assert_eq!(app.post_signed(&body).await.0, 200);
    app.wait_for(WAIT, |app| app.message_by_wamid(acme, "wamid.AFTER-DUP"))
        .await;
    assert!(app.conversations(globex).is_empty());

    // Good requests still work: globex connects a number of its own.
    app.add_cloud_channel("globex", "113344556677889").await;
    let globex_channels = app.get("/api/v1/tenants/globex/channels").await;
    assert_eq!(globex_channels.as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_is_400() {
    let mut app = TestApp::start(Options::quiet()).await;
    app.tenant_with_channel("acme", PNID).await;
    let bearer = format!("Bearer {}", app.token);
    for path in [
        "/api/v1/tenants",
        "/api/v1/tenants/acme/channels",
        "/api/v1/tenants/acme/outlets",
    ] {
        for body in ["slug=acme&name=Acme", "{\"slug\": \"acme\",", ""] {
            let (status, v) = raw(&app, Method::POST, path, Some(&bearer), Some(body)).await;
            assert_eq!(
                (status, code(&v)),
                (400, "invalid_input"),
                "{path} {body:?}: {v}"
            );
        }
    }
    assert_eq!(slugs(&app.get("/api/v1/tenants").await), ["acme"]);
    let outlets = app.get("/api/v1/tenants/acme/outlets").await;
    assert!(outlets.as_array().unwrap().is_empty());
    app.post("/api/v1/tenants/acme/outlets", json!({"name": "Downtown"}))
        .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_refuses_a_sender_that_is_not_a_phone_number() {
    let mut app = TestApp::start(Options::quiet()).await;
    let tenant = app.tenant_with_channel("acme", PNID).await;
    let sandbox = app
        .post(
            "/api/v1/tenants/acme/channels",
            json!({"type": "sandbox", "name": "Simulator"}),
        )
        .await;
    let path = format!(
        "/api/v1/tenants/acme/sandbox/{}/messages",
        sandbox["id"].as_str().unwrap()
    );
    for from in ["not-a-number", "12345", "1234567890123456", "", "62812 345"] {
        let (status, v) = app
            .api(
                Method::POST,
                &path,
                Some(json!({"from": from, "text": "hi"})),
            )
            .await;
        assert_eq!((status, code(&v)), (400, "invalid_input"), "{from:?}: {v}");
        assert!(message(&v).starts_with("from"), "{from:?}: {v}");
    }
    let (status, v) = app
        .api(
            Method::POST,
            &path,
            Some(json!({"from": CUSTOMER, "text": "   "})),
        )
        .await;
    assert_eq!((status, code(&v)), (400, "invalid_input"), "{v}");
    assert!(message(&v).starts_with("text"), "{v}");
    assert!(app.conversations(tenant).is_empty());

    // A Cloud API channel has no simulator; an unknown channel is not found.
    let cloud = app.get("/api/v1/tenants/acme/channels").await;
    let cloud_id = cloud
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "cloud_api")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = app
        .api(
            Method::POST,
            &format!("/api/v1/tenants/acme/sandbox/{cloud_id}/messages"),
            Some(json!({"from": CUSTOMER, "text": "hi"})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, v) = app
        .api(
            Method::POST,
            &format!(
                "/api/v1/tenants/acme/sandbox/{}/messages",
                wacrm::storage::ChannelId::new()
            ),
            Some(json!({"from": CUSTOMER, "text": "hi"})),
        )
        .await;
    assert_eq!((status, code(&v)), (404, "not_found"), "{v}");
    assert!(app.conversations(tenant).is_empty());

    let accepted = app
        .post(&path, json!({"from": format!("+{CUSTOMER}"), "text": "hi"}))
        .await;
    let wamid = accepted["wamid"].as_str().unwrap().to_string();
    let (conversation, _) = app
        .wait_for(WAIT, |app| app.message_by_wamid(tenant, &wamid))
        .await;
    assert_eq!(conversation.contact_wa_id, CUSTOMER);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_conversation_is_404_and_a_malformed_id_is_400() {
    let mut app = TestApp::start(Options::quiet()).await;
    let tenant = app.tenant_with_channel("acme", PNID).await;
    let body = text_webhook(PNID, CUSTOMER, "wamid.REAL", "hello");
    assert_eq!(app.post_signed(&body).await.0, 200);
    let (real, _) = app
        .wait_for(WAIT, |app| app.message_by_wamid(tenant, "wamid.REAL"))
        .await;

    let unknown = ConversationId::new();
    let base = "/api/v1/tenants/acme/conversations";
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("{base}/{unknown}"), None),
        (Method::POST, format!("{base}/{unknown}/takeover"), None),
        (
            Method::POST,
            format!("{base}/{unknown}/reply"),
            Some(json!({"text": "hi"})),
        ),
        (Method::POST, format!("{base}/{unknown}/handback"), None),
        (Method::POST, format!("{base}/{unknown}/close"), None),
    ];
    for (method, path, body) in cases {
        let (status, v) = app.api(method.clone(), &path, body).await;
        assert_eq!(
            (status, code(&v)),
            (404, "not_found"),
            "{method} {path}: {v}"
        );
    }
    let (status, v) = app
        .api(Method::GET, &format!("{base}/not-an-id"), None)
        .await;
    assert_eq!((status, code(&v)), (400, "invalid_input"), "{v}");
    let (status, v) = app
        .api(Method::GET, &format!("{base}?state=sleeping"), None)
        .await;
    assert_eq!((status, code(&v)), (400, "invalid_input"), "{v}");
    assert!(message(&v).starts_with("state"), "{v}");

    // None of that touched the real conversation, which still answers.
    assert_eq!(app.conversations(tenant).len(), 1);
    assert!(app.graph.sent().is_empty());
    let detail = app.get(&format!("{base}/{}", real.id)).await;
    assert_eq!(detail["conversation"]["state"], "bot");
    assert_eq!(detail["messages"].as_array().unwrap().len(), 1);
    app.stop().await;
}
