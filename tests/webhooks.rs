//! Webhook ingress as Meta (and an attacker) sees it: signatures, malformed bodies, routing by
//! phone_number_id, every documented message type, statuses, the subscription handshake, sandbox
//! numbers and oversized bodies.

mod support;

use serde_json::{json, Value};
use support::*;
use wacrm::conversations::{Author, Direction, MessageBody, MessageStatus};
use wacrm::storage::TenantId;
use wacrm::whatsapp::ingress::sign;
use wacrm::whatsapp::payload::MessageContent;

const PNID: &str = "106540352242922";
const OTHER_PNID: &str = "113344556677889";
/// The customer of the single-number fixtures.
const CUSTOMER: &str = "16505551234";

fn error_code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v["error"]["code"].as_str().unwrap_or_default().to_string()
}

/// Two tenants, each with its own Cloud API number.
async fn two_tenants(app: &TestApp) -> [TenantId; 2] {
    [
        app.tenant_with_channel("acme", PNID).await,
        app.tenant_with_channel("globex", OTHER_PNID).await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_unsigned_webhooks_are_refused_and_leave_nothing_behind() {
    let mut app = TestApp::start(Options::quiet()).await;
    let tenants = two_tenants(&app).await;
    let before = app.settled_footprint(&tenants).await;

    let body = text_webhook(PNID, CUSTOMER, "wamid.FORGED1", "refund me now");
    let mut altered = body.clone();
    let at = altered.windows(6).position(|w| w == b"refund").unwrap();
    altered[at..at + 6].copy_from_slice(b"REFUND");
    let good = sign(APP_SECRET.as_bytes(), &body);
    let attempts: Vec<(&str, &[u8], Option<String>)> = vec![
        (
            "signed with another secret",
            &body,
            Some(sign(b"not-the-app-secret", &body)),
        ),
        ("body altered after signing", &altered, Some(good.clone())),
        ("no signature", &body, None),
        (
            "not a sha256 signature",
            &body,
            Some(good.replacen("sha256=", "sha1=", 1)),
        ),
        ("signature is not hex", &body, Some("sha256=zz".into())),
        ("empty signature", &body, Some(String::new())),
    ];
    for (what, bytes, signature) in attempts {
        let (status, text) = app.post_webhook(bytes, signature.as_deref()).await;
        assert_eq!(status, 401, "{what}: {text}");
        assert_eq!(
            app.footprint(&tenants),
            before,
            "{what} left something behind"
        );
    }
    for t in tenants {
        assert!(app.conversations(t).is_empty());
    }

    // The forgeries did not mark the wamid as seen: Meta's genuine delivery of it is stored.
    assert_eq!(app.post_signed(&body).await.0, 200);
    let (conversation, message) = app
        .wait_for(WAIT, |app| {
            app.message_by_wamid(tenants[0], "wamid.FORGED1")
        })
        .await;
    assert_eq!(conversation.contact_wa_id, CUSTOMER);
    assert_eq!(message.body.preview_text(), "refund me now");
    assert!(app.conversations(tenants[1]).is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_400_malformed_payload_and_store_nothing() {
    let mut app = TestApp::start(Options::quiet()).await;
    let tenants = two_tenants(&app).await;
    let before = app.settled_footprint(&tenants).await;

    let mut no_message_id: Value =
        serde_json::from_slice(&text_webhook(PNID, CUSTOMER, "wamid.X", "hello")).unwrap();
    no_message_id["entry"][0]["changes"][0]["value"]["messages"][0]
        .as_object_mut()
        .unwrap()
        .remove("id");
    let valid: Value =
        serde_json::from_slice(&text_webhook(PNID, CUSTOMER, "wamid.Y", "hi")).unwrap();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        (
            "truncated JSON",
            br#"{"object": "whatsapp_business_account", "entry": ["#.to_vec(),
        ),
        ("not JSON at all", b"hello=world".to_vec()),
        ("empty body", Vec::new()),
        (
            "a JSON array",
            json!([valid.clone()]).to_string().into_bytes(),
        ),
        ("a JSON string", b"\"whatsapp_business_account\"".to_vec()),
        ("wrong object", {
            let mut v = valid.clone();
            v["object"] = json!("page");
            v.to_string().into_bytes()
        }),
        (
            "a message without an id",
            no_message_id.to_string().into_bytes(),
        ),
    ];
    for (what, body) in bodies {
        // Signed correctly: being authentic does not make a malformed body acceptable.
        let (status, text) = app.post_signed(&body).await;
        assert_eq!(status, 400, "{what}: {text}");
        assert_eq!(error_code(&text), "malformed_payload", "{what}: {text}");
        assert_eq!(
            app.footprint(&tenants),
            before,
            "{what} left something behind"
        );
    }
    for t in tenants {
        assert!(app.conversations(t).is_empty());
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_for_an_unknown_number_is_acknowledged_and_stored_nowhere() {
    let mut app = TestApp::start(Options::quiet()).await;
    let tenants = two_tenants(&app).await;
    let before = app.settled_footprint(&tenants).await;

    // 200, or Meta would retry it for days; but no tenant owns this number.
    let body = text_webhook("999000111222333", CUSTOMER, "wamid.STRAY", "hello?");
    for signature in [Some(sign(APP_SECRET.as_bytes(), &body)), None] {
        let (status, text) = app.post_webhook(&body, signature.as_deref()).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(app.footprint(&tenants), before);
    }
    for t in tenants {
        assert!(app.conversations(t).is_empty());
    }

    // Connecting the number later routes its next webhook (the miss was not cached for good).
    let late = app.tenant_with_channel("initech", "999000111222333").await;
    let body = text_webhook("999000111222333", CUSTOMER, "wamid.AFTER", "now?");
    assert_eq!(app.post_signed(&body).await.0, 200);
    app.wait_for(WAIT, |app| app.message_by_wamid(late, "wamid.AFTER"))
        .await;
    app.stop().await;
}

/// Message fixtures and the `MessageContent::kind` each must be stored as.
const MESSAGE_FIXTURES: &[(&str, &str)] = &[
    ("text.json", "text"),
    ("text_reply_context.json", "text"),
    ("referral.json", "text"),
    ("image.json", "image"),
    ("audio.json", "audio"),
    ("video.json", "video"),
    ("document.json", "document"),
    ("sticker.json", "sticker"),
    ("location.json", "location"),
    ("contacts.json", "contacts"),
    ("interactive_button_reply.json", "button_reply"),
    ("interactive_list_reply.json", "list_reply"),
    ("button.json", "button"),
    ("reaction.json", "reaction"),
    ("order.json", "order"),
    ("system.json", "system"),
    ("system_user_changed_number.json", "system"),
    ("unsupported.json", "unsupported"),
    ("unknown_type.json", "unsupported"),
];

const OTHER_FIXTURES: &[&str] = &[
    "status_sent.json",
    "status_delivered.json",
    "status_read.json",
    "status_failed.json",
    "non_messages_field.json",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_is_accepted_and_each_message_is_stored_as_its_type() {
    let mut app = TestApp::start(Options::quiet()).await;
    let tenant = app.tenant_with_channel("acme", PNID).await;

    // The directory holds nothing this test does not cover.
    let dir = format!("{}/tests/fixtures/webhooks", env!("CARGO_MANIFEST_DIR"));
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let mut covered: Vec<String> = MESSAGE_FIXTURES
        .iter()
        .map(|(n, _)| *n)
        .chain(OTHER_FIXTURES.iter().copied())
        .chain(["multi_message.json", "multi_entry.json"])
        .map(String::from)
        .collect();
    covered.sort();
    assert_eq!(on_disk, covered);

    for (name, kind) in MESSAGE_FIXTURES {
        let body = fixture(name, PNID);
        let wamid = message_wamids(&body).pop().unwrap();
        let (status, text) = app.post_signed(&body).await;
        assert_eq!(status, 200, "{name}: {text}");
        let (conversation, message) = app
            .wait_for(WAIT, |app| app.message_by_wamid(tenant, &wamid))
            .await;
        assert_eq!(message.body.kind(), *kind, "{name}: {:?}", message.body);
        assert_eq!(conversation.contact_wa_id, CUSTOMER, "{name}");
        assert_eq!(message.direction, Direction::Inbound, "{name}");
        assert_eq!(message.author, Author::Customer, "{name}");
        assert_eq!(message.status, MessageStatus::Received, "{name}");
    }
    for name in OTHER_FIXTURES {
        let (status, text) = app.post_signed(&fixture(name, PNID)).await;
        assert_eq!(status, 200, "{name}: {text}");
    }

    // All from one customer on one number: one conversation holding every message once.
    let conversations = app.conversations(tenant);
    assert_eq!(conversations.len(), 1);
    let messages = app.messages(tenant, &conversations[0]);
    assert_eq!(messages.len(), MESSAGE_FIXTURES.len());
    assert_eq!(
        conversations[0].contact_name.as_deref(),
        Some("Sheena Nelson")
    );

    let content = |name: &str| {
        let wamid = message_wamids(&fixture(name, PNID)).pop().unwrap();
        match app.message_by_wamid(tenant, &wamid).unwrap().1.body {
            MessageBody::Inbound { content, .. } => content,
            other => panic!("{name} stored as {other:?}"),
        }
    };
    match content("unknown_type.json") {
        MessageContent::Unsupported { type_name, .. } => assert_eq!(type_name, "poll"),
        other => panic!("unknown_type.json stored as {other:?}"),
    }
    match content("unsupported.json") {
        MessageContent::Unsupported { type_name, errors } => {
            assert_eq!(type_name, "poll_update");
            assert!(!errors.is_empty());
        }
        other => panic!("unsupported.json stored as {other:?}"),
    }
    match content("referral.json") {
        MessageContent::Text { body } => {
            assert_eq!(body, "Hi! I saw your ad, do you ship to Canada?")
        }
        other => panic!("referral.json stored as {other:?}"),
    }
    // Ad attribution and quoted replies are kept with the stored message.
    let stored = |name: &str| {
        let wamid = message_wamids(&fixture(name, PNID)).pop().unwrap();
        app.message_by_wamid(tenant, &wamid).unwrap().1.body
    };
    match stored("referral.json") {
        MessageBody::Inbound { referral, .. } => {
            assert!(referral.is_some(), "the ad referral was dropped")
        }
        other => panic!("referral.json stored as {other:?}"),
    }
    match stored("text_reply_context.json") {
        MessageBody::Inbound { context, .. } => {
            assert!(
                context.is_some_and(|c| c.message_id.is_some()),
                "the quoted message was dropped"
            )
        }
        other => panic!("text_reply_context.json stored as {other:?}"),
    }
    match content("system_user_changed_number.json") {
        MessageContent::System { kind, .. } => assert_eq!(kind, "user_changed_number"),
        other => panic!("system_user_changed_number.json stored as {other:?}"),
    }

    // Meta redelivers; a redelivery is acknowledged and changes nothing, not even the event log.
    let before = app.settled_footprint(&[tenant]).await;
    for (name, _) in MESSAGE_FIXTURES {
        assert_eq!(app.post_signed(&fixture(name, PNID)).await.0, 200, "{name}");
    }
    assert_eq!(app.footprint(&[tenant]), before);
    assert_eq!(app.all_messages(tenant).len(), MESSAGE_FIXTURES.len());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_with_several_messages_stores_them_all_in_order() {
    let mut app = TestApp::start(Options::quiet()).await;
    let tenant = app.tenant_with_channel("acme", PNID).await;

    let body = fixture("multi_message.json", PNID);
    let wamids = message_wamids(&body);
    assert_eq!(wamids.len(), 3);
    assert_eq!(app.post_signed(&body).await.0, 200);
    app.wait_for(WAIT, |app| {
        wamids
            .iter()
            .all(|w| app.message_by_wamid(tenant, w).is_some())
            .then_some(())
    })
    .await;

    let conversations = app.conversations(tenant);
    assert_eq!(conversations.len(), 2, "two customers, two conversations");
    let first = conversations
        .iter()
        .find(|c| c.contact_wa_id == CUSTOMER)
        .unwrap();
    let theirs: Vec<String> = app
        .messages(tenant, first)
        .into_iter()
        .filter_map(|m| m.wamid)
        .collect();
    assert_eq!(
        theirs,
        wamids[..2],
        "the first customer's two messages, in order"
    );
    let second = conversations
        .iter()
        .find(|c| c.contact_wa_id == "919876543210")
        .unwrap();
    let (_, image) = app.message_by_wamid(tenant, &wamids[2]).unwrap();
    assert_eq!(image.conversation, second.id);
    assert_eq!(image.body.kind(), "image");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_for_two_numbers_files_each_message_under_its_own_tenant_only() {
    let mut app = TestApp::start(Options::quiet()).await;
    let [acme, globex] = two_tenants(&app).await;

    let body = fixture_value("multi_entry.json").to_string().into_bytes();
    let wamids = message_wamids(&body);
    assert_eq!(app.post_signed(&body).await.0, 200);
    let (acme_conv, _) = app
        .wait_for(WAIT, |app| app.message_by_wamid(acme, &wamids[0]))
        .await;
    let (globex_conv, _) = app
        .wait_for(WAIT, |app| app.message_by_wamid(globex, &wamids[1]))
        .await;
    assert_eq!(acme_conv.contact_wa_id, CUSTOMER);
    assert_eq!(globex_conv.contact_wa_id, "447700900123");
    assert!(app.message_by_wamid(acme, &wamids[1]).is_none());
    assert!(app.message_by_wamid(globex, &wamids[0]).is_none());
    assert_eq!(app.all_messages(acme).len(), 1);
    assert_eq!(app.all_messages(globex).len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_handshake_echoes_the_challenge_only_for_a_known_verify_token() {
    let mut app = TestApp::start(Options::quiet()).await;
    app.tenant_with_channel("acme", PNID).await;
    let channels = app.get("/api/v1/tenants/acme/channels").await;
    let token = channels[0]["verify_token"].as_str().unwrap().to_string();
    assert_eq!(token, format!("{VERIFY_TOKEN}-{PNID}"));

    let handshake = |query: Vec<(&'static str, String)>| {
        let req = app
            .http
            .get(format!("{}/webhooks/whatsapp", app.url))
            .query(&query);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let mode = ("hub.mode", "subscribe".to_string());
    let challenge = ("hub.challenge", "123".to_string());
    let (status, body) = handshake(vec![
        mode.clone(),
        ("hub.verify_token", token.clone()),
        challenge.clone(),
    ])
    .await;
    assert_eq!((status, body.as_str()), (200, "123"));

    let refused: Vec<(&str, Vec<(&'static str, String)>)> = vec![
        (
            "wrong token",
            vec![
                mode.clone(),
                ("hub.verify_token", "guess".into()),
                challenge.clone(),
            ],
        ),
        (
            "missing mode",
            vec![("hub.verify_token", token.clone()), challenge.clone()],
        ),
        (
            "other mode",
            vec![
                ("hub.mode", "unsubscribe".into()),
                ("hub.verify_token", token.clone()),
                challenge.clone(),
            ],
        ),
        ("missing token", vec![mode.clone(), challenge.clone()]),
        (
            "empty token",
            vec![
                mode.clone(),
                ("hub.verify_token", String::new()),
                challenge.clone(),
            ],
        ),
    ];
    for (what, query) in refused {
        let (status, body) = handshake(query).await;
        assert_eq!(status, 403, "{what}: {body}");
        assert!(!body.contains("123"), "{what} echoed the challenge");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_webhook_for_a_sandbox_number_is_refused() {
    let mut app = TestApp::start(Options::quiet()).await;
    let tenant = app.create_tenant("acme").await;
    app.post(
        "/api/v1/tenants/acme/channels",
        json!({"type": "sandbox", "name": "Simulator"}),
    )
    .await;
    let channels = app.get("/api/v1/tenants/acme/channels").await;
    let sandbox_pnid = channels[0]["phone_number_id"].as_str().unwrap().to_string();
    let before = app.settled_footprint(&[tenant]).await;

    let body = text_webhook(&sandbox_pnid, CUSTOMER, "wamid.SBX", "pretending");
    // A sandbox number has no app secret, so no signature can be right.
    for signature in [
        Some(sign(APP_SECRET.as_bytes(), &body)),
        Some(sign(b"", &body)),
        None,
    ] {
        let (status, text) = app.post_webhook(&body, signature.as_deref()).await;
        assert_eq!(status, 401, "{signature:?}: {text}");
        assert_eq!(app.footprint(&[tenant]), before);
    }
    assert!(app.conversations(tenant).is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_webhook_is_413_and_the_next_one_is_served() {
    let mut app = TestApp::start(Options::quiet()).await;
    let tenant = app.tenant_with_channel("acme", PNID).await;
    let before = app.settled_footprint(&[tenant]).await;

    let padded = |wamid: &str, pad: usize| {
        let mut v: Value =
            serde_json::from_slice(&text_webhook(PNID, CUSTOMER, wamid, "big")).unwrap();
        v["padding"] = json!("x".repeat(pad));
        v.to_string().into_bytes()
    };
    let huge = padded("wamid.HUGE", 3 * 1024 * 1024 + 1024);
    let (status, _) = app.post_signed(&huge).await;
    assert_eq!(status, 413);
    assert_eq!(app.footprint(&[tenant]), before);

    let next = text_webhook(PNID, CUSTOMER, "wamid.NEXT", "still there?");
    assert_eq!(app.post_signed(&next).await.0, 200);
    app.wait_for(WAIT, |app| app.message_by_wamid(tenant, "wamid.NEXT"))
        .await;
    assert!(app.message_by_wamid(tenant, "wamid.HUGE").is_none());

    // The webhook limit is its own (3 MiB), not the JSON API's 1 MiB.
    let large = padded("wamid.LARGE", 2 * 1024 * 1024);
    assert_eq!(app.post_signed(&large).await.0, 200);
    app.wait_for(WAIT, |app| app.message_by_wamid(tenant, "wamid.LARGE"))
        .await;
    app.stop().await;
}

/// A status fixture about one message of ours: its wamid and the callback data we sent with it.
fn status_for(name: &str, wamid: &str, callback: Option<&str>) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture(name, PNID)).unwrap();
    let status = &mut v["entry"][0]["changes"][0]["value"]["statuses"][0];
    status["id"] = json!(wamid);
    status["recipient_id"] = json!(CUSTOMER);
    match callback {
        Some(tag) => status["biz_opaque_callback_data"] = json!(tag),
        None => {
            status
                .as_object_mut()
                .unwrap()
                .remove("biz_opaque_callback_data");
        }
    }
    v.to_string().into_bytes()
}

/// An agent's reply, once the fake Graph accepted it: (message id, wamid, callback data).
async fn reply_sent(
    app: &TestApp,
    tenant: TenantId,
    conversation: &str,
    text: &str,
) -> (wacrm::storage::MessageId, String, String) {
    let queued = app
        .post(
            &format!("/api/v1/tenants/acme/conversations/{conversation}/reply"),
            json!({"text": text}),
        )
        .await;
    let id: wacrm::storage::MessageId = queued["id"].as_str().unwrap().parse().unwrap();
    let message = app
        .wait_for(WAIT, |app| {
            app.all_messages(tenant)
                .into_iter()
                .find(|m| m.id == id && m.status == MessageStatus::Sent)
        })
        .await;
    let wamid = message.wamid.unwrap();
    let send = app
        .graph
        .sent()
        .into_iter()
        .find(|s| s.wamid == wamid)
        .unwrap();
    assert_eq!(send.body["text"]["body"], text);
    (id, wamid, send.biz_opaque_callback_data.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_webhooks_move_our_messages_forward_and_a_failure_keeps_its_reason() {
    let mut app = TestApp::start(Options::quiet()).await;
    let tenant = app.tenant_with_channel("acme", PNID).await;
    let body = fixture("text.json", PNID);
    assert_eq!(app.post_signed(&body).await.0, 200);
    let wamid = message_wamids(&body).pop().unwrap();
    let (conversation, _) = app
        .wait_for(WAIT, |app| app.message_by_wamid(tenant, &wamid))
        .await;
    let conversation = conversation.id.to_string();
    let status_of = |app: &TestApp, id| {
        app.all_messages(tenant)
            .into_iter()
            .find(|m| m.id == id)
            .unwrap()
    };

    let (first, first_wamid, first_tag) = reply_sent(&app, tenant, &conversation, "Hello!").await;
    for (name, expected) in [
        ("status_delivered.json", MessageStatus::Delivered),
        ("status_read.json", MessageStatus::Read),
    ] {
        let (status, text) = app
            .post_signed(&status_for(name, &first_wamid, Some(&first_tag)))
            .await;
        assert_eq!(status, 200, "{name}: {text}");
        app.wait_for(WAIT, |app| {
            (status_of(app, first).status == expected).then_some(())
        })
        .await;
    }
    // Late and foreign statuses: a stale `sent` for our message, a failure for someone else's
    // message (the fixture as Meta sent it). Both accepted; neither may touch our message.
    let stale = status_for("status_sent.json", &first_wamid, None);
    assert_eq!(app.post_signed(&stale).await.0, 200);
    assert_eq!(
        app.post_signed(&fixture("status_failed.json", PNID))
            .await
            .0,
        200
    );

    // The failure of a second reply, as Meta reports it (131047: outside the 24-hour window).
    let (second, second_wamid, second_tag) =
        reply_sent(&app, tenant, &conversation, "Are you still there?").await;
    let failed = status_for("status_failed.json", &second_wamid, Some(&second_tag));
    assert_eq!(app.post_signed(&failed).await.0, 200);
    let failed = app
        .wait_for(WAIT, |app| {
            let m = status_of(app, second);
            (m.status == MessageStatus::Failed).then_some(m)
        })
        .await;
    let reason = failed.failure.unwrap_or_default();
    assert!(reason.contains("131047"), "failure reason: {reason:?}");

    // Statuses of one customer are applied in order, so the stale and foreign ones are done.
    let first = status_of(&app, first);
    assert_eq!(first.status, MessageStatus::Read);
    assert_eq!(first.failure, None);
    assert_eq!(app.graph.sent().len(), 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_webhooks_that_overtake_an_unanswered_send_settle_it_without_a_second_send() {
    // Meta takes the message and reports sent/delivered/read, but its HTTP answer never comes
    // (the client times out): the statuses are the proof it went out.
    let mut app = TestApp::start(Options {
        status_webhooks: true,
        ..Options::quiet()
    })
    .await;
    let tenant = app.tenant_with_channel("acme", PNID).await;
    let body = fixture("text.json", PNID);
    assert_eq!(app.post_signed(&body).await.0, 200);
    let wamid = message_wamids(&body).pop().unwrap();
    let (conversation, _) = app
        .wait_for(WAIT, |app| app.message_by_wamid(tenant, &wamid))
        .await;

    app.graph
        .fail_next(1, wacrm::testkit::fake_graph::Failure::Timeout);
    let queued = app
        .post(
            &format!(
                "/api/v1/tenants/acme/conversations/{}/reply",
                conversation.id
            ),
            json!({"text": "On our way"}),
        )
        .await;
    let id: wacrm::storage::MessageId = queued["id"].as_str().unwrap().parse().unwrap();
    let sent = app.graph.wait_for_sent(1, WAIT).await;
    app.graph.wait_for_webhooks(3, WAIT).await;

    // Once the sender is done with the message (its event acked), it was sent exactly once and
    // keeps the status Meta reported.
    app.settled_footprint(&[tenant]).await;
    let reply = app
        .all_messages(tenant)
        .into_iter()
        .find(|m| m.id == id)
        .unwrap();
    assert_eq!(
        app.graph.sent().len(),
        1,
        "the customer got the reply twice"
    );
    assert_eq!(reply.status, MessageStatus::Read, "{reply:?}");
    assert_eq!(reply.wamid.as_deref(), Some(sent[0].wamid.as_str()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_reported_before_the_send_is_answered_keeps_its_reason() {
    let mut app = TestApp::start(Options::quiet()).await;
    let tenant = app.tenant_with_channel("acme", PNID).await;
    let body = fixture("text.json", PNID);
    assert_eq!(app.post_signed(&body).await.0, 200);
    let wamid = message_wamids(&body).pop().unwrap();
    let (conversation, _) = app
        .wait_for(WAIT, |app| app.message_by_wamid(tenant, &wamid))
        .await;

    // Graph answers slowly; Meta's `failed` webhook (which carries our callback data) comes first.
    // Should the answer win the race instead, the outcome asserted below is the same.
    app.graph
        .set_latency(Some(std::time::Duration::from_millis(1_000)));
    let queued = app
        .post(
            &format!(
                "/api/v1/tenants/acme/conversations/{}/reply",
                conversation.id
            ),
            json!({"text": "Your order shipped"}),
        )
        .await;
    let id: wacrm::storage::MessageId = queued["id"].as_str().unwrap().parse().unwrap();
    app.wait_for(WAIT, |app| {
        app.all_messages(tenant)
            .into_iter()
            .find(|m| m.id == id && m.status != MessageStatus::Queued)
    })
    .await;
    let tag = wacrm::conversations::MessageRef {
        conversation: conversation.id,
        message: id,
    }
    .callback_tag();
    let failed = status_for("status_failed.json", "wamid.EARLY-FAILURE", Some(&tag));
    assert_eq!(app.post_signed(&failed).await.0, 200);

    app.graph.wait_for_sent(1, WAIT).await;
    app.settled_footprint(&[tenant]).await;
    let reply = app
        .all_messages(tenant)
        .into_iter()
        .find(|m| m.id == id)
        .unwrap();
    assert_eq!(reply.status, MessageStatus::Failed, "{reply:?}");
    let reason = reply.failure.unwrap_or_default();
    assert!(reason.contains("131047"), "failure reason: {reason:?}");
    app.stop().await;
}

/// A second tenant whose number has its own Meta app (its own app secret).
async fn tenant_with_own_app(app: &TestApp, slug: &str, pnid: &str, secret: &str) -> TenantId {
    let id = app.create_tenant(slug).await;
    app.post(
        &format!("/api/v1/tenants/{slug}/channels"),
        json!({
            "type": "cloud_api", "name": "Own app", "phone_number_id": pnid,
            "waba_id": WABA_ID, "access_token": ACCESS_TOKEN, "app_secret": secret,
            "verify_token": format!("vt-{slug}"),
        }),
    )
    .await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_app_secret_cannot_sign_webhooks_for_another_tenants_number() {
    let mut app = TestApp::start(Options::quiet()).await;
    let acme = app.tenant_with_channel("acme", PNID).await;
    let globex = tenant_with_own_app(&app, "globex", OTHER_PNID, "globex-secret").await;
    let before = app.settled_footprint(&[acme, globex]).await;

    let body = text_webhook(PNID, CUSTOMER, "wamid.CROSS", "injected");
    let (status, text) = app
        .post_webhook(&body, Some(&sign(b"globex-secret", &body)))
        .await;
    assert_eq!(status, 401, "{text}");
    assert_eq!(app.footprint(&[acme, globex]), before);

    // One body naming both numbers, signed with globex's secret: globex's part is genuine and
    // stored, acme's part is not.
    let mut both: Value = serde_json::from_slice(&text_webhook(
        OTHER_PNID,
        "447700900123",
        "wamid.GLOBEX",
        "genuine",
    ))
    .unwrap();
    let acme_entry: Value = serde_json::from_slice(&body).unwrap();
    both["entry"]
        .as_array_mut()
        .unwrap()
        .push(acme_entry["entry"][0].clone());
    let both = both.to_string().into_bytes();
    let (status, _) = app
        .post_webhook(&both, Some(&sign(b"globex-secret", &both)))
        .await;
    assert_eq!(status, 200);
    app.wait_for(WAIT, |app| app.message_by_wamid(globex, "wamid.GLOBEX"))
        .await;
    app.settled_footprint(&[acme, globex]).await;
    assert!(app.conversations(acme).is_empty());
    assert!(app.message_by_wamid(globex, "wamid.CROSS").is_none());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_webhook_from_another_tenants_number_cannot_touch_our_messages() {
    let mut app = TestApp::start(Options::quiet()).await;
    let acme = app.tenant_with_channel("acme", PNID).await;
    app.tenant_with_channel("globex", OTHER_PNID).await;
    let body = fixture("text.json", PNID);
    assert_eq!(app.post_signed(&body).await.0, 200);
    let wamid = message_wamids(&body).pop().unwrap();
    let (conversation, _) = app
        .wait_for(WAIT, |app| app.message_by_wamid(acme, &wamid))
        .await;
    let (id, sent_wamid, tag) =
        reply_sent(&app, acme, &conversation.id.to_string(), "Hello!").await;

    // Our wamid and callback data, but arriving on globex's number.
    let mut forged: Value =
        serde_json::from_slice(&status_for("status_failed.json", &sent_wamid, Some(&tag))).unwrap();
    forged["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = json!(OTHER_PNID);
    let forged = forged.to_string().into_bytes();
    assert_eq!(app.post_signed(&forged).await.0, 200);
    app.settled_footprint(&[acme]).await;
    let reply = app
        .all_messages(acme)
        .into_iter()
        .find(|m| m.id == id)
        .unwrap();
    assert_eq!(reply.status, MessageStatus::Sent, "{reply:?}");
    assert_eq!(reply.failure, None);
    app.stop().await;
}
