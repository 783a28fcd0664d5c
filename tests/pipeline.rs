//! The message pipeline end to end: webhook → conversation → assistant turn → Graph API → statuses.
//!
//! Each test runs a whole appliance against the fake Graph API and fake LLM and checks what a
//! customer or an agent would notice: what reached the customer's phone (the fake Graph's record),
//! what the model was asked (the fake LLM's record), and the conversation's state.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use wacrm::assistant::language::{handoff_notice, holding_message, Lang};
use wacrm::conversations::{
    Author, Conversation, ConversationState, HandoffReason, Message, MessageRef, MessageStatus,
};
use wacrm::storage::TenantId;
use wacrm::testkit::fake_graph::{Failure, RecordedAttempt, StatusKind};
use wacrm::testkit::fake_llm::{FakeLlmOptions, Reply};

const PHONE: &str = "106540352242922";
const BUDI: &str = "6281234567890";
const SITI: &str = "6281298765432";
const ANDI: &str = "6281377788899";

async fn start(opts: Options) -> (TestApp, TenantId) {
    let app = TestApp::start(opts).await;
    let tenant = app.tenant_with_channel("acme", PHONE).await;
    (app, tenant)
}

/// A fake LLM that answers after `latency`: long enough that the read receipt a turn sends
/// first has reached the fake Graph before the reply does, so failures injected once the receipt
/// is seen hit the reply.
fn slow_llm(latency_ms: u64) -> Llm {
    Llm::Fake(FakeLlmOptions {
        latency: Duration::from_millis(latency_ms),
        ..FakeLlmOptions::default()
    })
}

async fn customer_writes(app: &TestApp, from: &str, wamid: &str, text: &str) {
    let (status, body) = app
        .post_signed(&text_webhook(PHONE, from, wamid, text))
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Waits until the customer's newest conversation has an assistant message in `status`.
async fn reply_in(app: &TestApp, tenant: TenantId, wa_id: &str, status: MessageStatus) -> Message {
    app.wait_for(WAIT, |app| {
        let c = app.conversation_of(tenant, wa_id)?;
        app.messages_by(tenant, &c, Author::Assistant)
            .into_iter()
            .find(|m| m.status == status)
    })
    .await
}

/// Waits until the customer's newest conversation is in `state`.
async fn conversation_in(
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

fn text_of(body: &Value) -> &str {
    body["text"]["body"].as_str().unwrap_or_default()
}

/// Texts the fake Graph accepted for `wa_id`, in order.
fn texts_to(app: &TestApp, wa_id: &str) -> Vec<String> {
    app.graph
        .sent()
        .iter()
        .filter(|s| s.wa_id == wa_id)
        .map(|s| text_of(&s.body).to_string())
        .collect()
}

/// A message send, as opposed to a read receipt (which goes to the same endpoint).
fn is_send(attempt: &RecordedAttempt) -> bool {
    attempt.body.as_ref().is_some_and(|b| b.get("to").is_some())
}

fn callback_of(attempt: &RecordedAttempt) -> Option<String> {
    attempt.body.as_ref()?["biz_opaque_callback_data"]
        .as_str()
        .map(str::to_string)
}

fn tag_of(message: &Message) -> String {
    MessageRef {
        conversation: message.conversation,
        message: message.id,
    }
    .callback_tag()
}

/// Graph attempts to send this one message.
fn send_attempts_of(app: &TestApp, message: &Message) -> Vec<RecordedAttempt> {
    let tag = tag_of(message);
    app.graph
        .attempts()
        .into_iter()
        .filter(|a| is_send(a) && callback_of(a).as_deref() == Some(tag.as_str()))
        .collect()
}

fn user_turns(request: &Value) -> Vec<String> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_text_webhook_gets_exactly_one_reply_whose_status_follows_the_webhooks() {
    let mut app = TestApp::start(Options::default()).await;
    let tenant = app.tenant_with_channel("acme", "106540352242922").await;

    let body = text_webhook(
        "106540352242922",
        "6281234567890",
        "wamid.TEST1",
        "Do you open on Sunday?",
    );
    assert_eq!(app.post_signed(&body).await.0, 200);

    let sent = app.graph.wait_for_sent(1, WAIT).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body["to"], "6281234567890");
    assert_eq!(
        sent[0].body["text"]["body"],
        "You said: Do you open on Sunday?"
    );

    // The fake posts sent → delivered → read status webhooks back; the stored reply follows them.
    let reply = app
        .wait_for(WAIT, |app| {
            let c = app.conversations(tenant).pop()?;
            app.messages(tenant, &c)
                .into_iter()
                .find(|m| m.author == Author::Assistant && m.status == MessageStatus::Read)
        })
        .await;
    assert_eq!(reply.wamid.as_deref(), Some(sent[0].wamid.as_str()));
    assert_eq!(app.graph.sent().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_meta_delivers_seven_times_is_one_message_with_one_reply() {
    let (mut app, tenant) = start(Options::default()).await;
    let body = text_webhook(
        PHONE,
        BUDI,
        "wamid.REDELIVERED",
        "Do you deliver to Bandung?",
    );

    let concurrent = (0..5).map(|_| app.post_signed(&body));
    for (status, text) in futures::future::join_all(concurrent).await {
        assert_eq!(status, 200, "{text}");
    }
    reply_in(&app, tenant, BUDI, MessageStatus::Read).await;
    for _ in 0..2 {
        assert_eq!(app.post_signed(&body).await.0, 200);
    }
    app.wait_idle().await;

    let conversations = app.conversations(tenant);
    assert_eq!(conversations.len(), 1);
    assert_eq!(
        app.messages_by(tenant, &conversations[0], Author::Customer)
            .len(),
        1
    );
    assert_eq!(
        app.messages_by(tenant, &conversations[0], Author::Assistant)
            .len(),
        1
    );
    assert_eq!(
        texts_to(&app, BUDI),
        ["You said: Do you deliver to Bandung?"]
    );
    assert_eq!(app.llm().request_count(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_quick_messages_get_one_answer_written_with_all_three_in_view() {
    let (mut app, tenant) = start(Options {
        debounce_ms: 1_500,
        ..Options::default()
    })
    .await;
    let burst = ["Hi", "I ordered a cake yesterday", "when will it arrive?"];
    for (i, text) in burst.iter().enumerate() {
        customer_writes(&app, BUDI, &format!("wamid.BURST{i}"), text).await;
    }
    reply_in(&app, tenant, BUDI, MessageStatus::Read).await;
    app.wait_idle().await;

    assert_eq!(texts_to(&app, BUDI), ["You said: when will it arrive?"]);
    let requests = app.llm().requests();
    assert_eq!(requests.len(), 1, "one assistant turn for the burst");
    assert_eq!(user_turns(&requests[0]), burst);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_graph_throttles_each_arrive_once_after_waiting_as_long_as_graph_asked() {
    let (mut app, tenant) = start(Options {
        llm: slow_llm(300),
        ..Options::default()
    })
    .await;
    let customers = [BUDI, SITI, ANDI];
    for (i, customer) in customers.iter().enumerate() {
        customer_writes(
            &app,
            customer,
            &format!("wamid.THR{i}"),
            "Is the shop open today?",
        )
        .await;
    }
    assert_eq!(app.graph.wait_for_read_receipts(3, WAIT).await.len(), 3);
    let told = Duration::from_secs(1);
    app.graph.fail_next(
        2,
        Failure::TooManyRequests {
            retry_after: Some(told),
        },
    );
    app.graph.fail_next(2, Failure::Http5xx(503));
    app.graph.fail_next(
        2,
        Failure::RateLimited {
            code: 130429,
            retry_after: Some(told),
        },
    );

    for customer in customers {
        reply_in(&app, tenant, customer, MessageStatus::Read).await;
    }
    app.wait_idle().await;

    for customer in customers {
        assert_eq!(
            texts_to(&app, customer),
            ["You said: Is the shop open today?"]
        );
    }
    let attempts = app.graph.attempts();
    let injected: Vec<_> = attempts.iter().filter(|a| a.injected.is_some()).collect();
    assert_eq!(injected.len(), 6, "every injected failure was answered");
    assert!(injected.iter().all(|a| is_send(a)), "they hit the replies");

    let mut per_message: HashMap<String, Vec<&RecordedAttempt>> = HashMap::new();
    for a in attempts.iter().filter(|a| is_send(a)) {
        per_message
            .entry(callback_of(a).unwrap())
            .or_default()
            .push(a);
    }
    assert_eq!(per_message.len(), 3);
    let mut waits_checked = 0;
    for tries in per_message.values_mut() {
        tries.sort_by_key(|a| a.received_at);
        assert_eq!(tries.iter().filter(|a| a.wamid.is_some()).count(), 1);
        assert!(tries.last().unwrap().wamid.is_some());
        for pair in tries.windows(2) {
            let asked = match &pair[0].injected {
                Some(Failure::TooManyRequests { retry_after })
                | Some(Failure::RateLimited { retry_after, .. }) => *retry_after,
                _ => None,
            };
            if let Some(asked) = asked {
                let gap =
                    Duration::try_from(pair[1].received_at.duration_since(pair[0].received_at))
                        .unwrap();
                assert!(gap >= asked, "retried after {gap:?}; Graph asked {asked:?}");
                waits_checked += 1;
            }
        }
    }
    assert_eq!(
        waits_checked, 4,
        "every Retry-After was followed by a retry"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_graph_refuses_for_good_is_failed_with_the_code_and_tried_once() {
    let (mut app, tenant) = start(Options {
        llm: slow_llm(300),
        ..Options::default()
    })
    .await;
    for (i, (customer, code)) in [(BUDI, 131047), (SITI, 131026)].into_iter().enumerate() {
        customer_writes(
            &app,
            customer,
            &format!("wamid.PERM{i}"),
            "Hello, is anyone there?",
        )
        .await;
        assert_eq!(
            app.graph.wait_for_read_receipts(i + 1, WAIT).await.len(),
            i + 1
        );
        // Every attempt is refused: a retry would show as a second attempt.
        app.graph.fail_always(Failure::permanent(code));
        reply_in(&app, tenant, customer, MessageStatus::Failed).await;
        app.wait_idle().await;
        app.graph.clear_failures();

        let conversation = app.conversation_of(tenant, customer).unwrap();
        let replies = app.messages_by(tenant, &conversation, Author::Assistant);
        assert_eq!(replies.len(), 1);
        let failed = &replies[0];
        assert_eq!(failed.status, MessageStatus::Failed);
        let reason = failed.failure.as_deref().unwrap_or_default();
        assert!(reason.contains(&code.to_string()), "{reason}");
        assert_eq!(send_attempts_of(&app, failed).len(), 1, "{reason}");
        assert_eq!(failed.attempts, 1);
    }
    assert!(app.graph.sent().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_timed_out_after_graph_took_it_is_never_sent_twice() {
    let (mut app, tenant) = start(Options {
        llm: slow_llm(300),
        tweak: Box::new(|c| c.graph.timeout_ms = 1_000),
        ..Options::default()
    })
    .await;
    customer_writes(&app, BUDI, "wamid.AMBIG", "Can I pay by card?").await;
    assert_eq!(app.graph.wait_for_read_receipts(1, WAIT).await.len(), 1);
    // Graph accepts and delivers (its status webhooks carry our callback data) but answers only
    // after the client gave up.
    app.graph.fail_next(1, Failure::Timeout);

    reply_in(&app, tenant, BUDI, MessageStatus::Read).await;
    app.wait_idle().await;

    assert_eq!(texts_to(&app, BUDI), ["You said: Can I pay by card?"]);
    let conversation = app.conversation_of(tenant, BUDI).unwrap();
    let replies = app.messages_by(tenant, &conversation, Author::Assistant);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, MessageStatus::Read);
    assert_eq!(send_attempts_of(&app, &replies[0]).len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_model_is_down_the_customer_gets_the_holding_message_and_a_person() {
    let (mut app, tenant) = start(Options::default()).await;
    let holding = holding_message(Lang::English);

    app.llm().fail_all(Some(500));
    customer_writes(&app, BUDI, "wamid.DOWN1", "What time do you close?").await;
    let c = conversation_in(&app, tenant, BUDI, ConversationState::PendingHuman).await;
    assert!(
        matches!(
            c.handoff_reason,
            Some(HandoffReason::ProviderFailure { .. })
        ),
        "{:?}",
        c.handoff_reason
    );

    // Not answering at all (connection refused) is the same to the customer.
    app.llm().shutdown().await;
    customer_writes(&app, SITI, "wamid.DOWN2", "Do you have oat milk?").await;
    let c = conversation_in(&app, tenant, SITI, ConversationState::PendingHuman).await;
    assert!(
        matches!(
            c.handoff_reason,
            Some(HandoffReason::ProviderFailure { .. })
        ),
        "{:?}",
        c.handoff_reason
    );

    app.wait_idle().await;
    assert_eq!(texts_to(&app, BUDI), [holding]);
    assert_eq!(texts_to(&app, SITI), [holding]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_asking_for_a_person_gets_one_without_the_model_being_asked() {
    let (mut app, tenant) = start(Options::default()).await;
    let asks = [
        (BUDI, "can I talk to a real person?", Lang::English),
        (SITI, "mau bicara dengan CS", Lang::Indonesian),
    ];
    for (i, (customer, text, _)) in asks.iter().enumerate() {
        customer_writes(&app, customer, &format!("wamid.HUMAN{i}"), text).await;
    }
    for (customer, _, lang) in asks {
        let c = conversation_in(&app, tenant, customer, ConversationState::PendingHuman).await;
        assert_eq!(c.handoff_reason, Some(HandoffReason::CustomerAsked));
        app.wait_idle().await;
        assert_eq!(texts_to(&app, customer), [handoff_notice(lang)]);
    }
    assert_eq!(app.llm().request_count(), 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_handing_off_with_its_tool_puts_a_person_on_it_with_the_models_reason() {
    let (mut app, tenant) = start(Options::default()).await;
    app.llm().push_reply(Reply::ToolCall {
        name: "handoff_to_human".into(),
        arguments: json!({"reason": "refund for a cold latte"}),
    });
    customer_writes(
        &app,
        BUDI,
        "wamid.TOOL",
        "My latte was cold, I want my money back",
    )
    .await;

    let c = conversation_in(&app, tenant, BUDI, ConversationState::PendingHuman).await;
    assert_eq!(
        c.handoff_reason,
        Some(HandoffReason::ToolCall {
            detail: "refund for a cold latte".into()
        })
    );
    app.wait_idle().await;
    assert_eq!(texts_to(&app, BUDI), [handoff_notice(Lang::English)]);
    assert_eq!(app.llm().request_count(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_keeps_calling_an_unknown_tool_is_stopped_and_a_person_takes_over() {
    const ROUNDS: u32 = 4;
    let (mut app, tenant) = start(Options {
        tweak: Box::new(|c| c.pipeline.max_tool_rounds = ROUNDS),
        ..Options::default()
    })
    .await;
    app.llm().push_replies(std::iter::repeat_n(
        Reply::ToolCall {
            name: "lookup_order".into(),
            arguments: json!({"order": "A-17"}),
        },
        10,
    ));
    customer_writes(&app, BUDI, "wamid.LOOP", "Where is order A-17?").await;

    let c = conversation_in(&app, tenant, BUDI, ConversationState::PendingHuman).await;
    assert_eq!(c.handoff_reason, Some(HandoffReason::ToolLoop));
    app.wait_idle().await;
    assert_eq!(app.llm().request_count(), ROUNDS as usize);
    assert_eq!(app.llm().pending_replies(), 10 - ROUNDS as usize);
    assert_eq!(texts_to(&app, BUDI), [handoff_notice(Lang::English)]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_an_agent_takes_over_the_assistant_is_silent_until_handed_back() {
    let (mut app, tenant) = start(Options::default()).await;
    let base = "/api/v1/tenants/acme/conversations";

    customer_writes(&app, BUDI, "wamid.H1", "Do you sell gift cards?").await;
    app.graph.wait_for_sent(1, WAIT).await;
    let first = app.conversation_of(tenant, BUDI).unwrap();

    let taken = app
        .post(&format!("{base}/{}/takeover", first.id), json!({}))
        .await;
    assert_eq!(taken["state"], "human");

    customer_writes(&app, BUDI, "wamid.H2", "Hello? Anyone?").await;
    app.wait_for(WAIT, |app| {
        let c = app.conversation_of(tenant, BUDI)?;
        (app.messages_by(tenant, &c, Author::Customer).len() == 2).then_some(())
    })
    .await;
    // Idle means no assistant turn is scheduled for the new message: none will ever run.
    app.wait_idle().await;
    assert_eq!(app.graph.sent().len(), 1);
    assert_eq!(app.llm().request_count(), 1);

    let agent_text = "Hi, this is Sari. Yes, we sell gift cards from 50k.";
    app.post(
        &format!("{base}/{}/reply", first.id),
        json!({"text": agent_text}),
    )
    .await;
    let sent = app.graph.wait_for_sent(2, WAIT).await;
    assert_eq!(sent[1].wa_id, BUDI);
    assert_eq!(text_of(&sent[1].body), agent_text);
    app.wait_idle().await;
    assert_eq!(app.graph.sent().len(), 2);
    assert_eq!(app.llm().request_count(), 1);

    let back = app
        .post(&format!("{base}/{}/handback", first.id), json!({}))
        .await;
    assert_eq!(back["state"], "bot");
    customer_writes(&app, BUDI, "wamid.H3", "How much is the biggest one?").await;
    let sent = app.graph.wait_for_sent(3, WAIT).await;
    assert_eq!(
        text_of(&sent[2].body),
        "You said: How much is the biggest one?"
    );

    let closed = app
        .post(&format!("{base}/{}/close", first.id), json!({}))
        .await;
    assert_eq!(closed["state"], "closed");
    customer_writes(&app, BUDI, "wamid.H4", "Hi again!").await;
    let sent = app.graph.wait_for_sent(4, WAIT).await;
    assert_eq!(text_of(&sent[3].body), "You said: Hi again!");
    let second = app.conversation_of(tenant, BUDI).unwrap();
    assert_ne!(second.id, first.id, "a new conversation");
    assert_eq!(second.state, ConversationState::Bot);
    assert_eq!(app.messages_by(tenant, &second, Author::Customer).len(), 1);
    app.wait_idle().await;
    assert_eq!(app.graph.sent().len(), 4);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_write_freely_once_the_24_hour_window_has_closed() {
    let (mut app, tenant) = start(Options::default()).await;
    let yesterday = jiff::Timestamp::now().as_second() - 25 * 3600;
    let body = text_webhook_at(
        PHONE,
        BUDI,
        "wamid.OLD",
        "Are you open tomorrow?",
        yesterday,
    );
    assert_eq!(app.post_signed(&body).await.0, 200);
    // The assistant's own reply is refused for the same reason.
    reply_in(&app, tenant, BUDI, MessageStatus::Failed).await;
    let c = app.conversation_of(tenant, BUDI).unwrap();

    let (status, answer) = app
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/tenants/acme/conversations/{}/reply", c.id),
            Some(json!({"text": "Sorry for the late answer!"})),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "window_closed");

    app.wait_idle().await;
    assert!(app.graph.sent().is_empty());
    assert_eq!(
        app.messages_by(tenant, &c, Author::Agent).len(),
        0,
        "the refused reply is not stored"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_without_an_answer_in_the_knowledge_base_hands_off_instead_of_inventing_one() {
    let (mut app, tenant) = start(Options {
        llm: Llm::Offline,
        ..Options::default()
    })
    .await;
    // The tenant chose handing off over offering a person (the default, tested in knowledge.rs).
    app.put(
        "/api/v1/tenants/acme/knowledge/settings",
        json!({"no_answer": "hand_off"}),
    )
    .await;
    customer_writes(&app, BUDI, "wamid.OFF", "How much is a large latte?").await;
    let c = conversation_in(&app, tenant, BUDI, ConversationState::PendingHuman).await;
    assert_eq!(c.handoff_reason, Some(HandoffReason::NoGroundedAnswer));
    app.wait_idle().await;
    assert_eq!(texts_to(&app, BUDI), [handoff_notice(Lang::English)]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_left_unanswered_at_shutdown_is_answered_once_after_restart() {
    let (mut app, tenant) = start(Options {
        debounce_ms: 2_000,
        ..Options::default()
    })
    .await;
    customer_writes(&app, BUDI, "wamid.RESTART", "Are you open on holidays?").await;
    app.stop().await;
    assert!(app.graph.sent().is_empty(), "stopped before the reply");
    assert_eq!(app.llm().request_count(), 0);

    let mut app = app.restart(|_| {}).await;
    reply_in(&app, tenant, BUDI, MessageStatus::Read).await;
    app.wait_idle().await;
    assert_eq!(
        texts_to(&app, BUDI),
        ["You said: Are you open on holidays?"]
    );
    assert_eq!(app.llm().request_count(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_held_back_by_graph_at_shutdown_is_sent_once_after_restart() {
    let (mut app, tenant) = start(Options {
        llm: slow_llm(300),
        ..Options::default()
    })
    .await;
    customer_writes(&app, BUDI, "wamid.HELD", "Can I book a table for six?").await;
    assert_eq!(app.graph.wait_for_read_receipts(1, WAIT).await.len(), 1);
    // Far longer than `WAIT`: a stop that waited it out would fail below.
    app.graph.fail_next(
        1,
        Failure::TooManyRequests {
            retry_after: Some(Duration::from_secs(60)),
        },
    );
    app.wait_for(WAIT, |app| {
        let c = app.conversation_of(tenant, BUDI)?;
        app.messages_by(tenant, &c, Author::Assistant)
            .into_iter()
            .find(|m| m.status == MessageStatus::Queued && m.attempts == 1)
    })
    .await;

    tokio::time::timeout(WAIT, app.stop())
        .await
        .expect("stopping does not wait out Graph's Retry-After");
    assert!(app.graph.sent().is_empty());

    let mut app = app.restart(|_| {}).await;
    reply_in(&app, tenant, BUDI, MessageStatus::Read).await;
    app.wait_idle().await;
    assert_eq!(
        texts_to(&app, BUDI),
        ["You said: Can I book a table for six?"]
    );
    app.stop().await;
}

/// A turn stores its reply already claimed for sending ("sending", attempt 1), which spares the
/// sender a commit before the request. A reply still waiting for its turn to be sent at a
/// graceful stop was never sent: the stop hands it back as queued, and the next start sends it
/// at once, instead of taking it for an interrupted send and waiting for a status report first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_reply_not_yet_sent_at_shutdown_is_sent_once_right_after_restart() {
    let (mut app, tenant) = start(Options {
        llm: slow_llm(300),
        ..Options::default()
    })
    .await;
    customer_writes(&app, BUDI, "wamid.HELD1", "Can I book a table for six?").await;
    assert_eq!(app.graph.wait_for_read_receipts(1, WAIT).await.len(), 1);
    app.graph.fail_next(
        1,
        Failure::TooManyRequests {
            retry_after: Some(Duration::from_secs(60)),
        },
    );
    app.wait_for(WAIT, |app| {
        let c = app.conversation_of(tenant, BUDI)?;
        app.messages_by(tenant, &c, Author::Assistant)
            .into_iter()
            .find(|m| m.status == MessageStatus::Queued && m.attempts == 1)
    })
    .await;
    // The next reply is committed claimed, and waits in the conversation's lane behind the one
    // Graph held back.
    customer_writes(&app, BUDI, "wamid.HELD2", "Is there parking?").await;
    let claimed = app
        .wait_for(WAIT, |app| {
            let c = app.conversation_of(tenant, BUDI)?;
            app.messages_by(tenant, &c, Author::Assistant)
                .into_iter()
                .find(|m| m.status == MessageStatus::Sending)
        })
        .await;
    assert_eq!(claimed.attempts, 1);

    tokio::time::timeout(WAIT, app.stop())
        .await
        .expect("stopping does not wait out Graph's Retry-After");
    assert!(app.graph.sent().is_empty());

    // No status report would ever come for an unsent message: were it taken for an interrupted
    // send, it would wait this long before its resend.
    let app = app.restart(|c| c.graph.reconcile_after_ms = 600_000).await;
    let c = app.conversation_of(tenant, BUDI).unwrap();
    let released = app
        .messages_by(tenant, &c, Author::Assistant)
        .into_iter()
        .find(|m| m.id == claimed.id)
        .unwrap();
    assert_ne!(released.status, MessageStatus::Unconfirmed, "{released:?}");
    app.wait_for(WAIT, |app| {
        let c = app.conversation_of(tenant, BUDI)?;
        let replies = app.messages_by(tenant, &c, Author::Assistant);
        (replies.len() == 2 && replies.iter().all(|m| m.status == MessageStatus::Read))
            .then_some(())
    })
    .await;
    app.wait_idle().await;
    assert_eq!(
        texts_to(&app, BUDI),
        [
            "You said: Can I book a table for six?",
            "You said: Is there parking?"
        ]
    );
    let mut app = app;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_arriving_out_of_order_leave_the_reply_read() {
    let (mut app, tenant) = start(Options {
        status_webhooks: false,
        ..Options::default()
    })
    .await;
    customer_writes(&app, BUDI, "wamid.ORDER", "Do you have parking?").await;
    let sent = app.graph.wait_for_sent(1, WAIT).await;
    reply_in(&app, tenant, BUDI, MessageStatus::Sent).await;
    app.wait_idle().await;

    for kind in [StatusKind::Read, StatusKind::Delivered, StatusKind::Sent] {
        assert_eq!(
            app.post_signed(&status_webhook(&sent[0], kind)).await.0,
            200
        );
        app.wait_idle().await;
        let c = app.conversation_of(tenant, BUDI).unwrap();
        let replies = app.messages_by(tenant, &c, Author::Assistant);
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].status, MessageStatus::Read, "after {kind:?}");
        assert_eq!(replies[0].wamid.as_deref(), Some(sent[0].wamid.as_str()));
    }
    app.stop().await;
}
