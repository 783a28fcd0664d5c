//! The dashboard as its users meet it.
//!
//! `browser_suite` drives Debian's headless Chromium (one browser for every scenario; each
//! scenario has its own appliance) through what agents and admins do: sign in, watch a customer's
//! message and the assistant's reply arrive live, take over, reply, hand back, miss messages
//! while disconnected and get each exactly once on reconnect, see a colleague in the same
//! conversation, use the simulator; a viewer cannot act; another tenant's conversations never
//! appear. Screenshots of the main pages go to target/browser-screenshots/ on every run.
//!
//! The other tests speak the live channel's protocol directly (a WebSocket client), which lets
//! them count every event: replay after a cursor is exact, and no event of another tenant or
//! outlet ever reaches a socket.

mod support;

use std::collections::HashMap;
use std::time::Instant;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::browser::Browser;
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wacrm::conversations::{Author, ConversationState};
use wacrm::storage::TenantId;

const ACME_PHONE: &str = "106540352242922";
const OTHER_PHONE: &str = "106540352240000";
const BUDI: &str = "6281234567890";
const SITI: &str = "6281298765432";
const STRANGER: &str = "6281377788899";

// ---------------------------------------------------------------------------------------------
// HTTP and WebSocket helpers.

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn cookie_from(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            let first = c.split(';').next()?;
            let (k, v) = first.split_once('=')?;
            (k == name && !v.is_empty()).then(|| v.to_string())
        })
}

fn csrf_in(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a csrf token")
        + 19;
    html[at..].split('"').next().unwrap().to_string()
}

/// A signed-in HTTP session: its cookie header and CSRF token.
struct Http {
    cookie: String,
    csrf: String,
}

async fn sign_in(app: &TestApp, tenant: &str, role: &str, name: &str, outlet: &str) -> Http {
    let http = no_redirects();
    let form = http
        .get(format!("{}/dash/signin", app.url))
        .send()
        .await
        .unwrap();
    let signin_cookie = cookie_from(&form, "wacrm_signin").unwrap();
    let csrf = csrf_in(&form.text().await.unwrap());
    let resp = http
        .post(format!("{}/dash/signin", app.url))
        .header("cookie", format!("wacrm_signin={signin_cookie}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("token", app.token.as_str()),
            ("tenant", tenant),
            ("name", name),
            ("role", role),
            ("outlet", outlet),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303, "sign-in refused");
    let session = cookie_from(&resp, "wacrm_session").unwrap();
    let cookie = format!("wacrm_session={session}");
    let page = http
        .get(format!("{}/dash/inbox", app.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    Http {
        csrf: csrf_in(&page),
        cookie,
    }
}

/// A person signed in with their own account (the people service's session).
async fn people_session(app: &TestApp, email: &str) -> Http {
    match app.sign_in(email).await {
        support::people::Cred::Session { token, csrf } => Http {
            cookie: format!("__Host-wacrm_session={token}"),
            csrf,
        },
        other => panic!("not a session: {other:?}"),
    }
}

/// Posts a dashboard form with the session's CSRF token; returns the status.
async fn post_form(app: &TestApp, who: &Http, path: &str, fields: &[(&str, &str)]) -> u16 {
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    form.push(("csrf", who.csrf.as_str()));
    no_redirects()
        .post(format!("{}{}", app.url, path))
        .header("cookie", &who.cookie)
        .form(&form)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn live(app: &TestApp, who: &Http, after: Option<u64>) -> Ws {
    let url = match after {
        Some(a) => format!("{}/dash/live?after={a}", app.url.replace("http", "ws")),
        None => format!("{}/dash/live", app.url.replace("http", "ws")),
    };
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("cookie", who.cookie.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws
}

async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no live event in time")
            .expect("socket closed")
            .unwrap();
        if let WsMessage::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// Reads events until `until` holds for one; returns all of them (that one included).
async fn events_until(ws: &mut Ws, mut until: impl FnMut(&Value) -> bool) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let ev = next_event(ws).await;
        let stop = until(&ev);
        out.push(ev);
        if stop {
            return out;
        }
    }
}

async fn customer_writes(app: &TestApp, phone: &str, from: &str, wamid: &str, text: &str) {
    let (status, body) = app
        .post_signed(&text_webhook(phone, from, wamid, text))
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn two_tenants(opts: Options) -> (TestApp, TenantId, TenantId) {
    let app = TestApp::start(opts).await;
    let acme = app.tenant_with_channel("acme", ACME_PHONE).await;
    let other = app.tenant_with_channel("other", OTHER_PHONE).await;
    (app, acme, other)
}

fn customer_texts(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["t"] == "feed" && e["kind"] == "message" && e["author"] == "customer")
        .map(|e| e["m"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The live channel's protocol.

#[tokio::test]
async fn a_reconnecting_socket_gets_every_missed_message_exactly_once() {
    let (app, acme, _) = two_tenants(Options::quiet()).await;
    let agent = sign_in(&app, "acme", "agent", "Ana", "").await;
    customer_writes(&app, ACME_PHONE, BUDI, "wamid.r0", "first").await;
    app.wait_for(WAIT, |a| (a.all_messages(acme).len() == 1).then_some(()))
        .await;

    let mut ws = live(&app, &agent, None).await;
    let hello = next_event(&mut ws).await;
    assert_eq!(hello["t"], "hello");
    let ready = next_event(&mut ws).await;
    assert_eq!(ready["t"], "ready");
    let cursor = ready["seq"].as_u64().unwrap();
    ws.close(None).await.unwrap();
    drop(ws);

    // Missed while away: messages in two conversations, the store is the only record.
    for i in 0..6 {
        let from = if i % 2 == 0 { BUDI } else { SITI };
        customer_writes(
            &app,
            ACME_PHONE,
            from,
            &format!("wamid.r{}", i + 1),
            &format!("missed {i}"),
        )
        .await;
    }
    app.wait_for(WAIT, |a| (a.all_messages(acme).len() == 7).then_some(()))
        .await;

    let mut ws = live(&app, &agent, Some(cursor)).await;
    let replayed = events_until(&mut ws, |e| e["t"] == "ready").await;
    let ids = customer_texts(&replayed);
    let stored: Vec<String> = app
        .all_messages(acme)
        .into_iter()
        .filter(|m| m.author == Author::Customer && m.body.preview_text().starts_with("missed"))
        .map(|m| m.id.to_string())
        .collect();
    let mut sorted_ids = ids.clone();
    sorted_ids.sort();
    let mut sorted_stored = stored.clone();
    sorted_stored.sort();
    assert_eq!(sorted_ids, sorted_stored, "every missed message, each once");
    let seqs: Vec<u64> = replayed
        .iter()
        .filter_map(|e| e["seq"].as_u64().filter(|_| e["t"] == "feed"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert!(seqs.iter().all(|s| *s > cursor));

    // And live again afterwards: a new message arrives once.
    customer_writes(&app, ACME_PHONE, BUDI, "wamid.r9", "after reconnect").await;
    let more = events_until(&mut ws, |e| e["author"] == "customer").await;
    assert_eq!(customer_texts(&more).len(), 1);
}

#[tokio::test]
async fn sockets_carry_nothing_of_other_tenants_or_other_outlets() {
    let app = TestApp::start(Options::quiet()).await;
    let acme = app.create_tenant("acme").await;
    let other = app.tenant_with_channel("other", OTHER_PHONE).await;
    // Two outlets need more than the starter plan.
    app.put(
        "/api/v1/tenants/acme/billing/plan",
        json!({"plan": "growth"}),
    )
    .await;
    let north = app
        .post("/api/v1/tenants/acme/outlets", json!({"name": "North"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let south = app
        .post("/api/v1/tenants/acme/outlets", json!({"name": "South"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (phone, outlet) in [(ACME_PHONE, &north), ("106540352241111", &south)] {
        app.post(
            "/api/v1/tenants/acme/channels",
            json!({
                "type": "cloud_api", "name": format!("WA {phone}"), "outlet": outlet,
                "phone_number_id": phone, "waba_id": WABA_ID,
                "access_token": ACCESS_TOKEN, "app_secret": APP_SECRET,
                "verify_token": format!("vt-{phone}"),
            }),
        )
        .await;
    }
    let admin = sign_in(&app, "acme", "admin", "Ana", "").await;
    let north_agent = sign_in(&app, "acme", "agent", "Nina", &north).await;
    let mut all = live(&app, &admin, None).await;
    let mut limited = live(&app, &north_agent, None).await;
    events_until(&mut all, |e| e["t"] == "ready").await;
    events_until(&mut limited, |e| e["t"] == "ready").await;

    customer_writes(
        &app,
        OTHER_PHONE,
        STRANGER,
        "wamid.o1",
        "other tenant's secret",
    )
    .await;
    customer_writes(&app, "106540352241111", SITI, "wamid.s1", "south outlet").await;
    app.wait_for(WAIT, |a| {
        (a.all_messages(other).len() == 1 && a.all_messages(acme).len() == 1).then_some(())
    })
    .await;
    customer_writes(&app, ACME_PHONE, BUDI, "wamid.n1", "north outlet").await;

    let seen_all = events_until(&mut all, |e| {
        e["html"]
            .as_str()
            .is_some_and(|h| h.contains("north outlet"))
    })
    .await;
    let seen_limited = events_until(&mut limited, |e| {
        e["html"]
            .as_str()
            .is_some_and(|h| h.contains("north outlet"))
    })
    .await;
    let text = |evs: &[Value]| evs.iter().map(|e| e.to_string()).collect::<String>();
    assert!(!text(&seen_all).contains("other tenant's secret"));
    assert!(
        text(&seen_all).contains("south outlet"),
        "the admin sees every outlet"
    );
    assert!(!text(&seen_limited).contains("other tenant's secret"));
    assert!(
        !text(&seen_limited).contains("south outlet"),
        "an agent of North never hears of South"
    );

    // Replaying the whole feed is no different.
    let mut replay = live(&app, &north_agent, Some(0)).await;
    let replayed = events_until(&mut replay, |e| e["t"] == "ready").await;
    assert!(text(&replayed).contains("north outlet"));
    assert!(!text(&replayed).contains("south outlet") && !text(&replayed).contains("secret"));
}

#[tokio::test]
async fn two_agents_in_one_conversation_see_each_other() {
    let (app, acme, _) = two_tenants(Options::quiet()).await;
    customer_writes(&app, ACME_PHONE, BUDI, "wamid.p1", "hello").await;
    let c = app.wait_for(WAIT, |a| a.conversation_of(acme, BUDI)).await;
    let ana = sign_in(&app, "acme", "agent", "Ana", "").await;
    let budi = sign_in(&app, "acme", "agent", "Budi", "").await;
    let mut a = live(&app, &ana, None).await;
    let mut b = live(&app, &budi, None).await;
    events_until(&mut a, |e| e["t"] == "ready").await;
    events_until(&mut b, |e| e["t"] == "ready").await;
    a.send(WsMessage::Text(
        json!({"t": "viewing", "c": c.id.to_string()})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    b.send(WsMessage::Text(
        json!({"t": "viewing", "c": c.id.to_string(), "typing": true})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let seen = events_until(&mut a, |e| {
        e["t"] == "presence" && e["who"].as_array().is_some_and(|w| w.len() == 2)
    })
    .await;
    let last = seen.last().unwrap();
    let budi_there = last["who"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Budi")
        .unwrap();
    assert_eq!(budi_there["typing"], true);
    drop(b);
    events_until(&mut a, |e| {
        e["t"] == "presence" && e["who"].as_array().is_some_and(|w| w.len() == 1)
    })
    .await;
}

#[tokio::test]
async fn forms_need_a_session_its_csrf_token_and_a_role_that_may_act() {
    let (app, acme, other) = two_tenants(Options::quiet()).await;
    customer_writes(&app, ACME_PHONE, BUDI, "wamid.c1", "hello").await;
    customer_writes(&app, OTHER_PHONE, STRANGER, "wamid.c2", "hello other").await;
    let c = app.wait_for(WAIT, |a| a.conversation_of(acme, BUDI)).await;
    let theirs = app
        .wait_for(WAIT, |a| a.conversation_of(other, STRANGER))
        .await;
    let http = no_redirects();
    let post = |cookie: Option<String>, path: String, csrf: String| {
        let http = http.clone();
        let url = format!("{}{}", app.url, path);
        async move {
            let mut req = http.post(url).form(&[("csrf", csrf.as_str())]);
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    let takeover = format!("/dash/c/{}/takeover", c.id);
    // Signed out: to the sign-in page.
    assert_eq!(post(None, takeover.clone(), String::new()).await, 303);
    let agent = sign_in(&app, "acme", "agent", "Ana", "").await;
    assert_eq!(
        post(
            Some(agent.cookie.clone()),
            takeover.clone(),
            "forged".into()
        )
        .await,
        403
    );
    let viewer = sign_in(&app, "acme", "viewer", "Vic", "").await;
    assert_eq!(
        post(
            Some(viewer.cookie.clone()),
            takeover.clone(),
            viewer.csrf.clone()
        )
        .await,
        403
    );
    // Another tenant's conversation does not exist for this session.
    assert_eq!(
        post(
            Some(agent.cookie.clone()),
            format!("/dash/c/{}/takeover", theirs.id),
            agent.csrf.clone()
        )
        .await,
        404
    );
    assert_eq!(
        app.conversation_of(acme, BUDI).unwrap().state,
        ConversationState::Bot
    );
    assert_eq!(
        post(Some(agent.cookie.clone()), takeover, agent.csrf.clone()).await,
        303
    );
    assert_eq!(
        app.conversation_of(acme, BUDI).unwrap().state,
        ConversationState::Human
    );
    // A wrong operator token signs nobody in.
    let form = http
        .get(format!("{}/dash/signin", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        form.headers()["x-frame-options"],
        "DENY",
        "pages are never framed"
    );
    let cookie = cookie_from(&form, "wacrm_signin").unwrap();
    let csrf = csrf_in(&form.text().await.unwrap());
    let resp = http
        .post(format!("{}/dash/signin", app.url))
        .header("cookie", format!("wacrm_signin={cookie}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("token", "wop_wrong"),
            ("tenant", "acme"),
            ("name", "X"),
            ("role", "admin"),
            ("outlet", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(cookie_from(&resp, "wacrm_session").is_none());
}

// ---------------------------------------------------------------------------------------------
// The browser.

async fn browser_sign_in(b: &Browser, app: &TestApp, tenant: &str, role: &str, name: &str) {
    b.delete_cookies().await;
    b.goto(&format!("{}/dash/signin", app.url)).await;
    b.fill("#token", &app.token).await;
    b.fill("#tenant", tenant).await;
    b.fill("#name", name).await;
    b.select("#role", role).await;
    b.submit("#signin").await;
    b.wait_until("document.body.getAttribute('data-page') === 'inbox'")
        .await;
}

/// Waits until the page's live channel has caught up.
async fn live_ready(b: &Browser) {
    b.wait_until("window.wacrmLive && window.wacrmLive.connected")
        .await;
}

/// Prints a measured time and keeps it beside the screenshots (test output is captured).
fn report_latency(line: &str) {
    println!("{line}");
    let dir = support::browser::screenshot_dir();
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("live-latency.txt");
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    if line.starts_with("webhook -> inbox") {
        text.clear();
    }
    text.push_str(line);
    text.push('\n');
    let _ = std::fs::write(path, text);
}

fn now_ms() -> f64 {
    jiff::Timestamp::now().as_millisecond() as f64
}

/// Posts a customer's message while the page waits for `expect` in `css`; returns the ms from
/// the webhook's POST to the text on screen.
async fn timed_arrival(
    b: &Browser,
    app: &TestApp,
    phone: &str,
    wamid: &str,
    text: &str,
    css: &str,
    expect: &str,
) -> f64 {
    let started = now_ms();
    let body = text_webhook(phone, BUDI, wamid, text);
    let (shown, (status, _)) = tokio::join!(b.wait_text(css, expect), app.post_signed(&body));
    assert_eq!(status, 200);
    shown - started
}

#[tokio::test]
async fn browser_suite() {
    let b = Browser::start().await;
    let started = Instant::now();
    live_updates_take_over_reply_and_hand_back(&b).await;
    missed_messages_appear_once_after_reconnecting(&b).await;
    viewers_read_but_cannot_act(&b).await;
    closed_window_offers_templates_and_colleagues_are_visible(&b).await;
    admin_pages_and_the_simulator(&b).await;
    a_document_upload_goes_to_ready_live_and_the_search_tester_finds_it(&b).await;
    println!(
        "browser suite: {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        support::browser::screenshot_dir().display()
    );
    b.quit().await;
}

async fn live_updates_take_over_reply_and_hand_back(b: &Browser) {
    let (app, acme, other) = two_tenants(Options::default()).await;
    // The other tenant is busy the whole time; none of it may ever show.
    customer_writes(
        &app,
        OTHER_PHONE,
        STRANGER,
        "wamid.x1",
        "OTHER-TENANT-SECRET one",
    )
    .await;

    browser_sign_in(b, &app, "acme", "admin", "Ana").await;
    b.screenshot("01-inbox-empty").await;
    live_ready(b).await;
    let to_list = timed_arrival(
        b,
        &app,
        ACME_PHONE,
        "wamid.a1",
        "Do you open on Sunday?",
        "#list-box",
        "Do you open on Sunday?",
    )
    .await;
    report_latency(&format!("webhook -> inbox row on screen: {to_list:.0} ms"));
    // The assistant (fake model) answers; the row follows.
    b.wait_text("#list-box", "You said: Do you open on Sunday?")
        .await;
    b.submit("#list-box .row a").await;
    b.wait_until("document.body.getAttribute('data-page') === 'conversation'")
        .await;
    live_ready(b).await;
    let started = now_ms();
    let body = text_webhook(ACME_PHONE, BUDI, "wamid.a2", "And on holidays?");
    let (customer_shown, reply_shown, (status, _)) = tokio::join!(
        b.wait_text("#transcript .msg.customer", "And on holidays?"),
        b.wait_text("#transcript .msg.assistant", "You said: And on holidays?"),
        app.post_signed(&body)
    );
    assert_eq!(status, 200);
    report_latency(&format!(
        "webhook -> customer message on screen: {:.0} ms; -> assistant reply on screen: {:.0} ms",
        customer_shown - started,
        reply_shown - started
    ));
    customer_writes(
        &app,
        OTHER_PHONE,
        STRANGER,
        "wamid.x2",
        "OTHER-TENANT-SECRET two",
    )
    .await;
    b.screenshot("02-conversation-desktop").await;

    // Take over, reply, hand back.
    b.submit("#takeover").await;
    b.wait_text("#conv-state", "Agent").await;
    assert_eq!(
        app.conversation_of(acme, BUDI).unwrap().state,
        ConversationState::Human
    );
    b.fill("#reply", "Let me check the holiday hours for you.")
        .await;
    b.submit("#send").await;
    b.wait_text(
        "#transcript .msg.agent",
        "Let me check the holiday hours for you.",
    )
    .await;
    app.wait_for(WAIT, |a| {
        a.graph
            .sent()
            .iter()
            .any(|s| {
                s.body
                    .to_string()
                    .contains("Let me check the holiday hours")
            })
            .then_some(())
    })
    .await;
    // Its delivery ticks arrive live too (the fake Graph reports sent, delivered, read).
    b.wait_until("Array.from(document.querySelectorAll('#transcript .msg.agent')).some(function (m) { return ['delivered', 'read'].indexOf(m.getAttribute('data-status')) >= 0; })").await;
    // While an agent holds it, the assistant stays silent.
    customer_writes(&app, ACME_PHONE, BUDI, "wamid.a3", "Thanks, waiting").await;
    b.wait_text("#transcript .msg.customer", "Thanks, waiting")
        .await;
    b.submit("#handback").await;
    b.wait_text("#conv-state", "Assistant").await;
    customer_writes(&app, ACME_PHONE, BUDI, "wamid.a4", "Anything else?").await;
    b.wait_text("#transcript .msg.assistant", "You said: Anything else?")
        .await;
    let c = app.conversation_of(acme, BUDI).unwrap();
    let assistant_replies: Vec<String> = app
        .messages_by(acme, &c, Author::Assistant)
        .iter()
        .map(|m| m.body.preview_text())
        .collect();
    assert!(
        !assistant_replies
            .iter()
            .any(|t| t.contains("Thanks, waiting")),
        "{assistant_replies:?}"
    );

    // Search by number suffix and by text.
    b.goto(&format!("{}/dash/inbox?q=4567890", app.url)).await;
    b.wait_text("#list-box", "Budi").await;
    b.goto(&format!("{}/dash/inbox?q=holidays", app.url)).await;
    b.wait_text("#list-box", "Budi").await;
    b.goto(&format!("{}/dash/inbox?q=no-such-words-anywhere", app.url))
        .await;
    b.wait_text("#list-box", "No conversations here.").await;

    // The other tenant never showed, and its conversation is not found from here.
    b.goto(&format!("{}/dash/inbox", app.url)).await;
    b.wait_text("#list-box", "Budi").await;
    assert!(!b.page_text().await.contains("OTHER-TENANT-SECRET"));
    let theirs = app.conversation_of(other, STRANGER).unwrap();
    b.goto(&format!("{}/dash/c/{}", app.url, theirs.id)).await;
    b.wait_text("body", "Not found").await;
    assert!(!b.page_text().await.contains("OTHER-TENANT-SECRET"));
    b.goto(&format!("{}/dash/inbox?q=SECRET", app.url)).await;
    b.wait_text("#list-box", "No conversations here.").await;

    // Phone-sized screen.
    b.set_size(390, 844).await;
    b.goto(&format!("{}/dash/c/{}", app.url, c.id)).await;
    b.wait_text("#transcript", "Anything else?").await;
    b.screenshot("03-conversation-phone").await;
    b.goto(&format!("{}/dash/inbox", app.url)).await;
    b.screenshot("04-inbox-phone").await;
    b.set_size(1280, 900).await;

    // A handoff and its routing appear live, without a reload: the customer asks for a person
    // (why shows at once, and the place in the queue), then an agent goes online from their
    // header and routing hands them the conversation.
    app.create_user("acme", "agus@acme.test", "agent", &[])
        .await;
    let agus = people_session(&app, "agus@acme.test").await;
    b.goto(&format!("{}/dash/c/{}", app.url, c.id)).await;
    live_ready(b).await;
    b.js("window.wacrmSamePage = true;", json!([])).await;
    customer_writes(&app, ACME_PHONE, BUDI, "wamid.a5", "agent please").await;
    b.wait_text("#handoff-reason", "the customer asked for a person")
        .await;
    b.wait_text("#queue-place", "In the queue: 1 of 1").await;
    b.wait_text("#list-box", "Handed off: Customer asked for a person")
        .await;
    assert_eq!(
        post_form(&app, &agus, "/dash/presence", &[("online", "1")]).await,
        303
    );
    b.wait_text("#assignee", "Assigned to agus@acme.test").await;
    b.wait_text("#list-box", "@agus@acme.test").await;
    assert_eq!(
        b.js("return window.wacrmSamePage === true;", json!([]))
            .await,
        true,
        "shown live, not by reloading the page"
    );
    b.screenshot("16-handoff-routed-live").await;
}

async fn missed_messages_appear_once_after_reconnecting(b: &Browser) {
    let (app, acme, _) = two_tenants(Options::quiet()).await;
    customer_writes(&app, ACME_PHONE, BUDI, "wamid.m0", "before").await;
    let c = app.wait_for(WAIT, |a| a.conversation_of(acme, BUDI)).await;
    browser_sign_in(b, &app, "acme", "agent", "Ana").await;
    b.goto(&format!("{}/dash/c/{}", app.url, c.id)).await;
    live_ready(b).await;

    // Disconnected: the socket is closed while messages arrive.
    b.js("window.wacrmLive.disconnect();", json!([])).await;
    b.wait_text("#live-status", "paused").await;
    let missed: Vec<String> = (1..=5).map(|i| format!("missed message {i}")).collect();
    for (i, text) in missed.iter().enumerate() {
        customer_writes(&app, ACME_PHONE, BUDI, &format!("wamid.m{}", i + 1), text).await;
    }
    app.wait_for(WAIT, |a| (a.all_messages(acme).len() == 6).then_some(()))
        .await;
    assert!(
        !b.page_text().await.contains("missed message 1"),
        "nothing arrives while disconnected"
    );
    b.js("window.wacrmLive.connect();", json!([])).await;
    live_ready(b).await;
    b.wait_text("#transcript", "missed message 5").await;
    let shown: Vec<String> = serde_json::from_value(
        b.js(
            "return Array.from(document.querySelectorAll('#transcript .msg.customer .text')).map(function (e) { return e.innerText; });",
            json!([]),
        )
        .await,
    )
    .unwrap();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for s in &shown {
        *counts.entry(s.as_str()).or_default() += 1;
    }
    for text in &missed {
        assert_eq!(
            counts.get(text.as_str()),
            Some(&1),
            "{text} shown once: {shown:?}"
        );
    }
    assert_eq!(shown.len(), 6, "{shown:?}");

    // Navigating away and back while messages arrive: the page comes from the store.
    b.goto(&format!("{}/dash/canned", app.url)).await;
    customer_writes(&app, ACME_PHONE, BUDI, "wamid.m6", "while on another page").await;
    app.wait_for(WAIT, |a| (a.all_messages(acme).len() == 7).then_some(()))
        .await;
    b.goto(&format!("{}/dash/c/{}", app.url, c.id)).await;
    live_ready(b).await;
    customer_writes(&app, ACME_PHONE, BUDI, "wamid.m7", "after coming back").await;
    b.wait_text("#transcript", "after coming back").await;
    assert_eq!(b.count("#transcript .msg.customer").await, 8);
}

async fn viewers_read_but_cannot_act(b: &Browser) {
    let (app, acme, _) = two_tenants(Options::quiet()).await;
    customer_writes(&app, ACME_PHONE, BUDI, "wamid.v1", "Where is my order?").await;
    let c = app.wait_for(WAIT, |a| a.conversation_of(acme, BUDI)).await;
    browser_sign_in(b, &app, "acme", "viewer", "Vic").await;
    b.goto(&format!("{}/dash/c/{}", app.url, c.id)).await;
    b.wait_text("#transcript", "Where is my order?").await;
    assert!(b.text("#read-only").await.contains("cannot act"));
    for control in [
        "#takeover",
        "#handback",
        "#close",
        "#reply",
        "#assign",
        "#note",
    ] {
        assert_eq!(
            b.count(control).await,
            0,
            "{control} is not offered to viewers"
        );
    }
    // Even a hand-made POST with the viewer's own token is refused.
    let status = b
        .js(
            "var xhr = new XMLHttpRequest(); xhr.open('POST', arguments[0], false);\
             xhr.setRequestHeader('content-type', 'application/x-www-form-urlencoded');\
             xhr.send('csrf=' + document.body.getAttribute('data-csrf')); return xhr.status;",
            json!([format!("/dash/c/{}/takeover", c.id)]),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        app.conversation_of(acme, BUDI).unwrap().state,
        ConversationState::Bot
    );
    b.screenshot("05-conversation-viewer").await;
    // Admin pages are not for viewers.
    b.goto(&format!("{}/dash/admin/channels", app.url)).await;
    b.wait_text("body", "Not allowed").await;
}

async fn closed_window_offers_templates_and_colleagues_are_visible(b: &Browser) {
    let (app, acme, _) = two_tenants(Options::quiet()).await;
    let day_ago = jiff::Timestamp::now().as_second() - 25 * 3600;
    let (status, _) = app
        .post_signed(&text_webhook_at(
            ACME_PHONE,
            BUDI,
            "wamid.t1",
            "Old question",
            day_ago,
        ))
        .await;
    assert_eq!(status, 200);
    let c = app.wait_for(WAIT, |a| a.conversation_of(acme, BUDI)).await;
    browser_sign_in(b, &app, "acme", "agent", "Ana").await;
    b.goto(&format!("{}/dash/c/{}", app.url, c.id)).await;
    live_ready(b).await;
    assert!(b.text("#window").await.contains("closed"));
    assert_eq!(
        b.count("#reply").await,
        0,
        "no free-form reply outside the window"
    );

    // A colleague opens the same conversation and starts typing.
    let budi = sign_in(&app, "acme", "agent", "Budi", "").await;
    let mut ws = live(&app, &budi, None).await;
    events_until(&mut ws, |e| e["t"] == "ready").await;
    ws.send(WsMessage::Text(
        json!({"t": "viewing", "c": c.id.to_string(), "typing": true})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    b.wait_text("#presence", "Also here: Budi (typing").await;
    b.screenshot("06-template-picker-and-colleague").await;
    drop(ws);
    b.wait_until("document.getElementById('presence').hidden")
        .await;

    b.fill("#template-name", "hello_world").await;
    b.fill("#template-language", "en_US").await;
    b.submit("#send-template").await;
    b.wait_text("#transcript .msg.agent", "[template hello_world]")
        .await;
    app.wait_for(WAIT, |a| {
        a.graph
            .sent()
            .iter()
            .any(|s| s.message_type == "template" && s.body["template"]["name"] == "hello_world")
            .then_some(())
    })
    .await;

    // Private notes stay in the dashboard.
    b.fill("#note", "Customer is a regular, be kind").await;
    b.submit("#add-note").await;
    b.wait_text(
        "#transcript .msg.note",
        "Ana: Customer is a regular, be kind",
    )
    .await;
    assert!(!app
        .graph
        .sent()
        .iter()
        .any(|s| s.body.to_string().contains("be kind")));
}

async fn admin_pages_and_the_simulator(b: &Browser) {
    let (app, _acme, _) = two_tenants(Options::default()).await;
    browser_sign_in(b, &app, "acme", "admin", "Ana").await;

    b.goto(&format!("{}/dash/admin/outlets", app.url)).await;
    b.fill("#outlet-name", "Kemang branch").await;
    b.submit("#outlet-add").await;
    b.wait_text("table", "Kemang branch").await;
    b.screenshot("07-outlets").await;

    b.goto(&format!("{}/dash/admin/channels", app.url)).await;
    let page = b.page_text().await;
    assert!(
        page.contains("Meta calls only HTTPS") || page.contains("Meta will not call a plain http")
    );
    let values: Vec<String> = serde_json::from_value(
        b.js("return Array.from(document.querySelectorAll('input.copy')).map(function (e) { return e.value; });", json!([]))
            .await,
    )
    .unwrap();
    assert!(
        values.iter().any(|v| v.ends_with("/webhooks/whatsapp")),
        "{values:?}"
    );
    assert!(
        values
            .iter()
            .any(|v| v == &format!("{VERIFY_TOKEN}-{ACME_PHONE}")),
        "{values:?}"
    );
    b.fill("#channel-name", "Try-out sandbox").await;
    b.submit("#channel-add").await;
    b.wait_text("body", "Try-out sandbox").await;
    b.screenshot("08-channels").await;

    b.goto(&format!("{}/dash/canned", app.url)).await;
    b.fill("#canned-shortcut", "hours").await;
    b.fill("#canned-text", "We are open daily from 08:00 to 22:00.")
        .await;
    b.submit("#canned-save").await;
    b.wait_text("table", "/hours").await;
    b.screenshot("09-canned").await;

    b.goto(&format!("{}/dash/admin/simulator", app.url)).await;
    live_ready(b).await;
    b.fill("#sim-text", "Hi from the simulator").await;
    b.submit("#sim-send").await;
    b.wait_text("#phone", "You said: Hi from the simulator")
        .await;
    b.screenshot("10-simulator").await;

    // The simulated customer's conversation is in the inbox; a canned reply by shortcut.
    b.goto(&format!("{}/dash/inbox", app.url)).await;
    b.submit("#list-box .row a").await;
    b.wait_until("document.body.getAttribute('data-page') === 'conversation'")
        .await;
    b.fill("#reply", "/hours").await;
    b.submit("#send").await;
    b.wait_text(
        "#transcript .msg.agent",
        "We are open daily from 08:00 to 22:00.",
    )
    .await;

    b.goto(&format!("{}/dash/admin/users", app.url)).await;
    b.fill("#invite-email", "budi@acme.test").await;
    b.submit("#invite-send").await;
    b.wait_text("#invitation-link", "works until").await;
    b.screenshot("11-users").await;
    b.goto(&format!("{}/dash/admin/audit", app.url)).await;
    b.wait_text("#audit", "user.invited").await;
    b.screenshot("11-audit-log").await;

    // Plan and usage: the assistant's replies so far (the simulator's one) count against the
    // plan's quota.
    b.goto(&format!("{}/dash/admin/plan", app.url)).await;
    b.wait_text("#plan", "Assistant replies this period").await;
    let replies = b
        .js(
            "return document.querySelector('.quota .quota-label').innerText;",
            json!([]),
        )
        .await;
    assert!(
        replies.as_str().unwrap_or_default().contains("1 of"),
        "{replies}"
    );
    assert_eq!(b.count("#plan [role=progressbar]").await, 4);
    b.screenshot("12-plan-and-usage").await;

    // Routing (hours, agents, settings) and analytics (figures, charts, CSV).
    b.goto(&format!("{}/dash/admin/routing", app.url)).await;
    b.wait_text("#routing", "Business hours").await;
    b.screenshot("14-routing").await;
    b.goto(&format!("{}/dash/analytics", app.url)).await;
    b.wait_text("#figures", "Conversations").await;
    assert_eq!(b.count("#analytics figure svg").await, 4);
    assert_eq!(b.count("#exports a").await, 5);
    b.screenshot("15-analytics").await;
    b.goto(&format!("{}/dash/operator", app.url)).await;
    b.wait_text("#operator", "acme").await;
    assert!(
        b.page_text().await.contains("other"),
        "the operator sees every tenant"
    );
    b.screenshot("13-operator").await;
    b.delete_cookies().await;
    b.goto(&format!("{}/dash/signin", app.url)).await;
    b.screenshot("00-signin").await;
}

async fn a_document_upload_goes_to_ready_live_and_the_search_tester_finds_it(b: &Browser) {
    let app = TestApp::start(Options::quiet()).await;
    app.create_tenant("acme").await;
    // Loaded once per process (seconds in a debug build): not part of the time measured below.
    let model_started = Instant::now();
    app.knowledge().embeddings().warm_up().await.unwrap();
    report_latency(&format!(
        "embedding model ready in {:.1} s",
        model_started.elapsed().as_secs_f64()
    ));
    browser_sign_in(b, &app, "acme", "admin", "Ana").await;
    b.goto(&format!("{}/dash/admin/knowledge", app.url)).await;
    b.fill("#kb-name", "Cafe FAQ").await;
    b.submit("#kb-create").await;
    b.wait_text(".kb h2", "Cafe FAQ").await;

    let dir = tempfile::tempdir().unwrap();
    let faq = dir.path().join("cafe-faq.md");
    std::fs::write(&faq, COFFEE_FAQ).unwrap();
    let broken = dir.path().join("broken.pdf");
    std::fs::write(&broken, broken_pdf()).unwrap();
    b.choose_files(".kb-files", &[&faq, &broken]).await;
    let started = now_ms();
    b.submit(".kb-upload").await;
    // From here the page is never reloaded: a marker set now must still be there at the end.
    // Every status a row shows is noted as it changes.
    b.js(
        "window.__sameKnowledgePage = true; window.__seen = {};\
         function note() { document.querySelectorAll('tr[data-doc]').forEach(function (r) {\
           var name = r.querySelector('.doc-name').innerText, label = r.querySelector('.doc-status').innerText;\
           var seen = window.__seen[name] = window.__seen[name] || [];\
           if (seen[seen.length - 1] !== label) seen.push(label); }); }\
         note(); new MutationObserver(note).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});",
        json!([]),
    )
    .await;
    let ready = b
        .wait_until(
            "window.__sameKnowledgePage && Array.from(document.querySelectorAll('tr[data-doc]')).some(function (r) {\
               return r.innerText.indexOf('cafe-faq.md') >= 0 && r.querySelector('.doc-status').innerText === 'Ready'; })",
        )
        .await;
    let failed = b
        .wait_until(
            "window.__sameKnowledgePage && Array.from(document.querySelectorAll('tr[data-doc]')).some(function (r) {\
               return r.innerText.indexOf('broken.pdf') >= 0 && r.querySelector('.doc-status').innerText === 'Failed'\
                 && !r.querySelector('.doc-failure').hidden && r.querySelector('.doc-failure').innerText.length > 0; })",
        )
        .await;
    let seen = b.js("return window.__seen;", json!([])).await;
    let polls = b
        .js(
            "return window.wacrmKnowledge && window.wacrmKnowledge.polls;",
            json!([]),
        )
        .await;
    report_latency(&format!(
        "upload -> ready on the knowledge page, live: {:.0} ms (failed shown at {:.0} ms; statuses seen {seen}; {polls} polls)",
        ready - started,
        failed - started
    ));
    let reason = b
        .js(
            "return Array.from(document.querySelectorAll('tr[data-doc]')).filter(function (r) {\
               return r.innerText.indexOf('broken.pdf') >= 0; })[0].querySelector('.doc-failure').innerText;",
            json!([]),
        )
        .await;
    let stored = app.get("/api/v1/tenants/acme/knowledge-bases").await;
    let kb = stored[0]["id"].as_str().unwrap();
    let docs = app
        .get(&format!(
            "/api/v1/tenants/acme/knowledge-bases/{kb}/documents"
        ))
        .await;
    let broken_doc = docs
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "broken.pdf")
        .unwrap();
    assert_eq!(
        reason, broken_doc["failure"]["reason"],
        "the stored reason, shown"
    );
    assert!(
        b.js("return document.querySelector('tr.doc-ready [role=progressbar]').getAttribute('aria-valuenow');", json!([]))
            .await
            == json!("100")
    );
    b.screenshot("14-knowledge").await;

    // The search tester finds the document's text, with where it came from and its score.
    b.fill("#kb-question", "Is delivery free?").await;
    b.submit("#kb-search").await;
    b.wait_text("#hits .hit-text", "Delivery is free for orders above")
        .await;
    assert!(b.text("#hits .hit").await.contains("cafe-faq.md"));
    b.screenshot("15-knowledge-search").await;
}

// ---------------------------------------------------------------------------------------------
// Lists and filters, over plain HTTP.

async fn page(app: &TestApp, who: &Http, path: &str) -> String {
    no_redirects()
        .get(format!("{}{}", app.url, path))
        .header("cookie", &who.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The customer numbers listed in an inbox page.
fn listed(html: &str) -> Vec<String> {
    html.split("<span class=\"number\">")
        .skip(1)
        .filter_map(|s| s.split('<').next())
        .map(|s| s.trim_start_matches('+').to_string())
        .collect()
}

#[tokio::test]
async fn inbox_lists_filter_by_view_outlet_channel_label_and_search() {
    let app = TestApp::start(Options::quiet()).await;
    let acme = app.create_tenant("acme").await;
    let outlet = app
        .post("/api/v1/tenants/acme/outlets", json!({"name": "Kemang"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let in_outlet = app
        .post(
            "/api/v1/tenants/acme/channels",
            json!({
                "type": "cloud_api", "name": "Kemang WA", "outlet": outlet,
                "phone_number_id": ACME_PHONE, "waba_id": WABA_ID,
                "access_token": ACCESS_TOKEN, "app_secret": APP_SECRET, "verify_token": "vt-k",
            }),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.add_cloud_channel("acme", OTHER_PHONE).await;
    customer_writes(
        &app,
        ACME_PHONE,
        BUDI,
        "wamid.f1",
        "espresso machine broken",
    )
    .await;
    customer_writes(&app, OTHER_PHONE, SITI, "wamid.f2", "refund please").await;
    customer_writes(&app, OTHER_PHONE, STRANGER, "wamid.f3", "hello").await;
    app.wait_for(WAIT, |a| (a.conversations(acme).len() == 3).then_some(()))
        .await;
    // Ana works conversations with her own account; Oscar is the operator acting as an agent.
    let ana_id = app.create_user("acme", "ana@acme.test", "agent", &[]).await;
    let ana = people_session(&app, "ana@acme.test").await;
    let oscar = sign_in(&app, "acme", "agent", "Oscar", "").await;
    let id_of = |wa: &str| app.conversation_of(acme, wa).unwrap().id;
    let act = |who: &Http, path: String, fields: Vec<(&'static str, String)>| {
        let (url, cookie, csrf) = (
            format!("{}{}", app.url, path),
            who.cookie.clone(),
            who.csrf.clone(),
        );
        async move {
            let mut form = fields;
            form.push(("csrf", csrf));
            let status = no_redirects()
                .post(url)
                .header("cookie", cookie)
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            assert_eq!(status, 303);
        }
    };
    // Taking over makes it the taker's (routing's assignment); the operator's session is
    // nobody's agent, so what it takes over stays unassigned.
    act(&ana, format!("/dash/c/{}/takeover", id_of(SITI)), vec![]).await;
    act(&oscar, format!("/dash/c/{}/takeover", id_of(BUDI)), vec![]).await;
    act(
        &ana,
        format!("/dash/c/{}/labels", id_of(SITI)),
        vec![("labels", "Refund, VIP".into())],
    )
    .await;
    act(&ana, format!("/dash/c/{}/close", id_of(STRANGER)), vec![]).await;
    assert_eq!(
        app.conversation_of(acme, SITI).unwrap().assigned_agent,
        Some(ana_id),
        "taking over made it Ana's"
    );

    let mut all = listed(&page(&app, &ana, "/dash/inbox").await);
    all.sort();
    assert_eq!(
        all,
        vec![BUDI.to_string(), SITI.to_string()],
        "closed ones are not in the open list"
    );
    assert_eq!(
        listed(&page(&app, &ana, "/dash/inbox?view=closed").await),
        vec![STRANGER]
    );
    assert_eq!(
        listed(&page(&app, &ana, "/dash/inbox?view=mine").await),
        vec![SITI]
    );
    assert!(
        listed(&page(&app, &oscar, "/dash/inbox?view=mine").await).is_empty(),
        "the operator's session holds nothing"
    );
    assert_eq!(
        listed(&page(&app, &ana, "/dash/inbox?view=unassigned").await),
        vec![BUDI]
    );
    assert!(listed(&page(&app, &ana, "/dash/inbox?view=pending").await).is_empty());
    assert_eq!(
        listed(&page(&app, &ana, &format!("/dash/inbox?outlet={outlet}")).await),
        vec![BUDI]
    );
    assert_eq!(
        listed(&page(&app, &ana, &format!("/dash/inbox?channel={in_outlet}")).await),
        vec![BUDI]
    );
    assert_eq!(
        listed(&page(&app, &ana, "/dash/inbox?label=vip").await),
        vec![SITI]
    );
    // Search follows the store through the live feed, a moment behind it: each query is
    // repeated (bounded) until the indexer has caught up.
    let search = |q: &'static str| {
        let (app, ana) = (&app, &ana);
        async move {
            let deadline = Instant::now() + WAIT;
            loop {
                let found = listed(&page(app, ana, &format!("/dash/inbox?view=all&q={q}")).await);
                if !found.is_empty() || Instant::now() > deadline {
                    return found;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(search("espresso").await, vec![BUDI]);
    assert_eq!(search("refund").await, vec![SITI]);
    assert_eq!(search("4567890").await, vec![BUDI]);
}

/// The text of the element with `id` in a page (up to its first child tag).
fn by_id(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let rest = &html[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')?;
    Some(rest[start..start + end].trim().to_string())
}

async fn status_of(app: &TestApp, who: &Http, path: &str) -> u16 {
    no_redirects()
        .get(format!("{}{}", app.url, path))
        .header("cookie", &who.cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn assignment_is_routings_mine_capacity_presence_and_who_may_assign() {
    // Offline assistant without knowledge: "agent please" hands off as soon as it arrives.
    let app = TestApp::start(Options {
        llm: Llm::Offline,
        status_webhooks: false,
        ..Options::default()
    })
    .await;
    let acme = app.tenant_with_channel("acme", ACME_PHONE).await;
    let agus_id = app
        .create_user("acme", "agus@acme.test", "agent", &[])
        .await;
    let ana_id = app.create_user("acme", "ana@acme.test", "agent", &[]).await;
    let vera_id = app
        .create_user("acme", "vera@acme.test", "viewer", &[])
        .await;
    let agus = people_session(&app, "agus@acme.test").await;
    let vera = people_session(&app, "vera@acme.test").await;
    let admin = sign_in(&app, "acme", "admin", "Adi", "").await;
    let presence_of = |html: String| by_id(&html, "my-presence");

    // Agus is away until he says otherwise, and his header says so; viewers and the operator's
    // sessions work no conversations and have no presence.
    assert_eq!(
        presence_of(page(&app, &agus, "/dash/inbox").await).as_deref(),
        Some("Away · 0/5")
    );
    assert_eq!(presence_of(page(&app, &vera, "/dash/inbox").await), None);
    assert_eq!(
        post_form(&app, &admin, "/dash/presence", &[("online", "1")]).await,
        403
    );
    // The admin gives him room for one conversation at a time (the routing page); agents do
    // not set their own capacity.
    let capacity = |c: &'static str| [("user", agus_id.as_str()), ("capacity", c)];
    assert_eq!(
        post_form(&app, &agus, "/dash/admin/routing/agents", &capacity("9")).await,
        403
    );
    assert_eq!(
        post_form(&app, &admin, "/dash/admin/routing/agents", &capacity("1")).await,
        303
    );
    assert_eq!(
        post_form(&app, &agus, "/dash/presence", &[("online", "1")]).await,
        303
    );
    assert_eq!(
        presence_of(page(&app, &agus, "/dash/inbox").await).as_deref(),
        Some("Online · 0/1")
    );

    // Two customers ask for a person: the first goes to Agus, the second waits (he is full).
    let handed_off = |wa: &'static str| {
        let app = &app;
        async move {
            app.wait_for(WAIT, |a| {
                a.conversation_of(acme, wa)
                    .filter(|c| c.state == ConversationState::PendingHuman)
            })
            .await
        }
    };
    customer_writes(&app, ACME_PHONE, BUDI, "wamid.r1", "agent please").await;
    let budi = handed_off(BUDI).await;
    assert_eq!(budi.assigned_agent.as_deref(), Some(agus_id.as_str()));
    customer_writes(&app, ACME_PHONE, SITI, "wamid.r2", "agent please").await;
    let siti = handed_off(SITI).await;
    assert_eq!(
        siti.assigned_agent, None,
        "within capacity: the second waits"
    );
    assert_eq!(
        listed(&page(&app, &agus, "/dash/inbox?view=mine").await),
        vec![BUDI]
    );
    let waiting = page(&app, &agus, "/dash/inbox?view=unassigned").await;
    assert_eq!(listed(&waiting), vec![SITI]);
    assert!(
        waiting.contains("In the queue: 1 of 1 waiting"),
        "{waiting}"
    );
    assert!(
        waiting.contains("Handed off: Customer asked for a person"),
        "{waiting}"
    );
    let mut pending = listed(&page(&app, &agus, "/dash/inbox?view=pending").await);
    pending.sort();
    assert_eq!(pending, vec![BUDI.to_string(), SITI.to_string()]);
    let view = page(&app, &agus, &format!("/dash/c/{}", siti.id)).await;
    assert_eq!(
        by_id(&view, "handoff-reason").as_deref(),
        Some("Handed off: the customer asked for a person.")
    );
    assert_eq!(
        by_id(&view, "queue-place").as_deref(),
        Some("In the queue: 1 of 1 waiting")
    );
    assert!(view.contains("id=\"assign-agent\""), "agents may assign");
    assert_eq!(
        presence_of(view).as_deref(),
        Some("Online · 1/1"),
        "his load"
    );

    // A viewer sees the conversation but cannot assign it, even with a hand-made form.
    let assign = format!("/dash/c/{}/assign", siti.id);
    assert!(!page(&app, &vera, &format!("/dash/c/{}", siti.id))
        .await
        .contains("assign-agent"));
    assert_eq!(
        post_form(&app, &vera, &assign, &[("agent", agus_id.as_str())]).await,
        403
    );
    assert_eq!(
        app.conversation_of(acme, SITI).unwrap().assigned_agent,
        None
    );

    // Agus closes Budi's conversation: his slot takes the waiting one, and open dashboards
    // hear of the assignment on the live channel.
    let mut ws = live(&app, &admin, None).await;
    events_until(&mut ws, |e| e["t"] == "ready").await;
    assert_eq!(
        post_form(&app, &agus, &format!("/dash/c/{}/close", budi.id), &[]).await,
        303
    );
    let siti_key = siti.id.to_string();
    events_until(&mut ws, |e| {
        e["t"] == "feed" && e["kind"] == "state" && e["c"] == siti_key.as_str()
    })
    .await;
    assert_eq!(
        app.conversation_of(acme, SITI).unwrap().assigned_agent,
        Some(agus_id.clone())
    );
    assert_eq!(
        listed(&page(&app, &agus, "/dash/inbox?view=mine").await),
        vec![SITI]
    );

    // A third waits; the admin gives it to Ana (away, never an agent before: a person decided),
    // never to a viewer. It is Ana's from then on, and the audit log says who did it.
    customer_writes(&app, ACME_PHONE, STRANGER, "wamid.r3", "agent please").await;
    let third = handed_off(STRANGER).await;
    assert_eq!(third.assigned_agent, None);
    let assign = format!("/dash/c/{}/assign", third.id);
    assert_eq!(
        post_form(&app, &admin, &assign, &[("agent", vera_id.as_str())]).await,
        400
    );
    assert_eq!(
        post_form(&app, &admin, &assign, &[("agent", ana_id.as_str())]).await,
        303
    );
    assert_eq!(
        app.conversation_of(acme, STRANGER).unwrap().assigned_agent,
        Some(ana_id.clone())
    );
    let ana = people_session(&app, "ana@acme.test").await;
    assert_eq!(
        listed(&page(&app, &ana, "/dash/inbox?view=mine").await),
        vec![STRANGER]
    );
    let audit = app.audit("action=conversation.assigned").await;
    assert!(
        audit
            .iter()
            .any(|e| e["target"] == format!("conversation {}", third.id)
                && e["actor"]["label"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("Adi")),
        "{audit:?}"
    );

    // Going away passes on what Agus has not picked up yet: Siti waits in the queue again.
    assert_eq!(
        post_form(&app, &agus, "/dash/presence", &[("online", "0")]).await,
        303
    );
    assert_eq!(
        presence_of(page(&app, &agus, "/dash/inbox").await).as_deref(),
        Some("Away · 0/1")
    );
    assert_eq!(
        app.conversation_of(acme, SITI).unwrap().assigned_agent,
        None
    );
}

#[tokio::test]
async fn analytics_and_routing_pages_follow_roles_and_outlets() {
    // Offline assistant without knowledge: it tells each customer it does not know.
    let app = TestApp::start(Options {
        llm: Llm::Offline,
        status_webhooks: false,
        ..Options::default()
    })
    .await;
    let acme = app.create_tenant("acme").await;
    app.put(
        "/api/v1/tenants/acme/billing/plan",
        json!({"plan": "enterprise"}),
    )
    .await;
    let a = app.create_outlet("acme", "Kemang").await;
    let b = app.create_outlet("acme", "Bandung").await;
    app.add_cloud_channel_in("acme", ACME_PHONE, Some(&a)).await;
    app.add_cloud_channel_in("acme", OTHER_PHONE, Some(&b))
        .await;
    customer_writes(
        &app,
        ACME_PHONE,
        BUDI,
        "wamid.s1",
        "Is there a Kemang menu?",
    )
    .await;
    customer_writes(
        &app,
        OTHER_PHONE,
        SITI,
        "wamid.s2",
        "Is there a Bandung menu?",
    )
    .await;
    customer_writes(&app, OTHER_PHONE, STRANGER, "wamid.s3", "Do you deliver?").await;
    app.wait_for(WAIT, |a| (a.conversations(acme).len() == 3).then_some(()))
        .await;
    app.wait_idle().await;
    app.create_user("acme", "vera@acme.test", "viewer", &[&a])
        .await;
    let vera = people_session(&app, "vera@acme.test").await;
    let admin = sign_in(&app, "acme", "admin", "Adi", "").await;

    // The admin sees the whole tenant: figures, charts, and the questions nobody answered.
    let all = page(&app, &admin, "/dash/analytics").await;
    assert_eq!(by_id(&all, "fig-conversations").as_deref(), Some("3"));
    assert_eq!(
        by_id(&all, "fig-messages").as_deref(),
        Some("3 / 3 / 0"),
        "{all}"
    );
    assert_eq!(all.matches("<svg").count(), 4, "charts inline");
    assert!(all.contains("Is there a Bandung menu?") && all.contains("Do you deliver?"));
    let only_b = page(&app, &admin, &format!("/dash/analytics?outlet={b}")).await;
    assert_eq!(by_id(&only_b, "fig-conversations").as_deref(), Some("2"));
    let before = page(
        &app,
        &admin,
        "/dash/analytics?from=2024-05-01&to=2024-05-31",
    )
    .await;
    assert_eq!(by_id(&before, "fig-conversations").as_deref(), Some("0"));
    assert_eq!(
        status_of(
            &app,
            &admin,
            "/dash/analytics?from=2024-05-02&to=2024-05-01"
        )
        .await,
        400
    );

    // A viewer of Kemang sees Kemang's figures only, and is refused another outlet's (or the
    // numbers without an outlet), on the page and in the CSV.
    let hers = page(&app, &vera, "/dash/analytics").await;
    assert_eq!(by_id(&hers, "fig-conversations").as_deref(), Some("1"));
    assert!(hers.contains("Is there a Kemang menu?"), "{hers}");
    assert!(!hers.contains("Bandung"), "{hers}");
    for path in [
        format!("/dash/analytics?outlet={b}"),
        "/dash/analytics?outlet=none".to_string(),
        format!("/dash/analytics/export/days?outlet={b}"),
    ] {
        assert_eq!(status_of(&app, &vera, &path).await, 403, "{path}");
    }
    let csv = page(&app, &vera, "/dash/analytics/export/unanswered").await;
    assert!(csv.starts_with("question,count,last_seen"), "{csv}");
    assert!(
        csv.contains("Is there a Kemang menu?,1,") && !csv.contains("Bandung"),
        "{csv}"
    );
    assert_eq!(
        status_of(&app, &vera, "/dash/analytics/export/nonsense").await,
        404
    );

    // The routing page is the admins': hours per outlet, routing settings.
    assert_eq!(status_of(&app, &vera, "/dash/admin/routing").await, 403);
    let routing = page(&app, &admin, "/dash/admin/routing").await;
    assert!(routing.contains("Kemang") && routing.contains("No hours set: always open."));
    let hours = |day: &'static str, text: &'static str| [("outlet", a.as_str()), (day, text)];
    assert_eq!(
        post_form(
            &app,
            &admin,
            "/dash/admin/routing/hours",
            &hours("monday", "25:00-26:00")
        )
        .await,
        400
    );
    assert_eq!(
        post_form(
            &app,
            &admin,
            "/dash/admin/routing/hours",
            &[("outlet", a.as_str())]
        )
        .await,
        400,
        "a blank form would close the outlet all week"
    );
    assert_eq!(
        post_form(
            &app,
            &admin,
            "/dash/admin/routing/hours",
            &hours("monday", "08:00-12:00, 13:00-17:00")
        )
        .await,
        303
    );
    let set = app
        .get(&format!("/api/v1/tenants/acme/outlets/{a}/hours"))
        .await;
    assert_eq!(set["monday"].as_array().unwrap().len(), 2, "{set}");
    assert_eq!(set["monday"][1]["close"], "17:00");
    assert!(set["sunday"].as_array().unwrap().is_empty());
    assert!(page(&app, &admin, "/dash/admin/routing")
        .await
        .contains("value=\"08:00-12:00, 13:00-17:00\""));
    assert_eq!(
        post_form(
            &app,
            &admin,
            "/dash/admin/routing/settings",
            &[("allow_bot_return", "1"), ("unhelpful_turn_limit", "3")]
        )
        .await,
        303
    );
    let settings = app.get("/api/v1/tenants/acme/routing/settings").await;
    assert_eq!(
        settings,
        json!({"allow_bot_return": true, "unhelpful_turn_limit": 3})
    );
}

#[tokio::test]
async fn bench_live_runs_small() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wacrm"))
        .args([
            "bench",
            "live",
            "--clients",
            "20",
            "--other-tenants",
            "2",
            "--other-clients",
            "6",
            "--messages",
            "12",
            "--rate",
            "50",
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("| missing / duplicated / other tenant's | 0 / 0 / 0 |"),
        "{stdout}"
    );
    assert!(stdout.contains("commit -> socket p99"), "{stdout}");
}

#[tokio::test]
async fn people_with_accounts_sign_in_with_their_password_and_act_by_their_role() {
    let app = TestApp::start(Options::quiet()).await;
    let acme = app.tenant_with_channel("acme", ACME_PHONE).await;
    app.create_user("acme", "vera@acme.test", "viewer", &[])
        .await;
    app.create_user("acme", "agus@acme.test", "agent", &[])
        .await;
    customer_writes(&app, ACME_PHONE, BUDI, "wamid.u1", "hello").await;
    let c = app.wait_for(WAIT, |a| a.conversation_of(acme, BUDI)).await;
    let http = no_redirects();
    let sign_in_as = |email: &'static str, password: &'static str| {
        let http = http.clone();
        let url = app.url.clone();
        async move {
            let form = http.get(format!("{url}/dash/signin")).send().await.unwrap();
            let signin = cookie_from(&form, "wacrm_signin").unwrap();
            let csrf = csrf_in(&form.text().await.unwrap());
            http.post(format!("{url}/dash/signin/password"))
                .header("cookie", format!("wacrm_signin={signin}"))
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("email", email),
                    ("password", password),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let wrong = sign_in_as("vera@acme.test", "not her password").await;
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(cookie_from(&wrong, "__Host-wacrm_session").is_none());
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("wrong email or password"));

    let mut pages = Vec::new();
    for email in ["vera@acme.test", "agus@acme.test"] {
        let resp = sign_in_as(email, support::people::PASSWORD).await;
        assert_eq!(resp.status().as_u16(), 303);
        let token = cookie_from(&resp, "__Host-wacrm_session").expect("a session cookie");
        let cookie = format!("__Host-wacrm_session={token}");
        let html = http
            .get(format!("{}/dash/c/{}", app.url, c.id))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        pages.push((cookie, csrf_in(&html), html));
    }
    let (vera, vera_csrf, vera_page) = &pages[0];
    assert!(vera_page.contains("vera@acme.test · viewer"));
    assert!(!vera_page.contains("id=\"takeover\""));
    let takeover = |cookie: String, csrf: String| {
        let http = http.clone();
        let url = format!("{}/dash/c/{}/takeover", app.url, c.id);
        async move {
            http.post(url)
                .header("cookie", cookie)
                .form(&[("csrf", csrf)])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(takeover(vera.clone(), vera_csrf.clone()).await, 403);
    let (agus, agus_csrf, agus_page) = &pages[1];
    assert!(agus_page.contains("agus@acme.test · agent"));
    assert_eq!(takeover(agus.clone(), "forged".into()).await, 403);
    assert_eq!(takeover(agus.clone(), agus_csrf.clone()).await, 303);
    assert_eq!(
        app.conversation_of(acme, BUDI).unwrap().state,
        ConversationState::Human
    );

    // Their live channel works too, and signing out ends the session everywhere.
    let who = Http {
        cookie: agus.clone(),
        csrf: agus_csrf.clone(),
    };
    let mut ws = live(&app, &who, None).await;
    events_until(&mut ws, |e| e["t"] == "ready").await;
    let out = http
        .post(format!("{}/dash/signout", app.url))
        .header("cookie", agus)
        .form(&[("csrf", agus_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status().as_u16(), 303);
    let after = http
        .get(format!("{}/dash/inbox", app.url))
        .header("cookie", agus)
        .send()
        .await
        .unwrap();
    assert_eq!(after.headers()["location"], "/dash/signin");
}

// ---------------------------------------------------------------------------------------------
// Admin pages: knowledge, users and roles, the audit log (over plain HTTP).

const COFFEE_FAQ: &str = "# Kopi Nusantara FAQ

## Opening hours

Our cafe is open Monday to Saturday from 8 am to 10 pm. On Sundays we open at 9 am and close at 6 pm.

## Delivery

We deliver within Bandung city. Delivery is free for orders above 100000 rupiah; smaller orders pay a flat fee of 15000 rupiah.
";

/// A PDF by its first bytes, and nothing but noise after them.
fn broken_pdf() -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.extend((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    bytes
}

/// POSTs a form as `cookie` (None: signed out); returns the status and the body.
async fn form_post(
    app: &TestApp,
    cookie: Option<&str>,
    path: &str,
    fields: &[(&str, String)],
) -> (u16, String) {
    let mut req = no_redirects()
        .post(format!("{}{}", app.url, path))
        .form(fields);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Uploads files through the knowledge page's form.
async fn page_upload(
    app: &TestApp,
    who: &Http,
    csrf: &str,
    kb: &str,
    files: &[(&str, Vec<u8>)],
) -> (u16, String) {
    let mut form = reqwest::multipart::Form::new()
        .text("csrf", csrf.to_string())
        .text("kb", kb.to_string());
    for (name, bytes) in files {
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.to_string()),
        );
    }
    let resp = no_redirects()
        .post(format!("{}/dash/admin/knowledge/upload", app.url))
        .header("cookie", &who.cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Text as askama escapes it into a page.
fn escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

fn ids_of(docs: &Value) -> Vec<String> {
    docs.as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn admin_forms_are_for_admins_and_need_the_csrf_token() {
    let app = TestApp::start(Options::quiet()).await;
    app.create_tenant("acme").await;
    let kb = app.create_kb("acme", "faq", &[]).await;
    let admin = sign_in(&app, "acme", "admin", "Ana", "").await;
    let agent = sign_in(&app, "acme", "agent", "Agus", "").await;
    let viewer = sign_in(&app, "acme", "viewer", "Vic", "").await;

    // Everyone of the tenant reads the knowledge page; only admins are offered its forms.
    let seen = page(&app, &viewer, "/dash/admin/knowledge").await;
    assert!(seen.contains("faq") && seen.contains("id=\"read-only\""));
    assert!(!seen.contains("/dash/admin/knowledge/upload") && !seen.contains("kb-delete"));
    let seen = page(&app, &admin, "/dash/admin/knowledge").await;
    assert!(seen.contains("/dash/admin/knowledge/upload") && seen.contains("kb-delete"));
    // People and the audit log are admins' pages.
    for who in [&agent, &viewer] {
        for path in ["/dash/admin/users", "/dash/admin/audit"] {
            assert_eq!(status_of(&app, who, path).await, 403, "{path}");
        }
    }

    let someone = "0190a0a0-0000-7000-8000-000000000000".to_string();
    let forms: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "/dash/admin/knowledge/bases",
            vec![("name", "second".into())],
        ),
        (
            "/dash/admin/knowledge/bases/delete",
            vec![("kb", kb.clone())],
        ),
        (
            "/dash/admin/knowledge/url",
            vec![("kb", kb.clone()), ("url", "https://example.com/".into())],
        ),
        (
            "/dash/admin/knowledge/documents/delete",
            vec![("doc", someone.clone())],
        ),
        (
            "/dash/admin/users/invite",
            vec![("email", "new@acme.test".into()), ("role", "admin".into())],
        ),
        (
            "/dash/admin/users/change",
            vec![("user", someone.clone()), ("role", "admin".into())],
        ),
        (
            "/dash/admin/users/status",
            vec![("user", someone.clone()), ("disabled", "true".into())],
        ),
        (
            "/dash/admin/users/revoke",
            vec![("invitation", someone.clone())],
        ),
    ];
    for (path, fields) in &forms {
        let with = |csrf: &str| {
            let mut f = fields.clone();
            f.push(("csrf", csrf.to_string()));
            f
        };
        for (who, name) in [(&agent, "agent"), (&viewer, "viewer")] {
            let (status, body) = form_post(&app, Some(&who.cookie), path, &with(&who.csrf)).await;
            assert_eq!(status, 403, "{path} as {name}");
            assert!(body.contains("for admins"), "{path} as {name}: {body}");
        }
        let (status, body) = form_post(&app, Some(&admin.cookie), path, &with("forged")).await;
        assert_eq!(status, 403, "{path} with a forged token");
        assert!(body.contains("security token"), "{path}: {body}");
        let (status, _) = form_post(&app, None, path, &with(&admin.csrf)).await;
        assert_eq!(status, 303, "{path} signed out: to the sign-in page");
    }
    // The upload form, multipart, the same way.
    let file = [("faq.md", COFFEE_FAQ.as_bytes().to_vec())];
    assert_eq!(
        page_upload(&app, &viewer, &viewer.csrf, &kb, &file).await.0,
        403
    );
    assert_eq!(
        page_upload(&app, &agent, &agent.csrf, &kb, &file).await.0,
        403
    );
    assert_eq!(page_upload(&app, &admin, "", &kb, &file).await.0, 403);

    // Nothing of it happened.
    let bases = app.get("/api/v1/tenants/acme/knowledge-bases").await;
    assert_eq!(bases.as_array().unwrap().len(), 1, "{bases}");
    assert_eq!(bases[0]["documents"], 0, "{bases}");
    let invitations = app.get("/api/v1/tenants/acme/invitations").await;
    assert!(invitations.as_array().unwrap().is_empty(), "{invitations}");
}

#[tokio::test]
async fn a_refused_knowledge_base_names_the_limit_and_the_plan() {
    let app = TestApp::start(Options::quiet()).await;
    app.create_tenant("acme").await;
    let admin = sign_in(&app, "acme", "admin", "Ana", "").await;
    let create = |name: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            form_post(
                app,
                Some(&admin.cookie),
                "/dash/admin/knowledge/bases",
                &[("csrf", admin.csrf.clone()), ("name", name.into())],
            )
            .await
        }
    };
    let (status, _) = create("faq").await;
    assert_eq!(status, 303);
    // A second base is past the starter plan: the page says so, naming the limit and the plan.
    let (status, body) = create("menu").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("knowledge base limit reached") && body.contains("Starter"),
        "{body}"
    );
    assert!(
        body.contains("class=\"flash\""),
        "shown on the page: {body}"
    );
    assert!(
        body.contains("id=\"new-base\""),
        "the page itself, not a bare error"
    );
    // And the same name twice is refused for what it is.
    let (status, body) = create("faq").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("already exists"), "{body}");
    let bases = app.get("/api/v1/tenants/acme/knowledge-bases").await;
    assert_eq!(bases.as_array().unwrap().len(), 1, "{bases}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_uploaded_through_the_page_are_searched_and_deleting_removes_them() {
    let app = TestApp::start(Options::quiet()).await;
    app.create_tenant("acme").await;
    let admin = sign_in(&app, "acme", "admin", "Ana", "").await;
    let viewer = sign_in(&app, "acme", "viewer", "Vic", "").await;
    let (status, _) = form_post(
        &app,
        Some(&admin.cookie),
        "/dash/admin/knowledge/bases",
        &[("csrf", admin.csrf.clone()), ("name", "faq".into())],
    )
    .await;
    assert_eq!(status, 303);
    let kb = app.get("/api/v1/tenants/acme/knowledge-bases").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = page_upload(
        &app,
        &admin,
        &admin.csrf,
        &kb,
        &[
            ("faq.md", COFFEE_FAQ.as_bytes().to_vec()),
            ("broken.pdf", broken_pdf()),
            ("empty.txt", Vec::new()),
        ],
    )
    .await;
    // The empty file is refused on the spot, the others are stored.
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("Uploaded: faq.md, broken.pdf") && body.contains("empty.txt: file: is empty"),
        "{body}"
    );
    let docs = app
        .get(&format!(
            "/api/v1/tenants/acme/knowledge-bases/{kb}/documents"
        ))
        .await;
    let docs = app.wait_documents("acme", &ids_of(&docs)).await;
    let faq = docs.iter().find(|d| d["name"] == "faq.md").unwrap();
    let broken = docs.iter().find(|d| d["name"] == "broken.pdf").unwrap();
    assert_eq!(faq["status"], "ready", "{faq}");
    assert_eq!(broken["status"], "failed", "{broken}");
    let reason = broken["failure"]["reason"].as_str().unwrap();

    // The page shows each one's state; the failure with its reason.
    let seen = page(&app, &viewer, "/dash/admin/knowledge").await;
    assert!(seen.contains("doc doc-ready") && seen.contains("doc doc-failed"));
    assert!(seen.contains(&escaped(reason)), "{reason} in {seen}");
    // The progress the page polls says the same, to any reader of the tenant.
    let http = no_redirects();
    let progress: Value = http
        .get(format!("{}/dash/admin/knowledge/progress", app.url))
        .header("cookie", &viewer.cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = progress["documents"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{progress}");
    let row = |name: &str| listed.iter().find(|d| d["name"] == name).unwrap().clone();
    assert_eq!(
        (
            row("faq.md")["label"].clone(),
            row("faq.md")["percent"].clone()
        ),
        (json!("Ready"), json!(100))
    );
    assert_eq!(row("broken.pdf")["failure"], json!(reason));
    // Asked for changes after the current version, it answers (after its short wait) anyway.
    let version = progress["version"].as_u64().unwrap();
    let again: Value = http
        .get(format!(
            "{}/dash/admin/knowledge/progress?after={version}",
            app.url
        ))
        .header("cookie", &viewer.cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["documents"].as_array().unwrap().len(), 2);

    // The search tester runs the assistant's search: passages, where they come from, scores.
    let question = "/dash/admin/knowledge?q=Is+delivery+free%3F";
    let found = page(&app, &viewer, question).await;
    assert!(
        found.contains("Delivery is free for orders above"),
        "{found}"
    );
    assert!(found.contains("Kopi Nusantara FAQ › Delivery"), "{found}");
    assert!(found.contains("class=\"hit-score\""), "{found}");

    // Deleting the document takes it out of the answers at once.
    let faq_id = faq["id"].as_str().unwrap().to_string();
    let (status, _) = form_post(
        &app,
        Some(&admin.cookie),
        "/dash/admin/knowledge/documents/delete",
        &[("csrf", admin.csrf.clone()), ("doc", faq_id)],
    )
    .await;
    assert_eq!(status, 303);
    let found = page(&app, &viewer, &format!("{question}&all=1")).await;
    assert!(!found.contains("Delivery is free"), "{found}");
    assert!(found.contains("id=\"no-hits\""), "{found}");
    // Recorded as the JSON API records it, naming who did it.
    let audit = page(&app, &admin, "/dash/admin/audit?action=document.").await;
    assert!(audit.contains("document.deleted"), "{audit}");
    assert!(audit.contains("&#34;faq.md&#34;"), "{audit}");
    assert!(audit.contains("operator token (dashboard: Ana)"), "{audit}");

    // Deleting the base empties the page.
    let (status, _) = form_post(
        &app,
        Some(&admin.cookie),
        "/dash/admin/knowledge/bases/delete",
        &[("csrf", admin.csrf.clone()), ("kb", kb)],
    )
    .await;
    assert_eq!(status, 303);
    assert!(page(&app, &viewer, "/dash/admin/knowledge")
        .await
        .contains("No knowledge bases yet."));
    let audit = page(&app, &admin, "/dash/admin/audit").await;
    assert!(audit.contains("knowledge_base.deleted") && audit.contains("knowledge_base.created"));
}

/// Signs a person with an account in through the dashboard's password form.
async fn sign_in_person(app: &TestApp, email: &str) -> Http {
    let http = no_redirects();
    let form = http
        .get(format!("{}/dash/signin", app.url))
        .send()
        .await
        .unwrap();
    let signin = cookie_from(&form, "wacrm_signin").unwrap();
    let csrf = csrf_in(&form.text().await.unwrap());
    let resp = http
        .post(format!("{}/dash/signin/password", app.url))
        .header("cookie", format!("wacrm_signin={signin}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", support::people::PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303, "{email} signs in");
    let token = cookie_from(&resp, "__Host-wacrm_session").unwrap();
    let cookie = format!("__Host-wacrm_session={token}");
    let html = http
        .get(format!("{}/dash/inbox", app.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    Http {
        csrf: csrf_in(&html),
        cookie,
    }
}

/// The row of the person with this email, as the users page shows it.
fn person_row<'a>(html: &'a str, email: &str) -> &'a str {
    let email_at = html
        .find(&format!("<span class=\"hint\">{email}</span>"))
        .unwrap_or_else(|| panic!("{email} listed"));
    let at = html[..email_at].rfind("<tr").unwrap();
    let end = html[at..].find("</tr>").unwrap();
    &html[at..at + end]
}

#[tokio::test]
async fn admins_invite_people_change_their_roles_and_read_the_audit_log() {
    let app = TestApp::start(Options::quiet()).await;
    app.create_tenant("acme").await;
    app.create_tenant("other").await;
    app.create_kb("other", "other's faq", &[]).await;
    let north = app.create_outlet("acme", "North").await;
    app.create_user("acme", "ana@acme.test", "admin", &[]).await;
    let ana = sign_in_person(&app, "ana@acme.test").await;
    let post = |path: &'static str, fields: Vec<(&'static str, String)>| {
        let (app, ana) = (&app, &ana);
        async move {
            let mut f = fields;
            f.push(("csrf", ana.csrf.clone()));
            form_post(app, Some(&ana.cookie), path, &f).await
        }
    };

    let users = page(&app, &ana, "/dash/admin/users").await;
    let row = person_row(&users, "ana@acme.test");
    assert!(row.contains("class=\"role\">admin<") && row.contains("All outlets"));
    assert!(row.contains(">you<"), "{row}");
    assert!(!row.contains("never"), "she has just signed in: {row}");

    // An invitation: its link is shown once, with when it stops working.
    let (status, body) = post(
        "/dash/admin/users/invite",
        vec![
            ("email", "Budi@Acme.test".into()),
            ("role", "agent".into()),
            ("outlets", north.clone()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("works until"), "{body}");
    let link = body
        .split("id=\"invitation-url\"")
        .next()
        .unwrap()
        .rsplit("value=\"")
        .next()
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert!(link.contains("/invitations#"), "{link}");
    let token = link.split('#').nth(1).unwrap().to_string();
    let users = page(&app, &ana, "/dash/admin/users").await;
    assert!(!users.contains(&token), "the link is not shown again");
    assert!(users.contains("budi@acme.test</td><td>agent</td><td>North</td>"));

    // Budi follows the link, chooses a name and a password, and is signed in as an agent.
    let http = no_redirects();
    let form = http
        .get(format!("{}/invitations", app.url))
        .send()
        .await
        .unwrap();
    let form_cookie = cookie_from(&form, "wacrm_signin").unwrap();
    let form_csrf = csrf_in(&form.text().await.unwrap());
    let accepted = http
        .post(format!("{}/invitations", app.url))
        .header("cookie", format!("wacrm_signin={form_cookie}"))
        .form(&[
            ("csrf", form_csrf.as_str()),
            ("token", token.as_str()),
            ("name", "Budi"),
            ("password", support::people::PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status().as_u16(), 303);
    let budi_cookie = format!(
        "__Host-wacrm_session={}",
        cookie_from(&accepted, "__Host-wacrm_session").unwrap()
    );
    let budi = Http {
        csrf: String::new(),
        cookie: budi_cookie,
    };
    assert!(page(&app, &budi, "/dash/inbox")
        .await
        .contains("budi@acme.test · agent"));
    assert_eq!(status_of(&app, &budi, "/dash/admin/users").await, 403);
    let users = page(&app, &ana, "/dash/admin/users").await;
    let budi_id = users
        .split("id=\"user-")
        .skip(1)
        .find(|s| s.contains("budi@acme.test"))
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert!(person_row(&users, "budi@acme.test").contains("North"));

    // A new role and all outlets.
    let (status, _) = post(
        "/dash/admin/users/change",
        vec![("user", budi_id.clone()), ("role", "viewer".into())],
    )
    .await;
    assert_eq!(status, 303);
    let users = page(&app, &ana, "/dash/admin/users").await;
    let row = person_row(&users, "budi@acme.test");
    assert!(
        row.contains("class=\"role\">viewer<") && row.contains("All outlets"),
        "{row}"
    );

    // The tenant's last admin cannot step down: the people service's rule holds here too.
    let ana_id = users
        .split("id=\"user-")
        .skip(1)
        .find(|s| s.contains("ana@acme.test"))
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (status, body) = post(
        "/dash/admin/users/change",
        vec![("user", ana_id.clone()), ("role", "agent".into())],
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("last active admin"), "{body}");
    let (status, _) = post(
        "/dash/admin/users/status",
        vec![("user", ana_id), ("disabled", "true".into())],
    )
    .await;
    assert_eq!(status, 409);

    // Disabling signs Budi out; enabling lets him sign in again.
    let (status, _) = post(
        "/dash/admin/users/status",
        vec![("user", budi_id.clone()), ("disabled", "true".into())],
    )
    .await;
    assert_eq!(status, 303);
    assert!(person_row(
        &page(&app, &ana, "/dash/admin/users").await,
        "budi@acme.test"
    )
    .contains("class=\"status\"><span class=\"warn\">disabled"));
    let out = no_redirects()
        .get(format!("{}/dash/inbox", app.url))
        .header("cookie", &budi.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.headers()["location"], "/dash/signin");
    let (status, _) = post(
        "/dash/admin/users/status",
        vec![("user", budi_id.clone()), ("disabled", "false".into())],
    )
    .await;
    assert_eq!(status, 303);
    assert!(person_row(
        &page(&app, &ana, "/dash/admin/users").await,
        "budi@acme.test"
    )
    .contains("class=\"status\">active<"));

    // An invitation revoked is gone.
    let (status, _) = post(
        "/dash/admin/users/invite",
        vec![
            ("email", "cici@acme.test".into()),
            ("role", "viewer".into()),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let invitation = app.get("/api/v1/tenants/acme/invitations").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = post("/dash/admin/users/revoke", vec![("invitation", invitation)]).await;
    assert_eq!(status, 303);
    assert!(!page(&app, &ana, "/dash/admin/users")
        .await
        .contains("cici@acme.test"));

    // The audit log: newest first, who (Ana, from where), what, on which object.
    let audit = page(&app, &ana, "/dash/admin/audit").await;
    let actions: Vec<&str> = audit
        .split("<td><code>")
        .skip(1)
        .filter_map(|s| s.split('<').next())
        .collect();
    let position = |a: &str| actions.iter().position(|x| *x == a);
    assert!(position("user.invitation_revoked").is_some(), "{actions:?}");
    assert!(
        position("user.invitation_revoked") < position("user.invitation_accepted"),
        "newest first: {actions:?}"
    );
    for a in [
        "user.invited",
        "user.invitation_accepted",
        "user.role_changed",
        "user.outlets_changed",
        "user.disabled",
        "user.enabled",
        "auth.sign_in",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    assert!(audit.contains("ana@acme.test <span class=\"hint\">(user)</span>"));
    assert!(audit.contains("127.0.0.1"), "from where");
    assert!(
        !audit.contains("knowledge_base.created"),
        "never another tenant's entries"
    );
    let filtered = page(&app, &ana, "/dash/admin/audit?action=user.role_changed").await;
    assert_eq!(filtered.matches("class=\"audit-entry\"").count(), 1);

    // Paging: 50 to a page, newest first.
    for i in 0..50 {
        let role = if i % 2 == 0 { "agent" } else { "viewer" };
        app.call(
            &app.operator(),
            reqwest::Method::PATCH,
            &format!("/api/v1/tenants/acme/users/{budi_id}"),
            Some(json!({"role": role})),
        )
        .await;
    }
    let first = page(&app, &ana, "/dash/admin/audit?action=user.role_changed").await;
    assert_eq!(first.matches("class=\"audit-entry\"").count(), 50);
    assert!(first.contains("id=\"audit-older\"") && !first.contains("id=\"audit-newer\""));
    let second = page(
        &app,
        &ana,
        "/dash/admin/audit?action=user.role_changed&page=1",
    )
    .await;
    assert_eq!(second.matches("class=\"audit-entry\"").count(), 1);
    assert!(second.contains("id=\"audit-newer\"") && !second.contains("id=\"audit-older\""));

    // The operator reads every tenant's log.
    let operator = sign_in(&app, "acme", "admin", "Olga", "").await;
    let all = page(&app, &operator, "/dash/admin/audit?action=knowledge_base.").await;
    assert!(all.contains("knowledge_base.created") && all.contains("<td>other</td>"));
}
