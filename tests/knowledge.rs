//! Knowledge bases end to end: upload, ingestion, hybrid retrieval, isolation, deletion,
//! re-indexing, and answers grounded in them. Uses the local multilingual model from `models/`
//! (one loaded model shared by every test in this process).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use wacrm::config::{EmbeddingSettings, Secret};
use wacrm::conversations::Author;
use wacrm::testkit::fake_llm::{FakeLlm, FakeLlmOptions, Reply, FAKE_LLM_API_KEY};

const FAQ: &str = "# Kopi Nusantara FAQ

## Opening hours

Our cafe is open Monday to Saturday from 8 am to 10 pm. On Sundays we open at 9 am and close at 6 pm.

## Delivery

We deliver within Bandung city. Delivery is free for orders above 100000 rupiah; smaller orders pay a flat fee of 15000 rupiah.

## Payment

We accept cash, debit cards, QRIS and GoPay. Credit cards are accepted for orders above 50000 rupiah.
";

const REFUNDS: &str = "# Refund policy

If your drink is wrong or spilled, show the receipt within 24 hours and we will remake it or refund you in full.
";

fn hit_texts(v: &Value) -> Vec<String> {
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["text"].as_str().unwrap().to_string())
        .collect()
}

async fn app_with_faq(options: Options) -> (TestApp, String, wacrm::storage::TenantId) {
    let app = TestApp::start(options).await;
    let tenant = app.tenant_with_channel("acme", "106540352242922").await;
    let kb = app.create_kb("acme", "faq", &[]).await;
    let docs = app
        .upload_and_wait(
            "acme",
            &kb,
            &[("faq.md", FAQ.into()), ("refunds.md", REFUNDS.into())],
        )
        .await;
    for d in &docs {
        assert_eq!(d["status"], "ready", "{d}");
        assert_eq!(d["progress"], 100);
    }
    (app, kb, tenant)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_documents_become_searchable_with_scores() {
    let (mut app, _kb, _tenant) = app_with_faq(Options::default()).await;
    // Embedding the documents is recorded as the tenant's embedding tokens (cost visibility).
    let billing = app.get("/api/v1/tenants/acme/billing").await;
    let embedded = billing["usage"]["tokens"]["embedding_tokens"]
        .as_u64()
        .unwrap();
    assert!(embedded > 50, "{billing}");
    let v = app
        .search(
            "acme",
            json!({"query": "Is delivery free?", "min_score": 0}),
        )
        .await;
    let top = &v["hits"][0];
    assert!(
        top["text"].as_str().unwrap().contains("Delivery is free"),
        "{v}"
    );
    assert_eq!(top["document_name"], "faq.md");
    assert_eq!(top["document_title"], "Kopi Nusantara FAQ");
    assert_eq!(
        top["heading_path"],
        json!(["Kopi Nusantara FAQ", "Delivery"])
    );
    assert!(top["score"].as_f64().unwrap() > 0.0);
    // Indonesian question, English document: the multilingual model bridges them.
    let v = app
        .search(
            "acme",
            json!({"query": "jam berapa buka hari minggu?", "min_score": 0}),
        )
        .await;
    assert!(hit_texts(&v)[0].contains("Sundays"), "{v}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_never_sees_another_tenants_chunks_even_with_identical_text() {
    let (mut app, kb_a, _) = app_with_faq(Options::default()).await;
    app.create_tenant("beta").await;
    let kb_b = app.create_kb("beta", "faq", &[]).await;
    app.upload_and_wait("beta", &kb_b, &[("faq.md", FAQ.into())])
        .await;
    let a_docs: Vec<String> = app
        .get(&format!(
            "/api/v1/tenants/acme/knowledge-bases/{kb_a}/documents"
        ))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    for query in ["Is delivery free?", "refund spilled drink", "payment QRIS"] {
        let v = app
            .search("beta", json!({"query": query, "min_score": 0, "limit": 50}))
            .await;
        for hit in v["hits"].as_array().unwrap() {
            assert_eq!(hit["kb"], json!(kb_b));
            assert!(!a_docs.contains(&hit["document"].as_str().unwrap().to_string()));
        }
        // Tenant B's refund question finds nothing: that document is tenant A's only.
        if query.starts_with("refund") {
            assert!(hit_texts(&v).iter().all(|t| !t.contains("remake")), "{v}");
        }
    }
    // Naming tenant A's base from tenant B is "not found", not a way in.
    let (status, _) = app
        .api(
            reqwest::Method::POST,
            "/api/v1/tenants/beta/knowledge/search",
            Some(json!({"query": "refund", "kb": kb_a})),
        )
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_removes_at_once_and_re_adding_does_not_duplicate() {
    let (mut app, kb, _) = app_with_faq(Options::default()).await;
    let refund = || json!({"query": "refund for a spilled drink", "min_score": 0, "limit": 50});
    let before = app.search("acme", refund()).await;
    assert!(hit_texts(&before)[0].contains("remake"), "{before}");

    // The same bytes again: the existing document, nothing new.
    let (status, v) = app
        .upload("acme", &kb, &[("copy.md", REFUNDS.into())])
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["documents"][0]["created"], false);
    let doc = v["documents"][0]["id"].as_str().unwrap().to_string();
    let again = app.search("acme", refund()).await;
    assert_eq!(hit_texts(&again), hit_texts(&before));

    let (status, _) = app
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/tenants/acme/documents/{doc}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    // No waiting: gone from the very next search.
    let after = app.search("acme", refund()).await;
    assert!(
        hit_texts(&after).iter().all(|t| !t.contains("remake")),
        "{after}"
    );

    // Added back: found exactly once.
    app.upload_and_wait("acme", &kb, &[("refunds.md", REFUNDS.into())])
        .await;
    let back = app.search("acme", refund()).await;
    assert_eq!(
        hit_texts(&back)
            .iter()
            .filter(|t| t.contains("remake"))
            .count(),
        1
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_document_swaps_its_content() {
    let (mut app, kb, _) = app_with_faq(Options::default()).await;
    let docs = app
        .get(&format!(
            "/api/v1/tenants/acme/knowledge-bases/{kb}/documents"
        ))
        .await;
    let refunds = docs
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "refunds.md")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(
            b"# Refunds\n\nNo refunds after 7 days; store credit only.".to_vec(),
        )
        .file_name("refunds-v2.md"),
    );
    let resp = app
        .http
        .put(format!(
            "{}/api/v1/tenants/acme/documents/{refunds}",
            app.url
        ))
        .bearer_auth(&app.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let old = app
        .search(
            "acme",
            json!({"query": "remake spilled drink receipt", "min_score": 0, "limit": 50}),
        )
        .await;
    assert!(
        hit_texts(&old).iter().all(|t| !t.contains("remake")),
        "{old}"
    );
    let doc = app.wait_documents("acme", &[refunds]).await;
    assert_eq!(doc[0]["status"], "ready");
    assert_eq!(doc[0]["generation"], 2);
    let new = app
        .search("acme", json!({"query": "store credit", "min_score": 0}))
        .await;
    assert!(hit_texts(&new)[0].contains("store credit"), "{new}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_index_files_are_rebuilt_with_identical_results() {
    let (app, _kb, _) = app_with_faq(Options::default()).await;
    let queries = [
        "Is delivery free?",
        "Can I pay with GoPay?",
        "refund",
        "jam buka hari minggu",
    ];
    let mut before = Vec::new();
    for q in queries {
        before.push(
            app.search("acme", json!({"query": q, "min_score": 0, "limit": 10}))
                .await["hits"]
                .clone(),
        );
    }
    let data_dir = app.dir.path().to_path_buf();
    let mut app = app.restart(|_| {}).await;
    app.stop().await;
    std::fs::remove_dir_all(data_dir.join("index")).unwrap();
    let app = app.restart(|_| {}).await;
    // `wacrm reindex` is this call (the CLI goes through the API).
    let report = app.post("/api/v1/knowledge/reindex", json!({})).await;
    assert!(report["chunks"].as_u64().unwrap() >= 4, "{report}");
    for (q, expected) in queries.iter().zip(&before) {
        let got = app
            .search("acme", json!({"query": q, "min_score": 0, "limit": 10}))
            .await["hits"]
            .clone();
        assert_eq!(ids_and_scores(&got), ids_and_scores(expected), "{q}");
    }
    let mut app = app;
    app.stop().await;
}

fn ids_and_scores(hits: &Value) -> Vec<(u64, i64)> {
    hits.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["chunk"].as_u64().unwrap(),
                (h["score"].as_f64().unwrap() * 1e4).round() as i64,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_fail_with_their_reason_while_the_others_ingest() {
    let mut app = TestApp::start(Options {
        tweak: Box::new(|c| c.knowledge.max_document_bytes = 4096),
        ..Options::default()
    })
    .await;
    app.create_tenant("acme").await;
    let kb = app.create_kb("acme", "faq", &[]).await;
    let (status, v) = app
        .upload(
            "acme",
            &kb,
            &[
                ("program.exe", b"MZ\x90\x00binary".to_vec()),
                ("big.md", vec![b'a'; 5000]),
                ("empty.md", Vec::new()),
                ("faq.md", FAQ.into()),
            ],
        )
        .await;
    assert_eq!(status, 202, "{v}");
    let rejected: Vec<(String, String)> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["filename"].as_str().unwrap().into(),
                r["code"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        rejected.contains(&("big.md".into(), "too_large".into())),
        "{v}"
    );
    assert!(
        rejected.contains(&("empty.md".into(), "invalid_input".into())),
        "{v}"
    );
    let ids: Vec<String> = v["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    let docs = app.wait_documents("acme", &ids).await;
    let exe = docs.iter().find(|d| d["name"] == "program.exe").unwrap();
    assert_eq!(exe["status"], "failed");
    assert!(
        exe["failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("unsupported"),
        "{exe}"
    );
    let faq = docs.iter().find(|d| d["name"] == "faq.md").unwrap();
    assert_eq!(faq["status"], "ready", "{faq}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlet_bases_serve_only_their_outlets() {
    let mut app = TestApp::start(Options::default()).await;
    app.create_tenant("acme").await;
    // Two outlets and three bases: more than Starter allows.
    app.put(
        "/api/v1/tenants/acme/billing/plan",
        json!({"plan": "growth"}),
    )
    .await;
    let bandung = app
        .post("/api/v1/tenants/acme/outlets", json!({"name": "Bandung"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let jakarta = app
        .post("/api/v1/tenants/acme/outlets", json!({"name": "Jakarta"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let wide = app.create_kb("acme", "all", &[]).await;
    let local = app
        .create_kb("acme", "bandung", std::slice::from_ref(&bandung))
        .await;
    app.upload_and_wait("acme", &wide, &[("faq.md", FAQ.into())])
        .await;
    app.upload_and_wait(
        "acme",
        &local,
        &[(
            "parking.md",
            b"# Parking\n\nThe Bandung outlet has free parking for 20 cars behind the building."
                .to_vec(),
        )],
    )
    .await;
    let q = |outlet: &str| json!({"query": "Is there parking?", "outlet": outlet, "min_score": 0, "limit": 20});
    let in_bandung = hit_texts(&app.search("acme", q(&bandung)).await);
    assert!(in_bandung[0].contains("free parking"), "{in_bandung:?}");
    let in_jakarta = hit_texts(&app.search("acme", q(&jakarta)).await);
    assert!(!in_jakarta.is_empty());
    assert!(
        in_jakarta.iter().all(|t| !t.contains("parking for 20")),
        "{in_jakarta:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_ingestion_resumes_after_a_restart() {
    let mut app = TestApp::start(Options::default()).await;
    let tenant = app.create_tenant("acme").await;
    let kb: wacrm::storage::KnowledgeBaseId =
        app.create_kb("acme", "faq", &[]).await.parse().unwrap();
    app.stop().await;
    // What a crash mid-embedding leaves: the document row (status "embedding"), its original,
    // and its event still queued.
    let (store, _) =
        wacrm::app::open_store(&test_config(app.dir.path(), "http://127.0.0.1:9", None, 50))
            .unwrap();
    let doc = wacrm::storage::DocumentId::new();
    let path = wacrm::knowledge::store::original_path(app.dir.path(), tenant, doc, 1);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, FAQ).unwrap();
    let new = wacrm::knowledge::store::NewDocument {
        kb,
        name: "faq.md".into(),
        source: wacrm::knowledge::DocumentSource::Upload,
        mime: None,
        size_bytes: FAQ.len() as u64,
        sha256: "00".repeat(32),
    };
    wacrm::knowledge::store::insert_document(&store, tenant, doc, new)
        .await
        .unwrap();
    wacrm::knowledge::store::set_status(
        &store,
        tenant,
        doc,
        1,
        wacrm::knowledge::DocumentStatus::Embedding,
        40,
    )
    .await
    .unwrap();
    let closed = store.closed(Duration::from_secs(20));
    drop(store);
    assert!(closed.await, "the store closed");

    let app = app.restart(|_| {}).await;
    let docs = app.wait_documents("acme", &[doc.to_string()]).await;
    assert_eq!(docs[0]["status"], "ready", "{docs:?}");
    let v = app
        .search("acme", json!({"query": "QRIS payment", "min_score": 0}))
        .await;
    assert!(hit_texts(&v)[0].contains("QRIS"));
    let mut app = app;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_added_by_url_and_private_addresses_refused() {
    use axum::routing::get;
    let page = "<html><head><title>Hours</title></head><body><nav>Home | About</nav><h1>Opening hours</h1><p>The roastery shop opens every Friday from 7 am until noon.</p></body></html>";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/hours",
            get(move || async move { ([("content-type", "text/html; charset=utf-8")], page) }),
        );
        axum::serve(listener, app).await.unwrap();
    });

    let mut app = TestApp::start(Options::default()).await;
    app.create_tenant("acme").await;
    let kb = app.create_kb("acme", "web", &[]).await;
    let url = format!("http://{addr}/hours");
    let (status, v) = app
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/tenants/acme/knowledge-bases/{kb}/documents/url"),
            Some(json!({"url": url})),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "url_refused");
    for bad in [
        "file:///etc/passwd",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let (status, v) = app
            .api(
                reqwest::Method::POST,
                &format!("/api/v1/tenants/acme/knowledge-bases/{kb}/documents/url"),
                Some(json!({"url": bad})),
            )
            .await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (422, Some("url_refused")),
            "{bad}: {v}"
        );
    }
    app.stop().await;

    let app = app
        .restart(|c| c.knowledge.allow_loopback_urls = true)
        .await;
    let v = app
        .post(
            &format!("/api/v1/tenants/acme/knowledge-bases/{kb}/documents/url"),
            json!({"url": url}),
        )
        .await;
    let docs = app
        .wait_documents("acme", &[v["id"].as_str().unwrap().to_string()])
        .await;
    assert_eq!(docs[0]["status"], "ready", "{docs:?}");
    let v = app
        .search(
            "acme",
            json!({"query": "when is the roastery shop open", "min_score": 0}),
        )
        .await;
    assert!(hit_texts(&v)[0].contains("every Friday"), "{v}");
    let mut app = app;
    app.stop().await;
    server.abort();
}

fn openai_embeddings(fake: &FakeLlm, dimensions: Option<usize>) -> EmbeddingSettings {
    EmbeddingSettings::Openai {
        base_url: fake.base_url(),
        api_key: Secret::new(FAKE_LLM_API_KEY),
        model: "text-embedding-3-small".into(),
        dimensions,
        timeout_ms: 2_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embeddings_api_is_an_alternative_and_a_model_change_re_indexes() {
    let emb = FakeLlm::start(FakeLlmOptions::default()).await.unwrap();
    let settings = openai_embeddings(&emb, None);
    let app = TestApp::start(Options {
        llm: Llm::Offline,
        tweak: Box::new(move |c| c.embeddings = settings),
        ..Options::default()
    })
    .await;
    app.create_tenant("acme").await;
    let kb = app.create_kb("acme", "faq", &[]).await;
    app.upload_and_wait("acme", &kb, &[("faq.md", FAQ.into())])
        .await;
    assert!(emb.embedding_request_count() > 0);
    let kb_view = app
        .get(&format!("/api/v1/tenants/acme/knowledge-bases/{kb}"))
        .await;
    assert_eq!(
        kb_view["embedding"],
        json!({"id": "openai:text-embedding-3-small", "dimension": 1536})
    );
    let v = app
        .search(
            "acme",
            json!({"query": "QRIS GoPay payment", "min_score": 0}),
        )
        .await;
    assert!(
        !hit_texts(&v).is_empty(),
        "{v} {:?}",
        app.get("/api/v1/tenants/acme/knowledge-bases").await
    );
    assert!(hit_texts(&v)[0].contains("QRIS"), "{v}");

    // Another model (here: shortened vectors): the base is embedded again on start.
    let settings = openai_embeddings(&emb, Some(256));
    let mut app = app.restart(move |c| c.embeddings = settings).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let view = app
            .get(&format!("/api/v1/tenants/acme/knowledge-bases/{kb}"))
            .await;
        if view["embedding"]["dimension"] == 256 && view["ready"] == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not re-indexed: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v = app
        .search(
            "acme",
            json!({"query": "QRIS GoPay payment", "min_score": 0}),
        )
        .await;
    assert!(hit_texts(&v)[0].contains("QRIS"), "{v}");
    assert!(
        v["hits"][0]["cosine"].as_f64().is_some(),
        "dense retrieval in use: {v}"
    );
    app.stop().await;
}

async fn ask(
    app: &TestApp,
    tenant: wacrm::storage::TenantId,
    wamid: &str,
    text: &str,
) -> wacrm::conversations::Message {
    let body = text_webhook("106540352242922", "6281234567890", wamid, text);
    assert_eq!(app.post_signed(&body).await.0, 200);
    let wamid = wamid.to_string();
    app.wait_for(WAIT, |app| {
        let c = app.conversations(tenant).pop()?;
        let msgs = app.messages(tenant, &c);
        let asked = msgs
            .iter()
            .position(|m| m.wamid.as_deref() == Some(wamid.as_str()))?;
        msgs.into_iter()
            .skip(asked + 1)
            .find(|m| m.author == Author::Assistant)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grounded_answer_cites_numbered_passages_and_records_its_sources() {
    let (mut app, _kb, tenant) = app_with_faq(Options::default()).await;
    let llm = app.llm.as_ref().unwrap();
    llm.push_reply(Reply::Text(
        "Delivery is free above 100000 rupiah [1].".into(),
    ));
    let reply = ask(&app, tenant, "wamid.Q1", "Do I pay for delivery?").await;
    assert!(!reply.sources.is_empty());
    // Cited by the document's own title (its first heading), the file name when it has none.
    assert_eq!(reply.sources[0].document, "Kopi Nusantara FAQ");
    let prompt = llm.requests().last().unwrap()["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(prompt.contains("[1] (Kopi Nusantara FAQ)"), "{prompt}");
    assert!(
        prompt.contains("Delivery is free for orders above 100000"),
        "{prompt}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_outside_the_knowledge_base_gets_no_invented_answer() {
    let (mut app, _kb, tenant) = app_with_faq(Options::default()).await;
    let llm = app.llm.as_ref().unwrap();
    llm.push_reply(Reply::Text(
        "I don't know that, shall I get a person?".into(),
    ));
    let reply = ask(&app, tenant, "wamid.Q2", "What is the capital of Mongolia?").await;
    assert!(reply.sources.is_empty());
    let prompt = llm.requests().last().unwrap()["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        prompt.contains("(none found for this question)"),
        "{prompt}"
    );

    // The tenant prefers an immediate handoff: no model call at all.
    app.api(
        reqwest::Method::PUT,
        "/api/v1/tenants/acme/knowledge/settings",
        Some(json!({"no_answer": "hand_off"})),
    )
    .await;
    let calls = llm.request_count();
    let reply = ask(
        &app,
        tenant,
        "wamid.Q3",
        "Who won the football world cup in 1970?",
    )
    .await;
    assert_eq!(llm.request_count(), calls);
    let c = app.conversations(tenant).pop().unwrap();
    assert_ne!(
        c.state,
        wacrm::conversations::ConversationState::Bot,
        "{reply:?}"
    );
    assert_eq!(
        reply.body.preview_text(),
        "I'm connecting you with a member of our team. They'll reply here shortly."
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_the_best_passage_answers_briefly_or_a_person_is_offered() {
    let (mut app, _kb, tenant) = app_with_faq(Options {
        llm: Llm::Offline,
        ..Options::default()
    })
    .await;
    let reply = ask(
        &app,
        tenant,
        "wamid.O1",
        "Which payment methods do you accept?",
    )
    .await;
    let text = reply.body.preview_text();
    assert!(text.contains("QRIS"), "{text}");
    assert!(
        !text.contains("Delivery"),
        "brief, not the whole chunk: {text}"
    );
    assert_eq!(reply.sources.len(), 1);

    let reply = ask(&app, tenant, "wamid.O2", "What is the capital of Mongolia?").await;
    assert!(
        reply.body.preview_text().contains("don't know"),
        "{reply:?}"
    );
    assert!(reply.sources.is_empty());
    app.stop().await;
}

fn fixture_doc(name: &str) -> (&str, Vec<u8>) {
    let path = format!(
        "{}/tests/fixtures/documents/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    (name, std::fs::read(path).unwrap())
}

/// A DOCX whose single part inflates 8 MiB of zeros from a few kilobytes.
fn zip_bomb_docx() -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("[Content_Types].xml", options).unwrap();
    zip.write_all(b"<Types/>").unwrap();
    zip.start_file("word/document.xml", options).unwrap();
    let block = vec![0u8; 1 << 20];
    for _ in 0..8 {
        zip.write_all(&block).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_is_retrievable_and_bad_files_fail_with_their_reason() {
    let mut app = TestApp::start(Options::default()).await;
    app.create_tenant("acme").await;
    let kb = app.create_kb("acme", "docs", &[]).await;
    let mut files: Vec<(&str, Vec<u8>)> = [
        "faq.md",
        "house_rules.txt",
        "faq_cp1252.html",
        "hours_utf16.html",
        "two_column.pdf",
        "return_policy.docx",
        "prices_cp1252.csv",
        "price_list.xlsx",
        "corrupt.pdf",
        "encrypted.pdf",
        "scanned.pdf",
        "image.png",
    ]
    .into_iter()
    .map(fixture_doc)
    .collect();
    files.push(("invoice.docx", zip_bomb_docx()));
    let docs = app.upload_and_wait("acme", &kb, &files).await;
    let status = |name: &str| {
        let d = docs.iter().find(|d| d["name"] == name).unwrap();
        (
            d["status"].as_str().unwrap().to_string(),
            d["failure"]["code"].as_str().unwrap_or("").to_string(),
            d["failure"]["reason"].as_str().unwrap_or("").to_string(),
        )
    };
    for (name, code) in [
        ("corrupt.pdf", "corrupt"),
        ("encrypted.pdf", "encrypted"),
        ("scanned.pdf", "no_extractable_text"),
        ("image.png", "unsupported"),
        ("invoice.docx", "zip_bomb"),
    ] {
        let (s, c, reason) = status(name);
        assert_eq!(
            (s.as_str(), c.as_str()),
            ("failed", code),
            "{name}: {reason}"
        );
        assert!(!reason.is_empty());
    }
    // Each good format answers a question only it can answer.
    for (name, question, expect) in [
        (
            "faq.md",
            "Can I order ahead and pick up later?",
            "pickup time",
        ),
        ("house_rules.txt", "Can I bring my dog?", "Pets are welcome"),
        (
            "faq_cp1252.html",
            "Do I need to tip?",
            "Tips are never expected",
        ),
        (
            "hours_utf16.html",
            "jam berapa buka saat hari libur nasional?",
            "09.00",
        ),
        (
            "two_column.pdf",
            "When do loyalty points expire?",
            "twelve months",
        ),
        (
            "return_policy.docx",
            "How much is the Gayo single origin?",
            "130.000",
        ),
        ("prices_cp1252.csv", "Was kostet Crème brûlée?", "4,20"),
        (
            "price_list.xlsx",
            "How much is a large Es Kopi Susu?",
            "34000",
        ),
    ] {
        assert_eq!(status(name).0, "ready", "{name}: {:?}", status(name));
        let v = app
            .search(
                "acme",
                json!({"query": question, "min_score": 0, "limit": 5}),
            )
            .await;
        let found =
            v["hits"].as_array().unwrap().iter().any(|h| {
                h["document_name"] == name && h["text"].as_str().unwrap().contains(expect)
            });
        assert!(found, "{name}: {question} -> {v}");
    }
    // The PDF keeps page numbers for citations, and reads the columns in order.
    let v = app
        .search(
            "acme",
            json!({"query": "allergens almond milk", "min_score": 0, "limit": 1}),
        )
        .await;
    assert_eq!(v["hits"][0]["page"], 2, "{v}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_list_row_answers_its_question_offline() {
    let mut app = TestApp::start(Options {
        llm: Llm::Offline,
        ..Options::default()
    })
    .await;
    let tenant = app.tenant_with_channel("acme", "106540352242922").await;
    let kb = app.create_kb("acme", "prices", &[]).await;
    app.upload_and_wait("acme", &kb, &[fixture_doc("price_list.xlsx")])
        .await;
    let v = app
        .search(
            "acme",
            json!({"query": "berapa harga es kopi susu yang large?", "limit": 1}),
        )
        .await;
    assert!(
        v["hits"][0]["text"].as_str().unwrap().contains("34000"),
        "{v}"
    );
    let reply = ask(
        &app,
        tenant,
        "wamid.P1",
        "How much is a large Es Kopi Susu?",
    )
    .await;
    let text = reply.body.preview_text();
    assert!(text.contains("34000"), "{text}");
    assert!(
        !text.contains("22000"),
        "one row, not the whole sheet: {text}"
    );
    assert_eq!(reply.sources.len(), 1);
    app.stop().await;
}

/// An archive of no supported type: stored and counted at upload, failed fast at parsing.
fn opaque_file(mb: usize, seed: u8) -> Vec<u8> {
    let mut bytes = vec![seed; mb * 1024 * 1024];
    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starter_tenant_gets_one_base_and_50_mb_and_nothing_half_created() {
    let mut app = TestApp::start(Options::quiet()).await;
    app.create_tenant("acme").await;
    let kb = app.create_kb("acme", "faq", &[]).await;

    // A second knowledge base: refused, naming the limit and the plan; no base created.
    let refused = app
        .call(
            &app.operator(),
            reqwest::Method::POST,
            "/api/v1/tenants/acme/knowledge-bases",
            Some(json!({"name": "second"})),
        )
        .await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(refused.code(), "quota_exceeded");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("knowledge base limit") && message.contains("Starter"),
        "{message}"
    );
    let bases = app.get("/api/v1/tenants/acme/knowledge-bases").await;
    assert_eq!(bases.as_array().unwrap().len(), 1, "{bases}");

    // 3 x 17 MB: the third would pass 50 MB and is refused, with nothing of it kept.
    let documents_dir = app.dir.path().join("documents");
    let files_on_disk = || {
        walkdir(&documents_dir)
            .into_iter()
            .filter(|p| p.is_file())
            .count()
    };
    for seed in 1..=2u8 {
        let (status, v) = app
            .upload(
                "acme",
                &kb,
                &[(&format!("archive{seed}.bin"), opaque_file(17, seed))],
            )
            .await;
        assert_eq!(status, 202, "{v}");
    }
    let (status, v) = app
        .upload("acme", &kb, &[("archive3.bin", opaque_file(17, 3))])
        .await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "quota_exceeded");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("storage limit") && message.contains("50 MB"),
        "{message}"
    );
    let docs = app
        .get(&format!(
            "/api/v1/tenants/acme/knowledge-bases/{kb}/documents"
        ))
        .await;
    assert_eq!(docs.as_array().unwrap().len(), 2, "{docs}");
    assert_eq!(files_on_disk(), 2);

    // Deleting a document gives its bytes back: the refused file now fits.
    let first = docs[0]["id"].as_str().unwrap().to_string();
    let deleted = app
        .call(
            &app.operator(),
            reqwest::Method::DELETE,
            &format!("/api/v1/tenants/acme/documents/{first}"),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    let (status, v) = app
        .upload("acme", &kb, &[("archive3.bin", opaque_file(17, 3))])
        .await;
    assert_eq!(status, 202, "{v}");
    // The deletion is in the tenant's audit log.
    let audit = app.get("/api/v1/tenants/acme/audit").await;
    assert!(audit.to_string().contains("document.deleted"), "{audit}");
    app.stop().await;
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}
