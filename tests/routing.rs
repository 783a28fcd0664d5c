//! Smart handoff and routing end to end: customers write through the webhook, the assistant (fake
//! model) answers or hands off, and what the customer receives and who gets the conversation are
//! checked as a customer or an agent would see them.

mod support;

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{json, Value};
use support::*;
use wacrm::assistant::language::{assistant_back, handoff_notice, Lang};
use wacrm::conversations::{Author, Conversation, ConversationState, HandoffReason};
use wacrm::storage::TenantId;

const PHONE: &str = "106540352242922";
const BUDI: &str = "6281234567890";
const SITI: &str = "6281298765432";
const ANDI: &str = "6281377788899";
const DEWI: &str = "6281311122233";
const EKO: &str = "6281355566677";

/// The people who work conversations (users with the agent role, of every outlet).
const AGENTS: [&str; 4] = ["ana", "budi", "citra", "dewi"];

/// A tenant in Jakarta with outlets A and B, one number belonging to outlet A, and four users
/// with the agent role (not yet routing agents).
struct Shop {
    app: TestApp,
    tenant: TenantId,
    outlet_a: String,
    outlet_b: String,
    users: BTreeMap<&'static str, String>,
}

async fn shop(opts: Options) -> Shop {
    let app = TestApp::start(opts).await;
    let tenant = app.create_tenant_in("acme", "Asia/Jakarta").await;
    // Room for two outlets (Starter allows one).
    app.put(
        "/api/v1/tenants/acme/billing/plan",
        json!({"plan": "enterprise"}),
    )
    .await;
    let outlet_a = app.create_outlet("acme", "Kemang").await;
    let outlet_b = app.create_outlet("acme", "Bandung").await;
    app.add_cloud_channel_in("acme", PHONE, Some(&outlet_a))
        .await;
    let mut users = BTreeMap::new();
    for name in AGENTS {
        let id = app
            .create_user("acme", &format!("{name}@acme.test"), "agent", &[])
            .await;
        users.insert(name, id);
    }
    Shop {
        app,
        tenant,
        outlet_a,
        outlet_b,
        users,
    }
}

impl Shop {
    async fn writes(&self, from: &str, wamid: &str, text: &str) {
        let (status, body) = self
            .app
            .post_signed(&text_webhook(PHONE, from, wamid, text))
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// The user id of one of [`AGENTS`].
    fn id(&self, name: &str) -> String {
        self.users[name].clone()
    }

    async fn agent(&self, name: &str, outlets: &[&str], capacity: u32, online: bool) -> Value {
        self.app
            .put(
                &format!("/api/v1/tenants/acme/agents/{}", self.id(name)),
                json!({"outlets": outlets, "capacity": capacity, "online": online}),
            )
            .await
    }

    async fn in_state(&self, wa_id: &str, state: ConversationState) -> Conversation {
        self.app
            .wait_for(WAIT, |app| {
                app.conversation_of(self.tenant, wa_id)
                    .filter(|c| c.state == state)
            })
            .await
    }

    /// Waits for the customer's newest conversation to hold `n` assistant messages.
    async fn assistant_said(&self, wa_id: &str, n: usize) {
        self.app
            .wait_for(WAIT, |app| {
                let c = app.conversation_of(self.tenant, wa_id)?;
                (app.messages_by(self.tenant, &c, Author::Assistant).len() >= n).then_some(())
            })
            .await
    }

    fn texts_to(&self, wa_id: &str) -> Vec<String> {
        self.app
            .graph
            .sent()
            .iter()
            .filter(|s| s.wa_id == wa_id)
            .map(|s| {
                s.body["text"]["body"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    async fn agent_load(&self, name: &str) -> u64 {
        self.app
            .get(&format!("/api/v1/tenants/acme/agents/{}", self.id(name)))
            .await["load"]
            .as_u64()
            .unwrap()
    }

    async fn queue(&self) -> Vec<String> {
        self.app
            .get("/api/v1/tenants/acme/routing/queue")
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["conversation"].as_str().unwrap().to_string())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoffs_go_round_robin_to_online_agents_of_the_outlet_within_their_capacity() {
    let mut s = shop(Options::default()).await;
    let a = s.outlet_a.clone();
    let b = s.outlet_b.clone();
    s.agent("ana", &[&a], 2, true).await;
    s.agent("budi", &[&a], 1, true).await;
    s.agent("citra", &[&b], 5, true).await; // another outlet
    s.agent("dewi", &[&a], 5, false).await; // offline

    let mut assigned = Vec::new();
    for (i, customer) in [BUDI, SITI, ANDI, DEWI].iter().enumerate() {
        s.writes(customer, &format!("wamid.RR{i}"), "agent please")
            .await;
        let c = s.in_state(customer, ConversationState::PendingHuman).await;
        assert_eq!(c.handoff_reason, Some(HandoffReason::CustomerAsked));
        assigned.push(c.assigned_agent);
    }
    let (ana, budi) = (s.id("ana"), s.id("budi"));
    // The first of Ana and Budi (ties by user id), then the other, then Ana again (Budi holds
    // one at most); both full, so the fourth waits.
    let expected = if ana < budi {
        [Some(&ana), Some(&budi), Some(&ana), None]
    } else {
        [Some(&budi), Some(&ana), Some(&ana), None]
    };
    let names: Vec<Option<&String>> = assigned.iter().map(|a| a.as_ref()).collect();
    assert_eq!(names, expected);
    assert_eq!(s.agent_load("ana").await, 2);
    assert_eq!(s.agent_load("budi").await, 1);
    assert_eq!(s.agent_load("citra").await, 0);
    assert_eq!(s.agent_load("dewi").await, 0);
    let waiting = s.app.conversation_of(s.tenant, DEWI).unwrap();
    assert_eq!(s.queue().await, [waiting.id.to_string()]);

    // Dewi comes online and takes the waiting conversation at once.
    let dewi = s
        .app
        .post(
            &format!("/api/v1/tenants/acme/agents/{}/presence", s.id("dewi")),
            json!({"online": true}),
        )
        .await;
    assert_eq!(dewi["conversations"], json!([waiting.id.to_string()]));
    assert_eq!(
        s.app
            .conversation_of(s.tenant, DEWI)
            .unwrap()
            .assigned_agent,
        Some(s.id("dewi"))
    );
    assert!(s.queue().await.is_empty());
    // The model was never asked: each customer asked for a person.
    assert_eq!(s.app.llm().request_count(), 0);
    s.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nobody_online_handoffs_wait_in_the_queue_and_a_closing_frees_the_next() {
    let mut s = shop(Options::default()).await;
    let a = s.outlet_a.clone();
    s.agent("ana", &[&a], 1, false).await;
    s.writes(BUDI, "wamid.Q1", "agent please").await;
    let first = s.in_state(BUDI, ConversationState::PendingHuman).await;
    s.writes(SITI, "wamid.Q2", "mau bicara dengan CS").await;
    let second = s.in_state(SITI, ConversationState::PendingHuman).await;
    assert_eq!(
        s.queue().await,
        [first.id.to_string(), second.id.to_string()]
    );

    s.app
        .post(
            &format!("/api/v1/tenants/acme/agents/{}/presence", s.id("ana")),
            json!({"online": true}),
        )
        .await;
    assert_eq!(s.queue().await, [second.id.to_string()]);
    let first = s.app.conversation_of(s.tenant, BUDI).unwrap();
    assert_eq!(first.assigned_agent, Some(s.id("ana")));

    // Ana closes the first; the second is hers in the same commit.
    s.app
        .post(
            &format!("/api/v1/tenants/acme/conversations/{}/close", first.id),
            json!({}),
        )
        .await;
    let second = s.app.conversation_of(s.tenant, SITI).unwrap();
    assert_eq!(second.assigned_agent, Some(s.id("ana")));
    assert!(s.queue().await.is_empty());
    assert_eq!(s.agent_load("ana").await, 1);
    s.app.stop().await;
}

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const HARI: [&str; 7] = [
    "Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu",
];
const DAY_KEYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_business_hours_the_customer_is_told_when_the_team_answers() {
    let mut s = shop(Options::default()).await;
    // Open only on the weekday three days from now (Jakarta), 09:00-17:00: closed now.
    let jakarta = jiff::tz::TimeZone::get("Asia/Jakarta").unwrap();
    let opens = jiff::Timestamp::now()
        .to_zoned(jakarta)
        .date()
        .checked_add(jiff::Span::new().days(3))
        .unwrap();
    let weekday = opens.weekday().to_monday_zero_offset() as usize;
    let mut hours = json!({});
    hours[DAY_KEYS[weekday]] = json!([{"open": "09:00", "close": "17:00"}]);
    let stored = s
        .app
        .put(
            &format!("/api/v1/tenants/acme/outlets/{}/hours", s.outlet_a),
            hours.clone(),
        )
        .await;
    assert_eq!(stored[DAY_KEYS[weekday]], hours[DAY_KEYS[weekday]]);

    s.writes(BUDI, "wamid.H1", "Can I talk to a real person?")
        .await;
    s.in_state(BUDI, ConversationState::PendingHuman).await;
    s.assistant_said(BUDI, 1).await;
    s.writes(SITI, "wamid.H2", "mau bicara dengan CS").await;
    s.in_state(SITI, ConversationState::PendingHuman).await;
    s.assistant_said(SITI, 1).await;
    s.app.wait_idle().await;
    assert_eq!(
        s.texts_to(BUDI),
        [format!(
            "Thanks for your message. Our team is away right now and will reply here on {} at 09:00 WIB.",
            DAYS[weekday]
        )]
    );
    assert_eq!(
        s.texts_to(SITI),
        [format!(
            "Terima kasih atas pesan Anda. Tim kami sedang tidak bertugas dan akan membalas di sini hari {} pukul 09.00 WIB.",
            HARI[weekday]
        )]
    );

    // An agent online outside hours takes it: the customer hears someone will reply shortly.
    let a = s.outlet_a.clone();
    s.agent("ana", &[&a], 5, true).await;
    s.writes(ANDI, "wamid.H3", "agent please").await;
    s.in_state(ANDI, ConversationState::PendingHuman).await;
    s.assistant_said(ANDI, 1).await;
    s.app.wait_idle().await;
    assert_eq!(s.texts_to(ANDI), [handoff_notice(Lang::English)]);

    // An outlet without hours of its own follows the tenant's default: open around the clock,
    // so with nobody online the customer gets the usual notice.
    let all_day = json!([{"open": "00:00", "close": "24:00"}]);
    let mut week = json!({});
    for key in DAY_KEYS {
        week[key] = all_day.clone();
    }
    s.app
        .put("/api/v1/tenants/acme/outlets/default/hours", week)
        .await;
    let (status, _) = s
        .app
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/tenants/acme/outlets/{}/hours", s.outlet_a),
            None,
        )
        .await;
    assert_eq!(status, 204);
    s.agent("ana", &[&a], 5, false).await;
    s.writes(DEWI, "wamid.H4", "agent please").await;
    s.in_state(DEWI, ConversationState::PendingHuman).await;
    s.assistant_said(DEWI, 1).await;
    s.app.wait_idle().await;
    assert_eq!(s.texts_to(DEWI), [handoff_notice(Lang::English)]);
    s.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_angry_or_complaining_customer_goes_to_a_person_without_the_model() {
    let mut s = shop(Options::default()).await;
    s.writes(
        BUDI,
        "wamid.C1",
        "This is the worst service I have ever had",
    )
    .await;
    let c = s.in_state(BUDI, ConversationState::PendingHuman).await;
    assert_eq!(
        c.handoff_reason,
        Some(HandoffReason::Complaint {
            keyword: "worst".into()
        })
    );
    s.writes(SITI, "wamid.C2", "saya kecewa sekali dengan pesanan saya")
        .await;
    let c = s.in_state(SITI, ConversationState::PendingHuman).await;
    assert_eq!(
        c.handoff_reason,
        Some(HandoffReason::Complaint {
            keyword: "kecewa".into()
        })
    );
    s.app.wait_idle().await;
    assert_eq!(s.texts_to(BUDI), [handoff_notice(Lang::English)]);
    assert_eq!(s.texts_to(SITI), [handoff_notice(Lang::Indonesian)]);
    // The agents see why.
    let notes: Vec<String> = s
        .app
        .messages_by(s.tenant, &c, Author::System)
        .iter()
        .map(|m| m.body.preview_text())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("upset or complaining") && n.contains("kecewa")),
        "{notes:?}"
    );
    assert_eq!(s.app.llm().request_count(), 0);
    s.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_customer_keeps_finding_unhelpful_bring_a_person() {
    let mut s = shop(Options::default()).await;
    s.writes(BUDI, "wamid.U1", "Do you deliver to Bandung?")
        .await;
    s.assistant_said(BUDI, 1).await;
    s.writes(BUDI, "wamid.U2", "that's not helpful").await;
    s.assistant_said(BUDI, 2).await;
    assert_eq!(
        s.app.conversation_of(s.tenant, BUDI).unwrap().state,
        ConversationState::Bot,
        "one strike is not enough (limit 2)"
    );
    s.writes(BUDI, "wamid.U3", "still not helpful").await;
    let c = s.in_state(BUDI, ConversationState::PendingHuman).await;
    assert_eq!(c.handoff_reason, Some(HandoffReason::RepeatedUnhelpful));
    s.app.wait_idle().await;
    assert_eq!(
        s.texts_to(BUDI),
        [
            "You said: Do you deliver to Bandung?".to_string(),
            "You said: that's not helpful".to_string(),
            handoff_notice(Lang::English).to_string(),
        ]
    );
    assert_eq!(s.app.llm().request_count(), 2);

    // With a limit of one, asking the same again hands off at once.
    s.app
        .put(
            "/api/v1/tenants/acme/routing/settings",
            json!({"allow_bot_return": false, "unhelpful_turn_limit": 1}),
        )
        .await;
    s.writes(SITI, "wamid.U4", "Jam berapa buka hari Minggu?")
        .await;
    s.assistant_said(SITI, 1).await;
    s.writes(SITI, "wamid.U5", "jam berapa buka hari minggu")
        .await;
    let c = s.in_state(SITI, ConversationState::PendingHuman).await;
    assert_eq!(c.handoff_reason, Some(HandoffReason::RepeatedUnhelpful));
    s.app.wait_idle().await;
    assert_eq!(
        s.texts_to(SITI).last().map(String::as_str),
        Some(handoff_notice(Lang::Indonesian))
    );
    assert_eq!(s.app.llm().request_count(), 3);
    s.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customer_gets_the_assistant_back_only_when_the_tenant_allows_it() {
    let mut s = shop(Options::default()).await;
    s.agent("ana", &[], 1, true).await;
    s.writes(BUDI, "wamid.B1", "agent please").await;
    s.in_state(BUDI, ConversationState::PendingHuman).await;
    assert_eq!(s.agent_load("ana").await, 1);

    // Not allowed (the default): the request is just a message for the agent.
    s.writes(BUDI, "wamid.B2", "bot").await;
    s.app.wait_idle().await;
    let c = s.app.conversation_of(s.tenant, BUDI).unwrap();
    assert_eq!(c.state, ConversationState::PendingHuman);
    assert_eq!(s.texts_to(BUDI), [handoff_notice(Lang::English)]);

    let settings = s
        .app
        .put(
            "/api/v1/tenants/acme/routing/settings",
            json!({"allow_bot_return": true}),
        )
        .await;
    assert_eq!(
        settings,
        json!({"allow_bot_return": true, "unhelpful_turn_limit": 2})
    );
    s.writes(BUDI, "wamid.B3", "kembali ke bot").await;
    let c = s.in_state(BUDI, ConversationState::Bot).await;
    assert_eq!(c.assigned_agent, None);
    assert_eq!(s.agent_load("ana").await, 0);
    s.writes(BUDI, "wamid.B4", "Do you open on Sunday?").await;
    s.assistant_said(BUDI, 3).await;
    s.app.wait_idle().await;
    assert_eq!(
        s.texts_to(BUDI),
        [
            handoff_notice(Lang::English).to_string(),
            assistant_back(Lang::Indonesian).to_string(),
            "You said: Do you open on Sunday?".to_string(),
        ]
    );
    // The model saw only the question after the return.
    assert_eq!(s.app.llm().request_count(), 1);
    s.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assistant_never_speaks_while_a_person_holds_the_conversation() {
    let mut s = shop(Options::default()).await;
    s.agent("ana", &[], 3, true).await;
    s.writes(BUDI, "wamid.S1", "agent please").await;
    let c = s.in_state(BUDI, ConversationState::PendingHuman).await;
    assert_eq!(c.assigned_agent, Some(s.id("ana")));
    s.writes(BUDI, "wamid.S2", "hello? what are your opening hours?")
        .await;
    s.app.wait_idle().await;
    s.app
        .post(
            &format!("/api/v1/tenants/acme/conversations/{}/takeover", c.id),
            json!({}),
        )
        .await;
    s.writes(BUDI, "wamid.S3", "this is the worst, agent are you there?")
        .await;
    s.writes(BUDI, "wamid.S4", "bot").await;
    s.app.wait_idle().await;
    let c = s.app.conversation_of(s.tenant, BUDI).unwrap();
    assert_eq!(c.state, ConversationState::Human);
    assert_eq!(c.assigned_agent, Some(s.id("ana")));
    assert_eq!(s.app.messages_by(s.tenant, &c, Author::Assistant).len(), 1);
    assert_eq!(s.texts_to(BUDI), [handoff_notice(Lang::English)]);
    assert_eq!(s.app.llm().request_count(), 0);
    s.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_never_reopens_the_handoff_and_the_next_message_starts_with_the_assistant() {
    let mut s = shop(Options::default()).await;
    s.agent("ana", &[], 1, true).await;
    s.writes(EKO, "wamid.X1", "I want to file a complaint")
        .await;
    let handed = s.in_state(EKO, ConversationState::PendingHuman).await;
    s.app
        .post(
            &format!("/api/v1/tenants/acme/conversations/{}/reply", handed.id),
            json!({"text": "Sorry about that, it is sorted now."}),
        )
        .await;
    let closed = s
        .app
        .post(
            &format!("/api/v1/tenants/acme/conversations/{}/close", handed.id),
            json!({}),
        )
        .await;
    assert_eq!(closed["state"], "closed");
    // Who handled it stays on the record; the slot is free.
    assert_eq!(closed["assigned_agent"], s.id("ana"));
    assert_eq!(s.agent_load("ana").await, 0);

    s.writes(EKO, "wamid.X2", "Thanks! What time do you open tomorrow?")
        .await;
    s.assistant_said(EKO, 1).await;
    s.app.wait_idle().await;
    let fresh = s.app.conversation_of(s.tenant, EKO).unwrap();
    assert_ne!(fresh.id, handed.id);
    assert_eq!(fresh.state, ConversationState::Bot);
    assert_eq!(fresh.handoff_reason, None);
    assert_eq!(fresh.assigned_agent, None);
    let old = s
        .app
        .conversations(s.tenant)
        .into_iter()
        .find(|c| c.id == handed.id)
        .unwrap();
    assert_eq!(old.state, ConversationState::Closed);
    assert_eq!(
        s.texts_to(EKO),
        [
            handoff_notice(Lang::English).to_string(),
            "Sorry about that, it is sorted now.".to_string(),
            "You said: Thanks! What time do you open tomorrow?".to_string(),
        ]
    );
    assert!(s.queue().await.is_empty());
    s.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_set_their_own_presence_and_outlet_limited_people_see_their_outlets_queue() {
    let mut s = shop(Options::default()).await;
    let (a, b) = (s.outlet_a.clone(), s.outlet_b.clone());
    let eve = s
        .app
        .create_user("acme", "eve@acme.test", "agent", &[&b])
        .await;
    let vic = s
        .app
        .create_user("acme", "vic@acme.test", "viewer", &[&b])
        .await;
    let ana = s.app.sign_in("ana@acme.test").await;
    let eve_session = s.app.sign_in("eve@acme.test").await;
    let vic_session = s.app.sign_in("vic@acme.test").await;
    let presence = |user: &str| format!("/api/v1/tenants/acme/agents/{user}/presence");

    // Ana goes online herself: she becomes an agent of every outlet (as she works for all).
    let me = s
        .app
        .call(
            &ana,
            Method::POST,
            &presence(&s.id("ana")),
            Some(json!({"online": true})),
        )
        .await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["online"], true);
    assert_eq!(me.body["outlets"], json!([]));
    // Not for a colleague, and not the agents list (that is for admins).
    let other = s
        .app
        .call(
            &ana,
            Method::POST,
            &presence(&s.id("budi")),
            Some(json!({"online": true})),
        )
        .await;
    assert_eq!((other.status, other.code()), (403, "forbidden"));
    let list = s
        .app
        .call(&ana, Method::GET, "/api/v1/tenants/acme/agents", None)
        .await;
    assert_eq!((list.status, list.code()), (403, "forbidden"));

    // Eve works for outlet B only: online, she is an agent of outlet B, and an admin cannot
    // route outlet A to her.
    let me = s
        .app
        .call(
            &eve_session,
            Method::POST,
            &presence(&eve),
            Some(json!({"online": true})),
        )
        .await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["outlets"], json!([b]));
    let (status, body) = s
        .app
        .api(
            Method::PUT,
            &format!("/api/v1/tenants/acme/agents/{eve}"),
            Some(json!({"outlets": [a]})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );
    // A viewer is not routed conversations.
    let (status, body) = s
        .app
        .api(
            Method::PUT,
            &format!("/api/v1/tenants/acme/agents/{vic}"),
            Some(json!({"online": true})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict"))
    );

    // Ana goes offline; a customer of outlet A waits. Outlet B's viewer does not see it.
    let off = s
        .app
        .call(
            &ana,
            Method::POST,
            &presence(&s.id("ana")),
            Some(json!({"online": false})),
        )
        .await;
    assert_eq!(off.status, 200);
    s.writes(BUDI, "wamid.P1", "agent please").await;
    let waiting = s.in_state(BUDI, ConversationState::PendingHuman).await;
    assert_eq!(waiting.assigned_agent, None, "Eve does not serve outlet A");
    assert_eq!(s.queue().await, [waiting.id.to_string()]);
    let seen = s
        .app
        .call(
            &vic_session,
            Method::GET,
            "/api/v1/tenants/acme/routing/queue",
            None,
        )
        .await;
    assert_eq!((seen.status, seen.body.clone()), (200, json!([])));
    let named = s
        .app
        .call(
            &vic_session,
            Method::GET,
            &format!("/api/v1/tenants/acme/routing/queue?outlet={a}"),
            None,
        )
        .await;
    assert_eq!((named.status, named.code()), (403, "forbidden"));

    // Eve is disabled: she is no agent any more.
    let (status, _) = s
        .app
        .api(
            Method::PATCH,
            &format!("/api/v1/tenants/acme/users/{eve}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, 200);
    let agents = s.app.get("/api/v1/tenants/acme/agents").await;
    let users: Vec<&str> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, [s.id("ana").as_str()]);
    s.app.stop().await;
}
