//! Plans, quotas and metering through the running appliance: what an operator, a tenant admin
//! and a customer would notice.

mod support;

use serde_json::json;
use support::*;
use wacrm::conversations::{Author, ConversationState, HandoffReason, MessageBody};
use wacrm::events::{self, Consumer, EventPayload};
use wacrm::whatsapp::payload::parse_webhook;

const PHONE: &str = "106540352242922";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starter_tenant_cannot_create_a_second_outlet_and_nothing_is_half_created() {
    let mut app = TestApp::start(Options::default()).await;
    app.create_tenant("acme").await;
    let path = "/api/v1/tenants/acme/outlets";
    app.post(path, json!({"name": "Main street"})).await;

    let (status, body) = app
        .api(
            reqwest::Method::POST,
            path,
            Some(json!({"name": "Harbour"})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("outlet limit reached"), "{message}");
    assert!(message.contains("allows 1 outlet"), "{message}");
    assert!(message.contains("\"Starter\""), "{message}");

    let outlets = app.get(path).await;
    assert_eq!(outlets.as_array().unwrap().len(), 1);
    assert_eq!(outlets[0]["name"], "Main street");
    let billing = app.get("/api/v1/tenants/acme/billing").await;
    assert_eq!(billing["usage"]["outlets"]["used"], 1);
    assert_eq!(billing["usage"]["outlets"]["limit"], 1);
    assert_eq!(billing["usage"]["outlets"]["remaining"], 0);

    // The operator moves the tenant to Growth: the new limit holds at once.
    app.api(
        reqwest::Method::PUT,
        "/api/v1/tenants/acme/billing/plan",
        Some(json!({"plan": "growth"})),
    )
    .await;
    app.post(path, json!({"name": "Harbour"})).await;
    assert_eq!(app.get(path).await.as_array().unwrap().len(), 2);
    app.stop().await;
}

fn customers() -> Vec<(String, String)> {
    (0..100)
        .map(|i| (format!("62812000{i:04}"), format!("wamid.QUOTA{i:03}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_turns_with_ten_messages_left_get_ten_answers_and_ninety_handoffs() {
    let mut app = TestApp::start(Options::default()).await;
    let tenant = app.tenant_with_channel("acme", PHONE).await;
    // Starter allows 500 replies a period; 490 are already used.
    app.store()
        .write(move |ctx| {
            let now = jiff::Timestamp::now();
            for _ in 0..490 {
                wacrm::billing::meter_reply(ctx, tenant, now)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let warnings = app.get("/api/v1/tenants/acme/billing/warnings").await;
    assert_eq!(warnings.as_array().unwrap().len(), 1, "{warnings}");
    assert_eq!(warnings[0]["threshold_percent"], 80);

    let bodies: Vec<Vec<u8>> = customers()
        .iter()
        .map(|(from, wamid)| text_webhook(PHONE, from, wamid, "Do you open on Sunday?"))
        .collect();
    let posts = bodies.iter().map(|b| app.post_signed(b));
    for (status, _) in futures::future::join_all(posts).await {
        assert_eq!(status, 200);
    }

    // Every customer hears back: 10 answers and 90 handoff notices.
    let sent = app.graph.wait_for_sent(100, WAIT).await;
    let settled = app
        .wait_for(WAIT, |app| {
            let cs = app.conversations(tenant);
            let done = cs.len() == 100
                && cs.iter().all(|c| {
                    app.messages(tenant, c)
                        .iter()
                        .any(|m| m.author == Author::Assistant)
                });
            done.then_some(cs)
        })
        .await;
    let mut answered = 0;
    let mut handed_off = 0;
    for c in &settled {
        let messages = app.messages(tenant, c);
        let said: Vec<String> = messages
            .iter()
            .filter(|m| m.author == Author::Assistant)
            .map(|m| m.body.preview_text())
            .collect();
        assert_eq!(said.len(), 1, "one message from the assistant: {said:?}");
        if said[0].starts_with("You said:") {
            answered += 1;
            assert_eq!(c.state, ConversationState::Bot);
        } else {
            handed_off += 1;
            assert_eq!(c.state, ConversationState::PendingHuman);
            assert_eq!(c.handoff_reason, Some(HandoffReason::QuotaExhausted));
            assert!(said[0].contains("member of our team"), "{}", said[0]);
            assert!(messages.iter().any(|m| matches!(&m.body,
                MessageBody::Note { text } if text.contains("quota exhausted"))));
        }
    }
    assert_eq!((answered, handed_off), (10, 90));
    assert_eq!(sent.len(), 100);

    let billing = app.get("/api/v1/tenants/acme/billing").await;
    let messages = &billing["usage"]["assistant_messages"];
    assert_eq!(messages["used"], 500, "{billing}");
    assert_eq!(messages["limit"], 500);
    assert_eq!(messages["remaining"], 0);
    assert_eq!(billing["usage"]["quota_handoffs"], 90);
    assert_eq!(billing["usage"]["overage_messages"], 0);
    // Every model call of these turns is on the tenant's account.
    let llm_calls = app.llm.as_ref().unwrap().request_count() as u64;
    assert!((10..=100).contains(&llm_calls), "{llm_calls}");
    eprintln!("model calls: {llm_calls}");
    assert_eq!(billing["usage"]["tokens"]["llm_calls"], llm_calls);
    assert!(
        billing["usage"]["tokens"]["llm_prompt_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    let warnings = app.get("/api/v1/tenants/acme/billing/warnings").await;
    let thresholds: Vec<u64> = warnings
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["threshold_percent"].as_u64().unwrap())
        .collect();
    assert_eq!(thresholds, [100, 80]);
    assert_eq!(warnings[0]["used"], 500);

    // Meta redelivers every webhook, and the outbox redelivers every event: nothing changes.
    let posts = bodies.iter().map(|b| app.post_signed(b));
    for (status, _) in futures::future::join_all(posts).await {
        assert_eq!(status, 200);
    }
    let mut redelivered = Vec::new();
    for body in &bodies {
        for batch in parse_webhook(body).unwrap() {
            redelivered.extend(batch.messages);
        }
    }
    let channel = app.get("/api/v1/tenants/acme/channels").await[0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    app.store()
        .write(move |ctx| {
            for message in &redelivered {
                events::publish(
                    ctx,
                    tenant,
                    EventPayload::InboundMessage {
                        channel,
                        profile_name: Some("Budi".into()),
                        message: Box::new(message.clone()),
                    },
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
    app.wait_for(WAIT, |app| {
        let idle = [Consumer::Conversations, Consumer::Sender]
            .iter()
            .all(|c| events::queue_depth(app.store(), *c).unwrap() == 0);
        idle.then_some(())
    })
    .await;
    // Nothing is left to run: no turn is pending anywhere.
    let pending: usize = app
        .conversations(tenant)
        .iter()
        .map(|c| {
            app.store()
                .read(|r| {
                    r.tenant(tenant)
                        .get(&wacrm::conversations::PENDING_TURNS, c.id.as_bytes())
                })
                .unwrap()
                .is_some() as usize
        })
        .sum();
    assert_eq!(pending, 0);
    assert_eq!(app.conversations(tenant).len(), 100);
    assert_eq!(app.graph.sent().len(), 100);
    let again = app.get("/api/v1/tenants/acme/billing").await;
    assert_eq!(again["usage"]["assistant_messages"]["used"], 500);
    assert_eq!(again["usage"]["quota_handoffs"], 90);
    let warnings = app.get("/api/v1/tenants/acme/billing/warnings").await;
    assert_eq!(warnings.as_array().unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_quota_used_up_the_customer_gets_a_person_and_the_agents_reply_is_not_metered() {
    let mut app = TestApp::start(Options::default()).await;
    let tenant = app.tenant_with_channel("acme", PHONE).await;
    app.api(
        reqwest::Method::PUT,
        "/api/v1/tenants/acme/billing/overrides",
        Some(json!({"assistant_messages": 1})),
    )
    .await;
    let first = text_webhook(PHONE, "6281234567890", "wamid.A1", "Do you open on Sunday?");
    assert_eq!(app.post_signed(&first).await.0, 200);
    app.graph.wait_for_sent(1, WAIT).await;
    let llm_calls = app.llm.as_ref().unwrap().request_count();

    let second = text_webhook(PHONE, "6289876543210", "wamid.B1", "Do you deliver?");
    assert_eq!(app.post_signed(&second).await.0, 200);
    let sent = app.graph.wait_for_sent(2, WAIT).await;
    assert!(sent[1].body["text"]["body"]
        .as_str()
        .unwrap()
        .contains("member of our team"));
    // The pre-check handed off without asking the model.
    assert_eq!(app.llm.as_ref().unwrap().request_count(), llm_calls);
    let c = app
        .wait_for(WAIT, |app| {
            app.conversations(tenant).into_iter().find(|c| {
                c.contact_wa_id == "6289876543210" && c.state == ConversationState::PendingHuman
            })
        })
        .await;
    assert_eq!(c.handoff_reason, Some(HandoffReason::QuotaExhausted));

    let reply = format!("/api/v1/tenants/acme/conversations/{}/reply", c.id);
    app.post(&reply, json!({"text": "Hi, yes we deliver."}))
        .await;
    app.graph.wait_for_sent(3, WAIT).await;
    let billing = app.get("/api/v1/tenants/acme/billing").await;
    assert_eq!(billing["usage"]["assistant_messages"]["used"], 1);
    assert_eq!(billing["usage"]["assistant_messages"]["limit"], 1);
    assert_eq!(billing["usage"]["quota_handoffs"], 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_manages_plans_and_reads_usage_periods_and_statements() {
    let mut app = TestApp::start(Options::default()).await;
    app.create_tenant("acme").await;
    app.create_tenant("beta").await;

    let plans = app.get("/api/v1/billing/plans").await;
    let ids: Vec<&str> = plans
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["starter", "growth", "enterprise"]);
    assert_eq!(
        plans[0]["price"],
        json!({"minor": 9900, "currency": "USD", "amount": "99.00"})
    );
    assert_eq!(plans[2]["limits"]["knowledge_bases"], "unlimited");
    assert_eq!(plans[0]["limits"]["storage_bytes"], 50 * 1024 * 1024);

    // Prices are never floats.
    let (status, body) = app
        .api(
            reqwest::Method::POST,
            "/api/v1/billing/plans",
            Some(json!({
                "id": "flex", "name": "Flex",
                "price": {"minor": 49.5, "currency": "USD"},
                "limits": {"assistant_messages": 100, "outlets": 1, "knowledge_bases": 1, "storage_bytes": 1048576}
            })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let flex = app
        .post(
            "/api/v1/billing/plans",
            json!({
                "id": "flex", "name": "Flex",
                "price": {"amount": "49.00", "currency": "USD"},
                "limits": {"assistant_messages": 100, "outlets": 1, "knowledge_bases": 1, "storage_bytes": 1048576},
                "overage": {"amount": "0.05", "currency": "USD"}
            }),
        )
        .await;
    assert_eq!(flex["overage"]["minor"], 5);
    let (status, _) = app
        .api(
            reqwest::Method::PATCH,
            "/api/v1/billing/plans/flex",
            Some(json!({"limits": {"outlets": 2}, "name": "Flex 2"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, view) = app
        .api(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/billing/plan",
            Some(json!({"plan": "flex"})),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["plan"]["id"], "flex");
    assert_eq!(view["limits"]["outlets"], 2);
    let spans = view["subscription"]["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[1]["plan"], "flex");
    let (status, body) = app
        .api(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/billing/plan",
            Some(json!({"plan": "platinum"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // Per-tenant override, then removing it.
    let view = app
        .put(
            "/api/v1/tenants/beta/billing/overrides",
            json!({"assistant_messages": "unlimited", "storage_bytes": 1}),
        )
        .await;
    assert_eq!(view["limits"]["assistant_messages"], "unlimited");
    assert_eq!(
        view["usage"]["assistant_messages"]["remaining"],
        serde_json::Value::Null
    );
    assert_eq!(view["limits"]["storage_bytes"], 1);
    let view = app
        .put("/api/v1/tenants/beta/billing/overrides", json!({}))
        .await;
    assert_eq!(view["limits"]["assistant_messages"], 500);

    let overview = app.get("/api/v1/billing/tenants").await;
    let rows: Vec<(String, String)> = overview
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["slug"].as_str().unwrap().to_string(),
                r["plan"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(rows.contains(&("acme".into(), "flex".into())), "{rows:?}");
    assert!(
        rows.contains(&("beta".into(), "starter".into())),
        "{rows:?}"
    );

    let periods = app.get("/api/v1/tenants/acme/billing/periods").await;
    assert_eq!(periods.as_array().unwrap().len(), 1);
    assert_eq!(periods[0]["current"], true);
    let label = periods[0]["period"]["label"].as_str().unwrap().to_string();

    let statement = app
        .get(&format!("/api/v1/tenants/acme/billing/periods/{label}"))
        .await;
    let kinds: Vec<&str> = statement["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["plan"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["starter", "flex"]);
    let resp = app
        .http
        .get(format!(
            "{}/api/v1/tenants/acme/billing/periods/current/statement.csv",
            app.url
        ))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/csv; charset=utf-8"
    );
    let csv = resp.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("tenant,period_start,period_end,item,plan"));
    assert!(lines[1].starts_with("acme,") && lines[1].contains(",plan,starter,"));
    assert!(lines[2].contains(",plan,flex,"));
    assert!(lines[3].contains(",total,"));
    assert!(lines[1..4].iter().all(|l| l.ends_with(",USD")));
    assert!(lines[4..].iter().all(|l| l.contains(",usage,")));

    let (status, _) = app
        .api(
            reqwest::Method::GET,
            "/api/v1/tenants/acme/billing/periods/2001-01-01",
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .api(reqwest::Method::GET, "/api/v1/billing/plans", None)
        .await;
    assert_eq!(status, 200);
    let unauthenticated = app
        .http
        .get(format!("{}/api/v1/billing/plans", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    app.stop().await;
}
