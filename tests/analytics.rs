//! Analytics end to end: a known history goes through the webhook, the assistant (fake model),
//! agents and closings; the API's figures must equal a direct count over the stored
//! conversations and messages, for the whole tenant and for each outlet.

mod support;

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{json, Value};
use support::ops::dump;
use support::*;
use wacrm::conversations::{Author, Conversation, ConversationState, Message, MessageBody};
use wacrm::storage::{OutletId, TenantId};
use wacrm::testkit::fake_llm::Reply;

const PA: &str = "106540352242922";
const PB: &str = "106540352242933";
const PN: &str = "106540352242944";
const TZ: &str = "Asia/Jakarta";

async fn writes(app: &TestApp, phone: &str, from: &str, wamid: &str, text: &str) {
    let (status, body) = app
        .post_signed(&text_webhook(phone, from, wamid, text))
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn writes_at(app: &TestApp, phone: &str, from: &str, wamid: &str, text: &str, secs: i64) {
    let (status, body) = app
        .post_signed(&text_webhook_at(phone, from, wamid, text, secs))
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn in_state(
    app: &TestApp,
    tenant: TenantId,
    wa_id: &str,
    state: ConversationState,
) -> Conversation {
    app.wait_for(WAIT, |app| {
        app.conversation_of(tenant, wa_id)
            .filter(|c| c.state == state)
    })
    .await
}

async fn replied(app: &TestApp, tenant: TenantId, wa_id: &str, n: usize) -> Conversation {
    app.wait_for(WAIT, |app| {
        let c = app.conversation_of(tenant, wa_id)?;
        (app.messages_by(tenant, &c, Author::Assistant).len() >= n).then_some(c)
    })
    .await
}

fn tz() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get(TZ).unwrap()
}

fn local(ms: i64) -> jiff::Zoned {
    jiff::Timestamp::from_millisecond(ms)
        .unwrap()
        .to_zoned(tz())
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Dur {
    count: u64,
    total: u64,
    max: u64,
}

impl Dur {
    fn add(&mut self, ms: i64) {
        let ms = ms.max(0) as u64;
        self.count += 1;
        self.total += ms;
        self.max = self.max.max(ms);
    }
    fn json(&self) -> Value {
        if self.count == 0 {
            json!({"count": 0, "avg_ms": null, "max_ms": null})
        } else {
            json!({"count": self.count, "avg_ms": self.total / self.count, "max_ms": self.max})
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Day {
    conversations: u64,
    handed_off: u64,
    resolved_by_assistant: u64,
    resolved_by_human: u64,
    customer_messages: u64,
    assistant_messages: u64,
    agent_messages: u64,
}

/// The figures, counted straight from the stored conversations and messages.
#[derive(Debug, Default)]
struct Direct {
    days: BTreeMap<String, Day>,
    hours: [u64; 24],
    reasons: BTreeMap<String, u64>,
    closed: u64,
    first_response_assistant: Dur,
    first_response_human: Dur,
    resolution_assistant: Dur,
    resolution_human: Dur,
    /// Normalized question → (first wording, count).
    unanswered: BTreeMap<String, (String, u64)>,
}

fn is_reply(m: &Message) -> bool {
    matches!(m.body, MessageBody::Outbound { .. })
}

fn normalize(text: &str) -> String {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn direct_count(app: &TestApp, tenant: TenantId, outlet: Option<Option<OutletId>>) -> Direct {
    let mut d = Direct::default();
    let day_of = |ms: i64| local(ms).date().to_string();
    let mut conversations = app.conversations(tenant);
    // Oldest first: a question's first wording is the one listed.
    conversations.sort_by_key(|c| c.id);
    for c in conversations {
        if outlet.is_some_and(|o| o != c.outlet) {
            continue;
        }
        let messages = app.messages(tenant, &c);
        let cohort = day_of(c.opened_at_ms);
        d.days.entry(cohort.clone()).or_default().conversations += 1;
        let handoffs: Vec<&Message> = messages
            .iter()
            .filter(|m| {
                m.author == Author::System
                    && m.body.preview_text().starts_with("Handed to a person")
            })
            .collect();
        let handoff_at = handoffs.first().map(|m| m.created_at_ms);
        if handoff_at.is_some() {
            d.days.get_mut(&cohort).unwrap().handed_off += 1;
            let code = c.handoff_reason.as_ref().unwrap().code().to_string();
            *d.reasons.entry(code).or_default() += 1;
        }
        if let Some(first) = messages.iter().find(|m| is_reply(m)) {
            if first.author == Author::Assistant {
                d.first_response_assistant
                    .add(first.created_at_ms - c.opened_at_ms);
            }
        }
        let first_agent = messages
            .iter()
            .find(|m| is_reply(m) && m.author == Author::Agent);
        if let Some(a) = first_agent {
            let from = handoff_at
                .filter(|h| *h <= a.created_at_ms)
                .unwrap_or(c.opened_at_ms);
            d.first_response_human.add(a.created_at_ms - from);
        }
        if c.state == ConversationState::Closed {
            d.closed += 1;
            let took = c.closed_at_ms.unwrap() - c.opened_at_ms;
            let day = d.days.get_mut(&cohort).unwrap();
            if handoff_at.is_some() || first_agent.is_some() {
                day.resolved_by_human += 1;
                d.resolution_human.add(took);
            } else {
                day.resolved_by_assistant += 1;
                d.resolution_assistant.add(took);
            }
        }
        // The question behind each no-answer handoff: the customer's messages since the last
        // reply before it.
        for h in &handoffs {
            if !h
                .body
                .preview_text()
                .contains("no answer in the knowledge base")
            {
                continue;
            }
            // Messages are listed by id, in the order they were written, except that the
            // handoff notice's id is fixed before its commit (the sender claims it), so it may
            // sort just before the handoff's note: skip it.
            let at = messages.iter().position(|m| m.id == h.id).unwrap();
            let mut asked: Vec<String> = messages[..at]
                .iter()
                .rev()
                .skip_while(|m| m.author == Author::Assistant)
                .take_while(|m| m.author == Author::Customer || m.author == Author::System)
                .filter(|m| m.author == Author::Customer)
                .map(|m| m.body.preview_text())
                .collect();
            asked.reverse();
            let question = asked.join("\n");
            let entry = d
                .unanswered
                .entry(normalize(&question))
                .or_insert((question.trim().to_string(), 0));
            entry.1 += 1;
        }
        // The question behind each reply that said it did not know (and offered a person).
        for m in &messages {
            if let (Author::Assistant, Some(question)) = (m.author, &m.unanswered) {
                let entry = d
                    .unanswered
                    .entry(normalize(question))
                    .or_insert((question.trim().to_string(), 0));
                entry.1 += 1;
            }
        }
        for m in &messages {
            let day = day_of(m.created_at_ms);
            match (m.author, is_reply(m)) {
                (Author::Customer, _) => {
                    d.days.entry(day).or_default().customer_messages += 1;
                    d.hours[local(m.created_at_ms).hour() as usize] += 1;
                }
                (Author::Assistant, true) => d.days.entry(day).or_default().assistant_messages += 1,
                (Author::Agent, true) => d.days.entry(day).or_default().agent_messages += 1,
                _ => {}
            }
        }
    }
    d
}

/// The days a report covers: from two days ago to tomorrow (local), so nothing falls outside.
fn period() -> (String, String) {
    let today = jiff::Timestamp::now().to_zoned(tz()).date();
    let from = today.checked_sub(jiff::Span::new().days(2)).unwrap();
    let to = today.tomorrow().unwrap();
    (from.to_string(), to.to_string())
}

fn assert_matches(report: &Value, d: &Direct, what: &str) {
    let t = &report["totals"];
    let sum = |f: fn(&Day) -> u64| d.days.values().map(f).sum::<u64>();
    assert_eq!(
        t["conversations"],
        sum(|x| x.conversations),
        "{what}: conversations"
    );
    assert_eq!(t["handed_off"], sum(|x| x.handed_off), "{what}: handed_off");
    assert_eq!(t["closed"], d.closed, "{what}: closed");
    assert_eq!(
        t["resolved_by_assistant"],
        sum(|x| x.resolved_by_assistant),
        "{what}"
    );
    assert_eq!(
        t["resolved_by_human"],
        sum(|x| x.resolved_by_human),
        "{what}"
    );
    assert_eq!(
        t["customer_messages"],
        sum(|x| x.customer_messages),
        "{what}"
    );
    assert_eq!(
        t["assistant_messages"],
        sum(|x| x.assistant_messages),
        "{what}"
    );
    assert_eq!(t["agent_messages"], sum(|x| x.agent_messages), "{what}");
    assert_eq!(
        t["first_response_assistant"],
        d.first_response_assistant.json(),
        "{what}: first response (assistant)"
    );
    assert_eq!(
        t["first_response_human"],
        d.first_response_human.json(),
        "{what}: first response (human)"
    );
    assert_eq!(
        t["resolution_assistant"],
        d.resolution_assistant.json(),
        "{what}"
    );
    assert_eq!(t["resolution_human"], d.resolution_human.json(), "{what}");
    let closed = d.closed;
    let expected_share =
        (closed > 0).then(|| sum(|x| x.resolved_by_assistant) as f64 / closed as f64);
    assert_eq!(
        t["assistant_resolution_share"].as_f64(),
        expected_share,
        "{what}"
    );

    for row in report["days"].as_array().unwrap() {
        let date = row["date"].as_str().unwrap();
        let want = d.days.get(date).cloned().unwrap_or_default();
        let got = Day {
            conversations: row["conversations"].as_u64().unwrap(),
            handed_off: row["handed_off"].as_u64().unwrap(),
            resolved_by_assistant: row["resolved_by_assistant"].as_u64().unwrap(),
            resolved_by_human: row["resolved_by_human"].as_u64().unwrap(),
            customer_messages: row["customer_messages"].as_u64().unwrap(),
            assistant_messages: row["assistant_messages"].as_u64().unwrap(),
            agent_messages: row["agent_messages"].as_u64().unwrap(),
        };
        assert_eq!(got, want, "{what}: day {date}");
    }
    let hours: Vec<u64> = report["hours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_u64().unwrap())
        .collect();
    assert_eq!(hours, d.hours, "{what}: hours");
    let reasons: BTreeMap<String, u64> = report["handoff_reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["reason"].as_str().unwrap().to_string(),
                r["conversations"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(reasons, d.reasons, "{what}: reasons");
    let unanswered: BTreeMap<String, (String, u64)> = report["unanswered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            let q = u["question"].as_str().unwrap().to_string();
            (normalize(&q), (q, u["count"].as_u64().unwrap()))
        })
        .collect();
    assert_eq!(unanswered, d.unanswered, "{what}: unanswered");
}

async fn report(app: &TestApp, query: &str) -> Value {
    app.get(&format!("/api/v1/tenants/acme/analytics?{query}"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_figures_match_a_direct_count_over_the_stored_conversations() {
    let app = TestApp::start(Options::default()).await;
    let tenant = app.create_tenant_in("acme", TZ).await;
    // Room for two outlets (Starter allows one).
    app.put(
        "/api/v1/tenants/acme/billing/plan",
        json!({"plan": "enterprise"}),
    )
    .await;
    let a = app.create_outlet("acme", "Kemang").await;
    let b = app.create_outlet("acme", "Bandung").await;
    app.add_cloud_channel_in("acme", PA, Some(&a)).await;
    app.add_cloud_channel_in("acme", PB, Some(&b)).await;
    app.add_cloud_channel_in("acme", PN, None).await;
    let conv = |id: uuid::Uuid| format!("/api/v1/tenants/acme/conversations/{id}");

    // 1. Answered by the assistant, then closed: resolved by the assistant. Meta delivers the
    // webhook twice.
    writes(&app, PA, "62811", "wamid.A1", "Do you open on Sunday?").await;
    writes(&app, PA, "62811", "wamid.A1", "Do you open on Sunday?").await;
    let c1 = replied(&app, tenant, "62811", 1).await;
    app.post(&format!("{}/close", conv(c1.id.0)), json!({}))
        .await;

    // 2. Asks for a person, an agent answers and closes.
    writes(&app, PA, "62812", "wamid.A2", "agent please").await;
    let c2 = in_state(&app, tenant, "62812", ConversationState::PendingHuman).await;
    app.post(
        &format!("{}/reply", conv(c2.id.0)),
        json!({"text": "Ana here, how can I help?"}),
    )
    .await;
    app.post(&format!("{}/close", conv(c2.id.0)), json!({}))
        .await;

    // 3. An angry customer at outlet B, left waiting.
    writes(
        &app,
        PB,
        "62813",
        "wamid.B1",
        "This is the worst, I am angry",
    )
    .await;
    in_state(&app, tenant, "62813", ConversationState::PendingHuman).await;

    // 4. The model hands off with its tool; an agent answers; left open.
    app.llm().push_reply(Reply::ToolCall {
        name: "handoff_to_human".into(),
        arguments: json!({"reason": "refund"}),
    });
    writes(
        &app,
        PB,
        "62814",
        "wamid.B2",
        "I need a refund for order 42",
    )
    .await;
    let c4 = in_state(&app, tenant, "62814", ConversationState::PendingHuman).await;
    app.post(
        &format!("{}/reply", conv(c4.id.0)),
        json!({"text": "Refund on its way."}),
    )
    .await;

    // 5. No outlet: a message WhatsApp stamped five hours ago, then another; two answers.
    let five_hours_ago = jiff::Timestamp::now().as_second() - 5 * 3600;
    writes_at(
        &app,
        PN,
        "62815",
        "wamid.N1",
        "Halo, apakah ada menu vegan?",
        five_hours_ago,
    )
    .await;
    replied(&app, tenant, "62815", 1).await;
    writes(&app, PN, "62815", "wamid.N2", "Berapa harganya?").await;
    replied(&app, tenant, "62815", 2).await;
    // Meta redelivers the old one.
    writes_at(
        &app,
        PN,
        "62815",
        "wamid.N1",
        "Halo, apakah ada menu vegan?",
        five_hours_ago,
    )
    .await;

    // 6. The model is down: a person, closed without a word from the agent.
    app.llm().fail_all(Some(500));
    writes(&app, PA, "62816", "wamid.A3", "Do you have oat milk?").await;
    let c6 = in_state(&app, tenant, "62816", ConversationState::PendingHuman).await;
    app.llm().fail_all(None);
    app.post(&format!("{}/close", conv(c6.id.0)), json!({}))
        .await;

    // 7. The first customer again, after the closing: a new conversation.
    writes(&app, PA, "62811", "wamid.A4", "And on Monday?").await;
    app.wait_for(WAIT, |app| {
        let c = app.conversation_of(tenant, "62811")?;
        (c.id != c1.id && !app.messages_by(tenant, &c, Author::Assistant).is_empty()).then_some(())
    })
    .await;

    // 8. An agent steps in unasked in a bot conversation, then closes it: a person resolved it.
    writes(&app, PN, "62817", "wamid.N3", "Hello").await;
    let c8 = replied(&app, tenant, "62817", 1).await;
    app.post(
        &format!("{}/reply", conv(c8.id.0)),
        json!({"text": "Hi, I'm Budi from the team."}),
    )
    .await;
    app.post(&format!("{}/close", conv(c8.id.0)), json!({}))
        .await;

    app.wait_idle().await;
    let (from, to) = period();
    let all = report(&app, &format!("from={from}&to={to}")).await;
    let direct = direct_count(&app, tenant, None);
    assert_eq!(all["totals"]["conversations"], 8, "{all}");
    assert_eq!(all["totals"]["customer_messages"], 9);
    assert_eq!(all["totals"]["closed"], 4);
    assert_eq!(all["totals"]["resolved_by_assistant"], 1);
    assert_eq!(all["totals"]["resolved_by_human"], 3);
    assert_matches(&all, &direct, "tenant");

    let a_id: OutletId = a.parse().unwrap();
    let b_id: OutletId = b.parse().unwrap();
    for (query, scope, what) in [
        (format!("outlet={a}"), Some(Some(a_id)), "outlet A"),
        (format!("outlet={b}"), Some(Some(b_id)), "outlet B"),
        ("outlet=none".to_string(), Some(None), "no outlet"),
    ] {
        let r = report(&app, &format!("from={from}&to={to}&{query}")).await;
        assert_matches(&r, &direct_count(&app, tenant, scope), what);
    }

    // A viewer of outlet A sees outlet A's figures only (as with conversations); asking for
    // another outlet, or for the channels of no outlet, is refused.
    app.create_user("acme", "vera@acme.test", "viewer", &[&a])
        .await;
    let vera = app.sign_in("vera@acme.test").await;
    let mine = app
        .call(
            &vera,
            Method::GET,
            &format!("/api/v1/tenants/acme/analytics?from={from}&to={to}"),
            None,
        )
        .await;
    assert_eq!(mine.status, 200, "{:?}", mine.body);
    assert_eq!(mine.body["outlet"], a);
    assert_matches(
        &mine.body,
        &direct_count(&app, tenant, Some(Some(a_id))),
        "outlet A, as its viewer",
    );
    for query in [format!("outlet={b}"), "outlet=none".to_string()] {
        for path in [
            "analytics",
            "analytics/export/days",
            "analytics/charts/hours",
        ] {
            let refused = app
                .call(
                    &vera,
                    Method::GET,
                    &format!("/api/v1/tenants/acme/{path}?{query}"),
                    None,
                )
                .await;
            assert_eq!(
                (refused.status, refused.code()),
                (403, "forbidden"),
                "{path}?{query}"
            );
        }
    }
    let reasons: Vec<&str> = all["handoff_reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    for code in [
        "customer_asked",
        "complaint",
        "tool_call",
        "provider_failure",
    ] {
        assert!(reasons.contains(&code), "{reasons:?}");
    }

    // A restart redelivers nothing twice: the figures stay as they were.
    let mut app = app.restart(|_| {}).await;
    app.wait_idle().await;
    let again = report(&app, &format!("from={from}&to={to}")).await;
    assert_eq!(again, all);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_the_knowledge_base_could_not_answer_are_listed_most_asked_first() {
    // Offline with an empty knowledge base: every question goes to a person, unanswered.
    let mut app = TestApp::start(Options {
        llm: Llm::Offline,
        ..Options::default()
    })
    .await;
    let tenant = app.create_tenant_in("acme", TZ).await;
    app.add_cloud_channel_in("acme", PA, None).await;
    hand_off_unanswered(&app).await;
    let asked = [
        ("62821", "Do you sell gift cards?"),
        ("62822", "do you sell GIFT cards"),
        ("62823", "Apakah ada parkir?"),
        ("62824", "Do you sell gift cards??"),
        ("62825", "apakah ada parkir"),
        ("62826", "Is there wifi?"),
        ("62827", "agent please"),
    ];
    for (i, (from, text)) in asked.iter().enumerate() {
        writes(&app, PA, from, &format!("wamid.Q{i}"), text).await;
        in_state(&app, tenant, from, ConversationState::PendingHuman).await;
    }
    app.wait_idle().await;
    let (from, to) = period();
    let r = report(&app, &format!("from={from}&to={to}")).await;
    assert_matches(&r, &direct_count(&app, tenant, None), "unanswered");
    let listed: Vec<(String, u64)> = r["unanswered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["question"].as_str().unwrap().to_string(),
                u["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed[0].1, 3);
    assert_eq!(normalize(&listed[0].0), "do you sell gift cards");
    assert_eq!(listed[1].1, 2);
    assert_eq!(normalize(&listed[1].0), "apakah ada parkir");
    assert_eq!(listed[2], ("Is there wifi?".to_string(), 1));
    let top = report(&app, &format!("from={from}&to={to}&top=1")).await;
    assert_eq!(top["unanswered"].as_array().unwrap().len(), 1);

    // Every table exports as CSV.
    let (status, content_type, csv) = app
        .get_raw(&format!(
            "/api/v1/tenants/acme/analytics/export/unanswered?from={from}&to={to}"
        ))
        .await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "question,count,last_seen");
    assert!(lines[3].starts_with("Is there wifi?,1,"), "{csv}");
    for table in ["days", "hours", "handoff_reasons", "response_times"] {
        let (status, _, csv) = app
            .get_raw(&format!(
                "/api/v1/tenants/acme/analytics/export/{table}?from={from}&to={to}"
            ))
            .await;
        assert_eq!(status, 200, "{table}");
        assert!(csv.lines().count() >= 2, "{table}: {csv}");
    }
    let (_, _, reasons) = app
        .get_raw(&format!(
            "/api/v1/tenants/acme/analytics/export/handoff_reasons?from={from}&to={to}"
        ))
        .await;
    assert!(
        reasons.contains("no_grounded_answer,No answer in the knowledge base,6,0.8571"),
        "{reasons}"
    );

    // Charts are SVG the dashboard can embed.
    for path in ["charts/daily?metric=handed_off", "charts/hours"] {
        let (status, content_type, svg) = app
            .get_raw(
                &format!("/api/v1/tenants/acme/analytics/{path}&from={from}&to={to}")
                    .replace("hours&", "hours?"),
            )
            .await;
        assert_eq!(status, 200, "{path}");
        assert!(content_type.starts_with("image/svg+xml"), "{content_type}");
        assert!(svg.starts_with("<svg") && svg.contains("<rect"), "{svg}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_that_offer_a_person_instead_of_an_answer_count_as_unanswered_questions() {
    // Offline with an empty knowledge base and the default no-answer policy (offer a person):
    // the assistant says it does not know and the conversation stays with it, yet each question
    // is one the knowledge base could not answer.
    let app = TestApp::start(Options {
        llm: Llm::Offline,
        ..Options::default()
    })
    .await;
    let tenant = app.create_tenant_in("acme", TZ).await;
    app.add_cloud_channel_in("acme", PA, None).await;
    let asked = [
        ("62831", "Do you deliver to Bogor?"),
        ("62832", "do you deliver to BOGOR"),
        ("62833", "Is there parking?"),
    ];
    for (i, (from, text)) in asked.iter().enumerate() {
        writes(&app, PA, from, &format!("wamid.U{i}"), text).await;
        let c = replied(&app, tenant, from, 1).await;
        let replies = app.messages_by(tenant, &c, Author::Assistant);
        assert_eq!(replies[0].unanswered.as_deref(), Some(*text));
        assert_eq!(c.state, ConversationState::Bot, "offered, not handed off");
    }
    app.wait_idle().await;
    let (from, to) = period();
    let r = report(&app, &format!("from={from}&to={to}")).await;
    assert_eq!(r["totals"]["handed_off"], 0, "{r}");
    assert_eq!(r["totals"]["assistant_messages"], 3, "{r}");
    assert_matches(&r, &direct_count(&app, tenant, None), "offered a person");
    assert_eq!(
        unanswered_list(&r),
        vec![
            ("Do you deliver to Bogor?".to_string(), 2),
            ("Is there parking?".to_string(), 1)
        ]
    );
    let (status, _, csv) = app
        .get_raw(&format!(
            "/api/v1/tenants/acme/analytics/export/unanswered?from={from}&to={to}"
        ))
        .await;
    assert_eq!(status, 200);
    assert!(csv.contains("Do you deliver to Bogor?,2,"), "{csv}");

    // Redelivered after a restart, nothing counts twice.
    let mut app = app.restart(|_| {}).await;
    app.wait_idle().await;
    assert_eq!(report(&app, &format!("from={from}&to={to}")).await, r);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_report_requests_say_what_is_wrong() {
    let mut app = TestApp::start(Options::quiet()).await;
    app.create_tenant_in("acme", TZ).await;
    for (query, status, code) in [
        ("from=2024-13-01", 400, "invalid_input"),
        ("from=2024-05-02&to=2024-05-01", 400, "invalid_input"),
        ("from=2023-01-01&to=2024-12-31", 400, "invalid_input"),
        ("outlet=not-an-id", 400, "invalid_input"),
        (
            "outlet=0190f0c8-0000-7000-8000-000000000000",
            404,
            "not_found",
        ),
    ] {
        let (got, body) = app
            .api(
                reqwest::Method::GET,
                &format!("/api/v1/tenants/acme/analytics?{query}"),
                None,
            )
            .await;
        assert_eq!(got, status, "{query}: {body}");
        assert_eq!(body["error"]["code"], code, "{query}");
    }
    let (status, _) = app
        .api(
            reqwest::Method::GET,
            "/api/v1/tenants/acme/analytics/export/secrets",
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = app
        .api(
            reqwest::Method::GET,
            "/api/v1/tenants/acme/analytics/charts/daily?metric=revenue",
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = app
        .api(
            reqwest::Method::GET,
            "/api/v1/tenants/nobody/analytics",
            None,
        )
        .await;
    assert_eq!(status, 404);
    // An empty tenant reports zeros for every day of the default period (30 days).
    let r = app.get("/api/v1/tenants/acme/analytics").await;
    assert_eq!(r["days"].as_array().unwrap().len(), 30);
    assert_eq!(r["totals"]["conversations"], 0);
    assert_eq!(r["totals"]["assistant_resolution_share"], Value::Null);
    app.stop().await;
}

fn unanswered_list(report: &Value) -> Vec<(String, u64)> {
    report["unanswered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["question"].as_str().unwrap().to_string(),
                u["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_customer_takes_their_questions_out_of_the_analytics_detail() {
    // Offline with an empty knowledge base: every question is handed off, unanswered.
    let mut app = TestApp::start(Options {
        llm: Llm::Offline,
        ..Options::default()
    })
    .await;
    let tenant = app.create_tenant_in("acme", TZ).await;
    app.add_cloud_channel_in("acme", PA, None).await;
    hand_off_unanswered(&app).await;
    let asked = [
        ("62831", "Do you sell gift cards?"),
        ("62832", "do you sell GIFT cards"),
        ("62833", "Is there wifi here?"),
    ];
    for (i, (from, text)) in asked.iter().enumerate() {
        writes(&app, PA, from, &format!("wamid.E{i}"), text).await;
        in_state(&app, tenant, from, ConversationState::PendingHuman).await;
    }
    app.wait_idle().await;
    let (from, to) = period();
    let query = format!("from={from}&to={to}");
    let before = report(&app, &query).await;
    assert_eq!(
        unanswered_list(&before),
        [
            ("Do you sell gift cards?".to_string(), 2),
            ("Is there wifi here?".to_string(), 1)
        ]
    );
    let theirs: Vec<_> = ["62831", "62833"]
        .iter()
        .map(|who| app.conversation_of(tenant, who).unwrap().id)
        .collect();

    for who in ["62831", "62833"] {
        let erased = app
            .post(
                &format!("/api/v1/tenants/acme/customers/{who}/erase"),
                json!({}),
            )
            .await;
        assert_eq!(erased["conversations"], 1, "{erased}");
        // At least their conversation's record and their asking of a question (the dashboard's
        // live feed entries about the conversation count too).
        assert!(erased["derived_rows"].as_u64().unwrap() >= 2, "{erased}");
    }
    let after = report(&app, &query).await;
    // The other customer's question stays, in the wording everyone who asked it shares.
    assert_eq!(
        unanswered_list(&after),
        [("do you sell gift cards".to_string(), 1)]
    );
    // Counts that name nobody stay as they were.
    assert_eq!(after["totals"], before["totals"]);
    assert_eq!(after["days"], before["days"]);

    // Nothing of theirs is left in any row: not their number, their words, or their
    // conversations' ids (analytics records, routing queue).
    app.stop().await;
    let rows = dump(&app.dir.path().join("wacrm.redb"));
    let mut needles: Vec<Vec<u8>> = vec![
        b"62831".to_vec(),
        b"62833".to_vec(),
        b"Do you sell gift cards?".to_vec(),
        b"wifi".to_vec(),
    ];
    for id in &theirs {
        needles.push(id.as_bytes().to_vec());
        needles.push(id.to_string().into_bytes());
    }
    let mut saw_kept = false;
    for (table, rows) in &rows {
        for (k, v) in rows {
            for needle in &needles {
                assert!(
                    !contains(k, needle) && !contains(v, needle),
                    "{table}: a row still holds {:?}",
                    String::from_utf8_lossy(needle)
                );
            }
            saw_kept |= contains(v, b"do you sell GIFT cards");
        }
    }
    assert!(saw_kept, "the other customer's messages are kept");
}

/// The tenant hands questions its knowledge base cannot answer to a person (instead of offering
/// one), so each is a `no_grounded_answer` handoff.
async fn hand_off_unanswered(app: &TestApp) {
    app.put(
        "/api/v1/tenants/acme/knowledge/settings",
        serde_json::json!({"no_answer": "hand_off"}),
    )
    .await;
}
