//! Erasing one customer's data on request, and per-tenant retention.

mod support;

use std::sync::{Arc, Mutex};

use support::ops::*;
use support::*;
use wacrm::ops::retention::{self, DataHooks, RetentionPolicy};
use wacrm::storage::{ConversationId, TenantId};

const PHONE: &str = "106540352242922";

#[derive(Default)]
struct Recorder(Mutex<Vec<(TenantId, String, usize)>>);

impl DataHooks for Recorder {
    fn customer_erased(&self, tenant: TenantId, wa_id: &str, conversations: &[ConversationId]) {
        self.0
            .lock()
            .unwrap()
            .push((tenant, wa_id.to_string(), conversations.len()));
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_customer_removes_their_messages_and_keeps_everyone_elses() {
    let mut app = TestApp::start(Options::default()).await;
    let tenant = app.tenant_with_channel("acme", PHONE).await;
    let hooks = Arc::new(Recorder::default());
    app.running
        .as_ref()
        .unwrap()
        .state
        .ops
        .hooks
        .register(hooks.clone());
    let (erased, kept) = ("6281111111", "6282222222");
    // A word only each customer wrote, to search for.
    let word = |who: &str| {
        if who == erased {
            "kelapamuda"
        } else {
            "durianmontong"
        }
    };
    for (i, who) in [erased, kept, erased].iter().enumerate() {
        app.post_signed(&text_webhook(
            PHONE,
            who,
            &format!("wamid.er{i}"),
            &format!("rahasia {} {who}", word(who)),
        ))
        .await;
    }
    // Both customers were answered (the reply's statuses came back too).
    app.wait_for(WAIT, |a| {
        let cs = a.conversations(tenant);
        (cs.len() == 2
            && cs.iter().all(|c| {
                a.messages(tenant, c)
                    .iter()
                    .any(|m| m.status == wacrm::conversations::MessageStatus::Read)
            }))
        .then_some(())
    })
    .await;

    // Before: an agent finds the customer in the dashboard's inbox search, by their words and
    // by their number, and their words are in the search index's files.
    app.create_user("acme", "agent@acme.test", "agent", &[])
        .await;
    let agent = app.sign_in("agent@acme.test").await;
    for (q, who) in [
        ("kelapamuda", erased),
        (erased, erased),
        ("durianmontong", kept),
    ] {
        assert_eq!(inbox_search_until(&app, &agent, q, &[who]).await, vec![who]);
    }
    let search_dir = app.dir.path().join(wacrm::web::dashboard::SEARCH_DIR);
    let index_dir = search_dir.join("conversations");
    let erased_conversation = app.conversation_of(tenant, erased).unwrap().id.to_string();
    // The checks below can see what is there: the index holds the words, the number and the
    // conversation's id.
    for needle in ["kelapamuda", erased, erased_conversation.as_str()] {
        assert!(index_mentions(&index_dir, needle), "{needle} not indexed");
    }

    let report = app
        .post(
            &format!("/api/v1/tenants/acme/customers/{erased}/erase"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(report["conversations"], 1);
    assert!(report["messages"].as_u64().unwrap() >= 3);
    assert_eq!(report["contact"], true);

    let left = app.conversations(tenant);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].contact_wa_id, kept);
    assert_eq!(
        hooks.0.lock().unwrap().as_slice(),
        &[(tenant, erased.to_string(), 1)]
    );
    for i in [0, 2] {
        assert!(!received(app.store(), tenant, &format!("wamid.er{i}")));
    }
    assert!(received(app.store(), tenant, "wamid.er1"));

    // Search no longer finds them, and no file of the index holds their words or number; the
    // other customer is still found.
    let search = &app.running.as_ref().unwrap().state.dashboard.search;
    for q in ["kelapamuda", erased] {
        assert!(search.search(tenant, q, 10).unwrap().is_empty(), "{q}");
        assert!(inbox_search(&app, &agent, q).await.is_empty(), "{q}");
    }
    assert_eq!(
        inbox_search(&app, &agent, "durianmontong").await,
        vec![kept]
    );
    for needle in ["kelapamuda", erased, erased_conversation.as_str()] {
        assert!(
            !index_mentions(&index_dir, needle),
            "{needle} is still indexed"
        );
    }
    assert!(index_mentions(&index_dir, "durianmontong"));

    // The erasure is audited without the number.
    let audit = app.get("/api/v1/ops/audit").await;
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "customer.erase")
        .unwrap()
        .clone();
    assert_eq!(entry["subject"], retention::subject_hash(tenant, erased));
    assert!(!entry.to_string().contains(erased));

    // Nowhere in storage is there a trace of the number or their words; the other customer remains.
    app.stop().await;
    let rows = dump(&app.dir.path().join("wacrm.redb"));
    let mut saw_kept = false;
    for table in rows.values() {
        for (k, v) in table {
            assert!(
                !contains(k, erased.as_bytes()) && !contains(v, erased.as_bytes()),
                "a row still names the erased customer"
            );
            saw_kept |= contains(v, kept.as_bytes());
        }
    }
    assert!(saw_kept);
    // Nor in the search index's files: no former segment (where a deleted document might
    // linger) is left behind.
    assert_no_former_segments(&index_dir);
    // Nor in any other file of the data directory (the database was read row by row above).
    for needle in ["kelapamuda", erased, erased_conversation.as_str()] {
        let files: Vec<String> = files_containing(app.dir.path(), needle.as_bytes())
            .into_iter()
            .filter(|f| !f.ends_with("wacrm.redb"))
            .collect();
        assert!(files.is_empty(), "{needle} is still in {files:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_conversations_of_tenants_that_set_it_only() {
    let mut app = TestApp::start(Options::default()).await;
    let short = app.tenant_with_channel("short", PHONE).await;
    let keep = app.tenant_with_channel("keep", "106540352242923").await;
    app.post_signed(&text_webhook(
        PHONE,
        "628333",
        "wamid.r1",
        "halo sawomanila",
    ))
    .await;
    app.post_signed(&text_webhook(
        "106540352242923",
        "628333",
        "wamid.r2",
        "halo nangkamadu",
    ))
    .await;
    app.wait_for(WAIT, |a| {
        (a.conversations(short).len() == 1 && a.conversations(keep).len() == 1).then_some(())
    })
    .await;
    let set = app
        .api(
            reqwest::Method::PUT,
            "/api/v1/tenants/short/retention",
            Some(serde_json::json!({"conversation_days": 30})),
        )
        .await;
    assert_eq!(set.0, 200, "{}", set.1);
    let (status, _) = app
        .api(
            reqwest::Method::PUT,
            "/api/v1/tenants/keep/retention",
            Some(serde_json::json!({"conversation_days": 0})),
        )
        .await;
    assert_eq!(status, 400);

    // Both tenants' agents find the conversation in the inbox search.
    let mut agents = Vec::new();
    for (slug, word) in [("short", "sawomanila"), ("keep", "nangkamadu")] {
        let email = format!("agent@{slug}.test");
        app.create_user(slug, &email, "agent", &[]).await;
        let agent = app.sign_in(&email).await;
        assert_eq!(
            inbox_search_until(&app, &agent, word, &["628333"]).await,
            vec!["628333"]
        );
        agents.push(agent);
    }

    let expiring = app.conversations(short)[0].id.to_string();
    let index_dir = app
        .dir
        .path()
        .join(wacrm::web::dashboard::SEARCH_DIR)
        .join("conversations");
    assert!(index_mentions(&index_dir, &expiring));

    let store = app.store();
    // The service's own hooks: the dashboard's search index forgets what retention deletes.
    let hooks = &app.running.as_ref().unwrap().state.ops.hooks;
    // Today nothing is old enough.
    let now = wacrm::events::now_ms();
    assert_eq!(
        retention::sweep(store, hooks, now)
            .await
            .unwrap()
            .conversations,
        0
    );
    // 31 days on, the short-retention tenant's conversation goes; the other tenant keeps its own.
    let later = now + 31 * 24 * 3600 * 1000;
    let report = retention::sweep(store, hooks, later).await.unwrap();
    assert_eq!(report.conversations, 1);
    assert!(report.messages >= 1);
    assert!(app.conversations(short).is_empty());
    assert!(!received(store, short, "wamid.r1"));
    assert_eq!(app.conversations(keep).len(), 1);
    assert_eq!(
        retention::get_policy(store, keep).unwrap(),
        RetentionPolicy::default()
    );
    // The expired conversation left the inbox search; the other tenant's is still found.
    let search = &app.running.as_ref().unwrap().state.dashboard.search;
    assert!(search.search(short, "sawomanila", 10).unwrap().is_empty());
    assert!(inbox_search(&app, &agents[0], "sawomanila")
        .await
        .is_empty());
    assert_eq!(
        inbox_search(&app, &agents[1], "nangkamadu").await,
        vec!["628333"]
    );
    assert!(!index_mentions(&index_dir, "sawomanila"));
    assert!(!index_mentions(&index_dir, &expiring));
    app.stop().await;
    assert_no_former_segments(&index_dir);
    assert!(index_mentions(&index_dir, "nangkamadu"));
}
